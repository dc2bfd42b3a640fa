/* train_tracking.c — the training run's MLflow record, built on tracking/tracker. */
#include "trainer/train_tracking.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "data/digest.h"
#include "runtime/fileio.h"
#include "tracking/system_metrics.h"
#include "tracking/tracker.h"

struct kl_train_tracking {
    const kl_train_config *cfg; /* the run's config */
    kl_tracker *tracker;        /* async delivery */
    kl_sysmetrics *sys;         /* system metric sampler */
    char run_dir[1100];         /* <output>.run: artifacts kept until delivered */
    FILE *log;                  /* train.log copy of the progress lines */
    float *curve;               /* [cap] training loss per step */
    int64_t cap, n;             /* curve capacity and length */
    double val_x[4096];         /* steps at which validation loss was measured */
    double val_y[4096];         /* the validation losses */
    int n_val;                  /* validation points */
    char device[32];            /* device the run used */
};

static void add_param(const char *key, const char *value, void *user) {
    kl_kv **kv = user;
    (*kv)->key = strdup(key);
    (*kv)->value = strdup(value);
    (*kv)++;
}

/* MLflow's dataset digest field holds at most 36 characters: the first 32 hex digits. */
static void short_digest(const char *full, char out[40]) {
    const char *hex = strncmp(full, "sha256:", 7) == 0 ? full + 7 : full;
    snprintf(out, 40, "%.32s", hex);
}

static char *tensor_schema(int64_t d, int cls) {
    char buf[512];
    snprintf(
        buf, sizeof buf,
        "{\"mlflow_tensorspec\": {\"features\": \"[{\\\"type\\\": \\\"tensor\\\", "
        "\\\"tensor-spec\\\": {\\\"dtype\\\": \\\"float32\\\", \\\"shape\\\": [-1, %lld]}}]\", "
        "\"targets\": \"[{\\\"type\\\": \\\"tensor\\\", \\\"tensor-spec\\\": "
        "{\\\"dtype\\\": \\\"%s\\\", \\\"shape\\\": [-1]}}]\"}}",
        (long long)d, cls ? "int32" : "float32");
    return strdup(buf);
}

static char *profile(const kl_dataset *ds) {
    char buf[512];
    snprintf(buf, sizeof buf,
             "{\"features_shape\": [%lld, %lld], \"features_size\": %lld, \"features_nbytes\": "
             "%lld, \"targets_shape\": [%lld], \"num_classes\": %d}",
             (long long)ds->n, (long long)ds->d, (long long)(ds->n * ds->d),
             (long long)(ds->n * ds->d * 4), (long long)ds->n, ds->n_classes);
    return strdup(buf);
}

static void log_datasets(kl_train_tracking *tt, const kl_prepared_data *d) {
    const kl_train_config *c = tt->cfg;
    kl_mlflow_dataset ds[3];
    char digests[3][40], full[80], src[3][1200];
    char *schemas[3] = {0}, *profiles[3] = {0};
    int n = 0;
    const kl_dataset *sets[3] = {&d->train, &d->val, &d->test};
    const char *ctx[3] = {"train", "validation", "test"};
    const char *files[3] = {c->data_train, c->data_train, c->data_test};
    for (int i = 0; i < 3; i++) {
        if (sets[i]->n == 0) continue;
        if (i == 0)
            snprintf(full, sizeof full, "%s", d->digest);
        else if (i == 2 && d->test_digest[0])
            snprintf(full, sizeof full, "%s", d->test_digest);
        else if (kl_digest_dataset(sets[i], full) != KL_OK)
            full[0] = '\0';
        short_digest(full, digests[n]);
        snprintf(src[n], sizeof src[n], "{\"uri\": \"%.1000s\"}", files[i] ? files[i] : "");
        schemas[n] = tensor_schema(sets[i]->d, sets[i]->y != NULL);
        profiles[n] = profile(sets[i]);
        ds[n] = (kl_mlflow_dataset){.name = i == 0   ? "train"
                                            : i == 1 ? "validation"
                                                     : "test",
                                    .digest = digests[n],
                                    .source_type = "local",
                                    .source = src[n],
                                    .schema = schemas[n],
                                    .profile = profiles[n],
                                    .context = ctx[i]};
        n++;
    }
    kl_tracker_inputs(tt->tracker, ds, n);
    for (int i = 0; i < n; i++)
        free(schemas[i]), free(profiles[i]);
}

kl_status kl_train_tracking_begin(const kl_train_config *cfg, const char *device,
                                  const kl_prepared_data *d, int64_t total_steps,
                                  kl_train_tracking **out) {
    *out = NULL;
    const char *uri =
        cfg->tracking_uri && *cfg->tracking_uri ? cfg->tracking_uri : getenv("MLFLOW_TRACKING_URI");
    if (!uri || !*uri) return KL_OK;
    kl_train_tracking *tt = calloc(1, sizeof *tt);
    if (!tt) return kl_seterr(KL_ENOMEM, "tracking");
    tt->cfg = cfg;
    snprintf(tt->device, sizeof tt->device, "%s", device);
    tt->cap = total_steps > 0 ? total_steps : 1;
    tt->curve = malloc((size_t)tt->cap * sizeof(float));
    size_t olen = strlen(cfg->output);
    while (olen > 1 && cfg->output[olen - 1] == '/')
        olen--;
    snprintf(tt->run_dir, sizeof tt->run_dir, "%.*s.run", (int)olen, cfg->output);
    if (!tt->curve || kl_file_mkdirs(tt->run_dir) != KL_OK) {
        free(tt->curve);
        free(tt);
        return kl_preferr(KL_EIO, "tracking artifacts");
    }
    char path[1200];
    snprintf(path, sizeof path, "%s/train.log", tt->run_dir);
    tt->log = fopen(path, "w");

    char host[256] = "", run_name[256], user[128];
    gethostname(host, sizeof host - 1);
    const char *u = getenv("USER");
    snprintf(user, sizeof user, "%s", u && *u ? u : "kiln");
    if (cfg->tracking_run_name && *cfg->tracking_run_name) {
        snprintf(run_name, sizeof run_name, "%s", cfg->tracking_run_name);
    } else {
        time_t now = time(NULL);
        struct tm tmv;
        gmtime_r(&now, &tmv);
        char stamp[32];
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tmv);
        snprintf(run_name, sizeof run_name, "%.100s-%s", cfg->model_layers, stamp);
    }
    char note[512];
    snprintf(note, sizeof note,
             "kiln %s: MLP %s (%s, %s) on %s; data %s; %lld epochs at batch %lld with %s.",
             KILN_VERSION, cfg->model_layers, cfg->model_activation, cfg->model_task, device,
             d->digest, (long long)cfg->train_epochs, (long long)cfg->train_batch_size,
             cfg->optim_name);
    kl_kv tags[] = {
        {"kiln.version", KILN_VERSION},
        {"kiln.host", host},
        {"kiln.device", device},
        {"kiln.data_digest", d->digest},
        {"mlflow.source.name", "kiln train"},
        {"mlflow.source.type", "JOB"},
        {"mlflow.user", user},
        {"mlflow.note.content", note},
        {"mlflow.parentRunId", cfg->tracking_parent_run ? cfg->tracking_parent_run : ""},
    };
    kl_tracker_opts to = {.experiment = cfg->tracking_experiment,
                          .run_name = run_name,
                          .spool_dir = cfg->tracking_spool_dir && *cfg->tracking_spool_dir
                                           ? cfg->tracking_spool_dir
                                           : NULL};
    to.client.uri = uri;
    /* The parent tag only when this run nests under a pipeline's. */
    int n_tags = (int)(sizeof tags / sizeof tags[0]);
    if (!cfg->tracking_parent_run || !*cfg->tracking_parent_run) n_tags--;
    kl_status s = kl_tracker_start(&to, tags, n_tags, &tt->tracker);
    if (s) {
        if (tt->log) fclose(tt->log);
        free(tt->curve);
        free(tt);
        return kl_preferr(s, "tracking");
    }
    /* Params: the resolved config, key by key. */
    kl_kv params[128];
    kl_kv *p = params;
    kl_config_each(cfg, add_param, &p);
    int np = (int)(p - params);
    kl_tracker_params(tt->tracker, params, np);
    for (int i = 0; i < np; i++)
        free((char *)params[i].key), free((char *)params[i].value);
    log_datasets(tt, d);
    if (kl_sysmetrics_start(tt->tracker, cfg->tracking_system_interval, &tt->sys) != KL_OK)
        tt->sys = NULL;
    *out = tt;
    return KL_OK;
}

FILE *kl_train_tracking_log(kl_train_tracking *tt) {
    return tt ? tt->log : NULL;
}

void kl_train_tracking_step(kl_train_tracking *tt, int64_t step, double loss, double lr,
                            double samples_per_s) {
    if (!tt) return;
    kl_tracker_metric(tt->tracker, "train/loss", loss, step);
    kl_tracker_metric(tt->tracker, "train/lr", lr, step);
    if (samples_per_s > 0)
        kl_tracker_metric(tt->tracker, "train/samples_per_second", samples_per_s, step);
    if (tt->n < tt->cap) tt->curve[tt->n++] = (float)loss;
}

void kl_train_tracking_epoch(kl_train_tracking *tt, int64_t epoch, int64_t step, double train_loss,
                             double val_loss, double val_acc, double samples_per_s) {
    if (!tt) return;
    kl_tracker_metric(tt->tracker, "train/epoch_loss", train_loss, epoch);
    kl_tracker_metric(tt->tracker, "train/epoch_samples_per_second", samples_per_s, epoch);
    if (!isnan(val_loss)) {
        kl_tracker_metric(tt->tracker, "val/loss", val_loss, step);
        if (tt->n_val < 4096) {
            tt->val_x[tt->n_val] = (double)step;
            tt->val_y[tt->n_val++] = val_loss;
        }
    }
    if (!isnan(val_acc)) kl_tracker_metric(tt->tracker, "val/accuracy", val_acc, step);
}

/* Training curves as SVG, which MLflow's artifact viewer shows as an image. */
static void write_curves(kl_train_tracking *tt, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    const double W = 800, H = 420, L = 60, R = 20, T = 30, B = 50;
    double ymax = 0;
    for (int64_t i = 0; i < tt->n; i++)
        if (isfinite(tt->curve[i]) && tt->curve[i] > ymax) ymax = tt->curve[i];
    for (int i = 0; i < tt->n_val; i++)
        if (tt->val_y[i] > ymax) ymax = tt->val_y[i];
    if (ymax <= 0) ymax = 1;
    double xmax = tt->n > 1 ? (double)tt->n : 1;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
            "<text x=\"%g\" y=\"20\" font-size=\"14\">kiln training curves</text>\n"
            "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"black\"/>\n"
            "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"black\"/>\n"
            "<text x=\"%g\" y=\"%g\">step</text><text x=\"5\" y=\"%g\">loss</text>\n"
            "<text x=\"%g\" y=\"%g\">0</text><text x=\"%g\" y=\"%g\">%.0f</text>\n"
            "<text x=\"5\" y=\"%g\">%.3g</text><text x=\"5\" y=\"%g\">0</text>\n",
            W, H, L, L, H - B, W - R, H - B, L, T, L, H - B, W / 2, H - 15, H / 2, L, H - B + 15,
            W - R - 30, H - B + 15, xmax, T + 5, ymax, H - B);
    fprintf(f, "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1\" points=\"");
    int64_t stride = tt->n > 2000 ? tt->n / 2000 : 1;
    for (int64_t i = 0; i < tt->n; i += stride)
        fprintf(f, "%.1f,%.1f ", L + (W - L - R) * i / xmax,
                (H - B) - (H - B - T) * (isfinite(tt->curve[i]) ? tt->curve[i] : ymax) / ymax);
    fprintf(f, "\"/>\n<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" points=\"");
    for (int i = 0; i < tt->n_val; i++)
        fprintf(f, "%.1f,%.1f ", L + (W - L - R) * tt->val_x[i] / xmax,
                (H - B) - (H - B - T) * tt->val_y[i] / ymax);
    fprintf(f,
            "\"/>\n<text x=\"%g\" y=\"%g\" fill=\"#1f77b4\">train loss (per step)</text>\n"
            "<text x=\"%g\" y=\"%g\" fill=\"#d62728\">validation loss (per epoch)</text>\n"
            "</svg>\n",
            W - 330, T + 5, W - 180, T + 5);
    fclose(f);
}

void kl_train_tracking_end(kl_train_tracking *tt, const char *status, const kl_train_result *res,
                           const char *bundle_dir, FILE *log, char *run_id) {
    if (!tt) return;
    const kl_train_config *c = tt->cfg;
    kl_sysmetrics_stop(tt->sys);
    if (tt->log) fclose(tt->log);
    char path[1200];
    int ok = strcmp(status, "FINISHED") == 0;
    if (ok && res) {
        if (!isnan(res->test_loss))
            kl_tracker_metric(tt->tracker, "test/loss", res->test_loss, res->steps);
        if (!isnan(res->test_accuracy))
            kl_tracker_metric(tt->tracker, "test/accuracy", res->test_accuracy, res->steps);
        snprintf(path, sizeof path, "%s/config.yaml", tt->run_dir);
        FILE *f = fopen(path, "w");
        if (f) {
            kl_config_write_yaml(c, f);
            fclose(f);
        }
        snprintf(path, sizeof path, "%s/curves.svg", tt->run_dir);
        write_curves(tt, path);
        kl_tracker_artifact(tt->tracker, bundle_dir, "model");
        /* The logged model: its params summarise the architecture; a registered version is
         * tagged with the data digest and the key metrics. */
        char acc[32] = "", tl[32] = "";
        if (!isnan(res->test_accuracy)) snprintf(acc, sizeof acc, "%.6g", res->test_accuracy);
        if (!isnan(res->test_loss)) snprintf(tl, sizeof tl, "%.6g", res->test_loss);
        kl_kv mparams[] = {{"layers", c->model_layers},
                           {"activation", c->model_activation},
                           {"task", c->model_task}};
        kl_kv vtags[4] = {{"kiln.data_digest", res->data_digest}};
        int nv = 1;
        if (acc[0]) vtags[nv++] = (kl_kv){"test_accuracy", acc};
        if (tl[0]) vtags[nv++] = (kl_kv){"test_loss", tl};
        kl_tracker_logged_model(
            tt->tracker, "model", bundle_dir, res->steps, mparams, 3,
            c->tracking_register && *c->tracking_register ? c->tracking_register : NULL, vtags, nv);
    }
    snprintf(path, sizeof path, "%s/config.yaml", tt->run_dir);
    if (access(path, R_OK) == 0) kl_tracker_artifact(tt->tracker, path, "config.yaml");
    snprintf(path, sizeof path, "%s/train.log", tt->run_dir);
    kl_tracker_artifact(tt->tracker, path, "train.log");
    snprintf(path, sizeof path, "%s/curves.svg", tt->run_dir);
    if (access(path, R_OK) == 0) kl_tracker_artifact(tt->tracker, path, "curves.svg");
    kl_tracker_summary sum;
    kl_status s = kl_tracker_finish(tt->tracker, status, 60.0, &sum);
    if (run_id) snprintf(run_id, 64, "%s", s == KL_OK ? sum.run_id : "");
    if (log) {
        const char *uri =
            c->tracking_uri && *c->tracking_uri ? c->tracking_uri : getenv("MLFLOW_TRACKING_URI");
        if (s == KL_OK && sum.run_id[0])
            fprintf(log, "mlflow: run %s in experiment %s: %s/#/experiments/%s/runs/%s\n",
                    sum.run_id, sum.experiment_id, uri, sum.experiment_id, sum.run_id);
        else
            fprintf(log, "mlflow: %s\n", kl_errmsg());
        if (sum.ops_rejected)
            fprintf(log, "mlflow: %lld operations were refused: %s\n", (long long)sum.ops_rejected,
                    sum.last_error);
    }
    free(tt->curve);
    free(tt);
}
