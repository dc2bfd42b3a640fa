/* model_store.h — the models a server answers for: each a bundle loaded once, run on the CPU.
 *
 * Every model is one version ("1") of a classification bundle, held as a kl_mlp with its
 * preprocessing. Inference on one model is serialised by that model's mutex (the MLP's
 * activation arena is not thread-safe); different models run in parallel. No dynamic batching
 * yet: each request runs as it comes.
 *
 * Pure C on bytes: the gRPC server (serving/grpc_server.c) hands request bytes in and sends the
 * bytes that come out. No gRPC call lives here.
 */
#ifndef KL_MODEL_STORE_H
#define KL_MODEL_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"
#include "serving/oip_codec.h" /* kl_grpc_code, kl_oip_model_sig, the message codecs */

/* The one version every served model has for now. */
#define KL_MODEL_STORE_VERSION "1"

typedef struct kl_model_store kl_model_store;

/* Creates an empty store. *out is owned by the caller (kl_model_store_free). */
kl_status kl_model_store_create(kl_model_store **out);

/* Frees every model and the store; safe on NULL. */
void kl_model_store_free(kl_model_store *s);

/* Loads "NAME=BUNDLE" (a bundle directory or a models:/ URI, resolved through the MLflow
 * registry) and serves it as NAME. Only classification bundles can be served. Fails on a
 * duplicate or empty name, or a bundle that does not load; kl_errmsg() names the model. */
kl_status kl_model_store_add(kl_model_store *s, const char *spec);

/* Number of models loaded. */
size_t kl_model_store_count(const kl_model_store *s);

/* A kl_oip_resolve_fn over the store (ctx is the kl_model_store): the signature of model `name`
 * at `version` ("" or "1"), or NOT_FOUND with kl_errmsg() set. */
kl_grpc_code kl_model_store_resolve(void *ctx, const char *name, const char *version,
                                    kl_oip_model_sig *sig);

/* Answers a serialized ModelInferRequest: decodes and validates it, applies the bundle's
 * transform to the request's rows, runs the model and packs the ModelInferResponse. On
 * KL_GRPC_OK *resp (malloc'd, *resp_len bytes) belongs to the caller; on any other code
 * kl_errmsg() says why and *resp is NULL. Never aborts on any input bytes. */
kl_grpc_code kl_model_store_infer(kl_model_store *s, const uint8_t *req, size_t len, uint8_t **resp,
                                  size_t *resp_len);

/* Answers ModelReady (always OK; ready is false for an unknown model or version), ModelMetadata
 * and ModelConfig (NOT_FOUND for an unknown model or version; INVALID_ARGUMENT for bytes that do
 * not parse). Output as for kl_model_store_infer. */
kl_grpc_code kl_model_store_ready(kl_model_store *s, const uint8_t *req, size_t len, uint8_t **resp,
                                  size_t *resp_len);
kl_grpc_code kl_model_store_metadata(kl_model_store *s, const uint8_t *req, size_t len,
                                     uint8_t **resp, size_t *resp_len);
kl_grpc_code kl_model_store_config(kl_model_store *s, const uint8_t *req, size_t len,
                                   uint8_t **resp, size_t *resp_len);

#endif
