/* quant_k_low.c - the low-bit K-quants, Q2_K and Q3_K: dequantization, the
 * weight quantizers (round to nearest after a per-16 scale search, no
 * importance matrix), the scalar dot references against Q8_K activations
 * and the scale check. The SIMD dots live in quant_k_low_x86.c.
 *
 * Both types cut a super-block of 256 into 16 sub-blocks of 16 elements.
 * The 2-bit levels are packed the same way in both: byte qs[32h + l] holds
 * elements 128h + l, +32, +64, +96 in bits 0-1, 2-3, 4-5, 6-7.
 *   Q2_K: x = d * sc * q - dmin * m, with 4-bit sc and m per sub-block.
 *   Q3_K: x = d * (s - 32) * (q - 4), q's third bit for element e is bit
 *         e / 32 of hmask[e % 32], s a 6-bit scale per sub-block. */
#include "quant_internal.h"

#include <string.h>

#include "attnd_half.h"
#include "quant_k_low_x86.h"

#define SUBS (QUANT_QK_K / 16) /* sub-blocks per super-block */

/* Round to nearest, ties to even, for |v| < 2^22: adding 1.5 * 2^23 leaves
 * the rounded integer in the low mantissa bits. The reference quantizers
 * round this way, and lrintf is a library call here. */
static int round_even(float v)
{
    float t = v + 12582912.0f;
    int32_t bits;
    memcpy(&bits, &t, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

static int clamp_int(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* The 16 levels of sub-block J (elements 16J..16J+15) in the shared 2-bit
 * packing: bytes 32 * (J / 8) + 16 * (J % 2) on, bit pair J % 8 / 2. */
static void sub_levels2(const uint8_t *qs, int j, int8_t *out)
{
    const uint8_t *q = qs + 32 * (j / 8) + 16 * (j % 2);
    const int shift = 2 * (j % 8 / 2);
    for (int i = 0; i < 16; i++)
        out[i] = (int8_t)((q[i] >> shift) & 3);
}

static void pack_levels2(const uint8_t *levels, uint8_t *qs)
{
    memset(qs, 0, QUANT_QK_K / 4);
    for (int e = 0; e < QUANT_QK_K; e++)
        qs[32 * (e / 128) + e % 32] |= (uint8_t)(levels[e] << (2 * (e % 128 / 32)));
}


/* ------------------------------------------------------------------ Q2_K */

static void q2_K_to_f32(const void *restrict src, float *restrict dst, size_t n)
{
    const quant_block_q2_K *blk = src;
    for (size_t b = 0; b < n / QUANT_QK_K; b++) {
        const float d = attnd_f16_to_f32(blk[b].d), dmin = attnd_f16_to_f32(blk[b].dmin);
        for (int j = 0; j < SUBS; j++, dst += 16) {
            const uint8_t sc = blk[b].scales[j];
            /* the reference's rounding: each factor first, then d*q - m */
            const float dl = d * (float)(sc & 0xF), ml = dmin * (float)(sc >> 4);
            int8_t q[16];
            sub_levels2(blk[b].qs, j, q);
            for (int i = 0; i < 16; i++)
                dst[i] = dl * (float)q[i] - ml;
        }
    }
}

/* The best x ~ scale * L - min (L in 0..3, min >= 0) for 16 values, weighted
 * by |x| and judged by weighted absolute error: start from the full range,
 * then try 16 level spacings around it and solve the weighted least-squares
 * scale and offset for each rounding. The float operations keep the
 * reference's order so that the levels, and so the files, are the same. */
static float fit_scale_min16(const float *x, uint8_t *levels, float *min_out)
{
    enum { N = 16, NMAX = 3, STEPS = 15 };
    float w[N];
    for (int i = 0; i < N; i++)
        w[i] = fabsf(x[i]);
    float lo = x[0], hi = x[0], sum_w = w[0], sum_x = w[0] * x[0];
    for (int i = 1; i < N; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (lo > 0)
        lo = 0;
    if (hi == lo) {
        memset(levels, 0, N);
        *min_out = -lo;
        return 0.0f;
    }
    float inv = NMAX / (hi - lo), scale = 1 / inv, best_err = 0;
    for (int i = 0; i < N; i++) {
        levels[i] = (uint8_t)clamp_int(round_even(inv * (x[i] - lo)), 0, NMAX);
        best_err += w[i] * fabsf(scale * levels[i] + lo - x[i]);
    }
    for (int step = 0; step <= STEPS; step++) {
        inv = (-0.5f + 0.1f * (float)step + NMAX) / (hi - lo);
        uint8_t trial[N];
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < N; i++) {
            const int l = clamp_int(round_even(inv * (x[i] - lo)), 0, NMAX);
            trial[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)l * (float)l;
            sum_xl += w[i] * (float)l * x[i];
        }
        const float det = sum_w * sum_l2 - sum_l * sum_l;
        if (!(det > 0))
            continue;
        float t_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
        float t_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
        if (t_min > 0) { /* the offset may only lower values: refit the scale alone */
            t_min = 0;
            t_scale = sum_xl / sum_l2;
        }
        float err = 0;
        for (int i = 0; i < N; i++)
            err += w[i] * fabsf(t_scale * trial[i] + t_min - x[i]);
        if (err < best_err) {
            memcpy(levels, trial, N);
            best_err = err;
            scale = t_scale;
            lo = t_min;
        }
    }
    *min_out = -lo;
    return scale;
}

static void q2_K_quantize_block(const float *x, quant_block_q2_K *y)
{
    uint8_t levels[QUANT_QK_K];
    float scale[SUBS], min[SUBS], max_scale = 0, max_min = 0;
    for (int j = 0; j < SUBS; j++) {
        scale[j] = fit_scale_min16(x + 16 * j, levels + 16 * j, &min[j]);
        max_scale = scale[j] > max_scale ? scale[j] : max_scale;
        max_min = min[j] > max_min ? min[j] : max_min;
    }
    /* sub-block scales and mins to 4 bits against the largest of each */
    memset(y->scales, 0, sizeof y->scales);
    y->d = attnd_f32_to_f16(0.0f);
    y->dmin = attnd_f32_to_f16(0.0f);
    if (max_scale > 0) {
        const float inv = 15.0f / max_scale;
        for (int j = 0; j < SUBS; j++)
            y->scales[j] = (uint8_t)round_even(inv * scale[j]);
        y->d = attnd_f32_to_f16(max_scale / 15.0f);
    }
    if (max_min > 0) {
        const float inv = 15.0f / max_min;
        for (int j = 0; j < SUBS; j++)
            y->scales[j] |= (uint8_t)(round_even(inv * min[j]) << 4);
        y->dmin = attnd_f32_to_f16(max_min / 15.0f);
    }
    /* levels again for the scales as stored; a zero scale keeps the fit's */
    for (int j = 0; j < SUBS; j++) {
        const float d = attnd_f16_to_f32(y->d) * (float)(y->scales[j] & 0xF);
        if (d == 0)
            continue;
        const float m = attnd_f16_to_f32(y->dmin) * (float)(y->scales[j] >> 4);
        for (int i = 16 * j; i < 16 * j + 16; i++)
            levels[i] = (uint8_t)clamp_int(round_even((x[i] + m) / d), 0, 3);
    }
    pack_levels2(levels, y->qs);
}

static void q2_K_from_f32(const float *restrict src, void *restrict dst, size_t n)
{
    quant_block_q2_K *blk = dst;
    for (size_t b = 0; b < n / QUANT_QK_K; b++)
        q2_K_quantize_block(src + b * QUANT_QK_K, &blk[b]);
}

/* Per block: sum over sub-blocks of sc * (q . x) in integers, minus the
 * mins against the activation's sub-block sums, then the two scales. */
static void q2_K_dot_ref(uint32_t n, const void *restrict w, const void *restrict x,
                         size_t x_stride, uint32_t nx, float *restrict out)
{
    const quant_block_q2_K *wb = w;
    for (uint32_t m = 0; m < nx; m++)
        out[m] = 0.0f;
    for (size_t b = 0; b < n / QUANT_QK_K; b++) {
        int8_t q[QUANT_QK_K];
        for (int j = 0; j < SUBS; j++)
            sub_levels2(wb[b].qs, j, q + 16 * j);
        const float d = attnd_f16_to_f32(wb[b].d), dmin = attnd_f16_to_f32(wb[b].dmin);
        for (uint32_t m = 0; m < nx; m++) {
            const quant_block_q8_K *xb = quant_act_q8_K(x, x_stride, m, b);
            int32_t sum_qx = 0, sum_min = 0;
            for (int j = 0; j < SUBS; j++) {
                int32_t s = 0;
                for (int i = 16 * j; i < 16 * j + 16; i++)
                    s += q[i] * xb->qs[i];
                sum_qx += (wb[b].scales[j] & 0xF) * s;
                sum_min += (wb[b].scales[j] >> 4) * xb->bsums[j];
            }
            out[m] += xb->d * d * (float)sum_qx - xb->d * dmin * (float)sum_min;
        }
    }
}

static size_t q2_K_find_bad_scale(const void *blocks, size_t n_blocks)
{
    const quant_block_q2_K *blk = blocks;
    for (size_t b = 0; b < n_blocks; b++)
        if (!quant_half_finite(blk[b].d) || !quant_half_finite(blk[b].dmin))
            return b;
    return n_blocks;
}

/* ------------------------------------------------------------------ Q3_K */

/* Sub-block J's 6-bit scale: low 4 bits in the nibbles of bytes 0-7 (J < 8
 * low nibble of byte J, else high nibble of byte J - 8), high 2 bits in
 * bytes 8-11 (byte 8 + J % 4, bits 2 * (J / 4) and up). */
static int q3_K_scale6(const uint8_t *scales, int j)
{
    const int low = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
    const int high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    return low | high << 4;
}

static void q3_K_set_scale6(uint8_t *scales, int j, int v)
{
    scales[j % 8] |= (uint8_t)((v & 0xF) << (j < 8 ? 0 : 4));
    scales[8 + j % 4] |= (uint8_t)((v >> 4) << (2 * (j / 4)));
}

/* Sub-block J's 16 levels in -4..3: element e's third bit is bit e / 32 of
 * hmask[e % 32], and a clear bit means the level is 4 lower. */
static void q3_K_sub_levels(const quant_block_q3_K *blk, int j, int8_t *out)
{
    sub_levels2(blk->qs, j, out);
    const uint8_t *hm = blk->hmask + 16 * (j % 2);
    for (int i = 0; i < 16; i++)
        out[i] = (int8_t)(out[i] - ((hm[i] >> (j / 2)) & 1 ? 0 : 4));
}

static void q3_K_to_f32(const void *restrict src, float *restrict dst, size_t n)
{
    const quant_block_q3_K *blk = src;
    for (size_t b = 0; b < n / QUANT_QK_K; b++) {
        const float d = attnd_f16_to_f32(blk[b].d);
        for (int j = 0; j < SUBS; j++, dst += 16) {
            const float dl = d * (float)(q3_K_scale6(blk[b].scales, j) - 32);
            int8_t q[16];
            q3_K_sub_levels(&blk[b], j, q);
            for (int i = 0; i < 16; i++)
                dst[i] = dl * (float)q[i];
        }
    }
}

/* A signed scale with x ~ scale * L, L in -4..3, for 16 values, weighted by
 * x^2: start from the largest magnitude at level -4, then move single
 * levels while that improves the weighted fit (sum lx)^2 / sum l^2, for at
 * most 5 rounds. LEVELS come back biased to 0..7. The float operations keep
 * the reference's order. */
static float fit_scale_signed16(const float *x, int8_t *levels)
{
    enum { N = 16, NMAX = 4, ROUNDS = 5 };
    float max = 0, amax = 0;
    for (int i = 0; i < N; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax < 1e-15f) {
        memset(levels, 0, N);
        return 0.0f;
    }
    const float inv = (float)-NMAX / max;
    float sum_lx = 0, sum_l2 = 0;
    for (int i = 0; i < N; i++) {
        const int l = clamp_int(round_even(inv * x[i]), -NMAX, NMAX - 1);
        const float w = x[i] * x[i];
        levels[i] = (int8_t)l;
        sum_lx += w * x[i] * (float)l;
        sum_l2 += w * (float)l * (float)l;
    }
    for (int round = 0; round < ROUNDS; round++) {
        int changed = 0;
        for (int i = 0; i < N; i++) {
            const float w = x[i] * x[i];
            float slx = sum_lx - w * x[i] * (float)levels[i];
            if (!(slx > 0))
                continue;
            float sl2 = sum_l2 - w * (float)levels[i] * (float)levels[i];
            const int l = clamp_int(round_even(x[i] * sl2 / slx), -NMAX, NMAX - 1);
            if (l == levels[i])
                continue;
            slx += w * x[i] * (float)l;
            sl2 += w * (float)l * (float)l;
            if (sl2 > 0 && slx * slx * sum_l2 > sum_lx * sum_lx * sl2) {
                levels[i] = (int8_t)l;
                sum_lx = slx;
                sum_l2 = sl2;
                changed++;
            }
        }
        if (!changed)
            break;
    }
    for (int i = 0; i < N; i++)
        levels[i] = (int8_t)(levels[i] + NMAX);
    return sum_lx / sum_l2;
}

static void q3_K_quantize_block(const float *x, quant_block_q3_K *y)
{
    int8_t levels[QUANT_QK_K];
    float scale[SUBS], max_scale = 0, amax = 0;
    for (int j = 0; j < SUBS; j++) {
        scale[j] = fit_scale_signed16(x + 16 * j, levels + 16 * j);
        if (fabsf(scale[j]) > amax) {
            amax = fabsf(scale[j]);
            max_scale = scale[j];
        }
    }
    /* the largest scale maps to -32, so both signs fit the 6-bit range */
    memset(y->scales, 0, sizeof y->scales);
    y->d = attnd_f32_to_f16(0.0f);
    if (max_scale != 0) {
        const float inv = -32.0f / max_scale;
        for (int j = 0; j < SUBS; j++)
            q3_K_set_scale6(y->scales, j, clamp_int(round_even(inv * scale[j]), -32, 31) + 32);
        y->d = attnd_f32_to_f16(1 / inv);
    }
    /* levels again for the scales as stored; a zero scale keeps the fit's */
    for (int j = 0; j < SUBS; j++) {
        const float d = attnd_f16_to_f32(y->d) * (float)(q3_K_scale6(y->scales, j) - 32);
        if (d == 0)
            continue;
        for (int i = 16 * j; i < 16 * j + 16; i++)
            levels[i] = (int8_t)(clamp_int(round_even(x[i] / d), -4, 3) + 4);
    }
    uint8_t low[QUANT_QK_K];
    memset(y->hmask, 0, sizeof y->hmask);
    for (int e = 0; e < QUANT_QK_K; e++) {
        if (levels[e] > 3)
            y->hmask[e % 32] |= (uint8_t)(1u << (e / 32));
        low[e] = (uint8_t)(levels[e] & 3);
    }
    pack_levels2(low, y->qs);
}

static void q3_K_from_f32(const float *restrict src, void *restrict dst, size_t n)
{
    quant_block_q3_K *blk = dst;
    for (size_t b = 0; b < n / QUANT_QK_K; b++)
        q3_K_quantize_block(src + b * QUANT_QK_K, &blk[b]);
}

/* Per block: sum over sub-blocks of (s - 32) * (q . x) in integers (at most
 * 2^22 in magnitude, so exact as a float), then the two scales. */
static void q3_K_dot_ref(uint32_t n, const void *restrict w, const void *restrict x,
                         size_t x_stride, uint32_t nx, float *restrict out)
{
    const quant_block_q3_K *wb = w;
    for (uint32_t m = 0; m < nx; m++)
        out[m] = 0.0f;
    for (size_t b = 0; b < n / QUANT_QK_K; b++) {
        int8_t q[QUANT_QK_K];
        int scale[SUBS];
        for (int j = 0; j < SUBS; j++) {
            q3_K_sub_levels(&wb[b], j, q + 16 * j);
            scale[j] = q3_K_scale6(wb[b].scales, j) - 32;
        }
        const float d = attnd_f16_to_f32(wb[b].d);
        for (uint32_t m = 0; m < nx; m++) {
            const quant_block_q8_K *xb = quant_act_q8_K(x, x_stride, m, b);
            int32_t sum = 0;
            for (int j = 0; j < SUBS; j++) {
                int32_t s = 0;
                for (int i = 16 * j; i < 16 * j + 16; i++)
                    s += q[i] * xb->qs[i];
                sum += scale[j] * s;
            }
            out[m] += d * xb->d * (float)sum;
        }
    }
}

static size_t q3_K_find_bad_scale(const void *blocks, size_t n_blocks)
{
    const quant_block_q3_K *blk = blocks;
    for (size_t b = 0; b < n_blocks; b++)
        if (!quant_half_finite(blk[b].d))
            return b;
    return n_blocks;
}

/* ------------------------------------------------------------------ traits */

#ifdef ATTND_HAVE_X86
#define K_LOW_DOTS(T)                                                                              \
    {[QUANT_ISA_SCALAR] = T##_dot_ref, [QUANT_ISA_AVX2] = quant_##T##_dot_avx2,                    \
     [QUANT_ISA_AVX512] = quant_##T##_dot_avx512}
#else
#define K_LOW_DOTS(T) {[QUANT_ISA_SCALAR] = T##_dot_ref}
#endif

const quant_traits quant_traits_q2_K = {
    .type = GGUF_DTYPE_Q2_K, .act_type = GGUF_DTYPE_Q8_K,
    .to_f32 = q2_K_to_f32, .from_f32 = q2_K_from_f32,
    .dot = K_LOW_DOTS(q2_K), .find_bad_scale = q2_K_find_bad_scale,
};
const quant_traits quant_traits_q3_K = {
    .type = GGUF_DTYPE_Q3_K, .act_type = GGUF_DTYPE_Q8_K,
    .to_f32 = q3_K_to_f32, .from_f32 = q3_K_from_f32,
    .dot = K_LOW_DOTS(q3_K), .find_bad_scale = q3_K_find_bad_scale,
};
