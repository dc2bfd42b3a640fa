/* reference.h — the reference profile of a model's training data, carried in the bundle's
 * kiln.json ("reference") and read back by monitor/ to measure drift.
 *
 * It lives in data/ because it is plain statistics of a dataset (and of a model's outputs,
 * handed in as numbers): the trainer fits it, monitor/ compares windows of live rows with it,
 * and runtime/ carries it as opaque JSON, so no stage reaches into another's structs.
 *
 * Per feature, over the training split's values as a client sends them (encoded, before the
 * bundle's shift/scale transform):
 *   quantiles  101 values: percentiles 0, 1, ..., 100 with numpy's default ("linear")
 *              interpolation, q = x[lo] + (h - lo) (x[lo+1] - x[lo]), h = (n - 1) p / 100
 *   edges      the distinct interior decile edges (quantiles 10, 20, ..., 90, duplicates
 *              dropped), 0 to 9 of them, ascending
 *   fractions  the training fraction in each PSI bin; bins are right-closed:
 *              (-inf, e1], (e1, e2], ..., (ek, +inf), so k edges make k + 1 bins
 * Every stored number is rounded to 7 significant digits first (%.7g), and the fractions are
 * counted against the rounded edges, so a reader sees exactly what was measured.
 *
 * Non-finite values are left out of a feature's profile (training data is finite after the
 * encoder's imputation; this only guards a hand-built call). */
#ifndef KL_REFERENCE_H
#define KL_REFERENCE_H

#include <stdint.h>

#include "runtime/status.h"

#define KL_REF_FORMAT_VERSION 1
#define KL_REF_QUANTILES 101 /* percentiles 0..100 */
#define KL_REF_MAX_EDGES 9   /* interior decile edges */

/* The profile of one numeric column (a feature, or a regression model's prediction). */
typedef struct {
    double q[KL_REF_QUANTILES];             /* percentiles 0..100, non-decreasing */
    int n_edges;                            /* distinct interior decile edges, 0..9 */
    double edges[KL_REF_MAX_EDGES];         /* ascending, strictly */
    double fractions[KL_REF_MAX_EDGES + 1]; /* [n_edges + 1] training fraction per bin */
} kl_ref_column;

typedef struct {
    int64_t rows;              /* training rows profiled */
    int n_features;            /* features per row */
    kl_ref_column *features;   /* [n_features], owned */
    int n_classes;             /* classification: classes; 0 for regression */
    double *class_prior;       /* [n_classes] label fractions of the training split, or NULL */
    int has_prediction;        /* 1 when the prediction prior below is set */
    char prediction_split[16]; /* "validation" or "training": whose predictions */
    int64_t prediction_rows;   /* rows those predictions came from */
    double *prediction_prior;  /* classification: [n_classes] fractions of each predicted class */
    kl_ref_column prediction;  /* regression: the profile of the predictions */
} kl_reference;

/* Fits the feature profiles of x[n, d] (raw, untransformed) and, when y is given, the class
 * prior over n_classes (labels outside [0, n_classes) are an error). n may be 0 only for d == 0.
 * On failure out is left empty. Free with kl_reference_free. */
kl_status kl_reference_fit(const float *x, int64_t n, int d, const int32_t *y, int n_classes,
                           kl_reference *out);

/* Sets the prediction prior from a model's outputs out[n, n_out] on the named split:
 * classification (ref->n_classes > 0): n_out == n_classes probabilities per row, counted by
 * argmax; regression: n_out == 1 predictions, profiled like a feature. */
kl_status kl_reference_set_predictions(kl_reference *ref, const float *out, int64_t n, int n_out,
                                       const char *split);

/* Renders the profile as the JSON object kiln.json holds under "reference" (text malloc'd,
 * caller frees with free()). */
kl_status kl_reference_to_json(const kl_reference *ref, char **text);

/* Parses and checks that JSON object (every array's length and order). n_features: the model's
 * input width, checked against the profile (0: not checked). On failure out is left empty. */
kl_status kl_reference_from_json(const char *text, int n_features, kl_reference *out);

/* Frees what ref owns and zeroes it; safe on a zeroed profile. */
void kl_reference_free(kl_reference *ref);

/* The right-closed PSI bin of v: the number of edges strictly below v (0 .. n_edges). */
int kl_ref_bin(const kl_ref_column *c, double v);

/* The fraction of sorted[0..n) (ascending, n > 0) in each of c's bins: out[0..n_edges]. */
void kl_ref_bin_fractions(const kl_ref_column *c, const float *sorted, int64_t n, double *out);

/* The reference CDF: piecewise linear through (q[k], k/100), 0 below q[0], 1 from q[100] on.
 * Where quantiles tie (q[a] == ... == q[b]) it jumps there; kl_ref_cdf is right-continuous
 * (F(v) = b/100 at the tie), kl_ref_cdf_left is the limit from below (a/100). */
double kl_ref_cdf(const kl_ref_column *c, double v);
double kl_ref_cdf_left(const kl_ref_column *c, double v);

#endif
