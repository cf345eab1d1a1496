// deepseek tasks --task arithmetic|countdown --n N [--seed S] [--difficulty SPEC]
//                [--split train|eval] [--traces [--cd-trace search|guess]] -o FILE.jsonl
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "rl/task.h"

static void tasks_usage(FILE *f) {
    fprintf(f,
            "usage: deepseek tasks --task arithmetic|countdown --n N [--seed S] [--difficulty SPEC]\n"
            "                      [--split train|eval] [--traces [--cd-trace search|guess]] -o FILE.jsonl\n"
            "Writes N distinct verifiable-reward problems, one JSON object per line: task, difficulty,\n"
            "prompt, answer (arithmetic) or numbers + target (countdown), split. The same flags give\n"
            "the same bytes. The train and eval splits never share a problem: a problem is in eval\n"
            "iff the FNV-1a 64 hash of its canonical form is 0 mod 8 (1/8 of all problems).\n"
            "  --task T        arithmetic (\"What is 4738 + 925?\") or countdown (reach a target)\n"
            "  --n N           how many problems, 1-%d\n"
            "  --seed S        random seed (default 0)\n"
            "  --split S       train (default) or eval\n"
            "  --traces        add \"messages\": the prompt and a step-by-step solution (chat JSONL for\n"
            "                  deepseek sft)\n"
            "  --cd-trace S    countdown trace style: search (default; a depth-first search showing\n"
            "                  at most 6 failed steps) or guess (random guesses, each checked against\n"
            "                  the target, until one reaches it; formats in src/rl/task.h)\n"
            "  -o FILE         output file (written atomically)\n"
            "  --difficulty    comma-separated items; each problem picks an item uniformly, then a\n"
            "                  size uniformly within its range.\n"
            "    arithmetic    add:D  add:D1-D2  sub:D  sub:D1-D2  (both operands have exactly D digits)\n"
            "                  mul:AxB  mul:A1-A2xB  mul:AxB1-B2  (A-digit times B-digit)\n"
            "                  digits 1-18; default add:1-3; e.g. add:1-3,sub:2,mul:2x1\n"
            "    countdown     n:K or n:K1-K2  how many numbers, 2-6 (default 3)\n"
            "                  max:N           numbers drawn from 1..N, 5-1000 (default 20)\n"
            "                  targets are 1-%d; e.g. n:3-5,max:30\n",
            TASK_MAX_N, TASK_CD_MAX_TARGET);
}

int cmd_tasks(int argc, char **argv) {
    const char *task_s = NULL, *n_s = NULL, *seed_s = NULL, *spec_s = NULL, *split_s = NULL, *out = NULL, *v;
    const char *cd_s = NULL;
    bool traces = false;
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { tasks_usage(stdout); return 0; }
        if (!strcmp(argv[i], "--traces")) traces = true;
        else if ((v = cli_opt(argc, argv, &i, "--task", &missing))) task_s = v;
        else if ((v = cli_opt(argc, argv, &i, "--n", &missing)) || (v = cli_opt(argc, argv, &i, "-n", &missing))) n_s = v;
        else if ((v = cli_opt(argc, argv, &i, "--seed", &missing))) seed_s = v;
        else if ((v = cli_opt(argc, argv, &i, "--difficulty", &missing))) spec_s = v;
        else if ((v = cli_opt(argc, argv, &i, "--split", &missing))) split_s = v;
        else if ((v = cli_opt(argc, argv, &i, "--cd-trace", &missing))) cd_s = v;
        else if ((v = cli_opt(argc, argv, &i, "-o", &missing)) || (v = cli_opt(argc, argv, &i, "--output", &missing))) out = v;
        else if (missing) return cli_usage_error("tasks", "%s needs a value", argv[i]);
        else return cli_usage_error("tasks", "unknown option '%s'", argv[i]);
    }
    task_kind kind;
    task_split split = TASK_SPLIT_TRAIN;
    long n, seed = 0;
    if (!task_s) return cli_usage_error("tasks", "--task is required (arithmetic or countdown)");
    if (!task_kind_parse(task_s, &kind))
        return cli_usage_error("tasks", "--task must be arithmetic or countdown, not '%s'", task_s);
    if (!n_s) return cli_usage_error("tasks", "--n is required");
    if (!cli_parse_int(n_s, 1, TASK_MAX_N, &n))
        return cli_usage_error("tasks", "--n must be an integer in 1-%d, not '%s'", TASK_MAX_N, n_s);
    if (seed_s && !cli_parse_int(seed_s, 0, LONG_MAX, &seed))
        return cli_usage_error("tasks", "--seed must be a non-negative integer, not '%s'", seed_s);
    if (split_s && !task_split_parse(split_s, &split))
        return cli_usage_error("tasks", "--split must be train or eval, not '%s'", split_s);
    if (!out) return cli_usage_error("tasks", "-o FILE is required");
    task_cd_trace cd_style = TASK_CD_TRACE_SEARCH;
    if (cd_s && !task_cd_trace_parse(cd_s, &cd_style))
        return cli_usage_error("tasks", "--cd-trace must be search or guess, not '%s'", cd_s);
    if (cd_s && !traces) return cli_usage_error("tasks", "--cd-trace only applies with --traces");

    ds_error err = {{0}};
    task_spec spec;
    ds_status st = task_spec_parse(kind, spec_s, &spec, &err);
    if (st) return cli_usage_error("tasks", "%s", err.msg);
    task_problem *ps = NULL;
    st = task_generate(&spec, (uint64_t)seed, split, (int)n, &ps, &err);
    if (!st) st = task_write_jsonl(out, ps, (int)n, traces, cd_style, &err);
    if (ps) task_problems_free(ps, (int)n);
    if (st) return cli_fail("tasks", st, &err);
    fprintf(stderr, "wrote %ld %s problems (%s split, difficulty %s%s) to %s\n", n, task_kind_name(kind),
            task_split_name(split), spec_s ? spec_s : task_spec_default(kind), traces ? ", with traces" : "", out);
    return 0;
}
