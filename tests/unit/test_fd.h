// Directional finite differences of a scalar loss of the training parameters (header-only,
// shared by the trainer and GRPO tests; include after cmocka.h and train/params.h).
#pragma once
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef double (*fd_loss_fn)(void *ctx); // the loss at the current parameters

// For each named tensor: a step of norm h along u = g_i / |g_i| (g: the analytic gradient of
// every parameter, ps->n floats) must change the loss at rate |g_i|, within tol (relative),
// by central differences. The parameters are restored.
static inline void fd_check_tensors(param_store *ps, const float *g, const char *const *names, int n, double h,
                                    double tol, fd_loss_fn loss, void *ctx) {
    for (int k = 0; k < n; k++) {
        int i = params_find(ps, names[k]);
        if (i < 0) fail_msg("no tensor %s", names[k]);
        int64_t m = ckpt_tensor_numel(&ps->list.t[i]);
        float *p = params_data(ps, i);
        const float *gi = g + ps->offset[i];
        double gn = 0;
        for (int64_t j = 0; j < m; j++) gn += (double)gi[j] * gi[j];
        gn = sqrt(gn);
        if (!(gn > 0)) fail_msg("%s: zero gradient", names[k]);
        float *p0 = malloc(sizeof(float) * (size_t)m);
        memcpy(p0, p, sizeof(float) * (size_t)m);
        for (int64_t j = 0; j < m; j++) p[j] = p0[j] + (float)(h * gi[j] / gn);
        double lp = loss(ctx);
        for (int64_t j = 0; j < m; j++) p[j] = p0[j] - (float)(h * gi[j] / gn);
        double lm = loss(ctx);
        memcpy(p, p0, sizeof(float) * (size_t)m);
        free(p0);
        double fd = (lp - lm) / (2 * h);
        if (!(fabs(fd - gn) <= tol * gn)) fail_msg("%s: directional FD %.6g vs |grad| %.6g", names[k], fd, gn);
    }
}
