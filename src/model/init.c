// deepseek init: presets and random-weight checkpoints in the HF layout.
//
// Scaling: matrices ~ N(0, 1/in) so every projection keeps unit variance; residual outputs
// (o_proj, down_proj) are further divided by sqrt(2L) so the stream stays bounded; norms are
// 1 + noise and the routing bias is non-zero so a dropped norm or a misused bias changes the
// logits; lm_head has std 3/sqrt(D), giving logits with a spread of a few units (neither
// uniform nor one-hot).
#include "model/init.h"

// HF tensor names here are short by construction (layer/expert indices, fixed suffixes); gcc
// cannot see that through the nested snprintf calls and warns about truncation.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "io/fileutil.h"
#include "io/safetensors.h"

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
}

static const char *const preset_list = "tiny tiny-noq tiny-v2 tiny-v2-greedy small bench-100m bench-1b";

const char *ds_preset_names(void) { return preset_list; }

ds_status ds_preset_config(ds_config *c, const char *name, ds_error *err) {
    if (strcmp(name, "tiny") == 0) preset_base_tiny(c);                       // ~100K params, every feature
    else if (strcmp(name, "tiny-noq") == 0) { preset_base_tiny(c); c->q_lora_rank = 0; }
    else if (strcmp(name, "tiny-v2") == 0) preset_v2(c, DS_TOPK_GROUP_LIMITED_GREEDY);
    else if (strcmp(name, "tiny-v2-greedy") == 0) preset_v2(c, DS_TOPK_GREEDY);
    else if (strcmp(name, "small") == 0)                                         // ~5M, quick training runs
        preset_v3(c, 8192, 128, 384, 64, 6, 4, 64, 32, 32, 16, 32, 16, 4, 4, 2, 1024, 256);
    else if (strcmp(name, "bench-100m") == 0)                                    // ~100M, V3 proportions
        preset_v3(c, 32768, 512, 1536, 256, 8, 8, 192, 128, 64, 32, 64, 32, 4, 8, 4, 16384, 4096);
    else if (strcmp(name, "bench-1b") == 0)                                      // ~0.94B, V3 proportions
        preset_v3(c, 129280, 1024, 2816, 512, 12, 16, 384, 256, 64, 32, 64, 32, 4, 8, 4, 16384, 4096);
    else
        return ds_error_set(err, DS_ERR_ARG, "unknown preset '%s' (known: %s)", name, preset_list);
    return DS_OK;
}

// ---- tensor list -----------------------------------------------------------------------

typedef enum { INIT_NORMAL, INIT_NORM_WEIGHT, INIT_BIAS } init_kind;

typedef struct {
    char name[192];
    char stream_name[192]; // RNG stream; copies (MTP embed/head) reuse the source's stream
    int ndim;
    int64_t shape[2];
    init_kind kind;
    float std;
    ds_dtype dtype;        // storage dtype; F8_E4M3 adds a `_scale_inv` tensor
} init_tensor;

typedef struct {
    init_tensor *t;
    int n, cap;
} init_list;

static init_tensor *init_add(init_list *l, const char *name, int ndim, int64_t d0, int64_t d1, init_kind kind, float std,
                             ds_dtype dtype) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        init_tensor *p = realloc(l->t, (size_t)l->cap * sizeof *p);
        if (!p) return NULL;
        l->t = p;
    }
    init_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->stream_name, sizeof t->stream_name, "%s", name);
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->kind = kind;
    t->std = std;
    t->dtype = dtype;
    return t;
}

typedef struct {
    init_list *l;
    const ds_config *c;
    ds_dtype mat, other; // block matrices / everything else
    float out_scale;     // 1/sqrt(2L) for residual outputs
    int ok;
} list_builder;

static void lb_add(list_builder *b, const char *name, int ndim, int64_t d0, int64_t d1, init_kind kind, float std, ds_dtype dt) {
    if (!init_add(b->l, name, ndim, d0, d1, kind, std, dt)) b->ok = 0;
}
static void lb_mat(list_builder *b, const char *p, const char *n, int64_t out, int64_t in, float extra) {
    char name[192];
    snprintf(name, sizeof name, "%s.%s.weight", p, n);
    lb_add(b, name, 2, out, in, INIT_NORMAL, extra / sqrtf((float)in), b->mat);
}
static void lb_norm(list_builder *b, const char *p, const char *n, int64_t dim) {
    char name[192];
    snprintf(name, sizeof name, "%s.%s.weight", p, n);
    lb_add(b, name, 1, dim, 0, INIT_NORM_WEIGHT, 0.1f, b->other);
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
    lb_add(b, name, 2, c->n_routed_experts, D, INIT_NORMAL, 1.0f / sqrtf((float)D), b->other);
    if (c->topk_method == DS_TOPK_NOAUX_TC) {
        snprintf(name, sizeof name, "%s.gate.e_score_correction_bias", q);
        lb_add(b, name, 1, c->n_routed_experts, 0, INIT_BIAS, 0.5f, DS_F32);
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

static int init_build_list(init_list *l, const ds_config *c, ds_init_dtype dt) {
    list_builder b = {l, c, DS_F32, DS_F32, 1.0f / sqrtf(2.0f * (float)c->num_hidden_layers), 1};
    if (dt == DS_INIT_BF16) b.mat = b.other = DS_BF16;
    if (dt == DS_INIT_FP8) { b.mat = DS_F8_E4M3; b.other = DS_BF16; }
    int64_t V = c->vocab_size, D = c->hidden_size;
    lb_add(&b, "model.embed_tokens.weight", 2, V, D, INIT_NORMAL, 1.0f, b.other);
    for (int i = 0; i < c->num_hidden_layers; i++) lb_block(&b, i, ds_config_layer_is_moe(c, i));
    lb_add(&b, "model.norm.weight", 1, D, 0, INIT_NORM_WEIGHT, 0.1f, b.other);
    lb_add(&b, "lm_head.weight", 2, V, D, INIT_NORMAL, 3.0f / sqrtf((float)D), b.other);
    if (c->num_nextn_predict_layers > 0) {
        int L = c->num_hidden_layers;
        char p[64], name[192];
        snprintf(p, sizeof p, "model.layers.%d", L);
        lb_block(&b, L, c->n_routed_experts > 0);
        lb_norm(&b, p, "enorm", D);
        lb_norm(&b, p, "hnorm", D);
        snprintf(name, sizeof name, "%s.eh_proj.weight", p);
        lb_add(&b, name, 2, D, 2 * D, INIT_NORMAL, 1.0f / sqrtf(2.0f * (float)D), b.other);
        // The HF release stores its own copies of the embedding and the head in the MTP layer.
        snprintf(name, sizeof name, "%s.embed_tokens.weight", p);
        lb_add(&b, name, 2, V, D, INIT_NORMAL, 1.0f, b.other);
        if (b.ok) snprintf(l->t[l->n - 1].stream_name, sizeof l->t[0].stream_name, "model.embed_tokens.weight");
        snprintf(p, sizeof p, "model.layers.%d.shared_head", L);
        lb_norm(&b, p, "norm", D);
        snprintf(name, sizeof name, "%s.head.weight", p);
        lb_add(&b, name, 2, V, D, INIT_NORMAL, 3.0f / sqrtf((float)D), b.other);
        if (b.ok) snprintf(l->t[l->n - 1].stream_name, sizeof l->t[0].stream_name, "lm_head.weight");
    }
    return b.ok;
}

// ---- generation --------------------------------------------------------------------------

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

// Values of one tensor in f32; chunks of 64K elements have their own RNG stream so the
// result does not depend on the thread count.
static void init_fill(const init_tensor *t, uint64_t seed, float *v) {
    int64_t n = t->ndim == 1 ? t->shape[0] : t->shape[0] * t->shape[1];
    uint64_t h = name_hash(t->stream_name);
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
            float mean = t->kind == INIT_NORM_WEIGHT ? 1.0f : t->kind == INIT_BIAS ? -0.6f : 0.0f;
            v[i] = mean + t->std * z;
        }
    }
}

// Encodes f32 values into the storage dtype (in place into `out`); fp8 also fills scales.
static void init_encode(const init_tensor *t, const float *v, void *out, float *scale) {
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

static int64_t init_bytes(const init_tensor *t) {
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
static ds_status init_write_shard(const init_list *l, int t0, int t1, const ds_init_params *p, const char *path,
                                  ds_error *err) {
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
        const init_tensor *t = &l->t[i];
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
        init_fill(t, p->seed, tmp);
        init_encode(t, tmp, data, scale);
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

static ds_status init_write_index(const init_list *l, const int *shard_of, int n_shards, int64_t total, const char *dir,
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

ds_status ds_init_write(const ds_config *c_in, const ds_init_params *p, const char *dir, ds_error *err) {
    ds_config c = *c_in;
    c.fp8 = p->dtype == DS_INIT_FP8;
    ds_status st = file_mkdirs(dir, err);
    if (st) return st;
    init_list l = {0};
    if (!init_build_list(&l, &c, p->dtype)) { free(l.t); return ds_error_set(err, DS_ERR_OOM, "out of memory"); }
    int64_t total = 0;
    for (int i = 0; i < l.n; i++) total += init_bytes(&l.t[i]);
    // Shards of at most max_shard_bytes, and at least two so the index path is always used.
    int64_t max_shard = p->max_shard_bytes > 0 ? p->max_shard_bytes : ((int64_t)1 << 30);
    if (max_shard > total / 2 + 1) max_shard = total / 2 + 1;
    int *shard_of = malloc((size_t)l.n * sizeof(int));
    if (!shard_of) { free(l.t); return ds_error_set(err, DS_ERR_OOM, "out of memory"); }
    int n_shards = 1;
    int64_t acc = 0;
    for (int i = 0; i < l.n; i++) {
        int64_t b = init_bytes(&l.t[i]);
        if (acc > 0 && acc + b > max_shard) { n_shards++; acc = 0; }
        acc += b;
        shard_of[i] = n_shards - 1;
    }
    st = ds_config_save(&c, dir, err);
    for (int s = 0, t0 = 0; st == DS_OK && s < n_shards; s++) {
        int t1 = t0;
        while (t1 < l.n && shard_of[t1] == s) t1++;
        char *sn = shard_name(s, n_shards), *path = sn ? file_join(dir, sn) : NULL;
        if (p->progress) fprintf(stderr, "\rinit: writing shard %d/%d (%d tensors)   ", s + 1, n_shards, t1 - t0);
        st = path ? init_write_shard(&l, t0, t1, p, path, err) : ds_error_set(err, DS_ERR_OOM, "out of memory");
        free(sn);
        free(path);
        t0 = t1;
    }
    if (p->progress) fprintf(stderr, "\n");
    if (st == DS_OK) st = init_write_index(&l, shard_of, n_shards, total, dir, err);
    free(shard_of);
    free(l.t);
    return st;
}
