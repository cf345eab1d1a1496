// Text helpers of the server: a growing byte buffer, stop-sequence matching on streamed text,
// and the streaming split of R1 output into reasoning (inside <think>...</think>) and answer.
#pragma once
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *p;        // NUL-terminated when non-NULL
    size_t len, cap;
    bool oom;       // an append failed (the buffer keeps what fitted before)
} srv_buf;

void srv_buf_add(srv_buf *b, const char *s, size_t n);
void srv_buf_puts(srv_buf *b, const char *s);
void srv_buf_printf(srv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void srv_buf_free(srv_buf *b);

// The first match of any stop string in text[from, len) (a match may begin before `from` as
// long as it ends at or after it): its offset, or -1.
long stop_find(const char *text, size_t len, size_t from, char *const *stops, int n);
// len minus the longest suffix of text that is a proper prefix of a stop string: the part
// that can be sent without later being cut by a stop sequence.
size_t stop_safe_len(const char *text, size_t len, char *const *stops, int n);

// Streaming reasoning split. Output may begin with optional whitespace and "<think>" (dropped);
// then, or from the start when the prompt opened the block (R1's generation prompt ends in
// "<think>\n"), text up to "</think>" is reasoning; newlines right after "</think>" are dropped
// and everything else is answer. Any split of the text into pieces gives the same result;
// tag fragments at the end of a piece are held until the next one decides them.
typedef struct {
    int state;
    bool in_reasoning;
    char hold[40];  // undecided bytes (whitespace + tag prefix)
    int n_hold;
} think_split;

void think_split_init(think_split *t, bool in_reasoning);
void think_split_push(think_split *t, const char *s, size_t n, srv_buf *reasoning, srv_buf *answer);
// End of output: held bytes go where they belong.
void think_split_flush(think_split *t, srv_buf *reasoning, srv_buf *answer);

// True when s[0, n) is valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF).
bool utf8_valid(const char *s, size_t n);
