/* drift_monitor.h — live drift in `kiln serve`: a sliding window per served model version,
 * fed with each answered request, and Prometheus gauges recomputed off the request path.
 *
 * For every version whose bundle carries a reference profile (data/reference.h) the monitor
 * keeps a kl_drift_window (monitor/drift.h) of the last window_rows rows, as the clients sent
 * them, with the model's answers. The request path only copies rows into the window (the
 * model manager's monitor hook, kl_model_manager_monitor); a background thread recomputes every
 * interval seconds and sets, in the server's metrics registry:
 *   kiln_drift_window_rows{model,version}        rows in the window
 *   kiln_drift_psi_max{model,version}            the largest feature PSI
 *   kiln_drift_ks_max{model,version}             the largest feature KS statistic
 *   kiln_drift_prediction_psi{model,version}     PSI of the predicted classes against the prior
 *   kiln_drift_psi{model,version,feature}        PSI of the top 10 features only (to bound the
 *                                                series a wide model makes); a feature that
 *                                                leaves the top 10 leaves the page
 * The statistic gauges are absent until the window holds a row (and the prediction PSI when the
 * profile has no prediction prior). A version loaded at runtime gets its window on load; one
 * unloaded or replaced loses its window once its last request finished, and its gauges leave the
 * page (unless a newer load of the same version took them over). A bundle without a reference
 * profile gets no window and no gauges, and one notice line on stderr. */
#ifndef KL_DRIFT_MONITOR_H
#define KL_DRIFT_MONITOR_H

#include <stdint.h>

#include "runtime/status.h"
#include "serving/metrics.h"       /* kl_metrics: where the gauges live */
#include "serving/model_manager.h" /* kl_model_manager_monitor: the hook it registers */

typedef struct {
    int64_t window_rows; /* rows per window (>= 1) */
    double interval_s;   /* seconds between recomputations (> 0) */
} kl_drift_monitor_opts;

/* Defaults: 1000 rows, every 10 s. */
kl_drift_monitor_opts kl_drift_monitor_defaults(void);

typedef struct kl_drift_monitor kl_drift_monitor;

/* Creates the monitor with its gauges in `metrics` (borrowed), starts its thread and registers
 * it with manager m (versions already loaded get their windows now). The monitor must be freed
 * after the manager (kl_model_manager_free closes every version's window). */
kl_status kl_drift_monitor_create(const kl_drift_monitor_opts *opts, kl_metrics *metrics,
                                  kl_model_manager *m, kl_drift_monitor **out);

/* Stops the thread and frees. Call after kl_model_manager_free. Safe on NULL. */
void kl_drift_monitor_free(kl_drift_monitor *mon);

/* Recomputes every window and sets the gauges now (what the thread does each interval). */
void kl_drift_monitor_update(kl_drift_monitor *mon);

#endif
