// Decoding ids back to text: the tokenizer.json decoder chain (ByteLevel, Replace,
// ByteFallback, Fuse, Strip, Metaspace), then invalid UTF-8 becomes U+FFFD the way Rust's
// String::from_utf8_lossy does it (one U+FFFD per maximal invalid subpart), so streaming
// decode can reproduce full decode exactly.
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"

// ---- parsing ----

static ds_status dec_push(tok_decoder *d, dec_step s, const char *path, ds_error *err) {
    dec_step *v = realloc(d->steps, (size_t)(d->n + 1) * sizeof *v);
    if (!v) {
        free(s.from);
        free(s.to);
        return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", path);
    }
    d->steps = v;
    d->steps[d->n++] = s;
    return DS_OK;
}

static ds_status dec_add(tok_decoder *d, const cJSON *j, const char *path, ds_error *err) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (!cJSON_IsString(type)) return ds_error_set(err, DS_ERR_FORMAT, "%s: decoder: \"type\" must be a string", path);
    const char *t = type->valuestring;
    dec_step s = {0};
    if (strcmp(t, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "decoders"), *it;
        if (!cJSON_IsArray(list))
            return ds_error_set(err, DS_ERR_FORMAT, "%s: decoder: Sequence needs a \"decoders\" array", path);
        cJSON_ArrayForEach(it, list) {
            ds_status st = dec_add(d, it, path, err);
            if (st) return st;
        }
        return DS_OK;
    }
    if (strcmp(t, "ByteLevel") == 0) s.kind = DEC_BYTELEVEL;
    else if (strcmp(t, "ByteFallback") == 0) s.kind = DEC_BYTEFALLBACK;
    else if (strcmp(t, "Fuse") == 0) s.kind = DEC_FUSE;
    else if (strcmp(t, "Replace") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "pattern"), "String");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(j, "content");
        if (!cJSON_IsString(pat) || !pat->valuestring[0] || !cJSON_IsString(content))
            return ds_error_set(err, DS_ERR_FORMAT, "%s: decoder Replace: needs pattern.String and content strings", path);
        s.kind = DEC_REPLACE;
        s.from = strdup(pat->valuestring);
        s.to = strdup(content->valuestring);
    } else if (strcmp(t, "Strip") == 0) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(j, "content");
        const cJSON *start = cJSON_GetObjectItemCaseSensitive(j, "start");
        const cJSON *stop = cJSON_GetObjectItemCaseSensitive(j, "stop");
        if (!cJSON_IsString(content) || !cJSON_IsNumber(start) || !cJSON_IsNumber(stop))
            return ds_error_set(err, DS_ERR_FORMAT, "%s: decoder Strip: needs content, start and stop", path);
        s.kind = DEC_STRIP;
        s.to = strdup(content->valuestring);
        s.start = start->valueint;
        s.stop = stop->valueint;
    } else if (strcmp(t, "Metaspace") == 0) {
        const cJSON *rep = cJSON_GetObjectItemCaseSensitive(j, "replacement");
        const cJSON *scheme = cJSON_GetObjectItemCaseSensitive(j, "prepend_scheme");
        s.kind = DEC_METASPACE;
        s.from = strdup(cJSON_IsString(rep) ? rep->valuestring : "\xE2\x96\x81");
        s.prepend = cJSON_IsString(scheme) ? strcmp(scheme->valuestring, "never") != 0
                                           : !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(j, "add_prefix_space"));
    } else {
        return ds_error_set(err, DS_ERR_FORMAT, "%s: decoder type \"%s\" is not supported", path, t);
    }
    if ((s.kind == DEC_REPLACE && (!s.from || !s.to)) || (s.kind == DEC_STRIP && !s.to) ||
        (s.kind == DEC_METASPACE && !s.from)) {
        free(s.from);
        free(s.to);
        return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", path);
    }
    return dec_push(d, s, path, err);
}

ds_status decoder_parse(tok_decoder *d, const cJSON *j, const char *path, ds_error *err) {
    *d = (tok_decoder){0};
    if (!j || cJSON_IsNull(j)) return DS_OK;
    if (!cJSON_IsObject(j)) return ds_error_set(err, DS_ERR_FORMAT, "%s: \"decoder\" must be an object or null", path);
    ds_status st = dec_add(d, j, path, err);
    if (st) decoder_free(d);
    return st;
}

void decoder_free(tok_decoder *d) {
    for (int i = 0; i < d->n; i++) {
        free(d->steps[i].from);
        free(d->steps[i].to);
    }
    free(d->steps);
    *d = (tok_decoder){0};
}

// ---- running the chain on a list of token strings ----

typedef struct {
    tok_bytes buf;
    size_t *off; // token i is buf[off[i], off[i+1])
    size_t n, cap;
} tok_list;

static bool list_end_token(tok_list *l) { // closes the token being appended to buf
    if (l->n + 2 > l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        size_t *o = realloc(l->off, cap * sizeof *o);
        if (!o) return false;
        l->off = o;
        l->cap = cap;
    }
    if (l->n == 0) l->off[0] = 0;
    l->off[++l->n] = l->buf.n;
    return true;
}

static void list_reset(tok_list *l) {
    l->buf.n = 0;
    l->n = 0;
}

static bool bytelevel_token(tok_bytes *out, const char *s, size_t len) {
    size_t at = out->n;
    if (!tok_bytes_reserve(out, len)) return false;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int cl = tok_utf8_get(s + i, len - i, &cp), b = cl ? bytelevel_byte_of_char(cp) : -1;
        if (b < 0) { // not from the byte alphabet (e.g. an added token): its bytes as they are
            out->n = at;
            return tok_bytes_append(out, s, len);
        }
        out->s[out->n++] = (char)b;
        i += (size_t)cl;
    }
    return true;
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

// Applies one step, src -> dst. `first` says src's token 0 starts the text.
static bool dec_step_apply(const dec_step *st, const tok_list *src, tok_list *dst, bool first) {
    list_reset(dst);
    size_t nbytes = 0; // ByteFallback: pending byte tokens (already in dst->buf)
    for (size_t i = 0; i < src->n; i++) {
        const char *s = src->buf.s + src->off[i];
        size_t len = src->off[i + 1] - src->off[i];
        bool ok = true;
        switch (st->kind) {
        case DEC_BYTELEVEL: ok = bytelevel_token(&dst->buf, s, len) && list_end_token(dst); break;
        case DEC_FUSE: ok = tok_bytes_append(&dst->buf, s, len) && (i + 1 < src->n || list_end_token(dst)); break;
        case DEC_REPLACE:
        case DEC_METASPACE: {
            const char *from = st->from, *to = st->kind == DEC_REPLACE ? st->to : " ";
            size_t fl = strlen(from), tl = strlen(to), start = dst->buf.n;
            for (size_t k = 0; ok && k < len;) {
                if (k + fl <= len && memcmp(s + k, from, fl) == 0) ok = tok_bytes_append(&dst->buf, to, tl), k += fl;
                else ok = tok_bytes_append(&dst->buf, s + k, 1), k++;
            }
            if (ok && st->kind == DEC_METASPACE && st->prepend && first && i == 0 && dst->buf.n > start &&
                dst->buf.s[start] == ' ') {
                memmove(dst->buf.s + start, dst->buf.s + start + 1, dst->buf.n - start - 1);
                dst->buf.n--;
            }
            ok = ok && list_end_token(dst);
            break;
        }
        case DEC_STRIP: {
            size_t cl = strlen(st->to), a = 0, b = len;
            for (int k = 0; k < st->start && cl && a + cl <= b && memcmp(s + a, st->to, cl) == 0; k++) a += cl;
            for (int k = 0; k < st->stop && cl && b >= a + cl && memcmp(s + b - cl, st->to, cl) == 0; k++) b -= cl;
            ok = tok_bytes_append(&dst->buf, s + a, b - a) && list_end_token(dst);
            break;
        }
        case DEC_BYTEFALLBACK: {
            bool is_byte = len == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>' && hexval(s[3]) >= 0 && hexval(s[4]) >= 0;
            if (is_byte) {
                char c = (char)(hexval(s[3]) * 16 + hexval(s[4]));
                ok = tok_bytes_append(&dst->buf, &c, 1);
                nbytes++;
            }
            // A run of byte tokens ends: it is one token if valid UTF-8, else U+FFFD per byte.
            if (ok && nbytes && (!is_byte || i + 1 == src->n)) {
                size_t at = dst->buf.n - nbytes, k = at;
                uint32_t cp;
                for (int cl; k < dst->buf.n && (cl = tok_utf8_get(dst->buf.s + k, dst->buf.n - k, &cp));) k += (size_t)cl;
                if (k != dst->buf.n) {
                    dst->buf.n = at;
                    for (size_t q = 0; ok && q < nbytes; q++) ok = tok_bytes_append(&dst->buf, "\xEF\xBF\xBD", 3);
                }
                ok = ok && list_end_token(dst);
                nbytes = 0;
            }
            if (ok && !is_byte) ok = tok_bytes_append(&dst->buf, s, len) && list_end_token(dst);
            break;
        }
        }
        if (!ok) return false;
    }
    return true;
}

// Decodes ids (unknown ids skipped, as HF does) to raw bytes appended to out.
static bool decode_raw(const ds_tokenizer *t, const int *ids, int n, bool skip_special, bool first, tok_bytes *out) {
    tok_list a = {0}, b = {0};
    bool ok = true;
    for (int i = 0; ok && i < n; i++) {
        int id = ids[i];
        if (id < 0 || id >= t->n_ids || !t->text[id] || (skip_special && t->special[id])) continue;
        ok = tok_bytes_append(&a.buf, t->text[id], t->text_len[id]) && list_end_token(&a);
    }
    for (int k = 0; ok && k < t->dec.n; k++) {
        ok = dec_step_apply(&t->dec.steps[k], &a, &b, first);
        tok_list x = a;
        a = b;
        b = x;
    }
    if (ok) ok = tok_bytes_append(out, a.buf.s, a.n ? a.off[a.n] : 0);
    free(a.buf.s);
    free(a.off);
    free(b.buf.s);
    free(b.off);
    return ok;
}

// ---- UTF-8 repair ----

// Length of the longest prefix of s that could begin a valid UTF-8 char (0: s[0] cannot).
static size_t utf8_valid_prefix(const unsigned char *s, size_t n, size_t *need) {
    unsigned char c = s[0];
    size_t want = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    *need = want;
    if (want == 0) return 0;
    size_t k = 1;
    for (; k < want && k < n; k++) {
        unsigned char lo = 0x80, hi = 0xBF;
        if (k == 1) {
            if (c == 0xE0) lo = 0xA0;
            else if (c == 0xED) hi = 0x9F;
            else if (c == 0xF0) lo = 0x90;
            else if (c == 0xF4) hi = 0x8F;
        }
        if (s[k] < lo || s[k] > hi) break;
    }
    return k;
}

// Appends the valid text of in[0, n) to out, U+FFFD for each maximal invalid subpart. With
// hold, an incomplete char at the very end is not emitted: its length is returned.
static size_t utf8_repair(const char *in, size_t n, bool hold, tok_bytes *out, bool *ok) {
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0;
    while (i < n && *ok) {
        size_t need, k = utf8_valid_prefix(s + i, n - i, &need);
        if (need && k == need) {
            *ok = tok_bytes_append(out, s + i, k);
            i += k;
        } else if (hold && i + k == n) {
            return n - i;
        } else {
            *ok = tok_bytes_append(out, "\xEF\xBF\xBD", 3);
            i += k ? k : 1;
        }
    }
    return 0;
}

ds_status tokenizer_decode(const ds_tokenizer *t, const int *ids, int n, bool skip_special, char **text, size_t *len,
                           ds_error *err) {
    *text = NULL;
    *len = 0;
    tok_bytes raw = {0}, out = {0};
    bool ok = decode_raw(t, ids, n, skip_special, true, &raw) && tok_bytes_reserve(&out, raw.n);
    if (ok) utf8_repair(raw.s, raw.n, false, &out, &ok);
    free(raw.s);
    if (!ok) {
        free(out.s);
        return ds_error_set(err, DS_ERR_OOM, "tokenizer: out of memory while decoding");
    }
    out.s[out.n] = 0; // ids with no text (unknown, or skipped specials) append nothing
    *text = out.s;
    *len = out.n;
    return DS_OK;
}

// ---- streaming ----

void tokenizer_stream_init(tokenizer_stream *s, const ds_tokenizer *t, bool skip_special) {
    *s = (tokenizer_stream){.t = t, .skip_special = skip_special};
}

// Emits the valid text of pending + bytes, keeping an incomplete trailing char pending.
static const char *stream_emit(tokenizer_stream *s, const char *bytes, size_t n, bool flush, size_t *len) {
    tok_bytes in = {0}, out = {.s = s->buf, .cap = s->cap};
    bool ok = tok_bytes_append(&in, s->pending, (size_t)s->n_pending) && tok_bytes_append(&in, bytes, n) &&
              tok_bytes_reserve(&out, in.n + 3);
    size_t held = ok ? utf8_repair(in.s, in.n, !flush, &out, &ok) : 0;
    if (ok) {
        memcpy(s->pending, in.s + in.n - held, held);
        s->n_pending = (int)held;
    }
    free(in.s);
    s->buf = out.s;
    s->cap = out.cap;
    if (!ok || !s->buf) { // out of memory: nothing to show (the library cannot report it here)
        *len = 0;
        return "";
    }
    s->buf[out.n] = 0;
    *len = out.n;
    return s->buf;
}

const char *tokenizer_stream_push(tokenizer_stream *s, int id, size_t *len) {
    tok_bytes raw = {0};
    // The stream's first token may take decoder rules for the text start (Metaspace).
    bool first = !s->buf;
    if (!decode_raw(s->t, &id, 1, s->skip_special, first, &raw)) {
        *len = 0;
        return "";
    }
    const char *r = stream_emit(s, raw.s ? raw.s : "", raw.n, false, len);
    free(raw.s);
    return r;
}

const char *tokenizer_stream_flush(tokenizer_stream *s, size_t *len) { return stream_emit(s, "", 0, true, len); }

void tokenizer_stream_free(tokenizer_stream *s) {
    free(s->buf);
    *s = (tokenizer_stream){0};
}
