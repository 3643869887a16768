/* srv_http.h - the HTTP front end (libmicrohttpd).
 *
 * Runs on libmicrohttpd's own threads. It parses and validates requests,
 * answers the cheap endpoints itself, tokenizes prompts (the tokenizer is
 * immutable and thread-safe) and hands /generate requests to the scheduler.
 * It never waits for the model: a connection waiting for output is suspended
 * and the scheduler's wake callback (srv_http_wake) resumes it. */
#ifndef ATTND_SRV_HTTP_H
#define ATTND_SRV_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attnd_err.h"
#include "cfg.h"
#include "model.h"
#include "srv_metrics.h"
#include "srv_sched.h"

typedef struct srv_http srv_http;

typedef struct srv_http_ctx {
    const cfg *c;
    const model *m;
    srv_sched *sched;
    srv_metrics *metrics;
} srv_http_ctx;

int srv_http_start(const srv_http_ctx *ctx, srv_http **out, attnd_err *err);
/* Closes every connection and frees. Call when no request is suspended. */
void srv_http_stop(srv_http *h);
/* /generate requests whose connection has not finished yet. */
size_t srv_http_live(srv_http *h);

/* The scheduler's wake callback: resumes R's suspended connection. */
void srv_http_wake(void *ctx, srv_req *r);
/* The scheduler's hang-up check (srv_gone_fn): whether the client of R's
 * suspended connection closed or reset it. */
bool srv_http_client_gone(void *ctx, const srv_req *r);

#endif
