/* model_loader.c — loading versions, the repository folder, polling and atomic swaps.
 *
 * Loading happens outside the manager's lock (a bundle takes milliseconds to seconds); only the
 * swap — putting the new version into the table and re-picking routes — takes the write lock.
 * One loader runs at a time (load_mu), so the polling thread and a Load RPC never race.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "serving/model_manager_impl.h"
#include "tracking/model_uri.h" /* models:/ URIs to local folders */

/* --- versions ----------------------------------------------------------------------------------
 */

/* Identifies a bundle folder's files: size and modification time of each. "" if unreadable. */
static void fingerprint(const char *dir, char *out, size_t cap) {
    static const char *const files[] = {"MLmodel", "kiln.json", "model.safetensors"};
    size_t n = 0;
    out[0] = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        struct stat sb;
        if (stat(path, &sb)) continue;
        int w = snprintf(out + n, cap - n, "%lld.%09ld:%lld;", (long long)sb.st_mtim.tv_sec,
                         sb.st_mtim.tv_nsec, (long long)sb.st_size);
        if (w < 0 || (size_t)w >= cap - n) break;
        n += (size_t)w;
    }
}

static const double seconds_buckets[] = {50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3,
                                         5e-3,  10e-3,  25e-3,  50e-3,  0.1,  0.25,
                                         0.5,   1.0,    2.5,    5.0,    10.0};
static const double rows_buckets[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};
#define NB(a) (sizeof(a) / sizeof(a)[0])

/* Counts each batch a version runs. */
static void batch_observed(void *ctx, int64_t rows, uint64_t in_ns, uint64_t infer_ns,
                           uint64_t out_ns) {
    mm_version *v = ctx;
    (void)in_ns, (void)infer_ns, (void)out_ns;
    kl_histogram_observe(v->h_batch, (double)rows);
    kl_counter_add(v->c_exec, 1);
}

kl_status mm_version_load(kl_model_manager *m, const char *model, const char *label,
                          const char *dir, const char *source, const kl_batch_opts *opts,
                          mm_version **out) {
    *out = NULL;
    mm_version *v = calloc(1, sizeof *v);
    if (!v) return kl_seterr(KL_ENOMEM, "out of memory");
    snprintf(v->model, sizeof v->model, "%s", model);
    snprintf(v->label, sizeof v->label, "%s", label);
    v->number = strtoll(label, NULL, 10);
    snprintf(v->source, sizeof v->source, "%s", source);
    fingerprint(dir, v->fingerprint, sizeof v->fingerprint);
    v->batch = *opts;
    kl_status st = kl_bundle_load(dir, &v->bundle);
    if (st == KL_OK && v->bundle.spec.task != KL_TASK_CLASSIFICATION)
        st = kl_seterr(KL_EUNSUPPORTED, "%s: only classification models can be served", dir);
    if (st == KL_OK) {
        v->sig.input_name = NULL; /* tritonclient users name their input freely */
        v->sig.n_features = v->bundle.n_features;
        v->sig.n_classes = v->bundle.spec.dims[v->bundle.spec.n_layers];
        v->sig.max_batch = opts->max_batch;
        st = kl_batcher_create(&v->bundle, m->dev, opts, model, label, &v->batcher);
    }
    if (st != KL_OK) {
        kl_bundle_free(&v->bundle);
        free(v);
        return st;
    }
    const char *names[] = {"model", "version"};
    const char *values[] = {model, label};
    v->h_request =
        kl_metrics_histogram(m->metrics, "kiln_inference_request_duration_seconds",
                             "Time from a request's arrival at its version to its answer",
                             seconds_buckets, NB(seconds_buckets), names, values, 2);
    v->h_queue = kl_metrics_histogram(m->metrics, "kiln_inference_queue_duration_seconds",
                                      "Time requests waited in the batcher's queue",
                                      seconds_buckets, NB(seconds_buckets), names, values, 2);
    v->h_compute = kl_metrics_histogram(
        m->metrics, "kiln_inference_compute_duration_seconds",
        "Compute time of the batch each request ran in (input, forward, output)", seconds_buckets,
        NB(seconds_buckets), names, values, 2);
    v->h_batch =
        kl_metrics_histogram(m->metrics, "kiln_inference_batch_size_rows", "Rows in each batch run",
                             rows_buckets, NB(rows_buckets), names, values, 2);
    v->c_success = kl_metrics_counter(m->metrics, "kiln_inference_requests_success_total",
                                      "Inference requests answered successfully", names, values, 2);
    v->c_rows = kl_metrics_counter(m->metrics, "kiln_inference_rows_total",
                                   "Rows (inferences) answered; a request carries one or more",
                                   names, values, 2);
    v->c_exec = kl_metrics_counter(m->metrics, "kiln_inference_executions_total",
                                   "Batches run (model executions)", names, values, 2);
    if (!v->h_request || !v->h_queue || !v->h_compute || !v->h_batch || !v->c_success ||
        !v->c_rows || !v->c_exec) {
        kl_batcher_free(v->batcher);
        kl_bundle_free(&v->bundle);
        free(v);
        return kl_seterr(KL_ENOMEM, "metrics: %s", kl_errmsg());
    }
    kl_batcher_observe(v->batcher, batch_observed, v);
    mm_version_open_monitors(m, v, 0, atomic_load(&m->n_monitors));
    atomic_init(&v->refs, 1);
    pthread_mutex_lock(&m->hk_mu);
    m->live++;
    pthread_mutex_unlock(&m->hk_mu);
    *out = v;
    return KL_OK;
}

void mm_version_open_monitors(kl_model_manager *m, mm_version *v, int from, int to) {
    for (int i = from; i < to; i++)
        v->mon_state[i] =
            m->monitors[i].open(m->monitor_ctx[i], v->model, v->label, v->bundle.reference_json,
                                v->bundle.n_features, v->bundle.feature_names);
}

void mm_version_unref(kl_model_manager *m, mm_version *v) {
    if (atomic_fetch_sub(&v->refs, 1) != 1) return;
    pthread_mutex_lock(&m->hk_mu);
    v->next_retired = m->retired;
    m->retired = v;
    pthread_cond_broadcast(&m->hk_cv);
    pthread_mutex_unlock(&m->hk_mu);
}

void mm_version_free(kl_model_manager *m, mm_version *v) {
    for (int i = 0; i < KL_MAX_MONITORS; i++)
        if (v->mon_state[i]) m->monitors[i].close(m->monitor_ctx[i], v->mon_state[i]);
    kl_batcher_free(v->batcher); /* its queue is empty: every request held a reference */
    kl_bundle_free(&v->bundle);
    free(v);
    pthread_mutex_lock(&m->hk_mu);
    m->live--;
    pthread_cond_broadcast(&m->hk_cv);
    pthread_mutex_unlock(&m->hk_mu);
}

/* --- tables (write lock held)
 * --------------------------------------------------------------------- */

mm_model *mm_find(const kl_model_manager *m, const char *name) {
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->models[i]->name, name)) return m->models[i];
    return NULL;
}

static mm_version *find_version(const mm_model *md, const char *label) {
    for (size_t i = 0; i < md->nv; i++)
        if (!strcmp(md->v[i]->label, label)) return md->v[i];
    return NULL;
}

mm_version *mm_install(mm_model *md, mm_version *v) {
    for (size_t i = 0; i < md->nv; i++)
        if (!strcmp(md->v[i]->label, v->label)) {
            mm_version *old = md->v[i];
            md->v[i] = v;
            return old;
        }
    size_t at = md->nv;
    while (at > 0 && md->v[at - 1]->number > v->number)
        at--;
    mm_version **grown = realloc(md->v, (md->nv + 1) * sizeof *grown);
    if (!grown) return v; /* cannot install: the caller drops it like a replaced one */
    md->v = grown;
    memmove(md->v + at + 1, md->v + at, (md->nv - at) * sizeof *md->v);
    md->v[at] = v;
    md->nv++;
    return NULL;
}

void mm_remove(kl_model_manager *m, mm_model *md, const char *label) {
    for (size_t i = 0; i < md->nv; i++)
        if (!strcmp(md->v[i]->label, label)) {
            mm_version *v = md->v[i];
            memmove(md->v + i, md->v + i + 1, (md->nv - i - 1) * sizeof *md->v);
            md->nv--;
            if (md->champion == v) md->champion = NULL;
            if (md->challenger == v) md->challenger = NULL;
            mm_version_unref(m, v);
            return;
        }
}

void mm_set_status(mm_model *md, const char *label, const char *state, const char *reason,
                   const char *fp) {
    size_t i = 0;
    while (i < md->nst && strcmp(md->st[i].label, label))
        i++;
    if (!state) {
        if (i < md->nst) {
            memmove(md->st + i, md->st + i + 1, (md->nst - i - 1) * sizeof *md->st);
            md->nst--;
        }
        return;
    }
    if (i == md->nst) {
        mm_status *grown = realloc(md->st, (md->nst + 1) * sizeof *grown);
        if (!grown) return; /* the state is informative only */
        md->st = grown;
        md->nst++;
    }
    snprintf(md->st[i].label, sizeof md->st[i].label, "%s", label);
    snprintf(md->st[i].state, sizeof md->st[i].state, "%s", state);
    snprintf(md->st[i].reason, sizeof md->st[i].reason, "%s", reason ? reason : "");
    snprintf(md->st[i].fingerprint, sizeof md->st[i].fingerprint, "%s", fp ? fp : "");
}

void mm_pick_routes(mm_model *md) {
    md->challenger = md->challenger_label[0] ? find_version(md, md->challenger_label) : NULL;
    md->champion = NULL;
    if (md->kind != MM_SRC_REPO) {
        md->champion = find_version(md, md->champion_label);
    } else {
        for (size_t i = md->nv; i-- > 0;)
            if (md->v[i] != md->challenger) {
                md->champion = md->v[i];
                break;
            }
    }
    if (!md->champion) md->champion = md->challenger; /* the only one left serves */
}

/* --- swapping in a loaded version ----------------------------------------------------------------
 */

/* Loads `dir` as md's version `label` and swaps it in; on failure records the reason. */
static kl_status load_and_swap(kl_model_manager *m, mm_model *md, const char *label,
                               const char *dir, const char *source, const char *role) {
    char fp[128];
    fingerprint(dir, fp, sizeof fp);
    pthread_rwlock_wrlock(&m->lock);
    mm_set_status(md, label, "LOADING", "", fp);
    pthread_rwlock_unlock(&m->lock);
    mm_version *v = NULL;
    kl_status st = mm_version_load(m, md->name, label, dir, source, &md->batch, &v);
    pthread_rwlock_wrlock(&m->lock);
    if (st != KL_OK) {
        mm_set_status(md, label, "UNAVAILABLE", kl_errmsg(), fp);
        pthread_rwlock_unlock(&m->lock);
        fprintf(stderr, "kiln serve: model \"%s\" version %s failed to load: %s\n", md->name, label,
                kl_errmsg());
        return st;
    }
    mm_set_status(md, label, NULL, NULL, NULL);
    mm_version *old = mm_install(md, v);
    if (!strcmp(role, "champion"))
        snprintf(md->champion_label, sizeof md->champion_label, "%s", label);
    else if (!strcmp(role, "challenger"))
        snprintf(md->challenger_label, sizeof md->challenger_label, "%s", label);
    mm_pick_routes(md);
    pthread_rwlock_unlock(&m->lock);
    if (old) mm_version_unref(m, old); /* in-flight requests finish on it */
    fprintf(stderr, "kiln serve: model \"%s\" version %s %s (%s)\n", md->name, label,
            old ? "reloaded" : "loaded", source);
    return KL_OK;
}

/* Whether md's version `label` is loaded from files with fingerprint fp, or failed on them. */
static int unchanged(kl_model_manager *m, mm_model *md, const char *label, const char *fp) {
    pthread_rwlock_rdlock(&m->lock);
    int same = 0;
    mm_version *v = find_version(md, label);
    if (v) same = !strcmp(v->fingerprint, fp);
    for (size_t i = 0; !v && i < md->nst; i++)
        if (!strcmp(md->st[i].label, label) && !strcmp(md->st[i].state, "UNAVAILABLE"))
            same = !strcmp(md->st[i].fingerprint, fp);
    pthread_rwlock_unlock(&m->lock);
    return same;
}

/* --- one source: a folder or a models:/ URI
 * ------------------------------------------------------- */

/* Resolves a models:/NAME@ALIAS or models:/NAME/N source to its registry version (label) and
 * the URI of that exact version (so the alias moving between the two steps cannot mix them). */
static kl_status resolve_uri(kl_model_manager *m, const char *uri, char label[32], char *exact,
                             size_t cap) {
    const char *rest = uri + strlen("models:/");
    const char *at = strchr(rest, '@');
    const char *slash = strchr(rest, '/');
    if (at) {
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(at - rest), rest);
        if (!m->mlflow) KL_TRY(kl_mlflow_open(NULL, &m->mlflow));
        KL_TRY(kl_mlflow_get_alias(m->mlflow, name, at + 1, label));
        snprintf(exact, cap, "models:/%s/%s", name, label);
    } else if (slash && slash[1]) {
        snprintf(label, 32, "%s", slash + 1);
        snprintf(exact, cap, "%s", uri);
    } else {
        /* A logged model id: one fixed version. */
        snprintf(label, 32, "1");
        snprintf(exact, cap, "%s", uri);
    }
    return KL_OK;
}

/* Brings one role's version of a folder- or URI-sourced model up to date. */
static kl_status refresh_source(kl_model_manager *m, mm_model *md, const char *src,
                                const char *role, const char *dir_label, int force) {
    char label[32], exact[4200], dir[4096], fp[128];
    if (!strncmp(src, "models:/", 8)) {
        kl_status st = resolve_uri(m, src, label, exact, sizeof exact);
        if (st != KL_OK) return kl_preferr(st, "%s", src);
        const char *cur = !strcmp(role, "champion") ? md->champion_label : md->challenger_label;
        pthread_rwlock_rdlock(&m->lock);
        int have = !strcmp(cur, label) && find_version(md, label);
        pthread_rwlock_unlock(&m->lock);
        if (have && !force) return KL_OK; /* cached bundles are immutable per version */
        st = kl_model_uri_resolve(exact, dir, sizeof dir);
        if (st != KL_OK) return kl_preferr(st, "%s", exact);
    } else {
        snprintf(label, sizeof label, "%s", dir_label);
        snprintf(exact, sizeof exact, "%s", src);
        snprintf(dir, sizeof dir, "%s", src);
        fingerprint(dir, fp, sizeof fp);
        if (!force && unchanged(m, md, label, fp)) return KL_OK;
    }
    char prev[32];
    snprintf(prev, sizeof prev, "%s",
             !strcmp(role, "champion") ? md->champion_label : md->challenger_label);
    KL_TRY(load_and_swap(m, md, label, dir, exact, role));
    /* An alias that moved leaves its previous version behind: retire it, unless the other role
     * still points there. */
    if (prev[0] && strcmp(prev, label)) {
        pthread_rwlock_wrlock(&m->lock);
        if (strcmp(prev, md->champion_label) && strcmp(prev, md->challenger_label))
            mm_remove(m, md, prev);
        mm_pick_routes(md);
        pthread_rwlock_unlock(&m->lock);
    }
    return KL_OK;
}

/* --- the repository folder
 * --------------------------------------------------------------------------- */

static int cmp_desc(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Numeric version folders of REPO/NAME that hold a bundle, highest first. */
static kl_status list_versions(const char *mdir, int64_t **out, size_t *n) {
    *out = NULL;
    *n = 0;
    DIR *d = opendir(mdir);
    if (!d) return kl_seterr(KL_EIO, "%s: %s", mdir, strerror(errno));
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        errno = 0;
        long long v = strtoll(e->d_name, &end, 10);
        if (!e->d_name[0] || *end || errno || v < 0) continue;
        char path[4800];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s/kiln.json", mdir, e->d_name);
        if (stat(path, &sb)) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            int64_t *grown = realloc(*out, cap * sizeof *grown);
            if (!grown) {
                closedir(d);
                free(*out);
                *out = NULL;
                return kl_seterr(KL_ENOMEM, "out of memory");
            }
            *out = grown;
        }
        (*out)[(*n)++] = v;
    }
    closedir(d);
    qsort(*out, *n, sizeof **out, cmp_desc);
    return KL_OK;
}

static int in_list(const int64_t *list, size_t n, int64_t v) {
    for (size_t i = 0; i < n; i++)
        if (list[i] == v) return 1;
    return 0;
}

/* Brings a repository model up to date with its folder and version policy. The challenger (a
 * version number) is always kept; the policy picks among the others. A version that fails is
 * skipped, so the policy falls back to the next one and the old version keeps serving. */
static kl_status refresh_repo_model(kl_model_manager *m, mm_model *md, int force) {
    char mdir[4200];
    snprintf(mdir, sizeof mdir, "%s/%s", m->o.repository, md->name);
    int64_t *cand = NULL;
    size_t nc = 0;
    kl_status st = list_versions(mdir, &cand, &nc);
    if (st != KL_OK) return st;
    int64_t challenger = md->challenger_src ? strtoll(md->challenger_src, NULL, 10) : -1;
    int64_t want[64];
    size_t nw = 0;
    int latest_left = md->policy.kind == KL_VERSIONS_LATEST ? md->policy.latest_n : 0;
    for (size_t i = 0; i < nc && nw < 64; i++) {
        int64_t v = cand[i];
        int is_chal = v == challenger;
        int wanted = is_chal || md->policy.kind == KL_VERSIONS_ALL ||
                     (md->policy.kind == KL_VERSIONS_LATEST && latest_left > 0) ||
                     (md->policy.kind == KL_VERSIONS_SPECIFIC &&
                      in_list(md->policy.specific, (size_t)md->policy.n_specific, v));
        if (!wanted) continue;
        char label[32], dir[4300], fp[128];
        snprintf(label, sizeof label, "%lld", (long long)v);
        snprintf(dir, sizeof dir, "%s/%s", mdir, label);
        fingerprint(dir, fp, sizeof fp);
        int ok = 1;
        if (force || !unchanged(m, md, label, fp))
            ok = load_and_swap(m, md, label, dir, dir, "version") == KL_OK;
        else {
            pthread_rwlock_rdlock(&m->lock);
            ok = find_version(md, label) != NULL;
            pthread_rwlock_unlock(&m->lock);
        }
        if (ok) {
            want[nw++] = v;
            if (!is_chal && latest_left > 0) latest_left--;
        }
    }
    free(cand);
    /* Retire loaded versions the policy no longer wants — only once something else serves. */
    pthread_rwlock_wrlock(&m->lock);
    if (nw > 0)
        for (size_t i = md->nv; i-- > 0;)
            if (!in_list(want, nw, md->v[i]->number)) {
                fprintf(stderr, "kiln serve: model \"%s\" version %s unloaded (version policy)\n",
                        md->name, md->v[i]->label);
                mm_remove(m, md, md->v[i]->label);
            }
    mm_pick_routes(md);
    pthread_rwlock_unlock(&m->lock);
    return KL_OK;
}

static kl_status refresh_locked(kl_model_manager *m, mm_model *md, int force) {
    if (md->unloaded && !force) return KL_OK;
    if (md->kind == MM_SRC_REPO) return refresh_repo_model(m, md, force);
    KL_TRY(refresh_source(m, md, md->source, "champion", "1", force));
    if (md->challenger_src && (md->traffic != MM_TRAFFIC_NONE))
        KL_TRY(refresh_source(m, md, md->challenger_src, "challenger", "2", force));
    return KL_OK;
}

kl_status mm_refresh_model(kl_model_manager *m, const char *name, int force) {
    pthread_mutex_lock(&m->load_mu);
    pthread_rwlock_rdlock(&m->lock);
    mm_model *md = mm_find(m, name);
    pthread_rwlock_unlock(&m->lock);
    kl_status st =
        md ? refresh_locked(m, md, force) : kl_seterr(KL_ENOTFOUND, "unknown model \"%s\"", name);
    pthread_mutex_unlock(&m->load_mu);
    return st;
}

/* Adds an (empty) repository model called name (write lock held). */
static mm_model *add_repo_model(kl_model_manager *m, const char *name) {
    mm_model **grown = realloc(m->models, (m->n + 1) * sizeof *grown);
    mm_model *md = grown ? calloc(1, sizeof *md) : NULL;
    if (grown) m->models = grown;
    if (!md) return NULL;
    snprintf(md->name, sizeof md->name, "%s", name);
    md->kind = MM_SRC_REPO;
    md->batch = m->o.batch;
    md->policy = m->o.policy;
    atomic_init(&md->routed, 0);
    m->models[m->n++] = md;
    return md;
}

kl_status mm_scan_repository(kl_model_manager *m) {
    if (!m->o.repository) return KL_OK;
    pthread_mutex_lock(&m->load_mu);
    DIR *d = opendir(m->o.repository);
    if (!d) {
        pthread_mutex_unlock(&m->load_mu);
        return kl_seterr(KL_EIO, "model repository %s: %s", m->o.repository, strerror(errno));
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4400];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", m->o.repository, e->d_name);
        if (stat(path, &sb) || !S_ISDIR(sb.st_mode)) continue;
        pthread_rwlock_wrlock(&m->lock);
        mm_model *md = mm_find(m, e->d_name);
        if (!md && !m->o.explicit_control) md = add_repo_model(m, e->d_name);
        pthread_rwlock_unlock(&m->lock);
        if (md && md->kind == MM_SRC_REPO && !(m->o.explicit_control && !md->nv))
            refresh_locked(m, md, 0);
    }
    closedir(d);
    /* Repository models whose folder is gone stop serving. */
    pthread_rwlock_wrlock(&m->lock);
    for (size_t i = 0; i < m->n; i++) {
        mm_model *md = m->models[i];
        char path[4400];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", m->o.repository, md->name);
        if (md->kind == MM_SRC_REPO && stat(path, &sb))
            while (md->nv)
                mm_remove(m, md, md->v[md->nv - 1]->label);
    }
    pthread_rwlock_unlock(&m->lock);
    pthread_mutex_unlock(&m->load_mu);
    return KL_OK;
}

kl_grpc_code kl_model_manager_load(kl_model_manager *m, const char *name) {
    pthread_rwlock_wrlock(&m->lock);
    mm_model *md = mm_find(m, name);
    if (!md && m->o.repository) {
        char path[4400];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", m->o.repository, name);
        if (!strchr(name, '/') && strcmp(name, "..") && !stat(path, &sb) && S_ISDIR(sb.st_mode))
            md = add_repo_model(m, name);
    }
    if (md) md->unloaded = 0;
    pthread_rwlock_unlock(&m->lock);
    if (!md) {
        kl_seterr(KL_ENOTFOUND, "no model \"%s\" in the repository%s%s", name,
                  m->o.repository ? " " : "", m->o.repository ? m->o.repository : "");
        return KL_GRPC_NOT_FOUND;
    }
    kl_status st = mm_refresh_model(m, name, 1);
    if (st != KL_OK) {
        kl_preferr(st, "load model \"%s\"", name);
        return kl_grpc_code_from_status(st);
    }
    pthread_rwlock_rdlock(&m->lock);
    int ready = md->nv > 0;
    char reason[300] = "no version folder holds a bundle";
    if (!ready && md->nst) snprintf(reason, sizeof reason, "%s", md->st[0].reason);
    pthread_rwlock_unlock(&m->lock);
    if (!ready) {
        kl_seterr(KL_EINVAL, "load model \"%s\": %s", name, reason);
        return KL_GRPC_INVALID_ARGUMENT;
    }
    return KL_GRPC_OK;
}

kl_grpc_code kl_model_manager_unload(kl_model_manager *m, const char *name) {
    pthread_mutex_lock(&m->load_mu);
    pthread_rwlock_wrlock(&m->lock);
    mm_model *md = mm_find(m, name);
    if (md) {
        md->unloaded = 1;
        while (md->nv)
            mm_remove(m, md, md->v[md->nv - 1]->label);
        md->champion = md->challenger = NULL;
    }
    pthread_rwlock_unlock(&m->lock);
    pthread_mutex_unlock(&m->load_mu);
    if (!md) {
        kl_seterr(KL_ENOTFOUND, "unknown model \"%s\"", name);
        return KL_GRPC_NOT_FOUND;
    }
    fprintf(stderr, "kiln serve: model \"%s\" unloaded\n", name);
    return KL_GRPC_OK;
}
