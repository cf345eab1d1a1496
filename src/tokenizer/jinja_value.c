// Values of the Jinja subset and their text forms: the per-render arena, lists and
// ordered dicts, truthiness and equality, and how values print ({{ }}, tojson). Where
// Python's Jinja and @huggingface/jinja disagree on output (none prints as "", booleans
// as "true"/"false", floats as JavaScript writes them), this follows @huggingface/jinja,
// the implementation the fixtures are generated with.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tokenizer/jinja_internal.h"

// ---- arena ----
struct jinja_block {
    jinja_block *next;
    size_t used, cap;
    max_align_t data[];
};

void *jinja_arena_alloc(jinja_arena *a, size_t n) {
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (n == 0) n = sizeof(max_align_t);
    jinja_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > (64u << 10) ? n : (64u << 10);
        if (a->total + cap > JINJA_MAX_ARENA) return NULL;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
        a->total += cap;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

void jinja_arena_free(jinja_arena *a) {
    while (a->head) {
        jinja_block *n = a->head->next;
        free(a->head);
        a->head = n;
    }
    a->total = 0;
}

// ---- values ----
jv jv_cstr(const char *s) { return (jv){.t = JV_STR, .u.str = {s, strlen(s)}}; }
jv jv_int(int64_t i) { return (jv){.t = JV_INT, .u.i = i}; }
jv jv_bool(bool b) { return (jv){.t = JV_BOOL, .u.b = b}; }
jv jv_undef(void) { return (jv){.t = JV_UNDEF}; }

jv jv_str(jinja_ctx *c, const char *s, size_t n) {
    char *p = jinja_arena_alloc(&c->arena, n + 1);
    if (!p) return jv_undef();  // callers check t == JV_STR
    if (n) memcpy(p, s, n);
    return (jv){.t = JV_STR, .u.str = {p, n}};
}

jlist *jlist_new(jinja_ctx *c) { return jinja_arena_alloc(&c->arena, sizeof(jlist)); }

bool jlist_push(jinja_ctx *c, jlist *l, jv v) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        jv *nv = jinja_arena_alloc(&c->arena, cap * sizeof *nv);
        if (!nv) return false;
        if (l->n) memcpy(nv, l->items, l->n * sizeof *nv);
        l->items = nv;
        l->cap = cap;
    }
    l->items[l->n++] = v;
    return true;
}

jdict *jdict_new(jinja_ctx *c) { return jinja_arena_alloc(&c->arena, sizeof(jdict)); }

jv *jdict_get(const jdict *d, const char *k, size_t kn) {
    for (size_t i = 0; i < d->n; i++)
        if (d->klen[i] == kn && !memcmp(d->keys[i], k, kn)) return &d->vals[i];
    return NULL;
}

bool jdict_set(jinja_ctx *c, jdict *d, const char *k, size_t kn, jv v) {
    jv *slot = jdict_get(d, k, kn);
    if (slot) {
        *slot = v;
        return true;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        const char **nk = jinja_arena_alloc(&c->arena, cap * sizeof *nk);
        size_t *nl = jinja_arena_alloc(&c->arena, cap * sizeof *nl);
        jv *nv = jinja_arena_alloc(&c->arena, cap * sizeof *nv);
        if (!nk || !nl || !nv) return false;
        if (d->n) {
            memcpy(nk, d->keys, d->n * sizeof *nk);
            memcpy(nl, d->klen, d->n * sizeof *nl);
            memcpy(nv, d->vals, d->n * sizeof *nv);
        }
        d->keys = nk;
        d->klen = nl;
        d->vals = nv;
        d->cap = cap;
    }
    d->keys[d->n] = k;
    d->klen[d->n] = kn;
    d->vals[d->n++] = v;
    return true;
}

bool jv_truthy(jv v) {
    switch (v.t) {
    case JV_UNDEF: case JV_NONE: return false;
    case JV_BOOL: return v.u.b;
    case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0 && !isnan(v.u.f);
    case JV_STR: return v.u.str.n > 0;
    case JV_LIST: return v.u.list->n > 0;
    case JV_DICT: return v.u.dict->n > 0;
    default: return true;
    }
}

bool jv_is_num(jv v) { return v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL; }
double jv_num(jv v) { return v.t == JV_FLOAT ? v.u.f : v.t == JV_INT ? (double)v.u.i : v.u.b; }

// Python equality; none and undefined compare equal, as JavaScript's null == undefined.
bool jv_equal(jv a, jv b) {
    if ((a.t == JV_NONE || a.t == JV_UNDEF) && (b.t == JV_NONE || b.t == JV_UNDEF)) return true;
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a.t != JV_FLOAT && b.t != JV_FLOAT) return (a.t == JV_INT ? a.u.i : a.u.b) == (b.t == JV_INT ? b.u.i : b.u.b);
        return jv_num(a) == jv_num(b);
    }
    if (a.t != b.t) return false;
    switch (a.t) {
    case JV_STR: return a.u.str.n == b.u.str.n && !memcmp(a.u.str.s, b.u.str.s, a.u.str.n);
    case JV_LIST:
        if (a.u.list->n != b.u.list->n) return false;
        for (size_t i = 0; i < a.u.list->n; i++)
            if (!jv_equal(a.u.list->items[i], b.u.list->items[i])) return false;
        return true;
    case JV_DICT:
        if (a.u.dict->n != b.u.dict->n) return false;
        for (size_t i = 0; i < a.u.dict->n; i++) {
            jv *o = jdict_get(b.u.dict, a.u.dict->keys[i], a.u.dict->klen[i]);
            if (!o || !jv_equal(a.u.dict->vals[i], *o)) return false;
        }
        return true;
    default: return a.u.dict == b.u.dict;
    }
}

const char *jv_type_name(jv v) {
    static const char *const names[] = {"undefined", "none", "boolean", "integer", "float", "string",
                                        "list", "dict", "namespace", "function", "method", "macro"};
    return names[v.t];
}

// ---- buffers ----
void jbuf_put(jbuf *b, const char *s, size_t n) {
    if (b->fail || n == 0) return;
    if (b->n + n > JINJA_MAX_OUTPUT) {
        b->fail = true;
        b->n += n;  // tells the caller the limit, not memory, was hit
        return;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->fail = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void jbuf_putc(jbuf *b, char ch) { jbuf_put(b, &ch, 1); }

static void jbuf_printf(jbuf *b, const char *fmt, long long v) {
    char t[32];
    int k = snprintf(t, sizeof t, fmt, v);
    jbuf_put(b, t, (size_t)k);
}

// ---- numbers as JavaScript prints them ----
void jv_format_number(jbuf *b, double f) {
    if (isnan(f)) { jbuf_put(b, "NaN", 3); return; }
    if (isinf(f)) { jbuf_put(b, f < 0 ? "-Infinity" : "Infinity", f < 0 ? 9 : 8); return; }
    if (f == 0) { jbuf_putc(b, '0'); return; }
    char t[40];
    for (int p = 1; p <= 17; p++) {  // shortest digits that round-trip
        snprintf(t, sizeof t, "%.*e", p - 1, f);
        if (strtod(t, NULL) == f) break;
    }
    if (f < 0) jbuf_putc(b, '-');
    char d[24];
    int k = 0;
    const char *q = t + (t[0] == '-');
    for (; *q && *q != 'e'; q++)
        if (*q != '.') d[k++] = *q;
    while (k > 1 && d[k - 1] == '0') k--;
    int n = atoi(q + 1) + 1;  // position of the decimal point
    if (k <= n && n <= 21) {
        jbuf_put(b, d, (size_t)k);
        for (int i = k; i < n; i++) jbuf_putc(b, '0');
    } else if (0 < n && n <= 21) {
        jbuf_put(b, d, (size_t)n);
        jbuf_putc(b, '.');
        jbuf_put(b, d + n, (size_t)(k - n));
    } else if (-6 < n && n <= 0) {
        jbuf_put(b, "0.", 2);
        for (int i = n; i < 0; i++) jbuf_putc(b, '0');
        jbuf_put(b, d, (size_t)k);
    } else {
        jbuf_putc(b, d[0]);
        if (k > 1) {
            jbuf_putc(b, '.');
            jbuf_put(b, d + 1, (size_t)(k - 1));
        }
        jbuf_printf(b, n - 1 >= 0 ? "e+%lld" : "e%lld", n - 1);
    }
}

// A float as @huggingface/jinja prints it: integral values keep one decimal ("3.0").
static void jv_format_float(jbuf *b, double f) {
    if (f == 0 && signbit(f)) jbuf_put(b, "-0.0", 4);
    else if (f == floor(f) && fabs(f) < 1e21) {
        char t[40];
        int k = snprintf(t, sizeof t, "%.1f", f);
        jbuf_put(b, t, (size_t)k);
    } else {
        jv_format_number(b, f);
    }
}

// ---- JSON ----
static void json_string(jbuf *b, const char *s, size_t n, bool ascii) {
    static const char hex[] = "0123456789abcdef";
    jbuf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc = ch == '"' ? '"' : ch == '\\' ? '\\' : ch == '\n' ? 'n' : ch == '\r' ? 'r' : ch == '\t' ? 't'
                 : ch == '\b' ? 'b' : ch == '\f' ? 'f' : 0;
        if (esc) {
            char e2[2] = {'\\', esc};
            jbuf_put(b, e2, 2);
        } else if (ch < 0x20 || (ascii && ch >= 0x7f)) {
            unsigned cp = ch;
            if (ch >= 0xC0) {  // decode one UTF-8 sequence
                int extra = ch >= 0xF0 ? 3 : ch >= 0xE0 ? 2 : 1;
                cp = ch & (0x3Fu >> extra);
                for (int k = 0; k < extra && i + 1 < n; k++) cp = (cp << 6) | ((unsigned char)s[++i] & 0x3Fu);
            }
            unsigned units[2] = {cp, 0};
            int nu = 1;
            if (cp >= 0x10000) {
                units[0] = 0xD800 + ((cp - 0x10000) >> 10);
                units[1] = 0xDC00 + ((cp - 0x10000) & 0x3FF);
                nu = 2;
            }
            for (int u = 0; u < nu; u++) {
                char e6[6] = {'\\', 'u', hex[(units[u] >> 12) & 15], hex[(units[u] >> 8) & 15],
                              hex[(units[u] >> 4) & 15], hex[units[u] & 15]};
                jbuf_put(b, e6, 6);
            }
        } else {
            jbuf_putc(b, (char)ch);
        }
    }
    jbuf_putc(b, '"');
}

static void json_pad(jbuf *b, int indent, int depth) {
    jbuf_putc(b, '\n');
    for (int k = 0; k < indent * depth; k++) jbuf_putc(b, ' ');
}

static int key_cmp(const void *x, const void *y) {
    const size_t *a = x, *c = y;
    return a[1] < c[1] ? -1 : a[1] > c[1];  // [1] holds the rank computed below
}

// undef_null: undefined prints as null (tojson) or as "undefined" (a list printed by {{ }}).
static bool json_value(jbuf *b, jv v, int indent, int depth, bool ascii, bool sort, bool undef_null) {
    if (depth > JINJA_MAX_DEPTH) return false;
    switch (v.t) {
    case JV_UNDEF: jbuf_put(b, undef_null ? "null" : "undefined", undef_null ? 4 : 9); return true;
    case JV_NONE: jbuf_put(b, "null", 4); return true;
    case JV_BOOL: jbuf_put(b, v.u.b ? "true" : "false", v.u.b ? 4 : 5); return true;
    case JV_INT: jbuf_printf(b, "%lld", (long long)v.u.i); return true;
    case JV_FLOAT:
        if (isnan(v.u.f) || isinf(v.u.f)) jbuf_put(b, "null", 4);
        else jv_format_number(b, v.u.f);
        return true;
    case JV_STR: json_string(b, v.u.str.s, v.u.str.n, ascii); return true;
    case JV_LIST: {
        size_t n = v.u.list->n;
        jbuf_putc(b, '[');
        for (size_t k = 0; k < n; k++) {
            if (k) jbuf_put(b, indent ? "," : ", ", indent ? 1 : 2);
            if (indent) json_pad(b, indent, depth + 1);
            if (!json_value(b, v.u.list->items[k], indent, depth + 1, ascii, sort, undef_null)) return false;
        }
        if (indent && n) json_pad(b, indent, depth);
        jbuf_putc(b, ']');
        return true;
    }
    case JV_DICT: case JV_NS: {
        const jdict *d = v.u.dict;
        size_t *order = malloc((d->n + 1) * 2 * sizeof *order);
        if (!order) return false;
        for (size_t k = 0; k < d->n; k++) order[2 * k] = k, order[2 * k + 1] = k;
        if (sort) {  // rank keys by byte order, then sort the (index, rank) pairs
            for (size_t k = 0; k < d->n; k++) {
                size_t r = 0;
                for (size_t j = 0; j < d->n; j++) {
                    size_t m = d->klen[j] < d->klen[k] ? d->klen[j] : d->klen[k];
                    int c = memcmp(d->keys[j], d->keys[k], m);
                    if (c < 0 || (c == 0 && (d->klen[j] < d->klen[k] || (d->klen[j] == d->klen[k] && j < k)))) r++;
                }
                order[2 * k + 1] = r;
            }
            qsort(order, d->n, 2 * sizeof *order, key_cmp);
        }
        jbuf_putc(b, '{');
        bool ok = true;
        for (size_t k = 0; k < d->n && ok; k++) {
            size_t i = order[2 * k];
            if (k) jbuf_put(b, indent ? "," : ", ", indent ? 1 : 2);
            if (indent) json_pad(b, indent, depth + 1);
            json_string(b, d->keys[i], d->klen[i], ascii);
            jbuf_put(b, ": ", 2);
            ok = json_value(b, d->vals[i], indent, depth + 1, ascii, sort, undef_null);
        }
        free(order);
        if (indent && d->n) json_pad(b, indent, depth);
        jbuf_putc(b, '}');
        return ok;
    }
    default: return false;
    }
}

bool jv_tojson(jbuf *b, jv v, int indent, int depth, bool ensure_ascii, bool sort_keys) {
    return json_value(b, v, indent, depth, ensure_ascii, sort_keys, true);
}

bool jv_render(jbuf *b, jv v) {
    switch (v.t) {
    case JV_UNDEF: case JV_NONE: return true;
    case JV_BOOL: jbuf_put(b, v.u.b ? "true" : "false", v.u.b ? 4 : 5); return true;
    case JV_INT: jbuf_printf(b, "%lld", (long long)v.u.i); return true;
    case JV_FLOAT: jv_format_float(b, v.u.f); return true;
    case JV_STR: jbuf_put(b, v.u.str.s, v.u.str.n); return true;
    case JV_LIST: case JV_DICT: case JV_NS: return json_value(b, v, 0, 0, false, false, false);
    default: return false;
    }
}

