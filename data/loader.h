/* loader.h — shuffled mini-batches over a dataset, with optional sharding across ranks.
 *
 * Each epoch's order is a permutation that is a pure function of (seed, epoch), so a resumed run
 * replays exactly the batches it would have seen. Rows are gathered into caller-provided,
 * contiguous buffers; nothing is allocated after kl_loader_init.
 *
 * Sharding (data parallel): every rank walks the same epoch permutation and takes positions
 * rank, rank + world_size, ...; each rank gets floor(n / world_size) rows so all ranks run the
 * same number of steps (the n % world_size leftover rows differ from epoch to epoch).
 */
#ifndef KL_LOADER_H
#define KL_LOADER_H

#include <stdint.h>

#include "data/dataset.h"

typedef struct {
    int64_t batch_size; /* rows per batch, > 0 */
    uint64_t seed;      /* shuffle seed; epoch e uses kl_seed_mix(seed, e) */
    int sequential;     /* 1: file order every epoch (evaluation); 0 (default): shuffled */
    int drop_last;      /* 1: skip the final partial batch of an epoch */
    int rank;           /* this process's shard, in [0, world_size) */
    int world_size;     /* number of shards; 0 or 1 means no sharding */
} kl_loader_opts;

typedef struct {
    const kl_dataset *ds; /* borrowed; must outlive the loader */
    kl_loader_opts opts;  /* as given, world_size normalised to >= 1 */
    int64_t *perm;        /* [ds->n] this epoch's order of all rows, owned */
    int64_t shard_n;      /* rows this rank sees per epoch */
    int64_t epoch;        /* the current epoch, -1 before the first kl_loader_start_epoch */
    int64_t pos;          /* next position in this rank's shard */
} kl_loader;

/* Prepares a loader over ds (not copied; it must outlive the loader). Allocates the permutation
 * once. Call kl_loader_start_epoch before the first batch. */
kl_status kl_loader_init(kl_loader *l, const kl_dataset *ds, const kl_loader_opts *opts);

/* Begins epoch `epoch` (>= 0): rebuilds the permutation from (seed, epoch) and rewinds. */
kl_status kl_loader_start_epoch(kl_loader *l, int64_t epoch);

/* Batches per epoch for this rank (the last one partial unless drop_last). */
int64_t kl_loader_batches_per_epoch(const kl_loader *l);

/* Gathers the next batch into x [batch_size, d] and, when non-NULL and the dataset has them,
 * y [batch_size] (class indices) and t [batch_size] (targets). Returns the number of rows
 * written, 0 at the end of the epoch. If rows is non-NULL it receives the dataset row indices. */
int64_t kl_loader_next(kl_loader *l, float *x, int32_t *y, float *t, int64_t *rows);

/* Skips k batches of the current epoch (to resume mid-epoch); returns how many were skipped. */
int64_t kl_loader_skip(kl_loader *l, int64_t k);

/* Frees the permutation; the dataset is untouched. */
void kl_loader_free(kl_loader *l);

#endif
