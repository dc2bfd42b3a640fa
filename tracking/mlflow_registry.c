/* mlflow_registry.c — MLflow 3 logged models and the model registry (versions, aliases). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tracking/mlflow_internal.h"

#define MAX_PARAMS_PER_REQUEST 100 /* what MLflow's Python client sends per request */
#define MAX_REGISTRY_TAG_VALUE 5000

/* ---- logged models ------------------------------------------------------------------------- */

static void read_logged_model(const cJSON *r, kl_mlflow_logged_model *out) {
    const cJSON *info = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "model"), "info");
    kl_mlflow_copy_str(out->model_id, sizeof out->model_id, info, "model_id");
    kl_mlflow_copy_str(out->artifact_uri, sizeof out->artifact_uri, info, "artifact_uri");
}

static kl_status model_params(kl_mlflow *c, const char *model_id, const kl_kv *params, int n) {
    char path[256];
    snprintf(path, sizeof path, "/api/2.0/mlflow/logged-models/%s/params", model_id);
    for (int start = 0; start < n; start += MAX_PARAMS_PER_REQUEST) {
        int m = n - start < MAX_PARAMS_PER_REQUEST ? n - start : MAX_PARAMS_PER_REQUEST;
        cJSON *body = cJSON_CreateObject();
        cJSON_AddStringToObject(body, "model_id", model_id);
        kl_mlflow_add_kvs(cJSON_AddArrayToObject(body, "params"), params + start, m, 6000);
        KL_TRY(kl_mlflow_rpc(c, "POST", path, body, KL_HTTP_IDEMPOTENT, NULL));
    }
    return KL_OK;
}

kl_status kl_mlflow_create_logged_model(kl_mlflow *c, const char *experiment_id, const char *run_id,
                                        const char *name, int64_t step, const kl_kv *params,
                                        int n_params, kl_mlflow_logged_model *out) {
    memset(out, 0, sizeof *out);
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "experiment_id", experiment_id);
    cJSON_AddStringToObject(body, "name", name && *name ? name : "model");
    if (run_id && *run_id) cJSON_AddStringToObject(body, "source_run_id", run_id);
    int first = n_params < MAX_PARAMS_PER_REQUEST ? n_params : MAX_PARAMS_PER_REQUEST;
    kl_mlflow_add_kvs(cJSON_AddArrayToObject(body, "params"), params, first, 6000);
    cJSON *r;
    /* Not idempotent: a resend after a lost answer would create a second model. */
    kl_status s = kl_mlflow_rpc(c, "POST", "/api/2.0/mlflow/logged-models", body, 0, &r);
    if (s) return kl_preferr(s, "create logged model \"%s\"", name ? name : "model");
    read_logged_model(r, out);
    cJSON_Delete(r);
    if (!out->model_id[0] || !out->artifact_uri[0])
        return kl_seterr(KL_EFORMAT, "create logged model: no model_id/artifact_uri in the answer");
    s = model_params(c, out->model_id, params + first, n_params - first);
    if (!s && run_id && *run_id) {
        /* The run's output link: the run page lists the model, the model page its run. */
        body = cJSON_CreateObject();
        cJSON_AddStringToObject(body, "run_id", run_id);
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "model_id", out->model_id);
        cJSON_AddNumberToObject(m, "step", (double)step);
        cJSON_AddItemToArray(cJSON_AddArrayToObject(body, "models"), m);
        s = kl_mlflow_rpc(c, "POST", "/api/2.0/mlflow/runs/outputs", body, KL_HTTP_IDEMPOTENT,
                          NULL);
    }
    return s ? kl_preferr(s, "logged model %s", out->model_id) : KL_OK;
}

kl_status kl_mlflow_finalize_logged_model(kl_mlflow *c, const char *model_id, int ready) {
    char path[256];
    snprintf(path, sizeof path, "/api/2.0/mlflow/logged-models/%s", model_id);
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "model_id", model_id);
    cJSON_AddStringToObject(body, "status",
                            ready ? "LOGGED_MODEL_READY" : "LOGGED_MODEL_UPLOAD_FAILED");
    kl_status s = kl_mlflow_rpc(c, "PATCH", path, body, KL_HTTP_IDEMPOTENT, NULL);
    return s ? kl_preferr(s, "finalize logged model %s", model_id) : KL_OK;
}

kl_status kl_mlflow_get_logged_model(kl_mlflow *c, const char *model_id,
                                     kl_mlflow_logged_model *out) {
    memset(out, 0, sizeof *out);
    char path[256] = "/api/2.0/mlflow/logged-models/";
    if (kl_http_escape(path, sizeof path, model_id, 0))
        return kl_seterr(KL_EINVAL, "model id too long");
    cJSON *r;
    kl_status s = kl_mlflow_rpc(c, "GET", path, NULL, 0, &r);
    if (s) return kl_preferr(s, "get logged model %s", model_id);
    read_logged_model(r, out);
    cJSON_Delete(r);
    if (!out->artifact_uri[0])
        return kl_seterr(KL_EFORMAT, "logged model %s: no artifact_uri in the answer", model_id);
    return KL_OK;
}

/* ---- registered models and versions -------------------------------------------------------- */

kl_status kl_mlflow_registered_model(kl_mlflow *c, const char *name, const char *description) {
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "name", name);
    if (description && *description) cJSON_AddStringToObject(body, "description", description);
    kl_status s = kl_mlflow_rpc(c, "POST", "/api/2.0/mlflow/registered-models/create", body,
                                KL_HTTP_IDEMPOTENT, NULL);
    if (s && !strcmp(kl_mlflow_last_error_code(c), "RESOURCE_ALREADY_EXISTS")) return KL_OK;
    return s ? kl_preferr(s, "create registered model \"%s\"", name) : KL_OK;
}

kl_status kl_mlflow_create_model_version(kl_mlflow *c, const char *name, const char *source,
                                         const char *run_id, const char *model_id,
                                         const kl_kv *tags, int n_tags, char version[32]) {
    version[0] = '\0';
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "name", name);
    cJSON_AddStringToObject(body, "source", source);
    if (run_id && *run_id) cJSON_AddStringToObject(body, "run_id", run_id);
    if (model_id && *model_id) cJSON_AddStringToObject(body, "model_id", model_id);
    kl_mlflow_add_kvs(cJSON_AddArrayToObject(body, "tags"), tags, n_tags, MAX_REGISTRY_TAG_VALUE);
    cJSON *r;
    /* Not idempotent: a resend after a lost answer would create another version. */
    kl_status s = kl_mlflow_rpc(c, "POST", "/api/2.0/mlflow/model-versions/create", body, 0, &r);
    if (s) return kl_preferr(s, "create a version of \"%s\" from %s", name, source);
    kl_mlflow_copy_str(version, 32, cJSON_GetObjectItem(r, "model_version"), "version");
    cJSON_Delete(r);
    if (!version[0]) return kl_seterr(KL_EFORMAT, "create model version: no version in the answer");
    return KL_OK;
}

kl_status kl_mlflow_set_alias(kl_mlflow *c, const char *name, const char *alias,
                              const char *version) {
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "name", name);
    cJSON_AddStringToObject(body, "alias", alias);
    cJSON_AddStringToObject(body, "version", version);
    kl_status s = kl_mlflow_rpc(c, "POST", "/api/2.0/mlflow/registered-models/alias", body,
                                KL_HTTP_IDEMPOTENT, NULL);
    return s ? kl_preferr(s, "set alias %s@%s -> version %s", name, alias, version) : KL_OK;
}

kl_status kl_mlflow_set_version_tag(kl_mlflow *c, const char *name, const char *version,
                                    const char *key, const char *value) {
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "name", name);
    cJSON_AddStringToObject(body, "version", version);
    cJSON_AddStringToObject(body, "key", key);
    cJSON_AddStringToObject(body, "value", value);
    kl_status s = kl_mlflow_rpc(c, "POST", "/api/2.0/mlflow/model-versions/set-tag", body,
                                KL_HTTP_IDEMPOTENT, NULL);
    return s ? kl_preferr(s, "tag %s version %s with %s", name, version, key) : KL_OK;
}

/* path = base + "?name=<name>&<key>=<value>", the values percent-encoded. */
static kl_status name_query(char *path, size_t cap, const char *base, const char *name,
                            const char *key, const char *value) {
    int n = snprintf(path, cap, "%s?name=", base);
    int bad = n < 0 || (size_t)n >= cap || kl_http_escape(path, cap, name, 0);
    if (!bad) {
        size_t len = strlen(path);
        n = snprintf(path + len, cap - len, "&%s=", key);
        bad = n < 0 || (size_t)n >= cap - len || kl_http_escape(path, cap, value, 0);
    }
    return bad ? kl_seterr(KL_EINVAL, "model name \"%.100s\" too long", name) : KL_OK;
}

kl_status kl_mlflow_get_alias(kl_mlflow *c, const char *name, const char *alias, char version[32]) {
    version[0] = '\0';
    char path[1024];
    KL_TRY(name_query(path, sizeof path, "/api/2.0/mlflow/registered-models/alias", name, "alias",
                      alias));
    cJSON *r;
    kl_status s = kl_mlflow_rpc(c, "GET", path, NULL, 0, &r);
    if (s) {
        /* MLflow answers a missing alias with 400 INVALID_PARAMETER_VALUE "... not found". */
        if (s == KL_EINVAL && strstr(kl_errmsg(), "not found")) s = KL_ENOTFOUND;
        return kl_preferr(s, "get alias %s@%s", name, alias);
    }
    kl_mlflow_copy_str(version, 32, cJSON_GetObjectItem(r, "model_version"), "version");
    cJSON_Delete(r);
    if (!version[0]) return kl_seterr(KL_EFORMAT, "get alias %s@%s: no version", name, alias);
    return KL_OK;
}

kl_status kl_mlflow_model_version_uri(kl_mlflow *c, const char *name, const char *version,
                                      char uri[512]) {
    uri[0] = '\0';
    char path[1024];
    KL_TRY(name_query(path, sizeof path, "/api/2.0/mlflow/model-versions/get-download-uri", name,
                      "version", version));
    cJSON *r;
    kl_status s = kl_mlflow_rpc(c, "GET", path, NULL, 0, &r);
    if (s) return kl_preferr(s, "model %s version %s", name, version);
    kl_mlflow_copy_str(uri, 512, r, "artifact_uri");
    cJSON_Delete(r);
    if (!uri[0])
        return kl_seterr(KL_EFORMAT, "model %s version %s: no artifact_uri", name, version);
    return KL_OK;
}

static int is_logged_model_id(const char *s, size_t n) {
    if (n < 3 || strncmp(s, "m-", 2) != 0) return 0;
    for (size_t i = 2; i < n; i++)
        if (!isxdigit((unsigned char)s[i])) return 0;
    return 1;
}

kl_status kl_mlflow_models_uri(kl_mlflow *c, const char *uri, char artifact_uri[512],
                               char *version) {
    artifact_uri[0] = '\0';
    if (version) version[0] = '\0';
    if (strncmp(uri, "models:/", 8) != 0)
        return kl_seterr(KL_EINVAL, "\"%s\" is not a models:/ URI", uri);
    const char *p = uri + 8;
    while (*p == '/')
        p++;
    size_t len = strlen(p);
    while (len > 0 && p[len - 1] == '/')
        len--;
    char name[512], ver[32];
    const char *at = memchr(p, '@', len);
    const char *slash = NULL;
    for (const char *q = p; q < p + len; q++)
        if (*q == '/') slash = q;
    if (at) {
        size_t nl = (size_t)(at - p), al = len - nl - 1;
        char alias[256];
        if (nl == 0 || nl >= sizeof name || al == 0 || al >= sizeof alias)
            return kl_seterr(KL_EINVAL, "\"%s\": expected models:/NAME@ALIAS", uri);
        memcpy(name, p, nl);
        name[nl] = '\0';
        memcpy(alias, at + 1, al);
        alias[al] = '\0';
        KL_TRY(kl_mlflow_get_alias(c, name, alias, ver));
    } else if (slash) {
        size_t nl = (size_t)(slash - p), vl = len - nl - 1;
        if (nl == 0 || nl >= sizeof name || vl == 0 || vl >= sizeof ver)
            return kl_seterr(KL_EINVAL, "\"%s\": expected models:/NAME/VERSION", uri);
        memcpy(name, p, nl);
        name[nl] = '\0';
        memcpy(ver, slash + 1, vl);
        ver[vl] = '\0';
        for (size_t i = 0; i < vl; i++)
            if (!isdigit((unsigned char)ver[i]))
                return kl_seterr(KL_EINVAL,
                                 "\"%s\": the version must be a number (or use models:/%s@ALIAS)",
                                 uri, name);
    } else if (is_logged_model_id(p, len)) {
        kl_mlflow_logged_model lm;
        char id[80];
        snprintf(id, sizeof id, "%.*s", (int)len, p);
        KL_TRY(kl_mlflow_get_logged_model(c, id, &lm));
        snprintf(artifact_uri, 512, "%s", lm.artifact_uri);
        return KL_OK;
    } else {
        return kl_seterr(KL_EINVAL,
                         "\"%s\": expected models:/NAME/VERSION, models:/NAME@ALIAS or "
                         "models:/<logged model id>",
                         uri);
    }
    KL_TRY(kl_mlflow_model_version_uri(c, name, ver, artifact_uri));
    if (version) snprintf(version, 32, "%s", ver);
    return KL_OK;
}
