/* srv_metrics.h - Prometheus metrics for /metrics.
 *
 * Written from both sides (HTTP threads count requests; the scheduler counts
 * tokens, preemptions, latencies and publishes its gauges), read by /metrics:
 * one mutex guards all of it, held only for a few additions at a time. */
#ifndef ATTND_SRV_METRICS_H
#define ATTND_SRV_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct srv_metrics srv_metrics;

typedef enum srv_hist {
    SRV_HIST_TTFT = 0,  /* time to first token, seconds */
    SRV_HIST_ITL,       /* inter-token latency, seconds */
    SRV_HIST_STEP,      /* engine step time, seconds */
    SRV_HIST_COUNT_
} srv_hist;

srv_metrics *srv_metrics_new(void);
void srv_metrics_free(srv_metrics *m);

/* One finished HTTP request: ENDPOINT is a fixed label ("generate", ...). */
void srv_metrics_request(srv_metrics *m, const char *endpoint, unsigned status);
void srv_metrics_observe(srv_metrics *m, srv_hist h, double seconds);
void srv_metrics_tokens(srv_metrics *m, uint64_t prompt, uint64_t generated);
void srv_metrics_preemption(srv_metrics *m);
/* One generation ended; REASON is a fixed finish-reason name ("length", ...). */
void srv_metrics_finish(srv_metrics *m, const char *reason);
/* Scheduler gauges, published after every step. KV_USED counts blocks
 * sequences hold; KV_CACHED those holding a cached prefix, in use or not. */
void srv_metrics_gauges(srv_metrics *m, uint32_t queue_depth, uint32_t running,
                        uint32_t kv_used, uint32_t kv_total, uint32_t kv_cached);
/* One admission: TOKENS looked up in the prefix cache, HIT of them reused. */
void srv_metrics_prefix(srv_metrics *m, uint64_t tokens, uint64_t hit);

/* The Prometheus text exposition (malloc'd); NULL when out of memory. */
char *srv_metrics_render(srv_metrics *m, size_t *len);

#endif
