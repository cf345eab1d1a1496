#include "train/params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/init.h"
#include "model/model.h"

// Lays out the slabs: owners get consecutive ranges, copies share their source's.
static ds_status params_layout(param_store *ps, const ds_config *c, ds_error *err) {
    memset(ps, 0, sizeof *ps);
    ps->cfg = *c;
    if (!ckpt_list_build(&ps->list, c, DS_F32, DS_F32)) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    ps->offset = malloc((size_t)(ps->list.n ? ps->list.n : 1) * sizeof *ps->offset);
    if (!ps->offset) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    for (int i = 0; i < ps->list.n; i++) {
        const ckpt_tensor *t = &ps->list.t[i];
        int src = strcmp(t->source, t->name) ? params_find(ps, t->source) : -1;
        if (src >= 0 && src < i) {
            ps->offset[i] = ps->offset[src];
        } else {
            ps->offset[i] = ps->n;
            ps->n += (ckpt_tensor_numel(t) + 15) & ~(int64_t)15; // 64-byte aligned views
        }
    }
    size_t bytes = (size_t)ps->n * sizeof(float);
    ps->params = aligned_alloc(64, bytes ? bytes : 64);
    ps->grads = aligned_alloc(64, bytes ? bytes : 64);
    ps->m = aligned_alloc(64, bytes ? bytes : 64);
    ps->v = aligned_alloc(64, bytes ? bytes : 64);
    if (!ps->params || !ps->grads || !ps->m || !ps->v)
        return ds_error_set(err, DS_ERR_OOM, "out of memory: %lld parameters need %.1f GiB with gradients and AdamW state",
                            (long long)ps->n, 16.0 * (double)ps->n / (1 << 30));
    memset(ps->params, 0, bytes);
    memset(ps->grads, 0, bytes);
    memset(ps->m, 0, bytes);
    memset(ps->v, 0, bytes);
    return DS_OK;
}

int params_find(const param_store *ps, const char *name) {
    for (int i = 0; i < ps->list.n; i++)
        if (strcmp(ps->list.t[i].name, name) == 0) return i;
    return -1;
}

void params_free(param_store *ps) {
    ckpt_list_free(&ps->list);
    free(ps->offset);
    free(ps->params); free(ps->grads); free(ps->m); free(ps->v);
    memset(ps, 0, sizeof *ps);
}

ds_status params_init_random(param_store *ps, const ds_config *c, uint64_t seed, ds_error *err) {
    ds_status st = params_layout(ps, c, err);
    for (int i = 0; st == DS_OK && i < ps->list.n; i++)
        ds_init_fill_tensor(&ps->list.t[i], seed, 0, params_data(ps, i));
    if (st) params_free(ps);
    return st;
}

ds_status params_load(param_store *ps, const char *dir, ds_error *err) {
    ds_model m;
    ds_status st = ds_model_load(&m, dir, err); // validates every tensor against config.json
    if (st) return st;
    st = params_layout(ps, &m.cfg, err);
    for (int i = 0; st == DS_OK && i < ps->list.n; i++) {
        const ckpt_tensor *t = &ps->list.t[i];
        const char *file;
        st_entry *e = model_dir_find(&m.files, t->name, &file);
        if (!e) {
            // absent MTP copies fall back to the shared main tensor, as the loader does
            if (strcmp(t->source, t->name) != 0) continue;
            st = ds_error_set(err, DS_ERR_FORMAT, "%s: missing tensor '%s'", dir, t->name);
            break;
        }
        ds_tensor view = {.dtype = e->dtype, .ndim = t->ndim, .shape = {t->shape[0], t->shape[1]}, .data = e->data};
        if (e->dtype == DS_F8_E4M3) {
            char sname[220];
            snprintf(sname, sizeof sname, "%s_scale_inv", t->name);
            st_entry *se = model_dir_find(&m.files, sname, NULL);
            int64_t ns = ((t->shape[0] + 127) / 128) * ((t->shape[1] + 127) / 128);
            float *scale = se ? malloc((size_t)ns * sizeof(float)) : NULL;
            if (!scale) { st = ds_error_set(err, DS_ERR_FORMAT, "%s: no '%s'", file, sname); break; }
            ds_tensor sv = {.dtype = se->dtype, .ndim = 1, .shape = {ns}, .data = se->data};
            ds_tensor_row_to_f32(&sv, 0, scale);
            view.scale = scale;
            ds_tensor_rows_to_f32(&view, 0, t->shape[0], params_data(ps, i));
            free(scale);
        } else if (t->ndim == 1) {
            ds_tensor_row_to_f32(&view, 0, params_data(ps, i));
        } else {
            ds_tensor_rows_to_f32(&view, 0, t->shape[0], params_data(ps, i));
        }
    }
    ds_model_free(&m);
    if (st) params_free(ps);
    return st;
}

// The save list is built by the same code as ps->list, so tensor i is the same in both.
typedef struct {
    const param_store *ps;
    const ckpt_tensor *base;
} params_saver;

static void params_fill_saved(void *ctx, const ckpt_tensor *t, float *out) {
    const params_saver *sv = ctx;
    memcpy(out, params_data(sv->ps, (int)(t - sv->base)), (size_t)ckpt_tensor_numel(t) * sizeof(float));
}

ds_status params_save(const param_store *ps, const char *dir, ds_dtype dtype, volatile int *cancel, ds_error *err) {
    if (dtype != DS_F32 && dtype != DS_BF16)
        return ds_error_set(err, DS_ERR_ARG, "training checkpoints are written as F32 or BF16, not %s", ds_dtype_name(dtype));
    ckpt_list l;
    if (!ckpt_list_build(&l, &ps->cfg, dtype, dtype)) { ckpt_list_free(&l); return ds_error_set(err, DS_ERR_OOM, "out of memory"); }
    ckpt_write_opts o = {.cancel = cancel};
    params_saver sv = {ps, l.t};
    ds_status st = ckpt_write(&ps->cfg, &l, params_fill_saved, &sv, &o, dir, err);
    ckpt_list_free(&l);
    return st;
}

ds_status params_model_view(const param_store *ps, ds_model *m, ds_error *err) {
    const ckpt_list *l = &ps->list;
    st_entry *e = calloc((size_t)l->n, sizeof *e);
    if (!e) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    for (int i = 0; i < l->n; i++) {
        const ckpt_tensor *t = &l->t[i];
        int64_t numel = ckpt_tensor_numel(t);
        e[i].name = (char *)t->name; // copied by model_dir_from_memory
        e[i].dtype = DS_F32;
        e[i].ndim = t->ndim;
        for (int d = 0; d < t->ndim; d++) e[i].shape[d] = t->shape[d];
        e[i].begin = (uint64_t)ps->offset[i] * sizeof(float);
        e[i].end = e[i].begin + (uint64_t)numel * sizeof(float);
        e[i].data = (const uint8_t *)(ps->params + ps->offset[i]);
    }
    model_dir md;
    ds_status st = model_dir_from_memory(&md, "(training weights)", e, l->n, err);
    free(e);
    if (st) return st;
    return ds_model_bind(m, &ps->cfg, &md, err);
}
