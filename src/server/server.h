// `deepseek serve`: an OpenAI-compatible HTTP server (libmicrohttpd) over the continuous-
// batching scheduler, plus the chat page at GET /.
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    const char *host;       // numeric IPv4 or IPv6 address to bind
    int port;               // 0: any free port (srv_port says which)
    int parallel;           // sequences decoded together (slots)
    int ctx;                // tokens per slot (prompt + reply)
    int max_queue;          // choices waiting for a slot before requests get 503
    int batch;              // prefill tokens per engine step
    int n_threads;          // engine threads
    size_t max_body;        // request body limit in bytes (413 beyond)
    const char *api_key;    // NULL: no authentication
    const char *model_id;   // the id /v1/models lists and requests must name
    bool reasoning_inline;  // default: <think> text stays in content
} srv_options;

typedef struct srv srv;

ds_status srv_start(srv **s, const srv_options *o, const ds_model *m, const ds_tokenizer *tok, ds_error *err);
int srv_port(const srv *s);
// Drains: new requests get 503, running and queued ones finish; then stops and frees.
void srv_stop(srv *s);
