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
    const uint8_t *data; // points into the mapping
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

// Writes a safetensors file atomically (temp file in the same folder + fsync + rename).
// Tensors are laid out in the given order, each data offset aligned to 8 bytes (header padded
// with spaces so the data region starts 8-aligned). metadata may be NULL ({"format":"pt"}).
ds_status st_file_write(const char *path, const st_write_item *items, int n, ds_error *err);
