/* drift.c — PSI and KS against a reference profile, and the sliding window the server feeds. */
#include "monitor/drift.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

double kl_drift_psi(const double *expected, const double *actual, int k) {
    double psi = 0;
    for (int i = 0; i < k; i++) {
        double e = expected[i] > KL_DRIFT_PSI_FLOOR ? expected[i] : KL_DRIFT_PSI_FLOOR;
        double a = actual[i] > KL_DRIFT_PSI_FLOOR ? actual[i] : KL_DRIFT_PSI_FLOOR;
        psi += (a - e) * log(a / e);
    }
    return psi;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* sup |F_window − F_ref| for sorted values s[0..m), m >= 1. F_window is a step function and
 * F_ref non-decreasing, so the sup is approached at each distinct value v: from above at v
 * (F_window = #{<= v}/m against F_ref(v)) and from below (#{< v}/m against F_ref(v−)). */
static double ks_sorted(const kl_ref_column *c, const float *s, int64_t m) {
    double d = 0;
    for (int64_t i = 0; i < m;) {
        int64_t j = i + 1;
        while (j < m && s[j] == s[i])
            j++;
        double v = s[i];
        double above = (double)j / (double)m - kl_ref_cdf(c, v);
        double below = kl_ref_cdf_left(c, v) - (double)i / (double)m;
        if (fabs(above) > d) d = fabs(above);
        if (fabs(below) > d) d = fabs(below);
        i = j;
    }
    return d;
}

int64_t kl_drift_column(const kl_ref_column *c, float *v, int64_t n, double *psi, double *ks) {
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(v[i])) v[m++] = v[i];
    if (m == 0) {
        *psi = *ks = NAN;
        return 0;
    }
    qsort(v, (size_t)m, sizeof *v, cmp_float);
    double actual[KL_REF_MAX_EDGES + 1];
    kl_ref_bin_fractions(c, v, m, actual);
    *psi = kl_drift_psi(c->fractions, actual, c->n_edges + 1);
    *ks = ks_sorted(c, v, m);
    return m;
}

void kl_drift_result_free(kl_drift_result *r) {
    if (!r) return;
    free(r->psi);
    free(r->ks);
    free(r->n);
    free(r->pred_expected);
    free(r->pred_actual);
    memset(r, 0, sizeof *r);
}

/* --- the window --------------------------------------------------------------------------------
 */

struct kl_drift_window {
    const kl_reference *ref; /* borrowed profile */
    int d;                   /* features per row */
    int n_out;               /* outputs per prediction: classes, or 1 (regression) */
    int64_t capacity;        /* rows the ring holds */
    pthread_mutex_t mu;      /* guards the ring: x, pred, head, count */
    float *x;                /* [capacity, d] ring of rows */
    float *pred;             /* [capacity] predicted class (as a float) or prediction; NAN: none */
    int64_t head;            /* next slot to write */
    int64_t count;           /* rows held, <= capacity */
    pthread_mutex_t compute_mu; /* one computation at a time: it owns the buffers below */
    float *snap_x;              /* [capacity, d] copy of the ring taken by a computation */
    float *snap_pred;           /* [capacity] */
    float *col;                 /* [capacity] one feature's values, sorted in place */
};

kl_status kl_drift_window_create(const kl_reference *ref, int64_t capacity, kl_drift_window **out) {
    *out = NULL;
    if (!ref || capacity < 1 || ref->n_features < 1)
        return kl_seterr(KL_EINVAL,
                         "drift window: capacity %lld must be >= 1, with a profile of "
                         ">= 1 feature",
                         (long long)capacity);
    kl_drift_window *w = calloc(1, sizeof *w);
    if (!w) return kl_seterr(KL_ENOMEM, "drift window");
    w->ref = ref;
    w->d = ref->n_features;
    w->n_out = ref->n_classes > 0 ? ref->n_classes : 1;
    w->capacity = capacity;
    size_t cells = (size_t)capacity * (size_t)w->d;
    w->x = malloc(cells * sizeof(float));
    w->snap_x = malloc(cells * sizeof(float));
    w->pred = malloc((size_t)capacity * sizeof(float));
    w->snap_pred = malloc((size_t)capacity * sizeof(float));
    w->col = malloc((size_t)capacity * sizeof(float));
    pthread_mutex_init(&w->mu, NULL);
    pthread_mutex_init(&w->compute_mu, NULL);
    if (!w->x || !w->snap_x || !w->pred || !w->snap_pred || !w->col) {
        kl_drift_window_free(w);
        return kl_seterr(KL_ENOMEM, "drift window of %lld rows x %d features", (long long)capacity,
                         ref->n_features);
    }
    *out = w;
    return KL_OK;
}

void kl_drift_window_free(kl_drift_window *w) {
    if (!w) return;
    pthread_mutex_destroy(&w->mu);
    pthread_mutex_destroy(&w->compute_mu);
    free(w->x);
    free(w->snap_x);
    free(w->pred);
    free(w->snap_pred);
    free(w->col);
    free(w);
}

/* What the ring keeps of one row's outputs: the argmax class, or the prediction; NAN if none. */
static float pred_value(const float *p, int n_out, int cls) {
    if (!p) return NAN;
    if (!cls) return isfinite(p[0]) ? p[0] : NAN;
    int best = 0;
    for (int c = 0; c < n_out; c++) {
        if (!isfinite(p[c])) return NAN;
        if (p[c] > p[best]) best = c;
    }
    return (float)best;
}

kl_status kl_drift_window_add(kl_drift_window *w, const float *rows, int64_t n, int d,
                              const float *pred, int n_out) {
    if (n < 0 || (n > 0 && !rows))
        return kl_seterr(KL_EINVAL, "drift window: %lld rows", (long long)n);
    if (d != w->d)
        return kl_seterr(KL_EINVAL, "drift window: rows of %d features, the profile has %d", d,
                         w->d);
    if (pred && n_out != w->n_out)
        return kl_seterr(KL_EINVAL, "drift window: %d outputs per row, the model has %d", n_out,
                         w->n_out);
    /* Only the last `capacity` rows of a large batch can stay. */
    int64_t skip = n > w->capacity ? n - w->capacity : 0;
    int cls = w->ref->n_classes > 0;
    pthread_mutex_lock(&w->mu);
    for (int64_t i = skip; i < n; i++) {
        memcpy(w->x + w->head * d, rows + i * d, (size_t)d * sizeof(float));
        w->pred[w->head] = pred_value(pred ? pred + i * n_out : NULL, n_out, cls);
        w->head = (w->head + 1) % w->capacity;
        if (w->count < w->capacity) w->count++;
    }
    pthread_mutex_unlock(&w->mu);
    return KL_OK;
}

int64_t kl_drift_window_rows(kl_drift_window *w) {
    pthread_mutex_lock(&w->mu);
    int64_t n = w->count;
    pthread_mutex_unlock(&w->mu);
    return n;
}

/* (Re)sizes out's arrays for d features and k prediction bins. */
static kl_status result_alloc(kl_drift_result *out, int d, int k) {
    if (out->psi && out->n_features == d && out->n_pred_bins == k) return KL_OK;
    kl_drift_result_free(out);
    out->psi = malloc((size_t)d * sizeof *out->psi);
    out->ks = malloc((size_t)d * sizeof *out->ks);
    out->n = malloc((size_t)d * sizeof *out->n);
    if (k > 0) {
        out->pred_expected = calloc((size_t)k, sizeof *out->pred_expected);
        out->pred_actual = calloc((size_t)k, sizeof *out->pred_actual);
    }
    if (!out->psi || !out->ks || !out->n || (k > 0 && (!out->pred_expected || !out->pred_actual))) {
        kl_drift_result_free(out);
        return kl_seterr(KL_ENOMEM, "drift result of %d features", d);
    }
    out->n_features = d;
    out->n_pred_bins = k;
    return KL_OK;
}

/* The features with the largest PSI, descending; NAN ones are left out. */
static void top_features(kl_drift_result *r) {
    r->n_top = 0;
    for (int j = 0; j < r->n_features; j++) {
        double p = r->psi[j];
        if (isnan(p)) continue;
        int at = r->n_top;
        while (at > 0 && r->psi[r->top[at - 1]] < p)
            at--;
        if (at >= KL_DRIFT_TOP) continue;
        int last = r->n_top < KL_DRIFT_TOP ? r->n_top : KL_DRIFT_TOP - 1;
        for (int i = last; i > at; i--)
            r->top[i] = r->top[i - 1];
        r->top[at] = j;
        if (r->n_top < KL_DRIFT_TOP) r->n_top++;
    }
}

/* Prediction drift over the snapshot's m rows. */
static void prediction_drift(const kl_reference *ref, const float *pred, int64_t m,
                             kl_drift_result *out) {
    out->prediction_psi = NAN;
    out->prediction_rows = 0;
    if (!ref->has_prediction) return;
    int k = out->n_pred_bins;
    int cls = ref->n_classes > 0;
    for (int b = 0; b < k; b++) {
        out->pred_expected[b] = cls ? ref->prediction_prior[b] : ref->prediction.fractions[b];
        out->pred_actual[b] = 0;
    }
    int64_t used = 0;
    for (int64_t i = 0; i < m; i++) {
        if (isnan(pred[i])) continue;
        int b = cls ? (int)pred[i] : kl_ref_bin(&ref->prediction, pred[i]);
        out->pred_actual[b] += 1;
        used++;
    }
    out->prediction_rows = used;
    if (!used) return;
    for (int b = 0; b < k; b++)
        out->pred_actual[b] /= (double)used;
    out->prediction_psi = kl_drift_psi(out->pred_expected, out->pred_actual, k);
}

kl_status kl_drift_window_compute(kl_drift_window *w, kl_drift_result *out) {
    const kl_reference *ref = w->ref;
    int d = w->d;
    int k = !ref->has_prediction ? 0
            : ref->n_classes > 0 ? ref->n_classes
                                 : ref->prediction.n_edges + 1;
    pthread_mutex_lock(&w->compute_mu);
    kl_status s = result_alloc(out, d, k);
    if (s) {
        pthread_mutex_unlock(&w->compute_mu);
        return s;
    }
    /* Copy the ring out (order does not matter to any statistic) and let adds go on. */
    pthread_mutex_lock(&w->mu);
    int64_t m = w->count;
    memcpy(w->snap_x, w->x, (size_t)m * d * sizeof(float));
    memcpy(w->snap_pred, w->pred, (size_t)m * sizeof(float));
    pthread_mutex_unlock(&w->mu);

    out->rows = m;
    out->max_psi = out->max_ks = NAN;
    for (int j = 0; j < d; j++) {
        for (int64_t i = 0; i < m; i++)
            w->col[i] = w->snap_x[i * d + j];
        out->n[j] = kl_drift_column(&ref->features[j], w->col, m, &out->psi[j], &out->ks[j]);
        if (!isnan(out->psi[j]) && !(out->psi[j] <= out->max_psi)) out->max_psi = out->psi[j];
        if (!isnan(out->ks[j]) && !(out->ks[j] <= out->max_ks)) out->max_ks = out->ks[j];
    }
    top_features(out);
    prediction_drift(ref, w->snap_pred, m, out);
    pthread_mutex_unlock(&w->compute_mu);
    return KL_OK;
}
