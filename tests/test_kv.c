/* test_kv.c - the paged KV cache: pool sizing and parameter checks, block
 * refcounting, sequence tables (growth, truncation, sharing, all-or-nothing
 * reservation), the documented block layout for F32 and F16 writes, and a
 * randomized stress run that checks the pool's bookkeeping after every step. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attnd_half.h"
#include "kv.h"

/* ------------------------------------------------------------ helpers */

/* Deterministic, so a failure reproduces. */
typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint32_t rng_below(rng *r, uint32_t n)
{
    return (uint32_t)(rng_next(r) % n);
}

/* Non-zero, both signs, a few magnitudes: a zero would hide an unwritten
 * (or zero-initialized) element. */
static float rng_value(rng *r)
{
    float mag = 0.01f + (float)(rng_next(r) >> 40) / (float)(1ull << 24) * 8.0f;
    return (rng_next(r) & 1) ? mag : -mag;
}

static kv_pool *mkpool(uint32_t n_layer, uint32_t n_head_kv, uint32_t head_dim,
                       uint32_t block_size, kv_dtype dtype, uint32_t n_blocks)
{
    kv_pool_params p = {
        .n_layer = n_layer,
        .n_head_kv = n_head_kv,
        .head_dim = head_dim,
        .block_size = block_size,
        .dtype = dtype,
        .n_blocks = n_blocks,
    };
    kv_pool *pool = NULL;
    attnd_err err = {0};
    int rc = kv_pool_new(&p, &pool, &err);
    cr_assert_eq(rc, ATTND_OK, "kv_pool_new: %s", err.msg);
    cr_assert_not_null(pool);
    return pool;
}

static kv_seq *mkseq(void)
{
    kv_seq *s = kv_seq_new();
    cr_assert_not_null(s);
    return s;
}

static void reserve_ok(kv_pool *pool, kv_seq *s, uint32_t n_tokens)
{
    attnd_err err = {0};
    int rc = kv_seq_reserve(pool, s, n_tokens, &err);
    cr_assert_eq(rc, ATTND_OK, "reserve %u: %s", n_tokens, err.msg);
}

static void expect_bad_params(const kv_pool_params *p, int code, const char *needle)
{
    attnd_err err = {0};
    kv_pool *pool = (kv_pool *)(uintptr_t)1; /* must be reset to NULL */
    int rc = kv_pool_new(p, &pool, &err);
    cr_expect_eq(rc, code, "expected code %d, got %d (%s)", code, rc, err.msg);
    cr_expect_eq(err.code, code);
    cr_expect_null(pool, "out not reset on failure");
    cr_expect(strstr(err.msg, needle) != NULL, "message '%s' lacks '%s'", err.msg, needle);
    if (rc == ATTND_OK)
        kv_pool_free(pool);
}

/* ------------------------------------------------------------ pool creation */

Test(kv_pool, by_budget_rounds_down)
{
    /* 2 layers * 2 heads * 8 dims * 2 (K,V) * 4 bytes = 256 B/token; 16-token
     * blocks = 4096 B. */
    kv_pool_params p = {.n_layer = 2, .n_head_kv = 2, .head_dim = 8, .block_size = 16,
                        .dtype = KV_DTYPE_F32};
    const struct {
        uint64_t budget;
        uint32_t n_blocks;
    } cases[] = {
        {4096, 1}, {4097, 1}, {8191, 1}, {8192, 2}, {5 * 4096 + 4095, 5}, {100 * 4096, 100},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        p.budget_bytes = cases[i].budget;
        kv_pool *pool = NULL;
        attnd_err err = {0};
        cr_assert_eq(kv_pool_new(&p, &pool, &err), ATTND_OK, "%s", err.msg);
        cr_expect_eq(kv_pool_block_bytes(pool), 4096u);
        cr_expect_eq(kv_pool_bytes_per_token(pool), 256u);
        cr_expect_eq(kv_pool_n_blocks(pool), cases[i].n_blocks, "budget %llu: %u blocks",
                     (unsigned long long)cases[i].budget, kv_pool_n_blocks(pool));
        cr_expect_eq(kv_pool_n_free(pool), cases[i].n_blocks);
        cr_expect_eq(kv_pool_block_size(pool), 16u);
        cr_expect_eq(kv_pool_dtype(pool), KV_DTYPE_F32);
        kv_pool_free(pool);
    }
    /* F16 halves the block, so the same budget holds twice as many. */
    p.dtype = KV_DTYPE_F16;
    p.budget_bytes = 5 * 4096 + 4095;
    kv_pool *pool = NULL;
    cr_assert_eq(kv_pool_new(&p, &pool, NULL), ATTND_OK);
    cr_expect_eq(kv_pool_block_bytes(pool), 2048u);
    cr_expect_eq(kv_pool_n_blocks(pool), 11u);
    cr_expect_eq(kv_pool_dtype(pool), KV_DTYPE_F16);
    kv_pool_free(pool);
}

Test(kv_pool, by_n_blocks_wins_over_budget)
{
    kv_pool_params p = {.n_layer = 1, .n_head_kv = 1, .head_dim = 4, .block_size = 8,
                        .dtype = KV_DTYPE_F32, .budget_bytes = 1u << 20, .n_blocks = 3};
    kv_pool *pool = NULL;
    cr_assert_eq(kv_pool_new(&p, &pool, NULL), ATTND_OK);
    cr_expect_eq(kv_pool_n_blocks(pool), 3u);
    cr_expect_eq(kv_pool_n_free(pool), 3u);
    kv_pool_free(pool);
    /* And a budget far too small does not matter when n_blocks is given. */
    p.budget_bytes = 1;
    cr_assert_eq(kv_pool_new(&p, &pool, NULL), ATTND_OK);
    cr_expect_eq(kv_pool_n_blocks(pool), 3u);
    kv_pool_free(pool);
}

Test(kv_pool, default_block_size)
{
    kv_pool *pool = mkpool(3, 2, 8, 0, KV_DTYPE_F16, 2);
    cr_expect_eq(kv_pool_block_size(pool), KV_DEFAULT_BLOCK_SIZE);
    cr_expect_eq(kv_pool_block_bytes(pool), kv_pool_bytes_per_token(pool) * KV_DEFAULT_BLOCK_SIZE);
    kv_pool_free(pool);
    kv_pool_free(NULL);
}

/* 2^22 + 1 blocks of 1024 tokens: past 2^32 tokens, which a 32-bit product
 * wraps to 1024. The smallest token (1 layer, 1 KV head of 1 dimension, F16:
 * 4 bytes) makes that 16 GiB of address space, reserved but never touched. */
Test(kv_pool, token_capacity_past_2_32_is_not_truncated)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    cr_skip_test("a sanitizer's allocator aborts rather than fail a 16 GiB reservation");
#else
    kv_pool_params p = {.n_layer = 1, .n_head_kv = 1, .head_dim = 1, .block_size = 1024,
                        .dtype = KV_DTYPE_F16, .n_blocks = (1u << 22) + 1};
    kv_pool *pool = NULL;
    attnd_err err = {0};
    int rc = kv_pool_new(&p, &pool, &err);
    if (rc == ATTND_ENOMEM)
        cr_skip_test("this machine refuses 16 GiB of address space: %s", err.msg);
    cr_assert_eq(rc, ATTND_OK, "%s", err.msg);
    cr_expect_eq(kv_pool_n_tokens(pool), ((1ull << 22) + 1) * 1024);
    kv_pool_free(pool);
#endif
}

Test(kv_pool, dtype_size)
{
    cr_expect_eq(kv_dtype_size(KV_DTYPE_F32), 4u);
    cr_expect_eq(kv_dtype_size(KV_DTYPE_F16), 2u);
}

Test(kv_pool, invalid_params)
{
    const kv_pool_params good = {.n_layer = 2, .n_head_kv = 2, .head_dim = 8, .block_size = 16,
                                 .dtype = KV_DTYPE_F32, .n_blocks = 4};
    kv_pool_params p;

    p = good, p.n_layer = 0;
    expect_bad_params(&p, ATTND_EINVAL, "n_layer");
    p = good, p.n_head_kv = 0;
    expect_bad_params(&p, ATTND_EINVAL, "n_head_kv");
    p = good, p.head_dim = 0;
    expect_bad_params(&p, ATTND_EINVAL, "head_dim");
    p = good, p.n_blocks = 0, p.budget_bytes = 0;
    expect_bad_params(&p, ATTND_EINVAL, "budget_bytes");
    p = good, p.dtype = (kv_dtype)7;
    expect_bad_params(&p, ATTND_EINVAL, "dtype");

    /* Budget smaller than one 4096-byte block. */
    p = good, p.n_blocks = 0, p.budget_bytes = 4095;
    expect_bad_params(&p, ATTND_ERANGE, "budget_bytes");
    p = good, p.n_blocks = 0, p.budget_bytes = 1;
    expect_bad_params(&p, ATTND_ERANGE, "budget_bytes");

    /* Overflowing shapes. */
    p = (kv_pool_params){.n_layer = UINT32_MAX, .n_head_kv = UINT32_MAX, .head_dim = UINT32_MAX,
                         .block_size = UINT32_MAX, .dtype = KV_DTYPE_F32, .n_blocks = 1};
    expect_bad_params(&p, ATTND_ERANGE, "overflows");
    p.dtype = KV_DTYPE_F16, p.n_blocks = 0, p.budget_bytes = UINT64_MAX;
    expect_bad_params(&p, ATTND_ERANGE, "overflows");
    /* Per-layer half fits, the whole block does not. */
    p = (kv_pool_params){.n_layer = UINT32_MAX, .n_head_kv = 1u << 16, .head_dim = 1u << 16,
                         .block_size = 16, .dtype = KV_DTYPE_F16, .n_blocks = 1};
    expect_bad_params(&p, ATTND_ERANGE, "n_layer");
    /* The block fits, n_blocks of them do not (2^47 bytes * 2^20). */
    p = (kv_pool_params){.n_layer = 1u << 20, .n_head_kv = 1u << 10, .head_dim = 1u << 10,
                         .block_size = 16, .dtype = KV_DTYPE_F32, .n_blocks = 1u << 20};
    expect_bad_params(&p, ATTND_ERANGE, "n_blocks");
    /* A budget that would hold more blocks than ids exist. */
    p = (kv_pool_params){.n_layer = 1, .n_head_kv = 1, .head_dim = 1, .block_size = 1,
                         .dtype = KV_DTYPE_F16, .budget_bytes = UINT64_MAX};
    expect_bad_params(&p, ATTND_ERANGE, "budget_bytes");
    /* KV_NO_BLOCK is reserved. */
    p = good, p.n_blocks = UINT32_MAX;
    expect_bad_params(&p, ATTND_ERANGE, "n_blocks");

    /* NULLs. */
    expect_bad_params(NULL, ATTND_EINVAL, "params");
    attnd_err err = {0};
    cr_expect_eq(kv_pool_new(&good, NULL, &err), ATTND_EINVAL);
    cr_expect(strstr(err.msg, "out") != NULL, "%s", err.msg);
    /* A NULL err is allowed. */
    kv_pool *pool = NULL;
    p = good, p.head_dim = 0;
    cr_expect_eq(kv_pool_new(&p, &pool, NULL), ATTND_EINVAL);
    cr_expect_null(pool);
}

/* ------------------------------------------------------------ sizes */

Test(kv_pool, bytes_per_token)
{
    const struct {
        const char *name;
        uint32_t n_layer, n_head_kv, head_dim;
        uint64_t f32, f16; /* 2 * n_layer * n_head_kv * head_dim * 4 (or 2), by hand */
    } shapes[] = {
        {"aidreams260K", 4, 4, 16, 2048, 1024},
        {"stories260K", 5, 4, 8, 1280, 640},
        {"llama-synth-64x2-gqa4", 2, 2, 8, 256, 128},
        {"llama-synth-128x2-q8_0", 2, 2, 32, 1024, 512},
        {"gpt2-synth-64x2", 2, 4, 16, 1024, 512},
        {"tinyllama-1.1B", 22, 4, 64, 45056, 22528},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        for (int f16 = 0; f16 <= 1; f16++) {
            kv_pool *pool = mkpool(shapes[i].n_layer, shapes[i].n_head_kv, shapes[i].head_dim,
                                   16, f16 ? KV_DTYPE_F16 : KV_DTYPE_F32, 2);
            uint64_t want = f16 ? shapes[i].f16 : shapes[i].f32;
            cr_expect_eq(kv_pool_bytes_per_token(pool), want, "%s %s: %llu, want %llu",
                         shapes[i].name, f16 ? "F16" : "F32",
                         (unsigned long long)kv_pool_bytes_per_token(pool),
                         (unsigned long long)want);
            cr_expect_eq(kv_pool_block_bytes(pool), want * 16, "%s", shapes[i].name);
            kv_pool_free(pool);
        }
    }
    /* GQA: the 1.1B model's 4 KV heads instead of its 32 query heads. */
    kv_pool *gqa = mkpool(22, 4, 64, 16, KV_DTYPE_F16, 1);
    kv_pool *mha = mkpool(22, 32, 64, 16, KV_DTYPE_F16, 1);
    cr_expect_eq(kv_pool_bytes_per_token(gqa), 22528u);
    cr_expect_eq(kv_pool_bytes_per_token(mha), 180224u);
    cr_expect_eq(kv_pool_bytes_per_token(mha), 8 * kv_pool_bytes_per_token(gqa));
    kv_pool_free(gqa);
    kv_pool_free(mha);

    /* A budget sized by bytes per token: 2048 tokens of the 1.1B shape. */
    kv_pool_params p = {.n_layer = 22, .n_head_kv = 4, .head_dim = 64, .dtype = KV_DTYPE_F16,
                        .budget_bytes = 2048ull * 22528};
    kv_pool *pool = NULL;
    cr_assert_eq(kv_pool_new(&p, &pool, NULL), ATTND_OK);
    cr_expect_eq(kv_pool_n_blocks(pool), 2048u / 16);
    kv_pool_free(pool);
}

/* ------------------------------------------------------------ blocks */

Test(kv_block, alloc_until_exhausted)
{
    enum { N = 8 };
    kv_pool *pool = mkpool(1, 2, 4, 4, KV_DTYPE_F32, N);
    uint32_t ids[N];
    bool seen[N] = {0};
    attnd_err err = {0};
    for (uint32_t i = 0; i < N; i++) {
        cr_assert_eq(kv_block_alloc(pool, &ids[i], &err), ATTND_OK, "%s", err.msg);
        cr_assert_lt(ids[i], N);
        cr_expect_not(seen[ids[i]], "block %u handed out twice", ids[i]);
        seen[ids[i]] = true;
        cr_expect_eq(kv_block_refcount(pool, ids[i]), 1u);
        cr_expect_eq(kv_pool_n_free(pool), N - 1 - i);
    }
    uint32_t extra = 12345;
    cr_expect_eq(kv_block_alloc(pool, &extra, &err), ATTND_ERANGE);
    cr_expect(strstr(err.msg, "KV cache full") != NULL, "%s", err.msg);
    cr_expect(strstr(err.msg, "0 of 8") != NULL, "%s", err.msg);
    cr_expect_eq(extra, 12345u, "output written on failure");
    cr_expect_eq(kv_pool_n_free(pool), 0u);

    /* Free one, get it back; free all, get all back. */
    kv_block_unref(pool, ids[3]);
    cr_expect_eq(kv_pool_n_free(pool), 1u);
    cr_expect_eq(kv_block_refcount(pool, ids[3]), 0u);
    uint32_t again;
    cr_assert_eq(kv_block_alloc(pool, &again, NULL), ATTND_OK);
    cr_expect_eq(again, ids[3]);
    cr_expect_eq(kv_block_alloc(pool, &extra, NULL), ATTND_ERANGE);
    for (uint32_t i = 0; i < N; i++)
        kv_block_unref(pool, ids[i]);
    cr_expect_eq(kv_pool_n_free(pool), N);
    memset(seen, 0, sizeof seen);
    for (uint32_t i = 0; i < N; i++) {
        cr_assert_eq(kv_block_alloc(pool, &ids[i], NULL), ATTND_OK);
        cr_expect_not(seen[ids[i]]);
        seen[ids[i]] = true;
    }
    cr_expect_eq(kv_pool_n_free(pool), 0u);
    for (uint32_t i = 0; i < N; i++)
        kv_block_unref(pool, ids[i]);
    kv_pool_free(pool);
}

Test(kv_block, refcounts)
{
    kv_pool *pool = mkpool(1, 1, 4, 4, KV_DTYPE_F16, 4);
    uint32_t b;
    cr_assert_eq(kv_block_alloc(pool, &b, NULL), ATTND_OK);
    cr_expect_eq(kv_pool_n_free(pool), 3u);
    kv_block_ref(pool, b);
    kv_block_ref(pool, b);
    cr_expect_eq(kv_block_refcount(pool, b), 3u);
    kv_block_unref(pool, b);
    cr_expect_eq(kv_block_refcount(pool, b), 2u);
    cr_expect_eq(kv_pool_n_free(pool), 3u, "returned to the pool while still referenced");
    kv_block_unref(pool, b);
    cr_expect_eq(kv_block_refcount(pool, b), 1u);
    cr_expect_eq(kv_pool_n_free(pool), 3u);
    kv_block_unref(pool, b);
    cr_expect_eq(kv_block_refcount(pool, b), 0u);
    cr_expect_eq(kv_pool_n_free(pool), 4u);
    /* Other blocks never moved. */
    for (uint32_t i = 0; i < 4; i++)
        cr_expect_eq(kv_block_refcount(pool, i), 0u);
    kv_pool_free(pool);
}

#ifdef NDEBUG
/* Release: a stray unref/ref of a free block is ignored; the free list must
 * not gain a duplicate (which would hand one block to two sequences). */
Test(kv_block, misuse_ignored_in_release)
{
    enum { N = 4 };
    kv_pool *pool = mkpool(1, 1, 4, 4, KV_DTYPE_F32, N);
    uint32_t b;
    cr_assert_eq(kv_block_alloc(pool, &b, NULL), ATTND_OK);
    kv_block_unref(pool, b);
    kv_block_unref(pool, b);
    kv_block_ref(pool, b);
    kv_block_unref(pool, N);          /* out of range */
    kv_block_ref(pool, KV_NO_BLOCK);
    cr_expect_eq(kv_pool_n_free(pool), N);
    cr_expect_eq(kv_block_refcount(pool, b), 0u);
    uint32_t ids[N];
    bool seen[N] = {0};
    for (uint32_t i = 0; i < N; i++) {
        cr_assert_eq(kv_block_alloc(pool, &ids[i], NULL), ATTND_OK);
        cr_expect_not(seen[ids[i]], "block %u handed out twice", ids[i]);
        seen[ids[i]] = true;
    }
    cr_expect_eq(kv_block_alloc(pool, &b, NULL), ATTND_ERANGE);
    for (uint32_t i = 0; i < N; i++)
        kv_block_unref(pool, ids[i]);
    kv_pool_free(pool);
}
#else
/* Debug builds stop on the bug instead. */
Test(kv_block, unref_free_block_asserts, .signal = SIGABRT)
{
    kv_pool *pool = mkpool(1, 1, 4, 4, KV_DTYPE_F32, 4);
    uint32_t b;
    cr_assert_eq(kv_block_alloc(pool, &b, NULL), ATTND_OK);
    kv_block_unref(pool, b);
    kv_block_unref(pool, b);
}

Test(kv_block, ref_free_block_asserts, .signal = SIGABRT)
{
    kv_pool *pool = mkpool(1, 1, 4, 4, KV_DTYPE_F32, 4);
    kv_block_ref(pool, 2);
}

Test(kv_block, unref_bad_id_asserts, .signal = SIGABRT)
{
    kv_pool *pool = mkpool(1, 1, 4, 4, KV_DTYPE_F32, 4);
    kv_block_unref(pool, 4);
}
#endif

Test(kv_block, layout_pointers)
{
    /* 3 layers, 2 heads, 5 dims, 4 tokens, F16: half = 2*4*5*2 = 80 B,
     * block = 3 * 2 * 80 = 480 B. */
    kv_pool *pool = mkpool(3, 2, 5, 4, KV_DTYPE_F16, 6);
    cr_assert_eq(kv_pool_block_bytes(pool), 480u);
    unsigned char *base = kv_block_k(pool, 0, 0);
    cr_assert_not_null(base);
    cr_expect_eq((uintptr_t)base % 64, 0u, "pool not 64-byte aligned");
    for (uint32_t b = 0; b < 6; b++) {
        for (uint32_t l = 0; l < 3; l++) {
            unsigned char *k = kv_block_k(pool, b, l), *v = kv_block_v(pool, b, l);
            cr_expect_eq(k, base + b * 480 + l * 160, "K block %u layer %u", b, l);
            cr_expect_eq(v, base + b * 480 + l * 160 + 80, "V block %u layer %u", b, l);
        }
    }
    /* The whole pool is addressable (ASan would catch an undersized one). */
    memset(base, 0x5A, 6 * 480);
    kv_pool_free(pool);
}

/* ------------------------------------------------------------ sequences */

Test(kv_seq, growth_across_block_boundaries)
{
    kv_pool *pool = mkpool(2, 2, 8, 16, KV_DTYPE_F32, 8);
    const struct {
        uint32_t tokens, blocks;
    } steps[] = {{0, 0}, {1, 1}, {16, 1}, {17, 2}, {33, 3}, {10, 3}, {48, 3}, {49, 4}};
    kv_seq *grow = mkseq();
    cr_expect_eq(kv_seq_n_blocks(grow), 0u);
    cr_expect_eq(kv_seq_capacity(pool, grow), 0u);
    uint32_t prev[8] = {0};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        /* A fresh sequence straight to the size ... */
        kv_seq *fresh = mkseq();
        reserve_ok(pool, fresh, steps[i].tokens);
        uint32_t fresh_blocks = (steps[i].tokens + 15) / 16;
        cr_expect_eq(kv_seq_n_blocks(fresh), fresh_blocks, "fresh %u tokens", steps[i].tokens);
        cr_expect_eq(kv_seq_capacity(pool, fresh), fresh_blocks * 16);
        kv_seq_free(pool, fresh);
        /* ... and one that grows (never shrinks on reserve), keeping its
         * earlier blocks in place. */
        uint32_t before = kv_seq_n_blocks(grow);
        reserve_ok(pool, grow, steps[i].tokens);
        cr_expect_eq(kv_seq_n_blocks(grow), steps[i].blocks, "grown to %u tokens",
                     steps[i].tokens);
        cr_expect_eq(kv_seq_capacity(pool, grow), steps[i].blocks * 16);
        cr_expect_eq(kv_pool_n_free(pool), 8 - steps[i].blocks);
        for (uint32_t j = 0; j < before; j++)
            cr_expect_eq(kv_seq_blocks(grow)[j], prev[j], "block %u moved", j);
        if (kv_seq_n_blocks(grow))
            memcpy(prev, kv_seq_blocks(grow), kv_seq_n_blocks(grow) * sizeof prev[0]);
    }
    /* Truncate back. */
    const struct {
        uint32_t tokens, blocks;
    } cuts[] = {{100, 4}, {64, 4}, {49, 4}, {48, 3}, {33, 3}, {32, 2}, {17, 2},
                {16, 1},  {1, 1},  {0, 0},  {0, 0}};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        kv_seq_truncate(pool, grow, cuts[i].tokens);
        cr_expect_eq(kv_seq_n_blocks(grow), cuts[i].blocks, "truncate to %u", cuts[i].tokens);
        cr_expect_eq(kv_seq_capacity(pool, grow), cuts[i].blocks * 16);
        cr_expect_eq(kv_pool_n_free(pool), 8 - cuts[i].blocks);
        for (uint32_t j = 0; j < cuts[i].blocks; j++)
            cr_expect_eq(kv_seq_blocks(grow)[j], prev[j]);
    }
    /* Reusable after being emptied. */
    reserve_ok(pool, grow, 40);
    cr_expect_eq(kv_seq_n_blocks(grow), 3u);
    kv_seq_free(pool, grow);
    cr_expect_eq(kv_pool_n_free(pool), 8u);
    kv_seq_free(pool, NULL);
    kv_pool_free(pool);
}

Test(kv_seq, block_size_one_and_odd)
{
    kv_pool *pool = mkpool(1, 1, 2, 1, KV_DTYPE_F32, 10);
    kv_seq *s = mkseq();
    reserve_ok(pool, s, 7);
    cr_expect_eq(kv_seq_n_blocks(s), 7u);
    cr_expect_eq(kv_seq_capacity(pool, s), 7u);
    kv_seq_truncate(pool, s, 3);
    cr_expect_eq(kv_seq_n_blocks(s), 3u);
    kv_seq_free(pool, s);
    kv_pool_free(pool);

    pool = mkpool(1, 1, 2, 7, KV_DTYPE_F32, 10);
    s = mkseq();
    reserve_ok(pool, s, 15);
    cr_expect_eq(kv_seq_n_blocks(s), 3u);
    cr_expect_eq(kv_seq_capacity(pool, s), 21u);
    kv_seq_truncate(pool, s, 14);
    cr_expect_eq(kv_seq_n_blocks(s), 2u);
    kv_seq_free(pool, s);
    cr_expect_eq(kv_pool_n_free(pool), 10u);
    kv_pool_free(pool);
}

Test(kv_seq, reserve_all_or_nothing)
{
    attnd_err err = {0};
    /* Pool of 3: A holds 2, an empty B asks for 2. */
    kv_pool *pool = mkpool(1, 1, 4, 16, KV_DTYPE_F32, 3);
    kv_seq *a = mkseq(), *b = mkseq();
    reserve_ok(pool, a, 32);
    cr_assert_eq(kv_pool_n_free(pool), 1u);
    cr_expect_eq(kv_seq_reserve(pool, b, 32, &err), ATTND_ERANGE);
    cr_expect(strstr(err.msg, "KV cache full") != NULL, "%s", err.msg);
    cr_expect_eq(kv_seq_n_blocks(b), 0u);
    cr_expect_eq(kv_seq_capacity(pool, b), 0u);
    cr_expect_eq(kv_pool_n_free(pool), 1u);
    cr_expect_eq(kv_seq_n_blocks(a), 2u);
    /* The one block that is left is still usable. */
    reserve_ok(pool, b, 16);
    cr_expect_eq(kv_pool_n_free(pool), 0u);
    kv_seq_free(pool, a);
    kv_seq_free(pool, b);
    cr_expect_eq(kv_pool_n_free(pool), 3u);
    kv_pool_free(pool);

    /* Pool of 4: A holds 2, B holds 1 and asks for 2 more with 1 free. */
    pool = mkpool(1, 1, 4, 16, KV_DTYPE_F32, 4);
    a = mkseq(), b = mkseq();
    reserve_ok(pool, a, 32);
    reserve_ok(pool, b, 5);
    uint32_t b0 = kv_seq_blocks(b)[0];
    err = (attnd_err){0};
    cr_expect_eq(kv_seq_reserve(pool, b, 48, &err), ATTND_ERANGE);
    cr_expect(strstr(err.msg, "KV cache full") != NULL, "%s", err.msg);
    cr_expect_eq(kv_seq_n_blocks(b), 1u);
    cr_expect_eq(kv_seq_blocks(b)[0], b0);
    cr_expect_eq(kv_block_refcount(pool, b0), 1u);
    cr_expect_eq(kv_pool_n_free(pool), 1u);
    /* A hopeless request (far more than the pool) fails the same way and
     * does not try to allocate a table for it. */
    cr_expect_eq(kv_seq_reserve(pool, b, UINT32_MAX, &err), ATTND_ERANGE);
    cr_expect_eq(kv_seq_n_blocks(b), 1u);
    cr_expect_eq(kv_pool_n_free(pool), 1u);
    /* Exactly what is left succeeds. */
    reserve_ok(pool, b, 32);
    cr_expect_eq(kv_pool_n_free(pool), 0u);
    kv_seq_free(pool, b);
    kv_seq_free(pool, a);
    cr_expect_eq(kv_pool_n_free(pool), 4u);

    /* NULL arguments. */
    cr_expect_eq(kv_seq_reserve(pool, NULL, 1, &err), ATTND_EINVAL);
    cr_expect(strstr(err.msg, "seq") != NULL, "%s", err.msg);
    kv_pool_free(pool);
}

static void share_then_free(bool src_first)
{
    kv_pool *pool = mkpool(2, 2, 4, 16, KV_DTYPE_F16, 6);
    kv_seq *a = mkseq(), *b = mkseq();
    reserve_ok(pool, a, 40);
    cr_assert_eq(kv_seq_n_blocks(a), 3u);
    attnd_err err = {0};
    cr_assert_eq(kv_seq_share(pool, b, a, &err), ATTND_OK, "%s", err.msg);
    cr_expect_eq(kv_seq_n_blocks(b), 3u);
    cr_expect_eq(kv_seq_capacity(pool, b), 48u);
    cr_expect_eq(kv_pool_n_free(pool), 3u, "sharing must not allocate");
    for (uint32_t i = 0; i < 3; i++) {
        cr_expect_eq(kv_seq_blocks(b)[i], kv_seq_blocks(a)[i]);
        cr_expect_eq(kv_block_refcount(pool, kv_seq_blocks(a)[i]), 2u);
    }
    /* Sharing into a non-empty table is refused and changes nothing. */
    kv_seq *c = mkseq();
    reserve_ok(pool, c, 1);
    cr_expect_eq(kv_seq_share(pool, c, a, &err), ATTND_EINVAL);
    cr_expect(strstr(err.msg, "dst") != NULL, "%s", err.msg);
    cr_expect_eq(kv_seq_n_blocks(c), 1u);
    for (uint32_t i = 0; i < 3; i++)
        cr_expect_eq(kv_block_refcount(pool, kv_seq_blocks(a)[i]), 2u);
    cr_expect_eq(kv_seq_share(pool, b, b, &err), ATTND_EINVAL);
    kv_seq_free(pool, c);
    /* Sharing an empty table is a no-op. */
    kv_seq *e = mkseq(), *e2 = mkseq();
    cr_expect_eq(kv_seq_share(pool, e, e2, &err), ATTND_OK);
    cr_expect_eq(kv_seq_n_blocks(e), 0u);
    kv_seq_free(pool, e);
    kv_seq_free(pool, e2);

    kv_seq *first = src_first ? a : b, *second = src_first ? b : a;
    const uint32_t *ids = kv_seq_blocks(second);
    kv_seq_free(pool, first);
    cr_expect_eq(kv_pool_n_free(pool), 3u, "blocks freed while still shared");
    for (uint32_t i = 0; i < 3; i++)
        cr_expect_eq(kv_block_refcount(pool, ids[i]), 1u);
    kv_seq_free(pool, second);
    cr_expect_eq(kv_pool_n_free(pool), 6u);
    kv_pool_free(pool);
}

Test(kv_seq, share_free_src_first) { share_then_free(true); }
Test(kv_seq, share_free_dst_first) { share_then_free(false); }

Test(kv_seq, share_then_truncate_and_grow)
{
    kv_pool *pool = mkpool(1, 1, 4, 4, KV_DTYPE_F32, 8);
    kv_seq *a = mkseq(), *b = mkseq();
    reserve_ok(pool, a, 12);
    cr_assert_eq(kv_seq_share(pool, b, a, NULL), ATTND_OK);
    /* B keeps the shared prefix block and grows into private blocks. */
    kv_seq_truncate(pool, b, 4);
    cr_expect_eq(kv_block_refcount(pool, kv_seq_blocks(a)[0]), 2u);
    cr_expect_eq(kv_block_refcount(pool, kv_seq_blocks(a)[1]), 1u);
    cr_expect_eq(kv_block_refcount(pool, kv_seq_blocks(a)[2]), 1u);
    reserve_ok(pool, b, 16);
    cr_expect_eq(kv_seq_n_blocks(b), 4u);
    cr_expect_eq(kv_seq_blocks(b)[0], kv_seq_blocks(a)[0]);
    for (uint32_t i = 1; i < 4; i++) {
        cr_expect_eq(kv_block_refcount(pool, kv_seq_blocks(b)[i]), 1u);
        for (uint32_t j = 0; j < 3; j++)
            cr_expect_neq(kv_seq_blocks(b)[i], kv_seq_blocks(a)[j]);
    }
    cr_expect_eq(kv_pool_n_free(pool), 8u - 6u);
    kv_seq_free(pool, a);
    kv_seq_free(pool, b);
    cr_expect_eq(kv_pool_n_free(pool), 8u);
    kv_pool_free(pool);
}

/* ------------------------------------------------------------ write / read */

enum { WL = 3, WH = 2, WD = 5, WBS = 4, WSEQ = 5, WMAXPOS = 30 };

typedef struct wref {
    float k[WSEQ][WL][WMAXPOS][WH * WD];
    float v[WSEQ][WL][WMAXPOS][WH * WD];
} wref;

/* Element (h, row, d) of one layer's K or V at the documented layout
 * [n_head_kv][block_size][head_dim], as a float (F16 widened). */
static float read_elem(const kv_pool *pool, const void *half, uint32_t h, uint32_t row,
                       uint32_t d, uint16_t *raw16)
{
    size_t i = ((size_t)h * kv_pool_block_size(pool) + row) * WD + d;
    if (kv_pool_dtype(pool) == KV_DTYPE_F32)
        return ((const float *)half)[i];
    *raw16 = ((const uint16_t *)half)[i];
    return attnd_f16_to_f32(*raw16);
}

static void check_seq(const kv_pool *pool, const kv_seq *s, uint32_t si, uint32_t len,
                      const wref *ref)
{
    bool f16 = kv_pool_dtype(pool) == KV_DTYPE_F16;
    for (uint32_t l = 0; l < WL; l++) {
        for (uint32_t pos = 0; pos < len; pos++) {
            uint32_t block = kv_seq_blocks(s)[pos / WBS], row = pos % WBS;
            const void *kh = kv_block_k(pool, block, l), *vh = kv_block_v(pool, block, l);
            for (uint32_t h = 0; h < WH; h++) {
                for (uint32_t d = 0; d < WD; d++) {
                    float want_k = ref->k[si][l][pos][h * WD + d];
                    float want_v = ref->v[si][l][pos][h * WD + d];
                    uint16_t rk = 0, rv = 0;
                    float got_k = read_elem(pool, kh, h, row, d, &rk);
                    float got_v = read_elem(pool, vh, h, row, d, &rv);
                    if (f16) {
                        cr_assert_eq(rk, attnd_f32_to_f16(want_k),
                                     "seq %u layer %u pos %u head %u dim %u: K %04x", si, l,
                                     pos, h, d, rk);
                        cr_assert_eq(rv, attnd_f32_to_f16(want_v),
                                     "seq %u layer %u pos %u head %u dim %u: V %04x", si, l,
                                     pos, h, d, rv);
                        want_k = attnd_f16_to_f32(attnd_f32_to_f16(want_k));
                        want_v = attnd_f16_to_f32(attnd_f32_to_f16(want_v));
                    }
                    cr_assert_eq(got_k, want_k, "seq %u layer %u pos %u head %u dim %u: K %g != %g",
                                 si, l, pos, h, d, (double)got_k, (double)want_k);
                    cr_assert_eq(got_v, want_v, "seq %u layer %u pos %u head %u dim %u: V %g != %g",
                                 si, l, pos, h, d, (double)got_v, (double)want_v);
                }
            }
        }
    }
}

static void write_pos(kv_pool *pool, kv_seq *s, uint32_t si, uint32_t l, uint32_t pos,
                      wref *ref, rng *r)
{
    for (uint32_t i = 0; i < WH * WD; i++) {
        ref->k[si][l][pos][i] = rng_value(r);
        ref->v[si][l][pos][i] = rng_value(r);
    }
    attnd_err err = {0};
    int rc = kv_seq_write(pool, s, l, pos, ref->k[si][l][pos], ref->v[si][l][pos], &err);
    cr_assert_eq(rc, ATTND_OK, "write seq %u layer %u pos %u: %s", si, l, pos, err.msg);
}

static void write_read(kv_dtype dtype)
{
    static const uint32_t len[WSEQ] = {1, 4, 5, 13, 30}; /* 1+1+2+4+8 = 16 blocks */
    kv_pool *pool = mkpool(WL, WH, WD, WBS, dtype, 20);
    kv_seq *seqs[WSEQ];
    wref *ref = calloc(1, sizeof *ref);
    cr_assert_not_null(ref);
    rng r = {dtype == KV_DTYPE_F16 ? 7u : 3u};

    for (uint32_t i = 0; i < WSEQ; i++)
        seqs[i] = mkseq();
    /* Grow all sequences a token at a time and write as we go, so their
     * blocks interleave in the pool and any stray write lands in a
     * neighbour. */
    for (uint32_t pos = 0; pos < WMAXPOS; pos++) {
        for (uint32_t si = 0; si < WSEQ; si++) {
            if (pos >= len[si])
                continue;
            reserve_ok(pool, seqs[si], pos + 1);
            for (uint32_t l = 0; l < WL; l++)
                write_pos(pool, seqs[si], si, l, pos, ref, &r);
        }
    }
    cr_expect_eq(kv_pool_n_free(pool), 4u);
    for (uint32_t si = 0; si < WSEQ; si++)
        check_seq(pool, seqs[si], si, len[si], ref);

    /* Rewrite one sequence in reverse layer order; the others are untouched. */
    for (uint32_t l = WL; l-- > 0;)
        for (uint32_t pos = 0; pos < len[3]; pos++)
            write_pos(pool, seqs[3], 3, l, pos, ref, &r);
    for (uint32_t si = 0; si < WSEQ; si++)
        check_seq(pool, seqs[si], si, len[si], ref);

    /* Writes that must fail leave every byte of the pool as it was. */
    size_t pool_bytes = (size_t)kv_pool_n_blocks(pool) * kv_pool_block_bytes(pool);
    unsigned char *base = kv_block_k(pool, 0, 0);
    unsigned char *snap = malloc(pool_bytes);
    cr_assert_not_null(snap);
    memcpy(snap, base, pool_bytes);
    float kbuf[WH * WD], vbuf[WH * WD];
    for (uint32_t i = 0; i < WH * WD; i++)
        kbuf[i] = vbuf[i] = 1.5f;
    attnd_err err = {0};
    for (uint32_t si = 0; si < WSEQ; si++) {
        uint32_t cap = kv_seq_capacity(pool, seqs[si]);
        cr_expect_eq(cap, (len[si] + WBS - 1) / WBS * WBS);
        cr_expect_eq(kv_seq_write(pool, seqs[si], 0, cap, kbuf, vbuf, &err), ATTND_ERANGE);
        cr_expect(strstr(err.msg, "capacity") != NULL, "%s", err.msg);
        cr_expect_eq(kv_seq_write(pool, seqs[si], 0, cap + WBS, kbuf, vbuf, &err),
                     ATTND_ERANGE);
        cr_expect_eq(kv_seq_write(pool, seqs[si], WL - 1, UINT32_MAX, kbuf, vbuf, &err),
                     ATTND_ERANGE);
        cr_expect_eq(kv_seq_write(pool, seqs[si], WL, 0, kbuf, vbuf, &err), ATTND_EINVAL);
        cr_expect(strstr(err.msg, "layer") != NULL, "%s", err.msg);
        cr_expect_eq(kv_seq_write(pool, seqs[si], UINT32_MAX, 0, kbuf, vbuf, &err),
                     ATTND_EINVAL);
        cr_expect_eq(kv_seq_write(pool, seqs[si], 0, 0, NULL, vbuf, &err), ATTND_EINVAL);
        cr_expect_eq(kv_seq_write(pool, seqs[si], 0, 0, kbuf, NULL, &err), ATTND_EINVAL);
    }
    kv_seq *empty = mkseq();
    cr_expect_eq(kv_seq_write(pool, empty, 0, 0, kbuf, vbuf, &err), ATTND_ERANGE);
    /* Truncation lowers the capacity, and writes follow it. */
    kv_seq_truncate(pool, seqs[4], 8);
    cr_expect_eq(kv_seq_write(pool, seqs[4], 0, 8, kbuf, vbuf, &err), ATTND_ERANGE);
    cr_expect_eq(memcmp(snap, base, pool_bytes), 0, "a failed write changed the pool");
    check_seq(pool, seqs[4], 4, 8, ref);

    kv_seq_free(pool, empty);
    for (uint32_t i = 0; i < WSEQ; i++)
        kv_seq_free(pool, seqs[i]);
    cr_expect_eq(kv_pool_n_free(pool), 20u);
    free(snap);
    free(ref);
    kv_pool_free(pool);
}

Test(kv_write, f32) { write_read(KV_DTYPE_F32); }
Test(kv_write, f16) { write_read(KV_DTYPE_F16); }

Test(kv_write, f16_rounding_and_specials)
{
    kv_pool *pool = mkpool(1, 1, 8, 2, KV_DTYPE_F16, 1);
    kv_seq *s = mkseq();
    reserve_ok(pool, s, 2);
    /* Values that round (1 + 2^-11 is a tie to even), overflow to inf,
     * underflow to subnormal, and the extremes of half. */
    const float k[8] = {1.0f + 1.0f / 2048.0f, 65504.0f, 1e6f, -1e6f, 5.96e-8f, 1e-10f,
                        0.1f, -2.5f};
    float v[8];
    for (int i = 0; i < 8; i++)
        v[i] = -k[i];
    cr_assert_eq(kv_seq_write(pool, s, 0, 1, k, v, NULL), ATTND_OK);
    const uint16_t *kh = kv_block_k(pool, kv_seq_blocks(s)[0], 0);
    const uint16_t *vh = kv_block_v(pool, kv_seq_blocks(s)[0], 0);
    for (int i = 0; i < 8; i++) {
        cr_expect_eq(kh[8 + i], attnd_f32_to_f16(k[i]), "k[%d]", i);
        cr_expect_eq(vh[8 + i], attnd_f32_to_f16(v[i]), "v[%d]", i);
    }
    cr_expect_eq(kh[8 + 0], 0x3C00u); /* tie rounds to even: 1.0 */
    cr_expect_eq(kh[8 + 1], 0x7BFFu);
    cr_expect_eq(kh[8 + 2], 0x7C00u);
    cr_expect_eq(kh[8 + 3], 0xFC00u);
    kv_seq_free(pool, s);
    kv_pool_free(pool);
}

/* ------------------------------------------------------------ stress */

enum { SN_SEQ = 12, SN_HELD = 16 };

typedef struct stress {
    kv_pool *pool;
    kv_seq *seq[SN_SEQ];
    uint32_t held[SN_HELD]; /* block references held outside any sequence */
    uint32_t n_held;
    uint32_t *expect;        /* per block: references the test knows about */
} stress;

static void stress_check(stress *st, uint32_t step)
{
    uint32_t nb = kv_pool_n_blocks(st->pool), bs = kv_pool_block_size(st->pool);
    memset(st->expect, 0, nb * sizeof *st->expect);
    uint64_t refs = 0;
    for (uint32_t i = 0; i < SN_SEQ; i++) {
        uint32_t n = kv_seq_n_blocks(st->seq[i]);
        cr_assert_eq(kv_seq_capacity(st->pool, st->seq[i]), n * bs);
        for (uint32_t j = 0; j < n; j++) {
            uint32_t b = kv_seq_blocks(st->seq[i])[j];
            cr_assert_lt(b, nb, "step %u: seq %u has bad block id %u", step, i, b);
            st->expect[b]++;
            refs++;
        }
    }
    for (uint32_t i = 0; i < st->n_held; i++) {
        st->expect[st->held[i]]++;
        refs++;
    }
    uint64_t sum = 0;
    uint32_t used = 0;
    for (uint32_t b = 0; b < nb; b++) {
        uint32_t rc = kv_block_refcount(st->pool, b);
        cr_assert_eq(rc, st->expect[b], "step %u: block %u refcount %u, expected %u", step, b,
                     rc, st->expect[b]);
        sum += rc;
        used += rc > 0;
    }
    cr_assert_eq(sum, refs, "step %u: refcount sum %llu != references %llu", step,
                 (unsigned long long)sum, (unsigned long long)refs);
    cr_assert_eq(kv_pool_n_free(st->pool) + used, nb, "step %u: free %u + used %u != %u", step,
                 kv_pool_n_free(st->pool), used, nb);
}

static void stress_run(uint64_t seed, uint32_t n_blocks, uint32_t bs, uint32_t steps)
{
    stress st = {0};
    st.pool = mkpool(1, 1, 2, bs, KV_DTYPE_F32, n_blocks);
    st.expect = calloc(n_blocks, sizeof *st.expect);
    cr_assert_not_null(st.expect);
    for (uint32_t i = 0; i < SN_SEQ; i++)
        st.seq[i] = mkseq();
    rng r = {seed};
    uint32_t before_ids[256];
    uint32_t max_tokens = n_blocks * bs / 3;
    attnd_err err;
    uint32_t n_fail = 0, n_share = 0, n_refused = 0;

    for (uint32_t step = 0; step < steps; step++) {
        uint32_t op = rng_below(&r, 100);
        kv_seq *s = st.seq[rng_below(&r, SN_SEQ)];
        uint32_t nb_before = kv_seq_n_blocks(s), free_before = kv_pool_n_free(st.pool);
        cr_assert_leq(nb_before, 256u);
        if (nb_before)
            memcpy(before_ids, kv_seq_blocks(s), nb_before * sizeof before_ids[0]);
        if (op < 35) {
            uint32_t n = rng_below(&r, max_tokens + 1);
            uint32_t need = (n + bs - 1) / bs;
            err = (attnd_err){0};
            int rc = kv_seq_reserve(st.pool, s, n, &err);
            if (need > nb_before && need - nb_before > free_before) {
                cr_assert_eq(rc, ATTND_ERANGE, "step %u", step);
                cr_assert(strstr(err.msg, "KV cache full") != NULL, "%s", err.msg);
                cr_assert_eq(kv_seq_n_blocks(s), nb_before);
                cr_assert_eq(kv_pool_n_free(st.pool), free_before);
                n_fail++;
            } else {
                cr_assert_eq(rc, ATTND_OK, "step %u: %s", step, err.msg);
                uint32_t now = need > nb_before ? need : nb_before;
                cr_assert_eq(kv_seq_n_blocks(s), now);
                cr_assert_eq(kv_pool_n_free(st.pool), free_before - (now - nb_before));
            }
            for (uint32_t j = 0; j < nb_before; j++)
                cr_assert_eq(kv_seq_blocks(s)[j], before_ids[j]);
        } else if (op < 55) {
            uint32_t n = rng_below(&r, kv_seq_capacity(st.pool, s) + 2 * bs + 1);
            uint32_t keep = (n + bs - 1) / bs;
            kv_seq_truncate(st.pool, s, n);
            cr_assert_eq(kv_seq_n_blocks(s), keep < nb_before ? keep : nb_before);
            for (uint32_t j = 0; j < kv_seq_n_blocks(s); j++)
                cr_assert_eq(kv_seq_blocks(s)[j], before_ids[j]);
        } else if (op < 63) {
            /* Free and replace with a fresh, empty sequence. */
            for (uint32_t i = 0; i < SN_SEQ; i++) {
                if (st.seq[i] == s) {
                    kv_seq_free(st.pool, s);
                    st.seq[i] = mkseq();
                }
            }
        } else if (op < 75) {
            kv_seq *src = st.seq[rng_below(&r, SN_SEQ)];
            err = (attnd_err){0};
            int rc = kv_seq_share(st.pool, s, src, &err);
            if (nb_before != 0) {
                cr_assert_eq(rc, ATTND_EINVAL, "step %u", step);
                cr_assert_eq(kv_seq_n_blocks(s), nb_before);
            } else {
                cr_assert_eq(rc, ATTND_OK, "step %u: %s", step, err.msg);
                cr_assert_eq(kv_seq_n_blocks(s), kv_seq_n_blocks(src));
                for (uint32_t j = 0; j < kv_seq_n_blocks(s); j++)
                    cr_assert_eq(kv_seq_blocks(s)[j], kv_seq_blocks(src)[j]);
                cr_assert_eq(kv_pool_n_free(st.pool), free_before);
                n_share += kv_seq_n_blocks(s) > 0;
            }
        } else if (op < 82) {
            if (st.n_held < SN_HELD) {
                uint32_t b = KV_NO_BLOCK;
                int rc = kv_block_alloc(st.pool, &b, NULL);
                if (free_before == 0) {
                    cr_assert_eq(rc, ATTND_ERANGE);
                } else {
                    cr_assert_eq(rc, ATTND_OK);
                    cr_assert_eq(kv_block_refcount(st.pool, b), 1u);
                    st.held[st.n_held++] = b;
                }
            }
        } else if (op < 88) {
            /* An extra reference to a block some sequence uses. */
            if (st.n_held < SN_HELD && nb_before > 0) {
                uint32_t b = kv_seq_blocks(s)[rng_below(&r, nb_before)];
                kv_block_ref(st.pool, b);
                st.held[st.n_held++] = b;
            }
        } else if (op < 96) {
            if (st.n_held > 0) {
                uint32_t i = rng_below(&r, st.n_held);
                kv_block_unref(st.pool, st.held[i]);
                st.held[i] = st.held[--st.n_held];
            }
        } else {
            /* A write lands where the table says and nowhere else in the row. */
            uint32_t cap = kv_seq_capacity(st.pool, s);
            float k[2] = {rng_value(&r), rng_value(&r)}, v[2] = {rng_value(&r), rng_value(&r)};
            if (cap == 0) {
                cr_assert_eq(kv_seq_write(st.pool, s, 0, 0, k, v, NULL), ATTND_ERANGE);
            } else {
                uint32_t pos = rng_below(&r, cap);
                uint32_t b = kv_seq_blocks(s)[pos / bs];
                if (kv_block_refcount(st.pool, b) > 1) { /* shared: read-only */
                    cr_assert_eq(kv_seq_write(st.pool, s, 0, pos, k, v, NULL), ATTND_EINVAL);
                    n_refused++;
                    stress_check(&st, step);
                    continue;
                }
                cr_assert_eq(kv_seq_write(st.pool, s, 0, pos, k, v, NULL), ATTND_OK);
                const float *kp = kv_block_k(st.pool, b, 0), *vp = kv_block_v(st.pool, b, 0);
                cr_assert_eq(kp[(pos % bs) * 2], k[0]);
                cr_assert_eq(kp[(pos % bs) * 2 + 1], k[1]);
                cr_assert_eq(vp[(pos % bs) * 2], v[0]);
                cr_assert_eq(vp[(pos % bs) * 2 + 1], v[1]);
            }
        }
        stress_check(&st, step);
    }
    /* The run must have exercised the interesting paths. */
    cr_expect_gt(n_fail, 0u, "no reservation ever failed");
    cr_expect_gt(n_share, 0u, "no non-empty share");
    cr_expect_gt(n_refused, 0u, "no write into a shared block was tried");

    for (uint32_t i = 0; i < SN_SEQ; i++) {
        kv_seq_free(st.pool, st.seq[i]);
        st.seq[i] = mkseq();
    }
    while (st.n_held > 0)
        kv_block_unref(st.pool, st.held[--st.n_held]);
    stress_check(&st, steps);
    cr_expect_eq(kv_pool_n_free(st.pool), n_blocks);
    /* And the free list holds each block exactly once. */
    bool *seen = calloc(n_blocks, 1);
    cr_assert_not_null(seen);
    for (uint32_t i = 0; i < n_blocks; i++) {
        uint32_t b;
        cr_assert_eq(kv_block_alloc(st.pool, &b, NULL), ATTND_OK);
        cr_assert_not(seen[b], "block %u on the free list twice", b);
        seen[b] = true;
    }
    cr_expect_eq(kv_block_alloc(st.pool, &before_ids[0], NULL), ATTND_ERANGE);
    free(seen);
    for (uint32_t i = 0; i < SN_SEQ; i++)
        kv_seq_free(st.pool, st.seq[i]);
    free(st.expect);
    kv_pool_free(st.pool);
}

Test(kv_stress, random_ops_bs16) { stress_run(1, 64, 16, 10000); }
Test(kv_stress, random_ops_bs3) { stress_run(0xC0FFEE, 40, 3, 10000); }
Test(kv_stress, random_ops_bs1) { stress_run(42, 24, 1, 5000); }

/* ------------------------------------------------------------ prefix cache */

static kv_pool *mkcache(uint32_t block_size, uint32_t n_blocks)
{
    kv_pool_params p = {.n_layer = 1, .n_head_kv = 1, .head_dim = 1, .block_size = block_size,
                        .dtype = KV_DTYPE_F32, .n_blocks = n_blocks, .prefix_cache = true};
    kv_pool *pool = NULL;
    attnd_err err = {0};
    cr_assert_eq(kv_pool_new(&p, &pool, &err), ATTND_OK, "%s", err.msg);
    return pool;
}

/* What a forward pass would store at position POS: a function of every token
 * up to it, so a block reused under the wrong prefix shows. */
static float prefix_value(const int32_t *tokens, uint32_t pos)
{
    uint64_t h = 1469598103934665603ull;
    for (uint32_t i = 0; i <= pos; i++)
        h = (h ^ (uint32_t)tokens[i]) * 1099511628211ull;
    return (float)(h >> 40) + 1.0f;
}

/* Reserves, "computes" positions [from, n) and publishes them. */
static void compute(kv_pool *pool, kv_seq *s, const int32_t *tokens, uint32_t from, uint32_t n)
{
    reserve_ok(pool, s, n);
    attnd_err err = {0};
    for (uint32_t pos = from; pos < n; pos++) {
        float k = prefix_value(tokens, pos), v = -k;
        cr_assert_eq(kv_seq_write(pool, s, 0, pos, &k, &v, &err), ATTND_OK, "pos %u: %s", pos,
                     err.msg);
    }
    kv_seq_publish(pool, s, tokens, n);
}

/* Every position [0, n) of S holds what TOKENS' prefix would. */
static void check_prefix(const kv_pool *pool, const kv_seq *s, const int32_t *tokens, uint32_t n)
{
    uint32_t bs = kv_pool_block_size(pool);
    for (uint32_t pos = 0; pos < n; pos++) {
        uint32_t b = kv_seq_blocks(s)[pos / bs];
        float k = ((const float *)kv_block_k(pool, b, 0))[pos % bs];
        float v = ((const float *)kv_block_v(pool, b, 0))[pos % bs];
        cr_assert_eq(k, prefix_value(tokens, pos), "position %u: K from another prefix", pos);
        cr_assert_eq(v, -k, "position %u", pos);
    }
}

Test(kv_prefix, match_takes_whole_published_blocks_of_the_same_prefix)
{
    kv_pool *pool = mkcache(4, 16);
    int32_t t[12] = {5, 1, 2, 3, 9, 8, 7, 6, 4, 4, 4, 4};
    kv_seq *a = mkseq();
    compute(pool, a, t, 0, 10); /* two full blocks and half of a third */
    cr_expect_eq(kv_pool_n_cached(pool), 2u, "only full blocks are published");
    cr_expect_eq(kv_pool_n_free(pool), 13u);

    kv_seq *b = mkseq();
    cr_expect_eq(kv_seq_match(pool, b, t, 12), 8u);
    cr_expect_eq(kv_seq_n_blocks(b), 2u);
    for (uint32_t i = 0; i < 2; i++) {
        cr_expect_eq(kv_seq_blocks(b)[i], kv_seq_blocks(a)[i]);
        cr_expect_eq(kv_block_refcount(pool, kv_seq_blocks(a)[i]), 2u);
    }
    check_prefix(pool, b, t, 8);
    kv_seq_free(pool, b);
    /* The limit is in positions and only whole blocks count. */
    b = mkseq();
    cr_expect_eq(kv_seq_match(pool, b, t, 7), 4u);
    kv_seq_free(pool, b);
    b = mkseq();
    cr_expect_eq(kv_seq_match(pool, b, t, 3), 0u);
    cr_expect_eq(kv_seq_n_blocks(b), 0u);
    kv_seq_free(pool, b);
    /* A different token in the second block keeps the first only; in the
     * first, nothing. */
    int32_t u[12];
    memcpy(u, t, sizeof u);
    u[6] = 100;
    b = mkseq();
    cr_expect_eq(kv_seq_match(pool, b, u, 12), 4u);
    kv_seq_free(pool, b);
    u[0] = 100;
    b = mkseq();
    cr_expect_eq(kv_seq_match(pool, b, u, 12), 0u);
    /* Not into a table that has blocks. */
    kv_seq *c = mkseq();
    reserve_ok(pool, c, 1);
    cr_expect_eq(kv_seq_match(pool, c, t, 12), 0u);
    cr_expect_eq(kv_seq_n_blocks(c), 1u);
    kv_seq_free(pool, c);
    kv_seq_free(pool, b);
    kv_seq_free(pool, a);
    cr_expect_eq(kv_pool_n_free(pool), 16u, "cached blocks count as free");
    cr_expect_eq(kv_pool_n_evictable(pool), 2u);
    cr_expect_eq(kv_pool_n_cached(pool), 2u);
    kv_pool_free(pool);
}

Test(kv_prefix, released_blocks_stay_cached_until_evicted_children_first)
{
    kv_pool *pool = mkcache(2, 6);
    int32_t t[6] = {1, 2, 3, 4, 5, 6};
    kv_seq *a = mkseq();
    compute(pool, a, t, 0, 6);
    kv_seq_free(pool, a);
    cr_expect_eq(kv_pool_n_evictable(pool), 3u);
    /* Reused after its sequence ended. */
    kv_seq *b = mkseq();
    cr_expect_eq(kv_seq_match(pool, b, t, 6), 6u);
    cr_expect_eq(kv_pool_n_evictable(pool), 0u);
    check_prefix(pool, b, t, 6);
    kv_seq_free(pool, b);
    /* Plain free blocks go first (3 of them), then the LRU, last block of
     * the chain first: the chain shortens from its end. */
    kv_seq *c = mkseq();
    reserve_ok(pool, c, 8);
    cr_expect_eq(kv_pool_n_cached(pool), 2u);
    b = mkseq();
    cr_expect_eq(kv_seq_match(pool, b, t, 6), 4u);
    kv_seq_free(pool, b);
    reserve_ok(pool, c, 12);
    cr_expect_eq(kv_pool_n_cached(pool), 0u);
    cr_expect_eq(kv_pool_n_free(pool), 0u);
    attnd_err err = {0};
    uint32_t x;
    cr_expect_eq(kv_block_alloc(pool, &x, &err), ATTND_ERANGE);
    b = mkseq();
    cr_expect_eq(kv_seq_match(pool, b, t, 6), 0u);
    kv_seq_free(pool, b);
    kv_seq_free(pool, c);
    cr_expect_eq(kv_pool_n_free(pool), 6u);
    kv_pool_free(pool);
}

Test(kv_prefix, blocks_in_use_are_never_evicted)
{
    kv_pool *pool = mkcache(2, 4);
    int32_t t[4] = {1, 2, 3, 4};
    kv_seq *a = mkseq();
    compute(pool, a, t, 0, 4);
    kv_seq *b = mkseq();
    reserve_ok(pool, b, 4);
    attnd_err err = {0};
    cr_expect_eq(kv_seq_reserve(pool, b, 6, &err), ATTND_ERANGE);
    cr_expect(strstr(err.msg, "KV cache full") != NULL, "%s", err.msg);
    check_prefix(pool, a, t, 4);
    cr_expect_eq(kv_pool_n_cached(pool), 2u);
    kv_seq_free(pool, b);
    kv_seq_free(pool, a);
    kv_pool_free(pool);
}

Test(kv_prefix, shared_and_published_blocks_are_read_only_until_owned)
{
    kv_pool *pool = mkcache(2, 8);
    int32_t t[4] = {1, 2, 3, 4};
    kv_seq *a = mkseq();
    compute(pool, a, t, 0, 4);
    float k = 1.0f, v = 2.0f;
    attnd_err err = {0};
    cr_expect_eq(kv_seq_write(pool, a, 0, 1, &k, &v, &err), ATTND_EINVAL);
    cr_expect(strstr(err.msg, "prefix-cached") != NULL, "%s", err.msg);
    kv_seq *b = mkseq();
    cr_expect_eq(kv_seq_match(pool, b, t, 4), 4u);
    cr_expect_eq(kv_seq_write(pool, b, 0, 2, &k, &v, &err), ATTND_EINVAL);
    cr_expect(strstr(err.msg, "refcount 2") != NULL, "%s", err.msg);
    /* Owning a shared block copies it; A keeps the original, untouched. */
    uint32_t shared = kv_seq_blocks(b)[1];
    cr_expect_eq(kv_seq_own(pool, b, 3, &err), ATTND_OK, "%s", err.msg);
    cr_expect_neq(kv_seq_blocks(b)[1], shared);
    cr_expect_eq(kv_block_refcount(pool, shared), 1u);
    check_prefix(pool, b, t, 4);
    cr_expect_eq(kv_seq_write(pool, b, 0, 3, &k, &v, &err), ATTND_OK, "%s", err.msg);
    check_prefix(pool, a, t, 4);
    /* Owning a published block nobody else uses takes it out of the cache. */
    kv_seq_free(pool, b);
    cr_expect_eq(kv_seq_own(pool, a, 0, &err), ATTND_OK);
    cr_expect_eq(kv_pool_n_cached(pool), 1u);
    cr_expect_eq(kv_seq_write(pool, a, 0, 0, &k, &v, &err), ATTND_OK, "%s", err.msg);
    /* The second block hangs off the first one's old uid: unreachable now,
     * even after the first is published again with the original tokens. */
    k = prefix_value(t, 0), v = -k;
    cr_expect_eq(kv_seq_write(pool, a, 0, 0, &k, &v, &err), ATTND_OK, "%s", err.msg);
    kv_seq_publish(pool, a, t, 4);
    b = mkseq();
    cr_expect_eq(kv_seq_match(pool, b, t, 4), 2u);
    kv_seq_free(pool, b);
    /* No copy without a free block: the table stays as it was. */
    kv_seq *c = mkseq(), *d = mkseq();
    reserve_ok(pool, c, 2 * kv_pool_n_free(pool));
    cr_expect_eq(kv_seq_share(pool, d, a, &err), ATTND_OK);
    uint32_t before = kv_seq_blocks(d)[0];
    cr_expect_eq(kv_seq_own(pool, d, 0, &err), ATTND_ERANGE);
    cr_expect_eq(kv_seq_blocks(d)[0], before);
    kv_seq_free(pool, c);
    kv_seq_free(pool, d);
    kv_seq_free(pool, a);
    kv_pool_free(pool);
}

Test(kv_prefix, the_same_prefix_computed_twice_is_cached_once_and_chains_on)
{
    kv_pool *pool = mkcache(2, 10);
    int32_t t[6] = {7, 7, 8, 8, 9, 9};
    kv_seq *a = mkseq(), *b = mkseq();
    compute(pool, a, t, 0, 4);
    compute(pool, b, t, 0, 6); /* ran beside A: its first two blocks are copies */
    cr_expect_eq(kv_pool_n_cached(pool), 3u);
    kv_seq *c = mkseq();
    cr_expect_eq(kv_seq_match(pool, c, t, 6), 6u);
    cr_expect_eq(kv_seq_blocks(c)[0], kv_seq_blocks(a)[0]);
    cr_expect_eq(kv_seq_blocks(c)[2], kv_seq_blocks(b)[2]);
    check_prefix(pool, c, t, 6);
    kv_seq_free(pool, a);
    kv_seq_free(pool, b);
    kv_seq_free(pool, c);
    cr_expect_eq(kv_pool_n_free(pool), 10u);
    kv_pool_free(pool);
}

/* Random prompts over a three-token alphabet, most starting with one of
 * three fixed prefixes (so prefixes collide all the time) in a pool small enough to evict constantly: every match must hand
 * back exactly the K/V of the prompt's own prefix, and the bookkeeping must
 * come out even. */
static void prefix_stress(uint64_t seed, uint32_t bs, uint32_t n_blocks, uint32_t steps)
{
    enum { NS = 6, MAXT = 40 };
    kv_pool *pool = mkcache(bs, n_blocks);
    kv_seq *seq[NS] = {0};
    int32_t tok[NS][MAXT];
    uint32_t len[NS] = {0};
    rng r = {seed};
    int32_t doc[3][MAXT];
    for (uint32_t d = 0; d < 3; d++)
        for (uint32_t k = 0; k < MAXT; k++)
            doc[d][k] = (int32_t)rng_below(&r, 3);
    uint32_t hits = 0, evictions_seen = 0;
    for (uint32_t step = 0; step < steps; step++) {
        uint32_t i = rng_below(&r, NS);
        if (seq[i]) {
            kv_seq_free(pool, seq[i]);
            seq[i] = NULL;
            continue;
        }
        /* one of three "system prompts" cut somewhere, then a random tail */
        uint32_t n = 1 + rng_below(&r, MAXT), cut = rng_below(&r, n + 1);
        const int32_t *base = doc[rng_below(&r, 3)];
        for (uint32_t k = 0; k < n; k++)
            tok[i][k] = k < cut ? base[k] : (int32_t)rng_below(&r, 3);
        seq[i] = mkseq();
        uint32_t cached_before = kv_pool_n_cached(pool);
        uint32_t got = kv_seq_match(pool, seq[i], tok[i], n - 1);
        cr_assert_eq(got % bs, 0u);
        cr_assert_leq(got, n - 1);
        check_prefix(pool, seq[i], tok[i], got);
        hits += got > 0;
        attnd_err err = {0};
        if (kv_seq_reserve(pool, seq[i], n, &err) != ATTND_OK) {
            kv_seq_free(pool, seq[i]);
            seq[i] = NULL;
            continue;
        }
        for (uint32_t pos = got; pos < n; pos++) {
            float k = prefix_value(tok[i], pos), v = -k;
            cr_assert_eq(kv_seq_write(pool, seq[i], 0, pos, &k, &v, &err), ATTND_OK,
                         "step %u pos %u: %s", step, pos, err.msg);
        }
        kv_seq_publish(pool, seq[i], tok[i], n);
        len[i] = n;
        evictions_seen += kv_pool_n_cached(pool) < cached_before;
        /* Every table's blocks are referenced, every reference counted. */
        uint32_t used = 0;
        for (uint32_t s = 0; s < NS; s++)
            if (seq[s])
                check_prefix(pool, seq[s], tok[s], len[s]);
        for (uint32_t b = 0; b < n_blocks; b++)
            used += kv_block_refcount(pool, b) > 0;
        cr_assert_eq(used + kv_pool_n_free(pool), n_blocks, "step %u", step);
        cr_assert_leq(kv_pool_n_evictable(pool), kv_pool_n_cached(pool));
    }
    cr_expect_gt(hits, steps / 10, "too few prefix hits to mean anything");
    cr_expect_gt(evictions_seen, 0u, "nothing was evicted");
    for (uint32_t s = 0; s < NS; s++)
        kv_seq_free(pool, seq[s]);
    cr_expect_eq(kv_pool_n_free(pool), n_blocks);
    cr_expect_eq(kv_pool_n_evictable(pool), kv_pool_n_cached(pool));
    kv_pool_free(pool);
}

Test(kv_prefix, random_prompts_bs4) { prefix_stress(3, 4, 24, 4000); }
Test(kv_prefix, random_prompts_bs1) { prefix_stress(11, 1, 30, 3000); }
Test(kv_prefix, random_prompts_bs7) { prefix_stress(5, 7, 12, 3000); }
