/* gguf_write.c - the GGUF writer, for tests, the demo model and `attnd mkmodel`.
 *
 * Metadata is encoded into a byte buffer as it is set (so callers keep
 * ownership of their values); tensors are described up front and their data is
 * pulled from the caller's memory or fill callback only while the file is
 * written, one tensor at a time. */
#include "gguf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnd_ckd.h"

struct wbuf {
    uint8_t *p;
    size_t len, cap;
    bool oom;
};

static void wbuf_put(struct wbuf *b, const void *src, size_t n)
{
    if (b->oom)
        return;
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) {
                b->oom = true;
                return;
            }
            cap *= 2;
        }
        uint8_t *t = realloc(b->p, cap);
        if (!t) {
            b->oom = true;
            return;
        }
        b->p = t;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void wbuf_u32(struct wbuf *b, uint32_t x) { wbuf_put(b, &x, 4); }
static void wbuf_u64(struct wbuf *b, uint64_t x) { wbuf_put(b, &x, 8); }

static void wbuf_str(struct wbuf *b, const char *s, uint64_t len)
{
    wbuf_u64(b, len);
    wbuf_put(b, s, (size_t)len);
}

/* Padding source. */
static const uint8_t zeros[256];

struct wtensor {
    char *name;
    gguf_dtype type;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS];
    uint64_t nbytes;
    uint64_t offset;
    const void *data;
    gguf_fill_fn fill;
    void *ctx;
};

struct gguf_writer {
    uint32_t version;
    uint32_t alignment;
    struct wbuf kv;
    uint64_t n_kv;
    char **keys;
    size_t n_tensors, cap_tensors;
    struct wtensor *tensors;
};

gguf_writer *gguf_writer_new(void)
{
    gguf_writer *w = calloc(1, sizeof *w);
    if (w) {
        w->version = 3;
        w->alignment = GGUF_DEFAULT_ALIGNMENT;
    }
    return w;
}

void gguf_writer_free(gguf_writer *w)
{
    if (!w)
        return;
    free(w->kv.p);
    for (uint64_t i = 0; i < w->n_kv; i++)
        free(w->keys[i]);
    free(w->keys);
    for (size_t i = 0; i < w->n_tensors; i++)
        free(w->tensors[i].name);
    free(w->tensors);
    free(w);
}

int gguf_writer_set_version(gguf_writer *w, uint32_t version, attnd_err *err)
{
    if (version != 2 && version != 3)
        return attnd_err_set(err, ATTND_EINVAL, "gguf writer: version %u (2 or 3 allowed)", version);
    w->version = version;
    return ATTND_OK;
}

/* Encodes the body of a value of TYPE (no type tag). */
static int encode_value(struct wbuf *b, gguf_type type, const gguf_wval *v, int depth,
                        attnd_err *err);

static int encode_array(struct wbuf *b, gguf_type elem, uint64_t n, const void *data, int depth,
                        attnd_err *err)
{
    if (depth >= GGUF_MAX_ARRAY_DEPTH)
        return attnd_err_set(err, ATTND_EINVAL, "gguf writer: arrays nested deeper than %d",
                             GGUF_MAX_ARRAY_DEPTH);
    if ((unsigned)elem >= GGUF_TYPE_COUNT_)
        return attnd_err_set(err, ATTND_EINVAL, "gguf writer: unknown array element type %u",
                             (unsigned)elem);
    wbuf_u32(b, (uint32_t)elem);
    wbuf_u64(b, n);
    if (n > 0 && !data)
        return attnd_err_set(err, ATTND_EINVAL, "gguf writer: array of %llu with no data",
                             (unsigned long long)n);
    if (elem == GGUF_TYPE_STRING) {
        const gguf_str *s = data;
        for (uint64_t i = 0; i < n; i++)
            wbuf_str(b, s[i].ptr, s[i].len);
    } else if (elem == GGUF_TYPE_ARRAY) {
        const gguf_wval *items = data;
        for (uint64_t i = 0; i < n; i++) {
            if (items[i].type != GGUF_TYPE_ARRAY)
                return attnd_err_set(err, ATTND_EINVAL,
                                     "gguf writer: item %llu of an array of arrays is not an array",
                                     (unsigned long long)i);
            int rc = encode_value(b, GGUF_TYPE_ARRAY, &items[i], depth + 1, err);
            if (rc != ATTND_OK)
                return rc;
        }
    } else if (elem == GGUF_TYPE_BOOL) {
        const bool *x = data;
        for (uint64_t i = 0; i < n; i++) {
            uint8_t byte = x[i] ? 1 : 0;
            wbuf_put(b, &byte, 1);
        }
    } else {
        uint64_t bytes;
        if (!attnd_ckd_mul(n, gguf_type_scalar_size(elem), &bytes) || bytes > SIZE_MAX)
            return attnd_err_set(err, ATTND_EINVAL, "gguf writer: array too large");
        wbuf_put(b, data, (size_t)bytes);
    }
    return ATTND_OK;
}

static int encode_value(struct wbuf *b, gguf_type type, const gguf_wval *v, int depth,
                        attnd_err *err)
{
    uint8_t byte;
    switch (type) {
    case GGUF_TYPE_UINT8: wbuf_put(b, &v->v.u8, 1); break;
    case GGUF_TYPE_INT8: wbuf_put(b, &v->v.i8, 1); break;
    case GGUF_TYPE_UINT16: wbuf_put(b, &v->v.u16, 2); break;
    case GGUF_TYPE_INT16: wbuf_put(b, &v->v.i16, 2); break;
    case GGUF_TYPE_UINT32: wbuf_put(b, &v->v.u32, 4); break;
    case GGUF_TYPE_INT32: wbuf_put(b, &v->v.i32, 4); break;
    case GGUF_TYPE_FLOAT32: wbuf_put(b, &v->v.f32, 4); break;
    case GGUF_TYPE_BOOL: byte = v->v.b ? 1 : 0; wbuf_put(b, &byte, 1); break;
    case GGUF_TYPE_UINT64: wbuf_put(b, &v->v.u64, 8); break;
    case GGUF_TYPE_INT64: wbuf_put(b, &v->v.i64, 8); break;
    case GGUF_TYPE_FLOAT64: wbuf_put(b, &v->v.f64, 8); break;
    case GGUF_TYPE_STRING: wbuf_str(b, v->v.str.ptr, v->v.str.len); break;
    case GGUF_TYPE_ARRAY:
        return encode_array(b, v->v.arr.elem_type, v->v.arr.n, v->v.arr.data, depth, err);
    default:
        return attnd_err_set(err, ATTND_EINVAL, "gguf writer: unknown value type %u",
                             (unsigned)type);
    }
    return ATTND_OK;
}

/* Appends KEY and its TYPE tag to the metadata; the caller then encodes the
 * value and calls kv_end(), which keeps the entry or rolls it back. */
static int kv_begin(gguf_writer *w, const char *key, gguf_type type, size_t *mark,
                    attnd_err *err)
{
    size_t klen = strlen(key);
    if (klen == 0 || klen > GGUF_MAX_KEY_LEN)
        return attnd_err_set(err, ATTND_EINVAL, "gguf writer: bad key length %zu", klen);
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0)
            return attnd_err_set(err, ATTND_EINVAL, "gguf writer: key '%s' set twice", key);
    char **keys = realloc(w->keys, (size_t)(w->n_kv + 1) * sizeof *keys);
    if (!keys)
        return attnd_err_set(err, ATTND_ENOMEM, "gguf writer: out of memory");
    w->keys = keys;
    if (!(w->keys[w->n_kv] = strdup(key)))
        return attnd_err_set(err, ATTND_ENOMEM, "gguf writer: out of memory");
    *mark = w->kv.len;
    wbuf_str(&w->kv, key, klen);
    wbuf_u32(&w->kv, (uint32_t)type);
    return ATTND_OK;
}

static int kv_end(gguf_writer *w, size_t mark, int rc, attnd_err *err)
{
    if (rc == ATTND_OK && w->kv.oom)
        rc = attnd_err_set(err, ATTND_ENOMEM, "gguf writer: out of memory");
    if (rc != ATTND_OK) {
        w->kv.len = mark;
        w->kv.oom = false;
        free(w->keys[w->n_kv]);
        return rc;
    }
    w->n_kv++;
    return ATTND_OK;
}

int gguf_writer_set(gguf_writer *w, const char *key, const gguf_wval *v, attnd_err *err)
{
    if (strcmp(key, "general.alignment") == 0) {
        if (v->type != GGUF_TYPE_UINT32)
            return attnd_err_set(err, ATTND_EINVAL,
                                 "gguf writer: general.alignment must be uint32, is %s",
                                 gguf_type_name(v->type));
        /* What the reader accepts: never write a file we would refuse to load. */
        if (v->v.u32 < 8 || (v->v.u32 & (v->v.u32 - 1)) != 0)
            return attnd_err_set(err, ATTND_EINVAL,
                                 "gguf writer: general.alignment %u is not a power of two of "
                                 "at least 8",
                                 v->v.u32);
    }
    size_t mark;
    int rc = kv_begin(w, key, v->type, &mark, err);
    if (rc != ATTND_OK)
        return rc;
    rc = kv_end(w, mark, encode_value(&w->kv, v->type, v, 0, err), err);
    if (rc == ATTND_OK && strcmp(key, "general.alignment") == 0)
        w->alignment = v->v.u32;
    return rc;
}

int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t x, attnd_err *err)
{
    gguf_wval v = {.type = GGUF_TYPE_UINT32, .v.u32 = x};
    return gguf_writer_set(w, key, &v, err);
}

int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t x, attnd_err *err)
{
    gguf_wval v = {.type = GGUF_TYPE_INT32, .v.i32 = x};
    return gguf_writer_set(w, key, &v, err);
}

int gguf_writer_set_f32(gguf_writer *w, const char *key, float x, attnd_err *err)
{
    gguf_wval v = {.type = GGUF_TYPE_FLOAT32, .v.f32 = x};
    return gguf_writer_set(w, key, &v, err);
}

int gguf_writer_set_bool(gguf_writer *w, const char *key, bool x, attnd_err *err)
{
    gguf_wval v = {.type = GGUF_TYPE_BOOL, .v.b = x};
    return gguf_writer_set(w, key, &v, err);
}

int gguf_writer_set_str(gguf_writer *w, const char *key, const char *s, attnd_err *err)
{
    gguf_wval v = {.type = GGUF_TYPE_STRING, .v.str = {s, strlen(s)}};
    return gguf_writer_set(w, key, &v, err);
}

int gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_type elem_type, const void *data,
                        uint64_t n, attnd_err *err)
{
    gguf_wval v = {.type = GGUF_TYPE_ARRAY, .v.arr = {elem_type, n, data}};
    return gguf_writer_set(w, key, &v, err);
}

static int add_tensor(gguf_writer *w, const char *name, gguf_dtype type, uint32_t n_dims,
                      const uint64_t *ne, const void *data, gguf_fill_fn fill, void *ctx,
                      attnd_err *err)
{
    if (!gguf_dtype_known(type))
        return attnd_err_set(err, ATTND_EINVAL, "gguf writer: tensor '%s': unknown type %u",
                             name, (unsigned)type);
    if (n_dims == 0 || n_dims > GGUF_MAX_DIMS)
        return attnd_err_set(err, ATTND_EINVAL, "gguf writer: tensor '%s': %u dimensions",
                             name, n_dims);
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return attnd_err_set(err, ATTND_EINVAL, "gguf writer: tensor '%s' added twice", name);
    struct wtensor t = {.type = type, .n_dims = n_dims, .data = data, .fill = fill, .ctx = ctx};
    uint64_t rows = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] == 0 || (d > 0 && !attnd_ckd_mul(rows, t.ne[d], &rows)))
            return attnd_err_set(err, ATTND_EINVAL, "gguf writer: tensor '%s': bad shape", name);
    }
    uint64_t row_bytes;
    if (!gguf_dtype_row_bytes(type, t.ne[0], &row_bytes) ||
        !attnd_ckd_mul(row_bytes, rows, &t.nbytes))
        return attnd_err_set(err, ATTND_EINVAL,
                             "gguf writer: tensor '%s': row of %llu is not whole %s blocks",
                             name, (unsigned long long)t.ne[0], gguf_dtype_name(type));
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? w->cap_tensors * 2 : 16;
        struct wtensor *ts = realloc(w->tensors, cap * sizeof *ts);
        if (!ts)
            return attnd_err_set(err, ATTND_ENOMEM, "gguf writer: out of memory");
        w->tensors = ts;
        w->cap_tensors = cap;
    }
    if (!(t.name = strdup(name)))
        return attnd_err_set(err, ATTND_ENOMEM, "gguf writer: out of memory");
    w->tensors[w->n_tensors++] = t;
    return ATTND_OK;
}

int gguf_writer_add_tensor(gguf_writer *w, const char *name, gguf_dtype type, uint32_t n_dims,
                           const uint64_t *ne, const void *data, attnd_err *err)
{
    return add_tensor(w, name, type, n_dims, ne, data, NULL, NULL, err);
}

int gguf_writer_add_tensor_fn(gguf_writer *w, const char *name, gguf_dtype type,
                              uint32_t n_dims, const uint64_t *ne, gguf_fill_fn fill, void *ctx,
                              attnd_err *err)
{
    return add_tensor(w, name, type, n_dims, ne, NULL, fill, ctx, err);
}

/* Header, metadata and tensor infos, padded to the alignment. Also assigns
 * each tensor its data offset. */
static int build_head(gguf_writer *w, struct wbuf *h, attnd_err *err)
{
    wbuf_put(h, "GGUF", 4);
    wbuf_u32(h, w->version);
    wbuf_u64(h, (uint64_t)w->n_tensors);
    wbuf_u64(h, w->n_kv);
    wbuf_put(h, w->kv.p, w->kv.len);
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        struct wtensor *t = &w->tensors[i];
        wbuf_str(h, t->name, strlen(t->name));
        wbuf_u32(h, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            wbuf_u64(h, t->ne[d]);
        wbuf_u32(h, (uint32_t)t->type);
        t->offset = off;
        wbuf_u64(h, off);
        if (!attnd_ckd_add(off, t->nbytes, &off) || !attnd_ckd_align(off, w->alignment, &off))
            return attnd_err_set(err, ATTND_EINVAL, "gguf writer: data section overflows");
    }
    uint64_t padded = h->len;
    attnd_ckd_align(h->len, w->alignment, &padded);
    while (h->len < padded) {
        size_t n = (size_t)(padded - h->len);
        wbuf_put(h, zeros, n < sizeof zeros ? n : sizeof zeros);
        if (h->oom)
            break;
    }
    if (h->oom)
        return attnd_err_set(err, ATTND_ENOMEM, "gguf writer: out of memory");
    return ATTND_OK;
}

/* Sink for the written bytes: a FILE or a memory buffer. */
struct sink {
    FILE *fp;
    struct wbuf *mem;
    const char *path;
};

static int sink_put(struct sink *s, const void *p, size_t n, attnd_err *err)
{
    if (s->mem) {
        wbuf_put(s->mem, p, n);
        return s->mem->oom ? attnd_err_set(err, ATTND_ENOMEM, "gguf writer: out of memory")
                           : ATTND_OK;
    }
    if (n && fwrite(p, 1, n, s->fp) != n)
        return attnd_err_set(err, ATTND_EIO, "%s: write failed: %s", s->path, strerror(errno));
    return ATTND_OK;
}

static int write_all(gguf_writer *w, struct sink *s, attnd_err *err)
{
    struct wbuf head = {0};
    int rc = build_head(w, &head, err);
    if (rc == ATTND_OK)
        rc = sink_put(s, head.p, head.len, err);
    free(head.p);
    for (size_t i = 0; rc == ATTND_OK && i < w->n_tensors; i++) {
        struct wtensor *t = &w->tensors[i];
        if (t->nbytes > SIZE_MAX)
            return attnd_err_set(err, ATTND_ENOMEM, "gguf writer: tensor '%s' too large", t->name);
        if (t->fill) {
            void *buf = malloc(t->nbytes ? (size_t)t->nbytes : 1);
            if (!buf)
                return attnd_err_set(err, ATTND_ENOMEM, "gguf writer: tensor '%s': out of memory",
                                     t->name);
            rc = t->fill(t->ctx, buf, t->nbytes, err);
            if (rc == ATTND_OK)
                rc = sink_put(s, buf, (size_t)t->nbytes, err);
            free(buf);
        } else if (t->data) {
            rc = sink_put(s, t->data, (size_t)t->nbytes, err);
        } else {
            rc = attnd_err_set(err, ATTND_EINVAL, "gguf writer: tensor '%s' has no data", t->name);
        }
        uint64_t end = t->offset + t->nbytes, padded = end;
        attnd_ckd_align(end, w->alignment, &padded);
        /* No padding after the last tensor: the file ends with its data. */
        if (i + 1 == w->n_tensors)
            padded = end;
        while (rc == ATTND_OK && end < padded) {
            size_t n = (size_t)(padded - end) < sizeof zeros ? (size_t)(padded - end) : sizeof zeros;
            rc = sink_put(s, zeros, n, err);
            end += n;
        }
    }
    return rc;
}

int gguf_writer_write(gguf_writer *w, const char *path, attnd_err *err)
{
    struct sink s = {.fp = fopen(path, "wb"), .path = path};
    if (!s.fp)
        return attnd_err_set(err, ATTND_EIO, "%s: cannot create: %s", path, strerror(errno));
    int rc = write_all(w, &s, err);
    if (fclose(s.fp) != 0 && rc == ATTND_OK)
        rc = attnd_err_set(err, ATTND_EIO, "%s: write failed: %s", path, strerror(errno));
    if (rc != ATTND_OK)
        remove(path);
    return rc;
}

int gguf_writer_write_mem(gguf_writer *w, void **buf, size_t *len, attnd_err *err)
{
    struct wbuf mem = {0};
    struct sink s = {.mem = &mem, .path = "(memory)"};
    int rc = write_all(w, &s, err);
    if (rc != ATTND_OK) {
        free(mem.p);
        return rc;
    }
    *buf = mem.p;
    *len = mem.len;
    return ATTND_OK;
}

/* Encodes the body of reader value V (no type tag) as the writer would. */
static int encode_copy(struct wbuf *b, const gguf_value *v, int depth, attnd_err *err)
{
    gguf_type t = gguf_value_type(v);
    uint64_t u;
    int64_t i;
    double f;
    bool bl;
    gguf_str s;
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        gguf_value_u64(v, &u);
        wbuf_put(b, &u, gguf_type_scalar_size(t)); /* little-endian: low bytes first */
        return ATTND_OK;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        gguf_value_i64(v, &i);
        wbuf_put(b, &i, gguf_type_scalar_size(t));
        return ATTND_OK;
    case GGUF_TYPE_FLOAT32: {
        gguf_value_f64(v, &f);
        float x = (float)f;
        wbuf_put(b, &x, 4);
        return ATTND_OK;
    }
    case GGUF_TYPE_FLOAT64:
        gguf_value_f64(v, &f);
        wbuf_put(b, &f, 8);
        return ATTND_OK;
    case GGUF_TYPE_BOOL: {
        gguf_value_bool(v, &bl);
        uint8_t byte = bl ? 1 : 0;
        wbuf_put(b, &byte, 1);
        return ATTND_OK;
    }
    case GGUF_TYPE_STRING:
        gguf_value_str(v, &s);
        wbuf_str(b, s.ptr, s.len);
        return ATTND_OK;
    case GGUF_TYPE_ARRAY:
        break;
    default:
        return attnd_err_set(err, ATTND_EINVAL, "gguf writer: cannot copy value type %u",
                             (unsigned)t);
    }
    if (depth >= GGUF_MAX_ARRAY_DEPTH)
        return attnd_err_set(err, ATTND_EINVAL, "gguf writer: arrays nested too deep");
    gguf_type elem = gguf_array_elem_type(v);
    uint64_t n = gguf_array_len(v);
    wbuf_u32(b, (uint32_t)elem);
    wbuf_u64(b, n);
    if (elem == GGUF_TYPE_STRING || elem == GGUF_TYPE_ARRAY) {
        for (uint64_t k = 0; k < n; k++) {
            int rc = encode_copy(b, gguf_array_item(v, k), depth + 1, err);
            if (rc != ATTND_OK)
                return rc;
        }
    } else if (elem == GGUF_TYPE_BOOL) {
        const uint8_t *raw = gguf_array_data(v);
        for (uint64_t k = 0; k < n; k++) {
            uint8_t byte = raw[k] ? 1 : 0;
            wbuf_put(b, &byte, 1);
        }
    } else {
        wbuf_put(b, gguf_array_data(v), (size_t)(n * gguf_type_scalar_size(elem)));
    }
    return ATTND_OK;
}

int gguf_writer_copy(gguf_writer *w, const gguf_file *src, const char *key, attnd_err *err)
{
    const gguf_value *v = gguf_get(src, key);
    if (!v)
        return attnd_err_set(err, ATTND_ENOTFOUND, "%s: metadata '%s' is missing",
                             gguf_path(src), key);
    if (strcmp(key, "general.alignment") == 0)
        return attnd_err_set(err, ATTND_EINVAL, "gguf writer: set general.alignment explicitly");
    size_t mark;
    int rc = kv_begin(w, key, gguf_value_type(v), &mark, err);
    if (rc != ATTND_OK)
        return rc;
    return kv_end(w, mark, encode_copy(&w->kv, v, 0, err), err);
}
