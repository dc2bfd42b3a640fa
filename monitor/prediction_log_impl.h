/* prediction_log_impl.h — the prediction log's state, shared by its files: prediction_log.c (the
 * queue, sampling, the writer thread, JSONL files), prediction_log_db.c (the SQLite and
 * PostgreSQL sinks) and feedback.c (the join of labels with predictions, live accuracy, the REST
 * body). Not for other modules.
 */
#ifndef KL_PREDICTION_LOG_IMPL_H
#define KL_PREDICTION_LOG_IMPL_H

#include <libpq-fe.h> /* PGconn */
#include <pthread.h>
#include <sqlite3.h> /* sqlite3 */
#include <stdatomic.h>
#include <stdio.h>

#include "runtime/strbuf.h"
#include "monitor/prediction_log.h"

#define PL_MAX_MODELS 64 /* models with their own counters; more share the last slot */
#define PL_ID_MAX 64     /* request id bytes kept for the join (longer ids: prefix + hash) */

enum { PL_PREDICTION = 0, PL_FEEDBACK = 1 };
enum { PL_SINK_JSONL, PL_SINK_SQLITE, PL_SINK_PG };

/* Appends s as a JSON string, quotes included. */
void pl_json_string(kl_strbuf *b, const char *s);

/* A record as the writer gets it out of the queue (pointers into the writer's scratch). */
typedef struct {
    int type;              /* PL_PREDICTION or PL_FEEDBACK */
    int model_slot;        /* index into models[] */
    int64_t time_ms;       /* UTC ms since the epoch */
    const char *id;        /* request id */
    const char *model;     /* model */
    const char *version;   /* version */
    int64_t rows;          /* rows (feedback: labels) */
    int64_t n_features;    /* columns of inputs */
    int64_t n_outputs;     /* columns of outputs */
    const float *inputs;   /* rows x n_features (predictions) */
    const float *outputs;  /* rows x n_outputs (predictions) */
    const int64_t *labels; /* rows (feedback) */
} pl_record;

/* The counters of one model. */
typedef struct {
    char name[128];      /* model */
    kl_counter *records; /* kiln_prediction_log_records_total{model} */
    kl_counter *dropped; /* kiln_prediction_log_dropped_total{model} */
} pl_model;

/* Live accuracy of one model version. */
typedef struct {
    char model[128];       /* model */
    char version[32];      /* version */
    uint8_t *window;       /* ring of accuracy_window hits (1) and misses (0), owned */
    int win_pos, win_n;    /* next slot, slots filled */
    int64_t win_correct;   /* hits in the window */
    int64_t rows, correct; /* since start */
    kl_counter *c_rows;    /* kiln_feedback_rows_total */
    kl_counter *c_correct; /* kiln_feedback_correct_total */
    kl_gauge *g_window;    /* kiln_live_accuracy{window=N} */
    kl_gauge *g_all;       /* kiln_live_accuracy{window="all"} */
} pl_version;

/* One request remembered for the join. */
typedef struct {
    char id[PL_ID_MAX]; /* its id (first PL_ID_MAX-1 bytes) */
    uint64_t hash;      /* hash of the whole id */
    int32_t next;       /* next entry in its bucket, -1 at the end */
    int32_t ver;        /* index into versions[] */
    int64_t row0;       /* absolute position of its first class in the class ring */
    int32_t rows;       /* its rows */
    int32_t labelled;   /* feedback was joined already */
} pl_entry;

/* The join window (feedback.c); every field is guarded by mu. */
typedef struct {
    pthread_mutex_t mu;
    pl_entry *e;          /* ring of entries, cap of them */
    size_t cap;           /* entries (= rows kept: a request has >= 1 row) */
    size_t first, n;      /* oldest entry, entries held */
    int64_t *classes;     /* ring of predicted classes, cap of them */
    int64_t next_row;     /* absolute position of the next class */
    int32_t *buckets;     /* id hash -> first entry, -1 = none; n_buckets of them */
    size_t n_buckets;     /* a power of two */
    pl_version *versions; /* per model version, n_versions used of PL_MAX_MODELS * 4 */
    int n_versions;
    int window; /* accuracy_window */
} pl_join;

struct kl_prediction_log {
    kl_prediction_log_opts o; /* options (dest copied) */
    char *dest;               /* owned copy of o.dest */
    kl_metrics *metrics;      /* the registry (borrowed) */
    uint64_t sample_cut;      /* ids hashing below this are sampled; UINT64_MAX = all */
    int sample_all;           /* rate >= 1 */
    /* the queue */
    pthread_mutex_t mu;     /* guards the ring, models, stop */
    pthread_cond_t cv;      /* wakes the writer early (queue filling, or stop) */
    int writer_idle;        /* the writer waits on cv */
    unsigned char *ring;    /* queue_bytes of records */
    size_t cap, head, used; /* ring size, read position, bytes queued */
    int stop;               /* free began: drain and leave */
    pthread_t writer;       /* the writer thread */
    int writer_started;
    pl_model models[PL_MAX_MODELS]; /* per-model counters */
    int n_models;
    atomic_ullong written, dropped, sampled_out, failed; /* kl_prediction_log_counts */
    /* the sink (writer thread only after create) */
    int kind;             /* PL_SINK_* */
    char *where;          /* the sink for messages (password hidden), owned */
    FILE *f;              /* JSONL: the current file */
    long long file_no;    /* JSONL: its number */
    uint64_t file_bytes;  /* JSONL: bytes in it */
    char table[64];       /* SQL: the table */
    sqlite3 *db;          /* SQLite */
    sqlite3_stmt *insert; /* SQLite: the prepared INSERT */
    PGconn *pg;           /* PostgreSQL */
    int in_tx;            /* SQL: a transaction is open */
    int tx_records;       /* SQL: records in it */
    int reported;         /* a sink error was printed (once per burst) */
    kl_strbuf line;       /* the writer's text scratch */
    pl_join join;         /* feedback */
};

/* Formats r's "inputs"/"outputs"/"labels" arrays (JSON) into b. */
void pl_json_matrix(kl_strbuf *b, const float *x, int64_t rows, int64_t cols);
void pl_json_labels(kl_strbuf *b, const int64_t *l, int64_t n);
/* "2026-11-28T19:30:00.123Z" */
void pl_time_text(int64_t ms, char out[32]);

/* Queues a feedback record (the request path's copy; drops when full). */
void pl_enqueue_feedback(kl_prediction_log *l, const char *id, const char *model,
                         const char *version, const int64_t *labels, int64_t n);

/* The model's counter slot (takes nothing; mu held). */
int pl_model_slot(kl_prediction_log *l, const char *model);

/* --- prediction_log_db.c: open (create the table), write one record, commit, close --------- */
kl_status pl_db_open(kl_prediction_log *l, const char *target);
kl_status pl_db_write(kl_prediction_log *l, const pl_record *r);
kl_status pl_db_commit(kl_prediction_log *l);
void pl_db_close(kl_prediction_log *l);

/* --- feedback.c ------------------------------------------------------------------------------ */
kl_status pl_join_init(kl_prediction_log *l);
void pl_join_free(pl_join *j);
/* Remembers a prediction (request path). */
void pl_join_add(kl_prediction_log *l, const kl_prediction *p);

#endif
