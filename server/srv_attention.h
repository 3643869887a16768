/* srv_attention.h - POST /v1/attention and `attnd attention`: the request's
 * attention fields and the answer (tokens, each selected head's attention
 * probabilities, per-head summaries). Pure functions of their input, like
 * srv_api.h; the probabilities themselves come from the engine's tap
 * (engine.h), computed in the step that computes the output. */
#ifndef ATTND_SRV_ATTENTION_H
#define ATTND_SRV_ATTENTION_H

#include <stdbool.h>
#include <stdint.h>

#include "attnd_err.h"
#include "hparams.h"
#include "srv_api.h"
#include "tok.h"

#define SRV_ATTN_MAX 256 /* layers or heads one request may select */
#define SRV_ATTN_TOP_K_MAX 16

typedef struct srv_attn_opts {
    uint32_t layers[SRV_ATTN_MAX], n_layers; /* in the order asked; default all */
    uint32_t heads[SRV_ATTN_MAX], n_heads;   /* query heads; default all */
    bool f16;           /* format "f16": base64 rows; "json": numbers */
    uint32_t top_k;     /* attended positions listed per query (default 3) */
    uint32_t n_tokens;  /* tokens generated after the prompt (max_tokens, default 0) */
} srv_attn_opts;

/* A /v1/attention body: prompt (text or ids) and the /generate fields, with
 * max_tokens 0..cap (default 0: the prompt only) and temperature 0 unless
 * given; layers and heads (arrays of distinct indices of HP's), format
 * ("f16", default, or "json") and top_k (1..SRV_ATTN_TOP_K_MAX). OUT's
 * max_tokens is one more than asked, so the last reported token is computed
 * too; the prefix cache is off for it (every row must be computed). EINVAL
 * names the field. */
int srv_parse_attention(const char *body, size_t len, const srv_limits *lim, uint64_t random_seed,
                        const model_hparams *hp, srv_gen_req *out, srv_attn_opts *a,
                        attnd_err *err);

/* Cells an export of N_POSITIONS positions holds: layers x heads x n x n.
 * ATTND_ERANGE (a 413) with a message naming attention_max_cells when more
 * than MAX_CELLS; *CELLS gets the count either way. */
int srv_attention_cells(const srv_attn_opts *a, uint32_t n_positions, uint64_t max_cells,
                        uint64_t *cells, attnd_err *err);

/* The answer: {"tokens": [{"id", "text"}], "n_prompt", "positions" (rows
 * computed), "layers", "heads", "format", "attention": [{"layer", "head",
 * "probs", "entropy": [per query, nats], "top": [per query [[position,
 * weight], ...]]}]}. PROBS is the tap's buffer (N_ROWS per side), of which
 * the first POSITIONS rows were computed; TOKENS[0, N_TOKENS) are reported
 * (prompt first). "probs" is, for "json", one array per query position p of
 * the p + 1 weights it gives positions 0..p; for "f16", base64 of positions
 * x positions little-endian halves, row-major, 0 above the diagonal. NULL
 * when out of memory. */
cJSON *srv_attention_json(const tok_vocab *v, const int32_t *tokens, uint32_t n_tokens,
                          uint32_t n_prompt, uint32_t positions, const srv_attn_opts *a,
                          const float *probs, uint32_t n_rows);

#endif
