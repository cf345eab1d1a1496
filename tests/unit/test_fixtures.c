// Whole-model logits against fixtures made by the independent PyTorch reference
// (tools/reference.py via tools/make_fixtures.sh). For each tiny config: every attention
// form and a token-by-token run must be within 1e-4 x max |logit| of the reference, and so
// must the MTP head's logits.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "io/npy.h"
#include "model/engine.h"
#include "test_util.h"

static float *load_npy(const char *name, int64_t rows, int64_t cols) {
    char path[512];
    snprintf(path, sizeof path, "%s/logits/%s", fixtures(), name);
    float *data;
    int ndim;
    int64_t shape[4];
    ds_error err;
    if (npy_read_f32(path, &data, &ndim, shape, &err)) fail_msg("%s", err.msg);
    assert_int_equal(ndim, 2);
    assert_int_equal(shape[0], rows);
    assert_int_equal(shape[1], cols);
    return data;
}

// Main logits of all T positions and MTP logits of T-1, `chunk` tokens per call.
static void run_model(const ds_model *m, const int *ids, int T, int chunk, ds_attn_mode attn, float *out, float *mtp_out) {
    ds_engine_limits lim = {.max_tokens = chunk, .max_seqs = 1, .max_ctx = T, .max_logits = chunk, .attn = attn};
    ds_engine *e;
    ds_error err;
    if (ds_engine_create(&e, m, &lim, &err)) fail_msg("%s", err.msg);
    int64_t V = m->cfg.vocab_size, D = m->cfg.hidden_size;
    int seq[64] = {0}, pos[64];
    uint8_t want[64];
    memset(want, 1, sizeof want);
    float *hidden = malloc((size_t)(T * D) * sizeof(float));
    for (int t0 = 0; t0 < T; t0 += chunk) {
        int n = T - t0 < chunk ? T - t0 : chunk;
        for (int i = 0; i < n; i++) pos[i] = t0 + i;
        ds_batch b = {n, ids + t0, seq, pos, want};
        if (ds_engine_forward(e, &b, out + t0 * V, &err)) fail_msg("%s", err.msg);
        memcpy(hidden + t0 * D, ds_engine_hidden(e), (size_t)(n * D) * sizeof(float));
    }
    for (int t0 = 0; mtp_out && t0 < T - 1; t0 += chunk) {
        int n = T - 1 - t0 < chunk ? T - 1 - t0 : chunk;
        for (int i = 0; i < n; i++) pos[i] = t0 + i;
        ds_batch b = {n, ids + t0 + 1, seq, pos, want};
        if (ds_engine_forward_mtp(e, &b, hidden + t0 * D, mtp_out + t0 * V, &err)) fail_msg("%s", err.msg);
    }
    free(hidden);
    ds_engine_free(e);
}

static void check_fixture(const char *preset) {
    int ids[64];
    int T = read_ids(ids, 64);
    assert_true(T >= 8);
    char dir[512], name[128];
    snprintf(dir, sizeof dir, "%s/models/%s", fixtures(), preset);
    ds_model m;
    ds_error err;
    if (ds_model_load(&m, dir, &err)) fail_msg("%s", err.msg);
    int64_t V = m.cfg.vocab_size;
    snprintf(name, sizeof name, "%s.npy", preset);
    float *ref = load_npy(name, T, V);
    float *mref = NULL;
    if (m.has_mtp) {
        snprintf(name, sizeof name, "%s.mtp.npy", preset);
        mref = load_npy(name, T - 1, V);
    }
    float *out = malloc((size_t)(T * V) * sizeof(float)), *mout = malloc((size_t)(T * V) * sizeof(float));
    const struct { int chunk; ds_attn_mode attn; const char *what; } runs[] = {
        {T, DS_ATTN_NAIVE, "naive prefill"}, {T, DS_ATTN_ABSORBED, "absorbed prefill"}, {1, DS_ATTN_AUTO, "token by token"},
        {5, DS_ATTN_AUTO, "chunks of 5"}};
    for (size_t r = 0; r < sizeof runs / sizeof *runs; r++) {
        run_model(&m, ids, T, runs[r].chunk, runs[r].attn, out, mref ? mout : NULL);
        double d = test_max_rel_diff(out, ref, T * V);
        if (!(d <= 1e-4)) fail_msg("%s %s: max |diff| = %.3g x max |logit|", preset, runs[r].what, d);
        if (mref) {
            d = test_max_rel_diff(mout, mref, (T - 1) * V);
            if (!(d <= 1e-4)) fail_msg("%s %s MTP: max |diff| = %.3g x max |logit|", preset, runs[r].what, d);
        }
    }
    free(out); free(mout); free(ref); free(mref);
    ds_model_free(&m);
}

static void test_tiny(void **s) { (void)s; check_fixture("tiny"); }
static void test_tiny_noq(void **s) { (void)s; check_fixture("tiny-noq"); }
static void test_tiny_v2(void **s) { (void)s; check_fixture("tiny-v2"); }
static void test_tiny_v2_greedy(void **s) { (void)s; check_fixture("tiny-v2-greedy"); }
static void test_tiny_fp8(void **s) { (void)s; check_fixture("tiny-fp8"); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny),
        cmocka_unit_test(test_tiny_noq),
        cmocka_unit_test(test_tiny_v2),
        cmocka_unit_test(test_tiny_v2_greedy),
        cmocka_unit_test(test_tiny_fp8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
