// Feed-forward sub-blocks: the dense SwiGLU MLP and DeepSeekMoE (architecture page 3.5-3.6).
// MoE tokens are grouped per expert so each expert runs one GEMM over all its tokens.
#include <math.h>
#include <omp.h>
#include <string.h>

#include "model/engine_internal.h"

// out (n, D) = down(silu(gate(x)) * up(x)), x is (n, D); uses ffn_g/ffn_u as (n, width).
static void mlp_forward(ds_engine *e, float *out, const float *x, int n,
                        const ds_tensor *gate, const ds_tensor *up, const ds_tensor *down) {
    int64_t width = gate->shape[0];
    eng_matmul(e, e->ffn_g, x, gate, n);
    eng_matmul(e, e->ffn_u, x, up, n);
    swiglu_forward(e->ffn_g, e->ffn_g, e->ffn_u, (int64_t)n * width);
    eng_matmul(e, out, e->ffn_g, down, n);
}

// Index of the largest value among `n` (skipping -inf/excluded), lowest index on ties.
static int moe_argmax(const float *v, int n, const uint8_t *taken) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (!taken[i] && v[i] != -INFINITY && (best < 0 || v[i] > v[best])) best = i;
    return best;
}

// Routing for one token. logits (E) -> idx (K), w (K). `sel` (E) is scratch for the
// selection scores. Follows DeepSeek's official inference code:
//   V3 noaux_tc: sigmoid scores; selection on score + bias, groups ranked by the sum of
//   their top-2 biased scores; weights are the unbiased scores of the chosen experts.
//   V2: softmax scores; group_limited_greedy ranks groups by their max score; greedy has
//   no group limit.
void moe_route_topk(const ds_config *c, const float *bias, const float *logits,
                            float *scores, float *sel, int *idx, float *w) {
    int E = c->n_routed_experts, K = c->num_experts_per_tok;
    if (c->scoring_func == DS_SCORE_SIGMOID) {
        for (int j = 0; j < E; j++) scores[j] = 1.0f / (1.0f + expf(-logits[j]));
    } else {
        memcpy(scores, logits, (size_t)E * sizeof(float));
        softmax_forward(scores, E);
    }
    for (int j = 0; j < E; j++) sel[j] = scores[j] + (bias ? bias[j] : 0.0f);

    int G = c->n_group, per = E / G;
    if (c->topk_method != DS_TOPK_GREEDY && G > 1 && c->topk_group < G) {
        float gscore[1024];
        uint8_t gtaken[1024] = {0};
        for (int g = 0; g < G; g++) {
            const float *s = sel + g * per;
            float a = -INFINITY, b2 = -INFINITY; // largest and second largest
            for (int j = 0; j < per; j++) {
                if (s[j] > a) { b2 = a; a = s[j]; } else if (s[j] > b2) b2 = s[j];
            }
            gscore[g] = c->topk_method == DS_TOPK_NOAUX_TC ? a + b2 : a;
        }
        for (int k = 0; k < c->topk_group; k++) gtaken[moe_argmax(gscore, G, gtaken)] = 1;
        for (int g = 0; g < G; g++)
            if (!gtaken[g])
                for (int j = 0; j < per; j++) sel[g * per + j] = -INFINITY;
    }
    uint8_t taken[4096];
    memset(taken, 0, (size_t)E);
    float sum = 0.0f;
    for (int k = 0; k < K; k++) {
        int j = moe_argmax(sel, E, taken);
        taken[j] = 1;
        idx[k] = j;
        w[k] = scores[j];
        sum += w[k];
    }
    float scale = c->routed_scaling_factor / (c->norm_topk_prob ? sum : 1.0f);
    for (int k = 0; k < K; k++) w[k] *= scale;
}

// Groups the (token, expert) pairs by expert: exp_start/exp_tok/exp_w.
static void moe_group_tokens(ds_engine *e, int n) {
    const ds_config *c = &e->m->cfg;
    int E = c->n_routed_experts, K = c->num_experts_per_tok;
    memset(e->exp_count, 0, (size_t)E * sizeof(int));
    for (int i = 0; i < n * K; i++) e->exp_count[e->topk_idx[i]]++;
    e->exp_start[0] = 0;
    for (int j = 0; j < E; j++) e->exp_start[j + 1] = e->exp_start[j] + e->exp_count[j];
    memset(e->exp_count, 0, (size_t)E * sizeof(int));
    for (int i = 0; i < n * K; i++) {
        int j = e->topk_idx[i];
        int slot = e->exp_start[j] + e->exp_count[j]++;
        e->exp_tok[slot] = i / K;
        e->exp_w[slot] = e->topk_w[i];
    }
}

// Decode-sized batches (n <= ENG_MOE_PAR_TOKENS) with several threads. Each expert's matmuls
// are then matvecs (gate, up, down for each of K routed experts and the shared one) too small
// to pay a fork/join each, and too few to deal out one expert per thread without idling (5 of
// them on 2 threads with 4 routed + 1 shared). Instead one parallel region runs the whole layer in five phases with
// a barrier between them, every phase's work split evenly over the threads: (0) gather and
// quantize each expert's tokens, (1) the rows of every gate and up matrix, in blocks of
// ENG_MOE_ROWS, (2) SwiGLU and quantization of the hidden activations, (3) the rows of every
// down matrix, (4) the weighted sum of routed outputs into `out`, split by columns. Each
// output row is computed by the same kernel as matmul_forward's, and phase 4 adds in expert
// order like the serial loop, so the result is bit-identical to it, whatever the thread count.
static void moe_experts_parallel(ds_engine *e, const ds_block *b, int n) {
    const ds_config *c = &e->m->cfg;
    int64_t D = c->hidden_size, P = ENG_MOE_PAR_TOKENS, W = e->moe_width;
    int E = c->n_routed_experts, shared = c->n_shared_experts > 0, n_tasks = 0;
    eng_moe_task *tk = e->moe_tasks;
    // routed experts with tokens, in expert order, then the shared expert
    for (int j = 0; j <= E; j++) {
        int routed = j < E;
        if (routed && e->exp_start[j + 1] == e->exp_start[j]) continue;
        if (!routed && !shared) break;
        float *scr = e->moe_scratch + (int64_t)n_tasks * e->moe_scratch_stride;
        eng_moe_task *t = &tk[n_tasks++];
        int s = routed ? e->exp_start[j] : 0;
        t->gate = routed ? &b->exp_gate[j] : &b->sh_gate;
        t->up = routed ? &b->exp_up[j] : &b->sh_up;
        t->down = routed ? &b->exp_down[j] : &b->sh_down;
        t->ne = routed ? e->exp_start[j + 1] - s : n;
        t->y = routed ? e->moe_ye + (int64_t)s * D : e->out;
        t->x = routed ? scr : e->xn; // routed tokens are gathered into the task's first P*D floats
        t->xq = scr + P * D;
        t->g = t->xq + matmul_few_work_floats(D);
        t->u = t->g + P * W;
        t->hq = t->u + P * W;
    }
    // row blocks of phases 1 and 3: unit k of task i covers rows [k*R, (k+1)*R) of its gate
    // then its up matrix (phase 1), or of its down matrix (phase 3)
    int R = ENG_MOE_ROWS, n1 = 0, n3 = 0;
    for (int i = 0; i < n_tasks; i++) {
        e->moe_unit1[i] = n1;
        e->moe_unit3[i] = n3;
        n1 += 2 * (int)((tk[i].gate->shape[0] + R - 1) / R);
        n3 += (int)((D + R - 1) / R);
    }
    e->moe_unit1[n_tasks] = n1;
    e->moe_unit3[n_tasks] = n3;
    int rw = e->lim.row_exact, n_cols = (int)((D + 63) / 64);
    #pragma omp parallel num_threads(e->n_threads)
    {
        #pragma omp for schedule(static)
        for (int i = 0; i < n_tasks; i++) {
            eng_moe_task *t = &tk[i];
            if (t->x != e->xn) {
                const int *tok = e->exp_tok + (t->y - e->moe_ye) / D;
                for (int q = 0; q < t->ne; q++)
                    memcpy((float *)t->x + q * D, e->xn + (int64_t)tok[q] * D, (size_t)D * sizeof(float));
            }
            matmul_few_prepare(t->gate, t->x, t->ne, t->xq); // up has the same input columns
        }
        #pragma omp for schedule(static)
        for (int k = 0; k < n1; k++) {
            int i = 0;
            while (e->moe_unit1[i + 1] <= k) i++;
            eng_moe_task *t = &tk[i];
            int64_t width = t->gate->shape[0], per = (width + R - 1) / R, kk = k - e->moe_unit1[i];
            int up = kk >= per;
            int64_t r0 = (up ? kk - per : kk) * R, r1 = r0 + R < width ? r0 + R : width;
            matmul_few_rows(up ? t->u : t->g, t->x, up ? t->up : t->gate, t->ne, t->xq, r0, r1, rw);
        }
        #pragma omp for schedule(static)
        for (int i = 0; i < n_tasks; i++) {
            eng_moe_task *t = &tk[i];
            swiglu_forward(t->g, t->g, t->u, (int64_t)t->ne * t->gate->shape[0]);
            matmul_few_prepare(t->down, t->g, t->ne, t->hq);
        }
        #pragma omp for schedule(static)
        for (int k = 0; k < n3; k++) {
            int i = 0;
            while (e->moe_unit3[i + 1] <= k) i++;
            eng_moe_task *t = &tk[i];
            int64_t r0 = (int64_t)(k - e->moe_unit3[i]) * R, r1 = r0 + R < D ? r0 + R : D;
            matmul_few_rows(t->y, t->g, t->down, t->ne, t->hq, r0, r1, rw);
        }
        // out (n, D) += the routed outputs in expert order, 64 columns at a time
        #pragma omp for schedule(static)
        for (int cb = 0; cb < n_cols; cb++) {
            int64_t c0 = (int64_t)cb * 64, len = D - c0 < 64 ? D - c0 : 64;
            if (!shared)
                for (int q = 0; q < n; q++) memset(e->out + q * D + c0, 0, (size_t)len * sizeof(float));
            for (int j = 0; j < E; j++)
                for (int sl = e->exp_start[j]; sl < e->exp_start[j + 1]; sl++)
                    axpy_f32(e->out + (int64_t)e->exp_tok[sl] * D + c0, e->exp_w[sl], e->moe_ye + (int64_t)sl * D + c0, len);
        }
    }
}

static void moe_forward(ds_engine *e, const ds_block *b, int n) {
    const ds_config *c = &e->m->cfg;
    int64_t D = c->hidden_size;
    int E = c->n_routed_experts, K = c->num_experts_per_tok;
    ds_tensor router = {.dtype = DS_F32, .ndim = 2, .shape = {E, D}, .data = b->router};
    eng_matmul(e, e->router, e->xn, &router, n);
    // Per-token routing scratch lives in ffn_u (free until the experts run): 2E floats/token.
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        float *scores = e->ffn_u + (int64_t)i * 2 * E;
        moe_route_topk(c, b->router_bias, e->router + (int64_t)i * E, scores, scores + E,
                        e->topk_idx + (int64_t)i * K, e->topk_w + (int64_t)i * K);
    }
    moe_group_tokens(e, n);
    if (n <= ENG_MOE_PAR_TOKENS && e->n_threads > 1 && e->moe_scratch && !omp_in_parallel()) {
        moe_experts_parallel(e, b, n);
        return;
    }

    if (c->n_shared_experts > 0) mlp_forward(e, e->out, e->xn, n, &b->sh_gate, &b->sh_up, &b->sh_down);
    else memset(e->out, 0, (size_t)(n * D) * sizeof(float));

    for (int j = 0; j < E; j++) {
        int s = e->exp_start[j], ne = e->exp_start[j + 1] - s;
        if (ne == 0) continue;
        for (int t = 0; t < ne; t++)
            memcpy(e->xe + t * D, e->xn + (int64_t)e->exp_tok[s + t] * D, (size_t)D * sizeof(float));
        mlp_forward(e, e->ye, e->xe, ne, &b->exp_gate[j], &b->exp_up[j], &b->exp_down[j]);
        for (int t = 0; t < ne; t++)
            axpy_f32(e->out + (int64_t)e->exp_tok[s + t] * D, e->exp_w[s + t], e->ye + t * D, D);
    }
}

void ffn_forward(ds_engine *e, const ds_block *b, int n) {
    if (b->is_moe) moe_forward(e, b, n);
    else mlp_forward(e, e->out, e->xn, n, &b->gate, &b->up, &b->down);
}
