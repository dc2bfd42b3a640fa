/* fairness.h — a metric per group of a column, and the largest gap between groups: what the
 * fairness gate compares (eval/gates.h). */
#ifndef KL_FAIRNESS_H
#define KL_FAIRNESS_H

#include "eval/metrics.h"
#include "runtime/status.h"

/* Groups the rows of r by the value of column `column` of the CSV file csv_path (the file r was
 * evaluated on: its data rows in the same order; a missing value is a group of its own, "?"),
 * computes metric per group and writes the largest difference between two groups to *gap (and
 * the groups' count to *n_groups, may be NULL). Fails when the file is not a CSV with that
 * column, when its row count differs from r's, or for an unknown metric. */
kl_status kl_eval_group_gap(const kl_eval_result *r, const char *csv_path, const char *column,
                            const char *metric, double *gap, int *n_groups);

#endif
