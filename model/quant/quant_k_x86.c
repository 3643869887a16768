/* quant_k_x86.c - the x86 kernels of quant_k.c: Q4_K, Q5_K and Q6_K dots
 * against Q8_K activations on AVX2 and on AVX-512 VNNI, and the Q8_K
 * activation quantizer for both.
 *
 * The dots compute the scalar reference's exact integer sums per
 * super-block, so they differ from it only in how the float products
 * d_w * d_x * sum are added up. Each weight block is unpacked once (levels
 * to bytes, 6-bit scales to int16 vectors) and used for all NX activation
 * rows; every row goes through the same operations whatever NX is, so its
 * result does not depend on what it is batched with.
 *
 * The min term of Q4_K/Q5_K (sum_j m_j * sum(x_j)) and the -32 offset of
 * Q6_K (sum_j sc_j * 32 * sum(x_j)) come from the activation's 16-element
 * sums (bsums), so the levels are multiplied as the unsigned bytes they are
 * stored as: maddubs (AVX2) and vpdpbusd (VNNI) take unsigned times signed.
 *
 * On AVX-512, vpdpbusd sums 4 products per 32-bit lane; a lane's 4 elements
 * share a sub-block and the sum fits in 16 bits (<= 4 * 63 * 128), so two
 * such vectors pack losslessly into one of int16 and a single vpdpwssd
 * multiplies them by their sub-block scales: 1.5 multiplies per 64 elements
 * where maddubs + vpdpwssd would take 2. */
#include "quant_internal.h"

#include <string.h>

#include "quant_k_x86.h"

#ifdef ATTND_HAVE_X86

#define QK QUANT_QK_K
#define INLINE static inline __attribute__((always_inline))

/* The Q8_K block M rows down (X_STRIDE bytes apart) and B blocks in. */
static inline const quant_block_q8_K *act_block(const void *x, size_t x_stride, int m, uint32_t b)
{
    return (const quant_block_q8_K *)(const void *)((const uint8_t *)x + (size_t)m * x_stride) + b;
}

#define LOAD128(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#define LOAD256(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define LOAD512(p) _mm512_loadu_si512((const void *)(p))

/* With several activation rows a block takes long enough that the hardware
 * prefetcher falls behind (it stops at each 4 KiB page): fetching the
 * weights 1 KiB ahead made 4 rows ~30% faster on a weight matrix far larger
 * than the caches. With one row it made things slower, so only NX > 1 asks.
 * Past the row's end it fetches the next row, which a matmul reads next;
 * a prefetch never faults. */
#define PREFETCH_AHEAD 1024

static inline __attribute__((always_inline)) void prefetch_block(const void *block, size_t bytes)
{
    for (size_t off = 0; off < bytes; off += 64)
        _mm_prefetch((const char *)block + PREFETCH_AHEAD + off, _MM_HINT_T0);
}

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
 * byte J of each 128-bit lane into every int16, and the mins (bytes 8-15)
 * each twice, in the order of the 16 bsums (two per 32-element sub-block). */
ATTND_AVX2 INLINE __m256i widen_byte(int j)
{
    return _mm256_set1_epi16((short)(0x8000 | j));
}

ATTND_AVX2 INLINE __m256i widen_mins_paired(void)
{
    return _mm256_setr_epi16((short)0x8008, (short)0x8008, (short)0x8009, (short)0x8009,
                             (short)0x800a, (short)0x800a, (short)0x800b, (short)0x800b,
                             (short)0x800c, (short)0x800c, (short)0x800d, (short)0x800d,
                             (short)0x800e, (short)0x800e, (short)0x800f, (short)0x800f);
}

/* ---- AVX2 --------------------------------------------------------------- */

/* Rows of one 32-element sub-block: isum[m] += sc * (w . x_m), W the levels
 * as bytes, SC the scale in every int16 lane. */
#define AVX2_SUBBLOCK(wq, sc, xoff)                                                                \
    for (int m = 0; m < nx; m++) {                                                                 \
        const __m256i p16 = _mm256_maddubs_epi16(wq, LOAD256(xb[m]->qs + (xoff)));                 \
        isum[m] = _mm256_add_epi32(isum[m], _mm256_madd_epi16(p16, sc));                           \
    }

/* The shared tail of Q4_K and Q5_K: per row, the min term from bsums and
 * both float scales. */
#define AVX2_SCALE_MIN_ACCUMULATE()                                                                \
    do {                                                                                           \
        const __m256i mins16 = _mm256_shuffle_epi8(sm2, widen_mins_paired());                      \
        const float dw = _cvtsh_ss(wb->d), dmw = _cvtsh_ss(wb->dmin);                              \
        for (int m = 0; m < nx; m++) {                                                             \
            const __m256i msum = _mm256_madd_epi16(LOAD256(xb[m]->bsums), mins16);                 \
            acc[m] = _mm256_fmadd_ps(_mm256_set1_ps(dw * xb[m]->d), _mm256_cvtepi32_ps(isum[m]),    \
                                     acc[m]);                                                      \
            acc[m] = _mm256_fnmadd_ps(_mm256_set1_ps(dmw * xb[m]->d), _mm256_cvtepi32_ps(msum),     \
                                      acc[m]);                                                     \
        }                                                                                          \
    } while (0)

/* Q4_K and Q5_K (HAS_QH) against NX rows. Chunk c of 64 elements is the low
 * nibbles (sub-block 2c) and high nibbles (2c + 1) of 32 bytes of qs; Q5_K's
 * fifth bits are bits 2c and 2c + 1 of qh's 32 bytes. */
ATTND_AVX2 INLINE void scale_min_rows_avx2(uint32_t nb, const void *w, size_t w_bytes,
                                           const void *x, size_t x_stride, const int nx,
                                           const bool has_qh, float *out)
{
    const __m256i low4 = _mm256_set1_epi8(0x0f), bit4 = _mm256_set1_epi8(0x10);
    __m256 acc[4];
    for (int m = 0; m < nx; m++)
        acc[m] = _mm256_setzero_ps();
    for (uint32_t b = 0; b < nb; b++) {
        /* Q4_K and Q5_K agree on d, dmin, scales; qs follows qh in Q5_K */
        const quant_block_q4_K *wb =
            (const quant_block_q4_K *)(const void *)((const uint8_t *)w + b * w_bytes);
        const uint8_t *qs = has_qh ? ((const quant_block_q5_K *)(const void *)wb)->qs : wb->qs;
        if (nx > 1)
            prefetch_block(wb, w_bytes);
        __m256i hbits = has_qh ? LOAD256(((const quant_block_q5_K *)(const void *)wb)->qh)
                               : _mm256_setzero_si256();
        const quant_block_q8_K *xb[4];
        __m256i isum[4];
        for (int m = 0; m < nx; m++) {
            xb[m] = act_block(x, x_stride, m, b);
            isum[m] = _mm256_setzero_si256();
        }
        const __m256i sm2 = _mm256_broadcastsi128_si256(unpack_scales_mins(wb->scales));
        for (int c = 0; c < QK / 64; c++) {
            const __m256i q = LOAD256(qs + 32 * c);
            __m256i lo = _mm256_and_si256(q, low4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
            if (has_qh) {
                /* bits 0 and 1 of each byte (after shifting c times) to bit 4 */
                lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(hbits, 4), bit4));
                hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(hbits, 3), bit4));
                hbits = _mm256_srli_epi16(hbits, 2);
            }
            const __m256i sc_lo = _mm256_shuffle_epi8(sm2, widen_byte(2 * c));
            const __m256i sc_hi = _mm256_shuffle_epi8(sm2, widen_byte(2 * c + 1));
            AVX2_SUBBLOCK(lo, sc_lo, 64 * c)
            AVX2_SUBBLOCK(hi, sc_hi, 64 * c + 32)
        }
        AVX2_SCALE_MIN_ACCUMULATE();
    }
    for (int m = 0; m < nx; m++)
        out[m] = attnd_hsum256(acc[m]);
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

/* Q6_K against NX rows: the 6-bit levels unsigned (0..63); the -32 comes
 * back as -32 * sum_j sc_j * bsum_j. Each half of 128 elements takes 64
 * bytes of ql (nibbles) and 32 of qh (2 bits per element). */
ATTND_AVX2 INLINE void q6_K_rows_avx2(uint32_t nb, const quant_block_q6_K *w, const void *x,
                                      size_t x_stride, const int nx, float *out)
{
    const __m256i low4 = _mm256_set1_epi8(0x0f), bits45 = _mm256_set1_epi8(0x30);
    __m256 acc[4];
    for (int m = 0; m < nx; m++)
        acc[m] = _mm256_setzero_ps();
    for (uint32_t b = 0; b < nb; b++) {
        const quant_block_q6_K *wb = w + b;
        if (nx > 1)
            prefetch_block(wb, sizeof *wb);
        const quant_block_q8_K *xb[4];
        const __m128i sc8 = LOAD128(wb->scales);
        const __m256i offset16 =
            _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(_mm256_cvtepi8_epi16(sc8), 5));
        __m256i isum[4];
        for (int m = 0; m < nx; m++) {
            xb[m] = act_block(x, x_stride, m, b);
            isum[m] = _mm256_madd_epi16(LOAD256(xb[m]->bsums), offset16);
        }
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
                AVX2_SUBBLOCK(q, sc, 32 * t)
            }
        }
        const float dw = _cvtsh_ss(wb->d);
        for (int m = 0; m < nx; m++)
            acc[m] = _mm256_fmadd_ps(_mm256_set1_ps(dw * xb[m]->d), _mm256_cvtepi32_ps(isum[m]),
                                     acc[m]);
    }
    for (int m = 0; m < nx; m++)
        out[m] = attnd_hsum256(acc[m]);
}

/* nx as a constant in each call, so the row loops unroll and the per-row
 * state stays in registers. */
#define DISPATCH_NX(call)                                                                          \
    switch (nx) {                                                                                  \
    case 1: call(1); break;                                                                        \
    case 2: call(2); break;                                                                        \
    case 3: call(3); break;                                                                        \
    default: call(4); break;                                                                       \
    }

ATTND_AVX2 void quant_q4_K_dot_avx2(uint32_t n, const void *restrict w, const void *restrict x,
                                    size_t x_stride, uint32_t nx, float *restrict out)
{
#define CALL(k) scale_min_rows_avx2(n / QK, w, sizeof(quant_block_q4_K), x, x_stride, k, false, out)
    DISPATCH_NX(CALL)
#undef CALL
}

ATTND_AVX2 void quant_q5_K_dot_avx2(uint32_t n, const void *restrict w, const void *restrict x,
                                    size_t x_stride, uint32_t nx, float *restrict out)
{
#define CALL(k) scale_min_rows_avx2(n / QK, w, sizeof(quant_block_q5_K), x, x_stride, k, true, out)
    DISPATCH_NX(CALL)
#undef CALL
}

ATTND_AVX2 void quant_q6_K_dot_avx2(uint32_t n, const void *restrict w, const void *restrict x,
                                    size_t x_stride, uint32_t nx, float *restrict out)
{
#define CALL(k) q6_K_rows_avx2(n / QK, w, x, x_stride, k, out)
    DISPATCH_NX(CALL)
#undef CALL
}

/* ---- AVX-512 VNNI ------------------------------------------------------- */

/* vpshufb controls laying the 8 Q4_K/Q5_K scales (bytes 0-7 of each
 * 128-bit lane) out as int16 to match packs(V_a, V_b), V_c being
 * vpdpbusd's sums over chunk c (128-bit lanes 0-1: sub-block 2c, 2-3:
 * 2c + 1): in each 128-bit lane, int16 0-3 come from V_a, 4-7 from V_b. */
#define W(j) (0x8000 | (j)) /* byte j widened */
static const uint16_t k_scale_min_lanes[2][32] = {
    {W(0), W(0), W(0), W(0), W(2), W(2), W(2), W(2), W(0), W(0), W(0), W(0), W(2), W(2), W(2), W(2),
     W(1), W(1), W(1), W(1), W(3), W(3), W(3), W(3), W(1), W(1), W(1), W(1), W(3), W(3), W(3), W(3)},
    {W(4), W(4), W(4), W(4), W(6), W(6), W(6), W(6), W(4), W(4), W(4), W(4), W(6), W(6), W(6), W(6),
     W(5), W(5), W(5), W(5), W(7), W(7), W(7), W(7), W(5), W(5), W(5), W(5), W(7), W(7), W(7), W(7)},
};
#undef W
/* vpermw indices doing the same for Q6_K's 16 int8 scales, widened
 * beforehand (vpshufb cannot sign-extend): 128-bit lane k of V_c is
 * sub-block 4c + k. */
static const uint16_t k_q6_lanes[2][32] = {
    {0, 0, 0, 0, 4, 4, 4, 4, 1, 1, 1, 1, 5, 5, 5, 5, 2, 2, 2, 2, 6, 6, 6, 6, 3, 3, 3, 3, 7, 7, 7, 7},
    {8, 8, 8, 8, 12, 12, 12, 12, 9, 9, 9, 9, 13, 13, 13, 13,
     10, 10, 10, 10, 14, 14, 14, 14, 11, 11, 11, 11, 15, 15, 15, 15},
};

/* One row's exact integer block sum over four 64-element vectors of levels
 * WQ (unsigned bytes, in element order) and the scales S01, S23 laid out
 * by the tables above. */
ATTND_AVX512 INLINE __m512i block_sum_avx512(const __m512i wq[4], const int8_t *xq, __m512i s01,
                                             __m512i s23, __m512i init)
{
    const __m512i zero = _mm512_setzero_si512();
    const __m512i v0 = _mm512_dpbusd_epi32(zero, wq[0], LOAD512(xq));
    const __m512i v1 = _mm512_dpbusd_epi32(zero, wq[1], LOAD512(xq + 64));
    const __m512i v2 = _mm512_dpbusd_epi32(zero, wq[2], LOAD512(xq + 128));
    const __m512i v3 = _mm512_dpbusd_epi32(zero, wq[3], LOAD512(xq + 192));
    const __m512i sum = _mm512_dpwssd_epi32(init, _mm512_packs_epi32(v0, v1), s01);
    return _mm512_dpwssd_epi32(sum, _mm512_packs_epi32(v2, v3), s23);
}

ATTND_AVX512 INLINE float hsum512_minus256(__m512 a, __m256 b)
{
    const __m256 s = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    return attnd_hsum256(_mm256_sub_ps(s, b));
}

/* Q4_K and Q5_K (HAS_QH) against NX rows. The 64 levels of chunk c (in
 * element order, as the activation's 64 bytes) are the low then the high
 * nibbles of its 32 qs bytes. */
ATTND_AVX512 INLINE void scale_min_rows_avx512(uint32_t nb, const void *w, size_t w_bytes,
                                               const void *x, size_t x_stride, const int nx,
                                               const bool has_qh, float *out)
{
    const __m512i low4 = _mm512_set1_epi8(0x0f), bit4 = _mm512_set1_epi8(0x10);
    const __m512i lanes01 = LOAD512(k_scale_min_lanes[0]), lanes23 = LOAD512(k_scale_min_lanes[1]);
    __m512i qh_bit[4]; /* bit 2c of qh for the low half, 2c + 1 for the high half */
    for (int c = 0; c < 4; c++)
        qh_bit[c] = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * c))),
                                       _mm256_set1_epi8((char)(2 << (2 * c))), 1);
    __m512 acc[4];
    __m256 acc_min[4];
    for (int m = 0; m < nx; m++) {
        acc[m] = _mm512_setzero_ps();
        acc_min[m] = _mm256_setzero_ps();
    }
    for (uint32_t b = 0; b < nb; b++) {
        const quant_block_q4_K *wb =
            (const quant_block_q4_K *)(const void *)((const uint8_t *)w + b * w_bytes);
        const uint8_t *qs = has_qh ? ((const quant_block_q5_K *)(const void *)wb)->qs : wb->qs;
        if (nx > 1)
            prefetch_block(wb, w_bytes);
        const __m512i sm4 = _mm512_broadcast_i32x4(unpack_scales_mins(wb->scales));
        const __m512i s01 = _mm512_shuffle_epi8(sm4, lanes01), s23 = _mm512_shuffle_epi8(sm4, lanes23);
        const __m256i mins16 = _mm256_shuffle_epi8(_mm512_castsi512_si256(sm4), widen_mins_paired());
        __m512i wq[4];
        for (int c = 0; c < 4; c += 2) {
            const __m512i q = LOAD512(qs + 32 * c); /* chunks c and c + 1 */
            const __m512i lo = _mm512_and_si512(q, low4);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), low4);
            wq[c] = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(1, 0, 1, 0));
            wq[c + 1] = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(3, 2, 3, 2));
        }
        if (has_qh) {
            const __m512i qh =
                _mm512_broadcast_i64x4(LOAD256(((const quant_block_q5_K *)(const void *)wb)->qh));
            for (int c = 0; c < 4; c++)
                wq[c] = _mm512_mask_add_epi8(wq[c], _mm512_test_epi8_mask(qh, qh_bit[c]), wq[c], bit4);
        }
        const float dw = _cvtsh_ss(wb->d), dmw = _cvtsh_ss(wb->dmin);
        for (int m = 0; m < nx; m++) {
            const quant_block_q8_K *xb = act_block(x, x_stride, m, b);
            const __m512i isum = block_sum_avx512(wq, xb->qs, s01, s23, _mm512_setzero_si512());
            const __m256i msum = _mm256_madd_epi16(LOAD256(xb->bsums), mins16);
            acc[m] = _mm512_fmadd_ps(_mm512_set1_ps(dw * xb->d), _mm512_cvtepi32_ps(isum), acc[m]);
            acc_min[m] = _mm256_fmadd_ps(_mm256_set1_ps(dmw * xb->d), _mm256_cvtepi32_ps(msum),
                                         acc_min[m]);
        }
    }
    for (int m = 0; m < nx; m++)
        out[m] = hsum512_minus256(acc[m], acc_min[m]);
}

/* Q6_K against NX rows. A half's 64 ql bytes give, masked, elements 0-63
 * of the half and, shifted, 64-127; the 2 top bits come from the half's 32
 * qh bytes broadcast to both 256-bit halves and shifted per half. */
ATTND_AVX512 INLINE void q6_K_rows_avx512(uint32_t nb, const quant_block_q6_K *w, const void *x,
                                          size_t x_stride, const int nx, float *out)
{
    const __m512i low4 = _mm512_set1_epi8(0x0f), bits45 = _mm512_set1_epi8(0x30);
    const __m512i lanes01 = LOAD512(k_q6_lanes[0]), lanes23 = LOAD512(k_q6_lanes[1]);
    /* elements 0-31 take qh bits 0-1, 32-63 bits 2-3, 64-95 bits 4-5, 96-127 bits 6-7 */
    const __m512i shl_lo = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i shr_hi = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    __m512 acc[4];
    for (int m = 0; m < nx; m++)
        acc[m] = _mm512_setzero_ps();
    for (uint32_t b = 0; b < nb; b++) {
        const quant_block_q6_K *wb = w + b;
        if (nx > 1)
            prefetch_block(wb, sizeof *wb);
        const __m256i sc16 = _mm256_cvtepi8_epi16(LOAD128(wb->scales));
        const __m512i s01 = _mm512_permutexvar_epi16(lanes01, _mm512_castsi256_si512(sc16));
        const __m512i s23 = _mm512_permutexvar_epi16(lanes23, _mm512_castsi256_si512(sc16));
        const __m512i offset16 = _mm512_zextsi256_si512(
            _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc16, 5)));
        __m512i wq[4];
        for (int h = 0; h < 2; h++) {
            const __m512i ql = LOAD512(wb->ql + 64 * h);
            const __m512i qh = _mm512_broadcast_i64x4(LOAD256(wb->qh + 32 * h));
            /* a | (b & c) */
            wq[2 * h] = _mm512_ternarylogic_epi32(_mm512_and_si512(ql, low4),
                                                  _mm512_sllv_epi16(qh, shl_lo), bits45, 0xf8);
            wq[2 * h + 1] = _mm512_ternarylogic_epi32(
                _mm512_and_si512(_mm512_srli_epi16(ql, 4), low4), _mm512_srlv_epi16(qh, shr_hi),
                bits45, 0xf8);
        }
        const float dw = _cvtsh_ss(wb->d);
        for (int m = 0; m < nx; m++) {
            const quant_block_q8_K *xb = act_block(x, x_stride, m, b);
            const __m512i off = _mm512_dpwssd_epi32(_mm512_setzero_si512(),
                                                    _mm512_zextsi256_si512(LOAD256(xb->bsums)),
                                                    offset16);
            const __m512i isum = block_sum_avx512(wq, xb->qs, s01, s23, off);
            acc[m] = _mm512_fmadd_ps(_mm512_set1_ps(dw * xb->d), _mm512_cvtepi32_ps(isum), acc[m]);
        }
    }
    for (int m = 0; m < nx; m++)
        out[m] = hsum512_minus256(acc[m], _mm256_setzero_ps());
}

ATTND_AVX512 void quant_q4_K_dot_avx512(uint32_t n, const void *restrict w, const void *restrict x,
                                        size_t x_stride, uint32_t nx, float *restrict out)
{
#define CALL(k) scale_min_rows_avx512(n / QK, w, sizeof(quant_block_q4_K), x, x_stride, k, false, out)
    DISPATCH_NX(CALL)
#undef CALL
}

ATTND_AVX512 void quant_q5_K_dot_avx512(uint32_t n, const void *restrict w, const void *restrict x,
                                        size_t x_stride, uint32_t nx, float *restrict out)
{
#define CALL(k) scale_min_rows_avx512(n / QK, w, sizeof(quant_block_q5_K), x, x_stride, k, true, out)
    DISPATCH_NX(CALL)
#undef CALL
}

ATTND_AVX512 void quant_q6_K_dot_avx512(uint32_t n, const void *restrict w, const void *restrict x,
                                        size_t x_stride, uint32_t nx, float *restrict out)
{
#define CALL(k) q6_K_rows_avx512(n / QK, w, x, x_stride, k, out)
    DISPATCH_NX(CALL)
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
