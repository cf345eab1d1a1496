// matmul (all weight dtypes, SIMD and portable, GEMM and row paths), row helpers, and the
// elementwise ops, each against a double-precision reference.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "kernels/kernels.h"

// A weight in a deliberately misaligned buffer (data = buffer + offset), as mmapped files give.
typedef struct {
    unsigned char *buf, *sbuf;
    ds_tensor t;
    double *real; // (OUT, IN) exact values the stored weight represents
} test_weight;

static void test_weight_make(test_weight *w, ds_dtype dt, int64_t OUT, int64_t IN, int offset, ds_rng *rng) {
    size_t esz = ds_dtype_size(dt);
    w->buf = calloc((size_t)(OUT * IN) * esz + 16, 1);
    w->real = malloc(sizeof(double) * (size_t)(OUT * IN + 1));
    unsigned char *data = w->buf + offset;
    int64_t srows = (OUT + 127) / 128, scols = (IN + 127) / 128;
    w->sbuf = calloc((size_t)(srows * scols) * 4 + 8, 1);
    unsigned char *scale = w->sbuf + (offset & 3); // misaligned scales too
    for (int64_t i = 0; i < srows * scols; i++) {
        float s = 0.01f + 0.05f * ds_rng_uniform(rng);
        memcpy(scale + i * 4, &s, 4);
    }
    for (int64_t r = 0; r < OUT; r++)
        for (int64_t c = 0; c < IN; c++) {
            int64_t i = r * IN + c;
            float v = ds_rng_normal(rng);
            if (dt == DS_F32) { memcpy(data + i * 4, &v, 4); w->real[i] = v; }
            else if (dt == DS_BF16) {
                uint16_t h = ds_f32_to_bf16(v); memcpy(data + i * 2, &h, 2); w->real[i] = ds_bf16_to_f32(h);
            } else if (dt == DS_F16) {
                uint16_t h = ds_f32_to_f16(v); memcpy(data + i * 2, &h, 2); w->real[i] = ds_f16_to_f32(h);
            } else {
                uint8_t b = (uint8_t)(ds_rng_u32(rng) & 0xff);
                if ((b & 0x7f) == 0x7f) b ^= 1; // no NaN codes in real weights
                data[i] = b;
                float s; memcpy(&s, scale + ((r / 128) * scols + c / 128) * 4, 4);
                w->real[i] = (double)ds_fp8_to_f32(b) * s;
            }
        }
    w->t = (ds_tensor){.dtype = dt, .ndim = 2, .shape = {OUT, IN}, .data = data,
                       .scale = dt == DS_F8_E4M3 ? (const float *)(const void *)scale : NULL, .name = "w"};
}

static void test_weight_free(test_weight *w) { free(w->buf); free(w->sbuf); free(w->real); }

static void fill_normal(float *x, int64_t n, ds_rng *rng) { for (int64_t i = 0; i < n; i++) x[i] = ds_rng_normal(rng); }

// |got - want| within tol of the sum of |terms| (the natural scale of f32 summation error).
static void check_close(float got, double want, double scale, double tol, const char *what) {
    if (!(fabs((double)got - want) <= tol * scale + 1e-7)) {
        print_error("%s: got %.9g want %.9g (scale %g)\n", what, (double)got, want, scale);
        fail();
    }
}

static void matmul_case(ds_dtype dt, int64_t OUT, int64_t IN, int offset, ds_rng *rng) {
    static const int Ns[] = {1, 3, 4, 17};
    test_weight w;
    test_weight_make(&w, dt, OUT, IN, offset, rng);
    float *inp = malloc(sizeof(float) * 17 * (size_t)IN + 4);
    float *out = malloc(sizeof(float) * 17 * (size_t)OUT);
    float *work = malloc(sizeof(float) * (size_t)matmul_work_floats(IN));
    double *ref = malloc(sizeof(double) * 17 * (size_t)OUT), *mag = malloc(sizeof(double) * 17 * (size_t)OUT);
    fill_normal(inp, 17 * IN, rng);
    for (int n = 0; n < 17; n++)
        for (int64_t r = 0; r < OUT; r++) {
            double s = 0, m = 0;
            for (int64_t c = 0; c < IN; c++) {
                double t = (double)inp[n * IN + c] * w.real[r * IN + c];
                s += t; m += fabs(t);
            }
            ref[n * OUT + r] = s; mag[n * OUT + r] = m;
        }
    char what[160];
    for (size_t k = 0; k < sizeof(Ns) / sizeof(Ns[0]); k++)
        for (int variant = 0; variant < 5; variant++) { // 4 = naive reference implementation
            int N = Ns[k], portable = variant & 1, use_work = variant & 2;
            kernels_force_portable(portable);
            for (int64_t i = 0; i < N * OUT; i++) out[i] = NAN;
            if (variant == 4) matmul_forward_naive(out, inp, &w.t, N);
            else matmul_forward(out, inp, &w.t, N, use_work ? work : NULL);
            for (int64_t i = 0; i < N * OUT; i++) {
                snprintf(what, sizeof(what), "%s OUT=%lld IN=%lld N=%d off=%d variant=%d i=%lld",
                         ds_dtype_name(dt), (long long)OUT, (long long)IN, N, offset, variant, (long long)i);
                check_close(out[i], ref[i], mag[i], 1e-5, what);
            }
        }
    // the server's batch-invariant path: each token of a batch exactly as if it were alone
    for (int portable = 0; portable < 2; portable++) {
        kernels_force_portable(portable);
        float one[300];
        matmul_forward_rowwise(out, inp, &w.t, 3, work);
        for (int n = 0; n < 3; n++) {
            matmul_forward(one, inp + n * IN, &w.t, 1, work);
            for (int64_t r = 0; r < OUT; r++)
                if (one[r] != out[n * OUT + r])
                    fail_msg("%s OUT=%lld IN=%lld portable=%d: rowwise token %d row %lld %.9g vs alone %.9g",
                             ds_dtype_name(dt), (long long)OUT, (long long)IN, portable, n, (long long)r,
                             (double)out[n * OUT + r], (double)one[r]);
        }
    }
    kernels_force_portable(0);
    free(inp); free(out); free(work); free(ref); free(mag);
    test_weight_free(&w);
}

static void test_matmul_all_dtypes(void **state) {
    (void)state;
    ds_rng rng;
    ds_rng_seed(&rng, 42, 1);
    static const int64_t INs[] = {1, 7, 33, 130, 200, 300, 700}; // 700: several row chunks
    static const int64_t OUTs[] = {5, 288};
    for (int dt = 0; dt < DS_DTYPE_COUNT; dt++) // element types; block types: test_quant.c
        for (size_t i = 0; ds_dtype_block((ds_dtype)dt) == 1 && i < sizeof(INs) / sizeof(INs[0]); i++)
            for (size_t o = 0; o < 2; o++) {
                matmul_case((ds_dtype)dt, OUTs[o], INs[i], dt == DS_F8_E4M3 ? 1 : 2, &rng);
                matmul_case((ds_dtype)dt, OUTs[o], INs[i], 4, &rng); // 4-aligned: f32 goes to sgemm
            }
}

// Every finite fp8 code through each fused kernel (dot and axpy), SIMD and portable.
static void test_fp8_every_code(void **state) {
    (void)state;
    enum { IN = 254 + 3 }; // odd length: vector loops and scalar tails both see codes
    unsigned char buf[IN + 1];
    uint8_t codes[IN];
    int k = 0;
    for (int b = 0; b < 256; b++)
        if ((b & 0x7f) != 0x7f) codes[k++] = (uint8_t)b;
    for (; k < IN; k++) codes[k] = 0x7e; // +-448 extremes at the tail
    memcpy(buf + 1, codes, IN);
    float scale[3] = {0.5f, 3.0f, 0.25f}; // a scale per 128-column block
    ds_tensor t = {.dtype = DS_F8_E4M3, .ndim = 2, .shape = {1, IN}, .data = buf + 1, .scale = scale};
    float x[IN], y[IN];
    for (int i = 0; i < IN; i++) x[i] = (float)(i % 7) - 3.0f;
    double want = 0, mag = 0;
    for (int i = 0; i < IN; i++) {
        double t2 = (double)ds_fp8_to_f32(codes[i]) * scale[i / 128] * x[i];
        want += t2; mag += fabs(t2);
    }
    for (int portable = 0; portable < 2; portable++) {
        kernels_force_portable(portable);
        float got;
        matvec_rows(&got, &t, 0, 1, x);
        check_close(got, want, mag, 1e-6, "fp8 codes dot");
        memset(y, 0, sizeof(y));
        float a = 0.75f;
        matvec_t_rows_acc(y, &t, 0, 1, &a);
        for (int i = 0; i < IN; i++)
            check_close(y[i], 0.75 * ds_fp8_to_f32(codes[i]) * scale[i / 128], 0, 0, "fp8 codes axpy");
    }
    kernels_force_portable(0);
}

// Row helpers with a start row that is not a multiple of the fp8 block (scale row = r / 128).
static void test_matvec_rows_offsets(void **state) {
    (void)state;
    ds_rng rng;
    ds_rng_seed(&rng, 7, 2);
    const int64_t OUT = 288, IN = 200, r0 = 100, r1 = 260, R = r1 - r0;
    for (int dt = 0; dt < DS_DTYPE_COUNT; dt++) {
        if (ds_dtype_block((ds_dtype)dt) != 1) continue; // block types: test_quant.c
        test_weight w;
        test_weight_make(&w, (ds_dtype)dt, OUT, IN, dt == DS_F8_E4M3 ? 3 : 2, &rng);
        float x[200], a[160], y[160], yt[200], y0[200];
        fill_normal(x, IN, &rng);
        fill_normal(a, R, &rng);
        fill_normal(y0, IN, &rng);
        for (int portable = 0; portable < 2; portable++) {
            kernels_force_portable(portable);
            matvec_rows(y, &w.t, r0, r1, x);
            for (int64_t r = r0; r < r1; r++) {
                double s = 0, m = 0;
                for (int64_t c = 0; c < IN; c++) { s += x[c] * w.real[r * IN + c]; m += fabs(x[c] * w.real[r * IN + c]); }
                check_close(y[r - r0], s, m, 1e-5, "matvec_rows");
            }
            memcpy(yt, y0, sizeof(yt));
            matvec_t_rows_acc(yt, &w.t, r0, r1, a);
            for (int64_t c = 0; c < IN; c++) {
                double s = y0[c], m = fabs(y0[c]);
                for (int64_t r = r0; r < r1; r++) { s += a[r - r0] * w.real[r * IN + c]; m += fabs(a[r - r0] * w.real[r * IN + c]); }
                check_close(yt[c], s, m, 1e-5, "matvec_t_rows_acc");
            }
        }
        kernels_force_portable(0);
        test_weight_free(&w);
    }
}

static void test_simd_switch(void **state) {
    (void)state;
    int native = kernels_simd_active();
    kernels_force_portable(1);
    assert_int_equal(kernels_simd_active(), 0);
    kernels_force_portable(0);
    assert_int_equal(kernels_simd_active(), native);
}

static void test_dot_axpy(void **state) {
    (void)state;
    ds_rng rng;
    ds_rng_seed(&rng, 3, 3);
    float a[301], b[301], y[301], y0[301];
    fill_normal(a, 301, &rng);
    fill_normal(b, 301, &rng);
    fill_normal(y0, 301, &rng);
    static const int ns[] = {0, 1, 7, 8, 33, 130, 301};
    for (int portable = 0; portable < 2; portable++) {
        kernels_force_portable(portable);
        for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
            int n = ns[k];
            double s = 0, m = 0;
            for (int i = 0; i < n; i++) { s += (double)a[i] * b[i]; m += fabs((double)a[i] * b[i]); }
            check_close(dot_f32(a, b, n), s, m, 1e-5, "dot_f32");
            memcpy(y, y0, sizeof(y));
            axpy_f32(y, -0.3f, a, n);
            for (int i = 0; i < 301; i++)
                check_close(y[i], i < n ? y0[i] - 0.3 * a[i] : y0[i], fabs(y0[i]) + 1, 1e-6, "axpy_f32");
        }
    }
    kernels_force_portable(0);
}

// Attention over strided rows: scores (set and accumulate) and the weighted sum, every
// remainder path (rows not a multiple of 4, dims not a multiple of 8 or 64), both paths.
static void test_attn_rows(void **state) {
    (void)state;
    ds_rng rng;
    ds_rng_seed(&rng, 4, 4);
    enum { R = 23, S = 211 };
    float rows[R * S], q[S], p[R], sc[R], out[S + 1];
    fill_normal(rows, R * S, &rng);
    fill_normal(q, S, &rng);
    fill_normal(p, R, &rng);
    static const int dims[] = {1, 7, 8, 64, 130, 160, 200};
    static const int nrows[] = {0, 1, 3, 4, 9, 23};
    for (int portable = 0; portable < 2; portable++) {
        kernels_force_portable(portable);
        for (size_t di = 0; di < sizeof dims / sizeof *dims; di++)
            for (size_t ni = 0; ni < sizeof nrows / sizeof *nrows; ni++) {
                int dim = dims[di], n = nrows[ni];
                for (int j = 0; j < R; j++) sc[j] = 0.5f;
                attn_scores_f32(sc, q, rows, S, n, dim, 0.25f, 0);
                attn_scores_f32(sc, q + 1, rows + 3, S, n, 5, -2.0f, 1); // a second key part, accumulated
                for (int j = 0; j < R; j++) {
                    double s = 0, m = 0, s2 = 0, m2 = 0;
                    for (int k = 0; k < dim; k++) { s += (double)q[k] * rows[j * S + k]; m += fabs((double)q[k] * rows[j * S + k]); }
                    for (int k = 0; k < 5; k++) { s2 += (double)q[k + 1] * rows[j * S + 3 + k]; m2 += fabs((double)q[k + 1] * rows[j * S + 3 + k]); }
                    if (j < n) check_close(sc[j], 0.25 * s - 2.0 * s2, 0.25 * m + 2.0 * m2, 1e-5, "attn_scores_f32");
                    else assert_true(sc[j] == 0.5f); // rows past n untouched
                }
                out[dim] = 7.0f;
                for (int k = 0; k < dim; k++) out[k] = 1.5f;
                attn_wsum_f32(out, p, rows, S, n, dim, ni & 1); // odd cases accumulate onto 1.5
                for (int k = 0; k < dim; k++) {
                    double s = (ni & 1) ? 1.5 : 0, m = 1.5;
                    for (int j = 0; j < n; j++) { s += (double)p[j] * rows[j * S + k]; m += fabs((double)p[j] * rows[j * S + k]); }
                    check_close(out[k], s, m + 1e-30, 1e-5, "attn_wsum_f32");
                }
                assert_true(out[dim] == 7.0f);
            }
    }
    kernels_force_portable(0);
}

// The multi-head forms against double references: head counts around the 4-head tile, rows
// around the 2-row tile, dims with and without 8/16-column remainders, both paths; cells
// outside each head's n rows / dim columns untouched; splitting the heads in two calls gives
// the same bits.
static void test_attn_rows_heads(void **state) {
    (void)state;
    ds_rng rng;
    ds_rng_seed(&rng, 5, 5);
    enum { R = 13, S = 83, H = 9, QS = 85, SS = 17, OS = 86 };
    float rows[R * S], q[H * QS], p[H * SS], sc[H * SS], out[H * OS];
    fill_normal(rows, R * S, &rng);
    fill_normal(q, H * QS, &rng);
    fill_normal(p, H * SS, &rng);
    static const int dims[] = {1, 8, 15, 16, 40, 83};
    static const int nrows[] = {0, 1, 2, 3, 12, 13};
    static const int heads[] = {1, 3, 4, 5, 8, 9};
    for (int portable = 0; portable < 2; portable++) {
        kernels_force_portable(portable);
        for (size_t di = 0; di < sizeof dims / sizeof *dims; di++)
            for (size_t ni = 0; ni < sizeof nrows / sizeof *nrows; ni++)
                for (size_t hi = 0; hi < sizeof heads / sizeof *heads; hi++) {
                    int dim = dims[di], n = nrows[ni], nh = heads[hi], acc = (int)(ni + hi) & 1;
                    for (int i = 0; i < H * SS; i++) sc[i] = 0.5f;
                    for (int i = 0; i < H * OS; i++) out[i] = 1.5f;
                    attn_scores_heads_f32(sc, SS, q, QS, nh, rows, S, n, dim, 0.25f);
                    attn_wsum_heads_f32(out, OS, p, SS, nh, rows, S, n, dim, acc);
                    // the decode splits heads over threads: any split gives the very same bits
                    for (int h0 = 1; h0 < nh; h0 += 2) {
                        float sc2[H * SS], out2[H * OS];
                        for (int i = 0; i < H * SS; i++) sc2[i] = 0.5f;
                        for (int i = 0; i < H * OS; i++) out2[i] = 1.5f;
                        attn_scores_heads_f32(sc2, SS, q, QS, h0, rows, S, n, dim, 0.25f);
                        attn_scores_heads_f32(sc2 + h0 * SS, SS, q + h0 * QS, QS, nh - h0, rows, S, n, dim, 0.25f);
                        attn_wsum_heads_f32(out2, OS, p, SS, h0, rows, S, n, dim, acc);
                        attn_wsum_heads_f32(out2 + h0 * OS, OS, p + h0 * SS, SS, nh - h0, rows, S, n, dim, acc);
                        assert_memory_equal(sc2, sc, sizeof sc2);
                        assert_memory_equal(out2, out, sizeof out2);
                    }
                    for (int k = 0; k < H; k++) {
                        for (int j = 0; j < SS; j++) {
                            if (k >= nh || j >= n) { assert_true(sc[k * SS + j] == 0.5f); continue; }
                            double s = 0, m = 0;
                            for (int c = 0; c < dim; c++) {
                                s += (double)q[k * QS + c] * rows[j * S + c];
                                m += fabs((double)q[k * QS + c] * rows[j * S + c]);
                            }
                            check_close(sc[k * SS + j], 0.25 * s, 0.25 * m, 1e-5, "attn_scores_heads_f32");
                        }
                        for (int c = 0; c < OS; c++) {
                            if (k >= nh || c >= dim) { assert_true(out[k * OS + c] == 1.5f); continue; }
                            double s = acc ? 1.5 : 0, m = 1.5;
                            for (int j = 0; j < n; j++) {
                                s += (double)p[k * SS + j] * rows[j * S + c];
                                m += fabs((double)p[k * SS + j] * rows[j * S + c]);
                            }
                            check_close(out[k * OS + c], s, m, 1e-5, "attn_wsum_heads_f32");
                        }
                    }
                }
    }
    kernels_force_portable(0);
}

static void test_rmsnorm(void **state) {
    (void)state;
    ds_rng rng;
    ds_rng_seed(&rng, 4, 4);
    enum { N = 3, C = 37, S = 45 };
    float x[N * S], out[N * S], w[C];
    fill_normal(x, N * S, &rng);
    fill_normal(w, C, &rng);
    for (int portable = 0; portable < 2; portable++) {
        kernels_force_portable(portable);
        memcpy(out, x, sizeof(out));
        rmsnorm_forward(out, out, w, N, C, S, 1e-6f); // in place, norm over the first C of each row
        for (int n = 0; n < N; n++) {
            double ss = 0;
            for (int i = 0; i < C; i++) ss += (double)x[n * S + i] * x[n * S + i];
            double inv = 1.0 / sqrt(ss / C + 1e-6);
            for (int i = 0; i < C; i++)
                check_close(out[n * S + i], w[i] * x[n * S + i] * inv, fabs(w[i] * x[n * S + i] * inv), 1e-5, "rmsnorm");
            for (int i = C; i < S; i++) assert_true(out[n * S + i] == x[n * S + i]); // untouched
        }
    }
    kernels_force_portable(0);
}

static void test_softmax(void **state) {
    (void)state;
    float x[9] = {1.0f, -INFINITY, 3.5f, 1000.0f, 999.0f, -INFINITY, -50.0f, 998.5f, 0.0f};
    double e[9], sum = 0, mx = 1000.0;
    for (int i = 0; i < 9; i++) { e[i] = isinf(x[i]) ? 0.0 : exp((double)x[i] - mx); sum += e[i]; }
    softmax_forward(x, 9);
    for (int i = 0; i < 9; i++) check_close(x[i], e[i] / sum, 1.0, 1e-6, "softmax");
    assert_true(x[1] == 0.0f && x[5] == 0.0f);
    float one = -3.0f;
    softmax_forward(&one, 1);
    assert_true(one == 1.0f);
}

// softmax_entropy_f32: log n for equal logits (shift-invariant), ~0 for one dominant logit,
// and -sum p log p of a hand-made distribution {0.5, 0.25, 0.25} = 1.5 ln 2.
static void test_softmax_entropy(void **state) {
    (void)state;
    float eq[7] = {3, 3, 3, 3, 3, 3, 3}, peak[4] = {50, 0, 0, 0}, h[3] = {0, -0.69314718f, -0.69314718f};
    assert_true(fabsf(softmax_entropy_f32(eq, 7) - logf(7)) < 1e-6f);
    assert_true(softmax_entropy_f32(peak, 4) >= 0 && softmax_entropy_f32(peak, 4) < 1e-15f);
    assert_true(fabsf(softmax_entropy_f32(h, 3) - 1.5f * 0.69314718f) < 1e-6f);
}

static void test_swiglu(void **state) {
    (void)state;
    float g[8] = {0.0f, 1.0f, -1.0f, 3.25f, -100.0f, 100.0f, -1000.0f, 1000.0f};
    float u[8] = {2.0f, -1.5f, 0.5f, 1.0f, 3.0f, 0.5f, 7.0f, -2.0f};
    float out[8];
    memcpy(out, g, sizeof(g));
    swiglu_forward(out, out, u, 8); // out aliases gate
    for (int i = 0; i < 8; i++) {
        double z = g[i];
        double silu = z >= 0 ? z / (1.0 + exp(-z)) : z * exp(z) / (1.0 + exp(z));
        assert_true(isfinite(out[i]));
        check_close(out[i], silu * u[i], fabs(silu * u[i]), 1e-6, "swiglu");
    }
}

// exp_sum_f32 (vectorised exp) against double exp, SIMD and portable, on a range that reaches
// the underflow clamp, and with lengths that leave tails.
static void test_exp_sum(void **state) {
    (void)state;
    int n = 3001;
    float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
    for (int i = 0; i < n; i++) x[i] = -100.0f + 100.0f * (float)i / (float)(n - 1) + 0.37f * (float)(i % 3);
    for (int portable = 0; portable <= 1; portable++) {
        kernels_force_portable(portable);
        for (int m = 0; m <= 17; m += 17 - (m == 0 ? 0 : 9)) {
            int len = n - m;
            double want_sum = 0;
            // the argument x - shift is formed in float by both paths
            for (int i = 0; i < len; i++) want_sum += exp((double)(x[i] - 1.5f));
            double got_sum = exp_sum_f32(y, x, len, 1.5f);
            for (int i = 0; i < len; i++) {
                double want = exp((double)(x[i] - 1.5f));
                if (want < 1e-37) assert_true(y[i] < 2e-37f); // flushed or tiny
                else if (!(fabs(y[i] - want) <= 4e-7 * want)) fail_msg("exp(%g): %.9g vs %.9g", (double)x[i] - 1.5, y[i], want);
            }
            assert_true(fabs(got_sum - want_sum) <= 1e-6 * want_sum);
        }
        assert_float_equal(max_f32(x, n), x[n - 1] > x[n - 2] ? x[n - 1] : x[n - 2], 0);
    }
    kernels_force_portable(0);
    assert_true(isinf(max_f32(x, 0)));
    free(x); free(y);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simd_switch),
        cmocka_unit_test(test_exp_sum),
        cmocka_unit_test(test_matmul_all_dtypes),
        cmocka_unit_test(test_fp8_every_code),
        cmocka_unit_test(test_matvec_rows_offsets),
        cmocka_unit_test(test_dot_axpy),
        cmocka_unit_test(test_attn_rows),
        cmocka_unit_test(test_attn_rows_heads),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_softmax_entropy),
        cmocka_unit_test(test_swiglu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
