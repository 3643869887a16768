/* matmul.h - weight matmuls: y = x · Wᵀ for a batch of M activation rows and a
 * weight matrix stored in its file type, through the weight-type table
 * (quant/quant.h).
 *
 * Quantized weights meet activations quantized to the format their type
 * pairs with (Q8_0, Q8_1, Q8_K), in integer dot products: one kernel at every
 * M, so a row's result has the same bits whatever shares its batch. F16 and
 * BF16 weights meet float activations in tiles of fused convert-and-dot
 * kernels, also at every M. Where a type has no tile kernel at the CPU's
 * level (F32, or the scalar fallback) small M use its dot and large M
 * sgemm (F32: on the weights themselves, else on converted tiles of rows);
 * never a whole converted tensor. Threads split the output rows: each call
 * computes rows [r0, r1) of W. Every function is re-entrant: the caller owns
 * x, y and the scratch. */
#ifndef ATTND_MATMUL_H
#define ATTND_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#include "model_internal.h"
#include "quant.h"

/* Rows of W converted per tile in the tiled path. */
#define MATMUL_TILE_ROWS 32u

/* Floats of scratch one thread needs for weights with n_in columns. */
size_t matmul_scratch_floats(uint32_t n_in);

/* Bytes of one activation row of n_in values in W's activation format (for
 * float weights: n_in floats). */
size_t matmul_act_row_bytes(const model_weight *w);
/* An upper bound of matmul_act_row_bytes over every quantized weight type
 * with n_in columns: what a buffer of quantized activations shared by all
 * of a model's matmuls needs per row. */
size_t matmul_act_row_bytes_max(uint32_t n_in);

/* y[m*ldy + r] = sum_k x[m*n_in + k] * W[r][k] for m < M, r0 <= r < r1. */
void matmul_rows(const model_weight *w, const float *x, uint32_t M, float *y, uint32_t ldy,
                 uint32_t r0, uint32_t r1, float *scratch, quant_isa isa);

/* matmul_rows does quantize-then-multiply in one call. A caller running many
 * row ranges over the same activations quantizes once instead:
 * matmul_quantize_rows fills rows [m0, m1) of XQ (M rows of
 * matmul_act_row_bytes(w) bytes; the same bits whatever the ISA), then
 * matmul_rows_quant multiplies. For quantized weight types only. */
void matmul_quantize_rows(const model_weight *w, const float *x, uint32_t m0, uint32_t m1,
                          void *xq, quant_isa isa);
void matmul_rows_quant(const model_weight *w, const void *xq, uint32_t M, float *y, uint32_t ldy,
                       uint32_t r0, uint32_t r1, quant_isa isa);

/* Whether W's activations are quantized (matmul_quantize_rows applies). */
bool matmul_quantizes(const model_weight *w);

/* The plain reference: double accumulation over dequantized weights and (for
 * quantized types) the activations after a round trip through their format. */
void matmul_ref(const model_weight *w, const float *x, uint32_t M, float *y, uint32_t ldy);

#endif
