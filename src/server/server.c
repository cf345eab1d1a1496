// HTTP on libmicrohttpd, one thread per connection: a handler may block while its request
// generates, and a streaming response's reader waits on the job without holding up anyone
// else. A waiting handler polls its socket for a hang-up so a client that goes away cancels its
// job (and frees its slot) at once, not only when the next write fails.
#include "server/server.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/api.h"
#include "server/emit.h"
#include "server/sched.h"
#include "server/text.h"
#include "server_page.h" // generated from src/server/page/index.html at build time

#define WAIT_MS 50          // how often a waiting handler checks its client
#define STREAM_BLOCK 16384

struct srv {
    srv_options o;
    const ds_model *m;
    const ds_tokenizer *tok;
    sched *sc;
    struct MHD_Daemon *d;
    int port;
    atomic_bool draining;
    atomic_ullong counter;  // response ids and default seeds
    atomic_int inflight;    // requests between their first byte and their last response byte
    char model_id[128];
};

typedef struct {
    srv_buf body;
    bool too_big;
    bool responded;
} conn_ctx;

typedef struct {
    srv *s;
    struct MHD_Connection *c;
    sched_job *job;
    emit_state es;
    srv_buf out;
    size_t out_off;
    bool finished;
} stream_ctx;

// ---- responses ------------------------------------------------------------------------------

static enum MHD_Result reply(struct MHD_Connection *c, int status, const char *type, const char *body, size_t len) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_json(struct MHD_Connection *c, int status, char *json) {
    if (!json) return reply(c, 500, "application/json", "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\"}}", 61);
    enum MHD_Result r = reply(c, status, "application/json", json, strlen(json));
    free(json);
    return r;
}

static enum MHD_Result reply_error(struct MHD_Connection *c, const api_error *e) {
    return reply_json(c, e->status, api_error_json(e));
}

static enum MHD_Result fail(struct MHD_Connection *c, int status, const char *type, const char *code, const char *fmt,
                            const char *arg) {
    api_error e;
    api_error_set(&e, status, type, code, NULL, fmt, arg);
    return reply_error(c, &e);
}

// The peer closed or reset its end (a stopped client), without consuming anything it sent.
static bool client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return true;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

// ---- generation ------------------------------------------------------------------------------

static uint64_t mix64(uint64_t x) { // splitmix64 finaliser
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// Prompt tokens of a request, or an error for the client.
static bool request_prompt(srv *s, const api_request *r, int **ids, int *n, bool *opens, api_error *e) {
    ds_error err = {{0}};
    char *text = NULL;
    *opens = false;
    if (r->chat) {
        if (chat_render(s->tok, r->msgs, r->n_msgs, true, &text, &err)) {
            api_error_set(e, 400, "invalid_request_error", NULL, "messages", "%s", err.msg);
            return false;
        }
        *opens = chat_prompt_opens_reasoning(text);
    }
    // A rendered template already holds BOS as text; raw prompts get the tokenizer's specials.
    const char *p = r->chat ? text : r->prompt;
    ds_status st = tokenizer_encode(s->tok, p, strlen(p), !r->chat, ids, n, &err);
    free(text);
    if (st) {
        api_error_set(e, 400, "invalid_request_error", NULL, NULL, "%s", err.msg);
        return false;
    }
    if (*n == 0) {
        api_error_set(e, 400, "invalid_request_error", NULL, r->chat ? "messages" : "prompt", "the prompt is empty");
        return false;
    }
    if (*n >= s->o.ctx) {
        api_error_set(e, 400, "invalid_request_error", "context_length_exceeded", r->chat ? "messages" : "prompt",
                      "This model's maximum context length is %d tokens; the prompt has %d tokens", s->o.ctx, *n);
        return false;
    }
    for (int i = 0; i < *n; i++)
        if ((*ids)[i] >= s->m->cfg.vocab_size) {
            api_error_set(e, 400, "invalid_request_error", NULL, NULL,
                          "prompt token %d is outside the model's vocabulary of %d", (*ids)[i], s->m->cfg.vocab_size);
            return false;
        }
    return true;
}

// Moves the request's options into a new job (NULL when out of memory).
static sched_job *job_from_request(srv *s, api_request *r, int *ids, int n) {
    sched_job *j = sched_job_new(r->n);
    if (!j) return NULL;
    j->prompt = ids;
    j->n_prompt = n;
    j->max_tokens = r->max_tokens < 0 ? s->o.ctx : r->max_tokens;
    j->sp = (sampler_params){.temperature = (float)r->temperature, .top_p = (float)r->top_p, .top_k = 0, .min_p = 0};
    if (r->top_p <= 0) j->sp = (sampler_params){.temperature = 0, .top_p = 1}; // top_p 0 keeps only the best token
    uint64_t c = atomic_fetch_add(&s->counter, 1);
    j->sp.seed = r->has_seed ? r->seed : mix64((uint64_t)time(NULL) ^ mix64(c));
    j->logprobs = r->logprobs;
    j->top_logprobs = r->top_logprobs;
    j->ignore_eos = r->ignore_eos;
    for (int i = 0; i < r->n_stop; i++) j->stop[i] = r->stop[i];
    j->n_stop = r->n_stop;
    r->n_stop = 0;
    j->bias_id = r->bias_id;
    j->bias = r->bias;
    j->n_bias = r->n_bias;
    r->bias_id = NULL;
    r->bias = NULL;
    return j;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream_ctx *st = cls;
    (void)pos;
    for (;;) {
        if (st->out_off < st->out.len) {
            size_t n = st->out.len - st->out_off < max ? st->out.len - st->out_off : max;
            memcpy(buf, st->out.p + st->out_off, n);
            st->out_off += n;
            if (st->out_off == st->out.len) st->out.len = st->out_off = 0;
            return (ssize_t)n;
        }
        if (st->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        sched_lock(st->s->sc);
        st->finished = emit_stream(&st->es, &st->out);
        if (!st->finished && st->out.len == 0) {
            sched_wait(st->s->sc, st->job, WAIT_MS);
            st->finished = emit_stream(&st->es, &st->out);
        }
        sched_unlock(st->s->sc);
        if (st->out.oom) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (st->out.len == 0 && client_gone(st->c)) {
            sched_cancel(st->s->sc, st->job);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (st->out.len == 0 && !st->finished) srv_buf_puts(&st->out, ": waiting\n\n");
    }
}

static void stream_free(void *cls) {
    stream_ctx *st = cls;
    sched_cancel(st->s->sc, st->job); // a no-op when it finished
    sched_lock(st->s->sc);
    emit_free(&st->es);
    sched_unlock(st->s->sc);
    sched_release(st->s->sc, st->job);
    srv_buf_free(&st->out);
    free(st);
}

static enum MHD_Result respond_stream(srv *s, struct MHD_Connection *c, sched_job *j, emit_state *es) {
    stream_ctx *st = calloc(1, sizeof *st);
    if (!st) {
        sched_cancel(s->sc, j);
        sched_lock(s->sc);
        emit_free(es);
        sched_unlock(s->sc);
        sched_release(s->sc, j);
        return fail(c, 500, "server_error", NULL, "%s", "out of memory");
    }
    *st = (stream_ctx){.s = s, .c = c, .job = j, .es = *es};
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_read, st, stream_free);
    if (!r) { stream_free(st); return MHD_NO; }
    MHD_add_response_header(r, "Content-Type", "text/event-stream; charset=utf-8");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result respond_full(srv *s, struct MHD_Connection *c, sched_job *j, emit_state *es) {
    for (;;) {
        sched_lock(s->sc);
        if (!sched_job_done(j)) sched_wait(s->sc, j, WAIT_MS);
        bool done = sched_job_done(j);
        sched_unlock(s->sc);
        if (done) break;
        if (client_gone(c)) { // nobody to answer: free the slot now
            sched_cancel(s->sc, j);
            sched_lock(s->sc);
            emit_free(es);
            sched_unlock(s->sc);
            sched_release(s->sc, j);
            return MHD_NO;
        }
    }
    sched_lock(s->sc);
    char *body = j->error[0] ? NULL : emit_full(es);
    api_error e;
    if (j->error[0]) api_error_set(&e, 500, "server_error", NULL, NULL, "%s", j->error);
    emit_free(es);
    sched_unlock(s->sc);
    sched_release(s->sc, j);
    return body ? reply_json(c, 200, body) : reply_error(c, &e);
}

static enum MHD_Result handle_generate(srv *s, struct MHD_Connection *c, conn_ctx *cc, bool chat) {
    api_request r;
    api_error e;
    if (!api_parse(&r, cc->body.p ? cc->body.p : "", cc->body.len, chat, s->model_id, s->m->cfg.vocab_size, &e))
        return reply_error(c, &e);
    int *ids = NULL, n = 0;
    bool opens;
    if (!request_prompt(s, &r, &ids, &n, &opens, &e)) {
        free(ids);
        api_request_free(&r);
        return reply_error(c, &e);
    }
    sched_job *j = job_from_request(s, &r, ids, n);
    bool stream = r.stream, usage = r.include_usage;
    bool split = r.reasoning == API_REASONING_DEFAULT ? !s->o.reasoning_inline : r.reasoning == API_REASONING_SPLIT;
    api_request_free(&r);
    if (!j) {
        free(ids);
        return fail(c, 500, "server_error", NULL, "%s", "out of memory");
    }
    emit_state es;
    char id[48];
    snprintf(id, sizeof id, "%s-%llx", chat ? "chatcmpl" : "cmpl", (unsigned long long)atomic_fetch_add(&s->counter, 1));
    if (!emit_init(&es, s->tok, id, s->model_id, chat, split, opens, usage, j)) {
        sched_release(s->sc, j);
        return fail(c, 500, "server_error", NULL, "%s", "out of memory");
    }
    int rc = atomic_load(&s->draining) ? -2 : sched_submit(s->sc, j);
    if (rc) {
        emit_free(&es);
        sched_release(s->sc, j);
        return rc == -2 ? fail(c, 503, "server_error", "shutting_down", "%s", "the server is shutting down")
                        : fail(c, 503, "server_error", "server_busy", "%s", "the server is busy: the request queue is full; retry later");
    }
    return stream ? respond_stream(s, c, j, &es) : respond_full(s, c, j, &es);
}

// ---- other endpoints --------------------------------------------------------------------------

static enum MHD_Result handle_models(srv *s, struct MHD_Connection *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data"), *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", s->model_id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", 0);
    cJSON_AddStringToObject(m, "owned_by", "deepseek.c");
    cJSON_AddNumberToObject(m, "context_length", s->o.ctx);
    cJSON_AddItemToArray(data, m);
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return reply_json(c, 200, json);
}

static enum MHD_Result handle_health(srv *s, struct MHD_Connection *c) {
    sched_stats st;
    sched_get_stats(s->sc, &st);
    char buf[256];
    int n = snprintf(buf, sizeof buf,
                     "{\"status\":\"%s\",\"slots\":%d,\"slots_busy\":%d,\"queued\":%d,\"requests\":%lld,\"tokens\":%lld}",
                     atomic_load(&s->draining) ? "draining" : "ok", st.parallel, st.busy, st.queued,
                     (long long)st.requests, (long long)st.tokens);
    return reply(c, atomic_load(&s->draining) ? 503 : 200, "application/json", buf, (size_t)n);
}

static bool authorized(const srv *s, struct MHD_Connection *c) {
    if (!s->o.api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    const char *k = h + 7, *want = s->o.api_key;
    size_t lk = strlen(k), lw = strlen(want);
    unsigned diff = lk != lw;
    for (size_t i = 0; i < lw; i++) diff |= (unsigned)(want[i] ^ (i < lk ? k[i] : 0)); // no early exit on a mismatch
    return diff == 0;
}

static enum MHD_Result route(srv *s, struct MHD_Connection *c, const char *url, const char *method, conn_ctx *cc) {
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    if (!strcmp(method, "OPTIONS")) { // CORS preflight for browser clients on other origins
        struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
        MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        MHD_add_response_header(r, "Access-Control-Allow-Headers", "Content-Type, Authorization");
        enum MHD_Result ret = MHD_queue_response(c, 204, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) {
        if (!get) return fail(c, 405, "invalid_request_error", "method_not_allowed", "%s", "use GET");
        return reply(c, 200, "text/html; charset=utf-8", (const char *)server_page, sizeof server_page);
    }
    if (!strcmp(url, "/health")) return get ? handle_health(s, c) : fail(c, 405, "invalid_request_error", "method_not_allowed", "%s", "use GET");
    bool models = !strcmp(url, "/v1/models"), chat = !strcmp(url, "/v1/chat/completions"), cmpl = !strcmp(url, "/v1/completions");
    if (!models && !chat && !cmpl) return fail(c, 404, "invalid_request_error", "unknown_url", "Unknown request URL: %.200s", url);
    if (!authorized(s, c))
        return fail(c, 401, "invalid_request_error", "invalid_api_key", "%s", "Incorrect API key provided (send Authorization: Bearer KEY)");
    if (models) return get ? handle_models(s, c) : fail(c, 405, "invalid_request_error", "method_not_allowed", "%s", "use GET");
    if (!post) return fail(c, 405, "invalid_request_error", "method_not_allowed", "%s", "use POST");
    if (cc->too_big) {
        char lim[32];
        snprintf(lim, sizeof lim, "%zu", s->o.max_body);
        return fail(c, 413, "invalid_request_error", "request_too_large", "the request body exceeds the limit of %s bytes", lim);
    }
    return handle_generate(s, c, cc, chat);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    srv *s = cls;
    (void)version;
    conn_ctx *cc = *con_cls;
    if (!cc) {
        cc = calloc(1, sizeof *cc);
        if (!cc) return MHD_NO;
        *con_cls = cc;
        atomic_fetch_add(&s->inflight, 1);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->o.max_body) { // refuse before reading the body
            cc->responded = true;
            char msg[96];
            snprintf(msg, sizeof msg, "%zu", s->o.max_body);
            return fail(c, 413, "invalid_request_error", "request_too_large", "the request body exceeds the limit of %s bytes", msg);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!cc->responded && !cc->too_big) {
            if (cc->body.len + *upload_size > s->o.max_body) {
                cc->too_big = true;
                srv_buf_free(&cc->body);
            } else {
                srv_buf_add(&cc->body, upload, *upload_size);
                if (cc->body.oom) return MHD_NO;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (cc->responded) return MHD_YES;
    cc->responded = true;
    return route(s, c, url, method, cc);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)c; (void)toe;
    srv *s = cls;
    conn_ctx *cc = *con_cls;
    if (!cc) return;
    atomic_fetch_sub(&s->inflight, 1);
    srv_buf_free(&cc->body);
    free(cc);
    *con_cls = NULL;
}

// Streamed chunks are small writes: without TCP_NODELAY each would wait for the client's
// delayed ACK of the previous one (~40 ms per token).
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_ctx, enum MHD_ConnectionNotificationCode code) {
    (void)cls; (void)socket_ctx;
    if (code != MHD_CONNECTION_NOTIFY_STARTED) return;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    int one = 1;
    if (ci) setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// ---- start / stop ---------------------------------------------------------------------------------

ds_status srv_start(srv **out, const srv_options *o, const ds_model *m, const ds_tokenizer *tok, ds_error *err) {
    *out = NULL;
    srv *s = calloc(1, sizeof *s);
    if (!s) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    s->o = *o;
    s->m = m;
    s->tok = tok;
    snprintf(s->model_id, sizeof s->model_id, "%s", o->model_id);
    s->o.model_id = s->model_id;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, o->host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)o->port);
    } else if (inet_pton(AF_INET6, o->host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)o->port);
        flags |= MHD_USE_IPv6;
    } else {
        free(s);
        return ds_error_set(err, DS_ERR_ARG, "--host: '%s' is not a numeric IPv4 or IPv6 address", o->host);
    }
    sched_options so = {.parallel = o->parallel, .ctx = o->ctx, .max_queue = o->max_queue, .batch = o->batch,
                        .chunk = o->batch < 64 ? o->batch : 64, .n_threads = o->n_threads};
    ds_status st = sched_create(&s->sc, m, tok, &so, err);
    if (st) { free(s); return st; }
    s->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, s,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
                            MHD_OPTION_CONNECTION_TIMEOUT, 30u, // idle and slow senders
                            MHD_OPTION_CONNECTION_LIMIT, 256u,
                            MHD_OPTION_END);
    if (!s->d) {
        sched_free(s->sc);
        free(s);
        return ds_error_set(err, DS_ERR_IO, "cannot listen on %s port %d (in use, or not an address of this machine?)",
                            o->host, o->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : o->port;
    *out = s;
    return DS_OK;
}

int srv_port(const srv *s) { return s->port; }

void srv_stop(srv *s) {
    if (!s) return;
    atomic_store(&s->draining, true);
    sched_drain(s->sc);
    // No new connections; running requests go on streaming until the scheduler is empty.
    MHD_socket ls = MHD_quiesce_daemon(s->d);
    sched_wait_idle(s->sc);
    // Generation is over; let the responses reach their clients before connections close.
    while (atomic_load(&s->inflight) > 0) usleep(10 * 1000);
    MHD_stop_daemon(s->d);
    if (ls != MHD_INVALID_SOCKET) close(ls);
    sched_free(s->sc);
    free(s);
}
