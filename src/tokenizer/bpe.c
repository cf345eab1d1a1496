// Byte-level BPE: the vocab and merge maps, the GPT-2 byte alphabet, and the per-word merge
// loop. Encoding time is spent here, so the loop avoids allocation (scratch in bpe_work)
// and uses a heap over candidate pairs so a 10 KB word without spaces stays O(n log n).
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"

// ---- buffers ----

bool tok_ints_push(tok_ints *a, int x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int *v = realloc(a->v, cap * sizeof *v);
        if (!v) return false;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return true;
}

bool tok_bytes_reserve(tok_bytes *b, size_t n) {
    if (b->n + n + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1) cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) return false;
    b->s = s;
    b->cap = cap;
    return true;
}

bool tok_bytes_append(tok_bytes *b, const void *p, size_t n) {
    if (!tok_bytes_reserve(b, n)) return false;
    if (n) memcpy(b->s + b->n, p, n);
    b->n += n;
    b->s[b->n] = 0;
    return true;
}

// ---- maps ----

static uint32_t hash_bytes(const char *s, size_t n) { // FNV-1a
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static bool strmap_grow(tok_strmap *m) {
    uint32_t cap = m->slots ? (m->mask + 1) * 2 : 1024;
    tok_strmap_slot *s = malloc(cap * sizeof *s);
    if (!s) return false;
    for (uint32_t i = 0; i < cap; i++) s[i].val = -1;
    for (uint32_t i = 0; m->slots && i <= m->mask; i++) {
        tok_strmap_slot *o = &m->slots[i];
        if (o->val < 0) continue;
        uint32_t j = hash_bytes(o->key, o->len) & (cap - 1);
        while (s[j].val >= 0) j = (j + 1) & (cap - 1);
        s[j] = *o;
    }
    free(m->slots);
    m->slots = s;
    m->mask = cap - 1;
    return true;
}

bool tok_strmap_put(tok_strmap *m, const char *key, size_t len, int val) {
    if ((!m->slots || (m->n + 1) * 2 > m->mask + 1) && !strmap_grow(m)) return false;
    uint32_t j = hash_bytes(key, len) & m->mask;
    while (m->slots[j].val >= 0) {
        tok_strmap_slot *s = &m->slots[j];
        if (s->len == len && memcmp(s->key, key, len) == 0) {
            s->val = val;
            return true;
        }
        j = (j + 1) & m->mask;
    }
    m->slots[j] = (tok_strmap_slot){key, (uint32_t)len, val};
    m->n++;
    return true;
}

int tok_strmap_get(const tok_strmap *m, const char *key, size_t len) {
    if (!m->slots) return -1;
    uint32_t j = hash_bytes(key, len) & m->mask;
    while (m->slots[j].val >= 0) {
        const tok_strmap_slot *s = &m->slots[j];
        if (s->len == len && memcmp(s->key, key, len) == 0) return s->val;
        j = (j + 1) & m->mask;
    }
    return -1;
}

void tok_strmap_free(tok_strmap *m) {
    free(m->slots);
    *m = (tok_strmap){0};
}

static uint32_t hash_pair(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (uint32_t)k;
}

static bool pairmap_grow(tok_pairmap *m) {
    uint32_t cap = m->slots ? (m->mask + 1) * 2 : 1024;
    tok_pairmap_slot *s = malloc(cap * sizeof *s);
    if (!s) return false;
    for (uint32_t i = 0; i < cap; i++) s[i].key = UINT64_MAX;
    for (uint32_t i = 0; m->slots && i <= m->mask; i++) {
        if (m->slots[i].key == UINT64_MAX) continue;
        uint32_t j = hash_pair(m->slots[i].key) & (cap - 1);
        while (s[j].key != UINT64_MAX) j = (j + 1) & (cap - 1);
        s[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = s;
    m->mask = cap - 1;
    return true;
}

static const tok_pairmap_slot *pairmap_get(const tok_pairmap *m, int a, int b) {
    if (!m->slots) return NULL;
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t j = hash_pair(k) & m->mask;
    while (m->slots[j].key != UINT64_MAX) {
        if (m->slots[j].key == k) return &m->slots[j];
        j = (j + 1) & m->mask;
    }
    return NULL;
}

bool bpe_merge_add(bpe_model *m, const char *a, size_t alen, const char *b, size_t blen, int rank, int *which) {
    int ia = tok_strmap_get(&m->vocab, a, alen), ib = tok_strmap_get(&m->vocab, b, blen);
    if (ia < 0 || ib < 0) {
        *which = ia < 0 ? 0 : 1;
        return false;
    }
    char stack[256], *ab = alen + blen <= sizeof stack ? stack : malloc(alen + blen);
    if (!ab) {
        *which = 3;
        return false;
    }
    memcpy(ab, a, alen);
    memcpy(ab + alen, b, blen);
    int iab = tok_strmap_get(&m->vocab, ab, alen + blen);
    if (ab != stack) free(ab);
    if (iab < 0) {
        *which = 2;
        return false;
    }
    if ((m->merges.n + 1) * 2 > (m->merges.slots ? m->merges.mask + 1 : 0) && !pairmap_grow(&m->merges)) {
        *which = 3;
        return false;
    }
    uint64_t k = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
    uint32_t j = hash_pair(k) & m->merges.mask;
    while (m->merges.slots[j].key != UINT64_MAX) {
        if (m->merges.slots[j].key == k) return true; // duplicate merge: HF keeps the first rank
        j = (j + 1) & m->merges.mask;
    }
    m->merges.slots[j] = (tok_pairmap_slot){k, rank, iab};
    m->merges.n++;
    return true;
}

void bpe_model_free(bpe_model *m) {
    tok_strmap_free(&m->vocab);
    free(m->merges.slots);
    m->merges = (tok_pairmap){0};
}

// ---- byte-level alphabet and UTF-8 ----

int bytelevel_char_of_byte(int b) {
    // Printable ranges '!'..'~', '¡'..'¬', '®'..'ÿ' map to themselves; the other 68 bytes
    // take U+0100.. in byte order.
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return b;
    int n = 0;
    for (int i = 0; i < b; i++)
        if (!((i >= 0x21 && i <= 0x7E) || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF))) n++;
    return 256 + n;
}

int bytelevel_byte_of_char(uint32_t cp) {
    static int table[324];
    static bool ready; // idempotent fill of a constant table: racing fills write equal values
    if (!ready) {
        for (int i = 0; i < 324; i++) table[i] = -1;
        for (int b = 0; b < 256; b++) table[bytelevel_char_of_byte(b)] = b;
        ready = true;
    }
    return cp < 324 ? table[cp] : -1;
}

int tok_utf8_put(char *out, uint32_t cp) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | cp >> 6);
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

int tok_utf8_get(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    if (n == 0) return 0;
    if (u[0] < 0x80) {
        *cp = u[0];
        return 1;
    }
    int len;
    uint32_t c, min;
    if (u[0] >= 0xC2 && u[0] <= 0xDF) len = 2, c = u[0] & 0x1F, min = 0x80;
    else if (u[0] >= 0xE0 && u[0] <= 0xEF) len = 3, c = u[0] & 0x0F, min = 0x800;
    else if (u[0] >= 0xF0 && u[0] <= 0xF4) len = 4, c = u[0] & 0x07, min = 0x10000;
    else return 0;
    if (n < (size_t)len) return 0;
    for (int i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) return 0;
        c = c << 6 | (u[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    *cp = c;
    return len;
}

// ---- the merge loop ----

typedef struct {
    int id, prev, next; // next/prev index of the live neighbours, -1 at the ends
} bpe_sym;

typedef struct {
    int32_t rank, pos, left, right; // pair (syms[pos], its next) with these ids when pushed
} bpe_cand;

static bool cand_less(const bpe_cand *a, const bpe_cand *b) {
    // Lowest rank first; equal ranks merge leftmost first, as HF does.
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(bpe_cand *h, size_t *n, bpe_cand c) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static bpe_cand heap_pop(bpe_cand *h, size_t *n) {
    bpe_cand top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const bpe_cand *best = &last;
        if (l < *n && cand_less(&h[l], best)) m = l, best = &h[l];
        if (r < *n && cand_less(&h[r], best)) m = r;
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (*n) h[i] = last;
    return top;
}

static bool work_reserve(void **p, size_t *cap, size_t n, size_t size) {
    if (n <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < n) c *= 2;
    void *q = realloc(*p, c * size);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

static void push_pair(const bpe_model *m, bpe_sym *s, int pos, bpe_cand *heap, size_t *nh) {
    int nx = s[pos].next;
    if (nx < 0) return;
    const tok_pairmap_slot *mg = pairmap_get(&m->merges, s[pos].id, s[nx].id);
    if (mg) heap_push(heap, nh, (bpe_cand){mg->rank, pos, s[pos].id, s[nx].id});
}

// Initial symbols of a non-byte-level word: one per UTF-8 char, unknown chars through
// byte_fallback or unk (fused when fuse_unk), else dropped as HF does without an unk token.
static size_t word_symbols_chars(const bpe_model *m, const char *w, size_t len, bpe_sym *s) {
    size_t n = 0;
    bool prev_unk = false;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int cl = tok_utf8_get(w + i, len - i, &cp);
        if (cl == 0) cl = 1;
        int id = tok_strmap_get(&m->vocab, w + i, (size_t)cl);
        if (id >= 0) {
            s[n++].id = id;
            prev_unk = false;
        } else if (m->byte_fallback && m->byte_fallback_id[(unsigned char)w[i]] >= 0) {
            for (int k = 0; k < cl; k++) s[n++].id = m->byte_fallback_id[(unsigned char)w[i + k]];
            prev_unk = false;
        } else if (m->unk_id >= 0) {
            if (!(m->fuse_unk && prev_unk)) s[n++].id = m->unk_id;
            prev_unk = true;
        }
        i += (size_t)cl;
    }
    return n;
}

bool bpe_word_encode(const bpe_model *m, const char *w, size_t len, bpe_work *work, tok_ints *out) {
    if (len == 0) return true;
    if (m->ignore_merges) {
        const char *key = w;
        size_t klen = len;
        if (m->byte_level) {
            work->mapped.n = 0;
            if (!tok_bytes_reserve(&work->mapped, len * 2)) return false;
            for (size_t i = 0; i < len; i++)
                work->mapped.n += (size_t)tok_utf8_put(work->mapped.s + work->mapped.n,
                                                       (uint32_t)bytelevel_char_of_byte((unsigned char)w[i]));
            key = work->mapped.s;
            klen = work->mapped.n;
        }
        int id = tok_strmap_get(&m->vocab, key, klen);
        if (id >= 0) return tok_ints_push(out, id);
    }
    // A byte or char never yields more than one symbol per byte.
    if (!work_reserve(&work->syms, &work->syms_cap, len, sizeof(bpe_sym))) return false;
    bpe_sym *s = work->syms;
    size_t n = 0;
    if (m->byte_level) {
        for (size_t i = 0; i < len; i++) {
            int id = m->byte_id[(unsigned char)w[i]];
            if (id >= 0) s[n++].id = id; // a byte missing from the alphabet is dropped (no unk)
            else if (m->unk_id >= 0) s[n++].id = m->unk_id;
        }
    } else {
        n = word_symbols_chars(m, w, len, s);
    }
    if (n == 0) return true;
    for (size_t i = 0; i < n; i++) {
        s[i].prev = (int)i - 1;
        s[i].next = i + 1 < n ? (int)i + 1 : -1;
    }
    if (n > 1) {
        // Each merge kills one symbol and pushes at most two pairs: n + 2n entries suffice.
        if (!work_reserve(&work->heap, &work->heap_cap, 3 * n, sizeof(bpe_cand))) return false;
        bpe_cand *heap = work->heap;
        size_t nh = 0;
        for (size_t i = 0; i + 1 < n; i++) push_pair(m, s, (int)i, heap, &nh);
        while (nh) {
            bpe_cand c = heap_pop(heap, &nh);
            int nx = s[c.pos].next;
            // Stale entries: the left symbol was merged away or changed, or its right
            // neighbour changed since the pair was pushed.
            if (s[c.pos].id != c.left || nx < 0 || s[nx].id != c.right) continue;
            const tok_pairmap_slot *mg = pairmap_get(&m->merges, c.left, c.right);
            s[c.pos].id = mg->id;
            s[c.pos].next = s[nx].next;
            if (s[nx].next >= 0) s[s[nx].next].prev = c.pos;
            s[nx].id = -1;
            if (s[c.pos].prev >= 0) push_pair(m, s, s[c.pos].prev, heap, &nh);
            push_pair(m, s, c.pos, heap, &nh);
        }
    }
    for (int i = 0; i >= 0; i = s[i].next)
        if (!tok_ints_push(out, s[i].id)) return false;
    return true;
}

void bpe_work_free(bpe_work *w) {
    free(w->syms);
    free(w->heap);
    free(w->mapped.s);
    *w = (bpe_work){0};
}
