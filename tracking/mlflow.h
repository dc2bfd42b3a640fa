/* mlflow.h — a C client for MLflow's REST API (tracking, artifacts, logged models, registry).
 *
 * tracking/ is self-contained (it could be lifted out as its own library): it knows MLflow and
 * HTTP, nothing of kiln's models or data. The connection comes from the same environment
 * variables MLflow's own clients read: MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME/PASSWORD
 * (basic), MLFLOW_TRACKING_TOKEN (bearer), MLFLOW_TRACKING_SERVER_CERT_PATH,
 * MLFLOW_TRACKING_INSECURE_TLS. Requests reuse one connection, time out, and retry connection
 * errors, 408, 429 and 5xx with exponential backoff and jitter, honouring Retry-After. MLflow's
 * error bodies ({"error_code","message"}) become the kl_errmsg() text, with the HTTP status.
 *
 * A client is not thread-safe: one per thread (the async logger owns its own). */
#ifndef KL_MLFLOW_H
#define KL_MLFLOW_H

#include <stdint.h>

#include "runtime/status.h"

typedef struct kl_mlflow kl_mlflow;

/* Connection settings; zero/NULL fields take the environment's value, then the default. The
 * variables are MLflow's own: MLFLOW_HTTP_REQUEST_TIMEOUT, MLFLOW_HTTP_REQUEST_MAX_RETRIES and
 * MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR (the first backoff). A negative max_retries means none. */
typedef struct {
    const char *uri;       /* "http(s)://host:port[/prefix]"; NULL: MLFLOW_TRACKING_URI */
    double timeout_s;      /* per request (default 30) */
    int max_retries;       /* retries after the first try (default 5) */
    double backoff_base_s; /* first backoff (default 0.5), doubled each retry, +-50% jitter */
    double backoff_max_s;  /* cap on one backoff (default 30); Retry-After may ask for more */
} kl_mlflow_opts;

/* Opens a client. KL_ENOTFOUND if no URI is given and MLFLOW_TRACKING_URI is unset. */
kl_status kl_mlflow_open(const kl_mlflow_opts *opts, kl_mlflow **out);
void kl_mlflow_close(kl_mlflow *c);

/* The tracking URI in use (without credentials). */
const char *kl_mlflow_uri(const kl_mlflow *c);

/* HTTP status of the last request (0 if it never got a response). */
int kl_mlflow_last_http_status(const kl_mlflow *c);

/* MLflow's error_code of the last answer ("RESOURCE_DOES_NOT_EXIST", ...), or "". */
const char *kl_mlflow_last_error_code(const kl_mlflow *c);

/* Any REST call: method ("GET", "POST", "PATCH", "DELETE") on path (from "/api/...", with its
 * query string), json_body or NULL. On success *response (if not NULL) gets the answer's text,
 * which the caller frees. Retried like every call, except a POST/PATCH/DELETE that may already
 * have reached the server. */
kl_status kl_mlflow_request(kl_mlflow *c, const char *method, const char *path,
                            const char *json_body, char **response);

/* ---- experiments and runs ---------------------------------------------------------------- */

typedef struct {
    const char *key;   /* tag or param key */
    const char *value; /* its value */
} kl_kv;

typedef struct {
    const char *key; /* metric name, e.g. "train/loss" or "system/cpu_utilization_percentage" */
    double value;    /* NaN and infinities are sent as MLflow expects */
    int64_t timestamp_ms; /* ms since the epoch */
    int64_t step;         /* training step */
} kl_metric;

/* Finds the experiment by name or creates it (race-safe); id gets the experiment id. */
kl_status kl_mlflow_experiment(kl_mlflow *c, const char *name, char id[64]);

typedef struct {
    char run_id[64];        /* the new run's id */
    char artifact_uri[512]; /* e.g. "mlflow-artifacts:/1/<run_id>/artifacts" */
} kl_mlflow_run;

kl_status kl_mlflow_create_run(kl_mlflow *c, const char *experiment_id, const char *run_name,
                               int64_t start_ms, const kl_kv *tags, int n_tags, kl_mlflow_run *out);

/* status: "RUNNING", "FINISHED", "FAILED" or "KILLED". */
kl_status kl_mlflow_update_run(kl_mlflow *c, const char *run_id, const char *status,
                               int64_t end_ms);

/* Logs any number of metrics, params and tags, cut into requests within MLflow's limits
 * (1000 metrics, 100 params, 100 tags, 1000 entries, 1 MB per request). Param values are cut to
 * 6000 bytes and tag values to 5000 (UTF-8 safe); a param repeated with the same value is sent
 * once, with another value it is KL_EINVAL (MLflow params are write-once). Metric values go out
 * bit-exact; NaN and infinities as MLflow's "NaN"/"Infinity" strings (the server clips
 * infinities to +-1.797e308). Requests are resent safely: the server keeps one copy of a metric
 * point with the same key, value, timestamp and step. */
kl_status kl_mlflow_log_batch(kl_mlflow *c, const char *run_id, const kl_metric *metrics,
                              int n_metrics, const kl_kv *params, int n_params, const kl_kv *tags,
                              int n_tags);

/* One dataset input of a run (runs/log-inputs). */
typedef struct {
    const char *name;        /* dataset name */
    const char *digest;      /* e.g. "sha256:<hex>"; MLflow keeps <= 36 chars: a longer one is sent
                                as its first 36 hex digits, without the "sha256:" */
    const char *source_type; /* e.g. "local" */
    const char *source;      /* JSON text, e.g. {"uri": "/path"} */
    const char *schema;      /* JSON text or NULL */
    const char *profile;     /* JSON text or NULL */
    const char *context;     /* "train", "validation" or "test" (the mlflow.data.context tag) */
} kl_mlflow_dataset;

kl_status kl_mlflow_log_inputs(kl_mlflow *c, const char *run_id, const kl_mlflow_dataset *ds,
                               int n);

/* A run as runs/get returns it, the parts kiln reads. Strings point into memory the struct
 * owns: free it with kl_mlflow_run_info_free. */
typedef struct {
    char run_id[64];        /* the run's id */
    char experiment_id[64]; /* its experiment */
    char run_name[256];     /* its name */
    char status[16];        /* "RUNNING", "FINISHED", "FAILED" or "KILLED" */
    char artifact_uri[512]; /* its artifact root */
    kl_kv *tags;            /* [n_tags] */
    int n_tags;             /* tags */
    kl_kv *params;          /* [n_params] */
    int n_params;           /* params */
    kl_metric *metrics;     /* [n_metrics] the latest value of each metric */
    int n_metrics;          /* metrics */
    const char **model_ids; /* [n_models] logged models recorded as the run's outputs */
    int n_models;           /* logged model outputs */
    void *mem;              /* owns the strings (the parsed answer) */
} kl_mlflow_run_info;

/* Reads a run (KL_ENOTFOUND if there is none). */
kl_status kl_mlflow_get_run(kl_mlflow *c, const char *run_id, kl_mlflow_run_info *out);
void kl_mlflow_run_info_free(kl_mlflow_run_info *r);

/* The value of a tag (or NULL), and the latest value of a metric (NaN if absent). */
const char *kl_mlflow_run_tag(const kl_mlflow_run_info *r, const char *key);
double kl_mlflow_run_metric(const kl_mlflow_run_info *r, const char *key);

/* ---- artifacts ------------------------------------------------------------------------------ */

/* Uploads a local file to <artifact_uri>/<artifact_path> (artifact_path may hold '/'), streamed
 * from disk, through the server's artifact proxy. */
kl_status kl_mlflow_upload_file(kl_mlflow *c, const char *artifact_uri, const char *local_path,
                                const char *artifact_path);

/* Uploads every regular file under local_dir to <artifact_uri>/<artifact_dir>/... */
kl_status kl_mlflow_upload_dir(kl_mlflow *c, const char *artifact_uri, const char *local_dir,
                               const char *artifact_dir);

/* Downloads <artifact_uri>/<artifact_path> (a file or a directory, recursively) to local_path,
 * streaming to disk. artifact_uri may also be "runs:/<run_id>[/path]" or
 * "models:/<model_id>[/path]" (a logged model); both resolve to where the files live. A file
 * becomes local_path itself; a directory's files go under local_path/. */
kl_status kl_mlflow_download(kl_mlflow *c, const char *artifact_uri, const char *artifact_path,
                             const char *local_path);

/* One entry of an artifact directory. */
typedef struct {
    char *path;   /* name within the listed directory (owned) */
    int is_dir;   /* 1 for a directory */
    int64_t size; /* bytes (files only) */
} kl_mlflow_file;

/* Lists <artifact_uri>/<artifact_path> (not recursive). *files is malloc'd (free it with
 * kl_mlflow_files_free); a missing directory, or a file, lists as empty. */
kl_status kl_mlflow_list_artifacts(kl_mlflow *c, const char *artifact_uri,
                                   const char *artifact_path, kl_mlflow_file **files, int *n);
void kl_mlflow_files_free(kl_mlflow_file *files, int n);

/* ---- MLflow 3 logged models --------------------------------------------------------------- */

typedef struct {
    char model_id[80];      /* "m-<32 hex>" */
    char artifact_uri[512]; /* where its files go */
} kl_mlflow_logged_model;

/* Creates a logged model linked to run_id (source run) and records it as the run's output. */
kl_status kl_mlflow_create_logged_model(kl_mlflow *c, const char *experiment_id, const char *run_id,
                                        const char *name, int64_t step, const kl_kv *params,
                                        int n_params, kl_mlflow_logged_model *out);

/* ready: 1 → LOGGED_MODEL_READY, 0 → LOGGED_MODEL_UPLOAD_FAILED. */
kl_status kl_mlflow_finalize_logged_model(kl_mlflow *c, const char *model_id, int ready);

/* Reads a logged model's id and artifact URI (KL_ENOTFOUND if there is none). */
kl_status kl_mlflow_get_logged_model(kl_mlflow *c, const char *model_id,
                                     kl_mlflow_logged_model *out);

/* ---- registry -------------------------------------------------------------------------------- */

/* Creates the registered model if missing. */
kl_status kl_mlflow_registered_model(kl_mlflow *c, const char *name, const char *description);

/* Creates a new version from source (e.g. "models:/m-..." or a run's artifact URI); version
 * receives its number as text. */
kl_status kl_mlflow_create_model_version(kl_mlflow *c, const char *name, const char *source,
                                         const char *run_id, const char *model_id,
                                         const kl_kv *tags, int n_tags, char version[32]);

/* Points alias at version (moving it if it pointed elsewhere). */
kl_status kl_mlflow_set_alias(kl_mlflow *c, const char *name, const char *alias,
                              const char *version);
/* Sets tag key=value on model version NAME/VERSION (replacing an earlier value). */
kl_status kl_mlflow_set_version_tag(kl_mlflow *c, const char *name, const char *version,
                                    const char *key, const char *value);
/* The version alias points at; KL_ENOTFOUND if the model or the alias does not exist. */
kl_status kl_mlflow_get_alias(kl_mlflow *c, const char *name, const char *alias, char version[32]);

/* The artifact URI a model version's files live at (model-versions/get-download-uri). */
kl_status kl_mlflow_model_version_uri(kl_mlflow *c, const char *name, const char *version,
                                      char uri[512]);

/* Resolves "models:/NAME/VERSION", "models:/NAME@ALIAS" or "models:/<logged model id>" to the
 * artifact URI of its files. version (NULL, or 32 bytes) receives the version number ("" for a
 * logged model). */
kl_status kl_mlflow_models_uri(kl_mlflow *c, const char *uri, char artifact_uri[512],
                               char *version);

#endif
