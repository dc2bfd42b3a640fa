/* mlflow_probe.c — drives tracking/'s MLflow client from the command line, for the pytest
 * integration tests (tests/integration/test_mlflow_client.py), which check what it logged
 * through MLflow's own Python client. Not installed; not part of kiln.
 *
 * usage: mlflow_probe [--retries N] [--backoff S] [--timeout S] COMMAND ARGS...
 *   run-smoke EXPERIMENT [--file F] [--dir D]   a run with 2503 metrics, 151 params (one
 *       repeated), 105 tags, two dataset inputs, F uploaded as data/<name>, D as bundle/;
 *       finished; prints {"run_id", "experiment_id", "artifact_uri"}
 *   create-run EXPERIMENT                       prints the same for a new RUNNING run
 *   finish RUN_ID STATUS
 *   upload RUN_ID LOCAL ARTIFACT_PATH           a file or a directory
 *   download URI ARTIFACT_PATH LOCAL            URI: mlflow-artifacts:/, runs:/ or models:/
 *   log-metrics RUN_ID KEY N [--sleep-ms MS]    N one-metric batches, value i*0.5 at step i
 *   logged-model EXPERIMENT_ID RUN_ID DIR       an MLflow 3 logged model holding DIR's files
 *   call METHOD PATH [JSON]                     any REST call; prints the answer
 * Exit status 0, or 1 with "mlflow_probe: <message>" on stderr. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "tracking/mlflow.h"

#define SMOKE_STEPS 1250
#define SMOKE_PARAMS 150
#define SMOKE_TAGS 102

static int fail(void) {
    fprintf(stderr, "mlflow_probe: %s\n", kl_errmsg());
    return 1;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void print_run(const char *exp, const kl_mlflow_run *run) {
    printf("{\"run_id\": \"%s\", \"experiment_id\": \"%s\", \"artifact_uri\": \"%s\"}\n",
           run->run_id, exp, run->artifact_uri);
}

static char *repeat(char ch, size_t n) {
    char *s = malloc(n + 1);
    if (s) {
        memset(s, ch, n);
        s[n] = '\0';
    }
    return s;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static int run_smoke(kl_mlflow *c, int argc, char **argv) {
    if (argc < 1) return fprintf(stderr, "run-smoke EXPERIMENT [--file F] [--dir D]\n"), 2;
    const char *file = NULL, *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--file") && i + 1 < argc)
            file = argv[++i];
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
    }
    char exp[64];
    if (kl_mlflow_experiment(c, argv[0], exp)) return fail();
    kl_kv tags0[] = {{"mlflow.source.name", "mlflow_probe"}, {"mlflow.source.type", "JOB"}};
    kl_mlflow_run run;
    int64_t t0 = now_ms();
    if (kl_mlflow_create_run(c, exp, "smoke", t0, tags0, 2, &run)) return fail();

    /* Params: p000..p149, every 15th longer than MLflow's 6000-character limit, and p000 given
     * twice with the same value (must be sent once). */
    static char names[SMOKE_PARAMS + SMOKE_TAGS][32], values[SMOKE_PARAMS + SMOKE_TAGS][32];
    char *long_param = repeat('P', 6500), *long_tag = repeat('T', 5200);
    kl_kv params[SMOKE_PARAMS + 1], tags[SMOKE_TAGS + 3];
    for (int i = 0; i < SMOKE_PARAMS; i++) {
        snprintf(names[i], sizeof names[i], "p%03d", i);
        snprintf(values[i], sizeof values[i], "value-%d", i);
        params[i] = (kl_kv){names[i], i % 15 == 0 ? long_param : values[i]};
    }
    params[SMOKE_PARAMS] = params[0];
    /* Tags: t000..t101 (every 25th longer than 5000 characters), and a note with quotes,
     * non-ASCII text and a newline. */
    int nt = 0;
    for (int i = 0; i < SMOKE_TAGS; i++) {
        char *n = names[SMOKE_PARAMS + i], *v = values[SMOKE_PARAMS + i];
        snprintf(n, 32, "t%03d", i);
        snprintf(v, 32, "tag value %d", i);
        tags[nt++] = (kl_kv){n, i % 25 == 0 ? long_tag : v};
    }
    tags[nt++] = (kl_kv){"mlflow.note.content", "probe run: \"quoted\", "
                                                "\xc3\xbc"
                                                "n"
                                                "\xc3\xaf"
                                                "c"
                                                "\xc3\xb6"
                                                "de "
                                                "\xe2\x9c\x93"
                                                "\nsecond line"};
    tags[nt++] = (kl_kv){"kiln.data_digest", "sha256:0123456789abcdef"};
    tags[nt++] = (kl_kv){"probe.empty", ""};
    /* Metrics: train/loss = 1/(s+1) and train/acc = s/1250 at steps 0..1249, timestamps t0+s;
     * special = NaN, +inf, -inf at steps 1, 2, 3. */
    int nm = 2 * SMOKE_STEPS + 3;
    kl_metric *m = malloc((size_t)nm * sizeof *m);
    if (!m || !long_param || !long_tag) return fprintf(stderr, "out of memory\n"), 1;
    for (int s = 0; s < SMOKE_STEPS; s++) {
        m[2 * s] = (kl_metric){"train/loss", 1.0 / (s + 1), t0 + s, s};
        m[2 * s + 1] = (kl_metric){"train/acc", s / 1250.0, t0 + s, s};
    }
    m[nm - 3] = (kl_metric){"special", NAN, t0, 1};
    m[nm - 2] = (kl_metric){"special", INFINITY, t0, 2};
    m[nm - 1] = (kl_metric){"special", -INFINITY, t0, 3};
    kl_status s = kl_mlflow_log_batch(c, run.run_id, m, nm, params, SMOKE_PARAMS + 1, tags, nt);
    free(m);
    free(long_param);
    free(long_tag);
    if (s) return fail();

    kl_mlflow_dataset ds[2] = {
        {.name = "probe-data",
         .digest = "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
         .source_type = "local",
         .source = "{\"uri\": \"/data/probe.csv\"}",
         .schema = "{\"mlflow_colspec\": [{\"type\": \"double\", \"name\": \"x\"}]}",
         .profile = "{\"num_rows\": 10}",
         .context = "train"},
        {.name = "probe-data",
         .digest = "feedbeef",
         .source_type = "local",
         .source = "{\"uri\": \"/data/probe-test.csv\"}",
         .context = "test"},
    };
    if (kl_mlflow_log_inputs(c, run.run_id, ds, 2)) return fail();
    if (file) {
        char path[512];
        snprintf(path, sizeof path, "data/%s", base_name(file));
        if (kl_mlflow_upload_file(c, run.artifact_uri, file, path)) return fail();
    }
    if (dir && kl_mlflow_upload_dir(c, run.artifact_uri, dir, "bundle")) return fail();
    if (kl_mlflow_update_run(c, run.run_id, "FINISHED", now_ms())) return fail();
    print_run(exp, &run);
    return 0;
}

static int log_metrics(kl_mlflow *c, int argc, char **argv) {
    if (argc < 3) return fprintf(stderr, "log-metrics RUN_ID KEY N [--sleep-ms MS]\n"), 2;
    int n = atoi(argv[2]);
    long sleep_ms = argc >= 5 && !strcmp(argv[3], "--sleep-ms") ? atol(argv[4]) : 0;
    int64_t t0 = now_ms();
    for (int i = 0; i < n; i++) {
        kl_metric m = {argv[1], i * 0.5, t0 + i, i};
        if (kl_mlflow_log_batch(c, argv[0], &m, 1, NULL, 0, NULL, 0)) return fail();
        if (sleep_ms > 0) {
            struct timespec ts = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000};
            nanosleep(&ts, NULL);
        }
    }
    printf("{\"logged\": %d}\n", n);
    return 0;
}

static int logged_model(kl_mlflow *c, int argc, char **argv) {
    if (argc < 3) return fprintf(stderr, "logged-model EXPERIMENT_ID RUN_ID DIR\n"), 2;
    kl_kv params[] = {{"layers", "4-8-3"}, {"task", "classification"}};
    kl_mlflow_logged_model lm;
    if (kl_mlflow_create_logged_model(c, argv[0], argv[1], "model", 7, params, 2, &lm))
        return fail();
    if (kl_mlflow_upload_dir(c, lm.artifact_uri, argv[2], "")) return fail();
    if (kl_mlflow_finalize_logged_model(c, lm.model_id, 1)) return fail();
    printf("{\"model_id\": \"%s\", \"artifact_uri\": \"%s\"}\n", lm.model_id, lm.artifact_uri);
    return 0;
}

int main(int argc, char **argv) {
    kl_mlflow_opts opts;
    memset(&opts, 0, sizeof opts);
    int i = 1;
    for (; i + 1 < argc && !strncmp(argv[i], "--", 2); i += 2) {
        if (!strcmp(argv[i], "--retries"))
            opts.max_retries = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--backoff"))
            opts.backoff_base_s = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--backoff-max"))
            opts.backoff_max_s = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--timeout"))
            opts.timeout_s = atof(argv[i + 1]);
        else
            return fprintf(stderr, "mlflow_probe: unknown option %s\n", argv[i]), 2;
    }
    if (i >= argc) return fprintf(stderr, "usage: see tests/tools/mlflow_probe.c\n"), 2;
    const char *cmd = argv[i];
    int n = argc - i - 1;
    char **a = argv + i + 1;
    kl_mlflow *c;
    if (kl_mlflow_open(&opts, &c)) return fail();
    int rc = 2;
    if (!strcmp(cmd, "run-smoke")) {
        rc = run_smoke(c, n, a);
    } else if (!strcmp(cmd, "create-run") && n >= 1) {
        char exp[64];
        kl_mlflow_run run;
        rc = kl_mlflow_experiment(c, a[0], exp) ||
                     kl_mlflow_create_run(c, exp, "probe", now_ms(), NULL, 0, &run)
                 ? fail()
                 : (print_run(exp, &run), 0);
    } else if (!strcmp(cmd, "finish") && n >= 2) {
        rc = kl_mlflow_update_run(c, a[0], a[1], now_ms()) ? fail() : 0;
    } else if (!strcmp(cmd, "upload") && n >= 3) {
        kl_mlflow_run_info r;
        struct stat st;
        if (kl_mlflow_get_run(c, a[0], &r)) {
            rc = fail();
        } else {
            kl_status s = stat(a[1], &st) == 0 && S_ISDIR(st.st_mode)
                              ? kl_mlflow_upload_dir(c, r.artifact_uri, a[1], a[2])
                              : kl_mlflow_upload_file(c, r.artifact_uri, a[1], a[2]);
            rc = s ? fail() : 0;
            kl_mlflow_run_info_free(&r);
        }
    } else if (!strcmp(cmd, "download") && n >= 3) {
        rc = kl_mlflow_download(c, a[0], a[1], a[2]) ? fail() : 0;
    } else if (!strcmp(cmd, "log-metrics")) {
        rc = log_metrics(c, n, a);
    } else if (!strcmp(cmd, "logged-model")) {
        rc = logged_model(c, n, a);
    } else if (!strcmp(cmd, "call") && n >= 2) {
        char *resp = NULL;
        if (kl_mlflow_request(c, a[0], a[1], n >= 3 ? a[2] : NULL, &resp)) {
            rc = fail();
        } else {
            printf("%s\n", resp);
            rc = 0;
        }
        free(resp);
    } else {
        fprintf(stderr, "mlflow_probe: unknown command or missing arguments: %s\n", cmd);
    }
    kl_mlflow_close(c);
    return rc;
}
