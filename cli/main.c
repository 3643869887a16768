/* main.c - entry point of the attnd binary: dispatches to subcommands. */
#include <stdio.h>
#include <string.h>

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

int main(int argc, char **argv)
{
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
