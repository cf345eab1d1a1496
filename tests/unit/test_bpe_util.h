// Synthetic byte-level BPE tokenizer folders for tests (include after cmocka.h).
#pragma once
#include <cjson/cJSON.h>
#include "io/fileutil.h"
#include "test_util.h"

// A byte-level BPE over the 256 alphabet chars plus `extra` tokens (ids from 256) and
// merges; the rest of tokenizer.json is given as JSON members.
static char *make_bpe_dir(const char *extra_vocab, const char *merges, const char *rest, const char *config) {
    char *dir = test_mkdtemp();
    assert_non_null(dir);
    cJSON *vocab = cJSON_CreateObject();
    for (int b = 0; b < 256; b++) {
        int n = 0, cp = b;
        if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))) {
            for (int i = 0; i < b; i++)
                if (!((i >= 0x21 && i <= 0x7E) || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF))) n++;
            cp = 256 + n;
        }
        char s[4] = {0};
        if (cp < 0x80) s[0] = (char)cp;
        else s[0] = (char)(0xC0 | cp >> 6), s[1] = (char)(0x80 | (cp & 0x3F));
        cJSON_AddNumberToObject(vocab, s, b);
    }
    cJSON *ex = cJSON_Parse(extra_vocab), *it;
    int id = 256;
    cJSON_ArrayForEach(it, ex) cJSON_AddNumberToObject(vocab, it->valuestring, id++);
    cJSON_Delete(ex);
    char *vs = cJSON_PrintUnformatted(vocab);
    cJSON_Delete(vocab);
    size_t cap = strlen(vs) + strlen(merges) + strlen(rest) + 256;
    char *json = malloc(cap);
    snprintf(json, cap, "{\"model\": {\"type\": \"BPE\", \"vocab\": %s, \"merges\": %s}, %s}", vs, merges, rest);
    free(vs);
    char *p = file_join(dir, "tokenizer.json");
    FILE *f = fopen(p, "wb");
    fputs(json, f);
    fclose(f);
    free(p);
    free(json);
    if (config) {
        p = file_join(dir, "tokenizer_config.json");
        f = fopen(p, "wb");
        fputs(config, f);
        fclose(f);
        free(p);
    }
    return dir;
}

