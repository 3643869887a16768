/* tok_bpe.c - GPT-2 byte-level BPE encoding (tokenizer.ggml.model = "gpt2"):
 * the GPT-2 pre-tokenizer regex (run by PCRE2 with Unicode properties) cuts
 * the text into chunks, each chunk's bytes become GPT-2's printable code
 * points, and adjacent symbols merge by the rank of tokenizer.ggml.merges,
 * as llama.cpp's llm_tokenizer_bpe does. */
#include "tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "attnd_ckd.h"
#include "attnd_utf8.h"

struct tok_bpe_state {
    pcre2_code *re; /* read-only once compiled: shared by all threads */
};

static const char k_gpt2_split[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

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

int tok_bpe_init(tok_vocab *v, attnd_err *err)
{
    v->bpe = calloc(1, sizeof *v->bpe);
    if (!v->bpe)
        return attnd_err_set(err, ATTND_ENOMEM, "tokenizer: out of memory");
    int ec;
    PCRE2_SIZE eoff;
    /* MATCH_INVALID_UTF: invalid bytes simply never match (instead of failing
     * the whole match), and the subject is not re-validated on each call,
     * which would make chunking quadratic. */
    v->bpe->re = pcre2_compile((PCRE2_SPTR)k_gpt2_split, PCRE2_ZERO_TERMINATED,
                               PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ec, &eoff, NULL);
    if (!v->bpe->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return attnd_err_set(err, ATTND_EUNSUPPORTED,
                             "tokenizer: GPT-2 pre-tokenizer regex: %s (at offset %zu)",
                             (const char *)msg, (size_t)eoff);
    }
    /* JIT is only an optimisation: without it, the interpreter runs. */
    (void)pcre2_jit_compile(v->bpe->re, PCRE2_JIT_COMPLETE);
    return ATTND_OK;
}

void tok_bpe_fini(tok_vocab *v)
{
    if (v->bpe) {
        pcre2_code_free(v->bpe->re);
        free(v->bpe);
        v->bpe = NULL;
    }
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

static int reserve(void **p, size_t *cap, size_t n, size_t elem, attnd_err *err)
{
    if (n <= *cap)
        return ATTND_OK;
    uint64_t bytes;
    if (!attnd_ckd_mul(n, elem, &bytes) || bytes > SIZE_MAX)
        return attnd_err_set(err, ATTND_ENOMEM, "tok_encode: chunk of %zu bytes is too long", n);
    void *np = realloc(*p, (size_t)bytes);
    if (!np)
        return attnd_err_set(err, ATTND_ENOMEM, "tok_encode: out of memory");
    *p = np;
    *cap = n;
    return ATTND_OK;
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
    uint64_t mapped_n;
    if (!attnd_ckd_mul(n, 2, &mapped_n) || mapped_n > SIZE_MAX)
        return attnd_err_set(err, ATTND_ENOMEM, "tok_encode: chunk too long");
    if ((rc = reserve((void **)&w->mapped, &w->mapped_cap, (size_t)mapped_n, 1, err)) ||
        (rc = reserve((void **)&w->syms, &w->syms_cap, n, sizeof *w->syms, err)))
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
    if ((rc = tok_merge(v, bpe_pair, w->syms, n, &w->merger, err)) != ATTND_OK)
        return rc;
    for (size_t i = 0; i != TOK_NONE; i = w->syms[i].next)
        if ((rc = emit_symbol(v, &w->syms[i], out, err)) != ATTND_OK)
            return rc;
    return ATTND_OK;
}

int tok_bpe_encode(const tok_vocab *v, const char *text, size_t len, tok_ids *out,
                   attnd_err *err)
{
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(v->bpe->re, NULL);
    if (!md)
        return attnd_err_set(err, ATTND_ENOMEM, "tok_encode: out of memory");
    bpe_work w;
    memset(&w, 0, sizeof w);
    int rc = ATTND_OK;
    size_t pos = 0;
    while (rc == ATTND_OK && pos < len) {
        int mrc = pcre2_match(v->bpe->re, (PCRE2_SPTR)text, len, pos, 0, md, NULL);
        size_t ms, me;
        if (mrc == PCRE2_ERROR_NOMATCH) {
            ms = me = len;
        } else if (mrc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(mrc, msg, sizeof msg);
            rc = attnd_err_set(err, ATTND_EINVAL,
                               "tok_encode: GPT-2 pre-tokenizer failed at byte %zu: %s", pos,
                               (const char *)msg);
            break;
        } else {
            const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            ms = ov[0];
            me = ov[1];
        }
        /* Bytes no match covers are invalid UTF-8 (every valid character
         * matches some alternative): each becomes a chunk of its own. */
        for (; rc == ATTND_OK && pos < ms; pos++)
            rc = encode_chunk(v, text + pos, 1, &w, out, err);
        if (rc != ATTND_OK)
            break;
        if (me > ms) {
            rc = encode_chunk(v, text + ms, me - ms, &w, out, err);
            pos = me;
        } else if (ms < len) {
            /* An empty match cannot happen with this pattern; still, make
             * progress deterministically. */
            rc = encode_chunk(v, text + ms, 1, &w, out, err);
            pos = ms + 1;
        }
    }
    tok_merger_free(&w.merger);
    free(w.syms);
    free(w.mapped);
    pcre2_match_data_free(md);
    return rc;
}
