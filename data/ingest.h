/* ingest.h — a database query's result written as a CSV file, for `kiln data ingest` and the
 * pipeline's ingest step.
 *
 * Sources: "postgresql://user:pass@host:port/db" (or postgres://, through libpq; query
 * parameters go to libpq unchanged) and "sqlite:PATH" or "sqlite:///ABSOLUTE/PATH" (opened read
 * only: a missing file is an error, never created). The CSV's header is the result's column
 * names; a NULL becomes an empty field and an empty string a quoted one (""); a field holding a
 * comma, quote, line break or surrounding blanks is quoted (RFC 4180), so data/csv.h reads back
 * the same text. Values are the database's text: PostgreSQL's output format; SQLite integers and
 * text as stored, reals as the shortest text that reads back the same double (as Python prints
 * them, "2.0", "0.1"), blobs as lowercase hex. The file is written through a temporary file and
 * a rename, so a failed query leaves no partial CSV.
 */
#ifndef KL_INGEST_H
#define KL_INGEST_H

#include <stdint.h>

#include "runtime/status.h"

/* What to read. Exactly one of query and table is set. */
typedef struct {
    const char *source; /* "postgresql://..." or "sqlite:PATH" */
    const char *query;  /* SQL returning rows, or NULL */
    const char *table;  /* a table ([schema.]name, letters, digits, '_'), or NULL */
} kl_ingest_config;

/* Runs the query and writes out_csv; *rows and *cols (may be NULL) get the counts. Errors name
 * the source with any password hidden: a malformed URI, a server that cannot be reached (libpq's
 * reason), the SQL error text from the database. */
kl_status kl_ingest_to_csv(const kl_ingest_config *cfg, const char *out_csv, int64_t *rows,
                           int *cols);

#endif
