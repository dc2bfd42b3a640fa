/* pipeline.h — `kiln pipeline run`: the stages as one journey, from a YAML file.
 *
 *   [ingest → check data → snapshot →] train → evaluate → gates → register → promote (auto) or
 *   request approval (manual)
 *
 * Each step prints its status and time; with MLFLOW_TRACKING_URI the pipeline is a parent run
 * (tags kiln.pipeline, kiln.trigger) with a nested run per step (the training run itself is the
 * train step's). A rerun skips the steps whose inputs (the training data's bytes, the resolved
 * training config, the evaluation data, the gates and the champion they compare with) have not
 * changed since the last successful run, reusing their outputs from the work folder's
 * state.json. A failed step stops the pipeline with its reason; nothing is registered or
 * promoted then, so the champion is untouched.
 *
 * The YAML file:
 *   name: fashion-mnist-mlp             registered model name (required)
 *   train_config: configs/x.yaml        kiln train config (required); its data.test is the
 *                                       default evaluation data
 *   set: [train.epochs=2, ...]          overrides of the training config
 *   experiment: kiln-pipeline           MLflow experiment of the pipeline's runs
 *   work_dir: out/pipeline/NAME         bundle, reports, state.json
 *   data:                               optional steps before training (pipeline_data.c):
 *     ingest: {from: URI, query: SQL | table: NAME, out: FILE}
 *                                       rows of a PostgreSQL or SQLite source (data/ingest.h)
 *                                       into FILE, which becomes data.train (data.format=csv)
 *     checks: {...}                     data/checks.h on the training data; a failure stops the
 *                                       pipeline ("data checks failed", exit code as a failed
 *                                       gate) with work_dir/data-checks.json
 *     snapshot: true                    content-addressed copy of the training data (default
 *                                       true); its digest is the parent run's tag
 *                                       kiln.data_snapshot and state.json's snapshot.digest
 *     store: DIR                        snapshot store (default: kl_snapshot_default_store)
 *   eval: {data: FILE, labels: FILE}    evaluation data (default: the training config's test set)
 *   gates: {...}                        eval/gates.h
 *   approval: auto | manual             auto: champion moves when every gate passes;
 *                                       manual: the version becomes challenger for kiln approve
 *
 * The pipeline sits above the stages it joins (data, trainer, eval, tracking); only cli/ uses it.
 */
#ifndef KL_PIPELINE_H
#define KL_PIPELINE_H

#include <stdio.h>

#include "runtime/status.h"

typedef struct {
    const char *trigger;  /* why it runs ("manual", "drift: ...", ...); recorded as a tag */
    const char *evidence; /* a file on what made it run (an alert's JSON), or NULL: uploaded to
                           * the parent run as trigger/<its name>, named by the tag
                           * kiln.trigger.evidence */
    int force;            /* run every step even when its inputs are unchanged */
    FILE *log;            /* step lines and training progress (stderr), or NULL */
} kl_pipeline_opts;

typedef struct {
    int gates_passed;       /* every gate passed */
    char version[32];       /* the registered version ("" when not registered) */
    char promoted[16];      /* "champion", "challenger" or "" */
    int steps_run;          /* steps executed */
    int steps_skipped;      /* steps skipped as unchanged */
    char run_id[64];        /* the parent MLflow run ("" without tracking) */
    char data_snapshot[80]; /* the training data's snapshot digest ("" when not taken) */
} kl_pipeline_result;

/* Runs the pipeline described by the YAML file at path. Fails (kl_errmsg names the step and
 * why) when a step fails; a gate that fails is a failure too (KL_EREJECTED is not a kind here:
 * KL_EINVAL with "gates failed: ..."), after the report is written. */
kl_status kl_pipeline_run(const char *path, const kl_pipeline_opts *opts, kl_pipeline_result *out);

#endif
