// .npy writing/reading (round trips, the exact header numpy expects, malformed headers,
// truncations) and the small file helpers the writers share.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/stat.h>

#include "io/fileutil.h"
#include "io/npy.h"
#include "test_tmpdir.h"

static void expect_msg(const ds_error *err, const char *a, const char *b) {
    if (a && !strstr(err->msg, a)) fail_msg("message '%s' lacks '%s'", err->msg, a);
    if (b && !strstr(err->msg, b)) fail_msg("message '%s' lacks '%s'", err->msg, b);
}

// ---- round trips ----

static void round_trip(const char *name, int ndim, const int64_t *shape, const char *tuple) {
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= shape[i];
    float *x = malloc((size_t)(numel ? numel : 1) * sizeof *x);
    assert_non_null(x);
    for (int64_t i = 0; i < numel; i++) x[i] = (float)i * 0.25f - 3.0f;
    const char *path = tpath(name);
    ds_error err = {{0}};
    assert_int_equal(npy_write_f32(path, x, ndim, shape, &err), DS_OK);

    char *raw;
    size_t size;
    assert_int_equal(file_read_all(path, &raw, &size, &err), DS_OK);
    size_t hl = (size_t)(unsigned char)raw[8] | (size_t)(unsigned char)raw[9] << 8;
    assert_memory_equal(raw, "\x93NUMPY\x01\x00", 8);
    assert_int_equal((10 + hl) % 64, 0);
    assert_int_equal(raw[10 + hl - 1], '\n');
    assert_int_equal(size, 10 + hl + (size_t)numel * 4);
    char want[128];
    snprintf(want, sizeof want, "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }", tuple);
    assert_memory_equal(raw + 10, want, strlen(want));
    free(raw);

    float *y;
    int nd = -1;
    int64_t sh[4];
    assert_int_equal(npy_read_f32(path, &y, &nd, sh, &err), DS_OK);
    assert_int_equal(nd, ndim);
    for (int i = 0; i < ndim; i++) assert_int_equal(sh[i], shape[i]);
    if (numel) assert_memory_equal(y, x, (size_t)numel * 4);
    free(y);
    free(x);
}

static void test_round_trip(void **state) {
    (void)state;
    round_trip("logits.npy", 2, (int64_t[]){4, 256}, "(4, 256)");
    round_trip("vec.npy", 1, (int64_t[]){5}, "(5,)");
    round_trip("scalar.npy", 0, NULL, "()");
    round_trip("empty.npy", 2, (int64_t[]){0, 3}, "(0, 3)");
    round_trip("four.npy", 4, (int64_t[]){2, 3, 1, 4}, "(2, 3, 1, 4)");
    // Overwriting leaves only the new file (no temp beside it).
    round_trip("logits.npy", 2, (int64_t[]){1, 2}, "(1, 2)");
    char *tmp = NULL;
    size_t n;
    ds_error err;
    char name[64];
    snprintf(name, sizeof name, "logits.npy.tmp.%ld", (long)getpid());
    assert_int_equal(file_read_all(tpath(name), &tmp, &n, &err), DS_ERR_IO);
}

static void test_write_errors(void **state) {
    (void)state;
    float x[2] = {1, 2};
    ds_error err = {{0}};
    assert_int_equal(npy_write_f32(tpath("no/dir/x.npy"), x, 1, (int64_t[]){2}, &err), DS_ERR_IO);
    expect_msg(&err, "x.npy", NULL);
    assert_int_equal(npy_write_f32(tpath("x.npy"), x, 5, (int64_t[]){1, 1, 1, 1, 2}, &err), DS_ERR_ARG);
    assert_int_equal(npy_write_f32(tpath("x.npy"), x, 1, (int64_t[]){-2}, &err), DS_ERR_ARG);
    assert_int_equal(npy_write_f32(tpath("x.npy"), NULL, 1, (int64_t[]){2}, &err), DS_ERR_ARG);
}

// A .npy of the given version with `dict` as header (padded like numpy) and dlen data bytes.
static void write_npy(const char *path, int major, const char *dict, size_t dlen) {
    size_t pre = major == 1 ? 10 : 12, d = strlen(dict), total = pre + d + 1;
    total += (64 - total % 64) % 64;
    size_t hl = total - pre, n = total + dlen;
    unsigned char *b = calloc(1, n);
    assert_non_null(b);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)major;
    for (size_t i = 0; i < pre - 8; i++) b[8 + i] = (unsigned char)(hl >> (8 * i));
    memset(b + pre, ' ', hl);
    memcpy(b + pre, dict, d);
    b[total - 1] = '\n';
    write_bytes(path, b, n);
    free(b);
}

static void test_v2_and_variants(void **state) {
    (void)state;
    const char *path = tpath("v2.npy");
    ds_error err = {{0}};
    float *y;
    int nd;
    int64_t sh[4];
    write_npy(path, 2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 24);
    assert_int_equal(npy_read_f32(path, &y, &nd, sh, &err), DS_OK);
    assert_int_equal(nd, 2);
    assert_int_equal(sh[1], 3);
    free(y);
    // Other key order, no trailing comma, double quotes, a trailing comma in the tuple.
    write_npy(path, 1, "{\"shape\": (6,), \"fortran_order\": False, \"descr\": \"<f4\"}", 24);
    assert_int_equal(npy_read_f32(path, &y, &nd, sh, &err), DS_OK);
    assert_int_equal(nd, 1);
    assert_int_equal(sh[0], 6);
    free(y);
}

static void expect_bad_npy(int major, const char *dict, size_t dlen, ds_status code, const char *phrase) {
    const char *path = tpath("bad-logits.npy");
    write_npy(path, major, dict, dlen);
    float *y = (float *)1;
    int nd;
    int64_t sh[4];
    ds_error err = {{0}};
    ds_status st = npy_read_f32(path, &y, &nd, sh, &err);
    if (st != code) fail_msg("'%s': expected status %d, got %d (%s)", dict, code, st, err.msg);
    expect_msg(&err, "bad-logits.npy", phrase);
    assert_null(y);
}

#define D(descr, fo, shape) "{'descr': '" descr "', 'fortran_order': " fo ", 'shape': " shape ", }"

static void test_malformed(void **state) {
    (void)state;
    const char *path = tpath("bad-logits.npy");
    float *y;
    int nd;
    int64_t sh[4];
    ds_error err = {{0}};
    write_bytes(path, "", 0);
    assert_int_equal(npy_read_f32(path, &y, &nd, sh, &err), DS_ERR_FORMAT);
    expect_msg(&err, "bad-logits.npy", "too short");
    write_bytes(path, "\x93NUMPX\x01\x00\x10\x00{}", 12);
    assert_int_equal(npy_read_f32(path, &y, &nd, sh, &err), DS_ERR_FORMAT);
    expect_msg(&err, "bad-logits.npy", "magic");
    write_bytes(path, "\x93NUMPY\x09\x00\x10\x00{}", 12);
    assert_int_equal(npy_read_f32(path, &y, &nd, sh, &err), DS_ERR_FORMAT);
    expect_msg(&err, "bad-logits.npy", "version 9.0");
    write_bytes(path, "\x93NUMPY\x01\x00\xff\x7f{}", 12);
    assert_int_equal(npy_read_f32(path, &y, &nd, sh, &err), DS_ERR_FORMAT);
    expect_msg(&err, "bad-logits.npy", "header length 32767 exceeds the file size");
    write_bytes(path, "\x93NUMPY\x02\x00\xff\xff\xff\xff{}", 14);
    assert_int_equal(npy_read_f32(path, &y, &nd, sh, &err), DS_ERR_FORMAT);
    expect_msg(&err, "bad-logits.npy", "header length");
    assert_int_equal(npy_read_f32(tpath("missing.npy"), &y, &nd, sh, &err), DS_ERR_IO);
    expect_msg(&err, "missing.npy", "cannot open");
    assert_int_equal(npy_read_f32(g_dir, &y, &nd, sh, &err), DS_ERR_IO);
    assert_int_equal(mkfifo(tpath("fifo.npy"), 0600), 0); // must not block
    assert_int_equal(npy_read_f32(tpath("fifo.npy"), &y, &nd, sh, &err), DS_ERR_IO);
    expect_msg(&err, "fifo.npy", "not a regular file");

    expect_bad_npy(1, D("<f8", "False", "(2,)"), 16, DS_ERR_FORMAT, "'descr' is not '<f4'");
    expect_bad_npy(1, D(">f4", "False", "(2,)"), 8, DS_ERR_FORMAT, "'descr'");
    expect_bad_npy(1, D("<f4", "True", "(2,)"), 8, DS_ERR_FORMAT, "'fortran_order' is not False");
    expect_bad_npy(1, D("<f4", "False", "(1, 1, 1, 1, 2)"), 8, DS_ERR_FORMAT, "more than 4 dims");
    expect_bad_npy(1, D("<f4", "False", "(-1, 2)"), 8, DS_ERR_FORMAT, "'shape'");
    expect_bad_npy(1, D("<f4", "False", "(4, x)"), 8, DS_ERR_FORMAT, "'shape'");
    expect_bad_npy(1, D("<f4", "False", "(4 2)"), 32, DS_ERR_FORMAT, "'shape'");
    expect_bad_npy(1, D("<f4", "False", "[2]"), 8, DS_ERR_FORMAT, "'shape' is not a tuple");
    expect_bad_npy(1, D("<f4", "False", "(99999999999999999999999,)"), 8, DS_ERR_FORMAT, "'shape'");
    expect_bad_npy(1, D("<f4", "False", "(9223372036854775807, 4)"), 8, DS_ERR_FORMAT, "overflows");
    expect_bad_npy(1, D("<f4", "False", "(4, 256)"), 4 * 256 * 4 - 4, DS_ERR_FORMAT,
                   "holds 4092 data bytes but shape (4, 256) of <f4 needs 4096");
    expect_bad_npy(1, D("<f4", "False", "(2,)"), 12, DS_ERR_FORMAT, "data bytes");
    expect_bad_npy(1, "{'descr': '<f4', 'fortran_order': False}", 8, DS_ERR_FORMAT, "missing");
    expect_bad_npy(1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", 8, DS_ERR_FORMAT,
                   "duplicate key");
    expect_bad_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 8, DS_ERR_FORMAT,
                   "unexpected key");
    expect_bad_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", 8, DS_ERR_FORMAT, "expected");
    expect_bad_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x", 8, DS_ERR_FORMAT, "after the dict");
    expect_bad_npy(1, "{'descr: '<f4'}", 8, DS_ERR_FORMAT, ".npy header");
    expect_bad_npy(1, "", 8, DS_ERR_FORMAT, "not a dict");
}

// Every truncation and a few hundred byte flips of a valid file: clean success or error.
static void test_mutations(void **state) {
    (void)state;
    const char *good = tpath("good.npy"), *path = tpath("mut.npy");
    float x[6] = {1, 2, 3, 4, 5, 6};
    ds_error err = {{0}};
    assert_int_equal(npy_write_f32(good, x, 2, (int64_t[]){2, 3}, &err), DS_OK);
    char *orig;
    size_t size;
    assert_int_equal(file_read_all(good, &orig, &size, &err), DS_OK);
    unsigned char *m = malloc(size);
    assert_non_null(m);
    uint64_t seed = 99;
    for (size_t it = 0; it <= size + 600; it++) {
        size_t len = it <= size ? it : size;
        memcpy(m, orig, size);
        if (it > size) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            m[(seed >> 33) % 80] = (unsigned char)(seed >> 17);
        }
        write_bytes(path, m, len);
        float *y = NULL;
        int nd;
        int64_t sh[4];
        ds_status st = npy_read_f32(path, &y, &nd, sh, &err);
        if (st == DS_OK) {
            int64_t numel = 1;
            for (int i = 0; i < nd; i++) numel *= sh[i];
            assert_true(numel * 4 <= (int64_t)size);
            free(y);
        } else {
            assert_null(y);
            expect_msg(&err, "mut.npy", NULL);
        }
    }
    free(m);
    free(orig);
}

// ---- file helpers ----

static void test_fileutil(void **state) {
    (void)state;
    char *s = file_join("a", "b");
    assert_string_equal(s, "a/b");
    free(s);
    s = file_join("a/", "b");
    assert_string_equal(s, "a/b");
    free(s);
    s = file_join("", "b");
    assert_string_equal(s, "b");
    free(s);

    ds_error err = {{0}};
    const char *deep = tpath("x/y/z");
    assert_int_equal(file_mkdirs(deep, &err), DS_OK);
    assert_int_equal(file_mkdirs(deep, &err), DS_OK); // already there
    struct stat sb;
    assert_int_equal(stat(deep, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));

    const char *fpath = tpath("x/y/z/f.txt");
    assert_int_equal(file_write_atomic(fpath, "hello\n", 6, &err), DS_OK);
    char *text;
    size_t n;
    assert_int_equal(file_read_all(fpath, &text, &n, &err), DS_OK);
    assert_int_equal(n, 6);
    assert_string_equal(text, "hello\n");
    free(text);
    assert_int_equal(file_write_atomic(fpath, "", 0, &err), DS_OK);
    assert_int_equal(file_read_all(fpath, &text, &n, &err), DS_OK);
    assert_int_equal(n, 0);
    assert_string_equal(text, "");
    free(text);

    assert_int_equal(file_mkdirs(tpath("x/y/z/f.txt/sub"), &err), DS_ERR_IO);
    expect_msg(&err, "f.txt", NULL);
    assert_int_equal(file_mkdirs(fpath, &err), DS_ERR_IO);
    expect_msg(&err, "not a directory", NULL);
    assert_int_equal(file_read_all(tpath("nope.txt"), &text, &n, &err), DS_ERR_IO);
    expect_msg(&err, "nope.txt", "cannot open");
    assert_null(text);
    assert_int_equal(file_read_all(deep, &text, &n, &err), DS_ERR_IO);
    expect_msg(&err, "directory", NULL);
    assert_int_equal(file_write_atomic(tpath("nodir/f.txt"), "x", 1, &err), DS_ERR_IO);
    expect_msg(&err, "nodir/f.txt", NULL);

    // A streaming write aborted half-way leaves nothing behind and the old contents intact.
    file_atomic w;
    assert_int_equal(file_write_atomic(fpath, "old", 3, &err), DS_OK);
    assert_int_equal(file_atomic_open(&w, fpath, &err), DS_OK);
    assert_int_equal(file_atomic_write(&w, "new", 3, &err), DS_OK);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", fpath, (long)getpid());
    assert_int_equal(stat(tmp, &sb), 0); // the temp file exists while writing...
    file_atomic_abort(&w);
    file_atomic_abort(&w);
    assert_int_not_equal(stat(tmp, &sb), 0); // ...and is gone after the abort
    assert_int_equal(file_read_all(fpath, &text, &n, &err), DS_OK);
    assert_string_equal(text, "old");
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip), cmocka_unit_test(test_write_errors), cmocka_unit_test(test_v2_and_variants),
        cmocka_unit_test(test_malformed),  cmocka_unit_test(test_mutations),    cmocka_unit_test(test_fileutil),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
