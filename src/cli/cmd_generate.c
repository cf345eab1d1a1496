// deepseek generate -m DIR --ids 0,17,42 -n N [sampling flags] [--quant q8|q4] [-t THREADS]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "infer/sampler.h"
#include "model/engine.h"

static void generate_usage(FILE *f) {
    fprintf(f,
            "usage: deepseek generate -m DIR --ids IDS -n N [--temp T] [--top-k K] [--top-p P] [--min-p P]\n"
            "                         [--seed S] [--ignore-eos] [--batch N] [--attn MODE] [-t THREADS]\n"
            "Prints generated token ids as they come. IDS is a comma-separated prompt, e.g. 0,17,42;\n"
            "several prompts separated by ';' are prefilled and decoded together in one batch, and\n"
            "then print one line each.\n"
            "  -n         tokens to generate per prompt (default 16)\n"
            "  --temp     temperature, 0 = greedy (default 0)\n"
            "  --top-k    keep the K most likely tokens (0 = off)\n"
            "  --top-p    nucleus sampling mass in (0, 1] (1 = off)\n"
            "  --min-p    drop tokens below P times the top probability (0 = off)\n"
            "  --seed     sampling seed (default 1); sequence i uses seed + i\n"
            "  --ignore-eos  keep going after the end-of-sequence token\n"
            "  --batch    most tokens per forward call during prefill (default 512)\n"
            "  --attn     auto (default), naive or absorbed attention\n");
}

typedef struct {
    int n_prompts;
    int **ids;
    int *len;
} prompt_set;

static void prompts_free(prompt_set *p) {
    for (int i = 0; i < p->n_prompts; i++) free(p->ids[i]);
    free(p->ids);
    free(p->len);
}

static bool prompts_parse(const char *s, prompt_set *p) {
    memset(p, 0, sizeof *p);
    int cap = 1;
    for (const char *c = s; *c; c++) cap += *c == ';';
    p->ids = calloc((size_t)cap, sizeof *p->ids);
    p->len = calloc((size_t)cap, sizeof *p->len);
    char *copy = strdup(s);
    if (!p->ids || !p->len || !copy) { free(copy); return false; }
    char *save = NULL;
    bool ok = true;
    int k = 0;
    for (char *tok = strtok_r(copy, ";", &save); tok && ok; tok = strtok_r(NULL, ";", &save)) {
        ok = cli_parse_ids(tok, &p->ids[k], &p->len[k]);
        if (ok) k++;
    }
    p->n_prompts = k;
    free(copy);
    return ok && k == cap;
}

typedef struct {
    const ds_model *m;
    ds_engine *e;
    sampler *samplers;
    prompt_set *p;
    int n_gen, ignore_eos, batch;
    int **out;      // generated ids per sequence
    int *n_out;
    int *done;
    float *logits;  // (n_prompts, V)
} gen_state;

// Prefills every prompt (chunks of `batch` tokens) and samples each first new token.
static ds_status gen_prefill(gen_state *g, ds_error *err) {
    int total = 0;
    for (int i = 0; i < g->p->n_prompts; i++) total += g->p->len[i];
    int *tok = malloc((size_t)total * sizeof(int)), *seq = malloc((size_t)total * sizeof(int));
    int *pos = malloc((size_t)total * sizeof(int));
    uint8_t *want = malloc((size_t)total);
    ds_status st = (tok && seq && pos && want) ? DS_OK : ds_error_set(err, DS_ERR_OOM, "out of memory");
    for (int i = 0, k = 0; st == DS_OK && i < g->p->n_prompts; i++)
        for (int j = 0; j < g->p->len[i]; j++, k++) {
            tok[k] = g->p->ids[i][j];
            seq[k] = i;
            pos[k] = j;
            want[k] = j == g->p->len[i] - 1;
        }
    int64_t V = g->m->cfg.vocab_size;
    for (int t0 = 0; st == DS_OK && t0 < total && !cli_interrupted; t0 += g->batch) {
        int n = total - t0 < g->batch ? total - t0 : g->batch;
        ds_batch b = {n, tok + t0, seq + t0, pos + t0, want + t0};
        st = ds_engine_forward(g->e, &b, g->logits, err);
        for (int i = 0, r = 0; st == DS_OK && i < n; i++)
            if (want[t0 + i]) {
                int s = seq[t0 + i];
                g->out[s][g->n_out[s]++] = sampler_sample(&g->samplers[s], g->logits + r++ * V);
            }
    }
    free(tok); free(seq); free(pos); free(want);
    return st;
}

static int gen_is_done(const gen_state *g, int s) {
    int last = g->out[s][g->n_out[s] - 1];
    return g->n_out[s] >= g->n_gen || (!g->ignore_eos && last == g->m->cfg.eos_token_id);
}

// Decodes one token for every unfinished sequence per forward call.
static ds_status gen_decode(gen_state *g, int stream, ds_error *err) {
    int S = g->p->n_prompts;
    int *tok = malloc((size_t)S * sizeof(int)), *seq = malloc((size_t)S * sizeof(int));
    int *pos = malloc((size_t)S * sizeof(int));
    uint8_t *want = malloc((size_t)S);
    ds_status st = (tok && seq && pos && want) ? DS_OK : ds_error_set(err, DS_ERR_OOM, "out of memory");
    int64_t V = g->m->cfg.vocab_size;
    while (st == DS_OK && !cli_interrupted) {
        int n = 0;
        for (int s = 0; s < S; s++) {
            if (g->done[s] || (g->done[s] = gen_is_done(g, s))) continue;
            tok[n] = g->out[s][g->n_out[s] - 1];
            seq[n] = s;
            pos[n] = g->p->len[s] + g->n_out[s] - 1;
            want[n++] = 1;
        }
        if (n == 0) break;
        ds_batch b = {n, tok, seq, pos, want};
        st = ds_engine_forward(g->e, &b, g->logits, err);
        for (int i = 0; st == DS_OK && i < n; i++) {
            int s = seq[i], t = sampler_sample(&g->samplers[s], g->logits + i * V);
            g->out[s][g->n_out[s]++] = t;
            if (stream) { printf(" %d", t); fflush(stdout); }
        }
    }
    free(tok); free(seq); free(pos); free(want);
    return st;
}

static ds_status gen_run(const ds_model *m, prompt_set *p, int n_gen, const sampler_params *sp, int ignore_eos,
                         int batch, ds_attn_mode attn, ds_error *err) {
    int S = p->n_prompts, max_len = 0, total = 0;
    for (int i = 0; i < S; i++) {
        max_len = p->len[i] > max_len ? p->len[i] : max_len;
        total += p->len[i];
    }
    if ((long)max_len + n_gen > m->cfg.max_position_embeddings)
        return ds_error_set(err, DS_ERR_LIMIT, "prompt (%d) + -n (%d) exceeds max_position_embeddings %d", max_len, n_gen,
                            m->cfg.max_position_embeddings);
    int chunk = total < batch ? total : batch;
    if (chunk < S) chunk = S;
    ds_engine_limits lim = {.max_tokens = chunk, .max_seqs = S, .max_ctx = max_len + n_gen, .max_logits = chunk, .attn = attn};
    gen_state g = {.m = m, .p = p, .n_gen = n_gen, .ignore_eos = ignore_eos, .batch = chunk};
    ds_status st = ds_engine_create(&g.e, m, &lim, err);
    if (st) return st;
    g.samplers = calloc((size_t)S, sizeof(sampler));
    g.out = calloc((size_t)S, sizeof(int *));
    g.n_out = calloc((size_t)S, sizeof(int));
    g.done = calloc((size_t)S, sizeof(int));
    g.logits = malloc((size_t)chunk * (size_t)m->cfg.vocab_size * sizeof(float));
    if (!g.samplers || !g.out || !g.n_out || !g.done || !g.logits) st = ds_error_set(err, DS_ERR_OOM, "out of memory");
    for (int s = 0; st == DS_OK && s < S; s++) {
        sampler_params ps = *sp;
        ps.seed = sp->seed + (uint64_t)s;
        st = sampler_init(&g.samplers[s], &ps, m->cfg.vocab_size, err);
        if (st == DS_OK && !(g.out[s] = malloc((size_t)n_gen * sizeof(int)))) st = ds_error_set(err, DS_ERR_OOM, "out of memory");
    }
    double t0 = cli_now();
    if (st == DS_OK) st = gen_prefill(&g, err);
    double t1 = cli_now();
    int stream = S == 1;
    if (st == DS_OK && stream && g.n_out[0] > 0) { printf("%d", g.out[0][0]); fflush(stdout); }
    if (st == DS_OK) st = gen_decode(&g, stream, err);
    double t2 = cli_now();
    int decoded = 0;
    for (int s = 0; st == DS_OK && s < S; s++) {
        decoded += g.n_out[s] - 1;
        if (!stream)
            for (int i = 0; i < g.n_out[s]; i++) printf(i ? " %d" : "%d", g.out[s][i]);
        if (!stream || s == 0) printf("\n");
    }
    fflush(stdout);
    if (st == DS_OK)
        fprintf(stderr, "generate: prefill %d tokens in %.3f s (%.1f tok/s), decode %d tokens in %.3f s (%.1f tok/s)%s\n",
                total, t1 - t0, total / (t1 - t0 + 1e-12), decoded, t2 - t1, decoded / (t2 - t1 + 1e-12),
                cli_interrupted ? ", interrupted" : "");
    for (int s = 0; s < S && g.samplers; s++) {
        sampler_free(&g.samplers[s]);
        if (g.out) free(g.out[s]);
    }
    free(g.samplers); free(g.out); free(g.n_out); free(g.done); free(g.logits);
    ds_engine_free(g.e);
    return st;
}

int cmd_generate(int argc, char **argv) {
    const char *dir = NULL, *ids_s = NULL, *v;
    long n_gen = 16, batch = 512;
    int sr;
    int ignore_eos = 0;
    ds_attn_mode attn = DS_ATTN_AUTO;
    sampler_params sp = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = 1};
    int quant = -1;
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { generate_usage(stdout); return 0; }
        if (!strcmp(argv[i], "--ignore-eos")) ignore_eos = 1;
        else if ((v = cli_opt(argc, argv, &i, "-m", &missing)) || (v = cli_opt(argc, argv, &i, "--model", &missing))) dir = v;
        else if ((v = cli_opt(argc, argv, &i, "--ids", &missing))) ids_s = v;
        else if ((v = cli_opt(argc, argv, &i, "-n", &missing))) {
            if (!cli_parse_int(v, 1, 1L << 24, &n_gen)) return cli_usage_error("generate", "-n expects a positive integer, got '%s'", v);
        } else if ((sr = cli_sampling_opt("generate", argc, argv, &i, &sp)) != 0) {
            if (sr < 0) return 1;
        } else if ((v = cli_opt(argc, argv, &i, "--batch", &missing))) {
            if (!cli_parse_int(v, 1, 1L << 20, &batch)) return cli_usage_error("generate", "--batch expects a positive integer, got '%s'", v);
        } else if ((v = cli_opt(argc, argv, &i, "--attn", &missing))) {
            int mode;
            if (!cli_parse_attn("generate", v, &mode)) return 1;
            attn = (ds_attn_mode)mode;
        } else if ((v = cli_opt(argc, argv, &i, "--quant", &missing))) {
            if (!cli_parse_quant("generate", v, &quant)) return 1;
        } else if ((v = cli_opt(argc, argv, &i, "-t", &missing))) {
            if (!cli_apply_threads("generate", v)) return 1;
        } else if (missing) return cli_usage_error("generate", "%s needs a value", argv[i]);
        else return cli_usage_error("generate", "unknown option '%s'", argv[i]);
    }
    if (!dir) return cli_usage_error("generate", "-m DIR is required");
    prompt_set p;
    if (!ids_s || !prompts_parse(ids_s, &p)) {
        if (ids_s) prompts_free(&p);
        return cli_usage_error("generate", "--ids expects comma-separated token ids, prompts separated by ';' (e.g. 0,17,42;5,6)");
    }
    ds_model m;
    ds_error err = {{0}};
    ds_status st = cli_model_load(&m, dir, quant, &err);
    if (st == DS_OK) {
        cli_install_signals();
        st = gen_run(&m, &p, (int)n_gen, &sp, ignore_eos, (int)batch, attn, &err);
        ds_model_free(&m);
    }
    prompts_free(&p);
    return st ? cli_fail("generate", st, &err) : 0;
}
