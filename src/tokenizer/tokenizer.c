// Loading tokenizer.json / tokenizer_config.json and encoding: added tokens are cut out of
// the raw text first (leftmost-longest, like HF's AhoCorasick), each remaining segment is
// normalized, pre-tokenized and BPE-encoded, and the post-processor adds BOS/EOS.
#include <stdlib.h>
#include <string.h>

#include "io/fileutil.h"
#include "tokenizer/tokenizer_internal.h"

#define MAX_ID (1 << 24) // ids beyond this are surely a broken file, not a vocab

static ds_status oom(const ds_tokenizer *t, ds_error *err) {
    return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", t->path);
}

static const cJSON *obj_get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

ds_status tok_json_parse_file(const char *path, cJSON **out, ds_error *err) {
    char *data;
    size_t size;
    ds_status st = file_read_all(path, &data, &size, err);
    if (st) return st;
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(data, size, &end, 0);
    if (!*out) {
        size_t at = end && end >= data ? (size_t)(end - data) : 0;
        free(data);
        return ds_error_set(err, DS_ERR_FORMAT, "%s: not valid JSON (error near byte %zu of %zu)", path, at, size);
    }
    free(data);
    return DS_OK;
}

static bool get_bool(const cJSON *o, const char *k, bool dflt) {
    const cJSON *v = obj_get(o, k);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

// Grows the id -> text table to hold id.
static bool ids_reserve(ds_tokenizer *t, int id) {
    if (id < t->n_ids) return true;
    int n = id + 1;
    const char **tx = realloc(t->text, (size_t)n * sizeof *tx);
    if (!tx) return false;
    t->text = tx;
    uint32_t *tl = realloc(t->text_len, (size_t)n * sizeof *tl);
    if (!tl) return false;
    t->text_len = tl;
    unsigned char *sp = realloc(t->special, (size_t)n);
    if (!sp) return false;
    t->special = sp;
    for (int i = t->n_ids; i < n; i++) t->text[i] = NULL, t->text_len[i] = 0, t->special[i] = 0;
    t->n_ids = n;
    return true;
}

// ---- model ----

static ds_status model_load_vocab(ds_tokenizer *t, const cJSON *vocab, ds_error *err) {
    if (!cJSON_IsObject(vocab)) return ds_error_set(err, DS_ERR_FORMAT, "%s: model.vocab must be an object", t->path);
    size_t total = 0;
    int max_id = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= MAX_ID ||
            it->valuedouble != (double)(int)it->valuedouble)
            return ds_error_set(err, DS_ERR_FORMAT, "%s: model.vocab[\"%.60s\"] must be an id (integer 0..%d)",
                                t->path, it->string, MAX_ID - 1);
        total += strlen(it->string) + 1;
        if (it->valueint > max_id) max_id = it->valueint;
    }
    t->arena = malloc(total ? total : 1);
    if (!t->arena || (max_id >= 0 && !ids_reserve(t, max_id))) return oom(t, err);
    char *p = t->arena;
    cJSON_ArrayForEach(it, vocab) {
        size_t l = strlen(it->string);
        memcpy(p, it->string, l + 1);
        t->text[it->valueint] = p;
        t->text_len[it->valueint] = (uint32_t)l;
        if (!tok_strmap_put(&t->bpe.vocab, p, l, it->valueint)) return oom(t, err);
        p += l + 1;
    }
    return DS_OK;
}

static ds_status model_load_merges(ds_tokenizer *t, const cJSON *merges, ds_error *err) {
    if (!merges) return DS_OK;
    if (!cJSON_IsArray(merges)) return ds_error_set(err, DS_ERR_FORMAT, "%s: model.merges must be an array", t->path);
    int rank = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, merges) {
        const char *a, *b;
        size_t al, bl;
        if (cJSON_IsString(it)) { // "a b"
            a = it->valuestring;
            const char *sp = strchr(a, ' ');
            if (!sp || strchr(sp + 1, ' '))
                return ds_error_set(err, DS_ERR_FORMAT, "%s: model.merges[%d]: \"%.60s\" is not two tokens split by one space",
                                    t->path, rank, a);
            al = (size_t)(sp - a);
            b = sp + 1;
            bl = strlen(b);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 1))) { // ["a", "b"]
            a = cJSON_GetArrayItem(it, 0)->valuestring;
            b = cJSON_GetArrayItem(it, 1)->valuestring;
            al = strlen(a);
            bl = strlen(b);
        } else {
            return ds_error_set(err, DS_ERR_FORMAT, "%s: model.merges[%d] must be \"a b\" or [\"a\", \"b\"]", t->path, rank);
        }
        int which;
        if (!bpe_merge_add(&t->bpe, a, al, b, bl, rank, &which)) {
            if (which == 3) return oom(t, err);
            return ds_error_set(err, DS_ERR_FORMAT, "%s: model.merges[%d]: %s \"%.*s%.*s\" is not in the vocab", t->path,
                                rank, which == 2 ? "merged token" : "token", which == 1 ? 0 : (int)al, a,
                                which == 0 ? 0 : (int)bl, b);
        }
        rank++;
    }
    return DS_OK;
}

static ds_status model_load(ds_tokenizer *t, const cJSON *model, ds_error *err) {
    if (!cJSON_IsObject(model)) return ds_error_set(err, DS_ERR_FORMAT, "%s: \"model\" must be an object", t->path);
    const cJSON *type = obj_get(model, "type");
    if (type && !(cJSON_IsString(type) && strcmp(type->valuestring, "BPE") == 0))
        return ds_error_set(err, DS_ERR_FORMAT, "%s: model.type \"%s\" is not supported (only BPE)", t->path,
                            cJSON_IsString(type) ? type->valuestring : "(not a string)");
    const cJSON *dropout = obj_get(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        return ds_error_set(err, DS_ERR_FORMAT, "%s: model.dropout must be null (BPE dropout is not supported)", t->path);
    static const char *affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = obj_get(model, affixes[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && !v->valuestring[0]))
            return ds_error_set(err, DS_ERR_FORMAT, "%s: model.%s is not supported (must be null or \"\")", t->path,
                                affixes[i]);
    }
    ds_status st = model_load_vocab(t, obj_get(model, "vocab"), err);
    if (st) return st;
    st = model_load_merges(t, obj_get(model, "merges"), err);
    if (st) return st;
    bpe_model *m = &t->bpe;
    m->ignore_merges = get_bool(model, "ignore_merges", false);
    m->fuse_unk = get_bool(model, "fuse_unk", false);
    m->byte_fallback = get_bool(model, "byte_fallback", false);
    m->unk_id = -1;
    const cJSON *unk = obj_get(model, "unk_token");
    if (cJSON_IsString(unk)) {
        m->unk_id = tok_strmap_get(&m->vocab, unk->valuestring, strlen(unk->valuestring));
        if (m->unk_id < 0)
            return ds_error_set(err, DS_ERR_FORMAT, "%s: model.unk_token \"%.60s\" is not in the vocab", t->path,
                                unk->valuestring);
    }
    for (int b = 0; b < 256; b++) {
        char s[8];
        int l = tok_utf8_put(s, (uint32_t)bytelevel_char_of_byte(b));
        m->byte_id[b] = tok_strmap_get(&m->vocab, s, (size_t)l);
        snprintf(s, sizeof s, "<0x%02X>", b);
        m->byte_fallback_id[b] = m->byte_fallback ? tok_strmap_get(&m->vocab, s, 6) : -1;
    }
    return DS_OK;
}

// ---- added tokens ----

static bool trie_insert(ds_tokenizer *t, const char *s, size_t len, int added) {
    int parent = -1; // children of the root are found through trie_root[first byte]
    for (size_t i = 0;; i++) {
        int node = parent < 0 ? t->trie_root[(unsigned char)s[0]] : t->trie[parent].child;
        while (node >= 0 && t->trie[node].byte != (unsigned char)s[i]) node = t->trie[node].sibling;
        if (node < 0) {
            tok_trie_node *tr = realloc(t->trie, (size_t)(t->n_trie + 1) * sizeof *tr);
            if (!tr) return false;
            t->trie = tr;
            node = t->n_trie++;
            int *head = parent < 0 ? &t->trie_root[(unsigned char)s[0]] : &t->trie[parent].child;
            t->trie[node] = (tok_trie_node){-1, *head, -1, (unsigned char)s[i]};
            *head = node;
        }
        if (i + 1 == len) {
            if (t->trie[node].added < 0) t->trie[node].added = added; // first wins on duplicates
            return true;
        }
        parent = node;
    }
}

static ds_status added_load(ds_tokenizer *t, const cJSON *list, ds_error *err) {
    for (int i = 0; i < 256; i++) t->trie_root[i] = -1;
    if (!list || cJSON_IsNull(list)) return DS_OK;
    if (!cJSON_IsArray(list)) return ds_error_set(err, DS_ERR_FORMAT, "%s: added_tokens must be an array", t->path);
    int n = cJSON_GetArraySize(list);
    t->added = calloc((size_t)(n ? n : 1), sizeof *t->added);
    if (!t->added) return oom(t, err);
    const cJSON *it;
    cJSON_ArrayForEach(it, list) {
        const cJSON *id = obj_get(it, "id"), *content = obj_get(it, "content");
        int k = t->n_added;
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= MAX_ID ||
            id->valuedouble != (double)(int)id->valuedouble)
            return ds_error_set(err, DS_ERR_FORMAT, "%s: added_tokens[%d].id must be an integer id", t->path, k);
        if (!cJSON_IsString(content) || !content->valuestring[0])
            return ds_error_set(err, DS_ERR_FORMAT, "%s: added_tokens[%d].content must be a non-empty string", t->path, k);
        tok_added *a = &t->added[t->n_added++];
        a->id = id->valueint;
        a->content = strdup(content->valuestring);
        if (!a->content) return oom(t, err);
        a->len = strlen(a->content);
        a->special = get_bool(it, "special", false);
        a->lstrip = get_bool(it, "lstrip", false);
        a->rstrip = get_bool(it, "rstrip", false);
        a->single_word = get_bool(it, "single_word", false);
        a->normalized = get_bool(it, "normalized", !a->special);
        if (!ids_reserve(t, a->id) || !tok_strmap_put(&t->added_map, a->content, a->len, a->id) ||
            !trie_insert(t, a->content, a->len, k))
            return oom(t, err);
        t->text[a->id] = a->content;
        t->text_len[a->id] = (uint32_t)a->len;
        t->special[a->id] = a->special;
    }
    return DS_OK;
}

// Finds the leftmost-longest added token in text[from, len); *s/*e include the whitespace
// that lstrip/rstrip absorb. Returns the added index or -1.
static int added_find(const ds_tokenizer *t, const char *text, size_t len, size_t from, size_t *s, size_t *e) {
    for (size_t i = from; i < len; i++) {
        int node = t->trie_root[(unsigned char)text[i]], best = -1;
        size_t best_end = 0;
        for (size_t j = i; node >= 0;) {
            if (t->trie[node].added >= 0) best = t->trie[node].added, best_end = j + 1;
            if (++j >= len) break;
            node = t->trie[node].child;
            while (node >= 0 && t->trie[node].byte != (unsigned char)text[j]) node = t->trie[node].sibling;
        }
        if (best < 0) continue;
        const tok_added *a = &t->added[best];
        uint32_t cp;
        if (a->single_word) { // not glued to a word char on either side
            size_t b = i;
            while (b > 0 && ((unsigned char)text[b - 1] & 0xC0) == 0x80) b--;
            bool left = i > 0 && b > 0 && tok_utf8_get(text + b - 1, i - b + 1, &cp) && tok_is_word_char(cp);
            bool right = best_end < len && tok_utf8_get(text + best_end, len - best_end, &cp) && tok_is_word_char(cp);
            if (left || right) continue;
        }
        size_t ms = i, me = best_end;
        if (a->lstrip)
            while (ms > from) {
                size_t b = ms - 1;
                while (b > from && ((unsigned char)text[b] & 0xC0) == 0x80) b--;
                if (!(tok_utf8_get(text + b, ms - b, &cp) && tok_is_whitespace(cp))) break;
                ms = b;
            }
        if (a->rstrip)
            for (int cl; me < len && (cl = tok_utf8_get(text + me, len - me, &cp)) && tok_is_whitespace(cp);) me += (size_t)cl;
        *s = ms;
        *e = me;
        return best;
    }
    return -1;
}

// ---- post-processor ----

static ds_status template_load(ds_tokenizer *t, const cJSON *j, ds_error *err) {
    const cJSON *single = obj_get(j, "single"), *specials = obj_get(j, "special_tokens"), *it;
    if (!cJSON_IsArray(single))
        return ds_error_set(err, DS_ERR_FORMAT, "%s: post_processor TemplateProcessing: \"single\" must be an array", t->path);
    bool after = false;
    cJSON_ArrayForEach(it, single) {
        const cJSON *sp = obj_get(it, "SpecialToken"), *seq = obj_get(it, "Sequence");
        if (seq) {
            const cJSON *sid = obj_get(seq, "id");
            if (!cJSON_IsString(sid) || strcmp(sid->valuestring, "A") != 0)
                return ds_error_set(err, DS_ERR_FORMAT, "%s: post_processor: single template may only use sequence A", t->path);
            after = true;
            continue;
        }
        const cJSON *name = obj_get(sp, "id");
        const cJSON *def = cJSON_IsString(name) ? obj_get(specials, name->valuestring) : NULL;
        const cJSON *ids = obj_get(def, "ids"), *x;
        if (!cJSON_IsArray(ids))
            return ds_error_set(err, DS_ERR_FORMAT, "%s: post_processor: special token %s has no \"ids\" in special_tokens",
                                t->path, cJSON_IsString(name) ? name->valuestring : "(unnamed)");
        cJSON_ArrayForEach(x, ids) {
            if (!cJSON_IsNumber(x) || x->valueint < 0 || x->valueint >= MAX_ID)
                return ds_error_set(err, DS_ERR_FORMAT, "%s: post_processor: special_tokens ids must be ids", t->path);
            if (!tok_ints_push(after ? &t->tmpl_post : &t->tmpl_pre, x->valueint)) return oom(t, err);
        }
    }
    return DS_OK;
}

static ds_status post_load(ds_tokenizer *t, const cJSON *j, ds_error *err) {
    if (!j || cJSON_IsNull(j)) return DS_OK;
    const cJSON *type = obj_get(j, "type");
    if (!cJSON_IsString(type))
        return ds_error_set(err, DS_ERR_FORMAT, "%s: post_processor.type must be a string", t->path);
    if (strcmp(type->valuestring, "ByteLevel") == 0) return DS_OK; // offsets only
    if (strcmp(type->valuestring, "TemplateProcessing") == 0) return template_load(t, j, err);
    if (strcmp(type->valuestring, "Sequence") == 0) {
        const cJSON *list = obj_get(j, "processors"), *it;
        if (!cJSON_IsArray(list))
            return ds_error_set(err, DS_ERR_FORMAT, "%s: post_processor Sequence needs a \"processors\" array", t->path);
        cJSON_ArrayForEach(it, list) {
            ds_status st = post_load(t, it, err);
            if (st) return st;
        }
        return DS_OK;
    }
    return ds_error_set(err, DS_ERR_FORMAT, "%s: post_processor type \"%s\" is not supported", t->path, type->valuestring);
}

// ---- tokenizer_config.json ----

static char *config_token(const cJSON *v) {
    if (cJSON_IsString(v)) return strdup(v->valuestring);
    const cJSON *c = obj_get(v, "content");
    return cJSON_IsString(c) ? strdup(c->valuestring) : strdup("");
}

// Applies a parsed tokenizer_config.json (NULL: none).
static ds_status config_apply(ds_tokenizer *t, const cJSON *c, ds_error *err) {
    ds_status st = DS_OK;
    t->bos = config_token(obj_get(c, "bos_token"));
    t->eos = config_token(obj_get(c, "eos_token"));
    if (!t->bos || !t->eos) st = oom(t, err);
    t->bos_id = t->bos && t->bos[0] ? tokenizer_token_id(t, t->bos) : -1;
    t->eos_id = t->eos && t->eos[0] ? tokenizer_token_id(t, t->eos) : -1;
    const cJSON *tmpl = obj_get(c, "chat_template"), *it;
    if (cJSON_IsString(tmpl)) t->chat_template = strdup(tmpl->valuestring);
    else if (cJSON_IsArray(tmpl))
        cJSON_ArrayForEach(it, tmpl) {
            const cJSON *name = obj_get(it, "name"), *body = obj_get(it, "template");
            if (cJSON_IsString(name) && strcmp(name->valuestring, "default") == 0 && cJSON_IsString(body))
                t->chat_template = strdup(body->valuestring);
        }
    // transformers' Llama fast tokenizers rebuild the post-processor from add_bos_token /
    // add_eos_token (DeepSeek-V3's tokenizer.json adds nothing, yet encode() starts with BOS).
    const cJSON *cls = obj_get(c, "tokenizer_class");
    const cJSON *ab = obj_get(c, "add_bos_token"), *ae = obj_get(c, "add_eos_token");
    bool llama = cJSON_IsString(cls) && (strncmp(cls->valuestring, "Llama", 5) == 0 ||
                                         strncmp(cls->valuestring, "CodeLlama", 9) == 0);
    if (llama && (cJSON_IsBool(ab) || cJSON_IsBool(ae))) {
        t->tmpl_pre.n = t->tmpl_post.n = 0;
        bool add_bos = cJSON_IsBool(ab) ? cJSON_IsTrue(ab) : true, add_eos = cJSON_IsTrue(ae);
        if (add_bos && t->bos_id >= 0 && !tok_ints_push(&t->tmpl_pre, t->bos_id)) st = oom(t, err);
        if (add_eos && t->eos_id >= 0 && !tok_ints_push(&t->tmpl_post, t->eos_id)) st = oom(t, err);
    }
    return st;
}

static ds_status config_load(ds_tokenizer *t, const char *dir, ds_error *err) {
    char *path = file_join(dir, "tokenizer_config.json");
    if (!path) return oom(t, err);
    cJSON *c = NULL;
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    ds_status st = f ? tok_json_parse_file(path, &c, err) : DS_OK;
    if (!st) st = config_apply(t, c, err);
    cJSON_Delete(c);
    free(path);
    return st;
}

// ---- load / free ----

// Everything tokenizer.json describes (t->path names it in messages).
static ds_status tokenizer_parts_load(ds_tokenizer *t, const cJSON *j, ds_error *err) {
    if (!cJSON_IsObject(j)) return ds_error_set(err, DS_ERR_FORMAT, "%s: top level must be an object", t->path);
    ds_status st = model_load(t, obj_get(j, "model"), err);
    if (!st) st = added_load(t, obj_get(j, "added_tokens"), err);
    if (!st) st = normalizer_parse(&t->norm, obj_get(j, "normalizer"), t->path, err);
    if (!st) st = pretok_parse(&t->pre, obj_get(j, "pre_tokenizer"), t->path, err);
    if (!st) st = post_load(t, obj_get(j, "post_processor"), err);
    if (!st) st = decoder_parse(&t->dec, obj_get(j, "decoder"), t->path, err);
    return st;
}

ds_status tokenizer_load(ds_tokenizer **out, const char *dir, ds_error *err) {
    *out = NULL;
    size_t dl = strlen(dir);
    if (dl > 5 && strcmp(dir + dl - 5, ".gguf") == 0) { // a GGUF file carries its tokenizer
        gguf_file f;
        ds_status st = gguf_open(&f, dir, err);
        if (st) return st;
        st = tokenizer_load_gguf(out, &f, err);
        gguf_close(&f);
        return st;
    }
    ds_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", dir);
    t->bos_id = t->eos_id = -1;
    t->path = file_join(dir, "tokenizer.json");
    if (!t->path) {
        free(t);
        return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", dir);
    }
    cJSON *j = NULL;
    ds_status st = tok_json_parse_file(t->path, &j, err);
    if (!st) st = tokenizer_parts_load(t, j, err);
    if (!st) st = config_load(t, dir, err);
    cJSON_Delete(j);
    if (st) {
        tokenizer_free(t);
        return st;
    }
    t->bpe.byte_level = t->pre.byte_level;
    *out = t;
    return DS_OK;
}

ds_status tokenizer_load_json(ds_tokenizer **out, const cJSON *tokenizer_json, const cJSON *config_json,
                              const char *name, ds_error *err) {
    *out = NULL;
    ds_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", name);
    t->bos_id = t->eos_id = -1;
    t->path = strdup(name);
    if (!t->path) {
        free(t);
        return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", name);
    }
    ds_status st = tokenizer_parts_load(t, tokenizer_json, err);
    if (!st) st = config_apply(t, config_json, err);
    if (st) {
        tokenizer_free(t);
        return st;
    }
    t->bpe.byte_level = t->pre.byte_level;
    *out = t;
    return DS_OK;
}

void tokenizer_free(ds_tokenizer *t) {
    if (!t) return;
    bpe_model_free(&t->bpe);
    normalizer_free(&t->norm);
    pretok_free(&t->pre);
    decoder_free(&t->dec);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    tok_strmap_free(&t->added_map);
    free(t->trie);
    free(t->tmpl_pre.v);
    free(t->tmpl_post.v);
    free(t->arena);
    free(t->text);
    free(t->text_len);
    free(t->special);
    free(t->bos);
    free(t->eos);
    free(t->chat_template);
    free(t->path);
    free(t);
}

// ---- encode ----

// Words repeat (Zipf), so short pieces' ids are remembered for the rest of the call.
// Per call, not per tokenizer, so encoding stays thread-safe on a const tokenizer.
enum { CACHE_SLOTS = 4096, CACHE_MAX_WORD = 32, CACHE_MAX_USED = CACHE_SLOTS / 2 };

typedef struct {
    uint32_t hash, key_off, ids_off;
    uint16_t key_len, n_ids; // key_len 0: empty slot
} cache_slot;

typedef struct {
    pretok_work pre;
    bpe_work bpe;
    cache_slot *slots;
    size_t used;
    tok_bytes keys;
    tok_ints ids;
} encode_work;

static bool word_encode_cached(const ds_tokenizer *t, const char *w, size_t len, encode_work *c, tok_ints *out) {
    if (len > CACHE_MAX_WORD) return bpe_word_encode(&t->bpe, w, len, &c->bpe, out);
    if (!c->slots && !(c->slots = calloc(CACHE_SLOTS, sizeof *c->slots))) return false;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)w[i]) * 16777619u;
    uint32_t j = h & (CACHE_SLOTS - 1);
    for (; c->slots[j].key_len; j = (j + 1) & (CACHE_SLOTS - 1)) {
        const cache_slot *s = &c->slots[j];
        if (s->hash == h && s->key_len == len && memcmp(c->keys.s + s->key_off, w, len) == 0) {
            for (int k = 0; k < s->n_ids; k++)
                if (!tok_ints_push(out, c->ids.v[s->ids_off + k])) return false;
            return true;
        }
    }
    size_t before = out->n;
    if (!bpe_word_encode(&t->bpe, w, len, &c->bpe, out)) return false;
    if (c->used >= CACHE_MAX_USED) { // full: start over rather than evict
        memset(c->slots, 0, CACHE_SLOTS * sizeof *c->slots);
        c->used = c->keys.n = c->ids.n = 0;
        for (j = h & (CACHE_SLOTS - 1); c->slots[j].key_len; j = (j + 1) & (CACHE_SLOTS - 1)) {}
    }
    cache_slot s = {h, (uint32_t)c->keys.n, (uint32_t)c->ids.n, (uint16_t)len, (uint16_t)(out->n - before)};
    if (!tok_bytes_append(&c->keys, w, len)) return false;
    for (size_t k = before; k < out->n; k++)
        if (!tok_ints_push(&c->ids, out->v[k])) return false;
    c->slots[j] = s;
    c->used++;
    return true;
}

static void encode_work_free(encode_work *w) {
    pretok_work_free(&w->pre);
    bpe_work_free(&w->bpe);
    free(w->slots);
    free(w->keys.s);
    free(w->ids.v);
}

static ds_status encode_segment(const ds_tokenizer *t, const char *s, size_t len, encode_work *w, tok_ints *out,
                                ds_error *err) {
    ds_status st = normalizer_apply(&t->norm, s, len, &w->pre.buf, err);
    if (!st) st = pretok_run(&t->pre, &w->pre, w->pre.buf.n, err);
    for (size_t i = 0; !st && i < w->pre.a.n; i++) {
        const tok_piece *p = &w->pre.a.v[i];
        if (!word_encode_cached(t, w->pre.buf.s + p->start, p->end - p->start, w, out)) st = oom(t, err);
    }
    return st;
}

ds_status tokenizer_encode(const ds_tokenizer *t, const char *text, size_t len, bool add_special, int **ids, int *n,
                           ds_error *err) {
    *ids = NULL;
    *n = 0;
    tok_ints out = {0};
    encode_work w = {0};
    ds_status st = DS_OK;
    for (size_t i = 0; add_special && !st && i < t->tmpl_pre.n; i++)
        if (!tok_ints_push(&out, t->tmpl_pre.v[i])) st = oom(t, err);
    for (size_t pos = 0; !st && pos < len;) {
        size_t ms = len, me = len;
        int k = t->n_added ? added_find(t, text, len, pos, &ms, &me) : -1;
        if (ms > pos) st = encode_segment(t, text + pos, ms - pos, &w, &out, err);
        if (!st && k >= 0 && !tok_ints_push(&out, t->added[k].id)) st = oom(t, err);
        pos = me;
    }
    for (size_t i = 0; add_special && !st && i < t->tmpl_post.n; i++)
        if (!tok_ints_push(&out, t->tmpl_post.v[i])) st = oom(t, err);
    encode_work_free(&w);
    if (!st && out.n > (size_t)0x7fffffff) st = ds_error_set(err, DS_ERR_LIMIT, "tokenizer: text too long");
    if (st) {
        free(out.v);
        return st;
    }
    if (!out.v && !(out.v = malloc(sizeof(int)))) return oom(t, err);
    *ids = out.v;
    *n = (int)out.n;
    return DS_OK;
}

// ---- accessors ----

int tokenizer_vocab_size(const ds_tokenizer *t) { return t->n_ids; }

int tokenizer_token_id(const ds_tokenizer *t, const char *token) {
    size_t l = strlen(token);
    int id = tok_strmap_get(&t->added_map, token, l);
    return id >= 0 ? id : tok_strmap_get(&t->bpe.vocab, token, l);
}

const char *tokenizer_token_text(const ds_tokenizer *t, int id) {
    return id >= 0 && id < t->n_ids ? t->text[id] : NULL;
}

bool tokenizer_is_special(const ds_tokenizer *t, int id) { return id >= 0 && id < t->n_ids && t->special[id]; }
int tokenizer_bos_id(const ds_tokenizer *t) { return t->bos_id; }
int tokenizer_eos_id(const ds_tokenizer *t) { return t->eos_id; }
const char *tokenizer_bos_token(const ds_tokenizer *t) { return t->bos ? t->bos : ""; }
const char *tokenizer_eos_token(const ds_tokenizer *t) { return t->eos ? t->eos : ""; }
const char *tokenizer_chat_template(const ds_tokenizer *t) { return t->chat_template; }
