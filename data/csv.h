/* csv.h — reading a CSV file (RFC 4180) into a table of strings.
 *
 * The first record is the header. Fields may be quoted ("a, b", "say ""hi"""), quoted fields may
 * span lines, records end in LF, CRLF or CR, a UTF-8 byte-order mark is skipped, spaces and tabs
 * around unquoted fields are trimmed, and empty lines are skipped (as pandas does). Every record
 * must have as many fields as the header: a ragged record is an error naming the file, the line
 * and both counts. gzip-compressed files are read transparently.
 *
 * The table keeps the whole file text in one buffer and points into it, so a cell costs four
 * bytes of index; files must be under 4 GiB.
 */
#ifndef KL_CSV_H
#define KL_CSV_H

#include <stdint.h>

#include "runtime/status.h"

typedef struct {
    char *path;       /* the file as named, owned (for messages) */
    char *buf;        /* the file text, each field NUL-terminated in place, owned */
    int n_cols;       /* fields per record, from the header */
    uint32_t *header; /* [n_cols] offsets into buf of the column names */
    int64_t n_rows;   /* data records (header excluded) */
    uint32_t *cells;  /* [n_rows * n_cols] offsets into buf of the fields, row-major */
    int64_t *lines;   /* [n_rows] 1-based line number where each record starts */
} kl_csv_table;

/* Reads and parses path into t (caller frees with kl_csv_free). Fails on unreadable files,
 * unterminated quotes, text after a closing quote, NUL bytes, ragged records, an empty file,
 * duplicate or empty column names. */
kl_status kl_csv_read(const char *path, kl_csv_table *t);

/* Frees everything t owns and zeroes it. */
void kl_csv_free(kl_csv_table *t);

/* Field c of data record r. */
static inline const char *kl_csv_cell(const kl_csv_table *t, int64_t r, int c) {
    return t->buf + t->cells[r * t->n_cols + c];
}

/* Name of column c. */
static inline const char *kl_csv_colname(const kl_csv_table *t, int c) {
    return t->buf + t->header[c];
}

/* Index of the column called name, or -1. */
int kl_csv_find_column(const kl_csv_table *t, const char *name);

/* Keeps only the first `limit` data records (limit <= 0 or >= n_rows: no change). */
void kl_csv_truncate(kl_csv_table *t, int64_t limit);

/* 1 if s is a missing-value marker: "", "NA", "N/A", "NaN", "nan", "null", "NULL" or "?". */
int kl_csv_is_missing(const char *s);

/* 1 if s (surrounding blanks allowed) is a finite decimal number, stored in *v; else 0. */
int kl_csv_parse_number(const char *s, double *v);

#endif
