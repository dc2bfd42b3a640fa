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

#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"

typedef enum {
    KL_ACT_IDENTITY = 0,
    KL_ACT_RELU = 1,
    KL_ACT_GELU = 2, /* exact: 0.5 x (1 + erf(x / sqrt 2)), as PyTorch's default */
    KL_ACT_TANH = 3,
    KL_ACT_SIGMOID = 4,
} kl_act;

#define KL_ACT_COUNT 5

/* GEMM precision: plain FP32, TF32 tensor cores, or BF16 tensor cores (FP32 inputs, outputs
 * and master weights; operands rounded to BF16, sums kept in FP32). The CPU computes FP32
 * whatever is asked. */
typedef enum {
    KL_PREC_FP32 = 0,
    KL_PREC_TF32 = 1,
    KL_PREC_BF16 = 2,
} kl_precision;

/* "fp32", "tf32", "bf16"; parse returns 0 on success, -1 if unknown. */
const char *kl_precision_name(kl_precision p);
int kl_precision_parse(const char *name, kl_precision *out);

/* "identity", "relu", "gelu", "tanh", "sigmoid" */
const char *kl_act_name(kl_act a);
/* Parses an activation name; returns 0 on success, -1 if unknown. */
int kl_act_parse(const char *name, kl_act *out);

/* The counter-based generator shared by every backend: a uniform in [0,1) from (seed, index),
 * so CPU and GPU dropout masks are identical and need no stored state. */
#ifdef __CUDACC__
#define KL_HOST_DEVICE __host__ __device__
#else
#define KL_HOST_DEVICE
#endif
static inline KL_HOST_DEVICE float kl_rand_uniform(uint64_t seed, uint64_t index) {
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

#define KL_INPUT_SLOTS 2 /* double-buffered batch staging */
#define KL_MAX_GRAPHS 2  /* one step graph per staging buffer */

typedef struct kl_ops {
    const char *name; /* "cpu" or "cuda" */

    /* C[m,n] = alpha * op(A) @ op(B) + beta * C, op(X) = X^T when trans_x. A is [m,k] (or [k,m]
     * transposed), B is [k,n] (or [n,k]). lda/ldb/ldc are row strides. */
    void (*gemm)(void *ctx, int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);

    /* A linear layer: z[m,n] = x[m,k] @ w[n,k]^T + bias[n], y = act(z). z is written whenever
     * act's backward needs it (gelu, tanh, sigmoid; always on the CPU); for relu and identity
     * the backward reads y. y may equal z only for identity. On CUDA the bias (and ReLU) run
     * in cuBLASLt's epilogue. */
    void (*linear_forward)(void *ctx, int m, int n, int k, const float *x, const float *w,
                           const float *bias, kl_act act, float *z, float *y);

    /* z[m,n] += bias[n] (bias may be NULL); y = act(z). y may equal z only for identity. */
    void (*bias_act_forward)(void *ctx, int m, int n, kl_act act, const float *bias, float *z,
                             float *y);

    /* dz = dy * act'(pre-activation): relu reads the mask from y (y > 0 exactly where z > 0,
     * also after inverted dropout, whose dropped units have dy = 0), the others read z.
     * If dbias != NULL, dbias[n] = sum over rows of dz (overwritten). dz may equal dy. */
    void (*bias_act_backward)(void *ctx, int m, int n, kl_act act, const float *z, const float *y,
                              const float *dy, float *dz, float *dbias);

    /* Numerically stable softmax over each row of logits[m,n] into probs. If labels != NULL:
     * row_loss[i] = -log p[i, labels[i]] and, if dlogits != NULL,
     * dlogits = (probs - onehot(labels)) * grad_scale. Labels must lie in [0,n). */
    void (*softmax_xent)(void *ctx, int m, int n, const float *logits, const int32_t *labels,
                         float *probs, float *row_loss, float *dlogits, float grad_scale);

    /* row_loss[i] = mean_j (pred - target)^2 over the row; dpred = 2 (pred - target) / n *
     * grad_scale (if dpred != NULL). */
    void (*mse)(void *ctx, int m, int n, const float *pred, const float *target, float *row_loss,
                float *dpred, float grad_scale);

    /* *host_out = mean of x[0..n) (summed in double, fixed order). host_out must come from
     * kl_host_alloc; on CUDA it is written asynchronously: read it after sync. */
    void (*mean_to_host)(void *ctx, int n, const float *x, float *host_out);

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

    /* Global-norm clipping done on the device: norm = sqrt(sum x^2) (double, fixed order); if
     * max_norm > 0 and norm > max_norm, x *= max_norm / (norm + 1e-6). *norm_host (from
     * kl_host_alloc, may be NULL) receives the norm before clipping; on CUDA after sync. */
    void (*clip_grad_norm)(void *ctx, int64_t n, float *x, float max_norm, float *norm_host);

    /* Returns sum of x[i]^2 (accumulated in double); blocks until known. */
    double (*sumsq)(void *ctx, int64_t n, const float *x);

    /* x *= s */
    void (*scale)(void *ctx, int64_t n, float s, float *x);

    /* dst = sum over rows of src[m,n] (column sums, fixed order), overwritten. */
    void (*colsum)(void *ctx, int m, int n, const float *src, float *dst);

    /* Waits for queued work and returns the backend's sticky status: the first failure of any
     * op since the context was made (an op cannot return one itself), with file and line. */
    kl_status (*sync)(void *ctx);

    /* Input staging (NULL on the CPU, which reads host batches in place). copy_in enqueues a
     * host-to-device copy of bytes from host memory (from kl_host_alloc) on the copy stream and
     * marks input slot `slot` (0..KL_INPUT_SLOTS-1) pending; wait_input makes the compute
     * stream wait for that slot's copies. So batch k+1 crosses the bus while step k computes. */
    void (*copy_in)(void *ctx, int slot, void *dev_dst, const void *host_src, size_t bytes);
    void (*wait_input)(void *ctx, int slot);

    /* Step graphs (NULL where the backend has none), one per id 0..KL_MAX_GRAPHS-1.
     * capture_begin starts recording the ops that follow; capture_end instantiates them as one
     * graph. Later, replay_begin makes the ops only note their per-step scalars (dropout seeds,
     * optimizer coefficients) without running, and replay_launch runs the whole recorded step
     * with those scalars. The ops between begin and launch must be the same calls in the same
     * order as when captured; replay_launch refuses a step that differs. */
    kl_status (*capture_begin)(void *ctx, int graph);
    kl_status (*capture_end)(void *ctx, int graph);
    kl_status (*replay_begin)(void *ctx, int graph);
    kl_status (*replay_launch)(void *ctx, int graph);
} kl_ops;

/* The CPU backend (always present). */
const kl_ops *kl_ops_cpu(void);

/* Sets how many threads the CPU backend uses for BLAS and element-wise loops (the two never run
 * at once, so they share the count instead of oversubscribing). n <= 0 means all cores. */
void kl_cpu_set_threads(int n);
int kl_cpu_get_threads(void);

/* Applies that count to the calling thread. OpenMP keeps its thread count per thread, so a thread
 * started after kl_cpu_set_threads (a server's worker) would otherwise run every parallel region
 * with all cores, its teams and the BLAS pool oversubscribing each other (measured: a batch of 20
 * rows took 11 ms instead of 0.4 ms on 2 cores). Cheap after the first call on a thread. */
void kl_cpu_adopt_threads(void);

#endif
