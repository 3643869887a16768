/* attn.h - tiled exact causal attention over a paged KV cache.
 *
 * softmax(q·Kᵀ·scale)·V computed tile by tile over KV blocks with an online
 * softmax (running max and sum, accumulator rescaled as the max grows): no
 * score matrix is ever materialized and scratch memory does not depend on the
 * context length. GQA-aware: the query heads of one KV group are processed
 * against each K/V tile together, so each tile is read once per group.
 *
 * The kernel does not know the KV cache module: it sees a sequence's cache for
 * one layer as an array of block pointers (an attn_kv_view). */
#ifndef ATTND_ATTN_H
#define ATTND_ATTN_H

#include <stddef.h>
#include <stdint.h>

#include "attnd_err.h"

typedef enum attn_dtype {
    ATTN_DTYPE_F32 = 0,
    ATTN_DTYPE_F16 = 1,
} attn_dtype;

typedef struct attn_params {
    uint32_t n_head;    /* query heads */
    uint32_t n_head_kv; /* K/V heads; n_head % n_head_kv == 0 (1 = MQA) */
    uint32_t head_dim;
    float scale;        /* usually 1/sqrt(head_dim) */
    uint32_t window;    /* 0: full causal; W: query at p sees positions (p-W, p] */
} attn_params;

/* One sequence, one layer: block i holds positions [i*block_size, (i+1)*block_size).
 * k_blocks[i] / v_blocks[i] point to [n_head_kv][block_size][head_dim]
 * elements of dtype. Only blocks covering positions < kv_len are read. */
typedef struct attn_kv_view {
    const void *const *k_blocks;
    const void *const *v_blocks;
    uint32_t n_blocks;
    uint32_t block_size;
    attn_dtype dtype;
} attn_kv_view;

/* Per-thread scratch; its size depends on the parameters, never on the
 * context length. */
typedef struct attn_scratch attn_scratch;
attn_scratch *attn_scratch_new(const attn_params *p);
void attn_scratch_free(attn_scratch *s);
size_t attn_scratch_bytes(const attn_scratch *s);
/* attn_scratch_new picks the vector (AVX2+FMA) row updates when the CPU has
 * them; this makes the scratch use the portable C ones, so tests can hold
 * both to the reference on one machine. */
void attn_scratch_use_portable(attn_scratch *s);

/* Attention for N_Q consecutive query positions POS0 .. POS0+N_Q-1 of one
 * sequence whose K/V for positions [0, POS0+N_Q) are already in the cache.
 * q and out are [n_q][n_head][head_dim]; only KV heads [kv_begin, kv_end) (and
 * their query heads) are computed, so threads can split the work by group.
 * Validates its arguments (ATTND_EINVAL with a message). */
int attn_tiled(const attn_params *p, const attn_kv_view *kv, const float *q, uint32_t n_q,
               uint32_t pos0, uint32_t kv_begin, uint32_t kv_end, float *out,
               attn_scratch *scratch, attnd_err *err);

/* The plain reference: the naive formula in double precision, materializing
 * every score. Same arguments (all KV heads); for tests only. */
int attn_naive_f64(const attn_params *p, const attn_kv_view *kv, const float *q, uint32_t n_q,
                   uint32_t pos0, float *out, attnd_err *err);

/* The attention probabilities themselves, for the query heads HEADS[0, N_HEADS):
 * softmax(q·Kᵀ·scale) in double precision over the same view and queries as
 * attn_tiled, one row of LD >= pos0 + n_q floats per (head, query), at
 * OUT + (k * n_q + i) * LD: position j's weight, 0 where the query cannot see
 * (after it, or outside the window). Each row sums to 1, and weighting V with
 * it gives attn_tiled's output (tests/test_attn.c holds both). Allocates;
 * O(positions x head_dim) per row: for exports, not for the decode loop. */
int attn_probs(const attn_params *p, const attn_kv_view *kv, const float *q, uint32_t n_q,
               uint32_t pos0, const uint32_t *heads, uint32_t n_heads, float *out, size_t ld,
               attnd_err *err);

#endif
