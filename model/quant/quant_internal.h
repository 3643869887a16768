/* quant_internal.h - what the family files of model/quant share: each
 * family file (quant_float.c, quant_legacy.c, quant_k.c, quant_k_low.c,
 * quant_iq4.c) defines the traits of its types; quant.c indexes them by
 * type. Adding a type: its functions and traits in its family file, one
 * line in quant.c's table. */
#ifndef ATTND_QUANT_INTERNAL_H
#define ATTND_QUANT_INTERNAL_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant.h"
#include "quant_blocks.h"

extern const quant_traits quant_traits_f32, quant_traits_f16, quant_traits_bf16;
extern const quant_traits quant_traits_q4_0, quant_traits_q4_1, quant_traits_q5_0,
    quant_traits_q5_1, quant_traits_q8_0, quant_traits_q8_1;
extern const quant_traits quant_traits_q4_K, quant_traits_q5_K, quant_traits_q6_K,
    quant_traits_q8_K;
extern const quant_traits quant_traits_q2_K, quant_traits_q3_K;
extern const quant_traits quant_traits_iq4_nl, quant_traits_iq4_xs;

/* Activation row M of a quant_dot_fn's X (rows X_STRIDE bytes apart), and
 * its block B in each activation format. */
static inline const uint8_t *quant_act_row(const void *x, size_t x_stride, uint32_t m)
{
    return (const uint8_t *)x + (size_t)m * x_stride;
}

static inline const quant_block_q8_0 *quant_act_q8_0(const void *x, size_t x_stride, uint32_t m,
                                                     size_t b)
{
    return (const quant_block_q8_0 *)(const void *)quant_act_row(x, x_stride, m) + b;
}

static inline const quant_block_q8_1 *quant_act_q8_1(const void *x, size_t x_stride, uint32_t m,
                                                     size_t b)
{
    return (const quant_block_q8_1 *)(const void *)quant_act_row(x, x_stride, m) + b;
}

static inline const quant_block_q8_K *quant_act_q8_K(const void *x, size_t x_stride, uint32_t m,
                                                     size_t b)
{
    return (const quant_block_q8_K *)(const void *)quant_act_row(x, x_stride, m) + b;
}

/* One expansion of CALL(k) per batch size (a quant_dot_fn's NX is 1..4),
 * so a kernel's row loops unroll and its per-row state stays in
 * registers. */
#define QUANT_PER_NX(nx, CALL)                                                                     \
    switch (nx) {                                                                                  \
    case 1: CALL(1); break;                                                                        \
    case 2: CALL(2); break;                                                                        \
    case 3: CALL(3); break;                                                                        \
    default: CALL(4); break;                                                                       \
    }

/* The same for tiles (quant_tile_fn): one expansion of CALL(nw, nx) per
 * shape, NW and NX each 1..4. */
#define QUANT_PER_NX_OF(NW, nx, CALL)                                                              \
    switch (nx) {                                                                                  \
    case 1: CALL(NW, 1); break;                                                                    \
    case 2: CALL(NW, 2); break;                                                                    \
    case 3: CALL(NW, 3); break;                                                                    \
    default: CALL(NW, 4); break;                                                                   \
    }
#define QUANT_PER_TILE(nw, nx, CALL)                                                               \
    switch (nw) {                                                                                  \
    case 1: QUANT_PER_NX_OF(1, nx, CALL) break;                                                    \
    case 2: QUANT_PER_NX_OF(2, nx, CALL) break;                                                    \
    case 3: QUANT_PER_NX_OF(3, nx, CALL) break;                                                    \
    default: QUANT_PER_NX_OF(4, nx, CALL) break;                                                   \
    }

/* Weights are read once, in order, from memory far larger than the caches,
 * and the hardware prefetcher stops at every 4 KiB page: a kernel asks for
 * the lines QUANT_PREFETCH_AHEAD bytes past the BYTES it is about to read
 * (past a row's end that is the next row, which a matmul reads next; a
 * prefetch never faults). Measured on Intel (Xeon, AVX-512): one Q4_K or
 * IQ4_XS row at a time streamed at half the rate without it. */
#define QUANT_PREFETCH_AHEAD 2048

static inline void quant_prefetch(const void *p, size_t bytes)
{
    for (size_t off = 0; off < bytes; off += 64)
        __builtin_prefetch((const char *)p + QUANT_PREFETCH_AHEAD + off, 0, 3);
}

/* A half scale that is neither NaN nor infinite. */
static inline bool quant_half_finite(uint16_t h)
{
    return (h & 0x7c00u) != 0x7c00u;
}

#endif
