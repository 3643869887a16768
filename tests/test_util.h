/* test_util.h - helpers shared by the Criterion suites: where ../shared is,
 * reading whole files, temporary paths. */
#ifndef ATTND_TEST_UTIL_H
#define ATTND_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Path of REL inside the shared reference data: $ATTND_SHARED if set, else
 * ../shared next to the source tree. Returns a static buffer per call slot;
 * copy it if you need it past the next call. */
const char *test_shared(const char *rel);

/* Reads a whole file into a malloc'd, NUL-terminated buffer; NULL on error. */
char *test_read_file(const char *path, size_t *len);

/* A fresh path under the build's temporary directory, e.g. for written files.
 * Returns a malloc'd string. */
char *test_tmp_path(const char *name);

/* Path of the attnd binary under test. */
const char *test_attnd_bin(void);

/* Runs a shell command, captures stdout (malloc'd) and returns the exit status
 * (-1 if it could not run). */
int test_run(const char *cmd, char **out);

/* Golden-file JSON (parsed with cJSON). Each fails the test if KEY is
 * missing or of the wrong type. Arrays and strings are malloc'd. */
int32_t *test_json_ints(const char *json, const char *key, size_t *n);
char *test_json_str(const char *json, const char *key);
long test_json_int(const char *json, const char *key);

/* The model-family goldens committed in tests/data/golden (made by
 * tests/ref/make-goldens.sh): the json of golden NAME (malloc'd), and its
 * model rebuilt by `attnd mkmodel` from the arguments the json records, in
 * a fresh temporary file (malloc'd path; the caller removes it). */
#define TEST_GOLDEN_DIR ATTND_SOURCE_DIR "/tests/data/golden"
char *test_golden_json(const char *name);
char *test_golden_model(const char *name);

/* A vocabulary's test vectors: REL.inp (texts, each followed by
 * "\n__ggml_vocab_test__\n") and REL.out (the expected ids of each text on
 * its line), REL relative to the shared data. */
typedef struct test_text {
    const char *p;
    size_t n;
} test_text;

typedef struct test_vectors {
    char *inp, *outp;
    test_text texts[64];
    size_t n;
    char *lines[64]; /* expected ids, one line per text */
} test_vectors;

void test_vectors_load(const char *rel, test_vectors *vs);
void test_vectors_free(test_vectors *vs);
/* Space-separated ids of S into IDS (at most CAP); returns the count. */
size_t test_parse_ids(const char *s, int32_t *ids, size_t cap);

#endif
