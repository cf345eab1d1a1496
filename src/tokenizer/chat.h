// Conversations: rendering with the model's chat template, and splitting R1-style output
// into reasoning and answer.
#pragma once
#include <stdbool.h>
#include "tokenizer/tokenizer.h"

typedef struct {
    const char *role;     // "system", "user", "assistant"
    const char *content;
} chat_msg;

// Renders messages with tokenizer_config.json's chat_template (bos_token, eos_token,
// add_generation_prompt set as transformers does). *out is malloc'd. DS_ERR_CONFIG when the
// tokenizer has no template.
ds_status chat_render(const ds_tokenizer *t, const chat_msg *msgs, int n, bool add_generation_prompt, char **out,
                      ds_error *err);

// True when `prompt` leaves a <think> block open (R1's generation prompt ends in "<think>\n"),
// i.e. the model's output starts inside its reasoning.
bool chat_prompt_opens_reasoning(const char *prompt);

// Splits a reply into reasoning and answer: the text before the first "</think>" is reasoning
// (a leading "<think>" is dropped; it may be absent when the prompt opened the block), the
// rest, with leading newlines removed, is the answer. Without "</think>", `in_reasoning`
// decides: all reasoning (true) or all answer (false). Returned pointers are malloc'd.
void chat_split_reasoning(const char *reply, bool in_reasoning, char **reasoning, char **answer);
