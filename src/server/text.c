#include "server/text.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void srv_buf_add(srv_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (b->len + n + 1 > c) c *= 2;
        char *p = realloc(b->p, c);
        if (!p) { b->oom = true; return; }
        b->p = p;
        b->cap = c;
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void srv_buf_puts(srv_buf *b, const char *s) { srv_buf_add(b, s, strlen(s)); }

void srv_buf_printf(srv_buf *b, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof small) { srv_buf_add(b, small, (size_t)n); return; }
    char *big = malloc((size_t)n + 1);
    if (!big) { b->oom = true; return; }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    srv_buf_add(b, big, (size_t)n);
    free(big);
}

void srv_buf_free(srv_buf *b) {
    free(b->p);
    *b = (srv_buf){0};
}

// ---- stop sequences -------------------------------------------------------------------------

long stop_find(const char *text, size_t len, size_t from, char *const *stops, int n) {
    long best = -1;
    for (int i = 0; i < n; i++) {
        size_t sl = strlen(stops[i]);
        if (sl == 0 || sl > len) continue;
        // A match ending at or after `from` starts at or after from - sl + 1.
        size_t start = from + 1 > sl ? from + 1 - sl : 0;
        const char *p = memmem(text + start, len - start, stops[i], sl);
        if (p && (best < 0 || p - text < best)) best = p - text;
    }
    return best;
}

size_t stop_safe_len(const char *text, size_t len, char *const *stops, int n) {
    size_t keep = 0; // longest held suffix
    for (int i = 0; i < n; i++) {
        size_t sl = strlen(stops[i]);
        if (sl == 0) continue;
        for (size_t k = sl - 1 < len ? sl - 1 : len; k > keep; k--)
            if (memcmp(text + len - k, stops[i], k) == 0) { keep = k; break; }
    }
    return len - keep;
}

// ---- reasoning split ------------------------------------------------------------------------

enum { TS_START, TS_REASON, TS_AFTER, TS_ANSWER };
static const char OPEN[] = "<think>", CLOSE[] = "</think>";

void think_split_init(think_split *t, bool in_reasoning) {
    memset(t, 0, sizeof *t);
    t->in_reasoning = in_reasoning;
    t->state = TS_START;
}

static void ts_char(think_split *t, char c, srv_buf *r, srv_buf *a);

// START gave up on "<think>": the held bytes belong to the state the prompt decided.
static void ts_leave_start(think_split *t, srv_buf *r, srv_buf *a) {
    char held[sizeof t->hold];
    int n = t->n_hold;
    memcpy(held, t->hold, (size_t)n);
    t->n_hold = 0;
    t->state = t->in_reasoning ? TS_REASON : TS_ANSWER;
    for (int i = 0; i < n; i++) ts_char(t, held[i], r, a);
}

static void ts_char(think_split *t, char c, srv_buf *r, srv_buf *a) {
    switch (t->state) {
    case TS_START: {
        t->hold[t->n_hold++] = c;
        int ws = 0;
        while (ws < t->n_hold && (t->hold[ws] == ' ' || t->hold[ws] == '\n')) ws++;
        int tag = t->n_hold - ws;
        if (tag == 7 && memcmp(t->hold + ws, OPEN, 7) == 0) {
            t->n_hold = 0;
            t->state = TS_REASON;
        } else if (memcmp(t->hold + ws, OPEN, (size_t)tag) != 0 || t->n_hold >= (int)sizeof t->hold - 1) {
            ts_leave_start(t, r, a);
        }
        break;
    }
    case TS_REASON:
        t->hold[t->n_hold++] = c;
        // Emit bytes from the front until the held rest could still begin "</think>".
        while (t->n_hold && memcmp(t->hold, CLOSE, (size_t)t->n_hold) != 0) {
            srv_buf_add(r, t->hold, 1);
            memmove(t->hold, t->hold + 1, (size_t)--t->n_hold);
        }
        if (t->n_hold == 8) {
            t->n_hold = 0;
            t->state = TS_AFTER;
        }
        break;
    case TS_AFTER:
        if (c == '\n') break;
        t->state = TS_ANSWER;
        srv_buf_add(a, &c, 1);
        break;
    default:
        srv_buf_add(a, &c, 1);
    }
}

void think_split_push(think_split *t, const char *s, size_t n, srv_buf *reasoning, srv_buf *answer) {
    if (t->state == TS_ANSWER) { // the common case, no per-byte work
        srv_buf_add(answer, s, n);
        return;
    }
    for (size_t i = 0; i < n; i++) ts_char(t, s[i], reasoning, answer);
}

void think_split_flush(think_split *t, srv_buf *reasoning, srv_buf *answer) {
    if (t->state == TS_START && t->n_hold) {
        // Unfinished "<think>" prefix: no tag after all.
        srv_buf_add(t->in_reasoning ? reasoning : answer, t->hold, (size_t)t->n_hold);
    } else if (t->state == TS_REASON && t->n_hold) {
        srv_buf_add(reasoning, t->hold, (size_t)t->n_hold);
    }
    t->n_hold = 0;
}

// ---- UTF-8 ---------------------------------------------------------------------------------

bool utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c < 0x80) { i++; continue; }
        int len;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; }
        else return false;
        if (i + (size_t)len > n) return false;
        for (int k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        i += (size_t)len;
    }
    return true;
}
