// Model configuration from a Hugging Face config.json (deepseek_v3, deepseek_v2).
#pragma once
#include <stdbool.h>
#include "base/status.h"
#include "kernels/kernels.h"

typedef enum { DS_ARCH_DEEPSEEK_V3 = 0, DS_ARCH_DEEPSEEK_V2 } ds_arch;
typedef enum { DS_SCORE_SIGMOID = 0, DS_SCORE_SOFTMAX } ds_score_func;
typedef enum { DS_TOPK_NOAUX_TC = 0, DS_TOPK_GROUP_LIMITED_GREEDY, DS_TOPK_GREEDY } ds_topk_method;

typedef struct {
    ds_arch arch;
    int vocab_size;              // V
    int hidden_size;             // D
    int intermediate_size;       // I, dense MLP width
    int moe_intermediate_size;   // MI, routed expert width
    int num_hidden_layers;       // L
    int num_nextn_predict_layers;// MTP modules (0 = none)
    int num_attention_heads;     // H
    int num_key_value_heads;     // unused by MLA
    int n_shared_experts;        // S
    int n_routed_experts;        // E (0 = no MoE)
    int num_experts_per_tok;     // K
    int n_group, topk_group;
    float routed_scaling_factor;
    ds_score_func scoring_func;
    ds_topk_method topk_method;
    bool norm_topk_prob;
    int first_k_dense_replace;
    int moe_layer_freq;
    int q_lora_rank;             // dq, 0 = q_proj
    int kv_lora_rank;            // dc
    int qk_nope_head_dim;        // dn
    int qk_rope_head_dim;        // dr
    int v_head_dim;              // dv
    int max_position_embeddings;
    float rms_norm_eps;
    rope_params rope;
    int bos_token_id, eos_token_id;   // -1 when absent
    bool tie_word_embeddings;
    bool fp8;                    // quantization_config fp8 e4m3 128x128
} ds_config;

// Parses path/config.json. Errors name the key: "config.json: key 'hidden_size': expected a
// positive integer". Unknown model_type is rejected.
ds_status ds_config_load(ds_config *c, const char *dir, ds_error *err);
// Parses a JSON text (for tests); `where` names the source in messages.
ds_status ds_config_parse(ds_config *c, const char *json, const char *where, ds_error *err);
// Writes config.json (HF layout) atomically.
ds_status ds_config_save(const ds_config *c, const char *dir, ds_error *err);

static inline bool ds_config_layer_is_moe(const ds_config *c, int l) {
    return c->n_routed_experts > 0 && l >= c->first_k_dense_replace && l % c->moe_layer_freq == 0;
}
static inline int ds_config_qk_head_dim(const ds_config *c) { return c->qk_nope_head_dim + c->qk_rope_head_dim; }
// (dn+dr)^-0.5 * mscale^2
float ds_config_softmax_scale(const ds_config *c);
