/* metrics.c — the Prometheus registry: families under a mutex, children updated with atomics.
 * See metrics.h. */
#include "serving/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KL_METRICS_MAX_BOUNDS 64
#define KL_METRICS_MAX_LABELS 16

typedef enum { FAM_COUNTER, FAM_GAUGE, FAM_HISTOGRAM } fam_type;

/* One labelled child. kl_counter, kl_gauge and kl_histogram are all this struct: the family's
 * type says which fields are used. */
typedef struct child {
    char **values;            /* label values, n_labels of them (owned) */
    atomic_int hidden;        /* 1 after kl_metrics_remove matched it */
    _Atomic uint64_t value;   /* counter / gauge: the double's bit pattern */
    _Atomic uint64_t sum;     /* histogram: the sum's bit pattern */
    _Atomic uint64_t *counts; /* histogram: per-bucket (not cumulative) counts, n_bounds + 1 */
    const double *bounds;     /* histogram: the family's bounds (not owned) */
    size_t n_bounds;          /* histogram: entries in bounds */
} child;

struct kl_counter {
    child c;
};
struct kl_gauge {
    child c;
};
struct kl_histogram {
    child c;
};

typedef struct {
    char *name;          /* metric name (owned) */
    char *help;          /* help text (owned) */
    fam_type type;       /* what its children are */
    char **label_names;  /* n_labels names (owned) */
    size_t n_labels;     /* labels per child */
    double *bounds;      /* histogram upper bounds, ascending (owned) */
    size_t n_bounds;     /* entries in bounds */
    child **children;    /* in creation order (owned) */
    size_t n_children;   /* entries used */
    size_t cap_children; /* entries allocated */
} family;

struct kl_metrics {
    pthread_mutex_t mu;  /* guards the family and children lists, not the values */
    family **families;   /* in creation order (owned) */
    size_t n_families;   /* entries used */
    size_t cap_families; /* entries allocated */
};

/* --- atomics on doubles ---------------------------------------------------------------------- */

static uint64_t dbits(double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

static double bitsd(uint64_t u) {
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* Adds v to the double held in *a; lock-free (a CAS loop retries only under contention). */
static void atomic_add_double(_Atomic uint64_t *a, double v) {
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(a, &old, dbits(bitsd(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

void kl_counter_add(kl_counter *c, double v) {
    if (!c || !(v >= 0)) return; /* also drops NaN */
    atomic_add_double(&c->c.value, v);
}

void kl_gauge_set(kl_gauge *g, double v) {
    if (g) atomic_store_explicit(&g->c.value, dbits(v), memory_order_relaxed);
}

void kl_gauge_add(kl_gauge *g, double v) {
    if (g) atomic_add_double(&g->c.value, v);
}

void kl_histogram_observe(kl_histogram *h, double v) {
    if (!h || isnan(v)) return;
    size_t i = 0;
    while (i < h->c.n_bounds && v > h->c.bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->c.counts[i], 1, memory_order_relaxed);
    atomic_add_double(&h->c.sum, v);
}

double kl_counter_get(const kl_counter *c) {
    return c ? bitsd(atomic_load_explicit(&((kl_counter *)c)->c.value, memory_order_relaxed)) : 0;
}

void kl_gauge_hide(kl_gauge *g, int hidden) {
    if (g) atomic_store(&g->c.hidden, hidden ? 1 : 0);
}

double kl_gauge_get(const kl_gauge *g) {
    return g ? bitsd(atomic_load_explicit(&((kl_gauge *)g)->c.value, memory_order_relaxed)) : 0;
}

/* --- the registry ---------------------------------------------------------------------------- */

kl_status kl_metrics_create(kl_metrics **out) {
    kl_metrics *r = calloc(1, sizeof *r);
    if (!r) return kl_seterr(KL_ENOMEM, "metrics registry: out of memory");
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        free(r);
        return kl_seterr(KL_EINTERNAL, "metrics registry: mutex init failed");
    }
    *out = r;
    return KL_OK;
}

static void free_strings(char **s, size_t n) {
    for (size_t i = 0; s && i < n; i++)
        free(s[i]);
    free(s);
}

static void free_child(child *c, size_t n_labels) {
    if (!c) return;
    free_strings(c->values, n_labels);
    free((void *)c->counts);
    free(c);
}

static void free_family(family *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n_children; i++)
        free_child(f->children[i], f->n_labels);
    free(f->children);
    free(f->name);
    free(f->help);
    free_strings(f->label_names, f->n_labels);
    free(f->bounds);
    free(f);
}

void kl_metrics_free(kl_metrics *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_families; i++)
        free_family(r->families[i]);
    free(r->families);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* Prometheus syntax: metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label names without the colon. */
static int valid_name(const char *s, int allow_colon) {
    if (!s || !*s) return 0;
    for (const char *p = s; *p; p++) {
        int c = (unsigned char)*p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (allow_colon && c == ':') || (p > s && c >= '0' && c <= '9');
        if (!ok) return 0;
    }
    return 1;
}

static char **dup_strings(const char *const *s, size_t n) {
    char **d = calloc(n ? n : 1, sizeof *d);
    if (!d) return NULL;
    for (size_t i = 0; i < n; i++) {
        d[i] = strdup(s[i] ? s[i] : "");
        if (!d[i]) {
            free_strings(d, i);
            return NULL;
        }
    }
    return d;
}

static const char *type_name(fam_type t) {
    return t == FAM_COUNTER ? "counter" : t == FAM_GAUGE ? "gauge" : "histogram";
}

/* Checks that an existing family matches what the caller asks for. Returns 0 and sets the
 * message when it does not. */
static int family_matches(const family *f, fam_type type, const char *const *label_names,
                          size_t n_labels, const double *bounds, size_t n_bounds) {
    if (f->type != type) {
        kl_seterr(KL_EINVAL, "metric \"%s\": is a %s, asked for a %s", f->name, type_name(f->type),
                  type_name(type));
        return 0;
    }
    int same = f->n_labels == n_labels;
    for (size_t i = 0; same && i < n_labels; i++)
        same = label_names[i] && strcmp(f->label_names[i], label_names[i]) == 0;
    if (!same) {
        kl_seterr(KL_EINVAL, "metric \"%s\": label names differ from the family's (%zu labels%s%s)",
                  f->name, f->n_labels, f->n_labels ? ", first " : "",
                  f->n_labels ? f->label_names[0] : "");
        return 0;
    }
    if (type == FAM_HISTOGRAM &&
        (f->n_bounds != n_bounds ||
         (n_bounds && memcmp(f->bounds, bounds, n_bounds * sizeof *bounds) != 0))) {
        kl_seterr(KL_EINVAL, "metric \"%s\": histogram bounds differ from the family's", f->name);
        return 0;
    }
    return 1;
}

/* Creates a family (the caller holds the mutex and has validated the arguments). */
static family *family_new(kl_metrics *r, const char *name, const char *help, fam_type type,
                          const char *const *label_names, size_t n_labels, const double *bounds,
                          size_t n_bounds) {
    if (r->n_families == r->cap_families) {
        size_t cap = r->cap_families ? 2 * r->cap_families : 16;
        family **f = realloc(r->families, cap * sizeof *f);
        if (!f) return NULL;
        r->families = f;
        r->cap_families = cap;
    }
    family *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->type = type;
    f->n_labels = n_labels;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    f->label_names = dup_strings(label_names, n_labels);
    if (type == FAM_HISTOGRAM) {
        f->n_bounds = n_bounds;
        f->bounds = malloc((n_bounds ? n_bounds : 1) * sizeof *f->bounds);
        if (f->bounds && n_bounds) memcpy(f->bounds, bounds, n_bounds * sizeof *bounds);
    }
    if (!f->name || !f->help || !f->label_names || (type == FAM_HISTOGRAM && !f->bounds)) {
        free_family(f);
        return NULL;
    }
    r->families[r->n_families++] = f;
    return f;
}

/* Finds or adds the child with these label values (the caller holds the mutex). */
static child *family_child(family *f, const char *const *values) {
    for (size_t i = 0; i < f->n_children; i++) {
        child *c = f->children[i];
        size_t k = 0;
        while (k < f->n_labels && strcmp(c->values[k], values[k] ? values[k] : "") == 0)
            k++;
        if (k == f->n_labels) {
            atomic_store(&c->hidden, 0);
            return c;
        }
    }
    if (f->n_children == f->cap_children) {
        size_t cap = f->cap_children ? 2 * f->cap_children : 8;
        child **cs = realloc(f->children, cap * sizeof *cs);
        if (!cs) return NULL;
        f->children = cs;
        f->cap_children = cap;
    }
    child *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->values = dup_strings(values, f->n_labels);
    if (f->type == FAM_HISTOGRAM) {
        c->counts = calloc(f->n_bounds + 1, sizeof *c->counts);
        c->bounds = f->bounds;
        c->n_bounds = f->n_bounds;
    }
    if (!c->values || (f->type == FAM_HISTOGRAM && !c->counts)) {
        free_child(c, f->n_labels);
        return NULL;
    }
    atomic_init(&c->hidden, 0);
    atomic_init(&c->value, dbits(0.0));
    atomic_init(&c->sum, dbits(0.0));
    for (size_t i = 0; c->counts && i <= f->n_bounds; i++)
        atomic_init(&c->counts[i], 0);
    f->children[f->n_children++] = c;
    return c;
}

/* The shared body of the three get-or-create calls. */
static child *get_child(kl_metrics *r, fam_type type, const char *name, const char *help,
                        const double *bounds, size_t n_bounds, const char *const *label_names,
                        const char *const *label_values, size_t n_labels) {
    if (!r || !valid_name(name, 1)) {
        kl_seterr(KL_EINVAL, "metric \"%s\": not a valid Prometheus metric name",
                  name ? name : "(null)");
        return NULL;
    }
    if (n_labels > KL_METRICS_MAX_LABELS || (n_labels && (!label_names || !label_values))) {
        kl_seterr(KL_EINVAL, "metric \"%s\": %zu labels (at most %d, names and values given)", name,
                  n_labels, KL_METRICS_MAX_LABELS);
        return NULL;
    }
    for (size_t i = 0; i < n_labels; i++) {
        if (!valid_name(label_names[i], 0) || strncmp(label_names[i], "__", 2) == 0 ||
            (type == FAM_HISTOGRAM && strcmp(label_names[i], "le") == 0)) {
            kl_seterr(KL_EINVAL, "metric \"%s\": label name \"%s\" is not allowed", name,
                      label_names[i] ? label_names[i] : "(null)");
            return NULL;
        }
    }
    if (type == FAM_HISTOGRAM) {
        if (n_bounds > KL_METRICS_MAX_BOUNDS || (n_bounds && !bounds)) {
            kl_seterr(KL_EINVAL, "metric \"%s\": %zu buckets (at most %d)", name, n_bounds,
                      KL_METRICS_MAX_BOUNDS);
            return NULL;
        }
        for (size_t i = 0; i < n_bounds; i++)
            if (!isfinite(bounds[i]) || (i && !(bounds[i] > bounds[i - 1]))) {
                kl_seterr(KL_EINVAL, "metric \"%s\": bucket bounds must be finite and ascending",
                          name);
                return NULL;
            }
    }
    pthread_mutex_lock(&r->mu);
    family *f = NULL;
    for (size_t i = 0; i < r->n_families && !f; i++)
        if (strcmp(r->families[i]->name, name) == 0) f = r->families[i];
    child *c = NULL;
    if (f) {
        if (!family_matches(f, type, label_names, n_labels, bounds, n_bounds)) {
            pthread_mutex_unlock(&r->mu);
            return NULL;
        }
    } else {
        f = family_new(r, name, help, type, label_names, n_labels, bounds, n_bounds);
    }
    if (f) c = family_child(f, label_values);
    pthread_mutex_unlock(&r->mu);
    if (!c) kl_seterr(KL_ENOMEM, "metric \"%s\": out of memory", name);
    return c;
}

kl_counter *kl_metrics_counter(kl_metrics *r, const char *name, const char *help,
                               const char *const *label_names, const char *const *label_values,
                               size_t n_labels) {
    return (kl_counter *)get_child(r, FAM_COUNTER, name, help, NULL, 0, label_names, label_values,
                                   n_labels);
}

kl_gauge *kl_metrics_gauge(kl_metrics *r, const char *name, const char *help,
                           const char *const *label_names, const char *const *label_values,
                           size_t n_labels) {
    return (kl_gauge *)get_child(r, FAM_GAUGE, name, help, NULL, 0, label_names, label_values,
                                 n_labels);
}

kl_histogram *kl_metrics_histogram(kl_metrics *r, const char *name, const char *help,
                                   const double *bounds, size_t n_bounds,
                                   const char *const *label_names, const char *const *label_values,
                                   size_t n_labels) {
    return (kl_histogram *)get_child(r, FAM_HISTOGRAM, name, help, bounds, n_bounds, label_names,
                                     label_values, n_labels);
}

void kl_metrics_remove(kl_metrics *r, const char *name, const char *label, const char *value) {
    if (!r || !name || !label || !value) return;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n_families; i++) {
        family *f = r->families[i];
        if (strcmp(f->name, name) != 0) continue;
        for (size_t k = 0; k < f->n_labels; k++) {
            if (strcmp(f->label_names[k], label) != 0) continue;
            for (size_t j = 0; j < f->n_children; j++)
                if (strcmp(f->children[j]->values[k], value) == 0)
                    atomic_store(&f->children[j]->hidden, 1);
        }
    }
    pthread_mutex_unlock(&r->mu);
}

void kl_metrics_visit(kl_metrics *r, const char *name,
                      void (*fn)(void *ctx, const kl_metric_sample *s), void *ctx) {
    if (!r || !fn) return;
    double cum[KL_METRICS_MAX_BOUNDS + 1];
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n_families; i++) {
        const family *f = r->families[i];
        if (name && strcmp(f->name, name) != 0) continue;
        for (size_t j = 0; j < f->n_children; j++) {
            child *c = f->children[j];
            if (atomic_load(&c->hidden)) continue;
            kl_metric_sample s = {.family = f->name,
                                  .label_names = (const char *const *)f->label_names,
                                  .label_values = (const char *const *)c->values,
                                  .n_labels = f->n_labels};
            if (f->type == FAM_HISTOGRAM) {
                uint64_t total = 0;
                for (size_t b = 0; b <= f->n_bounds; b++) {
                    total += atomic_load_explicit(&c->counts[b], memory_order_relaxed);
                    cum[b] = (double)total;
                }
                s.type = KL_METRIC_HISTOGRAM;
                s.value = (double)total;
                s.sum = bitsd(atomic_load_explicit(&c->sum, memory_order_relaxed));
                s.bounds = f->bounds;
                s.n_bounds = f->n_bounds;
                s.cumulative = cum;
            } else {
                s.type = f->type == FAM_COUNTER ? KL_METRIC_COUNTER : KL_METRIC_GAUGE;
                s.value = bitsd(atomic_load_explicit(&c->value, memory_order_relaxed));
            }
            fn(ctx, &s);
        }
    }
    pthread_mutex_unlock(&r->mu);
}

/* --- rendering --------------------------------------------------------------------------------
 */

typedef struct {
    char **buf;
    size_t *len, *cap;
    int oom; /* an allocation failed; later appends do nothing */
} out_buf;

static void put(out_buf *o, const char *s, size_t n) {
    if (o->oom) return;
    if (*o->len + n + 1 > *o->cap) {
        size_t cap = *o->cap ? *o->cap : 4096;
        while (*o->len + n + 1 > cap)
            cap *= 2;
        char *b = realloc(*o->buf, cap);
        if (!b) {
            o->oom = 1;
            return;
        }
        *o->buf = b;
        *o->cap = cap;
    }
    memcpy(*o->buf + *o->len, s, n);
    *o->len += n;
    (*o->buf)[*o->len] = '\0';
}

static void puts_(out_buf *o, const char *s) {
    put(o, s, strlen(s));
}

static void putf(out_buf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(out_buf *o, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) put(o, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Escapes a HELP text (\ and newline) or a label value (also "). */
static void put_escaped(out_buf *o, const char *s, int quote) {
    const char *run = s;
    for (const char *p = s; *p; p++) {
        const char *esc = *p == '\\'           ? "\\\\"
                          : *p == '\n'         ? "\\n"
                          : quote && *p == '"' ? "\\\""
                                               : 0;
        if (!esc) continue;
        put(o, run, (size_t)(p - run));
        puts_(o, esc);
        run = p + 1;
    }
    puts_(o, run);
}

/* A sample value as Prometheus writes it: the shortest form that reads back exactly. */
static void put_value(out_buf *o, double v) {
    if (isnan(v)) {
        puts_(o, "NaN");
    } else if (isinf(v)) {
        puts_(o, v > 0 ? "+Inf" : "-Inf");
    } else {
        char tmp[40];
        snprintf(tmp, sizeof tmp, "%.15g", v);
        if (strtod(tmp, NULL) != v) snprintf(tmp, sizeof tmp, "%.17g", v);
        puts_(o, tmp);
    }
}

/* name{l1="v1",...[,le="x"]} — extra_le NULL for no le label. */
static void put_series(out_buf *o, const family *f, const char *suffix, const child *c,
                       const char *le) {
    puts_(o, f->name);
    puts_(o, suffix);
    if (f->n_labels == 0 && !le) return;
    puts_(o, "{");
    for (size_t k = 0; k < f->n_labels; k++) {
        if (k) puts_(o, ",");
        puts_(o, f->label_names[k]);
        puts_(o, "=\"");
        put_escaped(o, c->values[k], 1);
        puts_(o, "\"");
    }
    if (le) {
        if (f->n_labels) puts_(o, ",");
        puts_(o, "le=\"");
        puts_(o, le);
        puts_(o, "\"");
    }
    puts_(o, "}");
}

static void render_histogram(out_buf *o, const family *f, const child *c) {
    uint64_t cum = 0;
    for (size_t b = 0; b <= f->n_bounds; b++) {
        cum += atomic_load_explicit(&((child *)c)->counts[b], memory_order_relaxed);
        char le[40];
        if (b == f->n_bounds) {
            snprintf(le, sizeof le, "+Inf");
        } else {
            snprintf(le, sizeof le, "%.15g", f->bounds[b]);
            if (strtod(le, NULL) != f->bounds[b]) snprintf(le, sizeof le, "%.17g", f->bounds[b]);
        }
        put_series(o, f, "_bucket", c, le);
        putf(o, " %llu\n", (unsigned long long)cum);
    }
    put_series(o, f, "_sum", c, NULL);
    puts_(o, " ");
    put_value(o, bitsd(atomic_load_explicit(&((child *)c)->sum, memory_order_relaxed)));
    puts_(o, "\n");
    /* _count is the +Inf bucket, so the two always agree even while observations land. */
    put_series(o, f, "_count", c, NULL);
    putf(o, " %llu\n", (unsigned long long)cum);
}

kl_status kl_metrics_render(kl_metrics *r, char **buf, size_t *len, size_t *cap) {
    if (!r || !buf || !len || !cap) return kl_seterr(KL_EINVAL, "render metrics: bad arguments");
    out_buf o = {buf, len, cap, 0};
    put(&o, "", 0); /* a valid, terminated buffer even when nothing is rendered */
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n_families; i++) {
        const family *f = r->families[i];
        size_t visible = 0;
        for (size_t j = 0; j < f->n_children; j++)
            visible += !atomic_load(&f->children[j]->hidden);
        if (!visible) continue;
        puts_(&o, "# HELP ");
        puts_(&o, f->name);
        puts_(&o, " ");
        put_escaped(&o, f->help, 0);
        puts_(&o, "\n# TYPE ");
        puts_(&o, f->name);
        puts_(&o, " ");
        puts_(&o, type_name(f->type));
        puts_(&o, "\n");
        for (size_t j = 0; j < f->n_children; j++) {
            const child *c = f->children[j];
            if (atomic_load(&c->hidden)) continue;
            if (f->type == FAM_HISTOGRAM) {
                render_histogram(&o, f, c);
                continue;
            }
            put_series(&o, f, "", c, NULL);
            puts_(&o, " ");
            put_value(&o, bitsd(atomic_load_explicit(&((child *)c)->value, memory_order_relaxed)));
            puts_(&o, "\n");
        }
    }
    pthread_mutex_unlock(&r->mu);
    if (o.oom) return kl_seterr(KL_ENOMEM, "render metrics: out of memory");
    return KL_OK;
}
