// Continuous batching: one engine thread owns the ds_engine and its latent-cache slots. Each
// step it gathers one decode token of every running sequence plus prefill chunks of newly
// admitted ones into a single ds_batch, samples every sequence that got logits, and appends
// the decoded text to the request. HTTP threads submit jobs, read their text under the
// scheduler lock and wait on the job's condition variable.
#pragma once
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infer/sampler.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

#define SCHED_MAX_STOP 4
#define SCHED_MAX_TOP 20

typedef enum { SCHED_RUNNING = 0, SCHED_STOP, SCHED_LENGTH, SCHED_CANCELLED, SCHED_ERROR } sched_finish;

// One generated token, for logprobs: its own and the most likely alternatives.
typedef struct {
    int id;
    float logprob;
    int n_top;
    int top_id[SCHED_MAX_TOP];
    float top_lp[SCHED_MAX_TOP];
} sched_tok;

// One choice of a job: a sequence in a slot. Output fields are written by the engine thread
// and read by the HTTP thread, both under the scheduler lock.
typedef struct sched_gen {
    struct sched_job *job;
    int index;               // choice index
    char *text;              // decoded output so far (stop sequences cut it)
    size_t len, cap;
    size_t safe;             // text[0, safe) is final: no stop sequence can still start in it
    sched_tok *toks;         // logprob records (job->logprobs), n_toks of them
    int n_toks, cap_toks;
    int n_gen;               // completion tokens
    sched_finish finish;
    // engine thread only
    int slot;                // -1 while queued
    int n_fed;               // prompt tokens already in the cache
    int last;                // token to feed next (decode)
    sampler smp;
    tokenizer_stream ts;
    bool ready;              // smp and ts initialised
    struct sched_gen *next;  // queue link
} sched_gen;

typedef struct sched_job {
    // request, set before sched_submit and read-only afterwards
    int *prompt;             // token ids (malloc'd, owned)
    int n_prompt;
    int max_tokens;
    sampler_params sp;       // seed of choice i is sp.seed + i
    bool logprobs;
    int top_logprobs;
    bool ignore_eos;
    char *stop[SCHED_MAX_STOP];
    int n_stop;
    int *bias_id;            // logit_bias (owned)
    float *bias;
    int n_bias;
    // choices and state (under the scheduler lock)
    int n;
    sched_gen *gens;
    int n_done;
    bool cancelled;
    int refs;                // HTTP side + engine side
    char error[200];
    pthread_cond_t cv;       // signalled when any choice has new output or finishes
} sched_job;

typedef struct sched sched;

typedef struct {
    int parallel;            // slots
    int ctx;                 // positions per slot
    int max_queue;           // choices waiting for a slot
    int batch;               // prefill tokens per step (all requests together)
    int chunk;               // prefill tokens of one request per step
    int n_threads;           // OpenMP threads of the engine thread
} sched_options;

ds_status sched_create(sched **s, const ds_model *m, const ds_tokenizer *tok, const sched_options *o, ds_error *err);
// Waits for every submitted job to finish, stops the engine thread and frees everything.
void sched_free(sched *s);

// A job with n choices and no request fields set (NULL when out of memory); refs = 1.
sched_job *sched_job_new(int n);
// 0: queued; -1: the queue is full; -2: the server is draining. The engine takes its own
// reference on success.
int sched_submit(sched *s, sched_job *j);
// Asks the engine to drop the job: queued choices leave the queue, running ones free their
// slot at the next step.
void sched_cancel(sched *s, sched_job *j);
// Drops the caller's reference (the job is freed with the last one).
void sched_release(sched *s, sched_job *j);
// Refuses new jobs from now on (sched_submit returns -2).
void sched_drain(sched *s);
// Blocks until no job is queued or running.
void sched_wait_idle(sched *s);

void sched_lock(sched *s);
void sched_unlock(sched *s);
// With the lock held: waits until the job changes or `ms` milliseconds pass.
void sched_wait(sched *s, sched_job *j, int ms);
bool sched_job_done(const sched_job *j); // lock held

typedef struct {
    int parallel, busy, queued, ctx;
    int64_t requests, tokens;
} sched_stats;
void sched_get_stats(sched *s, sched_stats *st);
