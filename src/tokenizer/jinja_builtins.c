// Filters, tests, methods and global functions of the Jinja subset. Behaviour follows
// @huggingface/jinja where it is the reference for the fixtures, Python's str methods
// otherwise (e.g. strip('\n') strips only newlines).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "tokenizer/jinja_internal.h"

// ---- helpers ----
static ds_status buf_result(jinja_ctx *c, int line, jbuf *t, jv *out) {
    *out = jv_str(c, t->p ? t->p : "", t->n);
    bool fail = t->fail;
    free(t->p);
    return out->t == JV_STR && !fail ? DS_OK : jinja_oom(c, line);
}

// Argument `pos` or keyword `name`, else `def`.
static jv arg_get(const jargs *a, size_t pos, const char *name, jv def) {
    size_t npos = 0;
    for (size_t k = 0; k < a->n; k++) {
        if (a->kw && a->kw[k]) {
            if (name && !strcmp(a->kw[k], name)) return a->v[k];
        } else if (npos++ == pos) {
            return a->v[k];
        }
    }
    return def;
}

static size_t utf8_count(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

static size_t utf8_len(const char *s, size_t avail) {
    size_t e = 1;
    while (e < avail && ((unsigned char)s[e] & 0xC0) == 0x80) e++;
    return e;
}

// Is the code point at s one of `chars` (NULL: whitespace)? Returns its byte length or 0.
static size_t strip_match(const char *s, size_t avail, const jv *chars) {
    if (!chars) return jinja_space_len(s, avail);
    size_t e = utf8_len(s, avail);
    for (size_t i = 0; i < chars->u.str.n;) {
        size_t ce = utf8_len(chars->u.str.s + i, chars->u.str.n - i);
        if (ce == e && !memcmp(chars->u.str.s + i, s, e)) return e;
        i += ce;
    }
    return 0;
}

static jv str_strip(jv s, const jv *chars, bool left, bool right) {
    const char *p = s.u.str.s;
    size_t a = 0, b = s.u.str.n, k;
    while (left && a < b && (k = strip_match(p + a, b - a, chars)) > 0) a += k;
    while (right && b > a) {
        size_t st = b - 1;
        while (st > a && ((unsigned char)p[st] & 0xC0) == 0x80) st--;
        if (strip_match(p + st, b - st, chars) != b - st) break;
        b = st;
    }
    return (jv){.t = JV_STR, .u.str = {p + a, b - a}};
}

static ds_status str_case(jinja_ctx *c, int line, jv s, int mode, jv *out) {  // 0 lower 1 upper 2 capitalize 3 title
    char *p = jinja_arena_alloc(&c->arena, s.u.str.n + 1);
    if (!p) return jinja_oom(c, line);
    bool start = true;
    for (size_t i = 0; i < s.u.str.n; i++) {
        char ch = s.u.str.s[i];
        bool lower = ch >= 'a' && ch <= 'z', upper = ch >= 'A' && ch <= 'Z';
        bool up = mode == 1 || ((mode == 2 && i == 0) || (mode == 3 && start));
        bool down = mode == 0 || (mode == 3 && !start);
        if (up && lower) ch = (char)(ch - 32);
        else if (down && upper) ch = (char)(ch + 32);
        start = !(lower || upper || (ch >= '0' && ch <= '9') || ((unsigned char)ch >= 0x80));
        p[i] = ch;
    }
    *out = (jv){.t = JV_STR, .u.str = {p, s.u.str.n}};
    return DS_OK;
}

static ds_status str_replace(jinja_ctx *c, int line, jv s, jv from, jv to, int64_t count, jv *out) {
    if (from.t != JV_STR || to.t != JV_STR) return jinja_fail(c, line, DS_ERR_FORMAT, "replace() arguments must be strings");
    jbuf t = {0};
    const char *p = s.u.str.s, *end = p + s.u.str.n;
    for (int64_t done = 0; p <= end && (count < 0 || done < count); done++) {
        const char *hit;
        if (from.u.str.n == 0) {  // Python inserts between every code point
            jbuf_put(&t, to.u.str.s, to.u.str.n);
            if (p == end) { p = end + 1; break; }
            size_t e = utf8_len(p, (size_t)(end - p));
            jbuf_put(&t, p, e);
            p += e;
            continue;
        }
        hit = memmem(p, (size_t)(end - p), from.u.str.s, from.u.str.n);
        if (!hit) break;
        jbuf_put(&t, p, (size_t)(hit - p));
        jbuf_put(&t, to.u.str.s, to.u.str.n);
        p = hit + from.u.str.n;
    }
    if (p < end) jbuf_put(&t, p, (size_t)(end - p));
    return buf_result(c, line, &t, out);
}

// Python str.split / str.rsplit.
static ds_status str_split(jinja_ctx *c, int line, jv s, jv sep, int64_t maxsplit, bool from_right, jv *out) {
    jlist *l = jlist_new(c);
    if (!l) return jinja_oom(c, line);
    const char *p = s.u.str.s;
    size_t n = s.u.str.n;
    jv parts[2];
    int64_t splits = 0;
    if (sep.t == JV_STR) {
        if (sep.u.str.n == 0) return jinja_fail(c, line, DS_ERR_FORMAT, "split(): empty separator");
        // collect all pieces left to right, then merge the surplus on the proper side
        jlist *all = jlist_new(c);
        if (!all) return jinja_oom(c, line);
        size_t a = 0;
        for (;;) {
            const char *hit = memmem(p + a, n - a, sep.u.str.s, sep.u.str.n);
            size_t e = hit ? (size_t)(hit - p) : n;
            if (!jlist_push(c, all, (jv){.t = JV_STR, .u.str = {p + a, e - a}})) return jinja_oom(c, line);
            if (!hit) break;
            a = e + sep.u.str.n;
        }
        size_t total = all->n, keep = total;
        if (maxsplit >= 0 && (size_t)maxsplit + 1 < total) keep = (size_t)maxsplit + 1;
        size_t merged = total - keep + 1;  // pieces merged into one
        for (size_t k = 0; k < keep; k++) {
            size_t lo = from_right ? (k == 0 ? 0 : merged + k - 1) : k;
            size_t hi = from_right ? (k == 0 ? merged - 1 : lo) : (k + 1 == keep ? total - 1 : k);
            const char *st = all->items[lo].u.str.s;
            const char *en = all->items[hi].u.str.s + all->items[hi].u.str.n;
            if (!jlist_push(c, l, (jv){.t = JV_STR, .u.str = {st, (size_t)(en - st)}})) return jinja_oom(c, line);
        }
        (void)parts;
        (void)splits;
    } else {
        if (from_right && maxsplit >= 0) return jinja_fail(c, line, DS_ERR_FORMAT, "unsupported rsplit() without separator");
        size_t i = 0, k;
        while (i < n) {
            while (i < n && (k = jinja_space_len(p + i, n - i)) > 0) i += k;
            if (i >= n) break;
            size_t st = i;
            if (maxsplit >= 0 && splits >= maxsplit) {
                size_t e = n;
                while (e > st && (k = jinja_space_len(p + e - 1, 1)) > 0) e--;
                if (!jlist_push(c, l, (jv){.t = JV_STR, .u.str = {p + st, e - st}})) return jinja_oom(c, line);
                break;
            }
            while (i < n && jinja_space_len(p + i, n - i) == 0) i++;
            if (!jlist_push(c, l, (jv){.t = JV_STR, .u.str = {p + st, i - st}})) return jinja_oom(c, line);
            splits++;
        }
    }
    *out = (jv){.t = JV_LIST, .u.list = l};
    return DS_OK;
}

static bool str_affix(jv s, jv x, bool end) {
    if (x.t != JV_STR || x.u.str.n > s.u.str.n) return false;
    return !memcmp(s.u.str.s + (end ? s.u.str.n - x.u.str.n : 0), x.u.str.s, x.u.str.n);
}

static ds_status str_affix_any(jinja_ctx *c, int line, jv s, jv x, bool end, jv *out) {
    bool r = false;
    if (x.t == JV_STR) r = str_affix(s, x, end);
    else if (x.t == JV_LIST)
        for (size_t k = 0; k < x.u.list->n && !r; k++) r = str_affix(s, x.u.list->items[k], end);
    else return jinja_fail(c, line, DS_ERR_FORMAT, "%s() argument must be a string or a tuple of strings", end ? "endswith" : "startswith");
    *out = jv_bool(r);
    return DS_OK;
}

static ds_status join_list(jinja_ctx *c, int line, jv list, jv sep, jv *out) {
    jbuf t = {0};
    for (size_t k = 0; k < list.u.list->n; k++) {
        if (k && sep.t == JV_STR) jbuf_put(&t, sep.u.str.s, sep.u.str.n);
        if (!jv_render(&t, list.u.list->items[k])) {
            free(t.p);
            return jinja_fail(c, line, DS_ERR_FORMAT, "join(): cannot print a %s", jv_type_name(list.u.list->items[k]));
        }
    }
    return buf_result(c, line, &t, out);
}

static ds_status dict_items(jinja_ctx *c, int line, jv d, int what, jv *out) {  // 0 items 1 keys 2 values
    jlist *l = jlist_new(c);
    if (!l) return jinja_oom(c, line);
    for (size_t k = 0; k < d.u.dict->n; k++) {
        jv key = {.t = JV_STR, .u.str = {d.u.dict->keys[k], d.u.dict->klen[k]}}, item = key;
        if (what == 2) item = d.u.dict->vals[k];
        if (what == 0) {
            jlist *pair = jlist_new(c);
            if (!pair || !jlist_push(c, pair, key) || !jlist_push(c, pair, d.u.dict->vals[k])) return jinja_oom(c, line);
            item = (jv){.t = JV_LIST, .u.list = pair};
        }
        if (!jlist_push(c, l, item)) return jinja_oom(c, line);
    }
    *out = (jv){.t = JV_LIST, .u.list = l};
    return DS_OK;
}

// ---- methods ----
static const char *const str_methods[] = {"upper", "lower", "strip", "lstrip", "rstrip", "split", "rsplit",
                                          "startswith", "endswith", "replace", "title", "capitalize", "join"};
static const char *const dict_methods[] = {"get", "items", "keys", "values"};

bool jinja_has_method(jv self, const char *name) {
    if (self.t == JV_STR) {
        for (size_t k = 0; k < sizeof str_methods / sizeof *str_methods; k++)
            if (!strcmp(name, str_methods[k])) return true;
    } else if (self.t == JV_DICT) {
        for (size_t k = 0; k < sizeof dict_methods / sizeof *dict_methods; k++)
            if (!strcmp(name, dict_methods[k])) return true;
    }
    return false;
}

ds_status jinja_call_method(jinja_ctx *c, int line, jv self, const char *name, jargs *a, jv *out) {
    jv none = {.t = JV_NONE};
    if (self.t == JV_DICT) {
        if (!strcmp(name, "get")) {
            jv key = arg_get(a, 0, NULL, jv_undef());
            jv *v = key.t == JV_STR ? jdict_get(self.u.dict, key.u.str.s, key.u.str.n) : NULL;
            *out = v ? *v : arg_get(a, 1, NULL, none);
            return DS_OK;
        }
        return dict_items(c, line, self, !strcmp(name, "items") ? 0 : !strcmp(name, "keys") ? 1 : 2, out);
    }
    jv x = arg_get(a, 0, NULL, none);
    if (!strcmp(name, "upper")) return str_case(c, line, self, 1, out);
    if (!strcmp(name, "lower")) return str_case(c, line, self, 0, out);
    if (!strcmp(name, "title")) return str_case(c, line, self, 3, out);
    if (!strcmp(name, "capitalize")) return str_case(c, line, self, 2, out);
    if (!strcmp(name, "strip") || !strcmp(name, "lstrip") || !strcmp(name, "rstrip")) {
        if (x.t != JV_STR && x.t != JV_NONE) return jinja_fail(c, line, DS_ERR_FORMAT, "%s() argument must be a string", name);
        *out = str_strip(self, x.t == JV_STR ? &x : NULL, name[0] != 'r', name[0] != 'l');
        return DS_OK;
    }
    if (!strcmp(name, "split") || !strcmp(name, "rsplit")) {
        jv sep = arg_get(a, 0, "sep", none), max = arg_get(a, 1, "maxsplit", jv_int(-1));
        if ((sep.t != JV_STR && sep.t != JV_NONE) || max.t != JV_INT)
            return jinja_fail(c, line, DS_ERR_FORMAT, "bad arguments to %s()", name);
        return str_split(c, line, self, sep, max.u.i, name[0] == 'r', out);
    }
    if (!strcmp(name, "startswith") || !strcmp(name, "endswith")) return str_affix_any(c, line, self, x, name[0] == 'e', out);
    if (!strcmp(name, "replace")) {
        jv cnt = arg_get(a, 2, "count", jv_int(-1));
        return str_replace(c, line, self, x, arg_get(a, 1, NULL, none), cnt.t == JV_INT ? cnt.u.i : -1, out);
    }
    if (!strcmp(name, "join")) {
        if (x.t != JV_LIST) return jinja_fail(c, line, DS_ERR_FORMAT, "join() argument must be a list");
        return join_list(c, line, x, self, out);
    }
    return jinja_fail(c, line, DS_ERR_FORMAT, "unsupported method '%s'", name);
}

// ---- filters ----
ds_status jinja_call_filter(jinja_ctx *c, int line, const char *f, jv in, jargs *a, jv *out) {
    jv none = {.t = JV_NONE};
    jbuf t = {0};
    if (!strcmp(f, "safe") || !strcmp(f, "e") || !strcmp(f, "escape")) {
        if (strcmp(f, "safe")) return jinja_fail(c, line, DS_ERR_FORMAT, "unsupported filter '%s'", f);
        *out = in;
        return DS_OK;
    }
    if (!strcmp(f, "tojson")) {
        jv ind = arg_get(a, 0, "indent", none), asc = arg_get(a, 99, "ensure_ascii", jv_bool(false));
        jv srt = arg_get(a, 99, "sort_keys", jv_bool(false));
        if (ind.t != JV_INT && ind.t != JV_NONE) return jinja_fail(c, line, DS_ERR_FORMAT, "tojson: indent must be an integer");
        int indent = ind.t == JV_INT ? (int)(ind.u.i < 0 ? 0 : ind.u.i > 64 ? 64 : ind.u.i) : 0;
        if (!jv_tojson(&t, in, indent, 0, jv_truthy(asc), jv_truthy(srt))) {
            free(t.p);
            return jinja_fail(c, line, DS_ERR_FORMAT, "tojson: cannot convert a %s", jv_type_name(in));
        }
        return buf_result(c, line, &t, out);
    }
    if (!strcmp(f, "default") || !strcmp(f, "d")) {
        jv def = arg_get(a, 0, "default_value", jv_cstr(""));
        bool boolean = jv_truthy(arg_get(a, 1, "boolean", jv_bool(false)));
        *out = (in.t == JV_UNDEF || (boolean && !jv_truthy(in))) ? def : in;
        return DS_OK;
    }
    if (!strcmp(f, "length") || !strcmp(f, "count")) {
        if (in.t == JV_STR) *out = jv_int((int64_t)utf8_count(in.u.str.s, in.u.str.n));
        else if (in.t == JV_LIST) *out = jv_int((int64_t)in.u.list->n);
        else if (in.t == JV_DICT || in.t == JV_NS) *out = jv_int((int64_t)in.u.dict->n);
        else return jinja_fail(c, line, DS_ERR_FORMAT, "length of a %s", jv_type_name(in));
        return DS_OK;
    }
    if (!strcmp(f, "string")) {
        if (in.t == JV_STR) { *out = in; return DS_OK; }
        if (in.t == JV_NONE || in.t == JV_UNDEF) { *out = jv_cstr(in.t == JV_NONE ? "None" : ""); return DS_OK; }
        if (!jv_render(&t, in)) {
            free(t.p);
            return jinja_fail(c, line, DS_ERR_FORMAT, "cannot convert a %s to string", jv_type_name(in));
        }
        return buf_result(c, line, &t, out);
    }
    if (!strcmp(f, "items")) {
        if (in.t != JV_DICT) return jinja_fail(c, line, DS_ERR_FORMAT, "items of a %s", jv_type_name(in));
        return dict_items(c, line, in, 0, out);
    }
    if (!strcmp(f, "list")) {
        if (in.t == JV_LIST) { *out = in; return DS_OK; }
        if (in.t == JV_DICT) return dict_items(c, line, in, 1, out);
        if (in.t != JV_STR) return jinja_fail(c, line, DS_ERR_FORMAT, "list of a %s", jv_type_name(in));
        jlist *l = jlist_new(c);
        if (!l) return jinja_oom(c, line);
        for (size_t i = 0; i < in.u.str.n;) {
            size_t e = utf8_len(in.u.str.s + i, in.u.str.n - i);
            if (!jlist_push(c, l, (jv){.t = JV_STR, .u.str = {in.u.str.s + i, e}})) return jinja_oom(c, line);
            i += e;
        }
        *out = (jv){.t = JV_LIST, .u.list = l};
        return DS_OK;
    }
    if (!strcmp(f, "first") || !strcmp(f, "last")) {
        bool last = f[0] == 'l';
        *out = jv_undef();
        if (in.t == JV_LIST) {
            if (in.u.list->n) *out = in.u.list->items[last ? in.u.list->n - 1 : 0];
        } else if (in.t == JV_STR) {
            if (in.u.str.n) {
                size_t st = 0;
                if (last) {
                    st = in.u.str.n - 1;
                    while (st > 0 && ((unsigned char)in.u.str.s[st] & 0xC0) == 0x80) st--;
                }
                *out = (jv){.t = JV_STR, .u.str = {in.u.str.s + st, utf8_len(in.u.str.s + st, in.u.str.n - st)}};
            }
        } else {
            return jinja_fail(c, line, DS_ERR_FORMAT, "%s of a %s", f, jv_type_name(in));
        }
        return DS_OK;
    }
    if (!strcmp(f, "join")) {
        if (in.t != JV_LIST) return jinja_fail(c, line, DS_ERR_FORMAT, "join of a %s", jv_type_name(in));
        return join_list(c, line, in, arg_get(a, 0, "d", jv_cstr("")), out);
    }
    if (!strcmp(f, "reverse")) {
        if (in.t != JV_LIST) return jinja_fail(c, line, DS_ERR_FORMAT, "unsupported reverse of a %s", jv_type_name(in));
        jlist *l = jlist_new(c);
        if (!l) return jinja_oom(c, line);
        for (size_t k = in.u.list->n; k > 0; k--)
            if (!jlist_push(c, l, in.u.list->items[k - 1])) return jinja_oom(c, line);
        *out = (jv){.t = JV_LIST, .u.list = l};
        return DS_OK;
    }
    if (!strcmp(f, "int")) {
        if (in.t == JV_INT) *out = in;
        else if (in.t == JV_BOOL) *out = jv_int(in.u.b);
        else if (in.t == JV_FLOAT) *out = jv_int(fabs(in.u.f) < 9e18 ? (int64_t)in.u.f : 0);
        else if (in.t == JV_STR) {
            char tmp[32] = {0};
            memcpy(tmp, in.u.str.s, in.u.str.n < 31 ? in.u.str.n : 31);
            *out = jv_int(strtoll(tmp, NULL, 10));
        } else *out = jv_int(0);
        return DS_OK;
    }
    if (!strcmp(f, "float")) {
        double v = 0;
        if (in.t == JV_INT || in.t == JV_BOOL || in.t == JV_FLOAT) v = in.t == JV_FLOAT ? in.u.f : in.t == JV_INT ? (double)in.u.i : in.u.b;
        else if (in.t == JV_STR) {
            char tmp[64] = {0};
            memcpy(tmp, in.u.str.s, in.u.str.n < 63 ? in.u.str.n : 63);
            v = strtod(tmp, NULL);
        }
        *out = (jv){.t = JV_FLOAT, .u.f = v};
        return DS_OK;
    }
    if (!strcmp(f, "abs")) {
        if (in.t == JV_INT && in.u.i != INT64_MIN) *out = jv_int(in.u.i < 0 ? -in.u.i : in.u.i);
        else if (in.t == JV_FLOAT) *out = (jv){.t = JV_FLOAT, .u.f = fabs(in.u.f)};
        else return jinja_fail(c, line, DS_ERR_FORMAT, "abs of a %s", jv_type_name(in));
        return DS_OK;
    }
    if (!strcmp(f, "round")) {
        jv prec = arg_get(a, 0, "precision", jv_int(0)), method = arg_get(a, 1, "method", jv_cstr("common"));
        if ((in.t != JV_INT && in.t != JV_FLOAT) || prec.t != JV_INT || method.t != JV_STR)
            return jinja_fail(c, line, DS_ERR_FORMAT, "bad arguments to round");
        double v = in.t == JV_INT ? (double)in.u.i : in.u.f, m = pow(10, (double)(prec.u.i > 15 ? 15 : prec.u.i));
        if (!strcmp(method.u.str.s, "floor")) v = floor(v * m) / m;
        else if (!strcmp(method.u.str.s, "ceil")) v = ceil(v * m) / m;
        else v = round(v * m) / m;
        *out = (jv){.t = JV_FLOAT, .u.f = v};
        return DS_OK;
    }
    if (!strcmp(f, "map")) {  // only map(attribute='name')
        jv attr = arg_get(a, 99, "attribute", jv_undef());
        if (in.t != JV_LIST || attr.t != JV_STR) return jinja_fail(c, line, DS_ERR_FORMAT, "unsupported use of filter 'map'");
        jlist *l = jlist_new(c);
        if (!l) return jinja_oom(c, line);
        for (size_t k = 0; k < in.u.list->n; k++) {
            jv it = in.u.list->items[k], *v = NULL;
            if (it.t == JV_DICT) v = jdict_get(it.u.dict, attr.u.str.s, attr.u.str.n);
            if (!jlist_push(c, l, v ? *v : jv_undef())) return jinja_oom(c, line);
        }
        *out = (jv){.t = JV_LIST, .u.list = l};
        return DS_OK;
    }
    // string filters
    static const char *const sf[] = {"trim", "lower", "upper", "capitalize", "title", "replace"};
    for (size_t k = 0; k < sizeof sf / sizeof *sf; k++) {
        if (strcmp(f, sf[k])) continue;
        if (in.t != JV_STR) return jinja_fail(c, line, DS_ERR_FORMAT, "filter '%s' needs a string, got %s", f, jv_type_name(in));
        if (k == 0) {
            *out = str_strip(in, NULL, true, true);
            return DS_OK;
        }
        if (k == 5) {
            jv cnt = arg_get(a, 2, "count", jv_int(-1));
            return str_replace(c, line, in, arg_get(a, 0, NULL, none), arg_get(a, 1, NULL, none),
                               cnt.t == JV_INT ? cnt.u.i : -1, out);
        }
        return str_case(c, line, in, k == 1 ? 0 : k == 2 ? 1 : k == 3 ? 2 : 3, out);
    }
    return jinja_fail(c, line, DS_ERR_FORMAT, "unsupported filter '%s'", f);
}

// ---- tests ----
ds_status jinja_call_test(jinja_ctx *c, int line, const char *t, jv in, jargs *a, bool *out) {
    jv x = arg_get(a, 0, NULL, jv_undef());
    if (!strcmp(t, "defined")) *out = in.t != JV_UNDEF;
    else if (!strcmp(t, "undefined")) *out = in.t == JV_UNDEF;
    else if (!strcmp(t, "none")) *out = in.t == JV_NONE;
    else if (!strcmp(t, "string")) *out = in.t == JV_STR;
    else if (!strcmp(t, "number")) *out = in.t == JV_INT || in.t == JV_FLOAT;
    else if (!strcmp(t, "integer")) *out = in.t == JV_INT;
    else if (!strcmp(t, "float")) *out = in.t == JV_FLOAT;
    else if (!strcmp(t, "boolean")) *out = in.t == JV_BOOL;
    else if (!strcmp(t, "true")) *out = in.t == JV_BOOL && in.u.b;
    else if (!strcmp(t, "false")) *out = in.t == JV_BOOL && !in.u.b;
    else if (!strcmp(t, "mapping")) *out = in.t == JV_DICT;
    else if (!strcmp(t, "iterable")) *out = in.t == JV_LIST || in.t == JV_STR || in.t == JV_DICT;
    else if (!strcmp(t, "sequence")) *out = in.t == JV_LIST || in.t == JV_STR || in.t == JV_DICT;
    else if (!strcmp(t, "callable")) *out = in.t == JV_FUNC || in.t == JV_METHOD || in.t == JV_MACRO;
    else if (!strcmp(t, "equalto") || !strcmp(t, "eq") || !strcmp(t, "==") || !strcmp(t, "sameas")) *out = jv_equal(in, x);
    else if (!strcmp(t, "ne") || !strcmp(t, "!=")) *out = !jv_equal(in, x);
    else if (!strcmp(t, "odd") || !strcmp(t, "even") || !strcmp(t, "divisibleby")) {
        int64_t d = !strcmp(t, "divisibleby") ? (x.t == JV_INT ? x.u.i : 0) : 2;
        if (in.t != JV_INT || d == 0) return jinja_fail(c, line, DS_ERR_FORMAT, "test '%s' needs integers", t);
        bool div = (d == -1) || in.u.i % d == 0;
        *out = t[0] == 'o' ? !div : div;
    } else if (!strcmp(t, "lower") || !strcmp(t, "upper")) {
        *out = in.t == JV_STR;
        for (size_t k = 0; *out && k < in.u.str.n; k++) {
            char ch = in.u.str.s[k];
            if (t[0] == 'l' ? (ch >= 'A' && ch <= 'Z') : (ch >= 'a' && ch <= 'z')) *out = false;
        }
    } else if (!strcmp(t, "in")) {
        jv r;
        bool found = false;
        if (x.t == JV_LIST) for (size_t k = 0; k < x.u.list->n && !found; k++) found = jv_equal(in, x.u.list->items[k]);
        else if (x.t == JV_STR && in.t == JV_STR) found = memmem(x.u.str.s, x.u.str.n, in.u.str.s, in.u.str.n) != NULL || !in.u.str.n;
        else if (x.t == JV_DICT && in.t == JV_STR) found = jdict_get(x.u.dict, in.u.str.s, in.u.str.n) != NULL;
        else return jinja_fail(c, line, DS_ERR_FORMAT, "test 'in' on a %s", jv_type_name(x));
        (void)r;
        *out = found;
    } else {
        return jinja_fail(c, line, DS_ERR_FORMAT, "unsupported test '%s'", t);
    }
    return DS_OK;
}

// ---- global functions ----
static const char *const globals[] = {"namespace", "raise_exception", "strftime_now", "range"};

bool jinja_is_global(const char *name) {
    for (size_t k = 0; k < sizeof globals / sizeof *globals; k++)
        if (!strcmp(name, globals[k])) return true;
    return false;
}

ds_status jinja_call_global(jinja_ctx *c, int line, const char *name, jargs *a, jv *out) {
    if (!strcmp(name, "namespace")) {
        jdict *d = jdict_new(c);
        if (!d) return jinja_oom(c, line);
        for (size_t k = 0; k < a->n; k++) {
            if (a->kw && a->kw[k]) {
                if (!jdict_set(c, d, a->kw[k], strlen(a->kw[k]), a->v[k])) return jinja_oom(c, line);
            } else if (a->v[k].t == JV_DICT) {
                for (size_t i = 0; i < a->v[k].u.dict->n; i++)
                    if (!jdict_set(c, d, a->v[k].u.dict->keys[i], a->v[k].u.dict->klen[i], a->v[k].u.dict->vals[i]))
                        return jinja_oom(c, line);
            } else {
                return jinja_fail(c, line, DS_ERR_FORMAT, "namespace() takes keyword arguments or a dict");
            }
        }
        *out = (jv){.t = JV_NS, .u.dict = d};
        return DS_OK;
    }
    if (!strcmp(name, "raise_exception")) {
        jv msg = arg_get(a, 0, NULL, jv_cstr("raise_exception() called"));
        jbuf t = {0};
        jv_render(&t, msg);
        ds_status st = jinja_fail(c, line, DS_ERR_ARG, "%.*s", (int)(t.n > 700 ? 700 : t.n), t.p ? t.p : "");
        free(t.p);
        return st;
    }
    if (!strcmp(name, "strftime_now")) {
        jv fmt = arg_get(a, 0, NULL, jv_undef());
        if (fmt.t != JV_STR || fmt.u.str.n > 200) return jinja_fail(c, line, DS_ERR_FORMAT, "strftime_now() needs a format string");
        char f[256], o[512];
        memcpy(f, fmt.u.str.s, fmt.u.str.n);
        f[fmt.u.str.n] = 0;
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        size_t n = strftime(o, sizeof o, f, &tm);
        *out = jv_str(c, o, n);
        return out->t == JV_STR ? DS_OK : jinja_oom(c, line);
    }
    // range(stop) / range(start, stop[, step])
    int64_t r[3] = {0, 0, 1};
    size_t np = 0;
    for (size_t k = 0; k < a->n; k++) {
        if ((a->kw && a->kw[k]) || a->v[k].t != JV_INT || np == 3)
            return jinja_fail(c, line, DS_ERR_FORMAT, "range() takes 1 to 3 integers");
        r[np++] = a->v[k].u.i;
    }
    if (np == 0) return jinja_fail(c, line, DS_ERR_FORMAT, "range() takes 1 to 3 integers");
    if (np == 1) r[1] = r[0], r[0] = 0;
    if (r[2] == 0) return jinja_fail(c, line, DS_ERR_FORMAT, "range() step must not be zero");
    jlist *l = jlist_new(c);
    if (!l) return jinja_oom(c, line);
    for (int64_t i = r[0]; r[2] > 0 ? i < r[1] : i > r[1]; i += r[2]) {
        if (l->n >= (size_t)JINJA_MAX_ITERATIONS) return jinja_fail(c, line, DS_ERR_LIMIT, "range() too long");
        if (!jlist_push(c, l, jv_int(i))) return jinja_oom(c, line);
        if ((r[2] > 0 && i > INT64_MAX - r[2]) || (r[2] < 0 && i < INT64_MIN - r[2])) break;
    }
    *out = (jv){.t = JV_LIST, .u.list = l};
    return DS_OK;
}
