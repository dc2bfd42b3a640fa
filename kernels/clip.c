/* clip.c — backend-independent helpers: gradient-norm clipping (built from two ops, so every
 * backend gets it) and AdamW's per-step scalars. */
#include <math.h>

#include "kernels/ops.h"

double kl_clip_grad_norm(const kl_ops *ops, void *ctx, int64_t n, float *x, double max_norm) {
    double norm = sqrt(ops->sumsq(ctx, n, x));
    if (max_norm > 0 && norm > max_norm) ops->scale(ctx, n, (float)(max_norm / (norm + 1e-6)), x);
    return norm;
}

kl_adamw_coeffs kl_adamw_coeffs_for(double lr, double beta1, double beta2, double eps,
                                    double weight_decay, int64_t t) {
    kl_adamw_coeffs c;
    c.decay = (float)(1.0 - lr * weight_decay);
    c.one_minus_beta1 = (float)(1.0 - beta1);
    c.beta2 = (float)beta2;
    c.one_minus_beta2 = (float)(1.0 - beta2);
    c.neg_step_size = (float)(-(lr / (1.0 - pow(beta1, (double)t))));
    c.bias2_sqrt = (float)sqrt(1.0 - pow(beta2, (double)t));
    c.eps = (float)eps;
    return c;
}
