// A model folder's weights: one file or index + shards, checked against each other, with one
// hash table over every tensor name (V3 has ~92K tensors in 163 shards).
#include "io/model_dir.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/fileutil.h"

static uint64_t md_hash(const char *s) {
    uint64_t h = 1469598103934665603ULL; // FNV-1a
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

static struct md_slot *md_lookup(const model_dir *md, const char *name) {
    if (!md->table_cap) return NULL;
    uint64_t mask = (uint64_t)md->table_cap - 1;
    for (uint64_t i = md_hash(name) & mask;; i = (i + 1) & mask) {
        struct md_slot *s = &md->table[i];
        if (!s->e || strcmp(s->e->name, name) == 0) return s;
    }
}

static ds_status md_build_table(model_dir *md, ds_error *err) {
    int n = 0;
    for (int f = 0; f < md->n_files; f++) n += md->files[f].n;
    int cap = 16;
    while (cap < 2 * n) cap *= 2;
    md->table = calloc((size_t)cap, sizeof *md->table);
    if (!md->table) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    md->table_cap = cap;
    for (int f = 0; f < md->n_files; f++)
        for (int i = 0; i < md->files[f].n; i++) {
            st_entry *e = &md->files[f].entries[i];
            struct md_slot *s = md_lookup(md, e->name);
            if (s->e)
                return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s' is also in %s", md->files[f].path, e->name,
                                    md->files[s->file].path);
            s->e = e;
            s->file = f;
            md->n_tensors++;
        }
    return DS_OK;
}

static ds_status md_open_file(model_dir *md, const char *name, ds_error *err) {
    char *path = file_join(md->dir, name);
    if (!path) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    ds_status st = st_file_open(&md->files[md->n_files], path, err);
    free(path);
    if (st == DS_OK) md->n_files++;
    return st;
}

// Shard names must stay inside the folder.
static int md_plain_name(const char *s) {
    return *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static ds_status md_open_index(model_dir *md, const char *index_path, ds_error *err) {
    char *text = NULL;
    size_t size = 0;
    ds_status st = file_read_all(index_path, &text, &size, err);
    if (st) return st;
    cJSON *root = cJSON_ParseWithLength(text, size);
    free(text);
    if (!root) return ds_error_set(err, DS_ERR_FORMAT, "%s: invalid JSON", index_path);
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(root);
        return ds_error_set(err, DS_ERR_FORMAT, "%s: \"weight_map\" must be an object", index_path);
    }
    int n = cJSON_GetArraySize(map);
    const char **names = calloc((size_t)(n ? n : 1), sizeof *names);
    md->files = calloc((size_t)(n ? n : 1), sizeof *md->files);
    if (!names || !md->files) st = ds_error_set(err, DS_ERR_OOM, "out of memory");
    int n_names = 0;
    for (const cJSON *it = map->child; it && st == DS_OK; it = it->next) {
        if (!cJSON_IsString(it) || !md_plain_name(it->valuestring)) {
            st = ds_error_set(err, DS_ERR_FORMAT, "%s: weight_map entry '%s' must name a file in the folder", index_path,
                              it->string ? it->string : "?");
            break;
        }
        int k = 0;
        while (k < n_names && strcmp(names[k], it->valuestring) != 0) k++;
        if (k == n_names) names[n_names++] = it->valuestring;
    }
    for (int k = 0; k < n_names && st == DS_OK; k++) st = md_open_file(md, names[k], err);
    if (st == DS_OK) st = md_build_table(md, err);
    // Every listed tensor is in its file, and every tensor in a file is listed for that file.
    int listed = 0;
    for (const cJSON *it = map->child; it && st == DS_OK; it = it->next, listed++) {
        struct md_slot *s = md_lookup(md, it->string);
        if (!s->e) {
            st = ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s' listed in the index is not in %s", md->dir, it->string,
                              it->valuestring);
        } else {
            const char *file = md->files[s->file].path;
            const char *base = strrchr(file, '/');
            if (strcmp(base ? base + 1 : file, it->valuestring) != 0)
                st = ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s' is in %s but the index says %s", md->dir, it->string,
                                  file, it->valuestring);
        }
    }
    if (st == DS_OK && listed != md->n_tensors) {
        for (int f = 0; f < md->n_files && st == DS_OK; f++)
            for (int i = 0; i < md->files[f].n; i++)
                if (!cJSON_GetObjectItemCaseSensitive(map, md->files[f].entries[i].name)) {
                    st = ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s' is not listed in model.safetensors.index.json",
                                      md->files[f].path, md->files[f].entries[i].name);
                    break;
                }
    }
    free(names);
    cJSON_Delete(root);
    return st;
}

ds_status model_dir_open(model_dir *md, const char *dir, ds_error *err) {
    memset(md, 0, sizeof *md);
    md->dir = strdup(dir);
    char *index = file_join(dir, "model.safetensors.index.json");
    char *single = file_join(dir, "model.safetensors");
    ds_status st = DS_OK;
    if (!md->dir || !index || !single) st = ds_error_set(err, DS_ERR_OOM, "out of memory");
    else if (access(index, F_OK) == 0) st = md_open_index(md, index, err);
    else if (access(single, F_OK) == 0) {
        md->files = calloc(1, sizeof *md->files);
        st = md->files ? md_open_file(md, "model.safetensors", err) : ds_error_set(err, DS_ERR_OOM, "out of memory");
        if (st == DS_OK) st = md_build_table(md, err);
    } else
        st = ds_error_set(err, DS_ERR_IO, "%s: no model.safetensors or model.safetensors.index.json", dir);
    free(index);
    free(single);
    if (st) model_dir_close(md);
    return st;
}

void model_dir_close(model_dir *md) {
    for (int f = 0; f < md->n_files; f++) st_file_close(&md->files[f]);
    free(md->files);
    free(md->table);
    free(md->dir);
    memset(md, 0, sizeof *md);
}

st_entry *model_dir_find(const model_dir *md, const char *name, const char **file_path) {
    struct md_slot *s = md_lookup(md, name);
    if (!s || !s->e) return NULL;
    if (file_path) *file_path = md->files[s->file].path;
    return s->e;
}

st_entry *model_dir_first_unused(const model_dir *md, const char **file_path) {
    for (int f = 0; f < md->n_files; f++)
        for (int i = 0; i < md->files[f].n; i++)
            if (!md->files[f].entries[i].used) {
                if (file_path) *file_path = md->files[f].path;
                return &md->files[f].entries[i];
            }
    return NULL;
}
