// deepseek logits -m DIR --ids 0,17,42 [--mtp] [--attn auto|naive|absorbed] [--chunk N] -o out.npy
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/npy.h"
#include "model/engine.h"

static void logits_usage(FILE *f) {
    fprintf(f,
            "usage: deepseek logits -m DIR --ids 0,17,42 -o OUT.npy [--mtp] [--attn auto|naive|absorbed] [--chunk N] [--quant q8|q4] [-t THREADS]\n"
            "Writes the float32 logits of every position, shape [T, vocab], as a NumPy .npy file.\n"
            "  --mtp    the MTP head's logits instead: row i predicts token i+2 from position i and\n"
            "           token i+1, shape [T-1, vocab]\n"
            "  --attn   attention form: auto (default), naive (decompressed K/V) or absorbed (latent)\n"
            "  --chunk  feed the sequence N tokens per forward call (default: all at once); the\n"
            "           result must not change, which makes it a cache-consistency check\n");
}

static ds_status logits_run(const ds_model *m, const int *ids, int T, int chunk, int mtp, ds_attn_mode attn,
                            float *out, ds_error *err) {
    ds_engine_limits lim = {.max_tokens = chunk, .max_seqs = 1, .max_ctx = T, .max_logits = chunk, .attn = attn};
    ds_engine *e;
    ds_status st = ds_engine_create(&e, m, &lim, err);
    if (st) return st;
    int64_t V = m->cfg.vocab_size, D = m->cfg.hidden_size;
    int *seq = calloc((size_t)chunk, sizeof(int)), *pos = malloc((size_t)chunk * sizeof(int));
    uint8_t *want = malloc((size_t)chunk);
    float *hidden = mtp ? malloc((size_t)(T * D) * sizeof(float)) : NULL;
    if (!seq || !pos || !want || (mtp && !hidden)) st = ds_error_set(err, DS_ERR_OOM, "out of memory");
    if (want) memset(want, 1, (size_t)chunk);
    for (int t0 = 0; st == DS_OK && t0 < T; t0 += chunk) {
        int n = T - t0 < chunk ? T - t0 : chunk;
        for (int i = 0; i < n; i++) pos[i] = t0 + i;
        ds_batch b = {n, ids + t0, seq, pos, want};
        st = ds_engine_forward(e, &b, mtp ? NULL : out + t0 * V, err);
        if (st == DS_OK && mtp) memcpy(hidden + t0 * D, ds_engine_hidden(e), (size_t)(n * D) * sizeof(float));
    }
    // MTP position p combines the main hidden state at p with the embedding of token p+1.
    for (int t0 = 0; st == DS_OK && mtp && t0 < T - 1; t0 += chunk) {
        int n = T - 1 - t0 < chunk ? T - 1 - t0 : chunk;
        for (int i = 0; i < n; i++) pos[i] = t0 + i;
        ds_batch b = {n, ids + t0 + 1, seq, pos, want};
        st = ds_engine_forward_mtp(e, &b, hidden + t0 * D, out + t0 * V, err);
    }
    free(seq); free(pos); free(want); free(hidden);
    ds_engine_free(e);
    return st;
}

int cmd_logits(int argc, char **argv) {
    const char *dir = NULL, *out = NULL, *ids_s = NULL, *v;
    int mtp = 0;
    long chunk = 0;
    ds_attn_mode attn = DS_ATTN_AUTO;
    int quant = -1;
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { logits_usage(stdout); return 0; }
        if (!strcmp(argv[i], "--mtp")) mtp = 1;
        else if ((v = cli_opt(argc, argv, &i, "-m", &missing)) || (v = cli_opt(argc, argv, &i, "--model", &missing))) dir = v;
        else if ((v = cli_opt(argc, argv, &i, "-o", &missing)) || (v = cli_opt(argc, argv, &i, "--out", &missing))) out = v;
        else if ((v = cli_opt(argc, argv, &i, "--ids", &missing))) ids_s = v;
        else if ((v = cli_opt(argc, argv, &i, "--attn", &missing))) {
            int mode;
            if (!cli_parse_attn("logits", v, &mode)) return 1;
            attn = (ds_attn_mode)mode;
        } else if ((v = cli_opt(argc, argv, &i, "--chunk", &missing))) {
            if (!cli_parse_int(v, 1, 1L << 24, &chunk)) return cli_usage_error("logits", "--chunk expects a positive integer, got '%s'", v);
        } else if ((v = cli_opt(argc, argv, &i, "--quant", &missing))) {
            if (!cli_parse_quant("logits", v, &quant)) return 1;
        } else if ((v = cli_opt(argc, argv, &i, "-t", &missing))) {
            if (!cli_apply_threads("logits", v)) return 1;
        } else if (missing) return cli_usage_error("logits", "%s needs a value", argv[i]);
        else return cli_usage_error("logits", "unknown option '%s'", argv[i]);
    }
    if (!dir) return cli_usage_error("logits", "-m DIR is required");
    if (!out) return cli_usage_error("logits", "-o OUT.npy is required");
    int *ids, T;
    if (!ids_s || !cli_parse_ids(ids_s, &ids, &T))
        return cli_usage_error("logits", "--ids expects comma-separated non-negative token ids, e.g. 0,17,42");
    ds_model m;
    ds_error err = {{0}};
    ds_status st = cli_model_load(&m, dir, quant, &err);
    if (st) { free(ids); return cli_fail("logits", st, &err); }
    if (mtp && !m.has_mtp) st = ds_error_set(&err, DS_ERR_ARG, "%s: --mtp given but the model has no MTP layer", dir);
    else if (mtp && T < 2) st = ds_error_set(&err, DS_ERR_ARG, "--mtp needs at least 2 ids");
    else if (T > m.cfg.max_position_embeddings)
        st = ds_error_set(&err, DS_ERR_LIMIT, "%d ids exceed max_position_embeddings %d", T, m.cfg.max_position_embeddings);
    float *logits = NULL;
    int rows = mtp ? T - 1 : T;
    if (!st) {
        logits = malloc((size_t)rows * (size_t)m.cfg.vocab_size * sizeof(float));
        if (!logits) st = ds_error_set(&err, DS_ERR_OOM, "out of memory for %d x %d logits", rows, m.cfg.vocab_size);
    }
    if (!st) st = logits_run(&m, ids, T, chunk ? (int)(chunk < T ? chunk : T) : T, mtp, attn, logits, &err);
    if (!st) {
        int64_t shape[2] = {rows, m.cfg.vocab_size};
        st = npy_write_f32(out, logits, 2, shape, &err);
    }
    free(logits);
    free(ids);
    ds_model_free(&m);
    return st ? cli_fail("logits", st, &err) : 0;
}
