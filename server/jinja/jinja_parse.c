/* jinja_parse.c - tokens to a syntax tree, by recursive descent with
 * jinja2's precedence: conditional expression, or, and, not, comparisons,
 * + -, ~, * / // %, **, unary - +, then primaries with postfix access and
 * calls, filters (|) and tests (is) binding tightest after them. */
#include "jinja_internal.h"

#include <stdio.h>
#include <string.h>

#define MAX_DEPTH 200 /* nesting of expressions and blocks */

typedef struct parser {
    const jtok *t;
    size_t n, pos;
    jinja_arena *a;
    attnd_err *err;
    int depth;
} parser;

static const jtok *cur(const parser *p)
{
    return &p->t[p->pos];
}

static bool is_op(const jtok *t, const char *op)
{
    return t->kind == JT_OP && t->len == strlen(op) && memcmp(t->text, op, t->len) == 0;
}

static bool is_name(const jtok *t, const char *name)
{
    return t->kind == JT_NAME && t->len == strlen(name) && memcmp(t->text, name, t->len) == 0;
}

static int perr(parser *p, const char *fmt, const char *what)
{
    char msg[160];
    snprintf(msg, sizeof msg, fmt, what);
    return attnd_err_set(p->err, ATTND_EINVAL, "template line %d: %s", cur(p)->line, msg);
}

static int oom(parser *p)
{
    return attnd_err_set(p->err, ATTND_ENOMEM, "template: out of memory");
}

static jexpr *new_expr(parser *p, jexpr_kind k)
{
    jexpr *e = jinja_alloc(p->a, sizeof *e);
    if (e) {
        e->kind = k;
        e->line = cur(p)->line;
    }
    return e;
}

/* ARR (N elements of ELEM bytes, in the arena, capacity the next power of
 * two) with room for one more: a copy twice the size when N is 0 or a power
 * of two (full), else ARR itself. NULL: out of memory. */
static void *grow(parser *p, void *arr, size_t n, size_t elem)
{
    if ((n & (n - 1)) != 0)
        return arr;
    void *na = jinja_alloc(p->a, (n ? n * 2 : 1) * elem);
    if (na && n)
        memcpy(na, arr, n * elem);
    return na;
}

/* Appends X to a growable pointer array (doubling in the arena). */
static bool push_ptr(parser *p, void ***v, size_t *n, void *x)
{
    void **nv = grow(p, *v, *n, sizeof *nv);
    if (!nv)
        return false;
    *v = nv;
    (*v)[(*n)++] = x;
    return true;
}

static int expect_op(parser *p, const char *op)
{
    if (!is_op(cur(p), op))
        return perr(p, "expected '%s'", op);
    p->pos++;
    return ATTND_OK;
}

static int expect_block_end(parser *p)
{
    if (cur(p)->kind != JT_BLOCK_END)
        return perr(p, "expected '%s' at the end of the tag", "%}");
    p->pos++;
    return ATTND_OK;
}

static int parse_expr(parser *p, bool with_cond, jexpr **out);

/* Arguments of a call, filter or test after its '(': positional and
 * keyword, up to ')'. */
static int parse_args(parser *p, jexpr *e)
{
    int rc;
    while (!is_op(cur(p), ")")) {
        if (e->n_args + e->n_kwargs > 0 && (rc = expect_op(p, ",")) != ATTND_OK)
            return rc;
        if (is_op(cur(p), ")"))
            break; /* a trailing comma */
        const jtok *t = cur(p);
        if (t->kind == JT_NAME && is_op(&p->t[p->pos + 1], "=")) {
            p->pos += 2;
            jexpr *v;
            if ((rc = parse_expr(p, true, &v)) != ATTND_OK)
                return rc;
            size_t n = e->n_kwargs;
            if (!push_ptr(p, (void ***)&e->kwargs, &e->n_kwargs, v))
                return oom(p);
            /* names and lengths grow with kwargs (same doubling) */
            if ((n & (n - 1)) == 0) {
                size_t cap = n ? n * 2 : 1;
                const char **kw = jinja_alloc(p->a, cap * sizeof *kw);
                size_t *kl = jinja_alloc(p->a, cap * sizeof *kl);
                if (!kw || !kl)
                    return oom(p);
                if (n) {
                    memcpy(kw, e->kw, n * sizeof *kw);
                    memcpy(kl, e->kw_len, n * sizeof *kl);
                }
                e->kw = kw;
                e->kw_len = kl;
            }
            e->kw[n] = t->text;
            e->kw_len[n] = t->len;
            continue;
        }
        jexpr *v;
        if ((rc = parse_expr(p, true, &v)) != ATTND_OK)
            return rc;
        if (!push_ptr(p, (void ***)&e->args, &e->n_args, v))
            return oom(p);
    }
    p->pos++;
    return ATTND_OK;
}

static int parse_primary(parser *p, jexpr **out)
{
    const jtok *t = cur(p);
    jexpr *e = NULL;
    int rc;
    if (t->kind == JT_NAME) {
        static const struct {
            const char *name;
            jexpr_kind kind;
            bool value;
        } lits[] = {{"true", JE_BOOL, true},  {"True", JE_BOOL, true}, {"false", JE_BOOL, false},
                    {"False", JE_BOOL, false}, {"none", JE_NONE, 0},   {"None", JE_NONE, 0}};
        for (size_t i = 0; i < sizeof lits / sizeof lits[0] && !e; i++)
            if (is_name(t, lits[i].name)) {
                if (!(e = new_expr(p, lits[i].kind)))
                    return oom(p);
                e->i = lits[i].value;
            }
        if (!e) {
            if (!(e = new_expr(p, JE_NAME)))
                return oom(p);
            e->name = t->text;
            e->name_len = t->len;
        }
        p->pos++;
    } else if (t->kind == JT_STRING) {
        /* adjacent literals are one string */
        size_t total = 0, k = p->pos;
        while (p->t[k].kind == JT_STRING)
            total += p->t[k++].len;
        char *s = jinja_alloc(p->a, total + 1);
        if (!s || !(e = new_expr(p, JE_STR)))
            return oom(p);
        size_t o = 0;
        for (; p->pos < k; p->pos++) {
            memcpy(s + o, p->t[p->pos].text, p->t[p->pos].len);
            o += p->t[p->pos].len;
        }
        e->s = s;
        e->s_len = total;
    } else if (t->kind == JT_INT || t->kind == JT_FLOAT) {
        if (!(e = new_expr(p, t->kind == JT_INT ? JE_INT : JE_FLOAT)))
            return oom(p);
        e->i = t->i;
        e->f = t->f;
        p->pos++;
    } else if (is_op(t, "(")) {
        p->pos++;
        jexpr *first = NULL;
        if (is_op(cur(p), ")")) { /* () is the empty tuple */
            if (!(e = new_expr(p, JE_TUPLE)))
                return oom(p);
            p->pos++;
        } else {
            if ((rc = parse_expr(p, true, &first)) != ATTND_OK)
                return rc;
            if (is_op(cur(p), ",")) {
                if (!(e = new_expr(p, JE_TUPLE)) ||
                    !push_ptr(p, (void ***)&e->args, &e->n_args, first))
                    return oom(p);
                while (is_op(cur(p), ",")) {
                    p->pos++;
                    if (is_op(cur(p), ")"))
                        break;
                    jexpr *x;
                    if ((rc = parse_expr(p, true, &x)) != ATTND_OK)
                        return rc;
                    if (!push_ptr(p, (void ***)&e->args, &e->n_args, x))
                        return oom(p);
                }
            } else {
                e = first;
            }
            if ((rc = expect_op(p, ")")) != ATTND_OK)
                return rc;
        }
    } else if (is_op(t, "[") || is_op(t, "{")) {
        bool dict = is_op(t, "{");
        const char *close = dict ? "}" : "]";
        if (!(e = new_expr(p, dict ? JE_DICT : JE_LIST)))
            return oom(p);
        p->pos++;
        while (!is_op(cur(p), close)) {
            if (e->n_args && (rc = expect_op(p, ",")) != ATTND_OK)
                return rc;
            if (is_op(cur(p), close))
                break;
            jexpr *x;
            if ((rc = parse_expr(p, true, &x)) != ATTND_OK)
                return rc;
            if (!push_ptr(p, (void ***)&e->args, &e->n_args, x))
                return oom(p);
            if (dict) {
                if ((rc = expect_op(p, ":")) != ATTND_OK || (rc = parse_expr(p, true, &x)))
                    return rc;
                if (!push_ptr(p, (void ***)&e->args, &e->n_args, x))
                    return oom(p);
            }
        }
        p->pos++;
    } else {
        return perr(p, "unexpected %s in an expression",
                    t->kind == JT_EOF ? "end of template"
                    : t->kind == JT_VAR_END || t->kind == JT_BLOCK_END ? "end of tag"
                                                                        : "token");
    }
    *out = e;
    return ATTND_OK;
}

/* Postfix access (.name, [index], [slice], (call)), then filters and tests. */
static int parse_postfix(parser *p, jexpr *e, jexpr **out)
{
    int rc;
    for (;;) {
        const jtok *t = cur(p);
        if (is_op(t, ".")) {
            const jtok *nm = &p->t[p->pos + 1];
            if (nm->kind != JT_NAME && nm->kind != JT_INT)
                return perr(p, "expected a name after '%s'", ".");
            jexpr *x = new_expr(p, nm->kind == JT_NAME ? JE_ATTR : JE_ITEM);
            if (!x)
                return oom(p);
            x->a = e;
            if (nm->kind == JT_NAME) {
                x->name = nm->text;
                x->name_len = nm->len;
            } else {
                if (!(x->b = new_expr(p, JE_INT)))
                    return oom(p);
                x->b->i = nm->i;
            }
            p->pos += 2;
            e = x;
        } else if (is_op(t, "[")) {
            p->pos++;
            jexpr *parts[3] = {NULL, NULL, NULL};
            int k = 0;
            bool slice = false;
            for (;;) {
                if (is_op(cur(p), ":")) {
                    slice = true;
                    if (++k > 2)
                        return perr(p, "too many '%s' in a slice", ":");
                    p->pos++;
                    continue;
                }
                if (is_op(cur(p), "]"))
                    break;
                if ((rc = parse_expr(p, true, &parts[k])) != ATTND_OK)
                    return rc;
                if (!is_op(cur(p), ":") && !is_op(cur(p), "]"))
                    return perr(p, "expected '%s'", "]");
            }
            p->pos++;
            jexpr *x = new_expr(p, slice ? JE_SLICE : JE_ITEM);
            if (!x)
                return oom(p);
            if (!slice && !parts[0])
                return perr(p, "empty %s", "subscript");
            x->a = e;
            if (slice) {
                x->b = parts[0];
                x->c = parts[1];
                if (parts[2] && !push_ptr(p, (void ***)&x->args, &x->n_args, parts[2]))
                    return oom(p);
            } else {
                x->b = parts[0];
            }
            e = x;
        } else if (is_op(t, "(")) {
            jexpr *x = new_expr(p, JE_CALL);
            if (!x)
                return oom(p);
            x->a = e;
            p->pos++;
            if ((rc = parse_args(p, x)) != ATTND_OK)
                return rc;
            e = x;
        } else if (is_op(t, "|") || is_name(t, "is")) {
            bool test = is_name(t, "is");
            p->pos++;
            jexpr *x = new_expr(p, test ? JE_TEST : JE_FILTER);
            if (!x)
                return oom(p);
            if (test && is_name(cur(p), "not")) {
                x->negate = true;
                p->pos++;
            }
            if (cur(p)->kind != JT_NAME)
                return perr(p, "expected a %s name", test ? "test" : "filter");
            x->name = cur(p)->text;
            x->name_len = cur(p)->len;
            p->pos++;
            /* dotted filter names do not occur in templates; none, true
             * and false tests are plain names here */
            x->a = e;
            if (is_op(cur(p), "(")) {
                p->pos++;
                if ((rc = parse_args(p, x)) != ATTND_OK)
                    return rc;
            } else if (test) {
                /* `is divisibleby 3`: one argument without parentheses */
                const jtok *n = cur(p);
                bool starts = (n->kind == JT_NAME && !is_name(n, "else") && !is_name(n, "or") &&
                               !is_name(n, "and") && !is_name(n, "if") && !is_name(n, "not") &&
                               !is_name(n, "in") && !is_name(n, "is")) ||
                              n->kind == JT_STRING || n->kind == JT_INT || n->kind == JT_FLOAT ||
                              is_op(n, "[") || is_op(n, "{");
                if (starts) {
                    jexpr *arg;
                    if ((rc = parse_primary(p, &arg)) != ATTND_OK ||
                        (rc = parse_postfix(p, arg, &arg)) != ATTND_OK)
                        return rc;
                    if (!push_ptr(p, (void ***)&x->args, &x->n_args, arg))
                        return oom(p);
                }
            }
            e = x;
        } else {
            break;
        }
    }
    *out = e;
    return ATTND_OK;
}

static int parse_unary(parser *p, jexpr **out)
{
    int rc;
    if (is_op(cur(p), "-") || is_op(cur(p), "+")) {
        jexpr *x = new_expr(p, is_op(cur(p), "-") ? JE_NEG : JE_POS);
        if (!x)
            return oom(p);
        p->pos++;
        if (++p->depth > MAX_DEPTH)
            return perr(p, "%s nested too deeply", "expression");
        rc = parse_unary(p, &x->a);
        p->depth--;
        if (rc != ATTND_OK)
            return rc;
        return parse_postfix(p, x, out);
    }
    jexpr *e;
    if ((rc = parse_primary(p, &e)) != ATTND_OK)
        return rc;
    return parse_postfix(p, e, out);
}

static jexpr *binop(parser *p, jexpr_kind k, const char *op, size_t op_len, jexpr *a, jexpr *b)
{
    jexpr *x = new_expr(p, k);
    if (x) {
        x->name = op;
        x->name_len = op_len;
        x->a = a;
        x->b = b;
    }
    return x;
}

/* Levels of binary operators, loosest first; each level's operand is the
 * next level. */
static int parse_level(parser *p, int level, jexpr **out);

static int parse_pow(parser *p, jexpr **out)
{
    jexpr *a;
    int rc = parse_unary(p, &a);
    while (rc == ATTND_OK && is_op(cur(p), "**")) {
        p->pos++;
        jexpr *b;
        if ((rc = parse_unary(p, &b)) == ATTND_OK && !(a = binop(p, JE_BINOP, "**", 2, a, b)))
            rc = oom(p);
    }
    *out = a;
    return rc;
}

static const char *const k_levels[][5] = {
    {"+", "-", NULL},           /* math1 */
    {"~", NULL},                /* concat */
    {"*", "/", "//", "%", NULL}, /* math2 */
};

static int parse_level(parser *p, int level, jexpr **out)
{
    if (level == 3)
        return parse_pow(p, out);
    jexpr *a;
    int rc = parse_level(p, level + 1, &a);
    while (rc == ATTND_OK) {
        const char *op = NULL;
        for (int i = 0; k_levels[level][i] && !op; i++)
            if (is_op(cur(p), k_levels[level][i]))
                op = k_levels[level][i];
        if (!op)
            break;
        p->pos++;
        jexpr *b;
        if ((rc = parse_level(p, level + 1, &b)) == ATTND_OK &&
            !(a = binop(p, JE_BINOP, op, strlen(op), a, b)))
            rc = oom(p);
    }
    *out = a;
    return rc;
}

static int parse_compare(parser *p, jexpr **out)
{
    jexpr *a;
    int rc = parse_level(p, 0, &a);
    jexpr *result = NULL; /* a chain a < b < c is (a < b) and (b < c) */
    while (rc == ATTND_OK) {
        static const char *const ops[] = {"==", "!=", "<=", ">=", "<", ">"};
        const char *op = NULL;
        for (size_t i = 0; i < sizeof ops / sizeof ops[0] && !op; i++)
            if (is_op(cur(p), ops[i]))
                op = ops[i];
        size_t skip = 1;
        if (!op && is_name(cur(p), "in"))
            op = "in";
        else if (!op && is_name(cur(p), "not") && is_name(&p->t[p->pos + 1], "in")) {
            op = "notin";
            skip = 2;
        }
        if (!op)
            break;
        p->pos += skip;
        jexpr *b;
        if ((rc = parse_level(p, 0, &b)) != ATTND_OK)
            break;
        jexpr *cmp = binop(p, JE_CMP, op, strlen(op), a, b);
        if (!cmp)
            return oom(p);
        result = result ? binop(p, JE_AND, "and", 3, result, cmp) : cmp;
        if (!result)
            return oom(p);
        a = b;
    }
    *out = result ? result : a;
    return rc;
}

static int parse_not(parser *p, jexpr **out)
{
    if (is_name(cur(p), "not")) {
        jexpr *x = new_expr(p, JE_NOT);
        if (!x)
            return oom(p);
        p->pos++;
        if (++p->depth > MAX_DEPTH)
            return perr(p, "%s nested too deeply", "expression");
        int rc = parse_not(p, &x->a);
        p->depth--;
        *out = x;
        return rc;
    }
    return parse_compare(p, out);
}

static int parse_andor(parser *p, bool is_or, jexpr **out)
{
    jexpr *a;
    int rc = is_or ? parse_andor(p, false, &a) : parse_not(p, &a);
    const char *kw = is_or ? "or" : "and";
    while (rc == ATTND_OK && is_name(cur(p), kw)) {
        p->pos++;
        jexpr *b;
        if ((rc = is_or ? parse_andor(p, false, &b) : parse_not(p, &b)) == ATTND_OK &&
            !(a = binop(p, is_or ? JE_OR : JE_AND, kw, strlen(kw), a, b)))
            rc = oom(p);
    }
    *out = a;
    return rc;
}

static int parse_expr(parser *p, bool with_cond, jexpr **out)
{
    if (++p->depth > MAX_DEPTH)
        return perr(p, "%s nested too deeply", "expression");
    jexpr *a;
    int rc = parse_andor(p, true, &a);
    while (rc == ATTND_OK && with_cond && is_name(cur(p), "if")) {
        p->pos++;
        jexpr *x = new_expr(p, JE_COND);
        if (!x) {
            rc = oom(p);
            break;
        }
        x->args = jinja_alloc(p->a, 2 * sizeof *x->args);
        if (!x->args) {
            rc = oom(p);
            break;
        }
        x->n_args = 2;
        x->args[0] = a;
        if ((rc = parse_andor(p, true, &x->a)) != ATTND_OK)
            break;
        if (is_name(cur(p), "else")) {
            p->pos++;
            if ((rc = parse_expr(p, true, &x->args[1])) != ATTND_OK)
                break;
        }
        a = x;
    }
    p->depth--;
    *out = a;
    return rc;
}

/* ------------------------------------------------------------ statements */

static int parse_body(parser *p, jbody *body, const char *const *ends, size_t *which);

static jnode *new_node(parser *p, jnode_kind k)
{
    jnode *n = jinja_alloc(p->a, sizeof *n);
    if (n) {
        n->kind = k;
        n->line = cur(p)->line;
    }
    return n;
}

static int add_name(parser *p, jnode *n, const jtok *t)
{
    size_t k = n->n_names;
    if (!push_ptr(p, (void ***)&n->names, &n->n_names, (void *)t->text) ||
        !(n->name_lens = grow(p, n->name_lens, k, sizeof *n->name_lens)))
        return oom(p);
    n->name_lens[k] = t->len;
    return ATTND_OK;
}

/* NAME (, NAME)*, optionally in parentheses. */
static int parse_targets(parser *p, jnode *n)
{
    bool paren = is_op(cur(p), "(");
    if (paren)
        p->pos++;
    int rc;
    do {
        if (n->n_names)
            p->pos++; /* the comma */
        if (cur(p)->kind != JT_NAME)
            return perr(p, "expected a %s name", "variable");
        if ((rc = add_name(p, n, cur(p))) != ATTND_OK)
            return rc;
        p->pos++;
    } while (is_op(cur(p), ","));
    return paren ? expect_op(p, ")") : ATTND_OK;
}

static int parse_if(parser *p, jnode *n)
{
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    static const char *const endif[] = {"endif", NULL};
    size_t which = 0;
    int rc;
    do {
        jexpr *cond;
        jbody b = {0};
        if ((rc = parse_expr(p, true, &cond)) != ATTND_OK || (rc = expect_block_end(p)) ||
            (rc = parse_body(p, &b, ends, &which)))
            return rc;
        size_t k = n->n_conds;
        if (!push_ptr(p, (void ***)&n->conds, &n->n_conds, cond) ||
            !(n->bodies = grow(p, n->bodies, k, sizeof *n->bodies)))
            return oom(p);
        n->bodies[k] = b;
    } while (which == 0);
    if (which == 1 && ((rc = expect_block_end(p)) || (rc = parse_body(p, &n->else_body, endif, &which))))
        return rc;
    return expect_block_end(p);
}

static int parse_for(parser *p, jnode *n)
{
    static const char *const ends[] = {"else", "endfor", NULL};
    static const char *const endfor[] = {"endfor", NULL};
    int rc;
    if ((rc = parse_targets(p, n)) != ATTND_OK)
        return rc;
    if (!is_name(cur(p), "in"))
        return perr(p, "expected '%s' in a for tag", "in");
    p->pos++;
    if ((rc = parse_expr(p, false, &n->expr)) != ATTND_OK)
        return rc;
    if (is_name(cur(p), "if")) {
        p->pos++;
        if ((rc = parse_expr(p, false, &n->filter)) != ATTND_OK)
            return rc;
    }
    if (is_name(cur(p), "recursive"))
        return perr(p, "'%s' loops are not supported", "recursive");
    size_t which;
    if ((rc = expect_block_end(p)) || (rc = parse_body(p, &n->body, ends, &which)))
        return rc;
    if (which == 0 &&
        ((rc = expect_block_end(p)) || (rc = parse_body(p, &n->else_body, endfor, &which))))
        return rc;
    return expect_block_end(p);
}

static int parse_set(parser *p, jnode *n)
{
    static const char *const endset[] = {"endset", NULL};
    int rc;
    if (cur(p)->kind == JT_NAME && is_op(&p->t[p->pos + 1], ".")) {
        /* ns.attr = value */
        if ((rc = add_name(p, n, cur(p))) != ATTND_OK)
            return rc;
        const jtok *attr = &p->t[p->pos + 2];
        if (attr->kind != JT_NAME)
            return perr(p, "expected an attribute name after '%s'", ".");
        n->attr = attr->text;
        n->attr_len = attr->len;
        p->pos += 3;
    } else if ((rc = parse_targets(p, n)) != ATTND_OK) {
        return rc;
    }
    if (cur(p)->kind == JT_BLOCK_END && n->n_names == 1 && !n->attr) {
        size_t which;
        n->kind = JN_SET_BLOCK;
        p->pos++;
        if ((rc = parse_body(p, &n->body, endset, &which)) != ATTND_OK)
            return rc;
        return expect_block_end(p);
    }
    if ((rc = expect_op(p, "=")) != ATTND_OK || (rc = parse_expr(p, true, &n->expr)))
        return rc;
    if (is_op(cur(p), ",")) { /* a, b = 1, 2: the value is a tuple */
        jexpr *t = new_expr(p, JE_TUPLE);
        if (!t || !push_ptr(p, (void ***)&t->args, &t->n_args, n->expr))
            return oom(p);
        while (is_op(cur(p), ",")) {
            p->pos++;
            jexpr *x;
            if ((rc = parse_expr(p, true, &x)) != ATTND_OK)
                return rc;
            if (!push_ptr(p, (void ***)&t->args, &t->n_args, x))
                return oom(p);
        }
        n->expr = t;
    }
    return expect_block_end(p);
}

static int parse_macro(parser *p, jnode *n)
{
    static const char *const endmacro[] = {"endmacro", NULL};
    int rc;
    if (cur(p)->kind != JT_NAME)
        return perr(p, "expected a %s name", "macro");
    n->attr = cur(p)->text; /* the macro's name */
    n->attr_len = cur(p)->len;
    p->pos++;
    if ((rc = expect_op(p, "(")) != ATTND_OK)
        return rc;
    size_t n_def = 0;
    while (!is_op(cur(p), ")")) {
        if (n->n_names && (rc = expect_op(p, ",")) != ATTND_OK)
            return rc;
        if (cur(p)->kind != JT_NAME)
            return perr(p, "expected a %s name", "parameter");
        if ((rc = add_name(p, n, cur(p))) != ATTND_OK)
            return rc;
        p->pos++;
        jexpr *def = NULL;
        if (is_op(cur(p), "=")) {
            p->pos++;
            if ((rc = parse_expr(p, true, &def)) != ATTND_OK)
                return rc;
        }
        if (!push_ptr(p, (void ***)&n->defaults, &n_def, def))
            return oom(p);
    }
    p->pos++;
    size_t which;
    if ((rc = expect_block_end(p)) || (rc = parse_body(p, &n->body, endmacro, &which)))
        return rc;
    return expect_block_end(p);
}

static int parse_stmt(parser *p, jnode **out)
{
    const jtok *t = cur(p);
    if (t->kind != JT_NAME)
        return perr(p, "expected a tag name after '%s'", "{%");
    jnode *n = new_node(p, JN_BLOCK);
    if (!n)
        return oom(p);
    p->pos++;
    int rc;
    if (++p->depth > MAX_DEPTH)
        return perr(p, "%s nested too deeply", "blocks");
    if (is_name(t, "if")) {
        n->kind = JN_IF;
        rc = parse_if(p, n);
    } else if (is_name(t, "for")) {
        n->kind = JN_FOR;
        rc = parse_for(p, n);
    } else if (is_name(t, "set")) {
        n->kind = JN_SET;
        rc = parse_set(p, n);
    } else if (is_name(t, "macro")) {
        n->kind = JN_MACRO;
        rc = parse_macro(p, n);
    } else if (is_name(t, "break") || is_name(t, "continue")) {
        n->kind = is_name(t, "break") ? JN_BREAK : JN_CONTINUE;
        rc = expect_block_end(p);
    } else if (is_name(t, "filter")) {
        static const char *const end[] = {"endfilter", NULL};
        size_t which;
        n->kind = JN_FILTER_BLOCK;
        jexpr *chain = NULL;
        rc = ATTND_OK;
        do {
            if (chain)
                p->pos++; /* the | */
            jexpr *x = new_expr(p, JE_FILTER);
            if (!x)
                return oom(p);
            if (cur(p)->kind != JT_NAME)
                return perr(p, "expected a %s name", "filter");
            x->name = cur(p)->text;
            x->name_len = cur(p)->len;
            x->a = chain;
            p->pos++;
            if (is_op(cur(p), "(")) {
                p->pos++;
                if ((rc = parse_args(p, x)) != ATTND_OK)
                    return rc;
            }
            chain = x;
        } while (is_op(cur(p), "|"));
        n->expr = chain;
        if ((rc = expect_block_end(p)) == ATTND_OK &&
            (rc = parse_body(p, &n->body, end, &which)) == ATTND_OK)
            rc = expect_block_end(p);
    } else if (is_name(t, "generation")) {
        static const char *const end[] = {"endgeneration", NULL};
        size_t which;
        if ((rc = expect_block_end(p)) == ATTND_OK &&
            (rc = parse_body(p, &n->body, end, &which)) == ATTND_OK)
            rc = expect_block_end(p);
    } else {
        char name[48];
        snprintf(name, sizeof name, "%.*s", (int)(t->len > 40 ? 40 : t->len), t->text);
        p->pos--;
        rc = perr(p, "unknown tag '%s'", name);
    }
    p->depth--;
    *out = n;
    return rc;
}

/* Nodes up to a block tag named in ENDS (NULL-terminated; *WHICH its index,
 * its name consumed) or, without ENDS, the end of the template. */
static int parse_body(parser *p, jbody *body, const char *const *ends, size_t *which)
{
    int rc;
    for (;;) {
        const jtok *t = cur(p);
        jnode *n = NULL;
        if (t->kind == JT_EOF) {
            if (!ends)
                return ATTND_OK;
            size_t last = 0;
            while (ends[last + 1])
                last++;
            return perr(p, "unexpected end of template: '{%% %s %%}' is missing", ends[last]);
        }
        if (t->kind == JT_TEXT) {
            if (!(n = new_node(p, JN_TEXT)))
                return oom(p);
            n->text = t->text;
            n->len = t->len;
            p->pos++;
        } else if (t->kind == JT_VAR_BEGIN) {
            if (!(n = new_node(p, JN_OUTPUT)))
                return oom(p);
            p->pos++;
            if ((rc = parse_expr(p, true, &n->expr)) != ATTND_OK)
                return rc;
            if (cur(p)->kind != JT_VAR_END)
                return perr(p, "expected '%s'", "}}");
            p->pos++;
        } else if (t->kind == JT_BLOCK_BEGIN) {
            const jtok *nm = &p->t[p->pos + 1];
            for (size_t i = 0; ends && ends[i]; i++)
                if (is_name(nm, ends[i])) {
                    p->pos += 2;
                    *which = i;
                    return ATTND_OK;
                }
            p->pos++;
            if ((rc = parse_stmt(p, &n)) != ATTND_OK)
                return rc;
        } else {
            return perr(p, "unexpected %s", "token");
        }
        if (!push_ptr(p, (void ***)&body->v, &body->n, n))
            return oom(p);
    }
}

int jinja_parse_tokens(const jtok *toks, size_t n, jinja_arena *a, jbody *root, attnd_err *err)
{
    parser p = {.t = toks, .n = n, .a = a, .err = err};
    memset(root, 0, sizeof *root);
    return parse_body(&p, root, NULL, NULL);
}
