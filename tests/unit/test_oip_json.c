/* test_oip_json.c — the REST/JSON form of the Open Inference Protocol: JSON requests (flat and
 * nested data) and Triton binary-extension requests decode to the same rows, responses carry
 * JSON or binary outputs in the documented layout, every malformed request gets
 * INVALID_ARGUMENT (or the resolver's code) and a message naming the problem, the metadata,
 * config, index and statistics bodies parse back, and random bodies never crash the decoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "serving/oip_json.h"

static const kl_oip_model_sig SIG = {
    .input_name = "x", .n_features = 3, .n_classes = 4, .max_batch = 8};

/* A resolver that knows model "m" (any version but "9") with SIG, or *ctx when given. */
static kl_grpc_code resolve(void *ctx, const char *name, const char *version,
                            kl_oip_model_sig *sig) {
    if (strcmp(name, "m") != 0) {
        kl_seterr(KL_ENOTFOUND, "unknown model");
        return KL_GRPC_NOT_FOUND;
    }
    if (strcmp(version, "9") == 0) {
        kl_seterr(KL_ENOTFOUND, "unknown version");
        return KL_GRPC_NOT_FOUND;
    }
    *sig = ctx ? *(const kl_oip_model_sig *)ctx : SIG;
    return KL_GRPC_OK;
}

/* Decodes a whole-JSON body for model "m". */
static kl_grpc_code decode(const char *json, kl_oip_request *req, kl_oip_json_format *fmt) {
    return kl_oip_json_decode_infer(json, strlen(json), NULL, "m", "", resolve, NULL, req, fmt);
}

/* Expects json to be refused with INVALID_ARGUMENT and a message containing `what`. */
static void expect_bad(const char *json, const char *what) {
    kl_oip_request req;
    kl_oip_json_format fmt;
    kl_grpc_code c = decode(json, &req, &fmt);
    if (c != KL_GRPC_INVALID_ARGUMENT || !strstr(kl_errmsg(), what))
        fail_msg("body %s: code %d, message \"%s\", expected INVALID_ARGUMENT with \"%s\"", json,
                 (int)c, kl_errmsg(), what);
    assert_null(req.rows);
    assert_null(req.model_name);
}

/* A binary-extension body: the JSON, then `nbin` bytes; *hdr receives the header value. */
static char *binary_body(const char *json, const void *bin, size_t nbin, size_t *len,
                         char hdr[32]) {
    size_t n = strlen(json);
    char *b = malloc(n + nbin + 1);
    memcpy(b, json, n);
    if (nbin) memcpy(b + n, bin, nbin);
    *len = n + nbin;
    snprintf(hdr, 32, "%zu", n);
    return b;
}

static cJSON *parse_body(const kl_oip_json_body *b) {
    cJSON *j = cJSON_ParseWithLength(b->data, b->json_len);
    assert_non_null(j);
    return j;
}

/* --- decoding: good requests ----------------------------------------------------------------- */

static void test_json_flat_and_nested(void **state) {
    (void)state;
    kl_oip_request req;
    kl_oip_json_format fmt;
    assert_int_equal(decode("{\"id\":\"r1\",\"inputs\":[{\"name\":\"x\",\"shape\":[2,3],"
                            "\"datatype\":\"FP32\",\"data\":[1,2.5,-3,0.1,1e-3,6]}]}",
                            &req, &fmt),
                     KL_GRPC_OK);
    assert_string_equal(req.model_name, "m");
    assert_string_equal(req.model_version, "");
    assert_string_equal(req.id, "r1");
    assert_int_equal(req.batch, 2);
    assert_int_equal(req.n_features, 3);
    const float want[6] = {1, 2.5f, -3, 0.1f, 1e-3f, 6};
    assert_memory_equal(req.rows, want, sizeof want);
    assert_int_equal(req.n_outputs, 2);
    assert_int_equal(req.outputs[0], KL_OIP_OUT_PROBABILITIES);
    assert_int_equal(req.outputs[1], KL_OIP_OUT_CLASS);
    assert_false(fmt.binary[0] || fmt.binary[1]);
    assert_false(req.has_priority);
    kl_oip_request_free(&req);

    assert_int_equal(decode("{\"inputs\":[{\"name\":\"x\",\"shape\":[2,3],\"datatype\":\"FP32\","
                            "\"data\":[[1,2.5,-3],[0.1,1e-3,6]]}],\"outputs\":[{\"name\":"
                            "\"class\"}],\"parameters\":{\"priority\":2,\"timeout\":500,"
                            "\"sequence_id\":7,\"custom\":\"x\"}}",
                            &req, &fmt),
                     KL_GRPC_OK);
    assert_memory_equal(req.rows, want, sizeof want);
    assert_string_equal(req.id, "");
    assert_int_equal(req.n_outputs, 1);
    assert_int_equal(req.outputs[0], KL_OIP_OUT_CLASS);
    assert_true(req.has_priority);
    assert_int_equal(req.priority, 2);
    assert_int_equal(req.timeout_us, 500);
    kl_oip_request_free(&req);
    kl_oip_request_free(&req); /* twice is safe */
}

static void test_binary_extension_request(void **state) {
    (void)state;
    const float rows[6] = {0.5f, -1, 2, 3.25f, 4, -5e-8f};
    const char *json = "{\"inputs\":[{\"name\":\"x\",\"shape\":[2,3],\"datatype\":\"FP32\","
                       "\"parameters\":{\"binary_data_size\":24}}],\"outputs\":[{\"name\":"
                       "\"class\",\"parameters\":{\"binary_data\":true}},{\"name\":"
                       "\"probabilities\",\"parameters\":{\"binary_data\":false}}]}";
    size_t len;
    char hdr[32];
    char *body = binary_body(json, rows, sizeof rows, &len, hdr);
    kl_oip_request req;
    kl_oip_json_format fmt;
    assert_int_equal(kl_oip_json_decode_infer(body, len, hdr, "m", "3", resolve, NULL, &req, &fmt),
                     KL_GRPC_OK);
    assert_string_equal(req.model_version, "3");
    assert_memory_equal(req.rows, rows, sizeof rows);
    assert_int_equal(req.outputs[0], KL_OIP_OUT_CLASS);
    assert_int_equal(req.outputs[1], KL_OIP_OUT_PROBABILITIES);
    assert_true(fmt.binary[KL_OIP_OUT_CLASS]);
    assert_false(fmt.binary[KL_OIP_OUT_PROBABILITIES]);
    kl_oip_request_free(&req);
    /* the header may equal the whole body when no input is binary; spaces around the number */
    const char *j2 = "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,3],\"datatype\":\"FP32\",\"data\":"
                     "[1,2,3]}],\"parameters\":{\"binary_data_output\":true}}";
    snprintf(hdr, sizeof hdr, " %zu ", strlen(j2));
    assert_int_equal(
        kl_oip_json_decode_infer(j2, strlen(j2), hdr, "m", "", resolve, NULL, &req, &fmt),
        KL_GRPC_OK);
    assert_true(fmt.binary[0] && fmt.binary[1]);
    kl_oip_request_free(&req);
    free(body);
}

/* --- decoding: every malformed case ---------------------------------------------------------- */

#define IN(shape, rest)                                                                            \
    "{\"inputs\":[{\"name\":\"x\",\"shape\":" shape ",\"datatype\":\"FP32\"" rest "}]"
#define GOOD IN("[1,3]", ",\"data\":[1,2,3]")

static void test_malformed_json(void **state) {
    (void)state;
    expect_bad("", "empty inference request");
    expect_bad("{", "malformed JSON");
    expect_bad("{\"inputs\": [1,}", "malformed JSON");
    expect_bad("[1,2]", "must be a JSON object");
    expect_bad("\"str\"", "must be a JSON object");
    expect_bad(GOOD "} trailing", "unexpected text");
    expect_bad(GOOD "}{}", "unexpected text");
    kl_oip_request req;
    kl_oip_json_format fmt;
    /* whitespace after the object is fine */
    assert_int_equal(decode(GOOD "}  \n", &req, &fmt), KL_GRPC_OK);
    kl_oip_request_free(&req);
}

static void test_malformed_inputs(void **state) {
    (void)state;
    expect_bad("{}", "request has 0 inputs, the model takes 1 (\"x\")");
    expect_bad("{\"inputs\":{}}", "\"inputs\" must be an array");
    expect_bad("{\"inputs\":[]}", "request has 0 inputs");
    expect_bad("{\"inputs\":[{},{}]}", "request has 2 inputs");
    expect_bad("{\"inputs\":[7]}", "inputs[0] must be an object");
    expect_bad("{\"inputs\":[{\"name\":5}]}", "\"name\" must be a string");
    expect_bad("{\"inputs\":[{\"name\":\"y\"}]}",
               "unknown input \"y\" (the model's input is \"x\")");
    expect_bad("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP64\"}]}",
               "input \"x\": datatype \"FP64\", expected \"FP32\"");
    expect_bad("{\"inputs\":[{\"name\":\"x\",\"datatype\":1}]}", "\"datatype\" must be a string");
    expect_bad("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\"}]}",
               "shape [] has rank 0, expected [batch, 3]");
    expect_bad(IN("[1,3,1]", "") "}", "shape [1,3,1] has rank 3");
    expect_bad(IN("3", "") "}", "\"shape\" must be an array of integers");
    expect_bad(IN("[1.5,3]", "") "}", "\"shape\" must be an array of integers");
    expect_bad(IN("[\"1\",3]", "") "}", "\"shape\" must be an array of integers");
    expect_bad(IN("[1e300,3]", "") "}", "\"shape\" must be an array of integers");
    expect_bad(IN("[2,4]", "") "}", "shape [2,4]: 4 features, expected 3");
    expect_bad(IN("[0,3]", ",\"data\":[]") "}", "empty batch (shape [0,3])");
    expect_bad(IN("[-2,3]", "") "}", "batch -2 must be positive");
    expect_bad(IN("[9,3]", "") "}", "batch 9 exceeds the model's max batch size 8");
}

static void test_malformed_data(void **state) {
    (void)state;
    expect_bad(IN("[1,3]", "") "}", "no data (neither \"data\" nor parameters.binary_data_size)");
    expect_bad(IN("[1,3]", ",\"data\":5") "}", "\"data\" must be an array");
    expect_bad(IN("[1,3]", ",\"data\":[1,2]") "}", "\"data\" holds 2 values, shape [1,3] needs 3");
    expect_bad(IN("[1,3]", ",\"data\":[1,2,3,4]") "}", "holds 4 values");
    expect_bad(IN("[2,3]", ",\"data\":[[1,2,3],[4,5]]") "}", "holds 5 values");
    expect_bad(IN("[1,3]", ",\"data\":[1,\"2\",3]") "}", "data[1] is not a number");
    expect_bad(IN("[1,3]", ",\"data\":[1,2,null]") "}", "data[2] is not a number");
    expect_bad(IN("[1,3]", ",\"data\":[[1],{},3]") "}", "data[1] is not a number");
    expect_bad(IN("[1,3]", ",\"data\":[1,2,1e39]") "}", "data[2] is out of FP32 range");
    expect_bad(IN("[1,3]", ",\"data\":[1,2,3],\"parameters\":{\"binary_data_size\":12}") "}",
               "both \"data\" and parameters.binary_data_size set");
    expect_bad(IN("[1,3]", ",\"parameters\":{\"binary_data_size\":12}") "}",
               "binary_data_size given but the request has no Inference-Header-Content-Length");
    expect_bad(IN("[1,3]", ",\"parameters\":{\"binary_data_size\":-1}") "}",
               "binary_data_size must be a non-negative integer");
    expect_bad(IN("[1,3]", ",\"parameters\":{\"shared_memory_region\":\"r\"}") "}",
               "shared memory is not supported");
    expect_bad(IN("[1,3]", ",\"parameters\":[]") "}", "\"parameters\" must be an object");
    /* a value that rounds to FLT_MAX is accepted */
    kl_oip_request req;
    kl_oip_json_format fmt;
    assert_int_equal(decode(IN("[1,3]", ",\"data\":[3.4028235e38,0,0]") "}", &req, &fmt),
                     KL_GRPC_OK);
    kl_oip_request_free(&req);
}

static void test_malformed_binary(void **state) {
    (void)state;
    const float rows[4] = {1, 2, 3, 4};
    const char *j12 = IN("[1,3]", ",\"parameters\":{\"binary_data_size\":12}") "}";
    const char *j8 = IN("[1,3]", ",\"parameters\":{\"binary_data_size\":8}") "}";
    const char *jd = GOOD "}";
    struct {
        const char *json;     /* JSON part */
        size_t nbin;          /* bytes appended */
        const char *hdr;      /* header override, or NULL for the JSON length */
        const char *expected; /* in the message */
    } cases[] = {
        {j12, 12, "abc", "Inference-Header-Content-Length \"abc\" is not a byte count"},
        {j12, 12, "-5", "is not a byte count"},
        {j12, 12, "12x", "is not a byte count"},
        {j12, 12, "", "is not a byte count"},
        {j12, 12, "99999999999999999999999", "is not a byte count"},
        {j12, 12, "100000", "exceeds the body's"},
        {j12, 12, "0", "empty inference request"},
        {j12, 8, NULL, "binary_data_size 12 but only 8 bytes follow the JSON header"},
        {j8, 8, NULL, "binary_data_size 8 bytes, shape [1,3] FP32 needs 12"},
        {j12, 16, NULL, "16 bytes of binary data follow the JSON header, the inputs use 12"},
        {jd, 4, NULL, "4 bytes of binary data follow the JSON header, the inputs use 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        char hdr[32];
        char *body = binary_body(cases[i].json, rows, cases[i].nbin, &len, hdr);
        kl_oip_request req;
        kl_oip_json_format fmt;
        kl_grpc_code c = kl_oip_json_decode_infer(body, len, cases[i].hdr ? cases[i].hdr : hdr, "m",
                                                  "", resolve, NULL, &req, &fmt);
        if (c != KL_GRPC_INVALID_ARGUMENT || !strstr(kl_errmsg(), cases[i].expected))
            fail_msg("case %zu: code %d, \"%s\"", i, (int)c, kl_errmsg());
        assert_null(req.rows);
        free(body);
    }
    /* a header cutting the JSON short is a JSON error */
    size_t len;
    char hdr[32];
    char *body = binary_body(j12, rows, 12, &len, hdr);
    kl_oip_request req;
    kl_oip_json_format fmt;
    assert_int_equal(kl_oip_json_decode_infer(body, len, "10", "m", "", resolve, NULL, &req, &fmt),
                     KL_GRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(kl_errmsg(), "malformed JSON"));
    free(body);
}

static void test_malformed_outputs_and_parameters(void **state) {
    (void)state;
    expect_bad(GOOD ",\"outputs\":{}}", "\"outputs\" must be an array");
    expect_bad(GOOD ",\"outputs\":[1]}", "outputs[0] must be an object");
    expect_bad(GOOD ",\"outputs\":[{\"name\":1}]}", "outputs[0]: \"name\" must be a string");
    expect_bad(GOOD ",\"outputs\":[{\"name\":\"a\"},{\"name\":\"b\"},{\"name\":\"c\"}]}",
               "3 outputs requested, the model has 2");
    expect_bad(GOOD ",\"outputs\":[{\"name\":\"logits\"}]}",
               "unknown output \"logits\" requested (the model has \"probabilities\" and "
               "\"class\")");
    expect_bad(GOOD ",\"outputs\":[{\"name\":\"class\"},{\"name\":\"class\"}]}",
               "output \"class\" requested twice");
    expect_bad(GOOD ",\"outputs\":[{\"name\":\"class\",\"parameters\":{\"binary_data\":1}}]}",
               "parameter \"binary_data\" must be a boolean");
    expect_bad(GOOD ",\"outputs\":[{\"name\":\"class\",\"parameters\":{\"classification\":3}}]}",
               "classification extension is not supported");
    expect_bad(GOOD ",\"outputs\":[{\"name\":\"class\",\"parameters\":7}]}",
               "\"parameters\" must be an object");
    expect_bad(GOOD ",\"parameters\":[]}", "\"parameters\" must be an object");
    expect_bad(GOOD ",\"parameters\":{\"priority\":\"high\"}}",
               "parameter \"priority\": expected an integer");
    expect_bad(GOOD ",\"parameters\":{\"priority\":1.5}}", "expected an integer");
    expect_bad(GOOD ",\"parameters\":{\"priority\":-1}}",
               "parameter \"priority\": -1 must be >= 0");
    expect_bad(GOOD ",\"parameters\":{\"timeout\":-5}}", "parameter \"timeout\": -5 must be >= 0");
    expect_bad(GOOD ",\"parameters\":{\"timeout\":1e30}}", "parameter \"timeout\": 1e+30 out of");
    expect_bad(GOOD ",\"parameters\":{\"binary_data_output\":\"yes\"}}",
               "\"binary_data_output\": expected a boolean");
    expect_bad(GOOD ",\"id\":5}", "\"id\" must be a string");
    /* messages carry the model */
    expect_bad(GOOD ",\"id\":5}", "model \"m\": ");
}

static void test_resolver_codes(void **state) {
    (void)state;
    kl_oip_request req;
    kl_oip_json_format fmt;
    const char *j = GOOD "}";
    assert_int_equal(
        kl_oip_json_decode_infer(j, strlen(j), NULL, "nope", "", resolve, NULL, &req, &fmt),
        KL_GRPC_NOT_FOUND);
    assert_non_null(strstr(kl_errmsg(), "model \"nope\": unknown model"));
    assert_int_equal(
        kl_oip_json_decode_infer(j, strlen(j), NULL, "m", "9", resolve, NULL, &req, &fmt),
        KL_GRPC_NOT_FOUND);
    assert_non_null(strstr(kl_errmsg(), "model \"m\" version 9: unknown version"));
    assert_null(req.rows);
    /* any input name is accepted when the signature names none */
    kl_oip_model_sig any = SIG;
    any.input_name = NULL;
    const char *j2 = "{\"inputs\":[{\"name\":\"whatever\",\"shape\":[1,3],\"datatype\":"
                     "\"FP32\",\"data\":[1,2,3]}]}";
    assert_int_equal(
        kl_oip_json_decode_infer(j2, strlen(j2), NULL, "m", "", resolve, &any, &req, &fmt),
        KL_GRPC_OK);
    kl_oip_request_free(&req);
    assert_int_equal(kl_oip_json_decode_infer("{}", 2, NULL, "m", "", resolve, &any, &req, &fmt),
                     KL_GRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(kl_errmsg(), "request has 0 inputs, the model takes 1"));
}

/* --- encoding ----------------------------------------------------------------------------------
 */

static const float PROBS[8] = {0.1f, 0.2f, 0.3f, 0.4f, 0.7f, 0.1f, 0.1f, 0.1f};
static const int64_t CLASSES[2] = {3, 0};

static kl_infer_result result(void) {
    kl_infer_result r;
    memset(&r, 0, sizeof r);
    r.code = KL_GRPC_OK;
    r.version = "3";
    r.probs = PROBS;
    r.classes = CLASSES;
    r.batch = 2;
    r.n_classes = 4;
    return r;
}

static void test_encode_json_outputs(void **state) {
    (void)state;
    kl_oip_request req;
    kl_oip_json_format fmt;
    assert_int_equal(decode("{\"id\":\"q\\\"1\",\"inputs\":[{\"name\":\"x\",\"shape\":[2,3],"
                            "\"datatype\":\"FP32\",\"data\":[1,2,3,4,5,6]}]}",
                            &req, &fmt),
                     KL_GRPC_OK);
    kl_infer_result res = result();
    kl_oip_json_body b;
    assert_int_equal(kl_oip_json_encode_infer(&req, &fmt, &res, &b), KL_OK);
    assert_int_equal(b.json_len, b.len);
    cJSON *j = parse_body(&b);
    assert_string_equal(cJSON_GetObjectItem(j, "model_name")->valuestring, "m");
    assert_string_equal(cJSON_GetObjectItem(j, "model_version")->valuestring, "3");
    assert_string_equal(cJSON_GetObjectItem(j, "id")->valuestring, "q\"1");
    cJSON *outs = cJSON_GetObjectItem(j, "outputs");
    assert_int_equal(cJSON_GetArraySize(outs), 2);
    cJSON *p = cJSON_GetArrayItem(outs, 0), *c = cJSON_GetArrayItem(outs, 1);
    assert_string_equal(cJSON_GetObjectItem(p, "name")->valuestring, "probabilities");
    assert_string_equal(cJSON_GetObjectItem(p, "datatype")->valuestring, "FP32");
    assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(p, "shape"), 1)->valueint, 4);
    cJSON *pd = cJSON_GetObjectItem(p, "data");
    assert_int_equal(cJSON_GetArraySize(pd), 8);
    for (int i = 0; i < 8; i++) /* 9 digits: every FP32 value reads back exactly */
        assert_true((float)cJSON_GetArrayItem(pd, i)->valuedouble == PROBS[i]);
    assert_string_equal(cJSON_GetObjectItem(c, "datatype")->valuestring, "INT64");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(c, "shape")), 1);
    assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(c, "data"), 0)->valueint, 3);
    assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(c, "data"), 1)->valueint, 0);
    cJSON_Delete(j);
    kl_oip_json_body_free(&b);
    kl_oip_json_body_free(&b);
    /* no id: the key is left out; classes NULL: the arg-max */
    free(req.id);
    req.id = strdup("");
    res.classes = NULL;
    assert_int_equal(kl_oip_json_encode_infer(&req, &fmt, &res, &b), KL_OK);
    assert_null(strstr(b.data, "\"id\""));
    assert_non_null(strstr(b.data, "\"data\":[3,0]"));
    kl_oip_json_body_free(&b);
    /* a batch that does not match the request is a bug, reported as such */
    res.batch = 3;
    assert_int_equal(kl_oip_json_encode_infer(&req, &fmt, &res, &b), KL_EINVAL);
    kl_oip_request_free(&req);
}

static void test_encode_binary_layout(void **state) {
    (void)state;
    kl_oip_request req;
    kl_oip_json_format fmt;
    /* class binary first, then probabilities as JSON: only class's bytes follow */
    assert_int_equal(
        decode(IN("[2,3]", ",\"data\":[1,2,3,4,5,6]") ",\"outputs\":[{\"name\":"
                                                      "\"class\",\"parameters\":{\"binary_data\":"
                                                      "true}},{\"name\":"
                                                      "\"probabilities\"}]}",
               &req, &fmt),
        KL_GRPC_OK);
    kl_infer_result res = result();
    kl_oip_json_body b;
    assert_int_equal(kl_oip_json_encode_infer(&req, &fmt, &res, &b), KL_OK);
    assert_int_equal(b.len, b.json_len + 16);
    cJSON *j = parse_body(&b);
    cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "outputs"), 0);
    assert_null(cJSON_GetObjectItem(c, "data"));
    assert_int_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(c, "parameters"), "binary_data_size")->valueint,
        16);
    const uint8_t want_cls[16] = {3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(b.data + b.json_len, want_cls, 16);
    cJSON_Delete(j);
    kl_oip_json_body_free(&b);
    kl_oip_request_free(&req);

    /* binary_data_output: both binary, in the requested (default) order */
    assert_int_equal(decode(GOOD ",\"parameters\":{\"binary_data_output\":true}}", &req, &fmt),
                     KL_GRPC_OK);
    res.batch = 1;
    assert_int_equal(kl_oip_json_encode_infer(&req, &fmt, &res, &b), KL_OK);
    assert_int_equal(b.len, b.json_len + 16 + 8);
    const uint8_t *bin = (const uint8_t *)b.data + b.json_len;
    uint8_t want_probs[16];
    for (int i = 0; i < 4; i++) { /* little-endian FP32 */
        uint32_t u;
        memcpy(&u, &PROBS[i], 4);
        for (int k = 0; k < 4; k++)
            want_probs[4 * i + k] = (uint8_t)(u >> (8 * k));
    }
    assert_memory_equal(bin, want_probs, 16);
    assert_memory_equal(bin + 16, want_cls, 8);
    j = parse_body(&b);
    cJSON *p = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "outputs"), 0);
    assert_int_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(p, "parameters"), "binary_data_size")->valueint,
        16);
    cJSON_Delete(j);
    kl_oip_json_body_free(&b);
    kl_oip_request_free(&req);
}

static void test_encode_error_and_bool(void **state) {
    (void)state;
    kl_oip_json_body b;
    assert_int_equal(kl_oip_json_encode_error("bad \"x\"\\\n\x01 \xff\xfe end \xc3\xa9", &b),
                     KL_OK);
    cJSON *j = parse_body(&b);
    assert_string_equal(cJSON_GetObjectItem(j, "error")->valuestring,
                        "bad \"x\"\\\n\x01 \xef\xbf\xbd\xef\xbf\xbd end \xc3\xa9");
    cJSON_Delete(j);
    kl_oip_json_body_free(&b);
    assert_int_equal(kl_oip_json_encode_bool("live", 1, &b), KL_OK);
    assert_string_equal(b.data, "{\"live\":true}");
    kl_oip_json_body_free(&b);
    assert_int_equal(kl_oip_json_encode_bool("ready", 0, &b), KL_OK);
    assert_string_equal(b.data, "{\"ready\":false}");
    kl_oip_json_body_free(&b);
    assert_int_equal(kl_oip_json_http_status(KL_GRPC_OK), 200);
    assert_int_equal(kl_oip_json_http_status(KL_GRPC_INVALID_ARGUMENT), 400);
    assert_int_equal(kl_oip_json_http_status(KL_GRPC_NOT_FOUND), 404);
    assert_int_equal(kl_oip_json_http_status(KL_GRPC_RESOURCE_EXHAUSTED), 429);
    assert_int_equal(kl_oip_json_http_status(KL_GRPC_UNAVAILABLE), 503);
    assert_int_equal(kl_oip_json_http_status(KL_GRPC_DEADLINE_EXCEEDED), 504);
    assert_int_equal(kl_oip_json_http_status(KL_GRPC_INTERNAL), 500);
    assert_int_equal(kl_oip_json_http_status(KL_GRPC_UNIMPLEMENTED), 501);
}

static void test_encode_metadata_and_config(void **state) {
    (void)state;
    kl_oip_json_body b;
    const char *ext[] = {"model_repository", "statistics"};
    assert_int_equal(kl_oip_json_encode_server_metadata("kiln", "0.1.0", ext, 2, &b), KL_OK);
    cJSON *j = parse_body(&b);
    assert_string_equal(cJSON_GetObjectItem(j, "name")->valuestring, "kiln");
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "extensions"), 1)->valuestring,
                        "statistics");
    cJSON_Delete(j);
    kl_oip_json_body_free(&b);

    char *versions[] = {"1", "2"};
    kl_model_info info;
    memset(&info, 0, sizeof info);
    info.name = "m";
    info.versions = versions;
    info.n_versions = 2;
    info.sig = SIG;
    assert_int_equal(kl_oip_json_encode_model_metadata(&info, "kiln", &b), KL_OK);
    j = parse_body(&b);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "versions")), 2);
    cJSON *in = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "inputs"), 0);
    assert_string_equal(cJSON_GetObjectItem(in, "name")->valuestring, "x");
    assert_string_equal(cJSON_GetObjectItem(in, "datatype")->valuestring, "FP32");
    assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(in, "shape"), 0)->valueint, -1);
    assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(in, "shape"), 1)->valueint, 3);
    cJSON *o1 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "outputs"), 1);
    assert_string_equal(cJSON_GetObjectItem(o1, "name")->valuestring, "class");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(o1, "shape")), 1);
    cJSON_Delete(j);
    kl_oip_json_body_free(&b);

    const int32_t pref[] = {4, 8};
    kl_oip_model_config cfg = {.name = "m",
                               .platform = "",
                               .backend = "kiln",
                               .sig = SIG,
                               .dynamic_batching = 1,
                               .preferred = pref,
                               .n_preferred = 2,
                               .max_queue_delay_us = 100,
                               .max_queue_size = 64,
                               .priority_levels = 2,
                               .instance_count = 2};
    assert_int_equal(kl_oip_json_encode_model_config(&cfg, &b), KL_OK);
    j = parse_body(&b);
    assert_int_equal(cJSON_GetObjectItem(j, "max_batch_size")->valueint, 8);
    cJSON *ci = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "input"), 0);
    assert_string_equal(cJSON_GetObjectItem(ci, "data_type")->valuestring, "TYPE_FP32");
    assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(ci, "dims"), 0)->valueint, 3);
    cJSON *co = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "output"), 0);
    assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(co, "dims"), 0)->valueint, 4);
    cJSON *db = cJSON_GetObjectItem(j, "dynamic_batching");
    assert_non_null(db);
    assert_int_equal(cJSON_GetObjectItem(db, "max_queue_delay_microseconds")->valueint, 100);
    assert_int_equal(
        cJSON_GetArrayItem(cJSON_GetObjectItem(db, "preferred_batch_size"), 1)->valueint, 8);
    assert_int_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(db, "default_queue_policy"), "max_queue_size")
            ->valueint,
        64);
    cJSON *ig = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "instance_group"), 0);
    assert_string_equal(cJSON_GetObjectItem(ig, "kind")->valuestring, "KIND_CPU");
    assert_int_equal(cJSON_GetObjectItem(ig, "count")->valueint, 2);
    cJSON_Delete(j);
    kl_oip_json_body_free(&b);
    cfg.dynamic_batching = 0;
    assert_int_equal(kl_oip_json_encode_model_config(&cfg, &b), KL_OK);
    assert_null(strstr(b.data, "dynamic_batching"));
    kl_oip_json_body_free(&b);
}

static void test_index_and_stats(void **state) {
    (void)state;
    int ready = 7;
    assert_int_equal(kl_oip_json_decode_index_request("", 0, &ready), KL_GRPC_OK);
    assert_int_equal(ready, 0);
    assert_int_equal(kl_oip_json_decode_index_request(" \n", 2, &ready), KL_GRPC_OK);
    assert_int_equal(kl_oip_json_decode_index_request("{\"ready\":true}", 14, &ready), KL_GRPC_OK);
    assert_int_equal(ready, 1);
    assert_int_equal(kl_oip_json_decode_index_request("{}", 2, &ready), KL_GRPC_OK);
    assert_int_equal(ready, 0);
    assert_int_equal(kl_oip_json_decode_index_request("{\"ready\":1}", 11, &ready),
                     KL_GRPC_INVALID_ARGUMENT);
    assert_int_equal(kl_oip_json_decode_index_request("[1]", 3, &ready), KL_GRPC_INVALID_ARGUMENT);
    assert_int_equal(kl_oip_json_decode_index_request("{} x", 4, &ready), KL_GRPC_INVALID_ARGUMENT);

    assert_int_equal(kl_oip_json_decode_repository_request("", 0, 1), KL_GRPC_OK);
    const char *ul = "{\"parameters\":{\"unload_dependents\":false}}";
    assert_int_equal(kl_oip_json_decode_repository_request(ul, strlen(ul), 0), KL_GRPC_OK);
    const char *cfg = "{\"parameters\":{\"config\":\"{}\"}}";
    assert_int_equal(kl_oip_json_decode_repository_request(cfg, strlen(cfg), 1),
                     KL_GRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(kl_errmsg(), "parameter \"config\""));
    const char *file = "{\"parameters\":{\"file:1/model.onnx\":\"AAAA\"}}";
    assert_int_equal(kl_oip_json_decode_repository_request(file, strlen(file), 1),
                     KL_GRPC_INVALID_ARGUMENT);
    assert_int_equal(kl_oip_json_decode_repository_request("{\"parameters\":1}", 16, 1),
                     KL_GRPC_INVALID_ARGUMENT);
    assert_int_equal(kl_oip_json_decode_repository_request("nope", 4, 0), KL_GRPC_INVALID_ARGUMENT);

    kl_repo_entry e[2];
    memset(e, 0, sizeof e);
    snprintf(e[0].name, sizeof e[0].name, "m");
    snprintf(e[0].version, sizeof e[0].version, "1");
    snprintf(e[0].state, sizeof e[0].state, "READY");
    snprintf(e[1].name, sizeof e[1].name, "broken");
    snprintf(e[1].state, sizeof e[1].state, "UNAVAILABLE");
    snprintf(e[1].reason, sizeof e[1].reason, "model.safetensors: missing");
    kl_oip_json_body b;
    assert_int_equal(kl_oip_json_encode_repository_index(e, 2, &b), KL_OK);
    assert_string_equal(b.data, "[{\"name\":\"m\",\"version\":\"1\",\"state\":\"READY\"},"
                                "{\"name\":\"broken\",\"state\":\"UNAVAILABLE\",\"reason\":"
                                "\"model.safetensors: missing\"}]");
    kl_oip_json_body_free(&b);
    assert_int_equal(kl_oip_json_encode_repository_index(NULL, 0, &b), KL_OK);
    assert_string_equal(b.data, "[]");
    kl_oip_json_body_free(&b);

    kl_batch_size_stats bs[1] = {{.batch_size = 4,
                                  .compute_input = {2, 100},
                                  .compute_infer = {2, 2000},
                                  .compute_output = {2, 50}}};
    kl_model_stats s;
    memset(&s, 0, sizeof s);
    snprintf(s.name, sizeof s.name, "m");
    snprintf(s.version, sizeof s.version, "1");
    s.last_inference_ms = 1700000000123ull;
    s.inference_count = 8;
    s.execution_count = 2;
    s.success = (kl_stat_duration){5, 12345};
    s.queue = (kl_stat_duration){5, 678};
    s.n_batch_sizes = 1;
    s.batch_sizes = bs;
    assert_int_equal(kl_oip_json_encode_stats(&s, 1, &b), KL_OK);
    cJSON *j = parse_body(&b);
    cJSON *m = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "model_stats"), 0);
    assert_string_equal(cJSON_GetObjectItem(m, "version")->valuestring, "1");
    assert_true(cJSON_GetObjectItem(m, "last_inference")->valuedouble == 1700000000123.0);
    assert_int_equal(cJSON_GetObjectItem(m, "inference_count")->valueint, 8);
    cJSON *is = cJSON_GetObjectItem(m, "inference_stats");
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(is, "success"), "ns")->valueint,
                     12345);
    assert_non_null(cJSON_GetObjectItem(is, "cache_miss"));
    cJSON *b0 = cJSON_GetArrayItem(cJSON_GetObjectItem(m, "batch_stats"), 0);
    assert_int_equal(cJSON_GetObjectItem(b0, "batch_size")->valueint, 4);
    assert_int_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(b0, "compute_infer"), "count")->valueint, 2);
    cJSON_Delete(j);
    kl_oip_json_body_free(&b);
}

/* --- robustness ---------------------------------------------------------------------------- */

static uint32_t rng = 12345;
static uint32_t rnd(void) {
    rng = rng * 1664525u + 1013904223u;
    return rng >> 8;
}

static void test_random_bodies_never_crash(void **state) {
    (void)state;
    const char *seeds[] = {
        GOOD "}",
        IN("[2,3]", ",\"data\":[[1,2,3],[4,5,6]]") ",\"outputs\":[{\"name\":\"class\","
                                                   "\"parameters\":{\"binary_data\":true}}],"
                                                   "\"parameters\":{\"priority\":1}}",
        IN("[1,3]", ",\"parameters\":{\"binary_data_size\":12}") "}",
    };
    const char alphabet[] = "{}[]\",:0123456789.-eE truefalsnul\\x";
    char buf[1024];
    for (int iter = 0; iter < 20000; iter++) {
        const char *seed = seeds[iter % 3];
        size_t n = strlen(seed);
        memcpy(buf, seed, n);
        int edits = 1 + (int)(rnd() % 4);
        for (int e = 0; e < edits && n > 0; e++) {
            size_t at = rnd() % n;
            switch (rnd() % 4) {
            case 0: /* replace */
                buf[at] = alphabet[rnd() % (sizeof alphabet - 1)];
                break;
            case 1: /* random byte */
                buf[at] = (char)(rnd() & 0xFF);
                break;
            case 2: /* truncate */
                n = at;
                break;
            default: /* insert */
                if (n + 1 < sizeof buf) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = alphabet[rnd() % (sizeof alphabet - 1)];
                    n++;
                }
            }
        }
        /* sometimes append binary bytes and send a header (right, wrong or garbage) */
        char hdr[32];
        const char *h = NULL;
        if (iter % 5 == 0) {
            size_t extra = rnd() % 20;
            for (size_t k = 0; k < extra && n + 1 < sizeof buf; k++)
                buf[n++] = (char)rnd();
            snprintf(hdr, sizeof hdr, "%u", rnd() % (unsigned)(n + 3));
            h = hdr;
        }
        kl_oip_request req;
        kl_oip_json_format fmt;
        kl_grpc_code c = kl_oip_json_decode_infer(buf, n, h, "m", "", resolve, NULL, &req, &fmt);
        if (c == KL_GRPC_OK) {
            assert_non_null(req.rows);
            assert_true(req.batch >= 1 && req.batch <= 8);
            kl_infer_result res = result();
            res.batch = req.batch;
            float probs[32] = {0};
            res.probs = probs;
            res.classes = NULL;
            kl_oip_json_body b;
            assert_int_equal(kl_oip_json_encode_infer(&req, &fmt, &res, &b), KL_OK);
            kl_oip_json_body_free(&b);
        } else {
            assert_null(req.rows);
            assert_true(kl_errmsg()[0] != '\0');
        }
        kl_oip_request_free(&req);
    }
    /* fully random bytes */
    for (int iter = 0; iter < 5000; iter++) {
        size_t n = rnd() % sizeof buf;
        for (size_t k = 0; k < n; k++)
            buf[k] = (char)rnd();
        kl_oip_request req;
        kl_oip_json_format fmt;
        assert_int_not_equal(
            kl_oip_json_decode_infer(buf, n, NULL, "m", "", resolve, NULL, &req, &fmt), KL_GRPC_OK);
        int r;
        kl_oip_json_decode_index_request(buf, n, &r);
        kl_oip_json_decode_repository_request(buf, n, 1);
    }
    /* deep nesting is refused, not a stack overflow */
    size_t n = 0;
    n += (size_t)snprintf(buf, sizeof buf, "%s", "{\"inputs\":[{\"name\":\"x\",\"data\":");
    while (n < sizeof buf - 2)
        buf[n++] = '[';
    kl_oip_request req;
    kl_oip_json_format fmt;
    assert_int_equal(kl_oip_json_decode_infer(buf, n, NULL, "m", "", resolve, NULL, &req, &fmt),
                     KL_GRPC_INVALID_ARGUMENT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_flat_and_nested),
        cmocka_unit_test(test_binary_extension_request),
        cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_malformed_inputs),
        cmocka_unit_test(test_malformed_data),
        cmocka_unit_test(test_malformed_binary),
        cmocka_unit_test(test_malformed_outputs_and_parameters),
        cmocka_unit_test(test_resolver_codes),
        cmocka_unit_test(test_encode_json_outputs),
        cmocka_unit_test(test_encode_binary_layout),
        cmocka_unit_test(test_encode_error_and_bool),
        cmocka_unit_test(test_encode_metadata_and_config),
        cmocka_unit_test(test_index_and_stats),
        cmocka_unit_test(test_random_bodies_never_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
