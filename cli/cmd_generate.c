/* cmd_generate.c - `attnd generate`: one prompt, text streamed to stdout as it
 * is produced (whole UTF-8 characters only), speeds to stderr. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "engine.h"
#include "sample.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: attnd generate -m MODEL.gguf -p PROMPT [OPTIONS]\n\n"
            "Generates a continuation of PROMPT and streams the prompt and the text to\n"
            "stdout; prompt and generation speeds (tokens/s) go to stderr.\n\n"
            "options:\n"
            "  -m, --model PATH        GGUF model\n"
            "  -p, --prompt TEXT       the prompt\n"
            "  -n, --n-predict N       tokens to generate (default 128; stops early at EOS\n"
            "                          or the context length)\n"
            "  --temp T                temperature; 0 = greedy (default 0.8)\n"
            "  --top-k K               keep the K most likely tokens; 0 = off (default 40)\n"
            "  --top-p P               nucleus sampling; 1 = off (default 0.95)\n"
            "  --min-p P               drop tokens below P x the top probability (default 0.05)\n"
            "  --repeat-penalty R      penalty for recent tokens; 1 = off (default 1)\n"
            "  --repeat-last-n N       how many recent tokens it looks at (default 64)\n"
            "  --seed S                random seed (default 0); same seed, same text\n"
            "  --ignore-eos            keep generating past the end-of-sequence token\n"
            "  --special               control tokens written in the prompt (<|im_start|>)\n"
            "                          become their ids instead of plain text\n"
            "  --threads N             worker threads (default: number of cores)\n"
            "  --kv-type T             f16 (default) or f32 KV cache elements\n"
            "  --weights copy|map      copy the weights into huge pages (default; faster\n"
            "                          decode) or map the file (faster start, shared cache)\n"
            "  -h, --help              show this help\n");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int cli_generate(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},
        {"prompt", required_argument, NULL, 'p'},
        {"n-predict", required_argument, NULL, 'n'},
        {"temp", required_argument, NULL, 'T'},
        {"top-k", required_argument, NULL, 'K'},
        {"top-p", required_argument, NULL, 'P'},
        {"min-p", required_argument, NULL, 'M'},
        {"repeat-penalty", required_argument, NULL, 'R'},
        {"repeat-last-n", required_argument, NULL, 'L'},
        {"seed", required_argument, NULL, 's'},
        {"ignore-eos", no_argument, NULL, 'E'},
        {"special", no_argument, NULL, 'S'},
        {"threads", required_argument, NULL, 't'},
        {"kv-type", required_argument, NULL, 'k'},
        {"weights", required_argument, NULL, 'W'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *prompt = NULL;
    uint32_t n_predict = 128, top_k = 40;
    sample_params sp = sample_params_default();
    engine_params ep = {.kv_type = KV_DTYPE_F16};
    gguf_load load = GGUF_LOAD_COPY;
    bool parse_special = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:p:n:h", opts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'm': path = optarg; break;
        case 'p': prompt = optarg; break;
        case 'n': ok = cli_parse_u32("--n-predict", optarg, 0, 1u << 24, &n_predict); break;
        case 'T': ok = cli_parse_f32("--temp", optarg, &sp.temperature); break;
        case 'K':
            ok = cli_parse_u32("--top-k", optarg, 0, INT32_MAX, &top_k);
            sp.top_k = (int32_t)top_k;
            break;
        case 'P': ok = cli_parse_f32("--top-p", optarg, &sp.top_p); break;
        case 'M': ok = cli_parse_f32("--min-p", optarg, &sp.min_p); break;
        case 'R': ok = cli_parse_f32("--repeat-penalty", optarg, &sp.repeat_penalty); break;
        case 'L': ok = cli_parse_u32("--repeat-last-n", optarg, 0, 1u << 20, &sp.repeat_last_n); break;
        case 's': ok = cli_parse_u64("--seed", optarg, &sp.seed); break;
        case 'E': sp.ignore_eos = true; break;
        case 'S': parse_special = true; break;
        case 't': ok = cli_parse_u32("--threads", optarg, 1, 1024, &ep.n_threads); break;
        case 'k': ok = cli_parse_kv_type(optarg, &ep.kv_type); break;
        case 'W': ok = cli_parse_weights(optarg, &load); break;
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

    attnd_err err = {0};
    model *m = NULL;
    engine *e = NULL;
    sampler *smp = NULL;
    tok_stream *ts = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    float *logits = NULL;
    engine_entry *en = NULL;
    int status = 1;
    uint32_t seq;
    if (model_load_as(path, load, &m, &err) != ATTND_OK)
        goto fail;
    const model_hparams *hp = model_hparams_of(m);
    const tok_vocab *tv = model_vocab(m);
    if (tok_warning(tv))
        fprintf(stderr, "attnd generate: warning: %s\n", tok_warning(tv));
    const int32_t *eog;
    size_t n_eog = tok_eog_ids(tv, &eog);
    unsigned flags = TOK_ADD_SPECIAL | (parse_special ? TOK_PARSE_SPECIAL : 0u);
    if (tok_encode(tv, prompt, strlen(prompt), flags, &ids, &n_ids, &err) != ATTND_OK)
        goto fail;
    if (n_ids == 0 || n_ids >= hp->n_ctx) {
        attnd_err_set(&err, ATTND_ERANGE, "the prompt has %zu tokens; the context holds %u",
                      n_ids, hp->n_ctx);
        goto fail;
    }
    ep.max_entries = (uint32_t)n_ids;
    ep.kv_block_size = 16;
    ep.kv_blocks = (hp->n_ctx + 15) / 16;
    if (engine_new(m, &ep, &e, &err) != ATTND_OK || engine_seq_open(e, &seq, &err) != ATTND_OK ||
        sampler_new(&sp, (int32_t)hp->n_vocab, eog, n_eog, &smp, &err) != ATTND_OK)
        goto fail;
    logits = malloc((size_t)hp->n_vocab * sizeof(float));
    en = calloc(n_ids, sizeof *en);
    ts = tok_stream_new(tv, false);
    if (!logits || !en || !ts) {
        attnd_err_set(&err, ATTND_ENOMEM, "out of memory");
        goto fail;
    }
    fputs(prompt, stdout);
    fflush(stdout);

    double t0 = now_s();
    for (size_t i = 0; i < n_ids; i++) {
        en[i] = (engine_entry){seq, ids[i], (uint32_t)i, i + 1 == n_ids};
        sampler_accept(smp, ids[i]);
    }
    if (engine_step(e, en, n_ids, logits, &err) != ATTND_OK)
        goto fail;
    double t1 = now_s();
    uint32_t pos = (uint32_t)n_ids, n_gen = 0;
    const char *out;
    size_t out_len;
    while (n_gen < n_predict && pos < hp->n_ctx) {
        int32_t tok = sampler_sample(smp, logits);
        if (!sp.ignore_eos && tok_is_eog(tv, tok))
            break;
        sampler_accept(smp, tok);
        n_gen++;
        if (tok_stream_push(ts, tok, &out, &out_len, &err) != ATTND_OK)
            goto fail;
        fwrite(out, 1, out_len, stdout);
        fflush(stdout);
        if (n_gen == n_predict || pos >= hp->n_ctx)
            break;
        engine_entry step = {seq, tok, pos++, true};
        if (engine_step(e, &step, 1, logits, &err) != ATTND_OK)
            goto fail;
    }
    tok_stream_flush(ts, &out, &out_len);
    fwrite(out, 1, out_len, stdout);
    if (isatty(STDOUT_FILENO))
        fputc('\n', stdout);
    fflush(stdout);
    double t2 = now_s();
    fprintf(stderr, "prompt: %zu tokens, %.1f tokens/s; generation: %u tokens, %.1f tokens/s\n",
            n_ids, (double)n_ids / (t1 - t0 > 0 ? t1 - t0 : 1e-9), n_gen,
            (double)n_gen / (t2 - t1 > 0 ? t2 - t1 : 1e-9));
    status = 0;
fail:
    if (status != 0)
        fprintf(stderr, "attnd generate: %s\n", err.msg[0] ? err.msg : "failed");
    tok_stream_free(ts);
    free(en);
    free(logits);
    free(ids);
    sampler_free(smp);
    engine_free(e);
    model_free(m);
    return status;
}
