/* pipeline_data.c — the pipeline's steps before training (pipeline.h: the data: block):
 *
 *   ingest   a database query's rows into a CSV file that becomes the training data
 *   checks   data/checks.h on the training data; a failure stops the pipeline
 *   snapshot a content-addressed copy of the training data (data/snapshot.h), its digest a tag
 *            of the parent run
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/checks.h"           /* the checks and their report */
#include "data/ingest.h"           /* kl_ingest_to_csv */
#include "data/snapshot.h"         /* kl_snapshot_save */
#include "pipeline/pipeline_int.h" /* the shared types and helpers */
#include "runtime/fileio.h"        /* the checks report */
#include "runtime/yaml_doc.h"      /* kl_yaml_scalar */

/* --- the data: block ----------------------------------------------------------------------------
 */

/* A node's source text, indented as in the file so that a block mapping parses on its own. */
static char *node_source(const char *text, yaml_node_t *n) {
    size_t a = n->start_mark.index, b = n->end_mark.index, col = n->start_mark.column;
    if (b < a) b = a;
    char *s = malloc(col + (b - a) + 1);
    if (!s) return NULL;
    memset(s, ' ', col);
    memcpy(s + col, text + a, b - a);
    s[col + (b - a)] = 0;
    return s;
}

static kl_status parse_ingest(yaml_document_t *doc, yaml_node_t *v, pl_data_cfg *d) {
    if (v->type != YAML_MAPPING_NODE)
        return kl_seterr(KL_EINVAL, "data.ingest: expected {from, query | table, out}");
    kl_status st = KL_OK;
    for (yaml_node_pair_t *q = v->data.mapping.pairs.start;
         q < v->data.mapping.pairs.top && st == KL_OK; q++) {
        const char *k = kl_yaml_scalar(yaml_document_get_node(doc, q->key));
        yaml_node_t *w = yaml_document_get_node(doc, q->value);
        if (k && !strcmp(k, "from")) {
            st = pl_copy_scalar(w, "data.ingest.from", d->from, sizeof d->from);
        } else if (k && !strcmp(k, "table")) {
            st = pl_copy_scalar(w, "data.ingest.table", d->table, sizeof d->table);
        } else if (k && !strcmp(k, "out")) {
            st = pl_copy_scalar(w, "data.ingest.out", d->out, sizeof d->out);
        } else if (k && !strcmp(k, "query")) {
            const char *s = kl_yaml_scalar(w);
            free(d->query);
            d->query = s ? strdup(s) : NULL;
            if (!s)
                st = kl_seterr(KL_EINVAL, "data.ingest.query: expected SQL text");
            else if (!d->query)
                st = kl_seterr(KL_ENOMEM, "out of memory");
        } else {
            st = kl_seterr(KL_EINVAL, "data.ingest: unknown key \"%s\" (from, query, table, out)",
                           k ? k : "?");
        }
    }
    if (st != KL_OK) return st;
    if (!d->from[0] || !d->out[0])
        return kl_seterr(KL_EINVAL, "data.ingest: from and out are required");
    if (!d->query == !d->table[0])
        return kl_seterr(KL_EINVAL, "data.ingest: give exactly one of query and table");
    return KL_OK;
}

kl_status pl_data_parse(yaml_document_t *doc, yaml_node_t *v, const char *text, pl_data_cfg *d) {
    if (v->type != YAML_MAPPING_NODE)
        return kl_seterr(KL_EINVAL, "data: expected {ingest, checks, snapshot, store}");
    d->present = 1;
    kl_status st = KL_OK;
    for (yaml_node_pair_t *q = v->data.mapping.pairs.start;
         q < v->data.mapping.pairs.top && st == KL_OK; q++) {
        const char *k = kl_yaml_scalar(yaml_document_get_node(doc, q->key));
        yaml_node_t *w = yaml_document_get_node(doc, q->value);
        if (k && !strcmp(k, "ingest")) {
            st = parse_ingest(doc, w, d);
        } else if (k && !strcmp(k, "checks")) {
            free(d->checks_text);
            if (!d->checks) d->checks = malloc(sizeof *d->checks);
            d->checks_text = node_source(text, w);
            if (!d->checks || !d->checks_text) {
                st = kl_seterr(KL_ENOMEM, "out of memory");
                break;
            }
            st = kl_data_checks_parse_yaml(d->checks_text, d->checks);
            if (st != KL_OK) st = kl_preferr(st, "data.checks");
        } else if (k && !strcmp(k, "snapshot")) {
            const char *s = kl_yaml_scalar(w);
            if (s && (!strcmp(s, "true") || !strcmp(s, "yes")))
                d->snapshot = 1;
            else if (s && (!strcmp(s, "false") || !strcmp(s, "no")))
                d->snapshot = 0;
            else
                st = kl_seterr(KL_EINVAL, "data.snapshot: expected true or false");
        } else if (k && !strcmp(k, "store")) {
            st = pl_copy_scalar(w, "data.store", d->store, sizeof d->store);
        } else {
            st = kl_seterr(KL_EINVAL, "data: unknown key \"%s\" (ingest, checks, snapshot, store)",
                           k ? k : "?");
        }
    }
    return st;
}

void pl_data_free(pl_data_cfg *d) {
    free(d->query);
    free(d->checks);
    free(d->checks_text);
    d->query = d->checks_text = NULL;
    d->checks = NULL;
}

kl_status pl_data_override(const pl_data_cfg *d, kl_train_config *tc) {
    if (!d->from[0]) return KL_OK;
    char set[4200];
    snprintf(set, sizeof set, "data.train=%s", d->out);
    KL_TRY(kl_preferr(kl_config_set(tc, "data.format=csv"), "data.ingest"));
    return kl_preferr(kl_config_set(tc, set), "data.ingest");
}

/* --- the steps ----------------------------------------------------------------------------------
 */

/* The SHA-256 of a file's name and bytes, as hex. */
static kl_status file_key(const char *path, char out[65]) {
    kl_sha256 h;
    if (kl_sha256_init(&h)) return kl_seterr(KL_EINTERNAL, "sha256");
    pl_hash_file(&h, path);
    pl_hash_end(&h, out);
    return KL_OK;
}

/* ingest: always runs against a server (its rows may have changed; the steps after it skip
 * when the CSV came out the same); a SQLite file is skipped when its bytes and the spec are
 * unchanged and the CSV is still the one written. */
static kl_status step_ingest(pipeline *p) {
    const pl_data_cfg *d = &p->cfg.data;
    if (!d->from[0]) return KL_OK;
    double t0 = pl_now_s();
    char key[65] = "", out_key[65];
    if (!strncmp(d->from, "sqlite:", 7)) {
        const char *db = d->from + 7;
        if (!strncmp(db, "///", 3)) db += 2;
        kl_sha256 h;
        if (kl_sha256_init(&h)) return kl_seterr(KL_EINTERNAL, "sha256");
        pl_hash_text(&h, d->from);
        pl_hash_text(&h, d->query);
        pl_hash_text(&h, d->table);
        pl_hash_text(&h, d->out);
        pl_hash_file(&h, db);
        pl_hash_end(&h, key);
        const char *had = pl_state_get(p, "ingest", "out_key");
        KL_TRY(file_key(d->out, out_key));
        if (pl_unchanged(p, "ingest", key) && had && !strcmp(had, out_key)) {
            pl_say(p, "ingest", "skipped (database file and query unchanged)", pl_now_s() - t0);
            p->res->steps_skipped++;
            return KL_OK;
        }
    }
    kl_ingest_config ic = {
        .source = d->from, .query = d->query, .table = d->table[0] ? d->table : NULL};
    int64_t rows = 0;
    int cols = 0;
    kl_status st = kl_ingest_to_csv(&ic, d->out, &rows, &cols);
    double dt = pl_now_s() - t0;
    if (st != KL_OK) {
        pl_say(p, "ingest", "FAILED", dt);
        pl_step_run(p, "ingest", "FAILED", dt, NULL, 0, NULL, 0);
        p->res->steps_run++;
        return kl_preferr(st, "ingest");
    }
    KL_TRY(file_key(d->out, out_key));
    pl_state_set(p, "ingest", "key", key);
    pl_state_set(p, "ingest", "out_key", out_key);
    KL_TRY(pl_state_save(p));
    char what[4400];
    snprintf(what, sizeof what, "ok (%lld rows, %d columns into %s)", (long long)rows, cols,
             d->out);
    pl_say(p, "ingest", what, dt);
    int64_t t = pl_now_ms();
    kl_metric m[] = {{"rows", (double)rows, t, 0}, {"columns", (double)cols, t, 0}};
    kl_kv params[] = {{d->query ? "query" : "table", d->query ? d->query : d->table},
                      {"out", d->out}};
    pl_step_run(p, "ingest", "FINISHED", dt, m, 2, params, 2);
    p->res->steps_run++;
    return KL_OK;
}

/* checks: on the training data; key = its bytes and the checks as written. */
static kl_status step_checks(pipeline *p, const kl_train_config *tc) {
    const pl_data_cfg *d = &p->cfg.data;
    if (!d->checks) return KL_OK;
    double t0 = pl_now_s();
    const char *labels =
        tc->data_train_labels && *tc->data_train_labels ? tc->data_train_labels : NULL;
    kl_sha256 h;
    char key[65];
    if (kl_sha256_init(&h)) return kl_seterr(KL_EINTERNAL, "sha256");
    pl_hash_file(&h, tc->data_train);
    pl_hash_file(&h, labels);
    pl_hash_text(&h, d->checks_text);
    pl_hash_end(&h, key);
    if (pl_unchanged(p, "checks", key)) {
        pl_say(p, "checks", "skipped (passed before on the same data)", pl_now_s() - t0);
        p->res->steps_skipped++;
        return KL_OK;
    }
    kl_data_check_result *r = NULL;
    int n = 0, passed = 0;
    kl_status st = kl_data_checks_run_file(d->checks, tc->data_train, labels, &r, &n, &passed);
    double dt = pl_now_s() - t0;
    if (st != KL_OK) {
        pl_say(p, "checks", "FAILED", dt);
        return kl_preferr(st, "checks: %s", tc->data_train);
    }
    int failed = 0;
    for (int i = 0; i < n; i++) {
        failed += !r[i].passed;
        if (p->o->log)
            fprintf(p->o->log, "    %-30s %s  %s\n", r[i].name, r[i].passed ? "pass" : "FAIL",
                    r[i].detail);
    }
    char rpath[4300];
    snprintf(rpath, sizeof rpath, "%s/data-checks.json", p->cfg.work_dir);
    char *json = kl_data_checks_report_json(tc->data_train, r, n, passed);
    free(r);
    st = json ? kl_file_write_atomic(rpath, json, strlen(json))
              : kl_seterr(KL_ENOMEM, "checks: out of memory");
    free(json);
    if (st != KL_OK) return kl_preferr(st, "checks");
    int64_t t = pl_now_ms();
    kl_metric m[] = {{"checks", (double)n, t, 0}, {"checks_failed", (double)failed, t, 0}};
    pl_step_run(p, "checks", passed ? "FINISHED" : "FAILED", dt, m, 2, NULL, 0);
    p->res->steps_run++;
    if (!passed) {
        char what[64];
        snprintf(what, sizeof what, "FAILED (%d of %d)", failed, n);
        pl_say(p, "checks", what, dt);
        /* "gates failed" too: cli/ answers a failed gate with exit code 3. */
        return kl_seterr(KL_EINVAL,
                         "data checks failed (see %s): the data gates failed, nothing trained or "
                         "registered, the champion is untouched",
                         rpath);
    }
    pl_state_set(p, "checks", "key", key);
    KL_TRY(pl_state_save(p));
    char what[64];
    snprintf(what, sizeof what, "passed (%d checks)", n);
    pl_say(p, "checks", what, dt);
    return KL_OK;
}

/* snapshot: the training data into the store; its digest tags the parent run. */
static kl_status step_snapshot(pipeline *p, const kl_train_config *tc) {
    const pl_data_cfg *d = &p->cfg.data;
    if (!d->snapshot) {
        pl_say(p, "snapshot", "off (data.snapshot: false)", 0);
        return KL_OK;
    }
    double t0 = pl_now_s();
    char store[4096];
    if (d->store[0])
        snprintf(store, sizeof store, "%s", d->store);
    else
        KL_TRY(kl_preferr(kl_snapshot_default_store(store, sizeof store), "snapshot"));
    const char *labels =
        tc->data_train_labels && *tc->data_train_labels ? tc->data_train_labels : NULL;
    kl_sha256 h;
    char key[65], digest[KL_DIGEST_LEN] = "";
    if (kl_sha256_init(&h)) return kl_seterr(KL_EINTERNAL, "sha256");
    pl_hash_file(&h, tc->data_train);
    pl_hash_file(&h, labels);
    pl_hash_text(&h, store);
    pl_hash_end(&h, key);
    const char *had = pl_state_get(p, "snapshot", "digest");
    char dir[4300] = "";
    struct stat sb;
    if (had && strlen(had) > 7) snprintf(dir, sizeof dir, "%s/sha256/%s", store, had + 7);
    if (pl_unchanged(p, "snapshot", key) && dir[0] && stat(dir, &sb) == 0) {
        snprintf(digest, sizeof digest, "%s", had);
        pl_say(p, "snapshot", "skipped (data unchanged, still in the store)", pl_now_s() - t0);
        p->res->steps_skipped++;
    } else {
        kl_snapshot_input in = {tc->data_train, labels};
        int created = 0;
        kl_status st = kl_snapshot_save(store, &in, 1, p->cfg.name, digest, &created);
        double dt = pl_now_s() - t0;
        if (st != KL_OK) {
            pl_say(p, "snapshot", "FAILED", dt);
            return kl_preferr(st, "snapshot");
        }
        pl_state_set(p, "snapshot", "key", key);
        pl_state_set(p, "snapshot", "digest", digest);
        pl_state_set(p, "snapshot", "store", store);
        KL_TRY(pl_state_save(p));
        char what[4400];
        snprintf(what, sizeof what, "%s (%s %s)", digest, created ? "stored in" : "already in",
                 store);
        pl_say(p, "snapshot", what, dt);
        kl_kv params[] = {{"digest", digest}, {"store", store}};
        pl_step_run(p, "snapshot", "FINISHED", dt, NULL, 0, params, 2);
        p->res->steps_run++;
    }
    snprintf(p->res->data_snapshot, sizeof p->res->data_snapshot, "%s", digest);
    if (p->mlflow && p->parent_run[0]) {
        kl_kv tag = {"kiln.data_snapshot", digest};
        KL_TRY(kl_preferr(kl_mlflow_log_batch(p->mlflow, p->parent_run, NULL, 0, NULL, 0, &tag, 1),
                          "snapshot: tag the pipeline run"));
    }
    return KL_OK;
}

kl_status pl_data_steps(pipeline *p, kl_train_config *tc) {
    if (!p->cfg.data.present) return KL_OK;
    KL_TRY(step_ingest(p));
    KL_TRY(step_checks(p, tc));
    return step_snapshot(p, tc);
}
