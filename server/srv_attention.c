/* srv_attention.c - the /v1/attention request fields and its answer
 * (srv_attention.h). */
#include "srv_attention.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnd_half.h"
#include "srv_logprob.h"

/* "layers" / "heads": an array of distinct indices below N (absent or null:
 * all of them, in order). */
static int parse_indices(const cJSON *obj, const char *name, uint32_t n, const char *what,
                         uint32_t *out, uint32_t *n_out, attnd_err *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!it || cJSON_IsNull(it)) {
        if (n > SRV_ATTN_MAX)
            return attnd_err_set(err, ATTND_EINVAL,
                                 "%s: the model has %u; select at most %d of them", name, n,
                                 SRV_ATTN_MAX);
        for (uint32_t i = 0; i < n; i++)
            out[i] = i;
        *n_out = n;
        return ATTND_OK;
    }
    if (!cJSON_IsArray(it) || !it->child)
        return attnd_err_set(err, ATTND_EINVAL, "%s must be a non-empty array of %s indices", name,
                             what);
    uint32_t k = 0;
    for (const cJSON *e = it->child; e; e = e->next, k++) {
        if (k == SRV_ATTN_MAX)
            return attnd_err_set(err, ATTND_EINVAL, "%s: at most %d entries", name, SRV_ATTN_MAX);
        if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || e->valuedouble < 0 ||
            e->valuedouble >= n)
            return attnd_err_set(err, ATTND_EINVAL, "%s[%u]: not a %s of this model (it has %u: 0 to %u)",
                                 name, k, what, n, n - 1);
        out[k] = (uint32_t)e->valuedouble;
        for (uint32_t j = 0; j < k; j++)
            if (out[j] == out[k])
                return attnd_err_set(err, ATTND_EINVAL, "%s[%u]: %u is listed twice", name, k,
                                     out[k]);
    }
    *n_out = k;
    return ATTND_OK;
}

int srv_parse_attention(const char *body, size_t len, const srv_limits *lim, uint64_t random_seed,
                        const model_hparams *hp, srv_gen_req *out, srv_attn_opts *a,
                        attnd_err *err)
{
    memset(a, 0, sizeof *a);
    memset(out, 0, sizeof *out);
    srv_limits l = *lim;
    l.default_max_tokens = 0;
    l.zero_tokens_ok = true;
    cJSON *obj = NULL;
    int rc = srv_parse_object(body, len, &obj, err);
    if (rc)
        return rc;
    if ((rc = srv_parse_generate_fields(body, len, obj, &l, random_seed, out, err)))
        goto fail;
    const cJSON *it;
    if (!cJSON_GetObjectItemCaseSensitive(obj, "temperature"))
        out->sample.temperature = 0.0f; /* greedy unless asked */
    a->n_tokens = out->max_tokens;
    out->max_tokens = a->n_tokens + 1;
    out->cache_prompt = false;
    if (out->stream || out->n_choices > 1) {
        rc = attnd_err_set(err, ATTND_EINVAL, "%s is not supported by /v1/attention",
                           out->stream ? "stream" : "n");
        goto fail;
    }
    if ((rc = parse_indices(obj, "layers", hp->n_layer, "layer", a->layers, &a->n_layers, err)) ||
        (rc = parse_indices(obj, "heads", hp->n_head, "query head", a->heads, &a->n_heads, err)))
        goto fail;
    a->f16 = true;
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "format")) && !cJSON_IsNull(it)) {
        if (!cJSON_IsString(it) ||
            (strcmp(it->valuestring, "f16") != 0 && strcmp(it->valuestring, "json") != 0)) {
            rc = attnd_err_set(err, ATTND_EINVAL, "format must be \"f16\" or \"json\"");
            goto fail;
        }
        a->f16 = strcmp(it->valuestring, "f16") == 0;
    }
    a->top_k = 3;
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "top_k")) && !cJSON_IsNull(it)) {
        if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
            it->valuedouble < 1 || it->valuedouble > SRV_ATTN_TOP_K_MAX) {
            rc = attnd_err_set(err, ATTND_EINVAL, "top_k must be an integer from 1 to %d",
                               SRV_ATTN_TOP_K_MAX);
            goto fail;
        }
        a->top_k = (uint32_t)it->valuedouble;
    }
    cJSON_Delete(obj);
    return ATTND_OK;
fail:
    cJSON_Delete(obj);
    srv_gen_req_free(out);
    return rc;
}

int srv_attention_cells(const srv_attn_opts *a, uint32_t n_positions, uint64_t max_cells,
                        uint64_t *cells, attnd_err *err)
{
    /* at most 256 x 256 x (2^32)^2 would overflow: checked in steps */
    uint64_t sel = (uint64_t)a->n_layers * a->n_heads, sq = (uint64_t)n_positions * n_positions;
    *cells = sq != 0 && sel > UINT64_MAX / sq ? UINT64_MAX : sel * sq;
    if (*cells > max_cells)
        return attnd_err_set(err, ATTND_ERANGE,
                             "attention: %u positions x %u positions x %u layers x %u heads = "
                             "%llu cells, more than attention_max_cells (%llu); select fewer "
                             "layers or heads, or a shorter prompt",
                             n_positions, n_positions, a->n_layers, a->n_heads,
                             (unsigned long long)*cells, (unsigned long long)max_cells);
    return ATTND_OK;
}

static const char k_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* ROWS (n x n of stride LD) as base64 of little-endian halves. */
static char *f16_base64(const float *rows, uint32_t n, uint32_t ld)
{
    size_t bytes = (size_t)n * n * 2, o = 0;
    unsigned char *raw = malloc(bytes ? bytes : 1);
    char *s = malloc((bytes + 2) / 3 * 4 + 1);
    if (!raw || !s) {
        free(raw);
        free(s);
        return NULL;
    }
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < n; j++) {
            uint16_t h = attnd_f32_to_f16(rows[(size_t)i * ld + j]);
            raw[((size_t)i * n + j) * 2] = (unsigned char)(h & 0xff);
            raw[((size_t)i * n + j) * 2 + 1] = (unsigned char)(h >> 8);
        }
    for (size_t i = 0; i < bytes; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (i + 1 < bytes ? (uint32_t)raw[i + 1] << 8 : 0) |
                     (i + 2 < bytes ? raw[i + 2] : 0);
        s[o++] = k_b64[v >> 18 & 63];
        s[o++] = k_b64[v >> 12 & 63];
        s[o++] = i + 1 < bytes ? k_b64[v >> 6 & 63] : '=';
        s[o++] = i + 2 < bytes ? k_b64[v & 63] : '=';
    }
    s[o] = '\0';
    free(raw);
    return s;
}

/* One head's rows (N of stride LD): "probs", "entropy", "top" into H. */
static bool add_head(cJSON *h, const float *rows, uint32_t n, uint32_t ld, const srv_attn_opts *a)
{
    if (a->f16) {
        char *b = f16_base64(rows, n, ld);
        bool ok = b && cJSON_AddStringToObject(h, "probs", b);
        free(b);
        if (!ok)
            return false;
    } else {
        cJSON *probs = cJSON_AddArrayToObject(h, "probs");
        for (uint32_t i = 0; probs && i < n; i++) {
            cJSON *r = cJSON_CreateArray();
            if (!r || !cJSON_AddItemToArray(probs, r)) {
                cJSON_Delete(r);
                return false;
            }
            for (uint32_t j = 0; j <= i; j++)
                if (!cJSON_AddItemToArray(r, cJSON_CreateNumber(rows[(size_t)i * ld + j])))
                    return false;
        }
        if (!probs)
            return false;
    }
    cJSON *ent = cJSON_AddArrayToObject(h, "entropy"), *top = cJSON_AddArrayToObject(h, "top");
    if (!ent || !top)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        const float *r = rows + (size_t)i * ld;
        double e = 0.0;
        for (uint32_t j = 0; j <= i; j++)
            if (r[j] > 0.0f)
                e -= (double)r[j] * log((double)r[j]);
        if (!cJSON_AddItemToArray(ent, cJSON_CreateNumber(e)))
            return false;
        /* the K largest weights, ties to the earlier position */
        uint32_t best[SRV_ATTN_TOP_K_MAX], nb = 0;
        for (uint32_t j = 0; j <= i; j++) {
            uint32_t at;
            if (nb < a->top_k)
                at = nb++;
            else if (r[j] > r[best[a->top_k - 1]])
                at = a->top_k - 1;
            else
                continue;
            while (at > 0 && r[j] > r[best[at - 1]]) {
                best[at] = best[at - 1];
                at--;
            }
            best[at] = j;
        }
        cJSON *t = cJSON_CreateArray();
        if (!t || !cJSON_AddItemToArray(top, t)) {
            cJSON_Delete(t);
            return false;
        }
        for (uint32_t k = 0; k < nb; k++) {
            cJSON *pair = cJSON_CreateArray();
            if (!pair || !cJSON_AddItemToArray(t, pair) ||
                !cJSON_AddItemToArray(pair, cJSON_CreateNumber(best[k])) ||
                !cJSON_AddItemToArray(pair, cJSON_CreateNumber(r[best[k]])))
                return false;
        }
    }
    return true;
}

cJSON *srv_attention_json(const tok_vocab *v, const int32_t *tokens, uint32_t n_tokens,
                          uint32_t n_prompt, uint32_t positions, const srv_attn_opts *a,
                          const float *probs, uint32_t n_rows)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *toks = o ? cJSON_AddArrayToObject(o, "tokens") : NULL;
    bool ok = toks != NULL;
    for (uint32_t i = 0; ok && i < n_tokens; i++) {
        cJSON *t = cJSON_CreateObject();
        char *text = srv_token_text(v, tokens[i]);
        ok = t && text && cJSON_AddItemToArray(toks, t) &&
             cJSON_AddNumberToObject(t, "id", tokens[i]) && cJSON_AddStringToObject(t, "text", text);
        if (!ok && t && !text)
            cJSON_Delete(t);
        free(text);
    }
    cJSON *ls = NULL, *hs = NULL, *att = NULL;
    ok = ok && cJSON_AddNumberToObject(o, "n_prompt", n_prompt) &&
         cJSON_AddNumberToObject(o, "positions", positions) &&
         (ls = cJSON_AddArrayToObject(o, "layers")) && (hs = cJSON_AddArrayToObject(o, "heads")) &&
         cJSON_AddStringToObject(o, "format", a->f16 ? "f16" : "json") &&
         (att = cJSON_AddArrayToObject(o, "attention"));
    for (uint32_t k = 0; ok && k < a->n_layers; k++)
        ok = cJSON_AddItemToArray(ls, cJSON_CreateNumber(a->layers[k]));
    for (uint32_t m = 0; ok && m < a->n_heads; m++)
        ok = cJSON_AddItemToArray(hs, cJSON_CreateNumber(a->heads[m]));
    for (uint32_t k = 0; ok && k < a->n_layers; k++)
        for (uint32_t m = 0; ok && m < a->n_heads; m++) {
            cJSON *h = cJSON_CreateObject();
            ok = h && cJSON_AddItemToArray(att, h) &&
                 cJSON_AddNumberToObject(h, "layer", a->layers[k]) &&
                 cJSON_AddNumberToObject(h, "head", a->heads[m]) &&
                 add_head(h, probs + ((size_t)k * a->n_heads + m) * n_rows * n_rows, positions,
                          n_rows, a);
        }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}
