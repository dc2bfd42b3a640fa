/* batcher.c — queue, batch, run, split (see batcher.h).
 *
 * One mutex guards the queues, the job pool and the statistics; instance threads hold it only
 * to take a batch and to account for it, never while the model runs or callbacks execute.
 */
#include "serving/batcher.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/ops.h"   /* kl_cpu_adopt_threads */
#include "runtime/model.h" /* kl_mlp: each instance's model and arena */

#define MAX_LEVELS 16 /* priority levels a batcher supports */

typedef struct job {
    kl_oip_request req;    /* the request, owned */
    kl_infer_done_fn done; /* its callback */
    void *user;            /* the callback's context */
    uint64_t enq_ns;       /* when it was queued (CLOCK_MONOTONIC) */
    uint64_t deadline_ns;  /* when it expires in the queue; 0 = never */
    struct job *next;      /* next in its queue, or in the free pool */
} job;

typedef struct {
    kl_batcher *bt;   /* the batcher it serves */
    kl_mlp mlp;       /* this instance's model and activation arena */
    float *x;         /* max_batch x features: the batch's input */
    float *probs;     /* max_batch x classes: its probabilities */
    int64_t *classes; /* max_batch: its arg-max classes */
    job **batch;      /* the jobs of the batch running */
    pthread_t thread; /* the instance thread */
    int started;      /* whether thread was started */
    int busy;         /* running a batch (on its thread, or lent to a submitter), under mu */
} instance;

typedef struct {
    uint64_t count, input_ns, infer_ns, output_ns; /* batches of this size and their stages */
} size_stats;

struct kl_batcher {
    const kl_bundle *b;     /* the model, borrowed */
    kl_batch_opts o;        /* batching options */
    char model[128];        /* model name, for messages */
    char version[32];       /* version label of the results */
    int64_t F, C;           /* features in, classes out */
    pthread_mutex_t mu;     /* guards everything below */
    pthread_cond_t cv;      /* signalled on a new job or on stop */
    job *head[MAX_LEVELS];  /* per priority level (0 = highest), FIFO */
    job *tail[MAX_LEVELS];  /* last job of each level */
    uint32_t queued;        /* jobs queued */
    int64_t queued_rows;    /* their rows */
    uint32_t with_deadline; /* queued jobs that can expire */
    int stopping;           /* no more submits; instances leave once the queue is empty */
    job *pool;              /* recycled jobs */
    instance *inst;         /* the instances */
    int n_inst;             /* entries in inst */
    kl_batch_observer obs;  /* observer of finished batches, or NULL */
    void *obs_ctx;          /* its context */
    /* statistics (under mu) */
    uint64_t last_ms, inference_count, execution_count;
    kl_stat_duration success, fail, queue, c_in, c_infer, c_out;
    size_stats *by_size; /* [max_batch + 1] */
};

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

static uint64_t epoch_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000ULL + (uint64_t)t.tv_nsec / 1000000ULL;
}

/* Answers a request that will not run: code and message, then frees it. */
static void fail_now(kl_batcher *bt, kl_oip_request *req, kl_infer_done_fn done, void *user,
                     kl_grpc_code code, const char *msg) {
    kl_infer_result res;
    memset(&res, 0, sizeof res);
    res.code = code;
    res.message = msg;
    res.version = bt->version;
    done(user, req, &res);
    kl_oip_request_free(req);
}

static void run_batch(kl_batcher *bt, instance *in, int n, int64_t rows);
static int take_batch(kl_batcher *bt, instance *in, int64_t *rows_out);

/* --- submitting ---------------------------------------------------------------------------------
 */

void kl_batcher_submit(kl_batcher *bt, kl_oip_request *req, kl_infer_done_fn done, void *user) {
    char msg[320];
    uint32_t levels = bt->o.priority_levels;
    uint64_t prio = req->has_priority && req->priority ? req->priority : bt->o.default_priority;
    if (prio < 1 || prio > levels) {
        snprintf(msg, sizeof msg,
                 "model \"%s\" version %s: priority %llu is outside 1..%u (its priority levels)",
                 bt->model, bt->version, (unsigned long long)prio, levels);
        fail_now(bt, req, done, user, KL_GRPC_INVALID_ARGUMENT, msg);
        return;
    }
    uint64_t t = now_ns();
    uint64_t timeout_us =
        req->timeout_us > 0 ? (uint64_t)req->timeout_us : bt->o.default_timeout_us;
    pthread_mutex_lock(&bt->mu);
    if (bt->stopping) {
        pthread_mutex_unlock(&bt->mu);
        snprintf(msg, sizeof msg, "model \"%s\" version %s is unloading", bt->model, bt->version);
        fail_now(bt, req, done, user, KL_GRPC_UNAVAILABLE, msg);
        return;
    }
    if (bt->o.max_queue_size && bt->queued >= bt->o.max_queue_size) {
        uint32_t q = bt->queued;
        pthread_mutex_unlock(&bt->mu);
        snprintf(msg, sizeof msg,
                 "model \"%s\" version %s: queue full (%u requests waiting, max_queue_size %u)",
                 bt->model, bt->version, q, bt->o.max_queue_size);
        fail_now(bt, req, done, user, KL_GRPC_RESOURCE_EXHAUSTED, msg);
        return;
    }
    job *j = bt->pool;
    if (j) {
        bt->pool = j->next;
    } else if (!(j = malloc(sizeof *j))) {
        pthread_mutex_unlock(&bt->mu);
        fail_now(bt, req, done, user, KL_GRPC_RESOURCE_EXHAUSTED, "out of memory queueing");
        return;
    }
    j->req = *req;
    memset(req, 0, sizeof *req);
    j->done = done;
    j->user = user;
    j->enq_ns = t;
    j->deadline_ns = timeout_us ? t + timeout_us * 1000ULL : 0;
    j->next = NULL;
    int lv = (int)prio - 1;
    if (bt->tail[lv])
        bt->tail[lv]->next = j;
    else
        bt->head[lv] = j;
    bt->tail[lv] = j;
    bt->queued++;
    bt->queued_rows += j->req.batch;
    if (j->deadline_ns) bt->with_deadline++;
    /* An instance idle and no queue delay to wait out: the submitting thread runs the next batch
     * itself (its request and whatever queued with it) instead of waking the instance's thread —
     * a futex wake and two context switches, tens of microseconds, saved per batch. Under load
     * the submitters take turns at it, and batches still form from what queued meanwhile. */
    if (!bt->o.dynamic || bt->o.max_queue_delay_us == 0)
        for (int i = 0; i < bt->n_inst; i++) {
            instance *in = &bt->inst[i];
            if (in->busy) continue;
            int64_t rows = 0;
            in->busy = 1;
            int n = take_batch(bt, in, &rows);
            pthread_mutex_unlock(&bt->mu);
            run_batch(bt, in, n, rows);
            return;
        }
    pthread_cond_signal(&bt->cv);
    pthread_mutex_unlock(&bt->mu);
}

/* --- forming batches ----------------------------------------------------------------------------
 */

/* Unlinks every queued job whose deadline has passed onto *expired (under mu). */
static void take_expired(kl_batcher *bt, uint64_t now, job **expired) {
    if (!bt->with_deadline) return;
    for (uint32_t lv = 0; lv < bt->o.priority_levels; lv++) {
        job *prev = NULL, *j = bt->head[lv];
        while (j) {
            job *next = j->next;
            if (j->deadline_ns && j->deadline_ns <= now) {
                if (prev)
                    prev->next = next;
                else
                    bt->head[lv] = next;
                if (bt->tail[lv] == j) bt->tail[lv] = prev;
                bt->queued--;
                bt->queued_rows -= j->req.batch;
                bt->with_deadline--;
                j->next = *expired;
                *expired = j;
            } else {
                prev = j;
            }
            j = next;
        }
    }
}

/* When the oldest queued job was queued (under mu; queue not empty). */
static uint64_t oldest_enq(const kl_batcher *bt) {
    uint64_t t = UINT64_MAX;
    for (uint32_t lv = 0; lv < bt->o.priority_levels; lv++)
        if (bt->head[lv] && bt->head[lv]->enq_ns < t) t = bt->head[lv]->enq_ns;
    return t;
}

/* The earliest deadline among queued jobs (under mu), UINT64_MAX when none can expire. */
static uint64_t earliest_deadline(const kl_batcher *bt) {
    uint64_t t = UINT64_MAX;
    if (!bt->with_deadline) return t;
    for (uint32_t lv = 0; lv < bt->o.priority_levels; lv++)
        for (const job *j = bt->head[lv]; j; j = j->next)
            if (j->deadline_ns && j->deadline_ns < t) t = j->deadline_ns;
    return t;
}

/* Whether a batch should go now (under mu; queue not empty). */
static int batch_ready(const kl_batcher *bt, uint64_t now) {
    const kl_batch_opts *o = &bt->o;
    if (!o->dynamic || bt->stopping || o->max_queue_delay_us == 0) return 1;
    if (bt->queued_rows >= o->max_batch) return 1;
    for (int i = 0; i < o->n_preferred; i++)
        if (bt->queued_rows == o->preferred[i]) return 1;
    if (o->n_preferred && bt->queued_rows >= o->preferred[o->n_preferred - 1]) return 1;
    return now >= oldest_enq(bt) + o->max_queue_delay_us * 1000ULL;
}

/* Pops the jobs of the next batch into in->batch (under mu). Returns how many. */
static int take_batch(kl_batcher *bt, instance *in, int64_t *rows_out) {
    int n = 0;
    int64_t rows = 0;
    for (uint32_t lv = 0; lv < bt->o.priority_levels; lv++) {
        while (bt->head[lv] &&
               (n == 0 || (bt->o.dynamic && rows + bt->head[lv]->req.batch <= bt->o.max_batch))) {
            job *j = bt->head[lv];
            bt->head[lv] = j->next;
            if (!j->next) bt->tail[lv] = NULL;
            j->next = NULL;
            bt->queued--;
            bt->queued_rows -= j->req.batch;
            if (j->deadline_ns) bt->with_deadline--;
            rows += j->req.batch;
            in->batch[n++] = j;
        }
        if (n && (!bt->o.dynamic || rows >= bt->o.max_batch)) break;
    }
    *rows_out = rows;
    return n;
}

/* Returns jobs to the pool (their requests already freed), under mu. */
static void recycle(kl_batcher *bt, job **jobs, int n) {
    for (int i = 0; i < n; i++) {
        jobs[i]->next = bt->pool;
        bt->pool = jobs[i];
    }
}

static void add(kl_stat_duration *d, uint64_t count, uint64_t ns) {
    d->count += count;
    d->ns += ns;
}

/* --- running a batch
 * ------------------------------------------------------------------------------ */

/* Answers expired jobs (outside mu) and recycles them. */
static void answer_expired(kl_batcher *bt, job *expired, uint64_t now) {
    char msg[320];
    uint64_t n = 0, ns = 0;
    for (job *j = expired; j; j = j->next) {
        n++;
        ns += now - j->enq_ns;
    }
    pthread_mutex_lock(&bt->mu); /* counted before the answers go out, as in run_batch */
    add(&bt->fail, n, ns);
    pthread_mutex_unlock(&bt->mu);
    for (job *j = expired; j; j = j->next) {
        snprintf(msg, sizeof msg,
                 "model \"%s\" version %s: request timed out after %.3f ms in the queue", bt->model,
                 bt->version, (double)(now - j->enq_ns) / 1e6);
        kl_infer_result res;
        memset(&res, 0, sizeof res);
        res.code = KL_GRPC_DEADLINE_EXCEEDED;
        res.message = msg;
        res.version = bt->version;
        j->done(j->user, &j->req, &res);
        kl_oip_request_free(&j->req);
    }
    pthread_mutex_lock(&bt->mu);
    while (expired) {
        job *next = expired->next;
        expired->next = bt->pool;
        bt->pool = expired;
        expired = next;
    }
    pthread_mutex_unlock(&bt->mu);
}

static void run_batch(kl_batcher *bt, instance *in, int n, int64_t rows) {
    const int64_t F = bt->F, C = bt->C;
    kl_cpu_adopt_threads(); /* instance threads and lending submitters alike */
    uint64_t t0 = now_ns();
    /* A lone request runs on its own rows (its private copy) when no transform rewrites them;
     * otherwise rows are gathered first, so the request keeps its rows as sent (the
     * prediction log and monitors read them after the batch). */
    float *x = in->x;
    if (n == 1 && !strcmp(bt->b->transform, "none")) {
        x = in->batch[0]->req.rows;
    } else {
        int64_t off = 0;
        for (int i = 0; i < n; i++) {
            const kl_oip_request *r = &in->batch[i]->req;
            memcpy(x + off * F, r->rows, (size_t)(r->batch * F) * sizeof(float));
            off += r->batch;
        }
    }
    kl_bundle_apply_transform(bt->b, x, rows);
    uint64_t t1 = now_ns();
    kl_status st = kl_mlp_predict(&in->mlp, x, rows, in->probs);
    char msg[512];
    if (st != KL_OK)
        snprintf(msg, sizeof msg, "model \"%s\" version %s: %s", bt->model, bt->version,
                 kl_errmsg());
    else
        for (int64_t r = 0; r < rows; r++) {
            const float *p = in->probs + r * C;
            int64_t best = 0;
            for (int64_t c = 1; c < C; c++)
                if (p[c] > p[best]) best = c;
            in->classes[r] = best;
        }
    uint64_t t2 = now_ns();
    uint64_t in_ns = t1 - t0, inf_ns = t2 - t1;
    /* Counted before any answer goes out, so a client that asks for statistics after its
     * response sees its request; the answering time (the output stage) is added after. */
    uint64_t req_ns = 0, queue_ns = 0;
    for (int i = 0; i < n; i++) {
        req_ns += t2 - in->batch[i]->enq_ns;
        queue_ns += t0 - in->batch[i]->enq_ns;
    }
    pthread_mutex_lock(&bt->mu);
    if (st == KL_OK) {
        add(&bt->success, (uint64_t)n, req_ns);
        add(&bt->queue, (uint64_t)n, queue_ns);
        /* Triton counts compute stages once per request, each with the batch's duration. */
        add(&bt->c_in, (uint64_t)n, in_ns * (uint64_t)n);
        add(&bt->c_infer, (uint64_t)n, inf_ns * (uint64_t)n);
        add(&bt->c_out, (uint64_t)n, 0);
        bt->inference_count += (uint64_t)rows;
        bt->execution_count++;
        size_stats *s = &bt->by_size[rows];
        s->count++;
        s->input_ns += in_ns;
        s->infer_ns += inf_ns;
        bt->last_ms = epoch_ms();
    } else {
        add(&bt->fail, (uint64_t)n, req_ns);
    }
    pthread_mutex_unlock(&bt->mu);
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        job *j = in->batch[i];
        kl_infer_result res;
        memset(&res, 0, sizeof res);
        res.version = bt->version;
        if (st == KL_OK) {
            res.code = KL_GRPC_OK;
            res.probs = in->probs + off * C;
            res.classes = in->classes + off;
            res.batch = j->req.batch;
            res.n_classes = C;
            res.queue_ns = t0 - j->enq_ns;
            res.compute_ns = t2 - t0;
        } else {
            res.code = KL_GRPC_INTERNAL;
            res.message = msg;
        }
        off += j->req.batch;
        j->done(j->user, &j->req, &res);
        kl_oip_request_free(&j->req);
    }
    uint64_t out_ns = now_ns() - t2;
    /* The callbacks above may have dropped the last reference to this version: its batcher is
     * then being freed, but kl_batcher_free waits until this instance is no longer busy, so bt
     * stays valid until the unlock below — and is not touched after it. */
    if (bt->obs && st == KL_OK) bt->obs(bt->obs_ctx, rows, in_ns, inf_ns, out_ns);
    pthread_mutex_lock(&bt->mu);
    if (st == KL_OK) {
        bt->success.ns += out_ns * (uint64_t)n;
        bt->c_out.ns += out_ns * (uint64_t)n;
        bt->by_size[rows].output_ns += out_ns;
    } else {
        bt->fail.ns += out_ns * (uint64_t)n;
    }
    recycle(bt, in->batch, n);
    in->busy = 0;
    /* Wakes instances waiting for this one (it may have been lent while requests queued) and
     * kl_batcher_free waiting for every instance to be idle. */
    pthread_cond_broadcast(&bt->cv);
    pthread_mutex_unlock(&bt->mu);
}

static void *instance_main(void *arg) {
    instance *in = arg;
    kl_batcher *bt = in->bt;
    for (;;) {
        pthread_mutex_lock(&bt->mu);
        job *expired = NULL;
        int n = 0;
        int64_t rows = 0;
        for (;;) {
            while ((!bt->queued && !bt->stopping) || in->busy)
                pthread_cond_wait(&bt->cv, &bt->mu);
            if (!bt->queued) break; /* stopping, nothing left */
            uint64_t now = now_ns();
            take_expired(bt, now, &expired);
            if (expired) break;
            if (!bt->queued) continue;
            if (batch_ready(bt, now)) {
                n = take_batch(bt, in, &rows);
                in->busy = 1;
                break;
            }
            /* Wait for more requests, at most until the oldest one's delay is up or the first
             * deadline passes (that request is answered then, not when its batch would go). */
            uint64_t until = oldest_enq(bt) + bt->o.max_queue_delay_us * 1000ULL;
            uint64_t first_deadline = earliest_deadline(bt);
            if (first_deadline < until) until = first_deadline;
            struct timespec mono;
            clock_gettime(CLOCK_MONOTONIC, &mono);
            uint64_t wait_ns = until > now ? until - now : 0;
            uint64_t abs_ns =
                (uint64_t)mono.tv_sec * 1000000000ULL + (uint64_t)mono.tv_nsec + wait_ns;
            struct timespec ts = {(time_t)(abs_ns / 1000000000ULL), (long)(abs_ns % 1000000000ULL)};
            pthread_cond_timedwait(&bt->cv, &bt->mu, &ts);
        }
        int leave = !n && !expired;
        pthread_mutex_unlock(&bt->mu);
        if (expired) {
            answer_expired(bt, expired, now_ns());
            continue;
        }
        if (leave) return NULL;
        run_batch(bt, in, n, rows);
    }
}

/* --- lifecycle
 * ------------------------------------------------------------------------------------ */

static void instance_release(instance *in) {
    kl_mlp_free(&in->mlp);
    free(in->x);
    free(in->probs);
    free(in->classes);
    free(in->batch);
}

kl_status kl_batcher_create(const kl_bundle *b, kl_device dev, const kl_batch_opts *opts,
                            const char *model, const char *version, kl_batcher **out) {
    *out = NULL;
    if (opts->max_batch < 1)
        return kl_seterr(KL_EINVAL, "max_batch_size %d must be >= 1", opts->max_batch);
    if (opts->priority_levels < 1 || opts->priority_levels > MAX_LEVELS)
        return kl_seterr(KL_EINVAL, "priority levels %u must be in 1..%d", opts->priority_levels,
                         MAX_LEVELS);
    if (opts->default_priority < 1 || opts->default_priority > opts->priority_levels)
        return kl_seterr(KL_EINVAL, "default priority %u must be in 1..%u", opts->default_priority,
                         opts->priority_levels);
    if (opts->instances < 1 || opts->instances > 64)
        return kl_seterr(KL_EINVAL, "instances %d must be in 1..64", opts->instances);
    for (int i = 0; i < opts->n_preferred; i++)
        if (opts->preferred[i] < 1 || opts->preferred[i] > opts->max_batch ||
            (i && opts->preferred[i] <= opts->preferred[i - 1]))
            return kl_seterr(KL_EINVAL,
                             "preferred batch sizes must ascend within 1..max_batch_size (%d)",
                             opts->max_batch);
    kl_batcher *bt = calloc(1, sizeof *bt);
    if (!bt) return kl_seterr(KL_ENOMEM, "batcher: out of memory");
    bt->b = b;
    bt->o = *opts;
    snprintf(bt->model, sizeof bt->model, "%s", model);
    snprintf(bt->version, sizeof bt->version, "%s", version);
    bt->F = b->n_features;
    bt->C = b->spec.dims[b->spec.n_layers];
    pthread_mutex_init(&bt->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&bt->cv, &ca);
    pthread_condattr_destroy(&ca);
    bt->by_size = calloc((size_t)opts->max_batch + 1, sizeof *bt->by_size);
    bt->inst = calloc((size_t)opts->instances, sizeof *bt->inst);
    if (!bt->by_size || !bt->inst) {
        kl_batcher_free(bt);
        return kl_seterr(KL_ENOMEM, "batcher: out of memory");
    }
    size_t mb = (size_t)opts->max_batch;
    for (int i = 0; i < opts->instances; i++) {
        instance *in = &bt->inst[i];
        in->bt = bt;
        bt->n_inst = i + 1;
        kl_status st = kl_mlp_create(&in->mlp, &b->spec, dev, opts->max_batch, KL_PREC_FP32);
        if (st == KL_OK)
            st = kl_dev_copy_from_host(dev, in->mlp.params, b->params,
                                       (size_t)b->n_params * sizeof(float));
        if (st != KL_OK) {
            kl_batcher_free(bt);
            return kl_preferr(st, "model instance %d", i);
        }
        in->x = malloc(mb * (size_t)bt->F * sizeof(float));
        in->probs = malloc(mb * (size_t)bt->C * sizeof(float));
        in->classes = malloc(mb * sizeof(int64_t));
        in->batch = malloc(mb * sizeof(job *));
        if (!in->x || !in->probs || !in->classes || !in->batch) {
            kl_batcher_free(bt);
            return kl_seterr(KL_ENOMEM, "model instance %d: out of memory", i);
        }
    }
    for (int i = 0; i < bt->n_inst; i++) {
        int err = pthread_create(&bt->inst[i].thread, NULL, instance_main, &bt->inst[i]);
        if (err) {
            kl_batcher_free(bt);
            return kl_seterr(KL_EINTERNAL, "model instance %d: cannot start thread: %s", i,
                             strerror(err));
        }
        bt->inst[i].started = 1;
    }
    *out = bt;
    return KL_OK;
}

void kl_batcher_observe(kl_batcher *bt, kl_batch_observer fn, void *ctx) {
    bt->obs = fn;
    bt->obs_ctx = ctx;
}

uint32_t kl_batcher_queued(kl_batcher *bt) {
    pthread_mutex_lock(&bt->mu);
    uint32_t q = bt->queued;
    pthread_mutex_unlock(&bt->mu);
    return q;
}

kl_status kl_batcher_stats(kl_batcher *bt, kl_model_stats *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->version, sizeof out->version, "%s", bt->version);
    pthread_mutex_lock(&bt->mu);
    size_t sizes = 0;
    for (int i = 0; i <= bt->o.max_batch; i++)
        sizes += bt->by_size[i].count > 0;
    out->batch_sizes = sizes ? calloc(sizes, sizeof *out->batch_sizes) : NULL;
    if (sizes && !out->batch_sizes) {
        pthread_mutex_unlock(&bt->mu);
        return kl_seterr(KL_ENOMEM, "statistics: out of memory");
    }
    for (int i = 0; i <= bt->o.max_batch; i++) {
        const size_stats *s = &bt->by_size[i];
        if (!s->count) continue;
        kl_batch_size_stats *e = &out->batch_sizes[out->n_batch_sizes++];
        e->batch_size = (uint64_t)i;
        e->compute_input = (kl_stat_duration){s->count, s->input_ns};
        e->compute_infer = (kl_stat_duration){s->count, s->infer_ns};
        e->compute_output = (kl_stat_duration){s->count, s->output_ns};
    }
    out->last_inference_ms = bt->last_ms;
    out->inference_count = bt->inference_count;
    out->execution_count = bt->execution_count;
    out->success = bt->success;
    out->fail = bt->fail;
    out->queue = bt->queue;
    out->compute_input = bt->c_in;
    out->compute_infer = bt->c_infer;
    out->compute_output = bt->c_out;
    pthread_mutex_unlock(&bt->mu);
    return KL_OK;
}

void kl_batcher_free(kl_batcher *bt) {
    if (!bt) return;
    pthread_mutex_lock(&bt->mu);
    bt->stopping = 1;
    pthread_cond_broadcast(&bt->cv);
    /* An instance lent to a submitting thread may still be finishing the batch whose callbacks
     * dropped the last reference to this version: wait until it is done with bt. */
    for (int i = 0; i < bt->n_inst; i++)
        while (bt->inst[i].busy)
            pthread_cond_wait(&bt->cv, &bt->mu);
    pthread_mutex_unlock(&bt->mu);
    for (int i = 0; i < bt->n_inst; i++)
        if (bt->inst[i].started) pthread_join(bt->inst[i].thread, NULL);
    for (int i = 0; i < bt->n_inst; i++)
        instance_release(&bt->inst[i]);
    while (bt->pool) {
        job *next = bt->pool->next;
        free(bt->pool);
        bt->pool = next;
    }
    pthread_mutex_destroy(&bt->mu);
    pthread_cond_destroy(&bt->cv);
    free(bt->inst);
    free(bt->by_size);
    free(bt);
}
