/* test_cli.c - the attnd binary as a user runs it: help texts, `info` on the
 * shared models, `tokenize` against the vocabulary test vectors, `mkmodel`
 * output read back, `quantize` to every preset (and the preset table against
 * the reference's own quantized files), and clear failures on bad input. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>

#include "gguf.h"
#include "quant_preset.h"
#include "test_util.h"

/* Runs `attnd ARGS` (a shell fragment), returns status, stdout in *out. */
static int attnd(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int attnd(char **out, const char *fmt, ...)
{
    char args[8192], cmd[9000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "'%s' %s", test_attnd_bin(), args);
    return test_run(cmd, out);
}

static void expect_line(const char *out, const char *line)
{
    char want[256];
    snprintf(want, sizeof want, "\n%s\n", line);
    cr_expect(strstr(out, want) != NULL, "output lacks line '%s':\n%s", line, out);
}

Test(cli, help_describes_every_command_and_option)
{
    char *out;
    cr_assert_eq(attnd(&out, "--help"), 0);
    cr_expect(strstr(out, "info") && strstr(out, "tokenize") && strstr(out, "mkmodel") &&
              strstr(out, "quantize"));
    free(out);
    static const struct {
        const char *cmd;
        const char *opts[8];
    } c[] = {
        {"info", {"--meta", "--tensors", "--help"}},
        {"tokenize", {"--model", "--no-special", "--pieces", "--help"}},
        {"mkmodel", {"--output", "--arch", "--dim", "--layers", "--heads", "--kv-heads", "--ff", "--vocab"}},
        {"quantize", {"--threads", "--help", "Q4_K_M", "IQ4_XS", "Q3_K_M", "BF16"}},
        {"attention", {"--model", "--prompt", "--max-tokens", "--layers", "--heads", "--format", "--top-k"}},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        cr_assert_eq(attnd(&out, "%s --help", c[i].cmd), 0, "%s --help", c[i].cmd);
        for (size_t k = 0; k < 8 && c[i].opts[k]; k++)
            cr_expect(strstr(out, c[i].opts[k]), "%s --help lacks %s", c[i].cmd, c[i].opts[k]);
        free(out);
    }
    cr_expect_eq(attnd(NULL, "nosuchcommand 2>/dev/null"), 2);
    cr_expect_eq(attnd(NULL, "2>/dev/null"), 2);
    cr_expect_eq(attnd(NULL, "info 2>/dev/null"), 2);
    cr_expect_eq(attnd(NULL, "info --bogus x 2>/dev/null"), 2);
    cr_expect_eq(attnd(NULL, "mkmodel -o /dev/null --dim abc 2>/dev/null"), 2);
}

Test(cli, info_reports_the_shapes_of_the_shared_models)
{
    static const struct {
        const char *file;
        const char *lines[12];
    } m[] = {
        {"models/aidreams260K.gguf",
         {"architecture: llama (Llama 2/3, Mistral, SmolLM)", "context: 128", "embedding: 64", "layers: 4", "heads: 4",
          "kv heads: 4 (MHA 1:1)", "ffn: 172", "rope base: 10000", "norm eps: 1e-05",
          "vocab: 512", "tensors: 39 (F32 39)"}},
        {"models/stories260K.gguf",
         {"architecture: llama (Llama 2/3, Mistral, SmolLM)", "context: 512", "embedding: 64", "layers: 5", "heads: 8",
          "kv heads: 4 (GQA 2:1)", "ffn: 172", "vocab: 512",
          "kv bytes per token: 640 (F16), 1280 (F32); 2x less than MHA"}},
        {"models/llama-synth-64x2-gqa4.gguf",
         {"architecture: llama (Llama 2/3, Mistral, SmolLM)", "context: 256", "embedding: 64", "layers: 2", "heads: 8",
          "kv heads: 2 (GQA 4:1)", "ffn: 256", "vocab: 32000", "adds: bos yes, eos no"}},
        {"models/llama-synth-128x2-q8_0.gguf",
         {"architecture: llama (Llama 2/3, Mistral, SmolLM)", "context: 256", "embedding: 128", "layers: 2", "heads: 4",
          "kv heads: 2 (GQA 2:1)", "ffn: 512", "vocab: 32000"}},
        {"models/gpt2-synth-64x2.gguf",
         {"architecture: gpt2 (GPT-2)", "context: 128", "embedding: 64", "layers: 2", "heads: 4",
          "kv heads: 4 (MHA 1:1)", "ffn: 256", "vocab: 50257", "adds: bos no, eos no"}},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        char *out;
        cr_assert_eq(attnd(&out, "info '%s'", test_shared(m[i].file)), 0, "%s", m[i].file);
        for (size_t k = 0; k < 12 && m[i].lines[k]; k++)
            expect_line(out, m[i].lines[k]);
        cr_expect(strstr(out, "\ntokenizer: "), "%s: no tokenizer line", m[i].file);
        cr_expect(strstr(out, "\nweight bytes: "), "%s: no weight bytes", m[i].file);
        free(out);
    }
    char *out;
    cr_assert_eq(attnd(&out, "info --meta --tensors '%s'",
                       test_shared("models/llama-synth-128x2-q8_0.gguf")), 0);
    cr_expect(strstr(out, "llama.rope.freq_base (float32) = 10000"), "%s", out);
    cr_expect(strstr(out, "tensors: 21 (F32 5, Q8_0 16)"), "%s", out);
    cr_expect(strstr(out, "blk.0.attn_q.weight"), "%s", out);
    free(out);
}

Test(cli, info_fails_clearly_on_bad_files)
{
    char *out;
    char *path = test_tmp_path("bad.gguf");
    FILE *fp = fopen(path, "wb");
    fputs("GGUF\3\0\0\0garbage", fp);
    fclose(fp);
    cr_assert_eq(attnd(&out, "info '%s' 2>&1", path), 1);
    cr_expect(strstr(out, path), "error does not name the file: %s", out);
    free(out);
    cr_assert_eq(attnd(&out, "info /nonexistent.gguf 2>&1"), 1);
    cr_expect(strstr(out, "/nonexistent.gguf: cannot open"), "%s", out);
    free(out);
    remove(path);
    free(path);
}

/* Every test vector of VOCAB through `attnd tokenize --no-special`. */
static void check_cli_vectors(const char *vocab)
{
    test_vectors vs;
    test_vectors_load(vocab, &vs);
    char *txt = test_tmp_path("vector.txt");
    size_t failed = 0;
    for (size_t i = 0; i < vs.n; i++) {
        FILE *fp = fopen(txt, "wb");
        cr_assert(fp);
        fwrite(vs.texts[i].p, 1, vs.texts[i].n, fp);
        fclose(fp);
        char *out;
        cr_assert_eq(attnd(&out, "tokenize -m '%s' --no-special < '%s'", test_shared(vocab), txt), 0);
        int32_t want[512], got[512];
        size_t n_want = test_parse_ids(vs.lines[i], want, 512), n_got = test_parse_ids(out, got, 512);
        bool same = n_want == n_got && memcmp(want, got, n_got * sizeof *got) == 0;
        if (!same) {
            failed++;
            cr_expect(same, "%s text %zu: expected [%s], got [%s]", vocab, i, vs.lines[i], out);
        }
        free(out);
    }
    cr_expect_eq(failed, 0u, "%s: %zu of %zu texts differ", vocab, failed, vs.n);
    remove(txt);
    free(txt);
    test_vectors_free(&vs);
}

Test(cli, tokenize_llama3_vectors, .timeout = 240)
{
    check_cli_vectors("vocab/ggml-vocab-llama3.gguf");
}

Test(cli, tokenize_qwen3_vectors, .timeout = 240)
{
    check_cli_vectors("vocab/ggml-vocab-qwen3.gguf");
}

/* --special: control tokens written in the text become their ids. */
Test(cli, tokenize_special_parses_control_tokens)
{
    char *out;
    char *txt = test_tmp_path("special.txt");
    FILE *fp = fopen(txt, "wb");
    fputs("<|im_start|>user", fp);
    fclose(fp);
    const char *qwen = test_shared("vocab/ggml-vocab-qwen3.gguf");
    cr_assert_eq(attnd(&out, "tokenize -m '%s' --special < '%s'", qwen, txt), 0);
    cr_expect_str_eq(out, "151644 872\n");
    free(out);
    cr_assert_eq(attnd(&out, "tokenize -m '%s' < '%s'", qwen, txt), 0);
    cr_expect(strncmp(out, "151644", 6) != 0, "without --special: %s", out);
    free(out);
    remove(txt);
    free(txt);
}

/* The vocabulary test texts through the CLI (the tokenizer suite checks all of
 * them through the API; here a few prove the command's interface). */
Test(cli, tokenize_matches_test_vectors_and_adds_bos_as_the_model_says)
{
    char *out;
    char *txt = test_tmp_path("hello.txt");
    FILE *fp = fopen(txt, "wb");
    fputs(" Hello World!", fp);
    fclose(fp);
    cr_assert_eq(attnd(&out, "tokenize -m '%s' --no-special < '%s'",
                       test_shared("vocab/ggml-vocab-llama-spm.gguf"), txt), 0);
    cr_expect_str_eq(out, "29871 15043 2787 29991\n");
    free(out);
    cr_assert_eq(attnd(&out, "tokenize -m '%s' < '%s'",
                       test_shared("vocab/ggml-vocab-llama-spm.gguf"), txt), 0);
    cr_expect_str_eq(out, "1 29871 15043 2787 29991\n");
    free(out);
    cr_assert_eq(attnd(&out, "tokenize -m '%s' < '%s'",
                       test_shared("vocab/ggml-vocab-gpt-2.gguf"), txt), 0);
    cr_expect_str_eq(out, "18435 2159 0\n");
    free(out);
    /* stories260K has no add-BOS key: BOS is added. Empty input: just BOS. */
    cr_assert_eq(attnd(&out, "tokenize -m '%s' < /dev/null", test_shared("models/stories260K.gguf")), 0);
    cr_expect_str_eq(out, "1\n");
    free(out);
    cr_assert_eq(attnd(&out, "tokenize -m '%s' --no-special < /dev/null",
                       test_shared("models/stories260K.gguf")), 0);
    cr_expect_str_eq(out, "\n");
    free(out);
    cr_assert_eq(attnd(&out, "tokenize < '%s' 2>/dev/null", txt), 2);
    free(out);
    remove(txt);
    free(txt);
}

Test(cli, mkmodel_writes_models_info_reads_back)
{
    static const char *const variants[] = {
        "--arch llama --dim 64 --layers 2 --heads 4 --kv-heads 2 --ff 96 --ctx 64 --type f32",
        "--arch llama --dim 64 --layers 1 --heads 8 --kv-heads 1 --ff 64 --ctx 32 --type q8_0",
        "--arch llama --dim 32 --layers 1 --heads 2 --ff 64 --ctx 32 --type bf16",
        "--arch gpt2 --dim 32 --layers 2 --heads 2 --ff 128 --ctx 32 --type f16",
    };
    char *path = test_tmp_path("mk.gguf");
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        char *out;
        cr_assert_eq(attnd(&out, "mkmodel -o '%s' %s --seed 3", path, variants[i]), 0, "%s",
                     variants[i]);
        free(out);
        cr_assert_eq(attnd(&out, "info '%s'", path), 0, "%s", variants[i]);
        cr_expect(strstr(out, "tokenizer: llama"), "%s", out);
        free(out);
    }
    char *out;
    cr_assert_eq(attnd(&out, "mkmodel -o '%s' --dim 64 --heads 4 --kv-heads 2 --ff 96 --layers 3 --ctx 100", path), 0);
    free(out);
    cr_assert_eq(attnd(&out, "info '%s'", path), 0);
    expect_line(out, "layers: 3");
    expect_line(out, "kv heads: 2 (GQA 2:1)");
    expect_line(out, "ffn: 96");
    expect_line(out, "context: 100");
    free(out);
    /* The built-in demo vocabulary tokenizes and adds BOS. */
    char *txt = test_tmp_path("mk.txt");
    FILE *fp = fopen(txt, "wb");
    fputs(" Hello World!", fp);
    fclose(fp);
    cr_assert_eq(attnd(&out, "tokenize -m '%s' < '%s'", path, txt), 0);
    cr_expect(strncmp(out, "1 ", 2) == 0, "%s", out);
    free(out);

    /* Same seed, same bytes. */
    char *path2 = test_tmp_path("mk2.gguf");
    cr_assert_eq(attnd(NULL, "mkmodel -o '%s' --dim 64 --heads 4 --kv-heads 2 --ff 96 --layers 3 --ctx 100", path2), 0);
    size_t l1, l2;
    char *a = test_read_file(path, &l1), *b = test_read_file(path2, &l2);
    cr_assert(a && b && l1 == l2 && memcmp(a, b, l1) == 0);
    free(a);
    free(b);

    /* Tokenizer copied from a vocabulary file. */
    cr_assert_eq(attnd(NULL, "mkmodel -o '%s' --dim 32 --heads 2 --layers 1 --ff 32 --type q8_0 --vocab '%s'",
                       path2, test_shared("vocab/ggml-vocab-llama-spm.gguf")), 0);
    cr_assert_eq(attnd(&out, "info '%s'", path2), 0);
    expect_line(out, "vocab: 32000");
    free(out);
    cr_assert_eq(attnd(&out, "tokenize -m '%s' --no-special < '%s'", path2, txt), 0);
    cr_expect_str_eq(out, "29871 15043 2787 29991\n");
    free(out);

    cr_expect_eq(attnd(NULL, "mkmodel -o '%s' --dim 48 --heads 4 --type q8_0 2>/dev/null", path2), 2);
    cr_expect_eq(attnd(NULL, "mkmodel -o '%s' --heads 3 2>/dev/null", path2), 2);
    cr_expect_eq(attnd(NULL, "mkmodel -o '%s' --type q4_9 2>/dev/null", path2), 2);
    cr_expect_eq(attnd(NULL, "mkmodel -o /nonexistent/dir/x.gguf 2>/dev/null"), 1);
    remove(path);
    remove(path2);
    remove(txt);
    free(path);
    free(path2);
    free(txt);
}

/* ------------------------------------------------------------ quantization */

/* The type `info --tensors` output OUT lists for tensor NAME, into TYPE. */
static const char *listed_type(const char *out, const char *name, char type[16])
{
    char key[128];
    snprintf(key, sizeof key, "\n  %s ", name);
    const char *at = strstr(out, key);
    if (!at || sscanf(at + strlen(key), "%15s", type) != 1)
        snprintf(type, 16, "(none)");
    return type;
}

/* The preset table decides each tensor of the reference's 256x2 model as
 * llama-quantize did when it wrote models/quant (no binary involved: this
 * holds before any quantizer exists). */
Test(quant_preset, matches_llama_quantize_on_the_shared_models)
{
    attnd_err err = {0};
    gguf_file *src;
    cr_assert_eq(gguf_open(test_shared("models/quant/llama-synth-256x2-f32.gguf"), &src, &err),
                 ATTND_OK, "%s", err.msg);
    quant_preset_model m = {.n_layer = 2, .n_gqa = 2, .has_output = true};
    for (int p = QUANT_PRESET_Q4_0; p < QUANT_PRESET_COUNT; p++) {
        char rel[96], lower[16];
        const char *name = quant_preset_name((quant_preset)p);
        size_t k = 0;
        for (; name[k] && k < sizeof lower - 1; k++)
            lower[k] = (char)(name[k] >= 'A' && name[k] <= 'Z' ? name[k] - 'A' + 'a' : name[k]);
        lower[k] = '\0';
        snprintf(rel, sizeof rel, "models/quant/llama-synth-256x2-%s.gguf", lower);
        gguf_file *ref;
        cr_assert_eq(gguf_open(test_shared(rel), &ref, &err), ATTND_OK, "%s", err.msg);
        uint64_t ftype = 0;
        const gguf_value *fv = gguf_get(ref, "general.file_type");
        cr_expect(fv && gguf_value_u64(fv, &ftype) && ftype == quant_preset_file_type((quant_preset)p),
                  "%s: general.file_type %llu, table says %u", name, (unsigned long long)ftype,
                  quant_preset_file_type((quant_preset)p));
        cr_expect_eq(gguf_tensor_count(ref), gguf_tensor_count(src));
        for (size_t i = 0; i < gguf_tensor_count(src); i++) {
            const gguf_tensor *t = gguf_tensor_at(src, i);
            const gguf_tensor *r = gguf_tensor_find(ref, t->name);
            gguf_dtype got = GGUF_DTYPE_COUNT_;
            cr_assert(r, "%s: no %s", rel, t->name);
            cr_expect(quant_preset_tensor_type((quant_preset)p, &m, t->name, t->n_dims, t->ne[0],
                                               t->type, &got) &&
                          got == r->type,
                      "%s %s: table says %s, llama-quantize wrote %s", name, t->name,
                      gguf_dtype_name(got), gguf_dtype_name(r->type));
        }
        gguf_close(ref);
    }
    gguf_close(src);
}

Test(quant_preset, names_parse_in_any_case_and_carry_the_reference_file_types)
{
    static const struct {
        const char *name;
        quant_preset p;
        uint32_t ftype;
    } ok[] = {
        {"q4_k_m", QUANT_PRESET_Q4_K_M, 15}, {"Q4_K_M", QUANT_PRESET_Q4_K_M, 15},
        {"Q4_k_M", QUANT_PRESET_Q4_K_M, 15}, {"iq4_xs", QUANT_PRESET_IQ4_XS, 30},
        {"IQ4_NL", QUANT_PRESET_IQ4_NL, 25}, {"q8_0", QUANT_PRESET_Q8_0, 7},
        {"Q5_0", QUANT_PRESET_Q5_0, 8},      {"q5_1", QUANT_PRESET_Q5_1, 9},
        {"q2_k", QUANT_PRESET_Q2_K, 10},     {"Q3_K_M", QUANT_PRESET_Q3_K_M, 12},
        {"q5_k_m", QUANT_PRESET_Q5_K_M, 17}, {"Q6_K", QUANT_PRESET_Q6_K, 18},
        {"q4_0", QUANT_PRESET_Q4_0, 2},      {"Q4_1", QUANT_PRESET_Q4_1, 3},
        {"f32", QUANT_PRESET_F32, 0},        {"F16", QUANT_PRESET_F16, 1},
        {"bf16", QUANT_PRESET_BF16, 32},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        quant_preset p = QUANT_PRESET_COUNT;
        cr_expect(quant_preset_parse(ok[i].name, &p) && p == ok[i].p, "%s", ok[i].name);
        cr_expect_eq(quant_preset_file_type(ok[i].p), ok[i].ftype, "%s", ok[i].name);
    }
    static const char *const bad[] = {"", "q4_k", "Q3_K", "Q4_K_S", "q4_k_m ", "IQ2_XXS", "f64"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        quant_preset p;
        cr_expect(!quant_preset_parse(bad[i], &p), "'%s' parsed", bad[i]);
    }
    cr_expect_str_eq(quant_preset_name(QUANT_PRESET_Q4_K_M), "Q4_K_M");
}

static gguf_dtype preset_type(quant_preset p, const quant_preset_model *m, const char *name,
                              uint64_t ne0)
{
    gguf_dtype t = GGUF_DTYPE_COUNT_;
    cr_assert(quant_preset_tensor_type(p, m, name, 2, ne0, GGUF_DTYPE_F32, &t),
              "%s %s [%llu] refused", quant_preset_name(p), name, (unsigned long long)ne0);
    return t;
}

/* The rules the shared 2-layer model cannot show: deep models, GQA 4:1, a
 * tied embedding, rows that fit no 256-block or no 32-block. */
Test(quant_preset, layer_rules_row_fallbacks_and_kept_tensors)
{
    quant_preset_model m22 = {.n_layer = 22, .n_gqa = 8, .has_output = true};
    char name[64];
    for (uint32_t l = 0; l < 22; l++) {
        /* Q4_K_M: the first and last eighth and every third layer between. */
        bool more = l < 2 || l >= 19 || l % 3 == 1;
        snprintf(name, sizeof name, "blk.%u.attn_v.weight", l);
        cr_expect_eq(preset_type(QUANT_PRESET_Q4_K_M, &m22, name, 2048),
                     more ? GGUF_DTYPE_Q6_K : GGUF_DTYPE_Q4_K, "%s", name);
        cr_expect_eq(preset_type(QUANT_PRESET_Q3_K_M, &m22, name, 2048),
                     l < 2 ? GGUF_DTYPE_Q5_K : GGUF_DTYPE_Q4_K, "%s", name);
        cr_expect_eq(preset_type(QUANT_PRESET_Q2_K, &m22, name, 2048), GGUF_DTYPE_Q4_K, "%s", name);
        cr_expect_eq(preset_type(QUANT_PRESET_IQ4_XS, &m22, name, 2048), GGUF_DTYPE_Q5_K, "%s", name);
        snprintf(name, sizeof name, "blk.%u.ffn_down.weight", l);
        cr_expect_eq(preset_type(QUANT_PRESET_Q5_K_M, &m22, name, 5632),
                     more ? GGUF_DTYPE_Q6_K : GGUF_DTYPE_Q5_K, "%s", name);
        cr_expect_eq(preset_type(QUANT_PRESET_Q3_K_M, &m22, name, 5632),
                     l < 1 ? GGUF_DTYPE_Q5_K : GGUF_DTYPE_Q4_K, "%s", name);
        cr_expect_eq(preset_type(QUANT_PRESET_IQ4_NL, &m22, name, 5632),
                     l < 2 ? GGUF_DTYPE_Q5_K : GGUF_DTYPE_IQ4_NL, "%s", name);
        snprintf(name, sizeof name, "blk.%u.attn_q.weight", l);
        cr_expect_eq(preset_type(QUANT_PRESET_Q4_K_M, &m22, name, 2048), GGUF_DTYPE_Q4_K);
    }
    quant_preset_model gqa2 = {.n_layer = 22, .n_gqa = 2, .has_output = true};
    cr_expect_eq(preset_type(QUANT_PRESET_Q2_K, &gqa2, "blk.3.attn_v.weight", 2048), GGUF_DTYPE_Q3_K);
    cr_expect_eq(preset_type(QUANT_PRESET_IQ4_XS, &gqa2, "blk.3.attn_v.weight", 2048), GGUF_DTYPE_IQ4_XS);
    /* GPT-2's fused QKV. */
    cr_expect_eq(preset_type(QUANT_PRESET_Q4_K_M, &gqa2, "blk.3.attn_qkv.weight", 768), GGUF_DTYPE_Q5_K);
    cr_expect_eq(preset_type(QUANT_PRESET_Q5_K_M, &gqa2, "blk.3.attn_qkv.weight", 768), GGUF_DTYPE_Q6_K);
    cr_expect_eq(preset_type(QUANT_PRESET_Q3_K_M, &gqa2, "blk.3.attn_qkv.weight", 768), GGUF_DTYPE_Q4_K);

    /* Output and embeddings: Q6_K, except Q8_0 stays; tied embedding = output. */
    cr_expect_eq(preset_type(QUANT_PRESET_Q4_0, &gqa2, "output.weight", 2048), GGUF_DTYPE_Q6_K);
    cr_expect_eq(preset_type(QUANT_PRESET_Q8_0, &gqa2, "output.weight", 2048), GGUF_DTYPE_Q8_0);
    cr_expect_eq(preset_type(QUANT_PRESET_Q4_K_M, &gqa2, "token_embd.weight", 2048), GGUF_DTYPE_Q4_K);
    quant_preset_model tied = {.n_layer = 12, .n_gqa = 1, .has_output = false};
    cr_expect_eq(preset_type(QUANT_PRESET_Q4_K_M, &tied, "token_embd.weight", 768), GGUF_DTYPE_Q6_K);
    cr_expect_eq(preset_type(QUANT_PRESET_IQ4_NL, &tied, "token_embd.weight", 768), GGUF_DTYPE_Q6_K);

    /* Rows of 96: 256-block types fall back to 32-block ones. */
    cr_expect_eq(preset_type(QUANT_PRESET_Q2_K, &gqa2, "blk.0.ffn_up.weight", 96), GGUF_DTYPE_IQ4_NL);
    cr_expect_eq(preset_type(QUANT_PRESET_Q3_K_M, &gqa2, "blk.0.ffn_up.weight", 96), GGUF_DTYPE_IQ4_NL);
    cr_expect_eq(preset_type(QUANT_PRESET_IQ4_XS, &gqa2, "blk.0.ffn_up.weight", 96), GGUF_DTYPE_IQ4_NL);
    cr_expect_eq(preset_type(QUANT_PRESET_Q4_K_M, &gqa2, "blk.0.ffn_up.weight", 96), GGUF_DTYPE_Q5_0);
    cr_expect_eq(preset_type(QUANT_PRESET_Q5_K_M, &gqa2, "blk.0.ffn_up.weight", 96), GGUF_DTYPE_Q5_1);
    cr_expect_eq(preset_type(QUANT_PRESET_Q6_K, &gqa2, "blk.0.ffn_up.weight", 96), GGUF_DTYPE_Q8_0);
    cr_expect_eq(preset_type(QUANT_PRESET_Q4_K_M, &gqa2, "output.weight", 96), GGUF_DTYPE_Q8_0);
    cr_expect_eq(preset_type(QUANT_PRESET_IQ4_NL, &gqa2, "output.weight", 96), GGUF_DTYPE_Q8_0);
    /* Rows of 80 fit no block: F16 for 256-block presets, refused by 32-block ones. */
    cr_expect_eq(preset_type(QUANT_PRESET_Q4_K_M, &gqa2, "blk.0.ffn_up.weight", 80), GGUF_DTYPE_F16);
    cr_expect_eq(preset_type(QUANT_PRESET_Q2_K, &gqa2, "blk.0.ffn_up.weight", 80), GGUF_DTYPE_F16);
    cr_expect_eq(preset_type(QUANT_PRESET_Q4_K_M, &gqa2, "output.weight", 80), GGUF_DTYPE_F16);
    cr_expect_eq(preset_type(QUANT_PRESET_F16, &gqa2, "output.weight", 80), GGUF_DTYPE_F16);
    gguf_dtype t;
    cr_expect(!quant_preset_tensor_type(QUANT_PRESET_Q4_0, &gqa2, "blk.0.ffn_up.weight", 2, 80,
                                        GGUF_DTYPE_F32, &t));
    cr_expect(!quant_preset_tensor_type(QUANT_PRESET_Q8_0, &gqa2, "token_embd.weight", 2, 48,
                                        GGUF_DTYPE_F32, &t));
    cr_expect(!quant_preset_tensor_type(QUANT_PRESET_IQ4_NL, &gqa2, "blk.0.attn_q.weight", 2, 80,
                                        GGUF_DTYPE_F32, &t));

    /* Kept as they are: vectors, norms, position embeddings. */
    static const struct {
        const char *name;
        uint32_t n_dims;
    } kept[] = {{"blk.0.attn_norm.weight", 1}, {"blk.0.attn_qkv.bias", 1},
                {"output_norm.weight", 1},     {"position_embd.weight", 2},
                {"blk.0.ffn_gate_inp.weight", 2}, {"blk.0.ffn_up.weight", 1}};
    for (int p = 0; p < QUANT_PRESET_COUNT; p++)
        for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
            cr_expect(quant_preset_tensor_type((quant_preset)p, &gqa2, kept[i].name, kept[i].n_dims,
                                               256, GGUF_DTYPE_F16, &t) &&
                          t == GGUF_DTYPE_F16,
                      "%s %s", quant_preset_name((quant_preset)p), kept[i].name);
        }
}

/* Tensors whose types the quantize tests check, in this order. */
static const char *const k_checked[] = {
    "token_embd.weight",        "output.weight",         "blk.0.attn_q.weight",
    "blk.0.attn_v.weight",      "blk.1.attn_v.weight",   "blk.0.attn_output.weight",
    "blk.1.ffn_down.weight",    "blk.0.ffn_norm.weight",
};
enum { N_CHECKED = sizeof k_checked / sizeof k_checked[0] };

/* Per preset: the types of k_checked in a model whose rows all fit 256-blocks
 * (dim 256, FFN 512) and in one whose rows of 96 take the fallbacks (dim 96,
 * FFN 256: ffn_down's rows still fit). Both 2 layers, GQA 2:1. */
static const struct {
    const char *preset;
    unsigned ftype;
    const char *fit[N_CHECKED], *dim96[N_CHECKED];
} k_expect[] = {
    {"f32", 0, {"F32", "F32", "F32", "F32", "F32", "F32", "F32", "F32"},
     {"F32", "F32", "F32", "F32", "F32", "F32", "F32", "F32"}},
    {"F16", 1, {"F16", "F16", "F16", "F16", "F16", "F16", "F16", "F32"},
     {"F16", "F16", "F16", "F16", "F16", "F16", "F16", "F32"}},
    {"bf16", 32, {"BF16", "BF16", "BF16", "BF16", "BF16", "BF16", "BF16", "F32"},
     {"BF16", "BF16", "BF16", "BF16", "BF16", "BF16", "BF16", "F32"}},
    {"q4_0", 2, {"Q4_0", "Q6_K", "Q4_0", "Q4_0", "Q4_0", "Q4_0", "Q4_0", "F32"},
     {"Q4_0", "Q8_0", "Q4_0", "Q4_0", "Q4_0", "Q4_0", "Q4_0", "F32"}},
    {"Q4_1", 3, {"Q4_1", "Q6_K", "Q4_1", "Q4_1", "Q4_1", "Q4_1", "Q4_1", "F32"},
     {"Q4_1", "Q8_0", "Q4_1", "Q4_1", "Q4_1", "Q4_1", "Q4_1", "F32"}},
    {"q5_0", 8, {"Q5_0", "Q6_K", "Q5_0", "Q5_0", "Q5_0", "Q5_0", "Q5_0", "F32"},
     {"Q5_0", "Q8_0", "Q5_0", "Q5_0", "Q5_0", "Q5_0", "Q5_0", "F32"}},
    {"Q5_1", 9, {"Q5_1", "Q6_K", "Q5_1", "Q5_1", "Q5_1", "Q5_1", "Q5_1", "F32"},
     {"Q5_1", "Q8_0", "Q5_1", "Q5_1", "Q5_1", "Q5_1", "Q5_1", "F32"}},
    {"q8_0", 7, {"Q8_0", "Q8_0", "Q8_0", "Q8_0", "Q8_0", "Q8_0", "Q8_0", "F32"},
     {"Q8_0", "Q8_0", "Q8_0", "Q8_0", "Q8_0", "Q8_0", "Q8_0", "F32"}},
    {"Q2_K", 10, {"Q2_K", "Q6_K", "Q2_K", "Q3_K", "Q3_K", "Q3_K", "Q3_K", "F32"},
     {"IQ4_NL", "Q8_0", "IQ4_NL", "IQ4_NL", "IQ4_NL", "IQ4_NL", "Q3_K", "F32"}},
    {"q3_k_m", 12, {"Q3_K", "Q6_K", "Q3_K", "Q5_K", "Q5_K", "Q4_K", "Q4_K", "F32"},
     {"IQ4_NL", "Q8_0", "IQ4_NL", "Q5_1", "Q5_1", "Q5_0", "Q4_K", "F32"}},
    {"Q4_K_M", 15, {"Q4_K", "Q6_K", "Q4_K", "Q4_K", "Q6_K", "Q4_K", "Q6_K", "F32"},
     {"Q5_0", "Q8_0", "Q5_0", "Q5_0", "Q8_0", "Q5_0", "Q6_K", "F32"}},
    {"q5_k_m", 17, {"Q5_K", "Q6_K", "Q5_K", "Q5_K", "Q6_K", "Q5_K", "Q6_K", "F32"},
     {"Q5_1", "Q8_0", "Q5_1", "Q5_1", "Q8_0", "Q5_1", "Q6_K", "F32"}},
    {"Q6_K", 18, {"Q6_K", "Q6_K", "Q6_K", "Q6_K", "Q6_K", "Q6_K", "Q6_K", "F32"},
     {"Q8_0", "Q8_0", "Q8_0", "Q8_0", "Q8_0", "Q8_0", "Q6_K", "F32"}},
    {"iq4_nl", 25, {"IQ4_NL", "Q6_K", "IQ4_NL", "IQ4_NL", "IQ4_NL", "IQ4_NL", "IQ4_NL", "F32"},
     {"IQ4_NL", "Q8_0", "IQ4_NL", "IQ4_NL", "IQ4_NL", "IQ4_NL", "IQ4_NL", "F32"}},
    {"IQ4_XS", 30, {"IQ4_XS", "Q6_K", "IQ4_XS", "IQ4_XS", "IQ4_XS", "IQ4_XS", "IQ4_XS", "F32"},
     {"IQ4_NL", "Q8_0", "IQ4_NL", "IQ4_NL", "IQ4_NL", "IQ4_NL", "IQ4_XS", "F32"}},
};

static const char *const k_shapes[2] = {
    "--dim 256 --heads 4 --kv-heads 2 --ff 512 --layers 2 --ctx 64",
    "--dim 96 --heads 4 --kv-heads 2 --ff 256 --layers 2 --ctx 64",
};

static void expect_types(const char *out, const char *const *want, const char *what)
{
    char type[16];
    for (size_t k = 0; k < N_CHECKED; k++)
        cr_expect_str_eq(listed_type(out, k_checked[k], type), want[k], "%s: %s", what,
                         k_checked[k]);
}

Test(cli, quantize_writes_every_preset_with_the_reference_mix)
{
    char *f32 = test_tmp_path("qsrc.gguf"), *q = test_tmp_path("q.gguf");
    for (int s = 0; s < 2; s++) {
        cr_assert_eq(attnd(NULL, "mkmodel -o '%s' %s --seed 5", f32, k_shapes[s]), 0);
        for (size_t i = 0; i < sizeof k_expect / sizeof k_expect[0]; i++) {
            char what[160], *out, line[96];
            snprintf(what, sizeof what, "%s, %s", k_expect[i].preset, k_shapes[s]);
            int rc = attnd(&out, "quantize --threads 2 '%s' '%s' %s 2>&1", f32, q,
                           k_expect[i].preset);
            cr_expect_eq(rc, 0, "%s: %s", what, out);
            cr_expect(rc != 0 || strstr(out, "bits per weight"), "%s: no summary: %s", what, out);
            free(out);
            if (rc != 0)
                continue;
            cr_assert_eq(attnd(&out, "info --tensors --meta '%s'", q), 0, "%s", what);
            expect_types(out, s == 0 ? k_expect[i].fit : k_expect[i].dim96, what);
            snprintf(line, sizeof line, "general.file_type (uint32) = %u", k_expect[i].ftype);
            cr_expect(strstr(out, line), "%s: lacks %s", what, line);
            cr_expect(strstr(out, "general.quantization_version (uint32) = 2"), "%s", what);
            cr_expect(strstr(out, "\nbits per weight: "), "%s", what);
            free(out);
        }
    }
    remove(f32);
    remove(q);
    free(f32);
    free(q);
}

/* What the summary and info say about sizes, on types whose bits per weight
 * are exact: Q8_0 is 34 bytes per 32, F16 2 per 1. */
Test(cli, quantize_and_info_report_sizes_and_bits_per_weight)
{
    char *f32 = test_tmp_path("qsz.gguf"), *q = test_tmp_path("qsz_q.gguf"), *out;
    cr_assert_eq(attnd(NULL, "mkmodel -o '%s' %s", f32, k_shapes[0]), 0);
    cr_assert_eq(attnd(&out, "info '%s'", f32), 0);
    expect_line(out, "bits per weight: 32.00 (all tensors), 32.00 (weight matrices)");
    cr_expect(strstr(out, "\ntype F32: 21 tensors, "), "%s", out);
    free(out);
    cr_assert_eq(attnd(&out, "quantize '%s' '%s' f16", f32, q), 0);
    cr_expect(strstr(out, "bits per weight 32.00 -> 16.0"), "%s", out);
    cr_expect(strstr(out, "F16") && strstr(out, "16 tensors"), "%s", out);
    free(out);
    cr_assert_eq(attnd(&out, "info '%s'", q), 0);
    cr_expect(strstr(out, "\ntype F16: 16 tensors, "), "%s", out);
    cr_expect(strstr(out, "\ntype F32: 5 tensors, 5120 bytes"), "%s", out);
    cr_expect(strstr(out, ", 16.00 (weight matrices)\n"), "%s", out);
    free(out);
    if (attnd(&out, "quantize '%s' '%s' q8_0 2>&1", f32, q) == 0) {
        free(out);
        cr_assert_eq(attnd(&out, "info '%s'", q), 0);
        cr_expect(strstr(out, ", 8.50 (weight matrices)\n"), "%s", out);
    } else {
        cr_expect_fail("quantize to q8_0 failed: %s", out);
    }
    free(out);
    remove(f32);
    remove(q);
    free(f32);
    free(q);
}

/* `mkmodel --type P` chooses per tensor as `quantize` to P does; and a
 * quantized file is the same whatever the thread count. */
Test(cli, mkmodel_types_are_the_presets_and_threads_do_not_change_bytes)
{
    char *f32 = test_tmp_path("mq.gguf"), *mk = test_tmp_path("mq_mk.gguf");
    char *q1 = test_tmp_path("mq_1.gguf"), *q3 = test_tmp_path("mq_3.gguf");
    cr_assert_eq(attnd(NULL, "mkmodel -o '%s' %s", f32, k_shapes[1]), 0);
    for (size_t i = 0; i < sizeof k_expect / sizeof k_expect[0]; i++) {
        char *out;
        int rc = attnd(&out, "mkmodel -o '%s' %s --type %s 2>&1", mk, k_shapes[1], k_expect[i].preset);
        cr_expect_eq(rc, 0, "mkmodel --type %s: %s", k_expect[i].preset, out);
        free(out);
        if (rc != 0)
            continue;
        cr_assert_eq(attnd(&out, "info --tensors --meta '%s'", mk), 0);
        expect_types(out, k_expect[i].dim96, k_expect[i].preset);
        char line[96];
        snprintf(line, sizeof line, "general.file_type (uint32) = %u", k_expect[i].ftype);
        cr_expect(strstr(out, line), "mkmodel --type %s: lacks %s", k_expect[i].preset, line);
        free(out);
    }
    static const char *const threaded[] = {"Q4_K_M", "q8_0", "iq4_xs", "q2_k"};
    for (size_t i = 0; i < sizeof threaded / sizeof threaded[0]; i++) {
        int a = attnd(NULL, "quantize --threads 1 '%s' '%s' %s 2>/dev/null", f32, q1, threaded[i]);
        int b = attnd(NULL, "quantize --threads 3 '%s' '%s' %s 2>/dev/null", f32, q3, threaded[i]);
        cr_expect(a == 0 && b == 0, "quantize %s failed", threaded[i]);
        if (a || b)
            continue;
        size_t l1, l3;
        char *x = test_read_file(q1, &l1), *y = test_read_file(q3, &l3);
        cr_expect(x && y && l1 == l3 && memcmp(x, y, l1) == 0, "%s: threads change the bytes",
                  threaded[i]);
        free(x);
        free(y);
    }
    /* mkmodel takes any case and refuses what a 32-block preset cannot store. */
    cr_expect_eq(attnd(NULL, "mkmodel -o '%s' --dim 80 --heads 4 --type Q4_0 2>/dev/null", mk), 2);
    cr_expect_eq(attnd(NULL, "mkmodel -o '%s' --dim 64 --heads 4 --type Q4_K 2>/dev/null", mk), 2);
    remove(f32);
    remove(mk);
    remove(q1);
    remove(q3);
    free(f32);
    free(mk);
    free(q1);
    free(q3);
}

Test(cli, quantize_fails_clearly)
{
    char *f32 = test_tmp_path("qbad.gguf"), *q = test_tmp_path("qbad_q.gguf"), *out;
    cr_assert_eq(attnd(NULL, "mkmodel -o '%s' --dim 80 --heads 4 --ff 96 --layers 1", f32), 0);
    cr_expect_eq(attnd(&out, "quantize '%s' '%s' Q4_9 2>&1", f32, q), 2);
    cr_expect(strstr(out, "'Q4_9'") && strstr(out, "Q4_K_M"), "%s", out);
    free(out);
    cr_expect_eq(attnd(&out, "quantize /nonexistent/in.gguf '%s' Q4_K_M 2>&1", q), 1);
    cr_expect(strstr(out, "/nonexistent/in.gguf: cannot open"), "%s", out);
    free(out);
    cr_expect_eq(attnd(&out, "quantize '%s' /nonexistent/dir/out.gguf f16 2>&1", f32), 1);
    cr_expect(strstr(out, "/nonexistent/dir/out.gguf: cannot create"), "%s", out);
    free(out);
    cr_expect_eq(attnd(&out, "quantize '%s' '%s' f16 2>&1", f32, f32), 1);
    cr_expect(strstr(out, "overwrite the input"), "%s", out);
    free(out);
    /* Rows of 80 are no whole Q4_0 block: the error names the tensor. */
    cr_expect_eq(attnd(&out, "quantize '%s' '%s' q4_0 2>&1", f32, q), 1);
    cr_expect(strstr(out, "tensor 'token_embd.weight'") && strstr(out, "80"), "%s", out);
    free(out);
    FILE *fp = fopen(q, "rb");
    cr_expect(!fp, "a failed quantize left %s", q);
    if (fp)
        fclose(fp);
    cr_expect_eq(attnd(NULL, "quantize '%s' '%s' 2>/dev/null", f32, q), 2);
    cr_expect_eq(attnd(NULL, "quantize --threads 0 '%s' '%s' f16 2>/dev/null", f32, q), 2);
    /* A file we can read but not convert: a type without a dequantizer. */
    char *bad = test_tmp_path("qbad_iq2.gguf");
    gguf_writer *w = gguf_writer_new();
    static uint8_t blocks[66 * 2];
    uint64_t ne[2] = {256, 2};
    attnd_err err = {0};
    cr_assert_eq(gguf_writer_set_str(w, "general.architecture", "llama", &err), ATTND_OK);
    cr_assert_eq(gguf_writer_add_tensor(w, "blk.0.attn_q.weight", GGUF_DTYPE_IQ2_XXS, 2, ne,
                                        blocks, &err), ATTND_OK, "%s", err.msg);
    cr_assert_eq(gguf_writer_write(w, bad, &err), ATTND_OK, "%s", err.msg);
    gguf_writer_free(w);
    cr_expect_eq(attnd(&out, "quantize '%s' '%s' q8_0 2>&1", bad, q), 1);
    cr_expect(strstr(out, "tensor 'blk.0.attn_q.weight'") && strstr(out, "IQ2_XXS"), "%s", out);
    free(out);
    remove(bad);
    free(bad);
    remove(f32);
    free(f32);
    free(q);
}

/* The shared F32 model quantized by us to each preset holds, tensor for
 * tensor, the bytes llama-quantize wrote to models/quant: same types, same
 * blocks (the quantizers reproduce the reference's without an importance
 * matrix). */
Test(cli, quantize_reproduces_llama_quantize_on_the_shared_model)
{
    char *q = test_tmp_path("qref.gguf");
    char src[1024];
    snprintf(src, sizeof src, "%s", test_shared("models/quant/llama-synth-256x2-f32.gguf"));
    static const char *const presets[] = {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k",
                                          "q3_k_m", "q4_k_m", "q5_k_m", "q6_k", "iq4_nl", "iq4_xs"};
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        char rel[96];
        snprintf(rel, sizeof rel, "models/quant/llama-synth-256x2-%s.gguf", presets[i]);
        if (attnd(NULL, "quantize --threads 2 '%s' '%s' %s >/dev/null 2>&1", src, q, presets[i]) != 0) {
            cr_expect_fail("quantize to %s failed", presets[i]);
            continue;
        }
        attnd_err err = {0};
        gguf_file *ours, *ref;
        cr_assert_eq(gguf_open(q, &ours, &err), ATTND_OK, "%s", err.msg);
        cr_assert_eq(gguf_open(test_shared(rel), &ref, &err), ATTND_OK, "%s", err.msg);
        cr_expect_eq(gguf_tensor_count(ours), gguf_tensor_count(ref));
        for (size_t k = 0; k < gguf_tensor_count(ref); k++) {
            const gguf_tensor *r = gguf_tensor_at(ref, k), *o = gguf_tensor_find(ours, r->name);
            cr_assert(o, "%s: no %s", presets[i], r->name);
            cr_expect(o->type == r->type && o->nbytes == r->nbytes &&
                          memcmp(o->data, r->data, (size_t)r->nbytes) == 0,
                      "%s %s: ours %s differs from llama-quantize's %s", presets[i], r->name,
                      gguf_dtype_name(o->type), gguf_dtype_name(r->type));
        }
        gguf_close(ours);
        gguf_close(ref);
    }
    remove(q);
    free(q);
}

/* `attnd attention` answers what /v1/attention does: on the reference's text
 * its tokens (prompt and greedy continuation) and every row agree with the
 * float64 forward (tests/data/attention) to 1e-5; bad options fail clearly. */
Test(cli, attention_matches_the_float64_reference)
{
    char *ref_txt = test_read_file(ATTND_SOURCE_DIR "/tests/data/attention/aidreams260K-echoes.json", NULL);
    cr_assert(ref_txt);
    cJSON *ref = cJSON_Parse(ref_txt);
    free(ref_txt);
    char *out;
    cr_assert_eq(attnd(&out, "attention -m '%s' -p 'Echoes of the old hall rang' -n 4 --threads 1",
                       test_shared("models/aidreams260K.gguf")),
                 0);
    cJSON *o = cJSON_Parse(out);
    cr_assert(o, "%s", out);
    const cJSON *ids = cJSON_GetObjectItem(ref, "ids"), *toks = cJSON_GetObjectItem(o, "tokens");
    cr_assert_eq(cJSON_GetArraySize(toks), cJSON_GetArraySize(ids));
    for (int i = 0; i < cJSON_GetArraySize(ids); i++)
        cr_expect_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(toks, i), "id")->valueint,
                     cJSON_GetArrayItem(ids, i)->valueint, "token %d", i);
    int n = cJSON_GetArraySize(ids);
    for (const cJSON *h = cJSON_GetObjectItem(o, "attention")->child; h; h = h->next) {
        const cJSON *want = cJSON_GetArrayItem(
            cJSON_GetArrayItem(cJSON_GetObjectItem(ref, "probs"), cJSON_GetObjectItem(h, "layer")->valueint),
            cJSON_GetObjectItem(h, "head")->valueint);
        for (int p = 0; p < n; p++)
            for (int j = 0; j <= p; j++) {
                double g = cJSON_GetArrayItem(cJSON_GetArrayItem(cJSON_GetObjectItem(h, "probs"), p), j)->valuedouble;
                double w = cJSON_GetArrayItem(cJSON_GetArrayItem(want, p), j)->valuedouble;
                cr_expect(fabs(g - w) <= 1e-5, "row %d col %d: %.9g vs %.9g", p, j, g, w);
            }
    }
    cJSON_Delete(o);
    cJSON_Delete(ref);
    free(out);
    cr_expect_eq(attnd(&out, "attention -m '%s' -p x --layers 9 2>&1", test_shared("models/aidreams260K.gguf")), 2);
    cr_expect(strstr(out, "layers[0]: not a layer of this model"), "%s", out);
    free(out);
    cr_expect_eq(attnd(NULL, "attention -p x 2>/dev/null"), 2);
}
