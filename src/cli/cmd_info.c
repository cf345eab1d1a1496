// deepseek info -m DIR [--ctx N] [--batch N] [--seqs N]
#include <stdio.h>
#include <omp.h>
#include <string.h>

#include "cli/cli.h"
#include "model/engine.h"

static void info_usage(FILE *f) {
    fprintf(f,
            "usage: deepseek info -m DIR [--ctx N] [--batch N] [--seqs N] [--quant q8|q4] [-t THREADS]\n"
            "Prints the architecture, total and active parameters, bytes of weights read per decoded\n"
            "token, cache bytes per token (absorbed latent and naive K/V), and the memory the engine\n"
            "allocates for the given limits (defaults: --ctx 4096 or the model's maximum, --batch 512, --seqs 1).\n");
}

static const char *human(double b, char *buf, size_t n) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int k = 0;
    while (b >= 1024.0 && k < 4) { b /= 1024.0; k++; }
    snprintf(buf, n, k ? "%.2f %s" : "%.0f %s", b, u[k]);
    return buf;
}

static const char *count(double v, char *buf, size_t n) {
    if (v >= 1e9) snprintf(buf, n, "%.3fB", v / 1e9);
    else if (v >= 1e6) snprintf(buf, n, "%.3fM", v / 1e6);
    else if (v >= 1e3) snprintf(buf, n, "%.1fK", v / 1e3);
    else snprintf(buf, n, "%.0f", v);
    return buf;
}

int cmd_info(int argc, char **argv) {
    const char *dir = NULL, *v;
    long ctx = 0, batch = 512, seqs = 1;
    int quant = -1;
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { info_usage(stdout); return 0; }
        if ((v = cli_opt(argc, argv, &i, "-m", &missing)) || (v = cli_opt(argc, argv, &i, "--model", &missing))) dir = v;
        else if ((v = cli_opt(argc, argv, &i, "--ctx", &missing))) {
            if (!cli_parse_int(v, 1, 1L << 30, &ctx)) return cli_usage_error("info", "--ctx expects a positive integer, got '%s'", v);
        } else if ((v = cli_opt(argc, argv, &i, "--batch", &missing))) {
            if (!cli_parse_int(v, 1, 1L << 24, &batch)) return cli_usage_error("info", "--batch expects a positive integer, got '%s'", v);
        } else if ((v = cli_opt(argc, argv, &i, "--seqs", &missing))) {
            if (!cli_parse_int(v, 1, 1L << 20, &seqs)) return cli_usage_error("info", "--seqs expects a positive integer, got '%s'", v);
        } else if ((v = cli_opt(argc, argv, &i, "--quant", &missing))) {
            if (!cli_parse_quant("info", v, &quant)) return 1;
        } else if ((v = cli_opt(argc, argv, &i, "-t", &missing))) {
            if (!cli_apply_threads("info", v)) return 1;
        } else if (missing) return cli_usage_error("info", "%s needs a value", argv[i]);
        else return cli_usage_error("info", "unknown option '%s'", argv[i]);
    }
    if (!dir) return cli_usage_error("info", "-m DIR is required");
    ds_model m;
    ds_error err = {{0}};
    ds_status st = cli_model_load(&m, dir, quant, &err);
    if (st) return cli_fail("info", st, &err);
    const ds_config *c = &m.cfg;
    if (ctx == 0) ctx = c->max_position_embeddings < 4096 ? c->max_position_embeddings : 4096;
    if (ctx > c->max_position_embeddings) {
        int max_pos = c->max_position_embeddings; // c points into m, which the free clears
        ds_model_free(&m);
        return cli_usage_error("info", "--ctx %ld exceeds max_position_embeddings %d", ctx, max_pos);
    }
    ds_model_stats s;
    ds_model_get_stats(&m, &s);
    char b1[32], b2[32], b3[32], b4[32];
    int L = c->num_hidden_layers, H = c->num_attention_heads;
    printf("model        %s (%s)\n", dir, c->arch == DS_ARCH_DEEPSEEK_V3 ? "deepseek_v3" : "deepseek_v2");
    printf("weights      %s, embed %s, first matrix %s%s\n", human((double)s.weight_bytes, b1, sizeof b1),
           ds_dtype_name(m.embed.dtype), ds_dtype_name(m.layers[0].kv_a.dtype), c->fp8 ? " (fp8 128x128 block scales)" : "");
    printf("layers       %d (%d dense, %d MoE)%s\n", L, c->first_k_dense_replace < L ? c->first_k_dense_replace : L,
           L - (c->first_k_dense_replace < L ? c->first_k_dense_replace : L), m.has_mtp ? " + 1 MTP" : "");
    printf("dims         hidden %d, vocab %d, heads %d, q_lora %d, kv_lora %d, qk %d+%d, v %d\n", c->hidden_size,
           c->vocab_size, H, c->q_lora_rank, c->kv_lora_rank, c->qk_nope_head_dim, c->qk_rope_head_dim, c->v_head_dim);
    printf("ffn          dense %d; experts %d routed (top-%d, %d groups keep %d) + %d shared, width %d\n",
           c->intermediate_size, c->n_routed_experts, c->num_experts_per_tok, c->n_group, c->topk_group,
           c->n_shared_experts, c->moe_intermediate_size);
    printf("routing      %s, %s, norm_topk_prob %s, scale %g\n", c->scoring_func == DS_SCORE_SIGMOID ? "sigmoid" : "softmax",
           c->topk_method == DS_TOPK_NOAUX_TC ? "noaux_tc" : c->topk_method == DS_TOPK_GREEDY ? "greedy" : "group_limited_greedy",
           c->norm_topk_prob ? "true" : "false", c->routed_scaling_factor);
    printf("rope         theta %g%s, factor %g, softmax scale %.7f\n", c->rope.theta, c->rope.yarn ? " yarn" : "",
           c->rope.factor, ds_config_softmax_scale(c));
    printf("params       total %s (%lld), active/token %s (%lld), MTP %s (%lld)\n", count((double)s.total_params, b1, sizeof b1),
           (long long)s.total_params, count((double)s.active_params, b2, sizeof b2), (long long)s.active_params,
           count((double)s.mtp_params, b3, sizeof b3), (long long)s.mtp_params);
    printf("decode reads %s of weights per token\n", human((double)s.active_weight_bytes, b1, sizeof b1));
    int64_t lat = (int64_t)(c->kv_lora_rank + c->qk_rope_head_dim) * L;
    int64_t naive = (int64_t)H * (c->qk_nope_head_dim + c->qk_rope_head_dim + c->v_head_dim) * L;
    printf("cache/token  absorbed %s (%lld values), naive K/V %s (%lld values), f32\n", human(4.0 * lat, b1, sizeof b1),
           (long long)lat, human(4.0 * naive, b2, sizeof b2), (long long)naive);
    ds_engine_limits lim = {.max_tokens = (int)batch, .max_seqs = (int)seqs, .max_ctx = (int)ctx, .max_logits = (int)batch};
    ds_engine_plan plan;
    ds_engine_plan_memory(c, &lim, omp_get_max_threads(), &plan);
    printf("engine       ctx %ld x %ld seqs, batch %ld: cache %s, activations %s, scratch %s, total %s\n", ctx, seqs, batch,
           human((double)plan.cache_bytes, b1, sizeof b1), human((double)plan.activation_bytes, b2, sizeof b2),
           human((double)plan.scratch_bytes, b3, sizeof b3), human((double)plan.total_bytes, b4, sizeof b4));
    ds_model_free(&m);
    return 0;
}
