// Status codes and error messages. Library functions return a ds_status and, on
// failure, fill a ds_error with one line naming the file/tensor/key and the problem.
// Only the CLI decides to print and exit.
#pragma once
#include <stdarg.h>

typedef enum {
    DS_OK = 0,
    DS_ERR_IO,          // cannot open/read/write/mmap a file
    DS_ERR_FORMAT,      // malformed file contents (safetensors, json, npy)
    DS_ERR_CONFIG,      // config.json missing/invalid key, unsupported architecture
    DS_ERR_ARG,         // bad argument from the caller (flags, ids, shapes)
    DS_ERR_OOM,         // allocation failed
    DS_ERR_LIMIT,       // request exceeds a planned limit (context, batch)
    DS_ERR_INTERRUPTED, // stopped by a signal
} ds_status;

typedef struct {
    char msg[768];
} ds_error;

// Formats the message into err (if non-NULL) and returns code, so callers can write
// `return ds_error_set(err, DS_ERR_FORMAT, "%s: ...", path);`
ds_status ds_error_set(ds_error *err, ds_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// Prefixes an existing message with more context ("loading X: " + old message).
ds_status ds_error_prefix(ds_error *err, ds_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

const char *ds_status_name(ds_status s);

// Process exit code the CLI uses for a status (0 ok, 1 usage/args, 2 data/config, 3 io, ...).
int ds_status_exit_code(ds_status s);
