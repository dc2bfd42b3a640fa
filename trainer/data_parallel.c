/* data_parallel.c — the job, shards, gradient reduction and rank-0 state of data_parallel.h. */
#include "trainer/data_parallel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/split.h"
#include "kernels/cuda_api.h"
#include "runtime/device.h"

kl_status kl_dp_init(kl_dp *dp, const kl_train_config *cfg, const volatile sig_atomic_t *stop) {
    memset(dp, 0, sizeof *dp);
    dp->timeout_s = cfg->train_comm_timeout;
    KL_TRY(kl_comm_init(&dp->comm));
    kl_comm_set_timeout(dp->comm, cfg->train_comm_timeout);
    kl_comm_set_cancel_flag(dp->comm, stop);
    dp->rank = kl_comm_rank(dp->comm);
    dp->world = kl_comm_size(dp->comm);
    dp->shards = dp->world;
    if (cfg->train_emulate_ranks > 1) {
        if (dp->world > 1)
            return kl_seterr(KL_EINVAL,
                             "train.emulate_ranks: this job already has %d real ranks (mpirun); "
                             "emulation is for one process",
                             dp->world);
        if (strcmp(cfg->train_device, "cpu") != 0)
            return kl_seterr(KL_EINVAL, "train.emulate_ranks needs train.device=cpu (got \"%s\")",
                             cfg->train_device);
        dp->shards = (int)cfg->train_emulate_ranks;
        dp->emulated = 1;
    }
    if (cfg->train_batch_size % dp->shards != 0)
        return kl_seterr(KL_EINVAL,
                         "train.batch_size %lld (the global batch) does not split over %d ranks; "
                         "use a multiple of %d",
                         (long long)cfg->train_batch_size, dp->shards, dp->shards);
    return KL_OK;
}

kl_status kl_dp_attach_device(kl_dp *dp, const kl_train_config *cfg, const kl_mlp *m) {
    const char *mode = cfg->train_gpu_collectives;
    if (m->dev.kind == KL_DEV_CPU) {
        if (!strcmp(mode, "nccl"))
            return kl_seterr(KL_EINVAL, "train.gpu_collectives=nccl needs a GPU (training on cpu)");
        return KL_OK;
    }
    if (!strcmp(mode, "host") || (!strcmp(mode, "auto") && dp->world == 1)) return KL_OK;
    unsigned char id[KL_NCCL_ID_BYTES];
    memset(id, 0, sizeof id);
    kl_status s = dp->rank == 0 ? kl_nccl_unique_id(id) : KL_OK;
    if (s && !strcmp(mode, "auto")) {
        /* Built without NCCL: say so once and take the host path (every rank fails alike). */
        if (dp->rank == 0)
            fprintf(stderr, "kiln: notice: %s; GPU gradients go through host memory\n",
                    kl_errmsg());
        return KL_OK;
    }
    KL_TRY(s);
    KL_TRY(kl_dp_broadcast(dp, id, sizeof id));
    KL_TRY(kl_nccl_init(m->dev.index, dp->world, dp->rank, id, dp->timeout_s, &dp->nccl));
    dp->cuda_ctx = m->ops_ctx;
    return KL_OK;
}

int kl_dp_shard_batch(const kl_dp *dp, const kl_train_config *cfg) {
    return (int)(cfg->train_batch_size / dp->shards);
}

const char *kl_dp_device_text(const kl_dp *dp, const char *configured, char *buf, int cap) {
    /* A bare "cuda" or "auto" means this host's share: the GPU numbered by the local rank. */
    if (dp->world > 1 && (!strcmp(configured, "cuda") || !strcmp(configured, "auto"))) {
        int n = kl_cuda_device_count();
        if (n > 0) {
            snprintf(buf, (size_t)cap, "cuda:%d", kl_comm_local_rank(dp->comm) % n);
            return buf;
        }
    }
    snprintf(buf, (size_t)cap, "%s", configured);
    return buf;
}

kl_loader_opts kl_dp_loader_opts(const kl_dp *dp, const kl_train_config *cfg, int shard) {
    kl_loader_opts lo = {
        .batch_size = kl_dp_shard_batch(dp, cfg),
        .seed = (uint64_t)cfg->train_seed,
        .rank = shard,
        .world_size = dp->shards,
    };
    return lo;
}

uint64_t kl_dp_shard_seed(const kl_dp *dp, uint64_t step_seed, int shard) {
    return dp->shards > 1 ? kl_seed_mix(step_seed, (uint64_t)shard + 1) : step_seed;
}

kl_status kl_dp_emulation_init(kl_dp *dp, const kl_train_config *cfg, const kl_dataset *ds,
                               int64_t n_params) {
    if (!dp->emulated) return KL_OK;
    int b = kl_dp_shard_batch(dp, cfg);
    dp->x = malloc((size_t)b * (size_t)ds->d * sizeof(float));
    dp->y = malloc((size_t)b * sizeof(int32_t));
    dp->t = malloc((size_t)b * sizeof(float));
    if (!dp->x || !dp->y || !dp->t) return kl_seterr(KL_ENOMEM, "emulated ranks' batches");
    for (int k = 0; k < dp->shards; k++) {
        dp->parts[k] = malloc((size_t)n_params * sizeof(float));
        if (!dp->parts[k]) return kl_seterr(KL_ENOMEM, "emulated ranks' gradients");
        if (k == 0) continue; /* shard 0 is the trainer's own loader */
        kl_loader_opts lo = kl_dp_loader_opts(dp, cfg, k);
        KL_TRY(kl_loader_init(&dp->others[k], ds, &lo));
    }
    return KL_OK;
}

kl_status kl_dp_reduce_grads(kl_dp *dp, kl_mlp *m) {
    size_t n = (size_t)m->n_params;
    if (dp->emulated) {
        kl_comm_ring_sum_reference((const float *const *)dp->parts, dp->shards, m->grads, n);
        return KL_OK;
    }
    if (dp->nccl) return kl_nccl_allreduce_sum(dp->nccl, dp->cuda_ctx, m->grads, n, dp->timeout_s);
    if (dp->world == 1) return KL_OK;
    if (m->dev.kind == KL_DEV_CPU) return kl_comm_allreduce_sum(dp->comm, m->grads, n);
    /* A GPU job without NCCL: through host memory. */
    if (!dp->host_grads) {
        dp->host_grads = malloc(n * sizeof(float));
        if (!dp->host_grads) return kl_seterr(KL_ENOMEM, "host copy of the gradients");
    }
    KL_TRY(kl_dev_copy_to_host(m->dev, dp->host_grads, m->grads, n * sizeof(float)));
    KL_TRY(kl_comm_allreduce_sum(dp->comm, dp->host_grads, n));
    return kl_dev_copy_from_host(m->dev, m->grads, dp->host_grads, n * sizeof(float));
}

kl_status kl_dp_mean_loss(kl_dp *dp, double *loss) {
    if (dp->emulated) {
        double sum = dp->shard_loss[0]; /* the ring's order for one element: rank 0 first */
        for (int k = 1; k < dp->shards; k++)
            sum = sum + dp->shard_loss[k];
        *loss = sum / dp->shards;
        return KL_OK;
    }
    if (dp->world == 1) return KL_OK;
    KL_TRY(kl_comm_allreduce_doubles(dp->comm, loss, 1));
    *loss /= dp->world;
    return KL_OK;
}

kl_status kl_dp_sum(kl_dp *dp, double *v, int n) {
    return kl_comm_allreduce_doubles(dp->comm, v, (size_t)n);
}

kl_status kl_dp_broadcast(kl_dp *dp, void *buf, size_t bytes) {
    return kl_comm_broadcast(dp->comm, buf, bytes, 0);
}

kl_status kl_dp_broadcast_floats(kl_dp *dp, kl_device dev, float *buf, int64_t n) {
    size_t bytes = (size_t)n * sizeof(float);
    if (dp->nccl && n > 0)
        return kl_nccl_broadcast(dp->nccl, dp->cuda_ctx, buf, bytes, 0, dp->timeout_s);
    if (dp->world == 1 || n == 0) return KL_OK;
    if (dev.kind == KL_DEV_CPU) return kl_comm_broadcast(dp->comm, buf, bytes, 0);
    float *host = malloc(bytes);
    if (!host) return kl_seterr(KL_ENOMEM, "host copy for a broadcast");
    kl_status s = kl_dev_copy_to_host(dev, host, buf, bytes);
    if (!s) s = kl_comm_broadcast(dp->comm, host, bytes, 0);
    if (!s) s = kl_dev_copy_from_host(dev, buf, host, bytes);
    free(host);
    return s;
}

void kl_dp_fail(kl_dp *dp) {
    if (dp->comm) kl_comm_fail(dp->comm, kl_errmsg());
}

void kl_dp_free(kl_dp *dp) {
    for (int k = 0; k < KL_DP_MAX_EMULATED; k++) {
        kl_loader_free(&dp->others[k]);
        free(dp->parts[k]);
    }
    free(dp->x);
    free(dp->y);
    free(dp->t);
    free(dp->host_grads);
    kl_nccl_free(dp->nccl);
    kl_comm_free(dp->comm);
    memset(dp, 0, sizeof *dp);
}
