/* jinja_value.h - what the renderer's three files share: the value type
 * (None, bools, numbers, strings, lists, dicts, macros, functions, with the
 * flags that make jinja2's Markup and generators behave as they do), the
 * render state every function takes (arena, error, output, limits), and
 * the functions each file offers the others:
 *   jinja_value.c    values, Python's truth and equality, str()/repr()/json
 *                    text, string methods' helpers, JSON input
 *   jinja_builtins.c filters, tests, str/dict methods, global functions
 *   jinja_eval.c     attribute access, macros, comparisons (and the rest)
 * Internal to server/jinja/; jinja.h is the API. */
#ifndef ATTND_JINJA_VALUE_H
#define ATTND_JINJA_VALUE_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "jinja_internal.h"

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

static inline jv v_bool(bool b) { return (jv){.t = V_BOOL, .u.b = b}; }
static inline jv v_int(int64_t i) { return (jv){.t = V_INT, .u.i = i}; }
static inline jv v_float(double f) { return (jv){.t = V_FLOAT, .u.f = f}; }
static inline jv v_str(const char *p, size_t n) { return (jv){.t = V_STR, .u.s = {p, n}}; }

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

/* ------------------------------------------------------------ text building */

typedef struct sbuf {
    rstate *r;
    char *p;
    size_t n, cap;
    bool failed;
} sbuf;

/* ------------------------------------------------------------ evaluation */

typedef struct args {
    jv *pos;
    size_t n;
    const char **kw;
    size_t *kw_len;
    jv *kwv;
    size_t n_kw;
} args;


/* ---- jinja_value.c */
int jv_rerr(rstate *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int jv_room(rstate *r);
jlist *jv_list_new(rstate *r, size_t cap);
bool jv_list_push(rstate *r, jlist *l, jv x);
jdict *jv_dict_new(rstate *r);
jv *jv_dict_find(const jdict *d, const char *k, size_t kn);
bool jv_dict_set(rstate *r, jdict *d, const char *k, size_t kn, jv x);
bool jv_truthy(jv x);
bool jv_is_num(jv x);
double jv_num_of(jv x);
bool jv_equal(jv a, jv b);
const char *jv_type_name(jv x);
void jv_sb_put(sbuf *b, const char *s, size_t n);
void jv_put_str(sbuf *b, jv x);
int jv_put_json(rstate *r, sbuf *b, jv x, int indent, int level, const char *item_sep,
                    const char *key_sep);
jv jv_sb_value(sbuf *b);
int jv_to_str(rstate *r, jv x, jv *out);
jv jv_arg_get(const args *a, size_t i, const char *kw, jv dflt);
bool jv_name_is(const char *name, size_t n, const char *want);
int jv_as_list(rstate *r, jv x, jlist **out);
size_t jv_utf8_count(const char *s, size_t n);
jv jv_strip(jv s, bool left, bool right, const jv *chars);
jv jv_str_case(rstate *r, jv s, int mode) /* 0 lower, 1 upper, 2 capitalize, 3 title */;
int jv_str_split(rstate *r, jv s, const jv *sep, int64_t maxsplit, jv *out);
int jv_str_replace(rstate *r, jv s, jv from, jv to, int64_t count, jv *out);
bool jv_str_affix(jv s, jv affix, bool prefix);
void jv_put_escaped(sbuf *b, const char *s, size_t n);
void jv_put_maybe_escaped(sbuf *b, jv s, bool escape);
int jv_from_json(rstate *r, const cJSON *j, jv *out, int depth);

/* ---- jinja_builtins.c */
int jv_call_method(rstate *r, jv obj, const char *name, size_t n, const args *a, jv *out,
                       bool *found);
bool jv_is_dict_method(const char *name, size_t n);
int jv_call_func(rstate *r, jv fn, const args *a, jv *out);
int jv_apply_test(rstate *r, const char *name, size_t n, jv x, const args *a, bool *res);
int jv_apply_filter(rstate *r, frame *f, const char *name, size_t n, const args *a, jv *out);

/* ---- jinja_eval.c */
int jv_get_attr(rstate *r, jv obj, const char *name, size_t n, jv *out);
int jv_call_macro(rstate *r, const jnode *m, const args *a, jv *out);
int jv_compare(rstate *r, const char *op, size_t n, jv a, jv b, bool *res);

#endif
