// Feed-forward sub-blocks: the dense SwiGLU MLP and DeepSeekMoE (architecture page 3.5-3.6).
// MoE tokens are grouped per expert so each expert runs one GEMM over all its tokens.
#include <math.h>
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
