/* hparams.h - a model's hyperparameters, read and checked from GGUF metadata.
 *
 * Keys are "<arch>.<name>" as llama.cpp writes them. Everything later code
 * derives sizes from is validated here once (positive, divisible where the math
 * needs it, bounded), so later arithmetic on them cannot overflow. */
#ifndef ATTND_HPARAMS_H
#define ATTND_HPARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "attnd_err.h"
#include "gguf.h"

typedef enum model_arch {
    MODEL_ARCH_LLAMA = 1, /* RMSNorm, RoPE, SwiGLU, grouped-query attention */
    MODEL_ARCH_GPT2 = 2,  /* LayerNorm, learned positions, GELU, fused QKV */
} model_arch;

typedef struct model_hparams {
    model_arch arch;
    const char *arch_name; /* static string: "llama" or "gpt2" */
    uint32_t n_vocab;
    uint32_t n_ctx;        /* context length the model was trained for */
    uint32_t n_embd;
    uint32_t n_layer;
    uint32_t n_head;
    uint32_t n_head_kv;
    uint32_t n_ff;
    uint32_t head_dim;     /* n_embd / n_head */
    uint32_t n_rot;        /* rotary dimensions (llama); head_dim by default */
    float rope_freq_base;  /* 10000 when absent */
    float norm_eps;
} model_hparams;

int model_hparams_load(const gguf_file *f, model_hparams *hp, attnd_err *err);

/* KV cache bytes per token: 2 (K and V) x n_layer x n_head_kv x head_dim x
 * ELEM_BYTES. */
uint64_t model_kv_bytes_per_token(const model_hparams *hp, size_t elem_bytes);

#endif
