/* engine.h - the batched forward pass: one call runs one step for a batch of
 * entries (sequence, token, position, wants-logits) mixing several sequences
 * and prompt chunks: one iteration of an iteration-level scheduler.
 *
 * Weight matmuls run once per step over all entries; attention runs per
 * sequence over its paged KV cache with the tiled kernel. Work inside a step
 * is spread over the engine's worker pool; OpenBLAS is kept single-threaded
 * inside each worker so the cores are never oversubscribed.
 *
 * Threads: an engine, its KV pool and its sequences belong to one thread (the
 * caller of engine_step); the workers only run inside engine_step. */
#ifndef ATTND_ENGINE_H
#define ATTND_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attnd_err.h"
#include "kv.h"
#include "model.h"

typedef struct engine_params {
    uint32_t n_threads;      /* 0: number of cores */
    uint64_t kv_bytes;       /* KV pool budget; 0 with kv_blocks 0: room for n_ctx x 4 */
    uint32_t kv_blocks;      /* or an exact block count */
    uint32_t kv_block_size;  /* tokens per block; 0: 16 */
    kv_dtype kv_type;
    uint32_t max_entries;    /* most entries per step; 0: 512 */
} engine_params;

typedef struct engine_entry {
    uint32_t seq;
    int32_t token;
    uint32_t pos;
    bool want_logits;
} engine_entry;

typedef struct engine engine;

int engine_new(const model *m, const engine_params *p, engine **out, attnd_err *err);
void engine_free(engine *e);

/* Sequences: ids are small integers reused after close. Closing returns the
 * sequence's KV blocks to the pool. */
int engine_seq_open(engine *e, uint32_t *seq, attnd_err *err);
void engine_seq_close(engine *e, uint32_t seq);
/* Positions already in the sequence's cache. */
uint32_t engine_seq_len(const engine *e, uint32_t seq);

/* Runs one step. Entries of one sequence must be adjacent in the array and at
 * consecutive positions starting at or before the sequence's length (starting
 * before it rewinds the sequence). LOGITS receives one row of n_vocab floats
 * per entry that wants logits, in entry order. On ATTND_ERANGE ("KV cache
 * full") nothing was computed or written and the caller may free blocks and
 * retry. */
int engine_step(engine *e, const engine_entry *entries, size_t n, float *logits,
                attnd_err *err);

const kv_pool *engine_kv(const engine *e);
uint32_t engine_n_threads(const engine *e);

#endif
