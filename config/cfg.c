/* cfg.c - the server's configuration (cfg.h): one table of keys drives the
 * defaults, the JSON config file, the ATTND_* environment, the command-line
 * flags and the help text, so adding a key is one line here (plus its field
 * in struct cfg and its entry in config/attnd.json, which a test enforces).
 *
 * Every loader applies its source to a copy and stores it only on success, so
 * a rejected source leaves the caller's cfg as it was. */
#include "cfg.h"

#include <cjson/cJSON.h>

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef enum key_type {
    KT_STR,   /* char buffer; min/max bound the length */
    KT_U32,   /* uint32_t */
    KT_SIZE,  /* uint64_t byte count; text may carry a K/M/G... suffix */
    KT_CHOICE,/* char buffer holding one of choices */
    KT_LEVEL, /* cfg_log_level: index into choices */
} key_type;

typedef struct key {
    const char *name;
    key_type type;
    size_t off;
    size_t size;
    uint64_t min, max;
    uint64_t def;                /* numbers, KT_LEVEL */
    const char *def_str;         /* KT_STR, KT_CHOICE */
    const char *const *choices;  /* KT_CHOICE, KT_LEVEL; NULL-terminated */
    const char *metavar;
    const char *range;           /* help text for the range when the bounds alone mislead */
    const char *help;
} key;

#define FIELD(m) offsetof(cfg, m), sizeof(((cfg *)0)->m)
#define KIB ((uint64_t)1 << 10)
#define MIB ((uint64_t)1 << 20)
#define GIB ((uint64_t)1 << 30)
#define TIB ((uint64_t)1 << 40)

static const char *const k_kv_types[] = {"f16", "f32", NULL};
static const char *const k_on_off[] = {"on", "off", NULL};
/* gguf_load_name's names, spelled here: config does not depend on model/. */
static const char *const k_weights[] = {"copy", "map", NULL};
/* Indexed by cfg_log_level. */
static const char *const k_levels[] = {"error", "warn", "info", "debug", NULL};

static const key k_keys[] = {
    {"host", KT_STR, FIELD(host), 1, 255, 0, "127.0.0.1", NULL, "ADDR", NULL,
     "address to listen on"},
    {"port", KT_U32, FIELD(port), 1, 65535, 8080, NULL, NULL, "N", NULL,
     "TCP port to listen on"},
    {"model", KT_STR, FIELD(model), 0, 4095, 0, "", NULL, "PATH", NULL,
     "GGUF model file to serve (required)"},
    {"weights", KT_CHOICE, FIELD(weights), 0, 0, 0, "copy", k_weights, "MODE", NULL,
     "copy the weights into huge pages (faster decode) or map the file (faster start)"},
    {"threads", KT_U32, FIELD(threads), 0, 1024, 0, NULL, NULL, "N", NULL,
     "engine worker threads, 0 = one per core"},
    {"http_threads", KT_U32, FIELD(http_threads), 1, 256, 4, NULL, NULL, "N", NULL,
     "HTTP worker threads"},
    {"kv_bytes", KT_SIZE, FIELD(kv_bytes), 4 * KIB, TIB, 256 * MIB, NULL, NULL, "SIZE", NULL,
     "KV cache pool budget in bytes"},
    {"kv_block_size", KT_U32, FIELD(kv_block_size), 1, 1024, 16, NULL, NULL, "N", NULL,
     "tokens per KV cache block"},
    {"kv_type", KT_CHOICE, FIELD(kv_type), 0, 0, 0, "f16", k_kv_types, "TYPE", NULL,
     "KV cache element type"},
    {"prefix_cache", KT_CHOICE, FIELD(prefix_cache), 0, 0, 0, "on", k_on_off, "on|off", NULL,
     "keep the KV blocks of earlier prompts and answers for requests that start the same way"},
    {"max_batch_tokens", KT_U32, FIELD(max_batch_tokens), 1, 65536, 512, NULL, NULL, "N", NULL,
     "tokens processed in one engine step"},
    {"max_seqs", KT_U32, FIELD(max_seqs), 1, 4096, 16, NULL, NULL, "N", NULL,
     "sequences generating at once"},
    {"queue_limit", KT_U32, FIELD(queue_limit), 0, 1000000, 64, NULL, NULL, "N", NULL,
     "requests waiting for a slot before 503"},
    {"max_body_bytes", KT_SIZE, FIELD(max_body_bytes), KIB, GIB, MIB, NULL, NULL, "SIZE", NULL,
     "request body limit, 413 beyond"},
    {"stream_buffer_bytes", KT_SIZE, FIELD(stream_buffer_bytes), KIB, GIB, MIB, NULL, NULL, "SIZE",
     NULL, "output a streaming client may leave unread before its generation pauses"},
    {"default_max_tokens", KT_U32, FIELD(default_max_tokens), 1, 1000000, 128, NULL, NULL, "N",
     "1 to max_tokens_cap", "max_tokens of a request that gives none"},
    {"max_tokens_cap", KT_U32, FIELD(max_tokens_cap), 1, 1000000, 4096, NULL, NULL, "N", NULL,
     "largest max_tokens a request may ask for, 400 beyond"},
    {"drain_timeout_s", KT_U32, FIELD(drain_timeout_s), 0, 3600, 30, NULL, NULL, "SECONDS", NULL,
     "grace for running requests after SIGTERM"},
    {"request_timeout_s", KT_U32, FIELD(request_timeout_s), 0, 86400, 600, NULL, NULL, "SECONDS",
     NULL, "deadline of one generation, 0 = none"},
    {"conn_timeout_s", KT_U32, FIELD(conn_timeout_s), 1, 3600, 30, NULL, NULL, "SECONDS", NULL,
     "idle or slow connection timeout"},
    {"max_connections", KT_U32, FIELD(max_connections), 1, 100000, 512, NULL, NULL, "N", NULL,
     "open HTTP connections at once"},
    {"attention_max_cells", KT_U32, FIELD(attention_max_cells), 1, 268435456, 4194304, NULL, NULL,
     "N", NULL,
     "most attention weights one /v1/attention answer may hold (positions^2 x layers x heads), 413 beyond"},
    {"api_key", KT_STR, FIELD(api_key), 0, 255, 0, "", NULL, "KEY", NULL,
     "bearer token clients must send, empty = no authentication"},
    {"cors_origins", KT_STR, FIELD(cors_origins), 0, 1023, 0, "", NULL, "LIST", NULL,
     "origins allowed to call from a browser (comma-separated, * = any), empty = none"},
    {"chat_template", KT_STR, FIELD(chat_template), 0, 4095, 0, "", NULL, "FILE", NULL,
     "a Jinja chat template file used instead of the model's tokenizer.chat_template"},
    {"log_level", KT_LEVEL, FIELD(log_level), 0, 0, CFG_LOG_INFO, NULL, k_levels, "LEVEL", NULL,
     "log verbosity"},
};
#define N_KEYS (sizeof k_keys / sizeof k_keys[0])

static const struct {
    const char *suffix;
    uint64_t mult;
} k_suffixes[] = {
    {"K", KIB}, {"KiB", KIB}, {"M", MIB}, {"MiB", MIB},
    {"G", GIB}, {"GiB", GIB}, {"T", TIB}, {"TiB", TIB},
};
#define SIZE_SYNTAX "an integer, optionally followed by K, M, G, T, KiB, MiB, GiB or TiB"

static void *field(cfg *c, const key *k)
{
    return (char *)c + k->off;
}

static const void *cfield(const cfg *c, const key *k)
{
    return (const char *)c + k->off;
}

static const key *find_key(const char *name)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(k_keys[i].name, name) == 0)
            return &k_keys[i];
    return NULL;
}

const char *cfg_log_level_name(cfg_log_level l)
{
    if ((unsigned)l < sizeof k_levels / sizeof k_levels[0] - 1)
        return k_levels[l];
    return "unknown";
}

/* ---- values --------------------------------------------------------- */

/* "256MiB" when V is a whole number of some unit, else the plain integer. */
static void fmt_size(char *buf, size_t n, uint64_t v)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } u[] = {{"TiB", TIB}, {"GiB", GIB}, {"MiB", MIB}, {"KiB", KIB}};
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
        if (v != 0 && v % u[i].mult == 0) {
            snprintf(buf, n, "%llu%s", (unsigned long long)(v / u[i].mult), u[i].unit);
            return;
        }
    }
    snprintf(buf, n, "%llu", (unsigned long long)v);
}

static void fmt_range(char *buf, size_t n, const key *k)
{
    if (k->type == KT_SIZE) {
        char lo[32], hi[32];
        fmt_size(lo, sizeof lo, k->min);
        fmt_size(hi, sizeof hi, k->max);
        snprintf(buf, n, "%s to %s", lo, hi);
    } else {
        snprintf(buf, n, "%llu to %llu", (unsigned long long)k->min, (unsigned long long)k->max);
    }
}

static void fmt_choices(char *buf, size_t n, const key *k)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; k->choices[i] && used < n; i++) {
        const char *sep = i == 0 ? "" : k->choices[i + 1] ? ", " : " or ";
        int w = snprintf(buf + used, n - used, "%s\"%s\"", sep, k->choices[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

enum { P_OK, P_SYNTAX, P_OVERFLOW };

/* Leading decimal digits of S (at least one; no sign, no space) into *out;
 * *end is where they stop. */
static int parse_digits(const char *s, uint64_t *out, const char **end)
{
    if (!isdigit((unsigned char)*s))
        return P_SYNTAX;
    uint64_t v = 0;
    bool over = false;
    for (; isdigit((unsigned char)*s); s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            over = true;
        else
            v = v * 10 + d;
    }
    *out = v;
    *end = s;
    return over ? P_OVERFLOW : P_OK;
}

static int parse_uint(const char *s, uint64_t *out)
{
    const char *end;
    int rc = parse_digits(s, out, &end);
    if (rc == P_OK && *end != '\0')
        return P_SYNTAX;
    if (rc == P_OVERFLOW && *end != '\0')
        return P_SYNTAX;
    return rc;
}

static int parse_size(const char *s, uint64_t *out)
{
    const char *end;
    uint64_t v;
    int rc = parse_digits(s, &v, &end);
    if (rc == P_SYNTAX)
        return rc;
    uint64_t mult = 1;
    if (*end != '\0') {
        size_t i;
        for (i = 0; i < sizeof k_suffixes / sizeof k_suffixes[0]; i++)
            if (strcmp(end, k_suffixes[i].suffix) == 0)
                break;
        if (i == sizeof k_suffixes / sizeof k_suffixes[0])
            return P_SYNTAX;
        mult = k_suffixes[i].mult;
    }
    if (rc == P_OVERFLOW || v > UINT64_MAX / mult)
        return P_OVERFLOW;
    *out = v * mult;
    return P_OK;
}

/* NAME is how the user spelled the key in this source: "--port",
 * "ATTND_PORT" or "config x.json: port". SHOWN is the value as written. */
static int store_number(cfg *c, const key *k, uint64_t v, const char *name, const char *shown,
                        attnd_err *err)
{
    if (v < k->min || v > k->max) {
        char range[80];
        fmt_range(range, sizeof range, k);
        return attnd_err_set(err, ATTND_ERANGE, "%s: %.64s is out of range (%s)", name, shown,
                             range);
    }
    if (k->type == KT_U32)
        *(uint32_t *)field(c, k) = (uint32_t)v;
    else
        *(uint64_t *)field(c, k) = v;
    return ATTND_OK;
}

static int set_from_text(cfg *c, const key *k, const char *text, const char *name, attnd_err *err)
{
    switch (k->type) {
    case KT_STR: {
        size_t len = strlen(text);
        if (len > k->max)
            return attnd_err_set(err, ATTND_ERANGE,
                                 "%s: value is too long (%zu bytes, at most %llu)", name, len,
                                 (unsigned long long)k->max);
        if (len < k->min)
            return attnd_err_set(err, ATTND_EINVAL, "%s: must not be empty", name);
        memcpy(field(c, k), text, len + 1);
        return ATTND_OK;
    }
    case KT_U32:
    case KT_SIZE: {
        uint64_t v = 0;
        int rc = k->type == KT_U32 ? parse_uint(text, &v) : parse_size(text, &v);
        if (rc == P_SYNTAX) {
            if (k->type == KT_U32)
                return attnd_err_set(err, ATTND_EINVAL, "%s: '%.64s' is not an integer", name,
                                     text);
            return attnd_err_set(err, ATTND_EINVAL, "%s: '%.64s' is not a size (" SIZE_SYNTAX ")",
                                 name, text);
        }
        if (rc == P_OVERFLOW) {
            char range[80];
            fmt_range(range, sizeof range, k);
            return attnd_err_set(err, ATTND_ERANGE, "%s: %.64s is out of range (%s)", name, text,
                                 range);
        }
        return store_number(c, k, v, name, text, err);
    }
    case KT_CHOICE:
    case KT_LEVEL:
        for (size_t i = 0; k->choices[i]; i++) {
            if (strcmp(text, k->choices[i]) == 0) {
                if (k->type == KT_LEVEL)
                    *(cfg_log_level *)field(c, k) = (cfg_log_level)i;
                else
                    memcpy(field(c, k), text, strlen(text) + 1);
                return ATTND_OK;
            }
        }
        {
            char choices[128];
            fmt_choices(choices, sizeof choices, k);
            return attnd_err_set(err, ATTND_EINVAL, "%s must be %s, not '%.64s'", name, choices,
                                 text);
        }
    }
    return attnd_err_set(err, ATTND_EINVAL, "%s: unknown key type", name);
}

void cfg_defaults(cfg *c)
{
    /* Zeroed first so unused buffer bytes are deterministic. */
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < N_KEYS; i++) {
        const key *k = &k_keys[i];
        switch (k->type) {
        case KT_STR:
        case KT_CHOICE:
            memcpy(field(c, k), k->def_str, strlen(k->def_str) + 1);
            break;
        case KT_U32:
            *(uint32_t *)field(c, k) = (uint32_t)k->def;
            break;
        case KT_SIZE:
            *(uint64_t *)field(c, k) = k->def;
            break;
        case KT_LEVEL:
            *(cfg_log_level *)field(c, k) = (cfg_log_level)k->def;
            break;
        }
    }
}

/* ---- config file ---------------------------------------------------- */

/* Config files are a few hundred bytes; the cap only stops a wrong path
 * (a device, a model file) from being read whole. */
#define MAX_FILE_BYTES (1 << 20)

static char *read_small_file(const char *path, size_t *len, attnd_err *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        attnd_err_set(err, ATTND_EIO, "config %.300s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(MAX_FILE_BYTES + 1);
    if (!buf) {
        fclose(fp);
        attnd_err_set(err, ATTND_ENOMEM, "config %.300s: out of memory", path);
        return NULL;
    }
    size_t n = fread(buf, 1, MAX_FILE_BYTES + 1, fp);
    int failed = ferror(fp);
    int saved = errno;
    fclose(fp);
    if (failed) {
        free(buf);
        attnd_err_set(err, ATTND_EIO, "config %.300s: cannot read: %s", path, strerror(saved));
        return NULL;
    }
    if (n > MAX_FILE_BYTES) {
        free(buf);
        attnd_err_set(err, ATTND_EFORMAT, "config %.300s: larger than 1 MiB, not a config file",
                      path);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static const char *json_kind(const cJSON *it)
{
    if (cJSON_IsString(it))
        return "a string";
    if (cJSON_IsNumber(it))
        return "a number";
    if (cJSON_IsBool(it))
        return "a boolean";
    if (cJSON_IsNull(it))
        return "null";
    if (cJSON_IsArray(it))
        return "an array";
    if (cJSON_IsObject(it))
        return "an object";
    return "not a value";
}

static int set_from_json(cfg *c, const key *k, const cJSON *it, const char *name, attnd_err *err)
{
    bool want_number = k->type == KT_U32 || k->type == KT_SIZE;
    bool want_string = k->type != KT_U32;
    if (cJSON_IsString(it) && want_string)
        return set_from_text(c, k, it->valuestring, name, err);
    if (!cJSON_IsNumber(it) || !want_number) {
        const char *want = want_number && want_string ? "a number or a string like \"256MiB\""
                           : want_number              ? "a number"
                                                      : "a string";
        return attnd_err_set(err, ATTND_EINVAL, "%s must be %s, not %s", name, want, json_kind(it));
    }
    double d = it->valuedouble;
    char shown[48];
    snprintf(shown, sizeof shown, "%.15g", d);
    if (!isfinite(d) || d != floor(d))
        return attnd_err_set(err, ATTND_EINVAL, "%s: %s is not an integer", name, shown);
    if (d < 0 || d >= 18446744073709551616.0) {
        char range[80];
        fmt_range(range, sizeof range, k);
        return attnd_err_set(err, ATTND_ERANGE, "%s: %s is out of range (%s)", name, shown, range);
    }
    return store_number(c, k, (uint64_t)d, name, shown, err);
}

/* 1-based line of OFF in BUF, for pointing at a syntax error. */
static unsigned line_of(const char *buf, size_t off)
{
    unsigned line = 1;
    for (size_t i = 0; i < off; i++)
        line += buf[i] == '\n';
    return line;
}

static int apply_object(cfg *c, const cJSON *root, const char *path, attnd_err *err)
{
    if (!cJSON_IsObject(root))
        return attnd_err_set(err, ATTND_EFORMAT, "config %.300s: must be a JSON object, not %s",
                             path, json_kind(root));
    bool seen[N_KEYS] = {false};
    for (const cJSON *it = root->child; it; it = it->next) {
        const key *k = find_key(it->string);
        if (!k)
            return attnd_err_set(err, ATTND_EINVAL, "config %.300s: key '%.64s' is unknown", path,
                                 it->string);
        size_t idx = (size_t)(k - k_keys);
        /* cJSON keeps both copies; silently taking one would hide an edit. */
        if (seen[idx])
            return attnd_err_set(err, ATTND_EINVAL, "config %.300s: key '%s' appears twice", path,
                                 k->name);
        seen[idx] = true;
        char name[400];
        snprintf(name, sizeof name, "config %.300s: %s", path, k->name);
        int rc = set_from_json(c, k, it, name, err);
        if (rc != ATTND_OK)
            return rc;
    }
    return ATTND_OK;
}

int cfg_load_file(cfg *c, const char *path, attnd_err *err)
{
    size_t len = 0;
    char *buf = read_small_file(path, &len, err);
    if (!buf)
        return err ? err->code : ATTND_EIO;
    /* cJSON would stop at a NUL byte and ignore what follows it. */
    const char *nul = memchr(buf, '\0', len);
    const char *end = nul;
    cJSON *root = nul ? NULL : cJSON_ParseWithLengthOpts(buf, len + 1, &end, 1);
    if (!root) {
        size_t off = end && end >= buf && end <= buf + len ? (size_t)(end - buf) : 0;
        int rc = attnd_err_set(err, ATTND_EFORMAT, "config %.300s: malformed JSON at line %u",
                               path, line_of(buf, off));
        free(buf);
        return rc;
    }
    free(buf);
    cfg tmp = *c;
    int rc = apply_object(&tmp, root, path, err);
    cJSON_Delete(root);
    if (rc == ATTND_OK)
        *c = tmp;
    return rc;
}

/* ---- environment ---------------------------------------------------- */

static void env_name(char *buf, size_t n, const char *key_name)
{
    int w = snprintf(buf, n, "ATTND_%s", key_name);
    for (size_t i = 0; w > 0 && i < (size_t)w && i < n; i++)
        buf[i] = (char)toupper((unsigned char)buf[i]);
}

/* The first NAME=value in ENVP, as getenv would find it. */
static const char *env_find(char *const *envp, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; envp && envp[i]; i++)
        if (strncmp(envp[i], name, n) == 0 && envp[i][n] == '=')
            return envp[i] + n + 1;
    return NULL;
}

/* Unknown ATTND_* variables are not errors: tools around attnd (tests,
 * scripts) use the same prefix for their own settings. */
int cfg_load_env(cfg *c, char *const *envp, attnd_err *err)
{
    cfg tmp = *c;
    for (size_t i = 0; i < N_KEYS; i++) {
        char name[64];
        env_name(name, sizeof name, k_keys[i].name);
        const char *v = env_find(envp, name);
        if (v) {
            int rc = set_from_text(&tmp, &k_keys[i], v, name, err);
            if (rc != ATTND_OK)
                return rc;
        }
    }
    *c = tmp;
    return ATTND_OK;
}

/* ---- flags ---------------------------------------------------------- */

/* Walks ARGV once. With C, applies key flags to it; CONFIG (if non-NULL)
 * receives the last --config value. --config is accepted either way so that
 * cfg_parse_args takes the same command line as cfg_load. */
static int walk_args(cfg *c, int argc, char **argv, bool *help, const char **config,
                     attnd_err *err)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *help = true;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            if (i + 1 < argc)
                return attnd_err_set(err, ATTND_EINVAL, "unexpected argument '%.64s'", argv[i + 1]);
            break;
        }
        const key *k = NULL;
        bool is_config = false;
        const char *value = NULL;
        char spelled[72]; /* the flag as the user wrote it, for messages */
        if (strcmp(a, "-m") == 0) {
            k = find_key("model");
            snprintf(spelled, sizeof spelled, "-m");
        } else if (a[0] == '-' && a[1] == '-') {
            const char *eq = strchr(a + 2, '=');
            size_t n = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
            snprintf(spelled, sizeof spelled, "--%.*s", (int)(n < 64 ? n : 64), a + 2);
            char norm[64];
            if (n == 0 || n >= sizeof norm)
                return attnd_err_set(err, ATTND_EINVAL, "unknown flag '%.64s'", a);
            for (size_t j = 0; j < n; j++)
                norm[j] = a[2 + j] == '-' ? '_' : a[2 + j];
            norm[n] = '\0';
            if (strcmp(norm, "help") == 0)
                return attnd_err_set(err, ATTND_EINVAL, "--help takes no value");
            if (strcmp(norm, "config") == 0)
                is_config = true;
            else if (!(k = find_key(norm)))
                return attnd_err_set(err, ATTND_EINVAL, "unknown flag '%s'", spelled);
            if (eq)
                value = eq + 1;
        } else if (a[0] == '-') {
            return attnd_err_set(err, ATTND_EINVAL, "unknown flag '%.64s'", a);
        } else {
            return attnd_err_set(err, ATTND_EINVAL, "unexpected argument '%.64s'", a);
        }
        if (!value) {
            /* A following flag is more likely a forgotten value than a value;
             * --name=--x still passes one that starts with dashes. */
            if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)
                return attnd_err_set(err, ATTND_EINVAL, "%s: missing value", spelled);
            value = argv[++i];
        }
        if (is_config) {
            if (config)
                *config = value;
            continue;
        }
        if (c) {
            int rc = set_from_text(c, k, value, spelled, err);
            if (rc != ATTND_OK)
                return rc;
        }
    }
    return ATTND_OK;
}

int cfg_parse_args(cfg *c, int argc, char **argv, bool *help, attnd_err *err)
{
    bool local_help = false;
    if (!help)
        help = &local_help;
    cfg tmp = *c;
    int rc = walk_args(&tmp, argc, argv, help, NULL, err);
    if (rc == ATTND_OK)
        *c = tmp;
    return rc;
}

int cfg_load(cfg *c, int argc, char **argv, char *const *envp, bool *help, attnd_err *err)
{
    bool local_help = false;
    if (!help)
        help = &local_help;
    *help = false;
    cfg tmp;
    cfg_defaults(&tmp);
    /* The file comes first in precedence but its name may be among the flags. */
    const char *path = NULL;
    int rc = walk_args(NULL, argc, argv, help, &path, err);
    if (rc != ATTND_OK)
        return rc;
    if (!path)
        path = env_find(envp, "ATTND_CONFIG");
    if (path && *path && (rc = cfg_load_file(&tmp, path, err)) != ATTND_OK)
        return rc;
    if ((rc = cfg_load_env(&tmp, envp, err)) != ATTND_OK)
        return rc;
    if ((rc = walk_args(&tmp, argc, argv, help, NULL, err)) != ATTND_OK)
        return rc;
    if (!*help) {
        if (tmp.model[0] == '\0')
            return attnd_err_set(err, ATTND_EINVAL,
                                 "model: no model given (-m, --model, ATTND_MODEL or \"model\" in "
                                 "the config file)");
        if (tmp.default_max_tokens > tmp.max_tokens_cap)
            return attnd_err_set(err, ATTND_ERANGE,
                                 "default_max_tokens: %u is more than max_tokens_cap (%u)",
                                 tmp.default_max_tokens, tmp.max_tokens_cap);
    }
    *c = tmp;
    return ATTND_OK;
}

/* ---- output --------------------------------------------------------- */

static void flag_text(char *buf, size_t n, const key *k)
{
    char dashed[64];
    size_t j = 0;
    for (; k->name[j] && j + 1 < sizeof dashed; j++)
        dashed[j] = k->name[j] == '_' ? '-' : k->name[j];
    dashed[j] = '\0';
    snprintf(buf, n, "%s--%s %s", strcmp(k->name, "model") == 0 ? "-m, " : "", dashed, k->metavar);
}

static void default_text(char *buf, size_t n, const key *k)
{
    switch (k->type) {
    case KT_STR:
    case KT_CHOICE:
        if (k->def_str[0])
            snprintf(buf, n, "%s", k->def_str);
        else
            snprintf(buf, n, "\"\"");
        break;
    case KT_U32:
        snprintf(buf, n, "%llu", (unsigned long long)k->def);
        break;
    case KT_SIZE:
        fmt_size(buf, n, k->def);
        break;
    case KT_LEVEL:
        snprintf(buf, n, "%s", k->choices[k->def]);
        break;
    }
}

static void meaning_text(char *buf, size_t n, const key *k)
{
    char range[128];
    switch (k->type) {
    case KT_STR:
        /* Buffer limits are generous enough not to be worth a column of noise. */
        range[0] = '\0';
        break;
    case KT_U32:
    case KT_SIZE: {
        char r[80];
        if (k->range)
            snprintf(r, sizeof r, "%s", k->range);
        else
            fmt_range(r, sizeof r, k);
        snprintf(range, sizeof range, " (%s%s)", r, k->type == KT_SIZE ? "; K, M, G suffixes" : "");
        break;
    }
    case KT_CHOICE:
    case KT_LEVEL: {
        char ch[100];
        fmt_choices(ch, sizeof ch, k);
        snprintf(range, sizeof range, ": %s", ch);
        break;
    }
    }
    snprintf(buf, n, "%s%s", k->help, range);
}

void cfg_print_help(FILE *out)
{
    char flag[N_KEYS + 2][96], env[N_KEYS + 2][64], def[N_KEYS + 2][48], mean[N_KEYS + 2][256];
    size_t rows = 0;
    for (size_t i = 0; i < N_KEYS; i++, rows++) {
        flag_text(flag[rows], sizeof flag[rows], &k_keys[i]);
        env_name(env[rows], sizeof env[rows], k_keys[i].name);
        default_text(def[rows], sizeof def[rows], &k_keys[i]);
        meaning_text(mean[rows], sizeof mean[rows], &k_keys[i]);
    }
    snprintf(flag[rows], sizeof flag[rows], "--config PATH");
    snprintf(env[rows], sizeof env[rows], "ATTND_CONFIG");
    snprintf(def[rows], sizeof def[rows], "(none)");
    snprintf(mean[rows], sizeof mean[rows], "JSON config file (keys as in config/attnd.json)");
    rows++;
    snprintf(flag[rows], sizeof flag[rows], "-h, --help");
    env[rows][0] = def[rows][0] = '\0';
    snprintf(mean[rows], sizeof mean[rows], "print this help");
    rows++;

    size_t wf = strlen("FLAG"), we = strlen("ENVIRONMENT"), wd = strlen("DEFAULT");
    for (size_t r = 0; r < rows; r++) {
        size_t lf = strlen(flag[r]), le = strlen(env[r]), ld = strlen(def[r]);
        wf = lf > wf ? lf : wf;
        we = le > we ? le : we;
        wd = ld > wd ? ld : wd;
    }
    fprintf(out, "Settings, each overriding the one before: built-in defaults, the config file,\n"
                 "ATTND_* environment variables, flags. Flags take --name=value or --name value,\n"
                 "with dashes or underscores; the config file uses the names with\n"
                 "underscores.\n\n");
    fprintf(out, "  %-*s  %-*s  %-*s  %s\n", (int)wf, "FLAG", (int)we, "ENVIRONMENT", (int)wd,
            "DEFAULT", "MEANING");
    for (size_t r = 0; r < rows; r++)
        fprintf(out, "  %-*s  %-*s  %-*s  %s\n", (int)wf, flag[r], (int)we, env[r], (int)wd,
                def[r], mean[r]);
}

static void print_json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(out, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(out, "\\u%04x", ch);
        else
            fputc(ch, out);
    }
    fputc('"', out);
}

void cfg_print_json(const cfg *c, FILE *out)
{
    fprintf(out, "{\n");
    for (size_t i = 0; i < N_KEYS; i++) {
        const key *k = &k_keys[i];
        fprintf(out, "  \"%s\": ", k->name);
        switch (k->type) {
        case KT_STR:
        case KT_CHOICE: {
            const char *s = cfield(c, k);
            /* The key is a secret; showing that one is set is enough. */
            if (strcmp(k->name, "api_key") == 0 && s[0])
                s = "***";
            print_json_string(out, s);
            break;
        }
        case KT_U32:
            fprintf(out, "%u", *(const uint32_t *)cfield(c, k));
            break;
        case KT_SIZE:
            fprintf(out, "%llu", (unsigned long long)*(const uint64_t *)cfield(c, k));
            break;
        case KT_LEVEL:
            print_json_string(out, cfg_log_level_name(*(const cfg_log_level *)cfield(c, k)));
            break;
        }
        fprintf(out, "%s\n", i + 1 < N_KEYS ? "," : "");
    }
    fprintf(out, "}\n");
}
