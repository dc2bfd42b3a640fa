/* model_manager_impl.h — the model manager's structures, shared by its two files:
 * model_manager.c (routing, queries, lifecycle, metrics) and model_loader.c (loading versions,
 * the repository folder, polling and atomic swaps). Not for other modules.
 *
 * Lifetime of a version: created by the loader with one reference (the table's), installed into
 * its model under the write lock; each request routed to it takes a reference and drops it after
 * its callback. Removing a version from the table drops the table's reference; the last drop
 * (often on the version's own batcher thread, which cannot join itself) puts it on the retired
 * list, and the housekeeping thread frees it.
 */
#ifndef KL_MODEL_MANAGER_IMPL_H
#define KL_MODEL_MANAGER_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include "runtime/bundle.h"
#include "serving/batcher.h"
#include "serving/metrics.h"
#include "serving/model_manager.h"
#include "tracking/mlflow.h" /* alias lookups for models:/NAME@ALIAS */

typedef struct mm_version mm_version;

struct mm_version {
    char model[128];                  /* model name */
    char label[32];                   /* version as the protocol names it ("3") */
    int64_t number;                   /* the same, as a number (for ordering) */
    char source[4096];                /* where it came from: a folder or a models:/NAME/N URI */
    char fingerprint[128];            /* what identifies its files (to notice a rewrite) */
    kl_bundle bundle;                 /* weights, transform, labels */
    kl_oip_model_sig sig;             /* what it takes and answers */
    kl_batch_opts batch;              /* its batching */
    kl_batcher *batcher;              /* its queue and instances */
    atomic_int refs;                  /* the table's + one per request in flight */
    mm_version *next_retired;         /* on the retired list */
    kl_histogram *h_request;          /* request duration, s */
    kl_histogram *h_queue;            /* queue duration, s */
    kl_histogram *h_compute;          /* batch compute duration, s */
    kl_histogram *h_batch;            /* batch size, rows */
    kl_counter *c_success;            /* requests answered */
    kl_counter *c_rows;               /* rows answered */
    kl_counter *c_exec;               /* batches run */
    void *mon_state[KL_MAX_MONITORS]; /* each monitor's state for this version (or NULL) */
};

/* A version that is not serving: failed to load, or loading. */
typedef struct {
    char label[32];        /* its version */
    char state[16];        /* "UNAVAILABLE" (failed) or "LOADING" */
    char reason[256];      /* why */
    char fingerprint[128]; /* of the files that failed: not retried until they change */
} mm_status;

typedef enum {
    MM_SRC_DIR,  /* one bundle folder, version "1", reloaded when its files change */
    MM_SRC_URI,  /* models:/NAME@ALIAS or models:/NAME/N, re-resolved on each poll */
    MM_SRC_REPO, /* REPO/NAME/VERSION/ folders, under the version policy */
} mm_source_kind;

typedef enum { MM_TRAFFIC_NONE, MM_TRAFFIC_CANARY, MM_TRAFFIC_SHADOW } mm_traffic;

typedef struct {
    char name[128];            /* model name */
    mm_source_kind kind;       /* where its versions come from */
    char *source;              /* MM_SRC_DIR/URI: the spec's bundle part, owned */
    char *challenger_src;      /* the challenger's source (folder, URI, or a version number) */
    mm_version **v;            /* ready versions, ascending by number */
    size_t nv;                 /* entries in v */
    mm_version *champion;      /* default route (one of v), or NULL */
    mm_version *challenger;    /* canary / shadow target (one of v), or NULL */
    mm_traffic traffic;        /* policy for requests naming no version */
    double share;              /* canary share, 0..1 */
    atomic_ullong routed;      /* requests routed by the canary split so far */
    mm_status *st;             /* versions not serving (failed or loading) */
    size_t nst;                /* entries in st */
    kl_batch_opts batch;       /* batching of new versions */
    kl_version_policy policy;  /* repository version policy */
    int unloaded;              /* RepositoryModelUnload took it out of service */
    char champion_label[32];   /* MM_SRC_DIR/URI: the champion's version */
    char challenger_label[32]; /* the challenger's version, "" when none */
    kl_counter *c_shadow[3];   /* shadow rows that agreed, disagreed, failed */
    kl_counter *c_route[3];    /* requests routed to the champion, the canary, by version */
} mm_model;

struct kl_model_manager {
    kl_model_manager_opts o; /* options (repository string owned) */
    pthread_rwlock_t lock;   /* guards models and every model's tables */
    mm_model **models;       /* known models */
    size_t n;                /* entries in models */
    pthread_mutex_t load_mu; /* one loader at a time (polling thread, Load RPC, startup) */
    atomic_int stopping;     /* set once freeing began: new requests are refused */
    pthread_mutex_t hk_mu;   /* guards retired, live, hk_stop; with hk_cv */
    pthread_cond_t hk_cv;    /* wakes the housekeeper (retired version, stop) and waiters */
    mm_version *retired;     /* versions whose last reference dropped */
    int live;                /* versions created and not yet freed */
    int hk_stop;             /* the housekeeper should leave */
    int hk_started;          /* whether the housekeeper runs */
    pthread_t hk;            /* the housekeeping (reaping, polling) thread */
    kl_mlflow *mlflow;       /* registry client for alias polling, opened on first use */
    kl_metrics *metrics;     /* serving metrics */
    kl_device dev;           /* where versions run */
    int polling;             /* the housekeeper polls sources (after _start) */
    kl_infer_observer_fn observers[KL_MAX_OBSERVERS]; /* see kl_model_manager_observe */
    void *observer_ctx[KL_MAX_OBSERVERS];             /* their contexts */
    int n_observers;                                  /* entries used */
    kl_version_monitor monitors[KL_MAX_MONITORS];     /* see kl_model_manager_monitor */
    void *monitor_ctx[KL_MAX_MONITORS];               /* their contexts */
    atomic_int n_monitors;                            /* entries used */
    int assign_ids;              /* requests without an id get one (an observer asked) */
    atomic_ullong next_id;       /* counter of server-made request ids */
    unsigned long long id_epoch; /* start time (s), in server-made ids to keep them unique */
};

/* --- model_loader.c -------------------------------------------------------------------------- */

/* Loads the bundle in `dir` as version label of model `model` with batching opts. */
kl_status mm_version_load(kl_model_manager *m, const char *model, const char *label,
                          const char *dir, const char *source, const kl_batch_opts *opts,
                          mm_version **out);

/* Opens every monitor's state for v (before it is installed). */
void mm_version_open_monitors(kl_model_manager *m, mm_version *v, int from, int to);

/* Drops one reference; the last one retires the version. */
void mm_version_unref(kl_model_manager *m, mm_version *v);

/* Frees a retired version (housekeeper only). */
void mm_version_free(kl_model_manager *m, mm_version *v);

/* Installs v into model md (write lock held): replaces a version with the same label or inserts
 * it in order. Returns the replaced version (whose table reference the caller drops, outside the
 * lock) or NULL. */
mm_version *mm_install(mm_model *md, mm_version *v);

/* Removes version `label` from md's table (write lock held), dropping the table's reference. */
void mm_remove(kl_model_manager *m, mm_model *md, const char *label);

/* Records (write lock held) the state of a version that is not serving; NULL state clears it. */
void mm_set_status(mm_model *md, const char *label, const char *state, const char *reason,
                   const char *fingerprint);

/* Re-picks champion and challenger after md's table changed (write lock held). */
void mm_pick_routes(mm_model *md);

/* Loads (or refreshes) one model from its source; with `force`, reloads even unchanged files.
 * Takes load_mu. Failed versions are recorded in the model's status. */
kl_status mm_refresh_model(kl_model_manager *m, const char *name, int force);

/* Scans the repository folder: new models are added, every model refreshed. Takes load_mu. */
kl_status mm_scan_repository(kl_model_manager *m);

/* The model called name (lock held), or NULL. */
mm_model *mm_find(const kl_model_manager *m, const char *name);

#endif
