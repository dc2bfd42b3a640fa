/* prepare.c — config validation and the read → split → encode → transform pipeline.
 *
 * IDX encoder JSON (version 1):
 *   {"format": "idx", "version": 1, "task": "classification", "rows": 28, "cols": 28,
 *    "n_features": 784, "class_names": ["0", ..., "9"]}
 * CSV encoder JSON: see csv_encoder_json.c.
 */
#include "data/prepare.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/csv.h"
#include "data/csv_encoder.h"
#include "data/digest.h"
#include "data/idx.h"
#include "data/split.h"
#include "data/transform.h"

void kl_prepared_data_free(kl_prepared_data *p) {
    kl_dataset_free(&p->train);
    kl_dataset_free(&p->val);
    kl_dataset_free(&p->test);
    free(p->shift);
    free(p->scale);
    free(p->encoder_json);
    kl_reference_free(&p->reference);
    memset(p, 0, sizeof *p);
}

static int is_set(const char *s) {
    return s && *s;
}

/* Checks every config key that does not need the files. */
static kl_status validate(const kl_data_config *c, int *is_idx, int *regression) {
    if (!c->format || (strcmp(c->format, "idx") && strcmp(c->format, "csv")))
        return kl_seterr(KL_EINVAL, "data.format: \"%s\" is not one of idx, csv",
                         c->format ? c->format : "(unset)");
    *is_idx = !strcmp(c->format, "idx");
    const char *task = c->task ? c->task : "classification";
    if (strcmp(task, "classification") && strcmp(task, "regression"))
        return kl_seterr(KL_EINVAL, "data.task: \"%s\" is not one of classification, regression",
                         task);
    *regression = !strcmp(task, "regression");
    if (!is_set(c->train)) return kl_seterr(KL_EINVAL, "data.train: no training file given");
    if (!(c->val_fraction >= 0 && c->val_fraction < 1))
        return kl_seterr(KL_EINVAL, "data.val_fraction: %g outside [0,1)", c->val_fraction);
    if (c->limit < 0)
        return kl_seterr(KL_EINVAL, "data.limit: %lld must be >= 0 (0 = all rows)",
                         (long long)c->limit);
    kl_transform_kind k;
    if (kl_transform_parse(c->transform ? c->transform : "none", &k))
        return kl_preferr(KL_EINVAL, "data.transform");
    if (c->n_categorical < 0 || (c->n_categorical && !c->categorical))
        return kl_seterr(KL_EINVAL, "data.categorical: bad list");
    if (c->n_label_names < 0 || (c->n_label_names && !c->label_names))
        return kl_seterr(KL_EINVAL, "data.label_names: bad list");
    for (int i = 0; i < c->n_categorical; i++)
        if (!is_set(c->categorical[i]))
            return kl_seterr(KL_EINVAL, "data.categorical[%d]: empty column name", i);
    for (int i = 0; i < c->n_label_names; i++) {
        if (!is_set(c->label_names[i]))
            return kl_seterr(KL_EINVAL, "data.label_names[%d]: empty name", i);
        for (int k2 = 0; k2 < i; k2++)
            if (!strcmp(c->label_names[i], c->label_names[k2]))
                return kl_seterr(KL_EINVAL, "data.label_names[%d]: \"%s\" repeats entry %d", i,
                                 c->label_names[i], k2);
    }
    if (*is_idx) {
        if (*regression)
            return kl_seterr(KL_EINVAL, "data.task: regression needs csv data (IDX labels are "
                                        "class indices)");
        if (!is_set(c->train_labels))
            return kl_seterr(KL_EINVAL, "data.train_labels: required for idx data");
        if (is_set(c->test) && !is_set(c->test_labels))
            return kl_seterr(KL_EINVAL, "data.test_labels: required when data.test is set");
        if (c->n_categorical) return kl_seterr(KL_EINVAL, "data.categorical: only for csv data");
    } else {
        if (c->n_label_names)
            return kl_seterr(KL_EINVAL, "data.label_names: only for idx data (CSV class names "
                                        "are the label column's values)");
        if (is_set(c->train_labels) || is_set(c->test_labels))
            return kl_seterr(KL_EINVAL, "data.train_labels/test_labels: only for idx data (CSV "
                                        "labels are the column data.label_column)");
    }
    return KL_OK;
}

static kl_status json_text(cJSON *j, char **out) {
    *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return *out ? KL_OK : kl_seterr(KL_ENOMEM, "encoder JSON");
}

static kl_status idx_encoder_json(const kl_dataset *ds, int rows, int cols, char **out) {
    cJSON *j = cJSON_CreateObject();
    cJSON *names = cJSON_CreateStringArray((const char *const *)ds->class_names, ds->n_classes);
    int ok = j && names && cJSON_AddStringToObject(j, "format", "idx") &&
             cJSON_AddNumberToObject(j, "version", 1) &&
             cJSON_AddStringToObject(j, "task", "classification") &&
             cJSON_AddNumberToObject(j, "rows", rows) && cJSON_AddNumberToObject(j, "cols", cols) &&
             cJSON_AddNumberToObject(j, "n_features", (double)ds->d) &&
             cJSON_AddItemToObject(j, "class_names", names);
    if (!ok) {
        if (!j || !cJSON_GetObjectItemCaseSensitive(j, "class_names")) cJSON_Delete(names);
        cJSON_Delete(j);
        return kl_seterr(KL_ENOMEM, "encoder JSON");
    }
    return json_text(j, out);
}

/* Splits `all` (already limited) into out->train and out->val. */
static kl_status split_dataset(const kl_data_config *c, const kl_dataset *all,
                               kl_prepared_data *out) {
    int64_t *tr, *va, nt, nv;
    KL_TRY(kl_split_indices(all->n, c->val_fraction, c->seed, &tr, &nt, &va, &nv));
    kl_status s = kl_dataset_take(all, tr, nt, &out->train);
    if (!s) s = kl_dataset_take(all, va, nv, &out->val);
    free(tr);
    free(va);
    return s;
}

static kl_status prepare_idx(const kl_data_config *c, kl_prepared_data *out) {
    kl_dataset all, test;
    memset(&test, 0, sizeof test);
    int rows, cols;
    KL_TRY(kl_idx_read_dataset(c->train, c->train_labels, c->n_label_names,
                               c->n_label_names ? (char *const *)c->label_names : NULL, &all, &rows,
                               &cols));
    if (c->limit > 0 && c->limit < all.n) all.n = c->limit;
    kl_status s = kl_digest_dataset(&all, out->digest);
    if (!s) s = split_dataset(c, &all, out);
    if (!s) s = idx_encoder_json(&all, rows, cols, &out->encoder_json);
    if (!s && is_set(c->test)) {
        int tr, tc;
        s = kl_idx_read_dataset(c->test, c->test_labels, all.n_classes, all.class_names, &test, &tr,
                                &tc);
        if (!s && (tr != rows || tc != cols))
            s = kl_seterr(KL_EFORMAT,
                          "\"%s\": items are %dx%d, the training items (\"%s\") are "
                          "%dx%d",
                          c->test, tr, tc, c->train, rows, cols);
        if (!s && c->limit > 0 && c->limit < test.n) test.n = c->limit;
        if (!s) s = kl_digest_dataset(&test, out->test_digest);
        if (!s) {
            /* Move the test set into out; a limited one keeps its larger allocation. */
            out->test = test;
            memset(&test, 0, sizeof test);
        }
    }
    kl_dataset_free(&test);
    kl_dataset_free(&all);
    return s;
}

static kl_status prepare_csv(const kl_data_config *c, int regression, kl_prepared_data *out) {
    kl_csv_table t, tt;
    kl_csv_encoder e;
    memset(&tt, 0, sizeof tt);
    memset(&e, 0, sizeof e);
    KL_TRY(kl_csv_read(c->train, &t));
    int64_t *tr = NULL, *va = NULL, nt = 0, nv = 0;
    int64_t n = c->limit > 0 && c->limit < t.n_rows ? c->limit : t.n_rows;
    const char *label = is_set(c->label_column) ? c->label_column : "label";
    cJSON *j = NULL;
    kl_status s = kl_split_indices(n, c->val_fraction, c->seed, &tr, &nt, &va, &nv);
    /* Vocabularies come from the whole file, statistics from the training split only. */
    if (!s)
        s = kl_csv_encoder_fit(&e, &t, label, c->categorical, c->n_categorical, regression, tr, nt);
    if (!s) {
        kl_csv_truncate(&t, n);
        s = kl_digest_csv(&t, out->digest);
    }
    if (!s) s = kl_csv_encode(&e, &t, tr, nt, KL_LABELS_REQUIRED, &out->train);
    if (!s) s = kl_csv_encode(&e, &t, va, nv, KL_LABELS_REQUIRED, &out->val);
    if (!s) s = kl_csv_encoder_to_json(&e, &j);
    if (!s) s = json_text(j, &out->encoder_json);
    if (!s && is_set(c->test)) {
        s = kl_csv_read(c->test, &tt);
        if (!s) {
            kl_csv_truncate(&tt, c->limit);
            s = kl_digest_csv(&tt, out->test_digest);
        }
        if (!s) s = kl_csv_encode(&e, &tt, NULL, tt.n_rows, KL_LABELS_REQUIRED, &out->test);
    }
    free(tr);
    free(va);
    kl_csv_encoder_free(&e);
    kl_csv_free(&t);
    kl_csv_free(&tt);
    return s;
}

kl_status kl_data_prepare(const kl_data_config *cfg, kl_prepared_data *out) {
    memset(out, 0, sizeof *out);
    int is_idx = 0, regression = 0;
    KL_TRY(validate(cfg, &is_idx, &regression));
    kl_status s = is_idx ? prepare_idx(cfg, out) : prepare_csv(cfg, regression, out);
    if (!s && out->train.n == 0)
        s = kl_seterr(KL_EINVAL, "data.train: \"%s\" has no rows to train on", cfg->train);
    kl_transform_kind kind = KL_TRANSFORM_NONE;
    if (!s) s = kl_transform_parse(cfg->transform ? cfg->transform : "none", &kind);
    if (!s) s = kl_transform_fit(kind, &out->train, &out->shift, &out->scale);
    /* Before the transform: drift compares what clients send with what training saw. */
    if (!s)
        s = kl_reference_fit(out->train.x, out->train.n, (int)out->train.d, out->train.y,
                             out->train.n_classes, &out->reference);
    if (s) {
        kl_prepared_data_free(out);
        return s;
    }
    snprintf(out->transform, sizeof out->transform, "%s", kl_transform_name(kind));
    out->n_features = (int)out->train.d;
    kl_transform_apply(out->shift, out->scale, out->train.x, out->train.n, out->train.d);
    kl_transform_apply(out->shift, out->scale, out->val.x, out->val.n, out->val.d);
    kl_transform_apply(out->shift, out->scale, out->test.x, out->test.n, out->test.d);
    return KL_OK;
}

/* Reads an input file with an IDX encoder object. */
static kl_status load_idx(const cJSON *j, const char *path, const char *labels, kl_dataset *out) {
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "rows"),
                *c = cJSON_GetObjectItemCaseSensitive(j, "cols"),
                *nf = cJSON_GetObjectItemCaseSensitive(j, "n_features"),
                *cn = cJSON_GetObjectItemCaseSensitive(j, "class_names");
    if (!cJSON_IsNumber(r) || !cJSON_IsNumber(c) || r->valuedouble < 1 || c->valuedouble < 1 ||
        r->valuedouble > 1e9 || c->valuedouble > 1e9 || r->valuedouble != (int)r->valuedouble ||
        c->valuedouble != (int)c->valuedouble)
        return kl_seterr(KL_EFORMAT, "encoder: rows/cols: missing or not positive integers");
    int rows = (int)r->valuedouble, cols = (int)c->valuedouble;
    if (!cJSON_IsNumber(nf) || nf->valuedouble != (double)rows * cols)
        return kl_seterr(KL_EFORMAT, "encoder: n_features: missing or not rows*cols");
    int n = cJSON_GetArraySize(cn);
    if (!cJSON_IsArray(cn) || n < 1)
        return kl_seterr(KL_EFORMAT, "encoder: class_names: missing or empty");
    const char **names = calloc((size_t)n, sizeof *names);
    if (!names) return kl_seterr(KL_ENOMEM, "encoder: class_names");
    int i = 0;
    for (const cJSON *it = cn->child; it; it = it->next, i++) {
        if (!cJSON_IsString(it)) {
            free(names);
            return kl_seterr(KL_EFORMAT, "encoder: class_names[%d]: not a string", i);
        }
        names[i] = it->valuestring;
    }
    int ir, ic;
    kl_status s = kl_idx_read_dataset(path, labels, n, (char *const *)names, out, &ir, &ic);
    free(names);
    if (!s && (ir != rows || ic != cols)) {
        kl_dataset_free(out);
        s = kl_seterr(KL_EFORMAT, "\"%s\": items are %dx%d, the model was trained on %dx%d", path,
                      ir, ic, rows, cols);
    }
    return s;
}

kl_status kl_data_load_input(const char *encoder_json, const char *path, const char *labels_path,
                             int require_labels, kl_dataset *out) {
    memset(out, 0, sizeof *out);
    if (!encoder_json) return kl_seterr(KL_EINVAL, "no data encoder (the bundle has none)");
    if (!path) return kl_seterr(KL_EINVAL, "no input file");
    cJSON *j = cJSON_Parse(encoder_json);
    if (!j) return kl_seterr(KL_EFORMAT, "encoder: not valid JSON");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "format"),
                *v = cJSON_GetObjectItemCaseSensitive(j, "version");
    const char *fmt = cJSON_IsString(f) ? f->valuestring : NULL;
    kl_status s = KL_OK;
    if (!fmt || (strcmp(fmt, "idx") && strcmp(fmt, "csv"))) {
        s = kl_seterr(KL_EFORMAT, "encoder: format: \"%s\" is not idx or csv",
                      fmt ? fmt : "(missing)");
    } else if (!strcmp(fmt, "idx")) {
        if (!cJSON_IsNumber(v) || v->valuedouble != 1)
            s = kl_seterr(KL_EUNSUPPORTED, "encoder: version: only version 1 is understood");
        else if (require_labels && !labels_path)
            s = kl_seterr(KL_EINVAL, "labels are required: give the IDX labels file");
        else
            s = load_idx(j, path, labels_path, out);
    } else {
        kl_csv_encoder e;
        kl_csv_table t;
        memset(&t, 0, sizeof t);
        if (labels_path)
            s = kl_seterr(KL_EINVAL,
                          "a labels file is only for IDX input; CSV labels are a column");
        if (!s) s = kl_csv_encoder_from_json(j, &e);
        if (!s) {
            s = kl_csv_read(path, &t);
            if (!s)
                s = kl_csv_encode(&e, &t, NULL, t.n_rows,
                                  require_labels ? KL_LABELS_REQUIRED : KL_LABELS_IF_PRESENT, out);
            kl_csv_free(&t);
            kl_csv_encoder_free(&e);
        }
    }
    cJSON_Delete(j);
    return s;
}
