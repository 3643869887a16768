/* quant_legacy_x86.c - SCAFFOLD: the x86 SIMD kernels of quant_legacy.c. */
#include "quant_internal.h"
