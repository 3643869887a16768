/* tok_pre.c - byte-level BPE pre-tokenization: the rules that cut a text into
 * the chunks BPE merges within, chosen by tokenizer.ggml.pre.
 *
 * A rule is a list of regular expressions applied in turn, as Hugging Face's
 * `Sequence` of `Split` pre-tokenizers (behaviour "isolated") does and as
 * llama.cpp applies them: the first cuts the text into the pieces it matches
 * and the gaps between them; each later expression cuts every piece again on
 * its own (a piece is the whole subject: `$` and look-aheads stop at its end).
 * Bytes that are not valid UTF-8 are pieces of their own from the start and
 * are never offered to an expression, so each becomes its own byte token. */
#include "tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "attnd_utf8.h"

#define PRE_MAX_EXPRS 6

/* The expressions, in PCRE2 syntax, as the models' tokenizer.json files state
 * them (non-ASCII characters written as \x{...}). */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
/* Llama 3 and Qwen 2 differ in digits: up to three per chunk or one. The
 * contractions are spelled case by case because (?i) would also fold
 * characters such as U+017F into 's'. */
#define RE_LLAMA3_HEAD "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
#define RE_LLAMA3_TAIL "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_LLAMA3 RE_LLAMA3_HEAD "\\p{N}{1,3}" RE_LLAMA3_TAIL
#define RE_QWEN2 RE_LLAMA3_HEAD "\\p{N}" RE_LLAMA3_TAIL
#define RE_CJK "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+"
#define RE_FINNISH " ?[^(\\s|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{964}\\x{6D4}\\x{60C})]+"

typedef struct pre_rule {
    const char *names;  /* the tokenizer.ggml.pre values, '|'-separated */
    bool ignore_merges; /* a chunk that is a token is taken whole (Llama 3) */
    bool nfc;           /* the model's tokenizer normalizes text to NFC first */
    const char *exprs[PRE_MAX_EXPRS];
} pre_rule;

static const pre_rule k_rules[] = {
    {"gpt-2|gpt2|mpt|olmo|jais|phi-2|roberta-bpe|jina-es|jina-de|jina-v1-en|jina-v2-es|"
     "jina-v2-de|jina-v2-code|gigachat|codeshell-gpt2",
     false, false, {RE_GPT2}},
    {"llama-bpe|llama3|llama-v3|falcon3", true, false, {RE_LLAMA3}},
    {"dbrx|smaug-bpe", false, false, {RE_LLAMA3}},
    {"tekken", true, false,
     {"[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?"
      "((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    /* Qwen's tokenizer.json normalizes to NFC (llama.cpp skips that step) */
    {"qwen2|deepseek-r1-qwen", false, true, {RE_QWEN2}},
    {"stablelm2|megrez", false, false, {RE_QWEN2}},
    {"deepseek-llm", false, false,
     {"[\\r\\n]",
      "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}"
      "\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}"
      "\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}"
      "\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}"
      "\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}"
      "\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}"
      "\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}"
      "\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}"
      "\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}"
      "\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}"
      "\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}"
      "\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}"
      "\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}"
      "\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"
      "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}"
      "\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}"
      "\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}"
      "\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+",
      "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
      "\\s+$", RE_CJK, "\\p{N}+"}},
    {"deepseek-v3", false, false,
     {"\\p{N}{1,3}", "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?"
      "[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    {"deepseek-coder", false, false, {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_CJK, "\\p{N}"}},
    {"falcon", false, false, {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}},
    {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b", false, false,
     {"\\p{N}", RE_GPT2}},
    {"poro-chat|bloom|gpt3-finnish", false, false, {RE_FINNISH}},
    {"viking", false, false, {RE_FINNISH, "\\p{N}"}},
    /* what a file without tokenizer.ggml.pre gets, as in llama.cpp */
    {"default", false, false, {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}},
};

struct tok_pre {
    const pre_rule *rule;
    char name[64];           /* as the file says (sanitized) */
    pcre2_code *re[PRE_MAX_EXPRS]; /* read-only once compiled: shared by threads */
    size_t n_re;
};

static bool rule_has_name(const pre_rule *r, const char *name, size_t len)
{
    const char *p = r->names;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && memcmp(p, name, len) == 0)
            return true;
        p += n + (bar ? 1 : 0);
    }
    return false;
}

void tok_pre_free(tok_pre *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_re; i++)
        pcre2_code_free(p->re[i]);
    free(p);
}

int tok_pre_new(const char *name, size_t len, tok_pre **out, bool *known, attnd_err *err)
{
    *out = NULL;
    const pre_rule *rule = NULL;
    for (size_t i = 0; i < sizeof k_rules / sizeof k_rules[0] && !rule; i++)
        if (rule_has_name(&k_rules[i], name, len))
            rule = &k_rules[i];
    *known = rule != NULL;
    if (!rule)
        rule = &k_rules[0]; /* unknown: the GPT-2 rule (the caller warns) */
    tok_pre *p = calloc(1, sizeof *p);
    if (!p)
        return attnd_err_set(err, ATTND_ENOMEM, "tokenizer: out of memory");
    p->rule = rule;
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < sizeof p->name; i++)
        p->name[n++] = name[i] >= 0x20 && name[i] < 0x7F ? name[i] : '?';
    p->name[n] = '\0';
    for (size_t i = 0; i < PRE_MAX_EXPRS && rule->exprs[i]; i++) {
        int ec;
        PCRE2_SIZE eoff;
        /* DOLLAR_ENDONLY: `$` is the end of the piece, not also before a
         * final newline (ECMAScript's and Python's meaning). */
        p->re[i] = pcre2_compile((PCRE2_SPTR)rule->exprs[i], PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &ec, &eoff, NULL);
        if (!p->re[i]) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(ec, msg, sizeof msg);
            tok_pre_free(p);
            return attnd_err_set(err, ATTND_EUNSUPPORTED,
                                 "tokenizer: pre-tokenizer '%s' expression %zu: %s (at offset %zu)",
                                 rule->names, i + 1, (const char *)msg, (size_t)eoff);
        }
        p->n_re = i + 1;
        /* JIT is only an optimisation: without it, the interpreter runs. */
        (void)pcre2_jit_compile(p->re[i], PCRE2_JIT_COMPLETE);
    }
    *out = p;
    return ATTND_OK;
}

const char *tok_pre_name(const tok_pre *p)
{
    return p->name;
}

bool tok_pre_ignores_merges(const tok_pre *p)
{
    return p->rule->ignore_merges;
}

bool tok_pre_nfc(const tok_pre *p)
{
    return p->rule->nfc;
}

/* A piece of the text: LEN bytes; RAW pieces (invalid UTF-8) are final. */
typedef struct piece {
    size_t len;
    bool raw;
} piece;

typedef struct pieces {
    piece *v;
    size_t n, cap;
} pieces;

static int pieces_push(pieces *ps, size_t len, bool raw, attnd_err *err)
{
    if (len == 0)
        return ATTND_OK;
    int rc = tok_reserve((void **)&ps->v, &ps->cap, ps->n + 1, sizeof *ps->v, err);
    if (rc == ATTND_OK)
        ps->v[ps->n++] = (piece){len, raw};
    return rc;
}

/* Valid UTF-8 runs and single invalid bytes. */
static int split_utf8(const char *text, size_t len, pieces *out, attnd_err *err)
{
    size_t run = 0, i = 0;
    int rc = ATTND_OK;
    while (rc == ATTND_OK && i < len) {
        uint32_t cp;
        int k = attnd_utf8_decode(text + i, len - i, &cp);
        if (k > 0) {
            run += (size_t)k;
            i += (size_t)k;
            continue;
        }
        if ((rc = pieces_push(out, run, false, err)) == ATTND_OK)
            rc = pieces_push(out, 1, true, err);
        run = 0;
        i++;
    }
    if (rc == ATTND_OK)
        rc = pieces_push(out, run, false, err);
    return rc;
}

/* Cuts every non-raw piece of IN by RE into matches and gaps, into OUT. */
static int split_by(const pcre2_code *re, pcre2_match_data *md, const char *text,
                    const pieces *in, pieces *out, attnd_err *err)
{
    size_t start = 0;
    int rc = ATTND_OK;
    out->n = 0;
    for (size_t k = 0; rc == ATTND_OK && k < in->n; start += in->v[k++].len) {
        const piece *pc = &in->v[k];
        if (pc->raw) {
            rc = pieces_push(out, pc->len, true, err);
            continue;
        }
        const char *s = text + start;
        size_t pos = 0, done = 0;
        while (rc == ATTND_OK && pos < pc->len) {
            /* NO_UTF_CHECK: the piece is valid UTF-8 (split_utf8); checking it
             * again on every call would make splitting quadratic. */
            int mrc = pcre2_match(re, (PCRE2_SPTR)s, pc->len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
            if (mrc == PCRE2_ERROR_NOMATCH)
                break;
            if (mrc < 0) {
                PCRE2_UCHAR msg[256];
                pcre2_get_error_message(mrc, msg, sizeof msg);
                return attnd_err_set(err, ATTND_EINVAL,
                                     "tok_encode: pre-tokenizer failed at byte %zu: %s",
                                     start + pos, (const char *)msg);
            }
            const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            size_t ms = ov[0], me = ov[1];
            if (me == ms) { /* an empty match: step over one character */
                uint32_t cp;
                int n = attnd_utf8_decode(s + ms, pc->len - ms, &cp);
                pos = ms + (n > 0 ? (size_t)n : 1);
                continue;
            }
            if ((rc = pieces_push(out, ms - done, false, err)) == ATTND_OK)
                rc = pieces_push(out, me - ms, false, err);
            pos = done = me;
        }
        if (rc == ATTND_OK)
            rc = pieces_push(out, pc->len - done, false, err);
    }
    return rc;
}

int tok_pre_split(const tok_pre *p, const char *text, size_t len, tok_chunk_fn fn, void *ctx,
                  attnd_err *err)
{
    pieces a = {NULL, 0, 0}, b = {NULL, 0, 0};
    /* Room for the whole match only: groups are never read (pcre2_match
     * then returns 0, "ovector too small", with the match itself set). */
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md)
        return attnd_err_set(err, ATTND_ENOMEM, "tok_encode: out of memory");
    int rc = split_utf8(text, len, &a, err);
    for (size_t i = 0; rc == ATTND_OK && i < p->n_re; i++) {
        rc = split_by(p->re[i], md, text, &a, &b, err);
        pieces t = a;
        a = b;
        b = t;
    }
    size_t off = 0;
    for (size_t k = 0; rc == ATTND_OK && k < a.n; off += a.v[k++].len)
        rc = fn(ctx, text + off, a.v[k].len, err);
    pcre2_match_data_free(md);
    free(a.v);
    free(b.v);
    return rc;
}
