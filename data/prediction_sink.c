/* prediction_sink.c — prediction rows into a database table: the target string, the table's
 * columns, the resume point and the public functions; the databases' own code is in
 * prediction_sink_sqlite.c and prediction_sink_pg.c (see prediction_sink.h). */
#include "data/db_text.h" /* the target shown without its password */
#include "data/prediction_sink_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DEFAULT_TABLE "predictions"

/* --- small helpers --------------------------------------------------------------------------- */

static int is_ident_start(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int is_ident_char(char c) {
    return is_ident_start(c) || (c >= '0' && c <= '9');
}

/* "sha256:0123456789ab…" for messages. */
static const char *short_digest(const char *d, char *buf, size_t size) {
    snprintf(buf, size, "%.19s%s", d, strlen(d) > 19 ? "..." : "");
    return buf;
}

/* --- the target ------------------------------------------------------------------------------ */

int kl_prediction_sink_is_target(const char *output) {
    if (!output) return 0;
    if (!strncmp(output, "sqlite:", 7)) return 1;
    const char *p = output;
    if (!is_ident_start(*p) || *p == '_') return 0;
    while (is_ident_char(*p) || *p == '+' || *p == '-' || *p == '.')
        p++;
    return !strncmp(p, "://", 3);
}

/* A parsed target: which database, what to open, the table, and how to name it in messages. */
typedef struct {
    int kind;                  /* SINK_SQLITE or SINK_PG */
    char *conn;                /* SQLite: the file path; PostgreSQL: the URI less table=, owned */
    char *where;               /* the target for messages, password hidden, owned */
    char table[IDENT_MAX + 1]; /* the table */
} target;

static void target_free(target *t) {
    free(t->conn);
    free(t->where);
    memset(t, 0, sizeof *t);
}

static kl_status set_table(target *t, const char *name, size_t n) {
    int ok = n > 0 && n <= IDENT_MAX && is_ident_start(name[0]);
    for (size_t i = 1; ok && i < n; i++)
        ok = is_ident_char(name[i]);
    if (!ok)
        return kl_seterr(KL_EINVAL,
                         "table name \"%.*s\" is not an SQL identifier ([A-Za-z_][A-Za-z0-9_]*, "
                         "at most %d characters)",
                         (int)(n > 200 ? 200 : n), name, IDENT_MAX);
    memcpy(t->table, name, n);
    t->table[n] = '\0';
    return KL_OK;
}

static kl_status parse_target(const char *s, const char *default_table, target *t) {
    memset(t, 0, sizeof *t);
    snprintf(t->table, sizeof t->table, "%s", default_table);
    const char *q = strchr(s, '?');
    size_t base_len = q ? (size_t)(q - s) : strlen(s);
    kl_strbuf conn = {0};
    if (!strncmp(s, "sqlite:", 7)) {
        t->kind = SINK_SQLITE;
        const char *path = s + 7;
        if (!strncmp(path, "//", 2)) {
            path += 2;
            if (*path != '/')
                return kl_seterr(KL_EINVAL,
                                 "\"%.*s\": a host is not allowed here: write sqlite:PATH or "
                                 "sqlite:///ABSOLUTE/PATH",
                                 (int)base_len, s);
        }
        if (path == s + base_len)
            return kl_seterr(KL_EINVAL, "\"%s\": no database file after \"sqlite:\"", s);
        kl_strbuf_addn(&conn, path, (size_t)(s + base_len - path));
        for (const char *item = q ? q + 1 : ""; *item;) {
            size_t n = strcspn(item, "&");
            if (!strncmp(item, "table=", 6)) {
                if (set_table(t, item + 6, n - 6) != KL_OK) goto fail;
            } else if (n) {
                kl_seterr(KL_EINVAL, "\"%s\": unknown option \"%.*s\" (only table=NAME)", s, (int)n,
                          item);
                goto fail;
            }
            item += n;
            if (*item == '&') item++;
        }
        if (conn.oom) goto oom;
        t->conn = conn.p;
        conn.p = NULL; /* t owns it now */
        size_t wn = strlen(t->conn) + 8;
        t->where = malloc(wn);
        if (!t->where) goto oom;
        snprintf(t->where, wn, "sqlite:%s", t->conn);
        return KL_OK;
    }
    if (strncmp(s, "postgresql://", 13) && strncmp(s, "postgres://", 11)) {
        if (!kl_prediction_sink_is_target(s))
            return kl_seterr(KL_EINVAL,
                             "\"%s\" is not a database (sqlite:PATH or postgresql://...)", s);
        return kl_seterr(KL_EUNSUPPORTED,
                         "unsupported database \"%.*s\" (kiln writes predictions to sqlite:PATH "
                         "or postgresql://USER@HOST:PORT/DB)",
                         (int)strcspn(s, ":"), s);
    }
    t->kind = SINK_PG;
    /* table= is kiln's; every other parameter is libpq's, which rejects names it does not know. */
    kl_strbuf_addn(&conn, s, base_len);
    int kept = 0;
    for (const char *item = q ? q + 1 : ""; *item;) {
        size_t n = strcspn(item, "&");
        if (!strncmp(item, "table=", 6)) {
            if (set_table(t, item + 6, n - 6) != KL_OK) goto fail;
        } else if (n) {
            kl_strbuf_add(&conn, kept++ ? "&" : "?");
            kl_strbuf_addn(&conn, item, n);
        }
        item += n;
        if (*item == '&') item++;
    }
    if (conn.oom) goto oom;
    t->conn = conn.p;
    conn.p = NULL; /* t owns it now */
    t->where = kl_db_hide_password(t->conn);
    if (!t->where) goto oom;
    return KL_OK;
oom:
    free(conn.p);
    target_free(t);
    return kl_seterr(KL_ENOMEM, "parsing the output target");
fail:
    free(conn.p);
    target_free(t);
    return KL_EINVAL;
}

kl_status kl_db_target_parse(const char *s, const char *default_table, kl_db_target *out) {
    memset(out, 0, sizeof *out);
    target t;
    KL_TRY(parse_target(s, default_table, &t));
    out->postgres = t.kind == SINK_PG;
    out->conn = t.conn;
    out->where = t.where;
    snprintf(out->table, sizeof out->table, "%s", t.table);
    return KL_OK;
}

void kl_db_target_free(kl_db_target *t) {
    if (!t) return;
    free(t->conn);
    free(t->where);
    memset(t, 0, sizeof *t);
}

/* --- columns --------------------------------------------------------------------------------- */

static int has_col(char **cols, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcasecmp(cols[i], name)) return 1;
    return 0;
}

/* The table's columns in insert order: row_index, prediction, prob_<class>..., model,
 * input_digest, scored_at. Class names become identifiers (see prediction_sink.h). */
static kl_status make_columns(kl_prediction_sink *s) {
    s->n_cols = N_FIXED + s->n_classes;
    s->cols = calloc((size_t)s->n_cols, sizeof *s->cols);
    if (!s->cols) return kl_seterr(KL_ENOMEM, "column names");
    static const char *const tail[] = {"model", "input_digest", "scored_at"};
    s->cols[0] = strdup("row_index");
    s->cols[1] = strdup("prediction");
    for (int i = 0; i < 3; i++)
        s->cols[2 + s->n_classes + i] = strdup(tail[i]);
    for (int c = 0; c < s->n_classes; c++) {
        char name[IDENT_MAX + 1] = "prob_";
        size_t n = 5;
        for (const char *p = s->class_names[c]; *p && n < IDENT_MAX; p++)
            name[n++] = is_ident_char(*p) ? *p : '_';
        name[n] = '\0';
        char cand[IDENT_MAX + 1];
        snprintf(cand, sizeof cand, "%s", name);
        for (int k = 2;
             has_col(s->cols, 2 + c, cand) || has_col(s->cols + 2 + s->n_classes, 3, cand); k++) {
            char suffix[16];
            int sl = snprintf(suffix, sizeof suffix, "_%d", k);
            size_t keep = n + (size_t)sl > IDENT_MAX ? IDENT_MAX - (size_t)sl : n;
            snprintf(cand, sizeof cand, "%.*s%s", (int)keep, name, suffix);
        }
        s->cols[2 + c] = strdup(cand);
    }
    for (int i = 0; i < s->n_cols; i++)
        if (!s->cols[i]) return kl_seterr(KL_ENOMEM, "column names");
    return KL_OK;
}

/* Appends up to 5 quoted names of list (those marked in pick, or all when pick is NULL). */
static void list_names(kl_strbuf *b, char **names, int n, const int *pick) {
    int shown = 0, total = 0;
    for (int i = 0; i < n; i++) {
        if (pick && !pick[i]) continue;
        total++;
        if (shown == 5) continue;
        kl_strbuf_addf(b, "%s\"%s\"", shown ? ", " : "", names[i]);
        shown++;
    }
    if (total > shown) kl_strbuf_addf(b, " and %d more", total - shown);
}

/* An existing table must have exactly the expected columns (names compared case-blind for
 * SQLite, exactly for PostgreSQL, which keeps quoted names' case) with row_index alone as its
 * primary key: otherwise it was made for another model or by something else. */
kl_status ps_check_columns(const kl_prediction_sink *s, char **have, int n_have, char **pk,
                           int n_pk) {
    int (*cmp)(const char *, const char *) = s->kind == SINK_SQLITE ? strcasecmp : strcmp;
    int *missing = calloc((size_t)s->n_cols, sizeof *missing);
    int *extra = calloc((size_t)(n_have ? n_have : 1), sizeof *extra);
    if (!missing || !extra) {
        free(missing);
        free(extra);
        return kl_seterr(KL_ENOMEM, "checking columns");
    }
    int n_missing = 0, n_extra = 0;
    for (int i = 0; i < s->n_cols; i++) {
        int found = 0;
        for (int j = 0; j < n_have && !found; j++)
            found = !cmp(s->cols[i], have[j]);
        n_missing += missing[i] = !found;
    }
    for (int j = 0; j < n_have; j++) {
        int found = 0;
        for (int i = 0; i < s->n_cols && !found; i++)
            found = !cmp(s->cols[i], have[j]);
        n_extra += extra[j] = !found;
    }
    kl_status st = KL_OK;
    if (n_missing || n_extra) {
        kl_strbuf b = {0};
        if (n_missing) {
            kl_strbuf_add(&b, "lacks ");
            list_names(&b, s->cols, s->n_cols, missing);
        }
        if (n_extra) {
            kl_strbuf_add(&b, n_missing ? "; has unexpected " : "has unexpected ");
            list_names(&b, have, n_have, extra);
        }
        st = kl_seterr(KL_EINVAL,
                       "%s exists with other columns: it %s (made for another model, or not by "
                       "kiln predict): pick another table (?table=NAME) or drop it",
                       s->describe, b.p ? b.p : "");
        free(b.p);
    } else if (n_pk != 1 || cmp(pk[0], "row_index")) {
        kl_strbuf b = {0};
        list_names(&b, pk, n_pk, NULL);
        st =
            kl_seterr(KL_EINVAL,
                      "%s exists, but its primary key is %s%s%s, not (\"row_index\"), so a "
                      "resumed run could store rows twice: pick another table (?table=NAME) or "
                      "drop it",
                      s->describe, n_pk ? "(" : "missing", n_pk && b.p ? b.p : "", n_pk ? ")" : "");
        free(b.p);
    }
    free(missing);
    free(extra);
    return st;
}

/* The resume point from what the table holds: rows 0..count-1 of this input and model, else an
 * error that says what is there. */
kl_status ps_check_state(kl_prediction_sink *s, int resume, int64_t count, int64_t max_row,
                         const char *dmin, const char *dmax, const char *mmin, const char *mmax) {
    s->rows = 0;
    if (count == 0) return KL_OK;
    char a[40], b[40];
    if (!resume)
        return kl_seterr(KL_EINVAL,
                         "%s already holds %lld rows and resuming is off: pick another table "
                         "(?table=NAME) or drop it",
                         s->describe, (long long)count);
    if (strcmp(dmin, dmax) || strcmp(dmin, s->digest))
        return kl_seterr(KL_EINVAL,
                         "%s holds %lld rows scored from another input (%s; this input is %s): "
                         "pick another table (?table=NAME) or drop it",
                         s->describe, (long long)count, short_digest(dmin, a, sizeof a),
                         short_digest(s->digest, b, sizeof b));
    if (strcmp(mmin, mmax) || strcmp(mmin, s->model))
        return kl_seterr(KL_EINVAL,
                         "%s holds %lld rows scored by model \"%s\", not \"%s\": pick another "
                         "table (?table=NAME) or drop it",
                         s->describe, (long long)count, mmin, s->model);
    if (max_row != count - 1)
        return kl_seterr(KL_EINVAL,
                         "%s holds %lld rows but its highest row_index is %lld: rows are "
                         "missing in between, so it was not written by kiln predict alone: pick "
                         "another table (?table=NAME) or drop it",
                         s->describe, (long long)count, (long long)max_row);
    s->rows = count;
    return KL_OK;
}

/* CREATE TABLE IF NOT EXISTS with the backend's types. */
char *ps_create_sql(const kl_prediction_sink *s) {
    int pg = s->kind == SINK_PG;
    kl_strbuf b = {0};
    kl_strbuf_addf(&b,
                   "CREATE TABLE IF NOT EXISTS \"%s\" (\"row_index\" %s PRIMARY KEY, "
                   "\"prediction\" TEXT NOT NULL",
                   s->table, pg ? "BIGINT" : "INTEGER");
    for (int c = 0; c < s->n_classes; c++)
        kl_strbuf_addf(&b, ", \"%s\" %s", s->cols[2 + c], pg ? "DOUBLE PRECISION" : "REAL");
    kl_strbuf_addf(&b,
                   ", \"model\" TEXT NOT NULL, \"input_digest\" TEXT NOT NULL, \"scored_at\" %s "
                   "NOT NULL)",
                   pg ? "TIMESTAMPTZ" : "TEXT");
    return b.oom ? (free(b.p), NULL) : b.p;
}

/* "\"a\", \"b\", ..." — every column, quoted, in insert order. */
void ps_add_column_list(kl_strbuf *b, const kl_prediction_sink *s) {
    for (int i = 0; i < s->n_cols; i++)
        kl_strbuf_addf(b, "%s\"%s\"", i ? ", " : "", s->cols[i]);
}

/* The prediction of one row as text: the arg-max class's name, or the regression value. */
const char *ps_row_prediction(const kl_prediction_sink *s, const float *row, char *buf,
                              size_t size) {
    if (!s->n_classes) {
        snprintf(buf, size, "%.9g", (double)row[0]);
        return buf;
    }
    int best = 0;
    for (int c = 1; c < s->n_classes; c++)
        if (row[c] > row[best]) best = c;
    return s->class_names[best];
}

static void set_stamp(kl_prediction_sink *s) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char day[32];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(s->stamp, sizeof s->stamp, "%.24s.%03dZ", day, (int)(ts.tv_nsec / 1000000));
}

/* --- the sink -------------------------------------------------------------------------------- */

kl_status kl_prediction_sink_open(const kl_prediction_sink_config *cfg, kl_prediction_sink **out) {
    *out = NULL;
    if (!cfg->target || !cfg->model || !cfg->input_digest || cfg->n_classes < 0 ||
        (cfg->n_classes && !cfg->class_names))
        return kl_seterr(KL_EINVAL, "prediction sink: target, model, digest and class names "
                                    "are required");
    target t;
    KL_TRY(parse_target(cfg->target, DEFAULT_TABLE, &t));
    kl_prediction_sink *s = calloc(1, sizeof *s);
    if (!s) {
        target_free(&t);
        return kl_seterr(KL_ENOMEM, "prediction sink");
    }
    s->kind = t.kind;
    memcpy(s->table, t.table, sizeof s->table);
    s->where = t.where;
    t.where = NULL;
    size_t dn = strlen(s->where) + strlen(s->table) + 16;
    s->describe = malloc(dn);
    s->model = strdup(cfg->model);
    s->digest = strdup(cfg->input_digest);
    s->n_classes = cfg->n_classes;
    s->class_names = cfg->n_classes ? calloc((size_t)cfg->n_classes, sizeof *s->class_names) : NULL;
    kl_status st = KL_OK;
    if (!s->describe || !s->model || !s->digest || (cfg->n_classes && !s->class_names))
        st = kl_seterr(KL_ENOMEM, "prediction sink");
    for (int c = 0; st == KL_OK && c < cfg->n_classes; c++)
        if (!(s->class_names[c] = strdup(cfg->class_names[c] ? cfg->class_names[c] : "")))
            st = kl_seterr(KL_ENOMEM, "prediction sink");
    if (st == KL_OK) {
        snprintf(s->describe, dn, "table \"%s\" in %s", s->table, s->where);
        st = make_columns(s);
    }
    if (st == KL_OK)
        st = s->kind == SINK_SQLITE ? ps_sqlite_open(s, t.conn, cfg->resume)
                                    : ps_pg_open(s, t.conn, cfg->resume);
    target_free(&t);
    if (st != KL_OK) {
        kl_prediction_sink_close(s);
        return st;
    }
    *out = s;
    return KL_OK;
}

int64_t kl_prediction_sink_rows(const kl_prediction_sink *s) {
    return s->rows;
}

const char *kl_prediction_sink_describe(const kl_prediction_sink *s) {
    return s->describe;
}

kl_status kl_prediction_sink_write(kl_prediction_sink *s, int64_t first_row, int64_t rows,
                                   const float *out) {
    if (first_row != s->rows)
        return kl_seterr(KL_EINVAL, "%s: writing from row %lld, expected row %lld", s->describe,
                         (long long)first_row, (long long)s->rows);
    if (rows <= 0) return KL_OK;
    set_stamp(s);
    KL_TRY(s->kind == SINK_SQLITE ? ps_sqlite_write(s, first_row, rows, out)
                                  : ps_pg_write(s, first_row, rows, out));
    s->rows += rows;
    return KL_OK;
}

void kl_prediction_sink_close(kl_prediction_sink *s) {
    if (!s) return;
    sqlite3_finalize(s->insert);
    sqlite3_close(s->db);
    if (s->pg) PQfinish(s->pg);
    for (int i = 0; i < s->n_classes; i++)
        free(s->class_names[i]);
    free(s->class_names);
    for (int i = 0; s->cols && i < s->n_cols; i++)
        free(s->cols[i]);
    free(s->cols);
    free(s->where);
    free(s->describe);
    free(s->model);
    free(s->digest);
    free(s->copy_sql);
    free(s->copy.p);
    free(s);
}
