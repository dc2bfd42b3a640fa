/* train.c — `kiln train --config FILE.yaml [--set key=value ...] [--resume]`. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "trainer/train.h"

/* Ctrl-C, or SIGTERM (mpirun ending a job): finish the step in flight, end the MLflow run as
 * KILLED, exit non-zero. A second signal ends the process at once. */
static void on_stop_signal(int sig) {
    kl_train_request_stop();
    signal(sig, SIG_DFL);
}

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: kiln train --config FILE.yaml [--set key=value ...] [--resume] [--register NAME]\n"
        "                  [--print-config] [--quiet]\n"
        "\n"
        "Trains an MLP as the config says and writes a model bundle to `output`.\n"
        "  --config FILE     YAML config (sections data, model, optim, schedule, train, output)\n"
        "  --set key=value   override one key, e.g. --set train.epochs=3 --set optim.lr=3e-4\n"
        "  --resume          continue from the checkpoint <output>.ckpt if it exists\n"
        "  --register NAME   add the trained model to MLflow's registry as a new version of\n"
        "                    NAME (needs MLFLOW_TRACKING_URI or tracking.uri)\n"
        "  --print-config    print the resolved config as YAML and exit\n"
        "  --quiet           no progress output\n"
        "\nKeys (defaults in parentheses):\n"
        "  data.format (idx) data.train data.train_labels data.test data.test_labels\n"
        "  data.label_column (label) data.categorical data.label_names\n"
        "  data.val_fraction (0.1) data.transform (standard: none|standard|minmax) data.limit (0)\n"
        "  model.layers (784-512-256-10) model.activation (relu: relu|gelu|tanh|sigmoid|identity)\n"
        "  model.dropout (0) model.task (classification|regression)\n"
        "  optim.name (adamw|sgd) optim.lr (1e-3) optim.weight_decay (0.01) optim.beta1 (0.9)\n"
        "  optim.beta2 (0.999) optim.eps (1e-8) optim.momentum (0.9) optim.nesterov (false)\n"
        "  optim.clip_norm (0 = off)\n"
        "  schedule.name (constant|cosine) schedule.warmup_steps (0) schedule.min_lr (0)\n"
        "  train.batch_size (256) train.epochs (10) train.max_steps (0) train.seed (42)\n"
        "  train.threads (0 = all cores) train.device (auto|cpu|cuda|cuda:N)\n"
        "  train.patience (0 = off) train.checkpoint_every (0 = off) train.log_every (100)\n"
        "  train.progress (auto|bar|plain|none) train.comm_timeout (60 s) train.emulate_ranks (1)\n"
        "  train.gpu_collectives (auto|nccl|host)\n"
        "  tracking.uri (MLFLOW_TRACKING_URI) tracking.experiment (kiln) tracking.run_name\n"
        "  tracking.register tracking.spool_dir tracking.system_interval (10 s)\n"
        "  output (out/model)\n"
        "\nData parallel: `mpirun -np N kiln train ...` trains on N ranks (one GPU each, by local\n"
        "rank); train.batch_size is the global batch, split evenly; rank 0 tracks and writes.\n"
        "\nWith a tracking URI every run is recorded in MLflow: params, metrics, datasets,\n"
        "artifacts and the model. If MLflow cannot be reached, records wait in a spool and\n"
        "`kiln tracking sync` sends them later.\n");
}

int kl_cmd_train(int argc, char **argv) {
    const char *config = NULL;
    int resume = 0, quiet = 0, print_config = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            config = argv[++i];
        } else if (!strcmp(argv[i], "--set") && i + 1 < argc) {
            i++; /* applied after the file, below */
        } else if (!strcmp(argv[i], "--register") && i + 1 < argc) {
            i++; /* applied after the file, below */
        } else if (!strcmp(argv[i], "--resume")) {
            resume = 1;
        } else if (!strcmp(argv[i], "--quiet")) {
            quiet = 1;
        } else if (!strcmp(argv[i], "--print-config")) {
            print_config = 1;
        } else {
            fprintf(stderr, "kiln train: unknown or incomplete option \"%s\"\n\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    kl_train_config cfg;
    kl_config_init(&cfg);
    int rc = 0;
    if (config && kl_config_load_yaml(&cfg, config) != KL_OK) {
        rc = kl_cli_fail("train");
        goto done;
    }
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--set") && kl_config_set(&cfg, argv[++i]) != KL_OK) {
            rc = kl_cli_fail("train");
            goto done;
        }
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--register")) {
            free(cfg.tracking_register);
            cfg.tracking_register = strdup(argv[++i]);
        }
    if (print_config) {
        kl_config_write_yaml(&cfg, stdout);
        goto done;
    }
    if (kl_config_validate(&cfg) != KL_OK) {
        rc = kl_cli_fail("train");
        goto done;
    }
    if (quiet) {
        free(cfg.train_progress);
        cfg.train_progress = strdup("none");
    }
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
    kl_train_result res;
    if (kl_train_run(&cfg, resume, quiet ? NULL : stderr, &res) != KL_OK) {
        rc = kl_cli_fail("train");
        goto done;
    }
    if (res.rank != 0) goto done; /* rank 0 reports for a data-parallel job */
    printf("trained %lld steps in %.1fs (%.0f samples/s)%s\n", (long long)res.steps, res.seconds,
           res.samples_per_s, res.stopped_early ? ", stopped early" : "");
    if (!isnan(res.val_loss)) {
        printf("validation: loss %.4f", res.val_loss);
        if (!isnan(res.val_accuracy)) printf(" accuracy %.4f", res.val_accuracy);
        printf("\n");
    }
    if (!isnan(res.test_loss)) {
        printf("test: loss %.4f", res.test_loss);
        if (!isnan(res.test_accuracy)) printf(" accuracy %.4f", res.test_accuracy);
        printf("\n");
    }
    printf("bundle: %s\n", cfg.output);
done:
    kl_config_free(&cfg);
    return rc;
}
