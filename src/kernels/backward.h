// Training kernels on plain f32 buffers: each op's backward (beside the forward it inverts,
// when that forward is not already in kernels.h), the attention head pair, the loss and the
// MoE gate. Shapes are in the comments; N is the number of tokens in the flat batch.
//
// Conventions (llm.c style):
// - forward overwrites its output; backward ACCUMULATES (+=) into every gradient buffer, so
//   gradient accumulation over micro-batches is free and the caller zeroes gradients once.
//   Exceptions, stated where they occur: crossentropy_forward_backward overwrites (it starts
//   backprop) and rope_backward transforms its buffer in place.
// - A NULL gradient pointer means "not needed": that gradient is skipped.
// - Functions that use OpenMP or OpenBLAS must be called outside OpenMP parallel regions;
//   the ones documented as serial may be called from inside one (per head, per expert).
#pragma once
#include <stdint.h>

// ---- matmul: y = x W^T on f32 weights ----------------------------------------------------
// inp is (N, IN), weight is (OUT, IN), out is (N, OUT). OpenBLAS sgemm; overwrites out.
void matmul_forward_f32(float *out, const float *inp, const float *weight, int N, int IN, int OUT);
// dout is (N, OUT). dinp (N, IN) += dout W ; dweight (OUT, IN) += dout^T inp.
// Either dinp or dweight may be NULL.
void matmul_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                     int N, int IN, int OUT);

// ---- embedding: out[n] = table[tokens[n]] --------------------------------------------------
// table is (V, C), tokens (N) in [0, V), out is (N, C).
void embedding_forward(float *out, const float *table, const int *tokens, int N, int C);
// dtable (V, C): row tokens[n] += dout[n] (scatter-add; repeated tokens sum). Serial.
void embedding_backward(float *dtable, const float *dout, const int *tokens, int N, int C);

// ---- rmsnorm (forward: rmsnorm_forward in kernels.h) ---------------------------------------
// inp, dout and dinp are (N, stride) with the norm over the first C values of each row (the
// other stride - C values are neither read nor written); weight and dweight are (C).
// dinp += d out / d inp . dout ; dweight += sum over rows of dout * inp / rms.
// dinp or dweight may be NULL. dinp must not alias inp or dout.
void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                      int N, int C, int64_t stride, float eps);

// ---- swiglu: out = silu(gate) * up (forward: swiglu_forward in kernels.h) ------------------
// gate, up, dout, dgate, dup are (n) (e.g. (N, C) flattened). dgate or dup may be NULL.
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n);

// ---- rope (forward: rope_forward in kernels.h) ---------------------------------------------
// dx (dim) holds d L / d y on entry and d L / d x on return: the transpose rotation, applied
// IN PLACE (not accumulated). Same pairing, angles and mscale as rope_forward. Serial.
void rope_backward(float *dx, int dim, int pos, const float *inv_freq, float mscale);

// ---- softmax (forward: softmax_forward in kernels.h) ---------------------------------------
// out = softmax(inp) (n); dinp (n) += out * (dout - dot(out, dout)). Serial.
void softmax_backward(float *dinp, const float *dout, const float *out, int n);

// ---- causal attention, one head (backward_attn.c) ------------------------------------------
// q (Tq, d), k (Tk, d), v (Tk, dv), out (Tq, dv), each with its own row stride so a head can
// be read in place from a head-major activation (head h of q at q + h * hd, ldq = H * hd).
// Query i attends keys j <= start + i (and j < Tk): start = position of query 0 minus
// position of key 0 (a chunk continuing a sequence has start = number of earlier keys).
//   score_ij = scale * dot(q_i, k_j) ; p_i = softmax_j(score_i) ; out_i = sum_j p_ij v_j
// For MLA: q = [q_nope | q_pe], k = [k_nope | k_pe], d = dn + dr; k_pe is shared by all
// heads, so the caller sums the k_pe part of every head's dk.
typedef struct {
    int Tq, Tk;             // queries, keys
    int d, dv;              // q/k width, v/out width
    int start;              // causal offset, >= 0
    float scale;            // softmax scale (mscale^2 / sqrt(d) for DeepSeek)
    int ldq, ldk, ldv, ldo; // row strides of q/dq, k/dk, v/dv, out/dout (>= d, d, dv, dv)
} attn_dims;
// Overwrites out. p (Tq, Tk, contiguous) receives the probabilities (0 on masked keys) and
// lse (Tq) the log-sum-exp of each query's scores; either may be NULL. With p NULL the scores
// are computed twice instead of stored. Serial: callers parallelise over heads/sequences.
void attention_forward_head(float *out, float *p, float *lse, const float *q, const float *k, const float *v,
                            const attn_dims *a);
// dout (Tq, dv) and out, the forward's output. dq (Tq, d) +=, dk (Tk, d) +=, dv (Tk, dv) +=
// (any may be NULL). The probabilities come from p if given, else from lse if given, else
// they are recomputed from q and k (no O(Tq Tk) memory). Serial.
void attention_backward_head(float *dq, float *dk, float *dv, const float *dout, const float *out,
                             const float *q, const float *k, const float *v, const float *p,
                             const float *lse, const attn_dims *a);

// The same pair as whole-matrix products (OpenBLAS sgemm; single-threaded inside OpenMP
// regions, so callers run one head per thread). lse (Tq) is required: the backward recomputes
// P from it. scratch: Tq * Tk floats for the forward, 2 * Tq * Tk for the backward; out is
// required by the backward (D_i = dout_i . out_i). Same accumulation rules as above.
void attention_forward_head_gemm(float *out, float *lse, const float *q, const float *k, const float *v,
                                 const attn_dims *a, float *scratch);
void attention_backward_head_gemm(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                  const float *q, const float *k, const float *v, const float *lse,
                                  const attn_dims *a, float *scratch);

// ---- cross-entropy loss ------------------------------------------------------------------
// logits (N, V), targets (N), weights (N) or NULL (= all 1), losses (N), dlogits (N, V).
// losses[n] = -log softmax(logits[n])[targets[n]] (unweighted), and
// dlogits[n] = (softmax(logits[n]) - onehot(targets[n])) * weights[n], i.e. the gradient of
// sum_n weights[n] * losses[n]. A target < 0 is masked: loss 0 and a zero gradient row.
// dlogits is OVERWRITTEN (it starts backprop) and may be NULL (loss only); it may alias
// logits (in-place, saves an (N, V) buffer). losses may be NULL. Targets must be < V.
void crossentropy_forward_backward(float *losses, float *dlogits, const float *logits, const int *targets,
                                   const float *weights, int N, int V);

// ---- MoE gate (routing weights; forward: moe_route_topk in model/moe.c) --------------------
// logits (N, E) router logits; idx (N, K) the selected experts (distinct per token); dw (N, K)
// d L / d w for their final weights
//   w_k = rsf * s[idx_k] / (norm_topk_prob ? sum_m s[idx_m] : 1),
//   s = sigmoid(logits) if use_sigmoid else softmax(logits) over all E.
// dlogits (N, E) += d L / d logits. Selection (top-k, groups, the correction bias) is
// piecewise constant and gets no gradient.
void moe_gate_backward(float *dlogits, const float *logits, const int *idx, const float *dw, int N, int E, int K,
                       int use_sigmoid, int norm_topk_prob, float routed_scaling_factor);
