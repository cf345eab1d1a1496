// AVX2 + FMA + F16C kernels: fused convert+dot, convert+axpy and row conversion for the weight
// storage types. Decode is memory-bound, so converting in registers (never writing an f32 copy
// of the weights) is what lets a matvec stream weight bytes at memory speed.
// Compiled with per-function target attributes so the binary still runs on any x86-64; the
// caller checks kernels_use_avx2() first. Weights may be unaligned (mmapped files): only
// unaligned vector loads and memcpy scalar loads touch them.
#include "kernels/dot_avx2.h"

#if DS_HAVE_AVX2_KERNELS
#include <immintrin.h>
#include <math.h>
#include <string.h>

#define DS_TARGET __attribute__((target("avx2,fma,f16c")))

DS_TARGET static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// ---- 8 elements -> 8 floats, per storage type -------------------------------------------
DS_TARGET static inline __m256 load8_f32(const unsigned char *p) { return _mm256_loadu_ps((const float *)p); }
DS_TARGET static inline __m256 load8_bf16(const unsigned char *p) {
    __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16)); // bf16 is the top half of an f32
}
DS_TARGET static inline __m256 load8_f16(const unsigned char *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline float scalar_f32(const unsigned char *p) { float f; memcpy(&f, p, 4); return f; }
static inline float scalar_bf16(const unsigned char *p) {
    uint16_t h; memcpy(&h, p, 2);
    uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f;
}
DS_TARGET static inline float scalar_f16(const unsigned char *p) {
    uint16_t h; memcpy(&h, p, 2);
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

// fp8 e4m3 -> f16 by bit moves. Unpacking a byte b under a zero byte gives the u16 b << 8; an
// arithmetic shift right by 1 and the mask 0xBF80 leave the sign in bit 15 and e4m3's exponent
// and mantissa in f16's bits 13..7, so the f16 value is exactly 2^-8 times the e4m3 value,
// subnormals included (f16 subnormals convert exactly in F16C). The 2^8 is folded into the block
// scale. Unlike the lookup table this maps the NaN codes 0x7f/0xff to +-480 (they never occur
// in quantised weights). Three integer ops per 16 values keep the kernel near memory speed.
DS_TARGET static inline __m256i fp8_to_f16_bits(__m256i w16) {
    return _mm256_and_si256(_mm256_srai_epi16(w16, 1), _mm256_set1_epi16((short)0xbf80));
}
DS_TARGET static inline __m128i fp8_to_f16_bits128(__m128i w16) {
    return _mm_and_si128(_mm_srai_epi16(w16, 1), _mm_set1_epi16((short)0xbf80));
}
// 32 codes -> r[k] = values 8k .. 8k+7. The in-lane unpacks put bytes 0-7 and 16-23 in `lo`.
DS_TARGET static inline void fp8_load32(const unsigned char *p, __m256 r[4]) {
    __m256i b = _mm256_loadu_si256((const __m256i *)p), z = _mm256_setzero_si256();
    __m256i lo = fp8_to_f16_bits(_mm256_unpacklo_epi8(z, b));
    __m256i hi = fp8_to_f16_bits(_mm256_unpackhi_epi8(z, b));
    r[0] = _mm256_cvtph_ps(_mm256_castsi256_si128(lo));
    r[1] = _mm256_cvtph_ps(_mm256_castsi256_si128(hi));
    r[2] = _mm256_cvtph_ps(_mm256_extracti128_si256(lo, 1));
    r[3] = _mm256_cvtph_ps(_mm256_extracti128_si256(hi, 1));
}
DS_TARGET static inline void fp8_load16(const unsigned char *p, __m256 *lo, __m256 *hi) {
    __m128i b = _mm_loadu_si128((const __m128i *)p), z = _mm_setzero_si128();
    *lo = _mm256_cvtph_ps(fp8_to_f16_bits128(_mm_unpacklo_epi8(z, b)));
    *hi = _mm256_cvtph_ps(fp8_to_f16_bits128(_mm_unpackhi_epi8(z, b)));
}
DS_TARGET static inline __m256 fp8_load8(const unsigned char *p) {
    __m128i b = _mm_loadl_epi64((const __m128i *)p);
    return _mm256_cvtph_ps(fp8_to_f16_bits128(_mm_unpacklo_epi8(_mm_setzero_si128(), b)));
}
#define FP8_F16_UNSCALE 256.0f // f16-trick values are 2^-8 of the true e4m3 value

static inline float scale_at(const float *srow, int64_t blk) { float s; memcpy(&s, srow + blk, 4); return s; }

// ---- f32 / bf16 / f16: the same three loops, with the type's loader ----------------------
// Four accumulators hide the FMA latency (4 cycles) so the loop runs at load throughput.
#define DEFINE_DOT(NAME, ESZ, LOAD8, SCALAR)                                                 \
    DS_TARGET float NAME(const void *w, const float *x, int64_t n) {                         \
        const unsigned char *p = w;                                                          \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                          \
        int64_t i = 0;                                                                       \
        for (; i + 32 <= n; i += 32) {                                                       \
            a0 = _mm256_fmadd_ps(LOAD8(p + (i + 0) * ESZ), _mm256_loadu_ps(x + i + 0), a0);  \
            a1 = _mm256_fmadd_ps(LOAD8(p + (i + 8) * ESZ), _mm256_loadu_ps(x + i + 8), a1);  \
            a2 = _mm256_fmadd_ps(LOAD8(p + (i + 16) * ESZ), _mm256_loadu_ps(x + i + 16), a2); \
            a3 = _mm256_fmadd_ps(LOAD8(p + (i + 24) * ESZ), _mm256_loadu_ps(x + i + 24), a3); \
        }                                                                                    \
        for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(LOAD8(p + i * ESZ), _mm256_loadu_ps(x + i), a0); \
        float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));     \
        for (; i < n; i++) s += SCALAR(p + i * ESZ) * x[i];                                  \
        return s;                                                                            \
    }

#define DEFINE_AXPY(NAME, ESZ, LOAD8, SCALAR)                                                \
    DS_TARGET void NAME(float *y, float a, const void *w, int64_t n) {                       \
        const unsigned char *p = w;                                                          \
        __m256 va = _mm256_set1_ps(a);                                                       \
        int64_t i = 0;                                                                       \
        for (; i + 16 <= n; i += 16) {                                                       \
            __m256 y0 = _mm256_fmadd_ps(va, LOAD8(p + i * ESZ), _mm256_loadu_ps(y + i));     \
            __m256 y1 = _mm256_fmadd_ps(va, LOAD8(p + (i + 8) * ESZ), _mm256_loadu_ps(y + i + 8)); \
            _mm256_storeu_ps(y + i, y0);                                                     \
            _mm256_storeu_ps(y + i + 8, y1);                                                 \
        }                                                                                    \
        for (; i + 8 <= n; i += 8)                                                           \
            _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, LOAD8(p + i * ESZ), _mm256_loadu_ps(y + i))); \
        for (; i < n; i++) y[i] += a * SCALAR(p + i * ESZ);                                  \
    }

#define DEFINE_CVT(NAME, ESZ, LOAD8, SCALAR)                                                 \
    DS_TARGET void NAME(float *out, const void *w, int64_t n) {                              \
        const unsigned char *p = w;                                                          \
        int64_t i = 0;                                                                       \
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, LOAD8(p + i * ESZ));            \
        for (; i < n; i++) out[i] = SCALAR(p + i * ESZ);                                     \
    }

DEFINE_DOT(dot_f32_avx2, 4, load8_f32, scalar_f32)
DEFINE_DOT(dot_bf16_avx2, 2, load8_bf16, scalar_bf16)
DEFINE_DOT(dot_f16_avx2, 2, load8_f16, scalar_f16)
DEFINE_AXPY(axpy_f32_avx2, 4, load8_f32, scalar_f32)
DEFINE_AXPY(axpy_bf16_avx2, 2, load8_bf16, scalar_bf16)
DEFINE_AXPY(axpy_f16_avx2, 2, load8_f16, scalar_f16)
DEFINE_CVT(cvt_bf16_avx2, 2, load8_bf16, scalar_bf16)
DEFINE_CVT(cvt_f16_avx2, 2, load8_f16, scalar_f16)

// ---- fp8 e4m3 with 128-column block scales -----------------------------------------------
// Each 128-column block sums unscaled products, then one FMA applies the block's scale.
DS_TARGET float dot_fp8_avx2(const void *w, const float *srow, const float *x, int64_t n) {
    const unsigned char *p = w;
    __m256 total = _mm256_setzero_ps();
    float tail = 0.0f;
    for (int64_t c0 = 0; c0 < n; c0 += 128) {
        int64_t len = n - c0 < 128 ? n - c0 : 128;
        const unsigned char *pb = p + c0;
        const float *xb = x + c0;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, v[4];
        int64_t i = 0;
        for (; i + 32 <= len; i += 32) {
            fp8_load32(pb + i, v);
            a0 = _mm256_fmadd_ps(v[0], _mm256_loadu_ps(xb + i), a0);
            a1 = _mm256_fmadd_ps(v[1], _mm256_loadu_ps(xb + i + 8), a1);
            a2 = _mm256_fmadd_ps(v[2], _mm256_loadu_ps(xb + i + 16), a2);
            a3 = _mm256_fmadd_ps(v[3], _mm256_loadu_ps(xb + i + 24), a3);
        }
        for (; i + 8 <= len; i += 8) a0 = _mm256_fmadd_ps(fp8_load8(pb + i), _mm256_loadu_ps(xb + i), a0);
        float s = 0.0f;
        for (; i < len; i++) s += kernels_fp8_lut[pb[i]] * xb[i];
        float sc = scale_at(srow, c0 / 128);
        __m256 blk = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
        total = _mm256_fmadd_ps(blk, _mm256_set1_ps(sc * FP8_F16_UNSCALE), total);
        tail += s * sc;
    }
    return hsum_ps(total) + tail;
}

DS_TARGET void axpy_fp8_avx2(float *y, float a, const void *w, const float *srow, int64_t n) {
    const unsigned char *p = w;
    for (int64_t c0 = 0; c0 < n; c0 += 128) {
        int64_t len = n - c0 < 128 ? n - c0 : 128;
        const unsigned char *pb = p + c0;
        float *yb = y + c0;
        float coef = a * scale_at(srow, c0 / 128);
        __m256 va = _mm256_set1_ps(coef * FP8_F16_UNSCALE), lo, hi;
        int64_t i = 0;
        for (; i + 16 <= len; i += 16) {
            fp8_load16(pb + i, &lo, &hi);
            _mm256_storeu_ps(yb + i, _mm256_fmadd_ps(va, lo, _mm256_loadu_ps(yb + i)));
            _mm256_storeu_ps(yb + i + 8, _mm256_fmadd_ps(va, hi, _mm256_loadu_ps(yb + i + 8)));
        }
        for (; i + 8 <= len; i += 8)
            _mm256_storeu_ps(yb + i, _mm256_fmadd_ps(va, fp8_load8(pb + i), _mm256_loadu_ps(yb + i)));
        for (; i < len; i++) yb[i] += coef * kernels_fp8_lut[pb[i]];
    }
}

DS_TARGET void cvt_fp8_avx2(float *out, const void *w, const float *srow, int64_t n) {
    const unsigned char *p = w;
    for (int64_t c0 = 0; c0 < n; c0 += 128) {
        int64_t len = n - c0 < 128 ? n - c0 : 128;
        const unsigned char *pb = p + c0;
        float *ob = out + c0;
        float sc = scale_at(srow, c0 / 128);
        __m256 vs = _mm256_set1_ps(sc * FP8_F16_UNSCALE), lo, hi;
        int64_t i = 0;
        for (; i + 16 <= len; i += 16) {
            fp8_load16(pb + i, &lo, &hi);
            _mm256_storeu_ps(ob + i, _mm256_mul_ps(lo, vs));
            _mm256_storeu_ps(ob + i + 8, _mm256_mul_ps(hi, vs));
        }
        for (; i + 8 <= len; i += 8) _mm256_storeu_ps(ob + i, _mm256_mul_ps(fp8_load8(pb + i), vs));
        for (; i < len; i++) ob[i] = kernels_fp8_lut[pb[i]] * sc;
    }
}

// ---- exp --------------------------------------------------------------------------------
// exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 (two-part ln 2), exp(r) by a
// degree-6 minimax polynomial on |r| <= ln2/2: about 1 ulp over the float range. Inputs below
// -87.3 give 0 (they would be denormal), which softmax and cross-entropy want.
DS_TARGET static inline __m256 exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.33654f), hi = _mm256_set1_ps(88.37626f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(_mm256_min_ps(x, hi), lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 r2 = _mm256_mul_ps(r, r);
    p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

DS_TARGET double exp_sum_f32_avx2(float *out, const float *in, int64_t n, float shift) {
    __m256 vs = _mm256_set1_ps(shift), acc = _mm256_setzero_ps();
    double total = 0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(in + i), vs));
        _mm256_storeu_ps(out + i, e);
        acc = _mm256_add_ps(acc, e);
        if ((i & 1023) == 1016) { total += hsum_ps(acc); acc = _mm256_setzero_ps(); } // bound float error
    }
    total += hsum_ps(acc);
    if (i < n) {
        float tail_in[8] = {0}, tail_out[8];
        int m = (int)(n - i);
        for (int k = 0; k < 8; k++) tail_in[k] = k < m ? in[i + k] - shift : -INFINITY;
        _mm256_storeu_ps(tail_out, exp8(_mm256_loadu_ps(tail_in)));
        for (int k = 0; k < m; k++) { out[i + k] = tail_out[k]; total += tail_out[k]; }
    }
    return total;
}

// ---- attention over cached rows --------------------------------------------------------
// Four rows per pass share each load of q; the four sums are reduced together (two hadds and
// one 128-bit add instead of four horizontal sums).
DS_TARGET void attn_scores_f32_avx2(float *sc, const float *q, const float *rows, int64_t stride, int64_t n_rows,
                                    int64_t dim, float scale, int acc) {
    int64_t j = 0;
    for (; j + 4 <= n_rows; j += 4) {
        const float *r0 = rows + j * stride, *r1 = r0 + stride, *r2 = r1 + stride, *r3 = r2 + stride;
        // two accumulators per row: eight independent chains, so the loop is not bound by the
        // FMA latency (one chain per row would allow one FMA per 4 cycles per row)
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        int64_t k = 0;
        for (; k + 16 <= dim; k += 16) {
            __m256 vq = _mm256_loadu_ps(q + k), wq = _mm256_loadu_ps(q + k + 8);
            a0 = _mm256_fmadd_ps(vq, _mm256_loadu_ps(r0 + k), a0);
            a1 = _mm256_fmadd_ps(vq, _mm256_loadu_ps(r1 + k), a1);
            a2 = _mm256_fmadd_ps(vq, _mm256_loadu_ps(r2 + k), a2);
            a3 = _mm256_fmadd_ps(vq, _mm256_loadu_ps(r3 + k), a3);
            b0 = _mm256_fmadd_ps(wq, _mm256_loadu_ps(r0 + k + 8), b0);
            b1 = _mm256_fmadd_ps(wq, _mm256_loadu_ps(r1 + k + 8), b1);
            b2 = _mm256_fmadd_ps(wq, _mm256_loadu_ps(r2 + k + 8), b2);
            b3 = _mm256_fmadd_ps(wq, _mm256_loadu_ps(r3 + k + 8), b3);
        }
        for (; k + 8 <= dim; k += 8) {
            __m256 vq = _mm256_loadu_ps(q + k);
            a0 = _mm256_fmadd_ps(vq, _mm256_loadu_ps(r0 + k), a0);
            a1 = _mm256_fmadd_ps(vq, _mm256_loadu_ps(r1 + k), a1);
            a2 = _mm256_fmadd_ps(vq, _mm256_loadu_ps(r2 + k), a2);
            a3 = _mm256_fmadd_ps(vq, _mm256_loadu_ps(r3 + k), a3);
        }
        a0 = _mm256_add_ps(a0, b0);
        a1 = _mm256_add_ps(a1, b1);
        a2 = _mm256_add_ps(a2, b2);
        a3 = _mm256_add_ps(a3, b3);
        __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
        float s[4];
        _mm_storeu_ps(s, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
        for (; k < dim; k++) {
            s[0] += q[k] * r0[k];
            s[1] += q[k] * r1[k];
            s[2] += q[k] * r2[k];
            s[3] += q[k] * r3[k];
        }
        for (int t = 0; t < 4; t++) sc[j + t] = acc ? sc[j + t] + scale * s[t] : scale * s[t];
    }
    for (; j < n_rows; j++) {
        float s = dot_f32_avx2(rows + j * stride, q, dim);
        sc[j] = acc ? sc[j] + scale * s : scale * s;
    }
}

// out = sum_j p[j] rows[j][0:dim], 64 columns at a time held in eight accumulators across
// all rows (a row-by-row axpy would load and store out for every row).
DS_TARGET void attn_wsum_f32_avx2(float *out, const float *p, const float *rows, int64_t stride, int64_t n_rows,
                                  int64_t dim, int acc) {
    int64_t c = 0;
    for (; c + 64 <= dim; c += 64) {
        __m256 a[8];
        for (int t = 0; t < 8; t++) a[t] = acc ? _mm256_loadu_ps(out + c + 8 * t) : _mm256_setzero_ps();
        for (int64_t j = 0; j < n_rows; j++) {
            const float *r = rows + j * stride + c;
            __m256 vp = _mm256_set1_ps(p[j]);
            for (int t = 0; t < 8; t++) a[t] = _mm256_fmadd_ps(vp, _mm256_loadu_ps(r + 8 * t), a[t]);
        }
        for (int t = 0; t < 8; t++) _mm256_storeu_ps(out + c + 8 * t, a[t]);
    }
    for (; c + 8 <= dim; c += 8) {
        __m256 a0 = acc ? _mm256_loadu_ps(out + c) : _mm256_setzero_ps();
        for (int64_t j = 0; j < n_rows; j++) a0 = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), _mm256_loadu_ps(rows + j * stride + c), a0);
        _mm256_storeu_ps(out + c, a0);
    }
    for (; c < dim; c++) {
        float s = acc ? out[c] : 0.0f;
        for (int64_t j = 0; j < n_rows; j++) s += p[j] * rows[j * stride + c];
        out[c] = s;
    }
}

// The four horizontal sums of a, b, c, d in one vector.
DS_TARGET static inline __m128 hsum4_ps(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// Tiles of 4 heads x 2 rows: per 8 columns 2 row loads and 4 query loads feed 8 FMAs, so the
// loop is bound by the FMA ports, not by loads (one head at a time against 4 rows needs 10
// loads per 8 FMAs), and each block of rows is read once per 4 heads instead of per head:
// the rows and all heads' queries together overflow L1, and the rows then come from L2.
// A partial tile (the last heads or an odd last row) repeats a pointer and drops the extra
// sums, so every score is summed in the same order whatever the head range: the decode
// splits heads over threads, and 1 and 2 threads must give the same logits.
DS_TARGET void attn_scores_heads_f32_avx2(float *sc, int64_t sc_stride, const float *q, int64_t q_stride, int nh,
                                          const float *rows, int64_t stride, int64_t n_rows, int64_t dim, float scale) {
    int64_t dv = dim & ~(int64_t)7;
    for (int k0 = 0; k0 < nh; k0 += 4) {
        int kn = nh - k0 < 4 ? nh - k0 : 4;
        const float *qk[4];
        for (int t = 0; t < 4; t++) qk[t] = q + (int64_t)(k0 + (t < kn ? t : 0)) * q_stride;
        for (int64_t j = 0; j < n_rows; j += 2) {
            int jn = n_rows - j < 2 ? 1 : 2;
            const float *r0 = rows + j * stride, *r1 = jn == 2 ? r0 + stride : r0;
            __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00,
                   a31 = a00;
            for (int64_t c = 0; c < dv; c += 8) {
                __m256 x0 = _mm256_loadu_ps(r0 + c), x1 = _mm256_loadu_ps(r1 + c), w;
                w = _mm256_loadu_ps(qk[0] + c);
                a00 = _mm256_fmadd_ps(w, x0, a00);
                a01 = _mm256_fmadd_ps(w, x1, a01);
                w = _mm256_loadu_ps(qk[1] + c);
                a10 = _mm256_fmadd_ps(w, x0, a10);
                a11 = _mm256_fmadd_ps(w, x1, a11);
                w = _mm256_loadu_ps(qk[2] + c);
                a20 = _mm256_fmadd_ps(w, x0, a20);
                a21 = _mm256_fmadd_ps(w, x1, a21);
                w = _mm256_loadu_ps(qk[3] + c);
                a30 = _mm256_fmadd_ps(w, x0, a30);
                a31 = _mm256_fmadd_ps(w, x1, a31);
            }
            float s[2][4];
            _mm_storeu_ps(s[0], hsum4_ps(a00, a10, a20, a30)); // row j, heads k0..k0+3
            _mm_storeu_ps(s[1], hsum4_ps(a01, a11, a21, a31)); // row j + 1
            for (int t = 0; t < kn; t++)
                for (int i = 0; i < jn; i++) {
                    const float *r = i ? r1 : r0;
                    for (int64_t c = dv; c < dim; c++) s[i][t] += qk[t][c] * r[c];
                    sc[(k0 + t) * sc_stride + j + i] = scale * s[i][t];
                }
        }
    }
}

// Tiles of 4 heads x 16 columns: per row 2 row loads and 4 broadcast weights feed 8 FMAs, and
// the block's rows are read once per 4 heads (see the scores above). Every output is an FMA
// chain over the rows in order, as in attn_wsum_f32_avx2, which the last heads use: the same
// sums whatever the head range.
DS_TARGET void attn_wsum_heads_f32_avx2(float *out, int64_t out_stride, const float *p, int64_t p_stride, int nh,
                                        const float *rows, int64_t stride, int64_t n_rows, int64_t dim, int acc) {
    int k0 = 0;
    int64_t d16 = dim & ~(int64_t)15;
    for (; k0 + 4 <= nh; k0 += 4) {
        float *o0 = out + k0 * out_stride;
        const float *p0 = p + k0 * p_stride, *p1 = p0 + p_stride, *p2 = p1 + p_stride, *p3 = p2 + p_stride;
        for (int64_t c = 0; c < d16; c += 16) {
            __m256 a00, a01, a10, a11, a20, a21, a30, a31;
            if (acc) {
                a00 = _mm256_loadu_ps(o0 + c), a01 = _mm256_loadu_ps(o0 + c + 8);
                a10 = _mm256_loadu_ps(o0 + out_stride + c), a11 = _mm256_loadu_ps(o0 + out_stride + c + 8);
                a20 = _mm256_loadu_ps(o0 + 2 * out_stride + c), a21 = _mm256_loadu_ps(o0 + 2 * out_stride + c + 8);
                a30 = _mm256_loadu_ps(o0 + 3 * out_stride + c), a31 = _mm256_loadu_ps(o0 + 3 * out_stride + c + 8);
            } else {
                a00 = a01 = a10 = a11 = a20 = a21 = a30 = a31 = _mm256_setzero_ps();
            }
            for (int64_t j = 0; j < n_rows; j++) {
                const float *r = rows + j * stride + c;
                __m256 x0 = _mm256_loadu_ps(r), x1 = _mm256_loadu_ps(r + 8), w;
                w = _mm256_broadcast_ss(p0 + j);
                a00 = _mm256_fmadd_ps(w, x0, a00);
                a01 = _mm256_fmadd_ps(w, x1, a01);
                w = _mm256_broadcast_ss(p1 + j);
                a10 = _mm256_fmadd_ps(w, x0, a10);
                a11 = _mm256_fmadd_ps(w, x1, a11);
                w = _mm256_broadcast_ss(p2 + j);
                a20 = _mm256_fmadd_ps(w, x0, a20);
                a21 = _mm256_fmadd_ps(w, x1, a21);
                w = _mm256_broadcast_ss(p3 + j);
                a30 = _mm256_fmadd_ps(w, x0, a30);
                a31 = _mm256_fmadd_ps(w, x1, a31);
            }
            _mm256_storeu_ps(o0 + c, a00), _mm256_storeu_ps(o0 + c + 8, a01);
            _mm256_storeu_ps(o0 + out_stride + c, a10), _mm256_storeu_ps(o0 + out_stride + c + 8, a11);
            _mm256_storeu_ps(o0 + 2 * out_stride + c, a20), _mm256_storeu_ps(o0 + 2 * out_stride + c + 8, a21);
            _mm256_storeu_ps(o0 + 3 * out_stride + c, a30), _mm256_storeu_ps(o0 + 3 * out_stride + c + 8, a31);
        }
        int64_t c8 = d16;
        // an 8-column remainder and a scalar tail summed as attn_wsum_f32_avx2 sums them
        for (; c8 + 8 <= dim; c8 += 8)
            for (int t = 0; t < 4; t++) {
                float *o = o0 + t * out_stride + c8;
                __m256 a0 = acc ? _mm256_loadu_ps(o) : _mm256_setzero_ps();
                for (int64_t j = 0; j < n_rows; j++)
                    a0 = _mm256_fmadd_ps(_mm256_set1_ps(p[(k0 + t) * p_stride + j]), _mm256_loadu_ps(rows + j * stride + c8), a0);
                _mm256_storeu_ps(o, a0);
            }
        for (int t = 0; t < 4; t++)
            for (int64_t c = c8; c < dim; c++) {
                float s = acc ? o0[t * out_stride + c] : 0.0f;
                for (int64_t j = 0; j < n_rows; j++) s += p[(k0 + t) * p_stride + j] * rows[j * stride + c];
                o0[t * out_stride + c] = s;
            }
    }
    for (; k0 < nh; k0++) attn_wsum_f32_avx2(out + k0 * out_stride, p + k0 * p_stride, rows, stride, n_rows, dim, acc);
}

DS_TARGET float max_f32_avx2(const float *x, int64_t n) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    float t[8], r = -INFINITY;
    _mm256_storeu_ps(t, m);
    for (int k = 0; k < 8; k++) r = t[k] > r ? t[k] : r;
    for (; i < n; i++) r = x[i] > r ? x[i] : r;
    return r;
}

// ---- Q8_0 / Q4_0 against quantized activations ---------------------------------------------
// maddubs multiplies unsigned by signed bytes, so |x| goes in the unsigned operand and w
// takes x's sign; the int16 pair sums cannot overflow (2 * 127 * 128 < 32768).
DS_TARGET static inline __m256 block_dot(__m256i w, __m256i x) {
    __m256i ax = _mm256_sign_epi8(x, x), sw = _mm256_sign_epi8(w, x);
    __m256i s16 = _mm256_maddubs_epi16(ax, sw);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(s16, _mm256_set1_epi16(1)));
}

DS_TARGET static inline float f16_scale(const unsigned char *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

// Prefetch distance of the Q8_0 and Q4_0 dots, as for Q4_0X8 below (1-thread cold matvec
// ~16 -> ~19 GB/s). The f32 / bf16 loops gained nothing from it (within noise): none there.
enum { QROW_PREFETCH = 2048 };

DS_TARGET float dot_q8_0_avx2(const void *w, const act_q8 *x, int64_t nb) {
    const unsigned char *p = w;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2, p += 68) {
        _mm_prefetch((const char *)p + QROW_PREFETCH, _MM_HINT_T0);
        _mm_prefetch((const char *)p + QROW_PREFETCH + 64, _MM_HINT_T0);
        __m256 d0 = _mm256_set1_ps(f16_scale(p) * x[b].d), d1 = _mm256_set1_ps(f16_scale(p + 34) * x[b + 1].d);
        __m256 s0 = block_dot(_mm256_loadu_si256((const __m256i *)(p + 2)), _mm256_loadu_si256((const __m256i *)x[b].q));
        __m256 s1 = block_dot(_mm256_loadu_si256((const __m256i *)(p + 36)),
                              _mm256_loadu_si256((const __m256i *)x[b + 1].q));
        acc0 = _mm256_fmadd_ps(d0, s0, acc0);
        acc1 = _mm256_fmadd_ps(d1, s1, acc1);
    }
    for (; b < nb; b++, p += 34)
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(f16_scale(p) * x[b].d),
                               block_dot(_mm256_loadu_si256((const __m256i *)(p + 2)),
                                         _mm256_loadu_si256((const __m256i *)x[b].q)), acc0);
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

// Two blocks per iteration into two accumulators: the per-block convert + FMA chains are
// latency-bound otherwise.
DS_TARGET static inline __m256i q4_unpack(const unsigned char *p) {
    __m128i raw = _mm_loadu_si128((const __m128i *)(p + 2));
    __m128i lo = _mm_and_si128(raw, _mm_set1_epi8(15)), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(15));
    return _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8)); // values 0..15, 16..31
}

// sum_j (n_j - 8) q_j = sum_j n_j q_j - 8 sum_j q_j: the unsigned nibbles go straight into
// maddubs (no sign juggling) and the second term comes precomputed with the activations.
DS_TARGET static inline __m256i q4_unpack_u(const unsigned char *p) {
    __m128i raw = _mm_loadu_si128((const __m128i *)(p + 2));
    __m128i lo = _mm_and_si128(raw, _mm_set1_epi8(15)), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(15));
    return _mm256_set_m128i(hi, lo);
}

DS_TARGET static inline __m256 q4_block(const unsigned char *p, const int8_t *q) {
    __m256i s16 = _mm256_maddubs_epi16(q4_unpack_u(p), _mm256_loadu_si256((const __m256i *)q));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(s16, _mm256_set1_epi16(1)));
}

DS_TARGET float dot_q4_0_avx2(const void *w, const act_q8 *x, int64_t nb) {
    const unsigned char *p = w;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float corr = 0.0f;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2, p += 36) {
        _mm_prefetch((const char *)p + QROW_PREFETCH, _MM_HINT_T0);
        float d0 = f16_scale(p), d1 = f16_scale(p + 18);
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(d0 * x[b].d), q4_block(p, x[b].q), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(d1 * x[b + 1].d), q4_block(p + 18, x[b + 1].q), acc1);
        corr += d0 * x[b].s8 + d1 * x[b + 1].s8;
    }
    for (; b < nb; b++, p += 18) {
        float d0 = f16_scale(p);
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(d0 * x[b].d), q4_block(p, x[b].q), acc0);
        corr += d0 * x[b].s8;
    }
    return hsum_ps(_mm256_add_ps(acc0, acc1)) - corr;
}

// One core alone does not keep enough cache misses in flight to stream at memory speed
// while it also computes: the hardware prefetcher stays too close. Prefetching 16 blocks
// (2.3 KB) ahead took the 1-thread cold matvec from ~16 to ~19-20 GB/s (bench_matvec, 4096
// x 4096; the plain read loop: ~20). Past a row group's end it reads the next group, which is
// where this thread goes next (rows are split in contiguous ranges); past the matrix, prefetch
// never faults.
enum { Q4X8_PREFETCH = 16 * 144 };

// Eight rows at once on the regrouped layout: after maddubs + madd, 32-bit lane j holds row
// j's sum over 4 columns, so the 8 chunks of a block add up vertically (no horizontal sums)
// and one vcvtph2ps converts the 8 rows' scales. Two column groups per 256-bit load: the low
// nibbles of groups 2j | 2j+1 are rows 0-3 of each, the high nibbles rows 4-7, each against
// its group's four activations (dword 2j | 2j+1 of the block, spread by one permute); the
// halves meet once per block. (One group per 128-bit load, widened with vinserti128 and an
// activation broadcast per group, took ~70 uops a block and ran compute-bound at ~22 GB/s.)
DS_TARGET void dot8_q4_0x8_avx2(const void *grp, const act_q8 *x, int64_t nb, float *out) {
    const unsigned char *p = grp;
    const __m256i m15 = _mm256_set1_epi8(15);
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i sel0 = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1), sel1 = _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3);
    const __m256i sel2 = _mm256_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5), sel3 = _mm256_setr_epi32(6, 6, 6, 6, 7, 7, 7, 7);
    __m256 acc = _mm256_setzero_ps(), corr = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, p += 144) {
        _mm_prefetch((const char *)p + Q4X8_PREFETCH, _MM_HINT_T0);
        _mm_prefetch((const char *)p + Q4X8_PREFETCH + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)p + Q4X8_PREFETCH + 128, _MM_HINT_T0);
        __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
        __m256i xq = _mm256_loadu_si256((const __m256i *)x[b].q);
        // Each maddubs lane is two nibble * int8 products, |.| <= 2 * 15 * 128 = 3840: four per
        // half (15360), then the two halves (30720) stay in int16; widened once per block.
        __m256i r0 = _mm256_loadu_si256((const __m256i *)(p + 16)), r1 = _mm256_loadu_si256((const __m256i *)(p + 48));
        __m256i r2 = _mm256_loadu_si256((const __m256i *)(p + 80)), r3 = _mm256_loadu_si256((const __m256i *)(p + 112));
        __m256i x0 = _mm256_permutevar8x32_epi32(xq, sel0), x1 = _mm256_permutevar8x32_epi32(xq, sel1);
        __m256i x2 = _mm256_permutevar8x32_epi32(xq, sel2), x3 = _mm256_permutevar8x32_epi32(xq, sel3);
        __m256i lo = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_and_si256(r0, m15), x0),
                                      _mm256_maddubs_epi16(_mm256_and_si256(r1, m15), x1));
        __m256i hi = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(r0, 4), m15), x0),
                                      _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(r1, 4), m15), x1));
        lo = _mm256_add_epi16(lo, _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_and_si256(r2, m15), x2),
                                                   _mm256_maddubs_epi16(_mm256_and_si256(r3, m15), x3)));
        hi = _mm256_add_epi16(hi, _mm256_add_epi16(
                                      _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(r2, 4), m15), x2),
                                      _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(r3, 4), m15), x3)));
        // rows 0-3 of the even | odd groups and rows 4-7 likewise -> rows 0-3 | rows 4-7
        __m256i s16 = _mm256_add_epi16(_mm256_permute2x128_si256(lo, hi, 0x20), _mm256_permute2x128_si256(lo, hi, 0x31));
        __m256i isum = _mm256_madd_epi16(s16, ones);
        acc = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(x[b].d)), _mm256_cvtepi32_ps(isum), acc);
        corr = _mm256_fmadd_ps(dw, _mm256_set1_ps(x[b].s8), corr);
    }
    _mm256_storeu_ps(out, _mm256_sub_ps(acc, corr));
}

// Dequantization into f32 (prefill tiles for sgemm, the absorbed attention's per-head rows):
// nb blocks of 32 values.
DS_TARGET void cvt_q8_0_avx2(float *out, const void *w, int64_t nb) {
    const unsigned char *p = w;
    for (int64_t b = 0; b < nb; b++, p += 34, out += 32) {
        __m256 d = _mm256_set1_ps(f16_scale(p));
        for (int k = 0; k < 4; k++) {
            __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p + 2 + 8 * k)));
            _mm256_storeu_ps(out + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(v)));
        }
    }
}

DS_TARGET void cvt_q4_0_avx2(float *out, const void *w, int64_t nb) {
    const unsigned char *p = w;
    for (int64_t b = 0; b < nb; b++, p += 18, out += 32) {
        __m256 d = _mm256_set1_ps(f16_scale(p));
        __m256i q = q4_unpack(p); // 32 int8 in value order
        __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
        __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
        for (int k = 0; k < 4; k++)
            _mm256_storeu_ps(out + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(parts[k]))));
    }
}

// The nb blocks of one Q4_0X8 row group (8 rows interleaved, ds_q4_0_to_x8) to f32:
// row k of the group goes to out + k * ld. In each block, bytes 16 + 16 g + 4 (lane % 4) + c
// hold column 4 g + c of lane (low nibble for lanes 0-3, high for 4-7): eight bytes give
// four columns of two lanes, scaled by those lanes' d.
DS_TARGET void cvt8_q4_0x8_avx2(float *out, int64_t ld, const void *grp, int64_t nb) {
    const unsigned char *p = grp;
    const __m128i m4 = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
    const __m256i pair_idx[4] = {_mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1), _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3),
                                 _mm256_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5), _mm256_setr_epi32(6, 6, 6, 6, 7, 7, 7, 7)};
    for (int64_t b = 0; b < nb; b++, p += 144) {
        __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
        __m256 dp[4];
        for (int k = 0; k < 4; k++) dp[k] = _mm256_permutevar8x32_ps(d, pair_idx[k]);
        float *o = out + b * 32;
        for (int g = 0; g < 8; g++) {
            __m128i q = _mm_loadu_si128((const __m128i *)(p + 16 + 16 * g));
            __m128i lo = _mm_sub_epi8(_mm_and_si128(q, m4), eight);
            __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), m4), eight);
            __m128i src[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
            for (int k = 0; k < 4; k++) { // lanes 2k and 2k+1
                __m256 v = _mm256_mul_ps(dp[k], _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(src[k])));
                _mm_storeu_ps(o + (2 * k) * ld + 4 * g, _mm256_castps256_ps128(v));
                _mm_storeu_ps(o + (2 * k + 1) * ld + 4 * g, _mm256_extractf128_ps(v, 1));
            }
        }
    }
}

DS_TARGET void act_quantize_avx2(const float *x, act_q8 *y, int64_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / 32; b++, x += 32, y++) {
        __m256 v[4], m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + 8 * k);
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[k]));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        y->d = amax / 127.0f;
        __m256 id = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
        __m256i q[4];
        for (int k = 0; k < 4; k++) // round to nearest even, as lrintf does
            q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], id));
        // pack 32 int32 -> 32 int8; the packs interleave 128-bit lanes, the permute undoes it
        __m256i p16a = _mm256_packs_epi32(q[0], q[1]), p16b = _mm256_packs_epi32(q[2], q[3]);
        __m256i p8 = _mm256_packs_epi16(p16a, p16b);
        p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)y->q, p8);
        // sum of the 32 int8: sad against zero sums |.| only, so widen and add instead
        __m256i s32 = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
        y->s8 = 8.0f * y->d * (float)_mm_cvtsi128_si32(t);
    }
}
#endif // DS_HAVE_AVX2_KERNELS
