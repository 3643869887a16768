/* gguf_types.c - facts about GGUF metadata types and ggml tensor types:
 * names, scalar sizes, block sizes. One table each, used by reader and writer. */
#include "gguf.h"

#include "attnd_ckd.h"

static const struct {
    const char *name;
    size_t size;
} k_types[GGUF_TYPE_COUNT_] = {
    [GGUF_TYPE_UINT8] = {"uint8", 1},   [GGUF_TYPE_INT8] = {"int8", 1},
    [GGUF_TYPE_UINT16] = {"uint16", 2}, [GGUF_TYPE_INT16] = {"int16", 2},
    [GGUF_TYPE_UINT32] = {"uint32", 4}, [GGUF_TYPE_INT32] = {"int32", 4},
    [GGUF_TYPE_FLOAT32] = {"float32", 4}, [GGUF_TYPE_BOOL] = {"bool", 1},
    [GGUF_TYPE_STRING] = {"string", 0}, [GGUF_TYPE_ARRAY] = {"array", 0},
    [GGUF_TYPE_UINT64] = {"uint64", 8}, [GGUF_TYPE_INT64] = {"int64", 8},
    [GGUF_TYPE_FLOAT64] = {"float64", 8},
};

const char *gguf_type_name(gguf_type t)
{
    return ((unsigned)t < GGUF_TYPE_COUNT_) ? k_types[t].name : "?";
}

size_t gguf_type_scalar_size(gguf_type t)
{
    return ((unsigned)t < GGUF_TYPE_COUNT_) ? k_types[t].size : 0;
}

/* Block layouts as ggml defines them: Q8_0 = f16 scale + 32 int8; Q4_0 = f16
 * scale + 16 bytes of nibbles; Q4_K = 2 f16 + 12 scale bytes + 128 nibble
 * bytes per 256; Q6_K = 128 + 64 + 16 scale bytes + f16 per 256. */
static const struct {
    uint32_t id;
    const char *name;
    uint32_t elems;
    uint32_t bytes;
} k_dtypes[] = {
    {GGUF_DTYPE_F32, "F32", 1, 4},       {GGUF_DTYPE_F16, "F16", 1, 2},
    {GGUF_DTYPE_BF16, "BF16", 1, 2},     {GGUF_DTYPE_Q8_0, "Q8_0", 32, 34},
    {GGUF_DTYPE_Q4_0, "Q4_0", 32, 18},   {GGUF_DTYPE_Q4_K, "Q4_K", 256, 144},
    {GGUF_DTYPE_Q6_K, "Q6_K", 256, 210},
};

static int dtype_index(uint32_t t)
{
    for (int i = 0; i < (int)(sizeof k_dtypes / sizeof k_dtypes[0]); i++)
        if (k_dtypes[i].id == t)
            return i;
    return -1;
}

bool gguf_dtype_known(uint32_t t)
{
    return dtype_index(t) >= 0;
}

const char *gguf_dtype_name(gguf_dtype t)
{
    int i = dtype_index(t);
    return i >= 0 ? k_dtypes[i].name : "?";
}

uint32_t gguf_dtype_block_elems(gguf_dtype t)
{
    int i = dtype_index(t);
    return i >= 0 ? k_dtypes[i].elems : 0;
}

uint32_t gguf_dtype_block_bytes(gguf_dtype t)
{
    int i = dtype_index(t);
    return i >= 0 ? k_dtypes[i].bytes : 0;
}

bool gguf_dtype_row_bytes(gguf_dtype t, uint64_t n, uint64_t *bytes)
{
    int i = dtype_index(t);
    if (i < 0 || n % k_dtypes[i].elems != 0)
        return false;
    return attnd_ckd_mul(n / k_dtypes[i].elems, k_dtypes[i].bytes, bytes);
}
