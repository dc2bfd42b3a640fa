/* metrics.h — evaluation metrics computed from a model's predictions, as pure functions.
 *
 * Classification takes probabilities [n, C] (float, row-major, as kl_mlp_predict writes them)
 * and class indices [n]; the predicted class of a row is its first largest probability (what
 * `kiln predict` and numpy's argmax pick). Definitions follow scikit-learn 1.9 so that its
 * functions are the reference in the tests:
 *   accuracy         correct / n
 *   precision/recall per class tp/(tp+fp), tp/(tp+fn); F1 = 2tp/(2tp+fp+fn); 0 where the
 *                    denominator is 0 (sklearn's zero_division=0)
 *   macro_*          the mean over the classes that occur in the labels or in the predictions
 *                    (sklearn's default `labels`); per-class values are kept for all C classes
 *   roc_auc          one-vs-rest per class: trapezoid under the ROC curve taken over the distinct
 *                    scores (tied scores form one step, like sklearn's roc_curve); NaN for a class
 *                    with no positive or no negative row. Macro: the mean over the classes where it
 *                    is defined (sklearn errors instead); NaN when there is none
 *   log_loss         mean of -ln(clip(p[label], eps, 1-eps)), eps = DBL_EPSILON: sklearn 1.9 clips
 *                    at the machine epsilon of the input's dtype (float64 here, the float32
 *                    probabilities widened) and no longer renormalises rows
 *   ece              expected calibration error on the confidence (max probability): 15 bins of
 *                    equal width, bin b holding (b/15, (b+1)/15]; ECE = sum over bins of
 *                    |bin| / n * |accuracy(bin) - mean confidence(bin)|
 *   confusion        [C, C] counts, row = true class, column = predicted class
 * Regression takes predictions [n] and targets [n] (float, widened to double):
 *   mse, rmse, mae   means of squared / absolute errors
 *   r2               1 - SS_res / SS_tot; when SS_tot is 0: 1 if SS_res is 0, else 0 (sklearn's
 *                    force_finite)
 * Sums are plain double accumulations; against sklearn (pairwise sums) they agree to ~1e-13.
 *
 * Baselines: the majority-class predictor (probabilities = the class frequencies of a reference
 * label set, usually the training labels) and the mean predictor (the reference targets' mean),
 * evaluated on the same test rows with the same metrics; gates compare against them.
 */
#ifndef KL_EVAL_METRICS_H
#define KL_EVAL_METRICS_H

#include <stdint.h>

#include "runtime/model.h" /* kl_task */
#include "runtime/status.h"

#define KL_ECE_BINS 15

/* The scalar metrics of one predictor; fields of the other task are NaN. */
typedef struct {
    double accuracy;        /* classification: correct / n */
    double macro_precision; /* mean per-class precision (classes seen in labels or predictions) */
    double macro_recall;    /* mean per-class recall */
    double macro_f1;        /* mean per-class F1 */
    double roc_auc;         /* macro one-vs-rest ROC-AUC, NaN when undefined */
    double log_loss;        /* mean cross-entropy, clipped at DBL_EPSILON */
    double ece;             /* expected calibration error, 15 equal-width bins */
    double mse;             /* regression: mean squared error */
    double rmse;            /* sqrt(mse) */
    double mae;             /* mean absolute error */
    double r2;              /* coefficient of determination */
} kl_eval_scalars;

/* Everything one evaluation measured. Per-class arrays and the copies of the predictions and
 * truth live in one allocation (mem); free with kl_eval_result_free. */
typedef struct {
    kl_task task;         /* classification or regression */
    int64_t n;            /* rows evaluated */
    int n_classes;        /* C (classification), else 0 */
    char **class_names;   /* [C] owned copies, or NULL when unnamed */
    kl_eval_scalars m;    /* the model's metrics */
    kl_eval_scalars base; /* the baseline's (majority class / mean) on the same rows */
    char base_source[16]; /* where the baseline was fitted: "train", "test" or "" (none) */
    int base_class;       /* classification: the majority class of the baseline, else -1 */
    double base_mean;     /* regression: the baseline's constant prediction, else NaN */
    double *precision;    /* [C] per class */
    double *recall;       /* [C] */
    double *f1;           /* [C] */
    double *auc;          /* [C] one-vs-rest, NaN where undefined */
    int64_t *support;     /* [C] rows whose label is the class */
    int64_t *predicted;   /* [C] rows predicted as the class */
    int64_t *confusion;   /* [C * C] row = true class, column = predicted class */
    int64_t ece_count[KL_ECE_BINS]; /* rows per confidence bin */
    double ece_conf[KL_ECE_BINS];   /* mean confidence per bin (NaN when empty) */
    double ece_acc[KL_ECE_BINS];    /* accuracy per bin (NaN when empty) */
    float *pred;                    /* [n * outputs] the probabilities / predictions, owned */
    int32_t *labels;                /* [n] class indices (classification), owned, else NULL */
    float *targets;                 /* [n] targets (regression), owned, else NULL */
    void *mem;                      /* owns the arrays above except class_names */
} kl_eval_result;

/* Computes every classification metric of probs [n, C] against labels [n] (each in [0, C)).
 * class_names ([C], may be NULL) are copied. The predictions and labels are copied into out, which
 * the caller frees with kl_eval_result_free (also on error: out is zeroed first). The baseline is
 * left empty (kl_eval_set_baseline_*). */
kl_status kl_eval_classification(const float *probs, int64_t n, int C, const int32_t *labels,
                                 char *const *class_names, kl_eval_result *out);

/* Computes MSE, RMSE, MAE and R² of pred [n] against targets [n]; as above. */
kl_status kl_eval_regression(const float *pred, const float *targets, int64_t n,
                             kl_eval_result *out);

/* Fills r->base with the metrics of the majority-class predictor fitted on ref_labels [n_ref]
 * (probabilities = their class frequencies; the majority class is the first most frequent) on
 * r's rows. source ("train", "test") is recorded. */
kl_status kl_eval_set_baseline_labels(kl_eval_result *r, const int32_t *ref_labels, int64_t n_ref,
                                      const char *source);

/* Fills r->base with the metrics of predicting the mean of ref_targets [n_ref] on r's rows. */
kl_status kl_eval_set_baseline_targets(kl_eval_result *r, const float *ref_targets, int64_t n_ref,
                                       const char *source);

/* A metric of the model by name, for threshold gates: "accuracy", "macro_precision",
 * "macro_recall", "macro_f1", "roc_auc", "log_loss", "ece" (classification), "mse", "rmse",
 * "mae", "r2" (regression); "precision", "recall", "f1" and "auc" are the macro values. A name
 * unknown, or of the other task, is KL_ENOTFOUND. *value may be NaN (roc_auc undefined). */
kl_status kl_eval_metric(const kl_eval_result *r, const char *name, double *value);

/* The same metric of the baseline; KL_ENOTFOUND also when no baseline was set. */
kl_status kl_eval_baseline_metric(const kl_eval_result *r, const char *name, double *value);

/* The metrics of rows[0..k) of r (e.g. one group of a fairness column), recomputed from r's
 * predictions into out (free with kl_eval_result_free); the baseline is not carried over. */
kl_status kl_eval_subset(const kl_eval_result *r, const int64_t *rows, int64_t k,
                         kl_eval_result *out);

/* The names kl_eval_metric knows for a task, NULL-terminated (static). */
const char *const *kl_eval_metric_names(kl_task task);

/* One-vs-rest ROC-AUC of class cls from the scores probs[i * C + cls] against labels == cls; NaN
 * when there are no positives or no negatives. */
double kl_eval_roc_auc(const float *probs, int64_t n, int C, const int32_t *labels, int cls);

/* The ROC curve of class cls (one point per distinct score, starting at (0,0)): *fpr and *tpr
 * (malloc'd, caller frees) get *n_points points. KL_EINVAL when it is undefined. */
kl_status kl_eval_roc_curve(const float *probs, int64_t n, int C, const int32_t *labels, int cls,
                            double **fpr, double **tpr, int64_t *n_points);

void kl_eval_result_free(kl_eval_result *r);

#endif
