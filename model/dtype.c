/* dtype.c - scalar reference conversions for tensor element types (dtype.h). */
#include "dtype.h"

#include <math.h>
#include <string.h>

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float dtype_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) /* inf or NaN */
        return bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24 */
        float v = ldexpf((float)man, -24);
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t dtype_f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t abs = u & 0x7fffffffu;
    if (abs >= 0x7f800000u) /* inf or NaN (keep NaN quiet) */
        return (uint16_t)(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
    if (abs >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00u);
    if (abs < 0x38800000u) {
        /* result is subnormal in half: round(|f| * 2^24) */
        float a = bits_f32(abs);
        float r = nearbyintf(a * 16777216.0f); /* default rounding: nearest even */
        return (uint16_t)(sign | (uint16_t)r);
    }
    /* normal: rebias exponent, round mantissa to 10 bits, nearest even */
    uint32_t mant_odd = (abs >> 13) & 1u;
    abs += 0xfffu + mant_odd;
    abs -= 112u << 23;
    return (uint16_t)(sign | (abs >> 13));
}

float dtype_bf16_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

uint16_t dtype_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static void quantize_q8_0(const float *x, dtype_q8_0 *y, size_t n)
{
    for (size_t b = 0; b < n / DTYPE_QK8_0; b++) {
        const float *xb = x + b * DTYPE_QK8_0;
        float amax = 0.0f;
        for (int i = 0; i < DTYPE_QK8_0; i++)
            amax = fmaxf(amax, fabsf(xb[i]));
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = dtype_f32_to_f16(d);
        for (int i = 0; i < DTYPE_QK8_0; i++)
            y[b].qs[i] = (int8_t)roundf(xb[i] * id);
    }
}

int dtype_from_f32(gguf_dtype type, const float *src, void *dst, size_t n)
{
    switch (type) {
    case GGUF_DTYPE_F32:
        memcpy(dst, src, n * sizeof(float));
        return 0;
    case GGUF_DTYPE_F16: {
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++)
            d[i] = dtype_f32_to_f16(src[i]);
        return 0;
    }
    case GGUF_DTYPE_BF16: {
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++)
            d[i] = dtype_f32_to_bf16(src[i]);
        return 0;
    }
    case GGUF_DTYPE_Q8_0:
        if (n % DTYPE_QK8_0 != 0)
            return -1;
        quantize_q8_0(src, dst, n);
        return 0;
    default:
        return -1;
    }
}

int dtype_to_f32(gguf_dtype type, const void *src, float *dst, size_t n)
{
    switch (type) {
    case GGUF_DTYPE_F32:
        memcpy(dst, src, n * sizeof(float));
        return 0;
    case GGUF_DTYPE_F16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++)
            dst[i] = dtype_f16_to_f32(s[i]);
        return 0;
    }
    case GGUF_DTYPE_BF16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++)
            dst[i] = dtype_bf16_to_f32(s[i]);
        return 0;
    }
    case GGUF_DTYPE_Q8_0: {
        if (n % DTYPE_QK8_0 != 0)
            return -1;
        const dtype_q8_0 *s = src;
        for (size_t b = 0; b < n / DTYPE_QK8_0; b++) {
            float d = dtype_f16_to_f32(s[b].d);
            for (int i = 0; i < DTYPE_QK8_0; i++)
                dst[b * DTYPE_QK8_0 + (size_t)i] = d * (float)s[b].qs[i];
        }
        return 0;
    }
    default:
        return -1;
    }
}
