/* tracking.c — `kiln tracking sync`: sends what runs left in the spool while MLflow was away. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "tracking/tracker.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: kiln tracking sync [--spool-dir DIR]\n"
            "\n"
            "Sends every operation that training runs spooled while MLflow could not be reached\n"
            "(runs, params, metrics, datasets, artifacts, models) to MLFLOW_TRACKING_URI, in\n"
            "order, exactly once, and removes each spool once delivered. The default spool is\n"
            "$KILN_SPOOL_DIR, else ~/.cache/kiln/spool.\n");
}

int kl_cmd_tracking(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "sync") != 0) {
        fprintf(stderr, "kiln tracking: unknown action \"%s\"\n\n", argv[1]);
        usage(stderr);
        return 2;
    }
    const char *spool = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--spool-dir") && i + 1 < argc) {
            spool = argv[++i];
        } else {
            fprintf(stderr, "kiln tracking sync: unknown or incomplete option \"%s\"\n\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    kl_mlflow_opts opts;
    memset(&opts, 0, sizeof opts);
    if (kl_tracker_sync(spool, &opts, 1) != KL_OK) return kl_cli_fail("tracking sync");
    return 0;
}
