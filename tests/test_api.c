/* test_api.c - the HTTP API's request parsing and validation, error JSON and
 * stop-string matcher (server/srv_api.h): every field rule with wrong types,
 * edges and absurd values; malformed bodies (truncated at every byte, trailing
 * data, bad UTF-8, NUL escapes); and the stop matcher against a whole-text
 * reference over random feeds. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnd_utf8.h"
#include "srv_api.h"
#include "srv_stop.h"

static const srv_limits LIM = {.default_max_tokens = 256, .max_tokens_cap = 4096};
#define RSEED 0xfeedfaceULL

/* Parses BODY[LEN] from an exactly-sized heap copy, so that ASan sees any
 * read past the end (the real bodies are not NUL-terminated either). */
static int gen_n(const char *body, size_t len, srv_gen_req *r, attnd_err *err)
{
    char *copy = malloc(len ? len : 1);
    cr_assert_not_null(copy);
    memcpy(copy, body, len);
    int rc = srv_parse_generate(copy, len, &LIM, RSEED, r, err);
    free(copy);
    return rc;
}

static srv_gen_req gen_ok(const char *body)
{
    srv_gen_req r;
    attnd_err err = {0};
    int rc = gen_n(body, strlen(body), &r, &err);
    cr_assert_eq(rc, ATTND_OK, "%s: rejected: %s", body, err.msg);
    return r;
}

static void gen_err_n(const char *body, size_t len, const char *want)
{
    srv_gen_req r;
    attnd_err err = {0};
    int rc = gen_n(body, len, &r, &err);
    cr_expect_eq(rc, ATTND_EINVAL, "%.*s: accepted (rc %d)", (int)len, body, rc);
    if (rc == ATTND_OK) {
        srv_gen_req_free(&r);
        return;
    }
    if (want)
        cr_expect_str_eq(err.msg, want, "%.*s", (int)len, body);
    /* A failed parse leaves nothing to free. */
    cr_expect_null(r.prompt);
    cr_expect_eq(r.n_stop, 0);
    srv_gen_req_free(&r);
}

static void gen_err(const char *body, const char *want)
{
    gen_err_n(body, strlen(body), want);
}

/* {"prompt":"x", FIELD: VALUE} must fail with WANT. */
static void field_err(const char *field, const char *value, const char *want)
{
    char body[2048];
    snprintf(body, sizeof body, "{\"prompt\":\"x\",\"%s\":%s}", field, value);
    gen_err(body, want);
}

static srv_gen_req field_ok(const char *field, const char *value)
{
    char body[2048];
    snprintf(body, sizeof body, "{\"prompt\":\"x\",\"%s\":%s}", field, value);
    return gen_ok(body);
}

/* ---- /generate: valid bodies -------------------------------------------- */

Test(generate, all_fields)
{
    srv_gen_req r = gen_ok("{\"prompt\":\"Once upon\",\"max_tokens\":17,\"temperature\":0.5,"
                           "\"top_k\":7,\"top_p\":0.9,\"min_p\":0.1,\"repeat_penalty\":1.3,"
                           "\"repeat_last_n\":32,\"seed\":42,\"stop\":[\"\\n\",\"END\"],"
                           "\"ignore_eos\":true,\"stream\":true}");
    cr_expect_str_eq(r.prompt, "Once upon");
    cr_expect_eq(r.prompt_len, 9);
    cr_expect_eq(r.max_tokens, 17);
    cr_expect_float_eq(r.sample.temperature, 0.5f, 1e-7);
    cr_expect_eq(r.sample.top_k, 7);
    cr_expect_float_eq(r.sample.top_p, 0.9f, 1e-7);
    cr_expect_float_eq(r.sample.min_p, 0.1f, 1e-7);
    cr_expect_float_eq(r.sample.repeat_penalty, 1.3f, 1e-7);
    cr_expect_eq(r.sample.repeat_last_n, 32);
    cr_expect_eq(r.sample.seed, 42);
    cr_expect(r.seed_given);
    cr_assert_eq(r.n_stop, 2);
    cr_expect_str_eq(r.stop[0], "\n");
    cr_expect_eq(r.stop_len[0], 1);
    cr_expect_str_eq(r.stop[1], "END");
    cr_expect_eq(r.stop_len[1], 3);
    cr_expect(r.ignore_eos);
    cr_expect(r.sample.ignore_eos);
    cr_expect(r.stream);
    srv_gen_req_free(&r);
    cr_expect_null(r.prompt);
    srv_gen_req_free(&r); /* freeing twice is harmless */
}

static void expect_defaults(const srv_gen_req *r)
{
    sample_params d = sample_params_default();
    cr_expect_eq(r->max_tokens, LIM.default_max_tokens);
    cr_expect_eq(r->sample.temperature, d.temperature);
    cr_expect_eq(r->sample.top_k, d.top_k);
    cr_expect_eq(r->sample.top_p, d.top_p);
    cr_expect_eq(r->sample.min_p, d.min_p);
    cr_expect_eq(r->sample.repeat_penalty, d.repeat_penalty);
    cr_expect_eq(r->sample.repeat_last_n, d.repeat_last_n);
    cr_expect_eq(r->sample.seed, RSEED);
    cr_expect_not(r->seed_given);
    cr_expect_eq(r->n_stop, 0);
    cr_expect_not(r->ignore_eos);
    cr_expect_not(r->sample.ignore_eos);
    cr_expect_not(r->stream);
}

Test(generate, defaults)
{
    srv_gen_req r = gen_ok("{\"prompt\":\"hi\"}");
    cr_expect_str_eq(r.prompt, "hi");
    expect_defaults(&r);
    srv_gen_req_free(&r);
}

Test(generate, nulls_are_absent)
{
    srv_gen_req r = gen_ok("{\"prompt\":\"hi\",\"max_tokens\":null,\"temperature\":null,"
                           "\"top_k\":null,\"top_p\":null,\"min_p\":null,\"repeat_penalty\":null,"
                           "\"repeat_last_n\":null,\"seed\":null,\"stop\":null,"
                           "\"ignore_eos\":null,\"stream\":null}");
    expect_defaults(&r);
    srv_gen_req_free(&r);
    gen_err("{\"prompt\":null}", "prompt is required");
}

Test(generate, unknown_fields_ignored)
{
    srv_gen_req r = gen_ok("{\"model\":\"x\",\"Prompt\":5,\"n\":[1,{\"a\":[null,true]}],"
                           "\"prompt\":\"hi\",\"junk\":{\"k\\u0000\":\"\\u0000\"},"
                           "\"bad\":\"\xff\xfe\",\"MAX_TOKENS\":-5,\"deep\":[[[[[[[]]]]]]]}");
    cr_expect_str_eq(r.prompt, "hi");
    expect_defaults(&r);
    srv_gen_req_free(&r);
}

Test(generate, default_max_tokens_capped)
{
    srv_limits lim = {.default_max_tokens = 500, .max_tokens_cap = 100};
    srv_gen_req r;
    attnd_err err = {0};
    const char *b = "{\"prompt\":\"\"}";
    cr_assert_eq(srv_parse_generate(b, strlen(b), &lim, 1, &r, &err), ATTND_OK, "%s", err.msg);
    cr_expect_eq(r.max_tokens, 100);
    srv_gen_req_free(&r);
    b = "{\"prompt\":\"\",\"max_tokens\":101}";
    cr_expect_eq(srv_parse_generate(b, strlen(b), &lim, 1, &r, &err), ATTND_EINVAL);
    cr_expect_str_eq(err.msg, "max_tokens must be between 1 and 100");
}

Test(generate, duplicate_keys_first_wins)
{
    srv_gen_req r = gen_ok("{\"prompt\":\"one\",\"prompt\":\"two\"}");
    cr_expect_str_eq(r.prompt, "one");
    srv_gen_req_free(&r);
}

Test(generate, whitespace_around)
{
    srv_gen_req r = gen_ok(" \t\r\n{ \"prompt\" : \"a\" , \"stream\" : false } \n\r\t ");
    cr_expect_str_eq(r.prompt, "a");
    srv_gen_req_free(&r);
}

Test(generate, body_not_nul_terminated)
{
    const char buf[] = "{\"prompt\":\"abc\"}GARBAGE-NOT-PART-OF-THE-BODY";
    srv_gen_req r;
    attnd_err err = {0};
    cr_assert_eq(srv_parse_generate(buf, 16, &LIM, 1, &r, &err), ATTND_OK, "%s", err.msg);
    cr_expect_str_eq(r.prompt, "abc");
    srv_gen_req_free(&r);
}

/* ---- /generate: the prompt ---------------------------------------------- */

Test(prompt, types)
{
    gen_err("{}", "prompt is required");
    gen_err("{\"prompt\":5}", "prompt must be a string");
    gen_err("{\"prompt\":true}", "prompt must be a string");
    gen_err("{\"prompt\":[\"a\", \"b\"]}", "prompt must be a string or an array of token ids (prompt[0])");
    gen_err("{\"prompt\":[1, 2.5]}", "prompt must be a string or an array of token ids (prompt[1])");
    gen_err("{\"prompt\":[]}", "prompt must be a string or an array of token ids");
    /* found by fuzz_request: a huge id must not reach a cast to int32 */
    gen_err("{\"prompt\":[1E22,3]}", "prompt must be a string or an array of token ids (prompt[0])");
    gen_err("{\"prompt\":{\"a\":\"b\"}}", "prompt must be a string");
}

/* Token ids are taken as they are (range-checked against the model later). */
Test(prompt, token_ids)
{
    srv_gen_req r = gen_ok("{\"prompt\":[1, 388, 355]}");
    cr_assert_eq(r.n_prompt_ids, 3u);
    cr_expect(r.prompt_ids[0] == 1 && r.prompt_ids[2] == 355);
    srv_gen_req_free(&r);
    r = gen_ok("{\"prompt\":[\"one string\"]}");
    cr_expect_str_eq(r.prompt, "one string");
    srv_gen_req_free(&r);
}

Test(prompt, empty_ok)
{
    srv_gen_req r = gen_ok("{\"prompt\":\"\"}");
    cr_expect_str_eq(r.prompt, "");
    cr_expect_eq(r.prompt_len, 0);
    srv_gen_req_free(&r);
}

Test(prompt, escapes_and_multibyte)
{
    srv_gen_req r = gen_ok("{\"prompt\":\"a\\\"b\\\\c\\n\\u00e9\\u20ac\\ud83d\\ude00\xc3\xa9\"}");
    cr_expect_str_eq(r.prompt, "a\"b\\c\n\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xc3\xa9");
    cr_expect_eq(r.prompt_len, strlen(r.prompt));
    srv_gen_req_free(&r);
    /* An escaped backslash followed by u0000 is text, not a NUL. */
    r = gen_ok("{\"prompt\":\"\\\\u0000\"}");
    cr_expect_str_eq(r.prompt, "\\u0000");
    srv_gen_req_free(&r);
}

Test(prompt, invalid_utf8)
{
    const char *bad[] = {
        "\xff",             /* never valid */
        ("a\xfe" "b"),      /* never valid (split: \xfeb would be one escape) */
        "\xc0\xaf",         /* overlong '/' */
        "\xe0\x80\xaf",     /* overlong '/' */
        "\xed\xa0\x80",     /* raw surrogate U+D800 */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\xe2\x82",         /* truncated */
        "\x80",             /* lone continuation */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char body[64];
        snprintf(body, sizeof body, "{\"prompt\":\"%s\"}", bad[i]);
        gen_err(body, "prompt is not valid UTF-8");
    }
}

/* cJSON refuses a lone UTF-16 surrogate escape outright. */
Test(prompt, lone_surrogate_escape)
{
    gen_err("{\"prompt\":\"\\ud800\"}", "request body is not valid JSON");
    gen_err("{\"prompt\":\"\\udc00\"}", "request body is not valid JSON");
    gen_err("{\"prompt\":\"\\ud800\\u0041\"}", "request body is not valid JSON");
    gen_err("{\"prompt\":\"\\ud800x\"}", "request body is not valid JSON");
}

Test(prompt, nul)
{
    gen_err("{\"prompt\":\"a\\u0000b\"}", "prompt must not contain NUL");
    gen_err("{\"prompt\":\"\\u0000\"}", "prompt must not contain NUL");
    gen_err("{\"x\":\"\\\\\",\"prompt\":\"\\\\\\u0000\"}", "prompt must not contain NUL");
    /* The key would otherwise be read as "prompt". */
    gen_err("{\"prompt\\u0000x\":\"a\"}", "request field names must not contain NUL");
    gen_err("{\"a\":1,\"\\u0000\":\"a\",\"prompt\":\"b\"}",
            "request field names must not contain NUL");
    /* A raw NUL byte is not JSON. */
    gen_err_n("{\"prompt\":\"a\0b\"}", 16, "request body is not valid JSON");
    gen_err_n("{\"prompt\":\"ab\"}\0", 16, "request body is not valid JSON");
}

/* ---- /generate: numbers -------------------------------------------------- */

Test(max_tokens, rules)
{
    const char *t = "max_tokens must be an integer";
    const char *r = "max_tokens must be between 1 and 4096";
    field_err("max_tokens", "\"5\"", t);
    field_err("max_tokens", "true", t);
    field_err("max_tokens", "[5]", t);
    field_err("max_tokens", "{}", t);
    field_err("max_tokens", "3.5", t);
    field_err("max_tokens", "1.0000001", t);
    field_err("max_tokens", "0", r);
    field_err("max_tokens", "-0", r);
    field_err("max_tokens", "-1", r);
    field_err("max_tokens", "4097", r);
    field_err("max_tokens", "1e300", r);
    field_err("max_tokens", "-1e300", r);
    field_err("max_tokens", "1e5000", r); /* cJSON makes this +inf */
    field_err("max_tokens", "-1e5000", r);
    field_err("max_tokens", "18446744073709551617", r);
    srv_gen_req q = field_ok("max_tokens", "1");
    cr_expect_eq(q.max_tokens, 1);
    srv_gen_req_free(&q);
    q = field_ok("max_tokens", "4096");
    cr_expect_eq(q.max_tokens, 4096);
    srv_gen_req_free(&q);
    q = field_ok("max_tokens", "3.0");
    cr_expect_eq(q.max_tokens, 3);
    srv_gen_req_free(&q);
    q = field_ok("max_tokens", "1e2");
    cr_expect_eq(q.max_tokens, 100);
    srv_gen_req_free(&q);
}

Test(temperature, rules)
{
    const char *m = "temperature must be a number >= 0";
    field_err("temperature", "\"0.5\"", m);
    field_err("temperature", "false", m);
    field_err("temperature", "[]", m);
    field_err("temperature", "-0.1", m);
    field_err("temperature", "-1e-300", m);
    field_err("temperature", "-1e5000", m);
    field_err("temperature", "1e300", "temperature must be at most 3.40282e+38");
    field_err("temperature", "1e5000", "temperature must be at most 3.40282e+38");
    srv_gen_req q = field_ok("temperature", "0");
    cr_expect_eq(q.sample.temperature, 0.0f);
    srv_gen_req_free(&q);
    q = field_ok("temperature", "-0");
    cr_expect_eq(q.sample.temperature, 0.0f);
    cr_expect_not(signbit(q.sample.temperature));
    srv_gen_req_free(&q);
    q = field_ok("temperature", "2");
    cr_expect_eq(q.sample.temperature, 2.0f);
    srv_gen_req_free(&q);
    q = field_ok("temperature", "1e38");
    cr_expect(isfinite(q.sample.temperature));
    srv_gen_req_free(&q);
}

Test(top_k, rules)
{
    field_err("top_k", "\"4\"", "top_k must be an integer");
    field_err("top_k", "1.5", "top_k must be an integer");
    field_err("top_k", "-1", "top_k must be between 0 and 2147483647");
    field_err("top_k", "2147483648", "top_k must be between 0 and 2147483647");
    field_err("top_k", "1e300", "top_k must be between 0 and 2147483647");
    srv_gen_req q = field_ok("top_k", "0");
    cr_expect_eq(q.sample.top_k, 0);
    srv_gen_req_free(&q);
    q = field_ok("top_k", "2147483647");
    cr_expect_eq(q.sample.top_k, INT32_MAX);
    srv_gen_req_free(&q);
}

Test(top_p, rules)
{
    const char *m = "top_p must be in (0, 1]";
    field_err("top_p", "\"1\"", m);
    field_err("top_p", "null2", "request body is not valid JSON");
    field_err("top_p", "0", m);
    field_err("top_p", "-0", m);
    field_err("top_p", "-0.5", m);
    field_err("top_p", "1.0000001", m);
    field_err("top_p", "1e300", m);
    field_err("top_p", "1e5000", m);
    field_err("top_p", "1e-300", m); /* > 0, but 0 as a float */
    srv_gen_req q = field_ok("top_p", "1");
    cr_expect_eq(q.sample.top_p, 1.0f);
    srv_gen_req_free(&q);
    q = field_ok("top_p", "1e-30");
    cr_expect_gt(q.sample.top_p, 0.0f);
    srv_gen_req_free(&q);
}

Test(min_p, rules)
{
    const char *m = "min_p must be in [0, 1]";
    field_err("min_p", "true", m);
    field_err("min_p", "-0.01", m);
    field_err("min_p", "1.01", m);
    field_err("min_p", "1e300", m);
    srv_gen_req q = field_ok("min_p", "0");
    cr_expect_eq(q.sample.min_p, 0.0f);
    srv_gen_req_free(&q);
    q = field_ok("min_p", "1");
    cr_expect_eq(q.sample.min_p, 1.0f);
    srv_gen_req_free(&q);
}

Test(repeat_penalty, rules)
{
    const char *m = "repeat_penalty must be a number > 0";
    field_err("repeat_penalty", "\"1.1\"", m);
    field_err("repeat_penalty", "0", m);
    field_err("repeat_penalty", "-1", m);
    field_err("repeat_penalty", "1e-300", m);
    field_err("repeat_penalty", "1e300", "repeat_penalty must be at most 3.40282e+38");
    srv_gen_req q = field_ok("repeat_penalty", "1.1");
    cr_expect_float_eq(q.sample.repeat_penalty, 1.1f, 1e-7);
    srv_gen_req_free(&q);
}

Test(repeat_last_n, rules)
{
    field_err("repeat_last_n", "\"1\"", "repeat_last_n must be an integer");
    field_err("repeat_last_n", "2.5", "repeat_last_n must be an integer");
    field_err("repeat_last_n", "-1", "repeat_last_n must be between 0 and 1048576");
    field_err("repeat_last_n", "1048577", "repeat_last_n must be between 0 and 1048576");
    srv_gen_req q = field_ok("repeat_last_n", "0");
    cr_expect_eq(q.sample.repeat_last_n, 0);
    srv_gen_req_free(&q);
    q = field_ok("repeat_last_n", "1048576");
    cr_expect_eq(q.sample.repeat_last_n, 1048576);
    srv_gen_req_free(&q);
}

Test(seed, rules)
{
    const char *r = "seed must be between 0 and 9007199254740991";
    field_err("seed", "\"1\"", "seed must be an integer");
    field_err("seed", "0.5", "seed must be an integer");
    field_err("seed", "-1", r);
    field_err("seed", "9007199254740992", r);
    field_err("seed", "9007199254740993", r); /* 2^53 + 1: rounds to 2^53 */
    field_err("seed", "1e300", r);
    field_err("seed", "18446744073709551616", r);
    srv_gen_req q = field_ok("seed", "0");
    cr_expect_eq(q.sample.seed, 0);
    cr_expect(q.seed_given);
    srv_gen_req_free(&q);
    q = field_ok("seed", "-0");
    cr_expect_eq(q.sample.seed, 0);
    srv_gen_req_free(&q);
    q = field_ok("seed", "9007199254740991");
    cr_expect_eq(q.sample.seed, 9007199254740991ULL);
    srv_gen_req_free(&q);
}

Test(booleans, rules)
{
    field_err("stream", "1", "stream must be a boolean");
    field_err("stream", "\"true\"", "stream must be a boolean");
    field_err("stream", "[]", "stream must be a boolean");
    field_err("ignore_eos", "0", "ignore_eos must be a boolean");
    field_err("ignore_eos", "\"false\"", "ignore_eos must be a boolean");
    srv_gen_req q = field_ok("stream", "false");
    cr_expect_not(q.stream);
    srv_gen_req_free(&q);
    q = field_ok("ignore_eos", "false");
    cr_expect_not(q.ignore_eos);
    cr_expect_not(q.sample.ignore_eos);
    srv_gen_req_free(&q);
}

/* ---- /generate: stop ----------------------------------------------------- */

Test(stop, forms)
{
    srv_gen_req q = field_ok("stop", "\"###\"");
    cr_assert_eq(q.n_stop, 1);
    cr_expect_str_eq(q.stop[0], "###");
    cr_expect_eq(q.stop_len[0], 3);
    srv_gen_req_free(&q);
    q = field_ok("stop", "[]");
    cr_expect_eq(q.n_stop, 0);
    srv_gen_req_free(&q);
    q = field_ok("stop", "[\"\\u20ac\",\"a\"]");
    cr_assert_eq(q.n_stop, 2);
    cr_expect_str_eq(q.stop[0], "\xe2\x82\xac");
    cr_expect_eq(q.stop_len[0], 3);
    srv_gen_req_free(&q);
}

Test(stop, wrong)
{
    const char *t = "stop must be a string or an array of strings";
    field_err("stop", "5", t);
    field_err("stop", "true", t);
    field_err("stop", "{\"a\":\"b\"}", t);
    field_err("stop", "\"\"", "stop must be a non-empty string of at most 256 bytes");
    field_err("stop", "[\"a\",\"b\",5]", "stop[2] must be a non-empty string of at most 256 bytes");
    field_err("stop", "[\"a\",\"\"]", "stop[1] must be a non-empty string of at most 256 bytes");
    field_err("stop", "[null]", "stop[0] must be a non-empty string of at most 256 bytes");
    field_err("stop", "[[\"a\"]]", "stop[0] must be a non-empty string of at most 256 bytes");
    field_err("stop", "[\"a\",\"\xff\"]", "stop[1] is not valid UTF-8");
    field_err("stop", "\"\xc3\"", "stop is not valid UTF-8");
    field_err("stop", "\"a\\u0000\"", "stop must not contain NUL");
    field_err("stop", "[\"a\",\"\\u0000\"]", "stop must not contain NUL");
}

Test(stop, limits)
{
    char s[300], body[1200];
    memset(s, 'x', 256);
    s[256] = '\0';
    snprintf(body, sizeof body, "[\"%s\"]", s);
    srv_gen_req q = field_ok("stop", body);
    cr_expect_eq(q.stop_len[0], 256);
    srv_gen_req_free(&q);
    snprintf(body, sizeof body, "\"x%s\"", s);
    field_err("stop", body, "stop must be a non-empty string of at most 256 bytes");
    /* The limit is in bytes, after unescaping: 85 euro signs are 255, 86 are 258. */
    body[0] = '"';
    size_t o = 1;
    for (int i = 0; i < 86; i++)
        o += (size_t)snprintf(body + o, sizeof body - o, "\\u20ac");
    snprintf(body + o, sizeof body - o, "\"");
    field_err("stop", body, "stop must be a non-empty string of at most 256 bytes");
    snprintf(body + o - 6, sizeof body - o + 6, "\"");
    q = field_ok("stop", body);
    cr_expect_eq(q.stop_len[0], 255);
    srv_gen_req_free(&q);
    /* 16 strings are fine, 17 are not. */
    o = (size_t)snprintf(body, sizeof body, "[");
    for (int i = 0; i < 17; i++)
        o += (size_t)snprintf(body + o, sizeof body - o, "%s\"s%d\"", i ? "," : "", i);
    snprintf(body + o, sizeof body - o, "]");
    field_err("stop", body, "stop has more than 16 strings");
    char *cut = strstr(body, ",\"s16\"");
    cr_assert_not_null(cut);
    strcpy(cut, "]");
    q = field_ok("stop", body);
    cr_expect_eq(q.n_stop, 16);
    cr_expect_str_eq(q.stop[15], "s15");
    srv_gen_req_free(&q);
}

/* ---- malformed bodies ---------------------------------------------------- */

Test(body, not_an_object)
{
    const char *m = "request body must be a JSON object";
    gen_err("[]", m);
    gen_err("[{\"prompt\":\"a\"}]", m);
    gen_err("\"prompt\"", m);
    gen_err("42", m);
    gen_err("null", m);
    gen_err("true", m);
}

Test(body, not_json)
{
    const char *m = "request body is not valid JSON";
    gen_err_n("", 0, "request body is empty");
    gen_err(" ", m);
    gen_err(" \n\t\r ", m);
    gen_err("{", m);
    gen_err("}", m);
    gen_err("{\"prompt\":\"a\",}", m);
    gen_err("{\"prompt\":\"a\" \"x\":1}", m);
    gen_err("{\"prompt\":'a'}", m);
    gen_err("{prompt:\"a\"}", m);
    gen_err("{\"prompt\":\"a\",\"x\":[[[[", m);
    gen_err("{\"prompt\":\"a\",\"x\":tru}", m);
    gen_err("{\"prompt\":\"a\",\"x\":NaN}", m);
    gen_err("{\"prompt\":\"a\",\"x\":.5}", m);
    gen_err("{\"prompt\":\"a\\x\"}", m);
    gen_err("{\"prompt\":\"a\\", m);
    gen_err("{\"prompt\":\"a\\u12\"}", m);
}

Test(body, trailing_data)
{
    const char *m = "request body is not valid JSON (unexpected data after the value)";
    gen_err("{\"prompt\":\"a\"}x", m);
    gen_err("{\"prompt\":\"a\"} {}", m);
    gen_err("{\"prompt\":\"a\"}}", m);
    gen_err("{\"prompt\":\"a\"},", m);
    gen_err("{\"prompt\":\"a\"}\x0b", m);
    gen_err("{} 1", m);
}

/* cJSON's own nesting limit turns this into a parse error, not a deep recursion. */
Test(body, deep_nesting)
{
    size_t depth = 100000;
    char *b = malloc(2 * depth + 64);
    cr_assert_not_null(b);
    size_t o = (size_t)sprintf(b, "{\"prompt\":\"a\",\"x\":");
    memset(b + o, '[', depth);
    memset(b + o + depth, ']', depth);
    o += 2 * depth;
    b[o++] = '}';
    gen_err_n(b, o, "request body is not valid JSON");
    free(b);
}

static const char *FULL =
    "{\"prompt\":\"h\\u00e9llo \xe2\x82\xac\",\"max_tokens\":12,\"temperature\":0.7,\"top_k\":5,"
    "\"top_p\":0.5,\"min_p\":0.01,\"repeat_penalty\":1.1,\"repeat_last_n\":8,\"seed\":99,"
    "\"stop\":[\"\\n\\n\",\"x\"],\"ignore_eos\":false,\"stream\":true,\"extra\":{\"a\":[1,null]}}";

Test(body, every_truncation_rejected)
{
    size_t n = strlen(FULL);
    srv_gen_req r = gen_ok(FULL);
    srv_gen_req_free(&r);
    for (size_t cut = 0; cut < n; cut++)
        gen_err_n(FULL, cut, NULL);
}

/* Every single-byte change either parses or fails cleanly (run under ASan). */
Test(body, every_byte_mutated)
{
    size_t n = strlen(FULL);
    char *b = malloc(n);
    cr_assert_not_null(b);
    const unsigned char subst[] = {0, '"', '\\', '{', '}', '[', ']', ',', ':', '0', 0xff, 0x80, 'u'};
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < sizeof subst; k++) {
            memcpy(b, FULL, n);
            b[i] = (char)subst[k];
            srv_gen_req r;
            attnd_err err = {0};
            int rc = srv_parse_generate(b, n, &LIM, 1, &r, &err);
            cr_assert(rc == ATTND_OK || rc == ATTND_EINVAL);
            if (rc == ATTND_OK) {
                cr_assert_not_null(r.prompt);
                cr_assert(attnd_utf8_valid(r.prompt, r.prompt_len));
                cr_assert_eq(strlen(r.prompt), r.prompt_len);
            } else {
                cr_assert_neq(err.msg[0], '\0');
            }
            srv_gen_req_free(&r);
        }
    free(b);
}

/* ---- /tokenize ------------------------------------------------------------ */

static int tok_n(const char *body, size_t len, char **text, size_t *n, attnd_err *err)
{
    char *copy = malloc(len ? len : 1);
    cr_assert_not_null(copy);
    memcpy(copy, body, len);
    unsigned flags;
    int rc = srv_parse_tokenize(copy, len, text, n, &flags, err);
    free(copy);
    return rc;
}

static void tok_err(const char *body, const char *want)
{
    char *text = (char *)"sentinel";
    size_t n = 7;
    attnd_err err = {0};
    cr_expect_eq(tok_n(body, strlen(body), &text, &n, &err), ATTND_EINVAL, "%s", body);
    cr_expect_str_eq(err.msg, want, "%s", body);
    cr_expect_null(text);
}

Test(tokenize, ok)
{
    char *text = NULL;
    size_t n = 0;
    attnd_err err = {0};
    const char *b = "{\"text\":\"a\\u20acb\",\"add_bos\":true}";
    cr_assert_eq(tok_n(b, strlen(b), &text, &n, &err), ATTND_OK, "%s", err.msg);
    cr_expect_str_eq(text, "a\xe2\x82\xac" "b");
    cr_expect_eq(n, 5);
    free(text);
    b = "{\"text\":\"\"}";
    cr_assert_eq(tok_n(b, strlen(b), &text, &n, &err), ATTND_OK, "%s", err.msg);
    cr_expect_str_eq(text, "");
    cr_expect_eq(n, 0);
    free(text);
}

Test(tokenize, errors)
{
    tok_err("{}", "text is required");
    tok_err("{\"text\":null}", "text is required");
    tok_err("{\"text\":1}", "text must be a string");
    tok_err("{\"text\":[\"a\"]}", "text must be a string");
    tok_err("{\"text\":\"\xff\"}", "text is not valid UTF-8");
    tok_err("{\"text\":\"a\\u0000\"}", "text must not contain NUL");
    tok_err("{\"text\\u0000\":\"a\"}", "request field names must not contain NUL");
    tok_err("[\"text\"]", "request body must be a JSON object");
    tok_err("{\"text\":\"a\"} x", "request body is not valid JSON (unexpected data after the value)");
    tok_err("{\"text\":\"a\"", "request body is not valid JSON");
    char *text = (char *)"sentinel";
    size_t n = 7;
    cr_expect_eq(tok_n("", 0, &text, &n, NULL), ATTND_EINVAL);
    cr_expect_null(text);
}

/* ---- /detokenize ---------------------------------------------------------- */

static int detok(const char *body, int32_t n_vocab, int32_t **ids, size_t *n, attnd_err *err)
{
    size_t len = strlen(body);
    char *copy = malloc(len ? len : 1);
    cr_assert_not_null(copy);
    memcpy(copy, body, len);
    int rc = srv_parse_detokenize(copy, len, n_vocab, ids, n, err);
    free(copy);
    return rc;
}

static void detok_err(const char *body, const char *want)
{
    static int32_t dummy;
    int32_t *ids = &dummy;
    size_t n = 7;
    attnd_err err = {0};
    cr_expect_eq(detok(body, 32000, &ids, &n, &err), ATTND_EINVAL, "%s", body);
    cr_expect_str_eq(err.msg, want, "%s", body);
    cr_expect_null(ids);
    cr_expect_eq(n, 0);
}

Test(detokenize, ok)
{
    int32_t *ids = NULL;
    size_t n = 9;
    attnd_err err = {0};
    cr_assert_eq(detok("{\"tokens\":[0,1,31999,5.0,-0]}", 32000, &ids, &n, &err), ATTND_OK,
                 "%s", err.msg);
    cr_assert_eq(n, 5);
    int32_t want[] = {0, 1, 31999, 5, 0};
    for (size_t i = 0; i < n; i++)
        cr_expect_eq(ids[i], want[i]);
    free(ids);
    cr_assert_eq(detok("{\"tokens\":[]}", 32000, &ids, &n, &err), ATTND_OK, "%s", err.msg);
    cr_expect_eq(n, 0);
    cr_expect_not_null(ids);
    free(ids);
}

Test(detokenize, errors)
{
    detok_err("{}", "tokens is required");
    detok_err("{\"tokens\":null}", "tokens is required");
    detok_err("{\"tokens\":5}", "tokens must be an array of integers");
    detok_err("{\"tokens\":\"1 2\"}", "tokens must be an array of integers");
    detok_err("{\"tokens\":{\"0\":1}}", "tokens must be an array of integers");
    const char *m3 = "tokens[3] must be an integer between 0 and 31999";
    detok_err("{\"tokens\":[1,2,3,32000]}", m3);
    detok_err("{\"tokens\":[1,2,3,-1]}", m3);
    detok_err("{\"tokens\":[1,2,3,1.5]}", m3);
    detok_err("{\"tokens\":[1,2,3,\"4\"]}", m3);
    detok_err("{\"tokens\":[1,2,3,null]}", m3);
    detok_err("{\"tokens\":[1,2,3,[4]]}", m3);
    detok_err("{\"tokens\":[1,2,3,true]}", m3);
    detok_err("{\"tokens\":[1,2,3,1e300]}", m3);
    detok_err("{\"tokens\":[1,2,3,-1e5000]}", m3);
    detok_err("{\"tokens\":[1,2,3]}]", "request body is not valid JSON (unexpected data after the value)");
    detok_err("[1,2]", "request body must be a JSON object");
}

Test(detokenize, small_vocab)
{
    int32_t *ids = NULL;
    size_t n = 0;
    attnd_err err = {0};
    cr_expect_eq(detok("{\"tokens\":[0]}", 1, &ids, &n, &err), ATTND_OK);
    free(ids);
    ids = NULL;
    cr_expect_eq(detok("{\"tokens\":[1]}", 1, &ids, &n, &err), ATTND_EINVAL);
    cr_expect_str_eq(err.msg, "tokens[0] must be an integer between 0 and 0");
    cr_expect_eq(detok("{\"tokens\":[0]}", 0, &ids, &n, &err), ATTND_EINVAL);
    cr_expect_eq(detok("{\"tokens\":[]}", 0, &ids, &n, &err), ATTND_OK);
    free(ids);
}

/* ---- error JSON ----------------------------------------------------------- */

static void expect_error_json(const char *type, const char *msg, const char *want_type,
                              const char *want_msg)
{
    char *s = srv_error_json(type, msg);
    cr_assert_not_null(s);
    cr_expect(attnd_utf8_valid(s, strlen(s)), "%s", s);
    cJSON *j = cJSON_Parse(s);
    cr_assert_not_null(j, "%s", s);
    cr_assert_eq(cJSON_GetArraySize(j), 1);
    cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    cr_assert(cJSON_IsObject(e));
    cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "type");
    cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
    cr_assert(cJSON_IsString(t) && cJSON_IsString(m));
    cr_expect_str_eq(t->valuestring, want_type);
    cr_expect_str_eq(m->valuestring, want_msg);
    cJSON_Delete(j);
    free(s);
}

Test(error_json, escaping)
{
    expect_error_json("invalid_request", "prompt is required", "invalid_request",
                      "prompt is required");
    const char *nasty = "a \"quoted\" \\ back\nnew\ttab\x01\x1f </script> \xe2\x82\xac";
    expect_error_json("t\"y", nasty, "t\"y", nasty);
    char *s = srv_error_json("x", "q\"");
    cr_expect_str_eq(s, "{\"error\":{\"message\":\"q\\\"\",\"type\":\"x\",\"param\":null,\"code\":null}}");
    free(s);
}

Test(error_json, bad_utf8_and_null)
{
    expect_error_json("x", "a\xff" "b\xe2\x82", "x", "a\xef\xbf\xbd" "b\xef\xbf\xbd");
    expect_error_json(NULL, NULL, "error", "");
}

/* ---- stop matcher --------------------------------------------------------- */

typedef struct {
    char out[4096];
    size_t out_len;
    bool stopped;
} run_result;

/* Feeds each of FEEDS (NULL-terminated) and flushes unless stopped. */
static run_result run(const char *const *stops, const char *const *feeds)
{
    char *sv[SRV_MAX_STOP];
    size_t sl[SRV_MAX_STOP];
    size_t n = 0;
    for (; stops[n]; n++) {
        sv[n] = (char *)stops[n];
        sl[n] = strlen(stops[n]);
    }
    srv_stop *s = srv_stop_new(sv, sl, n);
    cr_assert_not_null(s);
    run_result r = {.out_len = 0};
    for (size_t i = 0; feeds[i]; i++) {
        const char *e = NULL;
        size_t el = 99;
        bool st = false;
        cr_assert_eq(srv_stop_feed(s, feeds[i], strlen(feeds[i]), &e, &el, &st), ATTND_OK);
        cr_assert_not_null(e);
        cr_assert(!r.stopped || el == 0, "emitted after the stop");
        memcpy(r.out + r.out_len, e, el);
        r.out_len += el;
        r.stopped = st;
    }
    if (!r.stopped) {
        const char *e = NULL;
        size_t el = 99;
        srv_stop_flush(s, &e, &el);
        cr_assert_not_null(e);
        memcpy(r.out + r.out_len, e, el);
        r.out_len += el;
    }
    r.out[r.out_len] = '\0';
    srv_stop_free(s);
    return r;
}

#define STOPS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define FEEDS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void expect_run(const char *const *stops, const char *const *feeds, const char *want,
                       bool stopped)
{
    run_result r = run(stops, feeds);
    cr_expect_str_eq(r.out, want);
    cr_expect_eq(r.stopped, stopped, "stopped %d, want %d (out \"%s\")", r.stopped, stopped,
                 r.out);
}

Test(stop_match, basic)
{
    expect_run(STOPS("END"), FEEDS("abcENDdef"), "abc", true);
    expect_run(STOPS("END"), FEEDS("abcE", "NDdef"), "abc", true);
    expect_run(STOPS("END"), FEEDS("ab", "cE", "N", "Dx", "more"), "abc", true);
    expect_run(STOPS("END"), FEEDS("E", "N", "D"), "", true);
    expect_run(STOPS("END"), FEEDS("ENDabc"), "", true);
    expect_run(STOPS("END"), FEEDS("abc", "END"), "abc", true);
    expect_run(STOPS("END"), FEEDS("abc", "EN", "d"), "abcENd", false);
    expect_run(STOPS("END"), FEEDS("abcEN"), "abcEN", false); /* flushed at the end */
    expect_run(STOPS("END"), FEEDS(""), "", false);
    expect_run(STOPS("\n"), FEEDS("line one", "\n", "two"), "line one", true);
}

Test(stop_match, held_back_only_while_possible)
{
    char *sv[] = {(char *)"END"};
    size_t sl[] = {3};
    srv_stop *s = srv_stop_new(sv, sl, 1);
    cr_assert_not_null(s);
    const char *e;
    size_t el;
    bool st;
    srv_stop_feed(s, "abcE", 4, &e, &el, &st);
    cr_expect_eq(el, 3);
    cr_expect_eq(memcmp(e, "abc", 3), 0);
    srv_stop_feed(s, "N", 1, &e, &el, &st);
    cr_expect_eq(el, 0);
    srv_stop_feed(s, "x", 1, &e, &el, &st);
    cr_expect_eq(el, 3);
    cr_expect_eq(memcmp(e, "ENx", 3), 0);
    cr_expect_not(st);
    /* A NULL, empty feed is allowed. */
    cr_expect_eq(srv_stop_feed(s, NULL, 0, &e, &el, &st), ATTND_OK);
    cr_expect_eq(el, 0);
    srv_stop_feed(s, "EN", 2, &e, &el, &st);
    cr_expect_eq(el, 0);
    srv_stop_flush(s, &e, &el);
    cr_expect_eq(el, 2);
    cr_expect_eq(memcmp(e, "EN", 2), 0);
    srv_stop_flush(s, &e, &el);
    cr_expect_eq(el, 0);
    srv_stop_free(s);
}

Test(stop_match, overlapping)
{
    expect_run(STOPS("abc"), FEEDS("ab", "ab", "c"), "ab", true);
    expect_run(STOPS("abc"), FEEDS("a", "b", "a", "b", "c"), "ab", true);
    expect_run(STOPS("abc"), FEEDS("abab", "abd"), "ababab" "d", false);
    expect_run(STOPS("aab"), FEEDS("a", "a", "a", "b"), "a", true);
    expect_run(STOPS("aaa"), FEEDS("aa", "b", "aa", "a"), "aab", true);
}

Test(stop_match, several)
{
    expect_run(STOPS("xyz", "bc"), FEEDS("abcxyz"), "a", true);
    expect_run(STOPS("bc", "xyz"), FEEDS("axyzbc"), "a", true);
    expect_run(STOPS("xyz", "bc"), FEEDS("a", "xy", "bc"), "axy", true);
    /* The stop that is complete first wins, whatever the cutting. */
    expect_run(STOPS("abcd", "bc"), FEEDS("abcd"), "a", true);
    expect_run(STOPS("abcd", "bc"), FEEDS("abc", "d"), "a", true);
    /* Complete at the same place: the longer one, so less is emitted. */
    expect_run(STOPS("bc", "abc"), FEEDS("xab", "c"), "x", true);
    expect_run(STOPS("abc", "bc"), FEEDS("xabc"), "x", true);
}

Test(stop_match, no_stops_and_empty_stops)
{
    char *sv[] = {(char *)""};
    size_t sl[] = {0};
    srv_stop *s = srv_stop_new(sv, sl, 1); /* an empty stop string is ignored */
    cr_assert_not_null(s);
    const char *e;
    size_t el;
    bool st;
    srv_stop_feed(s, "hello", 5, &e, &el, &st);
    cr_expect_eq(el, 5);
    cr_expect_not(st);
    srv_stop_free(s);
    s = srv_stop_new(NULL, NULL, 0);
    cr_assert_not_null(s);
    srv_stop_feed(s, "x", 1, &e, &el, &st);
    cr_expect_eq(el, 1);
    srv_stop_free(s);
}

Test(stop_match, copies_strings)
{
    char word[] = "END";
    char *sv[] = {word};
    size_t sl[] = {3};
    srv_stop *s = srv_stop_new(sv, sl, 1);
    cr_assert_not_null(s);
    strcpy(word, "xyz");
    const char *e;
    size_t el;
    bool st;
    srv_stop_feed(s, "xyzEND", 6, &e, &el, &st);
    cr_expect(st);
    cr_expect_eq(el, 3);
    /* Once stopped, nothing more is emitted. */
    srv_stop_feed(s, "more", 4, &e, &el, &st);
    cr_expect(st);
    cr_expect_eq(el, 0);
    srv_stop_flush(s, &e, &el);
    cr_expect_eq(el, 0);
    srv_stop_free(s);
}

Test(stop_match, utf8)
{
    /* "–" (E2 80 93) and "…" (E2 80 A6) share their first two bytes. */
    expect_run(STOPS("\xe2\x80\x93"), FEEDS("a\xe2\x80\xa6", "b\xe2\x80\x93", "c"),
               "a\xe2\x80\xa6" "b", true);
    expect_run(STOPS("\xc3\xa9t\xc3\xa9"), FEEDS("\xc3\xa9", "t", "\xc3\xa9"), "", true);
    expect_run(STOPS("\xc3\xa9t\xc3\xa9"), FEEDS("\xc3\xa9", "t", "\xc3\xa8"),
               "\xc3\xa9t\xc3\xa8", false);
    expect_run(STOPS("\xf0\x9f\x98\x80"), FEEDS("x\xf0\x9f\x98\x81\xf0\x9f\x98\x80"),
               "x\xf0\x9f\x98\x81", true);
}

/* A feeder that splits characters still never gets half a character back. */
Test(stop_match, split_characters_held)
{
    srv_stop *s = srv_stop_new(NULL, NULL, 0);
    cr_assert_not_null(s);
    const char *e;
    size_t el;
    bool st;
    srv_stop_feed(s, "a\xe2", 2, &e, &el, &st);
    cr_expect_eq(el, 1);
    srv_stop_feed(s, "\x82", 1, &e, &el, &st);
    cr_expect_eq(el, 0);
    srv_stop_feed(s, "\xac" "b", 2, &e, &el, &st);
    cr_expect_eq(el, 4);
    cr_expect_eq(memcmp(e, "\xe2\x82\xac" "b", 4), 0);
    /* Bytes that can never complete a character are not held forever. */
    srv_stop_feed(s, "\xe2" "x", 2, &e, &el, &st);
    cr_expect_eq(el, 2);
    srv_stop_feed(s, "\xf0\x9f", 2, &e, &el, &st);
    cr_expect_eq(el, 0);
    srv_stop_flush(s, &e, &el);
    cr_expect_eq(el, 2); /* the end of generation releases whatever is left */
    srv_stop_free(s);
}

/* ---- stop matcher: random feeds against a whole-text reference ------------ */

static uint64_t rng_next(uint64_t *st)
{
    *st += 0x9e3779b97f4a7c15ULL;
    uint64_t z = *st;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static size_t rng_below(uint64_t *st, size_t n)
{
    return (size_t)(rng_next(st) % n);
}

/* What should come out of TEXT: everything before the stop string that is
 * complete first (the longest of those complete at the same byte). */
static size_t reference(const char *text, size_t len, char **stops, const size_t *sl, size_t n,
                        bool *stopped)
{
    for (size_t end = 1; end <= len; end++) {
        size_t best = len;
        for (size_t k = 0; k < n; k++)
            if (sl[k] <= end && memcmp(text + end - sl[k], stops[k], sl[k]) == 0 &&
                end - sl[k] < best)
                best = end - sl[k];
        if (best < len) {
            *stopped = true;
            return best;
        }
    }
    *stopped = false;
    return len;
}

/* Characters (alphabet entries) are whole; feeds are runs of them. */
static void property(const char *const *alpha, size_t n_alpha, uint64_t seed, int trials)
{
    uint64_t st = seed;
    for (int trial = 0; trial < trials; trial++) {
        char text[512];
        size_t tlen = 0, n_chars = rng_below(&st, 40);
        size_t bounds[512], n_bounds = 0; /* character starts */
        for (size_t i = 0; i < n_chars; i++) {
            const char *c = alpha[rng_below(&st, n_alpha)];
            bounds[n_bounds++] = tlen;
            memcpy(text + tlen, c, strlen(c));
            tlen += strlen(c);
        }
        char stop_buf[4][32];
        char *stops[4];
        size_t sl[4], n_stop = 1 + rng_below(&st, 4), max_sl = 0;
        for (size_t k = 0; k < n_stop; k++) {
            size_t m = 1 + rng_below(&st, 4), o = 0;
            for (size_t i = 0; i < m; i++) {
                const char *c = alpha[rng_below(&st, n_alpha)];
                memcpy(stop_buf[k] + o, c, strlen(c));
                o += strlen(c);
            }
            stops[k] = stop_buf[k];
            sl[k] = o;
            if (o > max_sl)
                max_sl = o;
        }
        bool want_stop;
        size_t want = reference(text, tlen, stops, sl, n_stop, &want_stop);

        srv_stop *s = srv_stop_new(stops, sl, n_stop);
        cr_assert_not_null(s);
        char out[1024];
        size_t out_len = 0, fed = 0, ci = 0;
        bool stopped = false;
        do {
            size_t take = rng_below(&st, 5); /* characters; 0: an empty feed */
            ci = ci + take > n_bounds ? n_bounds : ci + take;
            size_t to = ci == n_bounds ? tlen : bounds[ci];
            const char *e;
            size_t el;
            bool now;
            cr_assert_eq(srv_stop_feed(s, text + fed, to - fed, &e, &el, &now), ATTND_OK);
            fed = to;
            cr_assert(!stopped || el == 0);
            cr_assert(attnd_utf8_valid(e, el), "trial %d: emitted a partial character", trial);
            memcpy(out + out_len, e, el);
            out_len += el;
            stopped = now;
            if (!stopped)
                cr_assert_leq(fed - out_len, max_sl - 1,
                              "trial %d: %zu bytes held back, longest stop %zu", trial,
                              fed - out_len, max_sl);
        } while (fed < tlen);
        if (!stopped) {
            const char *e;
            size_t el;
            srv_stop_flush(s, &e, &el);
            memcpy(out + out_len, e, el);
            out_len += el;
        }
        srv_stop_free(s);
        cr_assert_eq(stopped, want_stop, "trial %d: stopped %d, want %d", trial, stopped,
                     want_stop);
        cr_assert_eq(out_len, want, "trial %d: %zu bytes out, want %zu (text \"%.*s\")", trial,
                     out_len, want, (int)tlen, text);
        cr_assert_eq(memcmp(out, text, out_len), 0, "trial %d", trial);
    }
}

Test(stop_match, random_ascii)
{
    const char *alpha[] = {"a", "b", "c"};
    property(alpha, 3, 1, 20000);
}

Test(stop_match, random_utf8)
{
    const char *alpha[] = {"a", "\xc3\xa9", "\xe2\x82\xac", "\xe2\x82\xad", "\xf0\x9f\x98\x80"};
    property(alpha, 5, 2, 20000);
}

/* ---- response JSON written by length ------------------------------------- */

Test(response_json, every_byte_below_0x20_is_escaped_and_nul_does_not_cut)
{
    char in[41];
    for (int i = 0; i < 32; i++)
        in[i] = (char)i;
    memcpy(in + 32, "\"\\/\xc3\xa9\xf0\x9f\x98\x80", 9); /* " \ / é 😀 */
    size_t n;
    char *s = srv_json_string(in, sizeof in, &n);
    cr_assert(s);
    cr_expect_eq(n, strlen(s));
    const char *want = "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b"
                       "\\f\\r\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016"
                       "\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f"
                       "\\\"\\\\/\xc3\xa9\xf0\x9f\x98\x80\"";
    cr_expect_str_eq(s, want);
    /* Without the NUL, cJSON reads back exactly the bytes. */
    char *s1 = srv_json_string(in + 1, sizeof in - 1, &n);
    cJSON *v = cJSON_Parse(s1);
    cr_assert(cJSON_IsString(v));
    cr_expect(strlen(v->valuestring) == sizeof in - 1 &&
              memcmp(v->valuestring, in + 1, sizeof in - 1) == 0);
    cJSON_Delete(v);
    free(s1);
    free(s);
    s = srv_json_string("", 0, &n);
    cr_expect_str_eq(s, "\"\"");
    free(s);
}

Test(response_json, stream_lines_are_framed_for_ndjson_and_sse)
{
    size_t n;
    char *l = srv_stream_token(3, "a\0b", 3, false, &n);
    cr_expect_str_eq(l, "{\"token\":3,\"text\":\"a\\u0000b\"}\n");
    cr_expect_eq(n, strlen(l));
    free(l);
    l = srv_stream_token(-1, "tail", 4, true, &n);
    cr_expect_str_eq(l, "data: {\"text\":\"tail\"}\n\n");
    free(l);
    l = srv_stream_frame("{\"done\":true}", 13, true, &n);
    cr_expect_str_eq(l, "data: {\"done\":true}\n\n");
    cr_expect_eq(n, 21);
    free(l);
    /* Each line parses (as JSON after the SSE prefix). */
    l = srv_stream_token(123456, "\"quoted\"\n", 9, false, &n);
    cJSON *o = cJSON_Parse(l);
    cr_assert(o, "%s", l);
    cr_expect_eq(cJSON_GetObjectItem(o, "token")->valuedouble, 123456);
    cr_expect_str_eq(cJSON_GetObjectItem(o, "text")->valuestring, "\"quoted\"\n");
    cJSON_Delete(o);
    free(l);
}
