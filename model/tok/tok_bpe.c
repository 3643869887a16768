/* tok_bpe.c - byte-level BPE encoding (tokenizer.ggml.model = "gpt2"): the
 * vocabulary's pre-tokenizer (tok_pre.c) cuts the text into chunks, each
 * chunk's bytes become GPT-2's printable code points, and adjacent symbols
 * merge by the rank of tokenizer.ggml.merges, as llama.cpp's
 * llm_tokenizer_bpe does. */
#include "tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnd_ckd.h"
#include "attnd_utf8.h"

/* bytes_to_unicode() of GPT-2: printable Latin-1 bytes stand for themselves,
 * the other 68 bytes (controls, space, DEL..NBSP, soft hyphen) take code
 * points from U+0100 on, in byte order. */
uint32_t tok_bpe_byte_to_cp(uint8_t b)
{
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)
        return b;
    if (b <= 0x20)
        return 0x100u + b;               /* 33 bytes: U+0100..U+0120 */
    if (b <= 0xA0)
        return 0x100u + 33 + (b - 0x7Fu); /* 34 bytes: U+0121..U+0142 */
    return 0x143;                        /* 0xAD */
}

int tok_bpe_cp_to_byte(uint32_t cp)
{
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF))
        return (int)cp;
    if (cp >= 0x100 && cp <= 0x120)
        return (int)(cp - 0x100);
    if (cp >= 0x121 && cp <= 0x142)
        return (int)(cp - 0x121 + 0x7F);
    if (cp == 0x143)
        return 0xAD;
    return -1;
}

/* Scratch buffers reused over the chunks of one encode call. */
typedef struct bpe_work {
    char *mapped; /* the chunk's bytes as UTF-8 of their code points */
    size_t mapped_cap;
    tok_sym *syms;
    size_t syms_cap;
    tok_merger merger;
} bpe_work;

static bool bpe_pair(const tok_vocab *v, const char *left, size_t left_n, const char *right,
                     size_t right_n, double *prio)
{
    int32_t rank = tok_map_get_pair(&v->merges, left, left_n, right, right_n);
    if (rank < 0)
        return false;
    *prio = -(double)rank; /* lower rank merges first */
    return true;
}

static int emit_symbol(const tok_vocab *v, const tok_sym *s, tok_ids *out, attnd_err *err)
{
    int32_t id = tok_map_get(&v->tokens, s->text, s->n);
    if (id >= 0)
        return tok_ids_push(out, id, err);
    /* Not a token (an incomplete vocabulary): one token per byte. */
    for (size_t i = 0; i < s->n;) {
        uint32_t cp = 0;
        int k = attnd_utf8_decode(s->text + i, s->n - i, &cp);
        i += k > 0 ? (size_t)k : 1;
        int b = k > 0 ? tok_bpe_cp_to_byte(cp) : -1;
        int32_t t = b >= 0 ? v->byte_tok[b] : -1;
        if (t < 0)
            t = v->unk;
        if (t >= 0) {
            int rc = tok_ids_push(out, t, err);
            if (rc != ATTND_OK)
                return rc;
        }
    }
    return ATTND_OK;
}

static int encode_chunk(const tok_vocab *v, const char *chunk, size_t n, bpe_work *w,
                        tok_ids *out, attnd_err *err)
{
    int rc;
    if (n == 0)
        return ATTND_OK;
    uint64_t mapped_n;
    if (!attnd_ckd_mul(n, 2, &mapped_n) || mapped_n > SIZE_MAX)
        return attnd_err_set(err, ATTND_ENOMEM, "tok_encode: chunk too long");
    if ((rc = tok_reserve((void **)&w->mapped, &w->mapped_cap, (size_t)mapped_n, 1, err)) ||
        (rc = tok_reserve((void **)&w->syms, &w->syms_cap, n, sizeof *w->syms, err)))
        return rc;
    /* Every byte is one symbol: one mapped code point of 1 or 2 bytes. */
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = attnd_utf8_encode(tok_bpe_byte_to_cp((uint8_t)chunk[i]), w->mapped + off);
        w->syms[i].text = w->mapped + off;
        w->syms[i].n = k;
        w->syms[i].prev = i > 0 ? i - 1 : TOK_NONE;
        w->syms[i].next = i + 1 < n ? i + 1 : TOK_NONE;
        off += k;
    }
    if (tok_pre_ignores_merges(v->pre)) {
        /* Llama 3: a chunk that is a token is that token, whatever merges
         * would have made of it. */
        int32_t id = tok_map_get(&v->tokens, w->mapped, off);
        if (id >= 0)
            return tok_ids_push(out, id, err);
    }
    if ((rc = tok_merge(v, bpe_pair, w->syms, n, &w->merger, err)) != ATTND_OK)
        return rc;
    for (size_t i = 0; i != TOK_NONE; i = w->syms[i].next)
        if ((rc = emit_symbol(v, &w->syms[i], out, err)) != ATTND_OK)
            return rc;
    return ATTND_OK;
}

struct bpe_ctx {
    const tok_vocab *v;
    bpe_work *w;
    tok_ids *out;
};

static int bpe_chunk(void *ctx, const char *chunk, size_t n, attnd_err *err)
{
    struct bpe_ctx *c = ctx;
    return encode_chunk(c->v, chunk, n, c->w, c->out, err);
}

int tok_bpe_encode(const tok_vocab *v, const char *text, size_t len, tok_ids *out,
                   attnd_err *err)
{
    bpe_work w;
    memset(&w, 0, sizeof w);
    struct bpe_ctx c = {v, &w, out};
    int rc = tok_pre_split(v->pre, text, len, bpe_chunk, &c, err);
    tok_merger_free(&w.merger);
    free(w.syms);
    free(w.mapped);
    return rc;
}
