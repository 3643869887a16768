/* fuzz_gguf.c - libFuzzer target for everything that reads a GGUF file from
 * outside: the reader, hyperparameter loading, tokenizer construction (plus
 * a short encode/decode with whatever tokenizer the bytes describe), and the
 * weight-type table's scale check and dequantization of whatever blocks the
 * bytes hold. Build with
 * clang and -DATTND_FUZZ=ON; scripts/test.sh runs it from a seed corpus. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "gguf.h"
#include "hparams.h"
#include "quant.h"
#include "tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads every element so that a wrong bound would show up as an ASan report. */
static unsigned walk(const gguf_value *v, int depth)
{
    unsigned acc = 0;
    gguf_str s;
    uint64_t u;
    if (gguf_value_str(v, &s))
        for (uint64_t i = 0; i < s.len; i++)
            acc += (unsigned char)s.ptr[i];
    if (gguf_value_u64(v, &u))
        acc += (unsigned)u;
    uint64_t n = gguf_array_len(v);
    for (uint64_t i = 0; i < n; i++) {
        const gguf_value *item = gguf_array_item(v, i);
        if (item)
            acc += walk(item, depth + 1);
        else if (gguf_array_u64(v, i, &u))
            acc += (unsigned)u;
    }
    return acc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_file *f;
    attnd_err err;
    if (gguf_open_mem(data, size, "fuzz.gguf", &f, &err) != ATTND_OK)
        return 0;
    volatile unsigned acc = 0;
    for (size_t i = 0; i < gguf_kv_count(f); i++)
        acc += walk(gguf_kv_value(f, i), 0);
    for (size_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        const uint8_t *p = t->data;
        if (t->nbytes)
            acc += p[0] + p[t->nbytes - 1];
        /* The loader's scale check over every block, then a row or two
         * dequantized: a wrong bound or shift shows up under ASan/UBSan. */
        const quant_traits *qt = quant_traits_of(t->type);
        const uint32_t be = gguf_dtype_block_elems(t->type);
        if (!qt || !be)
            continue;
        if (qt->find_bad_scale)
            acc += (unsigned)qt->find_bad_scale(t->data, (size_t)(t->n_elems / be));
        static float row[4096];
        uint64_t n = t->n_elems < 4096 ? t->n_elems : 4096;
        n -= n % be;
        if (n)
            acc += quant_to_f32(t->type, t->data, row, (size_t)n) == 0 && row[0] == row[0];
    }
    model_hparams hp;
    (void)model_hparams_load(f, &hp, &err);
    tok_vocab *tv;
    if (tok_load(f, &tv, &err) == ATTND_OK) {
        static const char text[] = "Hello world, y'all! \xe2\x82\xac 123 \xff\xc3";
        int32_t *ids;
        size_t n;
        if (tok_encode(tv, text, sizeof text - 1, true, &ids, &n, &err) == ATTND_OK) {
            char *out;
            size_t len;
            if (tok_decode(tv, ids, n, true, &out, &len, &err) == ATTND_OK)
                free(out);
            free(ids);
        }
        tok_free(tv);
    }
    gguf_close(f);
    (void)acc;
    return 0;
}
