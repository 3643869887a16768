/* srv_api.h - the HTTP API's request parsing and validation, and the JSON it
 * answers with. Pure functions of their input: no sockets, no threads, so
 * they can be tested and fuzzed on their own.
 *
 * Every parse function validates everything from the client and, on a bad
 * request, returns ATTND_EINVAL with a message naming the field (for a 400).
 * Unknown fields are ignored. */
#ifndef ATTND_SRV_API_H
#define ATTND_SRV_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "attnd_err.h"
#include "sample.h"

#define SRV_MAX_STOP 16          /* stop strings per request */
#define SRV_MAX_CHOICES 8        /* OpenAI's n: choices per request */
#define SRV_MAX_STOP_LEN 256     /* bytes per stop string */

typedef struct srv_limits {
    uint32_t default_max_tokens;
    uint32_t max_tokens_cap;
    bool zero_tokens_ok;  /* max_tokens 0 is allowed (/v1/attention: the prompt only) */
} srv_limits;

/* POST /generate. Owns its strings (free with srv_gen_req_free). */
typedef struct srv_gen_req {
    char *prompt;            /* NUL-terminated copy (may contain no NUL: rejected) */
    size_t prompt_len;
    uint32_t max_tokens;     /* 1..max_tokens_cap; default default_max_tokens */
    sample_params sample;    /* defaults from sample_params_default(); seed random if absent */
    bool seed_given;
    char *stop[SRV_MAX_STOP];
    size_t stop_len[SRV_MAX_STOP];
    size_t n_stop;
    bool ignore_eos;
    bool stream;
    bool parse_special; /* control tokens spelled in the prompt become their ids */
    bool cache_prompt;  /* reuse cached KV blocks of the prompt (llama.cpp's name; default true) */
    bool add_special;   /* BOS/EOS as the vocabulary says (not for a rendered chat) */
    int32_t *prompt_ids; /* a prompt given as token ids instead (prompt is then ""), */
    size_t n_prompt_ids; /* checked against the vocabulary when prepared */
    bool echo;          /* /v1/completions: the answer starts with the prompt */
    sample_bias *bias;  /* logit_bias (sample.bias points here) */
    size_t n_bias;
    uint32_t n_choices; /* OpenAI's n, 1..SRV_MAX_CHOICES (0 or 1: one) */
    bool logprobs;      /* each generated token's log-probability ... */
    uint32_t top_logprobs; /* ... and the 0..20 most likely tokens' */
} srv_gen_req;

/* Parses and validates a /generate body. Field rules: prompt string
 * (required, valid UTF-8); max_tokens integer 1..cap; temperature number >= 0;
 * top_k integer >= 0; top_p number in (0, 1]; min_p in [0, 1];
 * repeat_penalty > 0; seed integer 0..2^53-1; stop string or array of up to
 * SRV_MAX_STOP non-empty strings of at most SRV_MAX_STOP_LEN bytes;
 * ignore_eos, stream and parse_special (default false) booleans. A wrong type is an error naming the field
 * ("max_tokens must be an integer"). RANDOM_SEED is used when no seed is given. */
int srv_parse_generate(const char *body, size_t len, const srv_limits *lim,
                       uint64_t random_seed, srv_gen_req *out, attnd_err *err);
void srv_gen_req_free(srv_gen_req *r);
/* The same from OBJ, BODY already parsed (srv_parse_object), for routes that
 * read more fields of it; OUT must be zeroed, and is not freed on error. */
int srv_parse_generate_fields(const char *body, size_t len, const cJSON *obj,
                              const srv_limits *lim, uint64_t random_seed, srv_gen_req *out,
                              attnd_err *err);

/* "prompt": a string, an array of one string, or an array of token ids
 * (ids are range-checked later, against the model). */
int srv_parse_prompt(const cJSON *p, srv_gen_req *out, attnd_err *err);
/* BODY as a JSON object with nothing but whitespace after it (*OUT to be
 * freed with cJSON_Delete). */
int srv_parse_object(const char *body, size_t len, cJSON **out, attnd_err *err);
/* The fields /generate and the OpenAI routes share, from OBJ (parsed from
 * BODY): max_tokens (or max_completion_tokens), the sampling fields, seed,
 * stop, ignore_eos, stream, parse_special, cache_prompt (default true),
 * logprobs (a boolean, or as
 * /v1/completions has it the number of top tokens) and top_logprobs
 * (0..20). Everything but the prompt. */
int srv_parse_gen_fields(const char *body, size_t len, const cJSON *obj, const srv_limits *lim,
                         uint64_t random_seed, srv_gen_req *r, attnd_err *err);

/* POST /tokenize {"text": string, "add_special": bool (default false),
 * "parse_special": bool (default true, as llama.cpp's server)} -> malloc'd
 * copy in *TEXT and the flags for tok_encode (tok.h). */
int srv_parse_tokenize(const char *body, size_t len, char **text, size_t *text_len,
                       unsigned *tok_flags, attnd_err *err);
/* POST /detokenize {"tokens": [ints]} -> malloc'd ids, each in [0, n_vocab). */
int srv_parse_detokenize(const char *body, size_t len, int32_t n_vocab, int32_t **ids,
                         size_t *n, attnd_err *err);

/* {"error": {"type": TYPE, "message": MESSAGE}} as a malloc'd string. */
char *srv_error_json(const char *type, const char *message);

/* Generated text can hold NUL bytes (a byte-fallback token <0x00>), which
 * cJSON's C strings would cut short; these writers take lengths instead.
 * TEXT must be valid UTF-8 (the streaming decoder guarantees it). */

/* TEXT[0, LEN) as a JSON string literal, quotes included: '"', '\' and
 * control characters escaped (NUL as \u0000), everything else as is.
 * malloc'd and NUL-terminated, *OUT_LEN its length; NULL when out of memory. */
char *srv_json_string(const char *text, size_t len, size_t *out_len);
/* JSON[0, LEN) framed for a stream: an NDJSON line ("...\n") or, with SSE,
 * an event ("data: ...\n\n"). malloc'd; NULL when out of memory. */
char *srv_stream_frame(const char *json, size_t len, bool sse, size_t *out_len);
/* One streamed token: {"token":ID,"text":"..."} framed as above; without
 * "token" when ID < 0 (text held back until the end has no token of its
 * own). malloc'd; NULL when out of memory. */
char *srv_stream_token(int32_t id, const char *text, size_t len, bool sse, size_t *out_len);
/* The same with "logprobs": LOGPROBS (JSON text; NULL: none). */
char *srv_stream_token_lp(int32_t id, const char *text, size_t len, const char *logprobs, bool sse,
                          size_t *out_len);

#endif
