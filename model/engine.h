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
 * caller of engine_step); the workers only run inside engine_step. The
 * stepping thread is one of the pool's threads and does the row-wise work
 * (norms, rope, residuals) itself; the parallel parts are five hand-offs per
 * layer, each one pool run that ends when every thread is done: q,k,v as one
 * run, attention, the output projection, gate and up as one run, down (plus
 * one run quantizing the activations of a batch of more than 8 rows before
 * each matmul). Workers spin ~0.1 ms on the pool's run counter before they
 * sleep, so a hand-off inside a step costs well under a microsecond (`attnd
 * bench --profile` measures it) instead of a futex wake-up. */
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
    bool profile;            /* time each phase of a step (engine_profile_get) */
    bool prefix_cache;       /* keep published KV blocks for later prompts (kv.h) */
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

/* Makes the freshly opened DST a copy of SRC that shares all its KV blocks
 * (the partial last one too: whichever writes it first gets a private copy,
 * kv_seq_own). Needs no free block. */
int engine_seq_fork(engine *e, uint32_t src, uint32_t dst, attnd_err *err);

/* Attention export (/v1/attention): while a tap is set on a sequence, every
 * step computing positions of it also writes, for the tap's layers and query
 * heads, each of those positions' attention probabilities over the positions
 * it sees, computed exactly (attn_probs) from the same q and cache as the
 * tiled kernel, whose output is unchanged. Row (layer k, head m, position p)
 * is n_rows floats at out + ((k * n_heads + m) * n_rows + p) * n_rows (0 past
 * p); positions at or past n_rows are not written. The caller owns the tap
 * and keeps it alive until it clears it or closes the sequence. */
typedef struct engine_tap {
    const uint32_t *layers;
    uint32_t n_layers;
    const uint32_t *heads;
    uint32_t n_heads;
    uint32_t n_rows;
    float *out; /* n_layers * n_heads * n_rows * n_rows floats */
} engine_tap;
/* TAP NULL clears. ATTND_EINVAL: the sequence is not open, or a layer or head
 * is out of range. */
int engine_seq_tap(engine *e, uint32_t seq, const engine_tap *tap, attnd_err *err);

/* Prefix cache (engine_params.prefix_cache; no-ops without it). On a freshly
 * opened sequence, engine_seq_reuse takes the longest cached run of whole
 * blocks that TOKENS start with, at most MAX_TOKENS positions (keep at least
 * one prompt token to compute, for its logits), and returns the positions it
 * covers: the sequence's length, as if they had been computed. Their K/V are
 * the bits a cold run writes, so the logits that follow are a cold run's as
 * far as the matmuls are batch-independent (every type but F32 weights at
 * large M, which go through sgemm). engine_seq_publish offers the sequence's
 * full blocks among its first N_TOKENS computed positions (tokens TOKENS) to
 * later prompts. */
uint32_t engine_seq_reuse(engine *e, uint32_t seq, const int32_t *tokens, uint32_t max_tokens);
void engine_seq_publish(engine *e, uint32_t seq, const int32_t *tokens, uint32_t n_tokens);

/* Runs one step. Entries of one sequence must be adjacent in the array and at
 * consecutive positions starting at or before the sequence's length (starting
 * before it rewinds the sequence; a rewind holds even when the step fails).
 * LOGITS receives one row of n_vocab floats per entry that wants logits, in
 * entry order. On ATTND_ERANGE ("KV cache full") nothing was computed or
 * written and the caller may free blocks and retry. */
int engine_step(engine *e, const engine_entry *entries, size_t n, float *logits,
                attnd_err *err);

/* Where steps spend their time, for `attnd bench --profile`: wall-clock
 * seconds on the stepping thread per phase, summed over the steps since the
 * engine was made or last reset. A matmul phase includes handing its rows to
 * the workers and waiting for the slowest; WEIGHT_BYTES sums what its weights
 * occupy over those steps (each step reads them once), so bytes over seconds
 * is the phase's weight-read rate. Zero unless engine_params.profile was set. */
typedef enum engine_phase {
    ENGINE_PHASE_EMBED,     /* step set-up, token rows, rope tables */
    ENGINE_PHASE_NORM,      /* rmsnorm / layernorm */
    ENGINE_PHASE_QUANTIZE,  /* activations to the weights' int8 format */
    ENGINE_PHASE_QKV,       /* the q, k, v projections */
    ENGINE_PHASE_ROPE,
    ENGINE_PHASE_KV_WRITE,  /* k, v rows into the paged cache */
    ENGINE_PHASE_ATTENTION, /* tiled attention over the cache */
    ENGINE_PHASE_WO,        /* the attention output projection */
    ENGINE_PHASE_FFN_UP,    /* gate and up (llama), up (gpt2) */
    ENGINE_PHASE_FFN_DOWN,
    ENGINE_PHASE_ELEMWISE,  /* residual adds, biases, silu / gelu */
    ENGINE_PHASE_OUTPUT,    /* final norm and the vocabulary projection */
    ENGINE_PHASE_COUNT
} engine_phase;

typedef struct engine_profile {
    uint64_t steps, entries;
    uint64_t pool_runs; /* parallel hand-offs (each ends in a wait for all) */
    double seconds[ENGINE_PHASE_COUNT];
    uint64_t weight_bytes[ENGINE_PHASE_COUNT]; /* matmul phases */
} engine_profile;

void engine_profile_get(const engine *e, engine_profile *out);
void engine_profile_reset(engine *e);
const char *engine_phase_name(engine_phase p); /* "qkv", "attention", ... */

const kv_pool *engine_kv(const engine *e);
uint32_t engine_n_threads(const engine *e);

#endif
