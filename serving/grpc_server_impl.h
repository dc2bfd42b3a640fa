/* grpc_server_impl.h — the gRPC server's structures, shared by its two files: grpc_server.c
 * (calls, unary methods, dispatch, lifecycle) and grpc_streams.c (ModelStreamInfer, Health/Watch,
 * ServerReflectionInfo). Not for other modules: the two files are one module, the only one (with
 * serving/grpc_client.c on the client side) that calls the gRPC core API.
 *
 * Locking: s->mu guards the server's list of open streams and its live count; c->mu guards a
 * stream call's state and every grpc_call_start_batch on it. Where both are held, s->mu is taken
 * first.
 */
#ifndef KL_GRPC_SERVER_IMPL_H
#define KL_GRPC_SERVER_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h> /* calls, batches, byte buffers, slices */

#include "serving/grpc_server.h"
#include "serving/oip_service.h" /* kl_oip_method_fn */
#include "serving/reflection.h"  /* kl_reflection */

typedef enum {
    M_UNARY,        /* answered on the CQ thread */
    M_INFER,        /* ModelInfer: answered by the model manager's done callback */
    M_BLOCKING,     /* answered from a worker thread (repository load/unload) */
    M_SERVER,       /* ServerLive/Ready/Metadata, Health/Check: need the server's state */
    M_STREAM_INFER, /* ModelStreamInfer: bidi */
    M_WATCH,        /* Health/Watch: one request, a stream of answers */
    M_REFLECT,      /* ServerReflectionInfo (v1 and v1alpha): bidi */
} method_kind;

/* A server-state method's handler (ServerLive, ServerReady, ServerMetadata, Health/Check). */
typedef kl_grpc_code (*server_fn)(kl_grpc_server *s, const uint8_t *req, size_t len, uint8_t **resp,
                                  size_t *resp_len);

typedef struct {
    const char *path;    /* "/package.Service/Method" */
    method_kind kind;    /* how it is served */
    kl_oip_method_fn fn; /* M_UNARY, M_BLOCKING: the handler over the manager */
    server_fn sfn;       /* M_SERVER: the handler over the server */
} method_def;

typedef enum { T_NEW, T_READ, T_WRITE, T_CLOSE, N_TAGS } tag_kind;

typedef struct call_ctx call_ctx;

/* A completion-queue tag: which completion, of which call. */
typedef struct {
    tag_kind kind; /* what completed */
    call_ctx *c;   /* whose */
} call_tag;

/* A stream answer waiting for the send in flight to complete. */
typedef struct out_msg {
    grpc_byte_buffer *bb; /* the message, owned */
    struct out_msg *next; /* the next in line */
} out_msg;

struct call_ctx {
    kl_grpc_server *s;          /* the server */
    const method_def *m;        /* the method; NULL for one kiln does not serve */
    int cq;                     /* index of the completion queue it lives on */
    grpc_call *call;            /* the call (NULL until one arrives), one ref owned */
    grpc_call_details details;  /* method path, host, deadline */
    grpc_metadata_array req_md; /* request metadata (unused so far, owned) */
    call_tag tags[N_TAGS];      /* this call's tags, by kind */
    atomic_int refs;            /* batches in flight + manager requests + workers (+ NEW) */
    grpc_byte_buffer *recv;     /* target of the RECV_MESSAGE in flight; owned when set */
    int cancelled;              /* RECV_CLOSE_ON_SERVER: whether the client cancelled */
    /* --- streams: guarded by mu, as is every start_batch on a stream --- */
    pthread_mutex_t mu;        /* the call's lock */
    grpc_byte_buffer *sending; /* the message of the send in flight, owned */
    int writing;               /* a send (message or status) is in flight */
    out_msg *q_head, *q_tail;  /* answers waiting to be sent */
    int q_len;                 /* entries in the queue */
    int in_manager;            /* ModelStreamInfer requests the manager has not answered */
    int reading;               /* a RECV_MESSAGE is in flight */
    int half_closed;           /* the client sent its last message */
    int finishing;             /* the server is stopping: read no more, end once answered */
    int ending;                /* end with end_code once the queue is sent (a fatal error) */
    kl_grpc_code end_code;     /* ... that code */
    char end_msg[256];         /* ... and message */
    int dead;                  /* cancelled or failed: send nothing more */
    int md_sent;               /* initial metadata went out */
    int status_sent;           /* the final status went out (or is in flight) */
    int watching;              /* Health/Watch: its request was read */
    int watch_status;          /* Health/Watch: the last status sent */
    int watch_known;           /* Health/Watch: the service is one kiln reports on */
    call_ctx *prev, *next;     /* in the server's list of open streams */
    int listed;                /* whether it is in that list */
};

struct kl_grpc_server {
    grpc_server *server;        /* the gRPC server */
    grpc_completion_queue **cq; /* one completion queue per thread */
    pthread_t *threads;         /* the polling threads, one per CQ */
    int n;                      /* completion queues (and threads) */
    int n_started;              /* threads actually started */
    kl_model_manager *mm;       /* models answered for, borrowed */
    kl_reflection *refl;        /* the reflection index, owned */
    double grace;               /* seconds in-flight calls may run after stop begins */
    int shutdown_tag;           /* its address tags grpc_server_shutdown_and_notify */
    atomic_int stopping;        /* set once stop began: health NOT_SERVING, no reposts */
    pthread_mutex_t mu;         /* guards live, streams and shutdown_done */
    pthread_cond_t cv;          /* signalled when live drops or shutdown_done is set */
    long live;                  /* call contexts not yet freed (posted ones included) */
    call_ctx *streams;          /* open stream calls (finished when stop begins) */
    int shutdown_done;          /* the shutdown tag came back */
};

/* --- shared by grpc_server.c and grpc_streams.c --------------------------------------------- */

/* grpc_server.c: drops a call's queued stream answers (under c->mu, or when no one else can
 * reach the call). */
void gs_drop_queue(call_ctx *c);

/* grpc_server.c: drops one reference to a call; the last frees it. */
void gs_unref(call_ctx *c);

/* grpc_server.c: starts a batch tagged `t`, holding a reference for it. Returns 0, or -1 (no
 * reference held). */
int gs_start(call_ctx *c, const grpc_op *ops, size_t n, tag_kind t);

/* grpc_server.c: wraps a malloc'd buffer (owned from here on) as a byte buffer, no copy. */
grpc_byte_buffer *gs_wrap_bytes(uint8_t *buf, size_t len);

/* grpc_server.c: flattens a received message into one slice (the caller unrefs it); 0 if it
 * cannot be read. */
int gs_read_bytes(grpc_byte_buffer *bb, grpc_slice *out);

/* grpc_streams.c: a stream call arrived: list it, watch for cancellation, read. */
void gs_stream_begin(call_ctx *c);

/* grpc_streams.c: a stream's RECV_MESSAGE completed. */
void gs_on_stream_read(call_ctx *c, int success);

/* grpc_streams.c: a stream's send (message or status) completed. */
void gs_on_stream_write(call_ctx *c, int success);

/* grpc_streams.c: under s->mu and c->mu, once stopping began: finish the stream after its
 * answers are sent. */
void gs_finish_locked(call_ctx *c);

#endif /* KL_GRPC_SERVER_IMPL_H */
