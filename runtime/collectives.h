/* collectives.h — the data-parallel trainer's collectives: all-reduce (sum, average), broadcast,
 * barrier, across the ranks of a job.
 *
 * Backends: none (one process: every call is a no-op or a copy; no MPI needed), MPI (CPU
 * buffers; OpenMPI launches the ranks: `mpirun -np N kiln train ...`). NCCL (GPU buffers, its
 * unique id broadcast over MPI) joins behind the same interface. kl_comm_init picks MPI when the
 * process was launched by mpirun and kiln was built with MPI, else none.
 *
 * Errors never abort: MPI runs with MPI_ERRORS_RETURN on the job's communicator, and a failed
 * call returns KL_EIO with MPI's message and the rank that saw it.
 */
#ifndef KL_COLLECTIVES_H
#define KL_COLLECTIVES_H

#include <stddef.h>

#include "runtime/status.h"

typedef enum {
    KL_COMM_NONE, /* a single process */
    KL_COMM_MPI,  /* ranks launched by mpirun, CPU buffers */
} kl_comm_backend;

typedef struct kl_comm kl_comm;

/* Joins the job: MPI when launched under mpirun (and built with MPI), else a single process.
 * *out is owned by the caller (kl_comm_free, which also leaves MPI). */
kl_status kl_comm_init(kl_comm **out);

/* This process's rank, the job's size, and the rank among the processes of this host (which
 * GPU to take). */
int kl_comm_rank(const kl_comm *c);
int kl_comm_size(const kl_comm *c);
int kl_comm_local_rank(const kl_comm *c);
kl_comm_backend kl_comm_backend_of(const kl_comm *c);
const char *kl_comm_backend_name(const kl_comm *c);

/* In place over buf[0..n): every rank ends with the element-wise sum (or the average) over all
 * ranks. The reduction order is fixed by the backend for a given size, so results are
 * reproducible run to run. */
kl_status kl_comm_allreduce_sum(kl_comm *c, float *buf, size_t n);
kl_status kl_comm_allreduce_avg(kl_comm *c, float *buf, size_t n);

/* Sum of one double over ranks (metrics averaged over ranks; counts). */
kl_status kl_comm_allreduce_double(kl_comm *c, double *value);

/* Copies root's buf[0..bytes) to every rank. */
kl_status kl_comm_broadcast(kl_comm *c, void *buf, size_t bytes, int root);

/* Returns once every rank has called it. */
kl_status kl_comm_barrier(kl_comm *c);

/* Leaves the job (MPI_Finalize) and frees c; safe on NULL. */
void kl_comm_free(kl_comm *c);

#endif
