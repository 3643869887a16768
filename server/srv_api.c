/* srv_api.c - the HTTP API's request parsing and validation, the error JSON
 * and the stop-string matcher (see srv_api.h). Everything here sees bytes
 * straight from clients, so every rule is checked before a value is used or
 * converted, and the messages name the field a client got wrong. */
#include "srv_api.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnd_utf8.h"
#include "srv_logprob.h"
#include "tok.h"

/* Largest seed accepted: 2^53 - 1. JSON numbers arrive as doubles, and every
 * integer below 2^53 is exact while 2^53 + 1 already rounds to 2^53; stopping
 * just below makes any accepted seed the one the client wrote. */
#define SEED_MAX 9007199254740991.0
#define REPEAT_LAST_N_MAX 1048576.0

/* ---- body and fields ---------------------------------------------------- */

static bool json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* cJSON decodes "\u0000" into a NUL inside valuestring, which C string
 * handling would silently truncate (a key "prompt\u0000x" would even be read
 * as "prompt"). cJSON keeps no lengths, so the escapes are looked for in the
 * source text: it is valid JSON by the time this runs, and the members of the
 * top-level object appear in it in the same order as the object's children.
 * Returns whether the value of TARGET (a child of OBJ, or NULL) contains such
 * an escape; *KEY_NUL tells whether any top-level key does. */
static bool scan_nul(const char *s, size_t len, const cJSON *obj, const cJSON *target,
                     bool *key_nul)
{
    int depth = 0;
    bool want_key = false, found = false;
    const cJSON *member = NULL;
    size_t i = 0;
    *key_nul = false;
    while (i < len) {
        char c = s[i++];
        if (c == '{' || c == '[') {
            if (++depth == 1)
                want_key = c == '{';
        } else if (c == '}' || c == ']') {
            depth--;
        } else if (c == ',' && depth == 1) {
            want_key = true;
        } else if (c == '"') {
            bool is_key = depth == 1 && want_key;
            if (is_key) {
                member = member ? member->next : obj->child;
                want_key = false;
            }
            bool nul = false;
            while (i < len && s[i] != '"') {
                if (s[i] == '\\') {
                    if (i + 5 < len && s[i + 1] == 'u' && memcmp(s + i + 2, "0000", 4) == 0)
                        nul = true;
                    i += 2; /* the 4 hex digits of \u are never '"' or '\\' */
                } else {
                    i++;
                }
            }
            i++;
            if (nul && is_key)
                *key_nul = true;
            else if (nul && target && member == target)
                found = true;
        }
    }
    return found;
}

int srv_parse_object(const char *body, size_t len, cJSON **out, attnd_err *err)
{
    *out = NULL;
    if (len == 0 || !body)
        return attnd_err_set(err, ATTND_EINVAL, "request body is empty");
    /* No raw NUL can be part of JSON, and cJSON would stop reading at one. */
    if (memchr(body, '\0', len))
        return attnd_err_set(err, ATTND_EINVAL, "request body is not valid JSON");
    /* cJSON releases have read a byte past the end of a length-bounded
     * buffer (DaveGamble/cJSON#804, an unterminated string at the end); a
     * NUL-terminated copy makes that harmless whatever version is installed. */
    char *copy = malloc(len + 1);
    if (!copy)
        return attnd_err_set(err, ATTND_ENOMEM, "out of memory reading the request body");
    memcpy(copy, body, len);
    copy[len] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(copy, len, &end, 0);
    size_t off = root && end ? (size_t)(end - copy) : 0;
    free(copy);
    if (!root)
        return attnd_err_set(err, ATTND_EINVAL, "request body is not valid JSON");
    while (off < len && json_space(body[off]))
        off++;
    if (off != len) {
        cJSON_Delete(root);
        return attnd_err_set(err, ATTND_EINVAL,
                             "request body is not valid JSON (unexpected data after the value)");
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return attnd_err_set(err, ATTND_EINVAL, "request body must be a JSON object");
    }
    bool key_nul;
    scan_nul(body, len, root, NULL, &key_nul);
    if (key_nul) {
        cJSON_Delete(root);
        return attnd_err_set(err, ATTND_EINVAL, "request field names must not contain NUL");
    }
    *out = root;
    return ATTND_OK;
}

/* The member NAME of OBJ; NULL if absent or null (null means "use the
 * default" for every optional field). */
static const cJSON *field(const cJSON *obj, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    return it && !cJSON_IsNull(it) ? it : NULL;
}

/* A JSON number that must be a whole number in [LO, HI] (both exactly
 * representable, within int64). The range is checked on the double, before
 * any conversion, so huge values cannot overflow the cast. */
static int get_int(const cJSON *it, const char *name, double lo, double hi, int64_t *out,
                   attnd_err *err)
{
    if (!cJSON_IsNumber(it))
        return attnd_err_set(err, ATTND_EINVAL, "%s must be an integer", name);
    double d = it->valuedouble;
    if (isfinite(d) && d != floor(d))
        return attnd_err_set(err, ATTND_EINVAL, "%s must be an integer", name);
    if (!(d >= lo && d <= hi))
        return attnd_err_set(err, ATTND_EINVAL, "%s must be between %.0f and %.0f", name, lo,
                             hi);
    *out = (int64_t)d;
    return ATTND_OK;
}

/* A JSON number for a float field: RULE says what is allowed ("in (0, 1]")
 * and is the message for anything outside [LO, HI] (LO excluded if LO_OPEN).
 * The range is checked on the double first, as converting a double beyond
 * FLT_MAX is undefined, then on the float, since 1e-300 is > 0 but becomes 0. */
static int get_float(const cJSON *it, const char *name, const char *rule, double lo,
                     bool lo_open, double hi, float *out, attnd_err *err)
{
    if (!cJSON_IsNumber(it))
        return attnd_err_set(err, ATTND_EINVAL, "%s must be %s", name, rule);
    double d = it->valuedouble;
    if (!(lo_open ? d > lo : d >= lo))
        return attnd_err_set(err, ATTND_EINVAL, "%s must be %s", name, rule);
    if (d > hi) {
        if (hi == FLT_MAX)
            return attnd_err_set(err, ATTND_EINVAL, "%s must be at most %g", name, hi);
        return attnd_err_set(err, ATTND_EINVAL, "%s must be %s", name, rule);
    }
    float f = (float)d + 0.0f; /* + 0: -0 becomes 0 */
    if (lo_open && !(f > (float)lo))
        return attnd_err_set(err, ATTND_EINVAL, "%s must be %s", name, rule);
    *out = f;
    return ATTND_OK;
}

static int get_bool(const cJSON *it, const char *name, bool *out, attnd_err *err)
{
    if (!cJSON_IsBool(it))
        return attnd_err_set(err, ATTND_EINVAL, "%s must be a boolean", name);
    *out = cJSON_IsTrue(it);
    return ATTND_OK;
}

/* A text field the rest of the server handles as a C string: it must be a
 * string, hold no NUL and be valid UTF-8. Returns a malloc'd copy. */
static int get_text(const char *body, size_t len, const cJSON *obj, const cJSON *it,
                    const char *name, char **out, size_t *out_len, attnd_err *err)
{
    if (!cJSON_IsString(it) || !it->valuestring)
        return attnd_err_set(err, ATTND_EINVAL, "%s must be a string", name);
    bool key_nul;
    if (scan_nul(body, len, obj, it, &key_nul))
        return attnd_err_set(err, ATTND_EINVAL, "%s must not contain NUL", name);
    size_t n = strlen(it->valuestring);
    if (!attnd_utf8_valid(it->valuestring, n))
        return attnd_err_set(err, ATTND_EINVAL, "%s is not valid UTF-8", name);
    char *copy = malloc(n + 1);
    if (!copy)
        return attnd_err_set(err, ATTND_ENOMEM, "out of memory copying %s", name);
    memcpy(copy, it->valuestring, n + 1);
    *out = copy;
    *out_len = n;
    return ATTND_OK;
}

/* ---- /generate ----------------------------------------------------------- */

static int add_stop(srv_gen_req *r, const cJSON *s, const char *name, attnd_err *err)
{
    if (!cJSON_IsString(s) || !s->valuestring)
        return attnd_err_set(err, ATTND_EINVAL, "%s must be a non-empty string of at most %d bytes",
                             name, SRV_MAX_STOP_LEN);
    size_t n = strlen(s->valuestring); /* NUL escapes were ruled out before */
    if (n == 0 || n > SRV_MAX_STOP_LEN)
        return attnd_err_set(err, ATTND_EINVAL, "%s must be a non-empty string of at most %d bytes",
                             name, SRV_MAX_STOP_LEN);
    if (!attnd_utf8_valid(s->valuestring, n))
        return attnd_err_set(err, ATTND_EINVAL, "%s is not valid UTF-8", name);
    char *copy = malloc(n + 1);
    if (!copy)
        return attnd_err_set(err, ATTND_ENOMEM, "out of memory copying %s", name);
    memcpy(copy, s->valuestring, n + 1);
    r->stop[r->n_stop] = copy;
    r->stop_len[r->n_stop] = n;
    r->n_stop++;
    return ATTND_OK;
}

static int parse_stop(const char *body, size_t len, const cJSON *obj, const cJSON *it,
                      srv_gen_req *r, attnd_err *err)
{
    if (!cJSON_IsString(it) && !cJSON_IsArray(it))
        return attnd_err_set(err, ATTND_EINVAL, "stop must be a string or an array of strings");
    bool key_nul;
    if (scan_nul(body, len, obj, it, &key_nul))
        return attnd_err_set(err, ATTND_EINVAL, "stop must not contain NUL");
    if (cJSON_IsString(it))
        return add_stop(r, it, "stop", err);
    size_t i = 0;
    for (const cJSON *s = it->child; s; s = s->next, i++) {
        if (i == SRV_MAX_STOP)
            return attnd_err_set(err, ATTND_EINVAL, "stop has more than %d strings",
                                 SRV_MAX_STOP);
        char name[32];
        snprintf(name, sizeof name, "stop[%zu]", i);
        int rc = add_stop(r, s, name, err);
        if (rc)
            return rc;
    }
    return ATTND_OK;
}

/* Whether D is an integer an int32_t holds (checked before any cast: a
 * conversion out of range is undefined). */
static bool is_int32(double d)
{
    return d >= -2147483648.0 && d <= 2147483647.0 && d == floor(d);
}

/* logit_bias: OpenAI's {"token id": bias} or llama.cpp's [[id, bias], ...];
 * ids are range-checked against the model by sampler_new. */
static int parse_bias(const cJSON *it, srv_gen_req *r, attnd_err *err)
{
    bool obj = cJSON_IsObject(it);
    if (!obj && !cJSON_IsArray(it))
        return attnd_err_set(err, ATTND_EINVAL,
                             "logit_bias must be an object of token ids to biases");
    size_t n = 0;
    for (const cJSON *e = it->child; e; e = e->next)
        n++;
    if (n > SAMPLE_MAX_BIAS)
        return attnd_err_set(err, ATTND_EINVAL, "logit_bias has more than %d entries",
                             SAMPLE_MAX_BIAS);
    if (n == 0)
        return ATTND_OK;
    if (!(r->bias = malloc(n * sizeof *r->bias)))
        return attnd_err_set(err, ATTND_ENOMEM, "out of memory");
    for (const cJSON *e = it->child; e; e = e->next) {
        const cJSON *val = obj ? e : cJSON_GetArrayItem(e, 1);
        double id;
        char *end = NULL;
        if (obj) {
            id = strtod(e->string, &end);
            if (end == e->string || *end)
                return attnd_err_set(err, ATTND_EINVAL, "logit_bias: key \"%.40s\" is not a token id",
                                     e->string);
        } else {
            const cJSON *k = cJSON_GetArrayItem(e, 0);
            if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2 || !cJSON_IsNumber(k))
                return attnd_err_set(err, ATTND_EINVAL, "logit_bias entries must be [id, bias]");
            id = k->valuedouble;
        }
        if (!is_int32(id))
            return attnd_err_set(err, ATTND_EINVAL, "logit_bias: %g is not a token id", id);
        float bias;
        int rc = get_float(val, "logit_bias values", "numbers in [-100, 100]", -100, false, 100,
                           &bias, err);
        if (rc)
            return rc;
        r->bias[r->n_bias++] = (sample_bias){(int32_t)id, bias};
    }
    r->sample.bias = r->bias;
    r->sample.n_bias = r->n_bias;
    return ATTND_OK;
}

int srv_parse_gen_fields(const char *body, size_t len, const cJSON *obj, const srv_limits *lim,
                         uint64_t random_seed, srv_gen_req *r, attnd_err *err)
{
    const cJSON *it;
    int64_t v;
    int rc;

    r->add_special = true;
    r->max_tokens = lim->default_max_tokens < lim->max_tokens_cap ? lim->default_max_tokens
                                                                   : lim->max_tokens_cap;
    /* max_completion_tokens: OpenAI's newer name for the same limit */
    static const char *const max_names[] = {"max_tokens", "max_completion_tokens"};
    for (size_t i = 0; i < 2; i++)
        if ((it = field(obj, max_names[i]))) {
            if ((rc = get_int(it, max_names[i], lim->zero_tokens_ok ? 0 : 1,
                              (double)lim->max_tokens_cap, &v, err)))
                return rc;
            r->max_tokens = (uint32_t)v;
        }

    sample_params *p = &r->sample;
    *p = sample_params_default();
    if ((it = field(obj, "temperature"))) {
        if ((rc = get_float(it, "temperature", "a number >= 0", 0, false, FLT_MAX,
                            &p->temperature, err)))
            return rc;
    }
    if ((it = field(obj, "top_k"))) {
        if ((rc = get_int(it, "top_k", 0, (double)INT32_MAX, &v, err)))
            return rc;
        p->top_k = (int32_t)v;
    }
    if ((it = field(obj, "top_p"))) {
        if ((rc = get_float(it, "top_p", "in (0, 1]", 0, true, 1, &p->top_p, err)))
            return rc;
    }
    if ((it = field(obj, "min_p"))) {
        if ((rc = get_float(it, "min_p", "in [0, 1]", 0, false, 1, &p->min_p, err)))
            return rc;
    }
    if ((it = field(obj, "repeat_penalty"))) {
        if ((rc = get_float(it, "repeat_penalty", "a number > 0", 0, true, FLT_MAX,
                            &p->repeat_penalty, err)))
            return rc;
    }
    if ((it = field(obj, "repeat_last_n"))) {
        if ((rc = get_int(it, "repeat_last_n", 0, REPEAT_LAST_N_MAX, &v, err)))
            return rc;
        p->repeat_last_n = (uint32_t)v;
    }
    p->seed = random_seed;
    r->seed_given = false;
    if ((it = field(obj, "seed"))) {
        if ((rc = get_int(it, "seed", 0, SEED_MAX, &v, err)))
            return rc;
        p->seed = (uint64_t)v;
        r->seed_given = true;
    }

    if ((it = field(obj, "stop")) && (rc = parse_stop(body, len, obj, it, r, err)))
        return rc;
    if ((it = field(obj, "ignore_eos")) && (rc = get_bool(it, "ignore_eos", &r->ignore_eos, err)))
        return rc;
    p->ignore_eos = r->ignore_eos;
    if ((it = field(obj, "stream")) && (rc = get_bool(it, "stream", &r->stream, err)))
        return rc;
    if ((it = field(obj, "parse_special")) &&
        (rc = get_bool(it, "parse_special", &r->parse_special, err)))
        return rc;
    r->cache_prompt = true;
    if ((it = field(obj, "cache_prompt")) &&
        (rc = get_bool(it, "cache_prompt", &r->cache_prompt, err)))
        return rc;
    static const char *const pf_names[] = {"presence_penalty", "frequency_penalty"};
    float *pf_vals[] = {&p->presence_penalty, &p->frequency_penalty};
    for (size_t i = 0; i < 2; i++)
        if ((it = field(obj, pf_names[i])) && !cJSON_IsNull(it) &&
            (rc = get_float(it, pf_names[i], "a number in [-2, 2]", -2, false, 2, pf_vals[i], err)))
            return rc;
    if ((it = field(obj, "logit_bias")) && !cJSON_IsNull(it) && (rc = parse_bias(it, r, err)))
        return rc;
    if ((it = field(obj, "logprobs")) && !cJSON_IsNull(it)) {
        if (cJSON_IsNumber(it)) { /* /v1/completions: how many top tokens */
            if ((rc = get_int(it, "logprobs", 0, SRV_MAX_TOP_LOGPROBS, &v, err)))
                return rc;
            r->logprobs = true;
            r->top_logprobs = (uint32_t)v;
        } else if ((rc = get_bool(it, "logprobs", &r->logprobs, err))) {
            return attnd_err_set(err, ATTND_EINVAL,
                                 "logprobs must be a boolean (or, for completions, an integer 0..%d)",
                                 SRV_MAX_TOP_LOGPROBS);
        }
    }
    if ((it = field(obj, "top_logprobs")) && !cJSON_IsNull(it)) {
        if ((rc = get_int(it, "top_logprobs", 0, SRV_MAX_TOP_LOGPROBS, &v, err)))
            return rc;
        if (!r->logprobs && v > 0)
            return attnd_err_set(err, ATTND_EINVAL, "top_logprobs needs logprobs");
        r->top_logprobs = (uint32_t)v;
    }
    return ATTND_OK;
}

int srv_parse_prompt(const cJSON *p, srv_gen_req *out, attnd_err *err)
{
    if (!p)
        return attnd_err_set(err, ATTND_EINVAL, "prompt is required");
    if (cJSON_IsArray(p) && p->child && cJSON_IsString(p->child) && !p->child->next)
        p = p->child; /* one string in an array, as OpenAI clients send it */
    if (cJSON_IsString(p)) {
        out->prompt_len = strlen(p->valuestring);
        if (!attnd_utf8_valid(p->valuestring, out->prompt_len))
            return attnd_err_set(err, ATTND_EINVAL, "prompt is not valid UTF-8");
        if (!(out->prompt = strdup(p->valuestring)))
            return attnd_err_set(err, ATTND_ENOMEM, "out of memory");
        return ATTND_OK;
    }
    if (!cJSON_IsArray(p) || !p->child)
        return attnd_err_set(err, ATTND_EINVAL, "prompt must be a string or an array of token ids");
    size_t n = 0;
    for (const cJSON *t = p->child; t; t = t->next)
        n++;
    if (!(out->prompt_ids = malloc(n * sizeof *out->prompt_ids)) || !(out->prompt = strdup("")))
        return attnd_err_set(err, ATTND_ENOMEM, "out of memory");
    n = 0;
    for (const cJSON *t = p->child; t; t = t->next, n++) {
        if (!cJSON_IsNumber(t) || !is_int32(t->valuedouble))
            return attnd_err_set(err, ATTND_EINVAL,
                                 "prompt must be a string or an array of token ids (prompt[%zu])", n);
        out->prompt_ids[n] = (int32_t)t->valuedouble;
    }
    out->n_prompt_ids = n; /* checked against the vocabulary by srv_req_prepare */
    return ATTND_OK;
}

int srv_parse_generate_fields(const char *body, size_t len, const cJSON *obj,
                              const srv_limits *lim, uint64_t random_seed, srv_gen_req *r,
                              attnd_err *err)
{
    const cJSON *it = field(obj, "prompt");
    int rc;
    if (it && cJSON_IsArray(it)) /* token ids */
        rc = srv_parse_prompt(it, r, err);
    else if (!it)
        rc = attnd_err_set(err, ATTND_EINVAL, "prompt is required");
    else /* a string: NUL escapes and all checked against the body */
        rc = get_text(body, len, obj, it, "prompt", &r->prompt, &r->prompt_len, err);
    return rc ? rc : srv_parse_gen_fields(body, len, obj, lim, random_seed, r, err);
}

int srv_parse_generate(const char *body, size_t len, const srv_limits *lim,
                       uint64_t random_seed, srv_gen_req *out, attnd_err *err)
{
    if (!out || !lim)
        return attnd_err_set(err, ATTND_EINVAL, "srv_parse_generate: NULL argument");
    memset(out, 0, sizeof *out);
    cJSON *obj;
    int rc = srv_parse_object(body, len, &obj, err);
    if (rc)
        return rc;
    rc = srv_parse_generate_fields(body, len, obj, lim, random_seed, out, err);
    cJSON_Delete(obj);
    if (rc)
        srv_gen_req_free(out);
    return rc;
}

void srv_gen_req_free(srv_gen_req *r)
{
    if (!r)
        return;
    free(r->prompt);
    free(r->prompt_ids);
    free(r->bias);
    for (size_t i = 0; i < r->n_stop && i < SRV_MAX_STOP; i++)
        free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

/* ---- /tokenize, /detokenize --------------------------------------------- */

int srv_parse_tokenize(const char *body, size_t len, char **text, size_t *text_len,
                       unsigned *tok_flags, attnd_err *err)
{
    if (!text || !text_len || !tok_flags)
        return attnd_err_set(err, ATTND_EINVAL, "srv_parse_tokenize: NULL argument");
    *text = NULL;
    *text_len = 0;
    cJSON *obj;
    int rc = srv_parse_object(body, len, &obj, err);
    if (rc)
        return rc;
    bool add_special = false, parse_special = true;
    const cJSON *it = field(obj, "text");
    if (!it)
        rc = attnd_err_set(err, ATTND_EINVAL, "text is required");
    if (!rc && (it = field(obj, "add_special")))
        rc = get_bool(it, "add_special", &add_special, err);
    if (!rc && (it = field(obj, "parse_special")))
        rc = get_bool(it, "parse_special", &parse_special, err);
    if (!rc)
        rc = get_text(body, len, obj, field(obj, "text"), "text", text, text_len, err);
    *tok_flags = (add_special ? TOK_ADD_SPECIAL : 0u) | (parse_special ? TOK_PARSE_SPECIAL : 0u);
    cJSON_Delete(obj);
    return rc;
}

int srv_parse_detokenize(const char *body, size_t len, int32_t n_vocab, int32_t **ids,
                         size_t *n, attnd_err *err)
{
    if (!ids || !n)
        return attnd_err_set(err, ATTND_EINVAL, "srv_parse_detokenize: NULL argument");
    *ids = NULL;
    *n = 0;
    cJSON *obj;
    int rc = srv_parse_object(body, len, &obj, err);
    if (rc)
        return rc;
    const cJSON *it = field(obj, "tokens");
    if (!it) {
        rc = attnd_err_set(err, ATTND_EINVAL, "tokens is required");
        goto done;
    }
    if (!cJSON_IsArray(it)) {
        rc = attnd_err_set(err, ATTND_EINVAL, "tokens must be an array of integers");
        goto done;
    }
    size_t count = 0;
    for (const cJSON *t = it->child; t; t = t->next)
        count++;
    /* At least one element, so that success always comes with a pointer. */
    int32_t *v = malloc((count ? count : 1) * sizeof *v);
    if (!v) {
        rc = attnd_err_set(err, ATTND_ENOMEM, "out of memory for %zu tokens", count);
        goto done;
    }
    double hi = (double)n_vocab - 1.0;
    size_t i = 0;
    for (const cJSON *t = it->child; t; t = t->next, i++) {
        double d = cJSON_IsNumber(t) ? t->valuedouble : NAN;
        if (!(d >= 0.0 && d <= hi && d == floor(d))) {
            free(v);
            rc = attnd_err_set(err, ATTND_EINVAL, "tokens[%zu] must be an integer between 0 and %.0f",
                               i, hi < 0 ? -1.0 : hi);
            goto done;
        }
        v[i] = (int32_t)d;
    }
    *ids = v;
    *n = count;
done:
    cJSON_Delete(obj);
    return rc;
}

/* ---- error JSON ---------------------------------------------------------- */

/* A copy of S with every invalid UTF-8 sequence replaced by U+FFFD, so that
 * the answer stays valid JSON text whatever a message quotes. */
static char *utf8_clean(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(n * 3 + 1); /* each bad byte may become 3 */
    if (!out)
        return NULL;
    size_t o = 0, i = 0;
    while (i < n) {
        int k = attnd_utf8_decode(s + i, n - i, NULL);
        if (k > 0) {
            memcpy(out + o, s + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        } else {
            o += attnd_utf8_encode(ATTND_UTF8_REPLACEMENT, out + o);
            i += k < 0 ? (size_t)-k : n - i; /* 0: an unfinished tail */
        }
    }
    out[o] = '\0';
    return out;
}

char *srv_error_json(const char *type, const char *message)
{
    char *t = utf8_clean(type ? type : "error");
    char *m = utf8_clean(message ? message : "");
    cJSON *root = cJSON_CreateObject();
    cJSON *e = cJSON_CreateObject();
    char *s = NULL;
    /* OpenAI's shape: message, type, param, code */
    if (t && m && root && e && cJSON_AddStringToObject(e, "message", m) &&
        cJSON_AddStringToObject(e, "type", t) && cJSON_AddNullToObject(e, "param") &&
        cJSON_AddNullToObject(e, "code") && cJSON_AddItemToObject(root, "error", e)) {
        e = NULL; /* root owns it now */
        s = cJSON_PrintUnformatted(root);
    }
    cJSON_Delete(e);
    cJSON_Delete(root);
    free(t);
    free(m);
    return s;
}

/* ---- response JSON ------------------------------------------------------- */

char *srv_json_string(const char *text, size_t len, size_t *out_len)
{
    /* Worst case every byte is a control character: \u00XX, 6 bytes. */
    if (len > (SIZE_MAX - 3) / 6)
        return NULL;
    char *out = malloc(len * 6 + 3);
    if (!out)
        return NULL;
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        const char *esc = NULL;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default: break;
        }
        if (esc) {
            out[o++] = esc[0];
            out[o++] = esc[1];
        } else if (c < 0x20) {
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[c >> 4];
            out[o + 5] = hex[c & 15];
            o += 6;
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    *out_len = o;
    return out;
}

/* A + B + C framed as one NDJSON line or SSE event, in one allocation. */
static char *frame3(const char *a, size_t na, const char *b, size_t nb, const char *c, size_t nc,
                    bool sse, size_t *out_len)
{
    const char *pre = sse ? "data: " : "", *post = sse ? "\n\n" : "\n";
    size_t np = strlen(pre), nq = strlen(post);
    if (na > SIZE_MAX / 4 || nb > SIZE_MAX / 4 || nc > SIZE_MAX / 4)
        return NULL;
    size_t n = np + na + nb + nc + nq;
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    memcpy(out, pre, np);
    memcpy(out + np, a, na);
    memcpy(out + np + na, b, nb);
    memcpy(out + np + na + nb, c, nc);
    memcpy(out + n - nq, post, nq + 1);
    *out_len = n;
    return out;
}

char *srv_stream_frame(const char *json, size_t len, bool sse, size_t *out_len)
{
    return frame3(json, len, "", 0, "", 0, sse, out_len);
}

char *srv_stream_token(int32_t id, const char *text, size_t len, bool sse, size_t *out_len)
{
    return srv_stream_token_lp(id, text, len, NULL, sse, out_len);
}

char *srv_stream_token_lp(int32_t id, const char *text, size_t len, const char *logprobs, bool sse,
                          size_t *out_len)
{
    size_t sl;
    char *str = srv_json_string(text, len, &sl);
    char *tail = NULL;
    size_t tl = 1;
    if (str && logprobs) {
        tl = strlen(logprobs) + 13;
        if ((tail = malloc(tl + 1)))
            snprintf(tail, tl + 1, ",\"logprobs\":%s}", logprobs);
    }
    if (!str || (logprobs && !tail)) {
        free(str);
        return NULL;
    }
    char head[32];
    int hl = id >= 0 ? snprintf(head, sizeof head, "{\"token\":%ld,\"text\":", (long)id)
                     : snprintf(head, sizeof head, "{\"text\":");
    char *line = frame3(head, (size_t)hl, str, sl, tail ? tail : "}", tail ? strlen(tail) : 1, sse,
                        out_len);
    free(str);
    free(tail);
    return line;
}
