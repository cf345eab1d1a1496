// GGUF files (llama.cpp's format, our interchange format): mmapped, validated reading and
// streaming atomic writing. Little-endian only; versions 2 and 3 are read, 3 is written.
//
// Layout: "GGUF", u32 version, u64 tensor_count, u64 metadata_kv_count, the metadata
// key-value pairs (string key, u32 value type, value), the tensor infos (string name,
// u32 n_dims, u64 dims[n_dims], u32 ggml type, u64 offset), zero padding to the alignment
// (the u32 key "general.alignment", default 32), then the data section. A string is a u64
// byte length and the bytes (no NUL); an array is a u32 element type, a u64 count and the
// elements. dims[0] is the innermost (contiguous) dimension: a row-major (rows, cols)
// matrix has dims {cols, rows}. Each tensor's offset is relative to the data section and a
// multiple of the alignment.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

// Metadata value types (the file's u32 codes).
typedef enum {
    GGUF_VAL_U8 = 0,
    GGUF_VAL_I8 = 1,
    GGUF_VAL_U16 = 2,
    GGUF_VAL_I16 = 3,
    GGUF_VAL_U32 = 4,
    GGUF_VAL_I32 = 5,
    GGUF_VAL_F32 = 6,
    GGUF_VAL_BOOL = 7,   // one byte, 0 or 1 (anything else is refused)
    GGUF_VAL_STRING = 8,
    GGUF_VAL_ARRAY = 9,
    GGUF_VAL_U64 = 10,
    GGUF_VAL_I64 = 11,
    GGUF_VAL_F64 = 12,
    GGUF_VAL_COUNT,
    // Element-type wildcards for gguf_get_array (never in a file).
    GGUF_VAL_ANY = -1,       // any element type
    GGUF_VAL_ANY_INT = -2,   // any of the eight integer types
    GGUF_VAL_ANY_FLOAT = -3, // F32 or F64
} gguf_value_type;

// ggml tensor types (the file's u32 codes). Types ggml has removed (4, 5, 31-33, 36-38) and
// codes past MXFP4 are unknown: files using them are refused.
typedef enum {
    GGUF_TYPE_F32 = 0,
    GGUF_TYPE_F16 = 1,
    GGUF_TYPE_Q4_0 = 2,
    GGUF_TYPE_Q4_1 = 3,
    GGUF_TYPE_Q5_0 = 6,
    GGUF_TYPE_Q5_1 = 7,
    GGUF_TYPE_Q8_0 = 8,
    GGUF_TYPE_Q8_1 = 9,
    GGUF_TYPE_Q2_K = 10,
    GGUF_TYPE_Q3_K = 11,
    GGUF_TYPE_Q4_K = 12,
    GGUF_TYPE_Q5_K = 13,
    GGUF_TYPE_Q6_K = 14,
    GGUF_TYPE_Q8_K = 15,
    GGUF_TYPE_IQ2_XXS = 16,
    GGUF_TYPE_IQ2_XS = 17,
    GGUF_TYPE_IQ3_XXS = 18,
    GGUF_TYPE_IQ1_S = 19,
    GGUF_TYPE_IQ4_NL = 20,
    GGUF_TYPE_IQ3_S = 21,
    GGUF_TYPE_IQ2_S = 22,
    GGUF_TYPE_IQ4_XS = 23,
    GGUF_TYPE_I8 = 24,
    GGUF_TYPE_I16 = 25,
    GGUF_TYPE_I32 = 26,
    GGUF_TYPE_I64 = 27,
    GGUF_TYPE_F64 = 28,
    GGUF_TYPE_IQ1_M = 29,
    GGUF_TYPE_BF16 = 30,
    GGUF_TYPE_TQ1_0 = 34,
    GGUF_TYPE_TQ2_0 = 35,
    GGUF_TYPE_MXFP4 = 39,
    GGUF_TYPE_COUNT = 40, // one past the largest code (not every code below is a type)
} gguf_type;

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_ARRAY_DEPTH 8   // arrays of arrays nested deeper are refused
#define GGUF_MAX_NAME 63         // longest tensor name llama.cpp reads (bytes); our writer enforces it

// Per-type block layout: elements per block and bytes per block (0 for an unknown type),
// and the name ("F32", "Q4_K", "BF16"; "unknown" for an unknown type).
size_t gguf_type_block_size(int type);
size_t gguf_type_block_bytes(int type);
const char *gguf_type_name(int type);
// "u8", "i32", "f32", "bool", "string", "array", ... ("unknown" for an unknown code).
const char *gguf_value_type_name(int type);

typedef struct {
    char *key;            // NUL-terminated copy (keys with NUL bytes are refused)
    gguf_value_type type;
    gguf_value_type elem_type; // arrays: the element type (may be GGUF_VAL_ARRAY); else = type
    uint64_t count;       // arrays: number of elements; else 1
    // The value's bytes in the mapping (unaligned; little-endian). Scalars: the value. Strings:
    // the bytes after the u64 length (size = length). Arrays: the first element, after the
    // element type and count (size = all elements' bytes), so numeric arrays can be copied
    // straight out with memcpy.
    const uint8_t *data;
    uint64_t size;
    // Arrays of strings: the offset from data of each element's u64 length (count entries),
    // built at open so element access is O(1). NULL for other values.
    uint64_t *str_off;
} gguf_kv;

typedef struct {
    char *name;           // NUL-terminated copy (non-empty, unique, no NUL bytes)
    gguf_type type;
    int n_dims;           // 1..4
    int64_t dims[GGUF_MAX_DIMS]; // dims[0] innermost; unused dims are 1. Zero dims are allowed
                                 // (an empty tensor: size 0, owns no bytes), as in ggml.
    uint64_t numel;
    uint64_t offset;      // relative to the data section (a multiple of the alignment)
    uint64_t size;        // bytes: numel / block size * block bytes
    // f->map + f->data_offset + offset. Aligned to the file's alignment relative to the
    // start of the mapping (which is page-aligned), so aligned in memory too when the
    // alignment is at most the page size.
    const uint8_t *data;
} gguf_tensor;

typedef struct {
    char *path;
    uint8_t *map;         // whole file mapping
    size_t size;
    uint32_t version;     // 2 or 3
    uint32_t alignment;   // general.alignment, or 32
    uint64_t data_offset; // start of the data section in the file (with no tensors it may be
                          // the file size or, for an unpadded file, just past it)
    int n_kv;
    gguf_kv *kvs;         // file order
    int n_tensors;
    gguf_tensor *tensors; // file order
    int *kv_sorted;       // indices into kvs sorted by key (for gguf_find_kv)
    int *tensor_sorted;   // indices into tensors sorted by name (for gguf_find_tensor)
} gguf_file;

// Maps and validates the whole header: magic, version 2/3, counts plausible for the file
// size, every length and count bounded by the bytes left (nothing is allocated from a count
// before the bytes it claims have been seen), known value and element types, arrays nested
// at most GGUF_MAX_ARRAY_DEPTH deep, bools 0/1, keys non-empty and unique, general.alignment
// (when present) a u32 power of two, tensor names non-empty and unique, n_dims 1..4,
// dims < 2^63, known ggml types, dims[0] a multiple of the block size, no overflow in the
// byte size, offsets aligned, every tensor's bytes inside the file and no two tensors
// sharing bytes. Gaps between tensors and any tensor order are accepted (llama.cpp's reader
// wants them packed in order; ours only needs each tensor's bytes to be there), as is
// trailing data. Keys and names need not be UTF-8. Nested arrays are validated but their
// elements are not reachable through the accessors below (no known writer produces them).
// Error messages name the file and the key or tensor. On failure *f is zeroed, so
// gguf_close is optional.
ds_status gguf_open(gguf_file *f, const char *path, ds_error *err);
void gguf_close(gguf_file *f); // safe on a zeroed or closed file

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);          // NULL if absent
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name); // NULL if absent

// Typed metadata getters. A missing key, a value of another type or a value that does not
// fit the requested type is a DS_ERR_FORMAT error naming the file and the key (and the
// expected vs actual type). Integer getters take any integer type whose value fits; float
// getters take F32 or F64; the bool and string getters take only their own type. *out is
// untouched on failure, so a default can be set first (after checking gguf_find_kv).
ds_status gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, ds_error *err);
ds_status gguf_get_i32(const gguf_file *f, const char *key, int32_t *out, ds_error *err);
ds_status gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out, ds_error *err);
ds_status gguf_get_i64(const gguf_file *f, const char *key, int64_t *out, ds_error *err);
ds_status gguf_get_f32(const gguf_file *f, const char *key, float *out, ds_error *err);
ds_status gguf_get_f64(const gguf_file *f, const char *key, double *out, ds_error *err);
ds_status gguf_get_bool(const gguf_file *f, const char *key, bool *out, ds_error *err);
// The string's bytes in the mapping (not NUL-terminated) and its length.
ds_status gguf_get_string(const gguf_file *f, const char *key, const char **s, size_t *len, ds_error *err);
// An array whose element type is elem_type (or matches a GGUF_VAL_ANY* wildcard).
ds_status gguf_get_array(const gguf_file *f, const char *key, int elem_type, const gguf_kv **arr, ds_error *err);

// Array elements, O(1) each. Each returns false / NULL when kv is not an array of a
// matching type or i >= kv->count; nothing reads outside the validated value.
// Strings: the bytes in the mapping (not NUL-terminated) and their length.
const char *gguf_array_string(const gguf_kv *kv, uint64_t i, size_t *len);
bool gguf_array_int(const gguf_kv *kv, uint64_t i, int64_t *out); // any integer type; false if a u64 is >= 2^63
bool gguf_array_float(const gguf_kv *kv, uint64_t i, double *out); // F32 or F64
bool gguf_array_bool(const gguf_kv *kv, uint64_t i, bool *out);

// ---- writing ----

typedef struct {
    char *key;
    gguf_value_type type, elem_type;
    uint64_t count;
    uint8_t *payload;     // the value as written after the type code (arrays: elements only)
    size_t payload_size;
} gguf_writer_kv;

typedef struct {
    char *name;
    int type;
    int n_dims;
    int64_t dims[GGUF_MAX_DIMS];
    const void *data;     // not copied: must stay valid until gguf_write
} gguf_writer_tensor;

// A list of key-value pairs and tensors to write. The add functions copy keys, names and
// values (not tensor data) and never fail visibly: the first failure (out of memory, a NULL
// key, a bad value type) is latched and returned by gguf_write, so callers can add
// everything and check once. No global state: writers are independent.
typedef struct {
    gguf_writer_kv *kvs;
    int n_kv, cap_kv;
    gguf_writer_tensor *tensors;
    int n_tensors, cap_tensors;
    ds_status failed;     // first latched failure (DS_OK if none)
    ds_error fail_err;    // its message (without the path)
} gguf_writer;

void gguf_writer_init(gguf_writer *w);
void gguf_writer_free(gguf_writer *w); // also resets to the init state

// A scalar: value points to a native uint8_t / int8_t / ... / float / double / bool
// matching type (any GGUF_VAL_* but STRING and ARRAY).
void gguf_writer_add(gguf_writer *w, const char *key, gguf_value_type type, const void *value);
void gguf_writer_add_u32(gguf_writer *w, const char *key, uint32_t v);
void gguf_writer_add_i32(gguf_writer *w, const char *key, int32_t v);
void gguf_writer_add_u64(gguf_writer *w, const char *key, uint64_t v);
void gguf_writer_add_f32(gguf_writer *w, const char *key, float v);
void gguf_writer_add_bool(gguf_writer *w, const char *key, bool v);
void gguf_writer_add_string(gguf_writer *w, const char *key, const char *s); // NUL-terminated
// An array of n scalars packed natively (elem_type as for gguf_writer_add).
void gguf_writer_add_array(gguf_writer *w, const char *key, gguf_value_type elem_type, const void *values, uint64_t n);
void gguf_writer_add_array_i32(gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
void gguf_writer_add_array_f32(gguf_writer *w, const char *key, const float *v, uint64_t n);
// n strings; lens gives their byte lengths (they may then hold NULs), or NULL for strlen.
void gguf_writer_add_array_string(gguf_writer *w, const char *key, const char *const *strs, const size_t *lens,
                                  uint64_t n);
// A tensor of n_dims dims in GGUF order (dims[0] innermost: a row-major (rows, cols) matrix
// is {cols, rows}); data holds its numel / block size * block bytes bytes.
void gguf_writer_add_tensor(gguf_writer *w, const char *name, int type, int n_dims, const int64_t *dims,
                            const void *data);

// Writes a version 3 file atomically (temp file in the same folder + fsync + rename),
// streaming the header and each tensor's bytes (nothing the size of the file is built in
// memory). Key-value pairs and tensors keep the order they were added in; the data section
// and each tensor are padded with zeros to the alignment (a general.alignment u32 key if the
// caller added one, else 32), which is the packed layout llama.cpp's reader requires.
// Invalid input is DS_ERR_ARG naming the path and the key or tensor: a latched add failure,
// empty, over-long (65535 bytes) or duplicate keys, general.alignment not a u32 power of
// two, empty, over-long (GGUF_MAX_NAME) or duplicate tensor names, unknown ggml types,
// n_dims not 1..4, negative dims, dims[0] not a multiple of the block size, overflowing
// sizes, missing data.
ds_status gguf_write(const char *path, const gguf_writer *w, ds_error *err);
