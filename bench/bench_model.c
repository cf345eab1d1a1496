// Prefill and decode throughput of a model folder, next to this machine's memory bandwidth.
// usage: bench_model DIR [prefill_tokens=128] [decode_tokens=32] [q8|q4]
// Prints one line: tokens/s for both phases (prefill: median of three passes after an
// untimed one) and the decode fraction of the bandwidth roofline (bytes of weights read per
// token / measured read bandwidth).
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/engine.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Read bandwidth with all threads summing a 1 GiB buffer (best of 3).
static double measure_bandwidth(void) {
    size_t n = (size_t)1 << 28;
    float *buf = malloc(n * sizeof(float));
    if (!buf) return 0;
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) buf[i] = (float)(i & 7);
    double best = 0;
    volatile float sink = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        float s = 0;
        // 16 independent partial sums per thread let the compiler vectorise the read loop
        // (a single float accumulator cannot be reordered without -ffast-math).
        #pragma omp parallel reduction(+ : s)
        {
            float acc[16] = {0};
            #pragma omp for schedule(static)
            for (size_t i = 0; i < n; i += 16)
                for (int j = 0; j < 16; j++) acc[j] += buf[i + j];
            for (int j = 0; j < 16; j++) s += acc[j];
        }
        double dt = now() - t0;
        sink += s;
        if (n * sizeof(float) / dt > best) best = n * sizeof(float) / dt;
    }
    (void)sink;
    free(buf);
    return best;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: bench_model DIR [prefill_tokens] [decode_tokens] [q8|q4]\n"); return 1; }
    int T = argc > 2 ? atoi(argv[2]) : 128, G = argc > 3 ? atoi(argv[3]) : 32;
    ds_model m;
    ds_error err;
    if (ds_model_load(&m, argv[1], &err)) { fprintf(stderr, "bench_model: %s\n", err.msg); return 2; }
    if (argc > 4 && ds_model_quantize(&m, !strcmp(argv[4], "q4") ? DS_Q4_0 : DS_Q8_0, 0, NULL, &err)) {
        fprintf(stderr, "bench_model: %s\n", err.msg);
        return 2;
    }
    ds_model_stats st;
    ds_model_get_stats(&m, &st);
    ds_engine_limits lim = {.max_tokens = T, .max_seqs = 1, .max_ctx = T + G + 1, .max_logits = 1};
    ds_engine *e;
    if (ds_engine_create(&e, &m, &lim, &err)) { fprintf(stderr, "bench_model: %s\n", err.msg); return 2; }
    int V = m.cfg.vocab_size;
    int *tok = malloc((size_t)T * sizeof(int)), *pos = malloc((size_t)T * sizeof(int)), *seq = calloc((size_t)T, sizeof(int));
    uint8_t *want = calloc((size_t)T, 1);
    float *logits = malloc((size_t)V * sizeof(float));
    for (int i = 0; i < T; i++) { tok[i] = (i * 7919 + 13) % V; pos[i] = i; }
    want[T - 1] = 1;
    // warm-up: one token touches every dense weight so page faults are not timed
    uint8_t yes = 1;
    ds_batch w = {1, tok, seq, pos, &yes};
    if (ds_engine_forward(e, &w, logits, &err)) { fprintf(stderr, "bench_model: %s\n", err.msg); return 2; }
    // Prefill: one untimed pass faults in the routed experts the warm-up token did not reach
    // (timing it made prefill vary 2x between runs), then the median of three timed passes.
    ds_batch b = {T, tok, seq, pos, want};
    double tp[4];
    for (int r = 0; r < 4; r++) {
        ds_engine_seq_truncate(e, 0, 0);
        double t0 = now();
        if (ds_engine_forward(e, &b, logits, &err)) { fprintf(stderr, "bench_model: %s\n", err.msg); return 2; }
        tp[r] = now() - t0;
    }
    double lo = fmin(tp[1], fmin(tp[2], tp[3])), hi = fmax(tp[1], fmax(tp[2], tp[3]));
    double tmed = tp[1] + tp[2] + tp[3] - lo - hi;
    // decode G tokens greedily (argmax)
    double td = 0;
    for (int g = 0; g < G; g++) {
        int best = 0;
        for (int v = 1; v < V; v++) if (logits[v] > logits[best]) best = v;
        int p = T + g;
        ds_batch d = {1, &best, seq, &p, &yes};
        double s0 = now();
        if (ds_engine_forward(e, &d, logits, &err)) { fprintf(stderr, "bench_model: %s\n", err.msg); return 2; }
        if (g > 0) td += now() - s0; // the first decode step still faults pages in
    }
    double bw = measure_bandwidth();
    double prefill = T / tmed, decode = (G - 1) / td;
    double roof = bw / (double)st.active_weight_bytes;
    printf("threads %d  prefill %7.1f tok/s  decode %6.2f tok/s  | %.1f MB/token, bandwidth %.1f GB/s, roofline %.2f tok/s, %.0f%% of roofline\n",
           omp_get_max_threads(), prefill, decode, st.active_weight_bytes / 1e6, bw / 1e9, roof, 100.0 * decode / roof);
    ds_engine_free(e);
    ds_model_free(&m);
    free(tok); free(pos); free(seq); free(want); free(logits);
    return 0;
}
