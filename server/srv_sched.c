/* srv_sched.c - continuous batching on the libuv loop (srv_sched.h).
 *
 * Loop handles: `wake` (uv_async) for submissions and cancellations, `idle`
 * (uv_idle, active only while there is work) runs one engine step per loop
 * iteration so wake-ups, timers and signals are served between steps, `tick`
 * (uv_timer, 100 ms) enforces deadlines, looks for clients that hung up while
 * their connection was parked, and ends the drain, `sigterm`/`sigint`
 * (uv_signal) start the drain.
 *
 * Every request the scheduler holds ends through finish(), exactly once, with
 * an honest reason: length, stop, eos, cancelled (client gone), timeout, or
 * error (engine, memory, drain cut-off; the message goes to the client and
 * to stderr). */
#include "srv_sched.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv.h"
#include "srv_openai.h"
#include "srv_stop.h"

struct srv_sched {
    uv_loop_t *loop;
    uv_async_t wake;
    uv_idle_t idle;
    uv_timer_t tick;
    uv_signal_t sigterm, sigint;
    bool idle_on;

    engine *eng;
    const model *m;
    const model_hparams *hp;
    const tok_vocab *vocab;
    srv_metrics *metrics;
    srv_sched_params p;

    /* Shared with HTTP threads, under qmu: the submit queue and its counts. */
    pthread_mutex_t qmu;
    srv_req *in_head, *in_tail;
    uint32_t n_queued;  /* submitted, never admitted: the queue_depth gauge */
    uint32_t n_held;    /* submitted, not finished: what queue_limit bounds */
    bool draining;
    bool handles_open;   /* registered on the loop; written by the loop thread, so
                          * HTTP threads know whether `wake` may be sent to */
    double drain_deadline;
    uint32_t drain_held; /* n_held when the drain began */

    /* Loop-thread state. */
    srv_req *wait_head, *wait_tail; /* FIFO; preempted requests go to the front */
    srv_req **running;
    uint32_t n_running;
    uint64_t admit_counter;
    uint32_t drain_cut;  /* held requests the drain timeout ended */
    engine_entry *entries;
    srv_req **entry_req; /* request of each logits row */
    float *logits;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- output */

/* The request a choice belongs to: the head, which has the connection. */
static srv_req *group_of(srv_req *r)
{
    return r->head ? r->head : r;
}

static bool is_cancelled(srv_req *r)
{
    return atomic_load(&group_of(r)->cancelled);
}

/* Appends under the request's lock and wakes the HTTP side if it waits.
 * A further choice streams into its head's buffer and keeps a non-streamed
 * text in its own. ATTND_ENOMEM: nothing appended (END still takes effect). */
static int emit(srv_sched *s, srv_req *r, const char *p, size_t n, bool end)
{
    if (r->in.stream)
        r = group_of(r);
    pthread_mutex_lock(&r->mu);
    int rc = n ? srv_req_append(r, p, n) : ATTND_OK;
    if (end)
        r->done = true;
    bool wake = r->suspended && ((n > 0 && rc == ATTND_OK) || end);
    if (wake)
        r->suspended = false;
    pthread_mutex_unlock(&r->mu);
    if (wake)
        s->p.wake(s->p.wake_ctx, r);
    return rc;
}

/* The log-probabilities not yet streamed, in R's API shape, marked sent;
 * NULL when off or none are pending (or out of memory: they are dropped). */
static cJSON *pending_logprobs(srv_sched *s, srv_req *r)
{
    if (!r->in.logprobs || r->lp_sent >= r->n_lp)
        return NULL;
    const srv_logprob *lp = r->lp + r->lp_sent;
    size_t n = r->n_lp - r->lp_sent;
    cJSON *j = r->api == SRV_API_CHAT         ? srv_logprobs_chat(lp, n, s->vocab)
               : r->api == SRV_API_COMPLETION ? srv_logprobs_completion(lp, n, s->vocab, r->lp_text_off)
                                              : srv_logprobs_generate(lp, n, s->vocab);
    for (size_t i = 0; r->api == SRV_API_COMPLETION && i < n; i++) { /* for text_offset */
        long k = tok_piece(s->vocab, lp[i].id, NULL, 0);
        r->lp_text_off += k > 0 ? (size_t)k : 0;
    }
    r->lp_sent = r->n_lp;
    return j;
}

/* Text for the client: raw bytes for a non-streamed answer (the HTTP side
 * escapes the whole text at the end), one framed JSON line per call for a
 * stream. TOKEN < 0: held-back text released at the end. */
static int emit_text(srv_sched *s, srv_req *r, int32_t token, const char *text, size_t len)
{
    if (!r->in.stream)
        return len ? emit(s, r, text, len, false) : ATTND_OK;
    if (token < 0 && len == 0)
        return ATTND_OK;
    size_t n;
    char *line;
    cJSON *lp = pending_logprobs(s, r);
    if (r->api == SRV_API_CHAT) { /* OpenAI chunks: the first one carries the role */
        line = srv_chat_chunk(r, !r->chat_role_sent, text, len, NULL, lp, &n);
        r->chat_role_sent = true;
    } else if (r->api == SRV_API_COMPLETION) {
        line = srv_completion_chunk(r, text, len, NULL, lp, &n);
    } else {
        char *lpj = lp ? cJSON_PrintUnformatted(lp) : NULL;
        line = srv_stream_token_lp(token, text, len, lpj, r->sse, &n);
        free(lpj);
        cJSON_Delete(lp);
    }
    if (!line)
        return ATTND_ENOMEM;
    int rc = emit(s, r, line, n, false);
    free(line);
    return rc;
}

/* OpenAI stream: the chunk that ends R's choice, with its finish_reason;
 * an error is an error object, as OpenAI streams it. */
static void emit_choice_end(srv_sched *s, srv_req *r)
{
    size_t n = 0;
    char *line;
    if (r->finish == SRV_FINISH_ERROR) {
        char *e = srv_error_json("server_error", r->error);
        line = e ? srv_stream_frame(e, strlen(e), true, &n) : NULL;
        free(e);
    } else {
        const char *fin = srv_openai_finish(r->finish);
        cJSON *lp = pending_logprobs(s, r); /* of tokens whose text was held back */
        line = r->api == SRV_API_CHAT ? srv_chat_chunk(r, !r->chat_role_sent, NULL, 0, fin, lp, &n)
                                      : srv_completion_chunk(r, "", 0, fin, lp, &n);
    }
    if (line)
        emit(s, r, line, n, false);
    free(line);
}

/* The end of a stream once every choice of R ended: for OpenAI, usage if
 * asked for and [DONE]; for /generate, {"done":true, finish_reason, usage,
 * timings, error}. Needs memory; when there is none, a fixed line still
 * tells the client that the request failed. */
static void emit_done_line(srv_sched *s, srv_req *r)
{
    if (r->api != SRV_API_GENERATE) {
        size_t nu = 0;
        char *usage = r->include_usage ? srv_chat_usage_chunk(r, &nu) : NULL;
        if (usage)
            emit(s, r, usage, nu, false);
        emit(s, r, "data: [DONE]\n\n", 14, true);
        free(usage);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    char *json = NULL;
    bool ok = o && cJSON_AddBoolToObject(o, "done", 1) && srv_req_add_result(r, o) == ATTND_OK &&
              (json = cJSON_PrintUnformatted(o)) != NULL;
    size_t n = 0;
    char *line = ok ? srv_stream_frame(json, strlen(json), r->sse, &n) : NULL;
    free(json);
    cJSON_Delete(o);
    if (line && emit(s, r, line, n, true) == ATTND_OK) {
        free(line);
        return;
    }
    free(line);
    static const char k_oom[] =
        "{\"done\":true,\"finish_reason\":\"error\",\"error\":\"out of memory\"}";
    fprintf(stderr, "attnd: request ended with an error: out of memory writing its last line\n");
    pthread_mutex_lock(&r->mu);
    r->finish = SRV_FINISH_ERROR;
    snprintf(r->error, sizeof r->error, "out of memory");
    pthread_mutex_unlock(&r->mu);
    if (r->sse)
        emit(s, r, "data: ", 6, false);
    emit(s, r, k_oom, sizeof k_oom - 1, false);
    emit(s, r, r->sse ? "\n\n" : "\n", r->sse ? 2 : 1, true);
}

/* ---------------------------------------------------------------- lifecycle of a request */

static void running_remove(srv_sched *s, srv_req *r)
{
    for (uint32_t i = 0; i < s->n_running; i++)
        if (s->running[i] == r) {
            memmove(&s->running[i], &s->running[i + 1], (s->n_running - i - 1) * sizeof *s->running);
            s->n_running--;
            return;
        }
}

/* R leaves the waiting room: admitted for the first time, or ended before
 * it ever was. A preempted request waiting again was counted out at its
 * first admission. */
static void queue_leave(srv_sched *s, srv_req *r)
{
    if (r->t_admit != 0)
        return;
    pthread_mutex_lock(&s->qmu);
    s->n_queued--;
    pthread_mutex_unlock(&s->qmu);
}

/* Releases text held back by the decoder and the stop matcher; may turn the
 * end into a stop. ATTND_ENOMEM when the text could not be buffered. */
static int flush_held(srv_sched *s, srv_req *r, srv_finish *why)
{
    const char *p1 = NULL, *p2 = NULL;
    size_t n1 = 0, n2 = 0;
    int rc = ATTND_OK;
    tok_stream_flush(r->ts, &p1, &n1);
    if (!r->stop)
        return emit_text(s, r, -1, p1, n1);
    bool stopped = false;
    if (n1) {
        const char *e;
        size_t en;
        rc = srv_stop_feed(r->stop, p1, n1, &e, &en, &stopped);
        if (rc == ATTND_OK && en)
            rc = emit_text(s, r, -1, e, en);
        if (stopped)
            *why = SRV_FINISH_STOP;
    }
    if (!stopped) {
        srv_stop_flush(r->stop, &p2, &n2);
        if (n2 && rc == ATTND_OK)
            rc = emit_text(s, r, -1, p2, n2);
    }
    return rc;
}

static void publish_gauges(srv_sched *s)
{
    const kv_pool *kv = engine_kv(s->eng);
    pthread_mutex_lock(&s->qmu);
    uint32_t queued = s->n_queued;
    pthread_mutex_unlock(&s->qmu);
    srv_metrics_gauges(s->metrics, queued, s->n_running, kv_pool_n_blocks(kv) - kv_pool_n_free(kv),
                       kv_pool_n_blocks(kv), kv_pool_n_cached(kv));
}

/* The head G ended before its prompt was computed (cancelled, timed out,
 * failed, too long for the pool): its further choices never ran, and end
 * as it did, with no text. */
static void end_unforked(srv_sched *s, srv_req *g)
{
    for (uint32_t i = 1; i < g->n_choices; i++) {
        srv_req *c = g->choices[i];
        pthread_mutex_lock(&c->mu);
        c->finish = g->finish;
        memcpy(c->error, g->error, sizeof c->error);
        pthread_mutex_unlock(&c->mu);
        if (c->in.stream && c->api != SRV_API_GENERATE)
            emit_choice_end(s, c);
    }
}

/* Ends R: frees its sequence, flushes held-back text, publishes the result
 * and drops the scheduler's reference. MSG (printf-style) is the error
 * message when WHY is SRV_FINISH_ERROR. */
__attribute__((format(printf, 4, 5))) static void finish(srv_sched *s, srv_req *r, srv_finish why,
                                                         const char *msg, ...)
{
    if (r->running) {
        engine_seq_close(s->eng, r->seq);
        r->running = false;
        running_remove(s, r);
    }
    char error[sizeof r->error] = "";
    if (why == SRV_FINISH_ERROR) {
        va_list ap;
        va_start(ap, msg);
        vsnprintf(error, sizeof error, msg, ap);
        va_end(ap);
    }
    double t = now_s();
    if ((why == SRV_FINISH_LENGTH || why == SRV_FINISH_EOS || why == SRV_FINISH_TIMEOUT) &&
        flush_held(s, r, &why) != ATTND_OK) {
        why = SRV_FINISH_ERROR;
        snprintf(error, sizeof error, "out of memory buffering the output");
    }
    if (why == SRV_FINISH_ERROR)
        fprintf(stderr, "attnd: request ended with an error after %u tokens: %s\n",
                r->n_generated, error);
    if (!r->have_first)
        r->t_first = t;
    if (r->t_admit == 0) {
        queue_leave(s, r);
        r->t_admit = t;
    }
    pthread_mutex_lock(&r->mu);
    r->finish = why;
    memcpy(r->error, error, sizeof error);
    r->queue_ms = (r->t_admit - r->t_submit) * 1e3;
    r->prefill_ms = (r->t_first - r->t_admit) * 1e3;
    r->decode_ms = (t - r->t_first) * 1e3;
    pthread_mutex_unlock(&r->mu);

    /* before the client hears of the end: what it reads from /metrics then
     * already counts this sequence's KV blocks as free */
    publish_gauges(s);
    if (r->in.stream && r->api != SRV_API_GENERATE)
        emit_choice_end(s, r); /* reads fields only this thread writes */
    srv_metrics_tokens(s->metrics, r->head ? 0 : r->n_prompt, r->n_generated);
    srv_metrics_finish(s->metrics, srv_finish_name(r->finish));

    /* The request ends with its last choice; until then the head keeps the
     * scheduler's reference, and so its connection, open. */
    srv_req *g = group_of(r);
    if (r != g)
        srv_req_release(r);
    if (g->forked && --g->n_open > 0)
        return;
    if (!g->forked)
        end_unforked(s, g);
    if (g->in.stream)
        emit_done_line(s, g);
    else
        emit(s, g, NULL, 0, true);
    pthread_mutex_lock(&s->qmu);
    s->n_held--;
    pthread_mutex_unlock(&s->qmu);
    srv_req_release(g);
}

static void preempt(srv_sched *s, srv_req *r)
{
    engine_seq_close(s->eng, r->seq);
    r->running = false;
    r->n_computed = 0;
    running_remove(s, r);
    r->next = s->wait_head;
    s->wait_head = r;
    if (!s->wait_tail)
        s->wait_tail = r;
    srv_metrics_preemption(s->metrics);
}

/* ---------------------------------------------------------------- queues */

static void take_incoming(srv_sched *s)
{
    pthread_mutex_lock(&s->qmu);
    srv_req *h = s->in_head;
    srv_req *t = s->in_tail;
    s->in_head = s->in_tail = NULL;
    pthread_mutex_unlock(&s->qmu);
    if (!h)
        return;
    if (s->wait_tail)
        s->wait_tail->next = h;
    else
        s->wait_head = h;
    s->wait_tail = t;
}

/* Unlinks the waiting request *PP (PREV before it, NULL at the head). */
static srv_req *wait_unlink(srv_sched *s, srv_req **pp, srv_req *prev)
{
    srv_req *r = *pp;
    *pp = r->next;
    if (s->wait_tail == r)
        s->wait_tail = prev;
    r->next = NULL;
    return r;
}

static uint32_t blocks_for(const srv_sched *s, uint32_t tokens)
{
    uint32_t bs = kv_pool_block_size(engine_kv(s->eng));
    return (uint32_t)(((uint64_t)tokens + bs - 1) / bs);
}

/* Blocks running sequences will still take to finish their prefill. */
static uint64_t promised_blocks(const srv_sched *s)
{
    uint64_t sum = 0;
    for (uint32_t i = 0; i < s->n_running; i++) {
        const srv_req *r = s->running[i];
        uint32_t want = blocks_for(s, r->n_tokens + 1), have = blocks_for(s, r->n_computed);
        sum += want > have ? want - have : 0;
    }
    return sum;
}

static bool expired(const srv_sched *s, const srv_req *r, double t)
{
    return s->p.request_timeout_s && t - r->t_submit > s->p.request_timeout_s;
}

/* Drops cancelled and expired requests, then admits from the queue head
 * while the pool has blocks for the prompt plus a reserve. */
static void admit(srv_sched *s, double t)
{
    for (uint32_t i = s->n_running; i-- > 0;) {
        srv_req *r = s->running[i];
        if (is_cancelled(r))
            finish(s, r, SRV_FINISH_CANCELLED, NULL);
        else if (expired(s, r, t))
            finish(s, r, SRV_FINISH_TIMEOUT, NULL);
    }
    srv_req **pp = &s->wait_head, *prev = NULL;
    while (*pp) {
        srv_req *r = *pp;
        bool cancelled = is_cancelled(r);
        if (cancelled || expired(s, r, t)) {
            wait_unlink(s, pp, prev);
            finish(s, r, cancelled ? SRV_FINISH_CANCELLED : SRV_FINISH_TIMEOUT, NULL);
            continue;
        }
        prev = r;
        pp = &r->next;
    }

    const kv_pool *kv = engine_kv(s->eng);
    while (s->wait_head && s->n_running < s->p.max_seqs) {
        srv_req *r = s->wait_head;
        uint32_t need = blocks_for(s, r->n_tokens + 1);
        if (need > kv_pool_n_blocks(kv)) {
            /* Grew (prompt + output, recomputed after preemption) beyond what
             * the whole pool holds: the pool is its context limit. */
            wait_unlink(s, &s->wait_head, NULL);
            finish(s, r, SRV_FINISH_LENGTH, NULL);
            continue;
        }
        attnd_err err;
        if (engine_seq_open(s->eng, &r->seq, &err) != ATTND_OK)
            break;
        /* /v1/attention: its rows are written as its positions are computed
         * (layers and heads were checked against the model when parsed) */
        if (r->api == SRV_API_ATTENTION)
            engine_seq_tap(s->eng, r->seq, &r->tap, &err);
        /* The cached prefix first (at least the last token is computed, for
         * its logits): taking it changes what is free, since cached blocks
         * nobody used counted as free until now. */
        uint32_t reused = r->in.cache_prompt
                              ? engine_seq_reuse(s->eng, r->seq, r->tokens, r->n_tokens - 1)
                              : 0;
        uint64_t free_blocks = kv_pool_n_free(kv), promised = promised_blocks(s);
        uint32_t more = need - blocks_for(s, reused);
        if (free_blocks < promised || free_blocks - promised < more) {
            engine_seq_close(s->eng, r->seq);
            break;
        }
        wait_unlink(s, &s->wait_head, NULL);
        r->running = true;
        r->n_computed = reused;
        r->admit_order = ++s->admit_counter;
        if (r->in.cache_prompt)
            srv_metrics_prefix(s->metrics, r->n_tokens, reused);
        if (r->t_admit == 0) {
            queue_leave(s, r);
            r->t_admit = t;
            pthread_mutex_lock(&r->mu);
            r->n_cached = reused < r->n_prompt ? reused : r->n_prompt;
            pthread_mutex_unlock(&r->mu);
        }
        s->running[s->n_running++] = r;
    }
}

/* Marks R cancelled when its connection is parked and its client hung up. */
static void check_hangup(srv_sched *s, srv_req *r)
{
    if (atomic_load(&r->cancelled))
        return;
    pthread_mutex_lock(&r->mu);
    bool gone = r->suspended && !r->done && s->p.client_gone(s->p.wake_ctx, r);
    pthread_mutex_unlock(&r->mu);
    if (gone)
        atomic_store(&r->cancelled, true);
}

/* Looks at the socket of every parked connection: a client that hung up
 * while its request waited in the queue, was preempted, or (not streamed)
 * was being generated would otherwise keep its sequence to max_tokens. */
static void find_hangups(srv_sched *s)
{
    if (!s->p.client_gone)
        return;
    for (uint32_t i = 0; i < s->n_running; i++)
        check_hangup(s, group_of(s->running[i]));
    for (srv_req *r = s->wait_head; r; r = r->next)
        check_hangup(s, group_of(r));
}

/* ---------------------------------------------------------------- one step */

static void on_token(srv_sched *s, srv_req *r, const float *logits, double t);

/* H's prompt is computed (LOGITS: its last position's): each further choice
 * becomes a sequence sharing H's KV blocks and samples its first token from
 * the same logits with its own sampler. A choice without a free slot waits
 * at the queue's front and is computed when admitted (through the prefix
 * cache, when on). */
static void fork_choices(srv_sched *s, srv_req *h, const float *logits, double t)
{
    srv_req *now[SRV_MAX_CHOICES];
    uint32_t n_now = 0;
    h->forked = true;
    h->n_open = h->n_choices;
    for (uint32_t i = 1; i < h->n_choices; i++) {
        srv_req *c = h->choices[i];
        srv_req_retain(c); /* the scheduler's, dropped when the choice ends */
        c->t_admit = h->t_admit;
        attnd_err err;
        bool ok = s->n_running < s->p.max_seqs && engine_seq_open(s->eng, &c->seq, &err) == ATTND_OK;
        if (ok && engine_seq_fork(s->eng, h->seq, c->seq, &err) != ATTND_OK) {
            engine_seq_close(s->eng, c->seq);
            ok = false;
        }
        if (!ok) {
            c->next = s->wait_head;
            s->wait_head = c;
            if (!s->wait_tail)
                s->wait_tail = c;
            continue;
        }
        c->running = true;
        c->n_computed = h->n_computed;
        c->admit_order = ++s->admit_counter;
        s->running[s->n_running++] = c;
        now[n_now++] = c;
    }
    for (uint32_t i = 0; i < n_now; i++)
        on_token(s, now[i], logits, t);
}

/* Handles the token sampled for R; finishes R when it should stop. */
static void on_token(srv_sched *s, srv_req *r, const float *logits, double t)
{
    if (!r->have_first && r->n_choices > 1 && !r->forked)
        fork_choices(s, r, logits, t); /* before R can end and close its sequence */
    int32_t tok = sampler_sample(r->smp, logits);
    if (!r->have_first) {
        r->have_first = true;
        r->t_first = t;
        if (!r->head) /* one time to first token per request */
            srv_metrics_observe(s->metrics, SRV_HIST_TTFT, t - r->t_submit);
    } else {
        srv_metrics_observe(s->metrics, SRV_HIST_ITL, t - r->t_last_token);
    }
    r->t_last_token = t;
    if (!r->in.ignore_eos && tok_is_eog(s->vocab, tok)) {
        finish(s, r, SRV_FINISH_EOS, NULL);
        return;
    }
    sampler_accept(r->smp, tok);
    r->tokens[r->n_tokens++] = tok;
    srv_logprob lp;
    if (r->in.logprobs) /* of the model's own distribution: the raw logits */
        srv_logprob_compute(logits, (int32_t)s->hp->n_vocab, tok, r->in.top_logprobs, &lp);
    pthread_mutex_lock(&r->mu);
    r->n_generated++;
    bool lp_ok = !r->in.logprobs || srv_req_push_logprob(r, &lp) == ATTND_OK;
    pthread_mutex_unlock(&r->mu);
    if (!lp_ok) {
        finish(s, r, SRV_FINISH_ERROR, "out of memory keeping log-probabilities");
        return;
    }

    const char *piece = NULL, *out = NULL;
    size_t piece_len = 0, out_len = 0;
    bool stopped = false;
    attnd_err err = {0};
    if (tok_stream_push(r->ts, tok, &piece, &piece_len, &err) != ATTND_OK) {
        finish(s, r, SRV_FINISH_ERROR, "decoding token %ld: %s", (long)tok, err.msg);
        return;
    }
    int rc = ATTND_OK;
    if (r->stop)
        rc = srv_stop_feed(r->stop, piece, piece_len, &out, &out_len, &stopped);
    else
        out = piece, out_len = piece_len;
    if (rc != ATTND_OK || emit_text(s, r, tok, out, out_len) != ATTND_OK)
        finish(s, r, SRV_FINISH_ERROR, "out of memory buffering the output");
    else if (stopped)
        finish(s, r, SRV_FINISH_STOP, NULL);
    else if (r->n_generated >= r->in.max_tokens || r->n_tokens >= s->hp->n_ctx)
        finish(s, r, SRV_FINISH_LENGTH, NULL);
}

/* A stream whose reader left more than max_buffered unread waits for it.
 * Only streams: a non-streamed answer is read once, at the end, and is
 * bounded by max_tokens. */
static bool paused(const srv_sched *s, srv_req *r)
{
    if (!r->in.stream)
        return false;
    r = group_of(r); /* choices share their head's stream */
    pthread_mutex_lock(&r->mu);
    bool full = r->out_len - r->out_pos > s->p.max_buffered;
    pthread_mutex_unlock(&r->mu);
    return full;
}

/* Decode entries first (one token per running sequence), then prompt chunks
 * in admission order within the token budget. */
static uint32_t build_batch(srv_sched *s, uint32_t *n_rows)
{
    uint32_t n = 0, budget = s->p.max_batch_tokens;
    *n_rows = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t i = 0; i < s->n_running && n < budget; i++) {
            srv_req *r = s->running[i];
            uint32_t left = r->n_tokens - r->n_computed;
            bool decode = left == 1;
            if ((pass == 0) != decode || left == 0)
                continue;
            if (decode && paused(s, r))
                continue;
            uint32_t take = left < budget - n ? left : budget - n;
            for (uint32_t k = 0; k < take; k++) {
                uint32_t pos = r->n_computed + k;
                bool last = pos + 1 == r->n_tokens;
                s->entries[n++] = (engine_entry){r->seq, r->tokens[pos], pos, last};
                if (last)
                    s->entry_req[(*n_rows)++] = r;
            }
        }
    }
    return n;
}

/* One engine step; false when there was nothing to run (e.g. every running
 * stream is paused behind a slow reader). */
static bool step(srv_sched *s)
{
    double t0 = now_s();
    bool ran = false;
    take_incoming(s);
    admit(s, t0);
    for (;;) {
        uint32_t n_rows, n = build_batch(s, &n_rows);
        if (n == 0)
            break;
        ran = true;
        attnd_err err = {0};
        int rc = engine_step(s->eng, s->entries, n, s->logits, &err);
        if (rc == ATTND_ERANGE && s->n_running > 1) {
            /* Out of KV blocks: preempt the most recently admitted and retry. */
            srv_req *victim = s->running[0];
            for (uint32_t i = 1; i < s->n_running; i++)
                if (s->running[i]->admit_order > victim->admit_order)
                    victim = s->running[i];
            preempt(s, victim);
            continue;
        }
        if (rc == ATTND_ERANGE) {
            /* A lone sequence filled the whole pool: that is its context. */
            finish(s, s->running[0], SRV_FINISH_LENGTH, NULL);
            break;
        }
        if (rc != ATTND_OK) {
            fprintf(stderr, "attnd: engine step failed: %s; ending the %u running requests\n",
                    err.msg, s->n_running);
            for (uint32_t i = s->n_running; i-- > 0;)
                finish(s, s->running[i], SRV_FINISH_ERROR, "engine step failed: %s", err.msg);
            break;
        }
        double t1 = now_s();
        srv_metrics_observe(s->metrics, SRV_HIST_STEP, t1 - t0);
        /* Advance every sequence in the batch, then sample the rows. */
        for (uint32_t i = 0; i < n; i++) {
            for (uint32_t k = 0; k < s->n_running; k++)
                if (s->running[k]->seq == s->entries[i].seq && s->running[k]->running) {
                    s->running[k]->n_computed = s->entries[i].pos + 1;
                    break;
                }
        }
        /* Full blocks just computed become reusable by later prompts: the
         * prompt's and, for the next turn of a chat, the answer's. */
        for (uint32_t k = 0; k < s->n_running; k++)
            engine_seq_publish(s->eng, s->running[k]->seq, s->running[k]->tokens,
                               s->running[k]->n_computed);
        for (uint32_t row = 0; row < n_rows; row++)
            on_token(s, s->entry_req[row], s->logits + (size_t)row * s->hp->n_vocab, t1);
        break;
    }
    publish_gauges(s);
    return ran;
}

/* ---------------------------------------------------------------- loop callbacks */

static bool has_work(srv_sched *s)
{
    pthread_mutex_lock(&s->qmu);
    bool incoming = s->in_head != NULL;
    pthread_mutex_unlock(&s->qmu);
    return incoming || s->wait_head || s->n_running;
}

static void close_all(srv_sched *s)
{
    if (!s->handles_open) /* the loop thread is its only writer */
        return;
    pthread_mutex_lock(&s->qmu);
    s->handles_open = false; /* HTTP threads may still cancel: they must not send */
    pthread_mutex_unlock(&s->qmu);
    uv_idle_stop(&s->idle);
    uv_close((uv_handle_t *)&s->wake, NULL);
    uv_close((uv_handle_t *)&s->idle, NULL);
    uv_close((uv_handle_t *)&s->tick, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
}

static void on_idle(uv_idle_t *h)
{
    srv_sched *s = h->data;
    /* Without progress, stop spinning: the tick looks again in 100 ms. */
    if (!step(s) || !has_work(s)) {
        uv_idle_stop(&s->idle);
        s->idle_on = false;
    }
}

static void on_wake(uv_async_t *h)
{
    srv_sched *s = h->data;
    if (!s->idle_on && has_work(s)) {
        uv_idle_start(&s->idle, on_idle);
        s->idle_on = true;
    }
    /* cancellations of waiting requests are handled in the next step */
    if (!s->idle_on) {
        take_incoming(s);
        admit(s, now_s());
        publish_gauges(s);
    }
}

static void on_tick(uv_timer_t *h)
{
    srv_sched *s = h->data;
    double t = now_s();
    pthread_mutex_lock(&s->qmu);
    bool drain = s->draining;
    double deadline = s->drain_deadline;
    pthread_mutex_unlock(&s->qmu);
    take_incoming(s);
    find_hangups(s);
    if (drain && t >= deadline) {
        /* Drain timeout: whatever still runs or waits is cut off. */
        while (s->n_running || s->wait_head) {
            srv_req *r = s->n_running ? s->running[s->n_running - 1]
                                      : wait_unlink(s, &s->wait_head, NULL);
            finish(s, r, SRV_FINISH_ERROR, "the server shut down: drain_timeout_s (%u s) ran out",
                   s->p.drain_timeout_s);
            s->drain_cut++;
        }
    } else if (!s->idle_on) {
        admit(s, t); /* deadlines, cancellations and hang-ups of parked requests */
        if (has_work(s)) {
            uv_idle_start(&s->idle, on_idle);
            s->idle_on = true;
        }
    }
    publish_gauges(s);
    if (drain && !has_work(s)) {
        pthread_mutex_lock(&s->qmu);
        uint32_t held = s->drain_held;
        pthread_mutex_unlock(&s->qmu);
        /* Nothing is admitted once draining: what it held either finished or was cut. */
        fprintf(stderr,
                "attnd: drain complete: %u requests were in flight, %u finished, %u cut off at the "
                "drain timeout\n",
                held, held - s->drain_cut, s->drain_cut);
        close_all(s);
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    srv_sched *s = h->data;
    srv_sched_request_drain(s);
    pthread_mutex_lock(&s->qmu);
    uint32_t held = s->drain_held;
    pthread_mutex_unlock(&s->qmu);
    fprintf(stderr,
            "attnd: %s: draining %u requests in flight (%u running, %u waiting), up to %u s\n",
            signum == SIGTERM ? "SIGTERM" : "SIGINT", held, s->n_running,
            held > s->n_running ? held - s->n_running : 0, s->p.drain_timeout_s);
}

/* ---------------------------------------------------------------- public */

int srv_sched_new(uv_loop_t *loop, engine *e, const model *m, srv_metrics *metrics,
                  const srv_sched_params *p, srv_sched **out, attnd_err *err)
{
    *out = NULL;
    if (p->max_seqs == 0 || p->max_batch_tokens < p->max_seqs || !p->wake)
        return attnd_err_set(err, ATTND_EINVAL,
                             "scheduler: max_seqs (%u) must be at least 1 and at most "
                             "max_batch_tokens (%u), and a wake callback is needed",
                             p->max_seqs, p->max_batch_tokens);
    srv_sched *s = calloc(1, sizeof *s);
    if (!s)
        return attnd_err_set(err, ATTND_ENOMEM, "scheduler: out of memory");
    pthread_mutex_init(&s->qmu, NULL);
    s->loop = loop;
    s->eng = e;
    s->m = m;
    s->hp = model_hparams_of(m);
    s->vocab = model_vocab(m);
    s->metrics = metrics;
    s->p = *p;
    s->running = calloc(p->max_seqs, sizeof *s->running);
    s->entries = calloc(p->max_batch_tokens, sizeof *s->entries);
    s->entry_req = calloc(p->max_batch_tokens, sizeof *s->entry_req);
    s->logits = malloc((size_t)p->max_seqs * s->hp->n_vocab * sizeof(float));
    if (!s->running || !s->entries || !s->entry_req || !s->logits) {
        srv_sched_free(s);
        return attnd_err_set(err, ATTND_ENOMEM, "scheduler: out of memory");
    }
    /* Each handle is closed again if a later one fails, and the loop is run
     * once so that libuv lets go of them before the memory goes. */
    uv_handle_t *made[5];
    int n_made = 0;
    int rc = uv_async_init(loop, &s->wake, on_wake);
    if (rc == 0)
        made[n_made++] = (uv_handle_t *)&s->wake;
    if (rc == 0 && (rc = uv_idle_init(loop, &s->idle)) == 0)
        made[n_made++] = (uv_handle_t *)&s->idle;
    if (rc == 0 && (rc = uv_timer_init(loop, &s->tick)) == 0)
        made[n_made++] = (uv_handle_t *)&s->tick;
    if (rc == 0 && (rc = uv_signal_init(loop, &s->sigterm)) == 0)
        made[n_made++] = (uv_handle_t *)&s->sigterm;
    if (rc == 0 && (rc = uv_signal_init(loop, &s->sigint)) == 0)
        made[n_made++] = (uv_handle_t *)&s->sigint;
    if (rc == 0) {
        s->wake.data = s->idle.data = s->tick.data = s->sigterm.data = s->sigint.data = s;
        if ((rc = uv_timer_start(&s->tick, on_tick, 100, 100)) == 0 &&
            (rc = uv_signal_start(&s->sigterm, on_signal, SIGTERM)) == 0)
            rc = uv_signal_start(&s->sigint, on_signal, SIGINT);
    }
    if (rc != 0) {
        for (int i = 0; i < n_made; i++)
            uv_close(made[i], NULL);
        uv_run(loop, UV_RUN_NOWAIT);
        srv_sched_free(s);
        return attnd_err_set(err, ATTND_EIO, "scheduler: event loop: %s", uv_strerror(rc));
    }
    s->handles_open = true; /* not shared yet: no lock needed */
    *out = s;
    return ATTND_OK;
}

void srv_sched_close(srv_sched *s)
{
    if (s)
        close_all(s);
}

void srv_sched_free(srv_sched *s)
{
    if (!s)
        return;
    pthread_mutex_destroy(&s->qmu);
    free(s->running);
    free(s->entries);
    free(s->entry_req);
    free(s->logits);
    free(s);
}

int srv_sched_submit(srv_sched *s, srv_req *r)
{
    pthread_mutex_lock(&s->qmu);
    if (s->draining || !s->handles_open) {
        pthread_mutex_unlock(&s->qmu);
        return ATTND_EUNSUPPORTED;
    }
    if ((uint64_t)s->n_held >= (uint64_t)s->p.max_seqs + s->p.queue_limit) {
        pthread_mutex_unlock(&s->qmu);
        return ATTND_ERANGE;
    }
    srv_req_retain(r);
    r->next = NULL;
    if (s->in_tail)
        s->in_tail->next = r;
    else
        s->in_head = r;
    s->in_tail = r;
    s->n_queued++;
    s->n_held++;
    uv_async_send(&s->wake); /* not draining, so the handle is open */
    pthread_mutex_unlock(&s->qmu);
    return ATTND_OK;
}

static void send_wake(srv_sched *s)
{
    pthread_mutex_lock(&s->qmu);
    if (s->handles_open)
        uv_async_send(&s->wake);
    pthread_mutex_unlock(&s->qmu);
}

void srv_sched_cancel(srv_sched *s, srv_req *r)
{
    atomic_store(&r->cancelled, true);
    send_wake(s);
}

bool srv_sched_draining(srv_sched *s)
{
    pthread_mutex_lock(&s->qmu);
    bool d = s->draining;
    pthread_mutex_unlock(&s->qmu);
    return d;
}

void srv_sched_request_drain(srv_sched *s)
{
    pthread_mutex_lock(&s->qmu);
    if (!s->draining) {
        s->draining = true;
        s->drain_deadline = now_s() + s->p.drain_timeout_s;
        s->drain_held = s->n_held;
    }
    pthread_mutex_unlock(&s->qmu);
    send_wake(s);
}

uint64_t srv_sched_kv_token_capacity(const srv_sched *s)
{
    return kv_pool_n_tokens(engine_kv(s->eng));
}
