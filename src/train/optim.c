#include "train/optim.h"

#include <math.h>

void adamw_update(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, int64_t n, const adamw_params *hp, int t, float lr,
                  float grad_scale, int decay) {
    float b1 = hp->beta1, b2 = hp->beta2;
    // bias corrections in double: at t = 1, 1 - 0.95 is not exact in float
    float c1 = (float)(1.0 / (1.0 - pow(b1, t))), c2 = (float)(1.0 / (1.0 - pow(b2, t)));
    float wd = decay ? hp->weight_decay : 0.0f;
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i] * grad_scale;
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        float update = (m[i] * c1) / (sqrtf(v[i] * c2) + hp->eps);
        p[i] -= lr * (update + wd * p[i]);
    }
}

double grad_sq_sum(const float *g, int64_t n) {
    double s = 0.0;
    #pragma omp parallel for reduction(+ : s) schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    return s;
}

float grad_clip_scale(double norm, float max_norm) {
    if (max_norm <= 0.0f || norm <= max_norm) return 1.0f;
    return (float)(max_norm / (norm + 1e-6));
}

lr_schedule lr_schedule_v3(float lr_max, int warmup, int total) {
    lr_schedule s = {.kind = LR_V3, .lr_max = lr_max, .lr_min = lr_max * 0.1f, .warmup = warmup, .total = total};
    s.decay_start = 10.0f / 14.8f;
    s.decay_end = 14.3f / 14.8f;
    s.final_start = 14.633f / 14.8f;
    s.lr_final = s.lr_min / 3.0f;
    return s;
}

static float lr_cosine(float from, float to, double frac) {
    if (frac <= 0) return from;
    if (frac >= 1) return to;
    return to + 0.5f * (from - to) * (float)(1.0 + cos(M_PI * frac));
}

float lr_at(const lr_schedule *s, int step) {
    if (step < s->warmup) return s->lr_max * (float)(step + 1) / (float)s->warmup;
    switch (s->kind) {
    case LR_CONSTANT: return s->lr_max;
    case LR_COSINE: {
        int span = s->total - s->warmup;
        return span <= 0 ? s->lr_max : lr_cosine(s->lr_max, s->lr_min, (double)(step - s->warmup) / span);
    }
    case LR_V3: {
        double at = (double)step / (s->total > 0 ? s->total : 1);
        if (at < s->decay_start) return s->lr_max;
        if (at < s->decay_end) return lr_cosine(s->lr_max, s->lr_min, (at - s->decay_start) / (s->decay_end - s->decay_start));
        return at < s->final_start ? s->lr_min : s->lr_final;
    }
    }
    return s->lr_max;
}
