// deepseek convert -m DIR --to gguf -o FILE.gguf [--type f32|f16|bf16|q8_0|q4_0]
// deepseek quantize -m DIR --quant q8|q4 -o FILE.gguf          (the same, named for its purpose)
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "model/gguf_model.h"

static void convert_usage(FILE *f, const char *cmd) {
    if (!strcmp(cmd, "quantize"))
        fprintf(f, "usage: deepseek quantize -m DIR --quant q8|q4 -o FILE.gguf [-t THREADS]\n"
                   "Writes the model quantized once (Q8_0 or Q4_0 matrices) as a GGUF file that both\n"
                   "deepseek (-m FILE.gguf) and llama.cpp load. Same as convert --to gguf --type q8_0|q4_0.\n");
    else
        fprintf(f, "usage: deepseek convert -m DIR --to gguf -o FILE.gguf [--type f32|f16|bf16|q8_0|q4_0] [-t THREADS]\n"
                   "Writes an HF DeepSeek checkpoint (any stored dtype, FP8 included) as a llama.cpp GGUF file\n"
                   "(architecture deepseek2, MLA form with attn_k_b / attn_v_b, experts stacked, the\n"
                   "tokenizer as tokenizer.ggml.* metadata). The MTP layer is left out, as llama.cpp's\n"
                   "converter does. Norms, router and routing bias stay F32; a matrix whose rows are not a\n"
                   "multiple of 32 values is written F32. Default type: f16.\n");
}

static int cmd_convert_common(const char *cmd, int argc, char **argv) {
    const char *dir = NULL, *out = NULL, *v;
    ds_dtype type = DS_F16;
    int to_ok = !strcmp(cmd, "quantize"), have_type = 0;
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { convert_usage(stdout, cmd); return 0; }
        if ((v = cli_opt(argc, argv, &i, "-m", &missing)) || (v = cli_opt(argc, argv, &i, "--model", &missing))) dir = v;
        else if ((v = cli_opt(argc, argv, &i, "-o", &missing)) || (v = cli_opt(argc, argv, &i, "--out", &missing))) out = v;
        else if (strcmp(cmd, "quantize") && (v = cli_opt(argc, argv, &i, "--to", &missing))) {
            if (strcmp(v, "gguf")) return cli_usage_error(cmd, "--to supports gguf only, got '%s'", v);
            to_ok = 1;
        } else if (strcmp(cmd, "quantize") && (v = cli_opt(argc, argv, &i, "--type", &missing))) {
            if (!strcmp(v, "f32")) type = DS_F32;
            else if (!strcmp(v, "f16")) type = DS_F16;
            else if (!strcmp(v, "bf16")) type = DS_BF16;
            else if (!strcmp(v, "q8_0") || !strcmp(v, "q8")) type = DS_Q8_0;
            else if (!strcmp(v, "q4_0") || !strcmp(v, "q4")) type = DS_Q4_0;
            else return cli_usage_error(cmd, "--type must be f32, f16, bf16, q8_0 or q4_0, got '%s'", v);
        } else if (!strcmp(cmd, "quantize") && (v = cli_opt(argc, argv, &i, "--quant", &missing))) {
            int q;
            if (!cli_parse_quant(cmd, v, &q)) return 1;
            if (q < 0) return cli_usage_error(cmd, "--quant must be q8 or q4");
            type = (ds_dtype)q;
            have_type = 1;
        } else if ((v = cli_opt(argc, argv, &i, "-t", &missing))) {
            if (!cli_apply_threads(cmd, v)) return 1;
        } else if (missing) return cli_usage_error(cmd, "%s needs a value", argv[i]);
        else return cli_usage_error(cmd, "unknown option '%s'", argv[i]);
    }
    if (!dir) return cli_usage_error(cmd, "-m DIR is required");
    if (!out) return cli_usage_error(cmd, "-o FILE.gguf is required");
    if (!to_ok) return cli_usage_error(cmd, "--to gguf is required (the only target format)");
    if (!strcmp(cmd, "quantize") && !have_type) return cli_usage_error(cmd, "--quant q8|q4 is required");
    if (!gguf_model_is_path(out)) return cli_usage_error(cmd, "the output name must end in .gguf, got '%s'", out);
    if (gguf_model_is_path(dir)) return cli_usage_error(cmd, "-m must be a Hugging Face model folder, not a GGUF file");
    gguf_export_opts o = {.type = type, .tok_dir = dir, .progress = isatty(2)};
    ds_error err = {{0}};
    ds_status st = gguf_model_export(dir, out, &o, &err);
    if (st) return cli_fail(cmd, st, &err);
    fprintf(stderr, "%s: wrote %s (%s)\n", cmd, out, ds_dtype_name(type));
    return 0;
}

int cmd_convert(int argc, char **argv) { return cmd_convert_common("convert", argc, argv); }
int cmd_quantize(int argc, char **argv) { return cmd_convert_common("quantize", argc, argv); }
