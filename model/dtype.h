/* dtype.h - conversions between float32 and the stored tensor element types
 * (F16, BF16, Q8_0). Plain scalar code: the reference every fast kernel is
 * tested against. */
#ifndef ATTND_DTYPE_H
#define ATTND_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#include "attnd_half.h"
#include "gguf.h"

/* One Q8_0 block: 32 values = d * qs[i], d stored as IEEE half. */
#define DTYPE_QK8_0 32
typedef struct dtype_q8_0 {
    uint16_t d;
    int8_t qs[DTYPE_QK8_0];
} dtype_q8_0;


/* Converts N floats to TYPE (F32, F16, BF16 or Q8_0; N a multiple of the block
 * size) into DST, which holds gguf_dtype_row_bytes(TYPE, N) bytes. Returns 0,
 * or -1 for a type or N it cannot convert. */
int dtype_from_f32(gguf_dtype type, const float *src, void *dst, size_t n);
/* The inverse: N elements of TYPE at SRC to floats. */
int dtype_to_f32(gguf_dtype type, const void *src, float *dst, size_t n);

#endif
