/* cmd_mkmodel.c - `attnd mkmodel`: writes a synthetic GGUF model of a given
 * shape with seeded random weights, for demos, tests and benchmarks. Tensor
 * data is generated while the file is written, one tensor at a time, so even
 * a 1.1B-parameter model needs little memory. */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "hparams.h"
#include "quant.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: attnd mkmodel -o OUT.gguf [OPTIONS]\n\n"
            "Writes a synthetic model with random weights (deterministic for a seed).\n\n"
            "options:\n"
            "  -o, --output PATH   file to write (required)\n"
            "  --arch NAME         llama, qwen2, qwen3 or gpt2 (default llama); qwen2 has\n"
            "                      Q/K/V biases, qwen3 per-head Q/K norms, both NeoX rope\n"
            "  --dim N             embedding size (default 64)\n"
            "  --layers N          number of blocks (default 2)\n"
            "  --heads N           query heads (default 4)\n"
            "  --kv-heads N        key/value heads, not gpt2 (default = heads)\n"
            "  --head-dim N        head size, written as key_length/value_length (default\n"
            "                      dim / heads, and then not written)\n"
            "  --rope-base F       rope.freq_base (default 10000; qwen 1000000)\n"
            "  --rope-freqs        add rope_freqs.weight: Llama 3.1's long-context divisors\n"
            "                      (factor 8, original context 8192)\n"
            "  --rope-scale F      linear rope scaling: positions divided by F\n"
            "  --tied              no output.weight: the output reuses token_embd.weight\n"
            "  --ff N              feed-forward size (default 4 x dim)\n"
            "  --ctx N             context length (default 256)\n"
            "  --type T            weight types, as `attnd quantize` would choose them for\n"
            "                      preset T (any case): f32 (default), f16, bf16, q4_0,\n"
            "                      q4_1, q5_0, q5_1, q8_0, q2_k, q3_k_m, q4_k_m, q5_k_m,\n"
            "                      q6_k, iq4_nl, iq4_xs; norms and biases stay f32\n"
            "  --vocab PATH        copy the tokenizer (tokenizer.* keys) from this GGUF;\n"
            "                      default: a small built-in SentencePiece vocabulary\n"
            "  --seed N            random seed (default 1)\n"
            "  --name TEXT         general.name (default \"attnd synthetic\")\n"
            "  -h, --help          show this help\n");
}

/* How one tensor's values are generated: uniform in [-scale, scale] around
 * `center`, from a stream seeded by (seed, tensor index). */
struct fill_spec {
    uint64_t seed;
    uint64_t n;
    gguf_dtype type;
    float center;
    float scale;
};

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int fill_random(void *ctx, void *buf, uint64_t nbytes, attnd_err *err)
{
    const struct fill_spec *sp = ctx;
    enum { CHUNK = 8192 }; /* a multiple of every block size */
    float tmp[CHUNK];
    uint64_t state = sp->seed;
    uint64_t row_bytes;
    uint8_t *out = buf;
    for (uint64_t done = 0; done < sp->n; done += CHUNK) {
        size_t k = (size_t)(sp->n - done < CHUNK ? sp->n - done : CHUNK);
        for (size_t i = 0; i < k; i++) {
            double u = (double)(splitmix64(&state) >> 11) * 0x1.0p-53; /* [0,1) */
            tmp[i] = sp->center + sp->scale * (float)(2.0 * u - 1.0);
        }
        if (!gguf_dtype_row_bytes(sp->type, k, &row_bytes) ||
            quant_from_f32(sp->type, tmp, out, k) != 0)
            return attnd_err_set(err, ATTND_EINVAL, "cannot write type %s (no quantizer for it)",
                                 gguf_dtype_name(sp->type));
        out += row_bytes;
    }
    (void)nbytes;
    return ATTND_OK;
}

struct mk {
    gguf_writer *w;
    uint64_t seed;
    quant_preset preset;
    quant_preset_model shape;
    bool bad_shape; /* a matrix the preset cannot store (a usage error) */
    struct fill_spec *specs;
    size_t n_specs, cap_specs;
    attnd_err err;
};

/* Adds a tensor of shape [ne0, ne1] (ne1 = 0: a vector) in the type the
 * preset gives it; vectors stay F32. */
static int mk_tensor(struct mk *m, const char *name, uint64_t ne0, uint64_t ne1, float center,
                     float scale)
{
    if (m->n_specs == m->cap_specs)
        return attnd_err_set(&m->err, ATTND_EINVAL, "mkmodel: too many tensors");
    struct fill_spec *sp = &m->specs[m->n_specs];
    uint64_t ne[2] = {ne0, ne1};
    gguf_dtype type;
    if (!quant_preset_tensor_type(m->preset, &m->shape, name, ne1 ? 2 : 1, ne0, GGUF_DTYPE_F32,
                                  &type)) {
        m->bad_shape = true;
        return attnd_err_set(&m->err, ATTND_EINVAL,
                             "--type %s: tensor '%s' has rows of %" PRIu64
                             " elements, not whole blocks of %u",
                             quant_preset_name(m->preset), name, ne0,
                             gguf_dtype_block_elems(quant_preset_base_type(m->preset)));
    }
    *sp = (struct fill_spec){
        .seed = m->seed * 1000003u + m->n_specs,
        .n = ne0 * (ne1 ? ne1 : 1),
        .type = type,
        .center = center,
        .scale = scale,
    };
    m->n_specs++;
    return gguf_writer_add_tensor_fn(m->w, name, sp->type, ne1 ? 2 : 1, ne, fill_random, sp,
                                     &m->err);
}

static int mk_layers(struct mk *m, model_arch arch, uint32_t dim, uint32_t layers,
                     uint32_t q_dim, uint32_t kv_dim, uint32_t head_dim, uint32_t ff)
{
    char name[96];
    int rc = ATTND_OK;
    float s_in = 1.0f / sqrtf((float)dim), s_ff = 1.0f / sqrtf((float)ff),
          s_q = 1.0f / sqrtf((float)q_dim);
#define T(suffix, a, b, c, s)                                                                 \
    do {                                                                                       \
        snprintf(name, sizeof name, "blk.%u.%s", l, suffix);                                  \
        if ((rc = mk_tensor(m, name, a, b, c, s)) != ATTND_OK)                                 \
            return rc;                                                                         \
    } while (0)
    for (uint32_t l = 0; l < layers; l++) {
        if (arch != MODEL_ARCH_GPT2) {
            T("attn_norm.weight", dim, 0, 1.0f, 0.1f);
            T("attn_q.weight", dim, q_dim, 0.0f, s_in);
            T("attn_k.weight", dim, kv_dim, 0.0f, s_in);
            T("attn_v.weight", dim, kv_dim, 0.0f, s_in);
            if (arch == MODEL_ARCH_QWEN2) {
                T("attn_q.bias", q_dim, 0, 0.0f, 0.5f);
                T("attn_k.bias", kv_dim, 0, 0.0f, 0.5f);
                T("attn_v.bias", kv_dim, 0, 0.0f, 0.5f);
            }
            if (arch == MODEL_ARCH_QWEN3) {
                T("attn_q_norm.weight", head_dim, 0, 1.0f, 0.3f);
                T("attn_k_norm.weight", head_dim, 0, 1.0f, 0.3f);
            }
            T("attn_output.weight", q_dim, dim, 0.0f, s_q);
            T("ffn_norm.weight", dim, 0, 1.0f, 0.1f);
            T("ffn_gate.weight", dim, ff, 0.0f, s_in);
            T("ffn_up.weight", dim, ff, 0.0f, s_in);
            T("ffn_down.weight", ff, dim, 0.0f, s_ff);
        } else {
            T("attn_norm.weight", dim, 0, 1.0f, 0.1f);
            T("attn_norm.bias", dim, 0, 0.0f, 0.02f);
            T("attn_qkv.weight", dim, 3ull * dim, 0.0f, s_in);
            T("attn_qkv.bias", 3ull * dim, 0, 0.0f, 0.02f);
            T("attn_output.weight", dim, dim, 0.0f, s_in);
            T("attn_output.bias", dim, 0, 0.0f, 0.02f);
            T("ffn_norm.weight", dim, 0, 1.0f, 0.1f);
            T("ffn_norm.bias", dim, 0, 0.0f, 0.02f);
            T("ffn_up.weight", dim, ff, 0.0f, s_in);
            T("ffn_up.bias", ff, 0, 0.0f, 0.02f);
            T("ffn_down.weight", ff, dim, 0.0f, s_ff);
            T("ffn_down.bias", dim, 0, 0.0f, 0.02f);
        }
    }
#undef T
    return rc;
}

/* Llama 3.1's rope_freqs: for each rotation pair, 1 for wavelengths below
 * the original context / 4, the full factor 8 above / 1, and a smooth mix
 * between, as its published configuration computes them. */
static int fill_rope_freqs(void *ctx, void *buf, uint64_t nbytes, attnd_err *err)
{
    const float *p = ctx; /* {base, n_rot} */
    const double factor = 8.0, low = 1.0, high = 4.0, orig_ctx = 8192.0;
    const double pi = 3.14159265358979323846;
    uint32_t half = (uint32_t)p[1] / 2;
    float *out = buf;
    for (uint32_t j = 0; j < half; j++) {
        double freq = pow((double)p[0], -2.0 * j / p[1]), wavelen = 2.0 * pi / freq;
        double f;
        if (wavelen < orig_ctx / high)
            f = 1.0;
        else if (wavelen > orig_ctx / low)
            f = factor;
        else {
            double smooth = (orig_ctx / wavelen - low) / (high - low);
            f = 1.0 / ((1.0 - smooth) / factor + smooth);
        }
        out[j] = (float)f;
    }
    (void)nbytes;
    (void)err;
    return ATTND_OK;
}

/* Copies every tokenizer.* key of PATH; sets *n_vocab from the token list. */
static int copy_vocab(gguf_writer *w, const char *path, uint32_t *n_vocab, attnd_err *err)
{
    gguf_file *src;
    int rc = gguf_open(path, &src, err);
    if (rc != ATTND_OK)
        return rc;
    const gguf_value *toks = gguf_get(src, "tokenizer.ggml.tokens");
    uint64_t n = toks ? gguf_array_len(toks) : 0;
    if (n == 0 || n > (1u << 22)) {
        gguf_close(src);
        return attnd_err_set(err, ATTND_EFORMAT, "%s: no usable tokenizer.ggml.tokens", path);
    }
    *n_vocab = (uint32_t)n;
    for (size_t i = 0; rc == ATTND_OK && i < gguf_kv_count(src); i++)
        if (strncmp(gguf_kv_key(src, i), "tokenizer.", 10) == 0)
            rc = gguf_writer_copy(w, src, gguf_kv_key(src, i), err);
    gguf_close(src);
    return rc;
}

int cli_mkmodel(int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'}, {"arch", required_argument, NULL, 'A'},
        {"dim", required_argument, NULL, 'd'},    {"layers", required_argument, NULL, 'l'},
        {"heads", required_argument, NULL, 'H'},  {"kv-heads", required_argument, NULL, 'K'},
        {"ff", required_argument, NULL, 'f'},     {"ctx", required_argument, NULL, 'c'},
        {"type", required_argument, NULL, 't'},   {"vocab", required_argument, NULL, 'v'},
        {"seed", required_argument, NULL, 's'},   {"name", required_argument, NULL, 'n'},
        {"head-dim", required_argument, NULL, 'D'}, {"rope-base", required_argument, NULL, 'B'},
        {"rope-freqs", no_argument, NULL, 'F'},   {"rope-scale", required_argument, NULL, 'S'},
        {"tied", no_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *out = NULL, *vocab = NULL, *name = "attnd synthetic";
    model_arch arch = MODEL_ARCH_LLAMA;
    uint32_t dim = 64, layers = 2, heads = 4, kv_heads = 0, ff = 0, ctx = 256, head_dim = 0;
    float rope_base = 0.0f, rope_scale = 0.0f;
    bool rope_freqs = false, tied = false;
    uint64_t seed = 1;
    quant_preset preset = QUANT_PRESET_F32;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'o': out = optarg; break;
        case 'A':
            if (strcmp(optarg, "llama") == 0)
                arch = MODEL_ARCH_LLAMA;
            else if (strcmp(optarg, "gpt2") == 0)
                arch = MODEL_ARCH_GPT2;
            else if (strcmp(optarg, "qwen2") == 0)
                arch = MODEL_ARCH_QWEN2;
            else if (strcmp(optarg, "qwen3") == 0)
                arch = MODEL_ARCH_QWEN3;
            else
                ok = (fprintf(stderr,
                              "attnd mkmodel: --arch: '%s' is not llama, qwen2, qwen3 or gpt2\n",
                              optarg),
                      false);
            break;
        case 'D': ok = cli_parse_u32("--head-dim", optarg, 2, 65536, &head_dim); break;
        case 'B': ok = cli_parse_f32("--rope-base", optarg, &rope_base) && rope_base > 0; break;
        case 'S': ok = cli_parse_f32("--rope-scale", optarg, &rope_scale) && rope_scale > 0; break;
        case 'F': rope_freqs = true; break;
        case 'T': tied = true; break;
        case 'd': ok = cli_parse_u32("--dim", optarg, 1, 65536, &dim); break;
        case 'l': ok = cli_parse_u32("--layers", optarg, 1, 4096, &layers); break;
        case 'H': ok = cli_parse_u32("--heads", optarg, 1, 4096, &heads); break;
        case 'K': ok = cli_parse_u32("--kv-heads", optarg, 1, 4096, &kv_heads); break;
        case 'f': ok = cli_parse_u32("--ff", optarg, 1, 1u << 20, &ff); break;
        case 'c': ok = cli_parse_u32("--ctx", optarg, 1, 1u << 24, &ctx); break;
        case 't':
            ok = cli_parse_preset("mkmodel --type", optarg, &preset);
            break;
        case 'v': vocab = optarg; break;
        case 's': ok = cli_parse_u64("--seed", optarg, &seed); break;
        case 'n': name = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (!ok)
            return 2;
    }
    if (!out || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (!kv_heads)
        kv_heads = heads;
    if (!ff)
        ff = 4 * dim;
    bool head_dim_given = head_dim != 0;
    if (!head_dim_given && dim % heads != 0) {
        fprintf(stderr, "attnd mkmodel: --dim must be a multiple of --heads (or give --head-dim)\n");
        return 2;
    }
    if (!head_dim)
        head_dim = dim / heads;
    if (heads % kv_heads != 0 || head_dim % 2 != 0) {
        fprintf(stderr, "attnd mkmodel: the head size must be even and --heads a multiple of "
                        "--kv-heads\n");
        return 2;
    }
    if (arch == MODEL_ARCH_GPT2 &&
        (kv_heads != heads || head_dim_given || rope_base > 0 || rope_freqs || rope_scale > 0)) {
        fprintf(stderr, "attnd mkmodel: gpt2 has no grouped-query attention, head size or rope "
                        "options\n");
        return 2;
    }
    if (!rope_base)
        rope_base = arch == MODEL_ARCH_QWEN2 || arch == MODEL_ARCH_QWEN3 ? 1e6f : 10000.0f;

    struct mk m = {
        .w = gguf_writer_new(),
        .seed = seed,
        .preset = preset,
        .shape = {.n_layer = layers, .n_gqa = heads / kv_heads,
                  .has_output = arch != MODEL_ARCH_GPT2 && !tied},
    };
    m.cap_specs = 16 + 14ull * layers;
    m.specs = calloc(m.cap_specs, sizeof *m.specs);
    const char *a = arch == MODEL_ARCH_LLAMA   ? "llama"
                    : arch == MODEL_ARCH_QWEN2 ? "qwen2"
                    : arch == MODEL_ARCH_QWEN3 ? "qwen3"
                                               : "gpt2";
    uint32_t n_vocab = 0, q_dim = head_dim * heads, kv_dim = head_dim * kv_heads;
    float rope_freqs_ctx[2] = {rope_base, (float)head_dim};
    char key[96];
    int rc = (m.w && m.specs) ? ATTND_OK
                              : attnd_err_set(&m.err, ATTND_ENOMEM, "mkmodel: out of memory");
#define KEY(fmt) (snprintf(key, sizeof key, fmt, a), key)
    if (rc == ATTND_OK)
        rc = gguf_writer_set_str(m.w, "general.architecture", a, &m.err);
    if (rc == ATTND_OK)
        rc = gguf_writer_set_str(m.w, "general.name", name, &m.err);
    if (rc == ATTND_OK)
        rc = gguf_writer_set_u32(m.w, "general.file_type", quant_preset_file_type(preset), &m.err);
    if (rc == ATTND_OK)
        rc = gguf_writer_set_u32(m.w, KEY("%s.context_length"), ctx, &m.err);
    if (rc == ATTND_OK)
        rc = gguf_writer_set_u32(m.w, KEY("%s.embedding_length"), dim, &m.err);
    if (rc == ATTND_OK)
        rc = gguf_writer_set_u32(m.w, KEY("%s.block_count"), layers, &m.err);
    if (rc == ATTND_OK)
        rc = gguf_writer_set_u32(m.w, KEY("%s.feed_forward_length"), ff, &m.err);
    if (rc == ATTND_OK)
        rc = gguf_writer_set_u32(m.w, KEY("%s.attention.head_count"), heads, &m.err);
    if (rc == ATTND_OK && arch != MODEL_ARCH_GPT2) {
        rc = gguf_writer_set_u32(m.w, KEY("%s.attention.head_count_kv"), kv_heads, &m.err);
        if (rc == ATTND_OK)
            rc = gguf_writer_set_f32(m.w, KEY("%s.rope.freq_base"), rope_base, &m.err);
        if (rc == ATTND_OK)
            rc = gguf_writer_set_u32(m.w, KEY("%s.rope.dimension_count"), head_dim, &m.err);
        if (rc == ATTND_OK && head_dim_given)
            rc = gguf_writer_set_u32(m.w, KEY("%s.attention.key_length"), head_dim, &m.err);
        if (rc == ATTND_OK && head_dim_given)
            rc = gguf_writer_set_u32(m.w, KEY("%s.attention.value_length"), head_dim, &m.err);
        if (rc == ATTND_OK && rope_scale > 0)
            rc = gguf_writer_set_str(m.w, KEY("%s.rope.scaling.type"), "linear", &m.err);
        if (rc == ATTND_OK && rope_scale > 0)
            rc = gguf_writer_set_f32(m.w, KEY("%s.rope.scaling.factor"), rope_scale, &m.err);
        if (rc == ATTND_OK)
            rc = gguf_writer_set_f32(m.w, KEY("%s.attention.layer_norm_rms_epsilon"), 1e-5f, &m.err);
    } else if (rc == ATTND_OK) {
        rc = gguf_writer_set_f32(m.w, KEY("%s.attention.layer_norm_epsilon"), 1e-5f, &m.err);
    }
#undef KEY
    if (rc == ATTND_OK)
        rc = vocab ? copy_vocab(m.w, vocab, &n_vocab, &m.err)
                   : cli_demo_vocab_write(m.w, &n_vocab, &m.err);
    if (rc == ATTND_OK)
        rc = mk_tensor(&m, "token_embd.weight", dim, n_vocab, 0.0f, 1.0f);
    if (rc == ATTND_OK && arch == MODEL_ARCH_GPT2)
        rc = mk_tensor(&m, "position_embd.weight", dim, ctx, 0.0f, 0.1f);
    if (rc == ATTND_OK && rope_freqs) {
        uint64_t ne[1] = {head_dim / 2};
        rc = gguf_writer_add_tensor_fn(m.w, "rope_freqs.weight", GGUF_DTYPE_F32, 1, ne,
                                       fill_rope_freqs, rope_freqs_ctx, &m.err);
    }
    if (rc == ATTND_OK)
        rc = mk_layers(&m, arch, dim, layers, q_dim, kv_dim, head_dim, ff);
    if (rc == ATTND_OK)
        rc = mk_tensor(&m, "output_norm.weight", dim, 0, 1.0f, 0.1f);
    if (rc == ATTND_OK && arch == MODEL_ARCH_GPT2)
        rc = mk_tensor(&m, "output_norm.bias", dim, 0, 0.0f, 0.02f);
    if (rc == ATTND_OK && arch != MODEL_ARCH_GPT2 && !tied)
        rc = mk_tensor(&m, "output.weight", dim, n_vocab, 0.0f, 1.0f / sqrtf((float)dim));
    if (rc == ATTND_OK)
        rc = gguf_writer_write(m.w, out, &m.err);
    gguf_writer_free(m.w);
    free(m.specs);
    if (rc != ATTND_OK) {
        fprintf(stderr, "attnd mkmodel: %s\n", m.err.msg);
        return m.bad_shape ? 2 : 1;
    }
    return 0;
}
