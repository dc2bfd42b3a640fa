/* mlflow.c — opening a client from options and MLflow's environment variables; the JSON RPC
 * call the other mlflow_*.c files build on. */
#include "tracking/mlflow_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int env_true(const char *name) {
    const char *v = getenv(name);
    return v && (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes"));
}

static const char *env_str(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static double env_num(const char *name, double fallback) {
    const char *v = env_str(name);
    if (!v) return fallback;
    char *end;
    double d = strtod(v, &end);
    return end != v && *end == '\0' ? d : fallback;
}

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes n bytes of s into out (cap bytes). */
static void unescape(char *out, size_t cap, const char *s, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            out[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
}

/* Splits "scheme://[user[:pass]@]host[:port][/prefix]" into the URI without credentials, the
 * authority, and any credentials it carried. */
static kl_status parse_uri(const char *uri, kl_mlflow *c, char *user, char *pass, size_t cap) {
    user[0] = pass[0] = '\0';
    const char *sep = strstr(uri, "://");
    if (!sep || (strncasecmp(uri, "http://", 7) && strncasecmp(uri, "https://", 8)))
        return kl_seterr(KL_EUNSUPPORTED,
                         "tracking URI \"%s\": kiln talks to an MLflow tracking server over "
                         "REST; use http(s)://host:port",
                         uri);
    const char *auth = sep + 3;
    size_t alen = strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *p = auth; p < auth + alen; p++)
        if (*p == '@') at = p;
    const char *host = at ? at + 1 : auth;
    if (at) {
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        size_t ulen = colon ? (size_t)(colon - auth) : (size_t)(at - auth);
        unescape(user, cap, auth, ulen);
        if (colon) unescape(pass, cap, colon + 1, (size_t)(at - colon - 1));
    }
    size_t hlen = (size_t)(auth + alen - host);
    if (hlen == 0 || hlen >= sizeof c->authority)
        return kl_seterr(KL_EINVAL, "tracking URI \"%s\" has no host", uri);
    memcpy(c->authority, host, hlen);
    c->authority[hlen] = '\0';
    const char *rest = auth + alen;
    size_t rlen = strcspn(rest, "?#");
    while (rlen > 0 && rest[rlen - 1] == '/')
        rlen--;
    int n = snprintf(c->uri, sizeof c->uri, "%.*s%s%.*s", (int)(sep + 3 - uri), uri, c->authority,
                     (int)rlen, rest);
    if (n < 0 || (size_t)n >= sizeof c->uri)
        return kl_seterr(KL_EINVAL, "tracking URI too long (%zu bytes)", strlen(uri));
    return KL_OK;
}

kl_status kl_mlflow_open(const kl_mlflow_opts *opts, kl_mlflow **out) {
    *out = NULL;
    kl_mlflow_opts o;
    memset(&o, 0, sizeof o);
    if (opts) o = *opts;
    const char *uri = o.uri && *o.uri ? o.uri : env_str("MLFLOW_TRACKING_URI");
    if (!uri)
        return kl_seterr(KL_ENOTFOUND, "no MLflow tracking URI (set MLFLOW_TRACKING_URI, e.g. "
                                       "http://127.0.0.1:5000)");
    kl_mlflow *c = calloc(1, sizeof *c);
    if (!c) return kl_seterr(KL_ENOMEM, "allocating an MLflow client");
    char user[256], pass[256];
    kl_status s = parse_uri(uri, c, user, pass, sizeof user);
    if (s) {
        free(c);
        return s;
    }
    const char *ca = env_str("MLFLOW_TRACKING_SERVER_CERT_PATH");
    int insecure = env_true("MLFLOW_TRACKING_INSECURE_TLS");
    if (ca && insecure) {
        free(c);
        return kl_seterr(KL_EINVAL, "MLFLOW_TRACKING_INSECURE_TLS and "
                                    "MLFLOW_TRACKING_SERVER_CERT_PATH are both set: choose one");
    }
    /* The environment's credentials win over ones written into the URI; username/password
     * (basic) before the token (bearer), the order MLflow's Python client checks them in. */
    const char *env_user = env_str("MLFLOW_TRACKING_USERNAME");
    const char *env_pass = env_str("MLFLOW_TRACKING_PASSWORD");
    kl_http_opts h = {
        .base = c->uri,
        .username = env_user && env_pass ? env_user : (user[0] ? user : NULL),
        .password = env_user && env_pass ? env_pass : (user[0] ? pass : NULL),
        .token = env_str("MLFLOW_TRACKING_TOKEN"),
        .ca_path = ca,
        .client_cert = env_str("MLFLOW_TRACKING_CLIENT_CERT_PATH"),
        .insecure = insecure,
        .timeout_s = o.timeout_s > 0 ? o.timeout_s : env_num("MLFLOW_HTTP_REQUEST_TIMEOUT", 30),
        .max_retries = o.max_retries > 0   ? o.max_retries
                       : o.max_retries < 0 ? 0
                                           : (int)env_num("MLFLOW_HTTP_REQUEST_MAX_RETRIES", 5),
        .backoff_base_s = o.backoff_base_s > 0 ? o.backoff_base_s
                                               : env_num("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", 0.5),
        .backoff_max_s = o.backoff_max_s > 0 ? o.backoff_max_s : 30,
    };
    s = kl_http_open(&h, &c->http);
    memset(pass, 0, sizeof pass);
    if (s) {
        free(c);
        return s;
    }
    *out = c;
    return KL_OK;
}

void kl_mlflow_close(kl_mlflow *c) {
    if (!c) return;
    kl_http_close(c->http);
    free(c);
}

const char *kl_mlflow_uri(const kl_mlflow *c) {
    return c->uri;
}

int kl_mlflow_last_http_status(const kl_mlflow *c) {
    return c ? kl_http_status(c->http) : 0;
}

const char *kl_mlflow_last_error_code(const kl_mlflow *c) {
    return c ? kl_http_error_code(c->http) : "";
}

kl_status kl_mlflow_request(kl_mlflow *c, const char *method, const char *path,
                            const char *json_body, char **response) {
    return kl_http_call(c->http, method, path, json_body, 0, response);
}

kl_status kl_mlflow_rpc(kl_mlflow *c, const char *method, const char *path, cJSON *body, int flags,
                        cJSON **out) {
    if (out) *out = NULL;
    char *text = NULL;
    if (body) {
        text = cJSON_PrintUnformatted(body);
        cJSON_Delete(body);
        if (!text) return kl_seterr(KL_ENOMEM, "encoding a request to %s", path);
    }
    char *resp = NULL;
    kl_status s = kl_http_call(c->http, method, path, text, flags, out ? &resp : NULL);
    free(text);
    if (s || !out) return s;
    *out = cJSON_Parse(resp);
    if (!*out) {
        s = kl_seterr(KL_EFORMAT, "MLflow answered %s %s with something that is not JSON: %.200s",
                      method, path, resp);
    }
    free(resp);
    return s;
}

const char *kl_mlflow_clip(const char *s, size_t max, char **owned) {
    *owned = NULL;
    size_t n = strlen(s);
    if (n <= max) return s;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--; /* do not cut a UTF-8 sequence */
    *owned = strndup(s, max);
    return *owned ? *owned : "";
}

void kl_mlflow_add_kvs(cJSON *arr, const kl_kv *kv, int n, size_t max_value) {
    for (int i = 0; i < n; i++) {
        char *owned;
        const char *v = kl_mlflow_clip(kv[i].value ? kv[i].value : "", max_value, &owned);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "key", kv[i].key ? kv[i].key : "");
        cJSON_AddStringToObject(o, "value", v);
        cJSON_AddItemToArray(arr, o);
        free(owned);
    }
}

void kl_mlflow_copy_str(char *out, size_t cap, const cJSON *obj, const char *name) {
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(obj, name));
    snprintf(out, cap, "%s", v ? v : "");
}
