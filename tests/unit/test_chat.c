// Reasoning split and the open-<think> check used by run/chat (and later the server).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/chat.h"

static void check_split(const char *reply, bool in_reasoning, const char *want_r, const char *want_a) {
    char *r, *a;
    chat_split_reasoning(reply, in_reasoning, &r, &a);
    assert_string_equal(r, want_r);
    assert_string_equal(a, want_a);
    free(r);
    free(a);
}

static void test_split(void **state) {
    (void)state;
    check_split("<think>\nplan</think>\n\nanswer", false, "\nplan", "answer");
    check_split("plan</think>answer", true, "plan", "answer"); // R1: the prompt opened <think>
    check_split("no tags at all", false, "", "no tags at all");
    check_split("still thinking", true, "still thinking", "");
    check_split("a</think>b</think>c", true, "a", "b</think>c");
}

static void test_opens_reasoning(void **state) {
    (void)state;
    assert_true(chat_prompt_opens_reasoning("<｜User｜>hi<｜Assistant｜><think>\n"));
    assert_false(chat_prompt_opens_reasoning("<｜User｜>hi<｜Assistant｜>"));
    assert_false(chat_prompt_opens_reasoning("<think>x</think>done"));
    assert_true(chat_prompt_opens_reasoning("<think>x</think>again<think>\n"));
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_split), cmocka_unit_test(test_opens_reasoning)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
