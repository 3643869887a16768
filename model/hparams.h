/* hparams.h - a model's hyperparameters, read and checked from GGUF metadata.
 * What a family needs beyond numbers (biases, per-head norms, rope_freqs) is
 * in its tensors; model.c binds them.
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

/* The families a file's general.architecture may name. The three RoPE
 * families share one block (RMSNorm, RoPE, SwiGLU, grouped-query attention)
 * and differ only in data: Qwen 2 adds Q/K/V biases, Qwen 3 an RMSNorm over
 * each query and key head, both rotate NeoX-style (model_rope). */
typedef enum model_arch {
    MODEL_ARCH_LLAMA = 1, /* Llama 2/3, Mistral, SmolLM */
    MODEL_ARCH_GPT2 = 2,  /* LayerNorm, learned positions, GELU, fused QKV */
    MODEL_ARCH_QWEN2 = 3, /* Qwen 2 and 2.5 */
    MODEL_ARCH_QWEN3 = 4,
} model_arch;

/* How a head's dimensions pair up for the rotation. */
typedef enum model_rope {
    MODEL_ROPE_NONE = 0, /* learned positions (gpt2) */
    MODEL_ROPE_NORM = 1, /* adjacent pairs (x[2i], x[2i+1]): how GGUF stores Llama */
    MODEL_ROPE_NEOX = 2, /* halves (x[i], x[i + n_rot/2]): Qwen, GPT-NeoX */
} model_rope;

typedef struct model_hparams {
    model_arch arch;
    const char *arch_name; /* static string: "llama", "gpt2", "qwen2", "qwen3" */
    model_rope rope;
    uint32_t n_vocab;
    uint32_t n_ctx;        /* context length the model was trained for */
    uint32_t n_embd;
    uint32_t n_layer;
    uint32_t n_head;
    uint32_t n_head_kv;
    uint32_t n_ff;
    uint32_t head_dim;     /* <arch>.attention.key_length, else n_embd / n_head */
    uint32_t n_rot;        /* rotary dimensions; head_dim by default */
    float rope_freq_base;  /* 10000 when absent */
    float rope_scale;      /* linear position scaling: positions divided by it; 1: none */
    float norm_eps;
} model_hparams;

const char *model_rope_name(model_rope r); /* "none", "norm (adjacent pairs)", ... */
const char *model_arch_family(model_arch a); /* "Llama 2/3, Mistral, SmolLM", ... */

int model_hparams_load(const gguf_file *f, model_hparams *hp, attnd_err *err);

/* KV cache bytes per token: 2 (K and V) x n_layer x n_head_kv x head_dim x
 * ELEM_BYTES. */
uint64_t model_kv_bytes_per_token(const model_hparams *hp, size_t elem_bytes);

#endif
