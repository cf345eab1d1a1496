// Helpers shared by the unit tests (header-only: each test is its own executable).
#pragma once
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// A fresh temporary folder; removed by test_rmdir.
static inline char *test_mkdtemp(void) {
    char tmpl[] = "/tmp/ds-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

static inline void test_rmdir(char *dir) {
    if (!dir) return;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
    free(dir);
}

// max |a - b| / max |b| over n values (relative to the largest reference magnitude).
static inline double test_max_rel_diff(const float *a, const float *b, long n) {
    double maxd = 0, maxb = 1e-30;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > maxd || d != d) maxd = d != d ? INFINITY : d;
        if (fabs((double)b[i]) > maxb) maxb = fabs((double)b[i]);
    }
    return maxd / maxb;
}

// A small LCG for the mutation tests (deterministic, no shared state).
static inline uint32_t rng_next(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*s >> 33);
}

// The fixture root (tests/fixtures, or DS_FIXTURES as CTest sets it).
static inline const char *fixtures(void) {
    const char *d = getenv("DS_FIXTURES");
    return d ? d : "tests/fixtures";
}

#ifdef fail_msg // cmocka included first
// Ids shared with tools/make_fixtures.sh: one comma-separated line in ids.txt.
static inline int read_ids(int *ids, int cap) {
    char path[512];
    snprintf(path, sizeof path, "%s/ids.txt", fixtures());
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("cannot open %s", path);
    int n = 0;
    while (n < cap && fscanf(f, "%d", &ids[n]) == 1) {
        n++;
        if (fgetc(f) != ',') break;
    }
    fclose(f);
    return n;
}
#endif
