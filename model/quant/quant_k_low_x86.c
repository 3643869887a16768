/* quant_k_low_x86.c - the x86 dot kernels of Q2_K and Q3_K against Q8_K
 * activations (AVX2, and AVX-512 VNNI on 256-bit vectors).
 *
 * Each kernel unpacks a weight super-block once, one 32-element vector at a
 * time (two sub-blocks: one per 128-bit lane), and multiplies it into every
 * activation row before the next vector: batched decode pays the unpacking
 * once. The integer sums are the scalar reference's; only the float
 * accumulation (8 lanes, summed at the end) differs. For Q2_K the lanes and
 * float operations are llama.cpp's, so both kernels give its bits; Q3_K
 * takes its levels' bias off through the activation's sub-block sums, which
 * is cheaper than llama.cpp's signed products but spreads the same integer
 * total over the lanes differently. A row's float operations do not depend
 * on how many rows there are, so its result has the same bits in every slot
 * of every batch. The row loops are expanded for each batch size so the
 * per-row sums stay in registers.
 *
 * 256-bit vectors even with AVX-512: the machines' AMD cores split 512-bit
 * operations in two, and the 32 registers AVX-512 brings serve the 256-bit
 * code as well. */
#include "quant_internal.h"

#include <stddef.h>
#include <string.h>

#include "quant_k_low_x86.h"

#ifdef ATTND_HAVE_X86

#define INLINE_AVX2 ATTND_AVX2 static inline __attribute__((always_inline))
#define INLINE_AVX512 ATTND_AVX512 static inline __attribute__((always_inline))
#define MAX_NX 4

INLINE_AVX2 __m256i load256(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}


/* Vector V (0..7) of a super-block's 2-bit levels: elements 32V..32V+31,
 * from bit pair V % 4 of the 32 bytes BITS (qs[32 * (V / 4)...]). */
INLINE_AVX2 __m256i levels2(__m256i bits, int v)
{
    return _mm256_and_si256(_mm256_srli_epi16(bits, 2 * (v % 4)), _mm256_set1_epi8(3));
}

/* A shuffle control that spreads byte LO over the 16-bit lanes of the low
 * half and byte HI over the high half, each zero-extended. */
INLINE_AVX2 __m256i spread_bytes_ctl(int lo, int hi)
{
    return _mm256_setr_m128i(_mm_set1_epi16((short)(0x8000 | lo)),
                             _mm_set1_epi16((short)(0x8000 | hi)));
}

/* The same with each byte in the high byte of its 16-bit lane. */
INLINE_AVX2 __m256i spread_bytes_hi_ctl(int lo, int hi)
{
    return _mm256_setr_m128i(_mm_set1_epi16((short)(0x0080 | lo << 8)),
                             _mm_set1_epi16((short)(0x0080 | hi << 8)));
}

/* A shuffle control that spreads 16-bit element LO (of a half) over the low
 * half and element HI over the high half. */
INLINE_AVX2 __m256i spread_words_ctl(int lo, int hi)
{
    return _mm256_setr_m128i(_mm_set1_epi16((short)(2 * lo | (2 * lo + 1) << 8)),
                             _mm_set1_epi16((short)(2 * hi | (2 * hi + 1) << 8)));
}

/* ------------------------------------------------------------------ Q2_K */

_Static_assert(offsetof(quant_block_q2_K, dmin) == offsetof(quant_block_q2_K, d) + 2,
               "Q2_K's two half scales are converted with one load");

/* What every row needs of one Q2_K block: the 16 scales in both halves
 * (bytes), the 16 mins (16-bit), the packed levels, d and -dmin. */
typedef struct q2_K_unpacked {
    __m256i scales, mins;
    __m256i bits[2];
    __m256 d, neg_dmin;
} q2_K_unpacked;

INLINE_AVX2 q2_K_unpacked q2_K_unpack(const quant_block_q2_K *wb)
{
    const __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)wb->scales);
    int32_t halves;
    memcpy(&halves, &wb->d, sizeof halves);
    const __m256 dd = _mm256_castps128_ps256(_mm_cvtph_ps(_mm_cvtsi32_si128(halves)));
    q2_K_unpacked u;
    u.scales = _mm256_and_si256(_mm256_broadcastsi128_si256(raw), _mm256_set1_epi8(0xF));
    u.mins = _mm256_srli_epi16(_mm256_cvtepu8_epi16(raw), 4);
    u.bits[0] = load256(wb->qs);
    u.bits[1] = load256(wb->qs + 32);
    u.d = _mm256_permutevar8x32_ps(dd, _mm256_setzero_si256());
    u.neg_dmin = _mm256_xor_ps(_mm256_permutevar8x32_ps(dd, _mm256_set1_epi32(1)),
                               _mm256_set1_ps(-0.0f));
    return u;
}

/* Vector V's scales (sub-blocks 2V, 2V + 1), 16-bit. */
INLINE_AVX2 __m256i q2_K_scales16(const q2_K_unpacked *u, int v)
{
    return _mm256_shuffle_epi8(u->scales, spread_bytes_ctl(2 * v, 2 * v + 1));
}

/* The block's contribution from row sums SUM_QX (sc * q . x) and the mins
 * against the activation's sub-block sums: the mins' term first, then the
 * levels', each with its scales' product. These are llama.cpp's float
 * operations on the same 8 lanes of integer sums, so the result has its
 * bits (and a matmul its outputs). */
INLINE_AVX2 __m256 q2_K_finish(const q2_K_unpacked *u, __m256i sum_qx,
                               const quant_block_q8_K *xb, __m256 acc)
{
    const __m256i sum_min = _mm256_madd_epi16(u->mins, load256(xb->bsums));
    const __m256 xd = _mm256_set1_ps(xb->d);
    acc = _mm256_fmadd_ps(_mm256_mul_ps(xd, u->neg_dmin), _mm256_cvtepi32_ps(sum_min), acc);
    return _mm256_fmadd_ps(_mm256_mul_ps(xd, u->d), _mm256_cvtepi32_ps(sum_qx), acc);
}

/* Vector V's levels times their scales, as bytes (sc * q <= 45), for
 * vpdpbusd. A 16-bit multiply of a pair of bytes cannot carry across them
 * at these sizes. Bit pairs 2 and 3 are masked in place (16q, 64q per
 * byte) and scaled by a high multiply with sc * 2^12 or sc * 2^10 (16sc or
 * 4sc in the high byte of the multiplier), which drops the power of two
 * exactly: one shift fewer each. SCALES16X and SCALES4X are the scales
 * shifted left by 4 and 2. */
INLINE_AVX2 __m256i q2_K_scaled_levels(const q2_K_unpacked *u, __m256i scales16x,
                                         __m256i scales4x, int v)
{
    const __m256i bits = u->bits[v / 4], hi_ctl = spread_bytes_hi_ctl(2 * v, 2 * v + 1);
    switch (v % 4) {
    case 0:
        return _mm256_mullo_epi16(_mm256_and_si256(bits, _mm256_set1_epi8(0x03)),
                                  q2_K_scales16(u, v));
    case 1:
        return _mm256_mullo_epi16(levels2(bits, 1), q2_K_scales16(u, v));
    case 2:
        return _mm256_mulhi_epu16(_mm256_and_si256(bits, _mm256_set1_epi8(0x30)),
                                  _mm256_shuffle_epi8(scales16x, hi_ctl));
    default:
        return _mm256_mulhi_epu16(_mm256_and_si256(bits, _mm256_set1_epi8((char)0xC0)),
                                  _mm256_shuffle_epi8(scales4x, hi_ctl));
    }
}

/* One row's sums on AVX2: levels times activations in 16-bit pairs (at
 * most 3 * 128 * 2), then times the scales into 32-bit lanes. */
INLINE_AVX2 __m256i q2_K_sum1_avx2(const q2_K_unpacked *u, const int8_t *xq)
{
    __m256i sum = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int v = 0; v < 8; v++) {
        const __m256i p = _mm256_maddubs_epi16(levels2(u->bits[v / 4], v), load256(xq + 32 * v));
        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, q2_K_scales16(u, v)));
    }
    return sum;
}

/* AVX2. One row as q2_K_sum1_avx2. More rows: the scales go into the levels
 * once for all of them, then two vectors' pair sums add in 16 bits (at most
 * 4 * 45 * 128) before one multiply by ones widens them, fewer steps per
 * row. Both give each lane the same integer sum. */
INLINE_AVX2 void q2_K_rows_avx2(size_t nb, const quant_block_q2_K *w, const void *x,
                                size_t x_stride, const uint32_t nx, float *out)
{
    __m256 acc[MAX_NX];
    for (uint32_t m = 0; m < nx; m++)
        acc[m] = _mm256_setzero_ps();
    for (size_t b = 0; b < nb; b++) {
        quant_prefetch(&w[b], sizeof w[b]);
        const q2_K_unpacked u = q2_K_unpack(&w[b]);
        __m256i sum[MAX_NX];
        if (nx == 1) {
            sum[0] = q2_K_sum1_avx2(&u, quant_act_q8_K(x, x_stride, 0, b)->qs);
        } else {
            const __m256i scales16x = _mm256_slli_epi16(u.scales, 4);
            const __m256i scales4x = _mm256_slli_epi16(u.scales, 2);
            for (uint32_t m = 0; m < nx; m++)
                sum[m] = _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int v = 0; v < 8; v += 2) {
                const __m256i q0 = q2_K_scaled_levels(&u, scales16x, scales4x, v);
                const __m256i q1 = q2_K_scaled_levels(&u, scales16x, scales4x, v + 1);
                for (uint32_t m = 0; m < nx; m++) {
                    const int8_t *xq = quant_act_q8_K(x, x_stride, m, b)->qs + 32 * v;
                    const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(q0, load256(xq)),
                                                       _mm256_maddubs_epi16(q1, load256(xq + 32)));
                    sum[m] = _mm256_add_epi32(sum[m], _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
                }
            }
        }
        for (uint32_t m = 0; m < nx; m++)
            acc[m] = q2_K_finish(&u, sum[m], quant_act_q8_K(x, x_stride, m, b), acc[m]);
    }
    for (uint32_t m = 0; m < nx; m++)
        out[m] = attnd_hsum256(acc[m]);
}

/* AVX-512 VNNI: one vpdpbusd per row and vector does multiply, pair sums
 * and accumulation; two chains per row, as its latency would otherwise
 * bound a single row. */
INLINE_AVX512 void q2_K_rows_avx512(size_t nb, const quant_block_q2_K *w, const void *x,
                                    size_t x_stride, const uint32_t nx, float *out)
{
    __m256 acc[MAX_NX];
    for (uint32_t m = 0; m < nx; m++)
        acc[m] = _mm256_setzero_ps();
    for (size_t b = 0; b < nb; b++) {
        quant_prefetch(&w[b], sizeof w[b]);
        const q2_K_unpacked u = q2_K_unpack(&w[b]);
        const __m256i scales16x = _mm256_slli_epi16(u.scales, 4);
        const __m256i scales4x = _mm256_slli_epi16(u.scales, 2);
        __m256i sum[MAX_NX][2];
        for (uint32_t m = 0; m < nx; m++)
            sum[m][0] = sum[m][1] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) {
            const __m256i q = q2_K_scaled_levels(&u, scales16x, scales4x, v);
            for (uint32_t m = 0; m < nx; m++)
                sum[m][v % 2] = _mm256_dpbusd_epi32(
                    sum[m][v % 2], q, load256(quant_act_q8_K(x, x_stride, m, b)->qs + 32 * v));
        }
        for (uint32_t m = 0; m < nx; m++)
            acc[m] = q2_K_finish(&u, _mm256_add_epi32(sum[m][0], sum[m][1]),
                                 quant_act_q8_K(x, x_stride, m, b), acc[m]);
    }
    for (uint32_t m = 0; m < nx; m++)
        out[m] = attnd_hsum256(acc[m]);
}

/* ------------------------------------------------------------------ Q3_K */

/* What every row needs of one Q3_K block: the signed scales (16-bit) of
 * sub-blocks 0-7 in both halves and of 8-15 in both halves, all 16 times 4
 * in order, the packed bits, the half scale. */
typedef struct q3_K_unpacked {
    __m256i scales_lo, scales_hi, scales_x4;
    __m256i bits[2], hmask;
    __m256 d;
} q3_K_unpacked;

/* The 16 6-bit scales, minus 32, as signed bytes: low nibbles from bytes
 * 0-7 (scales 0-7 low, 8-15 high), two high bits from bytes 8-11, scale j's
 * in byte 8 + j % 4 at bit 2 * (j / 4). */
INLINE_AVX2 __m128i q3_K_scales8(const uint8_t *s)
{
    uint64_t low;
    uint32_t high;
    memcpy(&low, s, 8);
    memcpy(&high, s + 8, 4);
    const uint64_t nib = 0x0F0F0F0F0F0F0F0Full, two = 0x03030303u;
    const uint64_t h = high;
    const uint64_t s0 = (low & nib) | ((h & two) | (h >> 2 & two) << 32) << 4;
    const uint64_t s8 = (low >> 4 & nib) | ((h >> 4 & two) | (h >> 6 & two) << 32) << 4;
    return _mm_sub_epi8(_mm_set_epi64x((long long)s8, (long long)s0), _mm_set1_epi8(32));
}

INLINE_AVX2 q3_K_unpacked q3_K_unpack(const quant_block_q3_K *wb)
{
    const __m256i s16 = _mm256_cvtepi8_epi16(q3_K_scales8(wb->scales));
    q3_K_unpacked u;
    u.scales_lo = _mm256_permute2x128_si256(s16, s16, 0x00);
    u.scales_hi = _mm256_permute2x128_si256(s16, s16, 0x11);
    u.scales_x4 = _mm256_slli_epi16(s16, 2);
    u.bits[0] = load256(wb->qs);
    u.bits[1] = load256(wb->qs + 32);
    u.hmask = load256(wb->hmask);
    u.d = _mm256_cvtph_ps(_mm_set1_epi16((short)wb->d));
    return u;
}

/* Vector V's levels plus 4 (0..7): the high bit is bit V of each hmask
 * byte, moved to bit 2. */
INLINE_AVX2 __m256i q3_K_levels(const q3_K_unpacked *u, int v)
{
    const __m256i high = v < 2 ? _mm256_slli_epi16(u->hmask, 2 - v)
                               : _mm256_srli_epi16(u->hmask, v - 2);
    return _mm256_or_si256(levels2(u->bits[v / 4], v),
                           _mm256_and_si256(high, _mm256_set1_epi8(4)));
}

/* Vector V's scales (sub-blocks 2V, 2V + 1), 16-bit. */
INLINE_AVX2 __m256i q3_K_scales16(const q3_K_unpacked *u, int v)
{
    const __m256i src = v < 4 ? u->scales_lo : u->scales_hi;
    return _mm256_shuffle_epi8(src, spread_words_ctl(2 * v % 8, (2 * v + 1) % 8));
}

/* SUM_QX4 holds s * (q + 4) . x; the levels' bias comes off through the
 * activation's sub-block sums (4 * s * bsum), then both scales. */
INLINE_AVX2 __m256 q3_K_finish(const q3_K_unpacked *u, __m256i sum_qx4,
                               const quant_block_q8_K *xb, __m256 acc)
{
    const __m256i bias = _mm256_madd_epi16(u->scales_x4, load256(xb->bsums));
    const __m256 s = _mm256_cvtepi32_ps(_mm256_sub_epi32(sum_qx4, bias));
    return _mm256_fmadd_ps(_mm256_mul_ps(u->d, _mm256_set1_ps(xb->d)), s, acc);
}

/* The biased levels (0..7) times activations fit 16-bit pairs (7 * 128 *
 * 2); the scales then widen them to 32 bits: madd and add on AVX2, one
 * vpdpwssd on AVX-512 VNNI, in two chains per row so that its latency does
 * not bound a single row. */
#define Q3_K_ROWS(NAME, INLINE, ACCUMULATE)                                                        \
    INLINE void NAME(size_t nb, const quant_block_q3_K *w, const void *x, size_t x_stride,         \
                     const uint32_t nx, float *out)                                                \
    {                                                                                              \
        __m256 acc[MAX_NX];                                                                        \
        for (uint32_t m = 0; m < nx; m++)                                                          \
            acc[m] = _mm256_setzero_ps();                                                          \
        for (size_t b = 0; b < nb; b++) {                                                          \
            quant_prefetch(&w[b], sizeof w[b]);                                                    \
            const q3_K_unpacked u = q3_K_unpack(&w[b]);                                            \
            __m256i sum[MAX_NX][2];                                                                \
            for (uint32_t m = 0; m < nx; m++)                                                      \
                sum[m][0] = sum[m][1] = _mm256_setzero_si256();                                    \
            _Pragma("GCC unroll 8") for (int v = 0; v < 8; v++)                                    \
            {                                                                                      \
                const __m256i q = q3_K_levels(&u, v), sc = q3_K_scales16(&u, v);                   \
                for (uint32_t m = 0; m < nx; m++) {                                                \
                    const __m256i p = _mm256_maddubs_epi16(                                        \
                        q, load256(quant_act_q8_K(x, x_stride, m, b)->qs + 32 * v));                    \
                    sum[m][v % 2] = ACCUMULATE(sum[m][v % 2], p, sc);                              \
                }                                                                                  \
            }                                                                                      \
            for (uint32_t m = 0; m < nx; m++)                                                      \
                acc[m] = q3_K_finish(&u, _mm256_add_epi32(sum[m][0], sum[m][1]),                   \
                                     quant_act_q8_K(x, x_stride, m, b), acc[m]);                        \
        }                                                                                          \
        for (uint32_t m = 0; m < nx; m++)                                                          \
            out[m] = attnd_hsum256(acc[m]);                                                        \
    }

#define MADD_ADD(sum, p, sc) _mm256_add_epi32(sum, _mm256_madd_epi16(p, sc))
#define DPWSSD(sum, p, sc) _mm256_dpwssd_epi32(sum, p, sc)
Q3_K_ROWS(q3_K_rows_avx2, INLINE_AVX2, MADD_ADD)
Q3_K_ROWS(q3_K_rows_avx512, INLINE_AVX512, DPWSSD)
#undef MADD_ADD
#undef DPWSSD
#undef Q3_K_ROWS

/* ------------------------------------------------------------------ entry points */

/* Batches of 1..4 rows, each with its own expansion of ROWS (the switch
 * of QUANT_PER_NX, spelled out: its CALL cannot reach this macro's ROWS). */
#define K_LOW_DOT(NAME, TARGET, BLOCK_T, ROWS)                                                     \
    TARGET void NAME(uint32_t n, const void *restrict w, const void *restrict x, size_t x_stride,  \
                     uint32_t nx, float *restrict out)                                             \
    {                                                                                              \
        const BLOCK_T *wb = w;                                                                     \
        const size_t nb = n / QUANT_QK_K;                                                          \
        switch (nx) {                                                                              \
        case 1: ROWS(nb, wb, x, x_stride, 1, out); break;                                          \
        case 2: ROWS(nb, wb, x, x_stride, 2, out); break;                                          \
        case 3: ROWS(nb, wb, x, x_stride, 3, out); break;                                          \
        default: ROWS(nb, wb, x, x_stride, 4, out); break;                                         \
        }                                                                                          \
    }

K_LOW_DOT(quant_q2_K_dot_avx2, ATTND_AVX2, quant_block_q2_K, q2_K_rows_avx2)
K_LOW_DOT(quant_q2_K_dot_avx512, ATTND_AVX512, quant_block_q2_K, q2_K_rows_avx512)
K_LOW_DOT(quant_q3_K_dot_avx2, ATTND_AVX2, quant_block_q3_K, q3_K_rows_avx2)
K_LOW_DOT(quant_q3_K_dot_avx512, ATTND_AVX512, quant_block_q3_K, q3_K_rows_avx512)

#endif
