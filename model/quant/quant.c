/* quant.c - the weight-type table indexed by type id, ISA selection, and the
 * whole-row entry points (quant.h). */
#include "quant_internal.h"

#include "attnd_simd.h"

static const quant_traits *const k_table[GGUF_DTYPE_COUNT_] = {
    [GGUF_DTYPE_F32] = &quant_traits_f32,       [GGUF_DTYPE_F16] = &quant_traits_f16,
    [GGUF_DTYPE_BF16] = &quant_traits_bf16,     [GGUF_DTYPE_Q4_0] = &quant_traits_q4_0,
    [GGUF_DTYPE_Q4_1] = &quant_traits_q4_1,     [GGUF_DTYPE_Q5_0] = &quant_traits_q5_0,
    [GGUF_DTYPE_Q5_1] = &quant_traits_q5_1,     [GGUF_DTYPE_Q8_0] = &quant_traits_q8_0,
    [GGUF_DTYPE_Q8_1] = &quant_traits_q8_1,     [GGUF_DTYPE_Q2_K] = &quant_traits_q2_K,
    [GGUF_DTYPE_Q3_K] = &quant_traits_q3_K,     [GGUF_DTYPE_Q4_K] = &quant_traits_q4_K,
    [GGUF_DTYPE_Q5_K] = &quant_traits_q5_K,     [GGUF_DTYPE_Q6_K] = &quant_traits_q6_K,
    [GGUF_DTYPE_Q8_K] = &quant_traits_q8_K,     [GGUF_DTYPE_IQ4_NL] = &quant_traits_iq4_nl,
    [GGUF_DTYPE_IQ4_XS] = &quant_traits_iq4_xs,
};

_Static_assert(sizeof(quant_block_q4_0) == 18 && sizeof(quant_block_q4_1) == 20 &&
                   sizeof(quant_block_q5_0) == 22 && sizeof(quant_block_q5_1) == 24 &&
                   sizeof(quant_block_q8_0) == 34 && sizeof(quant_block_q8_1) == 36,
               "legacy block sizes as ggml defines them");
_Static_assert(sizeof(quant_block_q2_K) == 84 && sizeof(quant_block_q3_K) == 110 &&
                   sizeof(quant_block_q4_K) == 144 && sizeof(quant_block_q5_K) == 176 &&
                   sizeof(quant_block_q6_K) == 210 && sizeof(quant_block_q8_K) == 292,
               "K-quant block sizes as ggml defines them");
_Static_assert(sizeof(quant_block_iq4_nl) == 18 && sizeof(quant_block_iq4_xs) == 136,
               "IQ4 block sizes as ggml defines them");

const quant_traits *quant_traits_of(gguf_dtype t)
{
    if ((unsigned)t >= GGUF_DTYPE_COUNT_ || !k_table[t] || !k_table[t]->to_f32)
        return NULL;
    return k_table[t];
}

quant_isa quant_best_isa(void)
{
    if (attnd_cpu_avx512_vnni())
        return QUANT_ISA_AVX512;
    return attnd_cpu_avx2() ? QUANT_ISA_AVX2 : QUANT_ISA_SCALAR;
}

const char *quant_isa_name(quant_isa isa)
{
    switch (isa) {
    case QUANT_ISA_AVX2: return "avx2";
    case QUANT_ISA_AVX512: return "avx512";
    default: return "scalar";
    }
}

quant_dot_fn quant_dot(const quant_traits *qt, quant_isa isa)
{
    for (int i = (int)isa; i >= 0; i--)
        if (qt->dot[i])
            return qt->dot[i];
    return NULL;
}

quant_tile_fn quant_tile(const quant_traits *qt, quant_isa isa)
{
    /* only the level whose dot is used: a lower level's tile has that
     * level's bits, not the dot's */
    for (int i = (int)isa; i >= 0; i--)
        if (qt->dot[i])
            return qt->tile[i];
    return NULL;
}

quant_from_f32_fn quant_act_quantizer(const quant_traits *qt, quant_isa isa)
{
    for (int i = (int)isa; i >= 0; i--)
        if (qt->quantize_act[i])
            return qt->quantize_act[i];
    return qt->from_f32;
}

int quant_to_f32(gguf_dtype t, const void *src, float *dst, size_t n)
{
    const quant_traits *qt = quant_traits_of(t);
    if (!qt || n % gguf_dtype_block_elems(t) != 0)
        return -1;
    qt->to_f32(src, dst, n);
    return 0;
}

int quant_from_f32(gguf_dtype t, const float *src, void *dst, size_t n)
{
    const quant_traits *qt = quant_traits_of(t);
    if (!qt || !qt->from_f32 || n % gguf_dtype_block_elems(t) != 0)
        return -1;
    qt->from_f32(src, dst, n);
    return 0;
}
