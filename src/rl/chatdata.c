#include "rl/chatdata.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "io/fileutil.h"

ds_status chatdata_encode_prompt(const ds_tokenizer *t, const char *user, int **ids, int *n, bool *opens_think,
                                 ds_error *err) {
    chat_msg m = {"user", user};
    char *text = NULL;
    ds_status st = chat_render(t, &m, 1, true, &text, err);
    if (st) return st;
    if (opens_think) *opens_think = chat_prompt_opens_reasoning(text);
    // the template writes BOS itself: encode without adding special tokens again
    st = tokenizer_encode(t, text, strlen(text), false, ids, n, err);
    free(text);
    return st;
}

ds_status chatdata_encode_example(const ds_tokenizer *t, const chat_msg *msgs, int n, int **ids, int *n_ids,
                                  int *n_prompt, ds_error *err) {
    *ids = NULL;
    if (n < 2 || strcmp(msgs[n - 1].role, "assistant") != 0)
        return ds_error_set(err, DS_ERR_FORMAT, "the last message must be the assistant's reply");
    char *prompt = NULL;
    ds_status st = chat_render(t, msgs, n - 1, true, &prompt, err);
    if (st) return st;
    const char *reply = msgs[n - 1].content;
    if (chat_prompt_opens_reasoning(prompt)) {
        if (!strncmp(reply, "<think>\n", 8)) reply += 8;
        else if (!strncmp(reply, "<think>", 7)) reply += 7;
    }
    int *p = NULL, *r = NULL, np = 0, nr = 0;
    st = tokenizer_encode(t, prompt, strlen(prompt), false, &p, &np, err);
    if (!st) st = tokenizer_encode(t, reply, strlen(reply), false, &r, &nr, err);
    free(prompt);
    int eos = tokenizer_eos_id(t);
    int *all = st ? NULL : malloc(sizeof(int) * (size_t)(np + nr + 1));
    if (!st && !all) st = ds_error_set(err, DS_ERR_OOM, "out of memory");
    if (!st) {
        memcpy(all, p, sizeof(int) * (size_t)np);
        memcpy(all + np, r, sizeof(int) * (size_t)nr);
        int k = np + nr;
        if (eos >= 0) all[k++] = eos;
        *ids = all;
        *n_ids = k;
        *n_prompt = np;
    }
    free(p);
    free(r);
    return st;
}

static ds_status chatdata_add(chatdata_set *set, int *ids, int len, int np, int *cap) {
    if (set->n == *cap) {
        int c = *cap ? 2 * *cap : 1024;
        int **a = realloc(set->ids, sizeof *a * (size_t)c);
        if (a) set->ids = a;
        int *l = realloc(set->len, sizeof *l * (size_t)c);
        if (l) set->len = l;
        int *q = realloc(set->n_prompt, sizeof *q * (size_t)c);
        if (q) set->n_prompt = q;
        if (!a || !l || !q) return DS_ERR_OOM;
        *cap = c;
    }
    set->ids[set->n] = ids;
    set->len[set->n] = len;
    set->n_prompt[set->n] = np;
    set->n++;
    return DS_OK;
}

static ds_status chatdata_line(chatdata_set *set, const ds_tokenizer *t, const char *path, int line, const char *text,
                               size_t len, int max_len, int *skipped, int *cap, ds_error *err) {
    cJSON *j = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return ds_error_set(err, DS_ERR_FORMAT, "%s:%d: not a JSON object", path, line);
    }
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
    int n = cJSON_IsArray(msgs) ? cJSON_GetArraySize(msgs) : -1;
    ds_status st = DS_OK;
    chat_msg *m = n > 0 ? calloc((size_t)n, sizeof *m) : NULL;
    if (n < 2) st = ds_error_set(err, DS_ERR_FORMAT, "%s:%d: \"messages\" must be an array of at least 2 messages", path, line);
    else if (!m) st = ds_error_set(err, DS_ERR_OOM, "out of memory");
    int k = 0;
    for (const cJSON *c = st ? NULL : msgs->child; c && !st; c = c->next, k++) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(c, "role"), *content = cJSON_GetObjectItemCaseSensitive(c, "content");
        if (!cJSON_IsString(role) || !cJSON_IsString(content))
            st = ds_error_set(err, DS_ERR_FORMAT, "%s:%d: message %d needs string \"role\" and \"content\"", path, line, k);
        else m[k] = (chat_msg){role->valuestring, content->valuestring};
    }
    int *ids = NULL, nid = 0, np = 0;
    if (!st) {
        st = chatdata_encode_example(t, m, n, &ids, &nid, &np, err);
        if (st) ds_error_prefix(err, st, "%s:%d: ", path, line);
    }
    if (!st) {
        if (nid > max_len) {
            (*skipped)++;
            free(ids);
        } else if (chatdata_add(set, ids, nid, np, cap)) {
            free(ids);
            st = ds_error_set(err, DS_ERR_OOM, "out of memory");
        }
    }
    free(m);
    cJSON_Delete(j);
    return st;
}

ds_status chatdata_load(chatdata_set *set, const ds_tokenizer *t, const char *const *files, int n_files, int max_len,
                        int *skipped, ds_error *err) {
    memset(set, 0, sizeof *set);
    *skipped = 0;
    int cap = 0;
    ds_status st = DS_OK;
    for (int f = 0; f < n_files && !st; f++) {
        char *data = NULL;
        size_t size = 0;
        st = file_read_all(files[f], &data, &size, err);
        int line = 0;
        for (size_t at = 0; !st && at < size;) {
            char *nl = memchr(data + at, '\n', size - at);
            size_t end = nl ? (size_t)(nl - data) : size;
            line++;
            size_t b = at;
            while (b < end && (data[b] == ' ' || data[b] == '\t' || data[b] == '\r')) b++;
            if (b < end) st = chatdata_line(set, t, files[f], line, data + at, end - at, max_len, skipped, &cap, err);
            at = end + 1;
        }
        free(data);
    }
    if (!st && set->n == 0) st = ds_error_set(err, DS_ERR_FORMAT, "no usable examples in the data (%d longer than %d tokens)", *skipped, max_len);
    if (st) chatdata_free(set);
    return st;
}

void chatdata_free(chatdata_set *set) {
    for (int i = 0; i < set->n; i++) free(set->ids[i]);
    free(set->ids);
    free(set->len);
    free(set->n_prompt);
    memset(set, 0, sizeof *set);
}

int chatdata_pack(const chatdata_set *set, const int *ex, int b, int32_t *inp, int32_t *tgt, int64_t *n_tgt,
                  int64_t *n_mtp) {
    int T = 2;
    for (int k = 0; k < b; k++)
        if (set->len[ex[k]] - 1 > T) T = set->len[ex[k]] - 1;
    int64_t nt = 0, nm = 0;
    for (int k = 0; k < b; k++) {
        const int *ids = set->ids[ex[k]];
        int L = set->len[ex[k]], np = set->n_prompt[ex[k]];
        for (int t = 0; t < T; t++) {
            int in = t < L - 1, tg = in && t + 1 >= np ? ids[t + 1] : -1;
            inp[(int64_t)k * T + t] = in ? ids[t] : 0;
            tgt[(int64_t)k * T + t] = tg;
            nt += tg >= 0;
            nm += tg >= 0 && t > 0;
        }
    }
    *n_tgt = nt;
    if (n_mtp) *n_mtp = nm;
    return T;
}
