/* test_reflection.c — server reflection over the embedded descriptor set: the services kiln
 * serves are listed, every kind of symbol finds its file, files come with their imports (the
 * file asked for first), unknown names answer NOT_FOUND in-band, and malformed descriptor sets
 * or requests fail cleanly instead of crashing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/reflection.pb-c.h"
#include "serving/reflection.h"

#define PREDICT "proto/grpc_predict_v2.proto"
#define CONFIG "proto/model_config.proto"

static kl_reflection *embedded(void) {
    kl_reflection *r = NULL;
    kl_status st =
        kl_reflection_create(kl_proto_descriptor_set, (size_t)kl_proto_descriptor_set_len, &r);
    if (st != KL_OK) fail_msg("create: %s", kl_errmsg());
    return r;
}

static void test_services_listed(void **state) {
    (void)state;
    kl_reflection *r = embedded();
    const char *want[] = {"inference.GRPCInferenceService", "grpc.health.v1.Health",
                          "grpc.reflection.v1.ServerReflection",
                          "grpc.reflection.v1alpha.ServerReflection"};
    assert_int_equal(kl_reflection_service_count(r), 4);
    for (size_t i = 0; i < 4; i++) {
        int found = 0;
        for (size_t j = 0; j < kl_reflection_service_count(r); j++)
            found |= !strcmp(kl_reflection_service(r, j), want[i]);
        if (!found) fail_msg("service %s not listed", want[i]);
    }
    assert_null(kl_reflection_service(r, 99));
    kl_reflection_free(r);
}

static void test_symbols_find_their_file(void **state) {
    (void)state;
    kl_reflection *r = embedded();
    struct {
        const char *symbol, *file;
    } cases[] = {
        {"inference.GRPCInferenceService", PREDICT},                 /* service */
        {"inference.GRPCInferenceService.ModelInfer", PREDICT},      /* method */
        {"inference.ModelInferRequest", PREDICT},                    /* message */
        {".inference.ModelInferRequest", PREDICT},                   /* leading dot */
        {"inference.ModelInferRequest.InferInputTensor", PREDICT},   /* nested message */
        {"inference.ModelInferRequest.raw_input_contents", PREDICT}, /* field */
        {"inference.InferParameter.parameter_choice", PREDICT},      /* oneof */
        {"inference.ModelConfig", CONFIG},                           /* imported file */
        {"inference.DataType", CONFIG},                              /* enum */
        {"inference.TYPE_FP32", CONFIG}, /* enum value: beside its enum */
        {"grpc.health.v1.Health.Watch", "proto/health.proto"},
        {"grpc.health.v1.HealthCheckResponse.ServingStatus", "proto/health.proto"},
        {"grpc.health.v1.HealthCheckResponse.SERVING", "proto/health.proto"},
        {"grpc.reflection.v1alpha.ServerReflection.ServerReflectionInfo",
         "proto/reflection_v1alpha.proto"},
        {"grpc.reflection.v1.ServerReflectionRequest", "proto/reflection.proto"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int f = kl_reflection_find_symbol(r, cases[i].symbol);
        if (f < 0) fail_msg("%s not found", cases[i].symbol);
        if (strcmp(kl_reflection_file_name(r, (size_t)f), cases[i].file))
            fail_msg("%s in %s, expected %s", cases[i].symbol,
                     kl_reflection_file_name(r, (size_t)f), cases[i].file);
    }
    const char *absent[] = {"",
                            "inference",
                            "inference.Nope",
                            "inference.ModelInferRequest.nope",
                            "inference.DataType.TYPE_FP32", /* values are not inside the enum */
                            "GRPCInferenceService"};
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++)
        if (kl_reflection_find_symbol(r, absent[i]) >= 0) fail_msg("%s found", absent[i]);
    assert_true(kl_reflection_is_message(r, "inference.ModelInferRequest"));
    assert_false(kl_reflection_is_message(r, "inference.GRPCInferenceService"));
    kl_reflection_free(r);
}

static void test_file_closure(void **state) {
    (void)state;
    kl_reflection *r = embedded();
    int f = kl_reflection_find_file(r, PREDICT);
    assert_true(f >= 0);
    int idx[8];
    size_t n = kl_reflection_file_closure(r, f, idx, 8);
    assert_int_equal(n, 2);
    assert_int_equal(idx[0], f);
    assert_string_equal(kl_reflection_file_name(r, (size_t)idx[1]), CONFIG);
    f = kl_reflection_find_file(r, "proto/reflection_v1alpha.proto");
    n = kl_reflection_file_closure(r, f, idx, 8);
    assert_int_equal(n, 2);
    assert_string_equal(kl_reflection_file_name(r, (size_t)idx[1]), "proto/reflection.proto");
    assert_int_equal(kl_reflection_find_file(r, "nope.proto"), -1);
    assert_int_equal(kl_reflection_file_closure(r, -1, idx, 8), 0);
    kl_reflection_free(r);
}

/* Packs a request, answers it and unpacks the response (the caller frees it). */
static Grpc__Reflection__V1__ServerReflectionResponse *
ask(kl_reflection *r, Grpc__Reflection__V1__ServerReflectionRequest *q) {
    size_t n = grpc__reflection__v1__server_reflection_request__get_packed_size(q);
    uint8_t *b = malloc(n + 1);
    assert_non_null(b);
    grpc__reflection__v1__server_reflection_request__pack(q, b);
    uint8_t *resp = NULL;
    size_t len = 0;
    assert_int_equal(kl_reflection_answer(r, b, n, &resp, &len), KL_GRPC_OK);
    free(b);
    Grpc__Reflection__V1__ServerReflectionResponse *a =
        grpc__reflection__v1__server_reflection_response__unpack(NULL, len, resp);
    free(resp);
    assert_non_null(a);
    return a;
}

static void test_answers(void **state) {
    (void)state;
    kl_reflection *r = embedded();
    Grpc__Reflection__V1__ServerReflectionRequest q =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    q.host = "localhost";
    q.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
    q.list_services = "*";
    Grpc__Reflection__V1__ServerReflectionResponse *a = ask(r, &q);
    assert_int_equal(
        a->message_response_case,
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE);
    assert_int_equal(a->list_services_response->n_service, 4);
    assert_string_equal(a->valid_host, "localhost");
    assert_non_null(a->original_request);
    assert_string_equal(a->original_request->list_services, "*");
    grpc__reflection__v1__server_reflection_response__free_unpacked(a, NULL);

    q.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    q.file_containing_symbol = "inference.GRPCInferenceService";
    a = ask(r, &q);
    assert_int_equal(
        a->message_response_case,
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE);
    assert_int_equal(a->file_descriptor_response->n_file_descriptor_proto, 2);
    /* The first file is the one asked for: its name is field 1, first on the wire. */
    ProtobufCBinaryData f0 = a->file_descriptor_response->file_descriptor_proto[0];
    assert_true(f0.len > 2 + strlen(PREDICT));
    assert_int_equal(f0.data[0], 0x0a);
    assert_memory_equal(f0.data + 2, PREDICT, strlen(PREDICT));
    grpc__reflection__v1__server_reflection_response__free_unpacked(a, NULL);

    q.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
    q.file_by_filename = "proto/health.proto";
    a = ask(r, &q);
    assert_int_equal(a->file_descriptor_response->n_file_descriptor_proto, 1);
    grpc__reflection__v1__server_reflection_response__free_unpacked(a, NULL);

    q.file_by_filename = "missing.proto";
    a = ask(r, &q);
    assert_int_equal(
        a->message_response_case,
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE);
    assert_int_equal(a->error_response->error_code, KL_GRPC_NOT_FOUND);
    assert_non_null(strstr(a->error_response->error_message, "missing.proto"));
    grpc__reflection__v1__server_reflection_response__free_unpacked(a, NULL);

    q.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE;
    q.all_extension_numbers_of_type = "inference.ModelConfig";
    a = ask(r, &q);
    assert_int_equal(a->all_extension_numbers_response->n_extension_number, 0);
    assert_string_equal(a->all_extension_numbers_response->base_type_name, "inference.ModelConfig");
    grpc__reflection__v1__server_reflection_response__free_unpacked(a, NULL);

    Grpc__Reflection__V1__ExtensionRequest ext = GRPC__REFLECTION__V1__EXTENSION_REQUEST__INIT;
    ext.containing_type = "inference.ModelConfig";
    ext.extension_number = 100;
    q.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION;
    q.file_containing_extension = &ext;
    a = ask(r, &q);
    assert_int_equal(a->error_response->error_code, KL_GRPC_NOT_FOUND);
    grpc__reflection__v1__server_reflection_response__free_unpacked(a, NULL);

    q.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST__NOT_SET;
    a = ask(r, &q);
    assert_int_equal(a->error_response->error_code, KL_GRPC_INVALID_ARGUMENT);
    grpc__reflection__v1__server_reflection_response__free_unpacked(a, NULL);

    uint8_t *resp = NULL;
    size_t len = 0;
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0x0a, 0x40};
    assert_int_equal(kl_reflection_answer(r, junk, sizeof junk, &resp, &len),
                     KL_GRPC_INVALID_ARGUMENT);
    assert_null(resp);
    assert_non_null(strstr(kl_errmsg(), "ServerReflectionRequest"));
    kl_reflection_free(r);
}

static void test_malformed_sets(void **state) {
    (void)state;
    kl_reflection *r = NULL;
    size_t n = (size_t)kl_proto_descriptor_set_len;
    /* Every truncation either parses (it cut between files) or fails; none crashes or leaks. */
    for (size_t cut = 0; cut < n; cut += 97) {
        kl_status st = kl_reflection_create(kl_proto_descriptor_set, cut, &r);
        if (st == KL_OK) {
            kl_reflection_free(r);
        } else {
            assert_null(r);
            assert_non_null(strstr(kl_errmsg(), "descriptor set"));
        }
    }
    const uint8_t group[] = {0x0b, 0x0c};                /* a group: never in descriptors */
    const uint8_t nameless[] = {0x0a, 0x02, 0x12, 0x00}; /* a file with only a package */
    const uint8_t too_long[] = {0x0a, 0x7f, 0x0a};
    assert_int_equal(kl_reflection_create(group, sizeof group, &r), KL_EFORMAT);
    assert_int_equal(kl_reflection_create(nameless, sizeof nameless, &r), KL_EFORMAT);
    assert_non_null(strstr(kl_errmsg(), "no name"));
    assert_int_equal(kl_reflection_create(too_long, sizeof too_long, &r), KL_EFORMAT);
    /* A hand-made file: name "a.proto", package "p", message M { field x }, service S { m }. */
    const uint8_t file[] = {0x0a, 0x07, 'a',  '.',  'p',  'r',  'o',  't',  'o',  0x12, 0x01,
                            'p',  0x22, 0x08, 0x0a, 0x01, 'M',  0x12, 0x03, 0x0a, 0x01, 'x',
                            0x32, 0x09, 0x0a, 0x01, 'S',  0x12, 0x04, 0x0a, 0x02, 'm',  'm'};
    uint8_t set[2 + sizeof file] = {0x0a, (uint8_t)sizeof file};
    memcpy(set + 2, file, sizeof file);
    assert_int_equal(kl_reflection_create(set, sizeof set, &r), KL_OK);
    assert_int_equal(kl_reflection_find_symbol(r, "p.M.x"), 0);
    assert_int_equal(kl_reflection_find_symbol(r, "p.S.mm"), 0);
    assert_true(kl_reflection_is_message(r, "p.M"));
    assert_int_equal(kl_reflection_service_count(r), 1);
    assert_string_equal(kl_reflection_service(r, 0), "p.S");
    kl_reflection_free(r);
    assert_int_equal(kl_reflection_create(NULL, 0, &r), KL_OK); /* empty: no files */
    assert_int_equal(kl_reflection_file_count(r), 0);
    assert_int_equal(kl_reflection_find_symbol(r, "p.M"), -1);
    kl_reflection_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_services_listed), cmocka_unit_test(test_symbols_find_their_file),
        cmocka_unit_test(test_file_closure),    cmocka_unit_test(test_answers),
        cmocka_unit_test(test_malformed_sets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
