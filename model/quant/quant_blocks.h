/* quant_blocks.h - the byte layout of each quantized block, as ggml and GGUF
 * define it; shared by the family files of model/quant (not for other
 * modules: they see only bytes, through quant.h). Half-precision fields are
 * raw IEEE half bits (attnd_half.h). Sizes are asserted against the GGUF
 * reader's table in quant.c. */
#ifndef ATTND_QUANT_BLOCKS_H
#define ATTND_QUANT_BLOCKS_H

#include <stdint.h>

#define QUANT_QK 32   /* elements per legacy / IQ4_NL block */
#define QUANT_QK_K 256 /* elements per K-quant / IQ4_XS super-block */

/* x = d * (q - 8), q the low nibble for x[i], high nibble for x[i + 16] */
typedef struct quant_block_q4_0 {
    uint16_t d;
    uint8_t qs[QUANT_QK / 2];
} quant_block_q4_0;

/* x = d * q + m */
typedef struct quant_block_q4_1 {
    uint16_t d, m;
    uint8_t qs[QUANT_QK / 2];
} quant_block_q4_1;

/* x = d * (q - 16), q's fifth bit for element j is bit j of qh (little-endian) */
typedef struct quant_block_q5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[QUANT_QK / 2];
} quant_block_q5_0;

typedef struct quant_block_q5_1 {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[QUANT_QK / 2];
} quant_block_q5_1;

typedef struct quant_block_q8_0 {
    uint16_t d;
    int8_t qs[QUANT_QK];
} quant_block_q8_0;

/* activation format for Q4_1 / Q5_1: s = d * sum(qs) */
typedef struct quant_block_q8_1 {
    uint16_t d, s;
    int8_t qs[QUANT_QK];
} quant_block_q8_1;

typedef struct quant_block_q2_K {
    uint8_t scales[QUANT_QK_K / 16]; /* low 4 bits scale, high 4 bits min */
    uint8_t qs[QUANT_QK_K / 4];
    uint16_t d, dmin;
} quant_block_q2_K;

typedef struct quant_block_q3_K {
    uint8_t hmask[QUANT_QK_K / 8];
    uint8_t qs[QUANT_QK_K / 4];
    uint8_t scales[12]; /* 16 6-bit scales */
    uint16_t d;
} quant_block_q3_K;

typedef struct quant_block_q4_K {
    uint16_t d, dmin;
    uint8_t scales[12]; /* 8 6-bit scales and 8 6-bit mins */
    uint8_t qs[QUANT_QK_K / 2];
} quant_block_q4_K;

typedef struct quant_block_q5_K {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[QUANT_QK_K / 8];
    uint8_t qs[QUANT_QK_K / 2];
} quant_block_q5_K;

typedef struct quant_block_q6_K {
    uint8_t ql[QUANT_QK_K / 2];
    uint8_t qh[QUANT_QK_K / 4];
    int8_t scales[QUANT_QK_K / 16];
    uint16_t d;
} quant_block_q6_K;

/* activation format for K-quants and IQ4_XS: bsums[j] = sum of qs[16j..16j+15] */
typedef struct quant_block_q8_K {
    float d;
    int8_t qs[QUANT_QK_K];
    int16_t bsums[QUANT_QK_K / 16];
} quant_block_q8_K;

/* x = d * kvalues_iq4nl[q] (a fixed non-linear 16-entry table) */
typedef struct quant_block_iq4_nl {
    uint16_t d;
    uint8_t qs[QUANT_QK / 2];
} quant_block_iq4_nl;

typedef struct quant_block_iq4_xs {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[QUANT_QK_K / 64];
    uint8_t qs[QUANT_QK_K / 2];
} quant_block_iq4_xs;

#endif
