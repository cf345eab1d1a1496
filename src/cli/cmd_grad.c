// deepseek grad -m DIR --ids 0,5,9,... -o grads.safetensors [--mtp-weight W] [--balance-alpha A]
// The loss of one sequence and the gradient of every trainable parameter, for checking the
// trainer against autograd (tools/reference.py --grad) or studying a model.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/safetensors.h"
#include "train/params.h"
#include "train/train_model.h"

static void grad_usage(FILE *f) {
    fprintf(f,
            "usage: deepseek grad -m DIR --ids 0,5,9,... -o GRADS.safetensors [--mtp-weight W] [--balance-alpha A] [-t THREADS]\n"
            "Prints the loss of the sequence and writes the float32 gradient of every trainable\n"
            "parameter under its HF name. Loss = mean over t = 0..T-2 of CE(logits_t, id_{t+1})\n"
            "  + W * mean over i = 0..T-3 of CE(mtp_logits_i, id_{i+2})   (MTP, default W = 0)\n"
            "  + sequence-wise balance loss with weight A (default 0) summed over MoE layers.\n"
            "The MTP layer's embed_tokens / shared_head.head share the main embedding / lm_head,\n"
            "so their gradient is in model.embed_tokens.weight / lm_head.weight; the routing bias\n"
            "e_score_correction_bias gets no gradient and is not written.\n");
}

// Tensors that carry their own gradient: not the MTP copies, not the routing bias.
static int grad_is_written(const ckpt_tensor *t) {
    return strcmp(t->source, t->name) == 0 && !strstr(t->name, "e_score_correction_bias");
}

int cmd_grad(int argc, char **argv) {
    const char *dir = NULL, *out = NULL, *ids_s = NULL, *v;
    double mtp_w = 0, bal_a = 0;
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { grad_usage(stdout); return 0; }
        if ((v = cli_opt(argc, argv, &i, "-m", &missing)) || (v = cli_opt(argc, argv, &i, "--model", &missing))) dir = v;
        else if ((v = cli_opt(argc, argv, &i, "-o", &missing)) || (v = cli_opt(argc, argv, &i, "--out", &missing))) out = v;
        else if ((v = cli_opt(argc, argv, &i, "--ids", &missing))) ids_s = v;
        else if ((v = cli_opt(argc, argv, &i, "--mtp-weight", &missing))) {
            if (!cli_parse_float(v, 0, 1e6, &mtp_w)) return cli_usage_error("grad", "--mtp-weight expects a number >= 0, got '%s'", v);
        } else if ((v = cli_opt(argc, argv, &i, "--balance-alpha", &missing))) {
            if (!cli_parse_float(v, 0, 1e6, &bal_a)) return cli_usage_error("grad", "--balance-alpha expects a number >= 0, got '%s'", v);
        } else if ((v = cli_opt(argc, argv, &i, "-t", &missing))) {
            if (!cli_apply_threads("grad", v)) return 1;
        } else if (missing) return cli_usage_error("grad", "%s needs a value", argv[i]);
        else return cli_usage_error("grad", "unknown option '%s'", argv[i]);
    }
    if (!dir) return cli_usage_error("grad", "-m DIR is required");
    if (!out) return cli_usage_error("grad", "-o OUT.safetensors is required");
    int *ids, n;
    if (!ids_s || !cli_parse_ids(ids_s, &ids, &n))
        return cli_usage_error("grad", "--ids expects comma-separated non-negative token ids, e.g. 0,17,42");

    ds_error err = {{0}};
    param_store ps;
    ds_status st = params_load(&ps, dir, &err);
    if (st) { free(ids); return cli_fail("grad", st, &err); }
    const ds_config *c = &ps.cfg;
    int T = n - 1;
    if (n < 2) st = ds_error_set(&err, DS_ERR_ARG, "--ids needs at least 2 ids (a token and its successor)");
    else if (mtp_w > 0 && c->num_nextn_predict_layers == 0)
        st = ds_error_set(&err, DS_ERR_ARG, "%s: --mtp-weight given but the model has no MTP layer", dir);
    else if (mtp_w > 0 && n < 3) st = ds_error_set(&err, DS_ERR_ARG, "--mtp-weight needs at least 3 ids");
    for (int i = 0; !st && i < n; i++)
        if (ids[i] >= c->vocab_size)
            st = ds_error_set(&err, DS_ERR_ARG, "--ids: id %d is outside the vocabulary (size %d)", ids[i], c->vocab_size);
    train_model *tm = NULL;
    if (!st) st = train_model_create(&tm, &ps, 1, T, &err);
    if (!st) {
        int32_t *inp = malloc(sizeof(int32_t) * (size_t)T), *tgt = malloc(sizeof(int32_t) * (size_t)T);
        if (!inp || !tgt) st = ds_error_set(&err, DS_ERR_OOM, "out of memory");
        for (int t = 0; !st && t < T; t++) { inp[t] = ids[t]; tgt[t] = ids[t + 1]; }
        if (!st) {
            train_loss_weights w = {.ce_weight = 1.0f / (float)T,
                                    .mtp_weight = mtp_w > 0 ? (float)(mtp_w / (T - 1)) : 0.0f,
                                    .balance_weight = (float)bal_a};
            train_loss L = {0};
            memset(ps.grads, 0, sizeof(float) * (size_t)ps.n);
            train_model_step(tm, inp, tgt, 1, T, &w, &L);
            double ce = L.ce_sum / (double)L.ce_count, mtp = L.mtp_count ? L.mtp_sum / (double)L.mtp_count : 0.0;
            printf("{\"loss\": %.9g, \"ce\": %.9g, \"mtp\": %.9g, \"balance\": %.9g}\n", L.loss, ce, mtp, L.balance);
            fflush(stdout);
        }
        free(inp); free(tgt);
    }
    if (!st) {
        st_write_item *items = calloc((size_t)ps.list.n, sizeof *items);
        int k = 0;
        if (!items) st = ds_error_set(&err, DS_ERR_OOM, "out of memory");
        for (int i = 0; !st && i < ps.list.n; i++) {
            const ckpt_tensor *t = &ps.list.t[i];
            if (!grad_is_written(t)) continue;
            items[k] = (st_write_item){.name = t->name, .dtype = DS_F32, .ndim = t->ndim,
                                       .shape = {t->shape[0], t->shape[1]}, .data = params_grad(&ps, i)};
            k++;
        }
        if (!st) st = st_file_write(out, items, k, &err);
        free(items);
    }
    train_model_free(tm);
    params_free(&ps);
    free(ids);
    return st ? cli_fail("grad", st, &err) : 0;
}
