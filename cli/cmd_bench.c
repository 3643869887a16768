/* cmd_bench.c - `attnd bench`: engine figures without HTTP, each next to the
 * machine ceiling measured in the same run, so a number says how far it is
 * from what the hardware allows:
 *   prefill tokens/s      vs  f32 sgemm GFLOP/s   (2 x weights x tokens FLOPs)
 *   decode tokens/s       vs  memory read GB/s    (weight bytes read per token)
 *   attention throughput  vs  memory read GB/s    (K/V bytes read per query)
 * Speeds are measured, never asserted: CI runs this only as a smoke check. */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "attn.h"
#include "attnd_pool.h"
#include "cli.h"
#include "engine.h"
#include "quant.h"

void openblas_set_num_threads(int n);

static void usage(FILE *out)
{
    fprintf(out,
            "usage: attnd bench -m MODEL.gguf [OPTIONS]\n\n"
            "Measures the engine without HTTP: prefill tokens/s (prompts of 128 and 512),\n"
            "single-stream decode tokens/s, aggregate decode tokens/s at 4, 8 and 16\n"
            "concurrent sequences, attention kernel throughput at contexts 512, 2048 and\n"
            "8192, and this machine's ceilings in the same run (memory read GB/s, f32 sgemm\n"
            "GFLOP/s), with each figure as a fraction of its ceiling. Single-stream decode\n"
            "runs a second time alternating steps with bandwidth samples: its fraction is\n"
            "the median over steps of (bytes a step reads / its time) / (the bandwidth\n"
            "just after it), so neighbours on a shared host move both sides together.\n\n"
            "options:\n"
            "  -m, --model PATH   GGUF model\n"
            "  --threads N        worker threads (default: number of cores)\n"
            "  --kv-type T        f16 (default) or f32 KV cache elements\n"
            "  --weights MODE     copy (default: into huge pages, as attnd serve) or map\n"
            "  --quick            small sizes and few repetitions (a smoke run)\n"
            "  --profile          also print where a step's time goes (per phase, with\n"
            "                     the weight-read rate of each matmul and the hand-offs)\n"
            "  --json             one JSON object instead of the table\n"
            "  -h, --help         show this help\n");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- ceilings */

struct bw_job {
    const uint64_t *buf;
    size_t words_per_task;
    uint64_t *sums;
};

static void bw_task(void *ctx, uint32_t task, uint32_t thread)
{
    const struct bw_job *j = ctx;
    const uint64_t *p = j->buf + (size_t)task * j->words_per_task;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i + 4 <= j->words_per_task; i += 4) {
        a += p[i];
        b += p[i + 1];
        c += p[i + 2];
        d += p[i + 3];
    }
    j->sums[thread] += a ^ b ^ c ^ d; /* keeps the loads from being optimized away */
}

/* A buffer much larger than the caches, for read-bandwidth samples; in huge
 * pages where the kernel gives them, the fastest way this machine reads, so
 * the ceiling is the strictest whichever way the weights were loaded. */
struct bw_buf {
    attnd_pool *pool;
    uint64_t *buf;
    size_t words;
    uint64_t sums[1024];
};

static bool bw_buf_init(struct bw_buf *b, attnd_pool *pool, size_t bytes)
{
    b->pool = pool;
    b->words = bytes / 8;
    memset(b->sums, 0, sizeof b->sums);
    const size_t huge = (size_t)2 << 20, len = (b->words * sizeof *b->buf + huge - 1) / huge * huge;
    if (!(b->buf = aligned_alloc(huge, len)))
        return false;
    (void)madvise(b->buf, len, MADV_HUGEPAGE); /* advice: without it, 4 KiB pages */
    for (size_t i = 0; i < b->words; i++)
        b->buf[i] = i;
    return true;
}

/* GB/s of one pass, every pool thread streaming its share. */
static double bw_sample(struct bw_buf *b)
{
    uint32_t tasks = attnd_pool_size(b->pool) * 8;
    struct bw_job j = {b->buf, b->words / tasks, b->sums};
    double t0 = now_s();
    attnd_pool_run(b->pool, bw_task, &j, tasks);
    double gbs = (double)(j.words_per_task * tasks * 8) / (now_s() - t0) / 1e9;
    return b->sums[0] == 42 ? gbs + 1e-12 : gbs; /* keeps the sums live */
}

static void bw_buf_free(struct bw_buf *b)
{
    free(b->buf);
    b->buf = NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    if (!n)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Best of REPS passes over a buffer of BYTES. */
static double measure_bandwidth(attnd_pool *pool, size_t bytes, int reps)
{
    struct bw_buf b;
    if (!bw_buf_init(&b, pool, bytes))
        return 0;
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double gbs = bw_sample(&b);
        best = gbs > best ? gbs : best;
    }
    bw_buf_free(&b);
    return best;
}

/* The cost of one hand-off: a pool run of one empty task per thread. */
static void noop_task(void *ctx, uint32_t task, uint32_t thread)
{
    (void)ctx;
    (void)task;
    (void)thread;
}

static double measure_handoff(attnd_pool *pool, int reps)
{
    attnd_pool_run(pool, noop_task, NULL, attnd_pool_size(pool));
    double t0 = now_s();
    for (int r = 0; r < reps; r++)
        attnd_pool_run(pool, noop_task, NULL, attnd_pool_size(pool));
    return (now_s() - t0) / reps;
}

struct gemm_job {
    float *a[1024], *b[1024], *c[1024];
    int n;
    int reps;
};

static void gemm_task(void *ctx, uint32_t task, uint32_t thread)
{
    (void)task;
    struct gemm_job *j = ctx;
    for (int r = 0; r < j->reps; r++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, j->n, j->n, 1.0f, j->a[thread],
                    j->n, j->b[thread], j->n, 0.0f, j->c[thread], j->n);
}

/* f32 sgemm peak: every thread multiplies its own n x n matrices, best of
 * PASSES timed passes (this VM's neighbours make single passes swing by 30%,
 * and a low ceiling would make a figure look better than it is). Returns 0
 * when the matrices cannot be allocated. */
static double measure_sgemm(attnd_pool *pool, int n, int reps, int passes)
{
    uint32_t nt = attnd_pool_size(pool);
    struct gemm_job j = {.n = n, .reps = reps};
    size_t sz = (size_t)n * n;
    bool ok = nt <= sizeof j.a / sizeof j.a[0];
    for (uint32_t t = 0; ok && t < nt; t++) {
        j.a[t] = malloc(sz * sizeof(float));
        j.b[t] = malloc(sz * sizeof(float));
        j.c[t] = malloc(sz * sizeof(float));
        ok = j.a[t] && j.b[t] && j.c[t];
        for (size_t i = 0; ok && i < sz; i++) {
            j.a[t][i] = (float)(i % 7) * 0.1f;
            j.b[t][i] = (float)(i % 5) * 0.1f;
        }
    }
    double best = 0;
    if (ok) {
        attnd_pool_run(pool, gemm_task, &j, nt); /* warm up */
        for (int p = 0; p < passes; p++) {
            double t0 = now_s();
            attnd_pool_run(pool, gemm_task, &j, nt);
            double gflops = 2.0 * n * n * (double)n * reps * nt / (now_s() - t0) / 1e9;
            best = gflops > best ? gflops : best;
        }
    }
    for (uint32_t t = 0; t < nt && t < sizeof j.a / sizeof j.a[0]; t++) {
        free(j.a[t]);
        free(j.b[t]);
        free(j.c[t]);
    }
    return best;
}

/* ---------------------------------------------------------------- engine figures */

struct bench {
    const model *m;
    const model_hparams *hp;
    engine_params ep;
    float *logits;
    engine_profile prof; /* of the last timed run, when ep.profile */
};

/* Tokens/s of one P-token prompt as a single chunk (best of REPS). */
static double bench_prefill(struct bench *b, uint32_t p, int reps, attnd_err *err)
{
    engine *e;
    if (engine_new(b->m, &b->ep, &e, err) != ATTND_OK)
        return -1;
    engine_entry *en = calloc(p, sizeof *en);
    double best = 0;
    for (int r = 0; en && r < reps; r++) {
        uint32_t seq;
        engine_seq_open(e, &seq, err);
        for (uint32_t i = 0; i < p; i++)
            en[i] = (engine_entry){seq, (int32_t)((i * 7 + 1) % b->hp->n_vocab), i, i + 1 == p};
        engine_profile_reset(e);
        double t0 = now_s();
        if (engine_step(e, en, p, b->logits, err) != ATTND_OK) {
            best = -1;
            break;
        }
        double tps = p / (now_s() - t0);
        if (tps > best) {
            best = tps;
            engine_profile_get(e, &b->prof);
        }
        engine_seq_close(e, seq);
    }
    free(en);
    engine_free(e);
    return best;
}

/* Aggregate decode tokens/s with K sequences stepping together, after a short
 * prompt each. With BW set, a bandwidth sample follows every step and
 * *FRACTION gets the median over steps of (STEP_BYTES / step time) / that
 * sample, and *BW_MEDIAN the median sample. */
static double bench_decode(struct bench *b, uint32_t k, uint32_t steps, struct bw_buf *bw,
                           double step_bytes, double *fraction, double *bw_median, attnd_err *err)
{
    engine *e;
    if (engine_new(b->m, &b->ep, &e, err) != ATTND_OK)
        return -1;
    uint32_t seqs[64];
    engine_entry en[64];
    const uint32_t prompt = 8;
    double tps = -1;
    double *ratio = NULL, *gbs = NULL;
    for (uint32_t s = 0; s < k; s++)
        engine_seq_open(e, &seqs[s], err);
    for (uint32_t pos = 0; pos < prompt; pos++) {
        for (uint32_t s = 0; s < k; s++)
            en[s] = (engine_entry){seqs[s], (int32_t)((s * 31 + pos + 1) % b->hp->n_vocab), pos, true};
        if (engine_step(e, en, k, b->logits, err) != ATTND_OK)
            goto out;
    }
    if (bw) {
        if (!(ratio = calloc(2 * (size_t)steps, sizeof *ratio)))
            goto out;
        gbs = ratio + steps;
    }
    engine_profile_reset(e);
    double busy = 0;
    for (uint32_t t = 0; t < steps; t++) {
        for (uint32_t s = 0; s < k; s++)
            en[s] = (engine_entry){seqs[s], (int32_t)((s + t * 13 + 5) % b->hp->n_vocab),
                                   prompt + t, true};
        double t0 = now_s();
        if (engine_step(e, en, k, b->logits, err) != ATTND_OK)
            goto out;
        double dt = now_s() - t0;
        busy += dt;
        if (bw) {
            gbs[t] = bw_sample(bw);
            ratio[t] = step_bytes / dt / 1e9 / gbs[t];
        }
    }
    tps = (double)k * steps / busy;
    engine_profile_get(e, &b->prof);
    if (bw) {
        *fraction = median(ratio, steps);
        *bw_median = median(gbs, steps);
    }
out:
    free(ratio);
    engine_free(e);
    return tps;
}

struct attn_job {
    const attn_params *p;
    const attn_kv_view *kv;
    const float *q;
    float *out;
    uint32_t ctx;
    attn_scratch **scr;
};

static void attn_bench_task(void *c, uint32_t task, uint32_t thread)
{
    const struct attn_job *j = c;
    attnd_err err;
    attn_tiled(j->p, j->kv, j->q, 1, j->ctx - 1, task, task + 1, j->out, j->scr[thread], &err);
}

/* One decode query against CTX positions of F16 K/V with the model's head
 * layout, heads split over the pool like the engine does: queries/s. */
static double bench_attention(const model_hparams *hp, attnd_pool *pool, uint32_t ctx, int reps,
                              double *kv_gbs)
{
    attn_params p = {hp->n_head, hp->n_head_kv, hp->head_dim, 1.0f / sqrtf((float)hp->head_dim), 0};
    const uint32_t bs = 16, nb = (ctx + bs - 1) / bs;
    size_t blk = (size_t)hp->n_head_kv * bs * hp->head_dim;
    uint16_t *k = malloc((size_t)nb * blk * 2), *v = malloc((size_t)nb * blk * 2);
    const void **kp = malloc(nb * sizeof *kp), **vp = malloc(nb * sizeof *vp);
    float *q = malloc((size_t)hp->n_head * hp->head_dim * sizeof(float));
    float *out = malloc((size_t)hp->n_head * hp->head_dim * sizeof(float));
    attn_scratch *scr[1024] = {0};
    double qps = -1;
    if (!k || !v || !kp || !vp || !q || !out)
        goto out;
    for (size_t i = 0; i < (size_t)nb * blk; i++) {
        k[i] = (uint16_t)(0x3000 + (i * 37) % 0x800); /* small positive halves */
        v[i] = (uint16_t)(0x3000 + (i * 53) % 0x800);
    }
    for (uint32_t i = 0; i < nb; i++) {
        kp[i] = k + (size_t)i * blk;
        vp[i] = v + (size_t)i * blk;
    }
    for (uint32_t i = 0; i < hp->n_head * hp->head_dim; i++)
        q[i] = (float)((i * 7) % 11) * 0.01f;
    for (uint32_t t = 0; t < attnd_pool_size(pool); t++)
        if (!(scr[t] = attn_scratch_new(&p)))
            goto out;
    attn_kv_view view = {kp, vp, nb, bs, ATTN_DTYPE_F16};
    struct attn_job j = {&p, &view, q, out, ctx, scr};
    attnd_pool_run(pool, attn_bench_task, &j, hp->n_head_kv);
    double t0 = now_s();
    for (int r = 0; r < reps; r++)
        attnd_pool_run(pool, attn_bench_task, &j, hp->n_head_kv);
    double dt = (now_s() - t0) / reps;
    qps = 1.0 / dt;
    *kv_gbs = 2.0 * ctx * hp->n_head_kv * hp->head_dim * 2 / dt / 1e9;
out:
    for (uint32_t t = 0; t < attnd_pool_size(pool); t++)
        attn_scratch_free(scr[t]);
    free(k);
    free(v);
    free(kp);
    free(vp);
    free(q);
    free(out);
    return qps;
}

/* ---------------------------------------------------------------- report */

struct row {
    char name[48];
    double value;
    const char *unit;
    double fraction; /* of the ceiling; < 0: none */
    const char *ceiling;
};

/* A profiled run: which figure, and where its steps' time went. */
struct prof_run {
    char name[48];
    engine_profile p;
};

static void print_profile(const struct prof_run *r, double handoff_s)
{
    const engine_profile *p = &r->p;
    if (!p->steps)
        return;
    double total = 0;
    for (int i = 0; i < ENGINE_PHASE_COUNT; i++)
        total += p->seconds[i];
    double runs = (double)p->pool_runs / (double)p->steps;
    printf("\nprofile: %s: %.2f ms per step (%" PRIu64 " steps, %.1f entries each); "
           "%.0f hand-offs per step, ~%.1f us each alone: %.2f ms\n",
           r->name, 1e3 * total / (double)p->steps, p->steps,
           (double)p->entries / (double)p->steps, runs, 1e6 * handoff_s, 1e3 * runs * handoff_s);
    printf("  %-12s %9s %7s %14s\n", "phase", "ms/step", "share", "weights GB/s");
    for (int i = 0; i < ENGINE_PHASE_COUNT; i++) {
        double ms = 1e3 * p->seconds[i] / (double)p->steps;
        if (p->seconds[i] <= 0)
            continue;
        printf("  %-12s %9.3f %6.1f%%", engine_phase_name((engine_phase)i), ms,
               100.0 * p->seconds[i] / total);
        if (p->weight_bytes[i])
            printf(" %14.1f", (double)p->weight_bytes[i] / p->seconds[i] / 1e9);
        printf("\n");
    }
}

int cli_bench(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'}, {"threads", required_argument, NULL, 't'},
        {"kv-type", required_argument, NULL, 'k'}, {"quick", no_argument, NULL, 'Q'},
        {"weights", required_argument, NULL, 'W'},
        {"json", no_argument, NULL, 'J'},         {"help", no_argument, NULL, 'h'},
        {"profile", no_argument, NULL, 'P'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    bool json = false, quick = false;
    struct bench b = {.ep = {.kv_type = KV_DTYPE_F16}};
    gguf_load load = GGUF_LOAD_COPY;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:h", opts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'm': path = optarg; break;
        case 't': ok = cli_parse_u32("--threads", optarg, 1, 1024, &b.ep.n_threads); break;
        case 'k': ok = cli_parse_kv_type(optarg, &b.ep.kv_type); break;
        case 'W': ok = cli_parse_weights(optarg, &load); break;
        case 'Q': quick = true; break;
        case 'J': json = true; break;
        case 'P': b.ep.profile = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (!ok)
            return 2;
    }
    if (!path || optind != argc) {
        usage(stderr);
        return 2;
    }
    attnd_err err = {0};
    model *m = NULL;
    attnd_pool *pool = NULL;
    if (model_load_as(path, load, &m, &err) != ATTND_OK ||
        attnd_pool_new(b.ep.n_threads, &pool, &err) != ATTND_OK) {
        fprintf(stderr, "attnd bench: %s\n", err.msg);
        model_free(m);
        return 1;
    }
    openblas_set_num_threads(1);
    b.m = m;
    b.hp = model_hparams_of(m);
    const model_hparams *hp = b.hp;
    uint32_t prompts[2] = {128, 512};
    if (quick) {
        prompts[0] = 16;
        prompts[1] = 32;
    }
    uint32_t max_prompt = prompts[1] < hp->n_ctx ? prompts[1] : hp->n_ctx;
    b.ep.max_entries = max_prompt > 16 ? max_prompt : 16;
    b.ep.kv_block_size = 16;
    b.ep.kv_blocks = 16 * ((hp->n_ctx + 15) / 16) + 64;
    b.logits = malloc((size_t)b.ep.max_entries * hp->n_vocab * sizeof(float));
    if (!b.logits) {
        fprintf(stderr, "attnd bench: out of memory\n");
        attnd_pool_free(pool);
        model_free(m);
        return 1;
    }

    double bw = measure_bandwidth(pool, quick ? (64u << 20) : (1024u << 20), quick ? 2 : 5);
    double handoff = measure_handoff(pool, quick ? 100 : 2000);
    struct prof_run profs[3];
    int n_prof = 0;
    double peak = measure_sgemm(pool, quick ? 256 : 1024, quick ? 1 : 2, quick ? 2 : 5);
    if (!(peak > 0)) {
        fprintf(stderr, "attnd bench: out of memory for the sgemm ceiling\n");
        free(b.logits);
        attnd_pool_free(pool);
        model_free(m);
        return 1;
    }
    /* what a decode step streams: not the embedding table, of which it
     * reads one row per token */
    double wbytes = (double)model_step_bytes(m);
    /* Prefill FLOPs: a multiply and an add per matmul weight (q, k, v, o and
     * the FFN matrices) per prompt token, plus the output projection once:
     * only the last prompt token's logits are computed. Attention's own
     * FLOPs (a few percent at these prompt lengths) are not counted. */
    uint64_t layer_elems = (uint64_t)hp->n_layer *
                           ((uint64_t)hp->n_embd * hp->n_embd * 2 +
                            (uint64_t)hp->n_embd * hp->n_head_kv * hp->head_dim * 2 +
                            (uint64_t)hp->n_embd * hp->n_ff * (hp->arch == MODEL_ARCH_LLAMA ? 3 : 2));
    uint64_t out_elems = (uint64_t)hp->n_embd * hp->n_vocab;
    struct row rows[20];
    int nr = 0;
#define ROW(n, v, u, f, cl)                                                                        \
    do {                                                                                           \
        snprintf(rows[nr].name, sizeof rows[nr].name, "%s", n);                                    \
        rows[nr].value = v;                                                                        \
        rows[nr].unit = u;                                                                         \
        rows[nr].fraction = f;                                                                     \
        rows[nr].ceiling = cl;                                                                     \
        nr++;                                                                                      \
    } while (0)
    ROW("memory read bandwidth", bw, "GB/s", -1, NULL);
    ROW("f32 sgemm", peak, "GFLOP/s", -1, NULL);
    char name[48];
    for (int i = 0; i < 2; i++) {
        uint32_t p = prompts[i];
        if (p > hp->n_ctx)
            continue;
        double tps = bench_prefill(&b, p, quick ? 1 : 3, &err);
        snprintf(name, sizeof name, "prefill %u tokens", p);
        if (i == 1 && b.ep.profile) {
            snprintf(profs[n_prof].name, sizeof profs[n_prof].name, "%s", name);
            profs[n_prof++].p = b.prof;
        }
        double flops_per_token = 2.0 * ((double)layer_elems + (double)out_elems / p);
        ROW(name, tps, "tokens/s", tps * flops_per_token / 1e9 / peak, "sgemm");
    }
    uint32_t steps = quick ? 8 : 64;
    if (steps + 8 > hp->n_ctx)
        steps = hp->n_ctx > 16 ? hp->n_ctx - 8 : 1;
    static const uint32_t ks[4] = {1, 4, 8, 16};
    struct bw_buf paired;
    bool have_paired = bw_buf_init(&paired, pool, quick ? (64u << 20) : (256u << 20));
    for (int i = 0; i < 4; i++) {
        double frac = 0, bw_dec = 0;
        /* the figure from steps back to back; a single stream's fraction
         * from a second run that pairs each step with a bandwidth sample
         * (the samples disturb the caches, so that run's own speed is low) */
        double tps = bench_decode(&b, ks[i], steps, NULL, wbytes, &frac, &bw_dec, &err);
        engine_profile prof = b.prof;
        if (ks[i] == 1 && have_paired)
            bench_decode(&b, 1, steps, &paired, wbytes, &frac, &bw_dec, &err);
        b.prof = prof;
        if (ks[i] == 1)
            snprintf(name, sizeof name, "decode, 1 stream");
        else
            snprintf(name, sizeof name, "decode, %u streams (total)", ks[i]);
        if (b.ep.profile && (ks[i] == 1 || ks[i] == 16)) {
            snprintf(profs[n_prof].name, sizeof profs[n_prof].name, "%s", name);
            profs[n_prof++].p = b.prof;
        }
        if (ks[i] == 1 && have_paired) {
            ROW(name, tps, "tokens/s", frac, "paired bandwidth");
            ROW("bandwidth during decode", bw_dec, "GB/s", -1, NULL);
            continue;
        }
        /* every step reads all weights once, whatever the batch */
        double steps_per_s = tps / ks[i];
        ROW(name, tps, "tokens/s", steps_per_s * wbytes / 1e9 / bw, "bandwidth");
    }
    bw_buf_free(&paired);
    static const uint32_t ctxs[3] = {512, 2048, 8192};
    for (int i = 0; i < 3; i++) {
        double kv_gbs = 0;
        double qps = bench_attention(hp, pool, quick ? ctxs[i] / 8 : ctxs[i], quick ? 3 : 50, &kv_gbs);
        snprintf(name, sizeof name, "attention, context %u", quick ? ctxs[i] / 8 : ctxs[i]);
        ROW(name, qps, "queries/s", kv_gbs / bw, "bandwidth");
    }
#undef ROW
    if (err.msg[0])
        fprintf(stderr, "attnd bench: %s\n", err.msg);

    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", path);
        cJSON_AddNumberToObject(o, "threads", attnd_pool_size(pool));
        cJSON_AddStringToObject(o, "weights", gguf_load_name(load));
        cJSON_AddNumberToObject(o, "weight_bytes", (double)model_weight_bytes(m));
        cJSON_AddNumberToObject(o, "step_bytes", wbytes);
        cJSON_AddStringToObject(o, "isa", quant_isa_name(quant_best_isa()));
        cJSON_AddNumberToObject(o, "handoff_seconds", handoff);
        cJSON *pa = n_prof ? cJSON_AddArrayToObject(o, "profiles") : NULL;
        for (int i = 0; pa && i < n_prof; i++) {
            const engine_profile *ep = &profs[i].p;
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "name", profs[i].name);
            cJSON_AddNumberToObject(r, "steps", (double)ep->steps);
            cJSON_AddNumberToObject(r, "entries", (double)ep->entries);
            cJSON_AddNumberToObject(r, "pool_runs", (double)ep->pool_runs);
            cJSON *ph = cJSON_AddObjectToObject(r, "seconds");
            for (int k = 0; k < ENGINE_PHASE_COUNT; k++)
                cJSON_AddNumberToObject(ph, engine_phase_name((engine_phase)k), ep->seconds[k]);
            cJSON *wb = cJSON_AddObjectToObject(r, "weight_bytes");
            for (int k = 0; k < ENGINE_PHASE_COUNT; k++)
                if (ep->weight_bytes[k])
                    cJSON_AddNumberToObject(wb, engine_phase_name((engine_phase)k),
                                            (double)ep->weight_bytes[k]);
            cJSON_AddItemToArray(pa, r);
        }
        cJSON *arr = cJSON_AddArrayToObject(o, "results");
        for (int i = 0; i < nr; i++) {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "name", rows[i].name);
            cJSON_AddNumberToObject(r, "value", rows[i].value);
            cJSON_AddStringToObject(r, "unit", rows[i].unit);
            if (rows[i].fraction >= 0) {
                cJSON_AddNumberToObject(r, "fraction_of_ceiling", rows[i].fraction);
                cJSON_AddStringToObject(r, "ceiling", rows[i].ceiling);
            }
            cJSON_AddItemToArray(arr, r);
        }
        char *txt = cJSON_Print(o);
        puts(txt ? txt : "{}");
        free(txt);
        cJSON_Delete(o);
    } else {
        printf("model: %s (%s, %.1f MiB of weights, %s, %.1f MiB read per decode step), %u "
               "threads, KV %s, kernels %s\n",
               path, hp->arch_name, (double)model_weight_bytes(m) / 1048576.0,
               load == GGUF_LOAD_COPY ? "copied" : "mapped", wbytes / 1048576.0,
               attnd_pool_size(pool), b.ep.kv_type == KV_DTYPE_F16 ? "f16" : "f32",
               quant_isa_name(quant_best_isa()));
        printf("%-30s %14s %-10s %s\n", "figure", "value", "unit", "of ceiling");
        for (int i = 0; i < nr; i++) {
            printf("%-30s %14.1f %-10s", rows[i].name, rows[i].value, rows[i].unit);
            if (rows[i].fraction >= 0)
                printf(" %5.1f%% of %s", 100.0 * rows[i].fraction, rows[i].ceiling);
            printf("\n");
        }
        for (int i = 0; i < n_prof; i++)
            print_profile(&profs[i], handoff);
    }
    free(b.logits);
    attnd_pool_free(pool);
    model_free(m);
    for (int i = 0; i < nr; i++)
        if (!(rows[i].value > 0))
            return 1;
    return 0;
}
