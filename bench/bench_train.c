// Training throughput of a model folder: the full step `deepseek train` takes (forward and
// backward with the MTP and balance losses, global-norm clipping, AdamW, bias update) on a
// fixed random batch, next to this machine's measured f32 GEMM peak (MFU).
// usage: bench_train DIR [batch=8] [seq_len=128] [steps=5] [mtp_weight=0.3]
// Prints one JSON line, the same keys as bench/torch_train.py, so run.sh can set them side by side.
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "train/params.h"
#include "train/train_model.h"
#include "train/trainer.h"

#include <time.h>
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_train DIR [batch=8] [seq_len=128] [steps=5] [mtp_weight=0.3]\n");
        return 1;
    }
    int B = argc > 2 ? atoi(argv[2]) : 8, T = argc > 3 ? atoi(argv[3]) : 128, steps = argc > 4 ? atoi(argv[4]) : 5;
    float mtp = argc > 5 ? (float)atof(argv[5]) : 0.3f;
    if (B < 1 || T < 2 || steps < 1) { fprintf(stderr, "bench_train: bad sizes\n"); return 1; }
    param_store ps;
    ds_error err;
    if (params_load(&ps, argv[1], &err)) { fprintf(stderr, "bench_train: %s\n", err.msg); return 1; }
    train_model *tm;
    if (train_model_create(&tm, &ps, B, T, &err)) { fprintf(stderr, "bench_train: %s\n", err.msg); return 1; }
    int32_t *inp = malloc(sizeof(int32_t) * (size_t)B * T), *tgt = malloc(sizeof(int32_t) * (size_t)B * T);
    ds_rng r;
    ds_rng_seed(&r, 1, 0);
    for (int i = 0; i < B * T; i++) {
        inp[i] = (int32_t)(ds_rng_u32(&r) % (uint32_t)ps.cfg.vocab_size);
        tgt[i] = (int32_t)(ds_rng_u32(&r) % (uint32_t)ps.cfg.vocab_size);
    }
    int with_mtp = ps.cfg.num_nextn_predict_layers > 0 && mtp > 0;
    train_loss_weights w = {.ce_weight = 1.0f / (float)(B * T), .mtp_weight = with_mtp ? mtp / (float)(B * (T - 1)) : 0.0f, .balance_weight = 1e-4f / (float)B};
    adamw_params hp = adamw_defaults();
    double peak = trainer_peak_flops();
    double t_total = 0, loss_first = 0, loss_last = 0;
    int warm = 1;
    for (int s = 0; s < steps + warm; s++) {
        double t0 = now();
        train_loss L = {0};
        memset(ps.grads, 0, sizeof(float) * (size_t)ps.n);
        train_model_reset_load(tm);
        train_model_step(tm, inp, tgt, B, T, &w, &L);
        double gn = trainer_grad_norm(&ps);
        trainer_adamw(&ps, &hp, s + 1, 1e-4f, grad_clip_scale(gn, 1.0f));
        train_model_update_bias(tm, 0.001f, NULL);
        double dt = now() - t0;
        if (s >= warm) t_total += dt;
        if (s == 0) loss_first = L.ce_sum / (double)L.ce_count;
        loss_last = L.ce_sum / (double)L.ce_count;
        fprintf(stderr, "step %d: loss %.4f, %.3f s\n", s, loss_last, dt);
    }
    double sec = t_total / steps, tok_s = (double)B * T / sec;
    double mfu = train_model_flops_per_token(&ps.cfg, T, with_mtp) * tok_s / peak;
    printf("{\"impl\": \"deepseek.c\", \"threads\": %d, \"params\": %lld, \"batch\": %d, \"seq_len\": %d, "
           "\"tokens_per_step\": %d, \"steps\": %d, \"sec_per_step\": %.4f, \"tok_s\": %.1f, \"mfu\": %.4f, "
           "\"peak_gflops\": %.1f, \"activation_mib\": %.1f, \"loss_first\": %.4f, \"loss_last\": %.4f}\n",
           omp_get_max_threads(), (long long)ps.n, B, T, B * T, steps, sec, tok_s, mfu, peak * 1e-9,
           (double)train_model_bytes(tm) / (1 << 20), loss_first, loss_last);
    free(inp); free(tgt);
    train_model_free(tm);
    params_free(&ps);
    return 0;
}
