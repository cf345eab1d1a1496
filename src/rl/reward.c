// Verifiable rewards: answer extraction, the format check, exact accuracy checks.
#include "rl/reward.h"

#include <string.h>

#include "rl/countdown.h"

static const char reward_open[] = "<think>", reward_close[] = "</think>", reward_box[] = "\\boxed{";
static const char reward_eos[] = "<｜end▁of▁sentence｜>";

reward_config reward_config_default(void) { return (reward_config){.w_accuracy = 1.0f, .w_format = 0.1f}; }

static bool reward_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static const char *reward_skip_ws(const char *s) {
    while (reward_ws(*s)) s++;
    return s;
}

// The end of the box whose content starts at body: one past its closing brace, or NULL
// when the braces never balance.
static const char *reward_box_end(const char *body) {
    int depth = 1;
    for (const char *q = body; *q; q++) {
        if (*q == '{') depth++;
        else if (*q == '}' && --depth == 0) return q + 1;
    }
    return NULL;
}

bool reward_extract_answer(const char *completion, const char **answer, size_t *len) {
    const char *s = completion ? strstr(completion, reward_close) : NULL;
    if (!s) return false;
    bool found = false;
    for (s += sizeof reward_close - 1; (s = strstr(s, reward_box));) {
        const char *body = s + sizeof reward_box - 1, *end = reward_box_end(body);
        if (!end) return false;
        *answer = body;
        *len = (size_t)(end - 1 - body);
        found = true;
        s = end;
    }
    return found;
}

static int reward_count(const char *s, const char *needle) {
    int n = 0;
    for (size_t k = strlen(needle); (s = strstr(s, needle)); s += k) n++;
    return n;
}

// Only whitespace, or whitespace around one end-of-sentence token.
static bool reward_blank_tail(const char *s) {
    s = reward_skip_ws(s);
    if (!strncmp(s, reward_eos, sizeof reward_eos - 1)) s = reward_skip_ws(s + sizeof reward_eos - 1);
    return *s == 0;
}

int reward_format(const char *completion) {
    if (!completion) return 0;
    const char *s = reward_skip_ws(completion);
    if (!strncmp(s, reward_open, sizeof reward_open - 1)) s += sizeof reward_open - 1;
    const char *close = strstr(s, reward_close);
    if (!close || strstr(s, reward_open) || strstr(close + 1, reward_close)) return 0;
    if (reward_skip_ws(s) >= close) return 0; // no reasoning
    const char *ans = close + sizeof reward_close - 1, *box = strstr(ans, reward_box);
    if (!box || reward_count(ans, reward_box) != 1) return 0;
    const char *body = box + sizeof reward_box - 1, *end = reward_box_end(body);
    if (!end || reward_skip_ws(body) >= end - 1) return 0; // unterminated or blank
    return reward_blank_tail(end);
}

static void reward_trim(const char **s, size_t *len) {
    while (*len && reward_ws(**s)) (*s)++, (*len)--;
    while (*len && reward_ws((*s)[*len - 1])) (*len)--;
}

int reward_check_arithmetic(const char *answer, size_t len, const char *expected) {
    if (!answer || !expected) return 0;
    reward_trim(&answer, &len);
    const char *d = answer + (len && *answer == '-');
    size_t nd = len - (size_t)(d - answer);
    if (nd == 0 || (d[0] == '0' && (nd > 1 || d != answer))) return 0; // no digits, leading zero, "-0"
    for (size_t i = 0; i < nd; i++)
        if (d[i] < '0' || d[i] > '9') return 0;
    return strlen(expected) == len && !memcmp(answer, expected, len);
}

// ---- countdown expressions: recursive descent over [s, e) ----

typedef struct {
    const char *s, *e;
    int depth;
    int n_used;
    int64_t used[REWARD_MAX_LITERALS];
} reward_parser;

static void rp_ws(reward_parser *p) {
    while (p->s < p->e && (*p->s == ' ' || *p->s == '\t')) p->s++;
}

static bool rp_peek(reward_parser *p, char c) {
    rp_ws(p);
    return p->s < p->e && *p->s == c;
}

// A literal without sign or leading zeros, at most 18 digits so it always fits.
static bool rp_literal(reward_parser *p, int64_t *v) {
    const char *d = p->s;
    while (p->s < p->e && *p->s >= '0' && *p->s <= '9') p->s++;
    size_t n = (size_t)(p->s - d);
    if (n == 0 || n > 18 || (d[0] == '0' && n > 1)) return false;
    *v = 0;
    for (size_t i = 0; i < n; i++) *v = *v * 10 + (d[i] - '0');
    return true;
}

static bool rp_expr(reward_parser *p, countdown_q *out);

static bool rp_factor(reward_parser *p, countdown_q *out) {
    rp_ws(p);
    if (rp_peek(p, '(')) {
        if (++p->depth > REWARD_MAX_DEPTH) return false;
        p->s++;
        if (!rp_expr(p, out) || !rp_peek(p, ')')) return false;
        p->s++;
        p->depth--;
        return true;
    }
    int64_t v;
    if (!rp_literal(p, &v) || p->n_used == REWARD_MAX_LITERALS) return false;
    p->used[p->n_used++] = v;
    *out = (countdown_q){v, 1};
    return true;
}

static bool rp_term(reward_parser *p, countdown_q *out) {
    if (!rp_factor(p, out)) return false;
    while (rp_peek(p, '*') || rp_peek(p, '/')) {
        char op = *p->s++;
        countdown_q r;
        if (!rp_factor(p, &r) || !countdown_q_apply(op, *out, r, out)) return false;
    }
    return true;
}

static bool rp_expr(reward_parser *p, countdown_q *out) {
    if (!rp_term(p, out)) return false;
    while (rp_peek(p, '+') || rp_peek(p, '-')) {
        char op = *p->s++;
        countdown_q r;
        if (!rp_term(p, &r) || !countdown_q_apply(op, *out, r, out)) return false;
    }
    return true;
}

// Each literal must take a distinct given number of the same value.
static bool rp_uses_given(const reward_parser *p, const int64_t *numbers, int n) {
    bool taken[TASK_CD_MAX_NUMBERS] = {0};
    if (n > TASK_CD_MAX_NUMBERS) return false;
    for (int i = 0; i < p->n_used; i++) {
        int j = 0;
        while (j < n && (taken[j] || numbers[j] != p->used[i])) j++;
        if (j == n) return false;
        taken[j] = true;
    }
    return true;
}

int reward_check_countdown(const char *answer, size_t len, const int64_t *numbers, int n, int64_t target) {
    if (!answer || !numbers) return 0;
    reward_trim(&answer, &len);
    if (len > REWARD_MAX_EXPR) return 0;
    reward_parser p = {.s = answer, .e = answer + len};
    countdown_q v;
    if (!rp_expr(&p, &v)) return 0;
    if (rp_peek(&p, '=')) { // "(25-3)*2+8 = 52": the restated target must be the target
        p.s++;
        rp_ws(&p);
        bool neg = p.s < p.e && *p.s == '-';
        int64_t t;
        p.s += neg;
        if (!rp_literal(&p, &t) || (neg ? -t : t) != target) return 0;
    }
    rp_ws(&p);
    if (p.s != p.e) return 0;
    return v.den == 1 && v.num == target && rp_uses_given(&p, numbers, n);
}

int reward_accuracy(const task_problem *p, const char *completion) {
    const char *a;
    size_t len;
    if (!p || !reward_extract_answer(completion, &a, &len)) return 0;
    if (p->kind == TASK_COUNTDOWN) return reward_check_countdown(a, len, p->numbers, p->n_numbers, p->target);
    return reward_check_arithmetic(a, len, p->answer);
}

void reward_score(const task_problem *p, const char *completion, const reward_config *cfg, reward_result *out) {
    reward_config c = cfg ? *cfg : reward_config_default();
    out->format = (float)reward_format(completion);
    out->accuracy = (float)reward_accuracy(p, completion);
    out->total = c.w_accuracy * out->accuracy + c.w_format * out->format;
}
