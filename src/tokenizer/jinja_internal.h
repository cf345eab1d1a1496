// Internals of the Jinja subset shared by the lexer, parser and evaluator (jinja_*.c).
// Everything a render allocates (tokens, AST, values, strings) lives in one arena that
// is freed when the render ends, so no value needs reference counting.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/status.h"

// Limits that keep a hostile or buggy template from exhausting the machine.
#define JINJA_MAX_DEPTH 200                  // nested expressions/statements/macro calls
#define JINJA_MAX_OUTPUT (64u << 20)         // bytes of rendered text
#define JINJA_MAX_ARENA ((size_t)512 << 20)  // bytes of scratch memory per render
#define JINJA_MAX_ITERATIONS 1000000L        // loop iterations per render

// ---- arena ----
typedef struct jinja_block jinja_block;
typedef struct {
    jinja_block *head;
    size_t total;
} jinja_arena;

void *jinja_arena_alloc(jinja_arena *a, size_t n);  // zeroed; NULL when over the limit
void jinja_arena_free(jinja_arena *a);

// ---- values ----
typedef enum {
    JV_UNDEF, JV_NONE, JV_BOOL, JV_INT, JV_FLOAT, JV_STR, JV_LIST, JV_DICT, JV_NS,
    JV_FUNC,    // a global function (namespace, range, raise_exception, strftime_now)
    JV_METHOD,  // a bound method of a string or dict: self + name
    JV_MACRO,
} jv_type;

typedef struct jv jv;
typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jnode jnode;

struct jv {
    jv_type t;
    union {
        bool b;
        int64_t i;
        double f;
        struct { const char *s; size_t n; } str;
        jlist *list;
        jdict *dict;             // JV_DICT and JV_NS
        const jnode *macro;
        struct { const char *name; jv *self; } fn;  // JV_FUNC (self NULL) and JV_METHOD
    } u;
};

struct jlist { jv *items; size_t n, cap; };
// An insertion-ordered map; chat-template dicts are small, so lookups are linear.
struct jdict { const char **keys; size_t *klen; jv *vals; size_t n, cap; };

// ---- tokens ----
typedef enum {
    TK_EOF, TK_TEXT, TK_OUT_OPEN, TK_OUT_CLOSE, TK_STMT_OPEN, TK_STMT_CLOSE,
    TK_NAME, TK_STR, TK_INT, TK_FLOAT, TK_OP,
} jtok_type;

typedef struct {
    jtok_type t;
    int line;
    const char *s;  // text, name, decoded string or operator (arena, NUL-terminated)
    size_t n;
    int64_t i;
    double f;
} jtok;

// Byte length of the Unicode whitespace character at s (JavaScript's \s set), 0 if none.
size_t jinja_space_len(const char *s, size_t avail);

ds_status jinja_lex_template(const char *src, jinja_arena *a, jtok **toks, size_t *ntoks,
                             ds_error *err);

// ---- AST ----
typedef enum {
    // expressions
    N_LIT, N_NAME, N_ATTR, N_INDEX, N_SLICE, N_CALL, N_FILTER, N_TEST, N_NOT, N_NEG, N_POS,
    N_BIN, N_AND, N_OR, N_COND, N_LIST, N_DICT,
    // statements
    N_TEXT, N_OUT, N_IF, N_FOR, N_SET, N_SET_ATTR, N_SET_BLOCK, N_MACRO, N_BREAK, N_CONTINUE,
    N_BLOCK,
} jnode_kind;

struct jnode {
    jnode_kind kind;
    int line;
    jv lit;              // N_LIT value, N_TEXT string
    const char *name;    // identifier, attribute, filter/test/macro name, binary operator
    bool negate;         // N_TEST "is not"
    jnode *a, *b, *c;    // operands: object/condition/iterable/value, loop filter, ...
    jnode **args;        // call/filter/test args, list items, dict key/value pairs, slice parts
    const char **kw;     // keyword name per arg (NULL for positional)
    size_t nargs;
    const char **names;  // for/set targets, macro parameters
    size_t nnames;
    jnode **body, **els;  // statement blocks
    size_t nbody, nels;
};

ds_status jinja_parse_template(const jtok *toks, size_t ntoks, jinja_arena *a, jnode **root,
                               ds_error *err);

// ---- helpers shared by the evaluator and the builtins ----
typedef struct jinja_ctx jinja_ctx;
struct scope;
struct jinja_ctx {
    jinja_arena arena;
    ds_error *err;
    struct scope *globals;
    int depth;
    long iterations;
    int loop_ctl;  // 1 = break, 2 = continue pending
};

jv jv_str(jinja_ctx *c, const char *s, size_t n);  // copies into the arena
jv jv_cstr(const char *s);                         // wraps a static/arena string
jv jv_int(int64_t i);
jv jv_bool(bool b);
jv jv_undef(void);
jlist *jlist_new(jinja_ctx *c);
bool jlist_push(jinja_ctx *c, jlist *l, jv v);
jdict *jdict_new(jinja_ctx *c);
bool jdict_set(jinja_ctx *c, jdict *d, const char *k, size_t kn, jv v);
jv *jdict_get(const jdict *d, const char *k, size_t kn);

bool jv_truthy(jv v);
bool jv_is_num(jv v);  // int, float or bool (bools count as 0/1 in arithmetic)
double jv_num(jv v);
bool jv_equal(jv a, jv b);
const char *jv_type_name(jv v);

// Growable byte buffer used for the output and for building strings.
typedef struct { char *p; size_t n, cap; bool fail; } jbuf;
void jbuf_put(jbuf *b, const char *s, size_t n);
void jbuf_putc(jbuf *b, char ch);

// Appends how {{ v }} prints v (@huggingface/jinja conventions). False if v has no text form.
bool jv_render(jbuf *b, jv v);
// JSON text of v as Python's json.dumps / @huggingface/jinja's tojson write it.
bool jv_tojson(jbuf *b, jv v, int indent, int depth, bool ensure_ascii, bool sort_keys);
void jv_format_number(jbuf *b, double f);  // JavaScript Number#toString

ds_status jinja_fail(jinja_ctx *c, int line, ds_status code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
ds_status jinja_oom(jinja_ctx *c, int line);

// Builtins (jinja_builtins.c): positional args, keyword names per arg (NULL = positional).
typedef struct {
    jv *v;
    const char **kw;
    size_t n;
} jargs;

ds_status jinja_call_filter(jinja_ctx *c, int line, const char *name, jv in, jargs *args,
                            jv *out);
ds_status jinja_call_test(jinja_ctx *c, int line, const char *name, jv in, jargs *args,
                          bool *out);
ds_status jinja_call_method(jinja_ctx *c, int line, jv self, const char *name, jargs *args,
                            jv *out);
ds_status jinja_call_global(jinja_ctx *c, int line, const char *name, jargs *args, jv *out);
bool jinja_is_global(const char *name);
bool jinja_has_method(jv self, const char *name);
