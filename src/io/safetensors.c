// Safetensors reading (mmap + full validation) and streaming, atomic writing.
// Data pointers point into the mapping: aligned when the writer aligned them (ours and HF's
// do), but consumers must not assume it (the model loader copies misaligned f32 data).
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER (100u << 20) // the limit HF's reader applies too

static int st_entry_cmp_name(const void *a, const void *b) {
    return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}

static int st_entry_cmp_begin(const void *a, const void *b) {
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

// A JSON number that is a non-negative integer below 2^53.
static int st_json_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d < 9007199254740992.0) || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

// Parses one tensor's header object into e (name already set).
static ds_status st_parse_entry(const char *path, const cJSON *obj, st_entry *e, uint64_t data_size, ds_error *err) {
    if (!cJSON_IsObject(obj))
        return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s': header entry is not an object", path, e->name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(obj, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(obj, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(obj, "data_offsets");
    if (!cJSON_IsString(dt)) return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s': missing \"dtype\"", path, e->name);
    int d = ds_dtype_from_name(dt->valuestring);
    if (d < 0)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s': unsupported dtype %.16s (supported: F32, BF16, F16, F8_E4M3)",
                            path, e->name, dt->valuestring);
    e->dtype = (ds_dtype)d;
    if (!cJSON_IsArray(sh) || cJSON_GetArraySize(sh) > 4)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s': \"shape\" must be an array of at most 4 dimensions", path, e->name);
    e->ndim = cJSON_GetArraySize(sh);
    uint64_t bytes = ds_dtype_size(e->dtype);
    for (int i = 0; i < e->ndim; i++) {
        uint64_t dim;
        if (!st_json_u64(cJSON_GetArrayItem(sh, i), &dim))
            return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer", path, e->name, i);
        if (__builtin_mul_overflow(bytes, dim, &bytes) || bytes > ((uint64_t)1 << 62))
            return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s': shape is too large", path, e->name);
        e->shape[i] = (int64_t)dim;
    }
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 || !st_json_u64(cJSON_GetArrayItem(of, 0), &e->begin) ||
        !st_json_u64(cJSON_GetArrayItem(of, 1), &e->end))
        return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" must be two non-negative integers", path, e->name);
    if (e->end < e->begin || e->end > data_size)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] out of bounds of the %llu-byte data region",
                            path, e->name, (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)data_size);
    if (e->end - e->begin != bytes) {
        char shape[80] = "[";
        for (int i = 0; i < e->ndim; i++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), i ? ", %lld" : "%lld", (long long)e->shape[i]);
        strcat(shape, "]");
        return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s': data_offsets hold %llu bytes but shape %s of %s needs %llu",
                            path, e->name, (unsigned long long)(e->end - e->begin), shape, ds_dtype_name(e->dtype),
                            (unsigned long long)bytes);
    }
    return DS_OK;
}

// Names unique, byte ranges disjoint.
static ds_status st_check_layout(st_file *f, ds_error *err) {
    for (int i = 1; i < f->n; i++)
        if (strcmp(f->entries[i - 1].name, f->entries[i].name) == 0)
            return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", f->path, f->entries[i].name);
    st_entry **by_begin = malloc((size_t)(f->n ? f->n : 1) * sizeof *by_begin);
    if (!by_begin) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    int m = 0;
    for (int i = 0; i < f->n; i++)
        if (f->entries[i].end > f->entries[i].begin) by_begin[m++] = &f->entries[i];
    qsort(by_begin, (size_t)m, sizeof *by_begin, st_entry_cmp_begin);
    ds_status st = DS_OK;
    for (int i = 1; i < m && st == DS_OK; i++)
        if (by_begin[i]->begin < by_begin[i - 1]->end)
            st = ds_error_set(err, DS_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the data region", f->path,
                              by_begin[i - 1]->name, by_begin[i]->name);
    free(by_begin);
    return st;
}

static ds_status st_parse_header(st_file *f, const char *text, uint64_t len, uint64_t data_size, const uint8_t *data,
                                 ds_error *err) {
    cJSON *root = cJSON_ParseWithLength(text, (size_t)len);
    if (!root) return ds_error_set(err, DS_ERR_FORMAT, "%s: header is not valid JSON", f->path);
    ds_status st = DS_OK;
    if (!cJSON_IsObject(root)) {
        st = ds_error_set(err, DS_ERR_FORMAT, "%s: header is not a JSON object", f->path);
        goto done;
    }
    int cap = cJSON_GetArraySize(root);
    f->entries = calloc((size_t)(cap ? cap : 1), sizeof *f->entries);
    if (!f->entries) { st = ds_error_set(err, DS_ERR_OOM, "out of memory"); goto done; }
    for (const cJSON *it = root->child; it && st == DS_OK; it = it->next) {
        if (!it->string) { st = ds_error_set(err, DS_ERR_FORMAT, "%s: header entry without a name", f->path); break; }
        if (strcmp(it->string, "__metadata__") == 0) {
            int ok = cJSON_IsObject(it);
            for (const cJSON *kv = ok ? it->child : NULL; kv; kv = kv->next) ok &= cJSON_IsString(kv);
            if (!ok) st = ds_error_set(err, DS_ERR_FORMAT, "%s: \"__metadata__\" must map names to strings", f->path);
            continue;
        }
        st_entry *e = &f->entries[f->n];
        e->name = strdup(it->string);
        if (!e->name) { st = ds_error_set(err, DS_ERR_OOM, "out of memory"); break; }
        f->n++;
        st = st_parse_entry(f->path, it, e, data_size, err);
        e->data = data + e->begin;
    }
    if (st == DS_OK) {
        qsort(f->entries, (size_t)f->n, sizeof *f->entries, st_entry_cmp_name);
        st = st_check_layout(f, err);
    }
done:
    cJSON_Delete(root);
    return st;
}

ds_status st_file_open(st_file *f, const char *path, ds_error *err) {
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        ds_status st = ds_error_set(err, DS_ERR_IO, "%s: %s", path, strerror(errno));
        st_file_close(f);
        return st;
    }
    struct stat sb;
    ds_status st = DS_OK;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) st = ds_error_set(err, DS_ERR_IO, "%s: not a regular file", path);
    else if (sb.st_size < 8) st = ds_error_set(err, DS_ERR_FORMAT, "%s: %lld bytes is too short for a safetensors file", path, (long long)sb.st_size);
    if (st == DS_OK) {
        f->size = (size_t)sb.st_size;
        void *map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) st = ds_error_set(err, DS_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
        else f->map = map;
    }
    close(fd);
    if (st == DS_OK) {
        uint64_t n = 0;
        for (int i = 7; i >= 0; i--) n = (n << 8) | f->map[i]; // little-endian on any host
        if (n > ST_MAX_HEADER || n > f->size - 8)
            st = ds_error_set(err, DS_ERR_FORMAT, "%s: header length %llu goes beyond the file (%zu bytes)", path,
                              (unsigned long long)n, f->size);
        else
            st = st_parse_header(f, (const char *)f->map + 8, n, f->size - 8 - n, f->map + 8 + n, err);
    }
    if (st) st_file_close(f);
    return st;
}

void st_file_close(st_file *f) {
    for (int i = 0; i < f->n; i++) free(f->entries[i].name);
    free(f->entries);
    if (f->map) munmap(f->map, f->size);
    free(f->path);
    memset(f, 0, sizeof *f);
}

st_entry *st_file_find(const st_file *f, const char *name) {
    if (!f->n) return NULL;
    st_entry key = {.name = (char *)name};
    return bsearch(&key, f->entries, (size_t)f->n, sizeof key, st_entry_cmp_name);
}

// ---- writing -------------------------------------------------------------------------------

static uint64_t st_item_bytes(const st_write_item *it) {
    uint64_t n = ds_dtype_size(it->dtype);
    for (int i = 0; i < it->ndim; i++) n *= (uint64_t)it->shape[i];
    return n;
}

// Tensors are stored back to back with no gaps (HF's reader rejects gaps), wider dtypes first
// so every tensor starts aligned to its element size; the header is padded with spaces so the
// data region starts 8-aligned. Returns the write order in `order`.
static char *st_build_header(const st_write_item *items, int n, int *order, uint64_t *header_len) {
    int k = 0;
    for (size_t size = 8; size >= 1; size /= 2)
        for (int i = 0; i < n; i++)
            if (ds_dtype_size(items[i].dtype) == size) order[k++] = i;
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    uint64_t off = 0;
    for (int j = 0; j < k; j++) {
        const st_write_item *it = &items[order[j]];
        cJSON *o = cJSON_AddObjectToObject(root, it->name);
        cJSON_AddStringToObject(o, "dtype", ds_dtype_name(it->dtype));
        cJSON *sh = cJSON_AddArrayToObject(o, "shape");
        for (int d = 0; d < it->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)it->shape[d]));
        cJSON *of = cJSON_AddArrayToObject(o, "data_offsets");
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
        off += st_item_bytes(it);
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json) return NULL;
    size_t len = strlen(json), padded = (len + 7) / 8 * 8;
    char *h = realloc(json, padded + 1);
    if (!h) { free(json); return NULL; }
    memset(h + len, ' ', padded - len);
    h[padded] = 0;
    *header_len = padded;
    return h;
}

ds_status st_file_write(const char *path, const st_write_item *items, int n, ds_error *err) {
    for (int i = 0; i < n; i++)
        if (items[i].ndim < 0 || items[i].ndim > 4 || ds_dtype_size(items[i].dtype) == 0)
            return ds_error_set(err, DS_ERR_ARG, "%s: tensor '%s': bad dtype or rank", path, items[i].name);
    int *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    uint64_t hlen = 0;
    char *header = order ? st_build_header(items, n, order, &hlen) : NULL;
    size_t tlen = strlen(path) + 32;
    char *tmp = malloc(tlen);
    if (!header || !tmp) {
        free(order); free(header); free(tmp);
        return ds_error_set(err, DS_ERR_OOM, "out of memory writing %s", path);
    }
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    int ok = f != NULL;
    if (ok) {
        uint8_t le[8];
        for (int i = 0; i < 8; i++) le[i] = (uint8_t)(hlen >> (8 * i));
        ok = fwrite(le, 1, 8, f) == 8 && fwrite(header, 1, hlen, f) == hlen;
        for (int j = 0; ok && j < n; j++) {
            uint64_t b = st_item_bytes(&items[order[j]]);
            ok = b == 0 || fwrite(items[order[j]].data, 1, b, f) == b;
        }
        ok = fflush(f) == 0 && ok;
        ok = fsync(fileno(f)) == 0 && ok;
        ok = fclose(f) == 0 && ok;
    }
    ds_status st = DS_OK;
    if (!ok || rename(tmp, path) != 0) {
        st = ds_error_set(err, DS_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        unlink(tmp);
    }
    free(order); free(header); free(tmp);
    return st;
}
