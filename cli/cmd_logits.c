/* cmd_logits.c - `attnd logits`: raw logits for a fixed token sequence, the
 * interface the engine is checked against other implementations with (the
 * layout of ../shared/golden): N rows of float32 [N][vocab], little-endian,
 * row p = logits after positions 0..p. Keep it stable. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: attnd logits -m MODEL.gguf --tokens 1,2,3 --steps N -o OUT.f32 [OPTIONS]\n\n"
            "Feeds the given token ids one position at a time from position 0, continues\n"
            "greedily when they run out, and writes N rows of float32 logits, row-major\n"
            "[N][vocab], little-endian (row p = logits after positions 0..p).\n\n"
            "options:\n"
            "  -m, --model PATH   GGUF model\n"
            "  --tokens LIST      comma-separated token ids (at least one)\n"
            "  --steps N          rows to write (default: number of tokens)\n"
            "  -o, --output PATH  output file\n"
            "  --chunk            feed all given ids as one prompt chunk in a single batched\n"
            "                     step instead (the same logits are expected)\n"
            "  --threads N        worker threads (default: number of cores)\n"
            "  --kv-type T        f32 (default) or f16 KV cache elements\n"
            "  --weights MODE     copy (default: into huge pages) or map the file\n"
            "  -h, --help         show this help\n");
}

static int parse_tokens(const char *s, int32_t **out, uint32_t *n)
{
    size_t cap = 16;
    int32_t *ids = malloc(cap * sizeof *ids);
    *n = 0;
    while (ids && *s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > INT32_MAX || (*end != ',' && *end != '\0')) {
            free(ids);
            return -1;
        }
        if (*n == cap) {
            int32_t *t = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!t) {
                free(ids);
                return -1;
            }
            ids = t;
        }
        ids[(*n)++] = (int32_t)v;
        s = *end ? end + 1 : end;
    }
    *out = ids;
    return ids && *n > 0 ? 0 : -1;
}

static int32_t argmax(const float *x, uint32_t n)
{
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return (int32_t)best;
}

int cli_logits(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},  {"tokens", required_argument, NULL, 'T'},
        {"steps", required_argument, NULL, 'n'},  {"output", required_argument, NULL, 'o'},
        {"chunk", no_argument, NULL, 'C'},        {"threads", required_argument, NULL, 't'},
        {"kv-type", required_argument, NULL, 'k'}, {"help", no_argument, NULL, 'h'},
        {"weights", required_argument, NULL, 'W'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *out_path = NULL, *tokens = NULL;
    uint32_t steps = 0, threads = 0;
    bool chunk = false;
    engine_params ep = {.kv_type = KV_DTYPE_F32};
    gguf_load load = GGUF_LOAD_COPY;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:o:h", opts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'm': path = optarg; break;
        case 'T': tokens = optarg; break;
        case 'n': ok = cli_parse_u32("--steps", optarg, 1, 1u << 24, &steps); break;
        case 'o': out_path = optarg; break;
        case 'C': chunk = true; break;
        case 't': ok = cli_parse_u32("--threads", optarg, 1, 1024, &threads); break;
        case 'k': ok = cli_parse_kv_type(optarg, &ep.kv_type); break;
        case 'W': ok = cli_parse_weights(optarg, &load); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (!ok)
            return 2;
    }
    int32_t *ids = NULL;
    uint32_t n_ids = 0;
    if (!path || !out_path || !tokens || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (parse_tokens(tokens, &ids, &n_ids) != 0) {
        fprintf(stderr, "attnd logits: --tokens: '%s' is not a comma-separated list of ids\n", tokens);
        return 2;
    }
    if (!steps)
        steps = n_ids;
    ep.n_threads = threads;

    attnd_err err = {0};
    model *m = NULL;
    engine *e = NULL;
    float *logits = NULL;
    FILE *fp = NULL;
    int status = 1;
    uint32_t seq;
    if (model_load_as(path, load, &m, &err) != ATTND_OK)
        goto fail;
    const model_hparams *hp = model_hparams_of(m);
    if (steps > hp->n_ctx) {
        attnd_err_set(&err, ATTND_ERANGE, "--steps %u exceeds the context length %u", steps,
                      hp->n_ctx);
        goto fail;
    }
    ep.max_entries = chunk ? (n_ids < steps ? n_ids : steps) : 1;
    if (ep.max_entries == 0)
        ep.max_entries = 1;
    if (!ep.kv_blocks)
        ep.kv_blocks = (steps + 15) / 16 + 1;
    ep.kv_block_size = 16;
    if (engine_new(m, &ep, &e, &err) != ATTND_OK || engine_seq_open(e, &seq, &err) != ATTND_OK)
        goto fail;
    logits = malloc((size_t)ep.max_entries * hp->n_vocab * sizeof(float));
    fp = fopen(out_path, "wb");
    if (!logits || !fp) {
        attnd_err_set(&err, ATTND_EIO, "%s: cannot write", out_path);
        goto fail;
    }
    uint32_t p = 0;
    if (chunk) {
        uint32_t n = ep.max_entries;
        engine_entry *en = calloc(n, sizeof *en);
        if (!en)
            goto fail;
        for (uint32_t i = 0; i < n; i++)
            en[i] = (engine_entry){seq, ids[i], i, true};
        int rc = engine_step(e, en, n, logits, &err);
        free(en);
        if (rc != ATTND_OK)
            goto fail;
        if (fwrite(logits, sizeof(float), (size_t)n * hp->n_vocab, fp) != (size_t)n * hp->n_vocab)
            goto fail;
        p = n;
        /* greedy continuation starts from the chunk's last row */
        memmove(logits, logits + (size_t)(n - 1) * hp->n_vocab, hp->n_vocab * sizeof(float));
    }
    for (; p < steps; p++) {
        int32_t tok = p < n_ids ? ids[p] : argmax(logits, hp->n_vocab);
        engine_entry en = {seq, tok, p, true};
        if (engine_step(e, &en, 1, logits, &err) != ATTND_OK)
            goto fail;
        if (fwrite(logits, sizeof(float), hp->n_vocab, fp) != hp->n_vocab)
            goto fail;
    }
    if (fclose(fp) != 0) {
        fp = NULL;
        attnd_err_set(&err, ATTND_EIO, "%s: write failed", out_path);
        goto fail;
    }
    fp = NULL;
    status = 0;
fail:
    if (status != 0)
        fprintf(stderr, "attnd logits: %s\n", err.msg[0] ? err.msg : "failed");
    if (fp)
        fclose(fp);
    free(logits);
    free(ids);
    engine_free(e);
    model_free(m);
    return status;
}
