/* llama_logits.c - teacher-forced logits from llama.cpp, to make golden files.
 *
 * Not part of the build: compiled by hand against a llama.cpp built from
 * source outside the repository (tests/ref/README.md says how). Feeds the
 * given token ids as one batch with an F32 KV cache and writes, per
 * position, the logits after that position as float32 little-endian rows:
 * every STRIDE-th vocabulary column (0, STRIDE, 2·STRIDE, ...), so the golden
 * stays small, plus the full row's argmax to stdout.
 *
 * usage: llama_logits MODEL.gguf STRIDE OUT.f32 ID...
 * prints: {"vocab": V, "positions": P, "argmax": [...]} */
#include <stdio.h>
#include <stdlib.h>

#include "llama.h"

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s MODEL.gguf STRIDE OUT.f32 ID...\n", argv[0]);
        return 2;
    }
    int stride = atoi(argv[2]), n = argc - 4;
    if (stride < 1)
        return 2;
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model)
        return 1;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n < 256 ? 256 : n);
    cp.n_batch = cp.n_ubatch = (uint32_t)n;
    cp.type_k = cp.type_v = GGML_TYPE_F32;
    cp.flash_attn = false;
    cp.n_threads = cp.n_threads_batch = 2;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx)
        return 1;
    int V = llama_vocab_n_tokens(llama_model_get_vocab(model));
    struct llama_batch b = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        b.token[i] = atoi(argv[4 + i]);
        b.pos[i] = i;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = 1;
    }
    b.n_tokens = n;
    if (llama_decode(ctx, b) != 0)
        return 1;
    FILE *out = fopen(argv[3], "wb");
    if (!out)
        return 1;
    printf("{\"vocab\": %d, \"positions\": %d, \"argmax\": [", V, n);
    for (int i = 0; i < n; i++) {
        const float *row = llama_get_logits_ith(ctx, i);
        int best = 0;
        for (int j = 1; j < V; j++)
            if (row[j] > row[best])
                best = j;
        printf(i ? ", %d" : "%d", best);
        for (int j = 0; j < V; j += stride)
            fwrite(&row[j], sizeof(float), 1, out);
    }
    printf("]}\n");
    fclose(out);
    llama_batch_free(b);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
