/* quant_legacy.c - the legacy block types of 32 elements: the weight types
 * Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0, and the activation formats they pair with
 * (Q8_0 for the symmetric types, Q8_1 for the ones with a minimum). This file
 * holds the scalar reference of each: dequantization with ggml's float
 * operations, ggml's reference quantizers (so the files `attnd quantize`
 * writes hold the bytes llama-quantize would write without an importance
 * matrix), integer dot products and the scale check. The SIMD kernels are in
 * quant_legacy_x86.c. */
#include "quant_internal.h"

#include <float.h>
#include <string.h>

#include "attnd_half.h"
#include "attnd_simd.h"
#include "quant_legacy_x86.h"

#define QK QUANT_QK

/* ---- dequantization: element i of a block is value(q_i) computed as ggml
 * does, e.g. (float)(q - 8) * d, never d * q - 8 * d ---- */

/* The 4-bit index of element i: low nibbles hold the first half. */
static int nibble(const uint8_t *qs, int i)
{
    return i < QK / 2 ? qs[i] & 0x0f : qs[i - QK / 2] >> 4;
}

/* The 5-bit index of element i: qh bit i on top of the nibble. */
static int nibble5(const uint8_t *qs, const uint8_t *qh, int i)
{
    uint32_t h;
    memcpy(&h, qh, sizeof h);
    return nibble(qs, i) | (int)(((h >> i) & 1u) << 4);
}

static void q4_0_to_f32(const void *restrict src, float *restrict dst, size_t n)
{
    const quant_block_q4_0 *b = src;
    for (size_t k = 0; k < n / QK; k++, b++, dst += QK) {
        const float d = attnd_f16_to_f32(b->d);
        for (int i = 0; i < QK; i++)
            dst[i] = (float)(nibble(b->qs, i) - 8) * d;
    }
}

static void q4_1_to_f32(const void *restrict src, float *restrict dst, size_t n)
{
    const quant_block_q4_1 *b = src;
    for (size_t k = 0; k < n / QK; k++, b++, dst += QK) {
        const float d = attnd_f16_to_f32(b->d), m = attnd_f16_to_f32(b->m);
        for (int i = 0; i < QK; i++)
            dst[i] = (float)nibble(b->qs, i) * d + m;
    }
}

static void q5_0_to_f32(const void *restrict src, float *restrict dst, size_t n)
{
    const quant_block_q5_0 *b = src;
    for (size_t k = 0; k < n / QK; k++, b++, dst += QK) {
        const float d = attnd_f16_to_f32(b->d);
        for (int i = 0; i < QK; i++)
            dst[i] = (float)(nibble5(b->qs, b->qh, i) - 16) * d;
    }
}

static void q5_1_to_f32(const void *restrict src, float *restrict dst, size_t n)
{
    const quant_block_q5_1 *b = src;
    for (size_t k = 0; k < n / QK; k++, b++, dst += QK) {
        const float d = attnd_f16_to_f32(b->d), m = attnd_f16_to_f32(b->m);
        for (int i = 0; i < QK; i++)
            dst[i] = (float)nibble5(b->qs, b->qh, i) * d + m;
    }
}

static void q8_0_to_f32(const void *restrict src, float *restrict dst, size_t n)
{
    const quant_block_q8_0 *b = src;
    for (size_t k = 0; k < n / QK; k++, b++, dst += QK) {
        const float d = attnd_f16_to_f32(b->d);
        for (int i = 0; i < QK; i++)
            dst[i] = (float)b->qs[i] * d;
    }
}

/* ggml has no dequantization of its Q8_1: s is redundant, d * q is the value. */
static void q8_1_to_f32(const void *restrict src, float *restrict dst, size_t n)
{
    const quant_block_q8_1 *b = src;
    for (size_t k = 0; k < n / QK; k++, b++, dst += QK) {
        const float d = attnd_f16_to_f32(b->d);
        for (int i = 0; i < QK; i++)
            dst[i] = (float)b->qs[i] * d;
    }
}

/* ---- quantization: ggml's reference quantizers, operation for operation
 * (their rounding is truncation of q + 0.5 after the offset, not roundf) ---- */

/* The element of largest magnitude, with its sign; the first one on ties. */
static float signed_absmax(const float *x)
{
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < QK; i++)
        if (amax < fabsf(x[i])) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    return max;
}

static void block_minmax(const float *x, float *min, float *max)
{
    *min = FLT_MAX;
    *max = -FLT_MAX;
    for (int i = 0; i < QK; i++) {
        if (x[i] < *min)
            *min = x[i];
        if (x[i] > *max)
            *max = x[i];
    }
}

/* Element i of a block goes to the nibble nibble() reads it from. */
static void put_nibble(uint8_t *qs, int i, int q)
{
    if (i < QK / 2)
        qs[i] = (uint8_t)q;
    else
        qs[i - QK / 2] |= (uint8_t)(q << 4);
}

static void put_nibble5(uint8_t *qs, uint32_t *qh, int i, int q)
{
    put_nibble(qs, i, q & 0x0f);
    *qh |= (uint32_t)((q >> 4) & 1) << i;
}

/* The scale maps the signed extreme to -8, so the other side reaches +7
 * at most and the full range -8..7 is used. */
static void q4_0_from_f32(const float *restrict src, void *restrict dst, size_t n)
{
    quant_block_q4_0 *b = dst;
    for (size_t k = 0; k < n / QK; k++, b++, src += QK) {
        const float d = signed_absmax(src) / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b->d = attnd_f32_to_f16(d);
        for (int i = 0; i < QK; i++) {
            const int q = (int8_t)(src[i] * id + 8.5f);
            put_nibble(b->qs, i, q < 15 ? q : 15);
        }
    }
}

static void q5_0_from_f32(const float *restrict src, void *restrict dst, size_t n)
{
    quant_block_q5_0 *b = dst;
    for (size_t k = 0; k < n / QK; k++, b++, src += QK) {
        const float d = signed_absmax(src) / -16.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b->d = attnd_f32_to_f16(d);
        uint32_t qh = 0;
        for (int i = 0; i < QK; i++) {
            const int q = (int8_t)(src[i] * id + 16.5f);
            put_nibble5(b->qs, &qh, i, q < 31 ? q : 31);
        }
        memcpy(b->qh, &qh, sizeof qh);
    }
}

static void q4_1_from_f32(const float *restrict src, void *restrict dst, size_t n)
{
    quant_block_q4_1 *b = dst;
    for (size_t k = 0; k < n / QK; k++, b++, src += QK) {
        float min, max;
        block_minmax(src, &min, &max);
        const float d = (max - min) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b->d = attnd_f32_to_f16(d);
        b->m = attnd_f32_to_f16(min);
        for (int i = 0; i < QK; i++) {
            const int q = (int8_t)((src[i] - min) * id + 0.5f);
            put_nibble(b->qs, i, q < 15 ? q : 15);
        }
    }
}

static void q5_1_from_f32(const float *restrict src, void *restrict dst, size_t n)
{
    quant_block_q5_1 *b = dst;
    for (size_t k = 0; k < n / QK; k++, b++, src += QK) {
        float min, max;
        block_minmax(src, &min, &max);
        const float d = (max - min) / 31.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b->d = attnd_f32_to_f16(d);
        b->m = attnd_f32_to_f16(min);
        uint32_t qh = 0;
        for (int i = 0; i < QK; i++)
            put_nibble5(b->qs, &qh, i, (uint8_t)((src[i] - min) * id + 0.5f));
        memcpy(b->qh, &qh, sizeof qh);
    }
}

/* The activation formats' scale: the largest magnitude maps to 127. The
 * comparison is ggml's MAX(a, b) = a > b ? a : b. */
static float absmax_scale(const float *x)
{
    float amax = 0.0f;
    for (int i = 0; i < QK; i++)
        amax = amax > fabsf(x[i]) ? amax : fabsf(x[i]);
    return amax / 127.0f;
}

/* Rounds half away from zero (roundf), as ggml's reference does; the SIMD
 * quantizers reproduce exactly this. */
static void q8_0_from_f32(const float *restrict src, void *restrict dst, size_t n)
{
    quant_block_q8_0 *b = dst;
    for (size_t k = 0; k < n / QK; k++, b++, src += QK) {
        const float d = absmax_scale(src);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b->d = attnd_f32_to_f16(d);
        for (int i = 0; i < QK; i++)
            b->qs[i] = (int8_t)roundf(src[i] * id);
    }
}

/* s = d * sum(q) lets Q4_1 / Q5_1 apply their minimum once per block. */
static void q8_1_from_f32(const float *restrict src, void *restrict dst, size_t n)
{
    quant_block_q8_1 *b = dst;
    for (size_t k = 0; k < n / QK; k++, b++, src += QK) {
        const float d = absmax_scale(src);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int i = 0; i < QK; i++) {
            b->qs[i] = (int8_t)roundf(src[i] * id);
            sum += b->qs[i];
        }
        b->d = attnd_f32_to_f16(d);
        b->s = attnd_f32_to_f16((float)sum * d);
    }
}

/* ---- scalar dot products: per block an exact integer sum of q_w * q_x,
 * then one float multiply-add with the product of the two scales ---- */

static int32_t dot_i8(const int8_t *a, const int8_t *b)
{
    int32_t s = 0;
    for (int i = 0; i < QK; i++)
        s += (int32_t)a[i] * (int32_t)b[i];
    return s;
}

/* The symmetric types unpack a block to signed values q (x = d * q) and
 * multiply Q8_0 activations. Each weight block is unpacked once for all NX
 * rows. */
typedef float (*unpack_signed_fn)(const void *blocks, uint32_t k, int8_t *q);

static float unpack_q4_0(const void *blocks, uint32_t k, int8_t *q)
{
    const quant_block_q4_0 *b = (const quant_block_q4_0 *)blocks + k;
    for (int i = 0; i < QK; i++)
        q[i] = (int8_t)(nibble(b->qs, i) - 8);
    return attnd_f16_to_f32(b->d);
}

static float unpack_q5_0(const void *blocks, uint32_t k, int8_t *q)
{
    const quant_block_q5_0 *b = (const quant_block_q5_0 *)blocks + k;
    for (int i = 0; i < QK; i++)
        q[i] = (int8_t)(nibble5(b->qs, b->qh, i) - 16);
    return attnd_f16_to_f32(b->d);
}

static float unpack_q8_0(const void *blocks, uint32_t k, int8_t *q)
{
    const quant_block_q8_0 *b = (const quant_block_q8_0 *)blocks + k;
    memcpy(q, b->qs, QK);
    return attnd_f16_to_f32(b->d);
}

static void dot_signed_q8_0(unpack_signed_fn unpack, uint32_t n, const void *w, const void *x,
                            size_t x_stride, uint32_t nx, float *out)
{
    float sum[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (uint32_t k = 0; k < n / QK; k++) {
        int8_t q[QK];
        const float dw = unpack(w, k, q);
        for (uint32_t m = 0; m < nx; m++) {
            const quant_block_q8_0 *xb = quant_act_q8_0(x, x_stride, m, k);
            sum[m] += dw * attnd_f16_to_f32(xb->d) * (float)dot_i8(q, xb->qs);
        }
    }
    for (uint32_t m = 0; m < nx; m++)
        out[m] = sum[m];
}

static void q4_0_dot(uint32_t n, const void *restrict w, const void *restrict x, size_t x_stride,
                     uint32_t nx, float *restrict out)
{
    dot_signed_q8_0(unpack_q4_0, n, w, x, x_stride, nx, out);
}

static void q5_0_dot(uint32_t n, const void *restrict w, const void *restrict x, size_t x_stride,
                     uint32_t nx, float *restrict out)
{
    dot_signed_q8_0(unpack_q5_0, n, w, x, x_stride, nx, out);
}

static void q8_0_dot(uint32_t n, const void *restrict w, const void *restrict x, size_t x_stride,
                     uint32_t nx, float *restrict out)
{
    dot_signed_q8_0(unpack_q8_0, n, w, x, x_stride, nx, out);
}

/* The types with a minimum (x = d * q + m, q unsigned) multiply Q8_1:
 * sum(x * a) = d * d_a * sum(q * q_a) + m * s_a, s_a = d_a * sum(q_a). */
typedef void (*unpack_min_fn)(const void *blocks, uint32_t k, int8_t *q, float *d, float *min);

static void unpack_q4_1(const void *blocks, uint32_t k, int8_t *q, float *d, float *min)
{
    const quant_block_q4_1 *b = (const quant_block_q4_1 *)blocks + k;
    for (int i = 0; i < QK; i++)
        q[i] = (int8_t)nibble(b->qs, i);
    *d = attnd_f16_to_f32(b->d);
    *min = attnd_f16_to_f32(b->m);
}

static void unpack_q5_1(const void *blocks, uint32_t k, int8_t *q, float *d, float *min)
{
    const quant_block_q5_1 *b = (const quant_block_q5_1 *)blocks + k;
    for (int i = 0; i < QK; i++)
        q[i] = (int8_t)nibble5(b->qs, b->qh, i);
    *d = attnd_f16_to_f32(b->d);
    *min = attnd_f16_to_f32(b->m);
}

static void dot_min_q8_1(unpack_min_fn unpack, uint32_t n, const void *w, const void *x,
                         size_t x_stride, uint32_t nx, float *out)
{
    float sum[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (uint32_t k = 0; k < n / QK; k++) {
        int8_t q[QK];
        float dw, mw;
        unpack(w, k, q, &dw, &mw);
        for (uint32_t m = 0; m < nx; m++) {
            const quant_block_q8_1 *xb = quant_act_q8_1(x, x_stride, m, k);
            sum[m] += dw * attnd_f16_to_f32(xb->d) * (float)dot_i8(q, xb->qs) +
                      mw * attnd_f16_to_f32(xb->s);
        }
    }
    for (uint32_t m = 0; m < nx; m++)
        out[m] = sum[m];
}

static void q4_1_dot(uint32_t n, const void *restrict w, const void *restrict x, size_t x_stride,
                     uint32_t nx, float *restrict out)
{
    dot_min_q8_1(unpack_q4_1, n, w, x, x_stride, nx, out);
}

static void q5_1_dot(uint32_t n, const void *restrict w, const void *restrict x, size_t x_stride,
                     uint32_t nx, float *restrict out)
{
    dot_min_q8_1(unpack_q5_1, n, w, x, x_stride, nx, out);
}

/* ---- scale checks: the half scale d sits first in every legacy block;
 * the types with a minimum (and Q8_1's sum) have a second half after it ---- */

static size_t first_bad_half(const void *blocks, size_t n_blocks, size_t block_bytes,
                             int n_halves)
{
    const uint8_t *p = blocks;
    for (size_t k = 0; k < n_blocks; k++, p += block_bytes)
        for (int j = 0; j < n_halves; j++) {
            uint16_t h;
            memcpy(&h, p + 2 * j, sizeof h);
            if (!quant_half_finite(h))
                return k;
        }
    return n_blocks;
}

static size_t q4_0_bad_scale(const void *blocks, size_t n_blocks)
{
    return first_bad_half(blocks, n_blocks, sizeof(quant_block_q4_0), 1);
}

static size_t q4_1_bad_scale(const void *blocks, size_t n_blocks)
{
    return first_bad_half(blocks, n_blocks, sizeof(quant_block_q4_1), 2);
}

static size_t q5_0_bad_scale(const void *blocks, size_t n_blocks)
{
    return first_bad_half(blocks, n_blocks, sizeof(quant_block_q5_0), 1);
}

static size_t q5_1_bad_scale(const void *blocks, size_t n_blocks)
{
    return first_bad_half(blocks, n_blocks, sizeof(quant_block_q5_1), 2);
}

static size_t q8_0_bad_scale(const void *blocks, size_t n_blocks)
{
    return first_bad_half(blocks, n_blocks, sizeof(quant_block_q8_0), 1);
}

static size_t q8_1_bad_scale(const void *blocks, size_t n_blocks)
{
    return first_bad_half(blocks, n_blocks, sizeof(quant_block_q8_1), 2);
}

/* ---- the table entries ---- */

#ifdef ATTND_HAVE_X86
#define X86_DOTS(t)                                                                                \
    [QUANT_ISA_AVX2] = quant_##t##_dot_avx2, [QUANT_ISA_AVX512] = quant_##t##_dot_avx512,
#define X86_ACT(t)                                                                                 \
    .quantize_act = {[QUANT_ISA_AVX2] = quant_##t##_quantize_avx2,                                 \
                     [QUANT_ISA_AVX512] = quant_##t##_quantize_avx512},
#define X86_TILE(t) .tile = {[QUANT_ISA_AVX512] = quant_##t##_tile_avx512},
#else
#define X86_DOTS(t)
#define X86_ACT(t)
#define X86_TILE(t)
#endif

const quant_traits quant_traits_q4_0 = {
    .type = GGUF_DTYPE_Q4_0, .act_type = GGUF_DTYPE_Q8_0,
    .to_f32 = q4_0_to_f32, .from_f32 = q4_0_from_f32,
    .dot = {[QUANT_ISA_SCALAR] = q4_0_dot, X86_DOTS(q4_0)},
    .find_bad_scale = q4_0_bad_scale,
};
const quant_traits quant_traits_q4_1 = {
    .type = GGUF_DTYPE_Q4_1, .act_type = GGUF_DTYPE_Q8_1,
    .to_f32 = q4_1_to_f32, .from_f32 = q4_1_from_f32,
    .dot = {[QUANT_ISA_SCALAR] = q4_1_dot, X86_DOTS(q4_1)},
    .find_bad_scale = q4_1_bad_scale,
};
const quant_traits quant_traits_q5_0 = {
    .type = GGUF_DTYPE_Q5_0, .act_type = GGUF_DTYPE_Q8_0,
    .to_f32 = q5_0_to_f32, .from_f32 = q5_0_from_f32,
    .dot = {[QUANT_ISA_SCALAR] = q5_0_dot, X86_DOTS(q5_0)},
    .find_bad_scale = q5_0_bad_scale,
};
const quant_traits quant_traits_q5_1 = {
    .type = GGUF_DTYPE_Q5_1, .act_type = GGUF_DTYPE_Q8_1,
    .to_f32 = q5_1_to_f32, .from_f32 = q5_1_from_f32,
    .dot = {[QUANT_ISA_SCALAR] = q5_1_dot, X86_DOTS(q5_1)},
    .find_bad_scale = q5_1_bad_scale,
};
/* Q8_0 is both a weight type (it multiplies its own format) and the
 * activation format of Q4_0, Q5_0 and itself. */
const quant_traits quant_traits_q8_0 = {
    .type = GGUF_DTYPE_Q8_0, .act_type = GGUF_DTYPE_Q8_0,
    .to_f32 = q8_0_to_f32, .from_f32 = q8_0_from_f32, X86_ACT(q8_0)
    .dot = {[QUANT_ISA_SCALAR] = q8_0_dot, X86_DOTS(q8_0)}, X86_TILE(q8_0)
    .find_bad_scale = q8_0_bad_scale,
};
const quant_traits quant_traits_q8_1 = {
    .type = GGUF_DTYPE_Q8_1, .act_type = GGUF_DTYPE_Q8_1,
    .to_f32 = q8_1_to_f32, .from_f32 = q8_1_from_f32, X86_ACT(q8_1)
    .find_bad_scale = q8_1_bad_scale,
};
