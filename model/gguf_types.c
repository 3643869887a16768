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

/* Block layouts as ggml defines them (elements and bytes per block): e.g.
 * Q8_0 = f16 scale + 32 int8; Q4_K = 2 f16 + 12 scale bytes + 128 nibble
 * bytes per 256. Types ggml has retired (4, 5, 31-33, 36-38) stay unknown. */
static const struct {
    uint32_t id;
    const char *name;
    uint32_t elems;
    uint32_t bytes;
} k_dtypes[] = {
    {GGUF_DTYPE_F32, "F32", 1, 4},          {GGUF_DTYPE_F16, "F16", 1, 2},
    {GGUF_DTYPE_Q4_0, "Q4_0", 32, 18},      {GGUF_DTYPE_Q4_1, "Q4_1", 32, 20},
    {GGUF_DTYPE_Q5_0, "Q5_0", 32, 22},      {GGUF_DTYPE_Q5_1, "Q5_1", 32, 24},
    {GGUF_DTYPE_Q8_0, "Q8_0", 32, 34},      {GGUF_DTYPE_Q8_1, "Q8_1", 32, 36},
    {GGUF_DTYPE_Q2_K, "Q2_K", 256, 84},     {GGUF_DTYPE_Q3_K, "Q3_K", 256, 110},
    {GGUF_DTYPE_Q4_K, "Q4_K", 256, 144},    {GGUF_DTYPE_Q5_K, "Q5_K", 256, 176},
    {GGUF_DTYPE_Q6_K, "Q6_K", 256, 210},    {GGUF_DTYPE_Q8_K, "Q8_K", 256, 292},
    {GGUF_DTYPE_IQ2_XXS, "IQ2_XXS", 256, 66}, {GGUF_DTYPE_IQ2_XS, "IQ2_XS", 256, 74},
    {GGUF_DTYPE_IQ3_XXS, "IQ3_XXS", 256, 98}, {GGUF_DTYPE_IQ1_S, "IQ1_S", 256, 50},
    {GGUF_DTYPE_IQ4_NL, "IQ4_NL", 32, 18},  {GGUF_DTYPE_IQ3_S, "IQ3_S", 256, 110},
    {GGUF_DTYPE_IQ2_S, "IQ2_S", 256, 82},   {GGUF_DTYPE_IQ4_XS, "IQ4_XS", 256, 136},
    {GGUF_DTYPE_I8, "I8", 1, 1},            {GGUF_DTYPE_I16, "I16", 1, 2},
    {GGUF_DTYPE_I32, "I32", 1, 4},          {GGUF_DTYPE_I64, "I64", 1, 8},
    {GGUF_DTYPE_F64, "F64", 1, 8},          {GGUF_DTYPE_IQ1_M, "IQ1_M", 256, 56},
    {GGUF_DTYPE_BF16, "BF16", 1, 2},        {GGUF_DTYPE_TQ1_0, "TQ1_0", 256, 54},
    {GGUF_DTYPE_TQ2_0, "TQ2_0", 256, 66},   {GGUF_DTYPE_MXFP4, "MXFP4", 32, 17},
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
