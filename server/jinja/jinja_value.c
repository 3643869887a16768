/* jinja_value.c - the renderer's values with Python's semantics: truth,
 * equality across numeric types, str() and repr() as Python prints them
 * (floats in their shortest form), json.dumps for tojson, markupsafe's
 * escape, the helpers behind str methods, and JSON input as values. */
#include "jinja_value.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnd_utf8.h"

int jv_rerr(rstate *r, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return attnd_err_set(r->err, ATTND_EINVAL, "template line %d: %s", r->line, msg);
}

int jv_room(rstate *r)
{
    return attnd_err_set(r->err, ATTND_ENOMEM, "template: out of memory (render)");
}

jlist *jv_list_new(rstate *r, size_t cap)
{
    jlist *l = jinja_alloc(&r->a, sizeof *l);
    if (l && cap) {
        l->v = jinja_alloc(&r->a, cap * sizeof *l->v);
        l->cap = l->v ? cap : 0;
        if (!l->v)
            return NULL;
    }
    return l;
}

bool jv_list_push(rstate *r, jlist *l, jv x)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        jv *nv = jinja_alloc(&r->a, cap * sizeof *nv);
        if (!nv)
            return false;
        if (l->n)
            memcpy(nv, l->v, l->n * sizeof *nv);
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return true;
}

jdict *jv_dict_new(rstate *r)
{
    return jinja_alloc(&r->a, sizeof(jdict));
}

jv *jv_dict_find(const jdict *d, const char *k, size_t kn)
{
    for (size_t i = 0; d && i < d->n; i++)
        if (d->kn[i] == kn && memcmp(d->k[i], k, kn) == 0)
            return &d->v[i];
    return NULL;
}

bool jv_dict_set(rstate *r, jdict *d, const char *k, size_t kn, jv x)
{
    jv *slot = jv_dict_find(d, k, kn);
    if (slot) {
        *slot = x;
        return true;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        const char **nk = jinja_alloc(&r->a, cap * sizeof *nk);
        size_t *nn = jinja_alloc(&r->a, cap * sizeof *nn);
        jv *nv = jinja_alloc(&r->a, cap * sizeof *nv);
        if (!nk || !nn || !nv)
            return false;
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof *nk);
            memcpy(nn, d->kn, d->n * sizeof *nn);
            memcpy(nv, d->v, d->n * sizeof *nv);
        }
        d->k = nk;
        d->kn = nn;
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = k;
    d->kn[d->n] = kn;
    d->v[d->n++] = x;
    return true;
}

bool jv_truthy(jv x)
{
    switch (x.t) {
    case V_UNDEF:
    case V_NONE: return false;
    case V_BOOL: return x.u.b;
    case V_INT: return x.u.i != 0;
    case V_FLOAT: return x.u.f != 0.0;
    case V_STR: return x.u.s.n > 0;
    case V_LIST: return x.gen || x.u.l->n > 0;
    case V_DICT: return x.u.d->n > 0;
    case V_MACRO:
    case V_FUNC: return true;
    }
    return false;
}

bool jv_is_num(jv x)
{
    return x.t == V_INT || x.t == V_FLOAT || x.t == V_BOOL;
}

double jv_num_of(jv x)
{
    return x.t == V_FLOAT ? x.u.f : x.t == V_INT ? (double)x.u.i : (double)x.u.b;
}

bool jv_equal(jv a, jv b)
{
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a.t != V_FLOAT && b.t != V_FLOAT)
            return (a.t == V_INT ? a.u.i : a.u.b) == (b.t == V_INT ? b.u.i : b.u.b);
        return jv_num_of(a) == jv_num_of(b);
    }
    if (a.t != b.t)
        return false;
    switch (a.t) {
    case V_UNDEF:
    case V_NONE: return true;
    case V_STR: return a.u.s.n == b.u.s.n && memcmp(a.u.s.p, b.u.s.p, a.u.s.n) == 0;
    case V_LIST:
        if (a.u.l->n != b.u.l->n || a.tuple != b.tuple)
            return false;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!jv_equal(a.u.l->v[i], b.u.l->v[i]))
                return false;
        return true;
    case V_DICT:
        if (a.u.d->n != b.u.d->n)
            return false;
        for (size_t i = 0; i < a.u.d->n; i++) {
            jv *o = jv_dict_find(b.u.d, a.u.d->k[i], a.u.d->kn[i]);
            if (!o || !jv_equal(a.u.d->v[i], *o))
                return false;
        }
        return true;
    case V_MACRO: return a.u.m == b.u.m;
    case V_FUNC: return a.u.fn == b.u.fn;
    default: return false;
    }
}

const char *jv_type_name(jv x)
{
    static const char *const names[] = {"Undefined", "NoneType", "bool", "int", "float",
                                        "str", "list", "dict", "macro", "function"};
    return x.t == V_LIST && x.tuple ? "tuple" : names[x.t];
}

void jv_sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->failed || n == 0)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->n + n)
            cap *= 2;
        char *np = jinja_alloc(&b->r->a, cap);
        if (!np) {
            b->failed = true;
            return;
        }
        if (b->n)
            memcpy(np, b->p, b->n);
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void sb_puts(sbuf *b, const char *s)
{
    jv_sb_put(b, s, strlen(s));
}

/* Python's repr() of a float: the shortest digits that read back the same,
 * fixed notation for exponents -4..15, else d.ddde+XX. */
static void put_float(sbuf *b, double f)
{
    char buf[64];
    if (isnan(f)) {
        sb_puts(b, "nan");
        return;
    }
    if (isinf(f)) {
        sb_puts(b, f < 0 ? "-inf" : "inf");
        return;
    }
    int prec = 1;
    for (; prec < 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, f);
        if (strtod(buf, NULL) == f)
            break;
    }
    snprintf(buf, sizeof buf, "%.*e", prec - 1, f);
    char *e = strchr(buf, 'e');
    int exp = atoi(e + 1);
    if (exp >= -4 && exp < 16) {
        int decimals = prec - 1 - exp;
        snprintf(buf, sizeof buf, "%.*f", decimals > 0 ? decimals : 0, f);
        sb_puts(b, buf);
        if (decimals <= 0)
            sb_puts(b, ".0");
        return;
    }
    /* mantissa digits, then e+XX with at least two exponent digits */
    *e = '\0';
    char exps[16];
    snprintf(exps, sizeof exps, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    sb_puts(b, buf);
    sb_puts(b, exps);
}

static void put_repr(sbuf *b, jv x);

/* Python's repr() of a str: single quotes unless the text has ' and no ". */
static void put_str_repr(sbuf *b, const char *s, size_t n)
{
    bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    jv_sb_put(b, &q, 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == (unsigned char)q || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            jv_sb_put(b, esc, 2);
        } else if (c == '\n') {
            sb_puts(b, "\\n");
        } else if (c == '\r') {
            sb_puts(b, "\\r");
        } else if (c == '\t') {
            sb_puts(b, "\\t");
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", c);
            sb_puts(b, esc);
        } else {
            jv_sb_put(b, (const char *)&c, 1);
        }
    }
    jv_sb_put(b, &q, 1);
}

/* str(): what {{ x }} prints. */
void jv_put_str(sbuf *b, jv x)
{
    char buf[32];
    switch (x.t) {
    case V_UNDEF: break;
    case V_NONE: sb_puts(b, "None"); break;
    case V_BOOL: sb_puts(b, x.u.b ? "True" : "False"); break;
    case V_INT:
        snprintf(buf, sizeof buf, "%lld", (long long)x.u.i);
        sb_puts(b, buf);
        break;
    case V_FLOAT: put_float(b, x.u.f); break;
    case V_STR: jv_sb_put(b, x.u.s.p, x.u.s.n); break;
    default: put_repr(b, x); break;
    }
}

static void put_repr(sbuf *b, jv x)
{
    switch (x.t) {
    case V_STR: put_str_repr(b, x.u.s.p, x.u.s.n); break;
    case V_LIST:
        if (x.gen) {
            sb_puts(b, "<generator object>");
            break;
        }
        sb_puts(b, x.tuple ? "(" : "[");
        for (size_t i = 0; i < x.u.l->n; i++) {
            if (i)
                sb_puts(b, ", ");
            put_repr(b, x.u.l->v[i]);
        }
        if (x.tuple && x.u.l->n == 1)
            sb_puts(b, ",");
        sb_puts(b, x.tuple ? ")" : "]");
        break;
    case V_DICT:
        if (x.ns) {
            sb_puts(b, "<Namespace>");
            break;
        }
        sb_puts(b, "{");
        for (size_t i = 0; i < x.u.d->n; i++) {
            if (i)
                sb_puts(b, ", ");
            put_str_repr(b, x.u.d->k[i], x.u.d->kn[i]);
            sb_puts(b, ": ");
            put_repr(b, x.u.d->v[i]);
        }
        sb_puts(b, "}");
        break;
    case V_MACRO: sb_puts(b, "<Macro>"); break;
    case V_FUNC: sb_puts(b, "<function>"); break;
    default: jv_put_str(b, x); break;
    }
}

/* json.dumps(x, ensure_ascii=False, indent=INDENT (<0: none), separators,
 * sort_keys=False). */
int jv_put_json(rstate *r, sbuf *b, jv x, int indent, int level, const char *item_sep,
                    const char *key_sep)
{
    char buf[32];
    switch (x.t) {
    case V_NONE: sb_puts(b, "null"); return ATTND_OK;
    case V_BOOL: sb_puts(b, x.u.b ? "true" : "false"); return ATTND_OK;
    case V_INT:
        snprintf(buf, sizeof buf, "%lld", (long long)x.u.i);
        sb_puts(b, buf);
        return ATTND_OK;
    case V_FLOAT:
        if (isnan(x.u.f))
            sb_puts(b, "NaN");
        else if (isinf(x.u.f))
            sb_puts(b, x.u.f < 0 ? "-Infinity" : "Infinity");
        else
            put_float(b, x.u.f);
        return ATTND_OK;
    case V_STR:
        sb_puts(b, "\"");
        for (size_t i = 0; i < x.u.s.n; i++) {
            unsigned char c = (unsigned char)x.u.s.p[i];
            if (c == '"')
                sb_puts(b, "\\\"");
            else if (c == '\\')
                sb_puts(b, "\\\\");
            else if (c == '\n')
                sb_puts(b, "\\n");
            else if (c == '\r')
                sb_puts(b, "\\r");
            else if (c == '\t')
                sb_puts(b, "\\t");
            else if (c == '\b')
                sb_puts(b, "\\b");
            else if (c == '\f')
                sb_puts(b, "\\f");
            else if (c < 0x20) {
                snprintf(buf, sizeof buf, "\\u%04x", c);
                sb_puts(b, buf);
            } else
                jv_sb_put(b, (const char *)&c, 1);
        }
        sb_puts(b, "\"");
        return ATTND_OK;
    case V_LIST:
    case V_DICT: {
        bool dict = x.t == V_DICT;
        if (x.gen)
            return jv_rerr(r, "Object of type generator is not JSON serializable");
        size_t n = dict ? x.u.d->n : x.u.l->n;
        sb_puts(b, dict ? "{" : "[");
        if (n == 0) {
            sb_puts(b, dict ? "}" : "]");
            return ATTND_OK;
        }
        for (size_t i = 0; i < n; i++) {
            if (i)
                sb_puts(b, item_sep);
            if (indent >= 0) {
                sb_puts(b, "\n");
                for (int k = 0; k < indent * (level + 1); k++)
                    sb_puts(b, " ");
            }
            if (dict) {
                jv_put_json(r, b, v_str(x.u.d->k[i], x.u.d->kn[i]), indent, level + 1, item_sep,
                         key_sep);
                sb_puts(b, key_sep);
            }
            int rc = jv_put_json(r, b, dict ? x.u.d->v[i] : x.u.l->v[i], indent, level + 1,
                              item_sep, key_sep);
            if (rc != ATTND_OK)
                return rc;
        }
        if (indent >= 0) {
            sb_puts(b, "\n");
            for (int k = 0; k < indent * level; k++)
                sb_puts(b, " ");
        }
        sb_puts(b, dict ? "}" : "]");
        return ATTND_OK;
    }
    default:
        return jv_rerr(r, "Object of type %s is not JSON serializable", jv_type_name(x));
    }
}

jv jv_sb_value(sbuf *b)
{
    return v_str(b->p ? b->p : "", b->n);
}

int jv_to_str(rstate *r, jv x, jv *out)
{
    if (x.t == V_STR) {
        *out = x;
        return ATTND_OK;
    }
    sbuf b = {.r = r};
    jv_put_str(&b, x);
    if (b.failed)
        return jv_room(r);
    *out = jv_sb_value(&b);
    return ATTND_OK;
}

jv jv_arg_get(const args *a, size_t i, const char *kw, jv dflt)
{
    for (size_t k = 0; kw && k < a->n_kw; k++)
        if (a->kw_len[k] == strlen(kw) && memcmp(a->kw[k], kw, a->kw_len[k]) == 0)
            return a->kwv[k];
    return i < a->n ? a->pos[i] : dflt;
}

bool jv_name_is(const char *name, size_t n, const char *want)
{
    return strlen(want) == n && memcmp(name, want, n) == 0;
}

/* Iterates X as Python would: a list's items, a dict's keys, a string's
 * characters; Undefined is empty. */
int jv_as_list(rstate *r, jv x, jlist **out)
{
    if (x.t == V_LIST) {
        *out = x.u.l;
        return ATTND_OK;
    }
    jlist *l = jv_list_new(r, 0);
    if (!l)
        return jv_room(r);
    if (x.t == V_DICT) {
        for (size_t i = 0; i < x.u.d->n; i++)
            if (!jv_list_push(r, l, v_str(x.u.d->k[i], x.u.d->kn[i])))
                return jv_room(r);
    } else if (x.t == V_STR) {
        for (size_t i = 0; i < x.u.s.n;) {
            uint32_t cp;
            int k = attnd_utf8_decode(x.u.s.p + i, x.u.s.n - i, &cp);
            size_t step = k > 0 ? (size_t)k : 1;
            if (!jv_list_push(r, l, v_str(x.u.s.p + i, step)))
                return jv_room(r);
            i += step;
        }
    } else if (x.t != V_UNDEF) {
        return jv_rerr(r, "'%s' object is not iterable", jv_type_name(x));
    }
    *out = l;
    return ATTND_OK;
}

size_t jv_utf8_count(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            c++;
    return c;
}

static bool py_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/* str.strip/lstrip/rstrip: ASCII whitespace (and the whitespace code points
 * chat content meets: NBSP and friends are kept, as they rarely matter),
 * or the characters of CHARS. */
jv jv_strip(jv s, bool left, bool right, const jv *chars)
{
    const char *p = s.u.s.p;
    size_t n = s.u.s.n;
    while (left && n > 0 &&
           (chars ? memchr(chars->u.s.p, p[0], chars->u.s.n) != NULL : py_space((unsigned char)p[0]))) {
        p++;
        n--;
    }
    while (right && n > 0 &&
           (chars ? memchr(chars->u.s.p, p[n - 1], chars->u.s.n) != NULL
                  : py_space((unsigned char)p[n - 1])))
        n--;
    return v_str(p, n);
}

jv jv_str_case(rstate *r, jv s, int mode) /* 0 lower, 1 upper, 2 capitalize, 3 title */
{
    char *o = jinja_alloc(&r->a, s.u.s.n + 1);
    if (!o)
        return k_undef;
    bool word_start = true;
    for (size_t i = 0; i < s.u.s.n; i++) {
        unsigned char c = (unsigned char)s.u.s.p[i];
        int up = mode == 1 || ((mode == 2 && i == 0) || (mode == 3 && word_start));
        o[i] = (char)(c < 0x80 ? (up ? toupper(c) : tolower(c)) : c);
        word_start = !isalpha(c);
    }
    return v_str(o, s.u.s.n);
}

int jv_str_split(rstate *r, jv s, const jv *sep, int64_t maxsplit, jv *out)
{
    jlist *l = jv_list_new(r, 0);
    if (!l)
        return jv_room(r);
    const char *p = s.u.s.p, *end = p + s.u.s.n;
    if (!sep || sep->t == V_NONE) { /* runs of whitespace, none at the ends */
        while (p < end) {
            while (p < end && py_space((unsigned char)*p))
                p++;
            if (p == end)
                break;
            const char *w = p;
            if (maxsplit >= 0 && (int64_t)l->n == maxsplit) {
                const char *e2 = end;
                while (e2 > w && py_space((unsigned char)e2[-1]))
                    e2--;
                if (!jv_list_push(r, l, v_str(w, (size_t)(e2 - w))))
                    return jv_room(r);
                break;
            }
            while (p < end && !py_space((unsigned char)*p))
                p++;
            if (!jv_list_push(r, l, v_str(w, (size_t)(p - w))))
                return jv_room(r);
        }
    } else {
        if (sep->t != V_STR || sep->u.s.n == 0)
            return jv_rerr(r, "split: empty separator");
        for (;;) {
            const char *hit = (maxsplit < 0 || (int64_t)l->n < maxsplit)
                                  ? memmem(p, (size_t)(end - p), sep->u.s.p, sep->u.s.n)
                                  : NULL;
            if (!hit) {
                if (!jv_list_push(r, l, v_str(p, (size_t)(end - p))))
                    return jv_room(r);
                break;
            }
            if (!jv_list_push(r, l, v_str(p, (size_t)(hit - p))))
                return jv_room(r);
            p = hit + sep->u.s.n;
        }
    }
    *out = (jv){.t = V_LIST, .u.l = l};
    return ATTND_OK;
}

int jv_str_replace(rstate *r, jv s, jv from, jv to, int64_t count, jv *out)
{
    if (from.t != V_STR || to.t != V_STR)
        return jv_rerr(r, "replace() takes strings");
    sbuf b = {.r = r};
    const char *p = s.u.s.p, *end = p + s.u.s.n;
    int64_t done = 0;
    if (from.u.s.n == 0) { /* Python inserts between every character */
        jlist *chars;
        int rc = jv_as_list(r, s, &chars);
        if (rc != ATTND_OK)
            return rc;
        for (size_t i = 0; i <= chars->n; i++) {
            if (count < 0 || done < count) {
                jv_sb_put(&b, to.u.s.p, to.u.s.n);
                done++;
            }
            if (i < chars->n)
                jv_sb_put(&b, chars->v[i].u.s.p, chars->v[i].u.s.n);
        }
    } else {
        for (;;) {
            const char *hit = (count < 0 || done < count)
                                  ? memmem(p, (size_t)(end - p), from.u.s.p, from.u.s.n)
                                  : NULL;
            if (!hit) {
                jv_sb_put(&b, p, (size_t)(end - p));
                break;
            }
            jv_sb_put(&b, p, (size_t)(hit - p));
            jv_sb_put(&b, to.u.s.p, to.u.s.n);
            p = hit + from.u.s.n;
            done++;
        }
    }
    if (b.failed)
        return jv_room(r);
    *out = jv_sb_value(&b);
    return ATTND_OK;
}

bool jv_str_affix(jv s, jv affix, bool prefix)
{
    if (affix.t == V_LIST) { /* a tuple of alternatives */
        for (size_t i = 0; i < affix.u.l->n; i++)
            if (jv_str_affix(s, affix.u.l->v[i], prefix))
                return true;
        return false;
    }
    if (affix.t != V_STR || affix.u.s.n > s.u.s.n)
        return false;
    const char *at = prefix ? s.u.s.p : s.u.s.p + s.u.s.n - affix.u.s.n;
    return memcmp(at, affix.u.s.p, affix.u.s.n) == 0;
}

/* markupsafe's escape: & < > " ' as entities. */
void jv_put_escaped(sbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        const char *rep = c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;"
                          : c == '"' ? "&#34;" : c == '\'' ? "&#39;" : NULL;
        if (rep)
            sb_puts(b, rep);
        else
            jv_sb_put(b, &c, 1);
    }
}

void jv_put_maybe_escaped(sbuf *b, jv s, bool escape)
{
    if (escape)
        jv_put_escaped(b, s.u.s.p, s.u.s.n);
    else
        jv_sb_put(b, s.u.s.p, s.u.s.n);
}

/* ------------------------------------------------------------ entry points */

int jv_from_json(rstate *r, const cJSON *j, jv *out, int depth)
{
    if (depth > 64)
        return jv_rerr(r, "variables nested deeper than 64");
    if (cJSON_IsNull(j)) {
        *out = k_none;
    } else if (cJSON_IsBool(j)) {
        *out = v_bool(cJSON_IsTrue(j));
    } else if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        *out = d == floor(d) && fabs(d) < 9007199254740992.0 ? v_int((int64_t)d) : v_float(d);
    } else if (cJSON_IsString(j)) {
        *out = v_str(j->valuestring, strlen(j->valuestring));
    } else if (cJSON_IsArray(j)) {
        jlist *l = jv_list_new(r, 0);
        if (!l)
            return jv_room(r);
        for (const cJSON *c = j->child; c; c = c->next) {
            jv x;
            int rc = jv_from_json(r, c, &x, depth + 1);
            if (rc != ATTND_OK)
                return rc;
            if (!jv_list_push(r, l, x))
                return jv_room(r);
        }
        *out = (jv){.t = V_LIST, .u.l = l};
    } else if (cJSON_IsObject(j)) {
        jdict *d = jv_dict_new(r);
        if (!d)
            return jv_room(r);
        for (const cJSON *c = j->child; c; c = c->next) {
            jv x;
            int rc = jv_from_json(r, c, &x, depth + 1);
            if (rc != ATTND_OK)
                return rc;
            if (!jv_dict_set(r, d, c->string, strlen(c->string), x))
                return jv_room(r);
        }
        *out = (jv){.t = V_DICT, .u.d = d};
    } else {
        *out = k_undef;
    }
    return ATTND_OK;
}
