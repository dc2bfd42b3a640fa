/* transform.h — per-feature affine input transforms fitted on training rows.
 *
 * Every transform is stored as x' = (x - shift[j]) * scale[j], the form the model bundle keeps
 * and serving applies, so training and serving cannot disagree about the formula.
 *   standard: shift = mean, scale = 1/std (population std; a constant feature gets scale 1)
 *   minmax:   shift = min,  scale = 1/(max - min) (a constant feature gets scale 1)
 *   none:     no arrays
 */
#ifndef KL_TRANSFORM_H
#define KL_TRANSFORM_H

#include <stdint.h>

#include "data/dataset.h"

typedef enum {
    KL_TRANSFORM_NONE = 0, /* identity */
    KL_TRANSFORM_STANDARD, /* zero mean, unit variance */
    KL_TRANSFORM_MINMAX,   /* into [0, 1] on the training rows */
} kl_transform_kind;

/* Parses "none", "standard" or "minmax"; anything else is KL_EINVAL with the list of choices. */
kl_status kl_transform_parse(const char *name, kl_transform_kind *kind);

/* The canonical name of a kind. */
const char *kl_transform_name(kl_transform_kind kind);

/* Fits kind on all rows of train (statistics in double). For KL_TRANSFORM_NONE *shift and
 * *scale are set to NULL; otherwise they are malloc'd [train->d] arrays the caller frees.
 * Fails on an empty training set or non-finite features. */
kl_status kl_transform_fit(kl_transform_kind kind, const kl_dataset *train, float **shift,
                           float **scale);

/* Applies x' = (x - shift) * scale in place to x [n, d]; a NULL shift/scale is the identity. */
void kl_transform_apply(const float *shift, const float *scale, float *x, int64_t n, int64_t d);

#endif
