/* gates.c — `kiln gates`: evaluates a candidate model (and the current champion, on the same
 * data) and runs the validation gates of a YAML file; prints each gate pass/fail with its value,
 * writes a JSON report and, for a registered version, records the results in its tags. Exit code
 * 0 when every gate passes, 3 when one fails, 1 on errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/prepare.h"       /* kl_data_load_input */
#include "eval/evaluate.h"      /* kl_eval_file */
#include "eval/fairness.h"      /* kl_eval_group_gap */
#include "eval/gates.h"         /* the gates */
#include "runtime/fileio.h"     /* kl_file_read, kl_file_write_atomic */
#include "tracking/mlflow.h"    /* version tags */
#include "tracking/model_uri.h" /* models:/ URIs */

static void usage(FILE *f) {
    fprintf(f, "usage: kiln gates --model BUNDLE|models:/NAME/VERSION --data FILE [--labels FILE]\n"
               "                  --config gates.yaml [--train FILE [--train-labels FILE]]\n"
               "                  [--champion BUNDLE|models:/NAME@champion] [--device cpu]\n"
               "                  [--report FILE] [--tag NAME/VERSION]\n"
               "\n"
               "Evaluates the model on FILE and runs the gates in gates.yaml (min, max, baseline,\n"
               "champion, latency, size; see eval/gates.h): each printed pass/fail with the value\n"
               "it measured. The champion is evaluated on the same data; when it does not exist\n"
               "yet (models:/ alias missing) the champion gate passes as \"no champion yet\".\n"
               "--report writes the JSON report; --tag NAME/VERSION (with MLFLOW_TRACKING_URI)\n"
               "writes kiln.gates=passed|failed and kiln.gate.<name>=<detail> on that version.\n"
               "Exit code: 0 all passed, 3 a gate failed, 1 error, 2 usage.\n");
}

typedef struct {
    const kl_eval_result *candidate; /* the model's metrics and baseline */
    const kl_eval_result *champion;  /* the champion's, or NULL */
    const char *data;                /* the evaluation file (its columns group the rows) */
} sources;

static kl_status group_gap(void *ctx, const char *column, const char *metric, double *gap) {
    const sources *s = ctx;
    return kl_eval_group_gap(s->candidate, s->data, column, metric, gap, NULL);
}

static kl_status metric(void *ctx, const char *who, const char *name, double *v) {
    const sources *s = ctx;
    if (!strcmp(who, "candidate")) return kl_eval_metric(s->candidate, name, v);
    if (!strcmp(who, "baseline")) return kl_eval_baseline_metric(s->candidate, name, v);
    if (!strcmp(who, "champion") && s->champion) return kl_eval_metric(s->champion, name, v);
    return kl_seterr(KL_ENOTFOUND, "no %s metrics", who);
}

/* Writes the results to NAME/VERSION's tags. */
static kl_status tag_version(const char *spec, const kl_gate_result *r, int n, int all) {
    char name[256];
    const char *slash = strrchr(spec, '/');
    if (!slash || slash == spec || !slash[1] || (size_t)(slash - spec) >= sizeof name)
        return kl_seterr(KL_EINVAL, "--tag %s: expected NAME/VERSION", spec);
    snprintf(name, sizeof name, "%.*s", (int)(slash - spec), spec);
    kl_mlflow *c = NULL;
    kl_status st = kl_mlflow_open(NULL, &c);
    if (st == KL_OK)
        st = kl_mlflow_set_version_tag(c, name, slash + 1, "kiln.gates", all ? "passed" : "failed");
    for (int i = 0; st == KL_OK && i < n; i++) {
        char key[128], val[300];
        snprintf(key, sizeof key, "kiln.gate.%.100s", r[i].name);
        for (char *k = key; *k; k++)
            if (*k == '@') *k = '_'; /* MLflow tag keys: alphanumerics, _ - . / : and space */
        snprintf(val, sizeof val, "%s: %.250s", r[i].passed ? "pass" : "fail", r[i].detail);
        st = kl_mlflow_set_version_tag(c, name, slash + 1, key, val);
    }
    kl_mlflow_close(c);
    return st;
}

int kl_cmd_gates(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *labels = NULL, *config = NULL, *train = NULL;
    const char *train_labels = NULL, *champion = NULL, *device = "cpu", *report = NULL;
    const char *tag = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        const char **dst = !strcmp(a, "--model")          ? &model
                           : !strcmp(a, "--data")         ? &data
                           : !strcmp(a, "--labels")       ? &labels
                           : !strcmp(a, "--config")       ? &config
                           : !strcmp(a, "--train")        ? &train
                           : !strcmp(a, "--train-labels") ? &train_labels
                           : !strcmp(a, "--champion")     ? &champion
                           : !strcmp(a, "--device")       ? &device
                           : !strcmp(a, "--report")       ? &report
                           : !strcmp(a, "--tag")          ? &tag
                                                          : NULL;
        if (!dst || !v) {
            fprintf(stderr, "kiln gates: unknown or incomplete option \"%s\"\n\n", a);
            usage(stderr);
            return 2;
        }
        *dst = v;
        i++;
    }
    if (!model || !data || !config) {
        fprintf(stderr, "kiln gates: --model, --data and --config are required\n\n");
        usage(stderr);
        return 2;
    }
    kl_bundle b, cb;
    kl_dataset ref;
    kl_eval_result res, cres;
    memset(&b, 0, sizeof b);
    memset(&cb, 0, sizeof cb);
    memset(&ref, 0, sizeof ref);
    memset(&res, 0, sizeof res);
    memset(&cres, 0, sizeof cres);
    char *yaml = NULL, *json = NULL;
    size_t yaml_len = 0;
    int rc = 1, all = 0, have_champion = 0;
    char model_dir[4096], champ_dir[4096];
    kl_gate_set set;
    kl_gate_result results[KL_GATES_MAX];
    kl_eval_opts opts = {.batch_size = 1024};
    if (kl_file_read(config, 1 << 20, &yaml, &yaml_len) != KL_OK) goto fail;
    if (kl_gates_parse_yaml(yaml, &set) != KL_OK) {
        kl_preferr(KL_EINVAL, "%s", config);
        goto fail;
    }
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
    if (kl_eval_file(&b, data, labels, &opts, &res, NULL) != KL_OK) goto fail;
    if (champion) {
        kl_status st = kl_model_uri_resolve(champion, champ_dir, sizeof champ_dir);
        if (st == KL_ENOTFOUND) {
            fprintf(stderr, "kiln gates: no champion at %s yet\n", champion);
            kl_clearerr();
        } else if (st != KL_OK || kl_bundle_load(champ_dir, &cb) != KL_OK ||
                   kl_eval_file(&cb, data, labels, &opts, &cres, NULL) != KL_OK) {
            kl_preferr(KL_EINVAL, "champion %s", champion);
            goto fail;
        } else {
            have_champion = 1;
        }
    }
    sources src = {&res, have_champion ? &cres : NULL, data};
    kl_gate_inputs in = {.ctx = &src,
                         .metric = metric,
                         .group_gap = group_gap,
                         .bundle_dir = model_dir,
                         .bundle = &b,
                         .device = opts.device,
                         .have_champion = have_champion};
    if (kl_gates_run(&set, &in, results, &all) != KL_OK) goto fail;
    for (int i = 0; i < set.n; i++)
        printf("%-30s %s  %s\n", results[i].name, results[i].passed ? "pass" : "FAIL",
               results[i].detail);
    printf("gates: %s (%d)\n", all ? "all passed" : "FAILED", set.n);
    json = kl_gates_report_json(results, set.n, all);
    if (report && (!json || kl_file_write_atomic(report, json, strlen(json)) != KL_OK)) goto fail;
    if (tag && tag_version(tag, results, set.n, all) != KL_OK) goto fail;
    rc = all ? 0 : 3;
    goto done;
fail:
    rc = kl_cli_fail("gates");
done:
    free(yaml);
    free(json);
    kl_eval_result_free(&res);
    kl_eval_result_free(&cres);
    kl_dataset_free(&ref);
    kl_bundle_free(&b);
    kl_bundle_free(&cb);
    return rc;
}
