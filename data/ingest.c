/* ingest.c — a query's rows from PostgreSQL (libpq, single-row mode) or SQLite into a CSV file
 * (see ingest.h). */
#include "data/ingest.h"

#include <errno.h>
#include <libpq-fe.h> /* PQconnectdbParams, single-row mode */
#include <math.h>
#include <sqlite3.h> /* sqlite3_open_v2, prepared statements */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/db_text.h" /* URIs without passwords, messages on one line */

/* The output file in progress: written to "<path>.tmp" and renamed when complete. */
typedef struct {
    const char *path; /* the CSV to produce */
    char tmp[4200];   /* the temporary file */
    FILE *f;          /* open on tmp */
    int64_t rows;     /* data rows written */
    int cols;         /* columns of the header */
} csv_out;

/* Writes one CSV field of n bytes (NULL: a database NULL, an empty field). */
static void put_field(FILE *f, const char *s, size_t n, int first) {
    if (!first) fputc(',', f);
    if (!s) return;
    int quote = n == 0 || s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' || s[n - 1] == '\t';
    for (size_t i = 0; i < n && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
    if (!quote) {
        fwrite(s, 1, n, f);
        return;
    }
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') fputc('"', f);
        fputc(s[i], f);
    }
    fputc('"', f);
}

static kl_status out_open(csv_out *o, const char *path) {
    memset(o, 0, sizeof *o);
    o->path = path;
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp", path);
    if (!(o->f = fopen(o->tmp, "wb")))
        return kl_seterr(KL_EIO, "cannot create \"%s\": %s", o->tmp, strerror(errno));
    return KL_OK;
}

/* Closes the file; on KL_OK renames it into place, else removes it. */
static kl_status out_close(csv_out *o, kl_status st) {
    if (!o->f) return st;
    int bad = ferror(o->f) | fclose(o->f);
    o->f = NULL;
    if (st == KL_OK && bad) st = kl_seterr(KL_EIO, "writing \"%s\" failed", o->tmp);
    if (st == KL_OK && rename(o->tmp, o->path))
        st = kl_seterr(KL_EIO, "cannot rename \"%s\" to \"%s\": %s", o->tmp, o->path,
                       strerror(errno));
    if (st != KL_OK) remove(o->tmp);
    return st;
}

/* "name" or "schema"."name" from a checked table name into buf; else an error. */
static kl_status table_query(const char *table, char *buf, size_t size) {
    size_t n = strlen(table);
    int dots = 0, ok = n > 0 && n < 128;
    for (size_t i = 0; i < n && ok; i++) {
        char c = table[i];
        int start = i == 0 || table[i - 1] == '.';
        if (c == '.') {
            ok = !start && ++dots <= 1 && i + 1 < n;
        } else {
            ok = c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                 (!start && c >= '0' && c <= '9');
        }
    }
    if (!ok)
        return kl_seterr(KL_EINVAL,
                         "--table \"%s\": a table name is [schema.]name of letters, digits and _",
                         table);
    const char *dot = strchr(table, '.');
    if (dot)
        snprintf(buf, size, "SELECT * FROM \"%.*s\".\"%s\"", (int)(dot - table), table, dot + 1);
    else
        snprintf(buf, size, "SELECT * FROM \"%s\"", table);
    return KL_OK;
}

/* v as the shortest decimal text that reads back as v, laid out as Python's repr(float). */
static void format_real(double v, char *buf, size_t size) {
    if (isnan(v)) {
        snprintf(buf, size, "nan");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, size, v < 0 ? "-inf" : "inf");
        return;
    }
    char e[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, v);
        if (strtod(e, NULL) == v) break;
    }
    /* e is "[-]d[.ddd]e[+-]XX": split into sign, digits and exponent. */
    const char *s = e;
    int neg = *s == '-';
    if (neg) s++;
    char digits[24];
    int nd = 0;
    for (; *s && *s != 'e'; s++)
        if (*s != '.') digits[nd++] = *s;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = '\0';
    int exp = atoi(s + 1);
    char *w = buf;
    size_t left = size;
#define EMIT(...)                                                                                  \
    do {                                                                                           \
        int k_ = snprintf(w, left, __VA_ARGS__);                                                   \
        if (k_ > 0 && (size_t)k_ < left) {                                                         \
            w += k_;                                                                               \
            left -= (size_t)k_;                                                                    \
        }                                                                                          \
    } while (0)
    if (neg) EMIT("-");
    if (exp >= 16 || exp < -4) {
        EMIT("%c", digits[0]);
        if (nd > 1) EMIT(".%s", digits + 1);
        EMIT("e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    } else if (exp >= 0) {
        for (int i = 0; i <= exp; i++)
            EMIT("%c", i < nd ? digits[i] : '0');
        EMIT(".%s", nd > exp + 1 ? digits + exp + 1 : "0");
    } else {
        EMIT("0.");
        for (int i = 0; i < -exp - 1; i++)
            EMIT("0");
        EMIT("%s", digits);
    }
#undef EMIT
}

static kl_status ingest_sqlite(const kl_ingest_config *cfg, const char *sql, const char *where,
                               csv_out *o) {
    const char *path = cfg->source + 7;
    if (!strncmp(path, "///", 3)) path += 2; /* sqlite:///abs/path -> /abs/path */
    if (!*path) return kl_seterr(KL_EINVAL, "%s: no database file after \"sqlite:\"", where);
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
    if (rc != SQLITE_OK) {
        kl_status st = kl_seterr(KL_EIO, "%s: cannot open: %s", where,
                                 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return st;
    }
    sqlite3_busy_timeout(db, 30000);
    sqlite3_stmt *stmt = NULL;
    kl_status st = KL_OK;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        st = kl_seterr(KL_EINVAL, "%s: SQL error: %s", where, sqlite3_errmsg(db));
    } else if (!stmt || sqlite3_column_count(stmt) == 0) {
        st = kl_seterr(KL_EINVAL, "%s: the query returns no columns (it must select rows)", where);
    }
    if (st == KL_OK) st = out_open(o, o->path);
    if (st == KL_OK) {
        o->cols = sqlite3_column_count(stmt);
        for (int c = 0; c < o->cols; c++) {
            const char *name = sqlite3_column_name(stmt, c);
            put_field(o->f, name ? name : "", name ? strlen(name) : 0, c == 0);
        }
        fputc('\n', o->f);
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
            for (int c = 0; c < o->cols; c++) {
                char num[64];
                switch (sqlite3_column_type(stmt, c)) {
                case SQLITE_NULL:
                    put_field(o->f, NULL, 0, c == 0);
                    break;
                case SQLITE_INTEGER:
                    snprintf(num, sizeof num, "%lld", (long long)sqlite3_column_int64(stmt, c));
                    put_field(o->f, num, strlen(num), c == 0);
                    break;
                case SQLITE_FLOAT:
                    format_real(sqlite3_column_double(stmt, c), num, sizeof num);
                    put_field(o->f, num, strlen(num), c == 0);
                    break;
                case SQLITE_BLOB: {
                    const unsigned char *b = sqlite3_column_blob(stmt, c);
                    int n = sqlite3_column_bytes(stmt, c);
                    if (c) fputc(',', o->f);
                    for (int i = 0; i < n; i++)
                        fprintf(o->f, "%02x", b[i]);
                    if (n == 0) fputs("\"\"", o->f);
                    break;
                }
                default: {
                    const char *t = (const char *)sqlite3_column_text(stmt, c);
                    int n = sqlite3_column_bytes(stmt, c);
                    put_field(o->f, t ? t : "", t ? (size_t)n : 0, c == 0);
                }
                }
            }
            fputc('\n', o->f);
            o->rows++;
        }
        if (rc != SQLITE_DONE)
            st = kl_seterr(KL_EIO, "%s: SQL error after %lld rows: %s", where, (long long)o->rows,
                           sqlite3_errmsg(db));
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return st;
}

static void pg_quiet(void *arg, const char *message) {
    (void)arg;
    (void)message;
}

static kl_status pg_result_err(const char *where, PGconn *pg, PGresult *res) {
    char msg[2048];
    snprintf(msg, sizeof msg, "%s",
             res && *PQresultErrorMessage(res) ? PQresultErrorMessage(res) : PQerrorMessage(pg));
    kl_db_one_line(msg);
    return kl_seterr(KL_EIO, "%s: %s", where, msg);
}

static kl_status ingest_pg(const kl_ingest_config *cfg, const char *sql, const char *where,
                           csv_out *o) {
    const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *vals[] = {"10", "kiln ingest", cfg->source, NULL};
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (!pg) return kl_seterr(KL_ENOMEM, "%s: cannot allocate a connection", where);
    if (PQstatus(pg) != CONNECTION_OK) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(pg));
        kl_db_one_line(msg);
        PQfinish(pg);
        return kl_seterr(KL_EIO, "%s: cannot connect: %s", where, msg);
    }
    PQsetNoticeProcessor(pg, pg_quiet, NULL);
    kl_status st = KL_OK;
    /* Single-row mode streams the result: a large table never sits whole in memory. */
    if (!PQsendQuery(pg, sql) || !PQsetSingleRowMode(pg)) st = pg_result_err(where, pg, NULL);
    int header = 0;
    PGresult *res;
    while ((res = PQgetResult(pg))) {
        ExecStatusType t = PQresultStatus(res);
        if (st == KL_OK && t != PGRES_SINGLE_TUPLE && t != PGRES_TUPLES_OK) {
            if (t == PGRES_COMMAND_OK)
                st = kl_seterr(KL_EINVAL, "%s: the query returns no rows (it must select rows)",
                               where);
            else
                st = pg_result_err(where, pg, res);
        }
        if (st == KL_OK && !header) {
            st = out_open(o, o->path);
            header = 1;
            o->cols = PQnfields(res);
            for (int c = 0; st == KL_OK && c < o->cols; c++) {
                const char *name = PQfname(res, c);
                put_field(o->f, name, strlen(name), c == 0);
            }
            if (st == KL_OK) fputc('\n', o->f);
        }
        for (int r = 0; st == KL_OK && r < PQntuples(res); r++) {
            for (int c = 0; c < o->cols; c++)
                put_field(o->f, PQgetisnull(res, r, c) ? NULL : PQgetvalue(res, r, c),
                          (size_t)PQgetlength(res, r, c), c == 0);
            fputc('\n', o->f);
            o->rows++;
        }
        PQclear(res);
    }
    PQfinish(pg);
    return st;
}

kl_status kl_ingest_to_csv(const kl_ingest_config *cfg, const char *out_csv, int64_t *rows,
                           int *cols) {
    if (!cfg->source || !*cfg->source) return kl_seterr(KL_EINVAL, "no source (--from)");
    char where[1024];
    char *shown = kl_db_hide_password(cfg->source);
    snprintf(where, sizeof where, "%s", shown ? shown : "(the source)");
    free(shown);
    if (!!cfg->query == !!cfg->table)
        return kl_seterr(KL_EINVAL, "give exactly one of a query and a table");
    char tq[300];
    const char *sql = cfg->query;
    if (cfg->table) {
        KL_TRY(table_query(cfg->table, tq, sizeof tq));
        sql = tq;
    }
    csv_out o;
    memset(&o, 0, sizeof o);
    o.path = out_csv;
    kl_status st;
    if (!strncmp(cfg->source, "sqlite:", 7))
        st = ingest_sqlite(cfg, sql, where, &o);
    else if (!strncmp(cfg->source, "postgresql://", 13) || !strncmp(cfg->source, "postgres://", 11))
        st = ingest_pg(cfg, sql, where, &o);
    else
        return kl_seterr(KL_EINVAL,
                         "source \"%s\": expected postgresql://user@host:port/db, postgres://..., "
                         "or sqlite:PATH",
                         where);
    st = out_close(&o, st);
    if (st == KL_OK) {
        if (rows) *rows = o.rows;
        if (cols) *cols = o.cols;
    }
    return st;
}
