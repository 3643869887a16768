/* hparams.c - reads <arch>.* hyperparameters from GGUF metadata (hparams.h). */
#include "hparams.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Upper bounds far above any real model, so products of a few of these fit
 * comfortably in 64 bits. */
#define MAX_EMBD (1u << 16)
#define MAX_LAYER 4096u
#define MAX_HEAD 4096u
#define MAX_FF (1u << 20)
#define MAX_CTX (1u << 24)
#define MAX_VOCAB (1u << 22)

static int get_u32(const gguf_file *f, const char *arch, const char *name, uint32_t *out,
                   uint32_t lo, uint32_t hi, attnd_err *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, name);
    int rc = gguf_get_u32(f, key, out, err);
    if (rc != ATTND_OK)
        return rc;
    if (*out < lo || *out > hi)
        return attnd_err_set(err, ATTND_ERANGE, "%s: metadata '%s' is %u (allowed %u to %u)",
                             gguf_path(f), key, *out, lo, hi);
    return ATTND_OK;
}

static int get_f32_opt(const gguf_file *f, const char *arch, const char *name, float *out,
                       float dflt, attnd_err *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, name);
    if (!gguf_get(f, key)) {
        *out = dflt;
        return ATTND_OK;
    }
    int rc = gguf_get_f32(f, key, out, err);
    if (rc == ATTND_OK && !(isfinite(*out) && *out > 0.0f))
        return attnd_err_set(err, ATTND_ERANGE, "%s: metadata '%s' is %g (must be > 0)",
                             gguf_path(f), key, (double)*out);
    return rc;
}

int model_hparams_load(const gguf_file *f, model_hparams *hp, attnd_err *err)
{
    gguf_str arch;
    int rc;
    memset(hp, 0, sizeof *hp);
    if ((rc = gguf_get_str(f, "general.architecture", &arch, err)) != ATTND_OK)
        return rc;
    if (arch.len == 5 && memcmp(arch.ptr, "llama", 5) == 0) {
        hp->arch = MODEL_ARCH_LLAMA;
        hp->arch_name = "llama";
    } else if (arch.len == 4 && memcmp(arch.ptr, "gpt2", 4) == 0) {
        hp->arch = MODEL_ARCH_GPT2;
        hp->arch_name = "gpt2";
    } else {
        return attnd_err_set(err, ATTND_EUNSUPPORTED,
                             "%s: unknown architecture '%.*s' (llama and gpt2 are supported)",
                             gguf_path(f), (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
    }
    const char *a = hp->arch_name;
    if ((rc = get_u32(f, a, "context_length", &hp->n_ctx, 1, MAX_CTX, err)) != ATTND_OK ||
        (rc = get_u32(f, a, "embedding_length", &hp->n_embd, 1, MAX_EMBD, err)) != ATTND_OK ||
        (rc = get_u32(f, a, "block_count", &hp->n_layer, 1, MAX_LAYER, err)) != ATTND_OK ||
        (rc = get_u32(f, a, "feed_forward_length", &hp->n_ff, 1, MAX_FF, err)) != ATTND_OK ||
        (rc = get_u32(f, a, "attention.head_count", &hp->n_head, 1, MAX_HEAD, err)) != ATTND_OK)
        return rc;

    char key[128];
    snprintf(key, sizeof key, "%s.attention.head_count_kv", a);
    hp->n_head_kv = hp->n_head;
    if (gguf_get(f, key) &&
        (rc = get_u32(f, a, "attention.head_count_kv", &hp->n_head_kv, 1, MAX_HEAD, err)) != ATTND_OK)
        return rc;
    if (hp->n_embd % hp->n_head != 0)
        return attnd_err_set(err, ATTND_EFORMAT, "%s: embedding_length %u is not a multiple of head_count %u",
                             gguf_path(f), hp->n_embd, hp->n_head);
    if (hp->n_head % hp->n_head_kv != 0)
        return attnd_err_set(err, ATTND_EFORMAT, "%s: head_count %u is not a multiple of head_count_kv %u",
                             gguf_path(f), hp->n_head, hp->n_head_kv);
    hp->head_dim = hp->n_embd / hp->n_head;

    hp->n_rot = hp->head_dim;
    snprintf(key, sizeof key, "%s.rope.dimension_count", a);
    if (gguf_get(f, key) &&
        (rc = get_u32(f, a, "rope.dimension_count", &hp->n_rot, 2, hp->head_dim, err)) != ATTND_OK)
        return rc;
    if (hp->n_rot % 2 != 0)
        return attnd_err_set(err, ATTND_EFORMAT, "%s: %s is odd (%u)", gguf_path(f), key, hp->n_rot);

    if ((rc = get_f32_opt(f, a, "rope.freq_base", &hp->rope_freq_base, 10000.0f, err)) != ATTND_OK)
        return rc;
    const char *eps_key = hp->arch == MODEL_ARCH_LLAMA ? "attention.layer_norm_rms_epsilon"
                                                       : "attention.layer_norm_epsilon";
    if ((rc = get_f32_opt(f, a, eps_key, &hp->norm_eps, 1e-5f, err)) != ATTND_OK)
        return rc;

    /* The vocabulary size is the token list's length (or the embedding's rows
     * in a file without a tokenizer). */
    const gguf_value *toks = gguf_get(f, "tokenizer.ggml.tokens");
    const gguf_tensor *emb = gguf_tensor_find(f, "token_embd.weight");
    uint64_t n_vocab = toks ? gguf_array_len(toks) : (emb && emb->n_dims >= 2 ? emb->ne[1] : 0);
    if (n_vocab == 0 || n_vocab > MAX_VOCAB)
        return attnd_err_set(err, ATTND_EFORMAT, "%s: vocabulary size %llu (from %s) is not usable",
                             gguf_path(f), (unsigned long long)n_vocab,
                             toks ? "tokenizer.ggml.tokens" : "token_embd.weight");
    hp->n_vocab = (uint32_t)n_vocab;
    return ATTND_OK;
}

uint64_t model_kv_bytes_per_token(const model_hparams *hp, size_t elem_bytes)
{
    return 2ull * hp->n_layer * hp->n_head_kv * hp->head_dim * elem_bytes;
}
