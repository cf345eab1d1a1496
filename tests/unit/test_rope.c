// RoPE + YaRN: pinned DeepSeek-V3 frequencies and mscale (architecture page 4.2/4.3), the tiny
// T1 ramp, and the rotation itself (consecutive pairs) against a double reference.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>

#include "kernels/kernels.h"

static void assert_rel(double got, double want, double tol, const char *what) {
    if (!(fabs(got - want) <= tol * fabs(want))) {
        print_error("%s: got %.9g want %.9g\n", what, got, want);
        fail();
    }
}

static const rope_params v3 = {.dim = 64, .theta = 10000.0f, .yarn = 1, .factor = 40.0f, .orig_max_pos = 4096,
                               .beta_fast = 32.0f, .beta_slow = 1.0f, .mscale = 1.0f, .mscale_all_dim = 1.0f};

static void test_v3_inv_freq_pinned(void **state) {
    (void)state;
    float f[32];
    rope_inv_freq(f, &v3);
    static const struct { int i; double v; } pins[] = {
        {0, 1.0}, {10, 5.623413e-2}, {11, 3.900693e-2}, {12, 2.687936e-2},
        {22, 1.778279e-4}, {23, 3.333804e-5}, {31, 3.333804e-6},
    };
    for (size_t k = 0; k < sizeof(pins) / sizeof(pins[0]); k++) assert_rel(f[pins[k].i], pins[k].v, 1e-5, "v3 inv_freq");
    // i <= 10 keep the original frequency, i >= 23 are divided by the factor.
    for (int i = 0; i < 32; i++) {
        double base = pow(10000.0, -2.0 * i / 64.0);
        if (i <= 10) assert_rel(f[i], base, 1e-6, "kept");
        if (i >= 23) assert_rel(f[i], base / 40.0, 1e-6, "divided");
    }
}

static void test_mscale(void **state) {
    (void)state;
    assert_rel(rope_softmax_mscale2(&v3), 1.873854, 1e-6, "V3 mscale^2");
    assert_rel(rope_cos_sin_mscale(&v3), 1.0, 1e-7, "V3 cos/sin mscale");
    rope_params v2 = v3;
    v2.mscale = v2.mscale_all_dim = 0.707f;
    assert_rel(rope_softmax_mscale2(&v2), 1.589626, 1e-6, "V2 mscale^2");
    assert_rel(rope_cos_sin_mscale(&v2), 1.0, 1e-7, "V2 cos/sin mscale");
    rope_params mixed = v3;
    mixed.mscale_all_dim = 0.707f; // HF's cos/sin factor get_mscale(s, mscale)/get_mscale(s, all_dim)
    assert_rel(rope_cos_sin_mscale(&mixed), (0.1 * log(40.0) + 1) / (0.1 * 0.707 * log(40.0) + 1), 1e-6, "mixed");
    rope_params plain = v3;
    plain.yarn = 0;
    assert_true(rope_softmax_mscale2(&plain) == 1.0f && rope_cos_sin_mscale(&plain) == 1.0f);
    rope_params t1 = {.dim = 8, .theta = 10000.0f, .yarn = 1, .factor = 4.0f, .orig_max_pos = 64,
                      .beta_fast = 32.0f, .beta_slow = 1.0f, .mscale = 1.0f, .mscale_all_dim = 1.0f};
    assert_rel(rope_softmax_mscale2(&t1), 1.296477, 1e-6, "T1 mscale^2");
    t1.mscale = t1.mscale_all_dim = 0.707f;
    assert_rel(rope_softmax_mscale2(&t1), 1.205628, 1e-6, "T1-v2 mscale^2");
    t1.factor = 1.0f; // get_mscale(s <= 1) = 1
    assert_true(rope_softmax_mscale2(&t1) == 1.0f);
}

// T1 (dim 8, factor 4, L0 64): low 0, high 2 -> freq 0 kept, 1 half-blended, 2-3 divided by 4.
static void test_t1_ramp(void **state) {
    (void)state;
    rope_params t1 = {.dim = 8, .theta = 10000.0f, .yarn = 1, .factor = 4.0f, .orig_max_pos = 64,
                      .beta_fast = 32.0f, .beta_slow = 1.0f, .mscale = 1.0f, .mscale_all_dim = 1.0f};
    float f[4];
    rope_inv_freq(f, &t1);
    assert_rel(f[0], 1.0, 1e-7, "T1 f0");
    assert_rel(f[1], 0.1 * 0.5 + 0.1 / 4 * 0.5, 1e-6, "T1 f1");
    assert_rel(f[2], 0.01 / 4, 1e-6, "T1 f2");
    assert_rel(f[3], 0.001 / 4, 1e-6, "T1 f3");
    t1.yarn = 0; // plain RoPE: theta^(-2i/dim)
    rope_inv_freq(f, &t1);
    assert_rel(f[1], 0.1, 1e-6, "plain f1");
    assert_rel(f[3], 0.001, 1e-6, "plain f3");
}

static void test_rope_rotation(void **state) {
    (void)state;
    float f[32];
    rope_inv_freq(f, &v3);
    float x[64], y[64];
    for (int i = 0; i < 64; i++) x[i] = (float)sin(0.37 * i + 0.1);
    // Position 0 is the identity (which is why a wrong pairing passes short-prompt tests).
    for (int i = 0; i < 64; i++) y[i] = x[i];
    rope_forward(y, 64, 0, f, 1.0f);
    for (int i = 0; i < 64; i++) assert_true(y[i] == x[i]);
    // Known rotation: inv_freq[0] = 1, position 1 turns pair (x0, x1) = (1, 0) to (cos 1, sin 1),
    // and leaves the rest of a zero vector alone: consecutive pairs, not NeoX halves.
    float e[64] = {1.0f};
    rope_forward(e, 64, 1, f, 1.0f);
    assert_rel(e[0], cos(1.0), 1e-6, "cos 1");
    assert_rel(e[1], sin(1.0), 1e-6, "sin 1");
    for (int i = 2; i < 64; i++) assert_true(e[i] == 0.0f);
    // A far position and an mscale against a double rotation with the same f32 angles.
    for (int pos = 1; pos <= 100001; pos += 25000) {
        for (int i = 0; i < 64; i++) y[i] = x[i];
        rope_forward(y, 64, pos, f, 1.25f);
        for (int i = 0; i < 32; i++) {
            double a = (double)((float)pos * f[i]), c = cos(a) * 1.25, s = sin(a) * 1.25;
            double w0 = x[2 * i] * c - x[2 * i + 1] * s, w1 = x[2 * i] * s + x[2 * i + 1] * c;
            if (!(fabs(y[2 * i] - w0) <= 1e-5 && fabs(y[2 * i + 1] - w1) <= 1e-5)) {
                print_error("pos %d pair %d: got (%g, %g) want (%g, %g)\n", pos, i, y[2 * i], y[2 * i + 1], w0, w1);
                fail();
            }
        }
        // A rotation keeps each pair's length (times mscale).
        for (int i = 0; i < 32; i++) {
            double n0 = hypot(x[2 * i], x[2 * i + 1]) * 1.25, n1 = hypot(y[2 * i], y[2 * i + 1]);
            assert_true(fabs(n0 - n1) <= 1e-5);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v3_inv_freq_pinned),
        cmocka_unit_test(test_mscale),
        cmocka_unit_test(test_t1_ramp),
        cmocka_unit_test(test_rope_rotation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
