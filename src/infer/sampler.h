// Token sampling from logits: greedy, temperature, top-k, top-p, min-p; seeded, reproducible.
#pragma once
#include "base/rng.h"
#include "base/status.h"

typedef struct sampler_params {
    float temperature; // 0 = greedy (argmax, lowest id on ties)
    int top_k;         // 0 = off
    float top_p;       // 1 = off
    float min_p;       // 0 = off (keep tokens with p >= min_p * p_max)
    uint64_t seed;
} sampler_params;

typedef struct {
    sampler_params p;
    ds_rng rng;
    int vocab;
    // scratch (vocab entries), allocated once
    float *probs;
    int *idx;
} sampler;

// Validates params (temperature >= 0, top_k >= 0, 0 < top_p <= 1, 0 <= min_p <= 1).
ds_status sampler_init(sampler *s, const sampler_params *p, int vocab, ds_error *err);
void sampler_free(sampler *s);
// Picks a token from logits (vocab). Filters apply in the order temperature, top-k, top-p, min-p.
int sampler_sample(sampler *s, const float *logits);
