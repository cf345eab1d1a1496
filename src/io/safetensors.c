// Safetensors reading (mmap + a header validated field by field) and streaming writing.
// The reader is the gate every checkpoint passes through, so it trusts nothing in the file:
// each length, offset and dim is checked before it is used, and every failure is a message
// naming the file and the tensor, never a crash.
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/fileutil.h"

// Tensor bytes are used as they lie in the file: little-endian like every HF checkpoint.
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian");

// The reference reader refuses larger headers, so no valid file has one; the limit also
// bounds what a corrupt length field can make us allocate.
#define ST_MAX_HEADER 100000000ull
// JSON numbers arrive as doubles, exact only up to 2^53; no real dim or offset is larger.
#define ST_MAX_JSON_INT 9007199254740992.0

typedef unsigned long long ull; // for printf

static uint64_t st_get_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static void st_format_shape(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

// A file-controlled string made safe for a one-line message: short, printable ASCII only.
static const char *st_clip(char *buf, size_t n, const char *s) {
    size_t i = 0;
    for (; s[i] && i + 4 < n; i++) buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    if (s[i]) buf[i++] = '.', buf[i++] = '.', buf[i++] = '.';
    buf[i] = 0;
    return buf;
}

// A non-negative integer exactly representable as a JSON number.
static bool st_json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= ST_MAX_JSON_INT) || d != floor(d)) return false; // also rejects NaN
    *out = (uint64_t)d;
    return true;
}

// numel * element size, or false on overflow.
static bool st_shape_bytes(ds_dtype t, int ndim, const int64_t *shape, uint64_t *bytes) {
    uint64_t n = ds_dtype_size(t);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || __builtin_mul_overflow(n, (uint64_t)shape[i], &n)) return false;
    *bytes = n;
    return true;
}

// ---- reading: one header entry ----

typedef struct {
    const cJSON *dtype, *shape, *offsets;
} st_fields;

static ds_status st_entry_fields(const st_file *f, const cJSON *item, st_fields *fl, ds_error *err) {
    const char *name = item->string;
    memset(fl, 0, sizeof *fl);
    if (!cJSON_IsObject(item))
        return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", f->path, name);
    // cJSON keeps duplicate keys; refuse them rather than silently take the first.
    for (const cJSON *c = item->child; c; c = c->next) {
        const cJSON **slot = !c->string                         ? NULL
                             : !strcmp(c->string, "dtype")        ? &fl->dtype
                             : !strcmp(c->string, "shape")        ? &fl->shape
                             : !strcmp(c->string, "data_offsets") ? &fl->offsets
                                                                  : NULL;
        if (!slot) continue; // unknown keys are ignored, as by the reference reader
        if (*slot)
            return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s': duplicate key \"%s\"", f->path, name, c->string);
        *slot = c;
    }
    const char *missing = !fl->dtype ? "dtype" : !fl->shape ? "shape" : !fl->offsets ? "data_offsets" : NULL;
    if (missing) return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s': missing \"%s\"", f->path, name, missing);
    return DS_OK;
}

static ds_status st_entry_dtype(const st_file *f, const cJSON *v, st_entry *e, ds_error *err) {
    if (!cJSON_IsString(v) || !v->valuestring)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is not a string", f->path, e->name);
    int t = ds_dtype_from_name(v->valuestring);
    if (t >= 0 && ds_dtype_block((ds_dtype)t) != 1) t = -1; // block types are GGUF's, not safetensors'
    if (t < 0) {
        char clip[48];
        return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s': unsupported dtype '%s' (supported: F32, BF16, F16, F8_E4M3)",
                            f->path, e->name, st_clip(clip, sizeof clip, v->valuestring));
    }
    e->dtype = (ds_dtype)t;
    return DS_OK;
}

static ds_status st_entry_shape(const st_file *f, const cJSON *v, st_entry *e, ds_error *err) {
    if (!cJSON_IsArray(v))
        return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s': \"shape\" is not an array", f->path, e->name);
    int nd = cJSON_GetArraySize(v);
    if (nd > 4)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s': shape has %d dims, at most 4 are supported", f->path,
                            e->name, nd);
    int i = 0;
    for (const cJSON *c = v->child; c; c = c->next, i++) {
        uint64_t d;
        if (!st_json_uint(c, &d))
            return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s': shape dim %d is not a non-negative integer",
                                f->path, e->name, i);
        e->shape[i] = (int64_t)d;
    }
    e->ndim = nd;
    return DS_OK;
}

static ds_status st_entry_offsets(const st_file *f, const cJSON *v, st_entry *e, uint64_t data_size, ds_error *err) {
    uint64_t b, x;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 || !st_json_uint(v->child, &b) ||
        !st_json_uint(v->child->next, &x))
        return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s': data_offsets is not [begin, end] of two non-negative integers",
                            f->path, e->name);
    if (x < b)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin",
                            f->path, e->name, (ull)b, (ull)x);
    if (x > data_size)
        return ds_error_set(err, DS_ERR_FORMAT,
                            "%s: tensor '%s': data_offsets [%llu, %llu] extend past the data region (%llu bytes; file truncated?)",
                            f->path, e->name, (ull)b, (ull)x, (ull)data_size);
    e->begin = b;
    e->end = x;
    return DS_OK;
}

// One header entry into *e (whose name is already set); data_size is the data region's size.
static ds_status st_entry_parse(const st_file *f, const cJSON *item, st_entry *e, uint64_t data_size, ds_error *err) {
    st_fields fl;
    ds_status st = st_entry_fields(f, item, &fl, err);
    if (!st) st = st_entry_dtype(f, fl.dtype, e, err);
    if (!st) st = st_entry_shape(f, fl.shape, e, err);
    if (!st) st = st_entry_offsets(f, fl.offsets, e, data_size, err);
    if (st) return st;
    char shape[128];
    st_format_shape(shape, sizeof shape, e->ndim, e->shape);
    uint64_t need;
    if (!st_shape_bytes(e->dtype, e->ndim, e->shape, &need))
        return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s': shape %s of %s overflows a 64-bit size", f->path,
                            e->name, shape, ds_dtype_name(e->dtype));
    if (e->end - e->begin != need)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but shape %s of %s needs %llu",
                            f->path, e->name, (ull)e->begin, (ull)e->end, (ull)(e->end - e->begin), shape,
                            ds_dtype_name(e->dtype), (ull)need);
    return DS_OK;
}

// ---- reading: the whole header ----

static bool st_is_metadata(const cJSON *c) { return c->string && !strcmp(c->string, "__metadata__"); }

// "__metadata__" is free-form, but the format says a map of strings; anything else is corrupt.
static ds_status st_check_metadata(const st_file *f, const cJSON *m, ds_error *err) {
    if (!cJSON_IsObject(m)) return ds_error_set(err, DS_ERR_FORMAT, "%s: __metadata__ is not a JSON object", f->path);
    for (const cJSON *c = m->child; c; c = c->next)
        if (!cJSON_IsString(c))
            return ds_error_set(err, DS_ERR_FORMAT, "%s: __metadata__ value '%s' is not a string", f->path,
                                c->string ? c->string : "");
    return DS_OK;
}

static ds_status st_parse_entries(st_file *f, const cJSON *root, uint64_t header_len, ds_error *err) {
    int count = 0, n_meta = 0;
    for (const cJSON *c = root->child; c; c = c->next) count += !st_is_metadata(c);
    f->entries = calloc(count ? (size_t)count : 1, sizeof *f->entries);
    if (!f->entries) return ds_error_set(err, DS_ERR_OOM, "%s: out of memory for %d tensor entries", f->path, count);
    uint64_t data_size = f->size - 8 - header_len;
    for (const cJSON *c = root->child; c; c = c->next) {
        ds_status st;
        if (st_is_metadata(c)) {
            if (n_meta++) return ds_error_set(err, DS_ERR_FORMAT, "%s: __metadata__ appears twice", f->path);
            if ((st = st_check_metadata(f, c, err))) return st;
            continue;
        }
        st_entry *e = &f->entries[f->n];
        e->name = strdup(c->string ? c->string : "");
        if (!e->name) return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", f->path);
        f->n++; // counted now, so st_file_close frees the name even if the entry is bad
        if ((st = st_entry_parse(f, c, e, data_size, err))) return st;
        e->data = f->map + 8 + header_len + e->begin;
    }
    return DS_OK;
}

static int st_cmp_name(const void *a, const void *b) {
    return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}

static int st_cmp_offset(const void *a, const void *b) {
    const st_entry *x = *(st_entry *const *)a, *y = *(st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

// Two tensors sharing bytes would alias each other's weights. Empty tensors own no bytes.
static ds_status st_check_overlap(const st_file *f, ds_error *err) {
    if (f->n < 2) return DS_OK;
    st_entry **by = malloc((size_t)f->n * sizeof *by);
    if (!by) return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", f->path);
    for (int i = 0; i < f->n; i++) by[i] = &f->entries[i];
    qsort(by, (size_t)f->n, sizeof *by, st_cmp_offset);
    const st_entry *far = NULL; // the non-empty tensor reaching furthest so far
    ds_status st = DS_OK;
    for (int i = 0; i < f->n && !st; i++) {
        const st_entry *e = by[i];
        if (e->end == e->begin) continue;
        if (far && e->begin < far->end)
            st = ds_error_set(err, DS_ERR_FORMAT, "%s: tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap", f->path,
                              far->name, (ull)far->begin, (ull)far->end, e->name, (ull)e->begin, (ull)e->end);
        if (!far || e->end > far->end) far = e;
    }
    free(by);
    return st;
}

// Parses the JSON from a NUL-terminated copy, so that no parser bug can read past the header
// (or past the mapping, when the header ends the file at a page boundary).
static ds_status st_parse_json(const st_file *f, uint64_t n, cJSON **root, ds_error *err) {
    char *text = malloc((size_t)n + 1);
    if (!text) return ds_error_set(err, DS_ERR_OOM, "%s: out of memory for a %llu-byte header", f->path, (ull)n);
    memcpy(text, f->map + 8, (size_t)n);
    text[n] = 0;
    const char *end = NULL;
    *root = cJSON_ParseWithLengthOpts(text, (size_t)n, &end, 0);
    ds_status st = DS_OK;
    if (!*root) {
        size_t at = end && end >= text && end <= text + n ? (size_t)(end - text) : 0;
        st = ds_error_set(err, DS_ERR_FORMAT, "%s: header is not valid JSON (error near byte %zu of %llu)", f->path, at,
                          (ull)n);
    } else {
        // Writers pad the header with spaces; anything else after the object is corruption.
        for (const char *p = end; p < text + n && !st; p++)
            if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
                st = ds_error_set(err, DS_ERR_FORMAT, "%s: header has data after the JSON object (byte %zu of %llu)",
                                  f->path, (size_t)(p - text), (ull)n);
        if (!st && !cJSON_IsObject(*root))
            st = ds_error_set(err, DS_ERR_FORMAT, "%s: header JSON is not an object", f->path);
    }
    free(text);
    if (st) {
        cJSON_Delete(*root);
        *root = NULL;
    }
    return st;
}

static ds_status st_parse_header(st_file *f, ds_error *err) {
    uint64_t n = st_get_le64(f->map); // f->size >= 8, so the subtraction below is safe
    if (n > f->size - 8)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: header length %llu exceeds the file size (%zu bytes): not a safetensors file, or truncated",
                            f->path, (ull)n, f->size);
    if (n > ST_MAX_HEADER)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: header length %llu is over the %llu-byte limit", f->path, (ull)n,
                            (ull)ST_MAX_HEADER);
    cJSON *root = NULL;
    ds_status st = st_parse_json(f, n, &root, err);
    if (st) return st;
    st = st_parse_entries(f, root, n, err);
    cJSON_Delete(root);
    if (st) return st;
    qsort(f->entries, (size_t)f->n, sizeof *f->entries, st_cmp_name);
    for (int i = 1; i < f->n; i++)
        if (!strcmp(f->entries[i - 1].name, f->entries[i].name))
            return ds_error_set(err, DS_ERR_FORMAT, "%s: duplicate tensor name '%s'", f->path, f->entries[i].name);
    return st_check_overlap(f, err);
}

static ds_status st_map_file(st_file *f, ds_error *err) {
    uint8_t *map;
    ds_status st = file_map_readonly(f->path, 8, "a safetensors header (8-byte length)", &map, &f->size, err);
    f->map = map;
    return st;
}

ds_status st_file_open(st_file *f, const char *path, ds_error *err) {
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", path);
    ds_status st = st_map_file(f, err);
    if (!st) st = st_parse_header(f, err);
    if (st) st_file_close(f);
    return st;
}

void st_file_close(st_file *f) {
    if (f->map) munmap(f->map, f->size);
    for (int i = 0; i < f->n; i++) free(f->entries[i].name);
    free(f->entries);
    free(f->path);
    memset(f, 0, sizeof *f);
}

st_entry *st_file_find(const st_file *f, const char *name) {
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(f->entries[mid].name, name);
        if (c == 0) return &f->entries[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

// ---- writing ----

// A growable text buffer for the header; `oom` latches the first allocation failure.
typedef struct {
    char *p;
    size_t n, cap;
    bool oom;
} st_buf;

static void st_buf_put(st_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) { b->oom = true; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void st_buf_printf(st_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void st_buf_printf(st_buf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k >= 0) st_buf_put(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

// A JSON string literal: quotes, backslashes and control bytes escaped, UTF-8 passed through.
static void st_buf_put_json_string(st_buf *b, const char *s) {
    st_buf_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') st_buf_printf(b, "\\%c", c);
        else if (c < 0x20) st_buf_printf(b, "\\u%04x", c);
        else st_buf_put(b, s, 1);
    }
    st_buf_put(b, "\"", 1);
}

static int st_cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// Checks the caller's items and computes each one's byte size.
static ds_status st_check_items(const char *path, const st_write_item *items, int n, uint64_t *bytes, ds_error *err) {
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        const st_write_item *it = &items[i];
        if (!it->name || !*it->name || !strcmp(it->name, "__metadata__"))
            return ds_error_set(err, DS_ERR_ARG, "%s: tensor %d has an empty or reserved name", path, i);
        if ((unsigned)it->dtype >= DS_DTYPE_COUNT || ds_dtype_block(it->dtype) != 1)
            return ds_error_set(err, DS_ERR_ARG, "%s: tensor '%s': invalid dtype %d", path, it->name, (int)it->dtype);
        if (it->ndim < 0 || it->ndim > 4)
            return ds_error_set(err, DS_ERR_ARG, "%s: tensor '%s': ndim %d is not in 0..4", path, it->name, it->ndim);
        if (!st_shape_bytes(it->dtype, it->ndim, it->shape, &bytes[i]) || bytes[i] > SIZE_MAX ||
            __builtin_add_overflow(total, bytes[i], &total))
            return ds_error_set(err, DS_ERR_ARG, "%s: tensor '%s': negative or overflowing shape", path, it->name);
        if (bytes[i] && !it->data) return ds_error_set(err, DS_ERR_ARG, "%s: tensor '%s': no data", path, it->name);
    }
    const char **names = malloc((n ? (size_t)n : 1) * sizeof *names);
    if (!names) return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", path);
    for (int i = 0; i < n; i++) names[i] = items[i].name;
    qsort(names, (size_t)n, sizeof *names, st_cmp_str);
    ds_status st = DS_OK;
    for (int i = 1; i < n && !st; i++)
        if (!strcmp(names[i - 1], names[i]))
            st = ds_error_set(err, DS_ERR_ARG, "%s: duplicate tensor name '%s'", path, names[i]);
    free(names);
    return st;
}

// Data order: by descending element size, then as given. With the data region 8-aligned
// and no gaps, every tensor then starts at a multiple of its own element size.
static void st_layout(const st_write_item *items, int n, const uint64_t *bytes, int *order, uint64_t *begin) {
    int k = 0;
    uint64_t off = 0;
    for (size_t sz = 8; sz > 0; sz /= 2)
        for (int i = 0; i < n; i++)
            if (ds_dtype_size(items[i].dtype) == sz) {
                order[k++] = i;
                begin[i] = off;
                off += bytes[i];
            }
}

// The header in data order, padded with spaces to a multiple of 8 bytes. NULL if out of memory.
static char *st_header_build(const st_write_item *items, int n, const int *order, const uint64_t *begin,
                             const uint64_t *bytes, size_t *len) {
    st_buf b = {0};
    st_buf_printf(&b, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int k = 0; k < n; k++) {
        const st_write_item *it = &items[order[k]];
        st_buf_put(&b, ",", 1);
        st_buf_put_json_string(&b, it->name);
        st_buf_printf(&b, ":{\"dtype\":\"%s\",\"shape\":[", ds_dtype_name(it->dtype));
        for (int d = 0; d < it->ndim; d++) st_buf_printf(&b, d ? ",%lld" : "%lld", (long long)it->shape[d]);
        uint64_t b0 = begin[order[k]];
        st_buf_printf(&b, "],\"data_offsets\":[%llu,%llu]}", (ull)b0, (ull)(b0 + bytes[order[k]]));
    }
    st_buf_put(&b, "}", 1);
    while (b.n % 8) st_buf_put(&b, " ", 1);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    *len = b.n;
    return b.p;
}

static ds_status st_write_stream(const char *path, const char *hdr, size_t hlen, const st_write_item *items, int n,
                                 const int *order, const uint64_t *bytes, ds_error *err) {
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    file_atomic w;
    ds_status st = file_atomic_open(&w, path, err);
    if (!st) st = file_atomic_write(&w, len8, 8, err);
    if (!st) st = file_atomic_write(&w, hdr, hlen, err);
    for (int k = 0; k < n && !st; k++) st = file_atomic_write(&w, items[order[k]].data, (size_t)bytes[order[k]], err);
    if (!st) st = file_atomic_commit(&w, err);
    return st;
}

ds_status st_file_write(const char *path, const st_write_item *items, int n, ds_error *err) {
    if (n < 0 || (n > 0 && !items)) return ds_error_set(err, DS_ERR_ARG, "%s: invalid tensor list", path);
    size_t cnt = n ? (size_t)n : 1;
    uint64_t *bytes = malloc(cnt * sizeof *bytes), *begin = malloc(cnt * sizeof *begin);
    int *order = malloc(cnt * sizeof *order);
    char *hdr = NULL;
    size_t hlen = 0;
    ds_status st = bytes && begin && order ? st_check_items(path, items, n, bytes, err)
                                           : ds_error_set(err, DS_ERR_OOM, "%s: out of memory", path);
    if (!st) {
        st_layout(items, n, bytes, order, begin);
        hdr = st_header_build(items, n, order, begin, bytes, &hlen);
        if (!hdr) st = ds_error_set(err, DS_ERR_OOM, "%s: out of memory building the header", path);
    }
    if (!st) st = st_write_stream(path, hdr, hlen, items, n, order, bytes, err);
    free(hdr);
    free(order);
    free(begin);
    free(bytes);
    return st;
}
