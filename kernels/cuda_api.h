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

/* ---- NCCL: collectives on GPU buffers across the ranks of a data-parallel job ----------------
 *
 * Built from kernels/cuda/cuda_nccl.cu. Without NCCL (CMake found no libnccl, KILN_HAVE_NCCL
 * unset) or without CUDA, every function below returns KL_EUNSUPPORTED saying which.
 *
 * Every wait is bounded by timeout_s (<= 0: no bound). A communicator that timed out or failed
 * is aborted (ncclCommAbort) and stays broken: later calls fail at once with the first error.
 * Failures are KL_EIO and name this rank and the job's size; bad arguments are KL_EINVAL. */

#define KL_NCCL_ID_BYTES 128 /* sizeof(ncclUniqueId) */

/* A new job id (ncclGetUniqueId). One rank makes it; every rank must pass the same bytes to
 * kl_nccl_init (runtime/collectives.c broadcasts it over MPI). */
kl_status kl_nccl_unique_id(unsigned char id[KL_NCCL_ID_BYTES]);

/* Joins the job as `rank` of `nranks` on CUDA device `device` (a nonblocking communicator,
 * ncclCommInitRankConfig), waiting at most timeout_s for every rank to join. *out is owned by
 * the caller (kl_nccl_free); NULL on failure. */
kl_status kl_nccl_init(int device, int nranks, int rank, const unsigned char id[KL_NCCL_ID_BYTES],
                       double timeout_s, void **out);

/* In place over the device buffer buf[0..n): every rank ends with the element-wise sum. Runs
 * on cuda_ctx's compute stream (a context from kl_cuda_ctx_create on the same device), after
 * the work already queued there, and returns once it has completed (or failed, or timed out:
 * the bound covers that earlier work too). Not inside a captured step graph (KL_EINVAL). */
kl_status kl_nccl_allreduce_sum(void *nccl, void *cuda_ctx, float *buf, size_t n, double timeout_s);

/* Copies root's device buffer buf[0..bytes) to every rank, in place; waits as the all-reduce. */
kl_status kl_nccl_broadcast(void *nccl, void *cuda_ctx, void *buf, size_t bytes, int root,
                            double timeout_s);

/* Leaves the job: flushes and destroys a healthy communicator (bounded by the init timeout),
 * aborts a broken one; frees the handle. Safe on NULL. */
void kl_nccl_free(void *nccl);

#endif
