#include "server/api.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/text.h"

void api_error_set(api_error *e, int status, const char *type, const char *code, const char *param, const char *fmt, ...) {
    e->status = status;
    e->type = type;
    e->code = code;
    e->param = param;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

char *api_error_json(const api_error *e) {
    cJSON *root = cJSON_CreateObject(), *o = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(o, "message", e->message);
    cJSON_AddStringToObject(o, "type", e->type ? e->type : "invalid_request_error");
    if (e->param) cJSON_AddStringToObject(o, "param", e->param);
    else cJSON_AddNullToObject(o, "param");
    if (e->code) cJSON_AddStringToObject(o, "code", e->code);
    else cJSON_AddNullToObject(o, "code");
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

#define BAD(param, ...) (api_error_set(e, 400, "invalid_request_error", NULL, param, __VA_ARGS__), false)

// A field, treating JSON null as absent (clients send null for "not set").
static const cJSON *field(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static bool get_number(const cJSON *o, const char *k, double lo, double hi, double *out, api_error *e) {
    const cJSON *v = field(o, k);
    if (!v) return true;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return BAD(k, "'%s' must be a number", k);
    if (v->valuedouble < lo || v->valuedouble > hi) return BAD(k, "'%s' must be between %g and %g, got %g", k, lo, hi, v->valuedouble);
    *out = v->valuedouble;
    return true;
}

static bool get_int(const cJSON *o, const char *k, double lo, double hi, int64_t *out, bool *given, api_error *e) {
    const cJSON *v = field(o, k);
    if (given) *given = v != NULL;
    if (!v) return true;
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!isfinite(d) || d != floor(d)) return BAD(k, "'%s' must be an integer", k);
    if (d < lo || d > hi) return BAD(k, "'%s' must be between %.0f and %.0f, got %.0f", k, lo, hi, d);
    *out = (int64_t)d;
    return true;
}

static bool get_bool(const cJSON *o, const char *k, bool *out, api_error *e) {
    const cJSON *v = field(o, k);
    if (!v) return true;
    if (!cJSON_IsBool(v)) return BAD(k, "'%s' must be a boolean", k);
    *out = cJSON_IsTrue(v);
    return true;
}

static char *own(api_request *r, char *s) {
    if (!s) return NULL;
    char **p = realloc(r->owned, (size_t)(r->n_owned + 1) * sizeof *p);
    if (!p) { free(s); return NULL; }
    r->owned = p;
    r->owned[r->n_owned++] = s;
    return s;
}

static bool check_text(const char *s, const char *param, api_error *e) {
    // cJSON keeps bytes of \u escapes and raw input as they are: reject what is not UTF-8.
    if (!utf8_valid(s, strlen(s))) return BAD(param, "'%s' is not valid UTF-8", param);
    return true;
}

// "content": a string, an array of text parts, or null (an assistant turn with tool calls).
static bool message_content(api_request *r, const cJSON *m, const char **out, api_error *e) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
    if (!c || cJSON_IsNull(c)) { *out = ""; return true; }
    if (cJSON_IsString(c)) {
        if (!check_text(c->valuestring, "messages", e)) return false;
        *out = own(r, strdup(c->valuestring)); // the tree is freed after parsing
        if (!*out) api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return *out != NULL;
    }
    if (!cJSON_IsArray(c)) return BAD("messages", "message content must be a string or an array of text parts");
    srv_buf b = {0};
    const cJSON *part;
    cJSON_ArrayForEach(part, c) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0 || !cJSON_IsString(text)) {
            srv_buf_free(&b);
            return BAD("messages", "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported");
        }
        srv_buf_puts(&b, text->valuestring);
    }
    srv_buf_add(&b, "", 0);
    if (b.oom || !own(r, b.p)) {
        api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    *out = b.p;
    return check_text(*out, "messages", e);
}

static bool parse_messages(api_request *r, const cJSON *root, api_error *e) {
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!ms) return BAD("messages", "'messages' is required");
    if (!cJSON_IsArray(ms)) return BAD("messages", "'messages' must be an array");
    int n = cJSON_GetArraySize(ms);
    if (n == 0) return BAD("messages", "'messages' must not be empty");
    r->msgs = calloc((size_t)n, sizeof *r->msgs);
    if (!r->msgs) { api_error_set(e, 500, "server_error", NULL, NULL, "out of memory"); return false; }
    const cJSON *m;
    cJSON_ArrayForEach(m, ms) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsObject(m)) return BAD("messages", "messages[%d] must be an object", r->n_msgs);
        if (!cJSON_IsString(role)) return BAD("messages", "messages[%d].role must be a string", r->n_msgs);
        const char *v = role->valuestring;
        const char *rl = !strcmp(v, "system") || !strcmp(v, "developer") ? "system"
                         : !strcmp(v, "user")                            ? "user"
                         : !strcmp(v, "assistant")                       ? "assistant"
                                                                         : NULL;
        if (!rl) return BAD("messages", "messages[%d].role must be system, developer, user or assistant", r->n_msgs);
        const char *content;
        if (!message_content(r, m, &content, e)) return false;
        r->msgs[r->n_msgs++] = (chat_msg){rl, content};
    }
    return true;
}

static bool parse_prompt(api_request *r, const cJSON *root, api_error *e) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (!p) return BAD("prompt", "'prompt' is required");
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1) p = cJSON_GetArrayItem(p, 0);
    if (!cJSON_IsString(p)) return BAD("prompt", "'prompt' must be a string (or an array of one string)");
    if (!check_text(p->valuestring, "prompt", e)) return false;
    r->prompt = own(r, strdup(p->valuestring));
    if (!r->prompt) { api_error_set(e, 500, "server_error", NULL, NULL, "out of memory"); return false; }
    return true;
}

static bool parse_stop(api_request *r, const cJSON *root, api_error *e) {
    const cJSON *s = field(root, "stop");
    if (!s) return true;
    const cJSON *one[1] = {s};
    int n = cJSON_IsString(s) ? 1 : cJSON_IsArray(s) ? cJSON_GetArraySize(s) : -1;
    if (n < 0 || n > API_MAX_STOP) return BAD("stop", "'stop' must be a string or an array of at most %d strings", API_MAX_STOP);
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_IsString(s) ? one[0] : cJSON_GetArrayItem(s, i);
        if (!cJSON_IsString(v)) return BAD("stop", "'stop' must hold strings");
        size_t len = strlen(v->valuestring);
        if (len == 0) continue; // an empty stop string matches nothing
        if (len > API_MAX_STOP_LEN) return BAD("stop", "stop sequences are limited to %d bytes", API_MAX_STOP_LEN);
        if (!check_text(v->valuestring, "stop", e)) return false;
        r->stop[r->n_stop] = strdup(v->valuestring);
        if (!r->stop[r->n_stop]) { api_error_set(e, 500, "server_error", NULL, NULL, "out of memory"); return false; }
        r->n_stop++;
    }
    return true;
}

static bool parse_bias(api_request *r, const cJSON *root, int vocab, api_error *e) {
    const cJSON *b = field(root, "logit_bias");
    if (!b) return true;
    if (!cJSON_IsObject(b)) return BAD("logit_bias", "'logit_bias' must be an object of token id -> bias");
    int n = cJSON_GetArraySize(b);
    if (n > 1024) return BAD("logit_bias", "'logit_bias' holds at most 1024 entries");
    r->bias_id = malloc((size_t)(n ? n : 1) * sizeof(int));
    r->bias = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (!r->bias_id || !r->bias) { api_error_set(e, 500, "server_error", NULL, NULL, "out of memory"); return false; }
    const cJSON *it;
    cJSON_ArrayForEach(it, b) {
        char *end;
        long id = strtol(it->string, &end, 10);
        if (!it->string[0] || *end || id < 0 || id >= vocab)
            return BAD("logit_bias", "logit_bias key '%.40s' is not a token id in [0, %d)", it->string, vocab);
        if (!cJSON_IsNumber(it) || !(it->valuedouble >= -100 && it->valuedouble <= 100))
            return BAD("logit_bias", "logit_bias values must be numbers in [-100, 100]");
        r->bias_id[r->n_bias] = (int)id;
        r->bias[r->n_bias++] = (float)it->valuedouble;
    }
    return true;
}

static bool parse_options(api_request *r, const cJSON *root, int vocab, api_error *e) {
    int64_t v;
    bool given;
    if (!get_number(root, "temperature", 0, 2, &r->temperature, e)) return false;
    if (!get_number(root, "top_p", 0, 1, &r->top_p, e)) return false;
    if (!get_int(root, "max_tokens", 1, 1 << 30, &v, &given, e)) return false;
    if (given) r->max_tokens = (int)v;
    if (!get_int(root, "max_completion_tokens", 1, 1 << 30, &v, &given, e)) return false;
    if (given) r->max_tokens = (int)v;
    if (!get_int(root, "seed", -9007199254740991.0, 9007199254740991.0, &v, &r->has_seed, e)) return false;
    r->seed = (uint64_t)v;
    if (!get_int(root, "n", 1, API_MAX_N, &v, &given, e)) return false;
    if (given) r->n = (int)v;
    if (!get_bool(root, "stream", &r->stream, e) || !get_bool(root, "ignore_eos", &r->ignore_eos, e)) return false;
    const cJSON *so = field(root, "stream_options");
    if (so && !cJSON_IsObject(so)) return BAD("stream_options", "'stream_options' must be an object");
    if (so && !get_bool(so, "include_usage", &r->include_usage, e)) return false;
    if (r->chat) {
        if (!get_bool(root, "logprobs", &r->logprobs, e)) return false;
        if (!get_int(root, "top_logprobs", 0, 20, &v, &given, e)) return false;
        if (given && !r->logprobs) return BAD("top_logprobs", "'top_logprobs' needs 'logprobs': true");
        if (given) r->top_logprobs = (int)v;
    } else { // legacy completions: "logprobs" is the number of alternatives
        if (!get_int(root, "logprobs", 0, 5, &v, &given, e)) return false;
        r->logprobs = given;
        if (given) r->top_logprobs = (int)v;
    }
    const cJSON *rf = field(root, "reasoning_format");
    if (rf) {
        if (cJSON_IsString(rf) && !strcmp(rf->valuestring, "inline")) r->reasoning = API_REASONING_INLINE;
        else if (cJSON_IsString(rf) && !strcmp(rf->valuestring, "split")) r->reasoning = API_REASONING_SPLIT;
        else return BAD("reasoning_format", "'reasoning_format' must be \"split\" or \"inline\"");
    }
    return parse_stop(r, root, e) && parse_bias(r, root, vocab, e);
}

bool api_parse(api_request *r, const char *body, size_t len, bool chat, const char *model, int vocab, api_error *e) {
    memset(r, 0, sizeof *r);
    r->chat = chat;
    r->temperature = 1.0;
    r->top_p = 1.0;
    r->max_tokens = chat ? -1 : 16; // the OpenAI defaults (legacy completions: 16)
    r->n = 1;
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root) return BAD(NULL, "could not parse the JSON body of the request");
    bool ok = false;
    if (!cJSON_IsObject(root)) {
        (void)BAD(NULL, "the request body must be a JSON object");
        goto done;
    }
    const cJSON *m = field(root, "model");
    if (m && !cJSON_IsString(m)) {
        (void)BAD("model", "'model' must be a string");
        goto done;
    }
    if (m && strcmp(m->valuestring, model) != 0) {
        api_error_set(e, 404, "invalid_request_error", "model_not_found", "model",
                      "The model '%.100s' does not exist; this server serves '%.100s'", m->valuestring, model);
        goto done;
    }
    if (!(chat ? parse_messages(r, root, e) : parse_prompt(r, root, e))) goto done;
    ok = parse_options(r, root, vocab, e);
done:
    cJSON_Delete(root);
    if (!ok) api_request_free(r);
    return ok;
}

void api_request_free(api_request *r) {
    for (int i = 0; i < r->n_owned; i++) free(r->owned[i]);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->owned);
    free(r->msgs);
    free(r->bias_id);
    free(r->bias);
    memset(r, 0, sizeof *r);
}
