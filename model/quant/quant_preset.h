/* quant_preset.h - the quantization presets users name (`attnd quantize ...
 * Q4_K_M`, `attnd mkmodel --type q4_k_m`) and the one place that decides,
 * tensor by tensor, which type a preset writes.
 *
 * A preset is a mix, as in llama.cpp's llama-quantize: a base type for most
 * weight matrices, more bits for the tensors that hurt most when squeezed
 * (the output projection, some attn_v and ffn_down layers), a row-length
 * fallback when a matrix's rows are not whole blocks of the chosen type, and
 * norms, biases and other vectors left as they are. Files we write get the
 * same per-tensor types the reference would give them. */
#ifndef ATTND_QUANT_PRESET_H
#define ATTND_QUANT_PRESET_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf.h"

typedef enum quant_preset {
    QUANT_PRESET_F32,
    QUANT_PRESET_F16,
    QUANT_PRESET_BF16,
    QUANT_PRESET_Q4_0,
    QUANT_PRESET_Q4_1,
    QUANT_PRESET_Q5_0,
    QUANT_PRESET_Q5_1,
    QUANT_PRESET_Q8_0,
    QUANT_PRESET_Q2_K,
    QUANT_PRESET_Q3_K_M,
    QUANT_PRESET_Q4_K_M,
    QUANT_PRESET_Q5_K_M,
    QUANT_PRESET_Q6_K,
    QUANT_PRESET_IQ4_NL,
    QUANT_PRESET_IQ4_XS,
    QUANT_PRESET_COUNT
} quant_preset;

/* NAME in any letter case ("q4_k_m", "Q4_K_M"); false if it is no preset. */
bool quant_preset_parse(const char *name, quant_preset *out);
/* Upper-case name, e.g. "Q4_K_M"; "?" for an out-of-range value. */
const char *quant_preset_name(quant_preset p);
/* The value llama.cpp stores as general.file_type (its LLAMA_FTYPE_*),
 * e.g. 15 for Q4_K_M. */
uint32_t quant_preset_file_type(quant_preset p);
/* The type most weight matrices get. */
gguf_dtype quant_preset_base_type(quant_preset p);

/* What the choice depends on beyond the tensor itself. */
typedef struct quant_preset_model {
    uint32_t n_layer;
    uint32_t n_gqa;   /* query heads per key/value head (1 without GQA) */
    bool has_output;  /* a separate output.weight; without one, token_embd.weight
                         is also the output projection and is treated as it */
} quant_preset_model;

/* The type preset P writes for tensor NAME of N_DIMS dimensions whose rows
 * hold NE0 elements and which is now of type CUR (what a tensor the preset
 * leaves alone keeps: vectors, norms, position embeddings). Returns true and
 * *OUT, or false when the preset cannot store the tensor: a preset of
 * 32-element blocks (Q4_0 ... Q8_0, IQ4_NL) and rows that are not whole
 * blocks, which the reference refuses too. (Where the reference refuses a
 * 256-block preset because the output rows are not whole 32-blocks, the
 * output is written F16.) */
bool quant_preset_tensor_type(quant_preset p, const quant_preset_model *m, const char *name,
                              uint32_t n_dims, uint64_t ne0, gguf_dtype cur, gguf_dtype *out);

#endif
