/* kv.h - the paged KV cache: one pool of fixed-size blocks allocated once,
 * per-sequence block tables, reference-counted blocks.
 *
 * A block holds K and V for `block_size` consecutive positions of one
 * sequence, for every layer and every KV head (n_head_kv, not n_head: the cache
 * is sized by GQA grouping). Inside a block, per layer:
 *     K: [n_head_kv][block_size][head_dim]   then   V: same shape
 * so that one head's K (or V) rows for a block are contiguous: the tile the
 * attention kernel reads.
 *
 * Prefix cache (kv_pool_params.prefix_cache): a full block whose K/V are
 * written can be published under its tokens and the chain of blocks before
 * it (vLLM's idea); a later sequence whose tokens start the same way shares
 * those blocks instead of recomputing them. Shared and published blocks are
 * read-only (kv_seq_write refuses them; kv_seq_own makes a private copy).
 * A published block no sequence uses stays cached in an LRU and still counts
 * as free: allocation takes plain free blocks first, then evicts the least
 * recently released cached one. Blocks in use are never evicted.
 *
 * Threads: a pool and its sequences are owned by one thread (the scheduler);
 * nothing here locks. Reading block data from worker threads during a step is
 * fine as long as the owner does not alloc/free concurrently. */
#ifndef ATTND_KV_H
#define ATTND_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attnd_err.h"

typedef enum kv_dtype {
    KV_DTYPE_F32 = 0,
    KV_DTYPE_F16 = 1,
} kv_dtype;

#define KV_DEFAULT_BLOCK_SIZE 16u
#define KV_NO_BLOCK UINT32_MAX

typedef struct kv_pool_params {
    uint32_t n_layer;
    uint32_t n_head_kv;
    uint32_t head_dim;
    uint32_t block_size;   /* tokens per block; 0 = KV_DEFAULT_BLOCK_SIZE */
    kv_dtype dtype;
    uint64_t budget_bytes; /* pool size in bytes (rounded down to whole blocks) */
    uint32_t n_blocks;     /* or an exact block count; wins when non-zero */
    bool prefix_cache;     /* keep published blocks for reuse (see above) */
} kv_pool_params;

typedef struct kv_pool kv_pool;

/* Allocates the whole pool once. Fails (naming the parameter) when the
 * shape is zero, the sizes overflow, or the budget holds no block. */
int kv_pool_new(const kv_pool_params *p, kv_pool **out, attnd_err *err);
void kv_pool_free(kv_pool *pool);

uint32_t kv_pool_block_size(const kv_pool *pool);
uint32_t kv_pool_n_blocks(const kv_pool *pool);
/* Blocks an allocation can take: the plain free ones plus cached blocks no
 * sequence uses (kv_pool_n_evictable). */
uint32_t kv_pool_n_free(const kv_pool *pool);
/* Tokens the whole pool holds: n_blocks * block_size, in 64 bits (a 1 TiB
 * pool of small blocks passes 2^32). */
uint64_t kv_pool_n_tokens(const kv_pool *pool);
kv_dtype kv_pool_dtype(const kv_pool *pool);
size_t kv_dtype_size(kv_dtype t);
/* 2 * n_layer * n_head_kv * head_dim * element size. */
uint64_t kv_pool_bytes_per_token(const kv_pool *pool);
uint64_t kv_pool_block_bytes(const kv_pool *pool);

/* Blocks. kv_block_alloc returns a block with refcount 1, or ATTND_ERANGE
 * ("KV cache full") when none is free. kv_block_unref frees at zero. */
int kv_block_alloc(kv_pool *pool, uint32_t *block, attnd_err *err);
void kv_block_ref(kv_pool *pool, uint32_t block);
void kv_block_unref(kv_pool *pool, uint32_t block);
uint32_t kv_block_refcount(const kv_pool *pool, uint32_t block);

/* Start of layer LAYER's K (or V) data in BLOCK: [n_head_kv][block_size][head_dim]
 * elements of the pool's dtype. */
void *kv_block_k(const kv_pool *pool, uint32_t block, uint32_t layer);
void *kv_block_v(const kv_pool *pool, uint32_t block, uint32_t layer);

/* A sequence's block table: logical block i holds positions
 * [i*block_size, (i+1)*block_size). */
typedef struct kv_seq kv_seq;

kv_seq *kv_seq_new(void);
/* Returns every block to the pool (unref) and frees the table. */
void kv_seq_free(kv_pool *pool, kv_seq *seq);
/* Makes room for positions [0, n_tokens): allocates the missing blocks, all
 * or nothing: on failure (ATTND_ERANGE, pool exhausted) the table is as before. */
int kv_seq_reserve(kv_pool *pool, kv_seq *seq, uint32_t n_tokens, attnd_err *err);
/* Shrinks to positions [0, n_tokens), unreferencing blocks no longer needed. */
void kv_seq_truncate(kv_pool *pool, kv_seq *seq, uint32_t n_tokens);
/* Positions the table has room for (n_blocks * block_size). */
uint32_t kv_seq_capacity(const kv_pool *pool, const kv_seq *seq);
uint32_t kv_seq_n_blocks(const kv_seq *seq);
const uint32_t *kv_seq_blocks(const kv_seq *seq);
/* Makes DST share all of SRC's blocks (refcount + 1 each); DST must be empty.
 * The basis for prefix caching: shared blocks must not be written. */
int kv_seq_share(kv_pool *pool, kv_seq *dst, const kv_seq *src, attnd_err *err);

/* Makes the block holding position POS private to SEQ before it is written
 * (a rewind into a shared or published block): a block only SEQ uses leaves
 * the cache; a block others share is copied into a fresh one. ATTND_ERANGE:
 * no block free for the copy (the table is unchanged). POS past the table:
 * nothing to do. */
int kv_seq_own(kv_pool *pool, kv_seq *seq, uint32_t pos, attnd_err *err);

/* --- the prefix cache (no-ops with prefix_cache off) */

/* Blocks with a published prefix, in use or not; and those no sequence uses
 * (evictable, counted in kv_pool_n_free). */
uint32_t kv_pool_n_cached(const kv_pool *pool);
uint32_t kv_pool_n_evictable(const kv_pool *pool);
/* SEQ must be empty: shares the longest run of published blocks whose tokens
 * are TOKENS[0..], whole blocks only and at most MAX_TOKENS positions, and
 * returns the positions it covers (a multiple of block_size, possibly 0). */
uint32_t kv_seq_match(kv_pool *pool, kv_seq *seq, const int32_t *tokens, uint32_t max_tokens);
/* Publishes SEQ's full blocks among positions [0, N_TOKENS), whose K/V must be
 * written and whose tokens are TOKENS. Blocks already published are skipped;
 * a block whose prefix another block already holds stays private. */
void kv_seq_publish(kv_pool *pool, kv_seq *seq, const int32_t *tokens, uint32_t n_tokens);

/* Stores K and V ([n_head_kv][head_dim] floats each) for position POS of
 * layer LAYER, converting to the pool's dtype. POS must be below the
 * sequence's capacity (ATTND_ERANGE otherwise, nothing written) and in a block
 * only SEQ uses and nobody published (ATTND_EINVAL otherwise). */
int kv_seq_write(kv_pool *pool, const kv_seq *seq, uint32_t layer, uint32_t pos,
                 const float *k, const float *v, attnd_err *err);

#endif
