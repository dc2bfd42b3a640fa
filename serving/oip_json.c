/* oip_json.c — the REST/JSON form of the Open Inference Protocol, decoding side: inference
 * requests (with Triton's binary tensor data extension) and the optional bodies of repository
 * requests, parsed with cJSON. The encoding side (responses, metadata, config, index, statistics,
 * errors, and the JSON writer) is in oip_json_encode.c. See oip_json.h. */
#include "serving/oip_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h> /* cJSON_ParseWithLengthOpts and the tree walkers */

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#define KL_OIP_JSON_BIG_ENDIAN 1
#endif

/* Sets the thread's message and returns INVALID_ARGUMENT, the answer to most bad requests. */
#define BAD(...) (kl_seterr(KL_EINVAL, __VA_ARGS__), KL_GRPC_INVALID_ARGUMENT)

/* --- decoding an inference request ------------------------------------------------------------ */

/* Whether a JSON number is an integer in int64 range; stores it in *v. */
static int json_int(const cJSON *n, int64_t *v) {
    if (!cJSON_IsNumber(n)) return 0;
    double d = n->valuedouble;
    if (!(d == floor(d)) || d < -9223372036854775808.0 || d >= 9223372036854775808.0) return 0;
    *v = (int64_t)d;
    return 1;
}

/* Counts the numbers in a (nested) data array; 0 and *bad set to the flat index of the first
 * leaf that is not a number (or an array) when there is one. */
static int count_data(const cJSON *a, size_t *count, size_t *bad) {
    for (const cJSON *e = a->child; e; e = e->next) {
        if (cJSON_IsArray(e)) {
            if (!count_data(e, count, bad)) return 0;
        } else if (cJSON_IsNumber(e)) {
            (*count)++;
        } else {
            *bad = *count;
            return 0;
        }
    }
    return 1;
}

/* Copies the numbers of a (nested) data array into rows (the count already checked); 0 and *bad
 * set to the flat index of the first value outside FP32's range. */
static int copy_data(const cJSON *a, float *rows, size_t *i, size_t *bad) {
    for (const cJSON *e = a->child; e; e = e->next) {
        if (cJSON_IsArray(e)) {
            if (!copy_data(e, rows, i, bad)) return 0;
            continue;
        }
        double d = e->valuedouble;
        /* Beyond 2^128 - 2^103 a double rounds to an FP32 infinity. */
        if (!isfinite(d) || fabs(d) >= 3.4028235677973366e38) {
            *bad = *i;
            return 0;
        }
        rows[(*i)++] = (float)d;
    }
    return 1;
}

/* Writes "[d0,d1,...]" of a shape array into buf for messages. */
static void shape_text(const cJSON *shape, char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = '\0';
    int first = 1;
    for (const cJSON *e = shape ? shape->child : NULL; e && used + 24 < cap; e = e->next) {
        int64_t v = 0;
        json_int(e, &v);
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", first ? "" : ",", (long long)v);
        first = 0;
    }
}

/* Reads the binary-extension fields of an input's "parameters"; *size < 0 when absent. */
static kl_grpc_code input_parameters(const cJSON *t, const char *name, int64_t *size) {
    *size = -1;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(t, "parameters");
    if (!p) return KL_GRPC_OK;
    if (!cJSON_IsObject(p)) return BAD("input \"%s\": \"parameters\" must be an object", name);
    if (cJSON_GetObjectItemCaseSensitive(p, "shared_memory_region"))
        return BAD("input \"%s\": shared memory is not supported", name);
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(p, "binary_data_size");
    if (b && (!json_int(b, size) || *size < 0))
        return BAD("input \"%s\": binary_data_size must be a non-negative integer", name);
    return KL_GRPC_OK;
}

/* Checks the one input against sig and copies its rows (from "data" or from the binary section
 * bin[0..n_bin)) into out->rows. has_header: the request had Inference-Header-Content-Length. */
static kl_grpc_code read_input(const cJSON *root, const kl_oip_model_sig *sig, const char *bin,
                               size_t n_bin, int has_header, kl_oip_request *out) {
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(root, "inputs");
    if (inputs && !cJSON_IsArray(inputs)) return BAD("\"inputs\" must be an array");
    size_t n_inputs = inputs ? (size_t)cJSON_GetArraySize(inputs) : 0;
    if (n_inputs != 1) {
        if (sig->input_name)
            return BAD("request has %zu inputs, the model takes 1 (\"%s\")", n_inputs,
                       sig->input_name);
        return BAD("request has %zu inputs, the model takes 1", n_inputs);
    }
    const cJSON *t = inputs->child;
    if (!cJSON_IsObject(t)) return BAD("inputs[0] must be an object");
    const cJSON *jn = cJSON_GetObjectItemCaseSensitive(t, "name");
    if (jn && !cJSON_IsString(jn)) return BAD("inputs[0]: \"name\" must be a string");
    const char *name = jn ? jn->valuestring : "";
    if (sig->input_name && strcmp(name, sig->input_name) != 0)
        return BAD("unknown input \"%s\" (the model's input is \"%s\")", name, sig->input_name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(t, "datatype");
    if (jd && !cJSON_IsString(jd)) return BAD("input \"%s\": \"datatype\" must be a string", name);
    const char *dt = jd ? jd->valuestring : "";
    if (strcmp(dt, "FP32") != 0)
        return BAD("input \"%s\": datatype \"%s\", expected \"FP32\"", name, dt);
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
    int64_t dims[2] = {0, 0};
    size_t rank = 0;
    if (shape && !cJSON_IsArray(shape))
        return BAD("input \"%s\": \"shape\" must be an array of integers", name);
    for (const cJSON *e = shape ? shape->child : NULL; e; e = e->next, rank++) {
        int64_t v;
        if (!json_int(e, &v))
            return BAD("input \"%s\": \"shape\" must be an array of integers", name);
        if (rank < 2) dims[rank] = v;
    }
    if (rank != 2) {
        char text[128];
        shape_text(shape, text, sizeof text);
        return BAD("input \"%s\": shape [%s] has rank %zu, expected [batch, %lld]", name, text,
                   rank, (long long)sig->n_features);
    }
    int64_t batch = dims[0], feats = dims[1];
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
    size_t count = (size_t)batch * (size_t)feats;

    int64_t bin_size;
    kl_grpc_code c = input_parameters(t, name, &bin_size);
    if (c != KL_GRPC_OK) return c;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(t, "data");
    if (data && bin_size >= 0)
        return BAD("input \"%s\": both \"data\" and parameters.binary_data_size set", name);
    if (!data && bin_size < 0)
        return BAD("input \"%s\": no data (neither \"data\" nor parameters.binary_data_size)",
                   name);
    size_t used_bin = 0;
    float *rows = NULL;
    if (bin_size >= 0) {
        if (!has_header)
            return BAD("input \"%s\": binary_data_size given but the request has no "
                       "Inference-Header-Content-Length header",
                       name);
        if ((uint64_t)bin_size != count * sizeof(float))
            return BAD("input \"%s\": binary_data_size %lld bytes, shape [%lld,%lld] FP32 needs "
                       "%zu",
                       name, (long long)bin_size, (long long)batch, (long long)feats,
                       count * sizeof(float));
        if ((uint64_t)bin_size > n_bin)
            return BAD("input \"%s\": binary_data_size %lld but only %zu bytes follow the JSON "
                       "header",
                       name, (long long)bin_size, n_bin);
        rows = malloc(count * sizeof *rows);
        if (!rows) goto oom;
#ifdef KL_OIP_JSON_BIG_ENDIAN
        for (size_t i = 0; i < count; i++) {
            const uint8_t *b = (const uint8_t *)bin + 4 * i;
            uint32_t u =
                (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
            memcpy(&rows[i], &u, sizeof u);
        }
#else
        memcpy(rows, bin, count * sizeof *rows);
#endif
        used_bin = (size_t)bin_size;
    } else {
        if (!cJSON_IsArray(data)) return BAD("input \"%s\": \"data\" must be an array", name);
        size_t n = 0, bad = 0;
        if (!count_data(data, &n, &bad))
            return BAD("input \"%s\": data[%zu] is not a number", name, bad);
        if (n != count)
            return BAD("input \"%s\": \"data\" holds %zu values, shape [%lld,%lld] needs %zu", name,
                       n, (long long)batch, (long long)feats, count);
        rows = malloc(count * sizeof *rows);
        if (!rows) goto oom;
        size_t i = 0;
        if (!copy_data(data, rows, &i, &bad)) {
            free(rows);
            return BAD("input \"%s\": data[%zu] is out of FP32 range", name, bad);
        }
    }
    if (used_bin != n_bin) {
        free(rows);
        return BAD("%zu bytes of binary data follow the JSON header, the inputs use %zu", n_bin,
                   used_bin);
    }
    out->rows = rows;
    out->batch = batch;
    out->n_features = feats;
    return KL_GRPC_OK;
oom:
    kl_seterr(KL_ENOMEM, "input \"%s\": %zu floats: out of memory", name, count);
    return KL_GRPC_RESOURCE_EXHAUSTED;
}

/* Checks the requested outputs, records their order and whether each goes back binary. */
static kl_grpc_code read_outputs(const cJSON *root, int default_binary, kl_oip_request *out,
                                 kl_oip_json_format *fmt) {
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(root, "outputs");
    if (outs && !cJSON_IsArray(outs)) return BAD("\"outputs\" must be an array");
    size_t n = outs ? (size_t)cJSON_GetArraySize(outs) : 0;
    for (int o = 0; o < KL_OIP_N_OUTPUTS; o++)
        fmt->binary[o] = default_binary;
    if (n == 0) {
        out->n_outputs = KL_OIP_N_OUTPUTS;
        out->outputs[0] = KL_OIP_OUT_PROBABILITIES;
        out->outputs[1] = KL_OIP_OUT_CLASS;
        return KL_GRPC_OK;
    }
    if (n > KL_OIP_N_OUTPUTS)
        return BAD("%zu outputs requested, the model has %d (\"probabilities\", \"class\")", n,
                   KL_OIP_N_OUTPUTS);
    size_t i = 0;
    for (const cJSON *e = outs->child; e; e = e->next, i++) {
        if (!cJSON_IsObject(e)) return BAD("outputs[%zu] must be an object", i);
        const cJSON *jn = cJSON_GetObjectItemCaseSensitive(e, "name");
        if (jn && !cJSON_IsString(jn)) return BAD("outputs[%zu]: \"name\" must be a string", i);
        const char *name = jn ? jn->valuestring : "";
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
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(e, "parameters");
        if (p && !cJSON_IsObject(p))
            return BAD("output \"%s\": \"parameters\" must be an object", name);
        const cJSON *b = p ? cJSON_GetObjectItemCaseSensitive(p, "binary_data") : NULL;
        if (b && !cJSON_IsBool(b))
            return BAD("output \"%s\": parameter \"binary_data\" must be a boolean", name);
        if (b) fmt->binary[o] = cJSON_IsTrue(b);
        const cJSON *cls = p ? cJSON_GetObjectItemCaseSensitive(p, "classification") : NULL;
        if (cls && !(cJSON_IsNumber(cls) && cls->valuedouble == 0))
            return BAD("output \"%s\": the classification extension is not supported", name);
        if (p && cJSON_GetObjectItemCaseSensitive(p, "shared_memory_region"))
            return BAD("output \"%s\": shared memory is not supported", name);
        out->outputs[out->n_outputs++] = o;
    }
    return KL_GRPC_OK;
}

/* Reads "labels" (or "label"): an integer for a one-row request, an array of integers (one per
 * row), or a string "3,7". */
static kl_grpc_code read_labels(const char *key, const cJSON *e, kl_oip_request *out) {
    if (out->labels) return BAD("parameters \"label\" and \"labels\" both given");
    if (cJSON_IsString(e))
        return kl_oip_parse_labels(key, e->valuestring, out->batch, &out->labels);
    int64_t v = 0;
    if (cJSON_IsNumber(e)) {
        if (out->batch != 1)
            return BAD("parameter \"%s\": one label for %lld rows (give an array, one per row)",
                       key, (long long)out->batch);
        if (!json_int(e, &v) || v < 0)
            return BAD("parameter \"%s\": expected a class number (an integer >= 0)", key);
    } else if (!cJSON_IsArray(e)) {
        return BAD("parameter \"%s\": expected an integer or an array of integers", key);
    } else if (cJSON_GetArraySize(e) != out->batch) {
        return BAD("parameter \"%s\": %d labels for %lld rows (one per row)", key,
                   cJSON_GetArraySize(e), (long long)out->batch);
    }
    if (!(out->labels = malloc((size_t)out->batch * sizeof *out->labels))) {
        kl_seterr(KL_ENOMEM, "out of memory");
        return KL_GRPC_RESOURCE_EXHAUSTED;
    }
    if (cJSON_IsNumber(e)) {
        out->labels[0] = v;
        return KL_GRPC_OK;
    }
    int64_t i = 0;
    for (const cJSON *x = e->child; x; x = x->next, i++)
        if (!json_int(x, &out->labels[i]) || out->labels[i] < 0)
            return BAD("parameter \"%s\": item %lld is not a class number (an integer >= 0)", key,
                       (long long)i);
    return KL_GRPC_OK;
}

/* Reads "priority", "timeout", "labels" and "binary_data_output"; other parameters are ignored,
 * as Triton ignores custom parameters a model does not read. */
static kl_grpc_code read_parameters(const cJSON *root, kl_oip_request *out) {
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(root, "parameters");
    if (!ps) return KL_GRPC_OK;
    for (const cJSON *e = ps->child; e; e = e->next) {
        const char *key = e->string ? e->string : "";
        if (!strcmp(key, "labels") || !strcmp(key, "label")) {
            kl_grpc_code c = read_labels(key, e, out);
            if (c != KL_GRPC_OK) return c;
            continue;
        }
        int is_priority = strcmp(key, "priority") == 0;
        int is_timeout = strcmp(key, "timeout") == 0;
        if (strcmp(key, "binary_data_output") == 0 && !cJSON_IsBool(e))
            return BAD("parameter \"binary_data_output\": expected a boolean");
        if (!is_priority && !is_timeout) continue;
        int64_t v;
        if (!json_int(e, &v)) {
            if (cJSON_IsNumber(e) && e->valuedouble == floor(e->valuedouble))
                return BAD("parameter \"%s\": %g out of range", key, e->valuedouble);
            return BAD("parameter \"%s\": expected an integer", key);
        }
        if (v < 0) return BAD("parameter \"%s\": %lld must be >= 0", key, (long long)v);
        if (is_priority) {
            out->has_priority = 1;
            out->priority = (uint64_t)v;
        } else {
            out->timeout_us = v;
        }
    }
    return KL_GRPC_OK;
}

/* Parses the Inference-Header-Content-Length value: decimal digits, optional spaces around. */
static int parse_header_len(const char *s, size_t *v) {
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s < '0' || *s > '9') return 0;
    size_t n = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (n > ((size_t)-1 - 9) / 10) return 0;
        n = n * 10 + (size_t)(*s - '0');
    }
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s) return 0;
    *v = n;
    return 1;
}

kl_grpc_code kl_oip_json_decode_infer(const char *body, size_t len, const char *header_len,
                                      const char *name, const char *version,
                                      kl_oip_resolve_fn resolve, void *ctx, kl_oip_request *out,
                                      kl_oip_json_format *fmt) {
    memset(out, 0, sizeof *out);
    memset(fmt, 0, sizeof *fmt);
    if (!body && len > 0) return BAD("malformed inference request: no buffer");
    name = name ? name : "";
    version = version ? version : "";
    size_t json_len = len;
    if (header_len) {
        if (!parse_header_len(header_len, &json_len))
            return BAD("Inference-Header-Content-Length \"%.40s\" is not a byte count", header_len);
        if (json_len > len)
            return BAD("Inference-Header-Content-Length %zu exceeds the body's %zu bytes", json_len,
                       len);
    }
    if (json_len == 0) return BAD("empty inference request (expected a JSON object)");
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, json_len, &end, 0);
    if (root && end) {
        /* cJSON stops after the first value; only whitespace may follow it. */
        while (end < body + json_len &&
               (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t' || *end == '\0'))
            end++;
        if (end < body + json_len) {
            cJSON_Delete(root);
            return BAD("malformed JSON inference request: unexpected text at byte %zu",
                       (size_t)(end - body));
        }
    }
    if (!root) {
        /* On failure cJSON points end at the error (its global error pointer is not per thread). */
        size_t off = end && end >= body && end <= body + json_len ? (size_t)(end - body) : 0;
        return BAD("malformed JSON inference request near byte %zu of %zu", off, json_len);
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return BAD("the inference request must be a JSON object");
    }
    kl_oip_model_sig sig;
    kl_grpc_code c = resolve(ctx, name, version, &sig);
    if (c != KL_GRPC_OK) {
        kl_preferr(KL_ENOTFOUND, "model \"%s\"%s%s", name, *version ? " version " : "", version);
        cJSON_Delete(root);
        return c;
    }
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(root, "parameters");
    const cJSON *bdo =
        cJSON_IsObject(ps) ? cJSON_GetObjectItemCaseSensitive(ps, "binary_data_output") : NULL;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    c = read_input(root, &sig, body + json_len, len - json_len, header_len != NULL, out);
    if (c == KL_GRPC_OK) c = read_outputs(root, cJSON_IsTrue(bdo), out, fmt);
    if (c == KL_GRPC_OK && ps && !cJSON_IsObject(ps)) c = BAD("\"parameters\" must be an object");
    if (c == KL_GRPC_OK) c = read_parameters(root, out);
    if (c == KL_GRPC_OK && id && !cJSON_IsString(id)) c = BAD("\"id\" must be a string");
    if (c == KL_GRPC_OK) {
        out->model_name = strdup(name);
        out->model_version = strdup(version);
        out->id = strdup(id ? id->valuestring : "");
        if (!out->model_name || !out->model_version || !out->id) {
            kl_seterr(KL_ENOMEM, "out of memory");
            c = KL_GRPC_RESOURCE_EXHAUSTED;
        }
    }
    if (c != KL_GRPC_OK) {
        kl_preferr(KL_EINVAL, "model \"%s\"", name);
        kl_oip_request_free(out);
        memset(fmt, 0, sizeof *fmt);
    }
    cJSON_Delete(root);
    return c;
}

/* --- decoding repository requests ------------------------------------------------------------- */

static kl_grpc_code parse_optional_object(const char *body, size_t len, const char *what,
                                          cJSON **root) {
    *root = NULL;
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t'))
        i++;
    if (i == len) return KL_GRPC_OK;
    const char *end = NULL;
    cJSON *r = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    while (r && end && end < body + len &&
           (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t' || *end == '\0'))
        end++;
    if (!r || !cJSON_IsObject(r) || (end && end < body + len)) {
        cJSON_Delete(r);
        return BAD("%s request must be a JSON object", what);
    }
    *root = r;
    return KL_GRPC_OK;
}

kl_grpc_code kl_oip_json_decode_index_request(const char *body, size_t len, int *ready_only) {
    *ready_only = 0;
    cJSON *root;
    kl_grpc_code c = parse_optional_object(body, len, "repository index", &root);
    if (c != KL_GRPC_OK || !root) return c;
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "ready");
    if (r && !cJSON_IsBool(r))
        c = BAD("repository index request: \"ready\" must be a boolean");
    else if (r)
        *ready_only = cJSON_IsTrue(r);
    cJSON_Delete(root);
    return c;
}

kl_grpc_code kl_oip_json_decode_repository_request(const char *body, size_t len, int load) {
    const char *what = load ? "model load" : "model unload";
    cJSON *root;
    kl_grpc_code c = parse_optional_object(body, len, what, &root);
    if (c != KL_GRPC_OK || !root) return c;
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(root, "parameters");
    if (ps && !cJSON_IsObject(ps)) c = BAD("%s request: \"parameters\" must be an object", what);
    for (const cJSON *e = ps ? ps->child : NULL; c == KL_GRPC_OK && e && load; e = e->next)
        if (e->string && (!strcmp(e->string, "config") || !strncmp(e->string, "file:", 5)))
            c = BAD("model load: parameter \"%s\": loading a config or files sent with the "
                    "request is not supported (kiln loads what the repository holds)",
                    e->string);
    cJSON_Delete(root);
    return c;
}
