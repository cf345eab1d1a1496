// deepseek plot --metrics FILE.jsonl -o OUT.png [--title T]
// Draws a metrics JSONL file with gnuplot: the loss curves of `train` / `sft` ("loss" and
// "val_loss" against "step"), or, for a `grpo` run (lines with "reward"), four panels:
// reward / accuracy / format rate, KL to the reference, mean response length, and entropy /
// clip fraction.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "io/fileutil.h"

static void plot_usage(FILE *f) {
    fprintf(f, "usage: deepseek plot --metrics FILE.jsonl -o OUT.png [--title TITLE]\n"
               "Plots a metrics file into a PNG with gnuplot: \"loss\" and \"val_loss\" against \"step\" (what\n"
               "`deepseek train` and `deepseek sft` write), or the GRPO panels when the lines have \"reward\"\n"
               "(`deepseek grpo`): reward, accuracy and format rate; KL; response length; entropy and\n"
               "clip fraction.\n");
}

enum { PLOT_SERIES = 9 };

typedef struct {
    const char *key, *title;
    int panel;               // 0-based panel of the multiplot
    char path[40];
    FILE *f;
    int n;
} plot_series;

// Reads every line once; each series gets the (step, value) pairs of its key.
static ds_status plot_read(const char *path, plot_series *s, int ns, int *grpo, ds_error *err) {
    char *text = NULL;
    size_t size = 0;
    ds_status st = file_read_all(path, &text, &size, err);
    if (st) return st;
    long line = 0;
    *grpo = 0;
    for (char *p = text, *end; st == DS_OK && p < text + size; p = end + 1) {
        end = memchr(p, '\n', (size_t)(text + size - p));
        if (!end) end = text + size;
        line++;
        if (end == p) continue;
        cJSON *o = cJSON_ParseWithLength(p, (size_t)(end - p));
        const cJSON *step = o ? cJSON_GetObjectItemCaseSensitive(o, "step") : NULL;
        if (!cJSON_IsObject(o) || !cJSON_IsNumber(step))
            st = ds_error_set(err, DS_ERR_FORMAT, "%s: line %ld: expected a JSON object with a numeric \"step\"", path, line);
        if (st == DS_OK && cJSON_GetObjectItemCaseSensitive(o, "reward")) *grpo = 1;
        for (int i = 0; st == DS_OK && i < ns; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, s[i].key);
            if (cJSON_IsNumber(v)) {
                fprintf(s[i].f, "%.17g %.9g\n", step->valuedouble, v->valuedouble);
                s[i].n++;
            }
        }
        cJSON_Delete(o);
    }
    free(text);
    return st;
}

// Runs gnuplot with the script on its stdin; the PNG goes to a temp name, renamed when whole.
static ds_status plot_draw(const char *out, const char *title, const plot_series *s, int ns, int n_panels,
                           const char *const *ylabels, ds_error *err) {
    size_t len = strlen(out) + 32;
    char *tmp = malloc(len);
    if (!tmp) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    snprintf(tmp, len, "%s.tmp.%ld", out, (long)getpid());
    FILE *gp = popen("gnuplot 2>&1", "w");
    if (!gp) { free(tmp); return ds_error_set(err, DS_ERR_IO, "cannot run gnuplot (install gnuplot-nox)"); }
    int multi = n_panels > 1;
    fprintf(gp, "set terminal pngcairo size %s font ',11'\nset output '%s'\n", multi ? "1200,800" : "960,540", tmp);
    fprintf(gp, "set grid\nset key top left\nset xlabel 'step'\n");
    if (multi) fprintf(gp, "set multiplot layout 2,2 title \"%s\" noenhanced\n", title);
    else fprintf(gp, "set title \"%s\" noenhanced\n", title);
    for (int panel = 0; panel < n_panels; panel++) {
        int any = 0;
        for (int i = 0; i < ns; i++) any |= s[i].panel == panel && s[i].n > 0;
        fprintf(gp, "set ylabel '%s'\n", ylabels[panel]);
        if (!any) { // keeps the layout: an empty panel says what is missing
            fprintf(gp, "set label 1 'no data' at graph 0.5,0.5 center\nplot [0:1] NaN notitle\nunset label 1\n");
            continue;
        }
        fprintf(gp, "plot ");
        int first = 1;
        for (int i = 0; i < ns; i++) {
            if (s[i].panel != panel || s[i].n == 0) continue;
            fprintf(gp, "%s'%s' using 1:2 with %s lw 2 title '%s'", first ? "" : ", ", s[i].path,
                    s[i].n < 30 ? "linespoints pt 7" : "lines", s[i].title);
            first = 0;
        }
        fprintf(gp, "\n");
    }
    if (multi) fprintf(gp, "unset multiplot\n");
    fprintf(gp, "set output\n");
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
    plot_series s[PLOT_SERIES] = {
        {"loss", "train", 0, "", NULL, 0},           {"val_loss", "validation", 0, "", NULL, 0},
        {"reward", "reward", 0, "", NULL, 0},        {"accuracy", "accuracy", 0, "", NULL, 0},
        {"format_rate", "format rate", 0, "", NULL, 0}, {"kl", "KL", 1, "", NULL, 0},
        {"response_length", "response length", 2, "", NULL, 0}, {"entropy", "entropy", 3, "", NULL, 0},
        {"clip_fraction", "clip fraction", 3, "", NULL, 0},
    };
    ds_error err = {{0}};
    ds_status st = DS_OK;
    int ns = PLOT_SERIES;
    for (int i = 0; i < ns && !st; i++) {
        snprintf(s[i].path, sizeof s[i].path, "/tmp/ds-plot-%d-XXXXXX", i);
        int fd = mkstemp(s[i].path);
        if (fd < 0 || !(s[i].f = fdopen(fd, "w"))) {
            if (fd >= 0) close(fd);
            s[i].path[0] = 0;
            st = ds_error_set(&err, DS_ERR_IO, "cannot create temporary files in /tmp");
        }
    }
    int grpo = 0;
    if (!st) st = plot_read(metrics, s, ns, &grpo, &err);
    for (int i = 0; i < ns; i++)
        if (s[i].f) fclose(s[i].f);
    int points = 0;
    for (int i = 0; i < ns; i++) points += grpo ? (i >= 2) * s[i].n : (i < 2) * s[i].n;
    if (!st && points == 0)
        st = ds_error_set(&err, DS_ERR_FORMAT, "%s: no \"loss\", \"val_loss\" or \"reward\" values to plot", metrics);
    if (!st) {
        if (grpo) {
            static const char *const labels[4] = {"reward / rate", "KL (k3)", "tokens", "nats / fraction"};
            st = plot_draw(out, safe_title, s + 2, ns - 2, 4, labels, &err);
        } else {
            static const char *const labels[1] = {"loss"};
            st = plot_draw(out, safe_title, s, 2, 1, labels, &err);
        }
    }
    for (int i = 0; i < ns; i++)
        if (s[i].path[0]) unlink(s[i].path);
    if (!st) fprintf(stderr, "plot: %d points -> %s\n", points, out);
    return st ? cli_fail("plot", st, &err) : 0;
}
