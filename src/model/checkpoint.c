// Checkpoint tensor lists and the HF-layout writer (see checkpoint.h).
#include "model/checkpoint.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fileutil.h"
#include "io/safetensors.h"

// HF tensor names here are short by construction (layer/expert indices, fixed suffixes); gcc
// cannot see that through the nested snprintf calls and warns about truncation.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

// ---- tensor list -----------------------------------------------------------------------------

static ckpt_tensor *ckpt_add(ckpt_list *l, const char *name, int ndim, int64_t d0, int64_t d1, ckpt_init_kind kind, float std,
                             ds_dtype dtype) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        ckpt_tensor *p = realloc(l->t, (size_t)l->cap * sizeof *p);
        if (!p) return NULL;
        l->t = p;
    }
    ckpt_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->source, sizeof t->source, "%s", name);
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->kind = kind;
    t->std = std;
    t->dtype = dtype;
    return t;
}

typedef struct {
    ckpt_list *l;
    const ds_config *c;
    ds_dtype mat, other; // block matrices / everything else
    float out_scale;     // 1/sqrt(2L) for residual outputs
    int ok;
} list_builder;

static int lb_add(list_builder *b, const char *name, int ndim, int64_t d0, int64_t d1, ckpt_init_kind kind, float std, ds_dtype dt) {
    if (ckpt_add(b->l, name, ndim, d0, d1, kind, std, dt)) return 1;
    b->ok = 0;
    return 0;
}
static void lb_mat(list_builder *b, const char *p, const char *n, int64_t out, int64_t in, float extra) {
    char name[192];
    snprintf(name, sizeof name, "%s.%s.weight", p, n);
    if (lb_add(b, name, 2, out, in, CKPT_INIT_NORMAL, extra / sqrtf((float)in), b->mat)) b->l->t[b->l->n - 1].is_matrix = 1;
}
static void lb_norm(list_builder *b, const char *p, const char *n, int64_t dim) {
    char name[192];
    snprintf(name, sizeof name, "%s.%s.weight", p, n);
    lb_add(b, name, 1, dim, 0, CKPT_INIT_NORM_WEIGHT, 0.1f, b->other);
}

static void lb_mlp(list_builder *b, const char *p, int64_t D, int64_t I) {
    lb_mat(b, p, "gate_proj", I, D, 1.0f);
    lb_mat(b, p, "up_proj", I, D, 1.0f);
    lb_mat(b, p, "down_proj", D, I, b->out_scale);
}

static void lb_block(list_builder *b, int l, int moe) {
    const ds_config *c = b->c;
    int64_t D = c->hidden_size, H = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    int64_t dv = c->v_head_dim, dq = c->q_lora_rank, dc = c->kv_lora_rank;
    char p[64], q[96];
    snprintf(p, sizeof p, "model.layers.%d", l);
    lb_norm(b, p, "input_layernorm", D);
    lb_norm(b, p, "post_attention_layernorm", D);
    snprintf(q, sizeof q, "%s.self_attn", p);
    if (dq > 0) {
        lb_mat(b, q, "q_a_proj", dq, D, 1.0f);
        lb_norm(b, q, "q_a_layernorm", dq);
        lb_mat(b, q, "q_b_proj", H * (dn + dr), dq, 1.0f);
    } else {
        lb_mat(b, q, "q_proj", H * (dn + dr), D, 1.0f);
    }
    lb_mat(b, q, "kv_a_proj_with_mqa", dc + dr, D, 1.0f);
    lb_norm(b, q, "kv_a_layernorm", dc);
    lb_mat(b, q, "kv_b_proj", H * (dn + dv), dc, 1.0f);
    lb_mat(b, q, "o_proj", D, H * dv, b->out_scale);
    snprintf(q, sizeof q, "%s.mlp", p);
    if (!moe) { lb_mlp(b, q, D, c->intermediate_size); return; }
    char name[192];
    snprintf(name, sizeof name, "%s.gate.weight", q);
    if (lb_add(b, name, 2, c->n_routed_experts, D, CKPT_INIT_NORMAL, 1.0f / sqrtf((float)D), b->other))
        b->l->t[b->l->n - 1].is_matrix = 1;
    if (c->topk_method == DS_TOPK_NOAUX_TC) {
        snprintf(name, sizeof name, "%s.gate.e_score_correction_bias", q);
        lb_add(b, name, 1, c->n_routed_experts, 0, CKPT_INIT_BIAS, 0.5f, DS_F32);
    }
    for (int j = 0; j < c->n_routed_experts; j++) {
        snprintf(name, sizeof name, "%s.experts.%d", q, j);
        lb_mlp(b, name, D, c->moe_intermediate_size);
    }
    if (c->n_shared_experts > 0) {
        snprintf(name, sizeof name, "%s.shared_experts", q);
        lb_mlp(b, name, D, (int64_t)c->n_shared_experts * c->moe_intermediate_size);
    }
}

int ckpt_list_build(ckpt_list *l, const ds_config *c, ds_dtype mat, ds_dtype other) {
    memset(l, 0, sizeof *l);
    list_builder b = {l, c, mat, other, 1.0f / sqrtf(2.0f * (float)c->num_hidden_layers), 1};
    int64_t V = c->vocab_size, D = c->hidden_size;
    lb_add(&b, "model.embed_tokens.weight", 2, V, D, CKPT_INIT_NORMAL, 1.0f, b.other);
    for (int i = 0; i < c->num_hidden_layers; i++) lb_block(&b, i, ds_config_layer_is_moe(c, i));
    lb_add(&b, "model.norm.weight", 1, D, 0, CKPT_INIT_NORM_WEIGHT, 0.1f, b.other);
    lb_add(&b, "lm_head.weight", 2, V, D, CKPT_INIT_NORMAL, 3.0f / sqrtf((float)D), b.other);
    if (c->num_nextn_predict_layers > 0) {
        int L = c->num_hidden_layers;
        char p[64], name[192];
        snprintf(p, sizeof p, "model.layers.%d", L);
        lb_block(&b, L, c->n_routed_experts > 0);
        lb_norm(&b, p, "enorm", D);
        lb_norm(&b, p, "hnorm", D);
        snprintf(name, sizeof name, "%s.eh_proj.weight", p);
        lb_add(&b, name, 2, D, 2 * D, CKPT_INIT_NORMAL, 1.0f / sqrtf(2.0f * (float)D), b.other);
        // The HF release stores its own copies of the embedding and the head in the MTP layer.
        snprintf(name, sizeof name, "%s.embed_tokens.weight", p);
        lb_add(&b, name, 2, V, D, CKPT_INIT_NORMAL, 1.0f, b.other);
        if (b.ok) snprintf(l->t[l->n - 1].source, sizeof l->t[0].source, "model.embed_tokens.weight");
        snprintf(p, sizeof p, "model.layers.%d.shared_head", L);
        lb_norm(&b, p, "norm", D);
        snprintf(name, sizeof name, "%s.head.weight", p);
        lb_add(&b, name, 2, V, D, CKPT_INIT_NORMAL, 3.0f / sqrtf((float)D), b.other);
        if (b.ok) snprintf(l->t[l->n - 1].source, sizeof l->t[0].source, "lm_head.weight");
    }
    return b.ok;
}

void ckpt_list_free(ckpt_list *l) {
    free(l->t);
    memset(l, 0, sizeof *l);
}

int64_t ckpt_tensor_numel(const ckpt_tensor *t) { return t->ndim == 1 ? t->shape[0] : t->shape[0] * t->shape[1]; }

// ---- writing -------------------------------------------------------------------------------

// Encodes f32 values into the storage dtype (in place into `out`); fp8 also fills scales.
static void ckpt_encode(const ckpt_tensor *t, const float *v, void *out, float *scale) {
    int64_t n = t->ndim == 1 ? t->shape[0] : t->shape[0] * t->shape[1];
    if (t->dtype == DS_F32) { memcpy(out, v, (size_t)n * 4); return; }
    if (t->dtype == DS_BF16) { for (int64_t i = 0; i < n; i++) ((uint16_t *)out)[i] = ds_f32_to_bf16(v[i]); return; }
    if (t->dtype == DS_F16) { for (int64_t i = 0; i < n; i++) ((uint16_t *)out)[i] = ds_f32_to_f16(v[i]); return; }
    // fp8: scale = amax/448 per 128x128 block, q = fp8(w / scale).
    int64_t R = t->shape[0], C = t->shape[1], sr = (R + 127) / 128, sc = (C + 127) / 128;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int64_t b = 0; b < sr * sc; b++) {
        int64_t r0 = b / sc * 128, c0 = b % sc * 128;
        int64_t r1 = r0 + 128 < R ? r0 + 128 : R, c1 = c0 + 128 < C ? c0 + 128 : C;
        float amax = 0.0f;
        for (int64_t r = r0; r < r1; r++)
            for (int64_t c = c0; c < c1; c++) amax = fmaxf(amax, fabsf(v[r * C + c]));
        float s = amax > 0.0f ? amax / 448.0f : 1.0f;
        scale[b] = s;
        for (int64_t r = r0; r < r1; r++)
            for (int64_t c = c0; c < c1; c++) ((uint8_t *)out)[r * C + c] = ds_f32_to_fp8(v[r * C + c] / s);
    }
}

static int64_t ckpt_bytes(const ckpt_tensor *t) {
    int64_t n = t->ndim == 1 ? t->shape[0] : t->shape[0] * t->shape[1];
    int64_t b = n * (int64_t)ds_dtype_size(t->dtype);
    if (t->dtype == DS_F8_E4M3) b += ((t->shape[0] + 127) / 128) * ((t->shape[1] + 127) / 128) * 4;
    return b;
}

static char *shard_name(int i, int n) {
    char *s = malloc(64);
    if (s) snprintf(s, 64, "model-%05d-of-%05d.safetensors", i + 1, n);
    return s;
}

// Generates and writes tensors [t0, t1) of the list as one shard.
static ds_status ckpt_write_shard(const ckpt_list *l, int t0, int t1, ckpt_fill_fn fill, void *ctx,
                                  const ckpt_write_opts *p, const char *path, ds_error *err) {
    int cap = 2 * (t1 - t0); // each fp8 matrix adds its scale tensor
    st_write_item *items = calloc((size_t)cap, sizeof *items);
    void **bufs = calloc((size_t)cap, sizeof *bufs);
    char (*names)[192] = calloc((size_t)cap, sizeof *names);
    ds_status st = (items && bufs && names) ? DS_OK : ds_error_set(err, DS_ERR_OOM, "out of memory");
    int n = 0;
    float *tmp = NULL;
    for (int i = t0; st == DS_OK && i < t1; i++) {
        if (p->cancel && *p->cancel) {
            st = ds_error_set(err, DS_ERR_INTERRUPTED, "interrupted");
            break;
        }
        const ckpt_tensor *t = &l->t[i];
        int64_t numel = t->ndim == 1 ? t->shape[0] : t->shape[0] * t->shape[1];
        int64_t sr = (t->shape[0] + 127) / 128, sc = (t->shape[1] + 127) / 128;
        int fp8 = t->dtype == DS_F8_E4M3;
        float *nt = realloc(tmp, (size_t)numel * sizeof(float));
        if (nt) tmp = nt;
        void *data = malloc((size_t)numel * ds_dtype_size(t->dtype));
        float *scale = fp8 ? malloc((size_t)(sr * sc) * sizeof(float)) : NULL;
        if (!nt || !data || (fp8 && !scale)) {
            free(data);
            free(scale);
            st = ds_error_set(err, DS_ERR_OOM, "out of memory generating '%s'", t->name);
            break;
        }
        fill(ctx, t, tmp);
        ckpt_encode(t, tmp, data, scale);
        bufs[n] = data;
        items[n++] = (st_write_item){t->name, t->dtype, t->ndim, {t->shape[0], t->shape[1]}, data};
        if (fp8) {
            snprintf(names[n], sizeof names[n], "%s_scale_inv", t->name);
            bufs[n] = scale;
            items[n] = (st_write_item){names[n], DS_F32, 2, {sr, sc}, scale};
            n++;
        }
    }
    free(tmp);
    if (st == DS_OK) st = st_file_write(path, items, n, err);
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    free(items);
    free(names);
    return st;
}

static ds_status ckpt_write_index(const ckpt_list *l, const int *shard_of, int n_shards, int64_t total, const char *dir,
                                  ds_error *err) {
    cJSON *o = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(o, "metadata");
    cJSON_AddNumberToObject(meta, "total_size", (double)total);
    cJSON *map = cJSON_AddObjectToObject(o, "weight_map");
    for (int i = 0; i < l->n; i++) {
        char *sn = shard_name(shard_of[i], n_shards);
        cJSON_AddStringToObject(map, l->t[i].name, sn ? sn : "");
        if (l->t[i].dtype == DS_F8_E4M3) {
            char name[192];
            snprintf(name, sizeof name, "%s_scale_inv", l->t[i].name);
            cJSON_AddStringToObject(map, name, sn ? sn : "");
        }
        free(sn);
    }
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    char *path = file_join(dir, "model.safetensors.index.json");
    ds_status st = (text && path) ? file_write_atomic(path, text, strlen(text), err) : ds_error_set(err, DS_ERR_OOM, "out of memory");
    free(text);
    free(path);
    return st;
}

ds_status ckpt_write(const ds_config *c_in, const ckpt_list *l, ckpt_fill_fn fill, void *ctx, const ckpt_write_opts *o,
                     const char *dir, ds_error *err) {
    ds_config c = *c_in;
    c.fp8 = false;
    for (int i = 0; i < l->n; i++) c.fp8 |= l->t[i].dtype == DS_F8_E4M3;
    ds_status st = file_mkdirs(dir, err);
    if (st) return st;
    int64_t total = 0;
    for (int i = 0; i < l->n; i++) total += ckpt_bytes(&l->t[i]);
    // Shards of at most max_shard_bytes, and at least two so the index path is always used.
    int64_t max_shard = o->max_shard_bytes > 0 ? o->max_shard_bytes : ((int64_t)1 << 30);
    if (max_shard > total / 2 + 1) max_shard = total / 2 + 1;
    int *shard_of = malloc((size_t)(l->n ? l->n : 1) * sizeof(int));
    if (!shard_of) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    int n_shards = 1;
    int64_t acc = 0;
    for (int i = 0; i < l->n; i++) {
        int64_t b = ckpt_bytes(&l->t[i]);
        if (acc > 0 && acc + b > max_shard) { n_shards++; acc = 0; }
        acc += b;
        shard_of[i] = n_shards - 1;
    }
    st = ds_config_save(&c, dir, err);
    for (int s = 0, t0 = 0; st == DS_OK && s < n_shards; s++) {
        int t1 = t0;
        while (t1 < l->n && shard_of[t1] == s) t1++;
        char *sn = shard_name(s, n_shards), *path = sn ? file_join(dir, sn) : NULL;
        if (o->progress) fprintf(stderr, "\rwriting shard %d/%d (%d tensors)   ", s + 1, n_shards, t1 - t0);
        st = path ? ckpt_write_shard(l, t0, t1, fill, ctx, o, path, err) : ds_error_set(err, DS_ERR_OOM, "out of memory");
        free(sn);
        free(path);
        t0 = t1;
    }
    if (o->progress) fprintf(stderr, "\n");
    if (st == DS_OK) st = ckpt_write_index(l, shard_of, n_shards, total, dir, err);
    free(shard_of);
    return st;
}
