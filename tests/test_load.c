/* test_load.c - smoke test of bench/load, the load generator: option errors
 * exit 2, a run against a real `attnd serve` on a free loopback port
 * completes every request and reports sane numbers in --json, and an
 * unreachable server makes every request an error (exit 1), and --api llama
 * speaks llama-server's protocol (against a stand-in that checks the request
 * and answers in its SSE events). ATTND_LOAD_BIN is the load binary (a
 * compile definition). */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

#ifndef ATTND_LOAD_BIN
#error "ATTND_LOAD_BIN (path of the load binary) must be defined"
#endif

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    socklen_t len = sizeof a;
    cr_assert(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

static size_t discard(char *ptr, size_t size, size_t n, void *ud)
{
    (void)ptr;
    (void)ud;
    return size * n;
}

static long get_status(const char *url)
{
    CURL *c = curl_easy_init();
    cr_assert(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 5L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    return status;
}

struct server {
    pid_t pid;
    char base[64];
};

static void server_start(struct server *s)
{
    int port = free_port();
    snprintf(s->base, sizeof s->base, "http://127.0.0.1:%d", port);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "exec '%s' serve -m '%s' --host 127.0.0.1 --port %d --threads 2 --log-level warn",
             test_attnd_bin(), test_shared("models/aidreams260K.gguf"), port);
    s->pid = fork();
    cr_assert(s->pid >= 0);
    if (s->pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    char ready[128];
    snprintf(ready, sizeof ready, "%s/ready", s->base);
    for (int i = 0; i < 500; i++) {
        if (get_status(ready) == 200)
            return;
        int st;
        cr_assert_eq(waitpid(s->pid, &st, WNOHANG), 0, "server exited during startup: %s", cmd);
        sleep_ms(20);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    cr_assert_fail("server did not become ready: %s", cmd);
}

/* SIGTERM and wait; the exit status (-1 if it did not exit within 10 s). */
static int server_stop(struct server *s)
{
    kill(s->pid, SIGTERM);
    for (int i = 0; i < 1000; i++) {
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        sleep_ms(10);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    return -1;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    cr_assert(cJSON_IsNumber(v), "load --json has no number '%s'", key);
    return v->valuedouble;
}

TestSuite(load, .timeout = 60);

Test(load, usage_errors_exit_2)
{
    static const char *const bad[] = {
        "",                                               /* no --url */
        "--url ftp://127.0.0.1:1",                        /* not http */
        "--url http://127.0.0.1:1 --clients 0",           /* out of range */
        "--url http://127.0.0.1:1 --requests x",          /* not an integer */
        "--url http://127.0.0.1:1 --temperature -1",      /* negative */
        "--url http://127.0.0.1:1 --max-tokens",          /* missing value */
        "--url http://127.0.0.1:1 --no-such-option",      /* unknown */
        "--url http://127.0.0.1:1 --api openai",          /* not attnd or llama */
    };
    char cmd[512];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(cmd, sizeof cmd, "'%s' %s 2>/dev/null", ATTND_LOAD_BIN, bad[i]);
        cr_expect_eq(test_run(cmd, NULL), 2, "expected exit 2: %s", cmd);
    }
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "'%s' --help", ATTND_LOAD_BIN);
    cr_expect_eq(test_run(cmd, &out), 0);
    cr_expect(out && strstr(out, "--clients"), "--help does not describe --clients");
    free(out);
}

Test(load, smoke_against_server)
{
    struct server s;
    server_start(&s);
    const long clients = 3, requests = 2, max_tokens = 16;
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "'%s' --url %s --clients %ld --requests %ld --max-tokens %ld --prompt-tokens 8 "
             "--timeout 30 --json",
             ATTND_LOAD_BIN, s.base, clients, requests, max_tokens);
    int rc = test_run(cmd, &out);
    cr_assert(out);
    cJSON *j = cJSON_Parse(out);
    cr_assert(j, "load --json printed no JSON: '%s'", out);
    cr_expect_eq(rc, 0, "load exited %d: %s", rc, out);
    cr_expect_eq(num(j, "requests"), (double)(clients * requests));
    cr_expect_eq(num(j, "completed"), (double)(clients * requests));
    cr_expect_eq(num(j, "errors"), 0);
    cr_expect_eq(num(j, "tokens"), (double)(clients * requests * max_tokens));
    cr_expect_gt(num(j, "tokens_per_s"), 0);
    cr_expect_gt(num(j, "requests_per_s"), 0);
    cr_expect_gt(num(j, "wall_s"), 0);
    cr_expect_gt(num(j, "ttft_p50_ms"), 0);
    cr_expect_geq(num(j, "ttft_p99_ms"), num(j, "ttft_p50_ms"));
    cr_expect_geq(num(j, "itl_p50_ms"), 0);
    cr_expect_geq(num(j, "itl_p99_ms"), num(j, "itl_p50_ms"));
    cJSON_Delete(j);
    free(out);
    cr_expect_eq(server_stop(&s), 0, "server did not exit 0 after SIGTERM");
}

Test(load, unreachable_server_counts_errors)
{
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "'%s' --url http://127.0.0.1:%d --clients 2 --requests 2 --timeout 5 --json "
             "2>/dev/null",
             ATTND_LOAD_BIN, free_port());
    int rc = test_run(cmd, &out);
    cr_assert(out);
    cJSON *j = cJSON_Parse(out);
    cr_assert(j, "load --json printed no JSON: '%s'", out);
    cr_expect_eq(rc, 1);
    cr_expect_eq(num(j, "requests"), 4);
    cr_expect_eq(num(j, "errors"), 4);
    cr_expect_eq(num(j, "completed"), 0);
    cr_expect(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "ttft_p50_ms")));
    cJSON_Delete(j);
    free(out);
}

/* A stand-in for llama-server: on each of N_CONN connections reads one
 * request and, if it is POST /completion asking for a stream of n_predict
 * tokens without the prompt cache, answers N_TOK token events and the last
 * one, llama-server's shape; anything else gets a 400. Runs in a child. */
static void fake_llama_serve(int lfd, int n_conn, int n_tok)
{
    for (int c = 0; c < n_conn; c++) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            _exit(3);
        char req[8192];
        size_t len = 0;
        const char *body = NULL;
        long want = -1;
        while (len + 1 < sizeof req) {
            ssize_t got = read(fd, req + len, sizeof req - 1 - len);
            if (got <= 0)
                break;
            len += (size_t)got;
            req[len] = '\0';
            const char *end = strstr(req, "\r\n\r\n");
            if (end && want < 0) {
                const char *cl = strcasestr(req, "Content-Length:");
                want = cl ? strtol(cl + 15, NULL, 10) : 0;
                body = end + 4;
            }
            if (body && (long)(req + len - body) >= want)
                break;
        }
        bool ok = body && strncmp(req, "POST /completion ", 17) == 0 &&
                  strstr(body, "\"n_predict\":") && strstr(body, "\"stream\":true") &&
                  strstr(body, "\"cache_prompt\":false") && !strstr(body, "max_tokens");
        char out[8192];
        int n = 0;
        if (!ok) {
            n = snprintf(out, sizeof out,
                         "HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad");
        } else {
            n = snprintf(out, sizeof out,
                         "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         "Connection: close\r\n\r\n");
            for (int t = 0; t < n_tok; t++)
                n += snprintf(out + n, sizeof out - (size_t)n,
                              "data: {\"content\":\"%s\",\"stop\":false}\n\n", t % 2 ? "" : "ab");
            n += snprintf(out + n, sizeof out - (size_t)n,
                          "data: {\"content\":\"\",\"stop\":true,\"timings\":{\"prompt_n\":9,"
                          "\"predicted_n\":%d}}\n\n",
                          n_tok);
        }
        if (write(fd, out, (size_t)n) != n)
            _exit(4);
        close(fd);
    }
    _exit(0);
}

Test(load, llama_server_protocol)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert(bind(lfd, (struct sockaddr *)&a, sizeof a) == 0 && listen(lfd, 8) == 0);
    socklen_t alen = sizeof a;
    cr_assert(getsockname(lfd, (struct sockaddr *)&a, &alen) == 0);
    const int clients = 2, requests = 2, tokens = 5;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0)
        fake_llama_serve(lfd, clients * requests, tokens); /* events: empty contents count too */
    close(lfd);
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "'%s' --url http://127.0.0.1:%d --api llama --clients %d --requests %d "
             "--max-tokens %d --timeout 10 --json",
             ATTND_LOAD_BIN, ntohs(a.sin_port), clients, requests, tokens);
    int rc = test_run(cmd, &out);
    int st = 0;
    waitpid(pid, &st, 0);
    cr_assert(out);
    cJSON *j = cJSON_Parse(out);
    cr_assert(j, "load --json printed no JSON: '%s'", out);
    cr_expect_eq(rc, 0, "load exited %d: %s", rc, out);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the stand-in server failed (%d)", st);
    cr_expect_eq(num(j, "completed"), clients * requests);
    cr_expect_eq(num(j, "errors"), 0);
    cr_expect_eq(num(j, "tokens"), clients * requests * tokens);
    cr_expect_eq(num(j, "server_prompt_tokens_mean"), 9);
    cr_expect_gt(num(j, "ttft_p50_ms"), 0);
    cJSON_Delete(j);
    free(out);
}
