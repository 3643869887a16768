/* srv_logprob.h - log-probabilities of generated tokens: computed from a
 * step's raw logits (log-softmax, so they match what `attnd logits` writes),
 * kept per request, and written in each API's shape. Computing belongs to
 * the scheduler thread; the records are read by the HTTP side once the
 * request is done (srv_req.h). */
#ifndef ATTND_SRV_LOGPROB_H
#define ATTND_SRV_LOGPROB_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "tok.h"

#define SRV_MAX_TOP_LOGPROBS 20

typedef struct srv_logprob {
    int32_t id;
    float logprob;
    uint32_t n_top; /* the most likely tokens, best first */
    int32_t top_id[SRV_MAX_TOP_LOGPROBS];
    float top_logprob[SRV_MAX_TOP_LOGPROBS];
} srv_logprob;

/* log softmax(LOGITS[0, N_VOCAB)) at TOKEN and at the TOP (<= 20) most
 * likely tokens (ties to the lower id), in double precision. */
void srv_logprob_compute(const float *logits, int32_t n_vocab, int32_t token, uint32_t top,
                         srv_logprob *out);

/* The text of token ID as JSON may carry it: its bytes, with what is not
 * valid UTF-8 (part of a character) as U+FFFD. malloc'd; NULL: no memory. */
char *srv_token_text(const tok_vocab *v, int32_t id);

/* LP[0, N) as JSON (NULL when out of memory), token texts from V:
 *   generate:   [{"id", "token", "logprob", "top_logprobs": [{"id", "token", "logprob"}]}]
 *   chat:       {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}
 *   completion: {"tokens", "token_logprobs", "top_logprobs": [{token: logprob}],
 *                "text_offset"} (offsets from OFFSET0 on) */
cJSON *srv_logprobs_generate(const srv_logprob *lp, size_t n, const tok_vocab *v);
cJSON *srv_logprobs_chat(const srv_logprob *lp, size_t n, const tok_vocab *v);
cJSON *srv_logprobs_completion(const srv_logprob *lp, size_t n, const tok_vocab *v,
                               size_t offset0);

#endif
