/* cli.h - the attnd command line: one binary, one function per subcommand.
 * Each takes argc/argv starting at the subcommand's name and returns the
 * process exit status (0 ok, 1 failure, 2 usage error). */
#ifndef ATTND_CLI_H
#define ATTND_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attnd_err.h"
#include "gguf.h"
#include "kv.h"
#include "quant_preset.h"

int cli_info(int argc, char **argv);
int cli_tokenize(int argc, char **argv);
int cli_mkmodel(int argc, char **argv);
int cli_logits(int argc, char **argv);
int cli_attention(int argc, char **argv);
int cli_generate(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_quantize(int argc, char **argv);

/* Parses a decimal unsigned option value within [lo, hi]; prints a message
 * naming OPT and returns false when it is not one. */
bool cli_parse_u32(const char *opt, const char *s, uint32_t lo, uint32_t hi, uint32_t *out);
bool cli_parse_u64(const char *opt, const char *s, uint64_t *out);
bool cli_parse_f32(const char *opt, const char *s, float *out);
/* "f32" or "f16" for --kv-type. */
bool cli_parse_kv_type(const char *s, kv_dtype *out);
/* "copy" or "map" for --weights (gguf_load). */
bool cli_parse_weights(const char *s, gguf_load *out);

/* The preset names, comma-separated, into BUF. */
void cli_preset_names(char *buf, size_t size);
/* Parses a preset name (any case) for WHAT (the option or command); prints a
 * message naming S and listing the presets when it is none. */
bool cli_parse_preset(const char *what, const char *s, quant_preset *out);

/* Adds a small built-in SentencePiece vocabulary (bytes, ASCII, common English
 * words) to W: the tokenizer of the demo model, so that it needs no data files. */
int cli_demo_vocab_write(gguf_writer *w, uint32_t *n_vocab, attnd_err *err);

#endif
