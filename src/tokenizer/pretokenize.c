// Normalizers (utf8proc) and pre-tokenizers (PCRE2) of HF tokenizer.json: the text of a
// segment is cut into pieces that BPE then encodes one by one.
//
// HF compiles Split regexes with Oniguruma; PCRE2 (UTF + UCP) agrees on the constructs
// the DeepSeek / Qwen / Llama patterns use, except \s: Oniguruma's is the Unicode
// White_Space property while PCRE2's adds U+180E. We therefore spell \s out.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tokenizer_internal.h"

// Unicode White_Space, as a class body for PCRE2.
#define WS_CLASS "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

// The regex ByteLevel applies when use_regex is true (GPT-2's).
static const char GPT2_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

bool tok_is_whitespace(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

bool tok_is_word_char(uint32_t cp) {
    if (cp == '_') return true;
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
           (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO);
}

// ---- regex ----

// Rewrites \s / \S outside classes and \s inside classes to the White_Space set.
static char *regex_translate(const char *p) {
    size_t n = strlen(p), cap = n * 8 + 64, o = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char d = p[i + 1];
            const char *rep = NULL;
            if (d == 's') rep = in_class ? WS_CLASS : "[" WS_CLASS "]";
            else if (d == 'S' && !in_class) rep = "[^" WS_CLASS "]";
            if (rep) {
                size_t rl = strlen(rep);
                memcpy(out + o, rep, rl);
                o += rl;
            } else {
                out[o++] = c;
                out[o++] = d;
            }
            i++;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            out[o++] = c;
            // A ']' right after '[' or '[^' is a literal member.
            if (i + 1 < n && p[i + 1] == '^') out[o++] = p[++i];
            if (i + 1 < n && p[i + 1] == ']') out[o++] = p[++i];
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') { // POSIX class [:name:]
            const char *end = strstr(p + i + 2, ":]");
            size_t l = end ? (size_t)(end - (p + i)) + 2 : 1;
            memcpy(out + o, p + i, l);
            o += l;
            i += l - 1;
            continue;
        }
        if (in_class && c == ']') in_class = false;
        out[o++] = c;
    }
    out[o] = 0;
    return out;
}

void *tok_regex_compile(const char *pattern, char *why, size_t why_len) {
    char *pat = regex_translate(pattern);
    if (!pat) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    int ec;
    PCRE2_SIZE off;
    // MATCH_INVALID_UTF: raw input may hold invalid UTF-8; such bytes simply never match.
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ec, &off, NULL);
    free(pat);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        snprintf(why, why_len, "regex does not compile: %s", (const char *)msg);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); // best effort: the interpreter is the fallback
    return re;
}

void tok_regex_free(void *re) { pcre2_code_free(re); }

// ---- normalizers ----

static ds_status normalizer_add(tok_normalizer *n, const cJSON *j, const char *path, ds_error *err) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (!cJSON_IsString(type))
        return ds_error_set(err, DS_ERR_FORMAT, "%s: normalizer: \"type\" must be a string", path);
    const char *t = type->valuestring;
    if (strcmp(t, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "normalizers"), *it;
        if (!cJSON_IsArray(list))
            return ds_error_set(err, DS_ERR_FORMAT, "%s: normalizer: Sequence needs a \"normalizers\" array", path);
        cJSON_ArrayForEach(it, list) {
            ds_status st = normalizer_add(n, it, path, err);
            if (st) return st;
        }
        return DS_OK;
    }
    norm_kind k;
    if (strcmp(t, "NFC") == 0) k = NORM_NFC;
    else if (strcmp(t, "NFD") == 0) k = NORM_NFD;
    else if (strcmp(t, "NFKC") == 0) k = NORM_NFKC;
    else if (strcmp(t, "NFKD") == 0) k = NORM_NFKD;
    else return ds_error_set(err, DS_ERR_FORMAT, "%s: normalizer: type \"%s\" is not supported", path, t);
    norm_kind *s = realloc(n->steps, (size_t)(n->n + 1) * sizeof *s);
    if (!s) return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", path);
    n->steps = s;
    n->steps[n->n++] = k;
    return DS_OK;
}

ds_status normalizer_parse(tok_normalizer *n, const cJSON *j, const char *path, ds_error *err) {
    *n = (tok_normalizer){0};
    if (!j || cJSON_IsNull(j)) return DS_OK;
    if (!cJSON_IsObject(j)) return ds_error_set(err, DS_ERR_FORMAT, "%s: \"normalizer\" must be an object or null", path);
    ds_status st = normalizer_add(n, j, path, err);
    if (st) normalizer_free(n);
    return st;
}

ds_status normalizer_apply(const tok_normalizer *n, const char *text, size_t len, tok_bytes *out, ds_error *err) {
    out->n = 0;
    if (!tok_bytes_append(out, text, len)) return ds_error_set(err, DS_ERR_OOM, "tokenizer: out of memory");
    bool ascii = true;
    for (size_t i = 0; i < len && ascii; i++) ascii = (unsigned char)text[i] < 0x80;
    if (ascii) return DS_OK; // every normal form of ASCII is itself
    for (int i = 0; i < n->n; i++) {
        int opt = UTF8PROC_STABLE;
        switch (n->steps[i]) {
        case NORM_NFC: opt |= UTF8PROC_COMPOSE; break;
        case NORM_NFD: opt |= UTF8PROC_DECOMPOSE; break;
        case NORM_NFKC: opt |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
        case NORM_NFKD: opt |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
        }
        utf8proc_uint8_t *dst = NULL;
        utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)out->s, (utf8proc_ssize_t)out->n, &dst,
                                          (utf8proc_option_t)opt);
        if (r == UTF8PROC_ERROR_NOMEM) return ds_error_set(err, DS_ERR_OOM, "tokenizer: out of memory");
        if (r < 0) continue; // invalid UTF-8: left as is (HF never sees such text)
        out->n = 0;
        bool ok = tok_bytes_append(out, dst, (size_t)r);
        free(dst);
        if (!ok) return ds_error_set(err, DS_ERR_OOM, "tokenizer: out of memory");
    }
    return DS_OK;
}

void normalizer_free(tok_normalizer *n) {
    free(n->steps);
    *n = (tok_normalizer){0};
}

// ---- pre-tokenizer parsing ----

static ds_status pretok_push(tok_pretokenizer *p, pretok_step st, const char *path, ds_error *err) {
    pretok_step *s = realloc(p->steps, (size_t)(p->n + 1) * sizeof *s);
    if (!s) {
        tok_regex_free(st.re);
        free(st.literal);
        return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", path);
    }
    p->steps = s;
    p->steps[p->n++] = st;
    return DS_OK;
}

static ds_status pretok_regex_step(tok_pretokenizer *p, const char *regex, split_behavior b, bool invert,
                                   bool prefix_space, const char *key, const char *path, ds_error *err) {
    char why[200];
    pretok_step st = {.behavior = b, .invert = invert, .prefix_space = prefix_space};
    if (regex) {
        st.re = tok_regex_compile(regex, why, sizeof why);
        if (!st.re) return ds_error_set(err, DS_ERR_FORMAT, "%s: %s: %s", path, key, why);
    }
    return pretok_push(p, st, path, err);
}

static ds_status split_parse(tok_pretokenizer *p, const cJSON *j, const char *path, ds_error *err) {
    static const char *names[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    static const split_behavior vals[] = {SPLIT_ISOLATED, SPLIT_REMOVED, SPLIT_MERGED_WITH_PREVIOUS,
                                          SPLIT_MERGED_WITH_NEXT, SPLIT_CONTIGUOUS};
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
    const cJSON *beh = cJSON_GetObjectItemCaseSensitive(j, "behavior");
    const cJSON *inv = cJSON_GetObjectItemCaseSensitive(j, "invert");
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
    const cJSON *lit = cJSON_GetObjectItemCaseSensitive(pat, "String");
    if (!cJSON_IsString(re) && !cJSON_IsString(lit))
        return ds_error_set(err, DS_ERR_FORMAT, "%s: pre_tokenizer Split: \"pattern\" needs a Regex or String", path);
    if (!cJSON_IsString(beh))
        return ds_error_set(err, DS_ERR_FORMAT, "%s: pre_tokenizer Split: \"behavior\" must be a string", path);
    if (inv && !cJSON_IsBool(inv))
        return ds_error_set(err, DS_ERR_FORMAT, "%s: pre_tokenizer Split: \"invert\" must be a boolean", path);
    int b = -1;
    for (int i = 0; i < 5; i++)
        if (strcmp(beh->valuestring, names[i]) == 0) b = i;
    if (b < 0)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: pre_tokenizer Split: unknown behavior \"%s\"", path,
                            beh->valuestring);
    bool invert = cJSON_IsTrue(inv);
    if (cJSON_IsString(re))
        return pretok_regex_step(p, re->valuestring, vals[b], invert, false, "pre_tokenizer Split pattern", path, err);
    if (!lit->valuestring[0])
        return ds_error_set(err, DS_ERR_FORMAT, "%s: pre_tokenizer Split: empty String pattern", path);
    pretok_step st = {.behavior = vals[b], .invert = invert};
    st.literal = strdup(lit->valuestring);
    if (!st.literal) return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", path);
    st.literal_len = strlen(st.literal);
    return pretok_push(p, st, path, err);
}

static ds_status pretok_add(tok_pretokenizer *p, const cJSON *j, const char *path, ds_error *err) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (!cJSON_IsString(type))
        return ds_error_set(err, DS_ERR_FORMAT, "%s: pre_tokenizer: \"type\" must be a string", path);
    const char *t = type->valuestring;
    if (p->byte_level)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: pre_tokenizer: %s after ByteLevel is not supported", path, t);
    if (strcmp(t, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers"), *it;
        if (!cJSON_IsArray(list))
            return ds_error_set(err, DS_ERR_FORMAT, "%s: pre_tokenizer: Sequence needs a \"pretokenizers\" array", path);
        cJSON_ArrayForEach(it, list) {
            ds_status st = pretok_add(p, it, path, err);
            if (st) return st;
        }
        return DS_OK;
    }
    if (strcmp(t, "Split") == 0) return split_parse(p, j, path, err);
    if (strcmp(t, "Digits") == 0) {
        // HF splits on char::is_numeric, i.e. \p{N}: each digit alone, or runs of them.
        bool single = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "individual_digits"));
        return pretok_regex_step(p, "\\p{N}", single ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS, false, false,
                                 "pre_tokenizer Digits", path, err);
    }
    if (strcmp(t, "ByteLevel") == 0) {
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(j, "add_prefix_space");
        const cJSON *ur = cJSON_GetObjectItemCaseSensitive(j, "use_regex");
        bool prefix = cJSON_IsTrue(ps), use_regex = !ur || cJSON_IsTrue(ur); // HF default: true
        p->byte_level = true;
        if (!prefix && !use_regex) return DS_OK;
        return pretok_regex_step(p, use_regex ? GPT2_REGEX : NULL, SPLIT_ISOLATED, false, prefix,
                                 "pre_tokenizer ByteLevel", path, err);
    }
    return ds_error_set(err, DS_ERR_FORMAT, "%s: pre_tokenizer: type \"%s\" is not supported", path, t);
}

ds_status pretok_parse(tok_pretokenizer *p, const cJSON *j, const char *path, ds_error *err) {
    *p = (tok_pretokenizer){0};
    if (!j || cJSON_IsNull(j)) return DS_OK;
    if (!cJSON_IsObject(j))
        return ds_error_set(err, DS_ERR_FORMAT, "%s: \"pre_tokenizer\" must be an object or null", path);
    ds_status st = pretok_add(p, j, path, err);
    if (st) pretok_free(p);
    return st;
}

void pretok_free(tok_pretokenizer *p) {
    for (int i = 0; i < p->n; i++) {
        tok_regex_free(p->steps[i].re);
        free(p->steps[i].literal);
    }
    free(p->steps);
    *p = (tok_pretokenizer){0};
}

// ---- running ----

static bool pieces_push(tok_pieces *l, size_t a, size_t b) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        tok_piece *v = realloc(l->v, cap * sizeof *v);
        if (!v) return false;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (tok_piece){a, b};
    return true;
}

// Emits one segment of a split according to the behavior (HF's SplitDelimiterBehavior).
// *prev_match tracks the kind of the previous segment; *last is the index in `out` of the
// first piece this split produced (so merges never reach into the previous piece's output).
static bool split_emit(tok_pieces *out, size_t first, split_behavior b, size_t s, size_t e, bool is_match,
                       bool *prev_match) {
    bool ok = true, has_last = out->n > first;
    switch (b) {
    case SPLIT_ISOLATED: ok = pieces_push(out, s, e); break;
    case SPLIT_REMOVED:
        if (!is_match) ok = pieces_push(out, s, e);
        break;
    case SPLIT_MERGED_WITH_PREVIOUS:
        if (is_match && !*prev_match && has_last) out->v[out->n - 1].end = e;
        else ok = pieces_push(out, s, e);
        break;
    case SPLIT_MERGED_WITH_NEXT:
        // Runs backwards (see split_piece): a match joins the gap after it.
        if (is_match && !*prev_match && has_last) out->v[out->n - 1].start = s;
        else ok = pieces_push(out, s, e);
        break;
    case SPLIT_CONTIGUOUS:
        if (is_match == *prev_match && has_last) out->v[out->n - 1].end = e;
        else ok = pieces_push(out, s, e);
        break;
    }
    *prev_match = is_match;
    return ok;
}

typedef struct {
    size_t s, e;
    bool match;
} seg;

// Splits piece [ps, pe) of buf by one step into out.
static ds_status split_piece(const pretok_step *st, pretok_work *w, size_t ps, size_t pe, tok_pieces *out,
                             seg **segs, size_t *segs_cap, ds_error *err) {
    const char *subj = w->buf.s + ps;
    size_t len = pe - ps, n = 0, prev = 0, off = 0;
#define SEG_PUSH(A, B, M)                                                                                   \
    do {                                                                                                    \
        if (n + 1 > *segs_cap) {                                                                            \
            size_t c = *segs_cap ? *segs_cap * 2 : 64;                                                      \
            seg *v = realloc(*segs, c * sizeof *v);                                                         \
            if (!v) return ds_error_set(err, DS_ERR_OOM, "tokenizer: out of memory");                       \
            *segs = v;                                                                                      \
            *segs_cap = c;                                                                                  \
        }                                                                                                   \
        (*segs)[n++] = (seg){(A), (B), (M) != st->invert};                                                  \
    } while (0)
    while (off < len) {
        size_t ms, me;
        if (st->re) {
            int rc = pcre2_match(st->re, (PCRE2_SPTR)subj, len, off, 0, w->match_data, NULL);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) { // rc 0 (ovector too small) still holds the whole match
                PCRE2_UCHAR msg[160];
                pcre2_get_error_message(rc, msg, sizeof msg);
                return ds_error_set(err, DS_ERR_FORMAT, "tokenizer: regex match failed: %s", (const char *)msg);
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->match_data);
            ms = ov[0];
            me = ov[1];
        } else {
            const char *hit = memmem(subj + off, len - off, st->literal, st->literal_len);
            if (!hit) break;
            ms = (size_t)(hit - subj);
            me = ms + st->literal_len;
        }
        if (me == ms) { // empty match: HF drops empty splits; step over one char
            uint32_t cp;
            int cl = tok_utf8_get(subj + ms, len - ms, &cp);
            off = ms + (cl ? (size_t)cl : 1);
            continue;
        }
        if (ms > prev) SEG_PUSH(ps + prev, ps + ms, false);
        SEG_PUSH(ps + ms, ps + me, true);
        prev = off = me;
    }
    if (prev < len) SEG_PUSH(ps + prev, ps + len, false);
#undef SEG_PUSH
    size_t first = out->n;
    bool prev_match = false;
    if (st->behavior == SPLIT_MERGED_WITH_NEXT) {
        for (size_t i = n; i-- > 0;)
            if (!split_emit(out, first, st->behavior, (*segs)[i].s, (*segs)[i].e, (*segs)[i].match, &prev_match))
                return ds_error_set(err, DS_ERR_OOM, "tokenizer: out of memory");
        for (size_t i = first, j = out->n; i + 1 < j; i++, j--) { // back to text order
            tok_piece t = out->v[i];
            out->v[i] = out->v[j - 1];
            out->v[j - 1] = t;
        }
        return DS_OK;
    }
    for (size_t i = 0; i < n; i++)
        if (!split_emit(out, first, st->behavior, (*segs)[i].s, (*segs)[i].e, (*segs)[i].match, &prev_match))
            return ds_error_set(err, DS_ERR_OOM, "tokenizer: out of memory");
    return DS_OK;
}

// ByteLevel add_prefix_space: a piece not starting with ' ' is copied after the text
// with a space in front (offsets stay valid when the buffer moves).
static bool prefix_space_apply(pretok_work *w) {
    for (size_t i = 0; i < w->a.n; i++) {
        tok_piece *p = &w->a.v[i];
        if (p->end > p->start && w->buf.s[p->start] == ' ') continue;
        size_t len = p->end - p->start, at = w->buf.n;
        if (!tok_bytes_reserve(&w->buf, len + 1)) return false;
        w->buf.s[at] = ' ';
        memmove(w->buf.s + at + 1, w->buf.s + p->start, len);
        w->buf.n += len + 1;
        w->buf.s[w->buf.n] = 0;
        *p = (tok_piece){at, at + len + 1};
    }
    return true;
}

ds_status pretok_run(const tok_pretokenizer *p, pretok_work *w, size_t len, ds_error *err) {
    w->a.n = 0;
    if (!pieces_push(&w->a, 0, len)) return ds_error_set(err, DS_ERR_OOM, "tokenizer: out of memory");
    if (!w->match_data) {
        w->match_data = pcre2_match_data_create(1, NULL); // only the whole match is read
        if (!w->match_data) return ds_error_set(err, DS_ERR_OOM, "tokenizer: out of memory");
    }
    seg *segs = NULL;
    size_t segs_cap = 0;
    ds_status st = DS_OK;
    for (int k = 0; k < p->n && !st; k++) {
        const pretok_step *step = &p->steps[k];
        if (step->prefix_space && !prefix_space_apply(w)) {
            st = ds_error_set(err, DS_ERR_OOM, "tokenizer: out of memory");
            break;
        }
        if (!step->re && !step->literal) continue;
        w->b.n = 0;
        for (size_t i = 0; i < w->a.n && !st; i++)
            st = split_piece(step, w, w->a.v[i].start, w->a.v[i].end, &w->b, &segs, &segs_cap, err);
        tok_pieces t = w->a;
        w->a = w->b;
        w->b = t;
    }
    free(segs);
    return st;
}

void pretok_work_free(pretok_work *w) {
    free(w->buf.s);
    free(w->a.v);
    free(w->b.v);
    pcre2_match_data_free(w->match_data);
    *w = (pretok_work){0};
}
