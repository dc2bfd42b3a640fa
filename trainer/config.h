/* config.h — the training configuration: YAML file, then `--set key=value` overrides.
 *
 * Every key has a type, a default and the values it allows; an unknown key or a bad value is an
 * error naming the key and what is allowed. The same key names are what gets logged as params.
 */
#ifndef KL_TRAIN_CONFIG_H
#define KL_TRAIN_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "runtime/status.h"

#define KL_CFG_LIST_MAX 256

typedef struct {
    int n;                        /* entries used */
    char *items[KL_CFG_LIST_MAX]; /* owned strings */
} kl_cfg_list;

typedef struct {
    /* data */
    char *data_format;            /* "idx" or "csv" */
    char *data_train;             /* training file (IDX images or CSV) */
    char *data_train_labels;      /* IDX labels for train */
    char *data_test;              /* optional held-out test file */
    char *data_test_labels;       /* IDX labels for test */
    char *data_label_column;      /* CSV label column */
    kl_cfg_list data_categorical; /* CSV categorical feature columns */
    kl_cfg_list data_label_names; /* class names (IDX) */
    double data_val_fraction;     /* fraction of train held out for validation */
    char *data_transform;         /* none | standard | minmax */
    int64_t data_limit;           /* use only the first N rows (0 = all) */
    /* model */
    char *model_layers;     /* "784-512-256-10" */
    char *model_activation; /* relu | gelu | tanh | sigmoid | identity */
    double model_dropout;   /* dropout after hidden activations */
    char *model_task;       /* classification | regression */
    /* optimizer */
    char *optim_name;          /* adamw | sgd */
    double optim_lr;           /* peak learning rate */
    double optim_weight_decay; /* decoupled (AdamW) or L2 (SGD) */
    double optim_beta1;        /* AdamW first-moment decay */
    double optim_beta2;        /* AdamW second-moment decay */
    double optim_eps;          /* AdamW denominator epsilon */
    double optim_momentum;     /* SGD momentum */
    int optim_nesterov;        /* SGD Nesterov momentum */
    double optim_clip_norm;    /* global gradient-norm limit (0 = off) */
    /* schedule */
    char *schedule_name;           /* constant | cosine */
    int64_t schedule_warmup_steps; /* linear warm-up steps */
    double schedule_min_lr;        /* cosine floor */
    /* training */
    int64_t train_batch_size; /* rows per step */
    int64_t train_epochs;     /* passes over the training split */
    int64_t train_max_steps;  /* stop after this many steps (0 = no limit) */
    int64_t train_seed;       /* seeds init, split, shuffling and dropout */
    int64_t train_threads;    /* CPU threads (0 = all cores) */
    char *train_device;       /* auto | cpu | cuda | cuda:N */
    char *train_precision;    /* GEMM precision on CUDA: fp32 | tf32 | bf16 */
    int train_cuda_graph;     /* capture each full-batch step as one CUDA graph */
    int64_t train_patience;   /* early stopping: epochs without val-loss improvement (0 = off) */
    int64_t train_checkpoint_every; /* steps between checkpoints (0 = off) */
    int64_t train_log_every;        /* steps between plain progress lines */
    char *train_progress;           /* auto | bar | plain | none */
    char *train_loss_log;           /* CSV file of step,epoch,loss,lr per step (NULL = none) */
    int train_save_init;            /* write <output>/init.safetensors with the initial weights */
    double train_comm_timeout;      /* seconds a rank waits for a peer (0 = forever) */
    int64_t train_emulate_ranks;    /* one process computes steps as N ranks would (1 = off) */
    char *train_gpu_collectives;    /* auto | nccl | host: how a GPU job all-reduces */
    /* tracking (MLflow) */
    char *tracking_uri;        /* MLflow URI; empty: MLFLOW_TRACKING_URI; neither: no tracking */
    char *tracking_experiment; /* experiment name */
    char *tracking_run_name;   /* run name (default: layers and time) */
    char *tracking_register;   /* registered model to add a version to (empty: none) */
    char *tracking_parent_run; /* MLflow run this one nests under (a pipeline's), or empty */
    char *tracking_spool_dir;  /* spool directory (empty: $KILN_SPOOL_DIR, ~/.cache/kiln/spool) */
    double tracking_system_interval; /* seconds between system metric samples */
    /* output */
    char *output; /* bundle directory */
} kl_train_config;

/* Fills defaults (strings allocated). */
void kl_config_init(kl_train_config *c);
void kl_config_free(kl_train_config *c);

/* Reads a YAML file of nested mappings (data:, model:, optim:, schedule:, train:, output:). */
kl_status kl_config_load_yaml(kl_train_config *c, const char *path);

/* Applies "section.key=value" (lists: comma-separated). */
kl_status kl_config_set(kl_train_config *c, const char *assignment);

/* Checks cross-field rules after all sets (required keys, ranges that depend on each other). */
kl_status kl_config_validate(const kl_train_config *c);

/* Calls fn(key, value_text, user) for every key in a fixed order (for logging as params). */
void kl_config_each(const kl_train_config *c,
                    void (*fn)(const char *key, const char *value, void *user), void *user);

/* Writes the resolved config as YAML. */
void kl_config_write_yaml(const kl_train_config *c, FILE *f);

#endif
