// The server's text layer: the streaming reasoning split (any cut of the output into pieces, and
// real token streams, give what chat_split_reasoning gives on the whole text), stop sequences,
// UTF-8 checks and request validation.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "server/api.h"
#include "server/text.h"
#include "tokenizer/chat.h"
#include "test_util.h"

// Splits `text` cut at the given offsets (sorted, within the text).
static void split_pieces(const char *text, bool in_r, const size_t *cuts, int n_cuts, srv_buf *r, srv_buf *a) {
    think_split t;
    think_split_init(&t, in_r);
    size_t prev = 0, len = strlen(text);
    for (int i = 0; i <= n_cuts; i++) {
        size_t end = i < n_cuts ? cuts[i] : len;
        think_split_push(&t, text + prev, end - prev, r, a);
        prev = end;
    }
    think_split_flush(&t, r, a);
    srv_buf_add(r, "", 0);
    srv_buf_add(a, "", 0);
}

static void expect_like_chat_split(const char *text, bool in_r) {
    char *er, *ea;
    chat_split_reasoning(text, in_r, &er, &ea);
    size_t len = strlen(text);
    // Whole, every single cut, and byte by byte.
    for (size_t c = 0; c <= len + 1; c++) {
        size_t cuts[4096];
        int n = 0;
        if (c <= len) cuts[n++] = c;
        else
            for (size_t k = 1; k < len && n < 4096; k++) cuts[n++] = k;
        srv_buf r = {0}, a = {0};
        split_pieces(text, in_r, cuts, n, &r, &a);
        if (strcmp(r.p, er) || strcmp(a.p, ea))
            fail_msg("split of '%s' (in_reasoning %d, cut %zu): reasoning '%s' answer '%s', expected '%s' / '%s'", text,
                     in_r, c, r.p, a.p, er, ea);
        srv_buf_free(&r);
        srv_buf_free(&a);
    }
    free(er);
    free(ea);
}

static void test_think_split(void **state) {
    (void)state;
    // R1: the prompt opened <think>; the reply closes it.
    const char *opened[] = {"", "plain", "reason</think>answer", "reason</think>\n\nanswer", "a</thin", "a</think",
                            "a</think>", "</think>x", "<<//</think>>", "x</think>y</think>z", "<think>r</think>a",
                            "\n<think>\nr\n</think>\n\na", "  <thi", "r</tHink>a", "多语言</think>答案"};
    for (size_t i = 0; i < sizeof opened / sizeof *opened; i++) expect_like_chat_split(opened[i], true);
    // Not opened: reasoning only when the reply starts with <think> (and closes it), else all answer.
    const char *closed[] = {"", "plain", "<think>r</think>a", " \n<think>r</think>\na", "<thin", "< think>",
                            "a<think>b", "x<", "\n\n"};
    for (size_t i = 0; i < sizeof closed / sizeof *closed; i++) expect_like_chat_split(closed[i], false);
}

// Streaming differs from chat_split_reasoning where the whole text is needed to decide: an
// unterminated <think> at the start is reasoning (the model is still thinking).
static void test_think_split_streaming_cases(void **state) {
    (void)state;
    srv_buf r = {0}, a = {0};
    split_pieces("<think>still thinking", false, NULL, 0, &r, &a);
    assert_string_equal(r.p, "still thinking");
    assert_string_equal(a.p, "");
    srv_buf_free(&r);
    srv_buf_free(&a);
    split_pieces("<think>", true, NULL, 0, &r, &a); // the tag itself is never text
    assert_string_equal(r.p, "");
    srv_buf_free(&r);
    srv_buf_free(&a);
    // Held tag fragments come out only when decided.
    think_split t;
    think_split_init(&t, true);
    srv_buf r2 = {0}, a2 = {0};
    think_split_push(&t, "abc</th", 7, &r2, &a2);
    assert_int_equal(r2.len, 3);
    think_split_push(&t, "ink>\nok", 7, &r2, &a2);
    assert_int_equal(r2.len, 3);
    assert_int_equal(a2.len, 2);
    assert_memory_equal(a2.p, "ok", 2);
    srv_buf_free(&r2);
    srv_buf_free(&a2);
}

static void test_stop(void **state) {
    (void)state;
    char *stops[] = {"END", "\n\n", "xyz"};
    const char *t = "hello\nworld EN";
    assert_int_equal(stop_find(t, strlen(t), 0, stops, 3), -1);
    assert_int_equal(stop_safe_len(t, strlen(t), stops, 3), strlen(t) - 2); // "EN" may become END
    const char *t2 = "hello EN";
    assert_int_equal(stop_find("hello END!", 10, 7, stops, 3), 6); // match starts before `from`
    assert_int_equal(stop_find("a\n\nb END", 8, 0, stops, 3), 1);   // the earliest of several
    assert_int_equal(stop_safe_len(t2, 6, stops, 3), 6);
    assert_int_equal(stop_safe_len("ab\n", 3, stops, 3), 2);
    assert_int_equal(stop_safe_len("abc", 3, stops, 0), 3);
}

static void test_utf8(void **state) {
    (void)state;
    assert_true(utf8_valid("héllo 世界 🙂", strlen("héllo 世界 🙂")));
    assert_false(utf8_valid("\xff", 1));
    assert_false(utf8_valid("\xc3", 1));              // truncated
    assert_false(utf8_valid("\xc0\xaf", 2));          // overlong
    assert_false(utf8_valid("\xed\xa0\x80", 3));      // surrogate
    assert_false(utf8_valid("\xf4\x90\x80\x80", 4));  // > U+10FFFF
}

static void parse_fails(const char *body, bool chat, int status, const char *param) {
    api_request r;
    api_error e;
    if (api_parse(&r, body, strlen(body), chat, "m", 1000, &e)) {
        api_request_free(&r);
        fail_msg("accepted: %s", body);
    }
    if (e.status != status) fail_msg("%s: status %d, expected %d (%s)", body, e.status, status, e.message);
    if (param && (!e.param || strcmp(e.param, param))) fail_msg("%s: param %s, expected %s", body, e.param, param);
    char *j = api_error_json(&e);
    assert_non_null(strstr(j, "\"error\":{\"message\":"));
    free(j);
}

static void test_api_parse(void **state) {
    (void)state;
    api_request r;
    api_error e;
    const char *ok = "{\"model\":\"m\",\"messages\":[{\"role\":\"developer\",\"content\":\"s\"},{\"role\":\"user\",\"content\":"
                     "[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]}],\"temperature\":0,\"stop\":\"x\","
                     "\"max_completion_tokens\":5,\"seed\":-3,\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                     "\"logprobs\":true,\"top_logprobs\":2,\"n\":2,\"logit_bias\":{\"7\":-100},\"future_field\":[1,{}],"
                     "\"top_p\":null}";
    assert_true(api_parse(&r, ok, strlen(ok), true, "m", 1000, &e));
    assert_int_equal(r.n_msgs, 2);
    assert_string_equal(r.msgs[0].role, "system");
    assert_string_equal(r.msgs[1].content, "ab");
    assert_int_equal(r.max_tokens, 5);
    assert_int_equal(r.n_stop, 1);
    assert_true(r.stream && r.include_usage && r.logprobs && r.has_seed);
    assert_int_equal(r.top_logprobs, 2);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.n_bias, 1);
    assert_true(r.top_p == 1.0);
    api_request_free(&r);
    const char *cmpl = "{\"prompt\":[\"hi\"],\"logprobs\":3}";
    assert_true(api_parse(&r, cmpl, strlen(cmpl), false, "m", 1000, &e));
    assert_string_equal(r.prompt, "hi");
    assert_int_equal(r.max_tokens, 16);
    assert_true(r.logprobs);
    api_request_free(&r);

    parse_fails("", true, 400, NULL);
    parse_fails("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]", true, 400, NULL);
    parse_fails("[1]", true, 400, NULL);
    parse_fails("{}", true, 400, "messages");
    parse_fails("{\"messages\":{}}", true, 400, "messages");
    parse_fails("{\"messages\":[1]}", true, 400, "messages");
    parse_fails("{\"messages\":[{\"content\":\"x\"}]}", true, 400, "messages");
    parse_fails("{\"messages\":[{\"role\":\"user\",\"content\":5}]}", true, 400, "messages");
    parse_fails("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", true, 400, "messages");
    parse_fails("{\"model\":\"other\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", true, 404, "model");
    parse_fails("{\"model\":3,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", true, 400, "model");
    const char *m = "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]";
    char buf[512];
    const char *bad[][2] = {{"\"temperature\":\"1\"", "temperature"}, {"\"temperature\":3", "temperature"},
                            {"\"max_tokens\":0", "max_tokens"},      {"\"max_tokens\":2.5", "max_tokens"},
                            {"\"max_tokens\":1e300", "max_tokens"},   {"\"n\":100", "n"},
                            {"\"stream\":1", "stream"},               {"\"stop\":[1]", "stop"},
                            {"\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]", "stop"}, {"\"top_logprobs\":2", "top_logprobs"},
                            {"\"logit_bias\":{\"x\":1}", "logit_bias"}, {"\"logit_bias\":{\"5000\":1}", "logit_bias"},
                            {"\"logit_bias\":{\"5\":1000}", "logit_bias"}, {"\"stream_options\":true", "stream_options"},
                            {"\"seed\":\"s\"", "seed"},               {"\"reasoning_format\":\"x\"", "reasoning_format"},
                            {"\"top_p\":-1", "top_p"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(buf, sizeof buf, "{%s,%s}", m, bad[i][0]);
        parse_fails(buf, true, 400, bad[i][1]);
    }
    parse_fails("{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}", true, 400, "messages");
    parse_fails("{\"prompt\":5}", false, 400, "prompt");
    parse_fails("{\"prompt\":[\"a\",\"b\"]}", false, 400, "prompt");
    parse_fails("{\"prompt\":\"a\",\"logprobs\":true}", false, 400, "logprobs");
    // Deep nesting is a parse error, not a stack overflow.
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[2 * depth] = 0;
    parse_fails(deep, true, 400, NULL);
    free(deep);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_think_split),
        cmocka_unit_test(test_think_split_streaming_cases),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_api_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
