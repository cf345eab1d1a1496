// deepseek: one binary, git-style subcommands; each lives in its own cmd_*.c file.
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"init", cmd_init, "write a random-weight checkpoint (HF layout) from a preset"},
    {"info", cmd_info, "architecture, parameter counts, bytes per token, planned memory"},
    {"logits", cmd_logits, "write the logits of every position of a token sequence as .npy"},
    {"generate", cmd_generate, "generate token ids from prompt ids"},
    {"tokenize", cmd_tokenize, "print the token ids of a text (needs only the tokenizer files)"},
    {"detokenize", cmd_detokenize, "print the text of token ids"},
    {"tokenizer-train", cmd_tokenizer_train, "train a byte-level BPE tokenizer (HF tokenizer.json) on text or JSONL"},
    {"run", cmd_run, "answer one prompt through the chat template, streaming the reply"},
    {"chat", cmd_chat, "interactive multi-turn chat"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server with continuous batching and a chat page"},
    {"train", cmd_train, "train (pre-train or fine-tune) a model on text, writing HF checkpoints"},
    {"grad", cmd_grad, "loss and gradient of every parameter for one token sequence"},
    {"convert", cmd_convert, "write a model as a llama.cpp GGUF file (f32, f16, bf16, q8_0, q4_0)"},
    {"quantize", cmd_quantize, "write a model quantized once (q8 or q4) as GGUF"},
    {"perplexity", cmd_perplexity, "perplexity on a text; with --quant --kl the KL cost of a quantization"},
    {"sft", cmd_sft, "supervised fine-tuning on chat JSONL (loss on the assistant reply)"},
    {"grpo", cmd_grpo, "GRPO reinforcement learning with rule-based rewards on task problems"},
    {"eval", cmd_eval, "pass@1, majority vote and format rate of a model on task problems"},
    {"tasks", cmd_tasks, "write verifiable-reward problems (arithmetic, countdown) as JSONL, with SFT traces"},
    {"plot", cmd_plot, "draw the loss curves of a training metrics file as a PNG"},
};

static void main_usage(FILE *f) {
    fprintf(f, "usage: deepseek <command> [options]   (deepseek <command> --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2) { main_usage(stderr); return 1; }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        main_usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "deepseek: unknown command '%s' (see deepseek --help)\n", argv[1]);
    return 1;
}
