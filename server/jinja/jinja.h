/* jinja.h - the subset of Jinja that chat templates use, rendered byte for
 * byte as Python's jinja2 renders them with the settings Hugging Face uses
 * for `tokenizer.chat_template` (ImmutableSandboxedEnvironment, trim_blocks,
 * lstrip_blocks, loop controls, a tojson that keeps non-ASCII, the globals
 * raise_exception and strftime_now).
 *
 * Supported: text, {{ }}, {% %}, {# #} with whitespace control; if/elif/else,
 * for (loop.*, else, an `if` filter, unpacking), set (names, namespace
 * attributes, blocks), macro, break/continue, generation; expressions with
 * Python's operators, literals, attribute and item access, slices, calls
 * with keyword arguments, conditional expressions; the filters and tests and
 * the str/dict methods that real templates use. Anything else is a parse or
 * render error naming it and its line, never undefined behaviour.
 *
 * Ownership and threads: a jinja_tmpl is parsed once (e.g. at model load),
 * immutable afterwards and may be rendered by several threads at once; each
 * render allocates from its own arena and hands back one malloc'd string. */
#ifndef ATTND_JINJA_H
#define ATTND_JINJA_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <time.h>

#include "attnd_err.h"

typedef struct jinja_tmpl jinja_tmpl;

/* Parses SRC[0, LEN). Errors say what was wrong and on which line. */
int jinja_parse(const char *src, size_t len, jinja_tmpl **out, attnd_err *err);
void jinja_free(jinja_tmpl *t);

typedef struct jinja_opts {
    time_t now;          /* what strftime_now formats (local time); 0: the current time */
    size_t max_output;   /* bytes; 0: 4 MiB */
} jinja_opts;

/* Renders T with the top-level variables of the JSON object VARS (messages,
 * add_generation_prompt, bos_token, ...; JSON null is None). *OUT is
 * malloc'd and NUL-terminated, *OUT_LEN without the NUL. A template's
 * raise_exception("...") fails with ATTND_EINVAL and exactly that message;
 * other render errors name the construct and the template line. */
int jinja_render(const jinja_tmpl *t, const cJSON *vars, const jinja_opts *opts, char **out,
                 size_t *out_len, attnd_err *err);

#endif
