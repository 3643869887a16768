/* srv_openai.c - the OpenAI-compatible chat route's request and answers
 * (srv_openai.h): a /v1/chat/completions body becomes a srv_gen_req whose
 * prompt is the model's chat template rendered on the messages (parsed with
 * special tokens, no BOS added: the template writes it); answers and stream
 * chunks come out in OpenAI's shapes. The fields /generate shares are parsed
 * by srv_parse_gen_fields (srv_api.c), so both schemas accept them alike. */
#include "srv_openai.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnd_utf8.h"

#define MAX_MESSAGES 4096

/* One message's content as text: a string, or an array of parts of which
 * the "text" ones are joined (images and audio are refused). */
static int content_text(const cJSON *content, size_t i, char **out, attnd_err *err)
{
    if (cJSON_IsString(content)) {
        *out = strdup(content->valuestring);
        return *out ? ATTND_OK : attnd_err_set(err, ATTND_ENOMEM, "out of memory");
    }
    if (cJSON_IsNull(content)) {
        *out = strdup("");
        return *out ? ATTND_OK : attnd_err_set(err, ATTND_ENOMEM, "out of memory");
    }
    if (!cJSON_IsArray(content))
        return attnd_err_set(err, ATTND_EINVAL,
                             "messages[%zu].content must be a string or an array of parts", i);
    size_t total = 1, k = 0;
    for (const cJSON *p = content->child; p; p = p->next, k++) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!cJSON_IsObject(p) || !cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0)
            return attnd_err_set(err, ATTND_EINVAL,
                                 "messages[%zu].content[%zu]: only {\"type\": \"text\"} parts are "
                                 "supported",
                                 i, k);
        if (!cJSON_IsString(text))
            return attnd_err_set(err, ATTND_EINVAL, "messages[%zu].content[%zu].text must be a string",
                                 i, k);
        total += strlen(text->valuestring);
    }
    char *s = malloc(total);
    if (!s)
        return attnd_err_set(err, ATTND_ENOMEM, "out of memory");
    size_t o = 0;
    for (const cJSON *p = content->child; p; p = p->next) {
        const char *t = cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring;
        size_t n = strlen(t);
        memcpy(s + o, t, n);
        o += n;
    }
    s[o] = '\0';
    *out = s;
    return ATTND_OK;
}

/* The messages as the template sees them: [{role, content}] with content a
 * string, validated. */
static int parse_messages(const cJSON *obj, cJSON **out, attnd_err *err)
{
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(obj, "messages");
    if (!msgs)
        return attnd_err_set(err, ATTND_EINVAL, "messages is required");
    if (!cJSON_IsArray(msgs) || !msgs->child)
        return attnd_err_set(err, ATTND_EINVAL, "messages must be a non-empty array");
    cJSON *list = cJSON_CreateArray();
    if (!list)
        return attnd_err_set(err, ATTND_ENOMEM, "out of memory");
    size_t i = 0;
    int rc = ATTND_OK;
    for (const cJSON *m = msgs->child; m && rc == ATTND_OK; m = m->next, i++) {
        static const char *const roles[] = {"system", "user", "assistant", "tool", "developer"};
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        bool known = false;
        if (i == MAX_MESSAGES) {
            rc = attnd_err_set(err, ATTND_EINVAL, "messages has more than %d entries", MAX_MESSAGES);
            break;
        }
        if (!cJSON_IsObject(m) || !cJSON_IsString(role)) {
            rc = attnd_err_set(err, ATTND_EINVAL, "messages[%zu] must be an object with a role", i);
            break;
        }
        for (size_t k = 0; k < sizeof roles / sizeof roles[0]; k++)
            known |= strcmp(role->valuestring, roles[k]) == 0;
        if (!known) {
            rc = attnd_err_set(err, ATTND_EINVAL,
                               "messages[%zu].role must be system, user, assistant or tool", i);
            break;
        }
        char *text = NULL;
        if ((rc = content_text(cJSON_GetObjectItemCaseSensitive(m, "content"), i, &text, err)))
            break;
        if (!attnd_utf8_valid(text, strlen(text))) {
            free(text);
            rc = attnd_err_set(err, ATTND_EINVAL, "messages[%zu].content is not valid UTF-8", i);
            break;
        }
        cJSON *o = cJSON_CreateObject();
        /* "developer" is OpenAI's newer name for system */
        const char *r = strcmp(role->valuestring, "developer") == 0 ? "system" : role->valuestring;
        if (!o || !cJSON_AddStringToObject(o, "role", r) ||
            !cJSON_AddStringToObject(o, "content", text) || !cJSON_AddItemToArray(list, o)) {
            cJSON_Delete(o);
            rc = attnd_err_set(err, ATTND_ENOMEM, "out of memory");
        }
        free(text);
    }
    if (rc != ATTND_OK) {
        cJSON_Delete(list);
        return rc;
    }
    *out = list;
    return ATTND_OK;
}

/* Fields of the OpenAI schema that attnd does not implement yet: refused by
 * name rather than silently ignored when they would change the answer. */
static int refuse_unsupported(const cJSON *obj, attnd_err *err)
{
    const cJSON *it;
    if ((it = cJSON_GetObjectItemCaseSensitive(obj, "tools")) && cJSON_IsArray(it) && it->child)
        return attnd_err_set(err, ATTND_EINVAL, "tools are not supported yet");
    return ATTND_OK;
}

/* What both OpenAI routes take: the body as an object (*OBJ, for the
 * route's own fields), no escaped NUL, nothing unsupported, the fields
 * srv_parse_gen_fields parses and stream_options.include_usage. On an
 * error nothing is left to free. */
static int parse_openai(const char *body, size_t len, const srv_limits *lim, uint64_t random_seed,
                        srv_gen_req *out, bool *include_usage, cJSON **obj, attnd_err *err)
{
    memset(out, 0, sizeof *out);
    *include_usage = false;
    int rc = srv_parse_object(body, len, obj, err);
    if (rc)
        return rc;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(*obj, "stream_options");
    const cJSON *iu = so ? cJSON_GetObjectItemCaseSensitive(so, "include_usage") : NULL;
    /* cJSON would cut a string at an escaped NUL without a word */
    if (memmem(body, len, "\\u0000", 6))
        rc = attnd_err_set(err, ATTND_EINVAL, "the request must not contain NUL characters");
    else if (!(rc = refuse_unsupported(*obj, err)) &&
             !(rc = srv_parse_gen_fields(body, len, *obj, lim, random_seed, out, err)) && iu &&
             !cJSON_IsBool(iu))
        rc = attnd_err_set(err, ATTND_EINVAL, "stream_options.include_usage must be a boolean");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(*obj, "n");
    out->n_choices = 1;
    if (!rc && n && !cJSON_IsNull(n)) {
        /* the range first: casting a huge double to int is undefined */
        if (!cJSON_IsNumber(n) || !(n->valuedouble >= 1 && n->valuedouble <= SRV_MAX_CHOICES) ||
            n->valuedouble != floor(n->valuedouble))
            rc = attnd_err_set(err, ATTND_EINVAL, "n must be an integer from 1 to %d",
                               SRV_MAX_CHOICES);
        else
            out->n_choices = (uint32_t)n->valuedouble;
    }
    if (rc) {
        cJSON_Delete(*obj);
        *obj = NULL;
        srv_gen_req_free(out);
        return rc;
    }
    *include_usage = iu && cJSON_IsTrue(iu);
    return ATTND_OK;
}

int srv_parse_chat(const char *body, size_t len, const srv_limits *lim, uint64_t random_seed,
                   const srv_chat_template *ct, srv_gen_req *out, bool *include_usage,
                   attnd_err *err)
{
    cJSON *obj, *messages = NULL, *vars = NULL;
    int rc = parse_openai(body, len, lim, random_seed, out, include_usage, &obj, err);
    if (rc)
        return rc;
    if ((rc = parse_messages(obj, &messages, err)))
        goto done;
    if (!ct->tmpl) {
        rc = attnd_err_set(err, ATTND_EINVAL, "%s", ct->why);
        goto done;
    }
    /* Hugging Face's variables: messages, add_generation_prompt, the special
     * token texts, tools and documents None */
    vars = cJSON_CreateObject();
    if (!vars || !cJSON_AddItemToObject(vars, "messages", messages) ||
        !cJSON_AddBoolToObject(vars, "add_generation_prompt", 1) ||
        !cJSON_AddStringToObject(vars, "bos_token", ct->bos) ||
        !cJSON_AddStringToObject(vars, "eos_token", ct->eos) ||
        !cJSON_AddNullToObject(vars, "tools") || !cJSON_AddNullToObject(vars, "documents")) {
        rc = attnd_err_set(err, ATTND_ENOMEM, "out of memory");
        goto done;
    }
    messages = NULL; /* vars owns it */
    attnd_err terr = {0};
    if ((rc = jinja_render(ct->tmpl, vars, NULL, &out->prompt, &out->prompt_len, &terr))) {
        rc = attnd_err_set(err, rc == ATTND_ENOMEM ? ATTND_ENOMEM : ATTND_EINVAL,
                           "the model's chat template: %s", terr.msg);
        goto done;
    }
    out->parse_special = true;
    out->add_special = false; /* the template writes BOS itself */
done:
    cJSON_Delete(messages);
    cJSON_Delete(vars);
    cJSON_Delete(obj);
    if (rc)
        srv_gen_req_free(out);
    return rc;
}

int srv_parse_completion(const char *body, size_t len, const srv_limits *lim,
                         uint64_t random_seed, srv_gen_req *out, bool *include_usage,
                         attnd_err *err)
{
    cJSON *obj;
    int rc = parse_openai(body, len, lim, random_seed, out, include_usage, &obj, err);
    if (rc)
        return rc;
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, "echo");
    if ((rc = srv_parse_prompt(cJSON_GetObjectItemCaseSensitive(obj, "prompt"), out, err)))
        goto done;
    if (it && !cJSON_IsBool(it)) {
        rc = attnd_err_set(err, ATTND_EINVAL, "echo must be a boolean");
        goto done;
    }
    out->echo = it && cJSON_IsTrue(it);
done:
    cJSON_Delete(obj);
    if (rc)
        srv_gen_req_free(out);
    return rc;
}

const char *srv_openai_finish(srv_finish f)
{
    return f == SRV_FINISH_LENGTH || f == SRV_FINISH_TIMEOUT ? "length" : "stop";
}

static cJSON *envelope(const srv_req *r, const char *object)
{
    cJSON *o = cJSON_CreateObject();
    if (o && cJSON_AddStringToObject(o, "id", r->oai_id) &&
        cJSON_AddStringToObject(o, "object", object) &&
        cJSON_AddNumberToObject(o, "created", (double)r->oai_created) &&
        cJSON_AddStringToObject(o, "model", r->oai_model))
        return o;
    cJSON_Delete(o);
    return NULL;
}

/* Completion tokens of R's request: every choice's (R is the head). */
static uint32_t completion_tokens(const srv_req *r)
{
    uint32_t n = r->n_generated;
    for (uint32_t i = 1; i < r->n_choices; i++)
        n += r->choices[i]->n_generated;
    return n;
}

static bool add_usage(cJSON *o, const srv_req *r)
{
    cJSON *u = cJSON_AddObjectToObject(o, "usage"), *d;
    uint32_t done = completion_tokens(r);
    return u && cJSON_AddNumberToObject(u, "prompt_tokens", r->n_prompt) &&
           cJSON_AddNumberToObject(u, "completion_tokens", done) &&
           cJSON_AddNumberToObject(u, "total_tokens", r->n_prompt + done) &&
           (d = cJSON_AddObjectToObject(u, "prompt_tokens_details")) &&
           cJSON_AddNumberToObject(d, "cached_tokens", r->n_cached);
}

/* "logprobs": LP (taken; NULL: null) */
static bool add_logprobs(cJSON *choice, cJSON *lp)
{
    if (!lp)
        return cJSON_AddNullToObject(choice, "logprobs") != NULL;
    if (cJSON_AddItemToObject(choice, "logprobs", lp))
        return true;
    cJSON_Delete(lp);
    return false;
}

/* A choice {"logprobs": LOGPROBS (taken over; NULL: null), "index": INDEX}
 * appended to the array CHOICES; NULL when out of memory. */
static cJSON *add_choice(cJSON *choices, uint32_t index, cJSON *logprobs)
{
    cJSON *c = choices ? cJSON_CreateObject() : NULL;
    if (c && !cJSON_AddItemToArray(choices, c)) {
        cJSON_Delete(c);
        c = NULL;
    }
    if (!c) {
        cJSON_Delete(logprobs);
        return NULL;
    }
    return add_logprobs(c, logprobs) && cJSON_AddNumberToObject(c, "index", index) ? c : NULL;
}

/* The envelope of a stream chunk with R's one choice, in *CHOICE for the
 * caller to fill; NULL when out of memory. */
static cJSON *with_choice(const srv_req *r, const char *object, cJSON *logprobs, cJSON **choice)
{
    cJSON *o = envelope(r, object);
    cJSON *c = o ? add_choice(cJSON_AddArrayToObject(o, "choices"), r->index, logprobs) : NULL;
    if (!c) {
        if (!o)
            cJSON_Delete(logprobs);
        cJSON_Delete(o);
        return NULL;
    }
    *choice = c;
    return o;
}

/* TEXT[0, LEN) as the JSON string NAME of O (NUL bytes escaped by length). */
static bool add_text(cJSON *o, const char *name, const char *text, size_t len)
{
    size_t sl;
    char *str = srv_json_string(text, len, &sl);
    bool ok = str && cJSON_AddRawToObject(o, name, str);
    free(str);
    return ok;
}

/* A stream chunk: CHOICE's finish_reason FINISH (NULL: null), O printed as
 * one SSE event (O freed; OK false: NULL). */
static char *chunk(cJSON *o, cJSON *choice, const char *finish, bool ok, size_t *out_len)
{
    char *json = NULL, *frame = NULL;
    if (ok)
        ok = finish ? cJSON_AddStringToObject(choice, "finish_reason", finish) != NULL
                    : cJSON_AddNullToObject(choice, "finish_reason") != NULL;
    if (ok && (json = cJSON_PrintUnformatted(o)))
        frame = srv_stream_frame(json, strlen(json), true, out_len);
    free(json);
    cJSON_Delete(o);
    return frame;
}

char *srv_openai_result(const srv_req *r, srv_openai_choice *choices, size_t n, size_t *out_len)
{
    bool chat = r->api == SRV_API_CHAT;
    cJSON *o = envelope(r, chat ? "chat.completion" : "text_completion");
    cJSON *list = o ? cJSON_AddArrayToObject(o, "choices") : NULL;
    bool ok = list != NULL;
    for (size_t i = 0; i < n; i++) {
        cJSON *lp = choices[i].logprobs, *c, *msg;
        choices[i].logprobs = NULL;
        if (!ok) {
            cJSON_Delete(lp);
            continue;
        }
        ok = (c = add_choice(list, (uint32_t)i, lp)) && /* takes LP */
             (chat ? (msg = cJSON_AddObjectToObject(c, "message")) &&
                         cJSON_AddStringToObject(msg, "role", "assistant") &&
                         add_text(msg, "content", choices[i].text, choices[i].len)
                   : add_text(c, "text", choices[i].text, choices[i].len)) &&
             cJSON_AddStringToObject(c, "finish_reason", srv_openai_finish(choices[i].finish));
    }
    char *str = ok && add_usage(o, r) ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (str)
        *out_len = strlen(str);
    return str;
}

/* data: {chunk}\n\n with one choice: the assistant role when ROLE (first
 * chunk), the content TEXT[0, LEN) when TEXT, FINISH (NULL: null). */
char *srv_chat_chunk(const srv_req *r, bool role, const char *text, size_t len,
                     const char *finish, cJSON *logprobs, size_t *out_len)
{
    cJSON *choice, *delta, *o = with_choice(r, "chat.completion.chunk", logprobs, &choice);
    bool ok = o && (delta = cJSON_AddObjectToObject(choice, "delta")) &&
              (!role || cJSON_AddStringToObject(delta, "role", "assistant")) &&
              (!text || add_text(delta, "content", text, len));
    return o ? chunk(o, choice, finish, ok, out_len) : NULL;
}

char *srv_completion_chunk(const srv_req *r, const char *text, size_t len, const char *finish,
                           cJSON *logprobs, size_t *out_len)
{
    cJSON *choice, *o = with_choice(r, "text_completion", logprobs, &choice);
    bool ok = o && add_text(choice, "text", text ? text : "", text ? len : 0);
    return o ? chunk(o, choice, finish, ok, out_len) : NULL;
}

char *srv_chat_usage_chunk(const srv_req *r, size_t *out_len)
{
    cJSON *o = envelope(r, r->api == SRV_API_CHAT ? "chat.completion.chunk" : "text_completion");
    char *json = NULL, *frame = NULL;
    if (o && cJSON_AddArrayToObject(o, "choices") && add_usage(o, r) &&
        (json = cJSON_PrintUnformatted(o)))
        frame = srv_stream_frame(json, strlen(json), true, out_len);
    free(json);
    cJSON_Delete(o);
    return frame;
}
