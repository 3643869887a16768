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

AVX2 static float dot_f16_avx2(const uint16_t *restrict w, const float *restrict x, uint32_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    uint32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(w + i)));
        __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(w + i + 8)));
        a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i + 8), a1);
    }
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++)
        s += attnd_f16_to_f32(w[i]) * x[i];
    return s;
}

AVX2 static __m256 bf16x8(const uint16_t *p)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

AVX2 static float dot_bf16_avx2(const uint16_t *restrict w, const float *restrict x, uint32_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    uint32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(bf16x8(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(bf16x8(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++)
        s += attnd_bf16_to_f32(w[i]) * x[i];
    return s;
}

AVX2 static __m256 q8x8(const int8_t *p)
{
    __m128i b = _mm_loadl_epi64((const __m128i *)(const void *)p);
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
}

AVX2 static float dot_q8_0_avx2(const dtype_q8_0 *restrict w, const float *restrict x, uint32_t n)
{
    __m256 acc = _mm256_setzero_ps();
    for (uint32_t b = 0; b < n / DTYPE_QK8_0; b++) {
        const float *xb = x + (size_t)b * DTYPE_QK8_0;
        const int8_t *q = w[b].qs;
        __m256 s0 = _mm256_mul_ps(q8x8(q), _mm256_loadu_ps(xb));
        __m256 s1 = _mm256_mul_ps(q8x8(q + 8), _mm256_loadu_ps(xb + 8));
        s0 = _mm256_fmadd_ps(q8x8(q + 16), _mm256_loadu_ps(xb + 16), s0);
        s1 = _mm256_fmadd_ps(q8x8(q + 24), _mm256_loadu_ps(xb + 24), s1);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(attnd_f16_to_f32(w[b].d)), _mm256_add_ps(s0, s1), acc);
    }
    return hsum256(acc);
}

AVX2 static float dot_f32_avx2(const float *restrict w, const float *restrict x, uint32_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    uint32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++)
        s += w[i] * x[i];
    return s;
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

static float dot_row(const model_weight *w, uint32_t r, const float *x, matmul_isa isa)
{
    const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
#ifdef HAVE_X86
    if (isa == MATMUL_ISA_AVX2) {
        switch (w->type) {
        case GGUF_DTYPE_F32: return dot_f32_avx2((const float *)(const void *)row, x, w->n_in);
        case GGUF_DTYPE_F16: return dot_f16_avx2((const uint16_t *)(const void *)row, x, w->n_in);
        case GGUF_DTYPE_BF16: return dot_bf16_avx2((const uint16_t *)(const void *)row, x, w->n_in);
        case GGUF_DTYPE_Q8_0:
            return dot_q8_0_avx2((const dtype_q8_0 *)(const void *)row, x, w->n_in);
        default: return 0.0f;
        }
    }
#else
    (void)isa;
#endif
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
    if (w->type == GGUF_DTYPE_F32) {
        const float *W = (const float *)w->data + (size_t)r0 * K;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)(r1 - r0), (int)K, 1.0f,
                    x, (int)K, W, (int)K, 0.0f, y + r0, (int)ldy);
        return;
    }
    if (M <= FUSED_MAX_M) {
        for (uint32_t r = r0; r < r1; r++)
            for (uint32_t m = 0; m < M; m++)
                y[(size_t)m * ldy + r] = dot_row(w, r, x + (size_t)m * K, isa);
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
