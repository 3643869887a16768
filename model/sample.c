/* sample.c - choosing the next token from a model's logits (see sample.h).
 *
 * One call runs the whole chain on a private copy of the logits:
 *
 *   repetition penalty -> EOS ban -> (greedy: argmax) -> top-k -> top-p ->
 *   min-p -> temperature -> softmax -> draw
 *
 * Top-p and min-p look at the temperature-1 distribution of the tokens the
 * earlier steps kept (llama.cpp's default chain applies temperature last).
 *
 * Cost per call is O(V) plus, only when a step needs an order, a bounded
 * selection: top-k uses a k-element heap (O(V log k)), and top-p without
 * top-k pops a max-heap built in O(V) only as far as the kept mass requires.
 * No full sort, no allocation: the scratch arrays are sized n_vocab in
 * sampler_new. Ties are broken by the lower token id everywhere, so results
 * depend only on the logits, the parameters, the history and the seed.
 *
 * Logits that are NaN count as -inf. If some are +inf, those tokens share all
 * the mass. If nothing is left (every logit -inf), every token but a banned
 * EOS is taken as equally likely, so a token is always returned. */
#include "sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Bound on the penalty window, so that a request cannot make the history ring
 * arbitrarily large (4 MiB at most); far longer than any context. */
#define REPEAT_LAST_N_MAX (1u << 20)

struct sampler {
    sample_params p;
    int32_t n_vocab;
    int32_t eos;
    uint64_t rng[4]; /* xoshiro256** state */

    /* The last p.repeat_last_n accepted tokens (a ring; order is irrelevant). */
    int32_t *hist;
    uint32_t hist_len;
    uint32_t hist_next;

    /* Scratch, n_vocab elements each. */
    float *w;      /* working logits */
    int32_t *cand; /* candidate ids; also the heaps */
    int32_t *keep; /* ids kept so far, best first where ordered */
    double *wt;    /* final unnormalized weights of keep[] */
    uint8_t *mark; /* penalty: token already penalized in this call */
};

sample_params sample_params_default(void)
{
    return (sample_params){
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .seed = 0,
        .ignore_eos = false,
    };
}

/* ---- PRNG: xoshiro256**, seeded through splitmix64 ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(uint64_t st[4])
{
    uint64_t result = rotl(st[1] * 5, 7) * 9;
    uint64_t t = st[1] << 17;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl(st[3], 45);
    return result;
}

/* Uniform in [0, 1), 53 bits. */
static double rng_uniform(uint64_t st[4])
{
    return (double)(rng_next(st) >> 11) * 0x1.0p-53;
}

/* ---- setup ---- */

int sampler_new(const sample_params *p, int32_t n_vocab, int32_t eos, sampler **out,
                attnd_err *err)
{
    if (!out)
        return attnd_err_set(err, ATTND_EINVAL, "sampler_new: out must not be NULL");
    *out = NULL;
    if (!p)
        return attnd_err_set(err, ATTND_EINVAL, "sampler_new: params must not be NULL");
    if (n_vocab <= 0)
        return attnd_err_set(err, ATTND_EINVAL, "n_vocab must be > 0 (got %d)", (int)n_vocab);
    if (eos < -1 || eos >= n_vocab)
        return attnd_err_set(err, ATTND_EINVAL,
                             "eos must be -1 or a token id below n_vocab %d (got %d)",
                             (int)n_vocab, (int)eos);
    if (!isfinite(p->temperature) || p->temperature < 0.0f)
        return attnd_err_set(err, ATTND_EINVAL, "temperature must be finite and >= 0 (got %g)",
                             (double)p->temperature);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return attnd_err_set(err, ATTND_EINVAL, "top_p must be in (0, 1] (got %g)",
                             (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return attnd_err_set(err, ATTND_EINVAL, "min_p must be in [0, 1] (got %g)",
                             (double)p->min_p);
    if (!isfinite(p->repeat_penalty) || !(p->repeat_penalty > 0.0f))
        return attnd_err_set(err, ATTND_EINVAL, "repeat_penalty must be > 0 and finite (got %g)",
                             (double)p->repeat_penalty);
    if (p->repeat_last_n > REPEAT_LAST_N_MAX)
        return attnd_err_set(err, ATTND_EINVAL, "repeat_last_n must be <= %u (got %u)",
                             REPEAT_LAST_N_MAX, (unsigned)p->repeat_last_n);

    sampler *s = calloc(1, sizeof *s);
    if (!s)
        return attnd_err_set(err, ATTND_ENOMEM, "sampler: out of memory");
    s->p = *p;
    s->n_vocab = n_vocab;
    s->eos = eos;
    uint64_t seed = p->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&seed);

    size_t v = (size_t)n_vocab;
    s->w = calloc(v, sizeof *s->w);
    s->cand = calloc(v, sizeof *s->cand);
    s->keep = calloc(v, sizeof *s->keep);
    s->wt = calloc(v, sizeof *s->wt);
    s->mark = calloc(v, sizeof *s->mark);
    if (p->repeat_last_n > 0)
        s->hist = calloc(p->repeat_last_n, sizeof *s->hist);
    if (!s->w || !s->cand || !s->keep || !s->wt || !s->mark ||
        (p->repeat_last_n > 0 && !s->hist)) {
        sampler_free(s);
        return attnd_err_set(err, ATTND_ENOMEM, "sampler: out of memory for a vocabulary of %d",
                             (int)n_vocab);
    }
    *out = s;
    return ATTND_OK;
}

void sampler_free(sampler *s)
{
    if (!s)
        return;
    free(s->w);
    free(s->cand);
    free(s->keep);
    free(s->wt);
    free(s->mark);
    free(s->hist);
    free(s);
}

void sampler_accept(sampler *s, int32_t token)
{
    uint32_t cap = s->p.repeat_last_n;
    if (cap == 0)
        return;
    s->hist[s->hist_next] = token; /* out-of-range ids are kept but never penalized */
    s->hist_next = s->hist_next + 1 == cap ? 0 : s->hist_next + 1;
    if (s->hist_len < cap)
        s->hist_len++;
}

/* ---- ordering: higher logit first, then lower id (a strict total order) ---- */

static inline int better(const float *w, int32_t a, int32_t b)
{
    return w[a] > w[b] || (w[a] == w[b] && a < b);
}

/* Max-heap (best at the root) sift-down. */
static void sift_best(const float *w, int32_t *h, size_t n, size_t i)
{
    int32_t x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && better(w, h[c + 1], h[c]))
            c++;
        if (!better(w, h[c], x))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

/* Min-heap (worst at the root) sift-down. */
static void sift_worst(const float *w, int32_t *h, size_t n, size_t i)
{
    int32_t x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && better(w, h[c], h[c + 1]))
            c++;
        if (!better(w, x, h[c]))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

/* The K best of CAND[0..N) (0 < K < N) into OUT[0..K), best first. Uses
 * CAND[0..K) as a heap of the K best seen so far. */
static void select_top_k(const float *w, int32_t *cand, size_t n, size_t k, int32_t *out)
{
    for (size_t i = k / 2; i-- > 0;)
        sift_worst(w, cand, k, i);
    for (size_t j = k; j < n; j++) {
        if (better(w, cand[j], cand[0])) {
            cand[0] = cand[j];
            sift_worst(w, cand, k, 0);
        }
    }
    for (size_t hn = k; hn > 0; hn--) {
        out[hn - 1] = cand[0];
        cand[0] = cand[hn - 1];
        sift_worst(w, cand, hn - 1, 0);
    }
}

/* ---- the chain ---- */

static void apply_penalty(sampler *s)
{
    float pen = s->p.repeat_penalty;
    if (pen == 1.0f || s->hist_len == 0)
        return;
    float *w = s->w;
    for (uint32_t j = 0; j < s->hist_len; j++) {
        int32_t t = s->hist[j];
        if (t < 0 || t >= s->n_vocab || s->mark[t])
            continue;
        s->mark[t] = 1;
        w[t] = w[t] > 0.0f ? w[t] / pen : w[t] * pen;
    }
    for (uint32_t j = 0; j < s->hist_len; j++) {
        int32_t t = s->hist[j];
        if (t >= 0 && t < s->n_vocab)
            s->mark[t] = 0;
    }
}

/* Runs every transform on LOGITS. Leaves the surviving tokens in s->keep[0..m)
 * with their unnormalized final weights in s->wt[0..m) (sum in *TOTAL) and
 * returns m >= 1. */
static size_t prepare(sampler *s, const float *logits, double *total)
{
    const sample_params *p = &s->p;
    size_t v = (size_t)s->n_vocab;
    float *w = s->w;
    int32_t *cand = s->cand, *keep = s->keep;
    double *wt = s->wt;
    int32_t banned = p->ignore_eos ? s->eos : -1;

    memcpy(w, logits, v * sizeof *w);
    apply_penalty(s);
    if (banned >= 0)
        w[banned] = -INFINITY;

    /* Candidates: every token with a logit above -inf. */
    int pinf = 0;
    for (size_t i = 0; i < v; i++) {
        if (isnan(w[i]))
            w[i] = -INFINITY;
        else if (w[i] == INFINITY)
            pinf = 1;
    }
    size_t n = 0;
    for (size_t i = 0; i < v; i++) {
        if (pinf)
            w[i] = w[i] == INFINITY ? 0.0f : -INFINITY;
        if (w[i] > -INFINITY)
            cand[n++] = (int32_t)i;
    }
    if (n == 0) {
        for (size_t i = 0; i < v; i++) {
            if ((int32_t)i != banned) {
                w[i] = 0.0f;
                cand[n++] = (int32_t)i;
            }
        }
        if (n == 0) { /* a one-token vocabulary whose only token is the banned EOS */
            w[0] = 0.0f;
            cand[n++] = 0;
        }
    }

    if (p->temperature <= 0.0f) {
        int32_t best = cand[0];
        for (size_t j = 1; j < n; j++)
            if (w[cand[j]] > w[best])
                best = cand[j];
        keep[0] = best;
        wt[0] = 1.0;
        *total = 1.0;
        return 1;
    }

    /* ids[0..m) are the tokens still in; ordered best first when sorted. */
    const int32_t *ids = cand;
    size_t m = n;
    int sorted = 0;
    size_t heap_n = 0;      /* top-p without top-k: lazy max-heap in cand */
    size_t n_sorted = 0;    /* keep[0..n_sorted) is ordered */
    double mx;              /* the largest logit still in */

    if (p->top_k > 0 && (size_t)p->top_k < n) {
        m = (size_t)p->top_k;
        select_top_k(w, cand, n, m, keep);
        ids = keep;
        sorted = 1;
        n_sorted = m;
        mx = w[keep[0]];
    } else if (p->top_p < 1.0f) {
        for (size_t i = n / 2; i-- > 0;)
            sift_best(w, cand, n, i);
        heap_n = n;
        mx = w[cand[0]];
    } else {
        mx = w[cand[0]];
        for (size_t j = 1; j < n; j++)
            if (w[cand[j]] > mx)
                mx = w[cand[j]];
    }

    if (p->top_p < 1.0f) {
        double z = 0.0;
        for (size_t j = 0; j < m; j++)
            z += exp((double)w[ids[j]] - mx);
        double cum = 0.0;
        size_t c = 0;
        while (c < m) {
            if (c == n_sorted) { /* pop the next best from the lazy heap */
                keep[n_sorted++] = cand[0];
                cand[0] = cand[--heap_n];
                sift_best(w, cand, heap_n, 0);
            }
            cum += exp((double)w[keep[c]] - mx) / z;
            c++;
            if (cum >= (double)p->top_p)
                break;
        }
        ids = keep;
        sorted = 1;
        m = c;
    }

    if (p->min_p > 0.0f) {
        /* p_i >= min_p * p_max  <=>  exp(l_i - l_max) >= min_p, on any
         * renormalization of the surviving tokens. The max always stays. */
        double minp = (double)p->min_p;
        if (sorted) {
            size_t c = 1;
            while (c < m && exp((double)w[ids[c]] - mx) >= minp)
                c++;
            m = c;
        } else {
            size_t c = 0;
            for (size_t j = 0; j < m; j++)
                if (exp((double)w[ids[j]] - mx) >= minp)
                    keep[c++] = ids[j];
            ids = keep;
            m = c;
        }
    }

    if (ids != keep)
        memcpy(keep, ids, m * sizeof *keep);
    double t = (double)p->temperature, sum = 0.0;
    for (size_t j = 0; j < m; j++) {
        wt[j] = exp(((double)w[keep[j]] - mx) / t);
        sum += wt[j];
    }
    *total = sum;
    return m;
}

int32_t sampler_sample(sampler *s, const float *logits)
{
    double total;
    size_t m = prepare(s, logits, &total);
    if (m == 1)
        return s->keep[0];
    double target = rng_uniform(s->rng) * total, cum = 0.0;
    size_t last = 0; /* last token with nonzero weight, against rounding */
    for (size_t j = 0; j < m; j++) {
        if (s->wt[j] <= 0.0)
            continue;
        cum += s->wt[j];
        last = j;
        if (cum > target)
            return s->keep[j];
    }
    return s->keep[last];
}

void sampler_probs(sampler *s, const float *logits, float *probs)
{
    double total;
    size_t m = prepare(s, logits, &total);
    memset(probs, 0, (size_t)s->n_vocab * sizeof *probs);
    for (size_t j = 0; j < m; j++)
        probs[s->keep[j]] = (float)(s->wt[j] / total);
}
