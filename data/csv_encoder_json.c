/* csv_encoder_json.c — the CSV encoder as JSON, and back with full validation.
 *
 * Layout (version 1):
 *   {"format": "csv", "version": 1, "task": "classification" | "regression",
 *    "label_column": "species", "n_features": 5,
 *    "columns": [{"name": "age", "kind": "numeric", "impute": 37.5},
 *                {"name": "color", "kind": "categorical", "categories": ["blue", "red"],
 *                 "impute": "red"}],
 *    "class_names": ["cat", "dog"]}          (classification only)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/csv_encoder.h"

kl_status kl_csv_encoder_to_json(const kl_csv_encoder *e, cJSON **out) {
    *out = NULL;
    cJSON *j = cJSON_CreateObject();
    if (!j) return kl_seterr(KL_ENOMEM, "encoder JSON");
    int ok = cJSON_AddStringToObject(j, "format", "csv") &&
             cJSON_AddNumberToObject(j, "version", 1) &&
             cJSON_AddStringToObject(j, "task", e->regression ? "regression" : "classification") &&
             cJSON_AddStringToObject(j, "label_column", e->label_column) &&
             cJSON_AddNumberToObject(j, "n_features", e->n_features);
    cJSON *cols = ok ? cJSON_AddArrayToObject(j, "columns") : NULL;
    ok = ok && cols;
    for (int i = 0; ok && i < e->n_columns; i++) {
        const kl_csv_column *c = &e->columns[i];
        cJSON *o = cJSON_CreateObject();
        ok = o && cJSON_AddItemToArray(cols, o) && cJSON_AddStringToObject(o, "name", c->name);
        if (ok && c->kind == KL_COL_NUMERIC) {
            ok = cJSON_AddStringToObject(o, "kind", "numeric") &&
                 cJSON_AddNumberToObject(o, "impute", c->impute);
        } else if (ok) {
            cJSON *cats =
                cJSON_CreateStringArray((const char *const *)c->categories, c->n_categories);
            ok = cJSON_AddStringToObject(o, "kind", "categorical") && cats &&
                 cJSON_AddItemToObject(o, "categories", cats) &&
                 cJSON_AddStringToObject(o, "impute", c->categories[c->impute_category]);
        }
    }
    if (ok && !e->regression) {
        cJSON *names = cJSON_CreateStringArray((const char *const *)e->class_names, e->n_classes);
        ok = names && cJSON_AddItemToObject(j, "class_names", names);
    }
    if (!ok) {
        cJSON_Delete(j);
        return kl_seterr(KL_ENOMEM, "encoder JSON");
    }
    *out = j;
    return KL_OK;
}

/* A JSON string array into a new array of copies; errors name key. */
static kl_status string_array(const cJSON *a, const char *key, char ***out, int *n) {
    *out = NULL;
    *n = 0;
    if (!cJSON_IsArray(a)) return kl_seterr(KL_EFORMAT, "%s: missing or not an array", key);
    int len = cJSON_GetArraySize(a);
    if (len <= 0) return kl_seterr(KL_EFORMAT, "%s: empty", key);
    char **v = calloc((size_t)len, sizeof *v);
    if (!v) return kl_seterr(KL_ENOMEM, "%s", key);
    int i = 0;
    for (const cJSON *it = a->child; it; it = it->next, i++) {
        if (!cJSON_IsString(it) || !it->valuestring) {
            kl_strings_free(v, len);
            return kl_seterr(KL_EFORMAT, "%s[%d]: not a string", key, i);
        }
        if (!(v[i] = strdup(it->valuestring))) {
            kl_strings_free(v, len);
            return kl_seterr(KL_ENOMEM, "%s", key);
        }
    }
    *out = v;
    *n = len;
    return KL_OK;
}

static const char *get_string(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static kl_status column_from_json(const cJSON *o, int i, kl_csv_column *c) {
    char key[64];
    snprintf(key, sizeof key, "columns[%d]", i);
    if (!cJSON_IsObject(o)) return kl_seterr(KL_EFORMAT, "%s: not an object", key);
    const char *name = get_string(o, "name"), *kind = get_string(o, "kind");
    if (!name || !*name) return kl_seterr(KL_EFORMAT, "%s.name: missing or empty", key);
    if (!(c->name = strdup(name))) return kl_seterr(KL_ENOMEM, "%s", key);
    const cJSON *imp = cJSON_GetObjectItemCaseSensitive(o, "impute");
    if (kind && !strcmp(kind, "numeric")) {
        c->kind = KL_COL_NUMERIC;
        if (!cJSON_IsNumber(imp) || !isfinite(imp->valuedouble))
            return kl_seterr(KL_EFORMAT, "%s.impute: missing or not a finite number", key);
        c->impute = imp->valuedouble;
        return KL_OK;
    }
    if (!kind || strcmp(kind, "categorical"))
        return kl_seterr(KL_EFORMAT, "%s.kind: \"%s\" is not numeric or categorical", key,
                         kind ? kind : "(missing)");
    c->kind = KL_COL_CATEGORICAL;
    char ckey[80];
    snprintf(ckey, sizeof ckey, "%s.categories", key);
    KL_TRY(string_array(cJSON_GetObjectItemCaseSensitive(o, "categories"), ckey, &c->categories,
                        &c->n_categories));
    for (int k = 1; k < c->n_categories; k++)
        if (strcmp(c->categories[k - 1], c->categories[k]) >= 0)
            return kl_seterr(KL_EFORMAT, "%s: \"%s\" then \"%s\": not sorted and unique", ckey,
                             c->categories[k - 1], c->categories[k]);
    const char *mode = cJSON_IsString(imp) ? imp->valuestring : NULL;
    c->impute_category = -1;
    for (int k = 0; mode && k < c->n_categories; k++)
        if (!strcmp(mode, c->categories[k])) c->impute_category = k;
    if (c->impute_category < 0)
        return kl_seterr(KL_EFORMAT, "%s.impute: missing or not one of the categories", key);
    return KL_OK;
}

static kl_status from_json(const cJSON *j, kl_csv_encoder *e) {
    kl_status s = KL_OK;
    const char *fmt = get_string(j, "format"), *task = get_string(j, "task"),
               *label = get_string(j, "label_column");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(j, "version"),
                *nf = cJSON_GetObjectItemCaseSensitive(j, "n_features"),
                *cols = cJSON_GetObjectItemCaseSensitive(j, "columns");
    if (!cJSON_IsObject(j)) return kl_seterr(KL_EFORMAT, "not a JSON object");
    if (!fmt || strcmp(fmt, "csv"))
        return kl_seterr(KL_EFORMAT, "format: \"%s\" is not \"csv\"", fmt ? fmt : "(missing)");
    if (!cJSON_IsNumber(ver) || ver->valuedouble != 1)
        return kl_seterr(KL_EUNSUPPORTED, "version: only version 1 is understood");
    if (!task || (strcmp(task, "classification") && strcmp(task, "regression")))
        return kl_seterr(KL_EFORMAT, "task: \"%s\" is not classification or regression",
                         task ? task : "(missing)");
    if (!label || !*label) return kl_seterr(KL_EFORMAT, "label_column: missing or empty");
    if (!cJSON_IsArray(cols) || cJSON_GetArraySize(cols) < 1)
        return kl_seterr(KL_EFORMAT, "columns: missing or empty");
    e->regression = !strcmp(task, "regression");
    e->label_column = strdup(label);
    int n = cJSON_GetArraySize(cols);
    e->columns = calloc((size_t)n, sizeof *e->columns);
    if (!e->label_column || !e->columns) {
        return kl_seterr(KL_ENOMEM, "encoder");
    }
    int i = 0;
    for (const cJSON *it = cols->child; it && !s; it = it->next, i++) {
        e->n_columns = i + 1;
        s = column_from_json(it, i, &e->columns[i]);
        if (s) break;
        const kl_csv_column *c = &e->columns[i];
        if (!strcmp(c->name, e->label_column))
            s = kl_seterr(KL_EFORMAT, "columns[%d].name: \"%s\" is also the label column", i,
                          c->name);
        for (int k = 0; k < i && !s; k++)
            if (!strcmp(e->columns[k].name, c->name))
                s = kl_seterr(KL_EFORMAT, "columns[%d].name: \"%s\" repeats columns[%d]", i,
                              c->name, k);
        e->n_features += c->kind == KL_COL_NUMERIC ? 1 : c->n_categories;
    }
    if (s) return s;
    if (!cJSON_IsNumber(nf) || nf->valuedouble != e->n_features) {
        return kl_seterr(KL_EFORMAT, "n_features: missing or not %d (the columns' total)",
                         e->n_features);
    }
    const cJSON *cn = cJSON_GetObjectItemCaseSensitive(j, "class_names");
    if (!e->regression) {
        KL_TRY(string_array(cn, "class_names", &e->class_names, &e->n_classes));
        for (int a = 0; a < e->n_classes && !s; a++)
            for (int b = 0; b < a && !s; b++)
                if (!strcmp(e->class_names[a], e->class_names[b]))
                    s = kl_seterr(KL_EFORMAT, "class_names[%d]: \"%s\" repeats class_names[%d]", a,
                                  e->class_names[a], b);
        return s;
    }
    if (cn) return kl_seterr(KL_EFORMAT, "class_names: present for a regression task");
    return KL_OK;
}

kl_status kl_csv_encoder_from_json(const cJSON *j, kl_csv_encoder *e) {
    memset(e, 0, sizeof *e);
    kl_status s = from_json(j, e);
    if (s) {
        kl_csv_encoder_free(e);
        return kl_preferr(s, "encoder");
    }
    return KL_OK;
}
