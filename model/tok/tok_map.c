/* tok_map.c - the string map from token texts (and merge pairs) to ids, and
 * the growable id list every encoder appends to (tok_internal.h). */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

#include "attnd_ckd.h"

/* ============================================================ string map */

static uint64_t fnv1a(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

#define FNV_OFFSET 0xcbf29ce484222325ull

int tok_map_init(tok_map *m, size_t n_keys, attnd_err *err)
{
    /* At most half full keeps linear probes short. */
    size_t cap = 16;
    while (cap / 2 < n_keys) {
        if (cap > SIZE_MAX / 4 / sizeof(tok_map_slot))
            return attnd_err_set(err, ATTND_ENOMEM, "tokenizer: map of %zu keys is too large",
                                 n_keys);
        cap *= 2;
    }
    m->slots = calloc(cap, sizeof *m->slots);
    if (!m->slots)
        return attnd_err_set(err, ATTND_ENOMEM, "tokenizer: out of memory for a map of %zu keys",
                             n_keys);
    m->mask = cap - 1;
    return ATTND_OK;
}

void tok_map_free(tok_map *m)
{
    free(m->slots);
    m->slots = NULL;
    m->mask = 0;
}

void tok_map_put(tok_map *m, const char *key, size_t len, int32_t val, bool overwrite)
{
    uint64_t h = fnv1a(FNV_OFFSET, key, len);
    for (size_t i = (size_t)h & m->mask;; i = (i + 1) & m->mask) {
        tok_map_slot *s = &m->slots[i];
        if (!s->key) {
            s->key = key;
            s->len = len;
            s->hash = h;
            s->val = val;
            return;
        }
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) {
            if (overwrite)
                s->val = val;
            return;
        }
    }
}

int32_t tok_map_get(const tok_map *m, const char *key, size_t len)
{
    if (!m->slots)
        return -1;
    uint64_t h = fnv1a(FNV_OFFSET, key, len);
    for (size_t i = (size_t)h & m->mask;; i = (i + 1) & m->mask) {
        const tok_map_slot *s = &m->slots[i];
        if (!s->key)
            return -1;
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0)
            return s->val;
    }
}

int32_t tok_map_get_pair(const tok_map *m, const char *a, size_t alen, const char *b,
                         size_t blen)
{
    if (!m->slots)
        return -1;
    uint64_t h = fnv1a(fnv1a(fnv1a(FNV_OFFSET, a, alen), " ", 1), b, blen);
    size_t len = alen + 1 + blen;
    for (size_t i = (size_t)h & m->mask;; i = (i + 1) & m->mask) {
        const tok_map_slot *s = &m->slots[i];
        if (!s->key)
            return -1;
        if (s->hash == h && s->len == len && memcmp(s->key, a, alen) == 0 &&
            s->key[alen] == ' ' && memcmp(s->key + alen + 1, b, blen) == 0)
            return s->val;
    }
}

/* ============================================================ id list */

int tok_reserve(void **p, size_t *cap, size_t need, size_t elem, attnd_err *err)
{
    if (need <= *cap)
        return ATTND_OK;
    size_t n = *cap > 8 ? *cap : 8;
    while (n < need)
        n = n <= SIZE_MAX / 2 ? n * 2 : need;
    uint64_t bytes;
    if (!attnd_ckd_mul(n, elem, &bytes) || bytes > SIZE_MAX)
        return attnd_err_set(err, ATTND_ENOMEM, "tokenizer: %zu elements are too many", need);
    void *np = realloc(*p, (size_t)bytes);
    if (!np)
        return attnd_err_set(err, ATTND_ENOMEM, "tokenizer: out of memory for %zu elements", need);
    *p = np;
    *cap = n;
    return ATTND_OK;
}

int tok_ids_push(tok_ids *ids, int32_t id, attnd_err *err)
{
    int rc = tok_reserve((void **)&ids->v, &ids->cap, ids->n + 1, sizeof *ids->v, err);
    if (rc == ATTND_OK)
        ids->v[ids->n++] = id;
    return rc;
}

