/* srv_http.c - HTTP endpoints on libmicrohttpd (srv_http.h).
 *
 * Per connection a `struct conn` collects the body (up to max_body_bytes),
 * then one route runs. /generate with stream=false suspends the connection
 * until the scheduler finishes the request, then answers with one JSON body;
 * with stream=true it answers at once with a chunked callback response whose
 * reader drains the request's output buffer and suspends when it is empty.
 * A request is released by the HTTP side when libmicrohttpd reports the
 * connection's request completed (or failed: then it is also cancelled). */
#include "srv_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "attnd_utf8.h"
#include "hparams.h"
#include "srv_api.h"
#include "srv_openai.h"
#include "srv_web.h"

struct srv_http {
    srv_http_ctx ctx;
    const model_hparams *hp;
    const tok_vocab *vocab;
    struct MHD_Daemon *d;
    atomic_size_t live;
    atomic_uint_fast64_t seed_counter;
    /* the model's chat template, parsed at start; immutable afterwards */
    jinja_tmpl *chat_tmpl;
    srv_chat_template chat;
    char chat_why[640];
    char *chat_bos, *chat_eos;
    const char *model_name;
};

struct route;

struct conn {
    char *body;
    size_t len, cap;
    bool too_large;
    uint64_t dropped;     /* body bytes read past the limit and dropped */
    bool routed;          /* an answer was queued or the route ran */
    const struct route *route; /* NULL: unknown path */
    const char *endpoint; /* metrics label */
    unsigned status;
    double t_start;
    srv_req *req;         /* /generate only */
    bool streaming;
    char method[12];
    char path[64];        /* for the log line, truncated */
    char cors[256];       /* the Origin to allow in answers ("" : no CORS headers) */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- responses */

/* CORS: answers to an allowed Origin say so (Vary: the answer depends on it). */
static void add_cors(struct MHD_Response *r, const struct conn *cn)
{
    if (!cn->cors[0])
        return;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", cn->cors);
    MHD_add_response_header(r, "Vary", "Origin");
}

/* ORIGIN if the cors_origins list allows it ("*" allows any), else "". */
static void cors_match(const char *list, const char *origin, char *out, size_t cap)
{
    out[0] = '\0';
    if (!origin || !origin[0] || !list[0] || strlen(origin) >= cap)
        return;
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        size_t n = (size_t)(e - p);
        while (n > 0 && p[n - 1] == ' ')
            n--;
        if ((n == 1 && *p == '*') || (n == strlen(origin) && strncmp(p, origin, n) == 0)) {
            snprintf(out, cap, "%s", n == 1 && *p == '*' ? "*" : origin);
            return;
        }
        p = e;
    }
}

static enum MHD_Result send_buf(struct MHD_Connection *c, struct conn *cn, unsigned status,
                                const char *type, char *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, body ? body : (char *)"", MHD_RESPMEM_MUST_COPY);
    free(body);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    add_cors(r, cn);
    if (status == 503)
        MHD_add_response_header(r, "Retry-After", "1");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    cn->status = status;
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *c, struct conn *cn, unsigned status,
                                  const char *type, const char *msg)
{
    char *txt = srv_error_json(type, msg);
    return send_buf(c, cn, status, "application/json", txt, txt ? strlen(txt) : 0);
}

static enum MHD_Result send_json(struct MHD_Connection *c, struct conn *cn, unsigned status,
                                 cJSON *obj)
{
    char *txt = obj ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    if (!txt)
        return send_error(c, cn, 500, "internal", "out of memory writing the answer");
    return send_buf(c, cn, status, "application/json", txt, strlen(txt));
}

/* ---------------------------------------------------------------- simple endpoints */

/* A file of the page (srv_web.h), from the binary: no copy, kept forever. */
static enum MHD_Result send_asset(struct MHD_Connection *c, struct conn *cn, const srv_web_asset *a)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", a->type);
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    add_cors(r, cn);
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    cn->status = 200;
    return ret;
}

static enum MHD_Result route_props(srv_http *h, struct MHD_Connection *c, struct conn *cn);
static bool authorized(srv_http *h, struct MHD_Connection *c);

/* GET /: the page for a browser (it asks for text/html), the server's
 * description as JSON (/props) for everyone else. */
static enum MHD_Result route_root(srv_http *h, struct MHD_Connection *c, struct conn *cn)
{
    const char *accept = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Accept");
    if (accept && strstr(accept, "text/html"))
        return send_asset(c, cn, srv_web_find("/"));
    /* the route is open for the page; the JSON needs the key as /props does */
    if (!authorized(h, c))
        return send_error(c, cn, 401, "unauthorized", "missing or wrong API key");
    return route_props(h, c, cn);
}

static enum MHD_Result route_props(srv_http *h, struct MHD_Connection *c, struct conn *cn)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", "attnd");
    cJSON_AddStringToObject(o, "model", h->ctx.c->model);
    cJSON_AddStringToObject(o, "architecture", h->hp->arch_name);
    cJSON_AddNumberToObject(o, "context_length", h->hp->n_ctx);
    cJSON_AddNumberToObject(o, "vocab_size", h->hp->n_vocab);
    cJSON *ep = cJSON_AddArrayToObject(o, "endpoints");
    static const char *const eps[] = {
        "POST /generate", "POST /tokenize", "POST /detokenize", "GET /v1/models",
        "POST /v1/chat/completions", "POST /v1/completions", "POST /v1/attention",
        "GET /health",    "GET /ready",     "GET /metrics",     "GET /",  "GET /props",
    };
    for (size_t i = 0; i < sizeof eps / sizeof eps[0]; i++)
        cJSON_AddItemToArray(ep, cJSON_CreateString(eps[i]));
    return send_json(c, cn, 200, o);
}

static enum MHD_Result route_models(srv_http *h, struct MHD_Connection *c, struct conn *cn)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    cJSON *mo = cJSON_CreateObject();
    const char *base = strrchr(h->ctx.c->model, '/');
    cJSON_AddStringToObject(mo, "id", base ? base + 1 : h->ctx.c->model);
    cJSON_AddStringToObject(mo, "object", "model");
    cJSON_AddStringToObject(mo, "owned_by", "attnd");
    cJSON_AddNumberToObject(mo, "context_length", h->hp->n_ctx);
    cJSON_AddItemToArray(data, mo);
    return send_json(c, cn, 200, o);
}

static enum MHD_Result route_tokenize(srv_http *h, struct MHD_Connection *c, struct conn *cn)
{
    attnd_err err = {0};
    char *text;
    size_t len;
    unsigned flags;
    if (srv_parse_tokenize(cn->body, cn->len, &text, &len, &flags, &err) != ATTND_OK)
        return send_error(c, cn, 400, "invalid_request", err.msg);
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = tok_encode(h->vocab, text, len, flags, &ids, &n, &err);
    free(text);
    if (rc != ATTND_OK)
        return send_error(c, cn, 500, "internal", err.msg);
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = o ? cJSON_AddArrayToObject(o, "tokens") : NULL;
    bool ok = arr != NULL;
    for (size_t i = 0; ok && i < n; i++)
        ok = cJSON_AddItemToArray(arr, cJSON_CreateNumber(ids[i]));
    free(ids);
    if (!ok) {
        cJSON_Delete(o);
        return send_error(c, cn, 500, "internal", "out of memory listing the tokens");
    }
    return send_json(c, cn, 200, o);
}

static enum MHD_Result route_detokenize(srv_http *h, struct MHD_Connection *c, struct conn *cn)
{
    attnd_err err = {0};
    int32_t *ids;
    size_t n;
    if (srv_parse_detokenize(cn->body, cn->len, tok_n_vocab(h->vocab), &ids, &n, &err) != ATTND_OK)
        return send_error(c, cn, 400, "invalid_request", err.msg);
    /* The streaming decoder yields valid UTF-8 (invalid bytes as U+FFFD), as
     * JSON needs. */
    tok_stream *ts = tok_stream_new(h->vocab, true);
    char *text = NULL;
    size_t len = 0, cap = 0;
    bool ok = ts != NULL;
    for (size_t i = 0; ok && i <= n; i++) {
        const char *p;
        size_t pl;
        if (i < n && tok_stream_push(ts, ids[i], &p, &pl, &err) != ATTND_OK) {
            ok = false;
            break;
        }
        if (i == n)
            tok_stream_flush(ts, &p, &pl);
        if (len + pl + 1 > cap) {
            cap = (len + pl + 1) * 2;
            char *t = realloc(text, cap);
            if (!t) {
                ok = false;
                break;
            }
            text = t;
        }
        memcpy(text + len, p, pl);
        len += pl;
    }
    tok_stream_free(ts);
    free(ids);
    /* The text may hold NUL bytes (<0x00> tokens): escaped by length. */
    size_t sl;
    char *str = ok ? srv_json_string(text ? text : "", len, &sl) : NULL;
    free(text);
    cJSON *o = cJSON_CreateObject();
    if (!str || !o || !cJSON_AddRawToObject(o, "text", str)) {
        free(str);
        cJSON_Delete(o);
        return send_error(c, cn, 500, "internal", err.msg[0] ? err.msg : "out of memory");
    }
    free(str);
    return send_json(c, cn, 200, o);
}

static enum MHD_Result route_metrics(srv_http *h, struct MHD_Connection *c, struct conn *cn)
{
    size_t len;
    char *txt = srv_metrics_render(h->ctx.metrics, &len);
    if (!txt)
        return send_error(c, cn, 500, "internal", "out of memory rendering the metrics");
    return send_buf(c, cn, 200, "text/plain; version=0.0.4", txt, len);
}

/* ---------------------------------------------------------------- /generate */

/* The answer of a non-streamed /generate; NULL when out of memory. The text
 * may hold NUL bytes (<0x00> tokens), so it is escaped by length. */
/* The answer of a non-streamed OpenAI route, every choice in it, printed;
 * NULL when out of memory. The choices were done before R was (the
 * scheduler finishes them first), so their fields are final. */
static char *openai_result(srv_http *h, srv_req *r, size_t *len)
{
    srv_openai_choice ch[SRV_MAX_CHOICES];
    uint32_t n = r->n_choices ? r->n_choices : 1;
    pthread_mutex_lock(&r->mu);
    for (uint32_t i = 0; i < n; i++) {
        srv_req *m = i ? r->choices[i] : r;
        if (m != r)
            pthread_mutex_lock(&m->mu);
        ch[i] = (srv_openai_choice){
            .text = m->out ? m->out : "",
            .len = m->out_len,
            .finish = m->finish,
            .logprobs = !m->in.logprobs          ? NULL
                        : r->api == SRV_API_CHAT ? srv_logprobs_chat(m->lp, m->n_lp, h->vocab)
                                                 : srv_logprobs_completion(m->lp, m->n_lp, h->vocab, 0),
        };
        if (m != r)
            pthread_mutex_unlock(&m->mu);
    }
    char *s = srv_openai_result(r, ch, n, len);
    pthread_mutex_unlock(&r->mu);
    return s;
}

static cJSON *result_json(srv_http *h, srv_req *r)
{
    cJSON *o = cJSON_CreateObject();
    pthread_mutex_lock(&r->mu);
    size_t sl;
    char *str = srv_json_string(r->out ? r->out : "", r->out_len, &sl);
    bool ok = o && str && cJSON_AddRawToObject(o, "text", str) &&
              srv_req_add_result(r, o) == ATTND_OK;
    if (ok && r->in.logprobs) {
        cJSON *lp = srv_logprobs_generate(r->lp, r->n_lp, h->vocab);
        ok = lp && cJSON_AddItemToObject(o, "logprobs", lp);
        if (!ok)
            cJSON_Delete(lp);
    }
    pthread_mutex_unlock(&r->mu);
    free(str);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Content reader of a streamed /generate: drains the output buffer; when it
 * is empty and the request is not done, parks the connection. */
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct conn *cn = cls;
    srv_req *r = cn->req;
    pthread_mutex_lock(&r->mu);
    size_t avail = r->out_len - r->out_pos;
    if (avail > 0) {
        size_t n = avail < max ? avail : max;
        memcpy(buf, r->out + r->out_pos, n);
        r->out_pos += n;
        if (r->out_pos == r->out_len)
            r->out_pos = r->out_len = 0;
        pthread_mutex_unlock(&r->mu);
        return (ssize_t)n;
    }
    if (r->done) {
        pthread_mutex_unlock(&r->mu);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    /* Suspended under the lock, so the scheduler's resume cannot come first. */
    r->suspended = true;
    MHD_suspend_connection(r->conn);
    pthread_mutex_unlock(&r->mu);
    return 0;
}

static bool accepts_sse(struct MHD_Connection *c)
{
    const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Accept");
    return a && strstr(a, "text/event-stream");
}

static enum MHD_Result start_generation(srv_http *h, struct MHD_Connection *c, struct conn *cn,
                                        srv_req *r);

static void openai_init(srv_http *h, srv_req *r, srv_api api, const char *id_prefix)
{
    r->api = api;
    r->sse = r->in.stream; /* OpenAI streams are SSE whatever Accept says */
    r->oai_created = (long long)time(NULL);
    r->oai_model = h->model_name;
    snprintf(r->oai_id, sizeof r->oai_id, "%s-%016llx", id_prefix,
             (unsigned long long)atomic_fetch_add(&h->seed_counter, 0x9e3779b97f4a7c15ull));
}

/* echo: the prompt's text opens R's choice (as a first chunk, into HEAD's
 * stream, when streamed); a prompt of ids is decoded. Before submission: nothing else
 * writes the output yet. */
static int add_echo(srv_http *h, srv_req *r, srv_req *head, attnd_err *err)
{
    char *text = NULL;
    size_t len = 0;
    int rc = tok_decode(h->vocab, r->prompt_ids, r->n_prompt, true, &text, &len, err);
    if (rc != ATTND_OK)
        return rc;
    if (!attnd_utf8_valid(text, len)) { /* ids may spell broken UTF-8: JSON must not */
        free(text);
        return attnd_err_set(err, ATTND_EINVAL, "echo: the prompt's tokens are not valid UTF-8");
    }
    if (r->in.stream) { /* every choice streams into its head's buffer */
        size_t n;
        char *line = srv_completion_chunk(r, text, len, NULL, NULL, &n);
        rc = line ? srv_req_append(head, line, n) : ATTND_ENOMEM;
        free(line);
    } else {
        rc = srv_req_append(r, text, len);
    }
    free(text);
    return rc == ATTND_ENOMEM ? attnd_err_set(err, rc, "out of memory") : rc;
}

/* An error answer in the schema of API: /generate's type names or OpenAI's. */
static enum MHD_Result send_req_error(struct MHD_Connection *c, struct conn *cn, srv_api api,
                                      int rc, const char *msg)
{
    bool oai = api != SRV_API_GENERATE;
    return rc == ATTND_EINVAL
               ? send_error(c, cn, 400, oai ? "invalid_request_error" : "invalid_request", msg)
               : send_error(c, cn, 500, oai ? "server_error" : "internal", msg);
}

/* The request body of CN in API's schema, into R->in. */
static int parse_as(srv_http *h, struct conn *cn, srv_api api, const srv_limits *lim,
                    uint64_t seed, srv_req *r, attnd_err *err)
{
    switch (api) {
    case SRV_API_CHAT:
        return srv_parse_chat(cn->body, cn->len, lim, seed, &h->chat, &r->in, &r->include_usage,
                              err);
    case SRV_API_COMPLETION:
        return srv_parse_completion(cn->body, cn->len, lim, seed, &r->in, &r->include_usage, err);
    case SRV_API_ATTENTION:
        return srv_parse_attention(cn->body, cn->len, lim, seed, h->hp, &r->in, &r->attn, err);
    default:
        /* any failure of /generate's parse is the request's: a 400 */
        return srv_parse_generate(cn->body, cn->len, lim, seed, &r->in, err) ? ATTND_EINVAL : 0;
    }
}

/* POST /generate, /v1/chat/completions (the model's chat template on the
 * messages) and /v1/completions (a raw prompt, text or token ids): parsed
 * in API's schema, then all alike. OpenAI's streams are always SSE. */
static enum MHD_Result route_gen(srv_http *h, struct MHD_Connection *c, struct conn *cn,
                                 srv_api api)
{
    attnd_err err = {0};
    if (srv_sched_draining(h->ctx.sched))
        return send_error(c, cn, 503, "unavailable", "the server is shutting down");
    srv_limits lim = {.default_max_tokens = h->ctx.c->default_max_tokens,
                      .max_tokens_cap = h->ctx.c->max_tokens_cap};
    uint64_t seed = atomic_fetch_add(&h->seed_counter, 0x9e3779b97f4a7c15ull) ^ (uint64_t)time(NULL);
    srv_req *r = srv_req_new();
    if (!r)
        return send_error(c, cn, 500, "internal", "out of memory");
    int rc = parse_as(h, cn, api, &lim, seed, r, &err);
    if (rc != ATTND_OK) {
        srv_req_release(r);
        return send_req_error(c, cn, api, rc, err.msg);
    }
    if (api == SRV_API_GENERATE || api == SRV_API_ATTENTION)
        r->sse = r->in.stream && accepts_sse(c);
    else
        openai_init(h, r, api, api == SRV_API_CHAT ? "chatcmpl" : "cmpl");
    r->api = api;
    /* n > 1: each further choice is the same request parsed again with its
     * own seed (a given seed + index, so the choices differ but repeat) */
    r->n_choices = 1;
    for (uint32_t i = 1; i < r->in.n_choices && rc == ATTND_OK; i++) {
        srv_req *ch = srv_req_new();
        if (!ch) {
            rc = attnd_err_set(&err, ATTND_ENOMEM, "out of memory");
            break;
        }
        r->choices[r->n_choices++] = ch;
        uint64_t s_i = r->in.seed_given ? r->in.sample.seed + i : seed + i * 0x9e3779b97f4a7c15ull;
        if ((rc = parse_as(h, cn, api, &lim, s_i, ch, &err)) != ATTND_OK)
            break;
        if (r->in.seed_given)
            ch->in.sample.seed = s_i;
        ch->api = r->api;
        ch->sse = r->sse;
        ch->include_usage = r->include_usage;
        memcpy(ch->oai_id, r->oai_id, sizeof ch->oai_id);
        ch->oai_created = r->oai_created;
        ch->oai_model = r->oai_model;
        ch->index = i;
        ch->head = r;
    }
    if (rc != ATTND_OK) {
        srv_req_release(r);
        return send_req_error(c, cn, api, rc, err.msg);
    }
    return start_generation(h, c, cn, r);
}

static enum MHD_Result route_generate(srv_http *h, struct MHD_Connection *c, struct conn *cn)
{
    return route_gen(h, c, cn, SRV_API_GENERATE);
}

static enum MHD_Result route_chat(srv_http *h, struct MHD_Connection *c, struct conn *cn)
{
    return route_gen(h, c, cn, SRV_API_CHAT);
}

static enum MHD_Result route_attention(srv_http *h, struct MHD_Connection *c, struct conn *cn)
{
    return route_gen(h, c, cn, SRV_API_ATTENTION);
}

static enum MHD_Result route_completion(srv_http *h, struct MHD_Connection *c, struct conn *cn)
{
    return route_gen(h, c, cn, SRV_API_COMPLETION);
}

/* /v1/attention: the rows its positions (prompt and reported tokens) need,
 * within attention_max_cells (ATTND_ERANGE, a 413, beyond). */
static int attention_rows(srv_http *h, srv_req *r, attnd_err *err)
{
    uint64_t cells;
    uint32_t n = r->n_prompt + r->attn.n_tokens;
    int rc = srv_attention_cells(&r->attn, n, h->ctx.c->attention_max_cells, &cells, err);
    if (rc != ATTND_OK)
        return rc;
    r->tap = (engine_tap){.layers = r->attn.layers, .n_layers = r->attn.n_layers,
                          .heads = r->attn.heads, .n_heads = r->attn.n_heads, .n_rows = n,
                          .out = calloc(cells ? (size_t)cells : 1, sizeof(float))};
    return r->tap.out ? ATTND_OK
                      : attnd_err_set(err, ATTND_ENOMEM, "out of memory for %llu attention weights",
                                      (unsigned long long)cells);
}

/* Tokenizes R's prompt, queues it and answers: a stream, or a parked
 * connection the scheduler resumes when the whole answer is there. */
static enum MHD_Result start_generation(srv_http *h, struct MHD_Connection *c, struct conn *cn,
                                        srv_req *r)
{
    attnd_err err = {0};
    r->conn = c;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    r->fd = ci ? ci->connect_fd : -1;
    r->t_submit = now_s();
    int rc = ATTND_OK;
    for (uint32_t i = 0; i < r->n_choices && rc == ATTND_OK; i++) {
        srv_req *m = i ? r->choices[i] : r;
        m->t_submit = r->t_submit;
        rc = srv_req_prepare(m, h->ctx.m, srv_sched_kv_token_capacity(h->ctx.sched), &err);
        if (rc == ATTND_OK && m->in.echo)
            rc = add_echo(h, m, r, &err);
    }
    if (rc == ATTND_OK && r->api == SRV_API_ATTENTION)
        rc = attention_rows(h, r, &err);
    if (rc != ATTND_OK) {
        srv_api api = r->api;
        srv_req_release(r);
        if (rc == ATTND_ERANGE)
            return send_error(c, cn, 413, "too_large", err.msg);
        return send_req_error(c, cn, api, rc, err.msg);
    }
    cn->req = r;
    atomic_fetch_add(&h->live, 1);
    rc = srv_sched_submit(h->ctx.sched, r);
    if (rc != ATTND_OK) {
        cn->req = NULL;
        atomic_fetch_sub(&h->live, 1);
        srv_req_release(r);
        return send_error(c, cn, 503, rc == ATTND_ERANGE ? "overloaded" : "unavailable",
                          rc == ATTND_ERANGE ? "the request queue is full" : "the server is shutting down");
    }
    if (r->in.stream) {
        cn->streaming = true;
        struct MHD_Response *resp =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, cn, NULL);
        if (!resp)
            return MHD_NO;
        MHD_add_response_header(resp, "Content-Type",
                                r->sse ? "text/event-stream" : "application/x-ndjson");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        add_cors(resp, cn);
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        enum MHD_Result ret = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        cn->status = 200;
        return ret;
    }
    /* Non-streamed: park until the scheduler is done (we are called again). */
    pthread_mutex_lock(&r->mu);
    if (!r->done) {
        r->suspended = true;
        MHD_suspend_connection(c);
    }
    pthread_mutex_unlock(&r->mu);
    return MHD_YES;
}

/* The /v1/attention answer of the finished R: its tokens (prompt, then the
 * generated ones asked for) and the rows the engine wrote for them. The
 * scheduler is done with R, so its token fields are final. */
static enum MHD_Result attention_answer(srv_http *h, struct MHD_Connection *c, struct conn *cn,
                                        srv_req *r)
{
    pthread_mutex_lock(&r->mu);
    srv_finish why = r->finish;
    char error[sizeof r->error];
    memcpy(error, r->error, sizeof error);
    pthread_mutex_unlock(&r->mu);
    if (why == SRV_FINISH_ERROR || why == SRV_FINISH_TIMEOUT)
        return send_error(c, cn, why == SRV_FINISH_ERROR ? 500 : 503, "internal",
                          why == SRV_FINISH_ERROR ? error : "request_timeout_s ran out");
    uint32_t n = r->n_tokens < r->tap.n_rows ? r->n_tokens : r->tap.n_rows;
    uint32_t rows = r->n_computed < n ? r->n_computed : n;
    cJSON *o = srv_attention_json(h->vocab, r->tokens, n, r->n_prompt, rows, &r->attn, r->tap.out,
                                  r->tap.n_rows);
    if (o && !cJSON_AddStringToObject(o, "finish_reason", srv_finish_name(why))) {
        cJSON_Delete(o);
        o = NULL;
    }
    if (!o)
        return send_error(c, cn, 500, "internal", "out of memory building the answer");
    return send_json(c, cn, 200, o);
}

/* Called again after a non-streamed /generate was resumed. */
static enum MHD_Result generate_resumed(srv_http *h, struct MHD_Connection *c, struct conn *cn)
{
    srv_req *r = cn->req;
    pthread_mutex_lock(&r->mu);
    bool done = r->done;
    if (!done) { /* spurious: park again */
        r->suspended = true;
        MHD_suspend_connection(c);
    }
    pthread_mutex_unlock(&r->mu);
    if (!done)
        return MHD_YES;
    if (r->api == SRV_API_ATTENTION)
        return attention_answer(h, c, cn, r);
    if (r->api != SRV_API_GENERATE) {
        size_t n;
        char *s = openai_result(h, r, &n);
        if (!s)
            return send_error(c, cn, 500, "server_error", "out of memory building the answer");
        return send_buf(c, cn, 200, "application/json", s, n);
    }
    cJSON *o = result_json(h, r);
    if (!o)
        return send_error(c, cn, 500, "internal", "out of memory building the answer");
    return send_json(c, cn, 200, o);
}

/* ---------------------------------------------------------------- dispatch */

static bool authorized(srv_http *h, struct MHD_Connection *c)
{
    const char *key = h->ctx.c->api_key;
    if (!key[0])
        return true;
    const char *got = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (got && strncasecmp(got, "Bearer ", 7) == 0)
        got += 7;
    else
        got = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-API-Key");
    if (!got)
        return false;
    /* Compare in time independent of where the first difference is. */
    size_t kl = strlen(key), gl = strlen(got);
    unsigned diff = (unsigned)(kl ^ gl);
    for (size_t i = 0; i < kl; i++)
        diff |= (unsigned)(key[i] ^ (i < gl ? got[i] : 0));
    return diff == 0;
}

struct route {
    const char *path;
    const char *method;
    const char *label;
    bool open; /* no API key needed */
    enum MHD_Result (*fn)(srv_http *, struct MHD_Connection *, struct conn *);
};

static enum MHD_Result route_health(srv_http *h, struct MHD_Connection *c, struct conn *cn)
{
    (void)h;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ok");
    return send_json(c, cn, 200, o);
}

static enum MHD_Result route_ready(srv_http *h, struct MHD_Connection *c, struct conn *cn)
{
    if (srv_sched_draining(h->ctx.sched))
        return send_error(c, cn, 503, "unavailable", "draining");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ready");
    return send_json(c, cn, 200, o);
}

static enum MHD_Result route_asset(srv_http *h, struct MHD_Connection *c, struct conn *cn)
{
    (void)h;
    const srv_web_asset *a = srv_web_find(cn->route->path);
    return a ? send_asset(c, cn, a) : send_error(c, cn, 404, "not_found", "no such file");
}

static const struct route k_routes[] = {
    {"/generate", "POST", "generate", false, route_generate},
    {"/tokenize", "POST", "tokenize", false, route_tokenize},
    {"/detokenize", "POST", "detokenize", false, route_detokenize},
    {"/health", "GET", "health", true, route_health},
    {"/ready", "GET", "ready", true, route_ready},
    {"/metrics", "GET", "metrics", false, route_metrics},
    {"/v1/models", "GET", "models", false, route_models},
    {"/v1/chat/completions", "POST", "chat", false, route_chat},
    {"/v1/completions", "POST", "completions", false, route_completion},
    {"/v1/attention", "POST", "attention", false, route_attention},
    {"/", "GET", "root", true, route_root},
    {"/props", "GET", "props", false, route_props},
    {"/app.js", "GET", "web", true, route_asset},
    {"/app.css", "GET", "web", true, route_asset},
};

static const struct route *find_route(const char *url)
{
    for (size_t i = 0; i < sizeof k_routes / sizeof k_routes[0]; i++)
        if (strcmp(url, k_routes[i].path) == 0)
            return &k_routes[i];
    return NULL;
}

/* Everything decided by the request line and headers alone: unknown path,
 * wrong method, missing or wrong key. Run when the headers arrive, so these
 * are answered without reading (or holding) a body. MHD_YES with nothing
 * queued (cn->routed still false): go on and read the body. */
static enum MHD_Result check_headers(srv_http *h, struct MHD_Connection *c, struct conn *cn,
                                     const char *method)
{
    const struct route *rt = cn->route;
    if (!rt) {
        cn->routed = true;
        return send_error(c, cn, 404, "not_found", "no such endpoint");
    }
    if (strcmp(method, "OPTIONS") == 0) { /* a CORS preflight: no key needed */
        cn->routed = true;
        if (!cn->cors[0])
            return send_error(c, cn, 403, "forbidden", "origin not allowed (cors_origins)");
        struct MHD_Response *r = MHD_create_response_from_buffer(0, (char *)"", MHD_RESPMEM_PERSISTENT);
        if (!r)
            return MHD_NO;
        add_cors(r, cn);
        MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        MHD_add_response_header(r, "Access-Control-Allow-Headers",
                                "Authorization, Content-Type, X-API-Key");
        MHD_add_response_header(r, "Access-Control-Max-Age", "600");
        enum MHD_Result ret = MHD_queue_response(c, 204, r);
        MHD_destroy_response(r);
        cn->status = 204;
        return ret;
    }
    bool head = strcmp(method, "HEAD") == 0 && strcmp(rt->method, "GET") == 0;
    if (strcmp(method, rt->method) != 0 && !head) {
        cn->routed = true;
        char msg[96];
        snprintf(msg, sizeof msg, "%s needs %s", rt->path, rt->method);
        char *txt = srv_error_json("method_not_allowed", msg);
        struct MHD_Response *r = MHD_create_response_from_buffer(
            txt ? strlen(txt) : 0, txt ? txt : (char *)"", MHD_RESPMEM_MUST_COPY);
        free(txt);
        if (!r)
            return MHD_NO;
        MHD_add_response_header(r, "Content-Type", "application/json");
        MHD_add_response_header(r, "Allow", rt->method);
        add_cors(r, cn);
        enum MHD_Result ret = MHD_queue_response(c, 405, r);
        MHD_destroy_response(r);
        cn->status = 405;
        return ret;
    }
    if (!rt->open && !authorized(h, c)) {
        cn->routed = true;
        return send_error(c, cn, 401, "unauthorized", "missing or wrong API key");
    }
    return MHD_YES;
}

static enum MHD_Result send_too_large(srv_http *h, struct MHD_Connection *c, struct conn *cn)
{
    char msg[96];
    snprintf(msg, sizeof msg, "request body is larger than %llu bytes",
             (unsigned long long)h->ctx.c->max_body_bytes);
    return send_error(c, cn, 413, "payload_too_large", msg);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    (void)version;
    srv_http *h = cls;
    struct conn *cn = *con_cls;
    if (!cn) {
        cn = calloc(1, sizeof *cn);
        if (!cn)
            return MHD_NO;
        cn->t_start = now_s();
        cn->endpoint = "other";
        snprintf(cn->method, sizeof cn->method, "%s", method);
        /* printable ASCII only: the path comes from the client */
        size_t k = 0;
        for (const char *p = url; *p && k + 1 < sizeof cn->path; p++)
            cn->path[k++] = (*p > 32 && *p < 127) ? *p : '?';
        cn->path[k] = '\0';
        *con_cls = cn;
        cn->route = find_route(url);
        cn->endpoint = cn->route ? cn->route->label : "other";
        cors_match(h->ctx.c->cors_origins,
                   MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin"), cn->cors,
                   sizeof cn->cors);
        /* A response queued on this first call (headers complete, no body
         * read yet) makes libmicrohttpd skip the body: refusals that the
         * headers decide cost no body buffering. */
        enum MHD_Result ret = check_headers(h, c, cn, method);
        if (cn->routed || ret != MHD_YES)
            return ret;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > h->ctx.c->max_body_bytes) {
            cn->too_large = cn->routed = true;
            return send_too_large(h, c, cn);
        }
        return MHD_YES;
    }
    if (cn->req && !cn->streaming && cn->routed)
        return generate_resumed(h, c, cn);
    if (*upload_size > 0 && cn->routed) { /* answered from the headers: not kept */
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (!cn->too_large) {
            size_t n = *upload_size;
            if (cn->len + n > h->ctx.c->max_body_bytes) {
                cn->too_large = true;
            } else {
                if (cn->len + n + 1 > cn->cap) {
                    size_t cap = (cn->len + n + 1) * 2;
                    if (cap > h->ctx.c->max_body_bytes + 1)
                        cap = h->ctx.c->max_body_bytes + 1;
                    char *t = realloc(cn->body, cap);
                    if (!t)
                        return MHD_NO;
                    cn->body = t;
                    cn->cap = cap;
                }
                memcpy(cn->body + cn->len, upload, n);
                cn->len += n;
            }
        }
        /* A chunked body without a length that outgrows the limit is read
         * and dropped (a response cannot be queued mid-upload), up to a point. */
        if (cn->too_large) {
            cn->dropped += *upload_size;
            if (cn->dropped > 16 * (uint64_t)h->ctx.c->max_body_bytes)
                return MHD_NO;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (cn->routed)
        return MHD_YES;
    cn->routed = true;
    if (cn->too_large)
        return send_too_large(h, c, cn);
    return cn->route->fn(h, c, cn);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)c;
    srv_http *h = cls;
    struct conn *cn = *con_cls;
    if (!cn)
        return;
    *con_cls = NULL;
    unsigned prompt = 0, gen = 0;
    double q = 0, pf = 0, dc = 0;
    const char *why = "none";
    if (cn->req) {
        srv_req *r = cn->req;
        pthread_mutex_lock(&r->mu);
        bool done = r->done;
        prompt = r->n_prompt;
        gen = r->n_generated;
        q = r->queue_ms;
        pf = r->prefill_ms;
        dc = r->decode_ms;
        why = srv_finish_name(r->finish);
        pthread_mutex_unlock(&r->mu);
        if (!done || toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
            srv_sched_cancel(h->ctx.sched, r);
        srv_req_release(r);
        atomic_fetch_sub(&h->live, 1);
    }
    unsigned status = cn->status ? cn->status : 499; /* 499: closed before an answer */
    srv_metrics_request(h->ctx.metrics, cn->endpoint, status);
    bool log = h->ctx.c->log_level >= CFG_LOG_INFO ||
               (status >= 500 && h->ctx.c->log_level >= CFG_LOG_WARN);
    const char *early = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed early)";
    double total = (now_s() - cn->t_start) * 1e3;
    if (log && cn->req)
        fprintf(stderr,
                "attnd: %s %s %s %u finish=%s prompt_tokens=%u generated_tokens=%u queue_ms=%.1f "
                "prefill_ms=%.1f decode_ms=%.1f total_ms=%.1f%s\n",
                cn->method, cn->path, cn->streaming ? "stream" : "json", status, why, prompt, gen,
                q, pf, dc, total, early);
    else if (log)
        fprintf(stderr, "attnd: %s %s %u total_ms=%.1f%s\n", cn->method, cn->path, status, total,
                early);
    free(cn->body);
    free(cn);
}

/* ---------------------------------------------------------------- start/stop */

/* libmicrohttpd's own messages (clients vanishing, malformed requests) are
 * routine for a server: shown at log level debug only. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    const srv_http *h = cls;
    if (h->ctx.c->log_level < CFG_LOG_DEBUG)
        return;
    fputs("attnd: http: ", stderr);
    vfprintf(stderr, fmt, ap);
}

void srv_http_wake(void *ctx, srv_req *r)
{
    (void)ctx;
    MHD_resume_connection(r->conn);
}

bool srv_http_client_gone(void *ctx, const srv_req *r)
{
    (void)ctx;
    if (r->fd < 0)
        return false;
    /* A pipelined next request (POLLIN alone) is not a hang-up; a FIN
     * (POLLRDHUP: libmicrohttpd too ends a connection on end of input) or a
     * reset is. */
    struct pollfd p = {.fd = r->fd, .events = POLLIN | POLLRDHUP};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

size_t srv_http_live(srv_http *h)
{
    return atomic_load(&h->live);
}

/* Frees what srv_http_start allocated (the daemon is stopped or never ran). */
static void http_free(srv_http *h)
{
    jinja_free(h->chat_tmpl);
    free(h->chat_bos);
    free(h->chat_eos);
    free(h);
}

static char *token_text(const tok_vocab *v, int32_t id)
{
    size_t n = 0;
    const char *t = id >= 0 ? tok_text(v, id, &n) : NULL;
    char *s = malloc(n + 1);
    if (s) {
        if (n)
            memcpy(s, t, n);
        s[n] = '\0';
    }
    return s;
}

/* Parses the chat template once: the chat_template file when configured (it
 * must read and parse, or the server does not start), else the model's
 * tokenizer.chat_template; without one (or when the model's does not parse)
 * the chat route answers 400 saying why, and the log says so at start. */
static int chat_template_load(srv_http *h, attnd_err *out_err)
{
    size_t len;
    const char *src = tok_chat_template(h->vocab, &len);
    attnd_err err = {0};
    h->chat_bos = token_text(h->vocab, tok_bos(h->vocab));
    h->chat_eos = token_text(h->vocab, tok_eos(h->vocab));
    h->chat = (srv_chat_template){NULL, h->chat_why, h->chat_bos ? h->chat_bos : "",
                                  h->chat_eos ? h->chat_eos : ""};
    const char *file = h->ctx.c->chat_template;
    if (file[0]) {
        FILE *fp = fopen(file, "rb");
        char *text = NULL;
        size_t n = 0;
        if (fp) {
            text = malloc(1 << 20);
            n = text ? fread(text, 1, 1 << 20, fp) : 0;
            bool too_big = text && n == (1 << 20);
            fclose(fp);
            if (too_big) {
                free(text);
                return attnd_err_set(out_err, ATTND_EINVAL, "chat_template: %s is over 1 MiB", file);
            }
        }
        if (!text) {
            free(text);
            return attnd_err_set(out_err, ATTND_EINVAL, "chat_template: cannot read %s: %s", file,
                                 fp ? "out of memory" : strerror(errno));
        }
        int rc = jinja_parse(text, n, &h->chat_tmpl, &err);
        free(text);
        if (rc != ATTND_OK)
            return attnd_err_set(out_err, rc, "chat_template: %s: %s", file, err.msg);
        h->chat.tmpl = h->chat_tmpl;
        return ATTND_OK;
    }
    if (!src) {
        snprintf(h->chat_why, sizeof h->chat_why,
                 "the model has no chat template (tokenizer.chat_template): use /v1/completions "
                 "or /generate with a prompt laid out by hand");
    } else if (jinja_parse(src, len, &h->chat_tmpl, &err) != ATTND_OK) {
        snprintf(h->chat_why, sizeof h->chat_why, "the model's chat template does not parse: %s",
                 err.msg);
        fprintf(stderr, "attnd: warning: %s\n", h->chat_why);
    } else {
        h->chat.tmpl = h->chat_tmpl;
    }
    return ATTND_OK;
}

int srv_http_start(const srv_http_ctx *ctx, srv_http **out, attnd_err *err)
{
    *out = NULL;
    srv_http *h = calloc(1, sizeof *h);
    if (!h)
        return attnd_err_set(err, ATTND_ENOMEM, "http: out of memory");
    h->ctx = *ctx;
    h->hp = model_hparams_of(ctx->m);
    h->vocab = model_vocab(ctx->m);
    const char *base = strrchr(ctx->c->model, '/');
    h->model_name = base ? base + 1 : ctx->c->model;
    int trc = chat_template_load(h, err);
    if (trc != ATTND_OK) {
        http_free(h);
        return trc;
    }
    atomic_init(&h->live, 0);
    atomic_init(&h->seed_counter, (uint64_t)time(NULL) * 0x2545F4914F6CDD1Dull);

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%u", ctx->c->port);
    int gai = getaddrinfo(ctx->c->host[0] ? ctx->c->host : NULL, port, &hints, &ai);
    if (gai != 0) {
        http_free(h);
        return attnd_err_set(err, ATTND_EINVAL, "host: cannot resolve '%s': %s", ctx->c->host,
                             gai_strerror(gai));
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL_LINUX_ONLY |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    h->d = MHD_start_daemon(
        flags, (uint16_t)ctx->c->port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)ctx->c->http_threads, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)ctx->c->conn_timeout_s, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)ctx->c->max_connections, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)128 * 1024,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
        MHD_OPTION_END);
    if (!h->d) {
        /* libmicrohttpd does not say why; binding the address ourselves does
         * (usually: another process has the port). */
        char why[128] = "in use, or not allowed";
        int fd = socket(ai->ai_family, SOCK_STREAM, 0);
        if (fd >= 0) {
            int one = 1;
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0)
                snprintf(why, sizeof why, "%s", strerror(errno));
            close(fd);
        }
        freeaddrinfo(ai);
        http_free(h);
        return attnd_err_set(err, ATTND_EIO, "http: cannot listen on %s:%u: %s (port %u)",
                             ctx->c->host, ctx->c->port, why, ctx->c->port);
    }
    freeaddrinfo(ai);
    *out = h;
    return ATTND_OK;
}

void srv_http_stop(srv_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->d);
    http_free(h);
}
