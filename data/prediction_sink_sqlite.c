/* prediction_sink_sqlite.c — the prediction sink's SQLite side: the file, PRAGMA table_info,
 * and one prepared INSERT per row between BEGIN IMMEDIATE and COMMIT per chunk. */
#include "data/prediction_sink_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SQLITE_WAIT_MS 30000 /* how long a write waits for another connection's lock */

static kl_status sq_err(const kl_prediction_sink *s, const char *what) {
    return kl_seterr(KL_EIO, "%s: %s: %s", s->describe, what,
                     s->db ? sqlite3_errmsg(s->db) : "out of memory");
}

kl_status ps_sqlite_open(kl_prediction_sink *s, const char *path, int resume) {
    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK)
        return kl_seterr(KL_EIO, "%s: cannot open: %s", s->where,
                         s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
    /* Another reader (a dashboard, a test) may hold the file for a moment: wait, do not fail. */
    sqlite3_busy_timeout(s->db, SQLITE_WAIT_MS);
    char *sql = ps_create_sql(s);
    if (!sql) return kl_seterr(KL_ENOMEM, "building CREATE TABLE");
    rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    free(sql);
    if (rc != SQLITE_OK) return sq_err(s, "creating the table");

    char pragma[IDENT_MAX + 32];
    snprintf(pragma, sizeof pragma, "PRAGMA table_info(\"%s\")", s->table);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, pragma, -1, &st, NULL) != SQLITE_OK)
        return sq_err(s, "reading its columns");
    char **have = NULL, **pk = NULL;
    int n_have = 0, n_pk = 0;
    kl_status status = KL_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 1);
        char **h = realloc(have, (size_t)(n_have + 1) * sizeof *h);
        char **p = realloc(pk, (size_t)(n_pk + 1) * sizeof *p);
        if (h) have = h;
        if (p) pk = p;
        if (!h || !p || !(have[n_have] = strdup(name ? name : ""))) {
            status = kl_seterr(KL_ENOMEM, "reading columns");
            break;
        }
        n_have++;
        if (sqlite3_column_int(st, 5) > 0) pk[n_pk++] = have[n_have - 1];
    }
    if (status == KL_OK && rc != SQLITE_DONE) status = sq_err(s, "reading its columns");
    sqlite3_finalize(st);
    if (status == KL_OK) status = ps_check_columns(s, have, n_have, pk, n_pk);
    for (int i = 0; i < n_have; i++)
        free(have[i]);
    free(have);
    free(pk);
    KL_TRY(status);

    char q[256];
    snprintf(q, sizeof q,
             "SELECT count(*), max(\"row_index\"), min(\"input_digest\"), max(\"input_digest\"), "
             "min(\"model\"), max(\"model\") FROM \"%s\"",
             s->table);
    if (sqlite3_prepare_v2(s->db, q, -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        return sq_err(s, "reading what it holds");
    }
#define TXT(i) (sqlite3_column_text(st, (i)) ? (const char *)sqlite3_column_text(st, (i)) : "")
    status = ps_check_state(s, resume, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                            TXT(2), TXT(3), TXT(4), TXT(5));
#undef TXT
    sqlite3_finalize(st);
    KL_TRY(status);

    kl_strbuf b = {0};
    kl_strbuf_addf(&b, "INSERT INTO \"%s\" (", s->table);
    ps_add_column_list(&b, s);
    kl_strbuf_add(&b, ") VALUES (");
    for (int i = 0; i < s->n_cols; i++)
        kl_strbuf_addf(&b, "%s?%d", i ? ", " : "", i + 1);
    kl_strbuf_add(&b, ")");
    if (b.oom) {
        free(b.p);
        return kl_seterr(KL_ENOMEM, "building INSERT");
    }
    rc = sqlite3_prepare_v2(s->db, b.p, -1, &s->insert, NULL);
    free(b.p);
    if (rc != SQLITE_OK) return sq_err(s, "preparing INSERT");
    return KL_OK;
}

kl_status ps_sqlite_write(kl_prediction_sink *s, int64_t first, int64_t rows, const float *out) {
    int C = s->n_classes ? s->n_classes : 1;
    /* IMMEDIATE takes the write lock now, waiting out readers, rather than failing at COMMIT. */
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return sq_err(s, "starting a transaction");
    sqlite3_stmt *st = s->insert;
    int last = s->n_cols;
    sqlite3_bind_text(st, last - 2, s->model, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, last - 1, s->digest, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, last, s->stamp, -1, SQLITE_STATIC);
    for (int64_t r = 0; r < rows; r++) {
        const float *row = out + r * C;
        char pred[32], num[32];
        sqlite3_bind_int64(st, 1, first + r);
        sqlite3_bind_text(st, 2, ps_row_prediction(s, row, pred, sizeof pred), -1,
                          SQLITE_TRANSIENT);
        for (int c = 0; c < s->n_classes; c++) {
            /* The value the CSV output prints, so both read back the same. */
            snprintf(num, sizeof num, "%.9g", (double)row[c]);
            sqlite3_bind_double(st, 3 + c, strtod(num, NULL));
        }
        if (sqlite3_step(st) != SQLITE_DONE) {
            char what[64];
            snprintf(what, sizeof what, "inserting row %lld", (long long)(first + r));
            kl_status e = sq_err(s, what);
            sqlite3_reset(st);
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return e;
        }
        sqlite3_reset(st);
    }
    if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        kl_status e = sq_err(s, "committing");
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return e;
    }
    return KL_OK;
}
