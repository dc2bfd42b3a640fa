/* loader.c — per-epoch permutations and batch gathering. */
#include "data/loader.h"

#include <stdlib.h>
#include <string.h>

#include "data/split.h" /* kl_permutation, kl_seed_mix */

kl_status kl_loader_init(kl_loader *l, const kl_dataset *ds, const kl_loader_opts *opts) {
    memset(l, 0, sizeof *l);
    l->epoch = -1;
    if (opts->batch_size <= 0)
        return kl_seterr(KL_EINVAL, "loader: batch_size %lld must be > 0",
                         (long long)opts->batch_size);
    int world = opts->world_size <= 0 ? 1 : opts->world_size;
    if (opts->rank < 0 || opts->rank >= world)
        return kl_seterr(KL_EINVAL, "loader: rank %d outside [0, %d)", opts->rank, world);
    if (ds->n < 0 || (ds->n > 0 && !ds->x))
        return kl_seterr(KL_EINVAL, "loader: dataset has no feature rows");
    l->ds = ds;
    l->opts = *opts;
    l->opts.world_size = world;
    l->perm = malloc((size_t)(ds->n ? ds->n : 1) * sizeof *l->perm);
    if (!l->perm) return kl_seterr(KL_ENOMEM, "loader: permutation of %lld rows", (long long)ds->n);
    l->shard_n = ds->n / world;
    return KL_OK;
}

kl_status kl_loader_start_epoch(kl_loader *l, int64_t epoch) {
    if (!l->perm) return kl_seterr(KL_EINVAL, "loader: not initialised");
    if (epoch < 0) return kl_seterr(KL_EINVAL, "loader: epoch %lld < 0", (long long)epoch);
    if (l->opts.sequential)
        for (int64_t i = 0; i < l->ds->n; i++)
            l->perm[i] = i;
    else
        kl_permutation(l->perm, l->ds->n, kl_seed_mix(l->opts.seed, (uint64_t)epoch));
    l->epoch = epoch;
    l->pos = 0;
    return KL_OK;
}

int64_t kl_loader_batches_per_epoch(const kl_loader *l) {
    int64_t b = l->opts.batch_size;
    return l->opts.drop_last ? l->shard_n / b : (l->shard_n + b - 1) / b;
}

/* Rows left in this epoch's batch starting at pos, 0 when the epoch is over. */
static int64_t batch_rows(const kl_loader *l) {
    int64_t left = l->shard_n - l->pos;
    if (left <= 0 || l->epoch < 0) return 0;
    if (left < l->opts.batch_size) return l->opts.drop_last ? 0 : left;
    return l->opts.batch_size;
}

int64_t kl_loader_next(kl_loader *l, float *x, int32_t *y, float *t, int64_t *rows) {
    int64_t k = batch_rows(l);
    const kl_dataset *ds = l->ds;
    size_t d = (size_t)ds->d;
    int64_t world = l->opts.world_size, rank = l->opts.rank;
    for (int64_t i = 0; i < k; i++) {
        int64_t r = l->perm[(l->pos + i) * world + rank];
        memcpy(x + (size_t)i * d, ds->x + (size_t)r * d, d * sizeof(float));
        if (y && ds->y) y[i] = ds->y[r];
        if (t && ds->t) t[i] = ds->t[r];
        if (rows) rows[i] = r;
    }
    l->pos += k;
    return k;
}

int64_t kl_loader_skip(kl_loader *l, int64_t k) {
    int64_t done = 0;
    for (; done < k; done++) {
        int64_t b = batch_rows(l);
        if (!b) break;
        l->pos += b;
    }
    return done;
}

void kl_loader_free(kl_loader *l) {
    free(l->perm);
    memset(l, 0, sizeof *l);
    l->epoch = -1;
}
