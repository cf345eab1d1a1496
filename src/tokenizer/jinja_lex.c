// Lexer of the Jinja subset: splits a template into text and tag tokens and applies the
// whitespace rules Hugging Face renders chat templates with (trim_blocks, lstrip_blocks,
// '-' markers, one trailing newline dropped), so the parser never sees layout.
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include "tokenizer/jinja_internal.h"

typedef struct {
    const char *src;
    size_t len, pos;
    int line;
    jinja_arena *a;
    jtok *toks;
    size_t n, cap;
    ds_error *err;
} lexer;

// Byte length of a Unicode whitespace character at s (JavaScript's \s set, which
// String#trim and the '-' markers use in @huggingface/jinja), 0 if none.
size_t jinja_space_len(const char *s, size_t avail) {
    const unsigned char *u = (const unsigned char *)s;
    if (avail == 0) return 0;
    if (u[0] == ' ' || (u[0] >= '\t' && u[0] <= '\r')) return 1;
    if (avail >= 2 && u[0] == 0xC2 && u[1] == 0xA0) return 2;  // U+00A0
    if (avail < 3) return 0;
    unsigned cp = ((u[0] & 0x0Fu) << 12) | ((u[1] & 0x3Fu) << 6) | (u[2] & 0x3Fu);
    if ((u[0] & 0xF0) != 0xE0 || (u[1] & 0xC0) != 0x80 || (u[2] & 0xC0) != 0x80) return 0;
    if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
        cp == 0x202F || cp == 0x205F || cp == 0x3000 || cp == 0xFEFF)
        return 3;
    return 0;
}

// Length of s[0..n) with trailing Unicode whitespace removed.
static size_t lex_rtrim_len(const char *s, size_t n) {
    for (;;) {
        if (n >= 1 && jinja_space_len(s + n - 1, 1) == 1) { n--; continue; }
        if (n >= 2 && jinja_space_len(s + n - 2, 2) == 2) { n -= 2; continue; }
        if (n >= 3 && jinja_space_len(s + n - 3, 3) == 3) { n -= 3; continue; }
        return n;
    }
}

static void lex_skip_space(lexer *L) {
    size_t k;
    while ((k = jinja_space_len(L->src + L->pos, L->len - L->pos)) > 0) {
        if (L->src[L->pos] == '\n') L->line++;
        L->pos += k;
    }
}

static jtok *lex_push(lexer *L, jtok_type t, int line) {
    if (L->n == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256;
        jtok *nt = jinja_arena_alloc(L->a, cap * sizeof *nt);
        if (!nt) return NULL;
        if (L->n) memcpy(nt, L->toks, L->n * sizeof *nt);
        L->toks = nt;
        L->cap = cap;
    }
    jtok *t0 = &L->toks[L->n++];
    memset(t0, 0, sizeof *t0);
    t0->t = t;
    t0->line = line;
    return t0;
}

static ds_status lex_error(lexer *L, const char *what) {
    return ds_error_set(L->err, DS_ERR_FORMAT, "template line %d: %s", L->line, what);
}

static int lex_hex(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static size_t lex_put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

// A quoted string literal with Python-style escapes; unknown escapes stay as written.
static ds_status lex_string(lexer *L) {
    char q = L->src[L->pos++];
    int line = L->line;
    size_t start = L->pos;
    while (L->pos < L->len && L->src[L->pos] != q) {
        if (L->src[L->pos] == '\\' && L->pos + 1 < L->len) L->pos++;
        if (L->src[L->pos] == '\n') L->line++;
        L->pos++;
    }
    if (L->pos >= L->len) return lex_error(L, "unterminated string literal");
    size_t raw = L->pos - start;
    char *o = jinja_arena_alloc(L->a, raw + 1);
    if (!o) return ds_error_set(L->err, DS_ERR_OOM, "template: out of memory");
    size_t k = 0;
    for (size_t i = start; i < L->pos; i++) {
        char ch = L->src[i];
        if (ch != '\\') { o[k++] = ch; continue; }
        char e = L->src[++i];
        switch (e) {
        case 'n': o[k++] = '\n'; break;
        case 't': o[k++] = '\t'; break;
        case 'r': o[k++] = '\r'; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'v': o[k++] = '\v'; break;
        case '0': o[k++] = '\0'; break;
        case '\\': case '\'': case '"': o[k++] = e; break;
        case 'x': case 'u': {
            int nd = e == 'x' ? 2 : 4;
            unsigned cp = 0;
            int ok = i + (size_t)nd < L->pos;
            for (int d = 1; ok && d <= nd; d++) {
                int h = lex_hex(L->src[i + (size_t)d]);
                if (h < 0) ok = 0; else cp = cp * 16 + (unsigned)h;
            }
            if (!ok || (cp >= 0xD800 && cp <= 0xDFFF)) {
                L->line = line;
                return lex_error(L, "unsupported escape in string literal");
            }
            k += lex_put_utf8(o + k, cp);  // \xHH/\uHHHH never need more bytes than written
            i += (size_t)nd;
            break;
        }
        default: o[k++] = '\\'; o[k++] = e; break;
        }
    }
    o[k] = 0;
    L->pos++;
    jtok *t = lex_push(L, TK_STR, line);
    if (!t) return ds_error_set(L->err, DS_ERR_OOM, "template: out of memory");
    t->s = o;
    t->n = k;
    return DS_OK;
}

static ds_status lex_number(lexer *L) {
    size_t start = L->pos;
    while (L->pos < L->len && L->src[L->pos] >= '0' && L->src[L->pos] <= '9') L->pos++;
    bool is_float = false;
    // "x.0" after a dot is an attribute index, not a float (x.0.1 never appears here)
    bool after_dot = L->n > 0 && L->toks[L->n - 1].t == TK_OP && !strcmp(L->toks[L->n - 1].s, ".");
    if (!after_dot && L->pos + 1 < L->len && L->src[L->pos] == '.' && L->src[L->pos + 1] >= '0' &&
        L->src[L->pos + 1] <= '9') {
        is_float = true;
        L->pos++;
        while (L->pos < L->len && L->src[L->pos] >= '0' && L->src[L->pos] <= '9') L->pos++;
    }
    char buf[64];
    size_t n = L->pos - start;
    if (n >= sizeof buf) return lex_error(L, "number literal too long");
    memcpy(buf, L->src + start, n);
    buf[n] = 0;
    jtok *t = lex_push(L, is_float ? TK_FLOAT : TK_INT, L->line);
    if (!t) return ds_error_set(L->err, DS_ERR_OOM, "template: out of memory");
    if (is_float) {
        t->f = strtod(buf, NULL);
    } else {
        if (n > 18) return lex_error(L, "integer literal too large");
        t->i = strtoll(buf, NULL, 10);
    }
    return DS_OK;
}

static const char *const lex_ops[] = {
    "==", "!=", "<=", ">=", "//", "**", "+", "-", "*", "/", "%", "~", "<", ">", "(", ")",
    "[", "]", "{", "}", ",", ".", ":", "|", "=",
};

// Tokens inside {{ }} or {% %} up to the closing marker; `close` is "}}" or "%}".
static ds_status lex_tag(lexer *L, const char *close, jtok_type close_type) {
    int braces = 0;  // '}}' inside a dict literal does not close an expression
    for (;;) {
        lex_skip_space(L);
        if (L->pos >= L->len) return lex_error(L, close_type == TK_OUT_CLOSE ? "unclosed '{{'" : "unclosed '{%'");
        const char *p = L->src + L->pos;
        size_t rest = L->len - L->pos;
        bool dash = rest >= 3 && p[0] == '-' && !strncmp(p + 1, close, 2);
        if ((dash || (rest >= 2 && !strncmp(p, close, 2))) && !(close_type == TK_OUT_CLOSE && braces > 0)) {
            if (!lex_push(L, close_type, L->line)) return ds_error_set(L->err, DS_ERR_OOM, "template: out of memory");
            L->pos += dash ? 3 : 2;
            // trim_blocks: the first newline after a block tag goes
            if (close_type == TK_STMT_CLOSE && L->pos < L->len && L->src[L->pos] == '\n') {
                L->pos++;
                L->line++;
            }
            if (dash) lex_skip_space(L);
            return DS_OK;
        }
        char ch = *p;
        ds_status st;
        if (ch == '\'' || ch == '"') {
            if ((st = lex_string(L))) return st;
        } else if (ch >= '0' && ch <= '9') {
            if ((st = lex_number(L))) return st;
        } else if (ch == '_' || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')) {
            size_t s0 = L->pos;
            while (L->pos < L->len && (L->src[L->pos] == '_' || (L->src[L->pos] >= 'a' && L->src[L->pos] <= 'z') ||
                                       (L->src[L->pos] >= 'A' && L->src[L->pos] <= 'Z') ||
                                       (L->src[L->pos] >= '0' && L->src[L->pos] <= '9')))
                L->pos++;
            jtok *t = lex_push(L, TK_NAME, L->line);
            char *s = jinja_arena_alloc(L->a, L->pos - s0 + 1);
            if (!t || !s) return ds_error_set(L->err, DS_ERR_OOM, "template: out of memory");
            memcpy(s, L->src + s0, L->pos - s0);
            t->s = s;
            t->n = L->pos - s0;
        } else {
            size_t k = 0;
            for (; k < sizeof lex_ops / sizeof *lex_ops; k++)
                if (!strncmp(p, lex_ops[k], strlen(lex_ops[k]))) break;
            if (k == sizeof lex_ops / sizeof *lex_ops) {
                char msg[64];
                snprintf(msg, sizeof msg, "unexpected character '%c'", ch);
                return lex_error(L, msg);
            }
            jtok *t = lex_push(L, TK_OP, L->line);
            if (!t) return ds_error_set(L->err, DS_ERR_OOM, "template: out of memory");
            t->s = lex_ops[k];
            t->n = strlen(lex_ops[k]);
            L->pos += t->n;
            if (ch == '{') braces++;
            if (ch == '}' && braces > 0) braces--;
        }
    }
}

// Text up to the next tag, with lstrip_blocks and '-' applied to its end.
static ds_status lex_text(lexer *L) {
    size_t start = L->pos;
    int line = L->line;
    size_t k = L->pos;
    while (k < L->len && !(L->src[k] == '{' && k + 1 < L->len &&
                           (L->src[k + 1] == '{' || L->src[k + 1] == '%' || L->src[k + 1] == '#')))
        k++;
    size_t end = k;
    if (k < L->len) {
        char kind = L->src[k + 1];
        if (k + 2 < L->len && L->src[k + 2] == '-') {
            end = start + lex_rtrim_len(L->src + start, end - start);
        } else if (kind == '%' || kind == '#') {
            // lstrip_blocks: spaces and tabs from the start of the line to a block tag go
            size_t b = end;
            while (b > 0 && (L->src[b - 1] == ' ' || L->src[b - 1] == '\t')) b--;
            if (b == 0 || L->src[b - 1] == '\n') end = b < start ? start : b;
        }
    }
    for (size_t i = start; i < k; i++)
        if (L->src[i] == '\n') L->line++;
    L->pos = k;
    if (end > start) {
        jtok *t = lex_push(L, TK_TEXT, line);
        if (!t) return ds_error_set(L->err, DS_ERR_OOM, "template: out of memory");
        t->s = L->src + start;
        t->n = end - start;
    }
    return DS_OK;
}

static ds_status lex_comment(lexer *L) {
    int line = L->line;
    const char *end = NULL;
    for (size_t k = L->pos + 2; k + 1 < L->len; k++)
        if (L->src[k] == '#' && L->src[k + 1] == '}') { end = L->src + k; break; }
    if (!end) {
        L->line = line;
        return lex_error(L, "unclosed comment '{#'");
    }
    size_t close = (size_t)(end - L->src);
    for (size_t i = L->pos; i < close; i++)
        if (L->src[i] == '\n') L->line++;
    bool dash = close > L->pos + 2 && L->src[close - 1] == '-';
    L->pos = close + 2;
    if (L->pos < L->len && L->src[L->pos] == '\n') {  // trim_blocks applies to comments too
        L->pos++;
        L->line++;
    }
    if (dash) lex_skip_space(L);
    return DS_OK;
}

ds_status jinja_lex_template(const char *src, jinja_arena *a, jtok **toks, size_t *ntoks,
                             ds_error *err) {
    lexer L = {.src = src, .len = strlen(src), .line = 1, .a = a, .err = err};
    if (L.len > 0 && src[L.len - 1] == '\n') L.len--;  // Jinja drops one trailing newline
    ds_status st = DS_OK;
    while (L.pos < L.len && !st) {
        if (L.src[L.pos] == '{' && L.pos + 1 < L.len && L.src[L.pos + 1] == '#') {
            st = lex_comment(&L);
        } else if (L.src[L.pos] == '{' && L.pos + 1 < L.len && (L.src[L.pos + 1] == '{' || L.src[L.pos + 1] == '%')) {
            bool out = L.src[L.pos + 1] == '{';
            if (!lex_push(&L, out ? TK_OUT_OPEN : TK_STMT_OPEN, L.line))
                return ds_error_set(err, DS_ERR_OOM, "template: out of memory");
            L.pos += 2;
            if (L.pos < L.len && (L.src[L.pos] == '-' || L.src[L.pos] == '+')) L.pos++;
            st = lex_tag(&L, out ? "}}" : "%}", out ? TK_OUT_CLOSE : TK_STMT_CLOSE);
        } else {
            st = lex_text(&L);
        }
    }
    if (st) return st;
    if (!lex_push(&L, TK_EOF, L.line)) return ds_error_set(err, DS_ERR_OOM, "template: out of memory");
    *toks = L.toks;
    *ntoks = L.n;
    return DS_OK;
}
