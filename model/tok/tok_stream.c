/* tok_stream.c - incremental decoding for streamed output: turns token ids
 * into text that is always whole, valid UTF-8 characters, holding back the
 * start of a character that byte tokens have not finished yet. */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

#include "attnd_ckd.h"
#include "attnd_utf8.h"

#define REPLACEMENT "\xEF\xBF\xBD" /* U+FFFD */

struct tok_stream {
    const tok_vocab *v;
    bool strip; /* the dummy-prefix space is still to be removed */
    /* Held-back beginning of a character: always a valid, unfinished prefix,
     * so shorter than ATTND_UTF8_MAX. */
    char pend[ATTND_UTF8_MAX];
    size_t n_pend;
    char *work; /* pend + the current piece */
    size_t work_cap;
    char *out;
    size_t out_cap;
};

tok_stream *tok_stream_new(const tok_vocab *v, bool at_text_start)
{
    if (!v)
        return NULL;
    tok_stream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->v = v;
    s->strip = at_text_start && v->kind == TOK_KIND_SPM && v->add_space_prefix;
    s->work_cap = 64;
    s->out_cap = 3 * 64;
    s->work = malloc(s->work_cap);
    s->out = malloc(s->out_cap);
    if (!s->work || !s->out) {
        tok_stream_free(s);
        return NULL;
    }
    return s;
}

void tok_stream_free(tok_stream *s)
{
    if (!s)
        return;
    free(s->work);
    free(s->out);
    free(s);
}

static int grow(char **p, size_t *cap, uint64_t need, attnd_err *err)
{
    if (need <= *cap)
        return ATTND_OK;
    if (need > SIZE_MAX / 2)
        return attnd_err_set(err, ATTND_ENOMEM, "tok_stream: piece too long");
    size_t ncap = (size_t)need * 2;
    char *np = realloc(*p, ncap);
    if (!np)
        return attnd_err_set(err, ATTND_ENOMEM, "tok_stream: out of memory");
    *p = np;
    *cap = ncap;
    return ATTND_OK;
}

int tok_stream_push(tok_stream *s, int32_t id, const char **out, size_t *out_len,
                    attnd_err *err)
{
    if (out)
        *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!s || !out || !out_len)
        return attnd_err_set(err, ATTND_EINVAL, "tok_stream_push: invalid arguments");
    const tok_vocab *v = s->v;
    size_t room = s->work_cap - s->n_pend;
    long r = tok_piece(v, id, s->work + s->n_pend, room);
    if (r < 0)
        return attnd_err_set(err, ATTND_EINVAL,
                             "token id %ld is out of range (the vocabulary has %d tokens)",
                             (long)id, v->n_vocab);
    size_t k = (size_t)r;
    if (k > room) {
        int rc = grow(&s->work, &s->work_cap, (uint64_t)s->n_pend + k, err);
        if (rc != ATTND_OK)
            return rc;
        (void)tok_piece(v, id, s->work + s->n_pend, k);
    }
    char *piece = s->work + s->n_pend;
    if (s->strip && k > 0) {
        if (piece[0] == ' ') {
            memmove(piece, piece + 1, k - 1);
            k--;
        }
        s->strip = false;
    }
    memcpy(s->work, s->pend, s->n_pend);
    size_t n = s->n_pend + k;
    s->n_pend = 0;

    /* Worst case each byte becomes a 3-byte U+FFFD. */
    uint64_t need;
    if (!attnd_ckd_mul(n, 3, &need))
        return attnd_err_set(err, ATTND_ENOMEM, "tok_stream: piece too long");
    int rc = grow(&s->out, &s->out_cap, need, err);
    if (rc != ATTND_OK)
        return rc;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int c = attnd_utf8_decode(s->work + i, n - i, NULL);
        if (c > 0) {
            memcpy(s->out + o, s->work + i, (size_t)c);
            o += (size_t)c;
            i += (size_t)c;
        } else if (c < 0) {
            memcpy(s->out + o, REPLACEMENT, 3);
            o += 3;
            i += (size_t)-c;
        } else {
            /* An unfinished character at the end: wait for the next piece. */
            s->n_pend = n - i;
            memcpy(s->pend, s->work + i, s->n_pend);
            break;
        }
    }
    *out = s->out;
    *out_len = o;
    return ATTND_OK;
}

int tok_stream_flush(tok_stream *s, const char **out, size_t *out_len)
{
    if (out)
        *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!s || !out || !out_len)
        return ATTND_EINVAL;
    size_t o = 0;
    if (s->n_pend > 0) {
        /* The held bytes are one unfinished character: one U+FFFD, as a
         * decoder substitutes for a truncated sequence. out_cap >= 3 always. */
        memcpy(s->out, REPLACEMENT, 3);
        o = 3;
        s->n_pend = 0;
    }
    *out = s->out;
    *out_len = o;
    return ATTND_OK;
}
