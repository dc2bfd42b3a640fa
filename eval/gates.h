/* gates.h — validation gates: each a pass/fail with the value it measured and what it was
 * compared with. A candidate reaches the registry's champion alias only when every gate passes.
 *
 * The gates and their YAML form (the pipeline config's `gates:` block):
 *   min:      {accuracy: 0.85, macro_f1: 0.80}   metric >= threshold (higher is better)
 *   max:      {log_loss: 0.5, ece: 0.05}         metric <= threshold (lower is better)
 *   baseline: {metric: accuracy, margin: 0.10}   beats the majority-class (or mean) baseline by
 *                                                 margin (for lower-is-better metrics: below it)
 *   champion: {metric: accuracy, tolerance: 0.01} not worse than the current champion on the same
 *                                                 test data by more than tolerance
 *   fairness: {column: group, metric: accuracy, max_gap: 0.05}  largest gap between groups
 *   latency:  {batch: 1, p99_ms: 5.0}             p99 prediction time on the target device
 *   size:     {max_mb: 50}                        bundle bytes on disk
 * Measured values come from the caller through kl_gate_inputs; the gates only compare, so each is
 * testable without a model.
 */
#ifndef KL_GATES_H
#define KL_GATES_H

#include <stddef.h>
#include <yaml.h> /* kl_gates_parse_node reads a node of a caller's document */

#include "runtime/bundle.h"
#include "runtime/device.h"
#include "runtime/status.h"

#define KL_GATES_MAX 32

typedef enum {
    KL_GATE_MIN,
    KL_GATE_MAX,
    KL_GATE_BASELINE,
    KL_GATE_CHAMPION,
    KL_GATE_FAIRNESS,
    KL_GATE_LATENCY,
    KL_GATE_SIZE,
} kl_gate_kind;

/* One configured gate. */
typedef struct {
    kl_gate_kind kind;
    char metric[48];  /* the metric it compares (min/max/baseline/champion/fairness) */
    char column[64];  /* fairness: the column whose groups are compared */
    double threshold; /* min/max threshold, baseline margin, champion tolerance, fairness max
                       * gap, latency p99 in ms, size in MiB */
    int batch;        /* latency: rows per prediction */
} kl_gate;

typedef struct {
    kl_gate gate[KL_GATES_MAX];
    int n;
} kl_gate_set;

/* Parses a `gates:` YAML block (the mapping under the key, as text of a whole YAML document
 * whose root is that mapping). Unknown gates or keys are errors naming them. */
kl_status kl_gates_parse_yaml(const char *yaml_text, kl_gate_set *out);

/* The same, from the mapping node `gates` of an already loaded document (a pipeline config). */
kl_status kl_gates_parse_node(yaml_document_t *doc, yaml_node_t *gates, kl_gate_set *out);

/* Where measured values come from. metric(ctx, who, name, &value) fills value and returns KL_OK,
 * or KL_ENOTFOUND for a metric it does not know; who is "candidate", "baseline" or "champion".
 * group_gap(ctx, column, metric, &gap) measures the largest difference of metric between the
 * groups of column (may be NULL when no fairness gate is configured). */
typedef struct {
    void *ctx;
    kl_status (*metric)(void *ctx, const char *who, const char *name, double *value);
    kl_status (*group_gap)(void *ctx, const char *column, const char *metric, double *gap);
    const char *bundle_dir;  /* the candidate's bundle (size gate) */
    const kl_bundle *bundle; /* the candidate (latency gate) */
    kl_device device;        /* where the latency gate measures */
    int have_champion;       /* 0: the champion gate passes as "no champion yet" */
} kl_gate_inputs;

/* The outcome of one gate. */
typedef struct {
    char name[96];    /* "min:accuracy", "champion:macro_f1", "latency:p99_ms@1", "size:mb" */
    int passed;       /* 1 pass, 0 fail */
    double value;     /* what was measured (NaN when it could not be) */
    double limit;     /* what it was compared with */
    char detail[256]; /* one line for people: "accuracy 0.871 >= 0.850" */
} kl_gate_result;

/* Whether a larger value of metric is better (accuracy, f1, auc, r2: yes; loss, ece, mse,
 * mae: no). */
int kl_metric_higher_is_better(const char *metric);

/* Runs every gate of set. results (n = set->n) are filled in order; *all_passed says whether
 * every one passed. A gate whose value cannot be measured fails with the reason in detail; the
 * function itself fails only on bad arguments. */
kl_status kl_gates_run(const kl_gate_set *set, const kl_gate_inputs *in, kl_gate_result *results,
                       int *all_passed);

/* p50 and p99 wall time, in milliseconds, of kl_bundle_apply_transform + kl_mlp_predict on batch
 * rows (random values) on dev, over reps timed runs after warm-up runs. */
kl_status kl_measure_latency(const kl_bundle *b, kl_device dev, int batch, int reps, double *p50_ms,
                             double *p99_ms);

/* Bytes of the regular files in dir (one level; bundles are flat). */
kl_status kl_dir_bytes(const char *dir, long long *bytes);

/* The results as a JSON report (malloc'd text, owned by the caller). */
char *kl_gates_report_json(const kl_gate_result *results, int n, int all_passed);

#endif
