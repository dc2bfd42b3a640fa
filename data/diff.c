/* diff.c — schema and distribution changes between two dataset profiles (see diff.h). */
#include "data/diff.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PSI_BINS 10
#define PSI_FLOOR 1e-4

/* Values in sorted v[0..n) that are <= x. */
static int64_t count_le(const double *v, int64_t n, double x) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (v[mid] <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static double psi_term(double pa, double pb) {
    pa = pa < PSI_FLOOR ? PSI_FLOOR : pa;
    pb = pb < PSI_FLOOR ? PSI_FLOOR : pb;
    return (pb - pa) * log(pb / pa);
}

/* PSI of b against a over bins cut at a's deciles (repeated edges merged). */
static double numeric_psi(const kl_column_profile *a, const kl_column_profile *b) {
    if (!a->n_values || !b->n_values) return NAN;
    double edges[PSI_BINS];
    int ne = 0;
    for (int k = 1; k < PSI_BINS; k++) {
        double e = a->values[(int64_t)((double)k / PSI_BINS * (double)(a->n_values - 1))];
        if (!ne || e > edges[ne - 1]) edges[ne++] = e;
    }
    double psi = 0;
    int64_t prev_a = 0, prev_b = 0;
    for (int k = 0; k <= ne; k++) {
        int64_t ca = k < ne ? count_le(a->values, a->n_values, edges[k]) : a->n_values;
        int64_t cb = k < ne ? count_le(b->values, b->n_values, edges[k]) : b->n_values;
        psi += psi_term((double)(ca - prev_a) / (double)a->n_values,
                        (double)(cb - prev_b) / (double)b->n_values);
        prev_a = ca;
        prev_b = cb;
    }
    return psi;
}

/* The largest gap between the empirical CDFs of two sorted samples. */
static double ks_stat(const kl_column_profile *a, const kl_column_profile *b) {
    if (!a->n_values || !b->n_values) return NAN;
    int64_t i = 0, j = 0, na = a->n_values, nb = b->n_values;
    double d = 0;
    while (i < na && j < nb) {
        double x = a->values[i] <= b->values[j] ? a->values[i] : b->values[j];
        while (i < na && a->values[i] <= x)
            i++;
        while (j < nb && b->values[j] <= x)
            j++;
        double gap = fabs((double)i / (double)na - (double)j / (double)nb);
        d = gap > d ? gap : d;
    }
    return d;
}

/* PSI over categories and the biggest share moves; both cats lists are strcmp-sorted. */
static void categorical_diff(const kl_column_profile *a, const kl_column_profile *b,
                             kl_column_diff *d) {
    double ta = (double)a->present, tb = (double)b->present;
    if (!ta || !tb) return;
    double psi = 0;
    int64_t i = 0, j = 0;
    while (i < a->n_cats || j < b->n_cats) {
        int c = i >= a->n_cats ? 1 : j >= b->n_cats ? -1 : strcmp(a->cats[i], b->cats[j]);
        double pa = c <= 0 ? (double)a->cat_count[i] / ta : 0;
        double pb = c >= 0 ? (double)b->cat_count[j] / tb : 0;
        const char *name = c <= 0 ? a->cats[i] : b->cats[j];
        psi += psi_term(pa, pb);
        /* Keep the KL_DIFF_TOP_CATS largest moves, biggest first (insertion). */
        double move = fabs(pb - pa);
        int pos = d->n_top;
        while (pos > 0 && fabs(d->top[pos - 1].share[1] - d->top[pos - 1].share[0]) < move)
            pos--;
        if (pos < KL_DIFF_TOP_CATS && move > 0) {
            int last = d->n_top < KL_DIFF_TOP_CATS ? d->n_top : KL_DIFF_TOP_CATS - 1;
            memmove(&d->top[pos + 1], &d->top[pos], (size_t)(last - pos) * sizeof d->top[0]);
            snprintf(d->top[pos].value, sizeof d->top[pos].value, "%s", name);
            d->top[pos].share[0] = pa;
            d->top[pos].share[1] = pb;
            if (d->n_top < KL_DIFF_TOP_CATS) d->n_top++;
        }
        if (c <= 0) i++;
        if (c >= 0) j++;
    }
    d->psi = psi;
}

static void side(kl_column_diff *d, int s, const kl_column_profile *c) {
    snprintf(d->type[s], sizeof d->type[s], "%s", kl_col_type_name(c->type));
    int64_t n = c->present + c->missing;
    d->missing[s] = n ? (double)c->missing / (double)n : 0;
    if (c->type == KL_COL_NUMERIC) {
        d->mean[s] = c->mean;
        d->std[s] = c->std;
        d->min[s] = c->min;
        d->max[s] = c->max;
    }
}

static void compare(const kl_column_profile *a, const kl_column_profile *b, kl_column_diff *d) {
    for (int s = 0; s < 2; s++)
        d->missing[s] = d->mean[s] = d->std[s] = d->min[s] = d->max[s] = NAN;
    d->psi = d->ks = NAN;
    snprintf(d->name, sizeof d->name, "%s", a ? a->name : b->name);
    if (a) side(d, 0, a);
    if (b) side(d, 1, b);
    if (!a || !b) {
        d->change = a ? KL_DIFF_REMOVED : KL_DIFF_ADDED;
        d->changed = 1;
        return;
    }
    d->change = a->type == b->type ? KL_DIFF_SAME : KL_DIFF_TYPE;
    if (a->type == KL_COL_NUMERIC && b->type == KL_COL_NUMERIC) {
        d->psi = numeric_psi(a, b);
        d->ks = ks_stat(a, b);
    } else if (a->type == KL_COL_CATEGORICAL && b->type == KL_COL_CATEGORICAL) {
        categorical_diff(a, b, d);
    }
    d->changed = d->change != KL_DIFF_SAME || (isfinite(d->psi) && d->psi >= KL_DIFF_PSI_SHIFT);
}

kl_status kl_data_diff_profiles(const kl_data_profile *a, const kl_data_profile *b,
                                kl_data_diff *out) {
    memset(out, 0, sizeof *out);
    out->cols = calloc((size_t)(a->n_cols + b->n_cols + 1), sizeof *out->cols);
    if (!out->cols) return kl_seterr(KL_ENOMEM, "diff of %d and %d columns", a->n_cols, b->n_cols);
    const kl_data_profile *p[2] = {a, b};
    for (int s = 0; s < 2; s++) {
        snprintf(out->format[s], sizeof out->format[s], "%s", p[s]->format);
        memcpy(out->digest[s], p[s]->digest, KL_DIGEST_LEN);
        out->rows[s] = p[s]->rows;
        out->n_dims[s] = p[s]->n_dims;
        memcpy(out->shape[s], p[s]->shape, sizeof out->shape[s]);
    }
    out->identical = !strcmp(a->digest, b->digest);
    out->schema_changed = strcmp(a->format, b->format) || a->n_dims != b->n_dims;
    for (int k = 1; k < a->n_dims && k < b->n_dims; k++)
        out->schema_changed |= a->shape[k] != b->shape[k];
    for (int j = 0; j < a->n_cols; j++)
        compare(&a->cols[j], kl_data_profile_column(b, a->cols[j].name), &out->cols[out->n++]);
    for (int j = 0; j < b->n_cols; j++)
        if (!kl_data_profile_column(a, b->cols[j].name))
            compare(NULL, &b->cols[j], &out->cols[out->n++]);
    for (int j = 0; j < out->n; j++) {
        out->schema_changed |= out->cols[j].change != KL_DIFF_SAME;
        out->n_changed += out->cols[j].changed;
    }
    return KL_OK;
}

static void add_num(cJSON *o, const char *key, double v) {
    if (isfinite(v))
        cJSON_AddNumberToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

static void add_pair(cJSON *o, const char *key, const double v[2]) {
    cJSON *arr = cJSON_AddArrayToObject(o, key);
    for (int s = 0; s < 2; s++)
        cJSON_AddItemToArray(arr, isfinite(v[s]) ? cJSON_CreateNumber(v[s]) : cJSON_CreateNull());
}

static const char *change_name(kl_diff_change c) {
    return c == KL_DIFF_SAME      ? "same"
           : c == KL_DIFF_ADDED   ? "added"
           : c == KL_DIFF_REMOVED ? "removed"
                                  : "type_changed";
}

char *kl_data_diff_json(const kl_data_diff *d, const char *name_a, const char *name_b) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    const char *names[2] = {name_a, name_b};
    for (int s = 0; s < 2; s++) {
        cJSON *o = cJSON_AddObjectToObject(root, s ? "b" : "a");
        if (names[s]) cJSON_AddStringToObject(o, "name", names[s]);
        cJSON_AddStringToObject(o, "format", d->format[s]);
        cJSON_AddStringToObject(o, "digest", d->digest[s]);
        cJSON_AddNumberToObject(o, "rows", (double)d->rows[s]);
        if (d->n_dims[s]) {
            cJSON *shape = cJSON_AddArrayToObject(o, "shape");
            for (int k = 0; k < d->n_dims[s]; k++)
                cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)d->shape[s][k]));
        }
    }
    cJSON_AddBoolToObject(root, "identical", d->identical);
    cJSON_AddBoolToObject(root, "schema_changed", d->schema_changed);
    cJSON_AddNumberToObject(root, "columns_changed", d->n_changed);
    cJSON *cols = cJSON_AddArrayToObject(root, "columns");
    for (int j = 0; j < d->n; j++) {
        const kl_column_diff *c = &d->cols[j];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", c->name);
        cJSON_AddStringToObject(o, "change", change_name(c->change));
        cJSON *types = cJSON_AddArrayToObject(o, "type");
        for (int s = 0; s < 2; s++)
            cJSON_AddItemToArray(types, c->type[s][0] ? cJSON_CreateString(c->type[s])
                                                      : cJSON_CreateNull());
        cJSON_AddBoolToObject(o, "changed", c->changed);
        add_pair(o, "missing_rate", c->missing);
        add_pair(o, "mean", c->mean);
        add_pair(o, "std", c->std);
        add_pair(o, "min", c->min);
        add_pair(o, "max", c->max);
        add_num(o, "psi", c->psi);
        add_num(o, "ks", c->ks);
        if (c->n_top) {
            cJSON *top = cJSON_AddArrayToObject(o, "categories");
            for (int k = 0; k < c->n_top; k++) {
                cJSON *t = cJSON_CreateObject();
                cJSON_AddStringToObject(t, "value", c->top[k].value);
                add_pair(t, "share", c->top[k].share);
                cJSON_AddItemToArray(top, t);
            }
        }
        cJSON_AddItemToArray(cols, o);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}

void kl_data_diff_free(kl_data_diff *d) {
    free(d->cols);
    memset(d, 0, sizeof *d);
}
