/* ops.h — the op table: every numeric operation training and inference need, per backend.
 *
 * kernels/ knows nothing of models or files. Each backend (cpu/, cuda/) fills one kl_ops table;
 * pointers passed to an op live on that backend's device. `ctx` is the backend's context (the
 * CUDA stream and cuBLAS handle; NULL on the CPU). Every CUDA op has a CPU twin here, and
 * tests/unit/test_ops runs both on the same inputs.
 *
 * All matrices are row-major float32.
 */
#ifndef KL_OPS_H
#define KL_OPS_H

#include <stdint.h>

typedef enum {
    KL_ACT_IDENTITY = 0,
    KL_ACT_RELU = 1,
    KL_ACT_GELU = 2, /* exact: 0.5 x (1 + erf(x / sqrt 2)), as PyTorch's default */
    KL_ACT_TANH = 3,
    KL_ACT_SIGMOID = 4,
} kl_act;

#define KL_ACT_COUNT 5

/* "identity", "relu", "gelu", "tanh", "sigmoid" */
const char *kl_act_name(kl_act a);
/* Parses an activation name; returns 0 on success, -1 if unknown. */
int kl_act_parse(const char *name, kl_act *out);

/* The counter-based generator shared by every backend: a uniform in [0,1) from (seed, index),
 * so CPU and GPU dropout masks are identical and need no stored state. */
static inline float kl_rand_uniform(uint64_t seed, uint64_t index) {
    uint64_t z =
        seed * 0x9E3779B97F4A7C15ull + index * 0xD1B54A32D192ED03ull + 0x8CB92BA72F3D8DD7ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z = z ^ (z >> 31);
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

/* One AdamW step's scalars, computed in double and rounded once to float (PyTorch's order):
 *   p *= decay; m += (g - m) * one_minus_beta1; v = v * beta2 + one_minus_beta2 * g * g;
 *   p += (neg_step_size * m) / (sqrt(v) / bias2_sqrt + eps) */
typedef struct kl_adamw_coeffs {
    float decay;           /* 1 - lr * weight_decay */
    float one_minus_beta1; /* 1 - beta1 */
    float beta2;           /* beta2 */
    float one_minus_beta2; /* 1 - beta2 */
    float neg_step_size;   /* -lr / (1 - beta1^t) */
    float bias2_sqrt;      /* sqrt(1 - beta2^t) */
    float eps;             /* denominator epsilon */
} kl_adamw_coeffs;

/* Coefficients for step t >= 1. */
kl_adamw_coeffs kl_adamw_coeffs_for(double lr, double beta1, double beta2, double eps,
                                    double weight_decay, int64_t t);

typedef struct kl_ops {
    const char *name; /* "cpu" or "cuda" */

    /* C[m,n] = alpha * op(A) @ op(B) + beta * C, op(X) = X^T when trans_x. A is [m,k] (or [k,m]
     * transposed), B is [k,n] (or [n,k]). lda/ldb/ldc are row strides. */
    void (*gemm)(void *ctx, int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);

    /* z[m,n] += bias[n] (bias may be NULL); y = act(z). y may equal z only for identity. */
    void (*bias_act_forward)(void *ctx, int m, int n, kl_act act, const float *bias, float *z,
                             float *y);

    /* dz = dy * act'(z); if dbias != NULL, dbias[n] = sum over rows of dz (overwritten).
     * dz may equal dy. */
    void (*bias_act_backward)(void *ctx, int m, int n, kl_act act, const float *z, const float *dy,
                              float *dz, float *dbias);

    /* Numerically stable softmax over each row of logits[m,n] into probs. If labels != NULL:
     * row_loss[i] = -log p[i, labels[i]] and, if dlogits != NULL,
     * dlogits = (probs - onehot(labels)) * grad_scale. Labels must lie in [0,n). */
    void (*softmax_xent)(void *ctx, int m, int n, const float *logits, const int32_t *labels,
                         float *probs, float *row_loss, float *dlogits, float grad_scale);

    /* row_loss[i] = mean_j (pred - target)^2 over the row; dpred = 2 (pred - target) / n *
     * grad_scale (if dpred != NULL). */
    void (*mse)(void *ctx, int m, int n, const float *pred, const float *target, float *row_loss,
                float *dpred, float grad_scale);

    /* Inverted dropout: y = x / (1-p) where kl_rand_uniform(seed, i) >= p, else 0. */
    void (*dropout_forward)(void *ctx, int64_t n, float p, uint64_t seed, const float *x, float *y);
    /* dx = dy masked and scaled the same way (recomputed from the seed). dx may equal dy. */
    void (*dropout_backward)(void *ctx, int64_t n, float p, uint64_t seed, const float *dy,
                             float *dx);

    /* AdamW over n values with coefficients the caller derives in double precision for step t
     * (kl_adamw_coeffs), exactly as torch.optim.AdamW does, so the two agree to rounding. */
    void (*adamw)(void *ctx, int64_t n, float *param, const float *grad, float *m, float *v,
                  const struct kl_adamw_coeffs *c);

    /* SGD with momentum (PyTorch semantics, dampening 0): g += wd * p; buf = mom * buf + g;
     * p -= lr * (nesterov ? g + mom * buf : buf). buf starts at zero. */
    void (*sgd)(void *ctx, int64_t n, float *param, const float *grad, float *buf, float lr,
                float momentum, float weight_decay, int nesterov);

    /* Returns sum of x[i]^2 (accumulated in double); blocks until known. */
    double (*sumsq)(void *ctx, int64_t n, const float *x);

    /* x *= s */
    void (*scale)(void *ctx, int64_t n, float s, float *x);

    /* dst = sum over rows of src[m,n] (column sums), overwritten. */
    void (*colsum)(void *ctx, int m, int n, const float *src, float *dst);

    /* Waits for queued work (no-op on the CPU). */
    void (*sync)(void *ctx);
} kl_ops;

/* The CPU backend (always present). */
const kl_ops *kl_ops_cpu(void);

/* Sets how many threads the CPU backend uses for BLAS and element-wise loops (the two never run
 * at once, so they share the count instead of oversubscribing). n <= 0 means all cores. */
void kl_cpu_set_threads(int n);
int kl_cpu_get_threads(void);

/* Global gradient-norm clipping over n values: returns the norm before clipping; scales x so
 * its norm is at most max_norm when max_norm > 0. */
double kl_clip_grad_norm(const kl_ops *ops, void *ctx, int64_t n, float *x, double max_norm);

#endif
