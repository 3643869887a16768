/* gguf.h - reading and writing GGUF files (versions 2 and 3, little-endian).
 *
 * Reader: gguf_open() maps a file read-only (gguf_open_as can copy it into
 * huge pages instead) and validates all of it up front (header, every
 * metadata value, every tensor info and extent) against the file size with
 * overflow-checked arithmetic, so that nothing later has to distrust it. The
 * gguf_file owns the mapping or copy; string values, array data and tensor
 * data returned by the accessors point into it and live until gguf_close().
 *
 * Writer: gguf_writer collects metadata (encoded at once, so callers keep
 * ownership of what they pass) and tensor descriptions (whose data is read only
 * when the file is written), then writes a file the reader reads back exactly.
 *
 * Memory: the reader allocates O(number of keys + tensors + array elements
 * that are strings or arrays), each element bounded by the bytes it takes in the
 * file, so a hostile file cannot request an unbounded allocation. */
#ifndef ATTND_GGUF_H
#define ATTND_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attnd_err.h"

#define GGUF_DEFAULT_ALIGNMENT 32u
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_KEY_LEN 65535u
#define GGUF_MAX_ARRAY_DEPTH 8 /* nesting of arrays of arrays we accept */

/* Metadata value types, numbered as in the GGUF specification. */
typedef enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT_
} gguf_type;

/* Tensor element types, numbered as ggml numbers them. The reader knows the
 * block layout of every one (so an error can name it); which ones a model
 * can compute with is model/quant's table (quant_traits_of). Q8_1 and Q8_K
 * are the activation formats ggml pairs weight types with. */
typedef enum gguf_dtype {
    GGUF_DTYPE_F32 = 0,
    GGUF_DTYPE_F16 = 1,
    GGUF_DTYPE_Q4_0 = 2,
    GGUF_DTYPE_Q4_1 = 3,
    GGUF_DTYPE_Q5_0 = 6,
    GGUF_DTYPE_Q5_1 = 7,
    GGUF_DTYPE_Q8_0 = 8,
    GGUF_DTYPE_Q8_1 = 9,
    GGUF_DTYPE_Q2_K = 10,
    GGUF_DTYPE_Q3_K = 11,
    GGUF_DTYPE_Q4_K = 12,
    GGUF_DTYPE_Q5_K = 13,
    GGUF_DTYPE_Q6_K = 14,
    GGUF_DTYPE_Q8_K = 15,
    GGUF_DTYPE_IQ2_XXS = 16,
    GGUF_DTYPE_IQ2_XS = 17,
    GGUF_DTYPE_IQ3_XXS = 18,
    GGUF_DTYPE_IQ1_S = 19,
    GGUF_DTYPE_IQ4_NL = 20,
    GGUF_DTYPE_IQ3_S = 21,
    GGUF_DTYPE_IQ2_S = 22,
    GGUF_DTYPE_IQ4_XS = 23,
    GGUF_DTYPE_I8 = 24,
    GGUF_DTYPE_I16 = 25,
    GGUF_DTYPE_I32 = 26,
    GGUF_DTYPE_I64 = 27,
    GGUF_DTYPE_F64 = 28,
    GGUF_DTYPE_IQ1_M = 29,
    GGUF_DTYPE_BF16 = 30,
    GGUF_DTYPE_TQ1_0 = 34,
    GGUF_DTYPE_TQ2_0 = 35,
    GGUF_DTYPE_MXFP4 = 39,
    GGUF_DTYPE_COUNT_ = 40,
} gguf_dtype;

const char *gguf_type_name(gguf_type t);       /* "uint32", ... or "?" */
size_t gguf_type_scalar_size(gguf_type t);     /* 0 for string/array/unknown */

bool gguf_dtype_known(uint32_t t);
const char *gguf_dtype_name(gguf_dtype t);     /* "F32", "Q8_0", ... or "?" */
uint32_t gguf_dtype_block_elems(gguf_dtype t); /* elements per block (1, 32, 256) */
uint32_t gguf_dtype_block_bytes(gguf_dtype t); /* bytes per block */
/* Bytes of a row of n elements; fails if n is not a multiple of the block size
 * or the size overflows. */
bool gguf_dtype_row_bytes(gguf_dtype t, uint64_t n, uint64_t *bytes);

/* A length-delimited string inside the mapped file (not NUL-terminated; may
 * contain NUL bytes). */
typedef struct gguf_str {
    const char *ptr;
    uint64_t len;
} gguf_str;

/* ---------------------------------------------------------------- reader */

typedef struct gguf_file gguf_file;
typedef struct gguf_value gguf_value;

typedef struct gguf_tensor {
    const char *name;            /* NUL-terminated copy, owned by the gguf_file */
    gguf_dtype type;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS];  /* ne[0] is the contiguous dimension; unused = 1 */
    uint64_t n_elems;
    uint64_t offset;             /* relative to the data section */
    uint64_t nbytes;
    const void *data;            /* into the mapping; aligned to the file's alignment */
} gguf_tensor;

/* How a file's bytes come into memory. */
typedef enum gguf_load {
    /* Read-only mapping of the file: starts at once and shares the page
     * cache with other processes, in 4 KiB pages. */
    GGUF_LOAD_MAP = 0,
    /* Read into private memory in 2 MiB pages where the kernel gives them
     * (transparent huge pages), then made read-only. Weights stream from
     * it markedly faster (the hardware prefetcher stops at every page, the
     * TLB misses less), for the file's size in memory of this process. */
    GGUF_LOAD_COPY = 1,
} gguf_load;

/* Loads (as HOW says) and validates PATH. On failure *out is NULL and err
 * names the file, the field or tensor, and what was wrong. */
int gguf_open_as(const char *path, gguf_load how, gguf_file **out, attnd_err *err);
/* gguf_open_as(PATH, GGUF_LOAD_MAP, ...). */
int gguf_open(const char *path, gguf_file **out, attnd_err *err);
/* "map" or "copy"; NULL for an unknown value. */
const char *gguf_load_name(gguf_load how);
/* The gguf_load called NAME ("map", "copy"); -1 when there is none. */
int gguf_load_parse(const char *name);

/* Parses a GGUF image already in memory (not copied: BUF must outlive the
 * result). NAME is used in error messages. Used by the fuzzer and tests. */
int gguf_open_mem(const void *buf, size_t len, const char *name, gguf_file **out,
                  attnd_err *err);

void gguf_close(gguf_file *f);

const char *gguf_path(const gguf_file *f);
uint32_t gguf_version(const gguf_file *f);
uint32_t gguf_alignment(const gguf_file *f);
uint64_t gguf_file_size(const gguf_file *f);

size_t gguf_kv_count(const gguf_file *f);
const char *gguf_kv_key(const gguf_file *f, size_t i);      /* NUL-terminated */
const gguf_value *gguf_kv_value(const gguf_file *f, size_t i);
/* The value under KEY, or NULL. */
const gguf_value *gguf_get(const gguf_file *f, const char *key);

size_t gguf_tensor_count(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, size_t i);
const gguf_tensor *gguf_tensor_find(const gguf_file *f, const char *name);

/* Value access. Every accessor checks the type; conversions between integer
 * types succeed only when the value fits. */
gguf_type gguf_value_type(const gguf_value *v);
bool gguf_value_u64(const gguf_value *v, uint64_t *out);  /* any integer type, >= 0 */
bool gguf_value_i64(const gguf_value *v, int64_t *out);   /* any integer type that fits */
bool gguf_value_f64(const gguf_value *v, double *out);    /* float32/float64 or integer */
bool gguf_value_bool(const gguf_value *v, bool *out);
bool gguf_value_str(const gguf_value *v, gguf_str *out);

/* Arrays. gguf_array_len/elem_type are 0/GGUF_TYPE_COUNT_ for non-arrays. */
uint64_t gguf_array_len(const gguf_value *v);
gguf_type gguf_array_elem_type(const gguf_value *v);
/* Element i as a value: only for arrays of strings or of arrays. */
const gguf_value *gguf_array_item(const gguf_value *v, uint64_t i);
/* Raw little-endian element bytes of an array of scalars (may be unaligned). */
const void *gguf_array_data(const gguf_value *v);
/* Scalar element i converted like the gguf_value_* accessors. */
bool gguf_array_u64(const gguf_value *v, uint64_t i, uint64_t *out);
bool gguf_array_i64(const gguf_value *v, uint64_t i, int64_t *out);
bool gguf_array_f64(const gguf_value *v, uint64_t i, double *out);
bool gguf_array_str(const gguf_value *v, uint64_t i, gguf_str *out);

/* Typed lookups by key with a message naming the key when it is missing or has
 * the wrong type or range. */
int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, attnd_err *err);
int gguf_get_f32(const gguf_file *f, const char *key, float *out, attnd_err *err);
int gguf_get_bool(const gguf_file *f, const char *key, bool *out, attnd_err *err);
int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, attnd_err *err);

/* ---------------------------------------------------------------- writer */

/* A metadata value to write. For arrays, `data` points to `n` elements laid out
 * as: native scalars of elem_type; gguf_str for GGUF_TYPE_STRING; gguf_wval (each
 * of type GGUF_TYPE_ARRAY) for GGUF_TYPE_ARRAY. Nothing is retained after the
 * call that takes it. */
typedef struct gguf_wval {
    gguf_type type;
    union {
        uint8_t u8;
        int8_t i8;
        uint16_t u16;
        int16_t i16;
        uint32_t u32;
        int32_t i32;
        float f32;
        bool b;
        uint64_t u64;
        int64_t i64;
        double f64;
        gguf_str str;
        struct {
            gguf_type elem_type;
            uint64_t n;
            const void *data;
        } arr;
    } v;
} gguf_wval;

typedef struct gguf_writer gguf_writer;

/* Produces the bytes of one tensor at write time, into BUF of NBYTES. */
typedef int (*gguf_fill_fn)(void *ctx, void *buf, uint64_t nbytes, attnd_err *err);

gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);
/* Version 2 or 3 (default 3). */
int gguf_writer_set_version(gguf_writer *w, uint32_t version, attnd_err *err);

/* Adds a key. A key may be given once; setting "general.alignment" (uint32,
 * a power of two of at least 8, as the reader requires) also sets the alignment
 * used for tensor data. */
int gguf_writer_set(gguf_writer *w, const char *key, const gguf_wval *v, attnd_err *err);
int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t x, attnd_err *err);
int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t x, attnd_err *err);
int gguf_writer_set_f32(gguf_writer *w, const char *key, float x, attnd_err *err);
int gguf_writer_set_bool(gguf_writer *w, const char *key, bool x, attnd_err *err);
int gguf_writer_set_str(gguf_writer *w, const char *key, const char *s, attnd_err *err);
/* An array of N scalars of ELEM_TYPE from native memory, or N gguf_str. */
int gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_type elem_type,
                        const void *data, uint64_t n, attnd_err *err);

/* Adds a tensor whose NBYTES-long data is at DATA; DATA must stay valid until
 * gguf_writer_write() returns. */
int gguf_writer_add_tensor(gguf_writer *w, const char *name, gguf_dtype type,
                           uint32_t n_dims, const uint64_t *ne, const void *data,
                           attnd_err *err);
/* Same, with data produced by FILL when the file is written. */
int gguf_writer_add_tensor_fn(gguf_writer *w, const char *name, gguf_dtype type,
                              uint32_t n_dims, const uint64_t *ne, gguf_fill_fn fill,
                              void *ctx, attnd_err *err);

/* Copies metadata KEY with its type and value from an open file. */
int gguf_writer_copy(gguf_writer *w, const gguf_file *src, const char *key, attnd_err *err);

int gguf_writer_write(gguf_writer *w, const char *path, attnd_err *err);
/* Writes the file image to a malloc'd buffer the caller frees. */
int gguf_writer_write_mem(gguf_writer *w, void **buf, size_t *len, attnd_err *err);

#endif
