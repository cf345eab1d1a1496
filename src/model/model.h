// Model weights: HF tensor names <-> structs, validated against config.json.
#pragma once
#include "io/model_dir.h"
#include "model/config.h"

// One transformer block (main layers and the MTP block share this layout).
typedef struct {
    const float *input_norm;      // (D)
    const float *post_norm;       // (D)
    // MLA
    ds_tensor q_a;                // (dq, D)          when q_lora_rank > 0
    const float *q_a_norm;        // (dq)
    ds_tensor q_b;                // (H*(dn+dr), dq)
    ds_tensor q;                  // (H*(dn+dr), D)   when q_lora_rank == 0
    ds_tensor kv_a;               // (dc+dr, D)       kv_a_proj_with_mqa
    const float *kv_a_norm;       // (dc)
    ds_tensor kv_b;               // (H*(dn+dv), dc)
    ds_tensor o;                  // (D, H*dv)
    // FFN: dense MLP or MoE
    int is_moe;
    ds_tensor gate, up, down;     // dense: (I, D), (I, D), (D, I)
    const float *router;          // (E, D) router weights in f32 (routing is precision-sensitive)
    const float *router_bias;     // (E) e_score_correction_bias, NULL unless noaux_tc
    ds_tensor *exp_gate, *exp_up, *exp_down; // E each: (MI, D), (MI, D), (D, MI)
    ds_tensor sh_gate, sh_up, sh_down;       // shared experts: (S*MI, D), (S*MI, D), (D, S*MI)
} ds_block;

// The MTP module at layer index num_hidden_layers (depth 1).
typedef struct {
    const float *enorm, *hnorm;   // (D)
    ds_tensor eh_proj;            // (D, 2D): [enorm(emb); hnorm(h)] -> D
    ds_block block;
    const float *head_norm;       // (D) shared_head.norm
    ds_tensor embed;              // (V, D) its own copy if present, else the main embedding
    ds_tensor head;               // (V, D) shared_head.head if present, else lm_head
} ds_mtp;

typedef struct {
    ds_config cfg;
    model_dir files;
    ds_tensor embed;              // (V, D)
    const float *final_norm;      // (D)
    ds_tensor lm_head;            // (V, D)
    ds_block *layers;             // L
    int has_mtp;
    ds_mtp mtp;
    // Buffers the model owns: f32 copies of norms/router/bias/scales stored in other dtypes
    // or unaligned in the file, and the expert tensor arrays. Freed with the model.
    void **allocs;
    int n_allocs, cap_allocs;
    void *gguf;                   // the mapped gguf_file when loaded from a .gguf file
} ds_model;

// Loads config.json and the safetensors, validates every tensor (presence, dtype, shape vs
// config, no unexpected tensors). The MTP layer is loaded when present. A path ending in
// ".gguf" is loaded as a llama.cpp deepseek2 file instead (model/gguf_model.h).
ds_status ds_model_load(ds_model *m, const char *dir, ds_error *err);
void ds_model_free(ds_model *m);
// The same binding and validation over tensors already opened in *files (taken over by the
// model, also on failure) with config *cfg: a model that reads weights someone else owns.
ds_status ds_model_bind(ds_model *m, const ds_config *cfg, model_dir *files, ds_error *err);
// A zeroed buffer the model owns (freed with it); NULL when out of memory.
void *ds_model_alloc(ds_model *m, size_t bytes);

// Re-encodes the model's matrices (attention but kv_b, MLP, experts, shared experts, lm_head,
// the MTP block and eh_proj; not the embedding, norms or router) as Q8_0 or Q4_0 (regrouped to
// Q4_0X8 for the decode kernel where rows come in eights) in owned buffers,
// rounding like llama.cpp's reference quantizers. Matrices whose columns are not a multiple of
// 32 stay as stored. *n_quantized (may be NULL) receives the number re-encoded.
ds_status ds_model_quantize(ds_model *m, ds_dtype q, int progress, int *n_quantized, ds_error *err);

// Regroups a Q4_0 matrix whose rows are a multiple of 8 into Q4_0X8 (the decode kernel's
// layout) in a buffer the model owns; other tensors are left alone.
ds_status ds_model_regroup_q4(ds_model *m, ds_tensor *t, ds_error *err);

// Parameter counts (main model; MTP unique params separately) and bytes of weights read for
// one decoded token (active experts only).
typedef struct {
    int64_t total_params, mtp_params, active_params;
    int64_t weight_bytes, active_weight_bytes;
} ds_model_stats;
void ds_model_get_stats(const ds_model *m, ds_model_stats *st);
