// A Jinja2 subset interpreter for Hugging Face chat templates (DeepSeek-V3/R1, R1-Distill
// Qwen and Llama 3): renders a template against a JSON context.
#pragma once
#include <cjson/cJSON.h>
#include "base/status.h"

// Renders `tmpl` with the variables of `ctx` (a JSON object: messages, add_generation_prompt,
// bos_token, eos_token, tools, ...). *out is malloc'd, NUL-terminated. An unsupported
// construct or a template error is DS_ERR_FORMAT with "template line N: ..."; a
// raise_exception() call is DS_ERR_ARG with its message.
ds_status jinja_render(const char *tmpl, const cJSON *ctx, char **out, ds_error *err);
