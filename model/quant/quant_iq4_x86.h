/* quant_iq4_x86.h - private to quant_iq4.c and quant_iq4_x86.c: the IQ4
 * value table (defined in quant_iq4.c) and the x86 dot kernels, which have
 * quant_dot_fn's contract and the scalar dots' integer sums. */
#ifndef ATTND_QUANT_IQ4_X86_H
#define ATTND_QUANT_IQ4_X86_H

#include "quant_internal.h"

#include "attnd_simd.h"

/* The 16 values a 4-bit IQ4 index stands for, ascending. */
extern const int8_t quant_iq4_values[16];

#ifdef ATTND_HAVE_X86
void quant_iq4nl_dot_avx2(uint32_t n, const void *restrict w, const void *restrict x,
                          size_t x_stride, uint32_t nx, float *restrict out);
void quant_iq4nl_dot_avx512(uint32_t n, const void *restrict w, const void *restrict x,
                            size_t x_stride, uint32_t nx, float *restrict out);
void quant_iq4xs_dot_avx2(uint32_t n, const void *restrict w, const void *restrict x,
                          size_t x_stride, uint32_t nx, float *restrict out);
void quant_iq4xs_dot_avx512(uint32_t n, const void *restrict w, const void *restrict x,
                            size_t x_stride, uint32_t nx, float *restrict out);
#endif

#endif
