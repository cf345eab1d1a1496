// NumPy .npy v1/v2 files of little-endian float32 in C order.
#include "io/npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

ds_status npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape, ds_error *err) {
    if (ndim < 1 || ndim > 4) return ds_error_set(err, DS_ERR_ARG, "%s: npy rank %d not supported", path, ndim);
    char dict[256];
    int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    uint64_t count = 1;
    for (int i = 0; i < ndim; i++) {
        n += snprintf(dict + n, sizeof dict - (size_t)n, i ? ", %lld" : "%lld", (long long)shape[i]);
        count *= (uint64_t)shape[i];
    }
    n += snprintf(dict + n, sizeof dict - (size_t)n, ndim == 1 ? ",), }" : "), }");
    // magic (6) + version (2) + length (2) + dict, padded with spaces and '\n' to 64 bytes
    int total = (10 + n + 1 + 63) / 64 * 64;
    char header[320];
    memcpy(header, "\x93NUMPY\x01\x00", 8);
    header[8] = (char)((total - 10) & 0xff);
    header[9] = (char)((total - 10) >> 8);
    memcpy(header + 10, dict, (size_t)n);
    memset(header + 10 + n, ' ', (size_t)(total - 10 - n - 1));
    header[total - 1] = '\n';

    size_t tlen = strlen(path) + 32;
    char *tmp = malloc(tlen);
    if (!tmp) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    int ok = f && fwrite(header, 1, (size_t)total, f) == (size_t)total && fwrite(data, sizeof(float), count, f) == count;
    if (f) ok = fclose(f) == 0 && ok;
    ds_status st = DS_OK;
    if (!ok || rename(tmp, path) != 0) {
        st = ds_error_set(err, DS_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    return st;
}

static ds_status npy_bad(const char *path, const char *what, ds_error *err) {
    return ds_error_set(err, DS_ERR_FORMAT, "%s: not a float32 C-order .npy file (%s)", path, what);
}

// Parses "(a, b, ...)" after 'shape': into shape; returns the rank or -1.
static int npy_parse_shape(const char *dict, int64_t *shape) {
    const char *p = strstr(dict, "'shape':");
    if (!p || !(p = strchr(p, '('))) return -1;
    p++;
    int nd = 0;
    while (1) {
        while (*p == ' ') p++;
        if (*p == ')') return nd;
        if (nd == 4) return -1;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 0) return -1;
        shape[nd++] = v;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') p++;
        else if (*p != ')') return -1;
    }
}

ds_status npy_read_f32(const char *path, float **data, int *ndim, int64_t *shape, ds_error *err) {
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return ds_error_set(err, DS_ERR_IO, "%s: %s", path, strerror(errno));
    unsigned char pre[12];
    ds_status st = DS_OK;
    char *dict = NULL;
    size_t hl = 0, pre_len = 10;
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) st = npy_bad(path, "bad magic", err);
    else if (pre[6] == 1) hl = pre[8] | (size_t)pre[9] << 8;
    else if (pre[6] == 2 || pre[6] == 3) {
        if (fread(pre + 10, 1, 2, f) != 2) st = npy_bad(path, "truncated header", err);
        hl = pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
        pre_len = 12;
    } else st = npy_bad(path, "unknown version", err);
    if (st == DS_OK && hl > (1u << 20)) st = npy_bad(path, "header too long", err);
    if (st == DS_OK && !(dict = malloc(hl + 1))) st = ds_error_set(err, DS_ERR_OOM, "out of memory");
    if (st == DS_OK && fread(dict, 1, hl, f) != hl) st = npy_bad(path, "truncated header", err);
    if (st == DS_OK) {
        dict[hl] = 0;
        if (!strstr(dict, "'descr': '<f4'")) st = npy_bad(path, "dtype is not '<f4'", err);
        else if (!strstr(dict, "'fortran_order': False")) st = npy_bad(path, "Fortran order", err);
        else if ((*ndim = npy_parse_shape(dict, shape)) < 0) st = npy_bad(path, "bad shape", err);
    }
    uint64_t count = 1;
    for (int i = 0; st == DS_OK && i < *ndim; i++)
        if (__builtin_mul_overflow(count, (uint64_t)shape[i], &count) || count > ((uint64_t)1 << 40))
            st = npy_bad(path, "shape too large", err);
    if (st == DS_OK) {
        long here = ftell(f);
        fseek(f, 0, SEEK_END);
        long end = ftell(f);
        fseek(f, here, SEEK_SET);
        (void)pre_len;
        if (end - here != (long)(count * sizeof(float))) st = npy_bad(path, "data size does not match the shape", err);
    }
    if (st == DS_OK && !(*data = malloc(count ? count * sizeof(float) : 1))) st = ds_error_set(err, DS_ERR_OOM, "out of memory");
    if (st == DS_OK && fread(*data, sizeof(float), count, f) != count) st = npy_bad(path, "truncated data", err);
    if (st) { free(*data); *data = NULL; }
    free(dict);
    fclose(f);
    return st;
}
