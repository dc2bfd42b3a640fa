/* eval.c — `kiln eval --model BUNDLE|models:/... --data FILE`: a model's metrics on labelled
 * data, as a terminal table, a report directory and (with MLFLOW_TRACKING_URI) an MLflow run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/digest.h" /* KL_DIGEST_LEN */
#include "data/prepare.h"
#include "eval/eval_mlflow.h"
#include "eval/evaluate.h"
#include "eval/report.h"
#include "runtime/bundle.h"
#include "runtime/device.h"
#include "tracking/model_uri.h"

static void usage(FILE *f) {
    fprintf(
        f, "usage: kiln eval --model BUNDLE|models:/NAME@ALIAS|models:/NAME/VERSION\n"
           "                 --data FILE [--labels FILE] [--out DIR]\n"
           "                 [--train FILE [--train-labels FILE]] [--batch-size N]\n"
           "                 [--threads N] [--device auto|cpu|cuda]\n"
           "                 [--run RUN_ID | --experiment NAME] [--run-name NAME]\n"
           "\n"
           "Scores FILE (IDX images with --labels, or a CSV with its label column) with the\n"
           "model and its own preprocessing, and prints accuracy, macro precision/recall/F1,\n"
           "ROC-AUC (one-vs-rest), log loss and ECE (classification) or MSE, RMSE, MAE and R²\n"
           "(regression), beside a baseline: the majority class (or the mean) of --train's\n"
           "labels, else of FILE's own labels. Writes report.json, report.md and SVG plots\n"
           "(confusion.svg and roc.svg, or predicted_vs_true.svg) to DIR (default out/eval/NAME).\n"
           "\n"
           "With MLFLOW_TRACKING_URI set, the metrics (eval/accuracy, eval/macro_f1, ...) and\n"
           "the report files (artifacts under eval/) go to the run --run names, else to a new\n"
           "run in --experiment (default kiln-eval).\n");
}

/* NAME for the default report directory: the registered name, or the bundle's folder. */
static void model_name(const char *model, char *out, size_t cap) {
    const char *s = model;
    size_t len;
    if (!strncmp(s, "models:/", 8)) {
        s += 8;
        len = strcspn(s, "@/");
    } else {
        len = strlen(s);
        while (len > 1 && s[len - 1] == '/')
            len--;
        size_t start = len;
        while (start > 0 && s[start - 1] != '/')
            start--;
        s += start;
        len -= start;
    }
    snprintf(out, cap, "%.*s", (int)len, s);
    for (char *p = out; *p; p++)
        if (*p == '/' || *p == '\\') *p = '_';
    if (!*out || !strcmp(out, ".") || !strcmp(out, "..")) snprintf(out, cap, "model");
}

int kl_cmd_eval(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *labels = NULL, *out_dir = NULL, *device = "cpu";
    const char *train = NULL, *train_labels = NULL, *run_id = NULL, *experiment = NULL;
    const char *run_name = NULL;
    int batch = 1024, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") && has) {
            model = argv[++i];
        } else if (!strcmp(a, "--data") && has) {
            data = argv[++i];
        } else if (!strcmp(a, "--labels") && has) {
            labels = argv[++i];
        } else if (!strcmp(a, "--out") && has) {
            out_dir = argv[++i];
        } else if (!strcmp(a, "--train") && has) {
            train = argv[++i];
        } else if (!strcmp(a, "--train-labels") && has) {
            train_labels = argv[++i];
        } else if (!strcmp(a, "--batch-size") && has) {
            batch = atoi(argv[++i]);
        } else if (!strcmp(a, "--threads") && has) {
            threads = atoi(argv[++i]);
        } else if (!strcmp(a, "--device") && has) {
            device = argv[++i];
        } else if (!strcmp(a, "--run") && has) {
            run_id = argv[++i];
        } else if (!strcmp(a, "--experiment") && has) {
            experiment = argv[++i];
        } else if (!strcmp(a, "--run-name") && has) {
            run_name = argv[++i];
        } else {
            fprintf(stderr, "kiln eval: unknown or incomplete option \"%s\"\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model || !data || batch <= 0 || (run_id && experiment)) {
        fprintf(stderr, "kiln eval: --model and --data are required (--batch-size > 0; --run "
                        "and --experiment exclude each other)\n\n");
        usage(stderr);
        return 2;
    }
    const char *uri = getenv("MLFLOW_TRACKING_URI");
    int tracking = uri && *uri;
    if ((run_id || experiment) && !tracking) {
        fprintf(stderr, "kiln eval: --run and --experiment need MLFLOW_TRACKING_URI\n");
        return 2;
    }
    kl_cpu_set_threads(threads);
    kl_bundle b;
    kl_dataset ref;
    kl_eval_result res;
    kl_mlflow *c = NULL;
    memset(&b, 0, sizeof b);
    memset(&ref, 0, sizeof ref);
    memset(&res, 0, sizeof res);
    int rc = 1;
    char model_dir[4096], dir[4096], digest[KL_DIGEST_LEN] = "", logged[64] = "";
    kl_eval_opts opts = {.batch_size = batch};
    if (kl_device_resolve(device, 0, &opts.device) != KL_OK) goto fail;
    if (kl_model_uri_resolve(model, model_dir, sizeof model_dir) != KL_OK) goto fail;
    if (kl_bundle_load(model_dir, &b) != KL_OK) goto fail;
    if (train) {
        if (kl_data_load_input(b.encoder_json, train, train_labels, 1, &ref) != KL_OK) {
            kl_preferr(KL_EINVAL, "--train %s", train);
            goto fail;
        }
        opts.baseline_on = &ref;
    }
    if (kl_eval_file(&b, data, labels, &opts, &res, digest) != KL_OK) goto fail;
    if (out_dir) {
        snprintf(dir, sizeof dir, "%s", out_dir);
    } else {
        char name[256];
        model_name(model, name, sizeof name);
        snprintf(dir, sizeof dir, "out/eval/%s", name);
    }
    kl_eval_meta meta = {
        .model = model, .model_dir = model_dir, .data = data, .data_digest = digest};
    kl_eval_print_table(stdout, &res);
    fflush(stdout);
    if (kl_eval_report_write(dir, &res, &meta) != KL_OK) goto fail;
    printf("\nreport: %s/report.json, report.md", dir);
    for (const char *const *f = kl_eval_report_files(res.task); *f; f++)
        if (strstr(*f, ".svg")) printf(", %s", *f);
    printf("\n");
    if (tracking) {
        kl_eval_tracking t = {.run_id = run_id, .experiment = experiment, .run_name = run_name};
        if (kl_mlflow_open(NULL, &c) != KL_OK ||
            kl_eval_log_mlflow(c, &t, &res, &meta, dir, logged) != KL_OK) {
            kl_preferr(KL_EIO, "mlflow");
            goto fail;
        }
        printf("mlflow: run %s\n", logged);
    }
    rc = 0;
    goto done;
fail:
    rc = kl_cli_fail("eval");
done:
    kl_mlflow_close(c);
    kl_eval_result_free(&res);
    kl_dataset_free(&ref);
    kl_bundle_free(&b);
    return rc;
}
