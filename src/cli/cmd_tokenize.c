// deepseek tokenize -m DIR [--text T] [--no-add-special] [--json]   (text from stdin otherwise)
// deepseek detokenize -m DIR --ids 1,2,3 [--skip-special]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "tokenizer/tokenizer.h"

static void tokenize_usage(FILE *f) {
    fprintf(f,
            "usage: deepseek tokenize -m DIR [--text TEXT] [--no-add-special] [--json]\n"
            "Prints the token ids of TEXT (or of standard input), as Hugging Face encode(text) does:\n"
            "special tokens written in the text are recognised, BOS is added as the tokenizer config\n"
            "says. Needs only tokenizer.json / tokenizer_config.json in DIR.\n"
            "  --no-add-special  like add_special_tokens=False (no BOS)\n"
            "  --json            one JSON array instead of space-separated ids\n");
}

static char *read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (n < cap) break;
        char *p = realloc(buf, cap *= 2);
        if (!p) { free(buf); return NULL; }
        buf = p;
    }
    *len = n;
    return buf;
}

int cmd_tokenize(int argc, char **argv) {
    const char *dir = NULL, *text = NULL, *v;
    bool add_special = true, json = false;
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { tokenize_usage(stdout); return 0; }
        if (!strcmp(argv[i], "--no-add-special")) add_special = false;
        else if (!strcmp(argv[i], "--json")) json = true;
        else if ((v = cli_opt(argc, argv, &i, "-m", &missing)) || (v = cli_opt(argc, argv, &i, "--model", &missing))) dir = v;
        else if ((v = cli_opt(argc, argv, &i, "--text", &missing))) text = v;
        else if (missing) return cli_usage_error("tokenize", "%s needs a value", argv[i]);
        else return cli_usage_error("tokenize", "unknown option '%s'", argv[i]);
    }
    if (!dir) return cli_usage_error("tokenize", "-m DIR is required");
    ds_tokenizer *t;
    ds_error err = {{0}};
    ds_status st = tokenizer_load(&t, dir, &err);
    if (st) return cli_fail("tokenize", st, &err);
    size_t len = 0;
    char *owned = NULL;
    if (text) len = strlen(text);
    else if (!(text = owned = read_stdin(&len))) st = ds_error_set(&err, DS_ERR_OOM, "out of memory reading stdin");
    int *ids = NULL, n = 0;
    if (!st) st = tokenizer_encode(t, text, len, add_special, &ids, &n, &err);
    if (!st) {
        if (json) putchar('[');
        for (int i = 0; i < n; i++) printf(i ? (json ? ", %d" : " %d") : "%d", ids[i]);
        puts(json ? "]" : "");
    }
    free(ids);
    free(owned);
    tokenizer_free(t);
    return st ? cli_fail("tokenize", st, &err) : 0;
}

static void detokenize_usage(FILE *f) {
    fprintf(f,
            "usage: deepseek detokenize -m DIR --ids 1,2,3 [--skip-special]\n"
            "Prints the text of the ids (invalid UTF-8 becomes U+FFFD).\n");
}

int cmd_detokenize(int argc, char **argv) {
    const char *dir = NULL, *ids_s = NULL, *v;
    bool skip = false;
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { detokenize_usage(stdout); return 0; }
        if (!strcmp(argv[i], "--skip-special")) skip = true;
        else if ((v = cli_opt(argc, argv, &i, "-m", &missing)) || (v = cli_opt(argc, argv, &i, "--model", &missing))) dir = v;
        else if ((v = cli_opt(argc, argv, &i, "--ids", &missing))) ids_s = v;
        else if (missing) return cli_usage_error("detokenize", "%s needs a value", argv[i]);
        else return cli_usage_error("detokenize", "unknown option '%s'", argv[i]);
    }
    if (!dir) return cli_usage_error("detokenize", "-m DIR is required");
    int *ids, n;
    if (!ids_s || !cli_parse_ids(ids_s, &ids, &n))
        return cli_usage_error("detokenize", "--ids expects comma-separated non-negative token ids");
    ds_tokenizer *t = NULL;
    ds_error err = {{0}};
    ds_status st = tokenizer_load(&t, dir, &err);
    char *text = NULL;
    size_t len = 0;
    for (int i = 0; !st && i < n; i++)
        if (ids[i] >= tokenizer_vocab_size(t))
            st = ds_error_set(&err, DS_ERR_ARG, "token id %d is outside the vocabulary [0, %d)", ids[i], tokenizer_vocab_size(t));
    if (!st) st = tokenizer_decode(t, ids, n, skip, &text, &len, &err);
    if (!st) {
        fwrite(text, 1, len, stdout);
        putchar('\n');
    }
    free(text);
    free(ids);
    if (t) tokenizer_free(t);
    return st ? cli_fail("detokenize", st, &err) : 0;
}
