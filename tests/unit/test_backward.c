// Backward kernels against central finite differences of a double-precision reimplementation
// of the forward (loss L = sum(dout * out) with random dout). The f32 inputs are widened
// exactly, so the reference differentiates the very function the f32 forward computes; each
// forward reimplementation is itself checked against the f32 forward kernel.
// Gradient buffers start with random values and each backward runs twice: the result must be
// start + fd, then start + 2 fd (accumulation).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "kernels/backward.h"
#include "kernels/kernels.h"

// ---- helpers -----------------------------------------------------------------------------

static float *randf(long n, ds_rng *rng, float scale) {
    float *x = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (long i = 0; i < n; i++) x[i] = scale * ds_rng_normal(rng);
    return x;
}

static double *widen(const float *x, long n) {
    double *d = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    for (long i = 0; i < n; i++) d[i] = x[i];
    return d;
}

static float *copyf(const float *x, long n) {
    float *y = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    memcpy(y, x, sizeof(float) * (size_t)n);
    return y;
}

typedef double (*loss_fn)(void *ctx);

// fd[i] = dL/dx[i] by central differences for i = 0, every, 2 every, ... (others 0).
static double *fd_grad(double *x, long n, long every, loss_fn f, void *ctx) {
    double *fd = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    for (long i = 0; i < n; i += every) {
        double x0 = x[i], h = 1e-5 * fmax(1.0, fabs(x0));
        double xp = x0 + h, xm = x0 - h;
        x[i] = xp;
        double lp = f(ctx);
        x[i] = xm;
        double lm = f(ctx);
        x[i] = x0;
        fd[i] = (lp - lm) / (xp - xm);
    }
    return fd;
}

// got[i] == base[i] + times * fd[i] (base NULL = 0) at the checked indices, to ~1e-4 of the
// element (plus a small floor relative to the largest element, for cancellations in f32).
static void check_grad(const char *what, const float *got, const float *base, const double *fd, long n,
                       long every, double times) {
    double mx = 0;
    for (long i = 0; i < n; i += every) mx = fmax(mx, fabs(times * fd[i]));
    int bad = 0;
    for (long i = 0; i < n; i += every) {
        double b = base ? base[i] : 0.0, want = b + times * fd[i];
        double tol = 1e-4 * (fabs(times * fd[i]) + 0.1 * mx) + 4 * FLT_EPSILON * (fabs(b) + fabs(want)) + 1e-12;
        if (!(fabs((double)got[i] - want) <= tol)) {
            if (bad < 5) print_error("%s[%ld]: got %.9g want %.9g (fd %.9g x%g)\n", what, i, (double)got[i], want,
                                     fd[i], times);
            bad++;
        }
    }
    if (bad) {
        print_error("%s: %d of %ld elements off\n", what, bad, (n + every - 1) / every);
        fail();
    }
}

static void check_close(const char *what, const float *got, const double *want, long n, double tol) {
    double mx = 1e-30;
    for (long i = 0; i < n; i++) mx = fmax(mx, fabs(want[i]));
    for (long i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol * (fabs(want[i]) + 0.1 * mx))) {
            print_error("%s[%ld]: got %.9g want %.9g\n", what, i, (double)got[i], want[i]);
            fail();
        }
}

// ---- matmul ------------------------------------------------------------------------------

typedef struct { int N, IN, OUT; double *x, *w, *dout; } mm_ctx;

static double mm_loss(void *vc) {
    mm_ctx *c = vc;
    double L = 0;
    for (int n = 0; n < c->N; n++)
        for (int o = 0; o < c->OUT; o++) {
            double y = 0;
            for (int i = 0; i < c->IN; i++) y += c->x[n * c->IN + i] * c->w[o * c->IN + i];
            L += c->dout[n * c->OUT + o] * y;
        }
    return L;
}

static void test_matmul_backward(void **state) {
    (void)state;
    ds_rng rng;
    ds_rng_seed(&rng, 1, 1);
    const int N = 5, IN = 7, OUT = 3;
    float *x = randf(N * IN, &rng, 1), *w = randf(OUT * IN, &rng, 1), *dout = randf(N * OUT, &rng, 1);
    mm_ctx c = {N, IN, OUT, widen(x, N * IN), widen(w, OUT * IN), widen(dout, N * OUT)};
    // forward against the reference (L with a one-hot dout is one output)
    float out[5 * 3];
    double ref[5 * 3];
    matmul_forward_f32(out, x, w, N, IN, OUT);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++) {
            double y = 0;
            for (int i = 0; i < IN; i++) y += c.x[n * IN + i] * c.w[o * IN + i];
            ref[n * OUT + o] = y;
        }
    check_close("matmul_forward_f32", out, ref, N * OUT, 1e-5);

    double *fdx = fd_grad(c.x, N * IN, 1, mm_loss, &c), *fdw = fd_grad(c.w, OUT * IN, 1, mm_loss, &c);
    float *g0x = randf(N * IN, &rng, 1), *g0w = randf(OUT * IN, &rng, 1);
    float *dx = copyf(g0x, N * IN), *dw = copyf(g0w, OUT * IN);
    for (int t = 1; t <= 2; t++) {
        matmul_backward(dx, dw, dout, x, w, N, IN, OUT);
        check_grad("matmul dinp", dx, g0x, fdx, N * IN, 1, t);
        check_grad("matmul dweight", dw, g0w, fdw, OUT * IN, 1, t);
    }
    // NULL skips one gradient
    memcpy(dx, g0x, sizeof(float) * N * IN);
    matmul_backward(dx, NULL, dout, x, w, N, IN, OUT);
    check_grad("matmul dinp only", dx, g0x, fdx, N * IN, 1, 1);
    memcpy(dw, g0w, sizeof(float) * OUT * IN);
    matmul_backward(NULL, dw, dout, x, w, N, IN, OUT);
    check_grad("matmul dweight only", dw, g0w, fdw, OUT * IN, 1, 1);
    free(x); free(w); free(dout); free(c.x); free(c.w); free(c.dout); free(fdx); free(fdw);
    free(g0x); free(g0w); free(dx); free(dw);
}

// ---- embedding ---------------------------------------------------------------------------

typedef struct { int N, C; const int *tok; double *table, *dout; } emb_ctx;

static double emb_loss(void *vc) {
    emb_ctx *c = vc;
    double L = 0;
    for (int n = 0; n < c->N; n++)
        for (int i = 0; i < c->C; i++) L += c->dout[n * c->C + i] * c->table[c->tok[n] * c->C + i];
    return L;
}

static void test_embedding_backward(void **state) {
    (void)state;
    ds_rng rng;
    ds_rng_seed(&rng, 2, 1);
    const int V = 6, C = 4, N = 5;
    const int tok[5] = {3, 0, 3, 5, 3}; // repeats must sum; rows 1, 2, 4 get nothing
    float *table = randf(V * C, &rng, 1), *dout = randf(N * C, &rng, 1), out[5 * 4];
    embedding_forward(out, table, tok, N, C);
    for (int n = 0; n < N; n++) assert_memory_equal(out + n * C, table + tok[n] * C, sizeof(float) * C);
    emb_ctx c = {N, C, tok, widen(table, V * C), widen(dout, N * C)};
    double *fd = fd_grad(c.table, V * C, 1, emb_loss, &c);
    float *g0 = randf(V * C, &rng, 1), *g = copyf(g0, V * C);
    for (int t = 1; t <= 2; t++) {
        embedding_backward(g, dout, tok, N, C);
        check_grad("embedding dtable", g, g0, fd, V * C, 1, t);
    }
    free(table); free(dout); free(c.table); free(c.dout); free(fd); free(g0); free(g);
}

// ---- rmsnorm -----------------------------------------------------------------------------

typedef struct { int N, C; long stride; double eps; double *x, *w, *dout; } rms_ctx;

static double rms_row(const rms_ctx *c, int n, int i) {
    const double *x = c->x + n * c->stride;
    double ss = 0;
    for (int j = 0; j < c->C; j++) ss += x[j] * x[j];
    return c->w[i] * x[i] / sqrt(ss / c->C + c->eps);
}

static double rms_loss(void *vc) {
    rms_ctx *c = vc;
    double L = 0;
    for (int n = 0; n < c->N; n++) {
        const double *x = c->x + n * c->stride;
        double ss = 0;
        for (int j = 0; j < c->C; j++) ss += x[j] * x[j];
        double r = 1.0 / sqrt(ss / c->C + c->eps);
        for (int i = 0; i < c->C; i++) L += c->dout[n * c->stride + i] * c->w[i] * x[i] * r;
    }
    return L;
}

// every > 1 samples the inputs (large case: the parallel path with several row blocks).
static void rms_case(int N, int C, long stride, long every, uint64_t seed) {
    ds_rng rng;
    ds_rng_seed(&rng, seed, 1);
    long n_all = N * stride;
    float *x = randf(n_all, &rng, 2), *dout = randf(n_all, &rng, 1), *w = randf(C, &rng, 0.3f);
    for (int i = 0; i < C; i++) w[i] += 1.0f;
    float eps = 1e-5f;
    rms_ctx c = {N, C, stride, eps, widen(x, n_all), widen(w, C), widen(dout, n_all)};

    float *out = calloc((size_t)n_all, sizeof(float));
    rmsnorm_forward(out, x, w, N, C, stride, eps);
    for (int n = 0; n < N; n += (int)every)
        for (int i = 0; i < C; i++) {
            double want = rms_row(&c, n, i);
            assert_true(fabs(out[n * stride + i] - want) <= 1e-5 * (fabs(want) + 1));
        }

    double *fdx = fd_grad(c.x, n_all, every, rms_loss, &c), *fdw = fd_grad(c.w, C, 1, rms_loss, &c);
    float *g0x = randf(n_all, &rng, 1), *g0w = randf(C, &rng, 1);
    float *dx = copyf(g0x, n_all), *dw = copyf(g0w, C);
    for (int t = 1; t <= 2; t++) {
        rmsnorm_backward(dx, dw, dout, x, w, N, C, stride, eps);
        check_grad("rmsnorm dinp", dx, g0x, fdx, n_all, every, t);
        check_grad("rmsnorm dweight", dw, g0w, fdw, C, 1, t);
    }
    for (int n = 0; n < N; n++) // the stride - C values past each row are not touched
        assert_memory_equal(dx + n * stride + C, g0x + n * stride + C, sizeof(float) * (size_t)(stride - C));
    // NULL skips one gradient
    memcpy(dw, g0w, sizeof(float) * (size_t)C);
    rmsnorm_backward(NULL, dw, dout, x, w, N, C, stride, eps);
    check_grad("rmsnorm dweight only", dw, g0w, fdw, C, 1, 1);
    memcpy(dx, g0x, sizeof(float) * (size_t)n_all);
    rmsnorm_backward(dx, NULL, dout, x, w, N, C, stride, eps);
    check_grad("rmsnorm dinp only", dx, g0x, fdx, n_all, every, 1);
    free(x); free(dout); free(w); free(c.x); free(c.w); free(c.dout); free(out);
    free(fdx); free(fdw); free(g0x); free(g0w); free(dx); free(dw);
}

static void test_rmsnorm_backward(void **state) {
    (void)state;
    rms_case(3, 5, 8, 1, 3);      // stride > C
    rms_case(4, 6, 6, 1, 4);      // contiguous
    rms_case(300, 128, 131, 97, 5); // parallel, two row blocks, sampled inputs
}

// ---- swiglu ------------------------------------------------------------------------------

typedef struct { long n; double *g, *u, *dout; } sw_ctx;

static double silu_d(double g) { return g / (1.0 + exp(-g)); }

static double sw_loss(void *vc) {
    sw_ctx *c = vc;
    double L = 0;
    for (long i = 0; i < c->n; i++) L += c->dout[i] * silu_d(c->g[i]) * c->u[i];
    return L;
}

static void sw_case(long n, long every, uint64_t seed) {
    ds_rng rng;
    ds_rng_seed(&rng, seed, 1);
    float *g = randf(n, &rng, 3), *u = randf(n, &rng, 1), *dout = randf(n, &rng, 1);
    g[0] = -100.0f; g[1] = 100.0f; g[2] = -30.0f; g[3] = 0.0f; // saturated ends stay finite
    sw_ctx c = {n, widen(g, n), widen(u, n), widen(dout, n)};
    float *out = malloc(sizeof(float) * (size_t)n);
    double *ref = malloc(sizeof(double) * (size_t)n);
    swiglu_forward(out, g, u, n);
    for (long i = 0; i < n; i++) ref[i] = silu_d(c.g[i]) * c.u[i];
    check_close("swiglu_forward", out, ref, n, 1e-5);
    double *fdg = fd_grad(c.g, n, every, sw_loss, &c), *fdu = fd_grad(c.u, n, every, sw_loss, &c);
    float *g0g = randf(n, &rng, 1), *g0u = randf(n, &rng, 1), *dg = copyf(g0g, n), *du = copyf(g0u, n);
    for (int t = 1; t <= 2; t++) {
        swiglu_backward(dg, du, dout, g, u, n);
        check_grad("swiglu dgate", dg, g0g, fdg, n, every, t);
        check_grad("swiglu dup", du, g0u, fdu, n, every, t);
    }
    for (long i = 0; i < n; i++) assert_true(isfinite(dg[i]) && isfinite(du[i]));
    memcpy(du, g0u, sizeof(float) * (size_t)n);
    swiglu_backward(NULL, du, dout, g, u, n);
    check_grad("swiglu dup only", du, g0u, fdu, n, every, 1);
    free(g); free(u); free(dout); free(c.g); free(c.u); free(c.dout); free(out); free(ref);
    free(fdg); free(fdu); free(g0g); free(g0u); free(dg); free(du);
}

static void test_swiglu_backward(void **state) {
    (void)state;
    sw_case(23, 1, 6);
    sw_case(40000, 991, 7); // parallel path, sampled
}

// ---- rope --------------------------------------------------------------------------------

typedef struct { int dim, pos; const float *inv_freq; double mscale; double *x, *dout; } rope_ctx;

// Same angles as rope_forward (pos * inv_freq rounded to f32), cos/sin in double.
static void rope_ref(double *y, const rope_ctx *c) {
    for (int i = 0; i < c->dim / 2; i++) {
        double a = (double)((float)c->pos * c->inv_freq[i]);
        double co = cos(a) * c->mscale, si = sin(a) * c->mscale;
        y[2 * i] = c->x[2 * i] * co - c->x[2 * i + 1] * si;
        y[2 * i + 1] = c->x[2 * i] * si + c->x[2 * i + 1] * co;
    }
}

static double rope_loss(void *vc) {
    rope_ctx *c = vc;
    double y[64], L = 0;
    rope_ref(y, c);
    for (int i = 0; i < c->dim; i++) L += c->dout[i] * y[i];
    return L;
}

static void test_rope_backward(void **state) {
    (void)state;
    ds_rng rng;
    ds_rng_seed(&rng, 8, 1);
    enum { DIM = 16 };
    rope_params rp = {.dim = DIM, .theta = 10000.0f, .yarn = 1, .factor = 40.0f, .orig_max_pos = 64,
                      .beta_fast = 32.0f, .beta_slow = 1.0f, .mscale = 1.0f, .mscale_all_dim = 1.0f};
    float inv_freq[DIM / 2];
    rope_inv_freq(inv_freq, &rp);
    const int positions[3] = {0, 7, 4321};
    for (int pi = 0; pi < 3; pi++) {
        float *x = randf(DIM, &rng, 1), *dout = randf(DIM, &rng, 1);
        float ms = 1.25f;
        rope_ctx c = {DIM, positions[pi], inv_freq, ms, widen(x, DIM), widen(dout, DIM)};
        double ref[DIM];
        rope_ref(ref, &c);
        float *y = copyf(x, DIM);
        rope_forward(y, DIM, c.pos, inv_freq, ms);
        check_close("rope_forward", y, ref, DIM, 1e-5);
        double *fd = fd_grad(c.x, DIM, 1, rope_loss, &c);
        float *d = copyf(dout, DIM);
        rope_backward(d, DIM, c.pos, inv_freq, ms); // in place: dL/dy -> dL/dx
        check_grad("rope dx", d, NULL, fd, DIM, 1, 1);
        free(x); free(dout); free(c.x); free(c.dout); free(y); free(fd); free(d);
    }
}

// ---- softmax -----------------------------------------------------------------------------

typedef struct { int n; double *x, *dout; } sm_ctx;

static double sm_loss(void *vc) {
    sm_ctx *c = vc;
    double mx = c->x[0], s = 0, L = 0;
    for (int i = 1; i < c->n; i++) mx = fmax(mx, c->x[i]);
    for (int i = 0; i < c->n; i++) s += exp(c->x[i] - mx);
    for (int i = 0; i < c->n; i++) L += c->dout[i] * exp(c->x[i] - mx) / s;
    return L;
}

static void test_softmax_backward(void **state) {
    (void)state;
    ds_rng rng;
    ds_rng_seed(&rng, 9, 1);
    const int n = 9;
    float *x = randf(n, &rng, 2), *dout = randf(n, &rng, 1);
    sm_ctx c = {n, widen(x, n), widen(dout, n)};
    float *out = copyf(x, n);
    softmax_forward(out, n);
    double *fd = fd_grad(c.x, n, 1, sm_loss, &c);
    float *g0 = randf(n, &rng, 1), *g = copyf(g0, n);
    for (int t = 1; t <= 2; t++) {
        softmax_backward(g, dout, out, n);
        check_grad("softmax dinp", g, g0, fd, n, 1, t);
    }
    free(x); free(dout); free(c.x); free(c.dout); free(out); free(fd); free(g0); free(g);
}

// ---- attention ---------------------------------------------------------------------------

typedef struct { attn_dims a; double *q, *k, *v, *dout; } at_ctx;

// Double reference: out (Tq, dv) contiguous, p (Tq, Tk), lse (Tq).
static void at_ref(const at_ctx *c, double *out, double *p, double *lse) {
    const attn_dims *a = &c->a;
    for (int i = 0; i < a->Tq; i++) {
        int nk = a->start + i + 1 < a->Tk ? a->start + i + 1 : a->Tk;
        double s[64], mx = -INFINITY, sum = 0;
        for (int j = 0; j < nk; j++) {
            double d = 0;
            for (int e = 0; e < a->d; e++) d += c->q[i * a->ldq + e] * c->k[j * a->ldk + e];
            s[j] = (double)a->scale * d;
            mx = fmax(mx, s[j]);
        }
        for (int j = 0; j < nk; j++) sum += exp(s[j] - mx);
        if (lse) lse[i] = mx + log(sum);
        for (int e = 0; e < a->dv; e++) out[i * a->dv + e] = 0;
        for (int j = 0; j < a->Tk; j++) {
            double pij = j < nk ? exp(s[j] - mx) / sum : 0.0;
            if (p) p[i * a->Tk + j] = pij;
            for (int e = 0; e < a->dv; e++) out[i * a->dv + e] += pij * c->v[j * a->ldv + e];
        }
    }
}

static double at_loss(void *vc) {
    at_ctx *c = vc;
    double out[64 * 8], L = 0;
    at_ref(c, out, NULL, NULL);
    for (int i = 0; i < c->a.Tq; i++)
        for (int e = 0; e < c->a.dv; e++) L += c->dout[i * c->a.ldo + e] * out[i * c->a.dv + e];
    return L;
}

static void at_case(attn_dims a, uint64_t seed) {
    ds_rng rng;
    ds_rng_seed(&rng, seed, 1);
    long nq = (long)a.Tq * a.ldq, nk = (long)a.Tk * a.ldk, nv = (long)a.Tk * a.ldv, no = (long)a.Tq * a.ldo;
    float *q = randf(nq, &rng, 1), *k = randf(nk, &rng, 1), *v = randf(nv, &rng, 1), *dout = randf(no, &rng, 1);
    at_ctx c = {a, widen(q, nq), widen(k, nk), widen(v, nv), widen(dout, no)};

    // forward, with and without the saved probabilities
    double *ro = malloc(sizeof(double) * (size_t)(a.Tq * a.dv)), *rp = malloc(sizeof(double) * (size_t)(a.Tq * a.Tk));
    double rl[64];
    at_ref(&c, ro, rp, rl);
    float *out = calloc((size_t)no, sizeof(float)), *out2 = calloc((size_t)no, sizeof(float));
    float *p = malloc(sizeof(float) * (size_t)(a.Tq * a.Tk)), lse[64], lse2[64];
    attention_forward_head(out, p, lse, q, k, v, &a);
    attention_forward_head(out2, NULL, lse2, q, k, v, &a);
    check_close("attention p", p, rp, a.Tq * a.Tk, 1e-5);
    check_close("attention lse", lse, rl, a.Tq, 1e-5);
    check_close("attention lse (no p)", lse2, rl, a.Tq, 1e-5);
    for (int i = 0; i < a.Tq; i++) {
        check_close("attention out", out + i * a.ldo, ro + i * a.dv, a.dv, 1e-5);
        check_close("attention out (no p)", out2 + i * a.ldo, ro + i * a.dv, a.dv, 1e-5);
    }

    double *fdq = fd_grad(c.q, nq, 1, at_loss, &c), *fdk = fd_grad(c.k, nk, 1, at_loss, &c);
    double *fdv = fd_grad(c.v, nv, 1, at_loss, &c);
    float *g0q = randf(nq, &rng, 1), *g0k = randf(nk, &rng, 1), *g0v = randf(nv, &rng, 1);
    // variants: saved p; lse only; recompute; recompute without out
    for (int var = 0; var < 4; var++) {
        float *dq = copyf(g0q, nq), *dk = copyf(g0k, nk), *dv = copyf(g0v, nv);
        for (int t = 1; t <= 2; t++) {
            attention_backward_head(dq, dk, dv, dout, var == 3 ? NULL : out, q, k, v, var == 0 ? p : NULL,
                                    var == 1 ? lse : NULL, &a);
            check_grad("attention dq", dq, g0q, fdq, nq, 1, t);
            check_grad("attention dk", dk, g0k, fdk, nk, 1, t);
            check_grad("attention dv", dv, g0v, fdv, nv, 1, t);
        }
        free(dq); free(dk); free(dv);
    }
    // GEMM form: same forward, and a backward from the saved lse
    float *out3 = calloc((size_t)no, sizeof(float)), lse3[64];
    float *scratch = malloc(sizeof(float) * (size_t)(2 * a.Tq * a.Tk));
    attention_forward_head_gemm(out3, lse3, q, k, v, &a, scratch);
    check_close("attention gemm lse", lse3, rl, a.Tq, 1e-5);
    for (int i = 0; i < a.Tq; i++) check_close("attention gemm out", out3 + i * a.ldo, ro + i * a.dv, a.dv, 1e-5);
    {
        float *dq = copyf(g0q, nq), *dk3 = copyf(g0k, nk), *dv = copyf(g0v, nv);
        for (int t = 1; t <= 2; t++) {
            attention_backward_head_gemm(dq, dk3, dv, dout, out3, q, k, v, lse3, &a, scratch);
            check_grad("attention gemm dq", dq, g0q, fdq, nq, 1, t);
            check_grad("attention gemm dk", dk3, g0k, fdk, nk, 1, t);
            check_grad("attention gemm dv", dv, g0v, fdv, nv, 1, t);
        }
        free(dq); free(dk3); free(dv);
    }
    free(out3); free(scratch);
    // NULL gradients are skipped
    float *dk = copyf(g0k, nk);
    attention_backward_head(NULL, dk, NULL, dout, out, q, k, v, p, NULL, &a);
    check_grad("attention dk only", dk, g0k, fdk, nk, 1, 1);
    free(dk);
    free(q); free(k); free(v); free(dout); free(c.q); free(c.k); free(c.v); free(c.dout);
    free(ro); free(rp); free(out); free(out2); free(p); free(fdq); free(fdk); free(fdv);
    free(g0q); free(g0k); free(g0v);
}

static void test_attention_backward(void **state) {
    (void)state;
    // a chunk continuing a sequence: 4 queries after 2 earlier keys, padded row strides
    at_case((attn_dims){.Tq = 4, .Tk = 6, .d = 5, .dv = 3, .start = 2, .scale = 0.4f,
                        .ldq = 7, .ldk = 6, .ldv = 5, .ldo = 4}, 10);
    // plain causal prefill from position 0, contiguous
    at_case((attn_dims){.Tq = 5, .Tk = 5, .d = 4, .dv = 4, .start = 0, .scale = 0.5f,
                        .ldq = 4, .ldk = 4, .ldv = 4, .ldo = 4}, 11);
    // fewer keys than start + Tq: the last queries see every key
    at_case((attn_dims){.Tq = 4, .Tk = 5, .d = 3, .dv = 2, .start = 3, .scale = 1.1f,
                        .ldq = 3, .ldk = 3, .ldv = 2, .ldo = 2}, 12);
}

// ---- cross-entropy -----------------------------------------------------------------------

typedef struct { int N, V; const int *tgt; const double *w; double *l; } ce_ctx;

static double ce_row(const ce_ctx *c, int n) {
    const double *l = c->l + n * c->V;
    double mx = l[0], s = 0;
    for (int j = 1; j < c->V; j++) mx = fmax(mx, l[j]);
    for (int j = 0; j < c->V; j++) s += exp(l[j] - mx);
    return mx + log(s) - l[c->tgt[n]];
}

static double ce_loss(void *vc) { // sum_n w_n loss_n over unmasked rows
    ce_ctx *c = vc;
    double L = 0;
    for (int n = 0; n < c->N; n++)
        if (c->tgt[n] >= 0) L += (c->w ? c->w[n] : 1.0) * ce_row(c, n);
    return L;
}

static void test_crossentropy(void **state) {
    (void)state;
    ds_rng rng;
    ds_rng_seed(&rng, 13, 1);
    enum { N = 6, V = 11 };
    const int tgt[N] = {3, -1, 0, 10, 7, -100};
    float *logits = randf(N * V, &rng, 2), *w = randf(N, &rng, 1);
    for (int j = 0; j < V; j++) logits[4 * V + j] += 90.0f; // large logits: exp would overflow unshifted
    double *wd = widen(w, N);
    for (int use_w = 0; use_w < 2; use_w++) {
        ce_ctx c = {N, V, tgt, use_w ? wd : NULL, widen(logits, N * V)};
        float losses[N], *dl = randf(N * V, &rng, 1); // junk: must be overwritten
        crossentropy_forward_backward(losses, dl, logits, tgt, use_w ? w : NULL, N, V);
        for (int n = 0; n < N; n++) {
            double want = tgt[n] >= 0 ? ce_row(&c, n) : 0.0;
            assert_true(fabs(losses[n] - want) <= 2e-5 * (fabs(want) + 1));
        }
        double *fd = fd_grad(c.l, N * V, 1, ce_loss, &c);
        check_grad("crossentropy dlogits", dl, NULL, fd, N * V, 1, 1);
        for (int j = 0; j < V; j++) assert_true(dl[1 * V + j] == 0.0f && dl[5 * V + j] == 0.0f);
        // in place over the logits gives the same bits; NULL losses / NULL dlogits are allowed
        float *inplace = copyf(logits, N * V), losses2[N];
        crossentropy_forward_backward(NULL, inplace, inplace, tgt, use_w ? w : NULL, N, V);
        assert_memory_equal(inplace, dl, sizeof(float) * N * V);
        crossentropy_forward_backward(losses2, NULL, logits, tgt, use_w ? w : NULL, N, V);
        assert_memory_equal(losses2, losses, sizeof losses);
        free(c.l); free(dl); free(fd); free(inplace);
    }
    free(logits); free(w); free(wd);
}

// Rows x vocabulary large enough for the parallel path: same result as row by row.
static void test_crossentropy_parallel(void **state) {
    (void)state;
    ds_rng rng;
    ds_rng_seed(&rng, 14, 1);
    enum { N = 64, V = 1000 };
    int tgt[N];
    for (int n = 0; n < N; n++) tgt[n] = n % 7 == 3 ? -1 : (int)(ds_rng_u32(&rng) % V);
    float *logits = randf(N * V, &rng, 3), *dl = malloc(sizeof(float) * N * V), *dl1 = malloc(sizeof(float) * V);
    float losses[N], l1;
    crossentropy_forward_backward(losses, dl, logits, tgt, NULL, N, V);
    for (int n = 0; n < N; n++) {
        crossentropy_forward_backward(&l1, dl1, logits + n * V, tgt + n, NULL, 1, V);
        assert_true(l1 == losses[n]);
        assert_memory_equal(dl1, dl + n * V, sizeof(float) * V);
    }
    free(logits); free(dl); free(dl1);
}

// ---- MoE gate ----------------------------------------------------------------------------

typedef struct { int N, E, K, sig, norm; double rsf; const int *idx; double *l, *dw; } gate_ctx;

static double gate_loss(void *vc) { // sum_k dw_k w_k
    gate_ctx *c = vc;
    double L = 0;
    for (int n = 0; n < c->N; n++) {
        const double *l = c->l + n * c->E;
        double s[32], mx = l[0], sum = 0, Z = 0;
        for (int j = 1; j < c->E; j++) mx = fmax(mx, l[j]);
        for (int j = 0; j < c->E; j++) sum += exp(l[j] - mx);
        for (int j = 0; j < c->E; j++) s[j] = c->sig ? 1.0 / (1.0 + exp(-l[j])) : exp(l[j] - mx) / sum;
        for (int k = 0; k < c->K; k++) Z += s[c->idx[n * c->K + k]];
        if (!c->norm) Z = 1;
        for (int k = 0; k < c->K; k++) L += c->dw[n * c->K + k] * c->rsf * s[c->idx[n * c->K + k]] / Z;
    }
    return L;
}

static void test_moe_gate_backward(void **state) {
    (void)state;
    ds_rng rng;
    ds_rng_seed(&rng, 15, 1);
    enum { N = 3, E = 10, K = 3 };
    const int idx[N * K] = {4, 0, 9, 7, 2, 3, 1, 8, 5};
    float *l = randf(N * E, &rng, 1.5f), *dw = randf(N * K, &rng, 1);
    // (sigmoid, norm): V3 (sigmoid + norm), V2 (softmax, no norm), and the other two
    const int cfg[4][2] = {{1, 1}, {0, 0}, {1, 0}, {0, 1}};
    const float rsf[4] = {2.5f, 16.0f, 1.0f, 1.0f};
    for (int ci = 0; ci < 4; ci++) {
        gate_ctx c = {N, E, K, cfg[ci][0], cfg[ci][1], rsf[ci], idx, widen(l, N * E), widen(dw, N * K)};
        double *fd = fd_grad(c.l, N * E, 1, gate_loss, &c);
        float *g0 = randf(N * E, &rng, 1), *g = copyf(g0, N * E);
        for (int t = 1; t <= 2; t++) {
            moe_gate_backward(g, l, idx, dw, N, E, K, c.sig, c.norm, rsf[ci]);
            check_grad(c.sig ? (c.norm ? "gate sigmoid+norm" : "gate sigmoid") : (c.norm ? "gate softmax+norm" : "gate softmax"),
                       g, g0, fd, N * E, 1, t);
        }
        free(c.l); free(c.dw); free(fd); free(g0); free(g);
    }
    free(l); free(dw);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_backward),
        cmocka_unit_test(test_embedding_backward),
        cmocka_unit_test(test_rmsnorm_backward),
        cmocka_unit_test(test_swiglu_backward),
        cmocka_unit_test(test_rope_backward),
        cmocka_unit_test(test_softmax_backward),
        cmocka_unit_test(test_attention_backward),
        cmocka_unit_test(test_crossentropy),
        cmocka_unit_test(test_crossentropy_parallel),
        cmocka_unit_test(test_moe_gate_backward),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
