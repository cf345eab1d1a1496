// Writing tokenizers in the Hugging Face format (tokenizer.json + tokenizer_config.json), so
// models we create load through the same code path as Hub models, and through HF tools.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "io/fileutil.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"

static ds_status write_json(const char *dir, const char *name, cJSON *j, ds_error *err) {
    char *text = j ? cJSON_Print(j) : NULL, *path = file_join(dir, name);
    ds_status st = text && path ? file_write_atomic(path, text, strlen(text), err)
                                : ds_error_set(err, DS_ERR_OOM, "out of memory");
    free(text);
    free(path);
    return st;
}

cJSON *tokenizer_config_json(const char *bos, const char *eos) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddBoolToObject(c, "add_bos_token", 1);
    cJSON_AddBoolToObject(c, "add_eos_token", 0);
    cJSON_AddStringToObject(c, "bos_token", bos);
    cJSON_AddStringToObject(c, "eos_token", eos);
    cJSON_AddStringToObject(c, "pad_token", eos);
    // transformers' default cleanup would glue " ?" and " ." back onto words in decode.
    cJSON_AddBoolToObject(c, "clean_up_tokenization_spaces", 0);
    cJSON_AddNumberToObject(c, "model_max_length", 16384);
    cJSON_AddStringToObject(c, "tokenizer_class", "LlamaTokenizerFast");
    return c;
}

static cJSON *added_token(int id, const char *content) {
    cJSON *a = cJSON_CreateObject();
    cJSON_AddNumberToObject(a, "id", id);
    cJSON_AddStringToObject(a, "content", content);
    cJSON_AddBoolToObject(a, "single_word", 0);
    cJSON_AddBoolToObject(a, "lstrip", 0);
    cJSON_AddBoolToObject(a, "rstrip", 0);
    cJSON_AddBoolToObject(a, "normalized", 0);
    cJSON_AddBoolToObject(a, "special", 1);
    return a;
}

ds_status tokenizer_write_bytelevel(const char *dir, ds_error *err) {
    static const char *const bos = "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>";
    static const char *const eos = "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>";
    ds_status st = file_mkdirs(dir, err);
    if (st) return st;
    cJSON *j = cJSON_CreateObject(), *model = cJSON_CreateObject(), *vocab = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "version", "1.0");
    cJSON_AddNullToObject(j, "truncation");
    cJSON_AddNullToObject(j, "padding");
    cJSON *added = cJSON_AddArrayToObject(j, "added_tokens");
    cJSON_AddItemToArray(added, added_token(TOKENIZER_BYTES_BOS, bos));
    cJSON_AddItemToArray(added, added_token(TOKENIZER_BYTES_EOS, eos));
    cJSON_AddNullToObject(j, "normalizer");
    // No merges: every byte is one token, so the GPT-2 splitting regex would only cost time.
    cJSON *pre = cJSON_AddObjectToObject(j, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "ByteLevel");
    cJSON_AddBoolToObject(pre, "add_prefix_space", 0);
    cJSON_AddBoolToObject(pre, "trim_offsets", 0);
    cJSON_AddBoolToObject(pre, "use_regex", 0);
    cJSON_AddNullToObject(j, "post_processor");
    cJSON *dec = cJSON_AddObjectToObject(j, "decoder");
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    cJSON_AddBoolToObject(dec, "add_prefix_space", 0);
    cJSON_AddBoolToObject(dec, "trim_offsets", 0);
    cJSON_AddBoolToObject(dec, "use_regex", 0);
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddBoolToObject(model, "fuse_unk", 0);
    cJSON_AddBoolToObject(model, "byte_fallback", 0);
    cJSON_AddBoolToObject(model, "ignore_merges", 0);
    for (int b = 0; b < 256; b++) {
        char s[8] = {0};
        tok_utf8_put(s, (uint32_t)bytelevel_char_of_byte(b));
        cJSON_AddNumberToObject(vocab, s, b);
    }
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON_AddArrayToObject(model, "merges");
    cJSON_AddItemToObject(j, "model", model);
    st = write_json(dir, "tokenizer.json", j, err);
    cJSON_Delete(j);
    if (st) return st;

    cJSON *c = tokenizer_config_json(bos, eos);
    st = write_json(dir, "tokenizer_config.json", c, err);
    cJSON_Delete(c);
    return st;
}
