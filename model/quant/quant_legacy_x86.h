/* quant_legacy_x86.h - the x86 kernels of the legacy types
 * (quant_legacy_x86.c), for quant_legacy.c's table. AVX2 kernels need
 * AVX2 + FMA + F16C, AVX512 ones AVX-512 F/BW/DQ/VL + VNNI (attnd_simd.h). */
#ifndef ATTND_QUANT_LEGACY_X86_H
#define ATTND_QUANT_LEGACY_X86_H

#include <stddef.h>
#include <stdint.h>

#include "attnd_simd.h"

#ifdef ATTND_HAVE_X86
#define QUANT_LEGACY_DOT(name)                                                                     \
    void name(uint32_t n, const void *restrict w, const void *restrict x, size_t x_stride,        \
              uint32_t nx, float *restrict out)

QUANT_LEGACY_DOT(quant_q4_0_dot_avx2);
QUANT_LEGACY_DOT(quant_q4_0_dot_avx512);
QUANT_LEGACY_DOT(quant_q4_1_dot_avx2);
QUANT_LEGACY_DOT(quant_q4_1_dot_avx512);
QUANT_LEGACY_DOT(quant_q5_0_dot_avx2);
QUANT_LEGACY_DOT(quant_q5_0_dot_avx512);
QUANT_LEGACY_DOT(quant_q5_1_dot_avx2);
QUANT_LEGACY_DOT(quant_q5_1_dot_avx512);
QUANT_LEGACY_DOT(quant_q8_0_dot_avx2);
QUANT_LEGACY_DOT(quant_q8_0_dot_avx512);
/* Q8_0 tiles with quant_q8_0_dot_avx512's bits (quant.h, quant_tile_fn). */
void quant_q8_0_tile_avx512(uint32_t n, const void *restrict w, size_t w_stride, uint32_t nw,
                            const void *restrict x, size_t x_stride, uint32_t nx,
                            float *restrict out, size_t ldo);

/* Activation quantizers, the bits of quant_legacy.c's reference ones. */
void quant_q8_0_quantize_avx2(const float *restrict src, void *restrict dst, size_t n);
void quant_q8_0_quantize_avx512(const float *restrict src, void *restrict dst, size_t n);
void quant_q8_1_quantize_avx2(const float *restrict src, void *restrict dst, size_t n);
void quant_q8_1_quantize_avx512(const float *restrict src, void *restrict dst, size_t n);
#endif

#endif
