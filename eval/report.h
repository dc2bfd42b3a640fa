/* report.h — an evaluation as people and tools read it: a JSON report (every metric, per class
 * by label name, the confusion matrix, the calibration bins, the baseline), a Markdown report
 * (the same as tables), SVG plots written as plain text (confusion matrix heat map with counts,
 * ROC curves one per class) and a table for the terminal.
 *
 * Files kl_eval_report_write puts in a directory:
 *   report.json, report.md                 always
 *   confusion.svg, roc.svg                 classification
 *   predicted_vs_true.svg                          regression (predicted against true values)
 * In JSON, a metric that is undefined (NaN: ROC-AUC of a class with no positive row) is null.
 */
#ifndef KL_EVAL_REPORT_H
#define KL_EVAL_REPORT_H

#include <stdio.h>

#include "eval/metrics.h"
#include "runtime/status.h"

/* What was evaluated, for the report's header. Any field may be NULL. */
typedef struct {
    const char *model;       /* as the user named it: a bundle path or models:/ URI */
    const char *model_dir;   /* the local bundle directory it resolved to */
    const char *data;        /* the data file */
    const char *data_digest; /* "sha256:..." of the decoded data */
} kl_eval_meta;

/* Each returns malloc'd text the caller frees, or NULL when out of memory. */
char *kl_eval_report_json(const kl_eval_result *r, const kl_eval_meta *meta);
char *kl_eval_report_markdown(const kl_eval_result *r, const kl_eval_meta *meta);
char *kl_eval_svg_confusion(const kl_eval_result *r);         /* NULL also for regression */
char *kl_eval_svg_roc(const kl_eval_result *r);               /* NULL also for regression */
char *kl_eval_svg_predicted_vs_true(const kl_eval_result *r); /* NULL also for classification */

/* The file names kl_eval_report_write writes for task, NULL-terminated (static). */
const char *const *kl_eval_report_files(kl_task task);

/* Creates dir (and its parents) and writes the report files into it. */
kl_status kl_eval_report_write(const char *dir, const kl_eval_result *r, const kl_eval_meta *meta);

/* Prints the metrics (model and baseline) and, for classification, the per-class table. */
void kl_eval_print_table(FILE *f, const kl_eval_result *r);

#endif
