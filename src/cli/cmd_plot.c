// deepseek plot --metrics FILE.jsonl -o loss.png [--title T]
// Draws the training (and validation) loss curves from a metrics JSONL file with gnuplot:
// one JSON object per line with "step" and "loss" (training) and/or "val_loss".
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "io/fileutil.h"

static void plot_usage(FILE *f) {
    fprintf(f, "usage: deepseek plot --metrics FILE.jsonl -o OUT.png [--title TITLE]\n"
               "Plots \"loss\" (and \"val_loss\" where present) against \"step\" from a metrics JSONL file\n"
               "(what `deepseek train` writes) into a PNG, with gnuplot.\n");
}

// Writes "step loss" and "step val_loss" columns to two data files; counts the points.
static ds_status plot_read(const char *path, FILE *train, FILE *val, int *n_train, int *n_val, ds_error *err) {
    char *text = NULL;
    size_t size = 0;
    ds_status st = file_read_all(path, &text, &size, err);
    if (st) return st;
    long line = 0;
    *n_train = *n_val = 0;
    for (char *p = text, *end; st == DS_OK && p < text + size; p = end + 1) {
        end = memchr(p, '\n', (size_t)(text + size - p));
        if (!end) end = text + size;
        line++;
        if (end == p) continue;
        cJSON *o = cJSON_ParseWithLength(p, (size_t)(end - p));
        const cJSON *step = o ? cJSON_GetObjectItemCaseSensitive(o, "step") : NULL;
        const cJSON *loss = o ? cJSON_GetObjectItemCaseSensitive(o, "loss") : NULL;
        const cJSON *vl = o ? cJSON_GetObjectItemCaseSensitive(o, "val_loss") : NULL;
        if (!cJSON_IsObject(o) || !cJSON_IsNumber(step))
            st = ds_error_set(err, DS_ERR_FORMAT, "%s: line %ld: expected a JSON object with a numeric \"step\"", path, line);
        if (st == DS_OK && cJSON_IsNumber(loss)) { fprintf(train, "%.17g %.9g\n", step->valuedouble, loss->valuedouble); ++*n_train; }
        if (st == DS_OK && cJSON_IsNumber(vl)) { fprintf(val, "%.17g %.9g\n", step->valuedouble, vl->valuedouble); ++*n_val; }
        cJSON_Delete(o);
    }
    free(text);
    if (st == DS_OK && *n_train + *n_val == 0)
        st = ds_error_set(err, DS_ERR_FORMAT, "%s: no \"loss\" or \"val_loss\" values to plot", path);
    return st;
}

// Runs gnuplot with the script on its stdin; the PNG goes to a temp name, renamed when whole.
static ds_status plot_draw(const char *out, const char *title, const char *train_dat, const char *val_dat, int n_train,
                           int n_val, ds_error *err) {
    size_t len = strlen(out) + 32;
    char *tmp = malloc(len);
    if (!tmp) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    snprintf(tmp, len, "%s.tmp.%ld", out, (long)getpid());
    FILE *gp = popen("gnuplot 2>&1", "w");
    if (!gp) { free(tmp); return ds_error_set(err, DS_ERR_IO, "cannot run gnuplot (install gnuplot-nox)"); }
    fprintf(gp, "set terminal pngcairo size 960,540 font ',11'\nset output '%s'\n", tmp);
    fprintf(gp, "set title \"%s\" noenhanced\nset xlabel 'step'\nset ylabel 'loss'\nset grid\nset key top right\n", title);
    fprintf(gp, "plot ");
    if (n_train) fprintf(gp, "'%s' using 1:2 with lines lw 2 title 'train'%s", train_dat, n_val ? ", " : "");
    if (n_val) fprintf(gp, "'%s' using 1:2 with linespoints pt 7 lw 2 title 'validation'", val_dat);
    fprintf(gp, "\nset output\n");
    int rc = pclose(gp);
    ds_status st = DS_OK;
    if (rc != 0) st = ds_error_set(err, DS_ERR_IO, "gnuplot failed (exit status %d; is gnuplot-nox installed?)", rc);
    else if (rename(tmp, out) != 0) st = ds_error_set(err, DS_ERR_IO, "%s: cannot write", out);
    if (st) unlink(tmp);
    free(tmp);
    return st;
}

int cmd_plot(int argc, char **argv) {
    const char *metrics = NULL, *out = NULL, *title = NULL, *v;
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { plot_usage(stdout); return 0; }
        if ((v = cli_opt(argc, argv, &i, "--metrics", &missing))) metrics = v;
        else if ((v = cli_opt(argc, argv, &i, "-o", &missing)) || (v = cli_opt(argc, argv, &i, "--out", &missing))) out = v;
        else if ((v = cli_opt(argc, argv, &i, "--title", &missing))) title = v;
        else if (missing) return cli_usage_error("plot", "%s needs a value", argv[i]);
        else return cli_usage_error("plot", "unknown option '%s'", argv[i]);
    }
    if (!metrics) return cli_usage_error("plot", "--metrics FILE.jsonl is required");
    if (!out) return cli_usage_error("plot", "-o OUT.png is required");
    for (const char *s = out; *s; s++)
        if (*s == '\'' || *s == '\n') return cli_usage_error("plot", "-o: the file name may not contain quotes or newlines");
    char safe_title[200];
    snprintf(safe_title, sizeof safe_title, "%s", title ? title : metrics);
    for (char *s = safe_title; *s; s++)
        if (*s == '"' || *s == '\\' || *s == '\n') *s = ' ';
    char train_dat[] = "/tmp/ds-plot-train-XXXXXX", val_dat[] = "/tmp/ds-plot-val-XXXXXX";
    int ft = mkstemp(train_dat), fv = mkstemp(val_dat);
    FILE *train = ft >= 0 ? fdopen(ft, "w") : NULL, *val = fv >= 0 ? fdopen(fv, "w") : NULL;
    ds_error err = {{0}};
    ds_status st = train && val ? DS_OK : ds_error_set(&err, DS_ERR_IO, "cannot create temporary files in /tmp");
    int n_train = 0, n_val = 0;
    if (!st) st = plot_read(metrics, train, val, &n_train, &n_val, &err);
    if (train) fclose(train);
    if (val) fclose(val);
    if (!st) st = plot_draw(out, safe_title, train_dat, val_dat, n_train, n_val, &err);
    if (ft >= 0) unlink(train_dat);
    if (fv >= 0) unlink(val_dat);
    if (!st) fprintf(stderr, "plot: %d training and %d validation points -> %s\n", n_train, n_val, out);
    return st ? cli_fail("plot", st, &err) : 0;
}
