// A model folder's weights across shards, with one name -> tensor table over all of them.
// The index is cross-checked against the files both ways, so that a stale or hand-edited
// index.json is reported at load time (naming tensor and file) instead of surfacing later
// as a "missing tensor" far from its cause.
#include "io/model_dir.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/fileutil.h"

#define MD_INDEX "model.safetensors.index.json"
#define MD_SINGLE "model.safetensors"

// FNV-1a: simple, and good enough for tensor names (long shared prefixes, varying digits).
static uint64_t md_hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

// The slot holding name, or the empty slot where it belongs. table_cap is a power of two
// and the table is at most half full, so the probe always ends.
static struct md_slot *md_slot_find(const model_dir *md, const char *name) {
    size_t mask = (size_t)md->table_cap - 1, i = (size_t)md_hash_name(name) & mask;
    while (md->table[i].e && strcmp(md->table[i].e->name, name) != 0) i = (i + 1) & mask;
    return &md->table[i];
}

// Adds every tensor of every file; a name in two files is an error (which copy is meant?).
static ds_status md_table_build(model_dir *md, ds_error *err) {
    int total = 0;
    for (int f = 0; f < md->n_files; f++) total += md->files[f].n;
    int cap = 16;
    while (cap < 2 * total) cap *= 2;
    md->table = calloc((size_t)cap, sizeof *md->table);
    if (!md->table) return ds_error_set(err, DS_ERR_OOM, "%s: out of memory for %d tensors", md->dir, total);
    md->table_cap = cap;
    for (int f = 0; f < md->n_files; f++)
        for (int i = 0; i < md->files[f].n; i++) {
            st_entry *e = &md->files[f].entries[i];
            struct md_slot *s = md_slot_find(md, e->name);
            if (s->e)
                return ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s' is also in %s", md->files[f].path, e->name,
                                    md->files[s->file].path);
            s->e = e;
            s->file = f;
            md->n_tensors++;
        }
    return DS_OK;
}

// ---- the index ----

typedef struct {
    const char *name, *file; // views into the parsed JSON
    int file_id;             // position in the sorted list of distinct files
} md_listing;

static int md_cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// A shard name must stay inside the folder: a plain file name.
static bool md_valid_shard_name(const char *s) {
    return *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

// Reads weight_map into a listing and the sorted distinct shard names (both views of root).
static ds_status md_index_read(const char *ipath, const cJSON *root, md_listing **out, int *n_out,
                               const char ***files, int *n_files, ds_error *err) {
    const cJSON *map = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(map))
        return ds_error_set(err, DS_ERR_FORMAT, "%s: missing \"weight_map\" object", ipath);
    int n = cJSON_GetArraySize(map), k = 0;
    md_listing *l = calloc(n ? (size_t)n : 1, sizeof *l);
    const char **names = calloc(n ? (size_t)n : 1, sizeof *names);
    if (!l || !names) {
        free(l);
        free(names);
        return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", ipath);
    }
    for (const cJSON *c = map->child; c; c = c->next, k++) {
        if (!cJSON_IsString(c) || !c->valuestring || !md_valid_shard_name(c->valuestring)) {
            ds_status st = ds_error_set(err, DS_ERR_FORMAT, "%s: weight_map entry '%s' is not a plain file name in this folder",
                                        ipath, c->string ? c->string : "");
            free(l);
            free(names);
            return st;
        }
        l[k] = (md_listing){c->string ? c->string : "", c->valuestring, 0};
        names[k] = c->valuestring;
    }
    qsort(names, (size_t)n, sizeof *names, md_cmp_str);
    int u = 0;
    for (int i = 0; i < n; i++)
        if (u == 0 || strcmp(names[u - 1], names[i]) != 0) names[u++] = names[i];
    for (int i = 0; i < n; i++) {
        const char **at = bsearch(&l[i].file, names, (size_t)u, sizeof *names, md_cmp_str);
        l[i].file_id = (int)(at - names); // always found: names holds every file
    }
    *out = l;
    *n_out = n;
    *files = names;
    *n_files = u;
    return DS_OK;
}

static ds_status md_open_files(model_dir *md, const char **names, int n, ds_error *err) {
    md->files = calloc(n ? (size_t)n : 1, sizeof *md->files);
    if (!md->files) return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", md->dir);
    for (int i = 0; i < n; i++) {
        char *path = file_join(md->dir, names[i]);
        if (!path) return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", md->dir);
        ds_status st = st_file_open(&md->files[i], path, err);
        free(path);
        if (st) return st;
        md->n_files = i + 1;
    }
    return DS_OK;
}

// Every listed tensor is in its file, listed once; every tensor in the files is listed.
static ds_status md_index_verify(const model_dir *md, const char *ipath, const md_listing *l, int n, ds_error *err) {
    unsigned char *listed = calloc((size_t)md->table_cap, 1);
    if (!listed) return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", ipath);
    ds_status st = DS_OK;
    for (int i = 0; i < n && !st; i++) {
        struct md_slot *s = md_slot_find(md, l[i].name);
        const char *want = md->files[l[i].file_id].path;
        if (!s->e)
            st = ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s' is listed in %s but %s does not contain it", want,
                              l[i].name, MD_INDEX, l[i].file);
        else if (s->file != l[i].file_id)
            st = ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s' is listed in %s for %s but is in this file",
                              md->files[s->file].path, l[i].name, MD_INDEX, l[i].file);
        else if (listed[s - md->table]++)
            st = ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s' is listed twice in weight_map", ipath, l[i].name);
    }
    for (int i = 0; i < md->table_cap && !st; i++)
        if (md->table[i].e && !listed[i])
            st = ds_error_set(err, DS_ERR_FORMAT, "%s: tensor '%s' is not listed in %s", md->files[md->table[i].file].path,
                              md->table[i].e->name, MD_INDEX);
    free(listed);
    return st;
}

// Opens the distinct shards first, so a missing file is reported as such (an I/O error)
// before any cross-check could blame the tensors it should have held.
static ds_status md_open_index(model_dir *md, const char *ipath, ds_error *err) {
    char *text;
    size_t size;
    ds_status st = file_read_all(ipath, &text, &size, err);
    if (st) return st;
    cJSON *root = cJSON_ParseWithLength(text, size);
    free(text);
    if (!root) return ds_error_set(err, DS_ERR_FORMAT, "%s: not valid JSON", ipath);
    md_listing *l = NULL;
    const char **names = NULL;
    int n = 0, n_files = 0;
    st = md_index_read(ipath, root, &l, &n, &names, &n_files, err);
    if (!st) st = md_open_files(md, names, n_files, err);
    if (!st) st = md_table_build(md, err);
    if (!st) st = md_index_verify(md, ipath, l, n, err);
    free(l);
    free(names);
    cJSON_Delete(root);
    return st;
}

static ds_status md_open_single(model_dir *md, ds_error *err) {
    const char *name = MD_SINGLE;
    ds_status st = md_open_files(md, &name, 1, err);
    return st ? st : md_table_build(md, err);
}

// true if path exists; errors other than "does not exist" are reported.
static bool md_exists(const char *path, ds_status *st, ds_error *err) {
    struct stat sb;
    if (stat(path, &sb) == 0) return true;
    if (errno != ENOENT && errno != ENOTDIR) *st = ds_error_set(err, DS_ERR_IO, "%s: %s", path, strerror(errno));
    return false;
}

ds_status model_dir_open(model_dir *md, const char *dir, ds_error *err) {
    memset(md, 0, sizeof *md);
    md->dir = strdup(dir);
    char *ipath = file_join(dir, MD_INDEX), *spath = file_join(dir, MD_SINGLE);
    ds_status st = DS_OK;
    if (!md->dir || !ipath || !spath) st = ds_error_set(err, DS_ERR_OOM, "%s: out of memory", dir);
    else if (md_exists(ipath, &st, err)) st = md_open_index(md, ipath, err);
    else if (!st && md_exists(spath, &st, err)) st = md_open_single(md, err);
    else if (!st) st = ds_error_set(err, DS_ERR_IO, "%s: no %s or %s", dir, MD_SINGLE, MD_INDEX);
    free(ipath);
    free(spath);
    if (st) model_dir_close(md);
    return st;
}

ds_status model_dir_from_memory(model_dir *md, const char *name, const st_entry *entries, int n, ds_error *err) {
    memset(md, 0, sizeof *md);
    md->dir = strdup(name);
    md->files = calloc(1, sizeof *md->files);
    st_file *f = md->files;
    if (md->dir && f) {
        md->n_files = 1;
        f->path = strdup(name);
        f->entries = calloc(n ? (size_t)n : 1, sizeof *f->entries);
    }
    if (!md->dir || !f || !f->path || !f->entries) {
        model_dir_close(md);
        return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", name);
    }
    for (int i = 0; i < n; i++) {
        f->entries[i] = entries[i];
        f->entries[i].used = false;
        if (!(f->entries[i].name = strdup(entries[i].name))) {
            model_dir_close(md);
            return ds_error_set(err, DS_ERR_OOM, "%s: out of memory", name);
        }
        f->n = i + 1;
    }
    ds_status st = md_table_build(md, err);
    if (st) model_dir_close(md);
    return st;
}

void model_dir_close(model_dir *md) {
    for (int i = 0; i < md->n_files; i++) st_file_close(&md->files[i]);
    free(md->files);
    free(md->table);
    free(md->dir);
    memset(md, 0, sizeof *md);
}

st_entry *model_dir_find(const model_dir *md, const char *name, const char **file_path) {
    if (!md->table_cap) return NULL;
    const struct md_slot *s = md_slot_find(md, name);
    if (s->e && file_path) *file_path = md->files[s->file].path;
    return s->e;
}

// Files in folder order, tensors by name: deterministic, so messages are reproducible.
st_entry *model_dir_first_unused(const model_dir *md, const char **file_path) {
    for (int f = 0; f < md->n_files; f++)
        for (int i = 0; i < md->files[f].n; i++)
            if (!md->files[f].entries[i].used) {
                if (file_path) *file_path = md->files[f].path;
                return &md->files[f].entries[i];
            }
    return NULL;
}
