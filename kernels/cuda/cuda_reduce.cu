/* cuda_reduce.cu — softmax cross-entropy, MSE, means, column sums, sums of squares and
 * gradient clipping. Every reduction has a fixed shape (fixed grid, fixed tree), so a result
 * never depends on scheduling: training is as deterministic on the GPU as on the CPU. */
#include "kernels/cuda/cuda_ctx.cuh"

#define THREADS 256

/* Sum of a block's values in double, in a fixed tree order; valid in thread 0. */
__device__ double block_sum(double v) {
    __shared__ double s[THREADS];
    s[threadIdx.x] = v;
    __syncthreads();
    for (int w = THREADS / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
        __syncthreads();
    }
    return s[0];
}

/* ---- softmax cross-entropy: one warp per row
 * ------------------------------------------------------ */

__global__ void softmax_xent_kernel(int m, int n, const float *logits, const int32_t *labels,
                                    float *probs, float *row_loss, float *dlogits,
                                    float grad_scale) {
    int warp = (int)((blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / 32);
    int lane = threadIdx.x % 32;
    if (warp >= m) return;
    const float *l = logits + (int64_t)warp * n;
    float *p = probs + (int64_t)warp * n;
    float mx = -INFINITY;
    for (int j = lane; j < n; j += 32)
        mx = fmaxf(mx, l[j]);
    for (int o = 16; o > 0; o >>= 1)
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    double sum = 0.0;
    for (int j = lane; j < n; j += 32) {
        float e = expf(l[j] - mx);
        p[j] = e;
        sum += e;
    }
    for (int o = 16; o > 0; o >>= 1)
        sum += __shfl_xor_sync(0xffffffffu, sum, o);
    float inv = (float)(1.0 / sum);
    for (int j = lane; j < n; j += 32)
        p[j] *= inv;
    if (!labels) return;
    int c = labels[warp];
    if (row_loss && lane == 0) row_loss[warp] = (float)(log(sum) - (double)(l[c] - mx));
    if (dlogits) {
        float *d = dlogits + (int64_t)warp * n;
        for (int j = lane; j < n; j += 32)
            d[j] = (p[j] - (j == c ? 1.0f : 0.0f)) * grad_scale;
    }
}

void kl_cuda_softmax_xent(void *ctx, int m, int n, const float *logits, const int32_t *labels,
                          float *probs, float *row_loss, float *dlogits, float grad_scale) {
    kl_cuda_ctx *c = (kl_cuda_ctx *)ctx;
    if (!kl_cuda_runs(c) || m == 0) return;
    unsigned blocks = (unsigned)(((int64_t)m * 32 + THREADS - 1) / THREADS);
    softmax_xent_kernel<<<blocks, THREADS, 0, c->stream>>>(m, n, logits, labels, probs, row_loss,
                                                           dlogits, grad_scale);
    KL_LAUNCHED(c);
}

/* ---- MSE: one thread per row
 * ---------------------------------------------------------------------- */

__global__ void mse_kernel(int m, int n, const float *pred, const float *target, float *row_loss,
                           float *dpred, float grad_scale) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= m) return;
    double acc = 0.0;
    for (int j = 0; j < n; j++) {
        int64_t k = (int64_t)i * n + j;
        float diff = pred[k] - target[k];
        acc += (double)diff * diff;
        if (dpred) dpred[k] = 2.0f * diff / (float)n * grad_scale;
    }
    if (row_loss) row_loss[i] = (float)(acc / n);
}

void kl_cuda_mse(void *ctx, int m, int n, const float *pred, const float *target, float *row_loss,
                 float *dpred, float grad_scale) {
    kl_cuda_ctx *c = (kl_cuda_ctx *)ctx;
    if (!kl_cuda_runs(c) || m == 0) return;
    mse_kernel<<<kl_blocks(m, THREADS), THREADS, 0, c->stream>>>(m, n, pred, target, row_loss,
                                                                 dpred, grad_scale);
    KL_LAUNCHED(c);
}

/* ---- mean of a short vector into pinned host memory
 * ------------------------------------------------- */

__global__ void mean_kernel(int n, const float *x, float *out) {
    double acc = 0.0;
    for (int i = threadIdx.x; i < n; i += THREADS)
        acc += x[i];
    double total = block_sum(acc);
    if (threadIdx.x == 0) *out = n > 0 ? (float)(total / n) : 0.0f;
}

void kl_cuda_mean_to_host(void *ctx, int n, const float *x, float *host_out) {
    kl_cuda_ctx *c = (kl_cuda_ctx *)ctx;
    if (!kl_cuda_runs(c)) return;
    mean_kernel<<<1, THREADS, 0, c->stream>>>(n, x, &c->fscalar[0]);
    KL_LAUNCHED(c);
    KL_CU(c, cudaMemcpyAsync(host_out, &c->fscalar[0], sizeof(float), cudaMemcpyDeviceToHost,
                             c->stream));
}

/* ---- column sums: row chunks, then chunks summed in order
 * -------------------------------------------- */

__global__ void colsum_partial_kernel(int m, int n, int chunks, const float *src, float *part) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    int chunk = blockIdx.y;
    if (j >= n) return;
    int lo = (int)((int64_t)m * chunk / chunks), hi = (int)((int64_t)m * (chunk + 1) / chunks);
    float acc = 0.0f;
    for (int i = lo; i < hi; i++)
        acc += src[(int64_t)i * n + j];
    part[(int64_t)chunk * n + j] = acc;
}

__global__ void colsum_final_kernel(int n, int chunks, const float *part, float *dst) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    float acc = 0.0f;
    for (int k = 0; k < chunks; k++)
        acc += part[(int64_t)k * n + j];
    dst[j] = acc;
}

void kl_cuda_colsum(void *ctx, int m, int n, const float *src, float *dst) {
    kl_cuda_ctx *c = (kl_cuda_ctx *)ctx;
    if (!kl_cuda_runs(c) || n == 0) return;
    /* Enough chunks to fill the GPU for tall matrices; one chunk writes dst directly. */
    int chunks = n <= KL_COLSUM_MAX_COLS ? (m >= 64 * KL_COLSUM_CHUNKS ? KL_COLSUM_CHUNKS : 1) : 1;
    dim3 grid(kl_blocks(n, THREADS), (unsigned)chunks);
    if (chunks == 1) {
        colsum_partial_kernel<<<grid, THREADS, 0, c->stream>>>(m, n, 1, src, dst);
        KL_LAUNCHED(c);
        return;
    }
    colsum_partial_kernel<<<grid, THREADS, 0, c->stream>>>(m, n, chunks, src, c->fscratch);
    KL_LAUNCHED(c);
    colsum_final_kernel<<<kl_blocks(n, THREADS), THREADS, 0, c->stream>>>(n, chunks, c->fscratch,
                                                                          dst);
    KL_LAUNCHED(c);
}

/* ---- sums of squares and clipping
 * ------------------------------------------------------------------ */

/* Pass 1: each of KL_REDUCE_BLOCKS blocks sums a fixed grid-stride share into part[block]. */
__global__ void sumsq_partial_kernel(int64_t n, const float *x, double *part) {
    double acc = 0.0;
    for (int64_t i = blockIdx.x * (int64_t)THREADS + threadIdx.x; i < n;
         i += (int64_t)KL_REDUCE_BLOCKS * THREADS)
        acc += (double)x[i] * x[i];
    double total = block_sum(acc);
    if (threadIdx.x == 0) part[blockIdx.x] = total;
}

/* Pass 2: one block sums the partials into part[KL_REDUCE_BLOCKS]. */
__global__ void sumsq_final_kernel(double *part) {
    double total = block_sum(threadIdx.x < KL_REDUCE_BLOCKS ? part[threadIdx.x] : 0.0);
    if (threadIdx.x == 0) part[KL_REDUCE_BLOCKS] = total;
}

static void sumsq_device(kl_cuda_ctx *c, int64_t n, const float *x) {
    sumsq_partial_kernel<<<KL_REDUCE_BLOCKS, THREADS, 0, c->stream>>>(n, x, c->dscratch);
    KL_LAUNCHED(c);
    sumsq_final_kernel<<<1, THREADS, 0, c->stream>>>(c->dscratch);
    KL_LAUNCHED(c);
}

double kl_cuda_sumsq(void *ctx, int64_t n, const float *x) {
    kl_cuda_ctx *c = (kl_cuda_ctx *)ctx;
    if (!kl_cuda_runs(c)) return 0.0;
    sumsq_device(c, n, x);
    double out = 0.0;
    KL_CU(c, cudaMemcpyAsync(&out, &c->dscratch[KL_REDUCE_BLOCKS], sizeof out,
                             cudaMemcpyDeviceToHost, c->stream));
    KL_CU(c, cudaStreamSynchronize(c->stream));
    return out;
}

/* Scales by max_norm / (norm + 1e-6) when the norm exceeds max_norm; records the norm. */
__global__ void clip_kernel(int64_t n, float *x, float max_norm, const double *sumsq,
                            float *norm_out) {
    double norm = sqrt(*sumsq);
    if (blockIdx.x == 0 && threadIdx.x == 0) *norm_out = (float)norm;
    if (!(max_norm > 0.0f && norm > max_norm)) return;
    float s = (float)(max_norm / (norm + 1e-6));
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        x[i] *= s;
}

void kl_cuda_clip_grad_norm(void *ctx, int64_t n, float *x, float max_norm, float *norm_host) {
    kl_cuda_ctx *c = (kl_cuda_ctx *)ctx;
    if (!kl_cuda_runs(c)) return;
    sumsq_device(c, n, x);
    clip_kernel<<<kl_blocks(n, THREADS), THREADS, 0, c->stream>>>(
        n, x, max_norm, &c->dscratch[KL_REDUCE_BLOCKS], &c->fscalar[1]);
    KL_LAUNCHED(c);
    if (norm_host)
        KL_CU(c, cudaMemcpyAsync(norm_host, &c->fscalar[1], sizeof(float), cudaMemcpyDeviceToHost,
                                 c->stream));
}
