/* test_config.c - the configuration module: the shipped config/attnd.json
 * must equal the built-in defaults (so docs and code cannot drift), the
 * sources must stack file < environment < flags, and every kind of bad value
 * must stop with a message naming the key and where it came from. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "test_util.h"

#define MAX_ARGS 64

/* ---- helpers -------------------------------------------------------- */

/* Writes TEXT to a fresh temporary file; returns its malloc'd path. */
static char *write_tmp(const char *name, const char *text)
{
    char *path = test_tmp_path(name);
    cr_assert(path);
    FILE *fp = fopen(path, "wb");
    cr_assert(fp, "cannot create %s", path);
    fputs(text, fp);
    fclose(fp);
    return path;
}

/* cfg_load_file of a cfg_defaults struct with TEXT as the file's contents.
 * *PATH_OUT (if non-NULL) gets the file's path for checking messages. */
static int load_text(cfg *c, const char *text, attnd_err *err, char **path_out)
{
    char *path = write_tmp("cfg.json", text);
    cfg_defaults(c);
    attnd_err_clear(err);
    int rc = cfg_load_file(c, path, err);
    unlink(path);
    if (path_out)
        *path_out = path;
    else
        free(path);
    return rc;
}

/* cfg_parse_args on defaults with the NULL-terminated flags after ERR;
 * argv[0] is the subcommand as in `attnd serve`. */
static int parse(cfg *c, bool *help, attnd_err *err, ...)
{
    char *argv[MAX_ARGS] = {"serve"};
    int argc = 1;
    va_list ap;
    va_start(ap, err);
    for (char *a; (a = va_arg(ap, char *)) != NULL;) {
        cr_assert_lt(argc, MAX_ARGS - 1, "raise MAX_ARGS");
        argv[argc++] = a;
    }
    va_end(ap);
    argv[argc] = NULL;
    cfg_defaults(c);
    *help = false;
    attnd_err_clear(err);
    return cfg_parse_args(c, argc, argv, help, err);
}

/* cfg_load with ENVP and the NULL-terminated flags. */
static int load_all(cfg *c, char *const *envp, bool *help, attnd_err *err, ...)
{
    char *argv[MAX_ARGS] = {"serve"};
    int argc = 1;
    va_list ap;
    va_start(ap, err);
    for (char *a; (a = va_arg(ap, char *)) != NULL;) {
        cr_assert_lt(argc, MAX_ARGS - 1, "raise MAX_ARGS");
        argv[argc++] = a;
    }
    va_end(ap);
    argv[argc] = NULL;
    attnd_err_clear(err);
    return cfg_load(c, argc, argv, envp, help, err);
}

static int load_env(cfg *c, char *const *envp, attnd_err *err)
{
    cfg_defaults(c);
    attnd_err_clear(err);
    return cfg_load_env(c, envp, err);
}

static char *capture(void (*fn)(const void *, FILE *), const void *arg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    cr_assert(out);
    fn(arg, out);
    fclose(out);
    return buf;
}

static void print_json_fn(const void *arg, FILE *out)
{
    cfg_print_json(arg, out);
}

static void print_help_fn(const void *arg, FILE *out)
{
    (void)arg;
    cfg_print_help(out);
}

static void expect_same(const cfg *a, const cfg *b, bool compare_api_key)
{
    cr_expect_str_eq(a->host, b->host);
    cr_expect_eq(a->port, b->port);
    cr_expect_str_eq(a->model, b->model);
    cr_expect_str_eq(a->weights, b->weights);
    cr_expect_eq(a->threads, b->threads);
    cr_expect_eq(a->http_threads, b->http_threads);
    cr_expect_eq(a->kv_bytes, b->kv_bytes);
    cr_expect_eq(a->kv_block_size, b->kv_block_size);
    cr_expect_str_eq(a->kv_type, b->kv_type);
    cr_expect_eq(a->max_batch_tokens, b->max_batch_tokens);
    cr_expect_eq(a->max_seqs, b->max_seqs);
    cr_expect_eq(a->queue_limit, b->queue_limit);
    cr_expect_eq(a->max_body_bytes, b->max_body_bytes);
    cr_expect_eq(a->stream_buffer_bytes, b->stream_buffer_bytes);
    cr_expect_eq(a->default_max_tokens, b->default_max_tokens);
    cr_expect_eq(a->max_tokens_cap, b->max_tokens_cap);
    cr_expect_eq(a->drain_timeout_s, b->drain_timeout_s);
    cr_expect_eq(a->request_timeout_s, b->request_timeout_s);
    cr_expect_eq(a->conn_timeout_s, b->conn_timeout_s);
    cr_expect_eq(a->max_connections, b->max_connections);
    if (compare_api_key)
        cr_expect_str_eq(a->api_key, b->api_key);
    cr_expect_eq(a->log_level, b->log_level);
}

/* The table's keys, in order, read back from cfg_print_json of defaults:
 * the printer walks the same table as every loader. */
static cJSON *defaults_json(void)
{
    cfg d;
    cfg_defaults(&d);
    char *text = capture(print_json_fn, &d);
    cJSON *j = cJSON_Parse(text);
    cr_assert(j && cJSON_IsObject(j), "cfg_print_json output is not a JSON object:\n%s", text);
    free(text);
    return j;
}

#define expect_msg(err, ...) expect_msg_((err), (const char *[]){__VA_ARGS__, NULL})
static void expect_msg_(const attnd_err *err, const char **parts)
{
    for (size_t i = 0; parts[i]; i++)
        cr_expect(strstr(err->msg, parts[i]) != NULL, "message '%s' lacks '%s'", err->msg,
                  parts[i]);
}

/* ---- the shipped defaults ------------------------------------------- */

Test(config, shipped_file_equals_the_builtin_defaults)
{
    const char *path = ATTND_SOURCE_DIR "/config/attnd.json";
    char *text = test_read_file(path, NULL);
    cr_assert(text, "cannot read %s", path);
    cJSON *file = cJSON_Parse(text);
    cr_assert(file && cJSON_IsObject(file), "%s is not a JSON object", path);
    free(text);
    cJSON *code = defaults_json();

    size_t n_code = 0;
    for (const cJSON *it = code->child; it; it = it->next, n_code++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(file, it->string);
        cr_expect(f != NULL, "key '%s' is missing from config/attnd.json", it->string);
        if (!f)
            continue;
        if (cJSON_IsNumber(it)) {
            cr_expect(cJSON_IsNumber(f) && f->valuedouble == it->valuedouble,
                      "%s: attnd.json disagrees with cfg_defaults %.0f", it->string,
                      it->valuedouble);
        } else {
            cr_assert(cJSON_IsString(it));
            cr_expect(cJSON_IsString(f) && strcmp(f->valuestring, it->valuestring) == 0,
                      "%s: attnd.json disagrees with cfg_defaults '%s'", it->string,
                      it->valuestring);
        }
    }
    size_t n_file = 0;
    for (const cJSON *it = file->child; it; it = it->next, n_file++)
        cr_expect(cJSON_GetObjectItemCaseSensitive(code, it->string) != NULL,
                  "config/attnd.json has key '%s' that the code does not know", it->string);
    cr_expect_eq(n_file, n_code);
    cr_expect_eq(n_code, 26);

    /* And loading the file over anything gives exactly the defaults. */
    cfg d, f;
    cfg_defaults(&d);
    memset(&f, 0, sizeof f);
    attnd_err err = {0};
    cr_assert_eq(cfg_load_file(&f, path, &err), ATTND_OK, "%s", err.msg);
    expect_same(&f, &d, true);
    cJSON_Delete(file);
    cJSON_Delete(code);
}

Test(config, defaults_have_the_documented_values)
{
    cfg d;
    cfg_defaults(&d);
    cr_expect_str_eq(d.host, "127.0.0.1");
    cr_expect_eq(d.port, 8080);
    cr_expect_str_eq(d.model, "");
    cr_expect_eq(d.http_threads, 4);
    cr_expect_eq(d.kv_bytes, 256ull << 20);
    cr_expect_eq(d.kv_block_size, 16);
    cr_expect_str_eq(d.kv_type, "f16");
    cr_expect_eq(d.max_body_bytes, 1u << 20);
    cr_expect_eq(d.default_max_tokens, 128);
    cr_expect_eq(d.max_tokens_cap, 4096);
    cr_expect_eq(d.request_timeout_s, 600);
    cr_expect_str_eq(d.api_key, "");
    cr_expect_eq(d.log_level, CFG_LOG_INFO);
    cr_expect_str_eq(cfg_log_level_name(CFG_LOG_ERROR), "error");
    cr_expect_str_eq(cfg_log_level_name(CFG_LOG_DEBUG), "debug");
}

Test(config, help_lists_every_flag_and_environment_variable)
{
    char *help = capture(print_help_fn, NULL);
    cJSON *keys = defaults_json();
    for (const cJSON *it = keys->child; it; it = it->next) {
        char flag[80] = "--", env[80] = "ATTND_";
        size_t j;
        for (j = 0; it->string[j]; j++) {
            flag[2 + j] = it->string[j] == '_' ? '-' : it->string[j];
            env[6 + j] = (char)(it->string[j] >= 'a' && it->string[j] <= 'z'
                                    ? it->string[j] - 'a' + 'A'
                                    : it->string[j]);
        }
        flag[2 + j] = env[6 + j] = '\0';
        strcat(flag, " "); /* the whole name, not a prefix of a longer one */
        strcat(env, " ");
        cr_expect(strstr(help, flag), "help lacks %s", flag);
        cr_expect(strstr(help, env), "help lacks %s", env);
    }
    cr_expect(strstr(help, "-m, --model"));
    cr_expect(strstr(help, "--config") && strstr(help, "ATTND_CONFIG"));
    cr_expect(strstr(help, "--help"));
    cr_expect(strstr(help, "256MiB"), "help shows the kv_bytes default:\n%s", help);
    cJSON_Delete(keys);
    free(help);
}

Test(config, print_json_round_trips_and_masks_the_api_key)
{
    cfg c;
    bool help;
    attnd_err err = {0};
    cr_assert_eq(parse(&c, &help, &err, "--host", "0.0.0.0", "--port", "9001", "-m",
                       "/models/a \"quoted\"\\path.gguf", "--threads", "3", "--http-threads", "7",
                       "--kv-bytes", "64MiB", "--kv-block-size", "32", "--kv-type", "f32",
                       "--max-batch-tokens", "1024", "--max-seqs", "9", "--queue-limit", "0",
                       "--max-body-bytes", "2K", "--default-max-tokens", "77", "--max-tokens-cap",
                       "999", "--drain-timeout-s", "5", "--request-timeout-s", "0",
                       "--conn-timeout-s", "11", "--max-connections", "13", "--api-key", "s3cret",
                       "--log-level", "debug", NULL),
                 ATTND_OK, "%s", err.msg);
    char *json = capture(print_json_fn, &c);
    cr_expect(strstr(json, "\"***\"") && !strstr(json, "s3cret"), "api_key not masked:\n%s", json);
    char *path = write_tmp("round.json", json);
    cfg back;
    cfg_defaults(&back);
    cr_assert_eq(cfg_load_file(&back, path, &err), ATTND_OK, "%s\n%s", err.msg, json);
    expect_same(&back, &c, false);
    cr_expect_str_eq(back.api_key, "***");
    unlink(path);
    free(path);
    free(json);

    /* An empty key prints as empty, so it round-trips too. */
    cfg_defaults(&c);
    json = capture(print_json_fn, &c);
    cr_expect(strstr(json, "\"api_key\": \"\""), "%s", json);
    free(json);
}

/* ---- precedence ----------------------------------------------------- */

Test(config, file_then_environment_then_flags)
{
    char *path = write_tmp("prec.json", "{\"port\": 1000, \"threads\": 2, \"kv_type\": \"f32\",\n"
                                        " \"kv_bytes\": \"64MiB\", \"log_level\": \"debug\",\n"
                                        " \"model\": \"from-file.gguf\", \"max_seqs\": 5}\n");
    char config_env[4200];
    snprintf(config_env, sizeof config_env, "ATTND_CONFIG=%s", path);
    char *envp[] = {config_env, "ATTND_PORT=2000", "ATTND_THREADS=3", "ATTND_MAX_SEQS=6",
                    "PATH=/bin", "ATTND_SHARED=/elsewhere", NULL};
    cfg c;
    bool help = true;
    attnd_err err = {0};
    cr_assert_eq(load_all(&c, envp, &help, &err, "--port", "3000", "--max-seqs=7", NULL), ATTND_OK,
                 "%s", err.msg);
    cr_expect(!help);
    cr_expect_eq(c.port, 3000);              /* file, env and flag: flag */
    cr_expect_eq(c.max_seqs, 7);
    cr_expect_eq(c.threads, 3);              /* file and env: env */
    cr_expect_str_eq(c.kv_type, "f32");      /* file only */
    cr_expect_eq(c.kv_bytes, 64ull << 20);
    cr_expect_eq(c.log_level, CFG_LOG_DEBUG);
    cr_expect_str_eq(c.model, "from-file.gguf");
    cr_expect_eq(c.http_threads, 4);         /* nobody: default */

    /* Environment over file for the model; flag over both. */
    char *envp2[] = {config_env, "ATTND_MODEL=from-env.gguf", NULL};
    cr_assert_eq(load_all(&c, envp2, &help, &err, NULL), ATTND_OK, "%s", err.msg);
    cr_expect_str_eq(c.model, "from-env.gguf");
    cr_assert_eq(load_all(&c, envp2, &help, &err, "-m", "from-flag.gguf", NULL), ATTND_OK);
    cr_expect_str_eq(c.model, "from-flag.gguf");
    unlink(path);
    free(path);
}

Test(config, config_flag_wins_over_ATTND_CONFIG)
{
    char *a = write_tmp("a.json", "{\"port\": 1111, \"model\": \"m\"}");
    char *b = write_tmp("b.json", "{\"port\": 2222, \"model\": \"m\"}");
    char env_a[4200];
    snprintf(env_a, sizeof env_a, "ATTND_CONFIG=%s", a);
    char *envp[] = {env_a, NULL};
    char flag_b[4200];
    snprintf(flag_b, sizeof flag_b, "--config=%s", b);
    cfg c;
    bool help;
    attnd_err err = {0};

    cr_assert_eq(load_all(&c, envp, &help, &err, NULL), ATTND_OK, "%s", err.msg);
    cr_expect_eq(c.port, 1111);
    cr_assert_eq(load_all(&c, envp, &help, &err, "--config", b, NULL), ATTND_OK, "%s", err.msg);
    cr_expect_eq(c.port, 2222);
    cr_assert_eq(load_all(&c, envp, &help, &err, flag_b, NULL), ATTND_OK, "%s", err.msg);
    cr_expect_eq(c.port, 2222);
    /* Flags after the file still win over it, wherever --config appears. */
    cr_assert_eq(load_all(&c, envp, &help, &err, "--port", "3333", "--config", b, NULL),
                 ATTND_OK, "%s", err.msg);
    cr_expect_eq(c.port, 3333);

    /* No file at all, or an empty ATTND_CONFIG: defaults. */
    char *empty[] = {"ATTND_CONFIG=", NULL};
    cr_assert_eq(load_all(&c, empty, &help, &err, "-m", "x", NULL), ATTND_OK, "%s", err.msg);
    cr_expect_eq(c.port, 8080);
    cr_assert_eq(load_all(&c, NULL, &help, &err, "-m", "x", NULL), ATTND_OK, "%s", err.msg);
    cr_expect_eq(c.port, 8080);

    /* A missing file named either way is an error naming it. */
    char *missing[] = {"ATTND_CONFIG=/nonexistent/attnd.json", NULL};
    cr_expect_eq(load_all(&c, missing, &help, &err, "-m", "x", NULL), ATTND_EIO);
    expect_msg(&err, "config /nonexistent/attnd.json: cannot open");
    cr_expect_eq(load_all(&c, NULL, &help, &err, "-m", "x", "--config", "/nonexistent/b.json",
                          NULL),
                 ATTND_EIO);
    expect_msg(&err, "config /nonexistent/b.json");
    unlink(a);
    unlink(b);
    free(a);
    free(b);
}

Test(config, environment_ignores_unrelated_variables)
{
    char *envp[] = {"ATTND_BIN=/x", "ATTND_CONFIG=/nonexistent", "ATTND_PORTX=1", "XATTND_PORT=1",
                    "ATTND_PORT=4242", "ATTND_PORT=1", "ATTND_API_KEY=", NULL};
    cfg c;
    attnd_err err = {0};
    cr_assert_eq(load_env(&c, envp, &err), ATTND_OK, "%s", err.msg);
    cr_expect_eq(c.port, 4242); /* the first, as getenv */
    cr_expect_str_eq(c.api_key, "");
    char *key[] = {"ATTND_API_KEY=abc", "ATTND_KV_BLOCK_SIZE=8", "ATTND_KV_BYTES=2G", NULL};
    cr_assert_eq(load_env(&c, key, &err), ATTND_OK, "%s", err.msg);
    cr_expect_str_eq(c.api_key, "abc");
    cr_expect_eq(c.kv_block_size, 8);
    cr_expect_eq(c.kv_bytes, 2ull << 30);
}

/* ---- flags ---------------------------------------------------------- */

Test(config, flags_in_every_spelling)
{
    cfg c;
    bool help;
    attnd_err err = {0};
    cr_assert_eq(parse(&c, &help, &err, "--port=9000", NULL), ATTND_OK, "%s", err.msg);
    cr_expect_eq(c.port, 9000);
    cr_assert_eq(parse(&c, &help, &err, "--port", "9000", NULL), ATTND_OK, "%s", err.msg);
    cr_expect_eq(c.port, 9000);
    cr_assert_eq(parse(&c, &help, &err, "-m", "/m.gguf", NULL), ATTND_OK, "%s", err.msg);
    cr_expect_str_eq(c.model, "/m.gguf");
    cr_assert_eq(parse(&c, &help, &err, "--model=/n.gguf", "--host", "::1", NULL), ATTND_OK);
    cr_expect_str_eq(c.model, "/n.gguf");
    cr_expect_str_eq(c.host, "::1");
    cr_assert_eq(parse(&c, &help, &err, "--kv_block_size", "32", NULL), ATTND_OK, "%s", err.msg);
    cr_expect_eq(c.kv_block_size, 32);
    cr_assert_eq(parse(&c, &help, &err, "--kv-block-size=64", NULL), ATTND_OK, "%s", err.msg);
    cr_expect_eq(c.kv_block_size, 64);
    cr_assert_eq(parse(&c, &help, &err, "--kv-type", "f32", "--log_level=warn", NULL), ATTND_OK);
    cr_expect_str_eq(c.kv_type, "f32");
    cr_expect_eq(c.log_level, CFG_LOG_WARN);
    /* The last of a repeated flag wins; a value may start with dashes via '='. */
    cr_assert_eq(parse(&c, &help, &err, "--port", "1", "--port=2", "--api-key=--x", NULL),
                 ATTND_OK);
    cr_expect_eq(c.port, 2);
    cr_expect_str_eq(c.api_key, "--x");
    /* --config is taken (cfg_load reads it) but not applied here. */
    cr_assert_eq(parse(&c, &help, &err, "--config", "/nonexistent.json", NULL), ATTND_OK,
                 "%s", err.msg);
    cr_expect(!help);
}

Test(config, flag_errors_name_the_flag)
{
    cfg c;
    bool help;
    attnd_err err = {0};
    cr_expect_eq(parse(&c, &help, &err, "--bogus", "1", NULL), ATTND_EINVAL);
    expect_msg(&err, "unknown flag '--bogus'");
    cr_expect_eq(parse(&c, &help, &err, "--prot=1", NULL), ATTND_EINVAL);
    expect_msg(&err, "'--prot'");
    cr_expect_eq(parse(&c, &help, &err, "-x", NULL), ATTND_EINVAL);
    expect_msg(&err, "'-x'");
    cr_expect_eq(parse(&c, &help, &err, "--help=yes", NULL), ATTND_EINVAL);
    expect_msg(&err, "--help takes no value");
    cr_expect_eq(parse(&c, &help, &err, "--", NULL), ATTND_OK);
    cr_expect_eq(parse(&c, &help, &err, "stray", NULL), ATTND_EINVAL);
    expect_msg(&err, "'stray'");
    cr_expect_eq(parse(&c, &help, &err, "--port", NULL), ATTND_EINVAL);
    expect_msg(&err, "--port: missing value");
    cr_expect_eq(parse(&c, &help, &err, "-m", NULL), ATTND_EINVAL);
    expect_msg(&err, "-m: missing value");
    cr_expect_eq(parse(&c, &help, &err, "--model", "--port", "80", NULL), ATTND_EINVAL);
    expect_msg(&err, "--model: missing value");
    cr_expect_eq(parse(&c, &help, &err, "--config", NULL), ATTND_EINVAL);
    expect_msg(&err, "--config: missing value");
    cr_expect_eq(parse(&c, &help, &err, "--port", "70000", NULL), ATTND_ERANGE);
    cr_expect_str_eq(err.msg, "--port: 70000 is out of range (1 to 65535)");
    cr_expect_eq(parse(&c, &help, &err, "--kv_block_size=0", NULL), ATTND_ERANGE);
    expect_msg(&err, "--kv_block_size: 0 is out of range (1 to 1024)");
    cr_expect_eq(parse(&c, &help, &err, "--port=", NULL), ATTND_EINVAL);
    expect_msg(&err, "--port: '' is not an integer");
    /* A rejected command line leaves the cfg as it was. */
    cfg_defaults(&c);
    char *argv[] = {"serve", "--port", "1234", "--threads", "x", NULL};
    cr_expect_eq(cfg_parse_args(&c, 5, argv, &help, &err), ATTND_EINVAL);
    cr_expect_eq(c.port, 8080);
}

Test(config, help_needs_no_model)
{
    cfg c;
    bool help = false;
    attnd_err err = {0};
    cr_assert_eq(parse(&c, &help, &err, "--help", NULL), ATTND_OK);
    cr_expect(help);
    cr_assert_eq(parse(&c, &help, &err, "-h", NULL), ATTND_OK);
    cr_expect(help);
    cr_expect_eq(load_all(&c, NULL, &help, &err, "--help", NULL), ATTND_OK, "%s", err.msg);
    cr_expect(help);
    cr_expect_eq(load_all(&c, NULL, &help, &err, "--port", "9", "-h", NULL), ATTND_OK);
    cr_expect(help);
    cr_expect_eq(c.port, 9);
}

/* ---- bad values ----------------------------------------------------- */

Test(config, model_is_required)
{
    cfg c;
    bool help = true;
    attnd_err err = {0};
    cr_expect_eq(load_all(&c, NULL, &help, &err, NULL), ATTND_EINVAL);
    cr_expect(!help);
    cr_expect_str_eq(err.msg, "model: no model given (-m, --model, ATTND_MODEL or \"model\" in the "
                              "config file)");
    cr_expect_eq(load_all(&c, NULL, &help, &err, "--model=", NULL), ATTND_EINVAL);
    expect_msg(&err, "no model given");
    char *envp[] = {"ATTND_MODEL=/m.gguf", NULL};
    cr_expect_eq(load_all(&c, envp, &help, &err, NULL), ATTND_OK, "%s", err.msg);
}

Test(config, default_max_tokens_must_not_exceed_the_cap)
{
    cfg c;
    bool help;
    attnd_err err = {0};
    cr_expect_eq(load_all(&c, NULL, &help, &err, "-m", "x", "--default-max-tokens", "5000", NULL),
                 ATTND_ERANGE);
    expect_msg(&err, "default_max_tokens", "5000", "max_tokens_cap", "4096");
    cr_expect_eq(load_all(&c, NULL, &help, &err, "-m", "x", "--max-tokens-cap", "100", NULL),
                 ATTND_ERANGE);
    expect_msg(&err, "default_max_tokens", "128", "max_tokens_cap", "100");
    cr_expect_eq(load_all(&c, NULL, &help, &err, "-m", "x", "--max-tokens-cap", "128", NULL),
                 ATTND_OK, "%s", err.msg);
}

Test(config, integers_reject_garbage_signs_and_overflow)
{
    static const char *const bad[] = {"abc", "", "+5", "-5", " 5", "5 ", "5x", "0x10", "1e3",
                                      "5.0", "99999999999999999999x"};
    cfg c;
    attnd_err err = {0};
    char var[64];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(var, sizeof var, "ATTND_PORT=%s", bad[i]);
        char *envp[] = {var, NULL};
        cr_expect_eq(load_env(&c, envp, &err), ATTND_EINVAL, "'%s' accepted", bad[i]);
        char want[64];
        snprintf(want, sizeof want, "ATTND_PORT: '%s' is not an integer", bad[i]);
        cr_expect_str_eq(err.msg, want);
        cr_expect_eq(c.port, 8080);
    }
    static const char *const big[] = {"65536", "4294967296", "18446744073709551616",
                                      "99999999999999999999999999"};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        snprintf(var, sizeof var, "ATTND_PORT=%s", big[i]);
        char *envp[] = {var, NULL};
        cr_expect_eq(load_env(&c, envp, &err), ATTND_ERANGE, "'%s' accepted", big[i]);
        expect_msg(&err, "ATTND_PORT: ", big[i], "is out of range (1 to 65535)");
    }
    char *edge[] = {"ATTND_PORT=065535", "ATTND_THREADS=0", "ATTND_QUEUE_LIMIT=1000000", NULL};
    cr_assert_eq(load_env(&c, edge, &err), ATTND_OK, "%s", err.msg);
    cr_expect_eq(c.port, 65535);
    cr_expect_eq(c.queue_limit, 1000000);
}

Test(config, sizes_take_suffixes)
{
    static const struct {
        const char *text;
        uint64_t want;
    } ok[] = {
        {"1048576", 1048576}, {"1024K", 1ull << 20}, {"2M", 2ull << 20}, {"3MiB", 3ull << 20},
        {"1G", 1ull << 30},   {"4GiB", 4ull << 30},  {"1T", 1ull << 40}, {"1TiB", 1ull << 40},
        {"2048KiB", 2ull << 20},
    };
    cfg c;
    attnd_err err = {0};
    char var[64];
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        snprintf(var, sizeof var, "ATTND_KV_BYTES=%s", ok[i].text);
        char *envp[] = {var, NULL};
        cr_expect_eq(load_env(&c, envp, &err), ATTND_OK, "%s: %s", ok[i].text, err.msg);
        cr_expect_eq(c.kv_bytes, ok[i].want, "%s", ok[i].text);
    }
    static const char *const bad[] = {"12X", "12 MiB", "12KB", "12k", "MiB", "12Mi", "", "-1M",
                                      "1.5G", "12MiBs"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(var, sizeof var, "ATTND_KV_BYTES=%s", bad[i]);
        char *envp[] = {var, NULL};
        cr_expect_eq(load_env(&c, envp, &err), ATTND_EINVAL, "'%s' accepted", bad[i]);
        expect_msg(&err, "ATTND_KV_BYTES: '", "is not a size");
    }
    static const char *const range[] = {"2TiB", "4095", "3K", "17179869184G",
                                        "99999999999999999999999"};
    for (size_t i = 0; i < sizeof range / sizeof range[0]; i++) {
        snprintf(var, sizeof var, "ATTND_KV_BYTES=%s", range[i]);
        char *envp[] = {var, NULL};
        cr_expect_eq(load_env(&c, envp, &err), ATTND_ERANGE, "'%s' accepted", range[i]);
        expect_msg(&err, "ATTND_KV_BYTES: ", "is out of range (4KiB to 1TiB)");
    }
    cfg_defaults(&c);
    bool help;
    cr_expect_eq(parse(&c, &help, &err, "--max-body-bytes", "1G", NULL), ATTND_OK, "%s", err.msg);
    cr_expect_eq(c.max_body_bytes, 1ull << 30);
    cr_expect_eq(parse(&c, &help, &err, "--max-body-bytes", "1023", NULL), ATTND_ERANGE);
    expect_msg(&err, "--max-body-bytes: 1023 is out of range (1KiB to 1GiB)");
}

Test(config, strings_must_fit_and_enums_must_match)
{
    char long_host[400];
    memset(long_host, 'h', sizeof long_host - 1);
    long_host[sizeof long_host - 1] = '\0';
    cfg c;
    bool help;
    attnd_err err = {0};
    cr_expect_eq(parse(&c, &help, &err, "--host", long_host, NULL), ATTND_ERANGE);
    expect_msg(&err, "--host: value is too long (399 bytes, at most 255)");
    long_host[255] = '\0';
    cr_expect_eq(parse(&c, &help, &err, "--host", long_host, NULL), ATTND_OK, "%s", err.msg);
    cr_expect_eq(strlen(c.host), 255);
    cr_expect_eq(parse(&c, &help, &err, "--host=", NULL), ATTND_EINVAL);
    expect_msg(&err, "--host: must not be empty");

    char key_var[400] = "ATTND_API_KEY=";
    memset(key_var + strlen(key_var), 'k', 300);
    key_var[strlen("ATTND_API_KEY=") + 300] = '\0';
    char *envp[] = {key_var, NULL};
    cr_expect_eq(load_env(&c, envp, &err), ATTND_ERANGE);
    expect_msg(&err, "ATTND_API_KEY: value is too long");

    char *bad_type[] = {"ATTND_KV_TYPE=f8", NULL};
    cr_expect_eq(load_env(&c, bad_type, &err), ATTND_EINVAL);
    cr_expect_str_eq(err.msg, "ATTND_KV_TYPE must be \"f16\" or \"f32\", not 'f8'");
    cr_expect_eq(parse(&c, &help, &err, "--log-level", "verbose", NULL), ATTND_EINVAL);
    expect_msg(&err, "--log-level must be \"error\", \"warn\", \"info\" or \"debug\"",
               "'verbose'");
    cr_expect_eq(parse(&c, &help, &err, "--log-level", "INFO", NULL), ATTND_EINVAL);
    cr_expect_eq(parse(&c, &help, &err, "--weights", "mmap", NULL), ATTND_EINVAL);
    expect_msg(&err, "--weights must be \"copy\" or \"map\", not 'mmap'");
    cr_expect_eq(parse(&c, &help, &err, "--weights", "map", NULL), ATTND_OK, "%s", err.msg);
    cr_expect_str_eq(c.weights, "map");
}

Test(config, file_errors_name_the_file_and_key)
{
    static const struct {
        const char *json;
        int code;
        const char *msg; /* after "config PATH: " */
    } cases[] = {
        {"{\"prot\": 80}", ATTND_EINVAL, "key 'prot' is unknown"},
        {"{\"kv-type\": \"f16\"}", ATTND_EINVAL, "key 'kv-type' is unknown"},
        {"{\"port\": \"8080\"}", ATTND_EINVAL, "port must be a number, not a string"},
        {"{\"host\": 5}", ATTND_EINVAL, "host must be a string, not a number"},
        {"{\"kv_bytes\": true}", ATTND_EINVAL,
         "kv_bytes must be a number or a string like \"256MiB\", not a boolean"},
        {"{\"model\": null}", ATTND_EINVAL, "model must be a string, not null"},
        {"{\"max_seqs\": [1]}", ATTND_EINVAL, "max_seqs must be a number, not an array"},
        {"{\"port\": 1.5}", ATTND_EINVAL, "port: 1.5 is not an integer"},
        {"{\"port\": -1}", ATTND_ERANGE, "port: -1 is out of range (1 to 65535)"},
        {"{\"port\": 70000}", ATTND_ERANGE, "port: 70000 is out of range (1 to 65535)"},
        {"{\"kv_bytes\": 1e30}", ATTND_ERANGE, "kv_bytes: 1e+30 is out of range (4KiB to 1TiB)"},
        {"{\"kv_bytes\": \"12X\"}", ATTND_EINVAL, "kv_bytes: '12X' is not a size"},
        {"{\"kv_type\": \"f8\"}", ATTND_EINVAL, "kv_type must be \"f16\" or \"f32\", not 'f8'"},
        {"{\"log_level\": \"loud\"}", ATTND_EINVAL, "log_level must be \"error\""},
        {"{\"port\": 80, \"port\": 81}", ATTND_EINVAL, "key 'port' appears twice"},
        {"{\"port\": 80,}", ATTND_EFORMAT, "malformed JSON at line 1"},
        {"{\n\"port\": 80\n\"host\": \"x\"}", ATTND_EFORMAT, "malformed JSON at line 3"},
        {"{} {}", ATTND_EFORMAT, "malformed JSON"},
        {"", ATTND_EFORMAT, "malformed JSON"},
        {"[1, 2]", ATTND_EFORMAT, "must be a JSON object, not an array"},
        {"\"port\"", ATTND_EFORMAT, "must be a JSON object, not a string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cfg c;
        attnd_err err = {0};
        char *path;
        cr_expect_eq(load_text(&c, cases[i].json, &err, &path), cases[i].code, "%s: %s",
                     cases[i].json, err.msg);
        char want[4400];
        snprintf(want, sizeof want, "config %s: %s", path, cases[i].msg);
        cr_expect(strncmp(err.msg, want, strlen(want)) == 0, "%s:\n got  %s\n want %s...",
                  cases[i].json, err.msg, want);
        cr_expect_eq(c.port, 8080, "%s changed the cfg", cases[i].json);
        free(path);
    }

    cfg c;
    attnd_err err = {0};
    cfg_defaults(&c);
    cr_expect_eq(cfg_load_file(&c, "/nonexistent/attnd.json", &err), ATTND_EIO);
    expect_msg(&err, "config /nonexistent/attnd.json: cannot open: No such file or directory");
    cr_expect_eq(cfg_load_file(&c, "/", &err), ATTND_EIO);
    expect_msg(&err, "config /: cannot read");

    /* A NUL byte must not hide what follows it. */
    char *path = test_tmp_path("nul.json");
    FILE *fp = fopen(path, "wb");
    cr_assert(fp);
    fwrite("{}\0{\"x\":", 1, 8, fp);
    fclose(fp);
    cr_expect_eq(cfg_load_file(&c, path, &err), ATTND_EFORMAT);
    unlink(path);
    free(path);
}

Test(config, file_accepts_sizes_as_numbers_or_strings)
{
    cfg c;
    attnd_err err = {0};
    cr_assert_eq(load_text(&c, "{\"kv_bytes\": 1073741824, \"max_body_bytes\": \"64K\"}", &err,
                           NULL),
                 ATTND_OK, "%s", err.msg);
    cr_expect_eq(c.kv_bytes, 1ull << 30);
    cr_expect_eq(c.max_body_bytes, 64u << 10);
    cr_assert_eq(load_text(&c, "{\"kv_bytes\": 1099511627776, \"port\": 1e3}", &err, NULL),
                 ATTND_OK, "%s", err.msg);
    cr_expect_eq(c.kv_bytes, 1ull << 40);
    cr_expect_eq(c.port, 1000);
    cr_assert_eq(load_text(&c, "{}", &err, NULL), ATTND_OK, "%s", err.msg);
    cr_expect_eq(c.port, 8080);
}
