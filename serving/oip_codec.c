/* oip_codec.c — ModelInferRequest / ModelInferResponse and the small metadata messages of the
 * Open Inference Protocol, on protobuf-c. See oip_codec.h. */
#include "serving/oip_codec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/grpc_predict_v2.pb-c.h" /* Inference__* messages, protobuf-c pack/unpack */

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#define KL_OIP_BIG_ENDIAN 1
#endif

kl_grpc_code kl_grpc_code_from_status(kl_status s) {
    switch (s) {
    case KL_OK:
        return KL_GRPC_OK;
    case KL_EINVAL:
    case KL_EFORMAT:
        return KL_GRPC_INVALID_ARGUMENT;
    case KL_ENOTFOUND:
        return KL_GRPC_NOT_FOUND;
    case KL_ENOMEM:
        return KL_GRPC_RESOURCE_EXHAUSTED;
    case KL_EUNSUPPORTED:
        return KL_GRPC_UNIMPLEMENTED;
    case KL_ECANCELED:
        return KL_GRPC_CANCELLED;
    case KL_EIO:
    case KL_EINTERNAL:
    default:
        return KL_GRPC_INTERNAL;
    }
}

const char *kl_grpc_code_name(kl_grpc_code c) {
    static const char *const names[] = {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    if ((int)c < 0 || (size_t)c >= sizeof names / sizeof names[0]) return "UNKNOWN";
    return names[c];
}

const char *kl_oip_output_name(kl_oip_output o) {
    return o == KL_OIP_OUT_PROBABILITIES ? "probabilities" : o == KL_OIP_OUT_CLASS ? "class" : "?";
}

/* Sets the thread's message and returns INVALID_ARGUMENT, the answer to most bad requests. */
#define BAD(...) (kl_seterr(KL_EINVAL, __VA_ARGS__), KL_GRPC_INVALID_ARGUMENT)

void kl_oip_request_free(kl_oip_request *req) {
    if (!req) return;
    free(req->model_name);
    free(req->model_version);
    free(req->id);
    free(req->rows);
    free(req->labels);
    memset(req, 0, sizeof *req);
}

/* --- decoding a ModelInferRequest ------------------------------------------------------------ */

kl_grpc_code kl_oip_parse_labels(const char *key, const char *s, int64_t batch, int64_t **out) {
    *out = NULL;
    int64_t *l = malloc((size_t)(batch > 0 ? batch : 1) * sizeof *l);
    if (!l) {
        kl_seterr(KL_ENOMEM, "parameter \"%s\": out of memory", key);
        return KL_GRPC_RESOURCE_EXHAUSTED;
    }
    int64_t n = 0;
    const char *c = s;
    for (;;) {
        while (*c == ' ' || *c == '\t')
            c++;
        char *end;
        errno = 0;
        long long v = strtoll(c, &end, 10);
        if (end == c || errno || v < 0 || n >= batch) {
            free(l);
            if (n >= batch && end != c)
                return BAD("parameter \"%s\": more labels than the %lld rows", key,
                           (long long)batch);
            return BAD("parameter \"%s\": \"%.64s\" is not a list of class numbers (>= 0) "
                       "separated by commas",
                       key, s);
        }
        l[n++] = v;
        c = end;
        while (*c == ' ' || *c == '\t')
            c++;
        if (!*c) break;
        if (*c++ != ',') {
            free(l);
            return BAD("parameter \"%s\": unexpected \"%c\" in \"%.64s\"", key, c[-1], s);
        }
    }
    if (n != batch) {
        free(l);
        return BAD("parameter \"%s\": %lld labels for %lld rows (one per row)", key, (long long)n,
                   (long long)batch);
    }
    *out = l;
    return KL_GRPC_OK;
}

/* Reads "labels" (or "label"): int64_param for one row, string_param "3,7" for any batch. */
static kl_grpc_code read_labels(const char *key, const Inference__InferParameter *p,
                                kl_oip_request *out) {
    if (out->labels) return BAD("parameters \"label\" and \"labels\" both given");
    if (p && p->parameter_choice_case == INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_STRING_PARAM)
        return kl_oip_parse_labels(key, p->string_param ? p->string_param : "", out->batch,
                                   &out->labels);
    if (p && p->parameter_choice_case == INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM) {
        if (out->batch != 1)
            return BAD("parameter \"%s\": one int64 label for %lld rows (give string_param "
                       "\"l1,l2,...\", one per row)",
                       key, (long long)out->batch);
        if (p->int64_param < 0)
            return BAD("parameter \"%s\": %lld must be >= 0", key, (long long)p->int64_param);
        if (!(out->labels = malloc(sizeof *out->labels))) {
            kl_seterr(KL_ENOMEM, "out of memory");
            return KL_GRPC_RESOURCE_EXHAUSTED;
        }
        out->labels[0] = p->int64_param;
        return KL_GRPC_OK;
    }
    return BAD("parameter \"%s\": expected int64_param (one row) or string_param \"l1,l2,...\"",
               key);
}

/* Reads "priority", "timeout" and "labels" from the request parameters; others are ignored, as
 * Triton ignores custom parameters a model does not read. */
static kl_grpc_code read_parameters(const Inference__ModelInferRequest *m, kl_oip_request *out) {
    for (size_t i = 0; i < m->n_parameters; i++) {
        const Inference__ModelInferRequest__ParametersEntry *e = m->parameters[i];
        if (!e || !e->key) continue;
        const Inference__InferParameter *p = e->value;
        if (!strcmp(e->key, "labels") || !strcmp(e->key, "label")) {
            kl_grpc_code c = read_labels(e->key, p, out);
            if (c != KL_GRPC_OK) return c;
            continue;
        }
        int is_priority = strcmp(e->key, "priority") == 0;
        int is_timeout = strcmp(e->key, "timeout") == 0;
        if (!is_priority && !is_timeout) continue;
        int64_t v;
        if (p &&
            p->parameter_choice_case == INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM) {
            v = p->int64_param;
        } else if (p && is_priority &&
                   p->parameter_choice_case ==
                       INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_UINT64_PARAM) {
            if (p->uint64_param > (uint64_t)INT64_MAX)
                return BAD("parameter \"priority\": %llu out of range",
                           (unsigned long long)p->uint64_param);
            v = (int64_t)p->uint64_param;
        } else {
            return BAD("parameter \"%s\": expected %s", e->key,
                       is_priority ? "int64_param or uint64_param" : "int64_param");
        }
        if (v < 0) return BAD("parameter \"%s\": %lld must be >= 0", e->key, (long long)v);
        if (is_priority) {
            out->has_priority = 1;
            out->priority = (uint64_t)v;
        } else {
            out->timeout_us = v;
        }
    }
    return KL_GRPC_OK;
}

/* Checks the requested outputs and records the order to answer them in. */
static kl_grpc_code read_outputs(const Inference__ModelInferRequest *m, kl_oip_request *out) {
    if (m->n_outputs == 0) {
        out->n_outputs = KL_OIP_N_OUTPUTS;
        out->outputs[0] = KL_OIP_OUT_PROBABILITIES;
        out->outputs[1] = KL_OIP_OUT_CLASS;
        return KL_GRPC_OK;
    }
    if (m->n_outputs > KL_OIP_N_OUTPUTS)
        return BAD("%zu outputs requested, the model has %d (\"probabilities\", \"class\")",
                   m->n_outputs, KL_OIP_N_OUTPUTS);
    for (size_t i = 0; i < m->n_outputs; i++) {
        const char *name = m->outputs[i] && m->outputs[i]->name ? m->outputs[i]->name : "";
        kl_oip_output o;
        if (strcmp(name, "probabilities") == 0)
            o = KL_OIP_OUT_PROBABILITIES;
        else if (strcmp(name, "class") == 0)
            o = KL_OIP_OUT_CLASS;
        else
            return BAD("unknown output \"%s\" requested (the model has \"probabilities\" and "
                       "\"class\")",
                       name);
        for (int j = 0; j < out->n_outputs; j++)
            if (out->outputs[j] == o) return BAD("output \"%s\" requested twice", name);
        out->outputs[out->n_outputs++] = o;
    }
    return KL_GRPC_OK;
}

/* Checks the one input tensor against sig and copies its rows into out->rows. */
static kl_grpc_code read_input(const Inference__ModelInferRequest *m, const kl_oip_model_sig *sig,
                               kl_oip_request *out) {
    if (m->n_inputs != 1) {
        if (sig->input_name)
            return BAD("request has %zu inputs, the model takes 1 (\"%s\")", m->n_inputs,
                       sig->input_name);
        return BAD("request has %zu inputs, the model takes 1", m->n_inputs);
    }
    const Inference__ModelInferRequest__InferInputTensor *t = m->inputs[0];
    const char *name = t && t->name ? t->name : "";
    if (sig->input_name && strcmp(name, sig->input_name) != 0)
        return BAD("unknown input \"%s\" (the model's input is \"%s\")", name, sig->input_name);
    const char *dt = t && t->datatype ? t->datatype : "";
    if (strcmp(dt, "FP32") != 0)
        return BAD("input \"%s\": datatype \"%s\", expected \"FP32\"", name, dt);
    if (t->n_shape != 2) {
        char shape[128] = "";
        size_t used = 0;
        for (size_t i = 0; i < t->n_shape && used + 24 < sizeof shape; i++)
            used += (size_t)snprintf(shape + used, sizeof shape - used, "%s%lld", i ? "," : "",
                                     (long long)t->shape[i]);
        return BAD("input \"%s\": shape [%s] has rank %zu, expected [batch, %lld]", name, shape,
                   t->n_shape, (long long)sig->n_features);
    }
    int64_t batch = t->shape[0], feats = t->shape[1];
    if (feats != sig->n_features)
        return BAD("input \"%s\": shape [%lld,%lld]: %lld features, expected %lld", name,
                   (long long)batch, (long long)feats, (long long)feats,
                   (long long)sig->n_features);
    if (batch == 0)
        return BAD("input \"%s\": empty batch (shape [0,%lld])", name, (long long)feats);
    if (batch < 0) return BAD("input \"%s\": batch %lld must be positive", name, (long long)batch);
    if (batch > sig->max_batch)
        return BAD("input \"%s\": batch %lld exceeds the model's max batch size %lld", name,
                   (long long)batch, (long long)sig->max_batch);
    /* batch <= max_batch and features are the model's: the product cannot overflow. */
    size_t count = (size_t)batch * (size_t)feats;

    int has_raw = m->n_raw_input_contents > 0;
    int has_typed = t->contents != NULL;
    if (has_raw && has_typed)
        return BAD("input \"%s\": raw_input_contents and typed contents both set", name);
    if (!has_raw && !has_typed)
        return BAD("input \"%s\": no data (neither raw_input_contents nor contents.fp32_contents)",
                   name);
    float *rows = malloc(count * sizeof *rows);
    if (!rows) {
        kl_seterr(KL_ENOMEM, "input \"%s\": %zu floats: out of memory", name, count);
        return KL_GRPC_RESOURCE_EXHAUSTED;
    }
    if (has_raw) {
        if (m->n_raw_input_contents != 1) {
            free(rows);
            return BAD("raw_input_contents has %zu entries for 1 input", m->n_raw_input_contents);
        }
        const ProtobufCBinaryData *raw = &m->raw_input_contents[0];
        if (raw->len != count * sizeof(float)) {
            free(rows);
            return BAD("input \"%s\": raw_input_contents holds %zu bytes, shape [%lld,%lld] FP32 "
                       "needs %zu",
                       name, raw->len, (long long)batch, (long long)feats, count * sizeof(float));
        }
#ifdef KL_OIP_BIG_ENDIAN
        for (size_t i = 0; i < count; i++) {
            const uint8_t *b = raw->data + 4 * i;
            uint32_t u =
                (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
            memcpy(&rows[i], &u, sizeof u);
        }
#else
        memcpy(rows, raw->data, raw->len);
#endif
    } else {
        if (t->contents->n_fp32_contents != count) {
            free(rows);
            return BAD("input \"%s\": contents.fp32_contents holds %zu values, shape [%lld,%lld] "
                       "needs %zu",
                       name, t->contents->n_fp32_contents, (long long)batch, (long long)feats,
                       count);
        }
        memcpy(rows, t->contents->fp32_contents, count * sizeof *rows);
    }
    out->rows = rows;
    out->batch = batch;
    out->n_features = feats;
    return KL_GRPC_OK;
}

/* Copies a protobuf-c string ("" for NULL) into a malloc'd one. */
static char *dup_str(const char *s) {
    return strdup(s ? s : "");
}

/* The one resolver kl_oip_decode_infer uses: the caller has already picked the signature. */
static kl_grpc_code fixed_sig(void *ctx, const char *name, const char *version,
                              kl_oip_model_sig *sig) {
    (void)name;
    (void)version;
    *sig = *(const kl_oip_model_sig *)ctx;
    return KL_GRPC_OK;
}

kl_grpc_code kl_oip_decode_infer_resolve(const uint8_t *buf, size_t len, kl_oip_resolve_fn resolve,
                                         void *ctx, kl_oip_request *out) {
    memset(out, 0, sizeof *out);
    if (!buf && len > 0) return BAD("malformed ModelInferRequest: no buffer");
    Inference__ModelInferRequest *m = inference__model_infer_request__unpack(NULL, len, buf);
    if (!m) return BAD("malformed ModelInferRequest (%zu bytes do not parse)", len);
    const char *mname = m->model_name ? m->model_name : "";
    const char *mver = m->model_version ? m->model_version : "";
    kl_oip_model_sig sig;
    kl_grpc_code c = resolve(ctx, mname, mver, &sig);
    if (c != KL_GRPC_OK) {
        kl_preferr(KL_ENOTFOUND, "model \"%s\"%s%s", mname, *mver ? " version " : "", mver);
        inference__model_infer_request__free_unpacked(m, NULL);
        return c;
    }
    c = read_input(m, &sig, out);
    if (c == KL_GRPC_OK) c = read_outputs(m, out);
    if (c == KL_GRPC_OK) c = read_parameters(m, out);
    if (c == KL_GRPC_OK) {
        out->model_name = dup_str(m->model_name);
        out->model_version = dup_str(m->model_version);
        out->id = dup_str(m->id);
        if (!out->model_name || !out->model_version || !out->id) {
            kl_seterr(KL_ENOMEM, "out of memory");
            c = KL_GRPC_RESOURCE_EXHAUSTED;
        }
    }
    if (c != KL_GRPC_OK) {
        kl_preferr(KL_EINVAL, "model \"%s\"", mname);
        kl_oip_request_free(out);
    }
    inference__model_infer_request__free_unpacked(m, NULL);
    return c;
}

kl_grpc_code kl_oip_decode_infer(const uint8_t *buf, size_t len, const kl_oip_model_sig *sig,
                                 kl_oip_request *out) {
    return kl_oip_decode_infer_resolve(buf, len, fixed_sig, (void *)sig, out);
}

/* --- encoding -------------------------------------------------------------------------------- */

/* Packs a message into a fresh malloc'd buffer. */
static kl_status pack_message(const ProtobufCMessage *msg, uint8_t **buf, size_t *len) {
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *b = malloc(n ? n : 1);
    if (!b)
        return kl_seterr(KL_ENOMEM, "pack %s: %zu bytes: out of memory", msg->descriptor->name, n);
    size_t w = protobuf_c_message_pack(msg, b);
    if (w != n) {
        free(b);
        return kl_seterr(KL_EINTERNAL, "pack %s: wrote %zu of %zu bytes", msg->descriptor->name, w,
                         n);
    }
    *buf = b;
    *len = n;
    return KL_OK;
}

kl_status kl_oip_encode_infer_response(const kl_oip_request *req, const char *version,
                                       const float *probs, const int64_t *classes,
                                       int64_t n_classes, uint8_t **buf, size_t *len) {
    if (!req || !probs || n_classes < 1 || req->batch < 1 || req->n_outputs < 1 ||
        req->n_outputs > KL_OIP_N_OUTPUTS)
        return kl_seterr(KL_EINVAL, "encode ModelInferResponse: bad arguments");
    size_t batch = (size_t)req->batch, nc = (size_t)n_classes;
    Inference__ModelInferResponse r = INFERENCE__MODEL_INFER_RESPONSE__INIT;
    Inference__ModelInferResponse__InferOutputTensor t[KL_OIP_N_OUTPUTS];
    Inference__ModelInferResponse__InferOutputTensor *tp[KL_OIP_N_OUTPUTS];
    ProtobufCBinaryData raw[KL_OIP_N_OUTPUTS];
    int64_t shape_probs[2] = {req->batch, n_classes}, shape_class[1] = {req->batch};
    /* The wire wants little-endian bytes: on little-endian hosts the caller's arrays are sent as
     * they are; otherwise (and when classes must be computed) they are converted into scratch. */
    int64_t *cls_tmp = NULL;
    uint8_t *probs_tmp = NULL;
    const uint8_t *probs_bytes = (const uint8_t *)probs;
    const int64_t *cls = classes;
    kl_status s = KL_OK;
    for (int i = 0; i < req->n_outputs; i++)
        if (req->outputs[i] == KL_OIP_OUT_CLASS && !classes) {
            cls_tmp = malloc(batch * sizeof *cls_tmp);
            if (!cls_tmp) return kl_seterr(KL_ENOMEM, "encode ModelInferResponse: out of memory");
            for (size_t b = 0; b < batch; b++) {
                size_t best = 0;
                for (size_t k = 1; k < nc; k++)
                    if (probs[b * nc + k] > probs[b * nc + best]) best = k;
                cls_tmp[b] = (int64_t)best;
            }
            cls = cls_tmp;
        }
#ifdef KL_OIP_BIG_ENDIAN
    /* Byte-swap into scratch: rare hosts, simple code. */
    probs_tmp = malloc(batch * nc * 4 + batch * 8);
    if (!probs_tmp) {
        free(cls_tmp);
        return kl_seterr(KL_ENOMEM, "encode ModelInferResponse: out of memory");
    }
    for (size_t i = 0; i < batch * nc; i++) {
        uint32_t u;
        memcpy(&u, &probs[i], 4);
        for (int k = 0; k < 4; k++)
            probs_tmp[4 * i + k] = (uint8_t)(u >> (8 * k));
    }
    uint8_t *cls_bytes = probs_tmp + batch * nc * 4;
    for (size_t i = 0; cls && i < batch; i++)
        for (int k = 0; k < 8; k++)
            cls_bytes[8 * i + k] = (uint8_t)((uint64_t)cls[i] >> (8 * k));
    probs_bytes = probs_tmp;
#else
    const uint8_t *cls_bytes = (const uint8_t *)cls;
#endif
    for (int i = 0; i < req->n_outputs; i++) {
        inference__model_infer_response__infer_output_tensor__init(&t[i]);
        tp[i] = &t[i];
        t[i].name = (char *)kl_oip_output_name(req->outputs[i]);
        if (req->outputs[i] == KL_OIP_OUT_PROBABILITIES) {
            t[i].datatype = "FP32";
            t[i].n_shape = 2;
            t[i].shape = shape_probs;
            raw[i].data = (uint8_t *)probs_bytes;
            raw[i].len = batch * nc * sizeof(float);
        } else {
            t[i].datatype = "INT64";
            t[i].n_shape = 1;
            t[i].shape = shape_class;
            raw[i].data = (uint8_t *)cls_bytes;
            raw[i].len = batch * sizeof(int64_t);
        }
    }
    r.model_name = req->model_name ? req->model_name : "";
    r.model_version = (char *)(version ? version : "");
    r.id = req->id ? req->id : "";
    r.n_outputs = (size_t)req->n_outputs;
    r.outputs = tp;
    r.n_raw_output_contents = (size_t)req->n_outputs;
    r.raw_output_contents = raw;
    s = pack_message(&r.base, buf, len);
    free(cls_tmp);
    free(probs_tmp);
    return s;
}

kl_grpc_code kl_oip_decode_model_ref(const uint8_t *buf, size_t len, char **name, char **version) {
    *name = *version = NULL;
    if (!buf && len > 0) return BAD("malformed request: no buffer");
    /* ModelReady, ModelMetadata, ModelConfig and ModelStatistics requests share this layout. */
    Inference__ModelMetadataRequest *m = inference__model_metadata_request__unpack(NULL, len, buf);
    if (!m) return BAD("malformed request (%zu bytes do not parse as {name, version})", len);
    *name = dup_str(m->name);
    *version = dup_str(m->version);
    inference__model_metadata_request__free_unpacked(m, NULL);
    if (!*name || !*version) {
        free(*name);
        free(*version);
        *name = *version = NULL;
        kl_seterr(KL_ENOMEM, "out of memory");
        return KL_GRPC_RESOURCE_EXHAUSTED;
    }
    return KL_GRPC_OK;
}

kl_status kl_oip_encode_model_metadata(const char *name, const char *const *versions,
                                       size_t n_versions, const char *platform,
                                       const kl_oip_model_sig *sig, uint8_t **buf, size_t *len) {
    if (!name || !sig || (n_versions && !versions))
        return kl_seterr(KL_EINVAL, "encode ModelMetadataResponse: bad arguments");
    Inference__ModelMetadataResponse r = INFERENCE__MODEL_METADATA_RESPONSE__INIT;
    Inference__ModelMetadataResponse__TensorMetadata in, outs[2];
    Inference__ModelMetadataResponse__TensorMetadata *inp[1] = {&in},
                                                     *outp[2] = {&outs[0], &outs[1]};
    int64_t in_shape[2] = {-1, sig->n_features}, probs_shape[2] = {-1, sig->n_classes},
            class_shape[1] = {-1};
    inference__model_metadata_response__tensor_metadata__init(&in);
    in.name = (char *)(sig->input_name ? sig->input_name : "input");
    in.datatype = "FP32";
    in.n_shape = 2;
    in.shape = in_shape;
    inference__model_metadata_response__tensor_metadata__init(&outs[0]);
    outs[0].name = "probabilities";
    outs[0].datatype = "FP32";
    outs[0].n_shape = 2;
    outs[0].shape = probs_shape;
    inference__model_metadata_response__tensor_metadata__init(&outs[1]);
    outs[1].name = "class";
    outs[1].datatype = "INT64";
    outs[1].n_shape = 1;
    outs[1].shape = class_shape;
    r.name = (char *)name;
    r.n_versions = n_versions;
    r.versions = (char **)versions;
    r.platform = (char *)(platform ? platform : "kiln");
    r.n_inputs = 1;
    r.inputs = inp;
    r.n_outputs = 2;
    r.outputs = outp;
    return pack_message(&r.base, buf, len);
}

kl_status kl_oip_encode_bool_response(int value, uint8_t **buf, size_t *len) {
    /* ServerLive, ServerReady and ModelReady responses are all `bool = 1`. */
    Inference__ServerLiveResponse r = INFERENCE__SERVER_LIVE_RESPONSE__INIT;
    r.live = value ? 1 : 0;
    return pack_message(&r.base, buf, len);
}

kl_status kl_oip_encode_model_config(const kl_oip_model_config *cfg, uint8_t **buf, size_t *len) {
    if (!cfg || !cfg->name || cfg->sig.max_batch < 1 || cfg->sig.max_batch > INT32_MAX ||
        (cfg->n_preferred && !cfg->preferred))
        return kl_seterr(KL_EINVAL, "encode ModelConfigResponse: bad arguments");
    Inference__ModelConfig c = INFERENCE__MODEL_CONFIG__INIT;
    Inference__ModelInput in = INFERENCE__MODEL_INPUT__INIT, *inp[1] = {&in};
    Inference__ModelOutput probs = INFERENCE__MODEL_OUTPUT__INIT;
    Inference__ModelOutput cls = INFERENCE__MODEL_OUTPUT__INIT;
    Inference__ModelOutput *outp[2] = {&probs, &cls};
    Inference__ModelTensorReshape scalar = INFERENCE__MODEL_TENSOR_RESHAPE__INIT;
    Inference__ModelDynamicBatching db = INFERENCE__MODEL_DYNAMIC_BATCHING__INIT;
    Inference__ModelQueuePolicy qp = INFERENCE__MODEL_QUEUE_POLICY__INIT;
    Inference__ModelInstanceGroup ig = INFERENCE__MODEL_INSTANCE_GROUP__INIT, *igp[1] = {&ig};
    int64_t in_dims[1] = {cfg->sig.n_features}, probs_dims[1] = {cfg->sig.n_classes};
    int64_t cls_dims[1] = {1};
    in.name = (char *)(cfg->sig.input_name ? cfg->sig.input_name : "input");
    in.data_type = INFERENCE__DATA_TYPE__TYPE_FP32;
    in.n_dims = 1;
    in.dims = in_dims;
    probs.name = "probabilities";
    probs.data_type = INFERENCE__DATA_TYPE__TYPE_FP32;
    probs.n_dims = 1;
    probs.dims = probs_dims;
    cls.name = "class";
    cls.data_type = INFERENCE__DATA_TYPE__TYPE_INT64;
    cls.n_dims = 1;
    cls.dims = cls_dims;
    cls.reshape = &scalar; /* present and empty: the model answers [batch] */
    c.name = (char *)cfg->name;
    c.platform = (char *)(cfg->platform ? cfg->platform : "");
    c.backend = (char *)(cfg->backend ? cfg->backend : "");
    c.max_batch_size = (int32_t)cfg->sig.max_batch;
    c.n_input = 1;
    c.input = inp;
    c.n_output = 2;
    c.output = outp;
    if (cfg->dynamic_batching) {
        db.n_preferred_batch_size = cfg->n_preferred;
        db.preferred_batch_size = (int32_t *)cfg->preferred;
        db.max_queue_delay_microseconds = cfg->max_queue_delay_us;
        db.priority_levels = cfg->priority_levels;
        if (cfg->max_queue_size || cfg->default_timeout_us) {
            qp.max_queue_size = cfg->max_queue_size;
            qp.default_timeout_microseconds = cfg->default_timeout_us;
            db.default_queue_policy = &qp;
        }
        c.scheduling_choice_case = INFERENCE__MODEL_CONFIG__SCHEDULING_CHOICE_DYNAMIC_BATCHING;
        c.dynamic_batching = &db;
    }
    ig.kind = cfg->on_gpu ? INFERENCE__MODEL_INSTANCE_GROUP__KIND__KIND_GPU
                          : INFERENCE__MODEL_INSTANCE_GROUP__KIND__KIND_CPU;
    ig.count = cfg->instance_count > 0 ? cfg->instance_count : 1;
    c.n_instance_group = 1;
    c.instance_group = igp;
    Inference__ModelConfigResponse r = INFERENCE__MODEL_CONFIG_RESPONSE__INIT;
    r.config = &c; /* always set: perf_analyzer copies config and breaks without it */
    return pack_message(&r.base, buf, len);
}

kl_status kl_oip_encode_server_metadata(const char *name, const char *version,
                                        const char *const *extensions, size_t n_extensions,
                                        uint8_t **buf, size_t *len) {
    if (n_extensions && !extensions)
        return kl_seterr(KL_EINVAL, "encode ServerMetadataResponse: bad arguments");
    Inference__ServerMetadataResponse r = INFERENCE__SERVER_METADATA_RESPONSE__INIT;
    r.name = (char *)(name ? name : "");
    r.version = (char *)(version ? version : "");
    r.n_extensions = n_extensions;
    r.extensions = (char **)extensions;
    return pack_message(&r.base, buf, len);
}

/* --- streaming, statistics, repository -------------------------------------------------------- */

/* Appends v as a protobuf varint at p; returns the bytes written (<= 10). */
static size_t put_varint(uint8_t *p, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

kl_status kl_oip_encode_stream_response(const char *error, const uint8_t *infer, size_t infer_len,
                                        uint8_t **buf, size_t *len) {
    /* Written by hand: infer_response arrives packed, and protobuf-c could only nest it after
     * unpacking it again. Field 1 (error_message) and field 2 (infer_response) are both
     * length-delimited: key byte, varint length, bytes. */
    size_t elen = error ? strlen(error) : 0;
    if (infer_len && !infer)
        return kl_seterr(KL_EINVAL, "encode ModelStreamInferResponse: bad arguments");
    uint8_t *b = malloc(elen + infer_len + 22);
    if (!b)
        return kl_seterr(KL_ENOMEM, "encode ModelStreamInferResponse: %zu bytes: out of memory",
                         elen + infer_len);
    size_t n = 0;
    if (elen) {
        b[n++] = 0x0a;
        n += put_varint(b + n, elen);
        memcpy(b + n, error, elen);
        n += elen;
    }
    if (infer) {
        b[n++] = 0x12;
        n += put_varint(b + n, infer_len);
        if (infer_len) memcpy(b + n, infer, infer_len);
        n += infer_len;
    }
    *buf = b;
    *len = n;
    return KL_OK;
}

/* Points a StatisticDuration at d's values (d's storage belongs to the caller). */
static Inference__StatisticDuration *duration(Inference__StatisticDuration *out,
                                              kl_oip_duration d) {
    inference__statistic_duration__init(out);
    out->count = d.count;
    out->ns = d.ns;
    return out;
}

kl_status kl_oip_encode_model_statistics(const kl_oip_model_stats *stats, size_t n, uint8_t **buf,
                                         size_t *len) {
    if (n && !stats) return kl_seterr(KL_EINVAL, "encode ModelStatisticsResponse: bad arguments");
    /* One allocation for every nested message: per model 8 durations, the InferStatistics, the
     * ModelStatistics and its pointer; per batch size 3 durations, the message and its pointer. */
    size_t n_batch = 0;
    for (size_t i = 0; i < n; i++) {
        if (stats[i].n_batch && !stats[i].batch)
            return kl_seterr(KL_EINVAL, "encode ModelStatisticsResponse: bad arguments");
        n_batch += stats[i].n_batch;
    }
    Inference__ModelStatistics *ms = calloc(n ? n : 1, sizeof *ms);
    Inference__ModelStatistics **msp = calloc(n ? n : 1, sizeof *msp);
    Inference__InferStatistics *is = calloc(n ? n : 1, sizeof *is);
    Inference__StatisticDuration *d = calloc(8 * n + 3 * n_batch + 1, sizeof *d);
    Inference__InferBatchStatistics *bs = calloc(n_batch ? n_batch : 1, sizeof *bs);
    Inference__InferBatchStatistics **bsp = calloc(n_batch ? n_batch : 1, sizeof *bsp);
    kl_status st = KL_OK;
    if (!ms || !msp || !is || !d || !bs || !bsp) {
        st = kl_seterr(KL_ENOMEM, "encode ModelStatisticsResponse: out of memory");
        goto done;
    }
    size_t di = 0, bi = 0;
    for (size_t i = 0; i < n; i++) {
        const kl_oip_model_stats *s = &stats[i];
        kl_oip_duration zero = {0, 0};
        inference__infer_statistics__init(&is[i]);
        is[i].success = duration(&d[di++], s->success);
        is[i].fail = duration(&d[di++], s->fail);
        is[i].queue = duration(&d[di++], s->queue);
        is[i].compute_input = duration(&d[di++], s->compute_input);
        is[i].compute_infer = duration(&d[di++], s->compute_infer);
        is[i].compute_output = duration(&d[di++], s->compute_output);
        is[i].cache_hit = duration(&d[di++], zero);
        is[i].cache_miss = duration(&d[di++], zero);
        inference__model_statistics__init(&ms[i]);
        ms[i].name = (char *)(s->name ? s->name : "");
        ms[i].version = (char *)(s->version ? s->version : "");
        ms[i].last_inference = s->last_inference_ms;
        ms[i].inference_count = s->inference_count;
        ms[i].execution_count = s->execution_count;
        ms[i].inference_stats = &is[i];
        ms[i].n_batch_stats = s->n_batch;
        ms[i].batch_stats = s->n_batch ? &bsp[bi] : NULL;
        for (size_t k = 0; k < s->n_batch; k++, bi++) {
            inference__infer_batch_statistics__init(&bs[bi]);
            bs[bi].batch_size = s->batch[k].batch_size;
            bs[bi].compute_input = duration(&d[di++], s->batch[k].compute_input);
            bs[bi].compute_infer = duration(&d[di++], s->batch[k].compute_infer);
            bs[bi].compute_output = duration(&d[di++], s->batch[k].compute_output);
            bsp[bi] = &bs[bi];
        }
        msp[i] = &ms[i];
    }
    Inference__ModelStatisticsResponse r = INFERENCE__MODEL_STATISTICS_RESPONSE__INIT;
    r.n_model_stats = n;
    r.model_stats = msp;
    st = pack_message(&r.base, buf, len);
done:
    free(ms);
    free(msp);
    free(is);
    free(d);
    free(bs);
    free(bsp);
    return st;
}

kl_grpc_code kl_oip_decode_repository_index(const uint8_t *buf, size_t len, int *ready_only) {
    *ready_only = 0;
    if (!buf && len > 0) return BAD("malformed RepositoryIndexRequest: no buffer");
    Inference__RepositoryIndexRequest *m =
        inference__repository_index_request__unpack(NULL, len, buf);
    if (!m) return BAD("malformed RepositoryIndexRequest (%zu bytes do not parse)", len);
    *ready_only = m->ready ? 1 : 0;
    inference__repository_index_request__free_unpacked(m, NULL);
    return KL_GRPC_OK;
}

kl_status kl_oip_encode_repository_index(const kl_oip_index_entry *e, size_t n, uint8_t **buf,
                                         size_t *len) {
    if (n && !e) return kl_seterr(KL_EINVAL, "encode RepositoryIndexResponse: bad arguments");
    Inference__RepositoryIndexResponse__ModelIndex *mi = calloc(n ? n : 1, sizeof *mi);
    Inference__RepositoryIndexResponse__ModelIndex **mip = calloc(n ? n : 1, sizeof *mip);
    if (!mi || !mip) {
        free(mi);
        free(mip);
        return kl_seterr(KL_ENOMEM, "encode RepositoryIndexResponse: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        inference__repository_index_response__model_index__init(&mi[i]);
        mi[i].name = (char *)(e[i].name ? e[i].name : "");
        mi[i].version = (char *)(e[i].version ? e[i].version : "");
        mi[i].state = (char *)(e[i].state ? e[i].state : "");
        mi[i].reason = (char *)(e[i].reason ? e[i].reason : "");
        mip[i] = &mi[i];
    }
    Inference__RepositoryIndexResponse r = INFERENCE__REPOSITORY_INDEX_RESPONSE__INIT;
    r.n_models = n;
    r.models = mip;
    kl_status st = pack_message(&r.base, buf, len);
    free(mi);
    free(mip);
    return st;
}

kl_grpc_code kl_oip_decode_repository_model(const uint8_t *buf, size_t len, char **name) {
    *name = NULL;
    if (!buf && len > 0) return BAD("malformed repository request: no buffer");
    /* RepositoryModelLoadRequest and RepositoryModelUnloadRequest share this layout. */
    Inference__RepositoryModelLoadRequest *m =
        inference__repository_model_load_request__unpack(NULL, len, buf);
    if (!m) return BAD("malformed repository request (%zu bytes do not parse)", len);
    kl_grpc_code c = KL_GRPC_OK;
    if (!m->model_name || !*m->model_name) {
        c = BAD("repository request names no model (model_name is empty)");
    } else if (!(*name = strdup(m->model_name))) {
        kl_seterr(KL_ENOMEM, "out of memory");
        c = KL_GRPC_RESOURCE_EXHAUSTED;
    }
    inference__repository_model_load_request__free_unpacked(m, NULL);
    return c;
}
