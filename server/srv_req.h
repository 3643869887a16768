/* srv_req.h - a /generate request as the two threads that share it see it.
 *
 * Ownership: the HTTP side creates it and hands it to the scheduler through
 * the submit queue; from then on both hold a reference (refs = 2) and it is
 * freed when both have let go (srv_req_release). The fields are split by who
 * may touch them:
 *   - set before submission, read-only afterwards: the parsed request, the
 *     prompt tokens, stream/SSE flags, the connection and its socket;
 *   - scheduler only: the generation state (seq, tokens, sampler, ...);
 *   - shared, under `mu`: the output buffer, done/finish/error/usage/timings,
 *     and `suspended` (whether the HTTP side parked its connection waiting
 *     for output: whoever produces output resumes it; while it is set the
 *     connection cannot close, so the scheduler may look at its socket);
 *   - `cancelled`: atomic, set by the HTTP side (client gone) or the
 *     scheduler's hang-up check, acted on by the scheduler at step
 *     boundaries. Deadlines are the scheduler's own (finish "timeout"). */
#ifndef ATTND_SRV_REQ_H
#define ATTND_SRV_REQ_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "model.h"
#include "sample.h"
#include "srv_api.h"
#include "srv_attention.h"
#include "engine.h"
#include "srv_logprob.h"
#include "tok.h"

struct MHD_Connection;
typedef struct srv_stop srv_stop;

typedef enum srv_finish {
    SRV_FINISH_NONE = 0,
    SRV_FINISH_LENGTH,    /* max_tokens or the context length reached */
    SRV_FINISH_STOP,      /* a stop string */
    SRV_FINISH_EOS,       /* the end-of-sequence token */
    SRV_FINISH_CANCELLED, /* the client went away (nobody reads the answer) */
    SRV_FINISH_TIMEOUT,   /* request_timeout_s passed, running or waiting */
    SRV_FINISH_ERROR,     /* the server failed it (engine, memory, drain cut-off); see error */
} srv_finish;

const char *srv_finish_name(srv_finish f);

typedef enum srv_api {
    SRV_API_GENERATE = 0, /* POST /generate */
    SRV_API_CHAT,         /* POST /v1/chat/completions */
    SRV_API_COMPLETION,   /* POST /v1/completions */
    SRV_API_ATTENTION,    /* POST /v1/attention (srv_attention.h) */
} srv_api;

typedef struct srv_req srv_req;
struct srv_req {
    /* --- immutable after submission */
    srv_gen_req in;
    int32_t *prompt_ids;
    uint32_t n_prompt;
    bool sse;                     /* stream as text/event-stream */
    srv_api api;                  /* which schema answers: /generate's or OpenAI's */
    bool include_usage;           /* OpenAI stream: a usage chunk before [DONE] */
    char oai_id[48];              /* OpenAI: "chatcmpl-..." / "cmpl-..." */
    long long oai_created;        /* OpenAI: unix seconds */
    const char *oai_model;        /* OpenAI: the model's name (owned by the server) */
    /* OpenAI's n: the request (the "head", which has the connection) holds
     * a reference to each further choice, prepared like it (its own sampler
     * seed, decoder, stop matcher); they are not submitted but forked by the
     * scheduler from the head's sequence when its prompt is computed, so all
     * share the prompt's KV blocks. A choice streams into its head's buffer
     * and keeps a non-streamed text in its own. */
    uint32_t index;               /* choice index: 0 for the head */
    srv_req *head;                /* a further choice: its head (not a reference) */
    srv_req *choices[SRV_MAX_CHOICES]; /* head: choices[1..n_choices) */
    uint32_t n_choices;           /* head: 1 + further choices */
    /* /v1/attention: the rows the engine writes while the sequence runs
     * (tap.out, n_layers x n_heads x n_rows x n_rows floats, owned here) and
     * how many generated tokens the answer reports (in.max_tokens is one
     * more, so that each reported token's row is computed). */
    engine_tap tap;
    srv_attn_opts attn;
    struct MHD_Connection *conn;
    int fd;                       /* the connection's socket, -1: none */
    double t_submit;              /* seconds, monotonic */

    /* --- shared */
    atomic_int refs;
    atomic_bool cancelled;
    pthread_mutex_t mu;
    char *out;                    /* stream: formatted lines; else: the text */
    size_t out_len, out_cap, out_pos; /* out_pos: bytes the HTTP side has sent */
    bool suspended;
    bool done;
    srv_finish finish;
    char error[256];              /* why, when finish is SRV_FINISH_ERROR */
    uint32_t n_generated;
    uint32_t n_cached;            /* prompt tokens the prefix cache supplied */
    double queue_ms, prefill_ms, decode_ms;
    srv_logprob *lp;              /* in.logprobs: one per generated token */
    size_t n_lp, cap_lp;
    size_t lp_sent;               /* scheduler: records already in stream chunks */
    size_t lp_text_off;           /* scheduler: bytes of their tokens (completion offsets) */

    /* --- scheduler only */
    srv_req *next;                /* in whichever queue holds it */
    int32_t *tokens;              /* prompt + generated (recomputed after preemption) */
    uint32_t n_tokens, cap_tokens;
    uint32_t n_computed;          /* tokens whose KV is in the cache */
    uint32_t seq;
    bool running;
    uint64_t admit_order;
    sampler *smp;
    tok_stream *ts;
    srv_stop *stop;
    double t_admit, t_first, t_last_token;
    bool have_first;
    bool chat_role_sent;          /* chat stream: the first chunk (with the role) went out */
    bool echo_sent;               /* completion with echo: the prompt went out */
    bool forked;                  /* head: its choices were forked from it */
    uint32_t n_open;              /* head, once forked: choices not finished yet */
};

/* Allocates with refs = 1 (the HTTP side); the scheduler takes its own on
 * submission. */
srv_req *srv_req_new(void);
/* After R->in is parsed: tokenizes the prompt (with the special tokens the
 * model adds) and makes everything the scheduler will need, off the loop
 * thread: the token array sized to the context, the streaming decoder, the
 * stop matcher and the sampler (which has seen the prompt). KV_TOKENS is the
 * most tokens one request can hold in the KV pool. ATTND_EINVAL: the prompt
 * is empty or does not fit with one generated token (a 400, message says
 * why); other codes are the server's fault. */
int srv_req_prepare(srv_req *r, const model *m, uint64_t kv_tokens, attnd_err *err);
void srv_req_retain(srv_req *r);
/* Drops a reference; frees at zero. */
void srv_req_release(srv_req *r);

/* Adds "finish_reason", "usage", "timings" and, for an error, "error" (the
 * message) to the cJSON object O (a cJSON *; the caller holds r->mu or is
 * the scheduler, their only writer). ATTND_ENOMEM: O is incomplete. */
int srv_req_add_result(const srv_req *r, void *o);

/* Appends to the output buffer (caller holds r->mu). ATTND_ENOMEM: nothing
 * was appended. */
int srv_req_append(srv_req *r, const char *p, size_t n);
/* Appends one log-probability record (caller holds r->mu). */
int srv_req_push_logprob(srv_req *r, const srv_logprob *lp);

#endif
