// Sampler: greedy, reproducibility, the empirical distribution of temperature sampling, the
// top-k / top-p / min-p filters (excluded tokens never drawn) and parameter validation.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "infer/sampler.h"

enum { V = 10, DRAWS = 20000 };
static const float logits[V] = {1.0f, 2.5f, 0.3f, -1.0f, 2.5f, 0.0f, 1.7f, -3.0f, 0.9f, 2.0f};

static sampler_params params(float t, int k, float p, float minp, uint64_t seed) {
    return (sampler_params){.temperature = t, .top_k = k, .top_p = p, .min_p = minp, .seed = seed};
}

static void sampler_open(sampler *s, sampler_params p, int vocab) {
    ds_error err;
    ds_status st = sampler_init(s, &p, vocab, &err);
    if (st != DS_OK) print_error("%s\n", err.msg);
    assert_int_equal(st, DS_OK);
}

// softmax(logits / t) in double
static void probs_ref(double *p, float t) {
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < V; i++) mx = fmax(mx, logits[i] / t);
    for (int i = 0; i < V; i++) { p[i] = exp(logits[i] / t - mx); sum += p[i]; }
    for (int i = 0; i < V; i++) p[i] /= sum;
}

static void count_draws(sampler *s, int *count) {
    memset(count, 0, sizeof(int) * V);
    for (int d = 0; d < DRAWS; d++) {
        int id = sampler_sample(s, logits);
        assert_true(id >= 0 && id < V);
        count[id]++;
    }
}

static void test_greedy(void **state) {
    (void)state;
    sampler s;
    sampler_open(&s, params(0.0f, 0, 1.0f, 0.0f, 1), V);
    assert_int_equal(sampler_sample(&s, logits), 1); // ids 1 and 4 tie: lowest wins
    sampler_free(&s);
    // top-k = 1 at any temperature is greedy too.
    sampler_open(&s, params(1.3f, 1, 1.0f, 0.0f, 5), V);
    for (int d = 0; d < 200; d++) assert_int_equal(sampler_sample(&s, logits), 1);
    sampler_free(&s);
}

static void test_same_seed_same_tokens(void **state) {
    (void)state;
    sampler a, b, c;
    sampler_params p = params(0.8f, 5, 0.9f, 0.02f, 1234);
    sampler_open(&a, p, V);
    sampler_open(&b, p, V);
    p.seed = 99;
    sampler_open(&c, p, V);
    int differs = 0;
    for (int d = 0; d < 500; d++) {
        int x = sampler_sample(&a, logits), y = sampler_sample(&b, logits), z = sampler_sample(&c, logits);
        assert_int_equal(x, y);
        differs |= x != z;
    }
    assert_true(differs);
    sampler_free(&a); sampler_free(&b); sampler_free(&c);
}

static void test_temperature_distribution(void **state) {
    (void)state;
    static const float temps[] = {1.0f, 0.7f, 1.8f};
    for (size_t k = 0; k < 3; k++) {
        sampler s;
        sampler_open(&s, params(temps[k], 0, 1.0f, 0.0f, 17 + k), V);
        int count[V];
        double p[V];
        count_draws(&s, count);
        probs_ref(p, temps[k]);
        for (int i = 0; i < V; i++) assert_true(fabs((double)count[i] / DRAWS - p[i]) < 0.02);
        sampler_free(&s);
    }
}

// top-k 3 keeps ids {1, 4, 9} (logits 2.5, 2.5, 2.0), renormalised.
static void test_top_k(void **state) {
    (void)state;
    sampler s;
    sampler_open(&s, params(1.0f, 3, 1.0f, 0.0f, 3), V);
    int count[V];
    count_draws(&s, count);
    double p[V], mass;
    probs_ref(p, 1.0f);
    mass = p[1] + p[4] + p[9];
    for (int i = 0; i < V; i++) {
        if (i == 1 || i == 4 || i == 9) assert_true(fabs((double)count[i] / DRAWS - p[i] / mass) < 0.02);
        else assert_int_equal(count[i], 0);
    }
    sampler_free(&s);
    sampler_open(&s, params(1.0f, V + 5, 1.0f, 0.0f, 3), V); // k >= vocab: off
    count_draws(&s, count);
    assert_true(count[7] > 0); // p = 0.0011: ~22 expected draws
    sampler_free(&s);
}

// Sorted probabilities at T=1: 1,4 (0.270 each), 9 (0.164), 6 (0.121), 0 (0.060), 8, 2, 5, 3, 7.
// top-p 0.6: 0.270 + 0.270 = 0.539 < 0.6, + 0.164 = 0.703 >= 0.6 -> keep {1, 4, 9}.
static void test_top_p(void **state) {
    (void)state;
    double p[V];
    probs_ref(p, 1.0f);
    sampler s;
    sampler_open(&s, params(1.0f, 0, 0.6f, 0.0f, 11), V);
    int count[V];
    count_draws(&s, count);
    double mass = p[1] + p[4] + p[9];
    for (int i = 0; i < V; i++) {
        if (i == 1 || i == 4 || i == 9) assert_true(fabs((double)count[i] / DRAWS - p[i] / mass) < 0.02);
        else assert_int_equal(count[i], 0);
    }
    sampler_free(&s);
    // A tiny top-p still keeps one token (the most probable; lowest id on the tie).
    sampler_open(&s, params(1.0f, 0, 1e-6f, 0.0f, 11), V);
    for (int d = 0; d < 100; d++) assert_int_equal(sampler_sample(&s, logits), 1);
    sampler_free(&s);
    // top-k then top-p: within the top 4 {1, 4, 9, 6} (renormalised), 0.8 needs three: 0.654, 0.853.
    sampler_open(&s, params(1.0f, 4, 0.8f, 0.0f, 12), V);
    count_draws(&s, count);
    for (int i = 0; i < V; i++)
        if (i != 1 && i != 4 && i != 9) assert_int_equal(count[i], 0);
    sampler_free(&s);
}

// min-p 0.3: keep p >= 0.3 * p_max = 0.081 -> {1, 4, 9, 6}; the tail (0 at 0.060, ...) never drawn.
static void test_min_p(void **state) {
    (void)state;
    double p[V];
    probs_ref(p, 1.0f);
    sampler s;
    sampler_open(&s, params(1.0f, 0, 1.0f, 0.3f, 21), V);
    int count[V];
    count_draws(&s, count);
    double mass = p[1] + p[4] + p[9] + p[6];
    for (int i = 0; i < V; i++) {
        if (i == 1 || i == 4 || i == 9 || i == 6) assert_true(fabs((double)count[i] / DRAWS - p[i] / mass) < 0.02);
        else assert_int_equal(count[i], 0);
    }
    sampler_free(&s);
    sampler_open(&s, params(1.0f, 0, 1.0f, 1.0f, 21), V); // min-p 1: only the maxima survive
    count_draws(&s, count);
    assert_int_equal(count[1] + count[4], DRAWS);
    sampler_free(&s);
}

// A large vocabulary exercises the top-k heap and the top-p pre-filter beyond toy sizes.
static void test_large_vocab(void **state) {
    (void)state;
    enum { BIG = 5000 };
    static float lg[BIG];
    for (int i = 0; i < BIG; i++) lg[i] = (float)((i * 7919) % BIG) / 500.0f; // distinct values
    sampler s;
    sampler_open(&s, params(1.0f, 5, 1.0f, 0.0f, 8), BIG);
    for (int d = 0; d < 300; d++) assert_true(lg[sampler_sample(&s, lg)] >= (float)(BIG - 5) / 500.0f);
    sampler_free(&s);
    sampler_open(&s, params(1.0f, 0, 0.5f, 0.0f, 8), BIG);
    // With logits step 1/500 the top half of the mass sits within ~350 ids of the maximum.
    for (int d = 0; d < 300; d++) assert_true(lg[sampler_sample(&s, lg)] >= (float)(BIG - 400) / 500.0f);
    sampler_free(&s);
}

static void expect_invalid(sampler_params p, int vocab, const char *needle) {
    sampler s;
    ds_error err = {{0}};
    assert_int_equal(sampler_init(&s, &p, vocab, &err), DS_ERR_ARG);
    if (!strstr(err.msg, needle)) {
        print_error("message '%s' lacks '%s'\n", err.msg, needle);
        fail();
    }
    assert_null(s.probs);
}

static void test_invalid_params(void **state) {
    (void)state;
    expect_invalid(params(-0.5f, 0, 1.0f, 0.0f, 1), V, "--temp");
    expect_invalid(params(NAN, 0, 1.0f, 0.0f, 1), V, "--temp");
    expect_invalid(params(1.0f, -2, 1.0f, 0.0f, 1), V, "--top-k must be >= 0, got -2");
    expect_invalid(params(1.0f, 0, 1.5f, 0.0f, 1), V, "--top-p must be in (0, 1], got 1.5");
    expect_invalid(params(1.0f, 0, 0.0f, 0.0f, 1), V, "--top-p");
    expect_invalid(params(1.0f, 0, 1.0f, -0.1f, 1), V, "--min-p");
    expect_invalid(params(1.0f, 0, 1.0f, 1.5f, 1), V, "--min-p");
    expect_invalid(params(1.0f, 0, 1.0f, 0.0f, 1), 0, "vocabulary");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_same_seed_same_tokens),
        cmocka_unit_test(test_temperature_distribution),
        cmocka_unit_test(test_top_k),
        cmocka_unit_test(test_top_p),
        cmocka_unit_test(test_min_p),
        cmocka_unit_test(test_large_vocab),
        cmocka_unit_test(test_invalid_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
