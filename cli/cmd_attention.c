/* cmd_attention.c - `attnd attention`: the /v1/attention answer for a prompt,
 * without a server. The options are turned into the route's request body and
 * parsed by the same code (srv_parse_attention), and the answer written by
 * the same function, so the two cannot drift apart; the prompt is computed as
 * one chunk and continued greedily (the route's default sampling). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine.h"
#include "sample.h"
#include "srv_attention.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: attnd attention -m MODEL.gguf -p PROMPT [OPTIONS]\n\n"
            "Prints, as JSON, the tokens of PROMPT (and of the greedy continuation) and\n"
            "each selected layer and head's attention probabilities over them: the answer\n"
            "of POST /v1/attention.\n\n"
            "options:\n"
            "  -m, --model PATH   GGUF model\n"
            "  -p, --prompt TEXT  the prompt (BOS added as the model says)\n"
            "  -n, --max-tokens N greedy tokens after the prompt (default 0)\n"
            "  --layers LIST      comma-separated layer indices (default all)\n"
            "  --heads LIST       comma-separated query head indices (default all)\n"
            "  --format F         json (default here) or f16 (base64 rows)\n"
            "  --top-k K          attended positions listed per query (default 3)\n"
            "  --threads N        worker threads (default: number of cores)\n"
            "  -h, --help         show this help\n");
}

/* "1,2,3" as a JSON array into O under NAME; false when not such a list. */
static bool add_list(cJSON *o, const char *name, const char *s)
{
    cJSON *a = cJSON_AddArrayToObject(o, name);
    while (a && *s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || (*end != ',' && *end != '\0'))
            return false;
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v));
        s = *end ? end + 1 : end;
    }
    return a && a->child;
}

int cli_attention(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},   {"prompt", required_argument, NULL, 'p'},
        {"max-tokens", required_argument, NULL, 'n'}, {"layers", required_argument, NULL, 'L'},
        {"heads", required_argument, NULL, 'H'},   {"format", required_argument, NULL, 'F'},
        {"top-k", required_argument, NULL, 'k'},   {"threads", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *prompt = NULL, *layers = NULL, *heads = NULL, *format = "json";
    uint32_t n_tokens = 0, top_k = 3, threads = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:p:n:h", opts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'm': path = optarg; break;
        case 'p': prompt = optarg; break;
        case 'n': ok = cli_parse_u32("--max-tokens", optarg, 0, 1u << 20, &n_tokens); break;
        case 'L': layers = optarg; break;
        case 'H': heads = optarg; break;
        case 'F': format = optarg; break;
        case 'k': ok = cli_parse_u32("--top-k", optarg, 1, 1000, &top_k); break;
        case 't': ok = cli_parse_u32("--threads", optarg, 1, 1024, &threads); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (!ok)
            return 2;
    }
    if (!path || !prompt || optind != argc) {
        usage(stderr);
        return 2;
    }
    cJSON *req = cJSON_CreateObject();
    if (!req || !cJSON_AddStringToObject(req, "prompt", prompt) ||
        !cJSON_AddNumberToObject(req, "max_tokens", n_tokens) ||
        !cJSON_AddStringToObject(req, "format", format) ||
        !cJSON_AddNumberToObject(req, "top_k", top_k)) {
        cJSON_Delete(req);
        fprintf(stderr, "attnd attention: out of memory\n");
        return 1;
    }
    if ((layers && !add_list(req, "layers", layers)) || (heads && !add_list(req, "heads", heads))) {
        cJSON_Delete(req);
        fprintf(stderr, "attnd attention: --%s: not a comma-separated list of indices\n",
                layers && !cJSON_GetObjectItem(req, "heads") ? "layers" : "heads");
        return 2;
    }
    char *body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);

    attnd_err err = {0};
    model *m = NULL;
    engine *e = NULL;
    srv_gen_req in = {0};
    srv_attn_opts a;
    int32_t *ids = NULL, *toks = NULL;
    float *rows = NULL, *logits = NULL;
    engine_entry *en = NULL;
    sampler *smp = NULL;
    int status = 1;
    size_t n_ids = 0;
    uint32_t seq, n = 0, n_rows = 0;
    if (!body || model_load(path, &m, &err) != ATTND_OK)
        goto fail;
    const model_hparams *hp = model_hparams_of(m);
    srv_limits lim = {.default_max_tokens = 0, .max_tokens_cap = 1u << 20};
    if (srv_parse_attention(body, strlen(body), &lim, 0, hp, &in, &a, &err) != ATTND_OK) {
        status = 2;
        goto fail;
    }
    if (tok_encode(model_vocab(m), in.prompt, in.prompt_len, TOK_ADD_SPECIAL, &ids, &n_ids,
                   &err) != ATTND_OK)
        goto fail;
    n_rows = (uint32_t)n_ids + a.n_tokens;
    uint64_t cells;
    if (n_ids == 0 || n_rows > hp->n_ctx) {
        attnd_err_set(&err, ATTND_EINVAL, "%zu prompt tokens + %u more exceed the context (%u)",
                      n_ids, a.n_tokens, hp->n_ctx);
        goto fail;
    }
    if (srv_attention_cells(&a, n_rows, UINT64_MAX / sizeof(float), &cells, &err) != ATTND_OK)
        goto fail;
    engine_params ep = {.n_threads = threads, .kv_type = KV_DTYPE_F32, .kv_block_size = 16,
                        .kv_blocks = n_rows / 16 + 2, .max_entries = (uint32_t)n_ids};
    rows = calloc(cells ? (size_t)cells : 1, sizeof *rows);
    logits = malloc((size_t)hp->n_vocab * sizeof *logits);
    en = malloc(n_ids * sizeof *en);
    toks = malloc((size_t)n_rows * sizeof *toks);
    if (!rows || !logits || !en || !toks) {
        attnd_err_set(&err, ATTND_ENOMEM, "out of memory for %llu attention weights",
                      (unsigned long long)cells);
        goto fail;
    }
    engine_tap tap = {.layers = a.layers, .n_layers = a.n_layers, .heads = a.heads,
                      .n_heads = a.n_heads, .n_rows = n_rows, .out = rows};
    if (engine_new(m, &ep, &e, &err) != ATTND_OK || engine_seq_open(e, &seq, &err) != ATTND_OK ||
        engine_seq_tap(e, seq, &tap, &err) != ATTND_OK)
        goto fail;
    for (uint32_t i = 0; i < n_ids; i++) {
        toks[i] = ids[i];
        en[i] = (engine_entry){seq, ids[i], i, i + 1 == n_ids};
    }
    n = (uint32_t)n_ids;
    if (engine_step(e, en, n_ids, logits, &err) != ATTND_OK)
        goto fail;
    /* each reported token is fed too, so its row exists; sampled as the
     * route samples (greedy unless the sampling fields say otherwise) */
    const int32_t *eog;
    size_t n_eog = tok_eog_ids(model_vocab(m), &eog);
    if (sampler_new(&in.sample, (int32_t)hp->n_vocab, eog, n_eog, &smp, &err) != ATTND_OK)
        goto fail;
    for (uint32_t i = 0; i < n; i++)
        sampler_accept(smp, toks[i]);
    for (; n < n_rows; n++) {
        toks[n] = sampler_sample(smp, logits);
        sampler_accept(smp, toks[n]);
        engine_entry x = {seq, toks[n], n, true};
        if (engine_step(e, &x, 1, logits, &err) != ATTND_OK)
            goto fail;
    }
    cJSON *o = srv_attention_json(model_vocab(m), toks, n, (uint32_t)n_ids, n, &a, rows, n_rows);
    char *txt = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!txt) {
        attnd_err_set(&err, ATTND_ENOMEM, "out of memory writing the answer");
        goto fail;
    }
    puts(txt);
    free(txt);
    status = 0;
fail:
    if (status != 0)
        fprintf(stderr, "attnd attention: %s\n", err.msg[0] ? err.msg : "out of memory");
    free(body);
    free(ids);
    free(toks);
    free(rows);
    free(logits);
    free(en);
    srv_gen_req_free(&in);
    sampler_free(smp);
    engine_free(e);
    model_free(m);
    return status;
}
