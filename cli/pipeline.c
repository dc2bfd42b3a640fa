/* pipeline.c — `kiln pipeline run PIPELINE.yaml [--trigger REASON] [--evidence FILE] [--force]`:
 * train, evaluate, gate, register and promote in one command (pipeline/pipeline.h). Exit code 0
 * when the model was registered (and promoted or put up for approval), 3 when a gate failed, 1 on
 * errors. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "pipeline/pipeline.h"

static void usage(FILE *f) {
    fprintf(
        f, "usage: kiln pipeline run PIPELINE.yaml [--trigger REASON] [--evidence FILE] [--force]\n"
           "\n"
           "Runs [ingest -> check -> snapshot ->] train -> evaluate -> gates -> register ->\n"
           "promote as PIPELINE.yaml describes (name, train_config, set, experiment,\n"
           "work_dir, data, eval, gates, approval; see pipeline/pipeline.h). Steps whose "
           "inputs have not changed since the last\n"
           "successful run are skipped (--force runs them all). With MLFLOW_TRACKING_URI the\n"
           "pipeline is a parent run with a nested run per step, the new version is\n"
           "registered under NAME and takes the alias champion (approval: auto; the old one\n"
           "keeps previous) or challenger (approval: manual, for kiln approve).\n"
           "--trigger records why it ran (monitoring passes the reason) and --evidence FILE\n"
           "attaches what made it run (an alert's JSON) to the pipeline's MLflow run, as the\n"
           "artifact trigger/FILE and the tag kiln.trigger.evidence. Exit code: 0 done,\n"
           "3 a gate or data check failed (nothing registered, champion untouched), 1 error,\n"
           "2 usage.\n");
}

int kl_cmd_pipeline(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc < 3 || strcmp(argv[1], "run")) {
        usage(stderr);
        return 2;
    }
    kl_pipeline_opts o = {.trigger = "manual", .log = stderr};
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--trigger") && i + 1 < argc) {
            o.trigger = argv[++i];
        } else if (!strcmp(argv[i], "--evidence") && i + 1 < argc) {
            o.evidence = argv[++i];
        } else if (!strcmp(argv[i], "--force")) {
            o.force = 1;
        } else {
            fprintf(stderr, "kiln pipeline: unknown or incomplete option \"%s\"\n\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    kl_pipeline_result r;
    if (kl_pipeline_run(argv[2], &o, &r) != KL_OK) {
        int rc = kl_cli_fail("pipeline");
        /* A gate (or a data check) said no: not an error of the pipeline itself. */
        return strstr(kl_errmsg(), "gates failed") || strstr(kl_errmsg(), "data checks failed")
                   ? 3
                   : rc;
    }
    printf("pipeline: %d step(s) run, %d skipped", r.steps_run, r.steps_skipped);
    if (r.version[0]) printf("; version %s is %s", r.version, r.promoted);
    if (r.run_id[0]) printf("; mlflow run %s", r.run_id);
    printf("\n");
    return 0;
}
