// Training a byte-level BPE tokenizer on a corpus (deepseek tokenizer-train) and writing it as
// Hugging Face tokenizer.json + tokenizer_config.json, so the result loads through the same
// code as a Hub model here, in transformers and in transformers.js.
//
// The text is cut exactly as the written tokenizer will cut it when encoding: added tokens
// out first, then the NFC normalizer and Qwen2's pre-tokenizer (pretokenize.c, the encoder's
// own code), so merges are learned on the very pieces BPE will later see. Training is the
// standard greedy BPE: count the distinct words, then repeatedly merge the most frequent
// adjacent pair. Pair counts are updated incrementally from the words that hold the merged
// pair, and a lazy max-heap finds the next pair, so each merge costs time in proportion to
// the words it touches rather than to the corpus. Ties go to the pair whose (left, right)
// token bytes sort first, so the output depends on nothing but the data and the flags.
//
// The normalizer is NFC, Qwen2's own, rather than none: GGUF export (tokenizer_gguf.c) names
// a tokenizer "qwen2" only when pre-tokenizer and normalizer are both Qwen2's, and NFC leaves
// the ASCII of arithmetic traces untouched anyway.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "io/fileutil.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"

#define PROG "tokenizer-train: "

// DeepSeek-R1's chat tokens, with the flags its tokenizer.json gives them: BOS and EOS are
// special; the role and think markers are ordinary added tokens (normalized, not special),
// so decoding with skip_special keeps them, as it does for R1.
typedef struct {
    const char *content;
    bool special;
} added_def;

static const added_def ADDED[TOKENIZER_TRAIN_N_ADDED] = {
    {"<｜begin▁of▁sentence｜>", true}, {"<｜end▁of▁sentence｜>", true}, {"<｜User｜>", false},
    {"<｜Assistant｜>", false},         {"<think>", false},                {"</think>", false},
};
enum { ADDED_BOS = 0, ADDED_EOS = 1 };

// tests/fixtures/templates/deepseek_r1_think.jinja: DeepSeek-R1's template, whose generation
// prompt opens the reasoning block ("<｜Assistant｜><think>\n"); test_tokenizer_train checks
// the two stay equal.
static const char R1_CHAT_TEMPLATE[] =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='', is_first_sp=true) %}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}{%- if ns.is_first_sp %}"
    "{% set ns.system_prompt = ns.system_prompt + message['content'] %}{% set ns.is_first_sp = false %}"
    "{%- else %}{% set ns.system_prompt = ns.system_prompt + '\\n\\n' + message['content'] %}{%- endif %}"
    "{%- endif %}{%- endfor %}{{ bos_token }}{{ ns.system_prompt }}{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}"
    "{%- endif %}{%- if message['role'] == 'assistant' and 'tool_calls' in message %}"
    "{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls'] %}{%- if not ns.is_first %}"
    "{%- if message['content'] is none %}"
    "{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + "
    "'<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + "
    "'\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}{%- else %}"
    "{{'<｜Assistant｜>' + message['content'] + '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + "
    "'<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + "
    "'\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}{%- endif %}"
    "{%- set ns.is_first = true -%}{%- else %}{{'\\n' + '<｜tool▁call▁begin｜>' + tool['type'] + "
    "'<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + "
    "'\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}{%- endif %}{%- endfor %}"
    "{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}"
    "{%- if message['role'] == 'assistant' and 'tool_calls' not in message %}{%- if ns.is_tool %}"
    "{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}"
    "{%- set ns.is_tool = false -%}{%- else %}{% set content = message['content'] %}"
    "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}"
    "{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}"
    "{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}"
    "{%- set ns.is_output_first = false %}{%- else %}"
    "{{'<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}"
    "{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}"
    "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\\n'}}{% endif %}";

static const char NFC_NORMALIZER[] = "{\"type\":\"NFC\"}";
static const char BYTELEVEL_DECODER[] =
    "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":false}";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static ds_status oom(ds_error *err) { return ds_error_set(err, DS_ERR_OOM, "tokenizer-train: out of memory"); }

static bool grow(void **p, int *cap, int need, size_t size) {
    if (need <= *cap) return true;
    int c = *cap ? *cap : 256;
    while (c < need) c = c > (1 << 29) ? need : c * 2;
    void *q = realloc(*p, (size_t)c * size);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

// ---- interned byte strings (words while counting, tokens while merging) ----

typedef struct {
    tok_bytes arena;     // offsets, not pointers: the arena moves as it grows
    size_t *off;
    uint32_t *len, *hash;
    int n, cap;
    int32_t *slots;      // open addressing over indices, -1 empty
    uint32_t mask;
} strtab;

static uint32_t fnv1a(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static bool strtab_rehash(strtab *t) {
    uint32_t cap = t->slots ? (t->mask + 1) * 2 : 1024;
    int32_t *s = malloc(cap * sizeof *s);
    if (!s) return false;
    memset(s, 0xff, cap * sizeof *s);
    for (int i = 0; i < t->n; i++) {
        uint32_t j = t->hash[i] & (cap - 1);
        while (s[j] >= 0) j = (j + 1) & (cap - 1);
        s[j] = i;
    }
    free(t->slots);
    t->slots = s;
    t->mask = cap - 1;
    return true;
}

static const char *strtab_str(const strtab *t, int i) { return t->arena.s + t->off[i]; }

// The index of s, added when new (*added says which); -1 when out of memory.
static int strtab_intern(strtab *t, const char *s, size_t len, bool *added) {
    uint32_t h = fnv1a(s, len);
    *added = false;
    for (uint32_t j = t->slots ? h & t->mask : 0; t->slots && t->slots[j] >= 0; j = (j + 1) & t->mask) {
        int i = t->slots[j];
        if (t->hash[i] == h && t->len[i] == len && memcmp(strtab_str(t, i), s, len) == 0) return i;
    }
    if (len > UINT32_MAX || t->n >= (1 << 30)) return -1;
    if ((!t->slots || (uint32_t)(t->n + 1) * 2 > t->mask + 1) && !strtab_rehash(t)) return -1;
    if (t->n == t->cap) {
        int c = t->cap ? t->cap * 2 : 1024;
        size_t *o = realloc(t->off, (size_t)c * sizeof *o);
        if (o) t->off = o;
        uint32_t *l = o ? realloc(t->len, (size_t)c * sizeof *l) : NULL;
        if (l) t->len = l;
        uint32_t *hh = l ? realloc(t->hash, (size_t)c * sizeof *hh) : NULL;
        if (!hh) return -1;
        t->hash = hh;
        t->cap = c;
    }
    size_t at = t->arena.n;
    if (!tok_bytes_append(&t->arena, s, len)) return -1;
    t->off[t->n] = at;
    t->len[t->n] = (uint32_t)len;
    t->hash[t->n] = h;
    uint32_t j = h & t->mask;
    while (t->slots[j] >= 0) j = (j + 1) & t->mask;
    t->slots[j] = t->n;
    *added = true;
    return t->n++;
}

static void strtab_free(strtab *t) {
    free(t->arena.s);
    free(t->off);
    free(t->len);
    free(t->hash);
    free(t->slots);
    *t = (strtab){0};
}

// ---- reading and counting the corpus ----

typedef struct {
    const tokenizer_train_params *p;
    tok_normalizer norm;
    tok_pretokenizer pre;
    pretok_work work;
    strtab words;          // distinct pre-tokens (raw bytes)
    int64_t *count;        // occurrences of each
    int count_cap;
    size_t text_bytes;
    long long n_words;
    bool full;             // max_bytes reached: read no more
} corpus;

static ds_status corpus_init(corpus *c, const tokenizer_train_params *p, const cJSON *pre_json, ds_error *err) {
    *c = (corpus){.p = p};
    cJSON *norm = cJSON_Parse(NFC_NORMALIZER);
    if (!norm) return oom(err);
    ds_status st = normalizer_parse(&c->norm, norm, "tokenizer-train", err);
    cJSON_Delete(norm);
    if (!st) st = pretok_parse(&c->pre, pre_json, "tokenizer-train", err);
    return st;
}

static void corpus_free(corpus *c) {
    normalizer_free(&c->norm);
    pretok_free(&c->pre);
    pretok_work_free(&c->work);
    strtab_free(&c->words);
    free(c->count);
}

// Counts the pre-tokens of text that holds no added token.
static ds_status count_segment(corpus *c, const char *s, size_t len, ds_error *err) {
    if (!len) return DS_OK;
    ds_status st = normalizer_apply(&c->norm, s, len, &c->work.buf, err);
    if (!st) st = pretok_run(&c->pre, &c->work, c->work.buf.n, err);
    for (size_t i = 0; !st && i < c->work.a.n; i++) {
        const tok_piece *pc = &c->work.a.v[i];
        if (pc->end == pc->start) continue;
        bool added;
        int w = strtab_intern(&c->words, c->work.buf.s + pc->start, pc->end - pc->start, &added);
        if (w < 0 || !grow((void **)&c->count, &c->count_cap, w + 1, sizeof *c->count)) return oom(err);
        if (added) c->count[w] = 0;
        c->count[w]++;
        c->n_words++;
    }
    return st;
}

// The added token starting at s (leftmost-longest, as the encoder matches them), or -1.
static int added_at(const char *s, size_t n, size_t *len) {
    int best = -1;
    for (int k = 0; k < TOKENIZER_TRAIN_N_ADDED; k++) {
        size_t l = strlen(ADDED[k].content);
        if (l <= n && (best < 0 || l > *len) && memcmp(s, ADDED[k].content, l) == 0) best = k, *len = l;
    }
    return best;
}

// One text: cut at max_bytes, added tokens skipped (they are never split or merged).
static ds_status count_text(corpus *c, const char *s, size_t len, ds_error *err) {
    size_t max = c->p->max_bytes;
    if (max && c->text_bytes + len >= max) {
        size_t keep = max - c->text_bytes;
        while (keep > 0 && keep < len && ((unsigned char)s[keep] & 0xC0) == 0x80) keep--; // whole characters
        len = keep;
        c->full = true;
    }
    c->text_bytes += len;
    size_t from = 0;
    for (size_t i = 0; i < len;) {
        const char *lt = memchr(s + i, '<', len - i); // every added token starts with '<'
        if (!lt) break;
        i = (size_t)(lt - s);
        size_t tl = 0;
        if (added_at(s + i, len - i, &tl) < 0) {
            i++;
            continue;
        }
        ds_status st = count_segment(c, s + from, i - from, err);
        if (st) return st;
        from = i += tl;
    }
    return count_segment(c, s + from, len - from, err);
}

// A string, or null / absent (nothing); anything else is an error naming file:line and key.
static ds_status jsonl_string(corpus *c, const cJSON *v, const char *path, long line, const char *key, ds_error *err) {
    if (!v || cJSON_IsNull(v)) return DS_OK;
    if (!cJSON_IsString(v)) return ds_error_set(err, DS_ERR_FORMAT, "%s:%ld: \"%s\" must be a string", path, line, key);
    return count_text(c, v->valuestring, strlen(v->valuestring), err);
}

static ds_status jsonl_messages(corpus *c, const cJSON *v, const char *path, long line, const char *key,
                                ds_error *err) {
    if (!v || cJSON_IsNull(v)) return DS_OK;
    if (!cJSON_IsArray(v))
        return ds_error_set(err, DS_ERR_FORMAT, "%s:%ld: \"%s\" must be an array of messages", path, line, key);
    int k = 0;
    for (const cJSON *m = v->child; m; m = m->next, k++) {
        if (!cJSON_IsObject(m))
            return ds_error_set(err, DS_ERR_FORMAT, "%s:%ld: %s[%d] must be an object", path, line, key, k);
        char name[64];
        snprintf(name, sizeof name, "%s[%d].content", key, k);
        ds_status st = jsonl_string(c, cJSON_GetObjectItemCaseSensitive(m, "content"), path, line, name, err);
        if (st || c->full) return st;
    }
    return DS_OK;
}

static ds_status jsonl_line(corpus *c, const char *text, size_t len, const char *path, long line, ds_error *err) {
    cJSON *j = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return ds_error_set(err, DS_ERR_FORMAT, "%s:%ld: not a JSON object", path, line);
    }
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(j, "prompt");
    ds_status st = jsonl_string(c, cJSON_GetObjectItemCaseSensitive(j, "text"), path, line, "text", err);
    // "prompt" may also be a conversation (TRL's conversational prompt format).
    if (!st && !c->full)
        st = cJSON_IsArray(prompt) ? jsonl_messages(c, prompt, path, line, "prompt", err)
                                   : jsonl_string(c, prompt, path, line, "prompt", err);
    if (!st && !c->full)
        st = jsonl_messages(c, cJSON_GetObjectItemCaseSensitive(j, "messages"), path, line, "messages", err);
    cJSON_Delete(j);
    return st;
}

// Reading progress in tenths of the file, for files big enough to take a while.
static void read_progress(const corpus *c, const char *path, long long done, long long size, int *shown) {
    if (!c->p->progress || size < (1 << 22)) return;
    int tenth = (int)(done * 10 / size);
    if (tenth <= *shown || tenth >= 10) return;
    *shown = tenth;
    fprintf(stderr, PROG "reading %s: %d%% (%.1f MB of text, %d distinct words)\n", path, tenth * 10,
            c->text_bytes / 1e6, c->words.n);
}

static ds_status read_jsonl(corpus *c, FILE *f, const char *path, long long size, ds_error *err) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    long long done = 0;
    int shown = 0;
    ds_status st = DS_OK;
    while (!st && !c->full && (n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        done += n;
        if (c->p->cancel && *c->p->cancel) st = ds_error_set(err, DS_ERR_INTERRUPTED, "interrupted");
        ssize_t b = 0;
        while (b < n && (line[b] == ' ' || line[b] == '\t' || line[b] == '\r' || line[b] == '\n')) b++;
        if (!st && b < n) st = jsonl_line(c, line, (size_t)n, path, lineno, err);
        read_progress(c, path, done, size, &shown);
    }
    if (!st && ferror(f)) st = ds_error_set(err, DS_ERR_IO, "%s: read error: %s", path, strerror(errno));
    free(line);
    return st;
}

// A place to cut plain text into independently pre-tokenized chunks without changing the
// pieces: right after a '\n' that is followed by a printable ASCII char. No alternative of
// the Qwen2 pattern reaches from a newline into a following non-space, and NFC never
// composes across such a pair, so the cut is a piece boundary either way. 0 if none.
static size_t plain_cut(const char *s, size_t n, size_t from) {
    for (size_t i = n; i-- > from + 1;)
        if (s[i - 1] == '\n' && s[i] > ' ' && s[i] < 0x7F) return i;
    return 0;
}

enum { PLAIN_CHUNK = 1 << 20 };

static ds_status read_plain(corpus *c, FILE *f, const char *path, long long size, ds_error *err) {
    tok_bytes buf = {0};
    bool eof = false;
    size_t scanned = 0; // buf[0, scanned) holds no cut
    long long done = 0;
    int shown = 0;
    ds_status st = DS_OK;
    while (!st && !c->full && (!eof || buf.n)) {
        if (!eof) {
            if (!tok_bytes_reserve(&buf, PLAIN_CHUNK)) {
                st = oom(err);
                break;
            }
            size_t got = fread(buf.s + buf.n, 1, PLAIN_CHUNK, f);
            buf.n += got;
            done += (long long)got;
            if (got < PLAIN_CHUNK) {
                if (ferror(f)) st = ds_error_set(err, DS_ERR_IO, "%s: read error: %s", path, strerror(errno));
                eof = true;
            }
        }
        size_t cut = eof ? buf.n : plain_cut(buf.s, buf.n, scanned ? scanned - 1 : 0);
        if (st || !cut) {
            scanned = buf.n;
            continue;
        }
        if (c->p->cancel && *c->p->cancel) st = ds_error_set(err, DS_ERR_INTERRUPTED, "interrupted");
        if (!st) st = count_text(c, buf.s, cut, err);
        memmove(buf.s, buf.s + cut, buf.n - cut);
        buf.n -= cut;
        scanned = 0;
        read_progress(c, path, done, size, &shown);
    }
    free(buf.s);
    return st;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static ds_status read_file(corpus *c, const char *path, ds_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return ds_error_set(err, DS_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    bool have = fstat(fileno(f), &sb) == 0;
    if (have && S_ISDIR(sb.st_mode)) {
        fclose(f);
        return ds_error_set(err, DS_ERR_IO, "%s: is a folder, not a data file", path);
    }
    long long size = have && S_ISREG(sb.st_mode) ? (long long)sb.st_size : 0;
    size_t before = c->text_bytes;
    ds_status st = ends_with(path, ".jsonl") ? read_jsonl(c, f, path, size, err) : read_plain(c, f, path, size, err);
    fclose(f);
    if (!st && c->p->progress)
        fprintf(stderr, PROG "read %s: %.2f MB of text%s\n", path, (c->text_bytes - before) / 1e6,
                c->full ? " (byte limit reached: the rest of the data is not read)" : "");
    return st;
}

// ---- BPE merges ----

typedef struct {
    int32_t *v;
    int n, cap;
} i32vec;

static bool i32vec_push(i32vec *a, int32_t x) {
    if (!grow((void **)&a->v, &a->cap, a->n + 1, sizeof *a->v)) return false;
    a->v[a->n++] = x;
    return true;
}

typedef struct {
    int64_t count; // the pair's count when pushed: >= its count now, or the entry is stale
    int32_t pair;
} heap_ent;

typedef struct {
    int32_t a, b;        // left and right token ids
    int64_t count;       // occurrences, weighted by word counts
    i32vec words;        // words holding the pair (stale entries and repeats are possible)
    int32_t last, mark;  // the word last added to `words`; the merge step it last rose in
} pair_info;

typedef struct {
    strtab tok;          // id -> bytes (ids 0..255 are the bytes)
    // word w's symbols are sym[w_off[w], w_off[w] + w_len[w]); merging shrinks them in place
    int32_t *sym;
    size_t *w_off;
    int32_t *w_len, *w_seen;
    int64_t *w_count;
    int n_words;
    pair_info *pairs;    // found by (left, right) through p_slots
    int n_pairs, cap_pairs;
    int32_t *p_slots;
    uint32_t p_mask;
    heap_ent *heap;
    int n_heap, cap_heap;
    i32vec changed;      // pairs whose count rose during the current merge
    i32vec merges;       // left, right ids of each merge, in order
    int32_t cur_a, cur_b; // the pair being merged
    int step;
} bpe_trainer;

static uint32_t pair_hash(int32_t a, int32_t b) {
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (uint32_t)k;
}

static bool pairs_rehash(bpe_trainer *t) {
    uint32_t cap = t->p_slots ? (t->p_mask + 1) * 2 : 4096;
    int32_t *s = malloc(cap * sizeof *s);
    if (!s) return false;
    memset(s, 0xff, cap * sizeof *s);
    for (int i = 0; i < t->n_pairs; i++) {
        uint32_t j = pair_hash(t->pairs[i].a, t->pairs[i].b) & (cap - 1);
        while (s[j] >= 0) j = (j + 1) & (cap - 1);
        s[j] = i;
    }
    free(t->p_slots);
    t->p_slots = s;
    t->p_mask = cap - 1;
    return true;
}

// The index of pair (a, b), created with count 0 when new; -1 when out of memory.
static int pair_get(bpe_trainer *t, int32_t a, int32_t b) {
    uint32_t h = pair_hash(a, b);
    for (uint32_t j = t->p_slots ? h & t->p_mask : 0; t->p_slots && t->p_slots[j] >= 0; j = (j + 1) & t->p_mask) {
        int i = t->p_slots[j];
        if (t->pairs[i].a == a && t->pairs[i].b == b) return i;
    }
    if (t->n_pairs >= (1 << 30)) return -1;
    if ((!t->p_slots || (uint32_t)(t->n_pairs + 1) * 2 > t->p_mask + 1) && !pairs_rehash(t)) return -1;
    if (!grow((void **)&t->pairs, &t->cap_pairs, t->n_pairs + 1, sizeof *t->pairs)) return -1;
    int i = t->n_pairs++;
    t->pairs[i] = (pair_info){.a = a, .b = b, .last = -1, .mark = -1};
    uint32_t j = h & t->p_mask;
    while (t->p_slots[j] >= 0) j = (j + 1) & t->p_mask;
    t->p_slots[j] = i;
    return i;
}

static int tok_cmp(const strtab *s, int x, int y) {
    size_t lx = s->len[x], ly = s->len[y];
    int c = memcmp(strtab_str(s, x), strtab_str(s, y), lx < ly ? lx : ly);
    return c ? c : (lx > ly) - (lx < ly);
}

// Heap order: higher count first; equal counts go to the pair whose (left, right) token
// bytes sort first, so the result never depends on hashing or insertion order.
static bool ent_before(const bpe_trainer *t, heap_ent x, heap_ent y) {
    if (x.count != y.count) return x.count > y.count;
    int c = tok_cmp(&t->tok, t->pairs[x.pair].a, t->pairs[y.pair].a);
    if (!c) c = tok_cmp(&t->tok, t->pairs[x.pair].b, t->pairs[y.pair].b);
    return c < 0;
}

static bool heap_push(bpe_trainer *t, heap_ent e) {
    if (!grow((void **)&t->heap, &t->cap_heap, t->n_heap + 1, sizeof *t->heap)) return false;
    int i = t->n_heap++;
    while (i > 0) {
        int up = (i - 1) / 2;
        if (!ent_before(t, e, t->heap[up])) break;
        t->heap[i] = t->heap[up];
        i = up;
    }
    t->heap[i] = e;
    return true;
}

static heap_ent heap_pop(bpe_trainer *t) {
    heap_ent top = t->heap[0], last = t->heap[--t->n_heap];
    int i = 0, n = t->n_heap;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        heap_ent best = last;
        if (l < n && ent_before(t, t->heap[l], best)) m = l, best = t->heap[l];
        if (r < n && ent_before(t, t->heap[r], best)) m = r;
        if (m == i) break;
        t->heap[i] = t->heap[m];
        i = m;
    }
    if (n) t->heap[i] = last;
    return top;
}

// The most frequent pair, or -1 when no pair is left. Counts only fall except when a merge
// creates them (and then they are pushed again), so an entry whose count is above the pair's
// is re-pushed with the true count and one below it is a leftover of an older push.
static int heap_best(bpe_trainer *t, bool *oom_hit) {
    while (t->n_heap) {
        heap_ent e = heap_pop(t);
        int64_t now = t->pairs[e.pair].count;
        if (now == e.count) return e.pair;
        if (now > 0 && now < e.count && !heap_push(t, (heap_ent){now, e.pair})) {
            *oom_hit = true;
            return -1;
        }
    }
    return -1;
}

// Pair (x, y) changes by d occurrences in word w.
static bool pair_delta(bpe_trainer *t, int32_t x, int32_t y, int64_t d, int w) {
    if (x == t->cur_a && y == t->cur_b) return true; // the merged pair: zeroed after the merge
    int p = pair_get(t, x, y);
    if (p < 0) return false;
    t->pairs[p].count += d;
    if (d < 0) return true;
    if (t->pairs[p].last != w) {
        if (!i32vec_push(&t->pairs[p].words, w)) return false;
        t->pairs[p].last = w;
    }
    if (t->pairs[p].mark != t->step) {
        if (!i32vec_push(&t->changed, p)) return false;
        t->pairs[p].mark = t->step;
    }
    return true;
}

// Replaces each non-overlapping (a, b) of word w, left to right, by c, and moves the counts
// of the neighbouring pairs: (x, a) becomes (x, c) and (b, y) becomes (c, y).
static bool word_merge(bpe_trainer *t, int w, int32_t c) {
    int32_t a = t->cur_a, b = t->cur_b, *s = t->sym + t->w_off[w];
    int n = t->w_len[w], o = 0;
    int64_t k = t->w_count[w];
    for (int i = 0; i < n;) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            // s[o - 1] is already final (possibly a c just made); s[i + 2] is not yet.
            if (o > 0 && !(pair_delta(t, s[o - 1], a, -k, w) && pair_delta(t, s[o - 1], c, k, w))) return false;
            if (i + 2 < n && !(pair_delta(t, b, s[i + 2], -k, w) && pair_delta(t, c, s[i + 2], k, w))) return false;
            s[o++] = c;
            i += 2;
        } else {
            s[o++] = s[i++];
        }
    }
    t->w_len[w] = o;
    return true;
}

// Merges pair p everywhere; the new token's id is that of its bytes if some earlier merge
// already made them (as HF's trainer does), else the next id.
static ds_status merge_pair(bpe_trainer *t, int p, ds_error *err) {
    t->cur_a = t->pairs[p].a;
    t->cur_b = t->pairs[p].b;
    size_t la = t->tok.len[t->cur_a], lb = t->tok.len[t->cur_b];
    char *joined = malloc(la + lb);
    if (!joined) return oom(err);
    memcpy(joined, strtab_str(&t->tok, t->cur_a), la);
    memcpy(joined + la, strtab_str(&t->tok, t->cur_b), lb);
    bool added;
    int c = strtab_intern(&t->tok, joined, la + lb, &added);
    free(joined);
    if (c < 0 || !i32vec_push(&t->merges, t->cur_a) || !i32vec_push(&t->merges, t->cur_b)) return oom(err);
    t->step++;
    t->changed.n = 0;
    i32vec words = t->pairs[p].words; // no pair made below is (a, b): its list stays untouched
    t->pairs[p].words = (i32vec){0};
    ds_status st = DS_OK;
    for (int i = 0; i < words.n && !st; i++) {
        int w = words.v[i];
        if (t->w_seen[w] == t->step) continue;
        t->w_seen[w] = t->step;
        if (!word_merge(t, w, c)) st = oom(err);
    }
    free(words.v);
    t->pairs[p].count = 0;
    for (int i = 0; i < t->changed.n && !st; i++) {
        int q = t->changed.v[i];
        if (t->pairs[q].count > 0 && !heap_push(t, (heap_ent){t->pairs[q].count, q})) st = oom(err);
    }
    return st;
}

static ds_status trainer_init(bpe_trainer *t, const corpus *c, ds_error *err) {
    *t = (bpe_trainer){.cur_a = -1, .cur_b = -1};
    for (int b = 0; b < 256; b++) {
        char byte = (char)b;
        bool added;
        if (strtab_intern(&t->tok, &byte, 1, &added) != b) return oom(err);
    }
    int n = t->n_words = c->words.n;
    t->sym = malloc((c->words.arena.n ? c->words.arena.n : 1) * sizeof *t->sym);
    size_t nw = n ? (size_t)n : 1;
    t->w_off = malloc(nw * sizeof *t->w_off);
    t->w_len = malloc(nw * sizeof *t->w_len);
    t->w_seen = malloc(nw * sizeof *t->w_seen);
    t->w_count = malloc(nw * sizeof *t->w_count);
    if (!t->sym || !t->w_off || !t->w_len || !t->w_seen || !t->w_count) return oom(err);
    size_t at = 0;
    for (int w = 0; w < n; w++) {
        const unsigned char *s = (const unsigned char *)strtab_str(&c->words, w);
        t->w_off[w] = at;
        t->w_len[w] = (int32_t)c->words.len[w];
        t->w_seen[w] = -1;
        t->w_count[w] = c->count[w];
        for (uint32_t i = 0; i < c->words.len[w]; i++) t->sym[at++] = s[i];
        for (uint32_t i = 0; i + 1 < c->words.len[w]; i++) {
            int p = pair_get(t, s[i], s[i + 1]);
            if (p < 0) return oom(err);
            t->pairs[p].count += t->w_count[w];
            if (t->pairs[p].last != w && !i32vec_push(&t->pairs[p].words, w)) return oom(err);
            t->pairs[p].last = w;
        }
    }
    for (int p = 0; p < t->n_pairs; p++)
        if (!heap_push(t, (heap_ent){t->pairs[p].count, p})) return oom(err);
    return DS_OK;
}

static void trainer_free(bpe_trainer *t) {
    strtab_free(&t->tok);
    free(t->sym);
    free(t->w_off);
    free(t->w_len);
    free(t->w_seen);
    free(t->w_count);
    for (int i = 0; i < t->n_pairs; i++) free(t->pairs[i].words.v);
    free(t->pairs);
    free(t->p_slots);
    free(t->heap);
    free(t->changed.v);
    free(t->merges.v);
}

// Merges until the BPE part of the vocabulary has `target` tokens or no pair qualifies.
static ds_status trainer_run(bpe_trainer *t, const tokenizer_train_params *p, int target, tokenizer_train_stop *stop,
                             ds_error *err) {
    long min_freq = p->min_frequency > 1 ? p->min_frequency : 1;
    int want = target - 256, shown = 0;
    double t0 = now_s();
    *stop = TOKENIZER_TRAIN_DONE;
    while (t->tok.n < target) {
        if (p->cancel && *p->cancel) return ds_error_set(err, DS_ERR_INTERRUPTED, "interrupted");
        bool oom_hit = false;
        int best = heap_best(t, &oom_hit);
        if (oom_hit) return oom(err);
        if (best < 0) {
            *stop = TOKENIZER_TRAIN_NO_PAIRS;
            break;
        }
        if (t->pairs[best].count < min_freq) {
            *stop = TOKENIZER_TRAIN_MIN_FREQUENCY;
            break;
        }
        int64_t count = t->pairs[best].count;
        ds_status st = merge_pair(t, best, err);
        if (st) return st;
        int done = t->tok.n - 256, tenth = want > 0 ? (int)((long long)done * 10 / want) : 10;
        if (p->progress && tenth > shown && tenth < 10) {
            shown = tenth;
            fprintf(stderr, PROG "merges %d%% (%d of %d, last seen %lld times, %.1f s)\n", tenth * 10, done, want,
                    (long long)count, now_s() - t0);
        }
    }
    return DS_OK;
}

// ---- writing tokenizer.json and tokenizer_config.json ----

// Token bytes as vocab text: each byte as its GPT-2 byte-to-unicode character.
static char *bytelevel_text(const char *s, size_t n) {
    char *out = malloc(n * 2 + 1); // the alphabet's code points are below U+0800: 2 bytes at most
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) o += (size_t)tok_utf8_put(out + o, (uint32_t)bytelevel_char_of_byte((unsigned char)s[i]));
    out[o] = 0;
    return out;
}

static cJSON *added_json(int id, const added_def *a) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "id", id);
    cJSON_AddStringToObject(j, "content", a->content);
    cJSON_AddBoolToObject(j, "single_word", 0);
    cJSON_AddBoolToObject(j, "lstrip", 0);
    cJSON_AddBoolToObject(j, "rstrip", 0);
    cJSON_AddBoolToObject(j, "normalized", !a->special);
    cJSON_AddBoolToObject(j, "special", a->special);
    return j;
}

static cJSON *template_piece(const char *kind, const char *id, int type_id) {
    cJSON *piece = cJSON_CreateObject(), *inner = cJSON_AddObjectToObject(piece, kind);
    cJSON_AddStringToObject(inner, "id", id);
    cJSON_AddNumberToObject(inner, "type_id", type_id);
    return piece;
}

// BOS before each sequence: what transformers' LlamaTokenizerFast builds from add_bos_token,
// written out so tools that read only tokenizer.json (transformers.js, tokenizers) agree.
static cJSON *post_processor_json(int bos_id) {
    const char *bos = ADDED[ADDED_BOS].content;
    cJSON *pp = cJSON_CreateObject();
    cJSON_AddStringToObject(pp, "type", "TemplateProcessing");
    cJSON *single = cJSON_AddArrayToObject(pp, "single"), *pair = cJSON_AddArrayToObject(pp, "pair");
    cJSON_AddItemToArray(single, template_piece("SpecialToken", bos, 0));
    cJSON_AddItemToArray(single, template_piece("Sequence", "A", 0));
    cJSON_AddItemToArray(pair, template_piece("SpecialToken", bos, 0));
    cJSON_AddItemToArray(pair, template_piece("Sequence", "A", 0));
    cJSON_AddItemToArray(pair, template_piece("SpecialToken", bos, 1));
    cJSON_AddItemToArray(pair, template_piece("Sequence", "B", 1));
    cJSON *specials = cJSON_AddObjectToObject(pp, "special_tokens"), *b = cJSON_AddObjectToObject(specials, bos);
    cJSON_AddStringToObject(b, "id", bos);
    cJSON_AddItemToObject(b, "ids", cJSON_CreateIntArray(&bos_id, 1));
    cJSON_AddItemToObject(b, "tokens", cJSON_CreateStringArray(&bos, 1));
    return pp;
}

static cJSON *model_json(const bpe_trainer *t) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddNullToObject(m, "dropout");
    cJSON_AddNullToObject(m, "unk_token");
    cJSON_AddNullToObject(m, "continuing_subword_prefix");
    cJSON_AddNullToObject(m, "end_of_word_suffix");
    cJSON_AddBoolToObject(m, "fuse_unk", 0);
    cJSON_AddBoolToObject(m, "byte_fallback", 0);
    cJSON_AddBoolToObject(m, "ignore_merges", 0);
    cJSON *vocab = cJSON_AddObjectToObject(m, "vocab"), *merges = cJSON_AddArrayToObject(m, "merges");
    bool ok = vocab && merges;
    for (int id = 0; ok && id < t->tok.n; id++) {
        char *s = bytelevel_text(strtab_str(&t->tok, id), t->tok.len[id]);
        ok = s && cJSON_AddNumberToObject(vocab, s, id);
        free(s);
    }
    for (int i = 0; ok && i + 1 < t->merges.n; i += 2) {
        // "left right": byte-level text never holds a space (space is 'Ġ').
        int a = t->merges.v[i], b = t->merges.v[i + 1];
        char *sa = bytelevel_text(strtab_str(&t->tok, a), t->tok.len[a]);
        char *sb = bytelevel_text(strtab_str(&t->tok, b), t->tok.len[b]);
        char *both = sa && sb ? malloc(strlen(sa) + strlen(sb) + 2) : NULL;
        if (both) sprintf(both, "%s %s", sa, sb);
        ok = both && cJSON_AddItemToArray(merges, cJSON_CreateString(both));
        free(sa);
        free(sb);
        free(both);
    }
    if (!ok) {
        cJSON_Delete(m);
        return NULL;
    }
    return m;
}

static cJSON *tokenizer_json(const bpe_trainer *t, const cJSON *pre) {
    int first = t->tok.n; // added tokens follow the BPE tokens
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "version", "1.0");
    cJSON_AddNullToObject(j, "truncation");
    cJSON_AddNullToObject(j, "padding");
    cJSON *added = cJSON_AddArrayToObject(j, "added_tokens");
    for (int k = 0; k < TOKENIZER_TRAIN_N_ADDED; k++) cJSON_AddItemToArray(added, added_json(first + k, &ADDED[k]));
    cJSON_AddItemToObject(j, "normalizer", cJSON_Parse(NFC_NORMALIZER));
    cJSON_AddItemToObject(j, "pre_tokenizer", cJSON_Duplicate(pre, 1));
    cJSON_AddItemToObject(j, "post_processor", post_processor_json(first + ADDED_BOS));
    cJSON_AddItemToObject(j, "decoder", cJSON_Parse(BYTELEVEL_DECODER));
    cJSON *model = model_json(t);
    if (!model) {
        cJSON_Delete(j);
        return NULL;
    }
    cJSON_AddItemToObject(j, "model", model);
    return j;
}

static cJSON *config_json(void) {
    cJSON *c = tokenizer_config_json(ADDED[ADDED_BOS].content, ADDED[ADDED_EOS].content);
    cJSON_AddBoolToObject(c, "legacy", 1);
    cJSON_AddStringToObject(c, "chat_template", R1_CHAT_TEMPLATE);
    return c;
}

static ds_status write_json(const char *dir, const char *name, const cJSON *j, ds_error *err) {
    char *text = j ? cJSON_Print(j) : NULL, *path = file_join(dir, name);
    ds_status st = DS_OK;
    if (!text || !path) st = oom(err);
    else {
        size_t n = strlen(text);
        text[n] = '\n'; // cJSON's text ends without one; files do better with it
        st = file_write_atomic(path, text, n + 1, err);
    }
    free(text);
    free(path);
    return st;
}

// Both files or, as far as it can be helped, neither: a tokenizer.json whose companion failed
// to be written is removed again.
static ds_status write_files(const char *dir, const bpe_trainer *t, const cJSON *pre, ds_error *err) {
    ds_status st = file_mkdirs(dir, err);
    if (st) return st;
    cJSON *tj = tokenizer_json(t, pre), *cj = config_json();
    if (!tj || !cj) st = oom(err);
    if (!st) st = write_json(dir, "tokenizer.json", tj, err);
    if (!st) {
        st = write_json(dir, "tokenizer_config.json", cj, err);
        char *path = st ? file_join(dir, "tokenizer.json") : NULL;
        if (path) unlink(path);
        free(path);
    }
    cJSON_Delete(tj);
    cJSON_Delete(cj);
    return st;
}

// Finds out before the (possibly long) training whether dir can be written: it, or the
// nearest folder above it that exists, must be a writable folder.
static ds_status out_dir_check(const char *dir, ds_error *err) {
    char *d = strdup(dir[0] ? dir : ".");
    if (!d) return oom(err);
    ds_status st = DS_OK;
    for (;;) {
        struct stat sb;
        if (stat(d, &sb) == 0) {
            if (!S_ISDIR(sb.st_mode)) st = ds_error_set(err, DS_ERR_IO, "%s: not a folder (output folder %s)", d, dir);
            else if (access(d, W_OK | X_OK) != 0)
                st = ds_error_set(err, DS_ERR_IO, "%s: cannot write there: %s", d, strerror(errno));
            break;
        }
        if (errno != ENOENT && errno != ENOTDIR) {
            st = ds_error_set(err, DS_ERR_IO, "%s: %s (output folder %s)", d, strerror(errno), dir);
            break;
        }
        size_t n = strlen(d);
        while (n > 1 && d[n - 1] == '/') d[--n] = 0;
        char *slash = strrchr(d, '/');
        if (!slash) strcpy(d, ".");
        else if (slash == d) d[1] = 0;
        else *slash = 0;
    }
    free(d);
    return st;
}

// ---- the whole run ----

static ds_status train_corpus(const tokenizer_train_params *p, const cJSON *pre, corpus *c, tokenizer_train_stats *s,
                              ds_error *err) {
    ds_status st = corpus_init(c, p, pre, err);
    for (int i = 0; !st && i < p->n_files && !c->full; i++) st = read_file(c, p->files[i], err);
    if (!st && c->words.n == 0)
        st = ds_error_set(err, DS_ERR_FORMAT, "%s%s: no text to train on", p->files[0], p->n_files > 1 ? " ..." : "");
    s->text_bytes = c->text_bytes;
    s->truncated = c->full;
    s->n_words = c->n_words;
    s->n_distinct = c->words.n;
    return st;
}

ds_status tokenizer_train(const char *dir, const tokenizer_train_params *p, tokenizer_train_stats *stats,
                          ds_error *err) {
    tokenizer_train_stats local;
    tokenizer_train_stats *s = stats ? stats : &local;
    *s = (tokenizer_train_stats){.bos_id = -1, .eos_id = -1};
    if (p->n_files < 1 || !p->files) return ds_error_set(err, DS_ERR_ARG, "tokenizer-train: no data files given");
    if (p->vocab_size < TOKENIZER_TRAIN_MIN_VOCAB || p->vocab_size > (1 << 24))
        return ds_error_set(err, DS_ERR_ARG,
                            "vocabulary size %d is out of range: the 256 byte tokens and the %d added tokens need at "
                            "least %d (at most %d)", p->vocab_size, TOKENIZER_TRAIN_N_ADDED, TOKENIZER_TRAIN_MIN_VOCAB,
                            1 << 24);
    ds_status st = out_dir_check(dir, err);
    if (st) return st;
    double t0 = now_s();
    const char *pre_text = tokenizer_gguf_pre_json("qwen2"); // the very JSON GGUF export recognises
    cJSON *pre = pre_text ? cJSON_Parse(pre_text) : NULL;
    if (!pre) return oom(err);
    corpus c;
    st = train_corpus(p, pre, &c, s, err);
    if (!st && p->progress)
        fprintf(stderr, PROG "%.2f MB of text: %lld words, %d distinct (%.1f s)\n", s->text_bytes / 1e6, s->n_words,
                s->n_distinct, now_s() - t0);
    bpe_trainer t = {0};
    if (!st) st = trainer_init(&t, &c, err);
    corpus_free(&c);
    if (!st) st = trainer_run(&t, p, p->vocab_size - TOKENIZER_TRAIN_N_ADDED, &s->stop, err);
    s->seconds = now_s() - t0;
    if (!st && p->cancel && *p->cancel) st = ds_error_set(err, DS_ERR_INTERRUPTED, "interrupted");
    if (!st) st = write_files(dir, &t, pre, err);
    if (!st) {
        s->n_merges = t.merges.n / 2;
        s->vocab_size = t.tok.n + TOKENIZER_TRAIN_N_ADDED;
        s->bos_id = t.tok.n + ADDED_BOS;
        s->eos_id = t.tok.n + ADDED_EOS;
    }
    trainer_free(&t);
    cJSON_Delete(pre);
    return st;
}
