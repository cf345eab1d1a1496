// Engine invariants on random tiny checkpoints written by `init`:
// incremental decoding == full forward, absorbed == naive, batch == alone, chunked
// prefill == one call, MTP incremental == full, bf16/fp8 == their exact f32 dequantisation.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <omp.h>

#include "io/safetensors.h"
#include "model/engine.h"
#include "model/engine_internal.h"
#include "model/init.h"
#include "test_util.h"

#define T_LEN 24
static const int test_ids[T_LEN] = {0, 17, 42, 255, 3, 99, 128, 7, 7, 7, 64, 200, 1, 250, 33, 90, 12, 5, 180, 77, 2, 254, 60, 31};

static char *write_preset(const char *preset, ds_init_dtype dt) {
    char *dir = test_mkdtemp();
    assert_non_null(dir);
    ds_config c;
    ds_error err;
    assert_int_equal(ds_preset_config(&c, preset, &err), DS_OK);
    ds_init_params p = {.dtype = dt, .seed = 5};
    ds_status st = ds_init_write(&c, &p, dir, &err);
    if (st) fail_msg("init: %s", err.msg);
    return dir;
}

static void load(ds_model *m, const char *dir) {
    ds_error err;
    ds_status st = ds_model_load(m, dir, &err);
    if (st) fail_msg("load: %s", err.msg);
}

static ds_engine *make_engine_rx(const ds_model *m, int max_tokens, int max_seqs, int ctx, ds_attn_mode attn,
                                 int row_exact) {
    ds_engine_limits lim = {.max_tokens = max_tokens, .max_seqs = max_seqs, .max_ctx = ctx, .max_logits = max_tokens,
                            .attn = attn, .row_exact = row_exact};
    ds_engine *e;
    ds_error err;
    if (ds_engine_create(&e, m, &lim, &err)) fail_msg("engine: %s", err.msg);
    return e;
}

static ds_engine *make_engine(const ds_model *m, int max_tokens, int max_seqs, int ctx, ds_attn_mode attn) {
    return make_engine_rx(m, max_tokens, max_seqs, ctx, attn, 0);
}

// Logits of every position of one sequence, fed `chunk` tokens per call.
static void run_chunked_rx(const ds_model *m, const int *ids, int T, int chunk, ds_attn_mode attn, int row_exact,
                           float *out) {
    ds_engine *e = make_engine_rx(m, chunk, 1, T, attn, row_exact);
    int seq[T_LEN] = {0}, pos[T_LEN];
    uint8_t want[T_LEN];
    memset(want, 1, sizeof want);
    ds_error err;
    for (int t0 = 0; t0 < T; t0 += chunk) {
        int n = T - t0 < chunk ? T - t0 : chunk;
        for (int i = 0; i < n; i++) pos[i] = t0 + i;
        ds_batch b = {n, ids + t0, seq, pos, want};
        if (ds_engine_forward(e, &b, out + (int64_t)t0 * m->cfg.vocab_size, &err)) fail_msg("forward: %s", err.msg);
    }
    ds_engine_free(e);
}

static void run_chunked(const ds_model *m, const int *ids, int T, int chunk, ds_attn_mode attn, float *out) {
    run_chunked_rx(m, ids, T, chunk, attn, 0, out);
}

static void check_close(const float *a, const float *b, long n, double tol, const char *what) {
    double d = test_max_rel_diff(a, b, n);
    if (!(d <= tol)) fail_msg("%s: max rel diff %.3g > %.3g", what, d, tol);
}

static void check_invariants(const char *preset) {
    char *dir = write_preset(preset, DS_INIT_F32);
    ds_model m;
    load(&m, dir);
    long n = (long)T_LEN * m.cfg.vocab_size;
    float *full = malloc(n * sizeof(float)), *other = malloc(n * sizeof(float));
    run_chunked(&m, test_ids, T_LEN, T_LEN, DS_ATTN_NAIVE, full);
    // logits are not degenerate: a spread of several units
    float lo = full[0], hi = full[0];
    for (long i = 0; i < n; i++) { lo = fminf(lo, full[i]); hi = fmaxf(hi, full[i]); }
    assert_true(hi - lo > 2.0f && hi - lo < 200.0f);
    run_chunked(&m, test_ids, T_LEN, T_LEN, DS_ATTN_ABSORBED, other);
    check_close(other, full, n, 1e-5, "absorbed vs naive");
    run_chunked(&m, test_ids, T_LEN, 1, DS_ATTN_AUTO, other);
    check_close(other, full, n, 1e-5, "token-by-token vs full");
    run_chunked(&m, test_ids, T_LEN, 7, DS_ATTN_NAIVE, other);
    check_close(other, full, n, 1e-5, "chunked naive vs full");
    run_chunked(&m, test_ids, T_LEN, 5, DS_ATTN_ABSORBED, other);
    check_close(other, full, n, 1e-5, "chunked absorbed vs full");
    free(full);
    free(other);
    ds_model_free(&m);
    test_rmdir(dir);
}

static void test_invariants_v3(void **s) { (void)s; check_invariants("tiny"); }
static void test_invariants_noq(void **s) { (void)s; check_invariants("tiny-noq"); }
static void test_invariants_v2(void **s) { (void)s; check_invariants("tiny-v2"); }
static void test_invariants_v2_greedy(void **s) { (void)s; check_invariants("tiny-v2-greedy"); }

// Three prompts of different lengths prefilled in one call (interleaved), then decoded
// together, equal each sequence run alone.
static void test_batch_equals_alone(void **state) {
    (void)state;
    char *dir = write_preset("tiny", DS_INIT_F32);
    ds_model m;
    load(&m, dir);
    int V = m.cfg.vocab_size;
    const int lens[3] = {5, 9, 13}, steps = 4;
    float *alone = malloc((size_t)3 * (13 + steps) * V * sizeof(float));
    for (int s = 0; s < 3; s++)
        run_chunked(&m, test_ids + s, lens[s] + steps, lens[s] + steps, DS_ATTN_AUTO, alone + (size_t)s * (13 + steps) * V);

    ds_engine *e = make_engine(&m, 27, 4, 32, DS_ATTN_AUTO);
    int tok[27], seq[27], pos[27], next[3] = {0, 0, 0};
    uint8_t want[27];
    int n = 0;
    // interleave: round-robin over sequences until each prompt is consumed
    for (int round = 0; round < 13; round++)
        for (int s = 0; s < 3; s++)
            if (round < lens[s]) {
                tok[n] = test_ids[s + round]; seq[n] = s == 2 ? 3 : s; pos[n] = round;
                want[n] = 1; n++;
            }
    float *logits = malloc((size_t)27 * V * sizeof(float));
    ds_error err;
    ds_batch b = {n, tok, seq, pos, want};
    if (ds_engine_forward(e, &b, logits, &err)) fail_msg("%s", err.msg);
    for (int i = 0; i < n; i++) {
        int s = seq[i] == 3 ? 2 : seq[i];
        check_close(logits + (size_t)i * V, alone + ((size_t)s * (13 + steps) + pos[i]) * V, V, 1e-5, "batched prefill");
    }
    for (int k = 0; k < steps; k++) {
        for (int s = 0; s < 3; s++) {
            next[s] = lens[s] + k;
            tok[s] = test_ids[s + next[s]]; seq[s] = s == 2 ? 3 : s; pos[s] = next[s];
        }
        ds_batch d = {3, tok, seq, pos, want};
        if (ds_engine_forward(e, &d, logits, &err)) fail_msg("%s", err.msg);
        for (int s = 0; s < 3; s++)
            check_close(logits + (size_t)s * V, alone + ((size_t)s * (13 + steps) + next[s]) * V, V, 1e-5, "batched decode");
    }
    assert_int_equal(ds_engine_seq_len(e, 3), 13 + steps);
    assert_int_equal(ds_engine_seq_len(e, 2), 0);
    free(logits);
    free(alone);
    ds_engine_free(e);
    ds_model_free(&m);
    test_rmdir(dir);
}

// MTP logits computed for all positions in one call equal the incremental ones.
static void test_mtp_incremental(void **state) {
    (void)state;
    char *dir = write_preset("tiny", DS_INIT_F32);
    ds_model m;
    load(&m, dir);
    assert_true(m.has_mtp);
    int V = m.cfg.vocab_size, D = m.cfg.hidden_size, T = 12;
    float *hidden = malloc((size_t)T * D * sizeof(float));
    float *full = malloc((size_t)T * V * sizeof(float)), *inc = malloc((size_t)T * V * sizeof(float));
    ds_engine *e = make_engine(&m, T, 1, T, DS_ATTN_AUTO);
    int seq[T_LEN] = {0}, pos[T_LEN];
    uint8_t want[T_LEN];
    memset(want, 1, sizeof want);
    for (int i = 0; i < T; i++) pos[i] = i;
    ds_error err;
    ds_batch b = {T, test_ids, seq, pos, want};
    if (ds_engine_forward(e, &b, NULL, &err)) fail_msg("%s", err.msg);
    memcpy(hidden, ds_engine_hidden(e), (size_t)T * D * sizeof(float));
    ds_batch mb = {T - 1, test_ids + 1, seq, pos, want};
    if (ds_engine_forward_mtp(e, &mb, hidden, full, &err)) fail_msg("%s", err.msg);
    assert_int_equal(ds_engine_seq_mtp_len(e, 0), T - 1);
    ds_engine_seq_truncate(e, 0, 0);
    for (int i = 0; i < T - 1; i++) {
        ds_batch one = {1, test_ids + 1 + i, seq, pos + i, want};
        if (ds_engine_forward_mtp(e, &one, hidden + (size_t)i * D, inc + (size_t)i * V, &err)) fail_msg("%s", err.msg);
    }
    check_close(inc, full, (long)(T - 1) * V, 1e-5, "MTP incremental vs full");
    free(hidden); free(full); free(inc);
    ds_engine_free(e);
    ds_model_free(&m);
    test_rmdir(dir);
}

// Writes an f32 copy of a checkpoint with every tensor dequantised exactly.
static void write_dequantised(const char *src, const char *dst) {
    ds_model m;
    load(&m, src);
    ds_config c = m.cfg;
    c.fp8 = false;
    ds_error err;
    assert_int_equal(ds_config_save(&c, dst, &err), DS_OK);
    int n = 0;
    for (int f = 0; f < m.files.n_files; f++) n += m.files.files[f].n;
    st_write_item *items = calloc((size_t)n, sizeof *items);
    float **bufs = calloc((size_t)n, sizeof *bufs);
    int k = 0;
    for (int f = 0; f < m.files.n_files; f++)
        for (int i = 0; i < m.files.files[f].n; i++) {
            st_entry *e = &m.files.files[f].entries[i];
            size_t len = strlen(e->name);
            if (len > 10 && strcmp(e->name + len - 10, "_scale_inv") == 0) continue;
            ds_tensor t = {.dtype = e->dtype, .ndim = e->ndim, .data = e->data};
            memcpy(t.shape, e->shape, sizeof t.shape);
            if (e->dtype == DS_F8_E4M3) {
                char sname[300];
                snprintf(sname, sizeof sname, "%s_scale_inv", e->name);
                st_entry *se = model_dir_find(&m.files, sname, NULL);
                assert_non_null(se);
                assert_int_equal(se->dtype, DS_F32);
                float *sc = malloc(se->end - se->begin);
                memcpy(sc, se->data, se->end - se->begin);
                t.scale = sc;
                bufs[k] = malloc((size_t)ds_tensor_numel(&t) * sizeof(float));
                ds_tensor_rows_to_f32(&t, 0, t.shape[0], bufs[k]);
                free(sc);
            } else {
                int64_t numel = ds_tensor_numel(&t);
                ds_tensor flat = t;
                flat.ndim = 1;
                flat.shape[0] = numel;
                bufs[k] = malloc((size_t)numel * sizeof(float));
                ds_tensor_row_to_f32(&flat, 0, bufs[k]);
            }
            items[k] = (st_write_item){e->name, DS_F32, e->ndim, {e->shape[0], e->shape[1], e->shape[2], e->shape[3]}, bufs[k]};
            k++;
        }
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dst);
    if (st_file_write(path, items, k, &err)) fail_msg("%s", err.msg);
    for (int i = 0; i < k; i++) free(bufs[i]);
    free(bufs);
    free(items);
    ds_model_free(&m);
}

static void check_dequant(ds_init_dtype dt) {
    char *dir = write_preset("tiny", dt), *ref = test_mkdtemp();
    write_dequantised(dir, ref);
    ds_model a, b;
    load(&a, dir);
    load(&b, ref);
    assert_int_equal(a.layers[1].kv_a.dtype, dt == DS_INIT_FP8 ? DS_F8_E4M3 : DS_BF16);
    assert_int_equal(b.layers[1].kv_a.dtype, DS_F32);
    long n = (long)T_LEN * a.cfg.vocab_size;
    float *la = malloc(n * sizeof(float)), *lb = malloc(n * sizeof(float));
    run_chunked(&a, test_ids, T_LEN, T_LEN, DS_ATTN_AUTO, la);
    run_chunked(&b, test_ids, T_LEN, T_LEN, DS_ATTN_AUTO, lb);
    check_close(la, lb, n, 1e-5, "quantised vs dequantised f32");
    run_chunked(&a, test_ids, T_LEN, 1, DS_ATTN_AUTO, la);
    check_close(la, lb, n, 1e-5, "quantised decode vs dequantised f32");
    free(la); free(lb);
    ds_model_free(&a);
    ds_model_free(&b);
    test_rmdir(dir);
    test_rmdir(ref);
}

static void test_fp8_equals_dequant(void **s) { (void)s; check_dequant(DS_INIT_FP8); }
static void test_bf16_equals_dequant(void **s) { (void)s; check_dequant(DS_INIT_BF16); }

static void test_batch_errors(void **state) {
    (void)state;
    char *dir = write_preset("tiny", DS_INIT_F32);
    ds_model m;
    load(&m, dir);
    ds_engine *e = make_engine(&m, 4, 2, 8, DS_ATTN_AUTO);
    ds_error err;
    int tok[4] = {1, 2, 3, 4}, seq[4] = {0, 0, 0, 0}, pos[4] = {0, 1, 3, 4};
    ds_batch b = {3, tok, seq, pos, NULL};
    assert_int_equal(ds_engine_forward(e, &b, NULL, &err), DS_ERR_ARG); // gap in positions
    assert_non_null(strstr(err.msg, "position 3"));
    int bad_tok[1] = {256}, p0[1] = {0}, s0[1] = {0}, s9[1] = {9};
    ds_batch b2 = {1, bad_tok, s0, p0, NULL};
    assert_int_equal(ds_engine_forward(e, &b2, NULL, &err), DS_ERR_ARG);
    assert_non_null(strstr(err.msg, "vocabulary"));
    ds_batch b3 = {1, tok, s9, p0, NULL};
    assert_int_equal(ds_engine_forward(e, &b3, NULL, &err), DS_ERR_ARG);
    ds_batch b4 = {5, tok, seq, pos, NULL};
    assert_int_equal(ds_engine_forward(e, &b4, NULL, &err), DS_ERR_LIMIT);
    int p8[1] = {8};
    ds_batch b5 = {1, tok, s0, p8, NULL};
    assert_int_equal(ds_engine_forward(e, &b5, NULL, &err), DS_ERR_LIMIT);
    ds_engine_free(e);
    ds_model_free(&m);
    test_rmdir(dir);
}

// Routing semantics the fixtures could miss: selection uses score + bias, weights the
// unbiased scores; groups ranked by top-2 sum; masked groups never chosen.
static void test_route_noaux_tc(void **state) {
    (void)state;
    ds_config c;
    ds_error err;
    assert_int_equal(ds_preset_config(&c, "tiny", &err), DS_OK); // E 8, K 2, 4 groups keep 2
    float logits[8] = {2.0f, 1.9f, -1.0f, -1.2f, 0.5f, 0.4f, 0.1f, 0.0f};
    float bias[8] = {0, 0, 3.0f, 2.9f, 0, 0, 0, 0};
    float scores[8], sel[8], w[2];
    int idx[2];
    moe_route_topk(&c, NULL, logits, scores, sel, idx, w);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);
    moe_route_topk(&c, bias, logits, scores, sel, idx, w);
    // group 1 (experts 2, 3) now wins and holds the two best biased scores
    assert_int_equal(idx[0], 2);
    assert_int_equal(idx[1], 3);
    double s2 = 1 / (1 + exp(1.0)), s3 = 1 / (1 + exp(1.2));
    assert_float_equal(w[0], 2.5 * s2 / (s2 + s3), 1e-6);
    assert_float_equal(w[1], 2.5 * s3 / (s2 + s3), 1e-6);
    // groups ranked by the sum of their top-2 scores, not their max: group 0 has the best
    // single expert but groups 1 and 2 have the best pairs
    float l2[8] = {1.0f, -3.0f, 0.6f, 0.59f, 0.55f, 0.54f, -5.0f, -5.0f};
    moe_route_topk(&c, NULL, l2, scores, sel, idx, w);
    assert_int_equal(idx[0], 2);
    assert_int_equal(idx[1], 3);
}

// Expert-parallel decode (moe.c: batches of fewer than DS_GEMM_MIN_N tokens with several
// threads run one expert per thread) gives logits bit-identical to the serial path (one
// thread), for stored f32/bf16 weights and for Q8_0/Q4_0 re-encoded at load. The tiny-r1
// preset (hidden 256, expert width 128) so that every matrix spans several ENG_MOE_ROWS
// blocks and Q4_0 experts are regrouped as Q4_0X8: the row partition is exercised.
static void check_expert_parallel(ds_init_dtype dt, int quant) {
    char *dir = write_preset("tiny-r1", dt);
    ds_model m;
    load(&m, dir);
    if (quant >= 0) {
        ds_error err;
        int nq = 0;
        if (ds_model_quantize(&m, (ds_dtype)quant, 0, &nq, &err)) fail_msg("quantize: %s", err.msg);
        assert_true(nq > 0);
        if (quant == DS_Q4_0) assert_int_equal(m.layers[1].exp_down[0].dtype, DS_Q4_0X8);
    }
    assert_true(m.cfg.hidden_size > ENG_MOE_ROWS && m.cfg.moe_intermediate_size > ENG_MOE_ROWS);
    long n = (long)T_LEN * m.cfg.vocab_size;
    float *serial = malloc(n * sizeof(float)), *par = malloc(n * sizeof(float));
    int saved = omp_get_max_threads();
    // chunks of 1 and 3 tokens, with the default and the row-exact (batched serving) kernels
    for (int k = 0; k < 4; k++) {
        int chunk = k & 1 ? 3 : 1, rx = k >> 1;
        omp_set_num_threads(1);
        run_chunked_rx(&m, test_ids, T_LEN, chunk, DS_ATTN_AUTO, rx, serial);
        omp_set_num_threads(2);
        ds_engine *e = make_engine(&m, chunk, 1, T_LEN, DS_ATTN_AUTO);
        assert_non_null(e->moe_scratch); // the parallel path is planned
        ds_engine_free(e);
        run_chunked_rx(&m, test_ids, T_LEN, chunk, DS_ATTN_AUTO, rx, par);
        if (memcmp(serial, par, (size_t)n * sizeof(float)))
            fail_msg("chunk %d, row_exact %d: 2 threads differ from 1 (max rel diff %.3g)", chunk, rx,
                     test_max_rel_diff(par, serial, n));
    }
    omp_set_num_threads(saved);
    free(serial);
    free(par);
    ds_model_free(&m);
    test_rmdir(dir);
}

static void test_expert_parallel_f32(void **s) { (void)s; check_expert_parallel(DS_INIT_F32, -1); }
static void test_expert_parallel_bf16(void **s) { (void)s; check_expert_parallel(DS_INIT_BF16, -1); }
static void test_expert_parallel_q8(void **s) { (void)s; check_expert_parallel(DS_INIT_F32, DS_Q8_0); }
static void test_expert_parallel_q4(void **s) { (void)s; check_expert_parallel(DS_INIT_F32, DS_Q4_0); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invariants_v3),
        cmocka_unit_test(test_invariants_noq),
        cmocka_unit_test(test_invariants_v2),
        cmocka_unit_test(test_invariants_v2_greedy),
        cmocka_unit_test(test_batch_equals_alone),
        cmocka_unit_test(test_mtp_incremental),
        cmocka_unit_test(test_fp8_equals_dequant),
        cmocka_unit_test(test_bf16_equals_dequant),
        cmocka_unit_test(test_batch_errors),
        cmocka_unit_test(test_route_noaux_tc),
        cmocka_unit_test(test_expert_parallel_f32),
        cmocka_unit_test(test_expert_parallel_bf16),
        cmocka_unit_test(test_expert_parallel_q8),
        cmocka_unit_test(test_expert_parallel_q4),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
