/* gguf_read.c - the GGUF reader: maps a file and validates every byte of its
 * structure before anyone uses it.
 *
 * All parsing goes through one cursor (struct rd) whose every read is checked
 * against the bytes that remain, and every count is checked against the
 * smallest number of bytes its elements could occupy before anything is
 * allocated for it. Errors name the file, the field or tensor, the offset and
 * what was wrong. */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attnd_ckd.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader assumes a little-endian host"
#endif

struct gguf_value {
    gguf_type type;
    union {
        uint64_t u64;
        int64_t i64;
        double f64;
        bool b;
        gguf_str str;
        struct {
            gguf_type elem;
            uint64_t n;
            const uint8_t *data;  /* scalar arrays: raw element bytes */
            gguf_value *items;    /* string and array arrays: parsed items */
        } arr;
    } u;
};

struct gguf_file {
    char *path;
    const uint8_t *base;
    size_t size;
    void *map;      /* what to munmap (NULL for gguf_open_mem) */
    size_t map_len;
    uint32_t version;
    uint32_t alignment;
    size_t n_kv;
    char **keys;
    gguf_value *values;
    size_t n_tensors;
    gguf_tensor *tensors;
    size_t *by_name; /* tensor indices sorted by name, for lookup */
};

/* ---------------------------------------------------------------- cursor */

struct rd {
    const uint8_t *p;
    size_t size;
    size_t off;
    const char *file;
    char what[192]; /* the field being read, for messages */
    attnd_err *err;
};

__attribute__((format(printf, 3, 4))) static int rd_fail(struct rd *r, int code,
                                                         const char *fmt, ...)
{
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return attnd_err_set(r->err, code, "%s: %s (at offset %zu): %s", r->file, r->what,
                         r->off, msg);
}

static size_t rd_left(const struct rd *r)
{
    return r->size - r->off;
}

static int rd_take(struct rd *r, uint64_t n, const uint8_t **out)
{
    if (n > rd_left(r))
        return rd_fail(r, ATTND_EFORMAT, "needs %llu bytes but the file has %zu left",
                       (unsigned long long)n, rd_left(r));
    *out = r->p + r->off;
    r->off += (size_t)n;
    return ATTND_OK;
}

static int rd_u32(struct rd *r, uint32_t *v)
{
    const uint8_t *b = NULL;
    int rc = rd_take(r, 4, &b);
    if (rc == ATTND_OK)
        memcpy(v, b, 4);
    return rc;
}

static int rd_u64(struct rd *r, uint64_t *v)
{
    const uint8_t *b = NULL;
    int rc = rd_take(r, 8, &b);
    if (rc == ATTND_OK)
        memcpy(v, b, 8);
    return rc;
}

static int rd_str(struct rd *r, gguf_str *s)
{
    uint64_t len = 0;
    const uint8_t *b = NULL;
    int rc = rd_u64(r, &len);
    if (rc != ATTND_OK)
        return rc;
    if (len > rd_left(r))
        return rd_fail(r, ATTND_EFORMAT, "string length %llu exceeds the %zu bytes left",
                       (unsigned long long)len, rd_left(r));
    rc = rd_take(r, len, &b);
    s->ptr = (const char *)b;
    s->len = len;
    return rc;
}

/* Fails unless N elements of at least MIN_BYTES each can fit in what is left:
 * the bound that keeps allocations proportional to the file. */
static int rd_check_count(struct rd *r, uint64_t n, uint64_t min_bytes, const char *what)
{
    uint64_t need;
    if (!attnd_ckd_mul(n, min_bytes, &need) || need > rd_left(r))
        return rd_fail(r, ATTND_EFORMAT, "%s count %llu cannot fit in the %zu bytes left",
                       what, (unsigned long long)n, rd_left(r));
    return ATTND_OK;
}

/* ---------------------------------------------------------------- values */

static void value_free(gguf_value *v)
{
    if (v->type != GGUF_TYPE_ARRAY || !v->u.arr.items)
        return;
    if (v->u.arr.elem == GGUF_TYPE_ARRAY)
        for (uint64_t i = 0; i < v->u.arr.n; i++)
            value_free(&v->u.arr.items[i]);
    free(v->u.arr.items);
    v->u.arr.items = NULL;
}

static void scalar_decode(gguf_type t, const uint8_t *b, gguf_value *v)
{
    v->type = t;
    switch (t) {
    case GGUF_TYPE_UINT8: v->u.u64 = b[0]; break;
    case GGUF_TYPE_INT8: { int8_t x; memcpy(&x, b, 1); v->u.i64 = x; break; }
    case GGUF_TYPE_UINT16: { uint16_t x; memcpy(&x, b, 2); v->u.u64 = x; break; }
    case GGUF_TYPE_INT16: { int16_t x; memcpy(&x, b, 2); v->u.i64 = x; break; }
    case GGUF_TYPE_UINT32: { uint32_t x; memcpy(&x, b, 4); v->u.u64 = x; break; }
    case GGUF_TYPE_INT32: { int32_t x; memcpy(&x, b, 4); v->u.i64 = x; break; }
    case GGUF_TYPE_FLOAT32: { float x; memcpy(&x, b, 4); v->u.f64 = x; break; }
    case GGUF_TYPE_BOOL: v->u.b = b[0] != 0; break;
    case GGUF_TYPE_UINT64: memcpy(&v->u.u64, b, 8); break;
    case GGUF_TYPE_INT64: memcpy(&v->u.i64, b, 8); break;
    case GGUF_TYPE_FLOAT64: memcpy(&v->u.f64, b, 8); break;
    default: break;
    }
}

static bool type_is_scalar(uint32_t t)
{
    return t < GGUF_TYPE_COUNT_ && t != GGUF_TYPE_STRING && t != GGUF_TYPE_ARRAY;
}

static int read_value(struct rd *r, uint32_t type, gguf_value *v, int depth);

/* Array body (element type, count, elements) into v. */
static int read_array(struct rd *r, gguf_value *v, int depth)
{
    uint32_t elem = 0;
    uint64_t n = 0;
    int rc;
    v->type = GGUF_TYPE_ARRAY;
    v->u.arr.items = NULL;
    if (depth >= GGUF_MAX_ARRAY_DEPTH)
        return rd_fail(r, ATTND_EUNSUPPORTED, "arrays nested deeper than %d",
                       GGUF_MAX_ARRAY_DEPTH);
    if ((rc = rd_u32(r, &elem)) != ATTND_OK || (rc = rd_u64(r, &n)) != ATTND_OK)
        return rc;
    if (elem >= GGUF_TYPE_COUNT_)
        return rd_fail(r, ATTND_EFORMAT, "unknown array element type %u", elem);
    v->u.arr.elem = (gguf_type)elem;
    v->u.arr.n = n;
    if (type_is_scalar(elem)) {
        uint64_t bytes;
        if (!attnd_ckd_mul(n, gguf_type_scalar_size((gguf_type)elem), &bytes))
            return rd_fail(r, ATTND_EFORMAT, "array of %llu %s overflows",
                           (unsigned long long)n, gguf_type_name((gguf_type)elem));
        return rd_take(r, bytes, &v->u.arr.data);
    }
    /* Strings take at least their 8-byte length, arrays their 12-byte header. */
    uint64_t min = elem == GGUF_TYPE_STRING ? 8 : 12;
    if ((rc = rd_check_count(r, n, min, "array element")) != ATTND_OK)
        return rc;
    if (n == 0)
        return ATTND_OK;
    v->u.arr.items = calloc((size_t)n, sizeof *v->u.arr.items);
    if (!v->u.arr.items)
        return rd_fail(r, ATTND_ENOMEM, "cannot allocate %llu array items",
                       (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++) {
        /* Items not reached stay zeroed (type 0), which value_free ignores. */
        if ((rc = read_value(r, elem, &v->u.arr.items[i], depth + 1)) != ATTND_OK)
            return rc;
    }
    return ATTND_OK;
}

static int read_value(struct rd *r, uint32_t type, gguf_value *v, int depth)
{
    if (type >= GGUF_TYPE_COUNT_)
        return rd_fail(r, ATTND_EFORMAT, "unknown value type %u", type);
    if (type == GGUF_TYPE_STRING) {
        v->type = GGUF_TYPE_STRING;
        return rd_str(r, &v->u.str);
    }
    if (type == GGUF_TYPE_ARRAY)
        return read_array(r, v, depth);
    const uint8_t *b = NULL;
    int rc = rd_take(r, gguf_type_scalar_size((gguf_type)type), &b);
    if (rc == ATTND_OK)
        scalar_decode((gguf_type)type, b, v);
    return rc;
}

/* ---------------------------------------------------------------- parse */

static char *str_dup(const gguf_str *s)
{
    char *d = malloc((size_t)s->len + 1);
    if (d) {
        memcpy(d, s->ptr, (size_t)s->len);
        d[s->len] = '\0';
    }
    return d;
}

static int cmp_key_ptr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int parse_kv(struct rd *r, gguf_file *f, uint64_t n_kv)
{
    int rc;
    snprintf(r->what, sizeof r->what, "metadata count");
    if ((rc = rd_check_count(r, n_kv, 13, "metadata key")) != ATTND_OK)
        return rc;
    f->keys = calloc((size_t)n_kv + 1, sizeof *f->keys);
    f->values = calloc((size_t)n_kv + 1, sizeof *f->values);
    if (!f->keys || !f->values)
        return rd_fail(r, ATTND_ENOMEM, "cannot allocate %llu keys", (unsigned long long)n_kv);
    for (uint64_t i = 0; i < n_kv; i++) {
        gguf_str key = {0};
        uint32_t type = 0;
        snprintf(r->what, sizeof r->what, "metadata key #%llu", (unsigned long long)i);
        if ((rc = rd_str(r, &key)) != ATTND_OK)
            return rc;
        if (key.len == 0 || key.len > GGUF_MAX_KEY_LEN || memchr(key.ptr, 0, (size_t)key.len))
            return rd_fail(r, ATTND_EFORMAT, "key is empty, longer than %u bytes or has a NUL",
                           GGUF_MAX_KEY_LEN);
        if (!(f->keys[i] = str_dup(&key)))
            return rd_fail(r, ATTND_ENOMEM, "cannot copy key");
        f->n_kv = (size_t)i + 1;
        snprintf(r->what, sizeof r->what, "metadata '%.120s'", f->keys[i]);
        if ((rc = rd_u32(r, &type)) != ATTND_OK ||
            (rc = read_value(r, type, &f->values[i], 0)) != ATTND_OK)
            return rc;
    }
    /* Duplicate keys would make lookups ambiguous. */
    char **sorted = malloc((f->n_kv + 1) * sizeof *sorted);
    if (!sorted)
        return rd_fail(r, ATTND_ENOMEM, "cannot sort keys");
    memcpy(sorted, f->keys, f->n_kv * sizeof *sorted);
    qsort(sorted, f->n_kv, sizeof *sorted, cmp_key_ptr);
    for (size_t i = 1; i < f->n_kv; i++) {
        if (strcmp(sorted[i - 1], sorted[i]) == 0) {
            snprintf(r->what, sizeof r->what, "metadata '%.120s'", sorted[i]);
            free(sorted);
            return rd_fail(r, ATTND_EFORMAT, "key appears more than once");
        }
    }
    free(sorted);
    return ATTND_OK;
}

static int parse_alignment(struct rd *r, gguf_file *f)
{
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_value *v = gguf_get(f, "general.alignment");
    if (!v)
        return ATTND_OK;
    snprintf(r->what, sizeof r->what, "metadata 'general.alignment'");
    if (v->type != GGUF_TYPE_UINT32)
        return rd_fail(r, ATTND_EFORMAT, "must be uint32, is %s", gguf_type_name(v->type));
    /* The spec requires it; 1, 2 and 4 pass the power-of-two test below but not this. */
    if (v->u.u64 == 0 || v->u.u64 % 8 != 0)
        return rd_fail(r, ATTND_EFORMAT, "%llu is not a non-zero multiple of 8",
                       (unsigned long long)v->u.u64);
    /* Ours on top: data offsets are rounded up with a mask. */
    if ((v->u.u64 & (v->u.u64 - 1)) != 0)
        return rd_fail(r, ATTND_EFORMAT, "%llu is not a power of two",
                       (unsigned long long)v->u.u64);
    f->alignment = (uint32_t)v->u.u64;
    return ATTND_OK;
}

static int parse_tensor_info(struct rd *r, gguf_file *f, size_t i)
{
    gguf_tensor *t = &f->tensors[i];
    gguf_str name = {0};
    uint32_t n_dims = 0, type = 0;
    int rc;
    snprintf(r->what, sizeof r->what, "tensor #%zu", i);
    if ((rc = rd_str(r, &name)) != ATTND_OK)
        return rc;
    if (name.len == 0 || name.len > GGUF_MAX_KEY_LEN || memchr(name.ptr, 0, (size_t)name.len))
        return rd_fail(r, ATTND_EFORMAT, "name is empty, too long or has a NUL");
    if (!(t->name = str_dup(&name)))
        return rd_fail(r, ATTND_ENOMEM, "cannot copy tensor name");
    f->n_tensors = i + 1;
    snprintf(r->what, sizeof r->what, "tensor '%.120s'", t->name);
    if ((rc = rd_u32(r, &n_dims)) != ATTND_OK)
        return rc;
    if (n_dims == 0 || n_dims > GGUF_MAX_DIMS)
        return rd_fail(r, ATTND_EFORMAT, "%u dimensions (1 to %d allowed)", n_dims,
                       GGUF_MAX_DIMS);
    t->n_dims = n_dims;
    t->n_elems = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d >= n_dims)
            continue;
        if ((rc = rd_u64(r, &t->ne[d])) != ATTND_OK)
            return rc;
        if (t->ne[d] == 0 || t->ne[d] > INT64_MAX)
            return rd_fail(r, ATTND_EFORMAT, "dimension %u is %llu", d,
                           (unsigned long long)t->ne[d]);
        if (!attnd_ckd_mul(t->n_elems, t->ne[d], &t->n_elems) || t->n_elems > INT64_MAX)
            return rd_fail(r, ATTND_EFORMAT, "element count overflows at dimension %u", d);
    }
    if ((rc = rd_u32(r, &type)) != ATTND_OK)
        return rc;
    if (!gguf_dtype_known(type))
        return rd_fail(r, ATTND_EUNSUPPORTED, "unknown tensor type %u", type);
    t->type = (gguf_dtype)type;
    uint64_t row_bytes;
    if (!gguf_dtype_row_bytes(t->type, t->ne[0], &row_bytes))
        return rd_fail(r, ATTND_EFORMAT, "row of %llu is not a whole number of %s blocks of %u",
                       (unsigned long long)t->ne[0], gguf_dtype_name(t->type),
                       gguf_dtype_block_elems(t->type));
    if (!attnd_ckd_mul(row_bytes, t->n_elems / t->ne[0], &t->nbytes))
        return rd_fail(r, ATTND_EFORMAT, "byte size overflows");
    return rd_u64(r, &t->offset);
}

static int cmp_tensor_offset(const void *a, const void *b, void *ctx)
{
    const gguf_tensor *ts = ctx;
    uint64_t x = ts[*(const size_t *)a].offset, y = ts[*(const size_t *)b].offset;
    return (x > y) - (x < y);
}

static int cmp_tensor_name(const void *a, const void *b, void *ctx)
{
    const gguf_tensor *ts = ctx;
    return strcmp(ts[*(const size_t *)a].name, ts[*(const size_t *)b].name);
}

static int parse_tensors(struct rd *r, gguf_file *f, uint64_t n_tensors)
{
    int rc;
    snprintf(r->what, sizeof r->what, "tensor count");
    /* name length + n_dims + one dim + type + offset */
    if ((rc = rd_check_count(r, n_tensors, 32, "tensor")) != ATTND_OK)
        return rc;
    f->tensors = calloc((size_t)n_tensors + 1, sizeof *f->tensors);
    f->by_name = calloc((size_t)n_tensors + 1, sizeof *f->by_name);
    size_t *by_off = calloc((size_t)n_tensors + 1, sizeof *by_off);
    if (!f->tensors || !f->by_name || !by_off) {
        free(by_off);
        return rd_fail(r, ATTND_ENOMEM, "cannot allocate %llu tensor infos",
                       (unsigned long long)n_tensors);
    }
    for (size_t i = 0; i < (size_t)n_tensors; i++)
        if ((rc = parse_tensor_info(r, f, i)) != ATTND_OK)
            goto out;

    uint64_t data_start;
    snprintf(r->what, sizeof r->what, "tensor data section");
    if (!attnd_ckd_align(r->off, f->alignment, &data_start) ||
        (n_tensors > 0 && data_start > r->size)) {
        rc = rd_fail(r, ATTND_EFORMAT, "starts past the end of the file");
        goto out;
    }
    for (size_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        uint64_t start, end;
        snprintf(r->what, sizeof r->what, "tensor '%.120s'", t->name);
        if (t->offset % f->alignment != 0) {
            rc = rd_fail(r, ATTND_EFORMAT, "data offset %llu is not a multiple of the alignment %u",
                         (unsigned long long)t->offset, f->alignment);
            goto out;
        }
        if (!attnd_ckd_add(data_start, t->offset, &start) ||
            !attnd_ckd_add(start, t->nbytes, &end) || end > r->size) {
            rc = rd_fail(r, ATTND_EFORMAT,
                         "data (offset %llu, %llu bytes) extends past the end of the file (%zu bytes)",
                         (unsigned long long)t->offset, (unsigned long long)t->nbytes, r->size);
            goto out;
        }
        t->data = r->p + start;
        f->by_name[i] = by_off[i] = i;
    }
    qsort_r(by_off, f->n_tensors, sizeof *by_off, cmp_tensor_offset, f->tensors);
    for (size_t i = 1; i < f->n_tensors; i++) {
        const gguf_tensor *a = &f->tensors[by_off[i - 1]], *b = &f->tensors[by_off[i]];
        if (a->offset + a->nbytes > b->offset) {
            snprintf(r->what, sizeof r->what, "tensor '%.120s'", b->name);
            rc = rd_fail(r, ATTND_EFORMAT, "data overlaps tensor '%.120s'", a->name);
            goto out;
        }
    }
    qsort_r(f->by_name, f->n_tensors, sizeof *f->by_name, cmp_tensor_name, f->tensors);
    for (size_t i = 1; i < f->n_tensors; i++) {
        if (strcmp(f->tensors[f->by_name[i - 1]].name, f->tensors[f->by_name[i]].name) == 0) {
            snprintf(r->what, sizeof r->what, "tensor '%.120s'", f->tensors[f->by_name[i]].name);
            rc = rd_fail(r, ATTND_EFORMAT, "name appears more than once");
            goto out;
        }
    }
    rc = ATTND_OK;
out:
    free(by_off);
    return rc;
}

static int parse(gguf_file *f, attnd_err *err)
{
    struct rd r = {.p = f->base, .size = f->size, .off = 0, .file = f->path, .err = err};
    const uint8_t *magic = NULL;
    uint64_t n_tensors = 0, n_kv = 0;
    int rc;

    snprintf(r.what, sizeof r.what, "header");
    if ((rc = rd_take(&r, 4, &magic)) != ATTND_OK)
        return rc;
    if (memcmp(magic, "GGUF", 4) != 0)
        return rd_fail(&r, ATTND_EFORMAT, "not a GGUF file (bad magic)");
    if ((rc = rd_u32(&r, &f->version)) != ATTND_OK)
        return rc;
    if (f->version != 2 && f->version != 3) {
        if ((f->version & 0xffffu) == 0)
            return rd_fail(&r, ATTND_EUNSUPPORTED, "big-endian GGUF is not supported");
        return rd_fail(&r, ATTND_EUNSUPPORTED, "version %u is not supported (2 and 3 are)",
                       f->version);
    }
    if ((rc = rd_u64(&r, &n_tensors)) != ATTND_OK || (rc = rd_u64(&r, &n_kv)) != ATTND_OK)
        return rc;
    if ((rc = parse_kv(&r, f, n_kv)) != ATTND_OK)
        return rc;
    if ((rc = parse_alignment(&r, f)) != ATTND_OK)
        return rc;
    return parse_tensors(&r, f, n_tensors);
}

/* ---------------------------------------------------------------- open/close */

static int file_new(const char *name, gguf_file **out, attnd_err *err)
{
    gguf_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(name ? name : "(memory)"))) {
        free(f);
        return attnd_err_set(err, ATTND_ENOMEM, "%s: out of memory", name ? name : "gguf");
    }
    *out = f;
    return ATTND_OK;
}

int gguf_open_mem(const void *buf, size_t len, const char *name, gguf_file **out,
                  attnd_err *err)
{
    gguf_file *f = NULL;
    *out = NULL;
    int rc = file_new(name, &f, err);
    if (rc != ATTND_OK)
        return rc;
    f->base = buf;
    f->size = len;
    if ((rc = parse(f, err)) != ATTND_OK) {
        gguf_close(f);
        return rc;
    }
    *out = f;
    return ATTND_OK;
}

/* Huge pages are this size where the kernel has them (x86-64). */
#define HUGE_PAGE ((size_t)2 << 20)

/* SIZE bytes of FD into private memory aligned to HUGE_PAGE, so that the
 * kernel can back it with huge pages, then read-only. */
static int read_private(int fd, const char *path, size_t size, void **map, size_t *map_len,
                        const uint8_t **base, attnd_err *err)
{
    /* room to start at a huge-page boundary */
    uint64_t padded;
    if (!attnd_ckd_add(size, 2 * HUGE_PAGE, &padded))
        return attnd_err_set(err, ATTND_ENOMEM, "%s: %zu bytes: too large to copy", path, size);
    const size_t len = (size_t)padded & ~(HUGE_PAGE - 1);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return attnd_err_set(err, ATTND_ENOMEM, "%s: cannot allocate %zu bytes to copy it into: %s",
                             path, len, strerror(errno));
    uint8_t *start = (uint8_t *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    /* advice only: without transparent huge pages this is a plain copy */
    (void)madvise(start, size, MADV_HUGEPAGE);
    for (size_t got = 0; got < size;) {
        size_t want = size - got < ((size_t)1 << 30) ? size - got : (size_t)1 << 30;
        ssize_t r = pread(fd, start + got, want, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            munmap(p, len);
            return attnd_err_set(err, ATTND_EIO, "%s: read failed at byte %zu of %zu: %s", path,
                                 got, size, e ? strerror(e) : "file shrank while loading");
        }
        got += (size_t)r;
    }
    /* the weights are never written: a stray write faults, as in a mapping */
    if (mprotect(start, size ? size : 1, PROT_READ) != 0) {
        munmap(p, len);
        return attnd_err_set(err, ATTND_EIO, "%s: cannot make the copy read-only: %s", path,
                             strerror(errno));
    }
    *map = p;
    *map_len = len;
    *base = start;
    return ATTND_OK;
}

int gguf_open_as(const char *path, gguf_load how, gguf_file **out, attnd_err *err)
{
    gguf_file *f = NULL;
    struct stat st;
    *out = NULL;
    if (how != GGUF_LOAD_MAP && how != GGUF_LOAD_COPY)
        return attnd_err_set(err, ATTND_EINVAL, "%s: unknown load mode %d", path, (int)how);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return attnd_err_set(err, ATTND_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return attnd_err_set(err, ATTND_EIO, "%s: not a regular file", path);
    }
    if (st.st_size < 24) {
        close(fd);
        return attnd_err_set(err, ATTND_EFORMAT, "%s: header: file has %lld bytes, too small for GGUF",
                             path, (long long)st.st_size);
    }
    int rc = file_new(path, &f, err);
    if (rc != ATTND_OK) {
        close(fd);
        return rc;
    }
    f->size = (size_t)st.st_size;
    if (how == GGUF_LOAD_COPY) {
        rc = read_private(fd, path, f->size, &f->map, &f->map_len, &f->base, err);
        close(fd);
        if (rc != ATTND_OK) {
            gguf_close(f);
            return rc;
        }
    } else {
        void *map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        if (map == MAP_FAILED) {
            gguf_close(f);
            return attnd_err_set(err, ATTND_EIO, "%s: cannot mmap: %s", path, strerror(errno));
        }
        f->base = map;
        f->map = map;
        f->map_len = f->size;
    }
    if ((rc = parse(f, err)) != ATTND_OK) {
        gguf_close(f);
        return rc;
    }
    *out = f;
    return ATTND_OK;
}

int gguf_open(const char *path, gguf_file **out, attnd_err *err)
{
    return gguf_open_as(path, GGUF_LOAD_MAP, out, err);
}

const char *gguf_load_name(gguf_load how)
{
    return how == GGUF_LOAD_MAP ? "map" : how == GGUF_LOAD_COPY ? "copy" : NULL;
}

int gguf_load_parse(const char *name)
{
    if (strcmp(name, "map") == 0)
        return GGUF_LOAD_MAP;
    if (strcmp(name, "copy") == 0)
        return GGUF_LOAD_COPY;
    return -1;
}

void gguf_close(gguf_file *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_kv; i++) {
        free(f->keys[i]);
        value_free(&f->values[i]);
    }
    free(f->keys);
    free(f->values);
    for (size_t i = 0; i < f->n_tensors; i++)
        free((char *)f->tensors[i].name);
    free(f->tensors);
    free(f->by_name);
    if (f->map)
        munmap(f->map, f->map_len);
    free(f->path);
    free(f);
}

/* ---------------------------------------------------------------- accessors */

const char *gguf_path(const gguf_file *f) { return f->path; }
uint32_t gguf_version(const gguf_file *f) { return f->version; }
uint32_t gguf_alignment(const gguf_file *f) { return f->alignment; }
uint64_t gguf_file_size(const gguf_file *f) { return f->size; }
size_t gguf_kv_count(const gguf_file *f) { return f->n_kv; }
size_t gguf_tensor_count(const gguf_file *f) { return f->n_tensors; }

const char *gguf_kv_key(const gguf_file *f, size_t i)
{
    return i < f->n_kv ? f->keys[i] : NULL;
}

const gguf_value *gguf_kv_value(const gguf_file *f, size_t i)
{
    return i < f->n_kv ? &f->values[i] : NULL;
}

const gguf_value *gguf_get(const gguf_file *f, const char *key)
{
    for (size_t i = 0; i < f->n_kv; i++)
        if (strcmp(f->keys[i], key) == 0)
            return &f->values[i];
    return NULL;
}

const gguf_tensor *gguf_tensor_at(const gguf_file *f, size_t i)
{
    return i < f->n_tensors ? &f->tensors[i] : NULL;
}

const gguf_tensor *gguf_tensor_find(const gguf_file *f, const char *name)
{
    size_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const gguf_tensor *t = &f->tensors[f->by_name[mid]];
        int c = strcmp(t->name, name);
        if (c == 0)
            return t;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

gguf_type gguf_value_type(const gguf_value *v)
{
    return v->type;
}

static bool type_is_signed(gguf_type t)
{
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 ||
           t == GGUF_TYPE_INT64;
}

static bool type_is_unsigned(gguf_type t)
{
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_UINT32 ||
           t == GGUF_TYPE_UINT64;
}

bool gguf_value_u64(const gguf_value *v, uint64_t *out)
{
    if (type_is_unsigned(v->type)) {
        *out = v->u.u64;
        return true;
    }
    if (type_is_signed(v->type) && v->u.i64 >= 0) {
        *out = (uint64_t)v->u.i64;
        return true;
    }
    return false;
}

bool gguf_value_i64(const gguf_value *v, int64_t *out)
{
    if (type_is_signed(v->type)) {
        *out = v->u.i64;
        return true;
    }
    if (type_is_unsigned(v->type) && v->u.u64 <= INT64_MAX) {
        *out = (int64_t)v->u.u64;
        return true;
    }
    return false;
}

bool gguf_value_f64(const gguf_value *v, double *out)
{
    if (v->type == GGUF_TYPE_FLOAT32 || v->type == GGUF_TYPE_FLOAT64) {
        *out = v->u.f64;
        return true;
    }
    if (type_is_unsigned(v->type)) {
        *out = (double)v->u.u64;
        return true;
    }
    if (type_is_signed(v->type)) {
        *out = (double)v->u.i64;
        return true;
    }
    return false;
}

bool gguf_value_bool(const gguf_value *v, bool *out)
{
    if (v->type != GGUF_TYPE_BOOL)
        return false;
    *out = v->u.b;
    return true;
}

bool gguf_value_str(const gguf_value *v, gguf_str *out)
{
    if (v->type != GGUF_TYPE_STRING)
        return false;
    *out = v->u.str;
    return true;
}

uint64_t gguf_array_len(const gguf_value *v)
{
    return v->type == GGUF_TYPE_ARRAY ? v->u.arr.n : 0;
}

gguf_type gguf_array_elem_type(const gguf_value *v)
{
    return v->type == GGUF_TYPE_ARRAY ? v->u.arr.elem : GGUF_TYPE_COUNT_;
}

const gguf_value *gguf_array_item(const gguf_value *v, uint64_t i)
{
    if (v->type != GGUF_TYPE_ARRAY || !v->u.arr.items || i >= v->u.arr.n)
        return NULL;
    return &v->u.arr.items[i];
}

const void *gguf_array_data(const gguf_value *v)
{
    if (v->type != GGUF_TYPE_ARRAY || !type_is_scalar(v->u.arr.elem))
        return NULL;
    return v->u.arr.data;
}

/* Element i of a scalar array decoded into a temporary value. */
static bool array_scalar(const gguf_value *v, uint64_t i, gguf_value *tmp)
{
    if (v->type != GGUF_TYPE_ARRAY || !type_is_scalar(v->u.arr.elem) || i >= v->u.arr.n)
        return false;
    size_t sz = gguf_type_scalar_size(v->u.arr.elem);
    scalar_decode(v->u.arr.elem, v->u.arr.data + i * sz, tmp);
    return true;
}

bool gguf_array_u64(const gguf_value *v, uint64_t i, uint64_t *out)
{
    gguf_value t;
    return array_scalar(v, i, &t) && gguf_value_u64(&t, out);
}

bool gguf_array_i64(const gguf_value *v, uint64_t i, int64_t *out)
{
    gguf_value t;
    return array_scalar(v, i, &t) && gguf_value_i64(&t, out);
}

bool gguf_array_f64(const gguf_value *v, uint64_t i, double *out)
{
    gguf_value t;
    return array_scalar(v, i, &t) && gguf_value_f64(&t, out);
}

bool gguf_array_str(const gguf_value *v, uint64_t i, gguf_str *out)
{
    const gguf_value *item = gguf_array_item(v, i);
    return item && gguf_value_str(item, out);
}

/* ---------------------------------------------------------------- typed lookups */

static const gguf_value *get_required(const gguf_file *f, const char *key, attnd_err *err)
{
    const gguf_value *v = gguf_get(f, key);
    if (!v)
        attnd_err_set(err, ATTND_ENOTFOUND, "%s: metadata '%s' is missing", f->path, key);
    return v;
}

int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, attnd_err *err)
{
    const gguf_value *v = get_required(f, key, err);
    uint64_t x;
    if (!v)
        return ATTND_ENOTFOUND;
    if (!gguf_value_u64(v, &x) || x > UINT32_MAX)
        return attnd_err_set(err, ATTND_EFORMAT,
                             "%s: metadata '%s' must be a non-negative integer below 2^32 (is %s)",
                             f->path, key, gguf_type_name(v->type));
    *out = (uint32_t)x;
    return ATTND_OK;
}

int gguf_get_f32(const gguf_file *f, const char *key, float *out, attnd_err *err)
{
    const gguf_value *v = get_required(f, key, err);
    double x;
    if (!v)
        return ATTND_ENOTFOUND;
    if (!gguf_value_f64(v, &x))
        return attnd_err_set(err, ATTND_EFORMAT, "%s: metadata '%s' must be a number (is %s)",
                             f->path, key, gguf_type_name(v->type));
    *out = (float)x;
    return ATTND_OK;
}

int gguf_get_bool(const gguf_file *f, const char *key, bool *out, attnd_err *err)
{
    const gguf_value *v = get_required(f, key, err);
    if (!v)
        return ATTND_ENOTFOUND;
    if (!gguf_value_bool(v, out))
        return attnd_err_set(err, ATTND_EFORMAT, "%s: metadata '%s' must be bool (is %s)",
                             f->path, key, gguf_type_name(v->type));
    return ATTND_OK;
}

int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, attnd_err *err)
{
    const gguf_value *v = get_required(f, key, err);
    if (!v)
        return ATTND_ENOTFOUND;
    if (!gguf_value_str(v, out))
        return attnd_err_set(err, ATTND_EFORMAT, "%s: metadata '%s' must be a string (is %s)",
                             f->path, key, gguf_type_name(v->type));
    return ATTND_OK;
}
