#include "io/fileutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static ds_status file_error_oom(ds_error *err, const char *path) {
    return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", path);
}

// read() until EOF into a growing buffer: works for regular files, pipes and /proc alike,
// and a file that changes size while we read it cannot overrun the buffer.
static ds_status file_read_fd(int fd, const char *path, size_t hint, char **data, size_t *size, ds_error *err) {
    size_t cap = hint + 1 > 4096 ? hint + 1 : 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) return file_error_oom(err, path);
    for (;;) {
        if (n + 1 >= cap) {
            size_t ncap = cap * 2;
            char *nb = ncap > cap ? realloc(buf, ncap) : NULL;
            if (!nb) { free(buf); return file_error_oom(err, path); }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            return ds_error_set(err, DS_ERR_IO, "%s: cannot read: %s", path, strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    buf[n] = 0;
    *data = buf;
    if (size) *size = n;
    return DS_OK;
}

ds_status file_read_all(const char *path, char **data, size_t *size, ds_error *err) {
    *data = NULL;
    if (size) *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ds_error_set(err, DS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    size_t hint = 0;
    if (fstat(fd, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) {
            close(fd);
            return ds_error_set(err, DS_ERR_IO, "%s: is a directory, expected a file", path);
        }
        if (S_ISREG(sb.st_mode) && sb.st_size > 0 && (uint64_t)sb.st_size < SIZE_MAX / 2) hint = (size_t)sb.st_size;
    }
    ds_status st = file_read_fd(fd, path, hint, data, size, err);
    close(fd);
    return st;
}

ds_status file_mkdirs(const char *path, ds_error *err) {
    if (!path || !*path) return ds_error_set(err, DS_ERR_ARG, "mkdir: empty path");
    char *p = strdup(path);
    if (!p) return file_error_oom(err, path);
    // Create each prefix ending before a '/', then the whole path.
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != 0) continue;
        char c = *s;
        *s = 0;
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            ds_status st = ds_error_set(err, DS_ERR_IO, "%s: cannot create directory %s: %s", path, p, strerror(e));
            free(p);
            return st;
        }
        *s = c;
        if (c == 0) break;
    }
    free(p);
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return ds_error_set(err, DS_ERR_IO, "%s: exists and is not a directory", path);
    return DS_OK;
}

char *file_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    int slash = a > 0 && dir[a - 1] != '/'; // "dir/" and "" need no separator
    char *s = malloc(a + (size_t)slash + b + 1);
    if (!s) return NULL;
    memcpy(s, dir, a);
    if (slash) s[a] = '/';
    memcpy(s + a + (size_t)slash, name, b + 1);
    return s;
}

// ---- atomic writer ----

static void file_atomic_release(file_atomic *w) {
    free(w->tmp);
    free(w->path);
    w->tmp = w->path = NULL;
    w->fp = NULL;
}

void file_atomic_abort(file_atomic *w) {
    if (w->fp) fclose(w->fp);
    if (w->tmp) unlink(w->tmp);
    file_atomic_release(w);
}

// Aborts and reports errno as an I/O failure on the final path.
static ds_status file_atomic_fail(file_atomic *w, ds_error *err, const char *what, int e) {
    ds_status st = ds_error_set(err, DS_ERR_IO, "%s: cannot %s: %s", w->path ? w->path : "?", what, strerror(e));
    file_atomic_abort(w);
    return st;
}

ds_status file_atomic_open(file_atomic *w, const char *path, ds_error *err) {
    memset(w, 0, sizeof *w);
    size_t n = strlen(path) + 32;
    w->path = strdup(path);
    w->tmp = malloc(n);
    if (!w->path || !w->tmp) {
        file_atomic_release(w);
        return file_error_oom(err, path);
    }
    snprintf(w->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    w->fp = fopen(w->tmp, "wb");
    if (!w->fp) {
        int e = errno;
        free(w->tmp); // nothing was created: do not unlink a file someone else may own
        w->tmp = NULL;
        return file_atomic_fail(w, err, "create file", e);
    }
    return DS_OK;
}

ds_status file_atomic_write(file_atomic *w, const void *data, size_t size, ds_error *err) {
    if (!w->fp) return ds_error_set(err, DS_ERR_IO, "%s: write after failure", w->path ? w->path : "?");
    if (size == 0) return DS_OK;
    errno = 0;
    if (fwrite(data, 1, size, w->fp) != size) return file_atomic_fail(w, err, "write", errno ? errno : EIO);
    return DS_OK;
}

// After the rename, the directory entry itself must reach the disk too; best effort,
// since some file systems refuse fsync on directories.
static void file_sync_parent(const char *path) {
    char *dir = strdup(path);
    if (!dir) return;
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = 0;
    else if (slash) *slash = 0;
    int fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

ds_status file_atomic_commit(file_atomic *w, ds_error *err) {
    if (!w->fp) return ds_error_set(err, DS_ERR_IO, "%s: commit after failure", w->path ? w->path : "?");
    if (fflush(w->fp) != 0) return file_atomic_fail(w, err, "write", errno);
    if (fsync(fileno(w->fp)) != 0) return file_atomic_fail(w, err, "fsync", errno);
    FILE *fp = w->fp;
    w->fp = NULL;
    if (fclose(fp) != 0) return file_atomic_fail(w, err, "close", errno);
    if (rename(w->tmp, w->path) != 0) return file_atomic_fail(w, err, "rename the temp file into place", errno);
    file_sync_parent(w->path);
    file_atomic_release(w);
    return DS_OK;
}

ds_status file_write_atomic(const char *path, const void *data, size_t size, ds_error *err) {
    file_atomic w;
    ds_status st = file_atomic_open(&w, path, err);
    if (!st) st = file_atomic_write(&w, data, size, err);
    if (!st) st = file_atomic_commit(&w, err);
    return st;
}

ds_status file_map_readonly(const char *path, size_t min_size, const char *what, uint8_t **map, size_t *size,
                            ds_error *err) {
    *map = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return ds_error_set(err, DS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    ds_status st = DS_OK;
    if (fstat(fd, &sb) != 0) st = ds_error_set(err, DS_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(sb.st_mode)) st = ds_error_set(err, DS_ERR_IO, "%s: not a regular file", path);
    else if ((uint64_t)sb.st_size < min_size)
        st = ds_error_set(err, DS_ERR_FORMAT, "%s: file is %lld bytes, too small for %s", path, (long long)sb.st_size, what);
    else if ((uint64_t)sb.st_size > SIZE_MAX || (uint64_t)sb.st_size > (uint64_t)INT64_MAX)
        st = ds_error_set(err, DS_ERR_IO, "%s: file too large to map", path);
    if (!st) {
        void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) st = ds_error_set(err, DS_ERR_IO, "%s: cannot mmap: %s", path, strerror(errno));
        else *map = m, *size = (size_t)sb.st_size;
    }
    close(fd);
    return st;
}
