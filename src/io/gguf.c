// GGUF reading (mmap + every field checked before use) and streaming atomic writing.
// Like the safetensors reader, this trusts nothing in the file: each count is bounded by
// the bytes left before anything is allocated for it, each length and offset is checked
// against the file size with overflow-safe arithmetic, and every failure is a one-line
// message naming the file and the key or tensor, never a crash.
#include "io/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/fileutil.h"

// Values and tensor bytes are used as they lie in the file, which is little-endian.
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "GGUF data is little-endian");
_Static_assert(sizeof(float) == 4 && sizeof(double) == 8 && sizeof(bool) == 1, "GGUF scalar sizes");

typedef unsigned long long ull; // for printf

#define GGUF_HEADER_BYTES 24     // magic, version, tensor_count, metadata_kv_count
#define GGUF_MIN_KV_BYTES 14     // key length 8 + a 1-byte key + type 4 + a 1-byte value
#define GGUF_MIN_TENSOR_BYTES 33 // name length 8 + 1 + n_dims 4 + one dim 8 + type 4 + offset 8
#define GGUF_MAX_KEY 65535       // the spec's limit on key length (our writer enforces it)
#define GGUF_ALIGNMENT_KEY "general.alignment"

// ---- types ----

typedef struct {
    const char *name;
    uint16_t block; // elements per block (0: not a type)
    uint16_t bytes; // bytes per block
} gguf_type_info;

// Block layouts as in ggml-common.h (QK_K = 256 for the K, IQ and TQ families).
static const gguf_type_info gguf_types[GGUF_TYPE_COUNT] = {
    [GGUF_TYPE_F32] = {"F32", 1, 4},          [GGUF_TYPE_F16] = {"F16", 1, 2},
    [GGUF_TYPE_Q4_0] = {"Q4_0", 32, 18},      [GGUF_TYPE_Q4_1] = {"Q4_1", 32, 20},
    [GGUF_TYPE_Q5_0] = {"Q5_0", 32, 22},      [GGUF_TYPE_Q5_1] = {"Q5_1", 32, 24},
    [GGUF_TYPE_Q8_0] = {"Q8_0", 32, 34},      [GGUF_TYPE_Q8_1] = {"Q8_1", 32, 36},
    [GGUF_TYPE_Q2_K] = {"Q2_K", 256, 84},     [GGUF_TYPE_Q3_K] = {"Q3_K", 256, 110},
    [GGUF_TYPE_Q4_K] = {"Q4_K", 256, 144},    [GGUF_TYPE_Q5_K] = {"Q5_K", 256, 176},
    [GGUF_TYPE_Q6_K] = {"Q6_K", 256, 210},    [GGUF_TYPE_Q8_K] = {"Q8_K", 256, 292},
    [GGUF_TYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66}, [GGUF_TYPE_IQ2_XS] = {"IQ2_XS", 256, 74},
    [GGUF_TYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98}, [GGUF_TYPE_IQ1_S] = {"IQ1_S", 256, 50},
    [GGUF_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18},  [GGUF_TYPE_IQ3_S] = {"IQ3_S", 256, 110},
    [GGUF_TYPE_IQ2_S] = {"IQ2_S", 256, 82},   [GGUF_TYPE_IQ4_XS] = {"IQ4_XS", 256, 136},
    [GGUF_TYPE_I8] = {"I8", 1, 1},            [GGUF_TYPE_I16] = {"I16", 1, 2},
    [GGUF_TYPE_I32] = {"I32", 1, 4},          [GGUF_TYPE_I64] = {"I64", 1, 8},
    [GGUF_TYPE_F64] = {"F64", 1, 8},          [GGUF_TYPE_IQ1_M] = {"IQ1_M", 256, 56},
    [GGUF_TYPE_BF16] = {"BF16", 1, 2},        [GGUF_TYPE_TQ1_0] = {"TQ1_0", 256, 54},
    [GGUF_TYPE_TQ2_0] = {"TQ2_0", 256, 66},   [GGUF_TYPE_MXFP4] = {"MXFP4", 32, 17},
};

size_t gguf_type_block_size(int type) { return type >= 0 && type < GGUF_TYPE_COUNT ? gguf_types[type].block : 0; }
size_t gguf_type_block_bytes(int type) { return type >= 0 && type < GGUF_TYPE_COUNT ? gguf_types[type].bytes : 0; }
const char *gguf_type_name(int type) { return gguf_type_block_size(type) ? gguf_types[type].name : "unknown"; }

// Value type names and sizes (0: variable-size).
static const struct {
    const char *name;
    uint8_t size;
} gguf_vals[GGUF_VAL_COUNT] = {
    [GGUF_VAL_U8] = {"u8", 1},   [GGUF_VAL_I8] = {"i8", 1},          [GGUF_VAL_U16] = {"u16", 2},
    [GGUF_VAL_I16] = {"i16", 2}, [GGUF_VAL_U32] = {"u32", 4},        [GGUF_VAL_I32] = {"i32", 4},
    [GGUF_VAL_F32] = {"f32", 4}, [GGUF_VAL_BOOL] = {"bool", 1},      [GGUF_VAL_STRING] = {"string", 0},
    [GGUF_VAL_ARRAY] = {"array", 0}, [GGUF_VAL_U64] = {"u64", 8},    [GGUF_VAL_I64] = {"i64", 8},
    [GGUF_VAL_F64] = {"f64", 8},
};

static bool gguf_val_known(uint64_t t) { return t < GGUF_VAL_COUNT; }
const char *gguf_value_type_name(int type) { return type >= 0 && type < GGUF_VAL_COUNT ? gguf_vals[type].name : "unknown"; }

static bool gguf_val_is_int(int t) {
    return t == GGUF_VAL_U8 || t == GGUF_VAL_I8 || t == GGUF_VAL_U16 || t == GGUF_VAL_I16 || t == GGUF_VAL_U32 ||
           t == GGUF_VAL_I32 || t == GGUF_VAL_U64 || t == GGUF_VAL_I64;
}
static bool gguf_val_is_float(int t) { return t == GGUF_VAL_F32 || t == GGUF_VAL_F64; }
// A fixed-size scalar (what gguf_writer_add and numeric arrays take).
static bool gguf_val_is_scalar(int t) { return t >= 0 && t < GGUF_VAL_COUNT && gguf_vals[t].size > 0; }

// ---- small helpers ----

static uint32_t gguf_le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t gguf_le64(const uint8_t *p) { return (uint64_t)gguf_le32(p) | (uint64_t)gguf_le32(p + 4) << 32; }

// A file-controlled byte string made safe for a one-line message: short, printable ASCII only.
static const char *gguf_clip(char *buf, size_t n, const uint8_t *s, uint64_t len) {
    size_t i = 0;
    for (; i < len && i + 4 < n; i++) buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : '?';
    if (i < len) buf[i++] = '.', buf[i++] = '.', buf[i++] = '.';
    buf[i] = 0;
    return buf;
}

static const char *gguf_clip_str(char *buf, size_t n, const char *s) {
    return gguf_clip(buf, n, (const uint8_t *)s, strlen(s));
}

static void gguf_format_dims(char *buf, size_t n, int n_dims, const int64_t *dims) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < n_dims && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)dims[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

// Elements and bytes of a tensor (dims[0] a multiple of the block), or false on overflow
// (numel must also stay below 2^63, as ggml keeps it in an int64).
static bool gguf_tensor_bytes(int type, int n_dims, const int64_t *dims, uint64_t *numel, uint64_t *bytes) {
    uint64_t n = 1;
    for (int i = 0; i < n_dims; i++)
        if (dims[i] < 0 || __builtin_mul_overflow(n, (uint64_t)dims[i], &n)) return false;
    if (n > (uint64_t)INT64_MAX) return false;
    *numel = n;
    return !__builtin_mul_overflow(n / gguf_type_block_size(type), (uint64_t)gguf_type_block_bytes(type), bytes);
}

// Grows *p (of *cap elements of elem bytes) to hold at least need elements.
static bool gguf_grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return true;
    int ncap = *cap ? *cap : 16;
    while (ncap < need) ncap = ncap > INT_MAX / 2 ? INT_MAX : ncap * 2;
    void *q = realloc(*p, (size_t)ncap * elem);
    if (!q) return false;
    *p = q;
    *cap = ncap;
    return true;
}

// ---- reading: a bounded cursor over the mapping ----

typedef struct {
    const gguf_file *f;
    uint64_t pos;
    ds_error *err;
} gguf_cur;

// Fails unless n bytes are left at the cursor. `what` names the key or tensor, `field` the part.
static ds_status gguf_need(gguf_cur *c, uint64_t n, const char *what, const char *field) {
    if (n <= c->f->size - c->pos) return DS_OK;
    return ds_error_set(c->err, DS_ERR_FORMAT, "%s: %s: %s (%llu bytes at byte %llu) runs past the end of the file (size %zu)",
                        c->f->path, what, field, (ull)n, (ull)c->pos, c->f->size);
}

static uint32_t gguf_take32(gguf_cur *c) { // after gguf_need
    uint32_t v = gguf_le32(c->f->map + c->pos);
    c->pos += 4;
    return v;
}

static uint64_t gguf_take64(gguf_cur *c) {
    uint64_t v = gguf_le64(c->f->map + c->pos);
    c->pos += 8;
    return v;
}

static ds_status gguf_read_str(gguf_cur *c, const char *what, const char *field, const uint8_t **s, uint64_t *len) {
    char f2[64];
    snprintf(f2, sizeof f2, "%s length", field);
    ds_status st = gguf_need(c, 8, what, f2);
    if (st) return st;
    uint64_t n = gguf_take64(c);
    if ((st = gguf_need(c, n, what, field))) return st;
    *s = c->f->map + c->pos;
    *len = n;
    c->pos += n;
    return DS_OK;
}

static ds_status gguf_skip_array(gguf_cur *c, uint32_t et, uint64_t n, int depth, const char *what);

// Validates one value of type t at the cursor and moves past it. depth counts the arrays
// this value sits in.
static ds_status gguf_skip_value(gguf_cur *c, uint32_t t, int depth, const char *what) {
    const gguf_file *f = c->f;
    ds_status st;
    if (!gguf_val_known(t))
        return ds_error_set(c->err, DS_ERR_FORMAT, "%s: %s: unknown value type %u", f->path, what, t);
    if (t == GGUF_VAL_STRING) {
        const uint8_t *s;
        uint64_t len;
        return gguf_read_str(c, what, "string", &s, &len);
    }
    if (t == GGUF_VAL_ARRAY) {
        if (depth >= GGUF_MAX_ARRAY_DEPTH)
            return ds_error_set(c->err, DS_ERR_FORMAT, "%s: %s: arrays nested deeper than %d levels at byte %llu",
                                f->path, what, GGUF_MAX_ARRAY_DEPTH, (ull)c->pos);
        if ((st = gguf_need(c, 12, what, "array header"))) return st;
        uint32_t et = gguf_take32(c);
        uint64_t n = gguf_take64(c);
        return gguf_skip_array(c, et, n, depth + 1, what);
    }
    if ((st = gguf_need(c, gguf_vals[t].size, what, gguf_vals[t].name))) return st;
    if (t == GGUF_VAL_BOOL && f->map[c->pos] > 1)
        return ds_error_set(c->err, DS_ERR_FORMAT, "%s: %s: bool value %u at byte %llu is neither 0 nor 1", f->path, what,
                            f->map[c->pos], (ull)c->pos);
    c->pos += gguf_vals[t].size;
    return DS_OK;
}

// The n elements of an array of et (its header already read). The count is checked against
// the bytes left before any element is looked at: each element takes at least its minimal
// size, so the walk is linear in the file size.
static ds_status gguf_skip_array(gguf_cur *c, uint32_t et, uint64_t n, int depth, const char *what) {
    const gguf_file *f = c->f;
    if (!gguf_val_known(et))
        return ds_error_set(c->err, DS_ERR_FORMAT, "%s: %s: array of unknown element type %u", f->path, what, et);
    uint64_t min = et == GGUF_VAL_STRING ? 8 : et == GGUF_VAL_ARRAY ? 12 : gguf_vals[et].size;
    uint64_t left = f->size - c->pos;
    if (n > left / min)
        return ds_error_set(c->err, DS_ERR_FORMAT,
                            "%s: %s: array of %llu %s elements at byte %llu runs past the end of the file (size %zu)",
                            f->path, what, (ull)n, gguf_vals[et].name, (ull)c->pos, f->size);
    if (gguf_vals[et].size) { // fixed-size elements: one jump (bools are checked one by one)
        if (et == GGUF_VAL_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (f->map[c->pos + i] > 1)
                    return ds_error_set(c->err, DS_ERR_FORMAT, "%s: %s: bool element %llu is %u, neither 0 nor 1", f->path,
                                        what, (ull)i, f->map[c->pos + i]);
        c->pos += n * min;
        return DS_OK;
    }
    for (uint64_t i = 0; i < n; i++) {
        ds_status st = gguf_skip_value(c, et, depth, what);
        if (st) return st;
    }
    return DS_OK;
}

// ---- reading: metadata ----

// Offsets of each string of a validated string array, for O(1) element access. The array's
// bytes hold at least 8 per element, so the index is never larger than the file.
static ds_status gguf_index_strings(const gguf_file *f, gguf_kv *kv, ds_error *err) {
    kv->str_off = malloc(kv->count ? (size_t)kv->count * sizeof *kv->str_off : 1);
    char clip[72];
    if (!kv->str_off)
        return ds_error_set(err, DS_ERR_OOM, "%s: out of memory indexing key '%s'", f->path,
                            gguf_clip_str(clip, sizeof clip, kv->key));
    uint64_t off = 0;
    for (uint64_t i = 0; i < kv->count; i++) {
        kv->str_off[i] = off;
        off += 8 + gguf_le64(kv->data + off);
    }
    return DS_OK;
}

// One key-value pair at the cursor into *kv (zeroed); i is its index, for messages.
static ds_status gguf_parse_kv(gguf_cur *c, int i, gguf_kv *kv) {
    const gguf_file *f = c->f;
    char what[112], clip[72];
    snprintf(what, sizeof what, "metadata key %d", i);
    const uint8_t *key;
    uint64_t klen;
    ds_status st = gguf_read_str(c, what, "key", &key, &klen);
    if (st) return st;
    if (klen == 0) return ds_error_set(c->err, DS_ERR_FORMAT, "%s: metadata key %d is empty", f->path, i);
    if (memchr(key, 0, (size_t)klen))
        return ds_error_set(c->err, DS_ERR_FORMAT, "%s: metadata key %d ('%s') contains a NUL byte", f->path, i,
                            gguf_clip(clip, sizeof clip, key, klen));
    kv->key = strndup((const char *)key, (size_t)klen);
    if (!kv->key) return ds_error_set(c->err, DS_ERR_OOM, "%s: out of memory", f->path);
    snprintf(what, sizeof what, "key '%s'", gguf_clip(clip, sizeof clip, key, klen));
    if ((st = gguf_need(c, 4, what, "value type"))) return st;
    uint32_t t = gguf_take32(c);
    if (!gguf_val_known(t))
        return ds_error_set(c->err, DS_ERR_FORMAT, "%s: %s: unknown value type %u", f->path, what, t);
    kv->type = kv->elem_type = (gguf_value_type)t;
    kv->count = 1;
    if (t == GGUF_VAL_ARRAY) {
        if ((st = gguf_need(c, 12, what, "array header"))) return st;
        uint32_t et = gguf_take32(c);
        uint64_t n = gguf_take64(c), start = c->pos;
        if ((st = gguf_skip_array(c, et, n, 1, what))) return st;
        kv->elem_type = (gguf_value_type)et;
        kv->count = n;
        kv->data = f->map + start;
        kv->size = c->pos - start;
        return et == GGUF_VAL_STRING ? gguf_index_strings(f, kv, c->err) : DS_OK;
    }
    if (t == GGUF_VAL_STRING) return gguf_read_str(c, what, "string", &kv->data, &kv->size);
    uint64_t start = c->pos;
    if ((st = gguf_skip_value(c, t, 0, what))) return st;
    kv->data = f->map + start;
    kv->size = c->pos - start;
    return DS_OK;
}

static int gguf_cmp_kv(const void *a, const void *b) {
    return strcmp((*(const gguf_kv *const *)a)->key, (*(const gguf_kv *const *)b)->key);
}

static int gguf_cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const gguf_tensor *const *)a)->name, (*(const gguf_tensor *const *)b)->name);
}

// Sorted indices for binary search, refusing duplicates.
static ds_status gguf_sort_kvs(gguf_file *f, ds_error *err) {
    const gguf_kv **by = malloc((f->n_kv > 0 ? (size_t)f->n_kv : 1) * sizeof *by);
    f->kv_sorted = malloc((f->n_kv > 0 ? (size_t)f->n_kv : 1) * sizeof *f->kv_sorted);
    ds_status st = DS_OK;
    if (!by || !f->kv_sorted) st = ds_error_set(err, DS_ERR_OOM, "%s: out of memory", f->path);
    for (int i = 0; i < f->n_kv && !st; i++) by[i] = &f->kvs[i];
    if (!st) qsort(by, (size_t)f->n_kv, sizeof *by, gguf_cmp_kv);
    for (int i = 0; i < f->n_kv && !st; i++) {
        char clip[72];
        if (i && !strcmp(by[i - 1]->key, by[i]->key))
            st = ds_error_set(err, DS_ERR_FORMAT, "%s: duplicate key '%s'", f->path, gguf_clip_str(clip, sizeof clip, by[i]->key));
        f->kv_sorted[i] = (int)(by[i] - f->kvs);
    }
    free(by);
    return st;
}

static ds_status gguf_parse_alignment(gguf_file *f, ds_error *err) {
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *kv = gguf_find_kv(f, GGUF_ALIGNMENT_KEY);
    if (!kv) return DS_OK;
    if (kv->type != GGUF_VAL_U32)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: key '" GGUF_ALIGNMENT_KEY "' is %s, expected u32", f->path,
                            gguf_value_type_name(kv->type));
    uint32_t a = gguf_le32(kv->data);
    if (a == 0 || (a & (a - 1)))
        return ds_error_set(err, DS_ERR_FORMAT, "%s: key '" GGUF_ALIGNMENT_KEY "' = %u is not a power of two", f->path, a);
    f->alignment = a;
    return DS_OK;
}

// ---- reading: tensor infos ----

static ds_status gguf_parse_tensor(gguf_cur *c, int i, gguf_tensor *t) {
    const gguf_file *f = c->f;
    char what[112], clip[72];
    snprintf(what, sizeof what, "tensor %d", i);
    const uint8_t *name;
    uint64_t nlen;
    ds_status st = gguf_read_str(c, what, "name", &name, &nlen);
    if (st) return st;
    if (nlen == 0) return ds_error_set(c->err, DS_ERR_FORMAT, "%s: tensor %d has an empty name", f->path, i);
    if (memchr(name, 0, (size_t)nlen))
        return ds_error_set(c->err, DS_ERR_FORMAT, "%s: tensor %d ('%s') has a NUL byte in its name", f->path, i,
                            gguf_clip(clip, sizeof clip, name, nlen));
    t->name = strndup((const char *)name, (size_t)nlen);
    if (!t->name) return ds_error_set(c->err, DS_ERR_OOM, "%s: out of memory", f->path);
    snprintf(what, sizeof what, "tensor '%s'", gguf_clip(clip, sizeof clip, name, nlen));
    if ((st = gguf_need(c, 4, what, "n_dims"))) return st;
    uint32_t nd = gguf_take32(c);
    if (nd < 1 || nd > GGUF_MAX_DIMS)
        return ds_error_set(c->err, DS_ERR_FORMAT, "%s: %s: n_dims %u is not in 1..%d", f->path, what, nd, GGUF_MAX_DIMS);
    if ((st = gguf_need(c, 8ull * nd, what, "dims"))) return st;
    t->n_dims = (int)nd;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        uint64_t v = d < t->n_dims ? gguf_take64(c) : 1;
        if (v > (uint64_t)INT64_MAX)
            return ds_error_set(c->err, DS_ERR_FORMAT, "%s: %s: dims[%d] = %llu is over 2^63 - 1", f->path, what, d, (ull)v);
        t->dims[d] = (int64_t)v;
    }
    if ((st = gguf_need(c, 4, what, "type"))) return st;
    uint32_t type = gguf_take32(c);
    size_t block = gguf_type_block_size((int)type);
    if (type >= GGUF_TYPE_COUNT || !block)
        return ds_error_set(c->err, DS_ERR_FORMAT, "%s: %s: unknown ggml type %u", f->path, what, type);
    t->type = (gguf_type)type;
    if ((uint64_t)t->dims[0] % block)
        return ds_error_set(c->err, DS_ERR_FORMAT, "%s: %s: dims[0] = %lld is not a multiple of the %s block size (%zu)",
                            f->path, what, (long long)t->dims[0], gguf_type_name(t->type), block);
    if (!gguf_tensor_bytes(t->type, t->n_dims, t->dims, &t->numel, &t->size)) {
        char dims[128];
        gguf_format_dims(dims, sizeof dims, t->n_dims, t->dims);
        return ds_error_set(c->err, DS_ERR_FORMAT, "%s: %s: shape %s of %s overflows a 64-bit size", f->path, what, dims,
                            gguf_type_name(t->type));
    }
    if ((st = gguf_need(c, 8, what, "offset"))) return st;
    t->offset = gguf_take64(c);
    if (t->offset % f->alignment)
        return ds_error_set(c->err, DS_ERR_FORMAT, "%s: %s: offset %llu is not a multiple of the alignment (%u)", f->path,
                            what, (ull)t->offset, f->alignment);
    return DS_OK;
}

// Every tensor's bytes inside the file (the data section starts at f->data_offset).
static ds_status gguf_place_tensors(gguf_file *f, ds_error *err) {
    uint64_t data_size = f->size - f->data_offset; // data_offset <= size when there are tensors
    for (int i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        char clip[72];
        if (t->offset > data_size || t->size > data_size - t->offset) {
            uint64_t b, e;
            if (__builtin_add_overflow(f->data_offset, t->offset, &b) || __builtin_add_overflow(b, t->size, &e))
                return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s': offset %llu (+%llu bytes) is past the end of the file (size %zu)",
                                    f->path, gguf_clip_str(clip, sizeof clip, t->name), (ull)t->offset, (ull)t->size, f->size);
            return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s': data [%llu, %llu) past the end of the file (size %zu)",
                                f->path, gguf_clip_str(clip, sizeof clip, t->name), (ull)b, (ull)e, f->size);
        }
        t->data = f->map + f->data_offset + t->offset;
    }
    return DS_OK;
}

static int gguf_cmp_offset(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return (x->size > y->size) - (x->size < y->size);
}

// Sorted name indices (refusing duplicates), then no two tensors sharing bytes: they would
// alias each other's weights. Empty tensors own no bytes.
static ds_status gguf_sort_tensors(gguf_file *f, ds_error *err) {
    size_t n = f->n_tensors > 0 ? (size_t)f->n_tensors : 1;
    const gguf_tensor **by = malloc(n * sizeof *by);
    f->tensor_sorted = malloc(n * sizeof *f->tensor_sorted);
    ds_status st = DS_OK;
    if (!by || !f->tensor_sorted) st = ds_error_set(err, DS_ERR_OOM, "%s: out of memory", f->path);
    char c1[72], c2[72];
    for (int i = 0; i < f->n_tensors && !st; i++) by[i] = &f->tensors[i];
    if (!st) qsort(by, (size_t)f->n_tensors, sizeof *by, gguf_cmp_tensor_name);
    for (int i = 0; i < f->n_tensors && !st; i++) {
        if (i && !strcmp(by[i - 1]->name, by[i]->name))
            st = ds_error_set(err, DS_ERR_FORMAT, "%s: duplicate tensor name '%s'", f->path,
                              gguf_clip_str(c1, sizeof c1, by[i]->name));
        f->tensor_sorted[i] = (int)(by[i] - f->tensors);
    }
    if (!st) qsort(by, (size_t)f->n_tensors, sizeof *by, gguf_cmp_offset);
    const gguf_tensor *far = NULL; // the non-empty tensor reaching furthest so far
    for (int i = 0; i < f->n_tensors && !st; i++) {
        const gguf_tensor *t = by[i];
        if (!t->size) continue;
        if (far && t->offset < far->offset + far->size)
            st = ds_error_set(err, DS_ERR_FORMAT, "%s: tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) overlap", f->path,
                              gguf_clip_str(c1, sizeof c1, far->name), (ull)far->offset, (ull)(far->offset + far->size),
                              gguf_clip_str(c2, sizeof c2, t->name), (ull)t->offset, (ull)(t->offset + t->size));
        if (!far || t->offset + t->size > far->offset + far->size) far = t;
    }
    free(by);
    return st;
}

// ---- reading: the whole file ----

static ds_status gguf_parse_counts(gguf_file *f, uint64_t *n_tensors, uint64_t *n_kv, ds_error *err) {
    const uint8_t *m = f->map;
    if (memcmp(m, "GGUF", 4)) {
        char clip[16];
        return ds_error_set(err, DS_ERR_FORMAT, "%s: bad magic '%s' (expected 'GGUF'): not a GGUF file", f->path,
                            gguf_clip(clip, sizeof clip, m, 4));
    }
    if (f->size < GGUF_HEADER_BYTES)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: truncated: the GGUF header needs %d bytes, the file has %zu", f->path,
                            GGUF_HEADER_BYTES, f->size);
    f->version = gguf_le32(m + 4);
    if (f->version != 2 && f->version != 3) {
        if (f->version && !(f->version & 0xffff))
            return ds_error_set(err, DS_ERR_FORMAT, "%s: GGUF version 0x%08x looks byte-swapped: big-endian files are not supported",
                                f->path, f->version);
        return ds_error_set(err, DS_ERR_FORMAT, "%s: GGUF version %u is not supported (only 2 and 3)", f->path, f->version);
    }
    *n_tensors = gguf_le64(m + 8);
    *n_kv = gguf_le64(m + 16);
    uint64_t left = f->size - GGUF_HEADER_BYTES;
    if (*n_kv > left / GGUF_MIN_KV_BYTES || *n_kv > INT_MAX)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: metadata_kv_count %llu is impossible in a file of %zu bytes", f->path,
                            (ull)*n_kv, f->size);
    if (*n_tensors > left / GGUF_MIN_TENSOR_BYTES || *n_tensors > INT_MAX)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor_count %llu is impossible in a file of %zu bytes", f->path,
                            (ull)*n_tensors, f->size);
    return DS_OK;
}

static ds_status gguf_parse(gguf_file *f, ds_error *err) {
    uint64_t n_tensors = 0, n_kv = 0;
    ds_status st = gguf_parse_counts(f, &n_tensors, &n_kv, err);
    if (st) return st;
    gguf_cur c = {f, GGUF_HEADER_BYTES, err};
    // Arrays grow as entries are actually read, so a lying count costs nothing.
    int cap = 0;
    for (uint64_t i = 0; i < n_kv; i++) {
        if (!gguf_grow((void **)&f->kvs, &cap, f->n_kv + 1, sizeof *f->kvs))
            return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", f->path);
        gguf_kv *kv = &f->kvs[f->n_kv++]; // counted now, so gguf_close frees what it holds
        memset(kv, 0, sizeof *kv);
        if ((st = gguf_parse_kv(&c, (int)i, kv))) return st;
    }
    if ((st = gguf_sort_kvs(f, err)) || (st = gguf_parse_alignment(f, err))) return st;
    cap = 0;
    for (uint64_t i = 0; i < n_tensors; i++) {
        if (!gguf_grow((void **)&f->tensors, &cap, f->n_tensors + 1, sizeof *f->tensors))
            return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", f->path);
        gguf_tensor *t = &f->tensors[f->n_tensors++];
        memset(t, 0, sizeof *t);
        if ((st = gguf_parse_tensor(&c, (int)i, t))) return st;
    }
    // The data section starts at the next multiple of the alignment (pos <= size < 2^63).
    f->data_offset = (c.pos + f->alignment - 1) / f->alignment * f->alignment;
    if (f->n_tensors && f->data_offset > f->size)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: the data section would start at byte %llu, past the end of the file (size %zu)",
                            f->path, (ull)f->data_offset, f->size);
    if ((st = gguf_place_tensors(f, err))) return st;
    return gguf_sort_tensors(f, err);
}

static ds_status gguf_map_file(gguf_file *f, ds_error *err) {
    uint8_t *map;
    ds_status st = file_map_readonly(f->path, 4, "a GGUF header", &map, &f->size, err);
    f->map = map;
    return st;
}

ds_status gguf_open(gguf_file *f, const char *path, ds_error *err) {
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", path);
    ds_status st = gguf_map_file(f, err);
    if (!st) st = gguf_parse(f, err);
    if (st) gguf_close(f);
    return st;
}

void gguf_close(gguf_file *f) {
    if (f->map) munmap(f->map, f->size);
    for (int i = 0; i < f->n_kv; i++) {
        free(f->kvs[i].key);
        free(f->kvs[i].str_off);
    }
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->kvs);
    free(f->tensors);
    free(f->kv_sorted);
    free(f->tensor_sorted);
    free(f->path);
    memset(f, 0, sizeof *f);
}

// ---- lookups and getters ----

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key) {
    int lo = 0, hi = f->kv_sorted ? f->n_kv - 1 : -1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(f->kvs[f->kv_sorted[mid]].key, key);
        if (c == 0) return &f->kvs[f->kv_sorted[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    int lo = 0, hi = f->tensor_sorted ? f->n_tensors - 1 : -1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(f->tensors[f->tensor_sorted[mid]].name, name);
        if (c == 0) return &f->tensors[f->tensor_sorted[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

// "u32", or "array of string".
static const char *gguf_kv_type_desc(char *buf, size_t n, const gguf_kv *kv) {
    if (kv->type != GGUF_VAL_ARRAY) return gguf_value_type_name(kv->type);
    snprintf(buf, n, "array of %s", gguf_value_type_name(kv->elem_type));
    return buf;
}

static ds_status gguf_lookup(const gguf_file *f, const char *key, const gguf_kv **kv, ds_error *err) {
    *kv = gguf_find_kv(f, key);
    return *kv ? DS_OK : ds_error_set(err, DS_ERR_FORMAT, "%s: key '%s' is missing", f->path, key);
}

static ds_status gguf_wrong_type(const gguf_file *f, const gguf_kv *kv, const char *want, ds_error *err) {
    char desc[48];
    return ds_error_set(err, DS_ERR_FORMAT, "%s: key '%s' is %s, expected %s", f->path, kv->key,
                        gguf_kv_type_desc(desc, sizeof desc, kv), want);
}

// An integer value as sign and magnitude (false if t is not an integer type).
static bool gguf_int_value(int t, const uint8_t *p, bool *neg, uint64_t *mag) {
    int64_t s = 0;
    bool is_signed = true;
    switch (t) {
    case GGUF_VAL_U8: *mag = p[0], is_signed = false; break;
    case GGUF_VAL_U16: *mag = (uint64_t)p[0] | (uint64_t)p[1] << 8, is_signed = false; break;
    case GGUF_VAL_U32: *mag = gguf_le32(p), is_signed = false; break;
    case GGUF_VAL_U64: *mag = gguf_le64(p), is_signed = false; break;
    case GGUF_VAL_I8: s = (int8_t)p[0]; break;
    case GGUF_VAL_I16: s = (int16_t)(uint16_t)((unsigned)p[0] | (unsigned)p[1] << 8); break;
    case GGUF_VAL_I32: s = (int32_t)gguf_le32(p); break;
    case GGUF_VAL_I64: s = (int64_t)gguf_le64(p); break;
    default: return false;
    }
    *neg = is_signed && s < 0;
    if (is_signed) *mag = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    return true;
}

static double gguf_float_value(int t, const uint8_t *p) {
    if (t == GGUF_VAL_F32) {
        float v;
        memcpy(&v, p, 4);
        return v;
    }
    double v;
    memcpy(&v, p, 8);
    return v;
}

// A scalar integer that fits [-max_neg, max_pos], as sign and magnitude.
static ds_status gguf_get_int(const gguf_file *f, const char *key, uint64_t max_pos, uint64_t max_neg, const char *want,
                              bool *neg, uint64_t *mag, ds_error *err) {
    const gguf_kv *kv;
    ds_status st = gguf_lookup(f, key, &kv, err);
    if (st) return st;
    if (!gguf_int_value(kv->type, kv->data, neg, mag)) return gguf_wrong_type(f, kv, want, err);
    if (*neg ? *mag > max_neg : *mag > max_pos)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: key '%s' = %s%llu (%s) does not fit %s", f->path, key, *neg ? "-" : "",
                            (ull)*mag, gguf_value_type_name(kv->type), want);
    return DS_OK;
}

ds_status gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, ds_error *err) {
    bool neg;
    uint64_t m;
    ds_status st = gguf_get_int(f, key, UINT32_MAX, 0, "u32", &neg, &m, err);
    if (!st) *out = (uint32_t)m;
    return st;
}

ds_status gguf_get_i32(const gguf_file *f, const char *key, int32_t *out, ds_error *err) {
    bool neg;
    uint64_t m;
    ds_status st = gguf_get_int(f, key, INT32_MAX, (uint64_t)INT32_MAX + 1, "i32", &neg, &m, err);
    if (!st) *out = neg ? (int32_t)(-(int64_t)m) : (int32_t)m;
    return st;
}

ds_status gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out, ds_error *err) {
    bool neg;
    uint64_t m;
    ds_status st = gguf_get_int(f, key, UINT64_MAX, 0, "u64", &neg, &m, err);
    if (!st) *out = m;
    return st;
}

ds_status gguf_get_i64(const gguf_file *f, const char *key, int64_t *out, ds_error *err) {
    bool neg;
    uint64_t m;
    ds_status st = gguf_get_int(f, key, INT64_MAX, (uint64_t)INT64_MAX + 1, "i64", &neg, &m, err);
    if (!st) *out = neg ? (m > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)m) : (int64_t)m;
    return st;
}

ds_status gguf_get_f64(const gguf_file *f, const char *key, double *out, ds_error *err) {
    const gguf_kv *kv;
    ds_status st = gguf_lookup(f, key, &kv, err);
    if (st) return st;
    if (!gguf_val_is_float(kv->type)) return gguf_wrong_type(f, kv, "f32 or f64", err);
    *out = gguf_float_value(kv->type, kv->data);
    return DS_OK;
}

ds_status gguf_get_f32(const gguf_file *f, const char *key, float *out, ds_error *err) {
    double v = 0;
    ds_status st = gguf_get_f64(f, key, &v, err);
    if (st) return st;
    if (isfinite(v) && fabs(v) > FLT_MAX)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: key '%s' = %g (f64) does not fit f32", f->path, key, v);
    *out = (float)v;
    return DS_OK;
}

ds_status gguf_get_bool(const gguf_file *f, const char *key, bool *out, ds_error *err) {
    const gguf_kv *kv;
    ds_status st = gguf_lookup(f, key, &kv, err);
    if (st) return st;
    if (kv->type != GGUF_VAL_BOOL) return gguf_wrong_type(f, kv, "bool", err);
    *out = kv->data[0] != 0;
    return DS_OK;
}

ds_status gguf_get_string(const gguf_file *f, const char *key, const char **s, size_t *len, ds_error *err) {
    const gguf_kv *kv;
    ds_status st = gguf_lookup(f, key, &kv, err);
    if (st) return st;
    if (kv->type != GGUF_VAL_STRING) return gguf_wrong_type(f, kv, "string", err);
    *s = (const char *)kv->data;
    *len = (size_t)kv->size;
    return DS_OK;
}

static bool gguf_elem_matches(int et, int want) {
    return want == GGUF_VAL_ANY || (want == GGUF_VAL_ANY_INT && gguf_val_is_int(et)) ||
           (want == GGUF_VAL_ANY_FLOAT && gguf_val_is_float(et)) || et == want;
}

ds_status gguf_get_array(const gguf_file *f, const char *key, int elem_type, const gguf_kv **arr, ds_error *err) {
    const gguf_kv *kv;
    ds_status st = gguf_lookup(f, key, &kv, err);
    if (st) return st;
    if (kv->type != GGUF_VAL_ARRAY || !gguf_elem_matches(kv->elem_type, elem_type)) {
        char want[48];
        snprintf(want, sizeof want, "an array of %s",
                 elem_type == GGUF_VAL_ANY       ? "anything"
                 : elem_type == GGUF_VAL_ANY_INT   ? "integers"
                 : elem_type == GGUF_VAL_ANY_FLOAT ? "floats"
                                                   : gguf_value_type_name(elem_type));
        return gguf_wrong_type(f, kv, want, err);
    }
    *arr = kv;
    return DS_OK;
}

// Element i of a fixed-size array whose element type passes `ok`, or NULL.
static const uint8_t *gguf_array_elem(const gguf_kv *kv, uint64_t i, bool (*ok)(int)) {
    if (!kv || kv->type != GGUF_VAL_ARRAY || !ok(kv->elem_type) || i >= kv->count) return NULL;
    return kv->data + i * gguf_vals[kv->elem_type].size;
}

const char *gguf_array_string(const gguf_kv *kv, uint64_t i, size_t *len) {
    if (!kv || kv->type != GGUF_VAL_ARRAY || kv->elem_type != GGUF_VAL_STRING || !kv->str_off || i >= kv->count)
        return NULL;
    const uint8_t *p = kv->data + kv->str_off[i];
    if (len) *len = (size_t)gguf_le64(p);
    return (const char *)p + 8;
}

bool gguf_array_int(const gguf_kv *kv, uint64_t i, int64_t *out) {
    const uint8_t *p = gguf_array_elem(kv, i, gguf_val_is_int);
    bool neg;
    uint64_t m;
    if (!p || !gguf_int_value(kv->elem_type, p, &neg, &m) || (neg ? m > (uint64_t)INT64_MAX + 1 : m > (uint64_t)INT64_MAX))
        return false;
    *out = neg ? (m > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)m) : (int64_t)m;
    return true;
}

bool gguf_array_float(const gguf_kv *kv, uint64_t i, double *out) {
    const uint8_t *p = gguf_array_elem(kv, i, gguf_val_is_float);
    if (!p) return false;
    *out = gguf_float_value(kv->elem_type, p);
    return true;
}

static bool gguf_val_is_bool(int t) { return t == GGUF_VAL_BOOL; }

bool gguf_array_bool(const gguf_kv *kv, uint64_t i, bool *out) {
    const uint8_t *p = gguf_array_elem(kv, i, gguf_val_is_bool);
    if (!p) return false;
    *out = *p != 0;
    return true;
}

// ---- writing: the builder ----

void gguf_writer_init(gguf_writer *w) { memset(w, 0, sizeof *w); }

void gguf_writer_free(gguf_writer *w) {
    for (int i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].payload);
    }
    for (int i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->kvs);
    free(w->tensors);
    memset(w, 0, sizeof *w);
}

static void gguf_writer_fail(gguf_writer *w, ds_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void gguf_writer_fail(gguf_writer *w, ds_status st, const char *fmt, ...) {
    if (w->failed) return; // keep the first
    w->failed = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->fail_err.msg, sizeof w->fail_err.msg, fmt, ap);
    va_end(ap);
}

// A new entry with a payload of n bytes to fill, or NULL (failure latched).
static gguf_writer_kv *gguf_writer_new_kv(gguf_writer *w, const char *key, gguf_value_type type, gguf_value_type et,
                                          uint64_t count, size_t n) {
    if (!key) {
        gguf_writer_fail(w, DS_ERR_ARG, "metadata key %d is NULL", w->n_kv);
        return NULL;
    }
    char *k = strdup(key);
    uint8_t *payload = malloc(n ? n : 1);
    if (!k || !payload || !gguf_grow((void **)&w->kvs, &w->cap_kv, w->n_kv + 1, sizeof *w->kvs)) {
        free(k);
        free(payload);
        gguf_writer_fail(w, DS_ERR_OOM, "out of memory adding key '%s'", key);
        return NULL;
    }
    gguf_writer_kv *kv = &w->kvs[w->n_kv++];
    *kv = (gguf_writer_kv){k, type, et, count, payload, n};
    return kv;
}

// n scalars of type t from native values into out (bools become 0/1).
static void gguf_pack_scalars(uint8_t *out, gguf_value_type t, const void *values, uint64_t n) {
    size_t size = gguf_vals[t].size;
    if (t == GGUF_VAL_BOOL)
        for (uint64_t i = 0; i < n; i++) out[i] = ((const bool *)values)[i] ? 1 : 0;
    else if (n)
        memcpy(out, values, (size_t)n * size);
}

void gguf_writer_add(gguf_writer *w, const char *key, gguf_value_type type, const void *value) {
    if (!gguf_val_is_scalar(type) || !value) {
        gguf_writer_fail(w, DS_ERR_ARG, "key '%s': %s is not a scalar value type, or no value", key ? key : "(null)",
                         gguf_value_type_name(type));
        return;
    }
    gguf_writer_kv *kv = gguf_writer_new_kv(w, key, type, type, 1, gguf_vals[type].size);
    if (kv) gguf_pack_scalars(kv->payload, type, value, 1);
}

void gguf_writer_add_u32(gguf_writer *w, const char *key, uint32_t v) { gguf_writer_add(w, key, GGUF_VAL_U32, &v); }
void gguf_writer_add_i32(gguf_writer *w, const char *key, int32_t v) { gguf_writer_add(w, key, GGUF_VAL_I32, &v); }
void gguf_writer_add_u64(gguf_writer *w, const char *key, uint64_t v) { gguf_writer_add(w, key, GGUF_VAL_U64, &v); }
void gguf_writer_add_f32(gguf_writer *w, const char *key, float v) { gguf_writer_add(w, key, GGUF_VAL_F32, &v); }
void gguf_writer_add_bool(gguf_writer *w, const char *key, bool v) { gguf_writer_add(w, key, GGUF_VAL_BOOL, &v); }

static void gguf_put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

void gguf_writer_add_string(gguf_writer *w, const char *key, const char *s) {
    if (!s) {
        gguf_writer_fail(w, DS_ERR_ARG, "key '%s': NULL string", key ? key : "(null)");
        return;
    }
    size_t n = strlen(s);
    if (n > SIZE_MAX - 8) {
        gguf_writer_fail(w, DS_ERR_ARG, "key '%s': string too long", key ? key : "(null)");
        return;
    }
    gguf_writer_kv *kv = gguf_writer_new_kv(w, key, GGUF_VAL_STRING, GGUF_VAL_STRING, 1, 8 + n);
    if (!kv) return;
    gguf_put_le64(kv->payload, n);
    memcpy(kv->payload + 8, s, n);
}

void gguf_writer_add_array(gguf_writer *w, const char *key, gguf_value_type elem_type, const void *values, uint64_t n) {
    uint64_t bytes;
    if (!gguf_val_is_scalar(elem_type) || (n && !values) ||
        __builtin_mul_overflow(n, (uint64_t)gguf_vals[elem_type].size, &bytes) || bytes > SIZE_MAX) {
        gguf_writer_fail(w, DS_ERR_ARG, "key '%s': invalid array of %llu %s values", key ? key : "(null)", (ull)n,
                         gguf_value_type_name(elem_type));
        return;
    }
    gguf_writer_kv *kv = gguf_writer_new_kv(w, key, GGUF_VAL_ARRAY, elem_type, n, (size_t)bytes);
    if (kv) gguf_pack_scalars(kv->payload, elem_type, values, n);
}

void gguf_writer_add_array_i32(gguf_writer *w, const char *key, const int32_t *v, uint64_t n) {
    gguf_writer_add_array(w, key, GGUF_VAL_I32, v, n);
}

void gguf_writer_add_array_f32(gguf_writer *w, const char *key, const float *v, uint64_t n) {
    gguf_writer_add_array(w, key, GGUF_VAL_F32, v, n);
}

void gguf_writer_add_array_string(gguf_writer *w, const char *key, const char *const *strs, const size_t *lens,
                                  uint64_t n) {
    uint64_t total = 0; // each string is its u64 length and its bytes
    bool ok = !n || strs;
    for (uint64_t i = 0; i < n && ok; i++)
        ok = strs[i] && !__builtin_add_overflow(total, 8, &total) &&
             !__builtin_add_overflow(total, (uint64_t)(lens ? lens[i] : strlen(strs[i])), &total);
    if (!ok || total > SIZE_MAX) {
        gguf_writer_fail(w, DS_ERR_ARG, "key '%s': invalid array of %llu strings (NULL or too long)", key ? key : "(null)",
                         (ull)n);
        return;
    }
    gguf_writer_kv *kv = gguf_writer_new_kv(w, key, GGUF_VAL_ARRAY, GGUF_VAL_STRING, n, (size_t)total);
    if (!kv) return;
    uint8_t *p = kv->payload;
    for (uint64_t i = 0; i < n; i++) {
        size_t len = lens ? lens[i] : strlen(strs[i]);
        gguf_put_le64(p, len);
        if (len) memcpy(p + 8, strs[i], len);
        p += 8 + len;
    }
}

void gguf_writer_add_tensor(gguf_writer *w, const char *name, int type, int n_dims, const int64_t *dims,
                            const void *data) {
    if (!name || (n_dims > 0 && !dims)) {
        gguf_writer_fail(w, DS_ERR_ARG, "tensor %d: NULL name or dims", w->n_tensors);
        return;
    }
    char *nm = strdup(name);
    if (!nm || !gguf_grow((void **)&w->tensors, &w->cap_tensors, w->n_tensors + 1, sizeof *w->tensors)) {
        free(nm);
        gguf_writer_fail(w, DS_ERR_OOM, "out of memory adding tensor '%s'", name);
        return;
    }
    gguf_writer_tensor *t = &w->tensors[w->n_tensors++];
    *t = (gguf_writer_tensor){.name = nm, .type = type, .n_dims = n_dims, .data = data};
    // Out-of-range n_dims are kept for gguf_write to report; only in-range dims are read.
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->dims[d] = d < n_dims ? dims[d] : 1;
}

// ---- writing: validation ----

static int gguf_cmp_wkv(const void *a, const void *b) {
    return strcmp((*(const gguf_writer_kv *const *)a)->key, (*(const gguf_writer_kv *const *)b)->key);
}

static int gguf_cmp_wtensor(const void *a, const void *b) {
    return strcmp((*(const gguf_writer_tensor *const *)a)->name, (*(const gguf_writer_tensor *const *)b)->name);
}

// Keys: non-empty, at most 65535 bytes, unique; general.alignment a u32 power of two.
static ds_status gguf_check_kvs(const char *path, const gguf_writer *w, uint32_t *alignment, ds_error *err) {
    *alignment = GGUF_DEFAULT_ALIGNMENT;
    for (int i = 0; i < w->n_kv; i++) {
        const gguf_writer_kv *kv = &w->kvs[i];
        size_t n = strlen(kv->key);
        if (n == 0 || n > GGUF_MAX_KEY)
            return ds_error_set(err, DS_ERR_ARG, "%s: metadata key %d is empty or longer than %d bytes", path, i, GGUF_MAX_KEY);
        if (strcmp(kv->key, GGUF_ALIGNMENT_KEY)) continue;
        uint32_t a = kv->type == GGUF_VAL_U32 ? gguf_le32(kv->payload) : 0;
        if (kv->type != GGUF_VAL_U32 || a == 0 || (a & (a - 1)))
            return ds_error_set(err, DS_ERR_ARG, "%s: key '" GGUF_ALIGNMENT_KEY "' must be a u32 power of two", path);
        *alignment = a;
    }
    const gguf_writer_kv **by = malloc((w->n_kv > 0 ? (size_t)w->n_kv : 1) * sizeof *by);
    if (!by) return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", path);
    for (int i = 0; i < w->n_kv; i++) by[i] = &w->kvs[i];
    qsort(by, (size_t)w->n_kv, sizeof *by, gguf_cmp_wkv);
    ds_status st = DS_OK;
    for (int i = 1; i < w->n_kv && !st; i++)
        if (!strcmp(by[i - 1]->key, by[i]->key)) st = ds_error_set(err, DS_ERR_ARG, "%s: duplicate key '%s'", path, by[i]->key);
    free(by);
    return st;
}

// Tensors: names, types, dims and data; computes each tensor's bytes.
static ds_status gguf_check_tensors(const char *path, const gguf_writer *w, uint64_t *bytes, ds_error *err) {
    for (int i = 0; i < w->n_tensors; i++) {
        const gguf_writer_tensor *t = &w->tensors[i];
        size_t n = strlen(t->name), block = gguf_type_block_size(t->type);
        char dims[128];
        uint64_t numel;
        if (n == 0 || n > GGUF_MAX_NAME)
            return ds_error_set(err, DS_ERR_ARG, "%s: tensor %d ('%s'): name is empty or longer than %d bytes (llama.cpp's limit)",
                                path, i, t->name, GGUF_MAX_NAME);
        if (!block) return ds_error_set(err, DS_ERR_ARG, "%s: tensor '%s': unknown ggml type %d", path, t->name, t->type);
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
            return ds_error_set(err, DS_ERR_ARG, "%s: tensor '%s': n_dims %d is not in 1..%d", path, t->name, t->n_dims,
                                GGUF_MAX_DIMS);
        gguf_format_dims(dims, sizeof dims, t->n_dims, t->dims);
        if (!gguf_tensor_bytes(t->type, t->n_dims, t->dims, &numel, &bytes[i]) || bytes[i] > SIZE_MAX)
            return ds_error_set(err, DS_ERR_ARG, "%s: tensor '%s': negative or overflowing dims %s", path, t->name, dims);
        if ((uint64_t)t->dims[0] % block)
            return ds_error_set(err, DS_ERR_ARG, "%s: tensor '%s': dims %s: dims[0] is not a multiple of the %s block size (%zu)",
                                path, t->name, dims, gguf_type_name(t->type), block);
        if (bytes[i] && !t->data) return ds_error_set(err, DS_ERR_ARG, "%s: tensor '%s': no data", path, t->name);
    }
    const gguf_writer_tensor **by = malloc((w->n_tensors > 0 ? (size_t)w->n_tensors : 1) * sizeof *by);
    if (!by) return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", path);
    for (int i = 0; i < w->n_tensors; i++) by[i] = &w->tensors[i];
    qsort(by, (size_t)w->n_tensors, sizeof *by, gguf_cmp_wtensor);
    ds_status st = DS_OK;
    for (int i = 1; i < w->n_tensors && !st; i++)
        if (!strcmp(by[i - 1]->name, by[i]->name))
            st = ds_error_set(err, DS_ERR_ARG, "%s: duplicate tensor name '%s'", path, by[i]->name);
    free(by);
    return st;
}

// ---- writing: the stream ----

// The atomic writer plus the bytes written so far; `st` latches the first failure (after
// which file_atomic has already removed the temp file).
typedef struct {
    file_atomic fa;
    uint64_t pos;
    ds_status st;
    ds_error *err;
} gguf_out;

static void gguf_out_bytes(gguf_out *o, const void *p, size_t n) {
    if (o->st || !n) return;
    o->st = file_atomic_write(&o->fa, p, n, o->err);
    o->pos += n;
}

static void gguf_out_u32(gguf_out *o, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    gguf_out_bytes(o, b, 4);
}

static void gguf_out_u64(gguf_out *o, uint64_t v) {
    uint8_t b[8];
    gguf_put_le64(b, v);
    gguf_out_bytes(o, b, 8);
}

static void gguf_out_str(gguf_out *o, const char *s) {
    size_t n = strlen(s);
    gguf_out_u64(o, n);
    gguf_out_bytes(o, s, n);
}

static void gguf_out_pad(gguf_out *o, uint32_t alignment) {
    static const uint8_t zeros[256];
    uint64_t n = (alignment - o->pos % alignment) % alignment;
    while (n && !o->st) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        gguf_out_bytes(o, zeros, k);
        n -= k;
    }
}

static uint64_t gguf_pad_to(uint64_t n, uint32_t alignment) { return (n + alignment - 1) / alignment * alignment; }

ds_status gguf_write(const char *path, const gguf_writer *w, ds_error *err) {
    if (w->failed) return ds_error_set(err, w->failed, "%s: %s", path, w->fail_err.msg);
    uint32_t alignment;
    ds_status st = gguf_check_kvs(path, w, &alignment, err);
    if (st) return st;
    uint64_t *bytes = malloc((w->n_tensors > 0 ? (size_t)w->n_tensors : 1) * sizeof *bytes);
    if (!bytes) return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", path);
    if ((st = gguf_check_tensors(path, w, bytes, err))) {
        free(bytes);
        return st;
    }
    // The data section's total size must fit a 64-bit offset (padding included).
    uint64_t total = 0;
    for (int i = 0; i < w->n_tensors && !st; i++)
        if (bytes[i] > UINT64_MAX - alignment || __builtin_add_overflow(total, gguf_pad_to(bytes[i], alignment), &total))
            st = ds_error_set(err, DS_ERR_ARG, "%s: tensor '%s': the data section overflows a 64-bit size", path,
                              w->tensors[i].name);
    gguf_out o = {.err = err};
    if (!st) st = file_atomic_open(&o.fa, path, err);
    if (st) {
        free(bytes);
        return st;
    }
    gguf_out_bytes(&o, "GGUF", 4);
    gguf_out_u32(&o, 3);
    gguf_out_u64(&o, (uint64_t)w->n_tensors);
    gguf_out_u64(&o, (uint64_t)w->n_kv);
    for (int i = 0; i < w->n_kv; i++) {
        const gguf_writer_kv *kv = &w->kvs[i];
        gguf_out_str(&o, kv->key);
        gguf_out_u32(&o, (uint32_t)kv->type);
        if (kv->type == GGUF_VAL_ARRAY) {
            gguf_out_u32(&o, (uint32_t)kv->elem_type);
            gguf_out_u64(&o, kv->count);
        }
        gguf_out_bytes(&o, kv->payload, kv->payload_size);
    }
    uint64_t offset = 0;
    for (int i = 0; i < w->n_tensors; i++) {
        const gguf_writer_tensor *t = &w->tensors[i];
        gguf_out_str(&o, t->name);
        gguf_out_u32(&o, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) gguf_out_u64(&o, (uint64_t)t->dims[d]);
        gguf_out_u32(&o, (uint32_t)t->type);
        gguf_out_u64(&o, offset);
        offset += gguf_pad_to(bytes[i], alignment);
    }
    gguf_out_pad(&o, alignment);
    for (int i = 0; i < w->n_tensors; i++) {
        gguf_out_bytes(&o, w->tensors[i].data, (size_t)bytes[i]);
        gguf_out_pad(&o, alignment);
    }
    free(bytes);
    if (o.st) return o.st;
    return file_atomic_commit(&o.fa, err);
}
