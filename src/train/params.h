// Training parameters: f32 master weights of every checkpoint tensor in one slab, with
// gradient and AdamW moment slabs of the same layout (llm.c style: per-tensor pointers are
// views). The MTP layer's embed_tokens / shared_head.head are the main embedding / lm_head
// (physically shared, as in DeepSeek-V3 training) and are written as copies on save.
#pragma once
#include "model/checkpoint.h"
#include "model/model.h"

typedef struct {
    ds_config cfg;
    ckpt_list list;      // every checkpoint tensor
    int64_t *offset;     // per tensor: float offset in the slabs (copies point at their source)
    int64_t n;           // floats per slab
    float *params, *grads, *m, *v;
} param_store;

// Random values, identical to `deepseek init --seed seed` (f32, zero routing bias).
ds_status params_init_random(param_store *ps, const ds_config *c, uint64_t seed, ds_error *err);
// From a checkpoint folder (any stored dtype; validated like ds_model_load), dequantised to f32.
ds_status params_load(param_store *ps, const char *dir, ds_error *err);
// Writes the HF layout (config.json, shards, index) with matrices stored as `dtype`
// (F32 or BF16; FP8 is for released checkpoints, not training output).
ds_status params_save(const param_store *ps, const char *dir, ds_dtype dtype, volatile int *cancel, ds_error *err);
void params_free(param_store *ps);
// A ds_model whose f32 tensors are views of ps->params (no copy): the inference engine then
// samples from the weights being trained, seeing every optimizer step. Free it with
// ds_model_free before params_free.
ds_status params_model_view(const param_store *ps, ds_model *m, ds_error *err);

// Index of a tensor by HF name, -1 if absent.
int params_find(const param_store *ps, const char *name);
static inline float *params_data(const param_store *ps, int i) { return ps->params + ps->offset[i]; }
static inline float *params_grad(const param_store *ps, int i) { return ps->grads + ps->offset[i]; }
