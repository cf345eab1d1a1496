// The OpenAI request shape: parsing and validating the JSON bodies of /v1/chat/completions and
// /v1/completions, and the error object ({"error": {"message", "type", "param", "code"}}).
// Unknown fields are ignored, as the OpenAI API does.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/chat.h"

#define API_MAX_STOP 4
#define API_MAX_N 8
#define API_MAX_STOP_LEN 256

typedef struct {
    int status;        // HTTP status
    const char *type;  // invalid_request_error, authentication_error, not_found_error, server_error
    const char *code;  // NULL or a machine-readable code (context_length_exceeded, ...)
    const char *param; // NULL or the offending field
    char message[320];
} api_error;

typedef enum { API_REASONING_DEFAULT = 0, API_REASONING_SPLIT, API_REASONING_INLINE } api_reasoning;

typedef struct {
    bool chat;
    chat_msg *msgs;    // chat: role and content (content strings owned by `owned`)
    int n_msgs;
    char *prompt;      // completions (owned)
    char **owned;
    int n_owned;
    double temperature, top_p;
    int max_tokens;    // -1: up to the context
    char *stop[API_MAX_STOP];
    int n_stop;
    uint64_t seed;
    bool has_seed;
    bool stream, include_usage;
    bool logprobs;     // chat: logprobs; completions: logprobs >= 0 given
    int top_logprobs;
    int n;
    api_reasoning reasoning; // extension field "reasoning_format": "split" | "inline"
    bool ignore_eos;   // extension field, as vLLM's
    int *bias_id;      // logit_bias
    float *bias;
    int n_bias;
} api_request;

// Parses a request body. `model` is the served model's id (a different "model" is a 404);
// `vocab` bounds logit_bias ids. false: *e says why (4xx).
bool api_parse(api_request *r, const char *body, size_t len, bool chat, const char *model, int vocab, api_error *e);
void api_request_free(api_request *r);

void api_error_set(api_error *e, int status, const char *type, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
// {"error": {...}} (malloc'd; NULL when out of memory).
char *api_error_json(const api_error *e);
