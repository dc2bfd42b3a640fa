/* cuda_ctx.cuh — the CUDA backend's context and the helpers its .cu files share.
 *
 * One context per model: a compute stream, a copy stream for input staging, a cuBLASLt handle
 * and workspace, preallocated reduction scratch, the step graphs, and a sticky status. Ops
 * cannot return a status (the op table is shared with the CPU), so the first failure is kept
 * here, with file and line, and sync() returns it.
 *
 * Per-step scalars and graphs: a captured graph bakes kernel arguments in. Scalars that change
 * every step (dropout seeds, AdamW's coefficients, SGD's rate) therefore go through "slots":
 * while capturing or refilling, an op writes its scalars into a pinned host region and the
 * kernel reads them from the matching device region, which the graph's first node copies over
 * from the host at launch. Eagerly, the scalars are plain kernel arguments. */
#ifndef KL_CUDA_CTX_CUH
#define KL_CUDA_CTX_CUH

#include <cublasLt.h>
#include <cuda_runtime.h>

extern "C" {
#include "kernels/cuda_api.h"
}

#define KL_SLOT_REGION 16384     /* bytes of per-step scalars one step graph may use */
#define KL_REDUCE_BLOCKS 256     /* fixed grid of the two-pass reductions (deterministic) */
#define KL_COLSUM_CHUNKS 32      /* row chunks of the two-pass column sums */
#define KL_COLSUM_MAX_COLS 16384 /* widest matrix the two-pass column sum stages */
#define KL_GEMM_PLANS 64         /* cached cuBLASLt plans (shape + epilogue) */

typedef enum { KL_MODE_EAGER = 0, KL_MODE_CAPTURE = 1, KL_MODE_FILL = 2 } kl_cuda_mode;

/* A cuBLASLt matmul set up for one shape, transpose pair and epilogue. */
typedef struct {
    int transa, transb;        /* cuBLAS (column-major) transposes */
    int m, n, k;               /* cuBLAS dimensions */
    int lda, ldb, ldc;         /* leading dimensions */
    int epilogue;              /* cublasLtEpilogue_t */
    int ok;                    /* 1: a heuristic algorithm exists; 0: use the fallback */
    cublasLtMatmulDesc_t desc; /* compute type, transposes, epilogue */
    cublasLtMatrixLayout_t la; /* layouts of A, B, C (C doubles as D) */
    cublasLtMatrixLayout_t lb;
    cublasLtMatrixLayout_t lc;
    cublasLtMatmulAlgo_t algo; /* the heuristic's first choice */
} kl_gemm_plan;

typedef struct {
    int device;                              /* CUDA ordinal */
    kl_precision precision;                  /* GEMM compute type */
    cudaStream_t stream;                     /* compute */
    cudaStream_t copy_stream;                /* input staging */
    cudaEvent_t input_ready[KL_INPUT_SLOTS]; /* last copy into each staging slot */
    cublasLtHandle_t lt;                     /* cuBLASLt */
    void *workspace;                         /* cuBLASLt workspace */
    size_t workspace_size;                   /* its bytes */
    kl_gemm_plan plans[KL_GEMM_PLANS];       /* plan cache */
    int n_plans;                             /* plans in use */
    double *dscratch;                        /* [KL_REDUCE_BLOCKS + 2] reduction partials, device */
    float *fscratch;                         /* [KL_COLSUM_CHUNKS * KL_COLSUM_MAX_COLS] device */
    float *fscalar;                          /* [4] small device results (mean, norm) */
    char *slots_host;                        /* [KL_MAX_GRAPHS * KL_SLOT_REGION] pinned */
    char *slots_dev;                         /* [KL_MAX_GRAPHS * KL_SLOT_REGION] device */
    size_t slot_off;                         /* bytes of the current region used so far */
    int mode;                                /* kl_cuda_mode */
    int graph_id;                            /* graph being captured or refilled */
    size_t graph_slot_bytes[KL_MAX_GRAPHS];  /* slot bytes each captured step used */
    cudaGraph_t graph[KL_MAX_GRAPHS];        /* captured steps */
    cudaGraphExec_t exec[KL_MAX_GRAPHS];     /* their instantiations */
    kl_status status;                        /* first failure, KL_OK if none */
    char message[512];                       /* its message */
} kl_cuda_ctx;

/* Records the first failure in the context. */
void kl_cuda_fail(kl_cuda_ctx *c, kl_status s, const char *file, int line, const char *what,
                  const char *detail);

/* Checks a CUDA runtime call inside an op (records, does not return). */
#define KL_CU(c, call)                                                                             \
    do {                                                                                           \
        cudaError_t kl_e_ = (call);                                                                \
        if (kl_e_ != cudaSuccess)                                                                  \
            kl_cuda_fail((c), KL_EIO, __FILE__, __LINE__, #call, cudaGetErrorString(kl_e_));       \
    } while (0)

/* Checks a kernel launch. */
#define KL_LAUNCHED(c) KL_CU((c), cudaGetLastError())

/* Checks a CUDA runtime call in a function that returns kl_status. */
#define KL_CU_TRY(call)                                                                            \
    do {                                                                                           \
        cudaError_t kl_e_ = (call);                                                                \
        if (kl_e_ != cudaSuccess)                                                                  \
            return kl_seterr(KL_EIO, "%s:%d: %s: %s", __FILE__, __LINE__, #call,                   \
                             cudaGetErrorString(kl_e_));                                           \
    } while (0)

/* True when ops should launch work (eager or capturing); false while refilling a graph. */
static inline bool kl_cuda_runs(const kl_cuda_ctx *c) {
    return c->mode != KL_MODE_FILL;
}

/* Per-step scalars: copies `bytes` of `host` into the current graph's slot region and returns
 * the device address the kernel must read (capture and refill); NULL when eager (the kernel
 * takes the by-value copy). */
const void *kl_cuda_scalars(kl_cuda_ctx *c, const void *host, size_t bytes);

/* Blocks of `threads` covering n elements, capped for grid-stride loops. */
static inline unsigned kl_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > 65535L * 8) b = 65535L * 8;
    return (unsigned)b;
}

/* Ops implemented per file, gathered into the table by cuda_device.cu. */
void kl_cuda_gemm(void *ctx, int trans_a, int trans_b, int m, int n, int k, float alpha,
                  const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
void kl_cuda_linear_forward(void *ctx, int m, int n, int k, const float *x, const float *w,
                            const float *bias, kl_act act, float *z, float *y);
void kl_cuda_gemm_plans_free(kl_cuda_ctx *c);
void kl_cuda_bias_act_forward(void *ctx, int m, int n, kl_act act, const float *bias, float *z,
                              float *y);
void kl_cuda_bias_act_backward(void *ctx, int m, int n, kl_act act, const float *z, const float *y,
                               const float *dy, float *dz, float *dbias);
void kl_cuda_dropout_forward(void *ctx, int64_t n, float p, uint64_t seed, const float *x,
                             float *y);
void kl_cuda_dropout_backward(void *ctx, int64_t n, float p, uint64_t seed, const float *dy,
                              float *dx);
void kl_cuda_adamw(void *ctx, int64_t n, float *param, const float *grad, float *m, float *v,
                   const kl_adamw_coeffs *co);
void kl_cuda_sgd(void *ctx, int64_t n, float *param, const float *grad, float *buf, float lr,
                 float momentum, float weight_decay, int nesterov);
void kl_cuda_scale(void *ctx, int64_t n, float s, float *x);
void kl_cuda_softmax_xent(void *ctx, int m, int n, const float *logits, const int32_t *labels,
                          float *probs, float *row_loss, float *dlogits, float grad_scale);
void kl_cuda_mse(void *ctx, int m, int n, const float *pred, const float *target, float *row_loss,
                 float *dpred, float grad_scale);
void kl_cuda_mean_to_host(void *ctx, int n, const float *x, float *host_out);
void kl_cuda_colsum(void *ctx, int m, int n, const float *src, float *dst);
double kl_cuda_sumsq(void *ctx, int64_t n, const float *x);
void kl_cuda_clip_grad_norm(void *ctx, int64_t n, float *x, float max_norm, float *norm_host);

#endif
