/* grpc_client.c — channels, unary calls and the asynchronous call pool on the gRPC core C API
 * (see grpc_client.h).
 *
 * Every call is one batch of the six client ops (send initial metadata, message, close; receive
 * initial metadata, message, status): a unary call needs nothing more, and one batch means one
 * completion per call, so a call is touched by one thread at a time. RECV_STATUS_ON_CLIENT
 * always succeeds, so the status (not the completion's success flag) says how the call ended.
 */
#include "serving/grpc_client.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer.h>        /* grpc_raw_byte_buffer_create, grpc_byte_buffer_length */
#include <grpc/byte_buffer_reader.h> /* reading a response's bytes */
#include <grpc/grpc.h>               /* channels, completion queues, calls */
#include <grpc/grpc_security.h>      /* insecure and SSL channel credentials */
#include <grpc/slice.h>              /* grpc_slice */
#include <grpc/support/alloc.h>      /* gpr_free for the status error string */
#include <grpc/support/time.h>       /* deadlines */

/* A method path registered on the channel once, so calls skip interning it each time. */
typedef struct method_reg {
    char *path;              /* "/package.Service/Method", owned; must outlive the channel */
    void *handle;            /* grpc_channel_register_call's handle */
    struct method_reg *next; /* next registration */
} method_reg;

struct kl_grpc_channel {
    grpc_channel *ch;   /* the gRPC channel */
    char *target;       /* as given, owned */
    pthread_mutex_t mu; /* guards methods */
    method_reg *methods;
};

kl_grpc_channel_opts kl_grpc_channel_defaults(void) {
    kl_grpc_channel_opts o = {NULL, 0, 0};
    return o;
}

const char *kl_grpc_channel_target(const kl_grpc_channel *ch) {
    return ch->target;
}

int64_t kl_grpc_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Reads a whole (small) file into a NUL-terminated malloc'd string. */
static kl_status read_text(const char *path, char **out) {
    FILE *f = fopen(path, "rb");
    if (!f) return kl_seterr(KL_EIO, "cannot open \"%s\"", path);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fclose(f);
            return kl_seterr(KL_ENOMEM, "reading \"%s\"", path);
        }
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1) break;
        if (cap > (64u << 20)) {
            free(buf);
            fclose(f);
            return kl_seterr(KL_EFORMAT, "\"%s\": over 64 MiB: not a CA file", path);
        }
        cap *= 2;
        char *nb = realloc(buf, cap);
        if (!nb) free(buf);
        buf = nb;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return kl_seterr(KL_EIO, "reading \"%s\" failed", path);
    }
    buf[n] = '\0';
    *out = buf;
    return KL_OK;
}

kl_status kl_grpc_channel_create(const char *target, const kl_grpc_channel_opts *opts,
                                 kl_grpc_channel **out) {
    *out = NULL;
    kl_grpc_channel_opts o = opts ? *opts : kl_grpc_channel_defaults();
    if (!target || !*target) return kl_seterr(KL_EINVAL, "empty server address");
    char *pem = NULL;
    if (o.ca_file) {
        KL_TRY(kl_preferr(read_text(o.ca_file, &pem), "--ca"));
        if (!strstr(pem, "-----BEGIN CERTIFICATE-----")) {
            free(pem);
            return kl_seterr(KL_EFORMAT, "--ca \"%s\": no PEM certificate in it", o.ca_file);
        }
    }
    kl_grpc_channel *c = calloc(1, sizeof *c);
    if (!c || !(c->target = strdup(target))) {
        free(c);
        free(pem);
        return kl_seterr(KL_ENOMEM, "channel to %s", target);
    }
    pthread_mutex_init(&c->mu, NULL);
    grpc_init();
    grpc_arg args[3];
    int n = 0;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[n++].value.integer = o.max_message_bytes > 0 ? o.max_message_bytes : -1;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[n++].value.integer = -1;
    if (o.private_connection) {
        /* Without it, channels to one target share a subchannel, hence one TCP connection. */
        args[n].type = GRPC_ARG_INTEGER;
        args[n].key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
        args[n++].value.integer = 1;
    }
    grpc_channel_args ca = {(size_t)n, args};
    grpc_channel_credentials *creds = pem ? grpc_ssl_credentials_create(pem, NULL, NULL, NULL)
                                          : grpc_insecure_credentials_create();
    free(pem);
    if (!creds) {
        kl_grpc_channel_free(c);
        return kl_seterr(KL_EINVAL, "channel to %s: gRPC refused the credentials", target);
    }
    c->ch = grpc_channel_create(target, creds, &ca);
    grpc_channel_credentials_release(creds);
    if (!c->ch) {
        kl_grpc_channel_free(c);
        return kl_seterr(KL_EINVAL, "channel to %s: gRPC refused the target", target);
    }
    *out = c;
    return KL_OK;
}

void kl_grpc_channel_free(kl_grpc_channel *c) {
    if (!c) return;
    if (c->ch) grpc_channel_destroy(c->ch);
    for (method_reg *m = c->methods, *next; m; m = next) {
        next = m->next;
        free(m->path);
        free(m);
    }
    pthread_mutex_destroy(&c->mu);
    free(c->target);
    free(c);
    grpc_shutdown();
}

/* The registered-call handle of path on c, registering it on first use; NULL when out of
 * memory or refused. */
static void *method_handle(kl_grpc_channel *c, const char *path) {
    void *h = NULL;
    pthread_mutex_lock(&c->mu);
    for (method_reg *m = c->methods; m; m = m->next)
        if (!strcmp(m->path, path)) h = m->handle;
    if (!h) {
        method_reg *m = calloc(1, sizeof *m);
        if (m && (m->path = strdup(path)) &&
            (m->handle = grpc_channel_register_call(c->ch, m->path, NULL, NULL))) {
            m->next = c->methods;
            c->methods = m;
            h = m->handle;
        } else if (m) {
            free(m->path);
            free(m);
        }
    }
    pthread_mutex_unlock(&c->mu);
    return h;
}

static gpr_timespec deadline_in(int64_t timeout_ms) {
    if (timeout_ms <= 0) return gpr_inf_future(GPR_CLOCK_MONOTONIC);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

/* The receiving side of one call: where the six-op batch puts what comes back. */
typedef struct {
    grpc_metadata_array init_md;  /* initial metadata, owned */
    grpc_metadata_array trail_md; /* trailing metadata, owned */
    grpc_byte_buffer *recv;       /* the response message, owned; NULL if none */
    grpc_status_code status;      /* the call's status */
    grpc_slice details;           /* its message, owned */
    const char *error_string;     /* gRPC's debug string, owned (gpr_free) */
} call_recv;

static void recv_init(call_recv *r) {
    memset(r, 0, sizeof *r);
    grpc_metadata_array_init(&r->init_md);
    grpc_metadata_array_init(&r->trail_md);
    r->details = grpc_empty_slice();
}

static void recv_release(call_recv *r) {
    grpc_metadata_array_destroy(&r->init_md);
    grpc_metadata_array_destroy(&r->trail_md);
    if (r->recv) grpc_byte_buffer_destroy(r->recv);
    grpc_slice_unref(r->details);
    gpr_free((void *)r->error_string);
    recv_init(r);
}

/* Starts the six-op unary batch of call, sending send, receiving into r, tagged tag. */
static grpc_call_error start_unary_batch(grpc_call *call, grpc_byte_buffer *send, call_recv *r,
                                         void *tag) {
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &r->init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &r->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &r->trail_md;
    ops[5].data.recv_status_on_client.status = &r->status;
    ops[5].data.recv_status_on_client.status_details = &r->details;
    ops[5].data.recv_status_on_client.error_string = &r->error_string;
    return grpc_call_start_batch(call, ops, 6, tag, NULL);
}

/* The status of a finished call as kiln's code (gRPC's numbers; anything unknown is UNKNOWN). */
static kl_grpc_code code_of(grpc_status_code s) {
    return s >= GRPC_STATUS_OK && s <= GRPC_STATUS_UNAUTHENTICATED ? (kl_grpc_code)s
                                                                   : KL_GRPC_UNKNOWN;
}

kl_status kl_grpc_call_unary(kl_grpc_channel *c, const char *method, const uint8_t *req, size_t len,
                             int64_t timeout_ms, kl_grpc_reply *out) {
    memset(out, 0, sizeof *out);
    void *h = method_handle(c, method);
    if (!h) return kl_seterr(KL_ENOMEM, "%s: registering the method", method);
    grpc_slice s = grpc_slice_malloc(len);
    if (len) memcpy(GRPC_SLICE_START_PTR(s), req, len);
    grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    /* A queue of its own per call: the call is the only thing on it, so draining is simple. */
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    grpc_call *call = grpc_channel_create_registered_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                                          h, deadline_in(timeout_ms), NULL);
    call_recv r;
    recv_init(&r);
    kl_status st = KL_OK;
    int tag = 0;
    grpc_call_error e = call ? start_unary_batch(call, send, &r, &tag) : GRPC_CALL_ERROR;
    if (e != GRPC_CALL_OK) {
        st = kl_seterr(KL_EINTERNAL, "%s: gRPC refused to start the call (error %d)", method, e);
    } else {
        grpc_event ev;
        do
            ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        while (ev.type != GRPC_OP_COMPLETE || ev.tag != &tag);
        out->code = code_of(r.status);
        out->message = grpc_slice_to_c_string(r.details); /* gpr_malloc'd: copy to malloc */
        char *m = strdup(out->message ? out->message : "");
        gpr_free(out->message);
        out->message = m;
        if (r.recv && out->message) {
            grpc_byte_buffer_reader rd;
            if (grpc_byte_buffer_reader_init(&rd, r.recv)) {
                grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
                grpc_byte_buffer_reader_destroy(&rd);
                out->len = GRPC_SLICE_LENGTH(all);
                out->data = malloc(out->len ? out->len : 1);
                if (out->data) memcpy(out->data, GRPC_SLICE_START_PTR(all), out->len);
                grpc_slice_unref(all);
                if (!out->data)
                    st = kl_seterr(KL_ENOMEM, "%s: %zu response bytes", method, out->len);
            } else {
                out->code = KL_GRPC_INTERNAL;
                free(out->message);
                out->message = strdup("the response message could not be read (bad compression)");
            }
        }
        if (!out->message && st == KL_OK) st = kl_seterr(KL_ENOMEM, "%s: status message", method);
    }
    recv_release(&r);
    grpc_byte_buffer_destroy(send);
    if (call) grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
    if (st != KL_OK) kl_grpc_reply_free(out);
    return st;
}

void kl_grpc_reply_free(kl_grpc_reply *r) {
    if (!r) return;
    free(r->message);
    free(r->data);
    memset(r, 0, sizeof *r);
}

/* --- payloads ----------------------------------------------------------------------------- */

struct kl_grpc_payload {
    grpc_slice slice; /* the bytes; each send takes its own reference, none copies */
};

kl_status kl_grpc_payload_create(const uint8_t *bytes, size_t len, kl_grpc_payload **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return kl_seterr(KL_ENOMEM, "request payload of %zu bytes", len);
    (*out)->slice = grpc_slice_malloc(len);
    if (len) memcpy(GRPC_SLICE_START_PTR((*out)->slice), bytes, len);
    return KL_OK;
}

void kl_grpc_payload_free(kl_grpc_payload *p) {
    if (!p) return;
    grpc_slice_unref(p->slice);
    free(p);
}

/* --- the pool ----------------------------------------------------------------------------- */

/* One call slot: everything a call needs, allocated once with the pool. */
typedef struct {
    kl_grpc_pool *pool;        /* owner */
    int index;                 /* its slot number */
    grpc_completion_queue *cq; /* the queue its calls complete on */
    kl_grpc_channel *ch;       /* the channel its calls go to */
    void *method;              /* registered-call handle on ch */
    pthread_mutex_t mu;        /* guards call and busy against kl_grpc_pool_cancel_all */
    int busy;                  /* a call is in flight */
    grpc_call *call;           /* that call, one ref owned */
    grpc_byte_buffer *send;    /* the request, owned until the call completes */
    call_recv r;               /* what comes back */
    int64_t start_ns;          /* when the call started */
    char message[256];         /* the status message, truncated, for the callback */
} pool_slot;

struct kl_grpc_pool {
    pool_slot *slots;            /* [n_slots] */
    int n_slots;                 /* slots */
    grpc_completion_queue **cqs; /* [n_threads], one per thread */
    pthread_t *threads;          /* [n_threads] */
    int n_threads;               /* threads */
    int n_started;               /* threads actually started */
    kl_grpc_done_fn on_done;     /* completion callback */
    void *user;                  /* its argument */
    atomic_int in_flight;        /* calls started and not yet through their callback */
    pthread_mutex_t idle_mu;     /* with idle_cv: waiting for in_flight to reach 0 */
    pthread_cond_t idle_cv;      /* signalled when in_flight drops to 0 */
};

/* Takes a finished call off its slot, then reports it. */
static void slot_finish(pool_slot *s, int success) {
    kl_grpc_pool *p = s->pool;
    kl_grpc_completion c;
    c.end_ns = kl_grpc_now_ns();
    c.start_ns = s->start_ns;
    c.code = code_of(s->r.status);
    size_t n = GRPC_SLICE_LENGTH(s->r.details);
    if (n >= sizeof s->message) n = sizeof s->message - 1;
    memcpy(s->message, GRPC_SLICE_START_PTR(s->r.details), n);
    s->message[n] = '\0';
    if (!success) { /* not expected for a client batch; say so rather than report OK */
        c.code = KL_GRPC_INTERNAL;
        snprintf(s->message, sizeof s->message, "the call's batch failed");
    }
    c.message = s->message;
    c.resp_len = s->r.recv ? grpc_byte_buffer_length(s->r.recv) : 0;
    pthread_mutex_lock(&s->mu);
    grpc_call *call = s->call;
    s->call = NULL;
    s->busy = 0;
    pthread_mutex_unlock(&s->mu);
    grpc_call_unref(call);
    grpc_byte_buffer_destroy(s->send);
    s->send = NULL;
    recv_release(&s->r);
    p->on_done(p->user, s->index, &c);
    if (atomic_fetch_sub(&p->in_flight, 1) == 1) {
        pthread_mutex_lock(&p->idle_mu);
        pthread_cond_broadcast(&p->idle_cv);
        pthread_mutex_unlock(&p->idle_mu);
    }
}

static void *pool_thread(void *arg) {
    grpc_completion_queue *cq = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type == GRPC_OP_COMPLETE) slot_finish(ev.tag, ev.success);
    }
    return NULL;
}

kl_status kl_grpc_pool_create(kl_grpc_channel *const *channels, int n_channels, const char *method,
                              const kl_grpc_pool_opts *o, kl_grpc_pool **out) {
    *out = NULL;
    if (n_channels < 1 || o->slots < 1 || o->threads < 1 || !o->on_done)
        return kl_seterr(KL_EINVAL, "call pool: %d channels, %d slots, %d threads (each >= 1)",
                         n_channels, o->slots, o->threads);
    kl_grpc_pool *p = calloc(1, sizeof *p);
    if (!p) return kl_seterr(KL_ENOMEM, "call pool");
    p->n_slots = o->slots;
    p->n_threads = o->threads;
    p->on_done = o->on_done;
    p->user = o->user;
    atomic_init(&p->in_flight, 0);
    pthread_mutex_init(&p->idle_mu, NULL);
    pthread_cond_init(&p->idle_cv, NULL);
    p->slots = calloc((size_t)p->n_slots, sizeof *p->slots);
    p->cqs = calloc((size_t)p->n_threads, sizeof *p->cqs);
    p->threads = calloc((size_t)p->n_threads, sizeof *p->threads);
    if (!p->slots || !p->cqs || !p->threads) {
        free(p->slots);
        p->slots = NULL;
        p->n_slots = 0;
        kl_grpc_pool_free(p);
        return kl_seterr(KL_ENOMEM, "call pool of %d slots", o->slots);
    }
    for (int t = 0; t < p->n_threads; t++)
        p->cqs[t] = grpc_completion_queue_create_for_next(NULL);
    for (int i = 0; i < p->n_slots; i++) {
        pool_slot *s = &p->slots[i];
        s->pool = p;
        s->index = i;
        s->cq = p->cqs[i % p->n_threads];
        s->ch = channels[i % n_channels];
        pthread_mutex_init(&s->mu, NULL);
        recv_init(&s->r);
    }
    for (int i = 0; i < p->n_slots; i++) {
        pool_slot *s = &p->slots[i];
        s->method = method_handle(s->ch, method);
        if (!s->method) {
            kl_grpc_pool_free(p);
            return kl_seterr(KL_ENOMEM, "%s: registering the method", method);
        }
    }
    for (int t = 0; t < p->n_threads; t++) {
        if (pthread_create(&p->threads[t], NULL, pool_thread, p->cqs[t])) {
            kl_grpc_pool_free(p);
            return kl_seterr(KL_EINTERNAL, "call pool: cannot start thread %d", t);
        }
        p->n_started++;
    }
    *out = p;
    return KL_OK;
}

kl_status kl_grpc_pool_start(kl_grpc_pool *p, int slot, const kl_grpc_payload *req,
                             int64_t timeout_ms) {
    if (slot < 0 || slot >= p->n_slots)
        return kl_seterr(KL_EINVAL, "call slot %d of %d", slot, p->n_slots);
    pool_slot *s = &p->slots[slot];
    pthread_mutex_lock(&s->mu);
    if (s->busy) {
        pthread_mutex_unlock(&s->mu);
        return kl_seterr(KL_EINVAL, "call slot %d is busy", slot);
    }
    grpc_slice body = req->slice; /* grpc_raw_byte_buffer_create takes its own reference */
    s->send = grpc_raw_byte_buffer_create(&body, 1);
    s->call = grpc_channel_create_registered_call(s->ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq,
                                                  s->method, deadline_in(timeout_ms), NULL);
    s->start_ns = kl_grpc_now_ns();
    atomic_fetch_add(&p->in_flight, 1);
    grpc_call_error e = s->call ? start_unary_batch(s->call, s->send, &s->r, s) : GRPC_CALL_ERROR;
    if (e != GRPC_CALL_OK) {
        if (s->call) grpc_call_unref(s->call);
        s->call = NULL;
        grpc_byte_buffer_destroy(s->send);
        s->send = NULL;
        recv_release(&s->r);
        pthread_mutex_unlock(&s->mu);
        if (atomic_fetch_sub(&p->in_flight, 1) == 1) {
            pthread_mutex_lock(&p->idle_mu);
            pthread_cond_broadcast(&p->idle_cv);
            pthread_mutex_unlock(&p->idle_mu);
        }
        return kl_seterr(KL_EINTERNAL, "gRPC refused to start a call (error %d)", e);
    }
    s->busy = 1;
    pthread_mutex_unlock(&s->mu);
    return KL_OK;
}

void kl_grpc_pool_cancel_all(kl_grpc_pool *p) {
    for (int i = 0; i < p->n_slots; i++) {
        pool_slot *s = &p->slots[i];
        pthread_mutex_lock(&s->mu);
        if (s->call) grpc_call_cancel(s->call, NULL);
        pthread_mutex_unlock(&s->mu);
    }
}

void kl_grpc_pool_wait_idle(kl_grpc_pool *p) {
    pthread_mutex_lock(&p->idle_mu);
    while (atomic_load(&p->in_flight) > 0)
        pthread_cond_wait(&p->idle_cv, &p->idle_mu);
    pthread_mutex_unlock(&p->idle_mu);
}

void kl_grpc_pool_free(kl_grpc_pool *p) {
    if (!p) return;
    if (p->n_started > 0 && p->slots) {
        kl_grpc_pool_cancel_all(p);
        kl_grpc_pool_wait_idle(p);
    }
    for (int t = 0; t < p->n_threads && p->cqs; t++)
        if (p->cqs[t]) grpc_completion_queue_shutdown(p->cqs[t]);
    for (int t = 0; t < p->n_started; t++)
        pthread_join(p->threads[t], NULL);
    for (int t = 0; t < p->n_threads && p->cqs; t++) {
        if (!p->cqs[t]) continue;
        if (t >= p->n_started) /* no thread drained it: do it here */
            while (grpc_completion_queue_next(p->cqs[t], gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
                       .type != GRPC_QUEUE_SHUTDOWN) {
            }
        grpc_completion_queue_destroy(p->cqs[t]);
    }
    for (int i = 0; i < p->n_slots && p->slots; i++) {
        recv_release(&p->slots[i].r);
        pthread_mutex_destroy(&p->slots[i].mu);
    }
    pthread_mutex_destroy(&p->idle_mu);
    pthread_cond_destroy(&p->idle_cv);
    free(p->slots);
    free(p->cqs);
    free(p->threads);
    free(p);
}
