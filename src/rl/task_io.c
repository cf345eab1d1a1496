// Problems as JSONL: the writer of `deepseek tasks` and the reader `deepseek eval` / `grpo` use.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fileutil.h"
#include "rl/task.h"
#include "rl/task_internal.h"

// ---- writing ----

static cJSON *task_to_json(const task_problem *p, const char *trace) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    bool ok = cJSON_AddStringToObject(o, "task", task_kind_name(p->kind)) &&
              cJSON_AddStringToObject(o, "difficulty", p->difficulty ? p->difficulty : "custom") &&
              cJSON_AddStringToObject(o, "prompt", p->prompt ? p->prompt : "");
    if (ok && p->kind == TASK_ARITHMETIC) ok = cJSON_AddStringToObject(o, "answer", p->answer ? p->answer : "");
    if (ok && p->kind == TASK_COUNTDOWN) {
        cJSON *a = cJSON_AddArrayToObject(o, "numbers");
        for (int i = 0; a && ok && i < p->n_numbers; i++) {
            cJSON *v = cJSON_CreateNumber((double)p->numbers[i]);
            ok = v && cJSON_AddItemToArray(a, v);
        }
        ok = ok && a && cJSON_AddNumberToObject(o, "target", (double)p->target);
    }
    ok = ok && cJSON_AddStringToObject(o, "split", task_split_name(p->split));
    if (ok && trace) { // each item is attached as soon as it exists, so deleting o frees all
        cJSON *m = cJSON_AddArrayToObject(o, "messages"), *u = m ? cJSON_CreateObject() : NULL, *as = NULL;
        if (u) cJSON_AddItemToArray(m, u);
        if (u && (as = cJSON_CreateObject())) cJSON_AddItemToArray(m, as);
        ok = as && cJSON_AddStringToObject(u, "role", "user") && cJSON_AddStringToObject(u, "content", p->prompt) &&
             cJSON_AddStringToObject(as, "role", "assistant") && cJSON_AddStringToObject(as, "content", trace);
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

ds_status task_write_jsonl(const char *path, const task_problem *ps, int n, bool traces, task_cd_trace cd_style,
                           ds_error *err) {
    file_atomic w;
    ds_status st = file_atomic_open(&w, path, err);
    for (int i = 0; !st && i < n; i++) {
        char *trace = NULL, *line = NULL;
        if (traces) st = task_trace(&ps[i], cd_style, &trace, err);
        cJSON *o = st ? NULL : task_to_json(&ps[i], trace);
        if (!st && !(o && (line = cJSON_PrintUnformatted(o)))) st = ds_error_set(err, DS_ERR_OOM, "%s: out of memory", path);
        if (!st) st = file_atomic_write(&w, line, strlen(line), err);
        if (!st) st = file_atomic_write(&w, "\n", 1, err);
        free(line);
        cJSON_Delete(o);
        free(trace);
        if (st && w.fp) file_atomic_abort(&w);
    }
    if (!st) st = file_atomic_commit(&w, err);
    return st;
}

// ---- reading ----

// A canonical integer literal: optional '-', digits, no leading zeros, not "-0".
static bool task_is_int_literal(const char *s) {
    const char *d = s + (*s == '-');
    size_t n = strspn(d, "0123456789");
    return n > 0 && !d[n] && !(d[0] == '0' && (n > 1 || d != s));
}

// A JSON number that is an exact integer in [-lim, lim].
static bool task_json_int(const cJSON *v, double lim, int64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double x = v->valuedouble;
    if (!isfinite(x) || floor(x) != x || fabs(x) > lim) return false;
    *out = (int64_t)x;
    return true;
}

// "What is A op B?" with A, B canonical and of at most 18 digits: the operands of a loaded
// problem, so it gets a trace and its answer is checked.
static bool task_parse_arith_prompt(const char *s, task_problem *p) {
    static const char head[] = "What is ";
    if (strncmp(s, head, sizeof head - 1) != 0) return false;
    s += sizeof head - 1;
    uint64_t v[2] = {0, 0};
    char op = 0;
    for (int k = 0; k < 2; k++) {
        size_t n = strspn(s, "0123456789");
        if (n == 0 || n > TASK_MAX_DIGITS || (s[0] == '0' && n > 1)) return false;
        for (size_t i = 0; i < n; i++) v[k] = v[k] * 10 + (uint64_t)(s[i] - '0');
        s += n;
        if (k == 0) {
            if (s[0] != ' ' || !strchr("+-*", s[1]) || !s[1] || s[2] != ' ') return false;
            op = s[1];
            s += 3;
        }
    }
    if (strcmp(s, "?") != 0) return false;
    p->op = op;
    p->a = v[0];
    p->b = v[1];
    return true;
}

static ds_status task_line_error(ds_error *err, const char *path, int line, const char *fmt, const char *key) {
    char why[256];
    snprintf(why, sizeof why, fmt, key);
    return ds_error_set(err, DS_ERR_FORMAT, "%s:%d: %s", path, line, why);
}

static ds_status task_read_arith(const cJSON *o, task_problem *p, const char *path, int line, ds_error *err) {
    const cJSON *ans = cJSON_GetObjectItemCaseSensitive(o, "answer");
    char buf[48];
    int64_t iv;
    if (!ans) return task_line_error(err, path, line, "missing key '%s'", "answer");
    if (cJSON_IsString(ans) && task_is_int_literal(ans->valuestring)) p->answer = strdup(ans->valuestring);
    else if (task_json_int(ans, 9007199254740992.0, &iv)) {
        snprintf(buf, sizeof buf, "%lld", (long long)iv);
        p->answer = strdup(buf);
    } else
        return task_line_error(err, path, line, "key '%s': expected an integer (a number or a string like \"-12\")",
                               "answer");
    if (!p->answer) return ds_error_set(err, DS_ERR_OOM, "%s:%d: out of memory", path, line);
    if (task_parse_arith_prompt(p->prompt, p)) {
        // A wrong hand-written answer would teach and reward the wrong thing: refuse it.
        task_arith_answer_str(p, buf);
        if (strcmp(buf, p->answer) != 0)
            return ds_error_set(err, DS_ERR_FORMAT, "%s:%d: key 'answer': %s, but the prompt's %llu %c %llu is %s", path,
                                line, p->answer, (unsigned long long)p->a, p->op, (unsigned long long)p->b, buf);
    }
    return DS_OK;
}

static ds_status task_read_countdown(const cJSON *o, task_problem *p, const char *path, int line, ds_error *err) {
    const cJSON *nums = cJSON_GetObjectItemCaseSensitive(o, "numbers"), *t = cJSON_GetObjectItemCaseSensitive(o, "target");
    if (!nums) return task_line_error(err, path, line, "missing key '%s'", "numbers");
    if (!t) return task_line_error(err, path, line, "missing key '%s'", "target");
    int n = cJSON_IsArray(nums) ? cJSON_GetArraySize(nums) : 0;
    if (n < 1 || n > TASK_CD_MAX_NUMBERS)
        return task_line_error(err, path, line, "key '%s': expected an array of 1-6 integers", "numbers");
    const cJSON *v;
    cJSON_ArrayForEach(v, nums) {
        if (!task_json_int(v, TASK_CD_MAX_VALUE, &p->numbers[p->n_numbers]) || p->numbers[p->n_numbers] < 1)
            return task_line_error(err, path, line, "key '%s': expected integers 1-1000000", "numbers");
        p->n_numbers++;
    }
    if (!task_json_int(t, 1e12, &p->target))
        return task_line_error(err, path, line, "key '%s': expected an integer of at most 10^12 in magnitude", "target");
    return DS_OK;
}

static ds_status task_read_line(const char *text, size_t len, task_problem *p, const char *path, int line, ds_error *err) {
    cJSON *o = cJSON_ParseWithLength(text, len);
    ds_status st = DS_OK;
    const cJSON *k, *pr, *d, *sp;
    if (!cJSON_IsObject(o)) st = ds_error_set(err, DS_ERR_FORMAT, "%s:%d: not a JSON object", path, line);
    else if (!(k = cJSON_GetObjectItemCaseSensitive(o, "task")))
        st = task_line_error(err, path, line, "missing key '%s'", "task");
    else if (!cJSON_IsString(k) || !task_kind_parse(k->valuestring, &p->kind))
        st = task_line_error(err, path, line, "key '%s': expected \"arithmetic\" or \"countdown\"", "task");
    else if (!(pr = cJSON_GetObjectItemCaseSensitive(o, "prompt")))
        st = task_line_error(err, path, line, "missing key '%s'", "prompt");
    else if (!cJSON_IsString(pr) || !pr->valuestring[0])
        st = task_line_error(err, path, line, "key '%s': expected a non-empty string", "prompt");
    else if ((d = cJSON_GetObjectItemCaseSensitive(o, "difficulty")) && !(cJSON_IsString(d) && d->valuestring[0]))
        st = task_line_error(err, path, line, "key '%s': expected a non-empty string", "difficulty");
    else if ((sp = cJSON_GetObjectItemCaseSensitive(o, "split")) &&
             !(cJSON_IsString(sp) && task_split_parse(sp->valuestring, &p->split)))
        st = task_line_error(err, path, line, "key '%s': expected \"train\" or \"eval\"", "split");
    else {
        p->prompt = strdup(pr->valuestring);
        p->difficulty = strdup(d ? d->valuestring : "custom");
        if (!p->prompt || !p->difficulty) st = ds_error_set(err, DS_ERR_OOM, "%s:%d: out of memory", path, line);
        else if (p->kind == TASK_ARITHMETIC) st = task_read_arith(o, p, path, line, err);
        else st = task_read_countdown(o, p, path, line, err);
        if (!st && !sp) p->split = task_split_of(p);
    }
    cJSON_Delete(o);
    return st;
}

ds_status task_load_jsonl(const char *path, task_problem **out, int *n, ds_error *err) {
    *out = NULL;
    *n = 0;
    char *data;
    size_t size;
    ds_status st = file_read_all(path, &data, &size, err);
    if (st) return st;
    task_problem *ps = NULL;
    int count = 0, cap = 0, line = 0;
    for (const char *s = data, *end = data + size; !st && s < end; line++) {
        const char *e = memchr(s, '\n', (size_t)(end - s));
        if (!e) e = end;
        const char *next = e < end ? e + 1 : end;
        size_t len = (size_t)(e - s);
        if (len && s[len - 1] == '\r') len--;
        if (strspn(s, " \t\r") >= len) { // blank line
            s = next;
            continue;
        }
        if (count == cap) {
            int ncap = cap ? cap * 2 : 64;
            task_problem *np = ncap > cap ? realloc(ps, (size_t)ncap * sizeof *ps) : NULL;
            if (!np) {
                st = ds_error_set(err, DS_ERR_OOM, "%s: out of memory", path);
                break;
            }
            ps = np;
            cap = ncap;
        }
        ps[count] = (task_problem){0};
        st = task_read_line(s, len, &ps[count], path, line + 1, err);
        if (st) task_problem_free(&ps[count]);
        else count++;
        s = next;
    }
    free(data);
    if (!st && count == 0) st = ds_error_set(err, DS_ERR_FORMAT, "%s: no problems in the file", path);
    if (st) {
        task_problems_free(ps, count);
        return st;
    }
    *out = ps;
    *n = count;
    return DS_OK;
}
