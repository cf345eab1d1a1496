// AdamW with decoupled weight decay, global-norm clipping and learning-rate schedules
// (DeepSeek-V3 report: beta1 0.9, beta2 0.95, weight decay 0.1, clip 1.0).
#pragma once
#include <stdint.h>

typedef struct {
    float beta1, beta2, eps;
    float weight_decay;   // applied to tensors whose decay flag is set (matrices), not to norms/biases
} adamw_params;

static inline adamw_params adamw_defaults(void) { return (adamw_params){0.9f, 0.95f, 1e-8f, 0.1f}; }

// One AdamW step on n parameters: m, v are the first/second moments (f32, start at 0), t the
// 1-based step (bias correction), grad_scale multiplies the gradient first (clipping and
// gradient-accumulation averaging), decay = 1 to apply weight decay to this tensor.
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//   p -= lr * ( m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps) + wd * p )
void adamw_update(float *p, const float *g, float *m, float *v, int64_t n, const adamw_params *hp, int t, float lr,
                  float grad_scale, int decay);

// Sum of squares of g (n values), in double so millions of small terms do not lose bits.
double grad_sq_sum(const float *g, int64_t n);
// The factor that scales gradients of global norm `norm` down to `max_norm` (1 if already
// below, or if max_norm <= 0 = no clipping).
float grad_clip_scale(double norm, float max_norm);

typedef enum {
    LR_CONSTANT = 0,
    LR_COSINE,    // linear warmup to lr_max, cosine decay to lr_min at total
    LR_V3,        // DeepSeek-V3: warmup, constant, cosine decay, then two constant tails
} lr_schedule_kind;

typedef struct {
    lr_schedule_kind kind;
    float lr_max, lr_min;
    int warmup;        // steps of linear warmup from 0
    int total;         // total steps
    // LR_V3 only, as fractions of `total` (the report's 10T / 14.3T / 14.63T of 14.8T tokens):
    float decay_start, decay_end, final_start;
    float lr_final;    // last tail (7.3e-6 after 2.2e-5 in the report)
} lr_schedule;

// The V3 report's shape scaled to `total` steps: constant until 67.6%, cosine to lr_min by
// 96.6%, lr_min until 98.9%, then lr_final = lr_min / 3.
lr_schedule lr_schedule_v3(float lr_max, int warmup, int total);
// Learning rate at 0-based step.
float lr_at(const lr_schedule *s, int step);
