/* pipeline.c — the stages as one journey (pipeline.h). */
#include "pipeline/pipeline.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#include "eval/fairness.h"         /* kl_eval_group_gap */
#include "eval/evaluate.h"         /* kl_eval_file */
#include "eval/gates.h"            /* the gates */
#include "eval/promotion.h"        /* kl_promote, kl_promote_request */
#include "eval/report.h"           /* kl_eval_report_write */
#include "pipeline/pipeline_int.h" /* the shared types and helpers */
#include "runtime/bundle.h"        /* the trained model */
#include "runtime/fileio.h"        /* state.json, reports */
#include "runtime/sha256.h"        /* step keys */
#include "runtime/yaml_doc.h"      /* kl_yaml_load */
#include "tracking/mlflow.h"       /* parent and nested runs, registry */
#include "tracking/model_uri.h"    /* the champion */
#include "trainer/train.h"         /* kl_train_run */

double pl_now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int64_t pl_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* --- the YAML file -----------------------------------------------------------------------------
 */

kl_status pl_copy_scalar(yaml_node_t *n, const char *key, char *dst, size_t cap) {
    const char *v = kl_yaml_scalar(n);
    if (!v) return kl_seterr(KL_EINVAL, "%s: expected a value", key);
    if (strlen(v) >= cap) return kl_seterr(KL_EINVAL, "%s: value too long", key);
    snprintf(dst, cap, "%s", v);
    return KL_OK;
}

/* Re-reads the gates block's source text (for the step key): the bytes between its marks. */
static void gates_source(const char *text, yaml_node_t *n, char *out, size_t cap) {
    size_t a = n->start_mark.index, b = n->end_mark.index;
    if (b < a || b - a >= cap) b = a + cap - 1;
    snprintf(out, cap, "%.*s", (int)(b - a), text + a);
}

static kl_status parse_cfg(const char *path, pipeline_cfg *c) {
    char *text = NULL;
    size_t len = 0;
    KL_TRY(kl_file_read(path, 1 << 20, &text, &len));
    snprintf(c->approval, sizeof c->approval, "auto");
    snprintf(c->experiment, sizeof c->experiment, "kiln-pipeline");
    c->data.snapshot = 1;
    yaml_document_t doc;
    if (kl_yaml_load(text, len, &doc) != KL_OK) {
        free(text);
        return KL_EFORMAT;
    }
    kl_status st = KL_OK;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root || root->type != YAML_MAPPING_NODE)
        st = kl_seterr(KL_EINVAL, "expected a mapping (name, train_config, gates, ...)");
    for (yaml_node_pair_t *p = root && st == KL_OK ? root->data.mapping.pairs.start : NULL;
         p && p < root->data.mapping.pairs.top && st == KL_OK; p++) {
        const char *key = kl_yaml_scalar(yaml_document_get_node(&doc, p->key));
        yaml_node_t *v = yaml_document_get_node(&doc, p->value);
        if (!key) {
            st = kl_seterr(KL_EINVAL, "bad key");
        } else if (!strcmp(key, "name")) {
            st = pl_copy_scalar(v, key, c->name, sizeof c->name);
        } else if (!strcmp(key, "train_config")) {
            st = pl_copy_scalar(v, key, c->train_config, sizeof c->train_config);
        } else if (!strcmp(key, "experiment")) {
            st = pl_copy_scalar(v, key, c->experiment, sizeof c->experiment);
        } else if (!strcmp(key, "work_dir")) {
            st = pl_copy_scalar(v, key, c->work_dir, sizeof c->work_dir);
        } else if (!strcmp(key, "approval")) {
            st = pl_copy_scalar(v, key, c->approval, sizeof c->approval);
            if (st == KL_OK && strcmp(c->approval, "auto") && strcmp(c->approval, "manual"))
                st =
                    kl_seterr(KL_EINVAL, "approval: \"%s\" (expected auto or manual)", c->approval);
        } else if (!strcmp(key, "set")) {
            if (v->type != YAML_SEQUENCE_NODE) {
                st = kl_seterr(KL_EINVAL, "set: expected a list of key=value");
                break;
            }
            for (yaml_node_item_t *it = v->data.sequence.items.start;
                 it < v->data.sequence.items.top && st == KL_OK; it++) {
                const char *s = kl_yaml_scalar(yaml_document_get_node(&doc, *it));
                if (!s || c->n_sets >= PL_MAX_SETS)
                    st = kl_seterr(KL_EINVAL, "set: bad entry (or more than %d)", PL_MAX_SETS);
                else if (!(c->sets[c->n_sets++] = strdup(s)))
                    st = kl_seterr(KL_ENOMEM, "out of memory");
            }
        } else if (!strcmp(key, "eval")) {
            if (v->type != YAML_MAPPING_NODE) {
                st = kl_seterr(KL_EINVAL, "eval: expected {data, labels}");
                break;
            }
            for (yaml_node_pair_t *q = v->data.mapping.pairs.start;
                 q < v->data.mapping.pairs.top && st == KL_OK; q++) {
                const char *k = kl_yaml_scalar(yaml_document_get_node(&doc, q->key));
                yaml_node_t *w = yaml_document_get_node(&doc, q->value);
                if (k && !strcmp(k, "data"))
                    st = pl_copy_scalar(w, "eval.data", c->eval_data, sizeof c->eval_data);
                else if (k && !strcmp(k, "labels"))
                    st = pl_copy_scalar(w, "eval.labels", c->eval_labels, sizeof c->eval_labels);
                else
                    st = kl_seterr(KL_EINVAL, "eval: unknown key \"%s\"", k ? k : "?");
            }
        } else if (!strcmp(key, "data")) {
            st = pl_data_parse(&doc, v, text, &c->data);
        } else if (!strcmp(key, "gates")) {
            st = kl_gates_parse_node(&doc, v, &c->gates);
            gates_source(text, v, c->gates_text, sizeof c->gates_text);
        } else {
            st = kl_seterr(KL_EINVAL,
                           "unknown key \"%s\" (name, train_config, set, experiment, work_dir, "
                           "data, eval, gates, approval)",
                           key);
        }
    }
    yaml_document_delete(&doc);
    free(text);
    if (st == KL_OK && (!c->name[0] || !c->train_config[0]))
        st = kl_seterr(KL_EINVAL, "name and train_config are required");
    if (st == KL_OK && !c->work_dir[0])
        snprintf(c->work_dir, sizeof c->work_dir, "out/pipeline/%s", c->name);
    return st == KL_OK ? KL_OK : kl_preferr(st, "%s", path);
}

/* --- step keys and state ------------------------------------------------------------------------
 */

/* Adds a file's bytes to h (size and content); a missing file adds its name only. */
void pl_hash_file(kl_sha256 *h, const char *path) {
    if (!path || !*path) return;
    kl_sha256_update(h, path, strlen(path) + 1);
    FILE *f = fopen(path, "rb");
    if (!f) return;
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        kl_sha256_update(h, buf, n);
    fclose(f);
}

void pl_hash_text(kl_sha256 *h, const char *s) {
    kl_sha256_update(h, s ? s : "", s ? strlen(s) + 1 : 1);
}

void pl_hash_end(kl_sha256 *h, char out[65]) {
    unsigned char d[32];
    kl_sha256_final(h, d);
    kl_sha256_hex(d, out);
}

const char *pl_state_get(pipeline *p, const char *step, const char *field) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(p->state, step);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, field);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

void pl_state_set(pipeline *p, const char *step, const char *field, const char *value) {
    cJSON *s = cJSON_GetObjectItemCaseSensitive(p->state, step);
    if (!s) s = cJSON_AddObjectToObject(p->state, step);
    cJSON_DeleteItemFromObjectCaseSensitive(s, field);
    cJSON_AddStringToObject(s, field, value);
}

kl_status pl_state_save(pipeline *p) {
    char path[4200];
    snprintf(path, sizeof path, "%s/state.json", p->cfg.work_dir);
    char *text = cJSON_Print(p->state);
    if (!text) return kl_seterr(KL_ENOMEM, "state.json: out of memory");
    kl_status st = kl_file_write_atomic(path, text, strlen(text));
    free(text);
    return st;
}

static void state_load(pipeline *p) {
    char path[4200], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/state.json", p->cfg.work_dir);
    if (kl_file_read(path, 1 << 24, &text, &len) == KL_OK) p->state = cJSON_Parse(text);
    free(text);
    kl_clearerr();
    if (!p->state) p->state = cJSON_CreateObject();
}

int pl_unchanged(pipeline *p, const char *step, const char *key) {
    const char *k = pl_state_get(p, step, "key");
    return !p->o->force && k && !strcmp(k, key);
}

/* --- MLflow: the parent run and the nested step runs --------------------------------------------
 */

static kl_status tracking_begin(pipeline *p) {
    const char *uri = getenv("MLFLOW_TRACKING_URI");
    if (!uri || !*uri) return KL_OK;
    KL_TRY(kl_mlflow_open(NULL, &p->mlflow));
    KL_TRY(kl_mlflow_experiment(p->mlflow, p->cfg.experiment, p->experiment_id));
    const char *ev = p->o->evidence, *slash = ev ? strrchr(ev, '/') : NULL;
    char artifact[300] = "";
    if (ev) snprintf(artifact, sizeof artifact, "trigger/%s", slash ? slash + 1 : ev);
    kl_kv tags[] = {{"kiln.pipeline", p->cfg.name},
                    {"kiln.trigger", p->o->trigger ? p->o->trigger : "manual"},
                    {"mlflow.source.name", "kiln pipeline run"},
                    {"mlflow.source.type", "JOB"},
                    {"kiln.trigger.evidence", artifact}};
    char run_name[320];
    snprintf(run_name, sizeof run_name, "pipeline %s", p->cfg.name);
    kl_mlflow_run run;
    KL_TRY(kl_mlflow_create_run(p->mlflow, p->experiment_id, run_name, pl_now_ms(), tags,
                                ev ? 5 : 4, &run));
    snprintf(p->parent_run, sizeof p->parent_run, "%s", run.run_id);
    snprintf(p->res->run_id, sizeof p->res->run_id, "%s", run.run_id);
    if (ev) KL_TRY(kl_mlflow_upload_file(p->mlflow, run.artifact_uri, ev, artifact));
    return KL_OK;
}

/* A nested run recording one step (not for train: the training run is its own). */
void pl_step_run(pipeline *p, const char *step, const char *status, double seconds,
                 const kl_metric *metrics, int n_metrics, const kl_kv *params, int n_params) {
    if (!p->mlflow || !p->parent_run[0]) return;
    kl_kv tags[] = {{"mlflow.parentRunId", p->parent_run}, {"kiln.pipeline.step", step}};
    char name[64];
    snprintf(name, sizeof name, "step: %s", step);
    kl_mlflow_run run;
    int64_t end = pl_now_ms();
    if (kl_mlflow_create_run(p->mlflow, p->experiment_id, name, end - (int64_t)(seconds * 1e3),
                             tags, 2, &run) != KL_OK) {
        kl_clearerr();
        return;
    }
    kl_metric m[40];
    int nm = 0;
    m[nm++] = (kl_metric){"duration_s", seconds, end, 0};
    for (int i = 0; i < n_metrics && nm < 40; i++)
        m[nm++] = metrics[i];
    kl_mlflow_log_batch(p->mlflow, run.run_id, m, nm, params, n_params, NULL, 0);
    kl_mlflow_update_run(p->mlflow, run.run_id, status, end);
    kl_clearerr();
}

/* --- the steps
 * ------------------------------------------------------------------------------------ */

void pl_say(pipeline *p, const char *step, const char *what, double seconds) {
    if (p->o->log)
        fprintf(p->o->log, "pipeline %s: %-9s %s (%.1f s)\n", p->cfg.name, step, what, seconds);
}

/* train: the bundle in work_dir/model; key = the resolved config and the training data's bytes. */
static kl_status step_train(pipeline *p, kl_train_config *tc, char key_out[65]) {
    double t0 = pl_now_s();
    char bundle[4200];
    snprintf(bundle, sizeof bundle, "%s/model", p->cfg.work_dir);
    free(tc->output);
    tc->output = strdup(bundle);
    kl_sha256 h;
    if (kl_sha256_init(&h)) return kl_seterr(KL_EINTERNAL, "sha256");
    char *cfg_text = NULL;
    size_t cfg_len = 0;
    FILE *mem = open_memstream(&cfg_text, &cfg_len);
    if (mem) {
        kl_config_write_yaml(tc, mem);
        fclose(mem);
    }
    pl_hash_text(&h, cfg_text);
    free(cfg_text);
    pl_hash_file(&h, tc->data_train);
    pl_hash_file(&h, tc->data_train_labels);
    pl_hash_end(&h, key_out);
    if (pl_unchanged(p, "train", key_out)) {
        pl_say(p, "train", "skipped (data and config unchanged)", pl_now_s() - t0);
        p->res->steps_skipped++;
        return KL_OK;
    }
    free(tc->tracking_parent_run);
    tc->tracking_parent_run = strdup(p->parent_run);
    free(tc->tracking_experiment);
    tc->tracking_experiment = strdup(p->cfg.experiment);
    kl_train_result tr;
    kl_status st = kl_train_run(tc, 0, p->o->log, &tr);
    if (st != KL_OK) {
        pl_say(p, "train", "FAILED", pl_now_s() - t0);
        return kl_preferr(st, "train");
    }
    pl_state_set(p, "train", "key", key_out);
    pl_state_set(p, "train", "bundle", bundle);
    pl_state_set(p, "train", "run_id", tr.run_id);
    pl_state_set(p, "train", "data_digest", tr.data_digest);
    /* Steps downstream of a new model must run again. */
    cJSON_DeleteItemFromObjectCaseSensitive(p->state, "register");
    KL_TRY(pl_state_save(p));
    char what[128];
    snprintf(what, sizeof what, "ok (%lld steps, %.0f samples/s)", (long long)tr.steps,
             tr.samples_per_s);
    pl_say(p, "train", what, pl_now_s() - t0);
    p->res->steps_run++;
    return KL_OK;
}

typedef struct {
    const kl_eval_result *candidate, *champion;
    const char *data; /* the evaluation file (its columns group the rows for fairness) */
} gate_sources;

static kl_status gate_group_gap(void *ctx, const char *column, const char *metric, double *gap) {
    const gate_sources *s = ctx;
    return kl_eval_group_gap(s->candidate, s->data, column, metric, gap, NULL);
}

static kl_status gate_metric(void *ctx, const char *who, const char *name, double *v) {
    const gate_sources *s = ctx;
    if (!strcmp(who, "candidate")) return kl_eval_metric(s->candidate, name, v);
    if (!strcmp(who, "baseline")) return kl_eval_baseline_metric(s->candidate, name, v);
    if (!strcmp(who, "champion") && s->champion) return kl_eval_metric(s->champion, name, v);
    return kl_seterr(KL_ENOTFOUND, "no %s metrics", who);
}

/* evaluate + gates: the candidate and the champion on the same data. */
static kl_status step_eval_gates(pipeline *p, const kl_train_config *tc, const char *train_key,
                                 int *passed) {
    double t0 = pl_now_s();
    const char *data = p->cfg.eval_data[0] ? p->cfg.eval_data : tc->data_test;
    const char *labels = p->cfg.eval_data[0] ? (p->cfg.eval_labels[0] ? p->cfg.eval_labels : NULL)
                                             : tc->data_test_labels;
    if (!data || !*data)
        return kl_seterr(KL_EINVAL, "evaluate: no evaluation data (eval.data, or data.test in %s)",
                         p->cfg.train_config);
    char bundle_dir[4200], champ_dir[4096], champ_version[32] = "";
    snprintf(bundle_dir, sizeof bundle_dir, "%s/model", p->cfg.work_dir);
    /* The champion as it is now: a new champion means the comparison must be made again. */
    if (p->mlflow &&
        kl_mlflow_get_alias(p->mlflow, p->cfg.name, "champion", champ_version) != KL_OK) {
        champ_version[0] = 0;
        kl_clearerr();
    }
    /* A champion that is this very model (registered from the same training) is no rival. */
    const char *mine = pl_state_get(p, "register", "version"),
               *mine_key = pl_state_get(p, "register", "key");
    if (champ_version[0] && mine && mine_key && !strcmp(mine_key, train_key) &&
        !strcmp(mine, champ_version))
        champ_version[0] = 0;
    kl_sha256 h;
    char key[65];
    if (kl_sha256_init(&h)) return kl_seterr(KL_EINTERNAL, "sha256");
    pl_hash_text(&h, train_key);
    pl_hash_file(&h, data);
    pl_hash_file(&h, labels);
    pl_hash_text(&h, p->cfg.gates_text);
    pl_hash_text(&h, champ_version);
    pl_hash_end(&h, key);
    if (pl_unchanged(p, "gates", key)) {
        const char *r = pl_state_get(p, "gates", "passed");
        *passed = r && !strcmp(r, "true");
        pl_say(p, "evaluate", "skipped (model and data unchanged)", 0);
        pl_say(p, "gates", *passed ? "skipped (passed before)" : "skipped (failed before)", 0);
        p->res->steps_skipped += 2;
        return KL_OK;
    }
    kl_bundle b, cb;
    kl_eval_result res, cres;
    memset(&b, 0, sizeof b);
    memset(&cb, 0, sizeof cb);
    memset(&res, 0, sizeof res);
    memset(&cres, 0, sizeof cres);
    int have_champion = 0;
    kl_eval_opts eo = {.batch_size = 1024};
    kl_status st = kl_bundle_load(bundle_dir, &b);
    if (st == KL_OK) st = kl_eval_file(&b, data, labels, &eo, &res, NULL);
    if (st == KL_OK) {
        char rdir[4200];
        snprintf(rdir, sizeof rdir, "%s/eval", p->cfg.work_dir);
        kl_eval_meta meta = {.model = bundle_dir, .model_dir = bundle_dir, .data = data};
        st = kl_eval_report_write(rdir, &res, &meta);
    }
    double t1 = pl_now_s();
    if (st != KL_OK) {
        pl_say(p, "evaluate", "FAILED", t1 - t0);
        kl_preferr(st, "evaluate");
        goto done;
    }
    double acc = NAN;
    kl_eval_metric(&res, res.task == KL_TASK_CLASSIFICATION ? "accuracy" : "mse", &acc);
    kl_clearerr();
    char what[4400];
    snprintf(what, sizeof what, "ok (%s %.4f on %s)",
             res.task == KL_TASK_CLASSIFICATION ? "accuracy" : "mse", acc, data);
    pl_say(p, "evaluate", what, t1 - t0);
    kl_metric em[] = {{"accuracy", acc, pl_now_ms(), 0}};
    pl_step_run(p, "evaluate", "FINISHED", t1 - t0, em, isnan(acc) ? 0 : 1, NULL, 0);
    p->res->steps_run++;

    if (champ_version[0]) {
        char uri[600];
        snprintf(uri, sizeof uri, "models:/%s@champion", p->cfg.name);
        if (kl_model_uri_resolve(uri, champ_dir, sizeof champ_dir) == KL_OK &&
            kl_bundle_load(champ_dir, &cb) == KL_OK &&
            kl_eval_file(&cb, data, labels, &eo, &cres, NULL) == KL_OK) {
            have_champion = 1;
        } else {
            st = kl_preferr(KL_EIO, "gates: evaluate champion version %s", champ_version);
            goto done;
        }
    }
    gate_sources src = {&res, have_champion ? &cres : NULL, data};
    kl_gate_inputs in = {.ctx = &src,
                         .metric = gate_metric,
                         .group_gap = gate_group_gap,
                         .bundle_dir = bundle_dir,
                         .bundle = &b,
                         .device = kl_cpu(),
                         .have_champion = have_champion};
    kl_gate_result gr[KL_GATES_MAX];
    st = kl_gates_run(&p->cfg.gates, &in, gr, passed);
    if (st != KL_OK) goto done;
    for (int i = 0; i < p->cfg.gates.n && p->o->log; i++)
        fprintf(p->o->log, "    %-30s %s  %s\n", gr[i].name, gr[i].passed ? "pass" : "FAIL",
                gr[i].detail);
    char *json = kl_gates_report_json(gr, p->cfg.gates.n, *passed);
    char rpath[4300];
    snprintf(rpath, sizeof rpath, "%s/gate-report.json", p->cfg.work_dir);
    if (json) st = kl_file_write_atomic(rpath, json, strlen(json));
    free(json);
    if (st != KL_OK) goto done;
    pl_say(p, "gates", *passed ? "passed" : "FAILED", pl_now_s() - t1);
    pl_step_run(p, "gates", *passed ? "FINISHED" : "FAILED", pl_now_s() - t1, NULL, 0, NULL, 0);
    p->res->steps_run++;
    pl_state_set(p, "gates", "key", key);
    pl_state_set(p, "gates", "passed", *passed ? "true" : "false");
    st = pl_state_save(p);
done:
    kl_eval_result_free(&res);
    kl_eval_result_free(&cres);
    kl_bundle_free(&b);
    kl_bundle_free(&cb);
    return st;
}

/* Writes each gate of the report at path to version v's tags: kiln.gate.<name> = "pass: ...". */
static kl_status tag_gate_results(pipeline *p, const char *v, const char *path) {
    char *text = NULL;
    size_t len = 0;
    KL_TRY(kl_file_read(path, 1 << 20, &text, &len));
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *g;
    kl_status st = KL_OK;
    cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(root, "gates")) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(g, "name");
        const cJSON *detail = cJSON_GetObjectItemCaseSensitive(g, "detail");
        if (!cJSON_IsString(name) || !cJSON_IsString(detail)) continue;
        char key[160], val[320];
        snprintf(key, sizeof key, "kiln.gate.%.100s", name->valuestring);
        for (char *k = key; *k; k++)
            if (*k == '@') *k = '_'; /* MLflow tag keys: alphanumerics, _ - . / : and space */
        snprintf(val, sizeof val, "%s: %.250s",
                 cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(g, "passed")) ? "pass" : "fail",
                 detail->valuestring);
        if ((st = kl_mlflow_set_version_tag(p->mlflow, p->cfg.name, v, key, val)) != KL_OK) break;
    }
    cJSON_Delete(root);
    return st;
}

/* register + promote: a new version from the training run's model/, then champion or
 * challenger; the gate results go to the version's tags and the report to the parent run. */
static kl_status step_register(pipeline *p, const char *train_key) {
    double t0 = pl_now_s();
    if (!p->mlflow) {
        pl_say(p, "register", "skipped (no MLFLOW_TRACKING_URI)", 0);
        return KL_OK;
    }
    const char *have = pl_state_get(p, "register", "key");
    const char *version = pl_state_get(p, "register", "version");
    char v[32] = "";
    if (have && version && !strcmp(have, train_key) && !p->o->force) {
        snprintf(v, sizeof v, "%s", version);
        pl_say(p, "register", "skipped (this model is already a version)", 0);
        p->res->steps_skipped++;
    } else {
        const char *run_id = pl_state_get(p, "train", "run_id");
        if (!run_id || !*run_id)
            return kl_seterr(KL_EINVAL, "register: the training run's id is unknown (its "
                                        "records are still in the spool?)");
        kl_mlflow_run_info info;
        memset(&info, 0, sizeof info);
        KL_TRY(kl_mlflow_get_run(p->mlflow, run_id, &info));
        char source[700];
        snprintf(source, sizeof source, "%s/model", info.artifact_uri);
        kl_mlflow_run_info_free(&info);
        const char *digest = pl_state_get(p, "train", "data_digest");
        kl_kv tags[] = {{"kiln.data_digest", digest ? digest : ""}, {"kiln.pipeline", p->cfg.name}};
        KL_TRY(kl_mlflow_registered_model(p->mlflow, p->cfg.name, NULL));
        KL_TRY(kl_mlflow_create_model_version(p->mlflow, p->cfg.name, source, run_id, NULL, tags, 2,
                                              v));
        pl_state_set(p, "register", "key", train_key);
        pl_state_set(p, "register", "version", v);
        KL_TRY(pl_state_save(p));
        pl_say(p, "register", v, pl_now_s() - t0);
        p->res->steps_run++;
    }
    snprintf(p->res->version, sizeof p->res->version, "%s", v);
    char rpath[4300];
    snprintf(rpath, sizeof rpath, "%s/gate-report.json", p->cfg.work_dir);
    KL_TRY(kl_mlflow_set_version_tag(p->mlflow, p->cfg.name, v, "kiln.gates", "passed"));
    KL_TRY(tag_gate_results(p, v, rpath));
    kl_mlflow_run_info info;
    memset(&info, 0, sizeof info);
    if (kl_mlflow_get_run(p->mlflow, p->parent_run, &info) == KL_OK)
        kl_mlflow_upload_file(p->mlflow, info.artifact_uri, rpath, "gate-report.json");
    kl_mlflow_run_info_free(&info);
    kl_clearerr();
    double t1 = pl_now_s();
    char current[32] = "";
    if (kl_mlflow_get_alias(p->mlflow, p->cfg.name,
                            !strcmp(p->cfg.approval, "auto") ? "champion" : "challenger",
                            current) != KL_OK)
        kl_clearerr();
    if (!strcmp(current, v)) {
        snprintf(p->res->promoted, sizeof p->res->promoted, "%s",
                 !strcmp(p->cfg.approval, "auto") ? "champion" : "challenger");
        pl_say(p, "promote", "skipped (already there)", 0);
        return KL_OK;
    }
    if (!strcmp(p->cfg.approval, "auto")) {
        KL_TRY(kl_promote(p->mlflow, p->cfg.name, v, "kiln pipeline (approval: auto)", NULL));
        snprintf(p->res->promoted, sizeof p->res->promoted, "champion");
        pl_say(p, "promote", "champion", pl_now_s() - t1);
    } else {
        KL_TRY(kl_promote_request(p->mlflow, p->cfg.name, v));
        snprintf(p->res->promoted, sizeof p->res->promoted, "challenger");
        pl_say(p, "promote", "challenger (waiting for kiln approve)", pl_now_s() - t1);
    }
    kl_kv params[] = {{"version", v}, {"alias", p->res->promoted}};
    pl_step_run(p, "register", "FINISHED", pl_now_s() - t0, NULL, 0, params, 2);
    return KL_OK;
}

kl_status kl_pipeline_run(const char *path, const kl_pipeline_opts *opts, kl_pipeline_result *out) {
    memset(out, 0, sizeof *out);
    pipeline p;
    memset(&p, 0, sizeof p);
    p.o = opts;
    p.res = out;
    kl_train_config tc;
    kl_config_init(&tc);
    kl_status st = parse_cfg(path, &p.cfg);
    if (st == KL_OK) st = kl_config_load_yaml(&tc, p.cfg.train_config);
    for (int i = 0; st == KL_OK && i < p.cfg.n_sets; i++)
        st = kl_config_set(&tc, p.cfg.sets[i]);
    if (st == KL_OK) st = pl_data_override(&p.cfg.data, &tc);
    if (st == KL_OK) st = kl_config_validate(&tc);
    if (st != KL_OK) st = kl_preferr(st, "pipeline");
    if (st == KL_OK && opts->evidence && access(opts->evidence, R_OK) != 0)
        st = kl_seterr(KL_EIO, "pipeline: --evidence %s: %s", opts->evidence, strerror(errno));
    if (st == KL_OK) st = kl_file_mkdirs(p.cfg.work_dir);
    if (st == KL_OK) {
        state_load(&p);
        st = tracking_begin(&p);
    }
    char train_key[65] = "";
    int passed = 0;
    if (st == KL_OK) st = pl_data_steps(&p, &tc);
    if (st == KL_OK) st = step_train(&p, &tc, train_key);
    if (st == KL_OK) st = step_eval_gates(&p, &tc, train_key, &passed);
    out->gates_passed = passed;
    if (st == KL_OK && !passed)
        st = kl_seterr(KL_EINVAL,
                       "gates failed (see %s/gate-report.json): nothing registered, "
                       "the champion is untouched",
                       p.cfg.work_dir);
    if (st == KL_OK) st = step_register(&p, train_key);
    if (p.mlflow && p.parent_run[0]) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", st == KL_OK ? "" : kl_errmsg());
        kl_mlflow_update_run(p.mlflow, p.parent_run, st == KL_OK ? "FINISHED" : "FAILED",
                             pl_now_ms());
        if (st != KL_OK) kl_seterr(st, "%s", msg);
    }
    kl_mlflow_close(p.mlflow);
    cJSON_Delete(p.state);
    for (int i = 0; i < p.cfg.n_sets; i++)
        free(p.cfg.sets[i]);
    pl_data_free(&p.cfg.data);
    kl_config_free(&tc);
    return st;
}
