/* quant_float.c - the float element types (F32, F16, BF16): conversions and
 * fused convert-and-dot kernels against float activations (act_type F32:
 * nothing is quantized). matmul uses the dots for small batches and sgemm
 * on converted tiles for large ones. No scales, so nothing to check. */
#include "quant_internal.h"

#include <string.h>

#include "attnd_half.h"
#include "attnd_simd.h"

static void f32_to_f32(const void *restrict src, float *restrict dst, size_t n)
{
    memcpy(dst, src, n * sizeof *dst);
}

static void f32_from_f32(const float *restrict src, void *restrict dst, size_t n)
{
    memcpy(dst, src, n * sizeof *src);
}

static void f16_to_f32(const void *restrict src, float *restrict dst, size_t n)
{
    attnd_f16_to_f32_row(src, dst, n);
}

static void f16_from_f32(const float *restrict src, void *restrict dst, size_t n)
{
    uint16_t *d = dst;
    for (size_t i = 0; i < n; i++)
        d[i] = attnd_f32_to_f16(src[i]);
}

static void bf16_to_f32(const void *restrict src, float *restrict dst, size_t n)
{
    const uint16_t *s = src;
    for (size_t i = 0; i < n; i++)
        dst[i] = attnd_bf16_to_f32(s[i]);
}

static void bf16_from_f32(const float *restrict src, void *restrict dst, size_t n)
{
    uint16_t *d = dst;
    for (size_t i = 0; i < n; i++)
        d[i] = attnd_f32_to_bf16(src[i]);
}

/* The scalar references: one float accumulator, in element order. */
#define DOT_REF(NAME, ELEM_T, TO_F32)                                                              \
    static void NAME(uint32_t n, const void *restrict w, const void *restrict x,                   \
                     size_t x_stride, uint32_t nx, float *restrict out)                            \
    {                                                                                              \
        const ELEM_T *wr = w;                                                                      \
        for (uint32_t m = 0; m < nx; m++) {                                                        \
            const float *xm = (const float *)(const void *)((const char *)x + m * x_stride);       \
            float s = 0.0f;                                                                        \
            for (uint32_t i = 0; i < n; i++)                                                       \
                s += TO_F32(wr[i]) * xm[i];                                                        \
            out[m] = s;                                                                            \
        }                                                                                          \
    }
#define IDENT(v) (v)
DOT_REF(dot_f32_ref, float, IDENT)
DOT_REF(dot_f16_ref, uint16_t, attnd_f16_to_f32)
DOT_REF(dot_bf16_ref, uint16_t, attnd_bf16_to_f32)
#undef IDENT
#undef DOT_REF

#ifdef ATTND_HAVE_X86
ATTND_AVX2 static __m256 bf16x8(const uint16_t *p)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/* Up to 4 activation rows against one weight row, converting each weight
 * vector once for all of them: the decode case, where the weights dominate
 * memory traffic. LOAD8(i) yields weights i..i+7 as floats; TAIL(k) one. */
#define DOT_AVX2(NAME, ELEM_T, LOAD8, TAIL)                                                        \
    ATTND_AVX2 static void NAME(uint32_t n, const void *restrict wv, const void *restrict x,       \
                                size_t x_stride, uint32_t nx, float *restrict out)                 \
    {                                                                                              \
        const ELEM_T *w = wv;                                                                      \
        const float *xr[4];                                                                        \
        __m256 acc[4];                                                                             \
        for (uint32_t m = 0; m < 4; m++) {                                                         \
            xr[m] = (const float *)(const void *)((const char *)x + (m < nx ? m : 0) * x_stride);  \
            acc[m] = _mm256_setzero_ps();                                                          \
        }                                                                                          \
        uint32_t i = 0;                                                                            \
        for (; i + 8 <= n; i += 8) {                                                               \
            const __m256 wf = LOAD8(i);                                                            \
            for (uint32_t m = 0; m < nx; m++)                                                      \
                acc[m] = _mm256_fmadd_ps(wf, _mm256_loadu_ps(xr[m] + i), acc[m]);                  \
        }                                                                                          \
        for (uint32_t m = 0; m < nx; m++) {                                                        \
            float t = attnd_hsum256(acc[m]);                                                       \
            for (uint32_t k = i; k < n; k++)                                                       \
                t += (TAIL(k)) * xr[m][k];                                                         \
            out[m] = t;                                                                            \
        }                                                                                          \
    }
#define L32(i) _mm256_loadu_ps(w + (i))
#define T32(k) w[k]
#define L16(i) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(w + (i))))
#define T16(k) attnd_f16_to_f32(w[k])
#define LB16(i) bf16x8(w + (i))
#define TB16(k) attnd_bf16_to_f32(w[k])
DOT_AVX2(dot_f32_avx2, float, L32, T32)
DOT_AVX2(dot_f16_avx2, uint16_t, L16, T16)
DOT_AVX2(dot_bf16_avx2, uint16_t, LB16, TB16)
#undef L32
#undef T32
#undef L16
#undef T16
#undef LB16
#undef TB16
#undef DOT_AVX2
#define FLOAT_DOTS(REF, AVX2) {[QUANT_ISA_SCALAR] = REF, [QUANT_ISA_AVX2] = AVX2}
#else
#define FLOAT_DOTS(REF, AVX2) {[QUANT_ISA_SCALAR] = REF}
#endif

const quant_traits quant_traits_f32 = {
    .type = GGUF_DTYPE_F32, .act_type = GGUF_DTYPE_F32,
    .to_f32 = f32_to_f32, .from_f32 = f32_from_f32,
    .dot = FLOAT_DOTS(dot_f32_ref, dot_f32_avx2),
};
const quant_traits quant_traits_f16 = {
    .type = GGUF_DTYPE_F16, .act_type = GGUF_DTYPE_F32,
    .to_f32 = f16_to_f32, .from_f32 = f16_from_f32,
    .dot = FLOAT_DOTS(dot_f16_ref, dot_f16_avx2),
};
const quant_traits quant_traits_bf16 = {
    .type = GGUF_DTYPE_BF16, .act_type = GGUF_DTYPE_F32,
    .to_f32 = bf16_to_f32, .from_f32 = bf16_from_f32,
    .dot = FLOAT_DOTS(dot_bf16_ref, dot_bf16_avx2),
};
