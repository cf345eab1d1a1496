#include "base/rng.h"

#include <math.h>

void ds_rng_seed(ds_rng *r, uint64_t seed, uint64_t stream) {
    r->state = 0;
    r->inc = (stream << 1) | 1u;
    ds_rng_u32(r);
    r->state += seed;
    ds_rng_u32(r);
}

uint32_t ds_rng_u32(ds_rng *r) {
    uint64_t old = r->state;
    r->state = old * 6364136223846793005ULL + r->inc;
    uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    uint32_t rot = (uint32_t)(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((-rot) & 31));
}

float ds_rng_uniform(ds_rng *r) { return (float)(ds_rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

float ds_rng_normal(ds_rng *r) {
    float u1 = ((float)(ds_rng_u32(r) >> 8) + 0.5f) * (1.0f / 16777216.0f); // (0, 1)
    float u2 = ds_rng_uniform(r);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853071795864f * u2);
}
