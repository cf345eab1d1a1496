// What `run` and `chat` share: options, loading model + tokenizer, one templated reply.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/session.h"

void run_usage(FILE *f, const char *cmd) {
    if (!strcmp(cmd, "run"))
        fprintf(f, "usage: deepseek run -m DIR -p PROMPT [--system S] [--raw] [options]\n"
                   "Applies the model's chat template to PROMPT (or not, with --raw), prefills it in one\n"
                   "batched forward and streams the reply; the reasoning (<think>...</think>) is shown dimmed\n"
                   "on a terminal. Prompt and generation tokens/s go to stderr.\n");
    else
        fprintf(f, "usage: deepseek chat -m DIR [--system S] [options]\n"
                   "Interactive multi-turn chat: type a message and Enter; /clear forgets the conversation,\n"
                   "/exit (or end of input) leaves; Ctrl-C stops the current reply. Reads a pipe too.\n");
    fprintf(f, "options:\n"
               "  -n N        most tokens per reply (default 1024)\n"
               "  --temp T    temperature (default 0.6, as DeepSeek recommends for R1; 0 = greedy)\n"
               "  --top-p P   nucleus mass (default 0.95)   --top-k K (default off)   --min-p P (default off)\n"
               "  --seed S    sampling seed (default 1)\n"
               "  --ctx N     context length in tokens (default 4096, at most max_position_embeddings)\n"
               "  --batch N   prefill tokens per forward call (default 512)\n"
               "  --quant Q   re-encode the matrices at load: q8 (Q8_0) or q4 (Q4_0); default as stored\n"
               "  -t THREADS\n");
}

// Parses the options `run` and `chat` share; returns -1 to continue, else an exit code.
int run_parse(const char *cmd, int argc, char **argv, run_args *a) {
    *a = (run_args){.n = 1024, .ctx = 4096, .batch = 512, .quant = -1,
                    .sp = {.temperature = 0.6f, .top_k = 0, .top_p = 0.95f, .min_p = 0.0f, .seed = 1}};
    const char *v;
    long n;
    int sr;
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { run_usage(stdout, cmd); return 0; }
        if (!strcmp(argv[i], "--raw") && !strcmp(cmd, "run")) a->raw = true;
        else if ((v = cli_opt(argc, argv, &i, "-m", &missing)) || (v = cli_opt(argc, argv, &i, "--model", &missing))) a->dir = v;
        else if (!strcmp(cmd, "run") && ((v = cli_opt(argc, argv, &i, "-p", &missing)) || (v = cli_opt(argc, argv, &i, "--prompt", &missing)))) a->prompt = v;
        else if ((v = cli_opt(argc, argv, &i, "--system", &missing))) a->system = v;
        else if ((v = cli_opt(argc, argv, &i, "-n", &missing))) {
            if (!cli_parse_int(v, 1, 1L << 24, &n)) return cli_usage_error(cmd, "-n expects a positive integer, got '%s'", v);
            a->n = (int)n;
        } else if ((v = cli_opt(argc, argv, &i, "--ctx", &missing))) {
            if (!cli_parse_int(v, 2, 1L << 24, &n)) return cli_usage_error(cmd, "--ctx expects an integer >= 2, got '%s'", v);
            a->ctx = (int)n;
        } else if ((v = cli_opt(argc, argv, &i, "--batch", &missing))) {
            if (!cli_parse_int(v, 1, 1L << 20, &n)) return cli_usage_error(cmd, "--batch expects a positive integer, got '%s'", v);
            a->batch = (int)n;
        } else if ((v = cli_opt(argc, argv, &i, "--quant", &missing))) {
            if (!cli_parse_quant(cmd, v, &a->quant)) return 1;
        } else if ((sr = cli_sampling_opt(cmd, argc, argv, &i, &a->sp)) != 0) {
            if (sr < 0) return 1;
        } else if ((v = cli_opt(argc, argv, &i, "-t", &missing))) {
            if (!cli_apply_threads(cmd, v)) return 1;
        } else if (missing) return cli_usage_error(cmd, "%s needs a value", argv[i]);
        else return cli_usage_error(cmd, "unknown option '%s'", argv[i]);
    }
    if (!a->dir) return cli_usage_error(cmd, "-m DIR is required");
    if (!strcmp(cmd, "run") && !a->prompt) return cli_usage_error(cmd, "-p PROMPT is required");
    return -1;
}

ds_status session_open(run_session *s, const run_args *a, ds_error *err) {
    memset(s, 0, sizeof *s);
    ds_status st = cli_model_load(&s->m, a->dir, a->quant, err);
    if (st) return st;
    s->loaded = true;
    st = tokenizer_load(&s->tok, a->dir, err);
    if (st) return st;
    int ctx = a->ctx < s->m.cfg.max_position_embeddings ? a->ctx : s->m.cfg.max_position_embeddings;
    st = textgen_init(&s->g, &s->m, s->tok, ctx, a->batch, &a->sp, err);
    s->gen_ready = st == DS_OK;
    return st;
}

void session_close(run_session *s) {
    if (s->gen_ready) textgen_free(&s->g);
    if (s->tok) tokenizer_free(s->tok);
    if (s->loaded) ds_model_free(&s->m);
}

// Renders (or takes raw) the conversation, generates, prints the stats line.
ds_status session_reply(run_session *s, const run_args *a, const chat_msg *msgs, int n_msgs, const char *raw,
                               char **reply, ds_error *err) {
    char *text = NULL;
    ds_status st = raw ? ((text = strdup(raw)) ? DS_OK : DS_ERR_OOM) : chat_render(s->tok, msgs, n_msgs, true, &text, err);
    if (st) return st == DS_ERR_OOM ? ds_error_set(err, st, "out of memory") : st;
    int *ids = NULL, n = 0;
    // A rendered template already holds BOS as text; raw prompts get the tokenizer's specials.
    st = tokenizer_encode(s->tok, text, strlen(text), raw != NULL, &ids, &n, err);
    textgen_opts o = {.max_new = a->n, .batch = a->batch, .in_reasoning = !raw && chat_prompt_opens_reasoning(text),
                      .color = isatty(1)};
    textgen_stats ts;
    if (!st) st = textgen_run(&s->g, ids, n, &o, reply, &ts, err);
    if (!st || st == DS_ERR_INTERRUPTED)
        fprintf(stderr, "[prompt %d tokens (%d new) %.1f tok/s | reply %d tokens %.1f tok/s%s]\n", ts.prompt_tokens,
                ts.prefilled, ts.prefilled / (ts.prefill_s + 1e-12), ts.generated, ts.generated / (ts.decode_s + 1e-12),
                cli_interrupted ? ", stopped" : ts.stopped ? "" : ", length limit");
    free(ids);
    free(text);
    return st;
}

