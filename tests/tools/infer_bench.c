/* infer_bench.c — times the serving path's batched inference on one device: the bundle's input
 * transform (kl_bundle_apply_transform, on the host) and kl_mlp_predict (host rows in, host
 * probabilities out), as serving/batcher.c runs them for a batch. For bench/infer_gpu.py and
 * scripts/gpu-check's serve stage. Not installed; not part of kiln.
 *
 * usage: infer_bench BUNDLE_DIR INPUT.f32 [--device D] [--threads N] [--max-batch N]
 *                    [--warmup N] [--min-reps N] [--min-ms MS] [--max-reps N] [--output F]
 *   INPUT.f32   raw float32 rows [max_batch, features] (before the transform), row-major
 *   --device    cpu, cuda, cuda:N or auto (default auto)
 *   --threads   CPU threads (default: OpenMP's)
 *   --max-batch largest batch (default 4096); batches 1, 2, 4, ... up to it (and it)
 *   --warmup    untimed calls per batch size (default 3)
 *   --min-reps / --min-ms / --max-reps: timed calls per batch size: at least min-reps (10) and
 *               at least min-ms (200) milliseconds in all, at most max-reps (1000)
 *   --output F  writes the probabilities of all max_batch rows (float32 [max_batch, outputs])
 * Prints one JSON line per batch size: {"engine", "device", "batch", "reps", "median_us",
 * "p10_us", "p90_us", "rows_per_s"}; the input rows are copied back before each call (the
 * transform is in place), outside the timed region. Exit status 0, or 1 with a message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/ops.h"
#include "runtime/bundle.h"
#include "runtime/device.h"
#include "runtime/model.h"

static int fail(const char *what) {
    fprintf(stderr, "infer_bench: %s: %s\n", what, kl_errmsg());
    return 1;
}

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile(const double *sorted, int n, double q) {
    double pos = q * (n - 1);
    int i = (int)pos;
    if (i + 1 >= n) return sorted[n - 1];
    return sorted[i] + (pos - i) * (sorted[i + 1] - sorted[i]);
}

static int int_arg(const char *name, const char *text, int lo, int *out) {
    char *end;
    long v = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || v < lo || v > 1 << 24) {
        fprintf(stderr, "infer_bench: %s: expected an integer >= %d, got \"%s\"\n", name, lo, text);
        return 0;
    }
    *out = (int)v;
    return 1;
}

/* One batch size: warm-up, then timed calls; prints its JSON line. */
static int time_batch(kl_mlp *m, const kl_bundle *b, const float *raw, float *x, float *out,
                      int rows, int warmup, int min_reps, double min_us, int max_reps,
                      double *times, const char *dev) {
    size_t in_bytes = (size_t)rows * (size_t)b->n_features * sizeof(float);
    int reps = 0;
    double total = 0;
    for (int i = 0; i < warmup + max_reps; i++) {
        memcpy(x, raw, in_bytes);
        double t0 = now_us();
        kl_bundle_apply_transform(b, x, rows);
        kl_status st = kl_mlp_predict(m, x, rows, out);
        double t = now_us() - t0;
        if (st != KL_OK) return fail("predict");
        if (i < warmup) continue;
        times[reps++] = t;
        total += t;
        if (reps >= min_reps && total >= min_us) break;
    }
    qsort(times, (size_t)reps, sizeof *times, cmp_double);
    double med = quantile(times, reps, 0.5);
    printf("{\"engine\": \"kiln\", \"device\": \"%s\", \"batch\": %d, \"reps\": %d, "
           "\"median_us\": %.2f, \"p10_us\": %.2f, \"p90_us\": %.2f, \"rows_per_s\": %.0f}\n",
           dev, rows, reps, med, quantile(times, reps, 0.1), quantile(times, reps, 0.9),
           rows / (med * 1e-6));
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    const char *device = "auto", *output = NULL;
    int threads = 0, max_batch = 4096, warmup = 3, min_reps = 10, min_ms = 200, max_reps = 1000;
    if (argc < 3) {
        fprintf(stderr, "usage: infer_bench BUNDLE_DIR INPUT.f32 [--device D] [--threads N] "
                        "[--max-batch N] [--warmup N] [--min-reps N] [--min-ms MS] "
                        "[--max-reps N] [--output F]\n");
        return 2;
    }
    const char *bundle_dir = argv[1], *input = argv[2];
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "infer_bench: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        int ok = 1;
        if (!strcmp(a, "--device"))
            device = v;
        else if (!strcmp(a, "--output"))
            output = v;
        else if (!strcmp(a, "--threads"))
            ok = int_arg(a, v, 0, &threads);
        else if (!strcmp(a, "--max-batch"))
            ok = int_arg(a, v, 1, &max_batch);
        else if (!strcmp(a, "--warmup"))
            ok = int_arg(a, v, 0, &warmup);
        else if (!strcmp(a, "--min-reps"))
            ok = int_arg(a, v, 1, &min_reps);
        else if (!strcmp(a, "--min-ms"))
            ok = int_arg(a, v, 0, &min_ms);
        else if (!strcmp(a, "--max-reps"))
            ok = int_arg(a, v, 1, &max_reps);
        else {
            fprintf(stderr, "infer_bench: unknown option %s\n", a);
            return 2;
        }
        if (!ok) return 2;
    }
    if (max_reps < min_reps) max_reps = min_reps;

    kl_bundle b;
    if (kl_bundle_load(bundle_dir, &b) != KL_OK) return fail(bundle_dir);
    kl_device dev;
    if (kl_device_resolve(device, 0, &dev) != KL_OK) return fail("device");
    if (threads > 0) kl_cpu_set_threads(threads);
    char dev_name[32];
    kl_device_name(dev, dev_name, sizeof dev_name);

    int F = b.n_features, C = b.spec.dims[b.spec.n_layers];
    size_t in_count = (size_t)max_batch * (size_t)F;
    float *raw = malloc(in_count * sizeof(float));
    float *x = malloc(in_count * sizeof(float));
    float *out = malloc((size_t)max_batch * (size_t)C * sizeof(float));
    double *times = malloc((size_t)max_reps * sizeof(double));
    if (!raw || !x || !out || !times) {
        fprintf(stderr, "infer_bench: out of memory\n");
        return 1;
    }
    FILE *f = fopen(input, "rb");
    if (!f || fread(raw, sizeof(float), in_count, f) != in_count) {
        fprintf(stderr, "infer_bench: %s: cannot read %zu float32 values ([%d, %d])\n", input,
                in_count, max_batch, F);
        return 1;
    }
    fclose(f);

    /* As the batcher builds a model instance: FP32, weights copied from the bundle. */
    kl_mlp m;
    if (kl_mlp_create(&m, &b.spec, dev, max_batch, KL_PREC_FP32) != KL_OK) return fail("model");
    if (kl_dev_copy_from_host(dev, m.params, b.params, (size_t)b.n_params * sizeof(float)) != KL_OK)
        return fail("weights");

    int rc = 0;
    for (int rows = 1; rc == 0; rows *= 2) {
        if (rows > max_batch) rows = max_batch;
        rc = time_batch(&m, &b, raw, x, out, rows, warmup, min_reps, min_ms * 1e3, max_reps, times,
                        dev_name);
        if (rows == max_batch) break;
    }
    if (rc == 0 && output) {
        memcpy(x, raw, in_count * sizeof(float));
        kl_bundle_apply_transform(&b, x, max_batch);
        if (kl_mlp_predict(&m, x, max_batch, out) != KL_OK) return fail("predict");
        FILE *o = fopen(output, "wb");
        size_t n = (size_t)max_batch * (size_t)C;
        if (!o || fwrite(out, sizeof(float), n, o) != n || fclose(o) != 0) {
            fprintf(stderr, "infer_bench: %s: cannot write\n", output);
            return 1;
        }
    }
    kl_mlp_free(&m);
    kl_bundle_free(&b);
    free(raw);
    free(x);
    free(out);
    free(times);
    return rc;
}
