/* srv_req.c - reference counting and the output buffer of a request (srv_req.h). */
#include "srv_req.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hparams.h"
#include "srv_api.h"
#include "srv_stop.h"

const char *srv_finish_name(srv_finish f)
{
    switch (f) {
    case SRV_FINISH_LENGTH: return "length";
    case SRV_FINISH_STOP: return "stop";
    case SRV_FINISH_EOS: return "eos";
    case SRV_FINISH_CANCELLED: return "cancelled";
    case SRV_FINISH_TIMEOUT: return "timeout";
    case SRV_FINISH_ERROR: return "error";
    default: return "none";
    }
}

srv_req *srv_req_new(void)
{
    srv_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->fd = -1;
    atomic_init(&r->refs, 1);
    atomic_init(&r->cancelled, false);
    pthread_mutex_init(&r->mu, NULL);
    return r;
}

int srv_req_prepare(srv_req *r, const model *m, uint64_t kv_tokens, attnd_err *err)
{
    const model_hparams *hp = model_hparams_of(m);
    const tok_vocab *vocab = model_vocab(m);
    size_t n_ids = 0;
    unsigned flags = (r->in.add_special ? TOK_ADD_SPECIAL : 0u) |
                     (r->in.parse_special ? TOK_PARSE_SPECIAL : 0u);
    int rc;
    if (r->in.n_prompt_ids) { /* given as ids: checked, taken as they are */
        for (size_t i = 0; i < r->in.n_prompt_ids; i++)
            if (r->in.prompt_ids[i] < 0 || r->in.prompt_ids[i] >= (int32_t)hp->n_vocab)
                return attnd_err_set(err, ATTND_EINVAL,
                                     "prompt[%zu]: token %d is outside the vocabulary (%u)", i,
                                     r->in.prompt_ids[i], hp->n_vocab);
        r->prompt_ids = r->in.prompt_ids;
        n_ids = r->in.n_prompt_ids;
        r->in.prompt_ids = NULL; /* the request owns them now */
        r->in.n_prompt_ids = 0;
    } else if ((rc = tok_encode(vocab, r->in.prompt, r->in.prompt_len, flags, &r->prompt_ids,
                                &n_ids, err)) != ATTND_OK) {
        return rc == ATTND_EINVAL ? ATTND_EIO : rc; /* the prompt is valid UTF-8: our fault */
    }
    if (n_ids == 0 || n_ids + 1 > hp->n_ctx || n_ids + 1 > kv_tokens)
        return attnd_err_set(err, ATTND_EINVAL,
                             "prompt has %zu tokens; the context holds %u (and the KV pool %llu) "
                             "including at least one generated token",
                             n_ids, hp->n_ctx, (unsigned long long)kv_tokens);
    r->n_prompt = (uint32_t)n_ids;
    r->tokens = malloc(hp->n_ctx * sizeof *r->tokens);
    r->cap_tokens = hp->n_ctx;
    r->ts = tok_stream_new(vocab, false);
    if (r->in.n_stop)
        r->stop = srv_stop_new(r->in.stop, r->in.stop_len, r->in.n_stop);
    if (!r->tokens || !r->ts || (r->in.n_stop && !r->stop))
        return attnd_err_set(err, ATTND_ENOMEM, "out of memory preparing the request");
    const int32_t *eog;
    size_t n_eog = tok_eog_ids(vocab, &eog);
    rc = sampler_new(&r->in.sample, (int32_t)hp->n_vocab, eog, n_eog, &r->smp, err);
    if (rc != ATTND_OK)
        return rc; /* EINVAL names the sampling field */
    memcpy(r->tokens, r->prompt_ids, n_ids * sizeof *r->tokens);
    r->n_tokens = (uint32_t)n_ids;
    for (size_t i = 0; i < n_ids; i++)
        sampler_accept(r->smp, r->prompt_ids[i]);
    return ATTND_OK;
}

void srv_req_retain(srv_req *r)
{
    atomic_fetch_add(&r->refs, 1);
}

void srv_req_release(srv_req *r)
{
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    for (uint32_t i = 1; i < r->n_choices; i++)
        srv_req_release(r->choices[i]);
    srv_gen_req_free(&r->in);
    free(r->prompt_ids);
    free(r->tap.out);
    free(r->out);
    free(r->tokens);
    sampler_free(r->smp);
    free(r->lp);
    tok_stream_free(r->ts);
    srv_stop_free(r->stop);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

int srv_req_append(srv_req *r, const char *p, size_t n)
{
    if (r->out_cap - r->out_len < n) {
        size_t cap = r->out_cap ? r->out_cap : 1024;
        while (cap - r->out_len < n)
            cap *= 2;
        char *t = realloc(r->out, cap);
        if (!t)
            return ATTND_ENOMEM;
        r->out = t;
        r->out_cap = cap;
    }
    memcpy(r->out + r->out_len, p, n);
    r->out_len += n;
    return ATTND_OK;
}

int srv_req_push_logprob(srv_req *r, const srv_logprob *lp)
{
    if (r->n_lp == r->cap_lp) {
        size_t cap = r->cap_lp ? r->cap_lp * 2 : 64;
        srv_logprob *t = realloc(r->lp, cap * sizeof *t);
        if (!t)
            return ATTND_ENOMEM;
        r->lp = t;
        r->cap_lp = cap;
    }
    r->lp[r->n_lp++] = *lp;
    return ATTND_OK;
}

int srv_req_add_result(const srv_req *r, void *obj)
{
    cJSON *o = obj;
    cJSON *u, *t;
    bool ok = cJSON_AddStringToObject(o, "finish_reason", srv_finish_name(r->finish)) &&
              (r->finish != SRV_FINISH_ERROR || cJSON_AddStringToObject(o, "error", r->error)) &&
              (u = cJSON_AddObjectToObject(o, "usage")) &&
              cJSON_AddNumberToObject(u, "prompt_tokens", r->n_prompt) &&
              cJSON_AddNumberToObject(u, "completion_tokens", r->n_generated) &&
              cJSON_AddNumberToObject(u, "cached_tokens", r->n_cached) &&
              (t = cJSON_AddObjectToObject(o, "timings")) &&
              cJSON_AddNumberToObject(t, "queue_ms", round(r->queue_ms * 1000) / 1000) &&
              cJSON_AddNumberToObject(t, "prefill_ms", round(r->prefill_ms * 1000) / 1000) &&
              cJSON_AddNumberToObject(t, "decode_ms", round(r->decode_ms * 1000) / 1000);
    return ok ? ATTND_OK : ATTND_ENOMEM;
}
