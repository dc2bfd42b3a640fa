/* prediction_sink.h — batch predictions written to a database table, chunk by chunk, resumable.
 *
 * A sink is opened from a target string:
 *   sqlite:PATH  or  sqlite:///ABSOLUTE/PATH          SQLite (the embedded default)
 *   postgresql://user:pass@host:port/db  (or postgres://...)   PostgreSQL through libpq
 * each with an optional "?table=NAME" (default "predictions"; an SQL identifier
 * [A-Za-z_][A-Za-z0-9_]*, at most 63 bytes). Other query parameters of a PostgreSQL URI go to
 * libpq unchanged (sslmode=..., connect_timeout=..., host=/socket/dir).
 *
 * The table (created if missing) has one row per input row:
 *   row_index    BIGINT PRIMARY KEY   the input row, 0-based (the CSV output's "index")
 *   prediction   TEXT                 the class name, or the number for regression ("%.9g")
 *   prob_<class> REAL / DOUBLE        one per class (classification only), the class name made
 *                                     an identifier: other bytes become '_', 63 bytes at most,
 *                                     and a clash (case-blind) gets a suffix _2, _3, ...
 *   model        TEXT                 the model as the user named it (directory or models:/ URI)
 *   input_digest TEXT                 the digest of the input's features ("sha256:...")
 *   scored_at    TEXT / TIMESTAMPTZ   when the chunk was written (UTC, ISO 8601)
 * Numbers are stored as the CSV output prints them (9 significant digits), so a value read back
 * equals the CSV's.
 *
 * Each chunk is one transaction (SQLite: one prepared INSERT per row between BEGIN and COMMIT;
 * PostgreSQL: one COPY FROM STDIN), so an interrupted run leaves whole chunks only. On open, the
 * sink reads how many leading rows the table already holds for this input and model; the writer
 * skips them and the primary key refuses any duplicate.
 */
#ifndef KL_PREDICTION_SINK_H
#define KL_PREDICTION_SINK_H

#include <stdint.h>

#include "runtime/status.h"

typedef struct kl_prediction_sink kl_prediction_sink;

typedef struct {
    const char *target;       /* "sqlite:..." or "postgresql://..." (see above) */
    const char *model;        /* stored in every row; a resume must name the same model */
    const char *input_digest; /* stored in every row; a resume must have the same digest */
    int n_classes;            /* classes (one prob_ column each), or 0 for regression */
    char *const *class_names; /* [n_classes] class names (copied); NULL for regression */
    int resume;               /* 0: a table that already holds rows is an error */
} kl_prediction_sink_config;

/* 1 when an --output value names a database rather than a file: it starts with "sqlite:" or
 * with a URI scheme ("postgresql://", "postgres://", or any other "scheme://", which
 * kl_prediction_sink_open then refuses by name). */
int kl_prediction_sink_is_target(const char *output);

/* A database target parsed (the same syntax, shared with the serving prediction log). */
typedef struct {
    int postgres;   /* 1: PostgreSQL (conn is a libpq URI); 0: SQLite (conn is a file path) */
    char *conn;     /* what to open: the SQLite path, or the URI less kiln's table=, owned */
    char *where;    /* the target for messages, password hidden, owned */
    char table[64]; /* the table: table=NAME, else default_table */
} kl_db_target;

/* Parses "sqlite:PATH[?table=T]" or "postgresql://...[?table=T&libpq options]" into *out (free
 * with kl_db_target_free); default_table must be an SQL identifier. KL_EINVAL names the
 * problem; KL_EUNSUPPORTED for another scheme. */
kl_status kl_db_target_parse(const char *s, const char *default_table, kl_db_target *out);
void kl_db_target_free(kl_db_target *t);

/* Parses the target, connects (or opens / creates the SQLite file), creates the table if it is
 * missing, checks an existing one has exactly the expected columns with row_index as primary key,
 * and reads the resume point: when the table holds rows, they must all carry this input digest
 * and model and be rows 0..N-1 with no gap, else an error says which and to pick another table
 * or drop it. Errors name the target (with any password hidden) and the table. On success *out
 * is the caller's, to free with kl_prediction_sink_close. */
kl_status kl_prediction_sink_open(const kl_prediction_sink_config *cfg, kl_prediction_sink **out);

/* Rows the table already held for this input when it was opened, plus the rows written since:
 * the next row_index to write. */
int64_t kl_prediction_sink_rows(const kl_prediction_sink *s);

/* The table and target for messages: "table \"t\" in postgresql://u:***@h/db". */
const char *kl_prediction_sink_describe(const kl_prediction_sink *s);

/* Writes rows first_row .. first_row+rows-1 in one transaction. out is [rows, n_classes]
 * probabilities (classification; the prediction is the arg-max class, first on ties) or [rows]
 * predictions (regression). first_row must equal kl_prediction_sink_rows(s). On failure nothing
 * of the chunk is stored. */
kl_status kl_prediction_sink_write(kl_prediction_sink *s, int64_t first_row, int64_t rows,
                                   const float *out);

/* Closes the connection and frees the sink; NULL is fine. */
void kl_prediction_sink_close(kl_prediction_sink *s);

#endif
