// deepseek sft -m DIR --data FILE [--data FILE ...] -o OUT [options]
// Supervised fine-tuning on chat JSONL ("messages"): each example is the conversation rendered
// with the model's chat template plus the final assistant reply, and the loss covers the reply
// tokens only (and its EOS). Used for the R1 recipe's cold start on step-by-step traces.
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/rng.h"
#include "cli/cli.h"
#include "io/fileutil.h"
#include "rl/chatdata.h"
#include "train/params.h"
#include "train/train_model.h"
#include "train/trainer.h"

static void sft_usage(FILE *f) {
    fprintf(f,
            "usage: deepseek sft -m DIR --data FILE [--data FILE ...] -o OUT_DIR [options]\n"
            "Fine-tunes the model in DIR on chat examples: JSONL lines with \"messages\": [{\"role\",\n"
            "\"content\"}, ...] ending with an assistant reply. The context is rendered with DIR's chat\n"
            "template and generation prompt; the loss is on the reply (and EOS) only. OUT_DIR receives\n"
            "the model (HF layout, with DIR's tokenizer) and metrics.jsonl. Ctrl-C saves the last step.\n"
            "  --epochs E         passes over the data (default 1); --steps N overrides\n"
            "  --batch N          examples per optimizer step (default 32)\n"
            "  --micro-batch B    examples per forward/backward (default 16)\n"
            "  --max-len N        longer examples are skipped (default 512 tokens)\n"
            "  --lr X             peak learning rate (default 1e-3); --min-lr X (default lr/10)\n"
            "  --warmup N         linear warmup steps (default steps/20)\n"
            "  --schedule S       cosine (default) or constant\n"
            "  --weight-decay X   (default 0.1); --clip X grad-norm clip (default 1.0)\n"
            "  --mtp-weight X     MTP loss weight (default 0.3; 0 = off)\n"
            "  --balance-alpha X  sequence-wise balance loss (default 1e-4); --bias-gamma X (default 0.01)\n"
            "  --seed N           example order (default 1)\n"
            "  --val-frac X       held-out examples (default 0.02); --val-every N steps (default 50, 0 = never)\n"
            "  --bucket N         sort by length within chunks of N batches (less padding, but\n"
            "                     task-homogeneous batches on mixed data; default 0 = off)\n"
            "  --save-every N     checkpoint every N steps (default 0 = only at the end)\n"
            "  --save-dtype D     f32 (default) or bf16\n"
            "  -t THREADS\n");
}

typedef struct {
    const char *in_dir, *out_dir;
    const char **data;
    int n_data;
    int epochs, steps, batch, micro, max_len, warmup, sched, val_every, save_every, seed, bucket;
    double lr, min_lr, wd, clip, mtp, alpha, gamma, val_frac;
    ds_dtype save_dtype;
} sft_args;

#define SFT_INT(name, lo, hi, field) {name, 0, lo, hi, offsetof(sft_args, field)}
#define SFT_FLT(name, lo, hi, field) {name, 1, lo, hi, offsetof(sft_args, field)}
static const cli_num_opt sft_num_opts[] = {
    SFT_INT("--epochs", 1, 100000, epochs),       SFT_INT("--steps", 1, 100000000, steps),
    SFT_INT("--batch", 1, 1 << 20, batch),        SFT_INT("--micro-batch", 1, 4096, micro),
    SFT_INT("--max-len", 2, 1 << 20, max_len),    SFT_INT("--warmup", 0, 100000000, warmup),
    SFT_INT("--val-every", 0, 100000000, val_every), SFT_INT("--save-every", 0, 100000000, save_every),
    SFT_INT("--seed", 0, 2147483647, seed),       SFT_INT("--bucket", 0, 1000000, bucket),
    SFT_FLT("--lr", 1e-12, 10, lr),
    SFT_FLT("--min-lr", 0, 10, min_lr),           SFT_FLT("--weight-decay", 0, 10, wd),
    SFT_FLT("--clip", 0, 1e9, clip),              SFT_FLT("--mtp-weight", 0, 100, mtp),
    SFT_FLT("--balance-alpha", 0, 100, alpha),    SFT_FLT("--bias-gamma", 0, 10, gamma),
    SFT_FLT("--val-frac", 0, 0.5, val_frac),
};

static int sft_parse(int argc, char **argv, sft_args *a) {
    *a = (sft_args){.epochs = 1, .batch = 32, .micro = 16, .max_len = 512, .warmup = -1, .sched = LR_COSINE,
                    .val_every = 50, .seed = 1, .lr = 1e-3, .min_lr = -1, .wd = 0.1, .clip = 1.0, .mtp = 0.3,
                    .alpha = 1e-4, .gamma = 0.01, .val_frac = 0.02, .save_dtype = DS_F32};
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        const char *v;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { sft_usage(stdout); return 0; }
        int t = cli_table_opt("sft", argc, argv, &i, sft_num_opts, (int)(sizeof sft_num_opts / sizeof *sft_num_opts), a);
        if (t < 0) return 1;
        if (t > 0) continue;
        if ((v = cli_opt(argc, argv, &i, "-m", &missing))) a->in_dir = v;
        else if ((v = cli_opt(argc, argv, &i, "-o", &missing))) a->out_dir = v;
        else if ((v = cli_opt(argc, argv, &i, "--data", &missing))) {
            const char **d = realloc(a->data, sizeof *d * (size_t)(a->n_data + 1));
            if (!d) return cli_usage_error("sft", "out of memory");
            a->data = d;
            a->data[a->n_data++] = v;
        } else if ((v = cli_opt(argc, argv, &i, "-t", &missing))) {
            if (!cli_apply_threads("sft", v)) return 1;
        } else if ((v = cli_opt(argc, argv, &i, "--schedule", &missing))) {
            if (!strcmp(v, "cosine")) a->sched = LR_COSINE;
            else if (!strcmp(v, "constant")) a->sched = LR_CONSTANT;
            else return cli_usage_error("sft", "--schedule must be cosine or constant, got '%s'", v);
        } else if ((v = cli_opt(argc, argv, &i, "--save-dtype", &missing))) {
            if (!strcmp(v, "f32")) a->save_dtype = DS_F32;
            else if (!strcmp(v, "bf16")) a->save_dtype = DS_BF16;
            else return cli_usage_error("sft", "--save-dtype must be f32 or bf16, got '%s'", v);
        } else if (missing) return cli_usage_error("sft", "%s needs a value", argv[i]);
        else return cli_usage_error("sft", "unknown option '%s'", argv[i]);
        if (missing) return cli_usage_error("sft", "%s needs a value", argv[i]);
    }
    if (!a->in_dir) return cli_usage_error("sft", "-m DIR is required");
    if (!a->out_dir) return cli_usage_error("sft", "-o OUT_DIR is required");
    if (!a->n_data) return cli_usage_error("sft", "--data FILE is required");
    if (a->micro > a->batch) a->micro = a->batch;
    return -1;
}

typedef struct {
    sft_args a;
    param_store ps;
    ds_tokenizer *tok;
    chatdata_set data;
    int *order, n_train, n_val;  // order[0..n_train) train examples, then n_val held out
    train_model *tm;
    int T;                       // longest example - 1
    int32_t *inp, *tgt;          // (micro, T)
    float *tw;                   // (micro, T) token weights
    float *imbalance;
    FILE *metrics;
} sft_run;

// Fills rows for examples ex[0..b) (chatdata_pack); adds their targets to *n_ce / *n_mtp.
static int sft_pack(sft_run *r, const int *ex, int b, int64_t *n_ce, int64_t *n_mtp) {
    int64_t nc, nm;
    int T = chatdata_pack(&r->data, ex, b, r->inp, r->tgt, &nc, &nm);
    *n_ce += nc;
    *n_mtp += nm;
    return T;
}

static int cmp_len_desc(const void *x, const void *y, void *lens) {
    const int *l = lens;
    int a = *(const int *)x, b = *(const int *)y;
    return l[b] != l[a] ? l[b] - l[a] : a - b;
}

// Length bucketing (--bucket N): within chunks of N batches of the shuffled order, examples are
// sorted by length so that a batch (and its micro-batches) pads little, then whole batches are
// shuffled so that the step order does not run from long to short.
static void sft_bucket(int *order, int n, int batch, int chunks, int *len, ds_rng *rng) {
    int chunk = batch * chunks;
    for (int c0 = 0; c0 < n; c0 += chunk) {
        int m = n - c0 < chunk ? n - c0 : chunk, nb = m / batch;
        int *o = order + c0;
        qsort_r(o, (size_t)m, sizeof(int), cmp_len_desc, len);
        for (int i = nb - 1; i > 0; i--) {
            int j = (int)(ds_rng_u32(rng) % (uint32_t)(i + 1));
            for (int k = 0; k < batch; k++) {
                int t = o[i * batch + k];
                o[i * batch + k] = o[j * batch + k];
                o[j * batch + k] = t;
            }
        }
    }
}

static double sft_validate(sft_run *r) {
    train_loss L = {0};
    train_loss_weights w = {0};
    int B = r->a.micro;
    for (int i0 = 0; i0 < r->n_val; i0 += B) {
        int b = r->n_val - i0 < B ? r->n_val - i0 : B;
        int64_t nc = 0, nm = 0;
        int T = sft_pack(r, r->order + r->n_train + i0, b, &nc, &nm);
        train_model_eval(r->tm, r->inp, r->tgt, b, T, &w, &L);
    }
    return L.ce_count ? L.ce_sum / (double)L.ce_count : NAN;
}

static ds_status sft_save(sft_run *r, int step, ds_error *err) {
    fprintf(stderr, "\nsaving step %d to %s ...", step, r->a.out_dir);
    ds_status st = trainer_save_model(&r->ps, r->a.out_dir, r->a.save_dtype, r->a.in_dir, err);
    fprintf(stderr, st ? "\n" : " done\n");
    return st;
}

static ds_status sft_main(sft_run *r, ds_error *err) {
    sft_args *a = &r->a;
    ds_status st = params_load(&r->ps, a->in_dir, err);
    if (!st) st = tokenizer_load(&r->tok, a->in_dir, err);
    if (st) return st;
    const ds_config *c = &r->ps.cfg;
    if (tokenizer_vocab_size(r->tok) > c->vocab_size)
        return ds_error_set(err, DS_ERR_ARG, "the tokenizer has %d tokens but the model's vocab_size is %d",
                            tokenizer_vocab_size(r->tok), c->vocab_size);
    int max_len = a->max_len < c->max_position_embeddings ? a->max_len : c->max_position_embeddings;
    int skipped = 0;
    fprintf(stderr, "sft: reading and tokenising %d file(s) ...\n", a->n_data);
    st = chatdata_load(&r->data, r->tok, a->data, a->n_data, max_len, &skipped, err);
    if (st) return st;
    if (skipped) fprintf(stderr, "sft: skipped %d examples longer than %d tokens\n", skipped, max_len);
    int n = r->data.n;
    r->order = malloc(sizeof(int) * (size_t)n);
    if (!r->order) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    // Held-out examples: a fixed seeded choice, never trained on.
    ds_rng rng;
    ds_rng_seed(&rng, (uint64_t)a->seed, 7);
    for (int i = 0; i < n; i++) r->order[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(ds_rng_u32(&rng) % (uint32_t)(i + 1)), t = r->order[i];
        r->order[i] = r->order[j];
        r->order[j] = t;
    }
    r->n_val = (int)(a->val_frac * n);
    if (r->n_val > 512) r->n_val = 512;
    r->n_train = n - r->n_val;
    // the held-out ones move to the end, the rest keeps the shuffled order
    int *tmp = malloc(sizeof(int) * (size_t)n);
    if (!tmp) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    memcpy(tmp, r->order + r->n_val, sizeof(int) * (size_t)r->n_train);
    memcpy(tmp + r->n_train, r->order, sizeof(int) * (size_t)r->n_val);
    free(r->order);
    r->order = tmp;
    if (r->n_train < 1) return ds_error_set(err, DS_ERR_ARG, "no training examples left after the validation split");
    int64_t tokens = 0, longest = 0;
    for (int i = 0; i < n; i++) {
        tokens += r->data.len[i];
        if (r->data.len[i] > longest) longest = r->data.len[i];
    }
    r->T = longest - 1 > 2 ? (int)longest - 1 : 2;
    int steps_per_epoch = (r->n_train + a->batch - 1) / a->batch;
    int steps = a->steps ? a->steps : steps_per_epoch * a->epochs;
    st = train_model_create(&r->tm, &r->ps, a->micro, r->T, err);
    if (st) return st;
    r->inp = malloc(sizeof(int32_t) * (size_t)a->micro * (size_t)r->T);
    r->tgt = malloc(sizeof(int32_t) * (size_t)a->micro * (size_t)r->T);
    r->tw = malloc(sizeof(float) * (size_t)a->micro * (size_t)r->T);
    r->imbalance = calloc((size_t)train_model_n_moe_layers(r->tm) + 1, sizeof(float));
    if (!r->inp || !r->tgt || !r->tw || !r->imbalance) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    st = file_mkdirs(a->out_dir, err);
    if (st) return st;
    char *mpath = file_join(a->out_dir, "metrics.jsonl");
    if (!mpath || !(r->metrics = fopen(mpath, "wb"))) st = ds_error_set(err, DS_ERR_IO, "%s: cannot open for writing", mpath ? mpath : a->out_dir);
    free(mpath);
    if (st) return st;

    int warmup = a->warmup >= 0 ? a->warmup : steps / 20;
    lr_schedule sched = {.kind = (lr_schedule_kind)a->sched, .lr_max = (float)a->lr, .warmup = warmup, .total = steps,
                         .lr_min = a->min_lr >= 0 ? (float)a->min_lr : (float)a->lr * 0.1f};
    adamw_params hp = {.beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = (float)a->wd};
    int with_mtp = c->num_nextn_predict_layers > 0 && a->mtp > 0;
    fprintf(stderr, "sft: %d train / %d held-out examples (%lld tokens, longest %lld), %d steps of %d examples, "
                    "micro-batch %d, activations %.0f MiB\n",
            r->n_train, r->n_val, (long long)tokens, (long long)longest, steps, a->batch, a->micro,
            (double)train_model_bytes(r->tm) / (1 << 20));
    int *batch = malloc(sizeof(int) * (size_t)a->batch);
    if (!batch) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    int tty = isatty(2), step = 0, cursor = r->n_train, epoch = 0;
    double t_start = cli_now();
    while (step < steps && !cli_interrupted) {
        double t0 = cli_now();
        int S = 0;
        while (S < a->batch) {
            if (cursor == r->n_train) { // new epoch: reshuffle the training part
                cursor = 0;
                epoch++;
                ds_rng_seed(&rng, (uint64_t)a->seed, 100 + (uint64_t)epoch);
                for (int i = r->n_train - 1; i > 0; i--) {
                    int j = (int)(ds_rng_u32(&rng) % (uint32_t)(i + 1)), t = r->order[i];
                    r->order[i] = r->order[j];
                    r->order[j] = t;
                }
                if (a->bucket > 0) sft_bucket(r->order, r->n_train, a->batch, a->bucket, r->data.len, &rng);
            }
            batch[S++] = r->order[cursor++];
            if (r->n_train < a->batch && cursor == r->n_train) break;
        }
        // similar lengths share a micro-batch: less padding
        qsort_r(batch, (size_t)S, sizeof(int), cmp_len_desc, r->data.len);
        int64_t n_ce = 0, n_mtp = 0;
        for (int k0 = 0; k0 < S; k0 += a->micro) {
            int b = S - k0 < a->micro ? S - k0 : a->micro;
            sft_pack(r, batch + k0, b, &n_ce, &n_mtp);
        }
        memset(r->ps.grads, 0, sizeof(float) * (size_t)r->ps.n);
        train_model_reset_load(r->tm);
        train_loss L = {0};
        int64_t tok_step = 0;
        for (int k0 = 0; k0 < S && !cli_interrupted; k0 += a->micro) {
            int b = S - k0 < a->micro ? S - k0 : a->micro;
            int64_t dc = 0, dm = 0;
            int T = sft_pack(r, batch + k0, b, &dc, &dm);
            for (int64_t i = 0; i < (int64_t)b * T; i++) r->tw[i] = r->tgt[i] >= 0 ? 1.0f / (float)n_ce : 0.0f;
            train_loss_weights w = {.token_weight = r->tw,
                                    .mtp_weight = with_mtp && n_mtp ? (float)a->mtp / (float)n_mtp : 0.0f,
                                    .balance_weight = (float)a->alpha / (float)S};
            train_model_step(r->tm, r->inp, r->tgt, b, T, &w, &L);
            tok_step += (int64_t)b * T;
        }
        if (cli_interrupted) break;
        double gnorm = trainer_grad_norm(&r->ps);
        float lr = lr_at(&sched, step);
        trainer_adamw(&r->ps, &hp, step + 1, lr, grad_clip_scale(gnorm, (float)a->clip));
        train_model_update_bias(r->tm, (float)a->gamma, r->imbalance);
        step++;
        double dt = cli_now() - t0, ce = L.ce_count ? L.ce_sum / (double)L.ce_count : NAN;
        double val = NAN;
        if (a->val_every > 0 && r->n_val > 0 && (step % a->val_every == 0 || step == steps)) val = sft_validate(r);
        float imb = 0;
        for (int j = 0; j < train_model_n_moe_layers(r->tm); j++) imb = r->imbalance[j] > imb ? r->imbalance[j] : imb;
        fprintf(r->metrics, "{\"step\": %d, \"epoch\": %d, \"loss\": %.6f", step, epoch, ce);
        if (L.mtp_count) fprintf(r->metrics, ", \"mtp_loss\": %.6f", L.mtp_sum / (double)L.mtp_count);
        if (!isnan(val)) fprintf(r->metrics, ", \"val_loss\": %.6f", val);
        fprintf(r->metrics, ", \"lr\": %.6g, \"grad_norm\": %.6g, \"tok_s\": %.1f, \"load_max_over_mean\": %.3f}\n", lr,
                gnorm, (double)tok_step / dt, imb);
        fflush(r->metrics);
        double per = (cli_now() - t_start) / step;
        fprintf(stderr, "%sstep %d/%d | loss %.4f", tty ? "\r\033[K" : "", step, steps, ce);
        if (L.mtp_count) fprintf(stderr, " mtp %.4f", L.mtp_sum / (double)L.mtp_count);
        if (!isnan(val)) fprintf(stderr, " val %.4f", val);
        fprintf(stderr, " | lr %.2e | gnorm %.3f | %.0f tok/s | load %.2f | ETA %.0fs%s", lr, gnorm,
                (double)tok_step / dt, imb, per * (steps - step), tty && isnan(val) ? "" : "\n");
        if (a->save_every > 0 && step % a->save_every == 0 && step < steps && (st = sft_save(r, step, err))) break;
    }
    free(batch);
    if (st) return st;
    if (cli_interrupted) fprintf(stderr, "\ninterrupted at step %d\n", step);
    return sft_save(r, step, err);
}

int cmd_sft(int argc, char **argv) {
    sft_run r;
    memset(&r, 0, sizeof r);
    int rc = sft_parse(argc, argv, &r.a);
    if (rc >= 0) { free(r.a.data); return rc; }
    cli_install_signals();
    ds_error err = {{0}};
    ds_status st = sft_main(&r, &err);
    int interrupted = cli_interrupted;
    if (r.metrics) fclose(r.metrics);
    free(r.inp); free(r.tgt); free(r.tw); free(r.imbalance); free(r.order);
    train_model_free(r.tm);
    chatdata_free(&r.data);
    tokenizer_free(r.tok);
    params_free(&r.ps);
    free(r.a.data);
    if (st) return cli_fail("sft", st, &err);
    return interrupted ? 130 : 0;
}
