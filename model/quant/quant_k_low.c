/* quant_k_low.c - SCAFFOLD (replaced by the low-bit K-quant work): Q2_K, Q3_K. */
#include "quant_internal.h"

const quant_traits quant_traits_q2_K = {.type = GGUF_DTYPE_Q2_K};
const quant_traits quant_traits_q3_K = {.type = GGUF_DTYPE_Q3_K};
