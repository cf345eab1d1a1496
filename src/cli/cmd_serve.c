// deepseek serve -m DIR [--host H] [--port P] [--parallel N] [--ctx N] [--api-key KEY] [-t T]
#include <libgen.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "server/server.h"

static void serve_usage(FILE *f) {
    fprintf(f, "usage: deepseek serve -m DIR [options]\n"
               "OpenAI-compatible HTTP server: POST /v1/chat/completions, POST /v1/completions, GET /v1/models,\n"
               "GET /health, and a chat page at GET /. Requests share every forward step (continuous batching).\n"
               "Ctrl-C or SIGTERM drains: running requests finish, new ones get 503; a second Ctrl-C exits at once.\n"
               "options:\n"
               "  --host ADDR       numeric address to bind (default 127.0.0.1, loopback only)\n"
               "  --port P          TCP port (default 8080; 0 = any free port, printed at start)\n"
               "  --parallel N      requests decoded together, each with its own cache (default 4)\n"
               "  --ctx N           tokens per request, prompt + reply (default 4096, at most the model's)\n"
               "  --queue N         requests waiting for a slot before 503 (default 64)\n"
               "  --batch N         prefill tokens per forward step (default 256)\n"
               "  --api-key KEY     require 'Authorization: Bearer KEY' on /v1 (or set DS_API_KEY)\n"
               "  --max-body BYTES  request body limit (default 4194304)\n"
               "  --reasoning MODE  split (default): <think> text as reasoning_content; inline: left in content\n"
               "  --name ID         model id to serve (default: the model folder's name)\n"
               "  --quant Q         re-encode the matrices at load: q8 or q4\n"
               "  -t THREADS\n");
}

typedef struct {
    const char *dir, *name;
    int quant;
    srv_options o;
} serve_args;

// -1 to continue, else an exit code.
static int serve_parse(int argc, char **argv, serve_args *a) {
    *a = (serve_args){.quant = -1,
                      .o = {.host = "127.0.0.1", .port = 8080, .parallel = 4, .ctx = 4096, .max_queue = 64,
                            .batch = 256, .max_body = 4u << 20, .api_key = getenv("DS_API_KEY")}};
    const char *v;
    long n;
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { serve_usage(stdout); return 0; }
        if ((v = cli_opt(argc, argv, &i, "-m", &missing)) || (v = cli_opt(argc, argv, &i, "--model", &missing))) a->dir = v;
        else if ((v = cli_opt(argc, argv, &i, "--host", &missing))) a->o.host = v;
        else if ((v = cli_opt(argc, argv, &i, "--port", &missing))) {
            if (!cli_parse_int(v, 0, 65535, &n)) return cli_usage_error("serve", "--port expects 0..65535, got '%s'", v);
            a->o.port = (int)n;
        } else if ((v = cli_opt(argc, argv, &i, "--parallel", &missing))) {
            if (!cli_parse_int(v, 1, 256, &n)) return cli_usage_error("serve", "--parallel expects 1..256, got '%s'", v);
            a->o.parallel = (int)n;
        } else if ((v = cli_opt(argc, argv, &i, "--ctx", &missing))) {
            if (!cli_parse_int(v, 2, 1L << 24, &n)) return cli_usage_error("serve", "--ctx expects an integer >= 2, got '%s'", v);
            a->o.ctx = (int)n;
        } else if ((v = cli_opt(argc, argv, &i, "--queue", &missing))) {
            if (!cli_parse_int(v, 0, 1L << 20, &n)) return cli_usage_error("serve", "--queue expects an integer >= 0, got '%s'", v);
            a->o.max_queue = (int)n;
        } else if ((v = cli_opt(argc, argv, &i, "--batch", &missing))) {
            if (!cli_parse_int(v, 1, 1L << 16, &n)) return cli_usage_error("serve", "--batch expects a positive integer, got '%s'", v);
            a->o.batch = (int)n;
        } else if ((v = cli_opt(argc, argv, &i, "--max-body", &missing))) {
            if (!cli_parse_int(v, 1024, 1L << 30, &n)) return cli_usage_error("serve", "--max-body expects 1024..2^30 bytes, got '%s'", v);
            a->o.max_body = (size_t)n;
        } else if ((v = cli_opt(argc, argv, &i, "--api-key", &missing))) a->o.api_key = v;
        else if ((v = cli_opt(argc, argv, &i, "--name", &missing))) a->name = v;
        else if ((v = cli_opt(argc, argv, &i, "--reasoning", &missing))) {
            if (strcmp(v, "split") && strcmp(v, "inline")) return cli_usage_error("serve", "--reasoning must be split or inline, got '%s'", v);
            a->o.reasoning_inline = !strcmp(v, "inline");
        } else if ((v = cli_opt(argc, argv, &i, "--quant", &missing))) {
            if (!cli_parse_quant("serve", v, &a->quant)) return 1;
        } else if ((v = cli_opt(argc, argv, &i, "-t", &missing))) {
            if (!cli_apply_threads("serve", v)) return 1;
        } else if (missing) return cli_usage_error("serve", "%s needs a value", argv[i]);
        else return cli_usage_error("serve", "unknown option '%s'", argv[i]);
    }
    if (!a->dir) return cli_usage_error("serve", "-m DIR is required");
    if (a->o.api_key && !*a->o.api_key) a->o.api_key = NULL;
    return -1;
}

int cmd_serve(int argc, char **argv) {
    serve_args a;
    int rc = serve_parse(argc, argv, &a);
    if (rc >= 0) return rc;
    ds_error err = {{0}};
    ds_model m;
    ds_tokenizer *tok = NULL;
    srv *s = NULL;
    ds_status st = cli_model_load(&m, a.dir, a.quant, &err);
    if (st) return cli_fail("serve", st, &err);
    st = tokenizer_load(&tok, a.dir, &err);
    char name[256];
    if (!st) {
        // The folder's name, as other servers list a local model.
        char path[4096];
        snprintf(path, sizeof path, "%s", a.dir);
        size_t l = strlen(path);
        while (l > 1 && path[l - 1] == '/') path[--l] = 0;
        snprintf(name, sizeof name, "%s", a.name ? a.name : basename(path));
        a.o.model_id = name;
        if (a.o.ctx > m.cfg.max_position_embeddings) a.o.ctx = m.cfg.max_position_embeddings;
        a.o.n_threads = omp_get_max_threads();
        signal(SIGPIPE, SIG_IGN); // a vanished client is an error on its connection, not the end of the server
        cli_install_signals();
        st = srv_start(&s, &a.o, &m, tok, &err);
    }
    if (!st) {
        fprintf(stderr, "deepseek serve: listening on http://%s%s%s:%d/ (model %s, %d slots x %d tokens%s)\n",
                strchr(a.o.host, ':') ? "[" : "", a.o.host, strchr(a.o.host, ':') ? "]" : "", srv_port(s), name,
                a.o.parallel, a.o.ctx, a.o.api_key ? ", API key required" : "");
        while (!cli_interrupted) usleep(100 * 1000);
        fprintf(stderr, "deepseek serve: draining (running requests finish; Ctrl-C again to quit now)\n");
        srv_stop(s);
        fprintf(stderr, "deepseek serve: stopped\n");
    }
    if (tok) tokenizer_free(tok);
    ds_model_free(&m);
    return st ? cli_fail("serve", st, &err) : 0;
}
