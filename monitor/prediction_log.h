/* prediction_log.h — the serving prediction log: each answered request's inputs and outputs, and
 * the ground-truth labels that come back later (feedback), written asynchronously; and the join
 * of the two into live accuracy per model version.
 *
 * Request path (kl_prediction_log_record, kl_prediction_log_feedback): a sampling decision, a
 * copy of the record into a bounded byte ring under a mutex, nothing else: no I/O, no
 * allocation, never a wait for the writer. When the ring has no room the record is dropped and
 * counted (kiln_prediction_log_dropped_total{model}); the request is answered all the same. One
 * writer thread takes records out (the lock is not held while it writes) and writes them to the
 * sink, waking every 50 ms (or early, once the ring is an eighth full) rather than once per
 * record, so a record reaches its file within about 50 ms; kl_prediction_log_free writes everything
 * accepted before it returns (a clean stop loses nothing that was accepted).
 *
 * Sampling: a request is logged when a 64-bit hash of its request id (FNV-1a, splitmix64-mixed,
 * the one the canary split uses) falls under rate * 2^64: the same id is always in or always
 * out, whichever server or restart sees it, so a sample can be re-drawn from ids alone. The
 * server gives every request an id (kl_model_manager_observe with assign_ids), so all are
 * hashable. Feedback records are always written (they are few and each is worth keeping).
 *
 * Sinks (opts.dest):
 *   DIR                    rotating JSONL files DIR/predictions-000001.jsonl, -000002, ...: a new
 *                          file when the current one would pass max_file_bytes, at most max_files
 *                          kept (the oldest deleted); a restart continues the numbering in a new
 *                          file. Files are flushed whenever the writer has nothing queued.
 *   sqlite:PATH[?table=T]  one row per record in table T (default "prediction_log")
 *   postgresql://...[?table=T]  the same in PostgreSQL (libpq URI; see data/prediction_sink.h)
 *
 * JSONL format (one JSON object per line; the contract monitor/ readers such as drift reports
 * rely on):
 *   {"type":"prediction","time":"2026-11-28T19:30:00.123Z","request_id":"r1","model":"fmnist",
 *    "version":"1","inputs":[[f,...],...],"outputs":[[p,...],...]}
 *     inputs  rows x features: the FP32 input tensor as the client sent it (before the bundle's
 *             preprocessing), each value printed with 9 significant digits ("%.9g": read back as
 *             float32 it is the exact value sent); NaN and infinities as null
 *     outputs rows x outputs: what the server answered: class probabilities for a classifier,
 *             the prediction for a regression model, same printing
 *   {"type":"feedback","time":"...","request_id":"r1","model":"fmnist","version":"1",
 *    "labels":[3,7]}
 *     labels  the true class of each row of that request, in row order
 *   time is the UTC wall-clock time the record was accepted, in milliseconds.
 * The SQL table holds the same: columns id (integer key, insertion order), type, time,
 * request_id, model, version, inputs, outputs, labels — the last three as the JSON arrays above
 * (NULL where a record has none).
 *
 * Feedback join: the last join_rows predicted rows (every request, sampled or not) are kept in
 * memory by request id with their model, version and predicted classes. Labels for a request id
 * in that window are joined once (a second feedback for the same id is refused) and counted per
 * model version: kiln_feedback_rows_total{model,version}, kiln_feedback_correct_total
 * {model,version}, and the gauges kiln_live_accuracy{model,version,window="1000"} (the last
 * accuracy_window labelled rows; the label value is that number) and {...,window="all"} (since
 * start). Metrics are created in the registry given at creation (the server's /metrics page).
 */
#ifndef KL_PREDICTION_LOG_H
#define KL_PREDICTION_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"
#include "serving/metrics.h" /* kl_metrics: the counters and gauges named above */

typedef struct {
    const char *dest;        /* DIR, sqlite:PATH or postgresql://URI (see above) */
    double sample;           /* share of requests logged, 0..1 */
    size_t queue_bytes;      /* room of the queue between requests and the writer, bytes */
    uint64_t max_file_bytes; /* JSONL: a file is closed before it would pass this size */
    int max_files;           /* JSONL: files kept (>= 1); older ones are deleted */
    size_t join_rows;        /* feedback: predicted rows remembered for the join */
    int accuracy_window;     /* feedback: labelled rows in the windowed live accuracy */
} kl_prediction_log_opts;

/* Defaults: sample 1, queue 64 MiB, files of 64 MiB, 10 files, 100000 rows joined, window 1000. */
kl_prediction_log_opts kl_prediction_log_defaults(void);

typedef struct kl_prediction_log kl_prediction_log;

/* Opens the sink (creates the directory, or the table), creates the metrics in `metrics`
 * (borrowed: it must outlive the log) and starts the writer. Fails with a message naming the
 * destination. Free with kl_prediction_log_free. */
kl_status kl_prediction_log_create(const kl_prediction_log_opts *opts, kl_metrics *metrics,
                                   kl_prediction_log **out);

/* Stops accepting, writes everything queued, closes the sink and frees. No record or feedback
 * call may be running or start. Safe on NULL. */
void kl_prediction_log_free(kl_prediction_log *l);

/* One answered request, as the server saw it. Pointers are borrowed for the call. */
typedef struct {
    const char *request_id; /* never empty (the server assigns ids) */
    const char *model;      /* model name */
    const char *version;    /* the version that answered */
    const float *inputs;    /* rows x n_features, as sent */
    int64_t rows;           /* rows in the request */
    int64_t n_features;     /* columns of inputs */
    const float *outputs;   /* rows x n_outputs, as answered */
    int64_t n_outputs;      /* columns of outputs */
    const int64_t *classes; /* rows predicted classes (for the join), or NULL: no join */
    const int64_t *labels;  /* rows true classes given with the request, or NULL */
} kl_prediction;

/* Request path: remembers p for the feedback join, queues its record when sampled, and when
 * p->labels is set, joins them at once (as kl_prediction_log_feedback would). Never blocks on
 * the writer; a full queue drops the record (counted). */
void kl_prediction_log_record(kl_prediction_log *l, const kl_prediction *p);

/* Joins labels[0..n) with request `request_id` of `model` (NULL or "": whichever model answered
 * it) and queues the feedback record. KL_OK with *rows set to the rows joined; KL_ENOTFOUND when
 * the id is not in the join window (never seen, or too old, or another model's); KL_EINVAL when
 * n is not the request's row count, a label is negative, or the id already has labels; the
 * message says which. */
kl_status kl_prediction_log_feedback(kl_prediction_log *l, const char *model,
                                     const char *request_id, const int64_t *labels, int64_t n,
                                     int64_t *rows);

/* The REST form of feedback (POST /v2/models/NAME/feedback, or POST /v2/feedback with model
 * NULL): body is one object {"request_id":"r1","labels":[3,7]} ("label":3 for a one-row
 * request) or an array of such objects. Returns the HTTP status and sets *answer (malloc'd JSON,
 * the caller's):
 *   200 {"accepted":A,"rows":R,"unknown":U,"rejected":J,"unknown_ids":[...],"errors":[...]}
 *       (a list: every item joined, unknown or rejected; up to 20 ids and messages listed)
 *   404 {"error":"..."}  one object whose request id is not in the join window
 *   400 {"error":"..."}  malformed JSON or an item without a string request_id and integer
 *       labels (the message names the item and the field; nothing is joined), or one object
 *       rejected (wrong number of labels, already labelled)
 * 500 only when out of memory. */
int kl_prediction_log_feedback_json(kl_prediction_log *l, const char *model, const char *body,
                                    size_t len, char **answer);

/* Counters for tests and reports: records written, dropped (queue full), and sampled out. */
typedef struct {
    uint64_t written;     /* records the sink took */
    uint64_t dropped;     /* records dropped for a full queue */
    uint64_t sampled_out; /* predictions not logged by sampling */
    uint64_t failed;      /* records the sink refused (I/O errors; reported on stderr) */
} kl_prediction_log_counts;

void kl_prediction_log_counts_get(kl_prediction_log *l, kl_prediction_log_counts *out);

#endif
