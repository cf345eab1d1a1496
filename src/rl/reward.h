// Verifiable rewards for GRPO: a program checks the model's answer (task.h problems).
//
// A completion is the text generated after the prompt. The chat template ends the prompt
// with "<｜Assistant｜><think>\n", so a completion normally reads
//     "...reasoning...\n</think>\n\n\\boxed{5663}"
// without the opening tag; one that starts (after whitespace) with "<think>" is read the same.
// A trailing "<｜end▁of▁sentence｜>" (when decoded with special tokens) is ignored.
//
// format (1 or 0): exactly one "</think>"; no "<think>" other than the optional one at the
//   start; non-whitespace reasoning before "</think>"; after it exactly one "\boxed{", its
//   braces balanced and its content not blank, and only whitespace after its closing brace.
//   Text between "</think>" and the box is fine.
// accuracy (1 or 0), on the last \boxed{...} after the first "</think>" (format not needed):
//   arithmetic  the content, trimmed, is an integer literal (optional '-', digits, no
//               leading zeros, no '+', no separators) equal to the answer.
//   countdown   the content is an expression of non-negative integer literals (no leading
//               zeros, at most 18 digits), + - * /, parentheses and spaces, optionally
//               followed by "= <target>" (which must then be the target); no unary minus;
//               the literals are a sub-multiset of the given numbers; evaluated exactly in
//               rationals (int64, overflow or division by zero -> 0); equal to the target.
//               At most REWARD_MAX_EXPR characters and REWARD_MAX_DEPTH nested parentheses.
// total = w_accuracy * accuracy + w_format * format.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rl/task.h"

enum { REWARD_MAX_EXPR = 512, REWARD_MAX_DEPTH = 32, REWARD_MAX_LITERALS = 64 };

typedef struct {
    float w_accuracy, w_format;
} reward_config;

// w_accuracy 1.0, w_format 0.1: the format bonus teaches the shape early without ever
// outweighing a correct answer.
reward_config reward_config_default(void);

typedef struct {
    float accuracy, format, total;
} reward_result;

// The content of the last \boxed{...} after the first "</think>": *answer points into
// completion, *len bytes (braces inside balanced). False when there is no "</think>", no box
// after it, or a box is unterminated.
bool reward_extract_answer(const char *completion, const char **answer, size_t *len);

int reward_format(const char *completion);
// The checks on a box's content (answer/len as from reward_extract_answer).
int reward_check_arithmetic(const char *answer, size_t len, const char *expected);
int reward_check_countdown(const char *answer, size_t len, const int64_t *numbers, int n, int64_t target);
int reward_accuracy(const task_problem *p, const char *completion);

// Never fails: a NULL completion or cfg (= defaults) is fine; an unusable problem scores 0.
void reward_score(const task_problem *p, const char *completion, const reward_config *cfg, reward_result *out);

// Process supervision for the countdown guess trace (task.h; DeepSeekMath's process rewards, at
// the resolution of single values): a program replays the reply's moves and labels every byte
// of completion[0..n):
//   REWARD_PROC_FREE  a choice the trace leaves to the model: a move's operands and operation
//                     (an operand not among the values left, a smaller first operand as the
//                     traces never write one, or a move without a positive whole result, is
//                     BAD instead), and the end of a list of values left
//                     that drops some (a number need not be used);
//   REWARD_PROC_OK / REWARD_PROC_BAD  a value the trace fixes, right or wrong: the echoed
//                     target, each result, the verdict word with the space before it ("yes" iff
//                     the result is the target, "no" iff one value is left, "left" otherwise:
//                     tokenizers split " yes" / " no" / " left" differently, and the token where
//                     they part must be labelled), each value left (the result
//                     first, then any of the untouched values; a value too many marks the space
//                     before it), "</think>" (wrong unless after a "yes"), the boxed answer
//                     (right iff accurate);
//   REWARD_PROC_NONE  keywords and separators, the rest of a line after its first wrong value,
//                     and anything after text the grammar does not follow.
// Returns false (label untouched) for a problem without a step checker (arithmetic).
enum { REWARD_PROC_NONE = 0, REWARD_PROC_FREE = 1, REWARD_PROC_OK = 2, REWARD_PROC_BAD = 3 };
bool reward_process_labels(const task_problem *p, const char *completion, size_t n, uint8_t *label);
