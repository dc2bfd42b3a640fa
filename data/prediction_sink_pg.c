/* prediction_sink_pg.c — the prediction sink's PostgreSQL side: libpq, the catalog queries that
 * check the table, and one COPY FROM STDIN per chunk. */
#include "data/db_text.h" /* libpq messages on one line */
#include "data/prediction_sink_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends s as a COPY text-format field: backslash, tab, newline and carriage return escaped. */
static void sb_add_copy_field(kl_strbuf *b, const char *s) {
    const char *run = s;
    for (; *s; s++) {
        const char *esc = *s == '\\'   ? "\\\\"
                          : *s == '\t' ? "\\t"
                          : *s == '\n' ? "\\n"
                          : *s == '\r' ? "\\r"
                                       : NULL;
        if (!esc) continue;
        kl_strbuf_addn(b, run, (size_t)(s - run));
        kl_strbuf_add(b, esc);
        run = s + 1;
    }
    kl_strbuf_addn(b, run, (size_t)(s - run));
}

static void pg_quiet(void *arg, const char *message) {
    /* "relation already exists, skipping" and other notices are not the user's business. */
    (void)arg;
    (void)message;
}

/* A failed result (or connection) as this sink's error; clears res. */
static kl_status pg_err(const kl_prediction_sink *s, PGresult *res, const char *what) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s",
             res && *PQresultErrorMessage(res) ? PQresultErrorMessage(res) : PQerrorMessage(s->pg));
    kl_db_one_line(msg);
    PQclear(res);
    return kl_seterr(KL_EIO, "%s: %s: %s", s->describe, what, msg);
}

/* Runs sql with one text parameter (or none) and expects `want`; on success *out is the result. */
static kl_status pg_exec(const kl_prediction_sink *s, const char *sql, const char *param,
                         ExecStatusType want, const char *what, PGresult **out) {
    PGresult *res =
        param ? PQexecParams(s->pg, sql, 1, NULL, &param, NULL, NULL, 0) : PQexec(s->pg, sql);
    if (!res || PQresultStatus(res) != want) return pg_err(s, res, what);
    if (out)
        *out = res;
    else
        PQclear(res);
    return KL_OK;
}

kl_status ps_pg_open(kl_prediction_sink *s, const char *conninfo, int resume) {
    /* Defaults first: the URI's own connect_timeout or application_name, if any, win. */
    const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *vals[] = {"10", "kiln predict", conninfo, NULL};
    s->pg = PQconnectdbParams(keys, vals, 1);
    if (!s->pg) return kl_seterr(KL_ENOMEM, "%s: cannot allocate a connection", s->where);
    if (PQstatus(s->pg) != CONNECTION_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(s->pg));
        kl_db_one_line(msg);
        return kl_seterr(KL_EIO, "%s: cannot connect: %s", s->where, msg);
    }
    PQsetNoticeProcessor(s->pg, pg_quiet, NULL);
    char *sql = ps_create_sql(s);
    if (!sql) return kl_seterr(KL_ENOMEM, "building CREATE TABLE");
    kl_status st = pg_exec(s, sql, NULL, PGRES_COMMAND_OK, "creating the table", NULL);
    free(sql);
    KL_TRY(st);

    char quoted[IDENT_MAX + 3];
    snprintf(quoted, sizeof quoted, "\"%s\"", s->table);
    PGresult *cols = NULL, *pk = NULL;
    KL_TRY(pg_exec(s,
                   "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) "
                   "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                   quoted, PGRES_TUPLES_OK, "reading its columns", &cols));
    st = pg_exec(s,
                 "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = "
                 "i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = to_regclass($1) "
                 "AND i.indisprimary",
                 quoted, PGRES_TUPLES_OK, "reading its primary key", &pk);
    if (st == KL_OK) {
        int n_have = PQntuples(cols), n_pk = PQntuples(pk);
        char **have = calloc((size_t)n_have + 1, sizeof *have);
        char **pks = calloc((size_t)n_pk + 1, sizeof *pks);
        if (!have || !pks) {
            st = kl_seterr(KL_ENOMEM, "reading columns");
        } else {
            for (int i = 0; i < n_have; i++)
                have[i] = PQgetvalue(cols, i, 0);
            for (int i = 0; i < n_pk; i++)
                pks[i] = PQgetvalue(pk, i, 0);
            st = ps_check_columns(s, have, n_have, pks, n_pk);
        }
        free(have);
        free(pks);
    }
    PQclear(cols);
    PQclear(pk);
    KL_TRY(st);

    char q[256];
    snprintf(q, sizeof q,
             "SELECT count(*), max(\"row_index\"), min(\"input_digest\"), max(\"input_digest\"), "
             "min(\"model\"), max(\"model\") FROM \"%s\"",
             s->table);
    PGresult *res = NULL;
    KL_TRY(pg_exec(s, q, NULL, PGRES_TUPLES_OK, "reading what it holds", &res));
    st = ps_check_state(s, resume, strtoll(PQgetvalue(res, 0, 0), NULL, 10),
                        strtoll(PQgetvalue(res, 0, 1), NULL, 10), PQgetvalue(res, 0, 2),
                        PQgetvalue(res, 0, 3), PQgetvalue(res, 0, 4), PQgetvalue(res, 0, 5));
    PQclear(res);
    KL_TRY(st);

    kl_strbuf b = {0};
    kl_strbuf_addf(&b, "COPY \"%s\" (", s->table);
    ps_add_column_list(&b, s);
    kl_strbuf_add(&b, ") FROM STDIN");
    if (b.oom) {
        free(b.p);
        return kl_seterr(KL_ENOMEM, "building COPY");
    }
    s->copy_sql = b.p;
    return KL_OK;
}

/* One COPY per chunk: a COPY is one statement, so it commits whole or not at all, and it moves
 * rows far faster than one INSERT per row. */
kl_status ps_pg_write(kl_prediction_sink *s, int64_t first, int64_t rows, const float *out) {
    int C = s->n_classes ? s->n_classes : 1;
    kl_strbuf *b = &s->copy;
    b->len = 0;
    if (b->p) b->p[0] = '\0';
    kl_strbuf tail = {0};
    kl_strbuf_add(&tail, "\t");
    sb_add_copy_field(&tail, s->model);
    kl_strbuf_add(&tail, "\t");
    sb_add_copy_field(&tail, s->digest);
    kl_strbuf_addf(&tail, "\t%s\n", s->stamp);
    for (int64_t r = 0; r < rows && !tail.oom; r++) {
        const float *row = out + r * C;
        char pred[32];
        kl_strbuf_addf(b, "%lld\t", (long long)(first + r));
        sb_add_copy_field(b, ps_row_prediction(s, row, pred, sizeof pred));
        for (int c = 0; c < s->n_classes; c++)
            kl_strbuf_addf(b, "\t%.9g", (double)row[c]);
        kl_strbuf_addn(b, tail.p, tail.len);
    }
    int oom = b->oom || tail.oom;
    free(tail.p);
    if (oom) {
        b->oom = 0;
        return kl_seterr(KL_ENOMEM, "%s: building a chunk of %lld rows", s->describe,
                         (long long)rows);
    }
    KL_TRY(pg_exec(s, s->copy_sql, NULL, PGRES_COPY_IN, "starting COPY", NULL));
    int ok = 1;
    for (size_t off = 0; ok && off < b->len;) {
        size_t n = b->len - off > (1u << 20) ? (1u << 20) : b->len - off;
        ok = PQputCopyData(s->pg, b->p + off, (int)n) == 1;
        off += n;
    }
    if (PQputCopyEnd(s->pg, ok ? NULL : "kiln predict: sending rows failed") != 1) ok = 0;
    PGresult *res = PQgetResult(s->pg);
    kl_status st = KL_OK;
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
        char what[96];
        snprintf(what, sizeof what, "writing rows %lld..%lld", (long long)first,
                 (long long)(first + rows - 1));
        st = pg_err(s, res, what);
    } else {
        PQclear(res);
    }
    while ((res = PQgetResult(s->pg)))
        PQclear(res);
    return st;
}
