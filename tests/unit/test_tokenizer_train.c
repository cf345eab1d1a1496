// tokenizer_train: the merges of a toy corpus worked out by hand, tie-breaking, early stops,
// which JSONL strings are read, and the written tokenizer as the loader sees it (digits
// never merged, round trips, R1 chat tokens whole, BOS, the chat template, GGUF "qwen2"),
// determinism, chunked plain text, --max-bytes, interruption and malformed inputs.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <sys/stat.h>

#include "io/fileutil.h"
#include "io/gguf.h"
#include "test_tmpdir.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

#define BOS_TEXT "<｜begin▁of▁sentence｜>"
#define EOS_TEXT "<｜end▁of▁sentence｜>"
#define USER_TEXT "<｜User｜>"
#define ASSISTANT_TEXT "<｜Assistant｜>"

static void write_text(const char *path, const char *s) { write_bytes(path, s, strlen(s)); }

// Trains on files (comma-separated names in g_dir) into g_dir/out; returns the status.
static ds_status train(const char *files, int vocab, long min_freq, const char *out, tokenizer_train_stats *s,
                       ds_error *err) {
    const char *list[8];
    char names[8][512];
    int n = 0;
    for (const char *p = files; *p && n < 8;) {
        const char *c = strchr(p, ',');
        size_t l = c ? (size_t)(c - p) : strlen(p);
        snprintf(names[n], sizeof names[n], "%s/%.*s", g_dir, (int)l, p);
        list[n] = names[n];
        n++;
        p += l + (c != NULL);
    }
    tokenizer_train_params p = {.files = list, .n_files = n, .vocab_size = vocab, .min_frequency = min_freq};
    return tokenizer_train(tpath(out), &p, s, err);
}

static cJSON *read_json(const char *path) {
    char *data;
    size_t size;
    ds_error err = {{0}};
    if (file_read_all(path, &data, &size, &err)) fail_msg("%s", err.msg);
    cJSON *j = cJSON_ParseWithLength(data, size);
    free(data);
    assert_non_null(j);
    return j;
}

// model.merges of out/tokenizer.json joined with '|'.
static char *merges_of(const char *out) {
    char path[600];
    snprintf(path, sizeof path, "%s/tokenizer.json", tpath(out));
    cJSON *j = read_json(path), *it;
    char *s = calloc(1, 1 << 16);
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(cJSON_GetObjectItem(j, "model"), "merges")) {
        if (s[0]) strcat(s, "|");
        strcat(s, it->valuestring);
    }
    cJSON_Delete(j);
    return s;
}

// The classic example: hug x10, pug x5, pun x12, bun x4, hugs x5, one word a line.
static void write_hug(const char *name) {
    static const struct { const char *w; int n; } words[] = {{"hug", 10}, {"pug", 5}, {"pun", 12}, {"bun", 4}, {"hugs", 5}};
    char buf[512] = {0};
    for (int i = 0; i < 5; i++)
        for (int k = 0; k < words[i].n; k++) strcat(strcat(buf, words[i].w), "\n");
    write_text(tpath(name), buf);
}

static void test_toy_merges(void **state) {
    (void)state;
    // By hand: u-g 20 (hug 10 + pug 5 + hugs 5), u-n 16, p-u 17 -> "u g"; then u-n 16 beats
    // h-ug 15 and p-un 12 -> "u n"; then h-ug 15 -> "h ug". Newlines are pieces of their own.
    write_hug("hug.txt");
    tokenizer_train_stats s;
    ds_error err = {{0}};
    assert_int_equal(train("hug.txt", 256 + 3 + 6, 2, "hug3", &s, &err), DS_OK);
    char *m = merges_of("hug3");
    assert_string_equal(m, "u g|u n|h ug");
    free(m);
    assert_int_equal(s.vocab_size, 265);
    assert_int_equal(s.n_merges, 3);
    assert_int_equal(s.stop, TOKENIZER_TRAIN_DONE);
    assert_int_equal(s.n_words, 72);
    assert_int_equal(s.n_distinct, 6);
    assert_int_equal(s.bos_id, 259);
    assert_int_equal(s.eos_id, 260);
    ds_tokenizer *t;
    assert_int_equal(tokenizer_load(&t, tpath("hug3"), &err), DS_OK);
    assert_int_equal(tokenizer_vocab_size(t), 265);
    assert_int_equal(tokenizer_token_id(t, "ug"), 256);
    assert_int_equal(tokenizer_token_id(t, "un"), 257);
    assert_int_equal(tokenizer_token_id(t, "hug"), 258);
    assert_int_equal(tokenizer_token_id(t, "a"), 'a'); // id = byte value
    assert_int_equal(tokenizer_token_id(t, "Ġ"), ' ');
    static const char *added[] = {BOS_TEXT, EOS_TEXT, USER_TEXT, ASSISTANT_TEXT, "<think>", "</think>"};
    for (int k = 0; k < 6; k++) assert_int_equal(tokenizer_token_id(t, added[k]), 259 + k);
    assert_int_equal(tokenizer_bos_id(t), 259);
    assert_int_equal(tokenizer_eos_id(t), 260);
    assert_true(tokenizer_is_special(t, 259) && tokenizer_is_special(t, 260));
    for (int k = 2; k < 6; k++) assert_false(tokenizer_is_special(t, 259 + k)); // as in DeepSeek-R1's file
    tokenizer_free(t);

    // Asking for more than the data allows: four more merges, then every word is one token.
    // "hug s" and "p ug" tie at 5: "hug" sorts before "p".
    assert_int_equal(train("hug.txt", 300, 2, "hugall", &s, &err), DS_OK);
    m = merges_of("hugall");
    assert_string_equal(m, "u g|u n|h ug|p un|hug s|p ug|b un");
    free(m);
    assert_int_equal(s.stop, TOKENIZER_TRAIN_NO_PAIRS);
    assert_int_equal(s.vocab_size, 256 + 7 + 6);
    assert_int_equal(s.bos_id, 263);
    // --min-frequency 5 stops before "b un" (4).
    assert_int_equal(train("hug.txt", 300, 5, "hug5", &s, &err), DS_OK);
    assert_int_equal(s.stop, TOKENIZER_TRAIN_MIN_FREQUENCY);
    assert_int_equal(s.n_merges, 6);
}

static void test_ties_and_overlaps(void **state) {
    (void)state;
    ds_error err = {{0}};
    tokenizer_train_stats s;
    // Equal counts: the pair whose token bytes sort first wins, whatever the input order.
    write_text(tpath("tie.txt"), "cd\nab\nba\n");
    assert_int_equal(train("tie.txt", 300, 1, "tie", &s, &err), DS_OK);
    char *m = merges_of("tie");
    assert_string_equal(m, "a b|b a|c d");
    free(m);
    assert_int_equal(train("tie.txt", 300, 2, "tie2", &s, &err), DS_OK);
    assert_int_equal(s.n_merges, 0);
    assert_int_equal(s.stop, TOKENIZER_TRAIN_MIN_FREQUENCY);
    // "aaaaa" x3: (a,a) counts 4 per word, merged left to right -> aa aa a; then (aa,aa) 3 and
    // (aa,a) 3 tie -> "aa a" sorts first ("a" < "aa") and takes the last two: aa aaa; then aa+aaa.
    write_text(tpath("aaa.txt"), "aaaaa\naaaaa\naaaaa\n");
    assert_int_equal(train("aaa.txt", 300, 1, "aaa", &s, &err), DS_OK);
    m = merges_of("aaa");
    assert_string_equal(m, "a a|aa a|aa aaa");
    free(m);
}

static void test_jsonl_fields(void **state) {
    (void)state;
    // "text", "prompt" (string or conversation) and messages[].content are read, other keys are
    // not, and added tokens are cut out before counting: nothing of "<think>" is ever merged.
    char buf[8192] = {0};
    for (int i = 0; i < 20; i++)
        strcat(buf, "{\"text\": \"xq xq\", \"id\": 7, \"other\": \"zzzzzzzz\", \"prompt\": \"wv\"}\n"
                    "{\"messages\": [{\"role\": \"user\", \"content\": \"" USER_TEXT "jk\"}, "
                    "{\"role\": \"assistant\", \"content\": \"<think>\\nmn</think>mn" EOS_TEXT "\"}]}\n"
                    "\n"
                    "{\"prompt\": [{\"role\": \"user\", \"content\": \"rs\"}], \"messages\": null}\n");
    write_text(tpath("f.jsonl"), buf);
    ds_error err = {{0}};
    tokenizer_train_stats s;
    assert_int_equal(train("f.jsonl", 400, 2, "fields", &s, &err), DS_OK);
    char *m = merges_of("fields");
    // Counts: mn 40, xq 20 + Ġxq 20 (x-q 40, Ġ-x 20), wv 20, jk 20, rs 20; "\n" pieces 20.
    assert_non_null(strstr(m, "m n"));
    assert_non_null(strstr(m, "x q"));
    assert_non_null(strstr(m, "w v"));
    assert_non_null(strstr(m, "j k"));
    assert_non_null(strstr(m, "r s"));
    assert_null(strstr(m, "z z"));
    assert_null(strstr(m, "t h"));
    assert_null(strstr(m, "<"));
    assert_true(strncmp(m, "m n|x q|", 8) == 0); // 40, 40 (tie broken by bytes), then the 20s
    free(m);
    assert_int_equal(s.stop, TOKENIZER_TRAIN_NO_PAIRS);
}

// A corpus like the shipped model's data: arithmetic with step-by-step traces in R1's chat
// format, countdown problems, and some prose and unicode.
static void write_corpus(const char *name, int n, uint64_t seed) {
    FILE *f = fopen(tpath(name), "w");
    assert_non_null(f);
    static const char *prose[] = {
        "The quick brown fox jumps over the lazy dog.", "Let me check that again, carefully.",
        "naïve café résumé — déjà vu", "你好，世界。数学很有趣。", "It's fine; they'll see we've won.",
        "Subtraction borrows from the next column when the digit on top is smaller.",
        "Multiply each digit, shift the partial products, and add them up.",
        "Countdown: combine the numbers with plus, minus, times and divide to reach the target.",
        "Wait, that overshoots the target; try a different grouping of the operands.",
        "Verification: substitute the result back into the original equation."};
    for (int i = 0; i < n; i++) {
        unsigned a = rng_next(&seed) % 100000, b = rng_next(&seed) % 1000;
        fprintf(f, "{\"messages\": [{\"role\": \"user\", \"content\": \"What is %u + %u?\"}, {\"role\": \"assistant\", "
                   "\"content\": \"<think>\\n", a, b);
        unsigned x = a, y = b, carry = 0;
        do {
            unsigned d = x % 10 + y % 10 + carry;
            fprintf(f, "%u + %u + %u = %u, write %u, carry %u\\n", x % 10, y % 10, carry, d, d % 10, d / 10);
            carry = d / 10, x /= 10, y /= 10;
        } while (x || y || carry);
        fprintf(f, "</think>\\n\\nThe answer is %u.\"}]}\n", a + b);
        fprintf(f, "{\"prompt\": \"Using the numbers [%u, %u, 25, %u], create an equation that equals %u.\", "
                   "\"text\": \"%s\"}\n", a % 10, b % 10, (a + b) % 20, 100 + a % 900, prose[i % 10]);
    }
    fclose(f);
}

static ds_tokenizer *TOK; // trained on the corpus, vocab 500
enum { V = 500 };

static void encode(const char *text, bool special, int **ids, int *n) {
    ds_error err = {{0}};
    if (tokenizer_encode(TOK, text, strlen(text), special, ids, n, &err)) fail_msg("%s", err.msg);
}

static void test_trained_tokenizer(void **state) {
    (void)state;
    write_corpus("c.jsonl", 1500, 11);
    ds_error err = {{0}};
    tokenizer_train_stats s;
    assert_int_equal(train("c.jsonl", V, 2, "tok", &s, &err), DS_OK);
    assert_int_equal(s.stop, TOKENIZER_TRAIN_DONE);
    assert_int_equal(s.vocab_size, V);
    assert_int_equal(tokenizer_load(&TOK, tpath("tok"), &err), DS_OK);
    assert_int_equal(tokenizer_vocab_size(TOK), V);
    assert_int_equal(tokenizer_bos_id(TOK), V - 6);
    assert_int_equal(tokenizer_eos_id(TOK), V - 5);

    // Digits are never merged: no learned token holds one, and each digit encodes alone.
    for (int id = 256; id < V - 6; id++) {
        const char *tx = tokenizer_token_text(TOK, id);
        assert_non_null(tx);
        assert_null(strpbrk(tx, "0123456789"));
    }
    int *ids, n;
    encode("The answer is 1234567890.", false, &ids, &n);
    int k = 0;
    while (k < n && ids[k] != '1') k++;
    assert_true(k + 10 < n);
    for (int d = 0; d < 10; d++) assert_int_equal(ids[k + d], '0' + (d + 1) % 10);
    free(ids);

    // The chat tokens are recognised whole; BOS comes with add_special.
    const char *chat = USER_TEXT "What is 2 + 3?" ASSISTANT_TEXT "<think>\n";
    encode(chat, false, &ids, &n);
    assert_int_equal(ids[0], V - 4);
    assert_int_equal(ids[n - 3], V - 3);
    assert_int_equal(ids[n - 2], V - 2);
    assert_int_equal(ids[n - 1], '\n');
    int *with, nw;
    encode(chat, true, &with, &nw);
    assert_int_equal(nw, n + 1);
    assert_int_equal(with[0], V - 6);
    assert_memory_equal(with + 1, ids, (size_t)n * sizeof(int));
    free(with);
    free(ids);
    encode(BOS_TEXT "x" EOS_TEXT "</think>", false, &ids, &n);
    assert_int_equal(n, 4);
    assert_int_equal(ids[0], V - 6);
    assert_int_equal(ids[2], V - 5);
    assert_int_equal(ids[3], V - 1);
    free(ids);
    // The corpus's frequent words became single tokens.
    encode(" carry", false, &ids, &n);
    assert_int_equal(n, 1);
    free(ids);

    // Round trips, unicode included (NFC text: the normalizer leaves it as is).
    static const char *texts[] = {
        "What is 4738 + 925?\n8 + 5 + 0 = 13, write 3, carry 1", "naïve café, déjà vu — 你好，世界 😀 👍🏽",
        "  two  spaces\n\n\ttab\r\n", ("<think>\nreasoning</think>\n\nanswer" EOS_TEXT), "Ærø Łódź ١٢٣ １２３ ½",
        "", "x", "<｜User", "It's DON'T they'LL"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        encode(texts[i], false, &ids, &n);
        char *dec;
        size_t dl;
        assert_int_equal(tokenizer_decode(TOK, ids, n, false, &dec, &dl, &err), DS_OK);
        assert_int_equal(dl, strlen(texts[i]));
        assert_memory_equal(dec, texts[i], dl);
        free(dec);
        free(ids);
    }
}

static void test_chat_template(void **state) {
    (void)state;
    char path[600], *want;
    size_t wl;
    ds_error err = {{0}};
    snprintf(path, sizeof path, "%s/templates/deepseek_r1_think.jinja", fixtures());
    assert_int_equal(file_read_all(path, &want, &wl, &err), DS_OK);
    assert_non_null(tokenizer_chat_template(TOK));
    assert_string_equal(tokenizer_chat_template(TOK), want);
    free(want);
    chat_msg m[] = {{"user", "What is 2 + 3?"}};
    char *out;
    assert_int_equal(chat_render(TOK, m, 1, true, &out, &err), DS_OK);
    assert_string_equal(out, BOS_TEXT USER_TEXT "What is 2 + 3?" ASSISTANT_TEXT "<think>\n");
    assert_true(chat_prompt_opens_reasoning(out));
    int *ids, n;
    encode(out, false, &ids, &n);
    assert_int_equal(ids[0], V - 6);
    assert_int_equal(ids[1], V - 4);
    free(ids);
    free(out);
    cJSON *c = read_json(tpath("tok/tokenizer_config.json"));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(c, "add_bos_token")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(c, "add_eos_token")));
    assert_string_equal(cJSON_GetObjectItem(c, "tokenizer_class")->valuestring, "LlamaTokenizerFast");
    assert_string_equal(cJSON_GetObjectItem(c, "bos_token")->valuestring, BOS_TEXT);
    assert_string_equal(cJSON_GetObjectItem(c, "eos_token")->valuestring, EOS_TEXT);
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(c, "model_max_length")));
    cJSON_Delete(c);
}

// The file's pipeline, piece by piece, and its GGUF form.
static void test_file_layout_and_gguf(void **state) {
    (void)state;
    cJSON *j = read_json(tpath("tok/tokenizer.json"));
    cJSON *pre = cJSON_GetObjectItem(j, "pre_tokenizer"), *want = cJSON_Parse(tokenizer_gguf_pre_json("qwen2"));
    assert_true(cJSON_Compare(pre, want, true));
    cJSON_Delete(want);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "normalizer"), "type")->valuestring, "NFC");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "decoder"), "type")->valuestring, "ByteLevel");
    const cJSON *pp = cJSON_GetObjectItem(j, "post_processor"), *model = cJSON_GetObjectItem(j, "model");
    assert_string_equal(cJSON_GetObjectItem(pp, "type")->valuestring, "TemplateProcessing");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(model, "ignore_merges")));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(model, "vocab")), V - 6);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(model, "merges")), V - 6 - 256);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "added_tokens")), 6);
    const cJSON *user = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "added_tokens"), 2);
    assert_string_equal(cJSON_GetObjectItem(user, "content")->valuestring, USER_TEXT);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(user, "normalized")));
    cJSON_Delete(j);

    gguf_writer w;
    gguf_writer_init(&w);
    gguf_writer_add_string(&w, "general.architecture", "deepseek2");
    ds_error err = {{0}};
    assert_int_equal(tokenizer_gguf_write(&w, tpath("tok"), V, &err), DS_OK);
    assert_int_equal(gguf_write(tpath("tok.gguf"), &w, &err), DS_OK);
    gguf_writer_free(&w);
    gguf_file f;
    assert_int_equal(gguf_open(&f, tpath("tok.gguf"), &err), DS_OK);
    const char *s;
    size_t l;
    assert_int_equal(gguf_get_string(&f, "tokenizer.ggml.pre", &s, &l, &err), DS_OK);
    assert_int_equal(l, 5);
    assert_memory_equal(s, "qwen2", 5);
    ds_tokenizer *g;
    assert_int_equal(tokenizer_load_gguf(&g, &f, &err), DS_OK);
    gguf_close(&f);
    const char *text = USER_TEXT "What is 4738 + 925?" ASSISTANT_TEXT "<think>\nnaïve 你好\n</think>";
    int *a, na, *b, nb;
    encode(text, true, &a, &na);
    assert_int_equal(tokenizer_encode(g, text, strlen(text), true, &b, &nb, &err), DS_OK);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, (size_t)na * sizeof(int));
    free(a);
    free(b);
    tokenizer_free(g);
    tokenizer_free(TOK);
}

static bool same_file(const char *a, const char *b) {
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    ds_error err = {{0}};
    if (file_read_all(a, &x, &nx, &err) || file_read_all(b, &y, &ny, &err)) fail_msg("%s", err.msg);
    bool same = nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return same;
}

static void test_deterministic_and_chunks(void **state) {
    (void)state;
    // Same data, same flags: the same bytes.
    ds_error err = {{0}};
    assert_int_equal(train("c.jsonl", 420, 2, "again", NULL, &err), DS_OK);
    assert_int_equal(train("c.jsonl", 420, 2, "again2", NULL, &err), DS_OK);
    assert_true(same_file(tpath("again/tokenizer.json"), tpath("again2/tokenizer.json")));
    assert_true(same_file(tpath("again/tokenizer_config.json"), tpath("again2/tokenizer_config.json")));

    // Plain text over 1 MiB is pre-tokenized in chunks cut after newlines; the result equals the
    // same text given whole as one JSONL "text".
    size_t cap = (3u << 20) / 2, n = 0;
    char *txt = malloc(cap), *json = malloc(cap * 2 + 64);
    uint64_t seed = 3;
    static const char *bits[] = {"word", " ", "\n", "\n\n", "  \n", "!\n", "12", " x", "é", "\r\n", "'s", "\t", "<think>"};
    while (n + 16 < cap) {
        const char *b = bits[rng_next(&seed) % 13];
        memcpy(txt + n, b, strlen(b));
        n += strlen(b);
    }
    txt[n] = 0;
    write_bytes(tpath("big.txt"), txt, n);
    size_t o = (size_t)sprintf(json, "{\"text\": \"");
    for (size_t i = 0; i < n; i++) {
        char c = txt[i];
        if (c == '\n') json[o++] = '\\', json[o++] = 'n';
        else if (c == '\r') json[o++] = '\\', json[o++] = 'r';
        else if (c == '\t') json[o++] = '\\', json[o++] = 't';
        else json[o++] = c;
    }
    o += (size_t)sprintf(json + o, "\"}\n");
    write_bytes(tpath("big.jsonl"), json, o);
    free(txt);
    free(json);
    tokenizer_train_stats s1, s2;
    assert_int_equal(train("big.txt", 400, 2, "plain", &s1, &err), DS_OK);
    assert_int_equal(train("big.jsonl", 400, 2, "whole", &s2, &err), DS_OK);
    assert_int_equal(s1.n_words, s2.n_words);
    assert_true(same_file(tpath("plain/tokenizer.json"), tpath("whole/tokenizer.json")));

    // --max-bytes: reading stops there (at a character boundary), the rest is ignored.
    const char *list[] = {tpath("big.txt"), tpath("c.jsonl")};
    tokenizer_train_params p = {.files = list, .n_files = 2, .vocab_size = 300, .min_frequency = 2, .max_bytes = 100001};
    assert_int_equal(tokenizer_train(tpath("cut"), &p, &s1, &err), DS_OK);
    assert_true(s1.truncated);
    assert_true(s1.text_bytes <= 100001 && s1.text_bytes >= 100001 - 3);
}

static bool exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void expect_error(const char *files, int vocab, const char *out, ds_status code, const char *what) {
    ds_error err = {{0}};
    ds_status st = train(files, vocab, 2, out, NULL, &err);
    if (st != code || !strstr(err.msg, what))
        fail_msg("%s: got status %d \"%s\", want %d and \"%s\"", files, st, err.msg, code, what);
    assert_false(exists(tpath(out)));
}

static void test_errors(void **state) {
    (void)state;
    write_text(tpath("bad.jsonl"), "{\"text\": \"fine\"}\n[1, 2]\n");
    expect_error("bad.jsonl", 300, "e1", DS_ERR_FORMAT, "bad.jsonl:2: not a JSON object");
    write_text(tpath("bad2.jsonl"), "\n{\"text\": \"ok\"}\n{\"text\": oops}\n");
    expect_error("bad2.jsonl", 300, "e2", DS_ERR_FORMAT, "bad2.jsonl:3:");
    write_text(tpath("bad3.jsonl"), "{\"text\": 5}\n");
    expect_error("bad3.jsonl", 300, "e3", DS_ERR_FORMAT, "bad3.jsonl:1: \"text\" must be a string");
    write_text(tpath("bad4.jsonl"), "{\"messages\": [{\"role\": \"user\", \"content\": [1]}]}\n");
    expect_error("bad4.jsonl", 300, "e4", DS_ERR_FORMAT, "messages[0].content");
    expect_error("hug.txt,missing.txt", 300, "e5", DS_ERR_IO, "missing.txt");
    expect_error("hug.txt", 261, "e6", DS_ERR_ARG, "at least 262");
    write_text(tpath("empty.jsonl"), "\n{\"other\": \"x\"}\n");
    expect_error("empty.jsonl", 300, "e7", DS_ERR_FORMAT, "no text");
    expect_error("hug.txt", 300, "hug.txt/sub", DS_ERR_IO, "not a folder");
    // Interrupted: nothing written.
    volatile int stop = 1;
    const char *list[] = {tpath("hug.txt")};
    tokenizer_train_params p = {.files = list, .n_files = 1, .vocab_size = 300, .cancel = &stop};
    ds_error err = {{0}};
    assert_int_equal(tokenizer_train(tpath("e8"), &p, NULL, &err), DS_ERR_INTERRUPTED);
    assert_false(exists(tpath("e8")));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_toy_merges),
        cmocka_unit_test(test_ties_and_overlaps),
        cmocka_unit_test(test_jsonl_fields),
        cmocka_unit_test(test_trained_tokenizer),
        cmocka_unit_test(test_chat_template),
        cmocka_unit_test(test_file_layout_and_gguf),
        cmocka_unit_test(test_deterministic_and_chunks),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
