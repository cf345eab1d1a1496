// Task families: names, canonical strings and splits, difficulty specs, generation.
#include "rl/task.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "rl/countdown.h"
#include "rl/task_internal.h"

// ---- small shared helpers ----

static void task_buf_grow(task_buf *b, size_t extra) {
    if (b->oom || b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) {
        b->oom = true;
        return;
    }
    b->s = s;
    b->cap = cap;
}

void task_buf_put(task_buf *b, const char *s) {
    size_t n = strlen(s);
    task_buf_grow(b, n);
    if (b->oom) return;
    memcpy(b->s + b->len, s, n + 1);
    b->len += n;
}

void task_buf_printf(task_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    task_buf_grow(b, (size_t)n);
    if (b->oom) return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

uint32_t task_rng_below(ds_rng *r, uint32_t n) {
    uint32_t limit = UINT32_MAX - UINT32_MAX % n; // values >= limit would favour small results
    for (;;) {
        uint32_t x = ds_rng_u32(r);
        if (x < limit) return x % n;
    }
}

char *task_u128_str(unsigned __int128 v, char *buf) {
    char tmp[48];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
    buf[n] = 0;
    return buf;
}

// ---- problems ----

void task_problem_free(task_problem *p) {
    if (!p) return;
    free(p->difficulty);
    free(p->prompt);
    free(p->answer);
    p->difficulty = p->prompt = p->answer = NULL;
}

void task_problems_free(task_problem *ps, int n) {
    if (!ps) return;
    for (int i = 0; i < n; i++) task_problem_free(&ps[i]);
    free(ps);
}

const char *task_kind_name(task_kind k) { return k == TASK_COUNTDOWN ? "countdown" : "arithmetic"; }
const char *task_split_name(task_split s) { return s == TASK_SPLIT_EVAL ? "eval" : "train"; }

bool task_kind_parse(const char *s, task_kind *out) {
    if (!s) return false;
    if (!strcmp(s, "arithmetic")) *out = TASK_ARITHMETIC;
    else if (!strcmp(s, "countdown")) *out = TASK_COUNTDOWN;
    else return false;
    return true;
}

bool task_split_parse(const char *s, task_split *out) {
    if (!s) return false;
    if (!strcmp(s, "train")) *out = TASK_SPLIT_TRAIN;
    else if (!strcmp(s, "eval")) *out = TASK_SPLIT_EVAL;
    else return false;
    return true;
}

uint64_t task_fnv1a64(const char *s) {
    uint64_t h = 14695981039346656037ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static int task_cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

char *task_canonical(const task_problem *p, char *buf, int size) {
    buf[0] = 0;
    if (p->kind == TASK_COUNTDOWN) {
        int64_t v[TASK_CD_MAX_NUMBERS];
        int n = p->n_numbers < 0 ? 0 : p->n_numbers > TASK_CD_MAX_NUMBERS ? TASK_CD_MAX_NUMBERS : p->n_numbers;
        memcpy(v, p->numbers, sizeof(int64_t) * (size_t)n);
        qsort(v, (size_t)n, sizeof *v, task_cmp_i64); // the same numbers in any order are one problem
        int k = snprintf(buf, (size_t)size, "cd:");
        for (int i = 0; i < n && k >= 0 && k < size; i++)
            k += snprintf(buf + k, (size_t)(size - k), "%s%lld", i ? "," : "", (long long)v[i]);
        if (k >= 0 && k < size) snprintf(buf + k, (size_t)(size - k), ":%lld", (long long)p->target);
    } else if (p->op) {
        const char *name = p->op == '+' ? "add" : p->op == '-' ? "sub" : "mul";
        snprintf(buf, (size_t)size, "%s:%llu:%llu", name, (unsigned long long)p->a, (unsigned long long)p->b);
    } else {
        snprintf(buf, (size_t)size, "custom:%s", p->prompt ? p->prompt : "");
    }
    return buf;
}

task_split task_split_of(const task_problem *p) {
    char buf[256];
    return task_fnv1a64(task_canonical(p, buf, sizeof buf)) % TASK_EVAL_MODULUS == 0 ? TASK_SPLIT_EVAL
                                                                                      : TASK_SPLIT_TRAIN;
}

// ---- difficulty specs ----

const char *task_spec_default(task_kind kind) { return kind == TASK_COUNTDOWN ? "n:3" : "add:1-3"; }

// A whole decimal number of at most 4 digits in [s, e).
static bool task_parse_small(const char *s, const char *e, int *out) {
    if (s >= e || e - s > 4) return false;
    int v = 0;
    for (; s < e; s++) {
        if (*s < '0' || *s > '9') return false;
        v = v * 10 + (*s - '0');
    }
    *out = v;
    return true;
}

// "K" or "K1-K2" in [s, e), each in [lo, hi]: 0 fine, 1 not a number or range, 2 out of bounds.
static int task_parse_range(const char *s, const char *e, int lo, int hi, int *a, int *b) {
    const char *dash = memchr(s, '-', (size_t)(e - s));
    if (!task_parse_small(s, dash ? dash : e, a) || (dash && !task_parse_small(dash + 1, e, b))) return 1;
    if (!dash) *b = *a;
    return *a < lo || *b > hi || *a > *b ? 2 : 0;
}

static const char task_not_range[] = "expected a number or a range like 1-3";

static ds_status task_item_error(ds_error *err, const char *s, const char *e, const char *why) {
    return ds_error_set(err, DS_ERR_ARG, "difficulty item '%.*s': %s", (int)(e - s), s, why);
}

static ds_status task_parse_arith_item(const char *s, const char *e, task_spec *out, ds_error *err) {
    const char *colon = memchr(s, ':', (size_t)(e - s));
    if (!colon) return task_item_error(err, s, e, "expected add:D, add:AxB, sub:D, sub:AxB or mul:AxB");
    size_t nl = (size_t)(colon - s);
    char op = nl == 3 && !memcmp(s, "add", 3) ? '+' : nl == 3 && !memcmp(s, "sub", 3) ? '-'
            : nl == 3 && !memcmp(s, "mul", 3) ? '*' : 0;
    if (!op) return task_item_error(err, s, e, "unknown operation (expected add, sub or mul)");
    if (out->n_items == TASK_SPEC_MAX_ITEMS) return task_item_error(err, s, e, "too many items (at most 16)");
    task_arith_item it = {.op = op};
    const char *v = colon + 1, *x = memchr(v, 'x', (size_t)(e - v));
    if (op == '*' && !x) return task_item_error(err, s, e, "expected AxB digit counts, e.g. mul:2x1");
    int bad = task_parse_range(v, x ? x : e, 1, TASK_MAX_DIGITS, &it.a_lo, &it.a_hi);
    if (!bad && x) bad = task_parse_range(x + 1, e, 1, TASK_MAX_DIGITS, &it.b_lo, &it.b_hi);
    if (bad) return task_item_error(err, s, e, bad == 1 ? task_not_range : "digit counts must be 1-18, a range low-high");
    out->items[out->n_items++] = it;
    return DS_OK;
}

static ds_status task_parse_cd_item(const char *s, const char *e, task_spec *out, int *seen, ds_error *err) {
    const char *colon = memchr(s, ':', (size_t)(e - s));
    size_t nl = colon ? (size_t)(colon - s) : 0;
    int which = nl == 1 && *s == 'n' ? 1 : nl == 3 && !memcmp(s, "max", 3) ? 2 : 0;
    if (!which) return task_item_error(err, s, e, "expected n:K, n:K1-K2 or max:N");
    if (*seen & which) return task_item_error(err, s, e, "given twice");
    *seen |= which;
    if (which == 1) {
        int bad = task_parse_range(colon + 1, e, TASK_CD_MIN_NUMBERS, TASK_CD_MAX_NUMBERS, &out->n_lo, &out->n_hi);
        if (bad)
            return task_item_error(err, s, e, bad == 1 ? task_not_range : "the count of numbers must be 2-6, a range low-high");
        return DS_OK;
    }
    int hi, bad = task_parse_range(colon + 1, e, 5, 1000, &out->max_number, &hi);
    if (!bad && hi != out->max_number) return task_item_error(err, s, e, "expected one number, not a range");
    if (bad) return task_item_error(err, s, e, bad == 1 ? "expected a number" : "the largest number must be 5-1000");
    return DS_OK;
}

ds_status task_spec_parse(task_kind kind, const char *spec, task_spec *out, ds_error *err) {
    memset(out, 0, sizeof *out);
    out->kind = kind;
    out->n_lo = out->n_hi = 3;
    out->max_number = 20;
    if (!spec) spec = task_spec_default(kind);
    if (!*spec) return ds_error_set(err, DS_ERR_ARG, "difficulty is empty");
    int seen = 0;
    for (const char *s = spec;;) {
        const char *e = strchr(s, ',');
        if (!e) e = s + strlen(s);
        if (e == s) return ds_error_set(err, DS_ERR_ARG, "difficulty '%s': empty item", spec);
        ds_status st = kind == TASK_COUNTDOWN ? task_parse_cd_item(s, e, out, &seen, err)
                                              : task_parse_arith_item(s, e, out, err);
        if (st) return st;
        if (!*e) break;
        s = e + 1;
    }
    return DS_OK;
}

// ---- generation ----

// A draw that keeps yielding nothing new for this long means the split of the spec's space
// is (nearly) exhausted: report instead of looping.
#define TASK_GEN_MAX_MISSES 100000L
#define TASK_GEN_SOLVE_NODES 2000000L

static uint64_t task_draw_operand(ds_rng *r, int digits) {
    if (digits == 1) return task_rng_below(r, 10);
    uint64_t v = 1 + task_rng_below(r, 9);
    for (int i = 1; i < digits; i++) v = v * 10 + task_rng_below(r, 10);
    return v;
}

static void task_draw_arith(ds_rng *r, const task_spec *s, task_problem *p, char *label, int size) {
    const task_arith_item *it = &s->items[task_rng_below(r, (uint32_t)s->n_items)];
    int da = it->a_lo + (int)task_rng_below(r, (uint32_t)(it->a_hi - it->a_lo + 1)), db = da;
    if (it->b_lo) db = it->b_lo + (int)task_rng_below(r, (uint32_t)(it->b_hi - it->b_lo + 1));
    p->kind = TASK_ARITHMETIC;
    p->op = it->op;
    p->a = task_draw_operand(r, da);
    p->b = task_draw_operand(r, db);
    if (it->op == '*') snprintf(label, (size_t)size, "mul-%dx%d", da, db);
    else if (da == db) snprintf(label, (size_t)size, "%s-%d", it->op == '+' ? "add" : "sub", da);
    else snprintf(label, (size_t)size, "%s-%dx%d", it->op == '+' ? "add" : "sub", da, db);
}

char *task_arith_answer_str(const task_problem *p, char buf[48]) {
    if (p->op == '+') task_u128_str((unsigned __int128)p->a + p->b, buf);
    else if (p->op == '*') task_u128_str((unsigned __int128)p->a * p->b, buf);
    else if (p->a >= p->b) task_u128_str(p->a - p->b, buf);
    else {
        buf[0] = '-';
        task_u128_str(p->b - p->a, buf + 1);
    }
    return buf;
}

static char *task_arith_answer(const task_problem *p) {
    char buf[48];
    return strdup(task_arith_answer_str(p, buf));
}

static char *task_cd_prompt(const task_problem *p) {
    task_buf b = {0};
    task_buf_put(&b, "Using the numbers ");
    for (int i = 0; i < p->n_numbers; i++) task_buf_printf(&b, "%lld, ", (long long)p->numbers[i]);
    task_buf_printf(&b, "make %lld. Use each number at most once, with + - * / and parentheses.",
                    (long long)p->target);
    if (b.oom) free(b.s);
    return b.oom ? NULL : b.s;
}

// Fills the owned strings of a drawn problem; false when out of memory.
static bool task_finish(task_problem *p, const char *label) {
    char buf[128];
    p->difficulty = strdup(label);
    if (p->kind == TASK_ARITHMETIC) {
        snprintf(buf, sizeof buf, "What is %llu %c %llu?", (unsigned long long)p->a, p->op, (unsigned long long)p->b);
        p->prompt = strdup(buf);
        p->answer = task_arith_answer(p);
        return p->difficulty && p->prompt && p->answer;
    }
    p->prompt = task_cd_prompt(p);
    return p->difficulty && p->prompt;
}

// Open addressing on the canonical hash; equal hashes compare canonical strings, so two
// different problems never count as one.
typedef struct {
    uint64_t *hash;
    int *idx; // index + 1, 0 = empty
    size_t mask;
} task_seen;

static bool task_seen_has(const task_seen *t, const task_problem *ps, uint64_t h, const char *canon, size_t *slot) {
    char buf[256];
    size_t i = h & t->mask;
    for (; t->idx[i]; i = (i + 1) & t->mask)
        if (t->hash[i] == h && !strcmp(task_canonical(&ps[t->idx[i] - 1], buf, sizeof buf), canon)) return true;
    *slot = i;
    return false;
}

// Specs built by hand (not parsed) must not reach the drawing code with empty ranges.
static bool task_spec_valid(const task_spec *s) {
    if (s->kind == TASK_COUNTDOWN)
        return s->n_lo >= TASK_CD_MIN_NUMBERS && s->n_lo <= s->n_hi && s->n_hi <= TASK_CD_MAX_NUMBERS &&
               s->max_number >= 1 && s->max_number <= TASK_CD_MAX_VALUE;
    if (s->kind != TASK_ARITHMETIC || s->n_items < 1 || s->n_items > TASK_SPEC_MAX_ITEMS) return false;
    for (int i = 0; i < s->n_items; i++) {
        const task_arith_item *it = &s->items[i];
        if (!strchr("+-*", it->op) || !it->op || it->a_lo < 1 || it->a_lo > it->a_hi || it->a_hi > TASK_MAX_DIGITS)
            return false;
        if ((it->op == '*' || it->b_lo) && (it->b_lo < 1 || it->b_lo > it->b_hi || it->b_hi > TASK_MAX_DIGITS))
            return false;
    }
    return true;
}

ds_status task_generate(const task_spec *spec, uint64_t seed, task_split split, int n, task_problem **out,
                        ds_error *err) {
    *out = NULL;
    if (n < 1 || n > TASK_MAX_N) return ds_error_set(err, DS_ERR_ARG, "problem count %d is outside 1-%d", n, TASK_MAX_N);
    if (!task_spec_valid(spec))
        return ds_error_set(err, DS_ERR_ARG, "difficulty spec out of range (not from task_spec_parse?)");
    size_t cap = 16;
    while (cap < (size_t)n * 2) cap *= 2;
    task_problem *ps = calloc((size_t)n, sizeof *ps);
    task_seen seen = {calloc(cap, sizeof(uint64_t)), calloc(cap, sizeof(int)), cap - 1};
    ds_status st = DS_OK;
    if (!ps || !seen.hash || !seen.idx) st = ds_error_set(err, DS_ERR_OOM, "generating %d problems: out of memory", n);
    ds_rng r;
    ds_rng_seed(&r, seed, 0x7a5c0 + (uint64_t)spec->kind);
    int got = 0;
    for (long misses = 0; !st && got < n; misses++) {
        if (misses == TASK_GEN_MAX_MISSES) {
            st = ds_error_set(err, DS_ERR_ARG,
                              "only %d distinct %s problems of this difficulty found in the %s split (%ld draws in a row "
                              "gave nothing new); ask for fewer or a harder difficulty",
                              got, task_kind_name(spec->kind), task_split_name(split), misses);
            break;
        }
        task_problem c = {.kind = spec->kind};
        char label[32], canon[256];
        if (spec->kind == TASK_ARITHMETIC) task_draw_arith(&r, spec, &c, label, sizeof label);
        else if (!countdown_draw(&r, spec, c.numbers, &c.n_numbers, &c.target)) continue;
        else snprintf(label, sizeof label, "cd-%d", c.n_numbers);
        uint64_t h = task_fnv1a64(task_canonical(&c, canon, sizeof canon));
        c.split = h % TASK_EVAL_MODULUS == 0 ? TASK_SPLIT_EVAL : TASK_SPLIT_TRAIN;
        size_t slot;
        if (c.split != split || task_seen_has(&seen, ps, h, canon, &slot)) continue;
        long nodes = TASK_GEN_SOLVE_NODES;
        if (c.kind == TASK_COUNTDOWN && countdown_solvable(c.numbers, c.n_numbers, c.target, &nodes) != 1) continue;
        if (!task_finish(&c, label)) {
            task_problem_free(&c);
            st = ds_error_set(err, DS_ERR_OOM, "generating %d problems: out of memory", n);
            break;
        }
        seen.hash[slot] = h;
        seen.idx[slot] = got + 1;
        ps[got++] = c;
        misses = -1;
    }
    free(seen.hash);
    free(seen.idx);
    if (st) {
        task_problems_free(ps, got);
        return st;
    }
    *out = ps;
    return DS_OK;
}
