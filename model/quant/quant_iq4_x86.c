/* quant_iq4_x86.c - the AVX2 and AVX-512 dot kernels of IQ4_NL (against
 * Q8_0) and IQ4_XS (against Q8_K); the plain references are in quant_iq4.c.
 *
 * A byte shuffle looks the 4-bit indices up in the 16-entry value table, so
 * a block of 32 weights becomes 32 bytes for a byte multiply-add against the
 * activations. The integer sums are the scalar reference's exactly; only the
 * float summation order differs. Each weight block is expanded once for all
 * NX activation rows, and every row sees the same float operations whatever
 * NX is (the kernels are instantiated per NX only so the row loops unroll).
 *
 * Two ways to multiply signed table values by signed activations:
 * - maddubs (AVX2) takes unsigned by signed bytes, so the weight's sign
 *   moves onto the activation (vpsignb); |w| <= 127 and |x| <= 127 (both Q8
 *   quantizers' range) keep each pair sum below 2^15.
 * - vpdpbusd (VNNI) accumulates in 32 bits without saturating, so IQ4_XS
 *   shifts the table up by 128 to unsigned bytes instead and takes
 *   128 * sum(x) back off from the Q8_K block's 16-element sums: no sign
 *   instructions at all. IQ4_NL's Q8_0 has no such sums and keeps the sign
 *   move. */
#include "quant_iq4_x86.h"

#ifdef ATTND_HAVE_X86

#include <string.h>

#define IQ4_INLINE static inline __attribute__((always_inline))
#define IQ4_XS_SUBS (QUANT_QK_K / QUANT_QK)
/* IQ4_NL blocks whose scale products are formed together (one vector). */
#define IQ4_NL_GROUP 8

/* The compiler must treat X as rewritten in memory, so the reads after this
 * are real loads. A broadcast from memory is a pure load; without this GCC
 * forwards the stored vector through extract and shuffle instructions,
 * which compete with the kernel's own shuffles. */
#define IQ4_IN_MEMORY(x) __asm__("" : "+m"(x))

/* ------------------------------------------------- shared (AVX2 and up) */

ATTND_AVX2 IQ4_INLINE __m256i iq4_table_avx2(void)
{
    return _mm256_broadcastsi128_si256(
        _mm_loadu_si128((const __m128i *)(const void *)quant_iq4_values));
}

/* A block of 32's indices in element order: both lanes get its 16 bytes,
 * the upper lane shifted down a nibble, so each lane's low nibbles are the
 * indices of its 16 elements. */
ATTND_AVX2 IQ4_INLINE __m256i iq4_indices32_avx2(const uint8_t *qs)
{
    const __m256i q =
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)qs));
    const __m256i shift = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
    return _mm256_and_si256(_mm256_srlv_epi32(q, shift), _mm256_set1_epi8(0x0f));
}

/* The half scales opening 8 blocks STRIDE bytes apart, as floats. The
 * halves are gathered into two 64-bit words in general registers, which the
 * vector kernels leave idle (the asm keeps GCC from moving the gathering
 * onto vector shuffles). */
ATTND_AVX2 IQ4_INLINE __m256 iq4_halves8_avx2(const uint8_t *p, size_t stride)
{
    uint64_t lo = 0, hi = 0;
    for (int k = 0; k < 4; k++) {
        uint16_t a, b;
        memcpy(&a, p + (size_t)k * stride, sizeof a);
        memcpy(&b, p + (size_t)(k + 4) * stride, sizeof b);
        lo |= (uint64_t)a << (16 * k);
        hi |= (uint64_t)b << (16 * k);
    }
    __asm__("" : "+r"(lo), "+r"(hi));
    return _mm256_cvtph_ps(_mm_set_epi64x((long long)hi, (long long)lo));
}

/* The 8 sub-block scales of an IQ4_XS block (-32..31) in 32-bit lanes. The
 * 4 bytes at B are d and then scales_h, little-endian, so scales_h's 2-bit
 * fields sit from bit 16 up. */
ATTND_AVX2 IQ4_INLINE __m256i iq4xs_scales_avx2(const quant_block_iq4_xs *b)
{
    int32_t low, head;
    memcpy(&low, b->scales_l, sizeof low);
    memcpy(&head, b, sizeof head);
    const __m256i lo_shift = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    const __m256i hi_shift = _mm256_setr_epi32(12, 14, 16, 18, 20, 22, 24, 26);
    const __m256i lo =
        _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(low), lo_shift), _mm256_set1_epi32(0x0f));
    const __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(head), hi_shift),
                                        _mm256_set1_epi32(0x30));
    return _mm256_sub_epi32(_mm256_or_si256(lo, hi), _mm256_set1_epi32(32));
}

/* Each 32-bit lane's low 16 bits in both halves: a small int32 becomes two
 * equal int16, the operand layout of a 16-bit multiply-add. */
ATTND_AVX2 IQ4_INLINE __m256i iq4_dup_low16_avx2(__m256i v)
{
    const __m256i dup = _mm256_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13, 0, 1,
                                         0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13);
    return _mm256_shuffle_epi8(v, dup);
}

/* --------------------------------------------------------------- IQ4_NL */

/* Block of 32 (values V, magnitudes AV) dot the 32 activation bytes at Y, in
 * 8 int32 lanes, as floats. */
ATTND_AVX2 IQ4_INLINE __m256 iq4nl_dot32_avx2(__m256i v, __m256i av, const int8_t *y)
{
    const __m256i yv = _mm256_loadu_si256((const __m256i *)(const void *)y);
    const __m256i p16 = _mm256_maddubs_epi16(av, _mm256_sign_epi8(yv, v));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

/* vpdpbusd: maddubs and the pairwise add in one instruction. */
ATTND_AVX512 IQ4_INLINE __m256 iq4nl_dot32_avx512(__m256i v, __m256i av, const int8_t *y)
{
    const __m256i yv = _mm256_loadu_si256((const __m256i *)(const void *)y);
    return _mm256_cvtepi32_ps(
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), av, _mm256_sign_epi8(yv, v)));
}

/* NAME(nb, w, x, x_stride, out, nx): the IQ4_NL rows kernel for TARGET with
 * DOT32 as the per-block integer dot. Blocks alternate between two
 * accumulators per row (by block index, the same whatever NX is) to halve
 * the multiply-add dependency chain. The scale products dw * dx of a group
 * of 8 blocks are formed at once and read back as broadcasts. */
#define IQ4NL_ROWS(NAME, TARGET, DOT32)                                                            \
    TARGET IQ4_INLINE void NAME(uint32_t nb, const quant_block_iq4_nl *w, const void *x,           \
                                size_t x_stride, float *out, const uint32_t nx)                    \
    {                                                                                              \
        const __m256i table = iq4_table_avx2();                                                    \
        __m256 acc0[4], acc1[4];                                                                   \
        for (uint32_t m = 0; m < 4; m++)                                                           \
            acc0[m] = acc1[m] = _mm256_setzero_ps();                                               \
        uint32_t i = 0;                                                                            \
        for (; i + IQ4_NL_GROUP <= nb; i += IQ4_NL_GROUP) {                                        \
            float sc[4][IQ4_NL_GROUP];                                                             \
            quant_prefetch(w + i, IQ4_NL_GROUP * sizeof *w);                                       \
            const __m256 dw = iq4_halves8_avx2((const uint8_t *)(w + i), sizeof *w);               \
            for (uint32_t m = 0; m < nx; m++) {                                                    \
                const quant_block_q8_0 *xb =                                                       \
                    (const quant_block_q8_0 *)quant_act_row(x, x_stride, m) + i;                         \
                _mm256_storeu_ps(sc[m], _mm256_mul_ps(dw, iq4_halves8_avx2((const uint8_t *)xb,    \
                                                                           sizeof *xb)));          \
            }                                                                                      \
            IQ4_IN_MEMORY(sc);                                                                     \
            _Pragma("GCC unroll 4") for (uint32_t k = 0; k < IQ4_NL_GROUP; k += 2)                 \
            {                                                                                      \
                const __m256i v0 = _mm256_shuffle_epi8(table, iq4_indices32_avx2(w[i + k].qs));    \
                const __m256i v1 =                                                                 \
                    _mm256_shuffle_epi8(table, iq4_indices32_avx2(w[i + k + 1].qs));               \
                const __m256i av0 = _mm256_abs_epi8(v0), av1 = _mm256_abs_epi8(v1);                \
                for (uint32_t m = 0; m < nx; m++) {                                                \
                    const quant_block_q8_0 *xb =                                                   \
                        (const quant_block_q8_0 *)quant_act_row(x, x_stride, m) + i + k;                 \
                    acc0[m] = _mm256_fmadd_ps(_mm256_set1_ps(sc[m][k]), DOT32(v0, av0, xb[0].qs),  \
                                              acc0[m]);                                            \
                    acc1[m] = _mm256_fmadd_ps(_mm256_set1_ps(sc[m][k + 1]),                        \
                                              DOT32(v1, av1, xb[1].qs), acc1[m]);                  \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        for (; i < nb; i++) {                                                                      \
            const __m256i v = _mm256_shuffle_epi8(table, iq4_indices32_avx2(w[i].qs));             \
            const __m256i av = _mm256_abs_epi8(v);                                                 \
            const float dw = _cvtsh_ss(w[i].d);                                                    \
            for (uint32_t m = 0; m < nx; m++) {                                                    \
                const quant_block_q8_0 *xb =                                                       \
                    (const quant_block_q8_0 *)quant_act_row(x, x_stride, m) + i;                         \
                const __m256 s = _mm256_set1_ps(dw * _cvtsh_ss(xb->d));                            \
                const __m256 p = DOT32(v, av, xb->qs);                                             \
                if (i & 1)                                                                         \
                    acc1[m] = _mm256_fmadd_ps(s, p, acc1[m]);                                      \
                else                                                                               \
                    acc0[m] = _mm256_fmadd_ps(s, p, acc0[m]);                                      \
            }                                                                                      \
        }                                                                                          \
        for (uint32_t m = 0; m < nx; m++)                                                          \
            out[m] = attnd_hsum256(_mm256_add_ps(acc0[m], acc1[m]));                               \
    }

IQ4NL_ROWS(iq4nl_rows_avx2, ATTND_AVX2, iq4nl_dot32_avx2)
IQ4NL_ROWS(iq4nl_rows_avx512, ATTND_AVX512, iq4nl_dot32_avx512)

ATTND_AVX2 void quant_iq4nl_dot_avx2(uint32_t n, const void *restrict w, const void *restrict x,
                                     size_t x_stride, uint32_t nx, float *restrict out)
{
    const uint32_t nb = n / QUANT_QK;
#define CALL(k) iq4nl_rows_avx2(nb, w, x, x_stride, out, k)
    QUANT_PER_NX(nx, CALL)
#undef CALL
}

ATTND_AVX512 void quant_iq4nl_dot_avx512(uint32_t n, const void *restrict w,
                                         const void *restrict x, size_t x_stride, uint32_t nx,
                                         float *restrict out)
{
    const uint32_t nb = n / QUANT_QK;
#define CALL(k) iq4nl_rows_avx512(nb, w, x, x_stride, out, k)
    QUANT_PER_NX(nx, CALL)
#undef CALL
}

/* --------------------------------------------------------------- IQ4_XS */

/* Per sub-block: maddubs of magnitudes by sign-moved activations, then one
 * 16-bit multiply-add by the sub-block scale (two equal int16 per 32-bit
 * slot, broadcast from memory). */
ATTND_AVX2 IQ4_INLINE void iq4xs_rows_avx2(uint32_t nb, const quant_block_iq4_xs *w,
                                           const void *x, size_t x_stride, float *out,
                                           const uint32_t nx)
{
    const __m256i table = iq4_table_avx2();
    __m256 acc[4];
    for (uint32_t m = 0; m < 4; m++)
        acc[m] = _mm256_setzero_ps();
    for (uint32_t i = 0; i < nb; i++) {
        quant_prefetch(&w[i], sizeof w[i]);
        int32_t pairs[IQ4_XS_SUBS];
        _mm256_storeu_si256((__m256i *)(void *)pairs, iq4_dup_low16_avx2(iq4xs_scales_avx2(&w[i])));
        IQ4_IN_MEMORY(pairs);
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
                    (const quant_block_q8_K *)quant_act_row(x, x_stride, m) + i;
                const __m256i y =
                    _mm256_loadu_si256((const __m256i *)(const void *)(xb->qs + s * QUANT_QK));
                const __m256i p16 = _mm256_maddubs_epi16(av, _mm256_sign_epi8(y, v));
                isum[m] = _mm256_add_epi32(isum[m], _mm256_madd_epi16(p16, ls));
            }
        }
        const float dw = _cvtsh_ss(w[i].d);
        for (uint32_t m = 0; m < nx; m++) {
            const quant_block_q8_K *xb = (const quant_block_q8_K *)quant_act_row(x, x_stride, m) + i;
            acc[m] = _mm256_fmadd_ps(_mm256_set1_ps(dw * xb->d), _mm256_cvtepi32_ps(isum[m]),
                                     acc[m]);
        }
    }
    for (uint32_t m = 0; m < nx; m++)
        out[m] = attnd_hsum256(acc[m]);
}

/* Per sub-block: vpdpbusd of the table shifted to unsigned (v + 128) by the
 * activations, times the sub-block scale (a 32-bit multiply with the scale
 * broadcast from memory). The 128 * sum(x) each sub-block gained is taken
 * off up front: the block's bsums pairwise times -128 * scale, one 16-bit
 * multiply-add per row. Nothing saturates and nothing overflows: each
 * sub-block's term is below 32 * 241 * 128 * 32 in magnitude, 8 of them far
 * below 2^31. */
ATTND_AVX512 IQ4_INLINE void iq4xs_rows_avx512(uint32_t nb, const quant_block_iq4_xs *w,
                                               const void *x, size_t x_stride, float *out,
                                               const uint32_t nx)
{
    const __m256i table = _mm256_xor_si256(iq4_table_avx2(), _mm256_set1_epi8(-128));
    __m256 acc[4];
    for (uint32_t m = 0; m < 4; m++)
        acc[m] = _mm256_setzero_ps();
    for (uint32_t i = 0; i < nb; i++) {
        quant_prefetch(&w[i], sizeof w[i]);
        int32_t ls[IQ4_XS_SUBS];
        const __m256i scales = iq4xs_scales_avx2(&w[i]);
        _mm256_storeu_si256((__m256i *)(void *)ls, scales);
        IQ4_IN_MEMORY(ls);
        const __m256i offset =
            _mm256_mullo_epi16(iq4_dup_low16_avx2(scales), _mm256_set1_epi16(-128));
        __m256i isum[4];
        for (uint32_t m = 0; m < nx; m++) {
            const quant_block_q8_K *xb = (const quant_block_q8_K *)quant_act_row(x, x_stride, m) + i;
            isum[m] = _mm256_madd_epi16(
                _mm256_loadu_si256((const __m256i *)(const void *)xb->bsums), offset);
        }
#pragma GCC unroll 8
        for (int s = 0; s < IQ4_XS_SUBS; s++) {
            const __m256i u =
                _mm256_shuffle_epi8(table, iq4_indices32_avx2(w[i].qs + s * (QUANT_QK / 2)));
            const __m256i scale = _mm256_set1_epi32(ls[s]);
            for (uint32_t m = 0; m < nx; m++) {
                const quant_block_q8_K *xb =
                    (const quant_block_q8_K *)quant_act_row(x, x_stride, m) + i;
                const __m256i y =
                    _mm256_loadu_si256((const __m256i *)(const void *)(xb->qs + s * QUANT_QK));
                const __m256i t = _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, y);
                isum[m] = _mm256_add_epi32(isum[m], _mm256_mullo_epi32(t, scale));
            }
        }
        const float dw = _cvtsh_ss(w[i].d);
        for (uint32_t m = 0; m < nx; m++) {
            const quant_block_q8_K *xb = (const quant_block_q8_K *)quant_act_row(x, x_stride, m) + i;
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
#define CALL(k) iq4xs_rows_avx2(nb, w, x, x_stride, out, k)
    QUANT_PER_NX(nx, CALL)
#undef CALL
}

ATTND_AVX512 void quant_iq4xs_dot_avx512(uint32_t n, const void *restrict w,
                                         const void *restrict x, size_t x_stride, uint32_t nx,
                                         float *restrict out)
{
    const uint32_t nb = n / QUANT_QK_K;
#define CALL(k) iq4xs_rows_avx512(nb, w, x, x_stride, out, k)
    QUANT_PER_NX(nx, CALL)
#undef CALL
}

#endif
