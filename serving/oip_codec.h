/* oip_codec.h — Open Inference Protocol (KServe v2 / Triton) messages to and from kiln's terms.
 *
 * Pure functions on serialized protobuf bytes (protobuf-c, proto/grpc_predict_v2.proto): the
 * gRPC server hands a request's bytes in and sends the bytes that come out; the tests drive the
 * same functions without a network. No gRPC call lives here.
 *
 * A kiln classifier takes one FP32 input of shape [batch, features] and answers two outputs:
 * "probabilities" (FP32 [batch, classes]) and "class" (INT64 [batch], the arg-max).
 */
#ifndef KL_OIP_CODEC_H
#define KL_OIP_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"

/* gRPC status codes, with gRPC's own numbers (they travel on the wire as grpc-status). */
typedef enum {
    KL_GRPC_OK = 0,
    KL_GRPC_CANCELLED = 1,
    KL_GRPC_UNKNOWN = 2,
    KL_GRPC_INVALID_ARGUMENT = 3,
    KL_GRPC_DEADLINE_EXCEEDED = 4,
    KL_GRPC_NOT_FOUND = 5,
    KL_GRPC_ALREADY_EXISTS = 6,
    KL_GRPC_PERMISSION_DENIED = 7,
    KL_GRPC_RESOURCE_EXHAUSTED = 8,
    KL_GRPC_FAILED_PRECONDITION = 9,
    KL_GRPC_ABORTED = 10,
    KL_GRPC_OUT_OF_RANGE = 11,
    KL_GRPC_UNIMPLEMENTED = 12,
    KL_GRPC_INTERNAL = 13,
    KL_GRPC_UNAVAILABLE = 14,
    KL_GRPC_DATA_LOSS = 15,
    KL_GRPC_UNAUTHENTICATED = 16,
} kl_grpc_code;

/* The gRPC code that answers a failed kl_status (KL_EINVAL → INVALID_ARGUMENT, ...). */
kl_grpc_code kl_grpc_code_from_status(kl_status s);

/* The upper-case name of a code ("INVALID_ARGUMENT"), for logs and metrics labels. */
const char *kl_grpc_code_name(kl_grpc_code c);

/* The outputs a kiln classifier answers, in their default order. */
typedef enum {
    KL_OIP_OUT_PROBABILITIES = 0, /* FP32 [batch, classes] */
    KL_OIP_OUT_CLASS = 1,         /* INT64 [batch] */
    KL_OIP_N_OUTPUTS = 2,
} kl_oip_output;

/* The wire name of an output ("probabilities", "class"). */
const char *kl_oip_output_name(kl_oip_output o);

/* What one served model version takes and returns. */
typedef struct {
    const char *input_name; /* the one input's name; NULL accepts whatever the request calls it */
    int64_t n_features;     /* features per row: the input's second dimension */
    int64_t n_classes;      /* classes: the second dimension of "probabilities" */
    int64_t max_batch;      /* rows one request may carry (>= 1) */
} kl_oip_model_sig;

/* Finds the signature of model `name` at `version` ("" = the server's choice). Returns
 * KL_GRPC_OK and fills *sig, or NOT_FOUND / UNAVAILABLE with kl_errmsg() set. */
typedef kl_grpc_code (*kl_oip_resolve_fn)(void *ctx, const char *name, const char *version,
                                          kl_oip_model_sig *sig);

/* A decoded, validated ModelInferRequest; everything is owned by the struct. */
typedef struct {
    char *model_name;                        /* as requested */
    char *model_version;                     /* as requested; "" when not given */
    char *id;                                /* request id, echoed in the response; "" if none */
    int64_t batch;                           /* rows */
    int64_t n_features;                      /* columns */
    float *rows;                             /* batch * n_features, row-major, host order */
    int n_outputs;                           /* outputs to answer, 1 or 2 */
    kl_oip_output outputs[KL_OIP_N_OUTPUTS]; /* which ones, in the order to answer them */
    int has_priority;                        /* whether the "priority" parameter was given */
    uint64_t priority;                       /* "priority": 1 is highest, 0 the model default */
    int64_t timeout_us;                      /* "timeout" in microseconds; 0 when not given */
    int64_t *labels; /* "labels" (or "label"): the true class of each row, batch of them, for the
                      * prediction log's feedback; NULL when not given */
} kl_oip_request;

/* Reads a "labels" parameter given as text: batch class numbers (integers >= 0) separated by
 * commas ("3,7"; blanks around them allowed). On KL_GRPC_OK *out (malloc'd, batch entries) is
 * the caller's; INVALID_ARGUMENT with kl_errmsg() naming the problem otherwise. */
kl_grpc_code kl_oip_parse_labels(const char *key, const char *s, int64_t batch, int64_t **out);

/* Unpacks a ModelInferRequest from buf[0..len) and checks it against sig: one input (named
 * sig->input_name unless that is NULL), datatype "FP32", shape [batch, sig->n_features] with
 * batch in 1..sig->max_batch, data in exactly one of raw_input_contents (batch*features*4 bytes,
 * little-endian) or contents.fp32_contents (batch*features values), requested outputs among
 * "probabilities" and "class", parameters "priority" (int64/uint64 >= 0), "timeout"
 * (int64 >= 0) and "labels" or "label" (feedback for the prediction log: int64_param for a
 * one-row request, or string_param "3,7" with one class per row). On KL_GRPC_OK *out owns a copy of
 * the rows (free with kl_oip_request_free); on any other code *out is left empty and kl_errmsg()
 * says what is wrong. Never aborts on any input bytes. */
kl_grpc_code kl_oip_decode_infer(const uint8_t *buf, size_t len, const kl_oip_model_sig *sig,
                                 kl_oip_request *out);

/* As kl_oip_decode_infer, but the signature comes from resolve(ctx, model_name, model_version)
 * after unpacking; its code (NOT_FOUND for an unknown model or version) is returned as is, with
 * its message prefixed by the model. */
kl_grpc_code kl_oip_decode_infer_resolve(const uint8_t *buf, size_t len, kl_oip_resolve_fn resolve,
                                         void *ctx, kl_oip_request *out);

/* Frees what a request owns and zeroes it; safe on a zeroed or already freed request. */
void kl_oip_request_free(kl_oip_request *req);

/* Packs the ModelInferResponse to req: model_name and id echoed, model_version = version
 * (the version that ran), and the outputs req asked for in its order, each with exactly one
 * raw_output_contents entry: probs is batch x n_classes FP32, classes batch INT64 (NULL computes
 * the arg-max of probs). On KL_OK *buf is a malloc'd buffer of *len bytes, owned by the caller. */
kl_status kl_oip_encode_infer_response(const kl_oip_request *req, const char *version,
                                       const float *probs, const int64_t *classes,
                                       int64_t n_classes, uint8_t **buf, size_t *len);

/* Reads the {name = 1, version = 2} pair that ModelReady, ModelMetadata, ModelConfig and
 * ModelStatistics requests share. *name and *version are malloc'd ("" when absent) and owned by
 * the caller. Returns INVALID_ARGUMENT on bytes that do not parse. */
kl_grpc_code kl_oip_decode_model_ref(const uint8_t *buf, size_t len, char **name, char **version);

/* Packs a ModelMetadataResponse: the input (FP32 [-1, features]) and the outputs
 * ("probabilities" FP32 [-1, classes], "class" INT64 [-1]); versions[0..n_versions) listed.
 * On KL_OK *buf (malloc'd, *len bytes) belongs to the caller. */
kl_status kl_oip_encode_model_metadata(const char *name, const char *const *versions,
                                       size_t n_versions, const char *platform,
                                       const kl_oip_model_sig *sig, uint8_t **buf, size_t *len);

/* Packs a ServerLiveResponse (live) or ServerReadyResponse (ready) or ModelReadyResponse
 * (ready): all three are one bool in field 1. *buf is malloc'd, owned by the caller. */
kl_status kl_oip_encode_bool_response(int value, uint8_t **buf, size_t *len);

/* How a served model batches and where it runs, as the ModelConfig RPC reports it. */
typedef struct {
    const char *name;            /* model name */
    const char *platform;        /* any string; "" when unset */
    const char *backend;         /* e.g. "kiln"; "" when unset */
    kl_oip_model_sig sig;        /* input and outputs; max_batch becomes max_batch_size */
    int dynamic_batching;        /* whether the dynamic batcher is on */
    const int32_t *preferred;    /* preferred batch sizes (n_preferred of them), may be NULL */
    size_t n_preferred;          /* entries in preferred */
    uint64_t max_queue_delay_us; /* the batcher's max queue delay in microseconds */
    uint32_t max_queue_size;     /* requests queued before RESOURCE_EXHAUSTED; 0 = unbounded */
    uint64_t default_timeout_us; /* per-request queue timeout; 0 = none */
    uint64_t priority_levels;    /* priority queues; 0 = one */
    int on_gpu;                  /* instance kind: KIND_GPU when set, else KIND_CPU */
    int32_t instance_count;      /* instances of that kind (>= 1) */
} kl_oip_model_config;

/* Packs a ModelConfigResponse for cfg: input FP32 dims [features], outputs "probabilities" FP32
 * dims [classes] and "class" INT64 dims [1] with reshape [] (Triton's way of saying the model
 * answers shape [batch]; Triton refuses empty dims), max_batch_size, the dynamic batcher and one
 * instance group. On KL_OK *buf (malloc'd, *len bytes) belongs to the caller. */
kl_status kl_oip_encode_model_config(const kl_oip_model_config *cfg, uint8_t **buf, size_t *len);

/* Packs a ServerMetadataResponse: name, version and the extensions kiln implements (advertise
 * "statistics" only once ModelStatistics answers). *buf is malloc'd, owned by the caller. */
kl_status kl_oip_encode_server_metadata(const char *name, const char *version,
                                        const char *const *extensions, size_t n_extensions,
                                        uint8_t **buf, size_t *len);

/* Packs a ModelStreamInferResponse: error_message (NULL or "" for none) and, when infer is not
 * NULL, infer[0..infer_len) — an already packed ModelInferResponse — as infer_response. *buf is
 * malloc'd, owned by the caller. */
kl_status kl_oip_encode_stream_response(const char *error, const uint8_t *infer, size_t infer_len,
                                        uint8_t **buf, size_t *len);

/* A count and the nanoseconds they took (StatisticDuration). */
typedef struct {
    uint64_t count; /* how many */
    uint64_t ns;    /* their total duration, ns */
} kl_oip_duration;

/* The batches of one size that ran (InferBatchStatistics). */
typedef struct {
    uint64_t batch_size;                                          /* rows */
    kl_oip_duration compute_input, compute_infer, compute_output; /* per stage */
} kl_oip_batch_stats;

/* One model version's statistics as ModelStatistics reports them. */
typedef struct {
    const char *name;           /* model */
    const char *version;        /* version */
    uint64_t last_inference_ms; /* ms since the epoch of the last request; 0 = none */
    uint64_t inference_count;   /* rows answered (a batch of n counts n) */
    uint64_t execution_count;   /* batches run */
    kl_oip_duration success, fail, queue, compute_input, compute_infer, compute_output;
    const kl_oip_batch_stats *batch; /* per batch size, n_batch of them; may be NULL */
    size_t n_batch;                  /* entries in batch */
} kl_oip_model_stats;

/* Packs a ModelStatisticsResponse with stats[0..n) (cache_hit/cache_miss are zero: no cache).
 * *buf is malloc'd, owned by the caller. */
kl_status kl_oip_encode_model_statistics(const kl_oip_model_stats *stats, size_t n, uint8_t **buf,
                                         size_t *len);

/* Reads a RepositoryIndexRequest: *ready_only is its `ready` flag (repository_name is ignored:
 * kiln has one repository). INVALID_ARGUMENT on bytes that do not parse. */
kl_grpc_code kl_oip_decode_repository_index(const uint8_t *buf, size_t len, int *ready_only);

/* One row of a RepositoryIndexResponse. */
typedef struct {
    const char *name;    /* model */
    const char *version; /* version */
    const char *state;   /* "READY", "LOADING", "UNAVAILABLE", "UNLOADING" */
    const char *reason;  /* why not ready; "" otherwise */
} kl_oip_index_entry;

/* Packs a RepositoryIndexResponse listing e[0..n). *buf is malloc'd, owned by the caller. */
kl_status kl_oip_encode_repository_index(const kl_oip_index_entry *e, size_t n, uint8_t **buf,
                                         size_t *len);

/* Reads the model_name of a RepositoryModelLoadRequest or RepositoryModelUnloadRequest (the two
 * share a layout; repository_name and parameters are ignored). *name is malloc'd, owned by the
 * caller. INVALID_ARGUMENT on bytes that do not parse or an empty model_name. */
kl_grpc_code kl_oip_decode_repository_model(const uint8_t *buf, size_t len, char **name);

#endif
