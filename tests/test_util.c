/* test_util.c - see test_util.h. */
#include "test_util.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

const char *test_shared(const char *rel)
{
    static char buf[4][4096];
    static int slot;
    char *b = buf[slot++ & 3];
    const char *root = getenv("ATTND_SHARED");
    if (!root || !*root)
        root = ATTND_SOURCE_DIR "/../shared";
    snprintf(b, sizeof buf[0], "%s/%s", root, rel);
    return b;
}

char *test_read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    char *data = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            cap = (n + 65536 + 1) * 2;
            char *t = realloc(data, cap);
            if (!t) {
                free(data);
                fclose(fp);
                return NULL;
            }
            data = t;
        }
        size_t got = fread(data + n, 1, 65536, fp);
        n += got;
        if (got == 0)
            break;
    }
    fclose(fp);
    data[n] = '\0';
    if (len)
        *len = n;
    return data;
}

char *test_tmp_path(const char *name)
{
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    size_t n = strlen(dir) + strlen(name) + 64;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/attnd-test-%ld-%s", dir, (long)getpid(), name);
    return p;
}

const char *test_attnd_bin(void)
{
    const char *b = getenv("ATTND_BIN");
    return (b && *b) ? b : ATTND_BIN_DEFAULT;
}

int test_run(const char *cmd, char **out)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (cap - n < 2) {
            char *t = realloc(buf, cap * 2);
            if (!t)
                break;
            buf = t;
            cap *= 2;
        }
    }
    int st = pclose(p);
    if (buf)
        buf[n] = '\0';
    if (out)
        *out = buf;
    else
        free(buf);
    return (st >= 0 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
}

static cJSON *json_item(const char *json, const char *key, cJSON **root)
{
    *root = cJSON_Parse(json);
    cr_assert(*root, "golden JSON does not parse");
    cJSON *item = cJSON_GetObjectItemCaseSensitive(*root, key);
    cr_assert(item, "golden JSON has no '%s'", key);
    return item;
}

int32_t *test_json_ints(const char *json, const char *key, size_t *n)
{
    cJSON *root, *arr = json_item(json, key, &root);
    cr_assert(cJSON_IsArray(arr), "'%s' is not an array", key);
    *n = (size_t)cJSON_GetArraySize(arr);
    int32_t *v = malloc((*n + 1) * sizeof *v);
    size_t i = 0;
    const cJSON *el;
    cJSON_ArrayForEach(el, arr)
    {
        cr_assert(cJSON_IsNumber(el), "'%s' holds a non-number", key);
        v[i++] = (int32_t)el->valuedouble;
    }
    cJSON_Delete(root);
    return v;
}

char *test_json_str(const char *json, const char *key)
{
    cJSON *root, *item = json_item(json, key, &root);
    cr_assert(cJSON_IsString(item), "'%s' is not a string", key);
    char *s = strdup(item->valuestring);
    cJSON_Delete(root);
    return s;
}

long test_json_int(const char *json, const char *key)
{
    cJSON *root, *item = json_item(json, key, &root);
    cr_assert(cJSON_IsNumber(item), "'%s' is not a number", key);
    long v = (long)item->valuedouble;
    cJSON_Delete(root);
    return v;
}
