/* sample.h - choosing the next token from logits.
 *
 * Order of the transforms (as llama.cpp's default chain): logit bias ->
 * repetition, presence and frequency penalties over the last N accepted
 * tokens -> greedy if temperature <= 0 -> top-k ->
 * top-p -> min-p (both on the temperature-1 probabilities of what is left)
 * -> temperature -> softmax -> draw with the request's own
 * seeded generator (same seed and inputs give the same tokens). With
 * ignore_eos, no end-of-generation token (EOS, EOT, <|im_end|>, ...) can be
 * drawn.
 *
 * A sampler belongs to one request and one thread at a time. */
#ifndef ATTND_SAMPLE_H
#define ATTND_SAMPLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attnd_err.h"

/* A logit bias: BIAS is added to token ID's logit before anything else. */
typedef struct sample_bias {
    int32_t id;
    float bias; /* [-100, 100]; -100 is as good as banning the token */
} sample_bias;

#define SAMPLE_MAX_BIAS 1024

typedef struct sample_params {
    float temperature;       /* >= 0; 0: greedy (argmax, ties to the lowest id) */
    int32_t top_k;           /* <= 0: off */
    float top_p;             /* (0, 1]; 1: off; else keep the smallest set with mass >= top_p */
    float min_p;             /* [0, 1]; 0: off; else drop tokens with p < min_p * p_max */
    float repeat_penalty;    /* > 0; 1: off; logit > 0 divided by it, else multiplied */
    uint32_t repeat_last_n;  /* how many recent tokens the penalties look at (<= 2^20) */
    /* OpenAI's: logit -= count * frequency_penalty + (count > 0) * presence_penalty,
     * count over the same recent tokens; [-2, 2]; 0: off */
    float presence_penalty;
    float frequency_penalty;
    const sample_bias *bias; /* copied by sampler_new; NULL: none */
    size_t n_bias;           /* <= SAMPLE_MAX_BIAS */
    uint64_t seed;
    bool ignore_eos;
} sample_params;

/* Defaults: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05,
 * repeat_penalty 1.0, repeat_last_n 64, seed 0, ignore_eos false. */
sample_params sample_params_default(void);

typedef struct sampler sampler;

#define SAMPLE_MAX_EOG 16

/* Validates P (message names the bad field) for a vocabulary of N_VOCAB whose
 * end-of-generation tokens are EOG[0, N_EOG) (copied; tok_eog_ids gives them). */
int sampler_new(const sample_params *p, int32_t n_vocab, const int32_t *eog, size_t n_eog,
                sampler **out, attnd_err *err);
void sampler_free(sampler *s);

/* Records a token (prompt or generated) in the penalty history. */
void sampler_accept(sampler *s, int32_t token);

/* Picks the next token from LOGITS[n_vocab] (not modified). */
int32_t sampler_sample(sampler *s, const float *logits);

/* The distribution sampler_sample would draw from, after every transform:
 * PROBS[n_vocab], zero for removed tokens, summing to 1 (greedy: one-hot).
 * For tests and for reporting probabilities. */
void sampler_probs(sampler *s, const float *logits, float *probs);

#endif
