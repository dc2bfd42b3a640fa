/* grpc_server.h — the gRPC front end: inference.GRPCInferenceService, grpc.health.v1.Health and
 * server reflection (grpc.reflection.v1 and v1alpha).
 *
 * The one module that calls gRPC (core C API, libgrpc 1.51). Calls are taken generically
 * (grpc_server_request_call) and dispatched by method path; every method not served answers
 * UNIMPLEMENTED. Inference goes to serving/model_manager asynchronously: the completion-queue
 * thread decodes the request and hands it over, and the answer is sent from the batcher thread
 * that computed it. ModelStreamInfer, Health/Watch and reflection are streams on one call.
 *
 * Lifecycle: kl_grpc_server_start (grpc_init, bind, threads) ... kl_grpc_server_stop (health
 * turns NOT_SERVING, open streams are finished, no new calls, in-flight ones complete, drain,
 * join, grpc_shutdown). The caller handles signals: block SIGINT/SIGTERM in every thread before
 * start (gRPC's threads inherit the mask) and sigwait for them; it frees the model manager only
 * after kl_grpc_server_stop returns.
 */
#ifndef KL_GRPC_SERVER_H
#define KL_GRPC_SERVER_H

#include "runtime/status.h"
#include "serving/model_manager.h" /* the models answered for */

typedef struct {
    const char *host;        /* address to bind, e.g. "127.0.0.1" or "0.0.0.0" */
    int port;                /* TCP port; 0 picks a free one */
    int threads;             /* completion-queue threads (one CQ each), >= 1 */
    int max_message_bytes;   /* largest request accepted, bytes (gRPC's default is 4 MiB) */
    double grace_seconds;    /* on stop, how long in-flight calls may run before being cancelled */
    const char *tls_cert;    /* PEM server certificate chain file; NULL = plaintext */
    const char *tls_key;     /* PEM private key file of tls_cert (required with it) */
    const char *tls_ca;      /* PEM CA bundle that client certificates must chain to; NULL =
                              * client certificates are not asked for */
    int require_client_cert; /* 1: refuse clients without a certificate tls_ca verifies */
} kl_grpc_server_opts;

/* Defaults: 127.0.0.1:8001, 2 threads, 64 MiB messages, 10 s grace, plaintext. */
kl_grpc_server_opts kl_grpc_server_defaults(void);

typedef struct kl_grpc_server kl_grpc_server;

/* Starts serving the models of m (borrowed: it must stay running until kl_grpc_server_stop has
 * returned) on opts' address, with TLS when opts->tls_cert is set. Fails if the port is taken
 * (SO_REUSEPORT is off), or on unreadable or inconsistent TLS files. On KL_OK *out is running and
 * *bound_port is the port bound; stop it with kl_grpc_server_stop. */
kl_status kl_grpc_server_start(const kl_grpc_server_opts *opts, kl_model_manager *m,
                               kl_grpc_server **out, int *bound_port);

/* Stops: health and ServerReady report NOT_SERVING, Health/Watch streams get NOT_SERVING and end
 * with OK, ModelStreamInfer streams stop reading, send the answers still owed and end with
 * UNAVAILABLE; no new calls are accepted; unary calls in flight (queued in the model manager
 * included) finish, being cancelled after the grace period; then the threads are joined and
 * everything is freed (then grpc_shutdown). Returns only when no model-manager callback can touch
 * the server any more. Safe on NULL. */
void kl_grpc_server_stop(kl_grpc_server *s);

#endif
