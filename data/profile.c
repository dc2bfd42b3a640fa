/* profile.c — typed columns and their statistics from a CSV or IDX file (see profile.h). */
#include "data/profile.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/csv.h"
#include "data/idx.h"

const char *kl_col_type_name(kl_col_type t) {
    return t == KL_COL_NUMERIC ? "numeric" : t == KL_COL_CATEGORICAL ? "categorical" : "empty";
}

kl_status kl_data_detect_format(const char *path, const char **format) {
    if (kl_idx_probe(path, NULL)) {
        *format = "idx";
        return KL_OK;
    }
    size_t n = strlen(path);
    if ((n >= 4 && !strcmp(path + n - 4, ".csv")) || (n >= 7 && !strcmp(path + n - 7, ".csv.gz"))) {
        *format = "csv";
        return KL_OK;
    }
    FILE *f = fopen(path, "rb");
    if (!f) return kl_seterr(KL_EIO, "cannot open \"%s\"", path);
    fclose(f);
    return kl_seterr(KL_EFORMAT,
                     "cannot tell the format of \"%s\": no IDX magic (00 00 <type> <ndims>) "
                     "and no .csv or .csv.gz extension",
                     path);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmp_strp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Mean, std, min and max of c->values (already filled, n_values of them, not yet sorted), then
 * sorts them. */
static void numeric_stats(kl_column_profile *c) {
    double mean = 0, m2 = 0;
    for (int64_t i = 0; i < c->n_values; i++) {
        double v = c->values[i], d = v - mean;
        mean += d / (double)(i + 1);
        m2 += d * (v - mean);
    }
    qsort(c->values, (size_t)c->n_values, sizeof *c->values, cmp_double);
    c->mean = c->n_values ? mean : NAN;
    c->std = c->n_values ? sqrt(m2 / (double)c->n_values) : NAN;
    c->min = c->n_values ? c->values[0] : NAN;
    c->max = c->n_values ? c->values[c->n_values - 1] : NAN;
}

/* Distinct values of vals[0..n) (sorted in place) with counts into c; 0 ok, -1 no memory. */
static int categorical_counts(kl_column_profile *c, const char **vals, int64_t n) {
    qsort(vals, (size_t)n, sizeof *vals, cmp_strp);
    int64_t u = 0;
    for (int64_t i = 0; i < n; i++)
        u += !i || strcmp(vals[i - 1], vals[i]);
    c->cats = calloc((size_t)(u ? u : 1), sizeof *c->cats);
    c->cat_count = calloc((size_t)(u ? u : 1), sizeof *c->cat_count);
    if (!c->cats || !c->cat_count) return -1;
    c->n_cats = 0;
    for (int64_t i = 0; i < n; i++) {
        if (i && !strcmp(vals[i - 1], vals[i])) {
            c->cat_count[c->n_cats - 1]++;
            continue;
        }
        if (!(c->cats[c->n_cats] = strdup(vals[i]))) return -1;
        c->cat_count[c->n_cats++] = 1;
    }
    return 0;
}

static kl_status profile_csv(const char *path, kl_data_profile *out) {
    kl_csv_table t;
    KL_TRY(kl_csv_read(path, &t));
    kl_status st = kl_digest_csv(&t, out->digest);
    snprintf(out->format, sizeof out->format, "csv");
    out->rows = t.n_rows;
    out->n_cols = t.n_cols;
    out->cols = calloc((size_t)t.n_cols, sizeof *out->cols);
    const char **vals = malloc((size_t)(t.n_rows ? t.n_rows : 1) * sizeof *vals);
    if (st == KL_OK && (!out->cols || !vals)) st = kl_seterr(KL_ENOMEM, "profiling \"%s\"", path);
    for (int j = 0; st == KL_OK && j < t.n_cols; j++) {
        kl_column_profile *c = &out->cols[j];
        int64_t n = 0;
        int text = 0;
        for (int64_t r = 0; r < t.n_rows; r++) {
            const char *v = kl_csv_cell(&t, r, j);
            double x;
            if (kl_csv_is_missing(v)) {
                c->missing++;
                continue;
            }
            vals[n++] = v;
            if (!text && !kl_csv_parse_number(v, &x)) text = 1;
        }
        c->present = n;
        c->type = !n ? KL_COL_EMPTY : text ? KL_COL_CATEGORICAL : KL_COL_NUMERIC;
        c->min = c->max = c->mean = c->std = NAN;
        if (!(c->name = strdup(kl_csv_colname(&t, j)))) {
            st = kl_seterr(KL_ENOMEM, "profiling \"%s\"", path);
        } else if (c->type == KL_COL_NUMERIC) {
            if (!(c->values = malloc((size_t)n * sizeof *c->values))) {
                st = kl_seterr(KL_ENOMEM, "profiling \"%s\"", path);
                break;
            }
            for (int64_t i = 0; i < n; i++)
                kl_csv_parse_number(vals[i], &c->values[i]);
            c->n_values = n;
            numeric_stats(c);
        } else if (c->type == KL_COL_CATEGORICAL && categorical_counts(c, vals, n)) {
            st = kl_seterr(KL_ENOMEM, "profiling \"%s\"", path);
        }
    }
    free(vals);
    kl_csv_free(&t);
    return st;
}

/* The "label" column of an IDX labels array. */
static kl_status label_column(kl_column_profile *c, const int32_t *y, int64_t n) {
    c->type = KL_COL_CATEGORICAL;
    c->present = n;
    c->min = c->max = c->mean = c->std = NAN;
    if (!(c->name = strdup("label"))) return kl_seterr(KL_ENOMEM, "label column");
    char(*text)[12] = malloc((size_t)(n ? n : 1) * sizeof *text);
    const char **ptr = malloc((size_t)(n ? n : 1) * sizeof *ptr);
    int rc = -1;
    if (text && ptr) {
        for (int64_t i = 0; i < n; i++) {
            snprintf(text[i], sizeof text[i], "%d", (int)y[i]);
            ptr[i] = text[i];
        }
        rc = categorical_counts(c, ptr, n);
    }
    free(text);
    free(ptr);
    return rc ? kl_seterr(KL_ENOMEM, "label column") : KL_OK;
}

static kl_status profile_idx(const char *path, const char *labels, kl_data_profile *out) {
    int ndims = 0;
    kl_idx_probe(path, &ndims);
    kl_dataset ds;
    memset(&ds, 0, sizeof ds);
    if (ndims == 1) {
        if (labels)
            return kl_seterr(KL_EINVAL, "\"%s\" is a labels file; --labels is for images", path);
        KL_TRY(kl_idx_read_labels(path, 0, &ds.y, &ds.n));
        snprintf(out->format, sizeof out->format, "labels");
        out->rows = ds.n;
        out->n_dims = 1;
        out->shape[0] = ds.n;
        kl_status st = kl_digest_dataset(&ds, out->digest);
        out->cols = calloc(1, sizeof *out->cols);
        if (st == KL_OK && !out->cols) st = kl_seterr(KL_ENOMEM, "profiling \"%s\"", path);
        if (st == KL_OK) {
            out->n_cols = 1;
            st = label_column(&out->cols[0], ds.y, ds.n);
        }
        kl_dataset_free(&ds);
        return st;
    }
    int rows = 0, cols = 0;
    KL_TRY(kl_idx_read_dataset(path, labels, 0, NULL, &ds, &rows, &cols));
    snprintf(out->format, sizeof out->format, "idx");
    out->rows = ds.n;
    out->shape[0] = ds.n;
    if (rows > 1) {
        out->shape[1] = rows;
        out->shape[2] = cols;
        out->n_dims = 3;
    } else {
        out->shape[1] = ds.d;
        out->n_dims = 2;
    }
    kl_status st = kl_digest_dataset(&ds, out->digest);
    out->cols = calloc(2, sizeof *out->cols);
    int64_t total = ds.n * ds.d;
    int64_t stride = total > KL_PROFILE_MAX_VALUES
                         ? (total + KL_PROFILE_MAX_VALUES - 1) / KL_PROFILE_MAX_VALUES
                         : 1;
    kl_column_profile *c = out->cols;
    if (st == KL_OK && c) {
        out->n_cols = 1;
        c->type = total ? KL_COL_NUMERIC : KL_COL_EMPTY;
        c->present = total;
        c->name = strdup("pixel");
        c->values = malloc((size_t)(total / stride + 1) * sizeof *c->values);
    }
    if (st == KL_OK && (!c || !c->name || !c->values))
        st = kl_seterr(KL_ENOMEM, "profiling \"%s\"", path);
    if (st == KL_OK) {
        /* Statistics over every value; the kept sample only feeds distribution tests. */
        double mean = 0, m2 = 0, mn = INFINITY, mx = -INFINITY;
        for (int64_t i = 0; i < total; i++) {
            double v = ds.x[i], d = v - mean;
            mean += d / (double)(i + 1);
            m2 += d * (v - mean);
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
            if (i % stride == 0) c->values[c->n_values++] = v;
        }
        qsort(c->values, (size_t)c->n_values, sizeof *c->values, cmp_double);
        c->mean = total ? mean : NAN;
        c->std = total ? sqrt(m2 / (double)total) : NAN;
        c->min = total ? mn : NAN;
        c->max = total ? mx : NAN;
        if (ds.y) {
            out->n_cols = 2;
            st = label_column(&out->cols[1], ds.y, ds.n);
        }
    }
    kl_dataset_free(&ds);
    return st;
}

kl_status kl_data_profile_file(const char *path, const char *labels, kl_data_profile *out) {
    memset(out, 0, sizeof *out);
    const char *fmt;
    KL_TRY(kl_data_detect_format(path, &fmt));
    kl_status st;
    if (!strcmp(fmt, "csv")) {
        if (labels) {
            kl_seterr(KL_EINVAL, "\"%s\": --labels is for IDX files; CSV labels are a column",
                      path);
            return KL_EINVAL;
        }
        st = profile_csv(path, out);
    } else {
        st = profile_idx(path, labels, out);
    }
    if (st != KL_OK) kl_data_profile_free(out);
    return st;
}

const kl_column_profile *kl_data_profile_column(const kl_data_profile *p, const char *name) {
    for (int j = 0; j < p->n_cols; j++)
        if (p->cols[j].name && !strcmp(p->cols[j].name, name)) return &p->cols[j];
    return NULL;
}

void kl_data_profile_free(kl_data_profile *p) {
    for (int j = 0; p->cols && j < p->n_cols; j++) {
        kl_column_profile *c = &p->cols[j];
        free(c->name);
        free(c->values);
        for (int64_t k = 0; c->cats && k < c->n_cats; k++)
            free(c->cats[k]);
        free(c->cats);
        free(c->cat_count);
    }
    free(p->cols);
    memset(p, 0, sizeof *p);
}
