/* cuda_api.h — the host-side CUDA entry points runtime/ needs, in plain C.
 *
 * Built from the .cu files in kernels/cuda/ when KILN_HAVE_CUDA is defined; otherwise
 * kernels/cuda_stub.c supplies versions that report "no CUDA in this build". */
#ifndef KL_CUDA_API_H
#define KL_CUDA_API_H

#include <stddef.h>

#include "kernels/ops.h"
#include "runtime/status.h"

/* Number of visible CUDA devices; -1 when the build has no CUDA. Never fails. */
int kl_cuda_device_count(void);
/* Why there is no usable device (after kl_cuda_device_count returned 0 or -1). */
const char *kl_cuda_unavailable_reason(void);

kl_status kl_cuda_malloc(int device, size_t bytes, void **out);
void kl_cuda_free(int device, void *p);
kl_status kl_cuda_memset0(int device, void *p, size_t bytes);
/* Page-locked host memory (cudaHostAlloc). */
kl_status kl_cuda_host_alloc(size_t bytes, void **out);
void kl_cuda_host_free(void *p);
/* to_device: 1 copies host -> device, 0 device -> host. */
kl_status kl_cuda_memcpy(int device, void *dst, const void *src, size_t bytes, int to_device);

/* The CUDA op table and a context (stream, cuBLASLt handle and workspace, step-graph state)
 * for a device. */
const kl_ops *kl_ops_cuda(void);
kl_status kl_cuda_ctx_create(int device, kl_precision precision, void **ctx);
void kl_cuda_ctx_free(void *ctx);

#endif
