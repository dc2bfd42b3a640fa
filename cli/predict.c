/* predict.c — `kiln predict --model BUNDLE --input FILE [--labels FILE] --output preds.csv`:
 * batch scoring with the bundle's own preprocessing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/dataset.h"
#include "data/prepare.h"
#include "runtime/bundle.h"
#include "runtime/device.h"
#include "runtime/model.h"
#include "tracking/model_uri.h"

static void usage(FILE *f) {
    fprintf(f, "usage: kiln predict --model BUNDLE|models:/NAME/VERSION|models:/NAME@ALIAS\n"
               "                    --input FILE [--labels FILE] [--output FILE]\n"
               "                    [--batch-size N] [--threads N] [--device auto|cpu|cuda]\n"
               "\n"
               "Scores every row of FILE (IDX images or CSV, as the model was trained on) and\n"
               "writes CSV: index,prediction,prob_<class>... (classification) or\n"
               "index,prediction (regression). --output - (the default) writes to stdout.\n"
               "With labels (an IDX labels file, or the label column of a CSV) it also prints\n"
               "the accuracy or mean squared error to stderr. A models:/ URI is resolved in the\n"
               "MLflow registry (MLFLOW_TRACKING_URI) and downloaded once into the model cache\n"
               "($KILN_MODEL_CACHE, else ~/.cache/kiln/models), checked on every reuse.\n");
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

int kl_cmd_predict(int argc, char **argv) {
    const char *model = NULL, *input = NULL, *labels = NULL, *output = "-", *device = "cpu";
    int batch = 1024, threads = 0;
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
        } else {
            fprintf(stderr, "kiln predict: unknown or incomplete option \"%s\"\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model || !input || batch <= 0) {
        fprintf(stderr,
                "kiln predict: --model and --input are required (and --batch-size > 0)\n\n");
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
    kl_bundle_apply_transform(&b, ds.x, ds.n);
    if (kl_mlp_create(&m, &b.spec, dev, batch, KL_PREC_FP32) != KL_OK) goto fail;
    if (kl_dev_copy_from_host(dev, m.params, b.params, (size_t)b.n_params * sizeof(float)))
        goto fail;
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
