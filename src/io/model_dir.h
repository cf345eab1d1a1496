// A Hugging Face model folder's weights: model.safetensors, or shards listed by
// model.safetensors.index.json ({"metadata":..., "weight_map": {name: file}}).
#pragma once
#include "io/safetensors.h"

typedef struct {
    char *dir;
    int n_files;
    st_file *files;
    // name -> (file, entry) lookup across every file; open addressing hash table.
    int n_tensors;
    int table_cap;
    struct md_slot { st_entry *e; int file; } *table;
} model_dir;

// Opens every shard (index first if present, else model.safetensors), validates each file,
// checks that the index agrees with the files (every listed tensor is in its file, no tensor
// appears twice across files).
ds_status model_dir_open(model_dir *md, const char *dir, ds_error *err);
void model_dir_close(model_dir *md);
// A folder-like view of tensors already in memory (e.g. the trainer's f32 master weights):
// one pseudo-file named `name` holding copies of the n entries (names copied; data pointers
// kept, so the memory must outlive the model_dir). Closed with model_dir_close.
ds_status model_dir_from_memory(model_dir *md, const char *name, const st_entry *entries, int n, ds_error *err);
// NULL if absent. *file_path (optional) receives the shard path for messages.
st_entry *model_dir_find(const model_dir *md, const char *name, const char **file_path);
// First tensor not marked used, or NULL (for the "unexpected tensor" check).
st_entry *model_dir_first_unused(const model_dir *md, const char **file_path);
