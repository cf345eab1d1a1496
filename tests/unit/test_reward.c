// Rewards: answer extraction, the format check and the exact accuracy checks on hand-written
// completions (malformed boxes, extra boxes, misplaced tags, countdown expressions that
// cheat, overflow or never end).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rl/reward.h"
#include "test_util.h"

static task_problem arith(const char *answer) {
    return (task_problem){.kind = TASK_ARITHMETIC, .prompt = "What is 4738 + 925?", .answer = (char *)answer,
                          .op = '+', .a = 4738, .b = 925};
}

static task_problem countdown(const int64_t *nums, int n, int64_t target) {
    task_problem p = {.kind = TASK_COUNTDOWN, .prompt = "countdown", .n_numbers = n, .target = target};
    memcpy(p.numbers, nums, sizeof(int64_t) * (size_t)n);
    return p;
}

static void check(const task_problem *p, const char *completion, int acc, int fmt) {
    reward_result r;
    reward_score(p, completion, NULL, &r);
    if (r.accuracy != (float)acc || r.format != (float)fmt)
        print_error("completion '%s': accuracy %g format %g, expected %d %d\n", completion ? completion : "(null)",
                    (double)r.accuracy, (double)r.format, acc, fmt);
    assert_true(r.accuracy == (float)acc);
    assert_true(r.format == (float)fmt);
    assert_true(r.total == 1.0f * (float)acc + 0.1f * (float)fmt);
}

static void extracted(const char *completion, const char *want) {
    const char *a;
    size_t n;
    bool ok = reward_extract_answer(completion, &a, &n);
    if (!want) {
        assert_false(ok);
        return;
    }
    assert_true(ok);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(a, want, n);
}

static void test_extract(void **state) {
    (void)state;
    extracted("r\n</think>\n\n\\boxed{5663}", "5663");
    extracted("r</think>\\boxed{\\frac{1}{2}} ", "\\frac{1}{2}");
    extracted("r</think>\\boxed{1} then \\boxed{2}", "2");
    extracted("r</think>\\boxed{\\boxed{5}}", "\\boxed{5}");
    extracted("r</think>\\boxed{}", "");
    extracted("r</think>\\boxed{5", NULL);           // unterminated
    extracted("r</think>\\boxed{1} \\boxed{2", NULL); // the last one unterminated
    extracted("\\boxed{5} no closing tag", NULL);
    extracted("\\boxed{5}</think> nothing after", NULL);
    extracted("a</think>\\boxed{7}</think>\\boxed{8}", "8"); // after the first </think>
    extracted("", NULL);
    extracted(NULL, NULL);
}

static void test_arithmetic(void **state) {
    (void)state;
    task_problem p = arith("5663");
    check(&p, "8 + 5 = 13 ...\n</think>\n\n\\boxed{5663}", 1, 1);
    check(&p, "<think>\nsteps\n</think>\n\n\\boxed{5663}", 1, 1);
    check(&p, "  \n<think>\nsteps\n</think>\n\n\\boxed{5663}\n \n", 1, 1); // whitespace around
    check(&p, "steps</think>The answer is \\boxed{5663}", 1, 1);
    check(&p, "steps</think>\\boxed{ 5663 }", 1, 1);
    check(&p, "steps</think>\\boxed{5663}<｜end▁of▁sentence｜>", 1, 1);
    check(&p, "steps</think>\\boxed{5664}", 0, 1);
    check(&p, "steps</think>\\boxed{+5663}", 0, 1);
    check(&p, "steps</think>\\boxed{05663}", 0, 1);
    check(&p, "steps</think>\\boxed{5,663}", 0, 1);
    check(&p, "steps</think>\\boxed{$5663$}", 0, 1);
    check(&p, "steps</think>\\boxed{5663.0}", 0, 1);
    check(&p, "steps</think>\\boxed{5663}.", 1, 0);           // text after the box
    check(&p, "steps</think>\\boxed{5663} done", 1, 0);
    check(&p, "steps</think>\\boxed{5663", 0, 0);             // unterminated
    check(&p, "steps</think>\\boxed{}", 0, 0);                // empty
    check(&p, "steps</think>\\boxed{  }", 0, 0);              // blank
    check(&p, "steps</think>\\boxed{\\boxed{5663}}", 0, 0);   // nested box
    check(&p, "steps</think>\\boxed{1} \\boxed{5663}", 1, 0); // two boxes: accuracy from the last
    check(&p, "steps</think>\\boxed{5663} \\boxed{1}", 0, 0);
    check(&p, "steps \\boxed{5663}", 0, 0);                   // no </think>
    check(&p, "a</think>b</think>\\boxed{5663}", 1, 0);       // two </think>
    check(&p, "steps \\boxed{5663}</think>", 0, 0);           // box only in the reasoning
    check(&p, "steps \\boxed{1}</think>\\boxed{5663}", 1, 1); // a box in the reasoning is fine
    check(&p, "</think>\\boxed{5663}", 1, 0);                 // no reasoning
    check(&p, "<think> \n </think>\\boxed{5663}", 1, 0);
    check(&p, "a<think>b</think>\\boxed{5663}", 1, 0);        // an opening tag not at the start
    check(&p, "<think>a<think>b</think>\\boxed{5663}", 1, 0); // a second opening
    check(&p, "a</think><think>\\boxed{5663}", 1, 0);
    check(&p, NULL, 0, 0);
    check(&p, "", 0, 0);

    task_problem neg = arith("-12"), zero = arith("0");
    check(&neg, "r</think>\\boxed{-12}", 1, 1);
    check(&neg, "r</think>\\boxed{- 12}", 0, 1);
    check(&neg, "r</think>\\boxed{12}", 0, 1);
    check(&zero, "r</think>\\boxed{0}", 1, 1);
    check(&zero, "r</think>\\boxed{-0}", 0, 1);
    check(&zero, "r</think>\\boxed{00}", 0, 1);

    // weights
    reward_config cfg = {.w_accuracy = 2.0f, .w_format = 0.5f};
    reward_result r;
    reward_score(&p, "r</think>\\boxed{5663}", &cfg, &r);
    assert_true(r.total == 2.5f);
    reward_score(&p, "r</think>\\boxed{5663} x", &cfg, &r);
    assert_true(r.total == 2.0f);
    reward_config d = reward_config_default();
    assert_true(d.w_accuracy == 1.0f && d.w_format == 0.1f);
}

static int cd(const int64_t *nums, int n, int64_t target, const char *expr) {
    return reward_check_countdown(expr, strlen(expr), nums, n, target);
}

static void test_countdown(void **state) {
    (void)state;
    const int64_t v[] = {25, 3, 2, 8};
    assert_int_equal(cd(v, 4, 52, "(25-3)*2+8"), 1);
    assert_int_equal(cd(v, 4, 52, " ( 25 - 3 ) * 2 + 8 "), 1);
    assert_int_equal(cd(v, 4, 52, "8+2*(25-3)"), 1);
    assert_int_equal(cd(v, 4, 52, "(25-3)*2+8 = 52"), 1);
    assert_int_equal(cd(v, 4, 52, "(25-3)*2+8=52"), 1);
    assert_int_equal(cd(v, 4, 52, "(25-3)*2+8 = 53"), 0); // a wrong restated target
    assert_int_equal(cd(v, 4, 52, "(25-3)*2+8 ="), 0);
    assert_int_equal(cd(v, 4, 52, "(25-3)*2+8 = 52 = 52"), 0);
    assert_int_equal(cd(v, 4, 52, "(25-3)*2"), 0);        // wrong value
    assert_int_equal(cd(v, 4, 52, "25+25+2"), 0);         // 25 used twice
    assert_int_equal(cd(v, 4, 52, "50+2"), 0);            // 50 not given
    assert_int_equal(cd(v, 4, 52, "-3+25*2+8-3"), 0);     // unary minus
    assert_int_equal(cd(v, 4, 52, "25*2+(-3)+8"), 0);
    assert_int_equal(cd(v, 4, 52, "+25*2+2"), 0);
    assert_int_equal(cd(v, 4, 52, "(25-3)*2+08"), 0);     // leading zero
    assert_int_equal(cd(v, 4, 52, "(25-3)*2+8)"), 0);     // unbalanced
    assert_int_equal(cd(v, 4, 52, "((25-3)*2+8"), 0);
    assert_int_equal(cd(v, 4, 52, "(25-3)\\times 2+8"), 0);
    assert_int_equal(cd(v, 4, 52, "(25-3)x2+8"), 0);
    assert_int_equal(cd(v, 4, 52, "(25-3)*2+8!"), 0);
    assert_int_equal(cd(v, 4, 52, "abc"), 0);
    assert_int_equal(cd(v, 4, 52, ""), 0);
    assert_int_equal(cd(v, 4, 52, "()"), 0);
    assert_int_equal(cd(v, 4, 52, "25 3"), 0);
    assert_int_equal(cd(v, 4, 52, "25**2"), 0);

    const int64_t dup[] = {5, 5, 2};
    assert_int_equal(cd(dup, 3, 12, "5+5+2"), 1); // given twice: usable twice
    assert_int_equal(cd(dup, 3, 17, "5+5+5+2"), 0);

    const int64_t z[] = {2, 2, 25};
    assert_int_equal(cd(z, 3, 5, "25/(2-2)"), 0); // division by zero
    assert_int_equal(cd(z, 3, 0, "25*(2-2)"), 1);
    const int64_t f[] = {7, 2, 4};
    assert_int_equal(cd(f, 3, 14, "7/2*4"), 1);     // a fraction on the way, exact at the end
    assert_int_equal(cd(f, 3, 14, "4*(7/2)"), 1);
    assert_int_equal(cd(f, 3, 3, "7/2"), 0);        // 3.5 is not 3
    assert_int_equal(cd(f, 3, 1, "(7-4)/(2+4-4)"), 0); // 4 used twice

    // huge literals and overflow: 0, never UB
    assert_int_equal(cd(v, 4, 52, "1234567890123456789012345678901234567890"), 0);
    assert_int_equal(cd(v, 4, 52, "999999999999999999*999999999999999999"), 0);
    const int64_t big[] = {1000000, 1000000, 1000000, 1000000, 999999, 3};
    assert_int_equal(cd(big, 6, 1, "1000000*1000000*1000000*1000000/999999/3"), 0);
    assert_int_equal(cd(big, 6, 1, "1000000*1000000*1000000-1000000*1000000*999999"), 0);
    assert_int_equal(cd(big, 6, 1000000, "1000000*1000000/1000000"), 1);

    // deep parentheses: within the depth limit fine, beyond it (or too long) 0
    char buf[4096];
    int k = 0;
    for (int i = 0; i < 20; i++) buf[k++] = '(';
    k += sprintf(buf + k, "25");
    for (int i = 0; i < 20; i++) buf[k++] = ')';
    sprintf(buf + k, "*2+8");
    assert_int_equal(cd(v, 4, 58, buf), 1);
    k = 0;
    for (int i = 0; i < 40; i++) buf[k++] = '(';
    k += sprintf(buf + k, "25");
    for (int i = 0; i < 40; i++) buf[k++] = ')';
    sprintf(buf + k, "*2+8");
    assert_int_equal(cd(v, 4, 58, buf), 0);
    memset(buf, '(', sizeof buf - 1);
    buf[sizeof buf - 1] = 0;
    assert_int_equal(cd(v, 4, 52, buf), 0);
    k = 0;
    for (int i = 0; i < 300; i++) k += sprintf(buf + k, "2+");
    sprintf(buf + k, "2");
    assert_int_equal(cd(v, 4, 602, buf), 0); // too long (and 2 reused)

    // through reward_score: the last box after </think>
    task_problem p = countdown(v, 4, 52);
    check(&p, "try 25-3=22\n</think>\n\n\\boxed{(25-3)*2+8}", 1, 1);
    check(&p, "try</think>\\boxed{(25-3)*2+8 = 52}", 1, 1);
    check(&p, "try</think>\\boxed{25+25+2}", 0, 1);
    check(&p, "try</think>\\boxed{(25-3)*2+8", 0, 0);
    check(&p, "try \\boxed{(25-3)*2+8}</think>", 0, 0);
}

// Random concatenations of the pieces the parsers look for: scores stay 0 or 1, and the
// sanitizer build sees no out-of-bounds read or overflow.
static void test_garbage(void **state) {
    (void)state;
    static const char *pieces[] = {"\\boxed{", "{", "}", "</think>", "<think>", "1", "25", "0", "999999999999999999",
                                   "+", "-", "*", "/", "(", ")", "=", " ", "\n", "x", "<｜end▁of▁sentence｜>", "\\"};
    const int np = (int)(sizeof pieces / sizeof *pieces);
    const int64_t v[] = {25, 1, 25, 999999999999999999LL};
    task_problem a = arith("26"), c = countdown(v, 4, 26);
    uint64_t seed = 42;
    char buf[2048];
    for (int it = 0; it < 20000; it++) {
        size_t len = 0;
        int n = (int)(rng_next(&seed) % 80);
        for (int i = 0; i < n; i++) {
            const char *p = pieces[rng_next(&seed) % (uint32_t)np];
            size_t k = strlen(p);
            memcpy(buf + len, p, k);
            len += k;
        }
        buf[len] = 0;
        reward_result r;
        reward_score(&a, buf, NULL, &r);
        assert_true((r.accuracy == 0 || r.accuracy == 1) && (r.format == 0 || r.format == 1));
        reward_score(&c, buf, NULL, &r);
        assert_true((r.accuracy == 0 || r.accuracy == 1) && (r.format == 0 || r.format == 1));
        assert_true(reward_check_countdown(buf, len, v, 4, 26) <= 1);
        uint8_t lab[2048];
        assert_true(reward_process_labels(&c, buf, len, lab));
        for (size_t k = 0; k < len; k++) assert_true(lab[k] <= REWARD_PROC_BAD);
    }
}

// Process labels: in `marked`, "[o16]" is the text "16" labelled OK ('f' FREE, 'o' OK, 'x'
// BAD); text outside brackets is labelled NONE.
static void proc_check(const task_problem *p, const char *marked) {
    char text[1024] = {0}, want[1024];
    size_t n = 0;
    char cur = '.';
    for (const char *c = marked; *c; c++) {
        if (*c == '[') { cur = *++c; continue; }
        if (*c == ']') { cur = '.'; continue; }
        want[n] = cur;
        text[n++] = *c;
    }
    uint8_t lab[1024];
    assert_true(reward_process_labels(p, text, n, lab));
    char got[1025];
    for (size_t i = 0; i < n; i++) got[i] = ".fox"[lab[i]];
    got[n] = want[n] = 0;
    if (strcmp(got, want)) print_error("process labels\n text %.*s\n got  %s\n want %s\n", (int)n, text, got, want);
    assert_string_equal(got, want);
}

static void test_process_labels(void **state) {
    (void)state;
    const int64_t v3[] = {9, 7, 3}, v4[] = {9, 7, 3, 2};
    task_problem p = countdown(v3, 3, 30), q = countdown(v4, 4, 30);
    // a right failed guess, then a right successful one and its answer
    proc_check(&p, "target [o30]\n[f9] [f+] [f7] = [o16] vs [o30],[o left] [o16] [o3], [f16] [f-] [f3] = [o13] vs [o30],[o no]\n"
                   "[f7] [f*] [f3] = [o21] vs [o30],[o left] [o21] [o9], [f21] [f+] [f9] = [o30] vs [o30],[o yes]\n"
                   "</think>\n\n\\boxed{[o7*3+9]}");
    // wrong echoed target; a wrong result leaves the rest of its line unlabelled
    proc_check(&p, "target [x31]\n9 + 7 = 16");
    proc_check(&p, "target [o30]\n[f9] [f+] [f7] = [x17], left 17 3, 17 - 3 = 14 vs 30, no\n[f9] [f-] [f7] = [o2]");
    // a "yes" on a wrong value, and the reasoning closed after it (no "yes" was right)
    proc_check(&p, "target [o30]\n[f9] [f*] [f3] = [o27] vs [o30],[x yes]\n[x</think>]\n\n\\boxed{9*3}");
    // a missed "yes"
    proc_check(&p, "target [o30]\n[f7] [f*] [f3] = [o21] vs [o30],[o left] [o21] [o9], [f21] [f+] [f9] = [o30] vs [o30],[x no]\n");
    // 4 numbers: a value dropped (a choice; the walk goes on with the list as written), a value
    // too many, a value not left, a list without the result first
    proc_check(&q, "target [o30]\n[f9] [f+] [f7] = [o16] vs [o30],[o left] [o16] [o3][f,] [f16] [f+] [f3] = [o19] vs [o30],[o no]\n"
                   "[f9] [f+] [f7] = [o16] vs [o30],[o left] [o16] [o3] [o2][x ]9\n"
                   "[f9] [f+] [f7] = [o16] vs [o30],[o left] [o16] [x7], 16 - 7\n"
                   "[f9] [f+] [f7] = [o16] vs [o30],[o left] [x3] 16 2, 16 - 7");
    // operands not among the values left, a smaller first operand, inexact division
    proc_check(&p, "target [o30]\n[x8] + 7 = 15 vs 30, no\n[f7] [f-] [x9] = -2\n[f9] [f/] [x7] = 1\n[f9] [f+] [x9]");
    // a wrong answer after a right "yes"; closing without one; a word where the verdict goes
    proc_check(&p, "target [o30]\n[f7] [f*] [f3] = [o21] vs [o30],[o left] [o21] [o9], [f21] [f+] [f9] = [o30] vs [o30],[o yes]\n"
                   "</think>\n\n\\boxed{[x7*3-9]}");
    proc_check(&p, "target [o30]\n[f9] [f+] [f7] = [o16] vs [o30],[o left] [o16] [o3], [f16] [f-] [f3] = [o13] vs [o30],[o no]\n"
                   "[x</think>]\n\n\\boxed{16*3}");
    proc_check(&p, "target [o30]\n[f9] [f+] [f7] = [o16] vs [o30],[x yes]\n[x</think>]");
    proc_check(&p, "target [o30]\n[f7] [f*] [f3] = [o21] vs [o30],[o left] [o21] [o9], [f21] [f+] [f9] = [o30] vs [o30],[o yes]\n"
                   "[x9] + 7 = 16");
    // truncated anywhere: never a read past the end (the sanitizer build checks)
    const char *full = "target 30\n7 * 3 = 21 vs 30, left 21 9, 21 + 9 = 30 vs 30, yes\n</think>\n\n\\boxed{7*3+9}";
    uint8_t lab[256];
    for (size_t n = 0; n <= strlen(full); n++) {
        char *cut = malloc(n ? n : 1);
        memcpy(cut, full, n);
        assert_true(reward_process_labels(&p, cut, n, lab));
        free(cut);
    }
    task_problem a = arith("26");
    lab[0] = 7;
    assert_false(reward_process_labels(&a, "target 30\n", 10, lab));
    assert_int_equal(lab[0], 7);
}

// Every trace the generator writes (repeated numbers included) is labelled right through: no
// BAD label, every digit checked or free, the answer checked.
static void test_process_labels_traces(void **state) {
    (void)state;
    task_spec spec;
    ds_error err = {{0}};
    assert_int_equal(task_spec_parse(TASK_COUNTDOWN, "n:2-5,max:15", &spec, &err), DS_OK);
    task_problem *ps = NULL;
    assert_int_equal(task_generate(&spec, 5, TASK_SPLIT_TRAIN, 200, &ps, &err), DS_OK);
    int n_ok = 0;
    for (int i = 0; i < 200; i++) {
        char *tr = NULL;
        if (task_trace(&ps[i], TASK_CD_TRACE_GUESS, &tr, &err)) continue; // no integer-only solution
        const char *c = tr + strlen("<think>\n");
        size_t n = strlen(c);
        uint8_t *lab = malloc(n);
        assert_true(reward_process_labels(&ps[i], c, n, lab));
        int box_ok = 0;
        for (size_t k = 0; k < n; k++) {
            if (lab[k] == REWARD_PROC_BAD) print_error("BAD at %zu in\n%s\n", k, c);
            assert_int_not_equal(lab[k], REWARD_PROC_BAD);
            if (c[k] >= '0' && c[k] <= '9') assert_int_not_equal(lab[k], REWARD_PROC_NONE);
            box_ok += lab[k] == REWARD_PROC_OK && k > 0 && c[k - 1] == '{';
        }
        assert_int_equal(box_ok, 1);
        n_ok++;
        free(lab);
        free(tr);
    }
    assert_true(n_ok > 100);
    task_problems_free(ps, 200);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_extract),
        cmocka_unit_test(test_arithmetic),
        cmocka_unit_test(test_countdown),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_process_labels),
        cmocka_unit_test(test_process_labels_traces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
