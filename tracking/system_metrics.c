/* system_metrics.c — CPU and memory from /proc, GPUs through NVML opened with dlopen. */
#include "tracking/system_metrics.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/ticker.h" /* the sampling thread */

#define MAX_GPUS 16

/* The few NVML entry points used, resolved at run time (nvml.h is not needed to build). */
typedef struct {
    unsigned int gpu, memory;
} nvml_util;
typedef struct {
    unsigned long long total, free, used;
} nvml_mem;
typedef struct {
    void *lib;                            /* libnvidia-ml handle */
    int (*init)(void);                    /* nvmlInit_v2 */
    int (*shutdown)(void);                /* nvmlShutdown */
    int (*count)(unsigned int *);         /* nvmlDeviceGetCount_v2 */
    int (*handle)(unsigned int, void **); /* nvmlDeviceGetHandleByIndex_v2 */
    int (*util)(void *, nvml_util *);     /* nvmlDeviceGetUtilizationRates */
    int (*mem)(void *, nvml_mem *);       /* nvmlDeviceGetMemoryInfo */
    unsigned int n;                       /* devices */
} nvml_api;

struct kl_sysmetrics {
    kl_tracker *t;                            /* where samples go */
    double interval_s;                        /* seconds between samples */
    kl_ticker *ticker;                        /* samples every interval */
    int64_t step;                             /* samples taken */
    unsigned long long prev_busy, prev_total; /* last /proc/stat reading */
    nvml_api nv;                              /* NVML, or lib == NULL */
};

static void nvml_open(nvml_api *nv) {
    memset(nv, 0, sizeof *nv);
    nv->lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!nv->lib) return;
    *(void **)&nv->init = dlsym(nv->lib, "nvmlInit_v2");
    *(void **)&nv->shutdown = dlsym(nv->lib, "nvmlShutdown");
    *(void **)&nv->count = dlsym(nv->lib, "nvmlDeviceGetCount_v2");
    *(void **)&nv->handle = dlsym(nv->lib, "nvmlDeviceGetHandleByIndex_v2");
    *(void **)&nv->util = dlsym(nv->lib, "nvmlDeviceGetUtilizationRates");
    *(void **)&nv->mem = dlsym(nv->lib, "nvmlDeviceGetMemoryInfo");
    if (!nv->init || !nv->count || !nv->handle || !nv->util || !nv->mem || nv->init() != 0 ||
        nv->count(&nv->n) != 0) {
        dlclose(nv->lib);
        memset(nv, 0, sizeof *nv);
        return;
    }
    if (nv->n > MAX_GPUS) nv->n = MAX_GPUS;
}

static int read_cpu(unsigned long long *busy, unsigned long long *total) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 4) return -1;
    *total = 0;
    for (int i = 0; i < 8; i++)
        *total += v[i];
    *busy = *total - v[3] - v[4]; /* minus idle and iowait */
    return 0;
}

static void sample(kl_sysmetrics *s) {
    unsigned long long busy, total;
    if (read_cpu(&busy, &total) == 0) {
        if (s->prev_total && total > s->prev_total)
            kl_tracker_metric(
                s->t, "system/cpu_utilization_percentage",
                100.0 * (double)(busy - s->prev_busy) / (double)(total - s->prev_total), s->step);
        s->prev_busy = busy;
        s->prev_total = total;
    }
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        double total_kb = 0, avail_kb = 0;
        while (fgets(line, sizeof line, f)) {
            sscanf(line, "MemTotal: %lf kB", &total_kb);
            sscanf(line, "MemAvailable: %lf kB", &avail_kb);
        }
        fclose(f);
        if (total_kb > 0) {
            double used = total_kb - avail_kb;
            kl_tracker_metric(s->t, "system/system_memory_usage_megabytes", used / 1024.0, s->step);
            kl_tracker_metric(s->t, "system/system_memory_usage_percentage",
                              100.0 * used / total_kb, s->step);
        }
    }
    for (unsigned int i = 0; i < s->nv.n; i++) {
        void *h = NULL;
        nvml_util u;
        nvml_mem m;
        char key[96];
        if (s->nv.handle(i, &h) != 0) continue;
        if (s->nv.util(h, &u) == 0) {
            snprintf(key, sizeof key, "system/gpu_%u_utilization_percentage", i);
            kl_tracker_metric(s->t, key, u.gpu, s->step);
        }
        if (s->nv.mem(h, &m) == 0 && m.total) {
            snprintf(key, sizeof key, "system/gpu_%u_memory_usage_megabytes", i);
            kl_tracker_metric(s->t, key, (double)m.used / (1024.0 * 1024.0), s->step);
            snprintf(key, sizeof key, "system/gpu_%u_memory_usage_percentage", i);
            kl_tracker_metric(s->t, key, 100.0 * (double)m.used / (double)m.total, s->step);
        }
    }
    s->step++;
}

static void tick(void *s) {
    sample(s);
}

kl_status kl_sysmetrics_start(kl_tracker *t, double interval_s, kl_sysmetrics **out) {
    *out = NULL;
    kl_sysmetrics *s = calloc(1, sizeof *s);
    if (!s) return kl_seterr(KL_ENOMEM, "system metrics");
    s->t = t;
    s->interval_s = interval_s > 0 ? interval_s : 10.0;
    nvml_open(&s->nv);
    sample(s); /* the first sample now (and the /proc/stat baseline), then every interval */
    kl_status st = kl_ticker_start(s->interval_s, tick, s, &s->ticker);
    if (st != KL_OK) {
        if (s->nv.lib) {
            if (s->nv.shutdown) s->nv.shutdown();
            dlclose(s->nv.lib);
        }
        free(s);
        return kl_preferr(st, "system metrics");
    }
    *out = s;
    return KL_OK;
}

void kl_sysmetrics_stop(kl_sysmetrics *s) {
    if (!s) return;
    kl_ticker_stop(s->ticker);
    sample(s);
    if (s->nv.lib) {
        if (s->nv.shutdown) s->nv.shutdown();
        dlclose(s->nv.lib);
    }
    free(s);
}
