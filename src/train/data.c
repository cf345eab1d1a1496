#include "train/data.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/fileutil.h"

// ---- token lists -------------------------------------------------------------------------

typedef struct {
    int32_t *v;
    int64_t n, cap;
} i32_list;

static int i32_push(i32_list *l, const int *ids, int64_t n) {
    if (l->n + n > l->cap) {
        int64_t cap = l->cap ? l->cap : 4096;
        while (cap < l->n + n) cap *= 2;
        int32_t *p = realloc(l->v, (size_t)cap * sizeof *p);
        if (!p) return 0;
        l->v = p;
        l->cap = cap;
    }
    for (int64_t i = 0; i < n; i++) l->v[l->n + i] = ids[i];
    l->n += n;
    return 1;
}

typedef struct {
    int64_t *v;
    int64_t n, cap;
} i64_list;

static int i64_push(i64_list *l, int64_t x) {
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 256;
        int64_t *p = realloc(l->v, (size_t)cap * sizeof *p);
        if (!p) return 0;
        l->v = p;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return 1;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

// Identity of the vocabulary (every token's text), so a cache made with another tokenizer
// is never reused.
static uint64_t tokenizer_identity(const ds_tokenizer *t) {
    uint64_t h = 1469598103934665603ULL;
    int V = tokenizer_vocab_size(t);
    for (int i = 0; i < V; i++) {
        const char *s = tokenizer_token_text(t, i);
        h = fnv(h, s ? s : "", s ? strlen(s) + 1 : 1);
    }
    return h;
}

// ---- one file -> documents -------------------------------------------------------------

// Appends BOS + tokens(text) + EOS as one document.
static ds_status data_add_doc(const ds_tokenizer *t, const char *text, size_t len, i32_list *tok, i64_list *docs,
                              ds_error *err) {
    int *ids = NULL, n = 0;
    ds_status st = tokenizer_encode(t, text, len, false, &ids, &n, err);
    if (st) return st;
    int bos = tokenizer_bos_id(t), eos = tokenizer_eos_id(t);
    int ok = i64_push(docs, tok->n) && (bos < 0 || i32_push(tok, &bos, 1)) && i32_push(tok, ids, n) &&
             (eos < 0 || i32_push(tok, &eos, 1));
    free(ids);
    return ok ? DS_OK : ds_error_set(err, DS_ERR_OOM, "out of memory tokenising");
}

static ds_status data_tokenize_file(const char *path, const ds_tokenizer *t, i32_list *tok, i64_list *docs, ds_error *err) {
    char *text = NULL;
    size_t size = 0;
    ds_status st = file_read_all(path, &text, &size, err);
    if (st) return st;
    size_t n = strlen(path);
    if (n < 6 || strcmp(path + n - 6, ".jsonl") != 0) {
        st = data_add_doc(t, text, size, tok, docs, err);
        free(text);
        return st;
    }
    long line = 0;
    for (char *p = text, *end; st == DS_OK && p < text + size; p = end + 1) {
        end = memchr(p, '\n', (size_t)(text + size - p));
        if (!end) end = text + size;
        line++;
        const char *q = p;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
        if (q == end) continue; // blank line
        cJSON *o = cJSON_ParseWithLength(p, (size_t)(end - p));
        const cJSON *tx = o ? cJSON_GetObjectItemCaseSensitive(o, "text") : NULL;
        if (!cJSON_IsString(tx))
            st = ds_error_set(err, DS_ERR_FORMAT, "%s: line %ld: expected a JSON object with a string \"text\"", path, line);
        else
            st = data_add_doc(t, tx->valuestring, strlen(tx->valuestring), tok, docs, err);
        cJSON_Delete(o);
    }
    free(text);
    return st;
}

// ---- cache -------------------------------------------------------------------------------
// <key>.tok: "DSTOK1\0\0", u64 n_tokens, u64 n_docs, i32 tokens[n_tokens], i64 doc offsets[n_docs]
// (relative to the file's first token).

static char *data_cache_path(const char *cache_dir, const char *path, uint64_t tok_id) {
    struct stat sb;
    if (stat(path, &sb) != 0) return NULL;
    char *real = realpath(path, NULL);
    uint64_t h = fnv(1469598103934665603ULL, real ? real : path, strlen(real ? real : path));
    free(real);
    int64_t meta[3] = {(int64_t)sb.st_size, (int64_t)sb.st_mtim.tv_sec, (int64_t)sb.st_mtim.tv_nsec};
    h = fnv(h, meta, sizeof meta);
    h = fnv(h, &tok_id, sizeof tok_id);
    char name[40];
    snprintf(name, sizeof name, "%016llx.tok", (unsigned long long)h);
    return file_join(cache_dir, name);
}

// Appends a cached file's tokens and documents; 0 if absent or damaged (then re-tokenise).
static int data_cache_read(const char *cpath, i32_list *tok, i64_list *docs) {
    char *buf = NULL;
    size_t size = 0;
    ds_error ignored;
    if (file_read_all(cpath, &buf, &size, &ignored) != DS_OK) return 0;
    uint64_t nt = 0, nd = 0;
    int ok = size >= 24 && memcmp(buf, "DSTOK1\0\0", 8) == 0;
    if (ok) {
        memcpy(&nt, buf + 8, 8);
        memcpy(&nd, buf + 16, 8);
        ok = nt < ((uint64_t)1 << 40) && nd <= nt && size == 24 + nt * 4 + nd * 8;
    }
    int64_t base = tok->n;
    for (uint64_t i = 0; ok && i < nt; i++) {
        int32_t x;
        memcpy(&x, buf + 24 + i * 4, 4);
        ok = i32_push(tok, &(int){x}, 1);
    }
    for (uint64_t i = 0; ok && i < nd; i++) {
        int64_t at;
        memcpy(&at, buf + 24 + nt * 4 + i * 8, 8);
        ok = at >= 0 && (uint64_t)at < nt && i64_push(docs, base + at);
    }
    free(buf);
    return ok;
}

static void data_cache_write(const char *cpath, const i32_list *tok, int64_t t0, const i64_list *docs, int64_t d0) {
    uint64_t nt = (uint64_t)(tok->n - t0), nd = (uint64_t)(docs->n - d0);
    size_t bytes = 24 + nt * 4 + nd * 8;
    char *buf = malloc(bytes);
    if (!buf) return;
    memcpy(buf, "DSTOK1\0\0", 8);
    memcpy(buf + 8, &nt, 8);
    memcpy(buf + 16, &nd, 8);
    memcpy(buf + 24, tok->v + t0, nt * 4);
    for (uint64_t i = 0; i < nd; i++) {
        int64_t at = docs->v[d0 + (int64_t)i] - t0;
        memcpy(buf + 24 + nt * 4 + i * 8, &at, 8);
    }
    ds_error ignored;
    file_write_atomic(cpath, buf, bytes, &ignored); // a cache that cannot be written only costs time
    free(buf);
}

ds_status data_corpus_load(token_corpus *c, const char *const *files, int n_files, const ds_tokenizer *t,
                           const char *cache_dir, ds_error *err) {
    memset(c, 0, sizeof *c);
    i32_list tok = {0};
    i64_list docs = {0};
    uint64_t tok_id = tokenizer_identity(t);
    ds_status st = cache_dir ? file_mkdirs(cache_dir, err) : DS_OK;
    for (int i = 0; st == DS_OK && i < n_files; i++) {
        char *cpath = cache_dir ? data_cache_path(cache_dir, files[i], tok_id) : NULL;
        int64_t t0 = tok.n, d0 = docs.n;
        if (cpath && data_cache_read(cpath, &tok, &docs)) {
            fprintf(stderr, "data: %s: %lld tokens (cached)\n", files[i], (long long)(tok.n - t0));
        } else {
            tok.n = t0;
            docs.n = d0;
            st = data_tokenize_file(files[i], t, &tok, &docs, err);
            if (st == DS_OK) {
                fprintf(stderr, "data: %s: %lld tokens, %lld documents\n", files[i], (long long)(tok.n - t0),
                        (long long)(docs.n - d0));
                if (cpath) data_cache_write(cpath, &tok, t0, &docs, d0);
            }
        }
        free(cpath);
    }
    if (st == DS_OK && tok.n < 2) st = ds_error_set(err, DS_ERR_ARG, "--data: the files hold fewer than 2 tokens");
    if (st == DS_OK) {
        c->tokens = tok.v;
        c->n_tokens = tok.n;
        c->n_docs = docs.n;
        c->doc_start = docs.v;
    }
    if (st) {
        free(tok.v);
        free(docs.v);
        memset(c, 0, sizeof *c);
    }
    return st;
}

void data_corpus_free(token_corpus *c) {
    free(c->tokens);
    free(c->doc_start);
    memset(c, 0, sizeof *c);
}

// ---- loader --------------------------------------------------------------------------------

static void data_loader_shuffle(data_loader *d) {
    ds_rng r;
    ds_rng_seed(&r, d->seed, (uint64_t)d->epoch + 1);
    for (int64_t i = 0; i < d->n_train; i++) d->order[i] = i;
    for (int64_t i = d->n_train - 1; i > 0; i--) { // Fisher-Yates
        int64_t j = (int64_t)(((uint64_t)ds_rng_u32(&r) << 32 | ds_rng_u32(&r)) % (uint64_t)(i + 1));
        int64_t tmp = d->order[i];
        d->order[i] = d->order[j];
        d->order[j] = tmp;
    }
}

ds_status data_loader_init(data_loader *d, const token_corpus *c, int seq_len, float val_frac, uint64_t seed,
                           ds_error *err) {
    memset(d, 0, sizeof *d);
    if (seq_len < 1) return ds_error_set(err, DS_ERR_ARG, "--seq-len must be positive");
    if (!(val_frac >= 0.0f && val_frac < 1.0f)) return ds_error_set(err, DS_ERR_ARG, "validation fraction must be in [0, 1)");
    int64_t n = (c->n_tokens - 1) / seq_len;
    if (n < 1)
        return ds_error_set(err, DS_ERR_ARG, "the data holds %lld tokens: too few for one sequence of --seq-len %d",
                            (long long)c->n_tokens, seq_len);
    int64_t every = val_frac > 0 ? (int64_t)(1.0f / val_frac + 0.5f) : 0;
    d->c = c;
    d->seq_len = seq_len;
    d->seed = seed;
    d->train_idx = malloc((size_t)n * sizeof(int64_t));
    d->val_idx = malloc((size_t)n * sizeof(int64_t));
    d->order = malloc((size_t)n * sizeof(int64_t));
    if (!d->train_idx || !d->val_idx || !d->order) {
        data_loader_free(d);
        return ds_error_set(err, DS_ERR_OOM, "out of memory");
    }
    for (int64_t i = 0; i < n; i++) {
        if (every > 1 && i % every == every - 1) d->val_idx[d->n_val++] = i;
        else d->train_idx[d->n_train++] = i;
    }
    if (d->n_train == 0) {
        data_loader_free(d);
        return ds_error_set(err, DS_ERR_ARG, "no training sequences left after the validation split");
    }
    data_loader_shuffle(d);
    return DS_OK;
}

void data_loader_free(data_loader *d) {
    free(d->train_idx);
    free(d->val_idx);
    free(d->order);
    memset(d, 0, sizeof *d);
}

static void data_copy_seq(const data_loader *d, int64_t seq, int32_t *out) {
    memcpy(out, d->c->tokens + seq * d->seq_len, (size_t)(d->seq_len + 1) * sizeof *out);
}

void data_loader_next(data_loader *d, int32_t *out) {
    if (d->cursor >= d->n_train) data_loader_seek(d, d->epoch + 1, 0);
    data_copy_seq(d, d->train_idx[d->order[d->cursor++]], out);
}

void data_loader_val(const data_loader *d, int64_t i, int32_t *out) { data_copy_seq(d, d->val_idx[i], out); }

void data_loader_seek(data_loader *d, int epoch, int64_t cursor) {
    if (epoch != d->epoch) {
        d->epoch = epoch;
        data_loader_shuffle(d);
    }
    d->cursor = cursor < 0 ? 0 : cursor > d->n_train ? d->n_train : cursor;
}
