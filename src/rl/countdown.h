// Countdown internals: exact rationals, the integer-only solver, problem drawing and the
// search trace (the format is documented with task_trace in task.h).
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "base/rng.h"
#include "base/status.h"
#include "rl/task.h"

// num/den with den > 0 and gcd(|num|, den) == 1. INT64_MIN never appears, so negation and
// absolute values are always defined.
typedef struct {
    int64_t num, den;
} countdown_q;

// out = a op b for op in "+-*/"; false on overflow or division by zero (out untouched).
bool countdown_q_apply(char op, countdown_q a, countdown_q b, countdown_q *out);

// Can some sequence of combinations (positive integer results only) of the values reach
// target? 1 yes, 0 no, -1 when *nodes (decremented per search node) ran out.
int countdown_solvable(const int64_t *v, int n, int64_t target, long *nodes);

// Draws one candidate: spec.n_lo..n_hi numbers from 1..max_number, and the value of a random
// expression tree over a random subset of them (at least 2; all of them half of the time),
// evaluated exactly. False when that value is not an integer in 1..TASK_CD_MAX_TARGET or
// equals one of the numbers: the caller draws again. Not yet checked for an integer-only
// solution (countdown_solvable), which the trace needs.
bool countdown_draw(ds_rng *r, const task_spec *spec, int64_t *numbers, int *n, int64_t *target);

ds_status countdown_trace(const task_problem *p, task_cd_trace style, char **out, ds_error *err);
