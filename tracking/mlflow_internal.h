/* mlflow_internal.h — what the mlflow_*.c files share: the client struct and the JSON RPC call.
 * Not for use outside tracking/. */
#ifndef KL_MLFLOW_INTERNAL_H
#define KL_MLFLOW_INTERNAL_H

#include <cjson/cJSON.h>

#include "tracking/http.h"
#include "tracking/mlflow.h"

struct kl_mlflow {
    kl_http *http;       /* the connection (one libcurl handle) */
    char uri[1024];      /* tracking URI without credentials or trailing '/' */
    char authority[256]; /* its host[:port], to recognise mlflow-artifacts://host:port/ URIs */
};

/* Calls one of MLflow's JSON RPCs. body is consumed (freed here; NULL: no body). With out, the
 * answer is parsed into *out (the caller frees it with cJSON_Delete); a malformed answer is
 * KL_EFORMAT. flags: KL_HTTP_IDEMPOTENT when resending cannot create a duplicate. */
kl_status kl_mlflow_rpc(kl_mlflow *c, const char *method, const char *path, cJSON *body, int flags,
                        cJSON **out);

/* A copy of s no longer than max bytes, cut on a UTF-8 character boundary, for MLflow's value
 * limits. Returns s itself when it fits; otherwise a malloc'd copy stored in *owned (free it). */
const char *kl_mlflow_clip(const char *s, size_t max, char **owned);

/* Adds {"key","value"} objects to arr, values clipped to max_value bytes. */
void kl_mlflow_add_kvs(cJSON *arr, const kl_kv *kv, int n, size_t max_value);

/* Copies the string at obj.name into out (cap bytes); "" when absent. */
void kl_mlflow_copy_str(char *out, size_t cap, const cJSON *obj, const char *name);

#endif
