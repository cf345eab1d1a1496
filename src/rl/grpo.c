#include "rl/grpo.h"

#include "rl/reward.h"

#include <math.h>
#include <stdlib.h>

void grpo_advantages(const float *r, int n_groups, int G, int scale_std, float eps, float *adv) {
    for (int g = 0; g < n_groups; g++) {
        const float *x = r + (int64_t)g * G;
        double mean = 0, var = 0;
        int same = 1;
        for (int i = 1; i < G; i++) same &= x[i] == x[0];
        for (int i = 0; i < G; i++) mean += x[i];
        mean /= G;
        for (int i = 0; i < G; i++) var += (x[i] - mean) * (x[i] - mean);
        double sd = sqrt(var / G);
        for (int i = 0; i < G; i++) {
            // exact zeros for a uniform group, whatever rounding did to the mean and std
            double d = x[i] - mean;
            adv[(int64_t)g * G + i] = same ? 0.0f : (float)(scale_std ? d / (sd + eps) : d);
        }
    }
}

float grpo_token_norm(const grpo_params *p, int len, int64_t batch_tokens, int batch_seqs) {
    switch (p->agg) {
    case GRPO_AGG_SEQ: return len > 0 ? 1.0f / ((float)len * (float)batch_seqs) : 0.0f;
    case GRPO_AGG_DR: return 1.0f / ((float)p->max_new * (float)batch_seqs);
    case GRPO_AGG_TOKEN:
    default: return batch_tokens > 0 ? 1.0f / (float)batch_tokens : 0.0f;
    }
}

void grpo_token_eval(const grpo_params *p, float lp, float lp_old, float lp_ref, float adv, grpo_token *out) {
    double r = exp((double)lp - (double)lp_old);
    double lo = 1.0 - p->eps_low, hi = 1.0 + p->eps_high;
    double rc = r < lo ? lo : r > hi ? hi : r;
    double unclipped = r * adv, clipped = rc * adv;
    // min(r A, clip(r) A): the clipped branch is active (and flat in lp) only when strictly smaller
    int use_clip = clipped < unclipped;
    double obj = use_clip ? clipped : unclipped;
    double dobj = use_clip ? 0.0 : r * adv;
    double x = (double)lp_ref - (double)lp, ex = exp(x);
    double k3 = ex - x - 1.0;
    out->loss = (float)(-obj + p->beta * k3);
    out->dlogp = (float)(-dobj + p->beta * (1.0 - ex));
    out->k3 = (float)k3;
    out->clipped = use_clip;
}

static int grpo_cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

float grpo_entropy_threshold(float *h, int64_t n, double frac) {
    if (n <= 0) return 0.0f;
    int64_t k = (int64_t)ceil((double)n * frac);
    if (k < 1) k = 1;
    if (k > n) k = n;
    qsort(h, (size_t)n, sizeof *h, grpo_cmp_desc);
    return h[k - 1];
}

void grpo_process_advantages(const uint8_t *lab, const int *len, int n_groups, int G, int max_new, const float *adv,
                             float coef, float *out, int *bad) {
    for (int g = 0; g < n_groups; g++) {
        int64_t ok = 0, wrong = 0;
        for (int i = 0; i < G; i++) {
            int k = g * G + i;
            for (int j = 0; j < len[k]; j++) {
                ok += lab[(int64_t)k * max_new + j] == REWARD_PROC_OK;
                wrong += lab[(int64_t)k * max_new + j] == REWARD_PROC_BAD;
            }
        }
        double mu = ok + wrong ? (double)ok / (double)(ok + wrong) : 1.0;
        float a_ok = (float)(coef * (1.0 - mu)), a_bad = (float)(coef * (0.0 - mu));
        for (int i = 0; i < G; i++) {
            int k = g * G + i;
            for (int j = 0; j < max_new; j++) {
                int64_t x = (int64_t)k * max_new + j;
                uint8_t l = j < len[k] ? lab[x] : REWARD_PROC_NONE;
                out[x] = l == REWARD_PROC_FREE ? adv[k] : l == REWARD_PROC_OK ? a_ok : l == REWARD_PROC_BAD ? a_bad : 0.0f;
            }
        }
        if (bad) bad[g] = (int)wrong;
    }
}
