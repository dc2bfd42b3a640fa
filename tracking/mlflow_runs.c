/* mlflow_runs.c — experiments, runs, log-batch cut to MLflow's limits, dataset inputs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tracking/mlflow_internal.h"

/* MLflow's limits (mlflow/utils/validation.py), checked against mlflow server 3.17. */
#define MAX_METRICS_PER_BATCH 1000
#define MAX_PARAMS_TAGS_PER_BATCH 100
#define MAX_ENTITIES_PER_BATCH 1000
#define MAX_BATCH_BYTES 900000 /* the server's cap is 1 MB of JSON; keep a margin */
#define MAX_PARAM_VALUE 6000
#define MAX_TAG_VALUE 5000 /* 8000 since MLflow 3.x; older servers refuse above 5000 */
#define MAX_DATASETS_PER_BATCH 1000
#define MAX_DATASET_DIGEST 36
#define MAX_DATASET_NAME 500
#define MAX_INPUT_TAG_VALUE 500

/* ---- experiments --------------------------------------------------------------------------- */

static kl_status experiment_by_name(kl_mlflow *c, const char *name, char id[64]) {
    char path[1200] = "/api/2.0/mlflow/experiments/get-by-name?experiment_name=";
    if (kl_http_escape(path, sizeof path, name, 0))
        return kl_seterr(KL_EINVAL, "experiment name too long");
    cJSON *r;
    KL_TRY(kl_mlflow_rpc(c, "GET", path, NULL, 0, &r));
    const cJSON *e = cJSON_GetObjectItem(r, "experiment");
    kl_mlflow_copy_str(id, 64, e, "experiment_id");
    const char *stage = cJSON_GetStringValue(cJSON_GetObjectItem(e, "lifecycle_stage"));
    kl_status s = KL_OK;
    if (!id[0])
        s = kl_seterr(KL_EFORMAT, "experiment \"%s\": the answer has no experiment_id", name);
    else if (stage && !strcmp(stage, "deleted"))
        s = kl_seterr(KL_EINVAL,
                      "experiment \"%s\" (id %s) is deleted: restore it (mlflow experiments "
                      "restore) or choose another name",
                      name, id);
    cJSON_Delete(r);
    return s;
}

kl_status kl_mlflow_experiment(kl_mlflow *c, const char *name, char id[64]) {
    id[0] = '\0';
    if (!name || !*name) return kl_seterr(KL_EINVAL, "experiment name is empty");
    kl_status s = experiment_by_name(c, name, id);
    if (s != KL_ENOTFOUND) return s == KL_OK ? s : kl_preferr(s, "experiment \"%s\"", name);
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "name", name);
    cJSON *r;
    /* A replayed create answers RESOURCE_ALREADY_EXISTS, handled below: safe to resend. */
    s = kl_mlflow_rpc(c, "POST", "/api/2.0/mlflow/experiments/create", body, KL_HTTP_IDEMPOTENT,
                      &r);
    if (s == KL_OK) {
        kl_mlflow_copy_str(id, 64, r, "experiment_id");
        cJSON_Delete(r);
        if (!id[0])
            return kl_seterr(KL_EFORMAT, "create experiment \"%s\": no id in the answer", name);
        return KL_OK;
    }
    if (!strcmp(kl_mlflow_last_error_code(c), "RESOURCE_ALREADY_EXISTS"))
        s = experiment_by_name(c, name, id); /* someone else created it meanwhile */
    return s == KL_OK ? s : kl_preferr(s, "create experiment \"%s\"", name);
}

/* ---- runs ---------------------------------------------------------------------------------- */

kl_status kl_mlflow_create_run(kl_mlflow *c, const char *experiment_id, const char *run_name,
                               int64_t start_ms, const kl_kv *tags, int n_tags,
                               kl_mlflow_run *out) {
    memset(out, 0, sizeof *out);
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "experiment_id", experiment_id);
    if (run_name && *run_name) cJSON_AddStringToObject(body, "run_name", run_name);
    if (start_ms > 0) cJSON_AddNumberToObject(body, "start_time", (double)start_ms);
    kl_mlflow_add_kvs(cJSON_AddArrayToObject(body, "tags"), tags, n_tags, MAX_TAG_VALUE);
    cJSON *r;
    /* Not idempotent: a resend after a lost answer would create a second run. */
    kl_status s = kl_mlflow_rpc(c, "POST", "/api/2.0/mlflow/runs/create", body, 0, &r);
    if (s) return kl_preferr(s, "create run in experiment %s", experiment_id);
    const cJSON *info = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "run"), "info");
    kl_mlflow_copy_str(out->run_id, sizeof out->run_id, info, "run_id");
    kl_mlflow_copy_str(out->artifact_uri, sizeof out->artifact_uri, info, "artifact_uri");
    cJSON_Delete(r);
    if (!out->run_id[0]) return kl_seterr(KL_EFORMAT, "create run: no run_id in the answer");
    return KL_OK;
}

kl_status kl_mlflow_update_run(kl_mlflow *c, const char *run_id, const char *status,
                               int64_t end_ms) {
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "run_id", run_id);
    cJSON_AddStringToObject(body, "run_uuid", run_id); /* servers before MLflow 2 read this one */
    if (status && *status) cJSON_AddStringToObject(body, "status", status);
    if (end_ms > 0) cJSON_AddNumberToObject(body, "end_time", (double)end_ms);
    kl_status s =
        kl_mlflow_rpc(c, "POST", "/api/2.0/mlflow/runs/update", body, KL_HTTP_IDEMPOTENT, NULL);
    return s ? kl_preferr(s, "update run %s", run_id) : KL_OK;
}

/* ---- log-batch ----------------------------------------------------------------------------- */

/* Bytes s takes as a JSON string, quotes included. */
static size_t json_len(const char *s) {
    size_t n = 2;
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        n += ch == '"' || ch == '\\' || ch == '\b' || ch == '\f' || ch == '\n' || ch == '\r' ||
                     ch == '\t'
                 ? 2
             : ch < 0x20 ? 6
                         : 1;
    }
    return n;
}

/* MLflow reads NaN and the infinities as the protobuf JSON strings (checked on the server: NaN
 * is kept as NaN, infinities are clipped to +-1.797e308); bare tokens are not JSON. */
static cJSON *metric_value(double v) {
    if (isnan(v)) return cJSON_CreateString("NaN");
    if (isinf(v)) return cJSON_CreateString(v > 0 ? "Infinity" : "-Infinity");
    /* cJSON prints 15 digits and accepts a near miss; a metric must come back bit-identical, so
     * use the shortest of 15, 16 or 17 digits that reads back exactly. */
    char buf[40];
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, v);
        if (strtod(buf, NULL) == v) break;
    }
    return cJSON_CreateRaw(buf);
}

static cJSON *int_json(int64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return cJSON_CreateRaw(buf);
}

static cJSON *metric_json(const kl_metric *m) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "key", m->key ? m->key : "");
    cJSON_AddItemToObject(o, "value", metric_value(m->value));
    cJSON_AddItemToObject(o, "timestamp", int_json(m->timestamp_ms));
    cJSON_AddItemToObject(o, "step", int_json(m->step));
    return o;
}

/* Params may be logged once per run with one value; the same key twice in one request is
 * refused even with the same value. Marks exact repeats in skip[]; a key given two different
 * values is an error. */
static kl_status params_dedup(const kl_kv *p, int n, char *skip) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i && !skip[i]; j++) {
            if (skip[j] || strcmp(p[i].key, p[j].key) != 0) continue;
            if (strcmp(p[i].value ? p[i].value : "", p[j].value ? p[j].value : "") != 0)
                return kl_seterr(KL_EINVAL, "param \"%s\" given twice: \"%.100s\" and \"%.100s\"",
                                 p[i].key, p[j].value ? p[j].value : "",
                                 p[i].value ? p[i].value : "");
            skip[i] = 1;
        }
    return KL_OK;
}

kl_status kl_mlflow_log_batch(kl_mlflow *c, const char *run_id, const kl_metric *metrics,
                              int n_metrics, const kl_kv *params, int n_params, const kl_kv *tags,
                              int n_tags) {
    if (n_metrics + n_params + n_tags == 0) return KL_OK;
    char *skip = calloc((size_t)(n_params ? n_params : 1), 1);
    if (!skip) return kl_seterr(KL_ENOMEM, "log-batch");
    for (int i = 0; i < n_params; i++)
        if (!params[i].key) {
            free(skip);
            return kl_seterr(KL_EINVAL, "log-batch: param %d has no key", i);
        }
    kl_status s = params_dedup(params, n_params, skip);
    int im = 0, ip = 0, it = 0, sent = 0;
    size_t base = 60 + json_len(run_id);
    while (s == KL_OK && (im < n_metrics || ip < n_params || it < n_tags)) {
        cJSON *body = cJSON_CreateObject();
        cJSON_AddStringToObject(body, "run_id", run_id);
        cJSON *ms = cJSON_AddArrayToObject(body, "metrics");
        cJSON *ps = cJSON_AddArrayToObject(body, "params");
        cJSON *ts = cJSON_AddArrayToObject(body, "tags");
        int cm = 0, cp = 0, ct = 0, full = 0;
        size_t bytes = base;
        /* Params first (they are few and describe the run), then tags, then metrics. */
        while (ip < n_params && !full && cp < MAX_PARAMS_TAGS_PER_BATCH &&
               cm + cp + ct < MAX_ENTITIES_PER_BATCH) {
            if (skip[ip]) {
                ip++;
                continue;
            }
            char *owned;
            const char *v =
                kl_mlflow_clip(params[ip].value ? params[ip].value : "", MAX_PARAM_VALUE, &owned);
            size_t sz = 24 + json_len(params[ip].key) + json_len(v);
            if (bytes + sz > MAX_BATCH_BYTES && cm + cp + ct > 0) {
                full = 1;
                free(owned);
                break;
            }
            kl_mlflow_add_kvs(ps, &(kl_kv){params[ip].key, v}, 1, MAX_PARAM_VALUE);
            free(owned);
            bytes += sz;
            cp++;
            ip++;
        }
        while (it < n_tags && !full && ct < MAX_PARAMS_TAGS_PER_BATCH &&
               cm + cp + ct < MAX_ENTITIES_PER_BATCH) {
            const char *v = tags[it].value ? tags[it].value : "";
            size_t vlen = strlen(v);
            size_t sz = 24 + json_len(tags[it].key) +
                        (vlen > MAX_TAG_VALUE ? 6 * MAX_TAG_VALUE : json_len(v));
            if (bytes + sz > MAX_BATCH_BYTES && cm + cp + ct > 0) {
                full = 1;
                break;
            }
            kl_mlflow_add_kvs(ts, &tags[it], 1, MAX_TAG_VALUE);
            bytes += sz;
            ct++;
            it++;
        }
        while (im < n_metrics && !full && cm < MAX_METRICS_PER_BATCH &&
               cm + cp + ct < MAX_ENTITIES_PER_BATCH) {
            size_t sz = 80 + json_len(metrics[im].key);
            if (bytes + sz > MAX_BATCH_BYTES && cm + cp + ct > 0) {
                full = 1;
                break;
            }
            cJSON_AddItemToArray(ms, metric_json(&metrics[im]));
            bytes += sz;
            cm++;
            im++;
        }
        if (cm + cp + ct == 0) { /* only skipped duplicates were left */
            cJSON_Delete(body);
            break;
        }
        /* Resending is harmless: the server keeps one copy of a metric point with the same key,
         * value, timestamp and step; params repeat with the same value; tags overwrite. */
        s = kl_mlflow_rpc(c, "POST", "/api/2.0/mlflow/runs/log-batch", body, KL_HTTP_IDEMPOTENT,
                          NULL);
        if (s == KL_OK) sent++;
    }
    free(skip);
    if (s)
        return kl_preferr(s, "log-batch to run %s (%d requests sent before this one)", run_id,
                          sent);
    return KL_OK;
}

/* ---- dataset inputs ------------------------------------------------------------------------ */

/* MLflow keeps at most 36 characters of a digest: "sha256:<hex>" becomes the first 36 hex
 * digits, still unique enough to tell versions of a dataset apart. */
static void short_digest(char out[MAX_DATASET_DIGEST + 1], const char *digest) {
    const char *d = digest ? digest : "";
    if (strlen(d) > MAX_DATASET_DIGEST && strchr(d, ':')) d = strchr(d, ':') + 1;
    snprintf(out, MAX_DATASET_DIGEST + 1, "%s", d);
}

kl_status kl_mlflow_log_inputs(kl_mlflow *c, const char *run_id, const kl_mlflow_dataset *ds,
                               int n) {
    for (int start = 0; start < n; start += MAX_DATASETS_PER_BATCH) {
        int end = start + MAX_DATASETS_PER_BATCH < n ? start + MAX_DATASETS_PER_BATCH : n;
        cJSON *body = cJSON_CreateObject();
        cJSON_AddStringToObject(body, "run_id", run_id);
        cJSON *arr = cJSON_AddArrayToObject(body, "datasets");
        for (int i = start; i < end; i++) {
            const kl_mlflow_dataset *d = &ds[i];
            cJSON *in = cJSON_CreateObject();
            cJSON *tags = cJSON_AddArrayToObject(in, "tags");
            if (d->context && *d->context)
                kl_mlflow_add_kvs(tags, &(kl_kv){"mlflow.data.context", d->context}, 1,
                                  MAX_INPUT_TAG_VALUE);
            cJSON *o = cJSON_AddObjectToObject(in, "dataset");
            char *owned, digest[MAX_DATASET_DIGEST + 1];
            cJSON_AddStringToObject(
                o, "name", kl_mlflow_clip(d->name ? d->name : "dataset", MAX_DATASET_NAME, &owned));
            free(owned);
            short_digest(digest, d->digest);
            cJSON_AddStringToObject(o, "digest", digest);
            cJSON_AddStringToObject(o, "source_type", d->source_type ? d->source_type : "local");
            cJSON_AddStringToObject(o, "source", d->source ? d->source : "{}");
            if (d->schema) cJSON_AddStringToObject(o, "schema", d->schema);
            if (d->profile) cJSON_AddStringToObject(o, "profile", d->profile);
            cJSON_AddItemToArray(arr, in);
        }
        /* The server keeps one copy of a dataset input logged twice: safe to resend. */
        kl_status s = kl_mlflow_rpc(c, "POST", "/api/2.0/mlflow/runs/log-inputs", body,
                                    KL_HTTP_IDEMPOTENT, NULL);
        if (s) return kl_preferr(s, "log-inputs to run %s", run_id);
    }
    return KL_OK;
}

/* ---- reading a run ------------------------------------------------------------------------- */

static kl_kv *read_kvs(const cJSON *arr, int *n) {
    int count = cJSON_GetArraySize(arr);
    kl_kv *kv = calloc((size_t)(count ? count : 1), sizeof *kv);
    *n = 0;
    if (!kv) return NULL;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        const char *k = cJSON_GetStringValue(cJSON_GetObjectItem(e, "key"));
        const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(e, "value"));
        if (k) kv[(*n)++] = (kl_kv){k, v ? v : ""};
    }
    return kv;
}

static double read_value(const cJSON *v) {
    if (cJSON_IsNumber(v)) return v->valuedouble;
    const char *s = cJSON_GetStringValue(v);
    if (s && !strcmp(s, "Infinity")) return INFINITY;
    if (s && !strcmp(s, "-Infinity")) return -INFINITY;
    return NAN;
}

kl_status kl_mlflow_get_run(kl_mlflow *c, const char *run_id, kl_mlflow_run_info *out) {
    memset(out, 0, sizeof *out);
    char path[512] = "/api/2.0/mlflow/runs/get?run_id=";
    if (kl_http_escape(path, sizeof path, run_id, 0))
        return kl_seterr(KL_EINVAL, "run id too long");
    cJSON *r;
    kl_status s = kl_mlflow_rpc(c, "GET", path, NULL, 0, &r);
    if (s) return kl_preferr(s, "get run %s", run_id);
    const cJSON *run = cJSON_GetObjectItem(r, "run");
    const cJSON *info = cJSON_GetObjectItem(run, "info");
    const cJSON *data = cJSON_GetObjectItem(run, "data");
    out->mem = r;
    kl_mlflow_copy_str(out->run_id, sizeof out->run_id, info, "run_id");
    kl_mlflow_copy_str(out->experiment_id, sizeof out->experiment_id, info, "experiment_id");
    kl_mlflow_copy_str(out->run_name, sizeof out->run_name, info, "run_name");
    kl_mlflow_copy_str(out->status, sizeof out->status, info, "status");
    kl_mlflow_copy_str(out->artifact_uri, sizeof out->artifact_uri, info, "artifact_uri");
    out->tags = read_kvs(cJSON_GetObjectItem(data, "tags"), &out->n_tags);
    out->params = read_kvs(cJSON_GetObjectItem(data, "params"), &out->n_params);
    const cJSON *ms = cJSON_GetObjectItem(data, "metrics");
    int nm = cJSON_GetArraySize(ms);
    out->metrics = calloc((size_t)(nm ? nm : 1), sizeof *out->metrics);
    const cJSON *outs = cJSON_GetObjectItem(cJSON_GetObjectItem(run, "outputs"), "model_outputs");
    int no = cJSON_GetArraySize(outs);
    out->model_ids = calloc((size_t)(no ? no : 1), sizeof *out->model_ids);
    if (!out->tags || !out->params || !out->metrics || !out->model_ids) {
        kl_mlflow_run_info_free(out);
        return kl_seterr(KL_ENOMEM, "reading run %s", run_id);
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, ms) {
        const char *k = cJSON_GetStringValue(cJSON_GetObjectItem(e, "key"));
        if (!k) continue;
        out->metrics[out->n_metrics++] = (kl_metric){
            .key = k,
            .value = read_value(cJSON_GetObjectItem(e, "value")),
            .timestamp_ms = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(e, "timestamp")),
            .step = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(e, "step")),
        };
    }
    cJSON_ArrayForEach(e, outs) {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(e, "model_id"));
        if (id) out->model_ids[out->n_models++] = id;
    }
    if (!out->run_id[0]) {
        kl_mlflow_run_info_free(out);
        return kl_seterr(KL_EFORMAT, "get run %s: the answer has no run", run_id);
    }
    return KL_OK;
}

void kl_mlflow_run_info_free(kl_mlflow_run_info *r) {
    if (!r) return;
    free(r->tags);
    free(r->params);
    free(r->metrics);
    free(r->model_ids);
    cJSON_Delete(r->mem);
    memset(r, 0, sizeof *r);
}

const char *kl_mlflow_run_tag(const kl_mlflow_run_info *r, const char *key) {
    for (int i = 0; i < r->n_tags; i++)
        if (!strcmp(r->tags[i].key, key)) return r->tags[i].value;
    return NULL;
}

double kl_mlflow_run_metric(const kl_mlflow_run_info *r, const char *key) {
    for (int i = 0; i < r->n_metrics; i++)
        if (!strcmp(r->metrics[i].key, key)) return r->metrics[i].value;
    return NAN;
}
