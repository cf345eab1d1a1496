// Countdown: exact rationals, the integer-only solver, drawing problems, the search trace.
#include "rl/countdown.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rl/task_internal.h"

// ---- rationals ----

static uint64_t cd_gcd(uint64_t a, uint64_t b) {
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static uint64_t cd_abs(int64_t x) { return x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x; }

// Normalises num/den; refusing INT64_MIN keeps every later negation defined.
static bool cd_q_make(int64_t num, int64_t den, countdown_q *out) {
    if (den == 0 || num == INT64_MIN || den == INT64_MIN) return false;
    if (den < 0) {
        num = -num;
        den = -den;
    }
    int64_t g = (int64_t)cd_gcd(cd_abs(num), (uint64_t)den); // >= 1 since den > 0
    out->num = num / g;
    out->den = den / g;
    return true;
}

static bool cd_q_addsub(countdown_q a, countdown_q b, bool sub, countdown_q *out) {
    int64_t g = (int64_t)cd_gcd((uint64_t)a.den, (uint64_t)b.den);
    int64_t x, y, num, den;
    if (__builtin_mul_overflow(a.num, b.den / g, &x) || __builtin_mul_overflow(b.num, a.den / g, &y)) return false;
    if (sub ? __builtin_sub_overflow(x, y, &num) : __builtin_add_overflow(x, y, &num)) return false;
    if (__builtin_mul_overflow(a.den, b.den / g, &den)) return false;
    return cd_q_make(num, den, out);
}

static bool cd_q_mul(countdown_q a, countdown_q b, countdown_q *out) {
    // Cross-reducing first keeps exact products in range as long as the result is.
    int64_t g1 = (int64_t)cd_gcd(cd_abs(a.num), (uint64_t)b.den), g2 = (int64_t)cd_gcd(cd_abs(b.num), (uint64_t)a.den);
    int64_t num, den;
    if (__builtin_mul_overflow(a.num / g1, b.num / g2, &num)) return false;
    if (__builtin_mul_overflow(a.den / g2, b.den / g1, &den)) return false;
    return cd_q_make(num, den, out);
}

bool countdown_q_apply(char op, countdown_q a, countdown_q b, countdown_q *out) {
    switch (op) {
    case '+': return cd_q_addsub(a, b, false, out);
    case '-': return cd_q_addsub(a, b, true, out);
    case '*': return cd_q_mul(a, b, out);
    case '/': {
        countdown_q inv;
        if (b.num == 0 || !cd_q_make(b.den, b.num, &inv)) return false;
        return cd_q_mul(a, inv, out);
    }
    }
    return false;
}

// ---- solver ----

enum { CD_MAX_MOVES = TASK_CD_MAX_NUMBERS * (TASK_CD_MAX_NUMBERS - 1) / 2 * 4 };

typedef struct {
    int hi, lo; // indices of the larger and the smaller operand
    char op;
    int64_t v;
} cd_move;

// Every combination of two values with a positive integer result; *1 and /1 change nothing
// and are left out.
static int cd_moves(const int64_t *v, int n, cd_move *m) {
    int k = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            int hi = v[i] >= v[j] ? i : j, lo = hi == i ? j : i;
            int64_t a = v[hi], b = v[lo], r;
            if (!__builtin_add_overflow(a, b, &r)) m[k++] = (cd_move){hi, lo, '+', r};
            if (a > b) m[k++] = (cd_move){hi, lo, '-', a - b};
            if (b > 1 && !__builtin_mul_overflow(a, b, &r)) m[k++] = (cd_move){hi, lo, '*', r};
            if (b > 1 && a % b == 0) m[k++] = (cd_move){hi, lo, '/', a / b};
        }
    return k;
}

// The values after a move: the result first, then the untouched values in order.
static int cd_child(const int64_t *v, int n, const cd_move *m, int64_t *out) {
    int k = 0;
    out[k++] = m->v;
    for (int t = 0; t < n; t++)
        if (t != m->hi && t != m->lo) out[k++] = v[t];
    return k;
}

static int cd_solvable_rec(const int64_t *v, int n, int64_t target, long *nodes) {
    if (--*nodes < 0) return -1;
    cd_move m[CD_MAX_MOVES];
    int k = cd_moves(v, n, m);
    for (int i = 0; i < k; i++)
        if (m[i].v == target) return 1;
    if (n < 3) return 0;
    for (int i = 0; i < k; i++) {
        int64_t c[TASK_CD_MAX_NUMBERS];
        int r = cd_solvable_rec(c, cd_child(v, n, &m[i], c), target, nodes);
        if (r) return r;
    }
    return 0;
}

int countdown_solvable(const int64_t *v, int n, int64_t target, long *nodes) {
    if (n < 1 || n > TASK_CD_MAX_NUMBERS) return 0;
    for (int i = 0; i < n; i++)
        if (v[i] == target) return 1;
    for (int i = 0; i < n; i++)
        if (v[i] < 1) return 0; // the moves assume positive values
    return n >= 2 ? cd_solvable_rec(v, n, target, nodes) : 0;
}

// ---- drawing ----

bool countdown_draw(ds_rng *r, const task_spec *s, int64_t *nums, int *n, int64_t *target) {
    int k = s->n_lo + (int)task_rng_below(r, (uint32_t)(s->n_hi - s->n_lo + 1));
    for (int i = 0; i < k; i++) nums[i] = 1 + (int64_t)task_rng_below(r, (uint32_t)s->max_number);
    *n = k;
    int m = task_rng_below(r, 2) ? k : 2 + (int)task_rng_below(r, (uint32_t)(k - 1));
    int idx[TASK_CD_MAX_NUMBERS];
    for (int i = 0; i < k; i++) idx[i] = i;
    countdown_q pool[TASK_CD_MAX_NUMBERS] = {{0, 1}};
    for (int i = 0; i < m; i++) { // partial Fisher-Yates: a uniform subset of size m
        int j = i + (int)task_rng_below(r, (uint32_t)(k - i));
        int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
        pool[i] = (countdown_q){nums[idx[i]], 1};
    }
    // Combining two random members of the pool until one is left makes a random tree shape.
    while (m > 1) {
        int i = (int)task_rng_below(r, (uint32_t)m), j = (int)task_rng_below(r, (uint32_t)(m - 1));
        if (j >= i) j++;
        countdown_q q;
        if (!countdown_q_apply("+-*/"[task_rng_below(r, 4)], pool[i], pool[j], &q)) return false;
        pool[i] = q;
        pool[j] = pool[m - 1];
        m--;
    }
    if (pool[0].den != 1 || pool[0].num < 1 || pool[0].num > TASK_CD_MAX_TARGET) return false;
    for (int i = 0; i < k; i++)
        if (nums[i] == pool[0].num) return false;
    *target = pool[0].num;
    return true;
}

// ---- traces ----
//
// Two styles (task.h documents their text). The search trace is a depth-first search that
// shows at most CD_TRACE_FAILS failed steps, then only branches that reach the target. The
// guess trace is a list of guesses: a guess is a walk of moves (combine two of the values
// left, compare the result with the target, go on with the new list until the target appears
// or one value is left); the failed guesses are random walks and their number is geometric
// (each guess is the last with probability 1/4), so neither the count of guesses so far nor
// their order says when the target comes: only the comparison does. The last guess is drawn
// uniformly among the walks that reach the target.

enum { CD_TRACE_FAILS = 6, CD_EXPR = 192, CD_GUESS_MAX_FAILS = 24, CD_GUESS_RESAMPLES = 64 };
#define CD_TRACE_NODES 20000000L

typedef struct {
    int64_t v;
    char top; // the expression's outermost operator, 0 for a number
    char expr[CD_EXPR];
} cd_val;

typedef struct {
    ds_rng rng;
    int64_t target;
    int fails;                         // search: failed steps still allowed to be shown
    long nodes, hits;                  // search budget; guess: reaching walks seen so far
    cd_move path[TASK_CD_MAX_NUMBERS]; // guess: the walk being enumerated
    cd_move pick[TASK_CD_MAX_NUMBERS]; // guess: the reaching walk kept (reservoir of one)
    int pick_len;
    bool too_long; // an expression outgrew CD_EXPR (numbers far beyond the generated ones)
    task_buf *b;
} cd_ctx;

static bool cd_additive(char op) { return op == '+' || op == '-'; }

// x op y with the parentheses standard precedence needs (left to right within a level).
static void cd_combine(cd_ctx *c, const cd_val *x, char op, const cd_val *y, int64_t v, cd_val *out) {
    bool lp = (op == '*' || op == '/') && cd_additive(x->top);
    bool rp = op == '/' ? y->top != 0 : (op == '-' || op == '*') && cd_additive(y->top);
    int len = snprintf(out->expr, sizeof out->expr, "%s%s%s%c%s%s%s", lp ? "(" : "", x->expr, lp ? ")" : "", op,
                       rp ? "(" : "", y->expr, rp ? ")" : "");
    if (len < 0 || len >= (int)sizeof out->expr) c->too_long = true;
    out->v = v;
    out->top = op;
}

// ---- search trace ----

static void cd_step_line(cd_ctx *c, const cd_move *m, const cd_val *vals, const int64_t *child, int nc) {
    task_buf_printf(c->b, "%lld %c %lld = %lld, left", (long long)vals[m->hi].v, m->op, (long long)vals[m->lo].v,
                    (long long)m->v);
    for (int i = 0; i < nc; i++) task_buf_printf(c->b, " %lld", (long long)child[i]);
    task_buf_put(c->b, "\n");
}

// 1 found (the "found" line written), 0 branch closed, -1 out of search nodes.
static int cd_trace_rec(cd_ctx *c, const cd_val *vals, int n, bool on_path) {
    int64_t v[TASK_CD_MAX_NUMBERS];
    for (int i = 0; i < n; i++) v[i] = vals[i].v;
    cd_move m[CD_MAX_MOVES];
    int k = cd_moves(v, n, m);
    for (int i = k - 1; i > 0; i--) { // the order of tries, seeded by the problem
        int j = (int)task_rng_below(&c->rng, (uint32_t)(i + 1));
        cd_move t = m[i];
        m[i] = m[j];
        m[j] = t;
    }
    for (int i = 0; i < k; i++) {
        if (!on_path && c->fails == 0) break;
        int64_t cv[TASK_CD_MAX_NUMBERS];
        int nc = cd_child(v, n, &m[i], cv);
        int s = m[i].v == c->target ? 1 : nc >= 2 ? cd_solvable_rec(cv, nc, c->target, &c->nodes) : 0;
        if (s < 0) return -1;
        if (s == 0 && c->fails == 0) continue; // pruned silently once the shown failures are used up
        cd_val child[TASK_CD_MAX_NUMBERS];
        cd_combine(c, &vals[m[i].hi], m[i].op, &vals[m[i].lo], m[i].v, &child[0]);
        for (int t = 0, q = 1; t < n; t++)
            if (t != m[i].hi && t != m[i].lo) child[q++] = vals[t];
        cd_step_line(c, &m[i], vals, cv, nc);
        if (m[i].v == c->target) {
            task_buf_printf(c->b, "found: %s = %lld\n", child[0].expr, (long long)c->target);
            task_buf_printf(c->b, "</think>\n\n\\boxed{%s}", child[0].expr);
            return 1;
        }
        if (s == 1) return cd_trace_rec(c, child, nc, true);
        c->fails--;
        if (nc >= 2 && cd_trace_rec(c, child, nc, false) < 0) return -1;
        task_buf_put(c->b, "no, back\n");
    }
    return 0;
}

// ---- guess trace ----

// A uniformly random walk from v[0..n); true when it reaches the target (m[0..*len) the moves).
static bool cd_walk_random(cd_ctx *c, const int64_t *v0, int n, cd_move *m, int *len) {
    int64_t v[TASK_CD_MAX_NUMBERS];
    memcpy(v, v0, (size_t)n * sizeof *v);
    for (*len = 0; n >= 2;) {
        cd_move all[CD_MAX_MOVES];
        int k = cd_moves(v, n, all); // >= 1: a sum always exists
        m[(*len)++] = all[task_rng_below(&c->rng, (uint32_t)k)];
        int64_t child[TASK_CD_MAX_NUMBERS];
        n = cd_child(v, n, &m[*len - 1], child);
        if (m[*len - 1].v == c->target) return true;
        memcpy(v, child, (size_t)n * sizeof *v);
    }
    return false;
}

// Every walk from v[0..n): keeps a uniform choice among those that reach the target.
// 0 done, -1 out of search nodes.
static int cd_walk_enum(cd_ctx *c, const int64_t *v, int n, int depth) {
    if (--c->nodes < 0) return -1;
    cd_move m[CD_MAX_MOVES];
    int k = cd_moves(v, n, m);
    for (int i = 0; i < k; i++) {
        c->path[depth] = m[i];
        int64_t child[TASK_CD_MAX_NUMBERS];
        int nc = cd_child(v, n, &m[i], child);
        if (m[i].v == c->target) {
            if (task_rng_below(&c->rng, (uint32_t)++c->hits) == 0) {
                memcpy(c->pick, c->path, (size_t)(depth + 1) * sizeof *c->pick);
                c->pick_len = depth + 1;
            }
        } else if (nc >= 2 && cd_walk_enum(c, child, nc, depth + 1) < 0) {
            return -1;
        }
    }
    return 0;
}

// One guess line: "7 * 3 = 21 vs 30, left 21 9, 21 + 9 = 30 vs 30, yes"; for a reaching
// walk, out gets its expression.
static void cd_walk_write(cd_ctx *c, const cd_val *vals0, int n, const cd_move *m, int len, cd_val *out) {
    cd_val vals[TASK_CD_MAX_NUMBERS];
    memcpy(vals, vals0, (size_t)n * sizeof *vals);
    for (int s = 0; s < len; s++) {
        cd_val child[TASK_CD_MAX_NUMBERS];
        cd_combine(c, &vals[m[s].hi], m[s].op, &vals[m[s].lo], m[s].v, &child[0]);
        int nc = 1;
        for (int t = 0; t < n; t++)
            if (t != m[s].hi && t != m[s].lo) child[nc++] = vals[t];
        task_buf_printf(c->b, "%s%lld %c %lld = %lld vs %lld", s ? ", " : "", (long long)vals[m[s].hi].v, m[s].op,
                        (long long)vals[m[s].lo].v, (long long)m[s].v, (long long)c->target);
        if (m[s].v == c->target) {
            task_buf_put(c->b, ", yes\n");
            if (out) *out = child[0];
            return;
        }
        if (nc == 1) break;
        task_buf_put(c->b, ", left");
        for (int t = 0; t < nc; t++) task_buf_printf(c->b, " %lld", (long long)child[t].v);
        memcpy(vals, child, (size_t)nc * sizeof *vals);
        n = nc;
    }
    task_buf_put(c->b, ", no\n");
}

// The search trace after its header: 1 found, 0 no solution, -1 out of search nodes.
static int cd_trace_search(cd_ctx *c, const cd_val *vals, int n) {
    task_buf_put(c->b, "numbers");
    for (int i = 0; i < n; i++) task_buf_printf(c->b, " %lld", (long long)vals[i].v);
    task_buf_printf(c->b, ", target %lld\n", (long long)c->target);
    for (int i = 0; i < n; i++)
        if (vals[i].v == c->target) {
            task_buf_printf(c->b, "found: %s = %lld\n</think>\n\n\\boxed{%s}", vals[i].expr, (long long)c->target,
                            vals[i].expr);
            return 1;
        }
    return cd_trace_rec(c, vals, n, true);
}

// The guess trace after "<think>\n": 1 found, 0 no solution, -1 out of search nodes.
static int cd_trace_guess(cd_ctx *c, const cd_val *vals, int n) {
    task_buf_printf(c->b, "target %lld\n", (long long)c->target);
    int64_t v[TASK_CD_MAX_NUMBERS];
    for (int i = 0; i < n; i++) v[i] = vals[i].v;
    for (int i = 0; i < n; i++)
        if (v[i] == c->target) {
            task_buf_printf(c->b, "%lld vs %lld, yes\n</think>\n\n\\boxed{%s}", (long long)v[i], (long long)c->target,
                            vals[i].expr);
            return 1;
        }
    if (n < 2) return 0;
    if (cd_walk_enum(c, v, n, 0) < 0) return -1;
    if (c->hits == 0) return 0;
    int fails = 0;
    while (fails < CD_GUESS_MAX_FAILS && task_rng_below(&c->rng, 4) != 0) fails++;
    for (int f = 0; f < fails; f++) {
        cd_move m[TASK_CD_MAX_NUMBERS];
        int len = 0, tries = 0;
        while (tries++ < CD_GUESS_RESAMPLES && cd_walk_random(c, v, n, m, &len)) {}
        if (tries > CD_GUESS_RESAMPLES) break; // (nearly) every walk reaches the target
        cd_walk_write(c, vals, n, m, len, NULL);
    }
    cd_val res;
    cd_walk_write(c, vals, n, c->pick, c->pick_len, &res);
    task_buf_printf(c->b, "</think>\n\n\\boxed{%s}", res.expr);
    return 1;
}

ds_status countdown_trace(const task_problem *p, task_cd_trace style, char **out, ds_error *err) {
    *out = NULL;
    if (p->kind != TASK_COUNTDOWN || p->n_numbers < 1 || p->n_numbers > TASK_CD_MAX_NUMBERS)
        return ds_error_set(err, DS_ERR_ARG, "countdown trace: not a countdown problem with 1-%d numbers",
                            TASK_CD_MAX_NUMBERS);
    char canon[256];
    task_buf b = {0};
    cd_ctx c = {.target = p->target, .fails = CD_TRACE_FAILS, .nodes = CD_TRACE_NODES, .b = &b};
    ds_rng_seed(&c.rng, task_fnv1a64(task_canonical(p, canon, sizeof canon)), 0xcd);
    cd_val vals[TASK_CD_MAX_NUMBERS];
    bool positive = true; // the moves only make positive values
    for (int i = 0; i < p->n_numbers; i++) {
        vals[i] = (cd_val){.v = p->numbers[i]};
        snprintf(vals[i].expr, sizeof vals[i].expr, "%lld", (long long)p->numbers[i]);
        if (p->numbers[i] < 1) positive = false;
    }
    task_buf_put(&b, "<think>\n");
    int found = !positive ? 0
                : style == TASK_CD_TRACE_GUESS ? cd_trace_guess(&c, vals, p->n_numbers)
                                               : cd_trace_search(&c, vals, p->n_numbers);
    ds_status st = DS_OK;
    if (b.oom) st = ds_error_set(err, DS_ERR_OOM, "countdown trace: out of memory");
    else if (found < 0) st = ds_error_set(err, DS_ERR_LIMIT, "countdown trace: search too large for '%s'", p->prompt);
    else if (found == 0)
        st = ds_error_set(err, DS_ERR_ARG, "countdown trace: no solution with positive whole intermediate results for '%s'",
                          p->prompt);
    else if (c.too_long) st = ds_error_set(err, DS_ERR_LIMIT, "countdown trace: expression too long for '%s'", p->prompt);
    if (st) {
        free(b.s);
        return st;
    }
    *out = b.s;
    return DS_OK;
}
