// Forward kernels on plain f32 buffers (backward kernels join them for training).
// Shapes are in the comments; N is the number of tokens in the flat batch.
#pragma once
#include <stdint.h>
#include "tensor/tensor.h"

// ---- SIMD dispatch -------------------------------------------------------------------
// Kernels pick AVX2+FMA+F16C code at run time when the CPU has it; DS_SIMD=portable in the
// environment (read once per process) forces the portable C loops. 1 when SIMD is in use.
int kernels_simd_active(void);
// Test/bench hook: on != 0 forces the portable path from now on, 0 returns to the default.
// Call it between kernel calls, not concurrently with them.
void kernels_force_portable(int on);

// ---- matmul: y = x W^T -------------------------------------------------------------
// inp is (N, IN) f32, w is (OUT, IN) in any storage dtype, out is (N, OUT) f32.
// f32 weights with N >= DS_GEMM_MIN_N go to OpenBLAS sgemm; other dtypes with N >= DS_GEMM_MIN_N
// are converted in tiles of DS_GEMM_TILE_ROWS rows into `work` and multiplied with sgemm
// (work may be NULL, then the row-wise path is used). Small N: OpenMP over output rows with a
// fused convert+dot. Weight data may be unaligned (a misaligned f32 tensor skips the in-place
// sgemm). Must not be called from inside an OpenMP parallel region.
#define DS_GEMM_MIN_N 4
#define DS_GEMM_TILE_ROWS 256
void matmul_forward(float *out, const float *inp, const ds_tensor *w, int N, float *work);
// Floats of `work` matmul_forward may use for a weight with `in` columns.
static inline int64_t matmul_work_floats(int64_t in) { return (int64_t)DS_GEMM_TILE_ROWS * in; }
// The same product where each output row depends only on its own input row: every token goes
// through the per-row kernels whatever N is (no GEMM, whose blocking varies with N), so a
// token's result is bitwise the same alone or in any batch. Slower than matmul_forward for
// large N; batched serving uses it so a request's output does not depend on its neighbours.
void matmul_forward_rowwise(float *out, const float *inp, const ds_tensor *w, int N, float *work);
// For callers that parallelise themselves (MoE experts at decode): matmul_forward's result
// (rowwise = 0) or matmul_forward_rowwise's (rowwise = 1), bit for bit, for N < DS_GEMM_MIN_N
// tokens, computed in pieces. matmul_few_prepare quantizes the tokens once into xq
// (matmul_few_work_floats(in) floats; a no-op unless w is block-quantized); then
// matmul_few_rows fills output rows [r0, r1) (for Q4_0X8 weights r0 and r1 are multiples of
// 8), serially, from any thread, for any partition of the rows.
int64_t matmul_few_work_floats(int64_t in);
void matmul_few_prepare(const ds_tensor *w, const float *inp, int N, float *xq);
void matmul_few_rows(float *out, const float *inp, const ds_tensor *w, int N, const float *xq, int64_t r0, int64_t r1,
                     int rowwise);
// Single-threaded reference for tests: same result up to summation order.
void matmul_forward_naive(float *out, const float *inp, const ds_tensor *w, int N);
// Row-wise dot products of rows [r0, r1) of w with one vector x (IN): y[r - r0].
// Serial; for callers that parallelise themselves (attention heads, experts).
void matvec_rows(float *y, const ds_tensor *w, int64_t r0, int64_t r1, const float *x);
// y (IN) += sum over rows r in [r0, r1) of a[r - r0] * w[r, :]   (transposed matvec, serial)
void matvec_t_rows_acc(float *y, const ds_tensor *w, int64_t r0, int64_t r1, const float *a);

// ---- elementwise / norms -----------------------------------------------------------
// inp is (N, C), weight is (C), out is (N, C). out may alias inp.
// y = w * x / sqrt(mean(x^2) + eps), all in f32. `stride` is the row stride of inp and out
// (>= C), so a norm can apply to the first C values of wider rows.
void rmsnorm_forward(float *out, const float *inp, const float *weight, int N, int C, int64_t stride, float eps);
// out (N, C) = silu(gate) * up, gate/up (N, C). out may alias gate.
void swiglu_forward(float *out, const float *gate, const float *up, int64_t n);
// In-place softmax of x (n) in f32 (max-subtracted).
void softmax_forward(float *x, int n);
float dot_f32(const float *a, const float *b, int64_t n);
// out[i] = exp(in[i] - shift) (out may alias in); returns the sum (float partial sums of at
// most 1024 terms, added in double). Vectorised exp within ~2 ulp of expf.
double exp_sum_f32(float *out, const float *in, int64_t n, float shift);
float max_f32(const float *x, int64_t n); // -inf for n = 0
// Entropy in nats of softmax(z) (n >= 1), accumulated in double: terms of very different sizes.
float softmax_entropy_f32(const float *z, int64_t n);
void axpy_f32(float *y, float a, const float *x, int64_t n); // y += a x
// Attention against n_rows cached rows of `stride` floats (their first dim values):
// sc[j] = scale * dot(q, rows[j]) (acc = 0), or sc[j] += that (acc = 1, a second part of a
// key stored elsewhere).
void attn_scores_f32(float *sc, const float *q, const float *rows, int64_t stride, int64_t n_rows, int64_t dim,
                     float scale, int acc);
// out[0:dim] = sum_j p[j] rows[j][0:dim] (acc = 0), or out += that (acc = 1).
void attn_wsum_f32(float *out, const float *p, const float *rows, int64_t stride, int64_t n_rows, int64_t dim, int acc);
// The same for nh heads sharing the rows (MLA's absorbed decode: every head against the same
// latent rows): head k's query at q + k q_stride, its scores at sc + k sc_stride (no acc form);
// its weights at p + k p_stride, its sum at out + k out_stride.
void attn_scores_heads_f32(float *sc, int64_t sc_stride, const float *q, int64_t q_stride, int nh, const float *rows,
                           int64_t stride, int64_t n_rows, int64_t dim, float scale);
void attn_wsum_heads_f32(float *out, int64_t out_stride, const float *p, int64_t p_stride, int nh, const float *rows,
                         int64_t stride, int64_t n_rows, int64_t dim, int acc);

// ---- RoPE with YaRN -----------------------------------------------------------------
typedef struct {
    int dim;                 // rotary dims (qk_rope_head_dim), even
    float theta;             // rope_theta
    int yarn;                // 1 if rope_scaling type yarn
    float factor;            // scaling factor
    int orig_max_pos;        // original_max_position_embeddings
    float beta_fast, beta_slow;
    float mscale, mscale_all_dim;
} rope_params;
// inv_freq (dim/2) as in the architecture page, section 4.2 (YaRN blend when yarn).
void rope_inv_freq(float *inv_freq, const rope_params *p);
// Multiplier on the softmax scale: get_mscale(factor, mscale_all_dim)^2 (1 without yarn).
float rope_softmax_mscale2(const rope_params *p);
// cos/sin multiplier: get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim).
float rope_cos_sin_mscale(const rope_params *p);
// Rotates consecutive pairs (x[2i], x[2i+1]) by angle pos * inv_freq[i]; x has dim values,
// `mscale` multiplies cos and sin.
void rope_forward(float *x, int dim, int pos, const float *inv_freq, float mscale);
