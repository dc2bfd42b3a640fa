/* health.c — grpc.health.v1 statuses and messages (see health.h). */
#include "serving/health.h"

#include <stdlib.h>
#include <string.h>

#include "proto/health.pb-c.h" /* grpc.health.v1 messages */

kl_health_status kl_health_of(const char *service, int stopping) {
    if (*service && strcmp(service, "inference.GRPCInferenceService"))
        return KL_HEALTH_SERVICE_UNKNOWN;
    return stopping ? KL_HEALTH_NOT_SERVING : KL_HEALTH_SERVING;
}

kl_grpc_code kl_health_decode_request(const uint8_t *buf, size_t len, char **service) {
    *service = NULL;
    Grpc__Health__V1__HealthCheckRequest *r =
        buf || !len ? grpc__health__v1__health_check_request__unpack(NULL, len, buf) : NULL;
    if (!r) {
        kl_seterr(KL_EFORMAT, "malformed HealthCheckRequest (%zu bytes do not parse)", len);
        return KL_GRPC_INVALID_ARGUMENT;
    }
    *service = strdup(r->service ? r->service : "");
    grpc__health__v1__health_check_request__free_unpacked(r, NULL);
    if (!*service) {
        kl_seterr(KL_ENOMEM, "HealthCheckRequest: out of memory");
        return KL_GRPC_RESOURCE_EXHAUSTED;
    }
    return KL_GRPC_OK;
}

kl_status kl_health_encode_response(kl_health_status status, uint8_t **buf, size_t *len) {
    Grpc__Health__V1__HealthCheckResponse out = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    out.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)status;
    size_t n = grpc__health__v1__health_check_response__get_packed_size(&out);
    *buf = malloc(n ? n : 1);
    if (!*buf) return kl_seterr(KL_ENOMEM, "HealthCheckResponse: out of memory");
    *len = grpc__health__v1__health_check_response__pack(&out, *buf);
    return KL_OK;
}
