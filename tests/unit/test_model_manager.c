/* test_model_manager.c — the model manager and its dynamic batchers, without a network.
 *
 * Batched answers equal kl_mlp_predict on each request alone (from several threads at once, and
 * batches really form); a full queue, a timeout and an unknown priority get their codes; a higher
 * priority overtakes; a repository folder's new version swaps in while requests keep flowing
 * (none fails), a broken version is reported and the old one keeps serving; the canary split and
 * its stickiness; a shadow copy never answers but is counted; unload and statistics. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/bundle.h"
#include "runtime/device.h"
#include "runtime/fileio.h"
#include "runtime/model.h"
#include "serving/model_manager.h"

#define FEATURES 5
#define CLASSES 3
#define N_PARAMS (7 * FEATURES + 7 + CLASSES * 7 + CLASSES)

static char tmp_root[1024]; /* this run's scratch folder */

/* Saves a 5-7-3 tanh classifier (weights from seed) with a standard transform into dir. */
static void save_bundle(const char *dir, uint32_t seed) {
    kl_bundle b;
    memset(&b, 0, sizeof b);
    static float params[N_PARAMS], shift[FEATURES], scale[FEATURES];
    static char *labels[] = {"a", "b", "c"};
    b.spec.n_layers = 2;
    b.spec.dims[0] = FEATURES;
    b.spec.dims[1] = 7;
    b.spec.dims[2] = CLASSES;
    b.spec.act = KL_ACT_TANH;
    b.spec.task = KL_TASK_CLASSIFICATION;
    b.n_params = N_PARAMS;
    uint32_t x = seed;
    for (int i = 0; i < N_PARAMS; i++) {
        x = x * 1664525u + 1013904223u;
        params[i] = ((float)(x >> 8) / 16777216.0f - 0.5f) * 2.0f;
    }
    b.params = params;
    b.n_features = FEATURES;
    snprintf(b.transform, sizeof b.transform, "standard");
    for (int i = 0; i < FEATURES; i++) {
        shift[i] = 0.5f * (float)i;
        scale[i] = 1.0f / (1.0f + (float)i);
    }
    b.shift = shift;
    b.scale = scale;
    b.n_labels = CLASSES;
    b.label_names = labels;
    assert_int_equal(kl_file_mkdirs(dir), KL_OK);
    if (kl_bundle_save(dir, &b) != KL_OK) fail_msg("save: %s", kl_errmsg());
}

static void path(char *out, size_t cap, const char *rel) {
    snprintf(out, cap, "%s/%s", tmp_root, rel);
}

/* The rows of request `seed`. */
static void fill_rows(float *x, int rows, int seed) {
    for (int i = 0; i < rows * FEATURES; i++)
        x[i] = (float)((i * 37 + seed * 11) % 23) * 0.25f - 2.0f;
}

/* A decoded request for model `name` at version ver ("" = any) with rows of fill_rows(seed). */
static kl_oip_request make_request(const char *name, const char *ver, const char *id, int rows,
                                   int seed) {
    kl_oip_request r;
    memset(&r, 0, sizeof r);
    r.model_name = strdup(name);
    r.model_version = strdup(ver);
    r.id = strdup(id);
    r.batch = rows;
    r.n_features = FEATURES;
    r.rows = malloc((size_t)rows * FEATURES * sizeof(float));
    fill_rows(r.rows, rows, seed);
    r.n_outputs = 2;
    r.outputs[0] = KL_OIP_OUT_PROBABILITIES;
    r.outputs[1] = KL_OIP_OUT_CLASS;
    return r;
}

/* What one request's callback saw. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;          /* the callback ran */
    kl_grpc_code code; /* its code */
    char message[512]; /* its message */
    char version[32];  /* the version that answered */
    float probs[8 * CLASSES];
    int64_t classes[8];
    int64_t batch;
    int sleep_ms;      /* the callback sleeps this long (keeps the instance busy) */
    atomic_int *order; /* completion counter shared by several requests */
    int rank;          /* this request's place in the completion order */
} outcome;

static void outcome_init(outcome *o) {
    memset(o, 0, sizeof *o);
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
}

static void on_done(void *user, const kl_oip_request *req, const kl_infer_result *res) {
    outcome *o = user;
    (void)req;
    if (o->sleep_ms) usleep((useconds_t)o->sleep_ms * 1000);
    pthread_mutex_lock(&o->mu);
    o->code = res->code;
    snprintf(o->message, sizeof o->message, "%s", res->message ? res->message : "");
    snprintf(o->version, sizeof o->version, "%s", res->version ? res->version : "");
    if (res->code == KL_GRPC_OK) {
        o->batch = res->batch;
        memcpy(o->probs, res->probs, (size_t)(res->batch * CLASSES) * sizeof(float));
        memcpy(o->classes, res->classes, (size_t)res->batch * sizeof(int64_t));
    }
    if (o->order) o->rank = atomic_fetch_add(o->order, 1);
    o->done = 1;
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
}

static void wait_done(outcome *o) {
    pthread_mutex_lock(&o->mu);
    while (!o->done)
        pthread_cond_wait(&o->cv, &o->mu);
    pthread_mutex_unlock(&o->mu);
}

/* Submits and waits. */
static void infer_sync(kl_model_manager *m, kl_oip_request *r, outcome *o) {
    outcome_init(o);
    kl_model_manager_infer(m, r, on_done, o);
    wait_done(o);
}

static kl_model_manager *manager(const kl_batch_opts *b, const char *repo) {
    kl_model_manager_opts o = kl_model_manager_defaults();
    if (b) o.batch = *b;
    o.repository = repo;
    kl_model_manager *m = NULL;
    if (kl_model_manager_create(&o, &m) != KL_OK) fail_msg("create: %s", kl_errmsg());
    return m;
}

static kl_model_manager *manager_with_bundle(const kl_batch_opts *b) {
    kl_model_manager *m = manager(b, NULL);
    char dir[1100], spec[1200];
    path(dir, sizeof dir, "plain");
    snprintf(spec, sizeof spec, "m=%s", dir);
    if (kl_model_manager_add(m, spec) != KL_OK) fail_msg("add: %s", kl_errmsg());
    return m;
}

/* The reference answer: the bundle's transform and kl_mlp_predict on the rows alone. */
static void reference(const char *dir, const float *rows, int n, float *probs) {
    kl_bundle b;
    assert_int_equal(kl_bundle_load(dir, &b), KL_OK);
    kl_mlp mlp;
    assert_int_equal(kl_mlp_create(&mlp, &b.spec, kl_cpu(), 16, KL_PREC_FP32), KL_OK);
    memcpy(mlp.params, b.params, (size_t)b.n_params * sizeof(float));
    float x[16 * FEATURES];
    memcpy(x, rows, (size_t)n * FEATURES * sizeof(float));
    kl_bundle_apply_transform(&b, x, n);
    assert_int_equal(kl_mlp_predict(&mlp, x, n, probs), KL_OK);
    kl_mlp_free(&mlp);
    kl_bundle_free(&b);
}

/* --- batching -----------------------------------------------------------------------------------
 */

typedef struct {
    kl_model_manager *m;
    int first, count; /* request seeds first..first+count-1 */
    double max_err;   /* worst difference from the reference */
    int failures;
} load_arg;

static void *load_thread(void *p) {
    load_arg *a = p;
    char dir[1100];
    path(dir, sizeof dir, "plain");
    for (int i = a->first; i < a->first + a->count; i++) {
        int rows = 1 + i % 5;
        kl_oip_request r = make_request("m", "", "", rows, i);
        outcome o;
        infer_sync(a->m, &r, &o);
        if (o.code != KL_GRPC_OK) {
            a->failures++;
            continue;
        }
        float x[8 * FEATURES], want[8 * CLASSES];
        fill_rows(x, rows, i);
        reference(dir, x, rows, want);
        for (int k = 0; k < rows * CLASSES; k++) {
            double e = fabs((double)want[k] - (double)o.probs[k]);
            if (e > a->max_err) a->max_err = e;
        }
    }
    return NULL;
}

static void test_batched_equals_alone(void **state) {
    (void)state;
    kl_batch_opts b = kl_batch_opts_defaults();
    b.max_queue_delay_us = 2000; /* let batches form */
    b.max_batch = 16;
    kl_model_manager *m = manager_with_bundle(&b);
    assert_int_equal(kl_model_manager_start(m), KL_OK);
    pthread_t t[4];
    load_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (load_arg){m, i * 50, 50, 0, 0};
        pthread_create(&t[i], NULL, load_thread, &a[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(a[i].failures, 0);
        printf("thread %d: max |batched - alone| = %.3g\n", i, a[i].max_err);
        assert_true(a[i].max_err <= 1e-6);
    }
    kl_model_stats *s = NULL;
    size_t n = 0;
    assert_int_equal(kl_model_manager_stats(m, "m", "", &s, &n), KL_GRPC_OK);
    assert_int_equal(n, 1);
    uint64_t rows = 0;
    for (int i = 0; i < 200; i++)
        rows += (uint64_t)(1 + i % 5);
    assert_int_equal(s[0].success.count, 200);
    assert_int_equal(s[0].inference_count, rows);
    printf("200 requests ran in %llu batches\n", (unsigned long long)s[0].execution_count);
    assert_true(s[0].execution_count < 200); /* batches formed */
    uint64_t sized = 0;
    for (size_t i = 0; i < s[0].n_batch_sizes; i++)
        sized += s[0].batch_sizes[i].batch_size * s[0].batch_sizes[i].compute_infer.count;
    assert_int_equal(sized, rows);
    kl_model_stats_free(s, n);
    kl_model_manager_free(m);
}

typedef struct {
    kl_model_manager *m;
    outcome *o;
} occupy_arg;

static void *occupy_thread(void *p) {
    occupy_arg *a = p;
    kl_oip_request r = make_request("m", "", "", 1, 1);
    kl_model_manager_infer(a->m, &r, on_done, a->o); /* may run right here, on this thread */
    free(a);
    return NULL;
}

/* Occupies the only instance from another thread: a request whose callback sleeps ms. */
static void occupy(kl_model_manager *m, outcome *busy, int ms) {
    outcome_init(busy);
    busy->sleep_ms = ms;
    occupy_arg *a = malloc(sizeof *a);
    *a = (occupy_arg){m, busy};
    pthread_t t;
    pthread_create(&t, NULL, occupy_thread, a);
    pthread_detach(t);
    usleep(20000); /* it is running now */
}

static void test_queue_full_timeout_priority(void **state) {
    (void)state;
    kl_batch_opts b = kl_batch_opts_defaults();
    b.max_batch = 1;
    b.max_queue_size = 2;
    b.priority_levels = 2;
    b.default_priority = 2;
    kl_model_manager *m = manager_with_bundle(&b);
    outcome busy, o[5];
    atomic_int order;
    atomic_init(&order, 0);

    /* A full queue answers at once. */
    occupy(m, &busy, 150);
    for (int i = 0; i < 5; i++) {
        outcome_init(&o[i]);
        kl_oip_request r = make_request("m", "", "", 1, i);
        kl_model_manager_infer(m, &r, on_done, &o[i]);
    }
    int full = 0;
    for (int i = 0; i < 5; i++) {
        wait_done(&o[i]);
        if (o[i].code == KL_GRPC_RESOURCE_EXHAUSTED) {
            full++;
            assert_non_null(strstr(o[i].message, "queue full"));
        } else {
            assert_int_equal(o[i].code, KL_GRPC_OK);
        }
    }
    wait_done(&busy);
    assert_int_equal(full, 3);

    /* A request past its timeout is not run. */
    occupy(m, &busy, 150);
    kl_oip_request r = make_request("m", "", "", 1, 9);
    r.timeout_us = 1000;
    outcome_init(&o[0]);
    kl_model_manager_infer(m, &r, on_done, &o[0]);
    wait_done(&o[0]);
    wait_done(&busy);
    assert_int_equal(o[0].code, KL_GRPC_DEADLINE_EXCEEDED);
    assert_non_null(strstr(o[0].message, "timed out"));

    /* Priority 1 overtakes priority 2 queued before it; priority 3 does not exist. */
    occupy(m, &busy, 150);
    kl_oip_request low = make_request("m", "", "", 1, 3), high = make_request("m", "", "", 1, 4);
    high.has_priority = 1;
    high.priority = 1;
    outcome_init(&o[1]);
    outcome_init(&o[2]);
    o[1].order = o[2].order = &order;
    kl_model_manager_infer(m, &low, on_done, &o[1]);
    kl_model_manager_infer(m, &high, on_done, &o[2]);
    wait_done(&o[1]);
    wait_done(&o[2]);
    wait_done(&busy);
    assert_int_equal(o[1].code, KL_GRPC_OK);
    assert_int_equal(o[2].code, KL_GRPC_OK);
    assert_true(o[2].rank < o[1].rank);
    kl_oip_request bad = make_request("m", "", "", 1, 5);
    bad.has_priority = 1;
    bad.priority = 3;
    infer_sync(m, &bad, &o[3]);
    assert_int_equal(o[3].code, KL_GRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(o[3].message, "priority 3"));
    kl_model_manager_free(m);
}

/* A queued request times out at its deadline, not when its batch would have gone. */
static void test_timeout_while_waiting_for_a_batch(void **state) {
    (void)state;
    kl_batch_opts b = kl_batch_opts_defaults();
    b.max_queue_delay_us = 2000000; /* a batch would wait 2 s to fill */
    b.max_batch = 64;
    kl_model_manager *m = manager_with_bundle(&b);
    kl_oip_request r = make_request("m", "", "", 1, 1);
    r.timeout_us = 1000;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    outcome o;
    infer_sync(m, &r, &o);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    printf("1 ms timeout answered after %.1f ms (batch delay 2000 ms)\n", ms);
    assert_int_equal(o.code, KL_GRPC_DEADLINE_EXCEEDED);
    assert_true(ms < 500);
    kl_model_manager_free(m);
}

static void test_unknown_model_and_version(void **state) {
    (void)state;
    kl_model_manager *m = manager_with_bundle(NULL);
    outcome o;
    kl_oip_request r = make_request("nope", "", "", 1, 1);
    infer_sync(m, &r, &o);
    assert_int_equal(o.code, KL_GRPC_NOT_FOUND);
    assert_non_null(strstr(o.message, "unknown model \"nope\""));
    r = make_request("m", "7", "", 1, 1);
    infer_sync(m, &r, &o);
    assert_int_equal(o.code, KL_GRPC_NOT_FOUND);
    assert_non_null(strstr(o.message, "version \"7\""));
    r = make_request("m", "1", "", 2, 1);
    infer_sync(m, &r, &o);
    assert_int_equal(o.code, KL_GRPC_OK);
    assert_string_equal(o.version, "1");
    assert_true(kl_model_manager_ready(m, "m", ""));
    assert_false(kl_model_manager_ready(m, "m", "2"));
    assert_int_equal(kl_model_manager_add(m, "m=/nonexistent"), KL_EINVAL); /* given twice */
    assert_int_not_equal(kl_model_manager_add(m, "x=/nonexistent/bundle"), KL_OK);
    assert_non_null(strstr(kl_errmsg(), "load model \"x\""));
    assert_int_equal(kl_model_manager_count(m), 1);
    assert_int_equal(kl_model_manager_unload(m, "m"), KL_GRPC_OK);
    r = make_request("m", "", "", 1, 1);
    infer_sync(m, &r, &o);
    assert_int_equal(o.code, KL_GRPC_NOT_FOUND);
    kl_model_manager_free(m);
}

/* --- the repository: swaps under load, broken versions, policies --------------------------------
 */

typedef struct {
    kl_model_manager *m;
    atomic_int stop;
    int ok, failed;
    char seen[4][32]; /* versions that answered */
    int n_seen;
} flow_arg;

static void *flow_thread(void *p) {
    flow_arg *a = p;
    for (int i = 0; !atomic_load(&a->stop); i++) {
        kl_oip_request r = make_request("repo", "", "", 1 + i % 3, i);
        outcome o;
        infer_sync(a->m, &r, &o);
        if (o.code != KL_GRPC_OK) {
            a->failed++;
            fprintf(stderr, "failed: %s\n", o.message);
            continue;
        }
        a->ok++;
        int known = 0;
        for (int k = 0; k < a->n_seen; k++)
            known |= !strcmp(a->seen[k], o.version);
        if (!known && a->n_seen < 4) snprintf(a->seen[a->n_seen++], 32, "%s", o.version);
    }
    return NULL;
}

static int has_entry(kl_model_manager *m, const char *version, const char *state) {
    kl_repo_entry *e = NULL;
    size_t n = 0;
    assert_int_equal(kl_model_manager_index(m, 0, &e, &n), KL_OK);
    int found = 0;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(e[i].name, "repo") && !strcmp(e[i].version, version) &&
            !strcmp(e[i].state, state)) {
            found = 1;
            if (*e[i].reason) printf("index: repo/%s %s: %s\n", version, state, e[i].reason);
        }
    free(e);
    return found;
}

static void test_repository_swap_under_load(void **state) {
    (void)state;
    char repo[1100], dir[1200];
    path(repo, sizeof repo, "repo");
    snprintf(dir, sizeof dir, "%s/repo/1", repo);
    save_bundle(dir, 11);
    kl_model_manager *m = manager(NULL, repo);
    assert_true(kl_model_manager_ready(m, "repo", "1"));
    flow_arg a;
    memset(&a, 0, sizeof a);
    a.m = m;
    atomic_init(&a.stop, 0);
    pthread_t t;
    pthread_create(&t, NULL, flow_thread, &a);
    usleep(50000);
    /* Version 2 appears: it loads and swaps in (latest policy), version 1 retires. */
    snprintf(dir, sizeof dir, "%s/repo/2", repo);
    save_bundle(dir, 22);
    assert_int_equal(kl_model_manager_load(m, "repo"), KL_GRPC_OK);
    usleep(50000);
    assert_true(kl_model_manager_ready(m, "repo", "2"));
    assert_false(kl_model_manager_ready(m, "repo", "1"));
    /* A broken version 3: reported, and version 2 keeps serving. */
    snprintf(dir, sizeof dir, "%s/repo/3", repo);
    assert_int_equal(kl_file_mkdirs(dir), KL_OK);
    snprintf(dir, sizeof dir, "%s/repo/3/kiln.json", repo);
    FILE *f = fopen(dir, "w");
    fputs("{ not json", f);
    fclose(f);
    kl_model_manager_load(m, "repo");
    usleep(50000);
    atomic_store(&a.stop, 1);
    pthread_join(t, NULL);
    printf("%d requests answered, %d failed, across the swap\n", a.ok, a.failed);
    assert_int_equal(a.failed, 0);
    assert_true(a.ok > 10);
    assert_true(a.n_seen == 2);
    assert_true(kl_model_manager_ready(m, "repo", "2"));
    assert_true(has_entry(m, "3", "UNAVAILABLE"));
    assert_true(has_entry(m, "2", "READY"));
    kl_model_manager_free(m);
}

static void test_polling_picks_up_new_version(void **state) {
    (void)state;
    char repo[1100], dir[1200];
    path(repo, sizeof repo, "polled");
    snprintf(dir, sizeof dir, "%s/repo/1", repo);
    save_bundle(dir, 11);
    kl_model_manager_opts o = kl_model_manager_defaults();
    o.repository = repo;
    o.poll_seconds = 0.1;
    o.policy.kind = KL_VERSIONS_ALL;
    kl_model_manager *m = NULL;
    assert_int_equal(kl_model_manager_create(&o, &m), KL_OK);
    assert_int_equal(kl_model_manager_start(m), KL_OK);
    snprintf(dir, sizeof dir, "%s/repo/4", repo);
    save_bundle(dir, 44);
    for (int i = 0; i < 100 && !kl_model_manager_ready(m, "repo", "4"); i++)
        usleep(20000);
    assert_true(kl_model_manager_ready(m, "repo", "4"));
    assert_true(kl_model_manager_ready(m, "repo", "1")); /* policy "all" keeps it */
    kl_model_info info;
    assert_int_equal(kl_model_manager_info(m, "repo", "", &info), KL_GRPC_OK);
    assert_int_equal(info.n_versions, 2);
    assert_string_equal(info.versions[0], "1");
    assert_string_equal(info.versions[1], "4");
    kl_model_info_free(&info);
    kl_model_manager_free(m);
}

/* --- traffic
 * -------------------------------------------------------------------------------------- */

static void test_canary_share_and_stickiness(void **state) {
    (void)state;
    char repo[1100], dir[1200];
    path(repo, sizeof repo, "canary");
    snprintf(dir, sizeof dir, "%s/repo/1", repo);
    save_bundle(dir, 11);
    snprintf(dir, sizeof dir, "%s/repo/2", repo);
    save_bundle(dir, 22);
    kl_model_manager_opts o = kl_model_manager_defaults();
    o.repository = repo;
    kl_model_manager *m = NULL;
    assert_int_equal(kl_model_manager_create(&o, &m), KL_OK);
    assert_int_equal(kl_model_manager_set_traffic(m, "repo", "canary", "2", 0.2), KL_OK);
    int to2 = 0;
    for (int i = 0; i < 2000; i++) {
        kl_oip_request r = make_request("repo", "", "", 1, i);
        outcome out;
        infer_sync(m, &r, &out);
        assert_int_equal(out.code, KL_GRPC_OK);
        to2 += !strcmp(out.version, "2");
    }
    printf("canary 0.2: %d of 2000 went to version 2\n", to2);
    assert_true(to2 >= 340 && to2 <= 460);
    /* With ids: the same id always lands on the same version; about the share overall. */
    int sticky_to2 = 0;
    for (int i = 0; i < 500; i++) {
        char id[32];
        snprintf(id, sizeof id, "user-%d", i);
        char first[32] = "";
        for (int k = 0; k < 3; k++) {
            kl_oip_request r = make_request("repo", "", id, 1, i);
            outcome out;
            infer_sync(m, &r, &out);
            if (k == 0)
                snprintf(first, sizeof first, "%s", out.version);
            else
                assert_string_equal(first, out.version);
        }
        sticky_to2 += !strcmp(first, "2");
    }
    printf("canary 0.2 by id: %d of 500 ids on version 2\n", sticky_to2);
    assert_true(sticky_to2 >= 60 && sticky_to2 <= 140);
    /* A named version bypasses the split. */
    kl_oip_request r = make_request("repo", "1", "", 1, 1);
    outcome out;
    infer_sync(m, &r, &out);
    assert_string_equal(out.version, "1");
    kl_model_manager_free(m);
}

static void test_shadow_compares_never_answers(void **state) {
    (void)state;
    char repo[1100], dir[1200];
    path(repo, sizeof repo, "shadow");
    snprintf(dir, sizeof dir, "%s/repo/1", repo);
    save_bundle(dir, 11);
    snprintf(dir, sizeof dir, "%s/repo/2", repo);
    save_bundle(dir, 11); /* the same weights: every row agrees */
    kl_model_manager_opts o = kl_model_manager_defaults();
    o.repository = repo;
    kl_model_manager *m = NULL;
    assert_int_equal(kl_model_manager_create(&o, &m), KL_OK);
    assert_int_equal(kl_model_manager_set_traffic(m, "repo", "shadow", "2", 0), KL_OK);
    for (int i = 0; i < 50; i++) {
        kl_oip_request r = make_request("repo", "", "", 2, i);
        outcome out;
        infer_sync(m, &r, &out);
        assert_int_equal(out.code, KL_GRPC_OK);
        assert_string_equal(out.version, "1");
    }
    usleep(100000); /* the shadow copies finish */
    kl_model_stats *s = NULL;
    size_t n = 0;
    assert_int_equal(kl_model_manager_stats(m, "repo", "2", &s, &n), KL_GRPC_OK);
    assert_int_equal(n, 1);
    assert_int_equal(s[0].success.count, 50); /* the challenger ran every copy */
    kl_model_stats_free(s, n);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    assert_int_equal(kl_model_manager_write_metrics(m, &buf, &len, &cap), KL_OK);
    assert_non_null(strstr(buf, "kiln_shadow_rows_total{model=\"repo\",outcome=\"agree\"} 100"));
    assert_non_null(strstr(buf, "kiln_inference_requests_success_total{model=\"repo\","
                                "version=\"1\"} 50"));
    free(buf);
    kl_model_manager_free(m);
}

static int setup(void **state) {
    (void)state;
    const char *base = getenv("KILN_TEST_TMP");
    if (!base || !*base) base = "/tmp";
    snprintf(tmp_root, sizeof tmp_root, "%s/test_model_manager_%d", base, (int)getpid());
    char dir[1100];
    path(dir, sizeof dir, "plain");
    save_bundle(dir, 777);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batched_equals_alone),
        cmocka_unit_test(test_queue_full_timeout_priority),
        cmocka_unit_test(test_timeout_while_waiting_for_a_batch),
        cmocka_unit_test(test_unknown_model_and_version),
        cmocka_unit_test(test_repository_swap_under_load),
        cmocka_unit_test(test_polling_picks_up_new_version),
        cmocka_unit_test(test_canary_share_and_stickiness),
        cmocka_unit_test(test_shadow_compares_never_answers),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
