/* ticker.c — see ticker.h. The wait is on a monotonic clock, so setting the wall clock does not
 * move the calls. */
#include "runtime/ticker.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct kl_ticker {
    double interval_s;     /* seconds between calls */
    void (*fn)(void *ctx); /* what is called */
    void *ctx;             /* its argument */
    pthread_mutex_t mu;    /* guards stop */
    pthread_cond_t cv;     /* wakes the thread to stop */
    int stop;              /* the thread should leave */
    pthread_t thread;      /* the calling thread */
};

static void *run(void *arg) {
    kl_ticker *t = arg;
    pthread_mutex_lock(&t->mu);
    while (!t->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        long long whole = (long long)t->interval_s;
        long long ns = until.tv_nsec + (long long)((t->interval_s - (double)whole) * 1e9);
        until.tv_sec += (time_t)(whole + ns / 1000000000LL);
        until.tv_nsec = (long)(ns % 1000000000LL);
        while (!t->stop && pthread_cond_timedwait(&t->cv, &t->mu, &until) != ETIMEDOUT) {
        }
        if (t->stop) break;
        pthread_mutex_unlock(&t->mu);
        t->fn(t->ctx);
        pthread_mutex_lock(&t->mu);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

kl_status kl_ticker_start(double interval_s, void (*fn)(void *ctx), void *ctx, kl_ticker **out) {
    *out = NULL;
    if (!(interval_s > 0) || !fn) return kl_seterr(KL_EINVAL, "ticker: interval %g s", interval_s);
    kl_ticker *t = calloc(1, sizeof *t);
    if (!t) return kl_seterr(KL_ENOMEM, "ticker: out of memory");
    t->interval_s = interval_s;
    t->fn = fn;
    t->ctx = ctx;
    pthread_mutex_init(&t->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cv, &ca);
    pthread_condattr_destroy(&ca);
    int err = pthread_create(&t->thread, NULL, run, t);
    if (err) {
        pthread_mutex_destroy(&t->mu);
        pthread_cond_destroy(&t->cv);
        free(t);
        return kl_seterr(KL_EIO, "ticker: cannot start a thread: %s", strerror(err));
    }
    *out = t;
    return KL_OK;
}

void kl_ticker_stop(kl_ticker *t) {
    if (!t) return;
    pthread_mutex_lock(&t->mu);
    t->stop = 1;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->thread, NULL);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t);
}
