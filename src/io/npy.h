// NumPy .npy v1.0 files (little-endian float32, C order), written atomically.
#pragma once
#include <stdint.h>
#include "base/status.h"

ds_status npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape, ds_error *err);
// Reads a '<f4' C-order array; *data is malloc'd. shape has room for 4 dims.
ds_status npy_read_f32(const char *path, float **data, int *ndim, int64_t *shape, ds_error *err);
