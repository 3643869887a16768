/* srv_logprob.c - log-probabilities of generated tokens (srv_logprob.h). */
#include "srv_logprob.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attnd_utf8.h"

void srv_logprob_compute(const float *logits, int32_t n_vocab, int32_t token, uint32_t top,
                         srv_logprob *out)
{
    double mx = -INFINITY;
    for (int32_t i = 0; i < n_vocab; i++)
        if (logits[i] > mx)
            mx = logits[i];
    double sum = 0.0;
    for (int32_t i = 0; i < n_vocab; i++)
        sum += exp((double)logits[i] - mx);
    double lse = mx + log(sum);
    out->id = token;
    out->logprob = (float)((double)logits[token] - lse);
    if (top > SRV_MAX_TOP_LOGPROBS)
        top = SRV_MAX_TOP_LOGPROBS;
    if (top > (uint32_t)n_vocab)
        top = (uint32_t)n_vocab;
    /* one pass keeping the best TOP by insertion: top is small */
    uint32_t n = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        float x = logits[i];
        if (n == top && (top == 0 || x <= logits[out->top_id[n - 1]]))
            continue;
        uint32_t k = n < top ? n++ : n - 1;
        while (k > 0 && logits[out->top_id[k - 1]] < x) {
            out->top_id[k] = out->top_id[k - 1];
            k--;
        }
        out->top_id[k] = i;
    }
    out->n_top = n;
    for (uint32_t k = 0; k < n; k++)
        out->top_logprob[k] = (float)((double)logits[out->top_id[k]] - lse);
}

/* The bytes token ID stands for (malloc'd, *LEN), and their text made valid
 * UTF-8 for JSON (a token may hold part of a character: U+FFFD). */
static char *piece_of(const tok_vocab *v, int32_t id, size_t *len, char **text)
{
    long n = tok_piece(v, id, NULL, 0);
    char *b = malloc(n > 0 ? (size_t)n + 1 : 1);
    *text = NULL;
    if (!b)
        return NULL;
    if (n > 0)
        tok_piece(v, id, b, (size_t)n);
    *len = n > 0 ? (size_t)n : 0;
    char *t = malloc(*len * 3 + 1);
    if (!t) {
        free(b);
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < *len;) {
        int k = attnd_utf8_decode(b + i, *len - i, NULL);
        if (k > 0 && memchr(b + i, '\0', (size_t)k) == NULL) {
            memcpy(t + o, b + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        } else {
            o += attnd_utf8_encode(ATTND_UTF8_REPLACEMENT, t + o);
            i += k < 0 ? (size_t)-k : k > 0 ? (size_t)k : *len - i;
        }
    }
    t[o] = '\0';
    *text = t;
    return b;
}

char *srv_token_text(const tok_vocab *v, int32_t id)
{
    size_t len;
    char *text, *bytes = piece_of(v, id, &len, &text);
    free(bytes);
    return text;
}

static cJSON *bytes_array(const char *b, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++)
        if (!cJSON_AddItemToArray(a, cJSON_CreateNumber((unsigned char)b[i]))) {
            cJSON_Delete(a);
            return NULL;
        }
    return a;
}

/* {"token", "logprob"} plus "id" (generate) or "bytes" (chat). */
static cJSON *entry(const tok_vocab *v, int32_t id, float lp, bool with_id, bool with_bytes)
{
    size_t n;
    char *text, *b = piece_of(v, id, &n, &text);
    cJSON *o = cJSON_CreateObject();
    bool ok = b && o && (!with_id || cJSON_AddNumberToObject(o, "id", id)) &&
              cJSON_AddStringToObject(o, "token", text) &&
              cJSON_AddNumberToObject(o, "logprob", lp);
    if (ok && with_bytes) {
        cJSON *ba = bytes_array(b, n);
        ok = ba && cJSON_AddItemToObject(o, "bytes", ba);
        if (!ok)
            cJSON_Delete(ba);
    }
    free(b);
    free(text);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *entries(const srv_logprob *lp, size_t n, const tok_vocab *v, bool with_id,
                      bool with_bytes)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < n; i++) {
        cJSON *e = entry(v, lp[i].id, lp[i].logprob, with_id, with_bytes);
        cJSON *tops = cJSON_CreateArray();
        bool ok = e && tops;
        for (uint32_t k = 0; ok && k < lp[i].n_top; k++)
            ok = cJSON_AddItemToArray(
                tops, entry(v, lp[i].top_id[k], lp[i].top_logprob[k], with_id, with_bytes));
        if (ok && cJSON_AddItemToObject(e, "top_logprobs", tops) && cJSON_AddItemToArray(arr, e))
            continue;
        cJSON_Delete(tops);
        cJSON_Delete(e);
        cJSON_Delete(arr);
        return NULL;
    }
    return arr;
}

cJSON *srv_logprobs_generate(const srv_logprob *lp, size_t n, const tok_vocab *v)
{
    return entries(lp, n, v, true, false);
}

cJSON *srv_logprobs_chat(const srv_logprob *lp, size_t n, const tok_vocab *v)
{
    cJSON *o = cJSON_CreateObject(), *arr = entries(lp, n, v, false, true);
    if (o && arr && cJSON_AddItemToObject(o, "content", arr))
        return o;
    cJSON_Delete(arr);
    cJSON_Delete(o);
    return NULL;
}

cJSON *srv_logprobs_completion(const srv_logprob *lp, size_t n, const tok_vocab *v,
                               size_t offset0)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *toks = cJSON_AddArrayToObject(o, "tokens");
    cJSON *lps = cJSON_AddArrayToObject(o, "token_logprobs");
    cJSON *tops = cJSON_AddArrayToObject(o, "top_logprobs");
    cJSON *offs = cJSON_AddArrayToObject(o, "text_offset");
    bool ok = o && toks && lps && tops && offs;
    size_t off = offset0;
    for (size_t i = 0; ok && i < n; i++) {
        size_t len;
        char *text, *b = piece_of(v, lp[i].id, &len, &text);
        cJSON *top = cJSON_CreateObject();
        ok = b && top && cJSON_AddItemToArray(toks, cJSON_CreateString(text)) &&
             cJSON_AddItemToArray(lps, cJSON_CreateNumber(lp[i].logprob)) &&
             cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += len;
        free(b);
        free(text);
        for (uint32_t k = 0; ok && k < lp[i].n_top; k++) {
            size_t tl;
            char *tt, *tb = piece_of(v, lp[i].top_id[k], &tl, &tt);
            ok = tb && !cJSON_GetObjectItemCaseSensitive(top, tt)
                     ? cJSON_AddNumberToObject(top, tt, lp[i].top_logprob[k]) != NULL
                     : tb != NULL; /* two tokens with one text: the likelier one stays */
            free(tb);
            free(tt);
        }
        if (ok)
            ok = cJSON_AddItemToArray(tops, top);
        else
            cJSON_Delete(top);
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}
