// Step-by-step solution traces for the cold-start SFT (formats documented in task.h). The
// learner is tiny and sees one token per digit, so every line is one local, uniform step.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rl/countdown.h"
#include "rl/task.h"
#include "rl/task_internal.h"

enum { TR_NUM = 64 }; // decimal strings: products of two 18-digit numbers have <= 36 digits

// "digits 3 6 6 5 reversed: 5663": w holds the digits in the order written (least
// significant first); the number, without leading zeros, goes to out.
static void tr_digits(task_buf *b, const char *w, int k, char *out) {
    task_buf_put(b, "digits");
    for (int i = 0; i < k; i++) task_buf_printf(b, " %c", w[i]);
    int top = k - 1;
    while (top > 0 && w[top] == '0') top--;
    for (int i = 0; i <= top; i++) out[i] = w[top - i];
    out[top + 1] = 0;
    task_buf_printf(b, " reversed: %s\n", out);
}

static int tr_digit(const char *x, int nx, int i) { return i < nx ? x[nx - 1 - i] - '0' : 0; }

static void tr_add(task_buf *b, const char *x, const char *y, char *out) {
    int nx = (int)strlen(x), ny = (int)strlen(y), n = nx > ny ? nx : ny, k = 0, carry = 0;
    char w[TR_NUM];
    task_buf_printf(b, "%s + %s\n", x, y);
    for (int i = 0; i < n; i++) {
        int dx = tr_digit(x, nx, i), dy = tr_digit(y, ny, i), s = dx + dy + carry;
        task_buf_printf(b, "%d + %d + %d = %d, write %d, carry %d\n", dx, dy, carry, s, s % 10, s / 10);
        w[k++] = (char)('0' + s % 10);
        carry = s / 10;
    }
    if (carry) {
        task_buf_put(b, "0 + 0 + 1 = 1, write 1, carry 0\n");
        w[k++] = '1';
    }
    tr_digits(b, w, k, out);
}

// x - y for x >= y.
static void tr_sub(task_buf *b, const char *x, const char *y, char *out) {
    int nx = (int)strlen(x), ny = (int)strlen(y), k = 0, borrow = 0;
    char w[TR_NUM];
    for (int i = 0; i < nx; i++) {
        int dx = tr_digit(x, nx, i), dy = tr_digit(y, ny, i), v = dx - dy - borrow;
        if (v >= 0) {
            task_buf_printf(b, "%d - %d - %d = %d, write %d, borrow 0\n", dx, dy, borrow, v, v);
            borrow = 0;
        } else {
            task_buf_printf(b, "%d - %d - %d = %d, add 10: %d, write %d, borrow 1\n", dx, dy, borrow, v, v + 10, v + 10);
            v += 10;
            borrow = 1;
        }
        w[k++] = (char)('0' + v);
    }
    tr_digits(b, w, k, out);
}

static void tr_mul(task_buf *b, const char *x, const char *y, char *out) {
    int nx = (int)strlen(x), ny = (int)strlen(y);
    char part[TASK_MAX_DIGITS][TR_NUM];
    task_buf_printf(b, "%s * %s\n", x, y);
    for (int j = 0; j < ny; j++) {
        int d = tr_digit(y, ny, j), carry = 0, k = 0;
        char w[TR_NUM];
        task_buf_printf(b, "%s * %d\n", x, d);
        for (int i = 0; i < nx; i++) {
            int dx = tr_digit(x, nx, i), v = dx * d + carry;
            task_buf_printf(b, "%d * %d + %d = %d, write %d, carry %d\n", dx, d, carry, v, v % 10, v / 10);
            w[k++] = (char)('0' + v % 10);
            carry = v / 10;
        }
        if (carry) { // at most 8: 9 * 9 + 8 = 89
            task_buf_printf(b, "0 * %d + %d = %d, write %d, carry 0\n", d, carry, carry, carry);
            w[k++] = (char)('0' + carry);
        }
        tr_digits(b, w, k, part[j]);
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
    else {
        task_buf_printf(&b, "%s - %s\n", a, bs);
        if (p->a < p->b) {
            task_buf_printf(&b, "%s < %s, so compute %s - %s and negate\n", a, bs, bs, a);
            tr_sub(&b, bs, a, res + 1);
            res[0] = '-';
            task_buf_printf(&b, "negate: %s\n", res);
        } else {
            tr_sub(&b, a, bs, res);
        }
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

ds_status task_trace(const task_problem *p, char **out, ds_error *err) {
    *out = NULL;
    return p->kind == TASK_COUNTDOWN ? countdown_trace(p, out, err) : tr_arith(p, out, err);
}
