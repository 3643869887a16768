/* srv_sched.h - the scheduler: continuous (iteration-level) batching on the
 * libuv loop thread.
 *
 * The scheduler thread owns the engine, its KV pool, the sequences and the
 * running batch; nothing else touches them. Requests arrive through the
 * submit queue (one mutex) with a uv_async wake-up; each loop iteration with
 * work runs one engine step carrying every running sequence's next token plus
 * chunks of newly admitted prompts under a per-step token budget. Admission is
 * by free KV blocks; when the pool runs dry mid-decode the most recently
 * admitted sequence is preempted (blocks freed, request re-queued at the front
 * to be recomputed). Output goes into each request's buffer and the HTTP side
 * is woken through the wake callback. */
#ifndef ATTND_SRV_SCHED_H
#define ATTND_SRV_SCHED_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "attnd_err.h"
#include "engine.h"
#include "srv_metrics.h"
#include "srv_req.h"

typedef struct srv_sched srv_sched;

/* Called by the scheduler (loop thread) when request R was suspended waiting
 * for output and output (or the end) arrived: the HTTP side resumes it. */
typedef void (*srv_wake_fn)(void *ctx, srv_req *r);

typedef struct srv_sched_params {
    uint32_t max_seqs;
    uint32_t max_batch_tokens;
    uint32_t queue_limit;
    uint32_t request_timeout_s; /* 0: none */
    uint32_t drain_timeout_s;
    size_t max_buffered;        /* output bytes a slow reader may leave unread */
    srv_wake_fn wake;
    void *wake_ctx;
} srv_sched_params;

int srv_sched_new(uv_loop_t *loop, engine *e, const model *m, srv_metrics *metrics,
                  const srv_sched_params *p, srv_sched **out, attnd_err *err);
/* After uv_run has returned. */
void srv_sched_free(srv_sched *s);

/* --- any thread (HTTP side) */

/* Takes a reference to R and queues it. ATTND_ERANGE: the queue is full;
 * ATTND_EUNSUPPORTED: the server is draining. (Both: answer 503.) */
int srv_sched_submit(srv_sched *s, srv_req *r);
/* Marks R cancelled (client gone) and wakes the scheduler. */
void srv_sched_cancel(srv_sched *s, srv_req *r);
bool srv_sched_draining(srv_sched *s);
/* Starts draining from any thread (tests and signals). */
void srv_sched_request_drain(srv_sched *s);
/* The most tokens one request can hold in the KV pool. */
uint32_t srv_sched_kv_token_capacity(const srv_sched *s);

#endif
