/* tok.h - tokenizers built from GGUF metadata (tokenizer.ggml.*).
 *
 * Two kinds, chosen by tokenizer.ggml.model:
 *   "llama" - SentencePiece BPE: merges driven by token scores, dummy-prefix
 *             space, whitespace as U+2581, <0xXX> byte-fallback tokens.
 *   "gpt2"  - byte-level BPE: the pre-tokenizer tokenizer.ggml.pre names
 *             (GPT-2, Llama 3, Qwen 2, DeepSeek, Falcon, ...: tok_pre.c)
 *             cuts the text, bytes map to printable code points, merges by
 *             rank.
 *
 * A tok_vocab copies everything it needs out of the gguf_file: the file may be
 * closed afterwards. A tok_vocab is immutable after tok_load() and may be used
 * from several threads at once; a tok_stream belongs to one thread. */
#ifndef ATTND_TOK_H
#define ATTND_TOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attnd_err.h"
#include "gguf.h"

typedef struct tok_vocab tok_vocab;

typedef enum tok_kind {
    TOK_KIND_SPM = 1, /* tokenizer.ggml.model = "llama" */
    TOK_KIND_BPE = 2, /* tokenizer.ggml.model = "gpt2" */
} tok_kind;

/* Token types as stored in tokenizer.ggml.token_type. */
typedef enum tok_type {
    TOK_TYPE_UNDEFINED = 0,
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6,
} tok_type;

int tok_load(const gguf_file *f, tok_vocab **out, attnd_err *err);
void tok_free(tok_vocab *v);

tok_kind tok_kind_of(const tok_vocab *v);
const char *tok_kind_name(tok_kind k); /* "llama (SentencePiece BPE)", ... */
int32_t tok_n_vocab(const tok_vocab *v);
size_t tok_n_merges(const tok_vocab *v); /* 0 for SentencePiece */
/* Special token ids; -1 when the vocabulary has none. */
int32_t tok_bos(const tok_vocab *v);
int32_t tok_eos(const tok_vocab *v);
int32_t tok_unk(const tok_vocab *v);
int32_t tok_pad(const tok_vocab *v);
bool tok_adds_bos(const tok_vocab *v);
bool tok_adds_eos(const tok_vocab *v);
bool tok_is_eog(const tok_vocab *v, int32_t id); /* end of generation (EOS, ...) */
/* The ids that end generation (EOS, EOT, EOM, chat end-of-turn tokens). */
size_t tok_eog_ids(const tok_vocab *v, const int32_t **ids);
/* tokenizer.ggml.pre as loaded ("default" when absent; NULL for SentencePiece). */
const char *tok_pre_type(const tok_vocab *v);
/* tokenizer.chat_template (a Jinja template, NUL-terminated, *LEN bytes), or
 * NULL when the file has none. */
const char *tok_chat_template(const tok_vocab *v, size_t *len);
/* What loading wants the user told (an unknown pre-tokenizer), or NULL. */
const char *tok_warning(const tok_vocab *v);

/* Raw text of token ID as stored in the vocabulary (NULL if out of range). */
const char *tok_text(const tok_vocab *v, int32_t id, size_t *len);
tok_type tok_type_of(const tok_vocab *v, int32_t id);

typedef enum tok_encode_flags {
    /* BOS/EOS added exactly when the vocabulary says so */
    TOK_ADD_SPECIAL = 1,
    /* control tokens spelled in the text ("<|im_start|>") become their ids;
     * otherwise they are tokenized as ordinary text. User-defined tokens
     * (Qwen's "<think>") are matched either way, as the reference does. */
    TOK_PARSE_SPECIAL = 2,
} tok_encode_flags;

/* Tokenizes LEN bytes of TEXT; FLAGS is a set of tok_encode_flags. Any bytes
 * are accepted: invalid UTF-8 is tokenized deterministically (each invalid
 * byte as its own byte token). *IDS is malloc'd; the caller frees it. */
int tok_encode(const tok_vocab *v, const char *text, size_t len, unsigned flags, int32_t **ids,
               size_t *n_ids, attnd_err *err);

/* Bytes that token ID contributes to text: "<0x0A>" gives "\n", U+2581 gives
 * " ", byte-level code points give their bytes, control tokens give nothing.
 * Writes at most CAP bytes to BUF and returns the full length (like snprintf,
 * without a terminator), or -1 for an id out of range. */
long tok_piece(const tok_vocab *v, int32_t id, char *buf, size_t cap);

/* Decodes IDS to bytes (malloc'd, NUL-terminated for convenience; *LEN
 * excludes the NUL). With AT_TEXT_START, the dummy-prefix space a
 * SentencePiece vocabulary adds is removed from the first piece. The result may
 * contain invalid UTF-8 if the ids spell it. */
int tok_decode(const tok_vocab *v, const int32_t *ids, size_t n, bool at_text_start,
               char **text, size_t *len, attnd_err *err);

/* Incremental decoding for streaming: each push returns the text that became
 * complete, always whole UTF-8 characters. Bytes of a character split across
 * tokens wait for the rest; a byte that can never start or continue a valid
 * character comes out as U+FFFD (one per byte), so output is always valid UTF-8
 * and no input byte disappears unseen. */
typedef struct tok_stream tok_stream;

tok_stream *tok_stream_new(const tok_vocab *v, bool at_text_start);
void tok_stream_free(tok_stream *s);
/* *OUT points into the stream and is valid until the next call on it. */
int tok_stream_push(tok_stream *s, int32_t id, const char **out, size_t *out_len,
                    attnd_err *err);
/* Emits whatever is held back (an incomplete character becomes U+FFFD). */
int tok_stream_flush(tok_stream *s, const char **out, size_t *out_len);

#endif
