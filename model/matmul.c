/* matmul.c - weight matmuls over the weight-type table (matmul.h): how rows
 * are split, batched and tiled; the per-type arithmetic is in quant/. */
#include "matmul.h"

#include <cblas.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* At or below this many activation rows (a decode batch), the float types'
 * fused convert-and-dot kernels read each weight row once per 4 rows and win
 * over converting tiles into scratch for sgemm. */
#define FUSED_MAX_M 8u
/* The scalar fallback converts a weight row once per activation row. */
#define SCALAR_FUSED_MAX_M 4u
/* Activation rows per dot call (quant_dot_fn's NX), weight rows per tile. */
#define DOT_ROWS 4u
#define TILE_ROWS 4u
/* Activation bytes per block of a batch in the tiled path (half of a Zen 4
 * core's L2). */
#define ACT_BLOCK_BYTES (512u * 1024u)

size_t matmul_scratch_floats(uint32_t n_in)
{
    return (size_t)MATMUL_TILE_ROWS * n_in;
}

bool matmul_quantizes(const model_weight *w)
{
    return w->qt->act_type != GGUF_DTYPE_F32;
}

size_t matmul_act_row_bytes(const model_weight *w)
{
    uint64_t bytes = 0;
    gguf_dtype_row_bytes(w->qt->act_type, w->n_in, &bytes);
    return (size_t)bytes;
}

size_t matmul_act_row_bytes_max(uint32_t n_in)
{
    /* Q8_K's 292 bytes per 256 elements is the widest activation format
     * (Q8_1 takes 288, Q8_0 272); float rows never go through this buffer. */
    return ((size_t)n_in + 255) / 256 * 292;
}

static const uint8_t *weight_row(const model_weight *w, uint32_t r)
{
    return (const uint8_t *)w->data + (size_t)r * w->row_bytes;
}

/* Rows [r0, r1) of W against M activation rows X_STRIDE bytes apart, in
 * groups of DOT_ROWS so each weight row is read once per group; in tiles of
 * TILE_ROWS weight rows by DOT_ROWS activation rows where the type has a
 * tile kernel. */
static void rows_dot(const model_weight *w, quant_dot_fn dot, quant_tile_fn tile, const void *x,
                     size_t x_stride, uint32_t M, float *y, uint32_t ldy, uint32_t r0, uint32_t r1)
{
    if (tile) {
        /* Bits do not depend on the tile's shape, so it is chosen for speed
         * (measured on Zen 4): one stream reads weight rows straight from
         * memory, where interleaving rows halves the rate; a batch reuses
         * each tile from cache and gains from sharing loads. */
        const uint32_t tw = M == 1 ? 1 : M < 8 ? 2 : TILE_ROWS;
        /* A prompt's activations go in blocks that stay in L2 while every
         * weight tile of the range passes over them, instead of the whole
         * prompt (megabytes) coming from L3 once per tile. No gain measured
         * at 512 tokens of the 1.1B shape on this VM's large L3; it bounds
         * the working set for longer prompts and wider models. */
        size_t mb = ACT_BLOCK_BYTES / x_stride / DOT_ROWS * DOT_ROWS;
        mb = mb < DOT_ROWS ? DOT_ROWS : mb;
        for (uint32_t b0 = 0; b0 < M; b0 += (uint32_t)mb) {
            const uint32_t b1 = M - b0 < mb ? M : b0 + (uint32_t)mb;
            for (uint32_t r = r0; r < r1; r += tw) {
                const uint32_t nw = r1 - r < tw ? r1 - r : tw;
                for (uint32_t m0 = b0; m0 < b1; m0 += DOT_ROWS) {
                    const uint32_t nx = b1 - m0 < DOT_ROWS ? b1 - m0 : DOT_ROWS;
                    tile(w->n_in, weight_row(w, r), w->row_bytes, nw,
                         (const uint8_t *)x + m0 * x_stride, x_stride, nx,
                         y + (size_t)m0 * ldy + r, ldy);
                }
            }
        }
        return;
    }
    float out[DOT_ROWS];
    for (uint32_t r = r0; r < r1; r++) {
        const uint8_t *row = weight_row(w, r);
        for (uint32_t m0 = 0; m0 < M; m0 += DOT_ROWS) {
            const uint32_t nx = M - m0 < DOT_ROWS ? M - m0 : DOT_ROWS;
            dot(w->n_in, row, (const uint8_t *)x + m0 * x_stride, x_stride, nx, out);
            for (uint32_t m = 0; m < nx; m++)
                y[(size_t)(m0 + m) * ldy + r] = out[m];
        }
    }
}

void matmul_quantize_rows(const model_weight *w, const float *x, uint32_t m0, uint32_t m1,
                          void *xq, quant_isa isa)
{
    const quant_from_f32_fn quantize = quant_act_quantizer(quant_traits_of(w->qt->act_type), isa);
    const size_t stride = matmul_act_row_bytes(w);
    for (uint32_t m = m0; m < m1; m++)
        quantize(x + (size_t)m * w->n_in, (uint8_t *)xq + m * stride, w->n_in);
}

void matmul_rows_quant(const model_weight *w, const void *xq, uint32_t M, float *y, uint32_t ldy,
                       uint32_t r0, uint32_t r1, quant_isa isa)
{
    rows_dot(w, quant_dot(w->qt, isa), quant_tile(w->qt, isa), xq, matmul_act_row_bytes(w), M, y,
             ldy, r0, r1);
}

/* matmul_rows for quantized weights: quantizes as many activation rows as
 * the scratch holds (over 100 at its size), multiplies, repeats. */
static void rows_quant_chunked(const model_weight *w, const float *x, uint32_t M, float *y,
                               uint32_t ldy, uint32_t r0, uint32_t r1, float *scratch,
                               quant_isa isa)
{
    const size_t fit = matmul_scratch_floats(w->n_in) * sizeof(float) / matmul_act_row_bytes(w);
    const uint32_t chunk = fit < M ? (uint32_t)fit : M;
    for (uint32_t m0 = 0; m0 < M; m0 += chunk) {
        const uint32_t mc = M - m0 < chunk ? M - m0 : chunk;
        matmul_quantize_rows(w, x + (size_t)m0 * w->n_in, 0, mc, scratch, isa);
        matmul_rows_quant(w, scratch, mc, y + (size_t)m0 * ldy, ldy, r0, r1, isa);
    }
}

/* Converts MATMUL_TILE_ROWS weight rows at a time into scratch and hands
 * them to sgemm: the prompt case, where M is large enough for sgemm's
 * blocking to pay for the conversion. */
static void rows_tiled(const model_weight *w, const float *x, uint32_t M, float *y, uint32_t ldy,
                       uint32_t r0, uint32_t r1, float *scratch)
{
    const uint32_t K = w->n_in;
    for (uint32_t t0 = r0; t0 < r1; t0 += MATMUL_TILE_ROWS) {
        uint32_t n = r1 - t0 < MATMUL_TILE_ROWS ? r1 - t0 : MATMUL_TILE_ROWS;
        for (uint32_t i = 0; i < n; i++)
            model_weight_row(w, t0 + i, scratch + (size_t)i * K);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)n, (int)K, 1.0f, x,
                    (int)K, scratch, (int)K, 0.0f, y + t0, (int)ldy);
    }
}

void matmul_rows(const model_weight *w, const float *x, uint32_t M, float *y, uint32_t ldy,
                 uint32_t r0, uint32_t r1, float *scratch, quant_isa isa)
{
    const uint32_t K = w->n_in;
    if (r1 <= r0)
        return;
    if (matmul_quantizes(w)) {
        rows_quant_chunked(w, x, M, y, ldy, r0, r1, scratch, isa);
        return;
    }
    /* F16 and BF16 tiles at every M: one kernel, so a row's bits do not
     * depend on its batch (F32 keeps sgemm for large M, on its own weights) */
    const quant_tile_fn tile = quant_tile(w->qt, isa);
    if (tile || M <= (isa == QUANT_ISA_SCALAR ? SCALAR_FUSED_MAX_M : FUSED_MAX_M)) {
        rows_dot(w, quant_dot(w->qt, isa), tile, x, (size_t)K * sizeof *x, M, y, ldy, r0, r1);
        return;
    }
    if (w->type == GGUF_DTYPE_F32) {
        const float *W = (const float *)w->data + (size_t)r0 * K;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)(r1 - r0), (int)K, 1.0f,
                    x, (int)K, W, (int)K, 0.0f, y + r0, (int)ldy);
        return;
    }
    rows_tiled(w, x, M, y, ldy, r0, r1, scratch);
}

void matmul_ref(const model_weight *w, const float *x, uint32_t M, float *y, uint32_t ldy)
{
    const uint32_t K = w->n_in;
    float *row = malloc((size_t)K * sizeof *row);
    float *xr = malloc((size_t)M * K * sizeof *xr);
    void *xq = malloc(matmul_act_row_bytes_max(K));
    if (!row || !xr || !xq)
        abort();
    /* What the kernels multiply: x itself, or x after a round trip through
     * the activation format. */
    for (uint32_t m = 0; m < M; m++) {
        const float *xm = x + (size_t)m * K;
        if (matmul_quantizes(w)) {
            quant_from_f32(w->qt->act_type, xm, xq, K);
            quant_to_f32(w->qt->act_type, xq, xr + (size_t)m * K, K);
        } else {
            memcpy(xr + (size_t)m * K, xm, (size_t)K * sizeof *xr);
        }
    }
    for (uint32_t r = 0; r < w->n_out; r++) {
        model_weight_row(w, r, row);
        for (uint32_t m = 0; m < M; m++) {
            double s = 0.0;
            for (uint32_t k = 0; k < K; k++)
                s += (double)row[k] * (double)xr[(size_t)m * K + k];
            y[(size_t)m * ldy + r] = (float)s;
        }
    }
    free(row);
    free(xr);
    free(xq);
}
