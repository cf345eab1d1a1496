// Text generation shared by `run` and `chat`: prefill a token prompt into one sequence of the
// engine (reusing the cached common prefix), then sample and stream text until an
// end-of-sequence token or the length limit.
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include "infer/sampler.h"
#include "model/engine.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    int max_new;            // tokens to generate at most
    int batch;              // prefill tokens per forward call
    bool in_reasoning;      // output starts inside <think> (R1 generation prompt)
    bool color;             // dim the reasoning (terminal output)
} textgen_opts;

typedef struct {
    const ds_model *m;
    const ds_tokenizer *tok;
    ds_engine *e;
    sampler smp;
    int *cached;            // tokens in the sequence's cache (seq 0)
    int n_cached, cap_cached;
    int stop_ids[4];
    int n_stop;
    float *logits;          // (V)
    int *pos, *seq;         // (batch) scratch
    uint8_t *want;          // (batch)
} textgen;

typedef struct {
    int prompt_tokens, prefilled, generated;
    double prefill_s, decode_s;
    bool stopped;           // hit a stop token (vs the length limit or Ctrl-C)
} textgen_stats;

ds_status textgen_init(textgen *g, const ds_model *m, const ds_tokenizer *tok, int ctx, int batch,
                       const sampler_params *sp, ds_error *err);
void textgen_free(textgen *g);
// Generates a reply to `prompt` (the whole conversation so far); streams it to stdout and
// returns it in *reply (malloc'd, without the stop token).
ds_status textgen_run(textgen *g, const int *prompt, int n, const textgen_opts *o, char **reply, textgen_stats *st,
                      ds_error *err);
