/* adamw_coeffs.c — AdamW's per-step scalars, derived once on the host for every backend. */
#include <math.h>

#include "kernels/ops.h"

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
