/* grpc_server.c — the gRPC core C API driven from plain C (see grpc_server.h): calls, the unary
 * methods, dispatch and lifecycle. Streams live in grpc_streams.c; the structures both files
 * share are in grpc_server_impl.h.
 *
 * Calls. Each call has a context (call_ctx) holding four completion-queue tags: NEW (the posted
 * grpc_server_request_call), READ (one RECV_MESSAGE), WRITE (a SEND_MESSAGE or the final status)
 * and CLOSE (RECV_CLOSE_ON_SERVER, streams only: it tells a cancelled stream). The context is
 * reference counted: one reference per batch in flight, one per request in the model manager,
 * one per worker thread; the last unref frees it. Initial metadata always travels with the first
 * message or the status: a status sent without it never reaches the client.
 *
 * Unary calls read one message and answer {initial metadata, message, status, RECV_CLOSE} in one
 * batch. Most are answered on the completion-queue (CQ) thread; ModelInfer is handed to the
 * model manager and answered from the batcher thread that ran it (done callback: it encodes the
 * response and starts the answering batch itself — the CQ thread never touches the call after
 * the hand-over, so the two never race); RepositoryModelLoad/Unload run on a short-lived thread
 * (a load can take seconds and would stall a poller).
 *
 * Streams (ModelStreamInfer, Health/Watch, ServerReflectionInfo): see grpc_streams.c. The
 * dispatch here hands their completions over (gs_stream_begin, gs_on_stream_read,
 * gs_on_stream_write); stop finishes open ones (gs_finish_locked).
 *
 * Shutdown (kl_grpc_server_stop) is ordered so that no model-manager callback can touch freed
 * memory: see the comment there.
 */
#include "serving/grpc_server.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer.h>        /* grpc_raw_byte_buffer_create */
#include <grpc/byte_buffer_reader.h> /* reading a request's bytes */
#include <grpc/grpc.h>               /* server, completion queues, calls */
#include <grpc/grpc_security.h>      /* insecure and SSL server credentials */
#include <grpc/slice.h>              /* grpc_slice */
#include <grpc/support/time.h>       /* gpr_inf_future */

#include "runtime/fileio.h"           /* kl_file_read for the TLS files */
#include "serving/grpc_server_impl.h" /* call_ctx, kl_grpc_server, the stream entry points */
#include "serving/health.h"           /* grpc.health.v1 statuses and messages */
#include "serving/oip_service.h"      /* the unary methods over the manager */
#include "serving/reflection.h"       /* server reflection over the embedded descriptors */

/* request_call contexts kept posted per completion queue: calls that can arrive at once. */
#define POSTED_PER_CQ 16

#define INFER_SERVICE "inference.GRPCInferenceService"

/* --- server-state handlers -------------------------------------------------------------------- */

static kl_grpc_code encoded(kl_status st) {
    return st == KL_OK ? KL_GRPC_OK : kl_grpc_code_from_status(st);
}

static kl_grpc_code h_server_live(kl_grpc_server *s, const uint8_t *req, size_t len, uint8_t **resp,
                                  size_t *resp_len) {
    (void)s, (void)req, (void)len;
    return encoded(kl_oip_encode_bool_response(1, resp, resp_len));
}

static kl_grpc_code h_server_ready(kl_grpc_server *s, const uint8_t *req, size_t len,
                                   uint8_t **resp, size_t *resp_len) {
    (void)req, (void)len;
    return encoded(kl_oip_encode_bool_response(!atomic_load(&s->stopping), resp, resp_len));
}

static kl_grpc_code h_server_metadata(kl_grpc_server *s, const uint8_t *req, size_t len,
                                      uint8_t **resp, size_t *resp_len) {
    (void)s, (void)req, (void)len;
    static const char *const ext[] = {"model_configuration", "statistics", "model_repository"};
    return encoded(kl_oip_encode_server_metadata("kiln", KILN_VERSION, ext, 3, resp, resp_len));
}

/* grpc.health.v1.Health/Check: kl_health_of, NOT_FOUND for a service name kiln does not know. */
static kl_grpc_code h_health_check(kl_grpc_server *s, const uint8_t *req, size_t len,
                                   uint8_t **resp, size_t *resp_len) {
    char *svc = NULL;
    kl_grpc_code c = kl_health_decode_request(req, len, &svc);
    if (c != KL_GRPC_OK) return c;
    kl_health_status st = kl_health_of(svc, atomic_load(&s->stopping));
    if (st == KL_HEALTH_SERVICE_UNKNOWN) {
        kl_seterr(KL_ENOTFOUND, "unknown service \"%s\"", svc);
        free(svc);
        return KL_GRPC_NOT_FOUND;
    }
    free(svc);
    return encoded(kl_health_encode_response(st, resp, resp_len));
}

/* The methods served, by HTTP/2 path; anything else answers UNIMPLEMENTED. */
static const method_def methods[] = {
    {"/" INFER_SERVICE "/ServerLive", M_SERVER, NULL, h_server_live},
    {"/" INFER_SERVICE "/ServerReady", M_SERVER, NULL, h_server_ready},
    {"/" INFER_SERVICE "/ServerMetadata", M_SERVER, NULL, h_server_metadata},
    {"/" INFER_SERVICE "/ModelReady", M_UNARY, kl_oip_service_model_ready, NULL},
    {"/" INFER_SERVICE "/ModelMetadata", M_UNARY, kl_oip_service_model_metadata, NULL},
    {"/" INFER_SERVICE "/ModelConfig", M_UNARY, kl_oip_service_model_config, NULL},
    {"/" INFER_SERVICE "/ModelStatistics", M_UNARY, kl_oip_service_model_statistics, NULL},
    {"/" INFER_SERVICE "/RepositoryIndex", M_UNARY, kl_oip_service_repository_index, NULL},
    {"/" INFER_SERVICE "/RepositoryModelLoad", M_BLOCKING, kl_oip_service_repository_load, NULL},
    {"/" INFER_SERVICE "/RepositoryModelUnload", M_BLOCKING, kl_oip_service_repository_unload,
     NULL},
    {"/" INFER_SERVICE "/ModelInfer", M_INFER, NULL, NULL},
    {"/" INFER_SERVICE "/ModelStreamInfer", M_STREAM_INFER, NULL, NULL},
    {"/grpc.health.v1.Health/Check", M_SERVER, NULL, h_health_check},
    {"/grpc.health.v1.Health/Watch", M_WATCH, NULL, NULL},
    {"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", M_REFLECT, NULL, NULL},
    {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", M_REFLECT, NULL, NULL},
};

static const method_def *find_method(grpc_slice path) {
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (!grpc_slice_str_cmp(path, methods[i].path)) return &methods[i];
    return NULL;
}

static int is_stream(const method_def *m) {
    return m && (m->kind == M_STREAM_INFER || m->kind == M_WATCH || m->kind == M_REFLECT);
}

/* --- call contexts ---------------------------------------------------------------------------- */

void gs_drop_queue(call_ctx *c) {
    while (c->q_head) {
        out_msg *o = c->q_head;
        c->q_head = o->next;
        grpc_byte_buffer_destroy(o->bb);
        free(o);
    }
    c->q_tail = NULL;
    c->q_len = 0;
}

static void ctx_free(call_ctx *c) {
    kl_grpc_server *s = c->s;
    if (c->listed) {
        pthread_mutex_lock(&s->mu);
        if (c->prev)
            c->prev->next = c->next;
        else
            s->streams = c->next;
        if (c->next) c->next->prev = c->prev;
        pthread_mutex_unlock(&s->mu);
    }
    gs_drop_queue(c);
    if (c->call) grpc_call_unref(c->call); /* cancels the call if it never got a status */
    if (c->recv) grpc_byte_buffer_destroy(c->recv);
    if (c->sending) grpc_byte_buffer_destroy(c->sending);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->req_md);
    pthread_mutex_destroy(&c->mu);
    free(c);
    /* The last touch of the server by this context (and so by any batcher callback): stop
     * waits for live to reach 0 before it frees anything. */
    pthread_mutex_lock(&s->mu);
    s->live--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void gs_unref(call_ctx *c) {
    if (atomic_fetch_sub(&c->refs, 1) == 1) ctx_free(c);
}

/* Starts a batch tagged `t`, holding a reference for it. Returns 0, or -1 (no reference held). */
int gs_start(call_ctx *c, const grpc_op *ops, size_t n, tag_kind t) {
    atomic_fetch_add(&c->refs, 1);
    if (grpc_call_start_batch(c->call, ops, n, &c->tags[t], NULL) == GRPC_CALL_OK) return 0;
    atomic_fetch_sub(&c->refs, 1); /* the caller holds another: never the last */
    return -1;
}

/* Posts one request_call on completion queue `cq`. Returns 0, or -1 if it could not. */
static int post_request(kl_grpc_server *s, int cq) {
    call_ctx *c = calloc(1, sizeof *c);
    if (!c) return -1;
    c->s = s;
    c->cq = cq;
    for (int k = 0; k < N_TAGS; k++)
        c->tags[k] = (call_tag){(tag_kind)k, c};
    atomic_init(&c->refs, 1); /* the NEW completion's */
    pthread_mutex_init(&c->mu, NULL);
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->req_md);
    pthread_mutex_lock(&s->mu);
    s->live++;
    pthread_mutex_unlock(&s->mu);
    grpc_call_error e = grpc_server_request_call(s->server, &c->call, &c->details, &c->req_md,
                                                 s->cq[cq], s->cq[cq], &c->tags[T_NEW]);
    if (e != GRPC_CALL_OK) {
        ctx_free(c);
        return -1;
    }
    return 0;
}

/* Wraps a malloc'd buffer as a byte buffer without copying (free runs when gRPC is done). */
grpc_byte_buffer *gs_wrap_bytes(uint8_t *buf, size_t len) {
    grpc_slice sl;
    if (len == 0) {
        free(buf);
        sl = grpc_empty_slice();
    } else {
        sl = grpc_slice_new(buf, len, free);
    }
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1); /* takes its own ref */
    grpc_slice_unref(sl);
    return bb;
}

/* Flattens a received message into one slice (unref it), or returns 0 if it cannot be read. */
int gs_read_bytes(grpc_byte_buffer *bb, grpc_slice *out) {
    grpc_byte_buffer_reader rd;
    if (!grpc_byte_buffer_reader_init(&rd, bb)) return 0;
    *out = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    return 1;
}

/* --- unary calls ------------------------------------------------------------------------------ */

/* Answers a unary call: initial metadata, the message (resp, owned from here on; NULL for
 * none) and the status in one batch, with RECV_CLOSE_ON_SERVER. */
static void answer(call_ctx *c, kl_grpc_code code, const char *msg, uint8_t *resp,
                   size_t resp_len) {
    grpc_slice details = grpc_slice_from_copied_string(msg ? msg : "");
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA; /* count 0: never a status without it */
    if (resp) {
        c->sending = gs_wrap_bytes(resp, resp_len);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->sending;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)code;
    ops[n++].data.send_status_from_server.status_details = &details; /* copied by core */
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
    gs_start(c, ops, n, T_WRITE); /* on failure the call is dead: its unref cancels it */
    grpc_slice_unref(details);
}

/* Answers with a handler's outcome. */
static void answer_with(call_ctx *c, kl_grpc_code code, uint8_t *resp, size_t resp_len) {
    if (code == KL_GRPC_OK)
        answer(c, code, NULL, resp, resp_len);
    else
        answer(c, code, kl_errmsg(), NULL, 0);
}

/* ModelInfer's done callback: on a batcher thread, or inline on an immediate failure. The CQ
 * thread let go of the call when it handed the request over, so this thread owns it now. */
static void unary_infer_done(void *user, const kl_oip_request *req, const kl_infer_result *res) {
    call_ctx *c = user;
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    kl_clearerr();
    kl_grpc_code code = kl_oip_service_infer_response(req, res, &resp, &resp_len);
    answer_with(c, code, resp, resp_len);
    gs_unref(c); /* the manager's reference */
}

typedef struct {
    call_ctx *c;    /* the call, one reference held */
    grpc_slice req; /* the request bytes, one ref held */
} blocking_job;

static void *blocking_worker(void *arg) {
    blocking_job *j = arg;
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    kl_clearerr();
    kl_grpc_code code = j->c->m->fn(j->c->s->mm, GRPC_SLICE_START_PTR(j->req),
                                    GRPC_SLICE_LENGTH(j->req), &resp, &resp_len);
    answer_with(j->c, code, resp, resp_len);
    grpc_slice_unref(j->req);
    gs_unref(j->c);
    free(j);
    return NULL;
}

/* A unary call's request arrived (or not): answer it, or hand it over. */
static void on_unary_read(call_ctx *c) {
    kl_grpc_server *s = c->s;
    grpc_slice req;
    if (!c->recv) {
        answer(c, KL_GRPC_INVALID_ARGUMENT, "no request message", NULL, 0);
        return;
    }
    int ok = gs_read_bytes(c->recv, &req);
    grpc_byte_buffer_destroy(c->recv);
    c->recv = NULL;
    if (!ok) {
        answer(c, KL_GRPC_INVALID_ARGUMENT, "request message could not be decompressed", NULL, 0);
        return;
    }
    const uint8_t *p = GRPC_SLICE_START_PTR(req);
    size_t len = GRPC_SLICE_LENGTH(req);
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    kl_grpc_code code;
    kl_clearerr();
    switch (c->m->kind) {
    case M_UNARY:
        code = c->m->fn(s->mm, p, len, &resp, &resp_len);
        answer_with(c, code, resp, resp_len);
        break;
    case M_SERVER:
        code = c->m->sfn(s, p, len, &resp, &resp_len);
        answer_with(c, code, resp, resp_len);
        break;
    case M_INFER: {
        kl_oip_request r;
        code = kl_oip_decode_infer_resolve(p, len, kl_model_manager_resolve, s->mm, &r);
        if (code != KL_GRPC_OK) {
            answer(c, code, kl_errmsg(), NULL, 0);
            break;
        }
        atomic_fetch_add(&c->refs, 1); /* the manager's, dropped by unary_infer_done */
        kl_model_manager_infer(s->mm, &r, unary_infer_done, c);
        /* From here on the done callback owns the call: do not touch c except to unref. */
        kl_oip_request_free(&r); /* zeroed by the hand-over: frees nothing */
        break;
    }
    case M_BLOCKING: {
        blocking_job *j = malloc(sizeof *j);
        pthread_t t;
        pthread_attr_t attr;
        int started = 0;
        if (j) {
            *j = (blocking_job){c, grpc_slice_ref(req)};
            atomic_fetch_add(&c->refs, 1);
            pthread_attr_init(&attr);
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            started = pthread_create(&t, &attr, blocking_worker, j) == 0;
            pthread_attr_destroy(&attr);
            if (!started) blocking_worker(j); /* no thread: do it here */
        } else {
            answer(c, KL_GRPC_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
        }
        break;
    }
    default:
        answer(c, KL_GRPC_INTERNAL, "method kind not unary", NULL, 0);
        break;
    }
    grpc_slice_unref(req);
}

/* --- dispatch --------------------------------------------------------------------------------- */

/* A new call arrived on c: keep the queue posted, then read its message or refuse it. */
static void on_new(call_ctx *c) {
    kl_grpc_server *s = c->s;
    if (!atomic_load(&s->stopping)) post_request(s, c->cq);
    c->m = find_method(c->details.method);
    if (!c->m) {
        char msg[512];
        snprintf(msg, sizeof msg, "method \"%.*s\" is not implemented by kiln",
                 (int)GRPC_SLICE_LENGTH(c->details.method),
                 (const char *)GRPC_SLICE_START_PTR(c->details.method));
        answer(c, KL_GRPC_UNIMPLEMENTED, msg, NULL, 0);
        return;
    }
    if (is_stream(c->m)) {
        gs_stream_begin(c);
        return;
    }
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv;
    gs_start(c, &op, 1, T_READ);
}

static void on_event(kl_grpc_server *s, grpc_event ev) {
    if (ev.tag == &s->shutdown_tag) {
        pthread_mutex_lock(&s->mu);
        s->shutdown_done = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    call_tag *t = ev.tag;
    call_ctx *c = t->c;
    switch (t->kind) {
    case T_NEW:
        if (ev.success) on_new(c); /* else: a request_call ended by shutdown */
        break;
    case T_READ:
        if (is_stream(c->m))
            gs_on_stream_read(c, ev.success);
        else if (ev.success)
            on_unary_read(c);
        break;
    case T_WRITE:
        if (is_stream(c->m)) gs_on_stream_write(c, ev.success);
        break;
    case T_CLOSE:
        pthread_mutex_lock(&c->mu);
        if (c->cancelled) {
            c->dead = 1; /* cancelled: pending batches fail; answers owed are dropped */
            gs_drop_queue(c);
        }
        pthread_mutex_unlock(&c->mu);
        break;
    default:
        break;
    }
    gs_unref(c); /* the completed batch's reference */
}

typedef struct {
    kl_grpc_server *s; /* the server */
    int cq;            /* which completion queue this thread polls */
} poller_arg;

static void *poller(void *arg) {
    kl_grpc_server *s = ((poller_arg *)arg)->s;
    grpc_completion_queue *cq = s->cq[((poller_arg *)arg)->cq];
    free(arg);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type == GRPC_OP_COMPLETE) on_event(s, ev);
    }
    return NULL;
}

/* --- lifecycle -------------------------------------------------------------------------------- */

kl_grpc_server_opts kl_grpc_server_defaults(void) {
    kl_grpc_server_opts o = {"127.0.0.1", 8001, 2, 64 << 20, 10.0, NULL, NULL, NULL, 0};
    return o;
}

/* Server credentials for opts: insecure, or TLS from the PEM files. NULL with kl_errmsg set. */
static grpc_server_credentials *make_creds(const kl_grpc_server_opts *o) {
    if (!o->tls_cert && !o->tls_key && !o->tls_ca && !o->require_client_cert)
        return grpc_insecure_server_credentials_create();
    if (!o->tls_cert || !o->tls_key) {
        kl_seterr(KL_EINVAL, "TLS needs both a certificate (--tls-cert) and its key (--tls-key)");
        return NULL;
    }
    if (o->require_client_cert && !o->tls_ca) {
        kl_seterr(KL_EINVAL, "requiring client certificates needs a CA to verify them (--tls-ca)");
        return NULL;
    }
    char *cert = NULL, *key = NULL, *ca = NULL;
    size_t n;
    grpc_server_credentials *creds = NULL;
    if (kl_file_read(o->tls_cert, 1 << 20, &cert, &n) != KL_OK) {
        kl_preferr(KL_EIO, "TLS certificate");
    } else if (kl_file_read(o->tls_key, 1 << 20, &key, &n) != KL_OK) {
        kl_preferr(KL_EIO, "TLS key");
    } else if (o->tls_ca && kl_file_read(o->tls_ca, 1 << 20, &ca, &n) != KL_OK) {
        kl_preferr(KL_EIO, "TLS client CA");
    } else if (!strstr(cert, "-----BEGIN") || !strstr(key, "-----BEGIN") ||
               (ca && !strstr(ca, "-----BEGIN"))) {
        kl_seterr(KL_EFORMAT, "TLS files must be PEM (%s, %s%s%s)", o->tls_cert, o->tls_key,
                  ca ? ", " : "", ca ? o->tls_ca : "");
    } else {
        grpc_ssl_pem_key_cert_pair pair = {key, cert};
        grpc_ssl_client_certificate_request_type req =
            !ca                      ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
            : o->require_client_cert ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                     : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
        /* The config copies the PEM strings; the options take the config, the credentials the
         * options. */
        grpc_ssl_server_certificate_config *cfg =
            grpc_ssl_server_certificate_config_create(ca, &pair, 1);
        grpc_ssl_server_credentials_options *opt =
            cfg ? grpc_ssl_server_credentials_create_options_using_config(req, cfg) : NULL;
        creds = opt ? grpc_ssl_server_credentials_create_with_options(opt) : NULL;
        if (!creds) kl_seterr(KL_EINVAL, "TLS: gRPC refused the certificate, key or CA");
    }
    free(cert);
    if (key) memset(key, 0, strlen(key)); /* the private key does not linger in freed memory */
    free(key);
    free(ca);
    return creds;
}

/* Shuts down and drains a completion queue nobody polls, then destroys it. */
static void cq_drain_destroy(grpc_completion_queue *cq) {
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
}

/* Frees a server that never started serving (no call can exist). */
static void destroy_unstarted(kl_grpc_server *s) {
    if (s->server) grpc_server_destroy(s->server);
    for (int i = 0; i < s->n_started; i++)
        grpc_completion_queue_shutdown(s->cq[i]);
    for (int i = 0; i < s->n_started; i++) {
        pthread_join(s->threads[i], NULL);
        grpc_completion_queue_destroy(s->cq[i]);
    }
    for (int i = s->n_started; i < s->n; i++)
        if (s->cq[i]) cq_drain_destroy(s->cq[i]);
    grpc_shutdown();
    kl_reflection_free(s->refl);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->cq);
    free(s->threads);
    free(s);
}

kl_status kl_grpc_server_start(const kl_grpc_server_opts *opts, kl_model_manager *m,
                               kl_grpc_server **out, int *bound_port) {
    *out = NULL;
    if (opts->threads < 1 || opts->threads > 256)
        return kl_seterr(KL_EINVAL, "--threads %d must be in 1..256", opts->threads);
    if (opts->port < 0 || opts->port > 65535)
        return kl_seterr(KL_EINVAL, "--port %d must be in 0..65535", opts->port);
    kl_grpc_server *s = calloc(1, sizeof *s);
    if (!s) return kl_seterr(KL_ENOMEM, "grpc server: out of memory");
    s->n = opts->threads;
    s->cq = calloc((size_t)s->n, sizeof *s->cq);
    s->threads = calloc((size_t)s->n, sizeof *s->threads);
    if (!s->cq || !s->threads) {
        free(s->cq);
        free(s->threads);
        free(s);
        return kl_seterr(KL_ENOMEM, "grpc server: out of memory");
    }
    s->mm = m;
    s->grace = opts->grace_seconds;
    atomic_init(&s->stopping, 0);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    grpc_init();
    if (kl_reflection_create(kl_proto_descriptor_set, (size_t)kl_proto_descriptor_set_len,
                             &s->refl) != KL_OK) {
        destroy_unstarted(s);
        return kl_preferr(KL_EINTERNAL, "grpc server");
    }

    grpc_arg args[3];
    memset(args, 0, sizeof args);
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = opts->max_message_bytes;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[1].value.integer = -1;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = GRPC_ARG_ALLOW_REUSEPORT; /* on by default: a second server would "bind" too */
    args[2].value.integer = 0;
    grpc_channel_args ca = {3, args};
    s->server = grpc_server_create(&ca, NULL);
    for (int i = 0; i < s->n; i++) {
        s->cq[i] = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(s->server, s->cq[i], NULL);
    }
    char addr[300];
    snprintf(addr, sizeof addr, strchr(opts->host, ':') ? "[%s]:%d" : "%s:%d", opts->host,
             opts->port);
    grpc_server_credentials *creds = make_creds(opts);
    if (!creds) {
        destroy_unstarted(s);
        return kl_preferr(KL_EINVAL, "grpc server");
    }
    int port = grpc_server_add_http2_port(s->server, addr, creds);
    grpc_server_credentials_release(creds);
    if (port == 0) {
        destroy_unstarted(s);
        return kl_seterr(KL_EIO, "cannot listen on %s (address in use or not local?)", addr);
    }
    /* Pollers first: if one cannot start, nothing was served yet and teardown is simple. */
    for (int i = 0; i < s->n; i++) {
        poller_arg *a = malloc(sizeof *a);
        int err = a ? 0 : ENOMEM;
        if (a) {
            *a = (poller_arg){s, i};
            err = pthread_create(&s->threads[i], NULL, poller, a);
            if (err) free(a);
        }
        if (err) {
            destroy_unstarted(s);
            return kl_seterr(KL_EINTERNAL, "grpc server: cannot start thread %d: %s", i,
                             strerror(err));
        }
        s->n_started++;
    }
    grpc_server_start(s->server);
    for (int i = 0; i < s->n; i++)
        for (int k = 0; k < POSTED_PER_CQ; k++)
            post_request(s, i);
    *out = s;
    *bound_port = port;
    return KL_OK;
}

/* Waits on s->cv until every call context is freed and the shutdown tag is back, or until
 * `until` (NULL: no limit). Returns 1 when done. Called with s->mu held. */
static int wait_drained_locked(kl_grpc_server *s, const struct timespec *until) {
    while (!(s->shutdown_done && s->live == 0)) {
        if (!until)
            pthread_cond_wait(&s->cv, &s->mu);
        else if (pthread_cond_timedwait(&s->cv, &s->mu, until) == ETIMEDOUT)
            return s->shutdown_done && s->live == 0;
    }
    return 1;
}

void kl_grpc_server_stop(kl_grpc_server *s) {
    if (!s) return;
    /* 1. Stopping: health turns NOT_SERVING; open streams are finished (watchers hear
     *    NOT_SERVING and get OK, inference streams send what they owe and get UNAVAILABLE), since
     *    a stream left open would hold the shutdown back until the grace period runs out. */
    pthread_mutex_lock(&s->mu);
    atomic_store(&s->stopping, 1);
    for (call_ctx *c = s->streams; c; c = c->next) {
        pthread_mutex_lock(&c->mu);
        gs_finish_locked(c);
        pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_unlock(&s->mu);
    /* 2. No new calls; posted request_calls come back unsuccessful and are freed. The shutdown
     *    tag comes back on cq[0] once gRPC is done with every call. */
    grpc_server_shutdown_and_notify(s->server, s->cq[0], &s->shutdown_tag);
    /* 3. Drain: wait until every call context is freed. A context handed to the model manager
     *    holds a reference until its done callback has started the answering batch, and the
     *    callback's last access to server memory is the `live` decrement in ctx_free, under
     *    s->mu. So live == 0 means no callback will touch the server, its calls or its
     *    completion queues again, and the manager (still running: the caller frees it after
     *    this returns) has answered everything that was queued. Calls still running after the
     *    grace period are cancelled; the manager's answers to them then fail harmlessly, and
     *    the wait goes on until it has given them all. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    long long ns = (long long)(s->grace * 1e9);
    until.tv_sec += (time_t)(ns / 1000000000LL);
    until.tv_nsec += (long)(ns % 1000000000LL);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    int drained = wait_drained_locked(s, &until);
    pthread_mutex_unlock(&s->mu);
    if (!drained) {
        grpc_server_cancel_all_calls(s->server); /* calls past the grace period */
        pthread_mutex_lock(&s->mu);
        wait_drained_locked(s, NULL);
        pthread_mutex_unlock(&s->mu);
    }
    /* 4. Nothing is in flight: end the queues; the pollers drain theirs and return. Only then
     *    is the server destroyed (after its shutdown tag, as gRPC requires). */
    for (int i = 0; i < s->n; i++)
        grpc_completion_queue_shutdown(s->cq[i]);
    for (int i = 0; i < s->n_started; i++)
        pthread_join(s->threads[i], NULL);
    grpc_server_destroy(s->server);
    for (int i = 0; i < s->n; i++)
        grpc_completion_queue_destroy(s->cq[i]);
    grpc_shutdown();
    kl_reflection_free(s->refl);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->cq);
    free(s->threads);
    free(s);
}
