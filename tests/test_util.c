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

void test_vectors_load(const char *rel, test_vectors *vs)
{
    static const char sep[] = "\n__ggml_vocab_test__\n";
    char path[4096];
    memset(vs, 0, sizeof *vs);
    snprintf(path, sizeof path, "%s.inp", test_shared(rel));
    size_t len;
    vs->inp = test_read_file(path, &len);
    cr_assert(vs->inp, "cannot read %s", path);
    const size_t seplen = strlen(sep);
    size_t off = 0;
    while (off < len) {
        char *s = memmem(vs->inp + off, len - off, sep, seplen);
        cr_assert(s, "%s: text %zu is not followed by the separator", path, vs->n);
        cr_assert_lt(vs->n, 64u);
        vs->texts[vs->n].p = vs->inp + off;
        vs->texts[vs->n].n = (size_t)(s - (vs->inp + off));
        vs->n++;
        off = (size_t)(s - vs->inp) + seplen;
    }
    snprintf(path, sizeof path, "%s.out", test_shared(rel));
    vs->outp = test_read_file(path, NULL);
    cr_assert(vs->outp, "cannot read %s", path);
    size_t nl = 0;
    for (char *line = vs->outp; *line && nl < 64;) {
        char *end = strchr(line, '\n');
        if (end)
            *end = '\0';
        vs->lines[nl++] = line;
        if (!end)
            break;
        line = end + 1;
    }
    cr_assert_eq(nl, vs->n, "%s: %zu lines for %zu texts", path, nl, vs->n);
}

void test_vectors_free(test_vectors *vs)
{
    free(vs->inp);
    free(vs->outp);
}

size_t test_parse_ids(const char *s, int32_t *ids, size_t cap)
{
    size_t n = 0;
    for (;;) {
        char *end;
        long x = strtol(s, &end, 10);
        if (end == s)
            break;
        cr_assert_lt(n, cap);
        ids[n++] = (int32_t)x;
        s = end;
    }
    return n;
}

char *test_golden_json(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, TEST_GOLDEN_DIR "/%s.json", name);
    char *json = test_read_file(path, NULL);
    cr_assert(json, "cannot read %s", path);
    return json;
}

char *test_golden_model(const char *name)
{
    char *json = test_golden_json(name);
    char *args = test_json_str(json, "mkmodel"), *vocab = test_json_str(json, "vocab_file");
    char file[256];
    snprintf(file, sizeof file, "golden-%s.gguf", name);
    char *path = test_tmp_path(file);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' mkmodel -o '%s' --vocab '%s' %s", test_attnd_bin(), path,
             test_shared(vocab), args);
    cr_assert_eq(test_run(cmd, NULL), 0, "%s", cmd);
    free(args);
    free(vocab);
    free(json);
    return path;
}
