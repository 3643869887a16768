/* srv_stop.c - stop strings matched across token boundaries (srv_stop.h):
 * text is held back while its tail could still begin a stop string, and
 * nothing from a stop string on is ever released. */
#include "srv_stop.h"

#include <stdlib.h>
#include <string.h>

#include "attnd_utf8.h"

struct srv_stop {
    char *stop[SRV_MAX_STOP];
    size_t stop_len[SRV_MAX_STOP];
    size_t n;
    /* buf[0, len) is text not yet released; its first `emitted` bytes were
     * handed out by the last call and are dropped at the next one, so the
     * pointer given out stays valid until then. */
    char *buf;
    size_t len, cap, emitted;
    bool stopped;
};

srv_stop *srv_stop_new(char *const *stop, const size_t *stop_len, size_t n)
{
    srv_stop *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    /* Past SRV_MAX_STOP (which srv_parse_generate enforces) strings are
     * ignored. An empty stop string would end every generation before it
     * began, so those are skipped too. */
    for (size_t i = 0; i < n && s->n < SRV_MAX_STOP; i++) {
        if (!stop[i] || stop_len[i] == 0)
            continue;
        s->stop[s->n] = malloc(stop_len[i]);
        if (!s->stop[s->n]) {
            srv_stop_free(s);
            return NULL;
        }
        memcpy(s->stop[s->n], stop[i], stop_len[i]);
        s->stop_len[s->n] = stop_len[i];
        s->n++;
    }
    return s;
}

void srv_stop_free(srv_stop *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->stop[i]);
    free(s->buf);
    free(s);
}

/* Start of a UTF-8 character that begins in buf[0, end) and is still
 * unfinished at END (END if there is none): such a character must not be
 * released half-way. */
static size_t utf8_cut(const char *buf, size_t end)
{
    size_t lim = end > ATTND_UTF8_MAX - 1 ? end - (ATTND_UTF8_MAX - 1) : 0;
    for (size_t i = end; i-- > lim;) {
        unsigned char c = (unsigned char)buf[i];
        if ((c & 0xC0) != 0x80) /* the last lead (or ASCII) byte */
            return attnd_utf8_decode(buf + i, end - i, NULL) == 0 ? i : end;
    }
    return end;
}

/* Where the stop string that ends first in buf[0, len) starts (of those
 * ending at the same place, the longest), or len if there is none. Ending
 * first, rather than starting first, is what a stream can decide without
 * seeing the future, so the result does not depend on how the text was cut
 * into feeds. No stop string ends within the first FROM bytes (the text held
 * back from before, which was searched then). */
static size_t find_stop(const srv_stop *s, size_t from)
{
    for (size_t end = from + 1; end <= s->len; end++) {
        size_t best = s->len;
        for (size_t k = 0; k < s->n; k++) {
            size_t n = s->stop_len[k];
            if (n <= end && end - n < best && s->buf[end - 1] == s->stop[k][n - 1] &&
                memcmp(s->buf + end - n, s->stop[k], n) == 0)
                best = end - n;
        }
        if (best < s->len)
            return best;
    }
    return s->len;
}

/* Length of the longest tail of buf[0, len) that is a proper prefix of a
 * stop string (the tail contains no whole stop string, or find_stop would
 * have found it). */
static size_t held_tail(const srv_stop *s)
{
    size_t max = 0;
    for (size_t k = 0; k < s->n; k++)
        if (s->stop_len[k] - 1 > max)
            max = s->stop_len[k] - 1;
    if (max > s->len)
        max = s->len;
    for (size_t t = max; t > 0; t--) {
        const char *tail = s->buf + s->len - t;
        for (size_t k = 0; k < s->n; k++)
            if (s->stop_len[k] > t && s->stop[k][0] == tail[0] && memcmp(tail, s->stop[k], t) == 0)
                return t;
    }
    return 0;
}

int srv_stop_feed(srv_stop *s, const char *text, size_t len, const char **emit,
                  size_t *emit_len, bool *stopped)
{
    *emit = "";
    *emit_len = 0;
    *stopped = s->stopped;
    if (s->stopped)
        return ATTND_OK;
    if (s->emitted) {
        memmove(s->buf, s->buf + s->emitted, s->len - s->emitted);
        s->len -= s->emitted;
        s->emitted = 0;
    }
    size_t old = s->len;
    if (len > 0) {
        if (len > s->cap - s->len) {
            size_t cap = s->cap ? s->cap : 64;
            while (cap - s->len < len)
                cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
            char *b = realloc(s->buf, cap);
            if (!b)
                return ATTND_ENOMEM;
            s->buf = b;
            s->cap = cap;
        }
        memcpy(s->buf + s->len, text, len);
        s->len += len;
    }
    if (s->len == 0)
        return ATTND_OK;
    size_t at = find_stop(s, old);
    size_t release;
    if (at < s->len) {
        s->stopped = true;
        *stopped = true;
        release = utf8_cut(s->buf, at);
    } else {
        release = utf8_cut(s->buf, s->len - held_tail(s));
    }
    s->emitted = release;
    *emit = s->buf;
    *emit_len = release;
    if (s->stopped)
        s->len = release; /* what followed the stop is gone for good */
    return ATTND_OK;
}

void srv_stop_flush(srv_stop *s, const char **emit, size_t *emit_len)
{
    *emit = "";
    *emit_len = 0;
    if (s->stopped || s->emitted >= s->len) {
        s->len = s->emitted = 0;
        return;
    }
    *emit = s->buf + s->emitted;
    *emit_len = s->len - s->emitted;
    /* Dropped at the next feed or flush, like an ordinary emit. */
    s->emitted = s->len;
}
