// Batched sampling for GRPO and evaluation: many completions of many prompts decoded
// together through one ds_engine, each sequence with its own latent cache and its own
// seeded sampler, so a decode step is one batched forward over every unfinished sequence.
#pragma once
#include <stdint.h>
#include "infer/sampler.h"
#include "model/engine.h"

typedef struct {
    int max_new;           // tokens generated per completion at most
    int prefill_chunk;     // tokens per prefill forward call
    sampler_params sp;     // temperature / top-p / ...; seed is the base of every sequence's stream
    int stop_ids[4];       // tokens that end a completion (included in it)
    int n_stop;
    int want_entropy;      // also record the entropy of every sampled token's distribution
} rollout_opts;

// Completion k (k = prompt * n_samples + sample): tokens[k * max_new ...], len[k] tokens, the
// last of which is a stop token when stopped[k].
typedef struct {
    int n;                 // prompts * samples
    int max_new;
    int32_t *tokens;       // (n, max_new)
    int *len;
    uint8_t *stopped;
    float *entropy;        // (n, max_new) with want_entropy, else NULL: the entropy in nats of the
                           // policy's next-token distribution (temperature 1, no top-p) at each
                           // completion token, where the sampler chose it
    int64_t generated;     // total completion tokens
    double seconds;
} rollout_result;

typedef struct rollout rollout;

// An engine sized for `max_seqs` sequences of up to max_prompt + max_new tokens.
ds_status rollout_create(rollout **r, const ds_model *m, int max_seqs, int max_prompt, const rollout_opts *o,
                         ds_error *err);
void rollout_free(rollout *r);

// Samples n_samples completions of each of n_prompts prompts (prompt p: ids[p], lens[p]
// tokens); n_prompts * n_samples <= max_seqs. Sequence k draws from its own stream seeded by
// (o->sp.seed + seed_offset, k), so a run is reproducible and independent of thread count.
// progress (may be NULL) is called after every decode step with tokens generated so far.
// cancel (may be NULL) is polled between steps: DS_ERR_INTERRUPTED.
ds_status rollout_run(rollout *r, const int *const *ids, const int *lens, int n_prompts, int n_samples,
                      uint64_t seed_offset, rollout_result *out, void (*progress)(void *ctx, int64_t done),
                      void *progress_ctx, volatile int *cancel, ds_error *err);
void rollout_result_free(rollout_result *res);
