/* transform.c — fitting and applying the standard / minmax transforms. */
#include "data/transform.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

kl_status kl_transform_parse(const char *name, kl_transform_kind *kind) {
    if (name && !strcmp(name, "none"))
        *kind = KL_TRANSFORM_NONE;
    else if (name && !strcmp(name, "standard"))
        *kind = KL_TRANSFORM_STANDARD;
    else if (name && !strcmp(name, "minmax"))
        *kind = KL_TRANSFORM_MINMAX;
    else
        return kl_seterr(KL_EINVAL, "\"%s\" is not one of none, standard, minmax",
                         name ? name : "(null)");
    return KL_OK;
}

const char *kl_transform_name(kl_transform_kind kind) {
    switch (kind) {
    case KL_TRANSFORM_NONE:
        return "none";
    case KL_TRANSFORM_STANDARD:
        return "standard";
    case KL_TRANSFORM_MINMAX:
        return "minmax";
    }
    return "none";
}

/* Scale for a spread: a constant (or numerically constant) feature keeps its values unscaled
 * rather than dividing by zero; float overflow also falls back to 1. */
static float safe_inverse(double spread) {
    if (!(spread > 0) || !isfinite(spread)) return 1.0f;
    double inv = 1.0 / spread;
    return inv > FLT_MAX ? 1.0f : (float)inv;
}

kl_status kl_transform_fit(kl_transform_kind kind, const kl_dataset *train, float **shift,
                           float **scale) {
    *shift = *scale = NULL;
    if (kind == KL_TRANSFORM_NONE) return KL_OK;
    int64_t n = train->n, d = train->d;
    if (n <= 0)
        return kl_seterr(KL_EINVAL, "%s transform: no training rows to fit on",
                         kl_transform_name(kind));
    double *a = calloc((size_t)(d ? d : 1), sizeof *a), *b = calloc((size_t)(d ? d : 1), sizeof *b);
    float *sh = malloc((size_t)(d ? d : 1) * sizeof *sh),
          *sc = malloc((size_t)(d ? d : 1) * sizeof *sc);
    kl_status s = KL_OK;
    if (!a || !b || !sh || !sc) {
        s = kl_seterr(KL_ENOMEM, "transform of %lld features", (long long)d);
        goto done;
    }
    for (int64_t i = 0; i < n && !s; i++) {
        const float *row = train->x + i * d;
        for (int64_t j = 0; j < d; j++)
            if (!isfinite(row[j])) {
                s = kl_seterr(KL_EINVAL, "%s transform: feature %lld of training row %lld is %g",
                              kl_transform_name(kind), (long long)j, (long long)i, (double)row[j]);
                break;
            }
    }
    if (s) goto done;
    if (kind == KL_TRANSFORM_STANDARD) {
        /* Two passes (mean, then squared deviations) avoid the cancellation of sum-of-squares. */
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < d; j++)
                a[j] += train->x[i * d + j];
        for (int64_t j = 0; j < d; j++)
            a[j] /= (double)n;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < d; j++) {
                double dev = train->x[i * d + j] - a[j];
                b[j] += dev * dev;
            }
        for (int64_t j = 0; j < d; j++) {
            sh[j] = (float)a[j];
            sc[j] = safe_inverse(sqrt(b[j] / (double)n));
        }
    } else {
        for (int64_t j = 0; j < d; j++)
            a[j] = b[j] = train->x[j];
        for (int64_t i = 1; i < n; i++)
            for (int64_t j = 0; j < d; j++) {
                double v = train->x[i * d + j];
                if (v < a[j]) a[j] = v;
                if (v > b[j]) b[j] = v;
            }
        for (int64_t j = 0; j < d; j++) {
            sh[j] = (float)a[j];
            sc[j] = safe_inverse(b[j] - a[j]);
        }
    }
done:
    free(a);
    free(b);
    if (s) {
        free(sh);
        free(sc);
        return s;
    }
    *shift = sh;
    *scale = sc;
    return KL_OK;
}

void kl_transform_apply(const float *shift, const float *scale, float *x, int64_t n, int64_t d) {
    if (!shift || !scale) return;
    for (int64_t i = 0; i < n; i++) {
        float *row = x + i * d;
        for (int64_t j = 0; j < d; j++)
            row[j] = (row[j] - shift[j]) * scale[j];
    }
}
