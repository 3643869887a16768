/* quant_float.c - the float element types (F32, F16, BF16): conversions and
 * fused convert-and-dot kernels against float activations (act_type F32:
 * nothing is quantized): F16 and BF16 in tiles at every batch size, F32 in
 * dots for small batches (matmul takes sgemm for large ones). No scales, so
 * nothing to check. */
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
ATTND_AVX2 static inline __m256 bf16x8(const uint8_t *p)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/* F32: up to 4 activation rows against one weight row, converting nothing;
 * one accumulator per row. matmul takes sgemm on the weights themselves for
 * larger batches. */
ATTND_AVX2 static void dot_f32_avx2(uint32_t n, const void *restrict wv, const void *restrict x,
                                    size_t x_stride, uint32_t nx, float *restrict out)
{
    const float *w = wv;
    const float *xr[4];
    __m256 acc[4];
    for (uint32_t m = 0; m < 4; m++) {
        xr[m] = (const float *)(const void *)((const char *)x + (m < nx ? m : 0) * x_stride);
        acc[m] = _mm256_setzero_ps();
    }
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 wf = _mm256_loadu_ps(w + i);
        for (uint32_t m = 0; m < nx; m++)
            acc[m] = _mm256_fmadd_ps(wf, _mm256_loadu_ps(xr[m] + i), acc[m]);
    }
    for (uint32_t m = 0; m < nx; m++) {
        float t = attnd_hsum256(acc[m]);
        for (uint32_t k = i; k < n; k++)
            t += w[k] * xr[m][k];
        out[m] = t;
    }
}

/* F16 and BF16: tiles of weight rows by activation rows (quant_tile_fn),
 * at every batch size: each weight vector is converted once for all the
 * tile's activation rows and each activation vector loaded once for all its
 * weight rows. A pair keeps two accumulators, even and odd groups of 8
 * elements (one chain per pair would make a lone row wait on FMA latency),
 * summed at the end, then the elements past the last group of 8 in order:
 * the same bits in every tile shape, and the one-row dot is the 1 x NX tile.
 * Wider tiles than the registers hold are split. */
#define TILE_AVX2(NAME, LOAD8, TAIL, ATTR, NW_MAX)                                                 \
    ATTR static inline __attribute__((always_inline)) void NAME##_rows(                            \
        uint32_t n, const uint8_t *w, size_t ws, const uint32_t NW, const float *const *xr,        \
        const uint32_t NX, float *out, size_t ldo)                                                 \
    {                                                                                              \
        __m256 acc[2][4][2];                                                                       \
        for (uint32_t r = 0; r < NW; r++)                                                          \
            for (uint32_t m = 0; m < NX; m++)                                                      \
                acc[r][m][0] = acc[r][m][1] = _mm256_setzero_ps();                                 \
        uint32_t i = 0;                                                                            \
        for (; i + 16 <= n; i += 16) {                                                             \
            if (i % 32 == 0)                                                                       \
                for (uint32_t r = 0; r < NW; r++)                                                  \
                    quant_prefetch(w + r * ws + 2 * (size_t)i, 64);                                \
            GROUP(LOAD8, i, 0);                                                            \
            GROUP(LOAD8, i + 8, 1);                                                        \
        }                                                                                          \
        if (i + 8 <= n) {                                                                          \
            GROUP(LOAD8, i, 0);                                                            \
            i += 8;                                                                                \
        }                                                                                          \
        for (uint32_t r = 0; r < NW; r++)                                                          \
            for (uint32_t m = 0; m < NX; m++) {                                                    \
                float t = attnd_hsum256(_mm256_add_ps(acc[r][m][0], acc[r][m][1]));                \
                for (uint32_t k = i; k < n; k++)                                                   \
                    t += TAIL(w + r * ws, k) * xr[m][k];                                           \
                out[m * ldo + r] = t;                                                              \
            }                                                                                      \
    }                                                                                              \
    ATTR static void NAME(uint32_t n, const void *restrict w, size_t w_stride, uint32_t nw,        \
                                const void *restrict x, size_t x_stride, uint32_t nx,              \
                                float *restrict out, size_t ldo)                                   \
    {                                                                                              \
        const float *xr[4];                                                                        \
        for (uint32_t m = 0; m < 4; m++)                                                           \
            xr[m] = (const float *)(const void *)((const char *)x + (m < nx ? m : 0) * x_stride);  \
        for (uint32_t r0 = 0; r0 < nw; r0 += (NW_MAX)) {                                           \
            const uint8_t *wr = (const uint8_t *)w + r0 * w_stride;                                \
            float *o = out + r0;                                                                   \
            if ((NW_MAX) > 1 && nw - r0 >= 2) {                                                    \
                QUANT_PER_NX(nx, CALL2)                                                            \
            } else {                                                                               \
                QUANT_PER_NX(nx, CALL1)                                                            \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    ATTR static void NAME##_dot(uint32_t n, const void *restrict w, const void *restrict x,        \
                                size_t x_stride, uint32_t nx, float *restrict out)                 \
    {                                                                                              \
        NAME(n, w, 0, 1, x, x_stride, nx, out, 1);                                                 \
    }
/* Elements I..I+7 of the tile's rows into accumulator A of each pair. */
#define GROUP(LOAD8, I, A)                                                                                \
    do {                                                                                           \
        __m256 wf[2];                                                                              \
        for (uint32_t r = 0; r < NW; r++)                                                          \
            wf[r] = LOAD8(w + r * ws, (I));                                                        \
        for (uint32_t m = 0; m < NX; m++) {                                                        \
            const __m256 xv = _mm256_loadu_ps(xr[m] + (I));                                        \
            for (uint32_t r = 0; r < NW; r++)                                                      \
                acc[r][m][A] = _mm256_fmadd_ps(wf[r], xv, acc[r][m][A]);                           \
        }                                                                                          \
    } while (0)
#define CALL2(NX) tile_rows(n, wr, w_stride, 2, xr, NX, o, ldo)
#define CALL1(NX) tile_rows(n, wr, w_stride, 1, xr, NX, o, ldo)
#define L16(p, i) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)((p) + 2 * (i))))
#define T16(p, k) attnd_f16_to_f32(half_at(p, k))
#define LB16(p, i) bf16x8((p) + 2 * (i))
#define TB16(p, k) attnd_bf16_to_f32(half_at(p, k))

static inline uint16_t half_at(const uint8_t *p, uint32_t k)
{
    uint16_t h;
    memcpy(&h, p + 2 * (size_t)k, sizeof h);
    return h;
}

/* AVX2 has 16 vector registers: one weight row at a time (8 accumulators).
 * The AVX-512 build of the same code (the same 256-bit instructions, so the
 * same bits) has 32, and takes two. */
#define tile_rows tile_f16_avx2_rows
TILE_AVX2(tile_f16_avx2, L16, T16, ATTND_AVX2, 1)
#undef tile_rows
#define tile_rows tile_bf16_avx2_rows
TILE_AVX2(tile_bf16_avx2, LB16, TB16, ATTND_AVX2, 1)
#undef tile_rows
#undef tile_rows
#define tile_rows tile_bf16_avx512_rows
TILE_AVX2(tile_bf16_avx512, LB16, TB16, ATTND_AVX512, 2)
#undef tile_rows
#undef GROUP
#undef CALL1
#undef CALL2
#undef L16
#undef T16
#undef LB16
#undef TB16
#undef TILE_AVX2
/* F16 for AVX-512 in 512-bit vectors: lanes 0-7 of a pair's accumulator
 * are the 256-bit code's even-group accumulator, lanes 8-15 its odd one, so
 * the bits are the same with half the instructions; up to 4 x 4 pairs (16
 * of the 32 registers). */
ATTND_AVX512 static inline __attribute__((always_inline)) void
tile_f16_zmm_rows(uint32_t n, const uint8_t *w, size_t ws, const uint32_t NW,
                  const float *const *xr, const uint32_t NX, float *out, size_t ldo)
{
    __m512 acc[4][4];
    for (uint32_t r = 0; r < NW; r++)
        for (uint32_t m = 0; m < NX; m++)
            acc[r][m] = _mm512_setzero_ps();
    uint32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 wf[4];
        if (i % 32 == 0) /* a cache line of each row: see quant_prefetch */
            for (uint32_t r = 0; r < NW; r++)
                quant_prefetch(w + r * ws + 2 * (size_t)i, 64);
        for (uint32_t r = 0; r < NW; r++)
            wf[r] = _mm512_cvtph_ps(
                _mm256_loadu_si256((const __m256i *)(const void *)(w + r * ws + 2 * (size_t)i)));
        for (uint32_t m = 0; m < NX; m++) {
            const __m512 xv = _mm512_loadu_ps(xr[m] + i);
            for (uint32_t r = 0; r < NW; r++)
                acc[r][m] = _mm512_fmadd_ps(wf[r], xv, acc[r][m]);
        }
    }
    if (i + 8 <= n) { /* an even group: the low half */
        for (uint32_t r = 0; r < NW; r++) {
            const __m256 wf = _mm256_cvtph_ps(
                _mm_loadu_si128((const __m128i *)(const void *)(w + r * ws + 2 * (size_t)i)));
            for (uint32_t m = 0; m < NX; m++) {
                const __m256 lo = _mm256_fmadd_ps(wf, _mm256_loadu_ps(xr[m] + i),
                                                  _mm512_castps512_ps256(acc[r][m]));
                acc[r][m] = _mm512_insertf32x8(acc[r][m], lo, 0);
            }
        }
        i += 8;
    }
    for (uint32_t r = 0; r < NW; r++)
        for (uint32_t m = 0; m < NX; m++) {
            const __m256 lo = _mm512_castps512_ps256(acc[r][m]);
            const __m256 hi = _mm512_extractf32x8_ps(acc[r][m], 1);
            float t = attnd_hsum256(_mm256_add_ps(lo, hi));
            for (uint32_t k = i; k < n; k++)
                t += attnd_f16_to_f32(half_at(w + r * ws, k)) * xr[m][k];
            out[m * ldo + r] = t;
        }
}

ATTND_AVX512 static void tile_f16_avx512(uint32_t n, const void *restrict w, size_t w_stride,
                                         uint32_t nw, const void *restrict x, size_t x_stride,
                                         uint32_t nx, float *restrict out, size_t ldo)
{
    const float *xr[4];
    for (uint32_t m = 0; m < 4; m++)
        xr[m] = (const float *)(const void *)((const char *)x + (m < nx ? m : 0) * x_stride);
    const uint8_t *wb = w;
#define CALL_NX(NW, NX) tile_f16_zmm_rows(n, wb, w_stride, NW, xr, NX, out, ldo)
    QUANT_PER_TILE(nw, nx, CALL_NX)
#undef CALL_NX
}

ATTND_AVX512 static void tile_f16_avx512_dot(uint32_t n, const void *restrict w,
                                             const void *restrict x, size_t x_stride, uint32_t nx,
                                             float *restrict out)
{
    tile_f16_avx512(n, w, 0, 1, x, x_stride, nx, out, 1);
}

#define FLOAT_DOTS(REF, AVX2) {[QUANT_ISA_SCALAR] = REF, [QUANT_ISA_AVX2] = AVX2}
#define TILED_DOTS(REF, T)                                                                         \
    {[QUANT_ISA_SCALAR] = REF, [QUANT_ISA_AVX2] = T##_avx2_dot, [QUANT_ISA_AVX512] = T##_avx512_dot}
#define TILES(T) .tile = {[QUANT_ISA_AVX2] = T##_avx2, [QUANT_ISA_AVX512] = T##_avx512},
#else
#define FLOAT_DOTS(REF, AVX2) {[QUANT_ISA_SCALAR] = REF}
#define TILED_DOTS(REF, T) {[QUANT_ISA_SCALAR] = REF}
#define TILES(T)
#endif

const quant_traits quant_traits_f32 = {
    .type = GGUF_DTYPE_F32, .act_type = GGUF_DTYPE_F32,
    .to_f32 = f32_to_f32, .from_f32 = f32_from_f32,
    .dot = FLOAT_DOTS(dot_f32_ref, dot_f32_avx2),
};
const quant_traits quant_traits_f16 = {
    .type = GGUF_DTYPE_F16, .act_type = GGUF_DTYPE_F32,
    .to_f32 = f16_to_f32, .from_f32 = f16_from_f32,
    .dot = TILED_DOTS(dot_f16_ref, tile_f16), TILES(tile_f16)
};
const quant_traits quant_traits_bf16 = {
    .type = GGUF_DTYPE_BF16, .act_type = GGUF_DTYPE_F32,
    .to_f32 = bf16_to_f32, .from_f32 = bf16_from_f32,
    .dot = TILED_DOTS(dot_bf16_ref, tile_bf16), TILES(tile_bf16)
};
