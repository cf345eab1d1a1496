// The tensors of a DeepSeek checkpoint in the Hugging Face layout (names, shapes, storage
// dtypes) and the writer of config.json + safetensors shards + index, shared by `init`
// (random values) and the trainer (its f32 master weights).
#pragma once
#include <stdint.h>
#include "model/config.h"
#include "tensor/tensor.h"

typedef enum { CKPT_INIT_NORMAL, CKPT_INIT_NORM_WEIGHT, CKPT_INIT_BIAS } ckpt_init_kind;

typedef struct {
    char name[192];
    char source[192];     // the tensor whose values this one holds: itself, or for the MTP
                          // layer's embed_tokens / shared_head.head copies the main tensor
    int ndim;
    int64_t shape[2];
    ckpt_init_kind kind;  // how `init` draws it
    float std;
    ds_dtype dtype;       // storage dtype; F8_E4M3 adds a `_scale_inv` tensor
    int is_matrix;        // a projection matrix (weight decay applies)
} ckpt_tensor;

typedef struct {
    ckpt_tensor *t;
    int n, cap;
} ckpt_list;

// Every tensor of the config, in checkpoint order (MTP layer included when configured).
// `mat` is the storage dtype of block matrices, `other` of everything else (the routing
// bias stays F32). Returns 0 when out of memory.
int ckpt_list_build(ckpt_list *l, const ds_config *c, ds_dtype mat, ds_dtype other);
void ckpt_list_free(ckpt_list *l);
int64_t ckpt_tensor_numel(const ckpt_tensor *t);

// Fills `out` (numel floats) with the values of tensor t.
typedef void (*ckpt_fill_fn)(void *ctx, const ckpt_tensor *t, float *out);

typedef struct {
    int64_t max_shard_bytes;  // 0 = 1 GiB; there are always at least 2 shards
    int progress;             // shard progress on stderr
    volatile int *cancel;     // polled between tensors
} ckpt_write_opts;

// Writes config.json, model-XXXXX-of-YYYYY.safetensors and model.safetensors.index.json into
// dir (created if needed), each file atomically.
ds_status ckpt_write(const ds_config *c, const ckpt_list *l, ckpt_fill_fn fill, void *ctx, const ckpt_write_opts *o,
                     const char *dir, ds_error *err);
