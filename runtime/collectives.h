/* collectives.h — the data-parallel trainer's collectives: all-reduce (sum, average), broadcast,
 * barrier, across the ranks of a job.
 *
 * Backends: none (one process: every call is a no-op or a copy; no MPI needed), MPI (CPU
 * buffers; OpenMPI launches the ranks: `mpirun -np N kiln train ...`). NCCL (GPU buffers, its
 * unique id broadcast over MPI) joins behind the same interface. kl_comm_init picks MPI when the
 * process was launched by mpirun and kiln was built with MPI, else none.
 *
 * The MPI backend's all-reduce is kiln's own ring (reduce-scatter, then all-gather) over MPI
 * point-to-point messages, not MPI_Allreduce, for three reasons: every element is summed in one
 * fixed order (chunk c of W starts at rank c: ((g_c + g_c+1) + ...) + g_c-1), so results are
 * bitwise reproducible and identical on every rank (MPI_Allreduce promises neither), and
 * kl_comm_ring_sum_reference reproduces that order in one process; each wait is bounded
 * (kl_comm_set_timeout), and a rank that sends nothing in time is named in the error; and it
 * moves 2(W-1)/W of the buffer per rank, the bandwidth optimum (bench/allreduce compares it
 * with MPI's own).
 *
 * Errors never abort the caller: MPI runs with MPI_ERRORS_RETURN, and a failed or timed-out
 * call returns KL_EIO naming this rank and the peer. The communicator is then broken: later
 * calls fail at once, and kl_comm_free ends the whole job (MPI_Abort) after printing the error,
 * since MPI_Finalize would wait forever on a dead peer.
 */
#ifndef KL_COLLECTIVES_H
#define KL_COLLECTIVES_H

#include <signal.h>
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

/* The same ring over doubles (losses, counts: metrics averaged over ranks). */
kl_status kl_comm_allreduce_doubles(kl_comm *c, double *buf, size_t n);

/* Copies root's buf[0..bytes) to every rank. */
kl_status kl_comm_broadcast(kl_comm *c, void *buf, size_t bytes, int root);

/* Returns once every rank has called it. */
kl_status kl_comm_barrier(kl_comm *c);

/* Bounds every wait for a peer to timeout_s seconds (default 60; <= 0: wait forever). */
void kl_comm_set_timeout(kl_comm *c, double timeout_s);

/* A flag (set from a signal handler) that makes a wait give up with KL_ECANCELED, so a rank
 * stuck on a dead peer still honours Ctrl-C / SIGTERM. NULL: none. */
void kl_comm_set_cancel_flag(kl_comm *c, const volatile sig_atomic_t *flag);

/* Whether a failed collective left the communicator unusable. */
int kl_comm_broken(const kl_comm *c);

/* Marks the job failed on this rank (why: the error), so kl_comm_free ends every rank at once
 * instead of leaving the others to time out. A no-op in a one-process job. */
void kl_comm_fail(kl_comm *c, const char *why);

/* Sums parts[0..world) element-wise into out[0..n) in exactly the order the ring all-reduce of
 * `world` ranks uses, so one process can reproduce a data-parallel job bitwise. */
void kl_comm_ring_sum_reference(const float *const *parts, int world, float *out, size_t n);

/* Chunk k of the ring's split of n elements over world ranks: [*begin, *end). */
void kl_comm_ring_chunk(size_t n, int world, int k, size_t *begin, size_t *end);

/* Leaves the job (MPI_Finalize; MPI_Abort when broken) and frees c; safe on NULL. */
void kl_comm_free(kl_comm *c);

#endif
