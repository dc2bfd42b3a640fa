/* serve.c — `kiln serve`: answers the Open Inference Protocol (KServe v2, as Triton speaks it)
 * over gRPC, and its REST form plus Prometheus /metrics over HTTP, for bundles named on the
 * command line and/or a model repository folder, until SIGTERM or SIGINT; then it stops
 * accepting, lets queued and in-flight requests finish and exits 0. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kernels/ops.h"            /* kl_cpu_set_threads */
#include "serving/grpc_server.h"    /* the gRPC front end */
#include "serving/http_server.h"    /* the HTTP front end */
#include "monitor/alerts.h"         /* --alerts: rules, webhook, retraining */
#include "monitor/drift_monitor.h"  /* --drift-window: live drift gauges */
#include "monitor/prediction_log.h" /* --prediction-log and feedback */
#include "serving/model_manager.h"  /* the models, batchers and traffic */

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: kiln serve [--model NAME=BUNDLE|NAME=models:/NAME@ALIAS ...]\n"
        "                  [--repository DIR] [--poll-seconds S] [--explicit]\n"
        "                  [--version-policy latest[:N]|all|specific:V[,V...]]\n"
        "                  [--canary NAME=CHALLENGER:SHARE] [--shadow NAME=CHALLENGER]\n"
        "                  [--host 127.0.0.1] [--port 8001] [--threads 2]\n"
        "                  [--http-port P] [--http-threads 4] [--http-max-body-mb 64]\n"
        "                  [--max-batch 256] [--preferred-batch N[,N...]] [--no-batching]\n"
        "                  [--max-queue-delay-us 0] [--max-queue-size 4096] [--timeout-us 0]\n"
        "                  [--priority-levels 1] [--default-priority 1] [--instances 1]\n"
        "                  [--device cpu|auto|cuda] [--cpu-threads 1] [--max-message-mb 64]\n"
        "                  [--tls-cert FILE --tls-key FILE [--tls-ca FILE]\n"
        "                   [--require-client-cert]]\n"
        "                  [--prediction-log DIR|sqlite:PATH|postgresql://URI\n"
        "                   [--prediction-log-sample 1] [--prediction-log-queue-kb 65536]\n"
        "                   [--prediction-log-file-kb 65536] [--prediction-log-files 10]\n"
        "                   [--feedback-join-rows 100000] [--accuracy-window 1000]]\n"
        "                  [--drift-window 1000] [--drift-interval 10] [--alerts RULES.yaml]\n"
        "\n"
        "Serves classification bundles over gRPC, speaking the Open Inference Protocol\n"
        "(inference.GRPCInferenceService, as Triton does: tritonclient and perf_analyzer work\n"
        "unchanged), grpc.health.v1.Health and server reflection; with --http-port also the\n"
        "protocol's REST form (/v2/...) and Prometheus metrics (/metrics). Each model takes\n"
        "one FP32 input [batch, features] and answers \"probabilities\" (FP32 [batch,\n"
        "classes]) and \"class\" (INT64 [batch]).\n"
        "\n"
        "Models: --model serves a bundle folder (version 1) or a registry URI (its registry\n"
        "version; an @ALIAS is re-read every --poll-seconds, so moving the alias swaps the\n"
        "model: blue-green). --repository serves a folder in Triton's layout, DIR/NAME/VERSION/\n"
        "holding bundles, under --version-policy (default latest), re-read every\n"
        "--poll-seconds (0: once; --explicit: only through RepositoryModelLoad). New versions\n"
        "load in the background and swap in atomically; in-flight requests finish on the old.\n"
        "Traffic: --canary sends SHARE (0..1) of the requests that name no version to the\n"
        "challenger (sticky per request id); --shadow copies each to it and compares, never\n"
        "returning its answer. A challenger is a bundle folder, a models:/ URI or, for a\n"
        "repository model, a version number.\n"
        "Batching: requests queue per version and run in batches of up to --max-batch rows;\n"
        "an instance takes what queued while it was busy (waiting up to --max-queue-delay-us\n"
        "for more). --cpu-threads sets each instance's BLAS/OpenMP threads (default 1).\n"
        "Prediction log: --prediction-log writes each answered request (request id, model,\n"
        "version, input rows as sent, outputs as answered) as JSON lines to rotating files\n"
        "DIR/predictions-NNNNNN.jsonl (a new file past --prediction-log-file-kb, the newest\n"
        "--prediction-log-files kept), or to a table (sqlite:PATH or postgresql://URI, with\n"
        "?table=NAME, default prediction_log). --prediction-log-sample logs that share of the\n"
        "requests, chosen by a hash of the request id. Writing is asynchronous: a request\n"
        "never waits for it; when the queue (--prediction-log-queue-kb) is full, records are\n"
        "dropped and counted (kiln_prediction_log_dropped_total). Requests without an id get\n"
        "one from the server (echoed in the response's id). On a clean stop every accepted\n"
        "record is written.\n"
        "Feedback: true labels by request id, as the infer request's parameter \"labels\" (one\n"
        "per row: a JSON array, a string \"3,7\", or an integer for one row), POST\n"
        "/v2/models/NAME/feedback {\"request_id\":\"r1\",\"labels\":[3,7]} (or a list) on the\n"
        "HTTP port, or `kiln feedback FILE`. Labels join the last --feedback-join-rows predicted\n"
        "rows and give kiln_live_accuracy{model,version,window} over the last\n"
        "--accuracy-window labelled rows and since start (window=\"all\").\n"
        "Drift: for each version whose bundle has a reference profile of its training data,\n"
        "the last --drift-window answered rows (as sent; 0: off) are compared with it every\n"
        "--drift-interval seconds (fractions allowed), off the request path, and published on\n"
        "/metrics: kiln_drift_psi_max, kiln_drift_ks_max, kiln_drift_prediction_psi and\n"
        "kiln_drift_window_rows {model,version}, and kiln_drift_psi{model,version,feature} for\n"
        "the 10 features with the largest PSI only (to bound the series). PSI < 0.1 is\n"
        "stable, > 0.25 a large shift; the numbers are those of `kiln monitor report` on the\n"
        "same rows. A bundle without a profile gets no gauges (a notice says so).\n"
        "Alerts: --alerts RULES.yaml holds rules (metric, comparison, threshold, for,\n"
        "severity) the server evaluates against its own metrics; firing and resolved events\n"
        "go to stderr and to a webhook (JSON POST, Slack-compatible), and a rule may start a\n"
        "retraining (`kiln pipeline run ... --trigger ... --evidence FILE`, or a command) once\n"
        "per episode. GET /alerts (HTTP) lists the active ones; /dashboard shows them. The\n"
        "file's format is in monitor/alert_rules.h and the README.\n"
        "SIGTERM or SIGINT stops it cleanly.\n");
}

/* Parses "latest", "latest:N", "all" or "specific:1,3". */
static int parse_policy(const char *s, kl_version_policy *p) {
    memset(p, 0, sizeof *p);
    if (!strcmp(s, "all")) {
        p->kind = KL_VERSIONS_ALL;
        return 0;
    }
    if (!strncmp(s, "latest", 6) && (!s[6] || s[6] == ':')) {
        p->kind = KL_VERSIONS_LATEST;
        p->latest_n = s[6] ? atoi(s + 7) : 1;
        return p->latest_n >= 1 ? 0 : -1;
    }
    if (!strncmp(s, "specific:", 9)) {
        p->kind = KL_VERSIONS_SPECIFIC;
        for (const char *c = s + 9; *c && p->n_specific < 8;) {
            char *end;
            long long v = strtoll(c, &end, 10);
            if (end == c || v < 0) return -1;
            p->specific[p->n_specific++] = v;
            c = *end == ',' ? end + 1 : end;
            if (*end && *end != ',') return -1;
        }
        return p->n_specific ? 0 : -1;
    }
    return -1;
}

/* Parses "8,16,32" into ascending preferred sizes. */
static int parse_sizes(const char *s, kl_batch_opts *b) {
    b->n_preferred = 0;
    for (const char *c = s; *c;) {
        char *end;
        long v = strtol(c, &end, 10);
        if (end == c || v < 1 || b->n_preferred >= 8) return -1;
        b->preferred[b->n_preferred++] = (int)v;
        if (*end && *end != ',') return -1;
        c = *end ? end + 1 : end;
    }
    return b->n_preferred ? 0 : -1;
}

/* Reads a non-negative integer option, or returns -1. */
static long long nonneg(const char *s) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    return end == s || *end || errno || v < 0 ? -1 : v;
}

/* The model manager's observer: each answered request to the prediction log. */
static void log_prediction(void *ctx, const kl_oip_request *req, const kl_infer_result *res) {
    kl_prediction p = {.request_id = req->id,
                       .model = req->model_name,
                       .version = res->version ? res->version : "",
                       .inputs = req->rows,
                       .rows = req->batch,
                       .n_features = req->n_features,
                       .outputs = res->probs,
                       .n_outputs = res->n_classes,
                       .classes = res->classes,
                       .labels = req->labels};
    if (p.request_id && p.model && p.outputs && res->batch == req->batch)
        kl_prediction_log_record(ctx, &p);
}

/* Before each alert evaluation: the gauges that describe the present. */
static void refresh_gauges(void *mgr) {
    kl_model_manager_refresh_gauges(mgr);
}

typedef struct {
    const char *name;       /* model */
    const char *challenger; /* its challenger */
    const char *mode;       /* "canary" or "shadow" */
    double share;           /* canary share */
} traffic_arg;

int kl_cmd_serve(int argc, char **argv) {
    kl_grpc_server_opts opts = kl_grpc_server_defaults();
    kl_http_server_opts ho = kl_http_server_defaults();
    kl_model_manager_opts mo = kl_model_manager_defaults();
    kl_prediction_log_opts lo = kl_prediction_log_defaults();
    kl_drift_monitor_opts dmo = kl_drift_monitor_defaults();
    kl_alert_config *alert_cfg = NULL;
    const char **models = calloc((size_t)argc, sizeof *models);
    traffic_arg *traffic = calloc((size_t)argc, sizeof *traffic);
    char **owned = calloc((size_t)argc, sizeof *owned);
    int n_models = 0, n_traffic = 0, n_owned = 0, cpu_threads = 1, rc = 1, http_port = -1;
    int bad = !models || !traffic || !owned;
    for (int i = 1; i < argc && !bad; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n = v ? nonneg(v) : -1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            rc = 0;
            goto done;
        } else if (!strcmp(a, "--no-batching")) {
            mo.batch.dynamic = 0;
        } else if (!strcmp(a, "--explicit")) {
            mo.explicit_control = 1;
        } else if (!strcmp(a, "--require-client-cert")) {
            opts.require_client_cert = 1;
        } else if (!v) {
            bad = 1;
        } else if (i++, !strcmp(a, "--model")) {
            models[n_models++] = v;
        } else if (!strcmp(a, "--repository")) {
            mo.repository = v;
        } else if (!strcmp(a, "--poll-seconds")) {
            mo.poll_seconds = atof(v);
            bad = !(mo.poll_seconds >= 0);
        } else if (!strcmp(a, "--version-policy")) {
            bad = parse_policy(v, &mo.policy) != 0;
        } else if (!strcmp(a, "--canary") || !strcmp(a, "--shadow")) {
            /* NAME=CHALLENGER[:SHARE]; the share follows the last ':' for a canary. */
            char *s = strdup(v);
            char *eq = s ? strchr(s, '=') : NULL;
            owned[n_owned++] = s;
            if (!eq || eq == s || !eq[1]) {
                bad = 1;
                continue;
            }
            *eq = 0;
            traffic_arg *t = &traffic[n_traffic++];
            t->name = s;
            t->challenger = eq + 1;
            t->mode = a + 2;
            if (!strcmp(a, "--canary")) {
                char *colon = strrchr(eq + 1, ':');
                char *end = NULL;
                t->share = colon ? strtod(colon + 1, &end) : -1;
                if (!colon || !end || *end || !(t->share >= 0 && t->share <= 1)) {
                    fprintf(stderr,
                            "kiln serve: --canary %s: expected NAME=CHALLENGER:SHARE "
                            "with SHARE in 0..1\n",
                            v);
                    bad = 1;
                    continue;
                }
                *colon = 0;
            }
        } else if (!strcmp(a, "--host")) {
            opts.host = v;
        } else if (!strcmp(a, "--port")) {
            opts.port = (int)n;
            bad = n < 0 || n > 65535;
        } else if (!strcmp(a, "--http-port")) {
            http_port = (int)n;
            bad = n < 0 || n > 65535;
        } else if (!strcmp(a, "--http-threads")) {
            ho.threads = (int)n;
            bad = n < 1 || n > 256;
        } else if (!strcmp(a, "--http-max-body-mb")) {
            ho.max_body_bytes = (size_t)n << 20;
            bad = n < 1 || n > 4096;
        } else if (!strcmp(a, "--threads")) {
            opts.threads = (int)n;
            bad = n < 1 || n > 256;
        } else if (!strcmp(a, "--cpu-threads")) {
            cpu_threads = (int)n;
            bad = n < 1 || n > 1024;
        } else if (!strcmp(a, "--max-message-mb")) {
            opts.max_message_bytes = n >= 1 && n <= 2047 ? (int)n << 20 : -1;
            bad = opts.max_message_bytes < 0;
        } else if (!strcmp(a, "--max-batch")) {
            mo.batch.max_batch = (int)n;
            bad = n < 1 || n > 65536;
        } else if (!strcmp(a, "--preferred-batch")) {
            bad = parse_sizes(v, &mo.batch) != 0;
        } else if (!strcmp(a, "--max-queue-delay-us")) {
            mo.batch.max_queue_delay_us = (uint64_t)n;
            bad = n < 0;
        } else if (!strcmp(a, "--max-queue-size")) {
            mo.batch.max_queue_size = (uint32_t)n;
            bad = n < 0 || n > 100000000;
        } else if (!strcmp(a, "--timeout-us")) {
            mo.batch.default_timeout_us = (uint64_t)n;
            bad = n < 0;
        } else if (!strcmp(a, "--priority-levels")) {
            mo.batch.priority_levels = (uint32_t)n;
            bad = n < 1 || n > 16;
        } else if (!strcmp(a, "--default-priority")) {
            mo.batch.default_priority = (uint32_t)n;
            bad = n < 1 || n > 16;
        } else if (!strcmp(a, "--instances")) {
            mo.batch.instances = (int)n;
            bad = n < 1 || n > 64;
        } else if (!strcmp(a, "--prediction-log")) {
            lo.dest = v;
        } else if (!strcmp(a, "--prediction-log-sample")) {
            char *end;
            lo.sample = strtod(v, &end);
            bad = *end || !(lo.sample >= 0 && lo.sample <= 1);
        } else if (!strcmp(a, "--prediction-log-queue-kb")) {
            lo.queue_bytes = (size_t)n << 10;
            bad = n < 1 || n > (16LL << 20);
        } else if (!strcmp(a, "--prediction-log-file-kb")) {
            lo.max_file_bytes = (uint64_t)n << 10;
            bad = n < 1;
        } else if (!strcmp(a, "--prediction-log-files")) {
            lo.max_files = (int)n;
            bad = n < 1 || n > 1000000;
        } else if (!strcmp(a, "--feedback-join-rows")) {
            lo.join_rows = (size_t)n;
            bad = n < 1 || n > 100000000;
        } else if (!strcmp(a, "--accuracy-window")) {
            lo.accuracy_window = (int)n;
            bad = n < 1 || n > 10000000;
        } else if (!strcmp(a, "--drift-window")) {
            dmo.window_rows = n;
            bad = n < 0 || n > 100000000;
        } else if (!strcmp(a, "--drift-interval")) {
            char *end;
            dmo.interval_s = strtod(v, &end);
            bad = *end || !(dmo.interval_s >= 0.01 && dmo.interval_s <= 86400);
        } else if (!strcmp(a, "--alerts")) {
            if (!alert_cfg) alert_cfg = calloc(1, sizeof *alert_cfg);
            if (!alert_cfg || kl_alert_config_load(v, alert_cfg) != KL_OK) {
                fprintf(stderr, "kiln serve: --alerts: %s\n",
                        alert_cfg ? kl_errmsg() : "out of memory");
                rc = 2;
                goto done;
            }
        } else if (!strcmp(a, "--device")) {
            mo.device = v;
        } else if (!strcmp(a, "--tls-cert")) {
            opts.tls_cert = v;
        } else if (!strcmp(a, "--tls-key")) {
            opts.tls_key = v;
        } else if (!strcmp(a, "--tls-ca")) {
            opts.tls_ca = v;
        } else {
            i--;
            bad = 1;
        }
        if (bad) fprintf(stderr, "kiln serve: bad, incomplete or unknown option \"%s\"\n", a);
    }
    if (!bad && n_models == 0 && !mo.repository) {
        fprintf(stderr, "kiln serve: give at least one --model NAME=BUNDLE or --repository DIR\n");
        bad = 1;
    }
    if (!bad && (!opts.tls_cert) != (!opts.tls_key)) {
        fprintf(stderr, "kiln serve: --tls-cert and --tls-key go together\n");
        bad = 1;
    }
    if (bad) {
        fputc('\n', stderr);
        usage(stderr);
        rc = 2;
        goto done;
    }
    /* Block the stop signals before any thread exists (every thread inherits the mask); the
     * main thread takes them with sigwait. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    kl_cpu_set_threads(cpu_threads);

    kl_model_manager *mgr = NULL;
    kl_grpc_server *grpc = NULL;
    kl_http_server *http = NULL;
    kl_prediction_log *plog = NULL;
    kl_drift_monitor *drift = NULL;
    kl_alerts *alerts = NULL;
    int port = 0, hport = 0;
    if (kl_model_manager_create(&mo, &mgr) != KL_OK) goto fail;
    if (lo.dest) {
        if (kl_prediction_log_create(&lo, kl_model_manager_metrics(mgr), &plog) != KL_OK) goto fail;
        if (kl_model_manager_observe(mgr, log_prediction, plog, 1) != KL_OK) goto fail;
    }
    /* Before the models load, so each gets its window as it does. */
    if (dmo.window_rows > 0 &&
        kl_drift_monitor_create(&dmo, kl_model_manager_metrics(mgr), mgr, &drift) != KL_OK)
        goto fail;
    for (int i = 0; i < n_models; i++)
        if (kl_model_manager_add(mgr, models[i]) != KL_OK) goto fail;
    for (int i = 0; i < n_traffic; i++)
        if (kl_model_manager_set_traffic(mgr, traffic[i].name, traffic[i].mode,
                                         traffic[i].challenger, traffic[i].share) != KL_OK)
            goto fail;
    if (kl_model_manager_start(mgr) != KL_OK) goto fail;
    if (alert_cfg && kl_alerts_create(alert_cfg, kl_model_manager_metrics(mgr), refresh_gauges, mgr,
                                      &alerts) != KL_OK)
        goto fail;
    if (kl_grpc_server_start(&opts, mgr, &grpc, &port) != KL_OK) goto fail;
    if (http_port >= 0) {
        ho.host = opts.host;
        ho.port = http_port;
        ho.prediction_log = plog;
        if (alerts) {
            ho.alerts_json = kl_alerts_json;
            ho.alerts_ctx = alerts;
        }
        if (kl_http_server_start(&ho, mgr, &http, &hport) != KL_OK) goto fail;
    }
    printf("serving %zu model(s) on %s:%d (gRPC)", kl_model_manager_count(mgr), opts.host, port);
    if (http) printf(", %s:%d (HTTP, /metrics)", opts.host, hport);
    printf("\n");
    fflush(stdout);
    int sig = 0;
    sigwait(&stop, &sig);
    fprintf(stderr, "kiln serve: %s: stopping (finishing queued and in-flight requests)\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM");
    /* Both front ends stop accepting and wait for their calls, which the batchers keep
     * answering; only then do the models go. */
    if (http) kl_http_server_set_stopping(http);
    kl_grpc_server_stop(grpc);
    grpc = NULL;
    kl_http_server_stop(http);
    http = NULL;
    rc = 0;
    goto cleanup;
fail:
    rc = kl_cli_fail("serve");
cleanup:
    kl_grpc_server_stop(grpc);
    kl_http_server_stop(http);
    /* The front ends have answered every request, so no observer call is running: the log
     * writes what it holds, then the manager (whose registry holds the log's metrics) goes. */
    kl_prediction_log_free(plog);
    kl_alerts_free(alerts); /* before the manager, whose registry the rules read */
    kl_model_manager_free(mgr);
    kl_drift_monitor_free(drift); /* after the manager: freeing versions closes their windows */
done:
    for (int i = 0; i < n_owned; i++)
        free(owned[i]);
    free(owned);
    free(traffic);
    free(models);
    free(alert_cfg);
    return rc;
}
