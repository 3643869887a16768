/* jinja_eval.c - rendering: values with Python's semantics (truth, equality,
 * str() and repr(), json.dumps for tojson), scopes as jinja2 has them (a
 * loop iteration and a macro call are scopes of their own, an if is not),
 * and the filters, tests, globals and str/dict methods chat templates use.
 * Every allocation of a render comes from its arena; limits on output,
 * memory, loop iterations and call depth turn runaway templates into errors. */
#include "jinja_internal.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnd_utf8.h"

#define MAX_CALL_DEPTH 64
#define MAX_ITERATIONS 1000000
#define RENDER_ARENA_BYTES (256u << 20)

/* ------------------------------------------------------------ values */

typedef enum vtype { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_MACRO, V_FUNC } vtype;

typedef enum func_id { F_RANGE, F_NAMESPACE, F_RAISE, F_STRFTIME, F_DICT } func_id;

typedef struct jlist jlist;
typedef struct jdict jdict;

typedef struct jv {
    vtype t;
    bool tuple;     /* V_LIST written as a tuple */
    bool gen;       /* V_LIST that is a Python generator (map, select, ...): always
                       true, no len(), not JSON */
    bool ns;        /* V_DICT that is a namespace() */
    bool markup;    /* V_STR that is markupsafe.Markup (the safe filter): + escapes
                       the plain string beside it */
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s;
        jlist *l;
        jdict *d;
        const jnode *m;
        func_id fn;
    } u;
} jv;

struct jlist {
    jv *v;
    size_t n, cap;
};

struct jdict {
    const char **k;
    size_t *kn;
    jv *v;
    size_t n, cap;
};

static const jv k_undef = {.t = V_UNDEF};
static const jv k_none = {.t = V_NONE};

static jv v_bool(bool b) { return (jv){.t = V_BOOL, .u.b = b}; }
static jv v_int(int64_t i) { return (jv){.t = V_INT, .u.i = i}; }
static jv v_float(double f) { return (jv){.t = V_FLOAT, .u.f = f}; }
static jv v_str(const char *p, size_t n) { return (jv){.t = V_STR, .u.s = {p, n}}; }

/* ------------------------------------------------------------ render state */

typedef struct frame frame;
struct frame {
    frame *up;
    jdict *vars;
};

typedef struct rstate {
    jinja_arena a;
    attnd_err *err;
    char *out;
    size_t out_n, out_cap, max_out;
    frame *root;          /* the template's own variables (set at top level) */
    frame *globals;       /* the caller's variables */
    time_t now;
    int depth;
    uint64_t iterations;
    int loop_ctl;         /* 1: break, 2: continue, while unwinding a loop body */
    int line;             /* of the construct being evaluated, for messages */
    jv filter_input;      /* the body text of the filter block being applied */
} rstate;

static int rerr(rstate *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int rerr(rstate *r, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return attnd_err_set(r->err, ATTND_EINVAL, "template line %d: %s", r->line, msg);
}

static int room(rstate *r)
{
    return attnd_err_set(r->err, ATTND_ENOMEM, "template: out of memory (render)");
}

static jlist *list_new(rstate *r, size_t cap)
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

static bool list_push(rstate *r, jlist *l, jv x)
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

static jdict *dict_new(rstate *r)
{
    return jinja_alloc(&r->a, sizeof(jdict));
}

static jv *dict_find(const jdict *d, const char *k, size_t kn)
{
    for (size_t i = 0; d && i < d->n; i++)
        if (d->kn[i] == kn && memcmp(d->k[i], k, kn) == 0)
            return &d->v[i];
    return NULL;
}

static bool dict_set(rstate *r, jdict *d, const char *k, size_t kn, jv x)
{
    jv *slot = dict_find(d, k, kn);
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

static bool truthy(jv x)
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

static bool is_num(jv x)
{
    return x.t == V_INT || x.t == V_FLOAT || x.t == V_BOOL;
}

static double num_of(jv x)
{
    return x.t == V_FLOAT ? x.u.f : x.t == V_INT ? (double)x.u.i : (double)x.u.b;
}

static bool equal(jv a, jv b)
{
    if (is_num(a) && is_num(b)) {
        if (a.t != V_FLOAT && b.t != V_FLOAT)
            return (a.t == V_INT ? a.u.i : a.u.b) == (b.t == V_INT ? b.u.i : b.u.b);
        return num_of(a) == num_of(b);
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
            if (!equal(a.u.l->v[i], b.u.l->v[i]))
                return false;
        return true;
    case V_DICT:
        if (a.u.d->n != b.u.d->n)
            return false;
        for (size_t i = 0; i < a.u.d->n; i++) {
            jv *o = dict_find(b.u.d, a.u.d->k[i], a.u.d->kn[i]);
            if (!o || !equal(a.u.d->v[i], *o))
                return false;
        }
        return true;
    case V_MACRO: return a.u.m == b.u.m;
    case V_FUNC: return a.u.fn == b.u.fn;
    default: return false;
    }
}

static const char *type_name(jv x)
{
    static const char *const names[] = {"Undefined", "NoneType", "bool", "int", "float",
                                        "str", "list", "dict", "macro", "function"};
    return x.t == V_LIST && x.tuple ? "tuple" : names[x.t];
}

/* ------------------------------------------------------------ text building */

typedef struct sbuf {
    rstate *r;
    char *p;
    size_t n, cap;
    bool failed;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
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
    sb_put(b, s, strlen(s));
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
    sb_put(b, &q, 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == (unsigned char)q || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            sb_put(b, esc, 2);
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
            sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, &q, 1);
}

/* str(): what {{ x }} prints. */
static void put_str(sbuf *b, jv x)
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
    case V_STR: sb_put(b, x.u.s.p, x.u.s.n); break;
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
    default: put_str(b, x); break;
    }
}

/* json.dumps(x, ensure_ascii=False, indent=INDENT (<0: none), separators,
 * sort_keys=False). */
static int put_json(rstate *r, sbuf *b, jv x, int indent, int level, const char *item_sep,
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
                sb_put(b, (const char *)&c, 1);
        }
        sb_puts(b, "\"");
        return ATTND_OK;
    case V_LIST:
    case V_DICT: {
        bool dict = x.t == V_DICT;
        if (x.gen)
            return rerr(r, "Object of type generator is not JSON serializable");
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
                put_json(r, b, v_str(x.u.d->k[i], x.u.d->kn[i]), indent, level + 1, item_sep,
                         key_sep);
                sb_puts(b, key_sep);
            }
            int rc = put_json(r, b, dict ? x.u.d->v[i] : x.u.l->v[i], indent, level + 1,
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
        return rerr(r, "Object of type %s is not JSON serializable", type_name(x));
    }
}

static jv sb_value(sbuf *b)
{
    return v_str(b->p ? b->p : "", b->n);
}

static int to_str(rstate *r, jv x, jv *out)
{
    if (x.t == V_STR) {
        *out = x;
        return ATTND_OK;
    }
    sbuf b = {.r = r};
    put_str(&b, x);
    if (b.failed)
        return room(r);
    *out = sb_value(&b);
    return ATTND_OK;
}

/* ------------------------------------------------------------ variables */

static jv lookup(rstate *r, frame *f, const char *name, size_t n)
{
    for (; f; f = f->up) {
        jv *v = dict_find(f->vars, name, n);
        if (v)
            return *v;
    }
    (void)r;
    static const struct {
        const char *name;
        func_id fn;
    } globals[] = {{"range", F_RANGE},
                   {"namespace", F_NAMESPACE},
                   {"raise_exception", F_RAISE},
                   {"strftime_now", F_STRFTIME},
                   {"dict", F_DICT}};
    for (size_t i = 0; i < sizeof globals / sizeof globals[0]; i++)
        if (strlen(globals[i].name) == n && memcmp(globals[i].name, name, n) == 0)
            return (jv){.t = V_FUNC, .u.fn = globals[i].fn};
    return k_undef;
}

static frame *frame_new(rstate *r, frame *up)
{
    frame *f = jinja_alloc(&r->a, sizeof *f);
    if (f) {
        f->up = up;
        f->vars = dict_new(r);
        if (!f->vars)
            return NULL;
    }
    return f;
}

/* ------------------------------------------------------------ evaluation */

typedef struct args {
    jv *pos;
    size_t n;
    const char **kw;
    size_t *kw_len;
    jv *kwv;
    size_t n_kw;
} args;

static int eval(rstate *r, frame *f, const jexpr *e, jv *out);
static int render_body(rstate *r, frame *f, const jbody *b);

static jv arg_get(const args *a, size_t i, const char *kw, jv dflt)
{
    for (size_t k = 0; kw && k < a->n_kw; k++)
        if (a->kw_len[k] == strlen(kw) && memcmp(a->kw[k], kw, a->kw_len[k]) == 0)
            return a->kwv[k];
    return i < a->n ? a->pos[i] : dflt;
}

static int eval_args(rstate *r, frame *f, const jexpr *e, size_t skip, jv first, args *a)
{
    size_t n = e->n_args + skip;
    a->pos = jinja_alloc(&r->a, (n ? n : 1) * sizeof *a->pos);
    a->kwv = jinja_alloc(&r->a, (e->n_kwargs ? e->n_kwargs : 1) * sizeof *a->kwv);
    if (!a->pos || !a->kwv)
        return room(r);
    if (skip)
        a->pos[0] = first;
    for (size_t i = 0; i < e->n_args; i++) {
        int rc = eval(r, f, e->args[i], &a->pos[skip + i]);
        if (rc != ATTND_OK)
            return rc;
    }
    a->n = n;
    a->kw = e->kw;
    a->kw_len = e->kw_len;
    a->n_kw = e->n_kwargs;
    for (size_t i = 0; i < e->n_kwargs; i++) {
        int rc = eval(r, f, e->kwargs[i], &a->kwv[i]);
        if (rc != ATTND_OK)
            return rc;
    }
    return ATTND_OK;
}

static bool name_is(const char *name, size_t n, const char *want)
{
    return strlen(want) == n && memcmp(name, want, n) == 0;
}

/* Iterates X as Python would: a list's items, a dict's keys, a string's
 * characters; Undefined is empty. */
static int as_list(rstate *r, jv x, jlist **out)
{
    if (x.t == V_LIST) {
        *out = x.u.l;
        return ATTND_OK;
    }
    jlist *l = list_new(r, 0);
    if (!l)
        return room(r);
    if (x.t == V_DICT) {
        for (size_t i = 0; i < x.u.d->n; i++)
            if (!list_push(r, l, v_str(x.u.d->k[i], x.u.d->kn[i])))
                return room(r);
    } else if (x.t == V_STR) {
        for (size_t i = 0; i < x.u.s.n;) {
            uint32_t cp;
            int k = attnd_utf8_decode(x.u.s.p + i, x.u.s.n - i, &cp);
            size_t step = k > 0 ? (size_t)k : 1;
            if (!list_push(r, l, v_str(x.u.s.p + i, step)))
                return room(r);
            i += step;
        }
    } else if (x.t != V_UNDEF) {
        return rerr(r, "'%s' object is not iterable", type_name(x));
    }
    *out = l;
    return ATTND_OK;
}

static size_t utf8_count(const char *s, size_t n)
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
static jv strip(jv s, bool left, bool right, const jv *chars)
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

static jv str_case(rstate *r, jv s, int mode) /* 0 lower, 1 upper, 2 capitalize, 3 title */
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

static int str_split(rstate *r, jv s, const jv *sep, int64_t maxsplit, jv *out)
{
    jlist *l = list_new(r, 0);
    if (!l)
        return room(r);
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
                if (!list_push(r, l, v_str(w, (size_t)(e2 - w))))
                    return room(r);
                break;
            }
            while (p < end && !py_space((unsigned char)*p))
                p++;
            if (!list_push(r, l, v_str(w, (size_t)(p - w))))
                return room(r);
        }
    } else {
        if (sep->t != V_STR || sep->u.s.n == 0)
            return rerr(r, "split: empty separator");
        for (;;) {
            const char *hit = (maxsplit < 0 || (int64_t)l->n < maxsplit)
                                  ? memmem(p, (size_t)(end - p), sep->u.s.p, sep->u.s.n)
                                  : NULL;
            if (!hit) {
                if (!list_push(r, l, v_str(p, (size_t)(end - p))))
                    return room(r);
                break;
            }
            if (!list_push(r, l, v_str(p, (size_t)(hit - p))))
                return room(r);
            p = hit + sep->u.s.n;
        }
    }
    *out = (jv){.t = V_LIST, .u.l = l};
    return ATTND_OK;
}

static int str_replace(rstate *r, jv s, jv from, jv to, int64_t count, jv *out)
{
    if (from.t != V_STR || to.t != V_STR)
        return rerr(r, "replace() takes strings");
    sbuf b = {.r = r};
    const char *p = s.u.s.p, *end = p + s.u.s.n;
    int64_t done = 0;
    if (from.u.s.n == 0) { /* Python inserts between every character */
        jlist *chars;
        int rc = as_list(r, s, &chars);
        if (rc != ATTND_OK)
            return rc;
        for (size_t i = 0; i <= chars->n; i++) {
            if (count < 0 || done < count) {
                sb_put(&b, to.u.s.p, to.u.s.n);
                done++;
            }
            if (i < chars->n)
                sb_put(&b, chars->v[i].u.s.p, chars->v[i].u.s.n);
        }
    } else {
        for (;;) {
            const char *hit = (count < 0 || done < count)
                                  ? memmem(p, (size_t)(end - p), from.u.s.p, from.u.s.n)
                                  : NULL;
            if (!hit) {
                sb_put(&b, p, (size_t)(end - p));
                break;
            }
            sb_put(&b, p, (size_t)(hit - p));
            sb_put(&b, to.u.s.p, to.u.s.n);
            p = hit + from.u.s.n;
            done++;
        }
    }
    if (b.failed)
        return room(r);
    *out = sb_value(&b);
    return ATTND_OK;
}

static bool str_affix(jv s, jv affix, bool prefix)
{
    if (affix.t == V_LIST) { /* a tuple of alternatives */
        for (size_t i = 0; i < affix.u.l->n; i++)
            if (str_affix(s, affix.u.l->v[i], prefix))
                return true;
        return false;
    }
    if (affix.t != V_STR || affix.u.s.n > s.u.s.n)
        return false;
    const char *at = prefix ? s.u.s.p : s.u.s.p + s.u.s.n - affix.u.s.n;
    return memcmp(at, affix.u.s.p, affix.u.s.n) == 0;
}

/* x.name(args) for strings and dicts (what the sandbox allows). */
static int call_method(rstate *r, jv obj, const char *name, size_t n, const args *a, jv *out,
                       bool *found)
{
    *found = true;
    if (obj.t == V_STR) {
        jv none = k_none;
        if (name_is(name, n, "strip") || name_is(name, n, "lstrip") || name_is(name, n, "rstrip")) {
            jv chars = arg_get(a, 0, NULL, none);
            bool l = !name_is(name, n, "rstrip"), rt = !name_is(name, n, "lstrip");
            *out = strip(obj, l, rt, chars.t == V_STR ? &chars : NULL);
            return ATTND_OK;
        }
        if (name_is(name, n, "split")) {
            jv sep = arg_get(a, 0, "sep", none), mx = arg_get(a, 1, "maxsplit", v_int(-1));
            return str_split(r, obj, &sep, mx.t == V_INT ? mx.u.i : -1, out);
        }
        if (name_is(name, n, "startswith") || name_is(name, n, "endswith")) {
            *out = v_bool(str_affix(obj, arg_get(a, 0, NULL, none), name[0] == 's'));
            return ATTND_OK;
        }
        if (name_is(name, n, "lower") || name_is(name, n, "upper") ||
            name_is(name, n, "capitalize") || name_is(name, n, "title")) {
            int mode = name[0] == 'l' ? 0 : name[0] == 'u' ? 1 : name[0] == 'c' ? 2 : 3;
            *out = str_case(r, obj, mode);
            return out->t == V_UNDEF ? room(r) : ATTND_OK;
        }
        if (name_is(name, n, "replace")) {
            jv cnt = arg_get(a, 2, "count", v_int(-1));
            return str_replace(r, obj, arg_get(a, 0, NULL, none), arg_get(a, 1, NULL, none),
                               cnt.t == V_INT ? cnt.u.i : -1, out);
        }
        if (name_is(name, n, "find") || name_is(name, n, "count")) {
            jv sub = arg_get(a, 0, NULL, none);
            if (sub.t != V_STR)
                return rerr(r, "%.*s() takes a string", (int)n, name);
            int64_t found_at = -1, count = 0;
            for (size_t i = 0; sub.u.s.n <= obj.u.s.n && i + sub.u.s.n <= obj.u.s.n;) {
                if (memcmp(obj.u.s.p + i, sub.u.s.p, sub.u.s.n) == 0) {
                    if (found_at < 0)
                        found_at = (int64_t)utf8_count(obj.u.s.p, i);
                    count++;
                    i += sub.u.s.n ? sub.u.s.n : 1;
                } else {
                    i++;
                }
            }
            *out = v_int(name[0] == 'f' ? found_at : count);
            return ATTND_OK;
        }
    } else if (obj.t == V_DICT && !obj.ns) {
        if (name_is(name, n, "get")) {
            jv k = arg_get(a, 0, NULL, k_none);
            jv *v = k.t == V_STR ? dict_find(obj.u.d, k.u.s.p, k.u.s.n) : NULL;
            *out = v ? *v : arg_get(a, 1, NULL, k_none);
            return ATTND_OK;
        }
        if (name_is(name, n, "items") || name_is(name, n, "keys") || name_is(name, n, "values")) {
            jlist *l = list_new(r, obj.u.d->n);
            if (!l)
                return room(r);
            for (size_t i = 0; i < obj.u.d->n; i++) {
                jv k = v_str(obj.u.d->k[i], obj.u.d->kn[i]), x;
                if (name[0] == 'i') {
                    jlist *pair = list_new(r, 2);
                    if (!pair)
                        return room(r);
                    pair->v[0] = k;
                    pair->v[1] = obj.u.d->v[i];
                    pair->n = 2;
                    x = (jv){.t = V_LIST, .tuple = true, .u.l = pair};
                } else {
                    x = name[0] == 'k' ? k : obj.u.d->v[i];
                }
                if (!list_push(r, l, x))
                    return room(r);
            }
            *out = (jv){.t = V_LIST, .u.l = l};
            return ATTND_OK;
        }
    }
    *found = false;
    return ATTND_OK;
}

static bool is_dict_method(const char *name, size_t n)
{
    return name_is(name, n, "get") || name_is(name, n, "items") || name_is(name, n, "keys") ||
           name_is(name, n, "values");
}

/* obj.name: a dict's item (jinja2 tries the attribute first: dict methods
 * shadow items of the same name), a namespace's attribute. */
static int get_attr(rstate *r, jv obj, const char *name, size_t n, jv *out)
{
    if (obj.t == V_UNDEF)
        return rerr(r, "'%.*s' of an undefined value", (int)n, name);
    if (obj.t == V_DICT) {
        jv *v = is_dict_method(name, n) && !obj.ns ? NULL : dict_find(obj.u.d, name, n);
        *out = v ? *v : k_undef;
        return ATTND_OK;
    }
    *out = k_undef; /* e.g. a string's methods outside a call, or no such attribute */
    return ATTND_OK;
}

static int get_item(rstate *r, jv obj, jv key, jv *out)
{
    if (obj.t == V_UNDEF)
        return rerr(r, "subscript of an undefined value");
    if (obj.t == V_DICT) {
        jv *v = key.t == V_STR ? dict_find(obj.u.d, key.u.s.p, key.u.s.n) : NULL;
        *out = v ? *v : k_undef;
        return ATTND_OK;
    }
    if ((obj.t == V_LIST || obj.t == V_STR) && (key.t == V_INT || key.t == V_BOOL)) {
        jlist *l;
        int rc = as_list(r, obj, &l);
        if (rc != ATTND_OK)
            return rc;
        int64_t i = key.t == V_INT ? key.u.i : key.u.b;
        if (i < 0)
            i += (int64_t)l->n;
        *out = i >= 0 && (uint64_t)i < l->n ? l->v[i] : k_undef;
        return ATTND_OK;
    }
    *out = k_undef;
    return ATTND_OK;
}

static int get_slice(rstate *r, jv obj, jv lo, jv hi, jv step, jv *out)
{
    jlist *l;
    int rc = as_list(r, obj, &l);
    if (rc != ATTND_OK)
        return rc;
    int64_t n = (int64_t)l->n;
    int64_t st = step.t == V_INT ? step.u.i : 1;
    if (st == 0)
        return rerr(r, "slice step cannot be zero");
    int64_t a, b;
    if (st > 0) {
        a = lo.t == V_INT ? lo.u.i : 0;
        b = hi.t == V_INT ? hi.u.i : n;
        if (a < 0)
            a = a + n < 0 ? 0 : a + n;
        if (b < 0)
            b = b + n < 0 ? 0 : b + n;
        a = a > n ? n : a;
        b = b > n ? n : b;
    } else {
        a = lo.t == V_INT ? lo.u.i : n - 1;
        b = hi.t == V_INT ? hi.u.i : -n - 1;
        if (a < 0)
            a += n;
        if (b < -1 || (hi.t == V_INT && hi.u.i < 0))
            b = hi.t == V_INT ? (hi.u.i + n < -1 ? -1 : hi.u.i + n) : -1;
        a = a >= n ? n - 1 : a;
    }
    jlist *res = list_new(r, 0);
    if (!res)
        return room(r);
    for (int64_t i = a; st > 0 ? i < b : i > b; i += st)
        if (!list_push(r, res, l->v[i]))
            return room(r);
    if (obj.t == V_STR) {
        sbuf sb = {.r = r};
        for (size_t i = 0; i < res->n; i++)
            sb_put(&sb, res->v[i].u.s.p, res->v[i].u.s.n);
        if (sb.failed)
            return room(r);
        *out = sb_value(&sb);
    } else {
        *out = (jv){.t = V_LIST, .tuple = obj.tuple, .u.l = res};
    }
    return ATTND_OK;
}

static int apply_test(rstate *r, const char *name, size_t n, jv x, const args *a, bool *res);

/* Renders B into a string value of its own (macro calls, set and filter
 * blocks) instead of the output. */
static int capture(rstate *r, frame *f, const jbody *b, jv *out)
{
    char *saved = r->out;
    size_t saved_n = r->out_n, saved_cap = r->out_cap;
    r->out = NULL;
    r->out_n = r->out_cap = 0;
    int rc = render_body(r, f, b);
    char *text = r->out;
    size_t text_n = r->out_n;
    r->out = saved;
    r->out_n = saved_n;
    r->out_cap = saved_cap;
    if (rc == ATTND_OK) {
        char *copy = jinja_alloc(&r->a, text_n + 1);
        if (!copy)
            rc = room(r);
        else {
            if (text_n)
                memcpy(copy, text, text_n);
            *out = v_str(copy, text_n);
        }
    }
    free(text);
    return rc;
}
static int apply_filter(rstate *r, frame *f, const char *name, size_t n, const args *a, jv *out);

static int call_macro(rstate *r, const jnode *m, const args *a, jv *out)
{
    if (++r->depth > MAX_CALL_DEPTH)
        return rerr(r, "macro calls nested deeper than %d", MAX_CALL_DEPTH);
    frame *f = frame_new(r, r->root);
    if (!f)
        return room(r);
    for (size_t i = 0; i < m->n_names; i++) {
        jv v = k_undef;
        bool given = false;
        for (size_t k = 0; k < a->n_kw; k++)
            if (a->kw_len[k] == m->name_lens[i] && memcmp(a->kw[k], m->names[i], a->kw_len[k]) == 0) {
                v = a->kwv[k];
                given = true;
            }
        if (!given && i < a->n) {
            v = a->pos[i];
            given = true;
        }
        if (!given && m->defaults[i]) {
            int rc = eval(r, f, m->defaults[i], &v);
            if (rc != ATTND_OK)
                return rc;
        }
        if (!dict_set(r, f->vars, m->names[i], m->name_lens[i], v))
            return room(r);
    }
    /* a macro call is a value: the text its body renders */
    int rc = capture(r, f, &m->body, out);
    r->depth--;
    return rc;
}

static int call_func(rstate *r, jv fn, const args *a, jv *out)
{
    if (fn.t == V_MACRO)
        return call_macro(r, fn.u.m, a, out);
    if (fn.t != V_FUNC)
        return rerr(r, "'%s' object is not callable", type_name(fn));
    switch (fn.u.fn) {
    case F_RAISE: {
        jv msg;
        int rc = to_str(r, arg_get(a, 0, NULL, k_undef), &msg);
        if (rc != ATTND_OK)
            return rc;
        /* exactly the template's message: it is shown to the user */
        return attnd_err_set(r->err, ATTND_EINVAL, "%.*s", (int)msg.u.s.n, msg.u.s.p);
    }
    case F_STRFTIME: {
        jv fmt = arg_get(a, 0, NULL, k_undef);
        if (fmt.t != V_STR)
            return rerr(r, "strftime_now() takes a format string");
        char f[256], buf[512];
        snprintf(f, sizeof f, "%.*s", (int)(fmt.u.s.n > 255 ? 255 : fmt.u.s.n), fmt.u.s.p);
        struct tm tm;
        localtime_r(&r->now, &tm);
        size_t k = strftime(buf, sizeof buf, f, &tm);
        char *s = jinja_alloc(&r->a, k + 1);
        if (!s)
            return room(r);
        memcpy(s, buf, k);
        *out = v_str(s, k);
        return ATTND_OK;
    }
    case F_RANGE: {
        int64_t lo = 0, hi, st = 1;
        jv a0 = arg_get(a, 0, NULL, k_undef), a1 = arg_get(a, 1, NULL, k_undef),
           a2 = arg_get(a, 2, NULL, k_undef);
        if (a0.t != V_INT || (a1.t != V_UNDEF && a1.t != V_INT) || (a2.t != V_UNDEF && a2.t != V_INT))
            return rerr(r, "range() takes integers");
        if (a1.t == V_INT) {
            lo = a0.u.i;
            hi = a1.u.i;
        } else {
            hi = a0.u.i;
        }
        if (a2.t == V_INT)
            st = a2.u.i;
        if (st == 0)
            return rerr(r, "range() step must not be zero");
        jlist *l = list_new(r, 0);
        if (!l)
            return room(r);
        for (int64_t i = lo; st > 0 ? i < hi : i > hi; i += st) {
            if (++r->iterations > MAX_ITERATIONS)
                return rerr(r, "more than %d loop iterations", MAX_ITERATIONS);
            if (!list_push(r, l, v_int(i)))
                return room(r);
        }
        *out = (jv){.t = V_LIST, .u.l = l};
        return ATTND_OK;
    }
    case F_NAMESPACE:
    case F_DICT: {
        jdict *d = dict_new(r);
        if (!d)
            return room(r);
        if (a->n > 0 && a->pos[0].t == V_DICT) {
            for (size_t i = 0; i < a->pos[0].u.d->n; i++)
                if (!dict_set(r, d, a->pos[0].u.d->k[i], a->pos[0].u.d->kn[i], a->pos[0].u.d->v[i]))
                    return room(r);
        }
        for (size_t i = 0; i < a->n_kw; i++)
            if (!dict_set(r, d, a->kw[i], a->kw_len[i], a->kwv[i]))
                return room(r);
        *out = (jv){.t = V_DICT, .ns = fn.u.fn == F_NAMESPACE, .u.d = d};
        return ATTND_OK;
    }
    }
    return rerr(r, "unknown function");
}

/* markupsafe's escape: & < > " ' as entities. */
static void put_escaped(sbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        const char *rep = c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;"
                          : c == '"' ? "&#34;" : c == '\'' ? "&#39;" : NULL;
        if (rep)
            sb_puts(b, rep);
        else
            sb_put(b, &c, 1);
    }
}

static void put_maybe_escaped(sbuf *b, jv s, bool escape)
{
    if (escape)
        put_escaped(b, s.u.s.p, s.u.s.n);
    else
        sb_put(b, s.u.s.p, s.u.s.n);
}

static int binop(rstate *r, const char *op, size_t n, jv a, jv b, jv *out)
{
    if (name_is(op, n, "~")) {
        jv sa, sb2;
        int rc;
        if ((rc = to_str(r, a, &sa)) || (rc = to_str(r, b, &sb2)))
            return rc;
        sbuf s = {.r = r};
        sb_put(&s, sa.u.s.p, sa.u.s.n);
        sb_put(&s, sb2.u.s.p, sb2.u.s.n);
        if (s.failed)
            return room(r);
        *out = sb_value(&s);
        return ATTND_OK;
    }
    if (a.t == V_UNDEF || b.t == V_UNDEF)
        return rerr(r, "an undefined value in '%.*s'", (int)n, op);
    if (name_is(op, n, "+") && a.t == V_STR && b.t == V_STR) {
        /* Markup + str escapes the str (and str + Markup): markupsafe */
        bool markup = a.markup || b.markup;
        sbuf s = {.r = r};
        put_maybe_escaped(&s, a, markup && !a.markup);
        put_maybe_escaped(&s, b, markup && !b.markup);
        if (s.failed)
            return room(r);
        *out = sb_value(&s);
        out->markup = markup;
        return ATTND_OK;
    }
    if (name_is(op, n, "+") && a.t == V_LIST && b.t == V_LIST) {
        jlist *l = list_new(r, a.u.l->n + b.u.l->n);
        if (!l)
            return room(r);
        for (size_t i = 0; i < a.u.l->n; i++)
            l->v[l->n++] = a.u.l->v[i];
        for (size_t i = 0; i < b.u.l->n; i++)
            l->v[l->n++] = b.u.l->v[i];
        *out = (jv){.t = V_LIST, .u.l = l};
        return ATTND_OK;
    }
    if (name_is(op, n, "*") && ((a.t == V_STR && b.t == V_INT) || (a.t == V_INT && b.t == V_STR))) {
        jv s = a.t == V_STR ? a : b;
        int64_t k = a.t == V_INT ? a.u.i : b.u.i;
        sbuf sb = {.r = r};
        for (int64_t i = 0; i < k && !sb.failed; i++) {
            sb_put(&sb, s.u.s.p, s.u.s.n);
            if (sb.n > r->max_out)
                return rerr(r, "string repetition too long");
        }
        if (sb.failed)
            return room(r);
        *out = sb_value(&sb);
        return ATTND_OK;
    }
    if (!is_num(a) || !is_num(b))
        return rerr(r, "unsupported operand types for %.*s: '%s' and '%s'", (int)n, op,
                    type_name(a), type_name(b));
    bool ints = a.t != V_FLOAT && b.t != V_FLOAT;
    int64_t x = a.t == V_INT ? a.u.i : a.u.b, y = b.t == V_INT ? b.u.i : b.u.b;
    double fx = num_of(a), fy = num_of(b);
    if (name_is(op, n, "+"))
        *out = ints ? v_int((int64_t)((uint64_t)x + (uint64_t)y)) : v_float(fx + fy);
    else if (name_is(op, n, "-"))
        *out = ints ? v_int((int64_t)((uint64_t)x - (uint64_t)y)) : v_float(fx - fy);
    else if (name_is(op, n, "*"))
        *out = ints ? v_int((int64_t)((uint64_t)x * (uint64_t)y)) : v_float(fx * fy);
    else if (name_is(op, n, "/")) {
        if (fy == 0.0)
            return rerr(r, "division by zero");
        *out = v_float(fx / fy);
    } else if (name_is(op, n, "//") || name_is(op, n, "%")) {
        if (fy == 0.0)
            return rerr(r, "integer division or modulo by zero");
        if (ints) {
            if (x == INT64_MIN && y == -1)
                return rerr(r, "integer overflow");
            int64_t q = x / y, m = x % y;
            if (m != 0 && ((m < 0) != (y < 0))) { /* Python floors */
                q--;
                m += y;
            }
            *out = v_int(op[0] == '%' ? m : q);
        } else {
            double q = floor(fx / fy);
            *out = v_float(op[0] == '%' ? fx - q * fy : q);
        }
    } else if (name_is(op, n, "**")) {
        if (ints && y >= 0) {
            int64_t p = 1;
            for (int64_t i = 0; i < y && i < 64; i++)
                p = (int64_t)((uint64_t)p * (uint64_t)x);
            *out = v_int(p);
        } else {
            *out = v_float(pow(fx, fy));
        }
    } else {
        return rerr(r, "unknown operator '%.*s'", (int)n, op);
    }
    return ATTND_OK;
}

static int compare(rstate *r, const char *op, size_t n, jv a, jv b, bool *res)
{
    if (name_is(op, n, "==") || name_is(op, n, "!=")) {
        *res = equal(a, b) == (op[0] == '=');
        return ATTND_OK;
    }
    if (name_is(op, n, "in") || name_is(op, n, "notin")) {
        bool in = false;
        if (b.t == V_STR) {
            if (a.t != V_STR)
                return rerr(r, "'in <string>' requires a string on the left");
            in = a.u.s.n == 0 || memmem(b.u.s.p, b.u.s.n, a.u.s.p, a.u.s.n) != NULL;
        } else if (b.t == V_DICT) {
            in = a.t == V_STR && dict_find(b.u.d, a.u.s.p, a.u.s.n) != NULL;
        } else if (b.t == V_LIST) {
            for (size_t i = 0; i < b.u.l->n && !in; i++)
                in = equal(a, b.u.l->v[i]);
        } else if (b.t != V_UNDEF) {
            return rerr(r, "argument of type '%s' is not iterable", type_name(b));
        }
        *res = in == (op[0] == 'i');
        return ATTND_OK;
    }
    int c;
    if (is_num(a) && is_num(b)) {
        double x = num_of(a), y = num_of(b);
        c = x < y ? -1 : x > y ? 1 : 0;
    } else if (a.t == V_STR && b.t == V_STR) {
        size_t m = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
        int k = memcmp(a.u.s.p, b.u.s.p, m);
        c = k ? k : a.u.s.n < b.u.s.n ? -1 : a.u.s.n > b.u.s.n;
    } else {
        return rerr(r, "'%.*s' not supported between '%s' and '%s'", (int)n, op, type_name(a),
                    type_name(b));
    }
    *res = name_is(op, n, "<")    ? c < 0
           : name_is(op, n, "<=") ? c <= 0
           : name_is(op, n, ">")  ? c > 0
                                  : c >= 0;
    return ATTND_OK;
}

static int eval(rstate *r, frame *f, const jexpr *e, jv *out)
{
    int rc = ATTND_OK;
    r->line = e->line;
    switch (e->kind) {
    case JE_NONE: *out = k_none; return ATTND_OK;
    case JE_BOOL: *out = v_bool(e->i != 0); return ATTND_OK;
    case JE_INT: *out = v_int(e->i); return ATTND_OK;
    case JE_FLOAT: *out = v_float(e->f); return ATTND_OK;
    case JE_STR: *out = v_str(e->s, e->s_len); return ATTND_OK;
    case JE_NAME: *out = lookup(r, f, e->name, e->name_len); return ATTND_OK;
    case JE_LIST:
    case JE_TUPLE: {
        jlist *l = list_new(r, e->n_args);
        if (!l)
            return room(r);
        for (size_t i = 0; i < e->n_args; i++)
            if ((rc = eval(r, f, e->args[i], &l->v[i])) != ATTND_OK)
                return rc;
        l->n = e->n_args;
        *out = (jv){.t = V_LIST, .tuple = e->kind == JE_TUPLE, .u.l = l};
        return ATTND_OK;
    }
    case JE_DICT: {
        jdict *d = dict_new(r);
        if (!d)
            return room(r);
        for (size_t i = 0; i + 1 < e->n_args; i += 2) {
            jv k, v;
            if ((rc = eval(r, f, e->args[i], &k)) || (rc = eval(r, f, e->args[i + 1], &v)))
                return rc;
            if (k.t != V_STR)
                return rerr(r, "dict keys must be strings here");
            if (!dict_set(r, d, k.u.s.p, k.u.s.n, v))
                return room(r);
        }
        *out = (jv){.t = V_DICT, .u.d = d};
        return ATTND_OK;
    }
    case JE_ATTR: {
        jv obj;
        if ((rc = eval(r, f, e->a, &obj)) != ATTND_OK)
            return rc;
        return get_attr(r, obj, e->name, e->name_len, out);
    }
    case JE_ITEM: {
        jv obj, key;
        if ((rc = eval(r, f, e->a, &obj)) || (rc = eval(r, f, e->b, &key)))
            return rc;
        return get_item(r, obj, key, out);
    }
    case JE_SLICE: {
        jv obj, lo = k_none, hi = k_none, st = k_none;
        if ((rc = eval(r, f, e->a, &obj)) || (e->b && (rc = eval(r, f, e->b, &lo))) ||
            (e->c && (rc = eval(r, f, e->c, &hi))) ||
            (e->n_args && (rc = eval(r, f, e->args[0], &st))))
            return rc;
        return get_slice(r, obj, lo, hi, st, out);
    }
    case JE_CALL: {
        args a;
        if (e->a->kind == JE_ATTR) { /* a method call? */
            jv obj;
            if ((rc = eval(r, f, e->a->a, &obj)) || (rc = eval_args(r, f, e, 0, k_undef, &a)))
                return rc;
            bool found;
            if ((rc = call_method(r, obj, e->a->name, e->a->name_len, &a, out, &found)) || found)
                return rc;
            jv fn;
            if ((rc = get_attr(r, obj, e->a->name, e->a->name_len, &fn)) != ATTND_OK)
                return rc;
            if (fn.t == V_UNDEF)
                return rerr(r, "'%s' object has no method '%.*s'", type_name(obj),
                            (int)e->a->name_len, e->a->name);
            return call_func(r, fn, &a, out);
        }
        jv fn;
        if ((rc = eval(r, f, e->a, &fn)) || (rc = eval_args(r, f, e, 0, k_undef, &a)))
            return rc;
        if (fn.t == V_UNDEF && e->a->kind == JE_NAME)
            return rerr(r, "'%.*s' is undefined", (int)e->a->name_len, e->a->name);
        return call_func(r, fn, &a, out);
    }
    case JE_FILTER: {
        jv x;
        args a;
        if (!e->a) /* the innermost filter of a filter block: its body's text */
            x = r->filter_input;
        else if ((rc = eval(r, f, e->a, &x)) != ATTND_OK)
            return rc;
        if ((rc = eval_args(r, f, e, 1, x, &a)) != ATTND_OK)
            return rc;
        return apply_filter(r, f, e->name, e->name_len, &a, out);
    }
    case JE_TEST: {
        jv x;
        args a;
        /* `x is defined` must not fail on what makes x undefined */
        if ((rc = eval(r, f, e->a, &x)) || (rc = eval_args(r, f, e, 0, k_undef, &a)))
            return rc;
        bool res;
        if ((rc = apply_test(r, e->name, e->name_len, x, &a, &res)) != ATTND_OK)
            return rc;
        *out = v_bool(res != e->negate);
        return ATTND_OK;
    }
    case JE_NEG:
    case JE_POS: {
        jv x;
        if ((rc = eval(r, f, e->a, &x)) != ATTND_OK)
            return rc;
        if (!is_num(x))
            return rerr(r, "bad operand type for unary %c: '%s'", e->kind == JE_NEG ? '-' : '+',
                        type_name(x));
        if (e->kind == JE_POS)
            *out = x.t == V_BOOL ? v_int(x.u.b) : x;
        else
            *out = x.t == V_FLOAT ? v_float(-x.u.f) : v_int(-(x.t == V_INT ? x.u.i : x.u.b));
        return ATTND_OK;
    }
    case JE_NOT: {
        jv x;
        if ((rc = eval(r, f, e->a, &x)) != ATTND_OK)
            return rc;
        *out = v_bool(!truthy(x));
        return ATTND_OK;
    }
    case JE_AND:
    case JE_OR: { /* Python's: the deciding operand itself */
        jv x;
        if ((rc = eval(r, f, e->a, &x)) != ATTND_OK)
            return rc;
        if (truthy(x) == (e->kind == JE_OR)) {
            *out = x;
            return ATTND_OK;
        }
        return eval(r, f, e->b, out);
    }
    case JE_BINOP: {
        jv x, y;
        if ((rc = eval(r, f, e->a, &x)) || (rc = eval(r, f, e->b, &y)))
            return rc;
        r->line = e->line;
        return binop(r, e->name, e->name_len, x, y, out);
    }
    case JE_CMP: {
        jv x, y;
        bool res;
        if ((rc = eval(r, f, e->a, &x)) || (rc = eval(r, f, e->b, &y)) ||
            (rc = compare(r, e->name, e->name_len, x, y, &res)))
            return rc;
        *out = v_bool(res);
        return ATTND_OK;
    }
    case JE_COND: {
        jv c;
        if ((rc = eval(r, f, e->a, &c)) != ATTND_OK)
            return rc;
        if (truthy(c))
            return eval(r, f, e->args[0], out);
        if (e->args[1])
            return eval(r, f, e->args[1], out);
        *out = k_undef;
        return ATTND_OK;
    }
    }
    return rerr(r, "unknown expression");
}

/* ------------------------------------------------------------ tests and filters */

static int apply_test(rstate *r, const char *name, size_t n, jv x, const args *a, bool *res)
{
    jv arg = arg_get(a, 0, NULL, k_undef);
#define T(s) name_is(name, n, s)
    if (T("defined"))
        *res = x.t != V_UNDEF;
    else if (T("undefined"))
        *res = x.t == V_UNDEF;
    else if (T("none"))
        *res = x.t == V_NONE;
    else if (T("string"))
        *res = x.t == V_STR;
    else if (T("number"))
        *res = x.t == V_INT || x.t == V_FLOAT;
    else if (T("integer"))
        *res = x.t == V_INT;
    else if (T("float"))
        *res = x.t == V_FLOAT;
    else if (T("boolean"))
        *res = x.t == V_BOOL;
    else if (T("true"))
        *res = x.t == V_BOOL && x.u.b;
    else if (T("false"))
        *res = x.t == V_BOOL && !x.u.b;
    else if (T("mapping"))
        *res = x.t == V_DICT;
    else if (T("iterable"))
        *res = x.t == V_LIST || x.t == V_DICT || x.t == V_STR;
    else if (T("sequence"))
        *res = x.t == V_LIST || x.t == V_DICT || x.t == V_STR;
    else if (T("callable"))
        *res = x.t == V_MACRO || x.t == V_FUNC;
    else if (T("odd") || T("even")) {
        if (x.t != V_INT)
            return rerr(r, "'%.*s' test on a %s", (int)n, name, type_name(x));
        *res = ((x.u.i % 2) != 0) == T("odd");
    } else if (T("divisibleby")) {
        if (x.t != V_INT || arg.t != V_INT || arg.u.i == 0)
            return rerr(r, "'divisibleby' takes integers");
        *res = x.u.i % arg.u.i == 0;
    } else if (T("eq") || T("equalto") || T("==") || T("sameas"))
        *res = equal(x, arg);
    else if (T("ne") || T("!="))
        *res = !equal(x, arg);
    else if (T("lt") || T("le") || T("gt") || T("ge") || T("lessthan") || T("greaterthan")) {
        const char *op = T("lt") || T("lessthan") ? "<" : T("le") ? "<=" : T("gt") || T("greaterthan") ? ">" : ">=";
        return compare(r, op, strlen(op), x, arg, res);
    } else if (T("in"))
        return compare(r, "in", 2, x, arg, res);
    else if (T("lower") || T("upper")) {
        *res = x.t == V_STR;
        for (size_t i = 0; *res && i < x.u.s.n; i++)
            if (T("lower") ? isupper((unsigned char)x.u.s.p[i]) : islower((unsigned char)x.u.s.p[i]))
                *res = false;
    } else
        return rerr(r, "no test named '%.*s'", (int)n, name);
#undef T
    return ATTND_OK;
}

/* The items of a list-valued filter input (a dict's keys, a string's chars). */
static int filter_items(rstate *r, jv x, jlist **l)
{
    return as_list(r, x, l);
}

static int apply_filter(rstate *r, frame *f, const char *name, size_t n, const args *a, jv *out)
{
    jv x = a->pos[0];
    int rc;
#define F(s) name_is(name, n, s)
    if (F("safe")) {
        if ((rc = to_str(r, x, out)) != ATTND_OK)
            return rc;
        out->markup = true;
        return ATTND_OK;
    }
    if (F("trim")) {
        jv s, chars = arg_get(a, 1, "chars", k_none);
        if ((rc = to_str(r, x, &s)) != ATTND_OK)
            return rc;
        *out = strip(s, true, true, chars.t == V_STR ? &chars : NULL);
        return ATTND_OK;
    }
    if (F("string")) {
        return to_str(r, x, out);
    }
    if (F("upper") || F("lower") || F("capitalize") || F("title")) {
        jv s;
        if ((rc = to_str(r, x, &s)) != ATTND_OK)
            return rc;
        int mode = F("lower") ? 0 : F("upper") ? 1 : F("capitalize") ? 2 : 3;
        if (mode == 2) { /* capitalize lowers the rest */
            jv low = str_case(r, s, 0);
            if (low.t == V_UNDEF)
                return room(r);
            s = low;
        }
        *out = str_case(r, s, mode);
        return out->t == V_UNDEF ? room(r) : ATTND_OK;
    }
    if (F("length") || F("count")) {
        if (x.t == V_STR)
            *out = v_int((int64_t)utf8_count(x.u.s.p, x.u.s.n));
        else if (x.t == V_LIST && x.gen)
            return rerr(r, "object of type 'generator' has no len()");
        else if (x.t == V_LIST)
            *out = v_int((int64_t)x.u.l->n);
        else if (x.t == V_DICT)
            *out = v_int((int64_t)x.u.d->n);
        else if (x.t == V_UNDEF)
            *out = v_int(0);
        else
            return rerr(r, "object of type '%s' has no len()", type_name(x));
        return ATTND_OK;
    }
    if (F("default") || F("d")) {
        jv dflt = arg_get(a, 1, "default_value", v_str("", 0));
        jv boolean = arg_get(a, 2, "boolean", v_bool(false));
        *out = (x.t == V_UNDEF || (truthy(boolean) && !truthy(x))) ? dflt : x;
        return ATTND_OK;
    }
    if (F("tojson")) {
        jv ind = arg_get(a, 1, "indent", k_none);
        jv seps = arg_get(a, 99, "separators", k_none);
        int indent = ind.t == V_INT ? (int)(ind.u.i < 0 ? 0 : ind.u.i > 64 ? 64 : ind.u.i) : -1;
        const char *item_sep = indent >= 0 ? "," : ", ", *key_sep = ": ";
        char isep[16], ksep[16];
        if (seps.t == V_LIST && seps.u.l->n == 2 && seps.u.l->v[0].t == V_STR &&
            seps.u.l->v[1].t == V_STR) {
            snprintf(isep, sizeof isep, "%.*s", (int)seps.u.l->v[0].u.s.n, seps.u.l->v[0].u.s.p);
            snprintf(ksep, sizeof ksep, "%.*s", (int)seps.u.l->v[1].u.s.n, seps.u.l->v[1].u.s.p);
            item_sep = isep;
            key_sep = ksep;
        }
        sbuf b = {.r = r};
        if ((rc = put_json(r, &b, x, indent, 0, item_sep, key_sep)) != ATTND_OK)
            return rc;
        if (b.failed)
            return room(r);
        *out = sb_value(&b);
        return ATTND_OK;
    }
    if (F("items")) {
        if (x.t == V_UNDEF) {
            jlist *l = list_new(r, 0);
            if (!l)
                return room(r);
            *out = (jv){.t = V_LIST, .u.l = l};
            return ATTND_OK;
        }
        if (x.t != V_DICT)
            return rerr(r, "items: expected a mapping, got %s", type_name(x));
        bool found;
        args none = {0};
        return call_method(r, x, "items", 5, &none, out, &found);
    }
    if (F("list")) {
        jlist *l;
        if ((rc = filter_items(r, x, &l)) != ATTND_OK)
            return rc;
        *out = (jv){.t = V_LIST, .u.l = l}; /* a generator becomes a list */
        return ATTND_OK;
    }
    if (F("first") || F("last")) {
        jlist *l;
        if (F("last") && x.t == V_LIST && x.gen)
            return rerr(r, "'generator' object is not reversible");
        if ((rc = filter_items(r, x, &l)) != ATTND_OK)
            return rc;
        *out = l->n ? l->v[F("first") ? 0 : l->n - 1] : k_undef;
        return ATTND_OK;
    }
    if (F("reverse")) {
        jlist *l, *res;
        if ((rc = filter_items(r, x, &l)) != ATTND_OK)
            return rc;
        if (!(res = list_new(r, l->n)))
            return room(r);
        for (size_t i = 0; i < l->n; i++)
            res->v[i] = l->v[l->n - 1 - i];
        res->n = l->n;
        if (x.t == V_STR) {
            sbuf b = {.r = r};
            for (size_t i = 0; i < res->n; i++)
                sb_put(&b, res->v[i].u.s.p, res->v[i].u.s.n);
            if (b.failed)
                return room(r);
            *out = sb_value(&b);
        } else {
            *out = (jv){.t = V_LIST, .gen = true, .u.l = res}; /* reversed(): an iterator */
        }
        return ATTND_OK;
    }
    if (F("join")) {
        jlist *l;
        jv sep = arg_get(a, 1, "d", v_str("", 0)), attr = arg_get(a, 2, "attribute", k_none);
        if ((rc = filter_items(r, x, &l)) != ATTND_OK)
            return rc;
        if (sep.t != V_STR && (rc = to_str(r, sep, &sep)) != ATTND_OK)
            return rc;
        sbuf b = {.r = r};
        for (size_t i = 0; i < l->n; i++) {
            jv item = l->v[i], s;
            if (attr.t == V_STR && (rc = get_attr(r, item, attr.u.s.p, attr.u.s.n, &item)))
                return rc;
            if ((rc = to_str(r, item, &s)) != ATTND_OK)
                return rc;
            if (i)
                sb_put(&b, sep.u.s.p, sep.u.s.n);
            sb_put(&b, s.u.s.p, s.u.s.n);
        }
        if (b.failed)
            return room(r);
        *out = sb_value(&b);
        return ATTND_OK;
    }
    if (F("replace")) {
        jv s, cnt = arg_get(a, 3, "count", k_none);
        if ((rc = to_str(r, x, &s)) != ATTND_OK)
            return rc;
        return str_replace(r, s, arg_get(a, 1, "old", k_none), arg_get(a, 2, "new", k_none),
                           cnt.t == V_INT ? cnt.u.i : -1, out);
    }
    if (F("indent")) {
        jv s, width = arg_get(a, 1, "width", v_int(4)), first = arg_get(a, 2, "first", v_bool(false)),
              blank = arg_get(a, 3, "blank", v_bool(false));
        if ((rc = to_str(r, x, &s)) != ATTND_OK)
            return rc;
        char pad[65];
        int w = width.t == V_INT ? (int)(width.u.i < 0 ? 0 : width.u.i > 64 ? 64 : width.u.i) : 4;
        size_t pn = width.t == V_STR ? width.u.s.n : (size_t)w;
        if (width.t == V_STR)
            snprintf(pad, sizeof pad, "%.*s", (int)(pn > 64 ? 64 : pn), width.u.s.p);
        else
            memset(pad, ' ', (size_t)w);
        pn = pn > 64 ? 64 : pn;
        sbuf b = {.r = r};
        const char *p = s.u.s.p, *end = p + s.u.s.n;
        bool first_line = true;
        while (p <= end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            const char *le = nl ? nl : end;
            bool empty = le == p;
            if ((!first_line || truthy(first)) && (!empty || truthy(blank)))
                sb_put(&b, pad, pn);
            sb_put(&b, p, (size_t)(le - p));
            if (!nl)
                break;
            sb_put(&b, "\n", 1);
            p = nl + 1;
            first_line = false;
        }
        if (b.failed)
            return room(r);
        *out = sb_value(&b);
        return ATTND_OK;
    }
    if (F("selectattr") || F("rejectattr") || F("select") || F("reject")) {
        bool attr = F("selectattr") || F("rejectattr"), keep = F("selectattr") || F("select");
        jlist *l, *res;
        if (!truthy(x)) /* jinja2: `if value:` before iterating */
            x = (jv){.t = V_LIST, .u.l = list_new(r, 0)};
        if (!x.u.l && x.t == V_LIST)
            return room(r);
        if ((rc = filter_items(r, x, &l)) != ATTND_OK)
            return rc;
        if (!(res = list_new(r, 0)))
            return room(r);
        size_t base = attr ? 2 : 1;
        jv an = attr ? arg_get(a, 1, NULL, k_undef) : k_undef;
        jv tn = arg_get(a, base, NULL, k_undef);
        if (attr && an.t != V_STR)
            return rerr(r, "%.*s: the attribute must be a string", (int)n, name);
        args targs = {0};
        if (a->n > base + 1) {
            targs.pos = a->pos + base + 1;
            targs.n = a->n - base - 1;
        }
        for (size_t i = 0; i < l->n; i++) {
            jv item = l->v[i];
            if (attr && (rc = get_attr(r, item, an.u.s.p, an.u.s.n, &item)) != ATTND_OK)
                return rc;
            bool ok;
            if (tn.t == V_STR) {
                if ((rc = apply_test(r, tn.u.s.p, tn.u.s.n, item, &targs, &ok)) != ATTND_OK)
                    return rc;
            } else {
                ok = truthy(item);
            }
            if (ok == keep && !list_push(r, res, l->v[i]))
                return room(r);
        }
        *out = (jv){.t = V_LIST, .gen = true, .u.l = res};
        return ATTND_OK;
    }
    if (F("map")) {
        jlist *l, *res;
        if (!truthy(x))
            x = (jv){.t = V_LIST, .u.l = list_new(r, 0)};
        if (!x.u.l && x.t == V_LIST)
            return room(r);
        if ((rc = filter_items(r, x, &l)) != ATTND_OK)
            return rc;
        if (!(res = list_new(r, l->n)))
            return room(r);
        jv attr = arg_get(a, 99, "attribute", k_undef), dflt = arg_get(a, 99, "default", k_undef);
        jv fname = arg_get(a, 1, NULL, k_undef);
        for (size_t i = 0; i < l->n; i++) {
            jv v;
            if (attr.t == V_STR) {
                if ((rc = get_attr(r, l->v[i], attr.u.s.p, attr.u.s.n, &v)) != ATTND_OK)
                    return rc;
                if (v.t == V_UNDEF && dflt.t != V_UNDEF)
                    v = dflt;
            } else if (fname.t == V_STR) {
                args fa = {0};
                jv *pos = jinja_alloc(&r->a, (a->n > 1 ? a->n - 1 : 1) * sizeof *pos);
                if (!pos)
                    return room(r);
                pos[0] = l->v[i];
                for (size_t k = 2; k < a->n; k++)
                    pos[k - 1] = a->pos[k];
                fa.pos = pos;
                fa.n = a->n > 1 ? a->n - 1 : 1;
                if ((rc = apply_filter(r, f, fname.u.s.p, fname.u.s.n, &fa, &v)) != ATTND_OK)
                    return rc;
            } else {
                return rerr(r, "map: give a filter name or attribute=");
            }
            res->v[res->n++] = v;
        }
        *out = (jv){.t = V_LIST, .gen = true, .u.l = res};
        return ATTND_OK;
    }
    if (F("unique")) {
        jlist *l, *res;
        if ((rc = filter_items(r, x, &l)) != ATTND_OK)
            return rc;
        if (!(res = list_new(r, 0)))
            return room(r);
        for (size_t i = 0; i < l->n; i++) {
            bool seen = false;
            for (size_t k = 0; k < res->n && !seen; k++)
                seen = equal(res->v[k], l->v[i]);
            if (!seen && !list_push(r, res, l->v[i]))
                return room(r);
        }
        *out = (jv){.t = V_LIST, .gen = true, .u.l = res};
        return ATTND_OK;
    }
    if (F("int")) {
        jv dflt = arg_get(a, 1, "default", v_int(0));
        if (x.t == V_INT)
            *out = x;
        else if (x.t == V_BOOL)
            *out = v_int(x.u.b);
        else if (x.t == V_FLOAT)
            *out = v_int((int64_t)x.u.f);
        else if (x.t == V_STR) {
            char buf[64], *end;
            snprintf(buf, sizeof buf, "%.*s", (int)(x.u.s.n > 63 ? 63 : x.u.s.n), x.u.s.p);
            long long v = strtoll(buf, &end, 10);
            *out = end != buf && *end == '\0' ? v_int(v) : dflt;
        } else
            *out = dflt;
        return ATTND_OK;
    }
    if (F("float")) {
        if (is_num(x))
            *out = v_float(num_of(x));
        else if (x.t == V_STR) {
            char buf[64], *end;
            snprintf(buf, sizeof buf, "%.*s", (int)(x.u.s.n > 63 ? 63 : x.u.s.n), x.u.s.p);
            double v = strtod(buf, &end);
            *out = end != buf && *end == '\0' ? v_float(v) : v_float(0.0);
        } else
            *out = v_float(0.0);
        return ATTND_OK;
    }
    if (F("abs")) {
        if (!is_num(x))
            return rerr(r, "bad operand type for abs(): '%s'", type_name(x));
        *out = x.t == V_FLOAT ? v_float(fabs(x.u.f)) : v_int(llabs(x.t == V_INT ? x.u.i : x.u.b));
        return ATTND_OK;
    }
    if (F("round")) {
        jv prec = arg_get(a, 1, "precision", v_int(0));
        double m = pow(10.0, (double)(prec.t == V_INT ? prec.u.i : 0));
        *out = v_float(round(num_of(x) * m) / m);
        return ATTND_OK;
    }
    if (F("escape") || F("e") || F("forceescape")) {
        jv s;
        if ((rc = to_str(r, x, &s)) != ATTND_OK)
            return rc;
        if (s.markup && !F("forceescape")) { /* already safe */
            *out = s;
            return ATTND_OK;
        }
        sbuf b = {.r = r};
        put_escaped(&b, s.u.s.p, s.u.s.n);
        if (b.failed)
            return room(r);
        *out = sb_value(&b);
        out->markup = true;
        return ATTND_OK;
    }
    if (F("wordcount")) {
        jv s, words;
        if ((rc = to_str(r, x, &s)) || (rc = str_split(r, s, NULL, -1, &words)))
            return rc;
        *out = v_int((int64_t)words.u.l->n);
        return ATTND_OK;
    }
#undef F
    (void)f;
    return rerr(r, "no filter named '%.*s'", (int)n, name);
}

/* ------------------------------------------------------------ statements */

static int emit(rstate *r, const char *s, size_t n)
{
    if (n == 0)
        return ATTND_OK;
    if (r->out_n + n > r->max_out)
        return rerr(r, "output longer than %zu bytes", r->max_out);
    if (r->out_n + n + 1 > r->out_cap) {
        size_t cap = r->out_cap ? r->out_cap * 2 : 1024;
        while (cap < r->out_n + n + 1)
            cap *= 2;
        char *np = realloc(r->out, cap);
        if (!np)
            return room(r);
        r->out = np;
        r->out_cap = cap;
    }
    memcpy(r->out + r->out_n, s, n);
    r->out_n += n;
    return ATTND_OK;
}

static int assign(rstate *r, frame *f, const jnode *n, jv v)
{
    if (n->n_names == 1)
        return dict_set(r, f->vars, n->names[0], n->name_lens[0], v) ? ATTND_OK : room(r);
    jlist *l;
    int rc = as_list(r, v, &l);
    if (rc != ATTND_OK)
        return rc;
    if (l->n != n->n_names)
        return rerr(r, "cannot unpack %zu values into %zu names", l->n, n->n_names);
    for (size_t i = 0; i < n->n_names; i++)
        if (!dict_set(r, f->vars, n->names[i], n->name_lens[i], l->v[i]))
            return room(r);
    return ATTND_OK;
}

static int render_for(rstate *r, frame *f, const jnode *n)
{
    jv it;
    jlist *items;
    int rc;
    if ((rc = eval(r, f, n->expr, &it)) || (rc = as_list(r, it, &items)))
        return rc;
    if (n->filter) { /* `for x in xs if cond`: the loop sees only what passes */
        jlist *kept = list_new(r, 0);
        if (!kept)
            return room(r);
        for (size_t i = 0; i < items->n; i++) {
            frame *tf = frame_new(r, f);
            jv ok;
            if (!tf)
                return room(r);
            if ((rc = assign(r, tf, n, items->v[i])) || (rc = eval(r, tf, n->filter, &ok)))
                return rc;
            if (truthy(ok) && !list_push(r, kept, items->v[i]))
                return room(r);
        }
        items = kept;
    }
    if (items->n == 0)
        return render_body(r, f, &n->else_body);
    for (size_t i = 0; i < items->n; i++) {
        if (++r->iterations > MAX_ITERATIONS)
            return rerr(r, "more than %d loop iterations", MAX_ITERATIONS);
        frame *lf = frame_new(r, f);
        jdict *loop = dict_new(r);
        if (!lf || !loop)
            return room(r);
        int64_t len = (int64_t)items->n, k = (int64_t)i;
        if (!dict_set(r, loop, "index", 5, v_int(k + 1)) ||
            !dict_set(r, loop, "index0", 6, v_int(k)) ||
            !dict_set(r, loop, "revindex", 8, v_int(len - k)) ||
            !dict_set(r, loop, "revindex0", 9, v_int(len - k - 1)) ||
            !dict_set(r, loop, "first", 5, v_bool(k == 0)) ||
            !dict_set(r, loop, "last", 4, v_bool(k == len - 1)) ||
            !dict_set(r, loop, "length", 6, v_int(len)) ||
            !dict_set(r, loop, "depth", 5, v_int(1)) || !dict_set(r, loop, "depth0", 6, v_int(0)) ||
            (k > 0 && !dict_set(r, loop, "previtem", 8, items->v[i - 1])) ||
            (k + 1 < len && !dict_set(r, loop, "nextitem", 8, items->v[i + 1])) ||
            !dict_set(r, lf->vars, "loop", 4, (jv){.t = V_DICT, .u.d = loop}))
            return room(r);
        if ((rc = assign(r, lf, n, items->v[i])) != ATTND_OK)
            return rc;
        rc = render_body(r, lf, &n->body);
        if (rc != ATTND_OK)
            return rc;
        int ctl = r->loop_ctl;
        r->loop_ctl = 0;
        if (ctl == 1)
            break;
    }
    return ATTND_OK;
}

static int render_node(rstate *r, frame *f, const jnode *n)
{
    int rc;
    jv v;
    r->line = n->line;
    switch (n->kind) {
    case JN_TEXT: return emit(r, n->text, n->len);
    case JN_OUTPUT: {
        if ((rc = eval(r, f, n->expr, &v)) != ATTND_OK)
            return rc;
        if (v.t == V_STR)
            return emit(r, v.u.s.p, v.u.s.n);
        sbuf b = {.r = r};
        put_str(&b, v);
        if (b.failed)
            return room(r);
        return emit(r, b.p, b.n);
    }
    case JN_IF:
        for (size_t i = 0; i < n->n_conds; i++) {
            if ((rc = eval(r, f, n->conds[i], &v)) != ATTND_OK)
                return rc;
            if (truthy(v))
                return render_body(r, f, &n->bodies[i]);
        }
        return render_body(r, f, &n->else_body);
    case JN_FOR: return render_for(r, f, n);
    case JN_SET:
        if ((rc = eval(r, f, n->expr, &v)) != ATTND_OK)
            return rc;
        if (n->attr) {
            jv ns = lookup(r, f, n->names[0], n->name_lens[0]);
            if (ns.t != V_DICT || !ns.ns)
                return rerr(r, "cannot set '%.*s' on a non-namespace object", (int)n->attr_len,
                            n->attr);
            return dict_set(r, ns.u.d, n->attr, n->attr_len, v) ? ATTND_OK : room(r);
        }
        return assign(r, f, n, v);
    case JN_SET_BLOCK:
        if ((rc = capture(r, f, &n->body, &v)) != ATTND_OK)
            return rc;
        return assign(r, f, n, v);
    case JN_FILTER_BLOCK: {
        if ((rc = capture(r, f, &n->body, &v)) != ATTND_OK)
            return rc;
        jv saved = r->filter_input;
        r->filter_input = v;
        rc = eval(r, f, n->expr, &v);
        r->filter_input = saved;
        if (rc != ATTND_OK)
            return rc;
        sbuf b = {.r = r};
        put_str(&b, v);
        if (b.failed)
            return room(r);
        return emit(r, b.p, b.n);
    }
    case JN_MACRO:
        return dict_set(r, f->vars, n->attr, n->attr_len, (jv){.t = V_MACRO, .u.m = n})
                   ? ATTND_OK
                   : room(r);
    case JN_BREAK:
    case JN_CONTINUE:
        r->loop_ctl = n->kind == JN_BREAK ? 1 : 2;
        return ATTND_OK;
    case JN_BLOCK: return render_body(r, f, &n->body);
    }
    return rerr(r, "unknown statement");
}

static int render_body(rstate *r, frame *f, const jbody *b)
{
    for (size_t i = 0; i < b->n; i++) {
        int rc = render_node(r, f, b->v[i]);
        if (rc != ATTND_OK)
            return rc;
        if (r->loop_ctl) /* break/continue: unwind to the loop */
            return ATTND_OK;
    }
    return ATTND_OK;
}

/* ------------------------------------------------------------ entry points */

static int from_json(rstate *r, const cJSON *j, jv *out, int depth)
{
    if (depth > 64)
        return rerr(r, "variables nested deeper than 64");
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
        jlist *l = list_new(r, 0);
        if (!l)
            return room(r);
        for (const cJSON *c = j->child; c; c = c->next) {
            jv x;
            int rc = from_json(r, c, &x, depth + 1);
            if (rc != ATTND_OK)
                return rc;
            if (!list_push(r, l, x))
                return room(r);
        }
        *out = (jv){.t = V_LIST, .u.l = l};
    } else if (cJSON_IsObject(j)) {
        jdict *d = dict_new(r);
        if (!d)
            return room(r);
        for (const cJSON *c = j->child; c; c = c->next) {
            jv x;
            int rc = from_json(r, c, &x, depth + 1);
            if (rc != ATTND_OK)
                return rc;
            if (!dict_set(r, d, c->string, strlen(c->string), x))
                return room(r);
        }
        *out = (jv){.t = V_DICT, .u.d = d};
    } else {
        *out = k_undef;
    }
    return ATTND_OK;
}

int jinja_parse(const char *src, size_t len, jinja_tmpl **out, attnd_err *err)
{
    *out = NULL;
    jinja_tmpl *t = calloc(1, sizeof *t);
    if (!t)
        return attnd_err_set(err, ATTND_ENOMEM, "template: out of memory");
    t->arena.budget = (size_t)64 << 20;
    jtok *toks;
    size_t n;
    int rc = jinja_lex(src, len, &t->arena, &toks, &n, err);
    if (rc == ATTND_OK)
        rc = jinja_parse_tokens(toks, n, &t->arena, &t->root, err);
    if (rc != ATTND_OK) {
        jinja_free(t);
        return rc;
    }
    *out = t;
    return ATTND_OK;
}

void jinja_free(jinja_tmpl *t)
{
    if (!t)
        return;
    jinja_arena_free(&t->arena);
    free(t);
}

int jinja_render(const jinja_tmpl *t, const cJSON *vars, const jinja_opts *opts, char **out,
                 size_t *out_len, attnd_err *err)
{
    *out = NULL;
    *out_len = 0;
    rstate r = {.err = err, .line = 1};
    r.a.budget = RENDER_ARENA_BYTES;
    r.max_out = opts && opts->max_output ? opts->max_output : (size_t)4 << 20;
    r.now = opts && opts->now ? opts->now : time(NULL);
    int rc = ATTND_OK;
    r.globals = frame_new(&r, NULL);
    r.root = r.globals ? frame_new(&r, r.globals) : NULL;
    if (!r.root)
        rc = room(&r);
    for (const cJSON *c = vars ? vars->child : NULL; rc == ATTND_OK && c; c = c->next) {
        jv x;
        if ((rc = from_json(&r, c, &x, 0)) == ATTND_OK &&
            !dict_set(&r, r.globals->vars, c->string, strlen(c->string), x))
            rc = room(&r);
    }
    if (rc == ATTND_OK)
        rc = render_body(&r, r.root, &t->root);
    if (rc == ATTND_OK && !r.out && !(r.out = malloc(1)))
        rc = room(&r);
    if (rc == ATTND_OK) {
        r.out[r.out_n] = '\0';
        *out = r.out;
        *out_len = r.out_n;
    } else {
        free(r.out);
    }
    jinja_arena_free(&r.a);
    return rc;
}
