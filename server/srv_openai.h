/* srv_openai.h - the OpenAI-compatible routes: request parsing for
 * POST /v1/chat/completions and /v1/completions and the JSON of their
 * answers and stream chunks.
 * Pure functions of their input (no sockets, no threads), like srv_api.h. */
#ifndef ATTND_SRV_OPENAI_H
#define ATTND_SRV_OPENAI_H

#include <stdbool.h>
#include <stddef.h>

#include "jinja.h"
#include "srv_api.h"
#include "srv_req.h"

/* The model's chat template, parsed once at start (NULL with WHY: the
 * model has none, or it does not parse), and the texts of its special
 * tokens. Owned by the server; read by the HTTP threads. */
typedef struct srv_chat_template {
    const jinja_tmpl *tmpl;
    const char *why;
    const char *bos, *eos;
} srv_chat_template;

/* A /v1/chat/completions body: messages (system/user/assistant/tool roles,
 * string or text-part content), the fields srv_parse_gen_fields parses,
 * stream_options.include_usage, n (1..SRV_MAX_CHOICES); tools are refused
 * by name. The
 * prompt is CT rendered on the messages with add_generation_prompt, to be
 * tokenized with special tokens and without an added BOS. ATTND_EINVAL (a
 * 400) names the field, or says why the template failed. */
int srv_parse_chat(const char *body, size_t len, const srv_limits *lim, uint64_t random_seed,
                   const srv_chat_template *ct, srv_gen_req *out, bool *include_usage,
                   attnd_err *err);

/* A /v1/completions body: prompt (a string, an array of one string, or an
 * array of token ids), echo, stream_options.include_usage and the shared
 * fields; the same refusals as the chat route. */
int srv_parse_completion(const char *body, size_t len, const srv_limits *lim,
                         uint64_t random_seed, srv_gen_req *out, bool *include_usage,
                         attnd_err *err);

/* "stop" or "length", as OpenAI names why a choice ended. */
const char *srv_openai_finish(srv_finish f);
/* LOGPROBS below: the choice's "logprobs" (taken over, freed in any case;
 * NULL: null), as srv_logprob.h writes them. */
/* One choice of a whole answer: its text, "logprobs" (taken over; NULL:
 * null) and why it ended. */
typedef struct srv_openai_choice {
    const char *text;
    size_t len;
    cJSON *logprobs;
    srv_finish finish;
} srv_openai_choice;
/* The chat.completion or text_completion object (by R's api) for the request
 * R with CHOICES[0, N) (index i), usage over all of R's choices; malloc'd.
 * Every logprobs is consumed. */
char *srv_openai_result(const srv_req *r, srv_openai_choice *choices, size_t n, size_t *out_len);
/* One SSE chunk (data: ...\n\n) of R's choice (index R->index): the
 * assistant role when ROLE, content TEXT when not NULL, FINISH as
 * finish_reason (NULL: null). malloc'd. */
char *srv_chat_chunk(const srv_req *r, bool role, const char *text, size_t len,
                     const char *finish, cJSON *logprobs, size_t *out_len);
/* One SSE chunk of a text_completion. */
char *srv_completion_chunk(const srv_req *r, const char *text, size_t len, const char *finish,
                           cJSON *logprobs, size_t *out_len);
/* The usage chunk that stream_options.include_usage asks for (no choices). */
char *srv_chat_usage_chunk(const srv_req *r, size_t *out_len);

#endif
