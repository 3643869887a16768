/* cfg.h - the server's configuration: built-in defaults (the same values
 * config/attnd.json documents), then a JSON config file, then ATTND_*
 * environment variables, then command-line flags, each overriding the last.
 *
 * One table of keys drives all four sources and `attnd serve --help`, so a key
 * is declared once. A bad value stops startup with a message naming the key
 * and the source it came from. */
#ifndef ATTND_CFG_H
#define ATTND_CFG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "attnd_err.h"

typedef enum cfg_log_level {
    CFG_LOG_ERROR = 0,
    CFG_LOG_WARN = 1,
    CFG_LOG_INFO = 2,
    CFG_LOG_DEBUG = 3,
} cfg_log_level;

typedef struct cfg {
    char host[256];            /* host: listen address (default 127.0.0.1) */
    uint32_t port;             /* port: 1..65535 (default 8080) */
    char model[4096];          /* model: GGUF path (required to serve) */
    char weights[8];           /* weights: "copy" (into huge pages) or "map" */
    uint32_t threads;          /* threads: engine worker threads, 0 = cores */
    uint32_t http_threads;     /* http_threads: libmicrohttpd worker threads */
    uint64_t kv_bytes;         /* kv_bytes: KV pool budget in bytes */
    uint32_t kv_block_size;    /* kv_block_size: tokens per KV block */
    char kv_type[8];           /* kv_type: "f16" or "f32" */
    char prefix_cache[4];      /* prefix_cache: "on" or "off" */
    uint32_t max_batch_tokens; /* max_batch_tokens: tokens per engine step */
    uint32_t max_seqs;         /* max_seqs: sequences running at once */
    uint32_t queue_limit;      /* queue_limit: waiting requests before 503 */
    uint64_t max_body_bytes;   /* max_body_bytes: request body limit (413 beyond) */
    uint64_t stream_buffer_bytes; /* stream_buffer_bytes: unread stream output before it pauses */
    uint32_t default_max_tokens;
    uint32_t max_tokens_cap;   /* max_tokens above this: 400 */
    uint32_t drain_timeout_s;  /* drain_timeout_s: SIGTERM grace for running requests */
    uint32_t request_timeout_s;/* request_timeout_s: deadline of one generation, 0 = none */
    uint32_t conn_timeout_s;   /* conn_timeout_s: idle/slow connection timeout */
    uint32_t max_connections;  /* max_connections: open HTTP connections at once */
    uint32_t attention_max_cells; /* attention_max_cells: weights one /v1/attention answer may hold */
    char api_key[256];         /* api_key: empty = no authentication */
    char cors_origins[1024];   /* cors_origins: comma-separated origins (or *) browsers may call from */
    char chat_template[4096];  /* chat_template: a .jinja file replacing the model's, empty = the model's */
    cfg_log_level log_level;   /* log_level: error, warn, info, debug */
} cfg;

/* Fills C with the built-in defaults. */
void cfg_defaults(cfg *c);

/* Applies a JSON object of keys from PATH. Unknown keys are an error (a typo
 * must not silently keep a default). */
int cfg_load_file(cfg *c, const char *path, attnd_err *err);

/* Applies ATTND_<KEY> variables (upper case) from ENVP (NULL-terminated,
 * like environ). ATTND_CONFIG is not a key: see cfg_load. */
int cfg_load_env(cfg *c, char *const *envp, attnd_err *err);

/* Applies --key value / --key=value flags (also --kv-type spelled with dashes
 * or underscores, and -m for model). ARGV[0] is the subcommand name. Sets
 * *help when --help/-h is given. */
int cfg_parse_args(cfg *c, int argc, char **argv, bool *help, attnd_err *err);

/* All of it in order: defaults, file (from --config or ATTND_CONFIG, if
 * any), environment, flags; then cross-key checks (e.g. model required,
 * default_max_tokens <= max_tokens_cap). */
int cfg_load(cfg *c, int argc, char **argv, char *const *envp, bool *help, attnd_err *err);

/* Lists every key: flag, environment variable, default, meaning. */
void cfg_print_help(FILE *out);

/* Writes the effective configuration as JSON (api_key masked). */
void cfg_print_json(const cfg *c, FILE *out);

const char *cfg_log_level_name(cfg_log_level l);

#endif
