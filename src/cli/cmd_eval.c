// deepseek eval -m DIR --data FILE.jsonl [--samples K] [--temp T] [--top-p P] [--max-new N] [--out FILE]
// Samples K completions per problem (batched over problems), scores them with the rule-based
// rewards and reports pass@1 as the mean accuracy over the K samples (the R1 paper's
// estimate), majority-vote accuracy, format rate and mean response length.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "io/fileutil.h"
#include "rl/chatdata.h"
#include "rl/reward.h"
#include "rl/rollout.h"
#include "rl/task.h"

static void eval_usage(FILE *f) {
    fprintf(f,
            "usage: deepseek eval -m DIR --data FILE.jsonl [options]\n"
            "Answers every problem of FILE (the `deepseek tasks` format, or hand-written lines with task,\n"
            "prompt and answer / numbers + target) K times through the chat template and scores the\n"
            "replies: accuracy of the last \\boxed{} after </think>, and the format. Prints one JSON line:\n"
            "n, samples, pass@1 (mean accuracy over the K samples, with a 95%% interval over problems),\n"
            "majority (accuracy of the most frequent answer), format_rate, mean_response_tokens, and\n"
            "the same per difficulty.\n"
            "  --samples K     completions per problem (default 4)\n"
            "  --temp T        temperature (default 0.6, R1's evaluation setting; 0 = greedy)\n"
            "  --top-p P       (default 0.95)   --seed S (default 1)\n"
            "  --max-new N     tokens per completion (default 512)\n"
            "  --limit N       first N problems only\n"
            "  --batch N       sequences decoded together (default 64)\n"
            "  --out FILE      per-problem results as JSONL (answers, accuracy, lengths, completions)\n"
            "  --baseline FILE the --out file of another model on the same data: adds the paired difference\n"
            "                  of pass@1 (delta_pass@1) with its 95%% interval, overall and per difficulty\n"
            "  --quant Q       q8 or q4 weights   -t THREADS\n");
}

typedef struct {
    const char *dir, *data, *out, *baseline;
    int samples, max_new, batch, limit, quant;
    sampler_params sp;
} eval_args;

static int eval_parse(int argc, char **argv, eval_args *a) {
    *a = (eval_args){.samples = 4, .max_new = 512, .batch = 64, .quant = -1,
                     .sp = {.temperature = 0.6f, .top_p = 0.95f, .seed = 1}};
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        const char *v;
        long n;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { eval_usage(stdout); return 0; }
        int s = cli_sampling_opt("eval", argc, argv, &i, &a->sp);
        if (s < 0) return 1;
        if (s > 0) continue;
        if ((v = cli_opt(argc, argv, &i, "-m", &missing))) a->dir = v;
        else if ((v = cli_opt(argc, argv, &i, "--data", &missing))) a->data = v;
        else if ((v = cli_opt(argc, argv, &i, "--out", &missing))) a->out = v;
        else if ((v = cli_opt(argc, argv, &i, "--baseline", &missing))) a->baseline = v;
        else if ((v = cli_opt(argc, argv, &i, "-t", &missing))) { if (!cli_apply_threads("eval", v)) return 1; }
        else if ((v = cli_opt(argc, argv, &i, "--quant", &missing))) { if (!cli_parse_quant("eval", v, &a->quant)) return 1; }
        else if ((v = cli_opt(argc, argv, &i, "--samples", &missing))) {
            if (!cli_parse_int(v, 1, 4096, &n)) return cli_usage_error("eval", "--samples expects 1..4096, got '%s'", v);
            a->samples = (int)n;
        } else if ((v = cli_opt(argc, argv, &i, "--max-new", &missing))) {
            if (!cli_parse_int(v, 1, 1 << 20, &n)) return cli_usage_error("eval", "--max-new expects a positive integer, got '%s'", v);
            a->max_new = (int)n;
        } else if ((v = cli_opt(argc, argv, &i, "--batch", &missing))) {
            if (!cli_parse_int(v, 1, 65536, &n)) return cli_usage_error("eval", "--batch expects 1..65536, got '%s'", v);
            a->batch = (int)n;
        } else if ((v = cli_opt(argc, argv, &i, "--limit", &missing))) {
            if (!cli_parse_int(v, 1, 1L << 30, &n)) return cli_usage_error("eval", "--limit expects a positive integer, got '%s'", v);
            a->limit = (int)n;
        } else if (missing) return cli_usage_error("eval", "%s needs a value", argv[i]);
        else return cli_usage_error("eval", "unknown option '%s'", argv[i]);
        if (missing) return cli_usage_error("eval", "%s needs a value", argv[i]);
    }
    if (!a->dir) return cli_usage_error("eval", "-m DIR is required");
    if (!a->data) return cli_usage_error("eval", "--data FILE.jsonl is required");
    return -1;
}

typedef struct {
    char *label;
    int n;
    double acc, maj, fmt, len;
    double acc2;   // sum of squared per-problem pass@1
    double d, d2;  // paired differences to the baseline
} eval_group;

// Half-width of the normal 95% interval of a mean from its sum and sum of squares over n.
static double eval_ci95(double sum, double sum2, double n) {
    if (n < 2) return 0;
    double mean = sum / n, var = (sum2 - n * mean * mean) / (n - 1);
    return 1.96 * sqrt(var > 0 ? var : 0) / sqrt(n);
}

// pass@1 of every problem of a previous --out file (index -> value; NAN where absent), and
// its prompt, to refuse a baseline of other problems.
static ds_status eval_load_baseline(const char *path, int np, const task_problem *probs, double *base, ds_error *err) {
    for (int i = 0; i < np; i++) base[i] = NAN;
    char *text = NULL;
    size_t size = 0;
    ds_status st = file_read_all(path, &text, &size, err);
    if (st) return st;
    int line = 0;
    for (char *p = text, *end; !st && p < text + size; p = end + 1) {
        end = memchr(p, '\n', (size_t)(text + size - p));
        if (!end) end = text + size;
        line++;
        if (end == p) continue;
        cJSON *o = cJSON_ParseWithLength(p, (size_t)(end - p));
        const cJSON *idx = cJSON_GetObjectItemCaseSensitive(o, "index");
        const cJSON *acc = cJSON_GetObjectItemCaseSensitive(o, "pass@1");
        const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(o, "prompt");
        if (!cJSON_IsNumber(idx) || !cJSON_IsNumber(acc) || !cJSON_IsString(prompt))
            st = ds_error_set(err, DS_ERR_FORMAT, "%s:%d: not a line of `deepseek eval --out` (index, prompt, pass@1)", path, line);
        else if (idx->valueint >= 0 && idx->valueint < np) {
            if (strcmp(prompt->valuestring, probs[idx->valueint].prompt) != 0)
                st = ds_error_set(err, DS_ERR_FORMAT, "%s:%d: problem %d is another problem than in the data", path, line,
                                  idx->valueint);
            else base[idx->valueint] = acc->valuedouble;
        }
        cJSON_Delete(o);
    }
    free(text);
    for (int i = 0; !st && i < np; i++)
        if (isnan(base[i])) st = ds_error_set(err, DS_ERR_FORMAT, "%s: no result for problem %d", path, i);
    return st;
}

static void eval_progress(void *ctx, int64_t done) {
    const int *total = ctx;
    if (isatty(2)) fprintf(stderr, "\r\033[Keval: %d/%d problems, %lld tokens in this batch", total[0], total[1], (long long)done);
}

// The vote key of a sample: the boxed answer for arithmetic; for countdown any correct
// expression counts as the same answer (they differ in form but all reach the target).
static const char *vote_key(const task_problem *p, const char *answer, float acc) {
    if (p->kind == TASK_COUNTDOWN && acc > 0) return "\x01correct";
    return answer ? answer : "\x01none";
}

// The boxed answer with surrounding whitespace trimmed (malloc'd), NULL when there is none.
static char *eval_answer(const char *text) {
    const char *s;
    size_t n;
    if (!reward_extract_answer(text, &s, &n)) return NULL;
    while (n && (*s == ' ' || *s == '\n' || *s == '\t')) { s++; n--; }
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t')) n--;
    return strndup(s, n);
}

int cmd_eval(int argc, char **argv) {
    eval_args a;
    int rc = eval_parse(argc, argv, &a);
    if (rc >= 0) return rc;
    cli_install_signals();
    ds_error err = {{0}};
    ds_model m = {0};
    ds_tokenizer *tok = NULL;
    task_problem *probs = NULL;
    int np = 0, n_all = 0;
    int **pids = NULL, *plen = NULL;
    rollout *ro = NULL;
    FILE *out = NULL;
    file_atomic fa = {0};
    eval_group *groups = NULL;
    int n_groups = 0;
    char **answers = NULL;
    double *base = NULL, sum_d = 0, sum_d2 = 0;
    ds_status st = task_load_jsonl(a.data, &probs, &np, &err);
    if (!st) st = cli_model_load(&m, a.dir, a.quant, &err);
    if (!st) st = tokenizer_load(&tok, a.dir, &err);
    if (st) goto done;
    n_all = np;
    if (a.limit && a.limit < np) np = a.limit;
    pids = calloc((size_t)np, sizeof *pids);
    plen = calloc((size_t)np, sizeof *plen);
    answers = calloc((size_t)a.samples, sizeof *answers);
    if (!pids || !plen || !answers) { st = ds_error_set(&err, DS_ERR_OOM, "out of memory"); goto done; }
    if (a.baseline) {
        if (!(base = malloc(sizeof(double) * (size_t)np))) { st = ds_error_set(&err, DS_ERR_OOM, "out of memory"); goto done; }
        st = eval_load_baseline(a.baseline, np, probs, base, &err);
        if (st) goto done;
    }
    int max_prompt = 1;
    for (int i = 0; i < np && !st; i++) {
        st = chatdata_encode_prompt(tok, probs[i].prompt, &pids[i], &plen[i], NULL, &err);
        if (plen[i] > max_prompt) max_prompt = plen[i];
    }
    if (st) goto done;
    int per = a.batch / a.samples > 0 ? a.batch / a.samples : 1;
    rollout_opts ro_opts = {.max_new = a.max_new, .prefill_chunk = 512, .sp = a.sp};
    int eos = tokenizer_eos_id(tok);
    if (eos >= 0) ro_opts.stop_ids[ro_opts.n_stop++] = eos;
    if (m.cfg.eos_token_id >= 0 && m.cfg.eos_token_id != eos) ro_opts.stop_ids[ro_opts.n_stop++] = m.cfg.eos_token_id;
    st = rollout_create(&ro, &m, per * a.samples, max_prompt, &ro_opts, &err);
    if (st) goto done;
    if (a.out) {
        st = file_atomic_open(&fa, a.out, &err);
        if (st) goto done;
        out = fa.fp;
    }
    reward_config rc_cfg = reward_config_default();
    double sum_acc = 0, sum_acc2 = 0, sum_maj = 0, sum_fmt = 0, sum_len = 0, secs = 0;
    int64_t gen_tokens = 0;
    int done_n = 0;
    double t_start = cli_now();
    for (int p0 = 0; p0 < np && !st; p0 += per) {
        int b = np - p0 < per ? np - p0 : per;
        rollout_result res;
        int prog[2] = {p0, np};
        st = rollout_run(ro, (const int *const *)pids + p0, plen + p0, b, a.samples, (uint64_t)p0, &res, eval_progress,
                         prog, &cli_interrupted, &err);
        if (st) break;
        secs += res.seconds;
        gen_tokens += res.generated;
        for (int i = 0; i < b && !st; i++) {
            const task_problem *p = &probs[p0 + i];
            double acc = 0, fmt = 0, len = 0;
            float accs[4096];
            if (out) {
                fprintf(out, "{\"index\": %d, \"task\": \"%s\", \"difficulty\": ", p0 + i, task_kind_name(p->kind));
                cJSON *js = cJSON_CreateString(p->difficulty), *jp = cJSON_CreateString(p->prompt);
                char *s = cJSON_PrintUnformatted(js), *sp = cJSON_PrintUnformatted(jp);
                fprintf(out, "%s, \"prompt\": %s, \"samples\": [", s, sp);
                free(s);
                free(sp);
                cJSON_Delete(js);
                cJSON_Delete(jp);
            }
            for (int k = 0; k < a.samples; k++) {
                int idx = i * a.samples + k;
                const int32_t *ct = res.tokens + (int64_t)idx * res.max_new;
                char *text = NULL;
                size_t tl = 0;
                st = tokenizer_decode(tok, (const int *)ct, res.len[idx], true, &text, &tl, &err);
                if (st) break;
                reward_result rr;
                reward_score(p, text, &rc_cfg, &rr);
                acc += rr.accuracy;
                fmt += rr.format;
                len += res.len[idx];
                accs[k] = rr.accuracy;
                answers[k] = eval_answer(text);
                if (out) {
                    cJSON *o = cJSON_CreateObject();
                    cJSON_AddStringToObject(o, "completion", text);
                    if (answers[k]) cJSON_AddStringToObject(o, "answer", answers[k]);
                    else cJSON_AddNullToObject(o, "answer");
                    cJSON_AddNumberToObject(o, "accuracy", rr.accuracy);
                    cJSON_AddNumberToObject(o, "format", rr.format);
                    cJSON_AddNumberToObject(o, "tokens", res.len[idx]);
                    cJSON_AddBoolToObject(o, "stopped", res.stopped[idx]);
                    char *s = cJSON_PrintUnformatted(o);
                    fprintf(out, "%s%s", k ? ", " : "", s);
                    free(s);
                    cJSON_Delete(o);
                }
                free(text);
            }
            if (st) break;
            // majority vote: most frequent key, ties to the earliest sample
            int best = 0, best_count = 0;
            for (int k = 0; k < a.samples; k++) {
                int c = 0;
                const char *key = vote_key(p, answers[k], accs[k]);
                for (int j = 0; j < a.samples; j++) c += strcmp(key, vote_key(p, answers[j], accs[j])) == 0;
                if (c > best_count) { best_count = c; best = k; }
            }
            double maj = answers[best] && accs[best] > 0 ? 1.0 : 0.0;
            for (int k = 0; k < a.samples; k++) { free(answers[k]); answers[k] = NULL; }
            acc /= a.samples;
            fmt /= a.samples;
            len /= a.samples;
            sum_acc += acc;
            sum_acc2 += acc * acc;
            sum_maj += maj;
            sum_fmt += fmt;
            sum_len += len;
            done_n++;
            if (out) fprintf(out, "], \"pass@1\": %.6f, \"majority\": %.0f, \"format_rate\": %.6f, \"mean_response_tokens\": %.2f}\n", acc, maj, fmt, len);
            int g = 0;
            while (g < n_groups && strcmp(groups[g].label, p->difficulty) != 0) g++;
            if (g == n_groups) {
                eval_group *ng = realloc(groups, sizeof *ng * (size_t)(n_groups + 1));
                if (!ng || !(ng[n_groups].label = strdup(p->difficulty))) {
                    if (ng) groups = ng;
                    st = ds_error_set(&err, DS_ERR_OOM, "out of memory");
                    break;
                }
                groups = ng;
                groups[n_groups] = (eval_group){.label = groups[n_groups].label};
                n_groups++;
            }
            groups[g].n++;
            groups[g].acc += acc;
            groups[g].acc2 += acc * acc;
            groups[g].maj += maj;
            groups[g].fmt += fmt;
            groups[g].len += len;
            if (base) {
                double d = acc - base[p0 + i];
                sum_d += d;
                sum_d2 += d * d;
                groups[g].d += d;
                groups[g].d2 += d * d;
            }
        }
        rollout_result_free(&res);
        if (!isatty(2) || p0 + b >= np)
            fprintf(stderr, "%seval: %d/%d problems | pass@1 %.3f | format %.3f | %.0f tok/s\n", isatty(2) ? "\r\033[K" : "",
                    done_n, np, sum_acc / done_n, sum_fmt / done_n, (double)gen_tokens / (secs > 0 ? secs : 1));
    }
    if (st) goto done;
    if (out) {
        st = file_atomic_commit(&fa, &err);
        out = NULL;
        if (st) goto done;
    }
    {
        double n = done_n, mean = sum_acc / n;
        double var = n > 1 ? (sum_acc2 - n * mean * mean) / (n - 1) : 0;
        double ci = 1.96 * sqrt(var > 0 ? var : 0) / sqrt(n);
        printf("{\"n\": %d, \"samples\": %d, \"pass@1\": %.4f, \"pass@1_ci95\": %.4f, \"majority\": %.4f, "
               "\"format_rate\": %.4f, \"mean_response_tokens\": %.1f",
               done_n, a.samples, mean, ci, sum_maj / n, sum_fmt / n, sum_len / n);
        if (base) printf(", \"delta_pass@1\": %.4f, \"delta_ci95\": %.4f", sum_d / n, eval_ci95(sum_d, sum_d2, n));
        printf(", \"tokens_per_s\": %.1f, \"seconds\": %.1f, \"by_difficulty\": {",
               (double)gen_tokens / (secs > 0 ? secs : 1), cli_now() - t_start);
        for (int g = 0; g < n_groups; g++) {
            const eval_group *q = &groups[g];
            printf("%s\"%s\": {\"n\": %d, \"pass@1\": %.4f, \"pass@1_ci95\": %.4f, \"majority\": %.4f, "
                   "\"format_rate\": %.4f, \"mean_response_tokens\": %.1f",
                   g ? ", " : "", q->label, q->n, q->acc / q->n, eval_ci95(q->acc, q->acc2, q->n), q->maj / q->n,
                   q->fmt / q->n, q->len / q->n);
            if (base) printf(", \"delta_pass@1\": %.4f, \"delta_ci95\": %.4f", q->d / q->n, eval_ci95(q->d, q->d2, q->n));
            printf("}");
        }
        printf("}}\n");
        fflush(stdout);
    }
done:
    if (out) file_atomic_abort(&fa);
    for (int g = 0; g < n_groups; g++) free(groups[g].label);
    free(groups);
    free(answers);
    free(base);
    rollout_free(ro);
    if (pids)
        for (int i = 0; i < np; i++) free(pids[i]);
    free(pids);
    free(plen);
    task_problems_free(probs, n_all);
    tokenizer_free(tok);
    ds_model_free(&m);
    if (st) return cli_fail("eval", st, &err);
    return 0;
}
