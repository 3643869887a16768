/* load.c - a load generator for `attnd serve`: N concurrent clients (one
 * libcurl multi handle, one easy handle per client) each send R streamed
 * POST /generate requests back to back and time every token line as it
 * arrives. Reports generated tokens/s, requests/s, time to first token and
 * inter-token latency percentiles, and errors, as a table or (--json) as one
 * JSON object. --api llama sends the same load to llama.cpp's llama-server
 * (POST /completion, SSE), so the two servers are measured by one client. Exit 0 when every request completed, 1 when any failed, 2 on
 * a usage error. See bench/README.md. */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOAD_MAX_LINE (1u << 20) /* longest NDJSON line accepted */
#define LOAD_ERRBODY 240         /* bytes of an error response kept for the message */
#define LOAD_ERRORS_SHOWN 5      /* individual failures printed to stderr */

/* ------------------------------------------------------------ options */

struct opts {
    const char *url;
    long clients;
    long requests;
    long prompt_tokens;
    long max_tokens;
    double temperature;
    const char *api_key;
    double timeout_s; /* per request; 0 = none */
    bool json;
    bool api_llama; /* llama-server's /completion instead of /generate */
    bool cache_prompt; /* let the server reuse the (repeated) prompt's KV */
};

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: load --url URL [OPTIONS]\n"
            "\n"
            "Sends streamed POST URL/generate requests from concurrent clients and reports\n"
            "throughput and latency.\n"
            "\n"
            "  --url URL            server base URL, e.g. http://127.0.0.1:8080 (required)\n"
            "  --clients N          concurrent clients (default 4; 1 to 10000)\n"
            "  --requests R         requests per client, sent back to back (default 4; 1 to 1000000)\n"
            "  --prompt-tokens P    prompt of about P tokens: \"the\" repeated P times\n"
            "                       (default 32; 1 to 1000000)\n"
            "  --max-tokens M       max_tokens of each request, with ignore_eos so each\n"
            "                       generates M tokens (default 64; 1 to 1000000)\n"
            "  --temperature T      sampling temperature (default 0 = greedy; 0 to 100)\n"
            "  --api-key K          sent as Authorization: Bearer K\n"
            "  --timeout S          seconds one request may take, 0 = none (default 300)\n"
            "  --api A              attnd (default: POST /generate, NDJSON) or llama\n"
            "                       (llama.cpp's llama-server: POST /completion with\n"
            "                       n_predict, stream, ignore_eos; SSE events)\n"
            "  --cache-prompt on|off  let the server reuse the repeated prompt's KV cache\n"
            "                       (cache_prompt; default off: every request prefills)\n"
            "  --json               print one JSON object instead of the table\n"
            "  -h, --help           this text\n"
            "\n"
            "Exit status: 0 every request completed, 1 some request failed (non-200, transport\n"
            "error, or no final done line), 2 usage error.\n");
}

static bool parse_long(const char *name, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0') {
        fprintf(stderr, "load: %s: '%s' is not an integer\n", name, s);
        return false;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "load: %s: %ld is out of range (%ld to %ld)\n", name, v, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

static bool parse_double(const char *name, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v)) {
        fprintf(stderr, "load: %s: '%s' is not a number\n", name, s);
        return false;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "load: %s: %g is out of range (%g to %g)\n", name, v, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

/* Returns 0 to run, 1 after --help, 2 on a usage error. Accepts "--opt VALUE"
 * and "--opt=VALUE". */
static int parse_args(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.clients = 4,
                       .requests = 4,
                       .prompt_tokens = 32,
                       .max_tokens = 64,
                       .temperature = 0,
                       .timeout_s = 300};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(arg, "--json") == 0) {
            o->json = true;
            continue;
        }
        static const char *const valued[] = {"--url",        "--clients",     "--requests",
                                             "--prompt-tokens", "--max-tokens", "--temperature",
                                             "--api-key",    "--timeout",     "--api",
                                             "--cache-prompt"};
        const char *name = NULL, *val = NULL;
        for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++) {
            size_t n = strlen(valued[k]);
            if (strncmp(arg, valued[k], n) == 0 && (arg[n] == '\0' || arg[n] == '=')) {
                name = valued[k];
                if (arg[n] == '=') {
                    val = arg + n + 1;
                } else if (i + 1 < argc) {
                    val = argv[++i];
                } else {
                    fprintf(stderr, "load: %s needs a value\n", name);
                    return 2;
                }
                break;
            }
        }
        if (!name) {
            fprintf(stderr, "load: unknown option '%s' (see --help)\n", arg);
            return 2;
        }
        bool ok = true;
        if (strcmp(name, "--url") == 0) {
            if (strncmp(val, "http://", 7) != 0 && strncmp(val, "https://", 8) != 0) {
                fprintf(stderr, "load: --url: '%s' must start with http:// or https://\n", val);
                return 2;
            }
            if (strlen(val) > 2000) {
                fprintf(stderr, "load: --url: longer than 2000 bytes\n");
                return 2;
            }
            o->url = val;
        } else if (strcmp(name, "--clients") == 0) {
            ok = parse_long(name, val, 1, 10000, &o->clients);
        } else if (strcmp(name, "--requests") == 0) {
            ok = parse_long(name, val, 1, 1000000, &o->requests);
        } else if (strcmp(name, "--prompt-tokens") == 0) {
            ok = parse_long(name, val, 1, 1000000, &o->prompt_tokens);
        } else if (strcmp(name, "--max-tokens") == 0) {
            ok = parse_long(name, val, 1, 1000000, &o->max_tokens);
        } else if (strcmp(name, "--temperature") == 0) {
            ok = parse_double(name, val, 0, 100, &o->temperature);
        } else if (strcmp(name, "--api-key") == 0) {
            if (*val == '\0' || strlen(val) > 255 || strpbrk(val, "\r\n")) {
                fprintf(stderr, "load: --api-key: must be 1 to 255 bytes without line breaks\n");
                return 2;
            }
            o->api_key = val;
        } else if (strcmp(name, "--timeout") == 0) {
            ok = parse_double(name, val, 0, 86400, &o->timeout_s);
        } else if (strcmp(name, "--api") == 0) {
            if (strcmp(val, "attnd") != 0 && strcmp(val, "llama") != 0) {
                fprintf(stderr, "load: --api: '%s' is not attnd or llama\n", val);
                return 2;
            }
            o->api_llama = strcmp(val, "llama") == 0;
        } else if (strcmp(name, "--cache-prompt") == 0) {
            if (strcmp(val, "on") != 0 && strcmp(val, "off") != 0) {
                fprintf(stderr, "load: --cache-prompt: '%s' is not on or off\n", val);
                return 2;
            }
            o->cache_prompt = strcmp(val, "on") == 0;
        }
        if (!ok)
            return 2;
    }
    if (!o->url) {
        fprintf(stderr, "load: --url is required (see --help)\n");
        return 2;
    }
    return 0;
}

/* ------------------------------------------------------------ samples */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct samples {
    double *v;
    size_t n, cap;
};

static bool samples_add(struct samples *s, double x)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        double *v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return false;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = x;
    return true;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples: the value at rank ceil(p/100 * n). */
static double percentile(const struct samples *s, double p)
{
    if (s->n == 0)
        return NAN;
    double r = ceil(p / 100.0 * (double)s->n);
    size_t rank = r < 1 ? 1 : (size_t)r;
    if (rank > s->n)
        rank = s->n;
    return s->v[rank - 1];
}

/* ------------------------------------------------------------ clients */

struct run;

/* One client: its easy handle and the state of its current request. */
struct client {
    struct run *run;
    CURL *easy;
    long id;
    long started; /* requests started so far */
    /* current request */
    double t_start, t_prev_token;
    long status; /* HTTP status, read at the first body bytes */
    bool got_token, got_done;
    long token_lines;
    long completion_tokens; /* usage.completion_tokens of the done line, -1 if absent */
    long prompt_tokens;     /* usage.prompt_tokens, -1 if absent */
    double ttft;
    size_t itl_mark; /* run->itl.n when the request started (rolled back on failure) */
    char failure[200]; /* set by the write callback when the stream is malformed */
    char *line;
    size_t line_len, line_cap;
    char errbody[LOAD_ERRBODY + 1];
    size_t errbody_len;
    char curl_err[CURL_ERROR_SIZE];
};

struct run {
    const struct opts *o;
    char url[2100];
    char *body;
    struct curl_slist *headers;
    CURLM *multi;
    struct client *clients;
    struct samples ttft, itl; /* seconds */
    long ok, errors, tokens, prompt_tokens, prompt_reports;
    int errors_shown;
    bool oom;
    double t0, t1;
};

/* Handles one complete line of the stream. Returns false to abort the request. */
static bool on_line(struct client *c, char *line, size_t len, double t)
{
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' '))
        line[--len] = '\0';
    if (len == 0)
        return true;
    if (strncmp(line, "data: ", 6) == 0) /* SSE framing, in case a proxy chose it */
        line += 6;
    cJSON *o = cJSON_Parse(line);
    if (!o || !cJSON_IsObject(o)) {
        snprintf(c->failure, sizeof c->failure, "stream line is not a JSON object: %.80s", line);
        cJSON_Delete(o);
        return false;
    }
    bool keep = true;
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(o, "token");
    const cJSON *done = cJSON_GetObjectItemCaseSensitive(o, "done");
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(o, "error");
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(o, "usage");
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens");
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens");
    if (c->run->o->api_llama) {
        /* llama-server: one event per token, {"content": ..., "stop": false};
         * the last has "stop": true and the counts in "timings" */
        const cJSON *stop = cJSON_GetObjectItemCaseSensitive(o, "stop");
        const cJSON *timings = cJSON_GetObjectItemCaseSensitive(o, "timings");
        tok = cJSON_IsFalse(stop) ? cJSON_GetObjectItemCaseSensitive(o, "content") : NULL;
        done = cJSON_IsTrue(stop) ? stop : NULL;
        ct = cJSON_GetObjectItemCaseSensitive(timings, "predicted_n");
        pt = cJSON_GetObjectItemCaseSensitive(timings, "prompt_n");
        if (tok && !cJSON_IsString(tok))
            tok = NULL;
    }
    if ((cJSON_IsNumber(tok) || cJSON_IsString(tok)) && !c->got_done) {
        if (!c->got_token) {
            c->got_token = true;
            c->ttft = t - c->t_start;
        } else if (!samples_add(&c->run->itl, t - c->t_prev_token)) {
            c->run->oom = true;
            keep = false;
        }
        c->t_prev_token = t;
        c->token_lines++;
    } else if (cJSON_IsTrue(done)) {
        c->got_done = true;
        if (cJSON_IsNumber(ct))
            c->completion_tokens = (long)ct->valuedouble;
        if (cJSON_IsNumber(pt))
            c->prompt_tokens = (long)pt->valuedouble;
    } else if (err) {
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(err, "message");
        snprintf(c->failure, sizeof c->failure, "error in stream: %.150s",
                 cJSON_IsString(msg) ? msg->valuestring : "(no message)");
        keep = false;
    }
    cJSON_Delete(o);
    return keep;
}

/* libcurl write callback: USERDATA is the client. Lines may be split across
 * calls and one call may hold many lines. */
static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct client *c = userdata;
    size_t len = size * nmemb;
    double t = now_s();
    if (c->status == 0)
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->status);
    if (c->status != 200) { /* keep the start of the error body for the message */
        size_t room = LOAD_ERRBODY - c->errbody_len, n = len < room ? len : room;
        memcpy(c->errbody + c->errbody_len, ptr, n);
        c->errbody_len += n;
        c->errbody[c->errbody_len] = '\0';
        return len;
    }
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(ptr + pos, '\n', len - pos);
        size_t take = nl ? (size_t)(nl - (ptr + pos)) : len - pos;
        if (c->line_len + take + 1 > LOAD_MAX_LINE) {
            snprintf(c->failure, sizeof c->failure, "stream line longer than %u bytes",
                     LOAD_MAX_LINE);
            return 0;
        }
        if (c->line_len + take + 1 > c->line_cap) {
            size_t cap = c->line_cap ? c->line_cap : 256;
            while (cap < c->line_len + take + 1)
                cap *= 2;
            char *p = realloc(c->line, cap);
            if (!p) {
                c->run->oom = true;
                return 0;
            }
            c->line = p;
            c->line_cap = cap;
        }
        memcpy(c->line + c->line_len, ptr + pos, take);
        c->line_len += take;
        c->line[c->line_len] = '\0';
        pos += take;
        if (nl) {
            pos++; /* the newline */
            size_t n = c->line_len;
            c->line_len = 0;
            if (!on_line(c, c->line, n, t))
                return 0;
        }
    }
    return len;
}

static bool client_start(struct client *c)
{
    struct run *r = c->run;
    c->started++;
    c->status = 0;
    c->got_token = c->got_done = false;
    c->token_lines = 0;
    c->completion_tokens = c->prompt_tokens = -1;
    c->ttft = 0;
    c->itl_mark = r->itl.n;
    c->failure[0] = '\0';
    c->line_len = 0;
    c->errbody_len = 0;
    c->errbody[0] = '\0';
    c->curl_err[0] = '\0';
    c->t_start = now_s();
    return curl_multi_add_handle(r->multi, c->easy) == CURLM_OK;
}

static void report_failure(struct run *r, const struct client *c, const char *what)
{
    r->errors++;
    if (r->errors_shown < LOAD_ERRORS_SHOWN) {
        r->errors_shown++;
        fprintf(stderr, "load: client %ld request %ld: %s\n", c->id, c->started, what);
    }
}

/* A request of client C finished with curl result RES. */
static void client_finish(struct client *c, CURLcode res)
{
    struct run *r = c->run;
    long status = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    char what[512];
    what[0] = '\0';
    if (c->failure[0]) {
        snprintf(what, sizeof what, "%s", c->failure);
    } else if (res != CURLE_OK) {
        snprintf(what, sizeof what, "transport error: %s",
                 c->curl_err[0] ? c->curl_err : curl_easy_strerror(res));
    } else if (status != 200) {
        for (size_t i = 0; i < c->errbody_len; i++)
            if (c->errbody[i] == '\n' || c->errbody[i] == '\r')
                c->errbody[i] = ' ';
        snprintf(what, sizeof what, "HTTP %ld: %s", status, c->errbody);
    } else if (c->line_len > 0 && !c->got_done) {
        /* a last line without a newline: treat it as complete */
        size_t n = c->line_len;
        c->line_len = 0;
        if (!on_line(c, c->line, n, now_s()) && c->failure[0])
            snprintf(what, sizeof what, "%s", c->failure);
    }
    if (!what[0] && !c->got_done)
        snprintf(what, sizeof what, "stream ended without a done line (%ld tokens)",
                 c->token_lines);
    if (what[0]) {
        r->itl.n = c->itl_mark; /* drop this request's latencies */
        report_failure(r, c, what);
        return;
    }
    r->ok++;
    r->tokens += c->completion_tokens >= 0 ? c->completion_tokens : c->token_lines;
    if (c->prompt_tokens >= 0) {
        r->prompt_tokens += c->prompt_tokens;
        r->prompt_reports++;
    }
    if (c->got_token && !samples_add(&r->ttft, c->ttft))
        r->oom = true;
}

/* ------------------------------------------------------------ run */

static char *request_body(const struct opts *o)
{
    size_t n = (size_t)o->prompt_tokens * 4;
    char *prompt = malloc(n + 1);
    if (!prompt)
        return NULL;
    for (size_t i = 0; i < (size_t)o->prompt_tokens; i++)
        memcpy(prompt + i * 4, "the ", 4);
    prompt[n > 0 ? n - 1 : 0] = '\0'; /* no trailing space */
    cJSON *req = cJSON_CreateObject();
    char *body = NULL;
    if (req && cJSON_AddStringToObject(req, "prompt", prompt) &&
        cJSON_AddNumberToObject(req, o->api_llama ? "n_predict" : "max_tokens",
                                (double)o->max_tokens) &&
        cJSON_AddNumberToObject(req, "temperature", o->temperature) &&
        cJSON_AddTrueToObject(req, "ignore_eos") && cJSON_AddTrueToObject(req, "stream") &&
        /* every request repeats one prompt: without this, both servers would
         * prefill it once and the figures would measure their caches */
        cJSON_AddBoolToObject(req, "cache_prompt", o->cache_prompt))
        body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    free(prompt);
    return body;
}

static bool setup_client(struct run *r, struct client *c, long id)
{
    c->run = r;
    c->id = id;
    c->easy = curl_easy_init();
    if (!c->easy)
        return false;
    CURL *e = c->easy;
    bool ok = curl_easy_setopt(e, CURLOPT_URL, r->url) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_POST, 1L) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(r->body)) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_WRITEDATA, c) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->curl_err) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 10L) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_PRIVATE, c) == CURLE_OK;
    if (ok && r->o->timeout_s > 0)
        ok = curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(r->o->timeout_s * 1000.0)) == CURLE_OK;
    return ok;
}

/* Runs every request. Returns false on a setup failure (already reported). */
static bool run_all(struct run *r)
{
    const struct opts *o = r->o;
    size_t ulen = strlen(o->url);
    while (ulen > 0 && o->url[ulen - 1] == '/')
        ulen--;
    snprintf(r->url, sizeof r->url, "%.*s/%s", (int)ulen, o->url,
             o->api_llama ? "completion" : "generate");
    r->body = request_body(o);
    char auth[300] = "";
    if (o->api_key)
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->api_key);
    /* "Expect:" stops curl from waiting for 100-continue on long prompts. */
    const char *hdrs[] = {"Content-Type: application/json", "Accept: application/x-ndjson",
                          "Expect:", auth};
    for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++) {
        if (!hdrs[i][0])
            continue;
        struct curl_slist *h = curl_slist_append(r->headers, hdrs[i]);
        if (!h) {
            curl_slist_free_all(r->headers);
            r->headers = NULL;
            break;
        }
        r->headers = h;
    }
    r->multi = curl_multi_init();
    r->clients = calloc((size_t)o->clients, sizeof *r->clients);
    if (!r->body || !r->headers || !r->multi || !r->clients) {
        fprintf(stderr, "load: out of memory\n");
        return false;
    }
    for (long i = 0; i < o->clients; i++)
        if (!setup_client(r, &r->clients[i], i)) {
            fprintf(stderr, "load: could not set up a curl handle\n");
            return false;
        }
    /* Let every client have its own connection at once. */
    curl_multi_setopt(r->multi, CURLMOPT_MAX_HOST_CONNECTIONS, o->clients);

    r->t0 = now_s();
    long running_clients = 0;
    for (long i = 0; i < o->clients; i++) {
        if (!client_start(&r->clients[i])) {
            fprintf(stderr, "load: curl_multi_add_handle failed\n");
            return false;
        }
        running_clients++;
    }
    while (running_clients > 0) {
        int still = 0;
        CURLMcode mc = curl_multi_perform(r->multi, &still);
        if (mc != CURLM_OK) {
            fprintf(stderr, "load: curl_multi_perform: %s\n", curl_multi_strerror(mc));
            return false;
        }
        CURLMsg *msg;
        int left;
        bool restarted = false;
        while ((msg = curl_multi_info_read(r->multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURL *e = msg->easy_handle;
            CURLcode res = msg->data.result;
            char *priv = NULL;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
            struct client *c = (struct client *)(void *)priv;
            curl_multi_remove_handle(r->multi, e);
            client_finish(c, res);
            if (r->oom) {
                fprintf(stderr, "load: out of memory\n");
                return false;
            }
            if (c->started < o->requests) {
                if (!client_start(c)) {
                    fprintf(stderr, "load: curl_multi_add_handle failed\n");
                    return false;
                }
                restarted = true;
            } else {
                running_clients--;
            }
        }
        if (running_clients > 0 && !restarted) {
            mc = curl_multi_poll(r->multi, NULL, 0, 1000, NULL);
            if (mc != CURLM_OK) {
                fprintf(stderr, "load: curl_multi_poll: %s\n", curl_multi_strerror(mc));
                return false;
            }
        }
    }
    r->t1 = now_s();
    return true;
}

static void run_free(struct run *r)
{
    if (r->clients) {
        for (long i = 0; i < r->o->clients; i++) {
            struct client *c = &r->clients[i];
            if (c->easy) {
                if (r->multi)
                    curl_multi_remove_handle(r->multi, c->easy);
                curl_easy_cleanup(c->easy);
            }
            free(c->line);
        }
        free(r->clients);
    }
    if (r->multi)
        curl_multi_cleanup(r->multi);
    curl_slist_free_all(r->headers);
    free(r->body);
    free(r->ttft.v);
    free(r->itl.v);
}

/* ------------------------------------------------------------ report */

struct report {
    long requests, completed, errors, tokens;
    double wall_s, tokens_per_s, requests_per_s;
    double ttft_p50_ms, ttft_p99_ms, itl_p50_ms, itl_p99_ms;
    double prompt_tokens_mean; /* NAN when the server reported none */
};

static void summarize(struct run *r, struct report *rep)
{
    if (r->ttft.n > 0)
        qsort(r->ttft.v, r->ttft.n, sizeof(double), cmp_double);
    if (r->itl.n > 0)
        qsort(r->itl.v, r->itl.n, sizeof(double), cmp_double);
    rep->requests = r->ok + r->errors;
    rep->completed = r->ok;
    rep->errors = r->errors;
    rep->tokens = r->tokens;
    rep->wall_s = r->t1 - r->t0;
    rep->tokens_per_s = rep->wall_s > 0 ? (double)r->tokens / rep->wall_s : 0;
    rep->requests_per_s = rep->wall_s > 0 ? (double)r->ok / rep->wall_s : 0;
    rep->ttft_p50_ms = percentile(&r->ttft, 50) * 1e3;
    rep->ttft_p99_ms = percentile(&r->ttft, 99) * 1e3;
    rep->itl_p50_ms = percentile(&r->itl, 50) * 1e3;
    rep->itl_p99_ms = percentile(&r->itl, 99) * 1e3;
    rep->prompt_tokens_mean =
        r->prompt_reports > 0 ? (double)r->prompt_tokens / (double)r->prompt_reports : NAN;
}

/* Adds NAME: V, or null when V is NAN. */
static bool add_num(cJSON *o, const char *name, double v)
{
    return isnan(v) ? cJSON_AddNullToObject(o, name) != NULL
                    : cJSON_AddNumberToObject(o, name, v) != NULL;
}

static double round3(double v)
{
    return isnan(v) ? v : round(v * 1000.0) / 1000.0;
}

static bool print_json(const struct opts *o, const struct report *rep)
{
    cJSON *j = cJSON_CreateObject();
    bool ok = j && cJSON_AddStringToObject(j, "url", o->url) &&
              add_num(j, "clients", (double)o->clients) &&
              add_num(j, "requests_per_client", (double)o->requests) &&
              add_num(j, "prompt_tokens", (double)o->prompt_tokens) &&
              add_num(j, "max_tokens", (double)o->max_tokens) &&
              add_num(j, "temperature", o->temperature) &&
              add_num(j, "requests", (double)rep->requests) &&
              add_num(j, "completed", (double)rep->completed) &&
              add_num(j, "errors", (double)rep->errors) &&
              add_num(j, "tokens", (double)rep->tokens) &&
              add_num(j, "wall_s", round3(rep->wall_s)) &&
              add_num(j, "tokens_per_s", round3(rep->tokens_per_s)) &&
              add_num(j, "requests_per_s", round3(rep->requests_per_s)) &&
              add_num(j, "ttft_p50_ms", round3(rep->ttft_p50_ms)) &&
              add_num(j, "ttft_p99_ms", round3(rep->ttft_p99_ms)) &&
              add_num(j, "itl_p50_ms", round3(rep->itl_p50_ms)) &&
              add_num(j, "itl_p99_ms", round3(rep->itl_p99_ms)) &&
              add_num(j, "server_prompt_tokens_mean", round3(rep->prompt_tokens_mean));
    char *s = ok ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!s)
        return false;
    printf("%s\n", s);
    free(s);
    return true;
}

static void fmt_ms(char *buf, size_t n, double v)
{
    if (isnan(v))
        snprintf(buf, n, "-");
    else
        snprintf(buf, n, "%.2f", v);
}

static void print_table(const struct opts *o, const struct report *rep)
{
    char a[32], b[32];
    printf("attnd load: %s, %ld clients x %ld requests, prompt ~%ld tokens, max_tokens %ld, "
           "temperature %g\n",
           o->url, o->clients, o->requests, o->prompt_tokens, o->max_tokens, o->temperature);
    printf("  %-22s %ld (%ld completed, %ld errors)\n", "requests", rep->requests, rep->completed,
           rep->errors);
    printf("  %-22s %.3f\n", "wall s", rep->wall_s);
    printf("  %-22s %ld\n", "generated tokens", rep->tokens);
    printf("  %-22s %.1f\n", "tokens/s", rep->tokens_per_s);
    printf("  %-22s %.2f\n", "requests/s", rep->requests_per_s);
    fmt_ms(a, sizeof a, rep->ttft_p50_ms);
    fmt_ms(b, sizeof b, rep->ttft_p99_ms);
    printf("  %-22s %s / %s\n", "TTFT p50 / p99 ms", a, b);
    fmt_ms(a, sizeof a, rep->itl_p50_ms);
    fmt_ms(b, sizeof b, rep->itl_p99_ms);
    printf("  %-22s %s / %s\n", "ITL p50 / p99 ms", a, b);
    if (!isnan(rep->prompt_tokens_mean))
        printf("  %-22s %.1f\n", "prompt tokens (server)", rep->prompt_tokens_mean);
}

int main(int argc, char **argv)
{
    struct opts o;
    int pa = parse_args(argc, argv, &o);
    if (pa == 1)
        return 0;
    if (pa != 0)
        return 2;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "load: curl_global_init failed\n");
        return 1;
    }
    struct run r = {.o = &o};
    bool ran = run_all(&r);
    int rc = 1;
    if (ran) {
        struct report rep;
        summarize(&r, &rep);
        if (r.errors > LOAD_ERRORS_SHOWN)
            fprintf(stderr, "load: %ld failed requests in all (first %d shown)\n", r.errors,
                    LOAD_ERRORS_SHOWN);
        bool printed = true;
        if (o.json)
            printed = print_json(&o, &rep);
        else
            print_table(&o, &rep);
        if (!printed)
            fprintf(stderr, "load: out of memory\n");
        rc = (printed && rep.errors == 0) ? 0 : 1;
    }
    run_free(&r);
    curl_global_cleanup();
    return rc;
}
