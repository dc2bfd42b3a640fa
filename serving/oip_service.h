/* oip_service.h — the unary methods of inference.GRPCInferenceService answered from the model
 * manager, and the answers to inference requests: request bytes in, response bytes out.
 *
 * The seam between the protocol and the engine: serving/grpc_server.c hands each request's bytes
 * here and sends what comes back (or the code and kl_errmsg()). Pure C: no gRPC call lives here,
 * so the same functions can back another front end.
 */
#ifndef KL_OIP_SERVICE_H
#define KL_OIP_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#include "serving/model_manager.h" /* the models answered for */
#include "serving/oip_codec.h"     /* kl_grpc_code, the message codecs */

/* The signature of every unary method: on KL_GRPC_OK *resp (malloc'd, *resp_len bytes) belongs
 * to the caller; on any other code *resp is NULL and kl_errmsg() says why. */
typedef kl_grpc_code (*kl_oip_method_fn)(kl_model_manager *m, const uint8_t *req, size_t len,
                                         uint8_t **resp, size_t *resp_len);

/* ModelReady: always OK (ready is false for an unknown model or version). */
kl_grpc_code kl_oip_service_model_ready(kl_model_manager *m, const uint8_t *req, size_t len,
                                        uint8_t **resp, size_t *resp_len);
/* ModelMetadata: NOT_FOUND for an unknown model or version. */
kl_grpc_code kl_oip_service_model_metadata(kl_model_manager *m, const uint8_t *req, size_t len,
                                           uint8_t **resp, size_t *resp_len);
/* ModelConfig: the model's signature and its batching (kl_model_info.batch). */
/* A model's config as the protocol reports it (gRPC ModelConfig and the REST /config alike):
 * cfg points into info and into preferred (the caller's 8 slots). */
void kl_oip_model_config_from_info(const kl_model_info *info, int32_t preferred[8],
                                   kl_oip_model_config *cfg);

kl_grpc_code kl_oip_service_model_config(kl_model_manager *m, const uint8_t *req, size_t len,
                                         uint8_t **resp, size_t *resp_len);
/* ModelStatistics: name "" = every model, version "" = every version. */
kl_grpc_code kl_oip_service_model_statistics(kl_model_manager *m, const uint8_t *req, size_t len,
                                             uint8_t **resp, size_t *resp_len);
/* RepositoryIndex: every model and version the manager knows (ready ones when asked). */
kl_grpc_code kl_oip_service_repository_index(kl_model_manager *m, const uint8_t *req, size_t len,
                                             uint8_t **resp, size_t *resp_len);
/* RepositoryModelLoad / RepositoryModelUnload: synchronous (a load may take seconds: run it off
 * the I/O threads). */
kl_grpc_code kl_oip_service_repository_load(kl_model_manager *m, const uint8_t *req, size_t len,
                                            uint8_t **resp, size_t *resp_len);
kl_grpc_code kl_oip_service_repository_unload(kl_model_manager *m, const uint8_t *req, size_t len,
                                              uint8_t **resp, size_t *resp_len);

/* The ModelInferResponse bytes for a finished request (res->code OK), or res's code with
 * kl_errmsg() set to res->message. */
kl_grpc_code kl_oip_service_infer_response(const kl_oip_request *req, const kl_infer_result *res,
                                           uint8_t **resp, size_t *resp_len);

/* The ModelStreamInferResponse bytes for a finished request: the response, or its error in
 * error_message. Fails only for lack of memory. */
kl_status kl_oip_service_stream_response(const kl_oip_request *req, const kl_infer_result *res,
                                         uint8_t **resp, size_t *resp_len);

#endif
