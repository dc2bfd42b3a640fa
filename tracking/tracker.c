/* tracker.c — the async run tracker: a bounded ring, one worker thread, an on-disk spool. */
#include "tracking/tracker.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/fileio.h"

#define BATCH_OPS 1000     /* ring entries the worker takes at once */
#define REPLAY_EVERY_S 5.0 /* seconds between attempts to reach MLflow while spooling */
#define KEY_CAP 128        /* longest metric key kept in the ring */

typedef enum { OP_METRIC = 0, OP_JSON = 1 } op_kind;

/* One queued operation: a metric inline (no allocation), anything else as JSON text. */
typedef struct {
    op_kind kind;      /* what it is */
    char key[KEY_CAP]; /* metric key */
    double value;      /* metric value */
    int64_t ts_ms;     /* metric timestamp */
    int64_t step;      /* metric step */
    char *json;        /* OP_JSON: the operation, owned */
} op_t;

struct kl_tracker {
    char *experiment;           /* experiment name */
    char *run_name;             /* run name */
    char spool_dir[1024];       /* this run's spool directory */
    kl_mlflow_opts client_opts; /* connection settings */
    char uri_copy[1024];        /* storage for client_opts.uri */
    pthread_t thread;           /* the worker */
    pthread_mutex_t mu;         /* guards ring, count, stop */
    pthread_cond_t cv;          /* work arrived or stop requested */
    op_t *ring;                 /* [cap] queued operations */
    int cap, head, count;       /* ring geometry */
    int stop;                   /* finish requested */
    double deadline;            /* monotonic time after which the worker spools and exits */
    int64_t dropped;            /* metrics refused because the ring was full */
    /* worker-only state */
    kl_mlflow *client;      /* NULL until a connection could be opened */
    char run_id[64];        /* MLflow run, once created */
    char experiment_id[64]; /* its experiment */
    char artifact_uri[512]; /* its artifact root */
    int spooling;           /* 1: operations go to the spool until a replay catches up */
    int64_t spool_lines;    /* operations written to the spool */
    int64_t spool_done;     /* of those, delivered */
    double next_replay;     /* monotonic time of the next replay attempt */
    kl_tracker_summary sum; /* counters and the last error */
};

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void default_spool_root(char *out, size_t cap) {
    const char *env = getenv("KILN_SPOOL_DIR");
    const char *home = getenv("HOME");
    if (env && *env)
        snprintf(out, cap, "%s", env);
    else
        snprintf(out, cap, "%s/.cache/kiln/spool", home && *home ? home : "/tmp");
}

/* ---- JSON helpers ------------------------------------------------------------------------- */

static cJSON *kv_array(const kl_kv *kv, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON *p = cJSON_CreateArray();
        cJSON_AddItemToArray(p, cJSON_CreateString(kv[i].key));
        cJSON_AddItemToArray(p, cJSON_CreateString(kv[i].value ? kv[i].value : ""));
        cJSON_AddItemToArray(a, p);
    }
    return a;
}

/* Reads [[k,v],...] into a malloc'd kl_kv array pointing into the JSON (valid while it lives). */
static kl_kv *kv_read(const cJSON *a, int *n) {
    *n = cJSON_GetArraySize(a);
    kl_kv *kv = calloc((size_t)(*n ? *n : 1), sizeof *kv);
    for (int i = 0; kv && i < *n; i++) {
        const cJSON *p = cJSON_GetArrayItem(a, i);
        kv[i].key = cJSON_GetStringValue(cJSON_GetArrayItem(p, 0));
        kv[i].value = cJSON_GetStringValue(cJSON_GetArrayItem(p, 1));
        if (!kv[i].key) kv[i].key = "";
        if (!kv[i].value) kv[i].value = "";
    }
    return kv;
}

/* Metric values in the spool: numbers, or "NaN"/"Infinity"/"-Infinity" (JSON has no NaN). */
static cJSON *num_json(double v) {
    if (isnan(v)) return cJSON_CreateString("NaN");
    if (isinf(v)) return cJSON_CreateString(v > 0 ? "Infinity" : "-Infinity");
    /* %.17g reads back to the same double; cJSON's own printing may drop the last bits. */
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", v);
    return cJSON_CreateRaw(buf);
}

static double num_read(const cJSON *j) {
    if (cJSON_IsNumber(j)) return j->valuedouble;
    if (cJSON_IsRaw(j)) return strtod(j->valuestring, NULL); /* built here, not yet printed */
    const char *s = cJSON_GetStringValue(j);
    if (s && !strcmp(s, "Infinity")) return INFINITY;
    if (s && !strcmp(s, "-Infinity")) return -INFINITY;
    return NAN;
}

static char *json_text(cJSON *op) {
    char *s = cJSON_PrintUnformatted(op);
    cJSON_Delete(op);
    return s;
}

/* ---- the ring ------------------------------------------------------------------------------ */

static void enqueue_json(kl_tracker *t, char *json) {
    if (!json) return;
    pthread_mutex_lock(&t->mu);
    if (t->count == t->cap) {
        /* Only non-metric operations wait for room: they are rare and must not be lost. */
        while (t->count == t->cap) {
            pthread_mutex_unlock(&t->mu);
            usleep(1000);
            pthread_mutex_lock(&t->mu);
        }
    }
    op_t *o = &t->ring[(t->head + t->count) % t->cap];
    o->kind = OP_JSON;
    o->json = json;
    t->count++;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

void kl_tracker_metric(kl_tracker *t, const char *key, double value, int64_t step) {
    int64_t ts = now_ms();
    pthread_mutex_lock(&t->mu);
    if (t->count == t->cap) {
        t->dropped++; /* the worker is stuck on disk I/O; training must not wait for it */
        pthread_mutex_unlock(&t->mu);
        return;
    }
    op_t *o = &t->ring[(t->head + t->count) % t->cap];
    o->kind = OP_METRIC;
    snprintf(o->key, sizeof o->key, "%s", key);
    o->value = value;
    o->ts_ms = ts;
    o->step = step;
    o->json = NULL;
    t->count++;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

void kl_tracker_params(kl_tracker *t, const kl_kv *params, int n) {
    for (int i0 = 0; i0 < n; i0 += 100) {
        cJSON *op = cJSON_CreateObject();
        cJSON_AddStringToObject(op, "op", "batch");
        cJSON_AddItemToObject(op, "params", kv_array(params + i0, n - i0 < 100 ? n - i0 : 100));
        enqueue_json(t, json_text(op));
    }
}

void kl_tracker_tags(kl_tracker *t, const kl_kv *tags, int n) {
    for (int i0 = 0; i0 < n; i0 += 100) {
        cJSON *op = cJSON_CreateObject();
        cJSON_AddStringToObject(op, "op", "batch");
        cJSON_AddItemToObject(op, "tags", kv_array(tags + i0, n - i0 < 100 ? n - i0 : 100));
        enqueue_json(t, json_text(op));
    }
}

static void add_str(cJSON *o, const char *k, const char *v) {
    if (v) cJSON_AddStringToObject(o, k, v);
}

void kl_tracker_inputs(kl_tracker *t, const kl_mlflow_dataset *ds, int n) {
    cJSON *op = cJSON_CreateObject();
    cJSON_AddStringToObject(op, "op", "inputs");
    cJSON *arr = cJSON_AddArrayToObject(op, "datasets");
    for (int i = 0; i < n; i++) {
        cJSON *d = cJSON_CreateObject();
        add_str(d, "name", ds[i].name);
        add_str(d, "digest", ds[i].digest);
        add_str(d, "source_type", ds[i].source_type);
        add_str(d, "source", ds[i].source);
        add_str(d, "schema", ds[i].schema);
        add_str(d, "profile", ds[i].profile);
        add_str(d, "context", ds[i].context);
        cJSON_AddItemToArray(arr, d);
    }
    enqueue_json(t, json_text(op));
}

void kl_tracker_artifact(kl_tracker *t, const char *local_path, const char *artifact_path) {
    cJSON *op = cJSON_CreateObject();
    cJSON_AddStringToObject(op, "op", "artifact");
    cJSON_AddStringToObject(op, "local", local_path);
    cJSON_AddStringToObject(op, "path", artifact_path ? artifact_path : "");
    enqueue_json(t, json_text(op));
}

void kl_tracker_logged_model(kl_tracker *t, const char *name, const char *bundle_dir, int64_t step,
                             const kl_kv *params, int n_params, const char *register_name,
                             const kl_kv *version_tags, int n_vtags) {
    cJSON *op = cJSON_CreateObject();
    cJSON_AddStringToObject(op, "op", "logged_model");
    cJSON_AddStringToObject(op, "name", name);
    cJSON_AddStringToObject(op, "dir", bundle_dir);
    cJSON_AddNumberToObject(op, "step", (double)step);
    cJSON_AddItemToObject(op, "params", kv_array(params, n_params));
    if (register_name) cJSON_AddStringToObject(op, "register", register_name);
    cJSON_AddItemToObject(op, "version_tags", kv_array(version_tags, n_vtags));
    enqueue_json(t, json_text(op));
}

/* ---- delivery -------------------------------------------------------------------------------- */

typedef enum { SENT = 0, RETRY_LATER = 1, REJECTED = 2 } outcome;

/* After a failed request: worth retrying later (no answer, auth, overload) or a refusal that
 * will never pass (a 4xx about the request itself)? */
static outcome classify(kl_tracker *t, kl_status s) {
    snprintf(t->sum.last_error, sizeof t->sum.last_error, "%s", kl_errmsg());
    int http = t->client ? kl_mlflow_last_http_status(t->client) : 0;
    if (s == KL_OK) return SENT;
    if (http == 0 || http == 401 || http == 403 || http == 408 || http == 429 || http >= 500)
        return RETRY_LATER;
    return REJECTED;
}

static void state_save(kl_tracker *t) {
    char path[1200], buf[1024];
    snprintf(path, sizeof path, "%s/state.json", t->spool_dir);
    int n = snprintf(buf, sizeof buf,
                     "{\"done\": %lld, \"run_id\": \"%s\", \"experiment_id\": \"%s\", "
                     "\"artifact_uri\": \"%s\"}\n",
                     (long long)t->spool_done, t->run_id, t->experiment_id, t->artifact_uri);
    if (kl_file_write_atomic(path, buf, (size_t)n) != KL_OK)
        snprintf(t->sum.last_error, sizeof t->sum.last_error, "spool state: %s", kl_errmsg());
}

static kl_status ensure_client(kl_tracker *t) {
    if (t->client) return KL_OK;
    return kl_mlflow_open(&t->client_opts, &t->client);
}

static kl_status exec_logged_model(kl_tracker *t, const cJSON *op) {
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(op, "name"));
    const char *dir = cJSON_GetStringValue(cJSON_GetObjectItem(op, "dir"));
    const char *reg = cJSON_GetStringValue(cJSON_GetObjectItem(op, "register"));
    int64_t step = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(op, "step"));
    int np = 0, nv = 0;
    kl_kv *params = kv_read(cJSON_GetObjectItem(op, "params"), &np);
    kl_kv *vtags = kv_read(cJSON_GetObjectItem(op, "version_tags"), &nv);
    kl_mlflow_logged_model lm;
    kl_status s = kl_mlflow_create_logged_model(t->client, t->experiment_id, t->run_id,
                                                name ? name : "model", step, params, np, &lm);
    if (!s) s = kl_mlflow_upload_dir(t->client, lm.artifact_uri, dir, "");
    if (!s) s = kl_mlflow_finalize_logged_model(t->client, lm.model_id, 1);
    if (!s && reg) {
        char source[128], version[32];
        snprintf(source, sizeof source, "models:/%s", lm.model_id);
        s = kl_mlflow_registered_model(t->client, reg, NULL);
        if (!s)
            s = kl_mlflow_create_model_version(t->client, reg, source, t->run_id, lm.model_id,
                                               vtags, nv, version);
        if (!s) fprintf(stderr, "kiln: registered %s version %s\n", reg, version);
    }
    free(params);
    free(vtags);
    return s;
}

/* Executes one operation against MLflow. */
static outcome exec_op(kl_tracker *t, const cJSON *op) {
    kl_status s = ensure_client(t);
    if (s) return classify(t, s);
    const char *kind = cJSON_GetStringValue(cJSON_GetObjectItem(op, "op"));
    if (!kind) return REJECTED;
    if (strcmp(kind, "create_run") != 0 && !t->run_id[0]) {
        kl_seterr(KL_EINVAL, "spool: \"%s\" before the run was created", kind);
        return REJECTED;
    }
    if (!strcmp(kind, "create_run")) {
        if (t->run_id[0]) return SENT; /* already created by an earlier attempt */
        int nt = 0;
        kl_kv *tags = kv_read(cJSON_GetObjectItem(op, "tags"), &nt);
        s = kl_mlflow_experiment(t->client,
                                 cJSON_GetStringValue(cJSON_GetObjectItem(op, "experiment")),
                                 t->experiment_id);
        kl_mlflow_run run;
        if (!s)
            s = kl_mlflow_create_run(
                t->client, t->experiment_id,
                cJSON_GetStringValue(cJSON_GetObjectItem(op, "run_name")),
                (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(op, "start")), tags, nt, &run);
        free(tags);
        if (!s) {
            snprintf(t->run_id, sizeof t->run_id, "%s", run.run_id);
            snprintf(t->artifact_uri, sizeof t->artifact_uri, "%s", run.artifact_uri);
        }
    } else if (!strcmp(kind, "batch")) {
        const cJSON *ms = cJSON_GetObjectItem(op, "metrics");
        int nm = cJSON_GetArraySize(ms), np = 0, nt = 0;
        kl_metric *m = calloc((size_t)(nm ? nm : 1), sizeof *m);
        for (int i = 0; m && i < nm; i++) {
            const cJSON *e = cJSON_GetArrayItem(ms, i);
            m[i].key = cJSON_GetStringValue(cJSON_GetArrayItem(e, 0));
            m[i].value = num_read(cJSON_GetArrayItem(e, 1));
            m[i].timestamp_ms = (int64_t)cJSON_GetNumberValue(cJSON_GetArrayItem(e, 2));
            m[i].step = (int64_t)cJSON_GetNumberValue(cJSON_GetArrayItem(e, 3));
            if (!m[i].key) m[i].key = "";
        }
        kl_kv *params = kv_read(cJSON_GetObjectItem(op, "params"), &np);
        kl_kv *tags = kv_read(cJSON_GetObjectItem(op, "tags"), &nt);
        s = kl_mlflow_log_batch(t->client, t->run_id, m, nm, params, np, tags, nt);
        free(m);
        free(params);
        free(tags);
    } else if (!strcmp(kind, "inputs")) {
        const cJSON *arr = cJSON_GetObjectItem(op, "datasets");
        int n = cJSON_GetArraySize(arr);
        kl_mlflow_dataset *ds = calloc((size_t)(n ? n : 1), sizeof *ds);
        for (int i = 0; ds && i < n; i++) {
            const cJSON *d = cJSON_GetArrayItem(arr, i);
            ds[i].name = cJSON_GetStringValue(cJSON_GetObjectItem(d, "name"));
            ds[i].digest = cJSON_GetStringValue(cJSON_GetObjectItem(d, "digest"));
            ds[i].source_type = cJSON_GetStringValue(cJSON_GetObjectItem(d, "source_type"));
            ds[i].source = cJSON_GetStringValue(cJSON_GetObjectItem(d, "source"));
            ds[i].schema = cJSON_GetStringValue(cJSON_GetObjectItem(d, "schema"));
            ds[i].profile = cJSON_GetStringValue(cJSON_GetObjectItem(d, "profile"));
            ds[i].context = cJSON_GetStringValue(cJSON_GetObjectItem(d, "context"));
        }
        s = kl_mlflow_log_inputs(t->client, t->run_id, ds, n);
        free(ds);
    } else if (!strcmp(kind, "artifact")) {
        const char *local = cJSON_GetStringValue(cJSON_GetObjectItem(op, "local"));
        const char *path = cJSON_GetStringValue(cJSON_GetObjectItem(op, "path"));
        struct stat st;
        if (!local || stat(local, &st) != 0) {
            kl_seterr(KL_ENOTFOUND, "artifact \"%s\" no longer exists", local ? local : "");
            return REJECTED;
        }
        s = S_ISDIR(st.st_mode) ? kl_mlflow_upload_dir(t->client, t->artifact_uri, local, path)
                                : kl_mlflow_upload_file(t->client, t->artifact_uri, local, path);
    } else if (!strcmp(kind, "logged_model")) {
        s = exec_logged_model(t, op);
    } else if (!strcmp(kind, "update_run")) {
        s = kl_mlflow_update_run(t->client, t->run_id,
                                 cJSON_GetStringValue(cJSON_GetObjectItem(op, "status")),
                                 (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(op, "end")));
    } else {
        kl_seterr(KL_EINVAL, "spool: unknown operation \"%s\"", kind);
        return REJECTED;
    }
    return classify(t, s);
}

/* Turns a run of metric ops into one "batch" operation (JSON). */
static cJSON *metrics_op(const op_t *ops, int n) {
    cJSON *op = cJSON_CreateObject();
    cJSON_AddStringToObject(op, "op", "batch");
    cJSON *arr = cJSON_AddArrayToObject(op, "metrics");
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateArray();
        cJSON_AddItemToArray(e, cJSON_CreateString(ops[i].key));
        cJSON_AddItemToArray(e, num_json(ops[i].value));
        cJSON_AddItemToArray(e, cJSON_CreateNumber((double)ops[i].ts_ms));
        cJSON_AddItemToArray(e, cJSON_CreateNumber((double)ops[i].step));
        cJSON_AddItemToArray(arr, e);
    }
    return op;
}

/* Appends operations to the spool and fsyncs them (one batch, one fsync). */
static void spool_append(kl_tracker *t, cJSON **ops, int n) {
    if (n == 0) return;
    if (kl_file_mkdirs(t->spool_dir) != KL_OK) {
        snprintf(t->sum.last_error, sizeof t->sum.last_error, "spool: %s", kl_errmsg());
        return;
    }
    char path[1200];
    snprintf(path, sizeof path, "%s/ops.jsonl", t->spool_dir);
    FILE *f = fopen(path, "a");
    if (!f) {
        snprintf(t->sum.last_error, sizeof t->sum.last_error, "spool: cannot append to %.300s: %s",
                 path, strerror(errno));
        return;
    }
    for (int i = 0; i < n; i++) {
        char *line = cJSON_PrintUnformatted(ops[i]);
        fprintf(f, "%s\n", line);
        free(line);
    }
    fflush(f);
    fsync(fileno(f));
    fclose(f);
    t->spool_lines += n;
    t->sum.ops_spooled += n;
    state_save(t);
}

/* Sends spooled operations from where the last replay stopped. Returns 1 when the spool is
 * fully delivered (and removed). */
static int spool_replay(kl_tracker *t) {
    char path[1200];
    snprintf(path, sizeof path, "%s/ops.jsonl", t->spool_dir);
    FILE *f = fopen(path, "r");
    if (!f) return t->spool_done >= t->spool_lines;
    char *line = NULL;
    size_t cap = 0;
    int64_t idx = 0;
    int stalled = 0;
    while (getline(&line, &cap, f) > 0) {
        if (idx++ < t->spool_done) continue;
        cJSON *op = cJSON_Parse(line);
        outcome o = op ? exec_op(t, op) : REJECTED;
        cJSON_Delete(op);
        if (o == RETRY_LATER) {
            stalled = 1;
            break;
        }
        if (o == REJECTED) {
            t->sum.ops_rejected++;
            fprintf(stderr, "kiln: tracking: MLflow refused a spooled operation: %s\n",
                    t->sum.last_error);
        } else {
            t->sum.ops_sent++;
        }
        t->spool_done++;
        state_save(t);
    }
    free(line);
    fclose(f);
    if (stalled || t->spool_done < t->spool_lines) return 0;
    char st[1200];
    snprintf(st, sizeof st, "%s/state.json", t->spool_dir);
    remove(path);
    remove(st);
    rmdir(t->spool_dir);
    t->spool_lines = t->spool_done = 0;
    return 1;
}

/* Delivers (or spools) a batch taken from the ring, in order. */
static void deliver(kl_tracker *t, op_t *ops, int n) {
    cJSON *pending[BATCH_OPS];
    int np = 0;
    for (int i = 0; i < n;) {
        cJSON *op;
        int used;
        if (ops[i].kind == OP_METRIC) {
            int j = i;
            while (j < n && ops[j].kind == OP_METRIC)
                j++;
            op = metrics_op(ops + i, j - i);
            used = j - i;
        } else {
            op = cJSON_Parse(ops[i].json);
            free(ops[i].json);
            ops[i].json = NULL;
            used = 1;
        }
        i += used;
        if (!op) continue;
        if (!t->spooling) {
            outcome o = exec_op(t, op);
            if (o == SENT) {
                t->sum.ops_sent++;
                cJSON_Delete(op);
                continue;
            }
            if (o == REJECTED) {
                t->sum.ops_rejected++;
                fprintf(stderr, "kiln: tracking: MLflow refused an operation: %s\n",
                        t->sum.last_error);
                cJSON_Delete(op);
                continue;
            }
            fprintf(stderr, "kiln: tracking: MLflow unreachable (%s); spooling to %s\n",
                    t->sum.last_error, t->spool_dir);
            t->spooling = 1;
            t->next_replay = mono() + REPLAY_EVERY_S;
        }
        pending[np++] = op;
    }
    spool_append(t, pending, np);
    for (int i = 0; i < np; i++)
        cJSON_Delete(pending[i]);
}

static void *worker(void *arg) {
    kl_tracker *t = arg;
    op_t *local = malloc(sizeof(op_t) * BATCH_OPS);
    for (;;) {
        pthread_mutex_lock(&t->mu);
        while (t->count == 0 && !t->stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&t->cv, &t->mu, &ts);
            if (t->spooling && mono() >= t->next_replay) break;
        }
        int n = t->count < BATCH_OPS ? t->count : BATCH_OPS;
        for (int i = 0; i < n; i++)
            local[i] = t->ring[(t->head + i) % t->cap];
        t->head = (t->head + n) % t->cap;
        t->count -= n;
        int stop = t->stop, left = t->count;
        pthread_mutex_unlock(&t->mu);

        if (n) deliver(t, local, n);
        if (t->spooling && mono() >= t->next_replay) {
            if (spool_replay(t)) {
                t->spooling = 0;
                fprintf(stderr, "kiln: tracking: MLflow reachable again; spool delivered\n");
            } else {
                t->next_replay = mono() + REPLAY_EVERY_S;
            }
        }
        if (stop && left == 0) {
            /* Finishing: keep trying the spool until the deadline, then leave it for sync. */
            if (!t->spooling || mono() >= t->deadline) break;
            double wait = t->next_replay - mono();
            if (wait > 0) usleep((useconds_t)((wait < 0.25 ? wait : 0.25) * 1e6));
        }
    }
    free(local);
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

kl_status kl_tracker_start(const kl_tracker_opts *opts, const kl_kv *tags, int n_tags,
                           kl_tracker **out) {
    *out = NULL;
    const char *uri = opts->client.uri ? opts->client.uri : getenv("MLFLOW_TRACKING_URI");
    if (!uri || !*uri) return kl_seterr(KL_ENOTFOUND, "no MLflow tracking URI");
    kl_tracker *t = calloc(1, sizeof *t);
    if (!t) return kl_seterr(KL_ENOMEM, "tracker");
    t->client_opts = opts->client;
    /* A few quick retries, then the spool: the worker should not sit in backoff for long while
     * operations queue up behind it. */
    if (t->client_opts.max_retries == 0) t->client_opts.max_retries = 2;
    if (t->client_opts.timeout_s == 0) t->client_opts.timeout_s = 15;
    snprintf(t->uri_copy, sizeof t->uri_copy, "%s", uri);
    t->client_opts.uri = t->uri_copy;
    t->experiment = strdup(opts->experiment ? opts->experiment : "kiln");
    t->run_name = strdup(opts->run_name ? opts->run_name : "kiln-run");
    t->cap = opts->queue_capacity > 0 ? opts->queue_capacity : 65536;
    t->ring = calloc((size_t)t->cap, sizeof(op_t));
    char root[900];
    if (opts->spool_dir)
        snprintf(root, sizeof root, "%s", opts->spool_dir);
    else
        default_spool_root(root, sizeof root);
    /* A key unique to this run on this machine: time, pid and a counter. */
    static int counter = 0;
    snprintf(t->spool_dir, sizeof t->spool_dir, "%s/%lld-%d-%d", root, (long long)now_ms(),
             (int)getpid(), counter++);
    if (!t->ring || !t->experiment || !t->run_name) {
        free(t->ring);
        free(t->experiment);
        free(t->run_name);
        free(t);
        return kl_seterr(KL_ENOMEM, "tracker queue");
    }
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    cJSON *op = cJSON_CreateObject();
    cJSON_AddStringToObject(op, "op", "create_run");
    cJSON_AddStringToObject(op, "experiment", t->experiment);
    cJSON_AddStringToObject(op, "run_name", t->run_name);
    cJSON_AddNumberToObject(op, "start", (double)now_ms());
    cJSON_AddItemToObject(op, "tags", kv_array(tags, n_tags));
    enqueue_json(t, json_text(op));
    if (pthread_create(&t->thread, NULL, worker, t) != 0) {
        kl_tracker_finish(t, NULL, 0, NULL);
        return kl_seterr(KL_EIO, "tracker: cannot start its thread");
    }
    *out = t;
    return KL_OK;
}

kl_status kl_tracker_finish(kl_tracker *t, const char *status, double wait_s,
                            kl_tracker_summary *summary) {
    if (!t) return KL_OK;
    if (status) {
        cJSON *op = cJSON_CreateObject();
        cJSON_AddStringToObject(op, "op", "update_run");
        cJSON_AddStringToObject(op, "status", status);
        cJSON_AddNumberToObject(op, "end", (double)now_ms());
        enqueue_json(t, json_text(op));
    }
    pthread_mutex_lock(&t->mu);
    t->stop = 1;
    t->deadline = mono() + wait_s;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    if (t->thread) pthread_join(t->thread, NULL);
    snprintf(t->sum.run_id, sizeof t->sum.run_id, "%s", t->run_id);
    snprintf(t->sum.experiment_id, sizeof t->sum.experiment_id, "%s", t->experiment_id);
    if (t->spooling) snprintf(t->sum.spool, sizeof t->sum.spool, "%s", t->spool_dir);
    if (t->dropped)
        fprintf(stderr, "kiln: tracking: %lld metrics dropped: the queue was full\n",
                (long long)t->dropped);
    if (summary) *summary = t->sum;
    kl_status s = t->spooling ? kl_seterr(KL_EIO,
                                          "MLflow unreachable: %lld operations wait in %s (run "
                                          "`kiln tracking sync` later): %s",
                                          (long long)(t->spool_lines - t->spool_done), t->spool_dir,
                                          t->sum.last_error)
                              : KL_OK;
    for (int i = 0; i < t->count; i++)
        free(t->ring[(t->head + i) % t->cap].json);
    kl_mlflow_close(t->client);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t->ring);
    free(t->experiment);
    free(t->run_name);
    free(t);
    return s;
}

/* ---- kiln tracking sync ---------------------------------------------------------------------- */

static kl_status sync_one(const char *dir, const kl_mlflow_opts *client, int verbose) {
    kl_tracker t;
    memset(&t, 0, sizeof t);
    snprintf(t.spool_dir, sizeof t.spool_dir, "%.1000s", dir);
    t.client_opts = *client;
    char path[1200];
    snprintf(path, sizeof path, "%.1000s/state.json", dir);
    char *text = NULL;
    size_t len = 0;
    if (kl_file_read(path, 1 << 20, &text, &len) == KL_OK) {
        cJSON *st = cJSON_ParseWithLength(text, len);
        free(text);
        const char *v;
        if ((v = cJSON_GetStringValue(cJSON_GetObjectItem(st, "run_id"))))
            snprintf(t.run_id, sizeof t.run_id, "%s", v);
        if ((v = cJSON_GetStringValue(cJSON_GetObjectItem(st, "experiment_id"))))
            snprintf(t.experiment_id, sizeof t.experiment_id, "%s", v);
        if ((v = cJSON_GetStringValue(cJSON_GetObjectItem(st, "artifact_uri"))))
            snprintf(t.artifact_uri, sizeof t.artifact_uri, "%s", v);
        t.spool_done = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(st, "done"));
        if (t.spool_done < 0) t.spool_done = 0;
        cJSON_Delete(st);
    }
    snprintf(path, sizeof path, "%.1000s/ops.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f) return kl_seterr(KL_ENOTFOUND, "spool %s has no ops.jsonl", dir);
    int ch, last = '\n';
    while ((ch = fgetc(f)) != EOF) {
        if (ch == '\n') t.spool_lines++;
        last = ch;
    }
    if (last != '\n') t.spool_lines++;
    fclose(f);
    int64_t todo = t.spool_lines - t.spool_done, before = t.spool_done;
    int done = spool_replay(&t);
    kl_mlflow_close(t.client);
    int64_t sent = done ? todo : t.spool_done - before;
    if (verbose)
        fprintf(stderr, "kiln tracking sync: %s: %lld of %lld operations sent%s%s\n", dir,
                (long long)sent, (long long)todo,
                done ? "; spool removed" : "; stopped: ", done ? "" : t.sum.last_error);
    if (!done) return kl_seterr(KL_EIO, "spool %s: %s", dir, t.sum.last_error);
    return KL_OK;
}

kl_status kl_tracker_sync(const char *spool_dir, const kl_mlflow_opts *client, int verbose) {
    char root[1024];
    if (spool_dir)
        snprintf(root, sizeof root, "%s", spool_dir);
    else
        default_spool_root(root, sizeof root);
    DIR *d = opendir(root);
    if (!d) {
        if (verbose)
            fprintf(stderr, "kiln tracking sync: nothing to send (no spool at %s)\n", root);
        return KL_OK;
    }
    kl_status result = KL_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char dir[1024];
        snprintf(dir, sizeof dir, "%.700s/%.255s", root, e->d_name);
        struct stat st;
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) continue;
        kl_status s = sync_one(dir, client, verbose);
        if (s && !result) result = s;
    }
    closedir(d);
    return result;
}
