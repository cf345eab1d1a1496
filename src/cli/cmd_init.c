// deepseek init --preset NAME -o DIR [--dtype f32|bf16|fp8] [--seed N]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/fileutil.h"
#include "model/init.h"
#include "tokenizer/tokenizer.h"

static void init_usage(FILE *f) {
    fprintf(f,
            "usage: deepseek init --preset NAME -o DIR [--dtype f32|bf16|fp8] [--seed N] [--shard-mb MB]\n"
            "                     [--vocab N] [--tokenizer DIR | --byte-tokenizer] [--random-bias] [-t THREADS]\n"
            "Writes a random-weight DeepSeek checkpoint in the Hugging Face layout: config.json,\n"
            "model-XXXXX-of-YYYYY.safetensors shards and model.safetensors.index.json, MTP layer included.\n"
            "  --preset   one of: %s\n"
            "  --dtype    f32 (default), bf16, or fp8 (e4m3 block matrices with 128x128 weight_scale_inv,\n"
            "             bf16 elsewhere, like the official FP8 release)\n"
            "  --seed     random seed (default 1)\n"
            "  --shard-mb largest shard in MiB (default 1024; there are always at least 2 shards)\n"
            "  --vocab    override the preset's vocabulary size (e.g. 129280 to pair with a real tokenizer)\n"
            "  --tokenizer copy tokenizer.json and tokenizer_config.json from DIR into the checkpoint; the\n"
            "             vocabulary (unless --vocab) and BOS/EOS ids follow that tokenizer\n"
            "  --random-bias  draw the MoE routing bias (e_score_correction_bias) at random instead of\n"
            "             zeros, so routing fixtures exercise it (training starts from zeros)\n"
            "  --byte-tokenizer  write a byte-level tokenizer (256 bytes + BOS 256 + EOS 257) and set the\n"
            "             vocabulary to its 258 tokens (unless --vocab), for training from scratch on raw text\n",
            ds_preset_names());
}

int cmd_init(int argc, char **argv) {
    const char *preset = NULL, *out = NULL, *tok_dir = NULL, *v;
    long vocab = 0;
    int byte_tok = 0;
    ds_init_params p = {.dtype = DS_INIT_F32, .seed = 1, .progress = 1};
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        long n;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { init_usage(stdout); return 0; }
        if (!strcmp(argv[i], "--byte-tokenizer")) byte_tok = 1;
        else if (!strcmp(argv[i], "--random-bias")) p.random_bias = 1;
        else if ((v = cli_opt(argc, argv, &i, "--preset", &missing))) preset = v;
        else if ((v = cli_opt(argc, argv, &i, "-o", &missing)) || (v = cli_opt(argc, argv, &i, "--out", &missing))) out = v;
        else if ((v = cli_opt(argc, argv, &i, "--dtype", &missing))) {
            if (!strcmp(v, "f32")) p.dtype = DS_INIT_F32;
            else if (!strcmp(v, "bf16")) p.dtype = DS_INIT_BF16;
            else if (!strcmp(v, "fp8")) p.dtype = DS_INIT_FP8;
            else return cli_usage_error("init", "--dtype must be f32, bf16 or fp8, got '%s'", v);
        } else if ((v = cli_opt(argc, argv, &i, "--seed", &missing))) {
            if (!cli_parse_int(v, 0, 0x7fffffffffffffffL, &n)) return cli_usage_error("init", "--seed expects a non-negative integer, got '%s'", v);
            p.seed = (uint64_t)n;
        } else if ((v = cli_opt(argc, argv, &i, "--shard-mb", &missing))) {
            if (!cli_parse_int(v, 1, 1L << 20, &n)) return cli_usage_error("init", "--shard-mb expects a positive integer, got '%s'", v);
            p.max_shard_bytes = n << 20;
        } else if ((v = cli_opt(argc, argv, &i, "--vocab", &missing))) {
            if (!cli_parse_int(v, 2, 1L << 24, &vocab)) return cli_usage_error("init", "--vocab expects an integer >= 2, got '%s'", v);
        } else if ((v = cli_opt(argc, argv, &i, "--tokenizer", &missing))) {
            tok_dir = v;
        } else if ((v = cli_opt(argc, argv, &i, "-t", &missing))) {
            if (!cli_apply_threads("init", v)) return 1;
        } else if (missing) return cli_usage_error("init", "%s needs a value", argv[i]);
        else return cli_usage_error("init", "unknown option '%s'", argv[i]);
    }
    if (!preset) return cli_usage_error("init", "--preset is required");
    if (!out) return cli_usage_error("init", "-o DIR is required");
    if (byte_tok && tok_dir) return cli_usage_error("init", "--tokenizer and --byte-tokenizer exclude each other");
    ds_config c;
    ds_error err = {{0}};
    ds_status st = ds_preset_config(&c, preset, &err);
    if (st) return cli_fail("init", st, &err);
    if (vocab) c.vocab_size = (int)vocab;
    if (byte_tok) {
        if (vocab && vocab < TOKENIZER_BYTES_VOCAB)
            return cli_usage_error("init", "--vocab %ld is too small for --byte-tokenizer (needs %d)", vocab, TOKENIZER_BYTES_VOCAB);
        if (!vocab) c.vocab_size = TOKENIZER_BYTES_VOCAB; // no rows the tokenizer never emits
        c.bos_token_id = TOKENIZER_BYTES_BOS;
        c.eos_token_id = TOKENIZER_BYTES_EOS;
    }
    if (tok_dir) {
        // the model's vocabulary and special ids follow the tokenizer it ships with
        ds_tokenizer *t = NULL;
        st = tokenizer_load(&t, tok_dir, &err);
        if (st) return cli_fail("init", st, &err);
        int tv = tokenizer_vocab_size(t);
        if (!vocab) c.vocab_size = tv;
        else if (vocab < tv) {
            tokenizer_free(t);
            return cli_usage_error("init", "--vocab %ld is smaller than the tokenizer's %d tokens", vocab, tv);
        }
        if (tokenizer_bos_id(t) >= 0) c.bos_token_id = tokenizer_bos_id(t);
        if (tokenizer_eos_id(t) >= 0) c.eos_token_id = tokenizer_eos_id(t);
        tokenizer_free(t);
    }
    cli_install_signals();
    p.cancel = &cli_interrupted;
    st = ds_init_write(&c, &p, out, &err);
    for (int k = 0; st == DS_OK && tok_dir && k < 2; k++) {
        static const char *const files[2] = {"tokenizer.json", "tokenizer_config.json"};
        char *src = file_join(tok_dir, files[k]), *dst = file_join(out, files[k]), *data = NULL;
        size_t size = 0;
        st = src && dst ? file_read_all(src, &data, &size, &err) : ds_error_set(&err, DS_ERR_OOM, "out of memory");
        if (st == DS_OK) st = file_write_atomic(dst, data, size, &err);
        free(src); free(dst); free(data);
    }
    if (st == DS_OK && byte_tok) st = tokenizer_write_bytelevel(out, &err);
    if (st) return cli_fail("init", st, &err);
    fprintf(stderr, "init: wrote preset '%s' to %s\n", preset, out);
    return 0;
}
