/* cmd_tokenize.c - `attnd tokenize -m MODEL.gguf`: all of standard input as
 * one text, ids on one line. A stable interface: other implementations'
 * tokenizers are checked against it. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "tok.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: attnd tokenize -m MODEL.gguf [--no-special] [--special] < TEXT\n\n"
            "Reads all of standard input as one text and prints its token ids on one\n"
            "line, space-separated, with BOS (and EOS) exactly when the model's\n"
            "tokenizer adds them.\n\n"
            "options:\n"
            "  -m, --model PATH  GGUF file with a tokenizer (tokenizer.ggml.*)\n"
            "  --no-special      do not add BOS/EOS\n"
            "  --special         control tokens written in the text (<|im_start|>) become\n"
            "                    their ids instead of being tokenized as text\n"
            "  --pieces          print each id with the bytes it decodes to, one per line\n"
            "  -h, --help        show this help\n");
}

static char *read_stdin(size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0)
            break;
        if (n == cap) {
            char *t = cap < SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
            if (!t) {
                free(buf);
                return NULL;
            }
            buf = t;
            cap *= 2;
        }
    }
    *len = n;
    return buf;
}

int cli_tokenize(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},
        {"no-special", no_argument, NULL, 'N'},
        {"special", no_argument, NULL, 'S'},
        {"pieces", no_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *model = NULL;
    bool special = true, parse_special = false, pieces = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'N': special = false; break;
        case 'S': parse_special = true; break;
        case 'P': pieces = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!model || optind != argc) {
        usage(stderr);
        return 2;
    }
    attnd_err err = {0};
    gguf_file *f;
    tok_vocab *tv;
    if (gguf_open(model, &f, &err) != ATTND_OK) {
        fprintf(stderr, "attnd tokenize: %s\n", err.msg);
        return 1;
    }
    int rc = tok_load(f, &tv, &err);
    gguf_close(f);
    if (rc != ATTND_OK) {
        fprintf(stderr, "attnd tokenize: %s\n", err.msg);
        return 1;
    }
    if (tok_warning(tv))
        fprintf(stderr, "attnd tokenize: warning: %s\n", tok_warning(tv));
    size_t len;
    char *text = read_stdin(&len);
    if (!text || ferror(stdin)) {
        fprintf(stderr, "attnd tokenize: cannot read standard input\n");
        free(text);
        tok_free(tv);
        return 1;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    unsigned flags = (special ? TOK_ADD_SPECIAL : 0u) | (parse_special ? TOK_PARSE_SPECIAL : 0u);
    rc = tok_encode(tv, text, len, flags, &ids, &n, &err);
    free(text);
    if (rc != ATTND_OK) {
        fprintf(stderr, "attnd tokenize: %s\n", err.msg);
        tok_free(tv);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        if (pieces) {
            char buf[256];
            long pl = tok_piece(tv, ids[i], buf, sizeof buf);
            printf("%d\t'%.*s'\n", ids[i], (int)(pl < 0 ? 0 : pl > 255 ? 255 : pl), buf);
        } else {
            printf(i ? " %d" : "%d", ids[i]);
        }
    }
    if (!pieces)
        printf("\n");
    free(ids);
    tok_free(tv);
    return fflush(stdout) == 0 ? 0 : 1;
}
