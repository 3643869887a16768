/* srv.c - wiring of the server (srv.h): model, engine, scheduler, HTTP, and
 * the shutdown order that lets in-flight responses reach their clients. */
#include "srv.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "engine.h"
#include "srv_http.h"
#include "srv_metrics.h"
#include "srv_sched.h"

int srv_run(const cfg *c, attnd_err *err)
{
    model *m = NULL;
    engine *e = NULL;
    srv_metrics *metrics = NULL;
    srv_sched *sched = NULL;
    srv_http *http = NULL;
    uv_loop_t loop;
    bool loop_ok = false;
    const int load = gguf_load_parse(c->weights);
    int rc = load < 0 ? attnd_err_set(err, ATTND_EINVAL, "weights: unknown mode '%s'", c->weights)
                      : model_load_as(c->model, (gguf_load)load, &m, err);
    if (rc != ATTND_OK)
        goto out;
    const model_hparams *hp = model_hparams_of(m);
    engine_params ep = {
        .n_threads = c->threads,
        .kv_bytes = c->kv_bytes,
        .kv_block_size = c->kv_block_size,
        .kv_type = strcmp(c->kv_type, "f32") == 0 ? KV_DTYPE_F32 : KV_DTYPE_F16,
        .max_entries = c->max_batch_tokens > c->max_seqs ? c->max_batch_tokens : c->max_seqs,
        .prefix_cache = strcmp(c->prefix_cache, "on") == 0,
    };
    if ((rc = engine_new(m, &ep, &e, err)) != ATTND_OK)
        goto out;
    const kv_pool *kv = engine_kv(e);
    uint64_t per_token = kv_pool_bytes_per_token(kv);
    fprintf(stderr,
            "attnd: model %s: %s, %u layers, %u heads, %u KV heads, context %u, vocab %u, %.1f MiB "
            "of weights (%s)\n",
            c->model, hp->arch_name, hp->n_layer, hp->n_head, hp->n_head_kv, hp->n_ctx, hp->n_vocab,
            (double)model_weight_bytes(m) / 1048576.0,
            load == GGUF_LOAD_COPY ? "copied into memory" : "mapped");
    if (tok_warning(model_vocab(m)))
        fprintf(stderr, "attnd: warning: %s\n", tok_warning(model_vocab(m)));
    fprintf(stderr,
            "attnd: KV cache: %llu bytes per token (%s; %ux less than MHA with %u heads), %u blocks "
            "of %u tokens = %llu tokens, %.1f MiB, prefix cache %s; %u engine threads\n",
            (unsigned long long)per_token, c->kv_type, hp->n_head / hp->n_head_kv, hp->n_head,
            kv_pool_n_blocks(kv), kv_pool_block_size(kv),
            (unsigned long long)kv_pool_n_tokens(kv),
            (double)kv_pool_n_blocks(kv) * (double)kv_pool_block_bytes(kv) / 1048576.0,
            c->prefix_cache, engine_n_threads(e));

    if (!(metrics = srv_metrics_new())) {
        rc = attnd_err_set(err, ATTND_ENOMEM, "out of memory");
        goto out;
    }
    if (uv_loop_init(&loop) != 0) {
        rc = attnd_err_set(err, ATTND_EIO, "cannot create the event loop");
        goto out;
    }
    loop_ok = true;
    srv_sched_params sp = {
        .max_seqs = c->max_seqs,
        .max_batch_tokens = ep.max_entries,
        .queue_limit = c->queue_limit,
        .request_timeout_s = c->request_timeout_s,
        .drain_timeout_s = c->drain_timeout_s,
        .max_buffered = c->stream_buffer_bytes,
        .wake = srv_http_wake,
        .client_gone = srv_http_client_gone,
        .wake_ctx = NULL,
    };
    if ((rc = srv_sched_new(&loop, e, m, metrics, &sp, &sched, err)) != ATTND_OK)
        goto out;
    /* A client vanishing mid-write must not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    srv_http_ctx hc = {.c = c, .m = m, .sched = sched, .metrics = metrics};
    if ((rc = srv_http_start(&hc, &http, err)) != ATTND_OK)
        goto out;
    fprintf(stderr, "attnd: listening on http://%s:%u\n", c->host, c->port);

    uv_run(&loop, UV_RUN_DEFAULT);

    /* Drained: every request is finished. Give their connections a moment to
     * send what is buffered before the daemon closes them. */
    for (int i = 0; i < 500 && srv_http_live(http) > 0; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "attnd: drained, exiting\n");
    rc = ATTND_OK;
out:
    srv_http_stop(http);
    /* On a start-up failure (port in use, ...) the scheduler's handles are
     * still registered, its signal handlers included: close them and let
     * the loop finish closing before anything is freed. */
    srv_sched_close(sched);
    if (loop_ok) {
        uv_run(&loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&loop) != 0)
            fprintf(stderr, "attnd: the event loop still had open handles at exit\n");
    }
    srv_sched_free(sched);
    srv_metrics_free(metrics);
    engine_free(e);
    model_free(m);
    return rc;
}
