// Hugging Face tokenizers (tokenizer.json + tokenizer_config.json): byte-level BPE as used by
// DeepSeek-V3/R1 and the Qwen2.5 / Llama 3 based R1-Distill models. Ids equal HF's.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include "base/status.h"

typedef struct ds_tokenizer ds_tokenizer;

// Loads dir/tokenizer.json and (optional) dir/tokenizer_config.json; a path ending in ".gguf"
// loads the tokenizer from that file's tokenizer.ggml.* metadata instead.
ds_status tokenizer_load(ds_tokenizer **t, const char *dir, ds_error *err);
void tokenizer_free(ds_tokenizer *t);

// Writes dir/tokenizer.json + tokenizer_config.json of a byte-level BPE with no merges (ids
// 0..255 are the bytes) plus BOS and EOS under DeepSeek's special-token names: the smallest
// real tokenizer, for models trained from scratch on raw text.
#define TOKENIZER_BYTES_BOS 256
#define TOKENIZER_BYTES_EOS 257
#define TOKENIZER_BYTES_VOCAB 258
ds_status tokenizer_write_bytelevel(const char *dir, ds_error *err);

// Encodes UTF-8 text (len bytes). add_special = HF encode(text) (post-processor / add_bos_token
// from tokenizer_config.json), false = add_special_tokens=False. Special and added tokens
// written in the text are always recognised. *ids is malloc'd.
ds_status tokenizer_encode(const ds_tokenizer *t, const char *text, size_t len, bool add_special, int **ids, int *n,
                           ds_error *err);
// Decodes ids to UTF-8 (malloc'd, NUL-terminated); invalid UTF-8 becomes U+FFFD.
ds_status tokenizer_decode(const ds_tokenizer *t, const int *ids, int n, bool skip_special, char **text, size_t *len,
                           ds_error *err);

int tokenizer_vocab_size(const ds_tokenizer *t);   // highest id + 1
int tokenizer_token_id(const ds_tokenizer *t, const char *token); // -1 if absent
const char *tokenizer_token_text(const ds_tokenizer *t, int id); // raw vocab string, NULL if none
bool tokenizer_is_special(const ds_tokenizer *t, int id);
int tokenizer_bos_id(const ds_tokenizer *t);        // -1 if none
int tokenizer_eos_id(const ds_tokenizer *t);        // -1 if none
const char *tokenizer_bos_token(const ds_tokenizer *t); // "" if none
const char *tokenizer_eos_token(const ds_tokenizer *t);
const char *tokenizer_chat_template(const ds_tokenizer *t); // NULL if none

// Streaming decode: push ids one at a time, get the text that is complete so far. Bytes of a
// UTF-8 character split across tokens are held until the character completes; invalid bytes
// become U+FFFD only at flush (or when they can no longer start a valid character).
typedef struct {
    const ds_tokenizer *t;
    bool skip_special;
    char pending[8];   // bytes of an incomplete UTF-8 character
    int n_pending;
    char *buf;         // output of the last call
    size_t cap;
} tokenizer_stream;

void tokenizer_stream_init(tokenizer_stream *s, const ds_tokenizer *t, bool skip_special);
// Returns the text ready for output (valid until the next call), *len bytes.
const char *tokenizer_stream_push(tokenizer_stream *s, int id, size_t *len);
const char *tokenizer_stream_flush(tokenizer_stream *s, size_t *len);
void tokenizer_stream_free(tokenizer_stream *s);

// ---- GGUF tokenizer metadata (tokenizer_gguf.c) ----
// A GGUF file carries the tokenizer in llama.cpp's keys (docs/gguf-deepseek2.md §4):
// tokenizer.ggml.model "gpt2", tokenizer.ggml.pre, tokens / token_type / merges, BOS / EOS /
// padding ids, add_bos_token / add_eos_token and tokenizer.chat_template.
#include "io/gguf.h"

struct cJSON;

// Builds a tokenizer from already-parsed tokenizer.json and tokenizer_config.json (NULL:
// none) objects, exactly as tokenizer_load does from files; name is used in messages.
ds_status tokenizer_load_json(ds_tokenizer **t, const struct cJSON *tokenizer_json, const struct cJSON *config_json,
                              const char *name, ds_error *err);

// Adds the tokenizer of tok_dir (tokenizer.json + optional tokenizer_config.json) to w.
// tokenizer.ggml.pre comes from the pre-tokenizer: DeepSeek-V3's -> "deepseek-v3", Qwen2's ->
// "qwen2", Llama 3's -> "llama-bpe", ByteLevel(use_regex) -> "gpt-2", and any byte-level
// pre-tokenizer that keeps all text when there are no merges -> "gpt-2"; anything else is
// DS_ERR_FORMAT. tokens are padded with "[PAD{id}]" (type unused) to model_vocab rows
// (llama.cpp wants one token per embedding row; model_vocab <= 0: the tokenizer's size,
// smaller than the tokenizer: DS_ERR_ARG). add_bos/add_eos say what tokenizer_encode(...,
// add_special=true) puts around the text.
ds_status tokenizer_gguf_write(gguf_writer *w, const char *tok_dir, int model_vocab, ds_error *err);

// The inverse: a tokenizer equivalent to the written one for encode and decode. Control
// tokens become special added tokens, user-defined ones non-special added tokens, unused
// ones are left out. Unknown tokenizer.ggml.pre values, a model other than "gpt2" and
// malformed metadata are DS_ERR_FORMAT naming the file and the key.
ds_status tokenizer_load_gguf(ds_tokenizer **t, const gguf_file *f, ds_error *err);

// The HF pre_tokenizer JSON rebuilt for a tokenizer.ggml.pre value (NULL if unsupported):
// copied from the model's own tokenizer.json, so tests can compare it with the real file.
const char *tokenizer_gguf_pre_json(const char *pre);

// ---- training a tokenizer (tokenizer_train.c) ----
// Learns a byte-level BPE from a corpus and writes dir/tokenizer.json + tokenizer_config.json
// in the Hugging Face format, with Qwen2's pre-tokenizer and NFC normalizer (so GGUF export
// names it "qwen2"), DeepSeek-R1's chat tokens and chat template. Layout of the ids:
//   0..255              the bytes: id b is byte b (its GPT-2 byte-to-unicode character)
//   256..V-7            merged tokens, in the order the merges were learned
//   V-6 .. V-1          <｜begin▁of▁sentence｜> (BOS), <｜end▁of▁sentence｜> (EOS), <｜User｜>,
//                       <｜Assistant｜>, <think>, </think>
// where V is the final vocabulary size.
#define TOKENIZER_TRAIN_N_ADDED 6
#define TOKENIZER_TRAIN_MIN_VOCAB (256 + TOKENIZER_TRAIN_N_ADDED)

typedef struct {
    // Files ending in ".jsonl": one JSON object a line; its strings "text" and "prompt" and
    // the "content" of each element of "messages" are the texts. Any other file: UTF-8 text.
    const char *const *files;
    int n_files;
    int vocab_size;          // wanted final size, bytes and added tokens included
    long min_frequency;      // a pair seen fewer times (weighted by word count) is not merged
    size_t max_bytes;        // stop reading after this many bytes of text (0: no limit)
    int progress;            // print progress to stderr
    volatile int *cancel;    // polled; non-zero stops with DS_ERR_INTERRUPTED, nothing written
} tokenizer_train_params;

typedef enum {
    TOKENIZER_TRAIN_DONE,          // the requested vocabulary size was reached
    TOKENIZER_TRAIN_NO_PAIRS,      // every word is a single token: nothing left to merge
    TOKENIZER_TRAIN_MIN_FREQUENCY, // the most frequent pair is below min_frequency
} tokenizer_train_stop;

typedef struct {
    size_t text_bytes;       // bytes of text read (added tokens included)
    bool truncated;          // max_bytes stopped the reading
    long long n_words;       // pre-tokens counted
    int n_distinct;          // distinct pre-tokens
    int n_merges;            // merges learned
    int vocab_size;          // final size (below the request when training stopped early)
    int bos_id, eos_id;
    tokenizer_train_stop stop;
    double seconds;          // reading + training, without writing
} tokenizer_train_stats;

// Trains and writes the two files (atomically; dir is created when missing). Ties between
// equally frequent pairs go to the pair whose (left, right) token bytes sort first. Errors
// name the file and line (bad JSONL), the file (unreadable), or the flag (vocab too small).
// stats may be NULL.
ds_status tokenizer_train(const char *dir, const tokenizer_train_params *p, tokenizer_train_stats *stats,
                          ds_error *err);
