// Training data: tokenisation of text / JSONL files with BOS/EOS per document, the token
// cache, packing, the validation split and deterministic per-epoch shuffling.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_bpe_util.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"

static const char *added =
    "\"added_tokens\": [{\"id\": 256, \"content\": \"<s>\", \"special\": true, \"single_word\": false, \"lstrip\": false,"
    " \"rstrip\": false, \"normalized\": false}, {\"id\": 257, \"content\": \"</s>\", \"special\": true, \"single_word\": false,"
    " \"lstrip\": false, \"rstrip\": false, \"normalized\": false}],"
    " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true},"
    " \"decoder\": {\"type\": \"ByteLevel\"}";

static void write_file(const char *dir, const char *name, const char *text) {
    char *p = file_join(dir, name);
    FILE *f = fopen(p, "wb");
    fputs(text, f);
    fclose(f);
    free(p);
}

static void test_corpus_and_loader(void **state) {
    (void)state;
    char *dir = make_bpe_dir("[\"<s>\", \"</s>\"]", "[]", added, "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}");
    ds_tokenizer *t;
    ds_error err = {{0}};
    if (tokenizer_load(&t, dir, &err)) fail_msg("%s", err.msg);
    write_file(dir, "a.txt", "hello");
    write_file(dir, "b.jsonl", "{\"text\": \"ab\"}\n\n{\"text\": \"xyz\", \"id\": 3}\n");
    char *a = file_join(dir, "a.txt"), *b = file_join(dir, "b.jsonl"), *cache = file_join(dir, "cache");
    const char *files[2] = {a, b};
    token_corpus c;
    assert_int_equal(data_corpus_load(&c, files, 2, t, cache, &err), DS_OK);
    // <s>hello</s> <s>ab</s> <s>xyz</s>
    const int32_t want[] = {256, 'h', 'e', 'l', 'l', 'o', 257, 256, 'a', 'b', 257, 256, 'x', 'y', 'z', 257};
    assert_int_equal(c.n_tokens, 16);
    assert_memory_equal(c.tokens, want, sizeof want);
    assert_int_equal(c.n_docs, 3);
    assert_int_equal(c.doc_start[1], 7);
    assert_int_equal(c.doc_start[2], 11);
    data_corpus_free(&c);
    // second load comes from the cache and is identical
    assert_int_equal(data_corpus_load(&c, files, 2, t, cache, &err), DS_OK);
    assert_int_equal(c.n_tokens, 16);
    assert_memory_equal(c.tokens, want, sizeof want);
    assert_int_equal(c.doc_start[2], 11);

    // seq_len 3: sequences start at 0, 3, 6, 9, 12 (5 of them); every 5th is validation
    data_loader d;
    assert_int_equal(data_loader_init(&d, &c, 3, 0.2f, 42, &err), DS_OK);
    assert_int_equal(d.n_train, 4);
    assert_int_equal(d.n_val, 1);
    int32_t seq[4];
    data_loader_val(&d, 0, seq);
    assert_memory_equal(seq, want + 12, sizeof seq);
    // an epoch visits every training sequence once; the next epoch uses another order
    int seen[5] = {0};
    int32_t first[4][4], second[4][4];
    for (int i = 0; i < 4; i++) {
        data_loader_next(&d, first[i]);
        for (int s = 0; s < 4; s++)
            if (memcmp(first[i], want + 3 * s, sizeof seq) == 0) seen[s]++;
    }
    for (int s = 0; s < 4; s++) assert_int_equal(seen[s], 1);
    for (int i = 0; i < 4; i++) data_loader_next(&d, second[i]);
    assert_int_equal(d.epoch, 1);
    // resuming at (epoch 1, cursor 2) gives the same sequences as running on
    data_loader d2;
    assert_int_equal(data_loader_init(&d2, &c, 3, 0.2f, 42, &err), DS_OK);
    data_loader_seek(&d2, 1, 2);
    data_loader_next(&d2, seq);
    assert_memory_equal(seq, second[2], sizeof seq);
    data_loader_free(&d2);
    data_loader_free(&d);

    assert_int_equal(data_loader_init(&d, &c, 100, 0.1f, 1, &err), DS_ERR_ARG);
    assert_non_null(strstr(err.msg, "too few"));
    data_corpus_free(&c);

    write_file(dir, "bad.jsonl", "{\"text\": \"ok\"}\n{\"txt\": 1}\n");
    char *bad = file_join(dir, "bad.jsonl");
    const char *badf[1] = {bad};
    assert_int_equal(data_corpus_load(&c, badf, 1, t, NULL, &err), DS_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "line 2"));
    free(bad);
    free(a); free(b); free(cache);
    tokenizer_free(t);
    test_rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_corpus_and_loader)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
