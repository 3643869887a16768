/* attnd_half.h - IEEE half (F16) and bfloat16 conversions, shared by the
 * model's weight kernels, the KV cache and attention. Plain scalar code: the
 * reference any vectorized conversion is tested against. */
#ifndef ATTND_HALF_H
#define ATTND_HALF_H

#include <stddef.h>
#include <stdint.h>

float attnd_f16_to_f32(uint16_t h);
uint16_t attnd_f32_to_f16(float f);   /* round to nearest even; overflow to inf */
float attnd_bf16_to_f32(uint16_t h);
uint16_t attnd_f32_to_bf16(float f);  /* round to nearest even; NaN stays NaN */

/* N halves to floats: F16C when the CPU has it (picked at run time), else the
 * scalar conversion above; both give identical results. */
void attnd_f16_to_f32_row(const uint16_t *src, float *dst, size_t n);
/* The scalar loop alone, the reference the fast path is tested against. */
void attnd_f16_to_f32_row_ref(const uint16_t *src, float *dst, size_t n);

#endif
