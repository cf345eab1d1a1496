// deepseek tokenizer-train --data FILE[,FILE...] --vocab N -o DIR [--min-frequency F] [--max-bytes B]
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "tokenizer/tokenizer.h"

#define CMD "tokenizer-train"

static void usage(FILE *f) {
    fprintf(f,
            "usage: deepseek tokenizer-train --data FILE[,FILE...] --vocab N -o DIR [--min-frequency F]\n"
            "                                [--max-bytes B] [-q]\n"
            "Trains a byte-level BPE tokenizer on the data and writes DIR/tokenizer.json and\n"
            "DIR/tokenizer_config.json in the Hugging Face format: Qwen2's pre-tokenizer (every digit its\n"
            "own token), NFC, DeepSeek-R1's chat tokens and chat template (generation prompt\n"
            "\"<｜Assistant｜><think>\\n\"), BOS added by encode. Same data and flags, same files.\n"
            "  --data   .jsonl files: the strings \"text\" and \"prompt\" and the \"content\" of each\n"
            "           \"messages\" element of every line; other files: UTF-8 text. Repeatable.\n"
            "  --vocab  the final vocabulary size, counting the 256 byte tokens (ids 0..255 = byte values)\n"
            "           and the 6 added tokens, which take the last ids: N-6 <｜begin▁of▁sentence｜> (BOS),\n"
            "           N-5 <｜end▁of▁sentence｜> (EOS), N-4 <｜User｜>, N-3 <｜Assistant｜>, N-2 <think>,\n"
            "           N-1 </think>. If the data runs out of pairs to merge first, training stops early\n"
            "           with a note and the vocabulary is smaller (the added tokens still come last).\n"
            "  -o DIR   output folder, created if missing\n"
            "  --min-frequency F  merge only pairs seen at least F times (default 2)\n"
            "  --max-bytes B      read at most B bytes of text (suffix K, M, G = KiB, MiB, GiB)\n"
            "  -q, --quiet        no progress on stderr\n");
}

// "10M" -> 10485760; false on anything but a positive number with an optional K/M/G.
static bool parse_bytes(const char *s, size_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno || *s == '-') return false;
    int shift = 0;
    if (*end == 'K' || *end == 'k') shift = 10, end++;
    else if (*end == 'M' || *end == 'm') shift = 20, end++;
    else if (*end == 'G' || *end == 'g') shift = 30, end++;
    if (*end || v == 0 || v > (~0ULL >> shift)) return false;
    *out = (size_t)(v << shift);
    return true;
}

// Appends the comma-separated names of list to *files.
static bool add_files(const char *list, char ***files, int *n) {
    for (const char *p = list;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (!len) return false;
        char **f = realloc(*files, (size_t)(*n + 1) * sizeof *f);
        if (!f) return false;
        *files = f;
        if (!(f[*n] = strndup(p, len))) return false;
        (*n)++;
        if (!comma) return true;
        p = comma + 1;
    }
}

static void free_files(char **files, int n) {
    for (int i = 0; i < n; i++) free(files[i]);
    free(files);
}

static const char *stop_reason(tokenizer_train_stop s, long min_freq) {
    static char buf[128];
    if (s == TOKENIZER_TRAIN_NO_PAIRS) return "every word of the data is already a single token";
    snprintf(buf, sizeof buf, "no pair of tokens occurs %ld times or more (--min-frequency)", min_freq);
    return buf;
}

int cmd_tokenizer_train(int argc, char **argv) {
    const char *out = NULL, *v;
    char **files = NULL;
    int n_files = 0;
    bool quiet = false;
    long vocab = 0;
    tokenizer_train_params p = {.min_frequency = 2};
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        int bad = 0;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            free_files(files, n_files);
            return 0;
        }
        if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet")) quiet = true;
        else if ((v = cli_opt(argc, argv, &i, "--data", &missing))) {
            if (!add_files(v, &files, &n_files)) bad = cli_usage_error(CMD, "--data expects FILE[,FILE...], got '%s'", v);
        } else if ((v = cli_opt(argc, argv, &i, "--vocab", &missing))) {
            if (!cli_parse_int(v, 1, 1L << 24, &vocab))
                bad = cli_usage_error(CMD, "--vocab expects a vocabulary size (at least %d), got '%s'",
                                      TOKENIZER_TRAIN_MIN_VOCAB, v);
        } else if ((v = cli_opt(argc, argv, &i, "-o", &missing)) || (v = cli_opt(argc, argv, &i, "--out", &missing))) {
            out = v;
        } else if ((v = cli_opt(argc, argv, &i, "--min-frequency", &missing))) {
            if (!cli_parse_int(v, 1, 1L << 62, &p.min_frequency))
                bad = cli_usage_error(CMD, "--min-frequency expects a positive integer, got '%s'", v);
        } else if ((v = cli_opt(argc, argv, &i, "--max-bytes", &missing))) {
            if (!parse_bytes(v, &p.max_bytes))
                bad = cli_usage_error(CMD, "--max-bytes expects a positive byte count (suffix K, M or G), got '%s'", v);
        } else if (missing) bad = cli_usage_error(CMD, "%s needs a value", argv[i]);
        else bad = cli_usage_error(CMD, "unknown option '%s'", argv[i]);
        if (bad) {
            free_files(files, n_files);
            return bad;
        }
    }
    int rc = 0;
    if (!n_files) rc = cli_usage_error(CMD, "--data FILE is required");
    else if (!vocab) rc = cli_usage_error(CMD, "--vocab N is required");
    else if (!out) rc = cli_usage_error(CMD, "-o DIR is required");
    if (rc) {
        free_files(files, n_files);
        return rc;
    }
    p.files = (const char *const *)files;
    p.n_files = n_files;
    p.vocab_size = (int)vocab;
    p.progress = !quiet;
    p.cancel = &cli_interrupted;
    cli_install_signals();
    tokenizer_train_stats s;
    ds_error err = {{0}};
    ds_status st = tokenizer_train(out, &p, &s, &err);
    free_files(files, n_files);
    if (st) return cli_fail(CMD, st, &err);
    if (s.stop != TOKENIZER_TRAIN_DONE)
        fprintf(stderr, CMD ": note: stopped early at a vocabulary of %d instead of %ld: %s\n", s.vocab_size, vocab,
                stop_reason(s.stop, p.min_frequency));
    if (!quiet)
        fprintf(stderr,
                CMD ": wrote %s/tokenizer.json and tokenizer_config.json: vocabulary %d = 256 bytes + %d merged "
                    "+ %d added (BOS %d, EOS %d); %.2f MB of text%s, %.1f s\n",
                out, s.vocab_size, s.vocab_size - TOKENIZER_TRAIN_MIN_VOCAB, TOKENIZER_TRAIN_N_ADDED, s.bos_id,
                s.eos_id, s.text_bytes / 1e6, s.truncated ? " (cut at --max-bytes)" : "", s.seconds);
    return 0;
}
