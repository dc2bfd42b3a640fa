/* metrics.h — a small Prometheus metrics registry: counters, gauges and histograms with labels,
 * rendered in the text exposition format (version 0.0.4).
 *
 * Creating a metric (or a labelled child of one) takes the registry's mutex and may allocate;
 * callers do it once (when a model version loads) and keep the pointer. Updating one is
 * lock-free and allocation-free (C11 atomics), safe from any thread: it is the hot path of a
 * request. Doubles are held as atomic 64-bit patterns and updated with a compare-and-swap loop,
 * so concurrent adds of whole numbers sum exactly (up to 2^53).
 *
 * Names follow kiln's rule for metrics: a `kiln_` prefix and base units (`_seconds`, `_bytes`),
 * counters ending in `_total`. The registry checks the Prometheus syntax of names, not the
 * conventions.
 */
#ifndef KL_METRICS_H
#define KL_METRICS_H

#include <stddef.h>

#include "runtime/status.h"

typedef struct kl_metrics kl_metrics;     /* a registry of metric families */
typedef struct kl_counter kl_counter;     /* one labelled child of a counter family */
typedef struct kl_gauge kl_gauge;         /* one labelled child of a gauge family */
typedef struct kl_histogram kl_histogram; /* one labelled child of a histogram family */

/* Creates an empty registry. Free with kl_metrics_free. */
kl_status kl_metrics_create(kl_metrics **out);

/* Frees the registry and every metric it created (all their pointers die with it). Safe on NULL.
 * No other thread may be updating or rendering by then. */
void kl_metrics_free(kl_metrics *r);

/* Get-or-create the child of family `name` with these label values; the family is created on
 * first use with `help` and label_names (later calls must pass the same label names, in the same
 * order). Returns NULL only on out-of-memory, a bad name, or a mismatch with the existing family
 * (another type, other label names, other buckets); kl_errmsg says which. The pointer stays
 * valid until kl_metrics_free: children are never freed individually (kl_metrics_remove only
 * hides them, and getting a hidden child again shows it again, its value kept). */
kl_counter *kl_metrics_counter(kl_metrics *r, const char *name, const char *help,
                               const char *const *label_names, const char *const *label_values,
                               size_t n_labels);
kl_gauge *kl_metrics_gauge(kl_metrics *r, const char *name, const char *help,
                           const char *const *label_names, const char *const *label_values,
                           size_t n_labels);

/* As above for a histogram with n_bounds ascending, finite upper bounds (+Inf is implied; at
 * most 64). Label "le" is reserved. */
kl_histogram *kl_metrics_histogram(kl_metrics *r, const char *name, const char *help,
                                   const double *bounds, size_t n_bounds,
                                   const char *const *label_names, const char *const *label_values,
                                   size_t n_labels);

/* Adds v (>= 0; negative and NaN values are ignored, a counter never goes down). Lock-free. */
void kl_counter_add(kl_counter *c, double v);

/* Sets or moves a gauge. Lock-free. */
void kl_gauge_set(kl_gauge *g, double v);
void kl_gauge_add(kl_gauge *g, double v);

/* Counts v in the first bucket whose bound is >= v and adds it to the sum. Lock-free. */
void kl_histogram_observe(kl_histogram *h, double v);

/* The current value (for tests and for front ends that report it elsewhere). */
double kl_counter_get(const kl_counter *c);
double kl_gauge_get(const kl_gauge *g);

/* Hides from rendering every child of family `name` whose label `label` equals `value` (e.g. the
 * children of an unloaded version). Unknown names or labels are ignored. */
void kl_metrics_remove(kl_metrics *r, const char *name, const char *label, const char *value);

/* Hides one gauge child from rendering (hidden = 1) or shows it again (0), its value kept: for
 * a child whose labels come and go, such as a top-N list. Lock-free. */
void kl_gauge_hide(kl_gauge *g, int hidden);

/* One visible child as kl_metrics_visit shows it. Pointers are valid only during the call. */
typedef struct {
    const char *family;             /* the family's name */
    int type;                       /* KL_METRIC_COUNTER, _GAUGE or _HISTOGRAM */
    const char *const *label_names; /* n_labels names */
    const char *const *label_values;
    size_t n_labels;
    double value;             /* counter or gauge value; histogram: observations counted */
    double sum;               /* histogram: their sum */
    const double *bounds;     /* histogram: n_bounds finite upper bounds (+Inf implied) */
    size_t n_bounds;          /* histogram: entries in bounds */
    const double *cumulative; /* histogram: observations <= each bound, then all (n_bounds+1) */
} kl_metric_sample;

enum { KL_METRIC_COUNTER, KL_METRIC_GAUGE, KL_METRIC_HISTOGRAM };

/* Calls fn once for each visible child of family `name` (every family when name is NULL), in
 * creation order, under the registry's mutex: fn must not call back into the registry. Values
 * are read as rendering reads them (a histogram's count is its +Inf bucket). For readers that
 * evaluate metrics in-process (alert rules), without parsing the text page. */
void kl_metrics_visit(kl_metrics *r, const char *name,
                      void (*fn)(void *ctx, const kl_metric_sample *s), void *ctx);

/* Appends the text exposition (version 0.0.4) of every family with a visible child: # HELP,
 * # TYPE, one line per child with escaped label values, and for histograms the cumulative
 * _bucket{le="..."} lines, _sum and _count. *buf is malloc'd and grown as needed (*len bytes
 * used, *cap allocated; *buf may start NULL with *len = *cap = 0). Fails only on out-of-memory,
 * leaving *buf valid. */
kl_status kl_metrics_render(kl_metrics *r, char **buf, size_t *len, size_t *cap);

#endif
