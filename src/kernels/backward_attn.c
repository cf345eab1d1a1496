// Causal attention for one head, forward and backward (shapes in backward.h).
// Serial by design: the MLA layer runs heads (and sequences) in parallel around these.
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "kernels/backward.h"
#include "kernels/kernels.h"

// Number of keys query i sees: j <= start + i and j < Tk.
static inline int attn_nkeys(const attn_dims *a, int i) {
    int n = a->start + i + 1;
    return n < a->Tk ? (n > 0 ? n : 0) : a->Tk;
}

// log sum_j exp(score_ij) over the visible keys, online (running max, rescaled sum).
static float attn_row_lse(const float *qi, const float *k, const attn_dims *a, int nk) {
    float m = -INFINITY, l = 0.0f;
    for (int j = 0; j < nk; j++) {
        float s = a->scale * dot_f32(qi, k + (int64_t)j * a->ldk, a->d);
        if (s > m) {
            l = l * expf(m - s) + 1.0f;
            m = s;
        } else {
            l += expf(s - m);
        }
    }
    return m + logf(l);
}

// score_ij = scale q_i . k_j ; p_i = softmax(score_i over j < nk) ; out_i = sum_j p_ij v_j
void attention_forward_head(float *out, float *p, float *lse, const float *q, const float *k, const float *v,
                            const attn_dims *a) {
    for (int i = 0; i < a->Tq; i++) {
        const float *qi = q + (int64_t)i * a->ldq;
        float *oi = out + (int64_t)i * a->ldo;
        int nk = attn_nkeys(a, i);
        memset(oi, 0, sizeof(float) * (size_t)a->dv);
        if (p) {
            float *pi = p + (int64_t)i * a->Tk;
            for (int j = 0; j < nk; j++) pi[j] = a->scale * dot_f32(qi, k + (int64_t)j * a->ldk, a->d);
            float mx = -INFINITY, sum = 0.0f;
            for (int j = 0; j < nk; j++) mx = pi[j] > mx ? pi[j] : mx;
            for (int j = 0; j < nk; j++) {
                pi[j] = expf(pi[j] - mx);
                sum += pi[j];
            }
            float inv = 1.0f / sum;
            for (int j = 0; j < nk; j++) {
                pi[j] *= inv;
                axpy_f32(oi, pi[j], v + (int64_t)j * a->ldv, a->dv);
            }
            for (int j = nk; j < a->Tk; j++) pi[j] = 0.0f;
            if (lse) lse[i] = nk > 0 ? mx + logf(sum) : -INFINITY;
        } else {
            float li = nk > 0 ? attn_row_lse(qi, k, a, nk) : -INFINITY;
            for (int j = 0; j < nk; j++) {
                float pij = expf(a->scale * dot_f32(qi, k + (int64_t)j * a->ldk, a->d) - li);
                axpy_f32(oi, pij, v + (int64_t)j * a->ldv, a->dv);
            }
            if (lse) lse[i] = li;
        }
    }
}

// With dp_ij = do_i . v_j and D_i = sum_j p_ij dp_ij = do_i . out_i:
//   dv_j += p_ij do_i ;  ds_ij = scale p_ij (dp_ij - D_i) ;  dq_i += ds_ij k_j ;  dk_j += ds_ij q_i
void attention_backward_head(float *dq, float *dk, float *dv, const float *dout, const float *out,
                             const float *q, const float *k, const float *v, const float *p,
                             const float *lse, const attn_dims *a) {
    for (int i = 0; i < a->Tq; i++) {
        const float *qi = q + (int64_t)i * a->ldq, *doi = dout + (int64_t)i * a->ldo;
        int nk = attn_nkeys(a, i);
        if (nk == 0) continue;
        const float *pi = p ? p + (int64_t)i * a->Tk : NULL;
        float li = pi ? 0.0f : lse ? lse[i] : attn_row_lse(qi, k, a, nk);
#define ATTN_P(j) (pi ? pi[j] : expf(a->scale * dot_f32(qi, k + (int64_t)(j) * a->ldk, a->d) - li))
        float D = 0.0f;
        if (dq || dk) {
            if (out) {
                D = dot_f32(doi, out + (int64_t)i * a->ldo, a->dv);
            } else {
                for (int j = 0; j < nk; j++) D += ATTN_P(j) * dot_f32(doi, v + (int64_t)j * a->ldv, a->dv);
            }
        }
        for (int j = 0; j < nk; j++) {
            float pij = ATTN_P(j);
            if (dv) axpy_f32(dv + (int64_t)j * a->ldv, pij, doi, a->dv);
            if (!dq && !dk) continue;
            float ds = a->scale * pij * (dot_f32(doi, v + (int64_t)j * a->ldv, a->dv) - D);
            if (dq) axpy_f32(dq + (int64_t)i * a->ldq, ds, k + (int64_t)j * a->ldk, a->d);
            if (dk) axpy_f32(dk + (int64_t)j * a->ldk, ds, qi, a->d);
        }
#undef ATTN_P
    }
}

// ---- GEMM form (training) ------------------------------------------------------------------
// The same functions as whole-matrix products: S = scale Q K^T, P = causal softmax(S),
// O = P V; backward dP = dO V^T, dV += P^T dO, dS = scale P (dP - D), dQ += dS K,
// dK += dS^T Q. sgemm does the O(T^2 d) work; only the softmax stays row-wise. Called from
// inside OpenMP regions (one head per thread), where OpenBLAS runs single-threaded.

// Rows of S (Tq, Tk) -> P in place, causal, with each row's log-sum-exp into lse.
static void attn_softmax_rows(float *s, float *lse, const attn_dims *a) {
    for (int i = 0; i < a->Tq; i++) {
        float *si = s + (int64_t)i * a->Tk;
        int nk = attn_nkeys(a, i);
        float mx = max_f32(si, nk);
        float sum = nk > 0 ? (float)exp_sum_f32(si, si, nk, mx) : 0.0f;
        float inv = nk > 0 ? 1.0f / sum : 0.0f;
        for (int j = 0; j < nk; j++) si[j] *= inv;
        for (int j = nk; j < a->Tk; j++) si[j] = 0.0f;
        if (lse) lse[i] = nk > 0 ? mx + logf(sum) : -INFINITY;
    }
}

void attention_forward_head_gemm(float *out, float *lse, const float *q, const float *k, const float *v,
                                 const attn_dims *a, float *scratch) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, a->Tq, a->Tk, a->d, a->scale, q, a->ldq, k, a->ldk, 0.0f,
                scratch, a->Tk);
    attn_softmax_rows(scratch, lse, a);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, a->Tq, a->dv, a->Tk, 1.0f, scratch, a->Tk, v, a->ldv, 0.0f,
                out, a->ldo);
}

void attention_backward_head_gemm(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                  const float *q, const float *k, const float *v, const float *lse,
                                  const attn_dims *a, float *scratch) {
    int Tq = a->Tq, Tk = a->Tk;
    float *p = scratch, *dp = scratch + (int64_t)Tq * Tk;
    // P again from the saved log-sum-exp: exp(S - lse) on the visible keys
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Tq, Tk, a->d, a->scale, q, a->ldq, k, a->ldk, 0.0f, p, Tk);
    for (int i = 0; i < Tq; i++) {
        float *pi = p + (int64_t)i * Tk;
        int nk = attn_nkeys(a, i);
        if (nk > 0) exp_sum_f32(pi, pi, nk, lse[i]);
        for (int j = nk; j < Tk; j++) pi[j] = 0.0f;
    }
    if (dv)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Tk, a->dv, Tq, 1.0f, p, Tk, dout, a->ldo, 1.0f, dv, a->ldv);
    if (!dq && !dk) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Tq, Tk, a->dv, 1.0f, dout, a->ldo, v, a->ldv, 0.0f, dp, Tk);
    for (int i = 0; i < Tq; i++) {
        float *pi = p + (int64_t)i * Tk, *dpi = dp + (int64_t)i * Tk;
        int nk = attn_nkeys(a, i);
        float D = dot_f32(dout + (int64_t)i * a->ldo, out + (int64_t)i * a->ldo, a->dv);
        for (int j = 0; j < nk; j++) dpi[j] = a->scale * pi[j] * (dpi[j] - D);
        for (int j = nk; j < Tk; j++) dpi[j] = 0.0f;
    }
    if (dq)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Tq, a->d, Tk, 1.0f, dp, Tk, k, a->ldk, 1.0f, dq, a->ldq);
    if (dk)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Tk, a->d, Tq, 1.0f, dp, Tk, q, a->ldq, 1.0f, dk, a->ldk);
}
