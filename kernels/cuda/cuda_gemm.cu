/* cuda_gemm.cu — matrix products through cuBLASLt, with bias and activation in the epilogue.
 *
 * kiln's matrices are row-major; cuBLAS is column-major. A row-major X[r,c] with row stride ld
 * is the column-major X^T[c,r] with the same ld, so C = op(A) op(B) (row-major) is computed as
 * C^T = op(B)^T op(A)^T: cuBLAS's first operand is B with B's transpose flag, its second is A
 * with A's, M = n, N = m. A linear layer y = x W^T + b becomes C^T[n,m] = W^T[n,k] x^T[k,m]
 * with the bias broadcast along C^T's rows, which is what cuBLASLt's BIAS epilogues do.
 *
 * Plans (descriptors, layouts and the heuristic's algorithm) are cached per shape, so a step
 * allocates nothing after its first run. An epilogue cuBLASLt cannot do for a shape falls back
 * to a plain product plus kiln's own bias/activation kernel. */
#include "kernels/cuda/cuda_ctx.cuh"

static cublasComputeType_t compute_type(kl_precision p) {
    switch (p) {
    case KL_PREC_TF32:
        return CUBLAS_COMPUTE_32F_FAST_TF32;
    case KL_PREC_BF16:
        return CUBLAS_COMPUTE_32F_FAST_16BF;
    case KL_PREC_FP32:
        break;
    }
    return CUBLAS_COMPUTE_32F;
}

static void plan_destroy(kl_gemm_plan *p) {
    if (p->lc) cublasLtMatrixLayoutDestroy(p->lc);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    memset(p, 0, sizeof *p);
}

void kl_cuda_gemm_plans_free(kl_cuda_ctx *c) {
    for (int i = 0; i < c->n_plans; i++)
        plan_destroy(&c->plans[i]);
    c->n_plans = 0;
}

#define LT_OK(st) ((st) == CUBLAS_STATUS_SUCCESS)

/* Finds or builds the plan for a cuBLAS-convention product. Returns NULL (and records why) only
 * when even a plan without epilogue cannot be made. */
static kl_gemm_plan *get_plan(kl_cuda_ctx *c, int ta, int tb, int M, int N, int K, int lda, int ldb,
                              int ldc, cublasLtEpilogue_t epi) {
    for (int i = 0; i < c->n_plans; i++) {
        kl_gemm_plan *p = &c->plans[i];
        if (p->transa == ta && p->transb == tb && p->m == M && p->n == N && p->k == K &&
            p->lda == lda && p->ldb == ldb && p->ldc == ldc && p->epilogue == (int)epi)
            return p;
    }
    if (c->n_plans == KL_GEMM_PLANS) kl_cuda_gemm_plans_free(c); /* a new model's shapes */
    kl_gemm_plan *p = &c->plans[c->n_plans];
    memset(p, 0, sizeof *p);
    p->transa = ta, p->transb = tb, p->m = M, p->n = N, p->k = K;
    p->lda = lda, p->ldb = ldb, p->ldc = ldc, p->epilogue = (int)epi;
    cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasStatus_t st = cublasLtMatmulDescCreate(&p->desc, compute_type(c->precision), CUDA_R_32F);
    if (LT_OK(st))
        st = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa);
    if (LT_OK(st))
        st = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb);
    if (LT_OK(st))
        st = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                            sizeof epi);
    /* Stored shapes: A is M x K (or K x M when transposed), B is K x N (or N x K). */
    if (LT_OK(st)) st = cublasLtMatrixLayoutCreate(&p->la, CUDA_R_32F, ta ? K : M, ta ? M : K, lda);
    if (LT_OK(st)) st = cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_32F, tb ? N : K, tb ? K : N, ldb);
    if (LT_OK(st)) st = cublasLtMatrixLayoutCreate(&p->lc, CUDA_R_32F, M, N, ldc);
    if (!LT_OK(st)) {
        plan_destroy(p);
        kl_cuda_fail(c, KL_EIO, __FILE__, __LINE__, "cuBLASLt plan", cublasGetStatusString(st));
        return NULL;
    }
    cublasLtMatmulPreference_t pref = NULL;
    int found = 0;
    cublasLtMatmulHeuristicResult_t res;
    memset(&res, 0, sizeof res);
    if (LT_OK(cublasLtMatmulPreferenceCreate(&pref))) {
        uint64_t ws = c->workspace_size;
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                             sizeof ws);
        if (!LT_OK(cublasLtMatmulAlgoGetHeuristic(c->lt, p->desc, p->la, p->lb, p->lc, p->lc, pref,
                                                  1, &res, &found)))
            found = 0;
        cublasLtMatmulPreferenceDestroy(pref);
    }
    p->ok = found > 0;
    if (p->ok) p->algo = res.algo;
    c->n_plans++;
    return p;
}

/* Runs a planned product; returns false if cuBLASLt refused it (the caller falls back). */
static bool run_plan(kl_cuda_ctx *c, kl_gemm_plan *p, float alpha, const float *a, const float *b,
                     float beta, float *out, const float *bias) {
    if (!p || !p->ok) return false;
    if (bias)
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                       sizeof bias);
    cublasStatus_t st =
        cublasLtMatmul(c->lt, p->desc, &alpha, a, p->la, b, p->lb, &beta, out, p->lc, out, p->lc,
                       &p->algo, c->workspace, c->workspace_size, c->stream);
    if (!LT_OK(st) && p->epilogue != (int)CUBLASLT_EPILOGUE_DEFAULT) {
        p->ok = 0; /* an epilogue cuBLASLt refuses here: use the unfused path from now on */
        return false;
    }
    if (st == CUBLAS_STATUS_NOT_SUPPORTED) {
        p->ok = 0;
        return false;
    }
    if (!LT_OK(st))
        kl_cuda_fail(c, KL_EIO, __FILE__, __LINE__, "cublasLtMatmul", cublasGetStatusString(st));
    return true;
}

void kl_cuda_gemm(void *ctx, int trans_a, int trans_b, int m, int n, int k, float alpha,
                  const float *a, int lda, const float *b, int ldb, float beta, float *out,
                  int ldc) {
    kl_cuda_ctx *c = (kl_cuda_ctx *)ctx;
    if (!kl_cuda_runs(c)) return;
    /* Row-major C = op(A) op(B)  ==  column-major C^T = op(B)^T op(A)^T. */
    kl_gemm_plan *p =
        get_plan(c, trans_b, trans_a, n, m, k, ldb, lda, ldc, CUBLASLT_EPILOGUE_DEFAULT);
    if (!run_plan(c, p, alpha, b, a, beta, out, NULL) && c->status == KL_OK)
        kl_cuda_fail(c, KL_EUNSUPPORTED, __FILE__, __LINE__, "cublasLtMatmul",
                     "no algorithm for this shape");
}

void kl_cuda_linear_forward(void *ctx, int m, int n, int k, const float *x, const float *w,
                            const float *bias, kl_act act, float *z, float *y) {
    kl_cuda_ctx *c = (kl_cuda_ctx *)ctx;
    if (!kl_cuda_runs(c)) return;
    /* C^T[n,m] = W^T x^T: first operand W (row-major [n,k] = column-major [k,n], transposed),
     * second x (row-major [m,k] = column-major [k,m]). */
    /* ReLU runs in the epilogue. GELU does not: cuBLASLt's GELU epilogue is the tanh
     * approximation, and kiln's GELU is the exact erf form on every backend (and in ONNX), so
     * it gets the BIAS epilogue and kiln's own activation kernel, like tanh and sigmoid. */
    cublasLtEpilogue_t epi =
        act == KL_ACT_RELU ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
    float *out = act == KL_ACT_RELU ? y : z; /* ReLU: y only, its backward reads y */
    if (bias) {
        kl_gemm_plan *p = get_plan(c, 1, 0, n, m, k, k, k, n, epi);
        if (run_plan(c, p, 1.0f, w, x, 0.0f, out, bias)) {
            if (act != KL_ACT_RELU && act != KL_ACT_IDENTITY)
                kl_cuda_bias_act_forward(ctx, m, n, act, NULL, z, y);
            return;
        }
    }
    /* Fallback: plain product into z, then bias and activation in one kernel. */
    kl_gemm_plan *p = get_plan(c, 1, 0, n, m, k, k, k, n, CUBLASLT_EPILOGUE_DEFAULT);
    if (!run_plan(c, p, 1.0f, w, x, 0.0f, z, NULL)) {
        if (c->status == KL_OK)
            kl_cuda_fail(c, KL_EUNSUPPORTED, __FILE__, __LINE__, "cublasLtMatmul",
                         "no algorithm for this shape");
        return;
    }
    kl_cuda_bias_act_forward(ctx, m, n, act, bias, z, y);
}
