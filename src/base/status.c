#include "base/status.h"

#include <stdio.h>
#include <string.h>

ds_status ds_error_set(ds_error *err, ds_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

ds_status ds_error_prefix(ds_error *err, ds_status code, const char *fmt, ...) {
    if (err) {
        char old[sizeof err->msg];
        memcpy(old, err->msg, sizeof old);
        old[sizeof old - 1] = 0;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < sizeof err->msg)
            snprintf(err->msg + n, sizeof err->msg - (size_t)n, "%s", old);
    }
    return code;
}

const char *ds_status_name(ds_status s) {
    switch (s) {
    case DS_OK: return "ok";
    case DS_ERR_IO: return "io error";
    case DS_ERR_FORMAT: return "format error";
    case DS_ERR_CONFIG: return "config error";
    case DS_ERR_ARG: return "invalid argument";
    case DS_ERR_OOM: return "out of memory";
    case DS_ERR_LIMIT: return "limit exceeded";
    case DS_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown";
}

int ds_status_exit_code(ds_status s) {
    switch (s) {
    case DS_OK: return 0;
    case DS_ERR_ARG: return 1;
    case DS_ERR_FORMAT: case DS_ERR_CONFIG: return 2;
    case DS_ERR_IO: return 3;
    case DS_ERR_OOM: case DS_ERR_LIMIT: return 4;
    case DS_ERR_INTERRUPTED: return 130;
    }
    return 1;
}
