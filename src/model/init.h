// Random-weight checkpoints in the exact Hugging Face layout (deepseek init).
#pragma once
#include <stdint.h>
#include "model/checkpoint.h"
#include "model/config.h"
#include "tensor/tensor.h"

// Fills *c with a named preset; returns DS_ERR_ARG for an unknown name.
ds_status ds_preset_config(ds_config *c, const char *name, ds_error *err);
// Space-separated preset names, for help texts.
const char *ds_preset_names(void);

typedef enum { DS_INIT_F32 = 0, DS_INIT_BF16, DS_INIT_FP8 } ds_init_dtype;

typedef struct {
    ds_init_dtype dtype;
    uint64_t seed;
    int64_t max_shard_bytes;  // 0 = default (1 GiB, and always at least 2 shards)
    int progress;             // print progress to stderr
    volatile int *cancel;     // polled between tensors: non-zero stops with DS_ERR_INTERRUPTED
    int random_bias;          // random e_score_correction_bias (test fixtures: routing depends on
                              // it) instead of zeros (how training starts)
} ds_init_params;

// Writes config.json, model-XXXXX-of-YYYYY.safetensors shards and
// model.safetensors.index.json into dir (created if needed), including the MTP layer.
// Every file is written atomically; an interrupted run leaves only complete files.
ds_status ds_init_write(const ds_config *c, const ds_init_params *p, const char *dir, ds_error *err);

// The random values `init` gives tensor t for a seed (the trainer starts from the same).
void ds_init_fill_tensor(const ckpt_tensor *t, uint64_t seed, int random_bias, float *v);
