/* tok_encode.c - text to ids: control and user-defined tokens written in the
 * text are cut out first (when asked), the pieces between them go to the
 * vocabulary kind's encoder, and BOS/EOS are added as the vocabulary says. */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

/* A fragment of the text: raw bytes [off, off + len) or one special token. */
typedef struct frag {
    size_t off, len;
    int32_t id; /* -1: raw text */
} frag;

typedef struct frags {
    frag *v;
    size_t n, cap;
} frags;

static int frags_push(frags *fs, frag f, attnd_err *err)
{
    int rc = tok_reserve((void **)&fs->v, &fs->cap, fs->n + 1, sizeof *fs->v, err);
    if (rc == ATTND_OK)
        fs->v[fs->n++] = f;
    return rc;
}

/* Cuts every occurrence of special token ID out of the raw fragments of IN,
 * into OUT. */
static int cut_token(const tok_vocab *v, int32_t id, const char *text, const frags *in,
                     frags *out, attnd_err *err)
{
    const char *t = tok_text_of(v, id);
    size_t tn = tok_len_of(v, id);
    int rc = ATTND_OK;
    out->n = 0;
    for (size_t k = 0; rc == ATTND_OK && k < in->n; k++) {
        frag f = in->v[k];
        if (f.id >= 0 || f.len < tn) {
            rc = frags_push(out, f, err);
            continue;
        }
        size_t pos = f.off, end = f.off + f.len;
        while (rc == ATTND_OK && pos < end) {
            const char *hit = memmem(text + pos, end - pos, t, tn);
            if (!hit)
                break;
            size_t at = (size_t)(hit - text);
            if (at > pos)
                rc = frags_push(out, (frag){pos, at - pos, -1}, err);
            if (rc == ATTND_OK)
                rc = frags_push(out, (frag){at, tn, id}, err);
            pos = at + tn;
        }
        if (rc == ATTND_OK && pos < end)
            rc = frags_push(out, (frag){pos, end - pos, -1}, err);
    }
    return rc;
}

/* The text as raw fragments and special tokens. */
static int partition(const tok_vocab *v, const char *text, size_t len, bool parse_special,
                     frags *fs, attnd_err *err)
{
    frags tmp = {NULL, 0, 0};
    int rc = frags_push(fs, (frag){0, len, -1}, err);
    for (size_t i = 0; rc == ATTND_OK && i < v->n_specials; i++) {
        int32_t id = v->specials[i];
        if (!parse_special && v->types[id] != TOK_TYPE_USER_DEFINED)
            continue;
        if ((rc = cut_token(v, id, text, fs, &tmp, err)) != ATTND_OK)
            break;
        frags t = *fs;
        *fs = tmp;
        tmp = t;
    }
    free(tmp.v);
    return rc;
}

static int encode_text(const tok_vocab *v, const char *text, size_t len, bool parse_special,
                       tok_ids *out, attnd_err *err)
{
    frags fs = {NULL, 0, 0};
    int rc = partition(v, text, len, parse_special, &fs, err);
    bool after_special = true; /* the input's start counts as one */
    for (size_t k = 0; rc == ATTND_OK && k < fs.n; k++) {
        const frag *f = &fs.v[k];
        if (f->id >= 0) {
            rc = tok_ids_push(out, f->id, err);
            after_special = true;
            continue;
        }
        if (v->kind == TOK_KIND_SPM) {
            rc = tok_spm_encode(v, text + f->off, f->len, v->add_space_prefix && after_special,
                                out, err);
        } else if (tok_pre_nfc(v->pre)) {
            /* normalized piece by piece: special tokens are matched on the
             * text as written, as Hugging Face's tokenizers do */
            char *norm;
            size_t norm_len;
            if ((rc = tok_nfc(text + f->off, f->len, &norm, &norm_len, err)) == ATTND_OK)
                rc = tok_bpe_encode(v, norm, norm_len, out, err);
            free(norm);
        } else {
            rc = tok_bpe_encode(v, text + f->off, f->len, out, err);
        }
        after_special = false;
    }
    free(fs.v);
    return rc;
}

int tok_encode(const tok_vocab *v, const char *text, size_t len, unsigned flags, int32_t **ids,
               size_t *n_ids, attnd_err *err)
{
    if (ids)
        *ids = NULL;
    if (n_ids)
        *n_ids = 0;
    if (!v || !ids || !n_ids || (!text && len > 0) ||
        (flags & ~(unsigned)(TOK_ADD_SPECIAL | TOK_PARSE_SPECIAL)))
        return attnd_err_set(err, ATTND_EINVAL, "tok_encode: invalid arguments");
    bool add_special = flags & TOK_ADD_SPECIAL;
    tok_ids out = {NULL, 0, 0};
    int rc = ATTND_OK;
    if (add_special && tok_adds_bos(v))
        rc = tok_ids_push(&out, v->bos, err);
    if (rc == ATTND_OK && len > 0)
        rc = encode_text(v, text, len, flags & TOK_PARSE_SPECIAL, &out, err);
    if (rc == ATTND_OK && add_special && tok_adds_eos(v))
        rc = tok_ids_push(&out, v->eos, err);
    if (rc == ATTND_OK && !out.v) {
        /* Always hand back an allocation, so callers can free() without a check. */
        out.v = malloc(sizeof *out.v);
        if (!out.v)
            rc = attnd_err_set(err, ATTND_ENOMEM, "tok_encode: out of memory");
    }
    if (rc != ATTND_OK) {
        free(out.v);
        return rc;
    }
    *ids = out.v;
    *n_ids = out.n;
    return ATTND_OK;
}
