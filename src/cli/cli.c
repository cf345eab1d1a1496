#include "cli/cli.h"
#include "model/model.h"

#include "infer/sampler.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

volatile int cli_interrupted = 0;

int cli_fail(const char *cmd, ds_status st, const ds_error *err) {
    fprintf(stderr, "deepseek %s: %s\n", cmd, err->msg[0] ? err->msg : ds_status_name(st));
    return ds_status_exit_code(st);
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "deepseek %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see deepseek %s --help)\n", cmd);
    va_end(ap);
    return 1;
}

bool cli_parse_int(const char *s, long lo, long hi, long *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool cli_parse_float(const char *s, double lo, double hi, double *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool cli_parse_ids(const char *s, int **ids, int *n) {
    *ids = NULL;
    *n = 0;
    if (!s || !*s) return false;
    int cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int *v = malloc((size_t)cap * sizeof(int));
    if (!v) return false;
    const char *p = s;
    int k = 0;
    while (1) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > 2147483647L || (*end && *end != ',')) { free(v); return false; }
        v[k++] = (int)x;
        if (!*end) break;
        p = end + 1;
    }
    *ids = v;
    *n = k;
    return true;
}

void cli_set_threads(int n) {
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

bool cli_apply_threads(const char *cmd, const char *v) {
    long n;
    if (!cli_parse_int(v, 1, 4096, &n)) {
        cli_usage_error(cmd, "-t expects a positive integer, got '%s'", v);
        return false;
    }
    cli_set_threads((int)n);
    return true;
}

bool cli_parse_quant(const char *cmd, const char *v, int *dtype) {
    if (!strcmp(v, "q8") || !strcmp(v, "q8_0")) *dtype = DS_Q8_0;
    else if (!strcmp(v, "q4") || !strcmp(v, "q4_0")) *dtype = DS_Q4_0;
    else if (!strcmp(v, "none")) *dtype = -1;
    else return cli_usage_error(cmd, "--quant must be q8, q4 or none, got '%s'", v), false;
    return true;
}

ds_status cli_model_load(ds_model *m, const char *dir, int quant, ds_error *err) {
    ds_status st = ds_model_load(m, dir, err);
    if (st || quant < 0) return st;
    st = ds_model_quantize(m, (ds_dtype)quant, isatty(2), NULL, err);
    if (st) ds_model_free(m);
    return st;
}

bool cli_parse_attn(const char *cmd, const char *v, int *mode) {
    static const char *const names[] = {"auto", "naive", "absorbed"}; // DS_ATTN_* order
    for (int i = 0; i < 3; i++)
        if (strcmp(v, names[i]) == 0) { *mode = i; return true; }
    cli_usage_error(cmd, "--attn must be auto, naive or absorbed, got '%s'", v);
    return false;
}

int cli_sampling_opt(const char *cmd, int argc, char **argv, int *i, struct sampler_params *sp) {
    bool missing = false;
    const char *v;
    long n;
    double f;
    if ((v = cli_opt(argc, argv, i, "--temp", &missing))) {
        if (!cli_parse_float(v, 0, 1e6, &f)) return cli_usage_error(cmd, "--temp expects a number >= 0, got '%s'", v), -1;
        sp->temperature = (float)f;
    } else if ((v = cli_opt(argc, argv, i, "--top-k", &missing))) {
        if (!cli_parse_int(v, 0, 1L << 30, &n)) return cli_usage_error(cmd, "--top-k expects an integer >= 0, got '%s'", v), -1;
        sp->top_k = (int)n;
    } else if ((v = cli_opt(argc, argv, i, "--top-p", &missing))) {
        if (!cli_parse_float(v, 0, 1, &f) || f <= 0) return cli_usage_error(cmd, "--top-p must be in (0, 1], got '%s'", v), -1;
        sp->top_p = (float)f;
    } else if ((v = cli_opt(argc, argv, i, "--min-p", &missing))) {
        if (!cli_parse_float(v, 0, 1, &f)) return cli_usage_error(cmd, "--min-p must be in [0, 1], got '%s'", v), -1;
        sp->min_p = (float)f;
    } else if ((v = cli_opt(argc, argv, i, "--seed", &missing))) {
        if (!cli_parse_int(v, 0, 0x7fffffffffffffffL, &n))
            return cli_usage_error(cmd, "--seed expects a non-negative integer, got '%s'", v), -1;
        sp->seed = (uint64_t)n;
    } else {
        if (missing) return cli_usage_error(cmd, "%s needs a value", argv[*i]), -1;
        return 0;
    }
    return 1;
}

const char *cli_opt(int argc, char **argv, int *i, const char *name, bool *missing) {
    const char *a = argv[*i];
    size_t len = strlen(name);
    if (strncmp(a, name, len) != 0) return NULL;
    if (a[len] == '=') return a + len + 1;
    if (a[len] != 0) return NULL;
    if (*i + 1 >= argc) { *missing = true; return NULL; }
    return argv[++*i];
}

int cli_table_opt(const char *cmd, int argc, char **argv, int *i, const cli_num_opt *t, int n, void *base) {
    for (int k = 0; k < n; k++) {
        bool missing = false;
        const char *v = cli_opt(argc, argv, i, t[k].name, &missing);
        if (missing) return cli_usage_error(cmd, "%s needs a value", t[k].name), -1;
        if (!v) continue;
        char *at = (char *)base + t[k].off;
        if (t[k].is_float) {
            double x;
            if (!cli_parse_float(v, t[k].lo, t[k].hi, &x))
                return cli_usage_error(cmd, "%s expects a number in [%g, %g], got '%s'", t[k].name, t[k].lo, t[k].hi, v), -1;
            memcpy(at, &x, sizeof x);
        } else {
            long x;
            if (!cli_parse_int(v, (long)t[k].lo, (long)t[k].hi, &x))
                return cli_usage_error(cmd, "%s expects an integer in [%ld, %ld], got '%s'", t[k].name, (long)t[k].lo,
                                       (long)t[k].hi, v), -1;
            int xi = (int)x;
            memcpy(at, &xi, sizeof xi);
        }
        return 1;
    }
    return 0;
}

static void cli_on_signal(int sig) {
    (void)sig;
    if (cli_interrupted) _exit(130); // a second Ctrl-C leaves at once
    cli_interrupted = 1;
}

void cli_install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = cli_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
