/* kv_internal.h - the pool and sequence structs, shared by kv.c (blocks,
 * tables, writes) and kv_prefix.c (the prefix cache). Not for other modules:
 * they see the opaque types of kv.h. */
#ifndef ATTND_KV_INTERNAL_H
#define ATTND_KV_INTERNAL_H

#include "kv.h"

/* Cache-line alignment so a block's head rows line up for vector loads. */
#define KV_ALIGN 64u

struct kv_pool {
    uint32_t n_layer;
    uint32_t n_head_kv;
    uint32_t head_dim;
    uint32_t block_size;
    kv_dtype dtype;
    uint32_t n_blocks;
    size_t elem_size;
    size_t half_bytes;  /* one layer's K (or V) inside a block */
    size_t block_bytes;
    uint64_t bytes_per_token;
    unsigned char *data;
    /* Free block ids as a stack: alloc pops, last unref pushes. The top is
     * the most recently freed block, which is the one most likely still in
     * cache. Cached blocks never go here: at refcount 0 they go to the LRU. */
    uint32_t *free_stack;
    uint32_t n_free;
    /* 0 means free (on the stack or in the LRU); a block is pushed only when
     * its count drops from 1 to 0. */
    uint32_t *refcount;

    /* The prefix cache (kv_prefix.c); all NULL/0 when it is off. A cached
     * block has a uid (never reused, 0: not cached), the uid of the cached
     * block before it in its sequence (0: it is the first) and its tokens;
     * (parent uid, tokens) is its key in a chained hash table. Keying on the
     * parent's uid rather than a hash of the whole prefix makes a lookup
     * exact, and since uids are never reused, a child whose parent was evicted
     * can no longer be reached from the root (it ages out of the LRU). */
    bool cache_on;
    uint64_t *uid;
    uint64_t *parent;
    uint64_t *key_hash;
    uint32_t *hnext;     /* next block in the same bucket */
    uint32_t *bucket;    /* bucket_mask + 1 heads */
    uint32_t bucket_mask;
    int32_t *tokens;     /* block_size per block */
    uint64_t next_uid;
    uint32_t n_cached;   /* blocks with a uid, in use or not */
    /* Cached blocks at refcount 0, least recently released first: what an
     * allocation evicts when the free stack is empty. */
    uint32_t *lru_prev, *lru_next;
    uint32_t lru_head, lru_tail, n_lru;
};

struct kv_seq {
    uint32_t *blocks;
    uint32_t n;
    uint32_t cap;
    /* Prefix cache: the first n_pub blocks are known to the cache (this
     * table's own block or an identical one another sequence published), and
     * chain is the uid the next block's key hangs off. */
    uint32_t n_pub;
    uint64_t chain;
};

/* kv_prefix.c, for kv.c: allocate/free the cache's arrays (kv_pool_new /
 * kv_pool_free); park a cached block whose refcount reached 0 at the LRU's
 * recent end; evict the least recently released cached block, uncached and
 * with refcount 1, for reuse (KV_NO_BLOCK: none); whether a block has a uid;
 * and drop a block in use from the cache (it is about to be written). */
/* kv.c, for kv_prefix.c: grows SEQ's id array to hold at least N ids. */
int kv_seq_grow(kv_seq *seq, uint32_t n, attnd_err *err);

int kv_prefix_init(kv_pool *pool, attnd_err *err);
void kv_prefix_free(kv_pool *pool);
void kv_prefix_park(kv_pool *pool, uint32_t block);
uint32_t kv_prefix_evict(kv_pool *pool);
bool kv_prefix_is_cached(const kv_pool *pool, uint32_t block);
void kv_prefix_uncache(kv_pool *pool, uint32_t block);

#endif
