// A per-run temporary folder for tests that write files (include after cmocka.h).
#pragma once
#include "test_util.h"

static char *g_dir; // this run's temp folder

static int group_setup(void **state) {
    (void)state;
    g_dir = test_mkdtemp();
    return g_dir ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    test_rmdir(g_dir);
    return 0;
}

// g_dir/name in one of 4 rotating static buffers.
static const char *tpath(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(p, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}
