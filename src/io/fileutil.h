// Small file helpers shared by readers and writers.
#pragma once
#include <stddef.h>
#include "base/status.h"

// Reads a whole file into a NUL-terminated malloc'd buffer.
ds_status file_read_all(const char *path, char **data, size_t *size, ds_error *err);
// Writes data to path atomically: path.tmp.<pid> in the same folder, fsync, rename.
ds_status file_write_atomic(const char *path, const void *data, size_t size, ds_error *err);
// mkdir -p
ds_status file_mkdirs(const char *path, ds_error *err);
// Joins dir and name into a malloc'd string.
char *file_join(const char *dir, const char *name);
