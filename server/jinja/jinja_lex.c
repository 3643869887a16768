/* jinja_lex.c - the arena, and cutting a template into tokens as jinja2's
 * lexer does with trim_blocks and lstrip_blocks on: newlines normalized to
 * \n, one trailing newline dropped, `-` stripping whitespace beside a tag,
 * the newline after a block or comment tag removed, and the indentation
 * before a block or comment tag that starts a line removed. */
#include "jinja_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnd_utf8.h"

/* ------------------------------------------------------------ arena */

struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

void *jinja_alloc(jinja_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n == 0)
        n = 16;
    struct arena_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        if (a->used + cap > a->budget)
            return NULL;
        c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
        a->used += cap;
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

void jinja_arena_free(jinja_arena *a)
{
    for (struct arena_chunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    a->head = NULL;
    a->used = 0;
}

/* ------------------------------------------------------------ lexer */

typedef struct lexer {
    const char *s; /* normalized source */
    size_t n, pos;
    int line;
    jinja_arena *a;
    jtok *v;
    size_t n_tok, cap;
    attnd_err *err;
} lexer;

static int push(lexer *L, jtok t)
{
    if (L->n_tok == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256;
        jtok *nv = jinja_alloc(L->a, cap * sizeof *nv);
        if (!nv)
            return attnd_err_set(L->err, ATTND_ENOMEM, "template: out of memory");
        if (L->n_tok)
            memcpy(nv, L->v, L->n_tok * sizeof *nv);
        L->v = nv;
        L->cap = cap;
    }
    L->v[L->n_tok++] = t;
    return ATTND_OK;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Python's str.rstrip() on ASCII whitespace. */
static size_t rstrip_len(const char *p, size_t n)
{
    while (n > 0 && is_space(p[n - 1]))
        n--;
    return n;
}

static int lex_error(lexer *L, const char *what)
{
    return attnd_err_set(L->err, ATTND_EINVAL, "template line %d: %s", L->line, what);
}

/* A string literal at L->pos (the quote), unescaped as Python does. */
static int lex_string(lexer *L, jtok *t)
{
    char q = L->s[L->pos++];
    size_t start = L->pos;
    while (L->pos < L->n && L->s[L->pos] != q) {
        if (L->s[L->pos] == '\\')
            L->pos++;
        L->pos++;
    }
    if (L->pos >= L->n)
        return lex_error(L, "unterminated string");
    size_t raw = L->pos - start;
    char *out = jinja_alloc(L->a, raw + 1);
    if (!out)
        return attnd_err_set(L->err, ATTND_ENOMEM, "template: out of memory");
    size_t o = 0;
    for (size_t i = start; i < L->pos; i++) {
        char c = L->s[i];
        if (c == '\n')
            L->line++;
        if (c != '\\' || i + 1 >= L->pos) {
            out[o++] = c;
            continue;
        }
        char e = L->s[++i];
        uint32_t cp = 0;
        int digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
        switch (e) {
        case 'n': out[o++] = '\n'; break;
        case 't': out[o++] = '\t'; break;
        case 'r': out[o++] = '\r'; break;
        case '\\': out[o++] = '\\'; break;
        case '\'': out[o++] = '\''; break;
        case '"': out[o++] = '"'; break;
        case '0': out[o++] = '\0'; break;
        case 'a': out[o++] = '\a'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'v': out[o++] = '\v'; break;
        case '\n': break; /* a continued line */
        default:
            if (digits && i + (size_t)digits < L->pos) {
                bool ok = true;
                for (int d = 1; d <= digits; d++) {
                    char h = L->s[i + (size_t)d];
                    if (!isxdigit((unsigned char)h))
                        ok = false;
                    cp = cp * 16 + (uint32_t)(isdigit((unsigned char)h) ? h - '0'
                                                                         : (tolower(h) - 'a' + 10));
                }
                if (ok && cp < 0x110000 && !(cp >= 0xD800 && cp < 0xE000)) {
                    /* the escape is at most as long as its UTF-8 */
                    o += attnd_utf8_encode(cp, out + o);
                    i += (size_t)digits;
                    break;
                }
            }
            out[o++] = '\\'; /* unknown escapes stay as written */
            out[o++] = e;
        }
    }
    L->pos++;
    t->kind = JT_STRING;
    t->text = out;
    t->len = o;
    return ATTND_OK;
}

/* Tokens of one tag's inside, up to its closing delimiter. */
static int lex_tag(lexer *L, bool block, bool *strip_after, bool *trim_newline)
{
    int depth = 0;
    const char close0 = block ? '%' : '}';
    for (;;) {
        while (L->pos < L->n && is_space(L->s[L->pos])) {
            if (L->s[L->pos] == '\n')
                L->line++;
            L->pos++;
        }
        if (L->pos >= L->n)
            return lex_error(L, block ? "unclosed {% tag" : "unclosed {{ tag");
        const char *p = L->s + L->pos;
        size_t left = L->n - L->pos;
        if (depth == 0) {
            bool minus = left >= 3 && p[0] == '-' && p[1] == close0 && p[2] == '}';
            bool plus = left >= 3 && p[0] == '+' && p[1] == close0 && p[2] == '}';
            if (minus || plus || (left >= 2 && p[0] == close0 && p[1] == '}')) {
                L->pos += minus || plus ? 3 : 2;
                *strip_after = minus;
                *trim_newline = block && !minus && !plus;
                return push(L, (jtok){.kind = block ? JT_BLOCK_END : JT_VAR_END, .line = L->line});
            }
        }
        jtok t = {.line = L->line, .text = p};
        int rc;
        if (isalpha((unsigned char)*p) || *p == '_') {
            size_t k = 1;
            while (k < left && (isalnum((unsigned char)p[k]) || p[k] == '_'))
                k++;
            t.kind = JT_NAME;
            t.len = k;
            L->pos += k;
        } else if (isdigit((unsigned char)*p)) {
            size_t k = 0;
            bool is_float = false;
            char num[64];
            size_t m = 0;
            while (k < left && (isdigit((unsigned char)p[k]) || p[k] == '_' ||
                                (p[k] == '.' && !is_float && k + 1 < left &&
                                 isdigit((unsigned char)p[k + 1])) ||
                                ((p[k] == 'e' || p[k] == 'E') && k + 1 < left &&
                                 (isdigit((unsigned char)p[k + 1]) || p[k + 1] == '-' ||
                                  p[k + 1] == '+')))) {
                if (p[k] == '.' || p[k] == 'e' || p[k] == 'E')
                    is_float = true;
                if ((p[k] == 'e' || p[k] == 'E') && (p[k + 1] == '-' || p[k + 1] == '+')) {
                    if (m + 2 < sizeof num) {
                        num[m++] = p[k];
                        num[m++] = p[k + 1];
                    }
                    k += 2;
                    continue;
                }
                if (p[k] != '_' && m + 1 < sizeof num)
                    num[m++] = p[k];
                k++;
            }
            num[m] = '\0';
            t.kind = is_float ? JT_FLOAT : JT_INT;
            if (is_float)
                t.f = strtod(num, NULL);
            else
                t.i = strtoll(num, NULL, 10);
            t.len = k;
            L->pos += k;
        } else if (*p == '\'' || *p == '"') {
            if ((rc = lex_string(L, &t)) != ATTND_OK)
                return rc;
        } else {
            static const char *const ops2[] = {"//", "**", "==", "!=", "<=", ">="};
            size_t k = 0;
            for (size_t i = 0; i < sizeof ops2 / sizeof ops2[0] && !k; i++)
                if (left >= 2 && p[0] == ops2[i][0] && p[1] == ops2[i][1])
                    k = 2;
            if (!k && strchr("+-*/%~()[]{}.,:|=<>", *p))
                k = 1;
            if (!k) {
                char msg[64];
                snprintf(msg, sizeof msg, "unexpected character '%c'",
                         (*p >= 0x20 && *p < 0x7f) ? *p : '?');
                return lex_error(L, msg);
            }
            if (*p == '(' || *p == '[' || *p == '{')
                depth++;
            else if ((*p == ')' || *p == ']' || *p == '}') && depth > 0)
                depth--;
            t.kind = JT_OP;
            t.len = k;
            L->pos += k;
        }
        if ((rc = push(L, t)) != ATTND_OK)
            return rc;
    }
}

int jinja_lex(const char *src, size_t len, jinja_arena *a, jtok **toks, size_t *n,
              attnd_err *err)
{
    /* newlines to \n; a final newline dropped (keep_trailing_newline off) */
    char *s = jinja_alloc(a, len + 1);
    if (!s)
        return attnd_err_set(err, ATTND_ENOMEM, "template: out of memory");
    size_t m = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[m++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n')
                i++;
        } else {
            s[m++] = src[i];
        }
    }
    if (m > 0 && s[m - 1] == '\n')
        m--;
    lexer L = {.s = s, .n = m, .line = 1, .a = a, .err = err};
    bool strip_next = false, line_starting = true;
    int rc = ATTND_OK;
    while (rc == ATTND_OK && L.pos < L.n) {
        /* data up to the next tag */
        size_t start = L.pos, i = L.pos;
        const char *tag = NULL;
        while (i + 1 < L.n) {
            if (s[i] == '{' && (s[i + 1] == '{' || s[i + 1] == '%' || s[i + 1] == '#')) {
                tag = s + i;
                break;
            }
            i++;
        }
        size_t end = tag ? i : L.n;
        const char *text = s + start;
        size_t tlen = end - start;
        if (strip_next) { /* the previous tag ended with -: it took the whitespace after it */
            size_t skipped = 0;
            while (tlen > 0 && is_space(*text)) {
                text++;
                tlen--;
                skipped++;
            }
            line_starting = skipped > 0 && text[-1] == '\n';
        }
        char kind = tag ? tag[1] : 0;
        bool minus = tag && end + 2 < L.n && s[end + 2] == '-';
        bool plus = tag && end + 2 < L.n && s[end + 2] == '+';
        if (minus) {
            tlen = rstrip_len(text, tlen);
        } else if (tag && (kind == '%' || kind == '#') && !plus) {
            /* lstrip_blocks: the indentation before a block or comment tag
             * that starts a line (after a newline in this text, or at the
             * start of a line the previous tag ended) */
            size_t l = tlen;
            while (l > 0 && text[l - 1] != '\n')
                l--;
            bool only_ws = tlen > l;
            for (size_t k = l; k < tlen; k++)
                if (!(text[k] == ' ' || text[k] == '\t' || text[k] == '\v' || text[k] == '\f'))
                    only_ws = false;
            if (only_ws && (l > 0 || line_starting))
                tlen = l;
        }
        for (size_t k = start; k < end; k++)
            if (s[k] == '\n')
                L.line++;
        if (tlen > 0)
            rc = push(&L, (jtok){.kind = JT_TEXT, .text = text, .len = tlen, .line = L.line});
        strip_next = false;
        line_starting = false; /* what the tag's end consumed decides it again */
        if (rc != ATTND_OK || !tag)
            break;
        L.pos = end + 2 + (minus || plus ? 1 : 0);
        bool strip_after = false, trim_newline = false;
        if (kind == '#') {
            const char *close = NULL;
            for (size_t k = L.pos; k + 1 < L.n; k++)
                if (s[k] == '#' && s[k + 1] == '}') {
                    close = s + k;
                    break;
                }
            if (!close) {
                rc = lex_error(&L, "unclosed comment");
                break;
            }
            for (const char *c = s + L.pos; c < close; c++)
                if (*c == '\n')
                    L.line++;
            strip_after = close > s + L.pos && close[-1] == '-';
            trim_newline = !(close > s + L.pos && (close[-1] == '-' || close[-1] == '+'));
            L.pos = (size_t)(close - s) + 2;
        } else {
            rc = push(&L, (jtok){.kind = kind == '%' ? JT_BLOCK_BEGIN : JT_VAR_BEGIN,
                                 .line = L.line});
            if (rc == ATTND_OK)
                rc = lex_tag(&L, kind == '%', &strip_after, &trim_newline);
        }
        if (rc != ATTND_OK)
            break;
        strip_next = strip_after;
        if (trim_newline && L.pos < L.n && s[L.pos] == '\n') {
            L.pos++;
            L.line++;
            line_starting = true;
        }
    }
    if (rc == ATTND_OK)
        rc = push(&L, (jtok){.kind = JT_EOF, .line = L.line});
    if (rc != ATTND_OK)
        return rc;
    *toks = L.v;
    *n = L.n_tok;
    return ATTND_OK;
}
