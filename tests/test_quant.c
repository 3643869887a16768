/* test_quant.c - the weight-type table (model/quant): dequantization against
 * the reference's bits (../shared/golden/dequant), every SIMD dot against the
 * scalar reference on random blocks at awkward sizes, batch-slot invariance,
 * activation quantizers bit for bit across ISAs, quantizer round trips,
 * bad-scale detection; and the forward pass of one model in twelve
 * quantizations against llama.cpp's logits (../shared/golden/quant). */
#include <criterion/criterion.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attnd_half.h"
#include "engine.h"
#include "gguf.h"
#include "model.h"
#include "quant.h"
#include "quant_blocks.h"
#include "test_util.h"

static const char *const k_types[] = {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0",  "q2_k",
                                      "q3_k", "q4_k", "q5_k", "q6_k", "iq4_nl", "iq4_xs"};

static uint64_t rng_next(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 11;
}

/* Uniform in [-1, 1). */
static float frand(uint64_t *s)
{
    return (float)((double)rng_next(s) * 0x1.0p-53 * 2.0 - 1.0);
}

/* Values like a weight row's: a random scale per 32 (so sub-block scales
 * differ), a few outliers, an exact zero now and then. */
static void fill_weights(float *x, size_t n, uint64_t *s)
{
    for (size_t b = 0; b < n; b += 32) {
        const float scale = ldexpf(1.0f, (int)(frand(s) * 6.0f) - 3);
        for (size_t i = b; i < b + 32 && i < n; i++) {
            float v = frand(s) * scale;
            uint64_t r = rng_next(s) % 64;
            x[i] = r == 0 ? v * 8.0f : r == 1 ? 0.0f : v;
        }
    }
}

static gguf_dtype type_by_name(const char *name)
{
    for (uint32_t t = 0; t < GGUF_DTYPE_COUNT_; t++)
        if (strcmp(gguf_dtype_name((gguf_dtype)t), name) == 0)
            return (gguf_dtype)t;
    cr_assert_fail("no type %s", name);
    return GGUF_DTYPE_F32;
}

/* Weight types the table can compute with, quantized ones only. */
static bool is_quant_weight(const quant_traits *qt)
{
    return qt && qt->dot[QUANT_ISA_SCALAR] && qt->act_type != GGUF_DTYPE_F32;
}

/* ------------------------------------------------------------ dequantization */

Test(quant, dequantization_matches_the_reference_bit_for_bit)
{
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "golden/dequant/%s.json", k_types[i]);
        char *json = test_read_file(test_shared(rel), NULL);
        cr_assert(json, "cannot read %s", rel);
        char *model_rel = test_json_str(json, "model"), *tensor = test_json_str(json, "tensor");
        char *type_name = test_json_str(json, "type");
        size_t rows = (size_t)test_json_int(json, "rows"), cols = (size_t)test_json_int(json, "cols");
        snprintf(rel, sizeof rel, "golden/dequant/%s.f32", k_types[i]);
        size_t bytes;
        float *want = (float *)(void *)test_read_file(test_shared(rel), &bytes);
        cr_assert(want && bytes == rows * cols * sizeof(float), "%s: %zu bytes", rel, bytes);

        char path[160];
        snprintf(path, sizeof path, "models/%s", model_rel);
        gguf_file *f;
        attnd_err err = {0};
        cr_assert_eq(gguf_open(test_shared(path), &f, &err), ATTND_OK, "%s", err.msg);
        const gguf_tensor *t = gguf_tensor_find(f, tensor);
        cr_assert(t, "%s: no tensor %s", path, tensor);
        cr_assert_str_eq(gguf_dtype_name(t->type), type_name);
        cr_assert_eq(t->n_elems, rows * cols);
        float *got = malloc(bytes);
        cr_assert_eq(quant_to_f32(t->type, t->data, got, rows * cols), 0, "%s: no entry",
                     type_name);
        size_t bad = 0;
        while (bad < rows * cols && memcmp(&got[bad], &want[bad], sizeof *got) == 0)
            bad++;
        cr_expect_eq(bad, rows * cols, "%s %s: element %zu (row %zu) is %.9g, reference %.9g",
                     type_name, tensor, bad, bad / cols, (double)got[bad], (double)want[bad]);
        gguf_close(f);
        free(got);
        free(want);
        free(model_rel);
        free(tensor);
        free(type_name);
        free(json);
    }
}

/* ------------------------------------------------------------ dot kernels */

/* One weight type at one row length: NR random weight rows (quantized by
 * the type's own quantizer) against 4 activation rows. Every ISA's dot
 * agrees with the scalar reference to float rounding (they share the
 * integer sums), the scalar reference agrees with double arithmetic on the
 * dequantized values, and a row's result has the same bits in every slot
 * of every batch size and in every tile shape. */
static void check_dots(gguf_dtype type, uint32_t n, uint64_t *s)
{
    enum { NR_DOT = 3, NR = 5 }; /* rows checked one by one; rows for tiles */
    const quant_traits *qt = quant_traits_of(type), *at = quant_traits_of(qt->act_type);
    cr_assert(at, "%s: activation format %s has no entry", gguf_dtype_name(type),
              gguf_dtype_name(qt->act_type));
    uint64_t wrow = 0, xrow = 0;
    cr_assert(gguf_dtype_row_bytes(type, n, &wrow) && gguf_dtype_row_bytes(at->type, n, &xrow));
    float *wf = malloc((size_t)n * NR * sizeof *wf), *xf = malloc((size_t)n * 4 * sizeof *xf);
    float *wd = malloc((size_t)n * sizeof *wd), *xd = malloc((size_t)n * sizeof *xd);
    uint8_t *wq = malloc(wrow * NR), *xq = malloc(xrow * 4);
    fill_weights(wf, (size_t)n * NR_DOT, s);
    for (size_t i = 0; i < (size_t)n * 4; i++)
        xf[i] = frand(s) * 3.0f;
    uint64_t s_tile = *s ^ 0x9e3779b97f4a7c15ull; /* its own stream: the rest sees no change */
    fill_weights(wf + (size_t)n * NR_DOT, (size_t)n * (NR - NR_DOT), &s_tile);
    qt->from_f32(wf, wq, (size_t)n * NR);
    for (uint32_t m = 0; m < 4; m++)
        at->from_f32(xf + (size_t)m * n, xq + m * xrow, n);
    for (uint32_t r = 0; r < NR_DOT; r++) {
        const uint8_t *w = wq + r * wrow;
        qt->to_f32(w, wd, n);
        float ref[4];
        qt->dot[QUANT_ISA_SCALAR](n, w, xq, xrow, 4, ref);
        for (uint32_t m = 0; m < 4; m++) {
            at->to_f32(xq + m * xrow, xd, n);
            double exact = 0, mag = 0;
            for (uint32_t k = 0; k < n; k++) {
                exact += (double)wd[k] * (double)xd[k];
                mag += fabs((double)wd[k] * (double)xd[k]);
            }
            /* Q8_1 carries each block's d * sum(q) as a half, which the
             * Q4_1/Q5_1 dots use for the min term (as the reference does):
             * up to 2^-11 of that term off the exact product. */
            const double tol = at->type == GGUF_DTYPE_Q8_1 ? 1e-3 : 1e-5;
            cr_assert(fabs(ref[m] - exact) <= tol * mag + 1e-30,
                      "%s n=%u row %u x%u: scalar dot %.9g, exact %.9g (magnitude %.3g)",
                      gguf_dtype_name(type), n, r, m, (double)ref[m], exact, mag);
            for (int isa = 1; isa <= (int)quant_best_isa(); isa++) {
                float got[4];
                quant_dot(qt, (quant_isa)isa)(n, w, xq, xrow, 4, got);
                cr_assert(fabs((double)got[m] - (double)ref[m]) <= 1e-5 * mag + 1e-30,
                          "%s %s n=%u row %u x%u: %.9g, scalar %.9g (magnitude %.3g)",
                          quant_isa_name((quant_isa)isa), gguf_dtype_name(type), n, r, m,
                          (double)got[m], (double)ref[m], mag);
            }
        }
        /* slot invariance: rows 3,1,2 as a batch of 3 and each alone */
        for (int isa = 0; isa <= (int)quant_best_isa(); isa++) {
            quant_dot_fn dot = quant_dot(qt, (quant_isa)isa);
            float all[4], one[4];
            dot(n, w, xq, xrow, 4, all);
            for (uint32_t nx = 1; nx <= 4; nx++) {
                for (uint32_t m = 0; m + nx <= 4; m++) {
                    dot(n, w, xq + m * xrow, xrow, nx, one);
                    for (uint32_t j = 0; j < nx; j++)
                        cr_assert_eq(memcmp(&one[j], &all[m + j], sizeof one[j]), 0,
                                     "%s %s n=%u: row %u in slot %u of %u differs",
                                     quant_isa_name((quant_isa)isa), gguf_dtype_name(type), n,
                                     m + j, j, nx);
                }
            }
        }
    }
    /* tiles: every shape at every offset gives each pair the dot's bits */
    for (int isa = 0; isa <= (int)quant_best_isa(); isa++) {
        quant_tile_fn tile = quant_tile(qt, (quant_isa)isa);
        quant_dot_fn dot = quant_dot(qt, (quant_isa)isa);
        if (!tile)
            continue;
        float want[NR][4], got[4 * NR];
        for (uint32_t r = 0; r < NR; r++)
            dot(n, wq + r * wrow, xq, xrow, 4, want[r]);
        for (uint32_t nw = 1; nw <= 4 && nw <= NR; nw++)
            for (uint32_t r0 = 0; r0 + nw <= NR; r0++)
                for (uint32_t nx = 1; nx <= 4; nx++)
                    for (uint32_t m0 = 0; m0 + nx <= 4; m0++) {
                        memset(got, 0xff, sizeof got);
                        tile(n, wq + r0 * wrow, wrow, nw, xq + m0 * xrow, xrow, nx, got, NR);
                        for (uint32_t j = 0; j < nx; j++)
                            for (uint32_t i = 0; i < nw; i++)
                                cr_assert_eq(memcmp(&got[j * NR + i], &want[r0 + i][m0 + j],
                                                    sizeof(float)),
                                             0,
                                             "%s %s n=%u: tile %ux%u at row %u, x %u: pair "
                                             "(%u, %u) is %.9g, the dot gives %.9g",
                                             quant_isa_name((quant_isa)isa), gguf_dtype_name(type),
                                             n, nw, nx, r0, m0, i, j, (double)got[j * NR + i],
                                             (double)want[r0 + i][m0 + j]);
                    }
    }
    free(wf);
    free(xf);
    free(wd);
    free(xd);
    free(wq);
    free(xq);
}

Test(quant, every_dot_kernel_agrees_with_the_scalar_reference)
{
    static const uint32_t n32[] = {32, 96, 160, 4064, 11296};
    static const uint32_t n256[] = {256, 768, 2816, 5632};
    uint64_t s = 12345;
    int checked = 0;
    cr_log_info("best ISA here: %s", quant_isa_name(quant_best_isa()));
    for (uint32_t t = 0; t < GGUF_DTYPE_COUNT_; t++) {
        const quant_traits *qt = quant_traits_of((gguf_dtype)t);
        if (!is_quant_weight(qt))
            continue;
        const bool k256 = gguf_dtype_block_elems((gguf_dtype)t) == 256;
        for (size_t i = 0; i < (k256 ? 4u : 5u); i++)
            check_dots((gguf_dtype)t, k256 ? n256[i] : n32[i], &s);
        for (int isa = 1; isa < QUANT_ISA_COUNT; isa++)
            if (!qt->dot[isa])
                cr_log_info("%s: no %s dot kernel (uses the level below)",
                            gguf_dtype_name((gguf_dtype)t), quant_isa_name((quant_isa)isa));
        for (int isa = 0; isa < QUANT_ISA_COUNT; isa++)
            if (qt->tile[isa] && isa > (int)quant_best_isa())
                cr_log_warn("%s: %s tile kernel not run: this CPU lacks it (skipped)",
                            gguf_dtype_name((gguf_dtype)t), quant_isa_name((quant_isa)isa));
        checked++;
    }
    cr_assert_eq(checked, 12, "quantized weight types in the table: %d", checked);
    /* the float types: their dots (F16 and BF16 as 1-row tiles) and tiles,
     * at lengths that leave elements past the last group of 8 */
    static const uint32_t nf[] = {8, 24, 100, 2048, 5637};
    static const gguf_dtype ft[] = {GGUF_DTYPE_F32, GGUF_DTYPE_F16, GGUF_DTYPE_BF16};
    for (size_t t = 0; t < 3; t++)
        for (size_t i = 0; i < 5; i++)
            check_dots(ft[t], nf[i], &s);
    if (quant_best_isa() < QUANT_ISA_AVX512)
        cr_log_warn("this CPU has no AVX-512 VNNI: the avx512 kernels were not run (skipped)");
}

/* ------------------------------------------------------------ activation quantizers */

/* Every ISA's activation quantizer gives the reference's bits: random blocks
 * at many scales, exact .5 ties, zeros, tiny values, a lone outlier. */
Test(quant, activation_quantizers_agree_bit_for_bit_across_isas)
{
    static const gguf_dtype acts[] = {GGUF_DTYPE_Q8_0, GGUF_DTYPE_Q8_1, GGUF_DTYPE_Q8_K};
    enum { N = 64 * 256 };
    float *x = malloc(N * sizeof *x);
    uint8_t *want = malloc(N * 2), *got = malloc(N * 2);
    uint64_t s = 7;
    for (size_t a = 0; a < 3; a++) {
        const quant_traits *at = quant_traits_of(acts[a]);
        cr_assert(at, "%s has no entry", gguf_dtype_name(acts[a]));
        uint64_t bytes;
        cr_assert(gguf_dtype_row_bytes(acts[a], N, &bytes) && bytes <= N * 2);
        for (int round = 0; round < 10; round++) {
            for (int b = 0; b < N / 32; b++) {
                float *xb = x + b * 32;
                const float scale = ldexpf(1.0f, (int)(frand(&s) * 20.0f));
                for (int i = 0; i < 32; i++)
                    xb[i] = frand(&s) * scale;
                switch (b % 5) {
                case 1: /* amax 127: d = 1, and halves to round */
                    xb[0] = round % 2 ? -127.0f : 127.0f;
                    for (int i = 1; i < 32; i++)
                        xb[i] = (float)((int)(frand(&s) * 100.0f)) + (i % 2 ? 0.5f : -0.5f);
                    break;
                case 2: memset(xb, 0, 32 * sizeof *xb); break;
                case 3:
                    for (int i = 0; i < 32; i++)
                        xb[i] = frand(&s) * 1e-30f;
                    break;
                case 4: xb[(int)(rng_next(&s) % 32)] = 1000.0f * scale; break;
                default: break;
                }
            }
            at->from_f32(x, want, N);
            for (int isa = 0; isa <= (int)quant_best_isa(); isa++) {
                memset(got, 0x55, bytes);
                quant_act_quantizer(at, (quant_isa)isa)(x, got, N);
                size_t bad = 0;
                while (bad < bytes && got[bad] == want[bad])
                    bad++;
                cr_assert_eq(bad, bytes, "%s %s round %d: byte %zu (block %zu) differs",
                             quant_isa_name((quant_isa)isa), gguf_dtype_name(acts[a]), round,
                             bad, bad / gguf_dtype_block_bytes(acts[a]));
            }
        }
    }
    free(x);
    free(want);
    free(got);
}

/* ------------------------------------------------------------ quantizers */

/* Each weight quantizer reconstructs random rows to within what its bits
 * allow: relative RMS error below a per-type bound (about a tenth above what
 * round-to-nearest with the best scale reaches). */
Test(quant, weight_quantizers_round_trip_within_their_precision)
{
    static const struct {
        const char *type;
        double max_rel_rms;
    } k_bounds[] = {{"Q8_0", 0.006}, {"Q6_K", 0.02},  {"Q5_0", 0.04}, {"Q5_1", 0.035},
                    {"Q5_K", 0.035}, {"Q4_0", 0.08},  {"Q4_1", 0.07}, {"Q4_K", 0.07},
                    {"IQ4_NL", 0.07}, {"IQ4_XS", 0.07}, {"Q3_K", 0.15}, {"Q2_K", 0.3}};
    enum { N = 256 * 64 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    uint8_t *q = malloc(N * 2);
    uint64_t s = 3;
    for (size_t i = 0; i < sizeof k_bounds / sizeof k_bounds[0]; i++) {
        gguf_dtype t = type_by_name(k_bounds[i].type);
        for (size_t k = 0; k < N; k++)
            x[k] = frand(&s);
        cr_assert_eq(quant_from_f32(t, x, q, N), 0, "%s: no quantizer", k_bounds[i].type);
        cr_assert_eq(quant_to_f32(t, q, y, N), 0);
        double e2 = 0, x2 = 0;
        for (size_t k = 0; k < N; k++) {
            e2 += ((double)y[k] - x[k]) * ((double)y[k] - x[k]);
            x2 += (double)x[k] * x[k];
        }
        double rel = sqrt(e2 / x2);
        cr_log_info("%s: relative RMS error %.4f", k_bounds[i].type, rel);
        cr_expect(rel <= k_bounds[i].max_rel_rms, "%s: relative RMS error %.4f > %.4f",
                  k_bounds[i].type, rel, k_bounds[i].max_rel_rms);
        /* all-zero input gives zeros back, not NaN */
        memset(x, 0, 256 * sizeof *x);
        quant_from_f32(t, x, q, 256);
        quant_to_f32(t, q, y, 256);
        for (size_t k = 0; k < 256; k++)
            cr_assert_eq(y[k], 0.0f, "%s: zeros come back as %g", k_bounds[i].type, (double)y[k]);
    }
    free(x);
    free(y);
    free(q);
}

/* ------------------------------------------------------------ bad scales */

/* Where each type keeps its half scales: find_bad_scale must flag a NaN or
 * an infinity in any of them, in any block. */
Test(quant, bad_scales_are_found_in_every_type)
{
    static const struct {
        gguf_dtype type;
        size_t off[2]; /* SIZE_MAX: none */
    } k_scales[] = {
        {GGUF_DTYPE_Q4_0, {offsetof(quant_block_q4_0, d), SIZE_MAX}},
        {GGUF_DTYPE_Q4_1, {offsetof(quant_block_q4_1, d), offsetof(quant_block_q4_1, m)}},
        {GGUF_DTYPE_Q5_0, {offsetof(quant_block_q5_0, d), SIZE_MAX}},
        {GGUF_DTYPE_Q5_1, {offsetof(quant_block_q5_1, d), offsetof(quant_block_q5_1, m)}},
        {GGUF_DTYPE_Q8_0, {offsetof(quant_block_q8_0, d), SIZE_MAX}},
        {GGUF_DTYPE_Q2_K, {offsetof(quant_block_q2_K, d), offsetof(quant_block_q2_K, dmin)}},
        {GGUF_DTYPE_Q3_K, {offsetof(quant_block_q3_K, d), SIZE_MAX}},
        {GGUF_DTYPE_Q4_K, {offsetof(quant_block_q4_K, d), offsetof(quant_block_q4_K, dmin)}},
        {GGUF_DTYPE_Q5_K, {offsetof(quant_block_q5_K, d), offsetof(quant_block_q5_K, dmin)}},
        {GGUF_DTYPE_Q6_K, {offsetof(quant_block_q6_K, d), SIZE_MAX}},
        {GGUF_DTYPE_IQ4_NL, {offsetof(quant_block_iq4_nl, d), SIZE_MAX}},
        {GGUF_DTYPE_IQ4_XS, {offsetof(quant_block_iq4_xs, d), SIZE_MAX}},
    };
    static const uint16_t k_bad[] = {0x7c00, 0xfc00, 0x7e00, 0x7c01};
    enum { NB = 5 };
    float x[NB * 256];
    uint8_t q[NB * 256];
    uint64_t s = 11;
    for (size_t i = 0; i < sizeof k_scales / sizeof k_scales[0]; i++) {
        const quant_traits *qt = quant_traits_of(k_scales[i].type);
        cr_assert(qt && qt->find_bad_scale, "%s: no find_bad_scale",
                  gguf_dtype_name(k_scales[i].type));
        const size_t bb = gguf_dtype_block_bytes(k_scales[i].type);
        const size_t n = (size_t)NB * gguf_dtype_block_elems(k_scales[i].type);
        for (size_t k = 0; k < n; k++)
            x[k] = frand(&s);
        qt->from_f32(x, q, n);
        cr_assert_eq(qt->find_bad_scale(q, NB), NB, "%s: good blocks flagged",
                     gguf_dtype_name(k_scales[i].type));
        for (size_t f = 0; f < 2 && k_scales[i].off[f] != SIZE_MAX; f++)
            for (size_t v = 0; v < sizeof k_bad / sizeof k_bad[0]; v++) {
                const size_t blk = (f + v) % NB;
                uint8_t saved[2];
                uint8_t *at = q + blk * bb + k_scales[i].off[f];
                memcpy(saved, at, 2);
                memcpy(at, &k_bad[v], 2);
                cr_assert_eq(qt->find_bad_scale(q, NB), blk, "%s field %zu = %04x in block %zu",
                             gguf_dtype_name(k_scales[i].type), f, k_bad[v], blk);
                memcpy(at, saved, 2);
            }
    }
}

/* ------------------------------------------------------------ golden logits */

/* One shared quantized model teacher-forced on the golden's input_tokens,
 * one position per step or all in one chunk: max |diff| within 3e-2 of
 * llama.cpp's logits, greedy choice equal where the reference's top two are
 * more than 6e-2 apart. Logs the figures per type (the issue asks for them). */
static void check_quant_golden(const char *type, bool chunk)
{
    char rel[160];
    snprintf(rel, sizeof rel, "golden/quant/llama-synth-256x2-%s.pt.json", type);
    char *json = test_read_file(test_shared(rel), NULL);
    cr_assert(json, "cannot read %s", rel);
    size_t n_input;
    int32_t *input = test_json_ints(json, "input_tokens", &n_input);
    const uint32_t P = (uint32_t)test_json_int(json, "positions"),
                   V = (uint32_t)test_json_int(json, "vocab");
    cr_assert_eq(n_input, P);
    snprintf(rel, sizeof rel, "golden/quant/llama-synth-256x2-%s.pt.logits.f32", type);
    size_t bytes;
    float *ref = (float *)(void *)test_read_file(test_shared(rel), &bytes);
    cr_assert(ref && bytes == (size_t)P * V * sizeof(float));

    attnd_err err = {0};
    model *m;
    snprintf(rel, sizeof rel, "models/quant/llama-synth-256x2-%s.gguf", type);
    cr_assert_eq(model_load(test_shared(rel), &m, &err), ATTND_OK, "%s", err.msg);
    engine_params ep = {.n_threads = 2, .kv_type = KV_DTYPE_F32, .kv_blocks = P / 16 + 2,
                        .max_entries = P};
    engine *e;
    uint32_t seq;
    cr_assert_eq(engine_new(m, &ep, &e, &err), ATTND_OK, "%s", err.msg);
    cr_assert_eq(engine_seq_open(e, &seq, &err), ATTND_OK);
    float *out = malloc((size_t)P * V * sizeof(float));
    if (chunk) {
        engine_entry *en = calloc(P, sizeof *en);
        for (uint32_t i = 0; i < P; i++)
            en[i] = (engine_entry){seq, input[i], i, true};
        cr_assert_eq(engine_step(e, en, P, out, &err), ATTND_OK, "%s", err.msg);
        free(en);
    } else {
        for (uint32_t p = 0; p < P; p++) {
            engine_entry en = {seq, input[p], p, true};
            cr_assert_eq(engine_step(e, &en, 1, out + (size_t)p * V, &err), ATTND_OK, "%s",
                         err.msg);
        }
    }
    double worst = 0, first = 0;
    int n_argmax = 0, n_checked = 0;
    for (uint32_t r = 0; r < P; r++) {
        const float *a = out + (size_t)r * V, *b = ref + (size_t)r * V;
        uint32_t top = 0, best = 0;
        for (uint32_t i = 0; i < V; i++) {
            double d = fabs((double)a[i] - (double)b[i]);
            worst = d > worst ? d : worst;
            if (r == 0)
                first = d > first ? d : first;
            top = b[i] > b[top] ? i : top;
            best = a[i] > a[best] ? i : best;
        }
        float second = -INFINITY;
        for (uint32_t i = 0; i < V; i++)
            if (i != top && b[i] > second)
                second = b[i];
        if (b[top] - second > 6e-2f) {
            n_checked++;
            n_argmax += best == top;
            cr_expect_eq(best, top, "%s (%s) row %u: greedy %u, reference %u", type,
                         chunk ? "chunk" : "one at a time", r, best, top);
        }
    }
    cr_log_info("%-7s %-13s max |diff| %.2e, first row %.2e%s, argmax %d/%d", type,
                chunk ? "chunk" : "one at a time", worst, first,
                first == 0 ? " (bit-identical)" : "", n_argmax, n_checked);
    cr_expect(worst <= 3e-2, "%s (%s): max |diff| %.3g > 3e-2", type,
              chunk ? "chunk" : "one at a time", worst);
    free(out);
    engine_free(e);
    model_free(m);
    free(ref);
    free(input);
    free(json);
}

static const char *const k_golden_types[] = {"f32",  "q4_0",   "q4_1",  "q5_0",   "q5_1",
                                             "q8_0", "q2_k",   "q3_k_m", "q4_k_m", "q5_k_m",
                                             "q6_k", "iq4_nl", "iq4_xs"};

Test(quant_golden, one_position_per_step)
{
    for (size_t i = 0; i < sizeof k_golden_types / sizeof k_golden_types[0]; i++)
        check_quant_golden(k_golden_types[i], false);
}

Test(quant_golden, prompt_as_one_chunk)
{
    for (size_t i = 0; i < sizeof k_golden_types / sizeof k_golden_types[0]; i++)
        check_quant_golden(k_golden_types[i], true);
}

/* ------------------------------------------------------------ the commands */

/* Every shared quantized model through the commands a user runs: `info`
 * names its types, `logits` (both feeding modes) lands within tolerance of
 * the reference, `generate` writes text, and `serve` answers /generate. */
Test(quant_cli, shared_models_run_in_every_command, .timeout = 300)
{
    const char *bin = test_attnd_bin();
    char *out_path = test_tmp_path("quant-logits.f32");
    char *script_path = test_tmp_path("quant-serve.sh");
    for (size_t i = 0; i < sizeof k_golden_types / sizeof k_golden_types[0]; i++) {
        const char *type = k_golden_types[i];
        char model_rel[128], rel[160];
        snprintf(model_rel, sizeof model_rel, "models/quant/llama-synth-256x2-%s.gguf", type);
        char model_path[1024];
        snprintf(model_path, sizeof model_path, "%s", test_shared(model_rel));
        char cmd[8192], *out = NULL;

        snprintf(cmd, sizeof cmd, "'%s' info '%s'", bin, model_path);
        cr_assert_eq(test_run(cmd, &out), 0, "%s", cmd);
        char upper[16];
        size_t k = 0;
        for (; type[k] && type[k] != '_' && k < sizeof upper - 1; k++)
            upper[k] = (char)(type[k] >= 'a' && type[k] <= 'z' ? type[k] - 32 : type[k]);
        upper[k] = '\0';
        cr_expect(strstr(out, upper), "%s: info does not name %s:\n%s", type, upper, out);
        free(out);

        snprintf(rel, sizeof rel, "golden/quant/llama-synth-256x2-%s.pt.json", type);
        char *json = test_read_file(test_shared(rel), NULL);
        size_t n_input;
        int32_t *input = test_json_ints(json, "input_tokens", &n_input);
        char list[4096];
        size_t len = 0;
        for (size_t t = 0; t < n_input; t++)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%d", t ? "," : "", input[t]);
        snprintf(rel, sizeof rel, "golden/quant/llama-synth-256x2-%s.pt.logits.f32", type);
        size_t ref_bytes, got_bytes;
        float *ref = (float *)(void *)test_read_file(test_shared(rel), &ref_bytes);
        for (int chunk = 0; chunk < 2; chunk++) {
            snprintf(cmd, sizeof cmd, "'%s' logits -m '%s' --tokens %s -o '%s'%s", bin, model_path,
                     list, out_path, chunk ? " --chunk" : "");
            cr_assert_eq(test_run(cmd, NULL), 0, "%s", cmd);
            float *got = (float *)(void *)test_read_file(out_path, &got_bytes);
            cr_assert(got && got_bytes == ref_bytes, "%s: %zu bytes of logits", type, got_bytes);
            double worst = 0;
            for (size_t j = 0; j < ref_bytes / sizeof(float); j++) {
                double d = fabs((double)got[j] - (double)ref[j]);
                worst = d > worst ? d : worst;
            }
            cr_expect(worst <= 3e-2, "%s: attnd logits%s max |diff| %.3g", type,
                      chunk ? " --chunk" : "", worst);
            free(got);
        }
        free(ref);
        free(input);
        free(json);

        snprintf(cmd, sizeof cmd, "'%s' generate -m '%s' -p 'Once upon a time' -n 8 --temp 0 2>&1",
                 bin, model_path);
        cr_assert_eq(test_run(cmd, &out), 0, "%s", cmd);
        cr_expect(strstr(out, "Once upon a time") && strlen(out) > 20, "%s: generate: %s", type,
                  out);
        free(out);

        /* serve on a free port (scripts/free-port.sh: below the ephemeral range,
         * another one when the server does not come up), one request, SIGTERM,
         * clean exit */
        FILE *sh = fopen(script_path, "w");
        cr_assert(sh);
        fprintf(sh,
                ". '%s/scripts/free-port.sh'\n"
                "up=0\n"
                "for attempt in 1 2 3 4 5; do\n"
                "  free_port port || exit 1\n"
                "  '%s' serve -m '%s' --port $port --log-level warn & pid=$!\n"
                "  for _ in $(seq 100); do\n"
                "    kill -0 $pid 2>/dev/null || break\n"
                "    curl -sf http://127.0.0.1:$port/ready >/dev/null && { up=1; break; }\n"
                "    sleep 0.1\n"
                "  done\n"
                "  [ $up = 1 ] && break\n"
                "  kill -KILL $pid 2>/dev/null; wait $pid 2>/dev/null\n"
                "done\n"
                "[ $up = 1 ] || exit 1\n"
                "curl -sf -d '{\"prompt\":\"Once upon a time\",\"max_tokens\":8,\"temperature\":0}' "
                "http://127.0.0.1:$port/generate; rc=$?\n"
                "kill -TERM $pid; wait $pid || rc=1\n"
                "exit $rc\n",
                ATTND_SOURCE_DIR, bin, model_path);
        fclose(sh);
        snprintf(cmd, sizeof cmd, "bash '%s'", script_path);
        cr_assert_eq(test_run(cmd, &out), 0, "%s: serve failed: %s", type, out ? out : "");
        cr_expect(strstr(out, "\"text\""), "%s: /generate answered %s", type, out);
        free(out);
    }
    remove(out_path);
    free(out_path);
    remove(script_path);
    free(script_path);
}
