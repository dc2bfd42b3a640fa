/* dataset.h — an in-memory, encoded dataset: dense float features and a label per row.
 *
 * Readers (IDX, CSV) produce a kl_dataset. Features are row-major float32 [n, d]; for
 * classification, labels are class indices in [0, n_classes); for regression, targets are floats.
 */
#ifndef KL_DATASET_H
#define KL_DATASET_H

#include <stdint.h>

#include "runtime/status.h"

typedef struct {
    int64_t n;            /* rows */
    int64_t d;            /* features per row */
    float *x;             /* [n, d], owned */
    int32_t *y;           /* [n] class indices, owned; NULL for regression or unlabelled */
    float *t;             /* [n] regression targets, owned; NULL for classification */
    int n_classes;        /* number of classes (classification), else 0 */
    char **class_names;   /* [n_classes], owned, or NULL */
    char **feature_names; /* [d], owned, or NULL (IDX images have none) */
} kl_dataset;

/* Frees everything the dataset owns and zeroes it; safe on a zeroed or already freed dataset. */
void kl_dataset_free(kl_dataset *ds);

/* Gathers rows[0..k) of src (in that order) into a new dataset out, which the caller frees.
 * Labels, targets, class and feature names are copied along. k may be 0 (then out->x is NULL
 * but d, n_classes and the names are still set). */
kl_status kl_dataset_take(const kl_dataset *src, const int64_t *rows, int64_t k, kl_dataset *out);

/* Copies n strings into a new NULL-free array *dst (caller frees with kl_strings_free).
 * n == 0 gives *dst == NULL. */
kl_status kl_strings_copy(char *const *src, int64_t n, char ***dst);

/* Frees an array of n strings and the array itself; NULL is fine. */
void kl_strings_free(char **s, int64_t n);

#endif
