/* csv_encoder.c — fitting, applying and (de)serialising the CSV feature encoder. */
#include "data/csv_encoder.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* At most this many known values are listed in an "unknown category" message. */
#define LIST_MAX 8

static int cmp_strp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A class label and its numeric value, for sorting numeric labels as numbers. */
typedef struct {
    const char *s; /* label text */
    double v;      /* its value, when every label is a number */
} label_key;

static int cmp_label_num(const void *a, const void *b) {
    const label_key *x = a, *y = b;
    if (x->v != y->v) return (x->v > y->v) - (x->v < y->v);
    return strcmp(x->s, y->s);
}

/* Appends up to LIST_MAX names, comma-separated, to buf. */
static void list_names(char *buf, size_t cap, char *const *names, int n) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && i < LIST_MAX && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", names[i]);
    if (n > LIST_MAX && used < cap) snprintf(buf + used, cap - used, ", ... (%d in all)", n);
}

/* Index of s in the strcmp-sorted array v[0..n), or -1. */
static int find_sorted(char *const *v, int n, const char *s) {
    char *const *hit = bsearch(&s, v, (size_t)n, sizeof *v, cmp_strp);
    return hit ? (int)(hit - v) : -1;
}

void kl_csv_encoder_free(kl_csv_encoder *e) {
    for (int i = 0; e->columns && i < e->n_columns; i++) {
        free(e->columns[i].name);
        kl_strings_free(e->columns[i].categories, e->columns[i].n_categories);
    }
    free(e->columns);
    free(e->label_column);
    kl_strings_free(e->class_names, e->n_classes);
    memset(e, 0, sizeof *e);
}

/* The distinct non-missing values of column c over all rows of t, sorted by strcmp, as a new
 * array of copies. A missing value is an error when missing_is_error (labels). */
static kl_status distinct_values(const kl_csv_table *t, int c, int missing_is_error, char ***out,
                                 int *n_out) {
    *out = NULL;
    *n_out = 0;
    const char **v = malloc((size_t)(t->n_rows ? t->n_rows : 1) * sizeof *v);
    if (!v)
        return kl_seterr(KL_ENOMEM, "\"%s\": values of column \"%s\"", t->path,
                         kl_csv_colname(t, c));
    int64_t n = 0;
    for (int64_t r = 0; r < t->n_rows; r++) {
        const char *s = kl_csv_cell(t, r, c);
        if (kl_csv_is_missing(s)) {
            if (!missing_is_error) continue;
            free(v);
            return kl_seterr(KL_EFORMAT, "\"%s\": line %lld, column \"%s\": missing label \"%s\"",
                             t->path, (long long)t->lines[r], kl_csv_colname(t, c), s);
        }
        v[n++] = s;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_strp);
    int64_t u = 0;
    for (int64_t i = 0; i < n; i++)
        if (!u || strcmp(v[u - 1], v[i])) v[u++] = v[i];
    kl_status s = KL_OK;
    if (u > 1000000)
        s = kl_seterr(KL_EUNSUPPORTED, "\"%s\": column \"%s\" has %lld distinct values", t->path,
                      kl_csv_colname(t, c), (long long)u);
    if (!s) s = kl_strings_copy((char *const *)v, u, out);
    free(v);
    if (!s) *n_out = (int)u;
    return s;
}

/* Median of the numeric column c over the statistics rows. */
static kl_status fit_numeric(const kl_csv_table *t, int c, const int64_t *rows, int64_t n,
                             double *median) {
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    if (!v) return kl_seterr(KL_ENOMEM, "median of column \"%s\"", kl_csv_colname(t, c));
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        const char *s = kl_csv_cell(t, rows[i], c);
        if (kl_csv_is_missing(s)) continue;
        if (!kl_csv_parse_number(s, &v[k])) {
            free(v);
            return kl_seterr(KL_EFORMAT,
                             "\"%s\": line %lld, column \"%s\": text \"%s\" in a numeric column "
                             "(list the column in data.categorical if it is categorical)",
                             t->path, (long long)t->lines[rows[i]], kl_csv_colname(t, c), s);
        }
        k++;
    }
    if (!k) {
        free(v);
        return kl_seterr(KL_EFORMAT,
                         "\"%s\": column \"%s\": every value in the training split is "
                         "missing, so there is no median to impute with",
                         t->path, kl_csv_colname(t, c));
    }
    qsort(v, (size_t)k, sizeof *v, cmp_double);
    *median = k % 2 ? v[k / 2] : 0.5 * (v[k / 2 - 1] + v[k / 2]);
    free(v);
    return KL_OK;
}

/* Most frequent category of column c over the statistics rows (ties: the first in order). */
static kl_status fit_mode(const kl_csv_table *t, int c, kl_csv_column *col, const int64_t *rows,
                          int64_t n) {
    int64_t *count = calloc((size_t)col->n_categories, sizeof *count);
    if (!count) return kl_seterr(KL_ENOMEM, "mode of column \"%s\"", col->name);
    int64_t seen = 0;
    for (int64_t i = 0; i < n; i++) {
        const char *s = kl_csv_cell(t, rows[i], c);
        if (kl_csv_is_missing(s)) continue;
        int k = find_sorted(col->categories, col->n_categories, s);
        if (k >= 0) count[k]++, seen++;
    }
    int best = 0;
    for (int k = 1; k < col->n_categories; k++)
        if (count[k] > count[best]) best = k;
    free(count);
    if (!seen)
        return kl_seterr(KL_EFORMAT,
                         "\"%s\": column \"%s\": every value in the training split is "
                         "missing, so there is no mode to impute with",
                         t->path, col->name);
    col->impute_category = best;
    return KL_OK;
}

/* Orders class names: numerically when every one is a number, else bytewise. */
static kl_status sort_classes(char **names, int n) {
    label_key *k = malloc((size_t)(n ? n : 1) * sizeof *k);
    if (!k) return kl_seterr(KL_ENOMEM, "sorting %d classes", n);
    int numeric = 1;
    for (int i = 0; i < n; i++) {
        k[i].s = names[i];
        if (!kl_csv_parse_number(names[i], &k[i].v)) numeric = 0;
    }
    if (numeric) {
        qsort(k, (size_t)n, sizeof *k, cmp_label_num);
        for (int i = 0; i < n; i++)
            names[i] = (char *)k[i].s;
    }
    free(k);
    return KL_OK; /* the names were already strcmp-sorted by distinct_values */
}

kl_status kl_csv_encoder_fit(kl_csv_encoder *e, const kl_csv_table *t, const char *label_column,
                             const char *const *categorical, int n_categorical, int regression,
                             const int64_t *stat_rows, int64_t n_stat) {
    memset(e, 0, sizeof *e);
    char cols[512];
    int lc = kl_csv_find_column(t, label_column);
    if (lc < 0) {
        size_t used = 0;
        cols[0] = '\0';
        for (int c = 0; c < t->n_cols && used < sizeof cols; c++)
            used += (size_t)snprintf(cols + used, sizeof cols - used, "%s%s", c ? ", " : "",
                                     kl_csv_colname(t, c));
        return kl_seterr(KL_EINVAL,
                         "data.label_column: \"%s\" is not a column of \"%s\" "
                         "(columns: %s)",
                         label_column, t->path, cols);
    }
    for (int i = 0; i < n_categorical; i++) {
        int c = kl_csv_find_column(t, categorical[i]);
        if (c < 0)
            return kl_seterr(KL_EINVAL, "data.categorical: \"%s\" is not a column of \"%s\"",
                             categorical[i], t->path);
        if (c == lc)
            return kl_seterr(KL_EINVAL, "data.categorical: \"%s\" is the label column",
                             categorical[i]);
    }
    if (t->n_cols < 2)
        return kl_seterr(KL_EINVAL, "\"%s\": no feature columns besides the label \"%s\"", t->path,
                         label_column);
    if (n_stat <= 0)
        return kl_seterr(KL_EINVAL, "\"%s\": no training rows to fit the encoder on", t->path);
    kl_status s = KL_OK;
    e->regression = regression;
    e->label_column = strdup(label_column);
    e->columns = calloc((size_t)t->n_cols - 1, sizeof *e->columns);
    if (!e->label_column || !e->columns) {
        s = kl_seterr(KL_ENOMEM, "encoder for \"%s\"", t->path);
        goto fail;
    }
    for (int c = 0; c < t->n_cols && !s; c++) {
        if (c == lc) continue;
        kl_csv_column *col = &e->columns[e->n_columns++];
        const char *name = kl_csv_colname(t, c);
        if (!(col->name = strdup(name))) {
            s = kl_seterr(KL_ENOMEM, "encoder for \"%s\"", t->path);
            break;
        }
        col->kind = KL_COL_NUMERIC;
        for (int i = 0; i < n_categorical; i++)
            if (!strcmp(categorical[i], name)) col->kind = KL_COL_CATEGORICAL;
        if (col->kind == KL_COL_NUMERIC) {
            s = fit_numeric(t, c, stat_rows, n_stat, &col->impute);
            e->n_features++;
            continue;
        }
        s = distinct_values(t, c, 0, &col->categories, &col->n_categories);
        if (!s && !col->n_categories)
            s = kl_seterr(KL_EFORMAT, "\"%s\": categorical column \"%s\" has no values", t->path,
                          name);
        if (!s) s = fit_mode(t, c, col, stat_rows, n_stat);
        e->n_features += col->n_categories;
    }
    if (s) goto fail;
    if (!regression) {
        if ((s = distinct_values(t, lc, 1, &e->class_names, &e->n_classes))) goto fail;
        if (!e->n_classes) {
            s = kl_seterr(KL_EFORMAT, "\"%s\": no rows, so no classes", t->path);
            goto fail;
        }
        if ((s = sort_classes(e->class_names, e->n_classes))) goto fail;
    }
    return KL_OK;
fail:
    kl_csv_encoder_free(e);
    return s;
}

/* Where each encoder column sits in a table being encoded. */
typedef struct {
    int *col_of;        /* [n_columns] table column of each encoder column */
    int label_col;      /* table column of the label, or -1 */
    char **class_order; /* [n_classes] class names sorted by strcmp, borrowed strings */
    int *class_index;   /* [n_classes] class index of class_order[i] */
} encode_plan;

static void plan_free(encode_plan *p) {
    free(p->col_of);
    free(p->class_order);
    free(p->class_index);
}

static kl_status plan_make(const kl_csv_encoder *e, const kl_csv_table *t, kl_labels_mode mode,
                           encode_plan *p) {
    memset(p, 0, sizeof *p);
    p->col_of = malloc((size_t)(e->n_columns ? e->n_columns : 1) * sizeof *p->col_of);
    if (!p->col_of) return kl_seterr(KL_ENOMEM, "encoding \"%s\"", t->path);
    for (int i = 0; i < e->n_columns; i++) {
        p->col_of[i] = kl_csv_find_column(t, e->columns[i].name);
        if (p->col_of[i] < 0)
            return kl_seterr(KL_EFORMAT,
                             "\"%s\": column \"%s\", a feature of the model, is not "
                             "in the header",
                             t->path, e->columns[i].name);
    }
    p->label_col = kl_csv_find_column(t, e->label_column);
    for (int c = 0; c < t->n_cols; c++) {
        if (c == p->label_col) continue;
        int known = 0;
        for (int i = 0; i < e->n_columns && !known; i++)
            known = p->col_of[i] == c;
        if (!known)
            return kl_seterr(KL_EFORMAT,
                             "\"%s\": column \"%s\" is not a feature of the model nor "
                             "its label \"%s\"",
                             t->path, kl_csv_colname(t, c), e->label_column);
    }
    if (mode == KL_LABELS_IGNORE) p->label_col = -1;
    if (mode == KL_LABELS_REQUIRED && p->label_col < 0)
        return kl_seterr(KL_EFORMAT, "\"%s\": no label column \"%s\"", t->path, e->label_column);
    if (p->label_col >= 0 && !e->regression) {
        int n = e->n_classes;
        p->class_order = malloc((size_t)n * sizeof *p->class_order);
        p->class_index = malloc((size_t)n * sizeof *p->class_index);
        if (!p->class_order || !p->class_index)
            return kl_seterr(KL_ENOMEM, "encoding \"%s\"", t->path);
        memcpy(p->class_order, e->class_names, (size_t)n * sizeof *p->class_order);
        qsort(p->class_order, (size_t)n, sizeof *p->class_order, cmp_strp);
        for (int i = 0; i < n; i++)
            for (int k = 0; k < n; k++)
                if (p->class_order[i] == e->class_names[k]) p->class_index[i] = k;
    }
    return KL_OK;
}

/* Feature names: "age", "color=red", ... */
static kl_status feature_names(const kl_csv_encoder *e, char ***out) {
    char **names = calloc((size_t)(e->n_features ? e->n_features : 1), sizeof *names);
    if (!names) return kl_seterr(KL_ENOMEM, "feature names");
    int f = 0;
    for (int i = 0; i < e->n_columns; i++) {
        const kl_csv_column *col = &e->columns[i];
        if (col->kind == KL_COL_NUMERIC) {
            names[f] = strdup(col->name);
            if (!names[f++]) goto oom;
            continue;
        }
        for (int k = 0; k < col->n_categories; k++) {
            size_t len = strlen(col->name) + strlen(col->categories[k]) + 2;
            if (!(names[f] = malloc(len))) goto oom;
            snprintf(names[f++], len, "%s=%s", col->name, col->categories[k]);
        }
    }
    *out = names;
    return KL_OK;
oom:
    kl_strings_free(names, e->n_features);
    return kl_seterr(KL_ENOMEM, "feature names");
}

/* Encodes one row's features into x and its label into y/t. */
static kl_status encode_row(const kl_csv_encoder *e, const kl_csv_table *t, const encode_plan *p,
                            int64_t r, float *x, int32_t *y, float *tv) {
    char known[512];
    int64_t line = t->lines[r];
    for (int i = 0; i < e->n_columns; i++) {
        const kl_csv_column *col = &e->columns[i];
        const char *s = kl_csv_cell(t, r, p->col_of[i]);
        if (col->kind == KL_COL_NUMERIC) {
            double v = col->impute;
            if (!kl_csv_is_missing(s) && !kl_csv_parse_number(s, &v))
                return kl_seterr(
                    KL_EFORMAT,
                    "\"%s\": line %lld, column \"%s\": text \"%s\" in a numeric column "
                    "(list the column in data.categorical if it is categorical)",
                    t->path, (long long)line, col->name, s);
            *x++ = (float)v;
            continue;
        }
        int k = col->impute_category;
        if (!kl_csv_is_missing(s) && (k = find_sorted(col->categories, col->n_categories, s)) < 0) {
            list_names(known, sizeof known, col->categories, col->n_categories);
            return kl_seterr(KL_EFORMAT,
                             "\"%s\": line %lld, column \"%s\": unknown category "
                             "\"%s\" (known: %s)",
                             t->path, (long long)line, col->name, s, known);
        }
        memset(x, 0, (size_t)col->n_categories * sizeof *x);
        x[k] = 1.0f;
        x += col->n_categories;
    }
    if (p->label_col < 0) return KL_OK;
    const char *s = kl_csv_cell(t, r, p->label_col);
    if (kl_csv_is_missing(s))
        return kl_seterr(KL_EFORMAT, "\"%s\": line %lld, column \"%s\": missing label \"%s\"",
                         t->path, (long long)line, e->label_column, s);
    if (e->regression) {
        double v;
        if (!kl_csv_parse_number(s, &v))
            return kl_seterr(KL_EFORMAT,
                             "\"%s\": line %lld, column \"%s\": regression target "
                             "\"%s\" is not a number",
                             t->path, (long long)line, e->label_column, s);
        *tv = (float)v;
        return KL_OK;
    }
    int k = find_sorted(p->class_order, e->n_classes, s);
    if (k < 0) {
        list_names(known, sizeof known, e->class_names, e->n_classes);
        return kl_seterr(KL_EFORMAT,
                         "\"%s\": line %lld, column \"%s\": unknown label \"%s\" "
                         "(classes: %s)",
                         t->path, (long long)line, e->label_column, s, known);
    }
    *y = p->class_index[k];
    return KL_OK;
}

kl_status kl_csv_encode(const kl_csv_encoder *e, const kl_csv_table *t, const int64_t *rows,
                        int64_t n, kl_labels_mode labels, kl_dataset *out) {
    memset(out, 0, sizeof *out);
    if (!rows) n = t->n_rows;
    encode_plan p;
    kl_status s = plan_make(e, t, labels, &p);
    if (s) goto done;
    int64_t d = e->n_features;
    out->d = d;
    if ((s = feature_names(e, &out->feature_names))) goto done;
    if (!e->regression) {
        out->n_classes = e->n_classes;
        if ((s = kl_strings_copy(e->class_names, e->n_classes, &out->class_names))) goto done;
    }
    int has_y = p.label_col >= 0 && !e->regression, has_t = p.label_col >= 0 && e->regression;
    if (n > 0) {
        out->x = malloc((size_t)n * (size_t)d * sizeof(float));
        if (has_y) out->y = malloc((size_t)n * sizeof(int32_t));
        if (has_t) out->t = malloc((size_t)n * sizeof(float));
        if (!out->x || (has_y && !out->y) || (has_t && !out->t)) {
            s = kl_seterr(KL_ENOMEM, "\"%s\": %lld rows of %lld features", t->path, (long long)n,
                          (long long)d);
            goto done;
        }
    }
    for (int64_t i = 0; i < n && !s; i++) {
        int64_t r = rows ? rows[i] : i;
        s = encode_row(e, t, &p, r, out->x + i * d, has_y ? out->y + i : NULL,
                       has_t ? out->t + i : NULL);
    }
    out->n = n;
done:
    plan_free(&p);
    if (s) kl_dataset_free(out);
    return s;
}
