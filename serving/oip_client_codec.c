/* oip_client_codec.c — ModelInferRequest / ModelMetadataRequest out, ModelInferResponse /
 * ModelMetadataResponse in, on protobuf-c. See oip_client_codec.h. */
#include "serving/oip_client_codec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/grpc_predict_v2.pb-c.h" /* Inference__* messages, protobuf-c pack/unpack */

/* Raw tensor bytes are little-endian on the wire; this file reads and writes them in place. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "oip_client_codec.c reads raw tensor bytes in place: it needs a little-endian host"
#endif

#define MAX_DIMS 8

typedef enum { K_BOOL, K_INT, K_UINT, K_FP16, K_BF16, K_FP32, K_FP64, K_BYTES } dt_kind;

static const struct {
    const char *name; /* protocol name */
    int size;         /* bytes per element, 0 for BYTES */
    dt_kind kind;     /* how its values are read */
} datatypes[] = {
    {"BOOL", 1, K_BOOL},   {"UINT8", 1, K_UINT},  {"UINT16", 2, K_UINT}, {"UINT32", 4, K_UINT},
    {"UINT64", 8, K_UINT}, {"INT8", 1, K_INT},    {"INT16", 2, K_INT},   {"INT32", 4, K_INT},
    {"INT64", 8, K_INT},   {"FP16", 2, K_FP16},   {"BF16", 2, K_BF16},   {"FP32", 4, K_FP32},
    {"FP64", 8, K_FP64},   {"BYTES", 0, K_BYTES},
};

/* Index of datatype in the table, or -1. */
static int dt_find(const char *name) {
    for (size_t i = 0; name && i < sizeof datatypes / sizeof datatypes[0]; i++)
        if (!strcmp(name, datatypes[i].name)) return (int)i;
    return -1;
}

int kl_oip_datatype_size(const char *datatype) {
    int i = dt_find(datatype);
    return i < 0 ? -1 : datatypes[i].size;
}

static const char *str_or_empty(const char *s) {
    return s ? s : "";
}

/* Product of dims into *n; -1 if a dimension is negative, -2 if the product overflows 2^48
 * elements (more than any message can carry). */
static int shape_count(const int64_t *dims, size_t n_dims, int64_t *n) {
    int64_t p = 1;
    for (size_t i = 0; i < n_dims; i++) {
        if (dims[i] < 0) return -1;
        if (dims[i] && p > ((int64_t)1 << 48) / dims[i]) return -2;
        p *= dims[i];
    }
    *n = p;
    return 0;
}

/* Writes "[a,b,c]" into buf (for messages). */
static const char *shape_str(const int64_t *dims, size_t n_dims, char *buf, size_t cap) {
    size_t o = 0;
    buf[o++] = '[';
    for (size_t i = 0; i < n_dims && o + 24 < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? "," : "", (long long)dims[i]);
    if (o + 2 <= cap) buf[o++] = ']';
    buf[o < cap ? o : cap - 1] = '\0';
    return buf;
}

/* --- encoding ----------------------------------------------------------------------------- */

/* Stores float v as element i of an integer or floating tensor of table entry d. Returns 0, or
 * -1 if v does not fit. */
static int store_value(int d, void *data, int64_t i, float v) {
    int size = datatypes[d].size;
    uint8_t *p = (uint8_t *)data + (size_t)i * (size_t)size;
    switch (datatypes[d].kind) {
    case K_FP32:
        memcpy(p, &v, 4);
        return 0;
    case K_FP64: {
        double x = v;
        memcpy(p, &x, 8);
        return 0;
    }
    case K_BOOL:
        if (isnan(v)) return -1;
        *p = v != 0.0f;
        return 0;
    case K_INT: {
        if (!isfinite(v)) return -1;
        double r = nearbyint((double)v);
        int bits = size * 8;
        double lim = ldexp(1.0, bits - 1);
        if (r < -lim || r >= lim) return -1;
        int64_t x = (int64_t)r;
        memcpy(p, &x, (size_t)size); /* little-endian: the low bytes come first */
        return 0;
    }
    case K_UINT: {
        if (!isfinite(v)) return -1;
        double r = nearbyint((double)v);
        double lim = ldexp(1.0, size * 8);
        if (r < 0 || r >= lim) return -1;
        uint64_t x = (uint64_t)r;
        memcpy(p, &x, (size_t)size);
        return 0;
    }
    default:
        return -1;
    }
}

kl_status kl_oip_client_encode_infer(const kl_oip_infer_input *in, uint8_t **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    if (!in->model_name || !*in->model_name) return kl_seterr(KL_EINVAL, "no model name");
    if (!in->input_name || !*in->input_name) return kl_seterr(KL_EINVAL, "no input name");
    if (in->n_dims < 1 || in->n_dims > MAX_DIMS)
        return kl_seterr(KL_EINVAL, "input \"%s\": %d dimensions (1..%d)", in->input_name,
                         in->n_dims, MAX_DIMS);
    char sb[256];
    int64_t n;
    if (shape_count(in->shape, (size_t)in->n_dims, &n))
        return kl_seterr(KL_EINVAL, "input \"%s\": shape %s is not a tensor's", in->input_name,
                         shape_str(in->shape, (size_t)in->n_dims, sb, sizeof sb));
    int d = dt_find(in->datatype);
    if (d < 0)
        return kl_seterr(KL_EINVAL, "input \"%s\": unknown datatype \"%s\"", in->input_name,
                         str_or_empty(in->datatype));
    dt_kind k = datatypes[d].kind;
    if (k == K_BYTES || k == K_FP16 || k == K_BF16)
        return kl_seterr(KL_EUNSUPPORTED,
                         "input \"%s\": datatype %s: kiln sends numeric rows as FP32, FP64, BOOL "
                         "or an integer type",
                         in->input_name, datatypes[d].name);
    size_t nbytes = (size_t)n * (size_t)datatypes[d].size;
    void *data = NULL;
    const void *raw = in->values; /* FP32 goes out as the caller's floats, uncopied */
    if (k != K_FP32) {
        data = malloc(nbytes ? nbytes : 1);
        if (!data) return kl_seterr(KL_ENOMEM, "input \"%s\": %zu bytes", in->input_name, nbytes);
        for (int64_t i = 0; i < n; i++)
            if (store_value(d, data, i, in->values[i])) {
                free(data);
                return kl_seterr(KL_EINVAL, "input \"%s\": value %g (element %lld) does not fit %s",
                                 in->input_name, (double)in->values[i], (long long)i,
                                 datatypes[d].name);
            }
        raw = data;
    }

    Inference__ModelInferRequest req = INFERENCE__MODEL_INFER_REQUEST__INIT;
    Inference__ModelInferRequest__InferInputTensor inp =
        INFERENCE__MODEL_INFER_REQUEST__INFER_INPUT_TENSOR__INIT;
    Inference__ModelInferRequest__InferInputTensor *inputs[1] = {&inp};
    ProtobufCBinaryData contents = {nbytes, (uint8_t *)raw};
    req.model_name = (char *)in->model_name;
    req.model_version = (char *)(in->model_version ? in->model_version : "");
    req.id = (char *)(in->id ? in->id : "");
    inp.name = (char *)in->input_name;
    inp.datatype = (char *)datatypes[d].name;
    inp.n_shape = (size_t)in->n_dims;
    inp.shape = (int64_t *)in->shape;
    req.n_inputs = 1;
    req.inputs = inputs;
    req.n_raw_input_contents = 1;
    req.raw_input_contents = &contents;
    Inference__ModelInferRequest__InferRequestedOutputTensor outs[16];
    Inference__ModelInferRequest__InferRequestedOutputTensor *outp[16];
    int n_out = in->outputs ? in->n_outputs : 0;
    if (n_out < 0 || n_out > 16) {
        free(data);
        return kl_seterr(KL_EINVAL, "%d requested outputs (at most 16)", n_out);
    }
    for (int i = 0; i < n_out; i++) {
        Inference__ModelInferRequest__InferRequestedOutputTensor o =
            INFERENCE__MODEL_INFER_REQUEST__INFER_REQUESTED_OUTPUT_TENSOR__INIT;
        outs[i] = o;
        outs[i].name = (char *)in->outputs[i];
        outp[i] = &outs[i];
    }
    req.n_outputs = (size_t)n_out;
    req.outputs = n_out ? outp : NULL;
    size_t sz = inference__model_infer_request__get_packed_size(&req);
    *buf = malloc(sz ? sz : 1);
    if (!*buf) {
        free(data);
        return kl_seterr(KL_ENOMEM, "ModelInferRequest of %zu bytes", sz);
    }
    *len = inference__model_infer_request__pack(&req, *buf);
    free(data);
    return KL_OK;
}

kl_status kl_oip_client_encode_model_ref(const char *name, const char *version, uint8_t **buf,
                                         size_t *len) {
    Inference__ModelMetadataRequest r = INFERENCE__MODEL_METADATA_REQUEST__INIT;
    r.name = (char *)str_or_empty(name);
    r.version = (char *)str_or_empty(version);
    size_t sz = inference__model_metadata_request__get_packed_size(&r);
    *buf = malloc(sz ? sz : 1);
    if (!*buf) return kl_seterr(KL_ENOMEM, "ModelMetadataRequest");
    *len = inference__model_metadata_request__pack(&r, *buf);
    return KL_OK;
}

/* --- decoding a ModelInferResponse -------------------------------------------------------- */

/* Checks BYTES raw data: n_elems elements, each a 4-byte little-endian length and that many
 * bytes, filling exactly len bytes. */
static kl_status check_bytes_raw(const char *name, const uint8_t *p, size_t len, int64_t n_elems) {
    size_t o = 0;
    for (int64_t i = 0; i < n_elems; i++) {
        if (len - o < 4)
            return kl_seterr(KL_EFORMAT,
                             "output \"%s\": BYTES data ends at byte %zu inside the length of "
                             "element %lld of %lld",
                             name, o, (long long)i, (long long)n_elems);
        uint32_t l;
        memcpy(&l, p + o, 4);
        o += 4;
        if (len - o < l)
            return kl_seterr(KL_EFORMAT,
                             "output \"%s\": BYTES element %lld says %u bytes, %zu are left", name,
                             (long long)i, l, len - o);
        o += l;
    }
    if (o != len)
        return kl_seterr(KL_EFORMAT, "output \"%s\": %zu bytes after the %lld BYTES elements", name,
                         len - o, (long long)n_elems);
    return KL_OK;
}

/* Points t at the typed contents c of table entry d (converting where the wire type is wider
 * than the datatype), after checking there are exactly t->n_elems of them. */
static kl_status typed_contents(kl_oip_tensor *t, int d, const Inference__InferTensorContents *c) {
    size_t n = (size_t)t->n_elems, have = 0;
    const char *field = "";
    const void *src = NULL;
    int src_size = 0;
    switch (datatypes[d].kind) {
    case K_BOOL:
        field = "bool_contents", have = c->n_bool_contents, src = c->bool_contents;
        src_size = sizeof *c->bool_contents;
        break;
    case K_INT:
        if (datatypes[d].size == 8)
            field = "int64_contents", have = c->n_int64_contents, src = c->int64_contents;
        else
            field = "int_contents", have = c->n_int_contents, src = c->int_contents;
        src_size = datatypes[d].size == 8 ? 8 : 4;
        break;
    case K_UINT:
        if (datatypes[d].size == 8)
            field = "uint64_contents", have = c->n_uint64_contents, src = c->uint64_contents;
        else
            field = "uint_contents", have = c->n_uint_contents, src = c->uint_contents;
        src_size = datatypes[d].size == 8 ? 8 : 4;
        break;
    case K_FP32:
        field = "fp32_contents", have = c->n_fp32_contents, src = c->fp32_contents, src_size = 4;
        break;
    case K_FP64:
        field = "fp64_contents", have = c->n_fp64_contents, src = c->fp64_contents, src_size = 8;
        break;
    case K_BYTES: {
        if (c->n_bytes_contents != n)
            return kl_seterr(KL_EFORMAT, "output \"%s\": %zu bytes_contents for %zu elements",
                             t->name, c->n_bytes_contents, n);
        size_t total = 0;
        for (size_t i = 0; i < n; i++) {
            if (c->bytes_contents[i].len > UINT32_MAX)
                return kl_seterr(KL_EFORMAT, "output \"%s\": element %zu over 4 GiB", t->name, i);
            total += 4 + c->bytes_contents[i].len;
        }
        uint8_t *o = malloc(total ? total : 1);
        if (!o) return kl_seterr(KL_ENOMEM, "output \"%s\": %zu bytes", t->name, total);
        size_t off = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t l = (uint32_t)c->bytes_contents[i].len;
            memcpy(o + off, &l, 4);
            if (l) memcpy(o + off + 4, c->bytes_contents[i].data, l);
            off += 4 + l;
        }
        t->owned_ = o;
        t->data = o;
        t->n_bytes = total;
        return KL_OK;
    }
    default:
        return kl_seterr(KL_EFORMAT,
                         "output \"%s\": %s data must come as raw_output_contents (the protocol "
                         "has no typed field for it)",
                         t->name, datatypes[d].name);
    }
    if (have != n)
        return kl_seterr(KL_EFORMAT,
                         "output \"%s\": %zu values in contents.%s, its shape needs %zu", t->name,
                         have, field, n);
    int size = datatypes[d].size;
    t->n_bytes = n * (size_t)size;
    if (src_size == size) { /* same layout on the wire and in the tensor: no copy */
        t->data = src;
        return KL_OK;
    }
    uint8_t *o = malloc(t->n_bytes ? t->n_bytes : 1);
    if (!o) return kl_seterr(KL_ENOMEM, "output \"%s\": %zu bytes", t->name, t->n_bytes);
    for (size_t i = 0; i < n; i++) /* narrowing: the low bytes of a little-endian value */
        memcpy(o + i * (size_t)size, (const uint8_t *)src + i * (size_t)src_size, (size_t)size);
    t->owned_ = o;
    t->data = o;
    return KL_OK;
}

void kl_oip_response_free(kl_oip_response *r) {
    if (!r) return;
    for (size_t i = 0; r->outputs && i < r->n_outputs; i++)
        free(r->outputs[i].owned_);
    free(r->outputs);
    if (r->msg_) inference__model_infer_response__free_unpacked(r->msg_, NULL);
    memset(r, 0, sizeof *r);
}

kl_status kl_oip_client_decode_infer(const uint8_t *buf, size_t len, kl_oip_response *out) {
    memset(out, 0, sizeof *out);
    Inference__ModelInferResponse *m = inference__model_infer_response__unpack(NULL, len, buf);
    if (!m) return kl_seterr(KL_EFORMAT, "ModelInferResponse: %zu bytes do not parse as one", len);
    out->msg_ = m;
    out->model_name = str_or_empty(m->model_name);
    out->model_version = str_or_empty(m->model_version);
    out->id = str_or_empty(m->id);
    if (m->n_raw_output_contents && m->n_raw_output_contents != m->n_outputs) {
        kl_status s = kl_seterr(KL_EFORMAT,
                                "ModelInferResponse: %zu raw_output_contents for %zu outputs (one "
                                "per output, in order)",
                                m->n_raw_output_contents, m->n_outputs);
        kl_oip_response_free(out);
        return s;
    }
    out->outputs = calloc(m->n_outputs ? m->n_outputs : 1, sizeof *out->outputs);
    if (!out->outputs) {
        kl_oip_response_free(out);
        return kl_seterr(KL_ENOMEM, "ModelInferResponse: %zu outputs", m->n_outputs);
    }
    out->n_outputs = m->n_outputs;
    char sb[256];
    kl_status s = KL_OK;
    for (size_t i = 0; i < m->n_outputs && s == KL_OK; i++) {
        const Inference__ModelInferResponse__InferOutputTensor *o = m->outputs[i];
        kl_oip_tensor *t = &out->outputs[i];
        t->name = str_or_empty(o->name);
        t->datatype = str_or_empty(o->datatype);
        t->shape = o->shape;
        t->n_dims = o->n_shape;
        int d = dt_find(t->datatype);
        if (d < 0) {
            s = kl_seterr(KL_EFORMAT, "output \"%s\": unknown datatype \"%s\"", t->name,
                          t->datatype);
            break;
        }
        t->elem_size = datatypes[d].size;
        int sc = shape_count(o->shape, o->n_shape, &t->n_elems);
        if (sc) {
            s = kl_seterr(KL_EFORMAT, "output \"%s\": shape %s %s", t->name,
                          shape_str(o->shape, o->n_shape, sb, sizeof sb),
                          sc == -1 ? "has a negative dimension" : "is too large");
            break;
        }
        if (m->n_raw_output_contents) {
            const ProtobufCBinaryData *raw = &m->raw_output_contents[i];
            t->data = raw->data;
            t->n_bytes = raw->len;
            if (t->elem_size == 0) {
                s = check_bytes_raw(t->name, raw->data, raw->len, t->n_elems);
            } else if (raw->len != (size_t)t->n_elems * (size_t)t->elem_size) {
                s = kl_seterr(KL_EFORMAT,
                              "output \"%s\": raw_output_contents[%zu] holds %zu bytes, shape %s "
                              "of %s needs %lld",
                              t->name, i, raw->len, shape_str(o->shape, o->n_shape, sb, sizeof sb),
                              t->datatype, (long long)(t->n_elems * t->elem_size));
            }
        } else if (o->contents) {
            s = typed_contents(t, d, o->contents);
        } else if (t->n_elems > 0) {
            s = kl_seterr(KL_EFORMAT,
                          "output \"%s\": no data (neither raw_output_contents nor contents) for "
                          "shape %s",
                          t->name, shape_str(o->shape, o->n_shape, sb, sizeof sb));
        }
    }
    if (s != KL_OK) {
        kl_oip_response_free(out);
        return kl_preferr(s, "ModelInferResponse");
    }
    return KL_OK;
}

const kl_oip_tensor *kl_oip_response_output(const kl_oip_response *r, const char *name) {
    for (size_t i = 0; i < r->n_outputs; i++)
        if (!strcmp(r->outputs[i].name, name)) return &r->outputs[i];
    return NULL;
}

static double half_to_double(uint16_t h) {
    int e = (h >> 10) & 0x1f, f = h & 0x3ff;
    double v = e == 0 ? ldexp(f, -24) : e == 31 ? (f ? NAN : INFINITY) : ldexp(f + 1024, e - 25);
    return h & 0x8000 ? -v : v;
}

double kl_oip_tensor_value(const kl_oip_tensor *t, int64_t i) {
    int d = dt_find(t->datatype);
    if (d < 0 || !t->data || i < 0 || i >= t->n_elems || datatypes[d].kind == K_BYTES) return NAN;
    const uint8_t *p = (const uint8_t *)t->data + (size_t)i * (size_t)datatypes[d].size;
    switch (datatypes[d].kind) {
    case K_BOOL:
        return *p != 0;
    case K_INT:
        switch (datatypes[d].size) {
        case 1:
            return (int8_t)*p;
        case 2: {
            int16_t v;
            memcpy(&v, p, 2);
            return v;
        }
        case 4: {
            int32_t v;
            memcpy(&v, p, 4);
            return v;
        }
        default: {
            int64_t v;
            memcpy(&v, p, 8);
            return (double)v;
        }
        }
    case K_UINT: {
        uint64_t v = 0;
        memcpy(&v, p, (size_t)datatypes[d].size);
        return (double)v;
    }
    case K_FP16: {
        uint16_t h;
        memcpy(&h, p, 2);
        return half_to_double(h);
    }
    case K_BF16: {
        uint16_t h;
        memcpy(&h, p, 2);
        uint32_t b = (uint32_t)h << 16;
        float f;
        memcpy(&f, &b, 4);
        return f;
    }
    case K_FP32: {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    case K_FP64: {
        double v;
        memcpy(&v, p, 8);
        return v;
    }
    default:
        return NAN;
    }
}

int kl_oip_tensor_is_integer(const kl_oip_tensor *t) {
    int d = dt_find(t->datatype);
    return d >= 0 && (datatypes[d].kind == K_BOOL || datatypes[d].kind == K_INT ||
                      datatypes[d].kind == K_UINT);
}

/* --- decoding a ModelMetadataResponse ----------------------------------------------------- */

void kl_oip_model_meta_free(kl_oip_model_meta *m) {
    if (!m) return;
    free(m->inputs);
    free(m->outputs);
    if (m->msg_) inference__model_metadata_response__free_unpacked(m->msg_, NULL);
    memset(m, 0, sizeof *m);
}

/* Fills t from a TensorMetadata and checks it; what names it in messages ("input 0"). */
static kl_status meta_tensor(const Inference__ModelMetadataResponse__TensorMetadata *src,
                             const char *what, size_t i, kl_oip_tensor_meta *t) {
    if (!src) return kl_seterr(KL_EFORMAT, "%s %zu: missing", what, i);
    t->name = str_or_empty(src->name);
    t->datatype = str_or_empty(src->datatype);
    t->shape = src->shape;
    t->n_dims = src->n_shape;
    if (!*t->name) return kl_seterr(KL_EFORMAT, "%s %zu has no name", what, i);
    if (dt_find(t->datatype) < 0)
        return kl_seterr(KL_EFORMAT, "%s \"%s\": unknown datatype \"%s\"", what, t->name,
                         t->datatype);
    for (size_t k = 0; k < t->n_dims; k++)
        if (t->shape[k] < -1)
            return kl_seterr(KL_EFORMAT, "%s \"%s\": dimension %zu is %lld (>= -1 expected)", what,
                             t->name, k, (long long)t->shape[k]);
    return KL_OK;
}

kl_status kl_oip_client_decode_metadata(const uint8_t *buf, size_t len, kl_oip_model_meta *out) {
    memset(out, 0, sizeof *out);
    Inference__ModelMetadataResponse *m =
        inference__model_metadata_response__unpack(NULL, len, buf);
    if (!m)
        return kl_seterr(KL_EFORMAT, "ModelMetadataResponse: %zu bytes do not parse as one", len);
    out->msg_ = m;
    out->name = str_or_empty(m->name);
    out->platform = str_or_empty(m->platform);
    out->n_versions = m->n_versions;
    out->versions = (const char *const *)m->versions;
    out->inputs = calloc(m->n_inputs ? m->n_inputs : 1, sizeof *out->inputs);
    out->outputs = calloc(m->n_outputs ? m->n_outputs : 1, sizeof *out->outputs);
    if (!out->inputs || !out->outputs) {
        kl_oip_model_meta_free(out);
        return kl_seterr(KL_ENOMEM, "ModelMetadataResponse");
    }
    out->n_inputs = m->n_inputs;
    out->n_outputs = m->n_outputs;
    kl_status s = KL_OK;
    for (size_t i = 0; i < m->n_inputs && s == KL_OK; i++)
        s = meta_tensor(m->inputs[i], "input", i, &out->inputs[i]);
    for (size_t i = 0; i < m->n_outputs && s == KL_OK; i++)
        s = meta_tensor(m->outputs[i], "output", i, &out->outputs[i]);
    if (s != KL_OK) {
        kl_oip_model_meta_free(out);
        return kl_preferr(s, "ModelMetadataResponse");
    }
    return KL_OK;
}
