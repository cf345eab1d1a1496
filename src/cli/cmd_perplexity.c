// deepseek perplexity -m DIR --text FILE [--ctx N] [--quant q8|q4] [--kl] [--max-windows N]
// Perplexity of a model on a text, and with --kl the cost of a quantization: the mean
// KL-divergence of the quantized model's next-token distributions from the stored model's,
// and how often their top tokens agree, on the same positions.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/fileutil.h"
#include "model/engine.h"
#include "tokenizer/tokenizer.h"

static void ppl_usage(FILE *f) {
    fprintf(f,
            "usage: deepseek perplexity -m DIR --text FILE [--ctx N] [--quant q8|q4] [--kl] [--max-windows N] [-t THREADS]\n"
            "Tokenizes FILE with the model's tokenizer, cuts it into windows of N tokens (default\n"
            "512), runs each window in one forward pass and scores every position after the first\n"
            "(the second half of each window only, with --half, as llama.cpp's perplexity does).\n"
            "Prints one JSON line: tokens scored, mean negative log-likelihood, perplexity.\n"
            "  --quant Q  evaluate the model re-encoded as q8 (Q8_0) or q4 (Q4_0)\n"
            "  --kl       with --quant: also run the model as stored and report the mean KL(stored ||\n"
            "             quantized) of the next-token distributions and the top-1 agreement\n");
}

// log softmax of one row into lp (V), returns nothing; double accumulation for the sum.
static void log_softmax(const float *l, double *lp, int V) {
    float mx = max_f32(l, V);
    double s = 0;
    for (int j = 0; j < V; j++) s += exp((double)l[j] - mx);
    double lse = mx + log(s);
    for (int j = 0; j < V; j++) lp[j] = (double)l[j] - lse;
}

static ds_status window_logits(ds_engine *e, const int *ids, int n, float *out, ds_error *err) {
    int *seq = calloc((size_t)n, sizeof(int)), *pos = malloc(sizeof(int) * (size_t)n);
    uint8_t *want = malloc((size_t)n);
    ds_status st = seq && pos && want ? DS_OK : ds_error_set(err, DS_ERR_OOM, "out of memory");
    for (int i = 0; !st && i < n; i++) { pos[i] = i; want[i] = 1; }
    ds_engine_seq_truncate(e, 0, 0);
    ds_batch b = {n, ids, seq, pos, want};
    if (!st) st = ds_engine_forward(e, &b, out, err);
    free(seq); free(pos); free(want);
    return st;
}

int cmd_perplexity(int argc, char **argv) {
    const char *dir = NULL, *text_path = NULL, *v;
    long ctx = 512, max_windows = 0;
    int quant = -1, kl = 0, half = 0;
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { ppl_usage(stdout); return 0; }
        if (!strcmp(argv[i], "--kl")) kl = 1;
        else if (!strcmp(argv[i], "--half")) half = 1;
        else if ((v = cli_opt(argc, argv, &i, "-m", &missing)) || (v = cli_opt(argc, argv, &i, "--model", &missing))) dir = v;
        else if ((v = cli_opt(argc, argv, &i, "--text", &missing))) text_path = v;
        else if ((v = cli_opt(argc, argv, &i, "--ctx", &missing))) {
            if (!cli_parse_int(v, 2, 1L << 20, &ctx)) return cli_usage_error("perplexity", "--ctx expects an integer >= 2, got '%s'", v);
        } else if ((v = cli_opt(argc, argv, &i, "--max-windows", &missing))) {
            if (!cli_parse_int(v, 1, 1L << 30, &max_windows)) return cli_usage_error("perplexity", "--max-windows expects a positive integer, got '%s'", v);
        } else if ((v = cli_opt(argc, argv, &i, "--quant", &missing))) {
            if (!cli_parse_quant("perplexity", v, &quant)) return 1;
        } else if ((v = cli_opt(argc, argv, &i, "-t", &missing))) {
            if (!cli_apply_threads("perplexity", v)) return 1;
        } else if (missing) return cli_usage_error("perplexity", "%s needs a value", argv[i]);
        else return cli_usage_error("perplexity", "unknown option '%s'", argv[i]);
    }
    if (!dir) return cli_usage_error("perplexity", "-m DIR is required");
    if (!text_path) return cli_usage_error("perplexity", "--text FILE is required");
    if (kl && quant < 0) return cli_usage_error("perplexity", "--kl compares a quantized model with the stored one: give --quant too");

    ds_error err = {{0}};
    char *text = NULL;
    size_t len = 0;
    int *ids = NULL, n = 0;
    ds_tokenizer *tok = NULL;
    ds_model m, mref;
    int have_m = 0, have_ref = 0;
    ds_engine *e = NULL, *eref = NULL;
    float *lq = NULL, *lr = NULL;
    double *lp = NULL, *lpr = NULL;
    ds_status st = file_read_all(text_path, &text, &len, &err);
    if (!st) st = tokenizer_load(&tok, dir, &err);
    if (!st) st = tokenizer_encode(tok, text, len, true, &ids, &n, &err);
    if (!st) { st = cli_model_load(&m, dir, quant, &err); have_m = st == DS_OK; }
    if (!st && kl) { st = ds_model_load(&mref, dir, &err); have_ref = st == DS_OK; }
    int V = have_m ? m.cfg.vocab_size : 0;
    if (!st && ctx > m.cfg.max_position_embeddings) ctx = m.cfg.max_position_embeddings;
    if (!st && n < 2) st = ds_error_set(&err, DS_ERR_ARG, "%s: %d tokens, too few to score", text_path, n);
    for (int i = 0; !st && i < n; i++)
        if (ids[i] >= V) st = ds_error_set(&err, DS_ERR_ARG, "token id %d from the tokenizer is outside the model's vocabulary (%d)", ids[i], V);
    int W = (int)ctx;
    ds_engine_limits lim = {.max_tokens = W, .max_seqs = 1, .max_ctx = W, .max_logits = W};
    if (!st) st = ds_engine_create(&e, &m, &lim, &err);
    if (!st && kl) st = ds_engine_create(&eref, &mref, &lim, &err);
    if (!st) {
        lq = malloc(sizeof(float) * (size_t)W * (size_t)V);
        lr = kl ? malloc(sizeof(float) * (size_t)W * (size_t)V) : NULL;
        lp = malloc(sizeof(double) * (size_t)V);
        lpr = malloc(sizeof(double) * (size_t)V);
        if (!lq || (kl && !lr) || !lp || !lpr) st = ds_error_set(&err, DS_ERR_OOM, "out of memory for %d x %d logits", W, V);
    }
    double nll = 0, kl_sum = 0;
    int64_t scored = 0, agree = 0;
    int n_windows = n / W > 0 ? n / W : 1;
    if (max_windows && n_windows > max_windows) n_windows = (int)max_windows;
    cli_install_signals();
    for (int w = 0; !st && w < n_windows && !cli_interrupted; w++) {
        int start = w * W, len_w = n - start < W ? n - start : W;
        st = window_logits(e, ids + start, len_w, lq, &err);
        if (!st && kl) st = window_logits(eref, ids + start, len_w, lr, &err);
        int first = half ? len_w / 2 : 0;
        for (int i = first; !st && i < len_w - 1; i++) {
            log_softmax(lq + (int64_t)i * V, lp, V);
            nll -= lp[ids[start + i + 1]];
            scored++;
            if (!kl) continue;
            log_softmax(lr + (int64_t)i * V, lpr, V);
            double d = 0;
            int aq = 0, ar = 0;
            for (int j = 0; j < V; j++) {
                d += exp(lpr[j]) * (lpr[j] - lp[j]);
                if (lp[j] > lp[aq]) aq = j;
                if (lpr[j] > lpr[ar]) ar = j;
            }
            kl_sum += d;
            agree += aq == ar;
        }
        fprintf(stderr, "\rperplexity: window %d/%d, ppl %.4f", w + 1, n_windows, exp(nll / (double)(scored ? scored : 1)));
    }
    if (scored) fprintf(stderr, "%s\n", cli_interrupted ? " (interrupted)" : "");
    if (!st) {
        printf("{\"tokens\": %lld, \"windows_of\": %d, \"quant\": \"%s\", \"nll\": %.6f, \"ppl\": %.6f", (long long)scored, W,
               quant >= 0 ? ds_dtype_name((ds_dtype)quant) : "none", nll / (double)scored, exp(nll / (double)scored));
        if (kl) printf(", \"kl\": %.6g, \"top1_agree\": %.4f", kl_sum / (double)scored, (double)agree / (double)scored);
        printf("}\n");
    }
    free(lq); free(lr); free(lp); free(lpr);
    ds_engine_free(e);
    ds_engine_free(eref);
    if (have_m) ds_model_free(&m);
    if (have_ref) ds_model_free(&mref);
    tokenizer_free(tok);
    free(ids);
    free(text);
    if (st) return cli_fail("perplexity", st, &err);
    return cli_interrupted ? 130 : 0;
}
