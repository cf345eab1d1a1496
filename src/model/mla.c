// Multi-head Latent Attention (architecture page, sections 3.3-3.4).
// Every token's normalised latent cn (dc) and rotated k_pe (dr) go to the cache first, then
// each query attends over its sequence's cache up to its own position, in one of two forms:
//   naive:    k_nope|v = kv_b_proj @ cn for every cached position, then ordinary attention
//   absorbed: q_abs = W_UK^T q_nope, scores against cn directly, o = W_UV (sum_j p_j cn_j)
// Both compute the same function; the engine picks the cheaper one per sequence.
#include <math.h>
#include <omp.h>
#include <string.h>

#include "model/engine_internal.h"

// Projections, latent norm and RoPE; writes the cache rows of the batch's tokens.
// q is (N, H*(dn+dr)), kva is (N, dc+dr).
static void mla_project(ds_engine *e, const ds_block *b, int layer, const ds_batch *batch) {
    const ds_config *c = &e->m->cfg;
    int N = batch->n, H = c->num_attention_heads;
    int dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dc = c->kv_lora_rank;
    int dqk = dn + dr;
    if (c->q_lora_rank > 0) {
        eng_matmul(e, e->qa, e->xn, &b->q_a, N);
        rmsnorm_forward(e->qa, e->qa, b->q_a_norm, N, c->q_lora_rank, c->q_lora_rank, c->rms_norm_eps);
        eng_matmul(e, e->q, e->qa, &b->q_b, N);
    } else {
        eng_matmul(e, e->q, e->xn, &b->q, N);
    }
    eng_matmul(e, e->kva, e->xn, &b->kv_a, N);
    // Only the latent part is normalised; k_pe is rotated, never normalised.
    rmsnorm_forward(e->kva, e->kva, b->kv_a_norm, N, dc, e->lat_dim, c->rms_norm_eps);
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        int pos = batch->pos[i];
        float *kv = e->kva + (int64_t)i * e->lat_dim;
        rope_forward(kv + dc, dr, pos, e->inv_freq, e->rope_mscale);
        for (int h = 0; h < H; h++)
            rope_forward(e->q + ((int64_t)i * H + h) * dqk + dn, dr, pos, e->inv_freq, e->rope_mscale);
        memcpy(eng_cache_row(e, layer, batch->seq[i], pos), kv, (size_t)e->lat_dim * sizeof(float));
    }
}

// Absorbed attention for one token and heads [h0, h1): reads only the latent cache. Each
// head's q_abs|q_pe sits in scratch like cn|k_pe in a cache row, so one dot per row scores
// both parts. The cache is walked in blocks of rows that stay in L1 while every head of the
// block uses them: the heads share the latent rows (that is MLA's point), and reading the
// cache once per head instead would make decode at long context bound by L2/L3 traffic.
static void mla_attend_absorbed(ds_engine *e, const ds_block *b, int layer, int seq, int pos, int h0, int h1,
                                const float *q_tok, float *o_tok, float *scratch) {
    const ds_config *c = &e->m->cfg;
    int dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim, dc = c->kv_lora_rank;
    int nh = h1 - h0, n = pos + 1;
    int64_t L = e->lat_dim, ctx = e->attn_score_stride;
    float *q_cat = scratch, *lat = q_cat + nh * L, *sc = lat + (int64_t)nh * dc; // (nh, L) (nh, dc) (nh, ctx)
    for (int k = 0; k < nh; k++) {
        int64_t r0 = (int64_t)(h0 + k) * (dn + dv); // W_UK rows [r0, r0+dn), W_UV rows [r0+dn, r0+dn+dv)
        const float *qh = q_tok + (int64_t)(h0 + k) * (dn + dr);
        memset(q_cat + k * L, 0, (size_t)dc * sizeof(float));
        matvec_t_rows_acc(q_cat + k * L, &b->kv_b, r0, r0 + dn, qh);
        memcpy(q_cat + k * L + dc, qh + dn, (size_t)dr * sizeof(float));
    }
    const float *rows = eng_cache_row(e, layer, seq, 0);
    int rb = e->attn_row_block;
    for (int j0 = 0; j0 < n; j0 += rb) {
        int m = n - j0 < rb ? n - j0 : rb;
        attn_scores_heads_f32(sc + j0, ctx, q_cat, L, nh, rows + j0 * L, L, m, L, e->softmax_scale);
    }
    for (int k = 0; k < nh; k++) softmax_forward(sc + k * ctx, n);
    for (int j0 = 0; j0 < n; j0 += rb) {
        int m = n - j0 < rb ? n - j0 : rb;
        attn_wsum_heads_f32(lat, dc, sc + j0, ctx, nh, rows + j0 * L, L, m, dc, j0 > 0);
    }
    for (int k = 0; k < nh; k++) {
        int64_t r0 = (int64_t)(h0 + k) * (dn + dv);
        matvec_rows(o_tok + (int64_t)(h0 + k) * dv, &b->kv_b, r0 + dn, r0 + dn + dv, lat + (int64_t)k * dc);
    }
}

// Naive attention for one (token, head). kv_t holds K_nope^T | V^T: row h*(dn+dv) + d is
// dimension d of head h over the `ctx` positions, so the scores are dn axpys and the output
// dv dots along contiguous rows. (Rows per position instead put H*(dn+dv) floats between a
// head's consecutive positions — a new page per position at long context, for every query.)
static void mla_attend_naive(ds_engine *e, int layer, int seq, int pos, int h, int ctx, const float *qh, float *oh,
                             float *sc) {
    const ds_config *c = &e->m->cfg;
    int dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim, dc = c->kv_lora_rank;
    int n = pos + 1;
    const float *kt = e->kv_t + (int64_t)h * (dn + dv) * ctx;
    memset(sc, 0, (size_t)n * sizeof(float));
    for (int d = 0; d < dn; d++) axpy_f32(sc, e->softmax_scale * qh[d], kt + (int64_t)d * ctx, n);
    attn_scores_f32(sc, qh + dn, eng_cache_row(e, layer, seq, 0) + dc, e->lat_dim, n, dr, e->softmax_scale, 1);
    softmax_forward(sc, n);
    for (int d = 0; d < dv; d++) oh[d] = dot_f32(sc, kt + (int64_t)(dn + d) * ctx, n);
}

// Multiply-adds of each form for a sequence with n new tokens and ctx cached positions.
static int mla_prefers_naive(const ds_engine *e, int n, int ctx) {
    const ds_config *c = &e->m->cfg;
    double H = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    double dv = c->v_head_dim, dc = c->kv_lora_rank;
    double naive = ctx * H * (dn + dv) * dc + n * (double)ctx * H * (dn + dr + dv);
    double absorbed = n * H * ((dn + dv) * dc + ctx * (2 * dc + dr));
    return naive < absorbed;
}

static void mla_attend_group(ds_engine *e, const ds_block *b, int layer, const ds_batch *batch,
                             const eng_seq_group *g) {
    const ds_config *c = &e->m->cfg;
    int H = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    int dv = c->v_head_dim, dc = c->kv_lora_rank;
    int ctx = g->start + g->n;
    int naive = e->lim.attn == DS_ATTN_NAIVE ||
                (e->lim.attn == DS_ATTN_AUTO && mla_prefers_naive(e, g->n, ctx));
    if (naive) {
        // kv_t (H*(dn+dv), ctx) = kv_b (H*(dn+dv), dc) @ latents^T: the latent rows act as the
        // "weights" of an f32 GEMM whose "tokens" are kv_b's rows (in f32). One sequence's own
        // rows only, so the GEMM is exact-safe: it never mixes requests.
        for (int j = 0; j < ctx; j++)
            memcpy(e->lat_rows + (int64_t)j * dc, eng_cache_row(e, layer, g->seq, j), (size_t)dc * sizeof(float));
        ds_tensor_rows_to_f32(&b->kv_b, 0, b->kv_b.shape[0], e->kv_b_f32);
        ds_tensor lat = {.dtype = DS_F32, .ndim = 2, .shape = {ctx, dc}, .data = e->lat_rows};
        matmul_forward(e->kv_t, e->kv_b_f32, &lat, (int)b->kv_b.shape[0], e->gemm_work);
        // Work items (head, token), head-major: the threads walk one head's K^T|V^T rows
        // (ctx x (dn+dv) floats) for many queries in turn, so they stay in the last-level cache.
        #pragma omp parallel for schedule(dynamic, 1)
        for (int p = 0; p < g->n * H; p++) {
            int h = p / g->n, i = g->tok[p % g->n];
            float *scratch = e->thread_scratch + (int64_t)omp_get_thread_num() * e->thread_scratch_stride;
            mla_attend_naive(e, layer, g->seq, batch->pos[i], h, ctx, e->q + ((int64_t)i * H + h) * (dn + dr),
                             e->att + ((int64_t)i * H + h) * dv, scratch);
        }
        return;
    }
    // Work items: (token, block of heads). Blocks of at most ENG_ATTN_HEADS heads, and at
    // least as many items as threads when there are few tokens (decode). (Each head's result
    // is the same whatever block it is in.)
    int per_tok = (H + ENG_ATTN_HEADS - 1) / ENG_ATTN_HEADS;
    int want = (e->n_threads + g->n - 1) / g->n;
    if (per_tok < want) per_tok = want < H ? want : H;
    int items = g->n * per_tok;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int p = 0; p < items; p++) {
        int i = g->tok[p / per_tok], blk = p % per_tok;
        int h0 = (int)((int64_t)H * blk / per_tok), h1 = (int)((int64_t)H * (blk + 1) / per_tok);
        float *scratch = e->thread_scratch + (int64_t)omp_get_thread_num() * e->thread_scratch_stride;
        mla_attend_absorbed(e, b, layer, g->seq, batch->pos[i], h0, h1, e->q + (int64_t)i * H * (dn + dr),
                            e->att + (int64_t)i * H * dv, scratch);
    }
}

void mla_forward(ds_engine *e, const ds_block *b, int layer, const ds_batch *batch) {
    mla_project(e, b, layer, batch);
    for (int g = 0; g < e->n_groups; g++) mla_attend_group(e, b, layer, batch, &e->groups[g]);
    eng_matmul(e, e->out, e->att, &b->o, batch->n);
}
