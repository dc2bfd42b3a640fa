/* checks.c — parsing the checks YAML and running the checks on a profile (see checks.h). */
#include "data/checks.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "runtime/yaml_doc.h" /* kl_yaml_load, kl_yaml_scalar */

/* --- parsing ---------------------------------------------------------------------------------- */

#define scalar kl_yaml_scalar

static kl_status number(const char *key, const char *text, double *out) {
    char *end = NULL;
    errno = 0;
    double v = text ? strtod(text, &end) : NAN;
    if (!text || end == text || *end || errno || !isfinite(v))
        return kl_seterr(KL_EINVAL, "checks.%s: \"%s\" is not a number", key,
                         text ? text : "(not a scalar)");
    *out = v;
    return KL_OK;
}

static kl_status share(const char *key, const char *text, double *out) {
    KL_TRY(number(key, text, out));
    if (*out < 0 || *out > 1)
        return kl_seterr(KL_EINVAL, "checks.%s: %s is not a share in [0, 1]", key, text);
    return KL_OK;
}

static kl_status add(kl_data_checks *s, kl_data_check c) {
    if (s->n >= KL_DATA_CHECKS_MAX)
        return kl_seterr(KL_EINVAL, "checks: more than %d checks", KL_DATA_CHECKS_MAX);
    s->check[s->n++] = c;
    return KL_OK;
}

static kl_status column_name(const char *key, const char *name, kl_data_check *c) {
    if (!name || !*name || strlen(name) >= sizeof c->column)
        return kl_seterr(KL_EINVAL, "checks.%s: bad column name", key);
    snprintf(c->column, sizeof c->column, "%s", name);
    return KL_OK;
}

#define FOR_PAIRS(d, map, p)                                                                       \
    for (yaml_node_pair_t *p = (map)->data.mapping.pairs.start; p < (map)->data.mapping.pairs.top; \
         p++)

static kl_status parse_columns(yaml_document_t *d, yaml_node_t *map, kl_data_checks *s) {
    if (map->type != YAML_MAPPING_NODE)
        return kl_seterr(KL_EINVAL, "checks.columns: expected a mapping of column: type");
    FOR_PAIRS(d, map, p) {
        kl_data_check c;
        memset(&c, 0, sizeof c);
        c.kind = KL_CHECK_COLUMN;
        KL_TRY(column_name("columns", scalar(yaml_document_get_node(d, p->key)), &c));
        const char *t = scalar(yaml_document_get_node(d, p->value));
        if (!t || (strcmp(t, "numeric") && strcmp(t, "categorical") && strcmp(t, "any")))
            return kl_seterr(KL_EINVAL,
                             "checks.columns.%s: type \"%s\" is not numeric, categorical or any",
                             c.column, t ? t : "(not a scalar)");
        snprintf(c.type, sizeof c.type, "%s", t);
        c.limit = NAN;
        KL_TRY(add(s, c));
    }
    return KL_OK;
}

static kl_status parse_missing(yaml_document_t *d, yaml_node_t *v, kl_data_checks *s) {
    kl_data_check c;
    memset(&c, 0, sizeof c);
    c.kind = KL_CHECK_MISSING;
    if (v->type == YAML_SCALAR_NODE) { /* one number: over every cell */
        KL_TRY(share("max_missing", scalar(v), &c.limit));
        return add(s, c);
    }
    if (v->type != YAML_MAPPING_NODE)
        return kl_seterr(KL_EINVAL, "checks.max_missing: expected a share or a mapping");
    FOR_PAIRS(d, v, p) {
        const char *k = scalar(yaml_document_get_node(d, p->key));
        memset(&c, 0, sizeof c);
        c.kind = KL_CHECK_MISSING;
        if (!k || strcmp(k, "overall")) KL_TRY(column_name("max_missing", k, &c));
        char key[160];
        snprintf(key, sizeof key, "max_missing.%s", k ? k : "?");
        KL_TRY(share(key, scalar(yaml_document_get_node(d, p->value)), &c.limit));
        KL_TRY(add(s, c));
    }
    return KL_OK;
}

/* A range bound: a number, or null / ~ / "" for an open end. */
static kl_status bound(const char *key, yaml_node_t *n, double open, double *out) {
    const char *t = scalar(n);
    if (t && (!*t || !strcmp(t, "~") || !strcmp(t, "null"))) {
        *out = open;
        return KL_OK;
    }
    return number(key, t, out);
}

static kl_status parse_ranges(yaml_document_t *d, yaml_node_t *map, kl_data_checks *s) {
    if (map->type != YAML_MAPPING_NODE)
        return kl_seterr(KL_EINVAL, "checks.ranges: expected a mapping of column: [min, max]");
    FOR_PAIRS(d, map, p) {
        kl_data_check c;
        memset(&c, 0, sizeof c);
        c.kind = KL_CHECK_RANGE;
        c.lo = -INFINITY;
        c.hi = INFINITY;
        c.limit = NAN;
        KL_TRY(column_name("ranges", scalar(yaml_document_get_node(d, p->key)), &c));
        char key[160];
        snprintf(key, sizeof key, "ranges.%s", c.column);
        yaml_node_t *v = yaml_document_get_node(d, p->value);
        if (v && v->type == YAML_SEQUENCE_NODE) {
            yaml_node_item_t *it = v->data.sequence.items.start;
            if (v->data.sequence.items.top - it != 2)
                return kl_seterr(KL_EINVAL, "checks.%s: expected [min, max]", key);
            KL_TRY(bound(key, yaml_document_get_node(d, it[0]), -INFINITY, &c.lo));
            KL_TRY(bound(key, yaml_document_get_node(d, it[1]), INFINITY, &c.hi));
        } else if (v && v->type == YAML_MAPPING_NODE) {
            FOR_PAIRS(d, v, q) {
                const char *k = scalar(yaml_document_get_node(d, q->key));
                yaml_node_t *val = yaml_document_get_node(d, q->value);
                if (k && !strcmp(k, "min"))
                    KL_TRY(bound(key, val, -INFINITY, &c.lo));
                else if (k && !strcmp(k, "max"))
                    KL_TRY(bound(key, val, INFINITY, &c.hi));
                else
                    return kl_seterr(KL_EINVAL, "checks.%s: unknown key \"%s\" (min, max)", key,
                                     k ? k : "?");
            }
        } else {
            return kl_seterr(KL_EINVAL, "checks.%s: expected [min, max] or {min: .., max: ..}",
                             key);
        }
        if (c.lo > c.hi) return kl_seterr(KL_EINVAL, "checks.%s: min is above max", key);
        KL_TRY(add(s, c));
    }
    return KL_OK;
}

static kl_status parse_label(yaml_document_t *d, yaml_node_t *map, kl_data_checks *s) {
    if (map->type != YAML_MAPPING_NODE)
        return kl_seterr(KL_EINVAL, "checks.label: expected a mapping (column, max_ratio, "
                                    "min_share)");
    FOR_PAIRS(d, map, p) {
        const char *k = scalar(yaml_document_get_node(d, p->key));
        const char *v = scalar(yaml_document_get_node(d, p->value));
        kl_data_check c;
        memset(&c, 0, sizeof c);
        if (k && !strcmp(k, "column")) {
            if (!v || !*v || strlen(v) >= sizeof s->label_column)
                return kl_seterr(KL_EINVAL, "checks.label.column: bad column name");
            snprintf(s->label_column, sizeof s->label_column, "%s", v);
        } else if (k && !strcmp(k, "max_ratio")) {
            c.kind = KL_CHECK_LABEL_RATIO;
            KL_TRY(number("label.max_ratio", v, &c.limit));
            if (c.limit < 1)
                return kl_seterr(KL_EINVAL, "checks.label.max_ratio: %s is below 1", v);
            KL_TRY(add(s, c));
        } else if (k && !strcmp(k, "min_share")) {
            c.kind = KL_CHECK_LABEL_SHARE;
            KL_TRY(share("label.min_share", v, &c.limit));
            KL_TRY(add(s, c));
        } else {
            return kl_seterr(KL_EINVAL,
                             "checks.label: unknown key \"%s\" (column, max_ratio, min_share)",
                             k ? k : "?");
        }
    }
    return KL_OK;
}

static kl_status parse_root(yaml_document_t *d, yaml_node_t *root, kl_data_checks *s) {
    if (!root) return KL_OK; /* an empty document: no checks */
    if (root->type != YAML_MAPPING_NODE) return kl_seterr(KL_EINVAL, "checks: expected a mapping");
    FOR_PAIRS(d, root, p) { /* a whole config: read its checks: block */
        const char *k = scalar(yaml_document_get_node(d, p->key));
        yaml_node_t *v = yaml_document_get_node(d, p->value);
        if (k && !strcmp(k, "checks") && v && v->type == YAML_MAPPING_NODE)
            return parse_root(d, v, s);
    }
    FOR_PAIRS(d, root, p) {
        const char *k = scalar(yaml_document_get_node(d, p->key));
        yaml_node_t *v = yaml_document_get_node(d, p->value);
        if (!k || !v) return kl_seterr(KL_EINVAL, "checks: a key is not a plain name");
        kl_data_check c;
        memset(&c, 0, sizeof c);
        if (!strcmp(k, "min_rows")) {
            c.kind = KL_CHECK_MIN_ROWS;
            KL_TRY(number("min_rows", scalar(v), &c.limit));
            KL_TRY(add(s, c));
        } else if (!strcmp(k, "columns")) {
            KL_TRY(parse_columns(d, v, s));
        } else if (!strcmp(k, "strict_columns")) {
            const char *t = scalar(v);
            int on = t && (!strcmp(t, "true") || !strcmp(t, "yes") || !strcmp(t, "on"));
            int off = t && (!strcmp(t, "false") || !strcmp(t, "no") || !strcmp(t, "off"));
            if (!on && !off)
                return kl_seterr(KL_EINVAL, "checks.strict_columns: \"%s\" is not true or false",
                                 t ? t : "(not a scalar)");
            c.kind = KL_CHECK_STRICT;
            c.limit = 0;
            if (on) KL_TRY(add(s, c));
        } else if (!strcmp(k, "max_missing")) {
            KL_TRY(parse_missing(d, v, s));
        } else if (!strcmp(k, "ranges")) {
            KL_TRY(parse_ranges(d, v, s));
        } else if (!strcmp(k, "label")) {
            KL_TRY(parse_label(d, v, s));
        } else {
            return kl_seterr(KL_EINVAL,
                             "checks: unknown key \"%s\" (min_rows, columns, strict_columns, "
                             "max_missing, ranges, label)",
                             k);
        }
    }
    return KL_OK;
}

kl_status kl_data_checks_parse_yaml(const char *text, kl_data_checks *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->label_column, sizeof out->label_column, "label");
    yaml_document_t doc;
    if (kl_yaml_load(text, strlen(text), &doc) != KL_OK) return kl_preferr(KL_EFORMAT, "checks");
    kl_status st = parse_root(&doc, yaml_document_get_root_node(&doc), out);
    yaml_document_delete(&doc);
    return st;
}

/* --- running ---------------------------------------------------------------------------------- */

/* A growing list of results. */
typedef struct {
    kl_data_check_result *v; /* [n], owned */
    int n, cap;              /* used and allocated */
    int all;                 /* every result so far passed */
} results;

static kl_data_check_result *push(results *r) {
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 32;
        kl_data_check_result *v = realloc(r->v, (size_t)cap * sizeof *v);
        if (!v) return NULL;
        r->v = v;
        r->cap = cap;
    }
    kl_data_check_result *x = &r->v[r->n++];
    memset(x, 0, sizeof *x);
    x->value = x->limit = NAN;
    return x;
}

static void verdict(results *r, kl_data_check_result *x, int passed) {
    x->passed = passed;
    if (!passed) r->all = 0;
}

static int missing_one(results *r, const kl_data_profile *p, const kl_column_profile *c,
                       double limit) {
    kl_data_check_result *x = push(r);
    if (!x) return -1;
    snprintf(x->name, sizeof x->name, "missing:%s", c->name);
    int64_t n = c->present + c->missing;
    x->value = n ? (double)c->missing / (double)n : 0;
    x->limit = limit;
    verdict(r, x, x->value <= limit);
    snprintf(x->detail, sizeof x->detail, "%s: %.4g%% missing (%lld of %lld) %s %.4g%%", c->name,
             100 * x->value, (long long)c->missing, (long long)n, x->passed ? "<=" : ">",
             100 * limit);
    (void)p;
    return 0;
}

static void fmt_bound(double v, char *buf, size_t size) {
    if (isinf(v))
        snprintf(buf, size, "%s", v < 0 ? "-inf" : "inf");
    else
        snprintf(buf, size, "%.6g", v);
}

static int range_one(results *r, const kl_column_profile *c, double lo, double hi) {
    kl_data_check_result *x = push(r);
    if (!x) return -1;
    snprintf(x->name, sizeof x->name, "range:%s", c->name);
    char a[32], b[32];
    fmt_bound(lo, a, sizeof a);
    fmt_bound(hi, b, sizeof b);
    if (c->type != KL_COL_NUMERIC) {
        verdict(r, x, 0);
        snprintf(x->detail, sizeof x->detail, "%s: %s, not numeric: no range [%s, %s]", c->name,
                 kl_col_type_name(c->type), a, b);
        return 0;
    }
    int64_t out = 0;
    for (int64_t i = 0; i < c->n_values; i++)
        out += c->values[i] < lo || c->values[i] > hi;
    x->value = (double)out;
    x->limit = 0;
    verdict(r, x, c->min >= lo && c->max <= hi);
    snprintf(x->detail, sizeof x->detail, "%s: min %.6g, max %.6g %s [%s, %s]", c->name, c->min,
             c->max, x->passed ? "within" : "outside", a, b);
    if (!x->passed && c->n_values == c->present) {
        size_t len = strlen(x->detail);
        snprintf(x->detail + len, sizeof x->detail - len, ": %lld value%s", (long long)out,
                 out == 1 ? "" : "s");
    }
    return 0;
}

/* Rows per class of the label column: categorical counts, or runs of the sorted numbers. */
static int64_t class_counts(const kl_column_profile *c, int64_t **counts) {
    int64_t n = c->type == KL_COL_CATEGORICAL ? c->n_cats : c->n_values;
    int64_t *k = malloc((size_t)(n ? n : 1) * sizeof *k);
    if (!k) return -1;
    int64_t u = 0;
    if (c->type == KL_COL_CATEGORICAL) {
        memcpy(k, c->cat_count, (size_t)n * sizeof *k);
        u = n;
    } else {
        for (int64_t i = 0; i < n; i++) {
            if (i && c->values[i] == c->values[i - 1])
                k[u - 1]++;
            else
                k[u++] = 1;
        }
    }
    *counts = k;
    return u;
}

static int label_check(results *r, const kl_data_checks *spec, const kl_data_check *ck,
                       const kl_data_profile *p) {
    kl_data_check_result *x = push(r);
    if (!x) return -1;
    int ratio = ck->kind == KL_CHECK_LABEL_RATIO;
    snprintf(x->name, sizeof x->name, "label:%s", ratio ? "max_ratio" : "min_share");
    x->limit = ck->limit;
    const kl_column_profile *c = kl_data_profile_column(p, spec->label_column);
    if (!c || c->type == KL_COL_EMPTY) {
        verdict(r, x, 0);
        snprintf(x->detail, sizeof x->detail, "no labels: %s \"%s\"",
                 c ? "every cell is missing in" : "no column", spec->label_column);
        return 0;
    }
    int64_t *k = NULL;
    int64_t u = class_counts(c, &k);
    if (u < 0) return -1;
    int64_t mx = 0, mn = INT64_MAX, total = 0;
    int64_t imx = 0, imn = 0;
    for (int64_t i = 0; i < u; i++) {
        total += k[i];
        if (k[i] > mx) mx = k[i], imx = i;
        if (k[i] <= mn) mn = k[i], imn = i; /* ties: another class than the largest */
    }
    char nmx[64] = "", nmn[64] = "";
    if (c->type == KL_COL_CATEGORICAL) {
        snprintf(nmx, sizeof nmx, "%s", c->cats[imx]);
        snprintf(nmn, sizeof nmn, "%s", c->cats[imn]);
    } else {
        int64_t pos = 0;
        for (int64_t i = 0; i < u; i++) {
            if (i == imx) snprintf(nmx, sizeof nmx, "%.6g", c->values[pos]);
            if (i == imn) snprintf(nmn, sizeof nmn, "%.6g", c->values[pos]);
            pos += k[i];
        }
    }
    free(k);
    if (ratio) {
        x->value = (double)mx / (double)mn;
        verdict(r, x, x->value <= ck->limit);
        snprintf(x->detail, sizeof x->detail,
                 "%s: class \"%s\" has %lld rows, \"%s\" %lld: ratio %.4g %s %.4g",
                 spec->label_column, nmx, (long long)mx, nmn, (long long)mn, x->value,
                 x->passed ? "<=" : ">", ck->limit);
    } else {
        x->value = (double)mn / (double)total;
        verdict(r, x, x->value >= ck->limit);
        snprintf(x->detail, sizeof x->detail,
                 "%s: smallest class \"%s\" has %.4g%% of %lld rows %s %.4g%%", spec->label_column,
                 nmn, 100 * x->value, (long long)total, x->passed ? ">=" : "<", 100 * ck->limit);
    }
    return 0;
}

static int run_one(results *r, const kl_data_checks *spec, const kl_data_check *ck,
                   const kl_data_profile *p) {
    kl_data_check_result *x;
    const kl_column_profile *c =
        ck->column[0] && strcmp(ck->column, "*") ? kl_data_profile_column(p, ck->column) : NULL;
    int star = !strcmp(ck->column, "*");
    switch (ck->kind) {
    case KL_CHECK_MIN_ROWS:
        if (!(x = push(r))) return -1;
        snprintf(x->name, sizeof x->name, "min_rows");
        x->value = (double)p->rows;
        x->limit = ck->limit;
        verdict(r, x, x->value >= ck->limit);
        snprintf(x->detail, sizeof x->detail, "%lld rows %s %.0f", (long long)p->rows,
                 x->passed ? ">=" : "<", ck->limit);
        return 0;
    case KL_CHECK_COLUMN:
        if (!(x = push(r))) return -1;
        snprintf(x->name, sizeof x->name, "column:%s", ck->column);
        if (!c) {
            verdict(r, x, 0);
            snprintf(x->detail, sizeof x->detail, "%s: no such column", ck->column);
        } else {
            const char *t = kl_col_type_name(c->type);
            verdict(r, x, !strcmp(ck->type, "any") || !strcmp(ck->type, t));
            snprintf(x->detail, sizeof x->detail, "%s: %s%s%s", ck->column, t,
                     x->passed ? "" : ", expected ", x->passed ? "" : ck->type);
        }
        return 0;
    case KL_CHECK_STRICT: {
        if (!(x = push(r))) return -1;
        snprintf(x->name, sizeof x->name, "strict_columns");
        int extra = 0;
        char list[200] = "";
        for (int j = 0; j < p->n_cols; j++) {
            int listed = 0;
            for (int i = 0; i < spec->n && !listed; i++)
                listed = spec->check[i].kind == KL_CHECK_COLUMN &&
                         !strcmp(spec->check[i].column, p->cols[j].name);
            if (listed) continue;
            size_t len = strlen(list);
            if (len < sizeof list - 1)
                snprintf(list + len, sizeof list - len, "%s%s", extra ? ", " : "", p->cols[j].name);
            extra++;
        }
        x->value = extra;
        x->limit = 0;
        verdict(r, x, extra == 0);
        if (extra)
            snprintf(x->detail, sizeof x->detail, "%d unexpected column%s: %s", extra,
                     extra == 1 ? "" : "s", list);
        else
            snprintf(x->detail, sizeof x->detail, "no unexpected columns");
        return 0;
    }
    case KL_CHECK_MISSING:
        if (star) {
            for (int j = 0; j < p->n_cols; j++)
                if (missing_one(r, p, &p->cols[j], ck->limit)) return -1;
            return 0;
        }
        if (c) return missing_one(r, p, c, ck->limit);
        if (!(x = push(r))) return -1;
        if (!ck->column[0]) {
            int64_t miss = 0, cells = 0;
            for (int j = 0; j < p->n_cols; j++) {
                miss += p->cols[j].missing;
                cells += p->cols[j].missing + p->cols[j].present;
            }
            snprintf(x->name, sizeof x->name, "missing:overall");
            x->value = cells ? (double)miss / (double)cells : 0;
            x->limit = ck->limit;
            verdict(r, x, x->value <= ck->limit);
            snprintf(x->detail, sizeof x->detail,
                     "%.4g%% of cells missing (%lld of %lld) %s %.4g%%", 100 * x->value,
                     (long long)miss, (long long)cells, x->passed ? "<=" : ">", 100 * ck->limit);
        } else {
            snprintf(x->name, sizeof x->name, "missing:%s", ck->column);
            x->limit = ck->limit;
            verdict(r, x, 0);
            snprintf(x->detail, sizeof x->detail, "%s: no such column", ck->column);
        }
        return 0;
    case KL_CHECK_RANGE:
        if (star) {
            for (int j = 0; j < p->n_cols; j++)
                if (p->cols[j].type == KL_COL_NUMERIC && range_one(r, &p->cols[j], ck->lo, ck->hi))
                    return -1;
            return 0;
        }
        if (c) return range_one(r, c, ck->lo, ck->hi);
        if (!(x = push(r))) return -1;
        snprintf(x->name, sizeof x->name, "range:%s", ck->column);
        verdict(r, x, 0);
        snprintf(x->detail, sizeof x->detail, "%s: no such column", ck->column);
        return 0;
    case KL_CHECK_LABEL_RATIO:
    case KL_CHECK_LABEL_SHARE:
        return label_check(r, spec, ck, p);
    }
    return 0;
}

kl_status kl_data_checks_run(const kl_data_checks *spec, const kl_data_profile *p,
                             kl_data_check_result **out, int *n, int *all_passed) {
    results r = {NULL, 0, 0, 1};
    for (int i = 0; i < spec->n; i++)
        if (run_one(&r, spec, &spec->check[i], p)) {
            free(r.v);
            return kl_seterr(KL_ENOMEM, "running data checks");
        }
    *out = r.v;
    *n = r.n;
    *all_passed = r.all;
    return KL_OK;
}

kl_status kl_data_checks_run_file(const kl_data_checks *spec, const char *path, const char *labels,
                                  kl_data_check_result **results, int *n, int *all_passed) {
    kl_data_profile p;
    KL_TRY(kl_preferr(kl_data_profile_file(path, labels, &p), "data checks"));
    kl_status st = kl_data_checks_run(spec, &p, results, n, all_passed);
    kl_data_profile_free(&p);
    return st;
}

char *kl_data_checks_report_json(const char *file, const kl_data_check_result *results, int n,
                                 int all_passed) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    if (file) cJSON_AddStringToObject(root, "file", file);
    cJSON_AddBoolToObject(root, "passed", all_passed);
    cJSON *arr = cJSON_AddArrayToObject(root, "checks");
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
