/* model_internal.h - the layout of a loaded model, shared by the files of
 * model/ (loading, matmul kernels, the engine); not for other modules. */
#ifndef ATTND_MODEL_INTERNAL_H
#define ATTND_MODEL_INTERNAL_H

#include "model.h"
#include "quant.h"

/* A weight matrix of n_out rows of n_in elements (GGUF ne = [n_in, n_out]),
 * in the file's mapping; qt is its type's table entry. */
typedef struct model_weight {
    gguf_dtype type;
    const quant_traits *qt;
    const void *data;
    uint32_t n_in;
    uint32_t n_out;
    uint64_t row_bytes;
} model_weight;

/* Pointers left NULL are tensors the file does not have: the forward pass
 * skips that step (a bias, a per-head norm), so families differ in data. */
typedef struct model_layer {
    const float *attn_norm, *attn_norm_b;  /* b: gpt2 only */
    model_weight wq, wk, wv;               /* rope families */
    const float *bq, *bk, *bv;             /* Q/K/V biases (qwen2) */
    const float *q_norm, *k_norm;          /* RMSNorm weights over each head (qwen3) */
    model_weight wqkv;                     /* gpt2: fused [q; k; v] */
    const float *bqkv;                     /* gpt2 */
    model_weight wo;
    const float *bo;                       /* gpt2 */
    const float *ffn_norm, *ffn_norm_b;
    model_weight w_gate;                   /* llama */
    model_weight w_up, w_down;
    const float *b_up, *b_down;            /* gpt2 */
} model_layer;

struct model {
    gguf_file *file;
    model_hparams hp;
    tok_vocab *vocab;
    model_weight tok_embd;
    model_weight pos_embd;                 /* gpt2 */
    const float *out_norm, *out_norm_b;
    model_weight output;                   /* = tok_embd when the file has none */
    bool tied_output;                      /* output is tok_embd */
    /* rope_freqs.weight (Llama 3.1+): per rotation pair, a divisor of its
     * frequency; NULL: none */
    const float *rope_freqs;
    model_layer *layers;
    float *vectors;                        /* owned F32 copies of norms and biases */
};

/* Row ROW of W converted to n_in floats (embedding lookup). */
void model_weight_row(const model_weight *w, uint32_t row, float *out);

#endif
