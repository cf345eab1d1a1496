// deepseek grpo -m DIR --tasks FILE [--tasks FILE ...] -o OUT [options]
// GRPO with rule-based rewards (DeepSeekMath, DeepSeek-R1): for each prompt, G completions are
// sampled from the current policy with the batched KV-cache engine (reading the weights being
// trained, no copy), scored, turned into group-relative advantages, and the clipped-ratio
// objective with a KL penalty to a frozen reference is optimised for a few iterations on the
// batch. Every step's statistics go to OUT/metrics.jsonl and the progress line.
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
#include "rl/grpo.h"
#include "rl/reward.h"
#include "rl/rollout.h"
#include "rl/task.h"
#include "train/params.h"
#include "train/train_model.h"
#include "train/trainer.h"

static void grpo_usage(FILE *f) {
    fprintf(f,
            "usage: deepseek grpo -m DIR --tasks FILE [--tasks FILE ...] -o OUT_DIR [options]\n"
            "Reinforcement learning with verifiable rewards on problems in the `deepseek tasks` format.\n"
            "Each step samples --group completions for each of --prompts-per-step prompts, rewards them\n"
            "(accuracy of the boxed answer + format), normalises the rewards within each group into\n"
            "advantages and takes --iterations AdamW steps on the clipped GRPO objective with a KL\n"
            "penalty (k3 estimator) to the reference model. OUT_DIR gets the model and metrics.jsonl\n"
            "(`deepseek plot --grpo` draws it). Ctrl-C saves the last completed step.\n"
            "  --steps N            GRPO steps (default 100)\n"
            "  --group G            completions per prompt (default 8)\n"
            "  --prompts-per-step P (default 16)\n"
            "  --iterations I       optimisation passes per batch (default 1: ratio 1, pure on-policy)\n"
            "  --epsilon E          clip range (default 0.2); --epsilon-high E upper clip (default = epsilon;\n"
            "                       DAPO's clip-higher uses 0.28)\n"
            "  --beta B             KL penalty weight (default 0.04; 0 = no reference model)\n"
            "  --ref DIR            reference model (default: the starting model -m)\n"
            "  --loss L             token (default: token-level mean over the batch, DAPO), seq (mean per\n"
            "                       sequence, then over sequences: original GRPO) or dr (Dr. GRPO: sum over\n"
            "                       tokens / (max-new * sequences), advantages not divided by the std)\n"
            "  --lr X               (default 1e-4); --warmup N (default 0); --weight-decay X (default 0)\n"
            "  --clip X             grad-norm clip (default 1.0)\n"
            "  --temp T             sampling temperature (default 1.0); --top-p P (default 1.0)\n"
            "  --max-new N          tokens per completion (default 256)\n"
            "  --reward-accuracy W  (default 1.0); --reward-format W (default 0.1)\n"
            "  --filter-groups      drop groups whose completions all got the same reward from the update\n"
            "                       (DAPO's dynamic sampling: their advantages are 0, so they would only\n"
            "                       dilute the token mean and cost a backward); raise --prompts-per-step\n"
            "                       to oversample. A step with no informative group takes no update;\n"
            "                       kl, clip fraction and entropy are then over the updated sequences.\n"
            "  --sft-data FILE      chat JSONL (as for `deepseek sft`): every optimisation pass adds\n"
            "                       --sft-coef C (default 1.0) x the mean cross-entropy of --sft-batch N\n"
            "                       (default = --micro-batch) of its examples, drawn in shuffled order\n"
            "                       (InstructGPT's PPO-ptx: keeps what SFT taught where the sequence-level\n"
            "                       advantage would push correct tokens of failed replies down). The step's\n"
            "                       CE is logged as sft_ce; a step with no informative group still takes\n"
            "                       the SFT part of the update.\n"
            "  --positive-only      the policy term only on completions with a positive advantage (positive\n"
            "                       sample reinforcement, Zhu et al. 2025): the failures of a group only\n"
            "                       lower its mean; their tokens, mostly right steps of a reply that missed,\n"
            "                       are not pushed down. The KL term stays on every token.\n"
            "  --top-entropy F      the policy term only on the fraction F (0-1, default 1 = all) of the\n"
            "                       update's tokens with the highest sampling entropy, the \"forking\" tokens\n"
            "                       where the reply chooses (Wang et al. 2025); the KL term stays on every\n"
            "                       token. Logged as pg_tokens (fraction) and pg_entropy_min (threshold).\n"
            "  --process-reward C   process supervision from the task's step checker (countdown's guess\n"
            "                       traces; DeepSeekMath's process rewards): a reply's choices (operands,\n"
            "                       operations) get the outcome advantage, every value the trace fixes\n"
            "                       (results, verdicts, values left, the answer) gets C x (1 - mu) when\n"
            "                       right and C x (0 - mu) when wrong, mu the group's fraction right, and\n"
            "                       keywords get none (KL only). Problems without a checker, and replies\n"
            "                       it cannot follow at all, keep the outcome advantage on every token. With --filter-groups a group with\n"
            "                       a wrong value stays. Logged as proc_free, proc_checked, proc_bad.\n"
            "  --sft-confident P    anchor only the targets the reference model predicts with probability\n"
            "                       >= P (0 = all, the default): what SFT taught for sure (the arithmetic of\n"
            "                       a trace) stays, the choices it left uncertain are free for RL to change\n"
            "  --micro-batch B      sequences per forward/backward (default 16)\n"
            "  --seed S             prompt order and sampling (default 1)\n"
            "  --save-every N       checkpoint every N steps (default 0 = only at the end)\n"
            "  --save-dtype D       f32 (default) or bf16\n"
            "  -t THREADS\n");
}

typedef struct {
    const char *dir, *out_dir, *ref_dir, *sft_data;
    const char **tasks;
    int n_tasks;
    int steps, group, prompts, iterations, max_new, micro, seed, save_every, warmup, filter, sft_batch, pos_only;
    double eps, eps_high, beta, lr, wd, clip, w_acc, w_fmt, sft_coef, sft_conf, top_ent, proc;
    grpo_agg agg;
    sampler_params sp;
    ds_dtype save_dtype;
} grpo_args;

#define GRPO_INT(name, lo, hi, field) {name, 0, lo, hi, offsetof(grpo_args, field)}
#define GRPO_FLT(name, lo, hi, field) {name, 1, lo, hi, offsetof(grpo_args, field)}
static const cli_num_opt grpo_num_opts[] = {
    GRPO_INT("--steps", 1, 100000000, steps),      GRPO_INT("--group", 2, 1024, group),
    GRPO_INT("--prompts-per-step", 1, 4096, prompts), GRPO_INT("--iterations", 1, 64, iterations),
    GRPO_INT("--max-new", 1, 1 << 20, max_new),    GRPO_INT("--micro-batch", 1, 4096, micro),
    GRPO_INT("--seed", 0, 2147483647, seed),       GRPO_INT("--save-every", 0, 100000000, save_every),
    GRPO_INT("--warmup", 0, 100000000, warmup),    GRPO_FLT("--epsilon", 0, 10, eps),
    GRPO_FLT("--epsilon-high", 0, 10, eps_high),   GRPO_FLT("--beta", 0, 100, beta),
    GRPO_FLT("--lr", 1e-12, 10, lr),               GRPO_FLT("--weight-decay", 0, 10, wd),
    GRPO_FLT("--clip", 0, 1e9, clip),              GRPO_FLT("--reward-accuracy", -100, 100, w_acc),
    GRPO_FLT("--reward-format", -100, 100, w_fmt), GRPO_INT("--sft-batch", 1, 4096, sft_batch),
    GRPO_FLT("--sft-coef", 0, 1e6, sft_coef),      GRPO_FLT("--sft-confident", 0, 1, sft_conf),
    GRPO_FLT("--top-entropy", 1e-6, 1, top_ent),  GRPO_FLT("--process-reward", 1e-6, 100, proc),
};

static int grpo_parse(int argc, char **argv, grpo_args *a) {
    *a = (grpo_args){.steps = 100, .group = 8, .prompts = 16, .iterations = 1, .max_new = 256, .micro = 16, .seed = 1,
                     .eps = 0.2, .eps_high = -1, .beta = 0.04, .lr = 1e-4, .clip = 1.0, .w_acc = 1.0, .w_fmt = 0.1,
                     .agg = GRPO_AGG_TOKEN, .sp = {.temperature = 1.0f, .top_p = 1.0f}, .save_dtype = DS_F32,
                     .sft_coef = -1, .sft_batch = -1, .top_ent = 1};
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        const char *v;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { grpo_usage(stdout); return 0; }
        int t = cli_table_opt("grpo", argc, argv, &i, grpo_num_opts, (int)(sizeof grpo_num_opts / sizeof *grpo_num_opts), a);
        if (t < 0) return 1;
        if (t > 0) continue;
        if ((v = cli_opt(argc, argv, &i, "-m", &missing))) a->dir = v;
        else if ((v = cli_opt(argc, argv, &i, "-o", &missing))) a->out_dir = v;
        else if ((v = cli_opt(argc, argv, &i, "--ref", &missing))) a->ref_dir = v;
        else if ((v = cli_opt(argc, argv, &i, "--sft-data", &missing))) a->sft_data = v;
        else if (!strcmp(argv[i], "--filter-groups")) a->filter = 1;
        else if (!strcmp(argv[i], "--positive-only")) a->pos_only = 1;
        else if ((v = cli_opt(argc, argv, &i, "--tasks", &missing))) {
            const char **d = realloc(a->tasks, sizeof *d * (size_t)(a->n_tasks + 1));
            if (!d) return cli_usage_error("grpo", "out of memory");
            a->tasks = d;
            a->tasks[a->n_tasks++] = v;
        } else if ((v = cli_opt(argc, argv, &i, "-t", &missing))) {
            if (!cli_apply_threads("grpo", v)) return 1;
        } else if ((v = cli_opt(argc, argv, &i, "--loss", &missing))) {
            if (!strcmp(v, "token")) a->agg = GRPO_AGG_TOKEN;
            else if (!strcmp(v, "seq")) a->agg = GRPO_AGG_SEQ;
            else if (!strcmp(v, "dr")) a->agg = GRPO_AGG_DR;
            else return cli_usage_error("grpo", "--loss must be token, seq or dr, got '%s'", v);
        } else if ((v = cli_opt(argc, argv, &i, "--save-dtype", &missing))) {
            if (!strcmp(v, "f32")) a->save_dtype = DS_F32;
            else if (!strcmp(v, "bf16")) a->save_dtype = DS_BF16;
            else return cli_usage_error("grpo", "--save-dtype must be f32 or bf16, got '%s'", v);
        } else {
            int s = missing ? 0 : cli_sampling_opt("grpo", argc, argv, &i, &a->sp);
            if (s < 0) return 1;
            if (s == 0) {
                if (missing) return cli_usage_error("grpo", "%s needs a value", argv[i]);
                return cli_usage_error("grpo", "unknown option '%s'", argv[i]);
            }
        }
        if (missing) return cli_usage_error("grpo", "%s needs a value", argv[i]);
    }
    if (!a->dir) return cli_usage_error("grpo", "-m DIR is required");
    if (!a->out_dir) return cli_usage_error("grpo", "-o OUT_DIR is required");
    if (!a->n_tasks) return cli_usage_error("grpo", "--tasks FILE is required");
    if (a->eps >= 1) return cli_usage_error("grpo", "--epsilon must be below 1, got %g", a->eps);
    if (a->eps_high < 0) a->eps_high = a->eps;
    if (!a->sft_data && (a->sft_coef >= 0 || a->sft_batch > 0 || a->sft_conf > 0))
        return cli_usage_error("grpo", "--sft-coef, --sft-batch and --sft-confident need --sft-data FILE");
    if (a->proc > 0 && a->top_ent < 1)
        return cli_usage_error("grpo", "--process-reward and --top-entropy both choose the tokens of the policy term: use one");
    if (a->sft_coef < 0) a->sft_coef = 1.0;
    if (a->sft_batch < 0) a->sft_batch = a->micro;
    if (a->sft_batch > a->micro)
        return cli_usage_error("grpo", "--sft-batch %d exceeds --micro-batch %d", a->sft_batch, a->micro);
    a->sp.seed = (uint64_t)a->seed;
    return -1;
}

// One micro-batch of sequences laid out as rows of T: inputs/targets, and per token the
// quantities the loss needs.
typedef struct {
    int b, T;
    const int *seq;         // (b) the sampled sequence of each row
    int32_t *inp, *tgt;     // (b, T)
    float *old, *ref;       // (b, T) log-probs of the sampling policy / reference (NULL when unused)
    float *tadv;            // (b, T) the advantage per token, when it is not the sequence's (--top-entropy,
                            // --process-reward)
} grpo_mb;

typedef struct {
    const grpo_params *gp;
    const grpo_mb *mb;
    const float *adv, *norm;    // per sequence
    int uses_old;
    // statistics of this pass
    double k3_sum, ratio_sum;
    int64_t clipped, tokens;
} grpo_coef_ctx;

static float grpo_coef(void *vctx, int64_t i, float logp) {
    grpo_coef_ctx *c = vctx;
    int row = (int)(i / c->mb->T), k = c->mb->seq[row];
    float old = c->uses_old ? c->mb->old[i] : logp;
    float ref = c->mb->ref ? c->mb->ref[i] : logp;
    grpo_token t;
    grpo_token_eval(c->gp, logp, old, ref, c->mb->tadv ? c->mb->tadv[i] : c->adv[k], &t);
    c->k3_sum += t.k3;
    c->clipped += t.clipped;
    c->ratio_sum += exp((double)logp - (double)old);
    c->tokens++;
    // the trainer's loss is sum_i w_i * CE_i = -sum_i w_i * logp_i: w_i = -n_i * dl/dlogp
    return -c->norm[k] * t.dlogp;
}

typedef struct {
    grpo_args a;
    param_store ps, ref_ps;
    ds_model view;
    ds_tokenizer *tok;
    task_problem *probs;
    int n_probs;
    int **pids, *plen, max_prompt;
    int *keep;              // (prompts * group) the sequences that enter the update
    float *ent_sel;         // (prompts * group * max_new) --top-entropy: the kept tokens' entropies
    float *tok_adv;         // (prompts * group, max_new) per-token advantages (--top-entropy, --process-reward)
    uint8_t *tok_lab;       // (prompts * group, max_new) --process-reward: REWARD_PROC_* per completion token
    int *grp_bad;           // (prompts) --process-reward: wrong tokens per group
    int *order, cursor, epoch;
    rollout *ro;
    train_model *tm, *ref_tm;
    grpo_mb *mbs;
    int n_mbs;
    // --sft-data: the anchor's examples, their shuffled order and one micro-batch's rows
    chatdata_set sft;
    int *sft_order, sft_cursor, sft_epoch;
    int32_t *sft_inp, *sft_tgt;     // (sft_batch, T)
    float *sft_lp, *sft_w;          // (sft_batch, T) reference log p and anchor weight per target
    FILE *metrics;
} grpo_run;

static ds_status grpo_setup(grpo_run *r, ds_error *err) {
    grpo_args *a = &r->a;
    ds_status st = params_load(&r->ps, a->dir, err);
    if (!st) st = tokenizer_load(&r->tok, a->dir, err);
    if (st) return st;
    // every task file's problems, in order
    for (int f = 0; f < a->n_tasks && !st; f++) {
        task_problem *p = NULL;
        int n = 0;
        st = task_load_jsonl(a->tasks[f], &p, &n, err);
        if (st) break;
        task_problem *all = realloc(r->probs, sizeof *all * (size_t)(r->n_probs + n));
        if (!all) { task_problems_free(p, n); return ds_error_set(err, DS_ERR_OOM, "out of memory"); }
        memcpy(all + r->n_probs, p, sizeof *p * (size_t)n);
        free(p); // the strings moved into `all`
        r->probs = all;
        r->n_probs += n;
    }
    if (st) return st;
    if (r->n_probs < 1) return ds_error_set(err, DS_ERR_ARG, "no problems in the --tasks files");
    int n_eval = 0;
    for (int i = 0; i < r->n_probs; i++) n_eval += r->probs[i].split == TASK_SPLIT_EVAL;
    if (n_eval)
        fprintf(stderr, "grpo: warning: %d of the %d problems are in the evaluation split (the hash rule): training on "
                        "them would contaminate evaluation\n", n_eval, r->n_probs);
    r->pids = calloc((size_t)r->n_probs, sizeof *r->pids);
    r->plen = calloc((size_t)r->n_probs, sizeof *r->plen);
    r->order = malloc(sizeof(int) * (size_t)r->n_probs);
    if (!r->pids || !r->plen || !r->order) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    for (int i = 0; i < r->n_probs && !st; i++) {
        st = chatdata_encode_prompt(r->tok, r->probs[i].prompt, &r->pids[i], &r->plen[i], NULL, err);
        if (r->plen[i] > r->max_prompt) r->max_prompt = r->plen[i];
        r->order[i] = i;
    }
    if (st) return st;
    r->cursor = r->n_probs; // shuffles at the first draw
    const ds_config *c = &r->ps.cfg;
    if (r->max_prompt + a->max_new > c->max_position_embeddings)
        return ds_error_set(err, DS_ERR_ARG, "longest prompt (%d tokens) + --max-new %d exceed the model's %d positions",
                            r->max_prompt, a->max_new, c->max_position_embeddings);
    st = params_model_view(&r->ps, &r->view, err);
    if (st) return st;
    rollout_opts ro = {.max_new = a->max_new, .prefill_chunk = 512, .sp = a->sp, .want_entropy = a->top_ent < 1};
    int eos = tokenizer_eos_id(r->tok);
    if (eos >= 0) ro.stop_ids[ro.n_stop++] = eos;
    if (c->eos_token_id >= 0 && c->eos_token_id != eos) ro.stop_ids[ro.n_stop++] = c->eos_token_id;
    st = rollout_create(&r->ro, &r->view, a->prompts * a->group, r->max_prompt, &ro, err);
    if (st) return st;
    int T = r->max_prompt + a->max_new - 1;
    st = train_model_create(&r->tm, &r->ps, a->micro, T, err);
    if (st) return st;
    if (a->beta > 0 || a->sft_conf > 0) {
        st = params_load(&r->ref_ps, a->ref_dir ? a->ref_dir : a->dir, err);
        if (st) return ds_error_prefix(err, st, "reference model: ");
        if (r->ref_ps.n != r->ps.n || r->ref_ps.cfg.vocab_size != c->vocab_size)
            return ds_error_set(err, DS_ERR_ARG, "the reference model %s has another architecture than %s", a->ref_dir,
                                a->dir);
        st = train_model_create(&r->ref_tm, &r->ref_ps, a->micro, T, err);
        if (st) return st;
    }
    if (a->sft_data) {
        int skipped = 0;
        st = chatdata_load(&r->sft, r->tok, &a->sft_data, 1, T + 1, &skipped, err);
        if (st) return ds_error_prefix(err, st, "--sft-data: ");
        if (skipped) fprintf(stderr, "grpo: --sft-data: skipped %d examples longer than %d tokens\n", skipped, T + 1);
        size_t cells = (size_t)a->sft_batch * (size_t)T;
        r->sft_order = malloc(sizeof(int) * (size_t)r->sft.n);
        r->sft_inp = malloc(cells * sizeof(int32_t));
        r->sft_tgt = malloc(cells * sizeof(int32_t));
        r->sft_lp = malloc(cells * sizeof(float));
        r->sft_w = malloc(cells * sizeof(float));
        if (!r->sft_order || !r->sft_inp || !r->sft_tgt || !r->sft_lp || !r->sft_w) return ds_error_set(err, DS_ERR_OOM, "out of memory");
        for (int i = 0; i < r->sft.n; i++) r->sft_order[i] = i;
        r->sft_cursor = r->sft.n; // shuffles at the first draw
    }
    int n_seq = a->prompts * a->group;
    r->n_mbs = (n_seq + a->micro - 1) / a->micro;
    r->mbs = calloc((size_t)r->n_mbs, sizeof *r->mbs);
    r->keep = malloc(sizeof(int) * (size_t)n_seq);
    if (a->top_ent < 1) r->ent_sel = malloc(sizeof(float) * (size_t)n_seq * (size_t)a->max_new);
    int per_tok = a->top_ent < 1 || a->proc > 0;
    if (per_tok) r->tok_adv = malloc(sizeof(float) * (size_t)n_seq * (size_t)a->max_new);
    if (a->proc > 0) {
        r->tok_lab = malloc((size_t)n_seq * (size_t)a->max_new);
        r->grp_bad = malloc(sizeof(int) * (size_t)a->prompts);
    }
    if (!r->mbs || !r->keep || (a->top_ent < 1 && !r->ent_sel) || (per_tok && !r->tok_adv) ||
        (a->proc > 0 && (!r->tok_lab || !r->grp_bad)))
        return ds_error_set(err, DS_ERR_OOM, "out of memory");
    for (int j = 0; j < r->n_mbs; j++) {
        size_t cells = (size_t)a->micro * (size_t)T;
        grpo_mb *m = &r->mbs[j];
        m->inp = malloc(cells * sizeof(int32_t));
        m->tgt = malloc(cells * sizeof(int32_t));
        m->old = a->iterations > 1 ? malloc(cells * sizeof(float)) : NULL;
        m->ref = a->beta > 0 ? malloc(cells * sizeof(float)) : NULL;
        m->tadv = per_tok ? malloc(cells * sizeof(float)) : NULL;
        if (!m->inp || !m->tgt || (a->iterations > 1 && !m->old) || (a->beta > 0 && !m->ref) || (per_tok && !m->tadv))
            return ds_error_set(err, DS_ERR_OOM, "out of memory");
    }
    st = file_mkdirs(a->out_dir, err);
    if (st) return st;
    char *mpath = file_join(a->out_dir, "metrics.jsonl");
    if (!mpath || !(r->metrics = fopen(mpath, "wb")))
        st = ds_error_set(err, DS_ERR_IO, "%s: cannot open for writing", mpath ? mpath : a->out_dir);
    free(mpath);
    return st;
}

// The next index of a list drawn in shuffled order, reshuffled (stream `salt` + epoch) when used up.
static int grpo_draw(int *order, int n, int *cursor, int *epoch, uint64_t seed, uint64_t salt) {
    if (*cursor >= n) {
        ds_rng rng;
        ds_rng_seed(&rng, seed, salt + (uint64_t)(*epoch)++);
        for (int k = n - 1; k > 0; k--) {
            int j = (int)(ds_rng_u32(&rng) % (uint32_t)(k + 1)), t = order[k];
            order[k] = order[j];
            order[j] = t;
        }
        *cursor = 0;
    }
    return order[(*cursor)++];
}

static void grpo_next_prompts(grpo_run *r, int *sel) {
    for (int i = 0; i < r->a.prompts; i++)
        sel[i] = grpo_draw(r->order, r->n_probs, &r->cursor, &r->epoch, (uint64_t)r->a.seed, 1000);
}

// Lays out the next --sft-batch anchor examples (chatdata_pack); returns T of the rows and
// the number of targets in *n_tgt.
static int grpo_sft_pack(grpo_run *r, int64_t *n_tgt) {
    int ex[4096];
    for (int q = 0; q < r->a.sft_batch; q++)
        ex[q] = grpo_draw(r->sft_order, r->sft.n, &r->sft_cursor, &r->sft_epoch, (uint64_t)r->a.seed, 1u << 20);
    return chatdata_pack(&r->sft, ex, r->a.sft_batch, r->sft_inp, r->sft_tgt, n_tgt, NULL);
}

typedef struct {
    int step, steps;
} grpo_prog;

static void grpo_progress(void *ctx, int64_t done) {
    const grpo_prog *p = ctx;
    if (isatty(2)) fprintf(stderr, "\r\033[Kstep %d/%d | sampling: %lld tokens", p->step, p->steps, (long long)done);
}

static ds_status grpo_save(grpo_run *r, int step, ds_error *err) {
    fprintf(stderr, "%ssaving step %d to %s ...", isatty(2) ? "\r\033[K" : "", step, r->a.out_dir);
    ds_status st = trainer_save_model(&r->ps, r->a.out_dir, r->a.save_dtype, r->a.dir, err);
    fprintf(stderr, st ? "\n" : " done\n");
    return st;
}

typedef struct {
    int64_t tokens, free, checked, bad;
    int unchecked; // countdown replies left to the outcome advantage (all FREE): nothing in them
                   // followed the checker's grammar, or their tokens do not decode to the text
                   // piece by piece
} grpo_proc_count;

// --process-reward: the labels of one completion's tokens, from the checker's labels of its
// text (reward_process_labels); a token takes its bytes' most severe label (BAD > OK > FREE >
// NONE, the enum's order). A problem without a checker, or a reply the checker could not
// follow at all (another trace format), gives FREE everywhere: the outcome advantage, as
// without the option, rather than no policy term.
static ds_status grpo_token_labels(grpo_run *r, const task_problem *p, const char *text, size_t n, const int *ids,
                                   int len, uint8_t *tl, grpo_proc_count *cnt, ds_error *err) {
    uint8_t *bl = malloc(n + 1);
    if (!bl) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    bool checked = reward_process_labels(p, text, n, bl);
    size_t at = 0;
    for (int j = 0; j < len && checked; j++) {
        char *piece = NULL;
        size_t pl = 0;
        ds_status st = tokenizer_decode(r->tok, ids + j, 1, true, &piece, &pl, err);
        if (st) { free(bl); return st; }
        uint8_t l = REWARD_PROC_NONE;
        if (at + pl > n || memcmp(text + at, piece, pl)) checked = false;
        else
            for (size_t b = at; b < at + pl; b++) l = bl[b] > l ? bl[b] : l;
        free(piece);
        at += pl;
        tl[j] = l;
    }
    if (checked && at != n) checked = false;
    if (checked) {
        checked = false;
        for (size_t b = 0; b < n && !checked; b++) checked = bl[b] != REWARD_PROC_NONE;
    }
    if (!checked) {
        cnt->unchecked += p->kind == TASK_COUNTDOWN;
        memset(tl, REWARD_PROC_FREE, (size_t)len);
    }
    free(bl);
    for (int j = 0; j < len; j++) {
        cnt->free += tl[j] == REWARD_PROC_FREE;
        cnt->checked += tl[j] >= REWARD_PROC_OK;
        cnt->bad += tl[j] == REWARD_PROC_BAD;
    }
    cnt->tokens += len;
    return DS_OK;
}

static ds_status grpo_loop(grpo_run *r, ds_error *err) {
    grpo_args *a = &r->a;
    int G = a->group, P = a->prompts, n_seq = P * G;
    grpo_params gp = {.eps_low = (float)a->eps, .eps_high = (float)a->eps_high, .beta = (float)a->beta, .agg = a->agg,
                      .max_new = a->max_new};
    reward_config rcfg = {.w_accuracy = (float)a->w_acc, .w_format = (float)a->w_fmt};
    adamw_params hp = {.beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f, .weight_decay = (float)a->wd};
    lr_schedule sched = {.kind = LR_CONSTANT, .lr_max = (float)a->lr, .lr_min = (float)a->lr, .warmup = a->warmup,
                         .total = a->steps};
    int *sel = malloc(sizeof(int) * (size_t)P);
    float *rew = malloc(sizeof(float) * (size_t)n_seq), *acc = malloc(sizeof(float) * (size_t)n_seq);
    float *fmt = malloc(sizeof(float) * (size_t)n_seq), *adv = malloc(sizeof(float) * (size_t)n_seq);
    float *norm = malloc(sizeof(float) * (size_t)n_seq);
    int T_max = r->max_prompt + a->max_new - 1;
    float *ent = malloc(sizeof(float) * (size_t)a->micro * (size_t)T_max);
    const int **ids = malloc(sizeof(int *) * (size_t)P);
    int *lens = malloc(sizeof(int) * (size_t)P);
    if (!sel || !rew || !acc || !fmt || !adv || !norm || !ent || !ids || !lens) {
        free(sel); free(rew); free(acc); free(fmt); free(adv); free(norm); free(ent); free(ids); free(lens);
        return ds_error_set(err, DS_ERR_OOM, "out of memory");
    }
    fprintf(stderr, "grpo: %d problems, %d prompts x %d completions per step, %d steps, loss %s, beta %g, eps %g/%g, "
                    "lr %g, %lld params\n",
            r->n_probs, P, G, a->steps, a->agg == GRPO_AGG_TOKEN ? "token" : a->agg == GRPO_AGG_SEQ ? "seq" : "dr",
            a->beta, a->eps, a->eps_high, a->lr, (long long)r->ps.n);
    ds_status st = DS_OK;
    int step = 0, tty = isatty(2);
    double t_start = cli_now();
    while (step < a->steps && !cli_interrupted && !st) {
        double t0 = cli_now();
        grpo_next_prompts(r, sel);
        for (int i = 0; i < P; i++) {
            ids[i] = r->pids[sel[i]];
            lens[i] = r->plen[sel[i]];
        }
        rollout_result res;
        grpo_prog prog = {step + 1, a->steps};
        st = rollout_run(r->ro, ids, lens, P, G, (uint64_t)step, &res, grpo_progress, &prog, &cli_interrupted, err);
        if (st) break;
        double t_sample = cli_now() - t0;
        // rewards
        double sum_r = 0, sum_acc = 0, sum_fmt = 0, sum_len = 0;
        grpo_proc_count proc_n = {0};
        int64_t comp_tokens = 0;
        for (int k = 0; k < n_seq && !st; k++) {
            char *text = NULL;
            size_t tl = 0;
            st = tokenizer_decode(r->tok, (const int *)res.tokens + (int64_t)k * res.max_new, res.len[k], true, &text,
                                  &tl, err);
            if (st) break;
            reward_result rr;
            reward_score(&r->probs[sel[k / G]], text, &rcfg, &rr);
            if (r->tok_lab)
                st = grpo_token_labels(r, &r->probs[sel[k / G]], text, tl,
                                       (const int *)res.tokens + (int64_t)k * res.max_new, res.len[k],
                                       r->tok_lab + (int64_t)k * a->max_new, &proc_n, err);
            free(text);
            if (st) break;
            rew[k] = rr.total;
            acc[k] = rr.accuracy;
            fmt[k] = rr.format;
            sum_r += rr.total;
            sum_acc += rr.accuracy;
            sum_fmt += rr.format;
            sum_len += res.len[k];
            comp_tokens += res.len[k];
        }
        if (st) { rollout_result_free(&res); break; }
        grpo_advantages(rew, P, G, a->agg != GRPO_AGG_DR, 1e-4f, adv);
        if (a->pos_only)
            for (int k = 0; k < n_seq; k++) adv[k] = adv[k] > 0 ? adv[k] : 0.0f;
        if (r->tok_lab)
            grpo_process_advantages(r->tok_lab, res.len, P, G, a->max_new, adv, (float)a->proc, r->tok_adv, r->grp_bad);
        // the sequences of the update: all, or (--filter-groups) those of groups with a spread
        int zero_groups = 0, n_keep = 0;
        int64_t keep_tokens = 0;
        for (int g = 0; g < P; g++) {
            int same = 1;
            for (int i = 1; i < G; i++) same &= rew[g * G + i] == rew[g * G];
            zero_groups += same;
            // a group whose rewards agree still teaches its wrong steps under --process-reward
            if (same && a->filter && !(r->grp_bad && r->grp_bad[g])) continue;
            for (int i = 0; i < G; i++) {
                r->keep[n_keep++] = g * G + i;
                keep_tokens += res.len[g * G + i];
            }
        }
        for (int q = 0; q < n_keep; q++) {
            int k = r->keep[q];
            norm[k] = grpo_token_norm(&gp, res.len[k], keep_tokens, n_keep);
        }
        // --top-entropy: the policy term only on the kept tokens of highest sampling entropy
        float ent_thr = 0;
        int64_t pg_tokens = 0;
        if (r->ent_sel) {
            int64_t n_ent = 0;
            for (int q = 0; q < n_keep; q++)
                for (int j = 0, k = r->keep[q]; j < res.len[k]; j++)
                    r->ent_sel[n_ent++] = res.entropy[(int64_t)k * res.max_new + j];
            ent_thr = grpo_entropy_threshold(r->ent_sel, n_ent, a->top_ent);
            for (int q = 0; q < n_keep; q++)
                for (int j = 0, k = r->keep[q]; j < res.len[k]; j++) {
                    int64_t x = (int64_t)k * res.max_new + j;
                    int pg = res.entropy[x] >= ent_thr;
                    r->tok_adv[(int64_t)k * a->max_new + j] = pg ? adv[k] : 0.0f;
                    pg_tokens += pg;
                }
        }
        // lay the sequences out as micro-batches: inputs prompt+completion[:-1], targets on the completion
        int n_mbs = (n_keep + a->micro - 1) / a->micro;
        for (int j = 0; j < n_mbs; j++) {
            grpo_mb *m = &r->mbs[j];
            m->seq = r->keep + j * a->micro;
            m->b = n_keep - j * a->micro < a->micro ? n_keep - j * a->micro : a->micro;
            int T = 2;
            for (int q = 0; q < m->b; q++) {
                int k = m->seq[q], L = lens[k / G] + res.len[k];
                if (L - 1 > T) T = L - 1;
            }
            m->T = T;
            for (int q = 0; q < m->b; q++) {
                int k = m->seq[q], np = lens[k / G], L = np + res.len[k];
                const int *pr = ids[k / G];
                const int32_t *ct = res.tokens + (int64_t)k * res.max_new;
                for (int t = 0; t < T; t++) {
                    int in = t < L - 1;
                    int tok_t = t < np ? pr[t] : ct[t - np];
                    m->inp[(int64_t)q * T + t] = in ? tok_t : 0;
                    m->tgt[(int64_t)q * T + t] = in && t + 1 >= np ? (t + 1 < np ? pr[t + 1] : ct[t + 1 - np]) : -1;
                    // target t is completion token t + 1 - np
                    if (m->tadv)
                        m->tadv[(int64_t)q * T + t] =
                            m->tgt[(int64_t)q * T + t] >= 0 ? r->tok_adv[(int64_t)k * a->max_new + (t + 1 - np)] : 0.0f;
                }
            }
            train_loss_weights w0 = {.logp = m->ref};
            train_loss L0 = {0};
            if (m->ref) train_model_eval(r->ref_tm, m->inp, m->tgt, m->b, T, &w0, &L0);
            if (m->old) {
                w0.logp = m->old;
                train_model_eval(r->tm, m->inp, m->tgt, m->b, T, &w0, &L0);
            }
        }
        rollout_result_free(&res);
        // the anchor's batch: the same examples in every pass of this step
        int64_t sft_n = 0;
        int sft_T = a->sft_data ? grpo_sft_pack(r, &sft_n) : 0;
        double sft_ce = NAN, sft_frac = 1;
        if (sft_n && a->sft_conf > 0) {
            // weights: coef / (anchored targets) on the targets the reference is sure of
            train_loss_weights w0 = {.logp = r->sft_lp};
            train_loss L0 = {0};
            train_model_eval(r->ref_tm, r->sft_inp, r->sft_tgt, a->sft_batch, sft_T, &w0, &L0);
            int64_t cells = (int64_t)a->sft_batch * sft_T, n_conf = 0;
            float min_lp = logf((float)a->sft_conf);
            for (int64_t i = 0; i < cells; i++) n_conf += r->sft_tgt[i] >= 0 && r->sft_lp[i] >= min_lp;
            for (int64_t i = 0; i < cells; i++)
                r->sft_w[i] = r->sft_tgt[i] >= 0 && r->sft_lp[i] >= min_lp ? (float)(a->sft_coef / (double)n_conf) : 0.0f;
            sft_frac = (double)n_conf / (double)sft_n;
        }
        // optimisation passes
        grpo_coef_ctx first = {0};
        double gnorm = 0, ent_sum = 0;
        int64_t ent_n = 0;
        float lr = lr_at(&sched, step);
        // with every group filtered out (and no anchor) there is nothing to learn from: no optimizer step
        for (int it = 0; it < a->iterations && (n_keep || a->sft_data) && !cli_interrupted; it++) {
            memset(r->ps.grads, 0, sizeof(float) * (size_t)r->ps.n);
            grpo_coef_ctx cc = {.gp = &gp, .adv = adv, .norm = norm, .uses_old = a->iterations > 1};
            train_model_reset_load(r->tm);
            for (int j = 0; j < n_mbs && !cli_interrupted; j++) {
                grpo_mb *m = &r->mbs[j];
                cc.mb = m;
                train_loss_weights w = {.coef = grpo_coef, .coef_ctx = &cc, .entropy = it == 0 ? ent : NULL};
                train_loss L = {0};
                train_model_step(r->tm, m->inp, m->tgt, m->b, m->T, &w, &L);
                if (it == 0)
                    for (int64_t i = 0; i < (int64_t)m->b * m->T; i++)
                        if (m->tgt[i] >= 0) { ent_sum += ent[i]; ent_n++; }
            }
            if (a->sft_data && sft_n && !cli_interrupted) {
                // + sft_coef * mean CE over the anchor batch's reply tokens
                train_loss_weights w = {.ce_weight = (float)(a->sft_coef / (double)sft_n),
                                        .token_weight = a->sft_conf > 0 ? r->sft_w : NULL};
                train_loss L = {0};
                train_model_step(r->tm, r->sft_inp, r->sft_tgt, a->sft_batch, sft_T, &w, &L);
                if (it == 0) sft_ce = L.ce_sum / (double)L.ce_count;
            }
            if (cli_interrupted) break;
            if (it == 0) first = cc;
            gnorm = trainer_grad_norm(&r->ps);
            trainer_adamw(&r->ps, &hp, step * a->iterations + it + 1, lr, grad_clip_scale(gnorm, (float)a->clip));
        }
        if (cli_interrupted) break;
        step++;
        double dt = cli_now() - t0, n = n_seq;
        double kl = first.tokens ? first.k3_sum / (double)first.tokens : 0;
        double clipf = first.tokens ? (double)first.clipped / (double)first.tokens : 0;
        double entropy = ent_n ? ent_sum / (double)ent_n : 0;
        fprintf(r->metrics,
                "{\"step\": %d, \"reward\": %.6f, \"accuracy\": %.6f, \"format_rate\": %.6f, \"kl\": %.6g, "
                "\"clip_fraction\": %.6g, \"response_length\": %.3f, \"entropy\": %.6f, \"grad_norm\": %.6g, "
                "\"lr\": %.6g, \"zero_adv_groups\": %d, \"update_groups\": %d, \"sample_tok_s\": %.1f, \"tok_s\": %.1f, \"seconds\": %.3f",
                step, sum_r / n, sum_acc / n, sum_fmt / n, kl, clipf, sum_len / n, entropy, gnorm, lr, zero_groups, n_keep / G,
                (double)comp_tokens / t_sample, (double)comp_tokens / dt, dt);
        if (a->sft_data) fprintf(r->metrics, ", \"sft_ce\": %.6f, \"sft_anchored\": %.4f", sft_ce, sft_frac);
        if (r->ent_sel)
            fprintf(r->metrics, ", \"pg_tokens\": %.4f, \"pg_entropy_min\": %.4f",
                    keep_tokens ? (double)pg_tokens / (double)keep_tokens : 0.0, ent_thr);
        if (r->tok_lab)
            fprintf(r->metrics, ", \"proc_free\": %.4f, \"proc_checked\": %.4f, \"proc_bad\": %.5f, \"proc_unchecked\": %d",
                    proc_n.tokens ? (double)proc_n.free / (double)proc_n.tokens : 0.0,
                    proc_n.tokens ? (double)proc_n.checked / (double)proc_n.tokens : 0.0,
                    proc_n.checked ? (double)proc_n.bad / (double)proc_n.checked : 0.0, proc_n.unchecked);
        fprintf(r->metrics, "}\n");
        fflush(r->metrics);
        double per = (cli_now() - t_start) / step;
        fprintf(stderr,
                "%sstep %d/%d | reward %.3f | acc %.3f | format %.3f | kl %.4f | clip %.3f | len %.1f | ent %.3f | "
                "%.0f tok/s | ",
                tty ? "\r\033[K" : "", step, a->steps, sum_r / n, sum_acc / n, sum_fmt / n, kl, clipf, sum_len / n,
                entropy, (double)comp_tokens / dt);
        if (a->sft_data) fprintf(stderr, "sft %.3f | ", sft_ce);
        if (r->tok_lab) fprintf(stderr, "bad %.4f | ", proc_n.checked ? (double)proc_n.bad / (double)proc_n.checked : 0.0);
        fprintf(stderr, "ETA %.0fs%s", per * (a->steps - step), tty ? "" : "\n");
        if (a->save_every > 0 && step % a->save_every == 0 && step < a->steps) st = grpo_save(r, step, err);
    }
    free(sel); free(rew); free(acc); free(fmt); free(adv); free(norm); free(ent); free(ids); free(lens);
    if (st && st != DS_ERR_INTERRUPTED) return st;
    if (cli_interrupted) fprintf(stderr, "\ninterrupted at step %d\n", step);
    else if (tty) fprintf(stderr, "\n");
    return grpo_save(r, step, err);
}

int cmd_grpo(int argc, char **argv) {
    grpo_run r;
    memset(&r, 0, sizeof r);
    int rc = grpo_parse(argc, argv, &r.a);
    if (rc >= 0) { free(r.a.tasks); return rc; }
    cli_install_signals();
    ds_error err = {{0}};
    ds_status st = grpo_setup(&r, &err);
    if (!st) st = grpo_loop(&r, &err);
    int interrupted = cli_interrupted;
    if (r.metrics) fclose(r.metrics);
    for (int j = 0; j < r.n_mbs; j++) {
        free(r.mbs[j].inp); free(r.mbs[j].tgt); free(r.mbs[j].old); free(r.mbs[j].ref); free(r.mbs[j].tadv);
    }
    free(r.mbs);
    free(r.keep);
    free(r.ent_sel);
    free(r.tok_adv);
    free(r.tok_lab);
    free(r.grp_bad);
    chatdata_free(&r.sft);
    free(r.sft_order); free(r.sft_inp); free(r.sft_tgt); free(r.sft_lp); free(r.sft_w);
    rollout_free(r.ro);
    train_model_free(r.tm);
    train_model_free(r.ref_tm);
    ds_model_free(&r.view);
    if (r.pids)
        for (int i = 0; i < r.n_probs; i++) free(r.pids[i]);
    free(r.pids); free(r.plen); free(r.order);
    task_problems_free(r.probs, r.n_probs);
    tokenizer_free(r.tok);
    params_free(&r.ps);
    params_free(&r.ref_ps);
    free(r.a.tasks);
    if (st) return cli_fail("grpo", st, &err);
    return interrupted ? 130 : 0;
}
