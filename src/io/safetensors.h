// Safetensors files: mmapped, validated reading and atomic writing.
// Format: u64 little-endian header length N, N bytes of JSON
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then the data.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "tensor/tensor.h"

typedef struct {
    char *name;
    ds_dtype dtype;
    int ndim;            // 0..4 (0 = scalar)
    int64_t shape[4];
    uint64_t begin, end; // byte offsets relative to the data region
    // Points into the mapping at 8 + N + begin. Not necessarily aligned: N and begin come
    // from the file (our writer and HF's keep each tensor aligned to its element size, other
    // writers may not), so a consumer that reads it as float/uint16 must check alignment.
    const uint8_t *data;
    bool used;           // set by consumers that claim the tensor (unexpected-tensor check)
} st_entry;

typedef struct {
    char *path;
    uint8_t *map;        // whole file mapping
    size_t size;
    int n;
    st_entry *entries;   // sorted by name
} st_file;

// Maps and validates: header length within the file, valid JSON object, known dtypes,
// shapes with non-negative dims, end - begin == numel * dtype size, offsets inside the data
// region, no two tensors overlapping, unique names. Error messages name the file and tensor.
// Gaps between tensors are accepted (HF's own reader refuses them; ours only needs the bytes
// of each tensor to be there). On failure *f is left zeroed, so st_file_close is optional.
ds_status st_file_open(st_file *f, const char *path, ds_error *err);
void st_file_close(st_file *f);
st_entry *st_file_find(const st_file *f, const char *name); // binary search, NULL if absent

typedef struct {
    const char *name;
    ds_dtype dtype;
    int ndim;
    int64_t shape[4];
    const void *data;    // numel * dtype size bytes
} st_write_item;

// Writes a safetensors file atomically (temp file in the same folder + fsync + rename),
// streaming each tensor's bytes (nothing the size of the file is built in memory).
// The header, {"__metadata__":{"format":"pt"}, ...}, is padded with spaces so the data region
// starts 8-aligned. The data tiles the region with no gaps, as HF's reader requires: tensors
// are laid out by descending element size (4, 2, 1 bytes) and in the given order within a
// size, which keeps every tensor aligned to its own element size (the layout HF writes).
// Names must be unique and non-empty, dtypes known, ndim 0..4; bad items give DS_ERR_ARG.
ds_status st_file_write(const char *path, const st_write_item *items, int n, ds_error *err);
