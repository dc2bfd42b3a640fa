/* tracker.h — asynchronous run tracking that never slows or stops training.
 *
 * The caller enqueues operations (create the run, params, tags, metrics, dataset inputs,
 * artifacts, a logged model, registration, the run's end); a background thread sends them to
 * MLflow in order, metrics grouped into log-batch requests within MLflow's limits. The metric
 * path copies into a bounded ring under a short lock: no allocation, no I/O.
 *
 * When MLflow cannot be reached (no connection, 5xx, timeouts, rejected credentials), the thread
 * appends every pending operation, in order, to an on-disk spool for this run — one JSON line
 * each, fsynced per batch — and keeps replaying it; when the server answers again, the spool is
 * sent from where it stopped and then removed. A spool left at exit (server still down) is sent
 * later by `kiln tracking sync`. Progress through a spool is recorded after each operation, so
 * nothing is lost and nothing is sent twice.
 *
 * Spool layout: <spool_dir>/<key>/ops.jsonl and <key>/state.json ({"done": N, "run_id": ...,
 * "experiment_id": ..., "artifact_uri": ...}). */
#ifndef KL_TRACKER_H
#define KL_TRACKER_H

#include <stdint.h>

#include "tracking/mlflow.h"

typedef struct kl_tracker kl_tracker;

typedef struct {
    const char *experiment; /* experiment name (created if missing) */
    const char *run_name;   /* run name */
    const char *spool_dir;  /* where spools go (default $KILN_SPOOL_DIR or ~/.cache/kiln/spool) */
    int queue_capacity;     /* ring slots (default 65536) */
    kl_mlflow_opts client;  /* connection settings (zeroed: environment) */
} kl_tracker_opts;

/* What a finished tracker reports. */
typedef struct {
    char run_id[64];        /* the MLflow run id ("" if the run could not be created yet) */
    char experiment_id[64]; /* its experiment */
    char spool[1024];       /* the spool directory left behind, or "" if all was delivered */
    int64_t ops_sent;       /* operations delivered */
    int64_t ops_spooled;    /* operations written to the spool */
    int64_t ops_rejected;   /* operations MLflow refused as invalid (reported, not retried) */
    char last_error[512];   /* the last delivery error, or "" */
} kl_tracker_summary;

/* Starts a tracker and enqueues the run's creation with its tags. Fails only for local reasons
 * (no tracking URI, out of memory, thread creation); an unreachable server is not an error. */
kl_status kl_tracker_start(const kl_tracker_opts *opts, const kl_kv *tags, int n_tags,
                           kl_tracker **out);

/* Enqueue operations (copied; the caller keeps ownership of its arguments). */
void kl_tracker_params(kl_tracker *t, const kl_kv *params, int n);
void kl_tracker_tags(kl_tracker *t, const kl_kv *tags, int n);
void kl_tracker_metric(kl_tracker *t, const char *key, double value, int64_t step);
void kl_tracker_inputs(kl_tracker *t, const kl_mlflow_dataset *ds, int n);
/* A file, or every file under a directory, uploaded to the run's artifacts at artifact_path. */
void kl_tracker_artifact(kl_tracker *t, const char *local_path, const char *artifact_path);
/* An MLflow 3 logged model from a bundle directory, linked to the run as its output at step;
 * with register_name, also a new version of that registered model (created if missing) with
 * the given version tags. */
void kl_tracker_logged_model(kl_tracker *t, const char *name, const char *bundle_dir, int64_t step,
                             const kl_kv *params, int n_params, const char *register_name,
                             const kl_kv *version_tags, int n_vtags);

/* Ends the run with status ("FINISHED", "FAILED", "KILLED"), waits up to wait_s seconds for
 * delivery, spools what is left, stops the thread and frees t. summary may be NULL. */
kl_status kl_tracker_finish(kl_tracker *t, const char *status, double wait_s,
                            kl_tracker_summary *summary);

/* Replays every spool under spool_dir (NULL: the default). Prints one line per spool to
 * stderr when verbose. Returns KL_OK if every spool was delivered and removed. */
kl_status kl_tracker_sync(const char *spool_dir, const kl_mlflow_opts *client, int verbose);

#endif
