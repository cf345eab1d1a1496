// The whole-model training forward/backward (train/train_model.c):
// - gradients of every parameter against autograd fixtures of the independent float64
//   PyTorch reference (tools/reference.py --grad), within 1e-4 relative, losses included;
// - directional central finite differences of the C loss itself on a full tiny model;
// - the aux-loss-free bias update moving a skewed load toward balance;
// - a tiny model memorising a short text (loss close to zero);
// - the optimizer step leaves the routing bias and the tied MTP copies alone.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "io/fileutil.h"
#include "io/safetensors.h"
#include "model/init.h"
#include "train/params.h"
#include "train/train_model.h"
#include "train/trainer.h"
#include "test_fd.h"
#include "test_util.h"

// "loss" etc. from the fixture's safetensors __metadata__ (strings).
static double meta_number(const char *path, const char *key) {
    char *data = NULL;
    size_t size = 0;
    ds_error err;
    if (file_read_all(path, &data, &size, &err)) fail_msg("%s", err.msg);
    uint64_t hl = 0;
    memcpy(&hl, data, 8);
    cJSON *j = cJSON_ParseWithLength(data + 8, (size_t)hl);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "__metadata__");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, key);
    if (!cJSON_IsString(v)) fail_msg("%s: no metadata '%s'", path, key);
    double x = strtod(v->valuestring, NULL);
    cJSON_Delete(j);
    free(data);
    return x;
}

// Loss of one sequence exactly as `deepseek grad` defines it; gradients into ps->grads.
static train_loss seq_loss(train_model *tm, param_store *ps, const int *ids, int n, float mtp_w, float bal_a,
                           int with_grad) {
    int T = n - 1;
    int32_t inp[64], tgt[64];
    for (int t = 0; t < T; t++) { inp[t] = ids[t]; tgt[t] = ids[t + 1]; }
    train_loss_weights w = {.ce_weight = 1.0f / (float)T, .mtp_weight = mtp_w > 0 ? mtp_w / (float)(T - 1) : 0.0f, .balance_weight = bal_a};
    train_loss L = {0};
    if (with_grad) memset(ps->grads, 0, sizeof(float) * (size_t)ps->n);
    train_model_step(tm, inp, tgt, 1, T, &w, &L);
    return L;
}

static void check_preset(const char *preset, const char *suffix, float mtp_w, float bal_a) {
    int ids[64];
    int n = read_ids(ids, 64);
    char dir[512], gpath[512];
    snprintf(dir, sizeof dir, "%s/models/%s", fixtures(), preset);
    snprintf(gpath, sizeof gpath, "%s/grads/%s%s.safetensors", fixtures(), preset, suffix);
    param_store ps;
    ds_error err;
    if (params_load(&ps, dir, &err)) fail_msg("%s", err.msg);
    train_model *tm;
    if (train_model_create(&tm, &ps, 1, n - 1, &err)) fail_msg("%s", err.msg);
    train_loss L = seq_loss(tm, &ps, ids, n, mtp_w, bal_a, 1);
    double want = meta_number(gpath, "loss");
    if (!(fabs(L.loss - want) <= 1e-5 * fabs(want))) fail_msg("%s%s: loss %.9g, reference %.9g", preset, suffix, L.loss, want);
    double want_bal = meta_number(gpath, "balance");
    if (!(fabs(L.balance - want_bal) <= 1e-4 * fabs(want_bal) + 1e-9))
        fail_msg("%s%s: balance loss %.9g, reference %.9g", preset, suffix, L.balance, want_bal);

    st_file f;
    if (st_file_open(&f, gpath, &err)) fail_msg("%s", err.msg);
    double gmax = 0;
    for (int i = 0; i < f.n; i++) {
        const float *r = (const float *)f.entries[i].data;
        int64_t m = (int64_t)(f.entries[i].end - f.entries[i].begin) / 4;
        for (int64_t k = 0; k < m; k++) gmax = fmax(gmax, fabs(r[k]));
    }
    int checked = 0;
    for (int i = 0; i < ps.list.n; i++) {
        const ckpt_tensor *t = &ps.list.t[i];
        st_entry *e = st_file_find(&f, t->name);
        int trained = strcmp(t->source, t->name) == 0 && !strstr(t->name, "e_score_correction_bias");
        if (!trained) { assert_null(e); continue; }
        if (!e) fail_msg("%s: reference lacks %s", gpath, t->name);
        int64_t m = ckpt_tensor_numel(t);
        assert_int_equal((int64_t)(e->end - e->begin), m * 4);
        const float *ref = (const float *)e->data, *got = params_grad(&ps, i);
        double rmax = 0, dmax = 0;
        for (int64_t k = 0; k < m; k++) {
            rmax = fmax(rmax, fabs(ref[k]));
            dmax = fmax(dmax, fabs((double)got[k] - ref[k]));
        }
        double rel = dmax / fmax(rmax, 1e-3 * gmax);
        if (!(rel <= 1e-4)) fail_msg("%s%s: %s gradient off by %.3g relative", preset, suffix, t->name, rel);
        checked++;
    }
    assert_int_equal(checked, f.n);
    st_file_close(&f);
    train_model_free(tm);
    params_free(&ps);
}

static void test_grads_tiny(void **state) { (void)state; check_preset("tiny", "", 0, 0); }
static void test_grads_tiny_noq(void **state) { (void)state; check_preset("tiny-noq", "", 0, 0); }
static void test_grads_tiny_v2(void **state) { (void)state; check_preset("tiny-v2", "", 0, 0); }
static void test_grads_tiny_v2_greedy(void **state) { (void)state; check_preset("tiny-v2-greedy", "", 0, 0); }
static void test_grads_tiny_full(void **state) { (void)state; check_preset("tiny", ".full", 0.3f, 0.01f); }
static void test_grads_tiny_noq_full(void **state) { (void)state; check_preset("tiny-noq", ".full", 0.3f, 0.01f); }

// Directional derivative of the C loss along the gradient of each tensor group, by central
// differences (the loss summed in double; f32 forward, so h is large and the bar is 2%).
// The router weight is left out: a step that large flips routing decisions, a jump the
// gradient rightly ignores (its gradient is pinned by the autograd fixtures above and by
// moe_gate_backward's finite differences in test_backward).
typedef struct {
    train_model *tm;
    param_store *ps;
    const int *ids;
    int n;
} fd_seq_ctx;

static double fd_seq_loss(void *vctx) {
    fd_seq_ctx *c = vctx;
    return seq_loss(c->tm, c->ps, c->ids, c->n, 0.3f, 0.01f, 0).loss;
}

static void test_finite_differences_full_model(void **state) {
    (void)state;
    int ids[64];
    int n = read_ids(ids, 64);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/models/tiny", fixtures());
    param_store ps;
    ds_error err;
    if (params_load(&ps, dir, &err)) fail_msg("%s", err.msg);
    train_model *tm;
    if (train_model_create(&tm, &ps, 1, n - 1, &err)) fail_msg("%s", err.msg);
    seq_loss(tm, &ps, ids, n, 0.3f, 0.01f, 1);
    float *g = malloc(sizeof(float) * (size_t)ps.n);
    memcpy(g, ps.grads, sizeof(float) * (size_t)ps.n);
    const char *names[] = {"model.embed_tokens.weight", "model.layers.0.self_attn.q_a_proj.weight",
                           "model.layers.0.self_attn.kv_a_proj_with_mqa.weight", "model.layers.1.self_attn.kv_b_proj.weight",
                           "model.layers.2.mlp.shared_experts.down_proj.weight",
                           "model.layers.3.input_layernorm.weight", "model.norm.weight", "lm_head.weight",
                           "model.layers.4.eh_proj.weight", "model.layers.4.hnorm.weight",
                           "model.layers.4.self_attn.o_proj.weight"};
    fd_seq_ctx fc = {tm, &ps, ids, n};
    fd_check_tensors(&ps, g, names, (int)(sizeof names / sizeof *names), 2e-3, 0.02, fd_seq_loss, &fc);
    free(g);
    train_model_free(tm);
    params_free(&ps);
}

static void tiny_config(ds_config *c) {
    ds_error err;
    assert_int_equal(ds_preset_config(c, "tiny", &err), DS_OK);
}

// A router skewed toward experts 0 and 1 (their bias starts 1.0 above the others) sends
// nearly every token to them; only the bias update runs (no optimizer step), so any change
// of load is the bias's doing.
static void test_bias_update_balances(void **state) {
    (void)state;
    ds_config c;
    tiny_config(&c);
    param_store ps;
    ds_error err;
    assert_int_equal(params_init_random(&ps, &c, 5, &err), DS_OK);
    for (int l = c.first_k_dense_replace; l <= c.num_hidden_layers; l++) {
        char name[128];
        snprintf(name, sizeof name, "model.layers.%d.mlp.gate.e_score_correction_bias", l);
        int i = params_find(&ps, name);
        assert_true(i >= 0);
        params_data(&ps, i)[0] = params_data(&ps, i)[1] = 1.0f;
    }
    int B = 4, T = 32;
    train_model *tm;
    assert_int_equal(train_model_create(&tm, &ps, B, T, &err), DS_OK);
    int32_t inp[4 * 32], tgt[4 * 32];
    for (int i = 0; i < B * T; i++) {
        inp[i] = (int32_t)((i * 37 + 11) % 256);
        tgt[i] = (int32_t)((i * 91 + 5) % 256);
    }
    train_loss_weights w = {.ce_weight = 1.0f / (B * T), .mtp_weight = 0.3f / (B * (T - 1))};
    int nm = train_model_n_moe_layers(tm);
    assert_int_equal(nm, c.num_hidden_layers - c.first_k_dense_replace + 1); // main MoE layers + MTP
    float first[8] = {0}, imb[8];
    for (int it = 0; it < 60; it++) {
        train_loss L = {0};
        train_model_reset_load(tm);
        train_model_step(tm, inp, tgt, B, T, &w, &L);
        train_model_update_bias(tm, 0.05f, imb);
        if (it == 0) memcpy(first, imb, sizeof(float) * (size_t)nm);
    }
    for (int j = 0; j < nm; j++) {
        print_message("MoE layer %d: max/mean load %.2f -> %.2f\n", train_model_moe_layer(tm, j), first[j], imb[j]);
        assert_true(first[j] >= 3.0f);    // skewed: E/K = 4 is the worst possible
        assert_true(imb[j] <= 0.6f * first[j]);
    }
    train_model_free(tm);
    params_free(&ps);
}

// A fixed 2 x 48-token text, trained on repeatedly, must be memorised.
static void test_memorise_text(void **state) {
    (void)state;
    ds_config c;
    tiny_config(&c);
    param_store ps;
    ds_error err;
    assert_int_equal(params_init_random(&ps, &c, 11, &err), DS_OK);
    const char *text = "the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs!";
    int B = 2, T = 40;
    int32_t inp[80], tgt[80];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            inp[b * T + t] = (unsigned char)text[b * T + t];
            tgt[b * T + t] = (unsigned char)text[b * T + t + 1];
        }
    train_model *tm;
    assert_int_equal(train_model_create(&tm, &ps, B, T, &err), DS_OK);
    adamw_params hp = adamw_defaults();
    hp.weight_decay = 0;
    double first = 0, last = 0;
    lr_schedule sched = {.kind = LR_COSINE, .lr_max = 1e-2f, .lr_min = 1e-3f, .warmup = 10, .total = 200};
    for (int step = 0; step < 200; step++) {
        train_loss_weights w = {.ce_weight = 1.0f / (B * T), .mtp_weight = 0.3f / (B * (T - 1)), .balance_weight = 1e-4f / B};
        train_loss L = {0};
        memset(ps.grads, 0, sizeof(float) * (size_t)ps.n);
        train_model_reset_load(tm);
        train_model_step(tm, inp, tgt, B, T, &w, &L);
        double gn = trainer_grad_norm(&ps);
        trainer_adamw(&ps, &hp, step + 1, lr_at(&sched, step), grad_clip_scale(gn, 1.0f));
        train_model_update_bias(tm, 0.001f, NULL);
        last = L.ce_sum / (double)L.ce_count;
        if (step == 0) first = last;
    }
    print_message("memorise: CE %.4f -> %.4f\n", first, last);
    assert_true(first > 4.0);
    assert_true(last < 0.05);
    train_model_free(tm);
    params_free(&ps);
}

// AdamW skips the routing bias (no gradient, not decayed) and updates shared tensors once.
static void test_adamw_skips_bias(void **state) {
    (void)state;
    ds_config c;
    tiny_config(&c);
    param_store ps;
    ds_error err;
    assert_int_equal(params_init_random(&ps, &c, 2, &err), DS_OK);
    int bi = params_find(&ps, "model.layers.1.mlp.gate.e_score_correction_bias");
    assert_true(bi >= 0);
    float *b = params_data(&ps, bi);
    for (int e = 0; e < c.n_routed_experts; e++) b[e] = 0.25f * (float)e;
    for (int64_t i = 0; i < ps.n; i++) ps.grads[i] = 0.01f;
    adamw_params hp = adamw_defaults();
    trainer_adamw(&ps, &hp, 1, 0.1f, 1.0f);
    for (int e = 0; e < c.n_routed_experts; e++) assert_float_equal(b[e], 0.25f * (float)e, 0);
    // the MTP embedding is the main embedding: one update, not two
    int me = params_find(&ps, "model.embed_tokens.weight");
    char name[96];
    snprintf(name, sizeof name, "model.layers.%d.embed_tokens.weight", c.num_hidden_layers);
    int ce = params_find(&ps, name);
    assert_int_equal(ps.offset[me], ps.offset[ce]);
    assert_float_equal(ps.m[ps.offset[me]], 0.1f * 0.01f, 1e-9);
    params_free(&ps);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grads_tiny),
        cmocka_unit_test(test_grads_tiny_noq),
        cmocka_unit_test(test_grads_tiny_v2),
        cmocka_unit_test(test_grads_tiny_v2_greedy),
        cmocka_unit_test(test_grads_tiny_full),
        cmocka_unit_test(test_grads_tiny_noq_full),
        cmocka_unit_test(test_finite_differences_full_model),
        cmocka_unit_test(test_bias_update_balances),
        cmocka_unit_test(test_memorise_text),
        cmocka_unit_test(test_adamw_skips_bias),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
