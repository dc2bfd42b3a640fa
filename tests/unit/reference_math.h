/* reference_math.h — float64 references shared by the op and model tests. */
#ifndef KL_TEST_REFERENCE_MATH_H
#define KL_TEST_REFERENCE_MATH_H

#include <math.h>

#include "kernels/ops.h"

/* The activation in float64, as the kernels' documentation defines it. */
static inline double ref_act(kl_act act, double z) {
    switch (act) {
    case KL_ACT_RELU:
        return z > 0 ? z : 0;
    case KL_ACT_GELU:
        return 0.5 * z * (1 + erf(z / sqrt(2.0)));
    case KL_ACT_TANH:
        return tanh(z);
    case KL_ACT_SIGMOID:
        return 1 / (1 + exp(-z));
    case KL_ACT_IDENTITY:
        break;
    }
    return z;
}

#endif
