/* quant_k_x86.c - SCAFFOLD: the x86 SIMD kernels of quant_k.c. */
#include "quant_internal.h"
