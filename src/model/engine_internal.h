// Engine internals shared by engine.c (planning, top level), mla.c and moe.c.
#pragma once
#include "kernels/kernels.h"
#include "model/engine.h"

// Absorbed attention scores at most this many heads per pass over the cache (the scratch
// holds a score row per head).
#define ENG_ATTN_HEADS 16

// MoE batches of at most this many tokens run one expert per thread (moe.c); below
// DS_GEMM_MIN_N, so every expert matmul is a row-wise product.
#define ENG_MOE_PAR_TOKENS (DS_GEMM_MIN_N - 1)
// Rows per work unit of the expert-parallel phases (a multiple of 8 for Q4_0X8).
#define ENG_MOE_ROWS 64

// Per-head score rows of absorbed attention: max_ctx rounded up to 16 floats plus 16, so
// that rows of successive heads do not sit a power of two apart (4K aliasing in L1).
static inline int64_t eng_score_stride(int64_t max_ctx) { return ((max_ctx + 15) & ~(int64_t)15) + 16; }

// One expert (routed or shared) of a decode-sized MoE layer run by all threads (moe.c).
typedef struct {
    const ds_tensor *gate, *up, *down;
    const float *x;     // (ne, D) input rows
    float *y;           // (ne, D) output rows
    int ne;
    float *xq, *g, *u, *hq; // scratch: quantized x, gate and up outputs (ne, width), quantized hidden
} eng_moe_task;

// Tokens of one sequence within the current batch.
typedef struct {
    int seq;        // slot
    int start;      // cache length before this call
    int n;          // new tokens
    int *tok;       // indices into the batch (n)
} eng_seq_group;

struct ds_engine {
    const ds_model *m;
    ds_engine_limits lim;
    int n_threads;
    int n_cache_layers;  // L + has_mtp
    int64_t lat_dim;     // dc + dr values cached per token per layer
    int attn_row_block;  // cache rows per block of absorbed attention (~16 KiB, stays in L1)
    int64_t attn_score_stride; // floats between heads' score rows: max_ctx padded off a power of 2
    float softmax_scale;
    float rope_mscale;   // cos/sin multiplier
    float *inv_freq;     // (dr/2)

    // latent cache: [layer][slot][pos][dc+dr]; normalised latent then rotated k_pe
    float *cache;
    int *seq_len;        // (max_seqs) main model positions cached
    int *mtp_len;        // (max_seqs)

    // activations, N = max_tokens rows
    float *x;            // (N, D) residual stream
    float *xn;           // (N, D) normalised input of a sub-block
    float *hidden;       // (N, D) final hidden after model.norm
    float *out;          // (N, D) sub-block output
    float *qa;           // (N, dq)
    float *q;            // (N, H*(dn+dr))
    float *kva;          // (N, dc+dr)
    float *att;          // (N, H*dv)
    float *ffn_g;        // (N, F) F = max(I, S*MI, MI)
    float *ffn_u;        // (N, F)
    float *xe;           // (N, D) tokens gathered for one expert
    float *ye;           // (N, D)
    float *cat;          // (N, 2D) MTP input
    float *logit_rows;   // (max_logits, D) hidden rows gathered for lm_head
    float *router;       // (N, E) router logits, then scores
    int *topk_idx;       // (N, K)
    float *topk_w;       // (N, K)
    int *exp_count;      // (E)
    int *exp_start;      // (E+1)
    int *exp_tok;        // (N*K) token of each (expert, slot) pair, grouped by expert
    float *exp_w;        // (N*K)

    // scratch
    float *gemm_work;    // DS_GEMM_TILE_ROWS * max in-dim
    float *kv_t;         // (H*(dn+dv), ctx) naive attention: K_nope^T | V^T per head, ctx = positions so far
    float *kv_b_f32;     // (H*(dn+dv), dc) kv_b_proj in f32 for that GEMM
    float *lat_rows;     // (max_ctx, dc) contiguous latents for the naive decompression
    float *thread_scratch; // n_threads * thread_scratch_stride (mla.c)
    int64_t thread_scratch_stride;
    // expert-parallel decode (moe.c); NULL for dense models or one thread
    float *moe_scratch;  // one block of moe_scratch_stride floats per task (P*K + 1 tasks)
    int64_t moe_scratch_stride, moe_width;
    float *moe_ye;       // (P * K, D) routed outputs per (expert, slot), P = ENG_MOE_PAR_TOKENS
    eng_moe_task *moe_tasks; // (P * K + 1)
    int *moe_unit1, *moe_unit3; // (P * K + 2) first row-block unit of each task, phases 1 and 3

    // batch bookkeeping
    eng_seq_group *groups;
    int n_groups;
    int *group_tok;      // (N)

    void *slab;          // every float/int buffer above lives here
};

// Sub-blocks; xn (N, D) in, e->out (N, D) out. `layer` indexes the cache (L = MTP).
void mla_forward(ds_engine *e, const ds_block *b, int layer, const ds_batch *batch);
void ffn_forward(ds_engine *e, const ds_block *b, int n);

static inline float *eng_cache_row(const ds_engine *e, int layer, int seq, int pos) {
    return e->cache + (((int64_t)layer * e->lim.max_seqs + seq) * e->lim.max_ctx + pos) * e->lat_dim;
}

// Every matmul of the forward pass that sees tokens of several sequences goes through here.
static inline void eng_matmul(const ds_engine *e, float *out, const float *inp, const ds_tensor *w, int n) {
    if (e->lim.row_exact) matmul_forward_rowwise(out, inp, w, n, e->gemm_work);
    else matmul_forward(out, inp, w, n, e->gemm_work);
}
