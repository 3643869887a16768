/* test_cli.c - the attnd binary as a user runs it: help texts, `info` on the
 * shared models, `tokenize` against the vocabulary test vectors, `mkmodel`
 * output read back, and clear failures on bad input. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
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
    cr_expect(strstr(out, "info") && strstr(out, "tokenize") && strstr(out, "mkmodel"));
    free(out);
    static const struct {
        const char *cmd;
        const char *opts[8];
    } c[] = {
        {"info", {"--meta", "--tensors", "--help"}},
        {"tokenize", {"--model", "--no-special", "--pieces", "--help"}},
        {"mkmodel", {"--output", "--arch", "--dim", "--layers", "--heads", "--kv-heads", "--ff", "--vocab"}},
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
         {"architecture: llama", "context: 128", "embedding: 64", "layers: 4", "heads: 4",
          "kv heads: 4 (MHA 1:1)", "ffn: 172", "rope base: 10000", "norm eps: 1e-05",
          "vocab: 512", "tensors: 39 (F32 39)"}},
        {"models/stories260K.gguf",
         {"architecture: llama", "context: 512", "embedding: 64", "layers: 5", "heads: 8",
          "kv heads: 4 (GQA 2:1)", "ffn: 172", "vocab: 512",
          "kv bytes per token: 640 (F16), 1280 (F32); 2x less than MHA"}},
        {"models/llama-synth-64x2-gqa4.gguf",
         {"architecture: llama", "context: 256", "embedding: 64", "layers: 2", "heads: 8",
          "kv heads: 2 (GQA 4:1)", "ffn: 256", "vocab: 32000", "adds: bos yes, eos no"}},
        {"models/llama-synth-128x2-q8_0.gguf",
         {"architecture: llama", "context: 256", "embedding: 128", "layers: 2", "heads: 4",
          "kv heads: 2 (GQA 2:1)", "ffn: 512", "vocab: 32000"}},
        {"models/gpt2-synth-64x2.gguf",
         {"architecture: gpt2", "context: 128", "embedding: 64", "layers: 2", "heads: 4",
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
