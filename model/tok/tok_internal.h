/* tok_internal.h - what the files of model/tok/ share: the tok_vocab layout,
 * the string map, the growable id list, the merge engine common to both BPE
 * flavours, the pre-tokenizer and each kind's encoder.
 * Not part of the public API (see tok.h). */
#ifndef ATTND_TOK_INTERNAL_H
#define ATTND_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tok.h"

/* ------------------------------------------------------------ string map */

/* Open addressing (linear probing) from byte strings to int32. Keys are not
 * copied: they point into an arena owned by the tok_vocab. Sized once for the
 * number of keys it will hold, so it never rehashes. */
typedef struct tok_map_slot {
    const char *key; /* NULL: empty slot */
    size_t len;
    uint64_t hash;
    int32_t val;
} tok_map_slot;

typedef struct tok_map {
    tok_map_slot *slots;
    size_t mask; /* capacity - 1; capacity is a power of two */
} tok_map;

int tok_map_init(tok_map *m, size_t n_keys, attnd_err *err);
void tok_map_free(tok_map *m);
/* Inserts KEY. If it is present already, OVERWRITE decides whether VAL
 * replaces the old value (the map must have been sized for all keys). */
void tok_map_put(tok_map *m, const char *key, size_t len, int32_t val, bool overwrite);
/* Value of KEY, or -1. */
int32_t tok_map_get(const tok_map *m, const char *key, size_t len);
/* Value of the key A + " " + B (a BPE merge), or -1, without building it. */
int32_t tok_map_get_pair(const tok_map *m, const char *a, size_t alen, const char *b,
                         size_t blen);

/* ---------------------------------------------------------------- vocab */

typedef struct tok_pre tok_pre; /* tok_pre.c: a compiled pre-tokenizer */

struct tok_vocab {
    tok_kind kind;
    int32_t n_vocab;
    char *arena;      /* token texts, each followed by a NUL */
    size_t *text_off; /* n_vocab + 1 offsets into arena */
    uint8_t *types;   /* tok_type per token */
    float *scores;    /* per token; NULL when the file has none (all 0) */
    tok_map tokens;   /* text -> id */

    char *merge_arena; /* BPE merges "left right", each followed by a NUL */
    size_t n_merges;
    tok_map merges; /* "left right" -> rank */

    int32_t bos, eos, unk, pad, eot, eom; /* -1: none */
    bool add_bos, add_eos, add_space_prefix;
    /* SPM: id of "<0xXX>"; BPE: id of the byte's mapped character; -1: none. */
    int32_t byte_tok[256];
    int32_t eog[16]; /* ids that end generation */
    size_t n_eog;
    int32_t *specials; /* control, unknown and user-defined ids, longest text first */
    size_t n_specials;

    tok_pre *pre;          /* BPE only */
    char *chat_template;   /* tokenizer.chat_template, NUL-terminated; NULL: none */
    size_t chat_template_len;
    char warning[160];     /* what loading wants the user told ("" if nothing) */
};

static inline size_t tok_len_of(const tok_vocab *v, int32_t id)
{
    return v->text_off[id + 1] - v->text_off[id] - 1;
}

static inline const char *tok_text_of(const tok_vocab *v, int32_t id)
{
    return v->arena + v->text_off[id];
}

/* Whether T[0, N) spells a SentencePiece byte token "<0xXX>" (*BYTE = XX). */
bool tok_is_byte_text(const char *t, size_t n, unsigned *byte);

/* ------------------------------------------------------------ id list */

typedef struct tok_ids {
    int32_t *v;
    size_t n, cap;
} tok_ids;

int tok_ids_push(tok_ids *ids, int32_t id, attnd_err *err);

/* Room for NEED elements of ELEM bytes in the malloc'd array *P of *CAP
 * (growing by doubling, overflow-checked); the tokenizer's one growable
 * array. ATTND_ENOMEM leaves *P and *CAP as they were. */
int tok_reserve(void **p, size_t *cap, size_t need, size_t elem, attnd_err *err);

/* ------------------------------------------------------------ merge engine */

/* A symbol of the text being merged. Symbols are adjacent in one buffer, so a
 * merged pair is again one contiguous run of bytes. */
typedef struct tok_sym {
    const char *text;
    size_t n;          /* 0: merged into its left neighbour */
    size_t prev, next; /* TOK_NONE at the ends */
} tok_sym;

#define TOK_NONE SIZE_MAX

/* Whether LEFT and RIGHT may merge, and with which priority (higher merges
 * first; ties go to the leftmost pair). */
typedef bool (*tok_pair_fn)(const tok_vocab *v, const char *left, size_t left_n,
                            const char *right, size_t right_n, double *prio);

typedef struct tok_bigram tok_bigram;

/* Scratch space reused across calls within one encode (never shared). */
typedef struct tok_merger {
    tok_bigram *heap;
    size_t n, cap;
} tok_merger;

/* Merges the linked symbols SYMS[0..N) (prev/next set up as a chain) until no
 * allowed pair is left. The surviving symbols are reached from SYMS[0]. */
int tok_merge(const tok_vocab *v, tok_pair_fn pair, tok_sym *syms, size_t n,
              tok_merger *m, attnd_err *err);
void tok_merger_free(tok_merger *m);

/* ------------------------------------------------------------ per kind */

/* SPACE_PREFIX: start with SentencePiece's dummy-prefix space (the text
 * begins the input or follows a special token, and the vocabulary adds it). */
int tok_spm_encode(const tok_vocab *v, const char *text, size_t len, bool space_prefix,
                   tok_ids *out, attnd_err *err);

/* The pre-tokenizer named NAME (tokenizer.ggml.pre, LEN bytes; "default"
 * when the file names none). An unknown name gets the GPT-2 rule and *KNOWN
 * false. */
int tok_pre_new(const char *name, size_t len, tok_pre **out, bool *known, attnd_err *err);
void tok_pre_free(tok_pre *p);
const char *tok_pre_name(const tok_pre *p);
bool tok_pre_ignores_merges(const tok_pre *p);
bool tok_pre_nfc(const tok_pre *p); /* text is NFC-normalized before splitting */
/* Called with each chunk of the text in order; a non-OK return stops. */
typedef int (*tok_chunk_fn)(void *ctx, const char *chunk, size_t n, attnd_err *err);
int tok_pre_split(const tok_pre *p, const char *text, size_t len, tok_chunk_fn fn, void *ctx,
                  attnd_err *err);
int tok_bpe_encode(const tok_vocab *v, const char *text, size_t len, tok_ids *out,
                   attnd_err *err);

/* TEXT[0, LEN) in Unicode Normalization Form C (tok_nfc.c), malloc'd in *OUT;
 * invalid UTF-8 bytes are kept as they are. */
int tok_nfc(const char *text, size_t len, char **out, size_t *out_len, attnd_err *err);

/* GPT-2's reversible byte <-> printable code point mapping (bytes_to_unicode). */
uint32_t tok_bpe_byte_to_cp(uint8_t b);
/* The byte code point CP stands for, or -1 if CP is not in the mapping. */
int tok_bpe_cp_to_byte(uint32_t cp);

#endif
