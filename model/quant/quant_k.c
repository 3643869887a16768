/* quant_k.c - the K-quants Q4_K, Q5_K, Q6_K and Q8_K, the activation format
 * they are dotted with: dequantization, the weight quantizers, the scalar
 * reference dots and the scale checks. A K-quant block ("super-block") holds
 * 256 weights in sub-blocks of 32 (Q4_K, Q5_K: a 6-bit scale and a 6-bit min
 * each, both relative to the block's half d and dmin) or 16 (Q6_K: an int8
 * scale each, relative to d). The x86 kernels are in quant_k_x86.c.
 *
 * Everything follows ggml's layouts and arithmetic: files we write load in
 * llama.cpp, dequantization gives its bits, and our Q8_K activations are the
 * ones it computes with. */
#include "quant_internal.h"

#include <string.h>

#include "attnd_half.h"
#include "attnd_simd.h"
#include "quant_k_x86.h"

#define QK QUANT_QK_K

/* ggml skips sub-blocks whose largest |x| is below this (all zero in practice). */
#define GROUP_EPS 1e-15f

/* Round to nearest, ties to even, as ggml rounds in its K-quant code (so our
 * choices fall the same way on ties): adding 1.5 * 2^23 leaves the integer
 * in the mantissa's low bits. Exact for |v| < 2^22; outside (only for
 * NaN or inf input) it gives a garbage value, the same one ggml gets. */
static inline int round_even(float v)
{
    const float biased = v + 12582912.0f;
    int32_t bits;
    memcpy(&bits, &biased, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

static inline int clamp_int(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}


/* ---- Q8_K -------------------------------------------------------------- */

/* ggml's quantize_row_q8_K_ref: the element of largest magnitude (the first
 * of equals) maps to -127 exactly, whatever its sign, and d = 1 / iscale
 * (not max / -127: the bits differ). A zero block stays all zero. */
static void q8_K_from_f32(const float *restrict src, void *restrict dst, size_t n)
{
    quant_block_q8_K *y = dst;
    for (size_t b = 0; b < n / QK; b++, src += QK) {
        memset(&y[b], 0, sizeof y[b]);
        float amax = 0.0f, max = 0.0f;
        for (int i = 0; i < QK; i++) {
            if (fabsf(src[i]) > amax) {
                amax = fabsf(src[i]);
                max = src[i];
            }
        }
        if (amax == 0.0f)
            continue;
        const float iscale = -127.0f / max;
        for (int i = 0; i < QK; i++) {
            const int q = round_even(iscale * src[i]);
            y[b].qs[i] = (int8_t)(q < 127 ? q : 127);
        }
        for (int g = 0; g < QK / 16; g++) {
            int sum = 0;
            for (int i = 0; i < 16; i++)
                sum += y[b].qs[16 * g + i];
            y[b].bsums[g] = (int16_t)sum;
        }
        y[b].d = 1.0f / iscale;
    }
}

static void q8_K_to_f32(const void *restrict src, float *restrict dst, size_t n)
{
    const quant_block_q8_K *x = src;
    for (size_t b = 0; b < n / QK; b++)
        for (int i = 0; i < QK; i++)
            *dst++ = x[b].d * (float)x[b].qs[i];
}

static size_t q8_K_find_bad_scale(const void *blocks, size_t n_blocks)
{
    const quant_block_q8_K *x = blocks;
    for (size_t b = 0; b < n_blocks; b++)
        if (!isfinite(x[b].d))
            return b;
    return n_blocks;
}

/* ---- Q4_K and Q5_K: 8 sub-blocks of 32, x = d * sc * q - dmin * m ------- */

/* The 6-bit scale and min of sub-block J from the 12 packed bytes: sub-blocks
 * 0-3 sit in the low 6 bits of bytes 0-3 (scales) and 4-7 (mins); 4-7 keep
 * their low 4 bits in bytes 8-11 and their top 2 in the spare top bits of
 * bytes 0-3 (scales) and 4-7 (mins). */
static void unpack_scale_min(int j, const uint8_t *packed, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = packed[j] & 63;
        *m = packed[j + 4] & 63;
    } else {
        *sc = (uint8_t)((packed[j + 4] & 0x0f) | ((packed[j - 4] >> 6) << 4));
        *m = (uint8_t)((packed[j + 4] >> 4) | ((packed[j] >> 6) << 4));
    }
}

static void pack_scale_min(int j, uint8_t sc, uint8_t m, uint8_t *packed)
{
    if (j < 4) {
        packed[j] = sc;
        packed[j + 4] = m;
    } else {
        packed[j + 4] = (uint8_t)((sc & 0x0f) | ((m & 0x0f) << 4));
        packed[j - 4] |= (uint8_t)((sc >> 4) << 6);
        packed[j] |= (uint8_t)((m >> 4) << 6);
    }
}

/* The scale s and min -MIN (min <= 0) that fit the 32 values X as
 * s * L + min with integer levels L in [0, NMAX], minimizing the W-weighted
 * squared error: ggml's make_qkx2_quants search. Start from the range
 * (min..max), then try NSTEP + 1 other level counts around NMAX; for each,
 * round, and solve the weighted least squares for the best (s, min) given
 * those levels. L gets the levels of the best fit. The float operations are
 * ggml's, in its order, so our files equal llama-quantize's. */
static float fit_scale_min(const float *x, const float *w, int nmax, float rmin, float rdelta,
                           int nstep, uint8_t *L, float *neg_min)
{
    enum { N = 32 };
    float min = x[0], max = x[0];
    float sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < N; i++) {
        if (x[i] < min)
            min = x[i];
        if (x[i] > max)
            max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0)
        min = 0;
    if (max == min) {
        memset(L, 0, N);
        *neg_min = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1 / iscale;
    float best_err = 0;
    for (int i = 0; i < N; i++) {
        L[i] = (uint8_t)clamp_int(round_even(iscale * (x[i] - min)), 0, nmax);
        const float diff = scale * L[i] + min - x[i];
        best_err += w[i] * (diff * diff);
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        uint8_t Ltry[N];
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < N; i++) {
            const int l = clamp_int(round_even(iscale * (x[i] - min)), 0, nmax);
            Ltry[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)l * (float)l;
            sum_xl += w[i] * (float)l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0;
            for (int i = 0; i < N; i++) {
                const float diff = this_scale * Ltry[i] + this_min - x[i];
                err += w[i] * (diff * diff);
            }
            if (err < best_err) {
                memcpy(L, Ltry, N);
                best_err = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *neg_min = -min;
    return scale;
}

/* One Q4_K/Q5_K super-block (ggml's quantize_row_q{4,5}_K_ref without an
 * importance matrix): each sub-block's scale and min fitted with weights
 * |x| + rms(x), both rounded to 6 bits against the block's largest, then
 * every level re-rounded against the rounded scale and min. L gets the
 * levels (0..NMAX) in element order. */
static void quantize_scale_min_block(const float *x, int nmax, float rmin, int nstep,
                                     uint8_t scales[12], uint16_t *d, uint16_t *dmin,
                                     uint8_t L[QK])
{
    float sub_scale[QK / 32], sub_min[QK / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK / 32; j++) {
        const float *xj = x + 32 * j;
        float sum_x2 = 0;
        for (int i = 0; i < 32; i++)
            sum_x2 += xj[i] * xj[i];
        const float av_x = sqrtf(sum_x2 / 32);
        float w[32];
        for (int i = 0; i < 32; i++)
            w[i] = av_x + fabsf(xj[i]);
        sub_scale[j] = fit_scale_min(xj, w, nmax, rmin, 0.1f, nstep, L + 32 * j, &sub_min[j]);
        if (sub_scale[j] > max_scale)
            max_scale = sub_scale[j];
        if (sub_min[j] > max_min)
            max_min = sub_min[j];
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    for (int j = 0; j < QK / 32; j++) {
        /* ggml keeps the low 8 bits before clamping; the values never exceed 63 by much */
        const uint8_t ls = (uint8_t)round_even(inv_scale * sub_scale[j]);
        const uint8_t lm = (uint8_t)round_even(inv_min * sub_min[j]);
        pack_scale_min(j, ls < 63 ? ls : 63, lm < 63 ? lm : 63, scales);
    }
    *d = attnd_f32_to_f16(max_scale / 63.0f);
    *dmin = attnd_f32_to_f16(max_min / 63.0f);
    for (int j = 0; j < QK / 32; j++) {
        uint8_t sc, m;
        unpack_scale_min(j, scales, &sc, &m);
        const float dj = attnd_f16_to_f32(*d) * sc;
        if (dj == 0.0f)
            continue; /* the fit's levels stay: ggml's choice, kept for equal files */
        const float mj = attnd_f16_to_f32(*dmin) * m;
        for (int i = 0; i < 32; i++)
            L[32 * j + i] = (uint8_t)clamp_int(round_even((x[32 * j + i] + mj) / dj), 0, nmax);
    }
}

/* Elements 64c..64c+31 are the low nibbles of qs[32c..32c+31], 64c+32..64c+63
 * the high nibbles. */
static void q4_K_levels(const quant_block_q4_K *b, uint8_t q[QK])
{
    for (int c = 0; c < QK / 64; c++)
        for (int l = 0; l < 32; l++) {
            q[64 * c + l] = b->qs[32 * c + l] & 0x0f;
            q[64 * c + 32 + l] = b->qs[32 * c + l] >> 4;
        }
}

/* Q4_K's nibbles plus a fifth bit: bit 2c of qh[l] for element 64c + l,
 * bit 2c + 1 for element 64c + 32 + l. */
static void q5_K_levels(const quant_block_q5_K *b, uint8_t q[QK])
{
    for (int c = 0; c < QK / 64; c++)
        for (int l = 0; l < 32; l++) {
            const uint8_t h = b->qh[l];
            q[64 * c + l] = (uint8_t)((b->qs[32 * c + l] & 0x0f) | (((h >> (2 * c)) & 1) << 4));
            q[64 * c + 32 + l] = (uint8_t)((b->qs[32 * c + l] >> 4) | (((h >> (2 * c + 1)) & 1) << 4));
        }
}

static void q4_K_from_f32(const float *restrict src, void *restrict dst, size_t n)
{
    quant_block_q4_K *y = dst;
    for (size_t b = 0; b < n / QK; b++, src += QK) {
        uint8_t L[QK];
        quantize_scale_min_block(src, 15, -1.0f, 20, y[b].scales, &y[b].d, &y[b].dmin, L);
        for (int c = 0; c < QK / 64; c++)
            for (int l = 0; l < 32; l++)
                y[b].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
}

static void q5_K_from_f32(const float *restrict src, void *restrict dst, size_t n)
{
    quant_block_q5_K *y = dst;
    for (size_t b = 0; b < n / QK; b++, src += QK) {
        uint8_t L[QK];
        quantize_scale_min_block(src, 31, -0.5f, 15, y[b].scales, &y[b].d, &y[b].dmin, L);
        memset(y[b].qh, 0, sizeof y[b].qh);
        for (int c = 0; c < QK / 64; c++)
            for (int l = 0; l < 32; l++) {
                const uint8_t lo = L[64 * c + l], hi = L[64 * c + 32 + l];
                y[b].qs[32 * c + l] = (uint8_t)((lo & 0x0f) | ((hi & 0x0f) << 4));
                y[b].qh[l] |= (uint8_t)(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
            }
    }
}

/* ggml's operation order: (d * sc) * q - (dmin * m). */
static void scale_min_to_f32(const uint8_t q[QK], const uint8_t scales[12], uint16_t dh,
                             uint16_t dminh, float *dst)
{
    const float d = attnd_f16_to_f32(dh), dmin = attnd_f16_to_f32(dminh);
    for (int j = 0; j < QK / 32; j++) {
        uint8_t sc, m;
        unpack_scale_min(j, scales, &sc, &m);
        const float dj = d * sc, mj = dmin * m;
        for (int i = 0; i < 32; i++)
            dst[32 * j + i] = dj * q[32 * j + i] - mj;
    }
}

static void q4_K_to_f32(const void *restrict src, float *restrict dst, size_t n)
{
    const quant_block_q4_K *x = src;
    for (size_t b = 0; b < n / QK; b++) {
        uint8_t q[QK];
        q4_K_levels(&x[b], q);
        scale_min_to_f32(q, x[b].scales, x[b].d, x[b].dmin, dst + b * QK);
    }
}

static void q5_K_to_f32(const void *restrict src, float *restrict dst, size_t n)
{
    const quant_block_q5_K *x = src;
    for (size_t b = 0; b < n / QK; b++) {
        uint8_t q[QK];
        q5_K_levels(&x[b], q);
        scale_min_to_f32(q, x[b].scales, x[b].d, x[b].dmin, dst + b * QK);
    }
}

/* One super-block against one Q8_K block: the scaled sum
 * sum_j sc_j * (q_j . x_j) and the min term sum_j m_j * sum(x_j) (from the
 * activation's 16-element sums) are exact integers; the float scales come
 * last. */
static float scale_min_block_dot(const uint8_t q[QK], const uint8_t scales[12], uint16_t dh,
                                 uint16_t dminh, const quant_block_q8_K *xb)
{
    int32_t sum_q = 0, sum_m = 0;
    for (int j = 0; j < QK / 32; j++) {
        uint8_t sc, m;
        unpack_scale_min(j, scales, &sc, &m);
        int32_t dot = 0;
        for (int i = 0; i < 32; i++)
            dot += q[32 * j + i] * xb->qs[32 * j + i];
        sum_q += sc * dot;
        sum_m += m * (xb->bsums[2 * j] + xb->bsums[2 * j + 1]);
    }
    return xb->d * attnd_f16_to_f32(dh) * (float)sum_q -
           xb->d * attnd_f16_to_f32(dminh) * (float)sum_m;
}

static void q4_K_dot(uint32_t n, const void *restrict w, const void *restrict x, size_t x_stride,
                     uint32_t nx, float *restrict out)
{
    const quant_block_q4_K *wb = w;
    float acc[4] = {0};
    for (uint32_t b = 0; b < n / QK; b++) {
        uint8_t q[QK];
        q4_K_levels(&wb[b], q);
        for (uint32_t m = 0; m < nx; m++)
            acc[m] += scale_min_block_dot(q, wb[b].scales, wb[b].d, wb[b].dmin,
                                          quant_act_q8_K(x, x_stride, m, b));
    }
    for (uint32_t m = 0; m < nx; m++)
        out[m] = acc[m];
}

static void q5_K_dot(uint32_t n, const void *restrict w, const void *restrict x, size_t x_stride,
                     uint32_t nx, float *restrict out)
{
    const quant_block_q5_K *wb = w;
    float acc[4] = {0};
    for (uint32_t b = 0; b < n / QK; b++) {
        uint8_t q[QK];
        q5_K_levels(&wb[b], q);
        for (uint32_t m = 0; m < nx; m++)
            acc[m] += scale_min_block_dot(q, wb[b].scales, wb[b].d, wb[b].dmin,
                                          quant_act_q8_K(x, x_stride, m, b));
    }
    for (uint32_t m = 0; m < nx; m++)
        out[m] = acc[m];
}

static size_t q4_K_find_bad_scale(const void *blocks, size_t n_blocks)
{
    const quant_block_q4_K *x = blocks;
    for (size_t b = 0; b < n_blocks; b++)
        if (!quant_half_finite(x[b].d) || !quant_half_finite(x[b].dmin))
            return b;
    return n_blocks;
}

static size_t q5_K_find_bad_scale(const void *blocks, size_t n_blocks)
{
    const quant_block_q5_K *x = blocks;
    for (size_t b = 0; b < n_blocks; b++)
        if (!quant_half_finite(x[b].d) || !quant_half_finite(x[b].dmin))
            return b;
    return n_blocks;
}

/* ---- Q6_K: 16 sub-blocks of 16, x = d * sc * (q - 32) ----------------- */

/* The scale s fitting the 16 values X as s * l, l in [-NMAX, NMAX - 1],
 * minimizing the x^2-weighted squared error: ggml's make_qx_quants (its
 * rmse_type 1, no importance weights). Start from the largest magnitude
 * mapping to -NMAX, try 18 nearby level counts, keep the best least-squares
 * scale. L gets l + NMAX. ggml's float operations in its order. */
static float fit_scale_signed(const float *x, int nmax, int8_t *L)
{
    enum { N = 16 };
    float amax = 0, max = 0;
    for (int i = 0; i < N; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax < GROUP_EPS) {
        memset(L, 0, N);
        return 0.0f;
    }
    float iscale = (float)-nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < N; i++) {
        const int l = clamp_int(round_even(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0)
            continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < N; i++) {
            const int l = clamp_int(round_even(iscale * x[i]), -nmax, nmax - 1);
            const float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < N; i++)
                L[i] = (int8_t)(nmax + clamp_int(round_even(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Element 128h + 32s + l (s = 0..3, l = 0..31): low 4 bits from
 * ql[64h + l] (s = 0, 2: low, high nibble) or ql[64h + 32 + l] (s = 1, 3),
 * top 2 bits from bits 2s, 2s + 1 of qh[32h + l]. */
static void q6_K_levels(const quant_block_q6_K *b, int8_t q[QK])
{
    for (int h = 0; h < QK / 128; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        int8_t *qo = q + 128 * h;
        for (int l = 0; l < 32; l++) {
            qo[l] = (int8_t)(((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32);
            qo[l + 32] = (int8_t)(((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32);
            qo[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            qo[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
}

/* ggml's quantize_row_q6_K_ref: sub-block scales fitted, then quantized to
 * int8 against the largest (which maps to -128), then every level
 * re-rounded against its int8 scale. */
static void q6_K_from_f32(const float *restrict src, void *restrict dst, size_t n)
{
    quant_block_q6_K *y = dst;
    for (size_t b = 0; b < n / QK; b++, src += QK) {
        int8_t L[QK];
        float sub_scale[QK / 16];
        float max_scale = 0, max_abs_scale = 0;
        for (int j = 0; j < QK / 16; j++) {
            sub_scale[j] = fit_scale_signed(src + 16 * j, 32, L + 16 * j);
            if (fabsf(sub_scale[j]) > max_abs_scale) {
                max_abs_scale = fabsf(sub_scale[j]);
                max_scale = sub_scale[j];
            }
        }
        memset(&y[b], 0, sizeof y[b]);
        if (max_abs_scale < GROUP_EPS)
            continue;
        const float iscale = -128.0f / max_scale;
        y[b].d = attnd_f32_to_f16(1 / iscale);
        for (int j = 0; j < QK / 16; j++) {
            const int s = round_even(iscale * sub_scale[j]);
            y[b].scales[j] = (int8_t)(s < 127 ? s : 127);
        }
        for (int j = 0; j < QK / 16; j++) {
            const float dj = attnd_f16_to_f32(y[b].d) * y[b].scales[j];
            if (dj == 0.0f)
                continue; /* the fit's levels stay, as in ggml */
            for (int i = 0; i < 16; i++)
                L[16 * j + i] =
                    (int8_t)(clamp_int(round_even(src[16 * j + i] / dj), -32, 31) + 32);
        }
        for (int h = 0; h < QK / 128; h++) {
            uint8_t *ql = y[b].ql + 64 * h, *qh = y[b].qh + 32 * h;
            const uint8_t *Lh = (const uint8_t *)L + 128 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lh[l] & 0x0f) | ((Lh[l + 64] & 0x0f) << 4));
                ql[l + 32] = (uint8_t)((Lh[l + 32] & 0x0f) | ((Lh[l + 96] & 0x0f) << 4));
                qh[l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) |
                                  ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
            }
        }
    }
}

/* ggml's operation order: (d * sc) * q. */
static void q6_K_to_f32(const void *restrict src, float *restrict dst, size_t n)
{
    const quant_block_q6_K *x = src;
    for (size_t b = 0; b < n / QK; b++) {
        int8_t q[QK];
        q6_K_levels(&x[b], q);
        const float d = attnd_f16_to_f32(x[b].d);
        for (int i = 0; i < QK; i++)
            *dst++ = d * x[b].scales[i / 16] * q[i];
    }
}

static void q6_K_dot(uint32_t n, const void *restrict w, const void *restrict x, size_t x_stride,
                     uint32_t nx, float *restrict out)
{
    const quant_block_q6_K *wb = w;
    float acc[4] = {0};
    for (uint32_t b = 0; b < n / QK; b++) {
        int8_t q[QK];
        q6_K_levels(&wb[b], q);
        const float d = attnd_f16_to_f32(wb[b].d);
        for (uint32_t m = 0; m < nx; m++) {
            const quant_block_q8_K *xb = quant_act_q8_K(x, x_stride, m, b);
            int32_t sum = 0;
            for (int j = 0; j < QK / 16; j++) {
                int32_t dot = 0;
                for (int i = 0; i < 16; i++)
                    dot += q[16 * j + i] * xb->qs[16 * j + i];
                sum += wb[b].scales[j] * dot;
            }
            acc[m] += xb->d * d * (float)sum;
        }
    }
    for (uint32_t m = 0; m < nx; m++)
        out[m] = acc[m];
}

static size_t q6_K_find_bad_scale(const void *blocks, size_t n_blocks)
{
    const quant_block_q6_K *x = blocks;
    for (size_t b = 0; b < n_blocks; b++)
        if (!quant_half_finite(x[b].d))
            return b;
    return n_blocks;
}

/* ---- the table's entries ---------------------------------------------- */

#ifdef ATTND_HAVE_X86
#define K_DOTS(t) {[QUANT_ISA_SCALAR] = t##_dot, [QUANT_ISA_AVX2] = quant_##t##_dot_avx2, \
                   [QUANT_ISA_AVX512] = quant_##t##_dot_avx512}
#else
#define K_DOTS(t) {[QUANT_ISA_SCALAR] = t##_dot}
#endif

const quant_traits quant_traits_q4_K = {
    .type = GGUF_DTYPE_Q4_K, .act_type = GGUF_DTYPE_Q8_K,
    .to_f32 = q4_K_to_f32, .from_f32 = q4_K_from_f32,
    .dot = K_DOTS(q4_K), .find_bad_scale = q4_K_find_bad_scale,
};
const quant_traits quant_traits_q5_K = {
    .type = GGUF_DTYPE_Q5_K, .act_type = GGUF_DTYPE_Q8_K,
    .to_f32 = q5_K_to_f32, .from_f32 = q5_K_from_f32,
    .dot = K_DOTS(q5_K), .find_bad_scale = q5_K_find_bad_scale,
};
const quant_traits quant_traits_q6_K = {
    .type = GGUF_DTYPE_Q6_K, .act_type = GGUF_DTYPE_Q8_K,
    .to_f32 = q6_K_to_f32, .from_f32 = q6_K_from_f32,
    .dot = K_DOTS(q6_K), .find_bad_scale = q6_K_find_bad_scale,
};
const quant_traits quant_traits_q8_K = {
    .type = GGUF_DTYPE_Q8_K, .act_type = GGUF_DTYPE_Q8_K,
    .to_f32 = q8_K_to_f32, .from_f32 = q8_K_from_f32,
#ifdef ATTND_HAVE_X86
    .quantize_act = {[QUANT_ISA_AVX2] = quant_q8_K_quantize_avx2,
                     [QUANT_ISA_AVX512] = quant_q8_K_quantize_avx512},
#endif
    .find_bad_scale = q8_K_find_bad_scale,
};
