/* eval_mlflow.h — an evaluation's record in MLflow: metrics, tags and the report files.
 *
 * Metrics (step 0): eval/<name> for every metric of the task (eval/accuracy, eval/macro_f1, ...,
 * eval/mse, eval/r2), eval/baseline_<name> for the baseline's, eval/rows, and per class
 * eval/class/<label>/{precision,recall,f1,roc_auc} (the label with characters MLflow refuses
 * in keys replaced by '_'). An undefined metric (NaN) is sent as MLflow's NaN. Tags:
 * kiln.eval.model, kiln.eval.data, kiln.eval.data_digest. Artifacts: every report file under
 * eval/ in the run's artifact root.
 */
#ifndef KL_EVAL_MLFLOW_H
#define KL_EVAL_MLFLOW_H

#include "eval/metrics.h"
#include "eval/report.h"
#include "tracking/mlflow.h"

typedef struct {
    const char *run_id;     /* log into this existing run; NULL: create one */
    const char *experiment; /* for a new run (NULL: "kiln-eval") */
    const char *run_name;   /* for a new run (NULL: "eval-<time>") */
} kl_eval_tracking;

/* Logs r and the report files in report_dir (as kl_eval_report_write left them) to a run. A run
 * this call created is ended FINISHED (FAILED when logging failed part way); an existing run's
 * status is left alone. run_id_out (64 bytes, may be NULL) receives the run's id. */
kl_status kl_eval_log_mlflow(kl_mlflow *c, const kl_eval_tracking *t, const kl_eval_result *r,
                             const kl_eval_meta *meta, const char *report_dir, char *run_id_out);

#endif
