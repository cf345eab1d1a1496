// AdamW against a double-precision reference, clipping, and the learning-rate schedules.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>

#include "base/rng.h"
#include "train/optim.h"

static void test_adamw_reference(void **state) {
    (void)state;
    enum { N = 257, STEPS = 20 };
    float p[N], m[N] = {0}, v[N] = {0}, g[N];
    double pd[N], md[N] = {0}, vd[N] = {0};
    ds_rng r;
    ds_rng_seed(&r, 7, 0);
    for (int i = 0; i < N; i++) pd[i] = p[i] = ds_rng_normal(&r);
    adamw_params hp = adamw_defaults();
    for (int t = 1; t <= STEPS; t++) {
        for (int i = 0; i < N; i++) g[i] = ds_rng_normal(&r) * (i % 3 ? 1.0f : 1e-3f);
        float lr = 0.01f * t, scale = 0.5f;
        int decay = t % 2;
        adamw_update(p, g, m, v, N, &hp, t, lr, scale, decay);
        for (int i = 0; i < N; i++) {
            double gi = (double)g[i] * scale;
            md[i] = 0.9 * md[i] + 0.1 * gi;
            vd[i] = 0.95 * vd[i] + 0.05 * gi * gi;
            double mh = md[i] / (1 - pow(0.9, t)), vh = vd[i] / (1 - pow(0.95, t));
            pd[i] = pd[i] * (1 - lr * (decay ? 0.1 : 0.0)) - lr * mh / (sqrt(vh) + 1e-8);
        }
    }
    for (int i = 0; i < N; i++) assert_float_equal(p[i], pd[i], 1e-4 * (1 + fabs(pd[i])));
}

// First step with g = 1: both moments bias-correct to 1, so the update is exactly lr (+ decay).
static void test_adamw_first_step(void **state) {
    (void)state;
    float p = 2.0f, m = 0, v = 0, g = 1.0f;
    adamw_params hp = adamw_defaults();
    adamw_update(&p, &g, &m, &v, 1, &hp, 1, 0.1f, 1.0f, 1);
    assert_float_equal(p, 2.0f - 0.1f * (1.0f + 0.1f * 2.0f), 1e-6);
}

static void test_clip(void **state) {
    (void)state;
    float g[4] = {3, 4, 0, 0};
    double norm = sqrt(grad_sq_sum(g, 4));
    assert_float_equal(norm, 5.0, 1e-12);
    assert_float_equal(grad_clip_scale(norm, 1.0f), 0.2f, 1e-6);
    assert_float_equal(grad_clip_scale(norm, 10.0f), 1.0f, 0);
    assert_float_equal(grad_clip_scale(norm, 0.0f), 1.0f, 0);
}

static void test_schedules(void **state) {
    (void)state;
    lr_schedule c = {.kind = LR_COSINE, .lr_max = 1.0f, .lr_min = 0.1f, .warmup = 10, .total = 110};
    assert_float_equal(lr_at(&c, 0), 0.1f, 1e-6);  // warmup starts above 0: step 0 trains
    assert_float_equal(lr_at(&c, 9), 1.0f, 1e-6);
    assert_float_equal(lr_at(&c, 10), 1.0f, 1e-6);
    assert_float_equal(lr_at(&c, 60), 0.55f, 1e-6); // halfway down the cosine
    assert_float_equal(lr_at(&c, 110), 0.1f, 1e-6);
    assert_float_equal(lr_at(&c, 500), 0.1f, 1e-6);
    for (int s = 11; s < 110; s++) assert_true(lr_at(&c, s) <= lr_at(&c, s - 1) + 1e-7f);

    lr_schedule v3 = lr_schedule_v3(2.2e-4f, 20, 14800);  // 1 step = 1B tokens of the report
    assert_float_equal(lr_at(&v3, 5), 2.2e-4f * 6 / 20, 1e-10);
    assert_float_equal(lr_at(&v3, 9999), 2.2e-4f, 1e-10);
    assert_float_equal(lr_at(&v3, 12150), (2.2e-4f + 2.2e-5f) / 2, 2e-7); // middle of the decay
    assert_float_equal(lr_at(&v3, 14400), 2.2e-5f, 1e-10);
    assert_float_equal(lr_at(&v3, 14700), 2.2e-5f / 3, 1e-10);            // 7.3e-6 in the report
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw_reference),
        cmocka_unit_test(test_adamw_first_step),
        cmocka_unit_test(test_clip),
        cmocka_unit_test(test_schedules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
