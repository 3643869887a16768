/* quant_k_low_x86.c - SCAFFOLD: the x86 SIMD kernels of quant_k_low.c. */
#include "quant_internal.h"
