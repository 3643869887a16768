/* test_attn.c - the tiled attention kernel against the double-precision
 * reference (both its AVX2 path, when the CPU has it, and its portable C
 * path), over head sizes, GQA ratios, context lengths that do and do not
 * fill whole blocks or tiles, block sizes below and above the kernel's KV
 * tile, sliding windows, decode and prompt-chunk queries, F32 and F16 caches;
 * plus the group split, the scratch's independence of the context, no
 * allocation per call, argument validation and window edge cases.
 *
 * The paged cache is built with its blocks in a shuffled physical order, and
 * every position the kernel must not read (past the last query position, in
 * the spare trailing block) holds NaN, so reading one poisons the output. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"
#include "attnd_half.h"

/* ------------------------------------------------------------ helpers */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r) /* splitmix64 */
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static float rng_unif(rng *r)
{
    return (float)((double)(rng_next(r) >> 11) * 0x1.0p-52 - 1.0);
}

typedef struct shape {
    uint32_t head_dim, n_head, n_head_kv;
    uint32_t block_size;
    uint32_t window;
    attn_dtype dtype;
} shape;

/* A paged cache for one layer. Logical block i lives in physical slot
 * perm[i] of one pool; k_val/v_val keep the stored values (after F16
 * rounding) by position for tests that check outputs directly. */
typedef struct tcache {
    attn_kv_view view;
    const void **k_tab, **v_tab;
    unsigned char *k_pool, *v_pool;
    float *k_val, *v_val; /* [kv_len][n_head_kv][head_dim] */
    uint32_t kv_len;
} tcache;

static void tcache_init(tcache *c, rng *r, const shape *sh, uint32_t kv_len)
{
    const uint32_t bs = sh->block_size, hd = sh->head_dim, nkv = sh->n_head_kv;
    /* One spare block past the end: the kernel must not touch it. */
    const uint32_t n_blocks = (kv_len + bs - 1) / bs + 1;
    const size_t esize = sh->dtype == ATTN_DTYPE_F16 ? 2 : 4;
    const size_t blk_elems = (size_t)nkv * bs * hd;
    memset(c, 0, sizeof *c);
    c->kv_len = kv_len;
    c->k_tab = malloc(n_blocks * sizeof *c->k_tab);
    c->v_tab = malloc(n_blocks * sizeof *c->v_tab);
    c->k_pool = malloc(n_blocks * blk_elems * esize);
    c->v_pool = malloc(n_blocks * blk_elems * esize);
    c->k_val = malloc((size_t)kv_len * nkv * hd * sizeof(float));
    c->v_val = malloc((size_t)kv_len * nkv * hd * sizeof(float));
    uint32_t *perm = malloc(n_blocks * sizeof *perm);
    cr_assert(c->k_tab && c->v_tab && c->k_pool && c->v_pool && c->k_val && c->v_val && perm);

    for (uint32_t i = 0; i < n_blocks; i++)
        perm[i] = i;
    for (uint32_t i = n_blocks - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(rng_next(r) % (i + 1));
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (uint32_t b = 0; b < n_blocks; b++) {
        c->k_tab[b] = c->k_pool + perm[b] * blk_elems * esize;
        c->v_tab[b] = c->v_pool + perm[b] * blk_elems * esize;
        for (uint32_t g = 0; g < nkv; g++)
            for (uint32_t o = 0; o < bs; o++) {
                const uint32_t pos = b * bs + o;
                for (int kv = 0; kv < 2; kv++) {
                    unsigned char *blk = (unsigned char *)(kv ? c->v_tab[b] : c->k_tab[b]);
                    float *val = kv ? c->v_val : c->k_val;
                    for (uint32_t d = 0; d < hd; d++) {
                        const size_t ei = ((size_t)g * bs + o) * hd + d;
                        float x = pos < kv_len ? rng_unif(r) : NAN;
                        if (sh->dtype == ATTN_DTYPE_F16) {
                            uint16_t h = attnd_f32_to_f16(x);
                            memcpy(blk + ei * 2, &h, 2);
                            x = attnd_f16_to_f32(h);
                        } else {
                            memcpy(blk + ei * 4, &x, 4);
                        }
                        if (pos < kv_len)
                            val[((size_t)pos * nkv + g) * hd + d] = x;
                    }
                }
            }
    }
    free(perm);
    c->view.k_blocks = c->k_tab;
    c->view.v_blocks = c->v_tab;
    c->view.n_blocks = n_blocks;
    c->view.block_size = bs;
    c->view.dtype = sh->dtype;
}

static void tcache_free(tcache *c)
{
    free(c->k_tab);
    free(c->v_tab);
    free(c->k_pool);
    free(c->v_pool);
    free(c->k_val);
    free(c->v_val);
}

static attn_params params_of(const shape *sh)
{
    attn_params p = {
        .n_head = sh->n_head,
        .n_head_kv = sh->n_head_kv,
        .head_dim = sh->head_dim,
        .scale = 1.0f / sqrtf((float)sh->head_dim),
        .window = sh->window,
    };
    return p;
}

static float *random_q(rng *r, const shape *sh, uint32_t n_q, float mul)
{
    const size_t n = (size_t)n_q * sh->n_head * sh->head_dim;
    float *q = malloc(n * sizeof *q);
    cr_assert(q);
    for (size_t i = 0; i < n; i++)
        q[i] = rng_unif(r) * mul;
    return q;
}

static float *nan_buf(size_t n)
{
    float *b = malloc(n * sizeof *b);
    cr_assert(b);
    for (size_t i = 0; i < n; i++)
        b[i] = NAN;
    return b;
}

/* Relative error allowed against the reference. Float rounding of a score
 * by δ scales its weight by e^δ, so scores in the tens (q scaled up) get the
 * looser bound; at q scale 1 both paths stay near 2e-7, and the tight bound
 * catches a coefficient off in the last places of the vector exponential. */
#define TOL 1e-6
#define TOL_LARGE_SCORES 1e-5

/* Runs attn_tiled (the vector path the CPU gets, then the portable C path)
 * and attn_naive_f64 on one random case and checks
 * |tiled - ref| <= tol * max(1, |ref|) everywhere. Returns the worst error. */
static double check_case(const shape *sh, uint32_t kv_len, uint32_t n_q, float q_mul, uint64_t seed)
{
    rng r = {seed};
    tcache c;
    tcache_init(&c, &r, sh, kv_len);
    const uint32_t pos0 = kv_len - n_q;
    float *q = random_q(&r, sh, n_q, q_mul);
    const size_t n_out = (size_t)n_q * sh->n_head * sh->head_dim;
    float *out = nan_buf(n_out), *ref = nan_buf(n_out);
    attn_params p = params_of(sh);
    attnd_err err = {0};
    int rc = attn_naive_f64(&p, &c.view, q, n_q, pos0, ref, &err);
    cr_assert_eq(rc, ATTND_OK, "attn_naive_f64: %s", err.msg);

    const double tol = q_mul > 1.0f ? TOL_LARGE_SCORES : TOL;
    double worst = 0.0;
    for (int portable = 0; portable < 2; portable++) {
        attn_scratch *s = attn_scratch_new(&p);
        cr_assert(s);
        if (portable)
            attn_scratch_use_portable(s);
        for (size_t i = 0; i < n_out; i++)
            out[i] = NAN;
        rc = attn_tiled(&p, &c.view, q, n_q, pos0, 0, sh->n_head_kv, out, s, &err);
        cr_assert_eq(rc, ATTND_OK, "attn_tiled: %s", err.msg);
        attn_scratch_free(s);

        double path_worst = 0.0;
        size_t worst_i = 0;
        int bad = 0;
        for (size_t i = 0; i < n_out; i++) {
            const double a = out[i], b = ref[i];
            const double e = fabs(a - b) / fmax(1.0, fabs(b));
            if (!(e <= tol))
                bad = 1;
            if (!(e <= path_worst)) {
                path_worst = isnan(e) ? INFINITY : e;
                worst_i = i;
            }
        }
        cr_expect(!bad,
                  "%s path, hd %u heads %u/%u bs %u window %u %s kv_len %u n_q %u q*%g: "
                  "worst rel error %.3g at %zu (%.9g vs %.9g)",
                  portable ? "portable" : "default", sh->head_dim, sh->n_head, sh->n_head_kv,
                  sh->block_size, sh->window, sh->dtype == ATTN_DTYPE_F16 ? "F16" : "F32", kv_len,
                  n_q, (double)q_mul, path_worst, worst_i, (double)out[worst_i],
                  (double)ref[worst_i]);
        worst = fmax(worst, path_worst);
    }
    free(q);
    free(out);
    free(ref);
    tcache_free(&c);
    return worst;
}

static const uint32_t head_dims[] = {32, 64, 80, 128};
/* {n_head, n_head_kv}: ratios 1, 2, 4, 8, and MQA with 4 and 8 heads. */
static const uint32_t head_cfgs[][2] = {{8, 8}, {8, 4}, {8, 2}, {16, 2}, {8, 1}, {4, 1}};
/* 7 and 16 divide nothing in particular; 128 is larger than the KV tile. */
static const uint32_t block_sizes[] = {16, 7, 32, 128};
static const uint32_t windows[] = {0, 1, 5, 64, 300};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------ vs reference */

/* A single decode query at the last position, across head sizes, GQA
 * ratios and context lengths; block size, window and dtype rotate so every
 * value of each meets many of the others. */
Test(attn, decode_matches_reference)
{
    static const uint32_t ctxs[] = {1, 2, 15, 16, 17, 100, 257, 1000};
    unsigned k = 0;
    double worst = 0.0;
    for (size_t ih = 0; ih < N_OF(head_dims); ih++)
        for (size_t ic = 0; ic < N_OF(head_cfgs); ic++)
            for (size_t ix = 0; ix < N_OF(ctxs); ix++, k++) {
                shape sh = {
                    .head_dim = head_dims[ih],
                    .n_head = head_cfgs[ic][0],
                    .n_head_kv = head_cfgs[ic][1],
                    .block_size = block_sizes[k % N_OF(block_sizes)],
                    .window = windows[(k / 3) % N_OF(windows)],
                    .dtype = (k / 2) % 2 ? ATTN_DTYPE_F16 : ATTN_DTYPE_F32,
                };
                worst = fmax(worst, check_case(&sh, ctxs[ix], 1, 1.0f, 1000 + k));
            }
    cr_log_info("decode: %u cases, worst rel error %.3g", k, worst);
}

typedef struct pcase {
    uint32_t head_dim, n_head, n_head_kv, block_size, window;
    attn_dtype dtype;
    uint32_t kv_len, n_q; /* queries are positions kv_len - n_q .. kv_len - 1 */
} pcase;

/* Runs check_case on each case (seeds SEED0, SEED0 + 1, ...) and logs the
 * worst error under LABEL. */
static void check_pcases(const char *label, const pcase *cases, size_t n, float q_mul,
                         uint64_t seed0)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        const pcase *pc = &cases[i];
        shape sh = {pc->head_dim, pc->n_head, pc->n_head_kv, pc->block_size, pc->window, pc->dtype};
        worst = fmax(worst, check_case(&sh, pc->kv_len, pc->n_q, q_mul, seed0 + i));
    }
    cr_log_info("%s: %zu cases, worst rel error %.3g", label, n, worst);
}

static const pcase prompt_cases[] = {
    /* whole prompts from position 0 */
    {64, 8, 8, 16, 0, ATTN_DTYPE_F32, 1, 1},
    {64, 8, 4, 16, 0, ATTN_DTYPE_F32, 2, 2},
    {32, 8, 2, 16, 0, ATTN_DTYPE_F16, 15, 15},
    {80, 8, 1, 16, 0, ATTN_DTYPE_F32, 16, 16},
    {128, 4, 1, 16, 5, ATTN_DTYPE_F32, 17, 17},
    {64, 16, 2, 7, 0, ATTN_DTYPE_F16, 33, 33},
    {80, 8, 4, 7, 5, ATTN_DTYPE_F32, 100, 100},
    {32, 8, 8, 32, 64, ATTN_DTYPE_F16, 257, 257},
    {64, 8, 2, 128, 0, ATTN_DTYPE_F32, 257, 257},
    {128, 8, 1, 128, 64, ATTN_DTYPE_F16, 200, 200},
    {32, 2, 1, 16, 0, ATTN_DTYPE_F32, 1000, 1000},
    {32, 8, 1, 7, 64, ATTN_DTYPE_F16, 600, 600},
    {32, 4, 4, 16, 1, ATTN_DTYPE_F32, 100, 100},
    /* chunks starting mid-sequence */
    {64, 8, 4, 16, 0, ATTN_DTYPE_F32, 137, 37},
    {80, 8, 2, 7, 0, ATTN_DTYPE_F16, 137, 37},
    {128, 8, 8, 32, 5, ATTN_DTYPE_F32, 137, 37},
    {32, 16, 2, 128, 64, ATTN_DTYPE_F16, 137, 37},
    {64, 8, 1, 16, 300, ATTN_DTYPE_F32, 137, 37},
    {128, 4, 2, 16, 0, ATTN_DTYPE_F16, 1000, 37},
    {64, 8, 4, 7, 300, ATTN_DTYPE_F32, 1000, 64},
    {80, 4, 1, 32, 0, ATTN_DTYPE_F32, 513, 48},
    /* head sizes off the kernels' 2-, 4-, 8-, 16- and 64-wide loop steps */
    {36, 8, 2, 16, 0, ATTN_DTYPE_F32, 137, 37},
    {13, 4, 1, 7, 5, ATTN_DTYPE_F16, 100, 100},
    {100, 8, 4, 128, 0, ATTN_DTYPE_F32, 300, 1},
};

Test(attn, prompt_matches_reference)
{
    check_pcases("prompt", prompt_cases, N_OF(prompt_cases), 1.0f, 2000);
}

/* 4096 positions: decode and a final chunk, with and without a window. */
Test(attn, long_context_matches_reference)
{
    static const pcase cases[] = {
        {128, 32, 8, 16, 0, ATTN_DTYPE_F32, 4096, 1},
        {128, 8, 2, 16, 300, ATTN_DTYPE_F16, 4096, 1},
        {64, 8, 1, 32, 0, ATTN_DTYPE_F16, 4096, 1},
        {80, 8, 8, 7, 0, ATTN_DTYPE_F32, 4095, 1},
        {128, 4, 1, 16, 0, ATTN_DTYPE_F16, 4096, 37},
        {64, 4, 2, 128, 300, ATTN_DTYPE_F32, 4096, 37},
    };
    check_pcases("long", cases, N_OF(cases), 1.0f, 3000);
}

/* q scaled by 30: scores in the tens, peaked softmax, the running max grows
 * over the tiles many times; the rescaling must keep it exact. */
Test(attn, large_scores_match_reference)
{
    static const pcase cases[] = {
        {64, 8, 2, 16, 0, ATTN_DTYPE_F32, 1000, 1},
        {128, 8, 8, 16, 0, ATTN_DTYPE_F16, 1000, 1},
        {128, 8, 1, 128, 300, ATTN_DTYPE_F32, 1000, 1},
        {64, 8, 4, 7, 0, ATTN_DTYPE_F32, 257, 257},
        {80, 8, 2, 32, 64, ATTN_DTYPE_F16, 257, 257},
        {32, 8, 1, 16, 0, ATTN_DTYPE_F32, 137, 37},
        {128, 8, 4, 16, 0, ATTN_DTYPE_F16, 137, 37},
    };
    check_pcases("large scores", cases, N_OF(cases), 30.0f, 4000);
}

/* Both kernels against an answer known without either: when every key is
 * the same, the weights are uniform and the output is the mean of the
 * visible V rows. */
Test(attn, equal_keys_average_values)
{
    static const uint32_t wins[] = {0, 5};
    for (size_t iw = 0; iw < N_OF(wins); iw++) {
        shape sh = {32, 4, 2, 7, wins[iw], ATTN_DTYPE_F32};
        const uint32_t kv_len = 40, n_q = 12, pos0 = kv_len - n_q, hd = sh.head_dim;
        rng r = {77};
        tcache c;
        tcache_init(&c, &r, &sh, kv_len);
        /* Make every K row of every head equal to the one at position 0. */
        for (uint32_t pos = 0; pos < kv_len; pos++)
            for (uint32_t g = 0; g < sh.n_head_kv; g++) {
                float *blk = (float *)c.k_tab[pos / sh.block_size];
                memcpy(blk + ((size_t)g * sh.block_size + pos % sh.block_size) * hd,
                       (const float *)c.k_tab[0] + (size_t)g * sh.block_size * hd,
                       hd * sizeof(float));
            }
        float *q = random_q(&r, &sh, n_q, 1.0f);
        const size_t n_out = (size_t)n_q * sh.n_head * hd;
        float *out = nan_buf(n_out), *ref = nan_buf(n_out);
        attn_params p = params_of(&sh);
        attn_scratch *s = attn_scratch_new(&p);
        attnd_err err = {0};
        cr_assert_eq(attn_tiled(&p, &c.view, q, n_q, pos0, 0, sh.n_head_kv, out, s, &err), ATTND_OK,
                     "%s", err.msg);
        cr_assert_eq(attn_naive_f64(&p, &c.view, q, n_q, pos0, ref, &err), ATTND_OK, "%s", err.msg);
        for (uint32_t i = 0; i < n_q; i++) {
            const uint32_t pos = pos0 + i;
            const uint32_t lo = sh.window && pos >= sh.window ? pos - sh.window + 1 : 0;
            for (uint32_t h = 0; h < sh.n_head; h++) {
                const uint32_t g = h / (sh.n_head / sh.n_head_kv);
                for (uint32_t d = 0; d < hd; d++) {
                    double mean = 0.0;
                    for (uint32_t j = lo; j <= pos; j++)
                        mean += c.v_val[((size_t)j * sh.n_head_kv + g) * hd + d];
                    mean /= (double)(pos - lo + 1);
                    const size_t o = ((size_t)i * sh.n_head + h) * hd + d;
                    cr_assert_float_eq(out[o], mean, 1e-5, "tiled row %u head %u d %u", i, h, d);
                    cr_assert_float_eq(ref[o], mean, 1e-6, "naive row %u head %u d %u", i, h, d);
                }
            }
        }
        attn_scratch_free(s);
        free(q);
        free(out);
        free(ref);
        tcache_free(&c);
    }
}

/* ------------------------------------------------------------ groups */

/* Threads split the work by KV head range: two halves, or one group at a
 * time, give exactly the full call's result, and a call writes only its own
 * heads. */
Test(attn, kv_head_split_equals_full_call)
{
    shape sh = {64, 8, 4, 16, 0, ATTN_DTYPE_F16};
    const uint32_t kv_len = 300, n_q = 20, pos0 = kv_len - n_q;
    rng r = {99};
    tcache c;
    tcache_init(&c, &r, &sh, kv_len);
    float *q = random_q(&r, &sh, n_q, 1.0f);
    const size_t n_out = (size_t)n_q * sh.n_head * sh.head_dim;
    float *full = nan_buf(n_out), *halves = nan_buf(n_out), *single = nan_buf(n_out);
    attn_params p = params_of(&sh);
    attn_scratch *s = attn_scratch_new(&p);
    attnd_err err = {0};
    cr_assert_eq(attn_tiled(&p, &c.view, q, n_q, pos0, 0, 4, full, s, &err), ATTND_OK, "%s", err.msg);
    cr_assert_eq(attn_tiled(&p, &c.view, q, n_q, pos0, 2, 4, halves, s, &err), ATTND_OK, "%s", err.msg);
    cr_assert_eq(attn_tiled(&p, &c.view, q, n_q, pos0, 0, 2, halves, s, &err), ATTND_OK, "%s", err.msg);
    cr_expect_eq(memcmp(full, halves, n_out * sizeof(float)), 0, "halves differ from the full call");

    /* Group 1 alone (query heads 2 and 3): everything else stays NaN. */
    cr_assert_eq(attn_tiled(&p, &c.view, q, n_q, pos0, 1, 2, single, s, &err), ATTND_OK, "%s", err.msg);
    for (uint32_t i = 0; i < n_q; i++)
        for (uint32_t h = 0; h < sh.n_head; h++) {
            const size_t o = ((size_t)i * sh.n_head + h) * sh.head_dim;
            if (h / 2 == 1)
                cr_expect_eq(memcmp(single + o, full + o, sh.head_dim * sizeof(float)), 0,
                             "row %u head %u differs", i, h);
            else
                cr_expect(isnan(single[o]) && isnan(single[o + sh.head_dim - 1]),
                          "row %u head %u of another group was written", i, h);
        }
    attn_scratch_free(s);
    free(q);
    free(full);
    free(halves);
    free(single);
    tcache_free(&c);
}

/* ------------------------------------------------------------ scratch */

Test(attn, scratch_size_independent_of_context)
{
    shape sh = {128, 8, 2, 16, 0, ATTN_DTYPE_F32};
    attn_params p = params_of(&sh);
    attn_scratch *s = attn_scratch_new(&p);
    cr_assert(s);
    const size_t bytes0 = attn_scratch_bytes(s);
    cr_assert_gt(bytes0, 0);
    rng r = {5};
    static const uint32_t ctxs[] = {64, 4096};
    for (size_t ix = 0; ix < N_OF(ctxs); ix++) {
        tcache c;
        tcache_init(&c, &r, &sh, ctxs[ix]);
        const uint32_t n_q = 16;
        float *q = random_q(&r, &sh, n_q, 1.0f);
        float *out = nan_buf((size_t)n_q * sh.n_head * sh.head_dim);
        attnd_err err = {0};
        /* decode and prompt chunk */
        cr_assert_eq(attn_tiled(&p, &c.view, q, 1, ctxs[ix] - 1, 0, 2, out, s, &err), ATTND_OK,
                     "%s", err.msg);
        cr_assert_eq(attn_tiled(&p, &c.view, q, n_q, ctxs[ix] - n_q, 0, 2, out, s, &err), ATTND_OK,
                     "%s", err.msg);
        cr_expect_eq(attn_scratch_bytes(s), bytes0, "scratch grew to %zu bytes at context %u",
                     attn_scratch_bytes(s), ctxs[ix]);
        free(q);
        free(out);
        tcache_free(&c);
    }
    /* Same parameters, same size; and a sane bound even for a large MQA
     * group (the query tile shrinks instead). */
    attn_scratch *s2 = attn_scratch_new(&p);
    cr_expect_eq(attn_scratch_bytes(s2), bytes0);
    cr_log_info("scratch for hd 128, 8/2 heads: %zu bytes", bytes0);
    attn_scratch_free(s2);
    attn_params mqa = {.n_head = 64, .n_head_kv = 1, .head_dim = 256, .scale = 1.0f / 16.0f};
    s2 = attn_scratch_new(&mqa);
    cr_assert(s2);
    cr_expect_lt(attn_scratch_bytes(s2), (size_t)1 << 20, "scratch is %zu bytes",
                 attn_scratch_bytes(s2));
    cr_log_info("scratch for hd 256, 64/1 heads: %zu bytes", attn_scratch_bytes(s2));
    attn_scratch_free(s2);
    attn_scratch_free(s);
    cr_expect_eq(attn_scratch_bytes(NULL), 0);
    attn_scratch_free(NULL);
}

Test(attn, scratch_new_rejects_bad_params)
{
    attn_params bad[] = {
        {0, 1, 64, 1.0f, 0},
        {8, 0, 64, 1.0f, 0},
        {8, 8, 0, 1.0f, 0},
        {6, 4, 64, 1.0f, 0},
    };
    for (size_t i = 0; i < N_OF(bad); i++)
        cr_expect_null(attn_scratch_new(&bad[i]), "params %zu accepted", i);
    cr_expect_null(attn_scratch_new(NULL));
}

/* attn_tiled must not allocate: it runs once per layer per step on every
 * worker thread. Counted by wrapping glibc's allocator for this thread;
 * sanitizer builds own malloc, so there the check is skipped. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define COUNT_ALLOCS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define COUNT_ALLOCS 0
#endif
#endif
#ifndef COUNT_ALLOCS
#define COUNT_ALLOCS 1
#endif

#if COUNT_ALLOCS
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);
extern void __libc_free(void *p);

static _Thread_local unsigned long n_allocs;

void *malloc(size_t n)
{
    n_allocs++;
    return __libc_malloc(n);
}
void *calloc(size_t n, size_t size)
{
    n_allocs++;
    return __libc_calloc(n, size);
}
void *realloc(void *p, size_t n)
{
    n_allocs++;
    return __libc_realloc(p, n);
}
void *aligned_alloc(size_t align, size_t n)
{
    n_allocs++;
    return __libc_memalign(align, n);
}
void free(void *p)
{
    __libc_free(p);
}
#endif

Test(attn, tiled_does_not_allocate)
{
#if !COUNT_ALLOCS
    cr_skip_test("allocation counting needs glibc's own malloc (sanitizer build)");
#else
    shape sh = {64, 8, 2, 16, 64, ATTN_DTYPE_F16};
    rng r = {11};
    tcache c;
    tcache_init(&c, &r, &sh, 500);
    float *q = random_q(&r, &sh, 100, 1.0f);
    float *out = nan_buf((size_t)100 * sh.n_head * sh.head_dim);
    attn_params p = params_of(&sh);
    attn_scratch *s = attn_scratch_new(&p);
    attnd_err err = {0};
    /* The counter works at all (volatile: compilers may elide a plain
     * malloc/free pair): */
    const unsigned long before_probe = n_allocs;
    void *volatile probe = malloc(16);
    free(probe);
    cr_assert_eq(n_allocs, before_probe + 1);

    const unsigned long before = n_allocs;
    int rc = attn_tiled(&p, &c.view, q, 100, 400, 0, 2, out, s, &err);
    rc |= attn_tiled(&p, &c.view, q, 1, 499, 0, 2, out, s, &err);
    const unsigned long during = n_allocs - before;
    cr_assert_eq(rc, ATTND_OK, "%s", err.msg);
    cr_expect_eq(during, 0, "attn_tiled allocated %lu times", during);
    attn_scratch_free(s);
    free(q);
    free(out);
    tcache_free(&c);
#endif
}

/* ------------------------------------------------------------ validation */

Test(attn, rejects_bad_arguments)
{
    shape sh = {16, 4, 2, 16, 0, ATTN_DTYPE_F32};
    rng r = {3};
    tcache c;
    tcache_init(&c, &r, &sh, 48); /* 3 blocks of 16 + a spare */
    float *q = random_q(&r, &sh, 8, 1.0f);
    float *out = nan_buf((size_t)8 * sh.n_head * sh.head_dim);
    const attn_params good = params_of(&sh);
    attn_scratch *s = attn_scratch_new(&good);
    attn_params small = good;
    small.head_dim = 8;
    attn_scratch *s_small = attn_scratch_new(&small);

    typedef struct bad {
        attn_params p;
        attn_kv_view kv;
        int null_p, null_kv, null_q, null_out, null_scratch, small_scratch;
        uint32_t n_q, pos0, kv_begin, kv_end;
        const char *msg;
    } bad;
    attn_kv_view three = c.view;
    three.n_blocks = 3;
    attn_kv_view bs0 = c.view;
    bs0.block_size = 0;
    attn_kv_view dt = c.view;
    dt.dtype = (attn_dtype)7;
    attn_kv_view no_k = c.view;
    no_k.k_blocks = NULL;
    const void *holes[5] = {c.k_tab[0], NULL, c.k_tab[2], c.k_tab[3], NULL};
    attn_kv_view hole = c.view;
    hole.k_blocks = holes;
    attn_params p6 = good, nh0 = good, nkv0 = good, hd0 = good, nan_scale = good;
    p6.n_head = 6;
    p6.n_head_kv = 4;
    nh0.n_head = 0;
    nkv0.n_head_kv = 0;
    hd0.head_dim = 0;
    nan_scale.scale = NAN;

    const bad cases[] = {
        {.p = p6, .kv = c.view, .n_q = 1, .kv_end = 4, .msg = "n_head 6 is not a multiple of n_head_kv 4"},
        {.p = nh0, .kv = c.view, .n_q = 1, .kv_end = 2, .msg = "n_head is 0"},
        {.p = nkv0, .kv = c.view, .n_q = 1, .kv_end = 2, .msg = "n_head_kv is 0"},
        {.p = hd0, .kv = c.view, .n_q = 1, .kv_end = 2, .msg = "head_dim is 0"},
        {.p = nan_scale, .kv = c.view, .n_q = 1, .kv_end = 2, .msg = "scale"},
        {.p = good, .kv = c.view, .n_q = 1, .kv_begin = 1, .kv_end = 1, .msg = "kv head range [1, 1)"},
        {.p = good, .kv = c.view, .n_q = 1, .kv_begin = 0, .kv_end = 3, .msg = "beyond n_head_kv 2"},
        {.p = good, .kv = c.view, .n_q = 0, .kv_end = 2, .msg = "n_q is 0"},
        {.p = good, .kv = three, .n_q = 4, .pos0 = 60, .kv_end = 2,
         .msg = "kv cache has 3 blocks of 16, needs 64 positions"},
        {.p = good, .kv = c.view, .n_q = 2, .pos0 = UINT32_MAX, .kv_end = 2, .msg = "overflows"},
        {.p = good, .kv = bs0, .n_q = 1, .kv_end = 2, .msg = "block_size is 0"},
        {.p = good, .kv = dt, .n_q = 1, .kv_end = 2, .msg = "dtype 7"},
        {.p = good, .kv = no_k, .n_q = 1, .kv_end = 2, .msg = "K block table is NULL"},
        {.p = good, .kv = hole, .n_q = 1, .pos0 = 20, .kv_end = 2, .msg = "K block 1 is NULL"},
        {.p = good, .kv = c.view, .n_q = 1, .kv_end = 2, .null_p = 1, .msg = "params is NULL"},
        {.p = good, .kv = c.view, .n_q = 1, .kv_end = 2, .null_kv = 1, .msg = "kv view is NULL"},
        {.p = good, .kv = c.view, .n_q = 1, .kv_end = 2, .null_q = 1, .msg = "q is NULL"},
        {.p = good, .kv = c.view, .n_q = 1, .kv_end = 2, .null_out = 1, .msg = "out is NULL"},
        {.p = good, .kv = c.view, .n_q = 1, .kv_end = 2, .null_scratch = 1, .msg = "scratch is NULL"},
        {.p = good, .kv = c.view, .n_q = 1, .kv_end = 2, .small_scratch = 1,
         .msg = "scratch was made for head_dim 8"},
    };
    for (size_t i = 0; i < N_OF(cases); i++) {
        const bad *b = &cases[i];
        attnd_err err = {0};
        int rc = attn_tiled(b->null_p ? NULL : &b->p, b->null_kv ? NULL : &b->kv,
                            b->null_q ? NULL : q, b->n_q, b->pos0, b->kv_begin, b->kv_end,
                            b->null_out ? NULL : out,
                            b->null_scratch ? NULL : b->small_scratch ? s_small : s, &err);
        cr_expect_eq(rc, ATTND_EINVAL, "case %zu (%s): rc %d", i, b->msg, rc);
        cr_expect(strstr(err.msg, b->msg) != NULL, "case %zu: message '%s' lacks '%s'", i, err.msg,
                  b->msg);
        cr_expect(strncmp(err.msg, "attn: ", 6) == 0, "case %zu: message '%s'", i, err.msg);
    }
    /* Nothing was written by any failing call. */
    for (size_t i = 0; i < (size_t)8 * sh.n_head * sh.head_dim; i++)
        cr_assert(isnan(out[i]), "out[%zu] written by a rejected call", i);

    /* A NULL entry past the positions in use is fine: only blocks covering
     * [0, pos0 + n_q) are read. */
    attnd_err err = {0};
    cr_expect_eq(attn_tiled(&good, &hole, q, 1, 15, 0, 2, out, s, &err), ATTND_OK, "%s", err.msg);
    cr_expect_eq(attn_naive_f64(&good, &three, q, 4, 60, out, &err), ATTND_EINVAL);
    attn_scratch_free(s);
    attn_scratch_free(s_small);
    free(q);
    free(out);
    tcache_free(&c);
}

/* ------------------------------------------------------------ windows */

/* A window at least as long as the context is no window at all. */
Test(attn, window_covering_context_is_no_window)
{
    shape sh = {64, 8, 2, 16, 0, ATTN_DTYPE_F32};
    const uint32_t kv_len = 50, n_q = 50;
    rng r = {21};
    tcache c;
    tcache_init(&c, &r, &sh, kv_len);
    float *q = random_q(&r, &sh, n_q, 1.0f);
    const size_t n_out = (size_t)n_q * sh.n_head * sh.head_dim;
    float *none = nan_buf(n_out), *wide = nan_buf(n_out);
    attn_params p = params_of(&sh);
    attn_scratch *s = attn_scratch_new(&p);
    attnd_err err = {0};
    cr_assert_eq(attn_tiled(&p, &c.view, q, n_q, 0, 0, 2, none, s, &err), ATTND_OK, "%s", err.msg);
    static const uint32_t wins[] = {50, 51, 1000, UINT32_MAX};
    for (size_t i = 0; i < N_OF(wins); i++) {
        p.window = wins[i];
        cr_assert_eq(attn_tiled(&p, &c.view, q, n_q, 0, 0, 2, wide, s, &err), ATTND_OK, "%s", err.msg);
        cr_expect_eq(memcmp(none, wide, n_out * sizeof(float)), 0, "window %u differs from none",
                     wins[i]);
    }
    attn_scratch_free(s);
    free(q);
    free(none);
    free(wide);
    tcache_free(&c);
}

/* W = 1: each query sees only its own position, so out is exactly its V. */
Test(attn, window_one_attends_to_itself)
{
    static const attn_dtype dts[] = {ATTN_DTYPE_F32, ATTN_DTYPE_F16};
    for (size_t it = 0; it < N_OF(dts); it++) {
        shape sh = {32, 8, 2, 7, 1, dts[it]};
        const uint32_t kv_len = 60, n_q = 30, pos0 = kv_len - n_q, hd = sh.head_dim;
        rng r = {31 + it};
        tcache c;
        tcache_init(&c, &r, &sh, kv_len);
        float *q = random_q(&r, &sh, n_q, 30.0f);
        const size_t n_out = (size_t)n_q * sh.n_head * hd;
        float *out = nan_buf(n_out);
        attn_params p = params_of(&sh);
        attn_scratch *s = attn_scratch_new(&p);
        attnd_err err = {0};
        cr_assert_eq(attn_tiled(&p, &c.view, q, n_q, pos0, 0, 2, out, s, &err), ATTND_OK, "%s",
                     err.msg);
        for (uint32_t i = 0; i < n_q; i++)
            for (uint32_t h = 0; h < sh.n_head; h++) {
                const float *want = c.v_val + ((size_t)(pos0 + i) * sh.n_head_kv + h / 4) * hd;
                cr_expect_eq(memcmp(out + ((size_t)i * sh.n_head + h) * hd, want, hd * sizeof(float)),
                             0, "row %u head %u is not V at its position", i, h);
            }
        attn_scratch_free(s);
        free(q);
        free(out);
        tcache_free(&c);
    }
}

/* ------------------------------------------------------------ exported probabilities */

/* attn_probs on random cases (GQA, windows, F16, chunks mid-sequence): every
 * row sums to 1, is 0 where the query cannot see, and weighting V with it
 * gives attn_tiled's output to 1e-5: the exported weights are the ones the
 * kernel used. A subset of heads comes out in the order asked. */
Test(attn, exported_probabilities_reproduce_the_tiled_output)
{
    static const pcase cases[] = {
        {32, 8, 2, 16, 0, ATTN_DTYPE_F32, 37, 37}, {64, 8, 8, 7, 5, ATTN_DTYPE_F16, 100, 23},
        {16, 4, 1, 16, 0, ATTN_DTYPE_F32, 1, 1},   {48, 6, 3, 32, 0, ATTN_DTYPE_F16, 129, 129},
        {80, 8, 4, 16, 64, ATTN_DTYPE_F32, 300, 40},
    };
    for (size_t ci = 0; ci < N_OF(cases); ci++) {
        const pcase *pc = &cases[ci];
        shape sh = {pc->head_dim, pc->n_head, pc->n_head_kv, pc->block_size, pc->window, pc->dtype};
        rng r = {7000 + ci};
        tcache c;
        tcache_init(&c, &r, &sh, pc->kv_len);
        const uint32_t n_q = pc->n_q, pos0 = pc->kv_len - n_q, hd = sh.head_dim;
        float *q = random_q(&r, &sh, n_q, 1.0f);
        attn_params p = params_of(&sh);
        float *out = nan_buf((size_t)n_q * sh.n_head * hd);
        attn_scratch *s = attn_scratch_new(&p);
        attnd_err err = {0};
        cr_assert_eq(attn_tiled(&p, &c.view, q, n_q, pos0, 0, sh.n_head_kv, out, s, &err), ATTND_OK);
        attn_scratch_free(s);
        uint32_t heads[16], n_heads = 0;
        for (uint32_t h = sh.n_head; h-- > 0;) /* all, last first */
            heads[n_heads++] = h;
        const size_t ld = pc->kv_len + 3; /* a stride past the row: padding stays 0 */
        float *pr = nan_buf((size_t)n_heads * n_q * ld);
        cr_assert_eq(attn_probs(&p, &c.view, q, n_q, pos0, heads, n_heads, pr, ld, &err), ATTND_OK,
                     "%s", err.msg);
        for (uint32_t k = 0; k < n_heads; k++) {
            const uint32_t h = heads[k], g = h / (sh.n_head / sh.n_head_kv);
            for (uint32_t i = 0; i < n_q; i++) {
                const uint32_t pos = pos0 + i;
                const uint32_t lo = p.window && pos >= p.window ? pos - p.window + 1 : 0;
                const float *row = pr + ((size_t)k * n_q + i) * ld;
                double sum = 0.0;
                for (size_t j = 0; j < ld; j++) {
                    if (j < lo || j > pos)
                        cr_assert_eq(row[j], 0.0f, "case %zu head %u q %u: weight at %zu", ci, h, i, j);
                    cr_assert(row[j] >= 0.0f && row[j] <= 1.0f);
                    sum += row[j];
                }
                cr_assert(fabs(sum - 1.0) < 1e-5, "case %zu head %u q %u: sums to %.9g", ci, h, i, sum);
                for (uint32_t d = 0; d < hd; d++) {
                    double o = 0.0;
                    for (uint32_t j = lo; j <= pos; j++)
                        o += (double)row[j] * c.v_val[((size_t)j * sh.n_head_kv + g) * hd + d];
                    const float t = out[((size_t)i * sh.n_head + h) * hd + d];
                    cr_assert(fabs(o - t) <= 1e-5 * fmax(1.0, fabs(t)),
                              "case %zu head %u q %u dim %u: sum p.V %.9g, tiled %.9g", ci, h, i, d,
                              o, (double)t);
                }
            }
        }
        uint32_t bad = sh.n_head;
        cr_expect_eq(attn_probs(&p, &c.view, q, n_q, pos0, &bad, 1, pr, ld, &err), ATTND_EINVAL);
        cr_expect_eq(attn_probs(&p, &c.view, q, n_q, pos0, heads, 1, pr, pc->kv_len - 1, &err),
                     ATTND_EINVAL);
        free(pr);
        free(q);
        free(out);
        tcache_free(&c);
    }
}
