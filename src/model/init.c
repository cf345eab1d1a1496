// deepseek init: presets and random-weight checkpoints in the HF layout.
//
// Scaling: matrices ~ N(0, 1/in) so every projection keeps unit variance; residual outputs
// (o_proj, down_proj) are further divided by sqrt(2L) so the stream stays bounded; norms are
// 1 + noise and the routing bias is non-zero so a dropped norm or a misused bias changes the
// logits; lm_head has std 3/sqrt(D), giving logits with a spread of a few units (neither
// uniform nor one-hot). The per-tensor std values live in the checkpoint tensor list
// (model/checkpoint.c); this file draws them.
#include "model/init.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "model/checkpoint.h"

// ---- presets -------------------------------------------------------------------------

static void preset_base_tiny(ds_config *c) {
    memset(c, 0, sizeof *c);
    c->arch = DS_ARCH_DEEPSEEK_V3;
    c->vocab_size = 256; c->hidden_size = 32; c->intermediate_size = 64; c->moe_intermediate_size = 16;
    c->num_hidden_layers = 4; c->num_nextn_predict_layers = 1; c->first_k_dense_replace = 1; c->moe_layer_freq = 1;
    c->num_attention_heads = 4; c->num_key_value_heads = 4;
    c->q_lora_rank = 16; c->kv_lora_rank = 16; c->qk_nope_head_dim = 8; c->qk_rope_head_dim = 8; c->v_head_dim = 8;
    c->n_routed_experts = 8; c->n_shared_experts = 1; c->num_experts_per_tok = 2; c->n_group = 4; c->topk_group = 2;
    c->routed_scaling_factor = 2.5f; c->scoring_func = DS_SCORE_SIGMOID; c->topk_method = DS_TOPK_NOAUX_TC;
    c->norm_topk_prob = true; c->max_position_embeddings = 256; c->rms_norm_eps = 1e-6f;
    c->rope = (rope_params){.dim = 8, .theta = 10000.0f, .yarn = 1, .factor = 4.0f, .orig_max_pos = 64,
                            .beta_fast = 32.0f, .beta_slow = 1.0f, .mscale = 1.0f, .mscale_all_dim = 1.0f};
    c->bos_token_id = 0; c->eos_token_id = 1;
}

static void preset_v2(ds_config *c, ds_topk_method method) {
    preset_base_tiny(c);
    c->arch = DS_ARCH_DEEPSEEK_V2;
    c->num_nextn_predict_layers = 0;
    c->q_lora_rank = 0;
    c->n_shared_experts = 2;
    c->scoring_func = DS_SCORE_SOFTMAX;
    c->topk_method = method;
    c->norm_topk_prob = false;
    c->routed_scaling_factor = 1.5f; // != 1 so a missed multiply fails the fixtures
    // One kept group of 2 experts for K = 2: with topk_group >= K the group limit could never
    // change a selection and the fixture would not test it.
    c->topk_group = 1;
    if (method == DS_TOPK_GREEDY) c->n_group = 1;
    c->rope.mscale = 0.707f;
    c->rope.mscale_all_dim = 0.707f;
}

static void preset_v3(ds_config *c, int V, int D, int I, int MI, int L, int H, int dq, int dc, int dn, int dr, int dv,
                      int E, int K, int G, int TG, int max_pos, int orig) {
    preset_base_tiny(c);
    c->vocab_size = V; c->hidden_size = D; c->intermediate_size = I; c->moe_intermediate_size = MI;
    c->num_hidden_layers = L; c->num_attention_heads = H; c->num_key_value_heads = H;
    c->q_lora_rank = dq; c->kv_lora_rank = dc; c->qk_nope_head_dim = dn; c->qk_rope_head_dim = dr; c->v_head_dim = dv;
    c->n_routed_experts = E; c->num_experts_per_tok = K; c->n_group = G; c->topk_group = TG;
    c->max_position_embeddings = max_pos;
    c->rope.dim = dr;
    c->rope.orig_max_pos = orig;
    c->rope.factor = (float)max_pos / (float)orig; // YaRN stretches the original window to max_pos
}

static const char *const preset_list = "tiny tiny-noq tiny-v2 tiny-v2-greedy small tiny-r1 bench-100m bench-1b";

const char *ds_preset_names(void) { return preset_list; }

ds_status ds_preset_config(ds_config *c, const char *name, ds_error *err) {
    if (strcmp(name, "tiny") == 0) preset_base_tiny(c);                       // ~100K params, every feature
    else if (strcmp(name, "tiny-noq") == 0) { preset_base_tiny(c); c->q_lora_rank = 0; }
    else if (strcmp(name, "tiny-v2") == 0) preset_v2(c, DS_TOPK_GROUP_LIMITED_GREEDY);
    else if (strcmp(name, "tiny-v2-greedy") == 0) preset_v2(c, DS_TOPK_GREEDY);
    else if (strcmp(name, "small") == 0)                                         // ~5M, quick training runs
        preset_v3(c, 8192, 128, 384, 64, 6, 4, 64, 32, 32, 16, 32, 16, 4, 4, 2, 1024, 256);
    else if (strcmp(name, "tiny-r1") == 0)                                       // ~5M (1.6M active): the shipped reasoner
        preset_v3(c, 512, 256, 768, 128, 4, 4, 128, 64, 32, 16, 32, 8, 2, 4, 2, 1024, 256);
    else if (strcmp(name, "bench-100m") == 0)                                    // ~100M, V3 proportions
        preset_v3(c, 32768, 512, 1536, 256, 8, 8, 192, 128, 64, 32, 64, 32, 4, 8, 4, 16384, 4096);
    else if (strcmp(name, "bench-1b") == 0)                                      // ~0.94B, V3 proportions
        preset_v3(c, 129280, 1024, 2816, 512, 12, 16, 384, 256, 64, 32, 64, 32, 4, 8, 4, 32768, 4096);
    else
        return ds_error_set(err, DS_ERR_ARG, "unknown preset '%s' (known: %s)", name, preset_list);
    return DS_OK;
}

// ---- random values -------------------------------------------------------------------------

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

// Values of one tensor in f32; chunks of 64K elements have their own RNG stream so the
// result does not depend on the thread count.
void ds_init_fill_tensor(const ckpt_tensor *t, uint64_t seed, int random_bias, float *v) {
    int64_t n = t->ndim == 1 ? t->shape[0] : t->shape[0] * t->shape[1];
    if (t->kind == CKPT_INIT_BIAS && !random_bias) {
        memset(v, 0, sizeof(float) * (size_t)n);
        return;
    }
    uint64_t h = name_hash(t->source);
    int64_t chunk = 65536, nchunks = (n + chunk - 1) / chunk;
    #pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nchunks; k++) {
        ds_rng r;
        ds_rng_seed(&r, seed ^ h, (uint64_t)k);
        int64_t end = (k + 1) * chunk < n ? (k + 1) * chunk : n;
        for (int64_t i = k * chunk; i < end; i++) {
            float z = ds_rng_normal(&r);
            // The bias is centred below zero so some biased scores are negative: then filling
            // masked groups with 0.0 instead of -inf would change selections (fixture advice).
            float mean = t->kind == CKPT_INIT_NORM_WEIGHT ? 1.0f : t->kind == CKPT_INIT_BIAS ? -0.6f : 0.0f;
            v[i] = mean + t->std * z;
        }
    }
}

static void init_fill(void *ctx, const ckpt_tensor *t, float *v) {
    const ds_init_params *p = ctx;
    ds_init_fill_tensor(t, p->seed, p->random_bias, v);
}

ds_status ds_init_write(const ds_config *c, const ds_init_params *p, const char *dir, ds_error *err) {
    ds_dtype mat = DS_F32, other = DS_F32;
    if (p->dtype == DS_INIT_BF16) mat = other = DS_BF16;
    if (p->dtype == DS_INIT_FP8) { mat = DS_F8_E4M3; other = DS_BF16; }
    ckpt_list l;
    if (!ckpt_list_build(&l, c, mat, other)) { ckpt_list_free(&l); return ds_error_set(err, DS_ERR_OOM, "out of memory"); }
    ckpt_write_opts o = {.max_shard_bytes = p->max_shard_bytes, .progress = p->progress, .cancel = p->cancel};
    ds_status st = ckpt_write(c, &l, init_fill, (void *)p, &o, dir, err);
    ckpt_list_free(&l);
    return st;
}
