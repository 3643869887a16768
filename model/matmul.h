/* matmul.h - weight matmuls: y = x · Wᵀ for a batch of M activation rows and a
 * weight matrix stored in its file type (F32, F16, BF16, Q8_0).
 *
 * F32 goes to OpenBLAS sgemm; F16 and BF16 are converted inside the kernel
 * (a tile of rows at a time into per-thread scratch, then sgemm; or fused
 * convert-and-dot when M is small), never as a whole tensor; Q8_0 meets
 * activations quantized to Q8_0 in integer dot products. Threads split the
 * output rows: each call computes rows [r0, r1) of W. */
#ifndef ATTND_MATMUL_H
#define ATTND_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "model_internal.h"

/* Rows of W converted per tile in the tiled path. */
#define MATMUL_TILE_ROWS 32u

/* Which dot-product kernels to use: chosen at run time from the CPU's
 * features (the binary itself is built for baseline x86-64). */
typedef enum matmul_isa {
    MATMUL_ISA_SCALAR = 0,
    MATMUL_ISA_AVX2 = 1, /* AVX2 + FMA + F16C */
} matmul_isa;

matmul_isa matmul_best_isa(void);
const char *matmul_isa_name(matmul_isa isa);

/* Floats of scratch one thread needs for weights with n_in columns. */
size_t matmul_scratch_floats(uint32_t n_in);

/* y[m*ldy + r] = sum_k x[m*n_in + k] * W[r][k] for m < M, r0 <= r < r1. */
void matmul_rows(const model_weight *w, const float *x, uint32_t M, float *y, uint32_t ldy,
                 uint32_t r0, uint32_t r1, float *scratch, matmul_isa isa);

/* Q8_0 weights multiply activations quantized to Q8_0 blocks (as ggml does,
 * and the reference logits with it), with integer dot products per block.
 * matmul_rows does both steps in one call. A caller running many row ranges
 * over the same activations quantizes once instead: matmul_quantize_rows
 * fills rows [m0, m1) of XQ ([M][n_in/32] blocks; the same bits whatever the
 * ISA), then matmul_rows_q8_0 multiplies. */
void matmul_quantize_rows(const float *x, uint32_t n_in, uint32_t m0, uint32_t m1,
                          dtype_q8_0 *xq, matmul_isa isa);
void matmul_rows_q8_0(const model_weight *w, const dtype_q8_0 *xq, uint32_t M, float *y,
                      uint32_t ldy, uint32_t r0, uint32_t r1, matmul_isa isa);

/* The plain reference: double accumulation over converted weights (and, for
 * Q8_0, over the activations after a round trip through Q8_0 blocks). */
void matmul_ref(const model_weight *w, const float *x, uint32_t M, float *y, uint32_t ldy);

#endif
