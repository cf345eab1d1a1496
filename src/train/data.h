// Training data: text files (one document each) or JSONL with a "text" field, tokenised once
// into a cached binary token file, packed into fixed-length sequences (documents concatenated,
// each opened with BOS and closed with EOS, no cross-document masking — as DeepSeek-V3
// pre-training packs), split into train / validation and shuffled deterministically.
#pragma once
#include <stdint.h>
#include "base/rng.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    int32_t *tokens;     // all documents back to back
    int64_t n_tokens;
    int64_t *doc_start;  // offset of each document in tokens
    int64_t n_docs;
} token_corpus;

// Tokenises `files` (".jsonl" lines {"text": ...}, anything else one document per file).
// With cache_dir, each file's tokens are cached as cache_dir/<key>.tok (key: path, size,
// mtime and the tokenizer's identity) and reused when present. Progress goes to stderr.
ds_status data_corpus_load(token_corpus *c, const char *const *files, int n_files, const ds_tokenizer *t,
                           const char *cache_dir, ds_error *err);
void data_corpus_free(token_corpus *c);

// Sequences of seq_len + 1 tokens (inputs and shifted targets) cut from the corpus with
// stride seq_len. Every k-th sequence (k = round(1 / val_frac)) is held out for validation,
// so both splits span the whole corpus. Training order is a fresh permutation per epoch,
// derived from (seed, epoch): the state to resume is just (epoch, cursor).
typedef struct {
    const token_corpus *c;
    int seq_len;
    int64_t n_train, n_val;
    int64_t *train_idx, *val_idx;  // sequence numbers
    int64_t *order;                // permutation of train_idx positions for this epoch
    uint64_t seed;
    int epoch;
    int64_t cursor;
} data_loader;

ds_status data_loader_init(data_loader *d, const token_corpus *c, int seq_len, float val_frac, uint64_t seed,
                           ds_error *err);
void data_loader_free(data_loader *d);
// Copies the next training sequence (seq_len + 1 tokens) and advances, starting a new epoch
// (new permutation) when one ends.
void data_loader_next(data_loader *d, int32_t *out);
// Validation sequence i (0 <= i < n_val).
void data_loader_val(const data_loader *d, int64_t i, int32_t *out);
// Moves to (epoch, cursor), e.g. when resuming from a checkpoint.
void data_loader_seek(data_loader *d, int epoch, int64_t cursor);
