/* grpc_server.c — the gRPC core C API driven from plain C (see grpc_server.h).
 *
 * Each call context is its own completion-queue tag and walks three stages: NEW (a posted
 * grpc_server_request_call), READ (one RECV_MESSAGE), DONE (SEND_INITIAL_METADATA, the message,
 * SEND_STATUS_FROM_SERVER and RECV_CLOSE_ON_SERVER in one batch). Only one batch of a call is
 * outstanding at a time, so a call is touched by one thread at a time and needs no lock.
 * Initial metadata always travels with the status: a status sent without it never reaches the
 * client (it waits for its deadline).
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
#include <grpc/grpc_security.h>      /* insecure server credentials */
#include <grpc/slice.h>              /* grpc_slice */
#include <grpc/support/time.h>       /* gpr_inf_future */

#include "proto/health.pb-c.h" /* grpc.health.v1 messages */

/* request_call contexts kept posted per completion queue: calls that can arrive at once. */
#define POSTED_PER_CQ 16

#define INFER_SERVICE "inference.GRPCInferenceService"

typedef enum {
    CALL_NEW,  /* waiting in grpc_server_request_call */
    CALL_READ, /* waiting for the request message */
    CALL_DONE, /* waiting for the answer batch to complete */
} call_stage;

typedef struct {
    call_stage stage;           /* which completion this context waits for */
    int cq;                     /* index of the completion queue it lives on */
    grpc_call *call;            /* the call (NULL until one arrives), one ref owned */
    grpc_call_details details;  /* method path, host, deadline */
    grpc_metadata_array req_md; /* request metadata (unused so far, owned) */
    grpc_byte_buffer *recv;     /* the request message, owned; NULL if none */
    grpc_byte_buffer *send;     /* the response message, owned until DONE completes */
    int cancelled;              /* RECV_CLOSE_ON_SERVER: whether the client cancelled */
} call_ctx;

struct kl_grpc_server {
    grpc_server *server;        /* the gRPC server */
    grpc_completion_queue **cq; /* one completion queue per thread */
    pthread_t *threads;         /* the polling threads, one per CQ */
    int n;                      /* completion queues (and threads) */
    int n_started;              /* threads actually started */
    kl_model_store *store;      /* models answered for, borrowed */
    double grace;               /* seconds in-flight calls may run after stop begins */
    int shutdown_tag;           /* its address tags grpc_server_shutdown_and_notify */
    atomic_int stopping;        /* set once stop began: no more reposts, health NOT_SERVING */
    pthread_mutex_t mu;         /* guards shutdown_done */
    pthread_cond_t cv;          /* signalled when shutdown_done is set */
    int shutdown_done;          /* the shutdown tag came back: every call is finished */
};

/* A method's handler: request bytes in, response bytes (malloc'd) out, or a code with
 * kl_errmsg() saying why. */
typedef kl_grpc_code (*handler_fn)(kl_grpc_server *s, const uint8_t *req, size_t len,
                                   uint8_t **resp, size_t *resp_len);

static kl_grpc_code h_server_live(kl_grpc_server *s, const uint8_t *req, size_t len, uint8_t **resp,
                                  size_t *resp_len) {
    (void)s, (void)req, (void)len;
    kl_status st = kl_oip_encode_bool_response(1, resp, resp_len);
    return st == KL_OK ? KL_GRPC_OK : kl_grpc_code_from_status(st);
}

static kl_grpc_code h_server_ready(kl_grpc_server *s, const uint8_t *req, size_t len,
                                   uint8_t **resp, size_t *resp_len) {
    (void)req, (void)len;
    kl_status st = kl_oip_encode_bool_response(!atomic_load(&s->stopping), resp, resp_len);
    return st == KL_OK ? KL_GRPC_OK : kl_grpc_code_from_status(st);
}

static kl_grpc_code h_server_metadata(kl_grpc_server *s, const uint8_t *req, size_t len,
                                      uint8_t **resp, size_t *resp_len) {
    (void)s, (void)req, (void)len;
    static const char *const ext[] = {"model_configuration"};
    kl_status st = kl_oip_encode_server_metadata("kiln", KILN_VERSION, ext, 1, resp, resp_len);
    return st == KL_OK ? KL_GRPC_OK : kl_grpc_code_from_status(st);
}

static kl_grpc_code h_model_ready(kl_grpc_server *s, const uint8_t *req, size_t len, uint8_t **resp,
                                  size_t *resp_len) {
    return kl_model_store_ready(s->store, req, len, resp, resp_len);
}

static kl_grpc_code h_model_metadata(kl_grpc_server *s, const uint8_t *req, size_t len,
                                     uint8_t **resp, size_t *resp_len) {
    return kl_model_store_metadata(s->store, req, len, resp, resp_len);
}

static kl_grpc_code h_model_config(kl_grpc_server *s, const uint8_t *req, size_t len,
                                   uint8_t **resp, size_t *resp_len) {
    return kl_model_store_config(s->store, req, len, resp, resp_len);
}

static kl_grpc_code h_model_infer(kl_grpc_server *s, const uint8_t *req, size_t len, uint8_t **resp,
                                  size_t *resp_len) {
    return kl_model_store_infer(s->store, req, len, resp, resp_len);
}

/* grpc.health.v1.Health/Check: SERVING for the whole server ("") and the inference service,
 * NOT_SERVING once stopping, NOT_FOUND for any other service name. */
static kl_grpc_code h_health_check(kl_grpc_server *s, const uint8_t *req, size_t len,
                                   uint8_t **resp, size_t *resp_len) {
    Grpc__Health__V1__HealthCheckRequest *r =
        grpc__health__v1__health_check_request__unpack(NULL, len, req);
    if (!r) {
        kl_seterr(KL_EFORMAT, "malformed HealthCheckRequest (%zu bytes do not parse)", len);
        return KL_GRPC_INVALID_ARGUMENT;
    }
    const char *svc = r->service ? r->service : "";
    kl_grpc_code c = KL_GRPC_OK;
    if (*svc && strcmp(svc, INFER_SERVICE)) {
        kl_seterr(KL_ENOTFOUND, "unknown service \"%s\"", svc);
        c = KL_GRPC_NOT_FOUND;
    }
    grpc__health__v1__health_check_request__free_unpacked(r, NULL);
    if (c != KL_GRPC_OK) return c;
    Grpc__Health__V1__HealthCheckResponse out = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    out.status = atomic_load(&s->stopping)
                     ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
                     : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    size_t n = grpc__health__v1__health_check_response__get_packed_size(&out);
    *resp = malloc(n ? n : 1);
    if (!*resp) {
        kl_seterr(KL_ENOMEM, "HealthCheckResponse: out of memory");
        return KL_GRPC_RESOURCE_EXHAUSTED;
    }
    *resp_len = grpc__health__v1__health_check_response__pack(&out, *resp);
    return KL_GRPC_OK;
}

/* The methods served, by HTTP/2 path; anything else answers UNIMPLEMENTED. */
static const struct {
    const char *path; /* "/package.Service/Method" */
    handler_fn fn;    /* its handler */
} methods[] = {
    {"/" INFER_SERVICE "/ServerLive", h_server_live},
    {"/" INFER_SERVICE "/ServerReady", h_server_ready},
    {"/" INFER_SERVICE "/ModelReady", h_model_ready},
    {"/" INFER_SERVICE "/ServerMetadata", h_server_metadata},
    {"/" INFER_SERVICE "/ModelMetadata", h_model_metadata},
    {"/" INFER_SERVICE "/ModelConfig", h_model_config},
    {"/" INFER_SERVICE "/ModelInfer", h_model_infer},
    {"/grpc.health.v1.Health/Check", h_health_check},
};

static handler_fn find_handler(grpc_slice method) {
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (!grpc_slice_str_cmp(method, methods[i].path)) return methods[i].fn;
    return NULL;
}

/* --- call contexts ---------------------------------------------------------------------------- */

static void ctx_free(call_ctx *c) {
    if (c->call) grpc_call_unref(c->call); /* cancels the call if it never got a status */
    if (c->recv) grpc_byte_buffer_destroy(c->recv);
    if (c->send) grpc_byte_buffer_destroy(c->send);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->req_md);
    free(c);
}

/* Posts one request_call on completion queue `cq`. Returns 0, or -1 if it could not. */
static int post_request(kl_grpc_server *s, int cq) {
    call_ctx *c = calloc(1, sizeof *c);
    if (!c) return -1;
    c->stage = CALL_NEW;
    c->cq = cq;
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->req_md);
    grpc_call_error e = grpc_server_request_call(s->server, &c->call, &c->details, &c->req_md,
                                                 s->cq[cq], s->cq[cq], c);
    if (e != GRPC_CALL_OK) {
        ctx_free(c);
        return -1;
    }
    return 0;
}

/* Sends initial metadata, the message (bb, owned from here on; may be NULL) and the status
 * in one batch, with RECV_CLOSE_ON_SERVER. */
static void answer(call_ctx *c, kl_grpc_code code, const char *msg, grpc_byte_buffer *bb) {
    c->stage = CALL_DONE;
    c->send = bb;
    grpc_slice details = grpc_slice_from_copied_string(msg ? msg : "");
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA; /* count 0: never a status without it */
    if (bb) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = bb;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)code;
    ops[n++].data.send_status_from_server.status_details = &details; /* copied by core */
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, c, NULL);
    grpc_slice_unref(details);
    if (e != GRPC_CALL_OK) ctx_free(c);
}

/* Wraps a malloc'd buffer as a byte buffer without copying (free runs when gRPC is done). */
static grpc_byte_buffer *wrap_bytes(uint8_t *buf, size_t len) {
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

/* The request message arrived (or not): run the handler and answer. */
static void on_read(kl_grpc_server *s, call_ctx *c) {
    handler_fn fn = find_handler(c->details.method);
    if (!c->recv) {
        answer(c, KL_GRPC_INVALID_ARGUMENT, "no request message", NULL);
        return;
    }
    grpc_byte_buffer_reader rd;
    if (!grpc_byte_buffer_reader_init(&rd, c->recv)) {
        answer(c, KL_GRPC_INVALID_ARGUMENT, "request message could not be decompressed", NULL);
        return;
    }
    grpc_slice req = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    kl_clearerr();
    kl_grpc_code code = fn(s, GRPC_SLICE_START_PTR(req), GRPC_SLICE_LENGTH(req), &resp, &resp_len);
    grpc_slice_unref(req);
    if (code == KL_GRPC_OK)
        answer(c, code, NULL, wrap_bytes(resp, resp_len));
    else
        answer(c, code, kl_errmsg(), NULL);
}

/* A new call arrived on c: keep the queue posted, then read its message or refuse it. */
static void on_new(kl_grpc_server *s, call_ctx *c) {
    if (!atomic_load(&s->stopping)) post_request(s, c->cq);
    if (!find_handler(c->details.method)) {
        char msg[512];
        snprintf(msg, sizeof msg, "method \"%.*s\" is not implemented by kiln",
                 (int)GRPC_SLICE_LENGTH(c->details.method),
                 (const char *)GRPC_SLICE_START_PTR(c->details.method));
        answer(c, KL_GRPC_UNIMPLEMENTED, msg, NULL);
        return;
    }
    c->stage = CALL_READ;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv;
    if (grpc_call_start_batch(c->call, &op, 1, c, NULL) != GRPC_CALL_OK) ctx_free(c);
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
        if (ev.type != GRPC_OP_COMPLETE) continue;
        if (ev.tag == &s->shutdown_tag) {
            pthread_mutex_lock(&s->mu);
            s->shutdown_done = 1;
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        call_ctx *c = ev.tag;
        if (!ev.success || c->stage == CALL_DONE) {
            /* A request_call ended by shutdown, a cancelled read, or a finished call. */
            ctx_free(c);
        } else if (c->stage == CALL_NEW) {
            on_new(s, c);
        } else {
            on_read(s, c);
        }
    }
    return NULL;
}

/* --- lifecycle -------------------------------------------------------------------------------- */

kl_grpc_server_opts kl_grpc_server_defaults(void) {
    kl_grpc_server_opts o = {"127.0.0.1", 8001, 2, 64 << 20, 10.0};
    return o;
}

/* Shuts down and drains a completion queue nobody polls, then destroys it. */
static void cq_drain_destroy(grpc_completion_queue *cq) {
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
}

kl_status kl_grpc_server_start(const kl_grpc_server_opts *opts, kl_model_store *store,
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
    s->store = store;
    s->grace = opts->grace_seconds;
    atomic_init(&s->stopping, 0);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);

    grpc_init();
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
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(s->server, addr, creds);
    grpc_server_credentials_release(creds);
    if (port == 0) {
        grpc_server_destroy(s->server);
        for (int i = 0; i < s->n; i++)
            cq_drain_destroy(s->cq[i]);
        grpc_shutdown();
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s->cq);
        free(s->threads);
        free(s);
        return kl_seterr(KL_EIO, "cannot listen on %s (address in use or not local?)", addr);
    }
    grpc_server_start(s->server);
    for (int i = 0; i < s->n; i++)
        for (int k = 0; k < POSTED_PER_CQ; k++)
            post_request(s, i);
    for (int i = 0; i < s->n; i++) {
        poller_arg *a = malloc(sizeof *a);
        int err = a ? 0 : ENOMEM;
        if (a) {
            a->s = s;
            a->cq = i;
            err = pthread_create(&s->threads[i], NULL, poller, a);
            if (err) free(a);
        }
        if (err) {
            kl_grpc_server_stop(s);
            return kl_seterr(KL_EINTERNAL, "grpc server: cannot start thread %d: %s", i,
                             strerror(err));
        }
        s->n_started++;
    }
    *out = s;
    *bound_port = port;
    return KL_OK;
}

void kl_grpc_server_stop(kl_grpc_server *s) {
    if (!s) return;
    atomic_store(&s->stopping, 1);
    /* Stop accepting; posted request_calls come back unsuccessful and are freed. The tag comes
     * back on cq[0] once every call is finished. */
    grpc_server_shutdown_and_notify(s->server, s->cq[0], &s->shutdown_tag);
    if (s->n_started == 0) {
        /* No thread polls cq[0]: wait for the shutdown tag here. */
        for (;;) {
            grpc_event ev =
                grpc_completion_queue_next(s->cq[0], gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
            if (ev.type != GRPC_OP_COMPLETE) continue;
            if (ev.tag == &s->shutdown_tag) break;
            ctx_free(ev.tag);
        }
    } else {
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
        int timed_out = 0;
        while (!s->shutdown_done && !timed_out)
            timed_out = pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT;
        pthread_mutex_unlock(&s->mu);
        if (timed_out) grpc_server_cancel_all_calls(s->server); /* calls past the grace period */
        pthread_mutex_lock(&s->mu);
        while (!s->shutdown_done)
            pthread_cond_wait(&s->cv, &s->mu);
        pthread_mutex_unlock(&s->mu);
    }
    /* Every call is finished: end the queues; the threads drain theirs and return. */
    for (int i = 0; i < s->n; i++)
        grpc_completion_queue_shutdown(s->cq[i]);
    for (int i = 0; i < s->n_started; i++)
        pthread_join(s->threads[i], NULL);
    for (int i = s->n_started; i < s->n; i++) { /* queues no thread polled */
        grpc_event ev;
        do {
            ev = grpc_completion_queue_next(s->cq[i], gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
            if (ev.type == GRPC_OP_COMPLETE && ev.tag != &s->shutdown_tag) ctx_free(ev.tag);
        } while (ev.type != GRPC_QUEUE_SHUTDOWN);
    }
    grpc_server_destroy(s->server); /* only after the shutdown tag came back */
    for (int i = 0; i < s->n; i++)
        grpc_completion_queue_destroy(s->cq[i]);
    grpc_shutdown();
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->cq);
    free(s->threads);
    free(s);
}
