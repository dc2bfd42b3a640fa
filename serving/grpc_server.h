/* grpc_server.h — the gRPC front end: inference.GRPCInferenceService and grpc.health.v1.Health.
 *
 * The one module that calls gRPC (core C API, libgrpc 1.51). Calls are taken generically
 * (grpc_server_request_call) and dispatched by method path; every method not served answers
 * UNIMPLEMENTED. Each call is unary: read the request, answer initial metadata + message +
 * status in one batch. Inference runs on the completion-queue threads themselves (no batcher
 * yet), through serving/model_store.
 *
 * Lifecycle: kl_grpc_server_start (grpc_init, bind, threads) ... kl_grpc_server_stop (stop
 * accepting, let in-flight calls finish, drain, join, grpc_shutdown). The caller handles
 * signals: block SIGINT/SIGTERM in every thread before start (gRPC's threads inherit the mask)
 * and sigwait for them.
 */
#ifndef KL_GRPC_SERVER_H
#define KL_GRPC_SERVER_H

#include "runtime/status.h"
#include "serving/model_store.h" /* the models answered for */

typedef struct {
    const char *host;      /* address to bind, e.g. "127.0.0.1" or "0.0.0.0" */
    int port;              /* TCP port; 0 picks a free one */
    int threads;           /* completion-queue threads (one CQ each), >= 1 */
    int max_message_bytes; /* largest request accepted, bytes (gRPC's default is 4 MiB) */
    double grace_seconds;  /* on stop, how long in-flight calls may run before being cancelled */
} kl_grpc_server_opts;

/* Defaults: 127.0.0.1:8001, 2 threads, 64 MiB messages, 10 s grace. */
kl_grpc_server_opts kl_grpc_server_defaults(void);

typedef struct kl_grpc_server kl_grpc_server;

/* Starts serving store (borrowed: it must outlive the server) on opts' address, insecure.
 * Fails if the port is taken (SO_REUSEPORT is off). On KL_OK *out is running and *bound_port is
 * the port bound; stop it with kl_grpc_server_stop. */
kl_status kl_grpc_server_start(const kl_grpc_server_opts *opts, kl_model_store *store,
                               kl_grpc_server **out, int *bound_port);

/* Stops accepting calls, lets in-flight ones finish (cancelling them after the grace period),
 * drains and joins the threads, and frees everything (then grpc_shutdown). Safe on NULL. */
void kl_grpc_server_stop(kl_grpc_server *s);

#endif
