/* prediction_log_db.c — the prediction log's SQL sinks: SQLite (a prepared INSERT) and
 * PostgreSQL (PQexecParams), records grouped in transactions that the writer commits whenever
 * its queue runs empty (or every few hundred records). Targets are parsed as the batch
 * prediction sink parses them (data/prediction_sink.h); messages go through data/db_text.h. */
#include <stdlib.h>
#include <string.h>

#include "data/db_text.h"         /* libpq messages on one line */
#include "data/prediction_sink.h" /* kl_db_target_parse */
#include "monitor/prediction_log_impl.h"

#define PL_DEFAULT_TABLE "prediction_log"
#define SQLITE_WAIT_MS 30000 /* how long a write waits for a reader's lock */

static kl_status sq_err(kl_prediction_log *l, const char *what) {
    return kl_seterr(KL_EIO, "prediction log table \"%s\" in %s: %s: %s", l->table, l->where, what,
                     l->db ? sqlite3_errmsg(l->db) : "out of memory");
}

static kl_status pg_err(kl_prediction_log *l, PGresult *res, const char *what) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s",
             res && *PQresultErrorMessage(res) ? PQresultErrorMessage(res)
             : l->pg                           ? PQerrorMessage(l->pg)
                                               : "out of memory");
    kl_db_one_line(msg);
    PQclear(res);
    return kl_seterr(KL_EIO, "prediction log table \"%s\" in %s: %s: %s", l->table, l->where, what,
                     msg);
}

static kl_status pg_run(kl_prediction_log *l, const char *sql, const char *what) {
    PGresult *res = PQexec(l->pg, sql);
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) return pg_err(l, res, what);
    PQclear(res);
    return KL_OK;
}

static void pg_quiet(void *arg, const char *message) {
    (void)arg; /* "relation already exists, skipping" is not the user's business */
    (void)message;
}

kl_status pl_db_open(kl_prediction_log *l, const char *target) {
    kl_db_target t;
    KL_TRY(kl_db_target_parse(target, PL_DEFAULT_TABLE, &t));
    l->where = t.where;
    t.where = NULL;
    snprintf(l->table, sizeof l->table, "%s", t.table);
    char sql[512];
    kl_status st = KL_OK;
    if (!t.postgres) {
        l->kind = PL_SINK_SQLITE;
        int rc = sqlite3_open_v2(t.conn, &l->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
        if (rc != SQLITE_OK) {
            st = sq_err(l, "cannot open");
        } else {
            sqlite3_busy_timeout(l->db, SQLITE_WAIT_MS);
            snprintf(sql, sizeof sql,
                     "CREATE TABLE IF NOT EXISTS \"%s\" (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                     "type TEXT NOT NULL, time TEXT NOT NULL, request_id TEXT NOT NULL, "
                     "model TEXT NOT NULL, version TEXT NOT NULL, inputs TEXT, outputs TEXT, "
                     "labels TEXT)",
                     l->table);
            if (sqlite3_exec(l->db, sql, NULL, NULL, NULL) != SQLITE_OK)
                st = sq_err(l, "creating the table");
        }
        if (st == KL_OK) {
            snprintf(sql, sizeof sql,
                     "INSERT INTO \"%s\" (type, time, request_id, model, version, inputs, "
                     "outputs, labels) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                     l->table);
            if (sqlite3_prepare_v2(l->db, sql, -1, &l->insert, NULL) != SQLITE_OK)
                st = sq_err(l, "preparing INSERT");
        }
    } else {
        l->kind = PL_SINK_PG;
        const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
        const char *vals[] = {"10", "kiln serve", t.conn, NULL};
        l->pg = PQconnectdbParams(keys, vals, 1);
        if (!l->pg || PQstatus(l->pg) != CONNECTION_OK) {
            st = pg_err(l, NULL, "cannot connect");
        } else {
            PQsetNoticeProcessor(l->pg, pg_quiet, NULL);
            snprintf(sql, sizeof sql,
                     "CREATE TABLE IF NOT EXISTS \"%s\" (id BIGSERIAL PRIMARY KEY, "
                     "type TEXT NOT NULL, time TIMESTAMPTZ NOT NULL, request_id TEXT NOT NULL, "
                     "model TEXT NOT NULL, version TEXT NOT NULL, inputs JSONB, outputs JSONB, "
                     "labels JSONB)",
                     l->table);
            st = pg_run(l, sql, "creating the table");
        }
    }
    kl_db_target_free(&t);
    return st;
}

static kl_status begin(kl_prediction_log *l) {
    if (l->in_tx) return KL_OK;
    if (l->kind == PL_SINK_SQLITE) {
        if (sqlite3_exec(l->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
            return sq_err(l, "starting a transaction");
    } else {
        KL_TRY(pg_run(l, "BEGIN", "starting a transaction"));
    }
    l->in_tx = 1;
    l->tx_records = 0;
    return KL_OK;
}

kl_status pl_db_write(kl_prediction_log *l, const pl_record *r) {
    KL_TRY(begin(l));
    char t[32];
    pl_time_text(r->time_ms, t);
    kl_strbuf in = {0}, out = {0}, lab = {0};
    int pred = r->type == PL_PREDICTION;
    if (pred) {
        pl_json_matrix(&in, r->inputs, r->rows, r->n_features);
        pl_json_matrix(&out, r->outputs, r->rows, r->n_outputs);
    } else {
        pl_json_labels(&lab, r->labels, r->rows);
    }
    kl_status st = KL_OK;
    if (in.oom || out.oom || lab.oom) {
        st = kl_seterr(KL_ENOMEM, "prediction log: out of memory formatting");
    } else if (l->kind == PL_SINK_SQLITE) {
        sqlite3_stmt *s = l->insert;
        sqlite3_bind_text(s, 1, pred ? "prediction" : "feedback", -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, t, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, r->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 4, r->model, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 5, r->version, -1, SQLITE_STATIC);
        if (pred) {
            sqlite3_bind_text(s, 6, in.p, -1, SQLITE_STATIC);
            sqlite3_bind_text(s, 7, out.p, -1, SQLITE_STATIC);
            sqlite3_bind_null(s, 8);
        } else {
            sqlite3_bind_null(s, 6);
            sqlite3_bind_null(s, 7);
            sqlite3_bind_text(s, 8, lab.p, -1, SQLITE_STATIC);
        }
        if (sqlite3_step(s) != SQLITE_DONE) st = sq_err(l, "inserting a record");
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
    } else {
        char sql[256];
        snprintf(sql, sizeof sql,
                 "INSERT INTO \"%s\" (type, time, request_id, model, version, inputs, outputs, "
                 "labels) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                 l->table);
        const char *p[8] = {pred ? "prediction" : "feedback",
                            t,
                            r->id,
                            r->model,
                            r->version,
                            pred ? in.p : NULL,
                            pred ? out.p : NULL,
                            pred ? NULL : lab.p};
        PGresult *res = PQexecParams(l->pg, sql, 8, NULL, p, NULL, NULL, 0);
        if (!res || PQresultStatus(res) != PGRES_COMMAND_OK)
            st = pg_err(l, res, "inserting a record");
        else
            PQclear(res);
    }
    free(in.p);
    free(out.p);
    free(lab.p);
    if (st != KL_OK) {
        /* the transaction is broken in PostgreSQL; in SQLite keep what it holds */
        if (l->kind == PL_SINK_PG) {
            PGresult *res = PQexec(l->pg, "ROLLBACK");
            PQclear(res);
            l->in_tx = 0;
        }
    }
    return st;
}

kl_status pl_db_commit(kl_prediction_log *l) {
    if (!l->in_tx) return KL_OK;
    l->in_tx = 0;
    l->tx_records = 0;
    if (l->kind == PL_SINK_SQLITE) {
        if (sqlite3_exec(l->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
            kl_status st = sq_err(l, "committing");
            sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
            return st;
        }
        return KL_OK;
    }
    return pg_run(l, "COMMIT", "committing");
}

void pl_db_close(kl_prediction_log *l) {
    if (l->in_tx && pl_db_commit(l) != KL_OK) fprintf(stderr, "kiln serve: %s\n", kl_errmsg());
    if (l->insert) sqlite3_finalize(l->insert);
    if (l->db) sqlite3_close(l->db);
    if (l->pg) PQfinish(l->pg);
    l->insert = NULL;
    l->db = NULL;
    l->pg = NULL;
}
