/* quant_iq4_x86.c - the AVX2 and AVX-512 dot kernels of IQ4_NL (against
 * Q8_0) and IQ4_XS (against Q8_K); the plain references are in quant_iq4.c.
 *
 * A byte shuffle looks the 4-bit indices up in the 16-entry value table, so
 * a block of 32 weights becomes 32 signed bytes for a byte multiply-add
 * against the activations. maddubs multiplies unsigned by signed bytes, so
 * the weight's sign moves onto the activation: |w| <= 127 and |x| <= 127
 * (both quantizers' range) keep each pair sum below 2^15, and the integer
 * sums are the scalar reference's exactly; only the float summation order
 * differs. Each weight block is expanded once for all NX activation rows,
 * and every row sees the same float operations whatever NX is. */
#include "quant_iq4_x86.h"

#ifdef ATTND_HAVE_X86

#include <string.h>

#define IQ4_INLINE static inline __attribute__((always_inline))
#define IQ4_XS_SUBS (QUANT_QK_K / QUANT_QK)
/* IQ4_NL blocks whose scales are converted together (one half vector). */
#define IQ4_NL_GROUP 8

static const uint8_t *act_row(const void *x, size_t x_stride, uint32_t m)
{
    return (const uint8_t *)x + (size_t)m * x_stride;
}

/* ------------------------------------------------------------------ AVX2 */

ATTND_AVX2 IQ4_INLINE __m256i iq4_table_avx2(void)
{
    return _mm256_broadcastsi128_si256(
        _mm_loadu_si128((const __m128i *)(const void *)quant_iq4_values));
}

/* A block of 32 in element order: both lanes get its 16 index bytes, the
 * upper lane shifted down a nibble, so each lane's low nibbles are the
 * indices of its 16 elements. */
ATTND_AVX2 IQ4_INLINE __m256i iq4_indices32_avx2(const uint8_t *qs)
{
    const __m256i q =
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)qs));
    const __m256i shift = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
    return _mm256_and_si256(_mm256_srlv_epi32(q, shift), _mm256_set1_epi8(0x0f));
}

/* The half scales opening 8 blocks STRIDE bytes apart, as floats: gathered
 * in two 64-bit words, converted at once. */
ATTND_AVX2 IQ4_INLINE __m256 iq4_scales8_avx2(const uint8_t *p, size_t stride)
{
    uint64_t lo = 0, hi = 0;
    for (int k = 0; k < 4; k++) {
        uint16_t a, b;
        memcpy(&a, p + (size_t)k * stride, sizeof a);
        memcpy(&b, p + (size_t)(k + 4) * stride, sizeof b);
        lo |= (uint64_t)a << (16 * k);
        hi |= (uint64_t)b << (16 * k);
    }
    return _mm256_cvtph_ps(_mm_set_epi64x((long long)hi, (long long)lo));
}

/* Block of 32 (values V, magnitudes AV) dot 32 activation bytes at Y, in 8
 * int32 lanes, as floats. */
ATTND_AVX2 IQ4_INLINE __m256 iq4nl_dot32_avx2(__m256i v, __m256i av, const int8_t *y)
{
    const __m256i yv = _mm256_loadu_si256((const __m256i *)(const void *)y);
    const __m256i p16 = _mm256_maddubs_epi16(av, _mm256_sign_epi8(yv, v));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

/* Blocks alternate between two accumulators per row (by block index, so
 * the same whatever NX is) to halve the multiply-add dependency chain. The
 * scale products dw * dx of a group are formed 8 at a time and read back
 * as broadcasts. */
ATTND_AVX2 IQ4_INLINE void iq4nl_rows_avx2(uint32_t nb, const quant_block_iq4_nl *w,
                                           const void *x, size_t x_stride, float *out,
                                           const uint32_t nx)
{
    const __m256i table = iq4_table_avx2();
    __m256 acc[2][4];
    for (uint32_t m = 0; m < 4; m++)
        acc[0][m] = acc[1][m] = _mm256_setzero_ps();
    uint32_t i = 0;
    for (; i + IQ4_NL_GROUP <= nb; i += IQ4_NL_GROUP) {
        float sc[4][IQ4_NL_GROUP];
        const __m256 dw = iq4_scales8_avx2((const uint8_t *)(w + i), sizeof *w);
        for (uint32_t m = 0; m < nx; m++) {
            const quant_block_q8_0 *xb = (const quant_block_q8_0 *)act_row(x, x_stride, m) + i;
            _mm256_storeu_ps(sc[m], _mm256_mul_ps(dw, iq4_scales8_avx2(
                                                          (const uint8_t *)xb, sizeof *xb)));
        }
        for (uint32_t k = 0; k < IQ4_NL_GROUP; k++) {
            const __m256i v = _mm256_shuffle_epi8(table, iq4_indices32_avx2(w[i + k].qs));
            const __m256i av = _mm256_abs_epi8(v);
            for (uint32_t m = 0; m < nx; m++) {
                const quant_block_q8_0 *xb =
                    (const quant_block_q8_0 *)act_row(x, x_stride, m) + i + k;
                acc[k & 1][m] = _mm256_fmadd_ps(_mm256_set1_ps(sc[m][k]),
                                                iq4nl_dot32_avx2(v, av, xb->qs), acc[k & 1][m]);
            }
        }
    }
    for (; i < nb; i++) {
        const __m256i v = _mm256_shuffle_epi8(table, iq4_indices32_avx2(w[i].qs));
        const __m256i av = _mm256_abs_epi8(v);
        const float dw = _cvtsh_ss(w[i].d);
        for (uint32_t m = 0; m < nx; m++) {
            const quant_block_q8_0 *xb = (const quant_block_q8_0 *)act_row(x, x_stride, m) + i;
            acc[i & 1][m] = _mm256_fmadd_ps(_mm256_set1_ps(dw * _cvtsh_ss(xb->d)),
                                            iq4nl_dot32_avx2(v, av, xb->qs), acc[i & 1][m]);
        }
    }
    for (uint32_t m = 0; m < nx; m++)
        out[m] = attnd_hsum256(_mm256_add_ps(acc[0][m], acc[1][m]));
}

ATTND_AVX2 void quant_iq4nl_dot_avx2(uint32_t n, const void *restrict w, const void *restrict x,
                                     size_t x_stride, uint32_t nx, float *restrict out)
{
    const uint32_t nb = n / QUANT_QK;
    switch (nx) {
    case 1: iq4nl_rows_avx2(nb, w, x, x_stride, out, 1); break;
    case 2: iq4nl_rows_avx2(nb, w, x, x_stride, out, 2); break;
    case 3: iq4nl_rows_avx2(nb, w, x, x_stride, out, 3); break;
    default: iq4nl_rows_avx2(nb, w, x, x_stride, out, 4); break;
    }
}

/* The 8 sub-block scales of B, each as two equal int16 in a 32-bit slot (a
 * broadcast of slot s multiplies int16 lanes by scale s). The 4 bytes at B
 * are d and then scales_h, little-endian. */
ATTND_AVX2 IQ4_INLINE void iq4xs_scales_avx2(const quant_block_iq4_xs *b, int32_t pairs[8])
{
    int32_t low, head;
    memcpy(&low, b->scales_l, sizeof low);
    memcpy(&head, b, sizeof head);
    const __m256i lo = _mm256_and_si256(
        _mm256_srlv_epi32(_mm256_set1_epi32(low), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
        _mm256_set1_epi32(0x0f));
    const __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(head),
                                                          _mm256_setr_epi32(12, 14, 16, 18, 20,
                                                                            22, 24, 26)),
                                        _mm256_set1_epi32(0x30));
    const __m256i s = _mm256_sub_epi32(_mm256_or_si256(lo, hi), _mm256_set1_epi32(32));
    const __m256i dup = _mm256_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13, 0, 1,
                                         0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13);
    _mm256_storeu_si256((__m256i *)(void *)pairs, _mm256_shuffle_epi8(s, dup));
}

ATTND_AVX2 IQ4_INLINE void iq4xs_rows_avx2(uint32_t nb, const quant_block_iq4_xs *w,
                                           const void *x, size_t x_stride, float *out,
                                           const uint32_t nx)
{
    const __m256i table = iq4_table_avx2();
    __m256 acc[4];
    for (uint32_t m = 0; m < 4; m++)
        acc[m] = _mm256_setzero_ps();
    for (uint32_t i = 0; i < nb; i++) {
        int32_t pairs[IQ4_XS_SUBS];
        iq4xs_scales_avx2(&w[i], pairs);
        __m256i isum[4];
        for (uint32_t m = 0; m < 4; m++)
            isum[m] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int s = 0; s < IQ4_XS_SUBS; s++) {
            const __m256i v =
                _mm256_shuffle_epi8(table, iq4_indices32_avx2(w[i].qs + s * (QUANT_QK / 2)));
            const __m256i av = _mm256_abs_epi8(v);
            const __m256i ls = _mm256_set1_epi32(pairs[s]);
            for (uint32_t m = 0; m < nx; m++) {
                const quant_block_q8_K *xb =
                    (const quant_block_q8_K *)act_row(x, x_stride, m) + i;
                const __m256i y =
                    _mm256_loadu_si256((const __m256i *)(const void *)(xb->qs + s * QUANT_QK));
                const __m256i p16 = _mm256_maddubs_epi16(av, _mm256_sign_epi8(y, v));
                isum[m] = _mm256_add_epi32(isum[m], _mm256_madd_epi16(p16, ls));
            }
        }
        const float dw = _cvtsh_ss(w[i].d);
        for (uint32_t m = 0; m < nx; m++) {
            const quant_block_q8_K *xb = (const quant_block_q8_K *)act_row(x, x_stride, m) + i;
            acc[m] = _mm256_fmadd_ps(_mm256_set1_ps(dw * xb->d), _mm256_cvtepi32_ps(isum[m]),
                                     acc[m]);
        }
    }
    for (uint32_t m = 0; m < nx; m++)
        out[m] = attnd_hsum256(acc[m]);
}

ATTND_AVX2 void quant_iq4xs_dot_avx2(uint32_t n, const void *restrict w, const void *restrict x,
                                     size_t x_stride, uint32_t nx, float *restrict out)
{
    const uint32_t nb = n / QUANT_QK_K;
    switch (nx) {
    case 1: iq4xs_rows_avx2(nb, w, x, x_stride, out, 1); break;
    case 2: iq4xs_rows_avx2(nb, w, x, x_stride, out, 2); break;
    case 3: iq4xs_rows_avx2(nb, w, x, x_stride, out, 3); break;
    default: iq4xs_rows_avx2(nb, w, x, x_stride, out, 4); break;
    }
}

/* --------------------------------------------------------------- AVX-512 */

/* vpdpbusd sums the four unsigned-by-signed byte products of each int32 lane
 * without the 16-bit intermediate: one instruction for maddubs + madd. */
ATTND_AVX512 IQ4_INLINE __m256 iq4nl_dot32_vnni(__m256i v, __m256i av, const int8_t *y)
{
    const __m256i yv = _mm256_loadu_si256((const __m256i *)(const void *)y);
    return _mm256_cvtepi32_ps(
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), av, _mm256_sign_epi8(yv, v)));
}

ATTND_AVX512 IQ4_INLINE void iq4nl_rows_avx512(uint32_t nb, const quant_block_iq4_nl *w,
                                               const void *x, size_t x_stride, float *out,
                                               const uint32_t nx)
{
    const __m256i table = iq4_table_avx2();
    __m256 acc[2][4];
    for (uint32_t m = 0; m < 4; m++)
        acc[0][m] = acc[1][m] = _mm256_setzero_ps();
    uint32_t i = 0;
    for (; i + IQ4_NL_GROUP <= nb; i += IQ4_NL_GROUP) {
        float sc[4][IQ4_NL_GROUP];
        const __m256 dw = iq4_scales8_avx2((const uint8_t *)(w + i), sizeof *w);
        for (uint32_t m = 0; m < nx; m++) {
            const quant_block_q8_0 *xb = (const quant_block_q8_0 *)act_row(x, x_stride, m) + i;
            _mm256_storeu_ps(sc[m], _mm256_mul_ps(dw, iq4_scales8_avx2(
                                                          (const uint8_t *)xb, sizeof *xb)));
        }
        for (uint32_t k = 0; k < IQ4_NL_GROUP; k++) {
            const __m256i v = _mm256_shuffle_epi8(table, iq4_indices32_avx2(w[i + k].qs));
            const __m256i av = _mm256_abs_epi8(v);
            for (uint32_t m = 0; m < nx; m++) {
                const quant_block_q8_0 *xb =
                    (const quant_block_q8_0 *)act_row(x, x_stride, m) + i + k;
                acc[k & 1][m] = _mm256_fmadd_ps(_mm256_set1_ps(sc[m][k]),
                                                iq4nl_dot32_vnni(v, av, xb->qs), acc[k & 1][m]);
            }
        }
    }
    for (; i < nb; i++) {
        const __m256i v = _mm256_shuffle_epi8(table, iq4_indices32_avx2(w[i].qs));
        const __m256i av = _mm256_abs_epi8(v);
        const float dw = _cvtsh_ss(w[i].d);
        for (uint32_t m = 0; m < nx; m++) {
            const quant_block_q8_0 *xb = (const quant_block_q8_0 *)act_row(x, x_stride, m) + i;
            acc[i & 1][m] = _mm256_fmadd_ps(_mm256_set1_ps(dw * _cvtsh_ss(xb->d)),
                                            iq4nl_dot32_vnni(v, av, xb->qs), acc[i & 1][m]);
        }
    }
    for (uint32_t m = 0; m < nx; m++)
        out[m] = attnd_hsum256(_mm256_add_ps(acc[0][m], acc[1][m]));
}

ATTND_AVX512 void quant_iq4nl_dot_avx512(uint32_t n, const void *restrict w,
                                         const void *restrict x, size_t x_stride, uint32_t nx,
                                         float *restrict out)
{
    const uint32_t nb = n / QUANT_QK;
    switch (nx) {
    case 1: iq4nl_rows_avx512(nb, w, x, x_stride, out, 1); break;
    case 2: iq4nl_rows_avx512(nb, w, x, x_stride, out, 2); break;
    case 3: iq4nl_rows_avx512(nb, w, x, x_stride, out, 3); break;
    default: iq4nl_rows_avx512(nb, w, x, x_stride, out, 4); break;
    }
}

/* Two sub-blocks per 512-bit vector: 128-bit lanes hold the low and high
 * halves of sub-block a, then of b. Magnitudes come from a table of |value|
 * and the sign from the index (indices 0-7 are the negative values), which
 * a mask negates the activation by: AVX-512 has no 512-bit vpsignb.
 * vpdpwssd applies the sub-block scale to maddubs's pair sums and
 * accumulates in one step; two accumulators per row split its chain. */
ATTND_AVX512 IQ4_INLINE void iq4xs_rows_avx512(uint32_t nb, const quant_block_iq4_xs *w,
                                               const void *x, size_t x_stride, float *out,
                                               const uint32_t nx)
{
    const __m512i magnitudes = _mm512_broadcast_i32x4(
        _mm_abs_epi8(_mm_loadu_si128((const __m128i *)(const void *)quant_iq4_values)));
    const __m512i shift = _mm512_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4, 0, 0, 0, 0, 4, 4, 4, 4);
    const __m512i low4 = _mm512_set1_epi8(0x0f), sign_bit = _mm512_set1_epi8(0x08);
    __m256 acc[4];
    for (uint32_t m = 0; m < 4; m++)
        acc[m] = _mm256_setzero_ps();
    for (uint32_t i = 0; i < nb; i++) {
        int32_t pairs[IQ4_XS_SUBS];
        iq4xs_scales_avx2(&w[i], pairs);
        const __m512i scales = _mm512_castsi256_si512(
            _mm256_loadu_si256((const __m256i *)(const void *)pairs));
        __m512i isum[2][4];
        for (uint32_t m = 0; m < 4; m++)
            isum[0][m] = isum[1][m] = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int s = 0; s < IQ4_XS_SUBS; s += 2) {
            const uint8_t *qs = w[i].qs + s * (QUANT_QK / 2);
            const __m512i q = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_broadcastsi128_si256(
                    _mm_loadu_si128((const __m128i *)(const void *)qs))),
                _mm256_broadcastsi128_si256(
                    _mm_loadu_si128((const __m128i *)(const void *)(qs + QUANT_QK / 2))),
                1);
            const __m512i idx = _mm512_and_si512(_mm512_srlv_epi32(q, shift), low4);
            const __m512i av = _mm512_shuffle_epi8(magnitudes, idx);
            const __mmask64 neg = _mm512_testn_epi8_mask(idx, sign_bit);
            const __m512i ls = _mm512_permutexvar_epi32(
                _mm512_setr_epi32(s, s, s, s, s, s, s, s, s + 1, s + 1, s + 1, s + 1, s + 1,
                                  s + 1, s + 1, s + 1),
                scales);
            for (uint32_t m = 0; m < nx; m++) {
                const quant_block_q8_K *xb =
                    (const quant_block_q8_K *)act_row(x, x_stride, m) + i;
                const __m512i y =
                    _mm512_loadu_si512((const void *)(xb->qs + s * QUANT_QK));
                const __m512i sy = _mm512_mask_sub_epi8(y, neg, _mm512_setzero_si512(), y);
                isum[(s / 2) & 1][m] =
                    _mm512_dpwssd_epi32(isum[(s / 2) & 1][m], _mm512_maddubs_epi16(av, sy), ls);
            }
        }
        const float dw = _cvtsh_ss(w[i].d);
        for (uint32_t m = 0; m < nx; m++) {
            const quant_block_q8_K *xb = (const quant_block_q8_K *)act_row(x, x_stride, m) + i;
            const __m512i t = _mm512_add_epi32(isum[0][m], isum[1][m]);
            const __m256i t8 = _mm256_add_epi32(_mm512_castsi512_si256(t),
                                                _mm512_extracti64x4_epi64(t, 1));
            acc[m] = _mm256_fmadd_ps(_mm256_set1_ps(dw * xb->d), _mm256_cvtepi32_ps(t8), acc[m]);
        }
    }
    for (uint32_t m = 0; m < nx; m++)
        out[m] = attnd_hsum256(acc[m]);
}

ATTND_AVX512 void quant_iq4xs_dot_avx512(uint32_t n, const void *restrict w,
                                         const void *restrict x, size_t x_stride, uint32_t nx,
                                         float *restrict out)
{
    const uint32_t nb = n / QUANT_QK_K;
    switch (nx) {
    case 1: iq4xs_rows_avx512(nb, w, x, x_stride, out, 1); break;
    case 2: iq4xs_rows_avx512(nb, w, x, x_stride, out, 2); break;
    case 3: iq4xs_rows_avx512(nb, w, x, x_stride, out, 3); break;
    default: iq4xs_rows_avx512(nb, w, x, x_stride, out, 4); break;
    }
}

#endif
