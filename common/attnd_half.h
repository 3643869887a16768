/* attnd_half.h - IEEE half (F16) and bfloat16 conversions, shared by the
 * model's weight kernels, the KV cache and attention. Plain scalar code: the
 * reference any vectorized conversion is tested against. */
#ifndef ATTND_HALF_H
#define ATTND_HALF_H

#include <stdint.h>

float attnd_f16_to_f32(uint16_t h);
uint16_t attnd_f32_to_f16(float f);   /* round to nearest even; overflow to inf */
float attnd_bf16_to_f32(uint16_t h);
uint16_t attnd_f32_to_bf16(float f);  /* round to nearest even; NaN stays NaN */

#endif
