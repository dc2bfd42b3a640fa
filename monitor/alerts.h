/* alerts.h — alert rules evaluated inside `kiln serve`, their events, and the loop back to
 * training.
 *
 * A thread evaluates the rules (monitor/alert_rules.h) every interval against the server's own
 * metrics registry (no scrape, no parsing). Each matching series is an alert of its own, with
 * Prometheus' states: inactive → pending (the comparison holds) → firing (it held for the rule's
 * `for`) → resolved (it stopped holding, or the series left the page). Firing and resolved are
 * events: each goes to the server log (stderr, one line) and, when a webhook is configured, is
 * POSTed to it as JSON (off the request path; a failed POST is retried once and then logged,
 * and counted in kiln_alert_notifications_total{outcome="failed"}).
 *
 * A rule with `retrain: true` starts the configured retraining when it fires: once per episode
 * (an episode ends when the alert resolves), never while a retraining it started still runs,
 * and at most once per cooldown. The evidence — the alert and every gauge of the same model
 * and version (drift per feature, live accuracy, ...) — is written as JSON to the evidence
 * directory and handed to the run (`--evidence FILE`, or KILN_ALERT_EVIDENCE); the run's output
 * goes next to it (FILE.log). What happened is logged and counted:
 * kiln_retrain_triggers_total{rule,outcome="started"|"skipped"}.
 *
 * Metrics it keeps: kiln_alerts_firing{rule,severity} (series firing per rule),
 * kiln_alert_notifications_total{outcome}, kiln_retrain_triggers_total{rule,outcome},
 * kiln_retrain_running. */
#ifndef KL_ALERTS_H
#define KL_ALERTS_H

#include "monitor/alert_rules.h" /* kl_alert_config */
#include "runtime/status.h"
#include "serving/metrics.h" /* kl_metrics: what the rules read, and where its own metrics go */

typedef struct kl_alerts kl_alerts;

/* Starts evaluating cfg's rules (copied) against metrics (borrowed: free it after
 * kl_alerts_free). refresh(ctx), when not NULL, runs before each evaluation, to set gauges that
 * describe the present (kl_model_manager_refresh_gauges). */
kl_status kl_alerts_create(const kl_alert_config *cfg, kl_metrics *metrics,
                           void (*refresh)(void *ctx), void *ctx, kl_alerts **out);

/* Stops the thread (an evaluation or a POST in progress finishes) and frees. A retraining still
 * running is left running, and said so. Safe on NULL. */
void kl_alerts_free(kl_alerts *a);

/* Evaluates every rule now and acts on the events (what the thread does each interval). */
void kl_alerts_evaluate(kl_alerts *a);

/* The active alerts (pending and firing) and the last events, as JSON (malloc'd into *json):
 *   {"alerts": [{"rule", "severity", "state", "metric", "labels": {...}, "value",
 *                "comparison", "threshold", "for_s", "active_since", "summary"}],
 *    "recent": [{"status": "firing"|"resolved", "rule", ..., "at"}], "rules": N}
 * Times are RFC 3339 UTC. The signature fits kl_http_server_opts.alerts_json. */
kl_status kl_alerts_json(void *alerts, char **json);

#endif
