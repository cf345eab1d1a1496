#include "train/balance.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

float moe_bias_update(float *bias, const int *load, int E, float gamma) {
    double mean = 0;
    int max = 0;
    for (int i = 0; i < E; i++) {
        mean += load[i];
        if (load[i] > max) max = load[i];
    }
    mean /= E;
    for (int i = 0; i < E; i++) {
        if (load[i] < mean) bias[i] += gamma;      // underloaded: more likely to be chosen
        else if (load[i] > mean) bias[i] -= gamma; // overloaded: less likely
    }
    return mean > 0 ? (float)(max / mean) : 1.0f;
}

// Scores of one token: s (E) from logits, sigmoid or softmax.
static void balance_scores(const float *logits, int E, bool sigmoid, double *s) {
    if (sigmoid) {
        for (int i = 0; i < E; i++) s[i] = 1.0 / (1.0 + exp(-(double)logits[i]));
        return;
    }
    double m = logits[0], z = 0;
    for (int i = 1; i < E; i++) m = fmax(m, logits[i]);
    for (int i = 0; i < E; i++) z += s[i] = exp((double)logits[i] - m);
    for (int i = 0; i < E; i++) s[i] /= z;
}

float moe_balance_loss(const float *logits, const int *idx, int T, int E, int K, bool sigmoid, float alpha,
                       float *dlogits) {
    if (T <= 0 || E <= 0 || K <= 0) return 0.0f;
    double *f = calloc((size_t)E, sizeof *f), *s = malloc((size_t)E * sizeof *s), *g = malloc((size_t)E * sizeof *g);
    if (!f || !s || !g) { free(f); free(s); free(g); return NAN; }
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++) f[idx[t * K + k]] += (double)E / ((double)K * T);
    double loss = 0;
    for (int t = 0; t < T; t++) {
        balance_scores(logits + (size_t)t * E, E, sigmoid, s);
        double S = 0, gs = 0;
        for (int i = 0; i < E; i++) S += s[i];
        for (int i = 0; i < E; i++) loss += alpha * f[i] * s[i] / S / T;
        if (!dlogits) continue;
        // dL/ds'_i = alpha f_i / T; through s' = s / S: dL/ds_k = (g_k - sum_i g_i s'_i) / S
        for (int i = 0; i < E; i++) gs += alpha * f[i] / T * s[i] / S;
        for (int k = 0; k < E; k++) g[k] = (alpha * f[k] / T - gs) / S;
        float *d = dlogits + (size_t)t * E;
        if (sigmoid) {
            for (int k = 0; k < E; k++) d[k] += (float)(g[k] * s[k] * (1.0 - s[k]));
        } else { // softmax Jacobian: ds_k/dl_j = s_k (delta_kj - s_j)
            double gsum = 0;
            for (int k = 0; k < E; k++) gsum += g[k] * s[k];
            for (int j = 0; j < E; j++) d[j] += (float)(s[j] * (g[j] - gsum));
        }
    }
    free(f); free(s); free(g);
    return (float)loss;
}
