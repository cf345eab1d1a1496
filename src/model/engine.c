// Engine: memory plan, batch validation and the forward pass over the whole model.
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/engine_internal.h"

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// Carves every buffer out of one slab. With base == NULL it only sums the sizes, so the
// plan `deepseek info` prints and what ds_engine_create allocates cannot disagree.
typedef struct {
    char *base;
    int64_t off;
} slab_carver;

static void *carve(slab_carver *s, int64_t bytes) {
    int64_t at = (s->off + 63) & ~(int64_t)63; // cache-line aligned
    s->off = at + bytes;
    return s->base ? s->base + at : NULL;
}
#define CARVE_F(s, n) ((float *)carve((s), (int64_t)(n) * (int64_t)sizeof(float)))
#define CARVE_I(s, n) ((int *)carve((s), (int64_t)(n) * (int64_t)sizeof(int)))

// Widest input dimension of any matmul, for the GEMM conversion tile.
static int64_t engine_max_in(const ds_config *c) {
    int64_t H = c->num_attention_heads, D = c->hidden_size;
    int64_t m = max64(2 * D, max64(c->intermediate_size, max64(H * c->v_head_dim, c->kv_lora_rank)));
    m = max64(m, max64(c->q_lora_rank, (int64_t)c->n_shared_experts * c->moe_intermediate_size));
    return max64(m, c->moe_intermediate_size);
}

static void engine_carve(ds_engine *e, const ds_config *c, const ds_engine_limits *lim, int n_threads,
                         slab_carver *s, ds_engine_plan *plan) {
    int64_t N = lim->max_tokens, D = c->hidden_size, H = c->num_attention_heads;
    int64_t dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim, dc = c->kv_lora_rank;
    int64_t E = c->n_routed_experts, K = c->num_experts_per_tok > 0 ? c->num_experts_per_tok : 0;
    int64_t S = lim->max_seqs, T = lim->max_ctx, lat = dc + dr;
    int64_t layers = c->num_hidden_layers + (c->num_nextn_predict_layers > 0 ? 1 : 0);
    int64_t F = max64(c->intermediate_size, max64((int64_t)c->n_shared_experts * c->moe_intermediate_size,
                                                  max64(c->moe_intermediate_size, 2 * E)));
    ds_engine tmp, *p = e ? e : &tmp;

    int64_t o0 = s->off;
    p->cache = CARVE_F(s, layers * S * T * lat);
    p->seq_len = CARVE_I(s, S);
    p->mtp_len = CARVE_I(s, S);
    int64_t o1 = s->off;
    p->x = CARVE_F(s, N * D);
    p->xn = CARVE_F(s, N * D);
    p->hidden = CARVE_F(s, N * D);
    p->out = CARVE_F(s, N * D);
    p->qa = CARVE_F(s, N * (c->q_lora_rank > 0 ? c->q_lora_rank : 1));
    p->q = CARVE_F(s, N * H * (dn + dr));
    p->kva = CARVE_F(s, N * lat);
    p->att = CARVE_F(s, N * H * dv);
    p->ffn_g = CARVE_F(s, N * F);
    p->ffn_u = CARVE_F(s, N * F);
    p->xe = CARVE_F(s, N * D);
    p->ye = CARVE_F(s, N * D);
    p->cat = CARVE_F(s, N * 2 * D);
    p->logit_rows = CARVE_F(s, (int64_t)lim->max_logits * D);
    p->router = CARVE_F(s, N * max64(E, 1));
    p->topk_idx = CARVE_I(s, N * max64(K, 1));
    p->topk_w = CARVE_F(s, N * max64(K, 1));
    p->exp_count = CARVE_I(s, max64(E, 1));
    p->exp_start = CARVE_I(s, E + 1);
    p->exp_tok = CARVE_I(s, N * max64(K, 1));
    p->exp_w = CARVE_F(s, N * max64(K, 1));
    p->groups = (eng_seq_group *)carve(s, N * (int64_t)sizeof(eng_seq_group));
    p->group_tok = CARVE_I(s, N);
    int64_t o2 = s->off;
    p->gemm_work = CARVE_F(s, matmul_work_floats(engine_max_in(c)));
    p->kv_t = CARVE_F(s, T * H * (dn + dv));
    p->kv_b_f32 = CARVE_F(s, H * (dn + dv) * dc);
    p->lat_rows = CARVE_F(s, T * dc);
    // absorbed attention: per head of a block, q_abs|q_pe (dc+dr), lat (dc), scores (max_ctx)
    int64_t hb = H < ENG_ATTN_HEADS ? H : ENG_ATTN_HEADS;
    p->thread_scratch_stride = (hb * (2 * dc + dr + eng_score_stride(lim->max_ctx)) + 15) & ~(int64_t)15;
    p->thread_scratch = CARVE_F(s, n_threads * p->thread_scratch_stride);
    p->moe_scratch = NULL;
    p->moe_ye = NULL;
    p->moe_tasks = NULL;
    p->moe_unit1 = p->moe_unit3 = NULL;
    if (E > 0 && K > 0 && n_threads > 1) {
        int64_t P = ENG_MOE_PAR_TOKENS, tasks = P * K + 1, W;
        W = p->moe_width = max64(c->moe_intermediate_size, (int64_t)c->n_shared_experts * c->moe_intermediate_size);
        // x (P, D), its quantized form, g and u (P, W), the quantized hidden activations
        p->moe_scratch_stride = (P * D + matmul_few_work_floats(D) + 2 * P * W + matmul_few_work_floats(W) + 15) & ~(int64_t)15;
        p->moe_scratch = CARVE_F(s, tasks * p->moe_scratch_stride);
        p->moe_ye = CARVE_F(s, P * K * D);
        p->moe_tasks = (eng_moe_task *)carve(s, tasks * (int64_t)sizeof(eng_moe_task));
        p->moe_unit1 = CARVE_I(s, tasks + 1);
        p->moe_unit3 = CARVE_I(s, tasks + 1);
    }
    p->inv_freq = CARVE_F(s, dr / 2);
    int64_t o3 = s->off;
    if (plan) {
        plan->cache_bytes = o1 - o0;
        plan->cache_bytes_per_token = layers * lat * (int64_t)sizeof(float);
        plan->activation_bytes = o2 - o1;
        plan->scratch_bytes = o3 - o2;
        plan->total_bytes = o3 - o0;
    }
}

void ds_engine_plan_memory(const ds_config *c, const ds_engine_limits *lim, int n_threads, ds_engine_plan *plan) {
    slab_carver s = {NULL, 0};
    engine_carve(NULL, c, lim, n_threads, &s, plan);
}

ds_status ds_engine_create(ds_engine **out, const ds_model *m, const ds_engine_limits *lim, ds_error *err) {
    const ds_config *c = &m->cfg;
    *out = NULL;
    if (lim->max_tokens < 1 || lim->max_seqs < 1 || lim->max_ctx < 1 || lim->max_logits < 0 ||
        lim->max_logits > lim->max_tokens)
        return ds_error_set(err, DS_ERR_ARG, "engine limits: need max_tokens, max_seqs, max_ctx >= 1 and 0 <= max_logits <= max_tokens");
    if (lim->max_ctx > c->max_position_embeddings)
        return ds_error_set(err, DS_ERR_ARG, "context %d exceeds the model's max_position_embeddings %d",
                            lim->max_ctx, c->max_position_embeddings);
    ds_engine *e = calloc(1, sizeof *e);
    if (!e) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    e->m = m;
    e->lim = *lim;
    e->n_threads = omp_get_max_threads();
    ds_engine_plan plan;
    ds_engine_plan_memory(c, lim, e->n_threads, &plan);
    e->slab = aligned_alloc(64, (size_t)((plan.total_bytes + 63) & ~(int64_t)63));
    if (!e->slab) {
        free(e);
        return ds_error_set(err, DS_ERR_OOM, "out of memory: the engine needs %.1f MiB (cache %.1f MiB); lower --ctx or the batch",
                            plan.total_bytes / 1048576.0, plan.cache_bytes / 1048576.0);
    }
    slab_carver s = {e->slab, 0};
    engine_carve(e, c, lim, e->n_threads, &s, NULL);
    memset(e->seq_len, 0, (size_t)lim->max_seqs * sizeof(int));
    memset(e->mtp_len, 0, (size_t)lim->max_seqs * sizeof(int));
    e->n_cache_layers = c->num_hidden_layers + (c->num_nextn_predict_layers > 0 ? 1 : 0);
    e->lat_dim = c->kv_lora_rank + c->qk_rope_head_dim;
    int rb = (int)(4096 / e->lat_dim) & ~3;
    e->attn_row_block = rb < 4 ? 4 : rb > 64 ? 64 : rb;
    e->attn_score_stride = eng_score_stride(lim->max_ctx);
    e->softmax_scale = ds_config_softmax_scale(c);
    e->rope_mscale = rope_cos_sin_mscale(&c->rope);
    rope_inv_freq(e->inv_freq, &c->rope);
    *out = e;
    return DS_OK;
}

void ds_engine_free(ds_engine *e) {
    if (!e) return;
    free(e->slab);
    free(e);
}

int ds_engine_seq_len(const ds_engine *e, int seq) { return e->seq_len[seq]; }
int ds_engine_seq_mtp_len(const ds_engine *e, int seq) { return e->mtp_len[seq]; }

void ds_engine_seq_truncate(ds_engine *e, int seq, int len) {
    if (seq < 0 || seq >= e->lim.max_seqs || len < 0) return;
    if (e->seq_len[seq] > len) e->seq_len[seq] = len;
    if (e->mtp_len[seq] > len) e->mtp_len[seq] = len;
}

// Checks the batch against the limits and the caches (`lens` = main or MTP lengths) and
// groups its tokens by sequence.
static ds_status engine_plan_batch(ds_engine *e, const ds_batch *b, const int *lens, int *n_want, ds_error *err) {
    const ds_config *c = &e->m->cfg;
    if (b->n < 1 || b->n > e->lim.max_tokens)
        return ds_error_set(err, DS_ERR_LIMIT, "batch of %d tokens: the engine was planned for 1..%d", b->n, e->lim.max_tokens);
    e->n_groups = 0;
    *n_want = 0;
    for (int i = 0; i < b->n; i++) {
        int t = b->token[i], s = b->seq[i], p = b->pos[i];
        if (t < 0 || t >= c->vocab_size)
            return ds_error_set(err, DS_ERR_ARG, "token id %d is outside the vocabulary [0, %d)", t, c->vocab_size);
        if (s < 0 || s >= e->lim.max_seqs)
            return ds_error_set(err, DS_ERR_ARG, "sequence %d is outside [0, %d)", s, e->lim.max_seqs);
        if (p >= e->lim.max_ctx)
            return ds_error_set(err, DS_ERR_LIMIT, "position %d exceeds the context of %d tokens", p, e->lim.max_ctx);
        if (b->want_logits && b->want_logits[i]) ++*n_want;
        int g = 0;
        while (g < e->n_groups && e->groups[g].seq != s) g++;
        if (g == e->n_groups) {
            e->groups[g] = (eng_seq_group){.seq = s, .start = lens[s], .n = 0, .tok = NULL};
            e->n_groups++;
        }
        eng_seq_group *gr = &e->groups[g];
        if (p != gr->start + gr->n)
            return ds_error_set(err, DS_ERR_ARG, "token %d of sequence %d has position %d, expected %d (positions must continue the sequence)",
                                i, s, p, gr->start + gr->n);
        gr->n++;
    }
    if (*n_want > e->lim.max_logits)
        return ds_error_set(err, DS_ERR_LIMIT, "%d logit rows requested: the engine was planned for %d", *n_want, e->lim.max_logits);
    // Lay out each group's token indices contiguously in group_tok.
    int off = 0;
    for (int g = 0; g < e->n_groups; g++) {
        e->groups[g].tok = e->group_tok + off;
        off += e->groups[g].n;
        e->groups[g].n = 0;
    }
    for (int i = 0; i < b->n; i++) {
        int g = 0;
        while (e->groups[g].seq != b->seq[i]) g++;
        e->groups[g].tok[e->groups[g].n++] = i;
    }
    return DS_OK;
}

static void block_forward(ds_engine *e, const ds_block *blk, int layer, const ds_batch *b) {
    const ds_config *c = &e->m->cfg;
    int n = b->n;
    int64_t nd = (int64_t)n * c->hidden_size;
    rmsnorm_forward(e->xn, e->x, blk->input_norm, n, c->hidden_size, c->hidden_size, c->rms_norm_eps);
    mla_forward(e, blk, layer, b);
    for (int64_t i = 0; i < nd; i++) e->x[i] += e->out[i];
    rmsnorm_forward(e->xn, e->x, blk->post_norm, n, c->hidden_size, c->hidden_size, c->rms_norm_eps);
    ffn_forward(e, blk, n);
    for (int64_t i = 0; i < nd; i++) e->x[i] += e->out[i];
}

// Normalises x with `norm` into e->hidden and projects the wanted rows with `head`.
static void engine_head(ds_engine *e, const ds_batch *b, const float *norm, const ds_tensor *head, float *logits) {
    const ds_config *c = &e->m->cfg;
    int64_t D = c->hidden_size;
    rmsnorm_forward(e->hidden, e->x, norm, b->n, (int)D, D, c->rms_norm_eps);
    if (!b->want_logits || !logits) return;
    int k = 0;
    for (int i = 0; i < b->n; i++)
        if (b->want_logits[i]) memcpy(e->logit_rows + k++ * D, e->hidden + i * D, (size_t)D * sizeof(float));
    if (k) eng_matmul(e, logits, e->logit_rows, head, k);
}

static void engine_embed(ds_engine *e, const ds_tensor *embed, const ds_batch *b, float *x) {
    int64_t D = e->m->cfg.hidden_size;
    for (int i = 0; i < b->n; i++) ds_tensor_row_to_f32(embed, b->token[i], x + i * D);
}

static void engine_advance(ds_engine *e, int *lens) {
    for (int g = 0; g < e->n_groups; g++) lens[e->groups[g].seq] = e->groups[g].start + e->groups[g].n;
}

ds_status ds_engine_forward(ds_engine *e, const ds_batch *b, float *logits, ds_error *err) {
    const ds_model *m = e->m;
    int n_want;
    ds_status st = engine_plan_batch(e, b, e->seq_len, &n_want, err);
    if (st) return st;
    engine_embed(e, &m->embed, b, e->x);
    for (int l = 0; l < m->cfg.num_hidden_layers; l++) block_forward(e, &m->layers[l], l, b);
    engine_head(e, b, m->final_norm, &m->lm_head, logits);
    engine_advance(e, e->seq_len);
    return DS_OK;
}

const float *ds_engine_hidden(const ds_engine *e) { return e->hidden; }

ds_status ds_engine_forward_mtp(ds_engine *e, const ds_batch *b, const float *hidden, float *logits, ds_error *err) {
    const ds_model *m = e->m;
    if (!m->has_mtp) return ds_error_set(err, DS_ERR_ARG, "%s: the model has no MTP layer", m->files.dir);
    int n_want;
    ds_status st = engine_plan_batch(e, b, e->mtp_len, &n_want, err);
    if (st) return st;
    const ds_config *c = &m->cfg;
    int n = b->n;
    int64_t D = c->hidden_size;
    // u = eh_proj @ [enorm(emb(t_{p+1})); hnorm(h_p)]  (embedding first, as the released weights expect)
    engine_embed(e, &m->mtp.embed, b, e->xn);
    for (int i = 0; i < n; i++) {
        float *cat = e->cat + i * 2 * D;
        rmsnorm_forward(cat, e->xn + i * D, m->mtp.enorm, 1, (int)D, D, c->rms_norm_eps);
        rmsnorm_forward(cat + D, hidden + i * D, m->mtp.hnorm, 1, (int)D, D, c->rms_norm_eps);
    }
    eng_matmul(e, e->x, e->cat, &m->mtp.eh_proj, n);
    block_forward(e, &m->mtp.block, c->num_hidden_layers, b);
    engine_head(e, b, m->mtp.head_norm, &m->mtp.head, logits);
    engine_advance(e, e->mtp_len);
    return DS_OK;
}
