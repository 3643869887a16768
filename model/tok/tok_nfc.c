/* tok_nfc.c - Unicode Normalization Form C, for vocabularies whose tokenizer
 * normalizes text before pre-tokenization (Qwen's tokenizer.json says NFC).
 *
 * The textbook algorithm (UAX #15): full canonical decomposition (Hangul
 * syllables by arithmetic, the rest from tok_nfc_table.h), canonical ordering
 * of combining marks, then canonical composition of each mark with the last
 * starter when nothing between blocks it. Bytes that are not valid UTF-8 are
 * copied through untouched, so tokenization stays lossless. */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

#include "attnd_ckd.h"
#include "attnd_utf8.h"
#include "tok_nfc_table.h"

#define S_BASE 0xAC00u
#define L_BASE 0x1100u
#define V_BASE 0x1161u
#define T_BASE 0x11A7u
#define L_COUNT 19u
#define V_COUNT 21u
#define T_COUNT 28u
#define N_COUNT (V_COUNT * T_COUNT)
#define S_COUNT (L_COUNT * N_COUNT)

static uint8_t ccc_of(uint32_t cp)
{
    size_t lo = 0, hi = sizeof k_nfc_ccc / sizeof k_nfc_ccc[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < k_nfc_ccc[mid].first)
            hi = mid;
        else if (cp > k_nfc_ccc[mid].last)
            lo = mid + 1;
        else
            return k_nfc_ccc[mid].ccc;
    }
    return 0;
}

/* The one-level canonical decomposition of CP, or -1. */
static long decomp_of(uint32_t cp)
{
    size_t lo = 0, hi = sizeof k_nfc_decomp / sizeof k_nfc_decomp[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < k_nfc_decomp[mid].cp)
            hi = mid;
        else if (cp > k_nfc_decomp[mid].cp)
            lo = mid + 1;
        else
            return (long)mid;
    }
    return -1;
}

/* The primary composite of A + B, or 0. */
static uint32_t compose(uint32_t a, uint32_t b)
{
    if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
        return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
    if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 && b > T_BASE &&
        b < T_BASE + T_COUNT)
        return a + (b - T_BASE);
    size_t lo = 0, hi = sizeof k_nfc_comp / sizeof k_nfc_comp[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        uint32_t f = k_nfc_comp[mid].first, s = k_nfc_comp[mid].second;
        if (a < f || (a == f && b < s))
            hi = mid;
        else if (a > f || b > s)
            lo = mid + 1;
        else
            return k_nfc_comp[mid].composite;
    }
    return 0;
}

typedef struct cps {
    uint32_t *v;
    size_t n, cap;
} cps;

static bool cps_push(cps *c, uint32_t cp)
{
    if (tok_reserve((void **)&c->v, &c->cap, c->n + 1, sizeof *c->v, NULL) != ATTND_OK)
        return false;
    c->v[c->n++] = cp;
    return true;
}

/* Appends the full canonical decomposition of CP (depth is bounded: the
 * data nests at most four levels). */
static bool decompose(cps *c, uint32_t cp, int depth)
{
    if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
        uint32_t s = cp - S_BASE, t = s % T_COUNT;
        if (!cps_push(c, L_BASE + s / N_COUNT) || !cps_push(c, V_BASE + (s % N_COUNT) / T_COUNT))
            return false;
        return t == 0 || cps_push(c, T_BASE + t);
    }
    long k = depth < 8 ? decomp_of(cp) : -1;
    if (k < 0)
        return cps_push(c, cp);
    if (!decompose(c, k_nfc_decomp[k].first, depth + 1))
        return false;
    return k_nfc_decomp[k].second == 0 || decompose(c, k_nfc_decomp[k].second, depth + 1);
}

/* NFC of the valid UTF-8 in C's code points, in place. */
static void normalize(cps *c)
{
    /* canonical order: a stable insertion sort of each run of marks */
    for (size_t i = 1; i < c->n; i++) {
        uint8_t k = ccc_of(c->v[i]);
        if (k == 0)
            continue;
        for (size_t j = i; j > 0 && ccc_of(c->v[j - 1]) > k; j--) {
            uint32_t t = c->v[j];
            c->v[j] = c->v[j - 1];
            c->v[j - 1] = t;
        }
    }
    /* composition with the last starter, unless blocked */
    size_t out = 0, starter = SIZE_MAX;
    int last_ccc = -1;
    for (size_t i = 0; i < c->n; i++) {
        uint32_t cp = c->v[i];
        uint8_t k = ccc_of(cp);
        if (starter != SIZE_MAX && (last_ccc < k || (last_ccc == 0 && out == starter + 1))) {
            uint32_t comp = compose(c->v[starter], cp);
            if (comp) {
                c->v[starter] = comp;
                continue;
            }
        }
        if (k == 0) {
            starter = out;
            last_ccc = 0;
        } else {
            last_ccc = k;
        }
        c->v[out++] = cp;
    }
    c->n = out;
}

int tok_nfc(const char *text, size_t len, char **out, size_t *out_len, attnd_err *err)
{
    *out = NULL;
    *out_len = 0;
    uint64_t cap;
    /* Decomposition then composition never grows UTF-8 beyond 3x (a 2-byte
     * character becomes at most 3 code points of 3 bytes, recomposed). */
    if (!attnd_ckd_mul(len, 3, &cap) || !attnd_ckd_add(cap, 1, &cap) || cap > SIZE_MAX)
        return attnd_err_set(err, ATTND_ENOMEM, "tok_encode: text of %zu bytes is too long", len);
    char *buf = malloc((size_t)cap);
    cps c = {NULL, 0, 0};
    if (!buf)
        return attnd_err_set(err, ATTND_ENOMEM, "tok_encode: out of memory");
    size_t n = 0, i = 0;
    while (i < len) {
        /* one run of valid UTF-8, normalized as a whole */
        c.n = 0;
        while (i < len) {
            uint32_t cp;
            int k = attnd_utf8_decode(text + i, len - i, &cp);
            if (k <= 0)
                break;
            if (!decompose(&c, cp, 0)) {
                free(c.v);
                free(buf);
                return attnd_err_set(err, ATTND_ENOMEM, "tok_encode: out of memory");
            }
            i += (size_t)k;
        }
        normalize(&c);
        for (size_t j = 0; j < c.n; j++) {
            char u[ATTND_UTF8_MAX];
            size_t k = attnd_utf8_encode(c.v[j], u);
            if (n + k > (size_t)cap) { /* cannot happen (see cap); stay safe */
                free(c.v);
                free(buf);
                return attnd_err_set(err, ATTND_EIO, "tok_encode: NFC output overflow");
            }
            memcpy(buf + n, u, k);
            n += k;
        }
        if (i < len) /* an invalid byte: as it is */
            buf[n++] = text[i++];
    }
    free(c.v);
    *out = buf;
    *out_len = n;
    return ATTND_OK;
}
