// GRPO's pieces (rl/grpo.c) and the objective's gradient through the trainer:
// - group-relative advantages and the per-token clipped objective on hand-computed values;
// - the KL term (k3) is zero, with a zero gradient, when the policy is the reference;
// - the gradient of sum_t n_t l_t that train_model_step produces through its per-token
//   weight hook agrees with central finite differences of the same objective evaluated from
//   forward-only log-probs, with clipped and unclipped tokens of both advantage signs;
// - one AdamW step on the objective raises the log-likelihood of the completion with a positive
//   advantage and lowers that of the negative one, by a useful amount at GRPO learning rates;
// - params_model_view: the inference engine reading the trainer's weights gives the same
//   log-probs as the training forward;
// - --top-entropy: the threshold of the top fraction on hand-made entropies, and the entropies
//   the rollout records equal the trainer's entropies at the same positions;
// - --process-reward: per-token advantages from process labels on a hand-computed example.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "model/engine.h"
#include "model/init.h"
#include "rl/grpo.h"
#include "rl/reward.h"
#include "rl/rollout.h"
#include "train/params.h"
#include "train/train_model.h"
#include "train/trainer.h"
#include "test_fd.h"
#include "test_util.h"

static void test_advantages_hand(void **state) {
    (void)state;
    // group 1: {1, 0, 0, 1}: mean 0.5, population std 0.5; group 2 all equal: zeros
    float r[8] = {1, 0, 0, 1, 0.3f, 0.3f, 0.3f, 0.3f}, a[8];
    grpo_advantages(r, 2, 4, 1, 0.0f, a);
    float want[8] = {1, -1, -1, 1, 0, 0, 0, 0};
    for (int i = 0; i < 8; i++) assert_true(fabsf(a[i] - want[i]) < 1e-6f);
    // {2, 0, 1}: mean 1, std sqrt(2/3); Dr. GRPO keeps r - mean
    float r2[3] = {2, 0, 1}, a2[3];
    grpo_advantages(r2, 1, 3, 1, 1e-4f, a2);
    double sd = sqrt(2.0 / 3.0);
    assert_true(fabs(a2[0] - 1 / (sd + 1e-4)) < 1e-5 && fabs(a2[1] + 1 / (sd + 1e-4)) < 1e-5 && fabs(a2[2]) < 1e-7);
    grpo_advantages(r2, 1, 3, 0, 1e-4f, a2);
    assert_true(a2[0] == 1.0f && a2[1] == -1.0f && a2[2] == 0.0f);
}

static void test_token_objective_hand(void **state) {
    (void)state;
    grpo_params p = {.eps_low = 0.2f, .eps_high = 0.2f, .beta = 0.5f};
    grpo_token t;
    // A > 0, ratio e^0.2 = 1.2214 > 1.2: the clipped branch (1.2 * 2 = 2.4 < 2.4428) is active
    grpo_token_eval(&p, -1.0f, -1.2f, -0.9f, 2.0f, &t);
    double k3 = exp(0.1) - 0.1 - 1;
    assert_int_equal(t.clipped, 1);
    assert_true(fabs(t.loss - (-2.4 + 0.5 * k3)) < 1e-6);
    assert_true(fabs(t.dlogp - 0.5 * (1 - exp(0.1))) < 1e-6); // only the KL term moves
    assert_true(fabs(t.k3 - k3) < 1e-7);
    // A < 0, same ratio: min(-2.4428, -2.4) is the unclipped term: gradient -A r
    grpo_token_eval(&p, -1.0f, -1.2f, -0.9f, -2.0f, &t);
    double r = exp(0.2);
    assert_int_equal(t.clipped, 0);
    assert_true(fabs(t.loss - (2 * r + 0.5 * k3)) < 1e-5);
    assert_true(fabs(t.dlogp - (2 * r + 0.5 * (1 - exp(0.1)))) < 1e-5);
    // A < 0 and ratio e^-0.3 = 0.741 < 0.8: clipped (-0.8 * -1 = 0.8 > 0.741... min picks -0.8? no:
    // r A = -0.741, clip(r) A = -0.8, min = -0.8: clipped, flat)
    grpo_token_eval(&p, -1.3f, -1.0f, -1.3f, -1.0f, &t);
    assert_int_equal(t.clipped, 1);
    assert_true(fabs(t.loss - 0.8) < 1e-6 && fabs(t.dlogp) < 1e-7);
    // DAPO clip-higher: the same A > 0 token is inside [0.8, 1.28]
    p.eps_high = 0.28f;
    grpo_token_eval(&p, -1.0f, -1.2f, -1.0f, 2.0f, &t);
    assert_int_equal(t.clipped, 0);
    assert_true(fabs(t.dlogp - (-2 * r)) < 1e-5 && fabs(t.k3) < 1e-9);
    // aggregation weights
    grpo_params q = {.agg = GRPO_AGG_TOKEN, .max_new = 100};
    assert_true(grpo_token_norm(&q, 7, 50, 4) == 1.0f / 50);
    q.agg = GRPO_AGG_SEQ;
    assert_true(fabsf(grpo_token_norm(&q, 7, 50, 4) - 1.0f / 28) < 1e-9f);
    q.agg = GRPO_AGG_DR;
    assert_true(grpo_token_norm(&q, 7, 50, 4) == 1.0f / 400);
}

// ---- the objective through the trainer ----

enum { B = 2, T = 12, NP = 4 };  // two sequences, prompt = the first NP tokens (masked)

typedef struct {
    grpo_params gp;
    float adv[B], norm[B];
    float old[B * T], ref[B * T];
    int64_t clipped;
} obj_ctx;

static float obj_coef(void *vctx, int64_t i, float logp) {
    obj_ctx *c = vctx;
    grpo_token t;
    grpo_token_eval(&c->gp, logp, c->old[i], c->ref[i], c->adv[i / T], &t);
    c->clipped += t.clipped;
    return -c->norm[i / T] * t.dlogp;
}

static void make_batch(int32_t *inp, int32_t *tgt, int V) {
    uint64_t s = 12345;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            inp[b * T + t] = (int32_t)(rng_next(&s) % (uint32_t)V);
            tgt[b * T + t] = t + 1 >= NP ? (int32_t)(rng_next(&s) % (uint32_t)V) : -1;
        }
}

// log p(target) of every position from a forward-only pass.
static void eval_logp(train_model *tm, const int32_t *inp, const int32_t *tgt, float *lp) {
    train_loss_weights w = {.logp = lp};
    train_loss L = {0};
    train_model_eval(tm, inp, tgt, B, T, &w, &L);
}

// sum_t n_t l_t from a forward-only pass (double).
static double objective(train_model *tm, const int32_t *inp, const int32_t *tgt, obj_ctx *c) {
    float lp[B * T];
    eval_logp(tm, inp, tgt, lp);
    double sum = 0;
    for (int i = 0; i < B * T; i++) {
        if (tgt[i] < 0) continue;
        grpo_token t;
        grpo_token_eval(&c->gp, lp[i], c->old[i], c->ref[i], c->adv[i / T], &t);
        sum += (double)c->norm[i / T] * t.loss;
    }
    return sum;
}

typedef struct {
    train_model *tm;
    const int32_t *inp, *tgt;
    obj_ctx *c;
} fd_obj_ctx;

static double fd_objective(void *vctx) {
    fd_obj_ctx *f = vctx;
    return objective(f->tm, f->inp, f->tgt, f->c);
}

// The tiny preset with random weights, its trainer, and the fixed batch of make_batch.
static void setup_model(param_store *ps, train_model **tm, int32_t *inp, int32_t *tgt) {
    ds_config c;
    ds_error err;
    assert_int_equal(ds_preset_config(&c, "tiny", &err), DS_OK);
    assert_int_equal(params_init_random(ps, &c, 3, &err), DS_OK);
    assert_int_equal(train_model_create(tm, ps, B, T, &err), DS_OK);
    make_batch(inp, tgt, ps->cfg.vocab_size);
}

static void test_kl_zero_when_policy_is_reference(void **state) {
    (void)state;
    param_store ps;
    train_model *tm;
    int32_t inp[B * T], tgt[B * T];
    setup_model(&ps, &tm, inp, tgt);
    obj_ctx c = {.gp = {.eps_low = 0.2f, .eps_high = 0.2f, .beta = 0.1f}, .adv = {0, 0}, .norm = {0.05f, 0.05f}};
    eval_logp(tm, inp, tgt, c.ref); // reference = the policy itself
    train_loss L = {0};
    memcpy(c.old, c.ref, sizeof c.ref);
    for (int i = 0; i < B * T; i++) {
        if (tgt[i] < 0) continue;
        grpo_token t;
        grpo_token_eval(&c.gp, c.ref[i], c.old[i], c.ref[i], 0.0f, &t);
        assert_true(t.k3 == 0.0f && t.dlogp == 0.0f);
    }
    memset(ps.grads, 0, sizeof(float) * (size_t)ps.n);
    train_loss_weights w = {.coef = obj_coef, .coef_ctx = &c};
    train_model_step(tm, inp, tgt, B, T, &w, &L);
    // logp of the step's forward equals the eval's bit for bit, so every weight is exactly 0
    double gmax = 0;
    for (int64_t i = 0; i < ps.n; i++) gmax = fmax(gmax, fabs(ps.grads[i]));
    assert_true(gmax == 0.0);
    train_model_free(tm);
    params_free(&ps);
}

static void test_objective_gradient_fd(void **state) {
    (void)state;
    param_store ps;
    train_model *tm;
    int32_t inp[B * T], tgt[B * T];
    setup_model(&ps, &tm, inp, tgt);
    obj_ctx c = {.gp = {.eps_low = 0.2f, .eps_high = 0.28f, .beta = 0.3f, .agg = GRPO_AGG_SEQ}, .adv = {1.3f, -0.7f}};
    float lp[B * T];
    eval_logp(tm, inp, tgt, lp);
    train_loss L = {0};
    // old log-probs a fixed offset away: ratios 0.61, 0.90, 1.11, 1.65 (two inside the clip range,
    // two outside, away from the kinks); the reference differs by +-0.2
    const float off[4] = {0.5f, 0.1f, -0.1f, -0.5f};
    int n_tok[B] = {0, 0};
    for (int i = 0; i < B * T; i++) {
        c.old[i] = lp[i] + off[i % 4];
        c.ref[i] = lp[i] + (i % 3 == 0 ? 0.2f : -0.2f);
        if (tgt[i] >= 0) n_tok[i / T]++;
    }
    for (int b = 0; b < B; b++) c.norm[b] = grpo_token_norm(&c.gp, n_tok[b], 0, B);
    memset(ps.grads, 0, sizeof(float) * (size_t)ps.n);
    train_loss_weights w = {.coef = obj_coef, .coef_ctx = &c};
    train_model_step(tm, inp, tgt, B, T, &w, &L);
    assert_true(c.clipped > 0 && c.clipped < n_tok[0] + n_tok[1]);
    float *g = malloc(sizeof(float) * (size_t)ps.n);
    memcpy(g, ps.grads, sizeof(float) * (size_t)ps.n);
    const char *names[] = {"model.embed_tokens.weight", "model.layers.0.self_attn.q_a_proj.weight",
                           "model.layers.1.self_attn.kv_b_proj.weight", "model.layers.2.mlp.shared_experts.up_proj.weight",
                           "model.layers.3.self_attn.o_proj.weight", "model.norm.weight", "lm_head.weight"};
    fd_obj_ctx fc = {tm, inp, tgt, &c};
    fd_check_tensors(&ps, g, names, (int)(sizeof names / sizeof *names), 2e-3, 0.02, fd_objective, &fc);
    free(g);
    train_model_free(tm);
    params_free(&ps);
}

// The learning dynamics, not just the gradient: two completions of the same prompt, A = +1
// and -1, token-level aggregation, on-policy (ratio 1), no KL. After one AdamW step at the lr
// GRPO uses, the summed log p of the first rises and of the second falls, each by more than a
// tenth of a nat; a zero-advantage batch without KL has a zero gradient.
static void test_one_step_moves_logp_by_advantage(void **state) {
    (void)state;
    param_store ps;
    train_model *tm;
    int32_t inp[B * T], tgt[B * T];
    setup_model(&ps, &tm, inp, tgt);
    memcpy(inp + T, inp, sizeof(int32_t) * NP); // same prompt, different completions
    obj_ctx c = {.gp = {.eps_low = 0.2f, .eps_high = 0.2f, .beta = 0, .agg = GRPO_AGG_TOKEN}, .adv = {1, -1}};
    int n_tok = 0;
    for (int i = 0; i < B * T; i++) n_tok += tgt[i] >= 0;
    for (int b = 0; b < B; b++) c.norm[b] = grpo_token_norm(&c.gp, 0, n_tok, B);
    float lp0[B * T], lp1[B * T];
    eval_logp(tm, inp, tgt, lp0);
    memcpy(c.old, lp0, sizeof lp0);
    memcpy(c.ref, lp0, sizeof lp0);
    adamw_params hp = {.beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f};
    train_loss L = {0};
    train_loss_weights w = {.coef = obj_coef, .coef_ctx = &c};
    memset(ps.grads, 0, sizeof(float) * (size_t)ps.n);
    train_model_step(tm, inp, tgt, B, T, &w, &L);
    trainer_adamw(&ps, &hp, 1, 3e-4f, grad_clip_scale(trainer_grad_norm(&ps), 1.0f));
    eval_logp(tm, inp, tgt, lp1);
    double d[B] = {0, 0};
    for (int i = 0; i < B * T; i++)
        if (tgt[i] >= 0) d[i / T] += (double)lp1[i] - lp0[i];
    print_message("one step at lr 3e-4: sum log p %+.4f (A = +1), %+.4f (A = -1)\n", d[0], d[1]);
    assert_true(d[0] > 0.1 && d[1] < -0.1);

    // all advantages 0 and no KL: every token weight is 0, and so is the gradient
    c.adv[0] = c.adv[1] = 0;
    memset(ps.grads, 0, sizeof(float) * (size_t)ps.n);
    train_model_step(tm, inp, tgt, B, T, &w, &L);
    assert_true(trainer_grad_norm(&ps) == 0.0);
    train_model_free(tm);
    params_free(&ps);
}

// The engine over params_model_view and the training forward agree on log p(target).
static void test_model_view_matches_training_forward(void **state) {
    (void)state;
    param_store ps;
    train_model *tm;
    int32_t inp[B * T], tgt[B * T];
    setup_model(&ps, &tm, inp, tgt);
    for (int t = 0; t + 1 < T; t++) tgt[t] = inp[t + 1]; // sequence 0: targets are the next inputs
    float lp[B * T];
    eval_logp(tm, inp, tgt, lp);
    ds_model m;
    ds_error err;
    assert_int_equal(params_model_view(&ps, &m, &err), DS_OK);
    ds_engine *e;
    ds_engine_limits lim = {.max_tokens = T, .max_seqs = 1, .max_ctx = T, .max_logits = T};
    assert_int_equal(ds_engine_create(&e, &m, &lim, &err), DS_OK);
    int tok[T], seq[T] = {0}, pos[T];
    uint8_t want[T];
    for (int t = 0; t < T; t++) { tok[t] = inp[t]; pos[t] = t; want[t] = 1; }
    int V = ps.cfg.vocab_size;
    float *logits = malloc(sizeof(float) * (size_t)(T * V));
    ds_batch b = {T, tok, seq, pos, want};
    assert_int_equal(ds_engine_forward(e, &b, logits, &err), DS_OK);
    for (int t = 0; t + 1 < T; t++) {
        const float *z = logits + (int64_t)t * V;
        double mx = z[0], s = 0;
        for (int j = 1; j < V; j++) mx = fmax(mx, z[j]);
        for (int j = 0; j < V; j++) s += exp(z[j] - mx);
        double want_lp = z[tgt[t]] - mx - log(s);
        if (!(fabs(want_lp - lp[t]) < 1e-4)) fail_msg("position %d: engine log p %.6f, trainer %.6f", t, want_lp, lp[t]);
    }
    // an optimizer-like change of the weights is seen by the engine at once (views, not copies)
    int i = params_find(&ps, "lm_head.weight");
    float *p = params_data(&ps, i);
    p[(int64_t)tgt[0] * ps.cfg.hidden_size] += 1.0f;
    ds_engine_seq_truncate(e, 0, 0);
    float *logits2 = malloc(sizeof(float) * (size_t)(T * V));
    assert_int_equal(ds_engine_forward(e, &b, logits2, &err), DS_OK);
    assert_true(logits2[tgt[0]] != logits[tgt[0]]);
    free(logits);
    free(logits2);
    ds_engine_free(e);
    ds_model_free(&m);
    train_model_free(tm);
    params_free(&ps);
}

static void test_entropy_threshold_hand(void **state) {
    (void)state;
    float h[5];
    // the ceil(n * frac)-th largest of {0.5, 0.1, 0.9, 0.3, 0.7}
    struct { double frac; float want; } c[] = {{1.0, 0.1f}, {0.2, 0.9f}, {0.5, 0.5f}, {0.3, 0.7f}, {1e-6, 0.9f}};
    for (int i = 0; i < 5; i++) {
        float v[5] = {0.5f, 0.1f, 0.9f, 0.3f, 0.7f};
        memcpy(h, v, sizeof v);
        float got = grpo_entropy_threshold(h, 5, c[i].frac);
        if (got != c[i].want) fail_msg("frac %g: threshold %g, want %g", c[i].frac, got, c[i].want);
    }
    // ties at the threshold all pass (>=): with {2, 2, 2, 0} the top quarter is every 2
    float t[4] = {2, 0, 2, 2};
    assert_true(grpo_entropy_threshold(t, 4, 0.25) == 2.0f);
}

// The rollout's recorded entropies (want_entropy) are the policy's: at every completion
// position they equal the entropy the trainer's forward computes for the same sequence.
static void test_rollout_entropy_matches_trainer(void **state) {
    (void)state;
    param_store ps;
    train_model *tm;
    int32_t inp[B * T], tgt[B * T];
    setup_model(&ps, &tm, inp, tgt);
    ds_model m;
    ds_error err;
    assert_int_equal(params_model_view(&ps, &m, &err), DS_OK);
    enum { NEW = T - NP };
    rollout_opts o = {.max_new = NEW, .prefill_chunk = 8, .sp = {.temperature = 1.0f, .top_p = 1.0f, .seed = 7},
                      .want_entropy = 1};
    rollout *ro;
    assert_int_equal(rollout_create(&ro, &m, 2, NP, &o, &err), DS_OK);
    const int *ids[1] = {inp};
    int lens[1] = {NP};
    rollout_result res;
    assert_int_equal(rollout_run(ro, ids, lens, 1, 2, 0, &res, NULL, NULL, NULL, &err), DS_OK);
    assert_non_null(res.entropy);
    // lay out each sampled sequence: prompt + completion, entropies at the completion's targets
    int32_t si[B * T], st[B * T];
    float ent[B * T];
    for (int k = 0; k < 2; k++)
        for (int t = 0; t < T; t++) {
            int L = NP + res.len[k];
            int tok = t < NP ? inp[t] : t - NP < res.len[k] ? res.tokens[k * res.max_new + t - NP] : 0;
            si[k * T + t] = t < L ? tok : 0;
            int next = t + 1 < NP ? inp[t + 1] : t + 1 - NP < res.len[k] ? res.tokens[k * res.max_new + t + 1 - NP] : -1;
            st[k * T + t] = t + 1 >= NP && t + 1 < L ? next : -1;
        }
    train_loss_weights w = {.entropy = ent};
    train_loss L = {0};
    train_model_eval(tm, si, st, B, T, &w, &L);
    int checked = 0;
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < res.len[k]; j++) {
            float want = ent[k * T + NP - 1 + j], got = res.entropy[k * res.max_new + j];
            if (!(fabsf(want - got) < 1e-4f * (1 + want)))
                fail_msg("sequence %d token %d: rollout entropy %.6f, trainer %.6f", k, j, got, want);
            checked++;
        }
    assert_true(checked >= NEW); // at least one full completion (random weights rarely stop)
    assert_true(res.entropy[0] > 0.1f); // random weights: far from deterministic
    rollout_result_free(&res);
    rollout_free(ro);
    ds_model_free(&m);
    train_model_free(tm);
    params_free(&ps);
}

static void test_process_advantages_hand(void **state) {
    (void)state;
    enum { N = REWARD_PROC_NONE, F = REWARD_PROC_FREE, O = REWARD_PROC_OK, X = REWARD_PROC_BAD };
    // two groups of 2 sequences, max_new 5. Group 0: 3 right and 1 wrong checked token -> mu 3/4;
    // the labels past a sequence's length (stale X) must not count. Group 1: all right -> mu 1.
    const uint8_t lab[4 * 5] = {F, O, X, N, X, //
                                O, F, O, X, X, //
                                F, O, N, O, X, //
                                N, F, X, X, X};
    const int len[4] = {4, 3, 4, 2};
    const float adv[4] = {1.0f, -1.0f, 0.5f, -0.5f};
    float out[20];
    int bad[2];
    grpo_process_advantages(lab, len, 2, 2, 5, adv, 2.0f, out, bad);
    const float want[20] = {1.0f, 0.5f, -1.5f, 0, 0, //
                            0.5f, -1.0f, 0.5f, 0, 0, //
                            0.5f, 0, 0, 0, 0,       //
                            0, -0.5f, 0, 0, 0};
    for (int i = 0; i < 20; i++) {
        if (fabsf(out[i] - want[i]) > 1e-6f) print_error("token %d: %g, want %g\n", i, (double)out[i], (double)want[i]);
        assert_true(fabsf(out[i] - want[i]) <= 1e-6f);
    }
    assert_int_equal(bad[0], 1);
    assert_int_equal(bad[1], 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_advantages_hand),
        cmocka_unit_test(test_token_objective_hand),
        cmocka_unit_test(test_kl_zero_when_policy_is_reference),
        cmocka_unit_test(test_objective_gradient_fd),
        cmocka_unit_test(test_one_step_moves_logp_by_advantage),
        cmocka_unit_test(test_model_view_matches_training_forward),
        cmocka_unit_test(test_entropy_threshold_hand),
        cmocka_unit_test(test_rollout_entropy_matches_trainer),
        cmocka_unit_test(test_process_advantages_hand),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
