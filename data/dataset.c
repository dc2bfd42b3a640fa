/* dataset.c — ownership helpers for kl_dataset: free, row gather, name copies. */
#include "data/dataset.h"

#include <stdlib.h>
#include <string.h>

void kl_strings_free(char **s, int64_t n) {
    if (!s) return;
    for (int64_t i = 0; i < n; i++)
        free(s[i]);
    free(s);
}

kl_status kl_strings_copy(char *const *src, int64_t n, char ***dst) {
    *dst = NULL;
    if (n <= 0 || !src) return KL_OK;
    char **out = calloc((size_t)n, sizeof *out);
    if (!out) return kl_seterr(KL_ENOMEM, "copying %lld names", (long long)n);
    for (int64_t i = 0; i < n; i++) {
        out[i] = strdup(src[i] ? src[i] : "");
        if (!out[i]) {
            kl_strings_free(out, i);
            return kl_seterr(KL_ENOMEM, "copying %lld names", (long long)n);
        }
    }
    *dst = out;
    return KL_OK;
}

void kl_dataset_free(kl_dataset *ds) {
    if (!ds) return;
    free(ds->x);
    free(ds->y);
    free(ds->t);
    kl_strings_free(ds->class_names, ds->n_classes);
    kl_strings_free(ds->feature_names, ds->d);
    memset(ds, 0, sizeof *ds);
}

kl_status kl_dataset_take(const kl_dataset *src, const int64_t *rows, int64_t k, kl_dataset *out) {
    memset(out, 0, sizeof *out);
    out->d = src->d;
    out->n_classes = src->n_classes;
    kl_status s =
        kl_strings_copy(src->class_names, src->class_names ? src->n_classes : 0, &out->class_names);
    if (!s)
        s = kl_strings_copy(src->feature_names, src->feature_names ? src->d : 0,
                            &out->feature_names);
    if (s) goto fail;
    if (k > 0) {
        size_t d = (size_t)src->d;
        out->x = malloc((size_t)k * (d ? d : 1) * sizeof(float));
        if (src->y) out->y = malloc((size_t)k * sizeof(int32_t));
        if (src->t) out->t = malloc((size_t)k * sizeof(float));
        if (!out->x || (src->y && !out->y) || (src->t && !out->t)) {
            s = kl_seterr(KL_ENOMEM, "gathering %lld rows of %lld features", (long long)k,
                          (long long)src->d);
            goto fail;
        }
        for (int64_t i = 0; i < k; i++) {
            int64_t r = rows[i];
            if (r < 0 || r >= src->n) {
                s = kl_seterr(KL_EINTERNAL, "row %lld outside [0, %lld)", (long long)r,
                              (long long)src->n);
                goto fail;
            }
            memcpy(out->x + (size_t)i * d, src->x + (size_t)r * d, d * sizeof(float));
            if (out->y) out->y[i] = src->y[r];
            if (out->t) out->t[i] = src->t[r];
        }
    }
    out->n = k;
    return KL_OK;
fail:
    kl_dataset_free(out);
    return s;
}
