// GGUF reading/writing: a hand-built file pinning the format byte by byte, round trips of
// every value type and of tensors of several types at alignments 32 and 64, the typed
// getters, every malformed-file error path with its message, and exhaustive truncation and
// byte mutation (the reader must never crash or read outside the file).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "io/fileutil.h"
#include "io/gguf.h"
#include "test_tmpdir.h"

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

// ---- a byte builder for hand-made files ----

typedef struct {
    uint8_t p[4096];
    size_t n;
} bb;

static void bb_bytes(bb *b, const void *p, size_t n) {
    assert_true(b->n + n <= sizeof b->p);
    memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void bb_u8(bb *b, uint8_t v) { bb_bytes(b, &v, 1); }
static void bb_u32(bb *b, uint32_t v) {
    for (int i = 0; i < 4; i++) bb_u8(b, (uint8_t)(v >> (8 * i)));
}
static void bb_u64(bb *b, uint64_t v) {
    for (int i = 0; i < 8; i++) bb_u8(b, (uint8_t)(v >> (8 * i)));
}
static void bb_str(bb *b, const char *s) {
    bb_u64(b, strlen(s));
    bb_bytes(b, s, strlen(s));
}
static void bb_zeros(bb *b, size_t n) {
    while (n--) bb_u8(b, 0);
}
static void bb_pad(bb *b, size_t align) { bb_zeros(b, (align - b->n % align) % align); }
static void bb_header(bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    b->n = 0;
    bb_bytes(b, "GGUF", 4);
    bb_u32(b, version);
    bb_u64(b, n_tensors);
    bb_u64(b, n_kv);
}
static void bb_kv_u32(bb *b, const char *key, uint32_t v) {
    bb_str(b, key);
    bb_u32(b, GGUF_VAL_U32);
    bb_u32(b, v);
}
static void bb_kv_str(bb *b, const char *key, const char *v) {
    bb_str(b, key);
    bb_u32(b, GGUF_VAL_STRING);
    bb_str(b, v);
}
static void bb_tensor(bb *b, const char *name, uint32_t n_dims, const uint64_t *dims, uint32_t type, uint64_t offset) {
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims && i < 4; i++) bb_u64(b, dims[i]);
    bb_u32(b, type);
    bb_u64(b, offset);
}

#define BAD_NAME "bad-00001.gguf"

static void expect_bad(const bb *b, const char *phrase, const char *phrase2) {
    const char *path = tpath(BAD_NAME);
    write_bytes(path, b->p, b->n);
    gguf_file f;
    ds_error err = {{0}};
    ds_status st = gguf_open(&f, path, &err);
    if (st != DS_ERR_FORMAT) fail_msg("expected a format error with '%s', got %d (%s)", phrase, st, err.msg);
    expect_msg(&err, BAD_NAME, phrase);
    expect_msg(&err, phrase2, NULL);
    if (strchr(err.msg, '\n')) fail_msg("message '%s' is not one line", err.msg);
    assert_null(f.map);
    assert_null(f.kvs);
    assert_null(f.tensors);
    assert_null(f.path);
}

static void open_ok(gguf_file *f, const bb *b) {
    const char *path = tpath("ok.gguf");
    write_bytes(path, b->p, b->n);
    ds_error err = {{0}};
    if (gguf_open(f, path, &err) != DS_OK) fail_msg("expected the file to open: %s", err.msg);
}

// ---- types ----

static void test_types(void **state) {
    (void)state;
    static const struct {
        int type;
        const char *name;
        size_t block, bytes;
    } want[] = {
        {GGUF_TYPE_F32, "F32", 1, 4},      {GGUF_TYPE_F16, "F16", 1, 2},      {GGUF_TYPE_Q4_0, "Q4_0", 32, 18},
        {GGUF_TYPE_Q4_1, "Q4_1", 32, 20},  {GGUF_TYPE_Q5_0, "Q5_0", 32, 22},  {GGUF_TYPE_Q5_1, "Q5_1", 32, 24},
        {GGUF_TYPE_Q8_0, "Q8_0", 32, 34},  {GGUF_TYPE_Q8_1, "Q8_1", 32, 36},  {GGUF_TYPE_Q2_K, "Q2_K", 256, 84},
        {GGUF_TYPE_Q3_K, "Q3_K", 256, 110}, {GGUF_TYPE_Q4_K, "Q4_K", 256, 144}, {GGUF_TYPE_Q5_K, "Q5_K", 256, 176},
        {GGUF_TYPE_Q6_K, "Q6_K", 256, 210}, {GGUF_TYPE_Q8_K, "Q8_K", 256, 292}, {GGUF_TYPE_I8, "I8", 1, 1},
        {GGUF_TYPE_I16, "I16", 1, 2},      {GGUF_TYPE_I32, "I32", 1, 4},      {GGUF_TYPE_I64, "I64", 1, 8},
        {GGUF_TYPE_F64, "F64", 1, 8},      {GGUF_TYPE_BF16, "BF16", 1, 2},    {GGUF_TYPE_IQ2_XXS, "IQ2_XXS", 256, 66},
        {GGUF_TYPE_IQ4_NL, "IQ4_NL", 32, 18}, {GGUF_TYPE_IQ4_XS, "IQ4_XS", 256, 136}, {GGUF_TYPE_MXFP4, "MXFP4", 32, 17},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        assert_string_equal(gguf_type_name(want[i].type), want[i].name);
        assert_int_equal(gguf_type_block_size(want[i].type), want[i].block);
        assert_int_equal(gguf_type_block_bytes(want[i].type), want[i].bytes);
    }
    static const int unknown[] = {-1, 4, 5, 31, 32, 33, 36, 37, 38, 40, 1000};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
        assert_int_equal(gguf_type_block_size(unknown[i]), 0);
        assert_int_equal(gguf_type_block_bytes(unknown[i]), 0);
        assert_string_equal(gguf_type_name(unknown[i]), "unknown");
    }
    assert_string_equal(gguf_value_type_name(GGUF_VAL_STRING), "string");
    assert_string_equal(gguf_value_type_name(GGUF_VAL_F64), "f64");
    assert_string_equal(gguf_value_type_name(13), "unknown");
}

// ---- a file written out byte by byte ----

// Version 3, one tensor, two key-value pairs, default alignment 32, exactly as llama.cpp
// lays it out (the data section and the tensor padded to 32 bytes).
static const uint8_t k_minimal[] = {
    'G', 'G', 'U', 'F',                             // magic
    3, 0, 0, 0,                                     // version 3
    1, 0, 0, 0, 0, 0, 0, 0,                         // tensor_count 1
    2, 0, 0, 0, 0, 0, 0, 0,                         // metadata_kv_count 2
    20, 0, 0, 0, 0, 0, 0, 0,                        // [24] key length 20
    'g', 'e', 'n', 'e', 'r', 'a', 'l', '.', 'a', 'r', 'c', 'h', 'i', 't', 'e', 'c', 't', 'u', 'r', 'e',
    8, 0, 0, 0,                                     // [52] STRING
    5, 0, 0, 0, 0, 0, 0, 0, 'l', 'l', 'a', 'm', 'a',  // [56] "llama"
    20, 0, 0, 0, 0, 0, 0, 0,                        // [69] key length 20
    'l', 'l', 'a', 'm', 'a', '.', 'c', 'o', 'n', 't', 'e', 'x', 't', '_', 'l', 'e', 'n', 'g', 't', 'h',
    4, 0, 0, 0,                                     // [97] UINT32
    0x00, 0x10, 0, 0,                               // [101] 4096
    1, 0, 0, 0, 0, 0, 0, 0, 'w',                    // [105] tensor name "w"
    2, 0, 0, 0,                                     // [114] n_dims 2
    2, 0, 0, 0, 0, 0, 0, 0,                         // [118] dims[0] = 2 (columns)
    3, 0, 0, 0, 0, 0, 0, 0,                         // [126] dims[1] = 3 (rows)
    0, 0, 0, 0,                                     // [134] F32
    0, 0, 0, 0, 0, 0, 0, 0,                         // [138] offset 0
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,       // [146] padding to 160
    0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 0, 0, 0x40, 0x40, // [160] 1.0f 2.0f 3.0f
    0, 0, 0x80, 0x40, 0, 0, 0xa0, 0x40, 0, 0, 0xc0, 0x40, // 4.0f 5.0f 6.0f
    0, 0, 0, 0, 0, 0, 0, 0,                         // [184] padding to 192
};

static void test_minimal_file(void **state) {
    (void)state;
    assert_int_equal(sizeof k_minimal, 192);
    const char *path = tpath("minimal.gguf");
    write_bytes(path, k_minimal, sizeof k_minimal);
    gguf_file f;
    ds_error err = {{0}};
    assert_int_equal(gguf_open(&f, path, &err), DS_OK);
    assert_int_equal(f.version, 3);
    assert_int_equal(f.alignment, 32);
    assert_int_equal(f.data_offset, 160);
    assert_int_equal(f.n_kv, 2);
    assert_int_equal(f.n_tensors, 1);
    const char *s;
    size_t len;
    assert_int_equal(gguf_get_string(&f, "general.architecture", &s, &len, &err), DS_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(s, "llama", 5);
    assert_ptr_equal(s, f.map + 64);
    uint32_t ctx = 0;
    assert_int_equal(gguf_get_u32(&f, "llama.context_length", &ctx, &err), DS_OK);
    assert_int_equal(ctx, 4096);
    assert_string_equal(f.kvs[0].key, "general.architecture"); // file order kept
    const gguf_tensor *t = gguf_find_tensor(&f, "w");
    assert_non_null(t);
    assert_int_equal(t->type, GGUF_TYPE_F32);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->dims[0], 2);
    assert_int_equal(t->dims[1], 3);
    assert_int_equal(t->dims[2], 1);
    assert_int_equal(t->dims[3], 1);
    assert_int_equal(t->numel, 6);
    assert_int_equal(t->offset, 0);
    assert_int_equal(t->size, 24);
    assert_ptr_equal(t->data, f.map + 160);
    const float *v = (const float *)t->data;
    for (int i = 0; i < 6; i++) assert_float_equal(v[i], (float)(i + 1), 0);
    assert_null(gguf_find_tensor(&f, "x"));
    gguf_close(&f);

    // Our writer produces the same bytes.
    gguf_writer w;
    gguf_writer_init(&w);
    gguf_writer_add_string(&w, "general.architecture", "llama");
    gguf_writer_add_u32(&w, "llama.context_length", 4096);
    float data[6] = {1, 2, 3, 4, 5, 6};
    gguf_writer_add_tensor(&w, "w", GGUF_TYPE_F32, 2, (const int64_t[]){2, 3}, data);
    const char *out = tpath("minimal-written.gguf");
    assert_int_equal(gguf_write(out, &w, &err), DS_OK);
    gguf_writer_free(&w);
    char *bytes;
    size_t n;
    assert_int_equal(file_read_all(out, &bytes, &n, &err), DS_OK);
    assert_int_equal(n, sizeof k_minimal);
    assert_memory_equal(bytes, k_minimal, n);
    free(bytes);

    // Version 2 has the same layout and is read too.
    uint8_t v2[sizeof k_minimal];
    memcpy(v2, k_minimal, sizeof v2);
    v2[4] = 2;
    write_bytes(path, v2, sizeof v2);
    assert_int_equal(gguf_open(&f, path, &err), DS_OK);
    assert_int_equal(f.version, 2);
    gguf_close(&f);
    gguf_close(&f); // closing twice is harmless
}

// ---- round trip ----

typedef struct {
    const char *name;
    int type, n_dims;
    int64_t dims[4];
} tspec;

static const tspec k_tensors[] = {
    {"token_embd.weight", GGUF_TYPE_F32, 2, {8, 3}},
    {"blk.0.attn_q.weight", GGUF_TYPE_Q8_0, 2, {64, 2}},
    {"empty", GGUF_TYPE_F32, 2, {0, 4}},
    {"blk.0.ffn_up.weight", GGUF_TYPE_Q4_0, 2, {32, 3}},
    {"blk.0.ffn_down.weight", GGUF_TYPE_Q4_K, 1, {256}},
    {"blk.0.attn_k.weight", GGUF_TYPE_Q6_K, 2, {512, 1}},
    {"norm.f16", GGUF_TYPE_F16, 1, {5}},
    {"norm.bf16", GGUF_TYPE_BF16, 4, {3, 1, 1, 2}},
    {"ids", GGUF_TYPE_I32, 1, {7}},
    {"iq", GGUF_TYPE_IQ2_XXS, 1, {256}},
};
#define N_TENSORS ((int)(sizeof k_tensors / sizeof *k_tensors))

static uint64_t spec_bytes(const tspec *s) {
    uint64_t n = 1;
    for (int d = 0; d < s->n_dims; d++) n *= (uint64_t)s->dims[d];
    return n / gguf_type_block_size(s->type) * gguf_type_block_bytes(s->type);
}

static void fill_pattern(uint8_t *p, uint64_t n, int seed) {
    for (uint64_t k = 0; k < n; k++) p[k] = (uint8_t)(seed * 31 + k * 7 + 1);
}

static uint64_t pad_to(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

static const char *k_strs[] = {"a\0b", "", "token", "\xe2\x96\x81the"};
static const size_t k_lens[] = {3, 0, 5, 6};

// Every value type, scalar and array, then the tensors; alignment 0 means the default.
static void write_everything(const char *path, uint32_t alignment, uint8_t **tdata) {
    gguf_writer w;
    gguf_writer_init(&w);
    if (alignment) gguf_writer_add_u32(&w, "general.alignment", alignment);
    uint8_t u8 = 200;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    int32_t i32 = -2000000000;
    int64_t i64 = INT64_MIN;
    double f64 = -0.1;
    gguf_writer_add(&w, "t.u8", GGUF_VAL_U8, &u8);
    gguf_writer_add(&w, "t.i8", GGUF_VAL_I8, &i8);
    gguf_writer_add(&w, "t.u16", GGUF_VAL_U16, &u16);
    gguf_writer_add(&w, "t.i16", GGUF_VAL_I16, &i16);
    gguf_writer_add_u32(&w, "t.u32", 4000000000u);
    gguf_writer_add_i32(&w, "t.i32", i32);
    gguf_writer_add_f32(&w, "t.f32", 1.5f);
    gguf_writer_add_bool(&w, "t.bool", true);
    gguf_writer_add_bool(&w, "t.false", false);
    gguf_writer_add_string(&w, "t.string", "h\xc3\xa9llo \"world\"");
    gguf_writer_add_string(&w, "t.empty", "");
    gguf_writer_add_u64(&w, "t.u64", 0xfedcba9876543210ull);
    gguf_writer_add(&w, "t.i64", GGUF_VAL_I64, &i64);
    gguf_writer_add(&w, "t.f64", GGUF_VAL_F64, &f64);
    uint8_t au8[] = {0, 255, 7};
    int8_t ai8[] = {-128, 127, 0};
    uint16_t au16[] = {65535, 1};
    int16_t ai16[] = {-32768, 32767};
    uint32_t au32[] = {UINT32_MAX, 0, 42};
    int32_t ai32[] = {INT32_MIN, -1, INT32_MAX};
    float af32[] = {0.5f, -2.0f};
    bool abool[] = {true, false, true};
    uint64_t au64[] = {UINT64_MAX, 5};
    int64_t ai64[] = {INT64_MIN, INT64_MAX};
    double af64[] = {1e300, -3.25};
    gguf_writer_add_array(&w, "a.u8", GGUF_VAL_U8, au8, 3);
    gguf_writer_add_array(&w, "a.i8", GGUF_VAL_I8, ai8, 3);
    gguf_writer_add_array(&w, "a.u16", GGUF_VAL_U16, au16, 2);
    gguf_writer_add_array(&w, "a.i16", GGUF_VAL_I16, ai16, 2);
    gguf_writer_add_array(&w, "a.u32", GGUF_VAL_U32, au32, 3);
    gguf_writer_add_array_i32(&w, "a.i32", ai32, 3);
    gguf_writer_add_array_f32(&w, "a.f32", af32, 2);
    gguf_writer_add_array(&w, "a.bool", GGUF_VAL_BOOL, abool, 3);
    gguf_writer_add_array(&w, "a.u64", GGUF_VAL_U64, au64, 2);
    gguf_writer_add_array(&w, "a.i64", GGUF_VAL_I64, ai64, 2);
    gguf_writer_add_array(&w, "a.f64", GGUF_VAL_F64, af64, 2);
    gguf_writer_add_array_f32(&w, "a.empty", NULL, 0);
    gguf_writer_add_array_string(&w, "a.string", k_strs, k_lens, 4);
    const char *plain[] = {"x", "yz"};
    gguf_writer_add_array_string(&w, "a.plain", plain, NULL, 2);
    gguf_writer_add_array_string(&w, "a.nostr", NULL, NULL, 0);
    for (int i = 0; i < N_TENSORS; i++) {
        const tspec *s = &k_tensors[i];
        uint64_t n = spec_bytes(s);
        tdata[i] = malloc(n ? n : 1);
        assert_non_null(tdata[i]);
        fill_pattern(tdata[i], n, i);
        gguf_writer_add_tensor(&w, s->name, s->type, s->n_dims, s->dims, tdata[i]);
    }
    ds_error err = {{0}};
    if (gguf_write(path, &w, &err) != DS_OK) fail_msg("write: %s", err.msg);
    gguf_writer_free(&w);
    assert_int_equal(w.n_kv, 0); // free resets
}

static void check_scalars(const gguf_file *f) {
    ds_error err = {{0}};
    const gguf_kv *kv = gguf_find_kv(f, "t.u8");
    assert_non_null(kv);
    assert_int_equal(kv->type, GGUF_VAL_U8);
    assert_int_equal(kv->count, 1);
    assert_int_equal(kv->size, 1);
    assert_int_equal(kv->data[0], 200);
    assert_null(kv->str_off);

    uint32_t u32 = 0;
    int32_t i32 = 0;
    uint64_t u64 = 0;
    int64_t i64 = 0;
    float f32 = 0;
    double f64 = 0;
    bool b = false;
    // Integer getters take any integer type whose value fits.
    assert_int_equal(gguf_get_u32(f, "t.u8", &u32, &err), DS_OK);
    assert_int_equal(u32, 200);
    assert_int_equal(gguf_get_i32(f, "t.i8", &i32, &err), DS_OK);
    assert_int_equal(i32, -100);
    assert_int_equal(gguf_get_i64(f, "t.u16", &i64, &err), DS_OK);
    assert_int_equal(i64, 60000);
    assert_int_equal(gguf_get_i32(f, "t.i16", &i32, &err), DS_OK);
    assert_int_equal(i32, -30000);
    assert_int_equal(gguf_get_u32(f, "t.u32", &u32, &err), DS_OK);
    assert_int_equal(u32, 4000000000u);
    assert_int_equal(gguf_get_u64(f, "t.u32", &u64, &err), DS_OK);
    assert_int_equal(u64, 4000000000u);
    assert_int_equal(gguf_get_i32(f, "t.i32", &i32, &err), DS_OK);
    assert_int_equal(i32, -2000000000);
    assert_int_equal(gguf_get_u64(f, "t.u64", &u64, &err), DS_OK);
    assert_true(u64 == 0xfedcba9876543210ull);
    assert_int_equal(gguf_get_i64(f, "t.i64", &i64, &err), DS_OK);
    assert_true(i64 == INT64_MIN);
    assert_int_equal(gguf_get_f32(f, "t.f32", &f32, &err), DS_OK);
    assert_true(f32 == 1.5f);
    assert_int_equal(gguf_get_f64(f, "t.f32", &f64, &err), DS_OK);
    assert_true(f64 == 1.5);
    assert_int_equal(gguf_get_f64(f, "t.f64", &f64, &err), DS_OK);
    assert_true(f64 == -0.1);
    assert_int_equal(gguf_get_f32(f, "t.f64", &f32, &err), DS_OK);
    assert_true(f32 == (float)-0.1);
    assert_int_equal(gguf_get_bool(f, "t.bool", &b, &err), DS_OK);
    assert_true(b);
    assert_int_equal(gguf_get_bool(f, "t.false", &b, &err), DS_OK);
    assert_false(b);
    const char *s;
    size_t len;
    assert_int_equal(gguf_get_string(f, "t.string", &s, &len, &err), DS_OK);
    assert_int_equal(len, 14);
    assert_memory_equal(s, "h\xc3\xa9llo \"world\"", 14);
    assert_int_equal(gguf_get_string(f, "t.empty", &s, &len, &err), DS_OK);
    assert_int_equal(len, 0);

    // Values that do not fit, wrong types, missing keys: errors naming the file and key;
    // the output is left alone.
    u32 = 77;
    assert_int_equal(gguf_get_u32(f, "t.i8", &u32, &err), DS_ERR_FORMAT);
    expect_msg(&err, ".gguf: key 't.i8' = -100 (i8) does not fit u32", NULL);
    assert_int_equal(u32, 77);
    assert_int_equal(gguf_get_i32(f, "t.u32", &i32, &err), DS_ERR_FORMAT);
    expect_msg(&err, "key 't.u32' = 4000000000 (u32) does not fit i32", NULL);
    assert_int_equal(gguf_get_i64(f, "t.u64", &i64, &err), DS_ERR_FORMAT);
    expect_msg(&err, "does not fit i64", NULL);
    assert_int_equal(gguf_get_u64(f, "t.i64", &u64, &err), DS_ERR_FORMAT);
    expect_msg(&err, "key 't.i64' = -9223372036854775808 (i64) does not fit u64", NULL);
    assert_int_equal(gguf_get_u32(f, "t.string", &u32, &err), DS_ERR_FORMAT);
    expect_msg(&err, ".gguf: key 't.string' is string, expected u32", NULL);
    assert_int_equal(gguf_get_u32(f, "t.f32", &u32, &err), DS_ERR_FORMAT);
    expect_msg(&err, "key 't.f32' is f32, expected u32", NULL);
    assert_int_equal(gguf_get_f32(f, "t.u32", &f32, &err), DS_ERR_FORMAT);
    expect_msg(&err, "key 't.u32' is u32, expected f32 or f64", NULL);
    assert_int_equal(gguf_get_bool(f, "t.u8", &b, &err), DS_ERR_FORMAT);
    expect_msg(&err, "key 't.u8' is u8, expected bool", NULL);
    assert_int_equal(gguf_get_string(f, "a.i32", &s, &len, &err), DS_ERR_FORMAT);
    expect_msg(&err, "key 'a.i32' is array of i32, expected string", NULL);
    assert_int_equal(gguf_get_u32(f, "no.such.key", &u32, &err), DS_ERR_FORMAT);
    expect_msg(&err, ".gguf: key 'no.such.key' is missing", NULL);
    assert_null(gguf_find_kv(f, "no.such.key"));
    assert_null(gguf_find_kv(f, ""));
}

static void check_arrays(const gguf_file *f) {
    ds_error err = {{0}};
    const gguf_kv *a;
    int64_t v;
    double d;
    bool b;
    assert_int_equal(gguf_get_array(f, "a.i16", GGUF_VAL_ANY_INT, &a, &err), DS_OK);
    assert_int_equal(a->elem_type, GGUF_VAL_I16);
    assert_int_equal(a->count, 2);
    assert_int_equal(a->size, 4);
    assert_true(gguf_array_int(a, 0, &v) && v == -32768);
    assert_true(gguf_array_int(a, 1, &v) && v == 32767);
    assert_false(gguf_array_int(a, 2, &v)); // out of range
    assert_false(gguf_array_float(a, 0, &d)); // wrong type
    assert_null(gguf_array_string(a, 0, NULL));
    assert_int_equal(gguf_get_array(f, "a.i16", GGUF_VAL_F32, &a, &err), DS_ERR_FORMAT);
    expect_msg(&err, "key 'a.i16' is array of i16, expected an array of f32", NULL);
    assert_int_equal(gguf_get_array(f, "t.u8", GGUF_VAL_ANY, &a, &err), DS_ERR_FORMAT);
    expect_msg(&err, "key 't.u8' is u8, expected an array of anything", NULL);
    assert_int_equal(gguf_get_array(f, "a.string", GGUF_VAL_ANY_INT, &a, &err), DS_ERR_FORMAT);
    expect_msg(&err, "is array of string, expected an array of integers", NULL);

    static const struct {
        const char *key;
        int type;
        int64_t v[3];
        int n;
    } ints[] = {
        {"a.u8", GGUF_VAL_U8, {0, 255, 7}, 3},
        {"a.i8", GGUF_VAL_I8, {-128, 127, 0}, 3},
        {"a.u16", GGUF_VAL_U16, {65535, 1}, 2},
        {"a.u32", GGUF_VAL_U32, {UINT32_MAX, 0, 42}, 3},
        {"a.i32", GGUF_VAL_I32, {INT32_MIN, -1, INT32_MAX}, 3},
        {"a.i64", GGUF_VAL_I64, {INT64_MIN, INT64_MAX}, 2},
    };
    for (size_t k = 0; k < sizeof ints / sizeof *ints; k++) {
        assert_int_equal(gguf_get_array(f, ints[k].key, ints[k].type, &a, &err), DS_OK);
        assert_int_equal(a->count, ints[k].n);
        for (int i = 0; i < ints[k].n; i++) {
            assert_true(gguf_array_int(a, (uint64_t)i, &v));
            assert_true(v == ints[k].v[i]);
        }
    }
    assert_int_equal(gguf_get_array(f, "a.u64", GGUF_VAL_U64, &a, &err), DS_OK);
    assert_false(gguf_array_int(a, 0, &v)); // UINT64_MAX does not fit int64
    assert_true(gguf_array_int(a, 1, &v) && v == 5);
    uint64_t raw;
    memcpy(&raw, a->data, 8); // numeric arrays can be read in bulk
    assert_true(raw == UINT64_MAX);

    assert_int_equal(gguf_get_array(f, "a.f32", GGUF_VAL_ANY_FLOAT, &a, &err), DS_OK);
    assert_true(gguf_array_float(a, 0, &d) && d == 0.5);
    assert_true(gguf_array_float(a, 1, &d) && d == -2.0);
    assert_int_equal(gguf_get_array(f, "a.f64", GGUF_VAL_F64, &a, &err), DS_OK);
    assert_true(gguf_array_float(a, 0, &d) && d == 1e300);
    assert_true(gguf_array_float(a, 1, &d) && d == -3.25);
    assert_false(gguf_array_int(a, 0, &v));
    assert_int_equal(gguf_get_array(f, "a.bool", GGUF_VAL_BOOL, &a, &err), DS_OK);
    assert_true(gguf_array_bool(a, 0, &b) && b);
    assert_true(gguf_array_bool(a, 1, &b) && !b);
    assert_true(gguf_array_bool(a, 2, &b) && b);
    assert_false(gguf_array_bool(a, 3, &b));
    assert_int_equal(gguf_get_array(f, "a.empty", GGUF_VAL_F32, &a, &err), DS_OK);
    assert_int_equal(a->count, 0);
    assert_int_equal(a->size, 0);
    assert_false(gguf_array_float(a, 0, &d));

    assert_int_equal(gguf_get_array(f, "a.string", GGUF_VAL_STRING, &a, &err), DS_OK);
    assert_int_equal(a->count, 4);
    assert_non_null(a->str_off);
    for (int i = 0; i < 4; i++) {
        size_t len = 99;
        const char *s = gguf_array_string(a, (uint64_t)i, &len);
        assert_non_null(s);
        assert_int_equal(len, k_lens[i]);
        if (len) assert_memory_equal(s, k_strs[i], len);
    }
    assert_null(gguf_array_string(a, 4, NULL));
    assert_false(gguf_array_int(a, 0, &v));
    assert_int_equal(gguf_get_array(f, "a.plain", GGUF_VAL_STRING, &a, &err), DS_OK);
    size_t len;
    assert_memory_equal(gguf_array_string(a, 1, &len), "yz", 2);
    assert_int_equal(len, 2);
    assert_int_equal(gguf_get_array(f, "a.nostr", GGUF_VAL_STRING, &a, &err), DS_OK);
    assert_int_equal(a->count, 0);
    assert_null(gguf_array_string(a, 0, NULL));
    assert_null(gguf_array_string(NULL, 0, NULL));
}

static void check_tensors(const gguf_file *f, uint32_t alignment, uint8_t **tdata) {
    assert_int_equal(f->n_tensors, N_TENSORS);
    assert_int_equal(f->data_offset % alignment, 0);
    uint64_t off = 0;
    for (int i = 0; i < N_TENSORS; i++) {
        const tspec *s = &k_tensors[i];
        const gguf_tensor *t = gguf_find_tensor(f, s->name);
        assert_non_null(t);
        assert_ptr_equal(t, &f->tensors[i]); // file order = the order added
        assert_string_equal(t->name, s->name);
        assert_int_equal(t->type, s->type);
        assert_int_equal(t->n_dims, s->n_dims);
        for (int d = 0; d < 4; d++) assert_int_equal(t->dims[d], d < s->n_dims ? s->dims[d] : 1);
        assert_int_equal(t->size, spec_bytes(s));
        assert_int_equal(t->offset, off); // packed in order, as llama.cpp requires
        assert_int_equal(t->offset % alignment, 0);
        assert_int_equal((uintptr_t)t->data % alignment, 0);
        assert_ptr_equal(t->data, f->map + f->data_offset + t->offset);
        if (t->size) assert_memory_equal(t->data, tdata[i], t->size);
        for (uint64_t k = t->size; k < pad_to(t->size, alignment); k++) assert_int_equal(t->data[k], 0); // zero padding
        off += pad_to(t->size, alignment);
    }
    assert_int_equal(f->size, f->data_offset + off);
    for (int i = 1; i < f->n_tensors; i++)
        assert_true(strcmp(f->tensors[f->tensor_sorted[i - 1]].name, f->tensors[f->tensor_sorted[i]].name) < 0);
}

static void test_round_trip(void **state) {
    (void)state;
    static const uint32_t aligns[] = {0, 64, 32, 256};
    for (size_t k = 0; k < sizeof aligns / sizeof *aligns; k++) {
        const char *path = tpath("rt.gguf");
        uint8_t *tdata[N_TENSORS];
        int before = count_dir_entries(g_dir);
        write_everything(path, aligns[k], tdata);
        assert_true(count_dir_entries(g_dir) <= before + 1); // no temp file left behind
        gguf_file f;
        ds_error err = {{0}};
        assert_int_equal(gguf_open(&f, path, &err), DS_OK);
        uint32_t alignment = aligns[k] ? aligns[k] : GGUF_DEFAULT_ALIGNMENT;
        assert_int_equal(f.version, 3);
        assert_int_equal(f.alignment, alignment);
        assert_memory_equal(f.map, "GGUF\x03\0\0\0", 8);
        assert_int_equal(f.n_kv, (aligns[k] ? 1 : 0) + 29);
        if (aligns[k]) assert_string_equal(f.kvs[0].key, "general.alignment");
        assert_string_equal(f.kvs[aligns[k] ? 1 : 0].key, "t.u8"); // the order added
        check_scalars(&f);
        check_arrays(&f);
        check_tensors(&f, alignment, tdata);
        gguf_close(&f);
        assert_null(f.map);
        for (int i = 0; i < N_TENSORS; i++) free(tdata[i]);
    }

    // No tensors, no metadata: still a valid file.
    gguf_writer w;
    gguf_writer_init(&w);
    ds_error err = {{0}};
    const char *path = tpath("empty.gguf");
    assert_int_equal(gguf_write(path, &w, &err), DS_OK);
    gguf_file f;
    assert_int_equal(gguf_open(&f, path, &err), DS_OK);
    assert_int_equal(f.n_kv, 0);
    assert_int_equal(f.n_tensors, 0);
    assert_int_equal(f.size, 32); // header padded to the alignment
    assert_null(gguf_find_kv(&f, "x"));
    assert_null(gguf_find_tensor(&f, "x"));
    gguf_close(&f);
}

// A tokenizer-sized string array: every element reachable in O(1).
static void test_large_vocab(void **state) {
    (void)state;
    enum { N = 150000 };
    char **toks = malloc(N * sizeof *toks);
    int32_t *types = malloc(N * sizeof *types);
    float *scores = malloc(N * sizeof *scores);
    assert_true(toks && types && scores);
    for (int i = 0; i < N; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "tok%d%.*s", i, i % 7, "xxxxxxx");
        toks[i] = strdup(buf);
        types[i] = i % 6;
        scores[i] = (float)-i;
    }
    gguf_writer w;
    gguf_writer_init(&w);
    gguf_writer_add_array_string(&w, "tokenizer.ggml.tokens", (const char *const *)toks, NULL, N);
    gguf_writer_add_array_i32(&w, "tokenizer.ggml.token_type", types, N);
    gguf_writer_add_array_f32(&w, "tokenizer.ggml.scores", scores, N);
    const char *path = tpath("vocab.gguf");
    ds_error err = {{0}};
    assert_int_equal(gguf_write(path, &w, &err), DS_OK);
    gguf_writer_free(&w);
    gguf_file f;
    assert_int_equal(gguf_open(&f, path, &err), DS_OK);
    const gguf_kv *tk, *ty, *sc;
    assert_int_equal(gguf_get_array(&f, "tokenizer.ggml.tokens", GGUF_VAL_STRING, &tk, &err), DS_OK);
    assert_int_equal(gguf_get_array(&f, "tokenizer.ggml.token_type", GGUF_VAL_ANY_INT, &ty, &err), DS_OK);
    assert_int_equal(gguf_get_array(&f, "tokenizer.ggml.scores", GGUF_VAL_ANY_FLOAT, &sc, &err), DS_OK);
    assert_int_equal(tk->count, N);
    for (int k = 0; k < N; k++) {
        int i = (int)((k * 7919ull) % N); // scattered order
        size_t len;
        const char *s = gguf_array_string(tk, (uint64_t)i, &len);
        assert_int_equal(len, strlen(toks[i]));
        assert_memory_equal(s, toks[i], len);
        int64_t t;
        double d;
        assert_true(gguf_array_int(ty, (uint64_t)i, &t) && t == types[i]);
        assert_true(gguf_array_float(sc, (uint64_t)i, &d) && d == scores[i]);
    }
    gguf_close(&f);
    for (int i = 0; i < N; i++) free(toks[i]);
    free(toks);
    free(types);
    free(scores);
}

// ---- writer errors ----

static void expect_write_error(gguf_writer *w, ds_status code, const char *a, const char *b) {
    ds_error err = {{0}};
    int before = count_dir_entries(g_dir);
    ds_status st = gguf_write(tpath("werr.gguf"), w, &err);
    if (st != code) fail_msg("expected status %d with '%s', got %d (%s)", code, a, st, err.msg);
    expect_msg(&err, "werr.gguf", a);
    expect_msg(&err, b, NULL);
    assert_int_equal(count_dir_entries(g_dir), before); // nothing written
    gguf_writer_free(w);
}

static void test_write_errors(void **state) {
    (void)state;
    float data[64] = {0};
    gguf_writer w;
    unlink(tpath("werr.gguf"));

    gguf_writer_init(&w);
    gguf_writer_add_tensor(&w, "x", GGUF_TYPE_F32, 1, (const int64_t[]){2}, data);
    gguf_writer_add_tensor(&w, "x", GGUF_TYPE_F32, 1, (const int64_t[]){2}, data);
    expect_write_error(&w, DS_ERR_ARG, "duplicate tensor name 'x'", NULL);

    gguf_writer_init(&w);
    gguf_writer_add_tensor(&w, "x", 4, 1, (const int64_t[]){32}, data);
    expect_write_error(&w, DS_ERR_ARG, "tensor 'x': unknown ggml type 4", NULL);

    gguf_writer_init(&w);
    gguf_writer_add_tensor(&w, "q", GGUF_TYPE_Q4_0, 2, (const int64_t[]){33, 2}, data);
    expect_write_error(&w, DS_ERR_ARG, "tensor 'q': dims [33, 2]: dims[0] is not a multiple of the Q4_0 block size (32)", NULL);

    gguf_writer_init(&w);
    gguf_writer_add_tensor(&w, "x", GGUF_TYPE_F32, 0, NULL, data);
    expect_write_error(&w, DS_ERR_ARG, "tensor 'x': n_dims 0 is not in 1..4", NULL);

    gguf_writer_init(&w);
    gguf_writer_add_tensor(&w, "x", GGUF_TYPE_F32, 5, (const int64_t[]){1, 1, 1, 1, 1}, data);
    expect_write_error(&w, DS_ERR_ARG, "n_dims 5 is not in 1..4", NULL);

    gguf_writer_init(&w);
    gguf_writer_add_tensor(&w, "x", GGUF_TYPE_F32, 2, (const int64_t[]){4, -1}, data);
    expect_write_error(&w, DS_ERR_ARG, "tensor 'x': negative or overflowing dims [4, -1]", NULL);

    gguf_writer_init(&w);
    gguf_writer_add_tensor(&w, "x", GGUF_TYPE_F32, 2, (const int64_t[]){1ll << 32, 1ll << 32}, data);
    expect_write_error(&w, DS_ERR_ARG, "overflowing", NULL);

    gguf_writer_init(&w);
    gguf_writer_add_tensor(&w, "x", GGUF_TYPE_F32, 1, (const int64_t[]){4}, NULL);
    expect_write_error(&w, DS_ERR_ARG, "tensor 'x': no data", NULL);

    gguf_writer_init(&w);
    gguf_writer_add_tensor(&w, "", GGUF_TYPE_F32, 1, (const int64_t[]){4}, data);
    expect_write_error(&w, DS_ERR_ARG, "tensor 0 (''): name is empty", NULL);

    gguf_writer_init(&w);
    char longname[80];
    memset(longname, 'n', 64);
    longname[64] = 0;
    gguf_writer_add_tensor(&w, longname, GGUF_TYPE_F32, 1, (const int64_t[]){4}, data);
    expect_write_error(&w, DS_ERR_ARG, "longer than 63 bytes", NULL);

    gguf_writer_init(&w);
    gguf_writer_add_tensor(&w, NULL, GGUF_TYPE_F32, 1, (const int64_t[]){4}, data);
    expect_write_error(&w, DS_ERR_ARG, "tensor 0: NULL name", NULL);

    gguf_writer_init(&w);
    gguf_writer_add_u32(&w, "k", 1);
    gguf_writer_add_string(&w, "k", "again");
    expect_write_error(&w, DS_ERR_ARG, "duplicate key 'k'", NULL);

    gguf_writer_init(&w);
    gguf_writer_add_u32(&w, "", 1);
    expect_write_error(&w, DS_ERR_ARG, "metadata key 0 is empty", NULL);

    gguf_writer_init(&w);
    gguf_writer_add_i32(&w, "general.alignment", 64);
    expect_write_error(&w, DS_ERR_ARG, "key 'general.alignment' must be a u32 power of two", NULL);

    gguf_writer_init(&w);
    gguf_writer_add_u32(&w, "general.alignment", 48);
    expect_write_error(&w, DS_ERR_ARG, "key 'general.alignment' must be a u32 power of two", NULL);

    gguf_writer_init(&w);
    gguf_writer_add_u32(&w, "general.alignment", 0);
    expect_write_error(&w, DS_ERR_ARG, "general.alignment", NULL);

    // Latched add failures surface at write time, the first one winning.
    gguf_writer_init(&w);
    gguf_writer_add(&w, "s", GGUF_VAL_STRING, "x");
    gguf_writer_add_u32(&w, NULL, 1);
    gguf_writer_add_u32(&w, "fine", 1);
    expect_write_error(&w, DS_ERR_ARG, "key 's': string is not a scalar value type", NULL);

    gguf_writer_init(&w);
    gguf_writer_add_u32(&w, NULL, 1);
    expect_write_error(&w, DS_ERR_ARG, "metadata key 0 is NULL", NULL);

    gguf_writer_init(&w);
    gguf_writer_add_array(&w, "arr", GGUF_VAL_ARRAY, data, 1);
    expect_write_error(&w, DS_ERR_ARG, "key 'arr': invalid array of 1 array values", NULL);

    gguf_writer_init(&w);
    const char *strs[] = {"a", NULL};
    gguf_writer_add_array_string(&w, "strs", strs, NULL, 2);
    expect_write_error(&w, DS_ERR_ARG, "key 'strs': invalid array of 2 strings", NULL);

    gguf_writer_init(&w);
    gguf_writer_add_string(&w, "s", NULL);
    expect_write_error(&w, DS_ERR_ARG, "key 's': NULL string", NULL);

    // An unwritable path: an I/O error naming the file, no temp file left anywhere.
    gguf_writer_init(&w);
    gguf_writer_add_tensor(&w, "x", GGUF_TYPE_F32, 1, (const int64_t[]){4}, data);
    ds_error err = {{0}};
    int before = count_dir_entries(g_dir);
    assert_int_equal(gguf_write(tpath("no/such/dir/x.gguf"), &w, &err), DS_ERR_IO);
    expect_msg(&err, "x.gguf", NULL);
    assert_int_equal(count_dir_entries(g_dir), before);
    gguf_writer_free(&w);
}

// ---- malformed files ----

static void test_malformed_header(void **state) {
    (void)state;
    bb b;
    gguf_file f;
    ds_error err = {{0}};
    const char *path = tpath(BAD_NAME);
    write_bytes(path, "GG", 2);
    assert_int_equal(gguf_open(&f, path, &err), DS_ERR_FORMAT);
    expect_msg(&err, BAD_NAME, "file is 2 bytes, too small for a GGUF header");
    assert_int_equal(gguf_open(&f, tpath("missing.gguf"), &err), DS_ERR_IO);
    expect_msg(&err, "missing.gguf: cannot open", NULL);
    assert_int_equal(gguf_open(&f, g_dir, &err), DS_ERR_IO);
    expect_msg(&err, "not a regular file", NULL);

    bb_header(&b, 3, 0, 0);
    memcpy(b.p, "GGML", 4);
    expect_bad(&b, "bad magic 'GGML' (expected 'GGUF'): not a GGUF file", NULL);
    b.n = 10;
    memcpy(b.p, "GGUF", 4);
    expect_bad(&b, "truncated: the GGUF header needs 24 bytes, the file has 10", NULL);
    bb_header(&b, 1, 0, 0);
    expect_bad(&b, "GGUF version 1 is not supported (only 2 and 3)", NULL);
    bb_header(&b, 4, 0, 0);
    expect_bad(&b, "GGUF version 4 is not supported", NULL);
    bb_header(&b, 0x03000000, 0, 0);
    expect_bad(&b, "GGUF version 0x03000000 looks byte-swapped: big-endian files are not supported", NULL);

    // Lying counts: refused before anything is allocated for them.
    bb_header(&b, 3, 0, 1ull << 60);
    bb_kv_u32(&b, "k", 1);
    expect_bad(&b, "metadata_kv_count 1152921504606846976 is impossible in a file of 41 bytes", NULL);
    bb_header(&b, 3, UINT64_MAX, 1);
    bb_kv_u32(&b, "k", 1);
    expect_bad(&b, "tensor_count 18446744073709551615 is impossible", NULL);
    // Plausible for the size, but the pairs are not there.
    bb_header(&b, 3, 0, 3);
    bb_kv_u32(&b, "k", 1);
    bb_zeros(&b, 30);
    expect_bad(&b, "metadata key 1 is empty", NULL);
    bb_header(&b, 3, 0, 2);
    bb_kv_u32(&b, "k", 1);
    bb_u64(&b, 5);
    bb_zeros(&b, 17);
    expect_bad(&b, "metadata key 1 ('?\?\?\?\?') contains a NUL byte", NULL);
    bb_header(&b, 3, 0, 2);
    bb_kv_u32(&b, "k", 1);
    bb_u64(&b, 3);
    bb_bytes(&b, "a\0b", 3);
    bb_u32(&b, GGUF_VAL_U8);
    bb_u8(&b, 0);
    expect_bad(&b, "metadata key 1 ('a?b') contains a NUL byte", NULL);
}

static void test_malformed_kv(void **state) {
    (void)state;
    bb b;
    // Key length past the end.
    bb_header(&b, 3, 0, 1);
    bb_u64(&b, 1000);
    bb_bytes(&b, "abcdefghijklmnop", 16);
    expect_bad(&b, "metadata key 0: key (1000 bytes at byte 32) runs past the end of the file (size 48)", NULL);
    // String value length past the end.
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "general.name");
    bb_u32(&b, GGUF_VAL_STRING);
    bb_u64(&b, 1000);
    bb_bytes(&b, "short", 5);
    expect_bad(&b, "key 'general.name': string (1000 bytes at byte 56) runs past the end of the file (size 61)", NULL);
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "general.name");
    bb_u32(&b, GGUF_VAL_STRING);
    bb_u32(&b, 0);
    expect_bad(&b, "key 'general.name': string length (8 bytes at byte 48) runs past the end", NULL);
    // Unknown value type.
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, 13);
    bb_u32(&b, 0);
    bb_u32(&b, 0);
    expect_bad(&b, "key 'k': unknown value type 13", NULL);
    // Scalar past the end.
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_VAL_U64);
    bb_u32(&b, 0);
    expect_bad(&b, "key 'k': u64 (8 bytes at byte 37) runs past the end", NULL);
    // Bools are 0 or 1.
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_VAL_BOOL);
    bb_u8(&b, 2);
    expect_bad(&b, "key 'k': bool value 2 at byte 37 is neither 0 nor 1", NULL);
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_VAL_ARRAY);
    bb_u32(&b, GGUF_VAL_BOOL);
    bb_u64(&b, 3);
    bb_bytes(&b, "\x01\x05\x00", 3);
    expect_bad(&b, "key 'k': bool element 1 is 5, neither 0 nor 1", NULL);
    // Arrays: unknown element type, lying counts.
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_VAL_ARRAY);
    bb_u32(&b, 77);
    bb_u64(&b, 1);
    bb_u32(&b, 0);
    expect_bad(&b, "key 'k': array of unknown element type 77", NULL);
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "tokenizer.ggml.scores");
    bb_u32(&b, GGUF_VAL_ARRAY);
    bb_u32(&b, GGUF_VAL_F32);
    bb_u64(&b, 1ull << 62);
    bb_zeros(&b, 16);
    expect_bad(&b, "key 'tokenizer.ggml.scores': array of 4611686018427387904 f32 elements at byte 69 runs past the end of the file (size 85)", NULL);
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "tokenizer.ggml.tokens");
    bb_u32(&b, GGUF_VAL_ARRAY);
    bb_u32(&b, GGUF_VAL_STRING);
    bb_u64(&b, 3);
    bb_str(&b, "a");
    bb_str(&b, "b");
    bb_u64(&b, 2);
    expect_bad(&b, "key 'tokenizer.ggml.tokens': string (2 bytes at byte 95) runs past the end", NULL);
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_VAL_ARRAY);
    bb_u32(&b, GGUF_VAL_STRING);
    bb_u64(&b, 100);
    bb_zeros(&b, 8 * 99);
    expect_bad(&b, "key 'k': array of 100 string elements at byte 49 runs past the end", NULL);
    // Nested arrays: the inner count is bounded too, and so is the depth.
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_VAL_ARRAY);
    bb_u32(&b, GGUF_VAL_ARRAY);
    bb_u64(&b, 2);
    bb_u32(&b, GGUF_VAL_U8);
    bb_u64(&b, 2);
    bb_bytes(&b, "\x01\x02", 2);
    bb_u32(&b, GGUF_VAL_U8);
    bb_u64(&b, 1000000);
    bb_zeros(&b, 10);
    expect_bad(&b, "key 'k': array of 1000000 u8 elements at byte 75 runs past the end of the file (size 85)", NULL);
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_VAL_ARRAY);
    bb_u32(&b, GGUF_VAL_ARRAY);
    bb_u64(&b, 1);
    for (int i = 0; i < GGUF_MAX_ARRAY_DEPTH; i++) {
        bb_u32(&b, GGUF_VAL_ARRAY);
        bb_u64(&b, 1);
    }
    bb_u32(&b, GGUF_VAL_U8);
    bb_u64(&b, 1);
    bb_u8(&b, 0);
    expect_bad(&b, "key 'k': arrays nested deeper than 8 levels", NULL);
    // Duplicate keys.
    bb_header(&b, 3, 0, 2);
    bb_kv_u32(&b, "general.file_type", 1);
    bb_kv_str(&b, "general.file_type", "x");
    expect_bad(&b, "duplicate key 'general.file_type'", NULL);
    // general.alignment: a u32 power of two.
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "general.alignment");
    bb_u32(&b, GGUF_VAL_I32);
    bb_u32(&b, 32);
    expect_bad(&b, "key 'general.alignment' is i32, expected u32", NULL);
    bb_header(&b, 3, 0, 1);
    bb_kv_u32(&b, "general.alignment", 48);
    expect_bad(&b, "key 'general.alignment' = 48 is not a power of two", NULL);
    bb_header(&b, 3, 0, 1);
    bb_kv_u32(&b, "general.alignment", 0);
    expect_bad(&b, "key 'general.alignment' = 0 is not a power of two", NULL);
    // File-controlled text in messages is clipped to printable ASCII.
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "bad\nkey\x01");
    bb_u32(&b, 99);
    expect_bad(&b, "key 'bad?key?': unknown value type 99", NULL);
}

// A file with the given tensor infos (F32 unless type says otherwise) and data_bytes bytes of
// data after the aligned data section start.
static void build_tensors(bb *b, int n, const char *const *names, const uint32_t *n_dims, const uint64_t (*dims)[4],
                          const uint32_t *types, const uint64_t *offsets, size_t data_bytes) {
    bb_header(b, 3, (uint64_t)n, 0);
    for (int i = 0; i < n; i++) bb_tensor(b, names[i], n_dims[i], dims[i], types ? types[i] : 0, offsets[i]);
    bb_pad(b, 32);
    bb_zeros(b, data_bytes);
}

#define ONE(name, nd, d0, d1, type, off, data)                                                       \
    build_tensors(&b, 1, (const char *const[]){name}, (const uint32_t[]){nd},                       \
                  (const uint64_t[][4]){{d0, d1, 0, 0}}, (const uint32_t[]){type}, (const uint64_t[]){off}, data)

static void test_malformed_tensors(void **state) {
    (void)state;
    bb b;
    ONE("", 1, 4, 0, GGUF_TYPE_F32, 0, 32);
    expect_bad(&b, "tensor 0 has an empty name", NULL);
    ONE("blk.0.attn_q.weight", 0, 4, 0, GGUF_TYPE_F32, 0, 32);
    expect_bad(&b, "tensor 'blk.0.attn_q.weight': n_dims 0 is not in 1..4", NULL);
    ONE("blk.0.attn_q.weight", 5, 4, 1, GGUF_TYPE_F32, 0, 64);
    expect_bad(&b, "tensor 'blk.0.attn_q.weight': n_dims 5 is not in 1..4", NULL);
    ONE("t", 2, 4, 1ull << 63, GGUF_TYPE_F32, 0, 32);
    expect_bad(&b, "tensor 't': dims[1] = 9223372036854775808 is over 2^63 - 1", NULL);
    ONE("t", 1, 32, 0, 4, 0, 32);
    expect_bad(&b, "tensor 't': unknown ggml type 4", NULL);
    ONE("t", 1, 32, 0, 99, 0, 32);
    expect_bad(&b, "tensor 't': unknown ggml type 99", NULL);
    ONE("blk.0.ffn_up.weight", 2, 33, 2, GGUF_TYPE_Q4_0, 0, 64);
    expect_bad(&b, "tensor 'blk.0.ffn_up.weight': dims[0] = 33 is not a multiple of the Q4_0 block size (32)", NULL);
    ONE("k", 1, 128, 0, GGUF_TYPE_Q4_K, 0, 256);
    expect_bad(&b, "tensor 'k': dims[0] = 128 is not a multiple of the Q4_K block size (256)", NULL);
    ONE("t", 2, 1ull << 32, 1ull << 32, GGUF_TYPE_F32, 0, 32);
    expect_bad(&b, "tensor 't': shape [4294967296, 4294967296] of F32 overflows a 64-bit size", NULL);
    ONE("t", 2, 1ull << 31, 1ull << 31, GGUF_TYPE_F32, 0, 32); // numel fits, bytes do not
    expect_bad(&b, "tensor 't': shape [2147483648, 2147483648] of F32 overflows a 64-bit size", NULL);
    ONE("t", 1, 4, 0, GGUF_TYPE_F32, 16, 64);
    expect_bad(&b, "tensor 't': offset 16 is not a multiple of the alignment (32)", NULL);
    // Past the end: the data section starts at 96 here.
    ONE("blk.0.attn_q.weight", 2, 8, 4, GGUF_TYPE_F32, 0, 100);
    assert_int_equal(b.n, 196);
    expect_bad(&b, "tensor 'blk.0.attn_q.weight': data [96, 224) past the end of the file (size 196)", NULL);
    ONE("t", 1, 8, 0, GGUF_TYPE_F32, 64, 64);
    expect_bad(&b, "tensor 't': data [128, 160) past the end of the file (size 128)", NULL);
    ONE("t", 1, 8, 0, GGUF_TYPE_F32, UINT64_MAX - 31, 64);
    expect_bad(&b, "tensor 't': offset 18446744073709551584 (+32 bytes) is past the end of the file", NULL);
    // The data section start itself past the end (an empty tensor needs no bytes, but the
    // section must exist).
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "e", 1, (const uint64_t[]){0}, 0, 0);
    expect_bad(&b, "the data section would start at byte 64, past the end of the file (size 57)", NULL);
    // Truncated tensor infos.
    bb_header(&b, 3, 2, 0);
    bb_tensor(&b, "blk.0.attn_output.weight.with.a.long.name", 1, (const uint64_t[]){8}, 0, 0);
    bb_str(&b, "b");
    bb_u32(&b, 2);
    bb_u64(&b, 8);
    bb_zeros(&b, 4);
    char want[96];
    snprintf(want, sizeof want, "tensor 'b': dims (16 bytes at byte %zu) runs past the end", b.n - 12);
    expect_bad(&b, want, NULL);
    // Two tensors: duplicates and overlaps.
    static const char *const ab[] = {"a", "b"}, *const aa[] = {"a", "a"};
    static const uint32_t nd1[] = {1, 1};
    static const uint64_t d16[][4] = {{16}, {16}}, d8[][4] = {{8}, {8}};
    build_tensors(&b, 2, aa, nd1, d8, NULL, (const uint64_t[]){0, 32}, 64);
    expect_bad(&b, "duplicate tensor name 'a'", NULL);
    build_tensors(&b, 2, ab, nd1, d16, NULL, (const uint64_t[]){0, 32}, 128);
    expect_bad(&b, "tensors 'a' [0, 64) and 'b' [32, 96) overlap", NULL);
    build_tensors(&b, 2, ab, nd1, d16, NULL, (const uint64_t[]){32, 0}, 128);
    expect_bad(&b, "tensors 'b' [0, 64) and 'a' [32, 96) overlap", NULL);
    build_tensors(&b, 2, ab, nd1, d8, NULL, (const uint64_t[]){0, 0}, 64);
    expect_bad(&b, "overlap", NULL);
    build_tensors(&b, 2, ab, (const uint32_t[]){1, 1}, (const uint64_t[][4]){{64}, {8}}, NULL, (const uint64_t[]){0, 128},
                  256);
    expect_bad(&b, "tensors 'a' [0, 256) and 'b' [128, 160) overlap", NULL);
}

// Files that are unusual but valid.
static void test_accepted(void **state) {
    (void)state;
    bb b;
    gguf_file f;
    // Out of order, with gaps, empty tensors sharing an offset, trailing bytes.
    static const char *const names[] = {"late", "early", "e1", "e2"};
    build_tensors(&b, 4, names, (const uint32_t[]){1, 2, 1, 2}, (const uint64_t[][4]){{8}, {4, 2}, {0}, {3, 0}},
                  (const uint32_t[]){GGUF_TYPE_F32, GGUF_TYPE_F32, GGUF_TYPE_Q8_0, GGUF_TYPE_F16},
                  (const uint64_t[]){96, 0, 32, 32}, 256);
    open_ok(&f, &b);
    assert_int_equal(gguf_find_tensor(&f, "late")->offset, 96);
    assert_int_equal(gguf_find_tensor(&f, "e1")->size, 0);
    assert_int_equal(gguf_find_tensor(&f, "e2")->numel, 0);
    gguf_close(&f);
    // No tensors: the file may end right after the metadata, unpadded.
    bb_header(&b, 3, 0, 1);
    bb_kv_u32(&b, "k", 7);
    open_ok(&f, &b);
    assert_int_equal(f.n_tensors, 0);
    gguf_close(&f);
    // A valid nested array: validated and skipped; its elements are not numbers.
    bb_header(&b, 3, 0, 2);
    bb_str(&b, "nested");
    bb_u32(&b, GGUF_VAL_ARRAY);
    bb_u32(&b, GGUF_VAL_ARRAY);
    bb_u64(&b, 2);
    bb_u32(&b, GGUF_VAL_STRING);
    bb_u64(&b, 1);
    bb_str(&b, "x");
    bb_u32(&b, GGUF_VAL_U16);
    bb_u64(&b, 2);
    bb_u32(&b, 0x00020001);
    bb_kv_u32(&b, "after", 9);
    open_ok(&f, &b);
    const gguf_kv *kv = gguf_find_kv(&f, "nested");
    assert_non_null(kv);
    assert_int_equal(kv->elem_type, GGUF_VAL_ARRAY);
    assert_int_equal(kv->count, 2);
    assert_int_equal(kv->size, 12 + 9 + 12 + 4);
    int64_t v;
    assert_false(gguf_array_int(kv, 0, &v));
    assert_null(gguf_array_string(kv, 0, NULL));
    uint32_t after = 0;
    ds_error err;
    assert_int_equal(gguf_get_u32(&f, "after", &after, &err), DS_OK);
    assert_int_equal(after, 9);
    gguf_close(&f);
    // A larger alignment from the file.
    bb_header(&b, 3, 1, 1);
    bb_kv_u32(&b, "general.alignment", 128);
    bb_tensor(&b, "t", 1, (const uint64_t[]){4}, 0, 128);
    bb_pad(&b, 128);
    bb_zeros(&b, 128 + 16);
    open_ok(&f, &b);
    assert_int_equal(f.alignment, 128);
    assert_int_equal(f.data_offset, 128);
    assert_ptr_equal(f.tensors[0].data, f.map + 256);
    gguf_close(&f);
}

// ---- truncation and mutation: never a crash ----

// Opens path; on success every accessor must stay inside the mapping (all values and tensor
// bytes are read, so ASan would see a stray pointer); on failure the message must name the
// file. Returns 1 if opened.
static int check_open_clean(const char *path, const char *name) {
    gguf_file f;
    ds_error err = {{0}};
    ds_status st = gguf_open(&f, path, &err);
    if (st != DS_OK) {
        if (st != DS_ERR_FORMAT) fail_msg("unexpected status %d: %s", st, err.msg);
        if (!strstr(err.msg, name)) fail_msg("message '%s' does not name the file", err.msg);
        assert_null(f.map);
        return 0;
    }
    const uint8_t *end = f.map + f.size;
    unsigned sum = 0;
    for (int i = 0; i < f.n_kv; i++) {
        const gguf_kv *kv = &f.kvs[i];
        assert_ptr_equal(gguf_find_kv(&f, kv->key), kv);
        assert_true(kv->data >= f.map && kv->data <= end && kv->size <= (uint64_t)(end - kv->data));
        for (uint64_t k = 0; k < kv->size; k++) sum += kv->data[k];
        if (kv->type != GGUF_VAL_ARRAY) continue;
        for (uint64_t j = 0; j < kv->count && j < 5000; j++) {
            size_t len;
            int64_t v;
            double d;
            bool b;
            const char *s = gguf_array_string(kv, j, &len);
            if (s) {
                assert_true((const uint8_t *)s >= kv->data && len <= (uint64_t)(kv->data + kv->size - (const uint8_t *)s));
                for (size_t k = 0; k < len; k++) sum += (unsigned char)s[k];
            }
            if (gguf_array_int(kv, j, &v)) sum += (unsigned)v;
            if (gguf_array_float(kv, j, &d)) sum += d == d;
            if (gguf_array_bool(kv, j, &b)) sum += b;
        }
    }
    for (int i = 0; i < f.n_tensors; i++) {
        const gguf_tensor *t = &f.tensors[i];
        assert_ptr_equal(gguf_find_tensor(&f, t->name), t);
        assert_true(t->data >= f.map + f.data_offset && t->size <= (uint64_t)(end - t->data));
        for (uint64_t k = 0; k < t->size; k++) sum += t->data[k];
    }
    (void)sum;
    gguf_close(&f);
    return 1;
}

// Rewrites the mutation file in place: one open fd, so each variant costs two syscalls.
static void rewrite_fd(int fd, const void *p, size_t n) {
    assert_int_equal(ftruncate(fd, (off_t)n), 0);
    assert_int_equal(pwrite(fd, p, n, 0), (ssize_t)n);
}

// A small file with every kind of value; its last tensor ends the file (no trailing padding).
static void write_small(const char *path) {
    gguf_writer w;
    gguf_writer_init(&w);
    gguf_writer_add_string(&w, "general.architecture", "deepseek2");
    gguf_writer_add_u32(&w, "general.alignment", 32);
    gguf_writer_add_bool(&w, "b", true);
    const char *toks[] = {"<s>", "a", "", "bc"};
    gguf_writer_add_array_string(&w, "tokenizer.ggml.tokens", toks, NULL, 4);
    int32_t types[] = {3, 1, 1, 1};
    gguf_writer_add_array_i32(&w, "tokenizer.ggml.token_type", types, 4);
    bool flags[] = {false, true};
    gguf_writer_add_array(&w, "flags", GGUF_VAL_BOOL, flags, 2);
    double rope = 10000;
    gguf_writer_add(&w, "rope", GGUF_VAL_F64, &rope);
    uint8_t q[2 * 34], x[32];
    fill_pattern(q, sizeof q, 3);
    fill_pattern(x, sizeof x, 4);
    gguf_writer_add_tensor(&w, "q", GGUF_TYPE_Q8_0, 2, (const int64_t[]){32, 2}, q);
    gguf_writer_add_tensor(&w, "x", GGUF_TYPE_F32, 1, (const int64_t[]){8}, x);
    ds_error err;
    assert_int_equal(gguf_write(path, &w, &err), DS_OK);
    gguf_writer_free(&w);
}

static void test_truncation(void **state) {
    (void)state;
    const char *good = tpath("small.gguf"), *path = tpath("trunc.gguf");
    write_small(good);
    char *orig;
    size_t size;
    ds_error err;
    assert_int_equal(file_read_all(good, &orig, &size, &err), DS_OK);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    int opened = 0;
    for (size_t len = 0; len <= size; len++) { // every truncation: only the full file is valid
        rewrite_fd(fd, orig, len);
        opened += check_open_clean(path, "trunc.gguf");
    }
    close(fd);
    assert_int_equal(opened, 1);
    print_message("truncation: %zu lengths, only the full file opened\n", size + 1);
    free(orig);
}

static void test_mutations(void **state) {
    (void)state;
    const char *good = tpath("small.gguf"), *path = tpath("mut.gguf");
    write_small(good);
    char *orig;
    size_t size;
    ds_error err;
    assert_int_equal(file_read_all(good, &orig, &size, &err), DS_OK);
    gguf_file f;
    assert_int_equal(gguf_open(&f, good, &err), DS_OK);
    size_t hend = (size_t)f.data_offset; // header, metadata, tensor infos and padding
    gguf_close(&f);
    unsigned char *m = malloc(size);
    assert_non_null(m);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    int opened = 0, tries = 0;
    // Every byte of the header region set to several values.
    for (size_t pos = 0; pos < hend; pos++) {
        const unsigned char orig_b = (unsigned char)orig[pos];
        const unsigned char vals[] = {0x00, 0x01, 0x02, 0x7f, 0x80, 0xff, (unsigned char)(orig_b ^ 0x01),
                                      (unsigned char)(orig_b + 0x10)};
        for (size_t k = 0; k < sizeof vals; k++) {
            if (vals[k] == orig_b) continue;
            memcpy(m, orig, size);
            m[pos] = vals[k];
            rewrite_fd(fd, m, size);
            opened += check_open_clean(path, "mut.gguf");
            tries++;
        }
    }
    // Random multi-byte mutations, mostly of the header region.
    uint64_t seed = 12345;
    for (int it = 0; it < 2000; it++, tries++) {
        memcpy(m, orig, size);
        int k = 1 + (int)(rng_next(&seed) % 4);
        for (int j = 0; j < k; j++) {
            uint32_t r = rng_next(&seed);
            size_t pos = r % 10 ? rng_next(&seed) % hend : rng_next(&seed) % size;
            m[pos] = r % 3 ? (unsigned char)rng_next(&seed) : (unsigned char)(r % 2 ? 0xff : 0);
        }
        rewrite_fd(fd, m, size);
        opened += check_open_clean(path, "mut.gguf");
    }
    close(fd);
    print_message("mutations: %d of %d variants opened, the rest rejected cleanly\n", opened, tries);
    assert_true(opened > 1 && opened < tries / 2); // both paths exercised
    free(m);
    free(orig);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types),          cmocka_unit_test(test_minimal_file),
        cmocka_unit_test(test_round_trip),     cmocka_unit_test(test_large_vocab),
        cmocka_unit_test(test_write_errors),   cmocka_unit_test(test_malformed_header),
        cmocka_unit_test(test_malformed_kv),   cmocka_unit_test(test_malformed_tensors),
        cmocka_unit_test(test_accepted),       cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
