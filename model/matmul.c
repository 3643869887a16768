/* matmul.c - weight matmul kernels (matmul.h). */
#include "matmul.h"

#include <cblas.h>
#include <stdlib.h>

#include "dtype.h"

/* At or below this many activation rows, a fused convert-and-dot per weight
 * row reads each weight once and wins over tiling into scratch. */
#define FUSED_MAX_M 4u

size_t matmul_scratch_floats(uint32_t n_in)
{
    return (size_t)MATMUL_TILE_ROWS * n_in;
}

static float dot_f32(const float *restrict a, const float *restrict b, uint32_t n)
{
    float s = 0.0f;
    for (uint32_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static float dot_f16(const uint16_t *restrict w, const float *restrict x, uint32_t n)
{
    float s = 0.0f;
    for (uint32_t i = 0; i < n; i++)
        s += attnd_f16_to_f32(w[i]) * x[i];
    return s;
}

static float dot_bf16(const uint16_t *restrict w, const float *restrict x, uint32_t n)
{
    float s = 0.0f;
    for (uint32_t i = 0; i < n; i++)
        s += attnd_bf16_to_f32(w[i]) * x[i];
    return s;
}

static float dot_q8_0(const dtype_q8_0 *restrict w, const float *restrict x, uint32_t n)
{
    float s = 0.0f;
    for (uint32_t b = 0; b < n / DTYPE_QK8_0; b++) {
        const float *xb = x + (size_t)b * DTYPE_QK8_0;
        float sb = 0.0f;
        for (int i = 0; i < DTYPE_QK8_0; i++)
            sb += (float)w[b].qs[i] * xb[i];
        s += attnd_f16_to_f32(w[b].d) * sb;
    }
    return s;
}

static float dot_row(const model_weight *w, uint32_t r, const float *x)
{
    const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
    switch (w->type) {
    case GGUF_DTYPE_F32: return dot_f32((const float *)(const void *)row, x, w->n_in);
    case GGUF_DTYPE_F16: return dot_f16((const uint16_t *)(const void *)row, x, w->n_in);
    case GGUF_DTYPE_BF16: return dot_bf16((const uint16_t *)(const void *)row, x, w->n_in);
    case GGUF_DTYPE_Q8_0: return dot_q8_0((const dtype_q8_0 *)(const void *)row, x, w->n_in);
    default: return 0.0f; /* model_load admits no other type */
    }
}

void matmul_rows(const model_weight *w, const float *x, uint32_t M, float *y, uint32_t ldy,
                 uint32_t r0, uint32_t r1, float *scratch)
{
    const uint32_t K = w->n_in;
    if (r1 <= r0)
        return;
    if (w->type == GGUF_DTYPE_F32) {
        const float *W = (const float *)w->data + (size_t)r0 * K;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)(r1 - r0), (int)K, 1.0f,
                    x, (int)K, W, (int)K, 0.0f, y + r0, (int)ldy);
        return;
    }
    if (M <= FUSED_MAX_M) {
        for (uint32_t r = r0; r < r1; r++)
            for (uint32_t m = 0; m < M; m++)
                y[(size_t)m * ldy + r] = dot_row(w, r, x + (size_t)m * K);
        return;
    }
    for (uint32_t t0 = r0; t0 < r1; t0 += MATMUL_TILE_ROWS) {
        uint32_t n = r1 - t0 < MATMUL_TILE_ROWS ? r1 - t0 : MATMUL_TILE_ROWS;
        for (uint32_t i = 0; i < n; i++)
            model_weight_row(w, t0 + i, scratch + (size_t)i * K);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)n, (int)K, 1.0f, x,
                    (int)K, scratch, (int)K, 0.0f, y + t0, (int)ldy);
    }
}

void matmul_ref(const model_weight *w, const float *x, uint32_t M, float *y, uint32_t ldy)
{
    float *row = malloc((size_t)w->n_in * sizeof *row);
    if (!row)
        abort();
    for (uint32_t r = 0; r < w->n_out; r++) {
        model_weight_row(w, r, row);
        for (uint32_t m = 0; m < M; m++) {
            double s = 0.0;
            for (uint32_t k = 0; k < w->n_in; k++)
                s += (double)row[k] * (double)x[(size_t)m * w->n_in + k];
            y[(size_t)m * ldy + r] = (float)s;
        }
    }
    free(row);
}
