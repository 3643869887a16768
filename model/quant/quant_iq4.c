/* quant_iq4.c - the 4-bit non-linear types IQ4_NL and IQ4_XS: a 4-bit index
 * per weight into one fixed table of 16 values, spaced closer near zero
 * where trained weights crowd. IQ4_NL scales blocks of 32 by a half float and
 * pairs with Q8_0 activations; IQ4_XS gathers 8 such blocks into a
 * super-block of 256 with one half scale and a 6-bit integer scale per 32,
 * and pairs with Q8_K. Here: the table, dequantization, the quantizer, the
 * plain scalar dot products and the traits; the SIMD dots live in
 * quant_iq4_x86.c. */
#include "quant_iq4_x86.h"

#include <string.h>

#include "attnd_half.h"

/* The reference's values, ascending (its quantizer's search relies on it). */
const int8_t quant_iq4_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};

/* Sub-blocks whose largest magnitude is below this are all zero. */
#define IQ4_ZERO_AMAX 1e-15f
/* How many integer steps either side of the extreme value the scale search
 * tries for the block's largest element (the reference's seven). */
#define IQ4_SCALE_TRIES 7
#define IQ4_XS_SUBS (QUANT_QK_K / QUANT_QK)

/* ------------------------------------------------------------ dequantize */

/* A block of 32 stores element j in the low nibble of qs[j] and element
 * j + 16 in the high nibble. */
static void iq4_unpack32(const uint8_t qs[QUANT_QK / 2], int8_t v[QUANT_QK])
{
    for (int j = 0; j < QUANT_QK / 2; j++) {
        v[j] = quant_iq4_values[qs[j] & 0x0f];
        v[j + QUANT_QK / 2] = quant_iq4_values[qs[j] >> 4];
    }
}

/* Sub-block S's 6-bit scale: low 4 bits in a nibble of scales_l, high 2 bits
 * in scales_h, stored offset by 32. */
static int iq4xs_sub_scale(const quant_block_iq4_xs *b, int s)
{
    int lo = (b->scales_l[s / 2] >> (4 * (s % 2))) & 0x0f;
    int hi = (b->scales_h >> (2 * s)) & 0x03;
    return (lo | (hi << 4)) - 32;
}

static void iq4nl_to_f32(const void *restrict src, float *restrict dst, size_t n)
{
    const quant_block_iq4_nl *b = src;
    for (size_t i = 0; i < n / QUANT_QK; i++, dst += QUANT_QK) {
        const float d = attnd_f16_to_f32(b[i].d);
        int8_t v[QUANT_QK];
        iq4_unpack32(b[i].qs, v);
        for (int j = 0; j < QUANT_QK; j++)
            dst[j] = d * (float)v[j];
    }
}

/* The reference forms the sub-block's float scale first, then multiplies. */
static void iq4xs_to_f32(const void *restrict src, float *restrict dst, size_t n)
{
    const quant_block_iq4_xs *b = src;
    for (size_t i = 0; i < n / QUANT_QK_K; i++) {
        const float d = attnd_f16_to_f32(b[i].d);
        for (int s = 0; s < IQ4_XS_SUBS; s++, dst += QUANT_QK) {
            const float ds = d * (float)iq4xs_sub_scale(&b[i], s);
            int8_t v[QUANT_QK];
            iq4_unpack32(b[i].qs + s * (QUANT_QK / 2), v);
            for (int j = 0; j < QUANT_QK; j++)
                dst[j] = ds * (float)v[j];
        }
    }
}

/* -------------------------------------------------------------- quantize */

/* Round to nearest, ties to even, for |v| < 2^22 (adding 1.5 * 2^23 leaves
 * the integer in the low mantissa bits): the reference's rounding. */
static int round_nearest_even(float v)
{
    float biased = v + 12582912.0f;
    int32_t bits;
    memcpy(&bits, &biased, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

/* Index of the table value nearest V; a tie goes to the upper value, as in
 * the reference. */
static int iq4_nearest_index(float v)
{
    if (v <= quant_iq4_values[0])
        return 0;
    if (v >= quant_iq4_values[15])
        return 15;
    int lo = 0, hi = 15; /* values[lo] <= v < values[hi] */
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (v < quant_iq4_values[mid])
            hi = mid;
        else
            lo = mid;
    }
    return v - quant_iq4_values[lo] < quant_iq4_values[hi] - v ? lo : hi;
}

/* Least-squares fit of X (weights W) to the table values nearest X * INV:
 * SUMQX = sum w q x and SUMQ2 = sum w q^2, so the best scale for these
 * indices is SUMQX / SUMQ2 and it removes SUMQX^2 / SUMQ2 of the error. */
static void iq4_fit(const float *x, const float *w, float inv, float *sumqx, float *sumq2)
{
    float qx = 0.0f, q2 = 0.0f;
    for (int j = 0; j < QUANT_QK; j++) {
        const float q = quant_iq4_values[iq4_nearest_index(inv * x[j])];
        qx += w[j] * q * x[j];
        q2 += w[j] * q * q;
    }
    *sumqx = qx;
    *sumq2 = q2;
}

/* The scale for 32 elements: the extreme element mapped onto the table's top
 * (positive scale) or onto its bottom and a few steps inside it (negative
 * scales: the table reaches further below zero), each refined by least
 * squares with weights x^2 (no importance matrix), the best fit kept. 0 for
 * an all-zero block. */
static float iq4_best_scale(const float x[QUANT_QK])
{
    float w[QUANT_QK], amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QUANT_QK; j++) {
        w[j] = x[j] * x[j];
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    if (amax < IQ4_ZERO_AMAX)
        return 0.0f;
    const float bottom = quant_iq4_values[0];
    float sumqx, sumq2;
    iq4_fit(x, w, 1.0f / (-max / bottom), &sumqx, &sumq2);
    float d = sumqx / sumq2, best = d * sumqx;
    for (int t = -IQ4_SCALE_TRIES; t <= IQ4_SCALE_TRIES; t++) {
        iq4_fit(x, w, (float)(t + quant_iq4_values[0]) / max, &sumqx, &sumq2);
        if (sumq2 > 0.0f && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

/* 32 indices nearest X * INV, packed as iq4_unpack32 reads them. */
static void iq4_pack32(const float x[QUANT_QK], float inv, uint8_t qs[QUANT_QK / 2])
{
    for (int j = 0; j < QUANT_QK / 2; j++) {
        int lo = iq4_nearest_index(inv * x[j]);
        int hi = iq4_nearest_index(inv * x[j + QUANT_QK / 2]);
        qs[j] = (uint8_t)(lo | (hi << 4));
    }
}

/* The indices are chosen again for the chosen scale (the float one, not its
 * half rounding, as the reference does). */
static void iq4nl_from_f32(const float *restrict src, void *restrict dst, size_t n)
{
    quant_block_iq4_nl *b = dst;
    for (size_t i = 0; i < n / QUANT_QK; i++, src += QUANT_QK) {
        const float d = iq4_best_scale(src);
        b[i].d = attnd_f32_to_f16(d);
        iq4_pack32(src, d != 0.0f ? 1.0f / d : 0.0f, b[i].qs);
    }
}

/* Each sub-block's best scale is rounded to a multiple (-32..31) of the
 * super-block scale, which puts the largest-magnitude one at -32 (the
 * asymmetric range reaches one step further below zero). */
static void iq4xs_block_from_f32(const float *x, quant_block_iq4_xs *b)
{
    float sub[IQ4_XS_SUBS], extreme = 0.0f;
    for (int s = 0; s < IQ4_XS_SUBS; s++) {
        sub[s] = iq4_best_scale(x + s * QUANT_QK);
        if (fabsf(sub[s]) > fabsf(extreme))
            extreme = sub[s];
    }
    const float d = -extreme / 32.0f;
    const float inv_d = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = attnd_f32_to_f16(d);
    b->scales_h = 0;
    memset(b->scales_l, 0, sizeof b->scales_l);
    for (int s = 0; s < IQ4_XS_SUBS; s++) {
        int l = round_nearest_even(inv_d * sub[s]);
        l = l < -32 ? -32 : l > 31 ? 31 : l;
        const float ds = d * (float)l;
        iq4_pack32(x + s * QUANT_QK, ds != 0.0f ? 1.0f / ds : 0.0f,
                   b->qs + s * (QUANT_QK / 2));
        const unsigned stored = (unsigned)(l + 32);
        b->scales_l[s / 2] |= (uint8_t)((stored & 0x0fu) << (4 * (s % 2)));
        b->scales_h |= (uint16_t)((stored >> 4) << (2 * s));
    }
}

static void iq4xs_from_f32(const float *restrict src, void *restrict dst, size_t n)
{
    quant_block_iq4_xs *b = dst;
    for (size_t i = 0; i < n / QUANT_QK_K; i++)
        iq4xs_block_from_f32(src + i * QUANT_QK_K, &b[i]);
}

/* ------------------------------------------------------------------- dot */

static int32_t dot32_i8(const int8_t *a, const int8_t *b)
{
    int32_t t = 0;
    for (int j = 0; j < QUANT_QK; j++)
        t += (int32_t)a[j] * (int32_t)b[j];
    return t;
}

/* Per block: the exact integer dot, then one multiply-add with both
 * scales. */
static void iq4nl_dot(uint32_t n, const void *restrict w, const void *restrict x,
                      size_t x_stride, uint32_t nx, float *restrict out)
{
    const quant_block_iq4_nl *wb = w;
    float sum[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (uint32_t i = 0; i < n / QUANT_QK; i++) {
        int8_t v[QUANT_QK];
        iq4_unpack32(wb[i].qs, v);
        const float dw = attnd_f16_to_f32(wb[i].d);
        for (uint32_t m = 0; m < nx; m++) {
            const quant_block_q8_0 *xb = (const quant_block_q8_0 *)quant_act_row(x, x_stride, m) + i;
            sum[m] += dw * attnd_f16_to_f32(xb->d) * (float)dot32_i8(v, xb->qs);
        }
    }
    for (uint32_t m = 0; m < nx; m++)
        out[m] = sum[m];
}

/* Per super-block: the integer dot with the sub-block scales applied
 * (|sum| < 256 * 127 * 127 * 32 fits 32 bits), then one multiply-add. */
static void iq4xs_dot(uint32_t n, const void *restrict w, const void *restrict x,
                      size_t x_stride, uint32_t nx, float *restrict out)
{
    const quant_block_iq4_xs *wb = w;
    float sum[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (uint32_t i = 0; i < n / QUANT_QK_K; i++) {
        int8_t v[QUANT_QK_K];
        int ls[IQ4_XS_SUBS];
        for (int s = 0; s < IQ4_XS_SUBS; s++) {
            iq4_unpack32(wb[i].qs + s * (QUANT_QK / 2), v + s * QUANT_QK);
            ls[s] = iq4xs_sub_scale(&wb[i], s);
        }
        const float dw = attnd_f16_to_f32(wb[i].d);
        for (uint32_t m = 0; m < nx; m++) {
            const quant_block_q8_K *xb = (const quant_block_q8_K *)quant_act_row(x, x_stride, m) + i;
            int32_t t = 0;
            for (int s = 0; s < IQ4_XS_SUBS; s++)
                t += ls[s] * dot32_i8(v + s * QUANT_QK, xb->qs + s * QUANT_QK);
            sum[m] += dw * xb->d * (float)t;
        }
    }
    for (uint32_t m = 0; m < nx; m++)
        out[m] = sum[m];
}

/* ---------------------------------------------------------------- scales */

static size_t iq4nl_find_bad_scale(const void *blocks, size_t n_blocks)
{
    const quant_block_iq4_nl *b = blocks;
    for (size_t i = 0; i < n_blocks; i++)
        if (!quant_half_finite(b[i].d))
            return i;
    return n_blocks;
}

static size_t iq4xs_find_bad_scale(const void *blocks, size_t n_blocks)
{
    const quant_block_iq4_xs *b = blocks;
    for (size_t i = 0; i < n_blocks; i++)
        if (!quant_half_finite(b[i].d))
            return i;
    return n_blocks;
}

#ifdef ATTND_HAVE_X86
#define IQ4NL_DOTS {iq4nl_dot, quant_iq4nl_dot_avx2, quant_iq4nl_dot_avx512}
#define IQ4XS_DOTS {iq4xs_dot, quant_iq4xs_dot_avx2, quant_iq4xs_dot_avx512}
#else
#define IQ4NL_DOTS {iq4nl_dot}
#define IQ4XS_DOTS {iq4xs_dot}
#endif

const quant_traits quant_traits_iq4_nl = {
    .type = GGUF_DTYPE_IQ4_NL, .act_type = GGUF_DTYPE_Q8_0,
    .to_f32 = iq4nl_to_f32, .from_f32 = iq4nl_from_f32,
    .dot = IQ4NL_DOTS, .find_bad_scale = iq4nl_find_bad_scale,
};
const quant_traits quant_traits_iq4_xs = {
    .type = GGUF_DTYPE_IQ4_XS, .act_type = GGUF_DTYPE_Q8_K,
    .to_f32 = iq4xs_to_f32, .from_f32 = iq4xs_from_f32,
    .dot = IQ4XS_DOTS, .find_bad_scale = iq4xs_find_bad_scale,
};
