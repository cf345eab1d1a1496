// Parser of the Jinja subset: tokens -> AST. Expression precedence follows Jinja's own
// parser (or < and < not < comparisons < + - < ~ < * / // % < ** < unary < filters/tests
// < postfix), so `'a' + x | trim` applies the filter to x alone, as transformers does.
#include <stdio.h>
#include <string.h>
#include "tokenizer/jinja_internal.h"

typedef struct {
    const jtok *t;
    size_t n, pos;
    jinja_arena *a;
    ds_error *err;
    int depth;
} parser;

static const jtok *peek(parser *P) { return &P->t[P->pos]; }
static const jtok *peek2(parser *P) { return &P->t[P->pos + 1 < P->n ? P->pos + 1 : P->pos]; }

static bool is_op(const jtok *t, const char *op) { return t->t == TK_OP && !strcmp(t->s, op); }
static bool is_name(const jtok *t, const char *nm) { return t->t == TK_NAME && !strcmp(t->s, nm); }

static ds_status perr(parser *P, const char *fmt, const char *arg) {
    char msg[256];
    snprintf(msg, sizeof msg, fmt, arg ? arg : "");
    return ds_error_set(P->err, DS_ERR_FORMAT, "template line %d: %s", peek(P)->line, msg);
}

static const char *tok_desc(const jtok *t) {
    switch (t->t) {
    case TK_EOF: return "end of template";
    case TK_OUT_CLOSE: return "'}}'";
    case TK_STMT_CLOSE: return "'%}'";
    case TK_NAME: case TK_OP: return t->s;
    case TK_STR: return "string";
    default: return "token";
    }
}

static jnode *node(parser *P, jnode_kind k, int line) {
    jnode *n = jinja_arena_alloc(P->a, sizeof *n);
    if (n) {
        n->kind = k;
        n->line = line;
    }
    return n;
}

#define NEW(var, kind, line)                                                         \
    jnode *var = node(P, kind, line);                                                \
    if (!var) return ds_error_set(P->err, DS_ERR_OOM, "template: out of memory")

// Growable arrays of node pointers / names inside the arena.
typedef struct { jnode **v; const char **kw; size_t n, cap; } nvec;

static bool nvec_push(parser *P, nvec *v, jnode *x, const char *kw) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        jnode **nv = jinja_arena_alloc(P->a, cap * sizeof *nv);
        const char **nk = jinja_arena_alloc(P->a, cap * sizeof *nk);
        if (!nv || !nk) return false;
        if (v->n) {
            memcpy(nv, v->v, v->n * sizeof *nv);
            memcpy(nk, v->kw, v->n * sizeof *nk);
        }
        v->v = nv;
        v->kw = nk;
        v->cap = cap;
    }
    v->kw[v->n] = kw;
    v->v[v->n++] = x;
    return true;
}

static ds_status expect_op(parser *P, const char *op) {
    if (!is_op(peek(P), op)) {
        char msg[64];
        snprintf(msg, sizeof msg, "expected '%s' but found %%s", op);
        return perr(P, msg, tok_desc(peek(P)));
    }
    P->pos++;
    return DS_OK;
}

static ds_status parse_expr(parser *P, jnode **out);
static ds_status parse_or(parser *P, jnode **out);
static ds_status parse_unary(parser *P, jnode **out);

// (a, b=1, ...) after the '(' has been consumed; keyword names recorded per argument.
static ds_status parse_args(parser *P, jnode *n) {
    nvec v = {0};
    while (!is_op(peek(P), ")")) {
        const char *kw = NULL;
        if (peek(P)->t == TK_NAME && is_op(peek2(P), "=")) {
            kw = peek(P)->s;
            P->pos += 2;
        }
        jnode *e;
        ds_status st = parse_expr(P, &e);
        if (st) return st;
        if (!nvec_push(P, &v, e, kw)) return ds_error_set(P->err, DS_ERR_OOM, "template: out of memory");
        if (!is_op(peek(P), ",")) break;
        P->pos++;
    }
    n->args = v.v;
    n->kw = v.kw;
    n->nargs = v.n;
    return expect_op(P, ")");
}

static ds_status parse_primary(parser *P, jnode **out) {
    const jtok *t = peek(P);
    ds_status st;
    if (t->t == TK_STR) {
        NEW(n, N_LIT, t->line);
        n->lit = jv_cstr(t->s);
        n->lit.u.str.n = t->n;
        P->pos++;
        // adjacent literals concatenate, as in Python
        while (peek(P)->t == TK_STR) {
            const jtok *u = peek(P);
            char *s = jinja_arena_alloc(P->a, n->lit.u.str.n + u->n + 1);
            if (!s) return ds_error_set(P->err, DS_ERR_OOM, "template: out of memory");
            memcpy(s, n->lit.u.str.s, n->lit.u.str.n);
            memcpy(s + n->lit.u.str.n, u->s, u->n);
            n->lit.u.str.s = s;
            n->lit.u.str.n += u->n;
            P->pos++;
        }
        *out = n;
        return DS_OK;
    }
    if (t->t == TK_INT || t->t == TK_FLOAT) {
        NEW(n, N_LIT, t->line);
        if (t->t == TK_INT) n->lit = jv_int(t->i);
        else n->lit = (jv){.t = JV_FLOAT, .u.f = t->f};
        P->pos++;
        *out = n;
        return DS_OK;
    }
    if (t->t == TK_NAME) {
        NEW(n, N_LIT, t->line);
        P->pos++;
        const char *s = t->s;
        if (!strcmp(s, "true") || !strcmp(s, "True")) n->lit = jv_bool(true);
        else if (!strcmp(s, "false") || !strcmp(s, "False")) n->lit = jv_bool(false);
        else if (!strcmp(s, "none") || !strcmp(s, "None")) n->lit = (jv){.t = JV_NONE};
        else {
            n->kind = N_NAME;
            n->name = s;
        }
        *out = n;
        return DS_OK;
    }
    if (is_op(t, "(")) {
        P->pos++;
        jnode *e;
        if ((st = parse_expr(P, &e))) return st;
        if (is_op(peek(P), ",")) {  // a tuple: treated as a list
            NEW(l, N_LIST, t->line);
            nvec v = {0};
            if (!nvec_push(P, &v, e, NULL)) return ds_error_set(P->err, DS_ERR_OOM, "template: out of memory");
            while (is_op(peek(P), ",")) {
                P->pos++;
                if (is_op(peek(P), ")")) break;
                if ((st = parse_expr(P, &e))) return st;
                if (!nvec_push(P, &v, e, NULL)) return ds_error_set(P->err, DS_ERR_OOM, "template: out of memory");
            }
            l->args = v.v;
            l->nargs = v.n;
            e = l;
        }
        *out = e;
        return expect_op(P, ")");
    }
    if (is_op(t, "[") || is_op(t, "{")) {
        bool dict = is_op(t, "{");
        const char *close = dict ? "}" : "]";
        NEW(l, dict ? N_DICT : N_LIST, t->line);
        P->pos++;
        nvec v = {0};
        while (!is_op(peek(P), close)) {
            jnode *e;
            if ((st = parse_expr(P, &e))) return st;
            if (!nvec_push(P, &v, e, NULL)) return ds_error_set(P->err, DS_ERR_OOM, "template: out of memory");
            if (dict) {
                if ((st = expect_op(P, ":")) || (st = parse_expr(P, &e))) return st;
                if (!nvec_push(P, &v, e, NULL)) return ds_error_set(P->err, DS_ERR_OOM, "template: out of memory");
            }
            if (!is_op(peek(P), ",")) break;
            P->pos++;
        }
        l->args = v.v;
        l->nargs = v.n;
        *out = l;
        return expect_op(P, close);
    }
    return perr(P, "unexpected %s in expression", tok_desc(t));
}

// Subscript after '[': an index or a slice a:b:c with any part omitted.
static ds_status parse_subscript(parser *P, jnode *obj, jnode **out) {
    int line = peek(P)->line;
    jnode *parts[3] = {0};
    int k = 0;
    bool slice = false;
    ds_status st;
    for (;;) {
        if (!is_op(peek(P), ":") && !is_op(peek(P), "]")) {
            if ((st = parse_expr(P, &parts[k]))) return st;
        }
        if (is_op(peek(P), ":") && k < 2) {
            slice = true;
            k++;
            P->pos++;
            continue;
        }
        break;
    }
    if ((st = expect_op(P, "]"))) return st;
    if (!slice && !parts[0]) return perr(P, "empty subscript", NULL);
    NEW(n, slice ? N_SLICE : N_INDEX, line);
    n->a = obj;
    if (slice) {
        n->args = jinja_arena_alloc(P->a, 3 * sizeof *n->args);
        if (!n->args) return ds_error_set(P->err, DS_ERR_OOM, "template: out of memory");
        memcpy(n->args, parts, sizeof parts);
        n->nargs = 3;
    } else {
        n->b = parts[0];
    }
    *out = n;
    return DS_OK;
}

static ds_status parse_postfix(parser *P, jnode **out) {
    jnode *e;
    ds_status st = parse_primary(P, &e);
    if (st) return st;
    for (;;) {
        const jtok *t = peek(P);
        if (is_op(t, ".")) {
            P->pos++;
            const jtok *nm = peek(P);
            if (nm->t == TK_INT) {  // x.0 is x[0]
                NEW(lit, N_LIT, nm->line);
                lit->lit = jv_int(nm->i);
                NEW(n, N_INDEX, nm->line);
                n->a = e;
                n->b = lit;
                e = n;
            } else {
                if (nm->t != TK_NAME) return perr(P, "expected an attribute name after '.'", NULL);
                NEW(n, N_ATTR, nm->line);
                n->a = e;
                n->name = nm->s;
                e = n;
            }
            P->pos++;
        } else if (is_op(t, "[")) {
            P->pos++;
            if ((st = parse_subscript(P, e, &e))) return st;
        } else if (is_op(t, "(")) {
            P->pos++;
            NEW(n, N_CALL, t->line);
            n->a = e;
            if ((st = parse_args(P, n))) return st;
            e = n;
        } else {
            break;
        }
    }
    *out = e;
    return DS_OK;
}

// Filters (`| name(args)`) and tests (`is [not] name [arg]`) bind tighter than operators.
static ds_status parse_filters(parser *P, jnode **io) {
    ds_status st;
    for (;;) {
        const jtok *t = peek(P);
        if (is_op(t, "|")) {
            P->pos++;
            if (peek(P)->t != TK_NAME) return perr(P, "expected a filter name after '|'", NULL);
            NEW(n, N_FILTER, t->line);
            n->a = *io;
            n->name = peek(P)->s;
            P->pos++;
            if (is_op(peek(P), "(")) {
                P->pos++;
                if ((st = parse_args(P, n))) return st;
            }
            *io = n;
        } else if (is_name(t, "is")) {
            P->pos++;
            NEW(n, N_TEST, t->line);
            if (is_name(peek(P), "not")) {
                n->negate = true;
                P->pos++;
            }
            const jtok *nm = peek(P);
            if (nm->t != TK_NAME && !(nm->t == TK_OP && (!strcmp(nm->s, "==") || !strcmp(nm->s, "!=") ||
                                                         !strcmp(nm->s, "<") || !strcmp(nm->s, ">"))))
                return perr(P, "expected a test name after 'is'", NULL);
            n->a = *io;
            n->name = nm->s;
            P->pos++;
            if (is_op(peek(P), "(")) {
                P->pos++;
                if ((st = parse_args(P, n))) return st;
            } else {
                const jtok *x = peek(P);
                bool arg = x->t == TK_STR || x->t == TK_INT || x->t == TK_FLOAT ||
                           (x->t == TK_NAME && !is_name(x, "and") && !is_name(x, "or") && !is_name(x, "else") &&
                            !is_name(x, "if") && !is_name(x, "in") && !is_name(x, "is") && !is_name(x, "not"));
                if (arg) {
                    jnode *e;
                    if ((st = parse_postfix(P, &e))) return st;
                    n->args = jinja_arena_alloc(P->a, sizeof *n->args);
                    n->kw = jinja_arena_alloc(P->a, sizeof *n->kw);
                    if (!n->args || !n->kw) return ds_error_set(P->err, DS_ERR_OOM, "template: out of memory");
                    n->args[0] = e;
                    n->nargs = 1;
                }
            }
            *io = n;
        } else {
            return DS_OK;
        }
    }
}

static ds_status parse_unary(parser *P, jnode **out) {
    const jtok *t = peek(P);
    ds_status st;
    if (++P->depth > JINJA_MAX_DEPTH) return perr(P, "expression nested too deeply", NULL);
    if (is_op(t, "-") || is_op(t, "+")) {
        P->pos++;
        NEW(n, is_op(t, "-") ? N_NEG : N_POS, t->line);
        if ((st = parse_unary(P, &n->a))) return st;
        *out = n;
    } else {
        if ((st = parse_postfix(P, out)) || (st = parse_filters(P, out))) return st;
    }
    P->depth--;
    return DS_OK;
}

// One level of left-associative binary operators, tighter levels parsed by `next`.
static ds_status parse_binary(parser *P, jnode **out, const char *const *ops, size_t nops,
                              ds_status (*next)(parser *, jnode **)) {
    ds_status st = next(P, out);
    if (st) return st;
    for (;;) {
        const jtok *t = peek(P);
        const char *op = NULL;
        for (size_t k = 0; k < nops; k++)
            if ((t->t == TK_OP || t->t == TK_NAME) && !strcmp(t->s, ops[k])) op = ops[k];
        if (!op) return DS_OK;
        P->pos++;
        NEW(n, N_BIN, t->line);
        n->name = op;
        n->a = *out;
        if ((st = next(P, &n->b))) return st;
        *out = n;
    }
}

static ds_status parse_pow(parser *P, jnode **out) {
    static const char *const ops[] = {"**"};
    return parse_binary(P, out, ops, 1, parse_unary);
}
static ds_status parse_mul(parser *P, jnode **out) {
    static const char *const ops[] = {"*", "/", "//", "%"};
    return parse_binary(P, out, ops, 4, parse_pow);
}
static ds_status parse_concat(parser *P, jnode **out) {
    static const char *const ops[] = {"~"};
    return parse_binary(P, out, ops, 1, parse_mul);
}
static ds_status parse_add(parser *P, jnode **out) {
    static const char *const ops[] = {"+", "-"};
    return parse_binary(P, out, ops, 2, parse_concat);
}

static ds_status parse_compare(parser *P, jnode **out) {
    static const char *const ops[] = {"==", "!=", "<", ">", "<=", ">="};
    ds_status st = parse_add(P, out);
    if (st) return st;
    for (;;) {
        const jtok *t = peek(P);
        const char *op = NULL;
        int skip = 1;
        for (size_t k = 0; k < 6; k++)
            if (is_op(t, ops[k])) op = ops[k];
        if (is_name(t, "in")) op = "in";
        if (is_name(t, "not") && is_name(peek2(P), "in")) {
            op = "not in";
            skip = 2;
        }
        if (!op) return DS_OK;
        P->pos += (size_t)skip;
        NEW(n, N_BIN, t->line);
        n->name = op;
        n->a = *out;
        if ((st = parse_add(P, &n->b))) return st;
        *out = n;
    }
}

static ds_status parse_not(parser *P, jnode **out) {
    const jtok *t = peek(P);
    if (is_name(t, "not")) {
        if (++P->depth > JINJA_MAX_DEPTH) return perr(P, "expression nested too deeply", NULL);
        P->pos++;
        NEW(n, N_NOT, t->line);
        ds_status st = parse_not(P, &n->a);
        if (st) return st;
        P->depth--;
        *out = n;
        return DS_OK;
    }
    return parse_compare(P, out);
}

static ds_status parse_and(parser *P, jnode **out) {
    ds_status st = parse_not(P, out);
    while (!st && is_name(peek(P), "and")) {
        NEW(n, N_AND, peek(P)->line);
        P->pos++;
        n->a = *out;
        st = parse_not(P, &n->b);
        *out = n;
    }
    return st;
}

static ds_status parse_or(parser *P, jnode **out) {
    ds_status st = parse_and(P, out);
    while (!st && is_name(peek(P), "or")) {
        NEW(n, N_OR, peek(P)->line);
        P->pos++;
        n->a = *out;
        st = parse_and(P, &n->b);
        *out = n;
    }
    return st;
}

static ds_status parse_expr(parser *P, jnode **out) {
    if (++P->depth > JINJA_MAX_DEPTH) return perr(P, "expression nested too deeply", NULL);
    ds_status st = parse_or(P, out);
    if (st) return st;
    if (is_name(peek(P), "if")) {  // x if cond else y
        NEW(n, N_COND, peek(P)->line);
        P->pos++;
        n->b = *out;
        if ((st = parse_or(P, &n->a))) return st;
        if (is_name(peek(P), "else")) {
            P->pos++;
            if ((st = parse_expr(P, &n->c))) return st;
        }
        *out = n;
    }
    P->depth--;
    return DS_OK;
}

// ---- statements ----

static ds_status parse_body(parser *P, nvec *out, const char *const *ends, size_t nends,
                            const char **which);

static ds_status expect_close(parser *P) {
    if (peek(P)->t != TK_STMT_CLOSE) return perr(P, "expected '%%}' but found %s", tok_desc(peek(P)));
    P->pos++;
    return DS_OK;
}

static ds_status parse_names(parser *P, jnode *n) {
    const char **v = jinja_arena_alloc(P->a, 8 * sizeof *v);
    if (!v) return ds_error_set(P->err, DS_ERR_OOM, "template: out of memory");
    size_t k = 0;
    for (;;) {
        if (peek(P)->t != TK_NAME || k == 8) return perr(P, "expected a variable name", NULL);
        v[k++] = peek(P)->s;
        P->pos++;
        if (!is_op(peek(P), ",")) break;
        P->pos++;
    }
    n->names = v;
    n->nnames = k;
    return DS_OK;
}

static ds_status parse_if(parser *P, int line, jnode **out) {
    static const char *const ends[] = {"elif", "else", "endif"};
    NEW(n, N_IF, line);
    ds_status st;
    if ((st = parse_expr(P, &n->a)) || (st = expect_close(P))) return st;
    nvec body = {0};
    const char *which;
    if ((st = parse_body(P, &body, ends, 3, &which))) return st;
    n->body = body.v;
    n->nbody = body.n;
    if (!strcmp(which, "elif")) {
        jnode *sub;
        if ((st = parse_if(P, peek(P)->line, &sub))) return st;  // consumes the endif
        n->els = jinja_arena_alloc(P->a, sizeof *n->els);
        if (!n->els) return ds_error_set(P->err, DS_ERR_OOM, "template: out of memory");
        n->els[0] = sub;
        n->nels = 1;
    } else {
        if ((st = expect_close(P))) return st;
        if (!strcmp(which, "else")) {
            static const char *const endif[] = {"endif"};
            nvec els = {0};
            if ((st = parse_body(P, &els, endif, 1, &which)) || (st = expect_close(P))) return st;
            n->els = els.v;
            n->nels = els.n;
        }
    }
    *out = n;
    return DS_OK;
}

static ds_status parse_for(parser *P, int line, jnode **out) {
    static const char *const ends[] = {"else", "endfor"};
    NEW(n, N_FOR, line);
    ds_status st;
    if ((st = parse_names(P, n))) return st;
    if (!is_name(peek(P), "in")) return perr(P, "expected 'in' in for loop", NULL);
    P->pos++;
    if ((st = parse_or(P, &n->a))) return st;
    if (is_name(peek(P), "if")) {
        P->pos++;
        if ((st = parse_or(P, &n->b))) return st;
    }
    if (is_name(peek(P), "recursive")) return perr(P, "unsupported recursive for loop", NULL);
    if ((st = expect_close(P))) return st;
    nvec body = {0}, els = {0};
    const char *which;
    if ((st = parse_body(P, &body, ends, 2, &which)) || (st = expect_close(P))) return st;
    if (!strcmp(which, "else")) {
        if ((st = parse_body(P, &els, ends + 1, 1, &which)) || (st = expect_close(P))) return st;
    }
    n->body = body.v;
    n->nbody = body.n;
    n->els = els.v;
    n->nels = els.n;
    *out = n;
    return DS_OK;
}

static ds_status parse_set(parser *P, int line, jnode **out) {
    ds_status st;
    NEW(n, N_SET, line);
    if (peek(P)->t == TK_NAME && is_op(peek2(P), ".")) {  // set ns.attr = value
        n->kind = N_SET_ATTR;
        n->names = jinja_arena_alloc(P->a, 2 * sizeof *n->names);
        if (!n->names) return ds_error_set(P->err, DS_ERR_OOM, "template: out of memory");
        n->names[0] = peek(P)->s;
        P->pos += 2;
        if (peek(P)->t != TK_NAME) return perr(P, "expected an attribute name", NULL);
        n->names[1] = peek(P)->s;
        n->nnames = 2;
        P->pos++;
    } else if ((st = parse_names(P, n))) {
        return st;
    }
    if (peek(P)->t == TK_STMT_CLOSE && n->kind == N_SET && n->nnames == 1) {  // {% set x %}...{% endset %}
        static const char *const ends[] = {"endset"};
        const char *which;
        nvec body = {0};
        P->pos++;
        if ((st = parse_body(P, &body, ends, 1, &which)) || (st = expect_close(P))) return st;
        n->kind = N_SET_BLOCK;
        n->body = body.v;
        n->nbody = body.n;
        *out = n;
        return DS_OK;
    }
    if ((st = expect_op(P, "=")) || (st = parse_expr(P, &n->a)) || (st = expect_close(P))) return st;
    *out = n;
    return DS_OK;
}

static ds_status parse_macro(parser *P, int line, jnode **out) {
    static const char *const ends[] = {"endmacro"};
    ds_status st;
    NEW(n, N_MACRO, line);
    if (peek(P)->t != TK_NAME) return perr(P, "expected a macro name", NULL);
    n->name = peek(P)->s;
    P->pos++;
    if ((st = expect_op(P, "("))) return st;
    // parameters reuse the call-argument syntax: a positional name or name=default
    NEW(params, N_CALL, line);
    if ((st = parse_args(P, params))) return st;
    n->names = jinja_arena_alloc(P->a, (params->nargs + 1) * sizeof *n->names);
    n->args = jinja_arena_alloc(P->a, (params->nargs + 1) * sizeof *n->args);
    if (!n->names || !n->args) return ds_error_set(P->err, DS_ERR_OOM, "template: out of memory");
    for (size_t k = 0; k < params->nargs; k++) {
        jnode *p = params->args[k];
        if (params->kw[k]) {
            n->names[k] = params->kw[k];
            n->args[k] = p;
        } else if (p->kind == N_NAME) {
            n->names[k] = p->name;
        } else {
            return perr(P, "bad macro parameter", NULL);
        }
    }
    n->nnames = n->nargs = params->nargs;
    nvec body = {0};
    const char *which;
    if ((st = expect_close(P)) || (st = parse_body(P, &body, ends, 1, &which)) || (st = expect_close(P))) return st;
    n->body = body.v;
    n->nbody = body.n;
    *out = n;
    return DS_OK;
}

static ds_status parse_statement(parser *P, jnode **out) {
    const jtok *kw = peek(P);
    if (kw->t != TK_NAME) return perr(P, "expected a statement name but found %s", tok_desc(kw));
    P->pos++;
    ds_status st;
    if (!strcmp(kw->s, "if")) return parse_if(P, kw->line, out);
    if (!strcmp(kw->s, "for")) return parse_for(P, kw->line, out);
    if (!strcmp(kw->s, "set")) return parse_set(P, kw->line, out);
    if (!strcmp(kw->s, "macro")) return parse_macro(P, kw->line, out);
    if (!strcmp(kw->s, "break") || !strcmp(kw->s, "continue")) {
        NEW(n, !strcmp(kw->s, "break") ? N_BREAK : N_CONTINUE, kw->line);
        *out = n;
        return expect_close(P);
    }
    if (!strcmp(kw->s, "generation")) {  // transformers' assistant-mask marker: renders its body
        static const char *const ends[] = {"endgeneration"};
        NEW(n, N_BLOCK, kw->line);
        nvec body = {0};
        const char *which;
        if ((st = expect_close(P)) || (st = parse_body(P, &body, ends, 1, &which)) || (st = expect_close(P)))
            return st;
        n->body = body.v;
        n->nbody = body.n;
        *out = n;
        return DS_OK;
    }
    P->pos--;
    return perr(P, "unsupported statement '%s'", kw->s);
}

// Statements until one of `ends` (its keyword consumed, its '%}' not) or the end of input.
static ds_status parse_body(parser *P, nvec *out, const char *const *ends, size_t nends,
                            const char **which) {
    ds_status st;
    if (++P->depth > JINJA_MAX_DEPTH) return perr(P, "blocks nested too deeply", NULL);
    for (;;) {
        const jtok *t = peek(P);
        jnode *n = NULL;
        if (t->t == TK_EOF) {
            if (nends == 0) break;
            return ds_error_set(P->err, DS_ERR_FORMAT, "template line %d: unexpected end of template, expected '{%% %s %%}'",
                                t->line, ends[nends - 1]);
        } else if (t->t == TK_TEXT) {
            NEW(x, N_TEXT, t->line);
            x->lit = jv_cstr(t->s);
            x->lit.u.str.n = t->n;
            n = x;
            P->pos++;
        } else if (t->t == TK_OUT_OPEN) {
            NEW(x, N_OUT, t->line);
            P->pos++;
            if ((st = parse_expr(P, &x->a))) return st;
            if (peek(P)->t != TK_OUT_CLOSE) return perr(P, "expected '}}' but found %s", tok_desc(peek(P)));
            P->pos++;
            n = x;
        } else if (t->t == TK_STMT_OPEN) {
            const jtok *kw = peek2(P);
            for (size_t k = 0; k < nends; k++) {
                if (kw->t == TK_NAME && !strcmp(kw->s, ends[k])) {
                    P->pos += 2;
                    *which = ends[k];
                    P->depth--;
                    return DS_OK;
                }
            }
            if (kw->t == TK_NAME && (!strncmp(kw->s, "end", 3) || !strcmp(kw->s, "else") || !strcmp(kw->s, "elif"))) {
                P->pos++;
                return perr(P, "unexpected '%s'", kw->s);
            }
            P->pos++;
            if ((st = parse_statement(P, &n))) return st;
        } else {
            return perr(P, "unexpected %s", tok_desc(t));
        }
        if (!nvec_push(P, out, n, NULL)) return ds_error_set(P->err, DS_ERR_OOM, "template: out of memory");
    }
    P->depth--;
    return DS_OK;
}

ds_status jinja_parse_template(const jtok *toks, size_t ntoks, jinja_arena *a, jnode **root,
                               ds_error *err) {
    parser ps = {.t = toks, .n = ntoks, .a = a, .err = err}, *P = &ps;
    NEW(r, N_BLOCK, 1);
    nvec body = {0};
    ds_status st = parse_body(P, &body, NULL, 0, NULL);
    if (st) return st;
    r->body = body.v;
    r->nbody = body.n;
    *root = r;
    return DS_OK;
}
