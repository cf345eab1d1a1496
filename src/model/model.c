// Binds HF tensor names to the model structs and validates everything before use:
// every expected tensor present with an allowed dtype and the shape config.json implies,
// fp8 matrices with their weight_scale_inv, and no tensor left over.
#include "model/model.h"

#include "io/gguf.h"
#include "model/gguf_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    ds_model *m;
    ds_error *err;
    char name[256];
} loader;

void *ds_model_alloc(ds_model *m, size_t bytes) {
    if (m->n_allocs == m->cap_allocs) {
        int cap = m->cap_allocs ? 2 * m->cap_allocs : 64;
        void **p = realloc(m->allocs, (size_t)cap * sizeof *p);
        if (!p) return NULL;
        m->allocs = p;
        m->cap_allocs = cap;
    }
    void *p = calloc(1, bytes ? bytes : 1);
    if (p) m->allocs[m->n_allocs++] = p;
    return p;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    int k = snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k > 0 && (size_t)k < n; i++)
        k += snprintf(buf + k, n - (size_t)k, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (k > 0 && (size_t)k < n) snprintf(buf + k, n - (size_t)k, "]");
}

// Finds `ld->name`, checks its shape, marks it used.
static ds_status loader_find(loader *ld, int ndim, int64_t d0, int64_t d1, st_entry **out, const char **file) {
    *out = model_dir_find(&ld->m->files, ld->name, file);
    if (!*out)
        return ds_error_set(ld->err, DS_ERR_FORMAT, "%s: missing tensor '%s'", ld->m->files.dir, ld->name);
    st_entry *e = *out;
    int64_t want[2] = {d0, d1};
    int ok = e->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = e->shape[i] == want[i];
    if (!ok) {
        char got[96], exp[96];
        shape_str(got, sizeof got, e->ndim, e->shape);
        shape_str(exp, sizeof exp, ndim, want);
        return ds_error_set(ld->err, DS_ERR_FORMAT, "%s: tensor '%s' has shape %s but config.json implies %s",
                            *file, ld->name, got, exp);
    }
    e->used = true;
    return DS_OK;
}

// An f32 vector/matrix the engine reads as plain floats: used in place when the file holds
// aligned F32, otherwise converted into an owned buffer.
static ds_status loader_f32(loader *ld, int ndim, int64_t d0, int64_t d1, const float **out) {
    st_entry *e;
    const char *file;
    ds_status st = loader_find(ld, ndim, d0, d1, &e, &file);
    if (st) return st;
    if (e->dtype == DS_F8_E4M3)
        return ds_error_set(ld->err, DS_ERR_FORMAT, "%s: tensor '%s' has dtype F8_E4M3, expected F32, BF16 or F16",
                            file, ld->name);
    if (e->dtype == DS_F32 && ((uintptr_t)e->data % sizeof(float)) == 0) {
        *out = (const float *)e->data;
        return DS_OK;
    }
    int64_t n = ndim == 1 ? d0 : d0 * d1;
    float *buf = ds_model_alloc(ld->m, (size_t)n * sizeof(float));
    if (!buf) return ds_error_set(ld->err, DS_ERR_OOM, "out of memory loading '%s'", ld->name);
    ds_tensor t = {.dtype = e->dtype, .ndim = 1, .shape = {n}, .data = e->data};
    if (e->dtype == DS_F32) memcpy(buf, e->data, (size_t)n * 4);
    else ds_tensor_row_to_f32(&t, 0, buf);
    *out = buf;
    return DS_OK;
}

// A weight matrix (rows, cols) used through the kernels in its stored dtype. F8_E4M3 needs
// the companion `<name>_scale_inv` (F32, or BF16 converted) of shape (ceil(r/128), ceil(c/128)).
static ds_status loader_matrix(loader *ld, int64_t rows, int64_t cols, ds_tensor *t) {
    st_entry *e;
    const char *file;
    ds_status st = loader_find(ld, 2, rows, cols, &e, &file);
    if (st) return st;
    memset(t, 0, sizeof *t);
    t->dtype = e->dtype;
    t->ndim = 2;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->data = e->data;
    t->name = e->name;
    if (e->dtype != DS_F8_E4M3) return DS_OK;

    size_t len = strlen(ld->name);
    if (len + sizeof "_scale_inv" > sizeof ld->name)
        return ds_error_set(ld->err, DS_ERR_FORMAT, "%s: tensor name '%s' is too long", file, ld->name);
    memcpy(ld->name + len, "_scale_inv", sizeof "_scale_inv");
    int64_t sr = (rows + DS_FP8_BLOCK - 1) / DS_FP8_BLOCK, sc = (cols + DS_FP8_BLOCK - 1) / DS_FP8_BLOCK;
    if (!model_dir_find(&ld->m->files, ld->name, NULL))
        return ds_error_set(ld->err, DS_ERR_FORMAT, "%s: F8_E4M3 tensor '%.*s' has no '%s'", file, (int)len, ld->name, ld->name);
    st = loader_f32(ld, 2, sr, sc, &t->scale);
    ld->name[len] = 0;
    return st;
}

#define NAME(...) snprintf(ld->name, sizeof ld->name, __VA_ARGS__)
#define TRY(x) do { ds_status s_ = (x); if (s_ != DS_OK) return s_; } while (0)

static ds_status load_attention(loader *ld, const char *p, ds_block *b) {
    const ds_config *c = &ld->m->cfg;
    int64_t D = c->hidden_size, H = c->num_attention_heads;
    int64_t dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    int64_t dq = c->q_lora_rank, dc = c->kv_lora_rank;
    if (dq > 0) {
        NAME("%s.self_attn.q_a_proj.weight", p);       TRY(loader_matrix(ld, dq, D, &b->q_a));
        NAME("%s.self_attn.q_a_layernorm.weight", p);  TRY(loader_f32(ld, 1, dq, 0, &b->q_a_norm));
        NAME("%s.self_attn.q_b_proj.weight", p);       TRY(loader_matrix(ld, H * (dn + dr), dq, &b->q_b));
    } else {
        NAME("%s.self_attn.q_proj.weight", p);         TRY(loader_matrix(ld, H * (dn + dr), D, &b->q));
    }
    NAME("%s.self_attn.kv_a_proj_with_mqa.weight", p); TRY(loader_matrix(ld, dc + dr, D, &b->kv_a));
    NAME("%s.self_attn.kv_a_layernorm.weight", p);     TRY(loader_f32(ld, 1, dc, 0, &b->kv_a_norm));
    NAME("%s.self_attn.kv_b_proj.weight", p);          TRY(loader_matrix(ld, H * (dn + dv), dc, &b->kv_b));
    NAME("%s.self_attn.o_proj.weight", p);             TRY(loader_matrix(ld, D, H * dv, &b->o));
    return DS_OK;
}

static ds_status load_mlp(loader *ld, const char *p, int64_t D, int64_t I, ds_tensor *g, ds_tensor *u, ds_tensor *d) {
    NAME("%s.gate_proj.weight", p); TRY(loader_matrix(ld, I, D, g));
    NAME("%s.up_proj.weight", p);   TRY(loader_matrix(ld, I, D, u));
    NAME("%s.down_proj.weight", p); TRY(loader_matrix(ld, D, I, d));
    return DS_OK;
}

static ds_status load_moe(loader *ld, const char *p, ds_block *b) {
    const ds_config *c = &ld->m->cfg;
    int64_t D = c->hidden_size, E = c->n_routed_experts, MI = c->moe_intermediate_size;
    NAME("%s.mlp.gate.weight", p); TRY(loader_f32(ld, 2, E, D, &b->router));
    b->router_bias = NULL;
    if (c->topk_method == DS_TOPK_NOAUX_TC) {
        NAME("%s.mlp.gate.e_score_correction_bias", p);
        TRY(loader_f32(ld, 1, E, 0, &b->router_bias));
    }
    ds_tensor *arr = ds_model_alloc(ld->m, (size_t)(3 * E) * sizeof(ds_tensor));
    if (!arr) return ds_error_set(ld->err, DS_ERR_OOM, "out of memory");
    b->exp_gate = arr;
    b->exp_up = arr + E;
    b->exp_down = arr + 2 * E;
    char ep[200];
    for (int64_t j = 0; j < E; j++) {
        snprintf(ep, sizeof ep, "%s.mlp.experts.%lld", p, (long long)j);
        TRY(load_mlp(ld, ep, D, MI, &b->exp_gate[j], &b->exp_up[j], &b->exp_down[j]));
    }
    if (c->n_shared_experts > 0) {
        snprintf(ep, sizeof ep, "%s.mlp.shared_experts", p);
        TRY(load_mlp(ld, ep, D, (int64_t)c->n_shared_experts * MI, &b->sh_gate, &b->sh_up, &b->sh_down));
    }
    return DS_OK;
}

static ds_status load_block(loader *ld, int l, ds_block *b) {
    const ds_config *c = &ld->m->cfg;
    char p[64];
    snprintf(p, sizeof p, "model.layers.%d", l);
    NAME("%s.input_layernorm.weight", p);          TRY(loader_f32(ld, 1, c->hidden_size, 0, &b->input_norm));
    NAME("%s.post_attention_layernorm.weight", p); TRY(loader_f32(ld, 1, c->hidden_size, 0, &b->post_norm));
    TRY(load_attention(ld, p, b));
    // The MTP block (l == L) is always a MoE block in DeepSeek-V3 when the model has experts.
    b->is_moe = l >= c->num_hidden_layers ? c->n_routed_experts > 0 : ds_config_layer_is_moe(c, l);
    if (b->is_moe) return load_moe(ld, p, b);
    char mp[80];
    snprintf(mp, sizeof mp, "%s.mlp", p);
    return load_mlp(ld, mp, c->hidden_size, c->intermediate_size, &b->gate, &b->up, &b->down);
}

// An optional copy of a shared tensor: used if present (shape-checked), else `fallback`.
static ds_status load_optional_matrix(loader *ld, int64_t rows, int64_t cols, ds_tensor *t, const ds_tensor *fallback) {
    if (model_dir_find(&ld->m->files, ld->name, NULL)) return loader_matrix(ld, rows, cols, t);
    *t = *fallback;
    return DS_OK;
}

static ds_status load_mtp(loader *ld) {
    ds_model *m = ld->m;
    const ds_config *c = &m->cfg;
    int L = c->num_hidden_layers;
    int64_t D = c->hidden_size, V = c->vocab_size;
    char probe[96];
    snprintf(probe, sizeof probe, "model.layers.%d.eh_proj.weight", L);
    m->has_mtp = c->num_nextn_predict_layers > 0 && model_dir_find(&m->files, probe, NULL) != NULL;
    if (!m->has_mtp) return DS_OK;
    ds_mtp *t = &m->mtp;
    NAME("model.layers.%d.enorm.weight", L);             TRY(loader_f32(ld, 1, D, 0, &t->enorm));
    NAME("model.layers.%d.hnorm.weight", L);             TRY(loader_f32(ld, 1, D, 0, &t->hnorm));
    NAME("model.layers.%d.eh_proj.weight", L);           TRY(loader_matrix(ld, D, 2 * D, &t->eh_proj));
    NAME("model.layers.%d.shared_head.norm.weight", L);  TRY(loader_f32(ld, 1, D, 0, &t->head_norm));
    NAME("model.layers.%d.embed_tokens.weight", L);      TRY(load_optional_matrix(ld, V, D, &t->embed, &m->embed));
    NAME("model.layers.%d.shared_head.head.weight", L);  TRY(load_optional_matrix(ld, V, D, &t->head, &m->lm_head));
    return load_block(ld, L, &t->block);
}

static ds_status model_bind_tensors(ds_model *m, ds_error *err) {
    loader ld_ = {m, err, {0}}, *ld = &ld_;
    const ds_config *c = &m->cfg;
    int64_t D = c->hidden_size, V = c->vocab_size;
    ds_status st;
    NAME("model.embed_tokens.weight"); st = loader_matrix(ld, V, D, &m->embed);
    if (!st) { NAME("model.norm.weight"); st = loader_f32(ld, 1, D, 0, &m->final_norm); }
    if (!st) {
        NAME("lm_head.weight");
        if (c->tie_word_embeddings && !model_dir_find(&m->files, ld->name, NULL)) m->lm_head = m->embed;
        else st = loader_matrix(ld, V, D, &m->lm_head);
    }
    if (!st) {
        m->layers = ds_model_alloc(m, (size_t)c->num_hidden_layers * sizeof(ds_block));
        if (!m->layers) st = ds_error_set(err, DS_ERR_OOM, "out of memory");
    }
    for (int l = 0; !st && l < c->num_hidden_layers; l++) st = load_block(ld, l, &m->layers[l]);
    if (!st) st = load_mtp(ld);
    if (!st) {
        const char *file;
        st_entry *e = model_dir_first_unused(&m->files, &file);
        if (e) st = ds_error_set(err, DS_ERR_FORMAT, "%s: unexpected tensor '%s' (not part of this config)", file, e->name);
    }
    return st;
}

ds_status ds_model_load(ds_model *m, const char *dir, ds_error *err) {
    if (gguf_model_is_path(dir)) return gguf_model_load(m, dir, err);
    memset(m, 0, sizeof *m);
    ds_status st = ds_config_load(&m->cfg, dir, err);
    if (st) return st;
    st = model_dir_open(&m->files, dir, err);
    if (st) return st;
    st = model_bind_tensors(m, err);
    if (st) ds_model_free(m);
    return st;
}

ds_status ds_model_bind(ds_model *m, const ds_config *cfg, model_dir *files, ds_error *err) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->files = *files;
    memset(files, 0, sizeof *files);
    ds_status st = model_bind_tensors(m, err);
    if (st) ds_model_free(m);
    return st;
}

void ds_model_free(ds_model *m) {
    for (int i = 0; i < m->n_allocs; i++) free(m->allocs[i]);
    free(m->allocs);
    model_dir_close(&m->files);
    if (m->gguf) {
        gguf_close(m->gguf);
        free(m->gguf);
    }
    memset(m, 0, sizeof *m);
}

static int64_t tensor_bytes(const ds_tensor *t) {
    int64_t n = ds_tensor_bytes(t);
    if (t->dtype == DS_F8_E4M3)
        n += ((t->shape[0] + 127) / 128) * ((t->shape[1] + 127) / 128) * 4;
    return n;
}

// Parameters and bytes of one block; `active` counts K routed experts instead of E.
static void block_stats(const ds_config *c, const ds_block *b, int active, int64_t *params, int64_t *bytes) {
    const ds_tensor *mats[] = {&b->q_a, &b->q_b, &b->q, &b->kv_a, &b->kv_b, &b->o,
                               &b->gate, &b->up, &b->down, &b->sh_gate, &b->sh_up, &b->sh_down};
    int64_t D = c->hidden_size;
    *params = 2 * D + (c->q_lora_rank ? c->q_lora_rank : 0) + c->kv_lora_rank;
    *bytes = *params * 4;
    for (size_t i = 0; i < sizeof mats / sizeof *mats; i++) {
        if (!mats[i]->data) continue;
        *params += ds_tensor_numel(mats[i]);
        *bytes += tensor_bytes(mats[i]);
    }
    if (!b->is_moe) return;
    int64_t E = c->n_routed_experts;
    *params += E * D + (b->router_bias ? E : 0);
    *bytes += (E * D + (b->router_bias ? E : 0)) * 4;
    int64_t n = active ? c->num_experts_per_tok : E;
    for (int64_t j = 0; j < n; j++) {
        *params += ds_tensor_numel(&b->exp_gate[j]) * 3;
        *bytes += tensor_bytes(&b->exp_gate[j]) + tensor_bytes(&b->exp_up[j]) + tensor_bytes(&b->exp_down[j]);
    }
}

void ds_model_get_stats(const ds_model *m, ds_model_stats *st) {
    const ds_config *c = &m->cfg;
    int64_t D = c->hidden_size, V = c->vocab_size;
    memset(st, 0, sizeof *st);
    int tied = m->lm_head.data == m->embed.data;
    st->total_params = V * D * (tied ? 1 : 2) + D;
    st->active_params = st->total_params;
    // Decoding reads one embedding row and the whole lm_head.
    st->weight_bytes = tensor_bytes(&m->embed) + (tied ? 0 : tensor_bytes(&m->lm_head)) + D * 4;
    st->active_weight_bytes = ds_dtype_row_bytes(m->embed.dtype, D) + tensor_bytes(&m->lm_head) + D * 4;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        int64_t p, b, pa, ba;
        block_stats(c, &m->layers[l], 0, &p, &b);
        block_stats(c, &m->layers[l], 1, &pa, &ba);
        st->total_params += p;
        st->weight_bytes += b;
        st->active_params += pa;
        st->active_weight_bytes += ba;
    }
    if (m->has_mtp) {
        int64_t p, b;
        block_stats(c, &m->mtp.block, 0, &p, &b);
        st->mtp_params = p + 3 * D + 2 * D * D;
        st->weight_bytes += b + 3 * D * 4 + tensor_bytes(&m->mtp.eh_proj);
    }
}

// ---- quantization at load ----------------------------------------------------------------

ds_status ds_model_regroup_q4(ds_model *m, ds_tensor *t, ds_error *err) {
    int64_t rows = ds_tensor_rows(t), cols = ds_tensor_cols(t);
    if (t->dtype != DS_Q4_0 || t->ndim != 2 || rows % 8 != 0) return DS_OK;
    uint8_t *buf = ds_model_alloc(m, (size_t)ds_tensor_bytes(t));
    if (!buf) return ds_error_set(err, DS_ERR_OOM, "out of memory regrouping '%s'", t->name ? t->name : "?");
    ds_q4_0_to_x8(t->data, buf, rows, cols);
    t->dtype = DS_Q4_0X8;
    t->data = buf;
    return DS_OK;
}

typedef struct {
    ds_tensor **t;
    int n, cap;
} tensor_list;

static int tlist_add(tensor_list *l, ds_tensor *t) {
    if (!t->data || t->ndim != 2) return 1;
    for (int i = 0; i < l->n; i++)
        if (l->t[i]->data == t->data) return 1; // shared (MTP copies of embed/head)
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        ds_tensor **p = realloc(l->t, sizeof *p * (size_t)cap);
        if (!p) return 0;
        l->t = p;
        l->cap = cap;
    }
    l->t[l->n++] = t;
    return 1;
}

// kv_b is left as stored: absorbed attention reads it per head per token through the fused
// float kernels, where a block format costs more compute than it saves in bytes.
static int tlist_block(tensor_list *l, const ds_config *c, ds_block *b) {
    ds_tensor *mats[] = {&b->q_a, &b->q_b, &b->q, &b->kv_a, &b->o, &b->gate, &b->up, &b->down,
                         &b->sh_gate, &b->sh_up, &b->sh_down};
    int ok = 1;
    for (size_t i = 0; i < sizeof mats / sizeof *mats; i++) ok = ok && tlist_add(l, mats[i]);
    for (int j = 0; b->is_moe && j < c->n_routed_experts; j++)
        ok = ok && tlist_add(l, &b->exp_gate[j]) && tlist_add(l, &b->exp_up[j]) && tlist_add(l, &b->exp_down[j]);
    return ok;
}

ds_status ds_model_quantize(ds_model *m, ds_dtype q, int progress, int *n_quantized, ds_error *err) {
    if (q != DS_Q8_0 && q != DS_Q4_0)
        return ds_error_set(err, DS_ERR_ARG, "quantization type must be Q8_0 or Q4_0, not %s", ds_dtype_name(q));
    const ds_config *c = &m->cfg;
    tensor_list l = {0};
    int ok = tlist_add(&l, &m->lm_head);
    for (int i = 0; ok && i < c->num_hidden_layers; i++) ok = tlist_block(&l, c, &m->layers[i]);
    if (ok && m->has_mtp) ok = tlist_block(&l, c, &m->mtp.block) && tlist_add(&l, &m->mtp.eh_proj);
    if (!ok) { free(l.t); return ds_error_set(err, DS_ERR_OOM, "out of memory"); }
    ds_status st = DS_OK;
    int done = 0;
    for (int i = 0; i < l.n && !st; i++) {
        ds_tensor *t = l.t[i];
        int64_t rows = t->shape[0], cols = t->shape[1];
        if (cols % DS_QBLOCK != 0 || t->dtype == q) continue; // kept as stored
        int64_t rb = ds_dtype_row_bytes(q, cols);
        // Q4_0 with rows in eights is regrouped for the decode kernel: quantize into a
        // temporary buffer first, so the model keeps only the regrouped copy.
        int regroup = q == DS_Q4_0 && rows % 8 == 0;
        uint8_t *buf = regroup ? malloc((size_t)(rows * rb)) : ds_model_alloc(m, (size_t)(rows * rb));
        if (!buf) { st = ds_error_set(err, DS_ERR_OOM, "out of memory quantizing '%s'", t->name ? t->name : "?"); break; }
        int bad = 0;
#pragma omp parallel reduction(| : bad)
        {
            float *row = malloc(sizeof(float) * (size_t)cols);
            bad |= !row;
#pragma omp for schedule(static)
            for (int64_t r = 0; r < rows; r++) {
                if (!row) continue;
                ds_tensor_row_to_f32(t, r, row);
                ds_quantize_row(q, row, buf + r * rb, cols);
            }
            free(row);
        }
        if (bad) {
            if (regroup) free(buf);
            st = ds_error_set(err, DS_ERR_OOM, "out of memory quantizing");
            break;
        }
        t->dtype = q;
        t->data = buf;
        t->scale = NULL;
        if (regroup) {
            st = ds_model_regroup_q4(m, t, err);
            free(buf);
            if (st) break;
        }
        done++;
        if (progress && (i % 64 == 63 || i + 1 == l.n)) fprintf(stderr, "\rquantizing to %s: %d/%d tensors", ds_dtype_name(q), i + 1, l.n);
    }
    if (progress) fprintf(stderr, "\n");
    if (n_quantized) *n_quantized = done;
    free(l.t);
    return st;
}
