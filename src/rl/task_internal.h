// Helpers shared by the task/countdown/reward files of src/rl (not a public API).
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/rng.h"

// A growing string: appends never fail loudly, they set oom and the caller checks once.
typedef struct {
    char *s;
    size_t len, cap;
    bool oom;
} task_buf;

void task_buf_put(task_buf *b, const char *s);
void task_buf_printf(task_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Uniform in [0, n) without modulo bias (n >= 1).
uint32_t task_rng_below(ds_rng *r, uint32_t n);

// The decimal digits of v into buf (at least 41 bytes for a 128-bit value); returns buf.
char *task_u128_str(unsigned __int128 v, char *buf);
// The exact result of an arithmetic problem with known operands (op != 0) into buf; returns buf.
char *task_arith_answer_str(const task_problem *p, char buf[48]);
