// Pieces shared by the tokenizer's files: hash maps, the BPE model, the pre-tokenizer
// pipeline and the decoder chain. Not part of the public interface.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "tokenizer/tokenizer.h"

// ---- growable buffers ----

typedef struct {
    int *v;
    size_t n, cap;
} tok_ints;

typedef struct {
    char *s;
    size_t n, cap;
} tok_bytes;

bool tok_ints_push(tok_ints *a, int x);
bool tok_bytes_append(tok_bytes *b, const void *p, size_t n);
bool tok_bytes_reserve(tok_bytes *b, size_t n); // room for n more bytes

// ---- maps ----

// String -> int, open addressing. Keys are borrowed: they must outlive the map.
typedef struct {
    const char *key;
    uint32_t len;
    int32_t val; // -1 marks an empty slot
} tok_strmap_slot;

typedef struct {
    tok_strmap_slot *slots;
    uint32_t mask, n;
} tok_strmap;

bool tok_strmap_put(tok_strmap *m, const char *key, size_t len, int val); // false: out of memory
int tok_strmap_get(const tok_strmap *m, const char *key, size_t len);     // -1 if absent
void tok_strmap_free(tok_strmap *m);

// (left id, right id) -> (merge rank, merged id).
typedef struct {
    uint64_t key; // UINT64_MAX marks an empty slot
    int32_t rank, id;
} tok_pairmap_slot;

typedef struct {
    tok_pairmap_slot *slots;
    uint32_t mask, n;
} tok_pairmap;

// ---- BPE model (bpe.c) ----

typedef struct {
    tok_strmap vocab;      // model vocab: token string -> id
    tok_pairmap merges;
    int byte_id[256];      // byte-level: id of the alphabet char of each byte (-1 if missing)
    int byte_fallback_id[256]; // <0xHH> tokens when byte_fallback (-1 otherwise)
    bool byte_level;       // words arrive as raw bytes, mapped through the GPT-2 alphabet
    bool ignore_merges;    // a word that is itself in the vocab is emitted whole
    bool byte_fallback;
    bool fuse_unk;
    int unk_id;            // -1 if none
} bpe_model;

// Scratch space reused across words (one per encode call, so encoding stays thread-safe).
typedef struct {
    void *syms;
    size_t syms_cap;
    void *heap;
    size_t heap_cap;
    tok_bytes mapped;
} bpe_work;

// Registers merge `rank` of tokens a+b; false when a, b or a+b is not in the vocab
// (*which says: 0 = a, 1 = b, 2 = merged) or out of memory (*which = 3).
bool bpe_merge_add(bpe_model *m, const char *a, size_t alen, const char *b, size_t blen, int rank, int *which);
// Appends the ids of one pre-tokenized word (raw bytes when m->byte_level, else model text).
bool bpe_word_encode(const bpe_model *m, const char *w, size_t len, bpe_work *work, tok_ints *out);
void bpe_work_free(bpe_work *w);
void bpe_model_free(bpe_model *m);

// Parses a JSON file; errors name the file and the byte where parsing stopped.
struct cJSON;
ds_status tok_json_parse_file(const char *path, struct cJSON **out, ds_error *err);
// The tokenizer_config.json we write for our own tokenizers (LlamaTokenizerFast, BOS added,
// pad = EOS, no decode cleanup); callers add what else they need (chat_template).
struct cJSON *tokenizer_config_json(const char *bos, const char *eos);

// GPT-2 bytes_to_unicode: printable bytes map to themselves, the rest to U+0100.. in order.
int bytelevel_char_of_byte(int b);
// The byte of an alphabet code point, -1 if cp is not in the alphabet.
int bytelevel_byte_of_char(uint32_t cp);
// Writes the UTF-8 of code point cp into out (4 bytes room); returns the length.
int tok_utf8_put(char *out, uint32_t cp);
// Decodes one UTF-8 char at s (n bytes available); returns its length (1..4) and sets *cp,
// or 0 when the bytes are not valid UTF-8 there.
int tok_utf8_get(const char *s, size_t n, uint32_t *cp);

// ---- normalizer and pre-tokenizer (pretokenize.c) ----

typedef enum { NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD } norm_kind;

typedef struct {
    norm_kind *steps;
    int n;
} tok_normalizer;

typedef enum {
    SPLIT_ISOLATED,
    SPLIT_REMOVED,
    SPLIT_MERGED_WITH_PREVIOUS,
    SPLIT_MERGED_WITH_NEXT,
    SPLIT_CONTIGUOUS,
} split_behavior;

typedef struct {
    void *re;          // pcre2_code (NULL for a literal pattern)
    char *literal;     // String pattern
    size_t literal_len;
    split_behavior behavior;
    bool invert;
    bool prefix_space; // ByteLevel add_prefix_space: applied before this step's split
} pretok_step;

typedef struct {
    pretok_step *steps;
    int n;
    bool byte_level; // a ByteLevel pre-tokenizer ends the chain
} tok_pretokenizer;

// A piece of the work buffer [start, end).
typedef struct {
    size_t start, end;
} tok_piece;

typedef struct {
    tok_piece *v;
    size_t n, cap;
} tok_pieces;

typedef struct {
    tok_bytes buf;          // normalized text, then prefix-spaced copies appended
    tok_pieces a, b;        // ping-pong piece lists
    void *match_data;       // pcre2_match_data (whole match only)
} pretok_work;

ds_status normalizer_parse(tok_normalizer *n, const cJSON *j, const char *path, ds_error *err);
// Replaces work->buf with the normalized form of text.
ds_status normalizer_apply(const tok_normalizer *n, const char *text, size_t len, tok_bytes *out, ds_error *err);
void normalizer_free(tok_normalizer *n);

ds_status pretok_parse(tok_pretokenizer *p, const cJSON *j, const char *path, ds_error *err);
// Splits work->buf[0, len) into pieces (left in work->a).
ds_status pretok_run(const tok_pretokenizer *p, pretok_work *w, size_t len, ds_error *err);
void pretok_free(tok_pretokenizer *p);
void pretok_work_free(pretok_work *w);

// Compiles an HF (Oniguruma-flavoured) regex with PCRE2 (UTF, UCP, JIT when available).
void *tok_regex_compile(const char *pattern, char *why, size_t why_len);
void tok_regex_free(void *re);

// Unicode helpers (utf8proc): White_Space property, letters/numbers ("word" chars).
bool tok_is_whitespace(uint32_t cp);
bool tok_is_word_char(uint32_t cp);

// ---- decoder chain and the tokenizer (tokenizer.c, decode.c) ----

typedef enum { DEC_BYTELEVEL, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_METASPACE } dec_kind;

typedef struct {
    dec_kind kind;
    char *from, *to;  // Replace (String pattern); Metaspace: from = replacement char
    int start, stop;  // Strip: how many `to` strings to remove from each token's start / end
    bool prepend;     // Metaspace: the first token's leading space was added by the encoder
} dec_step;

typedef struct {
    dec_step *steps;
    int n;
} tok_decoder;

typedef struct {
    int id;
    char *content;
    size_t len;
    bool special, lstrip, rstrip, single_word, normalized;
} tok_added;

typedef struct {
    int child, sibling, added; // first child, next sibling (-1 none); added token index or -1
    unsigned char byte;
} tok_trie_node;

struct ds_tokenizer {
    char *path;            // tokenizer.json, for messages
    bpe_model bpe;
    tok_normalizer norm;
    tok_pretokenizer pre;
    tok_decoder dec;
    char *arena;           // vocab strings, NUL-terminated
    const char **text;     // id -> token text (vocab string or added content), NULL if none
    uint32_t *text_len;
    unsigned char *special; // id -> special added token
    int n_ids;             // highest id + 1
    tok_added *added;
    int n_added;
    tok_strmap added_map;  // content -> id
    tok_trie_node *trie;   // added-token contents, for leftmost-longest matching
    int n_trie, trie_root[256];
    tok_ints tmpl_pre, tmpl_post; // ids the post-processor puts around a single sequence
    int bos_id, eos_id;
    char *bos, *eos, *chat_template;
};

ds_status decoder_parse(tok_decoder *d, const cJSON *j, const char *path, ds_error *err);
void decoder_free(tok_decoder *d);
