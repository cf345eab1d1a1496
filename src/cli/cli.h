// Shared helpers of the deepseek subcommands (one file per subcommand, git-style).
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include "base/status.h"
#include "model/model.h"

int cmd_init(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_tokenizer_train(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_grad(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_sft(int argc, char **argv);
int cmd_grpo(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_tasks(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_quantize(int argc, char **argv);

// Prints "deepseek <cmd>: <message>" to stderr and returns the exit code for the status.
int cli_fail(const char *cmd, ds_status st, const ds_error *err);
// Prints a usage error and returns 1.
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Strict number parsing: the whole string must be a number in [lo, hi].
bool cli_parse_int(const char *s, long lo, long hi, long *out);
bool cli_parse_float(const char *s, double lo, double hi, double *out);
// "0,17,42" -> malloc'd ids; false on an empty list, a non-number or a negative id.
bool cli_parse_ids(const char *s, int **ids, int *n);

// Sets OpenMP and OpenBLAS thread counts (the process-wide runtime).
void cli_set_threads(int n);
// The value of -t: sets the thread count, or prints a usage error and returns false.
bool cli_apply_threads(const char *cmd, const char *v);
// The value of --attn (auto|naive|absorbed) as a ds_attn_mode, or a usage error and false.
bool cli_parse_attn(const char *cmd, const char *v, int *mode);

// The value of --quant (q8 | q4 | none) as a ds_dtype (-1 = none), or a usage error and false.
bool cli_parse_quant(const char *cmd, const char *v, int *dtype);
// Loads a model folder and, with quant >= 0, re-encodes its matrices (progress on stderr).
ds_status cli_model_load(ds_model *m, const char *dir, int quant, ds_error *err);

struct sampler_params;
// The sampling options shared by generate/run/chat (--temp --top-k --top-p --min-p --seed):
// 1 = argv[*i] was one of them (value stored, *i advanced), 0 = not a sampling option,
// -1 = bad or missing value (usage error printed).
int cli_sampling_opt(const char *cmd, int argc, char **argv, int *i, struct sampler_params *sp);

// Option matching: returns the value for "--name VALUE" or "--name=VALUE" and advances *i;
// NULL if argv[*i] is not this option. Sets *missing when the value is absent.
const char *cli_opt(int argc, char **argv, int *i, const char *name, bool *missing);

// Numeric options described by a table (the fields live in one struct at `base`): an int
// option stores into *(int *)(base + off), a float option into *(double *)(base + off).
typedef struct {
    const char *name;
    int is_float;
    double lo, hi;
    size_t off;
} cli_num_opt;
// 1 = argv[*i] was one of the table's options (value checked, stored, *i advanced), 0 = not
// one of them, -1 = bad or missing value (usage error printed).
int cli_table_opt(const char *cmd, int argc, char **argv, int *i, const cli_num_opt *t, int n, void *base);

// Set by SIGINT/SIGTERM: long loops poll it and stop cleanly. The only process-wide mutable
// state besides the thread counts.
extern volatile int cli_interrupted;
void cli_install_signals(void);
double cli_now(void); // monotonic seconds
