/* srv_metrics.c - counters, gauges and histograms behind /metrics. */
#include "srv_metrics.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SERIES 64
#define N_BUCKETS 14

/* Latency buckets in seconds, 1 ms to 60 s. */
static const double k_buckets[N_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                            0.25,  0.5,    1.0,   2.5,  5.0,   10.0, 60.0};

static const struct {
    const char *name;
    const char *help;
} k_hists[SRV_HIST_COUNT_] = {
    [SRV_HIST_TTFT] = {"attnd_time_to_first_token_seconds", "Time from request arrival to its first generated token."},
    [SRV_HIST_ITL] = {"attnd_inter_token_latency_seconds", "Time between consecutive generated tokens of one request."},
    [SRV_HIST_STEP] = {"attnd_engine_step_seconds", "Duration of one batched engine step."},
};

struct hist {
    uint64_t buckets[N_BUCKETS];
    uint64_t count;
    double sum;
};

struct srv_metrics {
    pthread_mutex_t mu;
    struct {
        const char *endpoint;
        unsigned status;
        uint64_t count;
    } series[MAX_SERIES];
    size_t n_series;
    struct hist hists[SRV_HIST_COUNT_];
    struct {
        const char *reason;
        uint64_t count;
    } finished[8];
    size_t n_finished;
    uint64_t prompt_tokens, generated_tokens, preemptions;
    uint64_t prefix_tokens, prefix_hits;
    uint32_t queue_depth, running, kv_used, kv_total, kv_cached;
};

srv_metrics *srv_metrics_new(void)
{
    srv_metrics *m = calloc(1, sizeof *m);
    if (m)
        pthread_mutex_init(&m->mu, NULL);
    return m;
}

void srv_metrics_free(srv_metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void srv_metrics_request(srv_metrics *m, const char *endpoint, unsigned status)
{
    pthread_mutex_lock(&m->mu);
    size_t i = 0;
    while (i < m->n_series &&
           !(m->series[i].status == status && strcmp(m->series[i].endpoint, endpoint) == 0))
        i++;
    if (i == m->n_series && i < MAX_SERIES) {
        m->series[i].endpoint = endpoint;
        m->series[i].status = status;
        m->series[i].count = 0;
        m->n_series++;
    }
    if (i < m->n_series)
        m->series[i].count++;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_observe(srv_metrics *m, srv_hist h, double s)
{
    pthread_mutex_lock(&m->mu);
    struct hist *x = &m->hists[h];
    for (int b = 0; b < N_BUCKETS; b++)
        if (s <= k_buckets[b])
            x->buckets[b]++;
    x->count++;
    x->sum += s;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_tokens(srv_metrics *m, uint64_t prompt, uint64_t generated)
{
    pthread_mutex_lock(&m->mu);
    m->prompt_tokens += prompt;
    m->generated_tokens += generated;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_preemption(srv_metrics *m)
{
    pthread_mutex_lock(&m->mu);
    m->preemptions++;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_finish(srv_metrics *m, const char *reason)
{
    pthread_mutex_lock(&m->mu);
    size_t i = 0;
    while (i < m->n_finished && strcmp(m->finished[i].reason, reason) != 0)
        i++;
    if (i == m->n_finished && i < sizeof m->finished / sizeof m->finished[0]) {
        m->finished[i].reason = reason;
        m->finished[i].count = 0;
        m->n_finished++;
    }
    if (i < m->n_finished)
        m->finished[i].count++;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_gauges(srv_metrics *m, uint32_t queue_depth, uint32_t running, uint32_t kv_used,
                        uint32_t kv_total, uint32_t kv_cached)
{
    pthread_mutex_lock(&m->mu);
    m->queue_depth = queue_depth;
    m->running = running;
    m->kv_used = kv_used;
    m->kv_total = kv_total;
    m->kv_cached = kv_cached;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_prefix(srv_metrics *m, uint64_t tokens, uint64_t hit)
{
    pthread_mutex_lock(&m->mu);
    m->prefix_tokens += tokens;
    m->prefix_hits += hit;
    pthread_mutex_unlock(&m->mu);
}

struct out {
    char *p;
    size_t len, cap;
    bool failed; /* out of memory: the text would be incomplete */
};

__attribute__((format(printf, 2, 3))) static void put(struct out *o, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->p ? o->p + o->len : NULL, o->p ? o->cap - o->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0 || o->failed) {
            o->failed = true;
            return;
        }
        if (o->p && (size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = (o->cap + (size_t)n + 1) * 2;
        char *t = realloc(o->p, cap);
        if (!t) {
            o->failed = true;
            return;
        }
        o->p = t;
        o->cap = cap;
    }
}

static void gauge(struct out *o, const char *name, const char *help, uint64_t v, const char *type)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
        (unsigned long long)v);
}

char *srv_metrics_render(srv_metrics *m, size_t *len)
{
    struct out o = {0};
    pthread_mutex_lock(&m->mu);
    put(&o, "# HELP attnd_requests_total HTTP requests by endpoint and status.\n"
            "# TYPE attnd_requests_total counter\n");
    for (size_t i = 0; i < m->n_series; i++)
        put(&o, "attnd_requests_total{endpoint=\"%s\",status=\"%u\"} %llu\n", m->series[i].endpoint,
            m->series[i].status, (unsigned long long)m->series[i].count);
    put(&o, "# HELP attnd_finished_requests_total Generations ended, by finish reason.\n"
            "# TYPE attnd_finished_requests_total counter\n");
    for (size_t i = 0; i < m->n_finished; i++)
        put(&o, "attnd_finished_requests_total{reason=\"%s\"} %llu\n", m->finished[i].reason,
            (unsigned long long)m->finished[i].count);
    gauge(&o, "attnd_queue_depth", "Requests waiting for admission.", m->queue_depth, "gauge");
    gauge(&o, "attnd_running_sequences", "Sequences in the running batch.", m->running, "gauge");
    gauge(&o, "attnd_preemptions_total", "Sequences preempted because the KV cache ran out.",
          m->preemptions, "counter");
    gauge(&o, "attnd_kv_blocks_used", "KV cache blocks in use.", m->kv_used, "gauge");
    gauge(&o, "attnd_kv_blocks_total", "KV cache blocks in the pool.", m->kv_total, "gauge");
    gauge(&o, "attnd_kv_blocks_cached",
          "KV cache blocks holding a cached prompt prefix, in use or reusable.", m->kv_cached,
          "gauge");
    gauge(&o, "attnd_prefix_cache_lookup_tokens_total",
          "Tokens of admitted prompts looked up in the prefix cache.", m->prefix_tokens,
          "counter");
    gauge(&o, "attnd_prefix_cache_hit_tokens_total",
          "Prompt tokens whose KV came from the prefix cache instead of being computed.",
          m->prefix_hits, "counter");
    put(&o, "# HELP attnd_prefix_cache_hit_rate Share of looked-up prompt tokens found in the "
            "prefix cache, since start.\n# TYPE attnd_prefix_cache_hit_rate gauge\n"
            "attnd_prefix_cache_hit_rate %.6f\n",
        m->prefix_tokens ? (double)m->prefix_hits / (double)m->prefix_tokens : 0.0);
    gauge(&o, "attnd_prompt_tokens_total", "Prompt tokens processed.", m->prompt_tokens, "counter");
    gauge(&o, "attnd_generated_tokens_total", "Tokens generated.", m->generated_tokens, "counter");
    for (int h = 0; h < SRV_HIST_COUNT_; h++) {
        const struct hist *x = &m->hists[h];
        const char *n = k_hists[h].name;
        put(&o, "# HELP %s %s\n# TYPE %s histogram\n", n, k_hists[h].help, n);
        for (int b = 0; b < N_BUCKETS; b++)
            put(&o, "%s_bucket{le=\"%g\"} %llu\n", n, k_buckets[b], (unsigned long long)x->buckets[b]);
        put(&o, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", n,
            (unsigned long long)x->count, n, x->sum, n, (unsigned long long)x->count);
    }
    pthread_mutex_unlock(&m->mu);
    if (o.failed) {
        free(o.p);
        return NULL;
    }
    *len = o.len;
    return o.p;
}
