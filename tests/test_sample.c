/* test_sample.c - the token sampler (model/sample.h): each transform of the
 * chain against a distribution worked out by hand, the chain as a whole against
 * a plain full-sort reference on a GPT-2-sized vocabulary, determinism per seed,
 * draw frequencies, odd logits (-inf, +inf, NaN) and parameter validation. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sample.h"

/* Parameters with every filter off, temperature 1, no penalty. */
static sample_params plain(void)
{
    sample_params p = sample_params_default();
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    return p;
}

static sampler *mk(const sample_params *p, int32_t n_vocab, int32_t eos)
{
    sampler *s = NULL;
    attnd_err err = {0};
    int rc = sampler_new(p, n_vocab, &eos, eos >= 0 ? 1 : 0, &s, &err);
    cr_assert_eq(rc, ATTND_OK, "sampler_new: %s", err.msg);
    cr_assert_not_null(s);
    return s;
}

/* The probabilities P give for logits L[N] must equal WANT[N] to 1e-6. */
static void expect_probs(const sample_params *p, const float *l, const double *want, int32_t n,
                         const char *what)
{
    sampler *s = mk(p, n, -1);
    float probs[16];
    cr_assert(n <= 16);
    sampler_probs(s, l, probs);
    double sum = 0;
    for (int32_t i = 0; i < n; i++) {
        cr_expect(fabs(probs[i] - want[i]) < 1e-6, "%s: p[%d] = %.9f, want %.9f", what, (int)i,
                  (double)probs[i], want[i]);
        sum += probs[i];
    }
    cr_expect(fabs(sum - 1.0) < 1e-6, "%s: sum %.9f", what, sum);
    sampler_free(s);
}

/* softmax(L4) = (1, 2, 3, 4) / 10 = {0.1, 0.2, 0.3, 0.4}. */
static const float L4[4] = {0.0f, 0.69314718f, 1.09861229f, 1.38629436f}; /* ln 1..4 */

Test(sample, defaults_are_the_documented_ones)
{
    sample_params p = sample_params_default();
    cr_expect_float_eq(p.temperature, 0.8f, 1e-9);
    cr_expect_eq(p.top_k, 40);
    cr_expect_float_eq(p.top_p, 0.95f, 1e-9);
    cr_expect_float_eq(p.min_p, 0.05f, 1e-9);
    cr_expect_float_eq(p.repeat_penalty, 1.0f, 1e-9);
    cr_expect_eq(p.repeat_last_n, 64u);
    cr_expect_eq(p.seed, 0u);
    cr_expect_not(p.ignore_eos);
}

Test(sample, greedy_picks_argmax_lowest_id_on_ties_and_ignores_seed)
{
    static const float l[6] = {1.0f, 3.0f, -2.0f, 3.0f, 0.5f, 2.9f};
    sample_params p = sample_params_default(); /* filters on: greedy skips them */
    p.temperature = 0.0f;
    int32_t first = -2;
    for (uint64_t seed = 0; seed < 20; seed++) {
        p.seed = seed * 7919u;
        sampler *s = mk(&p, 6, -1);
        for (int k = 0; k < 5; k++) {
            int32_t t = sampler_sample(s, l);
            cr_expect_eq(t, 1, "ids 1 and 3 tie at 3.0: lowest wins, got %d", (int)t);
            if (first == -2)
                first = t;
            cr_expect_eq(t, first);
        }
        float probs[6];
        sampler_probs(s, l, probs);
        for (int i = 0; i < 6; i++)
            cr_expect_eq(probs[i], i == 1 ? 1.0f : 0.0f, "one-hot at 1, p[%d] = %g", i,
                         (double)probs[i]);
        sampler_free(s);
    }
    /* A unique maximum anywhere, including the last id. */
    static const float m[5] = {-1.0f, -0.5f, -3.0f, -7.0f, 0.25f};
    sampler *s = mk(&p, 5, -1);
    cr_expect_eq(sampler_sample(s, m), 4);
    sampler_free(s);
}

Test(sample, softmax_at_temperature_1_and_2)
{
    sample_params p = plain();
    /* T = 1: (1, 2, 3, 4) / 10. */
    static const double t1[4] = {0.1, 0.2, 0.3, 0.4};
    expect_probs(&p, L4, t1, 4, "T=1");
    /* T = 2: exp(ln(i) / 2) = sqrt(i); sum sqrt(1..4) = 6.146264370...;
     * 1/6.1463 = 0.162700453, 1.4142/6.1463 = 0.230093188,
     * 1.7321/6.1463 = 0.281805452, 2/6.1463 = 0.325400907. */
    static const double t2[4] = {0.16270045344786252, 0.2300931878702196, 0.2818054517861928,
                                 0.32540090689572504};
    p.temperature = 2.0f;
    expect_probs(&p, L4, t2, 4, "T=2");
    /* T = 0.5: i^2 / (1 + 4 + 9 + 16) = {1, 4, 9, 16} / 30. */
    static const double th[4] = {1.0 / 30, 4.0 / 30, 9.0 / 30, 16.0 / 30};
    p.temperature = 0.5f;
    expect_probs(&p, L4, th, 4, "T=0.5");
}

Test(sample, top_k)
{
    sample_params p = plain();
    /* k = 2 keeps ids 3 and 2 (0.4, 0.3) -> 4/7, 3/7. */
    static const double k2[4] = {0, 0, 3.0 / 7, 4.0 / 7};
    p.top_k = 2;
    expect_probs(&p, L4, k2, 4, "top_k=2");
    /* k = 1: only the best. */
    static const double k1[4] = {0, 0, 0, 1};
    p.top_k = 1;
    expect_probs(&p, L4, k1, 4, "top_k=1");
    /* k >= n_vocab, or <= 0: everything. */
    static const double all[4] = {0.1, 0.2, 0.3, 0.4};
    p.top_k = 4;
    expect_probs(&p, L4, all, 4, "top_k=4");
    p.top_k = 1000;
    expect_probs(&p, L4, all, 4, "top_k=1000");
    p.top_k = -3;
    expect_probs(&p, L4, all, 4, "top_k=-3");

    /* Ties at the boundary: ids 1, 2, 3 tie at 5; k = 2 keeps the lowest
     * ids 1 and 2, each with exp(5) / (2 exp(5)) = 1/2. */
    static const float tie[5] = {1.0f, 5.0f, 5.0f, 5.0f, 0.0f};
    static const double kt[5] = {0, 0.5, 0.5, 0, 0};
    p.top_k = 2;
    expect_probs(&p, tie, kt, 5, "top_k=2 ties");
    /* k = 4 keeps 1, 2, 3 and then id 0 (logit 1 beats 0):
     * weights e^5, e^5, e^5, e^1 over Z = 3e^5 + e. */
    double z = 3 * exp(5.0) + exp(1.0);
    double kt4[5] = {exp(1.0) / z, exp(5.0) / z, exp(5.0) / z, exp(5.0) / z, 0};
    p.top_k = 4;
    expect_probs(&p, tie, kt4, 5, "top_k=4 ties");
}

Test(sample, top_p)
{
    sample_params p = plain();
    /* Sorted: 0.4, 0.3, 0.2, 0.1; cumulative 0.4, 0.7, 0.9, 1.0. */
    /* 0.5: 0.4 < 0.5 <= 0.7 -> {0.4, 0.3} renormalized to 4/7, 3/7. */
    static const double p50[4] = {0, 0, 3.0 / 7, 4.0 / 7};
    p.top_p = 0.5f;
    expect_probs(&p, L4, p50, 4, "top_p=0.5");
    /* 0.65: 0.7 >= 0.65 -> the same two. */
    p.top_p = 0.65f;
    expect_probs(&p, L4, p50, 4, "top_p=0.65");
    /* 0.39: 0.4 >= 0.39 already -> only id 3. */
    static const double p39[4] = {0, 0, 0, 1};
    p.top_p = 0.39f;
    expect_probs(&p, L4, p39, 4, "top_p=0.39");
    /* Tiny top_p still keeps one token. */
    p.top_p = 1e-6f;
    expect_probs(&p, L4, p39, 4, "top_p=1e-6");
    /* 0.8: 0.7 < 0.8 <= 0.9 -> {0.4, 0.3, 0.2} -> 4/9, 3/9, 2/9. */
    static const double p80[4] = {0, 2.0 / 9, 3.0 / 9, 4.0 / 9};
    p.top_p = 0.8f;
    expect_probs(&p, L4, p80, 4, "top_p=0.8");
    /* 1: off. */
    static const double all[4] = {0.1, 0.2, 0.3, 0.4};
    p.top_p = 1.0f;
    expect_probs(&p, L4, all, 4, "top_p=1");
    /* After top-k = 3, the mass is recomputed over {2, 3, 4}/9 = 0.222, 0.333,
     * 0.444; top_p 0.75: 0.444 < 0.75 <= 0.778 -> {3, 4}/7. (Without top-k,
     * 0.75 would keep three tokens.) */
    p.top_k = 3;
    p.top_p = 0.75f;
    expect_probs(&p, L4, p50, 4, "top_k=3 top_p=0.75");
}

Test(sample, min_p)
{
    sample_params p = plain();
    /* 0.6: threshold 0.6 * 0.4 = 0.24 -> keeps 0.3, 0.4 -> 3/7, 4/7. */
    static const double m60[4] = {0, 0, 3.0 / 7, 4.0 / 7};
    p.min_p = 0.6f;
    expect_probs(&p, L4, m60, 4, "min_p=0.6");
    /* 0.8: threshold 0.32 -> only 0.4. */
    static const double m80[4] = {0, 0, 0, 1};
    p.min_p = 0.8f;
    expect_probs(&p, L4, m80, 4, "min_p=0.8");
    /* 0.45: threshold 0.18 -> 0.2, 0.3, 0.4 -> 2/9, 3/9, 4/9. */
    static const double m45[4] = {0, 2.0 / 9, 3.0 / 9, 4.0 / 9};
    p.min_p = 0.45f;
    expect_probs(&p, L4, m45, 4, "min_p=0.45");
    /* 1: only tokens equal to the max; here one. 0: off. */
    p.min_p = 1.0f;
    expect_probs(&p, L4, m80, 4, "min_p=1");
    static const double all[4] = {0.1, 0.2, 0.3, 0.4};
    p.min_p = 0.0f;
    expect_probs(&p, L4, all, 4, "min_p=0");
    /* min-p after top-p (sorted path): top_p 0.8 keeps {2, 3, 4}/9; min_p 0.6
     * drops p < 0.6 * 4/9 = 0.267, i.e. 2/9 = 0.222 -> {3, 4}/7. */
    p.top_p = 0.8f;
    p.min_p = 0.6f;
    expect_probs(&p, L4, m60, 4, "top_p=0.8 min_p=0.6");
}

Test(sample, whole_chain_then_temperature)
{
    /* top_k 3: {2, 3, 4}/9. top_p 0.6: 4/9 = 0.444 < 0.6 <= 7/9 -> {3, 4}/7.
     * min_p 0.7: threshold 0.7 * 4/7 = 0.4; 3/7 = 0.4286 stays.
     * T = 2: weights sqrt(3), sqrt(4) = 1.7320508, 2; sum 3.7320508
     * -> 0.464101615, 0.535898385. */
    sample_params p = plain();
    p.top_k = 3;
    p.top_p = 0.6f;
    p.min_p = 0.7f;
    p.temperature = 2.0f;
    static const double want[4] = {0, 0, 0.46410161513775455, 0.5358983848622454};
    expect_probs(&p, L4, want, 4, "chain T=2");
    /* The same with min_p 0.8 (threshold 0.457 > 0.4286): only id 3. */
    static const double one[4] = {0, 0, 0, 1};
    p.min_p = 0.8f;
    expect_probs(&p, L4, one, 4, "chain min_p=0.8");
}

Test(sample, repetition_penalty_over_the_last_n_distinct_tokens)
{
    static const float l[5] = {2.0f, -2.0f, 2.0f, -2.0f, 1.0f};
    sample_params p = plain();
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 3;
    sampler *s = mk(&p, 5, -1);
    /* History 4, 0, 1, 1: the window of 3 is {0, 1, 1}; 4 has left it.
     * 0: 2 > 0 -> 2/2 = 1. 1: -2 -> -2*2 = -4, once although it appears
     * twice (not -8). 2, 3, 4 unchanged. Logits {1, -4, 2, -2, 1}:
     * Z = 2e + e^-4 + e^2 + e^-2 = 12.978...; p = e/Z = 0.209432556,
     * e^-4/Z = 0.001411145, e^2/Z = 0.569296710, e^-2/Z = 0.010427033. */
    sampler_accept(s, 4);
    sampler_accept(s, 0);
    sampler_accept(s, 1);
    sampler_accept(s, 1);
    static const double want[5] = {0.20943255564212773, 0.0014111454597996746,
                                   0.5692967102897338, 0.010427032966211084,
                                   0.20943255564212773};
    float probs[5];
    sampler_probs(s, l, probs);
    for (int i = 0; i < 5; i++)
        cr_expect(fabs(probs[i] - want[i]) < 1e-6, "p[%d] = %.9f, want %.9f", i,
                  (double)probs[i], want[i]);
    /* Logits are not modified. */
    cr_expect_eq(l[0], 2.0f);
    cr_expect_eq(l[1], -2.0f);
    /* Greedy sees the penalty too: 0 and 2 tie at 2 before; after, 2 wins. */
    sampler_free(s);
    p.temperature = 0.0f;
    s = mk(&p, 5, -1);
    cr_expect_eq(sampler_sample(s, l), 0);
    sampler_accept(s, 0);
    cr_expect_eq(sampler_sample(s, l), 2);
    sampler_free(s);

    /* repeat_last_n 0 or penalty 1: nothing changes. */
    p.temperature = 1.0f;
    p.repeat_last_n = 0;
    s = mk(&p, 5, -1);
    sampler_accept(s, 0);
    float a[5], b[5];
    sampler_probs(s, l, a);
    sampler_free(s);
    p.repeat_last_n = 64;
    p.repeat_penalty = 1.0f;
    s = mk(&p, 5, -1);
    sampler_accept(s, 0);
    sampler_probs(s, l, b);
    sampler_free(s);
    /* Unpenalized: Z = 2e^2 + 2e^-2 + e = 17.767...; p0 = e^2/Z. */
    double z = 2 * exp(2.0) + 2 * exp(-2.0) + exp(1.0);
    cr_expect(fabs(a[0] - exp(2.0) / z) < 1e-6 && fabs(b[0] - exp(2.0) / z) < 1e-6,
              "a0 %g b0 %g", (double)a[0], (double)b[0]);

    /* Penalty < 1 boosts: 0.5 on a positive logit doubles it. Logits {1, 0}
     * with token 0 penalized -> {2, 0}: p0 = e^2 / (e^2 + 1) = 0.880797078. */
    p.repeat_penalty = 0.5f;
    s = mk(&p, 2, -1);
    sampler_accept(s, 0);
    static const float l2[2] = {1.0f, 0.0f};
    sampler_probs(s, l2, a);
    cr_expect(fabs(a[0] - 0.8807970779778823) < 1e-6, "p0 %.9f", (double)a[0]);
    sampler_free(s);
}

Test(sample, ring_window_slides)
{
    /* Window 2 over a long history: only the last two tokens count. */
    sample_params p = plain();
    p.temperature = 0.0f;
    p.repeat_penalty = 100.0f;
    p.repeat_last_n = 2;
    static const float l[4] = {4.0f, 3.0f, 2.0f, 1.0f};
    sampler *s = mk(&p, 4, -1);
    for (int i = 0; i < 10; i++)
        sampler_accept(s, i % 4);
    /* last two accepted: 8%4 = 0, 9%4 = 1 -> penalized; best left is 2. */
    cr_expect_eq(sampler_sample(s, l), 2);
    sampler_accept(s, 2); /* window {1, 2} */
    cr_expect_eq(sampler_sample(s, l), 0);
    sampler_accept(s, 3); /* window {2, 3} */
    cr_expect_eq(sampler_sample(s, l), 0);
    sampler_accept(s, -5);    /* out-of-range ids take a slot but are ignored */
    sampler_accept(s, 99999); /* window {-5, 99999} */
    cr_expect_eq(sampler_sample(s, l), 0);
    sampler_free(s);
}

Test(sample, ignore_eos)
{
    static const float l[4] = {1.0f, 0.5f, 9.0f, 2.0f}; /* EOS = 2 is the largest */
    sample_params p = plain();
    p.temperature = 0.0f;
    sampler *s = mk(&p, 4, 2);
    cr_expect_eq(sampler_sample(s, l), 2, "without ignore_eos greedy picks EOS");
    sampler_free(s);

    p.ignore_eos = true;
    s = mk(&p, 4, 2);
    cr_expect_eq(sampler_sample(s, l), 3);
    sampler_free(s);

    p.temperature = 1.0f;
    s = mk(&p, 4, 2);
    float probs[4];
    sampler_probs(s, l, probs);
    cr_expect_eq(probs[2], 0.0f);
    /* The rest: e^1, e^0.5, e^2 over their sum. */
    double z = exp(1.0) + exp(0.5) + exp(2.0);
    cr_expect(fabs(probs[3] - exp(2.0) / z) < 1e-6);
    for (int i = 0; i < 2000; i++)
        cr_assert_neq(sampler_sample(s, l), 2);
    sampler_free(s);

    /* Every end-of-generation token is banned, not only EOS (Llama 3's
     * <|eot_id|> beside <|end_of_text|>). */
    p.ignore_eos = true;
    p.temperature = 0.0f;
    sampler *s2 = NULL;
    cr_assert_eq(sampler_new(&p, 4, (const int32_t[]){2, 3}, 2, &s2, NULL), ATTND_OK);
    cr_expect_eq(sampler_sample(s2, l), 0);
    sampler_free(s2);

    /* eos -1 with ignore_eos: nothing to ban. */
    p.temperature = 0.0f;
    s = mk(&p, 4, -1);
    cr_expect_eq(sampler_sample(s, l), 2);
    sampler_free(s);
}

Test(sample, infinite_and_nan_logits)
{
    sample_params p = sample_params_default();
    /* All but one -inf: that one, whatever the settings. */
    float l[6] = {-INFINITY, -INFINITY, -INFINITY, 0.25f, -INFINITY, -INFINITY};
    float probs[6];
    for (int greedy = 0; greedy < 2; greedy++) {
        p.temperature = greedy ? 0.0f : 1.3f;
        sampler *s = mk(&p, 6, -1);
        for (int i = 0; i < 50; i++)
            cr_assert_eq(sampler_sample(s, l), 3);
        sampler_probs(s, l, probs);
        for (int i = 0; i < 6; i++)
            cr_expect_eq(probs[i], i == 3 ? 1.0f : 0.0f);
        sampler_free(s);
    }
    /* Some -inf: they get probability 0 and are never drawn. Here {0, ln 3}
     * among -inf -> 1/4, 3/4. */
    float l2[5] = {-INFINITY, 0.0f, -INFINITY, 1.09861229f, -INFINITY};
    p = plain();
    sampler *s = mk(&p, 5, -1);
    sampler_probs(s, l2, probs);
    cr_expect(fabs(probs[1] - 0.25) < 1e-6 && fabs(probs[3] - 0.75) < 1e-6);
    cr_expect(probs[0] == 0 && probs[2] == 0 && probs[4] == 0);
    for (int i = 0; i < 1000; i++) {
        int32_t t = sampler_sample(s, l2);
        cr_assert(t == 1 || t == 3, "drew %d", (int)t);
    }
    sampler_free(s);

    /* Everything -inf: still a valid token, uniform, never a banned EOS. */
    float ninf[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    p.ignore_eos = true;
    s = mk(&p, 4, 0);
    sampler_probs(s, ninf, probs);
    cr_expect_eq(probs[0], 0.0f);
    for (int i = 1; i < 4; i++)
        cr_expect(fabs(probs[i] - 1.0 / 3) < 1e-6);
    for (int i = 0; i < 200; i++) {
        int32_t t = sampler_sample(s, ninf);
        cr_assert(t >= 1 && t < 4);
    }
    sampler_free(s);
    p.temperature = 0.0f;
    s = mk(&p, 4, 0);
    cr_expect_eq(sampler_sample(s, ninf), 1);
    sampler_free(s);
    /* The degenerate one-token vocabulary whose token is the banned EOS. */
    s = mk(&p, 1, 0);
    cr_expect_eq(sampler_sample(s, ninf), 0);
    sampler_free(s);

    /* +inf tokens share all the mass; NaN counts as -inf. */
    float pinf[5] = {INFINITY, 3.0f, NAN, INFINITY, -INFINITY};
    p = plain();
    s = mk(&p, 5, -1);
    sampler_probs(s, pinf, probs);
    cr_expect(probs[0] == 0.5f && probs[3] == 0.5f && probs[1] == 0 && probs[2] == 0,
              "%g %g %g %g", (double)probs[0], (double)probs[1], (double)probs[2],
              (double)probs[3]);
    sampler_free(s);
    float nan1[3] = {NAN, 1.0f, NAN};
    p.temperature = 0.0f;
    s = mk(&p, 3, -1);
    cr_expect_eq(sampler_sample(s, nan1), 1);
    sampler_free(s);
}

/* A fixed pseudo-random logit vector (splitmix-like LCG), values in [-8, 8)
 * quantized to 1/16 so that ties are common. */
static void fill_logits(float *l, int32_t n, uint64_t seed, int quantize)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15u + 1;
    for (int32_t i = 0; i < n; i++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        double u = (double)(x >> 11) * 0x1.0p-53;
        double v = u * 16.0 - 8.0;
        if (quantize)
            v = floor(v * 16.0) / 16.0;
        l[i] = (float)v;
    }
}

Test(sample, same_seed_same_tokens_different_seed_different)
{
    enum { V = 1000, DRAWS = 1000 };
    static float l[V];
    fill_logits(l, V, 7, 0);
    for (int i = 0; i < V; i++)
        l[i] *= 0.4f; /* flatter, so many tokens survive the defaults */
    sample_params p = sample_params_default();
    p.repeat_penalty = 1.1f;
    static int32_t a[DRAWS], b[DRAWS], c[DRAWS];
    int32_t *out[3] = {a, b, c};
    uint64_t seeds[3] = {42, 42, 43};
    for (int r = 0; r < 3; r++) {
        p.seed = seeds[r];
        sampler *s = mk(&p, V, -1);
        for (int i = 0; i < DRAWS; i++) {
            out[r][i] = sampler_sample(s, l);
            cr_assert(out[r][i] >= 0 && out[r][i] < V);
            sampler_accept(s, out[r][i]);
        }
        sampler_free(s);
    }
    cr_expect_eq(memcmp(a, b, sizeof a), 0, "same seed, same inputs: same tokens");
    int differ = 0;
    for (int i = 0; i < DRAWS; i++)
        differ += a[i] != c[i];
    cr_expect_gt(differ, DRAWS / 2, "seeds 42 and 43 agree on %d of %d draws",
                 DRAWS - differ, DRAWS);
    /* sampler_probs does not disturb the draw sequence. */
    p.seed = 42;
    sampler *s = mk(&p, V, -1);
    static float probs[V];
    for (int i = 0; i < DRAWS; i++) {
        sampler_probs(s, l, probs);
        int32_t t = sampler_sample(s, l);
        cr_assert_eq(t, a[i], "draw %d", i);
        cr_assert_gt(probs[t], 0.0f, "draw %d picked a token of probability 0", i);
        sampler_accept(s, t);
    }
    sampler_free(s);
}

Test(sample, draw_frequencies_match_the_distribution)
{
    /* 200000 draws from {0.1, 0.2, 0.3, 0.4}: count_i ~ Binomial(n, p_i),
     * sd = sqrt(n p (1-p)) = 134, 179, 205, 219. Allow 5 sd (the seed is
     * fixed, so this is deterministic). */
    enum { N = 200000 };
    sample_params p = plain();
    p.seed = 12345;
    sampler *s = mk(&p, 4, -1);
    long cnt[4] = {0};
    for (int i = 0; i < N; i++) {
        int32_t t = sampler_sample(s, L4);
        cr_assert(t >= 0 && t < 4);
        cnt[t]++;
    }
    sampler_free(s);
    static const double pr[4] = {0.1, 0.2, 0.3, 0.4};
    for (int i = 0; i < 4; i++) {
        double mean = N * pr[i], sd = sqrt(N * pr[i] * (1 - pr[i]));
        cr_expect(fabs((double)cnt[i] - mean) < 5 * sd,
                  "token %d: %ld draws, expected %.0f +- %.0f", i, cnt[i], mean, sd);
    }

    /* After top-k 2: {3/7, 4/7}, ids 0 and 1 never. */
    p.top_k = 2;
    p.seed = 999;
    s = mk(&p, 4, -1);
    long c2[4] = {0};
    for (int i = 0; i < N / 2; i++)
        c2[sampler_sample(s, L4)]++;
    sampler_free(s);
    cr_expect_eq(c2[0] + c2[1], 0);
    double n2 = N / 2, m3 = n2 * 4 / 7, sd3 = sqrt(n2 * (4.0 / 7) * (3.0 / 7));
    cr_expect(fabs((double)c2[3] - m3) < 5 * sd3, "id 3: %ld, expected %.0f", c2[3], m3);
}

/* ---- the chain against a plain reference with a full sort ---- */

static const float *ref_w;
static int ref_cmp(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (ref_w[x] != ref_w[y])
        return ref_w[x] > ref_w[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

static void ref_probs(const sample_params *p, const float *l, int32_t n, int32_t *idx,
                      float *out)
{
    for (int32_t i = 0; i < n; i++)
        idx[i] = i;
    ref_w = l;
    qsort(idx, (size_t)n, sizeof *idx, ref_cmp);
    memset(out, 0, (size_t)n * sizeof *out);
    if (p->temperature <= 0) {
        out[idx[0]] = 1;
        return;
    }
    int32_t m = n;
    if (p->top_k > 0 && p->top_k < m)
        m = p->top_k;
    double mx = l[idx[0]];
    if (p->top_p < 1) {
        double z = 0, cum = 0;
        for (int32_t j = 0; j < m; j++)
            z += exp(l[idx[j]] - mx);
        int32_t c = 0;
        while (c < m) {
            cum += exp(l[idx[c]] - mx) / z;
            c++;
            if (cum >= p->top_p)
                break;
        }
        m = c;
    }
    if (p->min_p > 0) {
        int32_t c = 1;
        while (c < m && l[idx[c]] - mx >= log(p->min_p))
            c++;
        m = c;
    }
    double z = 0;
    for (int32_t j = 0; j < m; j++)
        z += exp((l[idx[j]] - mx) / p->temperature);
    for (int32_t j = 0; j < m; j++)
        out[idx[j]] = (float)(exp((l[idx[j]] - mx) / p->temperature) / z);
}

Test(sample, chain_matches_a_full_sort_reference_on_50257_tokens)
{
    enum { V = 50257 };
    float *l = malloc(V * sizeof *l), *got = malloc(V * sizeof *got),
          *want = malloc(V * sizeof *want);
    int32_t *idx = malloc(V * sizeof *idx);
    cr_assert(l && got && want && idx);
    static const struct {
        float t;
        int32_t k;
        float top_p, min_p;
    } cf[] = {
        {0.8f, 40, 0.95f, 0.05f}, /* the defaults */
        {1.0f, 0, 1.0f, 0.0f},    /* plain softmax over everything */
        {1.0f, 0, 0.9f, 0.0f},    /* top-p alone: the lazy heap */
        {0.7f, 0, 0.5f, 0.02f},   /* top-p then min-p, no top-k */
        {1.0f, 0, 1.0f, 0.01f},   /* min-p alone: the unsorted filter */
        {1.5f, 1000, 1.0f, 0.0f}, /* a big top-k */
        {1.0f, 1, 1.0f, 0.0f},
        {2.0f, 7, 0.6f, 0.3f},
        {0.0f, 40, 0.95f, 0.05f}, /* greedy */
        {1.0f, 50257, 0.99f, 0.0f},
    };
    for (int q = 0; q < 2; q++) {
        fill_logits(l, V, (uint64_t)q + 100, q);
        for (size_t c = 0; c < sizeof cf / sizeof cf[0]; c++) {
            sample_params p = plain();
            p.temperature = cf[c].t;
            p.top_k = cf[c].k;
            p.top_p = cf[c].top_p;
            p.min_p = cf[c].min_p;
            sampler *s = mk(&p, V, -1);
            sampler_probs(s, l, got);
            ref_probs(&p, l, V, idx, want);
            int bad = 0;
            size_t nz = 0;
            double sum = 0;
            for (int32_t i = 0; i < V; i++) {
                if ((got[i] == 0) != (want[i] == 0) || fabsf(got[i] - want[i]) > 1e-6f)
                    if (bad++ < 3)
                        cr_expect_fail("quantized %d config %zu: p[%d] = %g, want %g", q, c,
                                       (int)i, (double)got[i], (double)want[i]);
                nz += got[i] != 0;
                sum += got[i];
            }
            cr_expect_eq(bad, 0, "quantized %d config %zu: %d mismatches", q, c, bad);
            cr_expect(fabs(sum - 1) < 1e-4, "sum %g", sum);
            cr_expect_gt(nz, 0u);
            /* Draws land only on tokens the distribution keeps. */
            for (int i = 0; i < 20; i++) {
                int32_t t = sampler_sample(s, l);
                cr_assert(t >= 0 && t < V && want[t] > 0, "config %zu drew %d (p %g)", c,
                          (int)t, t >= 0 && t < V ? (double)want[t] : -1.0);
            }
            sampler_free(s);
        }
    }
    free(l);
    free(got);
    free(want);
    free(idx);
}

Test(sample, chain_matches_the_reference_on_many_small_random_cases)
{
    /* Vocabularies of 2..700 with random settings, ties and some -inf: every
     * branch of the selections (top-k heap, top-p quickselect and its pivot
     * landing on the boundary, the final sorted walk) against the reference. */
    enum { VMAX = 700 };
    static float l[VMAX], got[VMAX], want[VMAX];
    static int32_t idx[VMAX];
    uint64_t x = 88172645463325252u;
#define RND() (x ^= x << 13, x ^= x >> 7, x ^= x << 17, x)
#define UNIF() ((double)(RND() >> 11) * 0x1.0p-53)
    int bad = 0;
    for (int trial = 0; trial < 400; trial++) {
        int32_t n = 2 + (int32_t)(RND() % (VMAX - 1));
        fill_logits(l, n, RND(), trial % 3 == 0);
        if (trial % 4 == 1)
            for (int32_t i = 0; i < n; i += 3)
                l[i] = -INFINITY;
        sample_params p = plain();
        p.temperature = (float)(0.3 + 1.7 * UNIF());
        p.top_k = trial % 2 ? (int32_t)(RND() % (uint64_t)(n + 5)) : 0;
        p.top_p = trial % 5 ? (float)(0.05 + 0.949 * UNIF()) : 1.0f;
        p.min_p = trial % 3 == 2 ? (float)(0.5 * UNIF()) : 0.0f;
        sampler *s = mk(&p, n, -1);
        sampler_probs(s, l, got);
        sampler_free(s);
        ref_probs(&p, l, n, idx, want);
        for (int32_t i = 0; i < n; i++) {
            if ((got[i] == 0) != (want[i] == 0) || fabsf(got[i] - want[i]) > 1e-6f) {
                if (bad++ < 5)
                    cr_expect_fail("trial %d (n %d, k %d, top_p %g, min_p %g, T %g): p[%d] = "
                                   "%g, want %g",
                                   trial, (int)n, (int)p.top_k, (double)p.top_p,
                                   (double)p.min_p, (double)p.temperature, (int)i,
                                   (double)got[i], (double)want[i]);
                break;
            }
        }
    }
#undef RND
#undef UNIF
    cr_expect_eq(bad, 0, "%d of 400 cases differ", bad);
}

Test(sample, invalid_parameters_are_rejected_naming_the_field)
{
    struct bad {
        const char *field;
        sample_params p;
    } bads[32];
    size_t nb = 0;
#define BAD(fieldname, expr)                                                                       \
    do {                                                                                           \
        sample_params q_ = sample_params_default();                                                \
        expr;                                                                                      \
        bads[nb].field = fieldname;                                                                \
        bads[nb].p = q_;                                                                           \
        nb++;                                                                                      \
    } while (0)
    BAD("temperature", q_.temperature = NAN);
    BAD("temperature", q_.temperature = INFINITY);
    BAD("temperature", q_.temperature = -0.5f);
    BAD("top_p", q_.top_p = 0.0f);
    BAD("top_p", q_.top_p = -0.1f);
    BAD("top_p", q_.top_p = 1.5f);
    BAD("top_p", q_.top_p = NAN);
    BAD("min_p", q_.min_p = -0.01f);
    BAD("min_p", q_.min_p = 1.01f);
    BAD("min_p", q_.min_p = NAN);
    BAD("repeat_penalty", q_.repeat_penalty = 0.0f);
    BAD("repeat_penalty", q_.repeat_penalty = -1.0f);
    BAD("repeat_penalty", q_.repeat_penalty = NAN);
    BAD("repeat_penalty", q_.repeat_penalty = INFINITY);
    BAD("repeat_last_n", q_.repeat_last_n = UINT32_MAX);
#undef BAD
    for (size_t i = 0; i < nb; i++) {
        static int sentinel;
        sampler *s = (sampler *)&sentinel; /* must be reset to NULL */
        attnd_err err = {0};
        int rc = sampler_new(&bads[i].p, 100, NULL, 0, &s, &err);
        cr_expect_eq(rc, ATTND_EINVAL, "case %zu (%s): rc %d", i, bads[i].field, rc);
        cr_expect_eq(err.code, ATTND_EINVAL);
        cr_expect_null(s, "case %zu", i);
        cr_expect(strstr(err.msg, bads[i].field) != NULL, "case %zu: '%s' lacks '%s'", i, err.msg,
                  bads[i].field);
    }

    sample_params p = sample_params_default();
    sampler *s = NULL;
    attnd_err err = {0};
    cr_expect_eq(sampler_new(&p, 0, NULL, 0, &s, &err), ATTND_EINVAL);
    cr_expect(strstr(err.msg, "n_vocab"), "%s", err.msg);
    cr_expect_eq(sampler_new(&p, -5, NULL, 0, &s, &err), ATTND_EINVAL);
    cr_expect(strstr(err.msg, "n_vocab"), "%s", err.msg);
    cr_expect_eq(sampler_new(&p, 10, (const int32_t[]){10}, 1, &s, &err), ATTND_EINVAL);
    cr_expect(strstr(err.msg, "end-of-generation token 10"), "%s", err.msg);
    cr_expect_eq(sampler_new(&p, 10, (const int32_t[]){-2}, 1, &s, &err), ATTND_EINVAL);
    cr_expect(strstr(err.msg, "end-of-generation token -2"), "%s", err.msg);
    cr_expect_eq(sampler_new(&p, 10, NULL, 3, &s, &err), ATTND_EINVAL);
    cr_expect_eq(sampler_new(&p, 10, (const int32_t[17]){0}, 17, &s, &err), ATTND_EINVAL);
    cr_expect(strstr(err.msg, "end-of-generation tokens"), "%s", err.msg);
    cr_expect_eq(sampler_new(&p, 10, NULL, 0, &s, NULL), ATTND_OK, "a NULL err is fine");
    sampler_free(s);
    sampler_free(NULL);

    /* The edges of the allowed ranges are accepted. */
    p.temperature = 0.0f;
    p.top_p = 1.0f;
    p.min_p = 1.0f;
    p.repeat_penalty = 1e-3f;
    p.repeat_last_n = 0;
    p.top_k = -1;
    cr_expect_eq(sampler_new(&p, 1, (const int32_t[]){0}, 1, &s, &err), ATTND_OK, "%s", err.msg);
    sampler_free(s);
    p.min_p = 0.0f;
    p.top_p = 1e-9f;
    p.repeat_last_n = 1u << 20;
    cr_expect_eq(sampler_new(&p, 3, NULL, 0, &s, &err), ATTND_OK, "%s", err.msg);
    sampler_free(s);
}

/* OpenAI's penalties: logit -= count * frequency + presence for each token in
 * the window; logit bias added first. */
Test(sample, presence_frequency_and_bias)
{
    static const float l[4] = {1.0f, 2.0f, 3.0f, 0.5f};
    sample_params p = plain();
    p.temperature = 1.0f;
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    sampler *s = mk(&p, 4, -1);
    sampler_accept(s, 2);
    sampler_accept(s, 2);
    sampler_accept(s, 1);
    float probs[4];
    sampler_probs(s, l, probs);
    /* token 2: 3 - (2 * 0.25 + 0.5) = 2; token 1: 2 - 0.75 = 1.25 */
    double e[4] = {exp(1.0), exp(1.25), exp(2.0), exp(0.5)}, z = e[0] + e[1] + e[2] + e[3];
    for (int i = 0; i < 4; i++)
        cr_expect(fabs(probs[i] - e[i] / z) < 1e-6, "token %d: %g vs %g", i, probs[i], e[i] / z);
    sampler_free(s);

    sample_bias b[2] = {{0, 10.0f}, {2, -100.0f}};
    p = plain();
    p.temperature = 0.0f;
    p.bias = b;
    p.n_bias = 2;
    s = mk(&p, 4, -1);
    b[0].bias = -50.0f; /* the sampler keeps its own copy */
    cr_expect_eq(sampler_sample(s, l), 0, "token 0 biased up, 2 down");
    sampler_free(s);

    attnd_err err = {0};
    sampler *bad = NULL;
    p = plain();
    p.presence_penalty = 2.5f;
    cr_expect_eq(sampler_new(&p, 4, NULL, 0, &bad, &err), ATTND_EINVAL);
    cr_expect(strstr(err.msg, "presence_penalty"), "%s", err.msg);
    p = plain();
    sample_bias far = {9, 1.0f};
    p.bias = &far;
    p.n_bias = 1;
    cr_expect_eq(sampler_new(&p, 4, NULL, 0, &bad, &err), ATTND_EINVAL);
    cr_expect(strstr(err.msg, "logit_bias: token 9 is outside the vocabulary"), "%s", err.msg);
}
