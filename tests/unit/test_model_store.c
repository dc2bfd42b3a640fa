/* test_model_store.c — the served models without a network: a saved bundle loads under a name,
 * inference on packed ModelInferRequests equals kl_mlp_predict on the transformed rows (also
 * from several threads at once), and unknown models, versions, bad specs and garbage bytes get
 * the right gRPC code. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "proto/grpc_predict_v2.pb-c.h"
#include "runtime/bundle.h"
#include "runtime/device.h"
#include "runtime/fileio.h"
#include "serving/model_store.h"

#define FEATURES 5
#define CLASSES 3
#define N_PARAMS (7 * FEATURES + 7 + CLASSES * 7 + CLASSES)

static char bundle_dir[1024]; /* a 5-7-3 tanh classifier with a standard transform */

static void save_bundle(void) {
    kl_bundle b;
    memset(&b, 0, sizeof b);
    static float params[N_PARAMS], shift[FEATURES], scale[FEATURES];
    static char *labels[] = {"a", "b", "c"};
    b.spec.n_layers = 2;
    b.spec.dims[0] = FEATURES;
    b.spec.dims[1] = 7;
    b.spec.dims[2] = CLASSES;
    b.spec.act = KL_ACT_TANH;
    b.spec.task = KL_TASK_CLASSIFICATION;
    b.n_params = N_PARAMS;
    uint32_t x = 777;
    for (int i = 0; i < N_PARAMS; i++) {
        x = x * 1664525u + 1013904223u;
        params[i] = ((float)(x >> 8) / 16777216.0f - 0.5f) * 2.0f;
    }
    b.params = params;
    b.n_features = FEATURES;
    snprintf(b.transform, sizeof b.transform, "standard");
    for (int i = 0; i < FEATURES; i++) {
        shift[i] = 0.5f * (float)i;
        scale[i] = 1.0f / (1.0f + (float)i);
    }
    b.shift = shift;
    b.scale = scale;
    b.n_labels = CLASSES;
    b.label_names = labels;
    const char *base = getenv("KILN_TEST_TMP");
    if (!base || !*base) base = "/tmp";
    snprintf(bundle_dir, sizeof bundle_dir, "%s/test_model_store_%d/model", base, (int)getpid());
    assert_int_equal(kl_file_mkdirs(bundle_dir), KL_OK);
    if (kl_bundle_save(bundle_dir, &b) != KL_OK) fail_msg("save: %s", kl_errmsg());
}

static kl_model_store *store_with(const char *name) {
    kl_model_store *s = NULL;
    assert_int_equal(kl_model_store_create(&s), KL_OK);
    char spec[1100];
    snprintf(spec, sizeof spec, "%s=%s", name, bundle_dir);
    if (kl_model_store_add(s, spec) != KL_OK) fail_msg("add: %s", kl_errmsg());
    return s;
}

/* The row values of request `seed`: rows x FEATURES. */
static void fill_rows(float *x, int rows, int seed) {
    for (int i = 0; i < rows * FEATURES; i++)
        x[i] = (float)((i * 37 + seed * 11) % 23) * 0.25f - 2.0f;
}

/* Packs a raw-contents request for model `name` (version ver) with rows of fill_rows(seed). */
static uint8_t *pack_request(const char *name, const char *ver, int rows, int seed, size_t *len) {
    float x[64 * FEATURES];
    fill_rows(x, rows, seed);
    Inference__ModelInferRequest m = INFERENCE__MODEL_INFER_REQUEST__INIT;
    Inference__ModelInferRequest__InferInputTensor in =
        INFERENCE__MODEL_INFER_REQUEST__INFER_INPUT_TENSOR__INIT;
    Inference__ModelInferRequest__InferInputTensor *inp[1] = {&in};
    int64_t shape[2] = {rows, FEATURES};
    ProtobufCBinaryData raw = {(size_t)rows * FEATURES * sizeof(float), (uint8_t *)x};
    m.model_name = (char *)name;
    m.model_version = (char *)ver;
    in.name = "input";
    in.datatype = "FP32";
    in.n_shape = 2;
    in.shape = shape;
    m.n_inputs = 1;
    m.inputs = inp;
    m.n_raw_input_contents = 1;
    m.raw_input_contents = &raw;
    *len = inference__model_infer_request__get_packed_size(&m);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    inference__model_infer_request__pack(&m, buf);
    return buf;
}

/* What the store must answer for fill_rows(seed): the bundle's transform, then the MLP. */
static void reference(int rows, int seed, float *probs) {
    kl_bundle b;
    kl_mlp m;
    memset(&m, 0, sizeof m);
    assert_int_equal(kl_bundle_load(bundle_dir, &b), KL_OK);
    float x[64 * FEATURES];
    fill_rows(x, rows, seed);
    kl_bundle_apply_transform(&b, x, rows);
    assert_int_equal(kl_mlp_create(&m, &b.spec, kl_cpu(), 64, KL_PREC_FP32), KL_OK);
    memcpy(m.params, b.params, (size_t)b.n_params * sizeof(float));
    assert_int_equal(kl_mlp_predict(&m, x, rows, probs), KL_OK);
    kl_mlp_free(&m);
    kl_bundle_free(&b);
}

/* Runs one request through the store and checks the answer bit for bit. Returns 0 if equal. */
static int infer_matches(kl_model_store *s, int rows, int seed, const float *expected) {
    size_t len, out_len;
    uint8_t *req = pack_request("m", "", rows, seed, &len), *out = NULL;
    kl_grpc_code c = kl_model_store_infer(s, req, len, &out, &out_len);
    free(req);
    if (c != KL_GRPC_OK) return -1;
    Inference__ModelInferResponse *r = inference__model_infer_response__unpack(NULL, out_len, out);
    free(out);
    if (!r) return -2;
    int bad = r->n_outputs != 2 || r->n_raw_output_contents != 2 ||
              r->raw_output_contents[0].len != (size_t)rows * CLASSES * sizeof(float) ||
              strcmp(r->model_version, "1") != 0;
    if (!bad) bad = memcmp(r->raw_output_contents[0].data, expected, (size_t)rows * CLASSES * 4);
    inference__model_infer_response__free_unpacked(r, NULL);
    return bad ? -3 : 0;
}

static void test_infer_equals_mlp(void **state) {
    (void)state;
    kl_model_store *s = store_with("m");
    assert_int_equal(kl_model_store_count(s), 1);
    float expected[64 * CLASSES];
    for (int rows = 1; rows <= 64; rows *= 4) {
        reference(rows, rows, expected);
        assert_int_equal(infer_matches(s, rows, rows, expected), 0);
    }
    kl_model_store_free(s);
}

typedef struct {
    kl_model_store *s;     /* shared store */
    const float *expected; /* reference answers, [seed][rows x CLASSES] */
    int failures;          /* mismatches seen by this thread */
} worker_arg;

static void *worker(void *p) {
    worker_arg *a = p;
    for (int i = 0; i < 200; i++) {
        int seed = i % 4;
        if (infer_matches(a->s, 16, seed, a->expected + seed * 16 * CLASSES)) a->failures++;
    }
    return NULL;
}

static void test_concurrent_infer(void **state) {
    (void)state;
    kl_model_store *s = store_with("m");
    float expected[4 * 16 * CLASSES];
    for (int seed = 0; seed < 4; seed++)
        reference(16, seed, expected + seed * 16 * CLASSES);
    pthread_t t[4];
    worker_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (worker_arg){s, expected, 0};
        assert_int_equal(pthread_create(&t[i], NULL, worker, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(a[i].failures, 0);
    }
    kl_model_store_free(s);
}

static void test_errors(void **state) {
    (void)state;
    kl_model_store *s = store_with("m");
    size_t len, out_len;
    uint8_t *out = NULL;
    uint8_t *req = pack_request("nope", "", 2, 0, &len);
    assert_int_equal(kl_model_store_infer(s, req, len, &out, &out_len), KL_GRPC_NOT_FOUND);
    assert_non_null(strstr(kl_errmsg(), "nope"));
    assert_null(out);
    free(req);
    req = pack_request("m", "2", 2, 0, &len);
    assert_int_equal(kl_model_store_infer(s, req, len, &out, &out_len), KL_GRPC_NOT_FOUND);
    assert_non_null(strstr(kl_errmsg(), "version"));
    free(req);
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0x07, 0x12};
    assert_int_equal(kl_model_store_infer(s, junk, sizeof junk, &out, &out_len),
                     KL_GRPC_INVALID_ARGUMENT);
    assert_int_equal(kl_model_store_metadata(s, junk, sizeof junk, &out, &out_len),
                     KL_GRPC_INVALID_ARGUMENT);
    /* ModelReady for an unknown model answers ready = false (the empty message). */
    const uint8_t ref_nope[] = {0x0a, 0x04, 'n', 'o', 'p', 'e'};
    assert_int_equal(kl_model_store_ready(s, ref_nope, sizeof ref_nope, &out, &out_len),
                     KL_GRPC_OK);
    assert_int_equal(out_len, 0);
    free(out);
    assert_int_equal(kl_model_store_config(s, ref_nope, sizeof ref_nope, &out, &out_len),
                     KL_GRPC_NOT_FOUND);
    const uint8_t ref_m[] = {0x0a, 0x01, 'm'};
    assert_int_equal(kl_model_store_ready(s, ref_m, sizeof ref_m, &out, &out_len), KL_GRPC_OK);
    assert_int_equal(out_len, 2); /* {ready: true} */
    free(out);
    assert_int_equal(kl_model_store_metadata(s, ref_m, sizeof ref_m, &out, &out_len), KL_GRPC_OK);
    free(out);
    assert_int_equal(kl_model_store_config(s, ref_m, sizeof ref_m, &out, &out_len), KL_GRPC_OK);
    free(out);

    /* Bad specs and a duplicate name leave the store as it was. */
    char spec[1100];
    snprintf(spec, sizeof spec, "m=%s", bundle_dir);
    assert_int_equal(kl_model_store_add(s, spec), KL_EINVAL);
    assert_non_null(strstr(kl_errmsg(), "twice"));
    assert_int_equal(kl_model_store_add(s, "no-equals-sign"), KL_EINVAL);
    assert_int_equal(kl_model_store_add(s, "=dir"), KL_EINVAL);
    assert_int_not_equal(kl_model_store_add(s, "x=/nonexistent/bundle"), KL_OK);
    assert_non_null(strstr(kl_errmsg(), "load model \"x\""));
    assert_int_equal(kl_model_store_count(s), 1);
    kl_model_store_free(s);
}

int main(void) {
    save_bundle();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_infer_equals_mlp),
        cmocka_unit_test(test_concurrent_infer),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
