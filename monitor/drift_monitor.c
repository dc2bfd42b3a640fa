/* drift_monitor.c — a drift window per served version, fed by the model manager's monitor hook
 * and recomputed by one background thread (see drift_monitor.h).
 *
 * Locking: the request path touches only its version's window (kl_drift_window_add, the
 * window's own short lock). `mu` guards the list of versions; the thread holds it for a whole
 * sweep, and open/close (a version loading, or freed after its last request) take it, so a
 * window is never freed under a computation. Gauges are lock-free. */
#include "monitor/drift_monitor.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/reference.h" /* kl_reference_from_json: the bundle's profile */
#include "monitor/drift.h"  /* the window and its statistics */
#include "runtime/ticker.h" /* the recomputing thread */

/* One served version's window and gauges. */
typedef struct dm_version {
    struct kl_drift_monitor *mon; /* owner */
    char model[128];              /* model name */
    char version[32];             /* version label */
    kl_reference ref;             /* the bundle's profile (owned) */
    kl_drift_window *w;           /* the window over ref */
    kl_drift_result res;          /* the last computation (arrays reused) */
    int d;                        /* features */
    char **names;                 /* [d] feature label values (owned) */
    kl_gauge *g_rows;             /* kiln_drift_window_rows */
    kl_gauge *g_psi_max;          /* kiln_drift_psi_max */
    kl_gauge *g_ks_max;           /* kiln_drift_ks_max */
    kl_gauge *g_pred;             /* kiln_drift_prediction_psi */
    kl_gauge **g_feat;            /* [d] kiln_drift_psi per feature, created on first need */
    unsigned char *shown;         /* [d] whether g_feat[j] is on the page */
    struct dm_version *next;      /* next in the list (older) */
} dm_version;

struct kl_drift_monitor {
    kl_drift_monitor_opts o; /* options */
    kl_metrics *metrics;     /* borrowed registry */
    pthread_mutex_t mu;      /* guards versions; held through a sweep */
    dm_version *versions;    /* newest first */
    kl_ticker *ticker;       /* recomputes every interval */
};

kl_drift_monitor_opts kl_drift_monitor_defaults(void) {
    kl_drift_monitor_opts o = {.window_rows = 1000, .interval_s = 10};
    return o;
}

static const char *const names2[] = {"model", "version"};
static const char *const names3[] = {"model", "version", "feature"};

static kl_gauge *gauge2(kl_drift_monitor *mon, const dm_version *v, const char *name,
                        const char *help) {
    const char *values[] = {v->model, v->version};
    return kl_metrics_gauge(mon->metrics, name, help, names2, values, 2);
}

static void version_free(dm_version *v) {
    if (!v) return;
    kl_drift_window_free(v->w);
    kl_drift_result_free(&v->res);
    kl_reference_free(&v->ref);
    for (int j = 0; v->names && j < v->d; j++)
        free(v->names[j]);
    free(v->names);
    free(v->g_feat);
    free(v->shown);
    free(v);
}

static int same_labels(const dm_version *a, const dm_version *b) {
    return !strcmp(a->model, b->model) && !strcmp(a->version, b->version);
}

/* Hides the statistic gauges of v (they share their children with any other load of the same
 * model and version). */
static void hide_stats(dm_version *v) {
    kl_gauge_hide(v->g_psi_max, 1);
    kl_gauge_hide(v->g_ks_max, 1);
    kl_gauge_hide(v->g_pred, 1);
    for (int j = 0; j < v->d; j++)
        if (v->shown[j]) {
            kl_gauge_hide(v->g_feat[j], 1);
            v->shown[j] = 0;
        }
}

static void *dm_open(void *ctx, const char *model, const char *version, const char *ref_json,
                     int n_features, char *const *feature_names) {
    kl_drift_monitor *mon = ctx;
    if (!ref_json) {
        fprintf(stderr,
                "kiln serve: model \"%s\" version %s: its bundle has no reference profile "
                "(trained before profiles existed): no drift gauges\n",
                model, version);
        return NULL;
    }
    dm_version *v = calloc(1, sizeof *v);
    if (!v) goto oom;
    v->mon = mon;
    snprintf(v->model, sizeof v->model, "%s", model);
    snprintf(v->version, sizeof v->version, "%s", version);
    if (kl_reference_from_json(ref_json, n_features, &v->ref) != KL_OK) {
        fprintf(stderr,
                "kiln serve: model \"%s\" version %s: reference profile: %s: no drift "
                "gauges\n",
                model, version, kl_errmsg());
        free(v);
        return NULL;
    }
    v->d = v->ref.n_features;
    if (kl_drift_window_create(&v->ref, mon->o.window_rows, &v->w) != KL_OK) goto fail;
    v->names = calloc((size_t)v->d, sizeof *v->names);
    v->g_feat = calloc((size_t)v->d, sizeof *v->g_feat);
    v->shown = calloc((size_t)v->d, 1);
    if (!v->names || !v->g_feat || !v->shown) goto oom;
    for (int j = 0; j < v->d; j++) {
        char buf[32];
        snprintf(buf, sizeof buf, "feature %d", j);
        const char *nm = feature_names && feature_names[j] ? feature_names[j] : buf;
        if (!(v->names[j] = strdup(nm))) goto oom;
    }
    v->g_rows = gauge2(mon, v, "kiln_drift_window_rows",
                       "Rows in the live drift window of the model version");
    v->g_psi_max = gauge2(mon, v, "kiln_drift_psi_max",
                          "Largest PSI of a feature over the drift window against the training "
                          "data's reference profile (> 0.25: large shift)");
    v->g_ks_max = gauge2(mon, v, "kiln_drift_ks_max",
                         "Largest Kolmogorov-Smirnov statistic of a feature over the drift window "
                         "against the reference profile");
    v->g_pred = gauge2(mon, v, "kiln_drift_prediction_psi",
                       "PSI of the predicted classes over the drift window against the "
                       "reference prediction prior");
    if (!v->g_rows || !v->g_psi_max || !v->g_ks_max || !v->g_pred) goto fail;
    pthread_mutex_lock(&mon->mu);
    /* A reload of the same version shares these children: its predecessor stops publishing
     * (only the newest publishes) and its features leave the page until recomputed. */
    for (dm_version *o = mon->versions; o; o = o->next)
        if (same_labels(o, v)) hide_stats(o);
    kl_gauge_set(v->g_rows, 0);
    kl_gauge_hide(v->g_rows, 0);
    kl_gauge_hide(v->g_psi_max, 1);
    kl_gauge_hide(v->g_ks_max, 1);
    kl_gauge_hide(v->g_pred, 1);
    v->next = mon->versions;
    mon->versions = v;
    pthread_mutex_unlock(&mon->mu);
    return v;
oom:
    kl_seterr(KL_ENOMEM, "out of memory");
fail:
    fprintf(stderr, "kiln serve: model \"%s\" version %s: drift window: %s: no drift gauges\n",
            model, version, kl_errmsg());
    version_free(v);
    return NULL;
}

static void dm_observe(void *ctx, void *state, const kl_oip_request *req,
                       const kl_infer_result *res) {
    (void)ctx;
    dm_version *v = state;
    if (!req->rows || req->n_features != v->d || res->batch != req->batch) return;
    const float *pred = res->probs && res->n_classes == v->ref.n_classes ? res->probs : NULL;
    /* A mismatch (another width) is refused by the window; the request is answered anyway. */
    (void)kl_drift_window_add(v->w, req->rows, req->batch, v->d, pred, (int)res->n_classes);
}

static void dm_close(void *ctx, void *state) {
    kl_drift_monitor *mon = ctx;
    dm_version *v = state;
    pthread_mutex_lock(&mon->mu);
    dm_version **p = &mon->versions;
    while (*p && *p != v)
        p = &(*p)->next;
    if (*p) *p = v->next;
    int newer = 0;
    for (dm_version *o = mon->versions; o; o = o->next)
        newer |= same_labels(o, v);
    if (!newer) {
        hide_stats(v);
        kl_gauge_hide(v->g_rows, 1);
    }
    pthread_mutex_unlock(&mon->mu);
    version_free(v);
}

/* Sets a statistic gauge, or hides it while the value is not known. */
static void set_or_hide(kl_gauge *g, double x) {
    if (isnan(x)) {
        kl_gauge_hide(g, 1);
        return;
    }
    kl_gauge_set(g, x);
    kl_gauge_hide(g, 0);
}

/* Recomputes v and publishes (mu held). */
static void publish(kl_drift_monitor *mon, dm_version *v) {
    if (kl_drift_window_compute(v->w, &v->res) != KL_OK) return; /* out of memory: next time */
    const kl_drift_result *r = &v->res;
    kl_gauge_set(v->g_rows, (double)r->rows);
    set_or_hide(v->g_psi_max, r->max_psi);
    set_or_hide(v->g_ks_max, r->max_ks);
    set_or_hide(v->g_pred, r->prediction_psi);
    for (int j = 0; j < v->d; j++) {
        int top = 0;
        for (int i = 0; i < r->n_top; i++)
            top |= r->top[i] == j;
        if (!top) {
            if (v->shown[j]) kl_gauge_hide(v->g_feat[j], 1);
            v->shown[j] = 0;
            continue;
        }
        if (!v->g_feat[j]) {
            const char *values[] = {v->model, v->version, v->names[j]};
            v->g_feat[j] = kl_metrics_gauge(mon->metrics, "kiln_drift_psi",
                                            "PSI of a feature over the drift window against the "
                                            "reference profile; only the 10 features with the "
                                            "largest PSI are listed",
                                            names3, values, 3);
            if (!v->g_feat[j]) continue;
        }
        kl_gauge_set(v->g_feat[j], r->psi[j]);
        kl_gauge_hide(v->g_feat[j], 0);
        v->shown[j] = 1;
    }
}

void kl_drift_monitor_update(kl_drift_monitor *mon) {
    pthread_mutex_lock(&mon->mu);
    for (dm_version *v = mon->versions; v; v = v->next) {
        int superseded = 0; /* a newer load of the same version publishes instead */
        for (dm_version *o = mon->versions; o != v; o = o->next)
            superseded |= same_labels(o, v);
        if (!superseded) publish(mon, v);
    }
    pthread_mutex_unlock(&mon->mu);
}

static void tick(void *mon) {
    kl_drift_monitor_update(mon);
}

kl_status kl_drift_monitor_create(const kl_drift_monitor_opts *opts, kl_metrics *metrics,
                                  kl_model_manager *m, kl_drift_monitor **out) {
    *out = NULL;
    if (opts->window_rows < 1 || !(opts->interval_s > 0))
        return kl_seterr(KL_EINVAL, "drift monitor: window %lld rows and interval %g s must be > 0",
                         (long long)opts->window_rows, opts->interval_s);
    kl_drift_monitor *mon = calloc(1, sizeof *mon);
    if (!mon) return kl_seterr(KL_ENOMEM, "drift monitor: out of memory");
    mon->o = *opts;
    mon->metrics = metrics;
    pthread_mutex_init(&mon->mu, NULL);
    kl_status st = kl_ticker_start(opts->interval_s, tick, mon, &mon->ticker);
    if (st != KL_OK) {
        kl_drift_monitor_free(mon);
        return kl_preferr(st, "drift monitor");
    }
    kl_version_monitor hooks = {.open = dm_open, .observe = dm_observe, .close = dm_close};
    st = kl_model_manager_monitor(m, &hooks, mon);
    if (st != KL_OK) {
        kl_drift_monitor_free(mon);
        return st;
    }
    *out = mon;
    return KL_OK;
}

void kl_drift_monitor_free(kl_drift_monitor *mon) {
    if (!mon) return;
    kl_ticker_stop(mon->ticker);
    while (mon->versions) { /* only when the manager was not freed first */
        dm_version *v = mon->versions;
        mon->versions = v->next;
        version_free(v);
    }
    pthread_mutex_destroy(&mon->mu);
    free(mon);
}
