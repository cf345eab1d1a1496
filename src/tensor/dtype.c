#include <math.h>
#include <string.h>

#include "tensor/tensor.h"

static const char *const dtype_names[DS_DTYPE_COUNT] = {"F32", "BF16", "F16", "F8_E4M3", "Q8_0", "Q4_0", "Q4_0X8"};
static const size_t dtype_sizes[DS_DTYPE_COUNT] = {4, 2, 2, 1, 0, 0, 0};
static const int dtype_blocks[DS_DTYPE_COUNT] = {1, 1, 1, 1, DS_QBLOCK, DS_QBLOCK, DS_QBLOCK};
static const size_t dtype_block_bytes[DS_DTYPE_COUNT] = {4, 2, 2, 1, 34, 18, 18};

const char *ds_dtype_name(ds_dtype t) { return (unsigned)t < DS_DTYPE_COUNT ? dtype_names[t] : "?"; }

int ds_dtype_from_name(const char *s) {
    for (int i = 0; i < DS_DTYPE_COUNT; i++)
        if (strcmp(s, dtype_names[i]) == 0) return i;
    return -1;
}

size_t ds_dtype_size(ds_dtype t) { return (unsigned)t < DS_DTYPE_COUNT ? dtype_sizes[t] : 0; }
int ds_dtype_block(ds_dtype t) { return (unsigned)t < DS_DTYPE_COUNT ? dtype_blocks[t] : 1; }
size_t ds_dtype_block_bytes(ds_dtype t) { return (unsigned)t < DS_DTYPE_COUNT ? dtype_block_bytes[t] : 0; }

int64_t ds_tensor_bytes(const ds_tensor *t) {
    return ds_tensor_rows(t) * ds_dtype_row_bytes(t->dtype, ds_tensor_cols(t));
}

int64_t ds_tensor_numel(const ds_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float ds_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t ds_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1); // round to nearest even
    return (uint16_t)(u >> 16);
}

float ds_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0) { // zero / subnormal: man * 2^-24
        float v = ldexpf((float)man, -24);
        return sign ? -v : v;
    }
    if (exp == 31) return bits_f32(sign | 0x7f800000u | (man << 13));
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t ds_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    float a = fabsf(f);
    if (isnan(f)) return sign | 0x7e00;
    if (a >= 65520.0f) return sign | 0x7c00; // rounds to inf
    if (a < 6.103515625e-05f) { // subnormal range: quantum 2^-24
        float q = nearbyintf(a * 16777216.0f); // default rounding mode is nearest-even
        return sign | (uint16_t)q;
    }
    uint32_t au = f32_bits(a);
    uint32_t exp = (au >> 23) - 112, man = au & 0x7fffff;
    uint32_t h = (exp << 10) | (man >> 13);
    uint32_t rest = man & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return sign | (uint16_t)h;
}

float ds_fp8_to_f32(uint8_t b) {
    int s = b >> 7, e = (b >> 3) & 0xf, m = b & 7;
    float v;
    if (e == 15 && m == 7) return NAN;
    if (e == 0) v = ldexpf((float)m / 8.0f, -6);
    else v = ldexpf(1.0f + (float)m / 8.0f, e - 7);
    return s ? -v : v;
}

// Round to nearest even among the 254 finite e4m3 values, saturating at +-448.
uint8_t ds_f32_to_fp8(float f) {
    if (isnan(f)) return 0x7f;
    uint8_t sign = signbit(f) ? 0x80 : 0;
    float a = fabsf(f);
    if (a >= 448.0f) return sign | 0x7e;
    // Binary search over the monotone positive codes 0x00..0x7e.
    int lo = 0, hi = 0x7e;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (ds_fp8_to_f32((uint8_t)mid) <= a) lo = mid; else hi = mid;
    }
    float vlo = ds_fp8_to_f32((uint8_t)lo), vhi = ds_fp8_to_f32((uint8_t)hi);
    int pick;
    if (a - vlo < vhi - a) pick = lo;
    else if (a - vlo > vhi - a) pick = hi;
    else pick = (lo & 1) ? hi : lo;
    return sign | (uint8_t)pick;
}

void ds_tensor_row_to_f32(const ds_tensor *t, int64_t r, float *out) {
    int64_t cols = ds_tensor_cols(t);
    switch (t->dtype) {
    case DS_F32: memcpy(out, (const float *)t->data + r * cols, (size_t)cols * 4); break;
    case DS_BF16: {
        const uint16_t *p = (const uint16_t *)t->data + r * cols;
        for (int64_t c = 0; c < cols; c++) out[c] = ds_bf16_to_f32(p[c]);
    } break;
    case DS_F16: {
        const uint16_t *p = (const uint16_t *)t->data + r * cols;
        for (int64_t c = 0; c < cols; c++) out[c] = ds_f16_to_f32(p[c]);
    } break;
    case DS_F8_E4M3: {
        const uint8_t *p = (const uint8_t *)t->data + r * cols;
        int64_t scols = (cols + DS_FP8_BLOCK - 1) / DS_FP8_BLOCK;
        const float *srow = t->scale + (r / DS_FP8_BLOCK) * scols;
        for (int64_t c = 0; c < cols; c++) out[c] = ds_fp8_to_f32(p[c]) * srow[c / DS_FP8_BLOCK];
    } break;
    case DS_Q8_0:
    case DS_Q4_0:
        ds_dequantize_row(t->dtype, (const uint8_t *)t->data + r * ds_dtype_row_bytes(t->dtype, cols), out, cols);
        break;
    case DS_Q4_0X8: ds_q4_0x8_row_to_f32(t->data, r, cols, out); break;
    default: break;
    }
}

// ---- Q8_0 / Q4_0 ---------------------------------------------------------------------------

void ds_quantize_row(ds_dtype t, const float *x, void *out, int64_t n) {
    uint8_t *o = out;
    for (int64_t b = 0; b < n / DS_QBLOCK; b++, x += DS_QBLOCK) {
        if (t == DS_Q8_0) {
            float amax = 0.0f;
            for (int j = 0; j < DS_QBLOCK; j++) amax = fmaxf(amax, fabsf(x[j]));
            float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            uint16_t h = ds_f32_to_f16(d);
            memcpy(o, &h, 2);
            for (int j = 0; j < DS_QBLOCK; j++) o[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
            o += 34;
        } else { // DS_Q4_0
            float amax = 0.0f, max = 0.0f;
            for (int j = 0; j < DS_QBLOCK; j++)
                if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
            float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            uint16_t h = ds_f32_to_f16(d);
            memcpy(o, &h, 2);
            for (int j = 0; j < DS_QBLOCK / 2; j++) {
                int lo = (int)(x[j] * id + 8.5f), hi = (int)(x[j + 16] * id + 8.5f);
                lo = lo > 15 ? 15 : lo;
                hi = hi > 15 ? 15 : hi;
                o[2 + j] = (uint8_t)(lo | (hi << 4));
            }
            o += 18;
        }
    }
}

void ds_dequantize_row(ds_dtype t, const void *in, float *out, int64_t n) {
    const uint8_t *p = in;
    for (int64_t b = 0; b < n / DS_QBLOCK; b++, out += DS_QBLOCK) {
        uint16_t h;
        memcpy(&h, p, 2);
        float d = ds_f16_to_f32(h);
        if (t == DS_Q8_0) {
            for (int j = 0; j < DS_QBLOCK; j++) out[j] = d * (float)(int8_t)p[2 + j];
            p += 34;
        } else {
            for (int j = 0; j < DS_QBLOCK / 2; j++) {
                out[j] = d * (float)((p[2 + j] & 15) - 8);
                out[j + 16] = d * (float)((p[2 + j] >> 4) - 8);
            }
            p += 18;
        }
    }
}

void ds_tensor_rows_to_f32(const ds_tensor *t, int64_t r0, int64_t n, float *out) {
    int64_t cols = ds_tensor_cols(t);
    for (int64_t i = 0; i < n; i++) ds_tensor_row_to_f32(t, r0 + i, out + i * cols);
}

// ---- Q4_0X8 ------------------------------------------------------------------------------

void ds_q4_0_to_x8(const void *in, void *out, int64_t rows, int64_t cols) {
    const uint8_t *src = in;
    uint8_t *dst = out;
    int64_t nb = cols / DS_QBLOCK, rb = nb * 18;
    for (int64_t g = 0; g < rows / 8; g++)
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *o = dst + (g * nb + b) * 144;
            memset(o + 16, 0, 128);
            for (int lane = 0; lane < 8; lane++) {
                const uint8_t *blk = src + (g * 8 + lane) * rb + b * 18;
                memcpy(o + 2 * lane, blk, 2);
                for (int c = 0; c < DS_QBLOCK; c++) {
                    int n = c < 16 ? blk[2 + c] & 15 : blk[2 + c - 16] >> 4;
                    int m = (lane % 4) * 4 + c % 4;
                    o[16 + 16 * (c / 4) + m] |= (uint8_t)(lane < 4 ? n : n << 4);
                }
            }
        }
}

void ds_q4_0x8_row_to_f32(const void *data, int64_t r, int64_t cols, float *out) {
    ds_q4_0x8_row_range_to_f32(data, r, cols, 0, cols, out);
}

void ds_q4_0x8_row_range_to_f32(const void *data, int64_t r, int64_t cols, int64_t c0, int64_t len, float *out) {
    int64_t nb = cols / DS_QBLOCK, lane = r % 8;
    const uint8_t *grp = (const uint8_t *)data + (r / 8) * nb * 144;
    for (int64_t b = c0 / DS_QBLOCK; b < (c0 + len) / DS_QBLOCK; b++, out += DS_QBLOCK) {
        const uint8_t *o = grp + b * 144;
        uint16_t h;
        memcpy(&h, o + 2 * lane, 2);
        float d = ds_f16_to_f32(h);
        for (int c = 0; c < DS_QBLOCK; c++) {
            uint8_t byte = o[16 + 16 * (c / 4) + (lane % 4) * 4 + c % 4];
            out[c] = d * (float)((lane < 4 ? byte & 15 : byte >> 4) - 8);
        }
    }
}
