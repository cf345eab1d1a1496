// Continuous batching must not change a request's output: with lim.row_exact a sequence's
// logits are bitwise the same whether it runs alone or shares every forward call with other
// sequences (prefill chunks and decode tokens mixed), for f32, bf16 and Q8_0 weights.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "model/engine.h"
#include "model/init.h"
#include "test_util.h"

#define STEPS 6
static const int prompt0[5] = {0, 17, 42, 255, 3};
static const int prompt1[9] = {0, 99, 128, 7, 7, 7, 64, 200, 1};
static const int prompt2[7] = {0, 250, 33, 90, 12, 5, 180};

static void load_preset(ds_model *m, char **dir, const char *preset, ds_init_dtype dt, int quant) {
    *dir = test_mkdtemp();
    assert_non_null(*dir);
    ds_config c;
    ds_error err;
    assert_int_equal(ds_preset_config(&c, preset, &err), DS_OK);
    ds_init_params p = {.dtype = dt, .seed = 3};
    if (ds_init_write(&c, &p, *dir, &err)) fail_msg("init: %s", err.msg);
    if (ds_model_load(m, *dir, &err)) fail_msg("load: %s", err.msg);
    if (quant >= 0 && ds_model_quantize(m, (ds_dtype)quant, 0, NULL, &err)) fail_msg("quantize: %s", err.msg);
}

static ds_engine *make_engine(const ds_model *m, int row_exact) {
    ds_engine_limits lim = {.max_tokens = 32, .max_seqs = 3, .max_ctx = 64, .max_logits = 3, .row_exact = row_exact};
    ds_engine *e;
    ds_error err;
    if (ds_engine_create(&e, m, &lim, &err)) fail_msg("engine: %s", err.msg);
    return e;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

// A growing batch: add tokens of one sequence, at its next positions.
typedef struct {
    int n, tok[32], seq[32], pos[32];
    uint8_t want[32];
} batch_buf;

static void add(batch_buf *b, const ds_engine *e, int seq, const int *ids, int n, int next_pos) {
    for (int i = 0; i < n; i++) {
        b->tok[b->n] = ids[i];
        b->seq[b->n] = seq;
        b->pos[b->n] = next_pos + i;
        b->want[b->n] = i == n - 1;
        b->n++;
    }
    (void)e;
}

// Sequence 0 (5-token prompt, then STEPS greedy decode steps) and, when `crowd`, sequence 1
// prefilled in the same first call and sequence 2 joining with its prefill at step 2. Writes
// sequence 0's logits of every step into out ((STEPS + 1), V).
static void run(const ds_model *m, int row_exact, int crowd, float *out) {
    int V = m->cfg.vocab_size;
    ds_engine *e = make_engine(m, row_exact);
    float *logits = malloc((size_t)3 * V * sizeof(float));
    int last[3] = {0};
    ds_error err;
    for (int step = 0; step <= STEPS; step++) {
        batch_buf b = {0};
        int row0 = -1, row1 = -1, row2 = -1, k = 0;
        // Other sequences come first so sequence 0's rows sit at varying batch offsets.
        if (crowd && step == 0) { add(&b, e, 1, prompt1, 9, 0); row1 = k++; }
        else if (crowd && step < 5) { add(&b, e, 1, &last[1], 1, ds_engine_seq_len(e, 1)); row1 = k++; }
        if (crowd && step == 2) { add(&b, e, 2, prompt2, 7, 0); row2 = k++; }
        else if (crowd && step > 2) { add(&b, e, 2, &last[2], 1, ds_engine_seq_len(e, 2)); row2 = k++; }
        if (step == 0) add(&b, e, 0, prompt0, 5, 0);
        else add(&b, e, 0, &last[0], 1, ds_engine_seq_len(e, 0));
        row0 = k++;
        ds_batch bb = {b.n, b.tok, b.seq, b.pos, b.want};
        if (ds_engine_forward(e, &bb, logits, &err)) fail_msg("forward: %s", err.msg);
        memcpy(out + (size_t)step * V, logits + (size_t)row0 * V, (size_t)V * sizeof(float));
        last[0] = argmax(logits + (size_t)row0 * V, V);
        if (row1 >= 0) last[1] = argmax(logits + (size_t)row1 * V, V);
        if (row2 >= 0) last[2] = argmax(logits + (size_t)row2 * V, V);
    }
    free(logits);
    ds_engine_free(e);
}

static void check_exact(const char *preset, ds_init_dtype dt, int quant) {
    ds_model m;
    char *dir;
    load_preset(&m, &dir, preset, dt, quant);
    size_t n = (size_t)(STEPS + 1) * m.cfg.vocab_size;
    float *alone = malloc(n * sizeof(float)), *crowd = malloc(n * sizeof(float));
    run(&m, 1, 0, alone);
    run(&m, 1, 1, crowd);
    for (int s = 0; s <= STEPS; s++)
        if (memcmp(alone + (size_t)s * m.cfg.vocab_size, crowd + (size_t)s * m.cfg.vocab_size,
                   (size_t)m.cfg.vocab_size * sizeof(float)) != 0)
            fail_msg("%s dtype %d quant %d: step %d logits differ alone vs batched", preset, (int)dt, quant, s);
    // The row-wise kernels compute the same function as the GEMM path (up to rounding).
    // (Q8_0: the GEMM path multiplies f32 activations, the row path quantizes them too.)
    run(&m, 0, 0, crowd);
    double d = test_max_rel_diff(alone, crowd, (long)n);
    if (!(d < (quant >= 0 ? 0.05 : 1e-4))) fail_msg("%s: row-exact vs default engine differ by %.3g", preset, d);
    free(alone);
    free(crowd);
    ds_model_free(&m);
    test_rmdir(dir);
}

static void test_row_exact_f32(void **state) { (void)state; check_exact("tiny", DS_INIT_F32, -1); check_exact("small", DS_INIT_F32, -1); }
static void test_row_exact_bf16(void **state) { (void)state; check_exact("tiny", DS_INIT_BF16, -1); }
static void test_row_exact_q8(void **state) { (void)state; check_exact("small", DS_INIT_BF16, DS_Q8_0); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_row_exact_f32),
        cmocka_unit_test(test_row_exact_bf16),
        cmocka_unit_test(test_row_exact_q8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
