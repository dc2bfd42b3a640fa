/* eval_mlflow.c — metrics, tags and report artifacts of an evaluation, to MLflow (eval_mlflow.h).
 */
#include "eval/eval_mlflow.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static int64_t now_ms(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* A label as part of a metric key: MLflow accepts letters, digits, '_', '-', '.', ' ', ':' and
 * '/'; '.', ':' and '/' would read as structure, so only the first four are kept. */
static void key_part(const char *s, char *out, size_t cap) {
    size_t k = 0;
    for (; *s && k + 1 < cap; s++)
        out[k++] = isalnum((unsigned char)*s) || *s == '_' || *s == '-' || *s == ' ' ? *s : '_';
    out[k] = '\0';
    if (!k) snprintf(out, cap, "_");
}

/* Metric keys and values: [n_keys] in keys (each 160 bytes), returned count. */
static int collect(const kl_eval_result *r, char (*keys)[160], double *vals, int cap) {
    int n = 0;
    const char *const *names = kl_eval_metric_names(r->task);
    for (int i = 0; names[i] && n + 2 <= cap; i++) {
        snprintf(keys[n], 160, "eval/%s", names[i]);
        kl_eval_metric(r, names[i], &vals[n++]);
        if (r->base_source[0]) {
            snprintf(keys[n], 160, "eval/baseline_%s", names[i]);
            kl_eval_baseline_metric(r, names[i], &vals[n++]);
        }
    }
    if (n < cap) snprintf(keys[n], 160, "eval/rows"), vals[n++] = (double)r->n;
    for (int c = 0; c < r->n_classes && n + 4 <= cap; c++) {
        char label[100], num[16];
        snprintf(num, sizeof num, "%d", c);
        key_part(r->class_names ? r->class_names[c] : num, label, sizeof label);
        const char *what[] = {"precision", "recall", "f1", "roc_auc"};
        double v[] = {r->precision[c], r->recall[c], r->f1[c], r->auc[c]};
        for (int k = 0; k < 4; k++) {
            snprintf(keys[n], 160, "eval/class/%s/%s", label, what[k]);
            vals[n++] = v[k];
        }
    }
    return n;
}

static kl_status log_all(kl_mlflow *c, const char *run_id, const char *artifact_uri,
                         const kl_eval_result *r, const kl_eval_meta *meta,
                         const char *report_dir) {
    int cap = 32 + 4 * r->n_classes;
    char(*keys)[160] = malloc((size_t)cap * sizeof *keys);
    double *vals = malloc((size_t)cap * sizeof *vals);
    kl_metric *m = malloc((size_t)cap * sizeof *m);
    kl_status s = KL_OK;
    if (!keys || !vals || !m) s = kl_seterr(KL_ENOMEM, "evaluation metrics");
    if (s == KL_OK) {
        int n = collect(r, keys, vals, cap);
        int64_t t = now_ms();
        for (int i = 0; i < n; i++)
            m[i] = (kl_metric){.key = keys[i], .value = vals[i], .timestamp_ms = t, .step = 0};
        kl_kv tags[3];
        int nt = 0;
        if (meta && meta->model) tags[nt++] = (kl_kv){"kiln.eval.model", meta->model};
        if (meta && meta->data) tags[nt++] = (kl_kv){"kiln.eval.data", meta->data};
        if (meta && meta->data_digest)
            tags[nt++] = (kl_kv){"kiln.eval.data_digest", meta->data_digest};
        s = kl_mlflow_log_batch(c, run_id, m, n, NULL, 0, tags, nt);
        if (s != KL_OK) kl_preferr(s, "logging metrics");
    }
    const char *const *files = kl_eval_report_files(r->task);
    for (int i = 0; s == KL_OK && report_dir && files[i]; i++) {
        char local[4200], remote[64];
        snprintf(local, sizeof local, "%s/%s", report_dir, files[i]);
        snprintf(remote, sizeof remote, "eval/%s", files[i]);
        s = kl_mlflow_upload_file(c, artifact_uri, local, remote);
        if (s != KL_OK) kl_preferr(s, "uploading %s", local);
    }
    free(keys);
    free(vals);
    free(m);
    return s;
}

kl_status kl_eval_log_mlflow(kl_mlflow *c, const kl_eval_tracking *t, const kl_eval_result *r,
                             const kl_eval_meta *meta, const char *report_dir, char *run_id_out) {
    if (run_id_out) run_id_out[0] = '\0';
    if (t && t->run_id && *t->run_id) {
        kl_mlflow_run_info info;
        memset(&info, 0, sizeof info);
        kl_status s = kl_mlflow_get_run(c, t->run_id, &info);
        if (s != KL_OK) return kl_preferr(s, "run %s", t->run_id);
        char uri[512];
        snprintf(uri, sizeof uri, "%s", info.artifact_uri);
        kl_mlflow_run_info_free(&info);
        if (run_id_out) snprintf(run_id_out, 64, "%s", t->run_id);
        s = log_all(c, t->run_id, uri, r, meta, report_dir);
        return s == KL_OK ? s : kl_preferr(s, "run %s", t->run_id);
    }
    const char *exp = t && t->experiment && *t->experiment ? t->experiment : "kiln-eval";
    char exp_id[64], name[128], user[128];
    KL_TRY(kl_mlflow_experiment(c, exp, exp_id));
    if (t && t->run_name && *t->run_name) {
        snprintf(name, sizeof name, "%s", t->run_name);
    } else {
        time_t now = time(NULL);
        struct tm tmv;
        gmtime_r(&now, &tmv);
        strftime(name, sizeof name, "eval-%Y%m%d-%H%M%S", &tmv);
    }
    const char *u = getenv("USER");
    snprintf(user, sizeof user, "%s", u && *u ? u : "kiln");
    kl_kv tags[] = {{"kiln.version", KILN_VERSION},
                    {"mlflow.source.name", "kiln eval"},
                    {"mlflow.source.type", "JOB"},
                    {"mlflow.user", user}};
    kl_mlflow_run run;
    KL_TRY(kl_mlflow_create_run(c, exp_id, name, now_ms(), tags, 4, &run));
    if (run_id_out) snprintf(run_id_out, 64, "%s", run.run_id);
    kl_status s = log_all(c, run.run_id, run.artifact_uri, r, meta, report_dir);
    kl_status e = kl_mlflow_update_run(c, run.run_id, s == KL_OK ? "FINISHED" : "FAILED", now_ms());
    if (s != KL_OK) return kl_preferr(s, "run %s", run.run_id);
    return e;
}
