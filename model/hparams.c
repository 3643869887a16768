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

static const struct arch_traits {
    const char *name;
    model_arch arch;
    model_rope rope;
    const char *family; /* for people: what runs as this architecture */
} k_archs[] = {
    {"llama", MODEL_ARCH_LLAMA, MODEL_ROPE_NORM, "Llama 2/3, Mistral, SmolLM"},
    {"gpt2", MODEL_ARCH_GPT2, MODEL_ROPE_NONE, "GPT-2"},
    {"qwen2", MODEL_ARCH_QWEN2, MODEL_ROPE_NEOX, "Qwen 2 / 2.5: Q/K/V biases"},
    {"qwen3", MODEL_ARCH_QWEN3, MODEL_ROPE_NEOX, "Qwen 3: per-head Q/K RMSNorm"},
};

const char *model_arch_family(model_arch a)
{
    for (size_t i = 0; i < sizeof k_archs / sizeof k_archs[0]; i++)
        if (k_archs[i].arch == a)
            return k_archs[i].family;
    return "?";
}

const char *model_rope_name(model_rope r)
{
    switch (r) {
    case MODEL_ROPE_NONE: return "none (learned positions)";
    case MODEL_ROPE_NORM: return "norm (adjacent pairs)";
    case MODEL_ROPE_NEOX: return "neox (halves)";
    }
    return "?";
}

static bool has_key(const gguf_file *f, const char *arch, const char *name)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, name);
    return gguf_get(f, key) != NULL;
}

/* RoPE scaling by metadata: linear is a division of positions; the others
 * (YaRN, LongRoPE) change the rotation itself and are refused rather than
 * run wrong. */
static int load_rope_scaling(const gguf_file *f, model_hparams *hp, attnd_err *err)
{
    const char *a = hp->arch_name;
    char key[128];
    hp->rope_scale = 1.0f;
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    gguf_str type = {"", 0};
    int rc;
    if (gguf_get(f, key) && (rc = gguf_get_str(f, key, &type, err)) != ATTND_OK)
        return rc;
    bool none = type.len == 0 || (type.len == 4 && memcmp(type.ptr, "none", 4) == 0);
    bool linear = type.len == 6 && memcmp(type.ptr, "linear", 6) == 0;
    if (!none && !linear)
        return attnd_err_set(err, ATTND_EUNSUPPORTED,
                             "%s: %s '%.*s' is not supported (none and linear are)", gguf_path(f),
                             key, (int)(type.len > 32 ? 32 : type.len), type.ptr);
    if (linear || (type.len == 0 && has_key(f, a, "rope.scale_linear"))) {
        const char *name = has_key(f, a, "rope.scaling.factor") ? "rope.scaling.factor"
                                                                : "rope.scale_linear";
        if ((rc = get_f32_opt(f, a, name, &hp->rope_scale, 1.0f, err)) != ATTND_OK)
            return rc;
    }
    return ATTND_OK;
}

int model_hparams_load(const gguf_file *f, model_hparams *hp, attnd_err *err)
{
    gguf_str arch;
    int rc;
    memset(hp, 0, sizeof *hp);
    if ((rc = gguf_get_str(f, "general.architecture", &arch, err)) != ATTND_OK)
        return rc;
    const struct arch_traits *at = NULL;
    for (size_t i = 0; i < sizeof k_archs / sizeof k_archs[0]; i++)
        if (arch.len == strlen(k_archs[i].name) && memcmp(arch.ptr, k_archs[i].name, arch.len) == 0)
            at = &k_archs[i];
    if (!at)
        return attnd_err_set(err, ATTND_EUNSUPPORTED,
                             "%s: unknown architecture '%.*s' (supported: llama, qwen2, qwen3, "
                             "gpt2)",
                             gguf_path(f), (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
    hp->arch = at->arch;
    hp->arch_name = at->name;
    hp->rope = at->rope;
    const char *a = hp->arch_name;
    if ((rc = get_u32(f, a, "context_length", &hp->n_ctx, 1, MAX_CTX, err)) != ATTND_OK ||
        (rc = get_u32(f, a, "embedding_length", &hp->n_embd, 1, MAX_EMBD, err)) != ATTND_OK ||
        (rc = get_u32(f, a, "block_count", &hp->n_layer, 1, MAX_LAYER, err)) != ATTND_OK ||
        (rc = get_u32(f, a, "feed_forward_length", &hp->n_ff, 1, MAX_FF, err)) != ATTND_OK ||
        (rc = get_u32(f, a, "attention.head_count", &hp->n_head, 1, MAX_HEAD, err)) != ATTND_OK)
        return rc;

    char key[128];
    hp->n_head_kv = hp->n_head;
    if (has_key(f, a, "attention.head_count_kv") &&
        (rc = get_u32(f, a, "attention.head_count_kv", &hp->n_head_kv, 1, MAX_HEAD, err)) != ATTND_OK)
        return rc;
    if (hp->n_head % hp->n_head_kv != 0)
        return attnd_err_set(err, ATTND_EFORMAT, "%s: head_count %u is not a multiple of head_count_kv %u",
                             gguf_path(f), hp->n_head, hp->n_head_kv);
    /* The head size is stated when it is not n_embd / n_head (Mistral Nemo:
     * 128 with n_embd 5120 and 32 heads; Qwen 3: 128 for every size). */
    bool has_k = has_key(f, a, "attention.key_length"), has_v = has_key(f, a, "attention.value_length");
    if (has_k || has_v) {
        uint32_t k_len = 0, v_len = 0;
        if ((has_k && (rc = get_u32(f, a, "attention.key_length", &k_len, 2, MAX_EMBD, err))) ||
            (has_v && (rc = get_u32(f, a, "attention.value_length", &v_len, 2, MAX_EMBD, err))))
            return rc;
        if (has_k && has_v && k_len != v_len)
            return attnd_err_set(err, ATTND_EUNSUPPORTED,
                                 "%s: %s.attention.key_length %u differs from value_length %u "
                                 "(only equal head sizes are supported)",
                                 gguf_path(f), a, k_len, v_len);
        hp->head_dim = has_k ? k_len : v_len;
    } else {
        if (hp->n_embd % hp->n_head != 0)
            return attnd_err_set(err, ATTND_EFORMAT,
                                 "%s: embedding_length %u is not a multiple of head_count %u "
                                 "(and %s.attention.key_length is absent)",
                                 gguf_path(f), hp->n_embd, hp->n_head, a);
        hp->head_dim = hp->n_embd / hp->n_head;
    }
    if (hp->arch == MODEL_ARCH_GPT2 && hp->head_dim * hp->n_head != hp->n_embd)
        return attnd_err_set(err, ATTND_EFORMAT, "%s: gpt2 needs head size x heads = embedding_length",
                             gguf_path(f));
    if ((uint64_t)hp->head_dim * hp->n_head > MAX_EMBD * 4ull)
        return attnd_err_set(err, ATTND_ERANGE, "%s: %u heads of %u are too wide", gguf_path(f),
                             hp->n_head, hp->head_dim);

    hp->n_rot = hp->rope == MODEL_ROPE_NONE ? 0 : hp->head_dim;
    snprintf(key, sizeof key, "%s.rope.dimension_count", a);
    if (hp->rope != MODEL_ROPE_NONE && gguf_get(f, key) &&
        (rc = get_u32(f, a, "rope.dimension_count", &hp->n_rot, 2, hp->head_dim, err)) != ATTND_OK)
        return rc;
    if (hp->n_rot % 2 != 0)
        return attnd_err_set(err, ATTND_EFORMAT, "%s: %s is odd (%u)", gguf_path(f), key, hp->n_rot);

    if ((rc = get_f32_opt(f, a, "rope.freq_base", &hp->rope_freq_base, 10000.0f, err)) != ATTND_OK)
        return rc;
    if (hp->rope != MODEL_ROPE_NONE && (rc = load_rope_scaling(f, hp, err)) != ATTND_OK)
        return rc;
    if (hp->rope == MODEL_ROPE_NONE)
        hp->rope_scale = 1.0f;
    const char *eps_key = hp->arch == MODEL_ARCH_GPT2 ? "attention.layer_norm_epsilon"
                                                      : "attention.layer_norm_rms_epsilon";
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
