/* cuda_nccl.cu — NCCL collectives on GPU buffers (the GPU half of runtime/collectives.c).
 *
 * The communicator is nonblocking (config.blocking = 0) so that no NCCL call can hang the
 * process: joining the job, enqueuing a collective and waiting for it are all polled here
 * (ncclCommGetAsyncError, cudaStreamQuery) against a deadline. A dead or hung peer otherwise
 * leaves every other rank spinning in an NCCL kernel forever. On a timeout or an error the
 * communicator is aborted (which also stops its kernels) and marked broken; later calls fail at
 * once with the first error.
 *
 * Built without NCCL (KILN_HAVE_NCCL unset) the entry points report that and do nothing. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kernels/cuda/cuda_ctx.cuh" /* kl_cuda_ctx (its compute stream, mode, status), KL_CU_TRY */

#ifdef KILN_HAVE_NCCL

#include <nccl.h>

static_assert(sizeof(ncclUniqueId) == KL_NCCL_ID_BYTES, "KL_NCCL_ID_BYTES must match NCCL");

/* One rank's membership of a job. */
typedef struct {
    ncclComm_t comm;  /* the communicator; NULL once aborted or destroyed */
    int device;       /* its CUDA ordinal */
    int rank;         /* this process's rank */
    int nranks;       /* ranks in the job */
    double timeout_s; /* the init bound, reused by kl_nccl_free's flush; <= 0: none */
    int broken;       /* 1 once aborted after a timeout or an error */
    char why[384];    /* that first error, for later calls */
} kl_nccl;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Between polls: spin for the first millisecond (a step's all-reduce is often shorter than one
 * sleep), then sleep a sixteenth of the time waited so far, at most 1 ms: the wait overshoots
 * the completion by at most ~6%. */
static void backoff(double waited) {
    if (waited < 1e-3) return;
    double s = waited / 16 < 1e-3 ? waited / 16 : 1e-3;
    struct timespec t = {0, (long)(s * 1e9)};
    nanosleep(&t, NULL);
}

static int expired(double t0, double timeout_s) {
    return timeout_s > 0 && now_s() - t0 > timeout_s;
}

/* The communicator's state: ncclSuccess, ncclInProgress (still initialising or enqueuing), or
 * an error (its own or the query's). */
static ncclResult_t comm_state(ncclComm_t comm) {
    ncclResult_t st = ncclSuccess;
    ncclResult_t r = ncclCommGetAsyncError(comm, &st);
    return r != ncclSuccess ? r : st;
}

/* Polls until the communicator leaves ncclInProgress; ncclInProgress means the deadline
 * (t0 + timeout_s) passed first. */
static ncclResult_t wait_ready(ncclComm_t comm, double t0, double timeout_s) {
    for (;;) {
        ncclResult_t st = comm_state(comm);
        if (st != ncclInProgress) return st;
        if (expired(t0, timeout_s)) return ncclInProgress;
        backoff(now_s() - t0);
    }
}

/* Aborts the communicator and keeps `msg` as the reason later calls give. Returns KL_EIO with
 * msg as this thread's error. */
static kl_status abort_with(kl_nccl *k, const char *msg) {
    snprintf(k->why, sizeof k->why, "%s", msg);
    k->broken = 1;
    if (k->comm) {
        ncclCommAbort(k->comm);
        k->comm = NULL;
    }
    return kl_seterr(KL_EIO, "%s", k->why);
}

/* An NCCL error in `what`: NCCL's words for the code and its last error message (read before the
 * abort frees the communicator). */
static kl_status nccl_failed(kl_nccl *k, const char *what, ncclResult_t r) {
    char msg[384];
    const char *last = k->comm ? ncclGetLastError(k->comm) : ncclGetLastError(NULL);
    snprintf(msg, sizeof msg, "NCCL %s on rank %d of %d: %s%s%s%s; the communicator was aborted",
             what, k->rank, k->nranks, ncclGetErrorString(r), last && *last ? " (" : "",
             last && *last ? last : "", last && *last ? ")" : "");
    return abort_with(k, msg);
}

static kl_status timed_out(kl_nccl *k, const char *what, double timeout_s) {
    char msg[384];
    snprintf(msg, sizeof msg,
             "NCCL %s on rank %d of %d did not complete within %g s (a peer rank is dead or "
             "hung); the communicator was aborted",
             what, k->rank, k->nranks, timeout_s);
    return abort_with(k, msg);
}

/* Whether a collective may start: a live communicator and an eager context on its device. */
static kl_status check_usable(kl_nccl *k, kl_cuda_ctx *c, const char *what) {
    if (!k || !c) return kl_seterr(KL_EINVAL, "NCCL %s: no communicator or no CUDA context", what);
    if (k->broken)
        return kl_seterr(KL_EIO,
                         "NCCL %s on rank %d of %d: the communicator was aborted after an earlier "
                         "failure: %s",
                         what, k->rank, k->nranks, k->why);
    if (c->device != k->device)
        return kl_seterr(KL_EINVAL,
                         "NCCL %s: the CUDA context is on cuda:%d, the communicator on cuda:%d",
                         what, c->device, k->device);
    if (c->mode != KL_MODE_EAGER)
        return kl_seterr(KL_EINVAL,
                         "NCCL %s cannot run inside a captured step graph (it waits for its "
                         "result); run it between graph launches",
                         what);
    if (c->status != KL_OK) return kl_seterr(c->status, "cuda:%d: %s", c->device, c->message);
    return KL_OK;
}

/* Waits for a collective that NCCL returned `r` for: first until it is enqueued (a nonblocking
 * communicator may return ncclInProgress and enqueue later; NCCL's rule is to poll its state
 * until ncclSuccess), then until the stream has run it, watching the communicator for
 * asynchronous errors (a peer's connection lost) all the while. */
static kl_status finish(kl_nccl *k, ncclResult_t r, cudaStream_t stream, double t0,
                        double timeout_s, const char *what) {
    if (r == ncclInProgress) r = wait_ready(k->comm, t0, timeout_s);
    if (r == ncclInProgress) return timed_out(k, what, timeout_s);
    if (r != ncclSuccess) return nccl_failed(k, what, r);
    for (;;) {
        cudaError_t e = cudaStreamQuery(stream);
        ncclResult_t st = comm_state(k->comm);
        if (st != ncclSuccess && st != ncclInProgress) return nccl_failed(k, what, st);
        if (e == cudaSuccess) return KL_OK;
        if (e != cudaErrorNotReady) {
            char msg[384];
            snprintf(msg, sizeof msg,
                     "NCCL %s on rank %d of %d: cudaStreamQuery: %s; the communicator was aborted",
                     what, k->rank, k->nranks, cudaGetErrorString(e));
            return abort_with(k, msg);
        }
        if (expired(t0, timeout_s)) return timed_out(k, what, timeout_s);
        backoff(now_s() - t0);
    }
}

extern "C" kl_status kl_nccl_unique_id(unsigned char id[KL_NCCL_ID_BYTES]) {
    ncclUniqueId uid;
    ncclResult_t r = ncclGetUniqueId(&uid);
    if (r != ncclSuccess)
        return kl_seterr(KL_EIO, "NCCL: ncclGetUniqueId: %s (%s)", ncclGetErrorString(r),
                         ncclGetLastError(NULL));
    memcpy(id, &uid, KL_NCCL_ID_BYTES);
    return KL_OK;
}

extern "C" kl_status kl_nccl_init(int device, int nranks, int rank,
                                  const unsigned char id[KL_NCCL_ID_BYTES], double timeout_s,
                                  void **out) {
    *out = NULL;
    if (nranks < 1 || rank < 0 || rank >= nranks)
        return kl_seterr(KL_EINVAL, "NCCL: rank %d outside 0..%d", rank, nranks - 1);
    KL_CU_TRY(cudaSetDevice(device));
    kl_nccl *k = new kl_nccl();
    k->device = device;
    k->rank = rank;
    k->nranks = nranks;
    k->timeout_s = timeout_s;
    ncclUniqueId uid;
    memcpy(&uid, id, KL_NCCL_ID_BYTES);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    double t0 = now_s();
    ncclResult_t r = ncclCommInitRankConfig(&k->comm, nranks, uid, rank, &config);
    if ((r == ncclSuccess || r == ncclInProgress) && k->comm)
        r = wait_ready(k->comm, t0, timeout_s);
    if (r == ncclSuccess && k->comm) {
        *out = k;
        return KL_OK;
    }
    char msg[384];
    if (r == ncclInProgress)
        snprintf(msg, sizeof msg,
                 "NCCL: rank %d of %d did not join within %g s (a peer rank is dead, hung, or "
                 "unreachable)",
                 rank, nranks, timeout_s);
    else
        snprintf(msg, sizeof msg, "NCCL: rank %d of %d: joining the job: %s (%s)", rank, nranks,
                 r == ncclSuccess ? "no communicator" : ncclGetErrorString(r),
                 ncclGetLastError(k->comm));
    kl_status s = abort_with(k, msg);
    delete k;
    return s;
}

extern "C" kl_status kl_nccl_allreduce_sum(void *nccl, void *cuda_ctx, float *buf, size_t n,
                                           double timeout_s) {
    kl_nccl *k = (kl_nccl *)nccl;
    kl_cuda_ctx *c = (kl_cuda_ctx *)cuda_ctx;
    KL_TRY(check_usable(k, c, "all-reduce"));
    if (n == 0) return KL_OK;
    KL_CU_TRY(cudaSetDevice(k->device));
    double t0 = now_s();
    ncclResult_t r = ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, k->comm, c->stream);
    return finish(k, r, c->stream, t0, timeout_s, "all-reduce");
}

extern "C" kl_status kl_nccl_broadcast(void *nccl, void *cuda_ctx, void *buf, size_t bytes,
                                       int root, double timeout_s) {
    kl_nccl *k = (kl_nccl *)nccl;
    kl_cuda_ctx *c = (kl_cuda_ctx *)cuda_ctx;
    KL_TRY(check_usable(k, c, "broadcast"));
    if (root < 0 || root >= k->nranks)
        return kl_seterr(KL_EINVAL, "NCCL broadcast: root %d outside 0..%d", root, k->nranks - 1);
    if (bytes == 0) return KL_OK;
    KL_CU_TRY(cudaSetDevice(k->device));
    double t0 = now_s();
    ncclResult_t r = ncclBroadcast(buf, buf, bytes, ncclUint8, root, k->comm, c->stream);
    return finish(k, r, c->stream, t0, timeout_s, "broadcast");
}

extern "C" void kl_nccl_free(void *nccl) {
    kl_nccl *k = (kl_nccl *)nccl;
    if (!k) return;
    if (k->comm) { /* a broken one was aborted already and has none */
        cudaSetDevice(k->device);
        /* A nonblocking communicator is flushed by ncclCommFinalize (polled, bounded: a dead peer
         * must not hang the exit) before ncclCommDestroy frees it; if that fails, abort. */
        double t0 = now_s();
        ncclResult_t r = ncclCommFinalize(k->comm);
        if (r == ncclSuccess || r == ncclInProgress) r = wait_ready(k->comm, t0, k->timeout_s);
        if (r == ncclSuccess)
            ncclCommDestroy(k->comm);
        else
            ncclCommAbort(k->comm);
    }
    delete k;
}

#else /* no NCCL in this build */

static kl_status no_nccl(void) {
    return kl_seterr(KL_EUNSUPPORTED, "this kiln was built without NCCL (CMake found no nccl.h and "
                                      "libnccl, or KILN_NCCL=OFF; see KILN_NCCL_ROOT)");
}

extern "C" kl_status kl_nccl_unique_id(unsigned char id[KL_NCCL_ID_BYTES]) {
    (void)id;
    return no_nccl();
}

extern "C" kl_status kl_nccl_init(int device, int nranks, int rank,
                                  const unsigned char id[KL_NCCL_ID_BYTES], double timeout_s,
                                  void **out) {
    (void)device, (void)nranks, (void)rank, (void)id, (void)timeout_s;
    *out = NULL;
    return no_nccl();
}

extern "C" kl_status kl_nccl_allreduce_sum(void *nccl, void *cuda_ctx, float *buf, size_t n,
                                           double timeout_s) {
    (void)nccl, (void)cuda_ctx, (void)buf, (void)n, (void)timeout_s;
    return no_nccl();
}

extern "C" kl_status kl_nccl_broadcast(void *nccl, void *cuda_ctx, void *buf, size_t bytes,
                                       int root, double timeout_s) {
    (void)nccl, (void)cuda_ctx, (void)buf, (void)bytes, (void)root, (void)timeout_s;
    return no_nccl();
}

extern "C" void kl_nccl_free(void *nccl) {
    (void)nccl;
}

#endif
