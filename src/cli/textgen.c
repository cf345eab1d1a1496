#include "cli/textgen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

ds_status textgen_init(textgen *g, const ds_model *m, const ds_tokenizer *tok, int ctx, int batch,
                       const sampler_params *sp, ds_error *err) {
    memset(g, 0, sizeof *g);
    g->m = m;
    g->tok = tok;
    ds_engine_limits lim = {.max_tokens = batch, .max_seqs = 1, .max_ctx = ctx, .max_logits = 1};
    ds_status st = ds_engine_create(&g->e, m, &lim, err);
    if (st) return st;
    st = sampler_init(&g->smp, sp, m->cfg.vocab_size, err);
    if (st) { ds_engine_free(g->e); g->e = NULL; return st; }
    g->cap_cached = ctx;
    g->cached = malloc((size_t)ctx * sizeof(int));
    g->logits = malloc((size_t)m->cfg.vocab_size * sizeof(float));
    g->pos = malloc((size_t)batch * sizeof(int));
    g->seq = calloc((size_t)batch, sizeof(int));
    g->want = malloc((size_t)batch);
    if (!g->cached || !g->logits || !g->pos || !g->seq || !g->want) {
        textgen_free(g);
        return ds_error_set(err, DS_ERR_OOM, "out of memory");
    }
    int cand[2] = {tokenizer_eos_id(tok), m->cfg.eos_token_id};
    for (int i = 0; i < 2; i++)
        if (cand[i] >= 0 && (g->n_stop == 0 || g->stop_ids[0] != cand[i])) g->stop_ids[g->n_stop++] = cand[i];
    return DS_OK;
}

void textgen_free(textgen *g) {
    ds_engine_free(g->e);
    sampler_free(&g->smp);
    free(g->cached); free(g->logits); free(g->pos); free(g->seq); free(g->want);
    memset(g, 0, sizeof *g);
}

static bool textgen_is_stop(const textgen *g, int id) {
    for (int i = 0; i < g->n_stop; i++)
        if (g->stop_ids[i] == id) return true;
    return false;
}

// Feeds tokens [from, n) of `ids` after truncating the cache to `from`; logits of the last.
static ds_status textgen_prefill(textgen *g, const int *ids, int from, int n, int batch, ds_error *err) {
    ds_engine_seq_truncate(g->e, 0, from);
    g->n_cached = from;
    bool show = n - from > batch && isatty(2);
    for (int t0 = from; t0 < n && !cli_interrupted; t0 += batch) {
        int k = n - t0 < batch ? n - t0 : batch;
        for (int i = 0; i < k; i++) {
            g->pos[i] = t0 + i;
            g->want[i] = i == k - 1;
        }
        ds_batch b = {k, ids + t0, g->seq, g->pos, g->want};
        ds_status st = ds_engine_forward(g->e, &b, g->logits, err);
        if (st) return st;
        memcpy(g->cached + t0, ids + t0, (size_t)k * sizeof(int));
        g->n_cached = t0 + k;
        if (show) fprintf(stderr, "\rprefill %d/%d tokens", t0 + k, n);
    }
    if (show) fprintf(stderr, "\r\033[K");
    return cli_interrupted ? ds_error_set(err, DS_ERR_INTERRUPTED, "interrupted") : DS_OK;
}

// Appends n bytes to a growing NUL-terminated buffer; false when out of memory.
static bool text_append(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 256;
        while (*len + n + 1 > c) c *= 2;
        char *p = realloc(*buf, c);
        if (!p) return false;
        *buf = p;
        *cap = c;
    }
    memcpy(*buf + *len, s, n);
    (*buf)[*len += n] = 0;
    return true;
}

ds_status textgen_run(textgen *g, const int *prompt, int n, const textgen_opts *o, char **reply, textgen_stats *st,
                      ds_error *err) {
    memset(st, 0, sizeof *st);
    *reply = NULL;
    int ctx = g->cap_cached;
    if (n >= ctx)
        return ds_error_set(err, DS_ERR_LIMIT, "the prompt has %d tokens but the context holds %d (raise --ctx)", n, ctx);
    if (n == 0) return ds_error_set(err, DS_ERR_ARG, "empty prompt");
    // Reuse the cached prefix (multi-turn chat re-renders the whole conversation); at least
    // the last prompt token is always fed so its logits are fresh.
    int common = 0;
    while (common < g->n_cached && common < n - 1 && g->cached[common] == prompt[common]) common++;
    st->prompt_tokens = n;
    st->prefilled = n - common;
    double t0 = cli_now();
    ds_status s = textgen_prefill(g, prompt, common, n, o->batch, err);
    st->prefill_s = cli_now() - t0;
    if (s) return s;

    tokenizer_stream ts;
    tokenizer_stream_init(&ts, g->tok, true);
    size_t cap = 0, len = 0;
    char *out = NULL;
    if (!text_append(&out, &len, &cap, "", 0)) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    bool reasoning = o->in_reasoning;
    if (reasoning && o->color) fputs("\033[2m", stdout);
    int end_id = tokenizer_token_id(g->tok, "</think>");
    double t1 = cli_now();
    int max_new = o->max_new < ctx - n ? o->max_new : ctx - n;
    for (int k = 0; k < max_new && !cli_interrupted; k++) {
        int id = sampler_sample(&g->smp, g->logits);
        if (textgen_is_stop(g, id)) { st->stopped = true; break; }
        st->generated++;
        size_t piece_len;
        const char *piece = tokenizer_stream_push(&ts, id, &piece_len);
        fwrite(piece, 1, piece_len, stdout);
        if (id == end_id && reasoning) {
            if (o->color) fputs("\033[0m", stdout);
            reasoning = false;
        }
        fflush(stdout);
        if (!text_append(&out, &len, &cap, piece, piece_len)) {
            s = ds_error_set(err, DS_ERR_OOM, "out of memory");
            break;
        }
        if (k + 1 == max_new) break; // the last token needs no forward
        int pos = g->n_cached;
        uint8_t want = 1;
        ds_batch b = {1, &id, g->seq, &pos, &want};
        s = ds_engine_forward(g->e, &b, g->logits, err);
        if (s) break;
        g->cached[g->n_cached++] = id;
    }
    size_t tail_len;
    const char *tail = tokenizer_stream_flush(&ts, &tail_len);
    fwrite(tail, 1, tail_len, stdout);
    if (reasoning && o->color) fputs("\033[0m", stdout);
    fputc('\n', stdout);
    fflush(stdout);
    if (!text_append(&out, &len, &cap, tail, tail_len) && s == DS_OK) s = ds_error_set(err, DS_ERR_OOM, "out of memory");
    tokenizer_stream_free(&ts);
    st->decode_s = cli_now() - t1;
    *reply = out;
    return s;
}
