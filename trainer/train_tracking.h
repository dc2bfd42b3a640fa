/* train_tracking.h — what a training run records in MLflow, when a tracking URI is set.
 *
 * Run: experiment by name, run name, tags (kiln version, host, device, mlflow.source.*,
 * mlflow.user, a summary in mlflow.note.content), the resolved config as params, the datasets
 * (train / validation / test with digest, source, schema and profile). Metrics: train/loss,
 * train/lr, train/samples_per_second per step; train/epoch_loss, val/loss, val/accuracy,
 * train/epoch_samples_per_second per epoch; system/ metrics every tracking.system_interval s.
 * At the end: the bundle as an MLflow 3 logged model (the run's output, optionally registered
 * as a new version), and artifacts: model/ (the bundle), config.yaml, train.log and curves.svg.
 * Everything goes through the async tracker, so a slow or absent server never slows training. */
#ifndef KL_TRAIN_TRACKING_H
#define KL_TRAIN_TRACKING_H

#include <stdint.h>
#include <stdio.h>

#include "data/prepare.h"
#include "trainer/config.h"
#include "trainer/train.h"

typedef struct kl_train_tracking kl_train_tracking;

/* Starts tracking, or sets *out = NULL when no tracking URI is configured. total_steps sizes
 * the curve buffer (no allocation per step). */
kl_status kl_train_tracking_begin(const kl_train_config *cfg, const char *device,
                                  const kl_prepared_data *d, int64_t total_steps,
                                  kl_train_tracking **out);

/* A copy of the progress lines for the train.log artifact (NULL when not tracking). */
FILE *kl_train_tracking_log(kl_train_tracking *tt);

void kl_train_tracking_step(kl_train_tracking *tt, int64_t step, double loss, double lr,
                            double samples_per_s);
void kl_train_tracking_epoch(kl_train_tracking *tt, int64_t epoch, int64_t step, double train_loss,
                             double val_loss, double val_acc, double samples_per_s);

/* Ends the run: final metrics, artifacts, logged model and registration (on success), the
 * run's status ("FINISHED", "FAILED", "KILLED"); waits a little for delivery, then leaves the
 * rest in the spool. Prints where the run is (or the spool) to `log`. run_id (64 bytes, may be
 * NULL) receives the run's id. Frees tt. */
void kl_train_tracking_end(kl_train_tracking *tt, const char *status, const kl_train_result *res,
                           const char *bundle_dir, FILE *log, char *run_id);

#endif
