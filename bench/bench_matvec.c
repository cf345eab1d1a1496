// Decode matvec throughput (N = 1): GB/s of weight bytes read, next to a plain memory-read
// bandwidth, to show how close the fused convert+dot kernels get to the memory roofline.
// "hot" repeats one weight (it may sit in L3); "cold" cycles through copies totalling
// >= 256 MiB so every call streams from DRAM. Usage: bench_matvec [seconds_per_point]
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/rng.h"
#include "kernels/kernels.h"

#define COLD_BYTES (256u << 20)
#define MAX_COPIES 64

static double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Sum of 64-bit words with 256-bit loads where the CPU has AVX2 (the kernels' load width), so
// the figure is the memory's read bandwidth, not the loop's.
#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx2"))) static uint64_t bench_read_avx2(const uint64_t *p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 16 <= n; i += 16) {
        a0 = _mm256_add_epi64(a0, _mm256_loadu_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_loadu_si256((const __m256i *)(p + i + 4)));
        a2 = _mm256_add_epi64(a2, _mm256_loadu_si256((const __m256i *)(p + i + 8)));
        a3 = _mm256_add_epi64(a3, _mm256_loadu_si256((const __m256i *)(p + i + 12)));
    }
    uint64_t t[4];
    _mm256_storeu_si256((__m256i *)t, _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
    return t[0] + t[1] + t[2] + t[3];
}
#endif

static uint64_t bench_read(const uint64_t *p, size_t n) {
    uint64_t s = 0;
    size_t per = n / 64; // 64 slices; n = COLD_BYTES / 8 divides evenly, in multiples of 16
#pragma omp parallel for reduction(+ : s) schedule(static)
    for (int k = 0; k < 64; k++) {
        const uint64_t *q = p + (size_t)k * per;
#if defined(__x86_64__)
        if (__builtin_cpu_supports("avx2")) { s += bench_read_avx2(q, per); continue; }
#endif
        for (size_t i = 0; i < per; i++) s += q[i];
    }
    return s;
}

static double bench_memory_gbs(int threads, double secs) {
    size_t n = (size_t)COLD_BYTES / 8;
    uint64_t *buf = malloc(n * 8);
    for (size_t i = 0; i < n; i++) buf[i] = i;
    omp_set_num_threads(threads);
    volatile uint64_t sink = bench_read(buf, n);
    int reps = 0;
    double t0 = bench_now(), t;
    do { sink += bench_read(buf, n); reps++; } while ((t = bench_now() - t0) < secs);
    (void)sink;
    free(buf);
    return (double)reps * n * 8 / t / 1e9;
}

typedef struct {
    ds_tensor t[MAX_COPIES];
    void *data[MAX_COPIES];
    float *scale[MAX_COPIES];
    int copies;
    size_t bytes; // per copy, weights + scales
} bench_weight;

static void bench_weight_make(bench_weight *w, ds_dtype dt, int64_t n, ds_rng *rng) {
    size_t sn = (size_t)((n + 127) / 128) * (size_t)((n + 127) / 128);
    size_t mbytes = (size_t)(n * ds_dtype_row_bytes(dt, n));
    w->bytes = mbytes + (dt == DS_F8_E4M3 ? sn * 4 : 0);
    w->copies = (int)((COLD_BYTES + w->bytes - 1) / w->bytes);
    if (w->copies > MAX_COPIES) w->copies = MAX_COPIES;
    for (int k = 0; k < w->copies; k++) {
        unsigned char *d = malloc(mbytes);
        if (k > 0) memcpy(d, w->data[0], mbytes); // same bytes, new addresses
        if (k == 0 && (dt == DS_Q8_0 || dt == DS_Q4_0)) {
            float *row = malloc(sizeof(float) * (size_t)n);
            for (int64_t r = 0; r < n; r++) {
                for (int64_t i = 0; i < n; i++) row[i] = ds_rng_normal(rng) * 0.02f;
                ds_quantize_row(dt, row, d + r * ds_dtype_row_bytes(dt, n), n);
            }
            free(row);
            if (dt == DS_Q4_0 && n % 8 == 0) { // the layout the decode kernel runs on
                unsigned char *g = malloc(mbytes);
                ds_q4_0_to_x8(d, g, n, n);
                free(d);
                d = g;
            }
        }
        for (int64_t i = 0; i < (k == 0 && ds_dtype_block(dt) == 1 ? n * n : 0); i++) {
            float v = ds_rng_normal(rng) * 0.02f;
            if (dt == DS_F32) memcpy(d + i * 4, &v, 4);
            else if (dt == DS_BF16) { uint16_t h = ds_f32_to_bf16(v); memcpy(d + i * 2, &h, 2); }
            else d[i] = ds_f32_to_fp8(v * 1000.0f);
        }
        float *s = NULL;
        if (dt == DS_F8_E4M3) {
            s = malloc(sn * 4);
            for (size_t i = 0; i < sn; i++) s[i] = 1e-3f;
        }
        w->data[k] = d;
        w->scale[k] = s;
        w->t[k] = (ds_tensor){.dtype = dt == DS_Q4_0 ? DS_Q4_0X8 : dt, .ndim = 2, .shape = {n, n}, .data = d, .scale = s};
    }
}

static void bench_weight_free(bench_weight *w) {
    for (int k = 0; k < w->copies; k++) { free(w->data[k]); free(w->scale[k]); }
}

// GB/s of weight bytes over `secs`, cycling through `copies` copies.
static double bench_matvec_gbs(const bench_weight *w, int copies, float *out, const float *x, double secs) {
    for (int k = 0; k < copies; k++) matmul_forward(out, x, &w->t[k], 1, NULL); // warm-up, page-in
    long calls = 0;
    double t0 = bench_now(), t;
    do {
        matmul_forward(out, x, &w->t[calls % copies], 1, NULL);
        calls++;
    } while ((t = bench_now() - t0) < secs || calls < copies);
    return (double)calls * (double)w->bytes / t / 1e9;
}

int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 0.3;
    int simd = kernels_simd_active();
    printf("bench_matvec: N=1 decode matvec, SIMD kernels %s, %d CPUs\n", simd ? "AVX2" : "unavailable",
           omp_get_num_procs());
    double mem[3] = {0};
    for (int th = 1; th <= 2; th++) {
        mem[th] = bench_memory_gbs(th, secs);
        printf("memory read (256 MiB, integer sum): %d thread%s %.1f GB/s\n", th, th > 1 ? "s" : "", mem[th]);
    }
    printf("%-10s %-8s %-9s %3s %10s %10s %9s %10s\n", "weight", "dtype", "path", "thr", "hot GB/s",
           "cold GB/s", "cold/mem", "cold us");
    static const int64_t sizes[] = {2048, 4096};
    static const ds_dtype dts[] = {DS_F32, DS_BF16, DS_F8_E4M3, DS_Q8_0, DS_Q4_0};
    const int ndts = (int)(sizeof dts / sizeof *dts);
    ds_rng rng;
    ds_rng_seed(&rng, 1, 1);
    float *x = malloc(4096 * sizeof(float)), *out = malloc(4096 * sizeof(float));
    for (int i = 0; i < 4096; i++) x[i] = ds_rng_normal(&rng);
    for (int si = 0; si < 2; si++)
        for (int di = 0; di < ndts; di++) {
            bench_weight w;
            bench_weight_make(&w, dts[di], sizes[si], &rng);
            for (int portable = simd ? 0 : 1; portable < 2; portable++)
                for (int th = 1; th <= 2; th++) {
                    kernels_force_portable(portable);
                    omp_set_num_threads(th);
                    double hot = bench_matvec_gbs(&w, 1, out, x, secs);
                    double cold = bench_matvec_gbs(&w, w.copies, out, x, secs);
                    char name[32];
                    snprintf(name, sizeof(name), "%lldx%lld", (long long)sizes[si], (long long)sizes[si]);
                    printf("%-10s %-8s %-9s %3d %10.1f %10.1f %8.0f%% %10.1f\n", name, ds_dtype_name(dts[di]),
                           portable ? "portable" : "avx2", th, hot, cold, 100.0 * cold / mem[th],
                           (double)w.bytes / (cold * 1e9) * 1e6);
                }
            kernels_force_portable(0);
            bench_weight_free(&w);
        }
    free(x);
    free(out);
    return 0;
}
