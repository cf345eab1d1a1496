// The forward pass over a flat batch of tokens from one or more sequences, with each
// sequence's latent cache. All buffers are planned from the config and limits and
// allocated once at creation (ds_engine_plan reports them).
#pragma once
#include <stdint.h>
#include "model/model.h"

typedef enum {
    DS_ATTN_AUTO = 0,  // per sequence, whichever form needs fewer FLOPs for this call
    DS_ATTN_NAIVE,     // decompress K and V from the cached latents (prefill)
    DS_ATTN_ABSORBED,  // attend over the latents directly (decode)
} ds_attn_mode;

typedef struct {
    int max_tokens;    // tokens in one forward call (N)
    int max_seqs;      // sequences with a cache (slots 0..max_seqs-1)
    int max_ctx;       // positions per sequence (<= max_position_embeddings)
    int max_logits;    // rows of logits one call may return (<= max_tokens)
    ds_attn_mode attn;
    // 1: every matmul runs row-wise (matmul_forward_rowwise), so a token's logits do not depend
    // on the other tokens in the batch; batched serving needs a request's greedy output to be the
    // same alone or among others. Costs prefill speed (no GEMM).
    int row_exact;
} ds_engine_limits;

// Byte sizes of what the engine allocates for a config, limits and thread count.
typedef struct {
    int64_t cache_bytes;        // latent caches of all slots (main + MTP layers)
    int64_t cache_bytes_per_token;
    int64_t activation_bytes;   // per-call activations
    int64_t scratch_bytes;      // per-thread attention scratch, GEMM tiles, naive K/V
    int64_t total_bytes;
} ds_engine_plan;

// A flat batch: token i belongs to sequence seq[i] at position pos[i]. A sequence's tokens
// appear in increasing position order and continue its cache (the first one at its current
// length). want_logits[i] != 0 asks for token i's logits (NULL: none).
typedef struct {
    int n;
    const int *token;
    const int *seq;
    const int *pos;
    const uint8_t *want_logits;
} ds_batch;

typedef struct ds_engine ds_engine;

void ds_engine_plan_memory(const ds_config *c, const ds_engine_limits *lim, int n_threads, ds_engine_plan *plan);
ds_status ds_engine_create(ds_engine **e, const ds_model *m, const ds_engine_limits *lim, ds_error *err);
void ds_engine_free(ds_engine *e);

// Runs the main model. Logits of the tokens with want_logits set are written to `logits`
// in batch order, (n_want, V). Caches of the sequences advance by their tokens.
ds_status ds_engine_forward(ds_engine *e, const ds_batch *b, float *logits, ds_error *err);
// Final hidden states (after model.norm) of the last ds_engine_forward call, (n, D).
const float *ds_engine_hidden(const ds_engine *e);
// Runs the MTP module: b->token[i] is the NEXT token t_{p+1} for main position p = b->pos[i]
// and hidden row i (D values) is the main model's final hidden state at p. Logits predict
// t_{p+2}. The MTP cache of each sequence advances like the main one.
ds_status ds_engine_forward_mtp(ds_engine *e, const ds_batch *b, const float *hidden, float *logits, ds_error *err);

// Routing of one token (shared with the trainer): router logits (E) -> chosen experts idx (K)
// and their weights w (K). scores, sel: (E) scratch. bias may be NULL. Serial.
void moe_route_topk(const ds_config *c, const float *bias, const float *logits, float *scores, float *sel, int *idx, float *w);

int ds_engine_seq_len(const ds_engine *e, int seq);
int ds_engine_seq_mtp_len(const ds_engine *e, int seq);
// Forgets positions >= len of a sequence (0 = reset) in the main and MTP caches.
void ds_engine_seq_truncate(ds_engine *e, int seq, int len);
