// Tokenizers to and from GGUF metadata (llama.cpp's keys, docs/gguf-deepseek2.md §4).
//
// Writing loads tokenizer.json / tokenizer_config.json with the ordinary loader, names the
// pre-tokenizer by llama.cpp's tokenizer.ggml.pre value and lists every id's token. Reading
// synthesises a tokenizer.json / tokenizer_config.json from the metadata (the pre-tokenizer
// of the named model, copied from its tokenizer.json) and loads it through the same parser,
// so a GGUF tokenizer encodes and decodes exactly like the one it was written from.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "io/fileutil.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"

// llama.cpp's token types.
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

#define MAX_TOKENS (1 << 24) // as tokenizer.c: more ids than this is a broken file

#define K_MODEL "tokenizer.ggml.model"
#define K_PRE "tokenizer.ggml.pre"
#define K_TOKENS "tokenizer.ggml.tokens"
#define K_TYPES "tokenizer.ggml.token_type"
#define K_MERGES "tokenizer.ggml.merges"
#define K_BOS "tokenizer.ggml.bos_token_id"
#define K_EOS "tokenizer.ggml.eos_token_id"
#define K_PAD "tokenizer.ggml.padding_token_id"
#define K_ADD_BOS "tokenizer.ggml.add_bos_token"
#define K_ADD_EOS "tokenizer.ggml.add_eos_token"
#define K_TEMPLATE "tokenizer.chat_template"

// ---- the pre-tokenizers llama.cpp knows, as their models' tokenizer.json has them ----
// Copied verbatim (compact JSON) from the pre_tokenizer of DeepSeek-V3's, Qwen2.5's and
// Llama 3's tokenizer.json; test_tokenizer_gguf compares them with the real files.

static const char DEEPSEEK_V3_PRE[] =
    "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\p{N}{1,3}\"},"
    "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"Split\",\"pattern\":{\"Regex\":\"[一-龥぀-ゟ゠-ヿ]+\"},"
    "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"Split\",\"pattern\":{\"Regex\":\"[!\\\"#$%&'()*+,\\\\-./"
    ":;<=>?@\\\\[\\\\\\\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\\\p{L}\\\\p{P}\\\\p{S}]?[\\\\p{L}\\\\p{M}]+| ?[\\\\p{P}\\\\p{S}]+"
    "[\\r\\n]*|\\\\s*[\\r\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},{\"type\":"
    "\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]}";

static const char QWEN2_PRE[] =
    "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?i:'s|'t|'re|'ve|'m|'ll|"
    "'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|"
    "\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":"
    "false,\"trim_offsets\":false,\"use_regex\":false}]}";

static const char LLAMA3_PRE[] =
    "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?i:'s|'t|'re|'ve|'m|'ll|"
    "'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+"
    "|\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":"
    "false,\"trim_offsets\":true,\"use_regex\":false}]}";

// GPT-2's: ByteLevel with its built-in regex (llama.cpp "gpt-2" = HF ByteLevel(use_regex)).
static const char GPT2_PRE[] =
    "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}";
// With no merges every piece becomes one token per byte whatever the split, so a GGUF
// "gpt-2" tokenizer without merges is rebuilt without the (costly, useless) regex.
static const char BYTES_PRE[] =
    "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":false}";

static const char BYTELEVEL_DECODER[] =
    "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true}";

typedef struct {
    const char *name;       // tokenizer.ggml.pre
    const char *pre;        // HF pre_tokenizer
    const char *normalizer; // HF normalizer (NULL: none)
    bool ignore_merges;     // HF model.ignore_merges (llama.cpp sets it for llama-bpe)
} pre_entry;

static const pre_entry PRE[] = {
    {"deepseek-v3", DEEPSEEK_V3_PRE, NULL, false},
    {"qwen2", QWEN2_PRE, "{\"type\":\"NFC\"}", false},
    {"llama-bpe", LLAMA3_PRE, NULL, true},
    {"gpt-2", GPT2_PRE, NULL, false},
};
enum { N_PRE = sizeof PRE / sizeof PRE[0], PRE_GPT2 = 3 };

// Other names llama.cpp gives the same pre-tokenizer (read only; we write the first name).
// deepseek-r1-qwen: R1-Distill-Qwen, which llama.cpp tokenizes with Qwen2's rules.
static const struct {
    const char *alias;
    int entry;
} PRE_ALIASES[] = {{"llama3", 2}, {"llama-v3", 2}, {"deepseek-r1-qwen", 1}};

static const pre_entry *pre_find(const char *name, size_t len) {
    for (int i = 0; i < N_PRE; i++)
        if (strlen(PRE[i].name) == len && memcmp(PRE[i].name, name, len) == 0) return &PRE[i];
    for (size_t i = 0; i < sizeof PRE_ALIASES / sizeof PRE_ALIASES[0]; i++)
        if (strlen(PRE_ALIASES[i].alias) == len && memcmp(PRE_ALIASES[i].alias, name, len) == 0)
            return &PRE[PRE_ALIASES[i].entry];
    return NULL;
}

const char *tokenizer_gguf_pre_json(const char *pre) {
    const pre_entry *e = pre ? pre_find(pre, strlen(pre)) : NULL;
    return e ? e->pre : NULL;
}

// ---- comparing pipelines ----

// The steps of a (possibly nested) Sequence, in order.
typedef struct {
    const cJSON *v[64];
    int n;
    bool overflow;
} json_steps;

static void steps_collect(const cJSON *j, const char *list_key, json_steps *s) {
    if (!j || cJSON_IsNull(j)) return;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type"), *it;
    if (cJSON_IsString(type) && strcmp(type->valuestring, "Sequence") == 0) {
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, list_key)) steps_collect(it, list_key, s);
        return;
    }
    if (s->n == (int)(sizeof s->v / sizeof s->v[0])) s->overflow = true;
    else s->v[s->n++] = j;
}

static const char *json_str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool json_bool(const cJSON *o, const char *k, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static bool put_str(tok_bytes *b, const char *s) { return tok_bytes_append(b, s, strlen(s)); }

static bool put_field(tok_bytes *b, const char *s) { // length-prefixed: no two step lists collide
    char n[24];
    snprintf(n, sizeof n, "%zu:", strlen(s));
    return put_str(b, n) && put_str(b, s);
}

// A canonical text of what a pre-tokenizer does to the ids (Sequence nesting and
// offset-only options such as trim_offsets left out). NULL when out of memory.
static char *pre_canonical(const cJSON *pre) {
    json_steps s = {0};
    steps_collect(pre, "pretokenizers", &s);
    tok_bytes b = {0};
    bool ok = !s.overflow || put_str(&b, "(too many steps)");
    for (int i = 0; i < s.n && ok; i++) {
        const cJSON *j = s.v[i];
        const char *type = json_str(j, "type");
        if (!type) type = "(no type)";
        if (strcmp(type, "Split") == 0) {
            const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
            const char *re = json_str(pat, "Regex"), *lit = json_str(pat, "String"), *beh = json_str(j, "behavior");
            ok = put_str(&b, re ? "Split(Regex " : "Split(String ") && put_field(&b, re ? re : lit ? lit : "") &&
                 put_field(&b, beh ? beh : "") && put_str(&b, json_bool(j, "invert", false) ? "inverted)" : ")");
        } else if (strcmp(type, "ByteLevel") == 0) {
            ok = put_str(&b, json_bool(j, "add_prefix_space", false) ? "ByteLevel(prefix space" : "ByteLevel(") &&
                 put_str(&b, json_bool(j, "use_regex", true) ? ", regex)" : ")");
        } else if (strcmp(type, "Digits") == 0) {
            ok = put_str(&b, json_bool(j, "individual_digits", false) ? "Digits(individual)" : "Digits()");
        } else {
            char *all = cJSON_PrintUnformatted(j);
            ok = all && put_field(&b, all);
            free(all);
        }
        ok = ok && put_str(&b, ";");
    }
    if (ok && tok_bytes_append(&b, "", 1)) return b.s;
    free(b.s);
    return NULL;
}

// The same for a normalizer (each step printed whole; an empty Sequence is no normalizer).
static char *norm_canonical(const cJSON *norm) {
    json_steps s = {0};
    steps_collect(norm, "normalizers", &s);
    tok_bytes b = {0};
    bool ok = !s.overflow || put_str(&b, "(too many steps)");
    for (int i = 0; i < s.n && ok; i++) {
        char *all = cJSON_PrintUnformatted(s.v[i]);
        ok = all && put_field(&b, all) && put_str(&b, ";");
        free(all);
    }
    if (ok && tok_bytes_append(&b, "", 1)) return b.s;
    free(b.s);
    return NULL;
}

// A short description of a pipeline for messages: "Sequence[Split, Split, ByteLevel]".
static void pre_describe(const cJSON *pre, char *out, size_t n) {
    json_steps s = {0};
    steps_collect(pre, "pretokenizers", &s);
    if (!s.n) {
        snprintf(out, n, "none");
        return;
    }
    size_t o = (size_t)snprintf(out, n, "%s", s.n > 1 ? "Sequence[" : "");
    for (int i = 0; i < s.n && o < n; i++) {
        const char *type = json_str(s.v[i], "type");
        o += (size_t)snprintf(out + o, n - o, "%s%s", i ? ", " : "", type ? type : "?");
    }
    if (s.n > 1 && o < n) snprintf(out + o, n - o, "]");
}

// Byte-level, and no step drops or adds text (so without merges the split cannot change ids).
static bool pre_bytelevel_keeps_text(const cJSON *pre) {
    json_steps s = {0};
    steps_collect(pre, "pretokenizers", &s);
    if (s.overflow || s.n == 0) return false;
    for (int i = 0; i < s.n; i++) {
        const char *type = json_str(s.v[i], "type");
        if (!type) return false;
        if (i == s.n - 1) return strcmp(type, "ByteLevel") == 0 && !json_bool(s.v[i], "add_prefix_space", false);
        if (strcmp(type, "Digits") == 0) continue;
        const char *beh = json_str(s.v[i], "behavior");
        if (strcmp(type, "Split") != 0 || !beh || strcmp(beh, "Removed") == 0) return false;
    }
    return false;
}

static ds_status oom_at(const char *path, ds_error *err) {
    return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", path);
}

// Which tokenizer.ggml.pre reproduces tokenizer.json j (path for messages).
static ds_status pre_classify(const cJSON *j, int n_merges, const char *path, const pre_entry **out, ds_error *err) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer");
    char *have = pre_canonical(pre);
    if (!have) return oom_at(path, err);
    const pre_entry *e = NULL;
    ds_status st = DS_OK;
    for (int i = 0; i < N_PRE && !e && !st; i++) {
        cJSON *ref = cJSON_Parse(PRE[i].pre);
        char *want = ref ? pre_canonical(ref) : NULL;
        if (!want) st = oom_at(path, err);
        else if (strcmp(have, want) == 0) e = &PRE[i];
        free(want);
        cJSON_Delete(ref);
    }
    free(have);
    if (st) return st;
    if (!e && n_merges == 0 && pre_bytelevel_keeps_text(pre)) e = &PRE[PRE_GPT2];
    if (!e) {
        char desc[200];
        pre_describe(pre, desc, sizeof desc);
        return ds_error_set(err, DS_ERR_FORMAT,
                            "%s: pre_tokenizer %s has no llama.cpp equivalent (tokenizer.ggml.pre covers DeepSeek-V3's, "
                            "Qwen2's, Llama 3's, GPT-2's ByteLevel and, without merges, any byte-level split)%s",
                            path, desc,
                            n_merges > 0 && pre_bytelevel_keeps_text(pre)
                                ? "; only without merges could it be written as \"gpt-2\""
                                : "");
    }
    // What else shapes the ids must be what the rebuilt tokenizer will have.
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(j, "normalizer");
    cJSON *ref_norm = e->normalizer ? cJSON_Parse(e->normalizer) : NULL;
    char *nh = norm_canonical(norm), *nw = norm_canonical(ref_norm);
    if (!nh || !nw) st = oom_at(path, err);
    else if (strcmp(nh, nw) != 0) {
        char *text = nh[0] ? cJSON_PrintUnformatted(norm) : NULL;
        st = ds_error_set(err, DS_ERR_FORMAT, "%s: normalizer %.200s does not go with pre-tokenizer \"%s\" (which has %s): "
                          "GGUF metadata cannot carry it", path, text ? text : "none", e->name,
                          e->normalizer ? e->normalizer : "none");
        free(text);
    }
    free(nh);
    free(nw);
    cJSON_Delete(ref_norm);
    if (st) return st;
    if (json_bool(model, "ignore_merges", false) != e->ignore_merges)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: model.ignore_merges is %s, but pre-tokenizer \"%s\" implies %s", path,
                            e->ignore_merges ? "false" : "true", e->name, e->ignore_merges ? "true" : "false");
    if (json_bool(model, "byte_fallback", false))
        return ds_error_set(err, DS_ERR_FORMAT, "%s: model.byte_fallback has no GGUF \"gpt2\" equivalent", path);
    json_steps d = {0};
    steps_collect(cJSON_GetObjectItemCaseSensitive(j, "decoder"), "decoders", &d);
    const char *dt = d.n == 1 ? json_str(d.v[0], "type") : NULL;
    if (!dt || strcmp(dt, "ByteLevel") != 0)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: decoder must be ByteLevel for a GGUF \"gpt2\" tokenizer", path);
    *out = e;
    return DS_OK;
}

// ---- writing ----

static const char *config_token_text(const cJSON *v) {
    if (cJSON_IsString(v)) return v->valuestring;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

typedef struct {
    const char **strs;
    size_t *lens;
    int32_t *types;
    char *pads;          // "[PAD{id}]" texts
    const char **merges;
    char **joined;       // merges written as pairs, joined with a space
    int n_joined;
} write_bufs;

static void write_bufs_free(write_bufs *b) {
    free(b->strs);
    free(b->lens);
    free(b->types);
    free(b->pads);
    free(b->merges);
    for (int i = 0; i < b->n_joined; i++) free(b->joined[i]);
    free(b->joined);
}

// tokens and token_type for ids 0..n-1.
static ds_status write_tokens(gguf_writer *w, const ds_tokenizer *t, int n, write_bufs *b, const char *path,
                              ds_error *err) {
    b->strs = malloc((size_t)n * sizeof *b->strs);
    b->lens = malloc((size_t)n * sizeof *b->lens);
    b->types = malloc((size_t)n * sizeof *b->types);
    size_t n_pads = 1; // ids with no token: gaps and the rows past the tokenizer
    for (int id = 0; id < n; id++) n_pads += id >= t->n_ids || !t->text[id];
    b->pads = malloc(n_pads * 16);
    unsigned char *added = calloc((size_t)t->n_ids + 1, 1);
    if (!b->strs || !b->lens || !b->types || !b->pads || !added) {
        free(added);
        return oom_at(path, err);
    }
    for (int i = 0; i < t->n_added; i++) added[t->added[i].id] = 1;
    char *pad = b->pads;
    for (int id = 0; id < n; id++) {
        if (id < t->n_ids && t->text[id]) {
            b->strs[id] = t->text[id];
            b->lens[id] = t->text_len[id];
            b->types[id] = !added[id] ? TT_NORMAL : t->special[id] ? TT_CONTROL : TT_USER_DEFINED;
        } else {
            int l = snprintf(pad, 16, "[PAD%d]", id);
            b->strs[id] = pad;
            b->lens[id] = (size_t)l;
            b->types[id] = TT_UNUSED;
            pad += l + 1;
        }
    }
    free(added);
    gguf_writer_add_array_string(w, K_TOKENS, b->strs, b->lens, (uint64_t)n);
    gguf_writer_add_array_i32(w, K_TYPES, b->types, (uint64_t)n);
    return DS_OK;
}

// merges in rank order as "a b" (an empty array when there are none: llama.cpp needs the key).
static ds_status write_merges(gguf_writer *w, const cJSON *merges, write_bufs *b, const char *path, ds_error *err) {
    int n = cJSON_IsArray(merges) ? cJSON_GetArraySize(merges) : 0, k = 0;
    b->merges = malloc((size_t)(n ? n : 1) * sizeof *b->merges);
    b->joined = malloc((size_t)(n ? n : 1) * sizeof *b->joined);
    if (!b->merges || !b->joined) return oom_at(path, err);
    const cJSON *it;
    cJSON_ArrayForEach(it, merges) {
        if (cJSON_IsString(it)) { // the loader checked: two tokens, one space
            b->merges[k++] = it->valuestring;
            continue;
        }
        const char *l = cJSON_GetArrayItem(it, 0)->valuestring, *r = cJSON_GetArrayItem(it, 1)->valuestring;
        if (strchr(l, ' ') || strchr(r, ' '))
            return ds_error_set(err, DS_ERR_FORMAT,
                                "%s: model.merges[%d]: a token with a space (\"%.60s\" \"%.60s\") cannot be written as a "
                                "GGUF merge \"a b\"", path, k, l, r);
        size_t ll = strlen(l), rl = strlen(r);
        char *s = malloc(ll + rl + 2);
        if (!s) return oom_at(path, err);
        memcpy(s, l, ll);
        s[ll] = ' ';
        memcpy(s + ll + 1, r, rl + 1);
        b->joined[b->n_joined++] = s;
        b->merges[k++] = s;
    }
    gguf_writer_add_array_string(w, K_MERGES, b->merges, NULL, (uint64_t)k);
    return DS_OK;
}

ds_status tokenizer_gguf_write(gguf_writer *w, const char *tok_dir, int model_vocab, ds_error *err) {
    char *path = file_join(tok_dir, "tokenizer.json"), *cpath = file_join(tok_dir, "tokenizer_config.json");
    cJSON *j = NULL, *c = NULL;
    ds_tokenizer *t = NULL;
    write_bufs b = {0};
    const pre_entry *e = NULL;
    ds_status st = path && cpath ? DS_OK : ds_error_set(err, DS_ERR_OOM, "%s: out of memory", tok_dir);
    if (!st) st = tok_json_parse_file(path, &j, err);
    if (!st) {
        FILE *fp = fopen(cpath, "rb");
        if (fp) fclose(fp);
        if (fp) st = tok_json_parse_file(cpath, &c, err);
    }
    if (!st) st = tokenizer_load_json(&t, j, c, path, err);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!st) st = pre_classify(j, cJSON_IsArray(merges) ? cJSON_GetArraySize(merges) : 0, path, &e, err);
    int n = t ? t->n_ids : 0;
    if (!st && model_vocab > 0) {
        if (model_vocab > MAX_TOKENS)
            st = ds_error_set(err, DS_ERR_ARG, "%s: model vocab_size %d is too large (at most %d)", path, model_vocab,
                              MAX_TOKENS);
        else if (model_vocab < n)
            st = ds_error_set(err, DS_ERR_ARG, "%s: the tokenizer has %d ids but the model's vocab_size is %d", path, n,
                              model_vocab);
        n = model_vocab;
    }
    if (!st && n <= 0) st = ds_error_set(err, DS_ERR_FORMAT, "%s: the tokenizer has no tokens", path);
    // What tokenizer_encode(add_special) adds must be BOS before / EOS after.
    bool add_bos = false, add_eos = false;
    if (!st) {
        add_bos = t->tmpl_pre.n == 1 && t->tmpl_pre.v[0] == t->bos_id;
        add_eos = t->tmpl_post.n == 1 && t->tmpl_post.v[0] == t->eos_id;
        if ((t->tmpl_pre.n && !add_bos) || (t->tmpl_post.n && !add_eos))
            st = ds_error_set(err, DS_ERR_FORMAT,
                              "%s: the post-processor adds ids other than BOS before / EOS after the text, which "
                              "tokenizer.ggml.add_bos_token / add_eos_token cannot express", path);
    }
    if (!st) {
        gguf_writer_add_string(w, K_MODEL, "gpt2");
        gguf_writer_add_string(w, K_PRE, e->name);
        st = write_tokens(w, t, n, &b, path, err);
    }
    if (!st) st = write_merges(w, merges, &b, path, err);
    if (!st) {
        if (t->bos_id >= 0) gguf_writer_add_u32(w, K_BOS, (uint32_t)t->bos_id);
        if (t->eos_id >= 0) gguf_writer_add_u32(w, K_EOS, (uint32_t)t->eos_id);
        const char *pad = config_token_text(cJSON_GetObjectItemCaseSensitive(c, "pad_token"));
        int pad_id = pad && pad[0] ? tokenizer_token_id(t, pad) : -1;
        if (pad_id >= 0) gguf_writer_add_u32(w, K_PAD, (uint32_t)pad_id);
        gguf_writer_add_bool(w, K_ADD_BOS, add_bos);
        gguf_writer_add_bool(w, K_ADD_EOS, add_eos);
        if (t->chat_template) gguf_writer_add_string(w, K_TEMPLATE, t->chat_template);
    }
    write_bufs_free(&b);
    tokenizer_free(t);
    cJSON_Delete(j);
    cJSON_Delete(c);
    free(path);
    free(cpath);
    return st;
}

// ---- reading ----

typedef struct {
    const gguf_file *f;
    const gguf_kv *tokens, *types, *merges;
    int n;
    tok_strmap vocab;  // token bytes (in the mapping) -> id: what goes into model.vocab
    char *buf;         // NUL-terminated scratch copy
    size_t buf_cap;
} gguf_tok;

static const char *cstr(gguf_tok *g, const char *s, size_t len) {
    if (len + 1 > g->buf_cap) {
        size_t cap = len + 1 > 2 * g->buf_cap ? len + 1 : 2 * g->buf_cap;
        char *p = realloc(g->buf, cap);
        if (!p) return NULL;
        g->buf = p;
        g->buf_cap = cap;
    }
    memcpy(g->buf, s, len);
    g->buf[len] = 0;
    return g->buf;
}

static int token_type(const gguf_tok *g, int id) {
    int64_t v = TT_NORMAL;
    if (g->types) gguf_array_int(g->types, (uint64_t)id, &v);
    return (int)v;
}

// A token id key (bos / eos): absent -> -1; present: an id with a token.
static ds_status read_token_id(gguf_tok *g, const char *key, int *id, ds_error *err) {
    *id = -1;
    if (!gguf_find_kv(g->f, key)) return DS_OK;
    uint32_t v;
    ds_status st = gguf_get_u32(g->f, key, &v, err);
    if (st) return st;
    if (v >= (uint32_t)g->n || token_type(g, (int)v) == TT_UNUSED)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: %s = %u is not the id of a token (%d tokens)", g->f->path, key, v,
                            g->n);
    *id = (int)v;
    return DS_OK;
}

static ds_status read_vocab(gguf_tok *g, cJSON *vocab, cJSON *added, ds_error *err) {
    const char *path = g->f->path;
    // Base tokens first, so an added token with the text of a base one never hides it.
    for (int pass = 0; pass < 2; pass++)
        for (int id = 0; id < g->n; id++) {
            int type = token_type(g, id);
            bool is_added = type == TT_CONTROL || type == TT_USER_DEFINED;
            if (type == TT_UNUSED || is_added != (pass == 1)) continue;
            size_t len;
            const char *s = gguf_array_string(g->tokens, (uint64_t)id, &len);
            if (memchr(s, 0, len))
                return ds_error_set(err, DS_ERR_FORMAT, "%s: %s[%d] contains a NUL byte", path, K_TOKENS, id);
            int prev = tok_strmap_get(&g->vocab, s, len);
            if (prev >= 0 && !is_added)
                return ds_error_set(err, DS_ERR_FORMAT, "%s: %s[%d] \"%.*s\" repeats token %d", path, K_TOKENS, id,
                                    (int)(len < 60 ? len : 60), s, prev);
            if (is_added && !len)
                return ds_error_set(err, DS_ERR_FORMAT, "%s: %s[%d] is an empty %s token", path, K_TOKENS, id,
                                    type == TT_CONTROL ? "control" : "user-defined");
            const char *key = cstr(g, s, len);
            if (!key) return oom_at(path, err);
            if (prev < 0) {
                if (!tok_strmap_put(&g->vocab, s, len, id) || !cJSON_AddNumberToObject(vocab, key, id))
                    return oom_at(path, err);
            }
            if (is_added) {
                cJSON *a = cJSON_CreateObject();
                if (!a || !cJSON_AddItemToArray(added, a) || !cJSON_AddNumberToObject(a, "id", id) ||
                    !cJSON_AddStringToObject(a, "content", key) || !cJSON_AddBoolToObject(a, "special", type == TT_CONTROL) ||
                    !cJSON_AddBoolToObject(a, "normalized", type != TT_CONTROL))
                    return oom_at(path, err);
            }
        }
    return DS_OK;
}

static ds_status read_merges(gguf_tok *g, cJSON *list, ds_error *err) {
    const char *path = g->f->path;
    for (uint64_t i = 0; i < g->merges->count; i++) {
        size_t len;
        const char *s = gguf_array_string(g->merges, i, &len);
        // llama.cpp splits at the first space after the first byte.
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!sp || sp + 1 == s + len || memchr(s, 0, len))
            return ds_error_set(err, DS_ERR_FORMAT, "%s: %s[%llu] \"%.*s\" is not two tokens separated by a space", path,
                                K_MERGES, (unsigned long long)i, (int)(len < 60 ? len : 60), s);
        size_t al = (size_t)(sp - s), bl = len - al - 1;
        const char *which = tok_strmap_get(&g->vocab, s, al) < 0        ? "left token"
                            : tok_strmap_get(&g->vocab, sp + 1, bl) < 0 ? "right token"
                                                                         : NULL;
        char *joined = NULL;
        if (!which) {
            joined = malloc(len);
            if (!joined) return oom_at(path, err);
            memcpy(joined, s, al);
            memcpy(joined + al, sp + 1, bl);
            if (tok_strmap_get(&g->vocab, joined, len - 1) < 0) which = "merged token";
        }
        free(joined);
        if (which)
            return ds_error_set(err, DS_ERR_FORMAT, "%s: %s[%llu] \"%.*s\": the %s is not in %s", path, K_MERGES,
                                (unsigned long long)i, (int)(len < 60 ? len : 60), s, which, K_TOKENS);
        cJSON *m;
        if (s[0] != ' ' && !memchr(sp + 1, ' ', bl)) { // "a b" as tokenizer.json writes it
            const char *c = cstr(g, s, len);
            m = c ? cJSON_CreateString(c) : NULL;
        } else { // ["a", "b"]: the string form would split elsewhere
            m = cJSON_CreateArray();
            const char *c = m ? cstr(g, s, al) : NULL;
            cJSON *x = c ? cJSON_CreateString(c) : NULL;
            if (!x || !cJSON_AddItemToArray(m, x)) {
                cJSON_Delete(x);
                cJSON_Delete(m);
                m = NULL;
            } else {
                c = cstr(g, sp + 1, bl);
                x = c ? cJSON_CreateString(c) : NULL;
                if (!x || !cJSON_AddItemToArray(m, x)) {
                    cJSON_Delete(x);
                    cJSON_Delete(m);
                    m = NULL;
                }
            }
        }
        if (!m || !cJSON_AddItemToArray(list, m)) {
            cJSON_Delete(m);
            return oom_at(path, err);
        }
    }
    return DS_OK;
}

// tokenizer.json and tokenizer_config.json for the metadata.
static ds_status read_gguf_json(gguf_tok *g, const pre_entry *e, cJSON *j, ds_error *err) {
    const char *path = g->f->path;
    cJSON *added = cJSON_AddArrayToObject(j, "added_tokens");
    cJSON *norm = e->normalizer ? cJSON_Parse(e->normalizer) : cJSON_CreateNull();
    bool no_merges = g->merges->count == 0 && e == &PRE[PRE_GPT2];
    cJSON *pre = cJSON_Parse(no_merges ? BYTES_PRE : e->pre), *dec = cJSON_Parse(BYTELEVEL_DECODER);
    cJSON *model = cJSON_AddObjectToObject(j, "model");
    bool ok = added && norm && cJSON_AddItemToObject(j, "normalizer", norm);
    if (!ok) cJSON_Delete(norm);
    ok = ok && pre && cJSON_AddItemToObject(j, "pre_tokenizer", pre);
    if (!ok) cJSON_Delete(pre);
    ok = ok && cJSON_AddNullToObject(j, "post_processor");
    ok = ok && dec && cJSON_AddItemToObject(j, "decoder", dec);
    if (!ok) cJSON_Delete(dec);
    cJSON *vocab = NULL, *merges = NULL;
    ok = ok && model && cJSON_AddStringToObject(model, "type", "BPE") &&
         cJSON_AddBoolToObject(model, "ignore_merges", e->ignore_merges) &&
         (vocab = cJSON_AddObjectToObject(model, "vocab")) && (merges = cJSON_AddArrayToObject(model, "merges"));
    if (!ok) return oom_at(path, err);
    ds_status st = read_vocab(g, vocab, added, err);
    if (!st) st = read_merges(g, merges, err);
    return st;
}

ds_status tokenizer_load_gguf(ds_tokenizer **out, const gguf_file *f, ds_error *err) {
    *out = NULL;
    const char *s;
    size_t len;
    if (!gguf_find_kv(f, K_MODEL))
        return ds_error_set(err, DS_ERR_FORMAT, "%s: no %s: the file carries no tokenizer", f->path, K_MODEL);
    ds_status st = gguf_get_string(f, K_MODEL, &s, &len, err);
    if (st) return st;
    if (len != 4 || memcmp(s, "gpt2", 4) != 0)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: %s \"%.*s\" is not supported (only \"gpt2\", byte-level BPE)", f->path,
                            K_MODEL, (int)(len < 60 ? len : 60), s);
    if (!gguf_find_kv(f, K_PRE))
        return ds_error_set(err, DS_ERR_FORMAT, "%s: %s is missing (llama.cpp's fallback \"default\" pre-tokenizer is not "
                            "supported)", f->path, K_PRE);
    st = gguf_get_string(f, K_PRE, &s, &len, err);
    if (st) return st;
    const pre_entry *e = pre_find(s, len);
    if (!e)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: %s \"%.*s\" is not supported (known: deepseek-v3, qwen2, llama-bpe, "
                            "gpt-2)", f->path, K_PRE, (int)(len < 60 ? len : 60), s);

    gguf_tok g = {.f = f};
    st = gguf_get_array(f, K_TOKENS, GGUF_VAL_STRING, &g.tokens, err);
    if (!st && (g.tokens->count == 0 || g.tokens->count > MAX_TOKENS))
        st = ds_error_set(err, DS_ERR_FORMAT, "%s: %s has %llu tokens (expected 1..%d)", f->path, K_TOKENS,
                          (unsigned long long)g.tokens->count, MAX_TOKENS);
    if (!st) g.n = (int)g.tokens->count;
    if (!st && gguf_find_kv(f, K_TYPES)) {
        st = gguf_get_array(f, K_TYPES, GGUF_VAL_ANY_INT, &g.types, err);
        if (!st && g.types->count != g.tokens->count)
            st = ds_error_set(err, DS_ERR_FORMAT, "%s: %s has %llu entries but %s has %d", f->path, K_TYPES,
                              (unsigned long long)g.types->count, K_TOKENS, g.n);
        for (int i = 0; !st && i < g.n; i++) {
            int64_t v;
            if (!gguf_array_int(g.types, (uint64_t)i, &v) || v < TT_NORMAL || v > TT_BYTE)
                st = ds_error_set(err, DS_ERR_FORMAT, "%s: %s[%d] is not a token type (1..6)", f->path, K_TYPES, i);
        }
    }
    if (!st) st = gguf_get_array(f, K_MERGES, GGUF_VAL_STRING, &g.merges, err);
    int bos = -1, eos = -1;
    if (!st) st = read_token_id(&g, K_BOS, &bos, err);
    if (!st) st = read_token_id(&g, K_EOS, &eos, err);
    bool add_bos = e == &PRE[2], add_eos = false; // llama.cpp's defaults: BOS for llama-bpe only
    if (!st && gguf_find_kv(f, K_ADD_BOS)) st = gguf_get_bool(f, K_ADD_BOS, &add_bos, err);
    if (!st && gguf_find_kv(f, K_ADD_EOS)) st = gguf_get_bool(f, K_ADD_EOS, &add_eos, err);
    const char *tmpl = NULL;
    size_t tmpl_len = 0;
    if (!st && gguf_find_kv(f, K_TEMPLATE)) st = gguf_get_string(f, K_TEMPLATE, &tmpl, &tmpl_len, err);

    cJSON *j = st ? NULL : cJSON_CreateObject(), *c = st ? NULL : cJSON_CreateObject();
    if (!st && (!j || !c)) st = oom_at(f->path, err);
    if (!st) st = read_gguf_json(&g, e, j, err);
    // tokenizer_config.json: the BOS / EOS texts and the chat template (ids and add_* are
    // set below, from the metadata itself).
    const char *names[2] = {"bos_token", "eos_token"};
    int ids[2] = {bos, eos};
    for (int k = 0; k < 2 && !st; k++) {
        if (ids[k] < 0) continue;
        const char *txt = gguf_array_string(g.tokens, (uint64_t)ids[k], &len);
        const char *z = cstr(&g, txt, len);
        if (!z || !cJSON_AddStringToObject(c, names[k], z)) st = oom_at(f->path, err);
    }
    if (!st && tmpl) {
        const char *z = cstr(&g, tmpl, tmpl_len);
        if (!z || !cJSON_AddStringToObject(c, "chat_template", z)) st = oom_at(f->path, err);
    }
    tok_strmap_free(&g.vocab);
    free(g.buf);
    ds_tokenizer *t = NULL;
    if (!st) st = tokenizer_load_json(&t, j, c, f->path, err);
    cJSON_Delete(j);
    cJSON_Delete(c);
    if (st) return st;
    t->bos_id = bos;
    t->eos_id = eos;
    if ((add_bos && bos >= 0 && !tok_ints_push(&t->tmpl_pre, bos)) ||
        (add_eos && eos >= 0 && !tok_ints_push(&t->tmpl_post, eos))) {
        tokenizer_free(t);
        return oom_at(f->path, err);
    }
    *out = t;
    return DS_OK;
}
