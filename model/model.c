/* model.c - loading a model: hyperparameters, tokenizer, and binding every
 * weight by its llama.cpp name with shape and type checks, so the forward pass
 * never meets a surprise. Errors name the tensor and what was wrong. */
#include "model_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"

/* Vectors (norm weights, biases) are copied to F32 into one owned buffer;
 * the loader counts them first, then fills. */
struct binder {
    model *m;
    const char *path;
    float *vec_next;
    attnd_err *err;
};

/* The table entry of a type a weight matrix may have: one with a dot
 * kernel (every weight type; not the activation-only formats). */
static const quant_traits *matrix_traits(gguf_dtype t)
{
    const quant_traits *qt = quant_traits_of(t);
    return qt && qt->dot[QUANT_ISA_SCALAR] ? qt : NULL;
}

/* "F32, F16, ..." for error messages: every type matrix_traits admits. */
static void matrix_type_list(char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (uint32_t t = 0; t < GGUF_DTYPE_COUNT_ && len < cap; t++)
        if (matrix_traits((gguf_dtype)t)) {
            int n = snprintf(buf + len, cap - len, "%s%s", len ? ", " : "",
                             gguf_dtype_name((gguf_dtype)t));
            len += n > 0 ? (size_t)n : 0;
        }
}

static const gguf_tensor *find(struct binder *b, const char *name, bool required)
{
    const gguf_tensor *t = gguf_tensor_find(b->m->file, name);
    if (!t && required)
        attnd_err_set(b->err, ATTND_EFORMAT, "%s: tensor '%s' is missing", b->path, name);
    return t;
}

static int bind_matrix(struct binder *b, const char *name, uint32_t n_in, uint32_t n_out,
                       bool required, model_weight *w)
{
    const gguf_tensor *t = find(b, name, required);
    if (!t)
        return required ? ATTND_EFORMAT : ATTND_OK;
    if (t->n_dims != 2 || t->ne[0] != n_in || t->ne[1] != n_out)
        return attnd_err_set(b->err, ATTND_EFORMAT,
                             "%s: tensor '%s' has shape [%llu, %llu] (%u dims), expected [%u, %u]",
                             b->path, name, (unsigned long long)t->ne[0],
                             (unsigned long long)t->ne[1], t->n_dims, n_in, n_out);
    const quant_traits *qt = matrix_traits(t->type);
    if (!qt) {
        char types[256];
        matrix_type_list(types, sizeof types);
        return attnd_err_set(b->err, ATTND_EUNSUPPORTED,
                             "%s: tensor '%s': unsupported tensor type %s (supported: %s)",
                             b->path, name, gguf_dtype_name(t->type), types);
    }
    if (qt->find_bad_scale) {
        size_t n_blocks = (size_t)(t->n_elems / gguf_dtype_block_elems(t->type));
        size_t bad = qt->find_bad_scale(t->data, n_blocks);
        if (bad < n_blocks)
            return attnd_err_set(b->err, ATTND_EFORMAT,
                                 "%s: tensor '%s' (%s): block %zu (row %zu) has a NaN or "
                                 "infinite scale",
                                 b->path, name, gguf_dtype_name(t->type), bad,
                                 bad / (n_in / gguf_dtype_block_elems(t->type)));
    }
    w->qt = qt;
    w->type = t->type;
    w->data = t->data;
    w->n_in = n_in;
    w->n_out = n_out;
    gguf_dtype_row_bytes(t->type, n_in, &w->row_bytes);
    return ATTND_OK;
}

static int bind_vector_opt(struct binder *b, const char *name, uint32_t n, bool required,
                           const float **out)
{
    const gguf_tensor *t = find(b, name, required);
    *out = NULL;
    if (!t)
        return required ? ATTND_EFORMAT : ATTND_OK;
    if (t->n_elems != n || t->ne[0] != n)
        return attnd_err_set(b->err, ATTND_EFORMAT,
                             "%s: tensor '%s' has %llu elements, expected %u", b->path, name,
                             (unsigned long long)t->n_elems, n);
    if (quant_to_f32(t->type, t->data, b->vec_next, n) != 0)
        return attnd_err_set(b->err, ATTND_EUNSUPPORTED,
                             "%s: tensor '%s': unsupported tensor type %s for a vector", b->path,
                             name, gguf_dtype_name(t->type));
    *out = b->vec_next;
    b->vec_next += n;
    return ATTND_OK;
}

static int bind_vector(struct binder *b, const char *name, uint32_t n, const float **out)
{
    return bind_vector_opt(b, name, n, true, out);
}

/* The name of layer l's tensor S, in the local buffer `name`. */
#define NAME(s) (snprintf(name, sizeof name, "blk.%u." s, l), name)

/* Llama, Qwen 2, Qwen 3: one block layout. Q/K/V biases are required for
 * Qwen 2 and optional elsewhere; the per-head norms are Qwen 3's. */
static int bind_rope_family(struct binder *b)
{
    model *m = b->m;
    const model_hparams *hp = &m->hp;
    uint32_t d = hp->n_embd, q_dim = hp->n_head * hp->head_dim,
             kv_dim = hp->n_head_kv * hp->head_dim;
    bool bias = hp->arch == MODEL_ARCH_QWEN2, qk_norm = hp->arch == MODEL_ARCH_QWEN3;
    char name[96];
    int rc;
    if ((rc = bind_vector_opt(b, "rope_freqs.weight", hp->n_rot / 2, false, &m->rope_freqs)))
        return rc;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        model_layer *L = &m->layers[l];
        if ((rc = bind_vector(b, NAME("attn_norm.weight"), d, &L->attn_norm)) ||
            (rc = bind_matrix(b, NAME("attn_q.weight"), d, q_dim, true, &L->wq)) ||
            (rc = bind_matrix(b, NAME("attn_k.weight"), d, kv_dim, true, &L->wk)) ||
            (rc = bind_matrix(b, NAME("attn_v.weight"), d, kv_dim, true, &L->wv)) ||
            (rc = bind_vector_opt(b, NAME("attn_q.bias"), q_dim, bias, &L->bq)) ||
            (rc = bind_vector_opt(b, NAME("attn_k.bias"), kv_dim, bias, &L->bk)) ||
            (rc = bind_vector_opt(b, NAME("attn_v.bias"), kv_dim, bias, &L->bv)) ||
            (rc = bind_vector_opt(b, NAME("attn_q_norm.weight"), hp->head_dim, qk_norm,
                                  &L->q_norm)) ||
            (rc = bind_vector_opt(b, NAME("attn_k_norm.weight"), hp->head_dim, qk_norm,
                                  &L->k_norm)) ||
            (rc = bind_matrix(b, NAME("attn_output.weight"), q_dim, d, true, &L->wo)) ||
            (rc = bind_vector(b, NAME("ffn_norm.weight"), d, &L->ffn_norm)) ||
            (rc = bind_matrix(b, NAME("ffn_gate.weight"), d, hp->n_ff, true, &L->w_gate)) ||
            (rc = bind_matrix(b, NAME("ffn_up.weight"), d, hp->n_ff, true, &L->w_up)) ||
            (rc = bind_matrix(b, NAME("ffn_down.weight"), hp->n_ff, d, true, &L->w_down)))
            return rc;
    }
    return bind_vector(b, "output_norm.weight", d, &m->out_norm);
}

static int bind_gpt2(struct binder *b)
{
    model *m = b->m;
    const model_hparams *hp = &m->hp;
    uint32_t d = hp->n_embd;
    char name[96];
    int rc;
    if ((rc = bind_matrix(b, "position_embd.weight", d, hp->n_ctx, true, &m->pos_embd)))
        return rc;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        model_layer *L = &m->layers[l];
        if ((rc = bind_vector(b, NAME("attn_norm.weight"), d, &L->attn_norm)) ||
            (rc = bind_vector(b, NAME("attn_norm.bias"), d, &L->attn_norm_b)) ||
            (rc = bind_matrix(b, NAME("attn_qkv.weight"), d, 3 * d, true, &L->wqkv)) ||
            (rc = bind_vector(b, NAME("attn_qkv.bias"), 3 * d, &L->bqkv)) ||
            (rc = bind_matrix(b, NAME("attn_output.weight"), d, d, true, &L->wo)) ||
            (rc = bind_vector(b, NAME("attn_output.bias"), d, &L->bo)) ||
            (rc = bind_vector(b, NAME("ffn_norm.weight"), d, &L->ffn_norm)) ||
            (rc = bind_vector(b, NAME("ffn_norm.bias"), d, &L->ffn_norm_b)) ||
            (rc = bind_matrix(b, NAME("ffn_up.weight"), d, hp->n_ff, true, &L->w_up)) ||
            (rc = bind_vector(b, NAME("ffn_up.bias"), hp->n_ff, &L->b_up)) ||
            (rc = bind_matrix(b, NAME("ffn_down.weight"), hp->n_ff, d, true, &L->w_down)) ||
            (rc = bind_vector(b, NAME("ffn_down.bias"), d, &L->b_down)))
            return rc;
    }
    if ((rc = bind_vector(b, "output_norm.weight", d, &m->out_norm)))
        return rc;
    return bind_vector(b, "output_norm.bias", d, &m->out_norm_b);
}
#undef NAME

int model_load(const char *path, model **out, attnd_err *err)
{
    return model_load_as(path, GGUF_LOAD_MAP, out, err);
}

int model_load_as(const char *path, gguf_load how, model **out, attnd_err *err)
{
    *out = NULL;
    model *m = calloc(1, sizeof *m);
    if (!m)
        return attnd_err_set(err, ATTND_ENOMEM, "%s: out of memory", path);
    int rc = gguf_open_as(path, how, &m->file, err);
    if (rc == ATTND_OK)
        rc = model_hparams_load(m->file, &m->hp, err);
    if (rc == ATTND_OK && (rc = tok_load(m->file, &m->vocab, err)) != ATTND_OK) {
        attnd_err tok_err = *err; /* tokenizer messages name the key, not the file */
        attnd_err_set(err, rc, "%s: %s", path, tok_err.msg);
    }
    if (rc == ATTND_OK && tok_n_vocab(m->vocab) != (int32_t)m->hp.n_vocab)
        rc = attnd_err_set(err, ATTND_EFORMAT, "%s: tokenizer has %d tokens, model %u", path,
                           tok_n_vocab(m->vocab), m->hp.n_vocab);
    if (rc != ATTND_OK) {
        model_free(m);
        return rc;
    }
    const model_hparams *hp = &m->hp;
    /* Upper bound of vector floats: per layer 2 norms (+ 2 biases), qkv
     * biases, 2 head norms, output bias, ffn biases; plus the output norm and
     * bias and rope_freqs. */
    size_t q_dim = (size_t)hp->n_head * hp->head_dim, kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    size_t n_vec = (size_t)hp->n_layer * (4u * hp->n_embd + 3u * hp->n_embd + q_dim + 2 * kv_dim +
                                          2u * hp->head_dim + hp->n_embd + hp->n_ff + hp->n_embd) +
                   2u * hp->n_embd + hp->n_rot / 2;
    m->vectors = malloc(n_vec * sizeof(float));
    m->layers = calloc(hp->n_layer, sizeof *m->layers);
    if (!m->vectors || !m->layers) {
        model_free(m);
        return attnd_err_set(err, ATTND_ENOMEM, "%s: out of memory", path);
    }
    struct binder b = {.m = m, .path = path, .vec_next = m->vectors, .err = err};
    rc = bind_matrix(&b, "token_embd.weight", hp->n_embd, hp->n_vocab, true, &m->tok_embd);
    if (rc == ATTND_OK)
        rc = hp->arch == MODEL_ARCH_GPT2 ? bind_gpt2(&b) : bind_rope_family(&b);
    if (rc == ATTND_OK)
        rc = bind_matrix(&b, "output.weight", hp->n_embd, hp->n_vocab, false, &m->output);
    if (rc == ATTND_OK && !m->output.data) {
        m->output = m->tok_embd; /* tied embeddings */
        m->tied_output = true;
    }
    if (rc == ATTND_OK && m->rope_freqs)
        for (uint32_t i = 0; i < hp->n_rot / 2; i++)
            if (!(isfinite(m->rope_freqs[i]) && m->rope_freqs[i] > 0.0f)) {
                rc = attnd_err_set(err, ATTND_EFORMAT,
                                   "%s: tensor 'rope_freqs.weight': element %u is %g (must be > 0)",
                                   path, i, (double)m->rope_freqs[i]);
                break;
            }
    if (rc != ATTND_OK) {
        model_free(m);
        return rc;
    }
    *out = m;
    return ATTND_OK;
}

void model_free(model *m)
{
    if (!m)
        return;
    tok_free(m->vocab);
    gguf_close(m->file);
    free(m->layers);
    free(m->vectors);
    free(m);
}

uint64_t model_weight_bytes(const model *m)
{
    uint64_t bytes = 0;
    for (size_t i = 0; i < gguf_tensor_count(m->file); i++)
        bytes += gguf_tensor_at(m->file, i)->nbytes;
    return bytes;
}

static uint64_t matrix_bytes(const model_weight *w)
{
    return w->data ? w->row_bytes * w->n_out : 0;
}

uint64_t model_step_bytes(const model *m)
{
    uint64_t bytes = model_weight_bytes(m) - matrix_bytes(&m->pos_embd);
    if (m->output.data != m->tok_embd.data)
        bytes -= matrix_bytes(&m->tok_embd);
    return bytes;
}

const model_hparams *model_hparams_of(const model *m)
{
    return &m->hp;
}

const tok_vocab *model_vocab(const model *m)
{
    return m->vocab;
}

void model_weight_row(const model_weight *w, uint32_t row, float *out)
{
    const uint8_t *p = (const uint8_t *)w->data + (size_t)row * w->row_bytes;
    w->qt->to_f32(p, out, w->n_in);
}
