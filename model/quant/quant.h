/* quant.h - the weight-type table: for every tensor element type attnd can
 * compute with, how to dequantize a row, quantize a row, and take dot
 * products against activations in the format the type pairs with. The one
 * place a type's code is found: loader, matmul, embedding lookup, `attnd
 * quantize` and the tests ask this table; none of them switch on the type.
 *
 * Block layouts (elements and bytes per block) are the GGUF reader's facts:
 * gguf_dtype_block_elems/bytes. Every function here is pure and re-entrant:
 * any thread may call it on memory it owns or only reads. */
#ifndef ATTND_QUANT_H
#define ATTND_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

/* Which kernels a caller runs: chosen once at set-up from the CPU's features
 * (the binary is built for baseline x86-64). Each level includes the ones
 * below it. */
typedef enum quant_isa {
    QUANT_ISA_SCALAR = 0,
    QUANT_ISA_AVX2 = 1,   /* AVX2 + FMA + F16C */
    QUANT_ISA_AVX512 = 2, /* + AVX-512 F/BW/DQ/VL and VNNI */
    QUANT_ISA_COUNT
} quant_isa;

/* The best level this CPU runs (asks CPUID: call at set-up, not per row). */
quant_isa quant_best_isa(void);
const char *quant_isa_name(quant_isa isa); /* "scalar", "avx2", "avx512" */

/* N elements (a multiple of the block size) of SRC to DST. */
typedef void (*quant_to_f32_fn)(const void *restrict src, float *restrict dst, size_t n);
typedef void (*quant_from_f32_fn)(const float *restrict src, void *restrict dst, size_t n);

/* Dot products of one weight row W (N elements in the weight's type) with NX
 * (1..4) activation rows in the type's activation format, the first at X and
 * the next X_STRIDE bytes apart: OUT[m] = W · X_m. OUT[m] has the same bits
 * whatever NX is and whichever slot row m sits in, so a sequence's logits do
 * not depend on what it is batched with. */
typedef void (*quant_dot_fn)(uint32_t n, const void *restrict w, const void *restrict x,
                             size_t x_stride, uint32_t nx, float *restrict out);

/* A tile of dot products: NW (1..4) weight rows W_r, W_STRIDE bytes apart,
 * against NX (1..4) activation rows X_m: OUT[m * LDO + r] = W_r · X_m. A
 * type offers one at an ISA only if each product has the bits of that
 * ISA's dot, whatever NW and NX: a batch multiplies in tiles, one row
 * alone in a 1 x NX tile, and the results agree. */
typedef void (*quant_tile_fn)(uint32_t n, const void *restrict w, size_t w_stride, uint32_t nw,
                              const void *restrict x, size_t x_stride, uint32_t nx,
                              float *restrict out, size_t ldo);

typedef struct quant_traits {
    gguf_dtype type;
    /* Format activations are quantized to before dot (Q8_0, Q8_1, Q8_K);
     * GGUF_DTYPE_F32 for float weights, whose dot takes float rows; for an
     * activation format itself, its own type. */
    gguf_dtype act_type;
    /* Dequantization: the reference's bits exactly (golden/dequant). */
    quant_to_f32_fn to_f32;
    /* Weight quantizer (round to nearest, per-block scale search); for an
     * activation format, its reference quantizer. */
    quant_from_f32_fn from_f32;
    /* Activation formats only: the quantizer per ISA, each giving from_f32's
     * bits exactly. NULL entries fall back to the level below. */
    quant_from_f32_fn quantize_act[QUANT_ISA_COUNT];
    /* Weight types (every type but Q8_1 and Q8_K): [QUANT_ISA_SCALAR] is the
     * plain reference, always present; NULL entries above it fall back to
     * the level below. */
    quant_dot_fn dot[QUANT_ISA_COUNT];
    /* Optional, per ISA: tiles with the bits of dot[] at the same level. */
    quant_tile_fn tile[QUANT_ISA_COUNT];
    /* Index of the first of N_BLOCKS blocks whose scale is NaN or infinite,
     * or N_BLOCKS if none; NULL for float types (nothing to check). */
    size_t (*find_bad_scale)(const void *blocks, size_t n_blocks);
} quant_traits;

/* The table entry for T, or NULL when attnd cannot compute with T (an IQ1-3
 * type, an integer type, an unknown id). */
const quant_traits *quant_traits_of(gguf_dtype t);

/* QT's dot kernel for ISA (falling back to lower levels); NULL for the
 * activation-only formats Q8_1 and Q8_K. */
quant_dot_fn quant_dot(const quant_traits *qt, quant_isa isa);
/* QT's tile kernel at the level quant_dot picks for ISA, or NULL when that
 * level has none (then rows go through quant_dot one at a time). */
quant_tile_fn quant_tile(const quant_traits *qt, quant_isa isa);
/* The activation quantizer of activation format T for ISA. */
quant_from_f32_fn quant_act_quantizer(const quant_traits *qt, quant_isa isa);

/* Whole rows through the table: N elements, a multiple of the block size.
 * Return 0, or -1 when T has no entry or N is not a multiple. */
int quant_to_f32(gguf_dtype t, const void *src, float *dst, size_t n);
int quant_from_f32(gguf_dtype t, const float *src, void *dst, size_t n);

#endif
