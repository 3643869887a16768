/* matmul.c - weight matmul kernels (matmul.h). */
#include "matmul.h"

#include <cblas.h>
#include <stdbool.h>
#include <stdlib.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_X86 1
#endif

#include "dtype.h"

/* At or below this many activation rows (a decode batch), fused
 * convert-and-dot kernels read each weight row once per 4 rows and win over
 * converting tiles into scratch for sgemm. */
#define FUSED_MAX_M 8u
/* Q8_0 dequantization costs more compute per weight than a half does, so
 * past 4 rows converting a tile once and calling sgemm wins (measured with
 * attnd bench at 8 and 16 streams). */
#define FUSED_MAX_M_Q8_0 4u
/* The scalar fallback converts a weight row once per activation row. */
#define SCALAR_FUSED_MAX_M 4u

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

#ifdef HAVE_X86
/* AVX2 kernels: two accumulators of 8 lanes hide the FMA latency. */
#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static __m256 bf16x8(const uint16_t *p)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

AVX2 static __m256 q8x8(const int8_t *p)
{
    __m128i b = _mm_loadl_epi64((const __m128i *)(const void *)p);
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
}

/* Up to 4 activation rows against one weight row, reading (and converting)
 * each weight vector once: the decode case, where the batch is a handful of
 * sequences and the weights dominate memory traffic. LOAD8(i) yields weights
 * i..i+7 as floats. */
#define DOTN_BODY(LOAD8, TAIL)                                                                     \
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),               \
                     _mm256_setzero_ps()};                                                         \
    uint32_t i = 0;                                                                                \
    for (; i + 8 <= n; i += 8) {                                                                   \
        __m256 wv = LOAD8(i);                                                                      \
        for (int m = 0; m < nx; m++)                                                               \
            acc[m] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + (size_t)m * ldx + i), acc[m]);        \
    }                                                                                              \
    for (int m = 0; m < nx; m++) {                                                                 \
        float t = hsum256(acc[m]);                                                                 \
        for (uint32_t k = i; k < n; k++)                                                           \
            t += (TAIL(k)) * x[(size_t)m * ldx + k];                                               \
        out[m] = t;                                                                                \
    }

AVX2 static void dotn_f32(const float *w, const float *x, size_t ldx, int nx, uint32_t n,
                          float *out)
{
#define L(i) _mm256_loadu_ps(w + (i))
#define T(k) w[k]
    DOTN_BODY(L, T)
#undef L
#undef T
}

AVX2 static void dotn_f16(const uint16_t *w, const float *x, size_t ldx, int nx, uint32_t n,
                          float *out)
{
#define L(i) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(w + (i))))
#define T(k) attnd_f16_to_f32(w[k])
    DOTN_BODY(L, T)
#undef L
#undef T
}

AVX2 static void dotn_bf16(const uint16_t *w, const float *x, size_t ldx, int nx, uint32_t n,
                           float *out)
{
#define L(i) bf16x8(w + (i))
#define T(k) attnd_bf16_to_f32(w[k])
    DOTN_BODY(L, T)
#undef L
#undef T
}

AVX2 static void dotn_q8_0(const dtype_q8_0 *w, const float *x, size_t ldx, int nx, uint32_t n,
                           float *out)
{
    /* n is a whole number of blocks; the scale is folded into the weights */
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    for (uint32_t b = 0; b < n / DTYPE_QK8_0; b++) {
        __m256 d = _mm256_set1_ps(attnd_f16_to_f32(w[b].d));
        for (int g = 0; g < 4; g++) {
            __m256 wv = _mm256_mul_ps(q8x8(w[b].qs + 8 * g), d);
            size_t off = (size_t)b * DTYPE_QK8_0 + 8 * (size_t)g;
            for (int m = 0; m < nx; m++)
                acc[m] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + (size_t)m * ldx + off), acc[m]);
        }
    }
    for (int m = 0; m < nx; m++)
        out[m] = hsum256(acc[m]);
}

/* Rows [r0, r1) of W against M activation rows, 4 at a time. */
AVX2 static void rows_avx2(const model_weight *w, const float *x, uint32_t M, float *y,
                           uint32_t ldy, uint32_t r0, uint32_t r1)
{
    const uint32_t K = w->n_in;
    float out[4];
    for (uint32_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
        for (uint32_t m0 = 0; m0 < M; m0 += 4) {
            int nx = (int)(M - m0 < 4 ? M - m0 : 4);
            const float *xm = x + (size_t)m0 * K;
            switch (w->type) {
            case GGUF_DTYPE_F32: dotn_f32((const float *)(const void *)row, xm, K, nx, K, out); break;
            case GGUF_DTYPE_F16: dotn_f16((const uint16_t *)(const void *)row, xm, K, nx, K, out); break;
            case GGUF_DTYPE_BF16: dotn_bf16((const uint16_t *)(const void *)row, xm, K, nx, K, out); break;
            case GGUF_DTYPE_Q8_0: dotn_q8_0((const dtype_q8_0 *)(const void *)row, xm, K, nx, K, out); break;
            default: out[0] = out[1] = out[2] = out[3] = 0.0f; break;
            }
            for (int m = 0; m < nx; m++)
                y[(size_t)(m0 + (uint32_t)m) * ldy + r] = out[m];
        }
    }
}
#endif

matmul_isa matmul_best_isa(void)
{
#ifdef HAVE_X86
    unsigned a, b, c, d;
    __builtin_cpu_init();
    /* F16C is not a __builtin_cpu_supports name in every compiler: ask CPUID. */
    bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c)
        return MATMUL_ISA_AVX2;
#endif
    return MATMUL_ISA_SCALAR;
}

const char *matmul_isa_name(matmul_isa isa)
{
    return isa == MATMUL_ISA_AVX2 ? "avx2" : "scalar";
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
                 uint32_t r0, uint32_t r1, float *scratch, matmul_isa isa)
{
    const uint32_t K = w->n_in;
    if (r1 <= r0)
        return;
#ifdef HAVE_X86
    const uint32_t fused_max = w->type == GGUF_DTYPE_Q8_0 ? FUSED_MAX_M_Q8_0 : FUSED_MAX_M;
    if (isa == MATMUL_ISA_AVX2 && M <= fused_max) {
        rows_avx2(w, x, M, y, ldy, r0, r1);
        return;
    }
#endif
    if (w->type == GGUF_DTYPE_F32) {
        const float *W = (const float *)w->data + (size_t)r0 * K;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)(r1 - r0), (int)K, 1.0f,
                    x, (int)K, W, (int)K, 0.0f, y + r0, (int)ldy);
        return;
    }
    if (M <= SCALAR_FUSED_MAX_M) {
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
