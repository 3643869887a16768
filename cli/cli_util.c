/* cli_util.c - option value parsing shared by the subcommands. */
#include <errno.h>
#include <math.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

bool cli_parse_u64(const char *opt, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!s || *s < '0' || *s > '9') {
        fprintf(stderr, "attnd: %s: '%s' is not a non-negative integer\n", opt, s ? s : "");
        return false;
    }
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        fprintf(stderr, "attnd: %s: '%s' is not a non-negative integer\n", opt, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_u32(const char *opt, const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    uint64_t v;
    if (!cli_parse_u64(opt, s, &v))
        return false;
    if (v < lo || v > hi) {
        fprintf(stderr, "attnd: %s: %llu is out of range (%u to %u)\n", opt,
                (unsigned long long)v, lo, hi);
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

bool cli_parse_f32(const char *opt, const char *s, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v)) {
        fprintf(stderr, "attnd: %s: '%s' is not a number\n", opt, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_weights(const char *s, gguf_load *out)
{
    const int how = gguf_load_parse(s);
    if (how < 0) {
        fprintf(stderr, "attnd: --weights: '%s' is not copy or map\n", s);
        return false;
    }
    *out = (gguf_load)how;
    return true;
}

bool cli_parse_kv_type(const char *s, kv_dtype *out)
{
    if (strcmp(s, "f32") == 0)
        *out = KV_DTYPE_F32;
    else if (strcmp(s, "f16") == 0)
        *out = KV_DTYPE_F16;
    else {
        fprintf(stderr, "attnd: --kv-type: '%s' is not f32 or f16\n", s);
        return false;
    }
    return true;
}
