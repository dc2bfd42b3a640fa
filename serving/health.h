/* health.h — the gRPC health-checking protocol (grpc.health.v1.Health, Check and Watch): which
 * status kiln reports for a service name, and the two messages on bytes.
 *
 * Pure C (protobuf-c, proto/health.proto): serving/grpc_server.c hands the request bytes in and
 * sends the bytes that come out. No gRPC call lives here.
 */
#ifndef KL_HEALTH_H
#define KL_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"
#include "serving/oip_codec.h" /* kl_grpc_code */

/* HealthCheckResponse.ServingStatus, with the protocol's numbers. */
typedef enum {
    KL_HEALTH_UNKNOWN = 0,
    KL_HEALTH_SERVING = 1,
    KL_HEALTH_NOT_SERVING = 2,
    KL_HEALTH_SERVICE_UNKNOWN = 3, /* Watch's answer for a name the server does not know */
} kl_health_status;

/* The status of `service`: for the whole server ("") and inference.GRPCInferenceService,
 * SERVING, or NOT_SERVING once stopping; SERVICE_UNKNOWN for any other name. */
kl_health_status kl_health_of(const char *service, int stopping);

/* Reads a HealthCheckRequest's service name into *service (malloc'd, owned by the caller; ""
 * for the whole server). INVALID_ARGUMENT with kl_errmsg() set on bytes that do not parse. */
kl_grpc_code kl_health_decode_request(const uint8_t *buf, size_t len, char **service);

/* Packs a HealthCheckResponse{status}. *buf is malloc'd, owned by the caller. */
kl_status kl_health_encode_response(kl_health_status status, uint8_t **buf, size_t *len);

#endif
