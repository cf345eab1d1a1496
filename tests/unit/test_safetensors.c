// Safetensors reading/writing and model folders: round trips, sharded folders and their
// index, every malformed-header error path, and a mutation test (the reader must never crash).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "io/fileutil.h"
#include "io/model_dir.h"
#include "io/safetensors.h"
#include "test_tmpdir.h"

// A safetensors file from a literal header (length field = its length) and dlen data bytes.
static void write_raw(const char *path, const char *header, size_t dlen) {
    size_t hl = strlen(header), n = 8 + hl + dlen;
    unsigned char *b = calloc(1, n);
    assert_non_null(b);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    write_bytes(path, b, n);
    free(b);
}

static int count_dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static void expect_msg(const ds_error *err, const char *a, const char *b) {
    if (a && !strstr(err->msg, a)) fail_msg("message '%s' lacks '%s'", err->msg, a);
    if (b && !strstr(err->msg, b)) fail_msg("message '%s' lacks '%s'", err->msg, b);
}

// ---- round trip ----

static void test_round_trip(void **state) {
    (void)state;
    float f32a[6] = {1, -2, 3.5f, 4, 5, 6}, f32b[4] = {7, 8, 9, 10}, scalar = 42;
    uint16_t bf16[5] = {0x3f80, 0xbf80, 0x4000, 0x0001, 0x7f80}, f16[6] = {0x3c00, 0, 1, 2, 3, 0xfbff};
    uint8_t fp8[7] = {0, 1, 2, 0x7e, 0x80, 0xfe, 0x38};
    st_write_item items[] = {
        {"fp8.weight", DS_F8_E4M3, 1, {7}, fp8},          // odd byte counts, before wider types
        {"bf16.weight", DS_BF16, 1, {5}, bf16},
        {"model.a.weight", DS_F32, 2, {2, 3}, f32a},
        {"f16.weight", DS_F16, 3, {3, 1, 2}, f16},
        {"b \"quoted\\ name\"", DS_F32, 1, {4}, f32b},     // needs JSON escaping
        {"scalar", DS_F32, 0, {0}, &scalar},
        {"empty", DS_F32, 2, {0, 3}, NULL},
    };
    int n = (int)(sizeof items / sizeof *items);
    const char *path = tpath("rt.safetensors");
    ds_error err = {{0}};
    int before = count_dir_entries(g_dir);
    assert_int_equal(st_file_write(path, items, n, &err), DS_OK);
    assert_int_equal(count_dir_entries(g_dir), before + 1); // no temp file left behind

    st_file f;
    assert_int_equal(st_file_open(&f, path, &err), DS_OK);
    assert_int_equal(f.n, n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | f.map[i];
    assert_int_equal((8 + hlen) % 8, 0);
    assert_non_null(memmem(f.map + 8, hlen, "\"__metadata__\":{\"format\":\"pt\"}", 30));
    uint64_t data_size = f.size - 8 - hlen, covered = 0;
    for (int i = 0; i < n; i++) {
        st_entry *e = st_file_find(&f, items[i].name);
        assert_non_null(e);
        assert_string_equal(e->name, items[i].name);
        assert_int_equal(e->dtype, items[i].dtype);
        assert_int_equal(e->ndim, items[i].ndim);
        for (int d = 0; d < e->ndim; d++) assert_int_equal(e->shape[d], items[i].shape[d]);
        size_t bytes = (size_t)(e->end - e->begin);
        if (bytes) assert_memory_equal(e->data, items[i].data, bytes);
        assert_ptr_equal(e->data, f.map + 8 + hlen + e->begin);
        assert_int_equal((uintptr_t)e->data % ds_dtype_size(e->dtype), 0); // element-aligned
        assert_false(e->used);
        covered += bytes;
    }
    assert_int_equal(covered, data_size); // no gaps: HF's reader requires the tensors to tile the data
    assert_null(st_file_find(&f, "absent"));
    assert_null(st_file_find(&f, ""));
    for (int i = 1; i < f.n; i++) assert_true(strcmp(f.entries[i - 1].name, f.entries[i].name) < 0);
    st_file_close(&f);
    assert_null(f.map);

    // Overwrite with an empty file: header only, still valid.
    assert_int_equal(st_file_write(path, NULL, 0, &err), DS_OK);
    assert_int_equal(st_file_open(&f, path, &err), DS_OK);
    assert_int_equal(f.n, 0);
    assert_null(st_file_find(&f, "fp8.weight"));
    st_file_close(&f);
}

// Same-size tensors keep the caller's order in the data region.
static void test_write_order(void **state) {
    (void)state;
    float a[3] = {1, 2, 3}, b[2] = {4, 5}, c[1] = {6};
    st_write_item items[] = {{"z", DS_F32, 1, {3}, a}, {"a", DS_F32, 1, {2}, b}, {"m", DS_F32, 1, {1}, c}};
    const char *path = tpath("order.safetensors");
    ds_error err;
    assert_int_equal(st_file_write(path, items, 3, &err), DS_OK);
    st_file f;
    assert_int_equal(st_file_open(&f, path, &err), DS_OK);
    assert_int_equal(st_file_find(&f, "z")->begin, 0);
    assert_int_equal(st_file_find(&f, "a")->begin, 12);
    assert_int_equal(st_file_find(&f, "m")->begin, 20);
    st_file_close(&f);
}

static void test_write_errors(void **state) {
    (void)state;
    float a[2] = {1, 2};
    ds_error err = {{0}};
    st_write_item dup[] = {{"x", DS_F32, 1, {2}, a}, {"x", DS_F32, 1, {2}, a}};
    assert_int_equal(st_file_write(tpath("dup.safetensors"), dup, 2, &err), DS_ERR_ARG);
    expect_msg(&err, "dup.safetensors", "duplicate tensor name 'x'");
    st_write_item neg[] = {{"x", DS_F32, 2, {2, -1}, a}};
    assert_int_equal(st_file_write(tpath("neg.safetensors"), neg, 1, &err), DS_ERR_ARG);
    st_write_item meta[] = {{"__metadata__", DS_F32, 1, {2}, a}};
    assert_int_equal(st_file_write(tpath("meta.safetensors"), meta, 1, &err), DS_ERR_ARG);
    st_write_item nodata[] = {{"x", DS_F32, 1, {2}, NULL}};
    assert_int_equal(st_file_write(tpath("nodata.safetensors"), nodata, 1, &err), DS_ERR_ARG);
    int before = count_dir_entries(g_dir);
    st_write_item ok[] = {{"x", DS_F32, 1, {2}, a}};
    assert_int_equal(st_file_write(tpath("no/such/dir/x.safetensors"), ok, 1, &err), DS_ERR_IO);
    expect_msg(&err, "x.safetensors", NULL);
    assert_int_equal(count_dir_entries(g_dir), before);
}

// ---- sharded folders ----

// dir/name with tensors named names[] (F32 [2]); values distinguish the files.
static void write_shard(const char *dir, const char *name, const char **names, int n, float tag) {
    float v[8][2];
    st_write_item items[8];
    for (int i = 0; i < n; i++) {
        v[i][0] = tag;
        v[i][1] = (float)i;
        items[i] = (st_write_item){names[i], DS_F32, 1, {2}, v[i]};
    }
    char *path = file_join(dir, name);
    ds_error err;
    assert_int_equal(st_file_write(path, items, n, &err), DS_OK);
    free(path);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char *path = file_join(dir, name);
    write_bytes(path, text, strlen(text));
    free(path);
}

// A fresh folder g_dir/sub holding shards A (a.x, a.y) and B (b.z), and the given index.
static const char *make_sharded(const char *sub, const char *index) {
    const char *dir = tpath(sub);
    ds_error err;
    assert_int_equal(file_mkdirs(dir, &err), DS_OK);
    const char *a[] = {"a.x", "a.y"}, *b[] = {"b.z"};
    write_shard(dir, "model-00001-of-00002.safetensors", a, 2, 1);
    write_shard(dir, "model-00002-of-00002.safetensors", b, 1, 2);
    if (index) write_text(dir, "model.safetensors.index.json", index);
    return dir;
}

#define IDX_HEAD "{\"metadata\":{\"total_size\":24},\"weight_map\":{"
#define SHARD_A "\"model-00001-of-00002.safetensors\""
#define SHARD_B "\"model-00002-of-00002.safetensors\""
#define GOOD_MAP "\"a.x\":" SHARD_A ",\"a.y\":" SHARD_A ",\"b.z\":" SHARD_B

static void test_sharded(void **state) {
    (void)state;
    const char *dir = make_sharded("sharded", IDX_HEAD GOOD_MAP "}}");
    model_dir md;
    ds_error err = {{0}};
    assert_int_equal(model_dir_open(&md, dir, &err), DS_OK);
    assert_int_equal(md.n_files, 2);
    assert_int_equal(md.n_tensors, 3);
    const char *file = NULL;
    st_entry *e = model_dir_find(&md, "b.z", &file);
    assert_non_null(e);
    assert_non_null(strstr(file, "model-00002-of-00002.safetensors"));
    assert_float_equal(((const float *)e->data)[0], 2.0f, 0);
    e = model_dir_find(&md, "a.y", &file);
    assert_non_null(e);
    assert_non_null(strstr(file, "model-00001-of-00002.safetensors"));
    assert_float_equal(((const float *)e->data)[1], 1.0f, 0);
    assert_null(model_dir_find(&md, "c.w", NULL));
    // first_unused walks every tensor until all are claimed
    int claimed = 0;
    for (st_entry *u; (u = model_dir_first_unused(&md, &file)); claimed++) u->used = true;
    assert_int_equal(claimed, 3);
    model_dir_close(&md);
    model_dir_close(&md); // closing twice is harmless
}

static void test_single_file(void **state) {
    (void)state;
    const char *dir = tpath("single");
    ds_error err = {{0}};
    assert_int_equal(file_mkdirs(dir, &err), DS_OK);
    model_dir md;
    assert_int_equal(model_dir_open(&md, dir, &err), DS_ERR_IO);
    expect_msg(&err, "single", "no model.safetensors or model.safetensors.index.json");
    const char *names[] = {"w"};
    write_shard(dir, "model.safetensors", names, 1, 3);
    assert_int_equal(model_dir_open(&md, dir, &err), DS_OK);
    assert_non_null(model_dir_find(&md, "w", NULL));
    model_dir_close(&md);
    assert_int_equal(model_dir_open(&md, tpath("nonexistent"), &err), DS_ERR_IO);
}

static void expect_dir_error(const char *sub, const char *index, ds_status code, const char *a, const char *b) {
    const char *dir = make_sharded(sub, index);
    model_dir md;
    ds_error err = {{0}};
    ds_status st = model_dir_open(&md, dir, &err);
    if (st != code) fail_msg("%s: expected status %d, got %d (%s)", sub, code, st, err.msg);
    expect_msg(&err, a, b);
    assert_null(md.files); // cleaned up on failure
}

static void test_sharded_errors(void **state) {
    (void)state;
    expect_dir_error("idx_missing_tensor", IDX_HEAD GOOD_MAP ",\"c.w\":" SHARD_A "}}", DS_ERR_FORMAT,
                     "'c.w'", "model-00001-of-00002.safetensors does not contain it");
    expect_dir_error("idx_unlisted", IDX_HEAD "\"a.x\":" SHARD_A ",\"b.z\":" SHARD_B "}}", DS_ERR_FORMAT,
                     "'a.y' is not listed", "model-00001-of-00002.safetensors");
    expect_dir_error("idx_wrong_file", IDX_HEAD "\"a.x\":" SHARD_A ",\"a.y\":" SHARD_B ",\"b.z\":" SHARD_B "}}",
                     DS_ERR_FORMAT, "'a.y'", "model-00001-of-00002.safetensors");
    expect_dir_error("idx_missing_shard", IDX_HEAD GOOD_MAP ",\"q\":\"model-00009-of-00009.safetensors\"}}", DS_ERR_IO,
                     "model-00009-of-00009.safetensors", NULL);
    expect_dir_error("idx_escape", IDX_HEAD GOOD_MAP ",\"q\":\"../x.safetensors\"}}", DS_ERR_FORMAT, "'q'",
                     "plain file name");
    expect_dir_error("idx_dotdot", IDX_HEAD GOOD_MAP ",\"q\":\"..\"}}", DS_ERR_FORMAT, "'q'", "plain file name");
    expect_dir_error("idx_not_string", IDX_HEAD GOOD_MAP ",\"q\":3}}", DS_ERR_FORMAT, "'q'", NULL);
    expect_dir_error("idx_no_map", "{\"metadata\":{}}", DS_ERR_FORMAT, "model.safetensors.index.json", "weight_map");
    expect_dir_error("idx_bad_json", "{\"weight_map\":{", DS_ERR_FORMAT, "model.safetensors.index.json", "JSON");
    expect_dir_error("idx_twice", IDX_HEAD GOOD_MAP ",\"a.x\":" SHARD_A "}}", DS_ERR_FORMAT, "'a.x'", "twice");

    // The same tensor in two shards.
    const char *dir = make_sharded("idx_dup", IDX_HEAD GOOD_MAP "}}");
    const char *b[] = {"b.z", "a.x"};
    write_shard(dir, "model-00002-of-00002.safetensors", b, 2, 2);
    model_dir md;
    ds_error err = {{0}};
    assert_int_equal(model_dir_open(&md, dir, &err), DS_ERR_FORMAT);
    expect_msg(&err, "'a.x'", "model-00001-of-00002.safetensors");
    expect_msg(&err, "model-00002-of-00002.safetensors", NULL);

    // A corrupt shard is reported with its own name.
    dir = make_sharded("idx_corrupt", IDX_HEAD GOOD_MAP "}}");
    write_text(dir, "model-00002-of-00002.safetensors", "abc");
    assert_int_equal(model_dir_open(&md, dir, &err), DS_ERR_FORMAT);
    expect_msg(&err, "model-00002-of-00002.safetensors", "too small");
}

// ---- malformed headers ----

#define BAD_NAME "model-00001-of-00002.safetensors"

static void expect_bad(const char *header, size_t dlen, const char *phrase) {
    const char *path = tpath(BAD_NAME);
    write_raw(path, header, dlen);
    st_file f;
    ds_error err = {{0}};
    ds_status st = st_file_open(&f, path, &err);
    if (st != DS_ERR_FORMAT) fail_msg("header %s: expected a format error, got %d (%s)", header, st, err.msg);
    expect_msg(&err, BAD_NAME, phrase);
    assert_null(f.map);
    assert_null(f.entries);
}

#define T(dt, shape, off) "{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" off "}"

static void test_malformed(void **state) {
    (void)state;
    const char *path = tpath(BAD_NAME);
    st_file f;
    ds_error err = {{0}};
    // Tiny files.
    write_bytes(path, "", 0);
    assert_int_equal(st_file_open(&f, path, &err), DS_ERR_FORMAT);
    expect_msg(&err, BAD_NAME, "too small");
    write_bytes(path, "\x05\0\0\0\0", 5);
    assert_int_equal(st_file_open(&f, path, &err), DS_ERR_FORMAT);
    expect_msg(&err, BAD_NAME, "too small");
    // Header length beyond the file, and absurdly large.
    unsigned char b[32] = {0xe8, 0x03, 0, 0, 0, 0, 0, 0, '{', '}'};
    write_bytes(path, b, 20);
    assert_int_equal(st_file_open(&f, path, &err), DS_ERR_FORMAT);
    expect_msg(&err, BAD_NAME, "header length 1000 exceeds the file size");
    memset(b, 0, 8);
    b[7] = 0x80; // 2^63
    write_bytes(path, b, 20);
    assert_int_equal(st_file_open(&f, path, &err), DS_ERR_FORMAT);
    expect_msg(&err, BAD_NAME, "exceeds the file size");
    memset(b, 0xff, 8); // 2^64 - 1: 8 + N wraps if computed naively
    write_bytes(path, b, 20);
    assert_int_equal(st_file_open(&f, path, &err), DS_ERR_FORMAT);
    // Not an open-able path at all.
    assert_int_equal(st_file_open(&f, tpath("missing.safetensors"), &err), DS_ERR_IO);
    expect_msg(&err, "missing.safetensors", "cannot open");
    assert_int_equal(st_file_open(&f, g_dir, &err), DS_ERR_IO);
    expect_msg(&err, "not a regular file", NULL);

    assert_int_equal(mkfifo(tpath("fifo.safetensors"), 0600), 0); // must not block
    assert_int_equal(st_file_open(&f, tpath("fifo.safetensors"), &err), DS_ERR_IO);
    expect_msg(&err, "fifo.safetensors", "not a regular file");

    expect_bad("", 0, "not valid JSON");
    char deep[20001];
    memset(deep, '[', sizeof deep - 1);
    deep[sizeof deep - 1] = 0;
    expect_bad(deep, 0, "not valid JSON"); // nesting far past cJSON's limit: no stack overflow
    expect_bad("{\"t\": ", 0, "not valid JSON");
    expect_bad("[1, 2]", 0, "not an object");
    expect_bad("{} x", 0, "data after the JSON object");
    expect_bad("{\"t\":[]}", 0, "'t': entry is not a JSON object");
    expect_bad("{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'t': missing \"dtype\"");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "'t': missing \"shape\"");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "'t': missing \"data_offsets\"");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "duplicate key");
    expect_bad("{\"t\":" T("F64", "[1]", "[0,8]") "}", 8, "'t': unsupported dtype 'F64'");
    expect_bad("{\"t\":" T("I64", "[1]", "[0,8]") "}", 8, "unsupported dtype 'I64'");
    expect_bad("{\"t\":" T("U8", "[1]", "[0,1]") "}", 1, "unsupported dtype 'U8'");
    expect_bad("{\"t\":" T("BOOL", "[1]", "[0,1]") "}", 1, "unsupported dtype 'BOOL'");
    expect_bad("{\"t\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "\"dtype\" is not a string");
    expect_bad("{\"t\":" T("F32", "[-1]", "[0,4]") "}", 4, "'t': shape dim 0 is not a non-negative integer");
    expect_bad("{\"t\":" T("F32", "[2, 1.5]", "[0,4]") "}", 4, "shape dim 1 is not a non-negative integer");
    expect_bad("{\"t\":" T("F32", "[\"2\"]", "[0,4]") "}", 4, "shape dim 0");
    expect_bad("{\"t\":" T("F32", "4", "[0,4]") "}", 4, "'t': \"shape\" is not an array");
    expect_bad("{\"t\":" T("F32", "[1,1,1,1,1]", "[0,4]") "}", 4, "5 dims");
    expect_bad("{\"t\":" T("F32", "[1e400]", "[0,4]") "}", 4, "shape dim 0");
    expect_bad("{\"t\":" T("F32", "[4503599627370496, 4503599627370496]", "[0,4]") "}", 4, "overflows");
    expect_bad("{\"t\":" T("F32", "[1]", "[0,64]") "}", 16, "'t': data_offsets [0, 64] extend past the data region");
    expect_bad("{\"t\":" T("F32", "[1]", "[8,4]") "}", 16, "'t': data_offsets [8, 4] end before they begin");
    expect_bad("{\"t\":" T("F32", "[1]", "[0]") "}", 16, "'t': data_offsets is not [begin, end]");
    expect_bad("{\"t\":" T("F32", "[1]", "[0,4,8]") "}", 16, "data_offsets is not");
    expect_bad("{\"t\":" T("F32", "[1]", "[-4,0]") "}", 16, "data_offsets is not");
    expect_bad("{\"t\":" T("F32", "[1]", "{}") "}", 16, "data_offsets is not");
    expect_bad("{\"model.layers.0.mlp.gate.weight\":" T("F32", "[4, 4]", "[0, 10]") "}", 16,
               "tensor 'model.layers.0.mlp.gate.weight': data_offsets [0, 10] hold 10 bytes but shape [4, 4] of F32 needs 64");
    expect_bad("{\"a\":" T("F32", "[2]", "[0,8]") ",\"b\":" T("F32", "[2]", "[4,12]") "}", 16,
               "tensors 'a' [0, 8] and 'b' [4, 12] overlap");
    expect_bad("{\"a\":" T("F32", "[2]", "[0,8]") ",\"b\":" T("F32", "[2]", "[0,8]") "}", 16, "overlap");
    expect_bad("{\"big\":" T("F32", "[4]", "[0,16]") ",\"in\":" T("F32", "[1]", "[4,8]") "}", 16, "overlap");
    expect_bad("{\"t\":" T("F32", "[1]", "[0,4]") ",\"t\":" T("F32", "[1]", "[4,8]") "}", 16,
               "duplicate tensor name 't'");
    expect_bad("{\"__metadata__\":{\"format\":1}}", 0, "__metadata__ value 'format' is not a string");
    expect_bad("{\"__metadata__\":[]}", 0, "__metadata__ is not a JSON object");
    expect_bad("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__ appears twice");

    // Accepted: empty tensors anywhere, gaps, unknown keys, trailing padding, scalars.
    write_raw(path,
              "{\"__metadata__\":{\"k\":\"v\"},\"e\":" T("BF16", "[0, 5]", "[4,4]") ",\"s\":" T("F32", "[]", "[8,12]")
              ",\"u\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4],\"extra\":1}}   \n",
              16);
    assert_int_equal(st_file_open(&f, path, &err), DS_OK);
    assert_int_equal(f.n, 3);
    assert_int_equal(st_file_find(&f, "s")->ndim, 0);
    st_file_close(&f);
}

// ---- mutations: never a crash ----

// Opens path; on success every entry's bytes must lie inside the mapping (read them all so
// ASan would see a stray pointer), on failure the message must name the file. Returns 1 if opened.
static int check_open_clean(const char *path, const char *name) {
    st_file f;
    ds_error err = {{0}};
    ds_status st = st_file_open(&f, path, &err);
    if (st != DS_OK) {
        if (st != DS_ERR_FORMAT) fail_msg("unexpected status %d: %s", st, err.msg);
        if (!strstr(err.msg, name)) fail_msg("message '%s' does not name the file", err.msg);
        assert_null(f.map);
        return 0;
    }
    unsigned sum = 0;
    for (int i = 0; i < f.n; i++) {
        const st_entry *e = &f.entries[i];
        assert_true(e->begin <= e->end);
        assert_true(e->data >= f.map + 8 && e->data + (e->end - e->begin) <= f.map + f.size);
        for (uint64_t k = 0; k < e->end - e->begin; k++) sum += e->data[k];
        assert_ptr_equal(st_file_find(&f, e->name), e);
    }
    (void)sum;
    st_file_close(&f);
    return 1;
}

// Rewrites the mutation file in place: one open fd, so each variant costs two syscalls.
static void rewrite_fd(int fd, const void *p, size_t n) {
    assert_int_equal(ftruncate(fd, (off_t)n), 0);
    assert_int_equal(pwrite(fd, p, n, 0), (ssize_t)n);
}

static void test_mutations(void **state) {
    (void)state;
    float a[4] = {1, 2, 3, 4};
    uint16_t h[3] = {1, 2, 3};
    uint8_t q[5] = {1, 2, 3, 4, 5};
    st_write_item items[] = {{"layers.0.a", DS_F32, 2, {2, 2}, a}, {"layers.0.b", DS_BF16, 1, {3}, h},
                             {"layers.1.c", DS_F8_E4M3, 1, {5}, q}};
    const char *good = tpath("good.safetensors"), *path = tpath("mut.safetensors");
    ds_error err;
    assert_int_equal(st_file_write(good, items, 3, &err), DS_OK);
    char *orig;
    size_t size;
    assert_int_equal(file_read_all(good, &orig, &size, &err), DS_OK);
    size_t hend = 8 + (size_t)(orig[0] & 0xff) + ((size_t)(orig[1] & 0xff) << 8);
    unsigned char *m = malloc(size);
    assert_non_null(m);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    int opened = 0, tries = 0;
    for (size_t len = 0; len <= size; len++, tries++) { // every truncation: only the full file is valid
        rewrite_fd(fd, orig, len);
        opened += check_open_clean(path, "mut.safetensors");
    }
    assert_int_equal(opened, 1);
    static const char interesting[] = "{}[]\",:-0123456789e. \x00\xff";
    uint64_t seed = 12345;
    for (int it = 0; it < 3000; it++, tries++) {
        memcpy(m, orig, size);
        int k = 1 + (int)(rng_next(&seed) % 3);
        for (int j = 0; j < k; j++) {
            uint32_t r = rng_next(&seed);
            size_t pos = r % 10 ? rng_next(&seed) % hend : rng_next(&seed) % size; // mostly the header
            m[pos] = r % 2 ? (unsigned char)rng_next(&seed) : (unsigned char)interesting[rng_next(&seed) % (sizeof interesting - 1)];
        }
        rewrite_fd(fd, m, size);
        opened += check_open_clean(path, "mut.safetensors");
    }
    close(fd);
    print_message("mutations: %d of %d variants opened, the rest rejected cleanly\n", opened, tries);
    assert_true(opened > 1 && opened < tries / 2); // both paths exercised
    free(m);
    free(orig);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),   cmocka_unit_test(test_write_order),    cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_sharded),      cmocka_unit_test(test_single_file),    cmocka_unit_test(test_sharded_errors),
        cmocka_unit_test(test_malformed),    cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
