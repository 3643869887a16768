/* cmd_quantize.c - `attnd quantize IN.gguf OUT.gguf TYPE`: rewrites a model
 * with the per-tensor types of a preset (quant_preset.h). Metadata is copied
 * as is except general.file_type; each tensor is dequantized to f32 and
 * requantized while the output is written, one tensor at a time, so the
 * memory needed is one output tensor plus a row per thread. */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "quant.h"
#include "quant_preset.h"

/* The quantization format version the reference's loaders expect. */
enum { GGML_QUANT_VERSION = 2 };

static void usage(FILE *out)
{
    char names[256];
    cli_preset_names(names, sizeof names);
    fprintf(out,
            "usage: attnd quantize [OPTIONS] IN.gguf OUT.gguf TYPE\n\n"
            "Writes IN with its weight matrices converted as preset TYPE chooses per\n"
            "tensor (as llama.cpp's llama-quantize does: e.g. Q4_K_M puts the output\n"
            "and some attn_v/ffn_down layers in Q6_K; matrices whose rows are not whole\n"
            "blocks fall back to a type that fits). Norms and other vectors are kept.\n"
            "Metadata is copied; general.file_type is set to the preset's.\n\n"
            "TYPE (any case): %s\n\n"
            "options:\n"
            "  --threads N   worker threads (default: number of cores)\n"
            "  -h, --help    show this help\n",
            names);
}

void cli_preset_names(char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int p = 0; p < QUANT_PRESET_COUNT && len < size; p++) {
        int k = snprintf(buf + len, size - len, "%s%s", p ? ", " : "",
                         quant_preset_name((quant_preset)p));
        len += k > 0 ? (size_t)k : 0;
    }
}

bool cli_parse_preset(const char *what, const char *s, quant_preset *out)
{
    if (quant_preset_parse(s, out))
        return true;
    char names[256];
    cli_preset_names(names, sizeof names);
    fprintf(stderr, "attnd: %s: unknown type '%s' (one of %s)\n", what, s, names);
    return false;
}

/* What the preset rules need to know of the model: layers from the
 * architecture's block_count (else the highest blk.N), GQA from the head
 * counts (1 when unknown), whether there is a separate output.weight. */
static void preset_model_of(const gguf_file *f, quant_preset_model *m)
{
    *m = (quant_preset_model){.n_gqa = 1};
    uint32_t max_layer = 0;
    bool any_layer = false;
    for (size_t i = 0; i < gguf_tensor_count(f); i++) {
        const char *name = gguf_tensor_at(f, i)->name;
        unsigned l;
        if (sscanf(name, "blk.%u.", &l) == 1) {
            max_layer = !any_layer || l > max_layer ? l : max_layer;
            any_layer = true;
        }
        if (strcmp(name, "output.weight") == 0)
            m->has_output = true;
    }
    m->n_layer = any_layer ? max_layer + 1 : 0;
    gguf_str arch;
    const gguf_value *av = gguf_get(f, "general.architecture");
    if (!av || !gguf_value_str(av, &arch) || arch.len > 64)
        return;
    char key[128];
    uint32_t v, heads, kv_heads;
    snprintf(key, sizeof key, "%.*s.block_count", (int)arch.len, arch.ptr);
    if (gguf_get_u32(f, key, &v, NULL) == ATTND_OK)
        m->n_layer = v;
    snprintf(key, sizeof key, "%.*s.attention.head_count", (int)arch.len, arch.ptr);
    if (gguf_get_u32(f, key, &heads, NULL) != ATTND_OK)
        return;
    snprintf(key, sizeof key, "%.*s.attention.head_count_kv", (int)arch.len, arch.ptr);
    if (gguf_get_u32(f, key, &kv_heads, NULL) == ATTND_OK && kv_heads && heads % kv_heads == 0)
        m->n_gqa = heads / kv_heads;
}

/* One tensor's conversion: rows [r0, r1) of SRC into DST, each row through a
 * private f32 buffer. */
struct convert {
    const gguf_tensor *src;
    gguf_dtype dst_type;
    uint8_t *dst;
    uint64_t src_row_bytes, dst_row_bytes;
    uint64_t r0, r1;
    int status;
};

static void *convert_rows(void *arg)
{
    struct convert *c = arg;
    size_t ne0 = (size_t)c->src->ne[0];
    float *row = malloc(ne0 * sizeof *row);
    if (!row) {
        c->status = ATTND_ENOMEM;
        return NULL;
    }
    const uint8_t *src = c->src->data;
    for (uint64_t r = c->r0; r < c->r1 && c->status == ATTND_OK; r++)
        if (quant_to_f32(c->src->type, src + r * c->src_row_bytes, row, ne0) != 0 ||
            quant_from_f32(c->dst_type, row, c->dst + r * c->dst_row_bytes, ne0) != 0)
            c->status = ATTND_EUNSUPPORTED;
    free(row);
    return NULL;
}

struct job {
    const gguf_tensor *src;
    gguf_dtype dst_type;
    uint32_t n_threads;
};

/* The writer's fill callback: the tensor's bytes in its new type. */
static int fill_converted(void *ctx, void *buf, uint64_t nbytes, attnd_err *err)
{
    const struct job *j = ctx;
    const gguf_tensor *t = j->src;
    if (t->type == j->dst_type || t->n_elems == 0) {
        memcpy(buf, t->data, (size_t)nbytes);
        return ATTND_OK;
    }
    enum { MAX_THREADS = 256 };
    struct convert parts[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    bool started[MAX_THREADS] = {false};
    uint64_t rows = t->n_elems / t->ne[0], src_rb, dst_rb;
    gguf_dtype_row_bytes(t->type, t->ne[0], &src_rb);
    gguf_dtype_row_bytes(j->dst_type, t->ne[0], &dst_rb);
    uint32_t n = j->n_threads < MAX_THREADS ? j->n_threads : MAX_THREADS;
    if (n > rows)
        n = rows ? (uint32_t)rows : 1;
    for (uint32_t i = 0; i < n; i++) {
        parts[i] = (struct convert){.src = t, .dst_type = j->dst_type, .dst = buf,
                                    .src_row_bytes = src_rb, .dst_row_bytes = dst_rb,
                                    .r0 = rows * i / n, .r1 = rows * (i + 1) / n};
        /* Part 0 runs on this thread; a part whose thread cannot start too. */
        if (i > 0)
            started[i] = pthread_create(&tid[i], NULL, convert_rows, &parts[i]) == 0;
    }
    convert_rows(&parts[0]);
    int rc = parts[0].status;
    for (uint32_t i = 1; i < n; i++) {
        if (started[i])
            pthread_join(tid[i], NULL);
        else
            convert_rows(&parts[i]);
        if (rc == ATTND_OK)
            rc = parts[i].status;
    }
    if (rc == ATTND_ENOMEM)
        return attnd_err_set(err, rc, "tensor '%s': out of memory", t->name);
    if (rc != ATTND_OK)
        return attnd_err_set(err, rc, "tensor '%s': cannot convert %s to %s", t->name,
                             gguf_dtype_name(t->type), gguf_dtype_name(j->dst_type));
    return ATTND_OK;
}

/* Checks before anything is written that every conversion can be done, so a
 * failure names its tensor and leaves no partial file. */
static int check_conversion(const gguf_tensor *t, gguf_dtype dst, attnd_err *err)
{
    if (t->type == dst)
        return ATTND_OK;
    if (!quant_traits_of(t->type))
        return attnd_err_set(err, ATTND_EUNSUPPORTED, "tensor '%s': cannot read type %s",
                             t->name, gguf_dtype_name(t->type));
    const quant_traits *qt = quant_traits_of(dst);
    if (!qt || !qt->from_f32)
        return attnd_err_set(err, ATTND_EUNSUPPORTED,
                             "tensor '%s': cannot write type %s (no quantizer for it)", t->name,
                             gguf_dtype_name(dst));
    return ATTND_OK;
}

/* Every key of SRC in order; the file type and quantization version get the
 * new values where they stand (or at the end), split-file keys are dropped
 * since the output is one file. */
static int copy_metadata(gguf_writer *w, const gguf_file *src, quant_preset p, attnd_err *err)
{
    bool have_ftype = false, have_qver = false;
    int rc = ATTND_OK;
    for (size_t i = 0; rc == ATTND_OK && i < gguf_kv_count(src); i++) {
        const char *key = gguf_kv_key(src, i);
        uint64_t align;
        if (strncmp(key, "split.", 6) == 0)
            continue;
        if (strcmp(key, "general.file_type") == 0) {
            rc = gguf_writer_set_u32(w, key, quant_preset_file_type(p), err);
            have_ftype = true;
        } else if (strcmp(key, "general.quantization_version") == 0) {
            rc = gguf_writer_set_u32(w, key, GGML_QUANT_VERSION, err);
            have_qver = true;
        } else if (strcmp(key, "general.alignment") == 0) {
            /* The reader checked it is a valid uint32 power of two. */
            gguf_value_u64(gguf_kv_value(src, i), &align);
            rc = gguf_writer_set_u32(w, key, (uint32_t)align, err);
        } else {
            rc = gguf_writer_copy(w, src, key, err);
        }
    }
    if (rc == ATTND_OK && !have_qver)
        rc = gguf_writer_set_u32(w, "general.quantization_version", GGML_QUANT_VERSION, err);
    if (rc == ATTND_OK && !have_ftype)
        rc = gguf_writer_set_u32(w, "general.file_type", quant_preset_file_type(p), err);
    return rc;
}

struct totals {
    uint64_t count[GGUF_DTYPE_COUNT_], bytes[GGUF_DTYPE_COUNT_];
    uint64_t elems, bytes_in, bytes_out;
};

static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* Adds every tensor with its new type; fills JOBS and the totals. */
static int plan_tensors(gguf_writer *w, const gguf_file *f, quant_preset p, uint32_t n_threads,
                        struct job *jobs, struct totals *tot, attnd_err *err)
{
    quant_preset_model m;
    preset_model_of(f, &m);
    for (size_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        gguf_dtype dst;
        uint64_t nbytes;
        if (!quant_preset_tensor_type(p, &m, t->name, t->n_dims, t->ne[0], t->type, &dst))
            return attnd_err_set(err, ATTND_EUNSUPPORTED,
                                 "tensor '%s': rows of %" PRIu64 " elements are not whole "
                                 "blocks of %s (%u), which %s needs",
                                 t->name, t->ne[0], gguf_dtype_name(quant_preset_base_type(p)),
                                 gguf_dtype_block_elems(quant_preset_base_type(p)),
                                 quant_preset_name(p));
        int rc = check_conversion(t, dst, err);
        if (rc != ATTND_OK)
            return rc;
        jobs[i] = (struct job){.src = t, .dst_type = dst, .n_threads = n_threads};
        rc = gguf_writer_add_tensor_fn(w, t->name, dst, t->n_dims, t->ne, fill_converted,
                                       &jobs[i], err);
        if (rc != ATTND_OK)
            return rc;
        gguf_dtype_row_bytes(dst, t->n_elems, &nbytes);
        tot->count[dst]++;
        tot->bytes[dst] += nbytes;
        tot->elems += t->n_elems;
        tot->bytes_in += t->nbytes;
        tot->bytes_out += nbytes;
    }
    return ATTND_OK;
}

static void print_summary(const struct totals *tot, double seconds)
{
    for (unsigned t = 0; t < GGUF_DTYPE_COUNT_; t++)
        if (tot->count[t])
            printf("  %-6s %5" PRIu64 " tensors %14" PRIu64 " bytes\n",
                   gguf_dtype_name((gguf_dtype)t), tot->count[t], tot->bytes[t]);
    double e = tot->elems ? (double)tot->elems : 1.0;
    printf("size: %.2f MiB -> %.2f MiB, bits per weight %.2f -> %.2f, %.1f s\n",
           (double)tot->bytes_in / 1048576.0, (double)tot->bytes_out / 1048576.0,
           8.0 * (double)tot->bytes_in / e, 8.0 * (double)tot->bytes_out / e, seconds);
}

static int quantize_file(const char *in, const char *out, quant_preset p, uint32_t n_threads)
{
    attnd_err err = {0};
    gguf_file *f = NULL;
    gguf_writer *w = NULL;
    struct job *jobs = NULL;
    struct totals *tot = calloc(1, sizeof *tot);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = tot ? gguf_open(in, &f, &err) : attnd_err_set(&err, ATTND_ENOMEM, "out of memory");
    if (rc == ATTND_OK && same_file(in, out))
        rc = attnd_err_set(&err, ATTND_EINVAL, "%s: output would overwrite the input", out);
    if (rc == ATTND_OK) {
        w = gguf_writer_new();
        jobs = calloc(gguf_tensor_count(f) + 1, sizeof *jobs);
        if (!w || !jobs)
            rc = attnd_err_set(&err, ATTND_ENOMEM, "out of memory");
    }
    if (rc == ATTND_OK)
        rc = copy_metadata(w, f, p, &err);
    if (rc == ATTND_OK)
        rc = plan_tensors(w, f, p, n_threads, jobs, tot, &err);
    if (rc == ATTND_OK) {
        printf("quantizing %s to %s as %s (general.file_type %u), %zu tensors, %u threads\n",
               in, out, quant_preset_name(p), quant_preset_file_type(p), gguf_tensor_count(f),
               n_threads);
        fflush(stdout);
        rc = gguf_writer_write(w, out, &err);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc == ATTND_OK)
        print_summary(tot, (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    else
        fprintf(stderr, "attnd quantize: %s\n", err.msg);
    gguf_writer_free(w);
    gguf_close(f);
    free(jobs);
    free(tot);
    return rc == ATTND_OK ? 0 : 1;
}

int cli_quantize(int argc, char **argv)
{
    static const struct option opts[] = {
        {"threads", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    uint32_t n_threads = cores > 0 && cores < 256 ? (uint32_t)cores : 1;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            if (!cli_parse_u32("--threads", optarg, 1, 256, &n_threads))
                return 2;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc - 3) {
        usage(stderr);
        return 2;
    }
    quant_preset p;
    if (!cli_parse_preset("quantize", argv[optind + 2], &p))
        return 2;
    return quantize_file(argv[optind], argv[optind + 1], p, n_threads);
}
