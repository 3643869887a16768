/* cmd_info.c - `attnd info MODEL.gguf`: what a model is, in "key: value" lines
 * (stable, so scripts and tests can read them), optionally with every metadata
 * key and every tensor. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "attnd_utf8.h"
#include "cli.h"
#include "hparams.h"
#include "tok.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: attnd info [OPTIONS] MODEL.gguf\n\n"
            "Describes a GGUF model: architecture, hyperparameters (context, embedding,\n"
            "layers, heads, KV heads, FFN, rope base, norm eps), tokenizer kind and size,\n"
            "special token ids, tensor count and bytes by type, total weight bytes, bits\n"
            "per weight (of all tensors and of the weight matrices) and the KV cache\n"
            "bytes per token.\n\n"
            "options:\n"
            "  --meta       also list every metadata key with its type and value\n"
            "  --tensors    also list every tensor with its type, shape and offset\n"
            "  -h, --help   show this help\n");
}

static void print_value(const gguf_value *v)
{
    uint64_t u;
    int64_t i;
    double f;
    bool b;
    gguf_str s;
    gguf_type t = gguf_value_type(v);
    if (t == GGUF_TYPE_ARRAY) {
        uint64_t n = gguf_array_len(v);
        printf("[%s x %" PRIu64 "]", gguf_type_name(gguf_array_elem_type(v)), n);
        for (uint64_t k = 0; k < n && k < 4; k++) {
            if (gguf_array_str(v, k, &s))
                printf(" \"%.*s\"", (int)(s.len > 40 ? 40 : s.len), s.ptr);
            else if (gguf_array_i64(v, k, &i))
                printf(" %" PRId64, i);
            else if (gguf_array_f64(v, k, &f))
                printf(" %g", f);
        }
        if (n > 4)
            printf(" ...");
    } else if (gguf_value_str(v, &s)) {
        printf("\"%.*s\"%s", (int)(s.len > 80 ? 80 : s.len), s.ptr, s.len > 80 ? "..." : "");
    } else if (gguf_value_bool(v, &b)) {
        printf("%s", b ? "true" : "false");
    } else if (t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64) {
        gguf_value_f64(v, &f);
        printf("%g", f);
    } else if (gguf_value_u64(v, &u)) {
        printf("%" PRIu64, u);
    } else if (gguf_value_i64(v, &i)) {
        printf("%" PRId64, i);
    }
}

/* "ID (TEXT)", the text cut to 24 bytes at a character boundary. */
static void print_token(int32_t id, const tok_vocab *tv)
{
    size_t len;
    const char *text = tok_text(tv, id, &len);
    size_t shown = attnd_utf8_valid_prefix(text, len > 24 ? 24 : len);
    printf("%d (%.*s)", id, (int)shown, text);
}

static void print_id(const char *name, int32_t id, const tok_vocab *tv)
{
    printf(" %s ", name);
    if (id < 0)
        printf("-");
    else
        print_token(id, tv);
}

static void print_model(const gguf_file *f, const model_hparams *hp)
{
    const char *kind = hp->n_head_kv == hp->n_head ? "MHA" : hp->n_head_kv == 1 ? "MQA" : "GQA";
    printf("architecture: %s (%s)\n", hp->arch_name, model_arch_family(hp->arch));
    printf("context: %u\n", hp->n_ctx);
    printf("embedding: %u\n", hp->n_embd);
    printf("layers: %u\n", hp->n_layer);
    printf("heads: %u\n", hp->n_head);
    printf("kv heads: %u (%s %u:1)\n", hp->n_head_kv, kind, hp->n_head / hp->n_head_kv);
    char key[96];
    snprintf(key, sizeof key, "%s.attention.key_length", hp->arch_name);
    printf("head dim: %u (%s)\n", hp->head_dim,
           gguf_get(f, key) ? "from key_length" : "embedding / heads");
    printf("ffn: %u\n", hp->n_ff);
    if (hp->rope != MODEL_ROPE_NONE) {
        printf("rope: %s\n", model_rope_name(hp->rope));
        printf("rope base: %g\n", (double)hp->rope_freq_base);
        printf("rope dims: %u\n", hp->n_rot);
        if (hp->rope_scale != 1.0f)
            printf("rope scaling: linear, positions / %g\n", (double)hp->rope_scale);
        else
            printf("rope scaling: none\n");
        printf("rope freqs: %s\n", gguf_tensor_find(f, "rope_freqs.weight")
                                        ? "rope_freqs.weight (per-pair frequency divisors)"
                                        : "none");
    }
    printf("output: %s\n", gguf_tensor_find(f, "output.weight") ? "output.weight"
                                                                : "tied to token_embd.weight");
    printf("norm eps: %g\n", (double)hp->norm_eps);
    printf("vocab: %u\n", hp->n_vocab);
    uint64_t f32 = model_kv_bytes_per_token(hp, 4), f16 = model_kv_bytes_per_token(hp, 2);
    printf("kv bytes per token: %" PRIu64 " (F16), %" PRIu64 " (F32); %ux less than MHA\n", f16,
           f32, hp->n_head / hp->n_head_kv);
}

/* Bits per element of BYTES over ELEMS; 0 for no elements. */
static double bits_per_weight(uint64_t bytes, uint64_t elems)
{
    return elems ? 8.0 * (double)bytes / (double)elems : 0.0;
}

static void print_tensors(const gguf_file *f, bool list)
{
    uint64_t count[GGUF_DTYPE_COUNT_] = {0}, type_bytes[GGUF_DTYPE_COUNT_] = {0};
    uint64_t bytes = 0, elems = 0, mat_bytes = 0, mat_elems = 0;
    for (size_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if ((unsigned)t->type < GGUF_DTYPE_COUNT_) {
            count[t->type]++;
            type_bytes[t->type] += t->nbytes;
        }
        bytes += t->nbytes;
        elems += t->n_elems;
        /* Weight matrices: what quantization presets convert (embeddings
         * included); vectors such as norms and biases are the rest. */
        if (t->n_dims >= 2) {
            mat_bytes += t->nbytes;
            mat_elems += t->n_elems;
        }
        if (list) {
            printf("  %-32s %-6s [", t->name, gguf_dtype_name(t->type));
            for (uint32_t d = 0; d < t->n_dims; d++)
                printf("%s%" PRIu64, d ? ", " : "", t->ne[d]);
            printf("] offset %" PRIu64 " bytes %" PRIu64 "\n", t->offset, t->nbytes);
        }
    }
    printf("tensors: %zu (", gguf_tensor_count(f));
    bool first = true;
    for (unsigned t = 0; t < GGUF_DTYPE_COUNT_; t++) {
        if (count[t]) {
            printf("%s%s %" PRIu64, first ? "" : ", ", gguf_dtype_name((gguf_dtype)t), count[t]);
            first = false;
        }
    }
    printf(")\n");
    for (unsigned t = 0; t < GGUF_DTYPE_COUNT_; t++)
        if (count[t])
            printf("type %s: %" PRIu64 " tensors, %" PRIu64 " bytes (%.2f MiB)\n",
                   gguf_dtype_name((gguf_dtype)t), count[t], type_bytes[t],
                   (double)type_bytes[t] / 1048576.0);
    printf("weight bytes: %" PRIu64 " (%.2f MiB)\n", bytes, (double)bytes / 1048576.0);
    printf("bits per weight: %.2f (all tensors), %.2f (weight matrices)\n",
           bits_per_weight(bytes, elems), bits_per_weight(mat_bytes, mat_elems));
}

int cli_info(int argc, char **argv)
{
    static const struct option opts[] = {
        {"meta", no_argument, NULL, 'M'},
        {"tensors", no_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool meta = false, tensors = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'M': meta = true; break;
        case 'T': tensors = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    const char *path = argv[optind];
    attnd_err err = {0};
    gguf_file *f;
    if (gguf_open(path, &f, &err) != ATTND_OK) {
        fprintf(stderr, "attnd info: %s\n", err.msg);
        return 1;
    }
    printf("file: %s\n", path);
    printf("gguf: version %u, %" PRIu64 " bytes, alignment %u, %zu keys\n", gguf_version(f),
           gguf_file_size(f), gguf_alignment(f), gguf_kv_count(f));
    gguf_str name;
    const gguf_value *nv = gguf_get(f, "general.name");
    if (nv && gguf_value_str(nv, &name))
        printf("name: %.*s\n", (int)(name.len > 120 ? 120 : name.len), name.ptr);

    int status = 0;
    model_hparams hp;
    bool vocab_only = gguf_tensor_count(f) == 0;
    if (model_hparams_load(f, &hp, &err) == ATTND_OK) {
        print_model(f, &hp);
    } else if (vocab_only) {
        printf("architecture: none (no tensors: a vocabulary-only file)\n");
    } else {
        fprintf(stderr, "attnd info: %s\n", err.msg);
        status = 1;
    }

    tok_vocab *tv = NULL;
    if (gguf_get(f, "tokenizer.ggml.model")) {
        if (tok_load(f, &tv, &err) == ATTND_OK) {
            printf("tokenizer: %s, %d tokens", tok_kind_name(tok_kind_of(tv)), tok_n_vocab(tv));
            if (tok_n_merges(tv))
                printf(", %zu merges", tok_n_merges(tv));
            printf("\nspecial tokens:");
            print_id("bos", tok_bos(tv), tv);
            print_id("eos", tok_eos(tv), tv);
            print_id("unk", tok_unk(tv), tv);
            print_id("pad", tok_pad(tv), tv);
            printf("\nend of generation:");
            const int32_t *eog;
            size_t n_eog = tok_eog_ids(tv, &eog);
            for (size_t i = 0; i < n_eog; i++) {
                printf(i ? ", " : " ");
                print_token(eog[i], tv);
            }
            printf("\nadds: bos %s, eos %s\n", tok_adds_bos(tv) ? "yes" : "no",
                   tok_adds_eos(tv) ? "yes" : "no");
            if (tok_pre_type(tv))
                printf("pre-tokenizer: %s\n", tok_pre_type(tv));
            if (tok_warning(tv))
                printf("warning: %s\n", tok_warning(tv));
            tok_free(tv);
        } else {
            fprintf(stderr, "attnd info: %s\n", err.msg);
            status = 1;
        }
    } else {
        printf("tokenizer: none\n");
    }
    print_tensors(f, tensors);

    if (meta) {
        printf("metadata:\n");
        for (size_t i = 0; i < gguf_kv_count(f); i++) {
            const gguf_value *v = gguf_kv_value(f, i);
            printf("  %s (%s) = ", gguf_kv_key(f, i), gguf_type_name(gguf_value_type(v)));
            print_value(v);
            printf("\n");
        }
    }
    gguf_close(f);
    return status;
}
