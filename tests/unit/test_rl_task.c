// Task families: difficulty specs, determinism by seed, disjoint train/eval splits by the
// hash rule, labels and digit counts, bounded generation when the space is small, solvable
// countdown problems, every trace scoring format 1 and accuracy 1 (with each line's local
// arithmetic checked), and the JSONL writer/reader on generated, hand-written and malformed lines.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rl/countdown.h"
#include "rl/reward.h"
#include "rl/task.h"
#include "test_tmpdir.h"

static void spec_ok(task_kind k, const char *s, task_spec *out) {
    ds_error err = {{0}};
    ds_status st = task_spec_parse(k, s, out, &err);
    if (st) print_error("spec '%s': %s\n", s ? s : "(default)", err.msg);
    assert_int_equal(st, DS_OK);
}

static void spec_bad(task_kind k, const char *s, const char *want) {
    ds_error err = {{0}};
    task_spec sp;
    assert_int_equal(task_spec_parse(k, s, &sp, &err), DS_ERR_ARG);
    if (!strstr(err.msg, want)) print_error("spec '%s': '%s' lacks '%s'\n", s, err.msg, want);
    assert_non_null(strstr(err.msg, want));
}

static task_problem *gen(task_kind k, const char *spec, uint64_t seed, task_split split, int n) {
    task_spec sp;
    spec_ok(k, spec, &sp);
    task_problem *ps = NULL;
    ds_error err = {{0}};
    ds_status st = task_generate(&sp, seed, split, n, &ps, &err);
    if (st) print_error("generate '%s': %s\n", spec, err.msg);
    assert_int_equal(st, DS_OK);
    return ps;
}

static void test_spec_parse(void **state) {
    (void)state;
    task_spec s;
    spec_ok(TASK_ARITHMETIC, "add:1-3,sub:2,mul:2x1,mul:1-2x3-4", &s);
    assert_int_equal(s.n_items, 4);
    assert_true(s.items[0].op == '+' && s.items[0].a_lo == 1 && s.items[0].a_hi == 3);
    assert_true(s.items[1].op == '-' && s.items[1].a_lo == 2 && s.items[1].a_hi == 2);
    assert_true(s.items[2].op == '*' && s.items[2].a_lo == 2 && s.items[2].b_lo == 1 && s.items[2].b_hi == 1);
    assert_true(s.items[3].a_lo == 1 && s.items[3].a_hi == 2 && s.items[3].b_lo == 3 && s.items[3].b_hi == 4);
    assert_true(s.items[0].b_lo == 0 && s.items[1].b_lo == 0); // add/sub: equal lengths
    spec_ok(TASK_ARITHMETIC, "add:1-4x2,sub:5x1-3", &s);
    assert_true(s.items[0].a_lo == 1 && s.items[0].a_hi == 4 && s.items[0].b_lo == 2 && s.items[0].b_hi == 2);
    assert_true(s.items[1].op == '-' && s.items[1].a_lo == 5 && s.items[1].b_lo == 1 && s.items[1].b_hi == 3);
    spec_ok(TASK_ARITHMETIC, NULL, &s);
    assert_true(s.n_items == 1 && s.items[0].op == '+' && s.items[0].a_hi == 3);
    spec_ok(TASK_COUNTDOWN, "n:3-5,max:30", &s);
    assert_true(s.n_lo == 3 && s.n_hi == 5 && s.max_number == 30);
    spec_ok(TASK_COUNTDOWN, NULL, &s);
    assert_true(s.n_lo == 3 && s.n_hi == 3 && s.max_number == 20);
    spec_ok(TASK_COUNTDOWN, "max:100", &s);
    assert_true(s.n_lo == 3 && s.max_number == 100);

    spec_bad(TASK_ARITHMETIC, "", "empty");
    spec_bad(TASK_ARITHMETIC, "add:1,", "empty item");
    spec_bad(TASK_ARITHMETIC, "add:0", "item 'add:0': digit counts must be 1-18");
    spec_bad(TASK_ARITHMETIC, "add:19", "1-18");
    spec_bad(TASK_ARITHMETIC, "sub:3-1", "item 'sub:3-1'");
    spec_bad(TASK_ARITHMETIC, "div:2", "unknown operation");
    spec_bad(TASK_ARITHMETIC, "add:2,mul:3", "item 'mul:3': expected AxB");
    spec_bad(TASK_ARITHMETIC, "add", "expected add:D");
    spec_bad(TASK_ARITHMETIC, "add:x", "expected a number");
    spec_bad(TASK_ARITHMETIC, "add:-3", "expected a number");
    spec_bad(TASK_ARITHMETIC, "mul:2x", "expected a number");
    spec_bad(TASK_ARITHMETIC, "add:2x0", "item 'add:2x0': digit counts must be 1-18");
    spec_bad(TASK_ARITHMETIC, "add:99999", "expected a number");
    spec_bad(TASK_ARITHMETIC, "add:1,add:1,add:1,add:1,add:1,add:1,add:1,add:1,add:1,add:1,add:1,add:1,add:1,add:1,add:1,add:1,add:1",
             "too many");
    spec_bad(TASK_COUNTDOWN, "n:7", "item 'n:7': the count of numbers must be 2-6");
    spec_bad(TASK_COUNTDOWN, "n:1", "2-6");
    spec_bad(TASK_COUNTDOWN, "max:3", "5-1000");
    spec_bad(TASK_COUNTDOWN, "max:10-20", "one number");
    spec_bad(TASK_COUNTDOWN, "n:3,n:4", "given twice");
    spec_bad(TASK_COUNTDOWN, "k:3", "expected n:K");
    spec_bad(TASK_COUNTDOWN, "add:3", "expected n:K");
}

static void same_problems(const task_problem *a, const task_problem *b, int n) {
    for (int i = 0; i < n; i++) {
        assert_int_equal(a[i].kind, b[i].kind);
        assert_int_equal(a[i].split, b[i].split);
        assert_string_equal(a[i].prompt, b[i].prompt);
        assert_string_equal(a[i].difficulty, b[i].difficulty);
        if (a[i].kind == TASK_ARITHMETIC) assert_string_equal(a[i].answer, b[i].answer);
        assert_int_equal(a[i].n_numbers, b[i].n_numbers);
        assert_memory_equal(a[i].numbers, b[i].numbers, sizeof a[i].numbers);
        assert_int_equal(a[i].target, b[i].target);
    }
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(1 << 22);
    *n = fread(buf, 1, 1 << 22, f);
    fclose(f);
    return buf;
}

static void test_determinism(void **state) {
    (void)state;
    const char *specs[2] = {"add:1-3,sub:2,mul:2x1", "n:3-5,max:30"};
    for (int k = 0; k < 2; k++) {
        int n = 150;
        task_problem *a = gen((task_kind)k, specs[k], 7, TASK_SPLIT_TRAIN, n);
        task_problem *b = gen((task_kind)k, specs[k], 7, TASK_SPLIT_TRAIN, n);
        task_problem *c = gen((task_kind)k, specs[k], 8, TASK_SPLIT_TRAIN, n);
        same_problems(a, b, n);
        int differ = 0;
        for (int i = 0; i < n; i++) differ += strcmp(a[i].prompt, c[i].prompt) != 0;
        assert_true(differ > n / 2);
        ds_error err;
        for (int t = 0; t < 2; t++) { // byte-identical files, with and without traces
            assert_int_equal(task_write_jsonl(tpath("d1.jsonl"), a, n, t, TASK_CD_TRACE_SEARCH, &err), DS_OK);
            assert_int_equal(task_write_jsonl(tpath("d2.jsonl"), b, n, t, TASK_CD_TRACE_SEARCH, &err), DS_OK);
            size_t n1, n2;
            char *f1 = slurp(tpath("d1.jsonl"), &n1), *f2 = slurp(tpath("d2.jsonl"), &n2);
            assert_true(n1 > 0 && n1 == n2);
            assert_memory_equal(f1, f2, n1);
            free(f1);
            free(f2);
        }
        task_problems_free(a, n);
        task_problems_free(b, n);
        task_problems_free(c, n);
    }
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void test_splits(void **state) {
    (void)state;
    const char *specs[2] = {"add:1-4,mul:2x2", "n:3,max:15"};
    const int ntr[2] = {2500, 600}, nev[2] = {300, 100};
    for (int k = 0; k < 2; k++) {
        task_problem *tr = gen((task_kind)k, specs[k], 1, TASK_SPLIT_TRAIN, ntr[k]);
        task_problem *ev = gen((task_kind)k, specs[k], 1, TASK_SPLIT_EVAL, nev[k]); // same seed on purpose
        int n = ntr[k] + nev[k];
        char **canon = malloc(sizeof(char *) * (size_t)n);
        for (int i = 0; i < n; i++) {
            const task_problem *p = i < ntr[k] ? &tr[i] : &ev[i - ntr[k]];
            char buf[256];
            task_canonical(p, buf, sizeof buf);
            uint64_t h = task_fnv1a64(buf);
            assert_int_equal(p->split, i < ntr[k] ? TASK_SPLIT_TRAIN : TASK_SPLIT_EVAL);
            assert_int_equal(h % 8 == 0, p->split == TASK_SPLIT_EVAL);
            assert_int_equal(task_split_of(p), p->split);
            canon[i] = strdup(buf);
        }
        qsort(canon, (size_t)n, sizeof *canon, cmp_str);
        for (int i = 1; i < n; i++) assert_true(strcmp(canon[i - 1], canon[i]) != 0); // no duplicates, no overlap
        for (int i = 0; i < n; i++) free(canon[i]);
        free(canon);
        task_problems_free(tr, ntr[k]);
        task_problems_free(ev, nev[k]);
    }
    // the canonical forms the hash is taken of
    task_problem p = {.kind = TASK_ARITHMETIC, .op = '+', .a = 4738, .b = 925};
    char buf[256];
    assert_string_equal(task_canonical(&p, buf, sizeof buf), "add:4738:925");
    task_problem q = {.kind = TASK_COUNTDOWN, .n_numbers = 4, .numbers = {3, 7, 25, 2}, .target = 52};
    assert_string_equal(task_canonical(&q, buf, sizeof buf), "cd:2,3,7,25:52");
    assert_true(task_fnv1a64("") == 14695981039346656037ULL);
    assert_true(task_fnv1a64("a") == 0xaf63dc4c8601ec8cULL);
}

static int ndigits(uint64_t v) {
    char b[32];
    return snprintf(b, sizeof b, "%llu", (unsigned long long)v);
}

static void test_labels_digits(void **state) {
    (void)state;
    int n = 2500, seen[5] = {0};
    task_problem *ps = gen(TASK_ARITHMETIC, "add:1-3,sub:2,mul:2x1,mul:1-3x4,sub:3-4x1-2", 3, TASK_SPLIT_TRAIN, n);
    for (int i = 0; i < n; i++) {
        const task_problem *p = &ps[i];
        char want[64], prompt[96];
        int da = ndigits(p->a), db = ndigits(p->b);
        if (p->op == '*') snprintf(want, sizeof want, "mul-%dx%d", da, db);
        else if (da == db) snprintf(want, sizeof want, "%s-%d", p->op == '+' ? "add" : "sub", da);
        else snprintf(want, sizeof want, "%s-%dx%d", p->op == '+' ? "add" : "sub", da, db);
        assert_string_equal(p->difficulty, want);
        if (p->op == '+') { assert_true(da >= 1 && da <= 3 && db == da); seen[0]++; }
        if (p->op == '-' && da == 2) { assert_int_equal(db, 2); seen[1]++; }
        if (p->op == '-' && da != 2) { assert_true(da >= 3 && da <= 4 && db >= 1 && db <= 2); seen[4]++; }
        if (p->op == '*' && db == 1) { assert_int_equal(da, 2); seen[2]++; }
        if (p->op == '*' && db != 1) { assert_true(da <= 3 && db == 4); seen[3]++; }
        long long a = (long long)p->a, b = (long long)p->b;
        snprintf(want, sizeof want, "%lld", p->op == '+' ? a + b : p->op == '-' ? a - b : a * b);
        assert_string_equal(p->answer, want);
        snprintf(prompt, sizeof prompt, "What is %lld %c %lld?", a, p->op, b);
        assert_string_equal(p->prompt, prompt);
    }
    for (int k = 0; k < 5; k++) assert_true(seen[k] > n / 10); // every item is drawn
    task_problems_free(ps, n);

    ps = gen(TASK_ARITHMETIC, "add:18,mul:18x18", 5, TASK_SPLIT_EVAL, 50);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(ndigits(ps[i].a), 18);
        assert_int_equal(ndigits(ps[i].b), 18);
    }
    task_problems_free(ps, 50);
}

// add:1 has 100 problems (a, b in 0..9): exactly those of the split can be drawn, one more fails.
static void test_space_exhausted(void **state) {
    (void)state;
    for (int s = 0; s < 2; s++) {
        int count = 0;
        for (int a = 0; a < 10; a++)
            for (int b = 0; b < 10; b++) {
                task_problem p = {.kind = TASK_ARITHMETIC, .op = '+', .a = (uint64_t)a, .b = (uint64_t)b};
                count += task_split_of(&p) == (task_split)s;
            }
        assert_true(count > 0 && count < 100);
        task_problem *ps = gen(TASK_ARITHMETIC, "add:1", 2, (task_split)s, count);
        task_problems_free(ps, count);
        task_spec sp;
        spec_ok(TASK_ARITHMETIC, "add:1", &sp);
        ds_error err = {{0}};
        assert_int_equal(task_generate(&sp, 2, (task_split)s, count + 1, &ps, &err), DS_ERR_ARG);
        assert_null(ps);
        char want[64];
        snprintf(want, sizeof want, "only %d distinct", count);
        assert_non_null(strstr(err.msg, want));
    }
    task_spec sp;
    spec_ok(TASK_ARITHMETIC, "add:2", &sp);
    task_problem *ps;
    ds_error err;
    assert_int_equal(task_generate(&sp, 1, TASK_SPLIT_TRAIN, 0, &ps, &err), DS_ERR_ARG);
    assert_int_equal(task_generate(&sp, 1, TASK_SPLIT_TRAIN, TASK_MAX_N + 1, &ps, &err), DS_ERR_ARG);
}

static void test_countdown_problems(void **state) {
    (void)state;
    int n = 400, per_n[7] = {0};
    task_problem *ps = gen(TASK_COUNTDOWN, "n:3-5,max:30", 11, TASK_SPLIT_TRAIN, n);
    for (int i = 0; i < n; i++) {
        const task_problem *p = &ps[i];
        char want[256];
        assert_true(p->n_numbers >= 3 && p->n_numbers <= 5);
        per_n[p->n_numbers]++;
        snprintf(want, sizeof want, "cd-%d", p->n_numbers);
        assert_string_equal(p->difficulty, want);
        assert_true(p->target >= 1 && p->target <= TASK_CD_MAX_TARGET);
        int k = snprintf(want, sizeof want, "Using the numbers ");
        for (int j = 0; j < p->n_numbers; j++) {
            assert_true(p->numbers[j] >= 1 && p->numbers[j] <= 30);
            assert_true(p->numbers[j] != p->target);
            k += snprintf(want + k, sizeof want - (size_t)k, "%lld, ", (long long)p->numbers[j]);
        }
        snprintf(want + k, sizeof want - (size_t)k,
                 "make %lld. Use each number at most once, with + - * / and parentheses.", (long long)p->target);
        assert_string_equal(p->prompt, want);
        long nodes = 10000000;
        assert_int_equal(countdown_solvable(p->numbers, p->n_numbers, p->target, &nodes), 1);
        assert_null(p->answer);
    }
    for (int k = 3; k <= 5; k++) assert_true(per_n[k] > n / 6);
    task_problems_free(ps, n);
}

// One guess line "7 * 3 = 21 vs 30, left 21 9, 21 + 9 = 30 vs 30, yes": every step combines
// two values of the current list (larger first, a positive whole result) and echoes the
// target, "left" is the result then the untouched values, "yes" exactly when a result is the
// target, "no" only once one value is left. *steps counts steps, *yes the "yes" guesses (the
// caller's count must be 0 on entry: nothing may follow the "yes").
static void check_cd_guess(const task_problem *p, const char *line, int *steps, int *yes) {
    long long v[8], target = p->target, a, b, r, vs;
    int n = p->n_numbers, used;
    for (int i = 0; i < n; i++) v[i] = p->numbers[i];
    char op;
    assert_int_equal(*yes, 0);
    const char *l = line;
    for (;;) {
        assert_int_equal(sscanf(l, "%lld %c %lld = %lld vs %lld%n", &a, &op, &b, &r, &vs, &used), 5);
        assert_true(vs == target);
        l += used;
        (*steps)++;
        assert_true(a >= b && r > 0);
        assert_true(op == '+' ? a + b == r : op == '-' ? a - b == r : op == '*' ? a * b == r : a == r * b);
        int ia = -1, ib = -1;
        for (int i = 0; i < n; i++)
            if (ia < 0 && v[i] == a) ia = i;
        for (int i = 0; i < n; i++)
            if (ib < 0 && i != ia && v[i] == b) ib = i;
        assert_true(ia >= 0 && ib >= 0);
        long long w[8];
        int m = 0;
        w[m++] = r;
        for (int i = 0; i < n; i++)
            if (i != ia && i != ib) w[m++] = v[i];
        if (r == target) {
            assert_string_equal(l, ", yes");
            (*yes)++;
            return;
        }
        if (m == 1) {
            assert_string_equal(l, ", no");
            return;
        }
        assert_int_equal(strncmp(l, ", left", 6), 0);
        l += 6;
        // the result, then the other values; with equal values, which copy a step took is not
        // visible, so the rest is compared as a multiset (every later check is by value too)
        long long x, got[8];
        assert_int_equal(sscanf(l, " %lld%n", &x, &used), 1);
        assert_true(x == r);
        l += used;
        for (int i = 1; i < m; i++, l += used) assert_int_equal(sscanf(l, " %lld%n", &got[i], &used), 1);
        for (int i = 1; i < m; i++) {
            int j = i;
            while (j < m && got[j] != w[i]) j++;
            assert_true(j < m);
            long long tmp = got[i]; // the match to position i: got[i+1..m) stays the unmatched rest
            got[i] = got[j];
            got[j] = tmp;
        }
        assert_int_equal(strncmp(l, ", ", 2), 0);
        l += 2;
        memcpy(v, w, sizeof w);
        n = m;
    }
}

// The local arithmetic of every step line of a trace.
static void check_lines(const char *trace, const task_problem *p, task_cd_trace style) {
    task_kind kind = p->kind;
    char *copy = strdup(trace), *save = NULL, prev[80] = "", opnd[2][40] = {"", ""};
    int backs = 0, yes = 0, steps = 0, cont = 0, after_step = 0;
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        int x, y, c, s, w, o, t;
        long long a;
        char op, xs[40], ys[40];
        if (kind == TASK_ARITHMETIC) {
            // "473 + 92" right after a step line: each operand is the one above without its last
            // digit ("0" once empty; a multiplier stays); "..., result R": R is the digit
            // written, then the result above (a new operation starts with one digit)
            const char *res = strstr(l, ", result ");
            if (res) {
                const char *wr = strstr(l, "write ");
                assert_non_null(wr);
                assert_int_equal(res[9], wr[6]);
                if (cont) assert_string_equal(res + 10, prev);
                else assert_int_equal(strlen(res + 9), 1);
                snprintf(prev, sizeof prev, "%s", res + 9);
                after_step = 1;
            } else if (sscanf(l, "%39[0-9] %c %39[0-9]", xs, &op, ys) == 3 && strlen(l) == strlen(xs) + strlen(ys) + 3) {
                cont = after_step;
                for (int k = 0; k < 2 && cont; k++) {
                    char want[40];
                    size_t n = strlen(opnd[k]);
                    snprintf(want, sizeof want, "%.*s", (int)(n > 1 ? n - 1 : 0), opnd[k]);
                    if (n <= 1) snprintf(want, sizeof want, "0");
                    if (k == 1 && op == '*') snprintf(want, sizeof want, "%s", opnd[1]);
                    assert_string_equal(k ? ys : xs, want);
                }
                snprintf(opnd[0], sizeof opnd[0], "%s", xs);
                snprintf(opnd[1], sizeof opnd[1], "%s", ys);
                after_step = 0;
            } else {
                cont = after_step = 0;
            }
            if (sscanf(l, "%d + %d + %d = %d, write %d, carry %d", &x, &y, &c, &s, &w, &o) == 6)
                assert_true(x + y + c == s && s % 10 == w && s / 10 == o && x <= 9 && y <= 9 && c <= 1);
            else if (sscanf(l, "%d * %d + %d = %d, write %d, carry %d", &x, &y, &c, &s, &w, &o) == 6)
                assert_true(x * y + c == s && s % 10 == w && s / 10 == o && x <= 9 && y <= 9);
            else if (sscanf(l, "%d - %d - %d = %d, add 10: %d, write %d, borrow %d", &x, &y, &c, &s, &t, &w, &o) == 7)
                assert_true(x - y - c == s && s < 0 && t == s + 10 && w == t && o == 1);
            else if (sscanf(l, "%d - %d - %d = %d, write %d, borrow %d", &x, &y, &c, &s, &w, &o) == 6)
                assert_true(x - y - c == s && s >= 0 && w == s && o == 0);
        } else if (style == TASK_CD_TRACE_SEARCH) {
            long long b, r;
            if (sscanf(l, "%lld %c %lld = %lld, left", &a, &op, &b, &r) == 4) {
                steps++;
                assert_true(a >= b);
                assert_true(op == '+' ? a + b == r : op == '-' ? a - b == r : op == '*' ? a * b == r : a == r * b);
                assert_true(r > 0);
            } else if (!strcmp(l, "no, back")) {
                backs++;
            }
        } else if (!strcmp(l, "<think>")) {
            continue;
        } else if (!after_step) {
            assert_int_equal(sscanf(l, "target %lld", &a), 1);
            assert_true(a == p->target);
            after_step = 1;
        } else if (!strcmp(l, "</think>")) {
            break;
        } else {
            check_cd_guess(p, l, &steps, &yes);
        }
    }
    if (kind == TASK_COUNTDOWN && style == TASK_CD_TRACE_SEARCH) {
        assert_true(backs <= 6);
        assert_true(steps >= 1);
        assert_non_null(strstr(trace, "\nfound: "));
    } else if (kind == TASK_COUNTDOWN) {
        assert_true(steps >= 1);
        assert_int_equal(yes, 1); // exactly one guess says "yes", and it is the last
    }
    free(copy);
}

// Every trace of n generated problems (both countdown styles) scores 1 and passes check_lines.
static void traces_for(task_kind k, const char *spec, int n, uint64_t seed) {
    task_problem *ps = gen(k, spec, seed, seed % 3 ? TASK_SPLIT_TRAIN : TASK_SPLIT_EVAL, n);
    for (int style = 0; style < (k == TASK_COUNTDOWN ? 2 : 1); style++)
        for (int i = 0; i < n; i++) {
            char *t = NULL;
            ds_error err = {{0}};
            ds_status st = task_trace(&ps[i], (task_cd_trace)style, &t, &err);
            if (st) print_error("%s: %s\n", ps[i].prompt, err.msg);
            assert_int_equal(st, DS_OK);
            assert_true(!strncmp(t, "<think>\n", 8));
            assert_non_null(strstr(t, "\n</think>\n\n\\boxed{"));
            reward_result r;
            reward_score(&ps[i], t, NULL, &r);
            if (r.accuracy != 1.0f || r.format != 1.0f) print_error("%s\n%s\n", ps[i].prompt, t);
            assert_true(r.accuracy == 1.0f && r.format == 1.0f);
            check_lines(t, &ps[i], (task_cd_trace)style);
            free(t);
        }
    task_problems_free(ps, n);
}

// The guess trace's point: how many failed guesses come before the "yes" must not be
// predictable. Their number is geometric (each guess is the last with probability 1/4):
// mean ~3 over 3-number problems, often 0, sometimes 10 or more.
static void test_guess_fail_counts(void **state) {
    (void)state;
    enum { N = 1000 };
    task_problem *ps = gen(TASK_COUNTDOWN, "n:3,max:15", 31, TASK_SPLIT_TRAIN, N);
    int total = 0, zero = 0, ten = 0;
    for (int i = 0; i < N; i++) {
        char *t = NULL;
        ds_error err = {{0}};
        assert_int_equal(task_trace(&ps[i], TASK_CD_TRACE_GUESS, &t, &err), DS_OK);
        int fails = 0;
        for (const char *q = t; (q = strstr(q, ", no\n")); q++) fails++;
        total += fails;
        zero += fails == 0;
        ten += fails >= 10;
        free(t);
    }
    task_problems_free(ps, N);
    double mean = (double)total / N;
    if (mean < 2.5 || mean > 3.5) print_error("mean failed guesses %.2f\n", mean);
    assert_true(mean >= 2.5 && mean <= 3.5);
    assert_true(zero > N / 6 && zero < N / 3); // P(0) = 1/4
    assert_true(ten > 0 && ten < N / 10);       // P(>= 10) = 0.75^10 = 5.6%
}

static void test_traces_score(void **state) {
    (void)state;
    traces_for(TASK_ARITHMETIC, "add:1-3", 1000, 1);
    traces_for(TASK_ARITHMETIC, "add:10", 300, 2);
    traces_for(TASK_ARITHMETIC, "add:18", 100, 3);
    traces_for(TASK_ARITHMETIC, "sub:1-6", 1000, 4);
    traces_for(TASK_ARITHMETIC, "sub:12", 200, 5);
    traces_for(TASK_ARITHMETIC, "add:1-6x1-6,sub:1-6x1-6", 1000, 14);
    traces_for(TASK_ARITHMETIC, "mul:1-3x1-3", 1000, 6);
    traces_for(TASK_ARITHMETIC, "mul:4x3", 300, 7);
    traces_for(TASK_ARITHMETIC, "mul:18x18,mul:1x18,mul:18x1", 60, 8);
    traces_for(TASK_COUNTDOWN, "n:2,max:100", 150, 9);
    traces_for(TASK_COUNTDOWN, "n:3", 1000, 10);
    traces_for(TASK_COUNTDOWN, "n:4", 800, 11);
    traces_for(TASK_COUNTDOWN, "n:5,max:50", 500, 12);
    traces_for(TASK_COUNTDOWN, "n:6,max:1000", 150, 13);
}

// The exact documented formats on fixed problems.
static void test_trace_examples(void **state) {
    (void)state;
    char *t;
    ds_error err;
    task_problem add = {.kind = TASK_ARITHMETIC, .op = '+', .a = 4738, .b = 925, .prompt = "p", .answer = "5663"};
    assert_int_equal(task_trace(&add, TASK_CD_TRACE_SEARCH, &t, &err), DS_OK);
    assert_string_equal(t, "<think>\n4738 + 925\n8 + 5 + 0 = 13, write 3, carry 1, result 3\n"
                           "473 + 92\n3 + 2 + 1 = 6, write 6, carry 0, result 63\n"
                           "47 + 9\n7 + 9 + 0 = 16, write 6, carry 1, result 663\n"
                           "4 + 0\n4 + 0 + 1 = 5, write 5, carry 0, result 5663\n</think>\n\n\\boxed{5663}");
    free(t);
    task_problem carry = {.kind = TASK_ARITHMETIC, .op = '+', .a = 95, .b = 7, .prompt = "p", .answer = "102"};
    assert_int_equal(task_trace(&carry, TASK_CD_TRACE_SEARCH, &t, &err), DS_OK);
    assert_non_null(strstr(t, "9 + 0\n9 + 0 + 1 = 10, write 0, carry 1, result 02\n"
                              "0 + 0\n0 + 0 + 1 = 1, write 1, carry 0, result 102\n</think>"));
    free(t);
    task_problem sub = {.kind = TASK_ARITHMETIC, .op = '-', .a = 925, .b = 4738, .prompt = "p", .answer = "-3813"};
    assert_int_equal(task_trace(&sub, TASK_CD_TRACE_SEARCH, &t, &err), DS_OK);
    assert_string_equal(t, "<think>\n925 < 4738, so compute 4738 - 925 and negate\n"
                           "4738 - 925\n8 - 5 - 0 = 3, write 3, borrow 0, result 3\n"
                           "473 - 92\n3 - 2 - 0 = 1, write 1, borrow 0, result 13\n"
                           "47 - 9\n7 - 9 - 0 = -2, add 10: 8, write 8, borrow 1, result 813\n"
                           "4 - 0\n4 - 0 - 1 = 3, write 3, borrow 0, result 3813\n"
                           "negate: -3813\n</think>\n\n\\boxed{-3813}");
    free(t);
    task_problem zero = {.kind = TASK_ARITHMETIC, .op = '-', .a = 401, .b = 400, .prompt = "p", .answer = "1"};
    assert_int_equal(task_trace(&zero, TASK_CD_TRACE_SEARCH, &t, &err), DS_OK);
    assert_non_null(strstr(t, "4 - 4 - 0 = 0, write 0, borrow 0, result 001\ndrop leading zeros: 1\n</think>"));
    free(t);
    task_problem mul1 = {.kind = TASK_ARITHMETIC, .op = '*', .a = 83, .b = 2, .prompt = "p", .answer = "166"};
    assert_int_equal(task_trace(&mul1, TASK_CD_TRACE_SEARCH, &t, &err), DS_OK);
    assert_string_equal(t, "<think>\n83 * 2\n3 * 2 + 0 = 6, write 6, carry 0, result 6\n"
                           "8 * 2\n8 * 2 + 0 = 16, write 6, carry 1, result 66\n"
                           "0 * 2\n0 * 2 + 1 = 1, write 1, carry 0, result 166\n</think>\n\n\\boxed{166}");
    free(t);
    task_problem mul = {.kind = TASK_ARITHMETIC, .op = '*', .a = 4738, .b = 25, .prompt = "p", .answer = "118450"};
    assert_int_equal(task_trace(&mul, TASK_CD_TRACE_SEARCH, &t, &err), DS_OK);
    assert_string_equal(t, "<think>\n4738 * 25\n"
                           "4738 * 5\n8 * 5 + 0 = 40, write 0, carry 4, result 0\n"
                           "473 * 5\n3 * 5 + 4 = 19, write 9, carry 1, result 90\n"
                           "47 * 5\n7 * 5 + 1 = 36, write 6, carry 3, result 690\n"
                           "4 * 5\n4 * 5 + 3 = 23, write 3, carry 2, result 3690\n"
                           "0 * 5\n0 * 5 + 2 = 2, write 2, carry 0, result 23690\npartial 1: 23690\n"
                           "4738 * 2\n8 * 2 + 0 = 16, write 6, carry 1, result 6\n"
                           "473 * 2\n3 * 2 + 1 = 7, write 7, carry 0, result 76\n"
                           "47 * 2\n7 * 2 + 0 = 14, write 4, carry 1, result 476\n"
                           "4 * 2\n4 * 2 + 1 = 9, write 9, carry 0, result 9476\npartial 2: 94760\n"
                           "23690 + 94760\n0 + 0 + 0 = 0, write 0, carry 0, result 0\n"
                           "2369 + 9476\n9 + 6 + 0 = 15, write 5, carry 1, result 50\n"
                           "236 + 947\n6 + 7 + 1 = 14, write 4, carry 1, result 450\n"
                           "23 + 94\n3 + 4 + 1 = 8, write 8, carry 0, result 8450\n"
                           "2 + 9\n2 + 9 + 0 = 11, write 1, carry 1, result 18450\n"
                           "0 + 0\n0 + 0 + 1 = 1, write 1, carry 0, result 118450\nsum: 118450\n</think>\n\n\\boxed{118450}");
    free(t);
    task_problem wrong = add;
    wrong.answer = "5664";
    assert_int_equal(task_trace(&wrong, TASK_CD_TRACE_SEARCH, &t, &err), DS_ERR_ARG);
    assert_null(t);

    // countdown, search: a failed step, the found line; a given number that is the target
    task_problem cd2 = {.kind = TASK_COUNTDOWN, .prompt = "p", .n_numbers = 2, .numbers = {3, 4}, .target = 7};
    assert_int_equal(task_trace(&cd2, TASK_CD_TRACE_SEARCH, &t, &err), DS_OK);
    assert_string_equal(t, "<think>\nnumbers 3 4, target 7\n4 - 3 = 1, left 1\nno, back\n4 + 3 = 7, left 7\n"
                           "found: 4+3 = 7\n</think>\n\n\\boxed{4+3}");
    free(t);
    task_problem given = {.kind = TASK_COUNTDOWN, .prompt = "p", .n_numbers = 2, .numbers = {3, 7}, .target = 7};
    assert_int_equal(task_trace(&given, TASK_CD_TRACE_SEARCH, &t, &err), DS_OK);
    assert_string_equal(t, "<think>\nnumbers 3 7, target 7\nfound: 7 = 7\n</think>\n\n\\boxed{7}");
    free(t);
    // countdown, guess: failed guesses (the seeded count and walks of this problem), then the
    // reaching one; one that reaches the target in its first step; a given number
    task_problem cd = {.kind = TASK_COUNTDOWN, .prompt = "p", .n_numbers = 3, .numbers = {3, 7, 9}, .target = 30};
    assert_int_equal(task_trace(&cd, TASK_CD_TRACE_GUESS, &t, &err), DS_OK);
    assert_string_equal(t, "<think>\ntarget 30\n"
                           "9 + 7 = 16 vs 30, left 16 3, 16 - 3 = 13 vs 30, no\n"
                           "9 - 3 = 6 vs 30, left 6 7, 7 - 6 = 1 vs 30, no\n"
                           "7 + 3 = 10 vs 30, left 10 9, 10 + 9 = 19 vs 30, no\n"
                           "7 * 3 = 21 vs 30, left 21 9, 21 + 9 = 30 vs 30, yes\n</think>\n\n\\boxed{7*3+9}");
    free(t);
    task_problem two = {.kind = TASK_COUNTDOWN, .prompt = "p", .n_numbers = 3, .numbers = {5, 8, 2}, .target = 6};
    assert_int_equal(task_trace(&two, TASK_CD_TRACE_GUESS, &t, &err), DS_OK);
    assert_string_equal(t, "<think>\ntarget 6\n8 + 2 = 10 vs 6, left 10 5, 10 / 5 = 2 vs 6, no\n"
                           "8 - 2 = 6 vs 6, yes\n</think>\n\n\\boxed{8-2}");
    free(t);
    assert_int_equal(task_trace(&given, TASK_CD_TRACE_GUESS, &t, &err), DS_OK);
    assert_string_equal(t, "<think>\ntarget 7\n7 vs 7, yes\n</think>\n\n\\boxed{7}");
    free(t);
    // unsolvable (both styles); parentheses
    task_problem none = {.kind = TASK_COUNTDOWN, .prompt = "p", .n_numbers = 2, .numbers = {2, 3}, .target = 100};
    for (int style = 0; style < 2; style++) {
        assert_int_equal(task_trace(&none, (task_cd_trace)style, &t, &err), DS_ERR_ARG);
        assert_non_null(strstr(err.msg, "no solution"));
        assert_null(t);
    }
    task_problem parens = {.kind = TASK_COUNTDOWN, .prompt = "p", .n_numbers = 3, .numbers = {2, 3, 4}, .target = 20};
    for (int style = 0; style < 2; style++) {
        assert_int_equal(task_trace(&parens, (task_cd_trace)style, &t, &err), DS_OK);
        assert_int_equal(reward_accuracy(&parens, t), 1);
        free(t);
    }
}

static void write_text(const char *path, const char *s) { write_bytes(path, s, strlen(s)); }

static void test_jsonl_roundtrip(void **state) {
    (void)state;
    for (int k = 0; k < 2; k++) {
        int n = 60;
        task_problem *ps = gen((task_kind)k, k ? "n:3-4" : "add:1-3,sub:3,mul:2x2", 21, TASK_SPLIT_EVAL, n), *back;
        int nb;
        ds_error err = {{0}};
        assert_int_equal(task_write_jsonl(tpath("rt.jsonl"), ps, n, true, TASK_CD_TRACE_SEARCH, &err), DS_OK);
        assert_int_equal(task_load_jsonl(tpath("rt.jsonl"), &back, &nb, &err), DS_OK);
        assert_int_equal(nb, n);
        same_problems(ps, back, n);
        for (int i = 0; i < n; i++)
            if (k == 0) assert_true(back[i].op == ps[i].op && back[i].a == ps[i].a && back[i].b == ps[i].b);
        task_problems_free(back, nb);
        task_problems_free(ps, n);
    }
}

static void test_jsonl_handwritten(void **state) {
    (void)state;
    write_text(tpath("hand.jsonl"),
               "{\"task\": \"arithmetic\", \"prompt\": \"What is 12 + 30?\", \"answer\": \"42\"}\r\n"
               "\n"
               "   \n"
               "{\"task\": \"arithmetic\", \"prompt\": \"Compute 2+2.\", \"answer\": 4, \"note\": [1, 2]}\n"
               "{\"task\": \"arithmetic\", \"prompt\": \"What is 3 - 10?\", \"answer\": -7, \"difficulty\": \"mine\"}\n"
               "{\"task\": \"countdown\", \"prompt\": \"Make 24 from 3 3 8 8.\", \"numbers\": [3, 3, 8, 8], \"target\": 24}\n"
               "{\"task\": \"countdown\", \"prompt\": \"x\", \"numbers\": [2, 3], \"target\": 100, \"split\": \"eval\"}");
    task_problem *ps;
    int n;
    ds_error err = {{0}};
    ds_status st = task_load_jsonl(tpath("hand.jsonl"), &ps, &n, &err);
    if (st) print_error("%s\n", err.msg);
    assert_int_equal(st, DS_OK);
    assert_int_equal(n, 5);
    assert_string_equal(ps[0].difficulty, "custom");
    assert_true(ps[0].op == '+' && ps[0].a == 12 && ps[0].b == 30);
    assert_string_equal(ps[0].answer, "42");
    assert_int_equal(ps[0].split, task_split_of(&ps[0]));
    assert_int_equal(ps[1].op, 0);
    assert_string_equal(ps[1].answer, "4");
    assert_string_equal(ps[2].answer, "-7");
    assert_string_equal(ps[2].difficulty, "mine");
    assert_true(ps[3].kind == TASK_COUNTDOWN && ps[3].n_numbers == 4 && ps[3].numbers[2] == 8 && ps[3].target == 24);
    assert_int_equal(ps[4].split, TASK_SPLIT_EVAL);

    char *t;
    assert_int_equal(task_trace(&ps[0], TASK_CD_TRACE_SEARCH, &t, &err), DS_OK);
    assert_int_equal(reward_accuracy(&ps[0], t), 1);
    free(t);
    assert_int_equal(task_trace(&ps[1], TASK_CD_TRACE_SEARCH, &t, &err), DS_ERR_ARG); // no operands: scored, not traced
    assert_int_equal(reward_accuracy(&ps[1], "r</think>\\boxed{4}"), 1);
    // a file with traces cannot be written for it: nothing is left behind
    assert_int_equal(task_write_jsonl(tpath("notrace.jsonl"), ps, 2, true, TASK_CD_TRACE_SEARCH, &err), DS_ERR_ARG);
    assert_int_equal(access(tpath("notrace.jsonl"), F_OK), -1);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q 'notrace.jsonl.tmp'", g_dir);
    assert_int_not_equal(system(cmd), 0);
    assert_int_equal(task_write_jsonl(tpath("notrace.jsonl"), ps, 2, false, TASK_CD_TRACE_SEARCH, &err), DS_OK);
    assert_int_equal(task_trace(&ps[2], TASK_CD_TRACE_SEARCH, &t, &err), DS_OK);
    assert_non_null(strstr(t, "\\boxed{-7}"));
    free(t);
    assert_int_equal(task_trace(&ps[3], TASK_CD_TRACE_SEARCH, &t, &err), DS_OK);
    assert_int_equal(reward_accuracy(&ps[3], t), 1);
    free(t);
    task_problems_free(ps, n);
}

static void load_bad(const char *line, const char *want) {
    char text[1024];
    snprintf(text, sizeof text, "{\"task\":\"arithmetic\",\"prompt\":\"What is 1 + 1?\",\"answer\":\"2\"}\n\n%s\n", line);
    write_text(tpath("bad.jsonl"), text);
    task_problem *ps = (task_problem *)1;
    int n = -1;
    ds_error err = {{0}};
    assert_int_equal(task_load_jsonl(tpath("bad.jsonl"), &ps, &n, &err), DS_ERR_FORMAT);
    assert_null(ps);
    assert_int_equal(n, 0);
    if (!strstr(err.msg, "bad.jsonl:3: ") || !strstr(err.msg, want))
        print_error("'%s': '%s' lacks 'bad.jsonl:3: ' or '%s'\n", line, err.msg, want);
    assert_non_null(strstr(err.msg, "bad.jsonl:3: "));
    assert_non_null(strstr(err.msg, want));
}

static void test_jsonl_malformed(void **state) {
    (void)state;
    load_bad("not json", "not a JSON object");
    load_bad("[1, 2]", "not a JSON object");
    load_bad("{\"task\":\"arithmetic\",\"prompt\":\"x\",\"answer\":\"2\"", "not a JSON object");
    load_bad("{\"prompt\":\"x\",\"answer\":\"2\"}", "missing key 'task'");
    load_bad("{\"task\":\"algebra\",\"prompt\":\"x\",\"answer\":\"2\"}", "key 'task'");
    load_bad("{\"task\":3,\"prompt\":\"x\",\"answer\":\"2\"}", "key 'task'");
    load_bad("{\"task\":\"arithmetic\",\"answer\":\"2\"}", "missing key 'prompt'");
    load_bad("{\"task\":\"arithmetic\",\"prompt\":\"\",\"answer\":\"2\"}", "key 'prompt'");
    load_bad("{\"task\":\"arithmetic\",\"prompt\":\"x\"}", "missing key 'answer'");
    load_bad("{\"task\":\"arithmetic\",\"prompt\":\"x\",\"answer\":\"12a\"}", "key 'answer'");
    load_bad("{\"task\":\"arithmetic\",\"prompt\":\"x\",\"answer\":\"+12\"}", "key 'answer'");
    load_bad("{\"task\":\"arithmetic\",\"prompt\":\"x\",\"answer\":1.5}", "key 'answer'");
    load_bad("{\"task\":\"arithmetic\",\"prompt\":\"x\",\"answer\":null}", "key 'answer'");
    load_bad("{\"task\":\"arithmetic\",\"prompt\":\"What is 2 + 2?\",\"answer\":\"5\"}", "key 'answer'");
    load_bad("{\"task\":\"arithmetic\",\"prompt\":\"x\",\"answer\":\"2\",\"difficulty\":7}", "key 'difficulty'");
    load_bad("{\"task\":\"arithmetic\",\"prompt\":\"x\",\"answer\":\"2\",\"split\":\"test\"}", "key 'split'");
    load_bad("{\"task\":\"countdown\",\"prompt\":\"x\",\"target\":5}", "missing key 'numbers'");
    load_bad("{\"task\":\"countdown\",\"prompt\":\"x\",\"numbers\":[1,2]}", "missing key 'target'");
    load_bad("{\"task\":\"countdown\",\"prompt\":\"x\",\"numbers\":5,\"target\":5}", "key 'numbers'");
    load_bad("{\"task\":\"countdown\",\"prompt\":\"x\",\"numbers\":[],\"target\":5}", "key 'numbers'");
    load_bad("{\"task\":\"countdown\",\"prompt\":\"x\",\"numbers\":[1,2,3,4,5,6,7],\"target\":5}", "key 'numbers'");
    load_bad("{\"task\":\"countdown\",\"prompt\":\"x\",\"numbers\":[1,0],\"target\":5}", "key 'numbers'");
    load_bad("{\"task\":\"countdown\",\"prompt\":\"x\",\"numbers\":[1,2.5],\"target\":5}", "key 'numbers'");
    load_bad("{\"task\":\"countdown\",\"prompt\":\"x\",\"numbers\":[1,\"2\"],\"target\":5}", "key 'numbers'");
    load_bad("{\"task\":\"countdown\",\"prompt\":\"x\",\"numbers\":[1,2],\"target\":\"5\"}", "key 'target'");
    load_bad("{\"task\":\"countdown\",\"prompt\":\"x\",\"numbers\":[1,2],\"target\":1e300}", "key 'target'");

    write_text(tpath("empty.jsonl"), "\n  \n");
    task_problem *ps;
    int n;
    ds_error err;
    assert_int_equal(task_load_jsonl(tpath("empty.jsonl"), &ps, &n, &err), DS_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "no problems"));
    assert_int_equal(task_load_jsonl(tpath("missing.jsonl"), &ps, &n, &err), DS_ERR_IO);
    assert_non_null(strstr(err.msg, "missing.jsonl"));
    assert_int_equal(task_write_jsonl(tpath("nodir/x.jsonl"), NULL, 0, false, TASK_CD_TRACE_SEARCH, &err), DS_ERR_IO);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_parse),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_splits),
        cmocka_unit_test(test_labels_digits),
        cmocka_unit_test(test_space_exhausted),
        cmocka_unit_test(test_countdown_problems),
        cmocka_unit_test(test_guess_fail_counts),
        cmocka_unit_test(test_trace_examples),
        cmocka_unit_test(test_traces_score),
        cmocka_unit_test(test_jsonl_roundtrip),
        cmocka_unit_test(test_jsonl_handwritten),
        cmocka_unit_test(test_jsonl_malformed),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
