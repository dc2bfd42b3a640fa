/* prediction_sink_impl.h — the prediction sink's state and helpers, shared by its three files:
 * prediction_sink.c (targets, columns, the resume point, the public functions) and one file per
 * database, prediction_sink_sqlite.c and prediction_sink_pg.c. Not for other modules.
 */
#ifndef KL_PREDICTION_SINK_IMPL_H
#define KL_PREDICTION_SINK_IMPL_H

#include <libpq-fe.h> /* PGconn */
#include <sqlite3.h>  /* sqlite3, sqlite3_stmt */
#include <stddef.h>
#include <stdint.h>

#include "data/prediction_sink.h"
#include "runtime/strbuf.h"

#define IDENT_MAX 63 /* PostgreSQL cuts identifiers at NAMEDATALEN-1 bytes: stay within it */
#define N_FIXED 5    /* row_index, prediction, model, input_digest, scored_at */

enum { SINK_SQLITE, SINK_PG };

struct kl_prediction_sink {
    int kind;                  /* SINK_SQLITE or SINK_PG */
    char table[IDENT_MAX + 1]; /* the table, a checked identifier */
    char *where;               /* the target for messages, password hidden, owned */
    char *describe;            /* "table \"T\" in WHERE", owned */
    int n_classes;             /* prob_ columns; 0 for regression */
    char **class_names;        /* [n_classes], owned */
    char **cols;               /* [n_cols] column names in insert order, owned */
    int n_cols;                /* N_FIXED + n_classes */
    char *model;               /* stored in every row, owned */
    char *digest;              /* stored in every row, owned */
    int64_t rows;              /* the next row_index to write */
    char stamp[40];            /* scored_at of the chunk being written */
    sqlite3 *db;               /* SQLite connection, or NULL */
    sqlite3_stmt *insert;      /* SQLite: the prepared one-row INSERT */
    PGconn *pg;                /* PostgreSQL connection, or NULL */
    char *copy_sql;            /* PostgreSQL: "COPY "T" (...) FROM STDIN", owned */
    kl_strbuf copy;            /* PostgreSQL: one chunk's COPY text, reused */
};

/* Appends n bytes of s / a string / printf-style text to b (sets b->oom on failure). */

/* Checks an existing table's columns (have) and primary key (pk) against s->cols: exactly the
 * same names (case-blind for SQLite), row_index alone as the key; else an error naming them. */
kl_status ps_check_columns(const kl_prediction_sink *s, char **have, int n_have, char **pk,
                           int n_pk);

/* Sets s->rows from what the table holds (count rows, highest row_index max_row, the least and
 * greatest input_digest and model): rows 0..count-1 of this input and model, else an error. */
kl_status ps_check_state(kl_prediction_sink *s, int resume, int64_t count, int64_t max_row,
                         const char *dmin, const char *dmax, const char *mmin, const char *mmax);

/* CREATE TABLE IF NOT EXISTS with the database's types; the caller frees it (NULL: no memory). */
char *ps_create_sql(const kl_prediction_sink *s);

/* Appends every column, quoted, in insert order: "\"row_index\", \"prediction\", ...". */
void ps_add_column_list(kl_strbuf *b, const kl_prediction_sink *s);

/* The prediction of one output row as text: the arg-max class's name (first on ties), or the
 * regression value as "%.9g" in buf. */
const char *ps_row_prediction(const kl_prediction_sink *s, const float *row, char *buf,
                              size_t size);

/* Per database: connect or open, create and check the table, read the resume point (s->rows),
 * prepare the chunk writer. conn is the SQLite file path or the libpq URI. */
kl_status ps_sqlite_open(kl_prediction_sink *s, const char *path, int resume);
kl_status ps_pg_open(kl_prediction_sink *s, const char *conninfo, int resume);

/* Per database: rows first .. first+rows-1 of out in one transaction, all or nothing. */
kl_status ps_sqlite_write(kl_prediction_sink *s, int64_t first, int64_t rows, const float *out);
kl_status ps_pg_write(kl_prediction_sink *s, int64_t first, int64_t rows, const float *out);

#endif
