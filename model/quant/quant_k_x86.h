/* quant_k_x86.h - the x86 kernels of quant_k.c (defined in quant_k_x86.c),
 * private to the two. Each has the signature of its table slot (quant.h);
 * the _avx2 ones run only on CPUs with AVX2 + FMA + F16C, the _avx512 ones
 * only with AVX-512 F/BW/DQ/VL + VNNI. */
#ifndef ATTND_QUANT_K_X86_H
#define ATTND_QUANT_K_X86_H

#include <stddef.h>
#include <stdint.h>

#include "attnd_simd.h"

#ifdef ATTND_HAVE_X86
void quant_q4_K_dot_avx2(uint32_t n, const void *restrict w, const void *restrict x,
                         size_t x_stride, uint32_t nx, float *restrict out);
void quant_q4_K_dot_avx512(uint32_t n, const void *restrict w, const void *restrict x,
                           size_t x_stride, uint32_t nx, float *restrict out);
void quant_q5_K_dot_avx2(uint32_t n, const void *restrict w, const void *restrict x,
                         size_t x_stride, uint32_t nx, float *restrict out);
void quant_q5_K_dot_avx512(uint32_t n, const void *restrict w, const void *restrict x,
                           size_t x_stride, uint32_t nx, float *restrict out);
void quant_q6_K_dot_avx2(uint32_t n, const void *restrict w, const void *restrict x,
                         size_t x_stride, uint32_t nx, float *restrict out);
void quant_q6_K_dot_avx512(uint32_t n, const void *restrict w, const void *restrict x,
                           size_t x_stride, uint32_t nx, float *restrict out);

/* The Q8_K reference quantizer's bits (quant_k.c), faster. */
void quant_q8_K_quantize_avx2(const float *restrict src, void *restrict dst, size_t n);
void quant_q8_K_quantize_avx512(const float *restrict src, void *restrict dst, size_t n);
#endif

#endif
