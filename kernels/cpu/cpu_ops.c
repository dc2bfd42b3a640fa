/* cpu_ops.c — the CPU backend: OpenBLAS sgemm for matrix products, OpenMP for element-wise loops.
 *
 * OpenBLAS and OpenMP share one thread count (kl_cpu_set_threads): a step alternates between a
 * GEMM and element-wise work, so the two pools never run at once and never oversubscribe.
 * Element-wise loops only go parallel above KL_PAR_MIN elements; below it, waking threads costs
 * more than the loop. Every reduction has a fixed order, so results do not depend on timing. */
#include <cblas.h> /* cblas_sgemm, openblas_set_num_threads */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels/activation_math.h" /* kl_act_forward, kl_act_derivative */
#include "kernels/ops.h"

#define KL_PAR_MIN (1 << 15)

static int cpu_threads = 1;

void kl_cpu_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    cpu_threads = n;
    openblas_set_num_threads(n);
    omp_set_num_threads(n);
}

int kl_cpu_get_threads(void) {
    return cpu_threads;
}

void kl_cpu_adopt_threads(void) {
    static _Thread_local int adopted; /* the count this thread last applied; 0 = none */
    int n = cpu_threads > 0 ? cpu_threads : omp_get_num_procs();
    if (adopted == n) return;
    omp_set_num_threads(n);
    adopted = n;
}

static void cpu_gemm(void *ctx, int trans_a, int trans_b, int m, int n, int k, float alpha,
                     const float *a, int lda, const float *b, int ldb, float beta, float *c,
                     int ldc) {
    (void)ctx;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static void cpu_bias_act_forward(void *ctx, int m, int n, kl_act act, const float *bias, float *z,
                                 float *y) {
    (void)ctx;
    int64_t total = (int64_t)m * n;
#pragma omp parallel for schedule(static) if (total >= KL_PAR_MIN)
    for (int i = 0; i < m; i++) {
        float *zr = z + (int64_t)i * n;
        float *yr = y + (int64_t)i * n;
        if (bias)
            for (int j = 0; j < n; j++)
                zr[j] += bias[j];
        if (act == KL_ACT_RELU) {
            for (int j = 0; j < n; j++)
                yr[j] = zr[j] > 0.0f ? zr[j] : 0.0f;
        } else if (act == KL_ACT_IDENTITY) {
            if (yr != zr) memcpy(yr, zr, (size_t)n * sizeof(float));
        } else {
            for (int j = 0; j < n; j++)
                yr[j] = kl_act_forward(act, zr[j]);
        }
    }
}

static void cpu_colsum(void *ctx, int m, int n, const float *src, float *dst) {
    (void)ctx;
    /* Columns are split between threads; each sums its columns over rows in row order, so the
     * result is the same for any thread count. */
    int64_t total = (int64_t)m * n;
#pragma omp parallel if (total >= KL_PAR_MIN)
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int lo = (int)((int64_t)n * t / nt), hi = (int)((int64_t)n * (t + 1) / nt);
        for (int j = lo; j < hi; j++)
            dst[j] = 0.0f;
        for (int i = 0; i < m; i++) {
            const float *row = src + (int64_t)i * n;
            for (int j = lo; j < hi; j++)
                dst[j] += row[j];
        }
    }
}

static void cpu_bias_act_backward(void *ctx, int m, int n, kl_act act, const float *z,
                                  const float *y, const float *dy, float *dz, float *dbias) {
    int64_t total = (int64_t)m * n;
    if (act == KL_ACT_IDENTITY) {
        if (dz != dy) memcpy(dz, dy, (size_t)total * sizeof(float));
    } else {
#pragma omp parallel for schedule(static) if (total >= KL_PAR_MIN)
        for (int i = 0; i < m; i++) {
            const float *zr = z + (int64_t)i * n;
            const float *yr = y + (int64_t)i * n;
            const float *dyr = dy + (int64_t)i * n;
            float *dzr = dz + (int64_t)i * n;
            /* Both operands are loaded unconditionally so the select vectorises (a
             * conditional load would not, and this loop ran 12x slower that way). */
            if (act == KL_ACT_RELU)
                for (int j = 0; j < n; j++) {
                    float g = dyr[j];
                    dzr[j] = yr[j] > 0.0f ? g : 0.0f;
                }
            else
                for (int j = 0; j < n; j++)
                    dzr[j] = dyr[j] * kl_act_derivative(act, zr[j]);
        }
    }
    if (dbias) cpu_colsum(ctx, m, n, dz, dbias);
}

static void cpu_linear_forward(void *ctx, int m, int n, int k, const float *x, const float *w,
                               const float *bias, kl_act act, float *z, float *y) {
    cpu_gemm(ctx, 0, 1, m, n, k, 1.0f, x, k, w, k, 0.0f, z, n);
    cpu_bias_act_forward(ctx, m, n, act, bias, z, y);
}

static void cpu_softmax_xent(void *ctx, int m, int n, const float *logits, const int32_t *labels,
                             float *probs, float *row_loss, float *dlogits, float grad_scale) {
    (void)ctx;
    int64_t total = (int64_t)m * n;
#pragma omp parallel for schedule(static) if (total >= KL_PAR_MIN)
    for (int i = 0; i < m; i++) {
        const float *lr = logits + (int64_t)i * n;
        float *pr = probs + (int64_t)i * n;
        float mx = lr[0];
        for (int j = 1; j < n; j++)
            mx = lr[j] > mx ? lr[j] : mx;
        double sum = 0.0;
        for (int j = 0; j < n; j++) {
            pr[j] = expf(lr[j] - mx);
            sum += pr[j];
        }
        float inv = (float)(1.0 / sum);
        for (int j = 0; j < n; j++)
            pr[j] *= inv;
        if (!labels) continue;
        int c = labels[i];
        if (row_loss) row_loss[i] = (float)(log(sum) - (double)(lr[c] - mx));
        if (dlogits) {
            float *dr = dlogits + (int64_t)i * n;
            for (int j = 0; j < n; j++)
                dr[j] = (pr[j] - (j == c ? 1.0f : 0.0f)) * grad_scale;
        }
    }
}

static void cpu_mse(void *ctx, int m, int n, const float *pred, const float *target,
                    float *row_loss, float *dpred, float grad_scale) {
    (void)ctx;
    for (int i = 0; i < m; i++) {
        double acc = 0.0;
        for (int j = 0; j < n; j++) {
            int64_t k = (int64_t)i * n + j;
            float diff = pred[k] - target[k];
            acc += (double)diff * diff;
            if (dpred) dpred[k] = 2.0f * diff / (float)n * grad_scale;
        }
        if (row_loss) row_loss[i] = (float)(acc / n);
    }
}

static void cpu_mean_to_host(void *ctx, int n, const float *x, float *host_out) {
    (void)ctx;
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += x[i];
    *host_out = n > 0 ? (float)(sum / n) : 0.0f;
}

static void cpu_dropout_forward(void *ctx, int64_t n, float p, uint64_t seed, const float *x,
                                float *y) {
    (void)ctx;
    float keep_scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (n >= KL_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        y[i] = kl_rand_uniform(seed, (uint64_t)i) >= p ? x[i] * keep_scale : 0.0f;
}

static void cpu_dropout_backward(void *ctx, int64_t n, float p, uint64_t seed, const float *dy,
                                 float *dx) {
    cpu_dropout_forward(ctx, n, p, seed, dy, dx);
}

static void cpu_adamw(void *ctx, int64_t n, float *param, const float *grad, float *m, float *v,
                      const kl_adamw_coeffs *c) {
    (void)ctx;
    /* Operation order of torch.optim.AdamW's single-tensor path (mul_, lerp_, mul_+addcmul_,
     * sqrt/div/add, addcdiv_), so loss curves match to rounding. */
    const float decay = c->decay, omb1 = c->one_minus_beta1, b2 = c->beta2;
    const float omb2 = c->one_minus_beta2, nss = c->neg_step_size, b2s = c->bias2_sqrt;
    const float eps = c->eps;
#pragma omp parallel for schedule(static) if (n >= KL_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float g = grad[i];
        float p = param[i] * decay;
        float mi = m[i] + omb1 * (g - m[i]);
        float vi = v[i] * b2 + omb2 * g * g;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / b2s + eps;
        param[i] = p + nss * mi / denom;
    }
}

static void cpu_sgd(void *ctx, int64_t n, float *param, const float *grad, float *buf, float lr,
                    float momentum, float weight_decay, int nesterov) {
    (void)ctx;
#pragma omp parallel for schedule(static) if (n >= KL_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float g = grad[i] + weight_decay * param[i];
        float b = momentum * buf[i] + g;
        buf[i] = b;
        param[i] -= lr * (nesterov ? g + momentum * b : b);
    }
}

static double cpu_sumsq(void *ctx, int64_t n, const float *x) {
    (void)ctx;
    /* Fixed-size blocks summed in index order: the same answer for any thread count. */
    enum { BLOCK = 4096 };
    int64_t nblocks = (n + BLOCK - 1) / BLOCK;
    double total = 0.0;
    for (int64_t b0 = 0; b0 < nblocks; b0 += 256) {
        double part[256];
        int64_t cnt = nblocks - b0 < 256 ? nblocks - b0 : 256;
#pragma omp parallel for schedule(static) if (n >= KL_PAR_MIN)
        for (int64_t b = 0; b < cnt; b++) {
            int64_t lo = (b0 + b) * BLOCK, hi = lo + BLOCK < n ? lo + BLOCK : n;
            double acc = 0.0;
            for (int64_t i = lo; i < hi; i++)
                acc += (double)x[i] * x[i];
            part[b] = acc;
        }
        for (int64_t b = 0; b < cnt; b++)
            total += part[b];
    }
    return total;
}

static void cpu_scale(void *ctx, int64_t n, float s, float *x) {
    (void)ctx;
#pragma omp parallel for schedule(static) if (n >= KL_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        x[i] *= s;
}

static void cpu_clip_grad_norm(void *ctx, int64_t n, float *x, float max_norm, float *norm_host) {
    double norm = sqrt(cpu_sumsq(ctx, n, x));
    if (max_norm > 0 && norm > max_norm) cpu_scale(ctx, n, (float)(max_norm / (norm + 1e-6)), x);
    if (norm_host) *norm_host = (float)norm;
}

static kl_status cpu_sync(void *ctx) {
    (void)ctx;
    return KL_OK;
}

static const kl_ops cpu_ops = {
    .name = "cpu",
    .gemm = cpu_gemm,
    .linear_forward = cpu_linear_forward,
    .bias_act_forward = cpu_bias_act_forward,
    .bias_act_backward = cpu_bias_act_backward,
    .softmax_xent = cpu_softmax_xent,
    .mse = cpu_mse,
    .mean_to_host = cpu_mean_to_host,
    .dropout_forward = cpu_dropout_forward,
    .dropout_backward = cpu_dropout_backward,
    .adamw = cpu_adamw,
    .sgd = cpu_sgd,
    .clip_grad_norm = cpu_clip_grad_norm,
    .sumsq = cpu_sumsq,
    .scale = cpu_scale,
    .colsum = cpu_colsum,
    .sync = cpu_sync,
};

const kl_ops *kl_ops_cpu(void) {
    return &cpu_ops;
}
