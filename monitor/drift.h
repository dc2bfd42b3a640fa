/* drift.h — how far a window of live rows has moved from a model's training data.
 *
 * Against the bundle's reference profile (data/reference.h), per feature:
 *   PSI  Σ_i (a_i − e_i) ln(a_i / e_i) over the profile's right-closed bins, e_i the training
 *        fraction and a_i the window's; both are floored at KL_DRIFT_PSI_FLOOR first (an empty
 *        bin would make it infinite) and not renormalised afterwards.
 *   KS   D = sup_x |F_window(x) − F_ref(x)|, F_window the window's empirical CDF and F_ref the
 *        piecewise-linear CDF through the 101 reference quantiles (kl_ref_cdf). The sup is
 *        taken exactly, on both sides of every window value, so a jump of F_ref at tied
 *        quantiles counts correctly (scipy.stats.kstest assumes a continuous CDF and agrees
 *        whenever no window value sits on such a jump).
 * and for the predictions: PSI of the window's predicted-class fractions against the prior
 * (classification), or of its predictions against their reference bins (regression).
 *
 * Non-finite inputs (NaN, ±inf) are skipped, per feature: a feature's statistics are over the
 * window's finite values of it, and a feature without any is NAN (left out of the maxima and
 * the top list). A row whose prediction is missing or not finite counts for the features only.
 * Rules of thumb for PSI: < 0.1 stable, 0.1–0.25 moderate shift, > 0.25 large shift. */
#ifndef KL_DRIFT_H
#define KL_DRIFT_H

#include <stdint.h>

#include "data/reference.h"
#include "runtime/status.h"

#define KL_DRIFT_PSI_FLOOR 1e-4 /* floor on each bin fraction inside PSI */
#define KL_DRIFT_TOP 10         /* features kept in kl_drift_result.top */

/* PSI of actual bin fractions against expected ones, k bins (floored as above). */
double kl_drift_psi(const double *expected, const double *actual, int k);

/* PSI and KS of the values v[0..n) of one feature against its profile. Reorders v (the finite
 * values first, sorted) and returns how many were finite; with none, *psi and *ks are NAN. */
int64_t kl_drift_column(const kl_ref_column *c, float *v, int64_t n, double *psi, double *ks);

/* One computation over a window. Arrays are owned by the result (kl_drift_result_free). */
typedef struct {
    int64_t rows;            /* rows in the window */
    int n_features;          /* entries in the arrays below */
    double *psi;             /* [n_features] PSI per feature (NAN: no finite value) */
    double *ks;              /* [n_features] KS statistic per feature (NAN likewise) */
    int64_t *n;              /* [n_features] finite values of each feature in the window */
    double max_psi;          /* largest feature PSI (NAN when none) */
    double max_ks;           /* largest feature KS (NAN when none) */
    int top[KL_DRIFT_TOP];   /* features by descending PSI (ties: lower index first) */
    int n_top;               /* entries in top */
    double prediction_psi;   /* NAN without a prediction prior or predicted rows */
    int64_t prediction_rows; /* rows with a usable prediction */
    int n_pred_bins;         /* classes (classification) or prediction bins (regression) */
    double *pred_expected;   /* [n_pred_bins] the prior's fractions, or NULL */
    double *pred_actual;     /* [n_pred_bins] the window's fractions, or NULL */
} kl_drift_result;

void kl_drift_result_free(kl_drift_result *r);

/* The last `capacity` rows seen, with their predictions, in a ring. Thread-safe: any number of
 * threads may add while one or more compute; an add only copies into the ring under a short
 * lock (no allocation), and a computation copies the ring out before working on it. */
typedef struct kl_drift_window kl_drift_window;

/* Creates a window over ref (borrowed: it must outlive the window) holding up to capacity rows,
 * all its memory allocated here. Free with kl_drift_window_free. */
kl_status kl_drift_window_create(const kl_reference *ref, int64_t capacity, kl_drift_window **out);

void kl_drift_window_free(kl_drift_window *w);

/* Adds n rows rows[n, d] (raw, as the client sent them; d must be the profile's feature count)
 * with the model's outputs pred[n, n_out]: probabilities, n_out == classes (classification), or
 * predictions, n_out == 1 (regression); pred may be NULL (n_out ignored). The oldest rows leave
 * once the window is full. */
kl_status kl_drift_window_add(kl_drift_window *w, const float *rows, int64_t n, int d,
                              const float *pred, int n_out);

/* Rows in the window now. */
int64_t kl_drift_window_rows(kl_drift_window *w);

/* Computes every statistic over the rows in the window now, O(rows × features × log rows).
 * out must be zeroed or hold an earlier result (whose arrays are reused). An empty window gives
 * rows == 0 and NAN statistics. */
kl_status kl_drift_window_compute(kl_drift_window *w, kl_drift_result *out);

#endif
