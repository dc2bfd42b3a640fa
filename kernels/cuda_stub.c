/* cuda_stub.c — stands in for kernels/cuda/ in a build without nvcc. */
#include "kernels/cuda_api.h"

int kl_cuda_device_count(void) {
    return -1;
}

const char *kl_cuda_unavailable_reason(void) {
    return "this build of kiln has no CUDA support";
}

static kl_status no_cuda(void) {
    return kl_seterr(KL_EUNSUPPORTED, "this build of kiln has no CUDA support");
}

kl_status kl_cuda_malloc(int device, size_t bytes, void **out) {
    (void)device;
    (void)bytes;
    *out = NULL;
    return no_cuda();
}

void kl_cuda_free(int device, void *p) {
    (void)device;
    (void)p;
}

kl_status kl_cuda_memset0(int device, void *p, size_t bytes) {
    (void)device;
    (void)p;
    (void)bytes;
    return no_cuda();
}

kl_status kl_cuda_memcpy(int device, void *dst, const void *src, size_t bytes, int to_device) {
    (void)device;
    (void)dst;
    (void)src;
    (void)bytes;
    (void)to_device;
    return no_cuda();
}

const kl_ops *kl_ops_cuda(void) {
    return NULL;
}

kl_status kl_cuda_host_alloc(size_t bytes, void **out) {
    (void)bytes;
    *out = NULL;
    return no_cuda();
}

void kl_cuda_host_free(void *p) {
    (void)p;
}

kl_status kl_cuda_ctx_create(int device, kl_precision precision, void **ctx) {
    (void)device;
    (void)precision;
    *ctx = NULL;
    return no_cuda();
}

void kl_cuda_ctx_free(void *ctx) {
    (void)ctx;
}

/* ---- NCCL ----------------------------------------------------------------------------------- */

static kl_status no_nccl(void) {
    return kl_seterr(KL_EUNSUPPORTED,
                     "this kiln was built without CUDA (NCCL needs the CUDA backend)");
}

kl_status kl_nccl_unique_id(unsigned char id[KL_NCCL_ID_BYTES]) {
    (void)id;
    return no_nccl();
}

kl_status kl_nccl_init(int device, int nranks, int rank, const unsigned char id[KL_NCCL_ID_BYTES],
                       double timeout_s, void **out) {
    (void)device;
    (void)nranks;
    (void)rank;
    (void)id;
    (void)timeout_s;
    *out = NULL;
    return no_nccl();
}

kl_status kl_nccl_allreduce_sum(void *nccl, void *cuda_ctx, float *buf, size_t n,
                                double timeout_s) {
    (void)nccl;
    (void)cuda_ctx;
    (void)buf;
    (void)n;
    (void)timeout_s;
    return no_nccl();
}

kl_status kl_nccl_broadcast(void *nccl, void *cuda_ctx, void *buf, size_t bytes, int root,
                            double timeout_s) {
    (void)nccl;
    (void)cuda_ctx;
    (void)buf;
    (void)bytes;
    (void)root;
    (void)timeout_s;
    return no_nccl();
}

void kl_nccl_free(void *nccl) {
    (void)nccl;
}
