/* attn_tiled.c - the production attention kernel (attn.h): exact causal
 * softmax(q·Kᵀ·scale)·V over a paged KV cache, one K/V tile at a time with an
 * online softmax, so memory stays bounded by the scratch whatever the context.
 *
 * Work order, per KV head g in [kv_begin, kv_end) and per query tile (up to
 * q_tile consecutive query rows):
 *   for every KV tile the tile's causal/window mask leaves at least partly
 *   visible (tiles hidden for the whole query tile are never visited):
 *     - K is transposed (and converted from F16) into scratch once,
 *       V is used in place (F32) or converted into scratch once (F16);
 *     - every query row of the tile, for every query head of g's group, is
 *       scored against it and folded into that row's running max m, running
 *       sum l and accumulator acc.
 * So each K/V tile is read once per group and query tile, not once per head.
 *
 * attn_tiled never allocates: everything it needs lives in the attn_scratch,
 * whose size is fixed by the parameters at attn_scratch_new. */
#include "attn.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "attnd_half.h"
#include "attnd_simd.h"

/* Query rows per query tile: enough rows to amortize loading a K/V tile. */
#define ATTN_Q_TILE 16u
/* Upper bound on (heads per group) x (query rows) kept live at once, so a
 * large MQA group shrinks the query tile instead of growing the scratch
 * (the accumulators should stay cache-resident). */
#define ATTN_MAX_ROWS 256u
/* KV positions per tile: a whole block, or a slice of a larger block, so the
 * scratch does not depend on the cache's block size either. */
#define ATTN_KV_TILE 64u

struct attn_scratch {
    uint32_t head_dim; /* the largest head_dim this scratch serves */
    uint32_t group;    /* the largest n_head / n_head_kv it serves */
    uint32_t q_tile;   /* query rows per tile; q_tile * group rows fit */
    size_t bytes;
    bool avx2;         /* K tiles and row updates use the AVX2+FMA+F16C functions */
    float *acc; /* [q_tile * group][head_dim] unnormalized outputs */
    float *m;   /* [q_tile * group] running max of the scores */
    float *l;   /* [q_tile * group] running sum of exp(score - m) */
    float *kt;  /* [head_dim][ATTN_KV_TILE] the K tile, transposed */
    float *v;   /* [ATTN_KV_TILE][head_dim] the V tile, when converted from F16 */
    float *s;   /* [ATTN_KV_TILE] one row's scores, then its probabilities */
};

/* Each array starts on a cache line so the vector loops start aligned. */
static size_t line_floats(size_t n)
{
    return (n + 15u) & ~(size_t)15u;
}

static uint32_t q_tile_for(uint32_t group)
{
    uint32_t t = ATTN_MAX_ROWS / group;
    if (t > ATTN_Q_TILE)
        t = ATTN_Q_TILE;
    return t ? t : 1u;
}

attn_scratch *attn_scratch_new(const attn_params *p)
{
    if (!p || !p->n_head || !p->n_head_kv || !p->head_dim || p->n_head % p->n_head_kv)
        return NULL;
    uint32_t group = p->n_head / p->n_head_kv;
    uint32_t q_tile = q_tile_for(group);
    size_t rows = (size_t)q_tile * group;
    size_t hd = p->head_dim;
    size_t n_acc = line_floats(rows * hd), n_row = line_floats(rows);
    size_t n_tile = line_floats((size_t)ATTN_KV_TILE * hd), n_s = line_floats(ATTN_KV_TILE);
    size_t n_floats = n_acc + 2 * n_row + 2 * n_tile + n_s;
    attn_scratch *s = malloc(sizeof *s);
    float *buf = aligned_alloc(64, n_floats * sizeof(float));
    if (!s || !buf) {
        free(s);
        free(buf);
        return NULL;
    }
    s->head_dim = p->head_dim;
    s->group = group;
    s->q_tile = q_tile;
    s->bytes = sizeof *s + n_floats * sizeof(float);
    s->avx2 = attnd_cpu_avx2();
    s->acc = buf;
    s->m = s->acc + n_acc;
    s->l = s->m + n_row;
    s->kt = s->l + n_row;
    s->v = s->kt + n_tile;
    s->s = s->v + n_tile;
    return s;
}

void attn_scratch_free(attn_scratch *s)
{
    if (s) {
        free(s->acc);
        free(s);
    }
}

size_t attn_scratch_bytes(const attn_scratch *s)
{
    return s ? s->bytes : 0;
}

void attn_scratch_use_portable(attn_scratch *s)
{
    if (s)
        s->avx2 = false;
}

/* ------------------------------------------------------------ validation */

static int validate(const attn_params *p, const attn_kv_view *kv, const float *q, uint32_t n_q,
                    uint32_t pos0, uint32_t kv_begin, uint32_t kv_end, const float *out,
                    attnd_err *err)
{
    if (!p)
        return attnd_err_set(err, ATTND_EINVAL, "attn: params is NULL");
    if (!kv)
        return attnd_err_set(err, ATTND_EINVAL, "attn: kv view is NULL");
    if (!q)
        return attnd_err_set(err, ATTND_EINVAL, "attn: q is NULL");
    if (!out)
        return attnd_err_set(err, ATTND_EINVAL, "attn: out is NULL");
    if (!p->n_head)
        return attnd_err_set(err, ATTND_EINVAL, "attn: n_head is 0");
    if (!p->n_head_kv)
        return attnd_err_set(err, ATTND_EINVAL, "attn: n_head_kv is 0");
    if (!p->head_dim)
        return attnd_err_set(err, ATTND_EINVAL, "attn: head_dim is 0");
    if (p->n_head % p->n_head_kv)
        return attnd_err_set(err, ATTND_EINVAL, "attn: n_head %u is not a multiple of n_head_kv %u",
                             p->n_head, p->n_head_kv);
    if (!isfinite(p->scale))
        return attnd_err_set(err, ATTND_EINVAL, "attn: scale %g is not finite", (double)p->scale);
    if (kv_begin >= kv_end || kv_end > p->n_head_kv)
        return attnd_err_set(err, ATTND_EINVAL,
                             "attn: kv head range [%u, %u) is empty or beyond n_head_kv %u",
                             kv_begin, kv_end, p->n_head_kv);
    if (!n_q)
        return attnd_err_set(err, ATTND_EINVAL, "attn: n_q is 0");
    uint64_t kv_len = (uint64_t)pos0 + n_q;
    if (kv_len > UINT32_MAX)
        return attnd_err_set(err, ATTND_EINVAL, "attn: pos0 %u + n_q %u overflows the position range",
                             pos0, n_q);
    if (kv->dtype != ATTN_DTYPE_F32 && kv->dtype != ATTN_DTYPE_F16)
        return attnd_err_set(err, ATTND_EINVAL, "attn: kv dtype %d is neither F32 nor F16",
                             (int)kv->dtype);
    if (!kv->block_size)
        return attnd_err_set(err, ATTND_EINVAL, "attn: kv block_size is 0");
    if ((uint64_t)kv->n_blocks * kv->block_size < kv_len)
        return attnd_err_set(err, ATTND_EINVAL, "attn: kv cache has %u blocks of %u, needs %llu positions",
                             kv->n_blocks, kv->block_size, (unsigned long long)kv_len);
    if (!kv->k_blocks || !kv->v_blocks)
        return attnd_err_set(err, ATTND_EINVAL, "attn: kv %s block table is NULL",
                             kv->k_blocks ? "V" : "K");
    uint32_t need = (uint32_t)((kv_len + kv->block_size - 1) / kv->block_size);
    for (uint32_t b = 0; b < need; b++)
        if (!kv->k_blocks[b] || !kv->v_blocks[b])
            return attnd_err_set(err, ATTND_EINVAL, "attn: kv %s block %u is NULL",
                                 kv->k_blocks[b] ? "V" : "K", b);
    return ATTND_OK;
}

/* ------------------------------------------------------------ tile loads */

/* kt[d][j] = K[row0 + j][d] for j < n: transposed so that scoring one query
 * against the tile is a contiguous, vectorizable loop over j for each d. */
static void load_k_tile(float *restrict kt, const void *blk, attn_dtype dtype, size_t row0,
                        uint32_t n, uint32_t hd)
{
    if (dtype == ATTN_DTYPE_F32) {
        const float *restrict k = (const float *)blk + row0 * hd;
        for (uint32_t j = 0; j < n; j++)
            for (uint32_t d = 0; d < hd; d++)
                kt[(size_t)d * n + j] = k[(size_t)j * hd + d];
    } else {
        /* Convert a row at a time (vectorized), then transpose it. */
        const uint16_t *restrict k = (const uint16_t *)blk + row0 * hd;
        float row[256];
        for (uint32_t j = 0; j < n; j++) {
            for (uint32_t d0 = 0; d0 < hd; d0 += 256) {
                uint32_t w = hd - d0 < 256 ? hd - d0 : 256;
                attnd_f16_to_f32_row(k + (size_t)j * hd + d0, row, w);
                for (uint32_t d = 0; d < w; d++)
                    kt[(size_t)(d0 + d) * n + j] = row[d];
            }
        }
    }
}

static void load_v_tile(float *restrict v, const uint16_t *restrict src, uint32_t n, uint32_t hd)
{
    attnd_f16_to_f32_row(src, v, (size_t)n * hd);
}

/* ------------------------------------------------------------ one row */

/* s[j] = scale * q·K[j] for j in [a, b), K given transposed (kt[d][j], row
 * length n): each s[j] is its own sum, so the j loop vectorizes without
 * reassociating anything. Four dimensions per pass: a quarter of the loads
 * and stores of s. */
static void scores(const float *restrict q, float scale, const float *restrict kt, uint32_t n,
                   uint32_t a, uint32_t b, uint32_t hd, float *restrict s)
{
    for (uint32_t j = a; j < b; j++)
        s[j] = 0.0f;
    uint32_t d = 0;
    for (; d + 4 <= hd; d += 4) {
        const float q0 = q[d] * scale, q1 = q[d + 1] * scale;
        const float q2 = q[d + 2] * scale, q3 = q[d + 3] * scale;
        const float *restrict k0 = kt + (size_t)d * n;
        const float *restrict k1 = k0 + n;
        const float *restrict k2 = k1 + n;
        const float *restrict k3 = k2 + n;
        for (uint32_t j = a; j < b; j++)
            s[j] += q0 * k0[j] + q1 * k1[j] + q2 * k2[j] + q3 * k3[j];
    }
    for (; d < hd; d++) {
        const float qd = q[d] * scale;
        const float *restrict kd = kt + (size_t)d * n;
        for (uint32_t j = a; j < b; j++)
            s[j] += qd * kd[j];
    }
}

/* Width of accumulate's partial sums: small enough to stay in vector
 * registers across the whole loop over V rows, so that loop only loads V. */
#define ATTN_LANES 16u

/* acc[i] = alpha * acc[i] + sum over j in [a, b) of p[j] * v[j][i]; the
 * rescaling rides along in the same pass over acc. */
static void accumulate(float *restrict acc, float alpha, const float *restrict p,
                       const float *restrict v, uint32_t a, uint32_t b, uint32_t hd)
{
    uint32_t i0 = 0;
    for (; i0 + ATTN_LANES <= hd; i0 += ATTN_LANES) {
        float t[ATTN_LANES];
        for (uint32_t u = 0; u < ATTN_LANES; u++)
            t[u] = acc[i0 + u] * alpha;
        for (uint32_t j = a; j < b; j++) {
            const float pj = p[j];
            const float *restrict vj = v + (size_t)j * hd + i0;
            for (uint32_t u = 0; u < ATTN_LANES; u++)
                t[u] += pj * vj[u];
        }
        for (uint32_t u = 0; u < ATTN_LANES; u++)
            acc[i0 + u] = t[u];
    }
    for (uint32_t i = i0; i < hd; i++) {
        float t = acc[i] * alpha;
        for (uint32_t j = a; j < b; j++)
            t += p[j] * v[(size_t)j * hd + i];
        acc[i] = t;
    }
}

/* Folds tile positions [a, b) (of n) into one (query row, head): scores,
 * online-softmax update of m and l, and acc += p·V with acc first rescaled
 * by exp(m_old - m_new) when the max grows. */
static void row_update(const float *restrict q, float scale, const float *restrict kt,
                       const float *restrict v, uint32_t n, uint32_t a, uint32_t b, uint32_t hd,
                       float *restrict s, float *restrict acc, float *restrict m,
                       float *restrict l)
{
    scores(q, scale, kt, n, a, b, hd, s);
    float m_old = *m, m_new = m_old;
    for (uint32_t j = a; j < b; j++)
        m_new = s[j] > m_new ? s[j] : m_new;
    float sum = 0.0f;
    for (uint32_t j = a; j < b; j++) {
        s[j] = expf(s[j] - m_new);
        sum += s[j];
    }
    /* First tile: m_old is -inf, alpha is 0 and l, acc are still 0. */
    const float alpha = expf(m_old - m_new);
    *m = m_new;
    *l = *l * alpha + sum;
    accumulate(acc, alpha, s, v, a, b, hd);
}

#ifdef ATTND_HAVE_X86
/* ------------------------------------------------------------ AVX2 + FMA
 *
 * The same three steps as row_update with eight lanes at a time and the
 * exponential as a polynomial, so nothing in the loop calls libm. Results
 * differ from the portable path only by rounding (the scale is applied after
 * the dot product, sums are reassociated); tests hold both to the
 * double-precision reference. */

#define ATTN_AVX2 ATTND_AVX2

ATTN_AVX2 static inline float hmax256(__m256 v)
{
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    x = _mm_max_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

/* e^x for x <= 0 (scores minus their running max): x = n·ln2 + r with
 * |r| <= ln2/2, e^r by Cephes' degree-6 polynomial (about 1 ulp), 2^n built
 * in the exponent bits. Inputs below -87 give e^-87 ≈ 1.6e-38 instead of
 * something smaller, which no sum that also holds e^0 = 1 can notice. */
ATTN_AVX2 static inline __m256 exp256(__m256 x)
{
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* scores() with the scale applied to each finished dot product; sixteen
 * positions and two dimensions per step keep four FMA chains in flight. */
ATTN_AVX2 static void scores_avx2(const float *restrict q, float scale, const float *restrict kt,
                                  uint32_t n, uint32_t a, uint32_t b, uint32_t hd,
                                  float *restrict s)
{
    const __m256 vscale = _mm256_set1_ps(scale);
    uint32_t j = a;
    for (; j + 16 <= b; j += 16) {
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        uint32_t d = 0;
        for (; d + 2 <= hd; d += 2) {
            const float *k0 = kt + (size_t)d * n + j, *k1 = k0 + n;
            const __m256 q0 = _mm256_broadcast_ss(q + d), q1 = _mm256_broadcast_ss(q + d + 1);
            s0 = _mm256_fmadd_ps(q0, _mm256_loadu_ps(k0), s0);
            s1 = _mm256_fmadd_ps(q0, _mm256_loadu_ps(k0 + 8), s1);
            s2 = _mm256_fmadd_ps(q1, _mm256_loadu_ps(k1), s2);
            s3 = _mm256_fmadd_ps(q1, _mm256_loadu_ps(k1 + 8), s3);
        }
        if (d < hd) {
            const float *k0 = kt + (size_t)d * n + j;
            const __m256 q0 = _mm256_broadcast_ss(q + d);
            s0 = _mm256_fmadd_ps(q0, _mm256_loadu_ps(k0), s0);
            s1 = _mm256_fmadd_ps(q0, _mm256_loadu_ps(k0 + 8), s1);
        }
        _mm256_storeu_ps(s + j, _mm256_mul_ps(_mm256_add_ps(s0, s2), vscale));
        _mm256_storeu_ps(s + j + 8, _mm256_mul_ps(_mm256_add_ps(s1, s3), vscale));
    }
    for (; j + 8 <= b; j += 8) {
        __m256 s0 = _mm256_setzero_ps(), s1 = s0;
        uint32_t d = 0;
        for (; d + 2 <= hd; d += 2) {
            const float *k0 = kt + (size_t)d * n + j;
            s0 = _mm256_fmadd_ps(_mm256_broadcast_ss(q + d), _mm256_loadu_ps(k0), s0);
            s1 = _mm256_fmadd_ps(_mm256_broadcast_ss(q + d + 1), _mm256_loadu_ps(k0 + n), s1);
        }
        if (d < hd)
            s0 = _mm256_fmadd_ps(_mm256_broadcast_ss(q + d),
                                 _mm256_loadu_ps(kt + (size_t)d * n + j), s0);
        _mm256_storeu_ps(s + j, _mm256_mul_ps(_mm256_add_ps(s0, s1), vscale));
    }
    for (; j < b; j++) {
        float t = 0.0f;
        for (uint32_t d = 0; d < hd; d++)
            t += q[d] * kt[(size_t)d * n + j];
        s[j] = t * scale;
    }
}

/* accumulate(): 64 lanes of acc live in eight registers across the loop
 * over V rows, then 8 lanes at a time, then single lanes. */
ATTN_AVX2 static void accumulate_avx2(float *restrict acc, float alpha, const float *restrict p,
                                      const float *restrict v, uint32_t a, uint32_t b, uint32_t hd)
{
    const __m256 valpha = _mm256_set1_ps(alpha);
    uint32_t i0 = 0;
    for (; i0 + 64 <= hd; i0 += 64) {
        __m256 t[8];
        for (int u = 0; u < 8; u++)
            t[u] = _mm256_mul_ps(_mm256_loadu_ps(acc + i0 + 8 * u), valpha);
        for (uint32_t j = a; j < b; j++) {
            const __m256 pj = _mm256_broadcast_ss(p + j);
            const float *vj = v + (size_t)j * hd + i0;
            for (int u = 0; u < 8; u++)
                t[u] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8 * u), t[u]);
        }
        for (int u = 0; u < 8; u++)
            _mm256_storeu_ps(acc + i0 + 8 * u, t[u]);
    }
    for (; i0 + 8 <= hd; i0 += 8) {
        __m256 t = _mm256_mul_ps(_mm256_loadu_ps(acc + i0), valpha);
        for (uint32_t j = a; j < b; j++)
            t = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j), _mm256_loadu_ps(v + (size_t)j * hd + i0), t);
        _mm256_storeu_ps(acc + i0, t);
    }
    for (uint32_t i = i0; i < hd; i++) {
        float t = acc[i] * alpha;
        for (uint32_t j = a; j < b; j++)
            t += p[j] * v[(size_t)j * hd + i];
        acc[i] = t;
    }
}

ATTN_AVX2 static void row_update_avx2(const float *restrict q, float scale,
                                      const float *restrict kt, const float *restrict v,
                                      uint32_t n, uint32_t a, uint32_t b, uint32_t hd,
                                      float *restrict s, float *restrict acc, float *restrict m,
                                      float *restrict l)
{
    scores_avx2(q, scale, kt, n, a, b, hd, s);
    const float m_old = *m;
    float m_new = m_old;
    uint32_t j = a;
    if (b - a >= 8) {
        __m256 vm = _mm256_set1_ps(m_old);
        for (; j + 8 <= b; j += 8)
            vm = _mm256_max_ps(vm, _mm256_loadu_ps(s + j));
        m_new = hmax256(vm);
    }
    for (; j < b; j++)
        m_new = s[j] > m_new ? s[j] : m_new;

    const __m256 vmax = _mm256_set1_ps(m_new);
    __m256 vsum = _mm256_setzero_ps();
    for (j = a; j + 8 <= b; j += 8) {
        const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j), vmax));
        _mm256_storeu_ps(s + j, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    float sum = attnd_hsum256(vsum);
    for (; j < b; j++) {
        s[j] = expf(s[j] - m_new);
        sum += s[j];
    }
    const float alpha = expf(m_old - m_new);
    *m = m_new;
    *l = *l * alpha + sum;
    accumulate_avx2(acc, alpha, s, v, a, b, hd);
}

/* Transposes the 8x8 block r[0..7] (rows: positions, lanes: dimensions) in
 * place so r[k] holds dimension k of the eight positions. */
ATTN_AVX2 static inline void transpose8(__m256 r[8])
{
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* load_k_tile() in 8x8 blocks converted (F16C) and transposed in registers;
 * positions and dimensions past the last whole block go the portable way. */
ATTN_AVX2 static void
load_k_tile_avx2(float *restrict kt, const void *blk, attn_dtype dtype, size_t row0, uint32_t n,
                 uint32_t hd)
{
    const uint32_t n8 = n & ~7u, hd8 = hd & ~7u;
    for (uint32_t j0 = 0; j0 < n8; j0 += 8)
        for (uint32_t d0 = 0; d0 < hd8; d0 += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++) {
                const size_t at = (row0 + j0 + (uint32_t)i) * hd + d0;
                r[i] = dtype == ATTN_DTYPE_F32
                           ? _mm256_loadu_ps((const float *)blk + at)
                           : _mm256_cvtph_ps(_mm_loadu_si128(
                                 (const __m128i *)(const void *)((const uint16_t *)blk + at)));
            }
            transpose8(r);
            for (int k = 0; k < 8; k++)
                _mm256_storeu_ps(kt + (size_t)(d0 + (uint32_t)k) * n + j0, r[k]);
        }
    for (uint32_t j = 0; j < n; j++)
        for (uint32_t d = j < n8 ? hd8 : 0; d < hd; d++) {
            const size_t at = (row0 + j) * hd + d;
            kt[(size_t)d * n + j] = dtype == ATTN_DTYPE_F32
                                        ? ((const float *)blk)[at]
                                        : attnd_f16_to_f32(((const uint16_t *)blk)[at]);
        }
}
#endif

/* ------------------------------------------------------------ the kernel */

/* First position visible to the query at position P: (P - W, P]. */
static uint32_t first_visible(uint32_t p, uint32_t window)
{
    return window && p >= window ? p - window + 1 : 0;
}

int attn_tiled(const attn_params *p, const attn_kv_view *kv, const float *q, uint32_t n_q,
               uint32_t pos0, uint32_t kv_begin, uint32_t kv_end, float *out,
               attn_scratch *scratch, attnd_err *err)
{
    int rc = validate(p, kv, q, n_q, pos0, kv_begin, kv_end, out, err);
    if (rc != ATTND_OK)
        return rc;
    if (!scratch)
        return attnd_err_set(err, ATTND_EINVAL, "attn: scratch is NULL");
    const uint32_t hd = p->head_dim, n_head = p->n_head, group = n_head / p->n_head_kv;
    if (hd > scratch->head_dim || group > scratch->group)
        return attnd_err_set(err, ATTND_EINVAL,
                             "attn: scratch was made for head_dim %u and %u heads per group, "
                             "call has head_dim %u and %u",
                             scratch->head_dim, scratch->group, hd, group);

    const uint32_t bs = kv->block_size, window = p->window, q_tile = scratch->q_tile;
    const float scale = p->scale;
    float *restrict acc = scratch->acc, *restrict m = scratch->m, *restrict l = scratch->l;
    float *restrict kt = scratch->kt, *restrict s = scratch->s;

    for (uint32_t g = kv_begin; g < kv_end; g++) {
        for (uint32_t t0 = 0; t0 < n_q; t0 += q_tile) {
            const uint32_t nt = n_q - t0 < q_tile ? n_q - t0 : q_tile;
            const uint32_t rows = nt * group;
            const uint32_t p_min = pos0 + t0, p_max = p_min + nt - 1;
            for (uint32_t r = 0; r < rows; r++) {
                m[r] = -INFINITY;
                l[r] = 0.0f;
            }
            memset(acc, 0, (size_t)rows * hd * sizeof *acc);

            /* Only positions [first_visible(p_min), p_max] matter to this
             * query tile: every tile outside is skipped without a look. */
            uint32_t j1;
            for (uint32_t j0 = first_visible(p_min, window); j0 <= p_max; j0 = j1) {
                const uint32_t blk = j0 / bs, off = j0 % bs;
                uint32_t n = bs - off;
                if (n > ATTN_KV_TILE)
                    n = ATTN_KV_TILE;
                if (n > p_max - j0 + 1)
                    n = p_max - j0 + 1;
                j1 = j0 + n;

                const size_t row0 = (size_t)g * bs + off;
#ifdef ATTND_HAVE_X86
                if (scratch->avx2)
                    load_k_tile_avx2(kt, kv->k_blocks[blk], kv->dtype, row0, n, hd);
                else
#endif
                    load_k_tile(kt, kv->k_blocks[blk], kv->dtype, row0, n, hd);
                const float *v;
                if (kv->dtype == ATTN_DTYPE_F32) {
                    v = (const float *)kv->v_blocks[blk] + row0 * hd;
                } else {
                    load_v_tile(scratch->v, (const uint16_t *)kv->v_blocks[blk] + row0 * hd, n, hd);
                    v = scratch->v;
                }

                for (uint32_t i = 0; i < nt; i++) {
                    /* The mask, as the visible slice [a, b) of this tile:
                     * all of it unless the tile straddles the diagonal or
                     * the window's edge for this row. */
                    const uint32_t pos = p_min + i, lo = first_visible(pos, window);
                    const uint32_t a = lo > j0 ? lo - j0 : 0;
                    const uint32_t b = pos >= j1 - 1 ? n : pos + 1 > j0 ? pos + 1 - j0 : 0;
                    if (a >= b)
                        continue;
                    for (uint32_t hg = 0; hg < group; hg++) {
                        const uint32_t h = g * group + hg, r = i * group + hg;
                        const float *qr = q + ((size_t)(t0 + i) * n_head + h) * hd;
#ifdef ATTND_HAVE_X86
                        if (scratch->avx2) {
                            row_update_avx2(qr, scale, kt, v, n, a, b, hd, s,
                                            acc + (size_t)r * hd, &m[r], &l[r]);
                            continue;
                        }
#endif
                        row_update(qr, scale, kt, v, n, a, b, hd, s, acc + (size_t)r * hd,
                                   &m[r], &l[r]);
                    }
                }
            }

            /* Row p always sees position p itself, so l > 0. */
            for (uint32_t i = 0; i < nt; i++)
                for (uint32_t hg = 0; hg < group; hg++) {
                    const uint32_t h = g * group + hg, r = i * group + hg;
                    const float inv = 1.0f / l[r];
                    const float *restrict ar = acc + (size_t)r * hd;
                    float *restrict o = out + ((size_t)(t0 + i) * n_head + h) * hd;
                    for (uint32_t d = 0; d < hd; d++)
                        o[d] = ar[d] * inv;
                }
        }
    }
    return ATTND_OK;
}
