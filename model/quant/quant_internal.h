/* quant_internal.h - what the family files of model/quant share: each
 * family file (quant_float.c, quant_legacy.c, quant_k.c, quant_k_low.c,
 * quant_iq4.c) defines the traits of its types; quant.c indexes them by
 * type. Adding a type: its functions and traits in its family file, one
 * line in quant.c's table. */
#ifndef ATTND_QUANT_INTERNAL_H
#define ATTND_QUANT_INTERNAL_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "quant.h"
#include "quant_blocks.h"

extern const quant_traits quant_traits_f32, quant_traits_f16, quant_traits_bf16;
extern const quant_traits quant_traits_q4_0, quant_traits_q4_1, quant_traits_q5_0,
    quant_traits_q5_1, quant_traits_q8_0, quant_traits_q8_1;
extern const quant_traits quant_traits_q4_K, quant_traits_q5_K, quant_traits_q6_K,
    quant_traits_q8_K;
extern const quant_traits quant_traits_q2_K, quant_traits_q3_K;
extern const quant_traits quant_traits_iq4_nl, quant_traits_iq4_xs;

/* A half scale that is neither NaN nor infinite. */
static inline bool quant_half_finite(uint16_t h)
{
    return (h & 0x7c00u) != 0x7c00u;
}

#endif
