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

// Activations quantized per 32-value block for the integer dot products of the Q8_0 / Q4_0
// weight types: f32 scale (exact enough not to add to the weights' error), int8 values.
typedef struct {
    float d;
    float s8;       // 8 * d * sum(q): lets Q4_0 multiply its unsigned nibbles and correct once
    int8_t q[32];
} act_q8;

// Portable versions (quant.c); the AVX2 ones below compute the same sums.
void act_quantize_portable(const float *x, act_q8 *y, int64_t n);
float dot_q8_0_portable(const void *w, const act_q8 *x, int64_t nb); // nb blocks
float dot_q4_0_portable(const void *w, const act_q8 *x, int64_t nb);
// The 8 rows of one Q4_0X8 row group (nb blocks) against x: out[0..8).
void dot8_q4_0x8_portable(const void *grp, const act_q8 *x, int64_t nb, float *out);

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
void attn_scores_f32_avx2(float *sc, const float *q, const float *rows, int64_t stride, int64_t n_rows,
                          int64_t dim, float scale, int acc);
void attn_wsum_f32_avx2(float *out, const float *p, const float *rows, int64_t stride, int64_t n_rows,
                        int64_t dim, int acc);
void attn_scores_heads_f32_avx2(float *sc, int64_t sc_stride, const float *q, int64_t q_stride, int nh,
                                const float *rows, int64_t stride, int64_t n_rows, int64_t dim, float scale);
void attn_wsum_heads_f32_avx2(float *out, int64_t out_stride, const float *p, int64_t p_stride, int nh,
                              const float *rows, int64_t stride, int64_t n_rows, int64_t dim, int acc);
float max_f32_avx2(const float *x, int64_t n);
void act_quantize_avx2(const float *x, act_q8 *y, int64_t n);
void cvt_q8_0_avx2(float *out, const void *w, int64_t nb); // nb blocks of 32
void cvt_q4_0_avx2(float *out, const void *w, int64_t nb);
// The nb blocks of a Q4_0X8 row group: its 8 rows to out + k*ld (k = 0..7).
void cvt8_q4_0x8_avx2(float *out, int64_t ld, const void *grp, int64_t nb);
float dot_q8_0_avx2(const void *w, const act_q8 *x, int64_t nb);
float dot_q4_0_avx2(const void *w, const act_q8 *x, int64_t nb);
void dot8_q4_0x8_avx2(const void *grp, const act_q8 *x, int64_t nb, float *out);
void cvt_bf16_avx2(float *out, const void *w, int64_t n);
void cvt_f16_avx2(float *out, const void *w, int64_t n);
void cvt_fp8_avx2(float *out, const void *w, const float *srow, int64_t n);
#endif
