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
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_extract),
        cmocka_unit_test(test_arithmetic),
        cmocka_unit_test(test_countdown),
        cmocka_unit_test(test_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
