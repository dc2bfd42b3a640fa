/* registry.c — `kiln register` (a run's model as a new registered version) and `kiln alias`
 * (set and read a registered model's aliases), against MLFLOW_TRACKING_URI. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "tracking/mlflow.h"

/* Run metrics copied onto a new version as tags (the key's '/' becomes '_'). */
static const char *const KEY_METRICS[] = {"test/accuracy", "test/loss", "val/accuracy", "val/loss"};
#define N_KEY_METRICS (int)(sizeof KEY_METRICS / sizeof KEY_METRICS[0])

static void register_usage(FILE *f) {
    fprintf(f, "usage: kiln register --run RUN_ID --name NAME [--artifact-path PATH]\n"
               "\n"
               "Registers a run's model as a new version of the registered model NAME (created if\n"
               "missing) in the MLflow server at MLFLOW_TRACKING_URI, and prints the version.\n"
               "The source is the run's MLflow 3 logged model when it has one, else the run's\n"
               "artifact directory PATH (default \"model\"); --artifact-path always uses the\n"
               "directory. The version is tagged with the run's kiln.data_digest and its key\n"
               "metrics (test_accuracy, test_loss, val_accuracy, val_loss) when present.\n");
}

static void alias_usage(FILE *f) {
    fprintf(f, "usage: kiln alias set NAME ALIAS VERSION\n"
               "       kiln alias get NAME ALIAS\n"
               "\n"
               "Points ALIAS of the registered model NAME at VERSION, or prints the version it\n"
               "points at (MLFLOW_TRACKING_URI). Serving and `kiln predict --model` resolve\n"
               "models:/NAME@ALIAS through it.\n");
}

/* Picks the version's source: the run's logged model, or its artifact directory. */
static kl_status choose_source(kl_mlflow *c, const kl_mlflow_run_info *run, const char *path,
                               char *source, size_t cap, const char **model_id) {
    *model_id = NULL;
    if (!path && run->n_models > 0) {
        *model_id = run->model_ids[run->n_models - 1];
        snprintf(source, cap, "models:/%s", *model_id);
        return KL_OK;
    }
    if (!path) path = "model";
    kl_mlflow_file *files;
    int n;
    KL_TRY(kl_mlflow_list_artifacts(c, run->artifact_uri, path, &files, &n));
    kl_mlflow_files_free(files, n);
    if (n == 0)
        return kl_seterr(KL_ENOTFOUND,
                         "run %s has no logged model and no artifact directory \"%s\" (upload "
                         "the bundle there, or train with MLflow tracking on)",
                         run->run_id, path);
    snprintf(source, cap, "%s/%s", run->artifact_uri, path);
    return KL_OK;
}

int kl_cmd_register(int argc, char **argv) {
    const char *run_id = NULL, *name = NULL, *path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            register_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--run") && has) {
            run_id = argv[++i];
        } else if (!strcmp(a, "--name") && has) {
            name = argv[++i];
        } else if (!strcmp(a, "--artifact-path") && has) {
            path = argv[++i];
        } else {
            fprintf(stderr, "kiln register: unknown or incomplete option \"%s\"\n\n", a);
            register_usage(stderr);
            return 2;
        }
    }
    if (!run_id || !name) {
        fprintf(stderr, "kiln register: --run and --name are required\n\n");
        register_usage(stderr);
        return 2;
    }
    kl_mlflow *c = NULL;
    kl_mlflow_run_info run;
    memset(&run, 0, sizeof run);
    int rc = 1;
    if (kl_mlflow_open(NULL, &c) || kl_mlflow_get_run(c, run_id, &run)) goto fail;
    char source[1024], version[32];
    const char *model_id;
    if (choose_source(c, &run, path, source, sizeof source, &model_id)) goto fail;
    kl_kv tags[1 + N_KEY_METRICS];
    char names[N_KEY_METRICS][32], values[N_KEY_METRICS][32];
    int nt = 0;
    const char *digest = kl_mlflow_run_tag(&run, "kiln.data_digest");
    if (digest) tags[nt++] = (kl_kv){"kiln.data_digest", digest};
    for (int i = 0; i < N_KEY_METRICS; i++) {
        double v = kl_mlflow_run_metric(&run, KEY_METRICS[i]);
        if (isnan(v)) continue;
        snprintf(names[i], sizeof names[i], "%s", KEY_METRICS[i]);
        *strchr(names[i], '/') = '_';
        snprintf(values[i], sizeof values[i], "%.6g", v);
        tags[nt++] = (kl_kv){names[i], values[i]};
    }
    if (kl_mlflow_registered_model(c, name, NULL) ||
        kl_mlflow_create_model_version(c, name, source, run.run_id, model_id, tags, nt, version))
        goto fail;
    fprintf(stderr, "kiln register: %s version %s from %s\n", name, version, source);
    printf("%s\n", version);
    rc = 0;
    goto done;
fail:
    rc = kl_cli_fail("register");
done:
    kl_mlflow_run_info_free(&run);
    kl_mlflow_close(c);
    return rc;
}

int kl_cmd_alias(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        alias_usage(stdout);
        return 0;
    }
    int set = argc == 5 && !strcmp(argv[1], "set");
    int get = argc == 4 && !strcmp(argv[1], "get");
    if (!set && !get) {
        alias_usage(stderr);
        return 2;
    }
    kl_mlflow *c;
    if (kl_mlflow_open(NULL, &c)) return kl_cli_fail("alias");
    char version[32];
    kl_status s = set ? kl_mlflow_set_alias(c, argv[2], argv[3], argv[4])
                      : kl_mlflow_get_alias(c, argv[2], argv[3], version);
    kl_mlflow_close(c);
    if (s) return kl_cli_fail(set ? "alias set" : "alias get");
    if (get) printf("%s\n", version);
    return 0;
}
