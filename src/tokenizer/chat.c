#include "tokenizer/chat.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja.h"

ds_status chat_render(const ds_tokenizer *t, const chat_msg *msgs, int n, bool add_generation_prompt, char **out,
                      ds_error *err) {
    *out = NULL;
    const char *tmpl = tokenizer_chat_template(t);
    if (!tmpl) return ds_error_set(err, DS_ERR_CONFIG, "tokenizer_config.json: no chat_template (use --raw)");
    cJSON *ctx = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(ctx, "messages");
    for (int i = 0; i < n; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", msgs[i].role);
        cJSON_AddStringToObject(m, "content", msgs[i].content);
        cJSON_AddItemToArray(arr, m);
    }
    cJSON_AddBoolToObject(ctx, "add_generation_prompt", add_generation_prompt);
    cJSON_AddStringToObject(ctx, "bos_token", tokenizer_bos_token(t));
    cJSON_AddStringToObject(ctx, "eos_token", tokenizer_eos_token(t));
    ds_status st = jinja_render(tmpl, ctx, out, err);
    cJSON_Delete(ctx);
    if (st) ds_error_prefix(err, st, "chat_template: ");
    return st;
}

bool chat_prompt_opens_reasoning(const char *prompt) {
    const char *open = NULL, *p = prompt;
    while ((p = strstr(p, "<think>"))) open = p++;
    return open && !strstr(open, "</think>");
}

void chat_split_reasoning(const char *reply, bool in_reasoning, char **reasoning, char **answer) {
    const char *end = strstr(reply, "</think>");
    if (!end) {
        *reasoning = strdup(in_reasoning ? reply : "");
        *answer = strdup(in_reasoning ? "" : reply);
        return;
    }
    const char *r = reply;
    while (*r == ' ' || *r == '\n') r++;
    if (strncmp(r, "<think>", 7) == 0) r += 7;
    else r = reply;
    *reasoning = strndup(r, (size_t)(end - r));
    const char *a = end + strlen("</think>");
    while (*a == '\n') a++;
    *answer = strdup(a);
}
