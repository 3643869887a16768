/* quant_k_x86.c - the x86 kernels of quant_k.c: Q4_K, Q5_K and Q6_K dots
 * against Q8_K activations on AVX2 and on AVX-512 VNNI, and the Q8_K
 * activation quantizer for both.
 *
 * The dots give llama.cpp's bits. They compute the scalar reference's exact
 * integer sums, but per super-block in the 8 lanes ggml's AVX2 kernels use
 * (lane i: the products of elements 4i..4i+3 of every 32-element stretch,
 * times their sub-block scales), and then do ggml's float operations in its
 * order: acc += (d_x * d_w) * lanes by FMA, Q4_K's min term in 4 lanes of
 * its own, Q5_K's as one float, then ggml's horizontal sum. llama.cpp's x86
 * builds, AVX2 or AVX-512, run exactly those kernels for these types (the
 * reference build has no AVX-512 variant of them), and our Q8_K quantizer
 * is its reference bit for bit, so a forward pass reproduces its logits
 * rather than landing within rounding of them: a different summation order
 * would, now and then, round an activation of the next layer the other way.
 * The AVX-512 kernels reach the same lanes with 64-byte vectors and fold
 * the two halves before the float part, so both ISAs give the same bits.
 *
 * Each weight block is unpacked once (levels to bytes, 6-bit scales to
 * int16 vectors) and used for all NX activation rows; every row goes
 * through the same operations whatever NX is, so its result does not depend
 * on what it is batched with.
 *
 * maddubs multiplies unsigned by signed bytes: Q4_K/Q5_K levels are
 * unsigned; Q6_K's signed q - 32 moves its sign onto the activation, which
 * needs activations in [-127, 127]: what the Q8_K quantizer gives for any
 * input, NaN included (its rounding maps a NaN to its payload, clamped to
 * 127). Pair sums stay below 2^15 (2 * 63 * 127). */
#include "quant_internal.h"

#include <string.h>

#include "quant_k_x86.h"

#ifdef ATTND_HAVE_X86

#define QK QUANT_QK_K
#define INLINE static inline __attribute__((always_inline))


#define LOAD128(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#define LOAD256(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define LOAD512(p) _mm512_loadu_si512((const void *)(p))

/* Bytes 0-7: the 8 sub-block scales of a Q4_K/Q5_K block, bytes 8-15 its 8
 * mins, unpacked from the 12-byte 6-bit packing (quant_k.c's
 * unpack_scale_min) 4 at a time. With the packing's words a, b, c:
 * scales 0-3 = a & 63, mins 0-3 = b & 63, scales 4-7 = c's low nibbles with
 * a's top 2 bits above them, mins 4-7 = c's high nibbles with b's. Loads 16
 * bytes: the 4 after the scales are the block's own (qh or qs follow). */
ATTND_AVX2 INLINE __m128i unpack_scales_mins(const uint8_t packed[12])
{
    const __m128i v = LOAD128(packed);
    const __m128i acbc = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0));
    const __m128i aabb = _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0));
    const __m128i low = _mm_and_si128(_mm_srlv_epi32(acbc, _mm_setr_epi32(0, 0, 0, 4)),
                                      _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    const __m128i top = _mm_and_si128(_mm_srli_epi32(aabb, 2), _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
    return _mm_or_si128(low, top);
}

/* vpshufb controls that widen bytes to int16 (a control byte 0x80 gives 0):
 * byte J of each 128-bit lane into every int16. */
ATTND_AVX2 INLINE __m256i widen_byte(int j)
{
    return _mm256_set1_epi16((short)(0x8000 | j));
}

/* ---- shared by both ISAs ------------------------------------------------ */

/* Per row: ggml's float accumulators. */
typedef struct k_acc {
    __m256 main; /* += (d_x * d_w) * lanes */
    __m128 min4; /* Q4_K: += -(d_x * dmin_w) * the min term in 4 lanes */
    float min1;  /* Q5_K: += -(d_x * dmin_w) * the whole min term */
} k_acc;

enum { KIND_Q4 = 4, KIND_Q5 = 5, KIND_Q6 = 6 };

ATTND_AVX2 INLINE k_acc k_acc_zero(void)
{
    return (k_acc){_mm256_setzero_ps(), _mm_setzero_ps(), 0.0f};
}

/* One block's float update of one row: LANES its 8 integer lanes, MINS8 the
 * block's 8 mins as int16 (Q4_K/Q5_K). The min term pairs each min with
 * the sum of its sub-block's two bsums: 4 lanes of 2 products. */
ATTND_AVX2 INLINE void k_acc_block(k_acc *a, __m256i lanes, float dw, float dmw, __m128i mins8,
                                   const quant_block_q8_K *xb, int kind)
{
    const float xd = xb->d;
    a->main = _mm256_fmadd_ps(_mm256_set1_ps(xd * dw), _mm256_cvtepi32_ps(lanes), a->main);
    if (kind == KIND_Q6)
        return;
    const __m128i pair_sums = _mm_hadd_epi16(LOAD128(xb->bsums), LOAD128(xb->bsums + 8));
    const __m128i mins = _mm_madd_epi16(mins8, pair_sums);
    const float neg_dmin = -xd * dmw;
    if (kind == KIND_Q4) {
        a->min4 = _mm_fmadd_ps(_mm_set1_ps(neg_dmin), _mm_cvtepi32_ps(mins), a->min4);
    } else {
        __m128i t = _mm_add_epi32(mins, _mm_unpackhi_epi64(mins, mins));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 1));
        a->min1 = _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(neg_dmin),
                                             _mm_set_ss((float)_mm_cvtsi128_si32(t)),
                                             _mm_set_ss(a->min1)));
    }
}

ATTND_AVX2 INLINE float k_acc_total(const k_acc *a, int kind)
{
    const float main = attnd_hsum256(a->main);
    if (kind == KIND_Q6)
        return main;
    if (kind == KIND_Q5)
        return main + a->min1;
    __m128 m = _mm_add_ps(a->min4, _mm_movehl_ps(a->min4, a->min4));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    return main + _mm_cvtss_f32(m);
}

/* ---- AVX2 --------------------------------------------------------------- */

/* Rows of one 32-element stretch: lanes[m] += sc * (w . x_m) by groups of
 * 4 elements, WQ the levels as unsigned bytes, SC the scale in every int16
 * lane; with IS_SIGNED, the activation takes the signs of SIGNS first. */
#define AVX2_STRETCH(wq, sc, xoff, is_signed, signs)                                               \
    for (int m = 0; m < nx; m++) {                                                                 \
        __m256i xq = LOAD256(xb[m]->qs + (xoff));                                                  \
        if (is_signed)                                                                             \
            xq = _mm256_sign_epi8(xq, signs);                                                      \
        const __m256i p16 = _mm256_maddubs_epi16(wq, xq);                                          \
        lanes[m] = _mm256_add_epi32(lanes[m], _mm256_madd_epi16(p16, sc));                         \
    }

/* Q4_K and Q5_K (KIND) against NX rows. Chunk c of 64 elements is the low
 * nibbles (sub-block 2c) and high nibbles (2c + 1) of 32 bytes of qs;
 * Q5_K's fifth bits are bits 2c and 2c + 1 of qh's 32 bytes. */
ATTND_AVX2 INLINE void scale_min_rows_avx2(uint32_t nb, const void *w, const void *x,
                                           size_t x_stride, const int nx, const int kind,
                                           float *out)
{
    const size_t w_bytes = kind == KIND_Q5 ? sizeof(quant_block_q5_K) : sizeof(quant_block_q4_K);
    const __m256i low4 = _mm256_set1_epi8(0x0f), bit4 = _mm256_set1_epi8(0x10);
    k_acc acc[4];
    for (int m = 0; m < nx; m++)
        acc[m] = k_acc_zero();
    for (uint32_t b = 0; b < nb; b++) {
        /* Q4_K and Q5_K agree on d, dmin, scales; qs follows qh in Q5_K */
        const quant_block_q4_K *wb =
            (const quant_block_q4_K *)(const void *)((const uint8_t *)w + b * w_bytes);
        const quant_block_q5_K *wb5 = (const quant_block_q5_K *)(const void *)wb;
        const uint8_t *qs = kind == KIND_Q5 ? wb5->qs : wb->qs;
        __m256i hbits = kind == KIND_Q5 ? LOAD256(wb5->qh) : _mm256_setzero_si256();
        quant_prefetch(wb, w_bytes);
        const quant_block_q8_K *xb[4];
        __m256i lanes[4];
        for (int m = 0; m < nx; m++) {
            xb[m] = quant_act_q8_K(x, x_stride, m, b);
            lanes[m] = _mm256_setzero_si256();
        }
        const __m128i sm = unpack_scales_mins(wb->scales);
        const __m256i sm2 = _mm256_broadcastsi128_si256(sm);
        for (int c = 0; c < QK / 64; c++) {
            const __m256i q = LOAD256(qs + 32 * c);
            __m256i lo = _mm256_and_si256(q, low4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
            if (kind == KIND_Q5) {
                /* bits 0 and 1 of each byte (after shifting c times) to bit 4 */
                lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(hbits, 4), bit4));
                hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(hbits, 3), bit4));
                hbits = _mm256_srli_epi16(hbits, 2);
            }
            const __m256i sc_lo = _mm256_shuffle_epi8(sm2, widen_byte(2 * c));
            const __m256i sc_hi = _mm256_shuffle_epi8(sm2, widen_byte(2 * c + 1));
            AVX2_STRETCH(lo, sc_lo, 64 * c, false, lo)
            AVX2_STRETCH(hi, sc_hi, 64 * c + 32, false, hi)
        }
        const float dw = _cvtsh_ss(wb->d), dmw = _cvtsh_ss(wb->dmin);
        const __m128i mins8 = _mm_cvtepu8_epi16(_mm_unpackhi_epi64(sm, sm));
        for (int m = 0; m < nx; m++)
            k_acc_block(&acc[m], lanes[m], dw, dmw, mins8, xb[m], kind);
    }
    for (int m = 0; m < nx; m++)
        out[m] = k_acc_total(&acc[m], kind);
}

/* vpshufb controls for Q6_K's scales: row t puts scale 2t in bytes 0-7 and
 * 2t + 1 in bytes 8-15 (sign-extended to int16 afterwards, one 16-element
 * sub-block per 128-bit lane). */
static const uint8_t k_q6_scale_pick[8][16] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},
    {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5},
    {6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9},
    {10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13},
    {14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15},
};

/* Rows of one 32-element stretch of Q6_K by ggml's own products: maddubs
 * of the unsigned level q, less maddubs of 32, both against the activation.
 * The same int16 sums as AVX2_STRETCH on |q - 32| and the moved sign, for
 * one more multiply per row in place of two operations per weight vector:
 * the cheaper way for one row. */
#define AVX2_STRETCH_OFFSET(q, sc, xoff)                                                           \
    for (int m = 0; m < nx; m++) {                                                                 \
        const __m256i xq = LOAD256(xb[m]->qs + (xoff));                                            \
        const __m256i p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(q, xq),                          \
                                             _mm256_maddubs_epi16(offset, xq));                    \
        lanes[m] = _mm256_add_epi32(lanes[m], _mm256_madd_epi16(p16, sc));                         \
    }

/* Q6_K against NX rows. Each half of 128 elements takes 64 bytes of ql
 * (nibbles) and 32 of qh (2 bits per element); with BY_SIGN the level
 * q - 32 is multiplied as |q - 32| times the activation with q - 32's sign,
 * without, as ggml does (AVX2_STRETCH_OFFSET). */
ATTND_AVX2 INLINE void q6_K_rows_avx2(uint32_t nb, const quant_block_q6_K *w, const void *x,
                                      size_t x_stride, const int nx, const bool by_sign, float *out)
{
    const __m256i low4 = _mm256_set1_epi8(0x0f), bits45 = _mm256_set1_epi8(0x30);
    const __m256i offset = _mm256_set1_epi8(32);
    k_acc acc[4];
    for (int m = 0; m < nx; m++)
        acc[m] = k_acc_zero();
    for (uint32_t b = 0; b < nb; b++) {
        const quant_block_q6_K *wb = w + b;
        quant_prefetch(wb, sizeof *wb);
        const quant_block_q8_K *xb[4];
        __m256i lanes[4];
        for (int m = 0; m < nx; m++) {
            xb[m] = quant_act_q8_K(x, x_stride, m, b);
            lanes[m] = _mm256_setzero_si256();
        }
        const __m128i sc8 = LOAD128(wb->scales);
        for (int h = 0; h < QK / 128; h++) {
            const __m256i ql0 = LOAD256(wb->ql + 64 * h), ql1 = LOAD256(wb->ql + 64 * h + 32);
            const __m256i qh = LOAD256(wb->qh + 32 * h);
            for (int s = 0; s < 4; s++) {
                const __m256i nib = s == 0   ? _mm256_and_si256(ql0, low4)
                                    : s == 1 ? _mm256_and_si256(ql1, low4)
                                    : s == 2 ? _mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4)
                                             : _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4);
                /* bits 2s, 2s + 1 of qh to bits 4, 5 */
                const __m256i top = s == 0   ? _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(0x03)), 4)
                                    : s == 1 ? _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(0x0c)), 2)
                                    : s == 2 ? _mm256_and_si256(qh, bits45)
                                             : _mm256_and_si256(_mm256_srli_epi16(qh, 2), bits45);
                const __m256i q = _mm256_or_si256(nib, top);
                const int t = 4 * h + s;
                const __m256i sc = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, LOAD128(k_q6_scale_pick[t])));
                if (by_sign) {
                    const __m256i level = _mm256_sub_epi8(q, offset);
                    const __m256i mag = _mm256_abs_epi8(level);
                    AVX2_STRETCH(mag, sc, 32 * t, true, level)
                } else {
                    AVX2_STRETCH_OFFSET(q, sc, 32 * t)
                }
            }
        }
        const float dw = _cvtsh_ss(wb->d);
        for (int m = 0; m < nx; m++)
            k_acc_block(&acc[m], lanes[m], dw, 0.0f, _mm_setzero_si128(), xb[m], KIND_Q6);
    }
    for (int m = 0; m < nx; m++)
        out[m] = k_acc_total(&acc[m], KIND_Q6);
}

ATTND_AVX2 void quant_q4_K_dot_avx2(uint32_t n, const void *restrict w, const void *restrict x,
                                    size_t x_stride, uint32_t nx, float *restrict out)
{
#define CALL(k) scale_min_rows_avx2(n / QK, w, x, x_stride, k, KIND_Q4, out)
    QUANT_PER_NX(nx, CALL)
#undef CALL
}

ATTND_AVX2 void quant_q5_K_dot_avx2(uint32_t n, const void *restrict w, const void *restrict x,
                                    size_t x_stride, uint32_t nx, float *restrict out)
{
#define CALL(k) scale_min_rows_avx2(n / QK, w, x, x_stride, k, KIND_Q5, out)
    QUANT_PER_NX(nx, CALL)
#undef CALL
}

/* For one row the offset products are faster (about 8%), for several the
 * moved sign (about 10%); same int16 sums, same bits. */
ATTND_AVX2 void quant_q6_K_dot_avx2(uint32_t n, const void *restrict w, const void *restrict x,
                                    size_t x_stride, uint32_t nx, float *restrict out)
{
#define CALL(k) q6_K_rows_avx2(n / QK, w, x, x_stride, k, (k) > 1, out)
    QUANT_PER_NX(nx, CALL)
#undef CALL
}

/* ---- AVX-512 VNNI ------------------------------------------------------- */

/* LANES += a 64-element vector of levels against a row's 64 activations:
 * maddubs sums pairs, vpdpwssd multiplies them by SC (int16: each pair's
 * sub-block scale) and adds pairs of pairs, so int32 lane L gets elements
 * 4L..4L+3. */
ATTND_AVX512 INLINE __m512i stretch_avx512(__m512i lanes, __m512i wq, __m512i xq, __m512i sc)
{
    return _mm512_dpwssd_epi32(lanes, _mm512_maddubs_epi16(wq, xq), sc);
}

/* Lanes 0-7 and 8-15 cover elements 4i..4i+3 of two 32-element stretches:
 * their sum is ggml's lane i. */
ATTND_AVX512 INLINE __m256i fold_lanes(__m512i lanes)
{
    return _mm256_add_epi32(_mm512_castsi512_si256(lanes), _mm512_extracti64x4_epi64(lanes, 1));
}

/* Q4_K and Q5_K (KIND) against NX rows. The 64 levels of chunk c (in
 * element order, as the activation's 64 bytes) are the low then the high
 * nibbles of its 32 qs bytes. */
ATTND_AVX512 INLINE void scale_min_rows_avx512(uint32_t nb, const void *w, const void *x,
                                               size_t x_stride, const int nx, const int kind,
                                               float *out)
{
    const size_t w_bytes = kind == KIND_Q5 ? sizeof(quant_block_q5_K) : sizeof(quant_block_q4_K);
    const __m512i low4 = _mm512_set1_epi8(0x0f), bit4 = _mm512_set1_epi8(0x10);
    __m512i qh_bit[4];  /* bit 2c of qh for the low half, 2c + 1 for the high half */
    __m512i pick_sc[4]; /* vpshufb: scale 2c widened for the low half, 2c + 1 for the high */
    for (int c = 0; c < 4; c++) {
        qh_bit[c] = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * c))),
                                       _mm256_set1_epi8((char)(2 << (2 * c))), 1);
        pick_sc[c] = _mm512_inserti64x4(_mm512_castsi256_si512(widen_byte(2 * c)),
                                        widen_byte(2 * c + 1), 1);
    }
    k_acc acc[4];
    for (int m = 0; m < nx; m++)
        acc[m] = k_acc_zero();
    for (uint32_t b = 0; b < nb; b++) {
        const quant_block_q4_K *wb =
            (const quant_block_q4_K *)(const void *)((const uint8_t *)w + b * w_bytes);
        const quant_block_q5_K *wb5 = (const quant_block_q5_K *)(const void *)wb;
        const uint8_t *qs = kind == KIND_Q5 ? wb5->qs : wb->qs;
        quant_prefetch(wb, w_bytes);
        const __m128i sm = unpack_scales_mins(wb->scales);
        const __m512i sm4 = _mm512_broadcast_i32x4(sm);
        __m512i wq[4], sc[4];
        for (int c = 0; c < 4; c += 2) {
            const __m512i q = LOAD512(qs + 32 * c); /* chunks c and c + 1 */
            const __m512i lo = _mm512_and_si512(q, low4);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), low4);
            wq[c] = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(1, 0, 1, 0));
            wq[c + 1] = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(3, 2, 3, 2));
        }
        if (kind == KIND_Q5) {
            const __m512i qh = _mm512_broadcast_i64x4(LOAD256(wb5->qh));
            for (int c = 0; c < 4; c++)
                wq[c] = _mm512_mask_add_epi8(wq[c], _mm512_test_epi8_mask(qh, qh_bit[c]), wq[c], bit4);
        }
        for (int c = 0; c < 4; c++)
            sc[c] = _mm512_shuffle_epi8(sm4, pick_sc[c]);
        const float dw = _cvtsh_ss(wb->d), dmw = _cvtsh_ss(wb->dmin);
        const __m128i mins8 = _mm_cvtepu8_epi16(_mm_unpackhi_epi64(sm, sm));
        for (int m = 0; m < nx; m++) {
            const quant_block_q8_K *xb = quant_act_q8_K(x, x_stride, m, b);
            __m512i lanes = _mm512_setzero_si512();
            for (int c = 0; c < 4; c++)
                lanes = stretch_avx512(lanes, wq[c], LOAD512(xb->qs + 64 * c), sc[c]);
            k_acc_block(&acc[m], fold_lanes(lanes), dw, dmw, mins8, xb, kind);
        }
    }
    for (int m = 0; m < nx; m++)
        out[m] = k_acc_total(&acc[m], kind);
}

/* vpermw indices for Q6_K's 16 scales (widened to int16 beforehand:
 * vpshufb cannot sign-extend): 128-bit lane k gets scale k, plus 4c in the
 * vector of chunk c. */
static const uint16_t k_q6_lanes[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                        2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};

/* Q6_K against NX rows. A half's 64 ql bytes give, masked, elements 0-63
 * of the half and, shifted, 64-127; the 2 top bits come from the half's 32
 * qh bytes broadcast to both 256-bit halves and shifted per half. With
 * BY_SIGN the sign of q - 32 goes onto the activation by a masked
 * negation; without, q and 32 are multiplied separately, as in
 * AVX2_STRETCH_OFFSET. */
ATTND_AVX512 INLINE void q6_K_rows_avx512(uint32_t nb, const quant_block_q6_K *w, const void *x,
                                          size_t x_stride, const int nx, const bool by_sign,
                                          float *out)
{
    const __m512i low4 = _mm512_set1_epi8(0x0f), bits45 = _mm512_set1_epi8(0x30);
    const __m512i offset = _mm512_set1_epi8(32), zero = _mm512_setzero_si512();
    /* elements 0-31 take qh bits 0-1, 32-63 bits 2-3, 64-95 bits 4-5, 96-127 bits 6-7 */
    const __m512i shl_lo = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i shr_hi = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    __m512i pick_sc[4];
    for (int c = 0; c < 4; c++)
        pick_sc[c] = _mm512_add_epi16(LOAD512(k_q6_lanes), _mm512_set1_epi16((short)(4 * c)));
    k_acc acc[4];
    for (int m = 0; m < nx; m++)
        acc[m] = k_acc_zero();
    for (uint32_t b = 0; b < nb; b++) {
        const quant_block_q6_K *wb = w + b;
        quant_prefetch(wb, sizeof *wb);
        const __m512i sc16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(LOAD128(wb->scales)));
        __m512i mag[4], sc[4];
        __mmask64 neg[4];
        for (int h = 0; h < 2; h++) {
            const __m512i ql = LOAD512(wb->ql + 64 * h);
            const __m512i qh = _mm512_broadcast_i64x4(LOAD256(wb->qh + 32 * h));
            /* a | (b & c) */
            const __m512i q_lo = _mm512_ternarylogic_epi32(_mm512_and_si512(ql, low4),
                                                           _mm512_sllv_epi16(qh, shl_lo), bits45, 0xf8);
            const __m512i q_hi = _mm512_ternarylogic_epi32(
                _mm512_and_si512(_mm512_srli_epi16(ql, 4), low4), _mm512_srlv_epi16(qh, shr_hi),
                bits45, 0xf8);
            if (by_sign) {
                const __m512i level_lo = _mm512_sub_epi8(q_lo, offset);
                const __m512i level_hi = _mm512_sub_epi8(q_hi, offset);
                mag[2 * h] = _mm512_abs_epi8(level_lo);
                mag[2 * h + 1] = _mm512_abs_epi8(level_hi);
                neg[2 * h] = _mm512_movepi8_mask(level_lo);
                neg[2 * h + 1] = _mm512_movepi8_mask(level_hi);
            } else {
                mag[2 * h] = q_lo; /* the unsigned levels */
                mag[2 * h + 1] = q_hi;
                neg[2 * h] = neg[2 * h + 1] = 0;
            }
        }
        for (int c = 0; c < 4; c++)
            sc[c] = _mm512_permutexvar_epi16(pick_sc[c], sc16);
        const float dw = _cvtsh_ss(wb->d);
        for (int m = 0; m < nx; m++) {
            const quant_block_q8_K *xb = quant_act_q8_K(x, x_stride, m, b);
            __m512i lanes = _mm512_setzero_si512();
            for (int c = 0; c < 4; c++) {
                const __m512i xq = LOAD512(xb->qs + 64 * c);
                if (by_sign) {
                    lanes = stretch_avx512(lanes, mag[c],
                                           _mm512_mask_sub_epi8(xq, neg[c], zero, xq), sc[c]);
                } else {
                    const __m512i p16 = _mm512_sub_epi16(_mm512_maddubs_epi16(mag[c], xq),
                                                         _mm512_maddubs_epi16(offset, xq));
                    lanes = _mm512_dpwssd_epi32(lanes, p16, sc[c]);
                }
            }
            k_acc_block(&acc[m], fold_lanes(lanes), dw, 0.0f, _mm_setzero_si128(), xb, KIND_Q6);
        }
    }
    for (int m = 0; m < nx; m++)
        out[m] = k_acc_total(&acc[m], KIND_Q6);
}

/* For one row the 32-byte kernel, compiled here with AVX-512's 32
 * registers, is the faster (about 10% on Zen 4, whose 512-bit operations
 * take two cycles); for several the 64-byte one (about 15%). Both give
 * ggml's lanes, hence the same bits. */
#define SCALE_MIN_AVX512(kind)                                                                     \
    switch (nx) {                                                                                  \
    case 1: scale_min_rows_avx2(n / QK, w, x, x_stride, 1, kind, out); break;                      \
    case 2: scale_min_rows_avx512(n / QK, w, x, x_stride, 2, kind, out); break;                    \
    case 3: scale_min_rows_avx512(n / QK, w, x, x_stride, 3, kind, out); break;                    \
    default: scale_min_rows_avx512(n / QK, w, x, x_stride, 4, kind, out); break;                   \
    }

ATTND_AVX512 void quant_q4_K_dot_avx512(uint32_t n, const void *restrict w, const void *restrict x,
                                        size_t x_stride, uint32_t nx, float *restrict out)
{
    SCALE_MIN_AVX512(KIND_Q4)
}

ATTND_AVX512 void quant_q5_K_dot_avx512(uint32_t n, const void *restrict w, const void *restrict x,
                                        size_t x_stride, uint32_t nx, float *restrict out)
{
    SCALE_MIN_AVX512(KIND_Q5)
}

/* The offset products for one row, the moved sign for several (as in
 * quant_q6_K_dot_avx2). */
ATTND_AVX512 void quant_q6_K_dot_avx512(uint32_t n, const void *restrict w, const void *restrict x,
                                        size_t x_stride, uint32_t nx, float *restrict out)
{
#define CALL(k) q6_K_rows_avx512(n / QK, w, x, x_stride, k, (k) > 1, out)
    QUANT_PER_NX(nx, CALL)
#undef CALL
}

/* ---- Q8_K activation quantizers ---------------------------------------- */

/* The reference (quant_k.c's q8_K_from_f32) step by step: the same largest
 * |x| (max_ps returns its second operand when either is NaN, so a NaN never
 * wins, as in the scalar compare), the first element reaching it, the same
 * iscale, products and magic-number rounding, and the same truncation to a
 * byte (masking to 8 bits before the unsigned packs keeps the low byte,
 * which is what the scalar cast does even for the garbage NaN gives). */

ATTND_AVX2 INLINE __m256i q8_K_levels32_avx2(const float *x, __m256 iscale)
{
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    const __m256i mant = _mm256_set1_epi32(0x007fffff), bias = _mm256_set1_epi32(0x00400000);
    const __m256i top = _mm256_set1_epi32(127), low8 = _mm256_set1_epi32(0xff);
    __m256i q[4];
    for (int g = 0; g < 4; g++) {
        const __m256 biased = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * g), iscale), magic);
        const __m256i v = _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(biased), mant), bias);
        q[g] = _mm256_and_si256(_mm256_min_epi32(v, top), low8);
    }
    const __m256i q16 = _mm256_packus_epi16(_mm256_packus_epi32(q[0], q[1]),
                                            _mm256_packus_epi32(q[2], q[3]));
    /* packs work within 128-bit lanes: the permute restores element order */
    return _mm256_permutevar8x32_epi32(q16, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* The 16 sums of 16 levels from the 8 vectors of 32. */
ATTND_AVX2 INLINE void q8_K_bsums_avx2(const __m256i q[8], int16_t *bsums)
{
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    __m256i s[8];
    for (int t = 0; t < 8; t++) /* lane 0: group 2t in 4 parts; lane 1: group 2t + 1 */
        s[t] = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q[t]), ones16);
    /* lane 0: groups 0 2 4 6 (8 10 12 14), lane 1: 1 3 5 7 (9 11 13 15) */
    const __m256i g0 = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
    const __m256i g1 = _mm256_hadd_epi32(_mm256_hadd_epi32(s[4], s[5]), _mm256_hadd_epi32(s[6], s[7]));
    const __m256i p = _mm256_packs_epi32(g0, g1);
    const __m128i even = _mm256_castsi256_si128(p), odd = _mm256_extracti128_si256(p, 1);
    _mm_storeu_si128((__m128i *)(void *)bsums, _mm_unpacklo_epi16(even, odd));
    _mm_storeu_si128((__m128i *)(void *)(bsums + 8), _mm_unpackhi_epi16(even, odd));
}

ATTND_AVX2 void quant_q8_K_quantize_avx2(const float *restrict src, void *restrict dst, size_t n)
{
    quant_block_q8_K *y = dst;
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (size_t b = 0; b < n / QK; b++, src += QK) {
        __m256 vmax = _mm256_setzero_ps();
        for (int i = 0; i < QK; i += 8)
            vmax = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(src + i), absmask), vmax);
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        const __m256 vamax = _mm256_set1_ps(amax);
        int first = 0;
        for (int i = 0; i < QK; i += 8) {
            const __m256 eq = _mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(src + i), absmask), vamax,
                                            _CMP_EQ_OQ);
            const int bits = _mm256_movemask_ps(eq);
            if (bits) {
                first = i + __builtin_ctz((unsigned)bits);
                break;
            }
        }
        const float iscale = -127.0f / src[first];
        const __m256 viscale = _mm256_set1_ps(iscale);
        __m256i q[8];
        for (int t = 0; t < 8; t++) {
            q[t] = q8_K_levels32_avx2(src + 32 * t, viscale);
            _mm256_storeu_si256((__m256i *)(void *)(y[b].qs + 32 * t), q[t]);
        }
        q8_K_bsums_avx2(q, y[b].bsums);
        y[b].d = 1.0f / iscale;
    }
}

/* 16 levels, truncated to bytes by vpmovdb. */
ATTND_AVX512 INLINE __m128i q8_K_levels16_avx512(const float *x, __m512 iscale)
{
    const __m512 biased = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(x), iscale),
                                        _mm512_set1_ps(12582912.0f));
    const __m512i v = _mm512_sub_epi32(
        _mm512_and_si512(_mm512_castps_si512(biased), _mm512_set1_epi32(0x007fffff)),
        _mm512_set1_epi32(0x00400000));
    return _mm512_cvtepi32_epi8(_mm512_min_epi32(v, _mm512_set1_epi32(127)));
}

ATTND_AVX512 void quant_q8_K_quantize_avx512(const float *restrict src, void *restrict dst, size_t n)
{
    quant_block_q8_K *y = dst;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (size_t b = 0; b < n / QK; b++, src += QK) {
        __m512 vmax = _mm512_setzero_ps();
        for (int i = 0; i < QK; i += 16)
            vmax = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(src + i)), vmax);
        const float amax = _mm512_reduce_max_ps(vmax);
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        const __m512 vamax = _mm512_set1_ps(amax);
        int first = 0;
        for (int i = 0; i < QK; i += 16) {
            const __mmask16 eq =
                _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(src + i)), vamax, _CMP_EQ_OQ);
            if (eq) {
                first = i + __builtin_ctz((unsigned)eq);
                break;
            }
        }
        const float iscale = -127.0f / src[first];
        const __m512 viscale = _mm512_set1_ps(iscale);
        __m128i sums8[4];
        for (int t = 0; t < 4; t++) {
            const float *xt = src + 64 * t;
            __m512i q = _mm512_castsi128_si512(q8_K_levels16_avx512(xt, viscale));
            q = _mm512_inserti32x4(q, q8_K_levels16_avx512(xt + 16, viscale), 1);
            q = _mm512_inserti32x4(q, q8_K_levels16_avx512(xt + 32, viscale), 2);
            q = _mm512_inserti32x4(q, q8_K_levels16_avx512(xt + 48, viscale), 3);
            _mm512_storeu_si512((void *)(y[b].qs + 64 * t), q);
            /* sums of 8 bytes as unsigned (level + 128): 2 per 16-element group */
            sums8[t] = _mm512_cvtepi64_epi16(_mm512_sad_epu8(_mm512_xor_si512(q, flip),
                                                             _mm512_setzero_si512()));
        }
        const __m128i bias = _mm_set1_epi16(16 * 128);
        _mm_storeu_si128((__m128i *)(void *)y[b].bsums,
                         _mm_sub_epi16(_mm_hadd_epi16(sums8[0], sums8[1]), bias));
        _mm_storeu_si128((__m128i *)(void *)(y[b].bsums + 8),
                         _mm_sub_epi16(_mm_hadd_epi16(sums8[2], sums8[3]), bias));
        y[b].d = 1.0f / iscale;
    }
}

#endif
