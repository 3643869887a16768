/* test_server.c - `attnd serve` as clients see it: a real server process on a
 * free loopback port, HTTP through libcurl. ATTND_BIN selects the binary, so
 * .ci/run also runs this suite against a TSan-built server. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "attnd_half.h"
#include "test_util.h"

/* ------------------------------------------------------------ server process */

struct server {
    pid_t pid;
    int port;
    char base[64];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

struct buf {
    char *p;
    size_t len;
    int chunks;
    double t_first, t_last;
    size_t abort_after; /* stop reading after this many bytes (0: never) */
};

static size_t on_data(char *ptr, size_t size, size_t n, void *ud)
{
    struct buf *b = ud;
    size_t len = size * n;
    double t = now_s();
    if (b->chunks++ == 0)
        b->t_first = t;
    b->t_last = t;
    char *q = realloc(b->p, b->len + len + 1);
    cr_assert(q);
    b->p = q;
    memcpy(b->p + b->len, ptr, len);
    b->len += len;
    b->p[b->len] = '\0';
    if (b->abort_after && b->len >= b->abort_after)
        return 0; /* makes curl drop the connection */
    return len;
}

/* One request; returns the HTTP status (0 on a transport error). */
static long http(const struct server *s, const char *method, const char *path, const char *body,
                 const char *header, struct buf *out)
{
    CURL *c = curl_easy_init();
    char url[256];
    snprintf(url, sizeof url, "%s%s", s->base, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    struct curl_slist *h = NULL;
    if (header)
        h = curl_slist_append(h, header);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        h = curl_slist_append(h, "Content-Type: application/json");
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    struct buf tmp = {0};
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out ? out : &tmp);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(tmp.p);
    return status;
}

/* MODEL: a path inside ../shared, or an absolute path. */
static void server_start(struct server *s, const char *model, const char *extra)
{
    s->port = free_port();
    snprintf(s->base, sizeof s->base, "http://127.0.0.1:%d", s->port);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "exec '%s' serve -m '%s' --host 127.0.0.1 --port %d --threads 2 --log-level warn %s",
             test_attnd_bin(), model[0] == '/' ? model : test_shared(model), s->port,
             extra ? extra : "");
    s->pid = fork();
    cr_assert(s->pid >= 0);
    if (s->pid == 0) {
        /* A failed assertion ends the test process early: the server goes too. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 1000; i++) {
        if (http(s, "GET", "/ready", NULL, NULL, NULL) == 200)
            return;
        int st;
        cr_assert_eq(waitpid(s->pid, &st, WNOHANG), 0, "server exited during startup: %s", cmd);
        sleep_ms(20);
    }
    cr_assert_fail("server did not become ready: %s", cmd);
}

/* SIGTERM and wait; returns the exit status (-1 if it did not exit in time). */
static int server_stop(struct server *s)
{
    kill(s->pid, SIGTERM);
    for (int i = 0; i < 3000; i++) {
        int st;
        pid_t p = waitpid(s->pid, &st, WNOHANG);
        if (p == s->pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        sleep_ms(10);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    return -1;
}

/* The value of a Prometheus sample (first line starting with NAME). */
static double metric(const struct server *s, const char *name)
{
    struct buf b = {0};
    cr_assert_eq(http(s, "GET", "/metrics", NULL, NULL, &b), 200);
    char pat[160];
    snprintf(pat, sizeof pat, "\n%s ", name);
    const char *p = strstr(b.p, pat);
    double v = p ? strtod(p + strlen(pat), NULL) : -1;
    free(b.p);
    return v;
}

/* ------------------------------------------------------------ helpers on responses */

static cJSON *json(const char *txt)
{
    cJSON *o = cJSON_Parse(txt);
    cr_assert(o, "not JSON: %s", txt);
    return o;
}

/* Parses an NDJSON (or SSE) stream: the concatenated text, token ids, and
 * the final object. */
struct stream {
    char text[16384];
    int32_t ids[1024];
    size_t n_ids;
    cJSON *done;
    int lines;
};

static void parse_stream(const char *body, bool sse, struct stream *st)
{
    memset(st, 0, sizeof *st);
    const char *p = body;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len > 0) {
            char *line = strndup(p, len);
            const char *obj = line;
            if (sse) {
                cr_assert(strncmp(line, "data: ", 6) == 0, "bad SSE line '%s'", line);
                obj = line + 6;
            }
            cJSON *o = json(obj);
            st->lines++;
            cJSON *tok = cJSON_GetObjectItem(o, "token"), *txt = cJSON_GetObjectItem(o, "text");
            if (cJSON_IsNumber(tok))
                st->ids[st->n_ids++] = (int32_t)tok->valuedouble;
            if (cJSON_IsString(txt))
                strncat(st->text, txt->valuestring, sizeof st->text - strlen(st->text) - 1);
            if (cJSON_IsTrue(cJSON_GetObjectItem(o, "done"))) {
                cr_assert_null(st->done, "two done lines");
                st->done = o;
            } else {
                cJSON_Delete(o);
            }
            free(line);
        }
        p = nl ? nl + 1 : p + len;
    }
}

static char *golden_continuation(void)
{
    char *j = test_read_file(test_shared("golden/aidreams260K.echoes.json"), NULL);
    char *full = test_json_str(j, "greedy_text_60");
    free(j);
    cr_assert(strncmp(full, "Echoes of", 9) == 0);
    char *cont = strdup(full + 9);
    free(full);
    return cont;
}

/* ------------------------------------------------------------ tests */

Test(server, greedy_text_matches_attnd_generate_streamed_and_not)
{
    struct server s;
    server_start(&s, "models/aidreams260K.gguf", NULL);
    char *want = golden_continuation();
    const char *req = "{\"prompt\":\"Echoes of\",\"max_tokens\":60,\"temperature\":0,\"stream\":%s}";
    char body[256];

    snprintf(body, sizeof body, req, "false");
    struct buf b = {0};
    cr_assert_eq(http(&s, "POST", "/generate", body, NULL, &b), 200, "%s", b.p);
    cJSON *o = json(b.p);
    cr_expect_str_eq(cJSON_GetObjectItem(o, "text")->valuestring, want);
    cr_expect_str_eq(cJSON_GetObjectItem(o, "finish_reason")->valuestring, "length");
    cJSON *u = cJSON_GetObjectItem(o, "usage");
    cr_expect_eq(cJSON_GetObjectItem(u, "prompt_tokens")->valuedouble, 5);
    cr_expect_eq(cJSON_GetObjectItem(u, "completion_tokens")->valuedouble, 60);
    cJSON *t = cJSON_GetObjectItem(o, "timings");
    cr_expect(cJSON_IsNumber(cJSON_GetObjectItem(t, "queue_ms")) &&
              cJSON_IsNumber(cJSON_GetObjectItem(t, "prefill_ms")) &&
              cJSON_IsNumber(cJSON_GetObjectItem(t, "decode_ms")));
    cJSON_Delete(o);
    free(b.p);

    for (int sse = 0; sse <= 1; sse++) {
        snprintf(body, sizeof body, req, "true");
        struct buf sb = {0};
        cr_assert_eq(http(&s, "POST", "/generate", body, sse ? "Accept: text/event-stream" : NULL,
                          &sb), 200);
        struct stream st;
        parse_stream(sb.p, sse, &st);
        cr_expect_str_eq(st.text, want, "%s stream text differs", sse ? "SSE" : "NDJSON");
        cr_expect_eq(st.n_ids, 60);
        cr_assert(st.done, "no done line");
        cr_expect_str_eq(cJSON_GetObjectItem(st.done, "finish_reason")->valuestring, "length");
        cJSON_Delete(st.done);
        free(sb.p);
    }
    free(want);
    cr_expect_eq(server_stop(&s), 0);
}

Test(server, streaming_is_incremental)
{
    struct server s;
    server_start(&s, "models/stories260K.gguf", NULL);
    struct buf b = {0};
    cr_assert_eq(http(&s, "POST", "/generate",
                      "{\"prompt\":\"\",\"max_tokens\":400,\"temperature\":0,\"ignore_eos\":true,"
                      "\"stream\":true}",
                      NULL, &b),
                 200);
    struct stream st;
    parse_stream(b.p, false, &st);
    cr_expect_eq(st.n_ids, 400);
    /* Each token is flushed as produced: curl sees many separate writes, and
     * the first arrives before the last. */
    cr_expect_gt(b.chunks, 20, "only %d chunks for 400 tokens", b.chunks);
    cr_expect_lt(b.t_first, b.t_last);
    cJSON_Delete(st.done);
    free(b.p);
    cr_expect_eq(server_stop(&s), 0);
}

/* ------------------------------------------------------------ concurrency */

static const char *const k_prompts[16] = {
    "Echoes of", "The sun", "A small", "Once upon", "In the", "I sense", "Light and", "Vectors",
    "Deep in", "We are", "Time", "Hello", "Dreams of", "The quiet", "Under", "Stars",
};

/* Streams every prompt of K concurrently (curl multi); returns each stream. */
static void run_concurrent(const struct server *s, size_t k, int max_tokens, struct stream *out,
                           long *status)
{
    CURLM *m = curl_multi_init();
    CURL *e[16];
    struct buf b[16] = {{0}};
    char body[16][256];
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    char url[128];
    snprintf(url, sizeof url, "%s/generate", s->base);
    for (size_t i = 0; i < k; i++) {
        snprintf(body[i], sizeof body[i],
                 "{\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0,\"ignore_eos\":true,"
                 "\"stream\":true}",
                 k_prompts[i], max_tokens);
        e[i] = curl_easy_init();
        curl_easy_setopt(e[i], CURLOPT_URL, url);
        curl_easy_setopt(e[i], CURLOPT_POSTFIELDS, body[i]);
        curl_easy_setopt(e[i], CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e[i], CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(e[i], CURLOPT_WRITEDATA, &b[i]);
        curl_easy_setopt(e[i], CURLOPT_TIMEOUT, 120L);
        curl_multi_add_handle(m, e[i]);
    }
    int running = 1;
    while (running) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    for (size_t i = 0; i < k; i++) {
        curl_easy_getinfo(e[i], CURLINFO_RESPONSE_CODE, &status[i]);
        if (status[i] == 200)
            parse_stream(b[i].p ? b[i].p : "", false, &out[i]);
        else
            memset(&out[i], 0, sizeof out[i]);
        curl_multi_remove_handle(m, e[i]);
        curl_easy_cleanup(e[i]);
        free(b[i].p);
    }
    curl_slist_free_all(h);
    curl_multi_cleanup(m);
}

static void check_against_alone(const char *extra, int max_tokens, bool expect_preemption)
{
    struct server s;
    server_start(&s, "models/aidreams260K.gguf", extra);
    static struct stream alone[16], together[16];
    long st[16];
    /* alone, one prompt at a time */
    for (size_t i = 0; i < 16; i++) {
        char body[256];
        snprintf(body, sizeof body,
                 "{\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0,\"ignore_eos\":true,"
                 "\"stream\":true}",
                 k_prompts[i], max_tokens);
        struct buf b = {0};
        cr_assert_eq(http(&s, "POST", "/generate", body, NULL, &b), 200);
        parse_stream(b.p, false, &alone[i]);
        free(b.p);
    }
    run_concurrent(&s, 16, max_tokens, together, st);
    for (size_t i = 0; i < 16; i++) {
        cr_assert_eq(st[i], 200, "request %zu: status %ld", i, st[i]);
        cr_assert(together[i].done, "request %zu did not finish", i);
        cr_expect_eq(together[i].n_ids, alone[i].n_ids, "request %zu", i);
        cr_expect(memcmp(together[i].ids, alone[i].ids, alone[i].n_ids * sizeof(int32_t)) == 0,
                  "request %zu: tokens differ from running alone", i);
        cJSON_Delete(together[i].done);
        cJSON_Delete(alone[i].done);
    }
    if (expect_preemption)
        cr_expect_gt(metric(&s, "attnd_preemptions_total"), 0, "the small pool never preempted");
    cr_expect_eq(metric(&s, "attnd_kv_blocks_used"), 0);
    cr_expect_eq(server_stop(&s), 0);
}

Test(server, sixteen_concurrent_streams_match_running_alone, .timeout = 240)
{
    check_against_alone(NULL, 40, false);
}

Test(server, tiny_kv_pool_queues_and_preempts_without_failing, .timeout = 240)
{
    /* 4 layers x 4 KV heads x 16 dims x 2 (K,V) x 2 bytes = 1 KiB per token:
     * 96 KiB holds 96 tokens, far below 16 x 60. */
    check_against_alone("--kv-bytes 98304 --kv-block-size 8", 50, true);
}

Test(server, disconnect_mid_stream_frees_kv_blocks)
{
    struct server s;
    server_start(&s, "models/stories260K.gguf", NULL);
    struct buf b = {.abort_after = 64};
    http(&s, "POST", "/generate",
         "{\"prompt\":\"\",\"max_tokens\":500,\"temperature\":0,\"ignore_eos\":true,\"stream\":true}",
         NULL, &b);
    free(b.p);
    double used = -1;
    for (int i = 0; i < 500; i++) {
        used = metric(&s, "attnd_kv_blocks_used");
        if (used == 0)
            break;
        sleep_ms(10);
    }
    cr_expect_eq(used, 0, "KV blocks still in use after the client left");
    cr_expect_eq(metric(&s, "attnd_running_sequences"), 0);
    cr_expect_eq(server_stop(&s), 0);
}

/* ------------------------------------------------------------ errors and limits */

static void expect_error(const struct server *s, const char *method, const char *path,
                         const char *body, const char *header, long want, const char *needle)
{
    struct buf b = {0};
    long st = http(s, method, path, body, header, &b);
    cr_expect_eq(st, want, "%s %s %s: status %ld, want %ld (%s)", method, path, body ? body : "",
                 st, want, b.p ? b.p : "");
    if (b.p && want != 200) {
        cJSON *o = cJSON_Parse(b.p);
        cJSON *e = o ? cJSON_GetObjectItem(o, "error") : NULL;
        cr_expect(e && cJSON_IsString(cJSON_GetObjectItem(e, "type")) &&
                      cJSON_IsString(cJSON_GetObjectItem(e, "message")),
                  "error body is not {\"error\":{type,message}}: %s", b.p);
        if (needle && e)
            cr_expect(strstr(cJSON_GetObjectItem(e, "message")->valuestring, needle),
                      "message '%s' lacks '%s'", cJSON_GetObjectItem(e, "message")->valuestring,
                      needle);
        cJSON_Delete(o);
    }
    free(b.p);
}

Test(server, every_error_case_answers_json_with_the_right_status)
{
    struct server s;
    server_start(&s, "models/aidreams260K.gguf", "--max-body-bytes 4096 --max-tokens-cap 100 --default-max-tokens 50");
    expect_error(&s, "POST", "/generate", "{\"prompt\": ", NULL, 400, NULL);
    expect_error(&s, "POST", "/generate", "[1,2]", NULL, 400, NULL);
    expect_error(&s, "POST", "/generate", "{\"prompt\": 5}", NULL, 400, "prompt");
    expect_error(&s, "POST", "/generate", "{\"prompt\":\"a\",\"max_tokens\":\"x\"}", NULL, 400,
                 "max_tokens");
    expect_error(&s, "POST", "/generate", "{\"prompt\":\"a\",\"max_tokens\":101}", NULL, 400,
                 "max_tokens");
    expect_error(&s, "POST", "/generate", "{\"prompt\":\"a\",\"temperature\":-1}", NULL, 400,
                 "temperature");
    expect_error(&s, "POST", "/generate", "{\"prompt\":\"a\",\"stream\":1}", NULL, 400, "stream");
    expect_error(&s, "POST", "/generate", "{}", NULL, 400, "prompt");
    /* longer than the 128-token context */
    char *longp = malloc(3000);
    strcpy(longp, "{\"prompt\":\"");
    for (int i = 0; i < 200; i++)
        strcat(longp, "Echoes ");
    strcat(longp, "\"}");
    expect_error(&s, "POST", "/generate", longp, NULL, 400, "context");
    free(longp);
    char *big = malloc(8192);
    memset(big, 'x', 8191);
    big[8191] = '\0';
    memcpy(big, "{\"prompt\":\"", 11);
    expect_error(&s, "POST", "/generate", big, NULL, 413, NULL);
    free(big);
    expect_error(&s, "GET", "/generate", NULL, NULL, 405, NULL);
    expect_error(&s, "DELETE", "/health", NULL, NULL, 405, NULL);
    expect_error(&s, "GET", "/nope", NULL, NULL, 404, NULL);
    expect_error(&s, "POST", "/detokenize", "{\"tokens\":[1,99999]}", NULL, 400, "tokens");
    /* unknown fields are ignored */
    expect_error(&s, "POST", "/generate",
                 "{\"prompt\":\"Echoes\",\"max_tokens\":2,\"whatever\":{\"x\":[1]}}", NULL, 200, NULL);

    /* the cheap endpoints */
    struct buf b = {0};
    cr_expect_eq(http(&s, "GET", "/health", NULL, NULL, NULL), 200);
    cr_expect_eq(http(&s, "GET", "/v1/models", NULL, NULL, &b), 200);
    cr_expect(strstr(b.p, "aidreams260K.gguf"), "%s", b.p);
    free(b.p);
    b = (struct buf){0};
    cr_expect_eq(http(&s, "GET", "/", NULL, NULL, &b), 200);
    cr_expect(strstr(b.p, "/generate"), "%s", b.p);
    free(b.p);
    b = (struct buf){0};
    cr_expect_eq(http(&s, "POST", "/tokenize", "{\"text\":\"Echoes of\"}", NULL, &b), 200);
    cr_expect(strstr(b.p, "[388,355,260,275]") || strstr(b.p, "[388, 355, 260, 275]"), "%s", b.p);
    free(b.p);
    b = (struct buf){0};
    cr_expect_eq(http(&s, "POST", "/detokenize", "{\"tokens\":[388,355,260,275]}", NULL, &b), 200);
    cr_expect(strstr(b.p, "\"Echoes of\""), "%s", b.p);
    free(b.p);
    b = (struct buf){0};
    cr_expect_eq(http(&s, "GET", "/metrics", NULL, NULL, &b), 200);
    static const char *const names[] = {
        "attnd_requests_total{endpoint=\"generate\",status=\"400\"}",
        "attnd_queue_depth", "attnd_running_sequences", "attnd_preemptions_total",
        "attnd_kv_blocks_used", "attnd_kv_blocks_total", "attnd_prompt_tokens_total",
        "attnd_generated_tokens_total", "attnd_time_to_first_token_seconds_bucket",
        "attnd_inter_token_latency_seconds_bucket", "attnd_engine_step_seconds_bucket",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        cr_expect(strstr(b.p, names[i]), "/metrics lacks %s", names[i]);
    free(b.p);
    cr_expect_eq(server_stop(&s), 0);
}

Test(server, api_key_guards_everything_but_health_and_ready)
{
    struct server s;
    server_start(&s, "models/aidreams260K.gguf", "--api-key sekrit");
    expect_error(&s, "POST", "/generate", "{\"prompt\":\"a\",\"max_tokens\":1}", NULL, 401, NULL);
    expect_error(&s, "POST", "/generate", "{\"prompt\":\"a\",\"max_tokens\":1}",
                 "Authorization: Bearer wrong", 401, NULL);
    expect_error(&s, "GET", "/metrics", NULL, NULL, 401, NULL);
    cr_expect_eq(http(&s, "POST", "/generate", "{\"prompt\":\"a\",\"max_tokens\":1}",
                      "Authorization: Bearer sekrit", NULL), 200);
    cr_expect_eq(http(&s, "GET", "/metrics", NULL, "X-API-Key: sekrit", NULL), 200);
    cr_expect_eq(http(&s, "GET", "/health", NULL, NULL, NULL), 200);
    cr_expect_eq(http(&s, "GET", "/ready", NULL, NULL, NULL), 200);
    cr_expect_eq(server_stop(&s), 0);
}

Test(server, full_queue_answers_503_with_retry_after, .timeout = 120)
{
    struct server s;
    server_start(&s, "models/stories260K.gguf", "--max-seqs 1 --queue-limit 1");
    static struct stream out[16];
    long st[16];
    run_concurrent(&s, 8, 200, out, st);
    int ok = 0, busy = 0;
    for (int i = 0; i < 8; i++) {
        ok += st[i] == 200;
        busy += st[i] == 503;
        cJSON_Delete(out[i].done);
    }
    cr_expect_eq(ok + busy, 8);
    cr_expect_geq(ok, 1);
    cr_expect_geq(busy, 1, "no request was refused with 8 against a queue of 1");
    cr_expect_eq(server_stop(&s), 0);
}

Test(server, sigterm_drains_requests_in_flight, .timeout = 120)
{
    struct server s;
    server_start(&s, "models/stories260K.gguf", "--drain-timeout-s 60");
    /* Start a long streamed request in a child, then SIGTERM the server. */
    int fds[2];
    cr_assert(pipe(fds) == 0);
    pid_t child = fork();
    if (child == 0) {
        close(fds[0]);
        struct buf b = {0};
        long st = http(&s, "POST", "/generate",
                       "{\"prompt\":\"\",\"max_tokens\":300,\"temperature\":0,\"ignore_eos\":true,"
                       "\"stream\":true}",
                       NULL, &b);
        int complete = st == 200 && b.p && strstr(b.p, "\"done\":true") != NULL;
        (void)!write(fds[1], &complete, sizeof complete);
        _exit(0);
    }
    close(fds[1]);
    sleep_ms(100);
    kill(s.pid, SIGTERM);
    /* draining: not ready, new work refused */
    long ready = 0;
    for (int i = 0; i < 100; i++) {
        ready = http(&s, "GET", "/ready", NULL, NULL, NULL);
        if (ready == 503 || ready == 0)
            break;
        sleep_ms(5);
    }
    cr_expect(ready == 503 || ready == 0, "/ready answered %ld while draining", ready);
    long late = http(&s, "POST", "/generate", "{\"prompt\":\"x\",\"max_tokens\":1}", NULL, NULL);
    cr_expect(late == 503 || late == 0, "new request during drain: %ld", late);
    int complete = 0;
    cr_assert_eq(read(fds[0], &complete, sizeof complete), (ssize_t)sizeof complete);
    cr_expect(complete, "the in-flight stream did not finish");
    waitpid(child, NULL, 0);
    int st;
    for (int i = 0; i < 3000 && waitpid(s.pid, &st, WNOHANG) == 0; i++)
        sleep_ms(10);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server did not exit 0 after draining");
}

Test(server, slow_and_abandoned_connections_do_not_hurt, .timeout = 120)
{
    struct server s;
    server_start(&s, "models/aidreams260K.gguf", NULL);
    /* 200 connections opened and abandoned: some mid-headers, some silent. */
    for (int i = 0; i < 200; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s.port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 && i % 2)
            (void)!write(fd, "POST /generate HTTP/1.1\r\nContent-Length: 100\r\n", 47);
        close(fd);
    }
    cr_expect_eq(http(&s, "GET", "/health", NULL, NULL, NULL), 200);

    /* A body sent one byte at a time. */
    const char *body = "{\"prompt\":\"Echoes of\",\"max_tokens\":3,\"temperature\":0}";
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s.port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      strlen(body));
    for (int i = 0; i < hl; i++)
        (void)!write(fd, head + i, 1);
    for (size_t i = 0; i < strlen(body); i++) {
        (void)!write(fd, body + i, 1);
        sleep_ms(2);
    }
    char resp[4096] = {0};
    size_t got = 0;
    ssize_t n;
    while (got < sizeof resp - 1 && (n = read(fd, resp + got, sizeof resp - 1 - got)) > 0)
        got += (size_t)n;
    close(fd);
    cr_expect(strncmp(resp, "HTTP/1.1 200", 12) == 0, "%s", resp);
    cr_expect(strstr(resp, "\"text\""), "%s", resp);
    cr_expect_eq(http(&s, "GET", "/health", NULL, NULL, NULL), 200);
    cr_expect_eq(server_stop(&s), 0);
}

/* ------------------------------------------------------------ hardening */

/* A synthetic model with a 65536-token context (random weights, built-in
 * vocabulary). A request that generates tens of thousands of tokens on it
 * reads its KV cache, ~512 bytes per token and position, at every step:
 * 60000 tokens are ~0.9 TB of reads, minutes on any CPU. "Still running
 * seconds later" is then a fact, not a bet on the machine's speed. */
static char *long_model(void)
{
    char *path = test_tmp_path("long.gguf");
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "'%s' mkmodel -o '%s' --dim 64 --layers 2 --heads 4 --kv-heads 4 --ff 128 --ctx 65536",
             test_attnd_bin(), path);
    cr_assert_eq(test_run(cmd, NULL), 0, "%s", cmd);
    return path;
}

static int connect_to(const struct server *s)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert(fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
    return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        cr_assert(k > 0, "write: %s", strerror(errno));
        p += k;
        n -= (size_t)k;
    }
}

static void send_post(int fd, const char *path, const char *body, const char *headers)
{
    char head[512];
    int hl = snprintf(head, sizeof head,
                      "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n%s\r\n",
                      path, strlen(body), headers ? headers : "");
    send_all(fd, head, (size_t)hl);
    send_all(fd, body, strlen(body));
}

/* Polls until every gauge reads 0 or SECONDS pass; true when they did. */
static bool idle_within(const struct server *s, double seconds, double *took)
{
    double t0 = now_s();
    while (now_s() - t0 < seconds) {
        if (metric(s, "attnd_running_sequences") == 0 && metric(s, "attnd_queue_depth") == 0 &&
            metric(s, "attnd_kv_blocks_used") == 0) {
            *took = now_s() - t0;
            return true;
        }
        sleep_ms(20);
    }
    return false;
}

Test(server, clients_that_hang_up_while_parked_are_cancelled_within_2_s, .timeout = 240)
{
    char *model = long_model();
    struct server s;
    server_start(&s, model, "--max-seqs 16 --queue-limit 64");
    enum { N = 50 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        char body[160];
        snprintf(body, sizeof body,
                 "{\"prompt\":\"Hello %d\",\"max_tokens\":4096,\"temperature\":0,\"ignore_eos\":true,"
                 "\"stream\":%s}",
                 i, i % 2 ? "true" : "false");
        fds[i] = connect_to(&s);
        send_post(fds[i], "/generate", body, NULL);
    }
    /* The server holds all 50: 16 running, 34 waiting (parked connections). */
    double held = 0;
    for (int i = 0; i < 1000 && held < N; i++, sleep_ms(10))
        held = metric(&s, "attnd_running_sequences") + metric(&s, "attnd_queue_depth");
    cr_assert_eq(held, N, "the server holds %.0f of the %d requests", held, N);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    double took = 0;
    bool idle = idle_within(&s, 2.0, &took);
    cr_expect(idle, "2 s after 50 clients hung up: %.0f running, %.0f queued, %.0f KV blocks used",
              metric(&s, "attnd_running_sequences"), metric(&s, "attnd_queue_depth"),
              metric(&s, "attnd_kv_blocks_used"));
    cr_log_info("50 hang-ups noticed, every sequence freed in %.2f s", took);
    /* Nothing else was hurt: the server answers the next request in full. */
    struct buf b = {0};
    cr_expect_eq(http(&s, "POST", "/generate", "{\"prompt\":\"Hello\",\"max_tokens\":8}", NULL, &b),
                 200);
    cr_expect(b.p && strstr(b.p, "\"completion_tokens\":8"), "%s", b.p ? b.p : "");
    free(b.p);
    cr_expect_eq(server_stop(&s), 0);
    unlink(model);
    free(model);
}

/* Waits up to SECONDS for an answer on FD; its first bytes into OUT. */
static size_t read_answer(int fd, char *out, size_t cap, int seconds)
{
    size_t got = 0;
    double t0 = now_s();
    while (got < cap - 1 && now_s() - t0 < seconds) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) != 1)
            continue;
        ssize_t n = read(fd, out + got, cap - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        if (strstr(out, "\r\n\r\n"))
            break;
    }
    out[got] = '\0';
    return got;
}

Test(server, api_key_is_checked_before_the_body_is_read)
{
    struct server s;
    server_start(&s, "models/aidreams260K.gguf", "--api-key sekrit");
    /* Headers announcing 500 KB, and no body: the answer must not wait for it. */
    static const char *const heads[] = {
        "POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 500000\r\n\r\n",
        "POST /generate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n"
        "Content-Length: 500000\r\nExpect: 100-continue\r\n\r\n",
        "POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\n",
    };
    static const char *const want[] = {"HTTP/1.1 401", "HTTP/1.1 401", "HTTP/1.1 404"};
    for (size_t i = 0; i < 3; i++) {
        int fd = connect_to(&s);
        send_all(fd, heads[i], strlen(heads[i]));
        char resp[2048];
        read_answer(fd, resp, sizeof resp, 5);
        cr_expect(strncmp(resp, want[i], strlen(want[i])) == 0,
                  "case %zu: no '%s' before the body: '%s'", i, want[i], resp);
        close(fd);
    }
    /* With the key, the body is read and served as before. */
    cr_expect_eq(http(&s, "POST", "/generate", "{\"prompt\":\"a\",\"max_tokens\":1}",
                      "X-API-Key: sekrit", NULL), 200);
    cr_expect_eq(server_stop(&s), 0);
}

/* The raw (still escaped) value of the JSON string field KEY in TEXT, from
 * START: cJSON would cut it at an escaped NUL. malloc'd; NULL if absent. */
static char *raw_string_field(const char *text, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = strstr(text, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    const char *q = p;
    while (*q && *q != '"')
        q += (*q == '\\' && q[1]) ? 2 : 1;
    return strndup(p, (size_t)(q - p));
}

Test(server, nul_bytes_in_text_are_escaped_not_cut, .timeout = 120)
{
    struct server s;
    server_start(&s, "models/aidreams260K.gguf", NULL);
    /* /detokenize: <0x41> <0x00> <0x41> in aidreams' vocabulary are 471, 3, 471 */
    struct buf b = {0};
    cr_assert_eq(http(&s, "POST", "/detokenize", "{\"tokens\":[471,3,471]}", NULL, &b), 200);
    char *t = raw_string_field(b.p, "text");
    cr_expect(t && strcmp(t, "A\\u0000A") == 0, "/detokenize: %s", b.p);
    free(t);
    free(b.p);

    /* Generation: near-uniform sampling (temperature 100, no truncation)
     * meets the byte token <0x00> (id 3) for some seed; find one where it is
     * not the last token, then compare the stream with the plain answer. */
    const char *req = "{\"prompt\":\"Echoes of\",\"max_tokens\":120,\"temperature\":100,\"top_k\":0,"
                      "\"top_p\":1,\"min_p\":0,\"repeat_penalty\":1,\"ignore_eos\":true,\"seed\":%d,"
                      "\"stream\":%s}";
    char body[512];
    int seed = 0;
    char *lines = NULL;
    for (int k = 1; k <= 200 && !seed; k++) {
        snprintf(body, sizeof body, req, k, "true");
        struct buf sb = {0};
        cr_assert_eq(http(&s, "POST", "/generate", body, NULL, &sb), 200);
        struct stream st;
        parse_stream(sb.p, false, &st);
        for (size_t i = 0; i + 1 < st.n_ids; i++)
            if (st.ids[i] == 3)
                seed = k;
        cJSON_Delete(st.done);
        if (seed)
            lines = sb.p;
        else
            free(sb.p);
    }
    cr_assert(seed, "no seed in 1..200 produced <0x00>");
    /* The stream's text pieces, concatenated still escaped, hold the NUL. */
    size_t cap = strlen(lines) + 1, n = 0;
    char *streamed = calloc(1, cap);
    int nul_lines = 0;
    for (char *line = strtok(lines, "\n"); line; line = strtok(NULL, "\n")) {
        char *piece = raw_string_field(line, "text");
        if (!piece)
            continue;
        nul_lines += strstr(line, "\"token\":3,") != NULL;
        if (strstr(line, "\"token\":3,"))
            cr_expect_str_eq(piece, "\\u0000", "the <0x00> line: %s", line);
        memcpy(streamed + n, piece, strlen(piece));
        n += strlen(piece);
        free(piece);
    }
    cr_expect_gt(nul_lines, 0);
    free(lines);
    snprintf(body, sizeof body, req, seed, "false");
    b = (struct buf){0};
    cr_assert_eq(http(&s, "POST", "/generate", body, NULL, &b), 200);
    char *plain = raw_string_field(b.p, "text");
    cr_assert(plain, "%s", b.p);
    cr_expect_str_eq(plain, streamed, "the plain answer lost text after a NUL byte");
    cr_expect(strstr(b.p, "\"completion_tokens\":120"), "%s", b.p);
    free(plain);
    free(streamed);
    free(b.p);
    cr_expect_eq(server_stop(&s), 0);
}

Test(server, deadline_reports_timeout, .timeout = 120)
{
    char *model = long_model();
    struct server s;
    server_start(&s, model, "--request-timeout-s 1 --max-tokens-cap 60000");
    for (int stream = 0; stream <= 1; stream++) {
        char body[160];
        snprintf(body, sizeof body,
                 "{\"prompt\":\"Hello\",\"max_tokens\":60000,\"temperature\":0,\"ignore_eos\":true,"
                 "\"stream\":%s}",
                 stream ? "true" : "false");
        struct buf b = {0};
        cr_assert_eq(http(&s, "POST", "/generate", body, NULL, &b), 200);
        const char *last = b.p; /* the answer, or the stream's last line */
        for (const char *q = b.p; stream && (q = strchr(q, '\n')) && q[1]; q++)
            last = q + 1;
        cJSON *o = json(last);
        cJSON *fr = cJSON_GetObjectItem(o, "finish_reason");
        cr_expect(cJSON_IsString(fr) && strcmp(fr->valuestring, "timeout") == 0, "%s", last);
        double gen = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "usage"), "completion_tokens")
                         ->valuedouble;
        cr_expect(gen > 0 && gen < 60000, "completion_tokens %.0f", gen);
        cJSON_Delete(o);
        free(b.p);
    }
    cr_expect_eq(server_stop(&s), 0);
    unlink(model);
    free(model);
}

Test(server, non_streamed_answer_longer_than_the_stream_buffer_completes, .timeout = 120)
{
    struct server s;
    server_start(&s, "models/stories260K.gguf", "--stream-buffer-bytes 1K --request-timeout-s 30");
    struct buf b = {0};
    cr_assert_eq(http(&s, "POST", "/generate",
                      "{\"prompt\":\"\",\"max_tokens\":500,\"temperature\":0,\"ignore_eos\":true}",
                      NULL, &b),
                 200);
    cJSON *o = json(b.p);
    cr_expect_str_eq(cJSON_GetObjectItem(o, "finish_reason")->valuestring, "length");
    cr_expect_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "usage"), "completion_tokens")
                     ->valuedouble, 500);
    cr_expect_gt(strlen(cJSON_GetObjectItem(o, "text")->valuestring), 1024);
    cJSON_Delete(o);
    free(b.p);
    cr_expect_eq(server_stop(&s), 0);
}

Test(server, busy_port_exits_1_naming_the_port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 1) == 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    int port = ntohs(a.sin_port);
    char *log = test_tmp_path("busy.log");
    char cmd[2048];
    /* Sanitizer reports get an exit code of their own, so 1 means our exit. */
    snprintf(cmd, sizeof cmd,
             "ASAN_OPTIONS=exitcode=86 LSAN_OPTIONS=exitcode=86 '%s' serve -m '%s' --host 127.0.0.1 "
             "--port %d --threads 1 2>'%s'",
             test_attnd_bin(), test_shared("models/aidreams260K.gguf"), port, log);
    int st = system(cmd);
    char *text = test_read_file(log, NULL);
    cr_assert(text);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 1, "exit status %d; stderr:\n%s",
              WIFEXITED(st) ? WEXITSTATUS(st) : -1, text);
    char want[32];
    snprintf(want, sizeof want, ":%d", port);
    cr_expect(strstr(text, want) && strcasestr(text, "in use"), "the message does not name port %d:\n%s",
              port, text);
    cr_expect(!strstr(text, "Sanitizer"), "sanitizer report:\n%s", text);
    free(text);
    unlink(log);
    free(log);
    close(fd);
}

/* ------------------------------------------------------------ model families */

/* Every test vector of VOCAB through /tokenize (parse_special false, as the
 * reference made them), on a server running MODEL. */
static void check_tokenize_vectors(const struct server *s, const char *vocab)
{
    test_vectors vs;
    test_vectors_load(vocab, &vs);
    size_t failed = 0;
    for (size_t i = 0; i < vs.n; i++) {
        char *text = strndup(vs.texts[i].p, vs.texts[i].n);
        cJSON *req = cJSON_CreateObject();
        cJSON_AddStringToObject(req, "text", text);
        cJSON_AddBoolToObject(req, "parse_special", false);
        char *body = cJSON_PrintUnformatted(req);
        struct buf b = {0};
        cr_assert_eq(http(s, "POST", "/tokenize", body, NULL, &b), 200, "%s", b.p);
        cJSON *o = json(b.p);
        const cJSON *toks = cJSON_GetObjectItem(o, "tokens");
        int32_t want[512];
        size_t n_want = test_parse_ids(vs.lines[i], want, 512), n = 0;
        bool same = cJSON_GetArraySize(toks) == (int)n_want;
        for (const cJSON *t = toks ? toks->child : NULL; same && t; t = t->next)
            same = (int32_t)t->valuedouble == want[n++];
        if (!same) {
            failed++;
            cr_expect(same, "%s text %zu: expected [%s], got %s", vocab, i, vs.lines[i], b.p);
        }
        cJSON_Delete(o);
        cJSON_Delete(req);
        free(body);
        free(b.p);
        free(text);
    }
    cr_expect_eq(failed, 0u, "%s: %zu of %zu texts differ", vocab, failed, vs.n);
    test_vectors_free(&vs);
}

/* Greedy text from /generate (parse_special on a chat-formatted prompt)
 * equals `attnd generate --special` on the same model. */
static void check_generate_matches_cli(const struct server *s, const char *model,
                                       const char *prompt)
{
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "prompt", prompt);
    cJSON_AddNumberToObject(req, "max_tokens", 24);
    cJSON_AddNumberToObject(req, "temperature", 0);
    cJSON_AddBoolToObject(req, "parse_special", true);
    char *body = cJSON_PrintUnformatted(req);
    struct buf b = {0};
    cr_assert_eq(http(s, "POST", "/generate", body, NULL, &b), 200, "%s", b.p);
    cJSON *o = json(b.p);
    const char *text = cJSON_GetObjectItem(o, "text")->valuestring;

    char *ptxt = test_tmp_path("family-prompt.txt");
    FILE *fp = fopen(ptxt, "wb");
    fputs(prompt, fp);
    fclose(fp);
    char cmd[4096], *out = NULL;
    /* the x keeps $(...) from dropping the prompt's final newline */
    snprintf(cmd, sizeof cmd,
             "p=\"$(cat '%s'; printf x)\"; '%s' generate -m '%s' --temp 0 -n 24 --special "
             "--threads 2 -p \"${p%%x}\" 2>/dev/null",
             ptxt, test_attnd_bin(), model);
    cr_assert_eq(test_run(cmd, &out), 0, "%s", cmd);
    size_t pl = strlen(prompt);
    cr_assert(strncmp(out, prompt, pl) == 0, "attnd generate did not echo the prompt: %s", out);
    cr_expect_str_eq(out + pl, text, "/generate and attnd generate differ on %s", model);
    /* parse_special matters: the same prompt as plain text is more tokens */
    cJSON *u = cJSON_GetObjectItem(o, "usage");
    double special_tokens = cJSON_GetObjectItem(u, "prompt_tokens")->valuedouble;
    cJSON_ReplaceItemInObject(req, "parse_special", cJSON_CreateBool(false));
    cJSON_ReplaceItemInObject(req, "max_tokens", cJSON_CreateNumber(1));
    free(body);
    body = cJSON_PrintUnformatted(req);
    struct buf b2 = {0};
    cr_assert_eq(http(s, "POST", "/generate", body, NULL, &b2), 200, "%s", b2.p);
    cJSON *o2 = json(b2.p);
    double plain_tokens =
        cJSON_GetObjectItem(cJSON_GetObjectItem(o2, "usage"), "prompt_tokens")->valuedouble;
    cr_expect_gt(plain_tokens, special_tokens, "parse_special=false gave %g tokens, true %g",
                 plain_tokens, special_tokens);
    cJSON_Delete(o2);
    free(b2.p);
    remove(ptxt);
    free(ptxt);
    free(out);
    cJSON_Delete(o);
    free(b.p);
    free(body);
    cJSON_Delete(req);
}

Test(server_family, qwen3_tokenizes_and_generates_as_the_cli, .timeout = 120)
{
    char *model = test_golden_model("qwen3-qk-norm-f32");
    struct server s;
    server_start(&s, model, NULL);
    check_tokenize_vectors(&s, "vocab/ggml-vocab-qwen3.gguf");
    check_generate_matches_cli(&s, model,
                               "<|im_start|>user\nName three colours.<|im_end|>\n"
                               "<|im_start|>assistant\n");
    cr_expect_eq(server_stop(&s), 0);
    remove(model);
    free(model);
}

Test(server_family, llama3_tokenizes_and_generates_as_the_cli, .timeout = 120)
{
    char *model = test_golden_model("llama3-rope-freqs-f32");
    struct server s;
    server_start(&s, model, NULL);
    check_tokenize_vectors(&s, "vocab/ggml-vocab-llama3.gguf");
    check_generate_matches_cli(&s, model,
                               "<|start_header_id|>user<|end_header_id|>\n\nName three "
                               "colours.<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
                               "\n\n");
    cr_expect_eq(server_stop(&s), 0);
    remove(model);
    free(model);
}

/* ------------------------------------------------------------ /v1/chat/completions */

/* The expected rendering of CASE for TEMPLATE from renders.json. */
static char *expected_render(const char *tmpl, const char *kase, cJSON **vars)
{
    char *json = test_read_file(ATTND_SOURCE_DIR "/tests/data/templates/renders.json", NULL);
    cr_assert(json);
    cJSON *root = cJSON_Parse(json);
    free(json);
    char *out = NULL;
    for (const cJSON *e = cJSON_GetObjectItem(root, "renders")->child; e && !out; e = e->next)
        if (strcmp(cJSON_GetObjectItem(e, "template")->valuestring, tmpl) == 0 &&
            strcmp(cJSON_GetObjectItem(e, "case")->valuestring, kase) == 0) {
            out = strdup(cJSON_GetObjectItem(e, "output")->valuestring);
            *vars = cJSON_Duplicate(cJSON_GetObjectItem(e, "vars"), 1);
        }
    cJSON_Delete(root);
    cr_assert(out, "no rendering %s / %s", tmpl, kase);
    return out;
}

Test(server_chat, renders_the_template_and_answers_as_openai, .timeout = 120)
{
    char *model = test_golden_model("qwen3-qk-norm-f32");
    struct server s;
    server_start(&s, model, NULL);
    cJSON *vars;
    char *prompt = expected_render("vocab:ggml-vocab-qwen3.gguf", "chat", &vars);

    /* the same conversation through the chat route ... */
    cJSON *req = cJSON_CreateObject();
    cJSON_AddItemToObject(req, "messages", cJSON_DetachItemFromObject(vars, "messages"));
    cJSON_AddNumberToObject(req, "max_tokens", 12);
    cJSON_AddNumberToObject(req, "temperature", 0);
    char *body = cJSON_PrintUnformatted(req);
    struct buf b = {0};
    cr_assert_eq(http(&s, "POST", "/v1/chat/completions", body, NULL, &b), 200, "%s", b.p);
    cJSON *o = json(b.p);
    cr_expect_str_eq(cJSON_GetObjectItem(o, "object")->valuestring, "chat.completion");
    cr_expect(strncmp(cJSON_GetObjectItem(o, "id")->valuestring, "chatcmpl-", 9) == 0);
    cr_expect(cJSON_IsNumber(cJSON_GetObjectItem(o, "created")));
    const cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    const cJSON *msg = cJSON_GetObjectItem(choice, "message");
    cr_expect_str_eq(cJSON_GetObjectItem(msg, "role")->valuestring, "assistant");
    const char *content = cJSON_GetObjectItem(msg, "content")->valuestring;
    const char *finish = cJSON_GetObjectItem(choice, "finish_reason")->valuestring;
    cr_expect(strcmp(finish, "length") == 0 || strcmp(finish, "stop") == 0, "%s", finish);
    const cJSON *usage = cJSON_GetObjectItem(o, "usage");

    /* ... is /generate on the prompt jinja2 renders, special tokens parsed */
    cJSON *g = cJSON_CreateObject();
    cJSON_AddStringToObject(g, "prompt", prompt);
    cJSON_AddNumberToObject(g, "max_tokens", 12);
    cJSON_AddNumberToObject(g, "temperature", 0);
    cJSON_AddBoolToObject(g, "parse_special", true);
    char *gbody = cJSON_PrintUnformatted(g);
    struct buf gb = {0};
    cr_assert_eq(http(&s, "POST", "/generate", gbody, NULL, &gb), 200, "%s", gb.p);
    cJSON *go = json(gb.p);
    cr_expect_str_eq(content, cJSON_GetObjectItem(go, "text")->valuestring);
    const cJSON *gu = cJSON_GetObjectItem(go, "usage");
    cr_expect_eq(cJSON_GetObjectItem(usage, "prompt_tokens")->valuedouble,
                 cJSON_GetObjectItem(gu, "prompt_tokens")->valuedouble);
    cr_expect_eq(cJSON_GetObjectItem(usage, "total_tokens")->valuedouble,
                 cJSON_GetObjectItem(usage, "prompt_tokens")->valuedouble +
                     cJSON_GetObjectItem(usage, "completion_tokens")->valuedouble);

    /* streamed: deltas add up to the same text; usage chunk; [DONE] */
    cJSON_AddBoolToObject(req, "stream", true);
    cJSON *so = cJSON_AddObjectToObject(req, "stream_options");
    cJSON_AddBoolToObject(so, "include_usage", true);
    free(body);
    body = cJSON_PrintUnformatted(req);
    struct buf sb = {0};
    cr_assert_eq(http(&s, "POST", "/v1/chat/completions", body, NULL, &sb), 200, "%s", sb.p);
    char text[4096] = "";
    bool done = false, saw_usage = false, saw_role = false, saw_finish = false;
    for (char *line = strtok(sb.p, "\n"); line; line = strtok(NULL, "\n")) {
        cr_assert(strncmp(line, "data: ", 6) == 0, "not SSE: %s", line);
        if (strcmp(line + 6, "[DONE]") == 0) {
            done = true;
            continue;
        }
        cr_assert(!done, "data after [DONE]");
        cJSON *ch = json(line + 6);
        cr_expect_str_eq(cJSON_GetObjectItem(ch, "object")->valuestring, "chat.completion.chunk");
        const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(ch, "choices"), 0);
        if (!c0) {
            saw_usage = cJSON_GetObjectItem(ch, "usage") != NULL;
        } else {
            const cJSON *d = cJSON_GetObjectItem(c0, "delta");
            saw_role |= cJSON_GetObjectItem(d, "role") != NULL;
            const cJSON *ct = cJSON_GetObjectItem(d, "content");
            if (ct)
                strncat(text, ct->valuestring, sizeof text - strlen(text) - 1);
            saw_finish |= cJSON_IsString(cJSON_GetObjectItem(c0, "finish_reason"));
        }
        cJSON_Delete(ch);
    }
    cr_expect(done && saw_usage && saw_role && saw_finish);
    cr_expect_str_eq(text, content);

    free(sb.p);
    free(gbody);
    free(gb.p);
    cJSON_Delete(go);
    cJSON_Delete(g);
    cJSON_Delete(o);
    free(b.p);
    free(body);
    cJSON_Delete(req);
    cJSON_Delete(vars);
    free(prompt);
    cr_expect_eq(server_stop(&s), 0);
    remove(model);
    free(model);
}

Test(server_chat, bad_requests_get_openai_errors, .timeout = 60)
{
    struct server s;
    server_start(&s, "models/aidreams260K.gguf", NULL); /* no chat template */
    static const struct {
        const char *body, *needle;
    } cases[] = {
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "no chat template"},
        {"{}", "messages is required"},
        {"{\"messages\":[]}", "messages must be a non-empty array"},
        {"{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", "messages[0].role"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages[0].content"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
         "only {\"type\": \"text\"} parts"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":9}", "n must be an integer from 1 to 8"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":\"yes\"}",
         "logprobs must be a boolean"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}", "max_tokens"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}", "NUL"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct buf b = {0};
        cr_expect_eq(http(&s, "POST", "/v1/chat/completions", cases[i].body, NULL, &b), 400, "%s",
                     cases[i].body);
        cJSON *o = json(b.p);
        const cJSON *e = cJSON_GetObjectItem(o, "error");
        cr_assert(e, "%s", b.p);
        cr_expect(strstr(cJSON_GetObjectItem(e, "message")->valuestring, cases[i].needle),
                  "%s: %s", cases[i].body, b.p);
        cr_expect(cJSON_IsString(cJSON_GetObjectItem(e, "type")));
        cr_expect(cJSON_HasObjectItem(e, "param") && cJSON_HasObjectItem(e, "code"), "%s", b.p);
        cJSON_Delete(o);
        free(b.p);
    }
    cr_expect_eq(server_stop(&s), 0);
}

/* /v1/completions: the same text as /generate, echo, token-id prompts,
 * streamed chunks adding up to the answer. */
Test(server_chat, completions_match_generate, .timeout = 60)
{
    struct server s;
    server_start(&s, "models/aidreams260K.gguf", NULL);
    char *want = golden_continuation(); /* 60 greedy tokens after "Echoes of" */
    struct buf b = {0};
    cr_assert_eq(http(&s, "POST", "/v1/completions",
                      "{\"prompt\":\"Echoes of\",\"max_tokens\":60,\"temperature\":0}", NULL, &b),
                 200, "%s", b.p);
    cJSON *o = json(b.p);
    cr_expect_str_eq(cJSON_GetObjectItem(o, "object")->valuestring, "text_completion");
    const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    cr_expect_str_eq(cJSON_GetObjectItem(c0, "text")->valuestring, want);
    cr_expect_str_eq(cJSON_GetObjectItem(c0, "finish_reason")->valuestring, "length");
    cr_expect(cJSON_IsNull(cJSON_GetObjectItem(c0, "logprobs")));
    cr_expect_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "usage"), "completion_tokens")->valuedouble, 60);
    cJSON_Delete(o);
    free(b.p);

    /* the prompt's ids (BOS included) and echo: the prompt text comes first */
    struct buf e = {0};
    cr_assert_eq(http(&s, "POST", "/v1/completions",
                      "{\"prompt\":[1,388,355,260,275],\"max_tokens\":60,\"temperature\":0,"
                      "\"echo\":true,\"stream\":true}",
                      NULL, &e),
                 200, "%s", e.p);
    char text[8192] = "";
    bool done = false;
    for (char *line = strtok(e.p, "\n"); line; line = strtok(NULL, "\n")) {
        if (strcmp(line, "data: [DONE]") == 0) {
            done = true;
            continue;
        }
        cJSON *ch = json(line + 6);
        const cJSON *cc = cJSON_GetArrayItem(cJSON_GetObjectItem(ch, "choices"), 0);
        if (cc)
            strncat(text, cJSON_GetObjectItem(cc, "text")->valuestring, sizeof text - strlen(text) - 1);
        cJSON_Delete(ch);
    }
    cr_expect(done);
    char full[8192];
    snprintf(full, sizeof full, "Echoes of%s", want);
    cr_expect_str_eq(text, full);
    free(e.p);

    struct buf x = {0};
    cr_expect_eq(http(&s, "POST", "/v1/completions", "{\"prompt\":[1,100000]}", NULL, &x), 400);
    cr_expect(strstr(x.p, "outside the vocabulary") && strstr(x.p, "invalid_request_error"), "%s", x.p);
    free(x.p);
    struct buf y = {0};
    cr_expect_eq(http(&s, "POST", "/v1/completions", "{\"prompt\":{}}", NULL, &y), 400);
    cr_expect(strstr(y.p, "prompt must be a string or an array of token ids"), "%s", y.p);
    free(y.p);
    free(want);
    cr_expect_eq(server_stop(&s), 0);
}

/* Log-probabilities: exactly the log-softmax of the logits `attnd logits`
 * writes for the same tokens (to 1e-5), the top ones in order, in each API's
 * shape. */
Test(server_chat, logprobs_are_the_log_softmax_of_the_logits, .timeout = 60)
{
    struct server s;
    server_start(&s, "models/aidreams260K.gguf", "--kv-type f32");
    struct buf b = {0};
    cr_assert_eq(http(&s, "POST", "/generate",
                      "{\"prompt\":\"Echoes of\",\"max_tokens\":6,\"temperature\":0,"
                      "\"logprobs\":true,\"top_logprobs\":3}",
                      NULL, &b),
                 200, "%s", b.p);
    cJSON *o = json(b.p);
    const cJSON *lps = cJSON_GetObjectItem(o, "logprobs");
    cr_assert_eq(cJSON_GetArraySize(lps), 6);
    /* the prompt's ids, then each generated id */
    int32_t ids[16] = {1, 388, 355, 260, 275};
    size_t n = 5;
    for (const cJSON *e = lps->child; e; e = e->next)
        ids[n++] = (int32_t)cJSON_GetObjectItem(e, "id")->valuedouble;
    char list[256] = "", *out_path = test_tmp_path("lp.f32");
    for (size_t i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), i ? ",%d" : "%d", ids[i]);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' logits -m '%s' --tokens %s --chunk -o '%s' 2>/dev/null",
             test_attnd_bin(), test_shared("models/aidreams260K.gguf"), list, out_path);
    cr_assert_eq(test_run(cmd, NULL), 0, "%s", cmd);
    size_t bytes;
    float *logits = (float *)(void *)test_read_file(out_path, &bytes);
    cr_assert(logits && bytes == n * 512 * sizeof(float));
    size_t i = 0;
    for (const cJSON *e = lps->child; e; e = e->next, i++) {
        const float *row = logits + (4 + i) * 512; /* after the token before it */
        double mx = -INFINITY, sum = 0;
        for (int k = 0; k < 512; k++)
            mx = row[k] > mx ? row[k] : mx;
        for (int k = 0; k < 512; k++)
            sum += exp((double)row[k] - mx);
        double lse = mx + log(sum);
        int32_t id = (int32_t)cJSON_GetObjectItem(e, "id")->valuedouble;
        double got = cJSON_GetObjectItem(e, "logprob")->valuedouble;
        cr_expect(fabs(got - ((double)row[id] - lse)) < 1e-5, "token %zu: %.8f vs %.8f", i, got,
                  (double)row[id] - lse);
        const cJSON *tops = cJSON_GetObjectItem(e, "top_logprobs");
        cr_assert_eq(cJSON_GetArraySize(tops), 3);
        double prev = 1;
        for (const cJSON *t = tops->child; t; t = t->next) {
            int32_t tid = (int32_t)cJSON_GetObjectItem(t, "id")->valuedouble;
            double tl = cJSON_GetObjectItem(t, "logprob")->valuedouble;
            cr_expect(fabs(tl - ((double)row[tid] - lse)) < 1e-5);
            cr_expect(tl <= prev, "top_logprobs out of order");
            prev = tl;
        }
        /* greedy: the chosen token is the most likely */
        cr_expect_eq((int32_t)cJSON_GetObjectItem(tops->child, "id")->valuedouble, id);
    }
    free(logits);
    remove(out_path);
    free(out_path);
    cJSON_Delete(o);
    free(b.p);

    /* /v1/completions: logprobs as an integer, OpenAI's legacy shape */
    struct buf c = {0};
    cr_assert_eq(http(&s, "POST", "/v1/completions",
                      "{\"prompt\":\"Echoes of\",\"max_tokens\":2,\"temperature\":0,\"logprobs\":2}",
                      NULL, &c),
                 200, "%s", c.p);
    o = json(c.p);
    const cJSON *cl = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0),
                                          "logprobs");
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(cl, "tokens")), 2);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(cl, "token_logprobs")), 2);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetArrayItem(cJSON_GetObjectItem(cl, "top_logprobs"), 0)), 2);
    cJSON_Delete(o);
    free(c.p);
    /* logit_bias: the greedy first token (280, " p") banned, the next one wins */
    struct buf lb = {0};
    cr_assert_eq(http(&s, "POST", "/v1/completions",
                      "{\"prompt\":\"Echoes of\",\"max_tokens\":1,\"temperature\":0,"
                      "\"logit_bias\":{\"280\":-100},\"logprobs\":1}",
                      NULL, &lb),
                 200, "%s", lb.p);
    cr_expect(strstr(lb.p, "\"tokens\":[\" \"]"), "%s", lb.p); /* 429, the runner-up above */
    free(lb.p);
    struct buf pp = {0};
    cr_expect_eq(http(&s, "POST", "/v1/completions", "{\"prompt\":\"a\",\"presence_penalty\":3}",
                      NULL, &pp),
                 400);
    cr_expect(strstr(pp.p, "presence_penalty must be a number in [-2, 2]"), "%s", pp.p);
    free(pp.p);
    struct buf d = {0};
    cr_expect_eq(http(&s, "POST", "/generate", "{\"prompt\":\"a\",\"top_logprobs\":21,\"logprobs\":true}",
                      NULL, &d),
                 400);
    cr_expect(strstr(d.p, "top_logprobs"), "%s", d.p);
    free(d.p);
    cr_expect_eq(server_stop(&s), 0);
}

/* CORS: answers to an allowed Origin carry Access-Control-Allow-Origin, a
 * preflight is answered without the API key, other origins get nothing. */
Test(server_chat, cors_origins_and_chat_template_override, .timeout = 60)
{
    char *tmpl = test_tmp_path("override.jinja");
    FILE *fp = fopen(tmpl, "wb");
    fputs("{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
          "{% if add_generation_prompt %}>{% endif %}",
          fp);
    fclose(fp);
    char extra[1024];
    snprintf(extra, sizeof extra,
             "--cors-origins 'https://a.example, https://b.example' --api-key k --chat-template '%s'",
             tmpl);
    struct server s;
    server_start(&s, "models/aidreams260K.gguf", extra); /* no template of its own */
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "curl -s -i -X OPTIONS -H 'Origin: https://b.example' "
             "-H 'Access-Control-Request-Method: POST' %s/v1/chat/completions",
             s.base);
    cr_assert_eq(test_run(cmd, &out), 0);
    cr_expect(strstr(out, " 204") && strcasestr(out, "Access-Control-Allow-Origin: https://b.example") &&
                  strcasestr(out, "Access-Control-Allow-Headers: Authorization"),
              "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "curl -s -i -X OPTIONS -H 'Origin: https://evil.example' %s/generate",
             s.base);
    cr_assert_eq(test_run(cmd, &out), 0);
    cr_expect(strstr(out, " 403") && !strcasestr(out, "Access-Control-Allow-Origin"), "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd,
             "curl -s -i -H 'Origin: https://a.example' -H 'Authorization: Bearer k' "
             "%s/v1/chat/completions -d '{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
             "\"max_tokens\":2}'",
             s.base);
    cr_assert_eq(test_run(cmd, &out), 0);
    cr_expect(strstr(out, " 200") && strcasestr(out, "Access-Control-Allow-Origin: https://a.example") &&
                  strcasestr(out, "Vary: Origin"),
              "%s", out);
    /* the override laid out "[user]hi>": BOS is not added for a chat */
    cr_expect(strstr(out, "\"prompt_tokens\":"), "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "curl -s -i %s/health", s.base);
    cr_assert_eq(test_run(cmd, &out), 0);
    cr_expect(!strcasestr(out, "Access-Control"), "no Origin, no CORS headers: %s", out);
    free(out);
    cr_expect_eq(server_stop(&s), 0);

    /* a chat_template that cannot be read stops the start, naming it */
    char *log = test_tmp_path("tmpl.log");
    snprintf(cmd, sizeof cmd, "'%s' serve -m '%s' --port 1 --chat-template /nonexistent.jinja 2>'%s'",
             test_attnd_bin(), test_shared("models/aidreams260K.gguf"), log);
    cr_expect_neq(test_run(cmd, NULL), 0);
    char *text = test_read_file(log, NULL);
    cr_expect(text && strstr(text, "chat_template: cannot read /nonexistent.jinja"), "%s", text);
    free(text);
    remove(log);
    free(log);
    remove(tmpl);
    free(tmpl);
}

/* The other two family goldens' models through the server as well. */
Test(server_family, qwen2_and_key_length_generate_as_the_cli, .timeout = 120)
{
    static const struct {
        const char *golden, *prompt;
    } k[] = {
        {"qwen2-bias-tied-f32", "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n"},
        {"llama3-key-length-f32",
         "<|start_header_id|>user<|end_header_id|>\n\nName three colours.<|eot_id|>"
         "<|start_header_id|>assistant<|end_header_id|>\n\n"},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        char *model = test_golden_model(k[i].golden);
        struct server s;
        server_start(&s, model, NULL);
        check_generate_matches_cli(&s, model, k[i].prompt);
        cr_expect_eq(server_stop(&s), 0);
        remove(model);
        free(model);
    }
}

/* ------------------------------------------------------------ prefix cache */

struct turn {
    int prompt, completion, cached;
    char *text;
};

/* One chat turn over MESSAGES (a JSON array, extended with the answer). */
static struct turn chat_turn(const struct server *s, cJSON *messages, const char *user)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "user");
    cJSON_AddStringToObject(m, "content", user);
    cJSON_AddItemToArray(messages, m);
    cJSON *req = cJSON_CreateObject();
    cJSON_AddItemToObject(req, "messages", cJSON_Duplicate(messages, 1));
    cJSON_AddNumberToObject(req, "max_tokens", 12);
    cJSON_AddNumberToObject(req, "temperature", 0);
    char *body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    struct buf b = {0};
    cr_assert_eq(http(s, "POST", "/v1/chat/completions", body, NULL, &b), 200, "%s", b.p);
    free(body);
    cJSON *o = json(b.p);
    const cJSON *u = cJSON_GetObjectItem(o, "usage");
    struct turn t = {
        .prompt = cJSON_GetObjectItem(u, "prompt_tokens")->valueint,
        .completion = cJSON_GetObjectItem(u, "completion_tokens")->valueint,
        .cached = cJSON_GetObjectItem(cJSON_GetObjectItem(u, "prompt_tokens_details"),
                                      "cached_tokens")
                      ->valueint,
    };
    const cJSON *msg = cJSON_GetObjectItem(
        cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0), "message");
    t.text = strdup(cJSON_GetObjectItem(msg, "content")->valuestring);
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "role", "assistant");
    cJSON_AddStringToObject(a, "content", t.text);
    cJSON_AddItemToArray(messages, a);
    cJSON_Delete(o);
    free(b.p);
    return t;
}

/* A 10-turn chat: every turn reuses the blocks of the conversation so far
 * and computes only what is new (the new message, the last partial block
 * and whatever of the previous answer re-tokenizes differently), and the
 * answers are those of a server without the cache. */
static void ten_turns(const char *tmpl, bool cache, struct turn *out)
{
    char extra[1024];
    snprintf(extra, sizeof extra, "--chat-template '%s' --kv-block-size 16 --prefix-cache %s",
             tmpl, cache ? "on" : "off");
    struct server s;
    server_start(&s, "models/stories260K.gguf", extra);
    cJSON *messages = cJSON_CreateArray();
    static const char *const k_user[] = {
        "Once upon a time there was a little cat.", "What did the cat see?",
        "And then?", "Where did the dog go?", "Tell me about the park.",
        "Was the girl happy?", "What did mom say?", "Why?", "What happened next?",
        "How did it end?"};
    long hit = 0, looked = 0;
    for (int k = 0; k < 10; k++) {
        out[k] = chat_turn(&s, messages, k_user[k]);
        hit += out[k].cached;
        looked += out[k].prompt;
    }
    cr_expect_eq(metric(&s, "attnd_prefix_cache_hit_tokens_total"), (double)hit);
    cr_expect_eq(metric(&s, "attnd_prefix_cache_lookup_tokens_total"), (double)looked);
    if (cache)
        cr_expect_gt(metric(&s, "attnd_kv_blocks_cached"), 0.0);
    cJSON_Delete(messages);
    cr_expect_eq(server_stop(&s), 0);
}

Test(server_prefix, a_ten_turn_chat_computes_only_each_turns_new_tokens, .timeout = 120)
{
    char *tmpl = test_tmp_path("turns.jinja");
    FILE *fp = fopen(tmpl, "wb");
    fputs("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
          "{% if add_generation_prompt %}assistant:{% endif %}",
          fp);
    fclose(fp);
    struct turn on[10], off[10];
    ten_turns(tmpl, true, on);
    ten_turns(tmpl, false, off);
    int computed = 0, grown = 0;
    for (int k = 0; k < 10; k++) {
        /* Everything up to the previous prompt's last whole block comes from
         * the cache; what is computed is the new message, the previous answer
         * as the template re-tokenized it (the tiny model's greedy tokens are
         * not always the canonical ones), and at most one partial block. */
        int prev = k ? on[k - 1].prompt : 0;
        cr_expect_eq(on[k].cached % 16, 0, "turn %d", k);
        cr_expect_geq(on[k].cached, prev / 16 * 16, "turn %d: %d of %d cached, previous prompt %d",
                      k, on[k].cached, on[k].prompt, prev);
        cr_expect_lt(on[k].cached, on[k].prompt, "turn %d: the last token is always computed", k);
        cr_expect_leq(on[k].prompt - on[k].cached, on[k].prompt - prev + 15, "turn %d", k);
        computed += on[k].prompt - on[k].cached;
        grown += on[k].prompt - prev;
        cr_expect_str_eq(on[k].text, off[k].text, "turn %d: the cache changed the answer", k);
        cr_expect_eq(on[k].prompt, off[k].prompt);
        cr_expect_eq(off[k].cached, 0);
        free(on[k].text);
        free(off[k].text);
    }
    /* and the whole chat computed about what it added, not 10 histories */
    cr_expect_leq(computed, grown + 10 * 15, "computed %d prompt tokens for %d new ones", computed,
                  grown);
    free(tmpl);
}

/* ------------------------------------------------------------ n choices */

/* Choice I's text of a /v1/completions answer. */
static const char *choice_text(const cJSON *o, int i)
{
    const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), i);
    cr_assert(c, "no choice %d", i);
    cr_expect_eq(cJSON_GetObjectItem(c, "index")->valueint, i);
    return cJSON_GetObjectItem(c, "text")->valuestring;
}

Test(server_chat, n_choices_share_one_prompt_and_stream_by_index, .timeout = 120)
{
    struct server s;
    server_start(&s, "models/aidreams260K.gguf", NULL);
    const char *req = "{\"prompt\":\"Echoes of the old hall\",\"max_tokens\":8,\"temperature\":1,"
                      "\"seed\":7,\"ignore_eos\":true,\"n\":3%s}";
    char body[512];
    snprintf(body, sizeof body, req, "");
    double prompt_before = metric(&s, "attnd_prompt_tokens_total");
    struct buf b = {0};
    cr_assert_eq(http(&s, "POST", "/v1/completions", body, NULL, &b), 200, "%s", b.p);
    cJSON *o = json(b.p);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(o, "choices")), 3);
    const cJSON *u = cJSON_GetObjectItem(o, "usage");
    int n_prompt = cJSON_GetObjectItem(u, "prompt_tokens")->valueint;
    cr_expect_eq(cJSON_GetObjectItem(u, "completion_tokens")->valueint, 24, "3 choices x 8 tokens");
    cr_expect_eq(metric(&s, "attnd_prompt_tokens_total") - prompt_before, n_prompt,
                 "the prompt was computed more than once");
    /* seeds 7, 8, 9: choice 0 is the n = 1 answer with seed 7, choice 1 the
     * one with seed 8, and they differ */
    for (int i = 0; i < 2; i++) {
        char one[512], seed[32];
        snprintf(seed, sizeof seed, ",\"n\":1,\"seed\":%d", 7 + i);
        snprintf(one, sizeof one,
                 "{\"prompt\":\"Echoes of the old hall\",\"max_tokens\":8,\"temperature\":1,"
                 "\"ignore_eos\":true%s}",
                 seed);
        struct buf b1 = {0};
        cr_assert_eq(http(&s, "POST", "/v1/completions", one, NULL, &b1), 200, "%s", b1.p);
        cJSON *o1 = json(b1.p);
        cr_expect_str_eq(choice_text(o, i), choice_text(o1, 0), "choice %d", i);
        cJSON_Delete(o1);
        free(b1.p);
    }
    cr_expect_str_neq(choice_text(o, 0), choice_text(o, 1), "two seeds gave one text");

    /* streamed: chunks carry their choice's index, each adds up to the same
     * text, one finish_reason per choice, one usage chunk, one [DONE] */
    snprintf(body, sizeof body, req, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
    struct buf sb = {0};
    cr_assert_eq(http(&s, "POST", "/v1/completions", body, NULL, &sb), 200, "%s", sb.p);
    char text[3][1024] = {"", "", ""};
    int finishes[3] = {0}, done = 0, usage = 0;
    for (char *line = strtok(sb.p, "\n"); line; line = strtok(NULL, "\n")) {
        if (strcmp(line, "data: [DONE]") == 0) {
            done++;
            continue;
        }
        cJSON *ch = json(line + 6);
        const cJSON *cc = cJSON_GetArrayItem(cJSON_GetObjectItem(ch, "choices"), 0);
        if (cc) {
            int i = cJSON_GetObjectItem(cc, "index")->valueint;
            cr_assert(i >= 0 && i < 3, "index %d", i);
            strncat(text[i], cJSON_GetObjectItem(cc, "text")->valuestring,
                    sizeof text[i] - strlen(text[i]) - 1);
            finishes[i] += cJSON_IsString(cJSON_GetObjectItem(cc, "finish_reason"));
        } else {
            usage++;
            cr_expect_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(ch, "usage"), "completion_tokens")
                             ->valueint,
                         24);
        }
        cJSON_Delete(ch);
    }
    cr_expect_eq(done, 1);
    cr_expect_eq(usage, 1);
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(finishes[i], 1, "choice %d", i);
        cr_expect_str_eq(text[i], choice_text(o, i), "streamed choice %d", i);
    }
    free(sb.p);
    cJSON_Delete(o);
    free(b.p);

    /* greedy choices are all the same, up to n = 8 */
    struct buf c = {0};
    cr_assert_eq(http(&s, "POST", "/v1/completions",
                      "{\"prompt\":\"Echoes of\",\"max_tokens\":6,\"temperature\":0,\"n\":8}", NULL, &c),
                 200, "%s", c.p);
    o = json(c.p);
    for (int i = 1; i < 8; i++)
        cr_expect_str_eq(choice_text(o, i), choice_text(o, 0));
    cJSON_Delete(o);
    free(c.p);
    static const char *const bad[] = {"0", "9", "1.5", "\"2\"", "1e300", "-1e300"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(body, sizeof body, "{\"prompt\":\"a\",\"n\":%s}", bad[i]);
        struct buf e = {0};
        cr_expect_eq(http(&s, "POST", "/v1/completions", body, NULL, &e), 400, "n %s", bad[i]);
        cr_expect(e.p && strstr(e.p, "n must be an integer from 1 to 8"), "%s", e.p);
        free(e.p);
    }
    cr_expect_eq(metric(&s, "attnd_kv_blocks_used"), 0);
    cr_expect_eq(server_stop(&s), 0);
}

/* ------------------------------------------------------------ /v1/attention */

/* Halves of a base64 string (little-endian), as floats; *N gets the count. */
static float *f16_of_base64(const char *s, size_t *n)
{
    static const char k[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t len = strlen(s), o = 0;
    unsigned char *raw = malloc(len);
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len && s[i] != '='; i++) {
        const char *p = strchr(k, s[i]);
        cr_assert(p, "not base64: %c", s[i]);
        acc = acc << 6 | (uint32_t)(p - k);
        if ((bits += 6) >= 8) {
            raw[o++] = (unsigned char)(acc >> (bits - 8));
            bits -= 8;
        }
    }
    *n = o / 2;
    float *f = malloc(*n * sizeof *f + 1);
    for (size_t i = 0; i < *n; i++)
        f[i] = attnd_f16_to_f32((uint16_t)(raw[2 * i] | raw[2 * i + 1] << 8));
    free(raw);
    return f;
}

/* The rows /v1/attention exports for aidreams260K are the float64 reference's
 * (tests/ref/attention_ref.py, committed as data) to 1e-5, the greedy tokens
 * are its too, the f16 form holds the same rows, and bad requests get 4xx
 * naming what was wrong. */
Test(server_attention, rows_match_an_independent_float64_forward, .timeout = 120)
{
    char *ref_txt = test_read_file(ATTND_SOURCE_DIR "/tests/data/attention/aidreams260K-echoes.json", NULL);
    cr_assert(ref_txt);
    cJSON *ref = json(ref_txt);
    free(ref_txt);
    const cJSON *ids = cJSON_GetObjectItem(ref, "ids");
    int n_prompt = cJSON_GetObjectItem(ref, "n_prompt")->valueint, n_all = cJSON_GetArraySize(ids);
    struct server s;
    server_start(&s, "models/aidreams260K.gguf", "--kv-type f32");
    cJSON *req = cJSON_CreateObject();
    cJSON *pr = cJSON_AddArrayToObject(req, "prompt");
    for (int i = 0; i < n_prompt; i++)
        cJSON_AddItemToArray(pr, cJSON_CreateNumber(cJSON_GetArrayItem(ids, i)->valueint));
    cJSON_AddNumberToObject(req, "max_tokens", n_all - n_prompt);
    cJSON_AddStringToObject(req, "format", "json");
    char *body = cJSON_PrintUnformatted(req);
    struct buf b = {0};
    cr_assert_eq(http(&s, "POST", "/v1/attention", body, NULL, &b), 200, "%s", b.p);
    cJSON *o = json(b.p);
    cr_expect_eq(cJSON_GetObjectItem(o, "positions")->valueint, n_all);
    const cJSON *toks = cJSON_GetObjectItem(o, "tokens");
    cr_assert_eq(cJSON_GetArraySize(toks), n_all);
    for (int i = 0; i < n_all; i++)
        cr_expect_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(toks, i), "id")->valueint,
                     cJSON_GetArrayItem(ids, i)->valueint, "token %d", i);
    const cJSON *att = cJSON_GetObjectItem(o, "attention");
    cr_assert_eq(cJSON_GetArraySize(att), 16, "4 layers x 4 heads by default");
    double worst = 0;
    for (const cJSON *h = att->child; h; h = h->next) {
        int l = cJSON_GetObjectItem(h, "layer")->valueint, hh = cJSON_GetObjectItem(h, "head")->valueint;
        const cJSON *want = cJSON_GetArrayItem(cJSON_GetArrayItem(cJSON_GetObjectItem(ref, "probs"), l), hh);
        const cJSON *got = cJSON_GetObjectItem(h, "probs");
        cr_assert_eq(cJSON_GetArraySize(got), n_all);
        for (int p = 0; p < n_all; p++) {
            const cJSON *gr = cJSON_GetArrayItem(got, p), *wr = cJSON_GetArrayItem(want, p);
            cr_assert_eq(cJSON_GetArraySize(gr), p + 1);
            double sum = 0;
            for (int j = 0; j <= p; j++) {
                double g = cJSON_GetArrayItem(gr, j)->valuedouble, w = cJSON_GetArrayItem(wr, j)->valuedouble;
                sum += g;
                worst = fmax(worst, fabs(g - w));
                cr_expect(fabs(g - w) <= 1e-5, "layer %d head %d row %d col %d: %.9g, reference %.9g", l,
                          hh, p, j, g, w);
            }
            cr_expect(fabs(sum - 1) < 1e-5, "row sums to %.9g", sum);
            double e = cJSON_GetArrayItem(cJSON_GetObjectItem(h, "entropy"), p)->valuedouble;
            cr_expect(e >= 0 && e <= log(p + 1) + 1e-9, "entropy %.9g of %d positions", e, p + 1);
        }
    }
    cr_log_info("attention vs the float64 reference: max |diff| %.3g", worst);
    free(b.p);

    /* f16: the same rows, as halves */
    cJSON_ReplaceItemInObject(req, "format", cJSON_CreateString("f16"));
    cJSON *ls = cJSON_CreateArray(), *hs = cJSON_CreateArray();
    cJSON_AddItemToArray(ls, cJSON_CreateNumber(2));
    cJSON_AddItemToArray(hs, cJSON_CreateNumber(3));
    cJSON_AddItemToArray(hs, cJSON_CreateNumber(0));
    cJSON_AddItemToObject(req, "layers", ls);
    cJSON_AddItemToObject(req, "heads", hs);
    free(body);
    body = cJSON_PrintUnformatted(req);
    struct buf f = {0};
    cr_assert_eq(http(&s, "POST", "/v1/attention", body, NULL, &f), 200, "%s", f.p);
    cJSON *fo = json(f.p);
    const cJSON *fa = cJSON_GetObjectItem(fo, "attention");
    cr_assert_eq(cJSON_GetArraySize(fa), 2);
    cr_expect_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(fa, 0), "head")->valueint, 3, "heads in the order asked");
    for (int k = 0; k < 2; k++) {
        const cJSON *h = cJSON_GetArrayItem(fa, k);
        size_t n;
        float *v = f16_of_base64(cJSON_GetObjectItem(h, "probs")->valuestring, &n);
        cr_assert_eq(n, (size_t)n_all * n_all);
        const cJSON *want = cJSON_GetArrayItem(cJSON_GetArrayItem(cJSON_GetObjectItem(ref, "probs"), 2),
                                               cJSON_GetObjectItem(h, "head")->valueint);
        for (int p = 0; p < n_all; p++)
            for (int j = 0; j < n_all; j++) {
                double w = j <= p ? cJSON_GetArrayItem(cJSON_GetArrayItem(want, p), j)->valuedouble : 0;
                cr_expect(fabs(v[p * n_all + j] - w) <= 1e-3 * fmax(w, 1e-2), "f16 row %d col %d", p, j);
            }
        free(v);
    }
    cJSON_Delete(fo);
    free(f.p);
    free(body);
    cJSON_Delete(req);

    struct {
        const char *body;
        long status;
        const char *needle;
    } bad[] = {
        {"{\"prompt\":\"a\",\"layers\":[4]}", 400, "layers[0]: not a layer of this model (it has 4: 0 to 3)"},
        {"{\"prompt\":\"a\",\"heads\":[1,1]}", 400, "heads[1]: 1 is listed twice"},
        {"{\"prompt\":\"a\",\"heads\":[]}", 400, "heads must be a non-empty array"},
        {"{\"prompt\":[1,99999]}", 400, "outside the vocabulary"},
        {"{\"prompt\":\"a\",\"format\":\"png\"}", 400, "format must be"},
        {"{\"prompt\":\"a\",\"top_k\":17}", 400, "top_k must be an integer from 1 to 16"},
        {"{\"prompt\":\"a\",\"stream\":true}", 400, "stream is not supported"},
        {"{\"prompt\":\"a\",\"max_tokens\":100}", 413, "more than attention_max_cells (65536)"},
    };
    cr_expect_eq(server_stop(&s), 0);
    server_start(&s, "models/aidreams260K.gguf", "--attention-max-cells 65536");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct buf e = {0};
        cr_expect_eq(http(&s, "POST", "/v1/attention", bad[i].body, NULL, &e), bad[i].status, "%s: %s",
                     bad[i].body, e.p);
        cr_expect(e.p && strstr(e.p, bad[i].needle), "%s: %s", bad[i].body, e.p);
        free(e.p);
    }
    cr_expect_eq(server_stop(&s), 0);

    /* a client that leaves mid-export (4000 positions) is cancelled and
     * everything is freed */
    char *model = long_model();
    server_start(&s, model, "--attention-max-cells 16777216");
    char cmd[512], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "curl -s -m 0.2 %s/v1/attention -d '{\"prompt\":\"Echoes\",\"max_tokens\":3990,"
             "\"heads\":[0],\"layers\":[0],\"ignore_eos\":true}' >/dev/null; true",
             s.base);
    cr_assert_eq(test_run(cmd, &out), 0);
    free(out);
    double took;
    cr_expect(idle_within(&s, 5, &took), "an abandoned export still runs");
    struct buf mtx = {0};
    cr_assert_eq(http(&s, "GET", "/metrics", NULL, NULL, &mtx), 200);
    cr_expect(strstr(mtx.p, "attnd_finished_requests_total{reason=\"cancelled\"} 1"),
              "the export was not cancelled mid-way: %s", mtx.p);
    free(mtx.p);
    cr_expect_eq(server_stop(&s), 0);
    free(model);
    cJSON_Delete(o);
    cJSON_Delete(ref);
}

/* Every architecture: GQA (each query head its own row, though the heads of a
 * group share K) and GPT-2; rows sum to 1 and see nothing ahead. */
Test(server_attention, every_architecture_and_each_query_head, .timeout = 60)
{
    static const char *const models[] = {"models/llama-synth-64x2-gqa4.gguf", "models/gpt2-synth-64x2.gguf"};
    for (size_t mi = 0; mi < 2; mi++) {
        struct server s;
        server_start(&s, models[mi], NULL);
        struct buf b = {0};
        cr_assert_eq(http(&s, "POST", "/v1/attention",
                          "{\"prompt\":[1,5,9,12,40,41,3],\"max_tokens\":3,\"format\":\"json\",\"layers\":[1]}",
                          NULL, &b),
                     200, "%s: %s", models[mi], b.p);
        cJSON *o = json(b.p);
        const cJSON *att = cJSON_GetObjectItem(o, "attention");
        int n = cJSON_GetObjectItem(o, "positions")->valueint;
        cr_expect_eq(n, 10);
        char *first = NULL;
        bool differ = false;
        for (const cJSON *h = att->child; h; h = h->next) {
            const cJSON *probs = cJSON_GetObjectItem(h, "probs");
            for (int p = 0; p < n; p++) {
                const cJSON *row = cJSON_GetArrayItem(probs, p);
                cr_assert_eq(cJSON_GetArraySize(row), p + 1);
                double sum = 0;
                for (const cJSON *v = row->child; v; v = v->next)
                    sum += v->valuedouble;
                cr_expect(fabs(sum - 1) < 1e-5, "%s: row %d sums to %.9g", models[mi], p, sum);
            }
            char *txt = cJSON_PrintUnformatted(probs);
            if (!first)
                first = txt;
            else {
                differ = differ || strcmp(first, txt) != 0;
                free(txt);
            }
        }
        cr_expect(cJSON_GetArraySize(att) > 1 && differ, "%s: the heads' rows are all the same", models[mi]);
        free(first);
        cJSON_Delete(o);
        free(b.p);
        cr_expect_eq(server_stop(&s), 0);
    }
}
