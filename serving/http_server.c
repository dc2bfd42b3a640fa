/* http_server.c — REST inference, /metrics, /alerts and /dashboard on libmicrohttpd (0.9.75),
 * with suspend/resume for requests that wait on the model manager. See http_server.h. */
#include "serving/http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h> /* MHD_start_daemon, the access handler, suspend/resume */
#include <zlib.h>       /* inflate, for Content-Encoding: gzip / deflate request bodies */

#include "serving/dashboard.h"   /* kl_dashboard_html, the page of GET /dashboard */
#include "serving/oip_json.h"    /* the REST bodies */
#include "serving/oip_service.h" /* kl_oip_model_config_from_info */

#ifndef KILN_VERSION
#define KILN_VERSION "0"
#endif

/* How long kl_http_server_stop waits for requests that are still uploading or being answered
 * (requests queued in the model manager are always waited for: their callback will come). */
#define KL_HTTP_DRAIN_SECONDS 10.0

struct kl_http_server {
    struct MHD_Daemon *d;    /* the daemon and its thread pool */
    kl_model_manager *m;     /* the models (borrowed) */
    kl_prediction_log *plog; /* feedback target (borrowed), or NULL */
    size_t max_body;         /* largest body accepted, bytes */
    atomic_int stopping;     /* ready answers 503 */
    atomic_int closing;      /* kl_http_server_stop began: new requests get 503 */
    atomic_long active;      /* requests with a context (created, not yet completed) */
    atomic_long pending;     /* requests whose answer the manager or a job thread still owes */
    pthread_mutex_t mu;      /* orders suspend against resume (see finish) */
    MHD_socket listen_fd;    /* the listening socket returned by MHD_quiesce_daemon */
    kl_status (*alerts_json)(void *ctx, char **json); /* GET /alerts, or NULL (404) */
    void *alerts_ctx;                                 /* its context (borrowed) */
};

typedef enum { RQ_READING, RQ_WAITING, RQ_DONE } rq_state;
typedef enum { RQ_INFER, RQ_JOB } rq_kind;

/* One request: its body as it arrives, then what it waits for, then the answer's material. */
typedef struct {
    kl_http_server *s;        /* the server */
    struct MHD_Connection *c; /* its connection */
    char *body;               /* the body read so far (malloc'd) */
    size_t len, cap;          /* bytes used and allocated in body */
    size_t discarded;         /* bytes dropped once the body went over max_body */
    rq_state state;           /* guarded by s->mu once a callback may run */
    int suspended;            /* the connection is suspended, waiting for finish() */
    rq_kind kind;             /* what is waited for */
    kl_grpc_code code;        /* the outcome */
    char *message;            /* its message when not OK (malloc'd) */
    /* inference */
    kl_oip_json_format fmt;                  /* which outputs go back binary */
    kl_oip_model_sig sig;                    /* the signature the request was checked against */
    char *model_name, *id;                   /* echoed in the response (malloc'd) */
    int64_t batch;                           /* rows */
    int n_outputs;                           /* outputs to answer */
    kl_oip_output outputs[KL_OIP_N_OUTPUTS]; /* in this order */
    float *probs;                            /* batch x n_classes, copied from the result */
    int64_t *classes;                        /* batch, copied from the result */
    int64_t n_classes;                       /* of the version that ran */
    int has_classes;                         /* the result carried classes */
    char version[64];                        /* the version that ran */
    /* repository jobs */
    char *job_model; /* model to load or unload (malloc'd) */
    int job_load;    /* 1 load, 0 unload */
} rq;

kl_http_server_opts kl_http_server_defaults(void) {
    kl_http_server_opts o = {
        .host = "127.0.0.1", .port = 8000, .threads = 4, .max_body_bytes = (size_t)64 << 20};
    return o;
}

static void rq_free(rq *q) {
    if (!q) return;
    free(q->body);
    free(q->message);
    free(q->model_name);
    free(q->id);
    free(q->probs);
    free(q->classes);
    free(q->job_model);
    free(q);
}

/* --- answering ---------------------------------------------------------------------------- */

/* Queues a response that takes over data (malloc'd, or NULL for an empty body). */
static enum MHD_Result reply(rq *q, int status, char *data, size_t len, const char *ctype,
                             size_t json_len, const char *allow) {
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, data ? data : (void *)"", data ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(data);
        return MHD_NO;
    }
    if (ctype) MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (json_len < len) {
        char v[32];
        snprintf(v, sizeof v, "%zu", json_len);
        MHD_add_response_header(r, "Inference-Header-Content-Length", v);
    }
    if (allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    if (atomic_load(&q->s->closing))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(q->c, (unsigned int)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_body(rq *q, int status, kl_oip_json_body *b) {
    const char *ctype = b->json_len < b->len ? "application/octet-stream" : "application/json";
    enum MHD_Result r = reply(q, status, b->data, b->len, ctype, b->json_len, NULL);
    memset(b, 0, sizeof *b);
    return r;
}

/* {"error": message} with status; allow is the Allow header of a 405. */
static enum MHD_Result reply_error_allow(rq *q, int status, const char *message,
                                         const char *allow) {
    kl_oip_json_body b;
    if (kl_oip_json_encode_error(message, &b) != KL_OK) return MHD_NO;
    enum MHD_Result r = reply(q, status, b.data, b.len, "application/json", b.len, allow);
    return r;
}

static enum MHD_Result reply_error(rq *q, int status, const char *message) {
    return reply_error_allow(q, status, message, NULL);
}

/* The answer to a failed gRPC-style code, with kl_errmsg() as the message. */
static enum MHD_Result reply_code(rq *q, kl_grpc_code c) {
    return reply_error(q, kl_oip_json_http_status(c), kl_errmsg());
}

/* Sends an encoder's body, or a 500 when it failed. */
static enum MHD_Result reply_encoded(rq *q, kl_status st, kl_oip_json_body *b) {
    if (st != KL_OK) return reply_error(q, 500, kl_errmsg());
    return reply_body(q, 200, b);
}

/* --- waiting for the model manager --------------------------------------------------------- */

/* Marks q answered and resumes its connection if it was suspended. Holding s->mu across both
 * the handler's "not done yet → suspend" and this "done → resume" means a resume can never
 * come before its suspend. After the unlock q may be freed at any moment: touch it no more. */
static void finish(rq *q) {
    kl_http_server *s = q->s;
    pthread_mutex_lock(&s->mu);
    q->state = RQ_DONE;
    if (q->suspended) {
        q->suspended = 0;
        MHD_resume_connection(q->c);
    }
    pthread_mutex_unlock(&s->mu);
    /* Last touch of s: kl_http_server_stop frees it (and stops MHD) only once pending is 0. */
    atomic_fetch_sub(&s->pending, 1);
}

/* Called once per request by the model manager, on a batcher thread (or inline on failure):
 * copies what the response needs (the result's arrays live only during the call). */
static void infer_done(void *user, const kl_oip_request *req, const kl_infer_result *res) {
    rq *q = user;
    q->code = res->code;
    if (q->id && !*q->id && req->id && *req->id) { /* the server gave it an id: echo that */
        char *id = strdup(req->id);
        if (id) {
            free(q->id);
            q->id = id;
        }
    }
    if (res->code == KL_GRPC_OK && res->probs && res->batch == q->batch && res->n_classes > 0) {
        size_t np = (size_t)res->batch * (size_t)res->n_classes;
        if (res->n_classes != q->n_classes) { /* a version with other classes answered */
            free(q->probs);
            q->probs = malloc(np * sizeof *q->probs);
            q->n_classes = res->n_classes;
        }
        if (q->probs && q->classes) {
            memcpy(q->probs, res->probs, np * sizeof *q->probs);
            q->has_classes = res->classes != NULL;
            if (res->classes) memcpy(q->classes, res->classes, (size_t)res->batch * 8);
            snprintf(q->version, sizeof q->version, "%s", res->version ? res->version : "");
        } else {
            q->code = KL_GRPC_RESOURCE_EXHAUSTED;
            q->message = strdup("out of memory copying the result");
        }
    } else if (res->code == KL_GRPC_OK) {
        q->code = KL_GRPC_INTERNAL;
        q->message = strdup("the model manager answered a result that does not fit the request");
    } else {
        q->message = strdup(res->message ? res->message : kl_grpc_code_name(res->code));
    }
    finish(q);
}

/* The answer of a request whose wait is over. */
static enum MHD_Result reply_done(rq *q) {
    if (q->code != KL_GRPC_OK)
        return reply_error(q, kl_oip_json_http_status(q->code),
                           q->message ? q->message : kl_grpc_code_name(q->code));
    if (q->kind == RQ_JOB) return reply(q, 200, NULL, 0, NULL, 0, NULL);
    kl_oip_request view;
    memset(&view, 0, sizeof view);
    view.model_name = q->model_name;
    view.id = q->id;
    view.batch = q->batch;
    view.n_outputs = q->n_outputs;
    memcpy(view.outputs, q->outputs, sizeof view.outputs);
    kl_infer_result res;
    memset(&res, 0, sizeof res);
    res.version = q->version;
    res.probs = q->probs;
    res.classes = q->has_classes ? q->classes : NULL;
    res.batch = q->batch;
    res.n_classes = q->n_classes;
    kl_oip_json_body b;
    return reply_encoded(q, kl_oip_json_encode_infer(&view, &q->fmt, &res, &b), &b);
}

/* After handing q to a callback: answer now if it already finished (an immediate failure or a
 * fast batch), else suspend the connection until finish() resumes it. */
static enum MHD_Result wait_or_reply(rq *q) {
    kl_http_server *s = q->s;
    pthread_mutex_lock(&s->mu);
    if (q->state == RQ_DONE) {
        pthread_mutex_unlock(&s->mu);
        return reply_done(q);
    }
    q->suspended = 1;
    MHD_suspend_connection(q->c);
    pthread_mutex_unlock(&s->mu);
    return MHD_YES;
}

/* The resolver handed to the decoder: the manager's, remembering the signature so the result
 * buffers can be sized before the request is queued. */
static kl_grpc_code resolve_recording(void *ctx, const char *name, const char *version,
                                      kl_oip_model_sig *sig) {
    rq *q = ctx;
    kl_grpc_code c = kl_model_manager_resolve(q->s->m, name, version, sig);
    if (c == KL_GRPC_OK) q->sig = *sig;
    return c;
}

/* Inflates a gzip or zlib body in place of q->body; 0 with the status to answer otherwise. */
static int inflate_body(rq *q, int *status) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 32) != Z_OK) { /* 15 + 32: zlib or gzip, detected */
        *status = 500;
        return 0;
    }
    size_t cap = q->len * 4 + 1024, used = 0;
    if (cap > q->s->max_body + 1) cap = q->s->max_body + 1;
    char *out = malloc(cap);
    z.next_in = (Bytef *)q->body;
    z.avail_in = (uInt)q->len;
    int rc = Z_OK;
    while (out && rc == Z_OK) {
        if (used == cap) {
            if (cap > q->s->max_body) break;
            size_t ncap = cap * 2 > q->s->max_body + 1 ? q->s->max_body + 1 : cap * 2;
            char *n = realloc(out, ncap);
            if (!n) break;
            out = n;
            cap = ncap;
        }
        z.next_out = (Bytef *)out + used;
        z.avail_out = (uInt)(cap - used);
        rc = inflate(&z, Z_NO_FLUSH);
        used = cap - z.avail_out;
    }
    inflateEnd(&z);
    if (rc != Z_STREAM_END || !out) {
        free(out);
        *status = !out || rc == Z_MEM_ERROR ? 500 : used >= cap ? 413 : 400;
        return 0;
    }
    free(q->body);
    q->body = out;
    q->len = used;
    return 1;
}

static enum MHD_Result route_infer(rq *q, const char *name, const char *version) {
    kl_http_server *s = q->s;
    const char *enc = MHD_lookup_connection_value(q->c, MHD_HEADER_KIND, "Content-Encoding");
    if (enc && *enc && strcasecmp(enc, "identity") != 0) {
        if (strcasecmp(enc, "gzip") != 0 && strcasecmp(enc, "deflate") != 0)
            return reply_error(q, 415, "unsupported Content-Encoding (gzip, deflate, identity)");
        int status;
        if (!inflate_body(q, &status))
            return reply_error(q, status,
                               status == 413 ? "request body too large once decompressed"
                                             : "request body does not decompress");
    }
    const char *hl =
        MHD_lookup_connection_value(q->c, MHD_HEADER_KIND, "Inference-Header-Content-Length");
    kl_oip_request req;
    kl_grpc_code c = kl_oip_json_decode_infer(q->body, q->len, hl, name, version, resolve_recording,
                                              q, &req, &q->fmt);
    free(q->body);
    q->body = NULL;
    if (c != KL_GRPC_OK) return reply_code(q, c);
    q->kind = RQ_INFER;
    q->model_name = strdup(req.model_name);
    q->id = strdup(req.id);
    q->batch = req.batch;
    q->n_outputs = req.n_outputs;
    memcpy(q->outputs, req.outputs, sizeof q->outputs);
    q->n_classes = q->sig.n_classes > 0 ? q->sig.n_classes : 1;
    q->probs = malloc((size_t)q->batch * (size_t)q->n_classes * sizeof *q->probs);
    q->classes = malloc((size_t)q->batch * sizeof *q->classes);
    if (!q->model_name || !q->id || !q->probs || !q->classes) {
        kl_oip_request_free(&req);
        return reply_error(q, 500, "out of memory");
    }
    q->state = RQ_WAITING;
    atomic_fetch_add(&s->pending, 1);
    kl_model_manager_infer(s->m, &req, infer_done, q);
    kl_oip_request_free(&req); /* zeroed by the manager; frees nothing */
    return wait_or_reply(q);
}

/* A repository load or unload, off the MHD threads (a load reads a bundle: seconds). */
static void *job_main(void *arg) {
    rq *q = arg;
    kl_grpc_code c = q->job_load ? kl_model_manager_load(q->s->m, q->job_model)
                                 : kl_model_manager_unload(q->s->m, q->job_model);
    q->code = c;
    if (c != KL_GRPC_OK) q->message = strdup(kl_errmsg());
    finish(q);
    return NULL;
}

static enum MHD_Result route_job(rq *q, const char *name, int load) {
    kl_http_server *s = q->s;
    kl_grpc_code c = kl_oip_json_decode_repository_request(q->body, q->len, load);
    if (c != KL_GRPC_OK) return reply_code(q, c);
    q->kind = RQ_JOB;
    q->job_model = strdup(name);
    q->job_load = load;
    if (!q->job_model) return reply_error(q, 500, "out of memory");
    q->state = RQ_WAITING;
    atomic_fetch_add(&s->pending, 1);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, job_main, q) != 0) job_main(q);
    pthread_attr_destroy(&attr);
    return wait_or_reply(q);
}

/* --- the other routes ---------------------------------------------------------------------- */

static const char *const EXTENSIONS[] = {"binary_tensor_data", "model_configuration", "statistics",
                                         "model_repository", "schedule_policy"};

static enum MHD_Result route_model_get(rq *q, const char *name, const char *version,
                                       const char *what) {
    kl_model_info info;
    memset(&info, 0, sizeof info);
    kl_grpc_code c = kl_model_manager_info(q->s->m, name, version, &info);
    if (!strcmp(what, "ready")) {
        if (c != KL_GRPC_OK) return reply_code(q, c);
        kl_model_info_free(&info);
        int ready = kl_model_manager_ready(q->s->m, name, version);
        kl_oip_json_body b;
        kl_status st = kl_oip_json_encode_bool("ready", ready, &b);
        if (st != KL_OK) return reply_error(q, 500, kl_errmsg());
        return reply_body(q, ready ? 200 : 503, &b);
    }
    if (c != KL_GRPC_OK) return reply_code(q, c);
    kl_oip_json_body b;
    kl_status st;
    if (!strcmp(what, "config")) {
        int32_t preferred[8];
        kl_oip_model_config cfg;
        kl_oip_model_config_from_info(&info, preferred, &cfg);
        st = kl_oip_json_encode_model_config(&cfg, &b);
    } else {
        st = kl_oip_json_encode_model_metadata(&info, "kiln", &b);
    }
    kl_model_info_free(&info);
    return reply_encoded(q, st, &b);
}

static enum MHD_Result route_stats(rq *q, const char *name, const char *version) {
    kl_model_stats *st = NULL;
    size_t n = 0;
    kl_grpc_code c = kl_model_manager_stats(q->s->m, name, version, &st, &n);
    if (c != KL_GRPC_OK) return reply_code(q, c);
    kl_oip_json_body b;
    kl_status s = kl_oip_json_encode_stats(st, n, &b);
    kl_model_stats_free(st, n);
    return reply_encoded(q, s, &b);
}

static enum MHD_Result route_index(rq *q) {
    int ready_only = 0;
    kl_grpc_code c = kl_oip_json_decode_index_request(q->body, q->len, &ready_only);
    if (c != KL_GRPC_OK) return reply_code(q, c);
    kl_repo_entry *e = NULL;
    size_t n = 0;
    kl_status st = kl_model_manager_index(q->s->m, ready_only, &e, &n);
    if (st != KL_OK) return reply_code(q, kl_grpc_code_from_status(st));
    kl_oip_json_body b;
    st = kl_oip_json_encode_repository_index(e, n, &b);
    free(e);
    return reply_encoded(q, st, &b);
}

static enum MHD_Result route_metrics(rq *q) {
    char *buf = NULL;
    size_t len = 0, cap = 0;
    kl_status st = kl_model_manager_write_metrics(q->s->m, &buf, &len, &cap);
    if (st != KL_OK) {
        free(buf);
        return reply_error(q, 500, kl_errmsg());
    }
    return reply(q, 200, buf, len, "text/plain; version=0.0.4; charset=utf-8", len, NULL);
}

/* GET /alerts: whatever the alerts callback renders; 404 when no rules are configured. */
static enum MHD_Result route_alerts(rq *q) {
    if (!q->s->alerts_json)
        return reply_error(q, 404, "no alert rules configured (kiln serve --alerts FILE)");
    char *json = NULL;
    kl_status st = q->s->alerts_json(q->s->alerts_ctx, &json);
    if (st != KL_OK || !json) {
        free(json);
        return reply_error(q, 500, st != KL_OK ? kl_errmsg() : "alerts: no answer rendered");
    }
    size_t len = strlen(json);
    return reply(q, 200, json, len, "application/json", len, NULL);
}

/* GET /dashboard: the embedded page, never cached (a stale page would poll with stale code).
 * The Content-Security-Policy holds it to what it is: inline script and style, fetches to this
 * server only, nothing loaded from anywhere else. */
static enum MHD_Result route_dashboard(rq *q) {
    struct MHD_Response *r = MHD_create_response_from_buffer(
        (size_t)kl_dashboard_html_len, (void *)kl_dashboard_html, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'none'; script-src 'unsafe-inline'; "
                            "style-src 'unsafe-inline'; connect-src 'self'; img-src data:");
    if (atomic_load(&q->s->closing))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(q->c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

/* POST .../feedback: labels by request id, joined in the prediction log. */
static enum MHD_Result route_feedback(rq *q, const char *model) {
    if (!q->s->plog)
        return reply_error(q, 404, "feedback needs a prediction log (kiln serve --prediction-log)");
    char *answer = NULL;
    int status = kl_prediction_log_feedback_json(q->s->plog, model, q->body, q->len, &answer);
    if (!answer) return reply_error(q, 500, "out of memory");
    return reply(q, status, answer, strlen(answer), "application/json", strlen(answer), NULL);
}

#define MAX_SEGS 8

/* Splits path (modified) at '/' into segs; returns the count, or -1 when there are too many or
 * an empty one ("//", a trailing "/" is allowed). */
static int split_path(char *path, char **segs) {
    int n = 0;
    char *p = path;
    if (*p == '/') p++;
    while (*p) {
        if (n == MAX_SEGS) return -1;
        char *slash = strchr(p, '/');
        if (slash == p) return -1;
        segs[n++] = p;
        if (!slash) break;
        *slash = '\0';
        p = slash + 1;
    }
    return n;
}

static int method_is(const char *method, const char *want) {
    if (!strcmp(want, "GET") && !strcmp(method, "HEAD")) return 1;
    return !strcmp(method, want);
}

/* Dispatches a request whose body is complete. */
static enum MHD_Result route(rq *q, const char *url, const char *method) {
    char path[1024];
    if (strlen(url) >= sizeof path) return reply_error(q, 404, "unknown route (path too long)");
    snprintf(path, sizeof path, "%s", url);
    char *g[MAX_SEGS];
    int n = split_path(path, g);
    int get = method_is(method, "GET"), post = method_is(method, "POST");
#define ALLOW(cond, allow)                                                                         \
    if (!(cond)) return reply_error_allow(q, 405, "method not allowed", allow)
    if (n == 1 && !strcmp(g[0], "metrics")) {
        ALLOW(get, "GET, HEAD");
        return route_metrics(q);
    }
    if (n == 1 && !strcmp(g[0], "alerts")) {
        ALLOW(get, "GET, HEAD");
        return route_alerts(q);
    }
    if (n == 1 && !strcmp(g[0], "dashboard")) {
        ALLOW(get, "GET, HEAD");
        return route_dashboard(q);
    }
    if (n < 1 || strcmp(g[0], "v2") != 0) goto unknown;
    if (n == 1) {
        ALLOW(get, "GET, HEAD");
        kl_oip_json_body b;
        return reply_encoded(
            q,
            kl_oip_json_encode_server_metadata("kiln", KILN_VERSION, EXTENSIONS,
                                               sizeof EXTENSIONS / sizeof EXTENSIONS[0], &b),
            &b);
    }
    if (n == 3 && !strcmp(g[1], "health") && (!strcmp(g[2], "live") || !strcmp(g[2], "ready"))) {
        ALLOW(get, "GET, HEAD");
        int live = !strcmp(g[2], "live");
        int ok = live || !atomic_load(&q->s->stopping);
        kl_oip_json_body b;
        if (kl_oip_json_encode_bool(live ? "live" : "ready", ok, &b) != KL_OK)
            return reply_error(q, 500, kl_errmsg());
        return reply_body(q, ok ? 200 : 503, &b);
    }
    if (n == 2 && !strcmp(g[1], "feedback")) {
        ALLOW(post, "POST");
        return route_feedback(q, NULL);
    }
    if (n >= 3 && !strcmp(g[1], "repository")) {
        if (n == 3 && !strcmp(g[2], "index")) {
            ALLOW(post, "POST");
            return route_index(q);
        }
        if (n == 5 && !strcmp(g[2], "models") &&
            (!strcmp(g[4], "load") || !strcmp(g[4], "unload"))) {
            ALLOW(post, "POST");
            return route_job(q, g[3], !strcmp(g[4], "load"));
        }
        goto unknown;
    }
    if (n >= 2 && !strcmp(g[1], "models")) {
        if (n == 2) goto unknown;
        if (n == 3 && !strcmp(g[2], "stats")) {
            ALLOW(get || post, "GET, HEAD, POST");
            return route_stats(q, "", "");
        }
        const char *name = g[2], *version = "", *what = "";
        if (n == 4) {
            what = g[3];
        } else if (n == 5 || n == 6) {
            if (strcmp(g[3], "versions") != 0) goto unknown;
            version = g[4];
            what = n == 6 ? g[5] : "";
        } else if (n != 3) {
            goto unknown;
        }
        if (!*what) {
            ALLOW(get, "GET, HEAD");
            return route_model_get(q, name, version, "metadata");
        }
        if (!strcmp(what, "ready") || !strcmp(what, "config")) {
            ALLOW(get, "GET, HEAD");
            return route_model_get(q, name, version, what);
        }
        if (!strcmp(what, "stats")) {
            ALLOW(get || post, "GET, HEAD, POST");
            return route_stats(q, name, version);
        }
        if (!strcmp(what, "feedback")) {
            ALLOW(post, "POST");
            return route_feedback(q, name);
        }
        if (!strcmp(what, "infer")) {
            ALLOW(post, "POST");
            return route_infer(q, name, version);
        }
    }
#undef ALLOW
unknown:;
    char msg[256];
    snprintf(msg, sizeof msg, "unknown route %s %.200s", method, url);
    return reply_error(q, 404, msg);
}

/* --- the MHD callbacks --------------------------------------------------------------------- */

/* Appends upload data, or counts it as discarded once the body is over the limit. Returns 0
 * when the client has sent so much past the limit that the connection should be dropped. */
static int take_upload(rq *q, const char *data, size_t n) {
    size_t max = q->s->max_body;
    if (q->discarded || q->len + n > max) {
        q->discarded += n;
        free(q->body); /* no use for it any more */
        q->body = NULL;
        q->len = q->cap = 0;
        return q->discarded <= max; /* drain up to another max, then hang up */
    }
    if (q->len + n + 1 > q->cap) {
        size_t cap = q->cap ? q->cap : 4096;
        while (q->len + n + 1 > cap)
            cap *= 2;
        if (cap > max + 1) cap = max + 1;
        char *b = realloc(q->body, cap);
        if (!b) return 0;
        q->body = b;
        q->cap = cap;
    }
    memcpy(q->body + q->len, data, n);
    q->len += n;
    q->body[q->len] = '\0'; /* not part of the body: a guard for code that reads strings */
    return 1;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
    (void)version;
    kl_http_server *s = cls;
    rq *q = *con_cls;
    if (!q) {
        q = calloc(1, sizeof *q);
        if (!q) return MHD_NO;
        q->s = s;
        q->c = c;
        q->state = RQ_READING;
        *con_cls = q;
        atomic_fetch_add(&s->active, 1);
        if (atomic_load(&s->closing)) {
            q->state = RQ_DONE;
            return reply_error(q, 503, "server is stopping");
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(cl, &end, 10);
            if (errno == 0 && end != cl && v > s->max_body) {
                q->state = RQ_DONE;
                char msg[128];
                snprintf(msg, sizeof msg, "request body of %llu bytes exceeds the limit of %zu", v,
                         s->max_body);
                return reply_error(q, 413, msg);
            }
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (q->state != RQ_READING) return MHD_YES; /* answered early: drop the rest */
        return take_upload(q, upload_data, n) ? MHD_YES : MHD_NO;
    }
    if (q->state == RQ_DONE) {
        /* resumed after a wait (an early answer never gets here: MHD has its response) */
        return reply_done(q);
    }
    if (q->state == RQ_WAITING) return MHD_YES; /* not expected: suspended until finish() */
    if (q->discarded) {
        char msg[128];
        snprintf(msg, sizeof msg, "request body exceeds the limit of %zu bytes", s->max_body);
        return reply_error(q, 413, msg);
    }
    if (!url || !method) return reply_error(q, 400, "malformed request line");
    return route(q, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)c, (void)toe;
    kl_http_server *s = cls;
    rq *q = *con_cls;
    if (!q) return;
    *con_cls = NULL;
    rq_free(q);
    atomic_fetch_sub(&s->active, 1);
}

/* --- lifecycle ------------------------------------------------------------------------------ */

kl_status kl_http_server_start(const kl_http_server_opts *opts, kl_model_manager *m,
                               kl_http_server **out, int *bound_port) {
    if (!opts || !m || !out || opts->port < 0 || opts->port > 65535 || opts->threads < 1 ||
        opts->max_body_bytes < 1)
        return kl_seterr(KL_EINVAL, "http server: bad options (port 0..65535, threads >= 1, "
                                    "max_body_bytes >= 1)");
    const char *host = opts->host && *opts->host ? opts->host : "127.0.0.1";
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host, "0", &hints, &ai);
    if (gai != 0 || !ai)
        return kl_seterr(KL_EINVAL, "http server: host \"%s\": %s", host, gai_strerror(gai));
    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof addr);
    memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    int v6 = ai->ai_family == AF_INET6;
    freeaddrinfo(ai);
    if (v6)
        ((struct sockaddr_in6 *)&addr)->sin6_port = htons((uint16_t)opts->port);
    else
        ((struct sockaddr_in *)&addr)->sin_port = htons((uint16_t)opts->port);

    kl_http_server *s = calloc(1, sizeof *s);
    if (!s) return kl_seterr(KL_ENOMEM, "http server: out of memory");
    s->m = m;
    s->plog = opts->prediction_log;
    s->alerts_json = opts->alerts_json;
    s->alerts_ctx = opts->alerts_ctx;
    s->max_body = opts->max_body_bytes;
    s->listen_fd = MHD_INVALID_SOCKET;
    atomic_init(&s->stopping, 0);
    atomic_init(&s->closing, 0);
    atomic_init(&s->active, 0);
    atomic_init(&s->pending, 0);
    pthread_mutex_init(&s->mu, NULL);
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME |
                         MHD_USE_ITC | (v6 ? MHD_USE_IPv6 : 0);
    /* No SO_REUSEPORT (LISTENING_ADDRESS_REUSE 0): a second server on the port must fail, not
     * silently share it; MHD still sets SO_REUSEADDR for quick restarts. */
    s->d = MHD_start_daemon(
        flags, (uint16_t)opts->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)opts->threads,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)120, MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int)0, MHD_OPTION_END);
    if (!s->d) {
        int err = errno;
        pthread_mutex_destroy(&s->mu);
        free(s);
        return kl_seterr(KL_EIO, "http server: cannot listen on %s:%d (%s)", host, opts->port,
                         err ? strerror(err) : "libmicrohttpd refused the options");
    }
    if (bound_port) {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
        *bound_port = info ? (int)info->port : opts->port;
    }
    *out = s;
    return KL_OK;
}

void kl_http_server_set_stopping(kl_http_server *s) {
    if (s) atomic_store(&s->stopping, 1);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

void kl_http_server_stop(kl_http_server *s) {
    if (!s) return;
    atomic_store(&s->stopping, 1);
    atomic_store(&s->closing, 1);
    s->listen_fd = MHD_quiesce_daemon(s->d);
    /* Requests the manager or a job still owes an answer to are always waited for (their
     * callback will come, and it touches the connection); others get a bounded grace. */
    double deadline = now_s() + KL_HTTP_DRAIN_SECONDS;
    while (atomic_load(&s->pending) > 0 || (atomic_load(&s->active) > 0 && now_s() < deadline)) {
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(s->d);
    if (s->listen_fd != MHD_INVALID_SOCKET) close(s->listen_fd);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
