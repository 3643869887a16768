/* quant_iq4.c - SCAFFOLD (replaced by the IQ4 work): IQ4_NL, IQ4_XS. */
#include "quant_internal.h"

const quant_traits quant_traits_iq4_nl = {.type = GGUF_DTYPE_IQ4_NL};
const quant_traits quant_traits_iq4_xs = {.type = GGUF_DTYPE_IQ4_XS};
