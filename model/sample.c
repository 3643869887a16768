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
 * Nothing is ever sorted as a whole: top-k keeps a k-element heap while
 * scanning (about one comparison per token), top-p is a quickselect on
 * probability mass (expected O(V)), min-p is a threshold on the logit, and the
 * draw walks the survivors in whatever order they are. No allocation per call:
 * the scratch arrays are sized n_vocab in sampler_new. Ties are broken by the
 * lower token id everywhere, so results depend only on the logits, the
 * parameters, the history and the seed.
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

/* A candidate token: its working logit, id and weight (exp of the logit
 * relative to the largest; at the end, at the temperature). */
typedef struct item {
    float v;
    int32_t id;
    double e;
} item;

struct sampler {
    sample_params p;
    int32_t n_vocab;
    int32_t eog[SAMPLE_MAX_EOG]; /* banned under ignore_eos */
    size_t n_eog;
    uint64_t rng[4]; /* xoshiro256** state */

    /* The last p.repeat_last_n accepted tokens (a ring; order is irrelevant). */
    int32_t *hist;
    uint32_t hist_len;
    uint32_t hist_next;

    /* Scratch, n_vocab elements each. */
    float *w;      /* working logits */
    item *cand;    /* the tokens still in */
    uint8_t *mark; /* penalty: token already penalized in this call */
    uint32_t *count; /* presence/frequency: occurrences in the window (only when on) */
    sample_bias *bias;
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

int sampler_new(const sample_params *p, int32_t n_vocab, const int32_t *eog, size_t n_eog,
                sampler **out, attnd_err *err)
{
    if (!out)
        return attnd_err_set(err, ATTND_EINVAL, "sampler_new: out must not be NULL");
    *out = NULL;
    if (!p)
        return attnd_err_set(err, ATTND_EINVAL, "sampler_new: params must not be NULL");
    if (n_vocab <= 0)
        return attnd_err_set(err, ATTND_EINVAL, "n_vocab must be > 0 (got %d)", (int)n_vocab);
    if (n_eog > SAMPLE_MAX_EOG || (n_eog && !eog))
        return attnd_err_set(err, ATTND_EINVAL, "at most %d end-of-generation tokens (got %zu)",
                             SAMPLE_MAX_EOG, n_eog);
    for (size_t i = 0; i < n_eog; i++)
        if (eog[i] < 0 || eog[i] >= n_vocab)
            return attnd_err_set(err, ATTND_EINVAL,
                                 "end-of-generation token %d is not an id below n_vocab %d",
                                 (int)eog[i], (int)n_vocab);
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
    if (!(p->presence_penalty >= -2.0f && p->presence_penalty <= 2.0f))
        return attnd_err_set(err, ATTND_EINVAL, "presence_penalty must be in [-2, 2] (got %g)",
                             (double)p->presence_penalty);
    if (!(p->frequency_penalty >= -2.0f && p->frequency_penalty <= 2.0f))
        return attnd_err_set(err, ATTND_EINVAL, "frequency_penalty must be in [-2, 2] (got %g)",
                             (double)p->frequency_penalty);
    if (p->n_bias > SAMPLE_MAX_BIAS || (p->n_bias && !p->bias))
        return attnd_err_set(err, ATTND_EINVAL, "logit_bias has more than %d entries",
                             SAMPLE_MAX_BIAS);
    for (size_t i = 0; i < p->n_bias; i++) {
        if (p->bias[i].id < 0 || p->bias[i].id >= n_vocab)
            return attnd_err_set(err, ATTND_EINVAL,
                                 "logit_bias: token %d is outside the vocabulary (%d)",
                                 (int)p->bias[i].id, (int)n_vocab);
        if (!(p->bias[i].bias >= -100.0f && p->bias[i].bias <= 100.0f))
            return attnd_err_set(err, ATTND_EINVAL,
                                 "logit_bias: the bias of token %d must be in [-100, 100]",
                                 (int)p->bias[i].id);
    }

    sampler *s = calloc(1, sizeof *s);
    if (!s)
        return attnd_err_set(err, ATTND_ENOMEM, "sampler: out of memory");
    s->p = *p;
    s->p.bias = NULL; /* the copy below, owned */
    s->n_vocab = n_vocab;
    if (n_eog)
        memcpy(s->eog, eog, n_eog * sizeof *eog);
    s->n_eog = n_eog;
    uint64_t seed = p->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&seed);

    size_t v = (size_t)n_vocab;
    s->w = calloc(v, sizeof *s->w);
    s->cand = calloc(v, sizeof *s->cand);
    s->mark = calloc(v, sizeof *s->mark);
    if (p->repeat_last_n > 0)
        s->hist = calloc(p->repeat_last_n, sizeof *s->hist);
    bool pf = p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f;
    if (pf)
        s->count = calloc(v, sizeof *s->count);
    if (p->n_bias && (s->bias = malloc(p->n_bias * sizeof *s->bias)))
        memcpy(s->bias, p->bias, p->n_bias * sizeof *s->bias);
    if (!s->w || !s->cand || !s->mark || (p->repeat_last_n > 0 && !s->hist) ||
        (pf && !s->count) || (p->n_bias && !s->bias)) {
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
    free(s->mark);
    free(s->count);
    free(s->bias);
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

static inline int better(item a, item b)
{
    return a.v > b.v || (a.v == b.v && a.id < b.id);
}

static inline void swap_items(item *a, size_t i, size_t j)
{
    item t = a[i];
    a[i] = a[j];
    a[j] = t;
}

/* Min-heap (worst at the root) sift-down. */
static void sift_worst(item *h, size_t n, size_t i)
{
    item x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && better(h[c], h[c + 1]))
            c++;
        if (!better(x, h[c]))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

/* Sorts A[0..N) best first (heapsort: no recursion, O(n log n) worst case). */
static void sort_best_first(item *a, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        sift_worst(a, n, i);
    for (size_t hn = n; hn > 1; hn--) {
        swap_items(a, 0, hn - 1);
        sift_worst(a, hn - 1, 0);
    }
}

/* Top-p: with weights A[i].e, finds the smallest c such that the c best items
 * weigh >= TARGET in total, moves them to A[0..c) (in no particular order) and
 * returns c (1 <= c <= N; N if the target is never reached). A quickselect on
 * weight: expected O(n); after too many uneven splits the rest is heapsorted,
 * so the worst case is O(n log n). Needs TARGET > 0. */
static size_t select_mass(item *a, size_t n, double target)
{
    size_t lo = 0, hi = n; /* A[0..lo) are in, A[hi..n) out, acc weighs A[0..lo) */
    double acc = 0.0;
    int budget = 16;
    for (size_t x = n; x > 1; x >>= 1)
        budget += 4;
    while (hi - lo > 16 && budget-- > 0) {
        /* Median of three as the pivot, moved to A[lo]. */
        size_t i0 = lo, i1 = lo + (hi - lo) / 2, i2 = hi - 1;
        if (better(a[i1], a[i0]))
            swap_items(a, i0, i1);
        if (better(a[i2], a[i1])) {
            swap_items(a, i1, i2);
            if (better(a[i1], a[i0]))
                swap_items(a, i0, i1);
        }
        swap_items(a, lo, i1);
        item piv = a[lo];
        size_t st = lo + 1;
        double up = 0.0;
        for (size_t j = lo + 1; j < hi; j++) {
            if (better(a[j], piv)) {
                up += a[j].e;
                swap_items(a, j, st++);
            }
        }
        size_t pp = st - 1; /* the pivot's place: A[lo..pp) are better */
        swap_items(a, lo, pp);
        if (acc + up >= target) {
            hi = pp; /* nonempty: acc < target */
        } else if (acc + up + a[pp].e >= target) {
            return pp + 1;
        } else {
            acc += up + a[pp].e;
            lo = pp + 1;
        }
    }
    sort_best_first(a + lo, hi - lo);
    for (size_t j = lo; j < hi; j++) {
        acc += a[j].e;
        if (acc >= target)
            return j + 1;
    }
    return hi > 0 ? hi : 1; /* rounding kept the sum just short: all of A[0..hi) */
}

/* ---- the chain ---- */

static void apply_penalty(sampler *s)
{
    float *w = s->w;
    for (size_t i = 0; i < s->p.n_bias; i++)
        w[s->bias[i].id] += s->bias[i].bias;
    float pen = s->p.repeat_penalty;
    float pres = s->p.presence_penalty, freq = s->p.frequency_penalty;
    if ((pen == 1.0f && !s->count) || s->hist_len == 0)
        return;
    if (s->count)
        for (uint32_t j = 0; j < s->hist_len; j++) {
            int32_t t = s->hist[j];
            if (t >= 0 && t < s->n_vocab)
                s->count[t]++;
        }
    for (uint32_t j = 0; j < s->hist_len; j++) {
        int32_t t = s->hist[j];
        if (t < 0 || t >= s->n_vocab || s->mark[t])
            continue;
        s->mark[t] = 1;
        if (pen != 1.0f)
            w[t] = w[t] > 0.0f ? w[t] / pen : w[t] * pen;
        if (s->count)
            w[t] -= (float)s->count[t] * freq + pres;
    }
    for (uint32_t j = 0; j < s->hist_len; j++) {
        int32_t t = s->hist[j];
        if (t >= 0 && t < s->n_vocab) {
            s->mark[t] = 0;
            if (s->count)
                s->count[t] = 0;
        }
    }
}

/* Runs every transform on LOGITS. Leaves the surviving tokens in s->cand[0..m)
 * (in no particular order) with their unnormalized final weights in .e (sum
 * in *TOTAL) and returns m >= 1. */
static size_t prepare(sampler *s, const float *logits, double *total)
{
    const sample_params *p = &s->p;
    size_t v = (size_t)s->n_vocab;
    float *w = s->w;
    item *a = s->cand;
    memcpy(w, logits, v * sizeof *w);
    apply_penalty(s);
    if (p->ignore_eos)
        for (size_t i = 0; i < s->n_eog; i++)
            w[s->eog[i]] = -INFINITY;

    /* The largest logit (NaN never compares greater), and whether any NaN or
     * -inf is present. Eight independent lanes, so the max is not one long
     * dependency chain. */
    float lmx[8];
    int lnan[8], lninf[8];
    for (int l = 0; l < 8; l++) {
        lmx[l] = -INFINITY;
        lnan[l] = lninf[l] = 0;
    }
    size_t i8 = v & ~(size_t)7;
    for (size_t i = 0; i < i8; i += 8) {
        for (int l = 0; l < 8; l++) {
            float x = w[i + l];
            lmx[l] = x > lmx[l] ? x : lmx[l];
            lnan[l] |= x != x;
            lninf[l] |= x == -INFINITY;
        }
    }
    for (size_t i = i8; i < v; i++) {
        float x = w[i];
        lmx[0] = x > lmx[0] ? x : lmx[0];
        lnan[0] |= x != x;
        lninf[0] |= x == -INFINITY;
    }
    float fmx = -INFINITY;
    int any_nan = 0, any_ninf = 0;
    for (int l = 0; l < 8; l++) {
        fmx = lmx[l] > fmx ? lmx[l] : fmx;
        any_nan |= lnan[l];
        any_ninf |= lninf[l];
    }
    if (any_nan) {
        for (size_t i = 0; i < v; i++)
            if (isnan(w[i]))
                w[i] = -INFINITY;
        any_ninf = 1;
    }
    if (fmx == INFINITY) { /* the +inf tokens share everything */
        for (size_t i = 0; i < v; i++)
            w[i] = w[i] == INFINITY ? 0.0f : -INFINITY;
        fmx = 0.0f;
        any_ninf = 1;
    } else if (fmx == -INFINITY) { /* nothing left: uniform over the allowed */
        for (size_t i = 0; i < v; i++)
            w[i] = 0.0f;
        size_t n_banned = 0;
        for (size_t i = 0; p->ignore_eos && i < s->n_eog; i++)
            if (w[s->eog[i]] == 0.0f) {
                w[s->eog[i]] = -INFINITY;
                n_banned++;
            }
        if (n_banned == v) /* only banned tokens exist: return one anyway */
            for (size_t i = 0; i < v; i++)
                w[i] = 0.0f;
        fmx = 0.0f;
    }

    if (p->temperature <= 0.0f) { /* greedy: the first (lowest) id at the max */
        size_t i = 0;
        while (w[i] != fmx)
            i++;
        a[0] = (item){fmx, (int32_t)i, 1.0};
        *total = 1.0;
        return 1;
    }

    double mx = fmx; /* the largest logit; it survives every step */
    size_t m = 0;
    size_t k = p->top_k > 0 ? (size_t)p->top_k : 0;
    if (k > 0 && k < v) {
        /* Top-k, straight from the logits: A[0..k) is a min-heap of the k
         * best seen so far. Later tokens have larger ids, so one displaces
         * the root only with a strictly larger logit: mostly one comparison
         * per token. With fewer than k candidates, all stay. */
        size_t i = 0;
        for (; i < v && m < k; i++)
            if (w[i] > -INFINITY)
                a[m++] = (item){w[i], (int32_t)i, 0.0};
        if (m == k) {
            for (size_t j = k / 2; j-- > 0;)
                sift_worst(a, k, j);
            float thr = a[0].v;
            for (; i < v; i++) {
                if (w[i] > thr) {
                    a[0] = (item){w[i], (int32_t)i, 0.0};
                    sift_worst(a, k, 0);
                    thr = a[0].v;
                }
            }
        }
    } else if (any_ninf) {
        for (size_t i = 0; i < v; i++)
            if (w[i] > -INFINITY)
                a[m++] = (item){w[i], (int32_t)i, 0.0};
    } else {
        for (size_t i = 0; i < v; i++)
            a[i] = (item){w[i], (int32_t)i, 0.0};
        m = v;
    }

    if (p->top_p < 1.0f && m > 1) {
        double z = 0.0;
        for (size_t j = 0; j < m; j++) {
            a[j].e = exp((double)a[j].v - mx);
            z += a[j].e;
        }
        m = select_mass(a, m, (double)p->top_p * z);
    }

    if (p->min_p > 0.0f && m > 1) {
        /* p_i >= min_p * p_max  <=>  l_i - l_max >= ln(min_p), on any
         * renormalization of the surviving tokens. */
        double lmin = log((double)p->min_p);
        size_t c = 0;
        for (size_t j = 0; j < m; j++)
            if ((double)a[j].v - mx >= lmin)
                a[c++] = a[j];
        m = c;
    }

    double inv_t = 1.0 / (double)p->temperature, sum = 0.0;
    for (size_t j = 0; j < m; j++) {
        a[j].e = exp(((double)a[j].v - mx) * inv_t);
        sum += a[j].e;
    }
    *total = sum;
    return m;
}

int32_t sampler_sample(sampler *s, const float *logits)
{
    double total;
    size_t m = prepare(s, logits, &total);
    const item *a = s->cand;
    if (m == 1)
        return a[0].id;
    double target = rng_uniform(s->rng) * total, cum = 0.0;
    size_t last = 0; /* last token with nonzero weight, against rounding */
    for (size_t j = 0; j < m; j++) {
        if (a[j].e <= 0.0)
            continue;
        cum += a[j].e;
        last = j;
        if (cum > target)
            return a[j].id;
    }
    return a[last].id;
}

void sampler_probs(sampler *s, const float *logits, float *probs)
{
    double total;
    size_t m = prepare(s, logits, &total);
    memset(probs, 0, (size_t)s->n_vocab * sizeof *probs);
    for (size_t j = 0; j < m; j++)
        probs[s->cand[j].id] = (float)(s->cand[j].e / total);
}
