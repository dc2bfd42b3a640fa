/* cuda_device.cu — devices, memory, the backend context, step graphs and the op table.
 *
 * Every CUDA call is checked: in functions that return a kl_status the failure is returned
 * with file, line and CUDA's words; inside ops (which return nothing) it is recorded in the
 * context's sticky status that sync() reports. Nothing here calls exit(). */
#include <stdio.h>
#include <string.h>

#include "kernels/cuda/cuda_ctx.cuh"

/* ---- devices and memory ------------------------------------------------------------------ */

static char unavailable[256] = "";

extern "C" int kl_cuda_device_count(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        /* No device, no driver, or a driver older than this build's runtime: say which. */
        snprintf(unavailable, sizeof unavailable, "%s", cudaGetErrorString(e));
        (void)cudaGetLastError();
        return 0;
    }
    if (n == 0) snprintf(unavailable, sizeof unavailable, "no CUDA device is visible");
    return n;
}

extern "C" const char *kl_cuda_unavailable_reason(void) {
    return unavailable[0] ? unavailable : "no CUDA device is visible";
}

extern "C" kl_status kl_cuda_malloc(int device, size_t bytes, void **out) {
    *out = NULL;
    KL_CU_TRY(cudaSetDevice(device));
    cudaError_t e = cudaMalloc(out, bytes);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        return kl_seterr(KL_ENOMEM, "cuda:%d: out of memory allocating %zu bytes (%zu of %zu free)",
                         device, bytes, free_b, total_b);
    }
    KL_CU_TRY(e);
    return KL_OK;
}

extern "C" void kl_cuda_free(int device, void *p) {
    if (!p) return;
    if (cudaSetDevice(device) == cudaSuccess) cudaFree(p);
}

extern "C" kl_status kl_cuda_host_alloc(size_t bytes, void **out) {
    *out = NULL;
    KL_CU_TRY(cudaHostAlloc(out, bytes, cudaHostAllocDefault));
    return KL_OK;
}

extern "C" void kl_cuda_host_free(void *p) {
    if (p) cudaFreeHost(p);
}

extern "C" kl_status kl_cuda_memset0(int device, void *p, size_t bytes) {
    KL_CU_TRY(cudaSetDevice(device));
    KL_CU_TRY(cudaMemset(p, 0, bytes));
    return KL_OK;
}

extern "C" kl_status kl_cuda_memcpy(int device, void *dst, const void *src, size_t bytes,
                                    int to_device) {
    KL_CU_TRY(cudaSetDevice(device));
    KL_CU_TRY(
        cudaMemcpy(dst, src, bytes, to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost));
    /* A copy from pageable memory may return before its DMA lands, and kiln's streams do not
     * wait on the legacy stream: wait here so the next kernel on any stream sees the data. */
    if (to_device) KL_CU_TRY(cudaStreamSynchronize(cudaStreamLegacy));
    return KL_OK;
}

/* ---- context ------------------------------------------------------------------------------- */

void kl_cuda_fail(kl_cuda_ctx *c, kl_status s, const char *file, int line, const char *what,
                  const char *detail) {
    if (c->status != KL_OK) return;
    c->status = s;
    snprintf(c->message, sizeof c->message, "%s:%d: %s: %s", file, line, what, detail);
}

const void *kl_cuda_scalars(kl_cuda_ctx *c, const void *host, size_t bytes) {
    if (c->mode == KL_MODE_EAGER) return NULL;
    size_t off = (c->slot_off + 15) & ~(size_t)15;
    if (off + bytes > KL_SLOT_REGION) {
        kl_cuda_fail(c, KL_EINTERNAL, __FILE__, __LINE__, "step scalars",
                     "the step needs more than KL_SLOT_REGION bytes of per-step scalars");
        return NULL;
    }
    size_t base = (size_t)c->graph_id * KL_SLOT_REGION;
    memcpy(c->slots_host + base + off, host, bytes);
    c->slot_off = off + bytes;
    return c->slots_dev + base + off;
}

static kl_status ctx_init(kl_cuda_ctx *c, int device, kl_precision precision) {
    c->device = device;
    c->precision = precision;
    KL_CU_TRY(cudaSetDevice(device));
    /* A runtime newer than the driver is the usual broken install: say so plainly. */
    int drv = 0, rt = 0;
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    if (drv < rt)
        return kl_seterr(KL_EUNSUPPORTED,
                         "cuda:%d: the NVIDIA driver supports CUDA %d.%d but kiln was built with "
                         "CUDA %d.%d; update the driver or run with train.device=cpu",
                         device, drv / 1000, (drv % 1000) / 10, rt / 1000, (rt % 1000) / 10);
    KL_CU_TRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    KL_CU_TRY(cudaStreamCreateWithFlags(&c->copy_stream, cudaStreamNonBlocking));
    for (int i = 0; i < KL_INPUT_SLOTS; i++)
        KL_CU_TRY(cudaEventCreateWithFlags(&c->input_ready[i], cudaEventDisableTiming));
    cublasStatus_t bs = cublasLtCreate(&c->lt);
    if (bs != CUBLAS_STATUS_SUCCESS)
        return kl_seterr(KL_EIO, "cuda:%d: cublasLtCreate: %s", device, cublasGetStatusString(bs));
    c->workspace_size = 32u << 20;
    KL_CU_TRY(cudaMalloc(&c->workspace, c->workspace_size));
    KL_CU_TRY(cudaMalloc((void **)&c->dscratch, (KL_REDUCE_BLOCKS + 2) * sizeof(double)));
    KL_CU_TRY(cudaMalloc((void **)&c->fscratch,
                         (size_t)KL_COLSUM_CHUNKS * KL_COLSUM_MAX_COLS * sizeof(float)));
    KL_CU_TRY(cudaMalloc((void **)&c->fscalar, 4 * sizeof(float)));
    KL_CU_TRY(cudaHostAlloc((void **)&c->slots_host, (size_t)KL_MAX_GRAPHS * KL_SLOT_REGION,
                            cudaHostAllocDefault));
    KL_CU_TRY(cudaMalloc((void **)&c->slots_dev, (size_t)KL_MAX_GRAPHS * KL_SLOT_REGION));
    return KL_OK;
}

extern "C" void kl_cuda_ctx_free(void *ctx) {
    kl_cuda_ctx *c = (kl_cuda_ctx *)ctx;
    if (!c) return;
    cudaSetDevice(c->device);
    if (c->stream) cudaStreamSynchronize(c->stream);
    if (c->copy_stream) cudaStreamSynchronize(c->copy_stream);
    for (int g = 0; g < KL_MAX_GRAPHS; g++) {
        if (c->exec[g]) cudaGraphExecDestroy(c->exec[g]);
        if (c->graph[g]) cudaGraphDestroy(c->graph[g]);
    }
    kl_cuda_gemm_plans_free(c);
    if (c->lt) cublasLtDestroy(c->lt);
    cudaFree(c->workspace);
    cudaFree(c->dscratch);
    cudaFree(c->fscratch);
    cudaFree(c->fscalar);
    cudaFree(c->slots_dev);
    if (c->slots_host) cudaFreeHost(c->slots_host);
    for (int i = 0; i < KL_INPUT_SLOTS; i++)
        if (c->input_ready[i]) cudaEventDestroy(c->input_ready[i]);
    if (c->copy_stream) cudaStreamDestroy(c->copy_stream);
    if (c->stream) cudaStreamDestroy(c->stream);
    delete c;
}

extern "C" kl_status kl_cuda_ctx_create(int device, kl_precision precision, void **ctx) {
    *ctx = NULL;
    kl_cuda_ctx *c = new kl_cuda_ctx();
    memset(c, 0, sizeof *c);
    kl_status s = ctx_init(c, device, precision);
    if (s) {
        kl_cuda_ctx_free(c);
        return s;
    }
    *ctx = c;
    return KL_OK;
}

/* ---- synchronisation, staging and graphs ---------------------------------------------------- */

static kl_status cuda_sync(void *ctx) {
    kl_cuda_ctx *c = (kl_cuda_ctx *)ctx;
    if (c->mode == KL_MODE_EAGER) {
        KL_CU(c, cudaStreamSynchronize(c->copy_stream));
        KL_CU(c, cudaStreamSynchronize(c->stream));
    }
    if (c->status != KL_OK) return kl_seterr(c->status, "cuda:%d: %s", c->device, c->message);
    return KL_OK;
}

static void cuda_copy_in(void *ctx, int slot, void *dev_dst, const void *host_src, size_t bytes) {
    kl_cuda_ctx *c = (kl_cuda_ctx *)ctx;
    KL_CU(c, cudaMemcpyAsync(dev_dst, host_src, bytes, cudaMemcpyHostToDevice, c->copy_stream));
    KL_CU(c, cudaEventRecord(c->input_ready[slot], c->copy_stream));
}

static void cuda_wait_input(void *ctx, int slot) {
    kl_cuda_ctx *c = (kl_cuda_ctx *)ctx;
    KL_CU(c, cudaStreamWaitEvent(c->stream, c->input_ready[slot], 0));
}

static kl_status check_graph_id(kl_cuda_ctx *c, int g) {
    if (g < 0 || g >= KL_MAX_GRAPHS)
        return kl_seterr(KL_EINVAL, "step graph %d outside 0..%d", g, KL_MAX_GRAPHS - 1);
    if (c->status) return kl_seterr(c->status, "cuda:%d: %s", c->device, c->message);
    return KL_OK;
}

static kl_status cuda_capture_begin(void *ctx, int g) {
    kl_cuda_ctx *c = (kl_cuda_ctx *)ctx;
    KL_TRY(check_graph_id(c, g));
    if (c->exec[g]) {
        cudaGraphExecDestroy(c->exec[g]);
        cudaGraphDestroy(c->graph[g]);
        c->exec[g] = NULL;
        c->graph[g] = NULL;
    }
    KL_CU_TRY(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
    c->mode = KL_MODE_CAPTURE;
    c->graph_id = g;
    c->slot_off = 0;
    /* The graph's first node brings this step's scalars over from the pinned host region; it
     * reads the host memory when the graph runs, so refilled values take effect. */
    size_t base = (size_t)g * KL_SLOT_REGION;
    KL_CU(c, cudaMemcpyAsync(c->slots_dev + base, c->slots_host + base, KL_SLOT_REGION,
                             cudaMemcpyHostToDevice, c->stream));
    return KL_OK;
}

static kl_status cuda_capture_end(void *ctx, int g) {
    kl_cuda_ctx *c = (kl_cuda_ctx *)ctx;
    c->mode = KL_MODE_EAGER;
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(c->stream, &graph);
    if (e != cudaSuccess || c->status != KL_OK) {
        if (graph) cudaGraphDestroy(graph);
        if (c->status) return kl_seterr(c->status, "cuda:%d: %s", c->device, c->message);
        return kl_seterr(KL_EIO, "cudaStreamEndCapture: %s", cudaGetErrorString(e));
    }
    c->graph[g] = graph;
    KL_CU_TRY(cudaGraphInstantiate(&c->exec[g], graph, 0));
    c->graph_slot_bytes[g] = c->slot_off;
    return KL_OK;
}

static kl_status cuda_replay_begin(void *ctx, int g) {
    kl_cuda_ctx *c = (kl_cuda_ctx *)ctx;
    KL_TRY(check_graph_id(c, g));
    if (!c->exec[g]) return kl_seterr(KL_EINTERNAL, "step graph %d was never captured", g);
    c->mode = KL_MODE_FILL;
    c->graph_id = g;
    c->slot_off = 0;
    return KL_OK;
}

static kl_status cuda_replay_launch(void *ctx, int g) {
    kl_cuda_ctx *c = (kl_cuda_ctx *)ctx;
    int refilled = c->mode == KL_MODE_FILL;
    c->mode = KL_MODE_EAGER;
    KL_TRY(check_graph_id(c, g));
    if (!c->exec[g]) return kl_seterr(KL_EINTERNAL, "step graph %d was never captured", g);
    if (refilled && c->slot_off != c->graph_slot_bytes[g])
        return kl_seterr(KL_EINTERNAL,
                         "step graph %d: this step's ops differ from the captured ones "
                         "(%zu bytes of scalars, captured %zu)",
                         g, c->slot_off, c->graph_slot_bytes[g]);
    KL_CU_TRY(cudaGraphLaunch(c->exec[g], c->stream));
    return KL_OK;
}

/* ---- the op table ---------------------------------------------------------------------------- */

static kl_ops make_table(void) {
    kl_ops t;
    memset(&t, 0, sizeof t);
    t.name = "cuda";
    t.gemm = kl_cuda_gemm;
    t.linear_forward = kl_cuda_linear_forward;
    t.bias_act_forward = kl_cuda_bias_act_forward;
    t.bias_act_backward = kl_cuda_bias_act_backward;
    t.softmax_xent = kl_cuda_softmax_xent;
    t.mse = kl_cuda_mse;
    t.mean_to_host = kl_cuda_mean_to_host;
    t.dropout_forward = kl_cuda_dropout_forward;
    t.dropout_backward = kl_cuda_dropout_backward;
    t.adamw = kl_cuda_adamw;
    t.sgd = kl_cuda_sgd;
    t.clip_grad_norm = kl_cuda_clip_grad_norm;
    t.sumsq = kl_cuda_sumsq;
    t.scale = kl_cuda_scale;
    t.colsum = kl_cuda_colsum;
    t.sync = cuda_sync;
    t.copy_in = cuda_copy_in;
    t.wait_input = cuda_wait_input;
    t.capture_begin = cuda_capture_begin;
    t.capture_end = cuda_capture_end;
    t.replay_begin = cuda_replay_begin;
    t.replay_launch = cuda_replay_launch;
    return t;
}

static const kl_ops cuda_ops = make_table();

extern "C" const kl_ops *kl_ops_cuda(void) {
    return &cuda_ops;
}
