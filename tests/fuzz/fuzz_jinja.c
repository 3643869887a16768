/* fuzz_jinja.c - libFuzzer target for the chat-template parser and renderer
 * (server/jinja/jinja.h): the input is parsed as a template and, when it
 * parses, rendered with a small conversation. Any outcome but a crash, a
 * leak or a hang is fine; a render's output must be as long as it says.
 * Build with clang and -DATTND_FUZZ=ON; seeded with tests/data/templates. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jinja.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char k_vars[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"be brief\"}, {\"role\": \"user\", "
    "\"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"hello\"}], "
    "\"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\", "
    "\"tools\": null}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cJSON *vars;
    if (!vars)
        vars = cJSON_Parse(k_vars);
    jinja_tmpl *t;
    attnd_err err = {0};
    if (jinja_parse((const char *)data, size, &t, &err) != ATTND_OK)
        return 0;
    jinja_opts opts = {.now = 1768478400, .max_output = 1 << 20};
    char *out;
    size_t n;
    if (jinja_render(t, vars, &opts, &out, &n, &err) == ATTND_OK) {
        if (strlen(out) > n)
            __builtin_trap();
        free(out);
    }
    jinja_free(t);
    return 0;
}
