// NumPy .npy files of little-endian float32 in C order: the format the reference scripts
// (tools/) read and write, so logits and activations can be compared with numpy directly.
// Layout: "\x93NUMPY", major, minor, header length (u16 in v1, u32 in v2/v3), then a Python
// dict literal padded with spaces and '\n' so that the data starts 64-byte aligned.
#include "io/npy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/fileutil.h"

// We write floats as they lie in memory and call them '<f4'.
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "npy '<f4' assumes a little-endian host");

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAX_HEADER (1u << 20) // numpy itself refuses headers over 10 KB by default

typedef unsigned long long ull;

// "(4, 256)", "(5,)" or "()": the Python tuple numpy writes.
static void npy_format_shape(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < ndim && k < n; i++) k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, ndim == 1 ? ",)" : ")");
}

// numel * 4, false on a negative dim or overflow.
static bool npy_shape_bytes(int ndim, const int64_t *shape, uint64_t *bytes) {
    uint64_t n = sizeof(float);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || __builtin_mul_overflow(n, (uint64_t)shape[i], &n)) return false;
    *bytes = n;
    return true;
}

// The whole v1.0 preamble + header into buf; returns its length (a multiple of 64).
static size_t npy_header_build(char *buf, size_t cap, int ndim, const int64_t *shape) {
    char tuple[128], dict[256];
    npy_format_shape(tuple, sizeof tuple, ndim, shape);
    int d = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }", tuple);
    size_t total = 10 + (size_t)d + 1; // preamble, dict, '\n'
    total += (64 - total % 64) % 64;
    if (total > cap) return 0;
    size_t hlen = total - 10;
    memcpy(buf, NPY_MAGIC "\x01\x00", 8);
    buf[8] = (char)(hlen & 0xff);
    buf[9] = (char)(hlen >> 8);
    memset(buf + 10, ' ', hlen);
    memcpy(buf + 10, dict, (size_t)d);
    buf[total - 1] = '\n';
    return total;
}

ds_status npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape, ds_error *err) {
    uint64_t bytes = 0;
    if (ndim < 0 || ndim > 4 || (ndim > 0 && !shape))
        return ds_error_set(err, DS_ERR_ARG, "%s: ndim %d is not in 0..4", path, ndim);
    if (!npy_shape_bytes(ndim, shape, &bytes) || bytes > SIZE_MAX)
        return ds_error_set(err, DS_ERR_ARG, "%s: negative or overflowing shape", path);
    if (bytes && !data) return ds_error_set(err, DS_ERR_ARG, "%s: no data", path);
    char hdr[512];
    size_t hl = npy_header_build(hdr, sizeof hdr, ndim, shape);
    if (!hl) return ds_error_set(err, DS_ERR_ARG, "%s: shape too long for the header", path);
    file_atomic w;
    ds_status st = file_atomic_open(&w, path, err);
    if (!st) st = file_atomic_write(&w, hdr, hl, err);
    if (!st) st = file_atomic_write(&w, data, (size_t)bytes, err); // straight from the caller's buffer
    if (!st) st = file_atomic_commit(&w, err);
    return st;
}

// ---- reading: the header dict, a Python literal ----

typedef struct {
    const char *p;    // cursor into the NUL-terminated header
    const char *path; // for messages
    ds_error *err;
} npy_lex;

static void npy_skip_space(npy_lex *x) {
    while (*x->p == ' ' || *x->p == '\t' || *x->p == '\n' || *x->p == '\r') x->p++;
}

static ds_status npy_fail(npy_lex *x, const char *what) {
    return ds_error_set(x->err, DS_ERR_FORMAT, "%s: .npy header: %s", x->path, what);
}

static bool npy_take(npy_lex *x, char c) {
    npy_skip_space(x);
    if (*x->p != c) return false;
    x->p++;
    return true;
}

// A quoted string ('...' or "...", no escapes: numpy never needs them) into buf.
static bool npy_read_string(npy_lex *x, char *buf, size_t n) {
    npy_skip_space(x);
    char q = *x->p;
    if (q != '\'' && q != '"') return false;
    const char *end = strchr(x->p + 1, q);
    if (!end || (size_t)(end - x->p - 1) >= n) return false;
    memcpy(buf, x->p + 1, (size_t)(end - x->p - 1));
    buf[end - x->p - 1] = 0;
    x->p = end + 1;
    return true;
}

static bool npy_read_dim(npy_lex *x, int64_t *v) {
    npy_skip_space(x);
    if (*x->p < '0' || *x->p > '9') return false;
    int64_t n = 0;
    for (; *x->p >= '0' && *x->p <= '9'; x->p++)
        if (__builtin_mul_overflow(n, 10, &n) || __builtin_add_overflow(n, *x->p - '0', &n)) return false;
    *v = n;
    return true;
}

// "(a, b, ...)" with an optional trailing comma; at most 4 dims.
static ds_status npy_read_shape(npy_lex *x, int *ndim, int64_t *shape) {
    if (!npy_take(x, '(')) return npy_fail(x, "'shape' is not a tuple");
    int nd = 0;
    while (!npy_take(x, ')')) {
        if (nd == 4) return npy_fail(x, "'shape' has more than 4 dims");
        if (!npy_read_dim(x, &shape[nd++])) return npy_fail(x, "'shape' holds something other than non-negative integers");
        if (!npy_take(x, ',') && *x->p != ')') return npy_fail(x, "'shape' tuple is malformed");
    }
    *ndim = nd;
    return DS_OK;
}

// One "key: value" pair; seen[] flags descr, fortran_order, shape.
static ds_status npy_read_pair(npy_lex *x, bool seen[3], int *ndim, int64_t *shape) {
    char key[32], val[32];
    if (!npy_read_string(x, key, sizeof key)) return npy_fail(x, "expected a quoted key");
    if (!npy_take(x, ':')) return npy_fail(x, "expected ':' after a key");
    int k = !strcmp(key, "descr") ? 0 : !strcmp(key, "fortran_order") ? 1 : !strcmp(key, "shape") ? 2 : -1;
    if (k < 0) return npy_fail(x, "unexpected key (want 'descr', 'fortran_order', 'shape')");
    if (seen[k]) return npy_fail(x, "duplicate key");
    seen[k] = true;
    if (k == 0) {
        if (!npy_read_string(x, val, sizeof val)) return npy_fail(x, "'descr' is not a string");
        if (strcmp(val, "<f4") != 0) return npy_fail(x, "'descr' is not '<f4' (only little-endian float32 is supported)");
        return DS_OK;
    }
    if (k == 1) {
        npy_skip_space(x);
        if (!strncmp(x->p, "False", 5)) { x->p += 5; return DS_OK; }
        return npy_fail(x, "'fortran_order' is not False (only C order is supported)");
    }
    return npy_read_shape(x, ndim, shape);
}

static ds_status npy_parse_dict(const char *text, const char *path, int *ndim, int64_t *shape, ds_error *err) {
    npy_lex x = {text, path, err};
    bool seen[3] = {false, false, false};
    if (!npy_take(&x, '{')) return npy_fail(&x, "not a dict");
    while (!npy_take(&x, '}')) {
        ds_status st = npy_read_pair(&x, seen, ndim, shape);
        if (st) return st;
        if (!npy_take(&x, ',') && *x.p != '}') return npy_fail(&x, "expected ',' or '}'");
    }
    npy_skip_space(&x);
    if (*x.p) return npy_fail(&x, "data after the dict");
    if (!seen[0] || !seen[1] || !seen[2]) return npy_fail(&x, "missing 'descr', 'fortran_order' or 'shape'");
    return DS_OK;
}

// ---- reading: the file ----

// Reads the preamble and header text; *data_off is where the array starts.
static ds_status npy_read_header(FILE *fp, const char *path, uint64_t fsize, char **text, uint64_t *data_off,
                                 ds_error *err) {
    unsigned char pre[12];
    if (fsize < 10 || fread(pre, 1, 10, fp) != 10)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: too short for a .npy header", path);
    if (memcmp(pre, NPY_MAGIC, 6) != 0) return ds_error_set(err, DS_ERR_FORMAT, "%s: bad magic, not a .npy file", path);
    uint64_t hlen, prefix;
    if (pre[6] == 1) {
        hlen = pre[8] | (uint64_t)pre[9] << 8;
        prefix = 10;
    } else if (pre[6] == 2 || pre[6] == 3) { // v3 differs only in allowing UTF-8 in the dict
        if (fread(pre + 10, 1, 2, fp) != 2) return ds_error_set(err, DS_ERR_FORMAT, "%s: too short for a .npy header", path);
        hlen = pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 | (uint64_t)pre[11] << 24;
        prefix = 12;
    } else {
        return ds_error_set(err, DS_ERR_FORMAT, "%s: unsupported .npy version %d.%d", path, pre[6], pre[7]);
    }
    if (hlen > NPY_MAX_HEADER || prefix + hlen > fsize)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: .npy header length %llu exceeds the file size (%llu bytes)", path,
                            (ull)hlen, (ull)fsize);
    *text = malloc((size_t)hlen + 1);
    if (!*text) return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", path);
    if (fread(*text, 1, (size_t)hlen, fp) != hlen) return ds_error_set(err, DS_ERR_IO, "%s: cannot read the header", path);
    (*text)[hlen] = 0;
    if (strlen(*text) != hlen) return ds_error_set(err, DS_ERR_FORMAT, "%s: .npy header contains a NUL byte", path);
    *data_off = prefix + hlen;
    return DS_OK;
}

static ds_status npy_read_fp(FILE *fp, const char *path, float **data, int *ndim, int64_t *shape, ds_error *err) {
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode))
        return ds_error_set(err, DS_ERR_IO, "%s: not a regular file", path);
    uint64_t fsize = (uint64_t)sb.st_size, off = 0, need = 0;
    char *text = NULL;
    ds_status st = npy_read_header(fp, path, fsize, &text, &off, err);
    if (!st) st = npy_parse_dict(text, path, ndim, shape, err);
    free(text);
    if (st) return st;
    char tuple[128];
    npy_format_shape(tuple, sizeof tuple, *ndim, shape);
    if (!npy_shape_bytes(*ndim, shape, &need) || need > SIZE_MAX)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: shape %s overflows a 64-bit size", path, tuple);
    if (fsize - off != need)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: file holds %llu data bytes but shape %s of <f4 needs %llu", path,
                            (ull)(fsize - off), tuple, (ull)need);
    *data = malloc(need ? (size_t)need : 1);
    if (!*data) return ds_error_set(err, DS_ERR_OOM, "%s: out of memory for %llu bytes", path, (ull)need);
    if (fread(*data, 1, (size_t)need, fp) != need) {
        free(*data);
        *data = NULL;
        return ds_error_set(err, DS_ERR_IO, "%s: cannot read the data", path);
    }
    return DS_OK;
}

ds_status npy_read_f32(const char *path, float **data, int *ndim, int64_t *shape, ds_error *err) {
    *data = NULL;
    *ndim = 0;
    // O_NONBLOCK: a FIFO given by mistake is refused (not a regular file) instead of blocking.
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    FILE *fp = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (!fp) {
        ds_status st = ds_error_set(err, DS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return st;
    }
    int64_t dims[4] = {0, 0, 0, 0};
    int nd = 0;
    ds_status st = npy_read_fp(fp, path, data, &nd, dims, err);
    fclose(fp);
    if (!st) {
        *ndim = nd;
        memcpy(shape, dims, (size_t)nd * sizeof *dims);
    }
    return st;
}
