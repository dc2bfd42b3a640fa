/* http.h — the HTTP layer under the MLflow client (libcurl).
 *
 * One easy handle per kl_http, so consecutive requests reuse the connection. Every request has a
 * time limit: JSON calls a total timeout, streaming transfers a stall limit (no byte moved for
 * timeout_s seconds) plus the connect timeout. Failures that may pass (no connection, 408, 429,
 * 5xx) are retried with exponential backoff and jitter, waiting at least what Retry-After asks.
 * A failure after the request was sent (timeout, connection dropped mid-answer) is retried only
 * for requests marked KL_HTTP_IDEMPOTENT, since the server may already have acted on it.
 *
 * Error messages name the server's answer and the request:
 *   MLflow 400 INVALID_PARAMETER_VALUE: <message> (POST /api/2.0/mlflow/runs/log-batch)
 * A kl_http is not thread-safe: one per thread. */
#ifndef KL_HTTP_H
#define KL_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"

typedef struct kl_http kl_http;

/* Connection settings; kl_http_open copies every string. */
typedef struct {
    const char *base;        /* "http(s)://host:port[/prefix]", no credentials, no trailing '/' */
    const char *username;    /* basic auth user (used with password), or NULL */
    const char *password;    /* basic auth password, or NULL */
    const char *token;       /* bearer token (used when there is no username/password), or NULL */
    const char *ca_path;     /* CA bundle that signs the server's certificate, or NULL */
    const char *client_cert; /* client certificate (PEM, key included) for mutual TLS, or NULL */
    int insecure;            /* 1: do not verify the server's certificate */
    double timeout_s;        /* per request (streaming transfers: longest stall) */
    int max_retries;         /* retries after the first try */
    double backoff_base_s;   /* first backoff, doubled each retry, +-50% jitter */
    double backoff_max_s;    /* cap on one computed backoff */
    const char *peer;        /* what the server is, for messages (NULL: "MLflow") */
} kl_http_opts;

enum {
    KL_HTTP_IDEMPOTENT = 1, /* resending after a mid-request failure cannot do harm */
};

/* Creates a client (no connection is made until the first request); kl_http_close frees it. */
kl_status kl_http_open(const kl_http_opts *opts, kl_http **out);
void kl_http_close(kl_http *h);

/* Sends method ("GET", "POST", "PATCH", "DELETE") to base + path (path starts with '/' and may
 * carry a query string), with json_body (Content-Type: application/json) or none. On a 2xx
 * answer *resp (if not NULL) receives the body, malloc'd and NUL-terminated; the caller frees
 * it. Any other outcome is an error with a message (KL_EINVAL for 4xx, KL_ENOTFOUND for 404,
 * KL_EUNSUPPORTED for 501, KL_EIO for the rest). */
kl_status kl_http_call(kl_http *h, const char *method, const char *path, const char *json_body,
                       int flags, char **resp);

/* PUTs local_file to base + path, streamed from disk (Content-Length set). Idempotent. */
kl_status kl_http_upload(kl_http *h, const char *path, const char *local_file);

/* GETs base + path into local_file, streamed to "<local_file>.part" and renamed when complete. */
kl_status kl_http_download(kl_http *h, const char *path, const char *local_file);

/* HTTP status of the last request's last try (0 when no answer came). */
int kl_http_status(const kl_http *h);

/* MLflow's error_code from the last answer ("RESOURCE_ALREADY_EXISTS", ...), or "". */
const char *kl_http_error_code(const kl_http *h);

/* The base URI. */
const char *kl_http_base(const kl_http *h);

/* Appends s to out (cap bytes, always NUL-terminated) percent-encoded for a URL: everything
 * but unreserved characters, and '/' too unless keep_slash. Returns 0, or -1 if it did not fit. */
int kl_http_escape(char *out, size_t cap, const char *s, int keep_slash);

#endif
