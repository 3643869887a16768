/* srv_sched.c - continuous batching on the libuv loop (srv_sched.h).
 *
 * Loop handles: `wake` (uv_async) for submissions and cancellations, `idle`
 * (uv_idle, active only while there is work) runs one engine step per loop
 * iteration so wake-ups, timers and signals are served between steps, `tick`
 * (uv_timer) enforces request deadlines and the drain, `sigterm`/`sigint`
 * (uv_signal) start the drain. */
#include "srv_sched.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv.h"

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

    /* submit queue: the only state shared with HTTP threads (and `draining`) */
    pthread_mutex_t qmu;
    srv_req *in_head, *in_tail;
    uint32_t n_queued; /* submitted and not yet admitted */
    bool draining;

    /* loop-thread state */
    srv_req *wait_head, *wait_tail; /* FIFO; preempted requests go to the front */
    srv_req **running;
    uint32_t n_running;
    uint64_t admit_counter;
    double drain_deadline;
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

/* Appends under the request's lock and wakes the HTTP side if it waits. */
static void emit(srv_sched *s, srv_req *r, const char *p, size_t n, bool finish)
{
    pthread_mutex_lock(&r->mu);
    if (n)
        srv_req_append(r, p, n);
    if (finish)
        r->done = true;
    bool wake = r->suspended && (n > 0 || finish);
    if (wake)
        r->suspended = false;
    pthread_mutex_unlock(&r->mu);
    if (wake)
        s->p.wake(s->p.wake_ctx, r);
}

/* One streamed JSON object as an NDJSON line or an SSE event. */
static void emit_json(srv_sched *s, srv_req *r, cJSON *obj, bool finish)
{
    char *txt = cJSON_PrintUnformatted(obj);
    if (!txt) {
        emit(s, r, NULL, 0, finish);
        return;
    }
    size_t n = strlen(txt);
    char *line = malloc(n + 16);
    if (line) {
        size_t len;
        if (r->sse)
            len = (size_t)snprintf(line, n + 16, "data: %s\n\n", txt);
        else
            len = (size_t)snprintf(line, n + 16, "%s\n", txt);
        emit(s, r, line, len, finish);
        free(line);
    } else {
        emit(s, r, NULL, 0, finish);
    }
    free(txt);
}

static void emit_token(srv_sched *s, srv_req *r, int32_t token, const char *text, size_t len)
{
    if (!r->in.stream) {
        if (len)
            emit(s, r, text, len, false);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    if (token >= 0) /* text held back until the end has no token of its own */
        cJSON_AddNumberToObject(o, "token", token);
    /* text is whole UTF-8 (tok_stream and the stop matcher guarantee it) */
    char *t = malloc(len + 1);
    if (t) {
        memcpy(t, text, len);
        t[len] = '\0';
        cJSON_AddStringToObject(o, "text", t);
        free(t);
    }
    emit_json(s, r, o, false);
    cJSON_Delete(o);
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

/* Ends R: frees its sequence, flushes held-back text, publishes the result
 * and drops the scheduler's reference. */
static void finish(srv_sched *s, srv_req *r, srv_finish why)
{
    if (r->running) {
        engine_seq_close(s->eng, r->seq);
        r->running = false;
        running_remove(s, r);
    }
    double t = now_s();
    if (why != SRV_FINISH_CANCELLED && why != SRV_FINISH_STOP) {
        const char *p1 = NULL, *p2 = NULL;
        size_t n1 = 0, n2 = 0;
        if (r->ts)
            tok_stream_flush(r->ts, &p1, &n1);
        bool stopped = false;
        if (r->stop && n1) {
            const char *e;
            size_t en;
            srv_stop_feed(r->stop, p1, n1, &e, &en, &stopped);
            if (en)
                emit_token(s, r, -1, e, en);
            if (stopped)
                why = SRV_FINISH_STOP;
        }
        if (r->stop && !stopped) {
            srv_stop_flush(r->stop, &p2, &n2);
            if (n2)
                emit_token(s, r, -1, p2, n2);
        }
    }
    if (!r->have_first) {
        r->t_first = t;
        if (r->t_admit == 0)
            r->t_admit = t;
    }
    pthread_mutex_lock(&r->mu);
    r->finish = why;
    r->queue_ms = (r->t_admit - r->t_submit) * 1e3;
    r->prefill_ms = (r->t_first - r->t_admit) * 1e3;
    r->decode_ms = (t - r->t_first) * 1e3;
    pthread_mutex_unlock(&r->mu);
    srv_metrics_tokens(s->metrics, r->n_prompt, r->n_generated);

    if (r->in.stream) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "done", 1);
        srv_req_add_result(r, o); /* fields only this thread writes */
        emit_json(s, r, o, true);
        cJSON_Delete(o);
    } else {
        emit(s, r, NULL, 0, true);
    }
    srv_req_release(r);
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

static uint32_t blocks_for(const srv_sched *s, uint32_t tokens)
{
    uint32_t bs = kv_pool_block_size(engine_kv(s->eng));
    return (tokens + bs - 1) / bs;
}

/* Blocks running sequences will still take to finish their prefill. */
static uint32_t promised_blocks(const srv_sched *s)
{
    uint32_t sum = 0;
    for (uint32_t i = 0; i < s->n_running; i++) {
        const srv_req *r = s->running[i];
        uint32_t want = blocks_for(s, r->n_tokens + 1), have = blocks_for(s, r->n_computed);
        sum += want > have ? want - have : 0;
    }
    return sum;
}

/* Drops cancelled and expired requests, then admits from the queue head
 * while the pool has blocks for the prompt plus a reserve. */
static void admit(srv_sched *s, double t)
{
    for (uint32_t i = s->n_running; i-- > 0;) {
        srv_req *r = s->running[i];
        if (atomic_load(&r->cancelled))
            finish(s, r, SRV_FINISH_CANCELLED);
        else if (s->p.request_timeout_s && t - r->t_submit > s->p.request_timeout_s)
            finish(s, r, SRV_FINISH_LENGTH);
    }
    srv_req **pp = &s->wait_head, *prev = NULL;
    while (*pp) {
        srv_req *r = *pp;
        bool expired = s->p.request_timeout_s && t - r->t_submit > s->p.request_timeout_s;
        if (atomic_load(&r->cancelled) || expired) {
            *pp = r->next;
            if (s->wait_tail == r)
                s->wait_tail = prev;
            pthread_mutex_lock(&s->qmu);
            s->n_queued--;
            pthread_mutex_unlock(&s->qmu);
            finish(s, r, expired ? SRV_FINISH_LENGTH : SRV_FINISH_CANCELLED);
            continue;
        }
        prev = r;
        pp = &r->next;
    }

    const kv_pool *kv = engine_kv(s->eng);
    while (s->wait_head && s->n_running < s->p.max_seqs) {
        srv_req *r = s->wait_head;
        uint32_t free_blocks = kv_pool_n_free(kv), promised = promised_blocks(s);
        uint32_t need = blocks_for(s, r->n_tokens + 1);
        if (need > kv_pool_n_blocks(kv)) {
            /* Grew (prompt + output, recomputed after preemption) beyond what
             * the whole pool holds: it can never run again. */
            s->wait_head = r->next;
            if (!s->wait_head)
                s->wait_tail = NULL;
            if (r->t_admit == 0) {
                pthread_mutex_lock(&s->qmu);
                s->n_queued--;
                pthread_mutex_unlock(&s->qmu);
            }
            finish(s, r, SRV_FINISH_LENGTH);
            continue;
        }
        if (free_blocks < promised || free_blocks - promised < need)
            break;
        attnd_err err;
        if (engine_seq_open(s->eng, &r->seq, &err) != ATTND_OK)
            break;
        s->wait_head = r->next;
        if (!s->wait_head)
            s->wait_tail = NULL;
        r->next = NULL;
        r->running = true;
        r->admit_order = ++s->admit_counter;
        if (r->t_admit == 0) {
            r->t_admit = t;
            pthread_mutex_lock(&s->qmu);
            s->n_queued--;
            pthread_mutex_unlock(&s->qmu);
        }
        s->running[s->n_running++] = r;
    }
}

/* ---------------------------------------------------------------- one step */

/* Handles the token sampled for R; finishes R when it should stop. */
static void on_token(srv_sched *s, srv_req *r, const float *logits, double t)
{
    int32_t tok = sampler_sample(r->smp, logits);
    if (!r->have_first) {
        r->have_first = true;
        r->t_first = t;
        srv_metrics_observe(s->metrics, SRV_HIST_TTFT, t - r->t_submit);
    } else {
        srv_metrics_observe(s->metrics, SRV_HIST_ITL, t - r->t_last_token);
    }
    r->t_last_token = t;
    if (!r->in.ignore_eos && tok_is_eog(s->vocab, tok)) {
        finish(s, r, SRV_FINISH_EOS);
        return;
    }
    sampler_accept(r->smp, tok);
    r->tokens[r->n_tokens++] = tok;
    pthread_mutex_lock(&r->mu);
    r->n_generated++;
    pthread_mutex_unlock(&r->mu);

    const char *piece = NULL, *out = NULL;
    size_t piece_len = 0, out_len = 0;
    bool stopped = false;
    attnd_err err;
    tok_stream_push(r->ts, tok, &piece, &piece_len, &err);
    if (r->stop)
        srv_stop_feed(r->stop, piece, piece_len, &out, &out_len, &stopped);
    else
        out = piece, out_len = piece_len;
    emit_token(s, r, tok, out, out_len);
    if (stopped)
        finish(s, r, SRV_FINISH_STOP);
    else if (r->n_generated >= r->in.max_tokens || r->n_tokens >= s->hp->n_ctx)
        finish(s, r, SRV_FINISH_LENGTH);
}

static bool paused(const srv_sched *s, srv_req *r)
{
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
        attnd_err err;
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
        if (rc != ATTND_OK) {
            /* A lone sequence that no longer fits the pool, or a real error:
             * end what was in the batch rather than spin. */
            fprintf(stderr, "attnd: engine step failed: %s\n", err.msg);
            for (uint32_t i = s->n_running; i-- > 0;)
                finish(s, s->running[i], SRV_FINISH_LENGTH);
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
        for (uint32_t row = 0; row < n_rows; row++)
            on_token(s, s->entry_req[row], s->logits + (size_t)row * s->hp->n_vocab, t1);
        break;
    }
    const kv_pool *kv = engine_kv(s->eng);
    pthread_mutex_lock(&s->qmu);
    uint32_t queued = s->n_queued;
    pthread_mutex_unlock(&s->qmu);
    srv_metrics_gauges(s->metrics, queued, s->n_running, kv_pool_n_blocks(kv) - kv_pool_n_free(kv),
                       kv_pool_n_blocks(kv));
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
    }
}

static void on_tick(uv_timer_t *h)
{
    srv_sched *s = h->data;
    double t = now_s();
    pthread_mutex_lock(&s->qmu);
    bool draining = s->draining;
    double deadline = s->drain_deadline;
    pthread_mutex_unlock(&s->qmu);
    if (draining && t >= deadline) {
        /* Drain timeout: whatever still runs or waits is cut off. */
        take_incoming(s);
        for (uint32_t i = s->n_running; i-- > 0;)
            finish(s, s->running[i], SRV_FINISH_CANCELLED);
        while (s->wait_head) {
            srv_req *r = s->wait_head;
            s->wait_head = r->next;
            finish(s, r, SRV_FINISH_CANCELLED);
        }
        s->wait_tail = NULL;
    } else if (!s->idle_on) {
        take_incoming(s);
        admit(s, t); /* deadlines and cancellations of waiting requests */
        if (has_work(s)) {
            uv_idle_start(&s->idle, on_idle);
            s->idle_on = true;
        }
    }
    if (draining && !has_work(s))
        close_all(s);
}

static void on_signal(uv_signal_t *h, int signum)
{
    srv_sched *s = h->data;
    fprintf(stderr, "attnd: %s: draining (up to %u s for running requests)\n",
            signum == SIGTERM ? "SIGTERM" : "SIGINT", s->p.drain_timeout_s);
    srv_sched_request_drain(s);
}

/* ---------------------------------------------------------------- public */

int srv_sched_new(uv_loop_t *loop, engine *e, const model *m, srv_metrics *metrics,
                  const srv_sched_params *p, srv_sched **out, attnd_err *err)
{
    *out = NULL;
    srv_sched *s = calloc(1, sizeof *s);
    if (!s)
        return attnd_err_set(err, ATTND_ENOMEM, "scheduler: out of memory");
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
    pthread_mutex_init(&s->qmu, NULL);
    uv_async_init(loop, &s->wake, on_wake);
    uv_idle_init(loop, &s->idle);
    uv_timer_init(loop, &s->tick);
    uv_signal_init(loop, &s->sigterm);
    uv_signal_init(loop, &s->sigint);
    s->wake.data = s->idle.data = s->tick.data = s->sigterm.data = s->sigint.data = s;
    uv_timer_start(&s->tick, on_tick, 100, 100);
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    *out = s;
    return ATTND_OK;
}

void srv_sched_free(srv_sched *s)
{
    if (!s)
        return;
    if (s->loop)
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
    if (s->draining) {
        pthread_mutex_unlock(&s->qmu);
        return ATTND_EUNSUPPORTED;
    }
    if (s->n_queued >= s->p.queue_limit) {
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
    pthread_mutex_unlock(&s->qmu);
    uv_async_send(&s->wake);
    return ATTND_OK;
}

void srv_sched_cancel(srv_sched *s, srv_req *r)
{
    atomic_store(&r->cancelled, true);
    uv_async_send(&s->wake);
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
    }
    pthread_mutex_unlock(&s->qmu);
    uv_async_send(&s->wake);
}

uint32_t srv_sched_kv_token_capacity(const srv_sched *s)
{
    const kv_pool *kv = engine_kv(s->eng);
    return kv_pool_n_blocks(kv) * kv_pool_block_size(kv);
}
