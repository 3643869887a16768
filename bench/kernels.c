/* kernels.c - how fast each weight type's dot kernel streams its weights,
 * against a plain read of the same memory: the tool behind the per-kernel
 * figures in docs/PERFORMANCE.md (see bench/README.md).
 *
 * For each type: a weight matrix of --mib MiB (rows of --n elements, one
 * random row quantized and repeated: the values do not change the speed),
 * in 2 MiB pages unless --pages 4k, read by the engine's thread pool, each
 * thread a contiguous share of the rows, through the type's kernel at the
 * best ISA (or --isa) against --rows activation rows (1 = single-stream
 * decode). Every repetition is followed by a plain read of the same memory;
 * the figure is the median over repetitions of kernel rate / plain rate, so
 * a noisy neighbour moves both sides together. With --mib below the caches
 * it measures the kernel's compute rate instead. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "attnd_pool.h"
#include "gguf.h"
#include "quant.h"

#define MAX_ROWS 4u /* activation rows per dot call */

typedef struct job {
    const uint8_t *w;
    size_t row_bytes, n_rows;
    uint32_t n, nx;
    const void *x;
    size_t x_stride;
    quant_dot_fn dot;
    uint32_t n_threads;
    double sums[1024]; /* per thread: keeps results live */
} job;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void kernel_task(void *ctx, uint32_t task, uint32_t thread)
{
    job *j = ctx;
    const size_t r0 = j->n_rows * task / j->n_threads, r1 = j->n_rows * (task + 1) / j->n_threads;
    float out[MAX_ROWS];
    double s = 0;
    for (size_t r = r0; r < r1; r++) {
        j->dot(j->n, j->w + r * j->row_bytes, j->x, j->x_stride, j->nx, out);
        s += out[0];
    }
    j->sums[thread] += s;
}

static void read_task(void *ctx, uint32_t task, uint32_t thread)
{
    job *j = ctx;
    const size_t bytes = j->n_rows * j->row_bytes;
    const size_t b0 = bytes * task / j->n_threads / 64 * 64, b1 = bytes * (task + 1) / j->n_threads / 64 * 64;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t off = b0; off + 32 <= b1; off += 32) {
        uint64_t v[4];
        memcpy(v, j->w + off, sizeof v);
        a ^= v[0];
        b ^= v[1];
        c ^= v[2];
        d ^= v[3];
    }
    j->sums[thread] += (double)(a ^ b ^ c ^ d);
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kernels [OPTIONS] [TYPE...]\n\n"
            "Streams a weight matrix of each TYPE (default: every type attnd computes with)\n"
            "through its dot kernel and reports GB/s of weights, the same memory's plain\n"
            "read rate, and the median ratio of the two over repetitions.\n\n"
            "options:\n"
            "  --mib M        matrix size in MiB (default 512; below the caches: compute rate)\n"
            "  --n N          elements per row (default 2048; a multiple of 256)\n"
            "  --rows R       activation rows per call, 1-4 (default 1: single-stream decode)\n"
            "  --threads T    pool threads (default: number of cores)\n"
            "  --isa I        scalar, avx2 or avx512 (default: the best this CPU runs)\n"
            "  --pages P      2m (default: transparent huge pages, as `weights: copy`) or 4k\n"
            "  --reps K       repetitions (default 9)\n"
            "  --json         one JSON object instead of the table\n"
            "  -h, --help     show this help\n");
}

static bool parse_u32(const char *opt, const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi) {
        fprintf(stderr, "kernels: %s: '%s' is not a whole number from %u to %u\n", opt, s, lo, hi);
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

static int type_of(const char *name, gguf_dtype *out)
{
    for (int t = 0; t < 64; t++) {
        const quant_traits *qt = quant_traits_of((gguf_dtype)t);
        if (qt && quant_dot(qt, QUANT_ISA_SCALAR) && strcasecmp(gguf_dtype_name((gguf_dtype)t), name) == 0) {
            *out = (gguf_dtype)t;
            return 0;
        }
    }
    return -1;
}

/* One type: fills GBS, READ_GBS and RATIO; returns false (with a message)
 * when memory cannot be had. */
static bool measure(attnd_pool *pool, gguf_dtype t, uint32_t n, uint32_t nx, size_t mib, bool huge,
                    quant_isa isa, int reps, double *gbs, double *read_gbs, double *ratio)
{
    const quant_traits *qt = quant_traits_of(t);
    const quant_traits *at = qt->act_type == GGUF_DTYPE_F32 ? NULL : quant_traits_of(qt->act_type);
    uint64_t rb = 0, xb = (uint64_t)n * sizeof(float);
    gguf_dtype_row_bytes(t, n, &rb);
    if (at)
        gguf_dtype_row_bytes(qt->act_type, n, &xb);
    const size_t rows = mib * ((size_t)1 << 20) / rb, bytes = rows * rb;
    uint8_t *w = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    float *f = malloc((size_t)n * sizeof *f);
    uint8_t *x = malloc(xb * MAX_ROWS);
    if (w == MAP_FAILED || !f || !x) {
        fprintf(stderr, "kernels: %s: cannot allocate %zu bytes\n", gguf_dtype_name(t), bytes);
        if (w != MAP_FAILED)
            munmap(w, bytes);
        free(f);
        free(x);
        return false;
    }
    (void)madvise(w, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (uint32_t m = 0; m <= MAX_ROWS; m++) {
        for (uint32_t i = 0; i < n; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            f[i] = (float)((int)(s >> 40) % 2001 - 1000) / 1000.0f;
        }
        if (m == MAX_ROWS)
            quant_from_f32(t, f, w, n); /* the weight row */
        else if (at)
            quant_from_f32(qt->act_type, f, x + m * xb, n);
        else
            memcpy(x + m * xb, f, xb);
    }
    for (size_t r = 1; r < rows; r++)
        memcpy(w + r * rb, w, rb);
    job *j = calloc(1, sizeof *j);
    double *ratios = malloc((size_t)reps * sizeof *ratios);
    if (!j || !ratios) {
        fprintf(stderr, "kernels: out of memory\n");
        munmap(w, bytes);
        free(f);
        free(x);
        free(j);
        free(ratios);
        return false;
    }
    *j = (job){.w = w, .row_bytes = rb, .n_rows = rows, .n = n, .nx = nx, .x = x,
               .x_stride = xb, .dot = quant_dot(qt, isa), .n_threads = attnd_pool_size(pool)};
    double best = 0, best_read = 0;
    for (int k = 0; k < reps; k++) {
        double t0 = now_s();
        attnd_pool_run(pool, kernel_task, j, j->n_threads);
        const double dt = now_s() - t0;
        t0 = now_s();
        attnd_pool_run(pool, read_task, j, j->n_threads);
        const double rt = now_s() - t0;
        ratios[k] = rt / dt;
        best = (double)bytes / dt > best ? (double)bytes / dt : best;
        best_read = (double)bytes / rt > best_read ? (double)bytes / rt : best_read;
    }
    *gbs = best / 1e9;
    *read_gbs = best_read / 1e9;
    *ratio = median(ratios, reps);
    if (j->sums[0] == 42.0) /* keeps the sums live */
        *ratio += 1e-12;
    munmap(w, bytes);
    free(f);
    free(x);
    free(j);
    free(ratios);
    return true;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"mib", required_argument, NULL, 'M'},   {"n", required_argument, NULL, 'n'},
        {"rows", required_argument, NULL, 'r'},  {"threads", required_argument, NULL, 't'},
        {"isa", required_argument, NULL, 'i'},   {"pages", required_argument, NULL, 'p'},
        {"reps", required_argument, NULL, 'k'},  {"json", no_argument, NULL, 'J'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
    };
    uint32_t mib = 512, n = 2048, nx = 1, threads = 0, reps = 9;
    quant_isa isa = quant_best_isa();
    bool huge = true, json = false;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'M': ok = parse_u32("--mib", optarg, 1, 1u << 20, &mib); break;
        case 'n':
            ok = parse_u32("--n", optarg, 256, 1u << 20, &n);
            if (ok && n % 256) {
                fprintf(stderr, "kernels: --n: %u is not a multiple of 256\n", n);
                ok = false;
            }
            break;
        case 'r': ok = parse_u32("--rows", optarg, 1, MAX_ROWS, &nx); break;
        case 't': ok = parse_u32("--threads", optarg, 1, 1024, &threads); break;
        case 'k': ok = parse_u32("--reps", optarg, 1, 1000, &reps); break;
        case 'i': {
            int found = -1;
            for (int l = 0; l < QUANT_ISA_COUNT; l++)
                if (strcmp(optarg, quant_isa_name((quant_isa)l)) == 0)
                    found = l;
            if (found < 0 || found > (int)quant_best_isa()) {
                fprintf(stderr, "kernels: --isa: '%s' is not one of scalar, avx2, avx512 that this "
                                "CPU runs (best: %s)\n",
                        optarg, quant_isa_name(quant_best_isa()));
                ok = false;
            } else {
                isa = (quant_isa)found;
            }
            break;
        }
        case 'p':
            if (strcmp(optarg, "2m") == 0 || strcmp(optarg, "4k") == 0) {
                huge = optarg[0] == '2';
            } else {
                fprintf(stderr, "kernels: --pages: '%s' is not 2m or 4k\n", optarg);
                ok = false;
            }
            break;
        case 'J': json = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (!ok)
            return 2;
    }
    gguf_dtype types[64];
    int n_types = 0;
    if (optind == argc) {
        for (int t = 0; t < 64; t++) {
            const quant_traits *qt = quant_traits_of((gguf_dtype)t);
            if (qt && quant_dot(qt, QUANT_ISA_SCALAR))
                types[n_types++] = (gguf_dtype)t;
        }
    }
    for (int i = optind; i < argc; i++) {
        if (n_types == 64 || type_of(argv[i], &types[n_types]) != 0) {
            fprintf(stderr, "kernels: '%s' is not a weight type attnd computes with\n", argv[i]);
            return 2;
        }
        n_types++;
    }
    attnd_err err = {0};
    attnd_pool *pool = NULL;
    if (attnd_pool_new(threads, &pool, &err) != ATTND_OK) {
        fprintf(stderr, "kernels: %s\n", err.msg);
        return 1;
    }
    cJSON *root = json ? cJSON_CreateObject() : NULL, *arr = NULL;
    if (json) {
        cJSON_AddNumberToObject(root, "threads", attnd_pool_size(pool));
        cJSON_AddStringToObject(root, "isa", quant_isa_name(isa));
        cJSON_AddStringToObject(root, "pages", huge ? "2m" : "4k");
        cJSON_AddNumberToObject(root, "mib", mib);
        cJSON_AddNumberToObject(root, "n", n);
        cJSON_AddNumberToObject(root, "rows", nx);
        arr = cJSON_AddArrayToObject(root, "types");
    } else {
        printf("%u threads, kernels %s, %u MiB in %s pages, rows of %u, %u activation row%s\n",
               attnd_pool_size(pool), quant_isa_name(isa), mib, huge ? "2 MiB" : "4 KiB", n, nx,
               nx > 1 ? "s" : "");
        printf("%-8s %12s %12s %12s\n", "type", "kernel GB/s", "read GB/s", "of read");
    }
    int status = 0;
    for (int i = 0; i < n_types; i++) {
        double gbs, rgbs, ratio;
        if (!measure(pool, types[i], n, nx, mib, huge, isa, (int)reps, &gbs, &rgbs, &ratio)) {
            status = 1;
            break;
        }
        if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "type", gguf_dtype_name(types[i]));
            cJSON_AddNumberToObject(o, "kernel_gbs", gbs);
            cJSON_AddNumberToObject(o, "read_gbs", rgbs);
            cJSON_AddNumberToObject(o, "fraction_of_read", ratio);
            cJSON_AddItemToArray(arr, o);
        } else {
            printf("%-8s %12.2f %12.2f %11.1f%%\n", gguf_dtype_name(types[i]), gbs, rgbs,
                   100 * ratio);
        }
    }
    if (json) {
        char *txt = cJSON_Print(root);
        puts(txt ? txt : "{}");
        free(txt);
        cJSON_Delete(root);
    }
    attnd_pool_free(pool);
    return status;
}
