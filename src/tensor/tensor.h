// Storage types and the read-only tensor view the kernels consume.
// Storage types are not compute types: every kernel converts to f32 and accumulates in f32.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef enum {
    DS_F32 = 0,
    DS_BF16,
    DS_F16,
    DS_F8_E4M3, // float8_e4m3fn; matrices carry 128x128 block scales (weight_scale_inv)
    // Block-quantized (GGUF's layouts, so GGUF files map without conversion). Blocks of 32
    // consecutive values of a row, each: f16 scale d, then
    DS_Q8_0,    //   32 int8 q: value = d * q                                      (34 bytes)
    DS_Q4_0,    //   16 bytes of nibbles, value j in the low nibble of byte j and value
                //   j + 16 in the high nibble: value = d * (nibble - 8)          (18 bytes)
    DS_Q4_0X8,  // Q4_0 regrouped at load for the decode kernel (never in files): per 8 rows
                // and 32 columns, 144 bytes: the 8 rows' f16 scales, then for each 4 columns
                // 16 bytes whose byte m holds row m/4 (low nibble) and row 4 + m/4 (high
                // nibble) at column m % 4. Rows are a multiple of 8.
    DS_DTYPE_COUNT
} ds_dtype;

#define DS_FP8_BLOCK 128
#define DS_QBLOCK 32       // values per Q8_0 / Q4_0 block

// A view of weights living elsewhere (mmapped file or an owned buffer).
// Matrices are (rows, cols) row-major = (out, in) as in HF checkpoints.
// For DS_F8_E4M3, `scale` is f32 (ceil(rows/128), ceil(cols/128)) and the real value of
// element (r, c) is fp8(data[r][c]) * scale[r/128][c/128].
typedef struct {
    ds_dtype dtype;
    int ndim;           // 1 or 2 for weights
    int64_t shape[4];
    const void *data;
    const float *scale; // fp8 only
    const char *name;   // HF name, for error messages (may be NULL)
} ds_tensor;

const char *ds_dtype_name(ds_dtype t);        // "F32", "BF16", "F16", "F8_E4M3", "Q8_0", "Q4_0"
int ds_dtype_from_name(const char *s);         // -1 if unknown
size_t ds_dtype_size(ds_dtype t);              // bytes per element; 0 for block types
int ds_dtype_block(ds_dtype t);                // values per block: 32 for Q8_0 / Q4_0, else 1
size_t ds_dtype_block_bytes(ds_dtype t);       // bytes per block (= element size when block is 1)
// Bytes of a row of `cols` values (cols a multiple of the block).
static inline int64_t ds_dtype_row_bytes(ds_dtype t, int64_t cols) {
    return cols / ds_dtype_block(t) * (int64_t)ds_dtype_block_bytes(t);
}
int64_t ds_tensor_numel(const ds_tensor *t);
int64_t ds_tensor_bytes(const ds_tensor *t);   // data bytes (not the fp8 scales)
static inline int64_t ds_tensor_rows(const ds_tensor *t) { return t->ndim == 1 ? 1 : t->shape[0]; }
static inline int64_t ds_tensor_cols(const ds_tensor *t) { return t->shape[t->ndim - 1]; }

// Scalar conversions (exact; f32 -> bf16/f16/fp8 round to nearest even, fp8 saturates at 448).
float ds_bf16_to_f32(uint16_t h);
uint16_t ds_f32_to_bf16(float f);
float ds_f16_to_f32(uint16_t h);
uint16_t ds_f32_to_f16(float f);
float ds_fp8_to_f32(uint8_t b);
uint8_t ds_f32_to_fp8(float f);

// Converts row r (all cols) of a matrix, or a whole 1-D tensor when ndim==1 and r==0, to f32,
// applying fp8 block scales. out has cols elements.
void ds_tensor_row_to_f32(const ds_tensor *t, int64_t r, float *out);
// Converts rows [r0, r0+n) to f32 into out (n, cols).
void ds_tensor_rows_to_f32(const ds_tensor *t, int64_t r0, int64_t n, float *out);

// Quantizes n values (a multiple of 32) into Q8_0 / Q4_0 blocks at out, rounding as
// llama.cpp's reference quantizers do (Q8_0: d = max|x| / 127, q = round(x / d);
// Q4_0: d = the value of largest magnitude / -8, nibble = min(15, (int)(x / d + 8.5))).
void ds_quantize_row(ds_dtype t, const float *x, void *out, int64_t n);
// Dequantizes n values of Q8_0 / Q4_0 blocks.
void ds_dequantize_row(ds_dtype t, const void *in, float *out, int64_t n);
// Regroups a Q4_0 matrix (rows a multiple of 8) into Q4_0X8 (same size), and row r of a
// Q4_0X8 matrix back to f32.
void ds_q4_0_to_x8(const void *in, void *out, int64_t rows, int64_t cols);
void ds_q4_0x8_row_to_f32(const void *data, int64_t r, int64_t cols, float *out);
// Columns [c0, c0 + len) of row r (both multiples of 32).
void ds_q4_0x8_row_range_to_f32(const void *data, int64_t r, int64_t cols, int64_t c0, int64_t len, float *out);
