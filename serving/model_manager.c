/* model_manager.c — routing, queries, statistics, metrics and the manager's lifecycle
 * (see model_manager.h; loading and swapping live in model_loader.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serving/model_manager_impl.h"

kl_batch_opts kl_batch_opts_defaults(void) {
    kl_batch_opts o;
    memset(&o, 0, sizeof o);
    o.dynamic = 1;
    o.max_batch = 256;
    o.max_queue_delay_us = 0;
    o.max_queue_size = 4096;
    o.priority_levels = 1;
    o.default_priority = 1;
    o.instances = 1;
    return o;
}

kl_model_manager_opts kl_model_manager_defaults(void) {
    kl_model_manager_opts o;
    memset(&o, 0, sizeof o);
    o.batch = kl_batch_opts_defaults();
    o.policy.kind = KL_VERSIONS_LATEST;
    o.policy.latest_n = 1;
    o.poll_seconds = 0;
    o.device = "cpu";
    return o;
}

/* --- the housekeeper: frees retired versions, polls sources ----------------------------------- */

static double mono_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Re-reads every model's source once (load_mu is taken inside). */
static void poll_once(kl_model_manager *m) {
    if (m->o.repository) mm_scan_repository(m);
    pthread_rwlock_rdlock(&m->lock);
    size_t n = m->n;
    char(*names)[128] = calloc(n ? n : 1, sizeof *names);
    for (size_t i = 0; names && i < n; i++)
        if (m->models[i]->kind != MM_SRC_REPO)
            snprintf(names[i], sizeof names[i], "%s", m->models[i]->name);
    pthread_rwlock_unlock(&m->lock);
    for (size_t i = 0; names && i < n; i++)
        if (names[i][0] && mm_refresh_model(m, names[i], 0) != KL_OK)
            fprintf(stderr, "kiln serve: model \"%s\": %s (still serving the loaded version)\n",
                    names[i], kl_errmsg());
    free(names);
}

static void *housekeeper(void *arg) {
    kl_model_manager *m = arg;
    double next_poll = mono_s() + m->o.poll_seconds;
    pthread_mutex_lock(&m->hk_mu);
    while (!m->hk_stop) {
        while (m->retired) {
            mm_version *v = m->retired;
            m->retired = v->next_retired;
            pthread_mutex_unlock(&m->hk_mu);
            mm_version_free(m, v);
            pthread_mutex_lock(&m->hk_mu);
        }
        if (m->polling && m->o.poll_seconds > 0 && mono_s() >= next_poll) {
            pthread_mutex_unlock(&m->hk_mu);
            poll_once(m);
            pthread_mutex_lock(&m->hk_mu);
            next_poll = mono_s() + m->o.poll_seconds;
            continue;
        }
        double wait = m->polling && m->o.poll_seconds > 0 ? next_poll - mono_s() : 1.0;
        if (wait > 1.0) wait = 1.0;
        if (wait < 0.001) wait = 0.001;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long long ns = (long long)ts.tv_nsec + (long long)(wait * 1e9);
        ts.tv_sec += (time_t)(ns / 1000000000LL);
        ts.tv_nsec = (long)(ns % 1000000000LL);
        if (!m->retired && !m->hk_stop) pthread_cond_timedwait(&m->hk_cv, &m->hk_mu, &ts);
    }
    pthread_mutex_unlock(&m->hk_mu);
    return NULL;
}

/* --- lifecycle
 * ------------------------------------------------------------------------------------ */

kl_status kl_model_manager_create(const kl_model_manager_opts *opts, kl_model_manager **out) {
    *out = NULL;
    kl_model_manager *m = calloc(1, sizeof *m);
    if (!m) return kl_seterr(KL_ENOMEM, "model manager: out of memory");
    m->o = *opts;
    if (opts->repository && !(m->o.repository = strdup(opts->repository))) {
        free(m);
        return kl_seterr(KL_ENOMEM, "model manager: out of memory");
    }
    pthread_rwlock_init(&m->lock, NULL);
    pthread_mutex_init(&m->load_mu, NULL);
    pthread_mutex_init(&m->hk_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->hk_cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&m->stopping, 0);
    atomic_init(&m->next_id, 0);
    m->id_epoch = (unsigned long long)time(NULL);
    kl_status st = kl_device_resolve(opts->device ? opts->device : "cpu", 0, &m->dev);
    if (st == KL_OK) st = kl_metrics_create(&m->metrics);
    if (st == KL_OK) {
        int err = pthread_create(&m->hk, NULL, housekeeper, m);
        if (err)
            st = kl_seterr(KL_EINTERNAL, "model manager: cannot start a thread: %s", strerror(err));
        else
            m->hk_started = 1;
    }
    if (st == KL_OK && opts->repository && !opts->explicit_control) st = mm_scan_repository(m);
    if (st != KL_OK) {
        kl_model_manager_free(m);
        return st;
    }
    *out = m;
    return KL_OK;
}

kl_status kl_model_manager_start(kl_model_manager *m) {
    pthread_mutex_lock(&m->hk_mu);
    m->polling = 1;
    pthread_cond_broadcast(&m->hk_cv);
    pthread_mutex_unlock(&m->hk_mu);
    return KL_OK;
}

static void model_free(mm_model *md) {
    free(md->source);
    free(md->challenger_src);
    free(md->v);
    free(md->st);
    free(md);
}

void kl_model_manager_free(kl_model_manager *m) {
    if (!m) return;
    atomic_store(&m->stopping, 1);
    pthread_mutex_lock(&m->hk_mu);
    m->polling = 0;
    pthread_mutex_unlock(&m->hk_mu);
    pthread_mutex_lock(&m->load_mu); /* waits for a poll or a load in progress */
    pthread_rwlock_wrlock(&m->lock);
    for (size_t i = 0; i < m->n; i++) {
        mm_model *md = m->models[i];
        while (md->nv)
            mm_remove(m, md, md->v[md->nv - 1]->label);
    }
    pthread_rwlock_unlock(&m->lock);
    pthread_mutex_unlock(&m->load_mu);
    /* Requests in flight hold their versions; each batcher drains its queue, the last reference
     * retires the version and the housekeeper frees it. */
    pthread_mutex_lock(&m->hk_mu);
    while (m->live > 0 && m->hk_started)
        pthread_cond_wait(&m->hk_cv, &m->hk_mu);
    m->hk_stop = 1;
    pthread_cond_broadcast(&m->hk_cv);
    pthread_mutex_unlock(&m->hk_mu);
    if (m->hk_started) pthread_join(m->hk, NULL);
    while (m->retired) { /* only when the housekeeper never started */
        mm_version *v = m->retired;
        m->retired = v->next_retired;
        mm_version_free(m, v);
    }
    for (size_t i = 0; i < m->n; i++)
        model_free(m->models[i]);
    free(m->models);
    if (m->mlflow) kl_mlflow_close(m->mlflow);
    kl_metrics_free(m->metrics);
    pthread_rwlock_destroy(&m->lock);
    pthread_mutex_destroy(&m->load_mu);
    pthread_mutex_destroy(&m->hk_mu);
    pthread_cond_destroy(&m->hk_cv);
    free((char *)m->o.repository);
    free(m);
}

size_t kl_model_manager_count(const kl_model_manager *m) {
    pthread_rwlock_rdlock((pthread_rwlock_t *)&m->lock);
    size_t n = 0;
    for (size_t i = 0; i < m->n; i++)
        n += m->models[i]->nv > 0;
    pthread_rwlock_unlock((pthread_rwlock_t *)&m->lock);
    return n;
}

/* Creates the per-model counters (write lock held). */
static void model_metrics(kl_model_manager *m, mm_model *md) {
    const char *names[] = {"model", "outcome"};
    const char *outcomes[] = {"agree", "disagree", "error"};
    for (int i = 0; i < 3; i++) {
        const char *values[] = {md->name, outcomes[i]};
        md->c_shadow[i] =
            kl_metrics_counter(m->metrics, "kiln_shadow_rows_total",
                               "Rows copied to a shadow challenger, by whether its predicted "
                               "class agreed with the champion's",
                               names, values, 2);
    }
    const char *rnames[] = {"model", "route"};
    const char *routes[] = {"champion", "challenger", "explicit"};
    for (int i = 0; i < 3; i++) {
        const char *values[] = {md->name, routes[i]};
        md->c_route[i] = kl_metrics_counter(
            m->metrics, "kiln_traffic_requests_total",
            "Requests by route: the champion, the canary challenger, or a version named in the "
            "request",
            rnames, values, 2);
    }
}

kl_status kl_model_manager_add(kl_model_manager *m, const char *spec) {
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec || !eq[1])
        return kl_seterr(KL_EINVAL, "model \"%s\": expected NAME=BUNDLE_OR_models:/URI", spec);
    if ((size_t)(eq - spec) >= sizeof(((mm_model *)0)->name))
        return kl_seterr(KL_EINVAL, "model name \"%.*s\" is too long", (int)(eq - spec), spec);
    mm_model *md = calloc(1, sizeof *md);
    if (!md || !(md->source = strdup(eq + 1))) {
        free(md);
        return kl_seterr(KL_ENOMEM, "model \"%s\": out of memory", spec);
    }
    snprintf(md->name, sizeof md->name, "%.*s", (int)(eq - spec), spec);
    md->kind = strncmp(md->source, "models:/", 8) ? MM_SRC_DIR : MM_SRC_URI;
    md->batch = m->o.batch;
    md->policy = m->o.policy;
    atomic_init(&md->routed, 0);
    pthread_rwlock_wrlock(&m->lock);
    mm_model **grown = mm_find(m, md->name) ? NULL : realloc(m->models, (m->n + 1) * sizeof *grown);
    if (grown) {
        m->models = grown;
        m->models[m->n++] = md;
        model_metrics(m, md);
    }
    pthread_rwlock_unlock(&m->lock);
    if (!grown) {
        kl_status st = kl_seterr(KL_EINVAL, "model \"%s\" is given twice", md->name);
        model_free(md);
        return st;
    }
    kl_status st = mm_refresh_model(m, md->name, 1);
    if (st != KL_OK) {
        kl_preferr(st, "load model \"%s\"", md->name);
        /* Take it out again: a model named on the command line must load. */
        pthread_mutex_lock(&m->load_mu);
        pthread_rwlock_wrlock(&m->lock);
        while (md->nv)
            mm_remove(m, md, md->v[md->nv - 1]->label);
        for (size_t i = 0; i < m->n; i++)
            if (m->models[i] == md) m->models[i] = m->models[--m->n];
        pthread_rwlock_unlock(&m->lock);
        pthread_mutex_unlock(&m->load_mu);
        model_free(md);
        return st;
    }
    return KL_OK;
}

kl_status kl_model_manager_set_traffic(kl_model_manager *m, const char *name, const char *mode,
                                       const char *challenger, double share) {
    mm_traffic t;
    if (!strcmp(mode, "canary"))
        t = MM_TRAFFIC_CANARY;
    else if (!strcmp(mode, "shadow"))
        t = MM_TRAFFIC_SHADOW;
    else if (!strcmp(mode, "none"))
        t = MM_TRAFFIC_NONE;
    else
        return kl_seterr(KL_EINVAL, "traffic policy \"%s\": expected canary, shadow or none", mode);
    if (t == MM_TRAFFIC_CANARY && !(share >= 0 && share <= 1))
        return kl_seterr(KL_EINVAL, "canary share %g must be within 0..1", share);
    if (t != MM_TRAFFIC_NONE && (!challenger || !*challenger))
        return kl_seterr(KL_EINVAL, "traffic policy %s needs a challenger", mode);
    pthread_rwlock_wrlock(&m->lock);
    mm_model *md = mm_find(m, name);
    char *src = md && challenger ? strdup(challenger) : NULL;
    if (md) {
        free(md->challenger_src);
        md->challenger_src = src;
        md->traffic = t;
        md->share = share;
        if (md->kind == MM_SRC_REPO && src)
            snprintf(md->challenger_label, sizeof md->challenger_label, "%s", src);
        if (t == MM_TRAFFIC_NONE) md->challenger_label[0] = 0;
        if (!md->c_route[0]) model_metrics(m, md);
        mm_pick_routes(md);
    }
    pthread_rwlock_unlock(&m->lock);
    if (!md) return kl_seterr(KL_ENOTFOUND, "unknown model \"%s\"", name);
    if (t == MM_TRAFFIC_NONE) return KL_OK;
    kl_status st = mm_refresh_model(m, name, 0);
    if (st != KL_OK) return kl_preferr(st, "model \"%s\" challenger %s", name, challenger);
    pthread_rwlock_rdlock(&m->lock);
    const mm_version *a = md->champion, *b = md->challenger;
    if (!b || !a || a == b)
        st = kl_seterr(KL_ENOTFOUND,
                       "model \"%s\": challenger %s is not loaded (or is the champion)", name,
                       challenger);
    else if (a->sig.n_features != b->sig.n_features || a->sig.n_classes != b->sig.n_classes)
        st = kl_seterr(KL_EINVAL,
                       "model \"%s\": challenger version %s takes %lld features and answers %lld "
                       "classes; champion version %s takes %lld and answers %lld",
                       name, b->label, (long long)b->sig.n_features, (long long)b->sig.n_classes,
                       a->label, (long long)a->sig.n_features, (long long)a->sig.n_classes);
    pthread_rwlock_unlock(&m->lock);
    if (st != KL_OK) {
        pthread_rwlock_wrlock(&m->lock);
        md->traffic = MM_TRAFFIC_NONE;
        pthread_rwlock_unlock(&m->lock);
    }
    return st;
}

/* --- routing
 * -------------------------------------------------------------------------------------- */

/* What the rows a shadow copy is compared with: the champion's and the challenger's classes. */
typedef struct {
    atomic_int pending;    /* answers still to come (2, then 1, then 0) */
    int64_t rows;          /* rows in the request */
    int64_t *classes[2];   /* [0] champion, [1] challenger; NULL if that one failed */
    kl_counter **counters; /* the model's agree/disagree/error counters */
} shadow_pair;

typedef struct {
    kl_model_manager *m;   /* the manager */
    mm_version *v;         /* the version it runs on (one reference held) */
    kl_infer_done_fn done; /* the front end's callback (NULL for a shadow copy) */
    void *user;            /* its context */
    uint64_t t0_ns;        /* arrival at the manager */
    shadow_pair *shadow;   /* the comparison this request takes part in, or NULL */
    int side;              /* 0 champion, 1 challenger (shadow) */
} route_ctx;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

static void shadow_finish(shadow_pair *p, int side, const kl_infer_result *res) {
    if (res->code == KL_GRPC_OK && (p->classes[side] = malloc((size_t)p->rows * 8)))
        memcpy(p->classes[side], res->classes, (size_t)p->rows * sizeof(int64_t));
    if (atomic_fetch_sub(&p->pending, 1) != 1) return;
    if (p->classes[0] && p->classes[1]) {
        int64_t agree = 0;
        for (int64_t r = 0; r < p->rows; r++)
            agree += p->classes[0][r] == p->classes[1][r];
        kl_counter_add(p->counters[0], (double)agree);
        kl_counter_add(p->counters[1], (double)(p->rows - agree));
    } else {
        kl_counter_add(p->counters[2], (double)p->rows);
    }
    free(p->classes[0]);
    free(p->classes[1]);
    free(p);
}

/* Counts a failure by its code: kiln_inference_requests_failure_total{model,version,reason}. */
static void count_failure(kl_model_manager *m, const char *model, const char *version,
                          kl_grpc_code code) {
    const char *names[] = {"model", "version", "reason"};
    const char *values[] = {model, version, kl_grpc_code_name(code)};
    kl_counter *c =
        kl_metrics_counter(m->metrics, "kiln_inference_requests_failure_total",
                           "Inference requests that failed, by gRPC status", names, values, 3);
    if (c) kl_counter_add(c, 1);
}

static void route_done(void *user, const kl_oip_request *req, const kl_infer_result *res) {
    route_ctx *rc = user;
    mm_version *v = rc->v;
    if (res->code == KL_GRPC_OK) {
        kl_histogram_observe(v->h_request, (double)(now_ns() - rc->t0_ns) * 1e-9);
        kl_histogram_observe(v->h_queue, (double)res->queue_ns * 1e-9);
        kl_histogram_observe(v->h_compute, (double)res->compute_ns * 1e-9);
        kl_counter_add(v->c_success, 1);
        kl_counter_add(v->c_rows, (double)res->batch);
    } else {
        count_failure(rc->m, v->model, v->label, res->code);
    }
    if (rc->done && res->code == KL_GRPC_OK)
        for (int i = 0; i < rc->m->n_observers; i++)
            rc->m->observers[i](rc->m->observer_ctx[i], req, res);
    if (rc->done && res->code == KL_GRPC_OK)
        for (int i = 0; i < KL_MAX_MONITORS; i++)
            if (v->mon_state[i])
                rc->m->monitors[i].observe(rc->m->monitor_ctx[i], v->mon_state[i], req, res);
    if (rc->done) rc->done(rc->user, req, res);
    if (rc->shadow) shadow_finish(rc->shadow, rc->side, res);
    mm_version_unref(rc->m, v);
    free(rc);
}

/* Fails a request before it reaches a batcher. */
static void fail_request(kl_model_manager *m, kl_oip_request *req, kl_infer_done_fn done,
                         void *user, kl_grpc_code code, const char *msg) {
    kl_infer_result res;
    memset(&res, 0, sizeof res);
    res.code = code;
    res.message = msg;
    res.version = req->model_version ? req->model_version : "";
    count_failure(m, req->model_name ? req->model_name : "", res.version, code);
    done(user, req, &res);
    kl_oip_request_free(req);
}

uint64_t kl_request_id_hash(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    /* FNV's high bits barely move between ids that differ in their last characters; the
     * splitmix64 finaliser spreads every input bit over the whole word. */
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

/* Whether this request goes to the canary: by its id when it has one (the same id always takes
 * the same side), else by an even split of the arrival count. */
static int canary_pick(mm_model *md, const char *id) {
    if (id && *id) return (double)(kl_request_id_hash(id) >> 11) * 0x1.0p-53 < md->share;
    unsigned long long k = atomic_fetch_add(&md->routed, 1);
    return (unsigned long long)((double)(k + 1) * md->share) >
           (unsigned long long)((double)k * md->share);
}

void kl_model_manager_infer(kl_model_manager *m, kl_oip_request *req, kl_infer_done_fn done,
                            void *user) {
    char msg[512];
    if (atomic_load(&m->stopping)) {
        fail_request(m, req, done, user, KL_GRPC_UNAVAILABLE, "server is shutting down");
        return;
    }
    uint64_t t0 = now_ns();
    const char *want = req->model_version ? req->model_version : "";
    pthread_rwlock_rdlock(&m->lock);
    mm_model *md = mm_find(m, req->model_name);
    mm_version *v = NULL, *shadow = NULL;
    int route = 2;
    if (md && *want) {
        for (size_t i = 0; i < md->nv && !v; i++)
            if (!strcmp(md->v[i]->label, want)) v = md->v[i];
    } else if (md) {
        v = md->champion;
        route = 0;
        if (v && md->challenger && md->challenger != v) {
            if (md->traffic == MM_TRAFFIC_CANARY && canary_pick(md, req->id)) {
                v = md->challenger;
                route = 1;
            } else if (md->traffic == MM_TRAFFIC_SHADOW) {
                shadow = md->challenger;
            }
        }
    }
    if (v) atomic_fetch_add(&v->refs, 1);
    if (shadow) atomic_fetch_add(&shadow->refs, 1);
    kl_counter *routed = md && v ? md->c_route[route] : NULL;
    kl_counter **shadow_counters = md ? md->c_shadow : NULL;
    pthread_rwlock_unlock(&m->lock);
    if (!v) {
        if (!md)
            snprintf(msg, sizeof msg, "unknown model \"%s\"", req->model_name);
        else if (*want)
            snprintf(msg, sizeof msg, "model \"%s\" has no ready version \"%s\"", req->model_name,
                     want);
        else
            snprintf(msg, sizeof msg, "model \"%s\" has no ready version", req->model_name);
        fail_request(m, req, done, user, KL_GRPC_NOT_FOUND, msg);
        return;
    }
    if (routed) kl_counter_add(routed, 1);
    if (m->assign_ids && (!req->id || !*req->id)) {
        char id[64];
        snprintf(id, sizeof id, "kiln-%llx-%llu", m->id_epoch,
                 (unsigned long long)atomic_fetch_add(&m->next_id, 1) + 1);
        char *own = strdup(id);
        if (own) {
            free(req->id);
            req->id = own;
        }
    }
    if (req->n_features != v->sig.n_features) { /* swapped since the request was checked */
        snprintf(msg, sizeof msg, "model \"%s\" version %s takes %lld features, not %lld", v->model,
                 v->label, (long long)v->sig.n_features, (long long)req->n_features);
        mm_version_unref(m, v);
        if (shadow) mm_version_unref(m, shadow);
        fail_request(m, req, done, user, KL_GRPC_INVALID_ARGUMENT, msg);
        return;
    }
    route_ctx *rc = malloc(sizeof *rc);
    if (!rc) {
        mm_version_unref(m, v);
        if (shadow) mm_version_unref(m, shadow);
        fail_request(m, req, done, user, KL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    *rc = (route_ctx){m, v, done, user, t0, NULL, 0};
    if (shadow) {
        /* A copy of the request for the challenger; its answer is compared, never returned. */
        shadow_pair *p = calloc(1, sizeof *p);
        route_ctx *sc = p ? malloc(sizeof *sc) : NULL;
        kl_oip_request copy = *req;
        size_t bytes = (size_t)(req->batch * req->n_features) * sizeof(float);
        copy.rows = sc ? malloc(bytes) : NULL;
        copy.model_name = strdup(req->model_name);
        copy.model_version = strdup(want);
        copy.id = strdup(req->id ? req->id : "");
        copy.labels = NULL; /* the champion's request owns them */
        if (!p || !sc || !copy.rows || !copy.model_name || !copy.model_version || !copy.id) {
            free(p);
            free(sc);
            kl_oip_request_free(&copy);
            mm_version_unref(m, shadow);
        } else {
            memcpy(copy.rows, req->rows, bytes);
            atomic_init(&p->pending, 2);
            p->rows = req->batch;
            p->counters = shadow_counters;
            rc->shadow = p;
            *sc = (route_ctx){m, shadow, NULL, NULL, t0, p, 1};
            kl_batcher_submit(shadow->batcher, &copy, route_done, sc);
        }
    }
    kl_batcher_submit(v->batcher, req, route_done, rc);
}

kl_status kl_model_manager_observe(kl_model_manager *m, kl_infer_observer_fn fn, void *ctx,
                                   int assign_ids) {
    if (m->n_observers >= KL_MAX_OBSERVERS)
        return kl_seterr(KL_EINVAL, "model manager: more than %d observers", KL_MAX_OBSERVERS);
    m->observers[m->n_observers] = fn;
    m->observer_ctx[m->n_observers++] = ctx;
    if (assign_ids) m->assign_ids = 1;
    return KL_OK;
}

kl_status kl_model_manager_monitor(kl_model_manager *m, const kl_version_monitor *mon, void *ctx) {
    if (!mon || !mon->open || !mon->observe || !mon->close)
        return kl_seterr(KL_EINVAL, "model manager: a monitor needs open, observe and close");
    /* load_mu keeps a loader from creating a version between the count and the sweep below;
     * the write lock, requests from reading a state while it is set. */
    pthread_mutex_lock(&m->load_mu);
    int i = atomic_load(&m->n_monitors);
    if (i >= KL_MAX_MONITORS) {
        pthread_mutex_unlock(&m->load_mu);
        return kl_seterr(KL_EINVAL, "model manager: more than %d monitors", KL_MAX_MONITORS);
    }
    m->monitors[i] = *mon;
    m->monitor_ctx[i] = ctx;
    pthread_rwlock_wrlock(&m->lock);
    for (size_t k = 0; k < m->n; k++)
        for (size_t j = 0; j < m->models[k]->nv; j++)
            mm_version_open_monitors(m, m->models[k]->v[j], i, i + 1);
    atomic_store(&m->n_monitors, i + 1);
    pthread_rwlock_unlock(&m->lock);
    pthread_mutex_unlock(&m->load_mu);
    return KL_OK;
}

kl_metrics *kl_model_manager_metrics(kl_model_manager *m) {
    return m->metrics;
}

kl_grpc_code kl_model_manager_resolve(void *ctx, const char *name, const char *version,
                                      kl_oip_model_sig *sig) {
    kl_model_manager *m = ctx;
    pthread_rwlock_rdlock(&m->lock);
    mm_model *md = mm_find(m, name);
    const mm_version *v = NULL;
    if (md && version && *version) {
        for (size_t i = 0; i < md->nv && !v; i++)
            if (!strcmp(md->v[i]->label, version)) v = md->v[i];
    } else if (md) {
        v = md->champion;
    }
    if (v) *sig = v->sig;
    pthread_rwlock_unlock(&m->lock);
    if (v) return KL_GRPC_OK;
    if (!md)
        kl_seterr(KL_ENOTFOUND, "unknown model \"%s\"", name);
    else if (version && *version)
        kl_seterr(KL_ENOTFOUND, "model \"%s\" has no ready version \"%s\"", name, version);
    else
        kl_seterr(KL_ENOTFOUND, "model \"%s\" has no ready version", name);
    return KL_GRPC_NOT_FOUND;
}

/* --- queries
 * --------------------------------------------------------------------------------------- */

int kl_model_manager_ready(kl_model_manager *m, const char *name, const char *version) {
    kl_oip_model_sig sig;
    int ready = kl_model_manager_resolve(m, name, version, &sig) == KL_GRPC_OK;
    kl_clearerr();
    return ready;
}

void kl_model_info_free(kl_model_info *info) {
    if (!info) return;
    free(info->name);
    for (size_t i = 0; i < info->n_versions; i++)
        free(info->versions[i]);
    free(info->versions);
    memset(info, 0, sizeof *info);
}

kl_grpc_code kl_model_manager_info(kl_model_manager *m, const char *name, const char *version,
                                   kl_model_info *out) {
    memset(out, 0, sizeof *out);
    kl_grpc_code c = kl_model_manager_resolve(m, name, version, &out->sig);
    if (c != KL_GRPC_OK) return c;
    pthread_rwlock_rdlock(&m->lock);
    mm_model *md = mm_find(m, name);
    int oom = !md;
    if (md) {
        out->name = strdup(name);
        out->batch = md->champion ? md->champion->batch : md->batch;
        out->on_gpu = m->dev.kind != KL_DEV_CPU;
        out->versions = calloc(md->nv ? md->nv : 1, sizeof *out->versions);
        oom = !out->name || !out->versions;
        for (size_t i = 0; !oom && i < md->nv; i++) {
            if (!(out->versions[i] = strdup(md->v[i]->label))) oom = 1;
            out->n_versions = i + 1;
        }
    }
    pthread_rwlock_unlock(&m->lock);
    if (oom) {
        kl_model_info_free(out);
        kl_seterr(KL_ENOMEM, "model \"%s\": out of memory (or unloaded meanwhile)", name);
        return KL_GRPC_UNAVAILABLE;
    }
    return KL_GRPC_OK;
}

void kl_model_stats_free(kl_model_stats *s, size_t n) {
    for (size_t i = 0; s && i < n; i++)
        free(s[i].batch_sizes);
    free(s);
}

kl_grpc_code kl_model_manager_stats(kl_model_manager *m, const char *name, const char *version,
                                    kl_model_stats **out, size_t *n) {
    *out = NULL;
    *n = 0;
    pthread_rwlock_rdlock(&m->lock);
    size_t cap = 0;
    for (size_t i = 0; i < m->n; i++)
        cap += m->models[i]->nv;
    kl_model_stats *s = calloc(cap ? cap : 1, sizeof *s);
    int found_model = !*name, found_version = 0;
    for (size_t i = 0; s && i < m->n; i++) {
        mm_model *md = m->models[i];
        if (*name && strcmp(md->name, name)) continue;
        found_model = 1;
        for (size_t k = 0; k < md->nv; k++) {
            if (version && *version && strcmp(md->v[k]->label, version)) continue;
            found_version = 1;
            if (kl_batcher_stats(md->v[k]->batcher, &s[*n]) != KL_OK) continue;
            snprintf(s[*n].name, sizeof s[*n].name, "%s", md->name);
            (*n)++;
        }
    }
    pthread_rwlock_unlock(&m->lock);
    if (!s) {
        kl_seterr(KL_ENOMEM, "statistics: out of memory");
        return KL_GRPC_RESOURCE_EXHAUSTED;
    }
    if (!found_model || (*name && version && *version && !found_version)) {
        kl_model_stats_free(s, *n);
        *n = 0;
        if (!found_model)
            kl_seterr(KL_ENOTFOUND, "unknown model \"%s\"", name);
        else
            kl_seterr(KL_ENOTFOUND, "model \"%s\" has no ready version \"%s\"", name, version);
        return KL_GRPC_NOT_FOUND;
    }
    *out = s;
    return KL_GRPC_OK;
}

kl_status kl_model_manager_index(kl_model_manager *m, int ready_only, kl_repo_entry **out,
                                 size_t *n) {
    *out = NULL;
    *n = 0;
    pthread_rwlock_rdlock(&m->lock);
    size_t cap = 0;
    for (size_t i = 0; i < m->n; i++)
        cap += m->models[i]->nv + m->models[i]->nst + 1;
    kl_repo_entry *e = calloc(cap ? cap : 1, sizeof *e);
    for (size_t i = 0; e && i < m->n; i++) {
        mm_model *md = m->models[i];
        for (size_t k = 0; k < md->nv; k++) {
            kl_repo_entry *x = &e[(*n)++];
            snprintf(x->name, sizeof x->name, "%s", md->name);
            snprintf(x->version, sizeof x->version, "%s", md->v[k]->label);
            snprintf(x->state, sizeof x->state, "READY");
        }
        for (size_t k = 0; !ready_only && k < md->nst; k++) {
            kl_repo_entry *x = &e[(*n)++];
            snprintf(x->name, sizeof x->name, "%s", md->name);
            snprintf(x->version, sizeof x->version, "%s", md->st[k].label);
            snprintf(x->state, sizeof x->state, "%s", md->st[k].state);
            snprintf(x->reason, sizeof x->reason, "%s", md->st[k].reason);
        }
        if (!ready_only && !md->nv && !md->nst) {
            kl_repo_entry *x = &e[(*n)++];
            snprintf(x->name, sizeof x->name, "%s", md->name);
            snprintf(x->state, sizeof x->state, "UNAVAILABLE");
            snprintf(x->reason, sizeof x->reason, "%s",
                     md->unloaded ? "unloaded" : "no version folder holds a bundle");
        }
    }
    pthread_rwlock_unlock(&m->lock);
    if (!e) return kl_seterr(KL_ENOMEM, "repository index: out of memory");
    *out = e;
    return KL_OK;
}

/* --- metrics
 * --------------------------------------------------------------------------------------- */

void kl_model_manager_refresh_gauges(kl_model_manager *m) {
    pthread_rwlock_rdlock(&m->lock);
    for (size_t i = 0; i < m->n; i++) {
        mm_model *md = m->models[i];
        const char *mn[] = {"model"};
        const char *mv[] = {md->name};
        kl_gauge *g = kl_metrics_gauge(m->metrics, "kiln_model_versions_loaded",
                                       "Versions of the model ready to answer", mn, mv, 1);
        if (g) kl_gauge_set(g, (double)md->nv);
        for (size_t k = 0; k < md->nv; k++) {
            mm_version *v = md->v[k];
            const char *vn[] = {"model", "version"};
            const char *vv[] = {md->name, v->label};
            g = kl_metrics_gauge(m->metrics, "kiln_queue_requests",
                                 "Requests waiting in the version's batcher queue", vn, vv, 2);
            if (g) kl_gauge_set(g, (double)kl_batcher_queued(v->batcher));
            double share = 0;
            if (v == md->champion)
                share = md->traffic == MM_TRAFFIC_CANARY && md->challenger && md->challenger != v
                            ? 1 - md->share
                            : 1;
            else if (v == md->challenger && md->traffic == MM_TRAFFIC_CANARY)
                share = md->share;
            g = kl_metrics_gauge(m->metrics, "kiln_traffic_share_ratio",
                                 "Configured share of unversioned requests each version gets "
                                 "(a shadow challenger gets copies, not a share)",
                                 vn, vv, 2);
            if (g) kl_gauge_set(g, share);
        }
    }
    pthread_rwlock_unlock(&m->lock);
}

kl_status kl_model_manager_write_metrics(kl_model_manager *m, char **buf, size_t *len,
                                         size_t *cap) {
    kl_model_manager_refresh_gauges(m);
    return kl_metrics_render(m->metrics, buf, len, cap);
}
