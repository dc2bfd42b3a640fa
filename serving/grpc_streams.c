/* grpc_streams.c — the gRPC server's streaming calls: ModelStreamInfer, Health/Watch and
 * ServerReflectionInfo (v1 and v1alpha). Part of the server module (grpc_server.c dispatches the
 * completions here; the shared structures are in grpc_server_impl.h).
 *
 * Streams keep at most one RECV_MESSAGE and one SEND batch in flight, as gRPC requires. Answers
 * that are ready while a send is in flight wait in a per-call queue under the call's mutex; each
 * send completion starts the next. Every grpc_call_start_batch on a stream happens under that
 * mutex. Reading pauses while STREAM_WINDOW answers are owed, so a client that does not read
 * cannot make the server buffer without bound. ModelStreamInfer answers in completion order;
 * errors travel in error_message and the stream goes on; the client's half-close ends the call
 * with OK once every answer is sent. When the server stops, open streams are finished
 * (gs_finish_locked): watchers hear NOT_SERVING, inference streams send what they owe.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h> /* grpc_byte_buffer_destroy */
#include <grpc/grpc.h>        /* calls, batches */
#include <grpc/slice.h>       /* grpc_slice */

#include "serving/grpc_server_impl.h" /* call_ctx, kl_grpc_server, gs_start and friends */
#include "serving/health.h"           /* grpc.health.v1 statuses and messages */
#include "serving/oip_service.h"      /* the stream's answers, the infer decoder */
#include "serving/reflection.h"       /* kl_reflection_answer */

/* Answers one stream may owe (in the manager or queued to send) before it stops reading. */
#define STREAM_WINDOW 64

/* Whether the stream is done: every answer it owes is sent and nothing more will come. */
static int stream_complete(const call_ctx *c) {
    if (c->q_head || c->in_manager) return 0;
    if (c->ending) return 1;
    if (c->m->kind == M_WATCH) /* a watch ends at shutdown, once its request is answered */
        return c->finishing && (c->watching || c->half_closed);
    return c->half_closed || c->finishing;
}

/* Under c->mu: starts the next send if none is in flight — the next queued answer, or the final
 * status once the stream is complete. */
static void pump_locked(call_ctx *c) {
    if (c->writing || c->status_sent || c->dead) return;
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!c->md_sent) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (c->q_head) {
        out_msg *o = c->q_head;
        c->q_head = o->next;
        if (!c->q_head) c->q_tail = NULL;
        c->q_len--;
        c->sending = o->bb;
        free(o);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->sending;
        if (gs_start(c, ops, n, T_WRITE)) {
            c->dead = 1;
            gs_drop_queue(c);
            return;
        }
    } else if (stream_complete(c)) {
        kl_grpc_code code = KL_GRPC_OK;
        const char *msg = "";
        if (c->ending) {
            code = c->end_code;
            msg = c->end_msg;
        } else if (c->finishing && !c->half_closed && c->m->kind != M_WATCH) {
            code = KL_GRPC_UNAVAILABLE;
            msg = "kiln is stopping: requests after the last answer were not processed";
        }
        grpc_slice details = grpc_slice_from_copied_string(msg);
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.status = (grpc_status_code)code;
        ops[n++].data.send_status_from_server.status_details = &details;
        c->status_sent = 1;
        if (gs_start(c, ops, n, T_WRITE)) c->dead = 1;
        grpc_slice_unref(details);
        if (c->dead) return;
    } else {
        return;
    }
    c->md_sent = 1;
    c->writing = 1;
}

/* Under c->mu: queues an answer (buf: malloc'd, owned from here on) and pumps. */
static void enqueue_locked(call_ctx *c, uint8_t *buf, size_t len) {
    if (c->dead || c->status_sent) {
        free(buf);
        return;
    }
    out_msg *o = malloc(sizeof *o);
    if (!o) {
        free(buf);
        c->ending = 1;
        c->end_code = KL_GRPC_RESOURCE_EXHAUSTED;
        snprintf(c->end_msg, sizeof c->end_msg, "out of memory queueing an answer");
    } else {
        o->bb = gs_wrap_bytes(buf, len);
        o->next = NULL;
        if (c->q_tail)
            c->q_tail->next = o;
        else
            c->q_head = o;
        c->q_tail = o;
        c->q_len++;
    }
    pump_locked(c);
}

/* Under c->mu: ends the stream with `code` after what is queued (a fatal error). */
static void end_locked(call_ctx *c, kl_grpc_code code, const char *msg) {
    if (!c->ending) {
        c->ending = 1;
        c->end_code = code;
        snprintf(c->end_msg, sizeof c->end_msg, "%s", msg);
    }
    pump_locked(c);
}

/* Under c->mu: posts the next RECV_MESSAGE when the stream wants one and has room. */
static void read_locked(call_ctx *c) {
    if (c->reading || c->half_closed || c->ending || c->dead || c->status_sent) return;
    if (c->m->kind == M_WATCH) {
        if (c->watching) return; /* Watch takes one request (read even when stopping) */
    } else if (c->finishing) {
        return;
    }
    if (c->in_manager + c->q_len >= STREAM_WINDOW) return; /* resumed by a send completion */
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv;
    if (gs_start(c, &op, 1, T_READ) == 0)
        c->reading = 1;
    else
        c->dead = 1;
}

/* ModelStreamInfer's done callback (a batcher thread, or inline): queue the answer. */
static void stream_infer_done(void *user, const kl_oip_request *req, const kl_infer_result *res) {
    call_ctx *c = user;
    uint8_t *buf = NULL;
    size_t len = 0;
    kl_status st = kl_oip_service_stream_response(req, res, &buf, &len); /* outside the lock */
    pthread_mutex_lock(&c->mu);
    c->in_manager--;
    if (st == KL_OK)
        enqueue_locked(c, buf, len);
    else
        end_locked(c, KL_GRPC_RESOURCE_EXHAUSTED, "out of memory encoding an answer");
    read_locked(c);
    pthread_mutex_unlock(&c->mu);
    gs_unref(c); /* the manager's reference */
}

/* One ModelStreamInfer request: to the manager, or an in-band error. */
static void stream_infer_one(call_ctx *c, const uint8_t *p, size_t len) {
    kl_oip_request r;
    kl_clearerr();
    kl_grpc_code code = kl_oip_decode_infer_resolve(p, len, kl_model_manager_resolve, c->s->mm, &r);
    if (code != KL_GRPC_OK) {
        uint8_t *buf = NULL;
        size_t blen = 0;
        kl_status st = kl_oip_encode_stream_response(kl_errmsg(), NULL, 0, &buf, &blen);
        pthread_mutex_lock(&c->mu);
        if (st == KL_OK)
            enqueue_locked(c, buf, blen);
        else
            end_locked(c, KL_GRPC_RESOURCE_EXHAUSTED, "out of memory encoding an answer");
        pthread_mutex_unlock(&c->mu);
        return;
    }
    pthread_mutex_lock(&c->mu);
    c->in_manager++;
    pthread_mutex_unlock(&c->mu);
    atomic_fetch_add(&c->refs, 1); /* the manager's, dropped by stream_infer_done */
    kl_model_manager_infer(c->s->mm, &r, stream_infer_done, c);
    kl_oip_request_free(&r);
}

/* The Health/Watch request: answer the current status; later changes come from stop. */
static void watch_one(call_ctx *c, const uint8_t *p, size_t len) {
    char *svc = NULL;
    kl_clearerr();
    kl_grpc_code code = kl_health_decode_request(p, len, &svc);
    pthread_mutex_lock(&c->mu);
    c->watching = 1;
    if (code != KL_GRPC_OK) {
        end_locked(c, code, kl_errmsg());
    } else {
        /* Under c->mu, so a concurrent stop either sees watching (and sends NOT_SERVING after
         * this) or set finishing before (and this reads stopping as set). */
        c->watch_status = kl_health_of(svc, atomic_load(&c->s->stopping));
        c->watch_known = c->watch_status != KL_HEALTH_SERVICE_UNKNOWN;
        uint8_t *buf = NULL;
        size_t blen = 0;
        if (kl_health_encode_response((kl_health_status)c->watch_status, &buf, &blen) == KL_OK)
            enqueue_locked(c, buf, blen);
        else
            end_locked(c, KL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    }
    pthread_mutex_unlock(&c->mu);
    free(svc);
}

/* One ServerReflectionInfo request: answered at once, in order. */
static void reflect_one(call_ctx *c, const uint8_t *p, size_t len) {
    uint8_t *buf = NULL;
    size_t blen = 0;
    kl_clearerr();
    kl_grpc_code code = kl_reflection_answer(c->s->refl, p, len, &buf, &blen);
    pthread_mutex_lock(&c->mu);
    if (code == KL_GRPC_OK)
        enqueue_locked(c, buf, blen);
    else
        end_locked(c, code, kl_errmsg());
    pthread_mutex_unlock(&c->mu);
}

/* A stream's RECV_MESSAGE completed. */
void gs_on_stream_read(call_ctx *c, int success) {
    pthread_mutex_lock(&c->mu);
    c->reading = 0;
    grpc_byte_buffer *bb = c->recv;
    c->recv = NULL;
    if (!success || !bb) {
        c->half_closed = 1; /* the client's last message (or the call ended) */
        if (c->m->kind == M_WATCH && !c->watching)
            end_locked(c, KL_GRPC_INVALID_ARGUMENT, "Watch needs a HealthCheckRequest");
        pump_locked(c);
        pthread_mutex_unlock(&c->mu);
        if (bb) grpc_byte_buffer_destroy(bb);
        return;
    }
    /* Stopping: requests not yet handed to the manager are not started (the status says so). */
    int drop = c->dead || c->status_sent || (c->finishing && c->m->kind == M_STREAM_INFER);
    pthread_mutex_unlock(&c->mu);
    grpc_slice req;
    int ok = !drop && gs_read_bytes(bb, &req);
    grpc_byte_buffer_destroy(bb);
    if (!drop && !ok) {
        pthread_mutex_lock(&c->mu);
        end_locked(c, KL_GRPC_INVALID_ARGUMENT, "request message could not be decompressed");
        pthread_mutex_unlock(&c->mu);
    } else if (ok) {
        const uint8_t *p = GRPC_SLICE_START_PTR(req);
        size_t len = GRPC_SLICE_LENGTH(req);
        if (c->m->kind == M_STREAM_INFER)
            stream_infer_one(c, p, len);
        else if (c->m->kind == M_WATCH)
            watch_one(c, p, len);
        else
            reflect_one(c, p, len);
        grpc_slice_unref(req);
    }
    pthread_mutex_lock(&c->mu);
    read_locked(c);
    pump_locked(c);
    pthread_mutex_unlock(&c->mu);
}

/* A stream's send (message or status) completed. */
void gs_on_stream_write(call_ctx *c, int success) {
    pthread_mutex_lock(&c->mu);
    if (c->sending) grpc_byte_buffer_destroy(c->sending);
    c->sending = NULL;
    c->writing = 0;
    if (!success) {
        c->dead = 1; /* the client went away: nothing more can be sent */
        gs_drop_queue(c);
    }
    pump_locked(c);
    read_locked(c);
    pthread_mutex_unlock(&c->mu);
}

/* Under s->mu and c->mu: stopping began — finish the stream once its answers are sent (a
 * watcher first hears NOT_SERVING). */
void gs_finish_locked(call_ctx *c) {
    /* dead or status_sent also covers a context whose last reference just went (its status
     * was sent or it was cancelled), about to leave the list: nothing may be started on it. */
    if (c->finishing || c->dead || c->status_sent) return;
    c->finishing = 1;
    if (c->m->kind == M_WATCH && c->watching && c->watch_known &&
        c->watch_status != KL_HEALTH_NOT_SERVING) {
        uint8_t *buf = NULL;
        size_t len = 0;
        c->watch_status = KL_HEALTH_NOT_SERVING;
        if (kl_health_encode_response(KL_HEALTH_NOT_SERVING, &buf, &len) == KL_OK)
            enqueue_locked(c, buf, len);
    }
    pump_locked(c);
}

/* A stream call arrived: list it (so stop can finish it), watch for cancellation, read. */
void gs_stream_begin(call_ctx *c) {
    kl_grpc_server *s = c->s;
    pthread_mutex_lock(&s->mu);
    c->listed = 1;
    c->next = s->streams;
    if (s->streams) s->streams->prev = c;
    s->streams = c;
    pthread_mutex_lock(&c->mu);
    if (atomic_load(&s->stopping)) c->finishing = 1; /* arrived as stop began */
    pthread_mutex_unlock(&s->mu);
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    if (gs_start(c, &op, 1, T_CLOSE)) c->dead = 1;
    read_locked(c);
    pump_locked(c);
    pthread_mutex_unlock(&c->mu);
}
