/* split.h — deterministic shuffles and the train/validation split.
 *
 * Everything here is a pure function of its seed: splitmix64 (Steele, Lea & Flood 2014) drives
 * an unbiased Fisher–Yates shuffle, so the same seed gives the same split and the same epoch
 * order on every machine and compiler.
 */
#ifndef KL_SPLIT_H
#define KL_SPLIT_H

#include <stdint.h>

#include "runtime/status.h"

/* Advances *state and returns the next splitmix64 output. */
uint64_t kl_splitmix64(uint64_t *state);

/* A uniform integer in [0, bound) from *state, without modulo bias (bound > 0). */
uint64_t kl_rand_below(uint64_t *state, uint64_t bound);

/* Mixes two words into one seed (e.g. a run seed and an epoch number). */
uint64_t kl_seed_mix(uint64_t a, uint64_t b);

/* Fills a[0..n) with 0..n-1 and shuffles it with Fisher–Yates seeded by seed. */
void kl_permutation(int64_t *a, int64_t n, uint64_t seed);

/* How many of n rows a val_fraction holds out: round(n * val_fraction), kept below n so at least
 * one row trains when n > 0, and 0 when val_fraction is 0. */
int64_t kl_split_val_count(int64_t n, double val_fraction);

/* Splits rows 0..n-1 into train and validation index lists (each ascending, so both keep file
 * order); the caller frees *train and *val. val_fraction must be in [0, 1). */
kl_status kl_split_indices(int64_t n, double val_fraction, uint64_t seed, int64_t **train,
                           int64_t *n_train, int64_t **val, int64_t *n_val);

#endif
