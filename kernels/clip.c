/* clip.c — global gradient-norm clipping, built from two ops so every backend gets it. */
#include <math.h>

#include "kernels/ops.h"

double kl_clip_grad_norm(const kl_ops *ops, void *ctx, int64_t n, float *x, double max_norm) {
    double norm = sqrt(ops->sumsq(ctx, n, x));
    if (max_norm > 0 && norm > max_norm) ops->scale(ctx, n, (float)(max_norm / (norm + 1e-6)), x);
    return norm;
}
