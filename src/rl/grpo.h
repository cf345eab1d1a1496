// GRPO (DeepSeekMath / DeepSeek-R1): group-relative advantages and the clipped-ratio policy
// objective with a KL penalty to a frozen reference, as per-token weights for the trainer's
// cross-entropy backward (train_model_step's coef hook).
//
// For completion token t of sequence i with log-probs lp (current policy), lp_old (the policy
// that sampled, detached) and lp_ref (reference), ratio r = exp(lp - lp_old):
//   l_t = -min(r A_i, clip(r, 1 - eps_low, 1 + eps_high) A_i) + beta * k3,
//   k3  = exp(lp_ref - lp) - (lp_ref - lp) - 1           (>= 0, unbiased KL estimator)
// and the loss is sum_t n_t l_t with the aggregation weights n_t:
//   GRPO_AGG_TOKEN: 1 / (completion tokens in the whole batch)          (DAPO, token-level)
//   GRPO_AGG_SEQ:   1 / (|o_i| * sequences in the batch)                (original GRPO)
//   GRPO_AGG_DR:    1 / (max_new * sequences in the batch)              (Dr. GRPO)
// Dr. GRPO also drops the division by the group's standard deviation in the advantage.
#pragma once
#include <stdint.h>

typedef enum { GRPO_AGG_TOKEN = 0, GRPO_AGG_SEQ, GRPO_AGG_DR } grpo_agg;

typedef struct {
    float eps_low, eps_high;  // clip range of the ratio (R1/GRPO: 0.2 and 0.2; DAPO: 0.2, 0.28)
    float beta;               // KL penalty weight (0 = no reference model needed)
    grpo_agg agg;
    int max_new;              // Dr. GRPO's constant length normaliser
} grpo_params;

// A_i for n_groups groups of G rewards each (group g: r[g*G .. g*G+G-1]):
// (r_i - mean) / (std + eps) with the population standard deviation, or r_i - mean when
// scale_std is 0 (Dr. GRPO). A group whose rewards are all equal gets zeros.
void grpo_advantages(const float *r, int n_groups, int G, int scale_std, float eps, float *adv);

// Aggregation weight n_t of every token of a sequence with `len` completion tokens.
float grpo_token_norm(const grpo_params *p, int len, int64_t batch_tokens, int batch_seqs);

typedef struct {
    float loss;      // n-free per-token loss l_t
    float dlogp;     // d l_t / d lp
    float k3;        // the KL estimate at this token
    int clipped;     // the clipped branch of the min is the active one (gradient of the ratio term is 0)
} grpo_token;

// The policy term on the high-entropy "forking" tokens only (Wang et al. 2025, "Beyond the 80/20
// rule"): the threshold at which a token is among the top `frac` (0 < frac <= 1) of the n
// entropies h, i.e. the ceil(n * frac)-th largest (ties at it all pass). h is reordered.
float grpo_entropy_threshold(float *h, int64_t n, double frac);

// Per-token advantages under process supervision (DeepSeekMath's process rewards, at the
// resolution of single tokens). lab holds one REWARD_PROC_* label per completion token
// (reward.h; row k of (n_groups * G, max_new), len[k] tokens), adv the outcome advantages.
// A FREE token (a choice) gets its sequence's outcome advantage; a checked token gets
// coef * (1 - mu) when right and coef * (0 - mu) when wrong, mu the fraction right among the
// group's checked tokens (group-relative like the outcome advantage, but not divided by the
// std, which a rare error would make huge); a NONE token 0, so only the KL term acts on it.
// A right step in a failed reply is thus no longer pushed down with the reply, and a wrong
// one is pushed down even in a successful reply. Returns the group-wise count of wrong tokens
// in bad[g] (may be NULL).
void grpo_process_advantages(const uint8_t *lab, const int *len, int n_groups, int G, int max_new, const float *adv,
                             float coef, float *out, int *bad);

// Per-token loss and its derivative with respect to lp.
void grpo_token_eval(const grpo_params *p, float lp, float lp_old, float lp_ref, float adv, grpo_token *out);
