/* test_jinja.c - the chat-template renderer: every committed template
 * (tests/data/templates, llama.cpp's models/templates) and the chat templates
 * of the Llama 3 and Qwen 3 vocabularies rendered on several conversations,
 * byte for byte against Python's jinja2 with Hugging Face's settings
 * (tests/ref/render-templates.py wrote the expectations); raise_exception
 * messages exact; then the language corners one by one, and broken or
 * hostile templates failing cleanly with the line named. */
#include <criterion/criterion.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "jinja.h"
#include "test_util.h"

#define TEMPLATE_DIR ATTND_SOURCE_DIR "/tests/data/templates"

/* The instant render-templates.py formats for strftime_now. */
static time_t fixed_now(void)
{
    struct tm tm = {.tm_year = 2026 - 1900, .tm_mon = 0, .tm_mday = 15, .tm_hour = 12,
                    .tm_isdst = -1};
    return mktime(&tm);
}

static char *template_source(const char *name, size_t *len)
{
    if (strncmp(name, "vocab:", 6) == 0) {
        char rel[256];
        snprintf(rel, sizeof rel, "vocab/%s", name + 6);
        gguf_file *f;
        attnd_err err = {0};
        cr_assert_eq(gguf_open(test_shared(rel), &f, &err), ATTND_OK, "%s", err.msg);
        gguf_str s;
        cr_assert_eq(gguf_get_str(f, "tokenizer.chat_template", &s, &err), ATTND_OK, "%s", err.msg);
        char *copy = malloc(s.len + 1);
        memcpy(copy, s.ptr, s.len);
        copy[s.len] = '\0';
        *len = s.len;
        gguf_close(f);
        return copy;
    }
    char path[1024];
    snprintf(path, sizeof path, TEMPLATE_DIR "/%s", name);
    char *src = test_read_file(path, len);
    cr_assert(src, "cannot read %s", path);
    return src;
}

Test(jinja, renders_every_template_as_python_jinja2, .timeout = 60)
{
    char *json = test_read_file(TEMPLATE_DIR "/renders.json", NULL);
    cr_assert(json, "cannot read renders.json");
    cJSON *root = cJSON_Parse(json);
    cr_assert(root);
    const cJSON *renders = cJSON_GetObjectItem(root, "renders");
    jinja_opts opts = {.now = fixed_now()};
    size_t n = 0, failed = 0, templates = 0, raised = 0;
    const char *last_name = "";
    jinja_tmpl *t = NULL;
    for (const cJSON *e = renders->child; e; e = e->next) {
        const char *name = cJSON_GetObjectItem(e, "template")->valuestring;
        const char *kase = cJSON_GetObjectItem(e, "case")->valuestring;
        attnd_err err = {0};
        if (strcmp(name, last_name) != 0) {
            jinja_free(t);
            size_t len;
            char *src = template_source(name, &len);
            cr_assert_eq(jinja_parse(src, len, &t, &err), ATTND_OK, "%s: %s", name, err.msg);
            free(src);
            last_name = name;
            templates++;
        }
        char *out = NULL;
        size_t out_len = 0;
        int rc = jinja_render(t, cJSON_GetObjectItem(e, "vars"), &opts, &out, &out_len, &err);
        const cJSON *want = cJSON_GetObjectItem(e, "output");
        const cJSON *want_err = cJSON_GetObjectItem(e, "error");
        bool ok;
        if (want) {
            ok = rc == ATTND_OK && out_len == strlen(want->valuestring) &&
                 memcmp(out, want->valuestring, out_len) == 0;
            if (!ok && failed < 8)
                cr_log_error("%s / %s: %s\n--- expected ---\n%s\n--- got ---\n%s", name, kase,
                             rc ? err.msg : "differs", want->valuestring, rc ? "" : out);
        } else {
            /* raise_exception: the message exactly; other failures: failing */
            bool exact = !cJSON_GetObjectItem(e, "error_kind");
            ok = rc != ATTND_OK && (!exact || strcmp(err.msg, want_err->valuestring) == 0);
            raised++;
            if (!ok && failed < 8)
                cr_log_error("%s / %s: expected the error \"%s\", got %s", name, kase,
                             want_err->valuestring, rc ? err.msg : "a rendering");
        }
        failed += !ok;
        n++;
        free(out);
    }
    jinja_free(t);
    cr_log_info("%zu renderings of %zu templates (%zu failing as expected)", n, templates, raised);
    cr_assert_geq(templates, 15u);
    cr_assert_eq(failed, 0u, "%zu of %zu renderings differ from jinja2", failed, n);
    cJSON_Delete(root);
    free(json);
}

/* Renders SRC with VARS (a JSON object); returns the output or NULL with ERR. */
static char *render(const char *src, const char *vars, attnd_err *err)
{
    jinja_tmpl *t;
    if (jinja_parse(src, strlen(src), &t, err) != ATTND_OK)
        return NULL;
    cJSON *v = cJSON_Parse(vars ? vars : "{}");
    cr_assert(v, "bad test vars %s", vars);
    char *out = NULL;
    size_t n;
    int rc = jinja_render(t, v, NULL, &out, &n, err);
    cJSON_Delete(v);
    jinja_free(t);
    return rc == ATTND_OK ? out : NULL;
}

static void expect_render(const char *src, const char *vars, const char *want)
{
    attnd_err err = {0};
    char *out = render(src, vars, &err);
    cr_expect(out, "%s: %s", src, err.msg);
    if (out)
        cr_expect_str_eq(out, want, "%s", src);
    free(out);
}

static void expect_error(const char *src, const char *vars, const char *needle)
{
    attnd_err err = {0};
    char *out = render(src, vars, &err);
    cr_expect_null(out, "%s rendered \"%s\"", src, out ? out : "");
    cr_expect(strstr(err.msg, needle), "%s: \"%s\" does not say \"%s\"", src, err.msg, needle);
    free(out);
}

/* Expected values are what Python's jinja2 3.1 prints for the same text. */
Test(jinja, whitespace_control)
{
    expect_render("a\n{% if true %}\n  b\n{% endif %}\nc\n", NULL, "a\n  b\nc");
    expect_render("  {% if true %}x{% endif %}  ", NULL, "x  ");
    expect_render("a {{- ' b ' -}} c", NULL, "a b c");
    expect_render("a\n  {%- if true -%}  \n b{% endif %}", NULL, "ab");
    expect_render("{# note #}\nx\n  {# indented #}\ny", NULL, "x\ny");
    expect_render("a\r\nb\r\n", NULL, "a\nb");
    expect_render("{% for i in [1,2] %}\n{{ i }}\n{% endfor %}\n", NULL, "1\n2\n");
    expect_render("x {%+ if true %}y{% endif %}", NULL, "x y");
}

Test(jinja, expressions_as_python)
{
    expect_render("{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 3 / 2 }} "
                  "{{ 2 ** 10 }}",
                  NULL, "7 3 -4 1 2 1.5 1024");
    expect_render("{{ 'a' ~ 1 ~ none }} {{ 'ab' * 2 }} {{ [1] + [2] }}", NULL, "a1None abab [1, 2]");
    expect_render("{{ 1.0 }} {{ 0.1 }} {{ 1e16 }} {{ 2.5e-5 }} {{ true }} {{ none }}", NULL,
                  "1.0 0.1 1e+16 2.5e-05 True None");
    expect_render("{{ [1, 'a', none, true, {'k': 'v'}] }} {{ (1,) }} {{ (1, 2) }}", NULL,
                  "[1, 'a', None, True, {'k': 'v'}] (1,) (1, 2)");
    expect_render("{{ \"it's\" }} {{ ['it\\'s'] }}", NULL, "it's [\"it's\"]");
    expect_render("{{ 1 < 2 < 3 }} {{ 'b' in 'abc' }} {{ 2 not in [1] }} {{ 'x' if false else 'y' }}",
                  NULL, "True True True y");
    expect_render("{{ 0 or 'd' }} {{ 1 and 'e' }} {{ not none }} {{ 1 == 1.0 }} {{ true == 1 }}",
                  NULL, "d e True True True");
    expect_render("{{ 'héllo'[1] }}{{ 'abc'[::-1] }}{{ [1,2,3][1:] }}{{ [1,2,3][-1] }}", NULL,
                  "écba[2, 3]3");
    expect_render("{{ x.y }}|{{ x['y'] }}|{{ x.get('z', 5) }}|{{ x.items() | list }}",
                  "{\"x\": {\"y\": 1}}", "1|1|5|[('y', 1)]");
    expect_render("{{ '  a b  '.strip() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a b'.split() }}|"
                  "{{ 'Hi'.upper() }}{{ 'x'.startswith(('y', 'x')) }}",
                  NULL, "a b|['a', 'b', '', 'c']|['a', 'b']|HITrue");
}

Test(jinja, filters_and_tests)
{
    expect_render("{{ ' x ' | trim }}|{{ [1,2] | length }}|{{ 'ünï' | length }}|{{ u | default('d') }}|"
                  "{{ '' | default('e', true) }}",
                  NULL, "x|2|3|d|e");
    expect_render("{{ {'a': [1, 'ü', none, 1.5]} | tojson }}", NULL, "{\"a\": [1, \"ü\", null, 1.5]}");
    expect_render("{{ {'a': {'b': 1}, 'c': []} | tojson(indent=2) }}", NULL,
                  "{\n  \"a\": {\n    \"b\": 1\n  },\n  \"c\": []\n}");
    expect_render("{{ 'q\"\\n\\t' | tojson }}", NULL, "\"q\\\"\\n\\t\"");
    expect_render("{{ m | selectattr('role', 'equalto', 'user') | map(attribute='c') | join(',') }}",
                  "{\"m\": [{\"role\": \"user\", \"c\": \"a\"}, {\"role\": \"bot\", \"c\": \"b\"},"
                  " {\"role\": \"user\", \"c\": \"d\"}]}",
                  "a,d");
    expect_render("{{ [3, 1, 3] | unique | list }} {{ 'ab' | upper }} {{ 'a\\nb' | indent(2) }} "
                  "{{ 'aXbX' | replace('X', '-') }} {{ [1,2] | first }}{{ [1,2] | last }}",
                  NULL, "[3, 1] AB a\n  b a-b- 12");
    expect_render("{{ x is defined }}{{ y is undefined }}{{ none is none }}{{ 's' is string }}"
                  "{{ 3 is odd }}{{ {} is mapping }}{{ [] is iterable }}{{ 1 is number }}",
                  "{\"x\": 1}", "TrueTrueTrueTrueTrueTrueTrueTrue");
    expect_render("{{ x is not none }}{{ 4 is divisibleby 2 }}", "{\"x\": null}", "FalseTrue");
}

Test(jinja, statements)
{
    expect_render("{% for i in range(5) if i is odd %}{{ loop.index }}:{{ i }}{% if not loop.last %},"
                  "{% endif %}{% endfor %}",
                  NULL, "1:1,2:3");
    expect_render("{% for i in [] %}x{% else %}empty{% endfor %}", NULL, "empty");
    expect_render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}", NULL,
                  "a=1;b=2;");
    expect_render("{% for i in range(10) %}{% if i == 3 %}{% break %}{% endif %}{% if i == 1 %}"
                  "{% continue %}{% endif %}{{ i }}{% endfor %}",
                  NULL, "02");
    /* a loop body is a scope of its own; namespaces carry values out */
    expect_render("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}", NULL, "1");
    expect_render("{% set ns = namespace(n=0) %}{% for i in [1,2,3] %}{% set ns.n = ns.n + i %}"
                  "{% endfor %}{{ ns.n }}",
                  NULL, "6");
    expect_render("{% if false %}a{% elif true %}b{% else %}c{% endif %}", NULL, "b");
    expect_render("{% macro greet(who, punct='!') %}Hi {{ who }}{{ punct }}{% endmacro %}"
                  "{{ greet('A') }} {{ greet('B', punct='?') }}",
                  NULL, "Hi A! Hi B?");
    expect_render("{% set block %}in {{ 1 + 1 }}{% endset %}[{{ block }}]", NULL, "[in 2]");
    expect_render("{% generation %}kept{% endgeneration %}", NULL, "kept");
    expect_render("{{ raise_exception is defined }}{{ strftime_now('%Y') | length }}", NULL, "True4");
}

Test(jinja, errors_name_the_line)
{
    expect_error("ok\n{% if x %}\nno end", NULL, "'{% endif %}' is missing");
    expect_error("a\n\n{{ 1 + }}", NULL, "line 3");
    expect_error("{% frobnicate %}", NULL, "unknown tag 'frobnicate'");
    expect_error("{{ x | nosuchfilter }}", NULL, "no filter named 'nosuchfilter'");
    expect_error("{{ x is nosuchtest }}", NULL, "no test named 'nosuchtest'");
    expect_error("{{ 'a' + 1 }}", NULL, "unsupported operand");
    expect_error("{{ raise_exception('Only user and assistant roles') }}", NULL,
                 "Only user and assistant roles");
    expect_error("{{ x.y.z }}", "{\"x\": {}}", "undefined");
    expect_error("{{ 1 // 0 }}", NULL, "by zero");
    expect_error("{{ 'unterminated }}", NULL, "unterminated string");
    expect_error("{% for i in range(2000000) %}{% endfor %}", NULL, "loop iterations");
    expect_error("{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}", NULL, "nested deeper");
    expect_error("{{ 'x' * 100000000 }}", NULL, "too long");
    /* an exact raise_exception message, as the chat route shows it */
    attnd_err err = {0};
    cr_assert_null(render("{{ raise_exception('System role not supported') }}", NULL, &err));
    cr_expect_str_eq(err.msg, "System role not supported");
}

/* Random edits of real templates: any outcome but a crash, a leak (ASan) or
 * a hang is fine. */
Test(jinja, mangled_templates_never_crash, .timeout = 120)
{
    size_t len;
    char *src = template_source("meta-llama-Llama-3.1-8B-Instruct.jinja", &len);
    const char *vars = "{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": "
                       "\"user\", \"content\": \"u\"}], \"add_generation_prompt\": true, "
                       "\"bos_token\": \"<s>\"}";
    cJSON *v = cJSON_Parse(vars);
    uint64_t seed = 7;
    size_t parsed = 0;
    for (int i = 0; i < 1500; i++) {
        char *m = malloc(len + 1);
        memcpy(m, src, len);
        for (int k = 0; k < 1 + i % 4; k++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(seed >> 33) % len;
            static const char bytes[] = "{}%#-+()[]'\"|.,= \nx0";
            m[at] = bytes[(seed >> 20) % (sizeof bytes - 1)];
        }
        jinja_tmpl *t;
        attnd_err err = {0};
        if (jinja_parse(m, len, &t, &err) == ATTND_OK) {
            parsed++;
            char *out = NULL;
            size_t n;
            if (jinja_render(t, v, NULL, &out, &n, &err) == ATTND_OK)
                free(out);
            jinja_free(t);
        } else {
            cr_assert(strstr(err.msg, "template"), "%s", err.msg);
        }
        free(m);
    }
    cr_log_info("%zu of 1500 mangled templates still parsed", parsed);
    cJSON_Delete(v);
    free(src);
}
