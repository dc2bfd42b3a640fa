/* cuda_device.cu — device discovery and memory for the CUDA backend.
 *
 * Every CUDA call goes through KL_CUDA_CHECK, which turns a failure into a kl_status whose
 * message names the file, the line and CUDA's own words. The op table itself (custom kernels and
 * cuBLAS) arrives with the CUDA backend issue; until then kl_ops_cuda() reports none, and
 * kl_device_resolve falls back to the CPU with its notice. */
#include <cuda_runtime.h>

extern "C" {
#include "kernels/cuda_api.h"
}

#define KL_CUDA_CHECK(call)                                                                        \
    do {                                                                                           \
        cudaError_t kl_e_ = (call);                                                                \
        if (kl_e_ != cudaSuccess)                                                                  \
            return kl_seterr(KL_EIO, "%s:%d: %s: %s", __FILE__, __LINE__, #call,                   \
                             cudaGetErrorString(kl_e_));                                           \
    } while (0)

extern "C" int kl_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); /* clear the sticky "no device / no driver" error */
        return 0;
    }
    return n;
}

extern "C" kl_status kl_cuda_malloc(int device, size_t bytes, void **out) {
    *out = NULL;
    KL_CUDA_CHECK(cudaSetDevice(device));
    KL_CUDA_CHECK(cudaMalloc(out, bytes));
    return KL_OK;
}

extern "C" void kl_cuda_free(int device, void *p) {
    if (!p) return;
    if (cudaSetDevice(device) == cudaSuccess) cudaFree(p);
}

extern "C" kl_status kl_cuda_memset0(int device, void *p, size_t bytes) {
    KL_CUDA_CHECK(cudaSetDevice(device));
    KL_CUDA_CHECK(cudaMemset(p, 0, bytes));
    return KL_OK;
}

extern "C" kl_status kl_cuda_memcpy(int device, void *dst, const void *src, size_t bytes,
                                    int to_device) {
    KL_CUDA_CHECK(cudaSetDevice(device));
    KL_CUDA_CHECK(cudaMemcpy(dst, src, bytes,
                             to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost));
    return KL_OK;
}

extern "C" const kl_ops *kl_ops_cuda(void) {
    return NULL;
}

extern "C" kl_status kl_cuda_ctx_create(int device, void **ctx) {
    (void)device;
    *ctx = NULL;
    return kl_seterr(KL_EUNSUPPORTED, "the CUDA op table is not built yet");
}

extern "C" void kl_cuda_ctx_free(void *ctx) {
    (void)ctx;
}
