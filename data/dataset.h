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
    int64_t n;             /* rows */
    int64_t d;             /* features per row */
    float *x;              /* [n, d], owned */
    int32_t *y;            /* [n] class indices, owned; NULL for regression or unlabelled */
    float *t;              /* [n] regression targets, owned; NULL for classification */
    int n_classes;         /* number of classes (classification), else 0 */
    char **class_names;    /* [n_classes], owned, or NULL */
    char **feature_names;  /* [d], owned, or NULL (IDX images have none) */
} kl_dataset;

void kl_dataset_free(kl_dataset *ds);

#endif
