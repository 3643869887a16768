/* engine.c - the batched forward pass (engine.h): the RoPE families (Llama,
 * Qwen 2, Qwen 3; block_rope) and GPT-2 (block_gpt2).
 *
 * One step, in the order the math runs:
 *   x = embed(token) (+ pos_embed for gpt2)
 *   per layer: h = norm(x); q,k,v = h·W (one matmul over all entries)
 *              (+ biases; per-head norms of q and k);
 *              rope(q,k); kv_store(k,v) into each entry's KV slot;
 *              att = attend(q, the sequence's blocks);
 *              x += att·Wo; x += ffn(norm(x))
 *   logits (only rows that want them) = norm(x)·Wout
 * A prompt chunk and ten decoding sequences are the same thing here: rows.
 * Rows of one sequence form a group; attention runs per (group, KV head). */
#include "engine.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attn.h"
#include "attnd_ckd.h"
#include "attnd_pool.h"
#include "matmul.h"

/* OpenBLAS's own thread count (a process-wide library setting). */
void openblas_set_num_threads(int n);

struct group {
    uint32_t seq;
    uint32_t first; /* index of its first entry */
    uint32_t n;
    uint32_t pos0;
};

struct engine {
    const model *m;
    const model_hparams *hp;
    attnd_pool *pool;
    kv_pool *kv;
    uint32_t n_threads;
    uint32_t max_entries;
    quant_isa isa;
    uint32_t q_dim, kv_dim;

    /* sequences, indexed by id */
    uint32_t n_seq_slots;
    kv_seq **seqs;     /* NULL: slot free */
    uint32_t *seq_len;
    uint64_t *seq_stamp; /* step counter when last seen, to catch split groups */
    const engine_tap **seq_tap; /* per slot, NULL: no attention export */
    uint64_t step_no;

    /* activations, [max_entries][...] */
    float *x, *h, *q, *k, *v, *att, *ff_a, *ff_b, *rows;
    float *rope_cos, *rope_sin; /* [max_entries][n_rot/2] */
    double *inv_freq;           /* [n_rot/2] */

    /* activations quantized for the weight being multiplied, [max_entries]
     * rows of matmul_act_row_bytes_max(widest) bytes */
    void *xq;

    /* per thread */
    float **mm_scratch;
    attn_scratch **attn_scr;
    int *task_rc;
    attnd_err *task_err;

    /* per step */
    struct group *groups;
    uint32_t n_groups;
    attn_kv_view *views;
    const void **blk_ptrs;
    size_t blk_ptrs_cap;
    attn_params ap;

    bool profile_on;
    double prof_last; /* time of the last prof_mark */
    engine_profile prof;
};

/* ---------------------------------------------------------------- profile */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Charges the time since the last mark to PHASE. */
static void prof_mark(engine *e, engine_phase phase)
{
    if (!e->profile_on)
        return;
    double t = now_s();
    e->prof.seconds[phase] += t - e->prof_last;
    e->prof_last = t;
}

static void pool_run(engine *e, attnd_pool_fn fn, void *ctx, uint32_t n_tasks)
{
    e->prof.pool_runs++;
    attnd_pool_run(e->pool, fn, ctx, n_tasks);
}

void engine_profile_get(const engine *e, engine_profile *out)
{
    *out = e->prof;
}

void engine_profile_reset(engine *e)
{
    memset(&e->prof, 0, sizeof e->prof);
}

const char *engine_phase_name(engine_phase p)
{
    static const char *const names[ENGINE_PHASE_COUNT] = {
        [ENGINE_PHASE_EMBED] = "embed",       [ENGINE_PHASE_NORM] = "norm",
        [ENGINE_PHASE_QUANTIZE] = "quantize", [ENGINE_PHASE_QKV] = "qkv",
        [ENGINE_PHASE_ROPE] = "rope",         [ENGINE_PHASE_KV_WRITE] = "kv write",
        [ENGINE_PHASE_ATTENTION] = "attention", [ENGINE_PHASE_WO] = "wo",
        [ENGINE_PHASE_FFN_UP] = "ffn up",     [ENGINE_PHASE_FFN_DOWN] = "ffn down",
        [ENGINE_PHASE_ELEMWISE] = "elementwise", [ENGINE_PHASE_OUTPUT] = "output",
    };
    return (unsigned)p < ENGINE_PHASE_COUNT ? names[p] : "?";
}

/* ---------------------------------------------------------------- parallel parts */

/* Matmuls that read the same activations run as one parallel loop: one
 * hand-off and one wait for q, k and v (or gate and up) instead of three. */
#define MM_MAX_OUT 3u

struct mm_out {
    const model_weight *w;
    float *y;
    uint32_t ldy;
    uint32_t task0; /* its first task */
};

struct mm_job {
    engine *e;
    const float *x;
    const void *xq; /* x quantized, when the weights' type quantizes */
    uint32_t M;
    uint32_t chunk; /* output rows per task (activation rows when quantizing) */
    uint32_t n_out;
    struct mm_out out[MM_MAX_OUT];
};

static void mm_task(void *ctx, uint32_t task, uint32_t thread)
{
    const struct mm_job *j = ctx;
    uint32_t o = 0;
    while (o + 1 < j->n_out && task >= j->out[o + 1].task0)
        o++;
    const struct mm_out *mo = &j->out[o];
    const uint32_t n = mo->w->n_out;
    uint32_t r0 = (task - mo->task0) * j->chunk;
    uint32_t r1 = r0 + j->chunk < n ? r0 + j->chunk : n;
    if (j->xq)
        matmul_rows_quant(mo->w, j->xq, j->M, mo->y, mo->ldy, r0, r1, j->e->isa);
    else
        matmul_rows(mo->w, j->x, j->M, mo->y, mo->ldy, r0, r1, j->e->mm_scratch[thread],
                    j->e->isa);
}

static void quantize_task(void *ctx, uint32_t task, uint32_t thread)
{
    (void)thread;
    const struct mm_job *j = ctx;
    uint32_t m0 = task * j->chunk;
    uint32_t m1 = m0 + j->chunk < j->M ? m0 + j->chunk : j->M;
    matmul_quantize_rows(j->out[0].w, j->x, m0, m1, j->e->xq, j->e->isa);
}

/* For each of the N_OUT weights W[i]: Y[i][M][LDY[i]] (columns [0, n_out))
 * = x[M][n_in] · W[i]ᵀ, split by output rows, charged to PHASE. Quantized
 * weights: x is quantized once first (split by activation rows when there
 * are many); weights whose activation formats differ run one at a time. */
static void run_matmuls(engine *e, engine_phase phase, const float *x, uint32_t M, uint32_t n_out,
                        const model_weight *const *w, float *const *y, const uint32_t *ldy)
{
    for (uint32_t i = 1; i < n_out; i++)
        if (w[i]->qt->act_type != w[0]->qt->act_type) {
            for (uint32_t k = 0; k < n_out; k++)
                run_matmuls(e, phase, x, M, 1, &w[k], &y[k], &ldy[k]);
            return;
        }
    struct mm_job j = {.e = e, .x = x, .M = M, .n_out = n_out};
    uint64_t rows = 0;
    for (uint32_t i = 0; i < n_out; i++) {
        j.out[i] = (struct mm_out){w[i], y[i], ldy[i], 0};
        rows += w[i]->n_out;
        if (e->profile_on)
            e->prof.weight_bytes[phase] += (uint64_t)w[i]->row_bytes * w[i]->n_out;
    }
    if (matmul_quantizes(w[0])) {
        /* a decode batch is quicker to quantize than to hand out */
        if (M <= 8) {
            matmul_quantize_rows(w[0], x, 0, M, e->xq, e->isa);
        } else {
            j.chunk = (M + e->n_threads - 1) / e->n_threads;
            pool_run(e, quantize_task, &j, (M + j.chunk - 1) / j.chunk);
        }
        j.xq = e->xq;
        prof_mark(e, ENGINE_PHASE_QUANTIZE);
    }
    /* Whole tiles per task, two tasks per thread for a decode batch: each
     * task starts a new stream through the weights, whose first kilobytes
     * wait on the prefetchers (6 MiB matrices in 2 tasks per thread streamed
     * 8% faster than in 4 under bench/kernels' pool, Q8_0 decode ~3%);
     * four for a prompt, where a late thread leaves less compute to others. */
    const uint32_t per_thread = M <= 16 ? 2 : 4;
    uint64_t chunk = (rows + e->n_threads * per_thread - 1) / (e->n_threads * per_thread);
    j.chunk = (uint32_t)((chunk + MATMUL_TILE_ROWS - 1) / MATMUL_TILE_ROWS * MATMUL_TILE_ROWS);
    uint32_t tasks = 0;
    for (uint32_t i = 0; i < n_out; i++) {
        j.out[i].task0 = tasks;
        tasks += (w[i]->n_out + j.chunk - 1) / j.chunk;
    }
    pool_run(e, mm_task, &j, tasks);
    prof_mark(e, phase);
}

static void run_matmul(engine *e, engine_phase phase, const model_weight *w, const float *x,
                       uint32_t M, float *y, uint32_t ldy)
{
    run_matmuls(e, phase, x, M, 1, &w, &y, &ldy);
}

static void attn_task(void *ctx, uint32_t task, uint32_t thread)
{
    engine *e = ctx;
    uint32_t g = task / e->hp->n_head_kv, kvh = task % e->hp->n_head_kv;
    const struct group *gr = &e->groups[g];
    const float *q = e->q + (size_t)gr->first * e->q_dim;
    float *out = e->att + (size_t)gr->first * e->q_dim;
    int rc = attn_tiled(&e->ap, &e->views[g], q, gr->n, gr->pos0, kvh, kvh + 1, out,
                        e->attn_scr[thread], &e->task_err[thread]);
    if (rc != ATTND_OK)
        e->task_rc[thread] = rc;
}

/* ---------------------------------------------------------------- row math */

/* ROWS rows of N floats (consecutive), each normalized into OUT (may be X):
 * LayerNorm when B is given (gpt2's norms have a bias), RMSNorm otherwise.
 * Sums run in double so a row's scale does not depend on its length's
 * rounding. */
static void norm_rows(float *out, const float *x, uint32_t rows, uint32_t n, const float *w,
                      const float *b, float eps)
{
    for (uint32_t r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * n;
        float *o = out + (size_t)r * n;
        double mean = 0.0, var = 0.0;
        if (b) {
            for (uint32_t i = 0; i < n; i++)
                mean += xr[i];
            mean /= n;
        }
        for (uint32_t i = 0; i < n; i++)
            var += ((double)xr[i] - mean) * ((double)xr[i] - mean);
        float scale = (float)(1.0 / sqrt(var / n + eps));
        if (b)
            for (uint32_t i = 0; i < n; i++)
                o[i] = (float)((double)xr[i] - mean) * scale * w[i] + b[i];
        else
            for (uint32_t i = 0; i < n; i++)
                o[i] = xr[i] * scale * w[i];
    }
}

/* Y[r][i] += B[i] for ROWS rows of N floats, row stride LD (a bias). */
static void add_rows(float *y, uint32_t rows, uint32_t n, uint32_t ld, const float *b)
{
    for (uint32_t r = 0; r < rows; r++)
        for (uint32_t i = 0; i < n; i++)
            y[(size_t)r * ld + i] += b[i];
}

/* X += Y over N floats (the residual stream). */
static void add_to(float *x, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] += y[i];
}

/* The rotation angles of a step: for entry i and pair j,
 *   angle = (pos_i / rope_scale) · base^(-2j / n_rot) / freq_factor_j
 * (freq_factor from rope_freqs.weight, Llama 3.1's long-context divisors;
 * 1 without it). Computed once per step in double, used by every layer. */
static void rope_tables(engine *e, const engine_entry *en, uint32_t n)
{
    const uint32_t half = e->hp->n_rot / 2;
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < half; j++) {
            double angle = (double)en[i].pos / e->hp->rope_scale * e->inv_freq[j];
            e->rope_cos[(size_t)i * half + j] = (float)cos(angle);
            e->rope_sin[(size_t)i * half + j] = (float)sin(angle);
        }
}

/* Rotates the first n_rot dimensions of each of N_HEADS heads by the angles
 * of COS_T/SIN_T. The pairs are adjacent, (x[2j], x[2j+1]), in Llama's GGUF
 * layout (the converter permutes Q and K to it), and the halves,
 * (x[j], x[j + n_rot/2]), in the NeoX layout Qwen keeps. */
static void rope(float *x, uint32_t n_heads, uint32_t head_dim, uint32_t n_rot, model_rope style,
                 const float *cos_t, const float *sin_t)
{
    const uint32_t half = n_rot / 2;
    const uint32_t step = style == MODEL_ROPE_NEOX ? 1 : 2;  /* from one pair to the next */
    const uint32_t mate = style == MODEL_ROPE_NEOX ? half : 1; /* a pair's second element */
    for (uint32_t h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * head_dim;
        for (uint32_t j = 0; j < half; j++) {
            float *a = v + (size_t)j * step, *b = a + mate;
            float x0 = *a, x1 = *b;
            *a = x0 * cos_t[j] - x1 * sin_t[j];
            *b = x0 * sin_t[j] + x1 * cos_t[j];
        }
    }
}

static float gelu(float x)
{
    const float c = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
}

static float silu(float x)
{
    return x / (1.0f + expf(-x));
}

/* ---------------------------------------------------------------- lifecycle */

uint32_t engine_n_threads(const engine *e) { return e->n_threads; }
const kv_pool *engine_kv(const engine *e) { return e->kv; }

void engine_free(engine *e)
{
    if (!e)
        return;
    for (uint32_t s = 0; s < e->n_seq_slots; s++)
        if (e->seqs[s])
            kv_seq_free(e->kv, e->seqs[s]);
    free(e->seqs);
    free(e->seq_len);
    free(e->seq_stamp);
    free(e->seq_tap);
    kv_pool_free(e->kv);
    for (uint32_t t = 0; e->mm_scratch && t < e->n_threads; t++)
        free(e->mm_scratch[t]);
    for (uint32_t t = 0; e->attn_scr && t < e->n_threads; t++)
        attn_scratch_free(e->attn_scr[t]);
    free(e->mm_scratch);
    free(e->xq);
    free(e->attn_scr);
    free(e->task_rc);
    free(e->task_err);
    attnd_pool_free(e->pool);
    float *bufs[] = {e->x, e->h, e->q, e->k, e->v, e->att, e->ff_a, e->ff_b, e->rows,
                     e->rope_cos, e->rope_sin};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    free(e->inv_freq);
    free(e->groups);
    free(e->views);
    free(e->blk_ptrs);
    free(e);
}

static float *alloc_rows(uint32_t rows, uint32_t width, bool *ok)
{
    float *p = malloc((size_t)rows * (width ? width : 1) * sizeof(float));
    if (!p)
        *ok = false;
    return p;
}

int engine_new(const model *m, const engine_params *p, engine **out, attnd_err *err)
{
    *out = NULL;
    engine *e = calloc(1, sizeof *e);
    if (!e)
        return attnd_err_set(err, ATTND_ENOMEM, "engine: out of memory");
    e->m = m;
    e->hp = model_hparams_of(m);
    const model_hparams *hp = e->hp;
    e->max_entries = p->max_entries ? p->max_entries : 512;
    if (e->max_entries > (1u << 16)) {
        free(e);
        return attnd_err_set(err, ATTND_EINVAL, "engine: max entries %u is above 65536",
                             p->max_entries);
    }
    e->q_dim = hp->n_head * hp->head_dim;
    e->kv_dim = hp->n_head_kv * hp->head_dim;

    int rc = attnd_pool_new(p->n_threads, &e->pool, err);
    if (rc != ATTND_OK) {
        free(e);
        return rc;
    }
    e->n_threads = attnd_pool_size(e->pool);
    e->profile_on = p->profile;
    e->isa = quant_best_isa();
    /* Our workers each call OpenBLAS on their own slice: OpenBLAS itself must
     * not start more threads. */
    openblas_set_num_threads(1);

    kv_pool_params kp = {
        .n_layer = hp->n_layer,
        .n_head_kv = hp->n_head_kv,
        .head_dim = hp->head_dim,
        .block_size = p->kv_block_size ? p->kv_block_size : KV_DEFAULT_BLOCK_SIZE,
        .dtype = p->kv_type,
        .budget_bytes = p->kv_bytes,
        .n_blocks = p->kv_blocks,
        .prefix_cache = p->prefix_cache,
    };
    if (!kp.budget_bytes && !kp.n_blocks)
        kp.n_blocks = 4 * ((hp->n_ctx + kp.block_size - 1) / kp.block_size);
    if ((rc = kv_pool_new(&kp, &e->kv, err)) != ATTND_OK) {
        engine_free(e);
        return rc;
    }

    bool ok = true;
    uint32_t n = e->max_entries, d = hp->n_embd;
    uint32_t qkv = hp->arch == MODEL_ARCH_GPT2 ? 3 * d : e->q_dim;
    uint32_t ff = hp->n_ff;
    e->x = alloc_rows(n, d, &ok);
    e->h = alloc_rows(n, d, &ok);
    e->q = alloc_rows(n, qkv, &ok); /* gpt2: fused qkv output, split in place */
    e->k = alloc_rows(n, e->kv_dim, &ok);
    e->v = alloc_rows(n, e->kv_dim, &ok);
    e->att = alloc_rows(n, e->q_dim, &ok);
    e->ff_a = alloc_rows(n, ff, &ok);
    e->ff_b = alloc_rows(n, ff, &ok);
    e->rows = alloc_rows(n, d, &ok);
    e->rope_cos = alloc_rows(n, hp->n_rot / 2, &ok);
    e->rope_sin = alloc_rows(n, hp->n_rot / 2, &ok);
    e->inv_freq = malloc((hp->n_rot / 2 + 1) * sizeof(double));
    e->groups = calloc(n, sizeof *e->groups);
    e->views = calloc(n, sizeof *e->views);
    e->mm_scratch = calloc(e->n_threads, sizeof *e->mm_scratch);
    e->attn_scr = calloc(e->n_threads, sizeof *e->attn_scr);
    e->task_rc = calloc(e->n_threads, sizeof *e->task_rc);
    e->task_err = calloc(e->n_threads, sizeof *e->task_err);
    if (!e->inv_freq || !e->groups || !e->views || !e->mm_scratch || !e->attn_scr ||
        !e->task_rc || !e->task_err)
        ok = false;
    e->ap = (attn_params){
        .n_head = hp->n_head,
        .n_head_kv = hp->n_head_kv,
        .head_dim = hp->head_dim,
        .scale = 1.0f / sqrtf((float)hp->head_dim),
        .window = 0,
    };
    uint32_t widest = d > ff ? d : ff;
    widest = widest > e->q_dim ? widest : e->q_dim;
    e->xq = malloc((size_t)n * matmul_act_row_bytes_max(widest));
    if (!e->xq)
        ok = false;
    for (uint32_t t = 0; ok && t < e->n_threads; t++) {
        e->mm_scratch[t] = malloc(matmul_scratch_floats(widest) * sizeof(float));
        e->attn_scr[t] = attn_scratch_new(&e->ap);
        if (!e->mm_scratch[t] || !e->attn_scr[t])
            ok = false;
    }
    if (!ok) {
        engine_free(e);
        return attnd_err_set(err, ATTND_ENOMEM, "engine: out of memory for %u entries", n);
    }
    for (uint32_t i = 0; i < hp->n_rot / 2; i++)
        e->inv_freq[i] = pow((double)hp->rope_freq_base, -2.0 * i / (double)hp->n_rot) /
                         (m->rope_freqs ? (double)m->rope_freqs[i] : 1.0);
    *out = e;
    return ATTND_OK;
}

/* ---------------------------------------------------------------- sequences */

int engine_seq_open(engine *e, uint32_t *seq, attnd_err *err)
{
    uint32_t s = 0;
    while (s < e->n_seq_slots && e->seqs[s])
        s++;
    if (s == e->n_seq_slots) {
        uint32_t cap = e->n_seq_slots ? e->n_seq_slots * 2 : 16;
        kv_seq **seqs = realloc(e->seqs, cap * sizeof *seqs);
        if (seqs)
            e->seqs = seqs;
        uint32_t *len = realloc(e->seq_len, cap * sizeof *len);
        if (len)
            e->seq_len = len;
        uint64_t *stamp = realloc(e->seq_stamp, cap * sizeof *stamp);
        if (stamp)
            e->seq_stamp = stamp;
        const engine_tap **tap = realloc(e->seq_tap, cap * sizeof *tap);
        if (tap)
            e->seq_tap = tap;
        if (!seqs || !len || !stamp || !tap)
            return attnd_err_set(err, ATTND_ENOMEM, "engine: out of memory for sequences");
        for (uint32_t i = e->n_seq_slots; i < cap; i++) {
            e->seqs[i] = NULL;
            e->seq_len[i] = 0;
            e->seq_stamp[i] = 0;
            e->seq_tap[i] = NULL;
        }
        e->n_seq_slots = cap;
    }
    if (!(e->seqs[s] = kv_seq_new()))
        return attnd_err_set(err, ATTND_ENOMEM, "engine: out of memory for a sequence");
    e->seq_len[s] = 0;
    e->seq_stamp[s] = 0;
    e->seq_tap[s] = NULL;
    *seq = s;
    return ATTND_OK;
}

void engine_seq_close(engine *e, uint32_t seq)
{
    if (seq < e->n_seq_slots && e->seqs[seq]) {
        kv_seq_free(e->kv, e->seqs[seq]);
        e->seqs[seq] = NULL;
        e->seq_len[seq] = 0;
        e->seq_tap[seq] = NULL;
    }
}

int engine_seq_tap(engine *e, uint32_t seq, const engine_tap *tap, attnd_err *err)
{
    if (seq >= e->n_seq_slots || !e->seqs[seq])
        return attnd_err_set(err, ATTND_EINVAL, "tap: sequence %u is not open", seq);
    for (uint32_t i = 0; tap && i < tap->n_layers; i++)
        if (tap->layers[i] >= e->hp->n_layer)
            return attnd_err_set(err, ATTND_EINVAL, "tap: layer %u of %u", tap->layers[i],
                                 e->hp->n_layer);
    for (uint32_t i = 0; tap && i < tap->n_heads; i++)
        if (tap->heads[i] >= e->hp->n_head)
            return attnd_err_set(err, ATTND_EINVAL, "tap: head %u of %u", tap->heads[i],
                                 e->hp->n_head);
    e->seq_tap[seq] = tap;
    return ATTND_OK;
}

uint32_t engine_seq_len(const engine *e, uint32_t seq)
{
    return seq < e->n_seq_slots && e->seqs[seq] ? e->seq_len[seq] : 0;
}

int engine_seq_fork(engine *e, uint32_t src, uint32_t dst, attnd_err *err)
{
    if (src >= e->n_seq_slots || !e->seqs[src] || dst >= e->n_seq_slots || !e->seqs[dst] ||
        src == dst || e->seq_len[dst] != 0)
        return attnd_err_set(err, ATTND_EINVAL, "fork: sequence %u into %u: %s", src, dst,
                             src == dst ? "the same sequence" : "not open, or the target is not empty");
    int rc = kv_seq_share(e->kv, e->seqs[dst], e->seqs[src], err);
    if (rc == ATTND_OK)
        e->seq_len[dst] = e->seq_len[src];
    return rc;
}

uint32_t engine_seq_reuse(engine *e, uint32_t seq, const int32_t *tokens, uint32_t max_tokens)
{
    if (seq >= e->n_seq_slots || !e->seqs[seq] || e->seq_len[seq] != 0)
        return 0;
    return e->seq_len[seq] = kv_seq_match(e->kv, e->seqs[seq], tokens, max_tokens);
}

void engine_seq_publish(engine *e, uint32_t seq, const int32_t *tokens, uint32_t n_tokens)
{
    if (seq >= e->n_seq_slots || !e->seqs[seq])
        return;
    kv_seq_publish(e->kv, e->seqs[seq], tokens,
                   n_tokens < e->seq_len[seq] ? n_tokens : e->seq_len[seq]);
}

/* ---------------------------------------------------------------- the step */

/* Splits entries into groups (one per sequence) and checks every rule. */
static int make_groups(engine *e, const engine_entry *en, size_t n, attnd_err *err)
{
    const model_hparams *hp = e->hp;
    e->step_no++;
    e->n_groups = 0;
    for (size_t i = 0; i < n; i++) {
        const engine_entry *x = &en[i];
        if (x->seq >= e->n_seq_slots || !e->seqs[x->seq])
            return attnd_err_set(err, ATTND_EINVAL, "entry %zu: sequence %u is not open", i, x->seq);
        if (x->token < 0 || (uint32_t)x->token >= hp->n_vocab)
            return attnd_err_set(err, ATTND_EINVAL, "entry %zu: token %d is outside the vocabulary (%u)",
                                 i, x->token, hp->n_vocab);
        if (x->pos >= hp->n_ctx)
            return attnd_err_set(err, ATTND_ERANGE,
                                 "entry %zu: position %u is beyond the context length %u", i, x->pos,
                                 hp->n_ctx);
        struct group *g = e->n_groups ? &e->groups[e->n_groups - 1] : NULL;
        if (g && g->seq == x->seq) {
            if (x->pos != g->pos0 + g->n)
                return attnd_err_set(err, ATTND_EINVAL,
                                     "entry %zu: sequence %u position %u does not follow %u", i,
                                     x->seq, x->pos, g->pos0 + g->n - 1);
            g->n++;
            continue;
        }
        if (e->seq_stamp[x->seq] == e->step_no)
            return attnd_err_set(err, ATTND_EINVAL,
                                 "entry %zu: entries of sequence %u are not adjacent", i, x->seq);
        if (x->pos > e->seq_len[x->seq])
            return attnd_err_set(err, ATTND_EINVAL,
                                 "entry %zu: sequence %u has %u positions, cannot start at %u", i,
                                 x->seq, e->seq_len[x->seq], x->pos);
        e->seq_stamp[x->seq] = e->step_no;
        e->groups[e->n_groups++] = (struct group){x->seq, (uint32_t)i, 1, x->pos};
    }
    return ATTND_OK;
}

/* Makes room in the KV cache for every group, all or nothing. A group
 * starting before its sequence's end rewinds it here (and stays rewound if
 * the step fails): the positions past pos0 are dropped, and the block pos0
 * falls in is made private, since a shared or published block is never
 * written. */
static int reserve_kv(engine *e, attnd_err *err)
{
    for (uint32_t g = 0; g < e->n_groups; g++) {
        const struct group *gr = &e->groups[g];
        kv_seq *s = e->seqs[gr->seq];
        if (gr->pos0 < e->seq_len[gr->seq]) {
            kv_seq_truncate(e->kv, s, gr->pos0);
            e->seq_len[gr->seq] = gr->pos0;
        }
        int rc = kv_seq_own(e->kv, s, gr->pos0, err);
        if (rc == ATTND_OK)
            rc = kv_seq_reserve(e->kv, s, gr->pos0 + gr->n, err);
        if (rc != ATTND_OK) {
            for (uint32_t u = 0; u < g; u++) /* give back what this step took */
                kv_seq_truncate(e->kv, e->seqs[e->groups[u].seq], e->seq_len[e->groups[u].seq]);
            return rc;
        }
    }
    return ATTND_OK;
}

/* Points each group's attention view at its blocks for LAYER. */
static int build_views(engine *e, uint32_t layer, attnd_err *err)
{
    size_t need = 0;
    for (uint32_t g = 0; g < e->n_groups; g++)
        need += kv_seq_n_blocks(e->seqs[e->groups[g].seq]);
    need *= 2;
    if (need > e->blk_ptrs_cap) {
        const void **p = realloc(e->blk_ptrs, need * sizeof *p);
        if (!p)
            return attnd_err_set(err, ATTND_ENOMEM, "engine: out of memory for block tables");
        e->blk_ptrs = p;
        e->blk_ptrs_cap = need;
    }
    const void **next = e->blk_ptrs;
    for (uint32_t g = 0; g < e->n_groups; g++) {
        const kv_seq *s = e->seqs[e->groups[g].seq];
        uint32_t nb = kv_seq_n_blocks(s);
        const uint32_t *blocks = kv_seq_blocks(s);
        const void **kp = next, **vp = next + nb;
        for (uint32_t i = 0; i < nb; i++) {
            kp[i] = kv_block_k(e->kv, blocks[i], layer);
            vp[i] = kv_block_v(e->kv, blocks[i], layer);
        }
        next += 2 * (size_t)nb;
        e->views[g] = (attn_kv_view){
            .k_blocks = kp,
            .v_blocks = vp,
            .n_blocks = nb,
            .block_size = kv_pool_block_size(e->kv),
            .dtype = kv_pool_dtype(e->kv) == KV_DTYPE_F16 ? ATTN_DTYPE_F16 : ATTN_DTYPE_F32,
        };
    }
    return ATTND_OK;
}

/* Writes each entry's K and V rows (row stride K_LD, V_LD) into its slot of
 * the sequence's paged cache for LAYER. */
static int kv_store(engine *e, uint32_t layer, const engine_entry *en, uint32_t n, const float *k,
                    uint32_t k_ld, const float *v, uint32_t v_ld, attnd_err *err)
{
    for (uint32_t i = 0; i < n; i++) {
        int rc = kv_seq_write(e->kv, e->seqs[en[i].seq], layer, en[i].pos, k + (size_t)i * k_ld,
                              v + (size_t)i * v_ld, err);
        if (rc != ATTND_OK)
            return rc;
    }
    prof_mark(e, ENGINE_PHASE_KV_WRITE);
    return ATTND_OK;
}

/* att = softmax(q·Kᵀ / sqrt(head_dim)) · V over each sequence's cache for
 * LAYER (causal: a row sees its own position and those before it), one task
 * per (sequence, KV head). Q rows are in e->q, the result in e->att. */
/* For each tapped sequence in the step whose tap selects LAYER: the exact
 * probabilities of this step's queries, from the same q and cache the tiled
 * kernel just used (attn_probs), into the tap's rows. */
static int export_attention(engine *e, uint32_t layer, attnd_err *err)
{
    for (uint32_t g = 0; g < e->n_groups; g++) {
        const struct group *gr = &e->groups[g];
        const engine_tap *tap = e->seq_tap[gr->seq];
        if (!tap || gr->pos0 + gr->n > tap->n_rows)
            continue;
        for (uint32_t k = 0; k < tap->n_layers; k++) {
            if (tap->layers[k] != layer)
                continue;
            for (uint32_t m = 0; m < tap->n_heads; m++) {
                float *rows = tap->out + (((size_t)k * tap->n_heads + m) * tap->n_rows + gr->pos0) *
                                             tap->n_rows;
                int rc = attn_probs(&e->ap, &e->views[g], e->q + (size_t)gr->first * e->q_dim,
                                    gr->n, gr->pos0, &tap->heads[m], 1, rows, tap->n_rows, err);
                if (rc != ATTND_OK)
                    return rc;
            }
        }
    }
    return ATTND_OK;
}

static int attend(engine *e, uint32_t layer, attnd_err *err)
{
    int rc = build_views(e, layer, err);
    if (rc != ATTND_OK)
        return rc;
    memset(e->task_rc, 0, e->n_threads * sizeof *e->task_rc);
    pool_run(e, attn_task, e, e->n_groups * e->hp->n_head_kv);
    prof_mark(e, ENGINE_PHASE_ATTENTION);
    for (uint32_t t = 0; t < e->n_threads; t++)
        if (e->task_rc[t] != ATTND_OK) {
            *err = e->task_err[t];
            return e->task_rc[t];
        }
    return export_attention(e, layer, err);
}

/* One block of the RoPE families (Llama, Qwen 2, Qwen 3). Their differences
 * are data: a bias or head norm the file lacks is a step skipped. */
static int block_rope(engine *e, uint32_t l, const engine_entry *en, uint32_t n, attnd_err *err)
{
    const model_hparams *hp = e->hp;
    const model_layer *L = &e->m->layers[l];
    const uint32_t d = hp->n_embd, hd = hp->head_dim, half = hp->n_rot / 2;
    const float eps = hp->norm_eps;

    /* h = rmsnorm(x); q, k, v = h·Wq, h·Wk, h·Wv (+ biases) */
    norm_rows(e->h, e->x, n, d, L->attn_norm, NULL, eps);
    prof_mark(e, ENGINE_PHASE_NORM);
    const model_weight *qkv_w[] = {&L->wq, &L->wk, &L->wv};
    float *const qkv_y[] = {e->q, e->k, e->v};
    const uint32_t qkv_ld[] = {e->q_dim, e->kv_dim, e->kv_dim};
    run_matmuls(e, ENGINE_PHASE_QKV, e->h, n, 3, qkv_w, qkv_y, qkv_ld);
    if (L->bq) {
        add_rows(e->q, n, e->q_dim, e->q_dim, L->bq);
        add_rows(e->k, n, e->kv_dim, e->kv_dim, L->bk);
        add_rows(e->v, n, e->kv_dim, e->kv_dim, L->bv);
        prof_mark(e, ENGINE_PHASE_ELEMWISE);
    }
    /* Qwen 3: every query and key head RMS-normalized on its own */
    if (L->q_norm) {
        norm_rows(e->q, e->q, n * hp->n_head, hd, L->q_norm, NULL, eps);
        norm_rows(e->k, e->k, n * hp->n_head_kv, hd, L->k_norm, NULL, eps);
        prof_mark(e, ENGINE_PHASE_NORM);
    }
    for (uint32_t i = 0; i < n; i++) {
        const float *c = e->rope_cos + (size_t)i * half, *s = e->rope_sin + (size_t)i * half;
        rope(e->q + (size_t)i * e->q_dim, hp->n_head, hd, hp->n_rot, hp->rope, c, s);
        rope(e->k + (size_t)i * e->kv_dim, hp->n_head_kv, hd, hp->n_rot, hp->rope, c, s);
    }
    prof_mark(e, ENGINE_PHASE_ROPE);

    /* x += attention(q, cached k, v)·Wo */
    int rc = kv_store(e, l, en, n, e->k, e->kv_dim, e->v, e->kv_dim, err);
    if (rc == ATTND_OK)
        rc = attend(e, l, err);
    if (rc != ATTND_OK)
        return rc;
    run_matmul(e, ENGINE_PHASE_WO, &L->wo, e->att, n, e->rows, d);
    add_to(e->x, e->rows, (size_t)n * d);
    prof_mark(e, ENGINE_PHASE_ELEMWISE);

    /* x += (silu(h·Wgate) ⊙ h·Wup)·Wdown, h = rmsnorm(x) */
    norm_rows(e->h, e->x, n, d, L->ffn_norm, NULL, eps);
    prof_mark(e, ENGINE_PHASE_NORM);
    const model_weight *up_w[] = {&L->w_gate, &L->w_up};
    float *const up_y[] = {e->ff_a, e->ff_b};
    const uint32_t up_ld[] = {hp->n_ff, hp->n_ff};
    run_matmuls(e, ENGINE_PHASE_FFN_UP, e->h, n, 2, up_w, up_y, up_ld);
    for (size_t i = 0; i < (size_t)n * hp->n_ff; i++)
        e->ff_a[i] = silu(e->ff_a[i]) * e->ff_b[i];
    prof_mark(e, ENGINE_PHASE_ELEMWISE);
    run_matmul(e, ENGINE_PHASE_FFN_DOWN, &L->w_down, e->ff_a, n, e->rows, d);
    add_to(e->x, e->rows, (size_t)n * d);
    prof_mark(e, ENGINE_PHASE_ELEMWISE);
    return ATTND_OK;
}

/* One GPT-2 block: LayerNorm, fused QKV with bias, GELU MLP. */
static int block_gpt2(engine *e, uint32_t l, const engine_entry *en, uint32_t n, attnd_err *err)
{
    const model_hparams *hp = e->hp;
    const model_layer *L = &e->m->layers[l];
    const uint32_t d = hp->n_embd;
    const float eps = hp->norm_eps;

    norm_rows(e->h, e->x, n, d, L->attn_norm, L->attn_norm_b, eps);
    prof_mark(e, ENGINE_PHASE_NORM);
    /* Fused QKV: rows of [q | k | v], 3d wide, in the q buffer (sized for it);
     * k and v are copied out, then q rows are compacted to the kernel's layout. */
    run_matmul(e, ENGINE_PHASE_QKV, &L->wqkv, e->h, n, e->q, 3 * d);
    add_rows(e->q, n, 3 * d, 3 * d, L->bqkv);
    for (uint32_t i = 0; i < n; i++) {
        const float *row = e->q + (size_t)i * 3 * d;
        memcpy(e->k + (size_t)i * d, row + d, d * sizeof(float));
        memcpy(e->v + (size_t)i * d, row + 2 * d, d * sizeof(float));
    }
    for (uint32_t i = 0; i < n; i++) /* compact q rows in place (row i moves left) */
        memmove(e->q + (size_t)i * d, e->q + (size_t)i * 3 * d, d * sizeof(float));
    prof_mark(e, ENGINE_PHASE_ELEMWISE);

    int rc = kv_store(e, l, en, n, e->k, d, e->v, d, err);
    if (rc == ATTND_OK)
        rc = attend(e, l, err);
    if (rc != ATTND_OK)
        return rc;
    run_matmul(e, ENGINE_PHASE_WO, &L->wo, e->att, n, e->rows, d);
    add_rows(e->rows, n, d, d, L->bo);
    add_to(e->x, e->rows, (size_t)n * d);
    prof_mark(e, ENGINE_PHASE_ELEMWISE);

    norm_rows(e->h, e->x, n, d, L->ffn_norm, L->ffn_norm_b, eps);
    prof_mark(e, ENGINE_PHASE_NORM);
    run_matmul(e, ENGINE_PHASE_FFN_UP, &L->w_up, e->h, n, e->ff_a, hp->n_ff);
    add_rows(e->ff_a, n, hp->n_ff, hp->n_ff, L->b_up);
    for (size_t i = 0; i < (size_t)n * hp->n_ff; i++)
        e->ff_a[i] = gelu(e->ff_a[i]);
    prof_mark(e, ENGINE_PHASE_ELEMWISE);
    run_matmul(e, ENGINE_PHASE_FFN_DOWN, &L->w_down, e->ff_a, n, e->rows, d);
    add_rows(e->rows, n, d, d, L->b_down);
    add_to(e->x, e->rows, (size_t)n * d);
    prof_mark(e, ENGINE_PHASE_ELEMWISE);
    return ATTND_OK;
}

int engine_step(engine *e, const engine_entry *en, size_t n_entries, float *logits,
                attnd_err *err)
{
    const model *m = e->m;
    const model_hparams *hp = e->hp;
    if (n_entries == 0)
        return ATTND_OK;
    if (n_entries > e->max_entries)
        return attnd_err_set(err, ATTND_EINVAL, "step has %zu entries, at most %u allowed",
                             n_entries, e->max_entries);
    uint32_t n = (uint32_t)n_entries, d = hp->n_embd;
    if (e->profile_on) {
        e->prof_last = now_s();
        e->prof.steps++;
        e->prof.entries += n;
    }
    int rc = make_groups(e, en, n, err);
    if (rc == ATTND_OK)
        rc = reserve_kv(e, err);
    if (rc != ATTND_OK)
        return rc;
    for (uint32_t i = 0; i < n; i++) {
        float *xi = e->x + (size_t)i * d;
        model_weight_row(&m->tok_embd, (uint32_t)en[i].token, xi);
        if (hp->arch == MODEL_ARCH_GPT2) {
            model_weight_row(&m->pos_embd, en[i].pos, e->rows);
            add_to(xi, e->rows, d);
        }
    }
    if (hp->rope != MODEL_ROPE_NONE)
        rope_tables(e, en, n);
    prof_mark(e, ENGINE_PHASE_EMBED);
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        rc = hp->arch == MODEL_ARCH_GPT2 ? block_gpt2(e, l, en, n, err)
                                         : block_rope(e, l, en, n, err);
        if (rc != ATTND_OK)
            return rc;
    }
    for (uint32_t g = 0; g < e->n_groups; g++)
        e->seq_len[e->groups[g].seq] = e->groups[g].pos0 + e->groups[g].n;

    /* Final norm and the output projection, only for rows that want logits. */
    uint32_t n_want = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (!en[i].want_logits)
            continue;
        norm_rows(e->h + (size_t)n_want * d, e->x + (size_t)i * d, 1, d, m->out_norm,
                  m->out_norm_b, hp->norm_eps);
        n_want++;
    }
    prof_mark(e, ENGINE_PHASE_OUTPUT);
    if (n_want)
        run_matmul(e, ENGINE_PHASE_OUTPUT, &m->output, e->h, n_want, logits, hp->n_vocab);
    return ATTND_OK;
}
