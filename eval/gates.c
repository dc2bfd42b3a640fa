/* gates.c — parsing, running and reporting validation gates (gates.h). */
#include "eval/gates.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <yaml.h>

#include "runtime/model.h"    /* kl_mlp for the latency gate */
#include "runtime/yaml_doc.h" /* kl_yaml_load */

int kl_metric_higher_is_better(const char *m) {
    static const char *const lower[] = {"log_loss", "loss", "ece", "mse", "mae", "rmse"};
    for (size_t i = 0; i < sizeof lower / sizeof lower[0]; i++)
        if (!strcmp(m, lower[i])) return 0;
    return 1;
}

/* --- parsing ------------------------------------------------------------------------------------
 */

static const char *scalar(yaml_document_t *d, yaml_node_t *n) {
    (void)d;
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static kl_status number(const char *gate, const char *key, const char *text, double *out) {
    char *end = NULL;
    errno = 0;
    double v = text ? strtod(text, &end) : NAN;
    if (!text || end == text || *end || errno || !isfinite(v))
        return kl_seterr(KL_EINVAL, "gates.%s.%s: \"%s\" is not a number", gate, key,
                         text ? text : "(not a scalar)");
    *out = v;
    return KL_OK;
}

static kl_status add_gate(kl_gate_set *s, kl_gate g) {
    if (s->n >= KL_GATES_MAX) return kl_seterr(KL_EINVAL, "more than %d gates", KL_GATES_MAX);
    s->gate[s->n++] = g;
    return KL_OK;
}

/* min: {metric: threshold, ...} or max: {...} */
static kl_status parse_thresholds(yaml_document_t *d, yaml_node_t *map, const char *gate,
                                  kl_gate_kind kind, kl_gate_set *s) {
    if (map->type != YAML_MAPPING_NODE)
        return kl_seterr(KL_EINVAL, "gates.%s: expected a mapping of metric: threshold", gate);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const char *metric = scalar(d, yaml_document_get_node(d, p->key));
        kl_gate g;
        memset(&g, 0, sizeof g);
        g.kind = kind;
        if (!metric || strlen(metric) >= sizeof g.metric)
            return kl_seterr(KL_EINVAL, "gates.%s: bad metric name", gate);
        snprintf(g.metric, sizeof g.metric, "%s", metric);
        KL_TRY(number(gate, metric, scalar(d, yaml_document_get_node(d, p->value)), &g.threshold));
        KL_TRY(add_gate(s, g));
    }
    return KL_OK;
}

/* A gate given as a mapping of fixed keys; allowed lists them, values land in g. */
static kl_status parse_keyed(yaml_document_t *d, yaml_node_t *map, const char *gate,
                             const char *const *allowed, kl_gate *g) {
    if (map->type != YAML_MAPPING_NODE)
        return kl_seterr(KL_EINVAL, "gates.%s: expected a mapping", gate);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const char *key = scalar(d, yaml_document_get_node(d, p->key));
        const char *val = scalar(d, yaml_document_get_node(d, p->value));
        int ok = 0;
        for (const char *const *a = allowed; *a && key; a++)
            ok |= !strcmp(*a, key);
        if (!ok) return kl_seterr(KL_EINVAL, "gates.%s: unknown key \"%s\"", gate, key ? key : "?");
        if (!val) return kl_seterr(KL_EINVAL, "gates.%s.%s: expected a value", gate, key);
        if (!strcmp(key, "metric")) {
            snprintf(g->metric, sizeof g->metric, "%s", val);
        } else if (!strcmp(key, "column")) {
            snprintf(g->column, sizeof g->column, "%s", val);
        } else if (!strcmp(key, "batch")) {
            double b = 0;
            KL_TRY(number(gate, key, val, &b));
            if (b < 1 || b > 1 << 20 || b != floor(b))
                return kl_seterr(KL_EINVAL, "gates.%s.batch: %s is not a row count", gate, val);
            g->batch = (int)b;
        } else {
            KL_TRY(number(gate, key, val, &g->threshold));
        }
    }
    return KL_OK;
}

static kl_status parse_root(yaml_document_t *d, yaml_node_t *root, kl_gate_set *s) {
    if (!root || root->type != YAML_MAPPING_NODE)
        return kl_seterr(KL_EINVAL, "gates: expected a mapping (min, max, baseline, champion, "
                                    "fairness, latency, size)");
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        const char *key = scalar(d, yaml_document_get_node(d, p->key));
        yaml_node_t *v = yaml_document_get_node(d, p->value);
        kl_gate g;
        memset(&g, 0, sizeof g);
        if (!key) return kl_seterr(KL_EINVAL, "gates: bad key");
        if (!strcmp(key, "min")) {
            KL_TRY(parse_thresholds(d, v, key, KL_GATE_MIN, s));
            continue;
        } else if (!strcmp(key, "max")) {
            KL_TRY(parse_thresholds(d, v, key, KL_GATE_MAX, s));
            continue;
        } else if (!strcmp(key, "baseline")) {
            static const char *const a[] = {"metric", "margin", NULL};
            g.kind = KL_GATE_BASELINE;
            KL_TRY(parse_keyed(d, v, key, a, &g));
        } else if (!strcmp(key, "champion")) {
            static const char *const a[] = {"metric", "tolerance", NULL};
            g.kind = KL_GATE_CHAMPION;
            KL_TRY(parse_keyed(d, v, key, a, &g));
        } else if (!strcmp(key, "fairness")) {
            static const char *const a[] = {"column", "metric", "max_gap", NULL};
            g.kind = KL_GATE_FAIRNESS;
            KL_TRY(parse_keyed(d, v, key, a, &g));
            if (!g.column[0]) return kl_seterr(KL_EINVAL, "gates.fairness: column is required");
        } else if (!strcmp(key, "latency")) {
            static const char *const a[] = {"batch", "p99_ms", NULL};
            g.kind = KL_GATE_LATENCY;
            g.batch = 1;
            KL_TRY(parse_keyed(d, v, key, a, &g));
            if (!(g.threshold > 0)) return kl_seterr(KL_EINVAL, "gates.latency: p99_ms > 0");
        } else if (!strcmp(key, "size")) {
            static const char *const a[] = {"max_mb", NULL};
            g.kind = KL_GATE_SIZE;
            KL_TRY(parse_keyed(d, v, key, a, &g));
            if (!(g.threshold > 0)) return kl_seterr(KL_EINVAL, "gates.size: max_mb > 0");
        } else {
            return kl_seterr(KL_EINVAL,
                             "gates: unknown gate \"%s\" (min, max, baseline, champion, "
                             "fairness, latency, size)",
                             key);
        }
        if ((g.kind == KL_GATE_BASELINE || g.kind == KL_GATE_CHAMPION ||
             g.kind == KL_GATE_FAIRNESS) &&
            !g.metric[0])
            snprintf(g.metric, sizeof g.metric, "accuracy");
        KL_TRY(add_gate(s, g));
    }
    return KL_OK;
}

kl_status kl_gates_parse_node(yaml_document_t *doc, yaml_node_t *gates, kl_gate_set *out) {
    memset(out, 0, sizeof *out);
    return parse_root(doc, gates, out);
}

kl_status kl_gates_parse_yaml(const char *text, kl_gate_set *out) {
    memset(out, 0, sizeof *out);
    yaml_document_t doc;
    if (kl_yaml_load(text, strlen(text), &doc) != KL_OK) return kl_preferr(KL_EFORMAT, "gates");
    kl_status st = parse_root(&doc, yaml_document_get_root_node(&doc), out);
    yaml_document_delete(&doc);
    return st;
}

/* --- measuring
 * ------------------------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

kl_status kl_measure_latency(const kl_bundle *b, kl_device dev, int batch, int reps, double *p50_ms,
                             double *p99_ms) {
    if (batch < 1 || reps < 1) return kl_seterr(KL_EINVAL, "latency: batch and reps must be >= 1");
    int C = b->spec.dims[b->spec.n_layers];
    size_t nx = (size_t)batch * (size_t)b->n_features;
    float *x = malloc(nx * sizeof *x), *xin = malloc(nx * sizeof *xin);
    float *y = malloc((size_t)batch * (size_t)C * sizeof *y);
    double *t = malloc((size_t)reps * sizeof *t);
    kl_mlp mlp;
    memset(&mlp, 0, sizeof mlp);
    kl_status st = x && xin && y && t ? KL_OK : kl_seterr(KL_ENOMEM, "latency: out of memory");
    if (st == KL_OK) st = kl_mlp_create(&mlp, &b->spec, dev, batch, KL_PREC_FP32);
    if (st == KL_OK)
        st = kl_dev_copy_from_host(dev, mlp.params, b->params, (size_t)b->n_params * sizeof(float));
    uint32_t r = 12345;
    for (size_t i = 0; st == KL_OK && i < nx; i++) {
        r = r * 1664525u + 1013904223u;
        x[i] = (float)(r >> 8) / 16777216.0f;
    }
    for (int i = -5; st == KL_OK && i < reps; i++) { /* 5 warm-up runs */
        double t0 = now_ms();
        memcpy(xin, x, nx * sizeof *x);
        kl_bundle_apply_transform(b, xin, batch);
        st = kl_mlp_predict(&mlp, xin, batch, y);
        if (i >= 0) t[i] = now_ms() - t0;
    }
    if (st == KL_OK) {
        qsort(t, (size_t)reps, sizeof *t, cmp_double);
        *p50_ms = t[(size_t)(0.50 * (reps - 1) + 0.5)];
        *p99_ms = t[(size_t)(0.99 * (reps - 1) + 0.5)];
    }
    kl_mlp_free(&mlp);
    free(x);
    free(xin);
    free(y);
    free(t);
    return st;
}

kl_status kl_dir_bytes(const char *dir, long long *bytes) {
    *bytes = 0;
    DIR *d = opendir(dir);
    if (!d) return kl_seterr(KL_EIO, "%s: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        char p[4200];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (!stat(p, &sb) && S_ISREG(sb.st_mode)) *bytes += (long long)sb.st_size;
    }
    closedir(d);
    return KL_OK;
}

/* --- running -------------------------------------------------------------------------------------
 */

static void result_set(kl_gate_result *r, int passed, double value, double limit, const char *fmt,
                       ...) __attribute__((format(printf, 5, 6)));
static void result_set(kl_gate_result *r, int passed, double value, double limit, const char *fmt,
                       ...) {
    r->passed = passed;
    r->value = value;
    r->limit = limit;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->detail, sizeof r->detail, fmt, ap);
    va_end(ap);
}

static void run_one(const kl_gate *g, const kl_gate_inputs *in, kl_gate_result *r) {
    double v = NAN, ref = NAN;
    int hib = kl_metric_higher_is_better(g->metric);
    kl_status st = KL_OK;
    switch (g->kind) {
    case KL_GATE_MIN:
    case KL_GATE_MAX:
        snprintf(r->name, sizeof r->name, "%s:%s", g->kind == KL_GATE_MIN ? "min" : "max",
                 g->metric);
        if ((st = in->metric(in->ctx, "candidate", g->metric, &v)) != KL_OK) break;
        if (g->kind == KL_GATE_MIN)
            result_set(r, v >= g->threshold, v, g->threshold, "%s %.4f %s %.4f", g->metric, v,
                       v >= g->threshold ? ">=" : "<", g->threshold);
        else
            result_set(r, v <= g->threshold, v, g->threshold, "%s %.4f %s %.4f", g->metric, v,
                       v <= g->threshold ? "<=" : ">", g->threshold);
        return;
    case KL_GATE_BASELINE:
        snprintf(r->name, sizeof r->name, "baseline:%s", g->metric);
        if ((st = in->metric(in->ctx, "candidate", g->metric, &v)) != KL_OK) break;
        if ((st = in->metric(in->ctx, "baseline", g->metric, &ref)) != KL_OK) break;
        if (hib)
            result_set(r, v >= ref + g->threshold, v, ref + g->threshold,
                       "%s %.4f vs baseline %.4f + margin %.4f", g->metric, v, ref, g->threshold);
        else
            result_set(r, v <= ref - g->threshold, v, ref - g->threshold,
                       "%s %.4f vs baseline %.4f - margin %.4f", g->metric, v, ref, g->threshold);
        return;
    case KL_GATE_CHAMPION:
        snprintf(r->name, sizeof r->name, "champion:%s", g->metric);
        if ((st = in->metric(in->ctx, "candidate", g->metric, &v)) != KL_OK) break;
        if (!in->have_champion) {
            result_set(r, 1, v, NAN, "no champion yet: %s %.4f stands alone", g->metric, v);
            return;
        }
        if ((st = in->metric(in->ctx, "champion", g->metric, &ref)) != KL_OK) break;
        if (hib)
            result_set(r, v >= ref - g->threshold, v, ref - g->threshold,
                       "%s %.4f vs champion %.4f (tolerance %.4f)", g->metric, v, ref,
                       g->threshold);
        else
            result_set(r, v <= ref + g->threshold, v, ref + g->threshold,
                       "%s %.4f vs champion %.4f (tolerance %.4f)", g->metric, v, ref,
                       g->threshold);
        return;
    case KL_GATE_FAIRNESS:
        snprintf(r->name, sizeof r->name, "fairness:%s:%s", g->column, g->metric);
        if (!in->group_gap) {
            st = kl_seterr(KL_EUNSUPPORTED, "no group data to measure");
            break;
        }
        if ((st = in->group_gap(in->ctx, g->column, g->metric, &v)) != KL_OK) break;
        result_set(r, v <= g->threshold, v, g->threshold,
                   "largest %s gap between groups of %s: %.4f %s %.4f", g->metric, g->column, v,
                   v <= g->threshold ? "<=" : ">", g->threshold);
        return;
    case KL_GATE_LATENCY: {
        snprintf(r->name, sizeof r->name, "latency:p99_ms@%d", g->batch);
        double p50 = 0;
        if (!in->bundle) {
            st = kl_seterr(KL_EINVAL, "no model to time");
            break;
        }
        if ((st = kl_measure_latency(in->bundle, in->device, g->batch, 200, &p50, &v)) != KL_OK)
            break;
        result_set(r, v <= g->threshold, v, g->threshold,
                   "p99 %.3f ms (p50 %.3f) at batch %d %s %.3f ms", v, p50, g->batch,
                   v <= g->threshold ? "<=" : ">", g->threshold);
        return;
    }
    case KL_GATE_SIZE: {
        snprintf(r->name, sizeof r->name, "size:mb");
        long long bytes = 0;
        if (!in->bundle_dir) {
            st = kl_seterr(KL_EINVAL, "no bundle folder to measure");
            break;
        }
        if ((st = kl_dir_bytes(in->bundle_dir, &bytes)) != KL_OK) break;
        v = (double)bytes / (1024.0 * 1024.0);
        result_set(r, v <= g->threshold, v, g->threshold, "bundle %.3f MiB %s %.3f MiB", v,
                   v <= g->threshold ? "<=" : ">", g->threshold);
        return;
    }
    }
    result_set(r, 0, NAN, g->threshold, "could not measure: %s", kl_errmsg());
    (void)st;
}

kl_status kl_gates_run(const kl_gate_set *set, const kl_gate_inputs *in, kl_gate_result *results,
                       int *all_passed) {
    if (!set || !in || !in->metric || !results)
        return kl_seterr(KL_EINVAL, "gates: missing arguments");
    *all_passed = 1;
    for (int i = 0; i < set->n; i++) {
        memset(&results[i], 0, sizeof results[i]);
        run_one(&set->gate[i], in, &results[i]);
        if (!results[i].passed) *all_passed = 0;
    }
    return KL_OK;
}

char *kl_gates_report_json(const kl_gate_result *results, int n, int all_passed) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddBoolToObject(root, "passed", all_passed);
    cJSON *arr = cJSON_AddArrayToObject(root, "gates");
    for (int i = 0; i < n; i++) {
        cJSON *g = cJSON_CreateObject();
        cJSON_AddStringToObject(g, "name", results[i].name);
        cJSON_AddBoolToObject(g, "passed", results[i].passed);
        if (isfinite(results[i].value))
            cJSON_AddNumberToObject(g, "value", results[i].value);
        else
            cJSON_AddNullToObject(g, "value");
        if (isfinite(results[i].limit))
            cJSON_AddNumberToObject(g, "limit", results[i].limit);
        else
            cJSON_AddNullToObject(g, "limit");
        cJSON_AddStringToObject(g, "detail", results[i].detail);
        cJSON_AddItemToArray(arr, g);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}
