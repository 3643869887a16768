/* dtype.c - scalar reference conversions for tensor element types (dtype.h). */
#include "dtype.h"

#include "attnd_half.h"

#include <math.h>
#include <string.h>

static void quantize_q8_0(const float *x, dtype_q8_0 *y, size_t n)
{
    for (size_t b = 0; b < n / DTYPE_QK8_0; b++) {
        const float *xb = x + b * DTYPE_QK8_0;
        float amax = 0.0f;
        for (int i = 0; i < DTYPE_QK8_0; i++)
            amax = fmaxf(amax, fabsf(xb[i]));
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = attnd_f32_to_f16(d);
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
            d[i] = attnd_f32_to_f16(src[i]);
        return 0;
    }
    case GGUF_DTYPE_BF16: {
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++)
            d[i] = attnd_f32_to_bf16(src[i]);
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
    case GGUF_DTYPE_F16:
        attnd_f16_to_f32_row(src, dst, n);
        return 0;
    case GGUF_DTYPE_BF16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++)
            dst[i] = attnd_bf16_to_f32(s[i]);
        return 0;
    }
    case GGUF_DTYPE_Q8_0: {
        if (n % DTYPE_QK8_0 != 0)
            return -1;
        const dtype_q8_0 *s = src;
        for (size_t b = 0; b < n / DTYPE_QK8_0; b++) {
            float d = attnd_f16_to_f32(s[b].d);
            for (int i = 0; i < DTYPE_QK8_0; i++)
                dst[b * DTYPE_QK8_0 + (size_t)i] = d * (float)s[b].qs[i];
        }
        return 0;
    }
    default:
        return -1;
    }
}
