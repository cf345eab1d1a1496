// Responses in the OpenAI shape, from a job's output: the whole chat.completion /
// text_completion object, or server-sent-event chunks as the output grows.
#pragma once
#include <stdbool.h>

#include "server/sched.h"
#include "server/text.h"

typedef struct {
    think_split split;
    size_t sent;        // bytes of the choice's text already emitted
    int sent_toks;      // logprob records already emitted
    bool started, finished;
} emit_choice;

typedef struct {
    const ds_tokenizer *tok;
    char id[48];
    const char *model;
    long created;
    bool chat;
    bool split;           // reasoning as reasoning_content (else inline in content)
    bool opens_reasoning; // the prompt left <think> open
    bool include_usage;
    sched_job *job;
    emit_choice *ch;      // (job->n)
    bool done;
} emit_state;

// false when out of memory.
bool emit_init(emit_state *es, const ds_tokenizer *tok, const char *id, const char *model, bool chat, bool split,
               bool opens_reasoning, bool include_usage, sched_job *job);
void emit_free(emit_state *es);
// With the scheduler lock held: appends "data: ..." events for the new output; true once the
// final events (finish reasons, usage, [DONE]) are written.
bool emit_stream(emit_state *es, srv_buf *out);
// With the lock held and the job done: the complete response object (malloc'd).
char *emit_full(emit_state *es);
