/* predict.c — `kiln predict --model BUNDLE --input FILE [--labels FILE] --output TARGET`:
 * batch scoring with the bundle's own preprocessing, to CSV or to a database table (SQLite or
 * PostgreSQL) in chunks that a rerun resumes. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/dataset.h"
#include "data/digest.h"          /* the input's digest, which a resumed table must match */
#include "data/prediction_sink.h" /* --output sqlite:... / postgresql://... */
#include "data/prepare.h"
#include "runtime/bundle.h"
#include "runtime/device.h"
#include "runtime/model.h"
#include "tracking/model_uri.h"

static void usage(FILE *f) {
    fprintf(f, "usage: kiln predict --model BUNDLE|models:/NAME/VERSION|models:/NAME@ALIAS\n"
               "                    --input FILE [--labels FILE] [--output FILE|-|DATABASE]\n"
               "                    [--chunk-rows N] [--no-resume]\n"
               "                    [--batch-size N] [--threads N] [--device auto|cpu|cuda]\n"
               "\n"
               "Scores every row of FILE (IDX images or CSV, as the model was trained on) and\n"
               "writes CSV: index,prediction,prob_<class>... (classification) or\n"
               "index,prediction (regression). --output - (the default) writes to stdout.\n"
               "With labels (an IDX labels file, or the label column of a CSV) it also prints\n"
               "the accuracy or mean squared error to stderr. A models:/ URI is resolved in the\n"
               "MLflow registry (MLFLOW_TRACKING_URI) and downloaded once into the model cache\n"
               "($KILN_MODEL_CACHE, else ~/.cache/kiln/models), checked on every reuse.\n"
               "\n"
               "DATABASE writes rows to a table instead, created if missing:\n"
               "  sqlite:PATH  or  sqlite:///ABSOLUTE/PATH\n"
               "  postgresql://USER:PASSWORD@HOST:PORT/DB  (or postgres://; libpq's URI)\n"
               "each with an optional ?table=NAME (default predictions). Columns: row_index,\n"
               "prediction, prob_<class>... (classification), model, input_digest, scored_at.\n"
               "Rows are scored and stored --chunk-rows at a time (default 10000), each chunk\n"
               "in one transaction: an interrupted run (Ctrl-C, SIGTERM, a crash) keeps whole\n"
               "chunks, and running the same command again skips the rows already stored and\n"
               "finishes the job. A table holding rows of another input or model is refused;\n"
               "--no-resume refuses any table that already holds rows.\n");
}

/* Writes a CSV-safe field: quoted when it holds a comma, quote or newline. */
static void csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static int write_predictions(FILE *f, const kl_bundle *b, const float *out, int64_t rows,
                             const kl_dataset *ds) {
    int C = b->spec.dims[b->spec.n_layers];
    int cls = b->spec.task == KL_TASK_CLASSIFICATION;
    fputs("index,prediction", f);
    if (cls)
        for (int c = 0; c < C; c++) {
            fputs(",", f);
            char name[512];
            snprintf(name, sizeof name, "prob_%s", b->label_names ? b->label_names[c] : "");
            csv_field(f, name);
        }
    fputc('\n', f);
    int64_t correct = 0;
    double sq = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *row = out + r * C;
        fprintf(f, "%lld,", (long long)r);
        if (cls) {
            int best = 0;
            for (int c = 1; c < C; c++)
                if (row[c] > row[best]) best = c;
            csv_field(f, b->label_names[best]);
            for (int c = 0; c < C; c++)
                fprintf(f, ",%.9g", (double)row[c]);
            if (ds->y) correct += ds->y[r] == best;
        } else {
            fprintf(f, "%.9g", (double)row[0]);
            if (ds->t) sq += ((double)row[0] - ds->t[r]) * ((double)row[0] - ds->t[r]);
        }
        fputc('\n', f);
    }
    if (cls && ds->y)
        fprintf(stderr, "accuracy %.4f (%lld/%lld)\n", rows ? (double)correct / rows : 0.0,
                (long long)correct, (long long)rows);
    if (!cls && ds->t)
        fprintf(stderr, "mse %.6g over %lld rows\n", rows ? sq / rows : 0.0, (long long)rows);
    return ferror(f) ? -1 : 0;
}

/* Set by SIGINT / SIGTERM while writing to a database: stop after the chunk in flight. */
static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig) {
    stop_requested = 1;
    signal(sig, SIG_DFL); /* a second signal ends the process at once; finished chunks stay */
}

/* Scores ds (already transformed) chunk by chunk into the database table `output` names,
 * skipping the rows a previous run of the same input and model stored. */
static kl_status predict_to_database(const char *output, const char *model, const kl_bundle *b,
                                     const kl_dataset *ds, const char *digest, kl_mlp *m,
                                     int64_t chunk_rows, int resume) {
    int C = b->spec.dims[b->spec.n_layers];
    int cls = b->spec.task == KL_TASK_CLASSIFICATION;
    kl_prediction_sink_config cfg = {.target = output,
                                     .model = model,
                                     .input_digest = digest,
                                     .n_classes = cls ? C : 0,
                                     .class_names = cls ? b->label_names : NULL,
                                     .resume = resume};
    if (cls && !b->label_names)
        return kl_seterr(KL_EFORMAT, "the bundle has no label names for its %d classes", C);
    kl_prediction_sink *sink = NULL;
    KL_TRY(kl_prediction_sink_open(&cfg, &sink));
    int64_t done = kl_prediction_sink_rows(sink), first = done;
    kl_status st = KL_OK;
    if (done > ds->n)
        st = kl_seterr(KL_EINVAL, "%s holds %lld rows, the input only %lld",
                       kl_prediction_sink_describe(sink), (long long)done, (long long)ds->n);
    int64_t k_max = chunk_rows < ds->n - done ? chunk_rows : ds->n - done;
    float *out = st == KL_OK ? malloc((size_t)(k_max > 0 ? k_max : 1) * C * sizeof(float)) : NULL;
    if (st == KL_OK && !out)
        st = kl_seterr(KL_ENOMEM, "allocating predictions for %lld rows", (long long)k_max);
    int64_t correct = 0;
    double sq = 0;
    stop_requested = 0;
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
    while (st == KL_OK && done < ds->n) {
        if (stop_requested) {
            st = kl_seterr(KL_ECANCELED,
                           "interrupted: %lld of %lld rows are stored in %s; run the same "
                           "command again to finish",
                           (long long)done, (long long)ds->n, kl_prediction_sink_describe(sink));
            break;
        }
        int64_t k = ds->n - done < chunk_rows ? ds->n - done : chunk_rows;
        st = kl_mlp_predict(m, ds->x + done * ds->d, k, out);
        if (st == KL_OK) st = kl_prediction_sink_write(sink, done, k, out);
        for (int64_t r = 0; st == KL_OK && r < k; r++) {
            const float *row = out + r * C;
            if (cls && ds->y) {
                int best = 0;
                for (int c = 1; c < C; c++)
                    if (row[c] > row[best]) best = c;
                correct += ds->y[done + r] == best;
            } else if (!cls && ds->t) {
                double e = (double)row[0] - ds->t[done + r];
                sq += e * e;
            }
        }
        if (st == KL_OK) done += k;
    }
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (st == KL_OK) {
        int64_t scored = done - first;
        const char *note = first ? " (rows scored by this run)" : "";
        if (cls && ds->y && scored)
            fprintf(stderr, "accuracy %.4f (%lld/%lld)%s\n",
                    scored ? (double)correct / scored : 0.0, (long long)correct, (long long)scored,
                    note);
        if (!cls && ds->t && scored)
            fprintf(stderr, "mse %.6g over %lld rows%s\n", scored ? sq / scored : 0.0,
                    (long long)scored, note);
        fprintf(stderr, "kiln predict: %lld rows in %s (%lld stored now, %lld already there)\n",
                (long long)done, kl_prediction_sink_describe(sink), (long long)scored,
                (long long)first);
    }
    free(out);
    kl_prediction_sink_close(sink);
    return st;
}

int kl_cmd_predict(int argc, char **argv) {
    const char *model = NULL, *input = NULL, *labels = NULL, *output = "-", *device = "cpu";
    int batch = 1024, threads = 0, resume = 1;
    long long chunk_rows = 10000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") && has) {
            model = argv[++i];
        } else if (!strcmp(a, "--input") && has) {
            input = argv[++i];
        } else if (!strcmp(a, "--labels") && has) {
            labels = argv[++i];
        } else if (!strcmp(a, "--output") && has) {
            output = argv[++i];
        } else if (!strcmp(a, "--device") && has) {
            device = argv[++i];
        } else if (!strcmp(a, "--batch-size") && has) {
            batch = atoi(argv[++i]);
        } else if (!strcmp(a, "--threads") && has) {
            threads = atoi(argv[++i]);
        } else if (!strcmp(a, "--chunk-rows") && has) {
            chunk_rows = atoll(argv[++i]);
        } else if (!strcmp(a, "--no-resume")) {
            resume = 0;
        } else {
            fprintf(stderr, "kiln predict: unknown or incomplete option \"%s\"\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model || !input || batch <= 0 || chunk_rows <= 0) {
        fprintf(stderr, "kiln predict: --model and --input are required (and --batch-size > 0, "
                        "--chunk-rows > 0)\n\n");
        usage(stderr);
        return 2;
    }
    kl_cpu_set_threads(threads);
    kl_bundle b;
    kl_dataset ds;
    kl_mlp m;
    float *out = NULL;
    memset(&b, 0, sizeof b);
    memset(&ds, 0, sizeof ds);
    memset(&m, 0, sizeof m);
    int rc = 1;
    kl_device dev;
    char model_dir[4096]; /* the bundle; a models:/ URI is downloaded into the model cache */
    if (kl_device_resolve(device, 0, &dev) != KL_OK) goto fail;
    if (kl_model_uri_resolve(model, model_dir, sizeof model_dir) != KL_OK) goto fail;
    if (kl_bundle_load(model_dir, &b) != KL_OK) goto fail;
    if (kl_data_load_input(b.encoder_json, input, labels, 0, &ds) != KL_OK) goto fail;
    if (ds.d != b.n_features) {
        kl_seterr(KL_EINVAL, "%s: %lld features per row, the model expects %d", input,
                  (long long)ds.d, b.n_features);
        goto fail;
    }
    /* The digest of the features alone, before the transform: labels may come or go between
     * an interrupted run and its rerun without changing which rows are done. */
    char digest[KL_DIGEST_LEN] = "";
    int to_database = kl_prediction_sink_is_target(output);
    if (to_database) {
        kl_dataset features = {.n = ds.n, .d = ds.d, .x = ds.x};
        if (kl_digest_dataset(&features, digest) != KL_OK) goto fail;
    }
    kl_bundle_apply_transform(&b, ds.x, ds.n);
    if (kl_mlp_create(&m, &b.spec, dev, batch, KL_PREC_FP32) != KL_OK) goto fail;
    if (kl_dev_copy_from_host(dev, m.params, b.params, (size_t)b.n_params * sizeof(float)))
        goto fail;
    if (to_database) {
        if (predict_to_database(output, model, &b, &ds, digest, &m, chunk_rows, resume) != KL_OK)
            goto fail;
        rc = 0;
        goto done;
    }
    int C = b.spec.dims[b.spec.n_layers];
    out = malloc((size_t)(ds.n ? ds.n : 1) * C * sizeof(float));
    if (!out) {
        kl_seterr(KL_ENOMEM, "allocating predictions for %lld rows", (long long)ds.n);
        goto fail;
    }
    if (kl_mlp_predict(&m, ds.x, ds.n, out) != KL_OK) goto fail;
    FILE *f = strcmp(output, "-") ? fopen(output, "w") : stdout;
    if (!f) {
        kl_seterr(KL_EIO, "cannot create \"%s\"", output);
        goto fail;
    }
    int werr = write_predictions(f, &b, out, ds.n, &ds);
    if (f != stdout) werr |= fclose(f);
    if (werr) {
        kl_seterr(KL_EIO, "writing \"%s\" failed", output);
        goto fail;
    }
    rc = 0;
    goto done;
fail:
    rc = kl_cli_fail("predict");
done:
    free(out);
    kl_mlp_free(&m);
    kl_dataset_free(&ds);
    kl_bundle_free(&b);
    return rc;
}
