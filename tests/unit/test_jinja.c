// Jinja subset: real chat templates byte for byte against @huggingface/jinja
// (tests/fixtures/templates/expected.jsonl, made by tools/template_fixtures.mjs), each
// language feature on a small case, and error cases that must fail cleanly.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <time.h>
#include "test_util.h"
#include "tokenizer/jinja.h"

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s) s[n] = 0;
    fclose(f);
    return s;
}

// Renders tmpl with the JSON context text ctx; returns the status, *out owned by the caller.
static ds_status render(const char *tmpl, const char *ctx, char **out, ds_error *err) {
    cJSON *j = cJSON_Parse(ctx ? ctx : "{}");
    assert_non_null(j);
    ds_status st = jinja_render(tmpl, j, out, err);
    cJSON_Delete(j);
    return st;
}

static void expect(const char *tmpl, const char *ctx, const char *want) {
    char *out = NULL;
    ds_error err = {{0}};
    ds_status st = render(tmpl, ctx, &out, &err);
    if (st != DS_OK) fail_msg("template %s: %s", tmpl, err.msg);
    if (strcmp(out, want)) fail_msg("template %s\n  got:  [%s]\n  want: [%s]", tmpl, out, want);
    free(out);
}

static void expect_err(const char *tmpl, const char *ctx, ds_status code, const char *msg_part) {
    char *out = NULL;
    ds_error err = {{0}};
    ds_status st = render(tmpl, ctx, &out, &err);
    if (st != code) fail_msg("template %s: status %s, want %s (%s)", tmpl, ds_status_name(st), ds_status_name(code), err.msg);
    assert_null(out);
    if (msg_part && !strstr(err.msg, msg_part)) fail_msg("template %s: message '%s' lacks '%s'", tmpl, err.msg, msg_part);
}

static void test_fixtures_match_reference(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/templates/expected.jsonl", fixtures());
    char *all = read_text(path);
    assert_non_null(all);
    int cases = 0, errors = 0;
    for (char *line = all, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        cJSON *rec = cJSON_Parse(line);
        assert_non_null(rec);
        const char *name = cJSON_GetObjectItem(rec, "template")->valuestring;
        snprintf(path, sizeof path, "%s/templates/%s.jinja", fixtures(), name);
        char *tmpl = read_text(path);
        assert_non_null(tmpl);
        char *out = NULL;
        ds_error err = {{0}};
        ds_status st = jinja_render(tmpl, cJSON_GetObjectItem(rec, "context"), &out, &err);
        const cJSON *want = cJSON_GetObjectItem(rec, "rendered");
        if (want) {
            if (st != DS_OK) fail_msg("case %d (%s): %s", cases, name, err.msg);
            if (strcmp(out, want->valuestring))
                fail_msg("case %d (%s) differs\n  got:  [%s]\n  want: [%s]", cases, name, out, want->valuestring);
        } else {
            // the reference raised: we must fail too, never render something else
            if (st == DS_OK) fail_msg("case %d (%s): rendered [%s], reference failed with %s", cases, name, out,
                                      cJSON_GetObjectItem(rec, "error")->valuestring);
            errors++;
        }
        free(out);
        free(tmpl);
        cJSON_Delete(rec);
        cases++;
    }
    free(all);
    assert_true(cases >= 15 * 7);
    assert_true(errors < cases / 10);
}

// The R1 examples spelled out in docs/deepseek-architecture.md section 7.
static void test_r1_documented_prompts(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/templates/deepseek_r1_think.jinja", fixtures());
    char *tmpl = read_text(path);
    assert_non_null(tmpl);
    expect(tmpl,
           "{\"bos_token\":\"<｜begin▁of▁sentence｜>\",\"add_generation_prompt\":true,"
           "\"messages\":[{\"role\":\"user\",\"content\":\"What is 1+1?\"}]}",
           "<｜begin▁of▁sentence｜><｜User｜>What is 1+1?<｜Assistant｜><think>\n");
    expect(tmpl,
           "{\"bos_token\":\"<｜begin▁of▁sentence｜>\",\"add_generation_prompt\":true,\"messages\":["
           "{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"U1\"},"
           "{\"role\":\"assistant\",\"content\":\"<think>R</think>\\n\\nA1\"},{\"role\":\"user\",\"content\":\"U2\"}]}",
           "<｜begin▁of▁sentence｜>S<｜User｜>U1<｜Assistant｜>\n\nA1<｜end▁of▁sentence｜><｜User｜>U2<｜Assistant｜><think>\n");
    free(tmpl);
}

static void test_text_and_whitespace(void **state) {
    (void)state;
    expect("plain text", NULL, "plain text");
    expect("one trailing newline dropped\n", NULL, "one trailing newline dropped");
    expect("a\n\n", NULL, "a\n");
    expect("{# comment #}x", NULL, "x");
    expect("a  {{- 'b' -}}  \n c", NULL, "abc");
    expect("a {%- if true -%} b {%- endif -%} c", NULL, "abc");
    expect("a {#- c -#} b", NULL, "ab");
    // trim_blocks: the newline after a block tag goes; lstrip_blocks: indentation before it
    expect("{% if true %}\nyes\n{% endif %}\nafter", NULL, "yes\nafter");
    expect("  {% if true %}x{% endif %}", NULL, "x");
    expect("  {{ 'x' }}\n", NULL, "  x");
    expect("a  {% if true %}x{% endif %}", NULL, "a  x");
    expect("{% for i in [1,2] %}\n  {{ i }}\n{% endfor %}", NULL, "  1\n  2\n");
}

static void test_literals_and_output(void **state) {
    (void)state;
    expect("{{ 'a\\tb\\n' ~ \"q\\\"\" ~ '\\u00e9\\x41' }}", NULL, "a\tb\nq\"éA");
    expect("{{ 'a' 'b' }}", NULL, "ab");
    expect("{{ 42 }} {{ -7 }} {{ 1.5 }} {{ 2.0 }} {{ 0.1 + 0.2 }}", NULL, "42 -7 1.5 2.0 0.30000000000000004");
    expect("{{ true }} {{ False }} [{{ none }}] [{{ None }}] [{{ undefined_var }}]", NULL, "true false [] [] []");
    expect("{{ [1, 'a', none, true] }}", NULL, "[1, \"a\", null, true]");
    expect("{{ {'k': 'v', 'n': [1]} }}", NULL, "{\"k\": \"v\", \"n\": [1]}");
    expect("{{ (1, 2) }}", NULL, "[1, 2]");
}

static void test_access(void **state) {
    (void)state;
    const char *ctx = "{\"m\":{\"content\":\"hi\",\"list\":[1,2,3,4]},\"s\":\"héllo\"}";
    expect("{{ m['content'] }}{{ m.content }}", ctx, "hihi");
    expect("{{ m.list[0] }}{{ m.list[-1] }}{{ m.list.1 }}", ctx, "142");
    expect("{{ m.list[1:] }}{{ m.list[:2] }}{{ m.list[::-1] }}{{ m.list[1:3] }}{{ m.list[-2:] }}", ctx,
           "[2, 3, 4][1, 2][4, 3, 2, 1][2, 3][3, 4]");
    expect("{{ s[1] }}{{ s[::-1] }}{{ s[1:3] }}{{ s[-1] }}", ctx, "éolléhélo");
    expect("[{{ m.missing }}]{{ m.missing is defined }}{{ m.missing.deeper is defined }}", ctx, "[]falsefalse");
    expect("{{ m.get('content') }}{{ m.get('nope', 'dflt') }}{{ m.get('nope') is none }}", ctx, "hidflttrue");
}

static void test_operators(void **state) {
    (void)state;
    expect("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }}", NULL,
           "7 9 3 -4 1 2 3.5 1024");
    expect("{{ 'a' + 'b' }} {{ 'n' ~ 1 ~ true }} {{ 'x' * 3 }} {{ [1] + [2] }}", NULL, "ab n1true xxx [1, 2]");
    expect("{{ 1 < 2 }} {{ 2 <= 1 }} {{ 'a' < 'b' }} {{ 1 == 1.0 }} {{ 'a' != 'a' }}", NULL, "true false true true false");
    expect("{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }} {{ 'x' in undefined_thing }}",
           NULL, "true true true true false");
    expect("{{ true and 'yes' }} {{ false or 'fallback' }} {{ not true }} {{ not 1 == 2 }} {{ '' or 0 }}", NULL,
           "yes fallback false true 0");
    expect("{{ 'y' if 1 > 0 else 'n' }} {{ 'y' if [] else 'n' }} [{{ 'y' if false }}]", NULL, "y n []");
}

static void test_tests(void **state) {
    (void)state;
    const char *ctx = "{\"d\":{\"a\":1},\"l\":[1],\"s\":\"x\",\"n\":null,\"i\":3,\"f\":1.5,\"b\":true}";
    expect("{{ d is mapping }}{{ l is mapping }}{{ l is iterable }}{{ s is iterable }}{{ i is iterable }}", ctx,
           "truefalsetruetruefalse");
    expect("{{ n is none }}{{ s is not none }}{{ s is string }}{{ i is string }}{{ i is number }}{{ f is float }}", ctx,
           "truetruetruefalsetruetrue");
    expect("{{ x is defined }}{{ x is not defined }}{{ x is undefined }}{{ b is boolean }}{{ b is true }}", ctx,
           "falsetruetruetruetrue");
    expect("{{ i is odd }}{{ i is even }}{{ i is divisibleby 3 }}{{ i is equalto 3 }}{{ s is lower }}", ctx,
           "truefalsetruetruetrue");
    expect("{{ not s is defined }}", ctx, "false");
}

static void test_control_flow(void **state) {
    (void)state;
    expect("{% if 0 %}a{% elif '' %}b{% elif [1] %}c{% else %}d{% endif %}", NULL, "c");
    expect("{% if false %}a{% else %}b{% endif %}", NULL, "b");
    expect("{% for x in ['a','b','c'] %}{{ loop.index }}{{ loop.index0 }}{{ x }}{{ loop.first }}{{ loop.last }}"
           "{{ loop.length }}{{ loop.revindex }};{% endfor %}",
           NULL, "10atruefalse33;21bfalsefalse32;32cfalsetrue31;");
    expect("{% for x in [] %}a{% else %}empty{% endfor %}", NULL, "empty");
    expect("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}", NULL, "a=1;b=2;");
    expect("{% for k, v in {'a': 1} | items %}{{ k }}{{ v }}{% endfor %}{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}",
           NULL, "a1xy");
    expect("{% for x in range(5) if x is odd %}{{ x }}{{ loop.length }}{% endfor %}", NULL, "1232");
    expect("{% for x in range(10) %}{% if x == 3 %}{% break %}{% endif %}{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% endfor %}",
           NULL, "02");
    expect("{% for x in [[1, 2], [3]] %}{% for y in x %}{{ loop.index }}{{ y }}{% endfor %}|{% endfor %}", NULL, "1122|13|");
}

static void test_set_namespace_macro(void **state) {
    (void)state;
    expect("{% set x = 'a' %}{% set x = x + 'b' %}{{ x }}", NULL, "ab");
    expect("{% set a, b = [1, 2] %}{{ b }}{{ a }}", NULL, "21");
    expect("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}", NULL, "1");  // loop scope
    expect("{% set ns = namespace(n=0, s='') %}{% for i in [1,2,3] %}{% set ns.n = ns.n + i %}{% set ns.s = ns.s ~ i %}"
           "{% endfor %}{{ ns.n }} {{ ns.s }}",
           NULL, "6 123");
    expect("{% set block %}in {{ 'side' }}{% endset %}[{{ block }}]", NULL, "[in side]");
    expect("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', punct='?') }}",
           NULL, "Hi A! Hi B?");
    expect("{% generation %}kept{% endgeneration %}", NULL, "kept");
}

static void test_filters(void **state) {
    (void)state;
    const char *ctx = "{\"l\":[\"a\",\"b\",\"c\"],\"d\":{\"k\":\"v\",\"n\":[1,2]},\"s\":\"  Hello World \\u3000\"}";
    expect("[{{ s | trim }}]{{ s | length }}{{ l | length }}{{ d | length }}", ctx, "[Hello World]15" "3" "2");
    expect("{{ l | join(', ') }}|{{ l | join }}|{{ l | first }}{{ l | last }}{{ 'xyz' | first }}", ctx, "a, b, c|abc|acx");
    expect("{{ 'MiXed' | lower }}{{ 'MiXed' | upper }}{{ 'hello world' | capitalize }}{{ 'hello world' | title }}", NULL,
           "mixedMIXEDHello worldHello World");
    expect("{{ 'aXbXc' | replace('X', '-') }}{{ nope | default('dflt') }}{{ '' | default('e', true) }}{{ 'v' | d('x') }}", NULL,
           "a-b-cdfltev");
    expect("{{ d | tojson }}", ctx, "{\"k\": \"v\", \"n\": [1, 2]}");
    expect("{{ d | tojson(indent=2) }}", ctx, "{\n  \"k\": \"v\",\n  \"n\": [\n    1,\n    2\n  ]\n}");
    expect("{{ 'é\"\\n' | tojson }}{{ 'é' | tojson(ensure_ascii=true) }}{{ [] | tojson(indent=4) }}", NULL,
           "\"é\\\"\\n\"\"\\u00e9\"[]");
    expect("{{ 3 | string }}{{ [1] | string }}{{ '42' | int + 1 }}{{ 2.7 | int }}{{ 2.5 | round }}{{ 3.14159 | round(2) }}", NULL,
           "3[1]4323.03.14");
    expect("{{ d | items | list }}{{ 'ab' | list }}{{ [3, 1] | reverse }}{{ (-3) | abs }}{{ -3 | abs }}", ctx,
           "[[\"k\", \"v\"], [\"n\", [1, 2]]][\"a\", \"b\"][1, 3]3-3");
    expect("{{ [{'n': 1}, {'n': 2}] | map(attribute='n') | join(',') }}", NULL, "1,2");
}

static void test_string_methods(void **state) {
    (void)state;
    expect("{{ 'a,b,,c'.split(',') }}{{ '  a  b '.split() }}{{ 'a,b,c'.split(',', 1) }}{{ 'a,b,c'.rsplit(',', 1) }}", NULL,
           "[\"a\", \"b\", \"\", \"c\"][\"a\", \"b\"][\"a\", \"b,c\"][\"a,b\", \"c\"]");
    expect("{{ 'x</think>y</think>z'.split('</think>')[-1] }}", NULL, "z");
    expect("{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith('bc') }}{{ 'abc'.startswith(('x', 'a')) }}", NULL, "truetruetrue");
    expect("[{{ '  x  '.strip() }}][{{ '  x  '.lstrip() }}][{{ '  x  '.rstrip() }}][{{ '\\n\\nx\\n'.strip('\\n') }}]", NULL,
           "[x][x  ][  x][x]");
    expect("{{ 'aaa'.replace('a', 'b', 2) }}{{ 'Hi'.upper() }}{{ 'Hi'.lower() }}{{ 'hi there'.title() }}{{ '-'.join(['a', 'b']) }}",
           NULL, "bbaHIhiHi Therea-b");
}

static void test_globals(void **state) {
    (void)state;
    expect("{{ range(3) }}{{ range(1, 7, 2) }}{{ range(3, 0, -1) }}", NULL, "[0, 1, 2][1, 3, 5][3, 2, 1]");
    // The date before and after the render: equal to one of them even across midnight.
    char before[64], after[64], got_tmpl[] = "{{ strftime_now('%Y-%m-%d') }}";
    struct tm tm;
    time_t now = time(NULL);
    localtime_r(&now, &tm);
    strftime(before, sizeof before, "%Y-%m-%d", &tm);
    char *out = NULL;
    ds_error err = {{0}};
    assert_int_equal(render(got_tmpl, NULL, &out, &err), DS_OK);
    now = time(NULL);
    localtime_r(&now, &tm);
    strftime(after, sizeof after, "%Y-%m-%d", &tm);
    assert_true(strcmp(out, before) == 0 || strcmp(out, after) == 0);
    free(out);
    expect("{{ strftime_now is defined }}{{ raise_exception is defined }}", NULL, "truetrue");
}

static void test_errors(void **state) {
    (void)state;
    expect_err("{{ x ", NULL, DS_ERR_FORMAT, "line 1");
    expect_err("a\n{% if true %}x", NULL, DS_ERR_FORMAT, "line 2");
    expect_err("{% for x in y %}", NULL, DS_ERR_FORMAT, "endfor");
    expect_err("{# never closed", NULL, DS_ERR_FORMAT, "comment");
    expect_err("{{ 'unterminated }}", NULL, DS_ERR_FORMAT, "string");
    expect_err("{% endif %}", NULL, DS_ERR_FORMAT, "endif");
    expect_err("\n\n{{ 'x' | frobnicate }}", NULL, DS_ERR_FORMAT, "template line 3: unsupported filter 'frobnicate'");
    expect_err("{{ x is frob }}", NULL, DS_ERR_FORMAT, "unsupported test");
    expect_err("{% raw %}x{% endraw %}", NULL, DS_ERR_FORMAT, "unsupported statement 'raw'");
    expect_err("{{ 'a'.nomethod() }}", NULL, DS_ERR_FORMAT, "unsupported");
    expect_err("{{ nofunc(1) }}", NULL, DS_ERR_FORMAT, "unsupported function 'nofunc'");
    expect_err("{{ raise_exception('Only user and assistant roles are supported!') }}", NULL, DS_ERR_ARG,
               "Only user and assistant roles are supported!");
    expect_err("{{ 1 // 0 }}", NULL, DS_ERR_FORMAT, "division by zero");
    expect_err("{{ none + 1 }}", NULL, DS_ERR_FORMAT, NULL);
    expect_err("{{ 'a' + [1] }}", NULL, DS_ERR_FORMAT, NULL);
    expect_err("{% for x in 5 %}{% endfor %}", NULL, DS_ERR_FORMAT, "iterate");
    expect_err("{% set x.y = 1 %}", NULL, DS_ERR_FORMAT, "namespace");
    expect_err("{{ 9223372036854775807 }}", NULL, DS_ERR_FORMAT, NULL);
    expect_err("{{ 4611686018427387904 * 4 }}", NULL, DS_ERR_FORMAT, NULL);
    expect_err("{{ @ }}", NULL, DS_ERR_FORMAT, "unexpected character");
}

static void test_limits(void **state) {
    (void)state;
    // deep recursion in a macro, nested expressions, huge loops and huge output all stop cleanly
    expect_err("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, DS_ERR_LIMIT, "recursion");
    char deep[4000];
    size_t k = 0;
    for (int i = 0; i < 1000; i++) deep[k++] = '(';
    deep[k++] = '1';
    for (int i = 0; i < 1000; i++) deep[k++] = ')';
    deep[k] = 0;
    char tmpl[4100];
    snprintf(tmpl, sizeof tmpl, "{{ %s }}", deep);
    expect_err(tmpl, NULL, DS_ERR_FORMAT, "nested too deeply");
    expect_err("{% set r = range(2000) %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}", NULL, DS_ERR_LIMIT,
               "iterations");
    expect_err("{% for i in range(1000) %}{{ 'x' * 100000 }}{% endfor %}", NULL, DS_ERR_LIMIT, "output");
    expect_err("{{ 'x' * 100000000000 }}", NULL, DS_ERR_LIMIT, NULL);
    expect_err("{{ range(100000000) | length }}", NULL, DS_ERR_LIMIT, NULL);
}

static void test_bad_arguments(void **state) {
    (void)state;
    char *out = (char *)1;
    ds_error err = {{0}};
    assert_int_equal(jinja_render(NULL, NULL, &out, &err), DS_ERR_ARG);
    assert_null(out);
    cJSON *arr = cJSON_CreateArray();
    assert_int_equal(jinja_render("x", arr, &out, &err), DS_ERR_ARG);
    cJSON_Delete(arr);
    assert_int_equal(jinja_render("", NULL, &out, &err), DS_OK);
    assert_string_equal(out, "");
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures_match_reference),
        cmocka_unit_test(test_r1_documented_prompts),
        cmocka_unit_test(test_text_and_whitespace),
        cmocka_unit_test(test_literals_and_output),
        cmocka_unit_test(test_access),
        cmocka_unit_test(test_operators),
        cmocka_unit_test(test_tests),
        cmocka_unit_test(test_control_flow),
        cmocka_unit_test(test_set_namespace_macro),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_string_methods),
        cmocka_unit_test(test_globals),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
