/* test_sched.c - the scheduler driven in-process, one loop iteration at a
 * time: the test thread is the loop thread, so it can stop the world between
 * two engine steps (after a preemption, before a deadline) and look at the
 * scheduler's gauges. That makes the races of a real server deterministic.
 *
 * Faults are injected with the linker's --wrap (tests/CMakeLists.txt): calls
 * from the server library to srv_req_append, tok_stream_push, srv_stop_feed,
 * cJSON_CreateObject and engine_step go through the wrappers below, which
 * fail when a test arms them and otherwise call the real function. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "engine.h"
#include "srv_metrics.h"
#include "srv_req.h"
#include "srv_stop.h"
#include "srv_sched.h"
#include "test_util.h"

/* ------------------------------------------------------------ fault injection */

/* Number of calls to let through before failing (negative: never fail). */
static int g_fail_append = -1, g_fail_push = -1, g_fail_object = -1, g_fail_step = -1,
           g_fail_stop = -1;

static bool trip(int *countdown)
{
    if (*countdown < 0)
        return false;
    if (*countdown == 0) {
        *countdown = -1; /* one failure, then work again */
        return true;
    }
    (*countdown)--;
    return false;
}

int __real_srv_req_append(srv_req *r, const char *p, size_t n);
int __wrap_srv_req_append(srv_req *r, const char *p, size_t n);
int __wrap_srv_req_append(srv_req *r, const char *p, size_t n)
{
    return trip(&g_fail_append) ? ATTND_ENOMEM : __real_srv_req_append(r, p, n);
}

int __real_tok_stream_push(tok_stream *s, int32_t id, const char **out, size_t *out_len,
                           attnd_err *err);
int __wrap_tok_stream_push(tok_stream *s, int32_t id, const char **out, size_t *out_len,
                           attnd_err *err);
int __wrap_tok_stream_push(tok_stream *s, int32_t id, const char **out, size_t *out_len,
                           attnd_err *err)
{
    if (trip(&g_fail_push)) {
        *out = NULL;
        *out_len = 0;
        return attnd_err_set(err, ATTND_ENOMEM, "tok_stream: out of memory (injected)");
    }
    return __real_tok_stream_push(s, id, out, out_len, err);
}

int __real_srv_stop_feed(srv_stop *s, const char *text, size_t len, const char **emit,
                         size_t *emit_len, bool *stopped);
int __wrap_srv_stop_feed(srv_stop *s, const char *text, size_t len, const char **emit,
                         size_t *emit_len, bool *stopped);
int __wrap_srv_stop_feed(srv_stop *s, const char *text, size_t len, const char **emit,
                         size_t *emit_len, bool *stopped)
{
    if (trip(&g_fail_stop)) {
        *emit = "";
        *emit_len = 0;
        *stopped = false;
        return ATTND_ENOMEM;
    }
    return __real_srv_stop_feed(s, text, len, emit, emit_len, stopped);
}

cJSON *__real_cJSON_CreateObject(void);
cJSON *__wrap_cJSON_CreateObject(void);
cJSON *__wrap_cJSON_CreateObject(void)
{
    return trip(&g_fail_object) ? NULL : __real_cJSON_CreateObject();
}

int __real_engine_step(engine *e, const engine_entry *entries, size_t n, float *logits,
                       attnd_err *err);
int __wrap_engine_step(engine *e, const engine_entry *entries, size_t n, float *logits,
                       attnd_err *err);
int __wrap_engine_step(engine *e, const engine_entry *entries, size_t n, float *logits,
                       attnd_err *err)
{
    if (trip(&g_fail_step))
        return attnd_err_set(err, ATTND_EIO, "engine: injected failure");
    return __real_engine_step(e, entries, n, logits, err);
}

/* ------------------------------------------------------------ harness */

struct harness {
    model *m;
    engine *e;
    srv_metrics *metrics;
    uv_loop_t loop;
    srv_sched *s;
};

static void no_wake(void *ctx, srv_req *r)
{
    (void)ctx;
    (void)r;
}

static srv_sched_params default_params(void)
{
    return (srv_sched_params){
        .max_seqs = 4,
        .max_batch_tokens = 64,
        .queue_limit = 8,
        .request_timeout_s = 0,
        .drain_timeout_s = 0,
        .max_buffered = 1u << 20,
        .wake = no_wake,
    };
}

/* KV_TOKENS: pool size in tokens (0: the engine's default). */
static void h_open_cache(struct harness *h, const char *model_rel, uint32_t kv_tokens,
                         uint32_t block_size, const srv_sched_params *p, bool prefix_cache)
{
    memset(h, 0, sizeof *h);
    attnd_err err = {0};
    cr_assert_eq(model_load(test_shared(model_rel), &h->m, &err), ATTND_OK, "%s", err.msg);
    engine_params ep = {.n_threads = 1, .kv_block_size = block_size, .kv_type = KV_DTYPE_F16,
                        .max_entries = p->max_batch_tokens, .prefix_cache = prefix_cache};
    if (kv_tokens)
        ep.kv_blocks = (kv_tokens + block_size - 1) / block_size;
    cr_assert_eq(engine_new(h->m, &ep, &h->e, &err), ATTND_OK, "%s", err.msg);
    h->metrics = srv_metrics_new();
    cr_assert(h->metrics);
    cr_assert_eq(uv_loop_init(&h->loop), 0);
    cr_assert_eq(srv_sched_new(&h->loop, h->e, h->m, h->metrics, p, &h->s, &err), ATTND_OK, "%s",
                 err.msg);
}

/* Drains (every request must be finished by then) and checks that every
 * loop handle was closed: uv_loop_close fails while one is still open. */
static void h_open(struct harness *h, const char *model_rel, uint32_t kv_tokens,
                   uint32_t block_size, const srv_sched_params *p)
{
    h_open_cache(h, model_rel, kv_tokens, block_size, p, false);
}

static void h_close(struct harness *h)
{
    srv_sched_request_drain(h->s);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    cr_expect_eq(uv_loop_close(&h->loop), 0, "a loop handle is still open after the drain");
    srv_sched_free(h->s);
    srv_metrics_free(h->metrics);
    engine_free(h->e);
    model_free(h->m);
}

/* A parsed and prepared request, submitted. *RC gets srv_sched_submit's code;
 * the caller holds the HTTP side's reference either way. */
static srv_req *h_submit(struct harness *h, const char *body, int *rc)
{
    srv_req *r = srv_req_new();
    cr_assert(r);
    attnd_err err = {0};
    srv_limits lim = {.default_max_tokens = 128, .max_tokens_cap = 100000};
    cr_assert_eq(srv_parse_generate(body, strlen(body), &lim, 1234, &r->in, &err), ATTND_OK, "%s",
                 err.msg);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    r->t_submit = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    cr_assert_eq(srv_req_prepare(r, h->m, srv_sched_kv_token_capacity(h->s), &err), ATTND_OK, "%s",
                 err.msg);
    int code = srv_sched_submit(h->s, r);
    if (rc)
        *rc = code;
    else
        cr_assert_eq(code, ATTND_OK, "submit refused");
    return r;
}

static bool is_done(srv_req *r)
{
    pthread_mutex_lock(&r->mu);
    bool d = r->done;
    pthread_mutex_unlock(&r->mu);
    return d;
}

static uint32_t n_generated(srv_req *r)
{
    pthread_mutex_lock(&r->mu);
    uint32_t n = r->n_generated;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* One loop iteration: at most one engine step. */
static void h_iter(struct harness *h)
{
    uv_run(&h->loop, UV_RUN_NOWAIT);
}

/* Runs until R is done or MAX iterations passed; true when done. */
static bool h_run_until_done(struct harness *h, srv_req *r, int max)
{
    for (int i = 0; i < max && !is_done(r); i++)
        h_iter(h);
    return is_done(r);
}

/* The value of a metric sample line "NAME VALUE" (-1 when absent). */
static double h_metric(struct harness *h, const char *name)
{
    size_t len;
    char *txt = srv_metrics_render(h->metrics, &len);
    cr_assert(txt);
    char pat[128];
    snprintf(pat, sizeof pat, "\n%s ", name);
    const char *p = strstr(txt, pat);
    double v = p ? strtod(p + strlen(pat), NULL) : -1;
    free(txt);
    return v;
}

static const char *finish_name(srv_req *r)
{
    pthread_mutex_lock(&r->mu);
    const char *n = srv_finish_name(r->finish);
    pthread_mutex_unlock(&r->mu);
    return n;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* aidreams260K: 4 layers x 4 KV heads x 16 dims x 2 (K, V) x 2 bytes = 1 KiB
 * per token. 96 tokens in blocks of 8: two requests of 100 tokens cannot both
 * fit, so the second one admitted is preempted when the pool runs dry. */
#define LONG_STREAM "{\"prompt\":\"Echoes of\",\"max_tokens\":100,\"temperature\":0,\"ignore_eos\":true,\"stream\":true}"

/* Submits A, lets it start, submits B, and steps until B is preempted:
 * B is then waiting again (not running, not done) and A runs. */
static void preempt_second(struct harness *h, srv_req **a, srv_req **b)
{
    *a = h_submit(h, LONG_STREAM, NULL);
    for (int i = 0; i < 100 && n_generated(*a) == 0; i++)
        h_iter(h);
    cr_assert_gt(n_generated(*a), 0);
    *b = h_submit(h, LONG_STREAM, NULL);
    for (int i = 0; i < 1000 && h_metric(h, "attnd_preemptions_total") < 1; i++)
        h_iter(h);
    cr_assert_eq(h_metric(h, "attnd_preemptions_total"), 1, "no preemption with a 96-token pool");
    cr_assert((*a)->running && !is_done(*a), "A should still run");
    cr_assert(!(*b)->running && !is_done(*b) && n_generated(*b) > 0,
              "B should wait again after its preemption");
}

/* ------------------------------------------------------------ queue accounting */

Test(sched, preempted_request_cancelled_while_waiting_leaves_the_queue_empty)
{
    struct harness h;
    srv_sched_params p = default_params();
    h_open(&h, "models/aidreams260K.gguf", 96, 8, &p);
    srv_req *a, *b;
    preempt_second(&h, &a, &b);
    srv_sched_cancel(h.s, b);
    h_iter(&h);
    cr_assert(h_run_until_done(&h, b, 10), "the cancelled request did not end");
    cr_expect_str_eq(finish_name(b), "cancelled");
    h_iter(&h);
    cr_expect_eq(h_metric(&h, "attnd_queue_depth"), 0,
                 "queue depth after the preempted request left: %.0f",
                 h_metric(&h, "attnd_queue_depth"));
    int rc;
    srv_req *c = h_submit(&h, LONG_STREAM, &rc);
    cr_expect_eq(rc, ATTND_OK, "a new request was refused (queue counter wrapped?)");
    cr_assert(h_run_until_done(&h, a, 100000));
    if (rc == ATTND_OK)
        cr_assert(h_run_until_done(&h, c, 100000));
    cr_expect_eq(h_metric(&h, "attnd_kv_blocks_used"), 0);
    h_close(&h);
    srv_req_release(a);
    srv_req_release(b);
    srv_req_release(c);
}

Test(sched, preempted_request_expiring_while_waiting_leaves_the_queue_empty)
{
    struct harness h;
    srv_sched_params p = default_params();
    p.request_timeout_s = 1;
    h_open(&h, "models/aidreams260K.gguf", 96, 8, &p);
    srv_req *a, *b;
    preempt_second(&h, &a, &b);
    sleep_s(1.2); /* the loop does not run meanwhile: both deadlines pass */
    h_iter(&h);
    cr_assert(h_run_until_done(&h, a, 10) && h_run_until_done(&h, b, 10));
    cr_expect_str_eq(finish_name(a), "timeout");
    cr_expect_str_eq(finish_name(b), "timeout");
    h_iter(&h);
    cr_expect_eq(h_metric(&h, "attnd_queue_depth"), 0);
    cr_expect_eq(h_metric(&h, "attnd_running_sequences"), 0);
    cr_expect_eq(h_metric(&h, "attnd_kv_blocks_used"), 0);
    int rc;
    srv_req *c = h_submit(&h, "{\"prompt\":\"Echoes of\",\"max_tokens\":4}", &rc);
    cr_expect_eq(rc, ATTND_OK, "a new request was refused (queue counter wrapped?)");
    if (rc == ATTND_OK) {
        cr_assert(h_run_until_done(&h, c, 1000));
        cr_expect_eq(n_generated(c), 4);
    }
    h_close(&h);
    srv_req_release(a);
    srv_req_release(b);
    srv_req_release(c);
}

Test(sched, queue_limit_zero_admits_only_into_a_free_slot)
{
    struct harness h;
    srv_sched_params p = default_params();
    p.max_seqs = 1;
    p.queue_limit = 0;
    h_open(&h, "models/aidreams260K.gguf", 0, 16, &p);
    int rc_a, rc_b, rc_c;
    srv_req *a = h_submit(&h, LONG_STREAM, &rc_a);
    cr_expect_eq(rc_a, ATTND_OK, "queue_limit 0 refused a request while the slot was free");
    srv_req *b = h_submit(&h, LONG_STREAM, &rc_b);
    cr_expect_eq(rc_b, ATTND_ERANGE, "queue_limit 0 let a request wait for the only slot");
    if (rc_a == ATTND_OK)
        cr_assert(h_run_until_done(&h, a, 100000));
    srv_req *c = h_submit(&h, "{\"prompt\":\"Echoes of\",\"max_tokens\":4}", &rc_c);
    cr_expect_eq(rc_c, ATTND_OK, "the slot is free again, yet the request was refused");
    if (rc_c == ATTND_OK)
        cr_assert(h_run_until_done(&h, c, 1000));
    h_close(&h);
    srv_req_release(a);
    srv_req_release(b);
    srv_req_release(c);
}

Test(sched, queue_limit_counts_waiting_requests_beyond_the_slots)
{
    struct harness h;
    srv_sched_params p = default_params();
    p.max_seqs = 2;
    p.queue_limit = 3;
    h_open(&h, "models/aidreams260K.gguf", 0, 16, &p);
    srv_req *r[6];
    int rc[6];
    for (int i = 0; i < 6; i++)
        r[i] = h_submit(&h, LONG_STREAM, &rc[i]);
    for (int i = 0; i < 5; i++)
        cr_expect_eq(rc[i], ATTND_OK, "request %d of 2 slots + 3 waiting was refused", i);
    cr_expect_eq(rc[5], ATTND_ERANGE, "a sixth request was let in");
    for (int i = 0; i < 5; i++)
        cr_assert(h_run_until_done(&h, r[i], 100000));
    cr_expect_eq(h_metric(&h, "attnd_queue_depth"), 0);
    h_close(&h);
    for (int i = 0; i < 6; i++)
        srv_req_release(r[i]);
}

/* ------------------------------------------------------------ output buffer */

Test(sched, non_streamed_answer_longer_than_max_buffered_completes)
{
    struct harness h;
    srv_sched_params p = default_params();
    p.max_buffered = 1024;
    h_open(&h, "models/stories260K.gguf", 0, 16, &p);
    srv_req *r = h_submit(
        &h, "{\"prompt\":\"\",\"max_tokens\":500,\"temperature\":0,\"ignore_eos\":true}", NULL);
    cr_assert(h_run_until_done(&h, r, 20000), "stalled after %u tokens, %zu bytes of text",
              n_generated(r), r->out_len);
    cr_expect_eq(n_generated(r), 500);
    cr_expect_gt(r->out_len, 1024, "the answer (%zu bytes) does not test the limit", r->out_len);
    cr_expect_str_eq(finish_name(r), "length");
    cr_expect_eq(h_metric(&h, "attnd_kv_blocks_used"), 0);
    h_close(&h);
    srv_req_release(r);
}

Test(sched, unread_stream_pauses_at_max_buffered_and_resumes_when_read)
{
    struct harness h;
    srv_sched_params p = default_params();
    p.max_buffered = 1024;
    h_open(&h, "models/stories260K.gguf", 0, 16, &p);
    srv_req *r = h_submit(
        &h, "{\"prompt\":\"\",\"max_tokens\":500,\"temperature\":0,\"ignore_eos\":true,\"stream\":true}",
        NULL);
    for (int i = 0; i < 2000; i++)
        h_iter(&h);
    cr_assert(!is_done(r), "500 tokens of NDJSON fit in 1 KiB?");
    size_t unread = r->out_len - r->out_pos;
    cr_expect_gt(unread, 1024);
    cr_expect_lt(unread, 1024 + 256, "%zu bytes unread: the stream did not pause", unread);
    /* the reader takes everything: generation goes on to the end */
    for (int round = 0; round < 1000 && !is_done(r); round++) {
        pthread_mutex_lock(&r->mu);
        r->out_pos = r->out_len = 0;
        pthread_mutex_unlock(&r->mu);
        /* ONCE: a paused scheduler looks again at its next tick */
        for (int i = 0; i < 50 && !is_done(r); i++)
            uv_run(&h.loop, UV_RUN_ONCE);
    }
    cr_assert(is_done(r));
    cr_expect_eq(n_generated(r), 500);
    h_close(&h);
    srv_req_release(r);
}

/* ------------------------------------------------------------ finish reasons */

Test(sched, deadline_ends_running_and_waiting_requests_as_timeout)
{
    struct harness h;
    srv_sched_params p = default_params();
    p.max_seqs = 1;
    p.request_timeout_s = 1;
    h_open(&h, "models/aidreams260K.gguf", 0, 16, &p);
    srv_req *a = h_submit(&h, LONG_STREAM, NULL);
    srv_req *b = h_submit(&h, "{\"prompt\":\"Echoes of\",\"max_tokens\":100}", NULL);
    for (int i = 0; i < 100 && n_generated(a) == 0; i++)
        h_iter(&h);
    cr_assert(a->running && !b->running);
    sleep_s(1.2);
    h_iter(&h);
    cr_assert(h_run_until_done(&h, a, 10) && h_run_until_done(&h, b, 10));
    cr_expect_str_eq(finish_name(a), "timeout");
    cr_expect_str_eq(finish_name(b), "timeout");
    cr_expect_lt(n_generated(a), 100);
    h_close(&h);
    srv_req_release(a);
    srv_req_release(b);
}

/* The request's output, NUL-terminated (streams: the NDJSON lines). */
static char *output(srv_req *r)
{
    pthread_mutex_lock(&r->mu);
    char *t = malloc(r->out_len + 1);
    cr_assert(t);
    memcpy(t, r->out, r->out_len);
    t[r->out_len] = '\0';
    pthread_mutex_unlock(&r->mu);
    return t;
}

/* The last NDJSON line of a stream, parsed. */
static cJSON *last_line(srv_req *r)
{
    char *t = output(r);
    size_t n = strlen(t);
    cr_assert(n > 0 && t[n - 1] == '\n', "stream does not end with a line: %s", t);
    t[n - 1] = '\0';
    char *nl = strrchr(t, '\n');
    cJSON *o = cJSON_Parse(nl ? nl + 1 : t);
    cr_assert(o, "last line is not JSON: %s", nl ? nl + 1 : t);
    free(t);
    return o;
}

/* An injected fault at CALLS_BEFORE ends the request it hit with "error";
 * another request submitted next runs to its end untouched. */
static void check_fault_ends_request(int *fault, int calls_before, bool stream, bool cuts_short)
{
    struct harness h;
    srv_sched_params p = default_params();
    h_open(&h, "models/aidreams260K.gguf", 0, 16, &p);
    /* a stop string that never matches: the text goes through the matcher */
    const char *body = stream ? "{\"prompt\":\"Echoes of\",\"max_tokens\":100,\"temperature\":0,"
                                "\"ignore_eos\":true,\"stop\":[\"@@@\"],\"stream\":true}"
                              : "{\"prompt\":\"Echoes of\",\"max_tokens\":100,\"temperature\":0,"
                                "\"ignore_eos\":true,\"stop\":[\"@@@\"]}";
    srv_req *r = h_submit(&h, body, NULL);
    *fault = calls_before;
    cr_assert(h_run_until_done(&h, r, 1000));
    *fault = -1;
    cr_expect_str_eq(finish_name(r), "error", "a failed %s was ignored: finish %s",
                     fault == &g_fail_append ? "append" : fault == &g_fail_push ? "decode"
                     : fault == &g_fail_stop ? "stop match"
                     : fault == &g_fail_object ? "cJSON_CreateObject" : "engine step",
                     finish_name(r));
    if (cuts_short)
        cr_expect_lt(n_generated(r), 100, "generation went on after the failure");
    if (stream) {
        cJSON *o = last_line(r);
        cr_expect(cJSON_IsTrue(cJSON_GetObjectItem(o, "done")));
        cJSON *fr = cJSON_GetObjectItem(o, "finish_reason");
        cr_expect(cJSON_IsString(fr) && strcmp(fr->valuestring, "error") == 0);
        cJSON_Delete(o);
    }
    srv_req *ok = h_submit(&h, body, NULL);
    cr_assert(h_run_until_done(&h, ok, 100000));
    cr_expect_str_eq(finish_name(ok), "length");
    cr_expect_eq(n_generated(ok), 100);
    cr_expect_eq(h_metric(&h, "attnd_kv_blocks_used"), 0);
    h_close(&h);
    srv_req_release(r);
    srv_req_release(ok);
}

Test(sched, engine_failure_ends_running_requests_as_error)
{
    check_fault_ends_request(&g_fail_step, 5, true, true);
}

Test(sched, output_append_failure_ends_the_request_as_error)
{
    check_fault_ends_request(&g_fail_append, 3, false, true);
    check_fault_ends_request(&g_fail_append, 3, true, true);
}

Test(sched, decoder_failure_ends_the_request_as_error)
{
    check_fault_ends_request(&g_fail_push, 3, false, true);
    check_fault_ends_request(&g_fail_push, 3, true, true);
}

Test(sched, stop_matcher_failure_ends_the_request_as_error)
{
    check_fault_ends_request(&g_fail_stop, 3, false, true);
    check_fault_ends_request(&g_fail_stop, 3, true, true);
}

/* The first object the scheduler builds for a stream fails: whichever line
 * it was for, the stream still ends with a done line saying "error". */
Test(sched, json_allocation_failure_ends_the_stream_as_error)
{
    check_fault_ends_request(&g_fail_object, 0, true, false);
}

Test(sched, drain_timeout_cuts_off_running_and_waiting_requests_as_error)
{
    struct harness h;
    srv_sched_params p = default_params();
    p.max_seqs = 1; /* drain_timeout_s is 0 */
    h_open(&h, "models/aidreams260K.gguf", 0, 16, &p);
    srv_req *a = h_submit(&h, LONG_STREAM, NULL);
    srv_req *b = h_submit(&h, LONG_STREAM, NULL);
    for (int i = 0; i < 100 && n_generated(a) == 0; i++)
        h_iter(&h);
    cr_assert(a->running && !b->running);
    srv_sched_request_drain(h.s);
    /* The tick is due before the loop runs again, and libuv runs timers
     * before idle callbacks: the cut comes before another step. */
    sleep_s(0.15);
    h_iter(&h);
    cr_expect(n_generated(a) < 100 && n_generated(b) == 0);
    h_close(&h);
    srv_req *r[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        cr_expect(is_done(r[i]));
        cr_expect_str_eq(finish_name(r[i]), "error");
        cr_expect(strstr(r[i]->error, "drain_timeout_s"), "error: '%s'", r[i]->error);
        cJSON *o = last_line(r[i]);
        cr_expect_str_eq(cJSON_GetObjectItem(o, "finish_reason")->valuestring, "error");
        cJSON_Delete(o);
        srv_req_release(r[i]);
    }
}

/* ------------------------------------------------------------ start-up */

Test(sched, bad_parameters_are_refused_and_leave_the_loop_clean)
{
    attnd_err err = {0};
    model *m = NULL;
    engine *e = NULL;
    cr_assert_eq(model_load(test_shared("models/aidreams260K.gguf"), &m, &err), ATTND_OK);
    engine_params ep = {.n_threads = 1, .kv_type = KV_DTYPE_F16};
    cr_assert_eq(engine_new(m, &ep, &e, &err), ATTND_OK, "%s", err.msg);
    srv_metrics *metrics = srv_metrics_new();
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    srv_sched_params p = default_params();
    p.max_seqs = 0;
    srv_sched *s = (srv_sched *)&loop; /* must come back NULL */
    cr_expect_eq(srv_sched_new(&loop, e, m, metrics, &p, &s, &err), ATTND_EINVAL);
    cr_expect_null(s);
    cr_expect(strstr(err.msg, "max_seqs"), "%s", err.msg);
    p = default_params();
    p.max_batch_tokens = p.max_seqs - 1;
    cr_expect_eq(srv_sched_new(&loop, e, m, metrics, &p, &s, &err), ATTND_EINVAL);
    srv_sched_free(s); /* NULL: nothing */
    cr_expect_eq(uv_loop_close(&loop), 0, "a refused scheduler left a handle on the loop");
    /* A good one closed without a drain (a start-up failure elsewhere). */
    cr_assert_eq(uv_loop_init(&loop), 0);
    p = default_params();
    cr_assert_eq(srv_sched_new(&loop, e, m, metrics, &p, &s, &err), ATTND_OK, "%s", err.msg);
    srv_sched_close(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(uv_loop_close(&loop), 0, "srv_sched_close left a handle open");
    srv_sched_free(s);
    srv_metrics_free(metrics);
    engine_free(e);
    model_free(m);
}

/* ------------------------------------------------------------ prefix cache */

#define SHARED_PROMPT                                                                              \
    "{\"prompt\":\"Echoes of the old song rang through the hall while the children \"," \
    "\"max_tokens\":60,\"temperature\":0,\"ignore_eos\":true}"

/* The greedy answer to SHARED_PROMPT from a pool of KV_TOKENS, alone. */
static char *shared_prompt_alone(bool prefix_cache)
{
    struct harness h;
    srv_sched_params p = default_params();
    h_open_cache(&h, "models/aidreams260K.gguf", 0, 8, &p, prefix_cache);
    srv_req *a = h_submit(&h, SHARED_PROMPT, NULL);
    cr_assert(h_run_until_done(&h, a, 100000));
    char *t = output(a);
    h_close(&h);
    srv_req_release(a);
    return t;
}

/* Two requests with one prompt in a 96-token pool: the second shares the
 * first one's prompt blocks, runs out of room and is preempted (its shared
 * blocks are only unreferenced: the first keeps reading them), then comes
 * back through the cache. Both answers are the answer alone. */
Test(sched, preemption_never_frees_blocks_another_sequence_shares)
{
    char *alone = shared_prompt_alone(false);
    struct harness h;
    srv_sched_params p = default_params();
    h_open_cache(&h, "models/aidreams260K.gguf", 96, 8, &p, true);
    srv_req *a = h_submit(&h, SHARED_PROMPT, NULL);
    for (int i = 0; i < 100 && n_generated(a) == 0; i++)
        h_iter(&h);
    srv_req *b = h_submit(&h, SHARED_PROMPT, NULL);
    cr_assert(h_run_until_done(&h, a, 100000));
    cr_assert(h_run_until_done(&h, b, 100000));
    cr_expect_geq(h_metric(&h, "attnd_preemptions_total"), 1, "the 96-token pool never preempted");
    cr_expect_geq(h_metric(&h, "attnd_prefix_cache_hit_tokens_total"), 16,
                  "the second request did not share the first one's prompt blocks");
    char *ta = output(a), *tb = output(b);
    cr_expect_str_eq(ta, alone, "the first answer changed while its blocks were shared");
    cr_expect_str_eq(tb, alone, "the preempted answer differs");
    h_iter(&h);
    cr_expect_eq(h_metric(&h, "attnd_kv_blocks_used"), 0);
    cr_expect_gt(h_metric(&h, "attnd_kv_blocks_cached"), 0);
    free(ta);
    free(tb);
    free(alone);
    h_close(&h);
    srv_req_release(a);
    srv_req_release(b);
    /* and the cache itself changes no answer */
    char *cached = shared_prompt_alone(true);
    alone = shared_prompt_alone(false);
    cr_expect_str_eq(cached, alone);
    free(cached);
    free(alone);
}

/* ------------------------------------------------------------ n choices */

/* As the HTTP side makes them: the request and N-1 further choices parsed
 * from the same body with seeds SEED + i, prepared, the head submitted. */
static srv_req *h_submit_n(struct harness *h, const char *body, uint32_t n)
{
    srv_req *r = NULL;
    srv_limits lim = {.default_max_tokens = 128, .max_tokens_cap = 100000};
    attnd_err err = {0};
    for (uint32_t i = 0; i < n; i++) {
        srv_req *m = srv_req_new();
        cr_assert(m);
        cr_assert_eq(srv_parse_generate(body, strlen(body), &lim, 1234, &m->in, &err), ATTND_OK,
                     "%s", err.msg);
        m->in.sample.seed = 1234 + i;
        cr_assert_eq(srv_req_prepare(m, h->m, srv_sched_kv_token_capacity(h->s), &err), ATTND_OK,
                     "%s", err.msg);
        if (i == 0) {
            r = m;
            r->n_choices = 1;
        } else {
            m->index = i;
            m->head = r;
            r->choices[r->n_choices++] = m;
        }
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    r->t_submit = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    for (uint32_t i = 1; i < n; i++)
        r->choices[i]->t_submit = r->t_submit;
    cr_assert_eq(srv_sched_submit(h->s, r), ATTND_OK);
    return r;
}

/* 25 prompt tokens in blocks of 8 and 3 choices: once each has its first
 * token in the cache, the three full prompt blocks are shared and only the
 * partial fourth is per choice (copied on first write: 3 + 3 blocks, not
 * 3 x 4); the choices are the answers their seeds give alone, and
 * everything comes back. */
Test(sched, n_choices_share_the_prompt_blocks)
{
    const char *body = "{\"prompt\":\"Echoes of the old song rang through the hall while\","
                       "\"max_tokens\":6,\"temperature\":1,\"ignore_eos\":true}";
    struct harness h;
    srv_sched_params p = default_params();
    h_open(&h, "models/aidreams260K.gguf", 0, 8, &p);
    srv_req *r = h_submit_n(&h, body, 3);
    cr_assert_neq(r->n_prompt % 8, 0, "the test wants a partial last block (%u tokens)", r->n_prompt);
    for (int i = 0; i < 100 && n_generated(r) < 2; i++)
        h_iter(&h);
    cr_assert_eq(n_generated(r), 2);
    double used = h_metric(&h, "attnd_kv_blocks_used");
    cr_expect_eq(used, r->n_prompt / 8 + 3, "%.0f blocks in use", used);
    cr_assert(h_run_until_done(&h, r, 10000));
    char *text[3];
    for (uint32_t i = 0; i < 3; i++) {
        srv_req *m = i ? r->choices[i] : r;
        text[i] = output(m);
        cr_expect_eq(m->n_generated, 6u);
        cr_expect_str_eq(finish_name(m), "length");
    }
    cr_expect_str_neq(text[0], text[1]);
    cr_expect_eq(h_metric(&h, "attnd_kv_blocks_used"), 0);
    srv_req_release(r);
    /* choice 2 is what seed 1236 gives alone */
    char solo[512];
    snprintf(solo, sizeof solo, "%.*s,\"seed\":1236}", (int)strlen(body) - 1, body);
    srv_req *a = h_submit(&h, solo, NULL);
    cr_assert(h_run_until_done(&h, a, 10000));
    char *t = output(a);
    cr_expect_str_eq(t, text[2], "choice 2 differs from its seed alone");
    free(t);
    srv_req_release(a);
    h_close(&h);
    for (uint32_t i = 0; i < 3; i++)
        free(text[i]);
}

/* The client of an n = 4 request goes away: every choice ends, running or
 * waiting for a slot (max_seqs 2), and nothing leaks. */
Test(sched, cancelling_an_n_request_ends_every_choice)
{
    struct harness h;
    srv_sched_params p = default_params();
    p.max_seqs = 2;
    h_open(&h, "models/aidreams260K.gguf", 0, 8, &p);
    srv_req *r = h_submit_n(&h, LONG_STREAM, 4);
    for (int i = 0; i < 100 && n_generated(r) < 3; i++)
        h_iter(&h);
    srv_sched_cancel(h.s, r);
    cr_assert(h_run_until_done(&h, r, 1000));
    for (uint32_t i = 1; i < 4; i++)
        cr_expect_str_eq(finish_name(r->choices[i]), "cancelled", "choice %u", i);
    h_iter(&h);
    cr_expect_eq(h_metric(&h, "attnd_kv_blocks_used"), 0);
    cr_expect_eq(h_metric(&h, "attnd_running_sequences"), 0);
    h_close(&h);
    srv_req_release(r);
}
