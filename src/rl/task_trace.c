// Step-by-step solution traces for the cold-start SFT (formats documented in task.h). The
// learner is tiny and sees one token per digit. Every step reads only the line above it: the
// operands shrink by their last digit each column, and the result grows on the left, so the
// same steps serve any number of digits. (That does not make tiny-r1 generalise to longer
// operands than it was trained on: it copies numbers by position; README, tiny-r1 section.)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rl/countdown.h"
#include "rl/task.h"
#include "rl/task_internal.h"

enum { TR_NUM = 64 }; // decimal strings: products of two 18-digit numbers have <= 36 digits

static int tr_digit(const char *x, int nx, int i) { return i < nx ? x[nx - 1 - i] - '0' : 0; }

// x without its last k digits; "0" once none are left.
static void tr_put_rest(task_buf *b, const char *x, int nx, int k) {
    if (k >= nx) task_buf_put(b, "0");
    else task_buf_printf(b, "%.*s", nx - k, x);
}

// The operands line of column k: "473 + 92\n".
static void tr_put_operands(task_buf *b, const char *x, int nx, const char *op, const char *y, int ny, int k) {
    tr_put_rest(b, x, nx, k);
    task_buf_put(b, op);
    tr_put_rest(b, y, ny, k);
    task_buf_put(b, "\n");
}

// ", result 663\n": w holds the k digits written so far, least significant first.
static void tr_put_result(task_buf *b, const char *w, int k) {
    task_buf_put(b, ", result ");
    for (int i = k - 1; i >= 0; i--) task_buf_printf(b, "%c", w[i]);
    task_buf_put(b, "\n");
}

// The number the digits make (leading zeros dropped, with a line saying so when there were any).
static void tr_finish(task_buf *b, const char *w, int k, char *out) {
    int top = k - 1;
    while (top > 0 && w[top] == '0') top--;
    for (int i = 0; i <= top; i++) out[i] = w[top - i];
    out[top + 1] = 0;
    if (top < k - 1) task_buf_printf(b, "drop leading zeros: %s\n", out);
}

static void tr_add(task_buf *b, const char *x, const char *y, char *out) {
    int nx = (int)strlen(x), ny = (int)strlen(y), n = nx > ny ? nx : ny, k = 0, carry = 0;
    char w[TR_NUM];
    for (int i = 0; i < n || carry; i++) {
        tr_put_operands(b, x, nx, " + ", y, ny, i);
        int dx = tr_digit(x, nx, i), dy = tr_digit(y, ny, i), s = dx + dy + carry;
        task_buf_printf(b, "%d + %d + %d = %d, write %d, carry %d", dx, dy, carry, s, s % 10, s / 10);
        w[k++] = (char)('0' + s % 10);
        carry = s / 10;
        tr_put_result(b, w, k);
    }
    tr_finish(b, w, k, out);
}

// x - y for x >= y.
static void tr_sub(task_buf *b, const char *x, const char *y, char *out) {
    int nx = (int)strlen(x), ny = (int)strlen(y), k = 0, borrow = 0;
    char w[TR_NUM];
    for (int i = 0; i < nx; i++) {
        tr_put_operands(b, x, nx, " - ", y, ny, i);
        int dx = tr_digit(x, nx, i), dy = tr_digit(y, ny, i), v = dx - dy - borrow;
        if (v >= 0) {
            task_buf_printf(b, "%d - %d - %d = %d, write %d, borrow 0", dx, dy, borrow, v, v);
            borrow = 0;
        } else {
            task_buf_printf(b, "%d - %d - %d = %d, add 10: %d, write %d, borrow 1", dx, dy, borrow, v, v + 10, v + 10);
            v += 10;
            borrow = 1;
        }
        w[k++] = (char)('0' + v);
        tr_put_result(b, w, k);
    }
    tr_finish(b, w, k, out);
}

// x * d for one digit d.
static void tr_mul_digit(task_buf *b, const char *x, int d, char *out) {
    int nx = (int)strlen(x), k = 0, carry = 0;
    char w[TR_NUM];
    for (int i = 0; i < nx || carry; i++) { // the final carry is at most 8: 9 * 9 + 8 = 89
        tr_put_rest(b, x, nx, i);
        task_buf_printf(b, " * %d\n", d);
        int v = tr_digit(x, nx, i) * d + carry;
        task_buf_printf(b, "%d * %d + %d = %d, write %d, carry %d", tr_digit(x, nx, i), d, carry, v, v % 10, v / 10);
        w[k++] = (char)('0' + v % 10);
        carry = v / 10;
        tr_put_result(b, w, k);
    }
    tr_finish(b, w, k, out);
}

static void tr_mul(task_buf *b, const char *x, const char *y, char *out) {
    int ny = (int)strlen(y);
    if (ny == 1) {
        tr_mul_digit(b, x, y[0] - '0', out);
        return;
    }
    char part[TASK_MAX_DIGITS][TR_NUM];
    task_buf_printf(b, "%s * %s\n", x, y);
    for (int j = 0; j < ny; j++) {
        tr_mul_digit(b, x, tr_digit(y, ny, j), part[j]);
        if (strcmp(part[j], "0") != 0) { // the shift: k-th partial gets k-1 zeros
            size_t len = strlen(part[j]);
            memset(part[j] + len, '0', (size_t)j);
            part[j][len + (size_t)j] = 0;
        }
        task_buf_printf(b, "partial %d: %s\n", j + 1, part[j]);
    }
    char acc[TR_NUM];
    memcpy(acc, part[0], sizeof acc);
    for (int j = 1; j < ny; j++) {
        tr_add(b, acc, part[j], out);
        task_buf_printf(b, "sum: %s\n", out); // so that the next addition visibly starts anew
        memcpy(acc, out, sizeof acc);
    }
    memcpy(out, acc, sizeof acc);
}

static ds_status tr_arith(const task_problem *p, char **out, ds_error *err) {
    if (p->op != '+' && p->op != '-' && p->op != '*')
        return ds_error_set(err, DS_ERR_ARG, "arithmetic trace: no operands for '%s' (the prompt is not 'What is A op B?')",
                            p->prompt ? p->prompt : "");
    char a[TR_NUM], bs[TR_NUM], res[TR_NUM + 1];
    snprintf(a, sizeof a, "%llu", (unsigned long long)p->a);
    snprintf(bs, sizeof bs, "%llu", (unsigned long long)p->b);
    if (strlen(a) > TASK_MAX_DIGITS || strlen(bs) > TASK_MAX_DIGITS)
        return ds_error_set(err, DS_ERR_ARG, "arithmetic trace: operands of '%s' have more than %d digits", p->prompt,
                            TASK_MAX_DIGITS);
    task_buf b = {0};
    task_buf_put(&b, "<think>\n");
    if (p->op == '+') tr_add(&b, a, bs, res);
    else if (p->op == '*') tr_mul(&b, a, bs, res);
    else if (p->a < p->b) {
        task_buf_printf(&b, "%s < %s, so compute %s - %s and negate\n", a, bs, bs, a);
        tr_sub(&b, bs, a, res + 1);
        res[0] = '-';
        task_buf_printf(&b, "negate: %s\n", res);
    } else {
        tr_sub(&b, a, bs, res);
    }
    task_buf_printf(&b, "</think>\n\n\\boxed{%s}", res);
    ds_status st = DS_OK;
    if (b.oom) st = ds_error_set(err, DS_ERR_OOM, "arithmetic trace: out of memory");
    else if (p->answer && strcmp(res, p->answer) != 0) // only a wrong loaded answer gets here
        st = ds_error_set(err, DS_ERR_ARG, "arithmetic trace: '%s' computes %s, but the answer is %s", p->prompt, res,
                          p->answer);
    if (st) {
        free(b.s);
        return st;
    }
    *out = b.s;
    return DS_OK;
}

bool task_cd_trace_parse(const char *s, task_cd_trace *out) {
    if (!strcmp(s, "search")) *out = TASK_CD_TRACE_SEARCH;
    else if (!strcmp(s, "guess")) *out = TASK_CD_TRACE_GUESS;
    else return false;
    return true;
}

ds_status task_trace(const task_problem *p, task_cd_trace cd_style, char **out, ds_error *err) {
    *out = NULL;
    return p->kind == TASK_COUNTDOWN ? countdown_trace(p, cd_style, out, err) : tr_arith(p, out, err);
}
