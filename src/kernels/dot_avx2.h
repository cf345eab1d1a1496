// Internal to src/kernels: the AVX2 fused convert+dot kernels, used when kernels_simd_active()
// (kernels.h). Not part of the kernels API.
#pragma once
#include <stdint.h>

// The SIMD kernels exist only where GCC/Clang can target x86 AVX2 per function.
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define DS_HAVE_AVX2_KERNELS 1
#else
#define DS_HAVE_AVX2_KERNELS 0
#endif

// e4m3fn code -> f32 (NaN codes 0x7f/0xff -> NaN), built at compile time (matmul.c).
extern const float kernels_fp8_lut[256];

// In the fp8 kernels `srow` is the weight row's scale row (one f32 per 128 columns, maybe
// unaligned: read with memcpy) and the columns start at a 128-column block boundary.
#if DS_HAVE_AVX2_KERNELS
float dot_f32_avx2(const void *w, const float *x, int64_t n); // w may be unaligned
float dot_bf16_avx2(const void *w, const float *x, int64_t n);
float dot_f16_avx2(const void *w, const float *x, int64_t n);
float dot_fp8_avx2(const void *w, const float *srow, const float *x, int64_t n);

void axpy_f32_avx2(float *y, float a, const void *w, int64_t n); // y += a w
void axpy_bf16_avx2(float *y, float a, const void *w, int64_t n);
void axpy_f16_avx2(float *y, float a, const void *w, int64_t n);
void axpy_fp8_avx2(float *y, float a, const void *w, const float *srow, int64_t n);

double exp_sum_f32_avx2(float *out, const float *in, int64_t n, float shift);
float max_f32_avx2(const float *x, int64_t n);
void cvt_bf16_avx2(float *out, const void *w, int64_t n);
void cvt_f16_avx2(float *out, const void *w, int64_t n);
void cvt_fp8_avx2(float *out, const void *w, const float *srow, int64_t n);
#endif
