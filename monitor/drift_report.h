/* drift_report.h — an offline drift report: a terminal table and a directory of files.
 *
 *   drift.json      every feature's PSI, KS and finite count; prediction drift; the log's counts
 *   psi.svg         PSI per feature as bars, with the 0.1 (moderate) and 0.25 (large) lines
 *   prediction.svg  the reference's prediction distribution beside the window's
 *   report.html     the summary, the top features and both plots, self-contained
 */
#ifndef KL_DRIFT_REPORT_H
#define KL_DRIFT_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "data/reference.h"
#include "monitor/drift.h"
#include "monitor/drift_log.h"
#include "runtime/status.h"

#define KL_DRIFT_PSI_MODERATE 0.1 /* PSI above this: a moderate shift */
#define KL_DRIFT_PSI_LARGE 0.25   /* PSI above this: a large shift */

/* What a report shows; everything borrowed. */
typedef struct {
    const char *log_path;       /* the prediction log read */
    const char *model_path;     /* the bundle */
    int64_t window;             /* the --window asked for (0: every row) */
    const kl_drift_log *log;    /* the log's counts */
    const kl_reference *ref;    /* the bundle's profile */
    const kl_drift_result *res; /* the computed drift */
    char *const *feature_names; /* [res->n_features] or NULL ("feature 12") */
    char *const *label_names;   /* [ref->n_classes] or NULL */
} kl_drift_report;

/* The files, each as malloc'd text (NULL when out of memory). */
char *kl_drift_report_json(const kl_drift_report *r);
char *kl_drift_svg_psi(const kl_drift_report *r);
char *kl_drift_svg_prediction(const kl_drift_report *r);
char *kl_drift_report_html(const kl_drift_report *r);

/* Writes the four files into dir (created if needed). */
kl_status kl_drift_report_write(const char *dir, const kl_drift_report *r);

/* The terminal summary: rows, prediction PSI, the top features by PSI with KS. */
void kl_drift_report_print(FILE *f, const kl_drift_report *r);

#endif
