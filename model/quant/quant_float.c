/* quant_float.c - the float element types (F32, F16, BF16): conversions
 * only. matmul multiplies them as floats (sgemm or fused convert-and-dot),
 * so they have no integer dot kernel and no scale to check. */
#include "quant_internal.h"

#include <string.h>

#include "attnd_half.h"

static void f32_to_f32(const void *restrict src, float *restrict dst, size_t n)
{
    memcpy(dst, src, n * sizeof *dst);
}

static void f32_from_f32(const float *restrict src, void *restrict dst, size_t n)
{
    memcpy(dst, src, n * sizeof *src);
}

static void f16_to_f32(const void *restrict src, float *restrict dst, size_t n)
{
    attnd_f16_to_f32_row(src, dst, n);
}

static void f16_from_f32(const float *restrict src, void *restrict dst, size_t n)
{
    uint16_t *d = dst;
    for (size_t i = 0; i < n; i++)
        d[i] = attnd_f32_to_f16(src[i]);
}

static void bf16_to_f32(const void *restrict src, float *restrict dst, size_t n)
{
    const uint16_t *s = src;
    for (size_t i = 0; i < n; i++)
        dst[i] = attnd_bf16_to_f32(s[i]);
}

static void bf16_from_f32(const float *restrict src, void *restrict dst, size_t n)
{
    uint16_t *d = dst;
    for (size_t i = 0; i < n; i++)
        d[i] = attnd_f32_to_bf16(src[i]);
}

const quant_traits quant_traits_f32 = {
    .type = GGUF_DTYPE_F32, .act_type = GGUF_DTYPE_F32,
    .to_f32 = f32_to_f32, .from_f32 = f32_from_f32,
};
const quant_traits quant_traits_f16 = {
    .type = GGUF_DTYPE_F16, .act_type = GGUF_DTYPE_F32,
    .to_f32 = f16_to_f32, .from_f32 = f16_from_f32,
};
const quant_traits quant_traits_bf16 = {
    .type = GGUF_DTYPE_BF16, .act_type = GGUF_DTYPE_F32,
    .to_f32 = bf16_to_f32, .from_f32 = bf16_from_f32,
};
