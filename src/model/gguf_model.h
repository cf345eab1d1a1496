// DeepSeek models in GGUF, llama.cpp's format (architecture "deepseek2"): writing an HF
// checkpoint as a GGUF file llama.cpp loads, and loading such files as a ds_model. The
// facts (keys, tensor names, the kv_b split, YaRN) are in docs/gguf-deepseek2.md.
#pragma once
#include "model/model.h"

typedef struct {
    ds_dtype type;      // matrices: F32, F16, BF16, Q8_0 or Q4_0 (norms, router and bias stay F32;
                        // a matrix whose rows are not a multiple of 32 falls back to F32)
    const char *tok_dir;// folder with tokenizer.json for the tokenizer metadata (NULL: none)
    const char *name;   // general.name (NULL: the folder's name)
    int progress;       // tensor progress on stderr
} gguf_export_opts;

// Writes the model of `dir` (any stored dtype, FP8 included) to `path` atomically, without
// the MTP layer (as llama.cpp's converter does). Configs llama.cpp cannot express are
// refused with a message saying why (e.g. mscale != mscale_all_dim).
ds_status gguf_model_export(const char *dir, const char *path, const gguf_export_opts *o, ds_error *err);

// Loads a deepseek2 GGUF file: F32/F16/BF16/Q8_0/Q4_0 matrices are used in place (mmapped),
// Q4_K/Q6_K are re-encoded as Q8_0, attn_k_b/attn_v_b are merged back into kv_b. Called by
// ds_model_load for paths ending in ".gguf".
ds_status gguf_model_load(ds_model *m, const char *path, ds_error *err);

// 1 if `path` names a GGUF file (by its ".gguf" suffix).
int gguf_model_is_path(const char *path);

// Dequantizes n values (a multiple of 256) of a Q4_K or Q6_K (GGUF type codes 12, 14) row.
void gguf_kquant_to_f32(int gguf_type, const void *in, float *out, int64_t n);
