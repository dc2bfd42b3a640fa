/* test_serving_messages.c — the messages the gRPC server added for streaming, statistics, the
 * repository and health: what is encoded decodes back with protobuf-c to the same values, and
 * malformed requests get INVALID_ARGUMENT with a message instead of a crash. */
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
#include "serving/health.h"
#include "serving/oip_codec.h"

static void test_stream_response(void **state) {
    (void)state;
    /* A packed ModelInferResponse{model_name = "m", id = "7"}, nested as infer_response. */
    Inference__ModelInferResponse r = INFERENCE__MODEL_INFER_RESPONSE__INIT;
    r.model_name = "m";
    r.id = "7";
    uint8_t inner[64];
    size_t inner_len = inference__model_infer_response__pack(&r, inner);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(kl_oip_encode_stream_response(NULL, inner, inner_len, &buf, &len), KL_OK);
    Inference__ModelStreamInferResponse *s =
        inference__model_stream_infer_response__unpack(NULL, len, buf);
    assert_non_null(s);
    assert_string_equal(s->error_message, "");
    assert_non_null(s->infer_response);
    assert_string_equal(s->infer_response->id, "7");
    inference__model_stream_infer_response__free_unpacked(s, NULL);
    free(buf);

    /* An error, long enough for a two-byte length varint, and no infer_response. */
    char err[300];
    memset(err, 'e', sizeof err - 1);
    err[sizeof err - 1] = 0;
    assert_int_equal(kl_oip_encode_stream_response(err, NULL, 0, &buf, &len), KL_OK);
    assert_int_equal(len, 3 + strlen(err));
    s = inference__model_stream_infer_response__unpack(NULL, len, buf);
    assert_non_null(s);
    assert_string_equal(s->error_message, err);
    assert_null(s->infer_response);
    inference__model_stream_infer_response__free_unpacked(s, NULL);
    free(buf);

    /* An empty ModelInferResponse is still present (field 2, length 0). */
    assert_int_equal(kl_oip_encode_stream_response("", inner, 0, &buf, &len), KL_OK);
    assert_int_equal(len, 2);
    assert_int_equal(buf[0], 0x12);
    assert_int_equal(buf[1], 0);
    free(buf);
    assert_int_equal(kl_oip_encode_stream_response(NULL, NULL, 5, &buf, &len), KL_EINVAL);
}

static void test_model_statistics(void **state) {
    (void)state;
    kl_oip_batch_stats b[2] = {{1, {3, 30}, {3, 300}, {3, 3}}, {4, {1, 10}, {1, 100}, {1, 1}}};
    kl_oip_model_stats st[2];
    memset(st, 0, sizeof st);
    st[0] = (kl_oip_model_stats){.name = "a",
                                 .version = "2",
                                 .last_inference_ms = 1700000000000ULL,
                                 .inference_count = 7,
                                 .execution_count = 4,
                                 .success = {5, 500},
                                 .fail = {1, 9},
                                 .queue = {5, 50},
                                 .compute_input = {4, 40},
                                 .compute_infer = {4, 400},
                                 .compute_output = {4, 4},
                                 .batch = b,
                                 .n_batch = 2};
    st[1] = (kl_oip_model_stats){.name = "b", .version = "1"};
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(kl_oip_encode_model_statistics(st, 2, &buf, &len), KL_OK);
    Inference__ModelStatisticsResponse *r =
        inference__model_statistics_response__unpack(NULL, len, buf);
    assert_non_null(r);
    assert_int_equal(r->n_model_stats, 2);
    Inference__ModelStatistics *a = r->model_stats[0];
    assert_string_equal(a->name, "a");
    assert_string_equal(a->version, "2");
    assert_int_equal(a->last_inference, 1700000000000ULL);
    assert_int_equal(a->inference_count, 7);
    assert_int_equal(a->execution_count, 4);
    assert_int_equal(a->inference_stats->success->count, 5);
    assert_int_equal(a->inference_stats->success->ns, 500);
    assert_int_equal(a->inference_stats->fail->ns, 9);
    assert_int_equal(a->inference_stats->queue->ns, 50);
    assert_int_equal(a->inference_stats->compute_infer->ns, 400);
    assert_int_equal(a->inference_stats->cache_hit->count, 0);
    assert_int_equal(a->n_batch_stats, 2);
    assert_int_equal(a->batch_stats[1]->batch_size, 4);
    assert_int_equal(a->batch_stats[1]->compute_infer->ns, 100);
    assert_int_equal(a->batch_stats[0]->compute_input->count, 3);
    assert_int_equal(r->model_stats[1]->n_batch_stats, 0);
    assert_string_equal(r->model_stats[1]->name, "b");
    inference__model_statistics_response__free_unpacked(r, NULL);
    free(buf);
    assert_int_equal(kl_oip_encode_model_statistics(NULL, 0, &buf, &len), KL_OK);
    assert_int_equal(len, 0);
    free(buf);
    st[1].n_batch = 1; /* batch NULL */
    assert_int_equal(kl_oip_encode_model_statistics(st, 2, &buf, &len), KL_EINVAL);
}

static void test_repository_messages(void **state) {
    (void)state;
    Inference__RepositoryIndexRequest q = INFERENCE__REPOSITORY_INDEX_REQUEST__INIT;
    q.ready = 1;
    uint8_t qb[32];
    size_t qn = inference__repository_index_request__pack(&q, qb);
    int ready = 0;
    assert_int_equal(kl_oip_decode_repository_index(qb, qn, &ready), KL_GRPC_OK);
    assert_int_equal(ready, 1);
    assert_int_equal(kl_oip_decode_repository_index(NULL, 0, &ready), KL_GRPC_OK);
    assert_int_equal(ready, 0);
    const uint8_t junk[] = {0xff, 0xff, 0xff};
    assert_int_equal(kl_oip_decode_repository_index(junk, sizeof junk, &ready),
                     KL_GRPC_INVALID_ARGUMENT);

    kl_oip_index_entry e[2] = {{"m", "1", "READY", ""}, {"m", "2", "UNAVAILABLE", "bad file"}};
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(kl_oip_encode_repository_index(e, 2, &buf, &len), KL_OK);
    Inference__RepositoryIndexResponse *r =
        inference__repository_index_response__unpack(NULL, len, buf);
    assert_non_null(r);
    assert_int_equal(r->n_models, 2);
    assert_string_equal(r->models[1]->state, "UNAVAILABLE");
    assert_string_equal(r->models[1]->reason, "bad file");
    inference__repository_index_response__free_unpacked(r, NULL);
    free(buf);

    Inference__RepositoryModelUnloadRequest u = INFERENCE__REPOSITORY_MODEL_UNLOAD_REQUEST__INIT;
    u.repository_name = "ignored";
    u.model_name = "fmnist";
    uint8_t ub[64];
    size_t un = inference__repository_model_unload_request__pack(&u, ub);
    char *name = NULL;
    assert_int_equal(kl_oip_decode_repository_model(ub, un, &name), KL_GRPC_OK);
    assert_string_equal(name, "fmnist");
    free(name);
    assert_int_equal(kl_oip_decode_repository_model(NULL, 0, &name), KL_GRPC_INVALID_ARGUMENT);
    assert_null(name);
    assert_non_null(strstr(kl_errmsg(), "model_name"));
    assert_int_equal(kl_oip_decode_repository_model(junk, sizeof junk, &name),
                     KL_GRPC_INVALID_ARGUMENT);
}

static void test_health(void **state) {
    (void)state;
    assert_int_equal(kl_health_of("", 0), KL_HEALTH_SERVING);
    assert_int_equal(kl_health_of("inference.GRPCInferenceService", 0), KL_HEALTH_SERVING);
    assert_int_equal(kl_health_of("", 1), KL_HEALTH_NOT_SERVING);
    assert_int_equal(kl_health_of("x.Y", 0), KL_HEALTH_SERVICE_UNKNOWN);
    assert_int_equal(kl_health_of("x.Y", 1), KL_HEALTH_SERVICE_UNKNOWN);
    const uint8_t req[] = {0x0a, 0x03, 'a', 'b', 'c'};
    char *svc = NULL;
    assert_int_equal(kl_health_decode_request(req, sizeof req, &svc), KL_GRPC_OK);
    assert_string_equal(svc, "abc");
    free(svc);
    assert_int_equal(kl_health_decode_request(NULL, 0, &svc), KL_GRPC_OK);
    assert_string_equal(svc, "");
    free(svc);
    const uint8_t junk[] = {0xff, 0xff, 0xff};
    assert_int_equal(kl_health_decode_request(junk, sizeof junk, &svc), KL_GRPC_INVALID_ARGUMENT);
    assert_null(svc);
    assert_non_null(strstr(kl_errmsg(), "HealthCheckRequest"));
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(kl_health_encode_response(KL_HEALTH_NOT_SERVING, &buf, &len), KL_OK);
    assert_int_equal(len, 2);
    assert_int_equal(buf[0], 0x08);
    assert_int_equal(buf[1], 2);
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_response),
        cmocka_unit_test(test_model_statistics),
        cmocka_unit_test(test_repository_messages),
        cmocka_unit_test(test_health),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
