/* cuda_elementwise.cu — activation forward/backward, dropout, AdamW, SGD and scaling: the CUDA
 * twins of kernels/cpu/cpu_ops.c, one thread per element in grid-stride loops, with the same
 * formulas and operation order as the CPU so results agree to rounding. */
#include "kernels/cuda/cuda_ctx.cuh"

#include "kernels/activation_math.h" /* kl_act_forward, kl_act_derivative (static inline) */

#define THREADS 256

__global__ void bias_act_fwd_kernel(int64_t total, int n, kl_act act, const float *bias, float *z,
                                    float *y) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        float v = z[i];
        if (bias) {
            v += bias[i % n];
            z[i] = v;
        }
        y[i] = kl_act_forward(act, v);
    }
}

void kl_cuda_bias_act_forward(void *ctx, int m, int n, kl_act act, const float *bias, float *z,
                              float *y) {
    kl_cuda_ctx *c = (kl_cuda_ctx *)ctx;
    if (!kl_cuda_runs(c)) return;
    int64_t total = (int64_t)m * n;
    if (total == 0 || (!bias && act == KL_ACT_IDENTITY && y == z)) return;
    bias_act_fwd_kernel<<<kl_blocks(total, THREADS), THREADS, 0, c->stream>>>(total, n, act, bias,
                                                                              z, y);
    KL_LAUNCHED(c);
}

/* ReLU's mask comes from y (y > 0 exactly where z > 0); the others differentiate at z. */
__global__ void bias_act_bwd_kernel(int64_t total, kl_act act, const float *z, const float *y,
                                    const float *dy, float *dz) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        float g = dy[i];
        if (act == KL_ACT_RELU)
            dz[i] = y[i] > 0.0f ? g : 0.0f;
        else
            dz[i] = g * kl_act_derivative(act, z[i]);
    }
}

void kl_cuda_bias_act_backward(void *ctx, int m, int n, kl_act act, const float *z, const float *y,
                               const float *dy, float *dz, float *dbias) {
    kl_cuda_ctx *c = (kl_cuda_ctx *)ctx;
    if (!kl_cuda_runs(c)) return;
    int64_t total = (int64_t)m * n;
    if (total > 0 && (act != KL_ACT_IDENTITY || dz != dy)) {
        if (act == KL_ACT_IDENTITY) {
            KL_CU(c, cudaMemcpyAsync(dz, dy, (size_t)total * sizeof(float),
                                     cudaMemcpyDeviceToDevice, c->stream));
        } else {
            bias_act_bwd_kernel<<<kl_blocks(total, THREADS), THREADS, 0, c->stream>>>(total, act, z,
                                                                                      y, dy, dz);
            KL_LAUNCHED(c);
        }
    }
    if (dbias) kl_cuda_colsum(ctx, m, n, dz, dbias);
}

/* ---- dropout: the seed is a per-step scalar ----------------------------------------------------
 */

struct dropout_args {
    uint64_t seed; /* counter-based generator seed */
    float p;       /* drop probability */
};

__global__ void dropout_kernel(int64_t n, dropout_args by_value, const dropout_args *slot,
                               const float *x, float *y) {
    dropout_args a = slot ? *slot : by_value;
    float keep_scale = 1.0f / (1.0f - a.p);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] = kl_rand_uniform(a.seed, (uint64_t)i) >= a.p ? x[i] * keep_scale : 0.0f;
}

void kl_cuda_dropout_forward(void *ctx, int64_t n, float p, uint64_t seed, const float *x,
                             float *y) {
    kl_cuda_ctx *c = (kl_cuda_ctx *)ctx;
    dropout_args a = {seed, p};
    const dropout_args *slot = (const dropout_args *)kl_cuda_scalars(c, &a, sizeof a);
    if (!kl_cuda_runs(c) || n == 0) return;
    dropout_kernel<<<kl_blocks(n, THREADS), THREADS, 0, c->stream>>>(n, a, slot, x, y);
    KL_LAUNCHED(c);
}

void kl_cuda_dropout_backward(void *ctx, int64_t n, float p, uint64_t seed, const float *dy,
                              float *dx) {
    kl_cuda_dropout_forward(ctx, n, p, seed, dy, dx);
}

/* ---- optimizers: coefficients are per-step scalars --------------------------------------------
 */

__global__ void adamw_kernel(int64_t n, float *param, const float *grad, float *m, float *v,
                             kl_adamw_coeffs by_value, const kl_adamw_coeffs *slot) {
    kl_adamw_coeffs c = slot ? *slot : by_value;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        /* Same order as the CPU twin (torch.optim.AdamW's single-tensor path). Explicit
         * roundings keep nvcc from contracting into FMAs the CPU does not use. */
        float g = grad[i];
        float p = __fmul_rn(param[i], c.decay);
        float mi = __fadd_rn(m[i], __fmul_rn(c.one_minus_beta1, __fsub_rn(g, m[i])));
        float vi =
            __fadd_rn(__fmul_rn(v[i], c.beta2), __fmul_rn(__fmul_rn(c.one_minus_beta2, g), g));
        m[i] = mi;
        v[i] = vi;
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), c.bias2_sqrt), c.eps);
        param[i] = __fadd_rn(p, __fdiv_rn(__fmul_rn(c.neg_step_size, mi), denom));
    }
}

void kl_cuda_adamw(void *ctx, int64_t n, float *param, const float *grad, float *m, float *v,
                   const kl_adamw_coeffs *co) {
    kl_cuda_ctx *c = (kl_cuda_ctx *)ctx;
    const kl_adamw_coeffs *slot = (const kl_adamw_coeffs *)kl_cuda_scalars(c, co, sizeof *co);
    if (!kl_cuda_runs(c) || n == 0) return;
    adamw_kernel<<<kl_blocks(n, THREADS), THREADS, 0, c->stream>>>(n, param, grad, m, v, *co, slot);
    KL_LAUNCHED(c);
}

struct sgd_args {
    float lr, momentum, weight_decay; /* per-step rate and constants */
    int nesterov;                     /* Nesterov variant */
};

__global__ void sgd_kernel(int64_t n, float *param, const float *grad, float *buf,
                           sgd_args by_value, const sgd_args *slot) {
    sgd_args a = slot ? *slot : by_value;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float g = __fadd_rn(grad[i], __fmul_rn(a.weight_decay, param[i]));
        float b = __fadd_rn(__fmul_rn(a.momentum, buf[i]), g);
        buf[i] = b;
        float step = a.nesterov ? __fadd_rn(g, __fmul_rn(a.momentum, b)) : b;
        param[i] = __fsub_rn(param[i], __fmul_rn(a.lr, step));
    }
}

void kl_cuda_sgd(void *ctx, int64_t n, float *param, const float *grad, float *buf, float lr,
                 float momentum, float weight_decay, int nesterov) {
    kl_cuda_ctx *c = (kl_cuda_ctx *)ctx;
    sgd_args a = {lr, momentum, weight_decay, nesterov};
    const sgd_args *slot = (const sgd_args *)kl_cuda_scalars(c, &a, sizeof a);
    if (!kl_cuda_runs(c) || n == 0) return;
    sgd_kernel<<<kl_blocks(n, THREADS), THREADS, 0, c->stream>>>(n, param, grad, buf, a, slot);
    KL_LAUNCHED(c);
}

__global__ void scale_kernel(int64_t n, float s, float *x) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        x[i] *= s;
}

void kl_cuda_scale(void *ctx, int64_t n, float s, float *x) {
    kl_cuda_ctx *c = (kl_cuda_ctx *)ctx;
    if (!kl_cuda_runs(c) || n == 0) return;
    scale_kernel<<<kl_blocks(n, THREADS), THREADS, 0, c->stream>>>(n, s, x);
    KL_LAUNCHED(c);
}
