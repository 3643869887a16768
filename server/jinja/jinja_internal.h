/* jinja_internal.h - what the files of server/jinja/ share: the arena, the
 * token stream of the lexer, the syntax tree the parser builds and the
 * evaluator walks. Not for other modules (jinja.h is the API). */
#ifndef ATTND_JINJA_INTERNAL_H
#define ATTND_JINJA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jinja.h"

/* ------------------------------------------------------------ arena */

/* Bump allocation in chunks; everything is freed at once. A byte budget
 * bounds what one template or render may take. */
typedef struct jinja_arena {
    struct arena_chunk *head;
    size_t used, budget;
} jinja_arena;

void *jinja_alloc(jinja_arena *a, size_t n); /* zeroed; NULL past the budget */
void jinja_arena_free(jinja_arena *a);

/* ------------------------------------------------------------ tokens */

typedef enum jtok_kind {
    JT_EOF,
    JT_TEXT,        /* template data between tags (already whitespace-trimmed) */
    JT_VAR_BEGIN,   /* {{ */
    JT_VAR_END,     /* }} */
    JT_BLOCK_BEGIN, /* {% */
    JT_BLOCK_END,   /* %} */
    JT_NAME,
    JT_STRING,      /* text holds the unescaped bytes */
    JT_INT,
    JT_FLOAT,
    JT_OP,          /* text holds the operator: ( ) [ ] { } . , : | + - * / // % ** ~ = == != < > <= >= */
} jtok_kind;

typedef struct jtok {
    jtok_kind kind;
    const char *text;
    size_t len;
    int64_t i;
    double f;
    int line;
} jtok;

/* The whole template as tokens (last one JT_EOF), in arena A. */
int jinja_lex(const char *src, size_t len, jinja_arena *a, jtok **toks, size_t *n,
              attnd_err *err);

/* ------------------------------------------------------------ syntax tree */

typedef enum jexpr_kind {
    JE_NONE, JE_BOOL, JE_INT, JE_FLOAT, JE_STR, /* literals */
    JE_NAME,
    JE_LIST, JE_TUPLE, JE_DICT,  /* items in args (dict: key, value pairs) */
    JE_ATTR,                     /* a.name */
    JE_ITEM,                     /* a[b] */
    JE_SLICE,                    /* a[b:c:d], absent parts NULL */
    JE_CALL,                     /* a(args, kwargs) */
    JE_FILTER,                   /* a | name(args, kwargs); a NULL for a filter block */
    JE_TEST,                     /* a is [not] name(args) */
    JE_NEG, JE_POS, JE_NOT,
    JE_AND, JE_OR,
    JE_BINOP,                    /* op: + - * / // % ** ~ */
    JE_CMP,                      /* op: == != < > <= >= in notin */
    JE_COND,                     /* args[0] if a else args[1] */
} jexpr_kind;

typedef struct jexpr jexpr;
struct jexpr {
    jexpr_kind kind;
    int line;
    const char *name; /* JE_NAME, JE_ATTR, JE_FILTER, JE_TEST, op of JE_BINOP/JE_CMP */
    size_t name_len;
    bool negate;      /* JE_TEST */
    int64_t i;
    double f;
    const char *s;    /* JE_STR */
    size_t s_len;
    jexpr *a, *b, *c;
    jexpr **args;     /* JE_LIST/TUPLE/DICT items, call/filter/test arguments */
    size_t n_args;
    const char **kw;  /* keyword argument names, parallel to kwargs */
    size_t *kw_len;
    jexpr **kwargs;
    size_t n_kwargs;
};

typedef enum jnode_kind {
    JN_TEXT, JN_OUTPUT, JN_IF, JN_FOR, JN_SET, JN_SET_BLOCK, JN_MACRO, JN_BREAK, JN_CONTINUE,
    JN_BLOCK, /* a body with no construct of its own ({% generation %}) */
    JN_FILTER_BLOCK, /* {% filter f | g(x) %}: expr is the chain, innermost a NULL */
} jnode_kind;

typedef struct jnode jnode;

typedef struct jbody {
    jnode **v;
    size_t n;
} jbody;

struct jnode {
    jnode_kind kind;
    int line;
    const char *text; /* JN_TEXT */
    size_t len;
    jexpr *expr;      /* OUTPUT value, SET value, FOR iterable */
    /* IF: conds[i] guards bodies[i]; else_body when none holds */
    jexpr **conds;
    jbody *bodies;
    size_t n_conds;
    jbody body, else_body; /* FOR, SET_BLOCK, MACRO, BLOCK: body */
    /* FOR targets, SET targets (name, or ns.attr when attr set), MACRO name */
    const char **names;
    size_t *name_lens;
    size_t n_names;
    const char *attr;
    size_t attr_len;
    jexpr *filter;    /* FOR ... if filter */
    /* MACRO parameters: names and defaults (NULL: required) */
    jexpr **defaults;
};

struct jinja_tmpl {
    jinja_arena arena;
    jbody root;
};

int jinja_parse_tokens(const jtok *toks, size_t n, jinja_arena *a, jbody *root, attnd_err *err);

#endif
