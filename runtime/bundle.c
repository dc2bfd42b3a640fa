/* bundle.c — saving and loading model bundles: kiln.json, the weights, and the orchestration.
 *
 * Loading trusts nothing: every kiln.json field is checked for presence, type and consistency
 * with the architecture, and every tensor against the shape the architecture implies, because
 * a bundle may come from another kiln version, a registry, or a hand edit.
 */
#include "runtime/bundle.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "runtime/bundle_mlmodel.h"
#include "runtime/fileio.h"
#include "runtime/safetensors.h"

/* kiln.json and MLmodel are small; this only guards against reading a wrong, huge file. */
#define KL_BUNDLE_MAX_TEXT ((size_t)1 << 30)

static const char *const task_names[] = {"classification", "regression"};
static const char *const transform_names[] = {"none", "standard", "minmax"};

static int all_finite(const float *x, int n) {
    for (int i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* Checks a bundle before it is written, so save never produces a file load would refuse. */
static kl_status check_for_save(const kl_bundle *b) {
    const kl_mlp_spec *s = &b->spec;
    KL_TRY(kl_mlp_spec_validate(s));
    if (!b->params || b->n_params != kl_mlp_param_count(s))
        return kl_seterr(KL_EINVAL, "params: %lld floats, the architecture needs %lld",
                         (long long)b->n_params, (long long)kl_mlp_param_count(s));
    if (b->n_features != s->dims[0])
        return kl_seterr(KL_EINVAL, "n_features %d differs from the %d model inputs", b->n_features,
                         s->dims[0]);
    int known = 0;
    for (size_t i = 0; i < 3; i++)
        known |= !strcmp(b->transform, transform_names[i]);
    if (!known) return kl_seterr(KL_EINVAL, "transform \"%s\" is unknown", b->transform);
    if (strcmp(b->transform, "none") != 0) {
        if (!b->shift || !b->scale)
            return kl_seterr(KL_EINVAL, "transform \"%s\" needs shift and scale", b->transform);
        if (!all_finite(b->shift, b->n_features) || !all_finite(b->scale, b->n_features))
            return kl_seterr(KL_EINVAL, "transform \"%s\": shift/scale hold NaN or infinity",
                             b->transform);
    }
    int outputs = s->dims[s->n_layers];
    if (s->task == KL_TASK_CLASSIFICATION && b->n_labels != outputs)
        return kl_seterr(KL_EINVAL, "%d label names for %d classes", b->n_labels, outputs);
    if (s->task == KL_TASK_REGRESSION && b->n_labels != 0)
        return kl_seterr(KL_EINVAL, "a regression model has no labels (got %d)", b->n_labels);
    for (int i = 0; i < b->n_labels; i++)
        if (!b->label_names || !b->label_names[i])
            return kl_seterr(KL_EINVAL, "label name %d is missing", i);
    for (int i = 0; b->feature_names && i < b->n_features; i++)
        if (!b->feature_names[i]) return kl_seterr(KL_EINVAL, "feature name %d is missing", i);
    return KL_OK;
}

/* --- kiln.json: writing ---------------------------------------------------------------------- */

/* The double nearest the shortest decimal that reads back as f, so kiln.json shows 0.1 rather
 * than 0.10000000149011612; (float) of it is f again, bit for bit. */
static double short_double(float f) {
    char buf[32];
    for (int digits = 6; digits < 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)f);
        if (strtof(buf, NULL) == f) return strtod(buf, NULL);
    }
    return (double)f; /* 9 digits always round-trip; the exact double does too */
}

static cJSON *float_array(const float *x, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) {
        cJSON *v = cJSON_CreateNumber(short_double(x[i]));
        if (!v || !cJSON_AddItemToArray(a, v)) {
            cJSON_Delete(v);
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

static cJSON *string_array(char *const *s, int n) {
    return cJSON_CreateStringArray((const char *const *)s, n);
}

/* Parses embedded JSON text (encoder, training summary) or yields JSON null for NULL. */
static kl_status embedded(const char *text, const char *what, cJSON **out) {
    *out = text ? cJSON_Parse(text) : cJSON_CreateNull();
    if (!*out) return kl_seterr(KL_EINVAL, "%s is not valid JSON", what);
    if (text && !cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return kl_seterr(KL_EINVAL, "%s must be a JSON object", what);
    }
    return KL_OK;
}

/* Adds item under key, taking ownership: on failure the item is deleted, so callers can chain
 * additions with && and free only the root. */
static int add(cJSON *obj, const char *key, cJSON *item) {
    if (obj && item && cJSON_AddItemToObject(obj, key, item)) return 1;
    cJSON_Delete(item);
    return 0;
}

static kl_status kiln_json_render(const kl_bundle *b, char **text) {
    const kl_mlp_spec *s = &b->spec;
    cJSON *encoder = NULL, *training = NULL, *reference = NULL;
    KL_TRY(embedded(b->encoder_json, "encoder_json", &encoder));
    kl_status st = embedded(b->training_json, "training_json", &training);
    if (st == KL_OK && b->reference_json)
        st = embedded(b->reference_json, "reference_json", &reference);
    if (st != KL_OK) {
        cJSON_Delete(encoder);
        cJSON_Delete(training);
        return st;
    }
    int affine = strcmp(b->transform, "none") != 0;
    cJSON *root = cJSON_CreateObject();
    int ok = add(root, "format_version", cJSON_CreateNumber(KL_BUNDLE_FORMAT_VERSION));
    ok = add(root, "kiln_version", cJSON_CreateString(KILN_VERSION)) && ok;
    /* AddObjectToObject creates and attaches in one step: the sub-objects are never orphaned. */
    cJSON *arch = root ? cJSON_AddObjectToObject(root, "architecture") : NULL;
    cJSON *pre = NULL;
    if (!arch || !ok) {
        cJSON_Delete(root);
        cJSON_Delete(encoder);
        cJSON_Delete(training);
        cJSON_Delete(reference);
        return kl_seterr(KL_ENOMEM, "out of memory rendering kiln.json");
    }
    ok = add(arch, "layers", cJSON_CreateIntArray(s->dims, s->n_layers + 1)) && ok;
    ok = add(arch, "activation", cJSON_CreateString(kl_act_name(s->act))) && ok;
    ok = add(arch, "dropout", cJSON_CreateNumber(short_double(s->dropout))) && ok;
    ok = add(arch, "task", cJSON_CreateString(task_names[s->task])) && ok;
    if (!(pre = cJSON_AddObjectToObject(root, "preprocessing"))) {
        cJSON_Delete(root);
        cJSON_Delete(encoder);
        cJSON_Delete(training);
        cJSON_Delete(reference);
        return kl_seterr(KL_ENOMEM, "out of memory rendering kiln.json");
    }
    ok = add(pre, "transform", cJSON_CreateString(b->transform)) && ok;
    ok =
        add(pre, "shift", affine ? float_array(b->shift, b->n_features) : cJSON_CreateNull()) && ok;
    ok =
        add(pre, "scale", affine ? float_array(b->scale, b->n_features) : cJSON_CreateNull()) && ok;
    ok = add(pre, "feature_names",
             b->feature_names ? string_array(b->feature_names, b->n_features)
                              : cJSON_CreateNull()) &&
         ok;
    ok = add(pre, "encoder", encoder) && ok;
    ok = add(root, "labels",
             b->n_labels ? string_array(b->label_names, b->n_labels) : cJSON_CreateArray()) &&
         ok;
    ok = add(root, "training_data_digest", cJSON_CreateString(b->data_digest)) && ok;
    ok = add(root, "training", training) && ok;
    /* Absent rather than null when there is none, as in bundles older than the profile. */
    if (reference) ok = add(root, "reference", reference) && ok;
    char *out = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!out) return kl_seterr(KL_ENOMEM, "out of memory rendering kiln.json");
    *text = out;
    return KL_OK;
}

/* --- kiln.json: reading ---------------------------------------------------------------------- */

/* A member of an object by name; sets a "missing" error naming the dotted path when absent. */
static const cJSON *member(const cJSON *obj, const char *parent, const char *key, kl_status *s) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v && *s == KL_OK)
        *s = kl_seterr(KL_EFORMAT, "field \"%s%s%s\": missing", parent, *parent ? "." : "", key);
    return v;
}

static kl_status type_error(const char *path, const char *expected) {
    return kl_seterr(KL_EFORMAT, "field \"%s\": expected %s", path, expected);
}

static int is_int_in(const cJSON *v, double lo, double hi) {
    return cJSON_IsNumber(v) && v->valuedouble >= lo && v->valuedouble <= hi &&
           floor(v->valuedouble) == v->valuedouble;
}

/* Reads an array of n floats (exactly n) into a malloc'd buffer. */
static kl_status read_floats(const cJSON *a, const char *path, int n, float **out) {
    char what[64];
    snprintf(what, sizeof what, "an array of %d finite numbers", n);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n) return type_error(path, what);
    *out = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (!*out) return kl_seterr(KL_ENOMEM, "out of memory");
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, a) {
        if (!cJSON_IsNumber(v) || !isfinite((float)v->valuedouble)) return type_error(path, what);
        (*out)[i++] = (float)v->valuedouble;
    }
    return KL_OK;
}

/* Reads an array of n strings into a malloc'd array of strdup'd strings. */
static kl_status read_strings(const cJSON *a, const char *path, int n, char ***out) {
    char what[64];
    snprintf(what, sizeof what, "an array of %d strings", n);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n) return type_error(path, what);
    *out = calloc((size_t)(n > 0 ? n : 1), sizeof(char *));
    if (!*out) return kl_seterr(KL_ENOMEM, "out of memory");
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, a) {
        if (!cJSON_IsString(v)) return type_error(path, what);
        if (!((*out)[i++] = strdup(v->valuestring))) return kl_seterr(KL_ENOMEM, "out of memory");
    }
    return KL_OK;
}

static kl_status parse_architecture(const cJSON *arch, kl_mlp_spec *spec) {
    kl_status s = KL_OK;
    if (!cJSON_IsObject(arch)) return type_error("architecture", "an object");
    const cJSON *layers = member(arch, "architecture", "layers", &s);
    const cJSON *act = member(arch, "architecture", "activation", &s);
    const cJSON *drop = member(arch, "architecture", "dropout", &s);
    const cJSON *task = member(arch, "architecture", "task", &s);
    if (s != KL_OK) return s;
    int n = cJSON_GetArraySize(layers);
    if (!cJSON_IsArray(layers) || n < 2 || n > KL_MAX_LAYERS + 1)
        return kl_seterr(KL_EFORMAT,
                         "field \"architecture.layers\": expected an array of 2 to %d positive "
                         "integers",
                         KL_MAX_LAYERS + 1);
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, layers) {
        if (!is_int_in(v, 1, 1 << 24))
            return type_error("architecture.layers", "an array of positive integers");
        spec->dims[i++] = (int)v->valuedouble;
    }
    spec->n_layers = n - 1;
    if (!cJSON_IsString(act) || kl_act_parse(act->valuestring, &spec->act) != 0)
        return type_error("architecture.activation",
                          "one of \"identity\", \"relu\", \"gelu\", \"tanh\", \"sigmoid\"");
    if (!cJSON_IsNumber(drop) || !(drop->valuedouble >= 0 && drop->valuedouble < 1))
        return type_error("architecture.dropout", "a number in [0,1)");
    spec->dropout = (float)drop->valuedouble;
    if (!cJSON_IsString(task)) return type_error("architecture.task", "a string");
    if (!strcmp(task->valuestring, "classification"))
        spec->task = KL_TASK_CLASSIFICATION;
    else if (!strcmp(task->valuestring, "regression"))
        spec->task = KL_TASK_REGRESSION;
    else
        return type_error("architecture.task", "\"classification\" or \"regression\"");
    if ((s = kl_mlp_spec_validate(spec)) != KL_OK) return kl_preferr(s, "field \"architecture\"");
    return KL_OK;
}

static kl_status parse_preprocessing(const cJSON *pre, kl_bundle *b) {
    kl_status s = KL_OK;
    if (!cJSON_IsObject(pre)) return type_error("preprocessing", "an object");
    const char *P = "preprocessing";
    const cJSON *tr = member(pre, P, "transform", &s), *shift = member(pre, P, "shift", &s),
                *scale = member(pre, P, "scale", &s), *names = member(pre, P, "feature_names", &s),
                *enc = member(pre, P, "encoder", &s);
    if (s != KL_OK) return s;
    int known = 0;
    for (size_t i = 0; cJSON_IsString(tr) && i < 3; i++)
        known |= !strcmp(tr->valuestring, transform_names[i]);
    if (!known)
        return type_error("preprocessing.transform", "\"none\", \"standard\" or \"minmax\"");
    snprintf(b->transform, sizeof b->transform, "%s", tr->valuestring);
    if (strcmp(b->transform, "none") != 0) {
        KL_TRY(read_floats(shift, "preprocessing.shift", b->n_features, &b->shift));
        KL_TRY(read_floats(scale, "preprocessing.scale", b->n_features, &b->scale));
    } else if (!cJSON_IsNull(shift) || !cJSON_IsNull(scale)) {
        return type_error("preprocessing.shift", "null with transform \"none\"");
    }
    if (!cJSON_IsNull(names))
        KL_TRY(
            read_strings(names, "preprocessing.feature_names", b->n_features, &b->feature_names));
    if (!cJSON_IsNull(enc)) {
        if (!cJSON_IsObject(enc)) return type_error("preprocessing.encoder", "an object or null");
        if (!(b->encoder_json = cJSON_PrintUnformatted(enc)))
            return kl_seterr(KL_ENOMEM, "out of memory");
    }
    return KL_OK;
}

static kl_status kiln_json_parse(const char *text, size_t len, kl_bundle *b) {
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long pos = at && at >= text && at <= text + len ? (long)(at - text) : -1;
        return kl_seterr(KL_EFORMAT, "not valid JSON (error near byte %ld)", pos);
    }
    kl_status s = KL_OK;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return kl_seterr(KL_EFORMAT, "not a JSON object");
    }
    const cJSON *fv = member(root, "", "format_version", &s),
                *kv = member(root, "", "kiln_version", &s),
                *arch = member(root, "", "architecture", &s),
                *pre = member(root, "", "preprocessing", &s),
                *labels = member(root, "", "labels", &s),
                *digest = member(root, "", "training_data_digest", &s),
                *training = member(root, "", "training", &s);
    if (s != KL_OK) goto done;
    if (!is_int_in(fv, 0, 1e9)) {
        s = type_error("format_version", "an integer");
        goto done;
    }
    if ((int)fv->valuedouble != KL_BUNDLE_FORMAT_VERSION) {
        s = kl_seterr(KL_EUNSUPPORTED,
                      "field \"format_version\": %d is not supported (this kiln reads %d)",
                      (int)fv->valuedouble, KL_BUNDLE_FORMAT_VERSION);
        goto done;
    }
    if (!cJSON_IsString(kv)) {
        s = type_error("kiln_version", "a string");
        goto done;
    }
    if ((s = parse_architecture(arch, &b->spec)) != KL_OK) goto done;
    b->n_features = b->spec.dims[0];
    if ((s = parse_preprocessing(pre, b)) != KL_OK) goto done;
    int outputs = b->spec.dims[b->spec.n_layers];
    int want = b->spec.task == KL_TASK_CLASSIFICATION ? outputs : 0;
    if (!cJSON_IsArray(labels) || cJSON_GetArraySize(labels) != want) {
        s = kl_seterr(KL_EFORMAT,
                      want ? "field \"labels\": expected an array of %d strings (one per class)"
                           : "field \"labels\": expected an empty array for regression (got %d)",
                      want ? want : cJSON_GetArraySize(labels));
        goto done;
    }
    b->n_labels = want; /* before the read, so kl_bundle_free sees a partly filled array */
    if (want && (s = read_strings(labels, "labels", want, &b->label_names)) != KL_OK) goto done;
    if (!cJSON_IsString(digest) || strlen(digest->valuestring) >= sizeof b->data_digest) {
        s = type_error("training_data_digest", "a string such as \"sha256:<64 hex digits>\"");
        goto done;
    }
    snprintf(b->data_digest, sizeof b->data_digest, "%s", digest->valuestring);
    if (!cJSON_IsNull(training)) {
        if (!cJSON_IsObject(training)) {
            s = type_error("training", "an object or null");
            goto done;
        }
        if (!(b->training_json = cJSON_PrintUnformatted(training))) {
            s = kl_seterr(KL_ENOMEM, "out of memory");
            goto done;
        }
    }
    /* Optional: bundles written before the reference profile have none. monitor/ checks it. */
    const cJSON *reference = cJSON_GetObjectItemCaseSensitive(root, "reference");
    if (reference && !cJSON_IsNull(reference)) {
        if (!cJSON_IsObject(reference)) {
            s = type_error("reference", "an object or null");
            goto done;
        }
        if (!(b->reference_json = cJSON_PrintUnformatted(reference)))
            s = kl_seterr(KL_ENOMEM, "out of memory");
    }
done:
    cJSON_Delete(root);
    return s;
}

/* --- weights --------------------------------------------------------------------------------- */

kl_status kl_bundle_write_weights(const char *path, const kl_mlp_spec *spec, const float *params) {
    int n = 2 * spec->n_layers;
    kl_st_tensor_in t[2 * KL_MAX_LAYERS];
    char names[2 * KL_MAX_LAYERS][24];
    for (int i = 0; i < n; i++) {
        memset(&t[i], 0, sizeof t[i]);
        int64_t off = kl_mlp_param_info(spec, i, names[i], sizeof names[i], &t[i].ndim, t[i].shape);
        t[i].name = names[i];
        t[i].data = params + off;
    }
    /* "format": "pt" is what PyTorch-side loaders (transformers, safetensors.torch) expect. */
    const char *meta[] = {"format", "pt", "kiln_version", KILN_VERSION};
    return kl_safetensors_write(path, t, n, meta, 2);
}

/* Copies every fc tensor into b->params after checking names and shapes. */
static kl_status load_weights(const kl_st_file *f, kl_bundle *b) {
    const kl_mlp_spec *s = &b->spec;
    int n = 2 * s->n_layers;
    char name[24], got[160], want[160];
    for (int i = 0; i < n; i++) {
        int ndim;
        int64_t shape[2];
        kl_mlp_param_info(s, i, name, sizeof name, &ndim, shape);
        if (!kl_safetensors_find(f, name))
            return kl_seterr(KL_EFORMAT, "tensor \"%s\" %s is missing", name,
                             kl_safetensors_shape_str(ndim, shape, want, sizeof want));
    }
    for (int i = 0; i < f->n_tensors; i++) {
        const kl_st_tensor *t = &f->tensors[i];
        int known = 0;
        for (int k = 0; k < n && !known; k++) {
            int ndim;
            int64_t shape[2];
            kl_mlp_param_info(s, k, name, sizeof name, &ndim, shape);
            known = !strcmp(name, t->name);
        }
        if (!known)
            return kl_seterr(KL_EFORMAT,
                             "tensor \"%s\" is not part of a %d-layer model (expected fc1.weight "
                             ".. fc%d.bias)",
                             t->name, s->n_layers, s->n_layers);
    }
    b->n_params = kl_mlp_param_count(s);
    b->params = malloc(sizeof(float) * (size_t)b->n_params);
    if (!b->params)
        return kl_seterr(KL_ENOMEM, "cannot allocate %lld parameters", (long long)b->n_params);
    for (int i = 0; i < n; i++) {
        int ndim;
        int64_t shape[2];
        int64_t off = kl_mlp_param_info(s, i, name, sizeof name, &ndim, shape);
        const kl_st_tensor *t = kl_safetensors_find(f, name);
        int same = t->ndim == ndim;
        for (int d = 0; same && d < ndim; d++)
            same = t->shape[d] == shape[d];
        if (!same)
            return kl_seterr(KL_EFORMAT, "tensor \"%s\": shape %s expected %s", name,
                             kl_safetensors_shape_str(t->ndim, t->shape, got, sizeof got),
                             kl_safetensors_shape_str(ndim, shape, want, sizeof want));
        kl_safetensors_copy_f32(f, t, b->params + off);
    }
    return KL_OK;
}

/* --- save / load ----------------------------------------------------------------------------- */

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static kl_status write_text(const char *dir, const char *name, const char *text) {
    char *path = join(dir, name);
    if (!path) return kl_seterr(KL_ENOMEM, "out of memory");
    kl_status s = kl_file_write_atomic(path, text, strlen(text));
    free(path);
    return s ? kl_preferr(s, "%s", name) : KL_OK;
}

static kl_status save_inner(const char *dir, const kl_bundle *b) {
    KL_TRY(check_for_save(b));
    KL_TRY(kl_file_mkdirs(dir));
    char *path = join(dir, KL_BUNDLE_DATA);
    if (!path) return kl_seterr(KL_ENOMEM, "out of memory");
    kl_status s = kl_bundle_write_weights(path, &b->spec, b->params);
    free(path);
    if (s) return kl_preferr(s, KL_BUNDLE_DATA);
    char *text = NULL;
    if ((s = kiln_json_render(b, &text)) != KL_OK) return kl_preferr(s, KL_BUNDLE_CONFIG);
    s = write_text(dir, KL_BUNDLE_CONFIG, text);
    cJSON_free(text);
    if (s) return s;
    /* MLmodel last: a directory with an MLmodel is a complete bundle. */
    if ((s = kl_mlmodel_render(b, &text)) != KL_OK) return kl_preferr(s, KL_BUNDLE_MLMODEL);
    s = write_text(dir, KL_BUNDLE_MLMODEL, text);
    free(text);
    return s;
}

kl_status kl_bundle_save(const char *dir, const kl_bundle *b) {
    kl_status s = save_inner(dir, b);
    return s ? kl_preferr(s, "save bundle \"%s\"", dir) : KL_OK;
}

/* Reads dir/name whole; a missing file gets a short message since the prefix names it. */
static kl_status read_member(const char *dir, const char *name, char **data, size_t *len) {
    char *path = join(dir, name);
    if (!path) return kl_seterr(KL_ENOMEM, "out of memory");
    kl_status s = kl_file_read(path, KL_BUNDLE_MAX_TEXT, data, len);
    free(path);
    if (s == KL_ENOTFOUND) kl_seterr(s, "file is missing");
    return s ? kl_preferr(s, "%s", name) : KL_OK;
}

static kl_status load_inner(const char *dir, kl_bundle *b) {
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return kl_seterr(KL_ENOTFOUND, "no such directory");
    char *text = NULL;
    size_t len = 0;
    KL_TRY(read_member(dir, KL_BUNDLE_MLMODEL, &text, &len));
    kl_mlmodel_info info;
    kl_status s = kl_mlmodel_parse(text, len, &info);
    free(text);
    if (s) return kl_preferr(s, KL_BUNDLE_MLMODEL);

    KL_TRY(read_member(dir, info.config, &text, &len));
    s = kiln_json_parse(text, len, b);
    free(text);
    if (s) return kl_preferr(s, "%s", info.config);

    char *path = join(dir, info.data);
    if (!path) return kl_seterr(KL_ENOMEM, "out of memory");
    kl_st_file f;
    s = kl_safetensors_read(path, &f);
    free(path);
    if (s == KL_ENOTFOUND) kl_seterr(s, "file is missing");
    if (s) return kl_preferr(s, "%s", info.data);
    s = load_weights(&f, b);
    kl_safetensors_free(&f);
    return s ? kl_preferr(s, "%s", info.data) : KL_OK;
}

kl_status kl_bundle_load(const char *dir, kl_bundle *b) {
    memset(b, 0, sizeof *b);
    kl_status s = load_inner(dir, b);
    if (s) {
        kl_bundle_free(b);
        return kl_preferr(s, "load bundle \"%s\"", dir);
    }
    return KL_OK;
}

static void free_strings(char **s, int n) {
    for (int i = 0; s && i < n; i++)
        free(s[i]);
    free(s);
}

void kl_bundle_free(kl_bundle *b) {
    if (!b) return;
    free(b->params);
    /* Arrays from a failed load may be partly filled; their unused slots are NULL. */
    free_strings(b->feature_names, b->n_features);
    free(b->shift);
    free(b->scale);
    free_strings(b->label_names, b->n_labels);
    free(b->encoder_json);
    free(b->training_json);
    free(b->reference_json);
    memset(b, 0, sizeof *b);
}

void kl_bundle_apply_transform(const kl_bundle *b, float *x, int64_t rows) {
    if (!b->shift || !b->scale || !strcmp(b->transform, "none")) return;
    int d = b->n_features;
    for (int64_t r = 0; r < rows; r++) {
        float *row = x + r * d;
        for (int j = 0; j < d; j++)
            row[j] = (row[j] - b->shift[j]) * b->scale[j];
    }
}
