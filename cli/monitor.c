/* monitor.c — `kiln monitor report --log FILE.jsonl|DIR --model BUNDLE|models:/URI`: drift of
 * logged predictions against the bundle's reference profile, as a table and a report directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/reference.h"
#include "monitor/drift.h"
#include "monitor/drift_log.h"
#include "monitor/drift_report.h"
#include "runtime/bundle.h"
#include "tracking/model_uri.h" /* --model models:/NAME@ALIAS */

#define MAX_WARNINGS 20 /* malformed lines named on stderr; the rest are only counted */

static void usage(FILE *f) {
    fprintf(f, "usage: kiln monitor report --log FILE.jsonl|DIR --model BUNDLE|models:/NAME@ALIAS\n"
               "                           [--out DIR] [--window N] [--name MODEL]\n"
               "\n"
               "Reads a prediction log (JSONL, one record per line; or the directory kiln serve\n"
               "--prediction-log DIR writes, its rotated files oldest first) and measures the\n"
               "drift of its rows (every row, or the last N) against the reference profile in\n"
               "the bundle's kiln.json (a folder, or a registered version by models:/ URI, as\n"
               "kiln serve takes it): PSI and KS per feature, and PSI of the predictions. --name\n"
               "keeps only records whose \"model\" is MODEL. Prints the top features and writes\n"
               "drift.json, psi.svg, prediction.svg and report.html to DIR (default out/monitor).\n"
               "Malformed lines are reported (FILE:LINE: ...), skipped and counted.\n");
}

static int report(int argc, char **argv) {
    const char *log_path = NULL, *model = NULL, *out_dir = "out/monitor", *name = NULL;
    long long window = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--log") && has) {
            log_path = argv[++i];
        } else if (!strcmp(a, "--model") && has) {
            model = argv[++i];
        } else if (!strcmp(a, "--out") && has) {
            out_dir = argv[++i];
        } else if (!strcmp(a, "--name") && has) {
            name = argv[++i];
        } else if (!strcmp(a, "--window") && has) {
            char *end;
            window = strtoll(argv[++i], &end, 10);
            if (*end || window < 1) {
                fprintf(stderr, "kiln monitor report: --window \"%s\" must be a count >= 1\n",
                        argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "kiln monitor report: unknown or incomplete option \"%s\"\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!log_path || !model) {
        fprintf(stderr, "kiln monitor report: --log and --model are required\n\n");
        usage(stderr);
        return 2;
    }
    kl_bundle b;
    kl_reference ref;
    kl_drift_log log;
    kl_drift_result res;
    kl_drift_window *w = NULL;
    memset(&ref, 0, sizeof ref);
    memset(&log, 0, sizeof log);
    memset(&res, 0, sizeof res);
    int rc = 1;
    char model_dir[4096];
    if (kl_model_uri_resolve(model, model_dir, sizeof model_dir) != KL_OK ||
        kl_bundle_load(model_dir, &b) != KL_OK)
        return kl_cli_fail("monitor report");
    kl_status s = KL_OK;
    if (!b.reference_json) {
        s = kl_seterr(KL_ENOTFOUND,
                      "bundle \"%s\" has no reference profile (kiln.json has no \"reference\": "
                      "it was trained before kiln recorded one); retrain it to measure drift",
                      model);
        goto done;
    }
    if ((s = kl_reference_from_json(b.reference_json, b.n_features, &ref))) {
        kl_preferr(s, "bundle \"%s\": kiln.json", model);
        goto done;
    }
    int n_out = b.spec.dims[b.spec.n_layers];
    if ((s = kl_drift_log_read(log_path, b.n_features, n_out, name, stderr, MAX_WARNINGS, &log)))
        goto done;
    if (log.skipped > MAX_WARNINGS)
        fprintf(stderr, "%s: %lld more malformed lines skipped\n", log_path,
                (long long)(log.skipped - MAX_WARNINGS));
    if (log.skipped)
        fprintf(stderr, "%s: %lld of %lld lines skipped as malformed; using the rest\n", log_path,
                (long long)log.skipped, (long long)log.lines);
    if (log.rows == 0) {
        s = kl_seterr(KL_EINVAL,
                      "%s: no prediction rows for this model (%lld lines, %lld skipped, %lld "
                      "feedback%s)",
                      log_path, (long long)log.lines, (long long)log.skipped,
                      (long long)log.feedback, name ? ", or none named --name" : "");
        goto done;
    }
    int64_t cap = window > 0 && window < log.rows ? window : log.rows;
    if (!(s = kl_drift_window_create(&ref, cap, &w)) &&
        !(s = kl_drift_window_add(w, log.x, log.rows, log.d, log.out, log.n_out)))
        s = kl_drift_window_compute(w, &res);
    if (s) goto done;
    kl_drift_report r = {.log_path = log_path,
                         .model_path = model,
                         .window = window,
                         .log = &log,
                         .ref = &ref,
                         .res = &res,
                         .feature_names = b.feature_names,
                         .label_names = b.n_labels ? b.label_names : NULL};
    kl_drift_report_print(stdout, &r);
    if ((s = kl_drift_report_write(out_dir, &r))) goto done;
    printf("\nreport: %s/report.html (drift.json, psi.svg, prediction.svg)\n", out_dir);
    rc = 0;
done:
    if (s) rc = kl_cli_fail("monitor report");
    kl_drift_window_free(w);
    kl_drift_result_free(&res);
    kl_drift_log_free(&log);
    kl_reference_free(&ref);
    kl_bundle_free(&b);
    return rc;
}

int kl_cmd_monitor(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "report")) return report(argc - 1, argv + 1);
    fprintf(stderr, "kiln monitor: unknown subcommand \"%s\"\n\n", argv[1]);
    usage(stderr);
    return 2;
}
