/* split.c — splitmix64, Fisher–Yates and the seeded train/validation split. */
#include "data/split.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

uint64_t kl_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t kl_rand_below(uint64_t *state, uint64_t bound) {
    /* Reject the lowest 2^64 mod bound values so every residue is equally likely. */
    uint64_t threshold = (0 - bound) % bound;
    for (;;) {
        uint64_t r = kl_splitmix64(state);
        if (r >= threshold) return r % bound;
    }
}

uint64_t kl_seed_mix(uint64_t a, uint64_t b) {
    uint64_t s = a ^ 0x6A09E667F3BCC909ull;
    uint64_t h = kl_splitmix64(&s);
    s = h ^ b;
    return kl_splitmix64(&s);
}

void kl_permutation(int64_t *a, int64_t n, uint64_t seed) {
    for (int64_t i = 0; i < n; i++)
        a[i] = i;
    uint64_t st = seed;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)kl_rand_below(&st, (uint64_t)i + 1);
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

int64_t kl_split_val_count(int64_t n, double val_fraction) {
    if (n <= 0 || !(val_fraction > 0)) return 0;
    int64_t k = (int64_t)llround((double)n * val_fraction);
    if (k >= n) k = n - 1;
    return k < 0 ? 0 : k;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

kl_status kl_split_indices(int64_t n, double val_fraction, uint64_t seed, int64_t **train,
                           int64_t *n_train, int64_t **val, int64_t *n_val) {
    *train = *val = NULL;
    *n_train = *n_val = 0;
    if (n < 0) return kl_seterr(KL_EINVAL, "split: %lld rows", (long long)n);
    if (!(val_fraction >= 0 && val_fraction < 1))
        return kl_seterr(KL_EINVAL, "split: val_fraction %g outside [0,1)", val_fraction);
    int64_t nv = kl_split_val_count(n, val_fraction), nt = n - nv;
    int64_t *perm = malloc((size_t)(n ? n : 1) * sizeof *perm);
    int64_t *t = malloc((size_t)(nt ? nt : 1) * sizeof *t);
    int64_t *v = malloc((size_t)(nv ? nv : 1) * sizeof *v);
    if (!perm || !t || !v) {
        free(perm);
        free(t);
        free(v);
        return kl_seterr(KL_ENOMEM, "split of %lld rows", (long long)n);
    }
    kl_permutation(perm, n, seed);
    /* The first nv shuffled rows validate; sorting keeps each part in file order. */
    memcpy(v, perm, (size_t)nv * sizeof *v);
    memcpy(t, perm + nv, (size_t)nt * sizeof *t);
    free(perm);
    qsort(v, (size_t)nv, sizeof *v, cmp_i64);
    qsort(t, (size_t)nt, sizeof *t, cmp_i64);
    *train = t;
    *val = v;
    *n_train = nt;
    *n_val = nv;
    return KL_OK;
}
