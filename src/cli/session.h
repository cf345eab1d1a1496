// What `run` and `chat` share: options, loading model + tokenizer, one templated reply.
#pragma once
#include <stdbool.h>
#include <stdio.h>
#include "cli/textgen.h"
#include "tokenizer/chat.h"

typedef struct {
    const char *dir, *prompt, *system;
    bool raw;
    int n, ctx, batch;
    int quant;          // -1 or DS_Q8_0 / DS_Q4_0 (--quant)
    sampler_params sp;
} run_args;

typedef struct {
    ds_model m;
    ds_tokenizer *tok;
    textgen g;
    bool loaded, gen_ready;
} run_session;

void run_usage(FILE *f, const char *cmd);
// Parses the options of `cmd` ("run" or "chat"); returns -1 to continue, else an exit code.
int run_parse(const char *cmd, int argc, char **argv, run_args *a);
ds_status session_open(run_session *s, const run_args *a, ds_error *err);
void session_close(run_session *s);
// Renders the conversation with the chat template (or uses `raw` as the prompt), generates and
// streams a reply, prints a stats line to stderr. *reply is malloc'd.
ds_status session_reply(run_session *s, const run_args *a, const chat_msg *msgs, int n_msgs, const char *raw,
                        char **reply, ds_error *err);
