// The pieces of a training run around the model's forward/backward: the optimizer step over
// a param_store, the run's settings and resumable state, and checkpoints (the HF model
// folder plus optimizer.safetensors and train_state.json) written so that an interrupted
// save is detected rather than resumed from.
#pragma once
#include <stdint.h>
#include "base/status.h"
#include "tensor/tensor.h"
#include "train/optim.h"
#include "train/params.h"

typedef struct {
    int steps;              // optimizer steps in the run
    int seq_len;            // tokens per sequence (T)
    int seqs_per_step;      // sequences per optimizer step (batch tokens / T)
    int micro_batch;        // sequences per forward/backward (gradient accumulation)
    lr_schedule sched;
    adamw_params adamw;
    float clip;             // global gradient-norm clip (0 = off)
    float mtp_weight;       // lambda
    float balance_alpha;    // alpha of the sequence-wise balance loss
    float bias_gamma;       // aux-loss-free bias step
    uint64_t seed;          // data order
    float val_frac;         // held-out fraction of sequences
    int val_every;          // steps between validations (0 = never)
    int val_seqs;           // validation sequences evaluated each time
    int save_every;         // steps between checkpoints (0 = only at the end)
    ds_dtype save_dtype;    // F32 or BF16 model files
} train_settings;

typedef struct {
    train_settings set;
    int step;               // optimizer steps completed
    int epoch;              // data loader position before step `step + 1`
    int64_t cursor;
    int n_data;
    char **data;            // data files (absolute or as given)
    int64_t data_tokens;    // corpus size and hash, to refuse resuming on other data
    uint64_t data_hash;
} train_state;

void train_state_free(train_state *s);

// Global L2 norm of every gradient (each shared tensor counted once).
double trainer_grad_norm(const param_store *ps);
// One AdamW step on every trainable tensor (not the routing bias); weight decay on 2-D
// tensors only. t is 1-based, grad_scale multiplies the gradients (clipping).
void trainer_adamw(param_store *ps, const adamw_params *hp, int t, float lr, float grad_scale);

// Peak f32 GEMM throughput of this machine with the current thread count, in FLOP/s
// (best of 11 OpenBLAS 1536^3 sgemm runs, ~0.5 s): the denominator of MFU.
// DS_PEAK_GFLOPS in the environment replaces the measurement.
double trainer_peak_flops(void);

// FNV-1a 64 of the token stream, for train_state's data check.
uint64_t trainer_hash_tokens(const int32_t *tok, int64_t n);

// Writes the checkpoint into dir: optimizer.safetensors (m, v, and the f32 master weights
// when the model is saved in BF16), the model (config.json + shards + index), tokenizer files
// copied from tok_dir (if it has them and tok_dir != dir), then train_state.json last, with a
// hash of every file it vouches for. Each file is written atomically.
ds_status trainer_save(const param_store *ps, const train_state *s, const char *dir, const char *tok_dir,
                       ds_error *err);
// Writes only the model (config.json, shards, index in `dtype`) and the tokenizer files of
// tok_dir: a folder for inference and shipping, without optimizer state.
ds_status trainer_save_model(const param_store *ps, const char *dir, ds_dtype dtype, const char *tok_dir,
                             ds_error *err);
// Reads dir/train_state.json, checks every file's hash, loads the params (f32 master weights)
// and the AdamW moments into *ps (allocated here) and the state into *s.
ds_status trainer_load(param_store *ps, train_state *s, const char *dir, ds_error *err);
