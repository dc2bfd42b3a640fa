/* pipeline_int.h — what pipeline.c and pipeline_data.c share: the parsed pipeline file, the
 * running pipeline and the helpers every step uses (status lines, step keys, state.json, nested
 * MLflow runs). Private to pipeline/. */
#ifndef KL_PIPELINE_INT_H
#define KL_PIPELINE_INT_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "data/checks.h" /* kl_data_checks */
#include "eval/gates.h"  /* kl_gate_set */
#include "pipeline/pipeline.h"
#include "runtime/sha256.h"  /* step keys */
#include "tracking/mlflow.h" /* kl_mlflow, kl_metric, kl_kv */
#include "trainer/config.h"  /* kl_train_config */

#define PL_MAX_SETS 64

/* The `data:` block: steps before training. */
typedef struct {
    int present;            /* the file has a data: block */
    char from[1024];        /* ingest.from: database URI ("" = no ingest step) */
    char *query;            /* ingest.query (owned), or NULL */
    char table[256];        /* ingest.table, or "" */
    char out[4096];         /* ingest.out: the CSV written; it becomes data.train */
    kl_data_checks *checks; /* checks (owned), or NULL for no check step */
    char *checks_text;      /* the checks block as written, for the step key (owned) */
    int snapshot;           /* snapshot the training data (default 1) */
    char store[4096];       /* snapshot store ("" = kl_snapshot_default_store) */
} pl_data_cfg;

typedef struct {
    char name[256];          /* registered model */
    char train_config[4096]; /* kiln train config */
    char *sets[PL_MAX_SETS]; /* overrides, owned */
    int n_sets;              /* entries in sets */
    char experiment[256];    /* MLflow experiment */
    char work_dir[4096];     /* outputs and state */
    char eval_data[4096];    /* evaluation data ("" = the training config's test set) */
    char eval_labels[4096];  /* its IDX labels */
    char approval[16];       /* "auto" or "manual" */
    kl_gate_set gates;       /* validation gates */
    char gates_text[1024];   /* the gates as written, for the step key */
    pl_data_cfg data;        /* the data steps */
} pipeline_cfg;

typedef struct {
    const kl_pipeline_opts *o;
    pipeline_cfg cfg;
    cJSON *state;           /* state.json: outputs and keys of the last successful steps */
    kl_mlflow *mlflow;      /* NULL without tracking */
    char experiment_id[64]; /* the pipeline's experiment */
    char parent_run[64];    /* the pipeline's run */
    kl_pipeline_result *res;
} pipeline;

/* Clocks: monotonic seconds (step times) and wall-clock milliseconds (MLflow). */
double pl_now_s(void);
int64_t pl_now_ms(void);

/* Copies a YAML node's scalar text into dst (errors name key). */
kl_status pl_copy_scalar(yaml_node_t *n, const char *key, char *dst, size_t cap);

/* Step keys: a file's name and bytes, a string, the hex digest. */
void pl_hash_file(kl_sha256 *h, const char *path);
void pl_hash_text(kl_sha256 *h, const char *s);
void pl_hash_end(kl_sha256 *h, char out[65]);

/* state.json: a step's recorded field (NULL if none), setting one, writing the file. */
const char *pl_state_get(pipeline *p, const char *step, const char *field);
void pl_state_set(pipeline *p, const char *step, const char *field, const char *value);
kl_status pl_state_save(pipeline *p);

/* Whether step's last success had this key (and the run is not forced). */
int pl_unchanged(pipeline *p, const char *step, const char *key);

/* A nested MLflow run recording one step; does nothing without tracking. */
void pl_step_run(pipeline *p, const char *step, const char *status, double seconds,
                 const kl_metric *metrics, int n_metrics, const kl_kv *params, int n_params);

/* The step's status line on the log. */
void pl_say(pipeline *p, const char *step, const char *what, double seconds);

/* pipeline_data.c: parses the data: block (node v of doc) into d. */
kl_status pl_data_parse(yaml_document_t *doc, yaml_node_t *v, const char *text, pl_data_cfg *d);

/* Frees what pl_data_parse allocated. */
void pl_data_free(pl_data_cfg *d);

/* Points the training config at the ingested CSV (data.train=<ingest.out>) when there is an
 * ingest step; called before the config is validated. */
kl_status pl_data_override(const pl_data_cfg *d, kl_train_config *tc);

/* Runs ingest → check → snapshot before training. A failing check is KL_EINVAL with
 * "data checks failed ..." after work_dir/data-checks.json is written. */
kl_status pl_data_steps(pipeline *p, kl_train_config *tc);

#endif
