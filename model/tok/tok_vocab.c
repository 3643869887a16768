/* tok_vocab.c - the tokenizer vocabulary: loading and validating
 * tokenizer.ggml.* metadata into a self-contained tok_vocab, and its
 * accessors (tok.h). */
#include "tok_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnd_ckd.h"
#include "attnd_utf8.h"

#define K_MODEL "tokenizer.ggml.model"
#define K_TOKENS "tokenizer.ggml.tokens"
#define K_SCORES "tokenizer.ggml.scores"
#define K_TYPES "tokenizer.ggml.token_type"
#define K_MERGES "tokenizer.ggml.merges"
#define K_PRE "tokenizer.ggml.pre"

/* ============================================================ loading */

static const char *describe_type(const gguf_value *val, char *buf, size_t cap)
{
    gguf_type t = gguf_value_type(val);
    if (t == GGUF_TYPE_ARRAY)
        snprintf(buf, cap, "array of %s", gguf_type_name(gguf_array_elem_type(val)));
    else
        snprintf(buf, cap, "%s", gguf_type_name(t));
    return buf;
}

/* An array of ELEM values under KEY with N entries (N = 0: any length > 0).
 * Returns ATTND_OK, or an error naming the key. */
static int get_array(const gguf_file *f, const char *key, gguf_type elem, uint64_t n,
                     const char *n_from, const gguf_value **out, attnd_err *err)
{
    char tbuf[64];
    const gguf_value *val = gguf_get(f, key);
    *out = val;
    if (!val)
        return attnd_err_set(err, ATTND_ENOTFOUND, "%s: missing", key);
    if (gguf_value_type(val) != GGUF_TYPE_ARRAY || gguf_array_elem_type(val) != elem)
        return attnd_err_set(err, ATTND_EFORMAT, "%s: expected an array of %s, got %s", key,
                             gguf_type_name(elem), describe_type(val, tbuf, sizeof tbuf));
    uint64_t len = gguf_array_len(val);
    if (n && len != n)
        return attnd_err_set(err, ATTND_EFORMAT, "%s: has %llu entries but %s has %llu", key,
                             (unsigned long long)len, n_from, (unsigned long long)n);
    if (len == 0)
        return attnd_err_set(err, ATTND_EFORMAT, "%s: empty", key);
    return ATTND_OK;
}

/* Printable rendering of an untrusted string for an error message
 * (CAP >= 5). */
static const char *sanitize(const gguf_str *s, char *buf, size_t cap)
{
    size_t j = 0;
    uint64_t i = 0;
    for (; i < s->len && j < cap - 4; i++) {
        unsigned char c = (unsigned char)s->ptr[i];
        buf[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (i < s->len) {
        memcpy(buf + j, "...", 3);
        j += 3;
    }
    buf[j] = '\0';
    return buf;
}

static int load_tokens(const gguf_file *f, tok_vocab *v, attnd_err *err)
{
    const gguf_value *tv;
    int rc = get_array(f, K_TOKENS, GGUF_TYPE_STRING, 0, NULL, &tv, err);
    if (rc != ATTND_OK)
        return rc;
    uint64_t n = gguf_array_len(tv);
    /* Ids are int32_t, and text_off has n + 1 entries. */
    if (n > (uint64_t)INT32_MAX - 1)
        return attnd_err_set(err, ATTND_ERANGE, "%s: %llu tokens is more than supported (%d)",
                             K_TOKENS, (unsigned long long)n, INT32_MAX - 1);
    v->n_vocab = (int32_t)n;

    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        gguf_str s;
        if (!gguf_array_str(tv, i, &s))
            return attnd_err_set(err, ATTND_EFORMAT, "%s[%llu]: not a string", K_TOKENS,
                                 (unsigned long long)i);
        if (!attnd_ckd_add(total, s.len, &total) || !attnd_ckd_add(total, 1, &total))
            return attnd_err_set(err, ATTND_ERANGE, "%s: total text size overflows", K_TOKENS);
    }
    uint64_t off_bytes;
    if (total > SIZE_MAX || !attnd_ckd_mul(n + 1, sizeof(size_t), &off_bytes) ||
        off_bytes > SIZE_MAX)
        return attnd_err_set(err, ATTND_ERANGE, "%s: too large", K_TOKENS);
    v->arena = malloc((size_t)total);
    v->text_off = malloc((size_t)off_bytes);
    v->types = malloc((size_t)n);
    if (!v->arena || !v->text_off || !v->types)
        return attnd_err_set(err, ATTND_ENOMEM, "%s: out of memory for %llu tokens", K_TOKENS,
                             (unsigned long long)n);
    if ((rc = tok_map_init(&v->tokens, (size_t)n, err)) != ATTND_OK)
        return rc;

    size_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        gguf_str s;
        (void)gguf_array_str(tv, i, &s);
        v->text_off[i] = off;
        memcpy(v->arena + off, s.ptr, (size_t)s.len);
        v->arena[off + s.len] = '\0';
        /* A duplicate text maps to its last id, as in llama.cpp. An empty text
         * can never be produced by merging, so it need not be findable. */
        if (s.len > 0)
            tok_map_put(&v->tokens, v->arena + off, (size_t)s.len, (int32_t)i, true);
        off += (size_t)s.len + 1;
    }
    v->text_off[n] = off;
    return ATTND_OK;
}

static int load_scores(const gguf_file *f, tok_vocab *v, attnd_err *err)
{
    if (!gguf_get(f, K_SCORES))
        return ATTND_OK; /* optional: every score 0 */
    const gguf_value *sv;
    int rc = get_array(f, K_SCORES, GGUF_TYPE_FLOAT32, (uint64_t)v->n_vocab, K_TOKENS, &sv, err);
    if (rc != ATTND_OK)
        return rc;
    v->scores = malloc((size_t)v->n_vocab * sizeof *v->scores);
    if (!v->scores)
        return attnd_err_set(err, ATTND_ENOMEM, "%s: out of memory", K_SCORES);
    for (int32_t i = 0; i < v->n_vocab; i++) {
        double d;
        if (!gguf_array_f64(sv, (uint64_t)i, &d))
            return attnd_err_set(err, ATTND_EFORMAT, "%s[%d]: unreadable", K_SCORES, i);
        /* NaN would make the merge order depend on heap layout. */
        if (isnan(d))
            return attnd_err_set(err, ATTND_EFORMAT, "%s[%d]: not a number", K_SCORES, i);
        v->scores[i] = (float)d;
    }
    return ATTND_OK;
}

bool tok_is_byte_text(const char *t, size_t n, unsigned *byte)
{
    if (n != 6 || memcmp(t, "<0x", 3) != 0 || t[5] != '>')
        return false;
    unsigned x = 0;
    for (int i = 3; i < 5; i++) {
        char c = t[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return false;
        x = x * 16 + d;
    }
    *byte = x;
    return true;
}

static int load_types(const gguf_file *f, tok_vocab *v, attnd_err *err)
{
    if (!gguf_get(f, K_TYPES)) {
        /* Without types, recognise what decoding must treat specially: byte
         * tokens of a SentencePiece vocabulary (see also load_specials). */
        for (int32_t i = 0; i < v->n_vocab; i++) {
            unsigned b;
            bool byte = v->kind == TOK_KIND_SPM &&
                        tok_is_byte_text(tok_text_of(v, i), tok_len_of(v, i), &b);
            v->types[i] = (uint8_t)(byte ? TOK_TYPE_BYTE : TOK_TYPE_NORMAL);
        }
        return ATTND_OK;
    }
    const gguf_value *tv;
    int rc = get_array(f, K_TYPES, GGUF_TYPE_INT32, (uint64_t)v->n_vocab, K_TOKENS, &tv, err);
    if (rc != ATTND_OK)
        return rc;
    for (int32_t i = 0; i < v->n_vocab; i++) {
        int64_t t;
        if (!gguf_array_i64(tv, (uint64_t)i, &t))
            return attnd_err_set(err, ATTND_EFORMAT, "%s[%d]: unreadable", K_TYPES, i);
        if (t < TOK_TYPE_UNDEFINED || t > TOK_TYPE_BYTE)
            return attnd_err_set(err, ATTND_EFORMAT, "%s[%d]: unknown token type %lld", K_TYPES,
                                 i, (long long)t);
        v->types[i] = (uint8_t)t;
    }
    return ATTND_OK;
}

static int load_merges(const gguf_file *f, tok_vocab *v, attnd_err *err)
{
    const gguf_value *mv;
    int rc = get_array(f, K_MERGES, GGUF_TYPE_STRING, 0, NULL, &mv, err);
    if (rc != ATTND_OK)
        return rc;
    uint64_t n = gguf_array_len(mv);
    if (n > (uint64_t)INT32_MAX)
        return attnd_err_set(err, ATTND_ERANGE, "%s: %llu merges is more than supported",
                             K_MERGES, (unsigned long long)n);
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        gguf_str s;
        if (!gguf_array_str(mv, i, &s))
            return attnd_err_set(err, ATTND_EFORMAT, "%s[%llu]: not a string", K_MERGES,
                                 (unsigned long long)i);
        /* "left right"; the search starts at 1 so a left part may itself be
         * a space (llama.cpp splits the same way). */
        if (s.len < 3 || !memchr(s.ptr + 1, ' ', (size_t)s.len - 2))
            return attnd_err_set(err, ATTND_EFORMAT, "%s[%llu]: no space separator", K_MERGES,
                                 (unsigned long long)i);
        if (!attnd_ckd_add(total, s.len, &total) || !attnd_ckd_add(total, 1, &total))
            return attnd_err_set(err, ATTND_ERANGE, "%s: total text size overflows", K_MERGES);
    }
    if (total > SIZE_MAX)
        return attnd_err_set(err, ATTND_ERANGE, "%s: too large", K_MERGES);
    v->merge_arena = malloc((size_t)total);
    if (!v->merge_arena)
        return attnd_err_set(err, ATTND_ENOMEM, "%s: out of memory", K_MERGES);
    if ((rc = tok_map_init(&v->merges, (size_t)n, err)) != ATTND_OK)
        return rc;
    size_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        gguf_str s;
        (void)gguf_array_str(mv, i, &s);
        memcpy(v->merge_arena + off, s.ptr, (size_t)s.len);
        v->merge_arena[off + s.len] = '\0';
        /* The first occurrence of a pair keeps its rank (llama.cpp emplace). */
        tok_map_put(&v->merges, v->merge_arena + off, (size_t)s.len, (int32_t)i, false);
        off += (size_t)s.len + 1;
    }
    v->n_merges = (size_t)n;
    return ATTND_OK;
}

static int load_special(const gguf_file *f, const tok_vocab *v, const char *key, int32_t def,
                        int32_t *out, attnd_err *err)
{
    char tbuf[64];
    const gguf_value *val = gguf_get(f, key);
    if (!val) {
        *out = def < v->n_vocab ? def : -1;
        return ATTND_OK;
    }
    int64_t x;
    if (!gguf_value_i64(val, &x))
        return attnd_err_set(err, ATTND_EFORMAT, "%s: expected an integer, got %s", key,
                             describe_type(val, tbuf, sizeof tbuf));
    /* Converters write UINT32_MAX (or -1) for "this vocabulary has none",
     * e.g. the padding id of llama2.c exports. */
    if (x == -1 || x == (int64_t)UINT32_MAX) {
        *out = -1;
        return ATTND_OK;
    }
    if (x < 0 || x >= v->n_vocab)
        return attnd_err_set(err, ATTND_ERANGE,
                             "%s: token id %lld is out of range (the vocabulary has %d tokens)",
                             key, (long long)x, v->n_vocab);
    *out = (int32_t)x;
    return ATTND_OK;
}

static int load_flag(const gguf_file *f, const char *key, bool def, bool *out, attnd_err *err)
{
    char tbuf[64];
    const gguf_value *val = gguf_get(f, key);
    if (!val) {
        *out = def;
        return ATTND_OK;
    }
    if (!gguf_value_bool(val, out))
        return attnd_err_set(err, ATTND_EFORMAT, "%s: expected a bool, got %s", key,
                             describe_type(val, tbuf, sizeof tbuf));
    return ATTND_OK;
}

static int load_specials(const gguf_file *f, tok_vocab *v, attnd_err *err)
{
    bool spm = v->kind == TOK_KIND_SPM;
    int rc;
    /* SentencePiece exports conventionally use 0/1/2 for unk/bos/eos (llama.cpp's
     * defaults). llama.cpp's GPT-2 default of id 11 is a placeholder, so a GPT-2
     * vocabulary without the keys simply has no such tokens. */
    if ((rc = load_special(f, v, "tokenizer.ggml.bos_token_id", spm ? 1 : -1, &v->bos, err)) ||
        (rc = load_special(f, v, "tokenizer.ggml.eos_token_id", spm ? 2 : -1, &v->eos, err)) ||
        (rc = load_special(f, v, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1, &v->unk, err)) ||
        (rc = load_special(f, v, "tokenizer.ggml.padding_token_id", -1, &v->pad, err)) ||
        (rc = load_special(f, v, "tokenizer.ggml.eot_token_id", -1, &v->eot, err)) ||
        (rc = load_special(f, v, "tokenizer.ggml.eom_token_id", -1, &v->eom, err)))
        return rc;
    /* Defaults: a llama vocabulary without the flag adds BOS (llama2.c exports
     * such as stories260K expect it); GPT-2 never did. */
    if ((rc = load_flag(f, "tokenizer.ggml.add_bos_token", spm, &v->add_bos, err)) ||
        (rc = load_flag(f, "tokenizer.ggml.add_eos_token", false, &v->add_eos, err)) ||
        (rc = load_flag(f, "tokenizer.ggml.add_space_prefix", spm, &v->add_space_prefix, err)))
        return rc;

    if (!gguf_get(f, K_TYPES)) {
        /* No types in the file: make the special tokens decode to nothing, as
         * their types would have said. */
        if (v->bos >= 0)
            v->types[v->bos] = TOK_TYPE_CONTROL;
        if (v->eos >= 0)
            v->types[v->eos] = TOK_TYPE_CONTROL;
        if (v->pad >= 0)
            v->types[v->pad] = TOK_TYPE_CONTROL;
        if (v->unk >= 0)
            v->types[v->unk] = TOK_TYPE_UNKNOWN;
    }
    return ATTND_OK;
}

static void find_byte_tokens(tok_vocab *v)
{
    static const char hex[] = "0123456789ABCDEF";
    for (unsigned b = 0; b < 256; b++) {
        if (v->kind == TOK_KIND_SPM) {
            char t[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
            v->byte_tok[b] = tok_map_get(&v->tokens, t, sizeof t);
        } else {
            char t[ATTND_UTF8_MAX];
            size_t n = attnd_utf8_encode(tok_bpe_byte_to_cp((uint8_t)b), t);
            v->byte_tok[b] = tok_map_get(&v->tokens, t, n);
        }
    }
}

static void eog_add(tok_vocab *v, int32_t id)
{
    if (id < 0 || v->n_eog == sizeof v->eog / sizeof v->eog[0])
        return;
    for (size_t i = 0; i < v->n_eog; i++)
        if (v->eog[i] == id)
            return;
    v->eog[v->n_eog++] = id;
}

/* End of generation: EOS, the end-of-turn and end-of-message tokens the file
 * names, and the control tokens chat models end a turn with, which converters
 * do not always name (Llama 3's <|eot_id|> in files without eot_token_id). */
static void find_eog(tok_vocab *v)
{
    static const char *const names[] = {
        "<|eot_id|>",    "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
        "<|endoftext|>", "<EOT>",      "<|end_of_text|>",
        "<\xEF\xBD\x9C\x65nd\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", /* DeepSeek */
    };
    v->n_eog = 0;
    eog_add(v, v->eos);
    eog_add(v, v->eot);
    eog_add(v, v->eom);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int32_t id = tok_map_get(&v->tokens, names[i], strlen(names[i]));
        if (id >= 0 && v->types[id] == TOK_TYPE_CONTROL)
            eog_add(v, id);
    }
}

static int by_length_desc(const void *pa, const void *pb, void *arg)
{
    const tok_vocab *v = arg;
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    size_t la = tok_len_of(v, a), lb = tok_len_of(v, b);
    if (la != lb)
        return la > lb ? -1 : 1;
    return a < b ? -1 : a > b;
}

/* Tokens a text may spell that are cut out before BPE/SentencePiece see it:
 * control and unknown ones when the caller parses special tokens, user-defined
 * ones always; longest first, as llama.cpp partitions. */
static bool is_special(const tok_vocab *v, int32_t id)
{
    return (v->types[id] == TOK_TYPE_CONTROL || v->types[id] == TOK_TYPE_USER_DEFINED ||
            v->types[id] == TOK_TYPE_UNKNOWN) &&
           tok_len_of(v, id) > 0;
}

static int find_specials(tok_vocab *v, attnd_err *err)
{
    size_t n = 0;
    for (int32_t id = 0; id < v->n_vocab; id++)
        n += is_special(v, id);
    v->specials = malloc((n ? n : 1) * sizeof *v->specials);
    if (!v->specials)
        return attnd_err_set(err, ATTND_ENOMEM, "tokenizer: out of memory");
    v->n_specials = 0;
    for (int32_t id = 0; id < v->n_vocab; id++)
        if (is_special(v, id))
            v->specials[v->n_specials++] = id;
    qsort_r(v->specials, v->n_specials, sizeof *v->specials, by_length_desc, v);
    return ATTND_OK;
}

static int load_pre(const gguf_file *f, tok_vocab *v, attnd_err *err)
{
    char tbuf[64];
    const gguf_value *pv = gguf_get(f, K_PRE);
    gguf_str pre = {"default", 7};
    if (pv && !gguf_value_str(pv, &pre))
        return attnd_err_set(err, ATTND_EFORMAT, "%s: expected a string, got %s", K_PRE,
                             describe_type(pv, tbuf, sizeof tbuf));
    bool known;
    int rc = tok_pre_new(pre.ptr, pre.len, &v->pre, &known, err);
    if (rc == ATTND_OK && !known)
        snprintf(v->warning, sizeof v->warning,
                 "%s \"%s\" is not known: using the GPT-2 pre-tokenizer (text may tokenize "
                 "differently from the model's own tokenizer)",
                 K_PRE, tok_pre_name(v->pre));
    return rc;
}

static int load_all(const gguf_file *f, tok_vocab *v, attnd_err *err)
{
    char tbuf[64], nbuf[80];
    const gguf_value *mv = gguf_get(f, K_MODEL);
    gguf_str model;
    if (!mv)
        return attnd_err_set(err, ATTND_ENOTFOUND, "%s: missing", K_MODEL);
    if (!gguf_value_str(mv, &model))
        return attnd_err_set(err, ATTND_EFORMAT, "%s: expected a string, got %s", K_MODEL,
                             describe_type(mv, tbuf, sizeof tbuf));
    if (model.len == 5 && memcmp(model.ptr, "llama", 5) == 0)
        v->kind = TOK_KIND_SPM;
    else if (model.len == 4 && memcmp(model.ptr, "gpt2", 4) == 0)
        v->kind = TOK_KIND_BPE;
    else
        return attnd_err_set(err, ATTND_EUNSUPPORTED,
                             "%s: unsupported tokenizer \"%s\" (supported: llama, gpt2)", K_MODEL,
                             sanitize(&model, nbuf, sizeof nbuf));
    int rc;
    if ((rc = load_tokens(f, v, err)) || (rc = load_scores(f, v, err)) ||
        (rc = load_types(f, v, err)) || (rc = load_specials(f, v, err)))
        return rc;
    if (v->kind == TOK_KIND_BPE) {
        if ((rc = load_merges(f, v, err)) || (rc = load_pre(f, v, err)))
            return rc;
    }
    find_byte_tokens(v);
    find_eog(v);
    const gguf_value *ct = gguf_get(f, "tokenizer.chat_template");
    gguf_str tmpl;
    if (ct && gguf_value_str(ct, &tmpl)) {
        if (!(v->chat_template = malloc(tmpl.len + 1)))
            return attnd_err_set(err, ATTND_ENOMEM, "tokenizer: out of memory");
        memcpy(v->chat_template, tmpl.ptr, tmpl.len);
        v->chat_template[tmpl.len] = '\0';
        v->chat_template_len = tmpl.len;
    }
    return find_specials(v, err);
}

int tok_load(const gguf_file *f, tok_vocab **out, attnd_err *err)
{
    if (!out)
        return attnd_err_set(err, ATTND_EINVAL, "tok_load: no output pointer");
    *out = NULL;
    if (!f)
        return attnd_err_set(err, ATTND_EINVAL, "tok_load: no gguf file");
    tok_vocab *v = calloc(1, sizeof *v);
    if (!v)
        return attnd_err_set(err, ATTND_ENOMEM, "tokenizer: out of memory");
    v->bos = v->eos = v->unk = v->pad = v->eot = v->eom = -1;
    int rc = load_all(f, v, err);
    if (rc != ATTND_OK) {
        tok_free(v);
        return rc;
    }
    *out = v;
    return ATTND_OK;
}

void tok_free(tok_vocab *v)
{
    if (!v)
        return;
    tok_pre_free(v->pre);
    free(v->specials);
    free(v->chat_template);
    tok_map_free(&v->tokens);
    tok_map_free(&v->merges);
    free(v->arena);
    free(v->text_off);
    free(v->types);
    free(v->scores);
    free(v->merge_arena);
    free(v);
}

/* ============================================================ accessors */

tok_kind tok_kind_of(const tok_vocab *v)
{
    return v->kind;
}

const char *tok_kind_name(tok_kind k)
{
    switch (k) {
    case TOK_KIND_SPM: return "llama (SentencePiece BPE)";
    case TOK_KIND_BPE: return "gpt2 (byte-level BPE)";
    }
    return "?";
}

int32_t tok_n_vocab(const tok_vocab *v)
{
    return v->n_vocab;
}

size_t tok_n_merges(const tok_vocab *v)
{
    return v->n_merges;
}

int32_t tok_bos(const tok_vocab *v)
{
    return v->bos;
}

int32_t tok_eos(const tok_vocab *v)
{
    return v->eos;
}

int32_t tok_unk(const tok_vocab *v)
{
    return v->unk;
}

int32_t tok_pad(const tok_vocab *v)
{
    return v->pad;
}

bool tok_adds_bos(const tok_vocab *v)
{
    return v->add_bos && v->bos >= 0;
}

bool tok_adds_eos(const tok_vocab *v)
{
    return v->add_eos && v->eos >= 0;
}

size_t tok_eog_ids(const tok_vocab *v, const int32_t **ids)
{
    *ids = v->eog;
    return v->n_eog;
}

const char *tok_pre_type(const tok_vocab *v)
{
    return v->pre ? tok_pre_name(v->pre) : NULL;
}

const char *tok_chat_template(const tok_vocab *v, size_t *len)
{
    if (len)
        *len = v->chat_template_len;
    return v->chat_template;
}

const char *tok_warning(const tok_vocab *v)
{
    return v->warning[0] ? v->warning : NULL;
}

bool tok_is_eog(const tok_vocab *v, int32_t id)
{
    for (size_t i = 0; i < v->n_eog; i++)
        if (v->eog[i] == id)
            return true;
    return false;
}

const char *tok_text(const tok_vocab *v, int32_t id, size_t *len)
{
    if (!v || id < 0 || id >= v->n_vocab) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = tok_len_of(v, id);
    return tok_text_of(v, id);
}

tok_type tok_type_of(const tok_vocab *v, int32_t id)
{
    if (!v || id < 0 || id >= v->n_vocab)
        return TOK_TYPE_UNDEFINED;
    return (tok_type)v->types[id];
}

