/* test_bundle.c — model bundles: save → load round trips bit for bit, and every kind of damaged
 * file (safetensors, kiln.json, MLmodel, missing files) is refused with a message that names
 * the file and the field or tensor. Also the safetensors reader on hand-made headers and the
 * ONNX export's graph, decoded back with the same protobuf-c schema. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "proto/onnx.pb-c.h"
#include "runtime/bundle.h"
#include "runtime/fileio.h"
#include "runtime/safetensors.h"

/* --- fixtures -------------------------------------------------------------------------------- */

/* A 5-7-3 ReLU classifier with a standard transform; arrays live in the struct itself. */
typedef struct {
    kl_bundle b; /* points into the arrays below */
    float params[7 * 5 + 7 + 3 * 7 + 3];
    float shift[5], scale[5];
    char *labels[3];
    char *features[5];
} fixture;

static void make_classifier(fixture *f) {
    memset(f, 0, sizeof *f);
    kl_bundle *b = &f->b;
    b->spec.n_layers = 2;
    b->spec.dims[0] = 5;
    b->spec.dims[1] = 7;
    b->spec.dims[2] = 3;
    b->spec.act = KL_ACT_RELU;
    b->spec.dropout = 0.1f;
    b->spec.task = KL_TASK_CLASSIFICATION;
    b->n_params = (int64_t)(sizeof f->params / sizeof f->params[0]);
    /* Values with full mantissas, both signs, tiny and large magnitudes: a lossy round trip
     * (decimal printing, byte order) shows up as a bit difference. */
    uint32_t x = 12345;
    for (int64_t i = 0; i < b->n_params; i++) {
        x = x * 1664525u + 1013904223u;
        f->params[i] = ((float)(x >> 8) / 16777216.0f - 0.5f) * (i % 7 == 0 ? 1e-6f : 3.0f);
    }
    f->params[3] = 1.0e30f;
    f->params[4] = -0.0f;
    b->params = f->params;
    b->n_features = 5;
    snprintf(b->transform, sizeof b->transform, "standard");
    for (int i = 0; i < 5; i++) {
        f->shift[i] = 0.1f * (float)i - 0.333333343f;
        f->scale[i] = 1.0f / (0.7f + (float)i);
    }
    b->shift = f->shift;
    b->scale = f->scale;
    static char *labels[] = {"cat", "dog", "bird \"quoted\""};
    static char *features[] = {"age", "height", "weight", "score", "x\u00e9"};
    memcpy(f->labels, labels, sizeof labels);
    memcpy(f->features, features, sizeof features);
    b->n_labels = 3;
    b->label_names = f->labels;
    b->feature_names = f->features;
    snprintf(b->data_digest, sizeof b->data_digest,
             "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    b->encoder_json = "{\"columns\":[\"age\",\"height\"],\"impute\":{\"age\":3.5}}";
    b->training_json = "{\"epochs\":3,\"val_accuracy\":0.875}";
    /* Opaque to runtime/ (data/reference.h owns its schema): carried through as it is. */
    b->reference_json = "{\"version\":1,\"rows\":2,\"features\":[]}";
}

/* A fresh directory under KILN_TEST_TMP (or /tmp) for one test. */
static void tmp_dir(char *out, size_t cap, const char *name) {
    const char *base = getenv("KILN_TEST_TMP");
    if (!base || !*base) base = "/tmp";
    int n = snprintf(out, cap, "%s/test_bundle_%d/%s", base, (int)getpid(), name);
    assert_true(n > 0 && (size_t)n < cap);
    assert_int_equal(kl_file_mkdirs(out), KL_OK);
}

static void path_in(char *out, size_t cap, const char *dir, const char *file) {
    int n = snprintf(out, cap, "%s/%s", dir, file);
    assert_true(n > 0 && (size_t)n < cap);
}

/* Saves the classifier fixture into a fresh directory named name. */
static void saved_classifier(char *dir, size_t cap, const char *name) {
    fixture f;
    make_classifier(&f);
    tmp_dir(dir, cap, name);
    if (kl_bundle_save(dir, &f.b) != KL_OK) fail_msg("save: %s", kl_errmsg());
}

static char *slurp(const char *path, size_t *len) {
    char *data = NULL;
    assert_int_equal(kl_file_read(path, (size_t)1 << 30, &data, len), KL_OK);
    return data;
}

static void spit(const char *path, const void *data, size_t len) {
    assert_int_equal(kl_file_write_atomic(path, data, len), KL_OK);
}

/* Replaces the first occurrence of from with to (same length or not) in a file. */
static void replace_in_file(const char *path, const char *from, const char *to) {
    size_t len;
    char *data = slurp(path, &len);
    /* memmem: the safetensors length prefix holds NUL bytes. */
    char *at = memmem(data, len, from, strlen(from));
    if (!at) fail_msg("\"%s\" not found in %s", from, path);
    size_t fl = strlen(from), tl = strlen(to);
    char *out = malloc(len - fl + tl + 1);
    size_t pre = (size_t)(at - data);
    memcpy(out, data, pre);
    memcpy(out + pre, to, tl);
    memcpy(out + pre + tl, at + fl, len - pre - fl);
    spit(path, out, len - fl + tl);
    free(out);
    free(data);
}

/* Loading dir must fail, with a message holding every given fragment (NULL-terminated). */
static void expect_load_fails(const char *dir, ...) {
    kl_bundle b;
    kl_clearerr();
    kl_status s = kl_bundle_load(dir, &b);
    if (s == KL_OK) {
        kl_bundle_free(&b);
        fail_msg("loading %s succeeded but should fail", dir);
    }
    const char *msg = kl_errmsg();
    char prefix[600];
    snprintf(prefix, sizeof prefix, "load bundle \"%s\": ", dir);
    if (strncmp(msg, prefix, strlen(prefix)) != 0) fail_msg("message lacks the prefix: %s", msg);
    va_list ap;
    va_start(ap, dir);
    for (const char *frag; (frag = va_arg(ap, const char *)) != NULL;)
        if (!strstr(msg, frag)) fail_msg("message lacks \"%s\": %s", frag, msg);
    va_end(ap);
    /* A failed load leaves nothing to free. */
    assert_null(b.params);
    assert_null(b.label_names);
    assert_null(b.shift);
}

/* Edits kiln.json through cJSON: edit(root) changes the tree, which is written back. */
static void edit_kiln_json(const char *dir, void (*edit)(cJSON *root)) {
    char path[512];
    path_in(path, sizeof path, dir, "kiln.json");
    size_t len;
    char *text = slurp(path, &len);
    cJSON *root = cJSON_Parse(text);
    assert_non_null(root);
    free(text);
    edit(root);
    char *out = cJSON_Print(root);
    spit(path, out, strlen(out));
    cJSON_free(out);
    cJSON_Delete(root);
}

static cJSON *get(cJSON *root, const char *a, const char *b) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(root, a);
    return b ? cJSON_GetObjectItemCaseSensitive(v, b) : v;
}

/* --- round trips ----------------------------------------------------------------------------- */

static void assert_same_bundle(const kl_bundle *a, const kl_bundle *b) {
    assert_int_equal(a->spec.n_layers, b->spec.n_layers);
    for (int i = 0; i <= a->spec.n_layers; i++)
        assert_int_equal(a->spec.dims[i], b->spec.dims[i]);
    assert_int_equal(a->spec.act, b->spec.act);
    assert_int_equal(a->spec.task, b->spec.task);
    assert_memory_equal(&a->spec.dropout, &b->spec.dropout, sizeof(float));
    assert_int_equal(a->n_params, b->n_params);
    assert_memory_equal(a->params, b->params, sizeof(float) * (size_t)a->n_params);
    assert_int_equal(a->n_features, b->n_features);
    assert_string_equal(a->transform, b->transform);
    if (a->shift) {
        assert_memory_equal(a->shift, b->shift, sizeof(float) * (size_t)a->n_features);
        assert_memory_equal(a->scale, b->scale, sizeof(float) * (size_t)a->n_features);
    } else {
        assert_null(b->shift);
        assert_null(b->scale);
    }
    assert_int_equal(a->n_labels, b->n_labels);
    for (int i = 0; i < a->n_labels; i++)
        assert_string_equal(a->label_names[i], b->label_names[i]);
    if (a->feature_names)
        for (int i = 0; i < a->n_features; i++)
            assert_string_equal(a->feature_names[i], b->feature_names[i]);
    else
        assert_null(b->feature_names);
    assert_string_equal(a->data_digest, b->data_digest);
    if (a->encoder_json)
        assert_string_equal(a->encoder_json, b->encoder_json);
    else
        assert_null(b->encoder_json);
    if (a->training_json)
        assert_string_equal(a->training_json, b->training_json);
    else
        assert_null(b->training_json);
    /* A bundle saved without a reference profile (as older kiln did) loads with none. */
    if (a->reference_json)
        assert_string_equal(a->reference_json, b->reference_json);
    else
        assert_null(b->reference_json);
}

static void test_roundtrip_classifier(void **state) {
    (void)state;
    fixture f;
    make_classifier(&f);
    char dir[512], dir2[512];
    tmp_dir(dir, sizeof dir, "roundtrip");
    if (kl_bundle_save(dir, &f.b) != KL_OK) fail_msg("save: %s", kl_errmsg());
    kl_bundle b;
    if (kl_bundle_load(dir, &b) != KL_OK) fail_msg("load: %s", kl_errmsg());
    assert_same_bundle(&f.b, &b);
    /* A loaded bundle saves to the same content again. */
    tmp_dir(dir2, sizeof dir2, "roundtrip2");
    if (kl_bundle_save(dir2, &b) != KL_OK) fail_msg("save again: %s", kl_errmsg());
    kl_bundle c;
    if (kl_bundle_load(dir2, &c) != KL_OK) fail_msg("load again: %s", kl_errmsg());
    assert_same_bundle(&b, &c);
    kl_bundle_free(&c);
    kl_bundle_free(&b);

    /* The MLmodel carries the kiln flavor and the tensor signature. */
    char path[600];
    size_t len;
    path_in(path, sizeof path, dir, "MLmodel");
    char *ml = slurp(path, &len);
    assert_non_null(strstr(ml, "flavors:\n  kiln:\n"));
    assert_non_null(strstr(ml, "\"shape\": [-1, 5]"));
    assert_non_null(strstr(ml, "\"name\": \"probabilities\""));
    assert_non_null(strstr(ml, "\"shape\": [-1, 3]"));
    assert_null(strstr(ml, "python_function"));
    free(ml);
    /* The safetensors header is padded to 8 bytes and carries format: pt. */
    path_in(path, sizeof path, dir, "model.safetensors");
    char *st = slurp(path, &len);
    uint64_t n = 0;
    for (int i = 0; i < 8; i++)
        n |= (uint64_t)(uint8_t)st[i] << (8 * i);
    assert_int_equal(n % 8, 0);
    assert_int_equal(len, 8 + n + sizeof f.params);
    free(st);
    kl_st_file sf;
    assert_int_equal(kl_safetensors_read(path, &sf), KL_OK);
    assert_string_equal(kl_safetensors_meta(&sf, "format"), "pt");
    assert_int_equal(sf.n_tensors, 4);
    assert_string_equal(sf.tensors[0].name, "fc1.weight");
    kl_safetensors_free(&sf);
}

static void test_roundtrip_regression(void **state) {
    (void)state;
    float params[4 * 3 + 3 + 1 * 3 + 1];
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++)
        params[i] = 0.25f * (float)i - 1;
    kl_bundle a;
    memset(&a, 0, sizeof a);
    a.spec.n_layers = 2;
    a.spec.dims[0] = 4;
    a.spec.dims[1] = 3;
    a.spec.dims[2] = 1;
    a.spec.act = KL_ACT_GELU;
    a.spec.task = KL_TASK_REGRESSION;
    a.n_params = (int64_t)(sizeof params / sizeof params[0]);
    a.params = params;
    a.n_features = 4;
    snprintf(a.transform, sizeof a.transform, "none");
    char dir[512];
    tmp_dir(dir, sizeof dir, "regression");
    if (kl_bundle_save(dir, &a) != KL_OK) fail_msg("save: %s", kl_errmsg());
    kl_bundle b;
    if (kl_bundle_load(dir, &b) != KL_OK) fail_msg("load: %s", kl_errmsg());
    assert_same_bundle(&a, &b);
    kl_bundle_free(&b);
}

static void test_apply_transform(void **state) {
    (void)state;
    fixture f;
    make_classifier(&f);
    float x[10];
    for (int i = 0; i < 10; i++)
        x[i] = (float)i;
    kl_bundle_apply_transform(&f.b, x, 2);
    for (int r = 0; r < 2; r++)
        for (int j = 0; j < 5; j++) {
            float want = ((float)(r * 5 + j) - f.shift[j]) * f.scale[j];
            assert_memory_equal(&x[r * 5 + j], &want, sizeof want);
        }
    snprintf(f.b.transform, sizeof f.b.transform, "none");
    kl_bundle_apply_transform(&f.b, x, 2); /* no-op */
}

static void test_save_refuses_bad_bundle(void **state) {
    (void)state;
    fixture f;
    make_classifier(&f);
    f.b.n_labels = 2;
    char dir[512];
    tmp_dir(dir, sizeof dir, "badsave");
    assert_int_not_equal(kl_bundle_save(dir, &f.b), KL_OK);
    assert_non_null(strstr(kl_errmsg(), "save bundle"));
    assert_non_null(strstr(kl_errmsg(), "label"));
    make_classifier(&f);
    f.shift[2] = 0.0f / 0.0f;
    assert_int_not_equal(kl_bundle_save(dir, &f.b), KL_OK);
    assert_non_null(strstr(kl_errmsg(), "NaN"));
}

/* --- damaged safetensors --------------------------------------------------------------------- */

static void test_truncated_safetensors(void **state) {
    (void)state;
    char dir[512], path[600];
    saved_classifier(dir, sizeof dir, "truncated");
    path_in(path, sizeof path, dir, "model.safetensors");
    size_t len;
    char *data = slurp(path, &len);
    spit(path, data, len - 10);
    expect_load_fails(dir, "model.safetensors: ", "tensor \"fc2.bias\"", "truncated", NULL);
    spit(path, data, 5);
    expect_load_fails(dir, "model.safetensors: ", "too short", NULL);
    spit(path, data, 8 + 20); /* the header is cut */
    expect_load_fails(dir, "model.safetensors: ", "header length", "runs past", NULL);
    free(data);
}

static void test_header_length_too_large(void **state) {
    (void)state;
    char dir[512], path[600];
    saved_classifier(dir, sizeof dir, "hugeheader");
    path_in(path, sizeof path, dir, "model.safetensors");
    size_t len;
    char *data = slurp(path, &len);
    memset(data, 0, 8);
    data[5] = 1; /* 2^40 */
    spit(path, data, len);
    expect_load_fails(dir, "model.safetensors: ", "header length 1099511627776", "limit", NULL);
    free(data);
}

static void test_bad_json_header(void **state) {
    (void)state;
    char dir[512], path[600];
    saved_classifier(dir, sizeof dir, "badjson");
    path_in(path, sizeof path, dir, "model.safetensors");
    replace_in_file(path, "\"dtype\"", "'dtype'");
    expect_load_fails(dir, "model.safetensors: ", "not valid JSON", NULL);
}

static void test_wrong_dtype(void **state) {
    (void)state;
    char dir[512], path[600];
    saved_classifier(dir, sizeof dir, "dtype");
    path_in(path, sizeof path, dir, "model.safetensors");
    replace_in_file(path, "\"F32\"", "\"F16\"");
    expect_load_fails(dir, "model.safetensors: tensor \"fc1.weight\": dtype \"F16\"", NULL);
    replace_in_file(path, "\"F16\"", "\"Q99\"");
    expect_load_fails(dir, "tensor \"fc1.weight\": unknown dtype \"Q99\"", NULL);
}

static void test_shape_disagrees_with_offsets(void **state) {
    (void)state;
    char dir[512], path[600];
    saved_classifier(dir, sizeof dir, "bytes");
    path_in(path, sizeof path, dir, "model.safetensors");
    replace_in_file(path, "\"shape\":[7,5]", "\"shape\":[7,4]");
    expect_load_fails(dir,
                      "model.safetensors: tensor \"fc1.weight\": data_offsets [0,140] hold 140 "
                      "bytes, shape [7,4] needs 112",
                      NULL);
}

/* Writes a safetensors file whose tensors are the classifier's, with one edited by edit. */
static void write_weights(const char *dir, int drop, const char *rename_to, int transpose,
                          int extra) {
    fixture f;
    make_classifier(&f);
    kl_st_tensor_in t[5];
    memset(t, 0, sizeof t);
    const char *names[4] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};
    int64_t shapes[4][2] = {{7, 5}, {7, 0}, {3, 7}, {3, 0}};
    int64_t off[4] = {0, 35, 42, 63};
    int n = 0;
    for (int i = 0; i < 4; i++) {
        if (i == drop) continue;
        t[n].name = i == 0 && rename_to ? rename_to : names[i];
        t[n].ndim = shapes[i][1] ? 2 : 1;
        t[n].shape[0] = shapes[i][0];
        t[n].shape[1] = shapes[i][1];
        if (i == 0 && transpose) {
            t[n].shape[0] = 5;
            t[n].shape[1] = 7;
        }
        t[n].data = f.params + off[i];
        n++;
    }
    if (extra) {
        t[n].name = "fc3.weight";
        t[n].ndim = 1;
        t[n].shape[0] = 2;
        t[n].data = f.params;
        n++;
    }
    char path[600];
    path_in(path, sizeof path, dir, "model.safetensors");
    assert_int_equal(kl_safetensors_write(path, t, n, NULL, 0), KL_OK);
}

static void test_wrong_missing_extra_tensor(void **state) {
    (void)state;
    char dir[512];
    saved_classifier(dir, sizeof dir, "tensors");
    write_weights(dir, -1, NULL, 1, 0);
    expect_load_fails(dir, "model.safetensors: tensor \"fc1.weight\": shape [5,7] expected [7,5]",
                      NULL);
    write_weights(dir, 3, NULL, 0, 0);
    expect_load_fails(dir, "model.safetensors: tensor \"fc2.bias\" [3] is missing", NULL);
    write_weights(dir, -1, NULL, 0, 1);
    expect_load_fails(dir, "model.safetensors: tensor \"fc3.weight\" is not part of", NULL);
    write_weights(dir, -1, "encoder.weight", 0, 0);
    expect_load_fails(dir, "tensor \"fc1.weight\" [7,5] is missing", NULL);
    write_weights(dir, -1, NULL, 0, 0);
    kl_bundle b;
    if (kl_bundle_load(dir, &b) != KL_OK) fail_msg("restored weights: %s", kl_errmsg());
    kl_bundle_free(&b);
}

/* The reader on hand-made files: header JSON plus data_len zero bytes. */
static kl_status parse_raw(const char *header, size_t data_len) {
    size_t h = strlen(header), len = 8 + h + data_len;
    char *file = calloc(1, len);
    for (int i = 0; i < 8; i++)
        file[i] = (char)(uint8_t)((uint64_t)h >> (8 * i));
    memcpy(file + 8, header, h);
    kl_st_file f;
    kl_clearerr();
    kl_status s = kl_safetensors_parse(file, len, &f);
    if (s == KL_OK) kl_safetensors_free(&f);
    return s;
}

static void expect_raw_fails(const char *header, size_t data_len, const char *frag) {
    if (parse_raw(header, data_len) == KL_OK) fail_msg("accepted: %s", header);
    if (!strstr(kl_errmsg(), frag)) fail_msg("message lacks \"%s\": %s", frag, kl_errmsg());
}

static void test_safetensors_reader_rules(void **state) {
    (void)state;
    assert_int_equal(parse_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                               "\"b\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[8,12]},"
                               "\"__metadata__\":{\"k\":\"v\"}}   ",
                               12),
                     KL_OK);
    assert_int_equal(parse_raw("{}", 0), KL_OK);
    expect_raw_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                     8, "overlap");
    expect_raw_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
                     "unused");
    expect_raw_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
                     "cover");
    expect_raw_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
                     "\"shape\" entry 0");
    expect_raw_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
                     "\"shape\" entry 0");
    expect_raw_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4,
                     "end before begin");
    expect_raw_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
                     "[begin, end]");
    expect_raw_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets");
    expect_raw_fails("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "\"dtype\" missing");
    expect_raw_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
                     "unexpected or repeated key \"x\"");
    expect_raw_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                     8, "appears twice");
    expect_raw_fails("{\"__metadata__\":{\"k\":1}}", 0, "not a string");
    expect_raw_fails("{\"a\":[]}", 0, "not an object");
    expect_raw_fails("[1,2]   ", 0, "'{'");
    expect_raw_fails("{\"a\":1} x", 0, "after its JSON");
    expect_raw_fails("{}", 4, "no tensors");
    expect_raw_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[4503599627370496,4503599627370496],"
                     "\"data_offsets\":[0,4]}}",
                     4, "too large");
}

/* --- damaged kiln.json ----------------------------------------------------------------------- */

static void drop_activation(cJSON *r) {
    cJSON_DeleteItemFromObject(get(r, "architecture", NULL), "activation");
}
static void string_dropout(cJSON *r) {
    cJSON_ReplaceItemInObject(get(r, "architecture", NULL), "dropout", cJSON_CreateString("x"));
}
static void zero_layer(cJSON *r) {
    cJSON_ReplaceItemInArray(get(r, "architecture", "layers"), 1, cJSON_CreateNumber(0));
}
static void wider_layer(cJSON *r) {
    cJSON_ReplaceItemInArray(get(r, "architecture", "layers"), 1, cJSON_CreateNumber(8));
}
static void short_shift(cJSON *r) {
    cJSON_DeleteItemFromArray(get(r, "preprocessing", "shift"), 0);
}
static void two_labels(cJSON *r) {
    cJSON_DeleteItemFromArray(get(r, "labels", NULL), 0);
}
static void version_two(cJSON *r) {
    cJSON_ReplaceItemInObject(r, "format_version", cJSON_CreateNumber(2));
}
static void bad_activation(cJSON *r) {
    cJSON_ReplaceItemInObject(get(r, "architecture", NULL), "activation",
                              cJSON_CreateString("swish"));
}
static void drop_digest(cJSON *r) {
    cJSON_DeleteItemFromObject(r, "training_data_digest");
}
static void number_feature_name(cJSON *r) {
    cJSON_ReplaceItemInArray(get(r, "preprocessing", "feature_names"), 2, cJSON_CreateNumber(1));
}
static void array_encoder(cJSON *r) {
    cJSON_ReplaceItemInObject(get(r, "preprocessing", NULL), "encoder", cJSON_CreateArray());
}

static void number_reference(cJSON *r) {
    cJSON_ReplaceItemInObject(r, "reference", cJSON_CreateNumber(3));
}

static void test_kiln_json_fields(void **state) {
    (void)state;
    struct {
        void (*edit)(cJSON *);
        const char *frag;
    } cases[] = {
        {drop_activation, "kiln.json: field \"architecture.activation\": missing"},
        {string_dropout, "kiln.json: field \"architecture.dropout\": expected a number in [0,1)"},
        {zero_layer,
         "kiln.json: field \"architecture.layers\": expected an array of positive integers"},
        {short_shift, "kiln.json: field \"preprocessing.shift\": expected an array of 5"},
        {two_labels, "kiln.json: field \"labels\": expected an array of 3 strings"},
        {version_two, "kiln.json: field \"format_version\": 2 is not supported"},
        {bad_activation, "kiln.json: field \"architecture.activation\": expected one of"},
        {drop_digest, "kiln.json: field \"training_data_digest\": missing"},
        {number_feature_name, "kiln.json: field \"preprocessing.feature_names\""},
        {array_encoder, "kiln.json: field \"preprocessing.encoder\""},
        {number_reference, "kiln.json: field \"reference\": expected an object or null"},
        /* kiln.json and the weights disagree: the tensor check names both shapes. */
        {wider_layer, "model.safetensors: tensor \"fc1.weight\": shape [7,5] expected [8,5]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[512], name[32];
        snprintf(name, sizeof name, "kjson%zu", i);
        saved_classifier(dir, sizeof dir, name);
        edit_kiln_json(dir, cases[i].edit);
        expect_load_fails(dir, cases[i].frag, NULL);
    }
    char dir[512], path[600];
    saved_classifier(dir, sizeof dir, "kjson_text");
    path_in(path, sizeof path, dir, "kiln.json");
    spit(path, "{\"format_version\": 1,", 21);
    expect_load_fails(dir, "kiln.json: not valid JSON", NULL);
}

/* --- damaged MLmodel and missing files ------------------------------------------------------- */

static void test_mlmodel(void **state) {
    (void)state;
    char dir[512], path[600];
    saved_classifier(dir, sizeof dir, "mlmodel");
    path_in(path, sizeof path, dir, "MLmodel");
    replace_in_file(path, "  kiln:\n", "  sklearn:\n");
    expect_load_fails(dir, "MLmodel: field \"flavors\": no \"kiln\" flavor", NULL);
    replace_in_file(path, "  sklearn:\n", "  kiln:\n");
    replace_in_file(path, "format_version: 1", "format_version: 2");
    expect_load_fails(dir, "MLmodel: field \"flavors.kiln.format_version\": \"2\" is not", NULL);
    replace_in_file(path, "format_version: 2", "format_version: 1");
    replace_in_file(path, "data: model.safetensors", "data: ../model.safetensors");
    expect_load_fails(dir, "MLmodel: field \"flavors.kiln.data\"", NULL);
    spit(path, "flavors: [unclosed\n", 19);
    expect_load_fails(dir, "MLmodel: YAML error at line", NULL);
    spit(path, "artifact_path: model\n", 21);
    expect_load_fails(dir, "MLmodel: field \"flavors\": missing", NULL);
}

static void test_missing_files(void **state) {
    (void)state;
    const char *files[] = {"MLmodel", "kiln.json", "model.safetensors"};
    for (int i = 0; i < 3; i++) {
        char dir[512], path[600], name[32];
        snprintf(name, sizeof name, "missing%d", i);
        saved_classifier(dir, sizeof dir, name);
        path_in(path, sizeof path, dir, files[i]);
        assert_int_equal(unlink(path), 0);
        char frag[64];
        snprintf(frag, sizeof frag, "%s: file is missing", files[i]);
        expect_load_fails(dir, frag, NULL);
    }
    char dir[512];
    tmp_dir(dir, sizeof dir, "empty");
    strcat(dir, "/nope");
    expect_load_fails(dir, "no such directory", NULL);
}

/* --- ONNX ------------------------------------------------------------------------------------ */

static Onnx__ModelProto *export_and_decode(const kl_bundle *b, const char *name) {
    char dir[512], path[600];
    tmp_dir(dir, sizeof dir, name);
    path_in(path, sizeof path, dir, "model.onnx");
    if (kl_bundle_export_onnx(b, path) != KL_OK) fail_msg("export: %s", kl_errmsg());
    size_t len;
    char *data = slurp(path, &len);
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, (const uint8_t *)data);
    free(data);
    assert_non_null(m);
    assert_int_equal(m->ir_version, 8);
    assert_int_equal(m->n_opset_import, 1);
    assert_int_equal(m->opset_import[0]->version, 17);
    assert_string_equal(m->producer_name, "kiln");
    return m;
}

static void assert_ops(const Onnx__GraphProto *g, const char *const *ops, size_t n) {
    assert_int_equal(g->n_node, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(g->node[i]->op_type, ops[i]);
}

static void test_onnx_graph(void **state) {
    (void)state;
    fixture f;
    make_classifier(&f);
    Onnx__ModelProto *m = export_and_decode(&f.b, "onnx_relu");
    const Onnx__GraphProto *g = m->graph;
    const char *ops[] = {"Sub", "Mul", "Gemm", "Relu", "Gemm", "Softmax"};
    assert_ops(g, ops, 6);
    assert_string_equal(g->input[0]->name, "input");
    assert_string_equal(g->output[0]->name, "probabilities");
    assert_string_equal(g->output[0]->type->tensor_type->shape->dim[0]->dim_param, "batch");
    assert_int_equal(g->output[0]->type->tensor_type->shape->dim[1]->dim_value, 3);
    assert_int_equal(g->input[0]->type->tensor_type->shape->dim[1]->dim_value, 5);
    assert_int_equal(g->node[2]->attribute[0]->i, 1); /* transB */
    /* Initializers: shift, scale, then W and b per layer, bytes equal to the parameters. */
    assert_int_equal(g->n_initializer, 6);
    const Onnx__TensorProto *w1 = g->initializer[2];
    assert_string_equal(w1->name, "fc1.weight");
    assert_int_equal(w1->n_dims, 2);
    assert_int_equal(w1->dims[0], 7);
    assert_int_equal(w1->dims[1], 5);
    assert_int_equal(w1->raw_data.len, 35 * 4);
    float got[35];
    for (int i = 0; i < 35; i++) {
        uint32_t u = 0;
        for (int k = 0; k < 4; k++)
            u |= (uint32_t)w1->raw_data.data[4 * i + k] << (8 * k);
        memcpy(&got[i], &u, 4);
    }
    assert_memory_equal(got, f.params, sizeof got);
    onnx__model_proto__free_unpacked(m, NULL);

    /* Regression with GELU and no transform: Erf-based GELU, no softmax. */
    f.b.spec.act = KL_ACT_GELU;
    f.b.spec.task = KL_TASK_REGRESSION;
    f.b.n_labels = 0;
    snprintf(f.b.transform, sizeof f.b.transform, "none");
    m = export_and_decode(&f.b, "onnx_gelu");
    const char *ops2[] = {"Gemm", "Div", "Erf", "Add", "Mul", "Mul", "Gemm"};
    assert_ops(m->graph, ops2, 7);
    assert_string_equal(m->graph->output[0]->name, "predictions");
    onnx__model_proto__free_unpacked(m, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_classifier),
        cmocka_unit_test(test_roundtrip_regression),
        cmocka_unit_test(test_apply_transform),
        cmocka_unit_test(test_save_refuses_bad_bundle),
        cmocka_unit_test(test_truncated_safetensors),
        cmocka_unit_test(test_header_length_too_large),
        cmocka_unit_test(test_bad_json_header),
        cmocka_unit_test(test_wrong_dtype),
        cmocka_unit_test(test_shape_disagrees_with_offsets),
        cmocka_unit_test(test_wrong_missing_extra_tensor),
        cmocka_unit_test(test_safetensors_reader_rules),
        cmocka_unit_test(test_kiln_json_fields),
        cmocka_unit_test(test_mlmodel),
        cmocka_unit_test(test_missing_files),
        cmocka_unit_test(test_onnx_graph),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
