/* srv_sched.h - the scheduler: continuous (iteration-level) batching on the
 * libuv loop thread.
 *
 * The scheduler thread owns the engine, its KV pool, the sequences and the
 * running batch; nothing else touches them. Requests arrive through the
 * submit queue (one mutex) with a uv_async wake-up; each loop iteration with
 * work runs one engine step carrying every running sequence's next token plus
 * chunks of newly admitted prompts under a per-step token budget. Admission
 * first takes the longest cached prefix of the prompt (engine_seq_reuse, unless
 * the request says cache_prompt false), then needs free KV blocks for the rest;
 * after each step the full blocks computed are published for later prompts.
 * When the pool runs dry mid-decode the most recently admitted sequence is
 * preempted (its references dropped, request re-queued at the front to be
 * recomputed, through the cache where its blocks survived). Output goes into each request's buffer and the HTTP side
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
/* Called by the scheduler (loop thread, holding r->mu, only while R is
 * suspended and not done, so its connection is open): true when the client
 * hung up. A suspended connection notices nothing by itself. */
typedef bool (*srv_gone_fn)(void *ctx, const srv_req *r);

typedef struct srv_sched_params {
    uint32_t max_seqs;          /* sequences running at once, >= 1 */
    uint32_t max_batch_tokens;  /* entries per engine step, >= max_seqs */
    uint32_t queue_limit;       /* requests held beyond max_seqs before 503 (0: none wait) */
    uint32_t request_timeout_s; /* 0: none */
    uint32_t drain_timeout_s;
    size_t max_buffered;        /* stream bytes a slow reader may leave unread before
                                 * its generation pauses */
    srv_wake_fn wake;
    srv_gone_fn client_gone;    /* NULL: hang-ups are not looked for */
    void *wake_ctx;             /* for both callbacks */
} srv_sched_params;

/* Registers the scheduler's handles on LOOP (wake-up, step, 100 ms tick,
 * SIGTERM/SIGINT). On failure nothing is left registered. */
int srv_sched_new(uv_loop_t *loop, engine *e, const model *m, srv_metrics *metrics,
                  const srv_sched_params *p, srv_sched **out, attnd_err *err);
/* Loop thread: closes the handles if the drain has not already (start-up
 * failure); run the loop once more so libuv lets go of them, then free. */
void srv_sched_close(srv_sched *s);
/* After uv_run has returned with the handles closed (drain or srv_sched_close). */
void srv_sched_free(srv_sched *s);

/* --- any thread (HTTP side) */

/* Takes a reference to R and queues it. The scheduler holds at most
 * max_seqs + queue_limit requests (running, waiting, preempted): beyond,
 * ATTND_ERANGE; ATTND_EUNSUPPORTED: the server is draining. (Both: 503.) */
int srv_sched_submit(srv_sched *s, srv_req *r);
/* Marks R cancelled (client gone) and wakes the scheduler. */
void srv_sched_cancel(srv_sched *s, srv_req *r);
bool srv_sched_draining(srv_sched *s);
/* Starts draining from any thread (tests and signals): new requests are
 * refused, held ones run to their end or to drain_timeout_s, then the
 * handles close and uv_run returns. */
void srv_sched_request_drain(srv_sched *s);
/* The most tokens one request can hold in the KV pool (immutable). */
uint64_t srv_sched_kv_token_capacity(const srv_sched *s);

#endif
