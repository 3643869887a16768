/* tok_decode.c - ids back to bytes: one token's piece, a whole decode, and
 * what each token kind contributes to text (tok.h). */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

#include "attnd_ckd.h"
#include "attnd_utf8.h"

/* ============================================================ pieces */

/* snprintf-like sink: counts everything, stores what fits. */
typedef struct sink {
    char *buf;
    size_t cap, n;
} sink;

static void sink_put(sink *s, const char *p, size_t n)
{
    if (s->n < s->cap) {
        size_t k = s->cap - s->n < n ? s->cap - s->n : n;
        memcpy(s->buf + s->n, p, k);
    }
    s->n += n;
}

static void piece_spm_normal(sink *s, const char *t, size_t n)
{
    size_t run = 0; /* start of the bytes not yet written */
    for (size_t i = 0; i + 3 <= n;) {
        if (memcmp(t + i, "\xE2\x96\x81", 3) == 0) {
            sink_put(s, t + run, i - run);
            sink_put(s, " ", 1);
            i += 3;
            run = i;
        } else {
            i++;
        }
    }
    sink_put(s, t + run, n - run);
}

static void piece_bpe_normal(sink *s, const char *t, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = attnd_utf8_decode(t + i, n - i, &cp);
        if (k > 0) {
            int b = tok_bpe_cp_to_byte(cp);
            if (b >= 0) {
                char c = (char)(unsigned char)b;
                sink_put(s, &c, 1);
            } else {
                /* Not from the byte mapping (e.g. a token added by hand):
                 * the text stands for itself. */
                sink_put(s, t + i, (size_t)k);
            }
            i += (size_t)k;
        } else {
            sink_put(s, t + i, 1);
            i++;
        }
    }
}

long tok_piece(const tok_vocab *v, int32_t id, char *buf, size_t cap)
{
    if (!v || id < 0 || id >= v->n_vocab)
        return -1;
    sink s = {buf, buf ? cap : 0, 0};
    const char *t = tok_text_of(v, id);
    size_t n = tok_len_of(v, id);
    unsigned byte;
    /* As llama.cpp renders tokens when not showing special ones: control,
     * unknown, unused and undefined tokens are invisible, user-defined tokens
     * are their literal text. */
    switch ((tok_type)v->types[id]) {
    case TOK_TYPE_USER_DEFINED:
        sink_put(&s, t, n);
        break;
    case TOK_TYPE_BYTE:
    case TOK_TYPE_NORMAL:
        if (v->types[id] == TOK_TYPE_BYTE && v->kind == TOK_KIND_SPM) {
            if (tok_is_byte_text(t, n, &byte)) {
                char c = (char)(unsigned char)byte;
                sink_put(&s, &c, 1);
            } else {
                sink_put(&s, t, n);
            }
        } else if (v->kind == TOK_KIND_SPM) {
            piece_spm_normal(&s, t, n);
        } else {
            /* In a byte-level vocabulary even byte tokens are mapped text. */
            piece_bpe_normal(&s, t, n);
        }
        break;
    case TOK_TYPE_UNDEFINED:
    case TOK_TYPE_UNKNOWN:
    case TOK_TYPE_CONTROL:
    case TOK_TYPE_UNUSED:
        break;
    }
    return (long)s.n;
}

/* ============================================================ decode/encode */

int tok_decode(const tok_vocab *v, const int32_t *ids, size_t n, bool at_text_start,
               char **text, size_t *len, attnd_err *err)
{
    if (text)
        *text = NULL;
    if (len)
        *len = 0;
    if (!v || !text || !len || (!ids && n > 0))
        return attnd_err_set(err, ATTND_EINVAL, "tok_decode: invalid arguments");
    size_t cap = 64, used = 0;
    char *buf = malloc(cap);
    if (!buf)
        return attnd_err_set(err, ATTND_ENOMEM, "tok_decode: out of memory");
    bool strip = at_text_start && v->kind == TOK_KIND_SPM && v->add_space_prefix;
    for (size_t i = 0; i < n; i++) {
        long r = tok_piece(v, ids[i], buf + used, cap - used - 1);
        if (r < 0) {
            free(buf);
            return attnd_err_set(err, ATTND_EINVAL,
                                 "ids[%zu]: token id %ld is out of range (the vocabulary has %d "
                                 "tokens)",
                                 i, (long)ids[i], v->n_vocab);
        }
        size_t k = (size_t)r;
        if (k > cap - used - 1) {
            uint64_t want;
            if (!attnd_ckd_add(used, k, &want) || !attnd_ckd_add(want, 1, &want) ||
                want > SIZE_MAX / 2) {
                free(buf);
                return attnd_err_set(err, ATTND_ENOMEM, "tok_decode: text too long");
            }
            size_t ncap = cap * 2 > want ? cap * 2 : (size_t)want * 2;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                return attnd_err_set(err, ATTND_ENOMEM, "tok_decode: out of memory");
            }
            buf = nb;
            cap = ncap;
            (void)tok_piece(v, ids[i], buf + used, cap - used - 1);
        }
        if (strip && k > 0) {
            /* The dummy prefix appears as the first produced byte, a space. */
            if (buf[used] == ' ') {
                memmove(buf + used, buf + used + 1, k - 1);
                k--;
            }
            strip = false;
        }
        used += k;
    }
    buf[used] = '\0';
    *text = buf;
    *len = used;
    return ATTND_OK;
}

