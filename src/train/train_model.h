// The training forward and backward of the whole DeepSeek-V3 architecture (embedding, MLA,
// dense MLP, DeepSeekMoE, final norm, lm_head, MTP module) over micro-batches of B packed
// sequences of T tokens, on the f32 master weights of a param_store. llm.c style: every
// activation the backward needs is kept in buffers planned and allocated once; each
// sub-block's backward sits beside its forward in train_model.c.
//
// Shapes: N = B * T tokens; the MTP module sees N' = B * (T - 1) tokens (position i of a
// sequence pairs the main hidden state h_i with the embedding of token i + 1 and predicts
// token i + 2). Attention is causal within each sequence; sequences never see each other.
#pragma once
#include <stdint.h>
#include "base/status.h"
#include "train/params.h"

// Weights of one loss term. A main target t >= 0 contributes ce_weight * CE; a masked one
// (t < 0) nothing. The caller picks weights so the step's loss is a mean over the step, e.g.
// ce_weight = 1 / (targets in the whole step) with gradient accumulation.
// Per-token weights for objectives that are not a plain mean CE (GRPO): the weight of main
// target i computed from log p(target i) of this very forward (the clipped ratio and the KL
// penalty need the current policy's log-probability). Called serially, i in 0..B*T-1.
typedef float (*train_token_coef_fn)(void *ctx, int64_t i, float logp);

typedef struct {
    float ce_weight;      // per main target
    float mtp_weight;     // per MTP target (lambda included); 0 skips the MTP module
    float balance_weight; // alpha / (sequences in the step); 0 skips the balance loss
    // Optional (zero-initialised callers keep the plain mean CE):
    const float *token_weight;   // (B*T) weight of each main target, replacing ce_weight; any sign
    train_token_coef_fn coef;    // else, when set: weight of each main target from its log-prob
    void *coef_ctx;
    float *logp;                 // out (B*T): log p(target) per position (0 where masked)
    float *entropy;              // out (B*T): entropy (nats) of each position's next-token distribution
} train_loss_weights;

typedef struct {
    double loss;                 // the weighted total this call added (what the gradient is of)
    double ce_sum;  int64_t ce_count;   // unweighted sum of main CE and its number of targets
    double mtp_sum; int64_t mtp_count;  // unweighted MTP CE sum and count (when computed)
    double balance;              // weighted balance-loss part of `loss`
} train_loss;

typedef struct train_model train_model;

// Plans and allocates activations for micro-batches of up to B sequences of T tokens.
ds_status train_model_create(train_model **tm, param_store *ps, int B, int T, ds_error *err);
void train_model_free(train_model *tm);
// Bytes of activations and scratch allocated.
int64_t train_model_bytes(const train_model *tm);

// Forward and backward of one micro-batch: inputs and targets are (B, T) with B, T within the
// planned limits. Gradients ACCUMULATE into ps->grads (zero them once per step). The loss is
// added to *out (zero it once per step). Expert loads of this micro-batch are added to the
// load counters.
void train_model_step(train_model *tm, const int32_t *inputs, const int32_t *targets, int B, int T,
                      const train_loss_weights *w, train_loss *out);
// Forward only (validation, log-probs of sampled completions): adds the unweighted CE (and MTP
// CE when w->mtp_weight > 0) sums and counts to *out and fills w->logp / w->entropy when set;
// no gradients, no load counting, no balance loss.
void train_model_eval(train_model *tm, const int32_t *inputs, const int32_t *targets, int B, int T,
                      const train_loss_weights *w, train_loss *out);

// Expert load counters: (token, slot) assignments per expert since the last reset, for each
// MoE layer in order (main layers, then the MTP block's when it ran), E counters each.
int train_model_n_moe_layers(const train_model *tm);
// Layer number (0..L, L = MTP) of MoE layer j.
int train_model_moe_layer(const train_model *tm, int j);
const int *train_model_load(const train_model *tm, int j);
void train_model_reset_load(train_model *tm);
// Applies the auxiliary-loss-free bias update with step `gamma` to every MoE layer from the
// counters, and writes each layer's max/mean load into imbalance (n_moe_layers values, may be
// NULL). Layers that saw no tokens are left alone (imbalance 0).
void train_model_update_bias(train_model *tm, float gamma, float *imbalance);

// Matmul FLOPs of one training token (forward + backward, 6 per weight in each GEMM
// actually used by that token, plus attention at sequence length T), for MFU.
double train_model_flops_per_token(const ds_config *c, int T, int with_mtp);
