/* feedback.c — the prediction log's join of ground-truth labels with recent predictions, live
 * accuracy per model version, and the REST body of feedback (see prediction_log.h).
 *
 * The join window is two rings allocated once: entries (one per request, oldest first) chained
 * by id hash into buckets, and the predicted classes of their rows at absolute positions. Adding
 * a request evicts the oldest entries until its rows fit; the request path never allocates
 * (except the first time a model version is seen, for its accuracy ring and metrics). */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h> /* the REST feedback body */

#include "monitor/prediction_log_impl.h"

#define PL_MAX_VERSIONS (PL_MAX_MODELS * 4)

static uint64_t hash_id(const char *s) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a, then splitmix64's finaliser */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

kl_status pl_join_init(kl_prediction_log *l) {
    pl_join *j = &l->join;
    memset(j, 0, sizeof *j);
    pthread_mutex_init(&j->mu, NULL);
    j->cap = l->o.join_rows;
    j->window = l->o.accuracy_window;
    j->n_buckets = 1;
    while (j->n_buckets < 2 * j->cap)
        j->n_buckets <<= 1;
    j->e = calloc(j->cap, sizeof *j->e);
    j->classes = calloc(j->cap, sizeof *j->classes);
    j->buckets = malloc(j->n_buckets * sizeof *j->buckets);
    j->versions = calloc(PL_MAX_VERSIONS, sizeof *j->versions);
    if (!j->e || !j->classes || !j->buckets || !j->versions)
        return kl_seterr(KL_ENOMEM, "prediction log: join window of %zu rows: out of memory",
                         j->cap);
    for (size_t i = 0; i < j->n_buckets; i++)
        j->buckets[i] = -1;
    return KL_OK;
}

void pl_join_free(pl_join *j) {
    for (int i = 0; j->versions && i < j->n_versions; i++)
        free(j->versions[i].window);
    free(j->versions);
    free(j->e);
    free(j->classes);
    free(j->buckets);
    pthread_mutex_destroy(&j->mu);
}

/* The accuracy slot of model/version (mu held): created on first sight. -1 when full. */
static int version_slot(kl_prediction_log *l, const char *model, const char *version) {
    pl_join *j = &l->join;
    for (int i = 0; i < j->n_versions; i++)
        if (!strcmp(j->versions[i].model, model) && !strcmp(j->versions[i].version, version))
            return i;
    if (j->n_versions == PL_MAX_VERSIONS) return -1;
    pl_version *v = &j->versions[j->n_versions];
    if (!(v->window = calloc((size_t)j->window, 1))) return -1;
    snprintf(v->model, sizeof v->model, "%s", model);
    snprintf(v->version, sizeof v->version, "%s", version);
    const char *names[] = {"model", "version", "window"};
    char win[32];
    snprintf(win, sizeof win, "%d", j->window);
    const char *values[] = {v->model, v->version, win};
    const char *help_rows = "Rows whose true label came back (feedback) and joined a prediction";
    v->c_rows =
        kl_metrics_counter(l->metrics, "kiln_feedback_rows_total", help_rows, names, values, 2);
    v->c_correct = kl_metrics_counter(l->metrics, "kiln_feedback_correct_total",
                                      "Labelled rows whose predicted class was the true one", names,
                                      values, 2);
    const char *help_acc = "Accuracy of the model version on the rows labelled by feedback: over "
                           "the last N labelled rows (window=\"N\") and since start (\"all\")";
    v->g_window = kl_metrics_gauge(l->metrics, "kiln_live_accuracy", help_acc, names, values, 3);
    values[2] = "all";
    v->g_all = kl_metrics_gauge(l->metrics, "kiln_live_accuracy", help_acc, names, values, 3);
    return j->n_versions++;
}

/* Unlinks and forgets the oldest entry (mu held). */
static void evict_oldest(pl_join *j) {
    int32_t idx = (int32_t)j->first;
    pl_entry *e = &j->e[idx];
    int32_t *p = &j->buckets[e->hash & (j->n_buckets - 1)];
    while (*p != -1 && *p != idx)
        p = &j->e[*p].next;
    if (*p == idx) *p = e->next;
    j->first = (j->first + 1) % j->cap;
    j->n--;
}

void pl_join_add(kl_prediction_log *l, const kl_prediction *p) {
    pl_join *j = &l->join;
    if (p->rows < 1 || (size_t)p->rows > j->cap) return; /* cannot be joined */
    uint64_t h = hash_id(p->request_id);
    pthread_mutex_lock(&j->mu);
    int ver = version_slot(l, p->model, p->version);
    if (ver < 0) {
        pthread_mutex_unlock(&j->mu);
        return;
    }
    while (j->n == j->cap ||
           (j->n && j->next_row + p->rows - j->e[j->first].row0 > (int64_t)j->cap))
        evict_oldest(j);
    int32_t idx = (int32_t)((j->first + j->n) % j->cap);
    pl_entry *e = &j->e[idx];
    snprintf(e->id, sizeof e->id, "%s", p->request_id);
    e->hash = h;
    e->ver = ver;
    e->row0 = j->next_row;
    e->rows = (int32_t)p->rows;
    e->labelled = 0;
    for (int64_t r = 0; r < p->rows; r++)
        j->classes[(size_t)((e->row0 + r) % (int64_t)j->cap)] = p->classes[r];
    j->next_row += p->rows;
    int32_t *b = &j->buckets[h & (j->n_buckets - 1)];
    e->next = *b;
    *b = idx;
    j->n++;
    pthread_mutex_unlock(&j->mu);
}

/* The newest entry for id (mu held), or NULL. */
static pl_entry *find(pl_join *j, const char *id) {
    uint64_t h = hash_id(id);
    for (int32_t i = j->buckets[h & (j->n_buckets - 1)]; i != -1; i = j->e[i].next)
        if (j->e[i].hash == h && !strncmp(j->e[i].id, id, PL_ID_MAX - 1)) return &j->e[i];
    return NULL;
}

kl_status kl_prediction_log_feedback(kl_prediction_log *l, const char *model,
                                     const char *request_id, const int64_t *labels, int64_t n,
                                     int64_t *rows) {
    *rows = 0;
    pl_join *j = &l->join;
    for (int64_t i = 0; i < n; i++)
        if (labels[i] < 0)
            return kl_seterr(KL_EINVAL, "request \"%s\": label %lld is negative", request_id,
                             (long long)labels[i]);
    pthread_mutex_lock(&j->mu);
    pl_entry *e = find(j, request_id);
    pl_version *v = e ? &j->versions[e->ver] : NULL;
    kl_status st = KL_OK;
    if (!e || (model && *model && strcmp(v->model, model)))
        st = kl_seterr(KL_ENOTFOUND,
                       "request \"%s\"%s%s is not among the last %zu predicted rows (unknown, or "
                       "too old to join)",
                       request_id, model && *model ? " of model " : "", model ? model : "", j->cap);
    else if (e->labelled)
        st = kl_seterr(KL_EINVAL, "request \"%s\" has labels already", request_id);
    else if (n != e->rows)
        st = kl_seterr(KL_EINVAL, "request \"%s\": %lld labels for its %d rows (one per row)",
                       request_id, (long long)n, e->rows);
    if (st != KL_OK) {
        pthread_mutex_unlock(&j->mu);
        return st;
    }
    e->labelled = 1;
    int64_t correct = 0;
    for (int64_t r = 0; r < n; r++) {
        int hit = j->classes[(size_t)((e->row0 + r) % (int64_t)j->cap)] == labels[r];
        correct += hit;
        if (v->win_n == j->window)
            v->win_correct -= v->window[v->win_pos];
        else
            v->win_n++;
        v->window[v->win_pos] = (uint8_t)hit;
        v->win_correct += hit;
        v->win_pos = (v->win_pos + 1) % j->window;
    }
    v->rows += n;
    v->correct += correct;
    if (v->c_rows) kl_counter_add(v->c_rows, (double)n);
    if (v->c_correct) kl_counter_add(v->c_correct, (double)correct);
    if (v->g_window) kl_gauge_set(v->g_window, (double)v->win_correct / (double)v->win_n);
    if (v->g_all) kl_gauge_set(v->g_all, (double)v->correct / (double)v->rows);
    char mname[128], vname[32];
    snprintf(mname, sizeof mname, "%s", v->model);
    snprintf(vname, sizeof vname, "%s", v->version);
    pthread_mutex_unlock(&j->mu);
    pl_enqueue_feedback(l, request_id, mname, vname, labels, n);
    *rows = n;
    return KL_OK;
}

/* --- the REST body ------------------------------------------------------------------------- */

static int answer_error(char **answer, int status, const char *msg) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", msg);
    *answer = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return *answer ? status : 500;
}

/* Checks one item; on success *id and the labels (malloc'd in *labels, *n) are set. Writes the
 * problem to msg otherwise. */
static int read_item(const cJSON *it, const char *where, const char **id, int64_t **labels,
                     int64_t *n, char *msg, size_t size) {
    *labels = NULL;
    if (!cJSON_IsObject(it)) {
        snprintf(msg, size, "%sexpected an object {\"request_id\":..., \"labels\":[...]}", where);
        return 0;
    }
    const cJSON *rid = cJSON_GetObjectItemCaseSensitive(it, "request_id");
    const cJSON *ls = cJSON_GetObjectItemCaseSensitive(it, "labels");
    const cJSON *l1 = cJSON_GetObjectItemCaseSensitive(it, "label");
    if (!cJSON_IsString(rid) || !*rid->valuestring) {
        snprintf(msg, size, "%s\"request_id\" must be a non-empty string", where);
        return 0;
    }
    *id = rid->valuestring;
    if ((ls != NULL) == (l1 != NULL)) {
        snprintf(msg, size, "%sgive exactly one of \"labels\" (an array, one per row) or \"label\"",
                 where);
        return 0;
    }
    if (ls && !cJSON_IsArray(ls)) {
        snprintf(msg, size, "%s\"labels\" must be an array of integers >= 0", where);
        return 0;
    }
    *n = ls ? cJSON_GetArraySize(ls) : 1;
    if (*n < 1) {
        snprintf(msg, size, "%s\"labels\" is empty", where);
        return 0;
    }
    if (!(*labels = malloc((size_t)*n * sizeof **labels))) {
        snprintf(msg, size, "out of memory");
        return 0;
    }
    const cJSON *x = ls ? ls->child : l1;
    for (int64_t i = 0; i < *n; i++, x = x->next) {
        double d = cJSON_IsNumber(x) ? x->valuedouble : -1;
        if (!(d >= 0 && d == (double)(int64_t)d && d < 9.2e18)) {
            if (ls)
                snprintf(msg, size, "%s\"labels\"[%lld] must be an integer >= 0 (a class number)",
                         where, (long long)i);
            else
                snprintf(msg, size, "%s\"label\" must be an integer >= 0 (a class number)", where);
            free(*labels);
            *labels = NULL;
            return 0;
        }
        (*labels)[i] = (int64_t)d;
    }
    return 1;
}

int kl_prediction_log_feedback_json(kl_prediction_log *l, const char *model, const char *body,
                                    size_t len, char **answer) {
    *answer = NULL;
    const char *end = NULL;
    cJSON *root = body && len ? cJSON_ParseWithLengthOpts(body, len, &end, 0) : NULL;
    if (!root) {
        char msg[160];
        size_t off = end && end >= body && end <= body + len ? (size_t)(end - body) : 0;
        snprintf(msg, sizeof msg,
                 len ? "malformed JSON feedback near byte %zu of %zu" : "empty feedback body", off,
                 len);
        return answer_error(answer, 400, msg);
    }
    int list = cJSON_IsArray(root);
    int n_items = list ? cJSON_GetArraySize(root) : 1;
    char msg[512];
    /* Everything is checked before anything is joined. */
    int i = 0;
    for (const cJSON *it = list ? root->child : root; it && i < n_items; it = it->next, i++) {
        char where[48] = "";
        if (list) snprintf(where, sizeof where, "item %d: ", i);
        const char *id;
        int64_t *labels, n;
        if (!read_item(it, where, &id, &labels, &n, msg, sizeof msg)) {
            cJSON_Delete(root);
            return answer_error(answer, 400, msg);
        }
        free(labels);
        if (!list) break;
    }
    if (list && n_items == 0) {
        cJSON_Delete(root);
        return answer_error(answer, 400, "empty feedback list");
    }
    long long accepted = 0, unknown = 0, rejected = 0, rows = 0;
    cJSON *out = cJSON_CreateObject();
    cJSON *unknown_ids = cJSON_CreateArray(), *errors = cJSON_CreateArray();
    int status = 200;
    i = 0;
    for (const cJSON *it = list ? root->child : root; it && i < n_items; it = it->next, i++) {
        const char *id;
        int64_t *labels, n, r = 0;
        read_item(it, "", &id, &labels, &n, msg, sizeof msg);
        kl_status st = kl_prediction_log_feedback(l, model, id, labels, n, &r);
        free(labels);
        if (st == KL_OK) {
            accepted++;
            rows += r;
        } else if (st == KL_ENOTFOUND) {
            unknown++;
            if (cJSON_GetArraySize(unknown_ids) < 20)
                cJSON_AddItemToArray(unknown_ids, cJSON_CreateString(id));
        } else {
            rejected++;
            if (cJSON_GetArraySize(errors) < 20)
                cJSON_AddItemToArray(errors, cJSON_CreateString(kl_errmsg()));
        }
        if (!list) {
            if (st != KL_OK) status = st == KL_ENOTFOUND ? 404 : 400;
            if (st != KL_OK) snprintf(msg, sizeof msg, "%s", kl_errmsg());
            break;
        }
    }
    cJSON_Delete(root);
    if (status != 200) {
        cJSON_Delete(out);
        cJSON_Delete(unknown_ids);
        cJSON_Delete(errors);
        return answer_error(answer, status, msg);
    }
    cJSON_AddNumberToObject(out, "accepted", (double)accepted);
    cJSON_AddNumberToObject(out, "rows", (double)rows);
    cJSON_AddNumberToObject(out, "unknown", (double)unknown);
    cJSON_AddNumberToObject(out, "rejected", (double)rejected);
    cJSON_AddItemToObject(out, "unknown_ids", unknown_ids);
    cJSON_AddItemToObject(out, "errors", errors);
    *answer = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    return *answer ? 200 : 500;
}
