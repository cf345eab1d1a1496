// Balance loss against finite differences and its defining values; the bias update rule.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "base/rng.h"
#include "train/balance.h"

static void check_grad(bool sigmoid) {
    enum { T = 5, E = 6, K = 2 };
    float logits[T * E], d[T * E];
    int idx[T * K];
    ds_rng r;
    ds_rng_seed(&r, sigmoid ? 3 : 4, 0);
    for (int i = 0; i < T * E; i++) logits[i] = ds_rng_normal(&r);
    for (int t = 0; t < T; t++) { idx[t * K] = t % E; idx[t * K + 1] = (t * 3 + 1) % E; }
    for (int i = 0; i < T * E; i++) d[i] = 0.5f; // accumulates on top of what is there
    float alpha = 0.3f;
    moe_balance_loss(logits, idx, T, E, K, sigmoid, alpha, d);
    for (int i = 0; i < T * E; i++) {
        float keep = logits[i], h = 1e-2f;
        logits[i] = keep + h;
        double up = moe_balance_loss(logits, idx, T, E, K, sigmoid, alpha, NULL);
        logits[i] = keep - h;
        double dn = moe_balance_loss(logits, idx, T, E, K, sigmoid, alpha, NULL);
        logits[i] = keep;
        double fd = (up - dn) / (2 * h);
        if (fabs((d[i] - 0.5) - fd) > 1e-4 + 1e-3 * fabs(fd)) fail_msg("dlogits[%d] = %g, finite difference %g", i, d[i] - 0.5, fd);
    }
}

static void test_grad_sigmoid(void **s) { (void)s; check_grad(true); }
static void test_grad_softmax(void **s) { (void)s; check_grad(false); }

// Uniform scores and perfectly spread selections give L = alpha (f_i = 1, P_i = 1/E).
static void test_value(void **state) {
    (void)state;
    enum { T = 4, E = 4, K = 1 };
    float logits[T * E] = {0};
    int idx[T * K] = {0, 1, 2, 3};
    assert_float_equal(moe_balance_loss(logits, idx, T, E, K, true, 0.5f, NULL), 0.5f, 1e-6);
    // everything on expert 0: f_0 = E = 4, L = alpha * 4 * 1/4
    int same[T * K] = {0, 0, 0, 0};
    assert_float_equal(moe_balance_loss(logits, same, T, E, K, true, 0.5f, NULL), 0.5f, 1e-6);
    // ... but with scores favouring expert 0 the collapsed routing costs more
    for (int t = 0; t < T; t++) logits[t * E] = 3.0f;
    assert_true(moe_balance_loss(logits, same, T, E, K, true, 0.5f, NULL) > 0.5f + 0.1f);
}

static void test_bias_update(void **state) {
    (void)state;
    float bias[4] = {0, 0, 0, 0};
    int load[4] = {6, 2, 4, 4};
    float ratio = moe_bias_update(bias, load, 4, 0.001f);
    assert_float_equal(ratio, 1.5f, 1e-6);
    assert_float_equal(bias[0], -0.001f, 1e-9);
    assert_float_equal(bias[1], 0.001f, 1e-9);
    assert_float_equal(bias[2], 0.0f, 0);
    assert_float_equal(bias[3], 0.0f, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_sigmoid),
        cmocka_unit_test(test_grad_softmax),
        cmocka_unit_test(test_value),
        cmocka_unit_test(test_bias_update),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
