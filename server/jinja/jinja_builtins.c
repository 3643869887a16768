/* jinja_builtins.c - what templates call by name: the filters (trim,
 * tojson, selectattr, map, ...), the tests (defined, none, string, ...), the
 * str and dict methods the sandbox allows, and the globals range,
 * namespace, dict, raise_exception and strftime_now. jinja2 3.1 is the
 * reference for each, down to map/select being generators. */
#include "jinja_value.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* x.name(args) for strings and dicts (what the sandbox allows). */
int jv_call_method(rstate *r, jv obj, const char *name, size_t n, const args *a, jv *out,
                       bool *found)
{
    *found = true;
    if (obj.t == V_STR) {
        jv none = k_none;
        if (jv_name_is(name, n, "strip") || jv_name_is(name, n, "lstrip") || jv_name_is(name, n, "rstrip")) {
            jv chars = jv_arg_get(a, 0, NULL, none);
            bool l = !jv_name_is(name, n, "rstrip"), rt = !jv_name_is(name, n, "lstrip");
            *out = jv_strip(obj, l, rt, chars.t == V_STR ? &chars : NULL);
            return ATTND_OK;
        }
        if (jv_name_is(name, n, "split")) {
            jv sep = jv_arg_get(a, 0, "sep", none), mx = jv_arg_get(a, 1, "maxsplit", v_int(-1));
            return jv_str_split(r, obj, &sep, mx.t == V_INT ? mx.u.i : -1, out);
        }
        if (jv_name_is(name, n, "startswith") || jv_name_is(name, n, "endswith")) {
            *out = v_bool(jv_str_affix(obj, jv_arg_get(a, 0, NULL, none), name[0] == 's'));
            return ATTND_OK;
        }
        if (jv_name_is(name, n, "lower") || jv_name_is(name, n, "upper") ||
            jv_name_is(name, n, "capitalize") || jv_name_is(name, n, "title")) {
            int mode = name[0] == 'l' ? 0 : name[0] == 'u' ? 1 : name[0] == 'c' ? 2 : 3;
            *out = jv_str_case(r, obj, mode);
            return out->t == V_UNDEF ? jv_room(r) : ATTND_OK;
        }
        if (jv_name_is(name, n, "replace")) {
            jv cnt = jv_arg_get(a, 2, "count", v_int(-1));
            return jv_str_replace(r, obj, jv_arg_get(a, 0, NULL, none), jv_arg_get(a, 1, NULL, none),
                               cnt.t == V_INT ? cnt.u.i : -1, out);
        }
        if (jv_name_is(name, n, "find") || jv_name_is(name, n, "count")) {
            jv sub = jv_arg_get(a, 0, NULL, none);
            if (sub.t != V_STR)
                return jv_rerr(r, "%.*s() takes a string", (int)n, name);
            int64_t found_at = -1, count = 0;
            for (size_t i = 0; sub.u.s.n <= obj.u.s.n && i + sub.u.s.n <= obj.u.s.n;) {
                if (memcmp(obj.u.s.p + i, sub.u.s.p, sub.u.s.n) == 0) {
                    if (found_at < 0)
                        found_at = (int64_t)jv_utf8_count(obj.u.s.p, i);
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
        if (jv_name_is(name, n, "get")) {
            jv k = jv_arg_get(a, 0, NULL, k_none);
            jv *v = k.t == V_STR ? jv_dict_find(obj.u.d, k.u.s.p, k.u.s.n) : NULL;
            *out = v ? *v : jv_arg_get(a, 1, NULL, k_none);
            return ATTND_OK;
        }
        if (jv_name_is(name, n, "items") || jv_name_is(name, n, "keys") || jv_name_is(name, n, "values")) {
            jlist *l = jv_list_new(r, obj.u.d->n);
            if (!l)
                return jv_room(r);
            for (size_t i = 0; i < obj.u.d->n; i++) {
                jv k = v_str(obj.u.d->k[i], obj.u.d->kn[i]), x;
                if (name[0] == 'i') {
                    jlist *pair = jv_list_new(r, 2);
                    if (!pair)
                        return jv_room(r);
                    pair->v[0] = k;
                    pair->v[1] = obj.u.d->v[i];
                    pair->n = 2;
                    x = (jv){.t = V_LIST, .tuple = true, .u.l = pair};
                } else {
                    x = name[0] == 'k' ? k : obj.u.d->v[i];
                }
                if (!jv_list_push(r, l, x))
                    return jv_room(r);
            }
            *out = (jv){.t = V_LIST, .u.l = l};
            return ATTND_OK;
        }
    }
    *found = false;
    return ATTND_OK;
}

bool jv_is_dict_method(const char *name, size_t n)
{
    return jv_name_is(name, n, "get") || jv_name_is(name, n, "items") || jv_name_is(name, n, "keys") ||
           jv_name_is(name, n, "values");
}

int jv_call_func(rstate *r, jv fn, const args *a, jv *out)
{
    if (fn.t == V_MACRO)
        return jv_call_macro(r, fn.u.m, a, out);
    if (fn.t != V_FUNC)
        return jv_rerr(r, "'%s' object is not callable", jv_type_name(fn));
    switch (fn.u.fn) {
    case F_RAISE: {
        jv msg;
        int rc = jv_to_str(r, jv_arg_get(a, 0, NULL, k_undef), &msg);
        if (rc != ATTND_OK)
            return rc;
        /* exactly the template's message: it is shown to the user */
        return attnd_err_set(r->err, ATTND_EINVAL, "%.*s", (int)msg.u.s.n, msg.u.s.p);
    }
    case F_STRFTIME: {
        jv fmt = jv_arg_get(a, 0, NULL, k_undef);
        if (fmt.t != V_STR)
            return jv_rerr(r, "strftime_now() takes a format string");
        char f[256], buf[512];
        snprintf(f, sizeof f, "%.*s", (int)(fmt.u.s.n > 255 ? 255 : fmt.u.s.n), fmt.u.s.p);
        struct tm tm;
        localtime_r(&r->now, &tm);
        size_t k = strftime(buf, sizeof buf, f, &tm);
        char *s = jinja_alloc(&r->a, k + 1);
        if (!s)
            return jv_room(r);
        memcpy(s, buf, k);
        *out = v_str(s, k);
        return ATTND_OK;
    }
    case F_RANGE: {
        int64_t lo = 0, hi, st = 1;
        jv a0 = jv_arg_get(a, 0, NULL, k_undef), a1 = jv_arg_get(a, 1, NULL, k_undef),
           a2 = jv_arg_get(a, 2, NULL, k_undef);
        if (a0.t != V_INT || (a1.t != V_UNDEF && a1.t != V_INT) || (a2.t != V_UNDEF && a2.t != V_INT))
            return jv_rerr(r, "range() takes integers");
        if (a1.t == V_INT) {
            lo = a0.u.i;
            hi = a1.u.i;
        } else {
            hi = a0.u.i;
        }
        if (a2.t == V_INT)
            st = a2.u.i;
        if (st == 0)
            return jv_rerr(r, "range() step must not be zero");
        jlist *l = jv_list_new(r, 0);
        if (!l)
            return jv_room(r);
        for (int64_t i = lo; st > 0 ? i < hi : i > hi; i += st) {
            if (++r->iterations > MAX_ITERATIONS)
                return jv_rerr(r, "more than %d loop iterations", MAX_ITERATIONS);
            if (!jv_list_push(r, l, v_int(i)))
                return jv_room(r);
        }
        *out = (jv){.t = V_LIST, .u.l = l};
        return ATTND_OK;
    }
    case F_NAMESPACE:
    case F_DICT: {
        jdict *d = jv_dict_new(r);
        if (!d)
            return jv_room(r);
        if (a->n > 0 && a->pos[0].t == V_DICT) {
            for (size_t i = 0; i < a->pos[0].u.d->n; i++)
                if (!jv_dict_set(r, d, a->pos[0].u.d->k[i], a->pos[0].u.d->kn[i], a->pos[0].u.d->v[i]))
                    return jv_room(r);
        }
        for (size_t i = 0; i < a->n_kw; i++)
            if (!jv_dict_set(r, d, a->kw[i], a->kw_len[i], a->kwv[i]))
                return jv_room(r);
        *out = (jv){.t = V_DICT, .ns = fn.u.fn == F_NAMESPACE, .u.d = d};
        return ATTND_OK;
    }
    }
    return jv_rerr(r, "unknown function");
}

/* ------------------------------------------------------------ tests and filters */

int jv_apply_test(rstate *r, const char *name, size_t n, jv x, const args *a, bool *res)
{
    jv arg = jv_arg_get(a, 0, NULL, k_undef);
#define T(s) jv_name_is(name, n, s)
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
            return jv_rerr(r, "'%.*s' test on a %s", (int)n, name, jv_type_name(x));
        *res = ((x.u.i % 2) != 0) == T("odd");
    } else if (T("divisibleby")) {
        if (x.t != V_INT || arg.t != V_INT || arg.u.i == 0)
            return jv_rerr(r, "'divisibleby' takes integers");
        *res = x.u.i % arg.u.i == 0;
    } else if (T("eq") || T("equalto") || T("==") || T("sameas"))
        *res = jv_equal(x, arg);
    else if (T("ne") || T("!="))
        *res = !jv_equal(x, arg);
    else if (T("lt") || T("le") || T("gt") || T("ge") || T("lessthan") || T("greaterthan")) {
        const char *op = T("lt") || T("lessthan") ? "<" : T("le") ? "<=" : T("gt") || T("greaterthan") ? ">" : ">=";
        return jv_compare(r, op, strlen(op), x, arg, res);
    } else if (T("in"))
        return jv_compare(r, "in", 2, x, arg, res);
    else if (T("lower") || T("upper")) {
        *res = x.t == V_STR;
        for (size_t i = 0; *res && i < x.u.s.n; i++)
            if (T("lower") ? isupper((unsigned char)x.u.s.p[i]) : islower((unsigned char)x.u.s.p[i]))
                *res = false;
    } else
        return jv_rerr(r, "no test named '%.*s'", (int)n, name);
#undef T
    return ATTND_OK;
}

/* The items of a list-valued filter input (a dict's keys, a string's chars). */
static int filter_items(rstate *r, jv x, jlist **l)
{
    return jv_as_list(r, x, l);
}

int jv_apply_filter(rstate *r, frame *f, const char *name, size_t n, const args *a, jv *out)
{
    jv x = a->pos[0];
    int rc;
#define F(s) jv_name_is(name, n, s)
    if (F("safe")) {
        if ((rc = jv_to_str(r, x, out)) != ATTND_OK)
            return rc;
        out->markup = true;
        return ATTND_OK;
    }
    if (F("trim")) {
        jv s, chars = jv_arg_get(a, 1, "chars", k_none);
        if ((rc = jv_to_str(r, x, &s)) != ATTND_OK)
            return rc;
        *out = jv_strip(s, true, true, chars.t == V_STR ? &chars : NULL);
        return ATTND_OK;
    }
    if (F("string")) {
        return jv_to_str(r, x, out);
    }
    if (F("upper") || F("lower") || F("capitalize") || F("title")) {
        jv s;
        if ((rc = jv_to_str(r, x, &s)) != ATTND_OK)
            return rc;
        int mode = F("lower") ? 0 : F("upper") ? 1 : F("capitalize") ? 2 : 3;
        if (mode == 2) { /* capitalize lowers the rest */
            jv low = jv_str_case(r, s, 0);
            if (low.t == V_UNDEF)
                return jv_room(r);
            s = low;
        }
        *out = jv_str_case(r, s, mode);
        return out->t == V_UNDEF ? jv_room(r) : ATTND_OK;
    }
    if (F("length") || F("count")) {
        if (x.t == V_STR)
            *out = v_int((int64_t)jv_utf8_count(x.u.s.p, x.u.s.n));
        else if (x.t == V_LIST && x.gen)
            return jv_rerr(r, "object of type 'generator' has no len()");
        else if (x.t == V_LIST)
            *out = v_int((int64_t)x.u.l->n);
        else if (x.t == V_DICT)
            *out = v_int((int64_t)x.u.d->n);
        else if (x.t == V_UNDEF)
            *out = v_int(0);
        else
            return jv_rerr(r, "object of type '%s' has no len()", jv_type_name(x));
        return ATTND_OK;
    }
    if (F("default") || F("d")) {
        jv dflt = jv_arg_get(a, 1, "default_value", v_str("", 0));
        jv boolean = jv_arg_get(a, 2, "boolean", v_bool(false));
        *out = (x.t == V_UNDEF || (jv_truthy(boolean) && !jv_truthy(x))) ? dflt : x;
        return ATTND_OK;
    }
    if (F("tojson")) {
        jv ind = jv_arg_get(a, 1, "indent", k_none);
        jv seps = jv_arg_get(a, 99, "separators", k_none);
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
        if ((rc = jv_put_json(r, &b, x, indent, 0, item_sep, key_sep)) != ATTND_OK)
            return rc;
        if (b.failed)
            return jv_room(r);
        *out = jv_sb_value(&b);
        return ATTND_OK;
    }
    if (F("items")) {
        if (x.t == V_UNDEF) {
            jlist *l = jv_list_new(r, 0);
            if (!l)
                return jv_room(r);
            *out = (jv){.t = V_LIST, .u.l = l};
            return ATTND_OK;
        }
        if (x.t != V_DICT)
            return jv_rerr(r, "items: expected a mapping, got %s", jv_type_name(x));
        bool found;
        args none = {0};
        return jv_call_method(r, x, "items", 5, &none, out, &found);
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
            return jv_rerr(r, "'generator' object is not reversible");
        if ((rc = filter_items(r, x, &l)) != ATTND_OK)
            return rc;
        *out = l->n ? l->v[F("first") ? 0 : l->n - 1] : k_undef;
        return ATTND_OK;
    }
    if (F("reverse")) {
        jlist *l, *res;
        if ((rc = filter_items(r, x, &l)) != ATTND_OK)
            return rc;
        if (!(res = jv_list_new(r, l->n)))
            return jv_room(r);
        for (size_t i = 0; i < l->n; i++)
            res->v[i] = l->v[l->n - 1 - i];
        res->n = l->n;
        if (x.t == V_STR) {
            sbuf b = {.r = r};
            for (size_t i = 0; i < res->n; i++)
                jv_sb_put(&b, res->v[i].u.s.p, res->v[i].u.s.n);
            if (b.failed)
                return jv_room(r);
            *out = jv_sb_value(&b);
        } else {
            *out = (jv){.t = V_LIST, .gen = true, .u.l = res}; /* reversed(): an iterator */
        }
        return ATTND_OK;
    }
    if (F("join")) {
        jlist *l;
        jv sep = jv_arg_get(a, 1, "d", v_str("", 0)), attr = jv_arg_get(a, 2, "attribute", k_none);
        if ((rc = filter_items(r, x, &l)) != ATTND_OK)
            return rc;
        if (sep.t != V_STR && (rc = jv_to_str(r, sep, &sep)) != ATTND_OK)
            return rc;
        sbuf b = {.r = r};
        for (size_t i = 0; i < l->n; i++) {
            jv item = l->v[i], s;
            if (attr.t == V_STR && (rc = jv_get_attr(r, item, attr.u.s.p, attr.u.s.n, &item)))
                return rc;
            if ((rc = jv_to_str(r, item, &s)) != ATTND_OK)
                return rc;
            if (i)
                jv_sb_put(&b, sep.u.s.p, sep.u.s.n);
            jv_sb_put(&b, s.u.s.p, s.u.s.n);
        }
        if (b.failed)
            return jv_room(r);
        *out = jv_sb_value(&b);
        return ATTND_OK;
    }
    if (F("replace")) {
        jv s, cnt = jv_arg_get(a, 3, "count", k_none);
        if ((rc = jv_to_str(r, x, &s)) != ATTND_OK)
            return rc;
        return jv_str_replace(r, s, jv_arg_get(a, 1, "old", k_none), jv_arg_get(a, 2, "new", k_none),
                           cnt.t == V_INT ? cnt.u.i : -1, out);
    }
    if (F("indent")) {
        jv s, width = jv_arg_get(a, 1, "width", v_int(4)), first = jv_arg_get(a, 2, "first", v_bool(false)),
              blank = jv_arg_get(a, 3, "blank", v_bool(false));
        if ((rc = jv_to_str(r, x, &s)) != ATTND_OK)
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
            if ((!first_line || jv_truthy(first)) && (!empty || jv_truthy(blank)))
                jv_sb_put(&b, pad, pn);
            jv_sb_put(&b, p, (size_t)(le - p));
            if (!nl)
                break;
            jv_sb_put(&b, "\n", 1);
            p = nl + 1;
            first_line = false;
        }
        if (b.failed)
            return jv_room(r);
        *out = jv_sb_value(&b);
        return ATTND_OK;
    }
    if (F("selectattr") || F("rejectattr") || F("select") || F("reject")) {
        bool attr = F("selectattr") || F("rejectattr"), keep = F("selectattr") || F("select");
        jlist *l, *res;
        if (!jv_truthy(x)) /* jinja2: `if value:` before iterating */
            x = (jv){.t = V_LIST, .u.l = jv_list_new(r, 0)};
        if (!x.u.l && x.t == V_LIST)
            return jv_room(r);
        if ((rc = filter_items(r, x, &l)) != ATTND_OK)
            return rc;
        if (!(res = jv_list_new(r, 0)))
            return jv_room(r);
        size_t base = attr ? 2 : 1;
        jv an = attr ? jv_arg_get(a, 1, NULL, k_undef) : k_undef;
        jv tn = jv_arg_get(a, base, NULL, k_undef);
        if (attr && an.t != V_STR)
            return jv_rerr(r, "%.*s: the attribute must be a string", (int)n, name);
        args targs = {0};
        if (a->n > base + 1) {
            targs.pos = a->pos + base + 1;
            targs.n = a->n - base - 1;
        }
        for (size_t i = 0; i < l->n; i++) {
            jv item = l->v[i];
            if (attr && (rc = jv_get_attr(r, item, an.u.s.p, an.u.s.n, &item)) != ATTND_OK)
                return rc;
            bool ok;
            if (tn.t == V_STR) {
                if ((rc = jv_apply_test(r, tn.u.s.p, tn.u.s.n, item, &targs, &ok)) != ATTND_OK)
                    return rc;
            } else {
                ok = jv_truthy(item);
            }
            if (ok == keep && !jv_list_push(r, res, l->v[i]))
                return jv_room(r);
        }
        *out = (jv){.t = V_LIST, .gen = true, .u.l = res};
        return ATTND_OK;
    }
    if (F("map")) {
        jlist *l, *res;
        if (!jv_truthy(x))
            x = (jv){.t = V_LIST, .u.l = jv_list_new(r, 0)};
        if (!x.u.l && x.t == V_LIST)
            return jv_room(r);
        if ((rc = filter_items(r, x, &l)) != ATTND_OK)
            return rc;
        if (!(res = jv_list_new(r, l->n)))
            return jv_room(r);
        jv attr = jv_arg_get(a, 99, "attribute", k_undef), dflt = jv_arg_get(a, 99, "default", k_undef);
        jv fname = jv_arg_get(a, 1, NULL, k_undef);
        for (size_t i = 0; i < l->n; i++) {
            jv v;
            if (attr.t == V_STR) {
                if ((rc = jv_get_attr(r, l->v[i], attr.u.s.p, attr.u.s.n, &v)) != ATTND_OK)
                    return rc;
                if (v.t == V_UNDEF && dflt.t != V_UNDEF)
                    v = dflt;
            } else if (fname.t == V_STR) {
                args fa = {0};
                jv *pos = jinja_alloc(&r->a, (a->n > 1 ? a->n - 1 : 1) * sizeof *pos);
                if (!pos)
                    return jv_room(r);
                pos[0] = l->v[i];
                for (size_t k = 2; k < a->n; k++)
                    pos[k - 1] = a->pos[k];
                fa.pos = pos;
                fa.n = a->n > 1 ? a->n - 1 : 1;
                if ((rc = jv_apply_filter(r, f, fname.u.s.p, fname.u.s.n, &fa, &v)) != ATTND_OK)
                    return rc;
            } else {
                return jv_rerr(r, "map: give a filter name or attribute=");
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
        if (!(res = jv_list_new(r, 0)))
            return jv_room(r);
        for (size_t i = 0; i < l->n; i++) {
            bool seen = false;
            for (size_t k = 0; k < res->n && !seen; k++)
                seen = jv_equal(res->v[k], l->v[i]);
            if (!seen && !jv_list_push(r, res, l->v[i]))
                return jv_room(r);
        }
        *out = (jv){.t = V_LIST, .gen = true, .u.l = res};
        return ATTND_OK;
    }
    if (F("int")) {
        jv dflt = jv_arg_get(a, 1, "default", v_int(0));
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
        if (jv_is_num(x))
            *out = v_float(jv_num_of(x));
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
        if (!jv_is_num(x))
            return jv_rerr(r, "bad operand type for abs(): '%s'", jv_type_name(x));
        *out = x.t == V_FLOAT ? v_float(fabs(x.u.f)) : v_int(llabs(x.t == V_INT ? x.u.i : x.u.b));
        return ATTND_OK;
    }
    if (F("round")) {
        jv prec = jv_arg_get(a, 1, "precision", v_int(0));
        double m = pow(10.0, (double)(prec.t == V_INT ? prec.u.i : 0));
        *out = v_float(round(jv_num_of(x) * m) / m);
        return ATTND_OK;
    }
    if (F("escape") || F("e") || F("forceescape")) {
        jv s;
        if ((rc = jv_to_str(r, x, &s)) != ATTND_OK)
            return rc;
        if (s.markup && !F("forceescape")) { /* already safe */
            *out = s;
            return ATTND_OK;
        }
        sbuf b = {.r = r};
        jv_put_escaped(&b, s.u.s.p, s.u.s.n);
        if (b.failed)
            return jv_room(r);
        *out = jv_sb_value(&b);
        out->markup = true;
        return ATTND_OK;
    }
    if (F("wordcount")) {
        jv s, words;
        if ((rc = jv_to_str(r, x, &s)) || (rc = jv_str_split(r, s, NULL, -1, &words)))
            return rc;
        *out = v_int((int64_t)words.u.l->n);
        return ATTND_OK;
    }
#undef F
    (void)f;
    return jv_rerr(r, "no filter named '%.*s'", (int)n, name);
}
