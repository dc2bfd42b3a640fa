/* test_oip_codec.c — the Open Inference Protocol codec: requests built with protobuf-c decode to
 * the same rows (raw and typed), responses decode back to what was encoded, and every malformed
 * request gets the right gRPC code and a message that says what is wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/grpc_predict_v2.pb-c.h"
#include "proto/health.pb-c.h"
#include "serving/oip_codec.h"

/* --- fixtures -------------------------------------------------------------------------------- */

static const kl_oip_model_sig SIG = {
    .input_name = "x", .n_features = 3, .n_classes = 4, .max_batch = 8};

/* A request under construction: the protobuf-c structs and the arrays they point into. */
typedef struct {
    Inference__ModelInferRequest m;                                    /* the message */
    Inference__ModelInferRequest__InferInputTensor in;                 /* its one input */
    Inference__ModelInferRequest__InferInputTensor *inp[1];            /* m.inputs */
    Inference__InferTensorContents contents;                           /* typed data, when used */
    Inference__ModelInferRequest__InferRequestedOutputTensor out[3];   /* requested outputs */
    Inference__ModelInferRequest__InferRequestedOutputTensor *outp[3]; /* m.outputs */
    Inference__ModelInferRequest__ParametersEntry pe[2];               /* parameters */
    Inference__ModelInferRequest__ParametersEntry *pep[2];             /* m.parameters */
    Inference__InferParameter pv[2];                                   /* parameter values */
    int64_t shape[4];                                                  /* in.shape */
    float values[64];                                                  /* row data */
    ProtobufCBinaryData raw[2];                                        /* m.raw_input_contents */
} req_builder;

/* A valid raw-contents request: batch 2 x 3 features, values i * 0.5 - 1. */
static void make_request(req_builder *r, int64_t batch) {
    memset(r, 0, sizeof *r);
    inference__model_infer_request__init(&r->m);
    inference__model_infer_request__infer_input_tensor__init(&r->in);
    r->m.model_name = "fmnist";
    r->m.model_version = "3";
    r->m.id = "req-42";
    r->in.name = "x";
    r->in.datatype = "FP32";
    r->shape[0] = batch;
    r->shape[1] = 3;
    r->in.n_shape = 2;
    r->in.shape = r->shape;
    r->inp[0] = &r->in;
    r->m.n_inputs = 1;
    r->m.inputs = r->inp;
    for (int i = 0; i < 64; i++)
        r->values[i] = (float)i * 0.5f - 1.0f;
    r->raw[0].data = (uint8_t *)r->values;
    r->raw[0].len = batch > 0 ? (size_t)batch * 3 * sizeof(float) : 0;
    r->m.n_raw_input_contents = 1;
    r->m.raw_input_contents = r->raw;
}

/* Switches a request from raw bytes to contents.fp32_contents with n values. */
static void use_typed(req_builder *r, size_t n) {
    inference__infer_tensor_contents__init(&r->contents);
    r->contents.n_fp32_contents = n;
    r->contents.fp32_contents = r->values;
    r->in.contents = &r->contents;
    r->m.n_raw_input_contents = 0;
    r->m.raw_input_contents = NULL;
}

/* Requests outputs by name. */
static void request_outputs(req_builder *r, int n, const char *const *names) {
    for (int i = 0; i < n; i++) {
        inference__model_infer_request__infer_requested_output_tensor__init(&r->out[i]);
        r->out[i].name = (char *)names[i];
        r->outp[i] = &r->out[i];
    }
    r->m.n_outputs = (size_t)n;
    r->m.outputs = r->outp;
}

/* Packs the request into a malloc'd buffer. */
static uint8_t *pack(const req_builder *r, size_t *len) {
    *len = inference__model_infer_request__get_packed_size(&r->m);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    assert_int_equal(inference__model_infer_request__pack(&r->m, buf), *len);
    return buf;
}

/* Decodes r against SIG; returns the code and leaves the request in *out. */
static kl_grpc_code decode(const req_builder *r, kl_oip_request *out) {
    size_t len;
    uint8_t *buf = pack(r, &len);
    kl_grpc_code c = kl_oip_decode_infer(buf, len, &SIG, out);
    free(buf);
    return c;
}

/* Decodes r, expects failure with `code` and every substring in the message. */
static void expect_error(const req_builder *r, kl_grpc_code code, const char *sub1,
                         const char *sub2) {
    kl_oip_request out;
    kl_clearerr();
    kl_grpc_code c = decode(r, &out);
    if (c != code || !strstr(kl_errmsg(), sub1) || (sub2 && !strstr(kl_errmsg(), sub2)))
        print_error("code %s, message: %s\n", kl_grpc_code_name(c), kl_errmsg());
    assert_int_equal(c, code);
    assert_non_null(strstr(kl_errmsg(), sub1));
    if (sub2) assert_non_null(strstr(kl_errmsg(), sub2));
    assert_null(out.rows);
    assert_null(out.model_name);
}

/* --- valid requests -------------------------------------------------------------------------- */

static void test_raw_round_trip(void **state) {
    (void)state;
    req_builder r;
    make_request(&r, 2);
    kl_oip_request out;
    assert_int_equal(decode(&r, &out), KL_GRPC_OK);
    assert_string_equal(out.model_name, "fmnist");
    assert_string_equal(out.model_version, "3");
    assert_string_equal(out.id, "req-42");
    assert_int_equal(out.batch, 2);
    assert_int_equal(out.n_features, 3);
    assert_memory_equal(out.rows, r.values, 6 * sizeof(float));
    assert_int_equal(out.n_outputs, 2);
    assert_int_equal(out.outputs[0], KL_OIP_OUT_PROBABILITIES);
    assert_int_equal(out.outputs[1], KL_OIP_OUT_CLASS);
    assert_int_equal(out.has_priority, 0);
    assert_int_equal(out.timeout_us, 0);
    kl_oip_request_free(&out);
    kl_oip_request_free(&out); /* freeing twice is safe */
}

static void test_raw_bytes_are_little_endian(void **state) {
    (void)state;
    req_builder r;
    make_request(&r, 1);
    /* 1.0f, -2.0f, 0.25f spelled byte by byte, as a client on any host sends them. */
    static uint8_t bytes[12] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00,
                                0x00, 0xc0, 0x00, 0x00, 0x80, 0x3e};
    r.raw[0].data = bytes;
    r.raw[0].len = sizeof bytes;
    kl_oip_request out;
    assert_int_equal(decode(&r, &out), KL_GRPC_OK);
    assert_true(out.rows[0] == 1.0f && out.rows[1] == -2.0f && out.rows[2] == 0.25f);
    kl_oip_request_free(&out);
}

static void test_fp32_contents_path(void **state) {
    (void)state;
    req_builder r;
    make_request(&r, 3);
    use_typed(&r, 9);
    kl_oip_request out;
    assert_int_equal(decode(&r, &out), KL_GRPC_OK);
    assert_int_equal(out.batch, 3);
    assert_memory_equal(out.rows, r.values, 9 * sizeof(float));
    kl_oip_request_free(&out);
}

static void test_max_batch_accepted_and_any_input_name(void **state) {
    (void)state;
    req_builder r;
    make_request(&r, 8);
    r.in.name = "whatever";
    kl_oip_model_sig anyname = SIG;
    anyname.input_name = NULL;
    size_t len;
    uint8_t *buf = pack(&r, &len);
    kl_oip_request out;
    assert_int_equal(kl_oip_decode_infer(buf, len, &anyname, &out), KL_GRPC_OK);
    assert_int_equal(out.batch, 8);
    kl_oip_request_free(&out);
    free(buf);
}

static void test_requested_outputs_order_and_parameters(void **state) {
    (void)state;
    req_builder r;
    make_request(&r, 1);
    const char *names[] = {"class", "probabilities"};
    request_outputs(&r, 2, names);
    for (int i = 0; i < 2; i++) {
        inference__model_infer_request__parameters_entry__init(&r.pe[i]);
        inference__infer_parameter__init(&r.pv[i]);
        r.pe[i].value = &r.pv[i];
        r.pep[i] = &r.pe[i];
    }
    r.pe[0].key = "priority"; /* the Python client sends uint64 */
    r.pv[0].parameter_choice_case = INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_UINT64_PARAM;
    r.pv[0].uint64_param = 2;
    r.pe[1].key = "timeout";
    r.pv[1].parameter_choice_case = INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM;
    r.pv[1].int64_param = 5000;
    r.m.n_parameters = 2;
    r.m.parameters = r.pep;
    kl_oip_request out;
    assert_int_equal(decode(&r, &out), KL_GRPC_OK);
    assert_int_equal(out.n_outputs, 2);
    assert_int_equal(out.outputs[0], KL_OIP_OUT_CLASS);
    assert_int_equal(out.outputs[1], KL_OIP_OUT_PROBABILITIES);
    assert_int_equal(out.has_priority, 1);
    assert_int_equal(out.priority, 2);
    assert_int_equal(out.timeout_us, 5000);
    kl_oip_request_free(&out);

    /* A timeout given as a string is refused, naming the parameter. */
    r.pv[1].parameter_choice_case = INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_STRING_PARAM;
    r.pv[1].string_param = "5ms";
    expect_error(&r, KL_GRPC_INVALID_ARGUMENT, "parameter \"timeout\"", "int64_param");
}

/* --- malformed requests ---------------------------------------------------------------------- */

static void test_wrong_datatype(void **state) {
    (void)state;
    req_builder r;
    make_request(&r, 2);
    r.in.datatype = "INT32";
    expect_error(&r, KL_GRPC_INVALID_ARGUMENT, "input \"x\": datatype \"INT32\"",
                 "expected \"FP32\"");
}

static void test_wrong_rank(void **state) {
    (void)state;
    req_builder r;
    make_request(&r, 2);
    r.shape[2] = 1;
    r.in.n_shape = 3;
    expect_error(&r, KL_GRPC_INVALID_ARGUMENT, "shape [2,3,1] has rank 3", "[batch, 3]");
    r.in.n_shape = 1;
    expect_error(&r, KL_GRPC_INVALID_ARGUMENT, "shape [2] has rank 1", NULL);
}

static void test_wrong_feature_count(void **state) {
    (void)state;
    req_builder r;
    make_request(&r, 2);
    r.shape[1] = 5;
    r.raw[0].len = 2 * 5 * 4;
    expect_error(&r, KL_GRPC_INVALID_ARGUMENT, "5 features, expected 3", "model \"fmnist\"");
}

static void test_byte_size_mismatch(void **state) {
    (void)state;
    req_builder r;
    make_request(&r, 2);
    r.raw[0].len = 23;
    expect_error(&r, KL_GRPC_INVALID_ARGUMENT, "raw_input_contents holds 23 bytes", "needs 24");
    r.raw[0].len = 28;
    expect_error(&r, KL_GRPC_INVALID_ARGUMENT, "holds 28 bytes", "needs 24");
    use_typed(&r, 5);
    expect_error(&r, KL_GRPC_INVALID_ARGUMENT, "contents.fp32_contents holds 5 values", "needs 6");
}

static void test_raw_and_typed_together(void **state) {
    (void)state;
    req_builder r;
    make_request(&r, 2);
    inference__infer_tensor_contents__init(&r.contents);
    r.contents.n_fp32_contents = 6;
    r.contents.fp32_contents = r.values;
    r.in.contents = &r.contents;
    expect_error(&r, KL_GRPC_INVALID_ARGUMENT,
                 "input \"x\": raw_input_contents and typed contents both set", NULL);
}

static void test_no_data_and_extra_raw(void **state) {
    (void)state;
    req_builder r;
    make_request(&r, 2);
    r.m.n_raw_input_contents = 0;
    expect_error(&r, KL_GRPC_INVALID_ARGUMENT, "input \"x\": no data", NULL);
    make_request(&r, 2);
    r.raw[1] = r.raw[0];
    r.m.n_raw_input_contents = 2;
    expect_error(&r, KL_GRPC_INVALID_ARGUMENT, "raw_input_contents has 2 entries for 1 input",
                 NULL);
}

static void test_empty_and_oversized_batch(void **state) {
    (void)state;
    req_builder r;
    make_request(&r, 0);
    expect_error(&r, KL_GRPC_INVALID_ARGUMENT, "empty batch", NULL);
    use_typed(&r, 0);
    expect_error(&r, KL_GRPC_INVALID_ARGUMENT, "empty batch", NULL);
    make_request(&r, 9);
    expect_error(&r, KL_GRPC_INVALID_ARGUMENT, "batch 9 exceeds the model's max batch size 8",
                 NULL);
    make_request(&r, -1);
    expect_error(&r, KL_GRPC_INVALID_ARGUMENT, "batch -1 must be positive", NULL);
}

static void test_input_count_and_name(void **state) {
    (void)state;
    req_builder r;
    make_request(&r, 2);
    r.m.n_inputs = 0;
    r.m.n_raw_input_contents = 0;
    expect_error(&r, KL_GRPC_INVALID_ARGUMENT, "request has 0 inputs, the model takes 1 (\"x\")",
                 NULL);
    make_request(&r, 2);
    r.in.name = "pixels";
    expect_error(&r, KL_GRPC_INVALID_ARGUMENT, "unknown input \"pixels\"",
                 "the model's input is \"x\"");
}

static void test_unknown_and_duplicate_output(void **state) {
    (void)state;
    req_builder r;
    make_request(&r, 2);
    const char *bad[] = {"probabilities", "logits"};
    request_outputs(&r, 2, bad);
    expect_error(&r, KL_GRPC_INVALID_ARGUMENT, "unknown output \"logits\" requested", NULL);
    const char *twice[] = {"class", "class"};
    request_outputs(&r, 2, twice);
    expect_error(&r, KL_GRPC_INVALID_ARGUMENT, "output \"class\" requested twice", NULL);
    const char *three[] = {"class", "probabilities", "class"};
    request_outputs(&r, 3, three);
    expect_error(&r, KL_GRPC_INVALID_ARGUMENT, "3 outputs requested", NULL);
}

static void test_random_bytes_never_crash(void **state) {
    (void)state;
    /* Bytes that cannot parse: a field with a length running past the end. */
    const uint8_t trunc[] = {0x2a, 0x7f, 0x0a, 0x01, 'x'};
    kl_oip_request out;
    assert_int_equal(kl_oip_decode_infer(trunc, sizeof trunc, &SIG, &out),
                     KL_GRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(kl_errmsg(), "malformed ModelInferRequest"));
    assert_null(out.rows);
    /* Random buffers: every answer is a code and a message, never a crash or a leak. */
    uint32_t x = 2463534242u;
    uint8_t buf[512];
    int malformed = 0;
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = (size_t)(iter % 97) * 5 + 1;
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            buf[i] = (uint8_t)x;
        }
        kl_grpc_code c = kl_oip_decode_infer(buf, n, &SIG, &out);
        assert_int_equal(c, KL_GRPC_INVALID_ARGUMENT);
        assert_true(kl_errmsg()[0] != '\0');
        if (strstr(kl_errmsg(), "malformed ModelInferRequest")) malformed++;
        kl_oip_request_free(&out);
    }
    assert_true(malformed > 100);
    /* A valid request cut short at every length is refused the same way. */
    req_builder r;
    make_request(&r, 2);
    size_t len;
    uint8_t *full = pack(&r, &len);
    for (size_t n = 0; n < len; n++) {
        kl_grpc_code c = kl_oip_decode_infer(full, n, &SIG, &out);
        assert_int_equal(c, KL_GRPC_INVALID_ARGUMENT);
        kl_oip_request_free(&out);
    }
    free(full);
}

/* An unknown model is the resolver's NOT_FOUND, with the model named. */
static kl_grpc_code resolve_one(void *ctx, const char *name, const char *version,
                                kl_oip_model_sig *sig) {
    (void)ctx;
    if (strcmp(name, "fmnist") != 0) {
        kl_seterr(KL_ENOTFOUND, "unknown model");
        return KL_GRPC_NOT_FOUND;
    }
    if (version[0] && strcmp(version, "3") != 0) {
        kl_seterr(KL_ENOTFOUND, "unknown version");
        return KL_GRPC_NOT_FOUND;
    }
    *sig = SIG;
    return KL_GRPC_OK;
}

static void test_resolver_not_found(void **state) {
    (void)state;
    req_builder r;
    make_request(&r, 2);
    size_t len;
    kl_oip_request out;
    uint8_t *buf = pack(&r, &len);
    assert_int_equal(kl_oip_decode_infer_resolve(buf, len, resolve_one, NULL, &out), KL_GRPC_OK);
    kl_oip_request_free(&out);
    free(buf);
    r.m.model_name = "mnist";
    buf = pack(&r, &len);
    assert_int_equal(kl_oip_decode_infer_resolve(buf, len, resolve_one, NULL, &out),
                     KL_GRPC_NOT_FOUND);
    assert_string_equal(kl_errmsg(), "model \"mnist\" version 3: unknown model");
    free(buf);
    r.m.model_name = "fmnist";
    r.m.model_version = "7";
    buf = pack(&r, &len);
    assert_int_equal(kl_oip_decode_infer_resolve(buf, len, resolve_one, NULL, &out),
                     KL_GRPC_NOT_FOUND);
    assert_string_equal(kl_errmsg(), "model \"fmnist\" version 7: unknown version");
    free(buf);
}

/* Bytes written by Google's protobuf runtime (Python) from Triton's own grpc_service.proto, not
 * from kiln's copy: a ModelInferRequest for "fmnist" v3, id "t1", priority uint64 3, output
 * "class", input "x" FP32 [2,3] = {1, -2, 0.25, 3.5, 0, -0.125} in raw_input_contents; and the
 * ModelInferResponse carrying "class" INT64 [2] = {2, 0}. They pin the field numbers and wire
 * types to Triton's, whatever proto/grpc_predict_v2.proto says. */
static const uint8_t TRITON_REQUEST[81] = {
    0x0a, 0x06, 0x66, 0x6d, 0x6e, 0x69, 0x73, 0x74, 0x12, 0x01, 0x33, 0x1a, 0x02, 0x74,
    0x31, 0x22, 0x0e, 0x0a, 0x08, 0x70, 0x72, 0x69, 0x6f, 0x72, 0x69, 0x74, 0x79, 0x12,
    0x02, 0x28, 0x03, 0x2a, 0x0d, 0x0a, 0x01, 0x78, 0x12, 0x04, 0x46, 0x50, 0x33, 0x32,
    0x1a, 0x02, 0x02, 0x03, 0x32, 0x07, 0x0a, 0x05, 0x63, 0x6c, 0x61, 0x73, 0x73, 0x3a,
    0x18, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x00, 0x80, 0x3e, 0x00,
    0x00, 0x60, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xbe};
static const uint8_t TRITON_RESPONSE[52] = {
    0x0a, 0x06, 0x66, 0x6d, 0x6e, 0x69, 0x73, 0x74, 0x12, 0x01, 0x33, 0x1a, 0x02,
    0x74, 0x31, 0x2a, 0x11, 0x0a, 0x05, 0x63, 0x6c, 0x61, 0x73, 0x73, 0x12, 0x05,
    0x49, 0x4e, 0x54, 0x36, 0x34, 0x1a, 0x01, 0x02, 0x32, 0x10, 0x02, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};

static void test_triton_wire_bytes(void **state) {
    (void)state;
    kl_oip_request req;
    assert_int_equal(kl_oip_decode_infer(TRITON_REQUEST, sizeof TRITON_REQUEST, &SIG, &req),
                     KL_GRPC_OK);
    assert_string_equal(req.model_name, "fmnist");
    assert_string_equal(req.model_version, "3");
    assert_string_equal(req.id, "t1");
    assert_int_equal(req.batch, 2);
    const float want[6] = {1.0f, -2.0f, 0.25f, 3.5f, 0.0f, -0.125f};
    for (int i = 0; i < 6; i++)
        assert_true(req.rows[i] == want[i]);
    assert_int_equal(req.has_priority, 1);
    assert_int_equal(req.priority, 3);
    assert_int_equal(req.n_outputs, 1);
    assert_int_equal(req.outputs[0], KL_OIP_OUT_CLASS);
    const float probs[8] = {0};
    const int64_t cls[2] = {2, 0};
    uint8_t *buf;
    size_t len;
    assert_int_equal(kl_oip_encode_infer_response(&req, "3", probs, cls, 4, &buf, &len), KL_OK);
    assert_int_equal(len, sizeof TRITON_RESPONSE);
    assert_memory_equal(buf, TRITON_RESPONSE, len);
    free(buf);
    kl_oip_request_free(&req);
}

/* --- responses and small messages ------------------------------------------------------------ */

static void test_infer_response_round_trip(void **state) {
    (void)state;
    req_builder r;
    make_request(&r, 2);
    kl_oip_request req;
    assert_int_equal(decode(&r, &req), KL_GRPC_OK);
    const float probs[8] = {0.1f, 0.6f, 0.2f, 0.1f, 0.7f, 0.1f, 0.1f, 0.1f};
    uint8_t *buf;
    size_t len;
    assert_int_equal(kl_oip_encode_infer_response(&req, "3", probs, NULL, 4, &buf, &len), KL_OK);
    Inference__ModelInferResponse *m = inference__model_infer_response__unpack(NULL, len, buf);
    assert_non_null(m);
    assert_string_equal(m->model_name, "fmnist");
    assert_string_equal(m->model_version, "3");
    assert_string_equal(m->id, "req-42");
    assert_int_equal(m->n_outputs, 2);
    assert_int_equal(m->n_raw_output_contents, 2);
    assert_string_equal(m->outputs[0]->name, "probabilities");
    assert_string_equal(m->outputs[0]->datatype, "FP32");
    assert_int_equal(m->outputs[0]->n_shape, 2);
    assert_int_equal(m->outputs[0]->shape[0], 2);
    assert_int_equal(m->outputs[0]->shape[1], 4);
    assert_null(m->outputs[0]->contents);
    assert_int_equal(m->raw_output_contents[0].len, sizeof probs);
    assert_memory_equal(m->raw_output_contents[0].data, probs, sizeof probs);
    assert_string_equal(m->outputs[1]->name, "class");
    assert_string_equal(m->outputs[1]->datatype, "INT64");
    assert_int_equal(m->outputs[1]->n_shape, 1);
    assert_int_equal(m->outputs[1]->shape[0], 2);
    assert_int_equal(m->raw_output_contents[1].len, 16);
    /* arg-max computed when no classes are given: row 0 → 1, row 1 → 0 (little-endian). */
    const uint8_t want[16] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(m->raw_output_contents[1].data, want, 16);
    inference__model_infer_response__free_unpacked(m, NULL);
    free(buf);

    /* Only "class" requested: one output, one raw entry, the given classes. */
    req.n_outputs = 1;
    req.outputs[0] = KL_OIP_OUT_CLASS;
    const int64_t cls[2] = {3, 2};
    assert_int_equal(kl_oip_encode_infer_response(&req, "3", probs, cls, 4, &buf, &len), KL_OK);
    m = inference__model_infer_response__unpack(NULL, len, buf);
    assert_non_null(m);
    assert_int_equal(m->n_outputs, 1);
    assert_int_equal(m->n_raw_output_contents, 1);
    assert_string_equal(m->outputs[0]->name, "class");
    assert_memory_equal(m->raw_output_contents[0].data, cls, sizeof cls);
    inference__model_infer_response__free_unpacked(m, NULL);
    free(buf);
    kl_oip_request_free(&req);
}

static void test_model_metadata_and_ref(void **state) {
    (void)state;
    const char *versions[] = {"2", "3"};
    uint8_t *buf;
    size_t len;
    assert_int_equal(
        kl_oip_encode_model_metadata("fmnist", versions, 2, "kiln_mlp", &SIG, &buf, &len), KL_OK);
    Inference__ModelMetadataResponse *m =
        inference__model_metadata_response__unpack(NULL, len, buf);
    assert_non_null(m);
    assert_string_equal(m->name, "fmnist");
    assert_int_equal(m->n_versions, 2);
    assert_string_equal(m->versions[1], "3");
    assert_string_equal(m->platform, "kiln_mlp");
    assert_int_equal(m->n_inputs, 1);
    assert_string_equal(m->inputs[0]->name, "x");
    assert_string_equal(m->inputs[0]->datatype, "FP32");
    assert_int_equal(m->inputs[0]->n_shape, 2);
    assert_int_equal(m->inputs[0]->shape[0], -1);
    assert_int_equal(m->inputs[0]->shape[1], 3);
    assert_int_equal(m->n_outputs, 2);
    assert_string_equal(m->outputs[0]->name, "probabilities");
    assert_int_equal(m->outputs[0]->shape[1], 4);
    assert_string_equal(m->outputs[1]->name, "class");
    assert_string_equal(m->outputs[1]->datatype, "INT64");
    inference__model_metadata_response__free_unpacked(m, NULL);
    free(buf);

    /* ModelConfigRequest has the same {name, version} layout as the other three. */
    Inference__ModelConfigRequest cr = INFERENCE__MODEL_CONFIG_REQUEST__INIT;
    cr.name = "fmnist";
    cr.version = "3";
    len = inference__model_config_request__get_packed_size(&cr);
    buf = malloc(len);
    inference__model_config_request__pack(&cr, buf);
    char *name, *version;
    assert_int_equal(kl_oip_decode_model_ref(buf, len, &name, &version), KL_GRPC_OK);
    assert_string_equal(name, "fmnist");
    assert_string_equal(version, "3");
    free(name);
    free(version);
    free(buf);
    const uint8_t junk[] = {0x0a, 0x09, 'f'};
    assert_int_equal(kl_oip_decode_model_ref(junk, sizeof junk, &name, &version),
                     KL_GRPC_INVALID_ARGUMENT);
    assert_null(name);
    assert_non_null(strstr(kl_errmsg(), "malformed request"));
    /* An empty message is valid: every field absent. */
    assert_int_equal(kl_oip_decode_model_ref(junk, 0, &name, &version), KL_GRPC_OK);
    assert_string_equal(name, "");
    free(name);
    free(version);
}

static void test_bool_response_and_codes(void **state) {
    (void)state;
    uint8_t *buf;
    size_t len;
    assert_int_equal(kl_oip_encode_bool_response(1, &buf, &len), KL_OK);
    /* field 1, varint, true: the bytes of ServerLive/ServerReady/ModelReady responses alike. */
    assert_int_equal(len, 2);
    assert_int_equal(buf[0], 0x08);
    assert_int_equal(buf[1], 0x01);
    Inference__ModelReadyResponse *m = inference__model_ready_response__unpack(NULL, len, buf);
    assert_non_null(m);
    assert_true(m->ready);
    inference__model_ready_response__free_unpacked(m, NULL);
    free(buf);
    assert_int_equal(kl_oip_encode_bool_response(0, &buf, &len), KL_OK);
    assert_int_equal(len, 0);
    free(buf);

    assert_int_equal(KL_GRPC_INVALID_ARGUMENT, 3);
    assert_int_equal(KL_GRPC_NOT_FOUND, 5);
    assert_int_equal(KL_GRPC_RESOURCE_EXHAUSTED, 8);
    assert_int_equal(KL_GRPC_UNIMPLEMENTED, 12);
    assert_int_equal(KL_GRPC_UNAVAILABLE, 14);
    assert_string_equal(kl_grpc_code_name(KL_GRPC_RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
    assert_string_equal(kl_grpc_code_name(KL_GRPC_UNAUTHENTICATED), "UNAUTHENTICATED");
    assert_int_equal(kl_grpc_code_from_status(KL_EINVAL), KL_GRPC_INVALID_ARGUMENT);
    assert_int_equal(kl_grpc_code_from_status(KL_ENOTFOUND), KL_GRPC_NOT_FOUND);
    assert_int_equal(kl_grpc_code_from_status(KL_EIO), KL_GRPC_INTERNAL);

    /* The health messages: SERVING is 1 on the wire. */
    Grpc__Health__V1__HealthCheckResponse h = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    h.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    uint8_t hb[8];
    assert_int_equal(grpc__health__v1__health_check_response__pack(&h, hb), 2);
    assert_int_equal(hb[0], 0x08);
    assert_int_equal(hb[1], 0x01);
}

static void test_model_config(void **state) {
    (void)state;
    const int32_t preferred[2] = {4, 8};
    kl_oip_model_config cfg = {.name = "fmnist",
                               .backend = "kiln",
                               .sig = SIG,
                               .dynamic_batching = 1,
                               .preferred = preferred,
                               .n_preferred = 2,
                               .max_queue_delay_us = 100,
                               .max_queue_size = 64,
                               .instance_count = 2};
    uint8_t *buf;
    size_t len;
    assert_int_equal(kl_oip_encode_model_config(&cfg, &buf, &len), KL_OK);
    Inference__ModelConfigResponse *r = inference__model_config_response__unpack(NULL, len, buf);
    assert_non_null(r);
    const Inference__ModelConfig *c = r->config;
    assert_non_null(c);
    assert_string_equal(c->name, "fmnist");
    assert_string_equal(c->backend, "kiln");
    assert_int_equal(c->max_batch_size, 8);
    assert_int_equal(c->n_input, 1);
    assert_string_equal(c->input[0]->name, "x");
    assert_int_equal(c->input[0]->data_type, INFERENCE__DATA_TYPE__TYPE_FP32);
    assert_int_equal(c->input[0]->n_dims, 1); /* the batch dimension is left out */
    assert_int_equal(c->input[0]->dims[0], 3);
    assert_int_equal(c->n_output, 2);
    assert_string_equal(c->output[0]->name, "probabilities");
    assert_int_equal(c->output[0]->dims[0], 4);
    assert_string_equal(c->output[1]->name, "class");
    assert_int_equal(c->output[1]->data_type, INFERENCE__DATA_TYPE__TYPE_INT64);
    assert_int_equal(c->output[1]->n_dims, 1);
    assert_non_null(c->output[1]->reshape);
    assert_int_equal(c->output[1]->reshape->n_shape, 0);
    assert_int_equal(c->scheduling_choice_case,
                     INFERENCE__MODEL_CONFIG__SCHEDULING_CHOICE_DYNAMIC_BATCHING);
    assert_int_equal(c->dynamic_batching->n_preferred_batch_size, 2);
    assert_int_equal(c->dynamic_batching->preferred_batch_size[1], 8);
    assert_int_equal(c->dynamic_batching->max_queue_delay_microseconds, 100);
    assert_non_null(c->dynamic_batching->default_queue_policy);
    assert_int_equal(c->dynamic_batching->default_queue_policy->max_queue_size, 64);
    assert_int_equal(c->n_instance_group, 1);
    assert_int_equal(c->instance_group[0]->kind, INFERENCE__MODEL_INSTANCE_GROUP__KIND__KIND_CPU);
    assert_int_equal(c->instance_group[0]->count, 2);
    inference__model_config_response__free_unpacked(r, NULL);
    free(buf);

    /* Batching off: no scheduling choice on the wire. */
    cfg.dynamic_batching = 0;
    assert_int_equal(kl_oip_encode_model_config(&cfg, &buf, &len), KL_OK);
    r = inference__model_config_response__unpack(NULL, len, buf);
    assert_non_null(r);
    assert_int_equal(r->config->scheduling_choice_case,
                     INFERENCE__MODEL_CONFIG__SCHEDULING_CHOICE__NOT_SET);
    inference__model_config_response__free_unpacked(r, NULL);
    free(buf);
    cfg.sig.max_batch = 0;
    assert_int_equal(kl_oip_encode_model_config(&cfg, &buf, &len), KL_EINVAL);
}

static void test_server_metadata(void **state) {
    (void)state;
    const char *ext[] = {"model_configuration", "schedule_policy"};
    uint8_t *buf;
    size_t len;
    assert_int_equal(kl_oip_encode_server_metadata("kiln", "0.1.0", ext, 2, &buf, &len), KL_OK);
    Inference__ServerMetadataResponse *m =
        inference__server_metadata_response__unpack(NULL, len, buf);
    assert_non_null(m);
    assert_string_equal(m->name, "kiln");
    assert_string_equal(m->version, "0.1.0");
    assert_int_equal(m->n_extensions, 2);
    assert_string_equal(m->extensions[1], "schedule_policy");
    inference__server_metadata_response__free_unpacked(m, NULL);
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw_round_trip),
        cmocka_unit_test(test_raw_bytes_are_little_endian),
        cmocka_unit_test(test_fp32_contents_path),
        cmocka_unit_test(test_max_batch_accepted_and_any_input_name),
        cmocka_unit_test(test_requested_outputs_order_and_parameters),
        cmocka_unit_test(test_wrong_datatype),
        cmocka_unit_test(test_wrong_rank),
        cmocka_unit_test(test_wrong_feature_count),
        cmocka_unit_test(test_byte_size_mismatch),
        cmocka_unit_test(test_raw_and_typed_together),
        cmocka_unit_test(test_no_data_and_extra_raw),
        cmocka_unit_test(test_empty_and_oversized_batch),
        cmocka_unit_test(test_input_count_and_name),
        cmocka_unit_test(test_unknown_and_duplicate_output),
        cmocka_unit_test(test_random_bytes_never_crash),
        cmocka_unit_test(test_resolver_not_found),
        cmocka_unit_test(test_triton_wire_bytes),
        cmocka_unit_test(test_infer_response_round_trip),
        cmocka_unit_test(test_model_metadata_and_ref),
        cmocka_unit_test(test_bool_response_and_codes),
        cmocka_unit_test(test_model_config),
        cmocka_unit_test(test_server_metadata),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
