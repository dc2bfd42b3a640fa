/* reference.c — fitting the reference profile, and its JSON form.
 *
 * kiln.json "reference" (version 1):
 *   {"version": 1, "rows": 48000, "bins": "right-closed",
 *    "features": [{"quantiles": [101 numbers], "edges": [k numbers], "fractions": [k+1]}, ...],
 *    "class_prior": [n_classes fractions] | null,
 *    "prediction_prior": null
 *      | {"split": "validation", "rows": 12000, "fractions": [n_classes]}       (classification)
 *      | {"split": "training", "rows": 500, "quantiles": [101], "edges": [k],
 *         "fractions": [k+1]}                                                   (regression)}
 */
#include "data/reference.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The value kiln.json keeps: 7 significant digits, read back. */
static double round7(double v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", v);
    return strtod(buf, NULL);
}

/* Sorts n floats ascending by an LSD radix sort on their order-preserving 32-bit keys (4 passes
 * of 8 bits, a pass skipped when every key shares its byte): O(n), where qsort took ~5 s for
 * Fashion-MNIST's 784 columns of 54000 values. tmp holds n keys. */
static void sort_floats(float *v, uint32_t *tmp, int64_t n) {
    uint32_t *key = (uint32_t *)v; /* sorted in place as keys, turned back into floats last */
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], sizeof u);
        key[i] = u & 0x80000000u ? ~u : u | 0x80000000u;
    }
    uint32_t *src = key, *dst = tmp;
    for (int shift = 0; shift < 32; shift += 8) {
        int64_t count[257] = {0};
        for (int64_t i = 0; i < n; i++)
            count[((src[i] >> shift) & 0xff) + 1]++;
        if (count[((src[0] >> shift) & 0xff) + 1] == n) continue;
        for (int b = 0; b < 256; b++)
            count[b + 1] += count[b];
        for (int64_t i = 0; i < n; i++)
            dst[count[(src[i] >> shift) & 0xff]++] = src[i];
        uint32_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != key) memcpy(key, src, (size_t)n * sizeof *key);
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = key[i] & 0x80000000u ? key[i] & 0x7fffffffu : ~key[i];
        memcpy(&v[i], &u, sizeof u);
    }
}

/* Values of s[0..n) (ascending) that are <= e. */
static int64_t count_le(const float *s, int64_t n, double e) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if ((double)s[mid] <= e)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Profiles sorted finite values s[0..n), n >= 1. */
static void column_fit(const float *s, int64_t n, kl_ref_column *c) {
    for (int k = 0; k < KL_REF_QUANTILES; k++) {
        /* numpy's "linear" method: h = (n - 1) p, between s[floor h] and the next value. */
        double h = (double)(n - 1) * k / 100.0;
        int64_t lo = (int64_t)floor(h);
        if (lo >= n - 1) lo = n - 1;
        double frac = h - (double)lo;
        double a = s[lo], b = lo + 1 < n ? s[lo + 1] : a;
        /* numpy's _lerp: from the nearer end, so that equal neighbours give them exactly. */
        double v = frac >= 0.5 ? b - (b - a) * (1 - frac) : a + (b - a) * frac;
        c->q[k] = round7(v);
    }
    /* Rounding cannot reorder distinct values but keeps the sequence non-decreasing anyway. */
    for (int k = 1; k < KL_REF_QUANTILES; k++)
        if (c->q[k] < c->q[k - 1]) c->q[k] = c->q[k - 1];
    c->n_edges = 0;
    for (int k = 10; k <= 90; k += 10)
        if (c->n_edges == 0 || c->q[k] > c->edges[c->n_edges - 1]) c->edges[c->n_edges++] = c->q[k];
    kl_ref_bin_fractions(c, s, n, c->fractions);
    for (int i = 0; i <= c->n_edges; i++)
        c->fractions[i] = round7(c->fractions[i]);
}

void kl_ref_bin_fractions(const kl_ref_column *c, const float *sorted, int64_t n, double *out) {
    int64_t below = 0;
    for (int i = 0; i <= c->n_edges; i++) {
        int64_t upto = i < c->n_edges ? count_le(sorted, n, c->edges[i]) : n;
        out[i] = (double)(upto - below) / (double)n;
        below = upto;
    }
}

/* Profiles values v[0..n) in place (the finite ones are kept and sorted; tmp holds n keys); a
 * column without a finite value gets the profile of the single value 0 (only reachable by a
 * hand-built call). */
static void column_fit_values(float *v, int64_t n, uint32_t *tmp, kl_ref_column *c) {
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(v[i])) v[m++] = v[i];
    if (m == 0) v[m++] = 0.0f;
    sort_floats(v, tmp, m);
    column_fit(v, m, c);
}

void kl_reference_free(kl_reference *ref) {
    if (!ref) return;
    free(ref->features);
    free(ref->class_prior);
    free(ref->prediction_prior);
    memset(ref, 0, sizeof *ref);
}

kl_status kl_reference_fit(const float *x, int64_t n, int d, const int32_t *y, int n_classes,
                           kl_reference *out) {
    memset(out, 0, sizeof *out);
    if (d < 0 || n < 0 || (d > 0 && (n == 0 || !x)) || (y && n_classes < 1))
        return kl_seterr(KL_EINVAL, "reference profile: %lld rows of %d features, %d classes",
                         (long long)n, d, n_classes);
    out->rows = n;
    out->n_features = d;
    out->features = calloc((size_t)(d > 0 ? d : 1), sizeof *out->features);
    if (!out->features) return kl_seterr(KL_ENOMEM, "reference profile of %d features", d);
    if (y) {
        out->n_classes = n_classes;
        out->class_prior = calloc((size_t)n_classes, sizeof *out->class_prior);
        if (!out->class_prior) {
            kl_reference_free(out);
            return kl_seterr(KL_ENOMEM, "reference class prior");
        }
        for (int64_t i = 0; i < n; i++) {
            if (y[i] < 0 || y[i] >= n_classes) {
                kl_reference_free(out);
                return kl_seterr(KL_EINVAL, "reference profile: row %lld: label %d outside [0,%d)",
                                 (long long)i, y[i], n_classes);
            }
            out->class_prior[y[i]] += 1;
        }
        for (int c = 0; c < n_classes; c++)
            out->class_prior[c] = n ? round7(out->class_prior[c] / (double)n) : 0;
    }
    /* Features go out in blocks of FIT_BLOCK: a block's columns are gathered row by row (one
     * pass over each row's cache lines rather than one per feature), then each is sorted. */
    enum { FIT_BLOCK = 16 };
    int failed = 0;
#pragma omp parallel
    {
        size_t cells = (size_t)(n > 0 ? n : 1);
        float *buf = malloc(cells * FIT_BLOCK * sizeof *buf);
        uint32_t *tmp = malloc(cells * sizeof *tmp);
        if (!buf || !tmp) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int j0 = 0; j0 < d; j0 += FIT_BLOCK) {
            int w = d - j0 < FIT_BLOCK ? d - j0 : FIT_BLOCK;
            if (!buf || !tmp) continue;
            for (int64_t i = 0; i < n; i++)
                for (int k = 0; k < w; k++)
                    buf[(size_t)k * cells + i] = x[i * d + j0 + k];
            for (int k = 0; k < w; k++)
                column_fit_values(buf + (size_t)k * cells, n, tmp, &out->features[j0 + k]);
        }
        free(buf);
        free(tmp);
    }
    if (failed) {
        kl_reference_free(out);
        return kl_seterr(KL_ENOMEM, "reference profile: sort buffers of %lld values", (long long)n);
    }
    return KL_OK;
}

kl_status kl_reference_set_predictions(kl_reference *ref, const float *out, int64_t n, int n_out,
                                       const char *split) {
    int cls = ref->n_classes > 0;
    if (n < 1 || !out)
        return kl_seterr(KL_EINVAL, "prediction prior: no predictions on the %s split", split);
    if (cls ? n_out != ref->n_classes : n_out != 1)
        return kl_seterr(KL_EINVAL, "prediction prior: %d outputs per row, expected %d", n_out,
                         cls ? ref->n_classes : 1);
    if (cls) {
        double *p = calloc((size_t)n_out, sizeof *p);
        if (!p) return kl_seterr(KL_ENOMEM, "prediction prior");
        for (int64_t i = 0; i < n; i++) {
            const float *row = out + i * n_out;
            int best = 0;
            for (int c = 1; c < n_out; c++)
                if (row[c] > row[best]) best = c;
            p[best] += 1;
        }
        for (int c = 0; c < n_out; c++)
            p[c] = round7(p[c] / (double)n);
        free(ref->prediction_prior);
        ref->prediction_prior = p;
    } else {
        float *buf = malloc((size_t)n * sizeof *buf);
        uint32_t *tmp = malloc((size_t)n * sizeof *tmp);
        if (buf && tmp) {
            memcpy(buf, out, (size_t)n * sizeof *buf);
            column_fit_values(buf, n, tmp, &ref->prediction);
        }
        free(buf);
        free(tmp);
        if (!buf || !tmp) return kl_seterr(KL_ENOMEM, "prediction prior");
    }
    ref->has_prediction = 1;
    ref->prediction_rows = n;
    snprintf(ref->prediction_split, sizeof ref->prediction_split, "%s", split);
    return KL_OK;
}

/* --- JSON ------------------------------------------------------------------------------------ */

static cJSON *numbers(const double *v, int n) {
    return cJSON_CreateDoubleArray(v, n);
}

/* Adds a column's three arrays to obj; 0 on allocation failure. */
static int add_column(cJSON *obj, const kl_ref_column *c) {
    return cJSON_AddItemToObject(obj, "quantiles", numbers(c->q, KL_REF_QUANTILES)) &&
           cJSON_AddItemToObject(obj, "edges", numbers(c->edges, c->n_edges)) &&
           cJSON_AddItemToObject(obj, "fractions", numbers(c->fractions, c->n_edges + 1));
}

kl_status kl_reference_to_json(const kl_reference *ref, char **text) {
    *text = NULL;
    cJSON *root = cJSON_CreateObject();
    int ok = root && cJSON_AddNumberToObject(root, "version", KL_REF_FORMAT_VERSION) &&
             cJSON_AddNumberToObject(root, "rows", (double)ref->rows) &&
             cJSON_AddStringToObject(root, "bins", "right-closed");
    cJSON *feats = ok ? cJSON_AddArrayToObject(root, "features") : NULL;
    ok = ok && feats;
    for (int j = 0; ok && j < ref->n_features; j++) {
        cJSON *f = cJSON_CreateObject();
        ok = f && cJSON_AddItemToArray(feats, f) && add_column(f, &ref->features[j]);
    }
    if (ok)
        ok = ref->class_prior ? cJSON_AddItemToObject(root, "class_prior",
                                                      numbers(ref->class_prior, ref->n_classes))
                              : cJSON_AddNullToObject(root, "class_prior") != NULL;
    if (ok && !ref->has_prediction) {
        ok = cJSON_AddNullToObject(root, "prediction_prior") != NULL;
    } else if (ok) {
        cJSON *p = cJSON_AddObjectToObject(root, "prediction_prior");
        ok = p && cJSON_AddStringToObject(p, "split", ref->prediction_split) &&
             cJSON_AddNumberToObject(p, "rows", (double)ref->prediction_rows);
        if (ok && ref->n_classes > 0)
            ok = cJSON_AddItemToObject(p, "fractions",
                                       numbers(ref->prediction_prior, ref->n_classes));
        else if (ok)
            ok = add_column(p, &ref->prediction);
    }
    *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return *text ? KL_OK : kl_seterr(KL_ENOMEM, "out of memory rendering the reference profile");
}

/* Reads an array of n finite numbers (n < 0: any length up to max, returned in *got). */
static kl_status read_numbers(const cJSON *a, const char *path, int n, int max, double *out,
                              int *got) {
    int len = cJSON_GetArraySize(a);
    if (!cJSON_IsArray(a) || (n >= 0 ? len != n : len > max)) {
        if (n >= 0) return kl_seterr(KL_EFORMAT, "%s: expected an array of %d numbers", path, n);
        return kl_seterr(KL_EFORMAT, "%s: expected an array of at most %d numbers", path, max);
    }
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, a) {
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
            return kl_seterr(KL_EFORMAT, "%s[%d]: expected a finite number", path, i);
        out[i++] = v->valuedouble;
    }
    if (got) *got = len;
    return KL_OK;
}

static kl_status check_fractions(const double *f, int n, const char *path) {
    double sum = 0;
    for (int i = 0; i < n; i++) {
        if (f[i] < 0 || f[i] > 1)
            return kl_seterr(KL_EFORMAT, "%s[%d]: %g is not a fraction", path, i, f[i]);
        sum += f[i];
    }
    /* Each fraction carries 7 digits: their sum may miss 1 by a few units of 1e-7 each. */
    if (fabs(sum - 1) > 1e-5 * (n + 1))
        return kl_seterr(KL_EFORMAT, "%s: fractions sum to %.9g, not 1", path, sum);
    return KL_OK;
}

static kl_status column_parse(const cJSON *o, const char *path, kl_ref_column *c) {
    char p[96];
    if (!cJSON_IsObject(o)) return kl_seterr(KL_EFORMAT, "%s: expected an object", path);
    snprintf(p, sizeof p, "%s.quantiles", path);
    KL_TRY(read_numbers(cJSON_GetObjectItemCaseSensitive(o, "quantiles"), p, KL_REF_QUANTILES, 0,
                        c->q, NULL));
    for (int k = 1; k < KL_REF_QUANTILES; k++)
        if (c->q[k] < c->q[k - 1])
            return kl_seterr(KL_EFORMAT, "%s[%d]: %g is below the previous quantile", p, k,
                             c->q[k]);
    snprintf(p, sizeof p, "%s.edges", path);
    KL_TRY(read_numbers(cJSON_GetObjectItemCaseSensitive(o, "edges"), p, -1, KL_REF_MAX_EDGES,
                        c->edges, &c->n_edges));
    for (int k = 1; k < c->n_edges; k++)
        if (!(c->edges[k] > c->edges[k - 1]))
            return kl_seterr(KL_EFORMAT, "%s: not strictly ascending at %d", p, k);
    snprintf(p, sizeof p, "%s.fractions", path);
    KL_TRY(read_numbers(cJSON_GetObjectItemCaseSensitive(o, "fractions"), p, c->n_edges + 1, 0,
                        c->fractions, NULL));
    return check_fractions(c->fractions, c->n_edges + 1, p);
}

static int is_count(const cJSON *v) {
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 9e15 &&
           floor(v->valuedouble) == v->valuedouble;
}

static kl_status parse_root(const cJSON *root, int n_features, kl_reference *out) {
    if (!cJSON_IsObject(root)) return kl_seterr(KL_EFORMAT, "expected an object");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "version"),
                *rows = cJSON_GetObjectItemCaseSensitive(root, "rows"),
                *bins = cJSON_GetObjectItemCaseSensitive(root, "bins"),
                *feats = cJSON_GetObjectItemCaseSensitive(root, "features"),
                *prior = cJSON_GetObjectItemCaseSensitive(root, "class_prior"),
                *pred = cJSON_GetObjectItemCaseSensitive(root, "prediction_prior");
    if (!cJSON_IsNumber(ver) || ver->valuedouble != KL_REF_FORMAT_VERSION)
        return kl_seterr(KL_EUNSUPPORTED, "version: only %d is understood", KL_REF_FORMAT_VERSION);
    if (!is_count(rows)) return kl_seterr(KL_EFORMAT, "rows: expected a count");
    out->rows = (int64_t)rows->valuedouble;
    if (!cJSON_IsString(bins) || strcmp(bins->valuestring, "right-closed"))
        return kl_seterr(KL_EUNSUPPORTED, "bins: only \"right-closed\" is understood");
    int d = cJSON_GetArraySize(feats);
    if (!cJSON_IsArray(feats) || (n_features > 0 && d != n_features))
        return kl_seterr(KL_EFORMAT, "features: expected an array of %d profiles (one per input)",
                         n_features);
    out->features = calloc((size_t)(d > 0 ? d : 1), sizeof *out->features);
    if (!out->features) return kl_seterr(KL_ENOMEM, "reference profile of %d features", d);
    out->n_features = d;
    int j = 0;
    const cJSON *f;
    cJSON_ArrayForEach(f, feats) {
        char path[32];
        snprintf(path, sizeof path, "features[%d]", j);
        KL_TRY(column_parse(f, path, &out->features[j++]));
    }
    if (!cJSON_IsNull(prior)) {
        int c = cJSON_GetArraySize(prior);
        if (!cJSON_IsArray(prior) || c < 1)
            return kl_seterr(KL_EFORMAT, "class_prior: expected null or an array of fractions");
        if (!(out->class_prior = calloc((size_t)c, sizeof *out->class_prior)))
            return kl_seterr(KL_ENOMEM, "class prior");
        out->n_classes = c;
        KL_TRY(read_numbers(prior, "class_prior", c, 0, out->class_prior, NULL));
        KL_TRY(check_fractions(out->class_prior, c, "class_prior"));
    }
    if (!pred || cJSON_IsNull(pred)) return KL_OK;
    if (!cJSON_IsObject(pred))
        return kl_seterr(KL_EFORMAT, "prediction_prior: expected null or an object");
    const cJSON *split = cJSON_GetObjectItemCaseSensitive(pred, "split"),
                *prows = cJSON_GetObjectItemCaseSensitive(pred, "rows");
    if (!cJSON_IsString(split) || strlen(split->valuestring) >= sizeof out->prediction_split)
        return kl_seterr(KL_EFORMAT, "prediction_prior.split: expected \"validation\" or "
                                     "\"training\"");
    if (!is_count(prows)) return kl_seterr(KL_EFORMAT, "prediction_prior.rows: expected a count");
    snprintf(out->prediction_split, sizeof out->prediction_split, "%s", split->valuestring);
    out->prediction_rows = (int64_t)prows->valuedouble;
    if (out->n_classes > 0) {
        if (!(out->prediction_prior = calloc((size_t)out->n_classes, sizeof(double))))
            return kl_seterr(KL_ENOMEM, "prediction prior");
        KL_TRY(read_numbers(cJSON_GetObjectItemCaseSensitive(pred, "fractions"),
                            "prediction_prior.fractions", out->n_classes, 0, out->prediction_prior,
                            NULL));
        KL_TRY(
            check_fractions(out->prediction_prior, out->n_classes, "prediction_prior.fractions"));
    } else {
        KL_TRY(column_parse(pred, "prediction_prior", &out->prediction));
    }
    out->has_prediction = 1;
    return KL_OK;
}

kl_status kl_reference_from_json(const char *text, int n_features, kl_reference *out) {
    memset(out, 0, sizeof *out);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    if (!root) return kl_seterr(KL_EFORMAT, "reference: not valid JSON");
    kl_status s = parse_root(root, n_features, out);
    cJSON_Delete(root);
    if (s) {
        kl_reference_free(out);
        return kl_preferr(s, "reference");
    }
    return KL_OK;
}

/* --- the profile's semantics ----------------------------------------------------------------- */

int kl_ref_bin(const kl_ref_column *c, double v) {
    int b = 0;
    while (b < c->n_edges && c->edges[b] < v)
        b++;
    return b;
}

double kl_ref_cdf(const kl_ref_column *c, double v) {
    const double *q = c->q;
    if (!(v >= q[0])) return 0;
    if (v >= q[KL_REF_QUANTILES - 1]) return 1;
    int lo = 0, hi = KL_REF_QUANTILES - 1; /* q[lo] <= v < q[hi] */
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (q[mid] <= v)
            lo = mid;
        else
            hi = mid;
    }
    return (lo + (v - q[lo]) / (q[hi] - q[lo])) / 100.0;
}

double kl_ref_cdf_left(const kl_ref_column *c, double v) {
    const double *q = c->q;
    if (!(v > q[0])) return 0;
    if (v > q[KL_REF_QUANTILES - 1]) return 1;
    int lo = 0, hi = KL_REF_QUANTILES - 1; /* q[lo] < v <= q[hi] */
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (q[mid] < v)
            lo = mid;
        else
            hi = mid;
    }
    return (lo + (v - q[lo]) / (q[hi] - q[lo])) / 100.0;
}
