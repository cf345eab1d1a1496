// HF checkpoint <-> GGUF "deepseek2" (facts and sources: docs/gguf-deepseek2.md).
#include "model/gguf_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fileutil.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

#define ARCH "deepseek2"

int gguf_model_is_path(const char *path) {
    size_t n = strlen(path);
    return n > 5 && strcmp(path + n - 5, ".gguf") == 0;
}

static int gguf_type_of(ds_dtype t) {
    switch (t) {
    case DS_F32: return GGUF_TYPE_F32;
    case DS_F16: return GGUF_TYPE_F16;
    case DS_BF16: return GGUF_TYPE_BF16;
    case DS_Q8_0: return GGUF_TYPE_Q8_0;
    case DS_Q4_0: return GGUF_TYPE_Q4_0;
    default: return -1;
    }
}

// ---- export ------------------------------------------------------------------------------

typedef struct {
    gguf_writer w;
    void **bufs;        // tensor bytes, alive until gguf_write is done
    int n_bufs, cap_bufs;
    ds_error *err;
    ds_status st;
} exporter;

static void *ex_alloc(exporter *ex, size_t bytes) {
    if (ex->st) return NULL;
    if (ex->n_bufs == ex->cap_bufs) {
        int cap = ex->cap_bufs ? 2 * ex->cap_bufs : 256;
        void **p = realloc(ex->bufs, sizeof *p * (size_t)cap);
        if (!p) { ex->st = ds_error_set(ex->err, DS_ERR_OOM, "out of memory"); return NULL; }
        ex->bufs = p;
        ex->cap_bufs = cap;
    }
    void *b = malloc(bytes ? bytes : 1);
    if (!b) { ex->st = ds_error_set(ex->err, DS_ERR_OOM, "out of memory for %zu bytes", bytes); return NULL; }
    ex->bufs[ex->n_bufs++] = b;
    return b;
}

static void row_encode(ds_dtype t, const float *x, uint8_t *out, int64_t n) {
    switch (t) {
    case DS_F32: memcpy(out, x, sizeof(float) * (size_t)n); break;
    case DS_F16:
        for (int64_t i = 0; i < n; i++) { uint16_t h = ds_f32_to_f16(x[i]); memcpy(out + 2 * i, &h, 2); }
        break;
    case DS_BF16:
        for (int64_t i = 0; i < n; i++) { uint16_t h = ds_f32_to_bf16(x[i]); memcpy(out + 2 * i, &h, 2); }
        break;
    default: ds_quantize_row(t, x, out, n); break;
    }
}

// A stack of `n` matrices (rows, cols) as one GGUF tensor {cols, rows, n} (n == 0: a plain
// matrix {cols, rows}), encoded as `want` (F32 when cols is not a multiple of its block).
// get_row(ctx, k, r, out) supplies row r of matrix k in f32.
typedef void (*row_fn)(const void *ctx, int64_t k, int64_t r, float *out);

static void ex_tensor(exporter *ex, const char *name, ds_dtype want, int64_t n, int64_t rows, int64_t cols,
                      row_fn get_row, const void *ctx) {
    if (ex->st) return;
    ds_dtype t = cols % ds_dtype_block(want) == 0 ? want : DS_F32;
    int64_t rb = ds_dtype_row_bytes(t, cols), nm = n > 0 ? n : 1;
    uint8_t *buf = ex_alloc(ex, (size_t)(nm * rows * rb));
    float *row = malloc(sizeof(float) * (size_t)(cols ? cols : 1));
    if (!buf || !row) {
        free(row);
        if (!ex->st) ex->st = ds_error_set(ex->err, DS_ERR_OOM, "out of memory");
        return;
    }
    for (int64_t k = 0; k < nm; k++)
        for (int64_t r = 0; r < rows; r++) {
            get_row(ctx, k, r, row);
            row_encode(t, row, buf + (k * rows + r) * rb, cols);
        }
    free(row);
    int64_t dims[3] = {cols, rows, n};
    gguf_writer_add_tensor(&ex->w, name, gguf_type_of(t), n > 0 ? 3 : 2, dims, buf);
}

static void rows_of_tensor(const void *ctx, int64_t k, int64_t r, float *out) {
    (void)k;
    ds_tensor_row_to_f32(ctx, r, out);
}
static void rows_of_experts(const void *ctx, int64_t k, int64_t r, float *out) {
    ds_tensor_row_to_f32((const ds_tensor *)ctx + k, r, out);
}

static void ex_matrix(exporter *ex, const char *name, const ds_tensor *t, ds_dtype want) {
    ex_tensor(ex, name, want, 0, ds_tensor_rows(t), ds_tensor_cols(t), rows_of_tensor, t);
}

static void ex_vector(exporter *ex, const char *name, const float *v, int64_t n) {
    if (ex->st) return;
    float *buf = ex_alloc(ex, sizeof(float) * (size_t)n);
    if (!buf) return;
    memcpy(buf, v, sizeof(float) * (size_t)n);
    gguf_writer_add_tensor(&ex->w, name, GGUF_TYPE_F32, 1, &n, buf);
}

// kv_b (H*(dn+dv), dc) -> attn_k_b {dn, dc, H} (per head W_UK transposed) and attn_v_b
// {dc, dv, H} (per head W_UV as is).
typedef struct { const float *kvb; int64_t dn, dv, dc; } kvb_ctx;
static void rows_of_kb(const void *vc, int64_t h, int64_t c, float *out) {
    const kvb_ctx *k = vc;
    for (int64_t d = 0; d < k->dn; d++) out[d] = k->kvb[(h * (k->dn + k->dv) + d) * k->dc + c];
}
static void rows_of_vb(const void *vc, int64_t h, int64_t v, float *out) {
    const kvb_ctx *k = vc;
    memcpy(out, k->kvb + (h * (k->dn + k->dv) + k->dn + v) * k->dc, sizeof(float) * (size_t)k->dc);
}

static void ex_block(exporter *ex, const ds_config *c, int l, const ds_block *b, ds_dtype q) {
    char n[96];
    int64_t D = c->hidden_size, H = c->num_attention_heads, dn = c->qk_nope_head_dim, dv = c->v_head_dim;
    int64_t dc = c->kv_lora_rank, E = c->n_routed_experts, MI = c->moe_intermediate_size;
#define NM(fmt) (snprintf(n, sizeof n, "blk.%d." fmt, l), n)
    ex_vector(ex, NM("attn_norm.weight"), b->input_norm, D);
    if (c->q_lora_rank > 0) {
        ex_matrix(ex, NM("attn_q_a.weight"), &b->q_a, q);
        ex_vector(ex, NM("attn_q_a_norm.weight"), b->q_a_norm, c->q_lora_rank);
        ex_matrix(ex, NM("attn_q_b.weight"), &b->q_b, q);
    } else {
        ex_matrix(ex, NM("attn_q.weight"), &b->q, q);
    }
    ex_matrix(ex, NM("attn_kv_a_mqa.weight"), &b->kv_a, q);
    ex_vector(ex, NM("attn_kv_a_norm.weight"), b->kv_a_norm, dc);
    float *kvb = ex->st ? NULL : ex_alloc(ex, sizeof(float) * (size_t)(H * (dn + dv) * dc));
    if (kvb) {
        ds_tensor_rows_to_f32(&b->kv_b, 0, H * (dn + dv), kvb);
        kvb_ctx k = {kvb, dn, dv, dc};
        ex_tensor(ex, NM("attn_k_b.weight"), q, H, dc, dn, rows_of_kb, &k);
        ex_tensor(ex, NM("attn_v_b.weight"), q, H, dv, dc, rows_of_vb, &k);
    }
    ex_matrix(ex, NM("attn_output.weight"), &b->o, q);
    ex_vector(ex, NM("ffn_norm.weight"), b->post_norm, D);
    if (!b->is_moe) {
        ex_matrix(ex, NM("ffn_gate.weight"), &b->gate, q);
        ex_matrix(ex, NM("ffn_up.weight"), &b->up, q);
        ex_matrix(ex, NM("ffn_down.weight"), &b->down, q);
        return;
    }
    if (!ex->st) { // the router stays F32 (llama.cpp never quantizes it)
        float *r = ex_alloc(ex, sizeof(float) * (size_t)(E * D));
        if (r) {
            memcpy(r, b->router, sizeof(float) * (size_t)(E * D));
            int64_t dims[2] = {D, E};
            gguf_writer_add_tensor(&ex->w, NM("ffn_gate_inp.weight"), GGUF_TYPE_F32, 2, dims, r);
        }
    }
    if (b->router_bias) ex_vector(ex, NM("exp_probs_b.bias"), b->router_bias, E);
    ex_tensor(ex, NM("ffn_gate_exps.weight"), q, E, MI, D, rows_of_experts, b->exp_gate);
    ex_tensor(ex, NM("ffn_up_exps.weight"), q, E, MI, D, rows_of_experts, b->exp_up);
    ex_tensor(ex, NM("ffn_down_exps.weight"), q, E, D, MI, rows_of_experts, b->exp_down);
    if (c->n_shared_experts > 0) {
        ex_matrix(ex, NM("ffn_gate_shexp.weight"), &b->sh_gate, q);
        ex_matrix(ex, NM("ffn_up_shexp.weight"), &b->sh_up, q);
        ex_matrix(ex, NM("ffn_down_shexp.weight"), &b->sh_down, q);
    }
#undef NM
}

static ds_status ex_metadata(exporter *ex, const ds_config *c, const char *name, ds_dtype q, ds_error *err) {
    gguf_writer *w = &ex->w;
    if (c->moe_layer_freq != 1 && c->n_routed_experts > 0)
        return ds_error_set(err, DS_ERR_ARG, "moe_layer_freq %d cannot be expressed in GGUF (llama.cpp: MoE from "
                                             "leading_dense_block_count on)", c->moe_layer_freq);
    if (c->rope.yarn && fabsf(c->rope.mscale - c->rope.mscale_all_dim) > 1e-6f && c->rope.mscale != 1.0f)
        return ds_error_set(err, DS_ERR_ARG, "rope_scaling mscale %g != mscale_all_dim %g cannot be expressed in GGUF",
                            c->rope.mscale, c->rope.mscale_all_dim);
    if (c->q_lora_rank > 0 && (c->num_hidden_layers == 26 || c->num_hidden_layers == 27))
        return ds_error_set(err, DS_ERR_ARG, "llama.cpp treats %d-layer deepseek2 models as V2-Lite (no q LoRA); "
                                             "this model has q_lora_rank %d", c->num_hidden_layers, c->q_lora_rank);
    static const uint32_t file_type[DS_DTYPE_COUNT] = {0, 32, 1, 0, 7, 2};
    gguf_writer_add_string(w, "general.architecture", ARCH);
    gguf_writer_add_string(w, "general.name", name);
    gguf_writer_add_u32(w, "general.file_type", file_type[q]);
    gguf_writer_add_u32(w, "general.quantization_version", 2);
    gguf_writer_add_u32(w, ARCH ".context_length", (uint32_t)c->max_position_embeddings);
    gguf_writer_add_u32(w, ARCH ".embedding_length", (uint32_t)c->hidden_size);
    gguf_writer_add_u32(w, ARCH ".block_count", (uint32_t)c->num_hidden_layers);
    gguf_writer_add_u32(w, ARCH ".feed_forward_length", (uint32_t)c->intermediate_size);
    gguf_writer_add_u32(w, ARCH ".attention.head_count", (uint32_t)c->num_attention_heads);
    gguf_writer_add_u32(w, ARCH ".attention.head_count_kv", 1); // MLA: one latent "head"
    gguf_writer_add_f32(w, ARCH ".rope.freq_base", c->rope.theta);
    gguf_writer_add_f32(w, ARCH ".attention.layer_norm_rms_epsilon", c->rms_norm_eps);
    gguf_writer_add_u32(w, ARCH ".leading_dense_block_count",
                        (uint32_t)(c->n_routed_experts > 0 ? c->first_k_dense_replace : c->num_hidden_layers));
    gguf_writer_add_u32(w, ARCH ".vocab_size", (uint32_t)c->vocab_size);
    gguf_writer_add_u32(w, ARCH ".attention.q_lora_rank", (uint32_t)c->q_lora_rank);
    gguf_writer_add_u32(w, ARCH ".attention.kv_lora_rank", (uint32_t)c->kv_lora_rank);
    gguf_writer_add_u32(w, ARCH ".attention.key_length", (uint32_t)(c->kv_lora_rank + c->qk_rope_head_dim));
    gguf_writer_add_u32(w, ARCH ".attention.value_length", (uint32_t)c->kv_lora_rank);
    gguf_writer_add_u32(w, ARCH ".attention.key_length_mla", (uint32_t)ds_config_qk_head_dim(c));
    gguf_writer_add_u32(w, ARCH ".attention.value_length_mla", (uint32_t)c->v_head_dim);
    gguf_writer_add_u32(w, ARCH ".rope.dimension_count", (uint32_t)c->qk_rope_head_dim);
    if (c->n_routed_experts > 0) {
        gguf_writer_add_u32(w, ARCH ".expert_count", (uint32_t)c->n_routed_experts);
        gguf_writer_add_u32(w, ARCH ".expert_used_count", (uint32_t)c->num_experts_per_tok);
        gguf_writer_add_u32(w, ARCH ".expert_feed_forward_length", (uint32_t)c->moe_intermediate_size);
        gguf_writer_add_u32(w, ARCH ".expert_shared_count", (uint32_t)c->n_shared_experts);
        gguf_writer_add_f32(w, ARCH ".expert_weights_scale", c->routed_scaling_factor);
        gguf_writer_add_bool(w, ARCH ".expert_weights_norm", c->norm_topk_prob);
        gguf_writer_add_u32(w, ARCH ".expert_gating_func", c->scoring_func == DS_SCORE_SIGMOID ? 2 : 1);
        // llama.cpp requires 0 < used < groups; the limit is a no-op otherwise.
        if (c->topk_method != DS_TOPK_GREEDY && c->n_group > 1 && c->topk_group < c->n_group) {
            gguf_writer_add_u32(w, ARCH ".expert_group_count", (uint32_t)c->n_group);
            gguf_writer_add_u32(w, ARCH ".expert_group_used_count", (uint32_t)c->topk_group);
        }
    } else {
        gguf_writer_add_u32(w, ARCH ".expert_feed_forward_length", 0);
        gguf_writer_add_u32(w, ARCH ".expert_shared_count", 0);
    }
    if (c->rope.yarn) {
        gguf_writer_add_string(w, ARCH ".rope.scaling.type", "yarn");
        gguf_writer_add_f32(w, ARCH ".rope.scaling.factor", c->rope.factor);
        gguf_writer_add_u32(w, ARCH ".rope.scaling.original_context_length", (uint32_t)c->rope.orig_max_pos);
        gguf_writer_add_f32(w, ARCH ".rope.scaling.yarn_log_multiplier", 0.1f * c->rope.mscale_all_dim);
        gguf_writer_add_f32(w, ARCH ".rope.scaling.yarn_beta_fast", c->rope.beta_fast);
        gguf_writer_add_f32(w, ARCH ".rope.scaling.yarn_beta_slow", c->rope.beta_slow);
    } else {
        gguf_writer_add_string(w, ARCH ".rope.scaling.type", "none");
    }
    return DS_OK;
}

ds_status gguf_model_export(const char *dir, const char *path, const gguf_export_opts *o, ds_error *err) {
    ds_dtype q = o->type;
    if (gguf_type_of(q) < 0)
        return ds_error_set(err, DS_ERR_ARG, "GGUF export type must be F32, F16, BF16, Q8_0 or Q4_0, not %s", ds_dtype_name(q));
    ds_model m;
    ds_status st = ds_model_load(&m, dir, err);
    if (st) return st;
    const ds_config *c = &m.cfg;
    exporter ex = {.err = err};
    gguf_writer_init(&ex.w);
    const char *name = o->name;
    if (!name) {
        const char *s = strrchr(dir, '/');
        name = s && s[1] ? s + 1 : dir;
    }
    st = ex_metadata(&ex, c, name, q, err);
    if (!st && o->tok_dir) {
        char *tj = file_join(o->tok_dir, "tokenizer.json");
        FILE *probe = tj ? fopen(tj, "rb") : NULL;
        free(tj);
        if (probe) { // without a tokenizer the file runs here but not in llama.cpp
            fclose(probe);
            st = tokenizer_gguf_write(&ex.w, o->tok_dir, c->vocab_size, err);
        } else {
            fprintf(stderr, "convert: %s has no tokenizer.json: the GGUF gets no vocabulary (llama.cpp will not load it)\n",
                    o->tok_dir);
        }
    }
    ex.st = st;
    ex_matrix(&ex, "token_embd.weight", &m.embed, q);
    ex_vector(&ex, "output_norm.weight", m.final_norm, c->hidden_size);
    if (m.lm_head.data != m.embed.data) ex_matrix(&ex, "output.weight", &m.lm_head, q);
    for (int l = 0; !ex.st && l < c->num_hidden_layers; l++) {
        ex_block(&ex, c, l, &m.layers[l], q);
        if (o->progress) fprintf(stderr, "\rconvert: layer %d/%d", l + 1, c->num_hidden_layers);
    }
    if (o->progress) fprintf(stderr, "\n");
    st = ex.st;
    if (!st) st = gguf_write(path, &ex.w, err);
    gguf_writer_free(&ex.w);
    for (int i = 0; i < ex.n_bufs; i++) free(ex.bufs[i]);
    free(ex.bufs);
    ds_model_free(&m);
    return st;
}

// ---- load --------------------------------------------------------------------------------

typedef struct {
    ds_model *m;
    gguf_file *f;
    ds_error *err;
    char name[96];
} gloader;

static ds_status g_u32(gloader *g, const char *key, int required, int def, int *out) {
    uint32_t v;
    if (!gguf_find_kv(g->f, key)) {
        if (required) return ds_error_set(g->err, DS_ERR_FORMAT, "%s: missing key '%s'", g->f->path, key);
        *out = def;
        return DS_OK;
    }
    ds_status st = gguf_get_u32(g->f, key, &v, g->err);
    if (!st && v > (1u << 30)) st = ds_error_set(g->err, DS_ERR_FORMAT, "%s: key '%s' = %u is out of range", g->f->path, key, v);
    if (!st) *out = (int)v;
    return st;
}

static ds_status g_f32(gloader *g, const char *key, float def, float *out) {
    if (!gguf_find_kv(g->f, key)) { *out = def; return DS_OK; }
    return gguf_get_f32(g->f, key, out, g->err);
}

#define GTRY(x) do { ds_status s_ = (x); if (s_) return s_; } while (0)

static ds_status g_config(gloader *g, ds_config *c) {
    gguf_file *f = g->f;
    const char *arch;
    size_t alen;
    GTRY(gguf_get_string(f, "general.architecture", &arch, &alen, g->err));
    if (alen != strlen(ARCH) || memcmp(arch, ARCH, alen) != 0)
        return ds_error_set(g->err, DS_ERR_FORMAT, "%s: general.architecture is '%.*s', not '" ARCH "'", f->path,
                            (int)(alen > 40 ? 40 : alen), arch);
    memset(c, 0, sizeof *c);
    int nextn, kl_mla, vl_mla, gating, used_groups;
    GTRY(g_u32(g, ARCH ".context_length", 1, 0, &c->max_position_embeddings));
    GTRY(g_u32(g, ARCH ".embedding_length", 1, 0, &c->hidden_size));
    GTRY(g_u32(g, ARCH ".block_count", 1, 0, &c->num_hidden_layers));
    GTRY(g_u32(g, ARCH ".nextn_predict_layers", 0, 0, &nextn));
    c->num_hidden_layers -= nextn; // the MTP block is not loaded from GGUF
    GTRY(g_u32(g, ARCH ".feed_forward_length", 0, 0, &c->intermediate_size));
    GTRY(g_u32(g, ARCH ".attention.head_count", 1, 0, &c->num_attention_heads));
    c->num_key_value_heads = c->num_attention_heads;
    GTRY(g_f32(g, ARCH ".attention.layer_norm_rms_epsilon", 1e-6f, &c->rms_norm_eps));
    GTRY(g_f32(g, ARCH ".rope.freq_base", 10000.0f, &c->rope.theta));
    GTRY(g_u32(g, ARCH ".attention.q_lora_rank", 0, 0, &c->q_lora_rank));
    GTRY(g_u32(g, ARCH ".attention.kv_lora_rank", 1, 0, &c->kv_lora_rank));
    GTRY(g_u32(g, ARCH ".rope.dimension_count", 1, 0, &c->qk_rope_head_dim));
    GTRY(g_u32(g, ARCH ".attention.key_length_mla", 0, 0, &kl_mla));
    GTRY(g_u32(g, ARCH ".attention.value_length_mla", 0, 0, &vl_mla));
    if (!kl_mla || !vl_mla) { // legacy files: key/value lengths are the per-head ones
        GTRY(g_u32(g, ARCH ".attention.key_length", 1, 0, &kl_mla));
        GTRY(g_u32(g, ARCH ".attention.value_length", 1, 0, &vl_mla));
    }
    c->qk_nope_head_dim = kl_mla - c->qk_rope_head_dim;
    c->v_head_dim = vl_mla;
    GTRY(g_u32(g, ARCH ".expert_count", 0, 0, &c->n_routed_experts));
    GTRY(g_u32(g, ARCH ".expert_used_count", 0, 0, &c->num_experts_per_tok));
    GTRY(g_u32(g, ARCH ".expert_feed_forward_length", 0, 0, &c->moe_intermediate_size));
    GTRY(g_u32(g, ARCH ".expert_shared_count", 0, 0, &c->n_shared_experts));
    GTRY(g_u32(g, ARCH ".leading_dense_block_count", 0, 0, &c->first_k_dense_replace));
    GTRY(g_f32(g, ARCH ".expert_weights_scale", 1.0f, &c->routed_scaling_factor));
    if (c->routed_scaling_factor == 0.0f) c->routed_scaling_factor = 1.0f; // 0 = no scaling
    bool norm = false;
    if (gguf_find_kv(f, ARCH ".expert_weights_norm")) GTRY(gguf_get_bool(f, ARCH ".expert_weights_norm", &norm, g->err));
    c->norm_topk_prob = norm;
    GTRY(g_u32(g, ARCH ".expert_gating_func", 0, 1, &gating));
    c->scoring_func = gating == 2 ? DS_SCORE_SIGMOID : DS_SCORE_SOFTMAX;
    GTRY(g_u32(g, ARCH ".expert_group_count", 0, 1, &c->n_group));
    GTRY(g_u32(g, ARCH ".expert_group_used_count", 0, 0, &used_groups));
    if (c->n_group < 1) c->n_group = 1;
    c->topk_group = used_groups > 0 ? used_groups : c->n_group;
    c->moe_layer_freq = 1;
    int has_bias = 0;
    for (int l = 0; l < c->num_hidden_layers && !has_bias; l++) {
        snprintf(g->name, sizeof g->name, "blk.%d.exp_probs_b.bias", l);
        has_bias = gguf_find_tensor(f, g->name) != NULL;
    }
    // llama.cpp routes every group limit by the top-2 sum (V3's rule); V2's max rule has no key.
    c->topk_method = has_bias ? DS_TOPK_NOAUX_TC : c->n_group > 1 ? DS_TOPK_GROUP_LIMITED_GREEDY : DS_TOPK_GREEDY;
    c->arch = has_bias ? DS_ARCH_DEEPSEEK_V3 : DS_ARCH_DEEPSEEK_V2;
    const gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
    if (!emb || emb->n_dims != 2) return ds_error_set(g->err, DS_ERR_FORMAT, "%s: missing 2-D tensor 'token_embd.weight'", f->path);
    c->vocab_size = (int)emb->dims[1];
    c->tie_word_embeddings = gguf_find_tensor(f, "output.weight") == NULL;
    c->rope.dim = c->qk_rope_head_dim;
    c->rope.beta_fast = 32.0f;
    c->rope.beta_slow = 1.0f;
    c->rope.mscale = c->rope.mscale_all_dim = 1.0f;
    c->rope.factor = 1.0f;
    const char *rs;
    size_t rlen;
    if (gguf_find_kv(f, ARCH ".rope.scaling.type")) {
        GTRY(gguf_get_string(f, ARCH ".rope.scaling.type", &rs, &rlen, g->err));
        if (rlen == 4 && !memcmp(rs, "yarn", 4)) {
            float mul;
            c->rope.yarn = 1;
            GTRY(g_f32(g, ARCH ".rope.scaling.factor", 1.0f, &c->rope.factor));
            GTRY(g_u32(g, ARCH ".rope.scaling.original_context_length", 0, c->max_position_embeddings, &c->rope.orig_max_pos));
            GTRY(g_f32(g, ARCH ".rope.scaling.yarn_log_multiplier", 0.0f, &mul));
            // llama.cpp: mscale_all_dim = multiplier / 0.1, and mscale assumed equal to it
            c->rope.mscale_all_dim = c->rope.mscale = mul / 0.1f;
        }
    }
    int bos = -1, eos = -1;
    GTRY(g_u32(g, "tokenizer.ggml.bos_token_id", 0, -1, &bos));
    GTRY(g_u32(g, "tokenizer.ggml.eos_token_id", 0, -1, &eos));
    c->bos_token_id = bos;
    c->eos_token_id = eos;
    if (c->num_hidden_layers < 1 || c->hidden_size < 1 || c->num_attention_heads < 1 || c->kv_lora_rank < 1 ||
        c->qk_nope_head_dim < 0 || c->v_head_dim < 1 || c->qk_rope_head_dim < 2 || c->qk_rope_head_dim % 2 ||
        c->vocab_size < 1 || (c->n_routed_experts > 0 && (c->num_experts_per_tok < 1 ||
                                                            c->num_experts_per_tok > c->n_routed_experts ||
                                                            c->n_routed_experts % c->n_group)))
        return ds_error_set(g->err, DS_ERR_FORMAT, "%s: inconsistent deepseek2 hyperparameters", f->path);
    return DS_OK;
}

static ds_dtype dtype_of_gguf(int t) {
    switch (t) {
    case GGUF_TYPE_F32: return DS_F32;
    case GGUF_TYPE_F16: return DS_F16;
    case GGUF_TYPE_BF16: return DS_BF16;
    case GGUF_TYPE_Q8_0: return DS_Q8_0;
    case GGUF_TYPE_Q4_0: return DS_Q4_0;
    default: return DS_DTYPE_COUNT;
    }
}

void gguf_kquant_to_f32(int type, const void *in, float *out, int64_t n) {
    const uint8_t *p = in;
    for (int64_t b = 0; b < n / 256; b++, out += 256) {
        if (type == GGUF_TYPE_Q4_K) {
            uint16_t hd, hm;
            memcpy(&hd, p, 2);
            memcpy(&hm, p + 2, 2);
            float d = ds_f16_to_f32(hd), dmin = ds_f16_to_f32(hm);
            const uint8_t *sc = p + 4, *qs = p + 16;
            for (int j = 0; j < 8; j++) {
                int s, m;
                if (j < 4) { s = sc[j] & 63; m = sc[j + 4] & 63; }
                else { s = (sc[j + 4] & 15) | ((sc[j - 4] >> 6) << 4); m = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4); }
                const uint8_t *q = qs + 32 * (j / 2);
                for (int l = 0; l < 32; l++) {
                    int v = j % 2 ? q[l] >> 4 : q[l] & 15;
                    out[32 * j + l] = d * (float)s * (float)v - dmin * (float)m;
                }
            }
            p += 144;
        } else { // Q6_K
            const uint8_t *ql = p, *qh = p + 128;
            const int8_t *sc = (const int8_t *)(p + 192);
            uint16_t hd;
            memcpy(&hd, p + 208, 2);
            float d = ds_f16_to_f32(hd);
            for (int h = 0; h < 2; h++) {
                const uint8_t *l0 = ql + 64 * h, *hh = qh + 32 * h;
                const int8_t *s = sc + 8 * h;
                float *y = out + 128 * h;
                for (int l = 0; l < 32; l++) {
                    int is = l / 16;
                    y[l] = d * s[is] * (float)(((l0[l] & 15) | (((hh[l] >> 0) & 3) << 4)) - 32);
                    y[l + 32] = d * s[is + 2] * (float)(((l0[l + 32] & 15) | (((hh[l] >> 2) & 3) << 4)) - 32);
                    y[l + 64] = d * s[is + 4] * (float)(((l0[l] >> 4) | (((hh[l] >> 4) & 3) << 4)) - 32);
                    y[l + 96] = d * s[is + 6] * (float)(((l0[l + 32] >> 4) | (((hh[l] >> 6) & 3) << 4)) - 32);
                }
            }
            p += 210;
        }
    }
}

// A tensor {cols, rows, n} (n = 0: 2-D) as n ds_tensor views (rows, cols). Types we compute
// with are used in place; Q4_K / Q6_K are re-encoded as Q8_0 (1.06 bytes per value, nearly
// lossless relative to them) into owned memory.
static ds_status g_stack(gloader *g, const char *name, int64_t n, int64_t rows, int64_t cols, ds_tensor *out) {
    const gguf_tensor *t = gguf_find_tensor(g->f, name);
    if (!t) return ds_error_set(g->err, DS_ERR_FORMAT, "%s: missing tensor '%s'", g->f->path, name);
    int want_dims = n > 0 ? 3 : 2;
    int64_t nm = n > 0 ? n : 1;
    if (t->n_dims != want_dims || t->dims[0] != cols || t->dims[1] != rows || (n > 0 && t->dims[2] != n))
        return ds_error_set(g->err, DS_ERR_FORMAT, "%s: tensor '%s' has dims {%lld, %lld, %lld} (%d-D), expected {%lld, %lld, %lld}",
                            g->f->path, name, (long long)t->dims[0], (long long)t->dims[1], (long long)t->dims[2],
                            t->n_dims, (long long)cols, (long long)rows, (long long)nm);
    ds_dtype dt = dtype_of_gguf(t->type);
    const uint8_t *data = t->data;
    if (dt == DS_DTYPE_COUNT) {
        if (t->type != GGUF_TYPE_Q4_K && t->type != GGUF_TYPE_Q6_K)
            return ds_error_set(g->err, DS_ERR_FORMAT, "%s: tensor '%s' has type %s (supported: F32, F16, BF16, Q8_0, "
                                "Q4_0, Q4_K, Q6_K)", g->f->path, name, gguf_type_name(t->type));
        int64_t rb = ds_dtype_row_bytes(DS_Q8_0, cols), kb = cols / 256 * (t->type == GGUF_TYPE_Q4_K ? 144 : 210);
        uint8_t *buf = ds_model_alloc(g->m, (size_t)(nm * rows * rb));
        float *row = malloc(sizeof(float) * (size_t)cols);
        if (!buf || !row) { free(row); return ds_error_set(g->err, DS_ERR_OOM, "out of memory converting '%s'", name); }
        for (int64_t r = 0; r < nm * rows; r++) {
            gguf_kquant_to_f32(t->type, data + r * kb, row, cols);
            ds_quantize_row(DS_Q8_0, row, buf + r * rb, cols);
        }
        free(row);
        data = buf;
        dt = DS_Q8_0;
    }
    int64_t slab = rows * ds_dtype_row_bytes(dt, cols);
    for (int64_t k = 0; k < nm; k++) {
        out[k] = (ds_tensor){.dtype = dt, .ndim = 2, .shape = {rows, cols}, .data = data + k * slab, .name = t->name};
        if (strcmp(name, "token_embd.weight") != 0) GTRY(ds_model_regroup_q4(g->m, &out[k], g->err)); // rows looked up, not multiplied
    }
    return DS_OK;
}

static ds_status g_matrix(gloader *g, int64_t rows, int64_t cols, ds_tensor *out) {
    return g_stack(g, g->name, 0, rows, cols, out);
}

// A 1-D tensor (or a 2-D one read as a flat array, e.g. the router) as f32.
static ds_status g_f32vec(gloader *g, int64_t rows, int64_t cols, const float **out) {
    ds_tensor t;
    const gguf_tensor *gt = gguf_find_tensor(g->f, g->name);
    if (!gt) return ds_error_set(g->err, DS_ERR_FORMAT, "%s: missing tensor '%s'", g->f->path, g->name);
    if (rows == 0) { // 1-D
        if (gt->n_dims != 1 || gt->dims[0] != cols)
            return ds_error_set(g->err, DS_ERR_FORMAT, "%s: tensor '%s' has %lld values, expected %lld", g->f->path,
                                g->name, (long long)gt->numel, (long long)cols);
        if (gt->type == GGUF_TYPE_F32) { *out = (const float *)gt->data; return DS_OK; }
        t = (ds_tensor){.dtype = dtype_of_gguf(gt->type), .ndim = 1, .shape = {cols}, .data = gt->data};
        if (t.dtype != DS_F32 && t.dtype != DS_F16 && t.dtype != DS_BF16)
            return ds_error_set(g->err, DS_ERR_FORMAT, "%s: tensor '%s' has type %s, expected F32/F16/BF16", g->f->path,
                                g->name, gguf_type_name(gt->type));
        float *buf = ds_model_alloc(g->m, sizeof(float) * (size_t)cols);
        if (!buf) return ds_error_set(g->err, DS_ERR_OOM, "out of memory");
        ds_tensor_row_to_f32(&t, 0, buf);
        *out = buf;
        return DS_OK;
    }
    GTRY(g_matrix(g, rows, cols, &t));
    if (t.dtype == DS_F32) { *out = t.data; return DS_OK; }
    float *buf = ds_model_alloc(g->m, sizeof(float) * (size_t)(rows * cols));
    if (!buf) return ds_error_set(g->err, DS_ERR_OOM, "out of memory");
    ds_tensor_rows_to_f32(&t, 0, rows, buf);
    *out = buf;
    return DS_OK;
}

// attn_k_b {dn, dc, H} + attn_v_b {dc, dv, H} -> kv_b (H*(dn+dv), dc). Stored F32 for float
// sources and BF16 for quantized ones: absorbed attention reads kv_b row by row per head
// through the fused f32/bf16 kernels, where a block format would cost more compute than its
// bytes save (and the transpose cannot keep K's blocks anyway).
static ds_status g_kv_b(gloader *g, int l, ds_tensor *out) {
    const ds_config *c = &g->m->cfg;
    int64_t H = c->num_attention_heads, dn = c->qk_nope_head_dim, dv = c->v_head_dim, dc = c->kv_lora_rank;
    snprintf(g->name, sizeof g->name, "blk.%d.attn_kv_b.weight", l);
    if (gguf_find_tensor(g->f, g->name)) return g_matrix(g, H * (dn + dv), dc, out); // legacy file
    ds_tensor *kb = ds_model_alloc(g->m, sizeof(ds_tensor) * (size_t)(2 * H)), *vb = kb ? kb + H : NULL;
    if (!kb) return ds_error_set(g->err, DS_ERR_OOM, "out of memory");
    char kn[96], vn[96];
    snprintf(kn, sizeof kn, "blk.%d.attn_k_b.weight", l);
    snprintf(vn, sizeof vn, "blk.%d.attn_v_b.weight", l);
    GTRY(g_stack(g, kn, H, dc, dn, kb));
    GTRY(g_stack(g, vn, H, dv, dc, vb));
    int quant = ds_dtype_block(kb[0].dtype) > 1 || ds_dtype_block(vb[0].dtype) > 1;
    ds_dtype dt = quant ? DS_BF16 : DS_F32;
    int64_t rows = H * (dn + dv), rb = ds_dtype_row_bytes(dt, dc);
    uint8_t *buf = ds_model_alloc(g->m, (size_t)(rows * rb));
    float *kt = malloc(sizeof(float) * (size_t)(dc * dn + dc)), *row = kt ? kt + dc * dn : NULL;
    if (!buf || !kt) { free(kt); return ds_error_set(g->err, DS_ERR_OOM, "out of memory"); }
    for (int64_t h = 0; h < H; h++) {
        ds_tensor_rows_to_f32(&kb[h], 0, dc, kt); // (dc, dn): row c holds W_UK[h][:, c]
        for (int64_t d = 0; d < dn; d++) {
            for (int64_t cc = 0; cc < dc; cc++) row[cc] = kt[cc * dn + d];
            row_encode(dt, row, buf + (h * (dn + dv) + d) * rb, dc);
        }
        for (int64_t v = 0; v < dv; v++) {
            ds_tensor_row_to_f32(&vb[h], v, row);
            row_encode(dt, row, buf + (h * (dn + dv) + dn + v) * rb, dc);
        }
    }
    free(kt);
    *out = (ds_tensor){.dtype = dt, .ndim = 2, .shape = {rows, dc}, .data = buf, .name = "kv_b"};
    return DS_OK;
}

static ds_status g_block(gloader *g, int l, ds_block *b) {
    const ds_config *c = &g->m->cfg;
    int64_t D = c->hidden_size, H = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    int64_t dv = c->v_head_dim, dq = c->q_lora_rank, dc = c->kv_lora_rank, E = c->n_routed_experts;
    int64_t MI = c->moe_intermediate_size;
#define GN(fmt) snprintf(g->name, sizeof g->name, "blk.%d." fmt, l)
    GN("attn_norm.weight"); GTRY(g_f32vec(g, 0, D, &b->input_norm));
    GN("ffn_norm.weight"); GTRY(g_f32vec(g, 0, D, &b->post_norm));
    if (dq > 0) {
        GN("attn_q_a.weight"); GTRY(g_matrix(g, dq, D, &b->q_a));
        GN("attn_q_a_norm.weight"); GTRY(g_f32vec(g, 0, dq, &b->q_a_norm));
        GN("attn_q_b.weight"); GTRY(g_matrix(g, H * (dn + dr), dq, &b->q_b));
    } else {
        GN("attn_q.weight"); GTRY(g_matrix(g, H * (dn + dr), D, &b->q));
    }
    GN("attn_kv_a_mqa.weight"); GTRY(g_matrix(g, dc + dr, D, &b->kv_a));
    GN("attn_kv_a_norm.weight"); GTRY(g_f32vec(g, 0, dc, &b->kv_a_norm));
    GTRY(g_kv_b(g, l, &b->kv_b));
    GN("attn_output.weight"); GTRY(g_matrix(g, D, H * dv, &b->o));
    b->is_moe = ds_config_layer_is_moe(c, l);
    if (!b->is_moe) {
        GN("ffn_gate.weight"); GTRY(g_matrix(g, c->intermediate_size, D, &b->gate));
        GN("ffn_up.weight"); GTRY(g_matrix(g, c->intermediate_size, D, &b->up));
        GN("ffn_down.weight"); GTRY(g_matrix(g, D, c->intermediate_size, &b->down));
        return DS_OK;
    }
    GN("ffn_gate_inp.weight"); GTRY(g_f32vec(g, E, D, &b->router));
    b->router_bias = NULL;
    if (c->topk_method == DS_TOPK_NOAUX_TC) { GN("exp_probs_b.bias"); GTRY(g_f32vec(g, 0, E, &b->router_bias)); }
    ds_tensor *arr = ds_model_alloc(g->m, sizeof(ds_tensor) * (size_t)(3 * E));
    if (!arr) return ds_error_set(g->err, DS_ERR_OOM, "out of memory");
    b->exp_gate = arr; b->exp_up = arr + E; b->exp_down = arr + 2 * E;
    GN("ffn_gate_exps.weight"); GTRY(g_stack(g, g->name, E, MI, D, b->exp_gate));
    GN("ffn_up_exps.weight"); GTRY(g_stack(g, g->name, E, MI, D, b->exp_up));
    GN("ffn_down_exps.weight"); GTRY(g_stack(g, g->name, E, D, MI, b->exp_down));
    if (c->n_shared_experts > 0) {
        int64_t S = (int64_t)c->n_shared_experts * MI;
        GN("ffn_gate_shexp.weight"); GTRY(g_matrix(g, S, D, &b->sh_gate));
        GN("ffn_up_shexp.weight"); GTRY(g_matrix(g, S, D, &b->sh_up));
        GN("ffn_down_shexp.weight"); GTRY(g_matrix(g, D, S, &b->sh_down));
    }
#undef GN
    return DS_OK;
}

ds_status gguf_model_load(ds_model *m, const char *path, ds_error *err) {
    memset(m, 0, sizeof *m);
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    ds_status st = gguf_open(f, path, err);
    if (st) { free(f); return st; }
    m->gguf = f;
    gloader g = {m, f, err, {0}};
    st = g_config(&g, &m->cfg);
    if (!st && m->cfg.vocab_size > 0) {
        const ds_config *c = &m->cfg;
        int64_t D = c->hidden_size, V = c->vocab_size;
        snprintf(g.name, sizeof g.name, "token_embd.weight");
        st = g_matrix(&g, V, D, &m->embed);
        if (!st) { snprintf(g.name, sizeof g.name, "output_norm.weight"); st = g_f32vec(&g, 0, D, &m->final_norm); }
        if (!st && c->tie_word_embeddings) m->lm_head = m->embed;
        else if (!st) { snprintf(g.name, sizeof g.name, "output.weight"); st = g_matrix(&g, V, D, &m->lm_head); }
        if (!st) {
            m->layers = ds_model_alloc(m, sizeof(ds_block) * (size_t)c->num_hidden_layers);
            if (!m->layers) st = ds_error_set(err, DS_ERR_OOM, "out of memory");
        }
        for (int l = 0; !st && l < c->num_hidden_layers; l++) st = g_block(&g, l, &m->layers[l]);
    }
    if (st) ds_model_free(m);
    return st;
}
