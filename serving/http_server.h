/* http_server.h — the HTTP front end: the Open Inference Protocol's REST form (KServe v2, as
 * Triton serves it, so tritonclient.http and perf_analyzer -i http work unchanged), the
 * Prometheus /metrics page, the active alerts and a monitoring dashboard that reads both.
 *
 * The one module that calls libmicrohttpd. A pool of MHD threads reads requests; bodies are
 * decoded by serving/oip_json.h and inference goes to serving/model_manager asynchronously: the
 * connection is suspended (MHD_suspend_connection) while the request waits for its batch, and
 * the batcher thread's callback resumes it, so no MHD thread ever blocks on a model. Repository
 * load/unload run on a short-lived thread of their own for the same reason.
 *
 * Routes (anything else: 404; a known path with the wrong method: 405 with Allow):
 *   GET  /v2/health/live, /v2/health/ready, /v2 (server metadata)
 *   GET  /v2/models/NAME[/versions/V]          model metadata
 *   GET  /v2/models/NAME[/versions/V]/ready    200, 404 unknown, 503 not ready
 *   GET  /v2/models/NAME[/versions/V]/config   Triton's JSON model configuration
 *   POST /v2/models/NAME[/versions/V]/infer    JSON or binary tensor data
 *   GET|POST /v2/models[/NAME[/versions/V]]/stats
 *   POST /v2/repository/index, /v2/repository/models/NAME/load, .../unload
 *   POST /v2/models/NAME/feedback, /v2/feedback  ground-truth labels by request id (see
 *                                              monitor/prediction_log.h; with a prediction log)
 *   GET  /metrics                              text/plain; version=0.0.4
 *   GET  /alerts                               the active alerts as JSON (opts.alerts_json;
 *                                              without it 404: no alert rules configured)
 *   GET  /dashboard                            an HTML page polling /metrics and /alerts
 *                                              (serving/dashboard.h), Cache-Control: no-store
 * Errors are {"error":"..."} with 400 (bad JSON, shape, ...), 404, 405, 413 (body over
 * max_body_bytes), 415 (unknown Content-Encoding), 429 (queue full), 503 (stopping, not ready),
 * 504 (deadline exceeded in the queue), 500.
 *
 * Lifecycle: kl_http_server_start ... [kl_http_server_set_stopping] ... kl_http_server_stop. The
 * model manager is borrowed: free it only after kl_http_server_stop has returned.
 */
#ifndef KL_HTTP_SERVER_H
#define KL_HTTP_SERVER_H

#include <stddef.h>

#include "runtime/status.h"
#include "monitor/prediction_log.h" /* feedback: labels joined with logged predictions */
#include "serving/model_manager.h"  /* the models answered for */

typedef struct {
    const char *host;      /* address to bind, e.g. "127.0.0.1" or "0.0.0.0" (IPv6 too) */
    int port;              /* TCP port; 0 picks a free one */
    int threads;           /* MHD threads (connections are spread over them), >= 1 */
    size_t max_body_bytes; /* largest request body accepted (after decompression), bytes */
    kl_prediction_log *prediction_log; /* feedback routes join labels here; NULL: they 404 */
    /* GET /alerts: mallocs the NUL-terminated JSON answer into *json (the server frees it);
     * called on an MHD thread, so it must not block for long. NULL: /alerts answers 404. */
    kl_status (*alerts_json)(void *ctx, char **json);
    void *alerts_ctx; /* handed to alerts_json (borrowed: outlives the server) */
} kl_http_server_opts;

/* Defaults: 127.0.0.1:8000, 4 threads, 64 MiB bodies, no alerts. */
kl_http_server_opts kl_http_server_defaults(void);

typedef struct kl_http_server kl_http_server;

/* Starts serving the models of m (borrowed) on opts' address. Fails (kl_errmsg says why) on bad
 * options or an address that cannot be bound. On KL_OK *out is running and *bound_port (when
 * not NULL) is the port bound. */
kl_status kl_http_server_start(const kl_http_server_opts *opts, kl_model_manager *m,
                               kl_http_server **out, int *bound_port);

/* Marks the server as stopping: /v2/health/ready answers 503 (live stays 200) so load
 * balancers drain it; everything else is still served. Safe from any thread, and on NULL. */
void kl_http_server_set_stopping(kl_http_server *s);

/* Stops: no new connections are accepted and new requests on open ones get 503; requests in
 * flight (those waiting in the model manager always, uploads for up to 10 s) finish and are
 * answered; then the threads stop and everything is freed. Returns only when no model-manager
 * callback can touch the server any more. Safe on NULL. */
void kl_http_server_stop(kl_http_server *s);

#endif
