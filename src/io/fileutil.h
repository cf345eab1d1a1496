// Small file helpers shared by readers and writers.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "base/status.h"

// Reads a whole file into a NUL-terminated malloc'd buffer (*size excludes the NUL).
ds_status file_read_all(const char *path, char **data, size_t *size, ds_error *err);
// Writes data to path atomically: path.tmp.<pid> in the same folder, fsync, rename.
ds_status file_write_atomic(const char *path, const void *data, size_t size, ds_error *err);
// mkdir -p
ds_status file_mkdirs(const char *path, ds_error *err);
// Joins dir and name into a malloc'd string (NULL when out of memory).
char *file_join(const char *dir, const char *name);

// Maps a whole regular file read-only (MAP_PRIVATE: pages come from the page cache and are
// never written back; a file truncated by someone else while mapped can still raise SIGBUS,
// which nothing short of copying it prevents). Files shorter than min_size are a format
// error "<path>: file is N bytes, too small for <what>". O_NONBLOCK so a FIFO given by
// mistake is refused instead of blocking. Unmap with munmap(*map, *size).
ds_status file_map_readonly(const char *path, size_t min_size, const char *what, uint8_t **map, size_t *size,
                            ds_error *err);

// A streaming atomic writer, for files too large to build in memory (checkpoints of
// several GB): bytes go to `<path>.tmp.<pid>` in the same folder, and only a complete,
// fsync'ed file is renamed over path, so no reader ever sees a half-written file.
// Every call that fails has already closed and removed the temp file; file_atomic_abort
// is for the caller's own failures and is safe to call more than once.
typedef struct {
    FILE *fp;
    char *tmp;  // the temp file's path
    char *path; // the final path, for messages
} file_atomic;

ds_status file_atomic_open(file_atomic *w, const char *path, ds_error *err);
ds_status file_atomic_write(file_atomic *w, const void *data, size_t size, ds_error *err);
ds_status file_atomic_commit(file_atomic *w, ds_error *err); // flush, fsync, close, rename
void file_atomic_abort(file_atomic *w);                       // close and unlink the temp file
