/* main.c - entry point of the attnd binary: dispatches to subcommands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} k_cmds[] = {
    {"info", cli_info, "describe a GGUF model: architecture, shapes, tokenizer, tensors, KV size"},
    {"tokenize", cli_tokenize, "tokenize standard input with a model's tokenizer, print ids"},
    {"serve", cli_serve, "serve a model over HTTP (streaming, continuous batching)"},
    {"generate", cli_generate, "generate text from a prompt, streamed to stdout"},
    {"logits", cli_logits, "write raw logits for a token sequence (engine checks)"},
    {"attention", cli_attention, "print the attention weights of a prompt as JSON (/v1/attention)"},
    {"bench", cli_bench, "measure the engine against this machine's ceilings"},
    {"quantize", cli_quantize, "convert a model's weights to a quantization preset (Q4_K_M, ...)"},
    {"mkmodel", cli_mkmodel, "write a synthetic GGUF model with random weights"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: attnd COMMAND [OPTIONS]\n\n"
                 "attnd serves decoder-only language models stored as GGUF files.\n\n"
                 "commands:\n");
    for (size_t i = 0; i < sizeof k_cmds / sizeof k_cmds[0]; i++)
        fprintf(out, "  %-10s %s\n", k_cmds[i].name, k_cmds[i].help);
    fprintf(out, "\n'attnd COMMAND --help' describes each command's options.\n"
                 "'attnd --version' prints the version.\n");
}

/* Debian's OpenBLAS (0.3.21) takes AVX-512 CPUs it does not know (Zen 4/5)
 * for Haswell and runs its AVX2 kernels at half the speed. It reads
 * OPENBLAS_CORETYPE only when it loads, before main: so when the CPU has
 * AVX-512 and the user has not chosen a core type, set it and re-exec. */
static void pick_openblas_kernels(char **argv)
{
#if defined(__x86_64__)
    if (getenv("OPENBLAS_CORETYPE"))
        return;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vl"))
        return;
    setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc): run on with the library's own choice */
#else
    (void)argv;
#endif
}

int main(int argc, char **argv)
{
    pick_openblas_kernels(argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("attnd %s\n", ATTND_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof k_cmds / sizeof k_cmds[0]; i++)
        if (strcmp(argv[1], k_cmds[i].name) == 0)
            return k_cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "attnd: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
