/* alert_rules.h — alert rules for `kiln serve --alerts FILE`: what they say, parsed from YAML,
 * and the arithmetic that turns a metric's samples into the value a rule compares.
 *
 * The file (every key but `rules` optional):
 *   interval: 5s                 how often the server evaluates the rules (default 5 s)
 *   webhook: http://host:port/p  firing and resolved events are POSTed here as JSON, a payload
 *                                Slack's incoming webhooks accept ("text") with the fields too;
 *                                or {url: ..., timeout: 5s}
 *   retrain:                     what a rule with `retrain: true` starts when it fires
 *     pipeline: PIPELINE.yaml    runs `kiln pipeline run PIPELINE.yaml --trigger REASON
 *                                --evidence FILE` (this kiln binary), or
 *     command: "sh command"      runs through /bin/sh with KILN_ALERT_EVIDENCE=FILE,
 *                                KILN_ALERT_REASON and KILN_ALERT_RULE in its environment
 *     cooldown: 1h               at least this long between two retrainings (default 1 h)
 *     evidence_dir: DIR          where evidence files and the run's output go (default $TMPDIR
 *                                or /tmp)
 *   rules:
 *     - name: InputDrift                 [A-Za-z0-9_-], unique
 *       metric: kiln_drift_psi_max       a family on the server's /metrics page
 *       labels: {model: fmnist}          only series with these label values (optional)
 *       comparison: ">"                  > >= < <= == !=
 *       threshold: 0.25
 *       for: 1m                          how long the comparison must hold before the alert
 *                                        fires (default 0: at the first evaluation)
 *       severity: critical               info | warning | critical (default warning)
 *       summary: "input drift on {model} v{version}: PSI {value}"  {label}, {value},
 *                                        {threshold} are filled in (optional)
 *       retrain: true                    start the retrain action when it fires (optional)
 *       window: 5m                       counters and histograms (below; default 5 m)
 *       quantile: 0.99                   histograms: which quantile (required for them)
 * What a rule compares, per series (each labelled child is its own alert, as in Prometheus):
 * a gauge's value; a counter's rate per second over the last `window`; a histogram's
 * `quantile` over the observations of the last `window` (interpolated within the bucket, as
 * Prometheus' histogram_quantile does). A series with no value (a counter seen once, a
 * histogram with no new observations, a gauge that left the page) compares false.
 * Durations are a number with s, m, h or ms (a bare number is seconds). Errors name the rule
 * and key: `alerts.rules[2] (HighLatency).quantile: required for a histogram`. */
#ifndef KL_ALERT_RULES_H
#define KL_ALERT_RULES_H

#include <stddef.h>

#include "runtime/status.h"

#define KL_ALERT_MAX_RULES 64
#define KL_ALERT_MAX_MATCH 8

typedef enum { KL_CMP_GT, KL_CMP_GE, KL_CMP_LT, KL_CMP_LE, KL_CMP_EQ, KL_CMP_NE } kl_alert_cmp;

/* One rule. */
typedef struct {
    char name[64];                             /* unique, [A-Za-z0-9_-] */
    char metric[128];                          /* the family it reads */
    char match_name[KL_ALERT_MAX_MATCH][64];   /* label matchers: names ... */
    char match_value[KL_ALERT_MAX_MATCH][128]; /* ... and the values they must have */
    int n_match;                               /* matchers used */
    kl_alert_cmp cmp;                          /* how value compares with threshold */
    double threshold;                          /* what it compares with */
    double for_s;                              /* seconds the comparison holds before firing */
    double window_s;                           /* counters and histograms: seconds looked back */
    double quantile;                           /* histograms: in (0, 1]; -1 when not given */
    char severity[16];                         /* info, warning or critical */
    char summary[256];                         /* template, "" for none */
    int retrain;                               /* firing starts the retrain action */
} kl_alert_rule;

/* A whole alerts file. */
typedef struct {
    kl_alert_rule rule[KL_ALERT_MAX_RULES]; /* the rules, in file order */
    int n;                                  /* rules used */
    double interval_s;                      /* seconds between evaluations */
    char webhook[1024];                     /* URL events are POSTed to, "" for none */
    double webhook_timeout_s;               /* per POST */
    char retrain_pipeline[1024];            /* pipeline YAML for `kiln pipeline run`, or "" */
    char retrain_command[2048];             /* shell command, or "" */
    double retrain_cooldown_s;              /* least seconds between two retrainings */
    char evidence_dir[1024];                /* where evidence and the run's output go */
} kl_alert_config;

/* Parses the YAML text of an alerts file. Errors name the key (see above). */
kl_status kl_alert_config_parse(const char *yaml_text, kl_alert_config *out);

/* Reads and parses the file at path; errors are prefixed with the path. */
kl_status kl_alert_config_load(const char *path, kl_alert_config *out);

/* Parses a duration ("250ms", "30s", "5m", "1h", "2.5" seconds) into *seconds (>= 0). */
kl_status kl_alert_parse_duration(const char *text, double *seconds);

/* value <cmp> threshold; NaN compares false. */
int kl_alert_compare(kl_alert_cmp cmp, double value, double threshold);

/* ">", ">=", ... */
const char *kl_alert_cmp_name(kl_alert_cmp cmp);

/* The q-quantile (0 < q <= 1) of a histogram given as cumulative counts per upper bound (n_bounds
 * finite bounds, then +Inf: n_bounds + 1 counts), by linear interpolation within the bucket it
 * falls in, the first bucket starting at 0 (or at its bound, if that is negative); a quantile in
 * the +Inf bucket is the largest finite bound. NaN when the histogram is empty. */
double kl_histogram_quantile(double q, const double *bounds, size_t n_bounds,
                             const double *cumulative);

#endif
