// deepseek train -m INIT_DIR --data FILES -o OUT_DIR [options]   |   deepseek train --resume -o OUT_DIR
// Pre-training / fine-tuning loop: packed sequences, gradient accumulation, AdamW with
// clipping and a schedule, MTP and balance losses, the aux-loss-free bias update, periodic
// validation and checkpoints, a metrics JSONL and a live progress line.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "io/fileutil.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"
#include "train/params.h"
#include "train/train_model.h"
#include "train/trainer.h"

static void train_usage(FILE *f) {
    fprintf(f,
            "usage: deepseek train -m INIT_DIR --data FILE[,FILE...] -o OUT_DIR [options]\n"
            "       deepseek train --resume -o OUT_DIR [--steps N] [--stop-after N] [-t THREADS]\n"
            "Trains the model in INIT_DIR (e.g. from `deepseek init`) on text files (one document\n"
            "each) or JSONL files with a \"text\" field, tokenised with INIT_DIR's tokenizer (cached\n"
            "under OUT_DIR/token-cache) and packed into sequences. OUT_DIR receives the checkpoint in\n"
            "the HF layout (loadable by `deepseek run`), optimizer.safetensors, train_state.json and\n"
            "metrics.jsonl (plot it with `deepseek plot`). Ctrl-C saves the last completed step.\n"
            "  --steps N          optimizer steps (default 200)\n"
            "  --seq-len T        tokens per sequence (default 256)\n"
            "  --batch-tokens N   tokens per optimizer step (default 8192, rounded to whole sequences)\n"
            "  --micro-batch B    sequences per forward/backward; the rest is gradient accumulation\n"
            "                     (default: as many as fit in 4096 tokens)\n"
            "  --lr X             peak learning rate (default 1e-3); --min-lr X (default lr/10)\n"
            "  --warmup N         linear warmup steps (default steps/20)\n"
            "  --schedule S       cosine (default), v3 (DeepSeek-V3: constant, cosine, two tails) or constant\n"
            "  --weight-decay X   AdamW decay of matrices (default 0.1); --clip X grad-norm clip (default 1.0)\n"
            "  --mtp-weight X     lambda of the MTP loss (default 0.3, the V3 report; 0 = MTP off)\n"
            "  --balance-alpha X  sequence-wise balance loss weight (default 1e-4)\n"
            "  --bias-gamma X     aux-loss-free bias update speed (default 0.01; V3 used 0.001 over\n"
            "                     ~10^5 steps, too slow for short runs; 0 = frozen)\n"
            "  --seed N           data order (default 1)\n"
            "  --val-frac X       held-out fraction of sequences (default 0.05); --val-every N steps\n"
            "                     (default 50, 0 = never); --val-seqs N per validation (default 64)\n"
            "  --save-every N     checkpoint every N steps (default 100, 0 = only at the end)\n"
            "  --save-dtype D     f32 (default) or bf16 model files (f32 master weights are kept for --resume)\n"
            "  --resume           continue the run saved in OUT_DIR: same data, settings and losses\n"
            "  --stop-after N     save and exit after N steps of this invocation (time-sliced runs;\n"
            "                     --resume continues exactly as if never stopped)\n"
            "  -t THREADS\n");
}

typedef struct {
    const char *init_dir, *out_dir;
    char **data;
    int n_data;
    int resume;
    long steps_override;
    long stop_after;     // steps this invocation runs before saving and exiting (0 = all)
} train_args;

static int add_data(train_args *a, const char *list) {
    char *copy = strdup(list);
    if (!copy) return 0;
    for (char *save = NULL, *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        char **d = realloc(a->data, sizeof(char *) * (size_t)(a->n_data + 1));
        if (!d) { free(copy); return 0; }
        a->data = d;
        if (!(a->data[a->n_data] = strdup(p))) { free(copy); return 0; }
        a->n_data++;
    }
    free(copy);
    return 1;
}

// Parses the flags; returns -1 to continue, else the exit code.
static int train_parse(int argc, char **argv, train_args *a, train_settings *s, int *set_flags) {
    long n;
    double x;
    const char *v;
    long micro = 0, warmup = -1, batch_tokens = 8192;
    double min_lr = -1;
    int sched = LR_COSINE;
    *set_flags = 0;
    s->steps = 200;
    s->seq_len = 256;
    s->sched.lr_max = 1e-3f;
    s->adamw = adamw_defaults();
    s->clip = 1.0f;
    s->mtp_weight = 0.3f;
    s->balance_alpha = 1e-4f;
    s->bias_gamma = 0.01f;
    s->seed = 1;
    s->val_frac = 0.05f;
    s->val_every = 50;
    s->val_seqs = 64;
    s->save_every = 100;
    s->save_dtype = DS_F32;
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { train_usage(stdout); return 0; }
        if (!strcmp(argv[i], "--resume")) { a->resume = 1; continue; }
        if ((v = cli_opt(argc, argv, &i, "-m", &missing)) || (v = cli_opt(argc, argv, &i, "--model", &missing))) { a->init_dir = v; ++*set_flags; }
        else if ((v = cli_opt(argc, argv, &i, "-o", &missing)) || (v = cli_opt(argc, argv, &i, "--out", &missing))) a->out_dir = v;
        else if ((v = cli_opt(argc, argv, &i, "--data", &missing))) {
            if (!add_data(a, v)) return cli_usage_error("train", "out of memory");
            ++*set_flags;
        } else if ((v = cli_opt(argc, argv, &i, "-t", &missing))) {
            if (!cli_apply_threads("train", v)) return 1;
        } else if ((v = cli_opt(argc, argv, &i, "--steps", &missing))) {
            if (!cli_parse_int(v, 1, 1L << 30, &n)) return cli_usage_error("train", "--steps expects a positive integer, got '%s'", v);
            s->steps = (int)n;
            a->steps_override = n;
        } else if ((v = cli_opt(argc, argv, &i, "--stop-after", &missing))) {
            if (!cli_parse_int(v, 1, 1L << 30, &a->stop_after)) return cli_usage_error("train", "--stop-after expects a positive integer, got '%s'", v);
        } else {
            ++*set_flags;
            if ((v = cli_opt(argc, argv, &i, "--seq-len", &missing))) {
                if (!cli_parse_int(v, 2, 1L << 20, &n)) return cli_usage_error("train", "--seq-len expects an integer >= 2, got '%s'", v);
                s->seq_len = (int)n;
            } else if ((v = cli_opt(argc, argv, &i, "--batch-tokens", &missing))) {
                if (!cli_parse_int(v, 1, 1L << 30, &batch_tokens)) return cli_usage_error("train", "--batch-tokens expects a positive integer, got '%s'", v);
            } else if ((v = cli_opt(argc, argv, &i, "--micro-batch", &missing))) {
                if (!cli_parse_int(v, 1, 1L << 20, &micro)) return cli_usage_error("train", "--micro-batch expects a positive integer, got '%s'", v);
            } else if ((v = cli_opt(argc, argv, &i, "--lr", &missing))) {
                if (!cli_parse_float(v, 0, 10, &x) || x <= 0) return cli_usage_error("train", "--lr expects a number in (0, 10], got '%s'", v);
                s->sched.lr_max = (float)x;
            } else if ((v = cli_opt(argc, argv, &i, "--min-lr", &missing))) {
                if (!cli_parse_float(v, 0, 10, &min_lr)) return cli_usage_error("train", "--min-lr expects a number in [0, 10], got '%s'", v);
            } else if ((v = cli_opt(argc, argv, &i, "--warmup", &missing))) {
                if (!cli_parse_int(v, 0, 1L << 30, &warmup)) return cli_usage_error("train", "--warmup expects a non-negative integer, got '%s'", v);
            } else if ((v = cli_opt(argc, argv, &i, "--schedule", &missing))) {
                if (!strcmp(v, "cosine")) sched = LR_COSINE;
                else if (!strcmp(v, "v3")) sched = LR_V3;
                else if (!strcmp(v, "constant")) sched = LR_CONSTANT;
                else return cli_usage_error("train", "--schedule must be cosine, v3 or constant, got '%s'", v);
            } else if ((v = cli_opt(argc, argv, &i, "--weight-decay", &missing))) {
                if (!cli_parse_float(v, 0, 10, &x)) return cli_usage_error("train", "--weight-decay expects a number in [0, 10], got '%s'", v);
                s->adamw.weight_decay = (float)x;
            } else if ((v = cli_opt(argc, argv, &i, "--clip", &missing))) {
                if (!cli_parse_float(v, 0, 1e9, &x)) return cli_usage_error("train", "--clip expects a number >= 0, got '%s'", v);
                s->clip = (float)x;
            } else if ((v = cli_opt(argc, argv, &i, "--mtp-weight", &missing))) {
                if (!cli_parse_float(v, 0, 100, &x)) return cli_usage_error("train", "--mtp-weight expects a number in [0, 100], got '%s'", v);
                s->mtp_weight = (float)x;
            } else if ((v = cli_opt(argc, argv, &i, "--balance-alpha", &missing))) {
                if (!cli_parse_float(v, 0, 100, &x)) return cli_usage_error("train", "--balance-alpha expects a number in [0, 100], got '%s'", v);
                s->balance_alpha = (float)x;
            } else if ((v = cli_opt(argc, argv, &i, "--bias-gamma", &missing))) {
                if (!cli_parse_float(v, 0, 10, &x)) return cli_usage_error("train", "--bias-gamma expects a number in [0, 10], got '%s'", v);
                s->bias_gamma = (float)x;
            } else if ((v = cli_opt(argc, argv, &i, "--seed", &missing))) {
                if (!cli_parse_int(v, 0, 0x7fffffffffffffffL, &n)) return cli_usage_error("train", "--seed expects a non-negative integer, got '%s'", v);
                s->seed = (uint64_t)n;
            } else if ((v = cli_opt(argc, argv, &i, "--val-frac", &missing))) {
                if (!cli_parse_float(v, 0, 0.5, &x)) return cli_usage_error("train", "--val-frac expects a number in [0, 0.5], got '%s'", v);
                s->val_frac = (float)x;
            } else if ((v = cli_opt(argc, argv, &i, "--val-every", &missing))) {
                if (!cli_parse_int(v, 0, 1L << 30, &n)) return cli_usage_error("train", "--val-every expects a non-negative integer, got '%s'", v);
                s->val_every = (int)n;
            } else if ((v = cli_opt(argc, argv, &i, "--val-seqs", &missing))) {
                if (!cli_parse_int(v, 1, 1L << 30, &n)) return cli_usage_error("train", "--val-seqs expects a positive integer, got '%s'", v);
                s->val_seqs = (int)n;
            } else if ((v = cli_opt(argc, argv, &i, "--save-every", &missing))) {
                if (!cli_parse_int(v, 0, 1L << 30, &n)) return cli_usage_error("train", "--save-every expects a non-negative integer, got '%s'", v);
                s->save_every = (int)n;
            } else if ((v = cli_opt(argc, argv, &i, "--save-dtype", &missing))) {
                if (!strcmp(v, "f32")) s->save_dtype = DS_F32;
                else if (!strcmp(v, "bf16")) s->save_dtype = DS_BF16;
                else return cli_usage_error("train", "--save-dtype must be f32 or bf16, got '%s'", v);
            } else if (missing) {
                return cli_usage_error("train", "%s needs a value", argv[i]);
            } else {
                return cli_usage_error("train", "unknown option '%s'", argv[i]);
            }
        }
        if (missing) return cli_usage_error("train", "%s needs a value", argv[i]);
    }
    if (!a->out_dir) return cli_usage_error("train", "-o OUT_DIR is required");
    if (a->resume) {
        if (*set_flags)
            return cli_usage_error("train", "with --resume the run's model, data and settings come from %s/train_state.json; "
                                            "only --steps, --stop-after and -t may be given", a->out_dir);
        return -1;
    }
    if (!a->init_dir) return cli_usage_error("train", "-m INIT_DIR is required (a checkpoint folder, e.g. from deepseek init)");
    if (!a->n_data) return cli_usage_error("train", "--data FILE is required");
    s->seqs_per_step = (int)(batch_tokens / s->seq_len > 0 ? batch_tokens / s->seq_len : 1);
    int fit = 4096 / s->seq_len > 0 ? 4096 / s->seq_len : 1;
    s->micro_batch = (int)(micro ? micro : fit);
    if (s->micro_batch > s->seqs_per_step) s->micro_batch = s->seqs_per_step;
    if (warmup < 0) warmup = s->steps / 20;
    float lr = s->sched.lr_max;
    if (sched == LR_V3) s->sched = lr_schedule_v3(lr, (int)warmup, s->steps);
    else s->sched = (lr_schedule){.kind = (lr_schedule_kind)sched, .lr_max = lr, .warmup = (int)warmup, .total = s->steps};
    s->sched.lr_min = min_lr >= 0 ? (float)min_lr : lr * 0.1f;
    if (sched == LR_V3) s->sched.lr_final = s->sched.lr_min / 3.0f;
    return -1;
}

// Keeps the lines of metrics.jsonl up to `step` (a resumed run rewrites what came after).
static ds_status metrics_truncate(const char *path, int step, ds_error *err) {
    char *text = NULL;
    size_t size = 0;
    FILE *probe = fopen(path, "rb");
    if (!probe) return DS_OK;
    fclose(probe);
    ds_status st = file_read_all(path, &text, &size, err);
    if (st) return st;
    size_t keep = 0;
    for (size_t at = 0; at < size;) {
        char *nl = memchr(text + at, '\n', size - at);
        size_t end = nl ? (size_t)(nl - text) + 1 : size;
        const char *k = strstr(text + at, "\"step\":");
        long s = k && k < text + end ? strtol(k + 7, NULL, 10) : 0;
        if (s > step || !nl) break;
        keep = end;
        at = end;
    }
    st = file_write_atomic(path, text, keep, err);
    free(text);
    return st;
}

static void fmt_eta(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e7) snprintf(buf, n, "?");
    else if (s >= 3600) snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, n, "%.0fs", s);
}

typedef struct {
    train_args a;
    train_state s;
    param_store ps;
    ds_tokenizer *tok;
    token_corpus corpus;
    data_loader dl;
    train_model *tm;
    int32_t *seqs;      // (seqs_per_step, T+1)
    int32_t *inp, *tgt; // (micro_batch, T)
    float *imbalance;
    FILE *metrics;
    const char *tok_dir;
} train_run;

// Mean validation CE over up to val_seqs held-out sequences.
static double train_validate(train_run *r) {
    const train_settings *s = &r->s.set;
    int T = s->seq_len, B = s->micro_batch;
    int64_t nv = r->dl.n_val < s->val_seqs ? r->dl.n_val : s->val_seqs;
    train_loss L = {0};
    train_loss_weights w = {0};
    for (int64_t i0 = 0; i0 < nv; i0 += B) {
        int b = (int)(nv - i0 < B ? nv - i0 : B);
        for (int k = 0; k < b; k++) {
            data_loader_val(&r->dl, i0 + k, r->seqs);
            memcpy(r->inp + (int64_t)k * T, r->seqs, sizeof(int32_t) * (size_t)T);
            memcpy(r->tgt + (int64_t)k * T, r->seqs + 1, sizeof(int32_t) * (size_t)T);
        }
        train_model_eval(r->tm, r->inp, r->tgt, b, T, &w, &L);
    }
    return L.ce_count ? L.ce_sum / (double)L.ce_count : NAN;
}

static ds_status train_save(train_run *r, ds_error *err) {
    fprintf(stderr, "\nsaving step %d to %s ...", r->s.step, r->a.out_dir);
    double t0 = cli_now();
    ds_status st = trainer_save(&r->ps, &r->s, r->a.out_dir, r->tok_dir, err);
    if (!st) fprintf(stderr, " done (%.1f s)\n", cli_now() - t0);
    else fprintf(stderr, "\n");
    return st;
}

static ds_status train_setup(train_run *r, ds_error *err) {
    train_state *s = &r->s;
    ds_status st;
    if (r->a.resume) {
        long steps = s->set.steps;
        st = trainer_load(&r->ps, s, r->a.out_dir, err);
        if (st) return st;
        if (r->a.steps_override) {
            steps = r->a.steps_override;
            s->set.steps = (int)steps;
        }
        if (s->set.steps <= s->step)
            return ds_error_set(err, DS_ERR_ARG, "%s is at step %d of %d already (give a larger --steps to continue)",
                                r->a.out_dir, s->step, s->set.steps);
        r->tok_dir = r->a.out_dir;
        fprintf(stderr, "resuming %s at step %d of %d\n", r->a.out_dir, s->step, s->set.steps);
    } else {
        FILE *f;
        char *p = file_join(r->a.out_dir, "train_state.json");
        if (p && (f = fopen(p, "rb"))) {
            fclose(f);
            free(p);
            return ds_error_set(err, DS_ERR_ARG, "%s already holds a training run (train_state.json): use --resume, or another -o",
                                r->a.out_dir);
        }
        free(p);
        st = params_load(&r->ps, r->a.init_dir, err);
        if (st) return st;
        s->n_data = r->a.n_data;
        s->data = r->a.data;
        r->a.data = NULL;
        r->a.n_data = 0;
        r->tok_dir = r->a.init_dir;
    }
    const train_settings *set = &s->set;
    const ds_config *c = &r->ps.cfg;
    if (set->seq_len > c->max_position_embeddings)
        return ds_error_set(err, DS_ERR_ARG, "--seq-len %d exceeds the model's max_position_embeddings %d", set->seq_len,
                            c->max_position_embeddings);
    st = tokenizer_load(&r->tok, r->tok_dir, err);
    if (st) return ds_error_prefix(err, st, "tokenizer of %s (`deepseek init --byte-tokenizer` writes one)", r->tok_dir);
    int tv = tokenizer_vocab_size(r->tok);
    if (tv > c->vocab_size)
        return ds_error_set(err, DS_ERR_ARG, "the tokenizer has %d tokens but the model's vocab_size is %d", tv, c->vocab_size);
    char *cache = file_join(r->a.out_dir, "token-cache");
    if (!cache) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    st = data_corpus_load(&r->corpus, (const char *const *)s->data, s->n_data, r->tok, cache, err);
    free(cache);
    if (st) return st;
    uint64_t h = trainer_hash_tokens(r->corpus.tokens, r->corpus.n_tokens);
    if (r->a.resume && (h != s->data_hash || r->corpus.n_tokens != s->data_tokens))
        return ds_error_set(err, DS_ERR_ARG, "the data files of %s changed since the run started (%lld tokens now, %lld then)",
                            r->a.out_dir, (long long)r->corpus.n_tokens, (long long)s->data_tokens);
    s->data_hash = h;
    s->data_tokens = r->corpus.n_tokens;
    st = data_loader_init(&r->dl, &r->corpus, set->seq_len, set->val_frac, set->seed, err);
    if (st) return st;
    if (r->a.resume) data_loader_seek(&r->dl, s->epoch, s->cursor);
    st = train_model_create(&r->tm, &r->ps, set->micro_batch, set->seq_len, err);
    if (st) return st;
    int64_t T1 = set->seq_len + 1;
    r->seqs = malloc(sizeof(int32_t) * (size_t)(set->seqs_per_step * T1));
    r->inp = malloc(sizeof(int32_t) * (size_t)set->micro_batch * (size_t)set->seq_len);
    r->tgt = malloc(sizeof(int32_t) * (size_t)set->micro_batch * (size_t)set->seq_len);
    r->imbalance = calloc((size_t)train_model_n_moe_layers(r->tm) + 1, sizeof(float));
    if (!r->seqs || !r->inp || !r->tgt || !r->imbalance) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    st = file_mkdirs(r->a.out_dir, err);
    if (st) return st;
    char *mpath = file_join(r->a.out_dir, "metrics.jsonl");
    if (!mpath) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    st = r->a.resume ? metrics_truncate(mpath, s->step, err) : DS_OK;
    if (!st && !(r->metrics = fopen(mpath, r->a.resume ? "ab" : "wb")))
        st = ds_error_set(err, DS_ERR_IO, "%s: cannot open for writing", mpath);
    free(mpath);
    return st;
}

static ds_status train_loop(train_run *r, ds_error *err) {
    train_state *s = &r->s;
    const train_settings *set = &s->set;
    const ds_config *c = &r->ps.cfg;
    int T = set->seq_len, T1 = T + 1, S = set->seqs_per_step, B = set->micro_batch;
    int with_mtp = c->num_nextn_predict_layers > 0 && set->mtp_weight > 0;
    double flops_tok = train_model_flops_per_token(c, T, with_mtp);
    double peak = trainer_peak_flops();
    fprintf(stderr, "train: %lld params, %d seqs x %d tokens per step (micro-batch %d, %d accumulation), %lld train / "
                    "%lld val sequences, activations %.0f MiB, peak %.1f GFLOP/s\n",
            (long long)r->ps.n, S, T, B, (S + B - 1) / B, (long long)r->dl.n_train, (long long)r->dl.n_val,
            (double)train_model_bytes(r->tm) / (1 << 20), peak * 1e-9);
    int tty = isatty(2);
    double t_start = cli_now();
    int step0 = s->step;
    ds_status st = DS_OK;
    while (s->step < set->steps && !cli_interrupted) {
        double t0 = cli_now();
        int epoch0 = r->dl.epoch;
        int64_t cursor0 = r->dl.cursor;
        for (int k = 0; k < S; k++) data_loader_next(&r->dl, r->seqs + (int64_t)k * T1);
        int64_t n_ce = (int64_t)S * T, n_mtp = (int64_t)S * (T - 1);
        train_loss_weights w = {.ce_weight = 1.0f / (float)n_ce,
                                .mtp_weight = with_mtp ? set->mtp_weight / (float)n_mtp : 0.0f,
                                .balance_weight = set->balance_alpha / (float)S};
        train_loss L = {0};
        memset(r->ps.grads, 0, sizeof(float) * (size_t)r->ps.n);
        train_model_reset_load(r->tm);
        for (int k0 = 0; k0 < S && !cli_interrupted; k0 += B) {
            int b = S - k0 < B ? S - k0 : B;
            for (int k = 0; k < b; k++) {
                const int32_t *sq = r->seqs + (int64_t)(k0 + k) * T1;
                memcpy(r->inp + (int64_t)k * T, sq, sizeof(int32_t) * (size_t)T);
                memcpy(r->tgt + (int64_t)k * T, sq + 1, sizeof(int32_t) * (size_t)T);
            }
            train_model_step(r->tm, r->inp, r->tgt, b, T, &w, &L);
        }
        if (cli_interrupted) { // the step is incomplete: forget it, data position included
            data_loader_seek(&r->dl, epoch0, cursor0);
            break;
        }
        double gnorm = trainer_grad_norm(&r->ps);
        float lr = lr_at(&set->sched, s->step);
        trainer_adamw(&r->ps, &set->adamw, s->step + 1, lr, grad_clip_scale(gnorm, set->clip));
        train_model_update_bias(r->tm, set->bias_gamma, r->imbalance);
        s->step++;
        s->epoch = r->dl.epoch;
        s->cursor = r->dl.cursor;

        double dt = cli_now() - t0, tok_s = (double)n_ce / dt, mfu = peak > 0 ? flops_tok * tok_s / peak : 0;
        double ce = L.ce_sum / (double)L.ce_count;
        float imb = 0;
        for (int j = 0; j < train_model_n_moe_layers(r->tm); j++) imb = r->imbalance[j] > imb ? r->imbalance[j] : imb;
        double val = NAN;
        if (set->val_every > 0 && r->dl.n_val > 0 && (s->step % set->val_every == 0 || s->step == set->steps))
            val = train_validate(r);
        fprintf(r->metrics, "{\"step\": %d, \"loss\": %.6f, \"total_loss\": %.6f", s->step, ce, L.loss);
        if (L.mtp_count) fprintf(r->metrics, ", \"mtp_loss\": %.6f", L.mtp_sum / (double)L.mtp_count);
        if (!isnan(val)) fprintf(r->metrics, ", \"val_loss\": %.6f", val);
        fprintf(r->metrics, ", \"lr\": %.6g, \"grad_norm\": %.6g, \"tok_s\": %.1f, \"mfu\": %.4f", lr, gnorm, tok_s, mfu);
        if (train_model_n_moe_layers(r->tm) > 0) {
            fprintf(r->metrics, ", \"expert_load_max_over_mean\": [");
            for (int j = 0; j < train_model_n_moe_layers(r->tm); j++)
                fprintf(r->metrics, "%s%.3f", j ? ", " : "", r->imbalance[j]);
            fprintf(r->metrics, "]");
        }
        fprintf(r->metrics, "}\n");
        fflush(r->metrics);

        char eta[32];
        double per = (cli_now() - t_start) / (s->step - step0);
        fmt_eta(eta, sizeof eta, per * (set->steps - s->step));
        fprintf(stderr, "%sstep %d/%d | loss %.4f", tty ? "\r\033[K" : "", s->step, set->steps, ce);
        if (L.mtp_count) fprintf(stderr, " mtp %.4f", L.mtp_sum / (double)L.mtp_count);
        if (!isnan(val)) fprintf(stderr, " val %.4f", val);
        fprintf(stderr, " | lr %.2e | gnorm %.3f | %.0f tok/s | MFU %.1f%% | load max/mean %.2f | ETA %s%s", lr, gnorm,
                tok_s, 100 * mfu, imb, eta, tty && isnan(val) ? "" : "\n");
        if (r->a.stop_after && s->step - step0 >= r->a.stop_after) break;
        if (set->save_every > 0 && s->step % set->save_every == 0 && s->step < set->steps) {
            st = train_save(r, err);
            if (st) return st;
        }
    }
    if (cli_interrupted) fprintf(stderr, "\ninterrupted at step %d\n", s->step);
    if (s->step > step0 || !r->a.resume) st = train_save(r, err);
    return st;
}

int cmd_train(int argc, char **argv) {
    train_run r;
    memset(&r, 0, sizeof r);
    int set_flags = 0;
    int rc = train_parse(argc, argv, &r.a, &r.s.set, &set_flags);
    if (rc >= 0) {
        for (int i = 0; i < r.a.n_data; i++) free(r.a.data[i]);
        free(r.a.data);
        return rc;
    }
    cli_install_signals();
    ds_error err = {{0}};
    ds_status st = train_setup(&r, &err);
    if (!st) st = train_loop(&r, &err);
    int interrupted = cli_interrupted;
    if (r.metrics) fclose(r.metrics);
    free(r.seqs); free(r.inp); free(r.tgt); free(r.imbalance);
    train_model_free(r.tm);
    data_loader_free(&r.dl);
    data_corpus_free(&r.corpus);
    tokenizer_free(r.tok);
    params_free(&r.ps);
    train_state_free(&r.s);
    for (int i = 0; i < r.a.n_data; i++) free(r.a.data[i]);
    free(r.a.data);
    if (st) return cli_fail("train", st, &err);
    return interrupted ? 130 : 0;
}
