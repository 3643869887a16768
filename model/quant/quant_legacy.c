/* quant_legacy.c - SCAFFOLD (replaced by the legacy-family work): Q4_0,
 * Q4_1, Q5_0, Q5_1, Q8_0 and the Q8_1 activation format. */
#include "quant_internal.h"

const quant_traits quant_traits_q4_0 = {.type = GGUF_DTYPE_Q4_0};
const quant_traits quant_traits_q4_1 = {.type = GGUF_DTYPE_Q4_1};
const quant_traits quant_traits_q5_0 = {.type = GGUF_DTYPE_Q5_0};
const quant_traits quant_traits_q5_1 = {.type = GGUF_DTYPE_Q5_1};
const quant_traits quant_traits_q8_0 = {.type = GGUF_DTYPE_Q8_0};
const quant_traits quant_traits_q8_1 = {.type = GGUF_DTYPE_Q8_1};
