/* quant_iq4_x86.c - SCAFFOLD: the x86 SIMD kernels of quant_iq4.c. */
#include "quant_internal.h"
