// Integer dot products of Q8_0 / Q4_0 weight rows with activations quantized per block
// (act_q8): sum over blocks of d_w * d_x * sum_j q_w[j] * q_x[j], the sum exact in int32.
// Portable C here; AVX2 versions in dot_avx2.c compute the same integers.
#include <math.h>
#include <string.h>

#include "kernels/dot_avx2.h"
#include "tensor/tensor.h"

static inline float ld_f16s(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return ds_f16_to_f32(h);
}

void act_quantize_portable(const float *x, act_q8 *y, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, x += 32, y++) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        y->d = amax / 127.0f;
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < 32; j++) sum += y->q[j] = (int8_t)lrintf(x[j] * id);
        y->s8 = 8.0f * y->d * (float)sum;
    }
}

float dot_q8_0_portable(const void *w, const act_q8 *x, int64_t nb) {
    const uint8_t *p = w;
    float total = 0.0f;
    for (int64_t b = 0; b < nb; b++, p += 34) {
        int32_t s = 0;
        for (int j = 0; j < 32; j++) s += (int32_t)(int8_t)p[2 + j] * x[b].q[j];
        total += ld_f16s(p) * x[b].d * (float)s;
    }
    return total;
}

float dot_q4_0_portable(const void *w, const act_q8 *x, int64_t nb) {
    const uint8_t *p = w;
    float total = 0.0f;
    for (int64_t b = 0; b < nb; b++, p += 18) {
        int32_t s = 0;
        for (int j = 0; j < 16; j++) {
            s += ((p[2 + j] & 15) - 8) * x[b].q[j];
            s += ((p[2 + j] >> 4) - 8) * x[b].q[j + 16];
        }
        total += ld_f16s(p) * x[b].d * (float)s;
    }
    return total;
}

void dot8_q4_0x8_portable(const void *grp, const act_q8 *x, int64_t nb, float *out) {
    const uint8_t *p = grp;
    float acc[8] = {0};
    for (int64_t b = 0; b < nb; b++, p += 144) {
        int32_t s[8] = {0};
        for (int k = 0; k < 8; k++)
            for (int m = 0; m < 16; m++) {
                int v = p[16 + 16 * k + m], q = x[b].q[4 * k + m % 4];
                s[m / 4] += ((v & 15) - 8) * q;
                s[4 + m / 4] += ((v >> 4) - 8) * q;
            }
        for (int lane = 0; lane < 8; lane++) acc[lane] += ld_f16s(p + 2 * lane) * x[b].d * (float)s[lane];
    }
    for (int lane = 0; lane < 8; lane++) out[lane] = acc[lane];
}
