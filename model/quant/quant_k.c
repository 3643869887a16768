/* quant_k.c - SCAFFOLD (replaced by the K-quant work): Q4_K, Q5_K, Q6_K and
 * the Q8_K activation format. */
#include "quant_internal.h"

const quant_traits quant_traits_q4_K = {.type = GGUF_DTYPE_Q4_K};
const quant_traits quant_traits_q5_K = {.type = GGUF_DTYPE_Q5_K};
const quant_traits quant_traits_q6_K = {.type = GGUF_DTYPE_Q6_K};
const quant_traits quant_traits_q8_K = {.type = GGUF_DTYPE_Q8_K};
