/* activation_math.h — the activations and their derivatives, one definition compiled for the
 * CPU (C) and for CUDA devices, so the twins cannot drift apart. */
#ifndef KL_ACTIVATION_MATH_H
#define KL_ACTIVATION_MATH_H

#include <math.h>

#include "kernels/ops.h" /* kl_act, KL_HOST_DEVICE */

/* act(z); GELU is the exact erf form, as PyTorch's default and ONNX's Erf expression. */
static inline KL_HOST_DEVICE float kl_act_forward(kl_act act, float z) {
    switch (act) {
    case KL_ACT_RELU:
        return z > 0.0f ? z : 0.0f;
    case KL_ACT_GELU:
        return 0.5f * z * (1.0f + erff(z * 0.70710678118654752f));
    case KL_ACT_TANH:
        return tanhf(z);
    case KL_ACT_SIGMOID:
        return 1.0f / (1.0f + expf(-z));
    case KL_ACT_IDENTITY:
        break;
    }
    return z;
}

/* d act(z) / dz (ReLU's is taken from y by the callers; here it is the step at z). */
static inline KL_HOST_DEVICE float kl_act_derivative(kl_act act, float z) {
    switch (act) {
    case KL_ACT_RELU:
        return z > 0.0f ? 1.0f : 0.0f;
    case KL_ACT_GELU: {
        float cdf = 0.5f * (1.0f + erff(z * 0.70710678118654752f));
        float pdf = expf(-0.5f * z * z) * 0.3989422804014327f; /* 1/sqrt(2 pi) */
        return cdf + z * pdf;
    }
    case KL_ACT_TANH: {
        float t = tanhf(z);
        return 1.0f - t * t;
    }
    case KL_ACT_SIGMOID: {
        float s = 1.0f / (1.0f + expf(-z));
        return s * (1.0f - s);
    }
    case KL_ACT_IDENTITY:
        break;
    }
    return 1.0f;
}

#endif
