// Training forward/backward of the DeepSeek-V3 architecture (shapes in train_model.h).
//
// Layout: weights and their gradients are views into the param_store slabs (tm_block for
// one transformer block, resolved by HF name once). Each block keeps the activations its
// backward needs in tm_acts; everything else is scratch shared by all blocks. All of it is
// planned by one function (tm_plan) that runs twice: once to measure, once to hand out.
//
// Conventions follow kernels/backward.h: forwards overwrite, backwards accumulate into the
// gradient slabs. Activation gradients flow through a few scratch buffers that each
// backward zeroes before accumulating into them.
#include "train/train_model.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backward.h"
#include "kernels/kernels.h"
#include "model/engine.h"
#include "train/balance.h"

// Rows of logits alive at once in the loss: a (ce_rows, V) buffer instead of (N, V), about
// TM_CE_FLOATS floats (at least 64 rows): large enough that the head's weight-gradient GEMM
// has a long inner dimension, small enough to stay out of the way at V = 129K.
#define TM_CE_FLOATS (16 << 20)

// Weights (or their gradients) of one block: views into a param_store slab.
typedef struct {
    float *input_norm, *post_norm;
    float *q_a, *q_a_norm, *q_b, *q;          // q LoRA path, or q (q_lora_rank == 0)
    float *kv_a, *kv_a_norm, *kv_b, *o;
    float *gate, *up, *down;                  // dense MLP
    float *router, *bias;                     // MoE gate and its correction bias (may be NULL)
    float **eg, **eu, **ed;                   // routed experts, E each
    float *sg, *su, *sd;                      // shared experts (NULL when S == 0)
} tm_block;

// What one block's backward needs from its forward. n = tokens of the block.
typedef struct {
    int is_moe;
    float *x_in;     // (n, D) block input (residual stream)
    float *xn1;      // (n, D) input_layernorm(x_in)
    float *qa;       // (n, dq) q_a_proj out, before its norm
    float *qan;      // (n, dq) after q_a_layernorm
    float *q;        // (n, H*(dn+dr)) queries, q_pe rotated
    float *lat;      // (n, dc) latent before kv_a_layernorm
    float *ckvn;     // (n, dc) normalised latent
    float *kv;       // (n, H*(dn+dv)) kv_b_proj out: k_nope | v per head
    float *k;        // (n, H*(dn+dr)) keys: k_nope | rotated k_pe (shared by heads)
    float *att;      // (n, H*dv) attention output
    float *lse;      // (B*H*T) log-sum-exp of each query's scores
    float *x_mid;    // (n, D) x_in + attention
    float *xn2;      // (n, D) post_attention_layernorm(x_mid)
    float *g, *u;    // (n, F) gate/up of the dense MLP or of the shared experts
    // MoE
    float *logits;   // (n, E) router logits
    int *idx;        // (n, K) selected experts
    float *w;        // (n, K) their weights
    int *exp_start;  // (E+1) rows of each expert in the grouped buffers below
    int *exp_tok;    // (n*K) token of each grouped row
    int *exp_slot;   // (n*K) token * K + k of each grouped row
    float *eg, *eu;  // (n*K, MI) expert gate/up outputs, grouped by expert
    float *ey;       // (n*K, D) expert outputs before weighting
} tm_acts;

// Scratch for N tokens, shared by all blocks (the MTP block has fewer).
typedef struct {
    float *tmp;       // (N, D) sub-block output
    float *dxn;       // (N, D) gradient at a norm's output
    float *h, *dh;    // (N, F) swiglu output / its gradient
    float *dg, *du;   // (N, F)
    float *datt;      // (N, H*dv)
    float *dq, *dk;   // (N, H*(dn+dr))
    float *dkv;       // (N, H*(dn+dv))
    float *dckvn, *dlat; // (N, dc)
    float *dkva;      // (N, dc+dr)
    float *dqan, *dqa;   // (N, dq)
    float *xe, *dye, *dxe; // (N, D) one expert's gathered tokens
    float *he, *dhe, *dge, *due; // (N, MI)
    float *dw;        // (N*K)
    float *dlogits;   // (N, E)
    float *route;     // (2E) routing scratch
    int *fill;        // (E) grouping cursors
    float *ce_logits; // (CH, V)
    float *ce_loss, *ce_w; // (CH)
    float *attn;      // (threads, 2 T T) per-thread attention score matrices
} tm_scratch;

struct train_model {
    param_store *ps;
    ds_config c;
    int B, T, N, Nm;          // planned limits; Nm = B*(T-1) MTP tokens
    int n_threads;            // OpenMP threads at creation (attention scratch slots)
    int ce_rows;              // rows per lm_head + cross-entropy chunk
    int L, has_mtp;
    int D, H, dn, dr, dv, dqk, dc, dq, I, MI, S, E, K, V, F;
    float eps, scale, rope_mscale;
    float *inv_freq;          // (dr/2)

    tm_block *w, *g;          // L (+1 MTP) blocks: weights, gradients
    float *embed, *final_norm, *lm_head;          // and gradients:
    float *g_embed, *g_final_norm, *g_lm_head;
    float *enorm, *hnorm, *eh_proj, *head_norm;   // MTP (when has_mtp)
    float *g_enorm, *g_hnorm, *g_eh_proj, *g_head_norm;

    tm_acts *acts;            // L (+1) blocks
    float *x_final;           // (N, D) last block's output
    float *xf;                // (N, D) model.norm(x_final)
    float *dx, *dxf;          // (N, D)
    // MTP module
    int *m_tok, *m_tgt;       // (Nm) embedding input ids and targets
    float *m_eraw, *m_hraw;   // (Nm, D) embeddings and the main hidden rows they pair with
    float *m_cat;             // (Nm, 2D) [enorm(e) | hnorm(h)]
    float *m_final, *m_xf;    // (Nm, D) block output and shared_head.norm of it
    float *m_dx, *m_dxf, *m_da, *m_db; // (Nm, D)
    float *m_dcat;            // (Nm, 2D)
    tm_scratch s;

    int n_moe;                // MoE layers with load counters
    int *moe_layer;           // (n_moe) block index of each
    int *load;                // (n_moe, E)
    int *layer_moe;           // (L+1) block -> MoE index or -1
    int count_load;

    float **expert_ptrs;      // storage behind the eg/eu/ed arrays
    void *slab;
    int64_t bytes;
};

// ---- planning ---------------------------------------------------------------------------

typedef struct { char *base; size_t off; } tm_arena;

static void *arena_take(tm_arena *a, size_t bytes) {
    size_t o = (a->off + 63) & ~(size_t)63;
    a->off = o + bytes;
    return a->base ? a->base + o : NULL;
}
#define TAKE_F(a, n) ((float *)arena_take((a), sizeof(float) * (size_t)(n)))
#define TAKE_I(a, n) ((int *)arena_take((a), sizeof(int) * (size_t)(n)))

static void acts_plan(tm_arena *ar, const train_model *tm, tm_acts *a, int B, int T, int is_moe) {
    int64_t n = (int64_t)B * T;
    memset(a, 0, sizeof *a);
    a->is_moe = is_moe;
    a->x_in = TAKE_F(ar, n * tm->D);
    a->xn1 = TAKE_F(ar, n * tm->D);
    if (tm->dq > 0) {
        a->qa = TAKE_F(ar, n * tm->dq);
        a->qan = TAKE_F(ar, n * tm->dq);
    }
    a->q = TAKE_F(ar, n * tm->H * tm->dqk);
    a->lat = TAKE_F(ar, n * tm->dc);
    a->ckvn = TAKE_F(ar, n * tm->dc);
    a->kv = TAKE_F(ar, n * tm->H * (tm->dn + tm->dv));
    a->k = TAKE_F(ar, n * tm->H * tm->dqk);
    a->att = TAKE_F(ar, n * tm->H * tm->dv);
    a->lse = TAKE_F(ar, n * tm->H);
    a->x_mid = TAKE_F(ar, n * tm->D);
    a->xn2 = TAKE_F(ar, n * tm->D);
    int64_t F = is_moe ? (int64_t)tm->S * tm->MI : tm->I;
    if (F > 0) {
        a->g = TAKE_F(ar, n * F);
        a->u = TAKE_F(ar, n * F);
    }
    if (is_moe) {
        a->logits = TAKE_F(ar, n * tm->E);
        a->idx = TAKE_I(ar, n * tm->K);
        a->w = TAKE_F(ar, n * tm->K);
        a->exp_start = TAKE_I(ar, tm->E + 1);
        a->exp_tok = TAKE_I(ar, n * tm->K);
        a->exp_slot = TAKE_I(ar, n * tm->K);
        a->eg = TAKE_F(ar, n * tm->K * tm->MI);
        a->eu = TAKE_F(ar, n * tm->K * tm->MI);
        a->ey = TAKE_F(ar, n * tm->K * tm->D);
    }
}

static void tm_plan(tm_arena *ar, train_model *tm) {
    int64_t N = tm->N, D = tm->D, Nm = tm->Nm;
    int nb = tm->L + tm->has_mtp;
    for (int l = 0; l < nb; l++) {
        int is_moe = l < tm->L ? ds_config_layer_is_moe(&tm->c, l) : tm->E > 0;
        acts_plan(ar, tm, &tm->acts[l], tm->B, l < tm->L ? tm->T : tm->T - 1, is_moe);
    }
    tm->x_final = TAKE_F(ar, N * D);
    tm->xf = TAKE_F(ar, N * D);
    tm->dx = TAKE_F(ar, N * D);
    tm->dxf = TAKE_F(ar, N * D);
    if (tm->has_mtp) {
        tm->m_tok = TAKE_I(ar, Nm);
        tm->m_tgt = TAKE_I(ar, Nm);
        tm->m_eraw = TAKE_F(ar, Nm * D);
        tm->m_hraw = TAKE_F(ar, Nm * D);
        tm->m_cat = TAKE_F(ar, Nm * 2 * D);
        tm->m_final = TAKE_F(ar, Nm * D);
        tm->m_xf = TAKE_F(ar, Nm * D);
        tm->m_dx = TAKE_F(ar, Nm * D);
        tm->m_dxf = TAKE_F(ar, Nm * D);
        tm->m_da = TAKE_F(ar, Nm * D);
        tm->m_db = TAKE_F(ar, Nm * D);
        tm->m_dcat = TAKE_F(ar, Nm * 2 * D);
    }
    tm_scratch *s = &tm->s;
    int64_t F = tm->F, HQ = (int64_t)tm->H * tm->dqk;
    s->tmp = TAKE_F(ar, N * D);
    s->dxn = TAKE_F(ar, N * D);
    s->h = TAKE_F(ar, N * F);
    s->dh = TAKE_F(ar, N * F);
    s->dg = TAKE_F(ar, N * F);
    s->du = TAKE_F(ar, N * F);
    s->datt = TAKE_F(ar, N * tm->H * tm->dv);
    s->dq = TAKE_F(ar, N * HQ);
    s->dk = TAKE_F(ar, N * HQ);
    s->dkv = TAKE_F(ar, N * tm->H * (tm->dn + tm->dv));
    s->dckvn = TAKE_F(ar, N * tm->dc);
    s->dlat = TAKE_F(ar, N * tm->dc);
    s->dkva = TAKE_F(ar, N * (tm->dc + tm->dr));
    s->dqan = TAKE_F(ar, N * tm->dq);
    s->dqa = TAKE_F(ar, N * tm->dq);
    if (tm->E > 0) {
        s->xe = TAKE_F(ar, N * D);
        s->dye = TAKE_F(ar, N * D);
        s->dxe = TAKE_F(ar, N * D);
        s->he = TAKE_F(ar, N * tm->MI);
        s->dhe = TAKE_F(ar, N * tm->MI);
        s->dge = TAKE_F(ar, N * tm->MI);
        s->due = TAKE_F(ar, N * tm->MI);
        s->dw = TAKE_F(ar, N * tm->K);
        s->dlogits = TAKE_F(ar, N * tm->E);
        s->route = TAKE_F(ar, 2 * tm->E);
        s->fill = TAKE_I(ar, tm->E);
    }
    s->ce_logits = TAKE_F(ar, (int64_t)tm->ce_rows * tm->V);
    s->ce_loss = TAKE_F(ar, tm->ce_rows);
    s->ce_w = TAKE_F(ar, tm->ce_rows);
    s->attn = TAKE_F(ar, (int64_t)tm->n_threads * 2 * tm->T * tm->T);
    tm->inv_freq = TAKE_F(ar, tm->dr / 2 + 1);
    tm->load = TAKE_I(ar, (int64_t)(tm->n_moe ? tm->n_moe : 1) * (tm->E ? tm->E : 1));
}

// Resolves the views of one block; returns 0 if a tensor is missing (a config the
// checkpoint list does not match, which would be a bug).
static int block_bind(train_model *tm, int l, float **expert_store[6]) {
    param_store *ps = tm->ps;
    tm_block *w = &tm->w[l], *g = &tm->g[l];
    int ok = 1;
    char name[256];
#define BIND(field, fmt, ...)                                       \
    do {                                                            \
        snprintf(name, sizeof name, fmt, __VA_ARGS__);              \
        int i_ = params_find(ps, name);                             \
        if (i_ < 0) { ok = 0; break; }                              \
        w->field = params_data(ps, i_);                             \
        g->field = params_grad(ps, i_);                             \
    } while (0)
    BIND(input_norm, "model.layers.%d.input_layernorm.weight", l);
    BIND(post_norm, "model.layers.%d.post_attention_layernorm.weight", l);
    if (tm->dq > 0) {
        BIND(q_a, "model.layers.%d.self_attn.q_a_proj.weight", l);
        BIND(q_a_norm, "model.layers.%d.self_attn.q_a_layernorm.weight", l);
        BIND(q_b, "model.layers.%d.self_attn.q_b_proj.weight", l);
    } else {
        BIND(q, "model.layers.%d.self_attn.q_proj.weight", l);
    }
    BIND(kv_a, "model.layers.%d.self_attn.kv_a_proj_with_mqa.weight", l);
    BIND(kv_a_norm, "model.layers.%d.self_attn.kv_a_layernorm.weight", l);
    BIND(kv_b, "model.layers.%d.self_attn.kv_b_proj.weight", l);
    BIND(o, "model.layers.%d.self_attn.o_proj.weight", l);
    if (!tm->acts[l].is_moe) {
        BIND(gate, "model.layers.%d.mlp.gate_proj.weight", l);
        BIND(up, "model.layers.%d.mlp.up_proj.weight", l);
        BIND(down, "model.layers.%d.mlp.down_proj.weight", l);
        return ok;
    }
    BIND(router, "model.layers.%d.mlp.gate.weight", l);
    snprintf(name, sizeof name, "model.layers.%d.mlp.gate.e_score_correction_bias", l);
    int bi = params_find(ps, name);
    w->bias = bi >= 0 ? params_data(ps, bi) : NULL;
    g->bias = NULL; // selection only: no gradient
    w->eg = expert_store[0]; w->eu = expert_store[1]; w->ed = expert_store[2];
    g->eg = expert_store[3]; g->eu = expert_store[4]; g->ed = expert_store[5];
    for (int j = 0; j < tm->E; j++) {
        BIND(eg[j], "model.layers.%d.mlp.experts.%d.gate_proj.weight", l, j);
        BIND(eu[j], "model.layers.%d.mlp.experts.%d.up_proj.weight", l, j);
        BIND(ed[j], "model.layers.%d.mlp.experts.%d.down_proj.weight", l, j);
    }
    if (tm->S > 0) {
        BIND(sg, "model.layers.%d.mlp.shared_experts.gate_proj.weight", l);
        BIND(su, "model.layers.%d.mlp.shared_experts.up_proj.weight", l);
        BIND(sd, "model.layers.%d.mlp.shared_experts.down_proj.weight", l);
    }
    return ok;
}

static int bind_top(train_model *tm, const char *name, float **w, float **g) {
    int i = params_find(tm->ps, name);
    if (i < 0) return 0;
    *w = params_data(tm->ps, i);
    *g = params_grad(tm->ps, i);
    return 1;
}

ds_status train_model_create(train_model **out, param_store *ps, int B, int T, ds_error *err) {
    *out = NULL;
    const ds_config *c = &ps->cfg;
    if (B < 1 || T < 2)
        return ds_error_set(err, DS_ERR_ARG, "training needs at least 1 sequence of 2 tokens (got %d x %d)", B, T);
    if (T > c->max_position_embeddings)
        return ds_error_set(err, DS_ERR_ARG, "sequence length %d exceeds max_position_embeddings %d", T,
                            c->max_position_embeddings);
    if ((int64_t)B * T > (1 << 24))
        return ds_error_set(err, DS_ERR_LIMIT, "micro-batch of %d x %d tokens is too large", B, T);
    train_model *tm = calloc(1, sizeof *tm);
    if (!tm) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    tm->ps = ps;
    tm->c = *c;
    tm->B = B; tm->T = T; tm->N = B * T; tm->Nm = B * (T - 1);
    tm->n_threads = omp_get_max_threads();
    int64_t rows = TM_CE_FLOATS / (c->vocab_size > 0 ? c->vocab_size : 1);
    tm->ce_rows = (int)(rows < 64 ? 64 : rows > tm->N ? tm->N : rows);
    tm->L = c->num_hidden_layers;
    tm->has_mtp = c->num_nextn_predict_layers > 0;
    tm->D = c->hidden_size; tm->H = c->num_attention_heads;
    tm->dn = c->qk_nope_head_dim; tm->dr = c->qk_rope_head_dim; tm->dv = c->v_head_dim;
    tm->dqk = tm->dn + tm->dr; tm->dc = c->kv_lora_rank; tm->dq = c->q_lora_rank;
    tm->I = c->intermediate_size; tm->MI = c->moe_intermediate_size; tm->S = c->n_shared_experts;
    tm->E = c->n_routed_experts; tm->K = c->num_experts_per_tok; tm->V = c->vocab_size;
    tm->F = tm->I > tm->S * tm->MI ? tm->I : tm->S * tm->MI;
    if (tm->MI > tm->F) tm->F = tm->MI;
    tm->eps = c->rms_norm_eps;
    tm->scale = ds_config_softmax_scale(c);
    tm->rope_mscale = rope_cos_sin_mscale(&c->rope);
    int nb = tm->L + tm->has_mtp;

    tm->layer_moe = malloc(sizeof(int) * (size_t)(nb + 1));
    tm->moe_layer = malloc(sizeof(int) * (size_t)(nb + 1));
    tm->acts = calloc((size_t)nb, sizeof *tm->acts);
    tm->w = calloc((size_t)nb, sizeof *tm->w);
    tm->g = calloc((size_t)nb, sizeof *tm->g);
    if (!tm->layer_moe || !tm->moe_layer || !tm->acts || !tm->w || !tm->g) goto oom;
    for (int l = 0; l < nb; l++) {
        int is_moe = l < tm->L ? ds_config_layer_is_moe(c, l) : tm->E > 0;
        tm->layer_moe[l] = is_moe ? tm->n_moe : -1;
        if (is_moe) tm->moe_layer[tm->n_moe++] = l;
    }

    tm_arena ar = {0};
    tm_plan(&ar, tm);
    tm->bytes = (int64_t)ar.off;
    tm->slab = aligned_alloc(64, (ar.off + 63) & ~(size_t)63);
    if (!tm->slab) {
        train_model_free(tm);
        return ds_error_set(err, DS_ERR_OOM, "out of memory: training activations for %d x %d tokens need %.2f GiB", B,
                            T, (double)ar.off / (1 << 30));
    }
    memset(tm->slab, 0, ar.off);
    ar = (tm_arena){.base = tm->slab};
    tm_plan(&ar, tm);
    rope_inv_freq(tm->inv_freq, &c->rope);

    tm->expert_ptrs = calloc((size_t)nb * 6 * (size_t)(tm->E ? tm->E : 1), sizeof(float *));
    if (!tm->expert_ptrs) goto oom;
    int ok = bind_top(tm, "model.embed_tokens.weight", &tm->embed, &tm->g_embed) &&
             bind_top(tm, "model.norm.weight", &tm->final_norm, &tm->g_final_norm) &&
             bind_top(tm, "lm_head.weight", &tm->lm_head, &tm->g_lm_head);
    for (int l = 0; ok && l < nb; l++) {
        float **store[6];
        for (int j = 0; j < 6; j++) store[j] = tm->expert_ptrs + ((size_t)l * 6 + j) * (size_t)tm->E;
        ok = block_bind(tm, l, store);
    }
    if (ok && tm->has_mtp) {
        char name[128];
        int Lm = tm->L;
        snprintf(name, sizeof name, "model.layers.%d.enorm.weight", Lm);
        ok = bind_top(tm, name, &tm->enorm, &tm->g_enorm);
        snprintf(name, sizeof name, "model.layers.%d.hnorm.weight", Lm);
        ok = ok && bind_top(tm, name, &tm->hnorm, &tm->g_hnorm);
        snprintf(name, sizeof name, "model.layers.%d.eh_proj.weight", Lm);
        ok = ok && bind_top(tm, name, &tm->eh_proj, &tm->g_eh_proj);
        snprintf(name, sizeof name, "model.layers.%d.shared_head.norm.weight", Lm);
        ok = ok && bind_top(tm, name, &tm->head_norm, &tm->g_head_norm);
    }
    if (!ok) {
        train_model_free(tm);
        return ds_error_set(err, DS_ERR_FORMAT, "training: the parameter list lacks a tensor of this config");
    }
    *out = tm;
    return DS_OK;
oom:
    train_model_free(tm);
    return ds_error_set(err, DS_ERR_OOM, "out of memory");
}

void train_model_free(train_model *tm) {
    if (!tm) return;
    free(tm->slab);
    free(tm->expert_ptrs);
    free(tm->acts); free(tm->w); free(tm->g);
    free(tm->layer_moe); free(tm->moe_layer);
    free(tm);
}

int64_t train_model_bytes(const train_model *tm) { return tm->bytes; }

// ---- small helpers -------------------------------------------------------------------------

static void zero(float *p, int64_t n) { memset(p, 0, sizeof(float) * (size_t)n); }

static void add_into(float *y, const float *a, const float *b, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

// ---- dense MLP (also the shared experts): out = down(silu(x gate^T) * (x up^T)) -----------
// x (n, D), g/u (n, F) kept for backward, out (n, D); h is scratch (n, F).

static void mlp_forward_t(float *out, float *g, float *u, float *h, const float *x, const float *wg, const float *wu,
                          const float *wd, int n, int D, int F) {
    matmul_forward_f32(g, x, wg, n, D, F);
    matmul_forward_f32(u, x, wu, n, D, F);
    swiglu_forward(h, g, u, (int64_t)n * F);
    matmul_forward_f32(out, h, wd, n, F, D);
}

// dx (n, D) += ; the swiglu output is recomputed rather than kept.
static void mlp_backward_t(train_model *tm, float *dx, float *dwg, float *dwu, float *dwd, const float *dout,
                           const float *x, const float *g, const float *u, const float *wg, const float *wu,
                           const float *wd, int n, int D, int F) {
    tm_scratch *s = &tm->s;
    int64_t nf = (int64_t)n * F;
    swiglu_forward(s->h, g, u, nf);
    zero(s->dh, nf);
    matmul_backward(s->dh, dwd, dout, s->h, wd, n, F, D);
    zero(s->dg, nf);
    zero(s->du, nf);
    swiglu_backward(s->dg, s->du, s->dh, g, u, nf);
    matmul_backward(dx, dwg, s->dg, x, wg, n, D, F);
    matmul_backward(dx, dwu, s->du, x, wu, n, D, F);
}

// ---- MLA ---------------------------------------------------------------------------------

static attn_dims mla_dims(const train_model *tm, int T) {
    int H = tm->H;
    return (attn_dims){.Tq = T, .Tk = T, .d = tm->dqk, .dv = tm->dv, .start = 0, .scale = tm->scale,
                       .ldq = H * tm->dqk, .ldk = H * tm->dqk, .ldv = H * (tm->dn + tm->dv), .ldo = H * tm->dv};
}

// a->xn1 (n, D) -> out (n, D)
static void mla_forward_t(train_model *tm, const tm_block *w, tm_acts *a, int B, int T, float *out) {
    int N = B * T, D = tm->D, H = tm->H, dn = tm->dn, dr = tm->dr, dv = tm->dv, dc = tm->dc, dqk = tm->dqk;
    int HQ = H * dqk, HKV = H * (dn + dv);
    float *kva = tm->s.dkva; // (N, dc+dr) scratch: only the latent part (copied) and k_pe are used
    if (tm->dq > 0) {
        matmul_forward_f32(a->qa, a->xn1, w->q_a, N, D, tm->dq);
        rmsnorm_forward(a->qan, a->qa, w->q_a_norm, N, tm->dq, tm->dq, tm->eps);
        matmul_forward_f32(a->q, a->qan, w->q_b, N, tm->dq, HQ);
    } else {
        matmul_forward_f32(a->q, a->xn1, w->q, N, D, HQ);
    }
    matmul_forward_f32(kva, a->xn1, w->kv_a, N, D, dc + dr);
    for (int n = 0; n < N; n++) memcpy(a->lat + (int64_t)n * dc, kva + (int64_t)n * (dc + dr), sizeof(float) * (size_t)dc);
    rmsnorm_forward(a->ckvn, a->lat, w->kv_a_norm, N, dc, dc, tm->eps);
    matmul_forward_f32(a->kv, a->ckvn, w->kv_b, N, dc, HKV);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        int pos = n % T;
        float *kpe = kva + (int64_t)n * (dc + dr) + dc;
        rope_forward(kpe, dr, pos, tm->inv_freq, tm->rope_mscale);
        for (int h = 0; h < H; h++) {
            float *qh = a->q + (int64_t)n * HQ + (int64_t)h * dqk;
            float *kh = a->k + (int64_t)n * HQ + (int64_t)h * dqk;
            rope_forward(qh + dn, dr, pos, tm->inv_freq, tm->rope_mscale);
            memcpy(kh, a->kv + (int64_t)n * HKV + (int64_t)h * (dn + dv), sizeof(float) * (size_t)dn);
            memcpy(kh + dn, kpe, sizeof(float) * (size_t)dr);
        }
    }
    attn_dims ad = mla_dims(tm, T);
#pragma omp parallel for schedule(dynamic, 1)
    for (int p = 0; p < B * H; p++) {
        int b = p / H, h = p % H;
        int64_t r = (int64_t)b * T;
        float *scratch = tm->s.attn + (int64_t)omp_get_thread_num() * 2 * tm->T * tm->T;
        attention_forward_head_gemm(a->att + r * H * dv + h * dv, a->lse + (int64_t)p * T, a->q + r * HQ + h * dqk,
                                    a->k + r * HQ + h * dqk, a->kv + r * HKV + h * (dn + dv) + dn, &ad, scratch);
    }
    matmul_forward_f32(out, a->att, w->o, N, H * dv, D);
}

// dout (n, D) is d L / d (attention output); dxn1 (n, D) += d L / d xn1.
static void mla_backward_t(train_model *tm, const tm_block *w, tm_block *g, const tm_acts *a, int B, int T,
                           const float *dout, float *dxn1) {
    tm_scratch *s = &tm->s;
    int N = B * T, D = tm->D, H = tm->H, dn = tm->dn, dr = tm->dr, dv = tm->dv, dc = tm->dc, dqk = tm->dqk;
    int HQ = H * dqk, HKV = H * (dn + dv);
    zero(s->datt, (int64_t)N * H * dv);
    matmul_backward(s->datt, g->o, dout, a->att, w->o, N, H * dv, D);
    zero(s->dq, (int64_t)N * HQ);
    zero(s->dk, (int64_t)N * HQ);
    zero(s->dkv, (int64_t)N * HKV);
    attn_dims ad = mla_dims(tm, T);
#pragma omp parallel for schedule(dynamic, 1)
    for (int p = 0; p < B * H; p++) {
        int b = p / H, h = p % H;
        int64_t r = (int64_t)b * T;
        int64_t oq = r * HQ + h * dqk, ov = r * HKV + h * (dn + dv) + dn, oo = r * H * dv + h * dv;
        float *scratch = s->attn + (int64_t)omp_get_thread_num() * 2 * tm->T * tm->T;
        attention_backward_head_gemm(s->dq + oq, s->dk + oq, s->dkv + ov, s->datt + oo, a->att + oo, a->q + oq,
                                     a->k + oq, a->kv + ov, a->lse + (int64_t)p * T, &ad, scratch);
    }
    // Undo the rotations and split dk: k_nope goes back to kv_b_proj's output, the k_pe
    // parts of all heads sum into the one shared k_pe.
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        int pos = n % T;
        float *dkva = s->dkva + (int64_t)n * (dc + dr);
        float *dkpe = dkva + dc;
        memset(dkpe, 0, sizeof(float) * (size_t)dr);
        for (int h = 0; h < H; h++) {
            float *dqh = s->dq + (int64_t)n * HQ + (int64_t)h * dqk;
            const float *dkh = s->dk + (int64_t)n * HQ + (int64_t)h * dqk;
            float *dkvh = s->dkv + (int64_t)n * HKV + (int64_t)h * (dn + dv);
            rope_backward(dqh + dn, dr, pos, tm->inv_freq, tm->rope_mscale);
            for (int i = 0; i < dn; i++) dkvh[i] += dkh[i];
            for (int i = 0; i < dr; i++) dkpe[i] += dkh[dn + i];
        }
        rope_backward(dkpe, dr, pos, tm->inv_freq, tm->rope_mscale);
    }
    zero(s->dckvn, (int64_t)N * dc);
    matmul_backward(s->dckvn, g->kv_b, s->dkv, a->ckvn, w->kv_b, N, dc, HKV);
    zero(s->dlat, (int64_t)N * dc);
    rmsnorm_backward(s->dlat, g->kv_a_norm, s->dckvn, a->lat, w->kv_a_norm, N, dc, dc, tm->eps);
    for (int n = 0; n < N; n++)
        memcpy(s->dkva + (int64_t)n * (dc + dr), s->dlat + (int64_t)n * dc, sizeof(float) * (size_t)dc);
    matmul_backward(dxn1, g->kv_a, s->dkva, a->xn1, w->kv_a, N, D, dc + dr);
    if (tm->dq > 0) {
        int dq = tm->dq;
        zero(s->dqan, (int64_t)N * dq);
        matmul_backward(s->dqan, g->q_b, s->dq, a->qan, w->q_b, N, dq, HQ);
        zero(s->dqa, (int64_t)N * dq);
        rmsnorm_backward(s->dqa, g->q_a_norm, s->dqan, a->qa, w->q_a_norm, N, dq, dq, tm->eps);
        matmul_backward(dxn1, g->q_a, s->dqa, a->xn1, w->q_a, N, D, dq);
    } else {
        matmul_backward(dxn1, g->q, s->dq, a->xn1, w->q, N, D, HQ);
    }
}

// ---- DeepSeekMoE -------------------------------------------------------------------------

// a->xn2 (n, D) -> out (n, D). Routing as inference does it (moe_route_topk), then tokens
// grouped per expert so each expert is three GEMMs.
static void moe_forward_t(train_model *tm, const tm_block *w, tm_acts *a, int n, float *out, int *load) {
    tm_scratch *s = &tm->s;
    int D = tm->D, E = tm->E, K = tm->K, MI = tm->MI;
    matmul_forward_f32(a->logits, a->xn2, w->router, n, D, E);
    for (int t = 0; t < n; t++)
        moe_route_topk(&tm->c, w->bias, a->logits + (int64_t)t * E, s->route, s->route + E, a->idx + (int64_t)t * K,
                       a->w + (int64_t)t * K);
    int *cnt = a->exp_start; // counts first, then prefix sums
    memset(cnt, 0, sizeof(int) * (size_t)(E + 1));
    for (int64_t i = 0; i < (int64_t)n * K; i++) cnt[a->idx[i] + 1]++;
    if (load)
        for (int e = 0; e < E; e++) load[e] += cnt[e + 1];
    for (int e = 0; e < E; e++) cnt[e + 1] += cnt[e];
    int *fill = s->fill;
    memcpy(fill, a->exp_start, sizeof(int) * (size_t)E);
    for (int t = 0; t < n; t++)
        for (int k = 0; k < K; k++) {
            int e = a->idx[t * K + k], r = fill[e]++;
            a->exp_tok[r] = t;
            a->exp_slot[r] = t * K + k;
        }
    if (tm->S > 0) mlp_forward_t(out, a->g, a->u, s->h, a->xn2, w->sg, w->su, w->sd, n, D, tm->S * MI);
    else zero(out, (int64_t)n * D);
    for (int e = 0; e < E; e++) {
        int r0 = a->exp_start[e], ne = a->exp_start[e + 1] - r0;
        if (ne == 0) continue;
        for (int r = 0; r < ne; r++)
            memcpy(s->xe + (int64_t)r * D, a->xn2 + (int64_t)a->exp_tok[r0 + r] * D, sizeof(float) * (size_t)D);
        float *ge = a->eg + (int64_t)r0 * MI, *ue = a->eu + (int64_t)r0 * MI, *ye = a->ey + (int64_t)r0 * D;
        mlp_forward_t(ye, ge, ue, s->he, s->xe, w->eg[e], w->eu[e], w->ed[e], ne, D, MI);
        for (int r = 0; r < ne; r++)
            axpy_f32(out + (int64_t)a->exp_tok[r0 + r] * D, a->w[a->exp_slot[r0 + r]], ye + (int64_t)r * D, D);
    }
}

// dout (n, D) = d L / d out; dxn2 (n, D) +=. The balance loss of each sequence (weight
// bal_w, 0 = off) joins here because its gradient enters at the router logits.
static double moe_backward_t(train_model *tm, const tm_block *w, tm_block *g, const tm_acts *a, int B, int T,
                             const float *dout, float *dxn2, float bal_w) {
    tm_scratch *s = &tm->s;
    int n = B * T, D = tm->D, E = tm->E, K = tm->K, MI = tm->MI;
    if (tm->S > 0)
        mlp_backward_t(tm, dxn2, g->sg, g->su, g->sd, dout, a->xn2, a->g, a->u, w->sg, w->su, w->sd, n, D, tm->S * MI);
    // out_t = sum_k w_tk y_k(t): d w_tk = dout_t . y_k(t), d y_k(t) = w_tk dout_t
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n * K; r++)
        s->dw[a->exp_slot[r]] = dot_f32(dout + (int64_t)a->exp_tok[r] * D, a->ey + (int64_t)r * D, D);
    for (int e = 0; e < E; e++) {
        int r0 = a->exp_start[e], ne = a->exp_start[e + 1] - r0;
        if (ne == 0) continue;
        for (int r = 0; r < ne; r++) {
            int t = a->exp_tok[r0 + r];
            float wt = a->w[a->exp_slot[r0 + r]];
            memcpy(s->xe + (int64_t)r * D, a->xn2 + (int64_t)t * D, sizeof(float) * (size_t)D);
            const float *d = dout + (int64_t)t * D;
            float *dy = s->dye + (int64_t)r * D;
            for (int i = 0; i < D; i++) dy[i] = wt * d[i];
        }
        const float *ge = a->eg + (int64_t)r0 * MI, *ue = a->eu + (int64_t)r0 * MI;
        int64_t nm = (int64_t)ne * MI;
        swiglu_forward(s->he, ge, ue, nm);
        zero(s->dhe, nm);
        matmul_backward(s->dhe, g->ed[e], s->dye, s->he, w->ed[e], ne, MI, D);
        zero(s->dge, nm);
        zero(s->due, nm);
        swiglu_backward(s->dge, s->due, s->dhe, ge, ue, nm);
        zero(s->dxe, (int64_t)ne * D);
        matmul_backward(s->dxe, g->eg[e], s->dge, s->xe, w->eg[e], ne, D, MI);
        matmul_backward(s->dxe, g->eu[e], s->due, s->xe, w->eu[e], ne, D, MI);
        for (int r = 0; r < ne; r++)
            axpy_f32(dxn2 + (int64_t)a->exp_tok[r0 + r] * D, 1.0f, s->dxe + (int64_t)r * D, D);
    }
    zero(s->dlogits, (int64_t)n * E);
    moe_gate_backward(s->dlogits, a->logits, a->idx, s->dw, n, E, K, tm->c.scoring_func == DS_SCORE_SIGMOID,
                      tm->c.norm_topk_prob, tm->c.routed_scaling_factor);
    double bal = 0;
    if (bal_w > 0)
        for (int b = 0; b < B; b++)
            bal += moe_balance_loss(a->logits + (int64_t)b * T * E, a->idx + (int64_t)b * T * K, T, E, K,
                                    tm->c.scoring_func == DS_SCORE_SIGMOID, bal_w, s->dlogits + (int64_t)b * T * E);
    matmul_backward(dxn2, g->router, s->dlogits, a->xn2, w->router, n, D, E);
    return bal;
}

// ---- one transformer block ---------------------------------------------------------------

// a->x_in (B*T, D) -> x_out (B*T, D)
static void block_forward_t(train_model *tm, int l, int B, int T, float *x_out) {
    const tm_block *w = &tm->w[l];
    tm_acts *a = &tm->acts[l];
    int n = B * T, D = tm->D;
    int64_t nd = (int64_t)n * D;
    rmsnorm_forward(a->xn1, a->x_in, w->input_norm, n, D, D, tm->eps);
    mla_forward_t(tm, w, a, B, T, tm->s.tmp);
    add_into(a->x_mid, a->x_in, tm->s.tmp, nd);
    rmsnorm_forward(a->xn2, a->x_mid, w->post_norm, n, D, D, tm->eps);
    if (a->is_moe) {
        int j = tm->layer_moe[l];
        moe_forward_t(tm, w, a, n, tm->s.tmp, tm->count_load ? tm->load + (int64_t)j * tm->E : NULL);
    } else {
        mlp_forward_t(tm->s.tmp, a->g, a->u, tm->s.h, a->xn2, w->gate, w->up, w->down, n, D, tm->I);
    }
    add_into(x_out, a->x_mid, tm->s.tmp, nd);
}

// dx (B*T, D): d L / d x_out on entry, d L / d x_in on return. Returns the balance loss.
static double block_backward_t(train_model *tm, int l, int B, int T, float *dx, float bal_w) {
    const tm_block *w = &tm->w[l];
    tm_block *g = &tm->g[l];
    const tm_acts *a = &tm->acts[l];
    tm_scratch *s = &tm->s;
    int n = B * T, D = tm->D;
    double bal = 0;
    zero(s->dxn, (int64_t)n * D);
    if (a->is_moe) bal = moe_backward_t(tm, w, g, a, B, T, dx, s->dxn, bal_w);
    else mlp_backward_t(tm, s->dxn, g->gate, g->up, g->down, dx, a->xn2, a->g, a->u, w->gate, w->up, w->down, n, D, tm->I);
    rmsnorm_backward(dx, g->post_norm, s->dxn, a->x_mid, w->post_norm, n, D, D, tm->eps);
    zero(s->dxn, (int64_t)n * D);
    mla_backward_t(tm, w, g, a, B, T, dx, s->dxn);
    rmsnorm_backward(dx, g->input_norm, s->dxn, a->x_in, w->input_norm, n, D, D, tm->eps);
    return bal;
}

// ---- lm_head + cross-entropy, in row chunks ----------------------------------------------
// x (n, D) normalised hidden rows, targets (n) (< 0 masked). Adds the unweighted CE sum and
// count; with dx, also backpropagates sum_i w_i * CE_i into dx (n, D) (+=) and the head, where
// w_i is `weight`, or lw->token_weight[i], or lw->coef(i, log p_i) (lw may be NULL). Per-row
// log p(target) and entropy go to lw->logp / lw->entropy when set. Returns sum_i w_i * CE_i.
static double head_loss(train_model *tm, const float *x, const int *targets, int n, float weight,
                        const train_loss_weights *lw, float *dx, double *sum, int64_t *count) {
    tm_scratch *s = &tm->s;
    int D = tm->D, V = tm->V;
    double wsum = 0;
    const float *tw = lw ? lw->token_weight : NULL;
    train_token_coef_fn coef = lw && !tw ? lw->coef : NULL;
    for (int r0 = 0; r0 < n; r0 += tm->ce_rows) {
        int m = n - r0 < tm->ce_rows ? n - r0 : tm->ce_rows;
        const float *xr = x + (int64_t)r0 * D;
        matmul_forward_f32(s->ce_logits, xr, tm->lm_head, m, D, V);
        if (lw && lw->entropy) {
            // H = lse - sum_j p_j z_j, before the in-place CE turns logits into gradients
#pragma omp parallel for schedule(static) if ((int64_t)m * V >= 65536)
            for (int i = 0; i < m; i++) lw->entropy[r0 + i] = softmax_entropy_f32(s->ce_logits + (int64_t)i * V, V);
        }
        for (int i = 0; i < m; i++) s->ce_w[i] = tw ? tw[r0 + i] : coef ? 1.0f : weight;
        crossentropy_forward_backward(s->ce_loss, dx ? s->ce_logits : NULL, s->ce_logits, targets + r0, s->ce_w, m, V);
        for (int i = 0; i < m; i++) {
            if (lw && lw->logp) lw->logp[r0 + i] = -s->ce_loss[i];
            if (targets[r0 + i] < 0) continue;
            if (coef) {
                // the CE gradient was taken with weight 1: scale the row by this token's weight
                float c = coef(lw->coef_ctx, r0 + i, -s->ce_loss[i]);
                s->ce_w[i] = c;
                if (dx) {
                    float *dl = s->ce_logits + (int64_t)i * V;
                    for (int j = 0; j < V; j++) dl[j] *= c;
                }
            }
            *sum += s->ce_loss[i];
            (*count)++;
            wsum += (double)s->ce_w[i] * s->ce_loss[i];
        }
        if (dx) matmul_backward(dx + (int64_t)r0 * D, tm->g_lm_head, s->ce_logits, xr, tm->lm_head, m, D, V);
    }
    return wsum;
}

// ---- whole model -------------------------------------------------------------------------

static void main_forward(train_model *tm, const int32_t *inputs, int B, int T) {
    int N = B * T, D = tm->D;
    embedding_forward(tm->acts[0].x_in, tm->embed, (const int *)inputs, N, D);
    for (int l = 0; l < tm->L; l++)
        block_forward_t(tm, l, B, T, l + 1 < tm->L ? tm->acts[l + 1].x_in : tm->x_final);
    rmsnorm_forward(tm->xf, tm->x_final, tm->final_norm, N, D, D, tm->eps);
}

// MTP module forward over the B*(T-1) positions: (h_i, token i+1) -> token i+2.
static void mtp_forward(train_model *tm, const int32_t *inputs, const int32_t *targets, int B, int T) {
    int Tm = T - 1, Nm = B * Tm, D = tm->D, Lm = tm->L;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < Tm; i++) {
            int m = b * Tm + i;
            tm->m_tok[m] = inputs[b * T + i + 1];
            tm->m_tgt[m] = targets[b * T + i + 1];
            memcpy(tm->m_hraw + (int64_t)m * D, tm->xf + ((int64_t)b * T + i) * D, sizeof(float) * (size_t)D);
        }
    embedding_forward(tm->m_eraw, tm->embed, tm->m_tok, Nm, D);
    // Embedding first: concat(enorm(emb), hnorm(h)) (architecture page, section 5).
    rmsnorm_forward(tm->m_da, tm->m_eraw, tm->enorm, Nm, D, D, tm->eps);
    rmsnorm_forward(tm->m_db, tm->m_hraw, tm->hnorm, Nm, D, D, tm->eps);
    for (int m = 0; m < Nm; m++) {
        memcpy(tm->m_cat + (int64_t)m * 2 * D, tm->m_da + (int64_t)m * D, sizeof(float) * (size_t)D);
        memcpy(tm->m_cat + (int64_t)m * 2 * D + D, tm->m_db + (int64_t)m * D, sizeof(float) * (size_t)D);
    }
    matmul_forward_f32(tm->acts[Lm].x_in, tm->m_cat, tm->eh_proj, Nm, 2 * D, D);
    block_forward_t(tm, Lm, B, Tm, tm->m_final);
    rmsnorm_forward(tm->m_xf, tm->m_final, tm->head_norm, Nm, D, D, tm->eps);
}

// Backward of the MTP module from d L / d m_xf (in m_dxf); adds into tm->dxf rows.
static double mtp_backward(train_model *tm, int B, int T, float bal_w) {
    int Tm = T - 1, Nm = B * Tm, D = tm->D, Lm = tm->L;
    int64_t nd = (int64_t)Nm * D;
    zero(tm->m_dx, nd);
    rmsnorm_backward(tm->m_dx, tm->g_head_norm, tm->m_dxf, tm->m_final, tm->head_norm, Nm, D, D, tm->eps);
    double bal = block_backward_t(tm, Lm, B, Tm, tm->m_dx, bal_w);
    zero(tm->m_dcat, 2 * nd);
    matmul_backward(tm->m_dcat, tm->g_eh_proj, tm->m_dx, tm->m_cat, tm->eh_proj, Nm, 2 * D, D);
    for (int m = 0; m < Nm; m++) {
        memcpy(tm->m_da + (int64_t)m * D, tm->m_dcat + (int64_t)m * 2 * D, sizeof(float) * (size_t)D);
        memcpy(tm->m_db + (int64_t)m * D, tm->m_dcat + (int64_t)m * 2 * D + D, sizeof(float) * (size_t)D);
    }
    float *de = tm->m_dx; // reuse: the block gradient is consumed
    zero(de, nd);
    rmsnorm_backward(de, tm->g_enorm, tm->m_da, tm->m_eraw, tm->enorm, Nm, D, D, tm->eps);
    embedding_backward(tm->g_embed, de, tm->m_tok, Nm, D);
    zero(tm->m_dxf, nd); // reuse for d h
    rmsnorm_backward(tm->m_dxf, tm->g_hnorm, tm->m_db, tm->m_hraw, tm->hnorm, Nm, D, D, tm->eps);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < Tm; i++)
            axpy_f32(tm->dxf + ((int64_t)b * T + i) * D, 1.0f, tm->m_dxf + ((int64_t)b * Tm + i) * D, D);
    return bal;
}

static void check_shape(const train_model *tm, int B, int T) {
    if (B < 1 || B > tm->B || T < 2 || T > tm->T || (int64_t)B * T > tm->N) {
        fprintf(stderr, "train_model: micro-batch %d x %d exceeds the planned %d x %d\n", B, T, tm->B, tm->T);
        abort(); // a caller bug, not an input error: the CLI validates sizes first
    }
}

void train_model_step(train_model *tm, const int32_t *inputs, const int32_t *targets, int B, int T,
                      const train_loss_weights *w, train_loss *out) {
    check_shape(tm, B, T);
    int N = B * T, D = tm->D;
    int mtp = tm->has_mtp && w->mtp_weight > 0 && T >= 2;
    tm->count_load = 1;
    main_forward(tm, inputs, B, T);
    double ce = 0, mtp_sum = 0, bal = 0;
    int64_t ce_n = 0, mtp_n = 0;
    zero(tm->dxf, (int64_t)N * D);
    double main_loss = head_loss(tm, tm->xf, (const int *)targets, N, w->ce_weight, w, tm->dxf, &ce, &ce_n);
    if (mtp) {
        mtp_forward(tm, inputs, targets, B, T);
        int Nm = B * (T - 1);
        zero(tm->m_dxf, (int64_t)Nm * D);
        head_loss(tm, tm->m_xf, tm->m_tgt, Nm, w->mtp_weight, NULL, tm->m_dxf, &mtp_sum, &mtp_n);
        bal += mtp_backward(tm, B, T, w->balance_weight);
    }
    tm->count_load = 0;
    zero(tm->dx, (int64_t)N * D);
    rmsnorm_backward(tm->dx, tm->g_final_norm, tm->dxf, tm->x_final, tm->final_norm, N, D, D, tm->eps);
    for (int l = tm->L - 1; l >= 0; l--) bal += block_backward_t(tm, l, B, T, tm->dx, w->balance_weight);
    embedding_backward(tm->g_embed, tm->dx, (const int *)inputs, N, D);

    out->ce_sum += ce;
    out->ce_count += ce_n;
    out->mtp_sum += mtp_sum;
    out->mtp_count += mtp_n;
    out->balance += bal;
    out->loss += main_loss + w->mtp_weight * mtp_sum + bal;
}

void train_model_eval(train_model *tm, const int32_t *inputs, const int32_t *targets, int B, int T,
                      const train_loss_weights *w, train_loss *out) {
    check_shape(tm, B, T);
    tm->count_load = 0;
    main_forward(tm, inputs, B, T);
    train_loss_weights outs = {.logp = w->logp, .entropy = w->entropy};
    head_loss(tm, tm->xf, (const int *)targets, B * T, 1.0f, &outs, NULL, &out->ce_sum, &out->ce_count);
    if (tm->has_mtp && w->mtp_weight > 0) {
        mtp_forward(tm, inputs, targets, B, T);
        head_loss(tm, tm->m_xf, tm->m_tgt, B * (T - 1), 1.0f, NULL, NULL, &out->mtp_sum, &out->mtp_count);
    }
}

// ---- load balancing ----------------------------------------------------------------------

int train_model_n_moe_layers(const train_model *tm) { return tm->n_moe; }
int train_model_moe_layer(const train_model *tm, int j) { return tm->moe_layer[j]; }
const int *train_model_load(const train_model *tm, int j) { return tm->load + (int64_t)j * tm->E; }
void train_model_reset_load(train_model *tm) {
    memset(tm->load, 0, sizeof(int) * (size_t)tm->n_moe * (size_t)(tm->E ? tm->E : 1));
}

void train_model_update_bias(train_model *tm, float gamma, float *imbalance) {
    for (int j = 0; j < tm->n_moe; j++) {
        const int *load = train_model_load(tm, j);
        int64_t total = 0;
        for (int e = 0; e < tm->E; e++) total += load[e];
        float *bias = tm->w[tm->moe_layer[j]].bias;
        float imb = 0;
        if (total > 0) {
            if (bias && gamma > 0) imb = moe_bias_update(bias, load, tm->E, gamma);
            else {
                int mx = 0;
                for (int e = 0; e < tm->E; e++) mx = load[e] > mx ? load[e] : mx;
                imb = (float)(mx / ((double)total / tm->E));
            }
        }
        if (imbalance) imbalance[j] = imb;
    }
}

// ---- FLOPs -------------------------------------------------------------------------------

static double block_macs(const ds_config *c, int moe, int T) {
    double D = c->hidden_size, H = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    double dv = c->v_head_dim, dc = c->kv_lora_rank, dq = c->q_lora_rank;
    double m = dq > 0 ? D * dq + dq * H * (dn + dr) : D * H * (dn + dr);
    m += D * (dc + dr) + dc * H * (dn + dv) + H * dv * D;
    m += H * (dn + dr + dv) * (T + 1) / 2.0; // causal attention: (T+1)/2 keys on average
    if (moe)
        m += D * c->n_routed_experts +
             3.0 * D * c->moe_intermediate_size * (c->num_experts_per_tok + c->n_shared_experts);
    else
        m += 3.0 * D * c->intermediate_size;
    return m;
}

double train_model_flops_per_token(const ds_config *c, int T, int with_mtp) {
    double D = c->hidden_size, V = c->vocab_size, m = V * D;
    for (int l = 0; l < c->num_hidden_layers; l++) m += block_macs(c, ds_config_layer_is_moe(c, l), T);
    if (with_mtp && c->num_nextn_predict_layers > 0)
        m += 2 * D * D + block_macs(c, c->n_routed_experts > 0, T) + V * D;
    return 6.0 * m; // 2 FLOPs per MAC forward, 4 backward
}
