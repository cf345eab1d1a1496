// RoPE with YaRN frequency blending (architecture page, sections 4.1-4.3).
// Rounding follows the official DeepSeek inference/model.py (PyTorch f32): inv_freq, the ramp
// and the blend in f32, the correction range in double (Python math), angles pos * inv_freq in
// f32, cos/sin in f32.
#include <math.h>

#include "kernels/kernels.h"

#define ROPE_PI 3.14159265358979323846 // Python math.pi

// Rotary dim index at which a wavelength makes `rotations` turns over the original context.
static double rope_corr_dim(double rotations, int dim, double base, double max_pos) {
    return dim * log(max_pos / (rotations * 2.0 * ROPE_PI)) / (2.0 * log(base));
}

void rope_inv_freq(float *inv_freq, const rope_params *p) {
    int half = p->dim / 2;
    for (int i = 0; i < half; i++)
        inv_freq[i] = 1.0f / powf(p->theta, (float)(2 * i) / (float)p->dim);
    if (!p->yarn) return;
    double low = floor(rope_corr_dim(p->beta_fast, p->dim, p->theta, p->orig_max_pos));
    double high = ceil(rope_corr_dim(p->beta_slow, p->dim, p->theta, p->orig_max_pos));
    if (low < 0) low = 0;
    if (high > p->dim - 1) high = p->dim - 1;
    if (low == high) high += 0.001;
    for (int i = 0; i < half; i++) {
        float ramp = ((float)i - (float)low) / (float)(high - low);
        ramp = ramp < 0.0f ? 0.0f : ramp > 1.0f ? 1.0f : ramp;
        float keep = 1.0f - ramp; // 1 = keep the original (high-frequency) component
        float f = inv_freq[i];
        inv_freq[i] = f / p->factor * (1.0f - keep) + f * keep;
    }
}

// get_mscale(s, m) = 1 if s <= 1 else 0.1 m ln(s) + 1
static double rope_get_mscale(double s, double m) { return s <= 1.0 ? 1.0 : 0.1 * m * log(s) + 1.0; }

float rope_softmax_mscale2(const rope_params *p) {
    if (!p->yarn) return 1.0f;
    double m = rope_get_mscale(p->factor, p->mscale_all_dim);
    return (float)(m * m);
}

float rope_cos_sin_mscale(const rope_params *p) {
    if (!p->yarn) return 1.0f;
    return (float)(rope_get_mscale(p->factor, p->mscale) / rope_get_mscale(p->factor, p->mscale_all_dim));
}

// Consecutive pairs (x[2i], x[2i+1]) as complex numbers times e^(j pos inv_freq[i]); NOT the
// NeoX half split, which is wrong on unpermuted HF weights (and invisible at position 0).
void rope_forward(float *x, int dim, int pos, const float *inv_freq, float mscale) {
    for (int i = 0; i < dim / 2; i++) {
        float angle = (float)pos * inv_freq[i];
        float c = cosf(angle) * mscale, s = sinf(angle) * mscale;
        float x0 = x[2 * i], x1 = x[2 * i + 1];
        x[2 * i] = x0 * c - x1 * s;
        x[2 * i + 1] = x0 * s + x1 * c;
    }
}
