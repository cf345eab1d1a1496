// Helpers shared by the tokenizer tests (header-only; include after cmocka and test_util.h).
#pragma once
#include <cjson/cJSON.h>

#include "io/fileutil.h"
#include "tokenizer/tokenizer.h"

// The parsed lines of tests/fixtures/tokenizer/<name>.jsonl ({"text", "ids", "ids_plain"}),
// *n of them; free with test_jsonl_free.
static inline cJSON **test_jsonl_read(const char *name, int *n) {
    char path[600];
    snprintf(path, sizeof path, "%s/tokenizer/%s.jsonl", fixtures(), name);
    char *data;
    size_t size;
    ds_error err = {{0}};
    if (file_read_all(path, &data, &size, &err)) fail_msg("%s", err.msg);
    int cap = 1024;
    cJSON **lines = malloc(sizeof *lines * (size_t)cap);
    *n = 0;
    for (char *line = data, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        if (!nl) nl = line + strlen(line) - 1;
        else *nl = 0;
        if (!*line) continue;
        if (*n == cap) lines = realloc(lines, sizeof *lines * (size_t)(cap *= 2));
        lines[*n] = cJSON_Parse(line);
        assert_non_null(lines[*n]);
        (*n)++;
    }
    free(data);
    return lines;
}

static inline void test_jsonl_free(cJSON **lines, int n) {
    for (int i = 0; i < n; i++) cJSON_Delete(lines[i]);
    free(lines);
}

// decode(plain) == text, or, where the tokenizer normalised the text (Qwen's NFC, allowed
// when nfc_ok), the decoded text encodes to the same ids.
static inline bool test_round_trip_ok(const ds_tokenizer *t, const int *plain, int np, const char *text, size_t tl,
                                      bool nfc_ok) {
    ds_error err = {{0}};
    char *dec;
    size_t dl;
    assert_int_equal(tokenizer_decode(t, plain, np, false, &dec, &dl, &err), DS_OK);
    bool ok = dl == tl && memcmp(dec, text, tl) == 0;
    if (!ok && nfc_ok) {
        int *again, na;
        assert_int_equal(tokenizer_encode(t, dec, dl, false, &again, &na, &err), DS_OK);
        ok = na == np && memcmp(again, plain, (size_t)np * sizeof(int)) == 0;
        free(again);
    }
    free(dec);
    return ok;
}
