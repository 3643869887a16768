/* jinja_eval.c - rendering: expressions with Python's operators, attribute
 * and item access, scopes as jinja2 has them (a loop iteration and a macro
 * call are scopes of their own, an if is not), the statements, and the
 * entry points jinja_parse / jinja_render. Values and their text are
 * jinja_value.c's, filters, tests and globals jinja_builtins.c's. Every
 * allocation of a render comes from its arena; limits on output, memory,
 * loop iterations and call depth turn runaway templates into errors. */
#include "jinja_value.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnd_utf8.h"


/* ------------------------------------------------------------ variables */

static jv lookup(rstate *r, frame *f, const char *name, size_t n)
{
    for (; f; f = f->up) {
        jv *v = jv_dict_find(f->vars, name, n);
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
        f->vars = jv_dict_new(r);
        if (!f->vars)
            return NULL;
    }
    return f;
}

static int eval(rstate *r, frame *f, const jexpr *e, jv *out);
static int render_body(rstate *r, frame *f, const jbody *b);

static int eval_args(rstate *r, frame *f, const jexpr *e, size_t skip, jv first, args *a)
{
    size_t n = e->n_args + skip;
    a->pos = jinja_alloc(&r->a, (n ? n : 1) * sizeof *a->pos);
    a->kwv = jinja_alloc(&r->a, (e->n_kwargs ? e->n_kwargs : 1) * sizeof *a->kwv);
    if (!a->pos || !a->kwv)
        return jv_room(r);
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

/* obj.name: a dict's item (jinja2 tries the attribute first: dict methods
 * shadow items of the same name), a namespace's attribute. */
int jv_get_attr(rstate *r, jv obj, const char *name, size_t n, jv *out)
{
    if (obj.t == V_UNDEF)
        return jv_rerr(r, "'%.*s' of an undefined value", (int)n, name);
    if (obj.t == V_DICT) {
        jv *v = jv_is_dict_method(name, n) && !obj.ns ? NULL : jv_dict_find(obj.u.d, name, n);
        *out = v ? *v : k_undef;
        return ATTND_OK;
    }
    *out = k_undef; /* e.g. a string's methods outside a call, or no such attribute */
    return ATTND_OK;
}

static int get_item(rstate *r, jv obj, jv key, jv *out)
{
    if (obj.t == V_UNDEF)
        return jv_rerr(r, "subscript of an undefined value");
    if (obj.t == V_DICT) {
        jv *v = key.t == V_STR ? jv_dict_find(obj.u.d, key.u.s.p, key.u.s.n) : NULL;
        *out = v ? *v : k_undef;
        return ATTND_OK;
    }
    if ((obj.t == V_LIST || obj.t == V_STR) && (key.t == V_INT || key.t == V_BOOL)) {
        jlist *l;
        int rc = jv_as_list(r, obj, &l);
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
    int rc = jv_as_list(r, obj, &l);
    if (rc != ATTND_OK)
        return rc;
    int64_t n = (int64_t)l->n;
    int64_t st = step.t == V_INT ? step.u.i : 1;
    if (st == 0)
        return jv_rerr(r, "slice step cannot be zero");
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
    jlist *res = jv_list_new(r, 0);
    if (!res)
        return jv_room(r);
    for (int64_t i = a; st > 0 ? i < b : i > b; i += st)
        if (!jv_list_push(r, res, l->v[i]))
            return jv_room(r);
    if (obj.t == V_STR) {
        sbuf sb = {.r = r};
        for (size_t i = 0; i < res->n; i++)
            jv_sb_put(&sb, res->v[i].u.s.p, res->v[i].u.s.n);
        if (sb.failed)
            return jv_room(r);
        *out = jv_sb_value(&sb);
    } else {
        *out = (jv){.t = V_LIST, .tuple = obj.tuple, .u.l = res};
    }
    return ATTND_OK;
}

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
            rc = jv_room(r);
        else {
            if (text_n)
                memcpy(copy, text, text_n);
            *out = v_str(copy, text_n);
        }
    }
    free(text);
    return rc;
}

int jv_call_macro(rstate *r, const jnode *m, const args *a, jv *out)
{
    if (++r->depth > MAX_CALL_DEPTH)
        return jv_rerr(r, "macro calls nested deeper than %d", MAX_CALL_DEPTH);
    frame *f = frame_new(r, r->root);
    if (!f)
        return jv_room(r);
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
        if (!jv_dict_set(r, f->vars, m->names[i], m->name_lens[i], v))
            return jv_room(r);
    }
    /* a macro call is a value: the text its body renders */
    int rc = capture(r, f, &m->body, out);
    r->depth--;
    return rc;
}

static int binop(rstate *r, const char *op, size_t n, jv a, jv b, jv *out)
{
    if (jv_name_is(op, n, "~")) {
        jv sa, sb2;
        int rc;
        if ((rc = jv_to_str(r, a, &sa)) || (rc = jv_to_str(r, b, &sb2)))
            return rc;
        sbuf s = {.r = r};
        jv_sb_put(&s, sa.u.s.p, sa.u.s.n);
        jv_sb_put(&s, sb2.u.s.p, sb2.u.s.n);
        if (s.failed)
            return jv_room(r);
        *out = jv_sb_value(&s);
        return ATTND_OK;
    }
    if (a.t == V_UNDEF || b.t == V_UNDEF)
        return jv_rerr(r, "an undefined value in '%.*s'", (int)n, op);
    if (jv_name_is(op, n, "+") && a.t == V_STR && b.t == V_STR) {
        /* Markup + str escapes the str (and str + Markup): markupsafe */
        bool markup = a.markup || b.markup;
        sbuf s = {.r = r};
        jv_put_maybe_escaped(&s, a, markup && !a.markup);
        jv_put_maybe_escaped(&s, b, markup && !b.markup);
        if (s.failed)
            return jv_room(r);
        *out = jv_sb_value(&s);
        out->markup = markup;
        return ATTND_OK;
    }
    if (jv_name_is(op, n, "+") && a.t == V_LIST && b.t == V_LIST) {
        jlist *l = jv_list_new(r, a.u.l->n + b.u.l->n);
        if (!l)
            return jv_room(r);
        for (size_t i = 0; i < a.u.l->n; i++)
            l->v[l->n++] = a.u.l->v[i];
        for (size_t i = 0; i < b.u.l->n; i++)
            l->v[l->n++] = b.u.l->v[i];
        *out = (jv){.t = V_LIST, .u.l = l};
        return ATTND_OK;
    }
    if (jv_name_is(op, n, "*") && ((a.t == V_STR && b.t == V_INT) || (a.t == V_INT && b.t == V_STR))) {
        jv s = a.t == V_STR ? a : b;
        int64_t k = a.t == V_INT ? a.u.i : b.u.i;
        sbuf sb = {.r = r};
        for (int64_t i = 0; i < k && !sb.failed; i++) {
            jv_sb_put(&sb, s.u.s.p, s.u.s.n);
            if (sb.n > r->max_out)
                return jv_rerr(r, "string repetition too long");
        }
        if (sb.failed)
            return jv_room(r);
        *out = jv_sb_value(&sb);
        return ATTND_OK;
    }
    if (!jv_is_num(a) || !jv_is_num(b))
        return jv_rerr(r, "unsupported operand types for %.*s: '%s' and '%s'", (int)n, op,
                    jv_type_name(a), jv_type_name(b));
    bool ints = a.t != V_FLOAT && b.t != V_FLOAT;
    int64_t x = a.t == V_INT ? a.u.i : a.u.b, y = b.t == V_INT ? b.u.i : b.u.b;
    double fx = jv_num_of(a), fy = jv_num_of(b);
    if (jv_name_is(op, n, "+"))
        *out = ints ? v_int((int64_t)((uint64_t)x + (uint64_t)y)) : v_float(fx + fy);
    else if (jv_name_is(op, n, "-"))
        *out = ints ? v_int((int64_t)((uint64_t)x - (uint64_t)y)) : v_float(fx - fy);
    else if (jv_name_is(op, n, "*"))
        *out = ints ? v_int((int64_t)((uint64_t)x * (uint64_t)y)) : v_float(fx * fy);
    else if (jv_name_is(op, n, "/")) {
        if (fy == 0.0)
            return jv_rerr(r, "division by zero");
        *out = v_float(fx / fy);
    } else if (jv_name_is(op, n, "//") || jv_name_is(op, n, "%")) {
        if (fy == 0.0)
            return jv_rerr(r, "integer division or modulo by zero");
        if (ints) {
            if (x == INT64_MIN && y == -1)
                return jv_rerr(r, "integer overflow");
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
    } else if (jv_name_is(op, n, "**")) {
        if (ints && y >= 0) {
            int64_t p = 1;
            for (int64_t i = 0; i < y && i < 64; i++)
                p = (int64_t)((uint64_t)p * (uint64_t)x);
            *out = v_int(p);
        } else {
            *out = v_float(pow(fx, fy));
        }
    } else {
        return jv_rerr(r, "unknown operator '%.*s'", (int)n, op);
    }
    return ATTND_OK;
}

int jv_compare(rstate *r, const char *op, size_t n, jv a, jv b, bool *res)
{
    if (jv_name_is(op, n, "==") || jv_name_is(op, n, "!=")) {
        *res = jv_equal(a, b) == (op[0] == '=');
        return ATTND_OK;
    }
    if (jv_name_is(op, n, "in") || jv_name_is(op, n, "notin")) {
        bool in = false;
        if (b.t == V_STR) {
            if (a.t != V_STR)
                return jv_rerr(r, "'in <string>' requires a string on the left");
            in = a.u.s.n == 0 || memmem(b.u.s.p, b.u.s.n, a.u.s.p, a.u.s.n) != NULL;
        } else if (b.t == V_DICT) {
            in = a.t == V_STR && jv_dict_find(b.u.d, a.u.s.p, a.u.s.n) != NULL;
        } else if (b.t == V_LIST) {
            for (size_t i = 0; i < b.u.l->n && !in; i++)
                in = jv_equal(a, b.u.l->v[i]);
        } else if (b.t != V_UNDEF) {
            return jv_rerr(r, "argument of type '%s' is not iterable", jv_type_name(b));
        }
        *res = in == (op[0] == 'i');
        return ATTND_OK;
    }
    int c;
    if (jv_is_num(a) && jv_is_num(b)) {
        double x = jv_num_of(a), y = jv_num_of(b);
        c = x < y ? -1 : x > y ? 1 : 0;
    } else if (a.t == V_STR && b.t == V_STR) {
        size_t m = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
        int k = memcmp(a.u.s.p, b.u.s.p, m);
        c = k ? k : a.u.s.n < b.u.s.n ? -1 : a.u.s.n > b.u.s.n;
    } else {
        return jv_rerr(r, "'%.*s' not supported between '%s' and '%s'", (int)n, op, jv_type_name(a),
                    jv_type_name(b));
    }
    *res = jv_name_is(op, n, "<")    ? c < 0
           : jv_name_is(op, n, "<=") ? c <= 0
           : jv_name_is(op, n, ">")  ? c > 0
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
        jlist *l = jv_list_new(r, e->n_args);
        if (!l)
            return jv_room(r);
        for (size_t i = 0; i < e->n_args; i++)
            if ((rc = eval(r, f, e->args[i], &l->v[i])) != ATTND_OK)
                return rc;
        l->n = e->n_args;
        *out = (jv){.t = V_LIST, .tuple = e->kind == JE_TUPLE, .u.l = l};
        return ATTND_OK;
    }
    case JE_DICT: {
        jdict *d = jv_dict_new(r);
        if (!d)
            return jv_room(r);
        for (size_t i = 0; i + 1 < e->n_args; i += 2) {
            jv k, v;
            if ((rc = eval(r, f, e->args[i], &k)) || (rc = eval(r, f, e->args[i + 1], &v)))
                return rc;
            if (k.t != V_STR)
                return jv_rerr(r, "dict keys must be strings here");
            if (!jv_dict_set(r, d, k.u.s.p, k.u.s.n, v))
                return jv_room(r);
        }
        *out = (jv){.t = V_DICT, .u.d = d};
        return ATTND_OK;
    }
    case JE_ATTR: {
        jv obj;
        if ((rc = eval(r, f, e->a, &obj)) != ATTND_OK)
            return rc;
        return jv_get_attr(r, obj, e->name, e->name_len, out);
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
            if ((rc = jv_call_method(r, obj, e->a->name, e->a->name_len, &a, out, &found)) || found)
                return rc;
            jv fn;
            if ((rc = jv_get_attr(r, obj, e->a->name, e->a->name_len, &fn)) != ATTND_OK)
                return rc;
            if (fn.t == V_UNDEF)
                return jv_rerr(r, "'%s' object has no method '%.*s'", jv_type_name(obj),
                            (int)e->a->name_len, e->a->name);
            return jv_call_func(r, fn, &a, out);
        }
        jv fn;
        if ((rc = eval(r, f, e->a, &fn)) || (rc = eval_args(r, f, e, 0, k_undef, &a)))
            return rc;
        if (fn.t == V_UNDEF && e->a->kind == JE_NAME)
            return jv_rerr(r, "'%.*s' is undefined", (int)e->a->name_len, e->a->name);
        return jv_call_func(r, fn, &a, out);
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
        return jv_apply_filter(r, f, e->name, e->name_len, &a, out);
    }
    case JE_TEST: {
        jv x;
        args a;
        /* `x is defined` must not fail on what makes x undefined */
        if ((rc = eval(r, f, e->a, &x)) || (rc = eval_args(r, f, e, 0, k_undef, &a)))
            return rc;
        bool res;
        if ((rc = jv_apply_test(r, e->name, e->name_len, x, &a, &res)) != ATTND_OK)
            return rc;
        *out = v_bool(res != e->negate);
        return ATTND_OK;
    }
    case JE_NEG:
    case JE_POS: {
        jv x;
        if ((rc = eval(r, f, e->a, &x)) != ATTND_OK)
            return rc;
        if (!jv_is_num(x))
            return jv_rerr(r, "bad operand type for unary %c: '%s'", e->kind == JE_NEG ? '-' : '+',
                        jv_type_name(x));
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
        *out = v_bool(!jv_truthy(x));
        return ATTND_OK;
    }
    case JE_AND:
    case JE_OR: { /* Python's: the deciding operand itself */
        jv x;
        if ((rc = eval(r, f, e->a, &x)) != ATTND_OK)
            return rc;
        if (jv_truthy(x) == (e->kind == JE_OR)) {
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
            (rc = jv_compare(r, e->name, e->name_len, x, y, &res)))
            return rc;
        *out = v_bool(res);
        return ATTND_OK;
    }
    case JE_COND: {
        jv c;
        if ((rc = eval(r, f, e->a, &c)) != ATTND_OK)
            return rc;
        if (jv_truthy(c))
            return eval(r, f, e->args[0], out);
        if (e->args[1])
            return eval(r, f, e->args[1], out);
        *out = k_undef;
        return ATTND_OK;
    }
    }
    return jv_rerr(r, "unknown expression");
}

/* ------------------------------------------------------------ statements */

static int emit(rstate *r, const char *s, size_t n)
{
    if (n == 0)
        return ATTND_OK;
    if (r->out_n + n > r->max_out)
        return jv_rerr(r, "output longer than %zu bytes", r->max_out);
    if (r->out_n + n + 1 > r->out_cap) {
        size_t cap = r->out_cap ? r->out_cap * 2 : 1024;
        while (cap < r->out_n + n + 1)
            cap *= 2;
        char *np = realloc(r->out, cap);
        if (!np)
            return jv_room(r);
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
        return jv_dict_set(r, f->vars, n->names[0], n->name_lens[0], v) ? ATTND_OK : jv_room(r);
    jlist *l;
    int rc = jv_as_list(r, v, &l);
    if (rc != ATTND_OK)
        return rc;
    if (l->n != n->n_names)
        return jv_rerr(r, "cannot unpack %zu values into %zu names", l->n, n->n_names);
    for (size_t i = 0; i < n->n_names; i++)
        if (!jv_dict_set(r, f->vars, n->names[i], n->name_lens[i], l->v[i]))
            return jv_room(r);
    return ATTND_OK;
}

static int render_for(rstate *r, frame *f, const jnode *n)
{
    jv it;
    jlist *items;
    int rc;
    if ((rc = eval(r, f, n->expr, &it)) || (rc = jv_as_list(r, it, &items)))
        return rc;
    if (n->filter) { /* `for x in xs if cond`: the loop sees only what passes */
        jlist *kept = jv_list_new(r, 0);
        if (!kept)
            return jv_room(r);
        for (size_t i = 0; i < items->n; i++) {
            frame *tf = frame_new(r, f);
            jv ok;
            if (!tf)
                return jv_room(r);
            if ((rc = assign(r, tf, n, items->v[i])) || (rc = eval(r, tf, n->filter, &ok)))
                return rc;
            if (jv_truthy(ok) && !jv_list_push(r, kept, items->v[i]))
                return jv_room(r);
        }
        items = kept;
    }
    if (items->n == 0)
        return render_body(r, f, &n->else_body);
    for (size_t i = 0; i < items->n; i++) {
        if (++r->iterations > MAX_ITERATIONS)
            return jv_rerr(r, "more than %d loop iterations", MAX_ITERATIONS);
        frame *lf = frame_new(r, f);
        jdict *loop = jv_dict_new(r);
        if (!lf || !loop)
            return jv_room(r);
        int64_t len = (int64_t)items->n, k = (int64_t)i;
        if (!jv_dict_set(r, loop, "index", 5, v_int(k + 1)) ||
            !jv_dict_set(r, loop, "index0", 6, v_int(k)) ||
            !jv_dict_set(r, loop, "revindex", 8, v_int(len - k)) ||
            !jv_dict_set(r, loop, "revindex0", 9, v_int(len - k - 1)) ||
            !jv_dict_set(r, loop, "first", 5, v_bool(k == 0)) ||
            !jv_dict_set(r, loop, "last", 4, v_bool(k == len - 1)) ||
            !jv_dict_set(r, loop, "length", 6, v_int(len)) ||
            !jv_dict_set(r, loop, "depth", 5, v_int(1)) || !jv_dict_set(r, loop, "depth0", 6, v_int(0)) ||
            (k > 0 && !jv_dict_set(r, loop, "previtem", 8, items->v[i - 1])) ||
            (k + 1 < len && !jv_dict_set(r, loop, "nextitem", 8, items->v[i + 1])) ||
            !jv_dict_set(r, lf->vars, "loop", 4, (jv){.t = V_DICT, .u.d = loop}))
            return jv_room(r);
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
        jv_put_str(&b, v);
        if (b.failed)
            return jv_room(r);
        return emit(r, b.p, b.n);
    }
    case JN_IF:
        for (size_t i = 0; i < n->n_conds; i++) {
            if ((rc = eval(r, f, n->conds[i], &v)) != ATTND_OK)
                return rc;
            if (jv_truthy(v))
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
                return jv_rerr(r, "cannot set '%.*s' on a non-namespace object", (int)n->attr_len,
                            n->attr);
            return jv_dict_set(r, ns.u.d, n->attr, n->attr_len, v) ? ATTND_OK : jv_room(r);
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
        jv_put_str(&b, v);
        if (b.failed)
            return jv_room(r);
        return emit(r, b.p, b.n);
    }
    case JN_MACRO:
        return jv_dict_set(r, f->vars, n->attr, n->attr_len, (jv){.t = V_MACRO, .u.m = n})
                   ? ATTND_OK
                   : jv_room(r);
    case JN_BREAK:
    case JN_CONTINUE:
        r->loop_ctl = n->kind == JN_BREAK ? 1 : 2;
        return ATTND_OK;
    case JN_BLOCK: return render_body(r, f, &n->body);
    }
    return jv_rerr(r, "unknown statement");
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
        rc = jv_room(&r);
    for (const cJSON *c = vars ? vars->child : NULL; rc == ATTND_OK && c; c = c->next) {
        jv x;
        if ((rc = jv_from_json(&r, c, &x, 0)) == ATTND_OK &&
            !jv_dict_set(&r, r.globals->vars, c->string, strlen(c->string), x))
            rc = jv_room(&r);
    }
    if (rc == ATTND_OK)
        rc = render_body(&r, r.root, &t->root);
    if (rc == ATTND_OK && !r.out && !(r.out = malloc(1)))
        rc = jv_room(&r);
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
