/* quant_legacy_x86.c - the x86 SIMD kernels of the legacy types
 * (quant_legacy.c): dot products of Q4_0 / Q5_0 / Q8_0 weights with Q8_0
 * activations and of Q4_1 / Q5_1 weights with Q8_1 activations, and the
 * activation quantizers.
 *
 * Every dot takes the same exact integer sums per block as the scalar
 * reference and differs from it only in the order the float products are
 * added. A row's blocks go round a fixed set of accumulators whatever NX
 * is, so its result does not depend on what it is batched with; where the
 * kernel for one row computes its integer sums differently from the one
 * for several, the sums in every lane are still the same exact numbers.
 *
 * What bounds these loops (measured on Zen 4) is the number of
 * instructions and loads per block, not latency. So: the half scales of
 * CHUNK blocks are packed in general registers and converted by one F16C
 * instruction; a block's scale product is broadcast by an in-lane permute;
 * Q4_0 goes two blocks at a time; weights are prefetched. 256-bit vectors:
 * 512-bit ones were slower on the same machine (each costs two 256-bit
 * issue slots, and the 16-byte pieces do not fill them for free). */
#include "quant_legacy_x86.h"

#ifdef ATTND_HAVE_X86
#include <stdbool.h>
#include <string.h>

#include "attnd_half.h"
#include "quant_internal.h"

#define QK QUANT_QK
#define CHUNK 8
#define INLINE static inline __attribute__((always_inline))
#define AVX2 ATTND_AVX2
#define AVX512 ATTND_AVX512

#define Q4_0_BYTES sizeof(quant_block_q4_0)
#define Q5_0_BYTES sizeof(quant_block_q5_0)
#define Q8_0_BYTES sizeof(quant_block_q8_0)
#define Q4_1_BYTES sizeof(quant_block_q4_1)
#define Q5_1_BYTES sizeof(quant_block_q5_1)
#define Q8_1_BYTES sizeof(quant_block_q8_1)

static inline uint16_t half_at(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return h;
}

/* The halves at P, P + STRIDE, P + 2 STRIDE, P + 3 STRIDE, packed low
 * first. The empty asm keeps the packing in general registers, where it
 * costs nothing the dot needs: left alone, the compiler builds it with
 * vector shuffles. */
static inline uint64_t four_halves(const uint8_t *p, size_t stride)
{
    uint64_t v = half_at(p);
    for (size_t i = 1; i < 4; i++) {
        v |= (uint64_t)half_at(p + i * stride) << (16 * i);
        __asm__("" : "+r"(v));
    }
    return v;
}

/* The half scales of CHUNK blocks STRIDE bytes apart, as floats. */
AVX2 INLINE __m256 halves8(const uint8_t *p, size_t stride)
{
    const __m128i lo = _mm_cvtsi64_si128((long long)four_halves(p, stride));
    return _mm256_cvtph_ps(_mm_insert_epi64(lo, (long long)four_halves(p + 4 * stride, stride), 1));
}

AVX2 INLINE __m256i load256(const uint8_t *p)
{
    return _mm256_loadu_si256((const __m256i *)(const void *)p);
}

/* The 32 nibbles at QS as bytes, low nibbles first (ggml's element order):
 * one broadcast load, the upper copy shifted by 4. */
AVX2 INLINE __m256i nibbles32(const uint8_t *qs)
{
    const __m128i q = _mm_loadu_si128((const __m128i *)(const void *)qs);
    const __m256i both = _mm256_broadcastsi128_si256(q);
    return _mm256_and_si256(_mm256_srlv_epi64(both, _mm256_setr_epi64x(0, 0, 4, 4)),
                            _mm256_set1_epi8(0x0f));
}

/* Bit i of the 32 bits at P as byte i: 0xff where set, 0 where clear. */
AVX2 INLINE __m256i bits32(const uint8_t *p)
{
    uint32_t b;
    memcpy(&b, p, sizeof b);
    const __m256i byte_of_bit = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                                  0x0101010101010101, 0);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)b), byte_of_bit);
    return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
}

/* ---- block views: a block's 32 values as bytes. Signed types give
 * w = x / d as int8 and, for VNNI, the unsigned u = w + offset; types with
 * a minimum give u = (x - m) / d. */

AVX2 INLINE __m256i q4_0_unsigned(const uint8_t *b)
{
    return nibbles32(b + offsetof(quant_block_q4_0, qs));
}

AVX2 INLINE __m256i q4_0_signed(const uint8_t *b)
{
    return _mm256_sub_epi8(q4_0_unsigned(b), _mm256_set1_epi8(8));
}

/* q - 16 is the nibble where the fifth bit is set, else the nibble minus
 * 16: the nibble with 0xf0 on top. */
AVX2 INLINE __m256i q5_0_signed(const uint8_t *b)
{
    const __m256i neg = _mm256_andnot_si256(bits32(b + offsetof(quant_block_q5_0, qh)),
                                            _mm256_set1_epi8((char)0xf0));
    return _mm256_or_si256(nibbles32(b + offsetof(quant_block_q5_0, qs)), neg);
}

AVX2 INLINE __m256i q8_0_signed(const uint8_t *b)
{
    return load256(b + offsetof(quant_block_q8_0, qs));
}

AVX2 INLINE __m256i q4_1_unsigned(const uint8_t *b)
{
    return nibbles32(b + offsetof(quant_block_q4_1, qs));
}

AVX2 INLINE __m256i q5_1_unsigned(const uint8_t *b)
{
    const __m256i hi = _mm256_and_si256(bits32(b + offsetof(quant_block_q5_1, qh)),
                                        _mm256_set1_epi8(0x10));
    return _mm256_or_si256(nibbles32(b + offsetof(quant_block_q5_1, qs)), hi);
}

/* AVX-512 BW applies the fifth bits as a byte mask. */
AVX512 INLINE __m256i add_fifth_bits(__m256i nibbles, const uint8_t *qh)
{
    uint32_t h;
    memcpy(&h, qh, sizeof h);
    return _mm256_mask_add_epi8(nibbles, _cvtu32_mask32(h), nibbles, _mm256_set1_epi8(16));
}

AVX512 INLINE __m256i q5_0_unsigned_512(const uint8_t *b)
{
    return add_fifth_bits(nibbles32(b + offsetof(quant_block_q5_0, qs)),
                          b + offsetof(quant_block_q5_0, qh));
}

AVX512 INLINE __m256i q5_0_signed_512(const uint8_t *b)
{
    return _mm256_sub_epi8(q5_0_unsigned_512(b), _mm256_set1_epi8(16));
}

AVX512 INLINE __m256i q5_1_unsigned_512(const uint8_t *b)
{
    return add_fifth_bits(nibbles32(b + offsetof(quant_block_q5_1, qs)),
                          b + offsetof(quant_block_q5_1, qh));
}

typedef __m256i (*block_view_fn)(const uint8_t *block);

/* ---- scales ---- */

/* One row's scale products d_w * d_x for CHUNK blocks, each half repeated
 * across both lanes (LO: blocks 0-3, HI: blocks 4-7), so that broadcasting
 * block j's is one in-lane permute by an immediate. */
typedef struct chunk_scale {
    __m256 lo, hi;
} chunk_scale;

AVX2 INLINE chunk_scale split_scales(__m256 s)
{
    return (chunk_scale){_mm256_permute2f128_ps(s, s, 0x00), _mm256_permute2f128_ps(s, s, 0x11)};
}

/* Element J (0..3) of each lane of V, broadcast within the lane. */
AVX2 INLINE __m256 lane_broadcast(__m256 v, uint32_t j)
{
    switch (j & 3) {
    case 0: return _mm256_permute_ps(v, 0x00);
    case 1: return _mm256_permute_ps(v, 0x55);
    case 2: return _mm256_permute_ps(v, 0xaa);
    default: return _mm256_permute_ps(v, 0xff);
    }
}

AVX2 INLINE __m256 scale_of(chunk_scale s, uint32_t j)
{
    return lane_broadcast(j < 4 ? s.lo : s.hi, j);
}

/* The products for CHUNK blocks of the NX rows (XS bytes apart) into SC;
 * with a minimum, also m_w * s_x (Q8_1's s = d * sum(q)) added to MINS. */
AVX2 INLINE void chunk_scales(const uint8_t *wk, size_t wbytes, const uint8_t *xk, size_t xs,
                              size_t xbytes, uint32_t nx, bool has_min, chunk_scale *sc,
                              __m256 *mins)
{
    const __m256 dw = halves8(wk, wbytes);
    const __m256 mw = has_min ? halves8(wk + 2, wbytes) : dw;
    for (uint32_t m = 0; m < nx; m++) {
        const uint8_t *xm = xk + (size_t)m * xs;
        sc[m] = split_scales(_mm256_mul_ps(dw, halves8(xm, xbytes)));
        if (has_min)
            mins[m] = _mm256_fmadd_ps(mw, halves8(xm + 2, xbytes), mins[m]);
    }
}

/* The same for one block, as block 0 of a chunk; m_w * s_x goes to
 * TAIL_MIN[m]. */
AVX2 INLINE void block_scales(const uint8_t *wb, const uint8_t *xb, size_t xs, uint32_t nx,
                              bool has_min, chunk_scale *sc, float *tail_min)
{
    const float dw = _cvtsh_ss(half_at(wb));
    for (uint32_t m = 0; m < nx; m++) {
        const uint8_t *xm = xb + (size_t)m * xs;
        const __m256 s = _mm256_set1_ps(dw * _cvtsh_ss(half_at(xm)));
        sc[m] = (chunk_scale){s, s};
        if (has_min)
            tail_min[m] += _cvtsh_ss(half_at(wb + 2)) * _cvtsh_ss(half_at(xm + 2));
    }
}

/* ---- the loop of the dots that take one block at a time ---- */

/* Block k goes into accumulator k % NACC of each row, so consecutive FMAs
 * are independent; CHUNK blocks share one scale conversion, the blocks
 * after the last whole chunk convert their own. BLOCK(wb, xb, sc, j, acc)
 * adds weight block WB times the rows' blocks at XB, scaled by block J of
 * SC, into ACC[m]. HAS_MIN: the weights have a minimum, whose term is
 * summed apart. */
#define DOT_LOOP(BLOCK, WBYTES, XBYTES, HAS_MIN, NACC)                                             \
    const uint32_t nb = n / QK, nb_chunks = nb - nb % CHUNK;                                       \
    __m256 acc[NACC][4], mins[4];                                                                  \
    float tail_min[4] = {0.0f, 0.0f, 0.0f, 0.0f};                                                  \
    chunk_scale sc[4];                                                                             \
    for (uint32_t m = 0; m < nx; m++) {                                                            \
        mins[m] = _mm256_setzero_ps();                                                             \
        for (int a = 0; a < (NACC); a++)                                                           \
            acc[a][m] = _mm256_setzero_ps();                                                       \
    }                                                                                              \
    for (uint32_t k = 0; k < nb_chunks; k += CHUNK) {                                              \
        const uint8_t *wk = w + (size_t)k * (WBYTES), *xk = x + (size_t)k * (XBYTES);              \
        quant_prefetch(wk, CHUNK * (WBYTES));                                                      \
        chunk_scales(wk, WBYTES, xk, x_stride, XBYTES, nx, HAS_MIN, sc, mins);                     \
        _Pragma("GCC unroll 8") for (uint32_t j = 0; j < CHUNK; j++)                               \
            BLOCK(wk + j * (WBYTES), xk + j * (XBYTES), sc, j, acc[j % (NACC)]);                   \
    }                                                                                              \
    _Pragma("GCC unroll 8") for (uint32_t j = 0; j < CHUNK; j++) {                                 \
        if (nb_chunks + j < nb) {                                                                  \
            const uint8_t *wb = w + (size_t)(nb_chunks + j) * (WBYTES);                            \
            const uint8_t *xb = x + (size_t)(nb_chunks + j) * (XBYTES);                            \
            block_scales(wb, xb, x_stride, nx, HAS_MIN, sc, tail_min);                             \
            BLOCK(wb, xb, sc, 0, acc[j % (NACC)]);                                                 \
        }                                                                                          \
    }                                                                                              \
    for (uint32_t m = 0; m < nx; m++) {                                                            \
        __m256 sum = _mm256_add_ps(acc[0][m], acc[1][m]);                                          \
        if ((NACC) == 4)                                                                           \
            sum = _mm256_add_ps(sum, _mm256_add_ps(acc[2 % (NACC)][m], acc[3 % (NACC)][m]));       \
        out[m] = attnd_hsum256(sum);                                                               \
        if (HAS_MIN)                                                                               \
            out[m] += attnd_hsum256(mins[m]) + tail_min[m];                                        \
    }

/* ---- Q4_0 two blocks at a time ----
 * Q4_0 is where the loads and vector operations per byte of weights count
 * most. A pair of blocks j, j+1 is laid out as A = elements 0..15 of both
 * (lanes 0-3 block j, 4-7 block j+1) and B = elements 16..31: one load
 * unpacks both blocks' nibbles, the integer sums of both land in one
 * vector, and one conversion and FMA scale both. The scale products are
 * gathered even blocks first (0 2 4 6 | 1 3 5 7), so pair p's is an
 * in-lane broadcast of element p. */

AVX2 INLINE __m256i load_2x16(const uint8_t *lo, const uint8_t *hi)
{
    return _mm256_loadu2_m128i((const __m128i *)(const void *)hi,
                               (const __m128i *)(const void *)lo);
}

/* Pair starting at block B: the unsigned nibbles of A and B. */
AVX2 INLINE void q4_0_pair(const uint8_t *b, __m256i *ua, __m256i *ub)
{
    const __m256i t = load_2x16(b + 2, b + Q4_0_BYTES + 2);
    *ua = _mm256_and_si256(t, _mm256_set1_epi8(0x0f));
    *ub = _mm256_and_si256(_mm256_srli_epi16(t, 4), _mm256_set1_epi8(0x0f));
}

/* Activations of the pair starting at block B, laid out as A and B. */
AVX2 INLINE void act_pair(const uint8_t *b, __m256i *xa, __m256i *xb)
{
    *xa = load_2x16(b + 2, b + Q8_0_BYTES + 2);
    *xb = load_2x16(b + 18, b + Q8_0_BYTES + 18);
}

/* The halves of CHUNK blocks, even blocks first. */
AVX2 INLINE __m256 halves8_even_odd(const uint8_t *p, size_t stride)
{
    const __m128i even = _mm_cvtsi64_si128((long long)four_halves(p, 2 * stride));
    const long long odd = (long long)four_halves(p + stride, 2 * stride);
    return _mm256_cvtph_ps(_mm_insert_epi64(even, odd, 1));
}

/* The loop of the pair kernels. DW_EVEN_ODD(wk) gives the chunk's weight
 * scales, even blocks first; PAIR(wb, xb, s2, p, acc) adds the pair at WB
 * (pair P of the chunk, scales S2) into ACC[m]; SINGLE is the one-block
 * kernel for the blocks after the last whole chunk. */
#define PAIR_LOOP(DW_EVEN_ODD, PAIR, SINGLE)                                                       \
    const uint32_t nb = n / QK, nb_chunks = nb - nb % CHUNK;                                       \
    __m256 acc[2][4], s2[4];                                                                       \
    chunk_scale sc[4];                                                                             \
    for (uint32_t m = 0; m < nx; m++)                                                              \
        acc[0][m] = acc[1][m] = _mm256_setzero_ps();                                               \
    for (uint32_t k = 0; k < nb_chunks; k += CHUNK) {                                              \
        const uint8_t *wk = w + (size_t)k * Q4_0_BYTES, *xk = x + (size_t)k * Q8_0_BYTES;          \
        quant_prefetch(wk, CHUNK * Q4_0_BYTES);                                                    \
        const __m256 dw = DW_EVEN_ODD(wk);                                                         \
        for (uint32_t m = 0; m < nx; m++)                                                          \
            s2[m] = _mm256_mul_ps(dw, halves8_even_odd(xk + (size_t)m * x_stride, Q8_0_BYTES));    \
        _Pragma("GCC unroll 4") for (uint32_t p = 0; p < CHUNK / 2; p++)                           \
            PAIR(wk + 2 * p * Q4_0_BYTES, xk + 2 * p * Q8_0_BYTES, s2, p, acc[p % 2]);             \
    }                                                                                              \
    _Pragma("GCC unroll 8") for (uint32_t j = 0; j < CHUNK; j++) {                                 \
        if (nb_chunks + j < nb) {                                                                  \
            const uint8_t *wb = w + (size_t)(nb_chunks + j) * Q4_0_BYTES;                          \
            const uint8_t *xb = x + (size_t)(nb_chunks + j) * Q8_0_BYTES;                          \
            block_scales(wb, xb, x_stride, nx, false, sc, NULL);                                   \
            SINGLE(wb, xb, sc, 0, acc[j % 2]);                                                     \
        }                                                                                          \
    }                                                                                              \
    for (uint32_t m = 0; m < nx; m++)                                                              \
        out[m] = attnd_hsum256(_mm256_add_ps(acc[0][m], acc[1][m]));

/* ---- AVX2 ---- */

/* maddubs multiplies unsigned by signed bytes, so the weight's sign moves
 * onto the activation: |w| <= 128 and |x| <= 127 (the quantizer's range)
 * keep each pair sum below 2^15. */
AVX2 INLINE __m256i pairs_signed_avx2(__m256i w_abs, __m256i w, __m256i x)
{
    return _mm256_maddubs_epi16(w_abs, _mm256_sign_epi8(x, w));
}

AVX2 INLINE __m256 to_float_avx2(__m256i p16)
{
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

AVX2 INLINE void block_signed_avx2(block_view_fn view, const uint8_t *wb, const uint8_t *xb,
                                   size_t xs, const chunk_scale *sc, uint32_t j, uint32_t nx,
                                   __m256 *acc)
{
    const __m256i wv = view(wb);
    const __m256i wa = _mm256_sign_epi8(wv, wv);
    for (uint32_t m = 0; m < nx; m++) {
        const __m256i p16 = pairs_signed_avx2(wa, wv, load256(xb + (size_t)m * xs + 2));
        acc[m] = _mm256_fmadd_ps(to_float_avx2(p16), scale_of(sc[m], j), acc[m]);
    }
}

/* u <= 31 keeps the pair sums of unsigned weights well inside int16. */
AVX2 INLINE void block_min_avx2(block_view_fn view, const uint8_t *wb, const uint8_t *xb,
                                size_t xs, const chunk_scale *sc, uint32_t j, uint32_t nx,
                                __m256 *acc)
{
    const __m256i u = view(wb);
    for (uint32_t m = 0; m < nx; m++) {
        const __m256i p16 = _mm256_maddubs_epi16(u, load256(xb + (size_t)m * xs + 4));
        acc[m] = _mm256_fmadd_ps(to_float_avx2(p16), scale_of(sc[m], j), acc[m]);
    }
}

/* 16 registers: two accumulators per row. */
AVX2 INLINE void dot_signed_avx2(block_view_fn view, size_t wbytes, uint32_t n, const uint8_t *w,
                                 const uint8_t *x, size_t x_stride, const uint32_t nx, float *out)
{
#define BLOCK(wb, xb, sc, j, a) block_signed_avx2(view, wb, xb, x_stride, sc, j, nx, a)
    DOT_LOOP(BLOCK, wbytes, Q8_0_BYTES, false, 2)
#undef BLOCK
}

AVX2 INLINE void dot_min_avx2(block_view_fn view, size_t wbytes, uint32_t n, const uint8_t *w,
                              const uint8_t *x, size_t x_stride, const uint32_t nx, float *out)
{
#define BLOCK(wb, xb, sc, j, a) block_min_avx2(view, wb, xb, x_stride, sc, j, nx, a)
    DOT_LOOP(BLOCK, wbytes, Q8_1_BYTES, true, 2)
#undef BLOCK
}

/* Both halves' 16-bit pair sums fit one int16 (|w| <= 8): one madd. */
AVX2 INLINE void pair_q4_0_avx2(const uint8_t *wb, const uint8_t *xb, size_t xs, const __m256 *s2,
                                uint32_t p, uint32_t nx, __m256 *acc)
{
    __m256i ua, ub;
    q4_0_pair(wb, &ua, &ub);
    const __m256i wa = _mm256_sub_epi8(ua, _mm256_set1_epi8(8));
    const __m256i wb8 = _mm256_sub_epi8(ub, _mm256_set1_epi8(8));
    const __m256i wa_abs = _mm256_sign_epi8(wa, wa), wb_abs = _mm256_sign_epi8(wb8, wb8);
    for (uint32_t m = 0; m < nx; m++) {
        __m256i xa, xb2;
        act_pair(xb + (size_t)m * xs, &xa, &xb2);
        const __m256i p16 = _mm256_add_epi16(pairs_signed_avx2(wa_abs, wa, xa),
                                             pairs_signed_avx2(wb_abs, wb8, xb2));
        acc[m] = _mm256_fmadd_ps(to_float_avx2(p16), lane_broadcast(s2[m], p), acc[m]);
    }
}

AVX2 INLINE __m256 q4_0_dw_avx2(const uint8_t *wk)
{
    return halves8_even_odd(wk, Q4_0_BYTES);
}

AVX2 INLINE void dot_q4_0_avx2(uint32_t n, const uint8_t *w, const uint8_t *x, size_t x_stride,
                               const uint32_t nx, float *out)
{
#define PAIR(wb, xb, s2, p, a) pair_q4_0_avx2(wb, xb, x_stride, s2, p, nx, a)
#define SINGLE(wb, xb, sc, j, a) block_signed_avx2(q4_0_signed, wb, xb, x_stride, sc, j, nx, a)
    PAIR_LOOP(q4_0_dw_avx2, PAIR, SINGLE)
#undef PAIR
#undef SINGLE
}

AVX2 QUANT_LEGACY_DOT(quant_q4_0_dot_avx2)
{
#define CALL(NX) dot_q4_0_avx2(n, w, x, x_stride, NX, out)
    QUANT_PER_NX(nx, CALL)
#undef CALL
}

AVX2 QUANT_LEGACY_DOT(quant_q5_0_dot_avx2)
{
#define CALL(NX) dot_signed_avx2(q5_0_signed, Q5_0_BYTES, n, w, x, x_stride, NX, out)
    QUANT_PER_NX(nx, CALL)
#undef CALL
}

AVX2 QUANT_LEGACY_DOT(quant_q8_0_dot_avx2)
{
#define CALL(NX) dot_signed_avx2(q8_0_signed, Q8_0_BYTES, n, w, x, x_stride, NX, out)
    QUANT_PER_NX(nx, CALL)
#undef CALL
}

AVX2 QUANT_LEGACY_DOT(quant_q4_1_dot_avx2)
{
#define CALL(NX) dot_min_avx2(q4_1_unsigned, Q4_1_BYTES, n, w, x, x_stride, NX, out)
    QUANT_PER_NX(nx, CALL)
#undef CALL
}

AVX2 QUANT_LEGACY_DOT(quant_q5_1_dot_avx2)
{
#define CALL(NX) dot_min_avx2(q5_1_unsigned, Q5_1_BYTES, n, w, x, x_stride, NX, out)
    QUANT_PER_NX(nx, CALL)
#undef CALL
}

/* ---- AVX-512 VNNI ----
 * vpdpbusd adds products of unsigned by signed bytes, four to a 32-bit
 * lane, exactly. Signed weights w = u - OFFSET (u unsigned) meet signed
 * activations x in one of two ways, with the same lane sums:
 * - the activation flipped to unsigned (x + 128, one xor per row) against
 *   w, the sum starting at -128 * sum(w), once per weight block (from u;
 *   the correction also takes off 512 * OFFSET, which the starting value
 *   gives back): best for several rows;
 * - u against x, less OFFSET times x (OFFSET as the unsigned factor): no w
 *   to form, one more product and a subtraction per row: best for one. */

AVX512 INLINE __m256i flip(__m256i v)
{
    return _mm256_xor_si256(v, _mm256_set1_epi8((char)0x80));
}

/* ACC - 128 * sum(u) in each 4-byte lane: -128 * sum(w) - 512 * OFFSET. */
AVX512 INLINE __m256i minus_128_sum_u(__m256i acc, __m256i u)
{
    return _mm256_dpbusd_epi32(acc, u, _mm256_set1_epi8(-128));
}

/* Where a sum starts that takes USES of those corrections: the 512 * OFFSET
 * each one takes off, given back. */
AVX512 INLINE __m256i bias(int offset, int uses)
{
    return _mm256_set1_epi32(512 * offset * uses);
}

typedef struct signed_view {
    block_view_fn u, w; /* u = w + offset */
    int offset;
} signed_view;

AVX512 INLINE void block_signed_vnni(signed_view view, const uint8_t *wb, const uint8_t *xb,
                                     size_t xs, const chunk_scale *sc, uint32_t j, uint32_t nx,
                                     __m256 *acc)
{
    const __m256i start = minus_128_sum_u(bias(view.offset, 1), view.u(wb)), wv = view.w(wb);
    for (uint32_t m = 0; m < nx; m++) {
        const __m256i xu = flip(load256(xb + (size_t)m * xs + 2));
        const __m256 f = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(start, xu, wv));
        acc[m] = _mm256_fmadd_ps(f, scale_of(sc[m], j), acc[m]);
    }
}

AVX512 INLINE void block_min_vnni(block_view_fn view, const uint8_t *wb, const uint8_t *xb,
                                  size_t xs, const chunk_scale *sc, uint32_t j, uint32_t nx,
                                  __m256 *acc)
{
    const __m256i u = view(wb);
    for (uint32_t m = 0; m < nx; m++) {
        const __m256i xv = load256(xb + (size_t)m * xs + 4);
        const __m256 f = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, xv));
        acc[m] = _mm256_fmadd_ps(f, scale_of(sc[m], j), acc[m]);
    }
}

/* 32 registers: four accumulators per row. */
AVX512 INLINE void dot_signed_vnni(signed_view view, size_t wbytes, uint32_t n, const uint8_t *w,
                                   const uint8_t *x, size_t x_stride, const uint32_t nx,
                                   float *out)
{
#define BLOCK(wb, xb, sc, j, a) block_signed_vnni(view, wb, xb, x_stride, sc, j, nx, a)
    DOT_LOOP(BLOCK, wbytes, Q8_0_BYTES, false, 4)
#undef BLOCK
}

AVX512 INLINE void dot_min_vnni(block_view_fn view, size_t wbytes, uint32_t n, const uint8_t *w,
                                const uint8_t *x, size_t x_stride, const uint32_t nx, float *out)
{
#define BLOCK(wb, xb, sc, j, a) block_min_vnni(view, wb, xb, x_stride, sc, j, nx, a)
    DOT_LOOP(BLOCK, wbytes, Q8_1_BYTES, true, 4)
#undef BLOCK
}

AVX512 INLINE void pair_q4_0_vnni(const uint8_t *wb, const uint8_t *xb, size_t xs,
                                  const __m256 *s2, uint32_t p, uint32_t nx, __m256 *acc)
{
    __m256i ua, ub;
    q4_0_pair(wb, &ua, &ub);
    if (nx == 1) {
        __m256i xa, xb2;
        act_pair(xb, &xa, &xb2);
        const __m256i zero = _mm256_setzero_si256(), eight = _mm256_set1_epi8(8);
        const __m256i ux = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(zero, ua, xa), ub, xb2);
        const __m256i x8 = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(zero, eight, xa), eight, xb2);
        const __m256i sum = _mm256_sub_epi32(ux, x8);
        acc[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), lane_broadcast(s2[0], p), acc[0]);
        return;
    }
    const __m256i wa = _mm256_sub_epi8(ua, _mm256_set1_epi8(8));
    const __m256i wb8 = _mm256_sub_epi8(ub, _mm256_set1_epi8(8));
    const __m256i start = minus_128_sum_u(minus_128_sum_u(bias(8, 2), ua), ub);
    for (uint32_t m = 0; m < nx; m++) {
        __m256i xa, xb2;
        act_pair(xb + (size_t)m * xs, &xa, &xb2);
        const __m256i sum_a = _mm256_dpbusd_epi32(start, flip(xa), wa);
        const __m256i sum = _mm256_dpbusd_epi32(sum_a, flip(xb2), wb8);
        acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), lane_broadcast(s2[m], p), acc[m]);
    }
}

AVX512 INLINE __m512i load512(const uint8_t *p)
{
    return _mm512_loadu_si512((const void *)p);
}

/* The 8 scales of a Q4_0 chunk (144 bytes) lie in its first 128: one
 * word permute picks them, even blocks first (word 9 * b). */
AVX512 INLINE __m256 q4_0_dw_vnni(const uint8_t *wk)
{
    const __m512i words = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                           0, 0, 0, 0, 0, 63, 45, 27, 9, 54, 36, 18, 0);
    const __m512i d = _mm512_permutex2var_epi16(load512(wk), words, load512(wk + 64));
    return _mm256_cvtph_ps(_mm512_castsi512_si128(d));
}

#define Q4_0_VNNI ((signed_view){q4_0_unsigned, q4_0_signed, 8})
#define Q5_0_VNNI ((signed_view){q5_0_unsigned_512, q5_0_signed_512, 16})

AVX512 INLINE void dot_q4_0_vnni(uint32_t n, const uint8_t *w, const uint8_t *x, size_t x_stride,
                                 const uint32_t nx, float *out)
{
#define PAIR(wb, xb, s2, p, a) pair_q4_0_vnni(wb, xb, x_stride, s2, p, nx, a)
#define SINGLE(wb, xb, sc, j, a) block_signed_vnni(Q4_0_VNNI, wb, xb, x_stride, sc, j, nx, a)
    PAIR_LOOP(q4_0_dw_vnni, PAIR, SINGLE)
#undef PAIR
#undef SINGLE
}

AVX512 QUANT_LEGACY_DOT(quant_q4_0_dot_avx512)
{
#define CALL(NX) dot_q4_0_vnni(n, w, x, x_stride, NX, out)
    QUANT_PER_NX(nx, CALL)
#undef CALL
}

AVX512 QUANT_LEGACY_DOT(quant_q5_0_dot_avx512)
{
#define CALL(NX) dot_signed_vnni(Q5_0_VNNI, Q5_0_BYTES, n, w, x, x_stride, NX, out)
    QUANT_PER_NX(nx, CALL)
#undef CALL
}

/* ---- Q8_0 tiles: NW weight rows x NX activation rows ----
 * A batch (a prompt, several streams) is bound by the instructions per
 * pair of blocks, and a one-row dot spends most of them on the activation
 * (load, flip, scale broadcast) and on four accumulators per row. A tile
 * loads and flips each activation block once for NW weight rows and forms
 * each weight block's correction once for NX activation rows; each pair
 * has one accumulator that takes its blocks in order, with its scale
 * products broadcast from memory, so a pair's bits are the same in every
 * tile shape. The one-row dot is the 1 x NX tile (its rows' chains are
 * independent, so one accumulator costs nothing there either). */
AVX512 INLINE void tile_q8_0_vnni(uint32_t n, const uint8_t *w, size_t ws, const uint32_t NW,
                                  const uint8_t *x, size_t xs, const uint32_t NX, float *out,
                                  size_t ldo)
{
    const uint32_t nb = n / QK;
    __m256 acc[4][4];
    float sc[4][4][CHUNK];
    for (uint32_t r = 0; r < NW; r++)
        for (uint32_t m = 0; m < NX; m++)
            acc[r][m] = _mm256_setzero_ps();
    for (uint32_t k0 = 0; k0 < nb; k0 += CHUNK) {
        const uint32_t kn = nb - k0 < CHUNK ? nb - k0 : CHUNK;
        const size_t off = (size_t)k0 * Q8_0_BYTES;
        if (kn == CHUNK) {
            __m256 dx[4];
            for (uint32_t m = 0; m < NX; m++)
                dx[m] = halves8(x + m * xs + off, Q8_0_BYTES);
            for (uint32_t r = 0; r < NW; r++) {
                const __m256 dw = halves8(w + r * ws + off, Q8_0_BYTES);
                /* the same place in the next tile's row: the rows a matmul
                 * takes next (one row alone: QUANT_PREFETCH_AHEAD on) */
                quant_prefetch(w + r * ws + off + (NW > 1 ? NW * ws - QUANT_PREFETCH_AHEAD : 0),
                               CHUNK * Q8_0_BYTES);
                for (uint32_t m = 0; m < NX; m++)
                    _mm256_storeu_ps(sc[r][m], _mm256_mul_ps(dw, dx[m]));
            }
        } else {
            for (uint32_t r = 0; r < NW; r++)
                for (uint32_t m = 0; m < NX; m++)
                    for (uint32_t j = 0; j < kn; j++)
                        sc[r][m][j] = _cvtsh_ss(half_at(w + r * ws + off + j * Q8_0_BYTES)) *
                                      _cvtsh_ss(half_at(x + m * xs + off + j * Q8_0_BYTES));
        }
#define TILE_BLOCK(j)                                                                                  do {                                                                                                   const size_t bo = off + (size_t)(j) * Q8_0_BYTES + 2;                                              __m256i wv[4], st[4], xu[4];                                                                       for (uint32_t r = 0; r < NW; r++) {                                                                    wv[r] = load256(w + r * ws + bo);                                                                  st[r] = minus_128_sum_u(bias(128, 1), flip(wv[r]));                                            }                                                                                                  for (uint32_t m = 0; m < NX; m++)                                                                      xu[m] = flip(load256(x + m * xs + bo));                                                        for (uint32_t r = 0; r < NW; r++)                                                                      for (uint32_t m = 0; m < NX; m++) {                                                                    const __m256i s = _mm256_dpbusd_epi32(st[r], xu[m], wv[r]);                                        acc[r][m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s),                                                                             _mm256_broadcast_ss(&sc[r][m][j]), acc[r][m]);                     }                                                                                          } while (0)
        if (kn == CHUNK) {
            _Pragma("GCC unroll 8") for (uint32_t j = 0; j < CHUNK; j++) TILE_BLOCK(j);
        } else {
            for (uint32_t j = 0; j < kn; j++)
                TILE_BLOCK(j);
        }
#undef TILE_BLOCK
    }
    for (uint32_t r = 0; r < NW; r++)
        for (uint32_t m = 0; m < NX; m++)
            out[m * ldo + r] = attnd_hsum256(acc[r][m]);
}

AVX512 void quant_q8_0_tile_avx512(uint32_t n, const void *restrict w, size_t w_stride,
                                   uint32_t nw, const void *restrict x, size_t x_stride,
                                   uint32_t nx, float *restrict out, size_t ldo)
{
#define CALL_NX(NW, NX) tile_q8_0_vnni(n, w, w_stride, NW, x, x_stride, NX, out, ldo)
    QUANT_PER_TILE(nw, nx, CALL_NX)
#undef CALL_NX
}

AVX512 QUANT_LEGACY_DOT(quant_q8_0_dot_avx512)
{
    quant_q8_0_tile_avx512(n, w, 0, 1, x, x_stride, nx, out, 1);
}

AVX512 QUANT_LEGACY_DOT(quant_q4_1_dot_avx512)
{
#define CALL(NX) dot_min_vnni(q4_1_unsigned, Q4_1_BYTES, n, w, x, x_stride, NX, out)
    QUANT_PER_NX(nx, CALL)
#undef CALL
}

AVX512 QUANT_LEGACY_DOT(quant_q5_1_dot_avx512)
{
#define CALL(NX) dot_min_vnni(q5_1_unsigned_512, Q5_1_BYTES, n, w, x, x_stride, NX, out)
    QUANT_PER_NX(nx, CALL)
#undef CALL
}

/* ---- activation quantizers: the reference's bits. The amax is a max, so
 * its order does not matter; d = amax / 127 and id = 1 / d are the same
 * scalar operations; q = roundf(x * id) is built as trunc(p + copysign(h,
 * p)) with h the float just below 0.5, which equals roundf for every float
 * (checked for all of them up to 200; |p| <= 127 here): adding h cannot
 * carry p's fraction past the next integer unless it is >= 0.5. */

#define JUST_BELOW_HALF 0x1.fffffep-2f

AVX2 INLINE __m256i round_away_avx2(__m256 p)
{
    const __m256 sign = _mm256_and_ps(p, _mm256_set1_ps(-0.0f));
    const __m256 h = _mm256_or_ps(sign, _mm256_set1_ps(JUST_BELOW_HALF));
    return _mm256_cvttps_epi32(_mm256_add_ps(p, h));
}

/* The 32 values at XB quantized to QS; returns d, and the sum of the
 * quantized values in *SUM. */
AVX2 INLINE float quantize_block_avx2(const float *xb, int8_t *qs, int *sum)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
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
    const __m256 vid = _mm256_set1_ps(id);
    __m256i q[4];
    for (int g = 0; g < 4; g++)
        q[g] = round_away_avx2(_mm256_mul_ps(v[g], vid));
    const __m256i s32 =
        _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(1, 0, 3, 2)));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
    *sum = _mm_cvtsi128_si32(s4);
    /* packs work within 128-bit lanes: the permute restores the order */
    const __m256i q16 = _mm256_packs_epi32(q[0], q[1]), q16b = _mm256_packs_epi32(q[2], q[3]);
    const __m256i q8 = _mm256_packs_epi16(q16, q16b);
    _mm256_storeu_si256((__m256i *)(void *)qs,
                        _mm256_permutevar8x32_epi32(q8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    return d;
}

AVX2 void quant_q8_0_quantize_avx2(const float *restrict src, void *restrict dst, size_t n)
{
    quant_block_q8_0 *b = dst;
    for (size_t k = 0; k < n / QK; k++) {
        int sum;
        b[k].d = attnd_f32_to_f16(quantize_block_avx2(src + k * QK, b[k].qs, &sum));
    }
}

AVX2 void quant_q8_1_quantize_avx2(const float *restrict src, void *restrict dst, size_t n)
{
    quant_block_q8_1 *b = dst;
    for (size_t k = 0; k < n / QK; k++) {
        int sum;
        const float d = quantize_block_avx2(src + k * QK, b[k].qs, &sum);
        b[k].d = attnd_f32_to_f16(d);
        b[k].s = attnd_f32_to_f16((float)sum * d);
    }
}

AVX512 INLINE __m512i round_away_avx512(__m512 p)
{
    const __m512 h = _mm512_castsi512_ps(_mm512_ternarylogic_epi32(
        _mm512_castps_si512(p), _mm512_set1_epi32((int)0x80000000u),
        _mm512_castps_si512(_mm512_set1_ps(JUST_BELOW_HALF)), 0xea)); /* (p & sign) | h */
    return _mm512_cvttps_epi32(_mm512_add_ps(p, h));
}

AVX512 INLINE float quantize_block_avx512(const float *xb, int8_t *qs, int *sum)
{
    const __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m512 vid = _mm512_set1_ps(id);
    const __m512i q0 = round_away_avx512(_mm512_mul_ps(v0, vid));
    const __m512i q1 = round_away_avx512(_mm512_mul_ps(v1, vid));
    *sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    _mm_storeu_si128((__m128i *)(void *)qs, _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128((__m128i *)(void *)(qs + 16), _mm512_cvtsepi32_epi8(q1));
    return d;
}

AVX512 void quant_q8_0_quantize_avx512(const float *restrict src, void *restrict dst, size_t n)
{
    quant_block_q8_0 *b = dst;
    for (size_t k = 0; k < n / QK; k++) {
        int sum;
        b[k].d = attnd_f32_to_f16(quantize_block_avx512(src + k * QK, b[k].qs, &sum));
    }
}

AVX512 void quant_q8_1_quantize_avx512(const float *restrict src, void *restrict dst, size_t n)
{
    quant_block_q8_1 *b = dst;
    for (size_t k = 0; k < n / QK; k++) {
        int sum;
        const float d = quantize_block_avx512(src + k * QK, b[k].qs, &sum);
        b[k].d = attnd_f32_to_f16(d);
        b[k].s = attnd_f32_to_f16((float)sum * d);
    }
}

#endif
