/* oip_client_codec.h — the client's side of the Open Inference Protocol (KServe v2 / Triton):
 * packing ModelInferRequest and ModelMetadataRequest, unpacking ModelInferResponse and
 * ModelMetadataResponse from any server (kiln, Triton, MLServer, ...).
 *
 * Pure functions on serialized protobuf bytes (protobuf-c, proto/grpc_predict_v2.proto); no gRPC
 * call lives here (serving/grpc_client does the transport). Decoding checks what a client is
 * about to index: every output's data must match its datatype and shape exactly, whether it came
 * as raw_output_contents or as typed contents, and a mismatch is an error naming the output, the
 * sizes and what was expected. Raw tensor bytes are little-endian, as the protocol says.
 */
#ifndef KL_OIP_CLIENT_CODEC_H
#define KL_OIP_CLIENT_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"

/* The method paths of inference.GRPCInferenceService a client calls. */
#define KL_OIP_METHOD_MODEL_INFER "/inference.GRPCInferenceService/ModelInfer"
#define KL_OIP_METHOD_MODEL_METADATA "/inference.GRPCInferenceService/ModelMetadata"

/* Bytes per element of a protocol datatype ("FP32" → 4, "BOOL" → 1), 0 for "BYTES" (variable),
 * -1 for a name the protocol does not define. */
int kl_oip_datatype_size(const char *datatype);

/* One inference request: a single input tensor whose values come from float rows. */
typedef struct {
    const char *model_name;     /* model to run */
    const char *model_version;  /* NULL or "": the server's choice */
    const char *id;             /* request id, echoed back; NULL or "" for none */
    const char *input_name;     /* the model's input name */
    const char *datatype;       /* FP32, FP64 or an integer type (values rounded, checked) */
    const int64_t *shape;       /* the tensor's shape, batch dimension included */
    int n_dims;                 /* entries in shape, 1..8 */
    const float *values;        /* product(shape) values, row-major */
    const char *const *outputs; /* outputs to ask for; NULL or n_outputs 0: all of them */
    int n_outputs;              /* entries in outputs */
} kl_oip_infer_input;

/* Packs in as a ModelInferRequest carrying its data in raw_input_contents. Fails on a datatype
 * that cannot hold the values (an integer out of range, "BYTES", FP16/BF16) or a bad shape.
 * On KL_OK *buf (malloc'd, *len bytes) belongs to the caller. */
kl_status kl_oip_client_encode_infer(const kl_oip_infer_input *in, uint8_t **buf, size_t *len);

/* Packs a ModelMetadataRequest {name, version} (version NULL or "": the server's choice).
 * *buf (malloc'd, *len bytes) belongs to the caller. */
kl_status kl_oip_client_encode_model_ref(const char *name, const char *version, uint8_t **buf,
                                         size_t *len);

/* One output tensor of a decoded response; every pointer is owned by the response. */
typedef struct {
    const char *name;     /* output name */
    const char *datatype; /* protocol datatype, e.g. "FP32" */
    const int64_t *shape; /* its shape (n_dims entries, each >= 0) */
    size_t n_dims;        /* entries in shape */
    int64_t n_elems;      /* product of shape */
    int elem_size;        /* bytes per element; 0 for BYTES */
    const void *data;     /* n_elems elements, packed little-endian in the datatype's layout;
                           * BYTES: each element a 4-byte little-endian length then its bytes */
    size_t n_bytes;       /* bytes at data */
    void *owned_;         /* converted typed contents, when they needed converting */
} kl_oip_tensor;

/* A decoded ModelInferResponse. */
typedef struct {
    const char *model_name;    /* as the server answered */
    const char *model_version; /* the version that ran ("" if not said) */
    const char *id;            /* echoed request id ("" if none) */
    size_t n_outputs;          /* outputs, in the server's order */
    kl_oip_tensor *outputs;    /* [n_outputs] */
    void *msg_;                /* the unpacked message that owns the strings and raw data */
} kl_oip_response;

/* Unpacks and checks a ModelInferResponse: known datatypes, non-negative dimensions, and for
 * each output exactly n_elems * elem_size raw bytes (raw_output_contents, one entry per output
 * when present at all) or exactly n_elems typed values in the contents field of its datatype.
 * On KL_OK *out owns everything (kl_oip_response_free); on failure it is empty and kl_errmsg()
 * says what is wrong. Never aborts on any input bytes. */
kl_status kl_oip_client_decode_infer(const uint8_t *buf, size_t len, kl_oip_response *out);

/* The output called name, or NULL. */
const kl_oip_tensor *kl_oip_response_output(const kl_oip_response *r, const char *name);

/* Element i of a numeric tensor (any datatype but BYTES) as a double; FP16 and BF16 widened. */
double kl_oip_tensor_value(const kl_oip_tensor *t, int64_t i);

/* 1 if t holds integers or booleans (printed without a fraction), else 0. */
int kl_oip_tensor_is_integer(const kl_oip_tensor *t);

/* Frees what a response owns and zeroes it; safe on a zeroed response. */
void kl_oip_response_free(kl_oip_response *r);

/* One tensor a model declares; -1 in shape marks a variable dimension. Owned by the metadata. */
typedef struct {
    const char *name;     /* tensor name */
    const char *datatype; /* protocol datatype */
    const int64_t *shape; /* n_dims entries, each >= -1 */
    size_t n_dims;        /* entries in shape */
} kl_oip_tensor_meta;

/* A decoded ModelMetadataResponse. */
typedef struct {
    const char *name;            /* model name */
    const char *platform;        /* "" if not said */
    size_t n_versions;           /* versions listed */
    const char *const *versions; /* [n_versions] */
    size_t n_inputs;             /* inputs */
    kl_oip_tensor_meta *inputs;  /* [n_inputs] */
    size_t n_outputs;            /* outputs */
    kl_oip_tensor_meta *outputs; /* [n_outputs] */
    void *msg_;                  /* the unpacked message, owned */
} kl_oip_model_meta;

/* Unpacks a ModelMetadataResponse and checks each tensor has a name, a known datatype and
 * dimensions >= -1. On KL_OK *out owns everything (kl_oip_model_meta_free). */
kl_status kl_oip_client_decode_metadata(const uint8_t *buf, size_t len, kl_oip_model_meta *out);

/* Frees what a metadata owns and zeroes it; safe on a zeroed one. */
void kl_oip_model_meta_free(kl_oip_model_meta *m);

#endif
