// Optimizer step, peak-FLOP measurement and resumable checkpoints (see trainer.h).
#include "train/trainer.h"

#include <cblas.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "io/fileutil.h"
#include "io/safetensors.h"

void train_state_free(train_state *s) {
    for (int i = 0; i < s->n_data; i++) free(s->data[i]);
    free(s->data);
    s->data = NULL;
    s->n_data = 0;
}

// ---- optimizer ---------------------------------------------------------------------------

// Fixed chunks summed in a fixed order, so the norm (and thus clipping) is bit-identical
// between runs whatever the thread count: resumed runs must reproduce uninterrupted ones.
#define NORM_CHUNK 65536
double trainer_grad_norm(const param_store *ps) {
    int64_t nc = (ps->n + NORM_CHUNK - 1) / NORM_CHUNK;
    double *part = malloc(sizeof(double) * (size_t)(nc ? nc : 1));
    if (!part) return sqrt(grad_sq_sum(ps->grads, ps->n));
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nc; c++) {
        int64_t a = c * NORM_CHUNK, b = a + NORM_CHUNK < ps->n ? a + NORM_CHUNK : ps->n;
        double s = 0;
        for (int64_t i = a; i < b; i++) s += (double)ps->grads[i] * ps->grads[i];
        part[c] = s;
    }
    double s = 0;
    for (int64_t c = 0; c < nc; c++) s += part[c];
    free(part);
    return sqrt(s);
}

static int tensor_is_trained(const ckpt_tensor *t) {
    return strcmp(t->source, t->name) == 0 && !strstr(t->name, "e_score_correction_bias");
}

void trainer_adamw(param_store *ps, const adamw_params *hp, int t, float lr, float grad_scale) {
    for (int i = 0; i < ps->list.n; i++) {
        const ckpt_tensor *ct = &ps->list.t[i];
        if (!tensor_is_trained(ct)) continue;
        int64_t o = ps->offset[i];
        adamw_update(ps->params + o, ps->grads + o, ps->m + o, ps->v + o, ckpt_tensor_numel(ct), hp, t, lr, grad_scale,
                     ct->ndim == 2);
    }
}

// ---- peak FLOP/s -------------------------------------------------------------------------

double trainer_peak_flops(void) {
    const char *env = getenv("DS_PEAK_GFLOPS"); // pins the MFU denominator across runs
    if (env && atof(env) > 0) return atof(env) * 1e9;
    const int n = 1536;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    if (!a || !b || !c) { free(a); free(b); free(c); return 0; }
    for (int i = 0; i < n * n; i++) { a[i] = (float)(i % 7) * 0.1f; b[i] = (float)(i % 5) * 0.1f; }
    double best = 1e30;
    // Best of several: on a shared VM single runs vary by 2x; the best is the machine's peak.
    for (int r = 0; r < 12; r++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        if (r > 0 && s < best) best = s; // the first run pays for thread start-up
    }
    free(a); free(b); free(c);
    return 2.0 * n * (double)n * n / best;
}

// ---- hashes ------------------------------------------------------------------------------

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

uint64_t trainer_hash_tokens(const int32_t *tok, int64_t n) {
    uint64_t h = FNV_OFFSET;
    for (int64_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)tok[i];
        for (int k = 0; k < 4; k++) { h ^= (v >> (8 * k)) & 0xff; h *= FNV_PRIME; }
    }
    return h;
}

static ds_status hash_file(const char *path, uint64_t *out, ds_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return ds_error_set(err, DS_ERR_IO, "%s: cannot open", path);
    uint64_t h = FNV_OFFSET;
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        for (size_t i = 0; i < n; i++) { h ^= buf[i]; h *= FNV_PRIME; }
    int bad = ferror(f);
    fclose(f);
    if (bad) return ds_error_set(err, DS_ERR_IO, "%s: read error", path);
    *out = h;
    return DS_OK;
}

// The files a checkpoint consists of (besides train_state.json and tokenizer files).
static int ckpt_file(const char *name) {
    size_t n = strlen(name);
    if (!strcmp(name, "config.json") || !strcmp(name, "model.safetensors.index.json") ||
        !strcmp(name, "optimizer.safetensors") || !strcmp(name, "model.safetensors"))
        return 1;
    return !strncmp(name, "model-", 6) && n > 12 && !strcmp(name + n - 12, ".safetensors");
}

// ---- settings <-> JSON ---------------------------------------------------------------------

static cJSON *settings_to_json(const train_settings *t) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "steps", t->steps);
    cJSON_AddNumberToObject(j, "seq_len", t->seq_len);
    cJSON_AddNumberToObject(j, "seqs_per_step", t->seqs_per_step);
    cJSON_AddNumberToObject(j, "micro_batch", t->micro_batch);
    cJSON_AddNumberToObject(j, "schedule", t->sched.kind);
    cJSON_AddNumberToObject(j, "lr", t->sched.lr_max);
    cJSON_AddNumberToObject(j, "min_lr", t->sched.lr_min);
    cJSON_AddNumberToObject(j, "warmup", t->sched.warmup);
    cJSON_AddNumberToObject(j, "total", t->sched.total);
    cJSON_AddNumberToObject(j, "decay_start", t->sched.decay_start);
    cJSON_AddNumberToObject(j, "decay_end", t->sched.decay_end);
    cJSON_AddNumberToObject(j, "final_start", t->sched.final_start);
    cJSON_AddNumberToObject(j, "lr_final", t->sched.lr_final);
    cJSON_AddNumberToObject(j, "beta1", t->adamw.beta1);
    cJSON_AddNumberToObject(j, "beta2", t->adamw.beta2);
    cJSON_AddNumberToObject(j, "eps", t->adamw.eps);
    cJSON_AddNumberToObject(j, "weight_decay", t->adamw.weight_decay);
    cJSON_AddNumberToObject(j, "clip", t->clip);
    cJSON_AddNumberToObject(j, "mtp_weight", t->mtp_weight);
    cJSON_AddNumberToObject(j, "balance_alpha", t->balance_alpha);
    cJSON_AddNumberToObject(j, "bias_gamma", t->bias_gamma);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)t->seed);
    cJSON_AddStringToObject(j, "seed", seed);
    cJSON_AddNumberToObject(j, "val_frac", t->val_frac);
    cJSON_AddNumberToObject(j, "val_every", t->val_every);
    cJSON_AddNumberToObject(j, "val_seqs", t->val_seqs);
    cJSON_AddNumberToObject(j, "save_every", t->save_every);
    cJSON_AddStringToObject(j, "save_dtype", ds_dtype_name(t->save_dtype));
    return j;
}

typedef struct { const cJSON *o; const char *path; ds_error *err; ds_status st; } json_reader;

static double jr_num(json_reader *r, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->o, key);
    if (r->st == DS_OK && !cJSON_IsNumber(v))
        r->st = ds_error_set(r->err, DS_ERR_FORMAT, "%s: key '%s': expected a number", r->path, key);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static const char *jr_str(json_reader *r, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->o, key);
    if (r->st == DS_OK && !cJSON_IsString(v))
        r->st = ds_error_set(r->err, DS_ERR_FORMAT, "%s: key '%s': expected a string", r->path, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static void settings_from_json(json_reader *r, train_settings *t) {
    t->steps = (int)jr_num(r, "steps");
    t->seq_len = (int)jr_num(r, "seq_len");
    t->seqs_per_step = (int)jr_num(r, "seqs_per_step");
    t->micro_batch = (int)jr_num(r, "micro_batch");
    t->sched.kind = (lr_schedule_kind)(int)jr_num(r, "schedule");
    t->sched.lr_max = (float)jr_num(r, "lr");
    t->sched.lr_min = (float)jr_num(r, "min_lr");
    t->sched.warmup = (int)jr_num(r, "warmup");
    t->sched.total = (int)jr_num(r, "total");
    t->sched.decay_start = (float)jr_num(r, "decay_start");
    t->sched.decay_end = (float)jr_num(r, "decay_end");
    t->sched.final_start = (float)jr_num(r, "final_start");
    t->sched.lr_final = (float)jr_num(r, "lr_final");
    t->adamw.beta1 = (float)jr_num(r, "beta1");
    t->adamw.beta2 = (float)jr_num(r, "beta2");
    t->adamw.eps = (float)jr_num(r, "eps");
    t->adamw.weight_decay = (float)jr_num(r, "weight_decay");
    t->clip = (float)jr_num(r, "clip");
    t->mtp_weight = (float)jr_num(r, "mtp_weight");
    t->balance_alpha = (float)jr_num(r, "balance_alpha");
    t->bias_gamma = (float)jr_num(r, "bias_gamma");
    t->seed = strtoull(jr_str(r, "seed"), NULL, 10);
    t->val_frac = (float)jr_num(r, "val_frac");
    t->val_every = (int)jr_num(r, "val_every");
    t->val_seqs = (int)jr_num(r, "val_seqs");
    t->save_every = (int)jr_num(r, "save_every");
    const char *dt = jr_str(r, "save_dtype");
    t->save_dtype = !strcmp(dt, "BF16") ? DS_BF16 : DS_F32;
    if (r->st == DS_OK && (t->steps < 0 || t->seq_len < 2 || t->seqs_per_step < 1 || t->micro_batch < 1 ||
                           t->sched.kind < LR_CONSTANT || t->sched.kind > LR_V3))
        r->st = ds_error_set(r->err, DS_ERR_FORMAT, "%s: settings out of range", r->path);
}

// ---- save / load -------------------------------------------------------------------------

static ds_status copy_file(const char *from_dir, const char *to_dir, const char *name, ds_error *err) {
    char *src = file_join(from_dir, name), *dst = file_join(to_dir, name), *data = NULL;
    size_t size = 0;
    ds_status st = DS_OK;
    if (!src || !dst) st = ds_error_set(err, DS_ERR_OOM, "out of memory");
    FILE *probe = st ? NULL : fopen(src, "rb");
    if (probe) {
        fclose(probe);
        st = file_read_all(src, &data, &size, err);
        if (!st) st = file_write_atomic(dst, data, size, err);
    }
    free(src); free(dst); free(data);
    return st;
}

ds_status trainer_save_model(const param_store *ps, const char *dir, ds_dtype dtype, const char *tok_dir,
                             ds_error *err) {
    ds_status st = file_mkdirs(dir, err);
    if (!st) st = params_save(ps, dir, dtype, NULL, err);
    if (!st && tok_dir && strcmp(tok_dir, dir) != 0) {
        st = copy_file(tok_dir, dir, "tokenizer.json", err);
        if (!st) st = copy_file(tok_dir, dir, "tokenizer_config.json", err);
    }
    return st;
}

ds_status trainer_save(const param_store *ps, const train_state *s, const char *dir, const char *tok_dir,
                       ds_error *err) {
    ds_status st = file_mkdirs(dir, err);
    if (st) return st;
    // Optimizer first and train_state.json last: a save cut short leaves a train_state.json
    // whose hashes no longer match, which trainer_load reports instead of resuming from.
    st_write_item items[3];
    int n = 0;
    items[n++] = (st_write_item){.name = "m", .dtype = DS_F32, .ndim = 1, .shape = {ps->n}, .data = ps->m};
    items[n++] = (st_write_item){.name = "v", .dtype = DS_F32, .ndim = 1, .shape = {ps->n}, .data = ps->v};
    if (s->set.save_dtype != DS_F32)
        items[n++] = (st_write_item){.name = "params", .dtype = DS_F32, .ndim = 1, .shape = {ps->n}, .data = ps->params};
    char *opt = file_join(dir, "optimizer.safetensors");
    st = opt ? st_file_write(opt, items, n, err) : ds_error_set(err, DS_ERR_OOM, "out of memory");
    free(opt);
    if (!st) st = params_save(ps, dir, s->set.save_dtype, NULL, err);
    if (!st && tok_dir && strcmp(tok_dir, dir) != 0) {
        st = copy_file(tok_dir, dir, "tokenizer.json", err);
        if (!st) st = copy_file(tok_dir, dir, "tokenizer_config.json", err);
    }
    if (st) return st;

    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", "deepseek.c train_state 1");
    cJSON_AddNumberToObject(j, "step", s->step);
    cJSON_AddNumberToObject(j, "epoch", s->epoch);
    cJSON_AddNumberToObject(j, "cursor", (double)s->cursor);
    cJSON_AddItemToObject(j, "settings", settings_to_json(&s->set));
    cJSON *data = cJSON_AddArrayToObject(j, "data");
    for (int i = 0; i < s->n_data; i++) cJSON_AddItemToArray(data, cJSON_CreateString(s->data[i]));
    cJSON_AddNumberToObject(j, "data_tokens", (double)s->data_tokens);
    char hex[32];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)s->data_hash);
    cJSON_AddStringToObject(j, "data_hash", hex);
    cJSON *files = cJSON_AddObjectToObject(j, "files");
    DIR *d = opendir(dir);
    if (!d) st = ds_error_set(err, DS_ERR_IO, "%s: cannot list the folder", dir);
    for (struct dirent *e; !st && (e = readdir(d));) {
        if (!ckpt_file(e->d_name)) continue;
        char *p = file_join(dir, e->d_name);
        uint64_t h = 0;
        st = p ? hash_file(p, &h, err) : ds_error_set(err, DS_ERR_OOM, "out of memory");
        free(p);
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
        cJSON_AddStringToObject(files, e->d_name, hex);
    }
    if (d) closedir(d);
    char *text = st ? NULL : cJSON_Print(j);
    char *path = file_join(dir, "train_state.json");
    if (!st) st = text && path ? file_write_atomic(path, text, strlen(text), err) : ds_error_set(err, DS_ERR_OOM, "out of memory");
    free(text); free(path);
    cJSON_Delete(j);
    return st;
}

static ds_status state_parse(train_state *s, const char *dir, const char *path, cJSON *j, ds_error *err) {
    json_reader r = {j, path, err, DS_OK};
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(j, "format");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "deepseek.c train_state 1") != 0)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: not a deepseek.c train_state (format key)", path);
    s->step = (int)jr_num(&r, "step");
    s->epoch = (int)jr_num(&r, "epoch");
    s->cursor = (int64_t)jr_num(&r, "cursor");
    s->data_tokens = (int64_t)jr_num(&r, "data_tokens");
    s->data_hash = strtoull(jr_str(&r, "data_hash"), NULL, 16);
    if (r.st) return r.st;
    json_reader rs = {cJSON_GetObjectItemCaseSensitive(j, "settings"), path, err, DS_OK};
    if (!cJSON_IsObject(rs.o)) return ds_error_set(err, DS_ERR_FORMAT, "%s: key 'settings': expected an object", path);
    settings_from_json(&rs, &s->set);
    if (rs.st) return rs.st;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data"), *it;
    if (!cJSON_IsArray(data)) return ds_error_set(err, DS_ERR_FORMAT, "%s: key 'data': expected an array", path);
    s->data = calloc((size_t)cJSON_GetArraySize(data) + 1, sizeof(char *));
    if (!s->data) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    cJSON_ArrayForEach(it, data) {
        if (!cJSON_IsString(it)) return ds_error_set(err, DS_ERR_FORMAT, "%s: key 'data': expected strings", path);
        if (!(s->data[s->n_data++] = strdup(it->valuestring))) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    }
    if (s->step < 0 || s->epoch < 0 || s->cursor < 0)
        return ds_error_set(err, DS_ERR_FORMAT, "%s: negative step, epoch or cursor", path);
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(j, "files");
    if (!cJSON_IsObject(files) || !cJSON_GetObjectItemCaseSensitive(files, "optimizer.safetensors"))
        return ds_error_set(err, DS_ERR_FORMAT, "%s: key 'files' lacks optimizer.safetensors", path);
    cJSON_ArrayForEach(it, files) {
        if (!cJSON_IsString(it)) return ds_error_set(err, DS_ERR_FORMAT, "%s: key 'files': expected hex strings", path);
        char *p = file_join(dir, it->string);
        uint64_t h = 0;
        ds_status st = p ? hash_file(p, &h, err) : ds_error_set(err, DS_ERR_OOM, "out of memory");
        free(p);
        if (st) return st;
        if (h != strtoull(it->valuestring, NULL, 16))
            return ds_error_set(err, DS_ERR_FORMAT,
                                "%s: %s changed after the checkpoint was written (an interrupted save?); not resuming from it",
                                dir, it->string);
    }
    return DS_OK;
}

ds_status trainer_load(param_store *ps, train_state *s, const char *dir, ds_error *err) {
    memset(s, 0, sizeof *s);
    char *path = file_join(dir, "train_state.json"), *text = NULL;
    size_t size = 0;
    ds_status st = path ? file_read_all(path, &text, &size, err) : ds_error_set(err, DS_ERR_OOM, "out of memory");
    cJSON *j = st ? NULL : cJSON_ParseWithLength(text, size);
    if (!st && !j) st = ds_error_set(err, DS_ERR_FORMAT, "%s: invalid JSON", path);
    if (!st) st = state_parse(s, dir, path, j, err);
    cJSON_Delete(j);
    free(text);
    free(path);
    if (!st) st = params_load(ps, dir, err);
    if (st) { train_state_free(s); return st; }

    char *opt = file_join(dir, "optimizer.safetensors");
    st_file f;
    st = opt ? st_file_open(&f, opt, err) : ds_error_set(err, DS_ERR_OOM, "out of memory");
    if (!st) {
        const char *names[3] = {"m", "v", "params"};
        float *dst[3] = {ps->m, ps->v, ps->params};
        for (int k = 0; !st && k < 3; k++) {
            st_entry *e = st_file_find(&f, names[k]);
            if (!e && k == 2) {
                if (s->set.save_dtype != DS_F32)
                    st = ds_error_set(err, DS_ERR_FORMAT, "%s: no f32 'params' next to a BF16 model", opt);
                break;
            }
            if (!e || e->dtype != DS_F32 || e->ndim != 1 || e->shape[0] != ps->n)
                st = ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s' missing or not F32 [%lld]", opt, names[k],
                                  (long long)ps->n);
            else memcpy(dst[k], e->data, sizeof(float) * (size_t)ps->n);
        }
        st_file_close(&f);
    }
    free(opt);
    if (st) { params_free(ps); train_state_free(s); }
    return st;
}
