/* train.h — a whole training run: data → model → steps → validation → bundle. */
#ifndef KL_TRAIN_H
#define KL_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "trainer/config.h"

typedef struct {
    int64_t steps;        /* optimizer steps taken (including before a resume) */
    int64_t epochs_done;  /* epochs completed */
    int stopped_early;    /* early stopping fired */
    int64_t best_epoch;   /* epoch whose weights the bundle holds (when early stopping) */
    double train_loss;    /* mean training loss of the last epoch */
    double val_loss;      /* validation loss of the saved weights (NAN without validation) */
    double val_accuracy;  /* validation accuracy (classification), else NAN */
    double test_loss;     /* held-out test loss (NAN without a test set) */
    double test_accuracy; /* held-out test accuracy (classification), else NAN */
    double samples_per_s; /* training throughput over the run's steps */
    double seconds;       /* wall time of the training loop */
    char data_digest[80]; /* training data digest */
    char run_id[64];      /* the MLflow run ("" without tracking, or while it is spooled) */
    int rank, world_size; /* this process in a data-parallel job (0, 1 alone) */
} kl_train_result;

/* Runs training as configured. resume: continue from <output>.ckpt if present.
 * log: where progress goes (stderr), or NULL for silence. Writes the bundle to cfg->output. */
kl_status kl_train_run(const kl_train_config *cfg, int resume, FILE *log, kl_train_result *res);

/* Asks a running kl_train_run to stop after the current step (safe in a signal handler); the
 * run then fails with KL_ECANCELED and its MLflow run ends as KILLED. */
void kl_train_request_stop(void);

#endif
