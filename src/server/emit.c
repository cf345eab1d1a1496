#include "server/emit.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

bool emit_init(emit_state *es, const ds_tokenizer *tok, const char *id, const char *model, bool chat, bool split,
               bool opens_reasoning, bool include_usage, sched_job *job) {
    memset(es, 0, sizeof *es);
    es->tok = tok;
    snprintf(es->id, sizeof es->id, "%s", id);
    es->model = model;
    es->created = (long)time(NULL);
    es->chat = chat;
    es->split = split && chat;
    es->opens_reasoning = opens_reasoning;
    es->include_usage = include_usage;
    es->job = job;
    es->ch = calloc((size_t)job->n, sizeof *es->ch);
    if (!es->ch) return false;
    for (int i = 0; i < job->n; i++) think_split_init(&es->ch[i].split, opens_reasoning);
    return true;
}

void emit_free(emit_state *es) {
    free(es->ch);
    es->ch = NULL;
}

static const char *finish_name(sched_finish f) { return f == SCHED_LENGTH ? "length" : "stop"; }

// The text of one token as the client should see it (special tokens included).
static void token_json(const ds_tokenizer *tok, int id, float lp, cJSON *o) {
    char *text = NULL;
    size_t len = 0;
    ds_error err;
    if (tokenizer_decode(tok, &id, 1, false, &text, &len, &err)) text = NULL;
    cJSON_AddStringToObject(o, "token", text ? text : "");
    cJSON_AddNumberToObject(o, "logprob", lp);
    cJSON *bytes = cJSON_AddArrayToObject(o, "bytes");
    for (size_t i = 0; text && i < len; i++) cJSON_AddItemToArray(bytes, cJSON_CreateNumber((unsigned char)text[i]));
    free(text);
}

// Logprobs of records [from, to) of a choice, chat shape ({"content": [...]}) or the legacy one.
static cJSON *logprobs_json(const emit_state *es, const sched_gen *g, int from, int to, size_t text_base) {
    if (!es->job->logprobs) return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject();
    if (es->chat) {
        cJSON *content = cJSON_AddArrayToObject(o, "content");
        for (int k = from; k < to; k++) {
            const sched_tok *t = &g->toks[k];
            cJSON *it = cJSON_CreateObject();
            token_json(es->tok, t->id, t->logprob, it);
            cJSON *top = cJSON_AddArrayToObject(it, "top_logprobs");
            for (int a = 0; a < t->n_top; a++) {
                cJSON *alt = cJSON_CreateObject();
                token_json(es->tok, t->top_id[a], t->top_lp[a], alt);
                cJSON_AddItemToArray(top, alt);
            }
            cJSON_AddItemToArray(content, it);
        }
        return o;
    }
    cJSON *toks = cJSON_AddArrayToObject(o, "tokens"), *lps = cJSON_AddArrayToObject(o, "token_logprobs");
    cJSON *tops = cJSON_AddArrayToObject(o, "top_logprobs"), *offs = cJSON_AddArrayToObject(o, "text_offset");
    size_t off = text_base;
    for (int k = from; k < to; k++) {
        const sched_tok *t = &g->toks[k];
        cJSON *tmp = cJSON_CreateObject();
        token_json(es->tok, t->id, t->logprob, tmp);
        const char *s = cJSON_GetObjectItem(tmp, "token")->valuestring;
        cJSON_AddItemToArray(toks, cJSON_CreateString(s));
        cJSON_AddItemToArray(lps, cJSON_CreateNumber(t->logprob));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += strlen(s);
        cJSON *top = cJSON_CreateObject();
        for (int a = 0; a < t->n_top; a++) {
            cJSON *alt = cJSON_CreateObject();
            token_json(es->tok, t->top_id[a], t->top_lp[a], alt);
            const char *as = cJSON_GetObjectItem(alt, "token")->valuestring;
            if (!cJSON_GetObjectItem(top, as)) cJSON_AddNumberToObject(top, as, t->top_lp[a]);
            cJSON_Delete(alt);
        }
        cJSON_AddItemToArray(tops, top);
        cJSON_Delete(tmp);
    }
    return o;
}

static cJSON *usage_json(const sched_job *j) {
    int gen = 0;
    for (int i = 0; i < j->n; i++) gen += j->gens[i].n_gen;
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", j->n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", gen);
    cJSON_AddNumberToObject(u, "total_tokens", j->n_prompt + gen);
    return u;
}

static cJSON *object_head(const emit_state *es, const char *object) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", es->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)es->created);
    cJSON_AddStringToObject(o, "model", es->model);
    return o;
}

// Splits new text of a choice into reasoning and answer per the response mode.
static void split_text(emit_state *es, emit_choice *c, const char *s, size_t n, bool last, srv_buf *r, srv_buf *a) {
    if (!es->split) {
        if (!c->started && es->chat && es->opens_reasoning) srv_buf_puts(a, "<think>\n"); // keep the inline text whole
        srv_buf_add(a, s, n);
    } else {
        think_split_push(&c->split, s, n, r, a);
        if (last) think_split_flush(&c->split, r, a);
    }
    c->started = true;
}

static void sse(srv_buf *out, cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) { out->oom = true; return; }
    srv_buf_puts(out, "data: ");
    srv_buf_puts(out, s);
    srv_buf_puts(out, "\n\n");
    free(s);
}

static void chunk(emit_state *es, srv_buf *out, int index, bool role, const srv_buf *r, const srv_buf *a, cJSON *lp,
                  const char *finish) {
    cJSON *o = object_head(es, es->chat ? "chat.completion.chunk" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, c);
    cJSON_AddNumberToObject(c, "index", index);
    if (es->chat) {
        cJSON *d = cJSON_AddObjectToObject(c, "delta");
        if (role) cJSON_AddStringToObject(d, "role", "assistant");
        if (role || a->len) cJSON_AddStringToObject(d, "content", a->len ? a->p : "");
        if (r->len) cJSON_AddStringToObject(d, "reasoning_content", r->p);
    } else {
        cJSON_AddStringToObject(c, "text", a->len ? a->p : "");
    }
    cJSON_AddItemToObject(c, "logprobs", lp ? lp : cJSON_CreateNull());
    if (finish) cJSON_AddStringToObject(c, "finish_reason", finish);
    else cJSON_AddNullToObject(c, "finish_reason");
    if (es->include_usage) cJSON_AddNullToObject(o, "usage");
    sse(out, o);
}

bool emit_stream(emit_state *es, srv_buf *out) {
    if (es->done) return true;
    sched_job *j = es->job;
    for (int i = 0; i < j->n; i++) {
        sched_gen *g = &j->gens[i];
        emit_choice *c = &es->ch[i];
        if (c->finished) continue;
        bool role = es->chat && !c->started && !c->sent_toks;
        bool fin = g->finish != SCHED_RUNNING;
        srv_buf r = {0}, a = {0};
        size_t upto = g->safe;
        if (upto > c->sent || (fin && !c->finished) || role || g->n_toks > c->sent_toks) {
            size_t base = c->sent;
            split_text(es, c, g->text ? g->text + c->sent : "", upto - c->sent, fin, &r, &a);
            c->sent = upto;
            cJSON *lp = g->n_toks > c->sent_toks ? logprobs_json(es, g, c->sent_toks, g->n_toks, base) : NULL;
            c->sent_toks = g->n_toks;
            if (role || r.len || a.len || lp) chunk(es, out, i, role, &r, &a, lp, NULL);
        }
        srv_buf_free(&r);
        srv_buf_free(&a);
        if (fin && g->finish != SCHED_ERROR) {
            srv_buf none = {0};
            chunk(es, out, i, false, &none, &none, NULL, finish_name(g->finish));
            c->finished = true;
        } else if (fin) {
            c->finished = true;
        }
    }
    if (!sched_job_done(j)) return false;
    if (j->error[0]) {
        cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "message", j->error);
        cJSON_AddStringToObject(e, "type", "server_error");
        sse(out, o);
    }
    if (es->include_usage) {
        cJSON *o = object_head(es, es->chat ? "chat.completion.chunk" : "text_completion");
        cJSON_AddArrayToObject(o, "choices");
        cJSON_AddItemToObject(o, "usage", usage_json(j));
        sse(out, o);
    }
    srv_buf_puts(out, "data: [DONE]\n\n");
    es->done = true;
    return true;
}

char *emit_full(emit_state *es) {
    sched_job *j = es->job;
    cJSON *o = object_head(es, es->chat ? "chat.completion" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    for (int i = 0; i < j->n; i++) {
        sched_gen *g = &j->gens[i];
        emit_choice *c = &es->ch[i];
        srv_buf r = {0}, a = {0};
        split_text(es, c, g->text ? g->text : "", g->len, true, &r, &a);
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", i);
        if (es->chat) {
            cJSON *m = cJSON_AddObjectToObject(ch, "message");
            cJSON_AddStringToObject(m, "role", "assistant");
            cJSON_AddStringToObject(m, "content", a.len ? a.p : "");
            if (es->split && (es->opens_reasoning || r.len)) cJSON_AddStringToObject(m, "reasoning_content", r.len ? r.p : "");
        } else {
            cJSON_AddStringToObject(ch, "text", a.len ? a.p : "");
        }
        cJSON_AddItemToObject(ch, "logprobs", logprobs_json(es, g, 0, g->n_toks, 0));
        cJSON_AddStringToObject(ch, "finish_reason", finish_name(g->finish));
        cJSON_AddItemToArray(choices, ch);
        srv_buf_free(&r);
        srv_buf_free(&a);
    }
    cJSON_AddItemToObject(o, "usage", usage_json(j));
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}
