// Backward kernels (and the few f32 forwards training needs) on plain f32 buffers.
// Conventions are in backward.h: forward overwrites, backward accumulates (+=).
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "kernels/backward.h"
#include "kernels/kernels.h"

// Elementwise loops below this many values stay on one thread (a parallel region costs
// a few microseconds).
#define BW_PAR_MIN 32768

// ---- matmul ------------------------------------------------------------------------------

// inp is (N, IN), weight is (OUT, IN), out is (N, OUT)
void matmul_forward_f32(float *out, const float *inp, const float *weight, int N, int IN, int OUT) {
    if (N <= 0 || OUT <= 0) return;
    if (IN <= 0) { memset(out, 0, sizeof(float) * (size_t)N * (size_t)OUT); return; }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OUT, IN, 1.0f, inp, IN, weight, IN, 0.0f, out, OUT);
}

// dout is (N, OUT); dinp (N, IN) += dout W ; dweight (OUT, IN) += dout^T inp.
// Most of training's time is spent in these two GEMMs and the forward one.
void matmul_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                     int N, int IN, int OUT) {
    if (N <= 0 || IN <= 0 || OUT <= 0) return;
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IN, OUT, 1.0f, dout, OUT, weight, IN, 1.0f,
                    dinp, IN);
    if (dweight)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OUT, IN, N, 1.0f, dout, OUT, inp, IN, 1.0f,
                    dweight, IN);
}

// ---- embedding ---------------------------------------------------------------------------

// table is (V, C), tokens (N), out is (N, C)
void embedding_forward(float *out, const float *table, const int *tokens, int N, int C) {
    for (int n = 0; n < N; n++)
        memcpy(out + (int64_t)n * C, table + (int64_t)tokens[n] * C, sizeof(float) * (size_t)C);
}

// Serial on purpose: O(N C) is negligible next to the matmuls, and repeated tokens would
// race under a parallel loop over rows.
void embedding_backward(float *dtable, const float *dout, const int *tokens, int N, int C) {
    for (int n = 0; n < N; n++) axpy_f32(dtable + (int64_t)tokens[n] * C, 1.0f, dout + (int64_t)n * C, C);
}

// ---- rmsnorm -----------------------------------------------------------------------------

// y = w x r with r = 1 / sqrt(mean(x^2) + eps):
//   dw_i += dy_i x_i r ;  dx_j += r w_j dy_j - r^3 / C * x_j * sum_i(dy_i w_i x_i)
// Rows go in blocks of RMS_BLK: the rows of a block in parallel (dinp), then the columns
// (dweight, each thread owning a column range), so dweight needs no per-thread copies and
// nothing is allocated.
#define RMS_BLK 256
#define RMS_COLS 64
void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                      int N, int C, int64_t stride, float eps) {
    float r[RMS_BLK];
    int ncol = (C + RMS_COLS - 1) / RMS_COLS;
    int par = (int64_t)N * C >= BW_PAR_MIN;
#pragma omp parallel if (par)
    for (int n0 = 0; n0 < N; n0 += RMS_BLK) {
        int nb = N - n0 < RMS_BLK ? N - n0 : RMS_BLK;
#pragma omp for schedule(static)
        for (int b = 0; b < nb; b++) {
            const float *x = inp + (int64_t)(n0 + b) * stride, *dy = dout + (int64_t)(n0 + b) * stride;
            float ss = dot_f32(x, x, C);
            float rr = 1.0f / sqrtf(ss / (float)C + eps);
            r[b] = rr;
            if (!dinp) continue;
            float a = 0.0f;
            for (int i = 0; i < C; i++) a += dy[i] * weight[i] * x[i];
            float c = rr * rr * rr * a / (float)C;
            float *dx = dinp + (int64_t)(n0 + b) * stride;
            for (int i = 0; i < C; i++) dx[i] += rr * weight[i] * dy[i] - c * x[i];
        }
        if (dweight) {
#pragma omp for schedule(static)
            for (int cb = 0; cb < ncol; cb++) {
                int c0 = cb * RMS_COLS, c1 = c0 + RMS_COLS < C ? c0 + RMS_COLS : C;
                for (int b = 0; b < nb; b++) {
                    const float *x = inp + (int64_t)(n0 + b) * stride, *dy = dout + (int64_t)(n0 + b) * stride;
                    for (int i = c0; i < c1; i++) dweight[i] += dy[i] * x[i] * r[b];
                }
            }
        }
    }
}

// ---- swiglu ------------------------------------------------------------------------------

// out = silu(g) u, silu(g) = g sig(g), silu'(g) = sig(g) (1 + g (1 - sig(g))).
// For g << 0, e^-g overflows to inf, sig = 0 and every product stays finite (no NaN).
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= BW_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        float sig = 1.0f / (1.0f + expf(-g));
        if (dgate) dgate[i] += dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
        if (dup) dup[i] += dout[i] * g * sig;
    }
}

// ---- rope --------------------------------------------------------------------------------

// rope_forward is y = m R(angle) x per pair; its transpose is m R(-angle): same angles and
// cos/sin as the forward (pos * inv_freq in f32), opposite sign of sin.
void rope_backward(float *dx, int dim, int pos, const float *inv_freq, float mscale) {
    for (int i = 0; i < dim / 2; i++) {
        float angle = (float)pos * inv_freq[i];
        float c = cosf(angle) * mscale, s = sinf(angle) * mscale;
        float d0 = dx[2 * i], d1 = dx[2 * i + 1];
        dx[2 * i] = d0 * c + d1 * s;
        dx[2 * i + 1] = -d0 * s + d1 * c;
    }
}

// ---- softmax -----------------------------------------------------------------------------

void softmax_backward(float *dinp, const float *dout, const float *out, int n) {
    float a = dot_f32(out, dout, n);
    for (int i = 0; i < n; i++) dinp[i] += out[i] * (dout[i] - a);
}

// ---- cross-entropy -----------------------------------------------------------------------

// Stable: loss = lse - logit[t] with lse = max + log(sum exp(logit - max)), the sum in double
// (V is large). Each row reads a logit before writing its gradient, so dlogits may be logits.
void crossentropy_forward_backward(float *losses, float *dlogits, const float *logits, const int *targets,
                                   const float *weights, int N, int V) {
#pragma omp parallel for schedule(static) if ((int64_t)N * V >= BW_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *l = logits + (int64_t)n * V;
        float *dl = dlogits ? dlogits + (int64_t)n * V : NULL;
        int t = targets[n];
        if (t < 0) {
            if (losses) losses[n] = 0.0f;
            if (dl) memset(dl, 0, sizeof(float) * (size_t)V);
            continue;
        }
        float mx = max_f32(l, V), lt = l[t];
        // exp(l - max) goes straight into dlogits (in place when they alias), then scales
        double sum = dl ? exp_sum_f32(dl, l, V, mx) : 0.0;
        if (!dl)
            for (int64_t j0 = 0; j0 < V; j0 += 256) { // loss only: exps into a stack buffer
                float e[256];
                sum += exp_sum_f32(e, l + j0, V - j0 < 256 ? V - j0 : 256, mx);
            }
        float lse = mx + (float)log(sum);
        if (losses) losses[n] = lse - lt;
        if (!dl) continue;
        float w = weights ? weights[n] : 1.0f, c = (float)(w / sum);
        for (int j = 0; j < V; j++) dl[j] *= c;
        dl[t] -= w;
    }
}

// ---- MoE gate ----------------------------------------------------------------------------

// Chain rule in two steps. With s_k = s[idx_k], Z = sum_k s_k (or 1), c = rsf:
//   g_k = dL/ds_k = c / Z * (dw_k - [norm] sum_m dw_m s_m / Z)
// then through the scoring function:
//   sigmoid: dlogit[idx_k] += g_k s_k (1 - s_k)
//   softmax: dlogit_j += s_j (g_j - sum_k g_k s_k)   (g_j = 0 off the selected experts)
static inline float gate_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

void moe_gate_backward(float *dlogits, const float *logits, const int *idx, const float *dw, int N, int E, int K,
                       int use_sigmoid, int norm_topk_prob, float routed_scaling_factor) {
#pragma omp parallel for schedule(static) if ((int64_t)N * E >= BW_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *l = logits + (int64_t)n * E;
        const int *id = idx + (int64_t)n * K;
        const float *g_w = dw + (int64_t)n * K;
        float *dl = dlogits + (int64_t)n * E;
        float mx = 0.0f, inv_sum = 1.0f;
        if (!use_sigmoid) {
            mx = l[0];
            for (int j = 1; j < E; j++) mx = l[j] > mx ? l[j] : mx;
            float sum = 0.0f;
            for (int j = 0; j < E; j++) sum += expf(l[j] - mx);
            inv_sum = 1.0f / sum;
        }
#define GATE_S(j) (use_sigmoid ? gate_sigmoid(l[j]) : expf(l[j] - mx) * inv_sum)
        float Z = 1.0f, dws = 0.0f;
        if (norm_topk_prob) {
            Z = 0.0f;
            for (int k = 0; k < K; k++) {
                float s = GATE_S(id[k]);
                Z += s;
                dws += g_w[k] * s;
            }
            dws /= Z;
        }
        float c = routed_scaling_factor / Z, gs = 0.0f;
        for (int k = 0; k < K; k++) {
            int j = id[k];
            float s = GATE_S(j);
            float g = c * (g_w[k] - dws);
            if (use_sigmoid) {
                dl[j] += g * s * gate_sigmoid(-l[j]); // 1 - s without the cancellation
            } else {
                dl[j] += g * s;
                gs += g * s;
            }
        }
        if (!use_sigmoid)
            for (int j = 0; j < E; j++) dl[j] -= expf(l[j] - mx) * inv_sum * gs;
#undef GATE_S
    }
}
