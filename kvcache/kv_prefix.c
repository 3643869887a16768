/* kv_prefix.c - the prefix cache of the paged KV pool (kv.h): published
 * blocks keyed by (uid of the block before, tokens), a chained hash table over
 * them, and an LRU of published blocks no sequence uses.
 *
 * A block's K/V depend on its tokens and on every token before it; the key
 * names the latter by the uid of the previous block in the chain, and uids
 * are never reused, so a match is exact without comparing whole prefixes and
 * cannot hit a stale chain whose earlier block was evicted and refilled.
 * Everything here is O(block_size) per block: a lookup hashes one block's
 * tokens and compares them against the few blocks in its bucket. */
#include <stdlib.h>
#include <string.h>

#include "kv_internal.h"

int kv_prefix_init(kv_pool *pool, attnd_err *err)
{
    uint32_t n = pool->n_blocks;
    uint64_t buckets = 1;
    while (buckets < n)
        buckets <<= 1; /* n < 2^32 - 1, so this stops at 2^32 at most */
    if (buckets > (uint64_t)SIZE_MAX / sizeof(uint32_t) ||
        (uint64_t)n * pool->block_size > (uint64_t)SIZE_MAX / sizeof(int32_t))
        return attnd_err_set(err, ATTND_ERANGE, "kv pool: prefix cache for %u blocks is too large",
                             n);
    pool->uid = calloc(n, sizeof *pool->uid);
    pool->parent = calloc(n, sizeof *pool->parent);
    pool->key_hash = calloc(n, sizeof *pool->key_hash);
    pool->hnext = malloc((size_t)n * sizeof *pool->hnext);
    pool->bucket = malloc((size_t)buckets * sizeof *pool->bucket);
    pool->tokens = malloc((size_t)n * pool->block_size * sizeof *pool->tokens);
    pool->lru_prev = malloc((size_t)n * sizeof *pool->lru_prev);
    pool->lru_next = malloc((size_t)n * sizeof *pool->lru_next);
    if (!pool->uid || !pool->parent || !pool->key_hash || !pool->hnext || !pool->bucket ||
        !pool->tokens || !pool->lru_prev || !pool->lru_next)
        return attnd_err_set(err, ATTND_ENOMEM, "kv pool: out of memory for the prefix cache");
    for (uint64_t i = 0; i < buckets; i++)
        pool->bucket[i] = KV_NO_BLOCK;
    pool->bucket_mask = (uint32_t)(buckets - 1);
    pool->lru_head = pool->lru_tail = KV_NO_BLOCK;
    pool->cache_on = true;
    return ATTND_OK;
}

void kv_prefix_free(kv_pool *pool)
{
    free(pool->uid);
    free(pool->parent);
    free(pool->key_hash);
    free(pool->hnext);
    free(pool->bucket);
    free(pool->tokens);
    free(pool->lru_prev);
    free(pool->lru_next);
}

bool kv_prefix_is_cached(const kv_pool *pool, uint32_t block)
{
    return pool->cache_on && pool->uid[block] != 0;
}

uint32_t kv_pool_n_cached(const kv_pool *pool) { return pool->n_cached; }
uint32_t kv_pool_n_evictable(const kv_pool *pool) { return pool->n_lru; }

/* splitmix64's finaliser: cheap and mixes every input bit into the bucket. */
static uint64_t mix(uint64_t h)
{
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

static uint64_t key_of(const kv_pool *pool, uint64_t parent, const int32_t *tokens)
{
    uint64_t h = mix(parent + 0x9e3779b97f4a7c15ull);
    for (uint32_t i = 0; i < pool->block_size; i++)
        h = mix(h ^ (uint32_t)tokens[i]);
    return h;
}

static uint32_t find(const kv_pool *pool, uint64_t parent, const int32_t *tokens, uint64_t h)
{
    for (uint32_t b = pool->bucket[h & pool->bucket_mask]; b != KV_NO_BLOCK; b = pool->hnext[b])
        if (pool->key_hash[b] == h && pool->parent[b] == parent &&
            memcmp(pool->tokens + (size_t)b * pool->block_size, tokens,
                   pool->block_size * sizeof *tokens) == 0)
            return b;
    return KV_NO_BLOCK;
}

static void lru_unlink(kv_pool *pool, uint32_t b)
{
    uint32_t p = pool->lru_prev[b], n = pool->lru_next[b];
    if (p != KV_NO_BLOCK)
        pool->lru_next[p] = n;
    else
        pool->lru_head = n;
    if (n != KV_NO_BLOCK)
        pool->lru_prev[n] = p;
    else
        pool->lru_tail = p;
    pool->n_lru--;
}

void kv_prefix_park(kv_pool *pool, uint32_t b)
{
    pool->lru_prev[b] = pool->lru_tail;
    pool->lru_next[b] = KV_NO_BLOCK;
    if (pool->lru_tail != KV_NO_BLOCK)
        pool->lru_next[pool->lru_tail] = b;
    else
        pool->lru_head = b;
    pool->lru_tail = b;
    pool->n_lru++;
}

void kv_prefix_uncache(kv_pool *pool, uint32_t b)
{
    if (!kv_prefix_is_cached(pool, b))
        return;
    uint32_t *pp = &pool->bucket[pool->key_hash[b] & pool->bucket_mask];
    while (*pp != b)
        pp = &pool->hnext[*pp];
    *pp = pool->hnext[b];
    pool->uid[b] = 0;
    pool->n_cached--;
}

uint32_t kv_prefix_evict(kv_pool *pool)
{
    if (!pool->cache_on || pool->lru_head == KV_NO_BLOCK)
        return KV_NO_BLOCK;
    /* The head was released longest ago. A finished sequence releases its
     * blocks last-first, so a chain's tail goes before its head. */
    uint32_t b = pool->lru_head;
    lru_unlink(pool, b);
    kv_prefix_uncache(pool, b);
    return b;
}

uint32_t kv_seq_match(kv_pool *pool, kv_seq *seq, const int32_t *tokens, uint32_t max_tokens)
{
    if (!pool || !seq || !tokens || !pool->cache_on || seq->n != 0)
        return 0;
    const uint32_t bs = pool->block_size, whole = max_tokens / bs;
    uint64_t chain = 0;
    uint32_t i = 0;
    for (; i < whole; i++) {
        const int32_t *t = tokens + (size_t)i * bs;
        uint32_t b = find(pool, chain, t, key_of(pool, chain, t));
        if (b == KV_NO_BLOCK)
            break;
        if (kv_seq_grow(seq, i + 1, NULL) != ATTND_OK)
            break; /* out of memory: what matched so far stays */
        if (pool->refcount[b] == 0) {
            lru_unlink(pool, b);
            pool->refcount[b] = 1;
        } else {
            kv_block_ref(pool, b);
        }
        seq->blocks[i] = b;
        seq->n = i + 1;
        chain = pool->uid[b];
    }
    seq->n_pub = i;
    seq->chain = chain;
    return i * bs;
}

void kv_seq_publish(kv_pool *pool, kv_seq *seq, const int32_t *tokens, uint32_t n_tokens)
{
    if (!pool || !seq || !tokens || !pool->cache_on)
        return;
    const uint32_t bs = pool->block_size;
    uint32_t whole = n_tokens / bs;
    if (whole > seq->n)
        whole = seq->n;
    for (uint32_t i = seq->n_pub; i < whole; i++) {
        uint32_t b = seq->blocks[i];
        if (pool->uid[b] != 0) { /* matched, or published through a shared table */
            seq->chain = pool->uid[b];
            seq->n_pub = i + 1;
            continue;
        }
        const int32_t *t = tokens + (size_t)i * bs;
        uint64_t h = key_of(pool, seq->chain, t);
        uint32_t same = find(pool, seq->chain, t, h);
        if (same != KV_NO_BLOCK) {
            /* Computed twice (two prompts ran side by side): the first one
             * stays the cached copy; ours is freed with the sequence. */
            seq->chain = pool->uid[same];
            seq->n_pub = i + 1;
            continue;
        }
        /* A block another table shares unpublished would become read-only
         * under its feet; kv_seq_write already refuses it, so publishing it
         * changes nothing for them. */
        pool->uid[b] = ++pool->next_uid;
        pool->parent[b] = seq->chain;
        pool->key_hash[b] = h;
        memcpy(pool->tokens + (size_t)b * bs, t, bs * sizeof *t);
        uint32_t *head = &pool->bucket[h & pool->bucket_mask];
        pool->hnext[b] = *head;
        *head = b;
        pool->n_cached++;
        seq->chain = pool->uid[b];
        seq->n_pub = i + 1;
    }
}
