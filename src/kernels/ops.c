// Elementwise ops, norms and softmax on f32 buffers (f32 accumulation throughout).
#include <math.h>

#include "kernels/dot_avx2.h"
#include "kernels/kernels.h"

float dot_f32(const float *a, const float *b, int64_t n) {
#if DS_HAVE_AVX2_KERNELS
    if (kernels_simd_active()) return dot_f32_avx2(a, b, n);
#endif
    // Eight partial sums: smaller rounding error than one running sum, and vectorisable.
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += a[i + k] * b[i + k];
    for (; i < n; i++) acc[i & 7] += a[i] * b[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

double exp_sum_f32(float *out, const float *in, int64_t n, float shift) {
#if DS_HAVE_AVX2_KERNELS
    if (kernels_simd_active()) return exp_sum_f32_avx2(out, in, n, shift);
#endif
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += out[i] = expf(in[i] - shift);
    return s;
}

float softmax_entropy_f32(const float *z, int64_t n) {
    float mx = max_f32(z, n);
    double se = 0, sez = 0;
    for (int64_t j = 0; j < n; j++) {
        double e = exp((double)(z[j] - mx));
        se += e;
        sez += e * (z[j] - mx);
    }
    return (float)(log(se) - sez / se);
}

float max_f32(const float *x, int64_t n) {
#if DS_HAVE_AVX2_KERNELS
    if (kernels_simd_active()) return max_f32_avx2(x, n);
#endif
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

void axpy_f32(float *y, float a, const float *x, int64_t n) {
#if DS_HAVE_AVX2_KERNELS
    if (kernels_simd_active()) { axpy_f32_avx2(y, a, x, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

void attn_scores_f32(float *sc, const float *q, const float *rows, int64_t stride, int64_t n_rows, int64_t dim,
                     float scale, int acc) {
#if DS_HAVE_AVX2_KERNELS
    if (kernels_simd_active()) { attn_scores_f32_avx2(sc, q, rows, stride, n_rows, dim, scale, acc); return; }
#endif
    for (int64_t j = 0; j < n_rows; j++) {
        float s = scale * dot_f32(q, rows + j * stride, dim);
        sc[j] = acc ? sc[j] + s : s;
    }
}

void attn_wsum_f32(float *out, const float *p, const float *rows, int64_t stride, int64_t n_rows, int64_t dim, int acc) {
#if DS_HAVE_AVX2_KERNELS
    if (kernels_simd_active()) { attn_wsum_f32_avx2(out, p, rows, stride, n_rows, dim, acc); return; }
#endif
    if (!acc)
        for (int64_t c = 0; c < dim; c++) out[c] = 0;
    for (int64_t j = 0; j < n_rows; j++) axpy_f32(out, p[j], rows + j * stride, dim);
}

void attn_scores_heads_f32(float *sc, int64_t sc_stride, const float *q, int64_t q_stride, int nh, const float *rows,
                           int64_t stride, int64_t n_rows, int64_t dim, float scale) {
#if DS_HAVE_AVX2_KERNELS
    if (kernels_simd_active()) {
        attn_scores_heads_f32_avx2(sc, sc_stride, q, q_stride, nh, rows, stride, n_rows, dim, scale);
        return;
    }
#endif
    for (int k = 0; k < nh; k++) attn_scores_f32(sc + k * sc_stride, q + k * q_stride, rows, stride, n_rows, dim, scale, 0);
}

void attn_wsum_heads_f32(float *out, int64_t out_stride, const float *p, int64_t p_stride, int nh, const float *rows,
                         int64_t stride, int64_t n_rows, int64_t dim, int acc) {
#if DS_HAVE_AVX2_KERNELS
    if (kernels_simd_active()) {
        attn_wsum_heads_f32_avx2(out, out_stride, p, p_stride, nh, rows, stride, n_rows, dim, acc);
        return;
    }
#endif
    for (int k = 0; k < nh; k++) attn_wsum_f32(out + k * out_stride, p + k * p_stride, rows, stride, n_rows, dim, acc);
}

// inp, out are (N, stride) with the norm over the first C values of each row.
// Order as in HF: normalise, then multiply by the weight.
void rmsnorm_forward(float *out, const float *inp, const float *weight, int N, int C, int64_t stride, float eps) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + n * stride;
        float *y = out + n * stride;
        float ss = dot_f32(x, x, C);
        float inv = 1.0f / sqrtf(ss / (float)C + eps);
        for (int i = 0; i < C; i++) y[i] = weight[i] * (x[i] * inv);
    }
}

// silu(g) = g / (1 + e^-g): for g << 0, e^-g overflows to inf and the quotient is -0, the
// correct limit, so no clamping is needed.
void swiglu_forward(float *out, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

// x (n >= 1, at least one finite entry; -inf entries are masked positions).
void softmax_forward(float *x, int n) {
    float mx = max_f32(x, n);
    float inv = (float)(1.0 / exp_sum_f32(x, x, n, mx));
    for (int i = 0; i < n; i++) x[i] *= inv;
}
