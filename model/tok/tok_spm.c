/* tok_spm.c - SentencePiece BPE encoding (tokenizer.ggml.model = "llama"),
 * matching llama.cpp's llm_tokenizer_spm: dummy-prefix space, spaces as
 * U+2581, score-driven merging of adjacent symbols, <0xXX> byte fallback. */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

#include "attnd_ckd.h"
#include "attnd_utf8.h"

#define SPM_SPACE "\xE2\x96\x81" /* U+2581 LOWER ONE EIGHTH BLOCK */

/* A pair may merge when its concatenation is a token; the token's score is
 * the priority. Symbols are adjacent, so the concatenation is LEFT itself,
 * extended. */
static bool spm_pair(const tok_vocab *v, const char *left, size_t left_n, const char *right,
                     size_t right_n, double *prio)
{
    (void)right;
    int32_t id = tok_map_get(&v->tokens, left, left_n + right_n);
    if (id < 0)
        return false;
    *prio = v->scores ? (double)v->scores[id] : 0.0;
    return true;
}

static int emit_symbol(const tok_vocab *v, const tok_sym *s, tok_ids *out, attnd_err *err)
{
    int32_t id = tok_map_get(&v->tokens, s->text, s->n);
    if (id >= 0)
        return tok_ids_push(out, id, err);
    /* Not a token: spell it with byte tokens so nothing is lost. */
    for (size_t i = 0; i < s->n; i++) {
        int32_t b = v->byte_tok[(unsigned char)s->text[i]];
        if (b < 0)
            b = v->unk;
        if (b >= 0) {
            int rc = tok_ids_push(out, b, err);
            if (rc != ATTND_OK)
                return rc;
        }
    }
    return ATTND_OK;
}

int tok_spm_encode(const tok_vocab *v, const char *text, size_t len, bool space_prefix,
                   tok_ids *out, attnd_err *err)
{
    if (len == 0)
        return ATTND_OK;
    /* Worst case every byte is a space that becomes 3 bytes, plus the prefix. */
    uint64_t cap, sym_bytes;
    if (!attnd_ckd_mul(len, 3, &cap) || !attnd_ckd_add(cap, 3, &cap) || cap > SIZE_MAX ||
        !attnd_ckd_mul(cap, sizeof(tok_sym), &sym_bytes) || sym_bytes > SIZE_MAX)
        return attnd_err_set(err, ATTND_ENOMEM, "tok_encode: text of %zu bytes is too long", len);
    char *buf = malloc((size_t)cap);
    if (!buf)
        return attnd_err_set(err, ATTND_ENOMEM, "tok_encode: out of memory");

    size_t n = 0;
    if (space_prefix) {
        memcpy(buf, SPM_SPACE, 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(buf + n, SPM_SPACE, 3);
            n += 3;
        } else {
            buf[n++] = text[i];
        }
    }

    /* One symbol per character; an invalid byte is a symbol of its own, so
     * it ends up as its own byte token. The symbol count is at most n. */
    tok_sym *syms = malloc(n * sizeof *syms);
    if (!syms) {
        free(buf);
        return attnd_err_set(err, ATTND_ENOMEM, "tok_encode: out of memory");
    }
    size_t ns = 0;
    for (size_t off = 0; off < n; ns++) {
        int k = attnd_utf8_decode(buf + off, n - off, NULL);
        size_t cl = k > 0 ? (size_t)k : 1;
        syms[ns].text = buf + off;
        syms[ns].n = cl;
        syms[ns].prev = ns > 0 ? ns - 1 : TOK_NONE;
        syms[ns].next = ns + 1;
        off += cl;
    }
    syms[ns - 1].next = TOK_NONE;

    tok_merger m = {NULL, 0, 0};
    int rc = tok_merge(v, spm_pair, syms, ns, &m, err);
    for (size_t i = 0; rc == ATTND_OK && i != TOK_NONE; i = syms[i].next)
        rc = emit_symbol(v, &syms[i], out, err);
    tok_merger_free(&m);
    free(syms);
    free(buf);
    return rc;
}
