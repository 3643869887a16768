/* demo_vocab.c - a small built-in SentencePiece-style vocabulary, so the demo
 * model (`attnd mkmodel` without --vocab) needs no data files: special tokens,
 * 256 byte-fallback tokens, printable ASCII, and common English words with all
 * their prefixes (SentencePiece merges pairs, so every prefix must exist). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tok.h"

static const char *const k_words[] = {
    "the", "of", "and", "to", "in", "is", "was", "that", "for", "it", "with", "as", "on",
    "be", "at", "by", "this", "had", "not", "are", "but", "from", "or", "have", "an",
    "they", "which", "one", "you", "were", "her", "all", "she", "there", "would", "their",
    "we", "him", "been", "has", "when", "who", "will", "more", "no", "if", "out", "so",
    "said", "what", "up", "its", "about", "into", "than", "them", "can", "only", "other",
    "new", "some", "could", "time", "these", "two", "may", "then", "do", "first", "any",
    "my", "now", "such", "like", "our", "over", "man", "me", "even", "most", "made",
    "after", "also", "did", "many", "before", "must", "through", "back", "years", "where",
    "much", "your", "way", "well", "down", "should", "because", "each", "just", "those",
    "people", "how", "too", "little", "state", "good", "very", "make", "world", "still",
    "own", "see", "men", "work", "long", "get", "here", "between", "both", "life", "being",
    "under", "never", "day", "same", "another", "know", "while", "last", "might", "us",
    "great", "old", "year", "off", "come", "since", "against", "go", "came", "right",
    "used", "take", "three", "hello", "model", "token", "attention", "server", "echoes",
};

struct vocab_build {
    char **text;
    float *score;
    int32_t *type;
    size_t n, cap;
};

static int add(struct vocab_build *b, const char *s, size_t len, float score, int32_t type)
{
    for (size_t i = 0; i < b->n; i++)
        if (strlen(b->text[i]) == len && memcmp(b->text[i], s, len) == 0)
            return 0; /* already there (a shared prefix) */
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 512;
        char **t = realloc(b->text, cap * sizeof *t);
        if (!t)
            return -1;
        b->text = t;
        float *sc = realloc(b->score, cap * sizeof *sc);
        if (!sc)
            return -1;
        b->score = sc;
        int32_t *ty = realloc(b->type, cap * sizeof *ty);
        if (!ty)
            return -1;
        b->type = ty;
        b->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    memcpy(copy, s, len);
    copy[len] = '\0';
    b->text[b->n] = copy;
    b->score[b->n] = score;
    b->type[b->n] = type;
    b->n++;
    return 0;
}

int cli_demo_vocab_write(gguf_writer *w, uint32_t *n_vocab, attnd_err *err)
{
    static const char space[] = "\xe2\x96\x81"; /* U+2581, SentencePiece's space */
    struct vocab_build b = {0};
    int fail = 0;
    fail |= add(&b, "<unk>", 5, 0.0f, TOK_TYPE_UNKNOWN);
    fail |= add(&b, "<s>", 3, 0.0f, TOK_TYPE_CONTROL);
    fail |= add(&b, "</s>", 4, 0.0f, TOK_TYPE_CONTROL);
    for (int i = 0; i < 256; i++) {
        char t[8];
        snprintf(t, sizeof t, "<0x%02X>", i);
        fail |= add(&b, t, 6, 0.0f, TOK_TYPE_BYTE);
    }
    fail |= add(&b, space, 3, -1000.0f, TOK_TYPE_NORMAL);
    for (char ch = 0x21; ch < 0x7f; ch++)
        fail |= add(&b, &ch, 1, -1000.0f, TOK_TYPE_NORMAL);
    for (size_t i = 0; i < sizeof k_words / sizeof k_words[0]; i++) {
        char piece[64];
        size_t wl = strlen(k_words[i]);
        memcpy(piece, space, 3);
        memcpy(piece + 3, k_words[i], wl);
        /* Longer pieces score higher so that merging runs to whole words. */
        for (size_t len = 4; len <= 3 + wl; len++)
            fail |= add(&b, piece, len, -1000.0f + 10.0f * (float)len - (float)i * 1e-3f,
                        TOK_TYPE_NORMAL);
    }
    int rc = ATTND_OK;
    gguf_str *strs = calloc(b.n ? b.n : 1, sizeof *strs);
    if (fail || !strs) {
        rc = attnd_err_set(err, ATTND_ENOMEM, "demo vocabulary: out of memory");
    } else {
        for (size_t i = 0; i < b.n; i++)
            strs[i] = (gguf_str){b.text[i], strlen(b.text[i])};
        if ((rc = gguf_writer_set_str(w, "tokenizer.ggml.model", "llama", err)) == ATTND_OK &&
            (rc = gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, strs, b.n,
                                      err)) == ATTND_OK &&
            (rc = gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, b.score,
                                      b.n, err)) == ATTND_OK &&
            (rc = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, b.type,
                                      b.n, err)) == ATTND_OK &&
            (rc = gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0, err)) == ATTND_OK &&
            (rc = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1, err)) == ATTND_OK &&
            (rc = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2, err)) == ATTND_OK &&
            (rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true, err)) == ATTND_OK)
            rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false, err);
        *n_vocab = (uint32_t)b.n;
    }
    for (size_t i = 0; i < b.n; i++)
        free(b.text[i]);
    free(b.text);
    free(b.score);
    free(b.type);
    free(strs);
    return rc;
}
