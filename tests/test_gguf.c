/* test_gguf.c - the GGUF reader and writer: exact round trips of every
 * metadata and tensor type, and a long list of malformed files that must each
 * be rejected with a message (and, under ASan/UBSan, without a report). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnd_half.h"
#include "quant.h"
#include "gguf.h"
#include "hparams.h"
#include "test_util.h"

/* ------------------------------------------------------------ raw builder */

/* Hand-encodes GGUF bytes, so tests can write what the writer never would. */
struct raw {
    uint8_t *p;
    size_t len, cap;
};

static void raw_put(struct raw *r, const void *src, size_t n)
{
    if (r->len + n > r->cap) {
        r->cap = (r->len + n) * 2 + 64;
        r->p = realloc(r->p, r->cap);
        cr_assert(r->p);
    }
    memcpy(r->p + r->len, src, n);
    r->len += n;
}
static void raw_u32(struct raw *r, uint32_t x) { raw_put(r, &x, 4); }
static void raw_u64(struct raw *r, uint64_t x) { raw_put(r, &x, 8); }
static void raw_str(struct raw *r, const char *s)
{
    raw_u64(r, strlen(s));
    raw_put(r, s, strlen(s));
}
static void raw_header(struct raw *r, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    raw_put(r, "GGUF", 4);
    raw_u32(r, version);
    raw_u64(r, n_tensors);
    raw_u64(r, n_kv);
}
static void raw_pad(struct raw *r, size_t align)
{
    while (r->len % align)
        raw_put(r, "", 1);
}

/* Parses BUF (copied to an exact-size heap block so ASan sees any over-read)
 * and returns the status; fills err. */
static int parse_mem(const void *buf, size_t len, attnd_err *err)
{
    void *copy = malloc(len ? len : 1);
    cr_assert(copy);
    if (len)
        memcpy(copy, buf, len);
    gguf_file *f = NULL;
    int rc = gguf_open_mem(copy, len, "t.gguf", &f, err);
    if (rc == ATTND_OK)
        gguf_close(f);
    else
        cr_assert_null(f);
    free(copy);
    return rc;
}

static void expect_reject(struct raw *r, int code, const char *needle)
{
    attnd_err err = {0};
    int rc = parse_mem(r->p, r->len, &err);
    cr_expect_eq(rc, code, "expected code %d, got %d (%s)", code, rc, err.msg);
    cr_expect(strstr(err.msg, needle) != NULL, "message '%s' lacks '%s'", err.msg, needle);
    cr_expect(strstr(err.msg, "t.gguf") != NULL, "message '%s' does not name the file", err.msg);
    free(r->p);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------ round trip */

static const uint64_t k_u32s[] = {0, 1, 0xffffffffu};

static gguf_writer *build_all_types(uint32_t version, uint32_t alignment, uint8_t *tdata,
                                    size_t tdata_len)
{
    attnd_err err = {0};
    gguf_writer *w = gguf_writer_new();
    cr_assert(w);
    cr_assert_eq(gguf_writer_set_version(w, version, &err), ATTND_OK);
    gguf_wval v;
#define SET(T, field, val)                                                                    \
    v = (gguf_wval){.type = T};                                                                \
    v.v.field = val;                                                                           \
    cr_assert_eq(gguf_writer_set(w, "k." #field, &v, &err), ATTND_OK, "%s", err.msg)
    SET(GGUF_TYPE_UINT8, u8, 250);
    SET(GGUF_TYPE_INT8, i8, -100);
    SET(GGUF_TYPE_UINT16, u16, 65000);
    SET(GGUF_TYPE_INT16, i16, -32000);
    SET(GGUF_TYPE_UINT32, u32, 4000000000u);
    SET(GGUF_TYPE_INT32, i32, -2000000000);
    SET(GGUF_TYPE_FLOAT32, f32, 3.25f);
    SET(GGUF_TYPE_BOOL, b, true);
    SET(GGUF_TYPE_UINT64, u64, 0xfedcba9876543210ull);
    SET(GGUF_TYPE_INT64, i64, -1234567890123ll);
    SET(GGUF_TYPE_FLOAT64, f64, -1.0e300);
#undef SET
    v = (gguf_wval){.type = GGUF_TYPE_STRING, .v.str = {"a\0b\xe2\x96\x81", 6}};
    cr_assert_eq(gguf_writer_set(w, "k.str", &v, &err), ATTND_OK);
    cr_assert_eq(gguf_writer_set_str(w, "k.empty", "", &err), ATTND_OK);

    /* Arrays of every scalar type. */
    uint8_t a8[3] = {1, 2, 255};
    int16_t a16[3] = {-1, 0, 32767};
    uint32_t a32[3] = {7, 8, 9};
    int32_t ai32[2] = {-5, 5};
    float af[3] = {0.5f, -2.0f, 1e-30f};
    bool ab[4] = {true, false, true, true};
    uint64_t a64[2] = {UINT64_MAX, 0};
    int64_t ai64[2] = {INT64_MIN, INT64_MAX};
    double ad[2] = {M_PI, -0.0};
    int8_t ai8[2] = {-128, 127};
    uint16_t au16[2] = {0, 65535};
    cr_assert_eq(gguf_writer_set_arr(w, "a.u8", GGUF_TYPE_UINT8, a8, 3, &err), ATTND_OK);
    cr_assert_eq(gguf_writer_set_arr(w, "a.i8", GGUF_TYPE_INT8, ai8, 2, &err), ATTND_OK);
    cr_assert_eq(gguf_writer_set_arr(w, "a.u16", GGUF_TYPE_UINT16, au16, 2, &err), ATTND_OK);
    cr_assert_eq(gguf_writer_set_arr(w, "a.i16", GGUF_TYPE_INT16, a16, 3, &err), ATTND_OK);
    cr_assert_eq(gguf_writer_set_arr(w, "a.u32", GGUF_TYPE_UINT32, a32, 3, &err), ATTND_OK);
    cr_assert_eq(gguf_writer_set_arr(w, "a.i32", GGUF_TYPE_INT32, ai32, 2, &err), ATTND_OK);
    cr_assert_eq(gguf_writer_set_arr(w, "a.f32", GGUF_TYPE_FLOAT32, af, 3, &err), ATTND_OK);
    cr_assert_eq(gguf_writer_set_arr(w, "a.bool", GGUF_TYPE_BOOL, ab, 4, &err), ATTND_OK);
    cr_assert_eq(gguf_writer_set_arr(w, "a.u64", GGUF_TYPE_UINT64, a64, 2, &err), ATTND_OK);
    cr_assert_eq(gguf_writer_set_arr(w, "a.i64", GGUF_TYPE_INT64, ai64, 2, &err), ATTND_OK);
    cr_assert_eq(gguf_writer_set_arr(w, "a.f64", GGUF_TYPE_FLOAT64, ad, 2, &err), ATTND_OK);
    cr_assert_eq(gguf_writer_set_arr(w, "a.empty", GGUF_TYPE_UINT32, NULL, 0, &err), ATTND_OK);
    gguf_str strs[3] = {{"x", 1}, {"", 0}, {"hello world", 11}};
    cr_assert_eq(gguf_writer_set_arr(w, "a.str", GGUF_TYPE_STRING, strs, 3, &err), ATTND_OK);

    /* Nested: [[7,8,9],[]] of uint32, [["x","","hello world"]], and a third level. */
    gguf_wval inner[2] = {
        {.type = GGUF_TYPE_ARRAY, .v.arr = {GGUF_TYPE_UINT32, 3, a32}},
        {.type = GGUF_TYPE_ARRAY, .v.arr = {GGUF_TYPE_UINT32, 0, NULL}},
    };
    cr_assert_eq(gguf_writer_set_arr(w, "a.nested", GGUF_TYPE_ARRAY, inner, 2, &err), ATTND_OK);
    gguf_wval inner_s = {.type = GGUF_TYPE_ARRAY, .v.arr = {GGUF_TYPE_STRING, 3, strs}};
    cr_assert_eq(gguf_writer_set_arr(w, "a.nested_str", GGUF_TYPE_ARRAY, &inner_s, 1, &err),
                 ATTND_OK);
    gguf_wval lvl2 = {.type = GGUF_TYPE_ARRAY, .v.arr = {GGUF_TYPE_ARRAY, 2, inner}};
    cr_assert_eq(gguf_writer_set_arr(w, "a.deep", GGUF_TYPE_ARRAY, &lvl2, 1, &err), ATTND_OK);
    if (alignment != GGUF_DEFAULT_ALIGNMENT)
        cr_assert_eq(gguf_writer_set_u32(w, "general.alignment", alignment, &err), ATTND_OK);

    /* One tensor of every type, shapes of 1 to 4 dims, data a byte pattern. */
    static const struct {
        const char *name;
        gguf_dtype type;
        uint32_t n_dims;
        uint64_t ne[4];
    } ts[] = {
        {"t.f32", GGUF_DTYPE_F32, 2, {3, 5}},       {"t.f16", GGUF_DTYPE_F16, 1, {7}},
        {"t.bf16", GGUF_DTYPE_BF16, 3, {2, 3, 4}},  {"t.q8_0", GGUF_DTYPE_Q8_0, 2, {64, 3}},
        {"t.q4_0", GGUF_DTYPE_Q4_0, 4, {32, 1, 2, 1}}, {"t.q4_k", GGUF_DTYPE_Q4_K, 2, {256, 2}},
        {"t.q6_k", GGUF_DTYPE_Q6_K, 1, {512}},
    };
    size_t off = 0;
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        uint64_t bytes, rows = ts[i].ne[1] * (ts[i].n_dims > 2 ? ts[i].ne[2] : 1) *
                                   (ts[i].n_dims > 3 ? ts[i].ne[3] : 1);
        if (ts[i].n_dims == 1)
            rows = 1;
        cr_assert(gguf_dtype_row_bytes(ts[i].type, ts[i].ne[0], &bytes));
        bytes *= rows;
        cr_assert(off + bytes <= tdata_len);
        cr_assert_eq(gguf_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne,
                                            tdata + off, &err),
                     ATTND_OK, "%s", err.msg);
        off += bytes;
    }
    return w;
}

static void check_all_types(const gguf_file *f, const uint8_t *tdata, bool mapped)
{
    uint64_t u;
    int64_t i;
    double d;
    bool b;
    gguf_str s;
    cr_assert(gguf_value_u64(gguf_get(f, "k.u8"), &u) && u == 250);
    cr_assert(gguf_value_i64(gguf_get(f, "k.i8"), &i) && i == -100);
    cr_assert(gguf_value_u64(gguf_get(f, "k.u16"), &u) && u == 65000);
    cr_assert(gguf_value_i64(gguf_get(f, "k.i16"), &i) && i == -32000);
    cr_assert(gguf_value_u64(gguf_get(f, "k.u32"), &u) && u == 4000000000u);
    cr_assert(gguf_value_i64(gguf_get(f, "k.i32"), &i) && i == -2000000000);
    cr_assert(gguf_value_f64(gguf_get(f, "k.f32"), &d) && d == 3.25);
    cr_assert(gguf_value_bool(gguf_get(f, "k.b"), &b) && b);
    cr_assert(gguf_value_u64(gguf_get(f, "k.u64"), &u) && u == 0xfedcba9876543210ull);
    cr_assert(gguf_value_i64(gguf_get(f, "k.i64"), &i) && i == -1234567890123ll);
    cr_assert(gguf_value_f64(gguf_get(f, "k.f64"), &d) && d == -1.0e300);
    cr_assert(gguf_value_str(gguf_get(f, "k.str"), &s) && s.len == 6 &&
              memcmp(s.ptr, "a\0b\xe2\x96\x81", 6) == 0);
    cr_assert(gguf_value_str(gguf_get(f, "k.empty"), &s) && s.len == 0);
    /* Types are kept exactly, and conversions refuse what does not fit. */
    cr_assert_eq(gguf_value_type(gguf_get(f, "k.i16")), GGUF_TYPE_INT16);
    cr_assert_not(gguf_value_u64(gguf_get(f, "k.i8"), &u));
    cr_assert_not(gguf_value_i64(gguf_get(f, "k.u64"), &i));
    cr_assert_not(gguf_value_str(gguf_get(f, "k.u8"), &s));
    cr_assert_not(gguf_value_bool(gguf_get(f, "k.u8"), &b));

    const gguf_value *a = gguf_get(f, "a.u8");
    cr_assert(gguf_array_len(a) == 3 && gguf_array_elem_type(a) == GGUF_TYPE_UINT8);
    cr_assert(gguf_array_u64(a, 2, &u) && u == 255);
    cr_assert_not(gguf_array_u64(a, 3, &u));
    cr_assert(gguf_array_i64(gguf_get(f, "a.i8"), 0, &i) && i == -128);
    cr_assert(gguf_array_u64(gguf_get(f, "a.u16"), 1, &u) && u == 65535);
    cr_assert(gguf_array_i64(gguf_get(f, "a.i16"), 0, &i) && i == -1);
    cr_assert(gguf_array_u64(gguf_get(f, "a.u32"), 2, &u) && u == 9);
    cr_assert(gguf_array_i64(gguf_get(f, "a.i32"), 0, &i) && i == -5);
    cr_assert(gguf_array_f64(gguf_get(f, "a.f32"), 2, &d) && (float)d == 1e-30f);
    const uint8_t *bools = gguf_array_data(gguf_get(f, "a.bool"));
    cr_assert(bools && bools[0] == 1 && bools[1] == 0 && bools[3] == 1);
    cr_assert(gguf_array_u64(gguf_get(f, "a.u64"), 0, &u) && u == UINT64_MAX);
    cr_assert(gguf_array_i64(gguf_get(f, "a.i64"), 0, &i) && i == INT64_MIN);
    cr_assert(gguf_array_f64(gguf_get(f, "a.f64"), 0, &d) && d == M_PI);
    cr_assert_eq(gguf_array_len(gguf_get(f, "a.empty")), 0);
    const gguf_value *as = gguf_get(f, "a.str");
    cr_assert(gguf_array_str(as, 2, &s) && s.len == 11 && memcmp(s.ptr, "hello world", 11) == 0);
    cr_assert(gguf_array_str(as, 1, &s) && s.len == 0);
    cr_assert_null(gguf_array_data(as));

    const gguf_value *n = gguf_get(f, "a.nested");
    cr_assert(gguf_array_len(n) == 2 && gguf_array_elem_type(n) == GGUF_TYPE_ARRAY);
    cr_assert(gguf_array_u64(gguf_array_item(n, 0), 1, &u) && u == 8);
    cr_assert_eq(gguf_array_len(gguf_array_item(n, 1)), 0);
    const gguf_value *ns = gguf_array_item(gguf_get(f, "a.nested_str"), 0);
    cr_assert(gguf_array_str(ns, 2, &s) && s.len == 11);
    const gguf_value *deep = gguf_array_item(gguf_array_item(gguf_get(f, "a.deep"), 0), 0);
    cr_assert(gguf_array_u64(deep, 0, &u) && u == 7);

    cr_assert_eq(gguf_tensor_count(f), 7);
    size_t off = 0;
    for (size_t k = 0; k < gguf_tensor_count(f); k++) {
        const gguf_tensor *t = gguf_tensor_at(f, k);
        if (mapped) /* a mapping or copy starts on a page: file alignment is address alignment */
            cr_assert_eq((uintptr_t)t->data % gguf_alignment(f), 0, "tensor %s misaligned",
                         t->name);
        cr_assert_eq(memcmp(t->data, tdata + off, t->nbytes), 0, "tensor %s data differs", t->name);
        cr_assert_eq(gguf_tensor_find(f, t->name), t);
        off += t->nbytes;
    }
    const gguf_tensor *t = gguf_tensor_find(f, "t.bf16");
    cr_assert(t && t->type == GGUF_DTYPE_BF16 && t->n_dims == 3 && t->ne[2] == 4 &&
              t->n_elems == 24 && t->nbytes == 48);
    t = gguf_tensor_find(f, "t.q6_k");
    cr_assert(t && t->nbytes == 2 * 210);
    cr_assert_null(gguf_tensor_find(f, "t.none"));
    (void)k_u32s;
}

Test(gguf, round_trip_every_type_file_and_memory)
{
    static uint8_t tdata[8192];
    for (size_t i = 0; i < sizeof tdata; i++)
        tdata[i] = (uint8_t)(i * 131 + 7);
    for (uint32_t version = 2; version <= 3; version++) {
        /* The default (32), and every other alignment the writer takes up to 64. */
        static const uint32_t aligns[] = {32, 8, 16, 64};
        for (size_t ai = 0; ai < sizeof aligns / sizeof aligns[0]; ai++) {
            uint32_t a = aligns[ai];
            gguf_writer *w = build_all_types(version, a, tdata, sizeof tdata);
            attnd_err err = {0};
            char *path = test_tmp_path("roundtrip.gguf");
            cr_assert_eq(gguf_writer_write(w, path, &err), ATTND_OK, "%s", err.msg);
            void *mem;
            size_t len;
            cr_assert_eq(gguf_writer_write_mem(w, &mem, &len, &err), ATTND_OK);
            gguf_writer_free(w);

            gguf_file *f;
            /* mapped, and copied into memory that starts on a huge page */
            for (int how = GGUF_LOAD_MAP; how <= GGUF_LOAD_COPY; how++) {
                cr_assert_eq(gguf_open_as(path, (gguf_load)how, &f, &err), ATTND_OK, "%s",
                             err.msg);
                cr_assert_eq(gguf_version(f), version);
                cr_assert_eq(gguf_alignment(f), a);
                cr_assert_eq(gguf_file_size(f), len);
                check_all_types(f, tdata, true);
                gguf_close(f);
            }

            size_t flen;
            char *disk = test_read_file(path, &flen);
            cr_assert(disk && flen == len && memcmp(disk, mem, len) == 0,
                      "file and memory images differ");
            free(disk);
            cr_assert_eq(gguf_open_mem(mem, len, "mem", &f, &err), ATTND_OK, "%s", err.msg);
            check_all_types(f, tdata, false);
            gguf_close(f);
            free(mem);
            remove(path);
            free(path);
        }
    }
}

Test(gguf, typed_getters_name_the_key)
{
    attnd_err err = {0};
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_u32(w, "x.u32", 5, &err);
    gguf_writer_set_i32(w, "x.neg", -5, &err);
    gguf_writer_set_str(w, "x.s", "str", &err);
    gguf_writer_set_f32(w, "x.f", 0.5f, &err);
    gguf_writer_set_bool(w, "x.b", true, &err);
    void *mem;
    size_t len;
    cr_assert_eq(gguf_writer_write_mem(w, &mem, &len, &err), ATTND_OK);
    gguf_writer_free(w);
    gguf_file *f;
    cr_assert_eq(gguf_open_mem(mem, len, "g.gguf", &f, &err), ATTND_OK, "%s", err.msg);
    uint32_t u;
    float x;
    bool b;
    gguf_str s;
    cr_assert_eq(gguf_get_u32(f, "x.u32", &u, &err), ATTND_OK);
    cr_assert_eq(u, 5);
    cr_assert_eq(gguf_get_u32(f, "x.neg", &u, &err), ATTND_EFORMAT);
    cr_assert(strstr(err.msg, "x.neg"));
    cr_assert_eq(gguf_get_u32(f, "x.missing", &u, &err), ATTND_ENOTFOUND);
    cr_assert(strstr(err.msg, "x.missing") && strstr(err.msg, "g.gguf"));
    cr_assert_eq(gguf_get_u32(f, "x.s", &u, &err), ATTND_EFORMAT);
    cr_assert_eq(gguf_get_f32(f, "x.f", &x, &err), ATTND_OK);
    cr_assert_eq(x, 0.5f);
    cr_assert_eq(gguf_get_f32(f, "x.s", &x, &err), ATTND_EFORMAT);
    cr_assert_eq(gguf_get_bool(f, "x.b", &b, &err), ATTND_OK);
    cr_assert_eq(gguf_get_bool(f, "x.u32", &b, &err), ATTND_EFORMAT);
    cr_assert_eq(gguf_get_str(f, "x.s", &s, &err), ATTND_OK);
    cr_assert_eq(gguf_get_str(f, "x.b", &s, &err), ATTND_EFORMAT);
    gguf_close(f);
    free(mem);
}

Test(gguf, writer_refuses_bad_input)
{
    attnd_err err = {0};
    gguf_writer *w = gguf_writer_new();
    uint64_t ne[2] = {33, 2};
    cr_assert_eq(gguf_writer_set_u32(w, "a", 1, &err), ATTND_OK);
    cr_assert_eq(gguf_writer_set_u32(w, "a", 2, &err), ATTND_EINVAL);
    cr_assert_eq(gguf_writer_set_u32(w, "", 2, &err), ATTND_EINVAL);
    /* The writer refuses every alignment the reader would (and 24: not a power of two). */
    static const uint32_t bad_align[] = {0, 1, 2, 4, 7, 12, 24};
    for (size_t i = 0; i < sizeof bad_align / sizeof bad_align[0]; i++) {
        cr_assert_eq(gguf_writer_set_u32(w, "general.alignment", bad_align[i], &err),
                     ATTND_EINVAL, "alignment %u", bad_align[i]);
        cr_assert(strstr(err.msg, "general.alignment"), "%s", err.msg);
    }
    cr_assert_eq(gguf_writer_set_i32(w, "general.alignment", 32, &err), ATTND_EINVAL);
    cr_assert(strstr(err.msg, "must be uint32"), "%s", err.msg);
    cr_assert_eq(gguf_writer_set_version(w, 1, &err), ATTND_EINVAL);
    cr_assert_eq(gguf_writer_add_tensor(w, "q", GGUF_DTYPE_Q8_0, 2, ne, "", &err), ATTND_EINVAL);
    cr_assert(strstr(err.msg, "q"));
    cr_assert_eq(gguf_writer_add_tensor(w, "z", (gguf_dtype)99, 2, ne, "", &err), ATTND_EINVAL);
    cr_assert_eq(gguf_writer_add_tensor(w, "d", GGUF_DTYPE_F32, 5, ne, "", &err), ATTND_EINVAL);
    float data[66] = {0};
    cr_assert_eq(gguf_writer_add_tensor(w, "ok", GGUF_DTYPE_F32, 2, ne, data, &err), ATTND_OK);
    cr_assert_eq(gguf_writer_add_tensor(w, "ok", GGUF_DTYPE_F32, 2, ne, data, &err), ATTND_EINVAL);
    gguf_writer_free(w);
}

/* ------------------------------------------------------------ malformed files */

/* A small but complete model image used for truncation: keys of several
 * types, an array of strings, and three tensors. */
static void *small_model(size_t *len)
{
    attnd_err err = {0};
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama", &err);
    gguf_writer_set_u32(w, "llama.block_count", 1, &err);
    gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f, &err);
    gguf_str toks[4] = {{"<unk>", 5}, {"<s>", 3}, {"</s>", 4}, {"a", 1}};
    gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, toks, 4, &err);
    gguf_wval inner = {.type = GGUF_TYPE_ARRAY, .v.arr = {GGUF_TYPE_STRING, 2, toks}};
    gguf_writer_set_arr(w, "x.nested", GGUF_TYPE_ARRAY, &inner, 1, &err);
    static float a[8 * 4], b[8];
    static uint8_t q[34 * 2];
    uint64_t ne_a[2] = {8, 4}, ne_b[1] = {8}, ne_q[2] = {32, 2};
    gguf_writer_add_tensor(w, "token_embd.weight", GGUF_DTYPE_F32, 2, ne_a, a, &err);
    gguf_writer_add_tensor(w, "output_norm.weight", GGUF_DTYPE_F32, 1, ne_b, b, &err);
    gguf_writer_add_tensor(w, "q.weight", GGUF_DTYPE_Q8_0, 2, ne_q, q, &err);
    void *mem;
    cr_assert_eq(gguf_writer_write_mem(w, &mem, len, &err), ATTND_OK, "%s", err.msg);
    gguf_writer_free(w);
    return mem;
}

Test(gguf_malformed, truncated_at_every_offset)
{
    size_t len;
    uint8_t *img = small_model(&len);
    attnd_err err = {0};
    cr_assert_eq(parse_mem(img, len, &err), ATTND_OK, "%s", err.msg);
    for (size_t cut = 0; cut < len; cut++) {
        err.msg[0] = '\0';
        int rc = parse_mem(img, cut, &err);
        cr_assert_neq(rc, ATTND_OK, "truncation at %zu of %zu accepted", cut, len);
        cr_assert(err.msg[0] != '\0' && strstr(err.msg, "t.gguf"), "no message at cut %zu", cut);
    }
    /* The same through the file path, at a few offsets. */
    char *path = test_tmp_path("trunc.gguf");
    for (size_t cut = 0; cut < len; cut += len / 7 + 1) {
        FILE *fp = fopen(path, "wb");
        cr_assert(fp);
        fwrite(img, 1, cut, fp);
        fclose(fp);
        gguf_file *f = NULL;
        cr_assert_neq(gguf_open(path, &f, &err), ATTND_OK);
        cr_assert_null(f);
        cr_assert(strstr(err.msg, path), "'%s' does not name the file", err.msg);
    }
    remove(path);
    free(path);
    free(img);
}

Test(gguf_malformed, every_single_byte_corruption_is_safe)
{
    /* Not every corruption is detectable (a changed tensor byte is just data),
     * but none may crash, hang or read out of bounds. */
    size_t len;
    uint8_t *img = small_model(&len);
    attnd_err err;
    for (size_t i = 0; i < len; i++) {
        uint8_t saved = img[i];
        static const uint8_t vals[] = {0x00, 0xff, 0x7f, 0x80};
        for (size_t k = 0; k < sizeof vals; k++) {
            img[i] = vals[k];
            parse_mem(img, len, &err);
        }
        img[i] = saved;
    }
    free(img);
}

Test(gguf_malformed, header)
{
    struct raw r = {0};
    raw_put(&r, "GGUX", 4);
    raw_u32(&r, 3);
    raw_u64(&r, 0);
    raw_u64(&r, 0);
    expect_reject(&r, ATTND_EFORMAT, "bad magic");
    raw_header(&r, 1, 0, 0);
    expect_reject(&r, ATTND_EUNSUPPORTED, "version 1");
    raw_header(&r, 4, 0, 0);
    expect_reject(&r, ATTND_EUNSUPPORTED, "version 4");
    raw_header(&r, 0x03000000u, 0, 0);
    expect_reject(&r, ATTND_EUNSUPPORTED, "big-endian");
    raw_put(&r, "GGUF", 4);
    expect_reject(&r, ATTND_EFORMAT, "header");
    raw_header(&r, 3, 0, 0); /* empty but valid */
    attnd_err err = {0};
    cr_assert_eq(parse_mem(r.p, r.len, &err), ATTND_OK, "%s", err.msg);
    free(r.p);
}

Test(gguf_malformed, huge_counts_and_lengths)
{
    struct raw r = {0};
    raw_header(&r, 3, 0, UINT64_MAX);
    expect_reject(&r, ATTND_EFORMAT, "metadata key count");
    raw_header(&r, 3, 1ull << 62, 0);
    expect_reject(&r, ATTND_EFORMAT, "tensor count");
    raw_header(&r, 3, 0, 1);
    raw_u64(&r, UINT64_MAX); /* key length */
    raw_u64(&r, 0);
    expect_reject(&r, ATTND_EFORMAT, "string length");
    raw_header(&r, 3, 0, 1);
    raw_str(&r, "k");
    raw_u32(&r, GGUF_TYPE_STRING);
    raw_u64(&r, 1ull << 40);
    expect_reject(&r, ATTND_EFORMAT, "metadata 'k'");
    /* Scalar array whose byte size overflows 64 bits. */
    raw_header(&r, 3, 0, 1);
    raw_str(&r, "arr");
    raw_u32(&r, GGUF_TYPE_ARRAY);
    raw_u32(&r, GGUF_TYPE_UINT64);
    raw_u64(&r, 1ull << 61);
    expect_reject(&r, ATTND_EFORMAT, "overflows");
    /* Scalar array larger than the file. */
    raw_header(&r, 3, 0, 1);
    raw_str(&r, "arr");
    raw_u32(&r, GGUF_TYPE_ARRAY);
    raw_u32(&r, GGUF_TYPE_UINT32);
    raw_u64(&r, 1000);
    expect_reject(&r, ATTND_EFORMAT, "metadata 'arr'");
    /* Array of strings with a count far above what the bytes could hold:
     * must fail before allocating. */
    raw_header(&r, 3, 0, 1);
    raw_str(&r, "arr");
    raw_u32(&r, GGUF_TYPE_ARRAY);
    raw_u32(&r, GGUF_TYPE_STRING);
    raw_u64(&r, UINT64_MAX / 4);
    expect_reject(&r, ATTND_EFORMAT, "array element count");
    /* Key longer than the spec allows. */
    raw_header(&r, 3, 0, 1);
    raw_u64(&r, 70000);
    for (int i = 0; i < 70000; i++)
        raw_put(&r, "k", 1);
    raw_u32(&r, GGUF_TYPE_UINT8);
    raw_put(&r, "\x01", 1);
    expect_reject(&r, ATTND_EFORMAT, "key is empty, longer");
}

Test(gguf_malformed, unknown_types_and_nesting)
{
    struct raw r = {0};
    raw_header(&r, 3, 0, 1);
    raw_str(&r, "k");
    raw_u32(&r, 13);
    raw_u32(&r, 0);
    expect_reject(&r, ATTND_EFORMAT, "unknown value type 13");
    raw_header(&r, 3, 0, 1);
    raw_str(&r, "k");
    raw_u32(&r, GGUF_TYPE_ARRAY);
    raw_u32(&r, 99);
    raw_u64(&r, 0);
    expect_reject(&r, ATTND_EFORMAT, "unknown array element type 99");
    /* Arrays nested 100 deep: refused, no stack exhaustion. */
    raw_header(&r, 3, 0, 1);
    raw_str(&r, "k");
    raw_u32(&r, GGUF_TYPE_ARRAY);
    for (int i = 0; i < 100; i++) {
        raw_u32(&r, GGUF_TYPE_ARRAY);
        raw_u64(&r, 1);
    }
    raw_u32(&r, GGUF_TYPE_UINT8);
    raw_u64(&r, 0);
    expect_reject(&r, ATTND_EUNSUPPORTED, "nested deeper");
    /* Duplicate key. */
    raw_header(&r, 3, 0, 2);
    for (int i = 0; i < 2; i++) {
        raw_str(&r, "dup.key");
        raw_u32(&r, GGUF_TYPE_UINT8);
        raw_put(&r, "\x01", 1);
    }
    expect_reject(&r, ATTND_EFORMAT, "more than once");
    /* Alignment: wrong type, zero, a multiple of 8 but not a power of two. */
    raw_header(&r, 3, 0, 1);
    raw_str(&r, "general.alignment");
    raw_u32(&r, GGUF_TYPE_UINT64);
    raw_u64(&r, 32);
    expect_reject(&r, ATTND_EFORMAT, "must be uint32");
    raw_header(&r, 3, 0, 1);
    raw_str(&r, "general.alignment");
    raw_u32(&r, GGUF_TYPE_UINT32);
    raw_u32(&r, 0);
    expect_reject(&r, ATTND_EFORMAT, "0 is not a non-zero multiple of 8");
    raw_header(&r, 3, 0, 1);
    raw_str(&r, "general.alignment");
    raw_u32(&r, GGUF_TYPE_UINT32);
    raw_u32(&r, 48);
    expect_reject(&r, ATTND_EFORMAT, "power of two");
}

/* One tensor info with the given fields, then data padded out. */
static void raw_tensor(struct raw *r, const char *name, uint32_t n_dims, const uint64_t *ne,
                       uint32_t type, uint64_t offset)
{
    raw_str(r, name);
    raw_u32(r, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        raw_u64(r, ne[d]);
    raw_u32(r, type);
    raw_u64(r, offset);
}

static void raw_data(struct raw *r, size_t n)
{
    raw_pad(r, 32);
    for (size_t i = 0; i < n; i++)
        raw_put(r, "\x3c", 1);
}

Test(gguf_malformed, tensor_infos)
{
    struct raw r = {0};
    uint64_t ne4[2] = {4, 1};
    raw_header(&r, 3, 1, 0);
    raw_tensor(&r, "w", 2, ne4, GGUF_DTYPE_F32, 0);
    raw_data(&r, 16);
    attnd_err err = {0};
    cr_assert_eq(parse_mem(r.p, r.len, &err), ATTND_OK, "%s", err.msg);
    free(r.p);
    memset(&r, 0, sizeof r);

    raw_header(&r, 3, 1, 0);
    raw_tensor(&r, "w", 2, ne4, 99, 0);
    raw_data(&r, 16);
    expect_reject(&r, ATTND_EUNSUPPORTED, "tensor 'w'");
    raw_header(&r, 3, 1, 0);
    raw_tensor(&r, "w", 2, ne4, 99, 0);
    raw_data(&r, 16);
    expect_reject(&r, ATTND_EUNSUPPORTED, "unknown tensor type 99");

    uint64_t ne5[5] = {1, 1, 1, 1, 1};
    raw_header(&r, 3, 1, 0);
    raw_tensor(&r, "w", 5, ne5, GGUF_DTYPE_F32, 0);
    raw_data(&r, 4);
    expect_reject(&r, ATTND_EFORMAT, "5 dimensions");
    raw_header(&r, 3, 1, 0);
    raw_tensor(&r, "w", 0, ne5, GGUF_DTYPE_F32, 0);
    raw_data(&r, 4);
    expect_reject(&r, ATTND_EFORMAT, "0 dimensions");

    uint64_t zero[2] = {4, 0};
    raw_header(&r, 3, 1, 0);
    raw_tensor(&r, "w", 2, zero, GGUF_DTYPE_F32, 0);
    raw_data(&r, 4);
    expect_reject(&r, ATTND_EFORMAT, "dimension 1 is 0");

    /* Dimension products that overflow 64 bits, and bytes that overflow. */
    uint64_t big[3] = {1ull << 32, 1ull << 32, 2};
    raw_header(&r, 3, 1, 0);
    raw_tensor(&r, "w", 3, big, GGUF_DTYPE_F32, 0);
    raw_data(&r, 4);
    expect_reject(&r, ATTND_EFORMAT, "overflows");
    uint64_t bigb[2] = {1ull << 31, 1ull << 31};
    raw_header(&r, 3, 1, 0);
    raw_tensor(&r, "w", 2, bigb, GGUF_DTYPE_F32, 0);
    raw_data(&r, 4);
    expect_reject(&r, ATTND_EFORMAT, "byte size overflows");
    uint64_t neg[1] = {UINT64_MAX};
    raw_header(&r, 3, 1, 0);
    raw_tensor(&r, "w", 1, neg, GGUF_DTYPE_F32, 0);
    raw_data(&r, 4);
    expect_reject(&r, ATTND_EFORMAT, "dimension 0");

    uint64_t q[2] = {33, 1};
    raw_header(&r, 3, 1, 0);
    raw_tensor(&r, "q", 2, q, GGUF_DTYPE_Q8_0, 0);
    raw_data(&r, 68);
    expect_reject(&r, ATTND_EFORMAT, "whole number of Q8_0 blocks");
    /* the same for the 256-element K-quant and IQ4_XS blocks, and a
     * quantized tensor whose blocks run past the end of the file */
    static const gguf_dtype k256[] = {GGUF_DTYPE_Q2_K, GGUF_DTYPE_Q4_K, GGUF_DTYPE_Q6_K,
                                      GGUF_DTYPE_IQ4_XS};
    for (size_t i = 0; i < sizeof k256 / sizeof k256[0]; i++) {
        uint64_t half[2] = {128, 2}, two[2] = {256, 2};
        char want[64];
        raw_header(&r, 3, 1, 0);
        raw_tensor(&r, "q", 2, half, k256[i], 0);
        raw_data(&r, 1024);
        snprintf(want, sizeof want, "whole number of %s blocks", gguf_dtype_name(k256[i]));
        expect_reject(&r, ATTND_EFORMAT, want);
        raw_header(&r, 3, 1, 0);
        raw_tensor(&r, "q", 2, two, k256[i], 0);
        raw_data(&r, 2 * gguf_dtype_block_bytes(k256[i]) - 1);
        expect_reject(&r, ATTND_EFORMAT, "past the end");
    }

    /* Offsets: misaligned, past the end, at the very end of 64-bit space,
     * overlapping another tensor. */
    raw_header(&r, 3, 1, 0);
    raw_tensor(&r, "w", 2, ne4, GGUF_DTYPE_F32, 4);
    raw_data(&r, 64);
    expect_reject(&r, ATTND_EFORMAT, "not a multiple of the alignment");
    raw_header(&r, 3, 1, 0);
    raw_tensor(&r, "w", 2, ne4, GGUF_DTYPE_F32, 64);
    raw_data(&r, 16);
    expect_reject(&r, ATTND_EFORMAT, "past the end");
    raw_header(&r, 3, 1, 0);
    raw_tensor(&r, "w", 2, ne4, GGUF_DTYPE_F32, UINT64_MAX - 31);
    raw_data(&r, 16);
    expect_reject(&r, ATTND_EFORMAT, "past the end");
    raw_header(&r, 3, 2, 0);
    raw_tensor(&r, "a", 2, ne4, GGUF_DTYPE_F32, 0);
    uint64_t ne16[1] = {16};
    raw_tensor(&r, "b", 1, ne16, GGUF_DTYPE_F32, 0);
    raw_data(&r, 64);
    expect_reject(&r, ATTND_EFORMAT, "overlaps");
    raw_header(&r, 3, 2, 0);
    raw_tensor(&r, "a", 2, ne4, GGUF_DTYPE_F32, 0);
    raw_tensor(&r, "a", 2, ne4, GGUF_DTYPE_F32, 32);
    raw_data(&r, 64);
    expect_reject(&r, ATTND_EFORMAT, "more than once");

    /* Data section start past the end of the file. */
    raw_header(&r, 3, 1, 0);
    raw_tensor(&r, "w", 2, ne4, GGUF_DTYPE_F32, 0);
    expect_reject(&r, ATTND_EFORMAT, "tensor");
}

/* A file on disk whose general.alignment is A and whose one tensor's data is
 * padded to A, so that A is the only thing a reader could object to (values
 * that pad nothing use 64). */
static char *write_aligned_file(uint32_t a)
{
    struct raw r = {0};
    uint64_t ne4[2] = {4, 1};
    raw_header(&r, 3, 1, 1);
    raw_str(&r, "general.alignment");
    raw_u32(&r, GGUF_TYPE_UINT32);
    raw_u32(&r, a);
    raw_tensor(&r, "w", 2, ne4, GGUF_DTYPE_F32, 0);
    raw_pad(&r, a != 0 && (a & (a - 1)) == 0 ? a : 64);
    for (size_t i = 0; i < 16; i++)
        raw_put(&r, "\x3c", 1);
    char name[64];
    snprintf(name, sizeof name, "align-%u.gguf", a);
    char *path = test_tmp_path(name);
    FILE *fp = fopen(path, "wb");
    cr_assert(fp && fwrite(r.p, 1, r.len, fp) == r.len && fclose(fp) == 0, "%s", path);
    free(r.p);
    return path;
}

/* GGUF requires a non-zero multiple of 8; 4 and smaller powers of two once
 * loaded (the reader only asked for a power of two). */
Test(gguf_malformed, alignment_must_be_a_multiple_of_8)
{
    static const uint32_t bad[] = {0, 4, 12, 7, 1, 2};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *path = write_aligned_file(bad[i]);
        gguf_file *f = NULL;
        attnd_err err = {0};
        int rc = gguf_open(path, &f, &err);
        if (rc == ATTND_OK)
            gguf_close(f);
        char value[32];
        snprintf(value, sizeof value, ": %u is not", bad[i]);
        cr_expect_eq(rc, ATTND_EFORMAT, "alignment %u: got %d (%s)", bad[i], rc, err.msg);
        cr_expect(strstr(err.msg, "general.alignment") && strstr(err.msg, value) &&
                      strstr(err.msg, path),
                  "alignment %u: message '%s' lacks the key, the value or the file", bad[i],
                  err.msg);
        remove(path);
        free(path);
    }
    static const uint32_t good[] = {8, 16, 32, 64};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char *path = write_aligned_file(good[i]);
        gguf_file *f = NULL;
        attnd_err err = {0};
        cr_assert_eq(gguf_open(path, &f, &err), ATTND_OK, "alignment %u: %s", good[i], err.msg);
        cr_expect_eq(gguf_alignment(f), good[i]);
        const gguf_tensor *t = gguf_tensor_find(f, "w");
        cr_assert(t);
        cr_expect_eq((uintptr_t)t->data % good[i], 0, "alignment %u: data misaligned", good[i]);
        gguf_close(f);
        remove(path);
        free(path);
    }
}

Test(gguf_malformed, not_a_regular_file_and_missing)
{
    gguf_file *f;
    attnd_err err = {0};
    cr_assert_eq(gguf_open("/nonexistent/model.gguf", &f, &err), ATTND_EIO);
    cr_assert(strstr(err.msg, "/nonexistent/model.gguf"));
    cr_assert_eq(gguf_open("/dev/zero", &f, &err), ATTND_EIO);
    cr_assert(strstr(err.msg, "not a regular file"));
    cr_assert_eq(gguf_open("/tmp", &f, &err), ATTND_EIO);
    cr_assert_eq(gguf_open_as("/nonexistent/model.gguf", GGUF_LOAD_COPY, &f, &err), ATTND_EIO);
    cr_assert(strstr(err.msg, "/nonexistent/model.gguf"));
    cr_assert_eq(gguf_open_as("/tmp", (gguf_load)7, &f, &err), ATTND_EINVAL);
    cr_assert(strstr(err.msg, "unknown load mode 7"), "%s", err.msg);
    cr_assert_null(f);
}

Test(gguf, load_mode_names)
{
    cr_assert_str_eq(gguf_load_name(GGUF_LOAD_MAP), "map");
    cr_assert_str_eq(gguf_load_name(GGUF_LOAD_COPY), "copy");
    cr_assert_null(gguf_load_name((gguf_load)2));
    cr_assert_eq(gguf_load_parse("map"), GGUF_LOAD_MAP);
    cr_assert_eq(gguf_load_parse("copy"), GGUF_LOAD_COPY);
    cr_assert_eq(gguf_load_parse("mmap"), -1);
    cr_assert_eq(gguf_load_parse(""), -1);
}

/* ------------------------------------------------------------ shared models */

Test(gguf_models, five_shared_models_have_the_documented_shapes)
{
    static const struct {
        const char *file;
        const char *arch;
        uint32_t dim, layers, heads, kv, ff, ctx, vocab;
        gguf_dtype weights;
    } m[] = {
        {"models/aidreams260K.gguf", "llama", 64, 4, 4, 4, 172, 128, 512, GGUF_DTYPE_F32},
        {"models/stories260K.gguf", "llama", 64, 5, 8, 4, 172, 512, 512, GGUF_DTYPE_F32},
        {"models/llama-synth-64x2-gqa4.gguf", "llama", 64, 2, 8, 2, 256, 256, 32000,
         GGUF_DTYPE_F16},
        {"models/llama-synth-128x2-q8_0.gguf", "llama", 128, 2, 4, 2, 512, 256, 32000,
         GGUF_DTYPE_Q8_0},
        {"models/gpt2-synth-64x2.gguf", "gpt2", 64, 2, 4, 4, 256, 128, 50257, GGUF_DTYPE_F16},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        attnd_err err = {0};
        gguf_file *f;
        cr_assert_eq(gguf_open(test_shared(m[i].file), &f, &err), ATTND_OK, "%s", err.msg);
        model_hparams hp;
        cr_assert_eq(model_hparams_load(f, &hp, &err), ATTND_OK, "%s", err.msg);
        cr_expect_str_eq(hp.arch_name, m[i].arch);
        cr_expect_eq(hp.n_embd, m[i].dim, "%s", m[i].file);
        cr_expect_eq(hp.n_layer, m[i].layers, "%s", m[i].file);
        cr_expect_eq(hp.n_head, m[i].heads, "%s", m[i].file);
        cr_expect_eq(hp.n_head_kv, m[i].kv, "%s", m[i].file);
        cr_expect_eq(hp.n_ff, m[i].ff, "%s", m[i].file);
        cr_expect_eq(hp.n_ctx, m[i].ctx, "%s", m[i].file);
        cr_expect_eq(hp.n_vocab, m[i].vocab, "%s", m[i].file);
        cr_expect_eq(hp.rope_freq_base, 10000.0f);
        /* bytes per token = 2 * layers * kv heads * head dim * element size */
        cr_expect_eq(model_kv_bytes_per_token(&hp, 2),
                     2ull * m[i].layers * m[i].kv * (m[i].dim / m[i].heads) * 2);
        const gguf_tensor *emb = gguf_tensor_find(f, "token_embd.weight");
        cr_assert(emb);
        cr_expect_eq(emb->type, m[i].weights, "%s token_embd type", m[i].file);
        cr_expect(emb->ne[0] == m[i].dim && emb->ne[1] == m[i].vocab);
        gguf_close(f);
    }
}

Test(gguf_models, hparams_errors_name_the_key)
{
    attnd_err err = {0};
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "mamba", &err);
    void *mem;
    size_t len;
    gguf_writer_write_mem(w, &mem, &len, &err);
    gguf_writer_free(w);
    gguf_file *f;
    model_hparams hp;
    cr_assert_eq(gguf_open_mem(mem, len, "m.gguf", &f, &err), ATTND_OK);
    cr_assert_eq(model_hparams_load(f, &hp, &err), ATTND_EUNSUPPORTED);
    cr_assert(strstr(err.msg, "unknown architecture 'mamba'"), "%s", err.msg);
    gguf_close(f);
    free(mem);

    w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama", &err);
    gguf_writer_set_u32(w, "llama.context_length", 16, &err);
    gguf_writer_set_u32(w, "llama.embedding_length", 64, &err);
    gguf_writer_set_u32(w, "llama.block_count", 1, &err);
    gguf_writer_set_u32(w, "llama.feed_forward_length", 8, &err);
    gguf_writer_set_u32(w, "llama.attention.head_count", 6, &err);
    gguf_writer_write_mem(w, &mem, &len, &err);
    gguf_writer_free(w);
    cr_assert_eq(gguf_open_mem(mem, len, "m.gguf", &f, &err), ATTND_OK);
    cr_assert_eq(model_hparams_load(f, &hp, &err), ATTND_EFORMAT);
    cr_assert(strstr(err.msg, "head_count 6"), "%s", err.msg);
    gguf_close(f);
    free(mem);
}

/* ------------------------------------------------------------ dtype */

Test(dtype, f16_round_trips_every_value)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = attnd_f16_to_f32((uint16_t)h);
        if (isnan(f)) {
            cr_assert(isnan(attnd_f16_to_f32(attnd_f32_to_f16(f))));
            continue;
        }
        cr_assert_eq(attnd_f32_to_f16(f), h, "f16 0x%04x -> %g -> 0x%04x", h, (double)f,
                     attnd_f32_to_f16(f));
    }
}

/* Reference: the nearest f16 by exhaustive search over neighbours in double. */
Test(dtype, f32_to_f16_rounds_to_nearest_even)
{
    uint64_t s = 42;
    for (int i = 0; i < 200000; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t bits = (uint32_t)(s >> 32);
        float f;
        memcpy(&f, &bits, 4);
        if (!isfinite(f) || fabsf(f) > 65504.0f)
            continue;
        uint16_t h = attnd_f32_to_f16(f);
        double err0 = fabs((double)attnd_f16_to_f32(h) - (double)f);
        /* No other half is strictly closer. */
        for (int dlt = -1; dlt <= 1; dlt += 2) {
            uint16_t n = (uint16_t)(h + dlt);
            float g = attnd_f16_to_f32(n);
            if (isnan(g) || isinf(g) || (n & 0x7fff) == 0x7c00)
                continue;
            if (((n ^ h) & 0x8000) != 0)
                continue;
            double e1 = fabs((double)g - (double)f);
            cr_assert(e1 >= err0, "%g -> 0x%04x, but 0x%04x is closer", (double)f, h, n);
            if (e1 == err0)
                cr_assert((h & 1) == 0, "tie for %g not to even", (double)f);
        }
    }
    cr_assert_eq(attnd_f32_to_f16(1e6f), 0x7c00);
    cr_assert_eq(attnd_f32_to_f16(-1e6f), 0xfc00);
    cr_assert_eq(attnd_f32_to_f16(65519.0f), 0x7bff);
    cr_assert_eq(attnd_f32_to_f16(65520.0f), 0x7c00);
}

Test(dtype, f16_row_fast_path_matches_scalar)
{
    /* every bit pattern, at lengths that leave vector remainders */
    static uint16_t h[65536 + 7];
    static float a[65536 + 7], b[65536 + 7];
    for (uint32_t i = 0; i < 65536 + 7; i++)
        h[i] = (uint16_t)(i * 40503u);
    for (size_t n = 65536 + 7; n > 0; n = n / 3) {
        attnd_f16_to_f32_row(h, a, n);
        attnd_f16_to_f32_row_ref(h, b, n);
        cr_assert(memcmp(a, b, n * sizeof(float)) == 0, "rows of %zu differ", n);
    }
}

Test(dtype, bf16_and_q8_0)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = attnd_bf16_to_f32((uint16_t)h);
        if (!isnan(f))
            cr_assert_eq(attnd_f32_to_bf16(f), h);
    }
    cr_assert_eq(attnd_f32_to_bf16(1.00390625f), 0x3f80); /* tie -> even */
    cr_assert_eq(attnd_f32_to_bf16(1.01171875f), 0x3f82); /* tie -> even (up) */

    float x[96], y[96];
    uint64_t s = 7;
    for (int i = 0; i < 96; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(s >> 11) * 0x1.0p-53 * 4.0 - 2.0);
    }
    uint8_t q[3 * 34];
    cr_assert_eq(quant_from_f32(GGUF_DTYPE_Q8_0, x, q, 96), 0);
    cr_assert_eq(quant_to_f32(GGUF_DTYPE_Q8_0, q, y, 96), 0);
    for (int b = 0; b < 3; b++) {
        uint16_t dh;
        memcpy(&dh, q + b * 34, sizeof dh);
        float d = attnd_f16_to_f32(dh);
        for (int i = 0; i < 32; i++)
            cr_assert(fabsf(x[b * 32 + i] - y[b * 32 + i]) <= d * 0.5f + 1e-3f * d);
    }
    cr_assert_eq(quant_from_f32(GGUF_DTYPE_Q8_0, x, q, 33), -1);
}
