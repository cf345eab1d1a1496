// matmul y = x W^T for every weight storage type, plus the serial row helpers attention uses.
// Decode (small N) is memory-bound: each weight byte is read once, converted in registers and
// dotted with the token(s) (fused kernels in dot_avx2.c). Prefill (large N) is compute-bound:
// weights are converted to f32 in tiles and multiplied with OpenBLAS sgemm.
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/dot_avx2.h"
#include "kernels/kernels.h"

#if DS_HAVE_AVX2_KERNELS
#include <cpuid.h>
#endif

// ---- fp8 e4m3fn decode table, built by the compiler ----------------------------------------
// e in 1..15: 2^(e-7) (1 + m/8); e == 0: 2^-6 m/8; 0x7f/0xff: NaN (e4m3fn has no infinities).
#define FP8_MAG(b) \
    (((b) & 0x78) == 0 ? (float)((b) & 7) / 512.0f \
                       : (1.0f + (float)((b) & 7) / 8.0f) * (float)(1u << (((b) >> 3) & 15)) / 128.0f)
#define FP8_VAL(b) (((b) & 0x7f) == 0x7f ? NAN : ((b) & 0x80) ? -FP8_MAG(b) : FP8_MAG(b))
#define FP8_R4(b) FP8_VAL(b), FP8_VAL((b) + 1), FP8_VAL((b) + 2), FP8_VAL((b) + 3)
#define FP8_R16(b) FP8_R4(b), FP8_R4((b) + 4), FP8_R4((b) + 8), FP8_R4((b) + 12)
#define FP8_R64(b) FP8_R16(b), FP8_R16((b) + 16), FP8_R16((b) + 32), FP8_R16((b) + 48)
const float kernels_fp8_lut[256] = {FP8_R64(0), FP8_R64(64), FP8_R64(128), FP8_R64(192)};

// ---- SIMD dispatch ---------------------------------------------------------------------------
// The per-process runtime choice (design.md: no mutable globals beyond documented runtime):
// the CPU check and DS_SIMD are read once under pthread_once; the test hook below can force the
// portable path afterwards.
static pthread_once_t simd_once = PTHREAD_ONCE_INIT;
static int simd_cpu_ok;
static atomic_int simd_forced_portable;

static void simd_detect(void) {
    const char *env = getenv("DS_SIMD");
    int ok = 0;
#if DS_HAVE_AVX2_KERNELS
    // Clang 14 has no "f16c" for __builtin_cpu_supports; CPUID leaf 1 ECX bit 29 says it.
    unsigned a, b, c, d;
    int f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
    __builtin_cpu_init();
    ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
#endif
    if (env && strcmp(env, "portable") == 0) ok = 0;
    simd_cpu_ok = ok;
}

int kernels_simd_active(void) {
    pthread_once(&simd_once, simd_detect);
    return simd_cpu_ok && !atomic_load_explicit(&simd_forced_portable, memory_order_relaxed);
}

void kernels_force_portable(int on) { atomic_store(&simd_forced_portable, on != 0); }

// ---- portable kernels (unaligned weights read with memcpy; -O3 vectorises the easy ones) ------
static inline float ld_f32(const unsigned char *p) { float f; memcpy(&f, p, 4); return f; }
static inline float ld_bf16(const unsigned char *p) {
    uint16_t h; memcpy(&h, p, 2);
    uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f;
}
static inline float ld_f16(const unsigned char *p) { uint16_t h; memcpy(&h, p, 2); return ds_f16_to_f32(h); }
static inline float ld_scale(const float *s, int64_t i) { float f; memcpy(&f, s + i, 4); return f; }

// A weight matrix as the kernels see it: bytes, element size and fp8 scale-row geometry.
typedef struct {
    ds_dtype dtype;
    const unsigned char *data;
    const float *scale;
    int64_t rows, cols, esz, scols;
    int64_t rowbytes;   // bytes per row (block types: cols / 32 blocks)
    int quant;          // Q8_0 / Q4_0
} wview;

static wview wview_make(const ds_tensor *w) {
    wview v = {w->dtype, w->data, w->scale, ds_tensor_rows(w), ds_tensor_cols(w),
               (int64_t)ds_dtype_size(w->dtype), 0, 0, 0};
    v.scols = (v.cols + DS_FP8_BLOCK - 1) / DS_FP8_BLOCK;
    v.rowbytes = ds_dtype_row_bytes(w->dtype, v.cols);
    v.quant = w->dtype == DS_Q8_0 || w->dtype == DS_Q4_0 || w->dtype == DS_Q4_0X8;
    return v;
}
static inline const unsigned char *wview_row(const wview *v, int64_t r) { return v->data + r * v->rowbytes; }
// Bytes from a row's start to column c (c a multiple of the block for block types).
static inline int64_t wview_col_off(const wview *v, int64_t c) {
    return v->quant ? c / DS_QBLOCK * (int64_t)ds_dtype_block_bytes(v->dtype) : c * v->esz;
}

// ---- block-quantized rows against activations quantized per block -----------------------
static void act_quantize(const float *x, act_q8 *y, int64_t n, int simd) {
#if DS_HAVE_AVX2_KERNELS
    if (simd) { act_quantize_avx2(x, y, n); return; }
#endif
    (void)simd;
    act_quantize_portable(x, y, n);
}

static float row_dot_q(const wview *v, int64_t r, const act_q8 *x, int simd) {
    const unsigned char *p = wview_row(v, r);
    int64_t nb = v->cols / DS_QBLOCK;
#if DS_HAVE_AVX2_KERNELS
    if (simd) return v->dtype == DS_Q8_0 ? dot_q8_0_avx2(p, x, nb) : dot_q4_0_avx2(p, x, nb);
#endif
    (void)simd;
    return v->dtype == DS_Q8_0 ? dot_q8_0_portable(p, x, nb) : dot_q4_0_portable(p, x, nb);
}
static inline const float *wview_srow(const wview *v, int64_t r) { return v->scale + (r / DS_FP8_BLOCK) * v->scols; }

// Eight partial sums keep the f32 rounding error low and let the compiler vectorise.
static float dot_portable(const unsigned char *p, ds_dtype t, const float *x, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    switch (t) {
    case DS_F32:
        for (; i + 8 <= n; i += 8)
            for (int k = 0; k < 8; k++) acc[k] += ld_f32(p + (i + k) * 4) * x[i + k];
        for (; i < n; i++) acc[0] += ld_f32(p + i * 4) * x[i];
        break;
    case DS_BF16:
        for (; i + 8 <= n; i += 8)
            for (int k = 0; k < 8; k++) acc[k] += ld_bf16(p + (i + k) * 2) * x[i + k];
        for (; i < n; i++) acc[0] += ld_bf16(p + i * 2) * x[i];
        break;
    case DS_F16:
        for (; i + 8 <= n; i += 8)
            for (int k = 0; k < 8; k++) acc[k] += ld_f16(p + (i + k) * 2) * x[i + k];
        for (; i < n; i++) acc[0] += ld_f16(p + i * 2) * x[i];
        break;
    default: break;
    }
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

static float dot_fp8_portable(const unsigned char *p, const float *srow, const float *x, int64_t n) {
    float total = 0.0f;
    for (int64_t c0 = 0; c0 < n; c0 += DS_FP8_BLOCK) {
        int64_t len = n - c0 < DS_FP8_BLOCK ? n - c0 : DS_FP8_BLOCK;
        const unsigned char *pb = p + c0;
        const float *xb = x + c0;
        float acc[4] = {0};
        int64_t i = 0;
        for (; i + 4 <= len; i += 4)
            for (int k = 0; k < 4; k++) acc[k] += kernels_fp8_lut[pb[i + k]] * xb[i + k];
        for (; i < len; i++) acc[0] += kernels_fp8_lut[pb[i]] * xb[i];
        total += ((acc[0] + acc[2]) + (acc[1] + acc[3])) * ld_scale(srow, c0 / DS_FP8_BLOCK);
    }
    return total;
}

static void row_cvt(const wview *v, int64_t r, int64_t c0, int64_t len, float *out, int simd);
static float f32_dot(const float *a, const float *b, int64_t n, int simd);
#define QCHUNK 256
// A block-quantized row against f32 x, dequantized a chunk at a time (the per-head matvecs of
// absorbed attention; the matmuls use the integer path).
static float row_dot_qf(const wview *v, int64_t r, const float *x, int simd) {
    float buf[QCHUNK], s = 0.0f;
    for (int64_t c0 = 0; c0 < v->cols; c0 += QCHUNK) {
        int64_t len = v->cols - c0 < QCHUNK ? v->cols - c0 : QCHUNK;
        row_cvt(v, r, c0, len, buf, simd);
        s += f32_dot(buf, x + c0, len, simd);
    }
    return s;
}

// ---- one row of any dtype: dot, axpy, convert ---------------------------------------------
static float row_dot(const wview *v, int64_t r, const float *x, int simd) {
    if (v->quant) return row_dot_qf(v, r, x, simd);
    const unsigned char *p = wview_row(v, r);
#if DS_HAVE_AVX2_KERNELS
    if (simd) {
        switch (v->dtype) {
        case DS_F32: return dot_f32_avx2(p, x, v->cols);
        case DS_BF16: return dot_bf16_avx2(p, x, v->cols);
        case DS_F16: return dot_f16_avx2(p, x, v->cols);
        case DS_F8_E4M3: return dot_fp8_avx2(p, wview_srow(v, r), x, v->cols);
        default: return 0.0f;
        }
    }
#endif
    (void)simd;
    if (v->dtype == DS_F8_E4M3) return dot_fp8_portable(p, wview_srow(v, r), x, v->cols);
    return dot_portable(p, v->dtype, x, v->cols);
}

// y += a * w[r, :]
static void row_axpy(const wview *v, int64_t r, float a, float *y, int simd) {
    const unsigned char *p = wview_row(v, r);
    int64_t n = v->cols;
    if (v->quant) {
        float buf[QCHUNK];
        for (int64_t c0 = 0; c0 < n; c0 += QCHUNK) {
            int64_t len = n - c0 < QCHUNK ? n - c0 : QCHUNK;
            row_cvt(v, r, c0, len, buf, simd);
            axpy_f32(y + c0, a, buf, len);
        }
        return;
    }
#if DS_HAVE_AVX2_KERNELS
    if (simd) {
        switch (v->dtype) {
        case DS_F32: axpy_f32_avx2(y, a, p, n); return;
        case DS_BF16: axpy_bf16_avx2(y, a, p, n); return;
        case DS_F16: axpy_f16_avx2(y, a, p, n); return;
        case DS_F8_E4M3: axpy_fp8_avx2(y, a, p, wview_srow(v, r), n); return;
        default: return;
        }
    }
#endif
    (void)simd;
    switch (v->dtype) {
    case DS_F32: for (int64_t i = 0; i < n; i++) y[i] += a * ld_f32(p + i * 4); break;
    case DS_BF16: for (int64_t i = 0; i < n; i++) y[i] += a * ld_bf16(p + i * 2); break;
    case DS_F16: for (int64_t i = 0; i < n; i++) y[i] += a * ld_f16(p + i * 2); break;
    case DS_F8_E4M3: {
        const float *srow = wview_srow(v, r);
        for (int64_t i = 0; i < n; i++) y[i] += a * ld_scale(srow, i / DS_FP8_BLOCK) * kernels_fp8_lut[p[i]];
    } break;
    default: break;
    }
}

// out[0, len) = w[r, c0 : c0 + len) in f32; c0 is a multiple of DS_FP8_BLOCK.
static void row_cvt(const wview *v, int64_t r, int64_t c0, int64_t len, float *out, int simd) {
    if (v->dtype == DS_Q4_0X8) { // rows are interleaved in groups of 8
        ds_q4_0x8_row_range_to_f32(v->data, r, v->cols, c0, len, out);
        return;
    }
    const unsigned char *p = wview_row(v, r) + wview_col_off(v, c0);
    if (v->quant) {
#if DS_HAVE_AVX2_KERNELS
        if (simd) {
            if (v->dtype == DS_Q8_0) cvt_q8_0_avx2(out, p, len / DS_QBLOCK);
            else cvt_q4_0_avx2(out, p, len / DS_QBLOCK);
            return;
        }
#endif
        ds_dequantize_row(v->dtype, p, out, len);
        return;
    }
    const float *srow = v->dtype == DS_F8_E4M3 ? wview_srow(v, r) + c0 / DS_FP8_BLOCK : NULL;
#if DS_HAVE_AVX2_KERNELS
    if (simd && v->dtype != DS_F32) {
        if (v->dtype == DS_BF16) cvt_bf16_avx2(out, p, len);
        else if (v->dtype == DS_F16) cvt_f16_avx2(out, p, len);
        else if (v->dtype == DS_F8_E4M3) cvt_fp8_avx2(out, p, srow, len);
        return;
    }
#endif
    (void)simd;
    switch (v->dtype) {
    case DS_F32: memcpy(out, p, (size_t)len * 4); break;
    case DS_BF16: for (int64_t i = 0; i < len; i++) out[i] = ld_bf16(p + i * 2); break;
    case DS_F16: for (int64_t i = 0; i < len; i++) out[i] = ld_f16(p + i * 2); break;
    case DS_F8_E4M3:
        for (int64_t i = 0; i < len; i++) out[i] = kernels_fp8_lut[p[i]] * ld_scale(srow, i / DS_FP8_BLOCK);
        break;
    default: break;
    }
}

static float f32_dot(const float *a, const float *b, int64_t n, int simd) {
#if DS_HAVE_AVX2_KERNELS
    if (simd) return dot_f32_avx2(a, b, n);
#endif
    (void)simd;
    return dot_portable((const unsigned char *)a, DS_F32, b, n);
}

// ---- matmul ----------------------------------------------------------------------------------
// Columns converted at a time when one weight row serves several tokens: a multiple of the fp8
// block, small enough to stay in L1 next to the tokens' slices.
#define ROW_CHUNK 512
// Below this many multiply-adds a fork/join costs more than it saves.
#define PARALLEL_MIN_MACS (1 << 16)

// One weight row against N tokens: with N > 1 the row is converted once per chunk and reused,
// so conversion cost is not paid N times.
static void row_dot_tokens(float *out, const float *inp, const wview *v, int N, int64_t r, int simd) {
    int64_t OUT = v->rows, IN = v->cols;
    if (N == 1 || v->dtype == DS_F32) {
        for (int n = 0; n < N; n++) out[n * OUT + r] = row_dot(v, r, inp + n * IN, simd);
        return;
    }
    float buf[ROW_CHUNK];
    for (int n = 0; n < N; n++) out[n * OUT + r] = 0.0f;
    for (int64_t c0 = 0; c0 < IN; c0 += ROW_CHUNK) {
        int64_t len = IN - c0 < ROW_CHUNK ? IN - c0 : ROW_CHUNK;
        row_cvt(v, r, c0, len, buf, simd);
        for (int n = 0; n < N; n++) out[n * OUT + r] += f32_dot(buf, inp + n * IN + c0, len, simd);
    }
}

// Large N, non-f32 weights: convert DS_GEMM_TILE_ROWS rows at a time, sgemm into out's columns.
static void matmul_tiles_gemm(float *out, const float *inp, const wview *v, int N, float *work, int simd) {
    int64_t OUT = v->rows, IN = v->cols;
    for (int64_t r0 = 0; r0 < OUT; r0 += DS_GEMM_TILE_ROWS) {
        int64_t nr = OUT - r0 < DS_GEMM_TILE_ROWS ? OUT - r0 : DS_GEMM_TILE_ROWS;
#if DS_HAVE_AVX2_KERNELS
        if (simd && v->dtype == DS_Q4_0X8) { // whole groups of 8 interleaved rows at once
#pragma omp parallel for schedule(static) if (nr * IN >= PARALLEL_MIN_MACS)
            for (int64_t g = 0; g < nr / 8; g++)
                cvt8_q4_0x8_avx2(work + g * 8 * IN, IN, v->data + (r0 / 8 + g) * 8 * v->rowbytes, IN / DS_QBLOCK);
        } else
#endif
#pragma omp parallel for schedule(static) if (nr * IN >= PARALLEL_MIN_MACS)
        for (int64_t i = 0; i < nr; i++) row_cvt(v, r0 + i, 0, IN, work + i * IN, simd);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, (int)nr, (int)IN, 1.0f, inp, (int)IN,
                    work, (int)IN, 0.0f, out + r0, (int)OUT);
    }
}

// Output row i of the integer path (for Q4_0X8: the group of rows 8i..8i+7) for N tokens
// quantized in xq.
static void quant_rows_unit(float *out, const act_q8 *xq, const wview *v, int N, int64_t i, int simd) {
    int64_t OUT = v->rows, nb = v->cols / DS_QBLOCK;
    if (v->dtype == DS_Q4_0X8) {
        const unsigned char *grp = v->data + i * 8 * v->rowbytes;
        for (int n = 0; n < N; n++) {
            float o8[8];
#if DS_HAVE_AVX2_KERNELS
            if (simd) dot8_q4_0x8_avx2(grp, xq + n * nb, nb, o8);
            else
#endif
                dot8_q4_0x8_portable(grp, xq + n * nb, nb, o8);
            memcpy(out + n * OUT + i * 8, o8, sizeof o8);
        }
        return;
    }
    for (int n = 0; n < N; n++) out[n * OUT + i] = row_dot_q(v, i, xq + n * nb, simd);
}

// Few tokens, block-quantized weights: quantize the tokens once, then integer dot products
// row by row (rows split across threads).
static void matmul_quant_rows(float *out, const float *inp, const wview *v, int N, float *work, int simd) {
    int64_t OUT = v->rows, IN = v->cols, nb = IN / DS_QBLOCK;
    size_t bytes = sizeof(act_q8) * (size_t)(N * nb);
    act_q8 *xq = work && bytes <= sizeof(float) * (size_t)matmul_work_floats(IN) ? (act_q8 *)work : malloc(bytes);
    if (!xq) { // no memory for 1.1 bytes per input value: fall back to dequantizing rows
#pragma omp parallel for schedule(static) if (OUT * IN * N >= PARALLEL_MIN_MACS && OUT > 1)
        for (int64_t r = 0; r < OUT; r++)
            for (int n = 0; n < N; n++) out[n * OUT + r] = row_dot_qf(v, r, inp + n * IN, simd);
        return;
    }
    for (int n = 0; n < N; n++) act_quantize(inp + n * IN, xq + n * nb, IN, simd);
    int64_t units = v->dtype == DS_Q4_0X8 ? OUT / 8 : OUT; // eight rows per kernel call
#pragma omp parallel for schedule(static) if (OUT * IN * N >= PARALLEL_MIN_MACS && units > 1)
    for (int64_t i = 0; i < units; i++) quant_rows_unit(out, xq, v, N, i, simd);
    if ((void *)xq != (void *)work) free(xq);
}

int64_t matmul_few_work_floats(int64_t in) {
    return (int64_t)(((size_t)(DS_GEMM_MIN_N - 1) * (size_t)(in / DS_QBLOCK) * sizeof(act_q8) + sizeof(float) - 1) /
                     sizeof(float));
}

void matmul_few_prepare(const ds_tensor *w, const float *inp, int N, float *xq) {
    wview v = wview_make(w);
    if (!v.quant) return;
    int64_t IN = v.cols, nb = IN / DS_QBLOCK;
    int simd = kernels_simd_active();
    for (int n = 0; n < N; n++) act_quantize(inp + n * IN, (act_q8 *)xq + n * nb, IN, simd);
}

void matmul_few_rows(float *out, const float *inp, const ds_tensor *w, int N, const float *xq, int64_t r0, int64_t r1,
                     int rowwise) {
    wview v = wview_make(w);
    int64_t OUT = v.rows, IN = v.cols;
    if (N <= 0 || r1 <= r0) return;
    int simd = kernels_simd_active();
    if (IN == 0) {
        for (int n = 0; n < N; n++) memset(out + n * OUT + r0, 0, sizeof(float) * (size_t)(r1 - r0));
        return;
    }
    if (v.quant) {
        int step = v.dtype == DS_Q4_0X8 ? 8 : 1;
        for (int64_t r = r0; r < r1; r += step) quant_rows_unit(out, (const act_q8 *)xq, &v, N, r / step, simd);
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        if (!rowwise) row_dot_tokens(out, inp, &v, N, r, simd);
        else
            for (int n = 0; n < N; n++) out[n * OUT + r] = row_dot(&v, r, inp + n * IN, simd);
    }
}

void matmul_forward(float *out, const float *inp, const ds_tensor *w, int N, float *work) {
    wview v = wview_make(w);
    int64_t OUT = v.rows, IN = v.cols;
    if (N <= 0 || OUT <= 0) return;
    if (IN == 0) { memset(out, 0, sizeof(float) * (size_t)N * (size_t)OUT); return; }
    int simd = kernels_simd_active();
    if (v.quant && (N < DS_GEMM_MIN_N || !work)) {
        matmul_quant_rows(out, inp, &v, N, work, simd);
        return;
    }
    // OpenBLAS reads f32 weights in place; a misaligned f32 tensor (possible in a file) goes
    // through the tile copy instead, keeping every access well-defined.
    if (N >= DS_GEMM_MIN_N && v.dtype == DS_F32 && ((uintptr_t)w->data & 3) == 0) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, (int)OUT, (int)IN, 1.0f, inp, (int)IN,
                    (const float *)w->data, (int)IN, 0.0f, out, (int)OUT);
        return;
    }
    if (N >= DS_GEMM_MIN_N && work) {
        matmul_tiles_gemm(out, inp, &v, N, work, simd);
        return;
    }
    // Contiguous row ranges per thread (static schedule) keep each thread streaming memory.
#pragma omp parallel for schedule(static) if (OUT * IN * N >= PARALLEL_MIN_MACS && OUT > 1)
    for (int64_t r = 0; r < OUT; r++) row_dot_tokens(out, inp, &v, N, r, simd);
}

// Tokens per pass over the weights: their rows stay in L2 while each weight row is reused.
#define ROWWISE_TOKENS 64

void matmul_forward_rowwise(float *out, const float *inp, const ds_tensor *w, int N, float *work) {
    wview v = wview_make(w);
    int64_t OUT = v.rows, IN = v.cols;
    if (N <= 0 || OUT <= 0) return;
    if (IN == 0) { memset(out, 0, sizeof(float) * (size_t)N * (size_t)OUT); return; }
    int simd = kernels_simd_active();
    // Activations are quantized per token and dotted per row: already independent of N.
    if (v.quant) { matmul_quant_rows(out, inp, &v, N, work, simd); return; }
    for (int n0 = 0; n0 < N; n0 += ROWWISE_TOKENS) {
        int nt = N - n0 < ROWWISE_TOKENS ? N - n0 : ROWWISE_TOKENS;
#pragma omp parallel for schedule(static) if (OUT * IN * nt >= PARALLEL_MIN_MACS && OUT > 1)
        for (int64_t r = 0; r < OUT; r++)
            for (int n = n0; n < n0 + nt; n++) out[n * OUT + r] = row_dot(&v, r, inp + n * IN, simd);
    }
}

// Scalar element read, for the reference path.
static float weight_at(const wview *v, int64_t r, int64_t c) {
    if (v->quant) {
        float blk[DS_QBLOCK];
        if (v->dtype == DS_Q4_0X8) ds_q4_0x8_row_range_to_f32(v->data, r, v->cols, c - c % DS_QBLOCK, DS_QBLOCK, blk);
        else ds_dequantize_row(v->dtype, wview_row(v, r) + wview_col_off(v, c - c % DS_QBLOCK), blk, DS_QBLOCK);
        return blk[c % DS_QBLOCK];
    }
    const unsigned char *p = wview_row(v, r) + c * v->esz;
    switch (v->dtype) {
    case DS_F32: return ld_f32(p);
    case DS_BF16: return ld_bf16(p);
    case DS_F16: return ld_f16(p);
    case DS_F8_E4M3: return ds_fp8_to_f32(*p) * ld_scale(wview_srow(v, r), c / DS_FP8_BLOCK);
    default: return 0.0f;
    }
}

void matmul_forward_naive(float *out, const float *inp, const ds_tensor *w, int N) {
    wview v = wview_make(w);
    for (int n = 0; n < N; n++)
        for (int64_t r = 0; r < v.rows; r++) {
            float s = 0.0f;
            for (int64_t c = 0; c < v.cols; c++) s += inp[n * v.cols + c] * weight_at(&v, r, c);
            out[n * v.rows + r] = s;
        }
}

void matvec_rows(float *y, const ds_tensor *w, int64_t r0, int64_t r1, const float *x) {
    wview v = wview_make(w);
    int simd = kernels_simd_active();
    for (int64_t r = r0; r < r1; r++) y[r - r0] = row_dot(&v, r, x, simd);
}

void matvec_t_rows_acc(float *y, const ds_tensor *w, int64_t r0, int64_t r1, const float *a) {
    wview v = wview_make(w);
    int simd = kernels_simd_active();
    for (int64_t r = r0; r < r1; r++) row_axpy(&v, r, a[r - r0], y, simd);
}
