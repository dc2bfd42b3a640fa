/* collectives.c — the none and MPI backends of collectives.h: kiln's ring all-reduce and a chain
 * broadcast over MPI point-to-point messages, every wait bounded and every failure named. */
#include "runtime/collectives.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef KILN_HAVE_MPI
#include <mpi.h>
#endif

struct kl_comm {
    kl_comm_backend backend;           /* which one */
    int rank, size;                    /* in the job */
    int local_rank;                    /* on this host */
    int owns_mpi;                      /* kl_comm_init called MPI_Init (so free finalizes) */
    double timeout_s;                  /* bound on each wait for a peer; <= 0: none */
    const volatile sig_atomic_t *stop; /* gives up a wait when set, or NULL */
    int broken;                        /* a collective failed: the job must end */
    char error[512];                   /* what broke it */
    void *scratch;                     /* the ring's receive buffer */
    size_t scratch_bytes;              /* its size */
#ifdef KILN_HAVE_MPI
    MPI_Request *reqs; /* one exchange's segment requests */
    size_t n_reqs;     /* their capacity */
#endif
};

/* Whether mpirun (OpenMPI, or any PMI launcher) started this process. */
static int launched_by_mpirun(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

void kl_comm_ring_chunk(size_t n, int world, int k, size_t *begin, size_t *end) {
    *begin = n / (size_t)world * (size_t)k +
             ((size_t)k < n % (size_t)world ? (size_t)k : n % (size_t)world);
    *end = *begin + n / (size_t)world + ((size_t)k < n % (size_t)world);
}

void kl_comm_ring_sum_reference(const float *const *parts, int world, float *out, size_t n) {
    for (int c = 0; c < world; c++) {
        size_t b, e;
        kl_comm_ring_chunk(n, world, c, &b, &e);
        /* Chunk c starts at rank c and travels right: acc = acc + g_next, world - 1 times. */
        for (size_t i = b; i < e; i++) {
            float acc = parts[c][i];
            for (int s = 1; s < world; s++)
                acc = acc + parts[(c + s) % world][i];
            out[i] = acc;
        }
    }
}

#ifdef KILN_HAVE_MPI
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Marks the communicator broken with the error just set, and returns it. */
static kl_status broke(kl_comm *c, kl_status s) {
    c->broken = 1;
    snprintf(c->error, sizeof c->error, "%s", kl_errmsg());
    return s;
}

/* An MPI error code as a kiln error naming the call and the rank. */
static kl_status mpi_fail(kl_comm *c, const char *call, int code) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "code %d", code);
    return broke(c,
                 kl_seterr(KL_EIO, "%s failed on rank %d of %d: %s", call, c->rank, c->size, msg));
}

/* Waits until reqs[0..n) complete, spinning for 10 ms and then sleeping, or until MPI reports an
 * error, the stop flag is raised, or the timeout passes; `peer` is the rank they involve, named
 * in the error with what it failed to do ("sent nothing" / "took nothing"). */
static kl_status wait_reqs(kl_comm *c, MPI_Request *reqs, int n, int peer, const char *failed,
                           const char *what) {
    double start = now_s();
    for (long spins = 0;; spins++) {
        int done = 0;
        int rc = MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_fail(c, what, rc);
        if (done) return KL_OK;
        if (spins % 256) continue; /* polling drives MPI's progress: keep it tight */
        double waited = now_s() - start;
        if (waited < 0.01) continue;
        if (c->stop && *c->stop)
            return broke(c, kl_seterr(KL_ECANCELED,
                                      "%s: rank %d of %d was stopped by a signal while waiting for "
                                      "rank %d",
                                      what, c->rank, c->size, peer));
        if (c->timeout_s > 0 && waited > c->timeout_s)
            return broke(c, kl_seterr(KL_EIO,
                                      "%s: rank %d of %d waited %.0f s for rank %d, which %s: "
                                      "rank %d is dead or hung",
                                      what, c->rank, c->size, waited, peer, failed, peer));
        /* A peer this late is busy elsewhere (evaluating, writing a checkpoint): poll gently. */
        struct timespec nap = {0, waited < 1 ? 50000 : 1000000};
        nanosleep(&nap, NULL);
    }
}

/* Segment size of the ring's messages: segments are all posted at once, and each received one
 * is reduced while the next ones travel. (On one 2-core host, 128 KiB to unsegmented measured
 * alike within the machine's noise, smaller slightly worse; 1 MiB keeps a multi-MB chunk
 * pipelined over TCP between hosts.) */
#define SEGMENT ((size_t)1 << 20)

/* Called on each received segment [off, off + len) of an exchange, in order. */
typedef void (*fold_fn)(kl_comm *c, void *arg, size_t off, size_t len);

/* Sends send[0..sbytes) to rank `to` while receiving rbytes into recv from rank `from`, in
 * segments; fold (may be NULL) takes each received segment as soon as it lands. */
static kl_status exchange(kl_comm *c, const void *send, size_t sbytes, int to, void *recv,
                          size_t rbytes, int from, const char *what, fold_fn fold, void *arg) {
    size_t nr = recv ? (rbytes + SEGMENT - 1) / SEGMENT : 0;
    size_t nsend = send ? (sbytes + SEGMENT - 1) / SEGMENT : 0;
    if (nr + nsend > c->n_reqs) {
        MPI_Request *p = realloc(c->reqs, (nr + nsend) * sizeof *p);
        if (!p) return kl_seterr(KL_ENOMEM, "collectives: %zu requests", nr + nsend);
        c->reqs = p;
        c->n_reqs = nr + nsend;
    }
    MPI_Request *rreq = c->reqs, *sreq = c->reqs + nr;
    for (size_t i = 0; i < nr + nsend; i++)
        c->reqs[i] = MPI_REQUEST_NULL;
    for (size_t i = 0; i < nr; i++) {
        size_t off = i * SEGMENT, k = rbytes - off < SEGMENT ? rbytes - off : SEGMENT;
        int rc = MPI_Irecv((char *)recv + off, (int)k, MPI_BYTE, from, 7, MPI_COMM_WORLD, &rreq[i]);
        if (rc != MPI_SUCCESS) return mpi_fail(c, what, rc);
    }
    for (size_t i = 0; i < nsend; i++) {
        size_t off = i * SEGMENT, k = sbytes - off < SEGMENT ? sbytes - off : SEGMENT;
        int rc =
            MPI_Isend((const char *)send + off, (int)k, MPI_BYTE, to, 7, MPI_COMM_WORLD, &sreq[i]);
        if (rc != MPI_SUCCESS) return mpi_fail(c, what, rc);
    }
    for (size_t i = 0; i < nr; i++) {
        KL_TRY(wait_reqs(c, &rreq[i], 1, from, "sent nothing", what));
        size_t off = i * SEGMENT;
        if (fold) fold(c, arg, off, rbytes - off < SEGMENT ? rbytes - off : SEGMENT);
    }
    return wait_reqs(c, sreq, (int)nsend, to, "took nothing", what);
}

static kl_status scratch(kl_comm *c, size_t bytes, void **out) {
    if (bytes > c->scratch_bytes) {
        void *p = realloc(c->scratch, bytes);
        if (!p) return kl_seterr(KL_ENOMEM, "collectives: %zu-byte ring buffer", bytes);
        c->scratch = p;
        c->scratch_bytes = bytes;
    }
    *out = c->scratch;
    return KL_OK;
}

/* One reduce-scatter step's folding: own[i] = acc[i] + own[i] over a received segment. */
typedef struct {
    const char *acc; /* the received partial sums */
    char *own;       /* this rank's chunk, updated in place */
    size_t elem;     /* bytes per element */
    void (*add)(const void *acc, void *own, size_t k);
} fold_args;

static void fold_add(kl_comm *c, void *arg, size_t off, size_t len) {
    (void)c;
    fold_args *f = arg;
    f->add(f->acc + off, f->own + off, len / f->elem);
}

/* The ring all-reduce over n elements of `elem` bytes; add(acc, own, k) does own[i] =
 * acc[i] + own[i] for i < k (the accumulator arriving from the left comes first). */
static kl_status ring_allreduce(kl_comm *c, void *buf, size_t n, size_t elem,
                                void (*add)(const void *, void *, size_t)) {
    int W = c->size, r = c->rank, right = (r + 1) % W, left = (r + W - 1) % W;
    size_t b, e, biggest = n / (size_t)W + 1;
    void *tmp = NULL;
    KL_TRY(scratch(c, biggest * elem, &tmp));
    char *base = buf;
    /* Reduce-scatter: at step s rank r passes on chunk r - s and folds chunk r - s - 1 in. */
    for (int s = 0; s < W - 1; s++) {
        int send_k = ((r - s) % W + W) % W, recv_k = ((r - s - 1) % W + W) % W;
        size_t rb, re;
        kl_comm_ring_chunk(n, W, send_k, &b, &e);
        kl_comm_ring_chunk(n, W, recv_k, &rb, &re);
        fold_args f = {tmp, base + rb * elem, elem, add};
        KL_TRY(exchange(c, base + b * elem, (e - b) * elem, right, tmp, (re - rb) * elem, left,
                        "all-reduce", fold_add, &f));
    }
    /* All-gather: rank r now holds chunk r + 1 whole; pass the finished chunks around. */
    for (int s = 0; s < W - 1; s++) {
        int send_k = ((r + 1 - s) % W + W) % W, recv_k = ((r - s) % W + W) % W;
        size_t rb, re;
        kl_comm_ring_chunk(n, W, send_k, &b, &e);
        kl_comm_ring_chunk(n, W, recv_k, &rb, &re);
        KL_TRY(exchange(c, base + b * elem, (e - b) * elem, right, base + rb * elem,
                        (re - rb) * elem, left, "all-reduce", NULL, NULL));
    }
    return KL_OK;
}

static void add_floats(const void *acc, void *own, size_t k) {
    const float *a = acc;
    float *o = own;
    for (size_t i = 0; i < k; i++)
        o[i] = a[i] + o[i];
}

static void add_doubles(const void *acc, void *own, size_t k) {
    const double *a = acc;
    double *o = own;
    for (size_t i = 0; i < k; i++)
        o[i] = a[i] + o[i];
}
#endif

kl_status kl_comm_init(kl_comm **out) {
    kl_comm *c = calloc(1, sizeof *c);
    if (!c) return kl_seterr(KL_ENOMEM, "collectives: out of memory");
    c->backend = KL_COMM_NONE;
    c->size = 1;
    c->timeout_s = 60;
    if (launched_by_mpirun()) {
#ifdef KILN_HAVE_MPI
        int inited = 0;
        MPI_Initialized(&inited);
        if (!inited) {
            if (MPI_Init(NULL, NULL) != MPI_SUCCESS) {
                free(c);
                return kl_seterr(KL_EIO, "MPI_Init failed");
            }
            c->owns_mpi = 1;
        }
        /* Errors come back as codes: a dead peer is a message, not an abort. */
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
        MPI_Comm_size(MPI_COMM_WORLD, &c->size);
        MPI_Comm local;
        if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL,
                                &local) == MPI_SUCCESS) {
            MPI_Comm_rank(local, &c->local_rank);
            MPI_Comm_free(&local);
        }
        c->backend = KL_COMM_MPI;
#else
        free(c);
        return kl_seterr(KL_EUNSUPPORTED, "launched by mpirun, but this kiln was built without "
                                          "MPI (install libopenmpi-dev and rebuild)");
#endif
    }
    *out = c;
    return KL_OK;
}

int kl_comm_rank(const kl_comm *c) {
    return c->rank;
}
int kl_comm_size(const kl_comm *c) {
    return c->size;
}
int kl_comm_local_rank(const kl_comm *c) {
    return c->local_rank;
}
kl_comm_backend kl_comm_backend_of(const kl_comm *c) {
    return c->backend;
}
const char *kl_comm_backend_name(const kl_comm *c) {
    return c->backend == KL_COMM_MPI ? "mpi" : "none";
}
void kl_comm_set_timeout(kl_comm *c, double timeout_s) {
    c->timeout_s = timeout_s;
}
void kl_comm_set_cancel_flag(kl_comm *c, const volatile sig_atomic_t *flag) {
    c->stop = flag;
}
int kl_comm_broken(const kl_comm *c) {
    return c->broken;
}
void kl_comm_fail(kl_comm *c, const char *why) {
    if (c->backend == KL_COMM_NONE || c->size == 1 || c->broken) return;
    c->broken = 1;
    snprintf(c->error, sizeof c->error, "%s", why);
}

/* Whether a call should go on to MPI: one-process jobs do nothing, a broken job fails. */
static kl_status usable(const kl_comm *c, int *skip) {
    *skip = c->backend == KL_COMM_NONE || c->size == 1;
    if (c->broken) return kl_seterr(KL_EIO, "collectives: the job already failed (%s)", c->error);
    return KL_OK;
}

kl_status kl_comm_allreduce_sum(kl_comm *c, float *buf, size_t n) {
    int skip;
    KL_TRY(usable(c, &skip));
    if (skip || n == 0) return KL_OK;
#ifdef KILN_HAVE_MPI
    return ring_allreduce(c, buf, n, sizeof(float), add_floats);
#else
    (void)buf;
    return kl_seterr(KL_EINTERNAL, "collectives: MPI backend without MPI");
#endif
}

kl_status kl_comm_allreduce_avg(kl_comm *c, float *buf, size_t n) {
    KL_TRY(kl_comm_allreduce_sum(c, buf, n));
    if (c->size > 1) {
        float inv = 1.0f / (float)c->size;
        for (size_t i = 0; i < n; i++)
            buf[i] *= inv;
    }
    return KL_OK;
}

kl_status kl_comm_allreduce_doubles(kl_comm *c, double *buf, size_t n) {
    int skip;
    KL_TRY(usable(c, &skip));
    if (skip || n == 0) return KL_OK;
#ifdef KILN_HAVE_MPI
    return ring_allreduce(c, buf, n, sizeof(double), add_doubles);
#else
    (void)buf;
    return kl_seterr(KL_EINTERNAL, "collectives: MPI backend without MPI");
#endif
}

kl_status kl_comm_broadcast(kl_comm *c, void *buf, size_t bytes, int root) {
    if (root < 0 || root >= c->size)
        return kl_seterr(KL_EINVAL, "broadcast: root %d outside 0..%d", root, c->size - 1);
    int skip;
    KL_TRY(usable(c, &skip));
    if (skip || bytes == 0) return KL_OK;
#ifdef KILN_HAVE_MPI
    /* A chain from the root: receive from the left (unless root), pass right (unless last). */
    int W = c->size, pos = (c->rank - root + W) % W;
    int left = (c->rank + W - 1) % W, right = (c->rank + 1) % W;
    if (pos > 0) KL_TRY(exchange(c, NULL, 0, right, buf, bytes, left, "broadcast", NULL, NULL));
    if (pos < W - 1) KL_TRY(exchange(c, buf, bytes, right, NULL, 0, left, "broadcast", NULL, NULL));
    return KL_OK;
#else
    (void)buf;
    return kl_seterr(KL_EINTERNAL, "collectives: MPI backend without MPI");
#endif
}

kl_status kl_comm_barrier(kl_comm *c) {
    double one = 1;
    return kl_comm_allreduce_doubles(c, &one, 1);
}

void kl_comm_free(kl_comm *c) {
    if (!c) return;
#ifdef KILN_HAVE_MPI
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (c->broken && !finalized) {
        /* MPI_Finalize would wait for the peer that failed: end the whole job instead. */
        fprintf(stderr, "kiln: %s; ending the job\n", c->error);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (c->owns_mpi && !finalized) MPI_Finalize();
#endif
#ifdef KILN_HAVE_MPI
    free(c->reqs);
#endif
    free(c->scratch);
    free(c);
}
