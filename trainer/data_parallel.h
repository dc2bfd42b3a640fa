/* data_parallel.h — what makes the trainer data-parallel: the job's ranks, each rank's shard of
 * every batch, the gradient all-reduce, metrics averaged over ranks, and the state rank 0 hands
 * to every rank at the start (initial or resumed weights).
 *
 * Global-batch semantics (as PyTorch's DistributedDataParallel with a per-rank batch of
 * train.batch_size / world): train.batch_size is the global batch. Every rank walks the same
 * shuffled epoch order (data/loader.h) and takes every world-th row, so step k's global batch
 * is the union of the ranks' k-th batches: the rows the one-process run's batch k holds when the
 * training split divides by the world size (otherwise the split's last n % world rows of each
 * epoch's order are left out). Each rank scales its loss gradient by 1 / (rows × world) and the
 * all-reduce sums, so the update is that of the mean loss over the global batch. Dropout masks
 * differ per rank (the step's seed mixed with the rank). The learning rate, schedule and step
 * count are those of the one-process run with the same global batch.
 *
 * train.emulate_ranks = N runs the same arithmetic in one process: N shards per step, their
 * gradients summed in the ring all-reduce's order, so its weights equal an N-rank job's bit for
 * bit (the test of the real job). */
#ifndef KL_DATA_PARALLEL_H
#define KL_DATA_PARALLEL_H

#include <stdint.h>

#include "data/loader.h"
#include "runtime/collectives.h"
#include "runtime/model.h"
#include "trainer/config.h"

#define KL_DP_MAX_EMULATED 64

typedef struct {
    kl_comm *comm;     /* the job (one process when not under mpirun) */
    int rank, world;   /* this process in the job */
    int shards;        /* gradient shards per step: world, or emulate_ranks in one process */
    int emulated;      /* 1: one process computes all shards (train.emulate_ranks) */
    float *host_grads; /* off the CPU without NCCL: the gradients' trip through host memory */
    void *nccl;        /* the NCCL communicator of a GPU job (kernels/cuda_api.h), or NULL */
    void *cuda_ctx;    /* the model's CUDA context, whose stream NCCL's calls join */
    double timeout_s;  /* train.comm_timeout */
    /* Emulation only: the other shards' loaders, batch buffers, and each shard's gradients. */
    kl_loader others[KL_DP_MAX_EMULATED];
    float *x, *t;
    int32_t *y;
    float *parts[KL_DP_MAX_EMULATED];
    double shard_loss[KL_DP_MAX_EMULATED];
} kl_dp;

/* Joins the job (MPI under mpirun) and checks the config fits it: the global batch divides by
 * the number of shards, emulation only in one CPU process. */
kl_status kl_dp_init(kl_dp *dp, const kl_train_config *cfg, const volatile sig_atomic_t *stop);

/* The rows each shard takes per step (train.batch_size / shards). */
int kl_dp_shard_batch(const kl_dp *dp, const kl_train_config *cfg);

/* GPU collectives (train.gpu_collectives): NCCL for a multi-rank GPU job when built with it
 * (auto), or always (nccl: also a one-rank job, to exercise it), or never (host: gradients go
 * through host memory and MPI). Call once the model exists; a no-op on the CPU. The NCCL id is
 * made by rank 0 and broadcast over MPI. */
kl_status kl_dp_attach_device(kl_dp *dp, const kl_train_config *cfg, const kl_mlp *m);

/* The device this rank trains on: "cuda"/"auto" take the GPU of the local rank. */
const char *kl_dp_device_text(const kl_dp *dp, const char *configured, char *buf, int cap);

/* Loader options for shard `shard` of the job's sharding. */
kl_loader_opts kl_dp_loader_opts(const kl_dp *dp, const kl_train_config *cfg, int shard);

/* The dropout seed of a shard at a step: the step's seed itself in a one-shard run. */
uint64_t kl_dp_shard_seed(const kl_dp *dp, uint64_t step_seed, int shard);

/* Emulation: buffers for the other shards' loaders (over ds) and gradients. */
kl_status kl_dp_emulation_init(kl_dp *dp, const kl_train_config *cfg, const kl_dataset *ds,
                               int64_t n_params);

/* Sums the shards' gradients into m->grads: the all-reduce across ranks, or (emulation) the
 * ring's order over parts[]. */
kl_status kl_dp_reduce_grads(kl_dp *dp, kl_mlp *m);

/* The step's loss averaged over shards, in place (every rank gets the same value). */
kl_status kl_dp_mean_loss(kl_dp *dp, double *loss);

/* Sums n doubles over ranks in place (evaluation counts). */
kl_status kl_dp_sum(kl_dp *dp, double *v, int n);

/* Copies rank 0's buffer of n floats on the model's device to every rank. */
kl_status kl_dp_broadcast_floats(kl_dp *dp, kl_device dev, float *buf, int64_t n);

/* Copies rank 0's bytes to every rank. */
kl_status kl_dp_broadcast(kl_dp *dp, void *buf, size_t bytes);

/* A failure on this rank: mark the job so leaving it ends every rank now, not at the timeout. */
void kl_dp_fail(kl_dp *dp);

/* Leaves the job (ending it if a rank failed) and frees everything. */
void kl_dp_free(kl_dp *dp);

#endif
