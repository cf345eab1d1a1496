// Block-quantized weights (Q8_0, Q4_0): the byte layout (pinned by hand-built blocks), the
// quantizers' error bounds, the integer dot kernels (AVX2 = portable, and both against the
// dequantized f32 product), every matmul path against the dequantized reference, and a model
// quantized at load.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/rng.h"
#include "kernels/kernels.h"
#include "model/engine.h"
#include "model/gguf_model.h"
#include "tensor/tensor.h"
#include "test_util.h"

static float *randv(int64_t n, uint64_t seed, float scale) {
    ds_rng r;
    ds_rng_seed(&r, seed, 0);
    float *x = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] = scale * ds_rng_normal(&r);
    return x;
}

// Hand-built blocks: the documented layout, independent of our quantizer.
static void test_layout(void **state) {
    (void)state;
    uint8_t q8[34], q4[18];
    uint16_t h = ds_f32_to_f16(0.5f);
    memcpy(q8, &h, 2);
    memcpy(q4, &h, 2);
    for (int j = 0; j < 32; j++) q8[2 + j] = (uint8_t)(int8_t)(j - 16);
    for (int j = 0; j < 16; j++) q4[2 + j] = (uint8_t)(j | ((15 - j) << 4)); // low: j, high: 15 - j
    float o8[32], o4[32];
    ds_dequantize_row(DS_Q8_0, q8, o8, 32);
    ds_dequantize_row(DS_Q4_0, q4, o4, 32);
    for (int j = 0; j < 32; j++) assert_float_equal(o8[j], 0.5f * (float)(j - 16), 0);
    for (int j = 0; j < 16; j++) {
        assert_float_equal(o4[j], 0.5f * (float)(j - 8), 0);
        assert_float_equal(o4[j + 16], 0.5f * (float)(15 - j - 8), 0);
    }
    assert_int_equal(ds_dtype_row_bytes(DS_Q8_0, 64), 68);
    assert_int_equal(ds_dtype_row_bytes(DS_Q4_0, 64), 36);
    assert_int_equal(ds_dtype_block(DS_F32), 1);
    assert_int_equal(ds_dtype_from_name("Q4_0"), DS_Q4_0);
}

// Round trip error: Q8_0 within d/2 with d = max|x| / 127, Q4_0 within |d| with d = -(value
// of largest magnitude) / 8 (the far end of the range clamps at 15); both plus the f16
// rounding of d times the largest code (127 or 8, relative 2^-11: 1/16 of d at most).
static void test_quantize_bounds(void **state) {
    (void)state;
    int n = 32 * 64;
    float *x = randv(n, 1, 1.0f), y[32];
    x[5] = 0; // zero block parts and an all-zero block
    for (int j = 64; j < 96; j++) x[j] = 0;
    uint8_t *q = malloc((size_t)ds_dtype_row_bytes(DS_Q8_0, n));
    for (int t = DS_Q8_0; t <= DS_Q4_0; t++) {
        ds_quantize_row((ds_dtype)t, x, q, n);
        size_t bb = ds_dtype_block_bytes((ds_dtype)t);
        for (int b = 0; b < n / 32; b++) {
            ds_dequantize_row((ds_dtype)t, q + b * bb, y, 32);
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
            float bound = t == DS_Q8_0 ? amax / 127.0f * 0.5625f + 1e-7f : amax / 8.0f * 1.0625f + 1e-7f;
            for (int j = 0; j < 32; j++)
                if (!(fabsf(y[j] - x[b * 32 + j]) <= bound))
                    fail_msg("%s block %d [%d]: %g -> %g (bound %g)", ds_dtype_name((ds_dtype)t), b, j, x[b * 32 + j], y[j], bound);
        }
    }
    free(x); free(q);
}

// matmul_forward with quantized weights against the naive product with the same weights
// dequantized: the GEMM path (N >= 4, tiles dequantized) to f32 rounding; the integer path
// (N < 4) adds only the activations' 8-bit rounding, bounded by sum_c |w_rc| * |x_c| / 254 per
// output; SIMD and portable must agree to f32 rounding.
static void test_matmul_paths(void **state) {
    (void)state;
    int OUT = 37, IN = 32 * 9;
    float *wf = randv((int64_t)OUT * IN, 2, 0.3f);
    for (int t = DS_Q8_0; t <= DS_Q4_0; t++) {
        int64_t rb = ds_dtype_row_bytes((ds_dtype)t, IN);
        uint8_t *wq = malloc((size_t)(rb * OUT));
        for (int r = 0; r < OUT; r++) ds_quantize_row((ds_dtype)t, wf + (int64_t)r * IN, wq + r * rb, IN);
        ds_tensor w = {.dtype = (ds_dtype)t, .ndim = 2, .shape = {OUT, IN}, .data = wq};
        for (int N = 1; N <= 6; N++) {
            float *x = randv((int64_t)N * IN, 10 + N, 1.0f);
            float *ref = malloc(sizeof(float) * (size_t)(N * OUT)), *got = malloc(sizeof(float) * (size_t)(N * OUT));
            float *got_p = malloc(sizeof(float) * (size_t)(N * OUT));
            float *work = malloc(sizeof(float) * (size_t)matmul_work_floats(IN));
            matmul_forward_naive(ref, x, &w, N);
            matmul_forward(got, x, &w, N, work);
            kernels_force_portable(1);
            matmul_forward(got_p, x, &w, N, work);
            kernels_force_portable(0);
            float deq[32 * 9];
            for (int n = 0; n < N; n++)
                for (int r = 0; r < OUT; r++) {
                    ds_dequantize_row((ds_dtype)t, wq + r * rb, deq, IN);
                    double mag = 0;
                    for (int c = 0; c < IN; c++) mag += fabs(deq[c]) * fabs(x[n * IN + c]);
                    double e = fabs(got[n * OUT + r] - ref[n * OUT + r]);
                    double bound = N >= DS_GEMM_MIN_N ? 1e-5 * mag + 1e-6 : mag / 254.0 * 1.01 + 1e-6;
                    if (!(e <= bound)) fail_msg("%s N=%d row %d: %g vs %g (bound %g)", ds_dtype_name((ds_dtype)t), N, r, got[n * OUT + r], ref[n * OUT + r], bound);
                    if (!(fabs(got_p[n * OUT + r] - got[n * OUT + r]) <= 1e-5 * mag + 1e-6))
                        fail_msg("%s N=%d row %d: portable %g vs simd %g", ds_dtype_name((ds_dtype)t), N, r, got_p[n * OUT + r], got[n * OUT + r]);
                }
            // matvec_rows (absorbed attention's per-head products) dequantizes: f32 accuracy
            float y[37];
            matvec_rows(y, &w, 3, 20, x);
            for (int r = 3; r < 20; r++) assert_true(fabsf(y[r - 3] - ref[r]) <= 1e-4f * (1 + fabsf(ref[r])));
            free(x); free(ref); free(got); free(got_p); free(work);
        }
        free(wq);
    }
    free(wf);
}

// Q4_0X8 (the regrouped decode layout): every row decodes exactly like the Q4_0 it came from,
// and every matmul path on it matches the Q4_0 matrix's results (same integer sums).
static void test_q4_regroup(void **state) {
    (void)state;
    int OUT = 48, IN = 32 * 5;
    float *wf = randv((int64_t)OUT * IN, 3, 0.3f);
    int64_t rb = ds_dtype_row_bytes(DS_Q4_0, IN);
    uint8_t *q4 = malloc((size_t)(rb * OUT)), *x8 = malloc((size_t)(rb * OUT));
    for (int r = 0; r < OUT; r++) ds_quantize_row(DS_Q4_0, wf + (int64_t)r * IN, q4 + r * rb, IN);
    ds_q4_0_to_x8(q4, x8, OUT, IN);
    ds_tensor a = {.dtype = DS_Q4_0, .ndim = 2, .shape = {OUT, IN}, .data = q4};
    ds_tensor b = {.dtype = DS_Q4_0X8, .ndim = 2, .shape = {OUT, IN}, .data = x8};
    float ra[160], rb2[160];
    for (int r = 0; r < OUT; r++) {
        ds_tensor_row_to_f32(&a, r, ra);
        ds_tensor_row_to_f32(&b, r, rb2);
        for (int c = 0; c < IN; c++) assert_float_equal(ra[c], rb2[c], 0);
    }
    for (int N = 1; N <= 5; N++) {
        float *x = randv((int64_t)N * IN, 20 + N, 1.0f), *oa = malloc(sizeof(float) * (size_t)(N * OUT));
        float *ob = malloc(sizeof(float) * (size_t)(N * OUT)), *work = malloc(sizeof(float) * (size_t)matmul_work_floats(IN));
        for (int portable = 0; portable <= 1; portable++) {
            kernels_force_portable(portable);
            matmul_forward(oa, x, &a, N, work);
            matmul_forward(ob, x, &b, N, work);
            for (int i = 0; i < N * OUT; i++)
                if (!(fabsf(oa[i] - ob[i]) <= 1e-5f * (1.0f + fabsf(oa[i]))))
                    fail_msg("N=%d portable=%d [%d]: Q4_0 %g vs Q4_0X8 %g", N, portable, i, oa[i], ob[i]);
        }
        kernels_force_portable(0);
        float y[48];
        matvec_rows(y, &b, 5, 29, x);
        matmul_forward_naive(oa, x, &a, 1);
        for (int r = 5; r < 29; r++) assert_true(fabsf(y[r - 5] - oa[r]) <= 1e-4f * (1 + fabsf(oa[r])));
        free(x); free(oa); free(ob); free(work);
    }
    free(wf); free(q4); free(x8);
}

// A model quantized at load: matrices re-encoded (the ones with 32-multiple columns), the
// forward runs, and Q8_0 stays close to the f32 logits.
static void test_model_quantize(void **state) {
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/models/tiny", fixtures());
    int ids[] = {0, 17, 42, 99, 3, 3, 200, 7};
    int T = 8;
    float *lf = NULL;
    for (int q = -1; q <= DS_Q4_0; q++) {
        if (q >= 0 && q < DS_Q8_0) continue;
        ds_model m;
        ds_error err;
        if (ds_model_load(&m, dir, &err)) fail_msg("%s", err.msg);
        int nq = 0;
        if (q >= 0) {
            assert_int_equal(ds_model_quantize(&m, (ds_dtype)q, 0, &nq, &err), DS_OK);
            assert_true(nq > 0);
            // 32 columns: quantized (Q4_0 regrouped for decode: 16 rows, a multiple of 8)
            assert_int_equal(m.layers[0].q_a.dtype, q == DS_Q4_0 ? DS_Q4_0X8 : q);
            assert_int_equal(m.layers[1].exp_down[0].dtype, DS_F32); // 16 columns: kept
        }
        ds_engine_limits lim = {.max_tokens = T, .max_seqs = 1, .max_ctx = T, .max_logits = T};
        ds_engine *e;
        assert_int_equal(ds_engine_create(&e, &m, &lim, &err), DS_OK);
        int seq[8] = {0}, pos[8];
        uint8_t want[8];
        for (int i = 0; i < T; i++) { pos[i] = i; want[i] = 1; }
        ds_batch b = {T, ids, seq, pos, want};
        int V = m.cfg.vocab_size;
        float *l = malloc(sizeof(float) * (size_t)(T * V));
        assert_int_equal(ds_engine_forward(e, &b, l, &err), DS_OK);
        for (int i = 0; i < T * V; i++) assert_true(isfinite(l[i]));
        if (q < 0) lf = l;
        else {
            double rel = test_max_rel_diff(l, lf, (long)T * V);
            print_message("%s: max |logit diff| / max |logit| = %.4f\n", ds_dtype_name((ds_dtype)q), rel);
            if (q == DS_Q8_0) assert_true(rel < 0.05);
            free(l);
        }
        ds_engine_free(e);
        ds_model_free(&m);
    }
    free(lf);
    ds_model m;
    ds_error err;
    assert_int_equal(ds_model_load(&m, dir, &err), DS_OK);
    assert_int_equal(ds_model_quantize(&m, DS_F32, 0, NULL, &err), DS_ERR_ARG);
    ds_model_free(&m);
}

// K-quants (read from GGUF files): hand-packed super-blocks decoded by their definitions.
// Q4_K: 8 sub-blocks of 32 with 6-bit scale s_j and min m_j; value = d s_j q - dmin m_j with
// q the low nibbles of bytes 32c..32c+31 for sub-block 2c and their high nibbles for 2c+1.
static void test_kquants(void **state) {
    (void)state;
    uint8_t b4[144] = {0};
    uint16_t h = ds_f32_to_f16(0.25f), hm = ds_f32_to_f16(0.5f);
    memcpy(b4, &h, 2);
    memcpy(b4 + 2, &hm, 2);
    int sc[8] = {1, 7, 33, 63, 2, 40, 17, 60}, mn[8] = {0, 5, 62, 9, 33, 1, 48, 12};
    uint8_t *S = b4 + 4;
    for (int j = 0; j < 4; j++) {
        S[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        S[j + 4] = (uint8_t)((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
        S[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
    }
    for (int i = 0; i < 128; i++) b4[16 + i] = (uint8_t)((i * 7 + 3) & 255);
    float y[256];
    gguf_kquant_to_f32(12, b4, y, 256);
    for (int e = 0; e < 256; e++) {
        int j = e / 32, byte = 16 + 32 * (j / 2) + e % 32;
        int q = j % 2 ? b4[byte] >> 4 : b4[byte] & 15;
        float want = 0.25f * (float)sc[j] * (float)q - 0.5f * (float)mn[j];
        if (y[e] != want) fail_msg("Q4_K [%d]: %g want %g", e, y[e], want);
    }
    // Q6_K: value e = d * scales[e / 16] * (q6 - 32), q6 = 4 low bits from ql and 2 high bits
    // from qh, at positions given by e's half (128), quarter (32) and lane.
    uint8_t b6[210];
    for (int i = 0; i < 192; i++) b6[i] = (uint8_t)((i * 37 + 11) & 255);
    for (int i = 0; i < 16; i++) b6[192 + i] = (uint8_t)(int8_t)(i * 9 - 70);
    h = ds_f32_to_f16(0.125f);
    memcpy(b6 + 208, &h, 2);
    gguf_kquant_to_f32(14, b6, y, 256);
    for (int e = 0; e < 256; e++) {
        int half = e / 128, g = (e % 128) / 32, l = e % 32;
        int lo_byte = b6[64 * half + l + (g % 2) * 32];
        int lo = g < 2 ? lo_byte & 15 : lo_byte >> 4;
        int hi = (b6[128 + 32 * half + l] >> (2 * g)) & 3;
        float want = 0.125f * (float)(int8_t)b6[192 + e / 16] * (float)((lo | (hi << 4)) - 32);
        if (y[e] != want) fail_msg("Q6_K [%d]: %g want %g", e, y[e], want);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_quantize_bounds),
        cmocka_unit_test(test_matmul_paths),
        cmocka_unit_test(test_model_quantize),
        cmocka_unit_test(test_kquants),
        cmocka_unit_test(test_q4_regroup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
