// Process labels for the countdown guess trace: a program replays the reply's moves and says,
// byte by byte, which values it fixes (and whether the reply got them right) and which it
// leaves to the model's choice. The grammar is the one countdown_trace writes (task.h):
//   "target T\n"
//   guess lines: step (", " step)* then ", yes\n" or ", no\n"
//     step = "A op B = R vs T" followed by ", left V1 V2 ..." when more than one value is left
//   after a "yes" line: "</think>\n\n\\boxed{EXPR}"
// Each guess starts again from the prompt's numbers. After the first wrong value of a line the
// rest of the line is left unlabelled: what follows a wrong step is neither right nor wrong.
#include <string.h>

#include "rl/reward.h"

typedef struct {
    const char *s;
    size_t n, i;
    uint8_t *lab;
} proc_cur;

static bool proc_lit(proc_cur *c, const char *lit) {
    size_t k = strlen(lit);
    if (c->n - c->i < k || memcmp(c->s + c->i, lit, k)) return false;
    c->i += k;
    return true;
}

// A non-negative decimal integer of 1-18 digits; [*b, c->i) is its span.
static bool proc_int(proc_cur *c, int64_t *v, size_t *b) {
    *b = c->i;
    int64_t x = 0;
    int d = 0;
    while (c->i < c->n && c->s[c->i] >= '0' && c->s[c->i] <= '9' && d < 18) {
        x = x * 10 + (c->s[c->i++] - '0');
        d++;
    }
    *v = x;
    return d > 0;
}

static void proc_mark(proc_cur *c, size_t b, size_t e, uint8_t l) {
    for (size_t k = b; k < e && k < c->n; k++) c->lab[k] = l;
}

// Marks [b, c->i) right or wrong; returns ok.
static bool proc_judge(proc_cur *c, size_t b, bool ok) {
    proc_mark(c, b, c->i, ok ? REWARD_PROC_OK : REWARD_PROC_BAD);
    return ok;
}

// Removes one occurrence of x from v[0..*n); false when absent.
static bool proc_take(int64_t *v, int *n, int64_t x) {
    for (int k = 0; k < *n; k++)
        if (v[k] == x) {
            memmove(v + k, v + k + 1, sizeof *v * (size_t)(*n - k - 1));
            (*n)--;
            return true;
        }
    return false;
}

// The move a op b as the traces make them: larger operand first, a positive whole result.
static bool proc_apply(int64_t a, char op, int64_t b, int64_t *r) {
    if (a < b) return false;
    switch (op) {
    case '+': return !__builtin_add_overflow(a, b, r);
    case '-': *r = a - b; return a > b;
    case '*': return !__builtin_mul_overflow(a, b, r);
    case '/': *r = b ? a / b : 0; return b > 0 && a % b == 0;
    }
    return false;
}

// 1: the line ended with "yes", 0: a finished or abandoned line, -1: nothing more to read.
static int proc_line(proc_cur *c, const task_problem *p) {
    int64_t v[TASK_CD_MAX_NUMBERS];
    int nv = p->n_numbers;
    memcpy(v, p->numbers, sizeof *v * (size_t)nv);
    for (;;) {
        size_t b;
        int64_t x, y, r, t;
        // the move: both operands among the values left, an operation that keeps them whole
        if (!proc_int(c, &x, &b)) return -1;
        proc_mark(c, b, c->i, REWARD_PROC_FREE);
        if (!proc_take(v, &nv, x)) {
            proc_judge(c, b, false);
            return 0;
        }
        if (c->n - c->i < 3 || c->s[c->i] != ' ' || !memchr("+-*/", c->s[c->i + 1], 4) || c->s[c->i + 2] != ' ')
            return -1;
        char op = c->s[c->i + 1];
        proc_mark(c, c->i + 1, c->i + 2, REWARD_PROC_FREE);
        c->i += 3;
        if (!proc_int(c, &y, &b)) return -1;
        proc_mark(c, b, c->i, REWARD_PROC_FREE);
        if (!proc_take(v, &nv, y) || !proc_apply(x, op, y, &r)) {
            proc_judge(c, b, false);
            return 0;
        }
        // what the move fixes: its result, the target echoed, then the verdict or the values left
        if (!proc_lit(c, " = ") || !proc_int(c, &t, &b)) return -1;
        if (!proc_judge(c, b, t == r)) return 0;
        if (!proc_lit(c, " vs ") || !proc_int(c, &t, &b)) return -1;
        if (!proc_judge(c, b, t == p->target)) return 0;
        // the verdict with the space before it: tokenizers split ", yes" / ", no" / ", left" at
        // different places (" " "y" "es" / " n" "o" / " left"), and the token where the replies
        // part must carry the label
        if (!proc_lit(c, ",")) return -1;
        b = c->i;
        if (!proc_lit(c, " ")) return -1;
        const char *want = r == p->target ? "yes" : nv == 0 ? "no" : "left";
        size_t w = c->i;
        while (c->i < c->n && c->s[c->i] >= 'a' && c->s[c->i] <= 'z') c->i++;
        if (c->i == w) return -1;
        if (!proc_judge(c, b, c->i - w == strlen(want) && !memcmp(c->s + w, want, c->i - w))) return 0;
        if (want[0] != 'l') return proc_lit(c, "\n") ? want[0] == 'y' : -1;
        // the values left: the result, then the untouched values (in order in the traces; with a
        // repeated value either copy may be the one used, so any order is taken). A value may be
        // dropped: a number need not be used, so ending the list early is a choice.
        int64_t left[TASK_CD_MAX_NUMBERS], rest[TASK_CD_MAX_NUMBERS];
        int nl = 0, nr = nv;
        memcpy(rest, v, sizeof *v * (size_t)nv);
        for (int k = 0; k <= nv; k++) {
            if (k > 0 && c->i < c->n && c->s[c->i] == ',') {
                proc_mark(c, c->i, c->i + 1, REWARD_PROC_FREE);
                break;
            }
            if (!proc_lit(c, " ") || !proc_int(c, &t, &b)) return -1;
            if (!proc_judge(c, b, k == 0 ? t == r : proc_take(rest, &nr, t))) return 0;
            left[nl++] = t;
        }
        if (c->i < c->n && c->s[c->i] == ' ') {
            // a value too many
            proc_mark(c, c->i, c->i + 1, REWARD_PROC_BAD);
            return 0;
        }
        if (!proc_lit(c, ", ")) return -1;
        memcpy(v, left, sizeof *v * (size_t)nl);
        nv = nl;
    }
}

// Where the text departs from lit: 1 when it follows lit to the end (consumed), 0 when the text
// ends inside lit, -1 when a byte differs (c->i left at that byte).
static int proc_expect(proc_cur *c, const char *lit) {
    for (; *lit; lit++, c->i++) {
        if (c->i == c->n) return 0;
        if (c->s[c->i] != *lit) return -1;
    }
    return 1;
}

bool reward_process_labels(const task_problem *p, const char *completion, size_t n, uint8_t *label) {
    if (p->kind != TASK_COUNTDOWN || p->n_numbers < 2) return false;
    memset(label, REWARD_PROC_NONE, n);
    proc_cur c = {.s = completion, .n = n, .lab = label};
    size_t b;
    int64_t t;
    if (!proc_lit(&c, "target ") || !proc_int(&c, &t, &b)) return true;
    if (!proc_judge(&c, b, t == p->target) || !proc_lit(&c, "\n")) return true;
    while (c.i < c.n) {
        if (c.s[c.i] == '<') {
            // closing the reasoning is right only after a "yes"
            if (proc_expect(&c, "</think>") != 1) return true;
            proc_mark(&c, c.i - 8, c.i, REWARD_PROC_BAD);
            return true;
        }
        int r = proc_line(&c, p);
        if (r < 0) return true;
        if (r == 0) {
            // a finished or abandoned line: the next guess starts on the next line
            while (c.i < c.n && c.s[c.i - 1] != '\n') c.i++;
            continue;
        }
        // after "yes": the reasoning closes and the answer is the walk's expression
        int e = proc_expect(&c, "</think>\n\n\\boxed{");
        if (e < 0) proc_mark(&c, c.i, c.i + 1, REWARD_PROC_BAD);
        if (e <= 0) return true;
        b = c.i;
        while (c.i < c.n && c.s[c.i] != '}') c.i++;
        if (c.i < c.n)
            proc_judge(&c, b, reward_check_countdown(c.s + b, c.i - b, p->numbers, p->n_numbers, p->target) == 1);
        return true;
    }
    return true;
}
