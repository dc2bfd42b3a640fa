/* model_manager.h — the models a server answers for: versions, batchers, traffic, statistics.
 *
 * The one object both front ends (serving/grpc_server.c and serving/http_server.c) talk to.
 * A model has one or more loaded versions; each version is a bundle held as a kl_mlp plus its
 * own dynamic batcher (serving/batcher.h) and statistics. Models come from
 *   - `NAME=BUNDLE_DIR` or `NAME=models:/NAME@ALIAS|/VERSION` specs (kl_model_manager_add), and
 *   - a repository folder in Triton's layout, REPO/NAME/VERSION/ (each VERSION a bundle dir),
 * and both are polled: a new version loads in the background and swaps in atomically; requests
 * already queued or running finish on the version they were routed to; a version that fails to
 * load is reported in the repository index and the old one keeps serving.
 *
 * Traffic per model: requests that name a version go to it; others go through the model's
 * policy — the champion alone (blue-green is the champion changing), canary (a share of the
 * requests to the challenger, sticky per request id when one is given) or shadow (every request
 * also copied to the challenger; its answer compared and counted, never returned).
 *
 * Pure C: front ends hand decoded requests in (serving/oip_codec.h) and get results back through
 * a callback. No gRPC or HTTP call lives here.
 */
#ifndef KL_MODEL_MANAGER_H
#define KL_MODEL_MANAGER_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"
#include "serving/metrics.h"   /* kl_metrics, for kl_model_manager_metrics */
#include "serving/oip_codec.h" /* kl_grpc_code, kl_oip_request, kl_oip_model_sig */

/* How a model version batches requests (Triton's dynamic_batching settings). */
typedef struct {
    int dynamic;                 /* 1: requests queue and form batches; 0: each runs alone */
    int max_batch;               /* rows in one batch, and in one request (>= 1) */
    int preferred[8];            /* preferred batch sizes (rows), ascending */
    int n_preferred;             /* entries used in preferred */
    uint64_t max_queue_delay_us; /* longest a request waits for a batch to fill, µs */
    uint32_t max_queue_size;     /* requests queued before RESOURCE_EXHAUSTED; 0 = unbounded */
    uint64_t default_timeout_us; /* queue timeout of a request that sets none; 0 = none */
    uint32_t priority_levels;    /* priority queues, 1 = highest (>= 1) */
    uint32_t default_priority;   /* level of a request that sets none (1..priority_levels) */
    int instances;               /* model instances (one thread and arena each), >= 1 */
} kl_batch_opts;

/* Defaults: dynamic on, max_batch 256, no preferred sizes, 0 µs delay (a free instance takes
 * whatever queued while it was busy), queue 4096, no timeout, 1 priority level, 1 instance. */
kl_batch_opts kl_batch_opts_defaults(void);

/* Which versions of a repository model are served. */
typedef enum {
    KL_VERSIONS_LATEST,   /* the highest n versions (n = 1 by default) */
    KL_VERSIONS_ALL,      /* every version in the folder */
    KL_VERSIONS_SPECIFIC, /* the listed ones */
} kl_version_policy_kind;

typedef struct {
    kl_version_policy_kind kind;
    int latest_n;        /* KL_VERSIONS_LATEST: how many */
    int64_t specific[8]; /* KL_VERSIONS_SPECIFIC: the versions */
    int n_specific;      /* entries used in specific */
} kl_version_policy;

typedef struct {
    kl_batch_opts batch;      /* batching of every version */
    kl_version_policy policy; /* repository version policy */
    const char *repository;   /* Triton-layout folder, or NULL */
    double poll_seconds;      /* how often the repository and registry aliases are re-read;
                               * 0 = load once, never poll */
    int explicit_control;     /* 1: repository models load only by RepositoryModelLoad */
    const char *device;       /* "cpu" (default), "cuda[:N]" or "auto" */
} kl_model_manager_opts;

kl_model_manager_opts kl_model_manager_defaults(void);

typedef struct kl_model_manager kl_model_manager;

/* Creates a manager with opts (copied; repository string too) and loads the repository once
 * (unless explicit_control). Fails only on bad options or a repository folder that cannot be
 * read; models that fail to load are reported by the index instead. Free with ..._free. */
kl_status kl_model_manager_create(const kl_model_manager_opts *opts, kl_model_manager **out);

/* Loads "NAME=BUNDLE" (a bundle folder, or models:/NAME@ALIAS or models:/NAME/VERSION resolved
 * through the MLflow registry) and serves it as NAME; an @ALIAS spec is re-resolved on every poll
 * and swaps when the alias moves. Fails (kl_errmsg names the model) on a duplicate name or a
 * bundle that does not load. */
kl_status kl_model_manager_add(kl_model_manager *m, const char *spec);

/* A 64-bit hash of a request id (FNV-1a, then splitmix64's finaliser): what makes the canary
 * split sticky per id, and the prediction log's sampling. */
uint64_t kl_request_id_hash(const char *id);

/* Sets the traffic policy of NAME: "canary" sends `share` (0..1) of the requests that name no
 * version to the challenger; "shadow" copies each such request to the challenger; "none" drops
 * the challenger. The challenger is a spec as for _add ("models:/NAME@challenger", a folder) or,
 * for a repository model, a version number. Fails when the challenger's signature differs from
 * the champion's. */
kl_status kl_model_manager_set_traffic(kl_model_manager *m, const char *name, const char *mode,
                                       const char *challenger, double share);

/* Starts the polling thread (when poll_seconds > 0) and the batchers. */
kl_status kl_model_manager_start(kl_model_manager *m);

/* Stops accepting requests (new ones get UNAVAILABLE), lets every queued and running one
 * finish, stops the threads and frees everything. Safe on NULL. */
void kl_model_manager_free(kl_model_manager *m);

/* Number of models with at least one ready version. */
size_t kl_model_manager_count(const kl_model_manager *m);

/* --- inference ---------------------------------------------------------------------------- */

/* What a request's callback receives. On success code is KL_GRPC_OK, version names the version
 * that ran, probs is batch x n_classes FP32 and classes batch INT64; both are valid only during
 * the callback. On failure message says why. */
typedef struct {
    kl_grpc_code code;
    const char *message;
    const char *version;
    const float *probs;
    const int64_t *classes;
    int64_t batch;
    int64_t n_classes;
    uint64_t queue_ns;   /* time the request waited in the queue */
    uint64_t compute_ns; /* time its batch took to compute (input, forward, output) */
} kl_infer_result;

/* Called exactly once per request given to kl_model_manager_infer, on the caller's thread (an
 * immediate failure) or on a batcher thread; it must not block for long. req is the request as
 * given (still owned by the manager, freed after the callback returns). */
typedef void (*kl_infer_done_fn)(void *user, const kl_oip_request *req, const kl_infer_result *res);

/* A kl_oip_resolve_fn over the manager (ctx is the kl_model_manager): the signature the request
 * will be checked against — model `name`, at `version` ("" = the one its policy picks). */
kl_grpc_code kl_model_manager_resolve(void *ctx, const char *name, const char *version,
                                      kl_oip_model_sig *sig);

/* Routes a decoded, validated request (its contents are moved into the manager; *req is left
 * zeroed) through the model's traffic policy to a version's batcher. done(user, ...) reports the
 * outcome: NOT_FOUND (model or version gone since decoding), RESOURCE_EXHAUSTED (queue full),
 * DEADLINE_EXCEEDED (timed out in the queue), UNAVAILABLE (stopping), or the outputs. */
void kl_model_manager_infer(kl_model_manager *m, kl_oip_request *req, kl_infer_done_fn done,
                            void *user);

/* --- observers (the prediction log; monitors) ------------------------------------------------ */

/* Sees every request answered OK (shadow copies excluded): req as decoded (rows, id, labels) and
 * its result. Called on the batcher thread before the front end's callback, so the answer leaves
 * only after it returned: it must be quick, never block on I/O and not keep the pointers. */
typedef void (*kl_infer_observer_fn)(void *ctx, const kl_oip_request *req,
                                     const kl_infer_result *res);

#define KL_MAX_OBSERVERS 4

/* Adds an observer (at most KL_MAX_OBSERVERS). With assign_ids, a request that carries no id
 * gets a unique one made by the server ("kiln-<start time hex>-<n>"), which the response echoes
 * as if the client had sent it. Call before the front ends start: the list is read without a
 * lock. */
kl_status kl_model_manager_observe(kl_model_manager *m, kl_infer_observer_fn fn, void *ctx,
                                   int assign_ids);

/* A monitor keeps state per served version (a drift window, say): open is called once for each
 * version that loads (and, at registration, for each one already loaded), off the request path,
 * and returns the state (NULL: nothing to keep for this version); observe sees each request that
 * version answered OK (shadow copies excluded) with that state, under the observer rules above;
 * close is called once the version has left the table and its last request has finished (no
 * observe can run on the state any more), on the manager's housekeeping thread or in _free.
 * reference_json is the bundle's reference profile (NULL in older bundles) and feature_names its
 * [n_features] names (NULL when it has none); both only for the call. */
typedef struct {
    void *(*open)(void *ctx, const char *model, const char *version, const char *reference_json,
                  int n_features, char *const *feature_names);
    void (*observe)(void *ctx, void *state, const kl_oip_request *req, const kl_infer_result *res);
    void (*close)(void *ctx, void *state);
} kl_version_monitor;

#define KL_MAX_MONITORS 2

/* Adds a monitor (hooks copied; ctx borrowed, it must outlive the manager's versions, i.e. be
 * freed after kl_model_manager_free). Call before the front ends start; versions already loaded
 * are opened here. */
kl_status kl_model_manager_monitor(kl_model_manager *m, const kl_version_monitor *mon, void *ctx);

/* The registry the manager's metrics live in (and /metrics renders), for other modules' metrics
 * that should appear on the same page. Owned by the manager: valid until _free. */
kl_metrics *kl_model_manager_metrics(kl_model_manager *m);

/* --- model queries (for ModelReady/Metadata/Config/Statistics and the REST forms) ----------- */

/* Whether model `name` at `version` ("" = any) is ready to answer. */
int kl_model_manager_ready(kl_model_manager *m, const char *name, const char *version);

/* A model as its metadata and config report it; strings are owned by the struct. */
typedef struct {
    char *name;
    char **versions; /* ready versions, ascending */
    size_t n_versions;
    kl_oip_model_sig sig; /* of the version asked for (or the champion) */
    kl_batch_opts batch;  /* its batching */
    int on_gpu;           /* whether its versions run on a GPU */
} kl_model_info;

/* Fills *out for `name` at `version` ("" = the champion). NOT_FOUND with kl_errmsg() set for an
 * unknown model or version. Free with kl_model_info_free. */
kl_grpc_code kl_model_manager_info(kl_model_manager *m, const char *name, const char *version,
                                   kl_model_info *out);
void kl_model_info_free(kl_model_info *info);

/* Statistics of one version, as Triton's ModelStatistics reports them (durations in ns). */
typedef struct {
    uint64_t count, ns;
} kl_stat_duration;

/* Batches of one size: how many ran and their compute stages. */
typedef struct {
    uint64_t batch_size;
    kl_stat_duration compute_input, compute_infer, compute_output;
} kl_batch_size_stats;

typedef struct {
    char name[128];
    char version[32];
    uint64_t last_inference_ms; /* ms since the epoch of the last request answered; 0 = none */
    uint64_t inference_count;   /* rows answered */
    uint64_t execution_count;   /* batches run */
    kl_stat_duration success, fail, queue, compute_input, compute_infer, compute_output;
    size_t n_batch_sizes;             /* entries in batch_sizes */
    kl_batch_size_stats *batch_sizes; /* per batch size seen (owned) */
} kl_model_stats;

/* Snapshots the statistics of `name` ("" = every model) at `version` ("" = every version).
 * *out (n entries) is owned by the caller: free with kl_model_stats_free. NOT_FOUND for an
 * unknown model or version. */
kl_grpc_code kl_model_manager_stats(kl_model_manager *m, const char *name, const char *version,
                                    kl_model_stats **out, size_t *n);
void kl_model_stats_free(kl_model_stats *s, size_t n);

/* --- the repository (RepositoryIndex/Load/Unload) ------------------------------------------ */

typedef struct {
    char name[128];
    char version[32];
    char state[16];   /* "READY", "LOADING", "UNAVAILABLE", "UNLOADING" */
    char reason[256]; /* why not ready, "" otherwise */
} kl_repo_entry;

/* Lists every model and version the manager knows (ready only, when ready_only). *out is owned
 * by the caller (free). */
kl_status kl_model_manager_index(kl_model_manager *m, int ready_only, kl_repo_entry **out,
                                 size_t *n);

/* Loads (or reloads) repository model `name` now, synchronously. NOT_FOUND if the repository
 * has no such folder; INVALID_ARGUMENT / INTERNAL with the reason when it fails to load. */
kl_grpc_code kl_model_manager_load(kl_model_manager *m, const char *name);

/* Unloads model `name`: it stops taking requests and its versions free once their in-flight
 * requests finish. NOT_FOUND for an unknown model. */
kl_grpc_code kl_model_manager_unload(kl_model_manager *m, const char *name);

/* --- metrics -----------------------------------------------------------------------------------
 */

/* Appends the Prometheus text exposition of every serving metric (kiln_ names, base units) to
 * *buf (malloc'd, grown as needed; *len bytes used, *cap allocated). */
kl_status kl_model_manager_write_metrics(kl_model_manager *m, char **buf, size_t *len, size_t *cap);

/* Sets the gauges that describe the present (versions loaded, queue depths, traffic shares), as
 * write_metrics does before rendering: for in-process readers of the registry (alert rules). */
void kl_model_manager_refresh_gauges(kl_model_manager *m);

#endif
