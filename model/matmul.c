/* matmul.c - weight matmul kernels (matmul.h). */
#include "matmul.h"

#include <cblas.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "attnd_simd.h"

#include "dtype.h"

/* At or below this many activation rows (a decode batch), fused
 * convert-and-dot kernels read each weight row once per 4 rows and win over
 * converting tiles into scratch for sgemm. */
#define FUSED_MAX_M 8u
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

/* Q8_0 weights multiply activations quantized to Q8_0 blocks as well, as
 * ggml does (and the reference logits with it): an exact integer dot product
 * per block of 32, then one float multiply-add with both scales. */
static float dot_q8_0(const dtype_q8_0 *restrict w, const dtype_q8_0 *restrict x, uint32_t nb)
{
    float s = 0.0f;
    for (uint32_t b = 0; b < nb; b++) {
        int32_t t = 0;
        for (int i = 0; i < DTYPE_QK8_0; i++)
            t += (int32_t)w[b].qs[i] * (int32_t)x[b].qs[i];
        s += attnd_f16_to_f32(w[b].d) * attnd_f16_to_f32(x[b].d) * (float)t;
    }
    return s;
}

#ifdef ATTND_HAVE_X86
/* AVX2 kernels: two accumulators of 8 lanes hide the FMA latency. */
#define AVX2 ATTND_AVX2

AVX2 static __m256 bf16x8(const uint16_t *p)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
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
        float t = attnd_hsum256(acc[m]);                                                           \
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

/* dot_q8_0 for up to 4 quantized activation rows (LDX blocks apart) against
 * one weight row. maddubs multiplies unsigned by signed bytes, so the
 * weight's sign moves onto the activation: |w| <= 128 and |x| <= 127 (the
 * quantizer's range) keep each pair sum below 2^15. */
AVX2 static void dotn_q8_0(const dtype_q8_0 *w, const dtype_q8_0 *x, size_t ldx, int nx,
                           uint32_t nb, float *out)
{
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    const __m256i ones = _mm256_set1_epi16(1);
    for (uint32_t b = 0; b < nb; b++) {
        const __m256i wq = _mm256_loadu_si256((const __m256i *)(const void *)w[b].qs);
        const __m256i wabs = _mm256_sign_epi8(wq, wq);
        const float dw = _cvtsh_ss(w[b].d);
        for (int m = 0; m < nx; m++) {
            const dtype_q8_0 *xb = x + (size_t)m * ldx + b;
            const __m256i xq = _mm256_loadu_si256((const __m256i *)(const void *)xb->qs);
            const __m256i p16 = _mm256_maddubs_epi16(wabs, _mm256_sign_epi8(xq, wq));
            const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
            acc[m] = _mm256_fmadd_ps(_mm256_set1_ps(dw * _cvtsh_ss(xb->d)), p, acc[m]);
        }
    }
    for (int m = 0; m < nx; m++)
        out[m] = attnd_hsum256(acc[m]);
}

/* dotn_q8_0 for two weight rows at once: each activation block is loaded
 * once for both. Every (weight row, activation row) pair sees exactly the
 * operations dotn_q8_0 gives it, so its result has the same bits. */
AVX2 static void dotn2_q8_0(const dtype_q8_0 *w0, const dtype_q8_0 *w1, const dtype_q8_0 *x,
                            size_t ldx, int nx, uint32_t nb, float *out0, float *out1)
{
    __m256 a0[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                    _mm256_setzero_ps()};
    __m256 a1[4] = {a0[0], a0[1], a0[2], a0[3]};
    const __m256i ones = _mm256_set1_epi16(1);
    for (uint32_t b = 0; b < nb; b++) {
        const __m256i wq0 = _mm256_loadu_si256((const __m256i *)(const void *)w0[b].qs);
        const __m256i wq1 = _mm256_loadu_si256((const __m256i *)(const void *)w1[b].qs);
        const __m256i wabs0 = _mm256_sign_epi8(wq0, wq0), wabs1 = _mm256_sign_epi8(wq1, wq1);
        const float dw0 = _cvtsh_ss(w0[b].d), dw1 = _cvtsh_ss(w1[b].d);
        for (int m = 0; m < nx; m++) {
            const dtype_q8_0 *xb = x + (size_t)m * ldx + b;
            const __m256i xq = _mm256_loadu_si256((const __m256i *)(const void *)xb->qs);
            const float dx = _cvtsh_ss(xb->d);
            const __m256i p0 = _mm256_maddubs_epi16(wabs0, _mm256_sign_epi8(xq, wq0));
            const __m256i p1 = _mm256_maddubs_epi16(wabs1, _mm256_sign_epi8(xq, wq1));
            a0[m] = _mm256_fmadd_ps(_mm256_set1_ps(dw0 * dx),
                                    _mm256_cvtepi32_ps(_mm256_madd_epi16(p0, ones)), a0[m]);
            a1[m] = _mm256_fmadd_ps(_mm256_set1_ps(dw1 * dx),
                                    _mm256_cvtepi32_ps(_mm256_madd_epi16(p1, ones)), a1[m]);
        }
    }
    for (int m = 0; m < nx; m++) {
        out0[m] = attnd_hsum256(a0[m]);
        out1[m] = attnd_hsum256(a1[m]);
    }
}

/* dtype_from_f32's Q8_0 quantizer, bit for bit: the same amax, the same
 * d = amax / 127 and id = 1 / d, the same products x * id, and roundf's
 * ties-away-from-zero rounding built from truncation (|v - trunc(v)| is
 * exact). The half scale goes through the same scalar conversion. */
AVX2 static void quantize_q8_0_avx2(const float *x, dtype_q8_0 *y, uint32_t nb)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    for (uint32_t b = 0; b < nb; b++) {
        const float *xb = x + (size_t)b * DTYPE_QK8_0;
        __m256 v[4], amax = _mm256_setzero_ps();
        for (int g = 0; g < 4; g++) {
            v[g] = _mm256_loadu_ps(xb + 8 * g);
            amax = _mm256_max_ps(amax, _mm256_and_ps(v[g], absmask));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float d = _mm_cvtss_f32(m4) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = attnd_f32_to_f16(d);
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int g = 0; g < 4; g++) {
            const __m256 p = _mm256_mul_ps(v[g], vid);
            const __m256 t = _mm256_round_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __m256 frac = _mm256_and_ps(_mm256_sub_ps(p, t), absmask);
            const __m256 step = _mm256_and_ps(_mm256_cmp_ps(frac, half, _CMP_GE_OQ),
                                              _mm256_or_ps(one, _mm256_andnot_ps(absmask, p)));
            q[g] = _mm256_cvttps_epi32(_mm256_add_ps(t, step));
        }
        /* packs work within 128-bit lanes: the permute restores the order */
        const __m256i q16 = _mm256_packs_epi32(q[0], q[1]), q16b = _mm256_packs_epi32(q[2], q[3]);
        const __m256i q8 = _mm256_packs_epi16(q16, q16b);
        const __m256i ordered = _mm256_permutevar8x32_epi32(q8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(void *)y[b].qs, ordered);
    }
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
    return attnd_cpu_avx2() ? MATMUL_ISA_AVX2 : MATMUL_ISA_SCALAR;
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
    default: return 0.0f; /* model_load admits no other type */
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

void matmul_quantize_rows(const float *x, uint32_t n_in, uint32_t m0, uint32_t m1,
                          dtype_q8_0 *xq, matmul_isa isa)
{
    const uint32_t nb = n_in / DTYPE_QK8_0;
    for (uint32_t m = m0; m < m1; m++) {
        const float *xm = x + (size_t)m * n_in;
        dtype_q8_0 *qm = xq + (size_t)m * nb;
#ifdef ATTND_HAVE_X86
        if (isa == MATMUL_ISA_AVX2)
            quantize_q8_0_avx2(xm, qm, nb);
        else
#else
        (void)isa;
#endif
            dtype_from_f32(GGUF_DTYPE_Q8_0, xm, qm, (size_t)nb * DTYPE_QK8_0);
    }
}

/* Integer block dot products, each weight row read once per 4 activation
 * rows. One path for every M, so a row's result has the same bits whatever
 * else shares its batch: with quantized activations, a last-place change in
 * one layer can move a rounding boundary and show in the logits at 1e-3. */
void matmul_rows_q8_0(const model_weight *w, const dtype_q8_0 *xq, uint32_t M, float *y,
                      uint32_t ldy, uint32_t r0, uint32_t r1, matmul_isa isa)
{
    const uint32_t nb = w->n_in / DTYPE_QK8_0;
#define WROW(r) ((const dtype_q8_0 *)(const void *)((const uint8_t *)w->data + (size_t)(r) * w->row_bytes))
#ifdef ATTND_HAVE_X86
    if (isa == MATMUL_ISA_AVX2) {
        float out0[4], out1[4];
        uint32_t r = r0;
        for (; r + 2 <= r1; r += 2)
            for (uint32_t m = 0; m < M; m += 4) {
                const int nx = (int)(M - m < 4 ? M - m : 4);
                dotn2_q8_0(WROW(r), WROW(r + 1), xq + (size_t)m * nb, nb, nx, nb, out0, out1);
                for (int i = 0; i < nx; i++) {
                    y[(size_t)(m + (uint32_t)i) * ldy + r] = out0[i];
                    y[(size_t)(m + (uint32_t)i) * ldy + r + 1] = out1[i];
                }
            }
        for (; r < r1; r++)
            for (uint32_t m = 0; m < M; m += 4) {
                const int nx = (int)(M - m < 4 ? M - m : 4);
                dotn_q8_0(WROW(r), xq + (size_t)m * nb, nb, nx, nb, out0);
                for (int i = 0; i < nx; i++)
                    y[(size_t)(m + (uint32_t)i) * ldy + r] = out0[i];
            }
        return;
    }
#else
    (void)isa;
#endif
    for (uint32_t r = r0; r < r1; r++)
        for (uint32_t m = 0; m < M; m++)
            y[(size_t)m * ldy + r] = dot_q8_0(WROW(r), xq + (size_t)m * nb, nb);
#undef WROW
}

/* matmul_rows for Q8_0 weights given float activations: quantizes as many
 * rows as the scratch holds (120 at its size), multiplies, repeats. */
static void rows_q8_0(const model_weight *w, const float *x, uint32_t M, float *y, uint32_t ldy,
                      uint32_t r0, uint32_t r1, float *scratch, matmul_isa isa)
{
    const uint32_t K = w->n_in, nb = K / DTYPE_QK8_0;
    dtype_q8_0 *xq = (dtype_q8_0 *)(void *)scratch;
    const size_t fit = matmul_scratch_floats(K) * sizeof(float) / ((size_t)nb * sizeof *xq);
    const uint32_t chunk = fit < M ? (uint32_t)fit : M;
    for (uint32_t m0 = 0; m0 < M; m0 += chunk) {
        const uint32_t mc = M - m0 < chunk ? M - m0 : chunk;
        matmul_quantize_rows(x + (size_t)m0 * K, K, 0, mc, xq, isa);
        matmul_rows_q8_0(w, xq, mc, y + (size_t)m0 * ldy, ldy, r0, r1, isa);
    }
}

void matmul_rows(const model_weight *w, const float *x, uint32_t M, float *y, uint32_t ldy,
                 uint32_t r0, uint32_t r1, float *scratch, matmul_isa isa)
{
    const uint32_t K = w->n_in;
    if (r1 <= r0)
        return;
#ifdef ATTND_HAVE_X86
    if (w->type == GGUF_DTYPE_Q8_0) {
        rows_q8_0(w, x, M, y, ldy, r0, r1, scratch, isa);
        return;
    }
    if (isa == MATMUL_ISA_AVX2 && M <= FUSED_MAX_M) {
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
    rows_tiled(w, x, M, y, ldy, r0, r1, scratch);
}

void matmul_ref(const model_weight *w, const float *x, uint32_t M, float *y, uint32_t ldy)
{
    const uint32_t K = w->n_in;
    float *row = malloc((size_t)K * sizeof *row);
    float *xr = malloc((size_t)M * K * sizeof *xr);
    dtype_q8_0 *xq = malloc((size_t)(K / DTYPE_QK8_0 + 1) * sizeof *xq);
    if (!row || !xr || !xq)
        abort();
    /* What the kernels multiply: x itself, or for Q8_0 weights x after a
     * round trip through Q8_0 blocks. */
    for (uint32_t m = 0; m < M; m++) {
        const float *xm = x + (size_t)m * K;
        if (w->type == GGUF_DTYPE_Q8_0) {
            dtype_from_f32(GGUF_DTYPE_Q8_0, xm, xq, K);
            dtype_to_f32(GGUF_DTYPE_Q8_0, xq, xr + (size_t)m * K, K);
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
