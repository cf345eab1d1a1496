// The engine thread. Determinism: the engine runs with row_exact, and a request's prefill is
// always cut into the same chunks (min(remaining, chunk), never a partial one to fill the
// budget), so each of its forward rows is computed exactly as when it runs alone.
#include "server/sched.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/engine.h"
#include "server/text.h"

struct sched {
    const ds_model *m;
    const ds_tokenizer *tokenizer;
    sched_options o;
    ds_engine *e;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t work;     // the engine thread sleeps on it when there is nothing to do
    pthread_cond_t idle;     // broadcast when the engine runs out of work
    sched_gen **slots;       // (parallel) running choice of each slot, or NULL
    sched_gen *qhead, *qtail;
    int n_queued;
    bool draining, quit;
    int stop_ids[2];
    int n_stop_ids;
    int64_t requests, tokens;
    // step scratch, (parallel + batch) rows; logits (parallel, V)
    int *b_tok, *seq, *pos;
    uint8_t *want;
    float *logits;
    sched_gen **row_gen;     // choice of each logits row
    int *sampled;
    sched_tok *recs;
};

// ---- jobs --------------------------------------------------------------------------------

sched_job *sched_job_new(int n) {
    sched_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->gens = calloc((size_t)n, sizeof *j->gens);
    if (!j->gens) { free(j); return NULL; }
    j->n = n;
    j->refs = 1;
    pthread_cond_init(&j->cv, NULL);
    for (int i = 0; i < n; i++) j->gens[i] = (sched_gen){.job = j, .index = i, .slot = -1};
    return j;
}

static void job_free(sched_job *j) {
    for (int i = 0; i < j->n; i++) {
        free(j->gens[i].text);
        free(j->gens[i].toks);
    }
    for (int i = 0; i < j->n_stop; i++) free(j->stop[i]);
    free(j->gens);
    free(j->prompt);
    free(j->bias_id);
    free(j->bias);
    pthread_cond_destroy(&j->cv);
    free(j);
}

static void job_unref(sched_job *j) {
    if (--j->refs == 0) job_free(j);
}

void sched_release(sched *s, sched_job *j) {
    pthread_mutex_lock(&s->mu);
    job_unref(j);
    pthread_mutex_unlock(&s->mu);
}

bool sched_job_done(const sched_job *j) { return j->n_done == j->n; }

// ---- output of a choice (engine thread, lock held) ------------------------------------------

static bool gen_append(sched_gen *g, const char *p, size_t n) {
    if (g->len + n + 1 > g->cap) {
        size_t c = g->cap ? g->cap : 256;
        while (g->len + n + 1 > c) c *= 2;
        char *t = realloc(g->text, c);
        if (!t) return false;
        g->text = t;
        g->cap = c;
    }
    memcpy(g->text + g->len, p, n);
    g->len += n;
    g->text[g->len] = 0;
    return true;
}

// Appends decoded text; true when a stop sequence ended the output (text cut before it).
static bool gen_add_text(sched_gen *g, const char *p, size_t n) {
    const sched_job *j = g->job;
    size_t old = g->len;
    if (!gen_append(g, p, n)) return false;
    long at = stop_find(g->text, g->len, old, j->stop, j->n_stop);
    if (at >= 0) {
        g->len = (size_t)at;
        g->text[at] = 0;
        g->safe = g->len;
        return true;
    }
    g->safe = stop_safe_len(g->text, g->len, j->stop, j->n_stop);
    return false;
}

static void gen_finish(sched *s, sched_gen *g, sched_finish why) {
    sched_job *j = g->job;
    if (g->ready && (why == SCHED_STOP || why == SCHED_LENGTH)) {
        size_t n;
        const char *tail = tokenizer_stream_flush(&g->ts, &n);
        if (n && gen_add_text(g, tail, n)) why = SCHED_STOP;
    }
    g->safe = g->len;
    g->finish = why;
    if (g->slot >= 0) {
        ds_engine_seq_truncate(s->e, g->slot, 0);
        s->slots[g->slot] = NULL;
        g->slot = -1;
    }
    if (g->ready) {
        sampler_free(&g->smp);
        tokenizer_stream_free(&g->ts);
        g->ready = false;
    }
    j->n_done++;
    pthread_cond_broadcast(&j->cv);
    if (j->n_done == j->n) job_unref(j); // the engine's reference
}

static void job_fail(sched *s, sched_gen *g, const char *msg) {
    sched_job *j = g->job;
    if (!j->error[0]) snprintf(j->error, sizeof j->error, "%.190s", msg);
    gen_finish(s, g, SCHED_ERROR);
}

// A sampled token: text, stop checks, limits.
static void gen_accept(sched *s, sched_gen *g, int id, const sched_tok *rec) {
    sched_job *j = g->job;
    if (j->cancelled) return; // reaped at the next step
    for (int i = 0; i < s->n_stop_ids && !j->ignore_eos; i++)
        if (id == s->stop_ids[i]) { gen_finish(s, g, SCHED_STOP); return; }
    g->n_gen++;
    s->tokens++;
    if (j->logprobs) {
        if (g->n_toks == g->cap_toks) {
            int c = g->cap_toks ? 2 * g->cap_toks : 32;
            sched_tok *t = realloc(g->toks, (size_t)c * sizeof *t);
            if (!t) { job_fail(s, g, "out of memory"); return; }
            g->toks = t;
            g->cap_toks = c;
        }
        g->toks[g->n_toks++] = *rec;
    }
    size_t n;
    const char *piece = tokenizer_stream_push(&g->ts, id, &n);
    if (gen_add_text(g, piece, n)) { gen_finish(s, g, SCHED_STOP); return; }
    g->last = id;
    if (g->n_gen >= j->max_tokens || ds_engine_seq_len(s->e, g->slot) >= s->o.ctx) {
        gen_finish(s, g, SCHED_LENGTH);
        return;
    }
    pthread_cond_broadcast(&j->cv);
}

// ---- queue and slots (lock held) -----------------------------------------------------------

static void reap_cancelled(sched *s) {
    for (int i = 0; i < s->o.parallel; i++)
        if (s->slots[i] && s->slots[i]->job->cancelled) gen_finish(s, s->slots[i], SCHED_CANCELLED);
    sched_gen **pp = &s->qhead, *prev = NULL;
    while (*pp) {
        sched_gen *g = *pp;
        if (g->job->cancelled) {
            *pp = g->next;
            if (s->qtail == g) s->qtail = prev;
            s->n_queued--;
            gen_finish(s, g, SCHED_CANCELLED);
        } else {
            prev = g;
            pp = &g->next;
        }
    }
}

static void admit(sched *s) {
    for (int i = 0; i < s->o.parallel && s->qhead; i++) {
        if (s->slots[i]) continue;
        sched_gen *g = s->qhead;
        s->qhead = g->next;
        if (!s->qhead) s->qtail = NULL;
        s->n_queued--;
        g->next = NULL;
        sampler_params sp = g->job->sp;
        sp.seed += (uint64_t)g->index;
        ds_error err;
        if (sampler_init(&g->smp, &sp, s->m->cfg.vocab_size, &err) || !gen_append(g, "", 0)) {
            job_fail(s, g, "out of memory");
            i--; // the slot is still free
            continue;
        }
        tokenizer_stream_init(&g->ts, s->tokenizer, true);
        g->ready = true;
        g->slot = i;
        g->n_fed = 0;
        s->slots[i] = g;
        ds_engine_seq_truncate(s->e, i, 0);
    }
}

// Fills the step's batch; returns its size and the number of logits rows in *n_rows.
static int build_batch(sched *s, int *n_rows) {
    int n = 0, rows = 0, budget = s->o.batch;
    for (int i = 0; i < s->o.parallel; i++) {
        sched_gen *g = s->slots[i];
        if (!g || g->n_fed < g->job->n_prompt) continue;
        s->b_tok[n] = g->last;
        s->seq[n] = i;
        s->pos[n] = ds_engine_seq_len(s->e, i);
        s->want[n++] = 1;
        s->row_gen[rows++] = g;
    }
    for (int i = 0; i < s->o.parallel; i++) {
        sched_gen *g = s->slots[i];
        if (!g || g->n_fed >= g->job->n_prompt) continue;
        int left = g->job->n_prompt - g->n_fed, k = left < s->o.chunk ? left : s->o.chunk;
        if (k > budget) continue; // whole chunks only: the cut must not depend on other requests
        budget -= k;
        int p0 = ds_engine_seq_len(s->e, i);
        for (int t = 0; t < k; t++) {
            s->b_tok[n] = g->job->prompt[g->n_fed + t];
            s->seq[n] = i;
            s->pos[n] = p0 + t;
            s->want[n++] = t == left - 1;
        }
        g->n_fed += k;
        if (k == left) s->row_gen[rows++] = g;
    }
    *n_rows = rows;
    return n;
}

// ---- sampling (no lock: rows belong to running choices only the engine thread touches) --------

static void logprob_record(const float *l, int V, int id, int top, sched_tok *rec) {
    float mx = -INFINITY;
    for (int v = 0; v < V; v++) mx = l[v] > mx ? l[v] : mx;
    double sum = 0;
    for (int v = 0; v < V; v++) sum += exp((double)(l[v] - mx));
    float lse = mx + (float)log(sum);
    rec->id = id;
    rec->logprob = l[id] - lse;
    rec->n_top = 0;
    // Insertion into a short sorted list: top is at most SCHED_MAX_TOP.
    for (int v = 0; v < V && top > 0; v++) {
        int k = rec->n_top;
        if (k == top && !(l[v] > l[rec->top_id[k - 1]])) continue;
        if (k < top) rec->n_top++;
        else k--;
        while (k > 0 && l[v] > l[rec->top_id[k - 1]]) {
            rec->top_id[k] = rec->top_id[k - 1];
            k--;
        }
        rec->top_id[k] = v;
    }
    for (int k = 0; k < rec->n_top; k++) rec->top_lp[k] = l[rec->top_id[k]] - lse;
}

static void sample_rows(sched *s, int rows) {
    int V = s->m->cfg.vocab_size;
#pragma omp parallel for schedule(dynamic, 1) if (rows > 1)
    for (int r = 0; r < rows; r++) {
        sched_gen *g = s->row_gen[r];
        const sched_job *j = g->job;
        float *l = s->logits + (int64_t)r * V;
        for (int b = 0; b < j->n_bias; b++) l[j->bias_id[b]] += j->bias[b];
        if (j->ignore_eos)
            for (int k = 0; k < s->n_stop_ids; k++) l[s->stop_ids[k]] = -INFINITY;
        int id = sampler_sample(&g->smp, l);
        s->sampled[r] = id;
        if (j->logprobs) logprob_record(l, V, id, j->top_logprobs, &s->recs[r]);
    }
}

// ---- the engine thread -------------------------------------------------------------------------

static bool any_running(const sched *s) {
    for (int i = 0; i < s->o.parallel; i++)
        if (s->slots[i]) return true;
    return false;
}

static void *sched_main(void *arg) {
    sched *s = arg;
    // OpenMP settings are per thread: this one needs the server's -t, not the default.
    omp_set_num_threads(s->o.n_threads);
    pthread_mutex_lock(&s->mu);
    for (;;) {
        reap_cancelled(s);
        admit(s);
        if (!any_running(s)) {
            pthread_cond_broadcast(&s->idle);
            if (s->quit && !s->qhead) break;
            pthread_cond_wait(&s->work, &s->mu);
            continue;
        }
        int rows, n = build_batch(s, &rows);
        pthread_mutex_unlock(&s->mu);
        ds_batch b = {n, s->b_tok, s->seq, s->pos, s->want};
        ds_error err = {{0}};
        ds_status st = ds_engine_forward(s->e, &b, s->logits, &err);
        if (!st) sample_rows(s, rows);
        pthread_mutex_lock(&s->mu);
        if (st) {
            for (int i = 0; i < s->o.parallel; i++) // a batch error ends every request in it
                if (s->slots[i]) job_fail(s, s->slots[i], err.msg);
            continue;
        }
        for (int r = 0; r < rows; r++)
            if (s->row_gen[r]->slot >= 0) gen_accept(s, s->row_gen[r], s->sampled[r], &s->recs[r]);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

// ---- public -------------------------------------------------------------------------------------

ds_status sched_create(sched **out, const ds_model *m, const ds_tokenizer *tok, const sched_options *o, ds_error *err) {
    *out = NULL;
    sched *s = calloc(1, sizeof *s);
    if (!s) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    s->m = m;
    s->tokenizer = tok;
    s->o = *o;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->idle, NULL);
    ds_engine_limits lim = {.max_tokens = o->parallel + o->batch, .max_seqs = o->parallel, .max_ctx = o->ctx,
                            .max_logits = o->parallel, .attn = DS_ATTN_AUTO, .row_exact = 1};
    ds_status st = ds_engine_create(&s->e, m, &lim, err);
    if (st) { sched_free(s); return st; }
    int N = lim.max_tokens, P = o->parallel;
    s->slots = calloc((size_t)P, sizeof *s->slots);
    s->b_tok = malloc((size_t)N * sizeof(int));
    s->seq = malloc((size_t)N * sizeof(int));
    s->pos = malloc((size_t)N * sizeof(int));
    s->want = malloc((size_t)N);
    s->logits = malloc((size_t)P * (size_t)m->cfg.vocab_size * sizeof(float));
    s->row_gen = malloc((size_t)P * sizeof *s->row_gen);
    s->sampled = malloc((size_t)P * sizeof(int));
    s->recs = malloc((size_t)P * sizeof *s->recs);
    if (!s->slots || !s->b_tok || !s->seq || !s->pos || !s->want || !s->logits || !s->row_gen || !s->sampled || !s->recs) {
        sched_free(s);
        return ds_error_set(err, DS_ERR_OOM, "out of memory");
    }
    int cand[2] = {tokenizer_eos_id(tok), m->cfg.eos_token_id};
    for (int i = 0; i < 2; i++)
        if (cand[i] >= 0 && cand[i] < m->cfg.vocab_size && (s->n_stop_ids == 0 || s->stop_ids[0] != cand[i]))
            s->stop_ids[s->n_stop_ids++] = cand[i];
    if (pthread_create(&s->thread, NULL, sched_main, s) != 0) {
        sched_free(s);
        return ds_error_set(err, DS_ERR_OOM, "cannot start the engine thread");
    }
    s->started = true;
    *out = s;
    return DS_OK;
}

void sched_free(sched *s) {
    if (!s) return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->draining = s->quit = true;
        pthread_cond_signal(&s->work);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->idle);
    ds_engine_free(s->e);
    free(s->slots); free(s->b_tok); free(s->seq); free(s->pos); free(s->want);
    free(s->logits); free(s->row_gen); free(s->sampled); free(s->recs);
    free(s);
}

int sched_submit(sched *s, sched_job *j) {
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    int free_slots = 0;
    for (int i = 0; i < s->o.parallel; i++) free_slots += s->slots[i] == NULL;
    if (s->draining) rc = -2;
    else if (s->n_queued + j->n > s->o.max_queue + free_slots) rc = -1; // the queue bounds only the waiting
    else {
        for (int i = 0; i < j->n; i++) {
            sched_gen *g = &j->gens[i];
            g->next = NULL;
            if (s->qtail) s->qtail->next = g;
            else s->qhead = g;
            s->qtail = g;
        }
        s->n_queued += j->n;
        j->refs++;
        s->requests++;
        pthread_cond_signal(&s->work);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void sched_cancel(sched *s, sched_job *j) {
    pthread_mutex_lock(&s->mu);
    if (!sched_job_done(j)) {
        j->cancelled = true;
        pthread_cond_signal(&s->work);
    }
    pthread_mutex_unlock(&s->mu);
}

void sched_drain(sched *s) {
    pthread_mutex_lock(&s->mu);
    s->draining = true;
    pthread_mutex_unlock(&s->mu);
}

void sched_wait_idle(sched *s) {
    pthread_mutex_lock(&s->mu);
    while (s->qhead || any_running(s)) pthread_cond_wait(&s->idle, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

void sched_lock(sched *s) { pthread_mutex_lock(&s->mu); }
void sched_unlock(sched *s) { pthread_mutex_unlock(&s->mu); }

void sched_wait(sched *s, sched_job *j, int ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)ms * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&j->cv, &s->mu, &ts);
}

void sched_get_stats(sched *s, sched_stats *st) {
    pthread_mutex_lock(&s->mu);
    *st = (sched_stats){.parallel = s->o.parallel, .queued = s->n_queued, .ctx = s->o.ctx,
                        .requests = s->requests, .tokens = s->tokens};
    for (int i = 0; i < s->o.parallel; i++) st->busy += s->slots[i] != NULL;
    pthread_mutex_unlock(&s->mu);
}
