/* oip_json.h — the Open Inference Protocol's REST form (KServe v2 / Triton HTTP) to and from
 * kiln's terms.
 *
 * Pure functions on request and response bodies: serving/http_server.c hands a body in and sends
 * the bytes that come out; the tests drive the same functions without a network. No HTTP call
 * lives here.
 *
 * Triton's binary tensor data extension is supported both ways, since tritonclient.http uses it
 * by default: the request header `Inference-Header-Content-Length: N` says the first N bytes of
 * the body are the JSON; each input with `"parameters":{"binary_data_size":B}` has its B raw
 * little-endian bytes after the JSON, in input order. Outputs asked for with
 * `"parameters":{"binary_data":true}` (or every output, with the request parameter
 * `"binary_data_output":true`) come back the same way, the response carrying its own
 * `Inference-Header-Content-Length`.
 *
 * Validation matches the gRPC decoder (serving/oip_codec.h): the same checks, in the same
 * order, with the same codes and the same wording where the two forms share a concept.
 */
#ifndef KL_OIP_JSON_H
#define KL_OIP_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"
#include "serving/model_manager.h" /* kl_infer_result, kl_model_info, kl_model_stats, kl_repo_entry */
#include "serving/oip_codec.h"     /* kl_grpc_code, kl_oip_request, kl_oip_model_sig, ... */

/* How each output of a decoded request is to be answered. */
typedef struct {
    int binary[KL_OIP_N_OUTPUTS]; /* indexed by kl_oip_output: 1 = raw bytes after the JSON */
} kl_oip_json_format;

/* A response body: the JSON, followed by binary output data when json_len < len. */
typedef struct {
    char *data;      /* malloc'd, owned by the caller; NUL-terminated after len bytes */
    size_t len;      /* bytes in the body */
    size_t json_len; /* bytes of JSON at the start; the value of the response header
                      * Inference-Header-Content-Length when it differs from len */
} kl_oip_json_body;

/* Frees a body's data and zeroes it; safe on a zeroed body. */
void kl_oip_json_body_free(kl_oip_json_body *b);

/* The HTTP status that answers a gRPC code: 200, 400 (INVALID_ARGUMENT, FAILED_PRECONDITION,
 * OUT_OF_RANGE), 404 (NOT_FOUND), 409 (ALREADY_EXISTS, ABORTED), 429 (RESOURCE_EXHAUSTED),
 * 499 (CANCELLED), 501 (UNIMPLEMENTED), 503 (UNAVAILABLE), 504 (DEADLINE_EXCEEDED), 500 else. */
int kl_oip_json_http_status(kl_grpc_code c);

/* Decodes the body of POST /v2/models/NAME[/versions/V]/infer for model `name` at `version`
 * (from the path; "" = the server's choice). header_len is the value of the request header
 * Inference-Header-Content-Length, or NULL when absent (then the whole body is JSON). The
 * signature comes from resolve(ctx, name, version): its code (NOT_FOUND, UNAVAILABLE) is
 * returned as is, the message prefixed by the model. Then: one input (named sig->input_name
 * unless NULL), datatype "FP32", shape [batch, sig->n_features] with batch in 1..max_batch,
 * data as a JSON array (flat or nested, batch*features numbers) or binary_data_size bytes,
 * requested outputs among "probabilities" and "class", parameters "priority" and "timeout"
 * (integers >= 0) and "labels" or "label" (feedback for the prediction log: an integer for one
 * row, an array of integers or a string "3,7" with one class per row). On KL_GRPC_OK *out owns the
 * rows (kl_oip_request_free) and *fmt says which outputs go back binary; on any other code *out is
 * empty and kl_errmsg() says what is wrong. Never aborts on any bytes. */
kl_grpc_code kl_oip_json_decode_infer(const char *body, size_t len, const char *header_len,
                                      const char *name, const char *version,
                                      kl_oip_resolve_fn resolve, void *ctx, kl_oip_request *out,
                                      kl_oip_json_format *fmt);

/* Encodes the answer to req (as decoded, in its output order) from a successful result:
 * {"model_name","model_version","id"(when given),"outputs":[{"name","datatype","shape",
 * "data":[...]} or {..., "parameters":{"binary_data_size":B}}]}, binary outputs' bytes appended
 * in order (FP32 / INT64 little-endian). */
kl_status kl_oip_json_encode_infer(const kl_oip_request *req, const kl_oip_json_format *fmt,
                                   const kl_infer_result *res, kl_oip_json_body *out);

/* {"error":"<message>"}. */
kl_status kl_oip_json_encode_error(const char *message, kl_oip_json_body *out);

/* GET /v2: {"name","version","extensions":[...]}. */
kl_status kl_oip_json_encode_server_metadata(const char *name, const char *version,
                                             const char *const *extensions, size_t n_extensions,
                                             kl_oip_json_body *out);

/* GET /v2/models/NAME[/versions/V]: {"name","versions":[...],"platform","inputs":[...],
 * "outputs":[...]} with a leading -1 (the batch dimension) in every shape. */
kl_status kl_oip_json_encode_model_metadata(const kl_model_info *info, const char *platform,
                                            kl_oip_json_body *out);

/* GET .../config: the model configuration in Triton's JSON shape (name, platform, backend,
 * max_batch_size, input, output, dynamic_batching, instance_group), integers as numbers. */
kl_status kl_oip_json_encode_model_config(const kl_oip_model_config *cfg, kl_oip_json_body *out);

/* {"live":true} / {"ready":false}: key is "live" or "ready". */
kl_status kl_oip_json_encode_bool(const char *key, int value, kl_oip_json_body *out);

/* Reads the optional body of POST /v2/repository/index: {"ready": bool}. An empty body means
 * ready_only = 0. INVALID_ARGUMENT on a body that is not such an object. */
kl_grpc_code kl_oip_json_decode_index_request(const char *body, size_t len, int *ready_only);

/* Checks the optional body of POST /v2/repository/models/NAME/load (load = 1) or .../unload:
 * {"parameters":{...}}. Triton's "config" and "file:..." load overrides are refused
 * (INVALID_ARGUMENT: kiln loads what the repository holds); other parameters are ignored. */
kl_grpc_code kl_oip_json_decode_repository_request(const char *body, size_t len, int load);

/* POST /v2/repository/index: [{"name","version","state","reason"}], version and reason only
 * when not empty, as Triton writes them. */
kl_status kl_oip_json_encode_repository_index(const kl_repo_entry *e, size_t n,
                                              kl_oip_json_body *out);

/* GET /v2/models[/NAME[/versions/V]]/stats: {"model_stats":[...]} in Triton's shape. */
kl_status kl_oip_json_encode_stats(const kl_model_stats *s, size_t n, kl_oip_json_body *out);

#endif
