/* test_tok.c - tokenizer suite: llama.cpp's test vectors for both tokenizer
 * kinds, BOS/EOS flags, decoding and streaming, robustness against invalid
 * UTF-8 and long inputs, tok_load's validation, and the UTF-8 helpers. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnd_utf8.h"
#include "gguf.h"
#include "test_util.h"
#include "tok.h"
#include "tok_internal.h"

#define VOCAB_SPM "vocab/ggml-vocab-llama-spm.gguf"
#define VOCAB_BPE "vocab/ggml-vocab-gpt-2.gguf"
#define VOCAB_LLAMA3 "vocab/ggml-vocab-llama3.gguf"
#define VOCAB_QWEN3 "vocab/ggml-vocab-qwen3.gguf"

/* ------------------------------------------------------------ helpers */

static tok_vocab *load_vocab(const char *rel)
{
    const char *path = test_shared(rel);
    gguf_file *f = NULL;
    attnd_err err = {0};
    int rc = gguf_open(path, &f, &err);
    cr_assert_eq(rc, ATTND_OK, "gguf_open %s: %s", path, err.msg);
    tok_vocab *v = NULL;
    rc = tok_load(f, &v, &err);
    /* The vocabulary must not depend on the file staying open. */
    gguf_close(f);
    cr_assert_eq(rc, ATTND_OK, "tok_load %s: %s", path, err.msg);
    return v;
}

static void format_ids(const int32_t *ids, size_t n, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && o + 16 < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%d", i ? " " : "", ids[i]);
}

static int32_t *encode(const tok_vocab *v, const void *s, size_t len, bool special, size_t *n)
{
    int32_t *ids = NULL;
    attnd_err err = {0};
    int rc = tok_encode(v, s, len, special ? TOK_ADD_SPECIAL : 0u, &ids, n, &err);
    cr_assert_eq(rc, ATTND_OK, "tok_encode: %s", err.msg);
    cr_assert(ids);
    return ids;
}

static char *decode(const tok_vocab *v, const int32_t *ids, size_t n, bool start, size_t *len)
{
    char *t = NULL;
    attnd_err err = {0};
    int rc = tok_decode(v, ids, n, start, &t, len, &err);
    cr_assert_eq(rc, ATTND_OK, "tok_decode: %s", err.msg);
    cr_assert(t);
    cr_assert_eq(t[*len], '\0');
    return t;
}

static int32_t find_token(const tok_vocab *v, const char *s)
{
    for (int32_t i = 0; i < tok_n_vocab(v); i++) {
        size_t n;
        const char *t = tok_text(v, i, &n);
        if (n == strlen(s) && memcmp(t, s, n) == 0)
            return i;
    }
    return -1;
}

/* Decodes IDS with a stream, pushing one id at a time; returns the
 * concatenated output (malloc'd) and checks every piece is valid UTF-8. */
static char *stream_all(const tok_vocab *v, const int32_t *ids, size_t n, bool start,
                        size_t *len)
{
    tok_stream *s = tok_stream_new(v, start);
    cr_assert(s);
    size_t cap = 64, used = 0;
    char *buf = malloc(cap);
    for (size_t i = 0; i <= n; i++) {
        const char *out;
        size_t out_len;
        if (i < n) {
            attnd_err err = {0};
            int rc = tok_stream_push(s, ids[i], &out, &out_len, &err);
            cr_assert_eq(rc, ATTND_OK, "tok_stream_push(%d): %s", ids[i], err.msg);
        } else {
            cr_assert_eq(tok_stream_flush(s, &out, &out_len), ATTND_OK);
        }
        cr_assert(attnd_utf8_valid(out, out_len), "stream output after id %zu is not UTF-8", i);
        while (used + out_len + 1 > cap)
            buf = realloc(buf, cap *= 2);
        memcpy(buf + used, out, out_len);
        used += out_len;
    }
    buf[used] = '\0';
    tok_stream_free(s);
    *len = used;
    return buf;
}

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: fixed seeds keep the "random" cases reproducible. */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* Reads the integer array under KEY of a golden JSON file into IDS. */
static size_t json_ids(const char *json, const char *key, int32_t *ids, size_t cap)
{
    size_t n;
    int32_t *v = test_json_ints(json, key, &n);
    cr_assert_leq(n, cap);
    memcpy(ids, v, n * sizeof *v);
    free(v);
    return n;
}

/* ------------------------------------------------------------ test vectors */

static void check_vectors(const char *rel)
{
    tok_vocab *v = load_vocab(rel);
    test_vectors vs;
    test_vectors_load(rel, &vs);
    cr_assert_eq(vs.n, 46u, "%s: expected 46 texts, found %zu", rel, vs.n);
    size_t failed = 0;
    for (size_t i = 0; i < vs.n; i++) {
        int32_t want[512];
        size_t n_want = test_parse_ids(vs.lines[i], want, 512);
        size_t n_got;
        int32_t *got = encode(v, vs.texts[i].p, vs.texts[i].n, false, &n_got);
        bool same = n_got == n_want && memcmp(got, want, n_got * sizeof *got) == 0;
        if (!same) {
            char ws[4096], gs[4096];
            format_ids(want, n_want, ws, sizeof ws);
            format_ids(got, n_got, gs, sizeof gs);
            cr_expect(same, "%s: text %zu (\"%.*s\"): expected [%s], got [%s]", rel, i,
                      (int)vs.texts[i].n, vs.texts[i].p, ws, gs);
            failed++;
        }
        free(got);
    }
    cr_assert_eq(failed, 0u, "%s: %zu of %zu texts tokenized differently", rel, failed, vs.n);
    test_vectors_free(&vs);
    tok_free(v);
}

Test(tok_vectors, llama_spm)
{
    check_vectors(VOCAB_SPM);
}

Test(tok_vectors, gpt2)
{
    check_vectors(VOCAB_BPE);
}

/* pre = "llama-bpe": digits in threes, contractions of either case, whole-word
 * tokens taken before merges. */
Test(tok_vectors, llama3, .timeout = 60)
{
    check_vectors(VOCAB_LLAMA3);
}

/* pre = "qwen2": single digits; user-defined tokens. */
Test(tok_vectors, qwen3, .timeout = 60)
{
    check_vectors(VOCAB_QWEN3);
}

/* ------------------------------------------------------------ special tokens in text */

static int32_t *encode_flags(const tok_vocab *v, const char *s, unsigned flags, size_t *n)
{
    int32_t *ids = NULL;
    attnd_err err = {0};
    cr_assert_eq(tok_encode(v, s, strlen(s), flags, &ids, n, &err), ATTND_OK, "%s", err.msg);
    return ids;
}

static void expect_ids(const int32_t *got, size_t n, const int32_t *want, size_t n_want,
                       const char *what)
{
    char gs[1024], ws[1024];
    format_ids(got, n, gs, sizeof gs);
    format_ids(want, n_want, ws, sizeof ws);
    cr_assert(n == n_want && memcmp(got, want, n * sizeof *got) == 0,
              "%s: expected [%s], got [%s]", what, ws, gs);
}

Test(tok_parse_special, llama3_control_tokens, .timeout = 60)
{
    tok_vocab *v = load_vocab(VOCAB_LLAMA3);
    cr_assert_str_eq(tok_pre_type(v), "llama-bpe");
    cr_assert_null(tok_warning(v));
    const char *text = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
    size_t n, n_hi, n_plain;
    int32_t *hi = encode_flags(v, "user", 0, &n_hi);
    cr_assert_eq(n_hi, 1u);
    int32_t *ids = encode_flags(v, text, TOK_ADD_SPECIAL | TOK_PARSE_SPECIAL, &n);
    cr_assert_geq(n, 6u);
    cr_assert_eq(ids[0], 128000, "BOS first");
    cr_assert_eq(ids[1], 128006, "<|start_header_id|> is one id");
    cr_assert_eq(ids[2], hi[0]);
    cr_assert_eq(ids[3], 128007);
    cr_assert_eq(ids[n - 1], 128009, "<|eot_id|> is one id");
    /* Without parse_special the same text is plain text: no control ids. */
    int32_t *plain = encode_flags(v, text, 0, &n_plain);
    for (size_t i = 0; i < n_plain; i++)
        cr_assert(plain[i] < 128000, "control id %d from unparsed text", plain[i]);
    cr_assert_gt(n_plain, n);
    /* Pieces around a special token are tokenized on their own. */
    int32_t *a = encode_flags(v, "a<|eot_id|>b", TOK_PARSE_SPECIAL, &n);
    size_t na, nb;
    int32_t *ta = encode_flags(v, "a", 0, &na), *tb = encode_flags(v, "b", 0, &nb);
    int32_t want[] = {ta[0], 128009, tb[0]};
    expect_ids(a, n, want, 3, "a<|eot_id|>b");
    free(a), free(ta), free(tb), free(ids), free(plain), free(hi);
    tok_free(v);
}

Test(tok_parse_special, qwen3_user_defined_always, .timeout = 60)
{
    tok_vocab *v = load_vocab(VOCAB_QWEN3);
    cr_assert_str_eq(tok_pre_type(v), "qwen2");
    size_t n;
    /* <think> is user-defined: one id with or without parse_special;
     * <|im_start|> is a control token: one id only when parsing them. */
    int32_t *ids = encode_flags(v, "<think>", 0, &n);
    int32_t think[] = {151667};
    expect_ids(ids, n, think, 1, "<think>");
    free(ids);
    ids = encode_flags(v, "<|im_start|>user", TOK_PARSE_SPECIAL, &n);
    cr_assert_eq(n, 2u);
    cr_assert_eq(ids[0], 151644);
    free(ids);
    ids = encode_flags(v, "<|im_start|>", 0, &n);
    cr_assert_gt(n, 1u);
    for (size_t i = 0; i < n; i++)
        cr_assert_neq(ids[i], 151644);
    free(ids);
    /* No BOS in Qwen: add_special adds nothing. */
    ids = encode_flags(v, "x", TOK_ADD_SPECIAL, &n);
    cr_assert_eq(n, 1u);
    free(ids);
    tok_free(v);
}

Test(tok_parse_special, spm_space_prefix_after_special)
{
    /* SentencePiece: text right after a special token gets the dummy-prefix
     * space again, as at the start ("<s>hi" = "<s>" + "▁hi"). */
    tok_vocab *v = load_vocab(VOCAB_SPM);
    size_t n, n_hi;
    int32_t *hi = encode_flags(v, "hi", 0, &n_hi);
    int32_t *ids = encode_flags(v, "<s>hi", TOK_PARSE_SPECIAL, &n);
    cr_assert_eq(n, 1 + n_hi);
    cr_assert_eq(ids[0], 1);
    cr_assert_arr_eq(ids + 1, hi, n_hi * sizeof *hi);
    free(ids), free(hi);
    tok_free(v);
}

Test(tok_parse_special, bad_flags_rejected)
{
    tok_vocab *v = load_vocab(VOCAB_SPM);
    int32_t *ids = (int32_t *)1;
    size_t n = 7;
    attnd_err err = {0};
    cr_assert_eq(tok_encode(v, "a", 1, 4u, &ids, &n, &err), ATTND_EINVAL);
    cr_assert_null(ids);
    tok_free(v);
}

/* ------------------------------------------------------------ NFC */

static size_t hex_cps_to_utf8(const char *s, const char *end, char *out)
{
    size_t n = 0;
    while (s < end) {
        char *e;
        unsigned long cp = strtoul(s, &e, 16);
        if (e == s)
            break;
        n += attnd_utf8_encode((uint32_t)cp, out + n);
        s = e;
    }
    return n;
}

/* tok_nfc against Python's unicodedata on every code point NFC changes, the
 * decomposed form of every composite, and random mark sequences. */
Test(tok_nfc, matches_unicodedata)
{
    char *data = test_read_file(ATTND_SOURCE_DIR "/tests/data/nfc-cases.txt", NULL);
    cr_assert(data, "cannot read tests/data/nfc-cases.txt");
    size_t cases = 0, failed = 0;
    for (char *line = data; *line;) {
        char *nl = strchr(line, '\n');
        char *end = nl ? nl : line + strlen(line);
        char *arrow = strstr(line, " -> ");
        if (*line != '#' && arrow && arrow < end) {
            char in[256], want[256];
            size_t n_in = hex_cps_to_utf8(line, arrow, in);
            size_t n_want = hex_cps_to_utf8(arrow + 4, end, want);
            char *got;
            size_t n_got;
            attnd_err err = {0};
            cr_assert_eq(tok_nfc(in, n_in, &got, &n_got, &err), ATTND_OK, "%s", err.msg);
            if (n_got != n_want || memcmp(got, want, n_got) != 0) {
                if (failed++ < 10)
                    cr_expect_fail("NFC(%.*s) differs", (int)(arrow - line), line);
            }
            free(got);
            cases++;
        }
        line = nl ? nl + 1 : end;
    }
    cr_log_info("NFC: %zu cases", cases);
    cr_assert_gt(cases, 2000u);
    cr_assert_eq(failed, 0u, "%zu of %zu NFC cases differ", failed, cases);
    free(data);
}

Test(tok_nfc, invalid_bytes_pass_through)
{
    const char in[] = "e\xCC\x81\xFFx\xC3";
    char *got;
    size_t n;
    attnd_err err = {0};
    cr_assert_eq(tok_nfc(in, sizeof in - 1, &got, &n, &err), ATTND_OK);
    cr_assert_eq(n, 5u);
    cr_assert(memcmp(got, "\xC3\xA9\xFFx\xC3", 5) == 0);
    free(got);
}

/* Qwen normalizes before tokenizing: a decomposed é is the composed one;
 * Llama 3 does not. */
Test(tok_nfc, qwen_normalizes_llama3_does_not, .timeout = 60)
{
    const char *composed = "caf\xC3\xA9", *decomposed = "cafe\xCC\x81";
    size_t na, nb;
    tok_vocab *v = load_vocab(VOCAB_QWEN3);
    int32_t *a = encode_flags(v, composed, 0, &na), *b = encode_flags(v, decomposed, 0, &nb);
    expect_ids(b, nb, a, na, "qwen3: decomposed vs composed");
    free(a), free(b);
    tok_free(v);
    v = load_vocab(VOCAB_LLAMA3);
    a = encode_flags(v, composed, 0, &na);
    b = encode_flags(v, decomposed, 0, &nb);
    cr_expect(na != nb || memcmp(a, b, na * sizeof *a) != 0, "llama3 normalized the text");
    free(a), free(b);
    tok_free(v);
}

/* End of generation: EOS and the end-of-turn tokens each family uses. */
Test(tok_eog, llama3_and_qwen3, .timeout = 60)
{
    tok_vocab *v = load_vocab(VOCAB_LLAMA3);
    cr_assert(tok_is_eog(v, 128001), "<|end_of_text|> (EOS)");
    cr_assert(tok_is_eog(v, 128009), "<|eot_id|>");
    cr_assert(!tok_is_eog(v, 128000), "BOS does not end generation");
    cr_assert(!tok_is_eog(v, 128006));
    const int32_t *eog;
    size_t n = tok_eog_ids(v, &eog);
    cr_assert_eq(n, 2u);
    tok_free(v);
    v = load_vocab(VOCAB_QWEN3);
    cr_assert(tok_is_eog(v, 151645), "<|im_end|> (EOS)");
    cr_assert(tok_is_eog(v, 151643), "<|endoftext|>");
    cr_assert(!tok_is_eog(v, 151644), "<|im_start|>");
    tok_free(v);
}

/* ------------------------------------------------------------ metadata */

Test(tok_meta, llama_spm)
{
    tok_vocab *v = load_vocab(VOCAB_SPM);
    cr_assert_eq(tok_kind_of(v), TOK_KIND_SPM);
    cr_assert_str_eq(tok_kind_name(TOK_KIND_SPM), "llama (SentencePiece BPE)");
    cr_assert_eq(tok_n_vocab(v), 32000);
    cr_assert_eq(tok_n_merges(v), 0u);
    cr_assert_eq(tok_bos(v), 1);
    cr_assert_eq(tok_eos(v), 2);
    cr_assert_eq(tok_unk(v), 0);
    cr_assert_eq(tok_pad(v), -1);
    cr_assert(tok_adds_bos(v));
    cr_assert(!tok_adds_eos(v));
    cr_assert(tok_is_eog(v, 2));
    cr_assert(!tok_is_eog(v, 1));
    cr_assert(!tok_is_eog(v, 100));
    cr_assert(!tok_is_eog(v, -1));
    size_t n;
    cr_assert_str_eq(tok_text(v, 1, &n), "<s>");
    cr_assert_eq(n, 3u);
    cr_assert_null(tok_text(v, 32000, &n));
    cr_assert_null(tok_text(v, -1, &n));
    cr_assert_eq(tok_type_of(v, 0), TOK_TYPE_UNKNOWN);
    cr_assert_eq(tok_type_of(v, 1), TOK_TYPE_CONTROL);
    cr_assert_eq(tok_type_of(v, 3), TOK_TYPE_BYTE);
    cr_assert_eq(tok_type_of(v, 500), TOK_TYPE_NORMAL);
    tok_free(v);
}

Test(tok_meta, gpt2)
{
    tok_vocab *v = load_vocab(VOCAB_BPE);
    cr_assert_eq(tok_kind_of(v), TOK_KIND_BPE);
    cr_assert_str_eq(tok_kind_name(TOK_KIND_BPE), "gpt2 (byte-level BPE)");
    cr_assert_eq(tok_n_vocab(v), 50257);
    cr_assert_eq(tok_n_merges(v), 50000u);
    cr_assert_eq(tok_bos(v), 50256);
    cr_assert_eq(tok_eos(v), 50256);
    cr_assert_eq(tok_unk(v), -1);
    cr_assert(!tok_adds_bos(v), "no add_bos_token key: GPT-2 adds no BOS");
    cr_assert(!tok_adds_eos(v));
    cr_assert(tok_is_eog(v, 50256));
    cr_assert(!tok_is_eog(v, 0));
    cr_assert_eq(tok_type_of(v, 50256), TOK_TYPE_CONTROL);
    tok_free(v);
}

/* ------------------------------------------------------------ BOS / EOS */

static void check_special(const char *rel, bool want_bos)
{
    tok_vocab *v = load_vocab(rel);
    const char *s = "Hello world";
    size_t n0, n1;
    int32_t *plain = encode(v, s, strlen(s), false, &n0);
    int32_t *spec = encode(v, s, strlen(s), true, &n1);
    cr_assert_eq(tok_adds_bos(v), want_bos, "%s: adds BOS", rel);
    size_t k = 0;
    if (want_bos) {
        cr_assert_geq(n1, 1u);
        cr_assert_eq(spec[0], tok_bos(v), "%s: first token is not BOS", rel);
        k = 1;
    }
    size_t n_eos = tok_adds_eos(v) ? 1 : 0;
    cr_assert_eq(n1, n0 + k + n_eos, "%s", rel);
    cr_assert_arr_eq(spec + k, plain, n0 * sizeof *plain, "%s", rel);
    if (n_eos)
        cr_assert_eq(spec[n1 - 1], tok_eos(v));
    free(plain);
    free(spec);

    /* Empty text: just the special tokens. */
    int32_t *e = encode(v, "", 0, true, &n0);
    cr_assert_eq(n0, (size_t)(want_bos ? 1 : 0) + n_eos, "%s", rel);
    free(e);
    e = encode(v, NULL, 0, false, &n0);
    cr_assert_eq(n0, 0u);
    free(e);
    tok_free(v);
}

Test(tok_special, vocabs)
{
    check_special(VOCAB_SPM, true);
    check_special(VOCAB_BPE, false);
}

Test(tok_special, models)
{
    /* The 260K models carry no add-BOS flag: BOS is added. */
    check_special("models/stories260K.gguf", true);
    check_special("models/aidreams260K.gguf", true);
    check_special("models/llama-synth-64x2-gqa4.gguf", true);
    check_special("models/llama-synth-128x2-q8_0.gguf", true);
    check_special("models/gpt2-synth-64x2.gguf", false);
}

static void check_golden_prompt(const char *model, const char *golden)
{
    char *json = test_read_file(test_shared(golden), NULL);
    cr_assert(json, "cannot read %s", golden);
    char *prompt = test_json_str(json, "prompt");
    int32_t want[256];
    size_t n_want = json_ids(json, "prompt_tokens", want, 256);
    tok_vocab *v = load_vocab(model);
    size_t n;
    int32_t *got = encode(v, prompt, strlen(prompt), true, &n);
    char ws[2048], gs[2048];
    format_ids(want, n_want, ws, sizeof ws);
    format_ids(got, n, gs, sizeof gs);
    cr_assert(n == n_want && memcmp(got, want, n * sizeof *got) == 0,
              "%s \"%s\": expected [%s], got [%s]", model, prompt, ws, gs);
    free(got);
    tok_free(v);
    free(prompt);
    free(json);
}

Test(tok_special, golden_prompts)
{
    check_golden_prompt("models/aidreams260K.gguf", "golden/aidreams260K.echoes.json");
    check_golden_prompt("models/gpt2-synth-64x2.gguf", "golden/gpt2-synth-64x2.hello.json");
    check_golden_prompt("models/stories260K.gguf", "golden/stories260K.bos.json");
    check_golden_prompt("models/llama-synth-64x2-gqa4.gguf",
                        "golden/llama-synth-64x2-gqa4.echoes.json");
}

/* ------------------------------------------------------------ decoding */

Test(tok_decode, pieces_spm)
{
    tok_vocab *v = load_vocab(VOCAB_SPM);
    char buf[64];
    cr_assert_eq(tok_piece(v, 1, buf, sizeof buf), 0, "BOS renders as nothing");
    cr_assert_eq(tok_piece(v, 2, buf, sizeof buf), 0, "EOS renders as nothing");
    cr_assert_eq(tok_piece(v, 0, buf, sizeof buf), 0, "<unk> renders as nothing");
    cr_assert_eq(tok_piece(v, 32000, buf, sizeof buf), -1);
    cr_assert_eq(tok_piece(v, -1, buf, sizeof buf), -1);
    int32_t nl = find_token(v, "<0x0A>");
    cr_assert_eq(tok_piece(v, nl, buf, sizeof buf), 1);
    cr_assert_eq(buf[0], '\n');
    int32_t hello = find_token(v, "\xE2\x96\x81Hello");
    cr_assert_geq(hello, 0);
    cr_assert_eq(tok_piece(v, hello, buf, sizeof buf), 6);
    cr_assert_arr_eq(buf, " Hello", 6);
    /* Like snprintf: the full length, and only CAP bytes written. */
    memset(buf, 'x', sizeof buf);
    cr_assert_eq(tok_piece(v, hello, buf, 3), 6);
    cr_assert_arr_eq(buf, " Hexxx", 6);
    cr_assert_eq(tok_piece(v, hello, NULL, 0), 6);
    tok_free(v);
}

Test(tok_decode, pieces_gpt2)
{
    tok_vocab *v = load_vocab(VOCAB_BPE);
    char buf[64];
    cr_assert_eq(tok_piece(v, 50256, buf, sizeof buf), 0, "<|endoftext|> renders as nothing");
    int32_t the = find_token(v, "\xC4\xA0the"); /* "Ġthe" */
    cr_assert_geq(the, 0);
    cr_assert_eq(tok_piece(v, the, buf, sizeof buf), 4);
    cr_assert_arr_eq(buf, " the", 4);
    int32_t nl = find_token(v, "\xC4\x8A"); /* "Ċ" */
    cr_assert_eq(tok_piece(v, nl, buf, sizeof buf), 1);
    cr_assert_eq(buf[0], '\n');
    tok_free(v);
}

Test(tok_decode, aidreams_golden_text)
{
    char *json = test_read_file(test_shared("golden/aidreams260K.echoes.json"), NULL);
    cr_assert(json);
    tok_vocab *v = load_vocab("models/aidreams260K.gguf");
    int32_t ids[256];
    size_t n = json_ids(json, "input_tokens", ids, 256);
    cr_assert_eq(n, 64u);
    size_t len;
    char *t = decode(v, ids, n, true, &len);
    const char *start = "Echoes of probability unfold";
    cr_assert(strncmp(t, start, strlen(start)) == 0, "decoded \"%s\"", t);
    free(t);

    size_t np = json_ids(json, "prompt_tokens", ids, 256);
    int32_t cont[256];
    size_t nc = json_ids(json, "greedy_continuation", cont, 256);
    cr_assert_geq(nc, 60u);
    memcpy(ids + np, cont, 60 * sizeof *ids);
    char *want = test_json_str(json, "greedy_text_60");
    t = decode(v, ids, np + 60, true, &len);
    cr_assert_str_eq(t, want);
    cr_assert_eq(len, strlen(want));
    free(t);

    /* The stream gives the same text. */
    t = stream_all(v, ids, np + 60, true, &len);
    cr_assert_str_eq(t, want);
    free(t);
    free(want);
    tok_free(v);
    free(json);
}

static void check_roundtrip(const char *rel)
{
    tok_vocab *v = load_vocab(rel);
    test_vectors vs;
    test_vectors_load(rel, &vs);
    for (size_t i = 0; i < vs.n; i++) {
        const test_text *tx = &vs.texts[i];
        cr_assert(attnd_utf8_valid(tx->p, tx->n));
        size_t n, len, slen;
        int32_t *ids = encode(v, tx->p, tx->n, false, &n);
        char *t = decode(v, ids, n, true, &len);
        cr_expect(len == tx->n && memcmp(t, tx->p, len) == 0,
                  "%s: text %zu: decode(encode(\"%.*s\")) = \"%s\"", rel, i, (int)tx->n, tx->p,
                  t);
        char *st = stream_all(v, ids, n, true, &slen);
        cr_expect(slen == len && memcmp(st, t, len) == 0, "%s: text %zu: stream \"%s\"", rel, i,
                  st);
        free(st);
        free(t);
        free(ids);

        /* With the special tokens too: they render as nothing. */
        ids = encode(v, tx->p, tx->n, true, &n);
        t = decode(v, ids, n, true, &len);
        cr_expect(len == tx->n && memcmp(t, tx->p, len) == 0,
                  "%s: text %zu with BOS: \"%s\"", rel, i, t);
        free(t);
        free(ids);
    }
    test_vectors_free(&vs);
    tok_free(v);
}

Test(tok_decode, roundtrip_spm)
{
    check_roundtrip(VOCAB_SPM);
}

Test(tok_decode, roundtrip_gpt2)
{
    check_roundtrip(VOCAB_BPE);
}

Test(tok_decode, text_start_spm)
{
    tok_vocab *v = load_vocab(VOCAB_SPM);
    size_t n, len;
    int32_t *ids = encode(v, "Hello", 5, false, &n);
    char *t = decode(v, ids, n, false, &len);
    cr_assert_str_eq(t, " Hello", "mid-text the dummy-prefix space stays");
    free(t);
    t = decode(v, ids, n, true, &len);
    cr_assert_str_eq(t, "Hello");
    free(t);
    int32_t bad[] = {ids[0], 32000};
    char *out = (char *)1;
    attnd_err err = {0};
    cr_assert_eq(tok_decode(v, bad, 2, true, &out, &len, &err), ATTND_EINVAL);
    cr_assert_null(out);
    cr_assert(strstr(err.msg, "32000"), "%s", err.msg);
    free(ids);
    tok_free(v);
}

/* ------------------------------------------------------------ streaming */

Test(tok_stream, split_character)
{
    tok_vocab *v = load_vocab(VOCAB_SPM);
    int32_t e2 = find_token(v, "<0xE2>"), x82 = find_token(v, "<0x82>"),
            xac = find_token(v, "<0xAC>");
    cr_assert(e2 >= 0 && x82 >= 0 && xac >= 0);
    tok_stream *s = tok_stream_new(v, false);
    const char *out;
    size_t len;
    attnd_err err = {0};
    cr_assert_eq(tok_stream_push(s, e2, &out, &len, &err), ATTND_OK);
    cr_assert_eq(len, 0u);
    cr_assert_eq(tok_stream_push(s, x82, &out, &len, &err), ATTND_OK);
    cr_assert_eq(len, 0u);
    cr_assert_eq(tok_stream_push(s, xac, &out, &len, &err), ATTND_OK);
    cr_assert_eq(len, 3u);
    cr_assert_arr_eq(out, "\xE2\x82\xAC", 3);
    cr_assert_eq(tok_stream_flush(s, &out, &len), ATTND_OK);
    cr_assert_eq(len, 0u);

    /* Out-of-range ids are refused without disturbing the stream. */
    cr_assert_eq(tok_stream_push(s, 32000, &out, &len, &err), ATTND_EINVAL);
    cr_assert_eq(tok_stream_push(s, -5, &out, &len, &err), ATTND_EINVAL);
    tok_stream_free(s);
    tok_free(v);
}

static void push_expect(tok_stream *s, int32_t id, const char *want)
{
    const char *out;
    size_t len;
    attnd_err err = {0};
    cr_assert_eq(tok_stream_push(s, id, &out, &len, &err), ATTND_OK, "%s", err.msg);
    cr_assert_eq(len, strlen(want), "push %d: got %zu bytes \"%.*s\", want \"%s\"", id, len,
                 (int)len, out, want);
    cr_assert_arr_eq(out, want, len);
}

static void flush_expect(tok_stream *s, const char *want)
{
    const char *out;
    size_t len;
    cr_assert_eq(tok_stream_flush(s, &out, &len), ATTND_OK);
    cr_assert_eq(len, strlen(want));
    cr_assert_arr_eq(out, want, len);
}

#define FFFD "\xEF\xBF\xBD"

Test(tok_stream, invalid_bytes)
{
    tok_vocab *v = load_vocab(VOCAB_SPM);
    int32_t b[256];
    for (int i = 0; i < 256; i++) {
        char t[8];
        snprintf(t, sizeof t, "<0x%02X>", i);
        b[i] = find_token(v, t);
        cr_assert_geq(b[i], 0);
    }
    tok_stream *s = tok_stream_new(v, false);
    push_expect(s, b[0xFF], FFFD);         /* never valid */
    push_expect(s, b[0x80], FFFD);         /* lone continuation byte */
    push_expect(s, b[0xC0], FFFD);         /* overlong lead */
    push_expect(s, b[0xE2], "");           /* start of € ... */
    push_expect(s, b['a'], FFFD "a");      /* ... cut short */
    push_expect(s, b[0xF0], "");           /* 4-byte start */
    push_expect(s, b[0x9F], "");
    push_expect(s, b[0x98], "");
    push_expect(s, b[0x80], "\xF0\x9F\x98\x80");
    push_expect(s, b[0xED], "");
    push_expect(s, b[0xA0], FFFD FFFD);    /* surrogate: ED ends, A0 is stray */
    push_expect(s, b[0xE2], "");
    push_expect(s, b[0x82], "");
    flush_expect(s, FFFD);                 /* incomplete at the end */
    flush_expect(s, "");
    int32_t hello = find_token(v, "\xE2\x96\x81Hello");
    push_expect(s, b[0xC3], "");
    push_expect(s, hello, FFFD " Hello");
    push_expect(s, 1, "");                 /* BOS: nothing */
    tok_stream_free(s);

    /* At text start the dummy-prefix space goes, once. */
    s = tok_stream_new(v, true);
    push_expect(s, 1, "");
    push_expect(s, hello, "Hello");
    push_expect(s, hello, " Hello");
    tok_stream_free(s);
    tok_free(v);
}

Test(tok_stream, random_ids_match_decode)
{
    tok_vocab *v = load_vocab(VOCAB_SPM);
    uint64_t rng = 0x1234567;
    int32_t ids[64];
    for (int round = 0; round < 300; round++) {
        size_t n = 1 + (size_t)(rng_next(&rng) % 40);
        for (size_t i = 0; i < n; i++) {
            /* Mostly byte tokens (3..258), so characters get split. */
            uint64_t r = rng_next(&rng);
            ids[i] = (r % 4 != 0) ? (int32_t)(3 + (r >> 8) % 256) : (int32_t)((r >> 8) % 32000);
        }
        size_t len, slen;
        char *t = decode(v, ids, n, round % 2 == 0, &len);
        char *st = stream_all(v, ids, n, round % 2 == 0, &slen);
        if (attnd_utf8_valid(t, len))
            cr_assert(slen == len && memcmp(st, t, len) == 0, "round %d", round);
        free(t);
        free(st);
    }
    tok_free(v);
}

/* ------------------------------------------------------------ invalid UTF-8 */

static void check_lossless(const tok_vocab *v, const void *s, size_t len, const char *what)
{
    size_t n1, n2, dlen;
    int32_t *a = encode(v, s, len, false, &n1);
    int32_t *b = encode(v, s, len, false, &n2);
    cr_assert(n1 == n2 && memcmp(a, b, n1 * sizeof *a) == 0, "%s: not deterministic", what);
    for (size_t i = 0; i < n1; i++)
        cr_assert(a[i] >= 0 && a[i] < tok_n_vocab(v), "%s: bad id %d", what, a[i]);
    char *t = decode(v, a, n1, true, &dlen);
    cr_assert(dlen == len && memcmp(t, s, len) == 0, "%s: decode lost bytes (%zu -> %zu)", what,
              len, dlen);
    free(t);
    free(a);
    free(b);
}

static const struct {
    const char *s;
    size_t n;
} k_invalid[] = {
#define C(lit) {lit, sizeof(lit) - 1}
    C("\xFF"),
    C("\xFE\xFF"),
    C("\x80"),
    C("abc\x80\x80 def"),
    C("\xBF\xBF\xBF"),
    C("\xC0\x80"),             /* overlong NUL */
    C("\xC1\xBF"),             /* overlong */
    C("\xE0\x80\xAF"),         /* overlong '/' */
    C("\xF0\x80\x80\xAF"),     /* overlong '/' */
    C("\xED\xA0\x80"),         /* surrogate */
    C("\xF4\x90\x80\x80"),     /* above U+10FFFF */
    C("\xE2\x82"),             /* truncated € */
    C("x \xE2\x82"),
    C("\xE2\x82 hello"),
    C("\xF0\x9F\x98"),         /* truncated emoji */
    C("\xF0\x9F\x98 \xF0\x9F"),
    C("Hello \xFF world \xC3"),
    C("\xC3\xA9\xFF\xC3\xA9"),
    C(" \xFF"),
    C("  \xFF\xFF  x"),
    C("'\xFFs"),
    C("123\xFF" "456"),
    C("\x00\x01\x02"),
#undef C
};

static void check_invalid(const char *rel)
{
    tok_vocab *v = load_vocab(rel);
    char what[64];
    for (size_t i = 0; i < sizeof k_invalid / sizeof k_invalid[0]; i++) {
        snprintf(what, sizeof what, "%s case %zu", rel, i);
        check_lossless(v, k_invalid[i].s, k_invalid[i].n, what);
    }
    /* Random bytes, and random mixes of ASCII with high bytes. */
    uint64_t rng = 42;
    unsigned char buf[300];
    for (int round = 0; round < 200; round++) {
        size_t n = (size_t)(rng_next(&rng) % sizeof buf);
        for (size_t i = 0; i < n; i++) {
            uint64_t r = rng_next(&rng);
            buf[i] = (unsigned char)(round % 2 ? r : (r % 3 ? 0x20 + r % 0x5F : 0x80 + r % 0x80));
        }
        /* U+2581 in the input reads back as a space in SentencePiece. */
        if (memmem(buf, n, "\xE2\x96\x81", 3))
            continue;
        snprintf(what, sizeof what, "%s random %d", rel, round);
        check_lossless(v, buf, n, what);
    }
    tok_free(v);
}

Test(tok_invalid, llama_spm)
{
    check_invalid(VOCAB_SPM);
}

Test(tok_invalid, gpt2)
{
    check_invalid(VOCAB_BPE);
}

Test(tok_invalid, each_invalid_byte_is_a_byte_token)
{
    tok_vocab *v = load_vocab(VOCAB_SPM);
    size_t n;
    int32_t *ids = encode(v, "\xFF\x80", 2, false, &n);
    /* "▁", then <0xFF>, <0x80> */
    cr_assert_eq(n, 3u);
    cr_assert_eq(ids[1], find_token(v, "<0xFF>"));
    cr_assert_eq(ids[2], find_token(v, "<0x80>"));
    free(ids);
    tok_free(v);

    v = load_vocab(VOCAB_BPE);
    ids = encode(v, "a\xFF\xFF", 3, false, &n);
    int32_t ff = find_token(v, "\xC3\xBF"); /* 0xFF maps to U+00FF */
    cr_assert_eq(n, 3u);
    cr_assert_eq(ids[1], ff);
    cr_assert_eq(ids[2], ff);
    free(ids);
    tok_free(v);
}

/* ------------------------------------------------------------ long input */

static void check_long(const char *rel)
{
    tok_vocab *v = load_vocab(rel);
    const size_t len = 200 * 1024;
    char *s = malloc(len);
    memset(s, 'a', len);
    check_lossless(v, s, len, "200 KB of 'a'");

    static const char *const words[] = {"the", "quick", "brown", "fox", "jumps", "over",
                                        "lazy", "dog", "tokenizer", "ü", "€", "42", "\n",
                                        "  ", "!!", "日本"};
    uint64_t rng = 7;
    size_t o = 0;
    while (o < len) {
        const char *w = words[rng_next(&rng) % (sizeof words / sizeof words[0])];
        size_t wl = strlen(w);
        if (o + wl + 1 > len)
            break;
        memcpy(s + o, w, wl);
        o += wl;
        s[o++] = ' ';
    }
    check_lossless(v, s, o, "200 KB of words");

    /* Long runs for each regex alternative (whitespace before a letter makes
     * \s+(?!\S) back off one character). */
    static const struct {
        const char *unit, *what;
    } runs[] = {{" ", "spaces"}, {"\n", "newlines"}, {"7", "digits"}, {"!", "punctuation"},
                {"\xE6\x97\xA5", "CJK"}, {"\xFF", "invalid bytes"}, {"'s", "contractions"}};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        size_t ul = strlen(runs[r].unit);
        o = 0;
        while (o + ul + 1 < len) {
            memcpy(s + o, runs[r].unit, ul);
            o += ul;
        }
        s[o++] = 'x';
        check_lossless(v, s, o, runs[r].what);
    }
    free(s);
    tok_free(v);
}

Test(tok_long, llama_spm, .timeout = 60)
{
    check_long(VOCAB_SPM);
}

Test(tok_long, gpt2, .timeout = 60)
{
    check_long(VOCAB_BPE);
}

/* ------------------------------------------------------------ threads */

typedef struct thread_arg {
    const tok_vocab *v;
    const char *text;
    int32_t *ids;
    size_t n;
    int rc;
} thread_arg;

static void *encode_thread(void *p)
{
    thread_arg *a = p;
    for (int i = 0; i < 20 && a->rc == ATTND_OK; i++) {
        free(a->ids);
        a->rc = tok_encode(a->v, a->text, strlen(a->text), TOK_ADD_SPECIAL, &a->ids, &a->n, NULL);
    }
    return NULL;
}

Test(tok_threads, shared_vocab)
{
    tok_vocab *v = load_vocab(VOCAB_BPE);
    const char *text = "Hello, y'all! How are you 😁 ?我想在apple工作1314151天～ 3..3";
    size_t n;
    int32_t *want = encode(v, text, strlen(text), true, &n);
    thread_arg a[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (thread_arg){v, text, NULL, 0, ATTND_OK};
        cr_assert_eq(pthread_create(&th[i], NULL, encode_thread, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(a[i].rc, ATTND_OK);
        cr_assert(a[i].n == n && memcmp(a[i].ids, want, n * sizeof *want) == 0);
        free(a[i].ids);
    }
    free(want);
    tok_free(v);
}

/* ------------------------------------------------------------ tok_load errors */

/* A small vocabulary built with the writer; each test breaks one thing. */
typedef struct mini {
    gguf_writer *w;
    void *buf;
    gguf_file *f;
} mini;

static const char *const k_mini_tokens[] = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b",
                                            "\xE2\x96\x81\x61", "ab", "<0x0A>"};
#define MINI_N (sizeof k_mini_tokens / sizeof k_mini_tokens[0])

static void mini_set_tokens(gguf_writer *w, size_t n)
{
    gguf_str strs[MINI_N];
    for (size_t i = 0; i < n; i++)
        strs[i] = (gguf_str){k_mini_tokens[i], strlen(k_mini_tokens[i])};
    attnd_err err = {0};
    cr_assert_eq(gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, strs, n, &err),
                 ATTND_OK, "%s", err.msg);
}

/* skip: keys not to write ("model", "tokens", "scores", "types"). */
static gguf_writer *mini_writer(const char *model, const char *skip)
{
    gguf_writer *w = gguf_writer_new();
    cr_assert(w);
    attnd_err err = {0};
    if (!strstr(skip, "model"))
        cr_assert_eq(gguf_writer_set_str(w, "tokenizer.ggml.model", model, &err), ATTND_OK);
    if (!strstr(skip, "tokens"))
        mini_set_tokens(w, MINI_N);
    if (!strstr(skip, "scores")) {
        float scores[MINI_N] = {0, 0, 0, -1, -2, -3, -0.5f, -0.25f, 0};
        cr_assert_eq(gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores,
                                         MINI_N, &err),
                     ATTND_OK, "%s", err.msg);
    }
    if (!strstr(skip, "types")) {
        int32_t types[MINI_N] = {2, 3, 3, 1, 1, 1, 1, 1, 6};
        cr_assert_eq(gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types,
                                         MINI_N, &err),
                     ATTND_OK, "%s", err.msg);
    }
    return w;
}

/* Writes W to memory and runs tok_load; returns its status, *V on success. */
static int mini_load(mini *m, gguf_writer *w, tok_vocab **v, attnd_err *err)
{
    attnd_err werr = {0};
    size_t len;
    m->w = w;
    cr_assert_eq(gguf_writer_write_mem(w, &m->buf, &len, &werr), ATTND_OK, "%s", werr.msg);
    cr_assert_eq(gguf_open_mem(m->buf, len, "mini", &m->f, &werr), ATTND_OK, "%s", werr.msg);
    *v = NULL;
    int rc = tok_load(m->f, v, err);
    if (rc != ATTND_OK)
        cr_assert_null(*v);
    return rc;
}

static void mini_free(mini *m)
{
    gguf_close(m->f);
    free(m->buf);
    gguf_writer_free(m->w);
}

static void expect_load_error(gguf_writer *w, int code, const char *needle)
{
    mini m;
    tok_vocab *v;
    attnd_err err = {0};
    int rc = mini_load(&m, w, &v, &err);
    cr_assert_eq(rc, code, "expected %s, got %d (%s)", attnd_strerror(code), rc, err.msg);
    cr_assert_eq(err.code, code);
    cr_assert(strstr(err.msg, needle), "message \"%s\" does not name \"%s\"", err.msg, needle);
    cr_log_info("tok_load: %s", err.msg);
    mini_free(&m);
}

Test(tok_load_errors, valid_mini)
{
    mini m;
    tok_vocab *v;
    attnd_err err = {0};
    gguf_writer *w = mini_writer("llama", "");
    cr_assert_eq(gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", true, &err), ATTND_OK);
    cr_assert_eq(gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", UINT32_MAX, &err),
                 ATTND_OK);
    cr_assert_eq(mini_load(&m, w, &v, &err), ATTND_OK, "%s", err.msg);
    mini_free(&m); /* the vocabulary outlives the file */
    cr_assert_eq(tok_n_vocab(v), (int32_t)MINI_N);
    cr_assert_eq(tok_bos(v), 1, "llama default BOS id");
    cr_assert_eq(tok_eos(v), 2);
    cr_assert_eq(tok_unk(v), 0);
    cr_assert_eq(tok_pad(v), -1, "UINT32_MAX means none");
    cr_assert(tok_adds_bos(v));
    cr_assert(tok_adds_eos(v));
    size_t n;
    int32_t *ids = encode(v, "ab a\nc", 6, true, &n);
    /* "▁ab▁a\nc": "ab" (-0.25) merges before either "▁a" (-0.5); then the
     * second "▁a"; "\n" has a byte token, "c" only <unk>. */
    int32_t want[] = {1, 3, 7, 6, 8, 0, 2};
    char gs[256];
    format_ids(ids, n, gs, sizeof gs);
    cr_assert(n == 7 && memcmp(ids, want, sizeof want) == 0, "got [%s]", gs);
    free(ids);
    tok_free(v);
}

Test(tok_load_errors, missing_model)
{
    expect_load_error(mini_writer("llama", "model"), ATTND_ENOTFOUND, "tokenizer.ggml.model");
}

Test(tok_load_errors, unknown_model)
{
    expect_load_error(mini_writer("bert-wordpiece", ""), ATTND_EUNSUPPORTED, "bert-wordpiece");
}

Test(tok_load_errors, model_not_a_string)
{
    gguf_writer *w = mini_writer("llama", "model");
    cr_assert_eq(gguf_writer_set_u32(w, "tokenizer.ggml.model", 1, NULL), ATTND_OK);
    expect_load_error(w, ATTND_EFORMAT, "tokenizer.ggml.model");
}

Test(tok_load_errors, missing_tokens)
{
    expect_load_error(mini_writer("llama", "tokens scores types"), ATTND_ENOTFOUND,
                      "tokenizer.ggml.tokens: missing");
}

Test(tok_load_errors, tokens_wrong_type)
{
    gguf_writer *w = mini_writer("llama", "tokens scores types");
    int32_t ids[3] = {1, 2, 3};
    cr_assert_eq(gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_INT32, ids, 3, NULL),
                 ATTND_OK);
    expect_load_error(w, ATTND_EFORMAT, "tokenizer.ggml.tokens");
}

Test(tok_load_errors, tokens_not_array)
{
    gguf_writer *w = mini_writer("llama", "tokens scores types");
    cr_assert_eq(gguf_writer_set_str(w, "tokenizer.ggml.tokens", "abc", NULL), ATTND_OK);
    expect_load_error(w, ATTND_EFORMAT, "tokenizer.ggml.tokens");
}

Test(tok_load_errors, scores_length_mismatch)
{
    gguf_writer *w = mini_writer("llama", "scores");
    float scores[3] = {0, 0, 0};
    cr_assert_eq(
        gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, 3, NULL),
        ATTND_OK);
    expect_load_error(w, ATTND_EFORMAT, "tokenizer.ggml.scores");
}

Test(tok_load_errors, scores_wrong_type)
{
    gguf_writer *w = mini_writer("llama", "scores");
    double scores[MINI_N] = {0};
    cr_assert_eq(gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT64, scores,
                                     MINI_N, NULL),
                 ATTND_OK);
    expect_load_error(w, ATTND_EFORMAT, "tokenizer.ggml.scores");
}

Test(tok_load_errors, types_length_mismatch)
{
    gguf_writer *w = mini_writer("llama", "types");
    int32_t types[2] = {1, 1};
    cr_assert_eq(
        gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, 2, NULL),
        ATTND_OK);
    expect_load_error(w, ATTND_EFORMAT, "tokenizer.ggml.token_type");
}

Test(tok_load_errors, types_bad_value)
{
    gguf_writer *w = mini_writer("llama", "types");
    int32_t types[MINI_N] = {2, 3, 3, 1, 1, 1, 9, 1, 6};
    cr_assert_eq(gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types,
                                     MINI_N, NULL),
                 ATTND_OK);
    expect_load_error(w, ATTND_EFORMAT, "tokenizer.ggml.token_type[6]");
}

Test(tok_load_errors, bos_out_of_range)
{
    gguf_writer *w = mini_writer("llama", "");
    cr_assert_eq(gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 9, NULL), ATTND_OK);
    expect_load_error(w, ATTND_ERANGE, "tokenizer.ggml.bos_token_id");
}

Test(tok_load_errors, eos_wrong_type)
{
    gguf_writer *w = mini_writer("llama", "");
    cr_assert_eq(gguf_writer_set_str(w, "tokenizer.ggml.eos_token_id", "2", NULL), ATTND_OK);
    expect_load_error(w, ATTND_EFORMAT, "tokenizer.ggml.eos_token_id");
}

Test(tok_load_errors, unk_out_of_range)
{
    gguf_writer *w = mini_writer("llama", "");
    cr_assert_eq(gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 100000, NULL),
                 ATTND_OK);
    expect_load_error(w, ATTND_ERANGE, "tokenizer.ggml.unknown_token_id");
}

Test(tok_load_errors, add_bos_wrong_type)
{
    gguf_writer *w = mini_writer("llama", "");
    cr_assert_eq(gguf_writer_set_u32(w, "tokenizer.ggml.add_bos_token", 1, NULL), ATTND_OK);
    expect_load_error(w, ATTND_EFORMAT, "tokenizer.ggml.add_bos_token");
}

Test(tok_load_errors, gpt2_missing_merges)
{
    expect_load_error(mini_writer("gpt2", "scores"), ATTND_ENOTFOUND, "tokenizer.ggml.merges");
}

Test(tok_load_errors, gpt2_merge_without_space)
{
    gguf_writer *w = mini_writer("gpt2", "scores");
    gguf_str merges[2] = {{"a b", 3}, {"ab", 2}};
    cr_assert_eq(
        gguf_writer_set_arr(w, "tokenizer.ggml.merges", GGUF_TYPE_STRING, merges, 2, NULL),
        ATTND_OK);
    expect_load_error(w, ATTND_EFORMAT, "tokenizer.ggml.merges[1]: no space separator");
}

Test(tok_load_errors, gpt2_mini)
{
    /* A GPT-2 vocabulary without type, BOS or flag keys: nothing is added. */
    gguf_writer *w = gguf_writer_new();
    const char *toks[] = {"a", "b", "ab", "\xC4\xA0", "\xC4\xA0\x61\x62", "c"};
    gguf_str strs[6];
    for (int i = 0; i < 6; i++)
        strs[i] = (gguf_str){toks[i], strlen(toks[i])};
    gguf_str merges[2] = {{"a b", 3}, {"\xC4\xA0 ab", 5}};
    cr_assert_eq(gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", NULL), ATTND_OK);
    cr_assert_eq(gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, strs, 6, NULL),
                 ATTND_OK);
    cr_assert_eq(
        gguf_writer_set_arr(w, "tokenizer.ggml.merges", GGUF_TYPE_STRING, merges, 2, NULL),
        ATTND_OK);
    mini m;
    tok_vocab *v;
    attnd_err err = {0};
    cr_assert_eq(mini_load(&m, w, &v, &err), ATTND_OK, "%s", err.msg);
    mini_free(&m);
    cr_assert_eq(tok_bos(v), -1);
    cr_assert(!tok_adds_bos(v));
    size_t n;
    /* Chunks "ab", " ab", " cz": "Ġ ab" merges after "a b"; " cz" has no
     * merges, and "z" has no token and there is no <unk>: it is dropped. */
    int32_t *ids = encode(v, "ab ab cz", 8, true, &n);
    int32_t want[] = {2, 4, 3, 5};
    char gs[256];
    format_ids(ids, n, gs, sizeof gs);
    cr_assert(n == 4 && memcmp(ids, want, sizeof want) == 0, "got [%s]", gs);
    free(ids);
    tok_free(v);
}

/* Each pre-tokenizer rule on a text where the rules disagree, with a tiny
 * vocabulary whose tokens are single characters: the chunking shows in the
 * ids only where merges cross chunks, so the merges join digits and letters. */
static tok_vocab *pre_vocab(const char *pre, mini *m)
{
    gguf_writer *w = gguf_writer_new();
    const char *toks[] = {"1", "2", "3", "4", "12", "123", "1234", "a", "\xC4\xA0", "'", "S",
                          "'S", "34"};
    enum { N = sizeof toks / sizeof toks[0] };
    gguf_str strs[N];
    for (int i = 0; i < N; i++)
        strs[i] = (gguf_str){toks[i], strlen(toks[i])};
    gguf_str merges[] = {{"1 2", 3}, {"12 3", 4}, {"123 4", 5}, {"' S", 3}, {"3 4", 3}};
    cr_assert_eq(gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", NULL), ATTND_OK);
    if (pre)
        cr_assert_eq(gguf_writer_set_str(w, "tokenizer.ggml.pre", pre, NULL), ATTND_OK);
    cr_assert_eq(gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, strs, N, NULL),
                 ATTND_OK);
    cr_assert_eq(gguf_writer_set_arr(w, "tokenizer.ggml.merges", GGUF_TYPE_STRING, merges,
                                     sizeof merges / sizeof merges[0], NULL),
                 ATTND_OK);
    tok_vocab *v;
    attnd_err err = {0};
    cr_assert_eq(mini_load(m, w, &v, &err), ATTND_OK, "%s", err.msg);
    return v;
}

Test(tok_pre, digits_per_rule)
{
    static const struct {
        const char *pre;
        int32_t want[4];
        size_t n;
    } cases[] = {
        {"gpt-2", {6}, 1},        /* "1234" one chunk: merges to 1234 */
        {"llama-bpe", {5, 3}, 2}, /* digits in threes: 123 | 4 */
        {"qwen2", {0, 1, 2, 3}, 4}, /* single digits */
        {"starcoder", {0, 1, 2, 3}, 4},
        {"falcon", {5, 3}, 2},     /* [0-9]{3} cut after the GPT-2 rule */
        {"default", {5, 3}, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mini m;
        tok_vocab *v = pre_vocab(cases[i].pre, &m);
        cr_assert_null(tok_warning(v), "%s", cases[i].pre);
        size_t n;
        int32_t *ids = encode_flags(v, "1234", 0, &n);
        expect_ids(ids, n, cases[i].want, cases[i].n, cases[i].pre);
        free(ids);
        tok_free(v);
        mini_free(&m);
    }
}

Test(tok_pre, contractions_case)
{
    /* Llama 3 cuts "'S" like "'s"; GPT-2's rule only knows lower case, so
     * "'" and "S" are separate chunks there. */
    mini m;
    tok_vocab *v = pre_vocab("llama-bpe", &m);
    size_t n;
    int32_t *ids = encode_flags(v, "'S", 0, &n);
    int32_t l3[] = {11};
    expect_ids(ids, n, l3, 1, "llama-bpe 'S");
    free(ids);
    tok_free(v);
    mini_free(&m);
    v = pre_vocab("gpt-2", &m);
    ids = encode_flags(v, "'S", 0, &n);
    int32_t g2[] = {9, 10};
    expect_ids(ids, n, g2, 2, "gpt-2 'S");
    free(ids);
    tok_free(v);
    mini_free(&m);
}

Test(tok_pre, unknown_warns_and_uses_gpt2)
{
    mini m;
    tok_vocab *v = pre_vocab("frobnicator-9000", &m);
    cr_assert_not_null(tok_warning(v));
    cr_assert(strstr(tok_warning(v), "frobnicator-9000"), "%s", tok_warning(v));
    cr_assert(strstr(tok_warning(v), "GPT-2"), "%s", tok_warning(v));
    size_t n;
    int32_t *ids = encode_flags(v, "1234", 0, &n);
    int32_t want[] = {6};
    expect_ids(ids, n, want, 1, "unknown pre");
    free(ids);
    tok_free(v);
    mini_free(&m);
}

Test(tok_pre, wrong_type_is_an_error)
{
    gguf_writer *w = gguf_writer_new();
    const char *toks[] = {"a", "b"};
    gguf_str strs[2] = {{toks[0], 1}, {toks[1], 1}};
    gguf_str merges[1] = {{"a b", 3}};
    cr_assert_eq(gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", NULL), ATTND_OK);
    cr_assert_eq(gguf_writer_set_u32(w, "tokenizer.ggml.pre", 7, NULL), ATTND_OK);
    cr_assert_eq(gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, strs, 2, NULL),
                 ATTND_OK);
    cr_assert_eq(gguf_writer_set_arr(w, "tokenizer.ggml.merges", GGUF_TYPE_STRING, merges, 1, NULL),
                 ATTND_OK);
    expect_load_error(w, ATTND_EFORMAT, "tokenizer.ggml.pre");
}

Test(tok_load_errors, null_arguments)
{
    tok_vocab *v = (tok_vocab *)1;
    attnd_err err = {0};
    cr_assert_eq(tok_load(NULL, &v, &err), ATTND_EINVAL);
    cr_assert_null(v);
    tok_free(NULL);
}

/* ------------------------------------------------------------ UTF-8 helpers */

Test(utf8, decode_cases)
{
    uint32_t cp = 0;
    cr_assert_eq(attnd_utf8_decode("", 0, &cp), 0);
    cr_assert_eq(attnd_utf8_decode("A", 1, &cp), 1);
    cr_assert_eq(cp, 'A');
    cr_assert_eq(attnd_utf8_decode("\xC3\xA9", 2, &cp), 2);
    cr_assert_eq(cp, 0xE9u);
    cr_assert_eq(attnd_utf8_decode("\xE2\x82\xAC", 3, &cp), 3);
    cr_assert_eq(cp, 0x20ACu);
    cr_assert_eq(attnd_utf8_decode("\xF0\x9F\x98\x80", 4, &cp), 4);
    cr_assert_eq(cp, 0x1F600u);
    cr_assert_eq(attnd_utf8_decode("\xF4\x8F\xBF\xBF", 4, &cp), 4);
    cr_assert_eq(cp, 0x10FFFFu);
    /* unfinished */
    cr_assert_eq(attnd_utf8_decode("\xE2\x82", 2, NULL), 0);
    cr_assert_eq(attnd_utf8_decode("\xF0", 1, NULL), 0);
    cr_assert_eq(attnd_utf8_decode("\xF0\x9F\x98", 3, NULL), 0);
    /* invalid: maximal subparts */
    cr_assert_eq(attnd_utf8_decode("\x80", 1, NULL), -1);
    cr_assert_eq(attnd_utf8_decode("\xFF", 1, NULL), -1);
    cr_assert_eq(attnd_utf8_decode("\xC0\x80", 2, NULL), -1);
    cr_assert_eq(attnd_utf8_decode("\xC1\xBF", 2, NULL), -1);
    cr_assert_eq(attnd_utf8_decode("\xE0\x80\x80", 3, NULL), -1);
    cr_assert_eq(attnd_utf8_decode("\xED\xA0\x80", 3, NULL), -1);
    cr_assert_eq(attnd_utf8_decode("\xF0\x80\x80\x80", 4, NULL), -1);
    cr_assert_eq(attnd_utf8_decode("\xF4\x90\x80\x80", 4, NULL), -1);
    cr_assert_eq(attnd_utf8_decode("\xF5\x80\x80\x80", 4, NULL), -1);
    cr_assert_eq(attnd_utf8_decode("\xE2\x82" "a", 3, NULL), -2);
    cr_assert_eq(attnd_utf8_decode("\xF0\x9F\x98" "a", 4, NULL), -3);
    cr_assert_eq(attnd_utf8_decode("\xC3" "a", 2, NULL), -1);

    cr_assert_eq(attnd_utf8_valid_prefix("ab\xC3\xA9\xE2\x82", 6), 4u);
    cr_assert_eq(attnd_utf8_valid_prefix("ab\xFF" "cd", 5), 2u);
    cr_assert(attnd_utf8_valid("", 0));
    cr_assert(!attnd_utf8_valid("\xC3", 1));
}

Test(utf8, encode_roundtrip_all)
{
    char buf[ATTND_UTF8_MAX];
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        size_t n = attnd_utf8_encode(cp, buf);
        if (cp >= 0xD800 && cp <= 0xDFFF) {
            cr_assert_eq(n, 0u);
            continue;
        }
        size_t want = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        cr_assert_eq(n, want, "U+%04X", cp);
        uint32_t back;
        cr_assert_eq(attnd_utf8_decode(buf, n, &back), (int)n, "U+%04X", cp);
        cr_assert_eq(back, cp);
        /* Every proper prefix is "unfinished", not invalid. */
        for (size_t k = 1; k < n; k++)
            cr_assert_eq(attnd_utf8_decode(buf, k, NULL), 0, "U+%04X prefix %zu", cp, k);
    }
    cr_assert_eq(attnd_utf8_encode(0x110000, buf), 0u);
}
