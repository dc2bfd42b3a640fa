/* alerts.c — the evaluation thread: rule values per series, their states, the active-alert
 * JSON (see alerts.h). Acting on events is monitor/alert_actions.c. */
#include "monitor/alerts.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "monitor/alerts_impl.h"
#include "runtime/ticker.h" /* the evaluation thread */

#define RING 20   /* samples kept per counter or histogram series */
#define RECENT 20 /* events kept for /alerts */

enum { INACTIVE, PENDING, FIRING };
static const char *state_names[] = {"inactive", "pending", "firing"};

/* One sample of a counter (v) or a histogram (cum[], v = its count). */
typedef struct {
    double t;    /* monotonic seconds */
    double v;    /* value */
    double *cum; /* histogram: cumulative counts, n_cum of them (owned) */
} sample;

/* One alert: a rule and one series of its metric. */
typedef struct {
    int rule;          /* index in cfg.rule */
    char key[1200];    /* metric{labels}: identity and messages */
    cJSON *labels;     /* label name → value (owned) */
    int state;         /* INACTIVE, PENDING or FIRING */
    int seen;          /* the metric had this series at this evaluation */
    double value;      /* what the rule compared at the last evaluation (NaN: nothing) */
    double since;      /* monotonic seconds when it became pending */
    double since_wall; /* the same, wall clock */
    sample ring[RING]; /* counters and histograms: past samples, oldest first */
    int n_ring;        /* samples used */
    size_t n_cum;      /* histogram: counts per sample */
} series;

struct kl_alerts {
    kl_alert_config cfg;            /* the rules (copied) */
    kl_metrics *metrics;            /* what the rules read (borrowed) */
    void (*refresh)(void *);        /* sets present-describing gauges first, or NULL */
    void *refresh_ctx;              /* its argument */
    pthread_mutex_t mu;             /* guards the series and recent events (not the registry) */
    series **s;                     /* every alert not inactive, and those with samples */
    size_t n, cap;                  /* entries used and allocated */
    cJSON *recent[RECENT];          /* last events, oldest first (owned) */
    int n_recent;                   /* entries used */
    int warned[KL_ALERT_MAX_RULES]; /* a rule that cannot read its metric was said so */
    kl_gauge *firing[KL_ALERT_MAX_RULES]; /* kiln_alerts_firing{rule,severity} */
    alert_actions actions;                /* log, webhook, retraining */
    kl_ticker *ticker;                    /* evaluates every interval */
};

/* --- time --------------------------------------------------------------------------------------
 */

double alert_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void alert_rfc3339(double wall_s, char out[32]) {
    time_t t = (time_t)wall_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* --- series --------------------------------------------------------------------------------- */

static void series_free(series *x) {
    if (!x) return;
    cJSON_Delete(x->labels);
    for (int i = 0; i < x->n_ring; i++)
        free(x->ring[i].cum);
    free(x);
}

static int matches(const kl_alert_rule *r, const kl_metric_sample *s) {
    for (int m = 0; m < r->n_match; m++) {
        int ok = 0;
        for (size_t l = 0; l < s->n_labels; l++)
            if (!strcmp(s->label_names[l], r->match_name[m]))
                ok = !strcmp(s->label_values[l], r->match_value[m]);
        if (!ok) return 0;
    }
    return 1;
}

/* metric{a="x",b="y"}: the alert's identity (label values escaped as on the page). */
static void series_key(const kl_metric_sample *s, char *out, size_t cap) {
    size_t n = (size_t)snprintf(out, cap, "%s", s->family);
    for (size_t l = 0; l < s->n_labels && n < cap; l++) {
        n += (size_t)snprintf(out + n, cap - n, "%s%s=\"", l ? "," : "{", s->label_names[l]);
        for (const char *c = s->label_values[l]; *c && n + 3 < cap; c++) {
            if (*c == '\\' || *c == '"') out[n++] = '\\';
            out[n++] = *c == '\n' ? 'n' : *c;
        }
        if (n < cap) n += (size_t)snprintf(out + n, cap - n, "\"");
    }
    if (s->n_labels && n < cap) snprintf(out + n, cap - n, "}");
}

static series *find_or_add(kl_alerts *a, int rule, const kl_metric_sample *s) {
    char key[1200];
    series_key(s, key, sizeof key);
    for (size_t i = 0; i < a->n; i++)
        if (a->s[i]->rule == rule && !strcmp(a->s[i]->key, key)) return a->s[i];
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 16;
        series **v = realloc(a->s, cap * sizeof *v);
        if (!v) return NULL;
        a->s = v;
        a->cap = cap;
    }
    series *x = calloc(1, sizeof *x);
    cJSON *labels = cJSON_CreateObject();
    if (!x || !labels) {
        free(x);
        cJSON_Delete(labels);
        return NULL;
    }
    for (size_t l = 0; l < s->n_labels; l++)
        cJSON_AddStringToObject(labels, s->label_names[l], s->label_values[l]);
    x->rule = rule;
    snprintf(x->key, sizeof x->key, "%s", key);
    x->labels = labels;
    x->value = NAN;
    a->s[a->n++] = x;
    return x;
}

/* Keeps a sample when the newest is at least window/16 old, so RING samples span the window. */
static void ring_push(series *x, double t, double v, const double *cum, size_t n_cum,
                      double window) {
    if (x->n_ring && t - x->ring[x->n_ring - 1].t < window / 16) return;
    double *copy = NULL;
    if (cum) {
        copy = malloc(n_cum * sizeof *copy);
        if (!copy) return;
        memcpy(copy, cum, n_cum * sizeof *copy);
    }
    if (x->n_ring == RING) {
        free(x->ring[0].cum);
        memmove(x->ring, x->ring + 1, (RING - 1) * sizeof *x->ring);
        x->n_ring--;
    }
    x->ring[x->n_ring++] = (sample){t, v, copy};
    x->n_cum = n_cum;
}

/* The oldest kept sample inside the window and older than now, or NULL. */
static const sample *ring_ref(const series *x, double t, double window) {
    for (int i = 0; i < x->n_ring; i++)
        if (x->ring[i].t >= t - window && x->ring[i].t < t) return &x->ring[i];
    return NULL;
}

typedef struct {
    kl_alerts *a;
    int rule;
    double t;
} visit_ctx;

static void warn_once(kl_alerts *a, int rule, const char *why) {
    if (a->warned[rule]) return;
    a->warned[rule] = 1;
    fprintf(stderr, "kiln serve: alert rule %s: %s; it stays inactive\n", a->cfg.rule[rule].name,
            why);
}

/* Computes the rule's value for one series of its metric. */
static void on_sample(void *vctx, const kl_metric_sample *s) {
    visit_ctx *c = vctx;
    kl_alerts *a = c->a;
    const kl_alert_rule *r = &a->cfg.rule[c->rule];
    if (!matches(r, s)) return;
    if (s->type == KL_METRIC_HISTOGRAM && r->quantile < 0) {
        warn_once(a, c->rule, "its metric is a histogram: give a quantile");
        return;
    }
    if (s->type != KL_METRIC_HISTOGRAM && r->quantile >= 0) {
        warn_once(a, c->rule, "quantile is for histograms, its metric is not one");
        return;
    }
    series *x = find_or_add(a, c->rule, s);
    if (!x) return;
    x->seen = 1;
    double t = c->t, v = NAN;
    if (s->type == KL_METRIC_GAUGE) {
        v = s->value;
    } else if (s->type == KL_METRIC_COUNTER) {
        const sample *ref = ring_ref(x, t, r->window_s);
        if (ref) v = (s->value >= ref->v ? s->value - ref->v : s->value) / (t - ref->t);
        ring_push(x, t, s->value, NULL, 0, r->window_s);
    } else {
        size_t n = s->n_bounds + 1;
        const sample *ref = ring_ref(x, t, r->window_s);
        if (ref && x->n_cum == n) {
            double delta[65];
            int reset = s->value < ref->v;
            for (size_t b = 0; b < n && b < 65; b++)
                delta[b] = reset ? s->cumulative[b] : s->cumulative[b] - ref->cum[b];
            v = kl_histogram_quantile(r->quantile, s->bounds, s->n_bounds, delta);
        }
        ring_push(x, t, s->value, s->cumulative, n, r->window_s);
    }
    x->value = v;
}

/* The alert's JSON (for /alerts and events). */
static cJSON *alert_json(const kl_alerts *a, const series *x) {
    const kl_alert_rule *r = &a->cfg.rule[x->rule];
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    char since[32], summary[1024];
    alert_rfc3339(x->since_wall, since);
    cJSON_AddStringToObject(o, "rule", r->name);
    cJSON_AddStringToObject(o, "severity", r->severity);
    cJSON_AddStringToObject(o, "state", state_names[x->state]);
    cJSON_AddStringToObject(o, "metric", r->metric);
    cJSON_AddItemToObject(o, "labels", cJSON_Duplicate(x->labels, 1));
    if (isfinite(x->value))
        cJSON_AddNumberToObject(o, "value", x->value);
    else
        cJSON_AddNullToObject(o, "value");
    cJSON_AddStringToObject(o, "comparison", kl_alert_cmp_name(r->cmp));
    cJSON_AddNumberToObject(o, "threshold", r->threshold);
    cJSON_AddNumberToObject(o, "for_s", r->for_s);
    if (x->state != INACTIVE) cJSON_AddStringToObject(o, "active_since", since);
    /* The summary template: {label}, {value}, {threshold}. */
    size_t n = 0;
    summary[0] = 0;
    for (const char *p = r->summary; *p && n + 1 < sizeof summary;) {
        const char *close = *p == '{' ? strchr(p, '}') : NULL;
        if (close) {
            char name[128], val[160] = "";
            snprintf(name, sizeof name, "%.*s", (int)(close - p - 1), p + 1);
            const cJSON *l = cJSON_GetObjectItemCaseSensitive(x->labels, name);
            if (cJSON_IsString(l))
                snprintf(val, sizeof val, "%s", l->valuestring);
            else if (!strcmp(name, "value"))
                snprintf(val, sizeof val, isfinite(x->value) ? "%.4g" : "(none)", x->value);
            else if (!strcmp(name, "threshold"))
                snprintf(val, sizeof val, "%.4g", r->threshold);
            else
                snprintf(val, sizeof val, "{%s}", name);
            n += (size_t)snprintf(summary + n, sizeof summary - n, "%s", val);
            p = close + 1;
        } else {
            summary[n++] = *p++;
            summary[n] = 0;
        }
    }
    if (n >= sizeof summary) n = sizeof summary - 1;
    summary[n] = 0;
    cJSON_AddStringToObject(o, "summary", summary);
    return o;
}

static void remember(kl_alerts *a, const cJSON *ev) {
    cJSON *copy = cJSON_Duplicate(ev, 1);
    if (!copy) return;
    if (a->n_recent == RECENT) {
        cJSON_Delete(a->recent[0]);
        memmove(a->recent, a->recent + 1, (RECENT - 1) * sizeof *a->recent);
        a->n_recent--;
    }
    a->recent[a->n_recent++] = copy;
}

/* Moves x's state on the value it has now; fills ev and returns 1 on an event. */
static int transition(kl_alerts *a, series *x, double t, double wall, alert_event *ev) {
    const kl_alert_rule *r = &a->cfg.rule[x->rule];
    int holds = x->seen && kl_alert_compare(r->cmp, x->value, r->threshold);
    int before = x->state;
    if (holds && x->state == INACTIVE) {
        x->state = PENDING;
        x->since = t;
        x->since_wall = wall;
    }
    if (holds && x->state == PENDING && t - x->since >= r->for_s) x->state = FIRING;
    if (!holds) x->state = INACTIVE;
    int firing = before != FIRING && x->state == FIRING;
    int resolved = before == FIRING && x->state == INACTIVE;
    if (!firing && !resolved) return 0;
    if (resolved) x->state = FIRING; /* render it as it was, with its since */
    cJSON *o = alert_json(a, x);
    if (resolved) x->state = INACTIVE;
    if (!o) return 0;
    char at[32];
    alert_rfc3339(wall, at);
    cJSON_ReplaceItemInObjectCaseSensitive(o, "state",
                                           cJSON_CreateString(firing ? "firing" : "resolved"));
    cJSON_AddStringToObject(o, "status", firing ? "firing" : "resolved");
    cJSON_AddStringToObject(o, "at", at);
    *ev = (alert_event){.alert = o, .rule = x->rule, .firing = firing, .value = x->value};
    snprintf(ev->series, sizeof ev->series, "%s", x->key);
    remember(a, o);
    return 1;
}

void kl_alerts_evaluate(kl_alerts *a) {
    if (!a) return;
    if (a->refresh) a->refresh(a->refresh_ctx);
    alert_actions_reap(&a->actions);
    double t = alert_now(), wall = wall_now();
    alert_event *events = NULL;
    size_t n_events = 0, cap_events = 0;
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < a->n; i++) {
        a->s[i]->seen = 0;
        a->s[i]->value = NAN;
    }
    for (int r = 0; r < a->cfg.n; r++) {
        visit_ctx c = {a, r, t};
        kl_metrics_visit(a->metrics, a->cfg.rule[r].metric, on_sample, &c);
    }
    int count[KL_ALERT_MAX_RULES] = {0};
    size_t kept = 0;
    for (size_t i = 0; i < a->n; i++) {
        series *x = a->s[i];
        alert_event ev;
        if (transition(a, x, t, wall, &ev)) {
            if (n_events == cap_events) {
                size_t cap = cap_events ? 2 * cap_events : 8;
                alert_event *v = realloc(events, cap * sizeof *v);
                if (!v) {
                    cJSON_Delete(ev.alert);
                    goto keep;
                }
                events = v;
                cap_events = cap;
            }
            events[n_events++] = ev;
        }
    keep:
        count[x->rule] += x->state == FIRING;
        /* A series that left the page and is not alerting is forgotten (samples and all). */
        if (!x->seen && x->state == INACTIVE)
            series_free(x);
        else
            a->s[kept++] = x;
    }
    a->n = kept;
    pthread_mutex_unlock(&a->mu);
    for (int r = 0; r < a->cfg.n; r++)
        kl_gauge_set(a->firing[r], count[r]);
    for (size_t i = 0; i < n_events; i++) {
        alert_actions_run(&a->actions, &a->cfg, a->metrics, &events[i]);
        cJSON_Delete(events[i].alert);
    }
    free(events);
}

/* --- lifecycle -------------------------------------------------------------------------------
 */

static void tick(void *a) {
    kl_alerts_evaluate(a);
}

kl_status kl_alerts_create(const kl_alert_config *cfg, kl_metrics *metrics,
                           void (*refresh)(void *ctx), void *ctx, kl_alerts **out) {
    *out = NULL;
    if (!cfg || !metrics) return kl_seterr(KL_EINVAL, "alerts: no rules or no metrics");
    kl_alerts *a = calloc(1, sizeof *a);
    if (!a) return kl_seterr(KL_ENOMEM, "alerts: out of memory");
    a->cfg = *cfg;
    a->metrics = metrics;
    a->refresh = refresh;
    a->refresh_ctx = ctx;
    pthread_mutex_init(&a->mu, NULL);
    for (int r = 0; r < cfg->n; r++) {
        const char *names[] = {"rule", "severity"};
        const char *values[] = {cfg->rule[r].name, cfg->rule[r].severity};
        a->firing[r] =
            kl_metrics_gauge(metrics, "kiln_alerts_firing",
                             "Series of the alert rule that are firing", names, values, 2);
        if (!a->firing[r]) {
            kl_alerts_free(a);
            return kl_seterr(KL_ENOMEM, "alerts: metrics: %s", kl_errmsg());
        }
    }
    if (alert_actions_init(&a->actions, cfg, metrics) != KL_OK) {
        kl_status st = kl_preferr(KL_EINVAL, "alerts");
        kl_alerts_free(a);
        return st;
    }
    /* The first evaluation one interval after the start, once the counters have moved. */
    kl_status st = kl_ticker_start(cfg->interval_s, tick, a, &a->ticker);
    if (st != KL_OK) {
        kl_alerts_free(a);
        return kl_preferr(st, "alerts");
    }
    *out = a;
    return KL_OK;
}

void kl_alerts_free(kl_alerts *a) {
    if (!a) return;
    kl_ticker_stop(a->ticker);
    alert_actions_free(&a->actions);
    for (size_t i = 0; i < a->n; i++)
        series_free(a->s[i]);
    free(a->s);
    for (int i = 0; i < a->n_recent; i++)
        cJSON_Delete(a->recent[i]);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

kl_status kl_alerts_json(void *alerts, char **json) {
    kl_alerts *a = alerts;
    *json = NULL;
    cJSON *root = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(root, "alerts");
    cJSON *recent = cJSON_AddArrayToObject(root, "recent");
    if (!root || !list || !recent) {
        cJSON_Delete(root);
        return kl_seterr(KL_ENOMEM, "alerts: out of memory");
    }
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < a->n; i++)
        if (a->s[i]->state != INACTIVE) cJSON_AddItemToArray(list, alert_json(a, a->s[i]));
    for (int i = a->n_recent - 1; i >= 0; i--) /* newest first */
        cJSON_AddItemToArray(recent, cJSON_Duplicate(a->recent[i], 1));
    pthread_mutex_unlock(&a->mu);
    cJSON_AddNumberToObject(root, "rules", a->cfg.n);
    *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return *json ? KL_OK : kl_seterr(KL_ENOMEM, "alerts: out of memory");
}
