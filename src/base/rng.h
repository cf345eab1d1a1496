// Deterministic random numbers (no global state): PCG32-style generator in a struct.
#pragma once
#include <stdint.h>

typedef struct { uint64_t state, inc; } ds_rng;

void ds_rng_seed(ds_rng *r, uint64_t seed, uint64_t stream);
uint32_t ds_rng_u32(ds_rng *r);
float ds_rng_uniform(ds_rng *r);   // [0, 1)
float ds_rng_normal(ds_rng *r);    // N(0, 1), Box-Muller
