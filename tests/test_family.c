/* test_family.c - the model families beyond the first Llama: Llama 3 with
 * rope_freqs, a key_length head size with linear rope scaling, Qwen 2 (biases,
 * NeoX rotation, tied output) and Qwen 3 (per-head norms), in F32 and F16,
 * against the goldens in tests/data/golden (llama.cpp, or the float64 numpy
 * reference for Qwen 3; tests/ref/make-goldens.sh), fed one position per step
 * and as one chunk; what `attnd info` says about them. Each golden names the
 * `attnd mkmodel` arguments of its model, which is rebuilt here
 * (test_golden_model). */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "model.h"
#include "test_util.h"

static int32_t argmax(const float *x, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return (int32_t)best;
}

/* Teacher-forces the golden's tokens, one per step or as one chunk, and
 * compares every stored column; the argmax over the whole row must match the
 * reference's where our top two are further apart than the tolerance. */
static void check_family(const char *name, double tol)
{
    char path[512];
    char *json = test_golden_json(name);
    size_t P, n_argmax;
    int32_t *tokens = test_json_ints(json, "input_tokens", &P);
    int32_t *want_argmax = test_json_ints(json, "argmax", &n_argmax);
    uint32_t V = (uint32_t)test_json_int(json, "vocab"), stride = (uint32_t)test_json_int(json, "stride");
    uint32_t cols = (V + stride - 1) / stride;
    cr_assert_eq(n_argmax, P);
    cr_assert_eq((size_t)test_json_int(json, "positions"), P);
    snprintf(path, sizeof path, TEST_GOLDEN_DIR "/%s.logits.f32", name);
    size_t bytes;
    float *ref = (float *)(void *)test_read_file(path, &bytes);
    cr_assert(ref && bytes == P * cols * sizeof(float), "%s: %zu bytes", path, bytes);

    char *model_path = test_golden_model(name);
    attnd_err err = {0};
    model *m;
    cr_assert_eq(model_load(model_path, &m, &err), ATTND_OK, "%s", err.msg);
    cr_assert_eq(model_hparams_of(m)->n_vocab, V);
    float *out = malloc(P * V * sizeof(float));
    cr_assert(out);
    for (int chunk = 0; chunk < 2; chunk++) {
        engine_params ep = {.n_threads = 2, .kv_type = KV_DTYPE_F32, .kv_blocks = (uint32_t)P / 16 + 2,
                            .max_entries = (uint32_t)P};
        engine *e;
        uint32_t seq;
        cr_assert_eq(engine_new(m, &ep, &e, &err), ATTND_OK, "%s", err.msg);
        cr_assert_eq(engine_seq_open(e, &seq, &err), ATTND_OK);
        if (chunk) {
            engine_entry *en = calloc(P, sizeof *en);
            for (uint32_t i = 0; i < P; i++)
                en[i] = (engine_entry){seq, tokens[i], i, true};
            cr_assert_eq(engine_step(e, en, P, out, &err), ATTND_OK, "%s", err.msg);
            free(en);
        } else {
            for (uint32_t i = 0; i < P; i++) {
                engine_entry en = {seq, tokens[i], i, true};
                cr_assert_eq(engine_step(e, &en, 1, out + (size_t)i * V, &err), ATTND_OK, "%s",
                             err.msg);
            }
        }
        double worst = 0;
        for (size_t p = 0; p < P; p++) {
            const float *row = out + p * V;
            for (uint32_t c = 0; c < cols; c++) {
                double d = fabs((double)row[(size_t)c * stride] - (double)ref[p * cols + c]);
                worst = d > worst ? d : worst;
            }
            int32_t best = argmax(row, V);
            float second = -INFINITY;
            for (uint32_t i = 0; i < V; i++)
                if ((int32_t)i != best && row[i] > second)
                    second = row[i];
            if (row[best] - second > 2 * tol)
                cr_expect_eq(best, want_argmax[p], "%s row %zu: argmax %d, reference %d", name, p,
                             best, want_argmax[p]);
        }
        cr_log_info("%s (%s): max |diff| %.3g over %u x %u logits, tolerance %.3g", name,
                    chunk ? "one chunk" : "one per step", worst, (unsigned)P, cols, tol);
        cr_expect(worst <= tol, "%s (%s): max |diff| %.3g > %.3g", name,
                  chunk ? "one chunk" : "one per step", worst, tol);
        engine_free(e);
    }
    free(out);
    model_free(m);
    remove(model_path);
    free(model_path);
    free(ref);
    free(tokens);
    free(want_argmax);
    free(json);
}

#define F32_TOL 2e-4
#define F16_TOL 1e-3

/* rope_freqs.weight divides the low frequencies (Llama 3.1); 3 heads sharing
 * one KV head. */
Test(family, llama3_rope_freqs_f32, .timeout = 120) { check_family("llama3-rope-freqs-f32", F32_TOL); }
Test(family, llama3_rope_freqs_f16, .timeout = 120) { check_family("llama3-rope-freqs-f16", F16_TOL); }
/* key_length 24 with 5 heads over an 80-wide model (q is 120 wide), linear
 * rope scaling x2. */
Test(family, llama3_key_length_f32, .timeout = 120) { check_family("llama3-key-length-f32", F32_TOL); }
Test(family, llama3_key_length_f16, .timeout = 120) { check_family("llama3-key-length-f16", F16_TOL); }
/* Q/K/V biases, NeoX rotation, base 1e6, tied output. */
Test(family, qwen2_f32, .timeout = 120) { check_family("qwen2-bias-tied-f32", F32_TOL); }
Test(family, qwen2_f16, .timeout = 120) { check_family("qwen2-bias-tied-f16", F16_TOL); }
/* Per-head RMSNorm of q and k before the rotation, head size 32 of a
 * 64-wide model. */
Test(family, qwen3_f32, .timeout = 120) { check_family("qwen3-qk-norm-f32", F32_TOL); }
Test(family, qwen3_f16, .timeout = 120) { check_family("qwen3-qk-norm-f16", F16_TOL); }

/* ------------------------------------------------------------ attnd info */

static char *info_of(const char *golden)
{
    char *model_path = test_golden_model(golden);
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, "'%s' info '%s'", test_attnd_bin(), model_path);
    cr_assert_eq(test_run(cmd, &out), 0, "%s", cmd);
    remove(model_path);
    free(model_path);
    return out;
}

static void expect_line(const char *out, const char *line)
{
    cr_expect(strstr(out, line), "attnd info lacks \"%s\":\n%s", line, out);
}

Test(family_info, qwen3, .timeout = 60)
{
    char *out = info_of("qwen3-qk-norm-f32");
    expect_line(out, "architecture: qwen3 (Qwen 3: per-head Q/K RMSNorm)");
    expect_line(out, "head dim: 32 (from key_length)");
    expect_line(out, "rope: neox (halves)");
    expect_line(out, "rope base: 1e+06");
    expect_line(out, "rope scaling: none");
    expect_line(out, "output: tied to token_embd.weight");
    expect_line(out, "end of generation: 151645 (<|im_end|>), 151643 (<|endoftext|>)");
    expect_line(out, "pre-tokenizer: qwen2");
    free(out);
}

Test(family_info, llama3, .timeout = 60)
{
    char *out = info_of("llama3-rope-freqs-f32");
    expect_line(out, "architecture: llama (Llama 2/3, Mistral, SmolLM)");
    expect_line(out, "rope: norm (adjacent pairs)");
    expect_line(out, "rope freqs: rope_freqs.weight");
    expect_line(out, "output: output.weight");
    expect_line(out, "end of generation: 128001 (<|end_of_text|>), 128009 (<|eot_id|>)");
    expect_line(out, "pre-tokenizer: llama-bpe");
    free(out);
    out = info_of("llama3-key-length-f16");
    expect_line(out, "head dim: 24 (from key_length)");
    expect_line(out, "rope scaling: linear, positions / 2");
    free(out);
}
