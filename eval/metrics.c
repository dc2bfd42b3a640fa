/* metrics.c — classification and regression metrics, baselines (metrics.h). */
#include "eval/metrics.h"

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h" /* kl_strings_copy / kl_strings_free for the class names */

static void scalars_nan(kl_eval_scalars *s) {
    s->accuracy = s->macro_precision = s->macro_recall = s->macro_f1 = NAN;
    s->roc_auc = s->log_loss = s->ece = NAN;
    s->mse = s->rmse = s->mae = s->r2 = NAN;
}

void kl_eval_result_free(kl_eval_result *r) {
    if (!r) return;
    free(r->mem);
    kl_strings_free(r->class_names, r->n_classes);
    memset(r, 0, sizeof *r);
}

/* Zeroes r and gives it one allocation for the per-class arrays (C may be 0), the predictions
 * ([n * outputs] floats) and the truth ([n] int32 labels or float targets). */
static kl_status result_alloc(kl_eval_result *r, kl_task task, int64_t n, int C) {
    memset(r, 0, sizeof *r);
    r->task = task;
    r->n = n;
    r->n_classes = task == KL_TASK_CLASSIFICATION ? C : 0;
    r->base_class = -1;
    r->base_mean = NAN;
    scalars_nan(&r->m);
    scalars_nan(&r->base);
    for (int b = 0; b < KL_ECE_BINS; b++)
        r->ece_conf[b] = r->ece_acc[b] = NAN;
    int64_t k = r->n_classes, outputs = task == KL_TASK_CLASSIFICATION ? C : 1;
    /* 8-byte fields first, then 4-byte ones: every array stays aligned. */
    size_t bytes = (size_t)(4 * k) * sizeof(double) + (size_t)(2 * k + k * k) * sizeof(int64_t) +
                   (size_t)(n * outputs) * sizeof(float) + (size_t)n * sizeof(int32_t);
    char *p = calloc(1, bytes ? bytes : 1);
    if (!p) return kl_seterr(KL_ENOMEM, "evaluation of %lld rows", (long long)n);
    r->mem = p;
    r->precision = (double *)p, p += k * sizeof(double);
    r->recall = (double *)p, p += k * sizeof(double);
    r->f1 = (double *)p, p += k * sizeof(double);
    r->auc = (double *)p, p += k * sizeof(double);
    r->support = (int64_t *)p, p += k * sizeof(int64_t);
    r->predicted = (int64_t *)p, p += k * sizeof(int64_t);
    r->confusion = (int64_t *)p, p += k * k * sizeof(int64_t);
    r->pred = (float *)p, p += (size_t)(n * outputs) * sizeof(float);
    if (task == KL_TASK_CLASSIFICATION)
        r->labels = (int32_t *)p;
    else
        r->targets = (float *)p;
    if (!k) r->precision = r->recall = r->f1 = r->auc = NULL;
    if (!k) r->support = r->predicted = r->confusion = NULL;
    return KL_OK;
}

static int argmax(const float *row, int C) {
    int best = 0;
    for (int c = 1; c < C; c++)
        if (row[c] > row[best]) best = c;
    return best;
}

/* --- ROC ---------------------------------------------------------------------------------- */

typedef struct {
    double score; /* the class's probability */
    int pos;      /* 1 when the row's label is the class */
} scored;

static int by_score_desc(const void *a, const void *b) {
    double x = ((const scored *)a)->score, y = ((const scored *)b)->score;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Walks the distinct scores from the highest down; calls point(fpr, tpr) for (0,0) and after each
 * group of tied scores, and returns the trapezoid area (NaN when undefined). */
static double roc_walk(const float *probs, int64_t n, int C, const int32_t *labels, int cls,
                       double *fpr, double *tpr, int64_t *n_points, int *oom) {
    *oom = 0;
    int64_t P = 0;
    for (int64_t i = 0; i < n; i++)
        P += labels[i] == cls;
    int64_t N = n - P;
    if (P == 0 || N == 0) return NAN;
    scored *s = malloc((size_t)n * sizeof *s);
    if (!s) {
        *oom = 1;
        return NAN;
    }
    for (int64_t i = 0; i < n; i++)
        s[i] = (scored){(double)probs[i * C + cls], labels[i] == cls};
    qsort(s, (size_t)n, sizeof *s, by_score_desc);
    int64_t tp = 0, fp = 0, k = 0;
    double area = 0, x0 = 0, y0 = 0;
    if (fpr) fpr[k] = 0, tpr[k] = 0;
    k++;
    for (int64_t i = 0; i < n; i++) {
        tp += s[i].pos;
        fp += !s[i].pos;
        if (i + 1 < n && s[i + 1].score == s[i].score) continue;
        double x = (double)fp / (double)N, y = (double)tp / (double)P;
        area += (x - x0) * (y + y0) / 2;
        x0 = x, y0 = y;
        if (fpr) fpr[k] = x, tpr[k] = y;
        k++;
    }
    free(s);
    if (n_points) *n_points = k;
    return area;
}

double kl_eval_roc_auc(const float *probs, int64_t n, int C, const int32_t *labels, int cls) {
    int oom;
    return roc_walk(probs, n, C, labels, cls, NULL, NULL, NULL, &oom);
}

kl_status kl_eval_roc_curve(const float *probs, int64_t n, int C, const int32_t *labels, int cls,
                            double **fpr, double **tpr, int64_t *n_points) {
    *fpr = *tpr = NULL;
    *n_points = 0;
    double *x = malloc((size_t)(n + 1) * sizeof *x), *y = malloc((size_t)(n + 1) * sizeof *y);
    int oom = !x || !y;
    double a = oom ? NAN : roc_walk(probs, n, C, labels, cls, x, y, n_points, &oom);
    if (oom || isnan(a)) {
        free(x);
        free(y);
        *n_points = 0;
        return oom ? kl_seterr(KL_ENOMEM, "ROC curve of %lld rows", (long long)n)
                   : kl_seterr(KL_EINVAL, "ROC curve of class %d: no positive or no negative row",
                               cls);
    }
    *fpr = x, *tpr = y;
    return KL_OK;
}

/* --- classification ------------------------------------------------------------------------ */

/* The scalar metrics and, when r is not NULL, the per-class arrays, confusion and ECE bins. */
static kl_status classification_scalars(const float *probs, int64_t n, int C, const int32_t *labels,
                                        kl_eval_result *r, kl_eval_scalars *s) {
    int64_t *cm = calloc((size_t)C * C, sizeof *cm);
    if (!cm) return kl_seterr(KL_ENOMEM, "confusion matrix %dx%d", C, C);
    int64_t correct = 0, bin_n[KL_ECE_BINS] = {0};
    double loss = 0, bin_conf[KL_ECE_BINS] = {0}, bin_hit[KL_ECE_BINS] = {0};
    for (int64_t i = 0; i < n; i++) {
        const float *row = probs + i * C;
        int y = labels[i], p = argmax(row, C);
        cm[(int64_t)y * C + p]++;
        correct += p == y;
        double q = (double)row[y];
        q = q < DBL_EPSILON ? DBL_EPSILON : q > 1 - DBL_EPSILON ? 1 - DBL_EPSILON : q;
        loss -= log(q);
        double conf = (double)row[p];
        int b = (int)ceil(conf * KL_ECE_BINS) - 1;
        b = b < 0 ? 0 : b >= KL_ECE_BINS ? KL_ECE_BINS - 1 : b;
        /* Bin b is (b/15, (b+1)/15] with the edges as doubles; fix any rounding of conf*15. */
        while (b > 0 && conf <= (double)b / KL_ECE_BINS)
            b--;
        while (b < KL_ECE_BINS - 1 && conf > (double)(b + 1) / KL_ECE_BINS)
            b++;
        bin_n[b]++;
        bin_conf[b] += conf;
        bin_hit[b] += p == y;
    }
    s->accuracy = (double)correct / (double)n;
    s->log_loss = loss / (double)n;
    s->ece = 0;
    for (int b = 0; b < KL_ECE_BINS; b++) {
        if (!bin_n[b]) continue;
        double conf = bin_conf[b] / (double)bin_n[b], acc = bin_hit[b] / (double)bin_n[b];
        s->ece += (double)bin_n[b] / (double)n * fabs(acc - conf);
        if (r) r->ece_count[b] = bin_n[b], r->ece_conf[b] = conf, r->ece_acc[b] = acc;
    }
    double sp = 0, sr = 0, sf = 0, sa = 0;
    int seen = 0, defined = 0;
    for (int c = 0; c < C; c++) {
        int64_t tp = cm[(int64_t)c * C + c], support = 0, predicted = 0;
        for (int k = 0; k < C; k++)
            support += cm[(int64_t)c * C + k], predicted += cm[(int64_t)k * C + c];
        int64_t fp = predicted - tp, fn = support - tp;
        double prec = predicted ? (double)tp / (double)predicted : 0;
        double rec = support ? (double)tp / (double)support : 0;
        double f1 = 2 * tp + fp + fn ? 2.0 * (double)tp / (double)(2 * tp + fp + fn) : 0;
        double auc = kl_eval_roc_auc(probs, n, C, labels, c);
        if (support || predicted) seen++, sp += prec, sr += rec, sf += f1;
        if (!isnan(auc)) defined++, sa += auc;
        if (r) {
            r->precision[c] = prec, r->recall[c] = rec, r->f1[c] = f1, r->auc[c] = auc;
            r->support[c] = support, r->predicted[c] = predicted;
        }
    }
    s->macro_precision = sp / seen;
    s->macro_recall = sr / seen;
    s->macro_f1 = sf / seen;
    s->roc_auc = defined ? sa / defined : NAN;
    if (r) memcpy(r->confusion, cm, (size_t)C * C * sizeof *cm);
    free(cm);
    return KL_OK;
}

static kl_status check_labels(const int32_t *labels, int64_t n, int C) {
    for (int64_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= C)
            return kl_seterr(KL_EINVAL, "row %lld: label %d is not a class index in [0, %d)",
                             (long long)i, labels[i], C);
    return KL_OK;
}

kl_status kl_eval_classification(const float *probs, int64_t n, int C, const int32_t *labels,
                                 char *const *class_names, kl_eval_result *out) {
    memset(out, 0, sizeof *out);
    if (n <= 0) return kl_seterr(KL_EINVAL, "no rows to evaluate");
    if (C < 2) return kl_seterr(KL_EINVAL, "%d classes: classification needs at least 2", C);
    if (!probs || !labels) return kl_seterr(KL_EINVAL, "no predictions or no labels");
    KL_TRY(check_labels(labels, n, C));
    for (int64_t i = 0; i < n * C; i++)
        if (!isfinite(probs[i]))
            return kl_seterr(KL_EINVAL, "row %lld: probability %lld is not finite",
                             (long long)(i / C), (long long)(i % C));
    KL_TRY(result_alloc(out, KL_TASK_CLASSIFICATION, n, C));
    memcpy(out->pred, probs, (size_t)(n * C) * sizeof(float));
    memcpy(out->labels, labels, (size_t)n * sizeof(int32_t));
    kl_status s = KL_OK;
    if (class_names) s = kl_strings_copy(class_names, C, &out->class_names);
    if (s == KL_OK) s = classification_scalars(probs, n, C, labels, out, &out->m);
    if (s != KL_OK) kl_eval_result_free(out);
    return s;
}

/* --- regression ---------------------------------------------------------------------------- */

/* pred NULL: every prediction is constant. */
static void regression_scalars(const float *pred, double constant, const float *t, int64_t n,
                               kl_eval_scalars *s) {
    double se = 0, ae = 0, mean = 0;
    for (int64_t i = 0; i < n; i++)
        mean += (double)t[i];
    mean /= (double)n;
    double tot = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = (pred ? (double)pred[i] : constant) - (double)t[i], d = (double)t[i] - mean;
        se += e * e;
        ae += fabs(e);
        tot += d * d;
    }
    s->mse = se / (double)n;
    s->rmse = sqrt(s->mse);
    s->mae = ae / (double)n;
    s->r2 = tot != 0 ? 1 - se / tot : se == 0 ? 1.0 : 0.0;
}

kl_status kl_eval_regression(const float *pred, const float *targets, int64_t n,
                             kl_eval_result *out) {
    memset(out, 0, sizeof *out);
    if (n <= 0) return kl_seterr(KL_EINVAL, "no rows to evaluate");
    if (!pred || !targets) return kl_seterr(KL_EINVAL, "no predictions or no targets");
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(pred[i]) || !isfinite(targets[i]))
            return kl_seterr(KL_EINVAL, "row %lld: %s is not finite", (long long)i,
                             isfinite(pred[i]) ? "the target" : "the prediction");
    KL_TRY(result_alloc(out, KL_TASK_REGRESSION, n, 0));
    memcpy(out->pred, pred, (size_t)n * sizeof(float));
    memcpy(out->targets, targets, (size_t)n * sizeof(float));
    regression_scalars(pred, 0, targets, n, &out->m);
    return KL_OK;
}

kl_status kl_eval_subset(const kl_eval_result *r, const int64_t *rows, int64_t k,
                         kl_eval_result *out) {
    memset(out, 0, sizeof *out);
    int cls = r->task == KL_TASK_CLASSIFICATION, outputs = cls ? r->n_classes : 1;
    if (k <= 0) return kl_seterr(KL_EINVAL, "no rows to evaluate");
    float *pred = malloc((size_t)(k * outputs) * sizeof *pred);
    int32_t *y = cls ? malloc((size_t)k * sizeof *y) : NULL;
    float *t = cls ? NULL : malloc((size_t)k * sizeof *t);
    kl_status s = KL_OK;
    if (!pred || (cls ? !y : !t)) s = kl_seterr(KL_ENOMEM, "subset of %lld rows", (long long)k);
    for (int64_t i = 0; s == KL_OK && i < k; i++) {
        if (rows[i] < 0 || rows[i] >= r->n) {
            s = kl_seterr(KL_EINVAL, "row %lld is not in [0, %lld)", (long long)rows[i],
                          (long long)r->n);
            break;
        }
        memcpy(pred + i * outputs, r->pred + rows[i] * outputs, (size_t)outputs * sizeof *pred);
        if (cls)
            y[i] = r->labels[rows[i]];
        else
            t[i] = r->targets[rows[i]];
    }
    if (s == KL_OK)
        s = cls ? kl_eval_classification(pred, k, r->n_classes, y, r->class_names, out)
                : kl_eval_regression(pred, t, k, out);
    free(pred);
    free(y);
    free(t);
    return s;
}

/* --- baselines ----------------------------------------------------------------------------- */

kl_status kl_eval_set_baseline_labels(kl_eval_result *r, const int32_t *ref, int64_t n_ref,
                                      const char *source) {
    if (r->task != KL_TASK_CLASSIFICATION || !r->labels)
        return kl_seterr(KL_EINVAL, "a majority-class baseline needs a classification result");
    if (n_ref <= 0 || !ref) return kl_seterr(KL_EINVAL, "baseline: no reference labels");
    int C = r->n_classes;
    KL_TRY(check_labels(ref, n_ref, C));
    int64_t *count = calloc((size_t)C, sizeof *count);
    float *probs = malloc((size_t)(r->n * C) * sizeof *probs);
    if (!count || !probs) {
        free(count);
        free(probs);
        return kl_seterr(KL_ENOMEM, "baseline of %lld rows", (long long)r->n);
    }
    for (int64_t i = 0; i < n_ref; i++)
        count[ref[i]]++;
    int major = 0;
    for (int c = 1; c < C; c++)
        if (count[c] > count[major]) major = c;
    for (int64_t i = 0; i < r->n; i++)
        for (int c = 0; c < C; c++)
            probs[i * C + c] = (float)((double)count[c] / (double)n_ref);
    /* The frequencies as floats may tie where the counts do not only when counts differ by less
     * than float precision; put the majority first in any such tie so argmax picks it. */
    for (int c = 0; c < major; c++)
        if (probs[c] == probs[major])
            for (int64_t i = 0; i < r->n; i++)
                probs[i * C + c] = nextafterf(probs[i * C + c], 0);
    kl_eval_scalars s;
    scalars_nan(&s);
    kl_status st = classification_scalars(probs, r->n, C, r->labels, NULL, &s);
    if (st == KL_OK) {
        r->base = s;
        r->base_class = major;
        snprintf(r->base_source, sizeof r->base_source, "%s", source ? source : "");
    }
    free(count);
    free(probs);
    return st;
}

kl_status kl_eval_set_baseline_targets(kl_eval_result *r, const float *ref, int64_t n_ref,
                                       const char *source) {
    if (r->task != KL_TASK_REGRESSION || !r->targets)
        return kl_seterr(KL_EINVAL, "a mean baseline needs a regression result");
    if (n_ref <= 0 || !ref) return kl_seterr(KL_EINVAL, "baseline: no reference targets");
    double mean = 0;
    for (int64_t i = 0; i < n_ref; i++)
        mean += (double)ref[i];
    mean /= (double)n_ref;
    scalars_nan(&r->base);
    regression_scalars(NULL, mean, r->targets, r->n, &r->base);
    r->base_mean = mean;
    snprintf(r->base_source, sizeof r->base_source, "%s", source ? source : "");
    return KL_OK;
}

/* --- by name ------------------------------------------------------------------------------- */

static const char *const cls_names[] = {"accuracy", "macro_precision", "macro_recall", "macro_f1",
                                        "roc_auc",  "log_loss",        "ece",          NULL};
static const char *const reg_names[] = {"mse", "rmse", "mae", "r2", NULL};

const char *const *kl_eval_metric_names(kl_task task) {
    return task == KL_TASK_CLASSIFICATION ? cls_names : reg_names;
}

static kl_status by_name(const kl_eval_scalars *s, kl_task task, const char *name, double *v) {
    static const struct {
        const char *name; /* as a gate names it */
        size_t offset;    /* into kl_eval_scalars */
        kl_task task;     /* the task it belongs to */
    } table[] = {
        {"accuracy", offsetof(kl_eval_scalars, accuracy), KL_TASK_CLASSIFICATION},
        {"macro_precision", offsetof(kl_eval_scalars, macro_precision), KL_TASK_CLASSIFICATION},
        {"precision", offsetof(kl_eval_scalars, macro_precision), KL_TASK_CLASSIFICATION},
        {"macro_recall", offsetof(kl_eval_scalars, macro_recall), KL_TASK_CLASSIFICATION},
        {"recall", offsetof(kl_eval_scalars, macro_recall), KL_TASK_CLASSIFICATION},
        {"macro_f1", offsetof(kl_eval_scalars, macro_f1), KL_TASK_CLASSIFICATION},
        {"f1", offsetof(kl_eval_scalars, macro_f1), KL_TASK_CLASSIFICATION},
        {"roc_auc", offsetof(kl_eval_scalars, roc_auc), KL_TASK_CLASSIFICATION},
        {"auc", offsetof(kl_eval_scalars, roc_auc), KL_TASK_CLASSIFICATION},
        {"log_loss", offsetof(kl_eval_scalars, log_loss), KL_TASK_CLASSIFICATION},
        {"ece", offsetof(kl_eval_scalars, ece), KL_TASK_CLASSIFICATION},
        {"mse", offsetof(kl_eval_scalars, mse), KL_TASK_REGRESSION},
        {"rmse", offsetof(kl_eval_scalars, rmse), KL_TASK_REGRESSION},
        {"mae", offsetof(kl_eval_scalars, mae), KL_TASK_REGRESSION},
        {"r2", offsetof(kl_eval_scalars, r2), KL_TASK_REGRESSION},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcmp(table[i].name, name)) continue;
        if (table[i].task != task)
            return kl_seterr(KL_ENOTFOUND, "metric \"%s\" is for %s models", name,
                             task == KL_TASK_CLASSIFICATION ? "regression" : "classification");
        *v = *(const double *)((const char *)s + table[i].offset);
        return KL_OK;
    }
    return kl_seterr(KL_ENOTFOUND, "unknown metric \"%s\"", name);
}

kl_status kl_eval_metric(const kl_eval_result *r, const char *name, double *value) {
    return by_name(&r->m, r->task, name, value);
}

kl_status kl_eval_baseline_metric(const kl_eval_result *r, const char *name, double *value) {
    if (!r->base_source[0])
        return kl_seterr(KL_ENOTFOUND, "baseline metric \"%s\": no baseline was evaluated", name);
    return by_name(&r->base, r->task, name, value);
}
