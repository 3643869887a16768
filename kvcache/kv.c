/* kv.c - the paged KV cache (see kv.h): one pool allocation carved into
 * fixed-size blocks, a stack of free block ids, a refcount per block, and
 * per-sequence block tables.
 *
 * Every size is derived from the shape once, with overflow checks, in
 * kv_pool_new; after that the hot paths (alloc, free, write) are plain index
 * arithmetic that cannot overflow because the products were already proven to
 * fit. */
#include "kv.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "attnd_ckd.h"
#include "attnd_half.h"
#include "kv_internal.h"

size_t kv_dtype_size(kv_dtype t)
{
    switch (t) {
    case KV_DTYPE_F32: return 4;
    case KV_DTYPE_F16: return 2;
    }
    return 0;
}

int kv_pool_new(const kv_pool_params *p, kv_pool **out, attnd_err *err)
{
    if (!out)
        return attnd_err_set(err, ATTND_EINVAL, "kv pool: out is NULL");
    *out = NULL;
    if (!p)
        return attnd_err_set(err, ATTND_EINVAL, "kv pool: params is NULL");
    if (p->n_layer == 0)
        return attnd_err_set(err, ATTND_EINVAL, "kv pool: n_layer is 0");
    if (p->n_head_kv == 0)
        return attnd_err_set(err, ATTND_EINVAL, "kv pool: n_head_kv is 0");
    if (p->head_dim == 0)
        return attnd_err_set(err, ATTND_EINVAL, "kv pool: head_dim is 0");
    size_t elem = kv_dtype_size(p->dtype);
    if (elem == 0)
        return attnd_err_set(err, ATTND_EINVAL, "kv pool: dtype %d is neither F32 nor F16",
                             (int)p->dtype);
    uint32_t bs = p->block_size ? p->block_size : KV_DEFAULT_BLOCK_SIZE;
    if (p->n_blocks == 0 && p->budget_bytes == 0)
        return attnd_err_set(err, ATTND_EINVAL,
                             "kv pool: budget_bytes and n_blocks are both 0");
    /* KV_NO_BLOCK must stay an id no real block can have. */
    if (p->n_blocks == KV_NO_BLOCK)
        return attnd_err_set(err, ATTND_ERANGE, "kv pool: n_blocks %u is too large (max %u)",
                             p->n_blocks, KV_NO_BLOCK - 1);

    uint64_t half, bpt, block;
    if (!attnd_ckd_mul(p->n_head_kv, p->head_dim, &half) || !attnd_ckd_mul(half, elem, &half) ||
        !attnd_ckd_mul(half, bs, &half))
        return attnd_err_set(err, ATTND_ERANGE,
                             "kv pool: n_head_kv %u * block_size %u * head_dim %u overflows",
                             p->n_head_kv, bs, p->head_dim);
    if (!attnd_ckd_mul(2ull * p->n_layer, p->n_head_kv, &bpt) ||
        !attnd_ckd_mul(bpt, p->head_dim, &bpt) || !attnd_ckd_mul(bpt, elem, &bpt) ||
        !attnd_ckd_mul(bpt, bs, &block))
        return attnd_err_set(err, ATTND_ERANGE,
                             "kv pool: block size overflows (n_layer %u, n_head_kv %u, "
                             "head_dim %u, block_size %u)",
                             p->n_layer, p->n_head_kv, p->head_dim, bs);
    if (block > SIZE_MAX)
        return attnd_err_set(err, ATTND_ERANGE, "kv pool: block of %llu bytes is too large",
                             (unsigned long long)block);

    uint64_t n_blocks = p->n_blocks;
    if (n_blocks == 0) {
        n_blocks = p->budget_bytes / block;
        if (n_blocks == 0)
            return attnd_err_set(err, ATTND_ERANGE,
                                 "kv pool: budget_bytes %llu is smaller than one block "
                                 "(%llu bytes)",
                                 (unsigned long long)p->budget_bytes, (unsigned long long)block);
        if (n_blocks >= KV_NO_BLOCK)
            return attnd_err_set(err, ATTND_ERANGE,
                                 "kv pool: budget_bytes %llu holds %llu blocks (max %u)",
                                 (unsigned long long)p->budget_bytes,
                                 (unsigned long long)n_blocks, KV_NO_BLOCK - 1);
    }
    uint64_t total;
    if (!attnd_ckd_mul(n_blocks, block, &total) || !attnd_ckd_align(total, KV_ALIGN, &total) ||
        total > SIZE_MAX)
        return attnd_err_set(err, ATTND_ERANGE,
                             "kv pool: n_blocks %llu * block_bytes %llu overflows",
                             (unsigned long long)n_blocks, (unsigned long long)block);

    int rc;
    kv_pool *pool = calloc(1, sizeof *pool);
    if (!pool)
        return attnd_err_set(err, ATTND_ENOMEM, "kv pool: out of memory");
    pool->n_layer = p->n_layer;
    pool->n_head_kv = p->n_head_kv;
    pool->head_dim = p->head_dim;
    pool->block_size = bs;
    pool->dtype = p->dtype;
    pool->n_blocks = (uint32_t)n_blocks;
    pool->elem_size = elem;
    pool->half_bytes = (size_t)half;
    pool->block_bytes = (size_t)block;
    pool->bytes_per_token = bpt;
    /* Not zeroed: touching every page up front would commit the whole budget
     * at start-up, and a block is only read at positions already written. */
    pool->data = aligned_alloc(KV_ALIGN, (size_t)total);
    pool->free_stack = malloc((size_t)n_blocks * sizeof *pool->free_stack);
    pool->refcount = calloc((size_t)n_blocks, sizeof *pool->refcount);
    if (!pool->data || !pool->free_stack || !pool->refcount) {
        kv_pool_free(pool);
        return attnd_err_set(err, ATTND_ENOMEM,
                             "kv pool: out of memory allocating %llu blocks of %llu bytes",
                             (unsigned long long)n_blocks, (unsigned long long)block);
    }
    /* Pushed in reverse so block 0 is handed out first: predictable ids make
     * logs and tests easier to read. */
    for (uint32_t i = 0; i < pool->n_blocks; i++)
        pool->free_stack[i] = pool->n_blocks - 1 - i;
    pool->n_free = pool->n_blocks;
    if (p->prefix_cache && (rc = kv_prefix_init(pool, err)) != ATTND_OK) {
        kv_pool_free(pool);
        return rc;
    }
    *out = pool;
    return ATTND_OK;
}

void kv_pool_free(kv_pool *pool)
{
    if (!pool)
        return;
    free(pool->data);
    free(pool->free_stack);
    free(pool->refcount);
    kv_prefix_free(pool);
    free(pool);
}

uint32_t kv_pool_block_size(const kv_pool *pool) { return pool->block_size; }
uint32_t kv_pool_n_blocks(const kv_pool *pool) { return pool->n_blocks; }
/* Cached blocks no sequence uses count as free: allocation evicts them. */
uint32_t kv_pool_n_free(const kv_pool *pool) { return pool->n_free + pool->n_lru; }

uint64_t kv_pool_n_tokens(const kv_pool *pool)
{
    return (uint64_t)pool->n_blocks * pool->block_size;
}

kv_dtype kv_pool_dtype(const kv_pool *pool) { return pool->dtype; }
uint64_t kv_pool_bytes_per_token(const kv_pool *pool) { return pool->bytes_per_token; }
uint64_t kv_pool_block_bytes(const kv_pool *pool) { return pool->block_bytes; }

int kv_block_alloc(kv_pool *pool, uint32_t *block, attnd_err *err)
{
    uint32_t b = pool->n_free ? pool->free_stack[--pool->n_free] : kv_prefix_evict(pool);
    if (b == KV_NO_BLOCK)
        return attnd_err_set(err, ATTND_ERANGE, "KV cache full: 0 of %u blocks free",
                             pool->n_blocks);
    pool->refcount[b] = 1;
    *block = b;
    return ATTND_OK;
}

/* A bad id or a ref/unref of a free block is a caller bug. Debug builds stop
 * on it; release builds ignore it, because acting on it would push a block
 * onto the free stack twice and hand it to two sequences later, which is far
 * worse than a leaked reference. */
void kv_block_ref(kv_pool *pool, uint32_t block)
{
    assert(block < pool->n_blocks && "kv_block_ref: block id out of range");
    if (block >= pool->n_blocks)
        return;
    assert(pool->refcount[block] != 0 && "kv_block_ref: block is free");
    assert(pool->refcount[block] != UINT32_MAX && "kv_block_ref: refcount overflow");
    if (pool->refcount[block] == 0 || pool->refcount[block] == UINT32_MAX)
        return;
    pool->refcount[block]++;
}

void kv_block_unref(kv_pool *pool, uint32_t block)
{
    assert(block < pool->n_blocks && "kv_block_unref: block id out of range");
    if (block >= pool->n_blocks)
        return;
    assert(pool->refcount[block] != 0 && "kv_block_unref: block is already free");
    if (pool->refcount[block] == 0)
        return;
    if (--pool->refcount[block] != 0)
        return;
    if (kv_prefix_is_cached(pool, block))
        kv_prefix_park(pool, block); /* reusable by a later prompt until evicted */
    else
        pool->free_stack[pool->n_free++] = block;
}

uint32_t kv_block_refcount(const kv_pool *pool, uint32_t block)
{
    assert(block < pool->n_blocks);
    return block < pool->n_blocks ? pool->refcount[block] : 0;
}

static void *block_half(const kv_pool *pool, uint32_t block, uint32_t layer, int v)
{
    assert(block < pool->n_blocks && layer < pool->n_layer);
    if (block >= pool->n_blocks || layer >= pool->n_layer)
        return NULL;
    return pool->data + (size_t)block * pool->block_bytes +
           ((size_t)layer * 2 + (size_t)v) * pool->half_bytes;
}

void *kv_block_k(const kv_pool *pool, uint32_t block, uint32_t layer)
{
    return block_half(pool, block, layer, 0);
}

void *kv_block_v(const kv_pool *pool, uint32_t block, uint32_t layer)
{
    return block_half(pool, block, layer, 1);
}

/* ------------------------------------------------------------ sequences */

kv_seq *kv_seq_new(void)
{
    return calloc(1, sizeof(kv_seq));
}

void kv_seq_free(kv_pool *pool, kv_seq *seq)
{
    if (!seq)
        return;
    kv_seq_truncate(pool, seq, 0);
    free(seq->blocks);
    free(seq);
}

/* Grows the table's array to hold at least N ids; the ids already in it are
 * untouched on failure. */
int kv_seq_grow(kv_seq *seq, uint32_t n, attnd_err *err)
{
    if (n <= seq->cap)
        return ATTND_OK;
    uint64_t cap = seq->cap ? seq->cap : 4;
    while (cap < n)
        cap *= 2;
    if (cap > UINT32_MAX)
        cap = UINT32_MAX;
    uint64_t bytes;
    uint32_t *b = NULL;
    if (attnd_ckd_mul(cap, sizeof *b, &bytes) && bytes <= SIZE_MAX)
        b = realloc(seq->blocks, (size_t)bytes);
    if (!b)
        return attnd_err_set(err, ATTND_ENOMEM, "kv seq: out of memory for %u blocks", n);
    seq->blocks = b;
    seq->cap = (uint32_t)cap;
    return ATTND_OK;
}

static uint32_t blocks_for(const kv_pool *pool, uint32_t n_tokens)
{
    /* 64-bit so n_tokens near UINT32_MAX cannot wrap; the quotient fits. */
    return (uint32_t)(((uint64_t)n_tokens + pool->block_size - 1) / pool->block_size);
}

int kv_seq_reserve(kv_pool *pool, kv_seq *seq, uint32_t n_tokens, attnd_err *err)
{
    if (!pool || !seq)
        return attnd_err_set(err, ATTND_EINVAL, "kv reserve: %s is NULL", pool ? "seq" : "pool");
    uint32_t need = blocks_for(pool, n_tokens);
    if (need <= seq->n)
        return ATTND_OK;
    uint32_t missing = need - seq->n;
    /* Checked before growing the table, so a hopeless request neither
     * allocates nor needs rolling back. */
    if (missing > kv_pool_n_free(pool))
        return attnd_err_set(err, ATTND_ERANGE,
                             "KV cache full: %u tokens need %u more blocks, %u of %u blocks free",
                             n_tokens, missing, kv_pool_n_free(pool), pool->n_blocks);
    int rc = kv_seq_grow(seq, need, err);
    if (rc != ATTND_OK)
        return rc;
    while (seq->n < need) {
        rc = kv_block_alloc(pool, &seq->blocks[seq->n], err);
        assert(rc == ATTND_OK); /* n_free was checked above */
        (void)rc;
        seq->n++;
    }
    return ATTND_OK;
}

void kv_seq_truncate(kv_pool *pool, kv_seq *seq, uint32_t n_tokens)
{
    if (!pool || !seq)
        return;
    uint32_t keep = blocks_for(pool, n_tokens);
    /* From the end: a table never has holes, so positions [0, n_tokens)
     * keep their blocks. */
    while (seq->n > keep)
        kv_block_unref(pool, seq->blocks[--seq->n]);
    if (seq->n_pub > keep) {
        /* the chain uid of block keep-1 is not kept: the next publish walks
         * the table's cached blocks again from the start */
        seq->n_pub = 0;
        seq->chain = 0;
    }
}

uint32_t kv_seq_capacity(const kv_pool *pool, const kv_seq *seq)
{
    uint64_t cap = (uint64_t)seq->n * pool->block_size;
    /* A table reserved for up to UINT32_MAX tokens can reach past it by up
     * to block_size - 1; positions are uint32, so saturating loses nothing. */
    return cap > UINT32_MAX ? UINT32_MAX : (uint32_t)cap;
}

uint32_t kv_seq_n_blocks(const kv_seq *seq) { return seq->n; }
const uint32_t *kv_seq_blocks(const kv_seq *seq) { return seq->blocks; }

int kv_seq_share(kv_pool *pool, kv_seq *dst, const kv_seq *src, attnd_err *err)
{
    if (!pool || !dst || !src)
        return attnd_err_set(err, ATTND_EINVAL, "kv share: %s is NULL",
                             !pool ? "pool" : !dst ? "dst" : "src");
    if (dst->n != 0)
        return attnd_err_set(err, ATTND_EINVAL,
                             "kv share: dst is not empty (%u blocks)", dst->n);
    if (src->n == 0)
        return ATTND_OK;
    int rc = kv_seq_grow(dst, src->n, err);
    if (rc != ATTND_OK)
        return rc;
    for (uint32_t i = 0; i < src->n; i++) {
        kv_block_ref(pool, src->blocks[i]);
        dst->blocks[i] = src->blocks[i];
    }
    dst->n = src->n;
    dst->n_pub = src->n_pub;
    dst->chain = src->chain;
    return ATTND_OK;
}

int kv_seq_own(kv_pool *pool, kv_seq *seq, uint32_t pos, attnd_err *err)
{
    if (!pool || !seq)
        return attnd_err_set(err, ATTND_EINVAL, "kv own: %s is NULL", pool ? "seq" : "pool");
    uint32_t i = pos / pool->block_size;
    if (i >= seq->n)
        return ATTND_OK;
    uint32_t b = seq->blocks[i];
    if (pool->refcount[b] == 1) {
        kv_prefix_uncache(pool, b);
    } else {
        uint32_t copy = KV_NO_BLOCK;
        int rc = kv_block_alloc(pool, &copy, err);
        if (rc != ATTND_OK)
            return rc;
        memcpy(pool->data + (size_t)copy * pool->block_bytes,
               pool->data + (size_t)b * pool->block_bytes, pool->block_bytes);
        kv_block_unref(pool, b);
        seq->blocks[i] = copy;
    }
    if (seq->n_pub > i) {
        seq->n_pub = 0;
        seq->chain = 0;
    }
    return ATTND_OK;
}

int kv_seq_write(kv_pool *pool, const kv_seq *seq, uint32_t layer, uint32_t pos,
                 const float *k, const float *v, attnd_err *err)
{
    if (!pool || !seq || !k || !v)
        return attnd_err_set(err, ATTND_EINVAL, "kv write: %s is NULL",
                             !pool ? "pool" : !seq ? "seq" : !k ? "k" : "v");
    if (layer >= pool->n_layer)
        return attnd_err_set(err, ATTND_EINVAL, "kv write: layer %u >= n_layer %u", layer,
                             pool->n_layer);
    uint32_t cap = kv_seq_capacity(pool, seq);
    if (pos >= cap)
        return attnd_err_set(err, ATTND_ERANGE,
                             "kv write: position %u is past the sequence's capacity %u", pos,
                             cap);
    uint32_t block = seq->blocks[pos / pool->block_size];
    /* Another sequence reads this block (kv_seq_share, kv_seq_match), or a
     * later prompt may: writing it would change their past. */
    if (pool->refcount[block] != 1 || kv_prefix_is_cached(pool, block))
        return attnd_err_set(err, ATTND_EINVAL,
                             "kv write: position %u is in block %u, which is shared "
                             "(refcount %u%s)",
                             pos, block, pool->refcount[block],
                             kv_prefix_is_cached(pool, block) ? ", prefix-cached" : "");
    size_t row = pos % pool->block_size;
    unsigned char *kb = block_half(pool, block, layer, 0);
    unsigned char *vb = block_half(pool, block, layer, 1);
    size_t hd = pool->head_dim;
    size_t head_stride = (size_t)pool->block_size * hd; /* elements */
    for (size_t h = 0; h < pool->n_head_kv; h++) {
        size_t off = h * head_stride + row * hd;
        const float *ks = k + h * hd, *vs = v + h * hd;
        if (pool->dtype == KV_DTYPE_F32) {
            memcpy((float *)(void *)kb + off, ks, hd * sizeof(float));
            memcpy((float *)(void *)vb + off, vs, hd * sizeof(float));
        } else {
            uint16_t *kd = (uint16_t *)(void *)kb + off, *vd = (uint16_t *)(void *)vb + off;
            for (size_t d = 0; d < hd; d++) {
                kd[d] = attnd_f32_to_f16(ks[d]);
                vd[d] = attnd_f32_to_f16(vs[d]);
            }
        }
    }
    return ATTND_OK;
}
