// Chat examples as token ids, the way the model sees them at inference: the conversation up
// to the reply rendered with the tokenizer's chat template and its generation prompt (for R1
// templates ending in "<｜Assistant｜><think>\n"), then the reply and EOS. Shared by SFT
// (loss on the reply only), GRPO and eval (prompts).
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

// Prompt ids of a one-message user conversation; *opens_think (may be NULL) tells whether the
// generation prompt leaves a <think> block open.
ds_status chatdata_encode_prompt(const ds_tokenizer *t, const char *user, int **ids, int *n, bool *opens_think,
                                 ds_error *err);

// msgs[0..n-2] is the context, msgs[n-1] the assistant reply to learn. The reply's leading
// "<think>\n" (or "<think>") is dropped when the generation prompt already opened the block;
// EOS (when the tokenizer has one) ends the reply. *ids (malloc'd) = prompt + reply,
// *n_prompt of them are the prompt.
ds_status chatdata_encode_example(const ds_tokenizer *t, const chat_msg *msgs, int n, int **ids, int *n_ids,
                                  int *n_prompt, ds_error *err);

typedef struct {
    int n;
    int **ids;       // prompt + reply per example
    int *len, *n_prompt;
} chatdata_set;

// Reads JSONL files whose lines have "messages": [{"role", "content"}, ...] ending with an
// assistant message; errors name file:line. Examples longer than max_len tokens are skipped
// and counted in *skipped.
ds_status chatdata_load(chatdata_set *set, const ds_tokenizer *t, const char *const *files, int n_files, int max_len,
                        int *skipped, ds_error *err);
void chatdata_free(chatdata_set *set);

// Training rows for examples ex[0..b): inputs ids[0..L-2] (0 beyond), targets ids[t+1] on the
// reply tokens (-1 elsewhere), each row T = longest example - 1 (at least 2) long; inp and
// tgt hold b * T values. Returns T; *n_tgt gets the targets, *n_mtp those at t > 0 (what the
// MTP module predicts; may be NULL).
int chatdata_pack(const chatdata_set *set, const int *ex, int b, int32_t *inp, int32_t *tgt, int64_t *n_tgt,
                  int64_t *n_mtp);
