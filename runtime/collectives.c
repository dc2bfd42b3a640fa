/* collectives.c — the none and MPI backends of collectives.h. */
#include "runtime/collectives.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef KILN_HAVE_MPI
#include <mpi.h>
#endif

struct kl_comm {
    kl_comm_backend backend; /* which one */
    int rank, size;          /* in the job */
    int local_rank;          /* on this host */
    int owns_mpi;            /* whether kl_comm_init called MPI_Init (so free finalizes) */
};

/* Whether mpirun (OpenMPI, or any PMI launcher) started this process. */
static int launched_by_mpirun(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

#ifdef KILN_HAVE_MPI
/* An MPI error code as a kiln error naming the call and the rank. */
static kl_status mpi_fail(const kl_comm *c, const char *call, int code) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "code %d", code);
    return kl_seterr(KL_EIO, "%s failed on rank %d of %d: %s", call, c->rank, c->size, msg);
}
#define MPI_TRY(c, call, expr)                                                                     \
    do {                                                                                           \
        int mpi_rc_ = (expr);                                                                      \
        if (mpi_rc_ != MPI_SUCCESS) return mpi_fail((c), (call), mpi_rc_);                         \
    } while (0)
#endif

kl_status kl_comm_init(kl_comm **out) {
    kl_comm *c = calloc(1, sizeof *c);
    if (!c) return kl_seterr(KL_ENOMEM, "collectives: out of memory");
    c->backend = KL_COMM_NONE;
    c->size = 1;
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

kl_status kl_comm_allreduce_sum(kl_comm *c, float *buf, size_t n) {
    if (c->backend == KL_COMM_NONE || n == 0) return KL_OK;
#ifdef KILN_HAVE_MPI
    /* MPI counts are ints: large buffers go in chunks. */
    for (size_t off = 0; off < n;) {
        int k = n - off > (size_t)INT_MAX ? INT_MAX : (int)(n - off);
        MPI_TRY(c, "MPI_Allreduce",
                MPI_Allreduce(MPI_IN_PLACE, buf + off, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
        off += (size_t)k;
    }
    return KL_OK;
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

kl_status kl_comm_allreduce_double(kl_comm *c, double *value) {
    if (c->backend == KL_COMM_NONE) return KL_OK;
#ifdef KILN_HAVE_MPI
    MPI_TRY(c, "MPI_Allreduce",
            MPI_Allreduce(MPI_IN_PLACE, value, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
    return KL_OK;
#else
    (void)value;
    return kl_seterr(KL_EINTERNAL, "collectives: MPI backend without MPI");
#endif
}

kl_status kl_comm_broadcast(kl_comm *c, void *buf, size_t bytes, int root) {
    if (root < 0 || root >= c->size)
        return kl_seterr(KL_EINVAL, "broadcast: root %d outside 0..%d", root, c->size - 1);
    if (c->backend == KL_COMM_NONE || bytes == 0) return KL_OK;
#ifdef KILN_HAVE_MPI
    for (size_t off = 0; off < bytes;) {
        int k = bytes - off > (size_t)INT_MAX ? INT_MAX : (int)(bytes - off);
        MPI_TRY(c, "MPI_Bcast", MPI_Bcast((char *)buf + off, k, MPI_BYTE, root, MPI_COMM_WORLD));
        off += (size_t)k;
    }
    return KL_OK;
#else
    (void)buf;
    return kl_seterr(KL_EINTERNAL, "collectives: MPI backend without MPI");
#endif
}

kl_status kl_comm_barrier(kl_comm *c) {
    if (c->backend == KL_COMM_NONE) return KL_OK;
#ifdef KILN_HAVE_MPI
    MPI_TRY(c, "MPI_Barrier", MPI_Barrier(MPI_COMM_WORLD));
    return KL_OK;
#else
    return kl_seterr(KL_EINTERNAL, "collectives: MPI backend without MPI");
#endif
}

void kl_comm_free(kl_comm *c) {
    if (!c) return;
#ifdef KILN_HAVE_MPI
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (c->owns_mpi && !finalized) MPI_Finalize();
#endif
    free(c);
}
