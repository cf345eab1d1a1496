#include "rl/rollout.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"

struct rollout {
    const ds_model *m;
    ds_engine *e;
    rollout_opts o;
    int max_seqs, max_prompt, max_tokens, V;
    sampler *smp;            // one per sequence: independent, reproducible streams
    float *logits;           // (max_tokens, V)
    int *tok, *seq, *pos;    // (max_tokens) batch scratch
    uint8_t *want;
    int *owner;              // (max_tokens) sequence of each logits row
};

static uint64_t mix64(uint64_t x) { // splitmix64 finaliser: decorrelates nearby seeds
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

ds_status rollout_create(rollout **out, const ds_model *m, int max_seqs, int max_prompt, const rollout_opts *o,
                         ds_error *err) {
    *out = NULL;
    if (max_seqs < 1 || max_prompt < 1 || o->max_new < 1 || o->prefill_chunk < 1)
        return ds_error_set(err, DS_ERR_ARG, "rollout: sequences, prompt length, max_new and chunk must be >= 1");
    int ctx = max_prompt + o->max_new;
    if (ctx > m->cfg.max_position_embeddings)
        return ds_error_set(err, DS_ERR_LIMIT, "prompt (%d) + max-new (%d) tokens exceed the model's %d positions",
                            max_prompt, o->max_new, m->cfg.max_position_embeddings);
    rollout *r = calloc(1, sizeof *r);
    if (!r) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    r->m = m;
    r->o = *o;
    r->max_seqs = max_seqs;
    r->max_prompt = max_prompt;
    r->max_tokens = o->prefill_chunk > max_seqs ? o->prefill_chunk : max_seqs;
    r->V = m->cfg.vocab_size;
    ds_engine_limits lim = {.max_tokens = r->max_tokens, .max_seqs = max_seqs, .max_ctx = ctx,
                            .max_logits = r->max_tokens, .attn = DS_ATTN_AUTO};
    ds_status st = ds_engine_create(&r->e, m, &lim, err);
    if (st) { free(r); return st; }
    r->smp = calloc((size_t)max_seqs, sizeof *r->smp);
    r->logits = malloc((size_t)r->max_tokens * (size_t)r->V * sizeof(float));
    r->tok = malloc((size_t)r->max_tokens * sizeof(int));
    r->seq = malloc((size_t)r->max_tokens * sizeof(int));
    r->pos = malloc((size_t)r->max_tokens * sizeof(int));
    r->owner = malloc((size_t)r->max_tokens * sizeof(int));
    r->want = malloc((size_t)r->max_tokens);
    if (!r->smp || !r->logits || !r->tok || !r->seq || !r->pos || !r->owner || !r->want) {
        rollout_free(r);
        return ds_error_set(err, DS_ERR_OOM, "out of memory for %d sequences", max_seqs);
    }
    for (int k = 0; k < max_seqs; k++) {
        st = sampler_init(&r->smp[k], &o->sp, r->V, err);
        if (st) { rollout_free(r); return st; }
    }
    *out = r;
    return DS_OK;
}

void rollout_free(rollout *r) {
    if (!r) return;
    ds_engine_free(r->e);
    if (r->smp)
        for (int k = 0; k < r->max_seqs; k++) sampler_free(&r->smp[k]);
    free(r->smp); free(r->logits); free(r->tok); free(r->seq); free(r->pos); free(r->owner); free(r->want);
    free(r);
}

void rollout_result_free(rollout_result *res) {
    free(res->tokens); free(res->len); free(res->stopped); free(res->entropy);
    memset(res, 0, sizeof *res);
}

static int is_stop(const rollout_opts *o, int id) {
    for (int i = 0; i < o->n_stop; i++)
        if (o->stop_ids[i] == id) return 1;
    return 0;
}

// Records the token sampled from `logits` for sequence k; returns 1 when the completion is finished.
static int rollout_take(rollout *r, rollout_result *res, int k, const float *logits) {
    int id = sampler_sample(&r->smp[k], logits);
    if (res->entropy) res->entropy[(int64_t)k * res->max_new + res->len[k]] = softmax_entropy_f32(logits, r->V);
    res->tokens[(int64_t)k * res->max_new + res->len[k]++] = id;
    res->generated++;
    if (is_stop(&r->o, id)) { res->stopped[k] = 1; return 1; }
    return res->len[k] >= res->max_new;
}

ds_status rollout_run(rollout *r, const int *const *ids, const int *lens, int n_prompts, int n_samples,
                      uint64_t seed_offset, rollout_result *res, void (*progress)(void *ctx, int64_t done),
                      void *progress_ctx, volatile int *cancel, ds_error *err) {
    memset(res, 0, sizeof *res);
    int n = n_prompts * n_samples, V = r->V;
    if (n_prompts < 1 || n_samples < 1 || n > r->max_seqs)
        return ds_error_set(err, DS_ERR_ARG, "rollout: %d prompts x %d samples exceed the %d planned sequences",
                            n_prompts, n_samples, r->max_seqs);
    for (int p = 0; p < n_prompts; p++)
        if (lens[p] < 1 || lens[p] > r->max_prompt)
            return ds_error_set(err, DS_ERR_LIMIT, "rollout: prompt %d has %d tokens (limit %d)", p, lens[p],
                                r->max_prompt);
    res->n = n;
    res->max_new = r->o.max_new;
    res->tokens = malloc((size_t)n * (size_t)r->o.max_new * sizeof(int32_t));
    res->len = calloc((size_t)n, sizeof(int));
    res->stopped = calloc((size_t)n, 1);
    if (r->o.want_entropy) res->entropy = malloc((size_t)n * (size_t)r->o.max_new * sizeof(float));
    if (!res->tokens || !res->len || !res->stopped || (r->o.want_entropy && !res->entropy)) {
        rollout_result_free(res);
        return ds_error_set(err, DS_ERR_OOM, "out of memory");
    }
    double t0 = now_s();
    for (int k = 0; k < n; k++) {
        ds_engine_seq_truncate(r->e, k, 0);
        sampler_params sp = r->o.sp;
        sp.seed = mix64(mix64(r->o.sp.seed ^ mix64(seed_offset)) + (uint64_t)k);
        ds_rng_seed(&r->smp[k].rng, sp.seed, 0);
    }
    ds_status st = DS_OK;
    // Prefill every sequence's prompt in flat chunks; the last prompt token's logits give the
    // first completion token.
    int fill = 0, k = 0, t = 0;
    while (k < n && !st) {
        int p = k / n_samples;
        r->tok[fill] = ids[p][t];
        r->seq[fill] = k;
        r->pos[fill] = t;
        r->want[fill] = t == lens[p] - 1;
        fill++;
        if (++t == lens[p]) { t = 0; k++; }
        if (fill == r->max_tokens || k == n) {
            ds_batch b = {fill, r->tok, r->seq, r->pos, r->want};
            st = ds_engine_forward(r->e, &b, r->logits, err);
            int row = 0;
            for (int i = 0; i < fill && !st; i++)
                if (r->want[i]) rollout_take(r, res, r->seq[i], r->logits + (int64_t)row++ * V);
            fill = 0;
            if (cancel && *cancel) st = ds_error_set(err, DS_ERR_INTERRUPTED, "interrupted");
        }
    }
    // Decode: one forward per step over every unfinished sequence.
    while (!st) {
        int m = 0;
        for (int j = 0; j < n; j++) {
            if (res->stopped[j] || res->len[j] >= res->max_new) continue;
            int p = j / n_samples;
            r->tok[m] = res->tokens[(int64_t)j * res->max_new + res->len[j] - 1];
            r->seq[m] = j;
            r->pos[m] = lens[p] + res->len[j] - 1;
            r->want[m] = 1;
            m++;
        }
        if (m == 0) break;
        ds_batch b = {m, r->tok, r->seq, r->pos, r->want};
        st = ds_engine_forward(r->e, &b, r->logits, err);
        for (int i = 0; i < m && !st; i++)
            rollout_take(r, res, r->seq[i], r->logits + (int64_t)i * V);
        if (progress) progress(progress_ctx, res->generated);
        if (!st && cancel && *cancel) st = ds_error_set(err, DS_ERR_INTERRUPTED, "interrupted");
    }
    res->seconds = now_s() - t0;
    if (st) rollout_result_free(res);
    return st;
}
