/* quant_k_low_x86.h - the x86 dot kernels of Q2_K and Q3_K (defined in
 * quant_k_low_x86.c, listed in quant_k_low.c's traits). Signatures are
 * quant_dot_fn's; call each only on a CPU with its ISA (quant.h). */
#ifndef ATTND_QUANT_K_LOW_X86_H
#define ATTND_QUANT_K_LOW_X86_H

#include <stddef.h>
#include <stdint.h>

#include "attnd_simd.h"

#ifdef ATTND_HAVE_X86
#define K_LOW_DOT_DECL(NAME)                                                                       \
    void NAME(uint32_t n, const void *restrict w, const void *restrict x, size_t x_stride,         \
              uint32_t nx, float *restrict out)
K_LOW_DOT_DECL(quant_q2_K_dot_avx2);
K_LOW_DOT_DECL(quant_q2_K_dot_avx512);
K_LOW_DOT_DECL(quant_q3_K_dot_avx2);
K_LOW_DOT_DECL(quant_q3_K_dot_avx512);
#undef K_LOW_DOT_DECL
#endif

#endif
