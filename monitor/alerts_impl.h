/* alerts_impl.h — what monitor/alerts.c (rules and states) and monitor/alert_actions.c (log,
 * webhook, retraining) share. Private to monitor/. */
#ifndef KL_ALERTS_IMPL_H
#define KL_ALERTS_IMPL_H

#include <cjson/cJSON.h>
#include <sys/types.h>

#include "monitor/alerts.h"
#include "tracking/http.h" /* kl_http: the webhook's client */

/* One event to act on, built under the engine's lock and acted on outside it. */
typedef struct {
    cJSON *alert;      /* the alert's JSON with "status" and "at" (owned) */
    int rule;          /* index in cfg.rule */
    int firing;        /* 1 firing, 0 resolved */
    char series[1200]; /* metric{labels}, for messages */
    double value;      /* the value that made it fire or resolve (NaN: the series left) */
} alert_event;

/* The actions' state; used by the evaluation thread only (and _free). */
typedef struct {
    kl_http *webhook;            /* NULL without a webhook */
    char webhook_path[1024];     /* path part of the URL ("/" at least) */
    pid_t retrain_pid;           /* running retraining, 0 when none */
    double retrain_started;      /* monotonic seconds of the last start, -1 before any */
    char retrain_evidence[1200]; /* its evidence file */
    kl_counter *sent, *failed;   /* kiln_alert_notifications_total{outcome} */
    kl_gauge *running;           /* kiln_retrain_running */
} alert_actions;

/* Sets up the webhook client and metrics. */
kl_status alert_actions_init(alert_actions *x, const kl_alert_config *cfg, kl_metrics *metrics);

/* Frees the client; a running retraining is left running (and said so). */
void alert_actions_free(alert_actions *x);

/* Logs ev, POSTs it to the webhook, and starts the retraining when its rule asks for it. */
void alert_actions_run(alert_actions *x, const kl_alert_config *cfg, kl_metrics *metrics,
                       const alert_event *ev);

/* Notices a retraining that finished (logs its exit status). */
void alert_actions_reap(alert_actions *x);

/* Monotonic seconds, and an RFC 3339 UTC rendering of wall-clock seconds. */
double alert_now(void);
void alert_rfc3339(double wall_s, char out[32]);

#endif
