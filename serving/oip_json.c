/* oip_json.c — the REST/JSON form of the Open Inference Protocol, with Triton's binary tensor
 * data extension. Requests are parsed with cJSON; responses are written by a small JSON writer
 * that controls the number formats (FP32 values round-trip with 9 significant digits).
 * See oip_json.h. */
#include "serving/oip_json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h> /* cJSON_ParseWithLengthOpts and the tree walkers */

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#define KL_OIP_JSON_BIG_ENDIAN 1
#endif

/* Sets the thread's message and returns INVALID_ARGUMENT, the answer to most bad requests. */
#define BAD(...) (kl_seterr(KL_EINVAL, __VA_ARGS__), KL_GRPC_INVALID_ARGUMENT)

void kl_oip_json_body_free(kl_oip_json_body *b) {
    if (!b) return;
    free(b->data);
    memset(b, 0, sizeof *b);
}

int kl_oip_json_http_status(kl_grpc_code c) {
    switch (c) {
    case KL_GRPC_OK:
        return 200;
    case KL_GRPC_INVALID_ARGUMENT:
    case KL_GRPC_FAILED_PRECONDITION:
    case KL_GRPC_OUT_OF_RANGE:
        return 400;
    case KL_GRPC_NOT_FOUND:
        return 404;
    case KL_GRPC_ALREADY_EXISTS:
    case KL_GRPC_ABORTED:
        return 409;
    case KL_GRPC_RESOURCE_EXHAUSTED:
        return 429;
    case KL_GRPC_CANCELLED:
        return 499;
    case KL_GRPC_UNIMPLEMENTED:
        return 501;
    case KL_GRPC_UNAVAILABLE:
        return 503;
    case KL_GRPC_DEADLINE_EXCEEDED:
        return 504;
    default:
        return 500;
    }
}

/* --- a JSON writer ---------------------------------------------------------------------------- */

typedef struct {
    char *b;    /* the text (malloc'd) */
    size_t len; /* bytes used */
    size_t cap; /* bytes allocated */
    int oom;    /* an allocation failed; later writes do nothing */
} jw;

static void jw_put(jw *w, const void *s, size_t n) {
    if (w->oom) return;
    if (w->len + n + 1 > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (w->len + n + 1 > cap)
            cap *= 2;
        char *b = realloc(w->b, cap);
        if (!b) {
            w->oom = 1;
            return;
        }
        w->b = b;
        w->cap = cap;
    }
    memcpy(w->b + w->len, s, n);
    w->len += n;
    w->b[w->len] = '\0';
}

static void jw_raw(jw *w, const char *s) {
    jw_put(w, s, strlen(s));
}

static void jw_fmt(jw *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jw_fmt(jw *w, const char *fmt, ...) {
    char tmp[512]; /* every format in this file fits: a few numbers and fixed text */
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        w->oom = 1; /* a bug, not a request's fault: fail the encode rather than cut the text */
        return;
    }
    jw_put(w, tmp, (size_t)n);
}

/* The length of the valid UTF-8 sequence at s (1..4), or 0 when the bytes there are not one. */
static size_t utf8_seq(const unsigned char *s) {
    if (s[0] < 0x80) return 1;
    size_t n = s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 ? 2 : 0;
    if (n == 0 || (s[0] >= 0xF0 && n != 4)) return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (n == 3 && s[0] == 0xE0 && s[1] < 0xA0) return 0;  /* overlong */
    if (n == 3 && s[0] == 0xED && s[1] >= 0xA0) return 0; /* surrogate */
    if (n == 4 && s[0] == 0xF0 && s[1] < 0x90) return 0;  /* overlong */
    if (n == 4 && s[0] == 0xF4 && s[1] >= 0x90) return 0; /* above U+10FFFF */
    return n;
}

/* A JSON string: quotes, backslashes and control bytes escaped; bytes that are not UTF-8 (a
 * message quoting a client's garbage, one cut short) become U+FFFD so the body stays valid. */
static void jw_str(jw *w, const char *s) {
    jw_put(w, "\"", 1);
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    const unsigned char *run = p;
    while (*p) {
        const char *esc = NULL;
        char ubuf[8];
        size_t adv = 1;
        if (*p == '"')
            esc = "\\\"";
        else if (*p == '\\')
            esc = "\\\\";
        else if (*p == '\n')
            esc = "\\n";
        else if (*p == '\r')
            esc = "\\r";
        else if (*p == '\t')
            esc = "\\t";
        else if (*p < 0x20) {
            snprintf(ubuf, sizeof ubuf, "\\u%04x", *p);
            esc = ubuf;
        } else if ((adv = utf8_seq(p)) == 0) {
            esc = "\\ufffd";
            adv = 1;
        }
        if (esc) {
            jw_put(w, run, (size_t)(p - run));
            jw_raw(w, esc);
            run = p + adv;
        }
        p += adv;
    }
    jw_put(w, run, (size_t)(p - run));
    jw_put(w, "\"", 1);
}

/* "key": */
static void jw_key(jw *w, const char *k) {
    jw_str(w, k);
    jw_put(w, ":", 1);
}

static void jw_float(jw *w, float v) {
    if (!isfinite(v)) {
        jw_raw(w, "null"); /* JSON has no NaN or Inf */
        return;
    }
    jw_fmt(w, "%.9g", (double)v);
}

/* Hands the writer's text over as a body (all JSON). */
static kl_status jw_finish(jw *w, kl_oip_json_body *out, const char *what) {
    if (w->oom) {
        free(w->b);
        memset(out, 0, sizeof *out);
        return kl_seterr(KL_ENOMEM, "encode %s: out of memory", what);
    }
    out->data = w->b;
    out->len = w->len;
    out->json_len = w->len;
    return KL_OK;
}

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

/* Reads "priority", "timeout" and "binary_data_output"; other parameters are ignored, as
 * Triton ignores custom parameters a model does not read. */
static kl_grpc_code read_parameters(const cJSON *root, kl_oip_request *out) {
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(root, "parameters");
    if (!ps) return KL_GRPC_OK;
    for (const cJSON *e = ps->child; e; e = e->next) {
        const char *key = e->string ? e->string : "";
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

/* --- encoding responses ------------------------------------------------------------------------
 */

/* Appends v as 8 little-endian bytes. */
static void put_i64_le(jw *w, int64_t v) {
    uint8_t b[8];
    for (int k = 0; k < 8; k++)
        b[k] = (uint8_t)((uint64_t)v >> (8 * k));
    jw_put(w, b, 8);
}

kl_status kl_oip_json_encode_infer(const kl_oip_request *req, const kl_oip_json_format *fmt,
                                   const kl_infer_result *res, kl_oip_json_body *out) {
    memset(out, 0, sizeof *out);
    if (!req || !fmt || !res || !res->probs || res->n_classes < 1 || res->batch < 1 ||
        res->batch != req->batch || req->n_outputs < 1 || req->n_outputs > KL_OIP_N_OUTPUTS)
        return kl_seterr(KL_EINVAL, "encode inference response: bad arguments");
    size_t batch = (size_t)res->batch, nc = (size_t)res->n_classes;
    int64_t *cls_tmp = NULL;
    const int64_t *cls = res->classes;
    if (!cls) {
        cls_tmp = malloc(batch * sizeof *cls_tmp);
        if (!cls_tmp) return kl_seterr(KL_ENOMEM, "encode inference response: out of memory");
        for (size_t b = 0; b < batch; b++) {
            size_t best = 0;
            for (size_t k = 1; k < nc; k++)
                if (res->probs[b * nc + k] > res->probs[b * nc + best]) best = k;
            cls_tmp[b] = (int64_t)best;
        }
        cls = cls_tmp;
    }
    jw w = {0};
    jw_raw(&w, "{\"model_name\":");
    jw_str(&w, req->model_name);
    jw_raw(&w, ",\"model_version\":");
    jw_str(&w, res->version ? res->version : "");
    if (req->id && *req->id) {
        jw_raw(&w, ",\"id\":");
        jw_str(&w, req->id);
    }
    jw_raw(&w, ",\"outputs\":[");
    int any_binary = 0;
    for (int i = 0; i < req->n_outputs; i++) {
        kl_oip_output o = req->outputs[i];
        int is_probs = o == KL_OIP_OUT_PROBABILITIES;
        if (i) jw_raw(&w, ",");
        jw_raw(&w, "{\"name\":");
        jw_str(&w, kl_oip_output_name(o));
        if (is_probs)
            jw_fmt(&w, ",\"datatype\":\"FP32\",\"shape\":[%zu,%zu]", batch, nc);
        else
            jw_fmt(&w, ",\"datatype\":\"INT64\",\"shape\":[%zu]", batch);
        if (fmt->binary[o]) {
            any_binary = 1;
            jw_fmt(&w, ",\"parameters\":{\"binary_data_size\":%zu}}",
                   is_probs ? batch * nc * sizeof(float) : batch * sizeof(int64_t));
            continue;
        }
        jw_raw(&w, ",\"data\":[");
        if (is_probs) {
            for (size_t k = 0; k < batch * nc; k++) {
                if (k) jw_put(&w, ",", 1);
                jw_float(&w, res->probs[k]);
            }
        } else {
            for (size_t b = 0; b < batch; b++)
                jw_fmt(&w, "%s%lld", b ? "," : "", (long long)cls[b]);
        }
        jw_raw(&w, "]}");
    }
    jw_raw(&w, "]}");
    size_t json_len = w.len;
    for (int i = 0; any_binary && i < req->n_outputs; i++) {
        kl_oip_output o = req->outputs[i];
        if (!fmt->binary[o]) continue;
        if (o == KL_OIP_OUT_PROBABILITIES) {
#ifdef KL_OIP_JSON_BIG_ENDIAN
            for (size_t k = 0; k < batch * nc; k++) {
                uint32_t u;
                uint8_t b[4];
                memcpy(&u, &res->probs[k], 4);
                for (int j = 0; j < 4; j++)
                    b[j] = (uint8_t)(u >> (8 * j));
                jw_put(&w, b, 4);
            }
#else
            jw_put(&w, res->probs, batch * nc * sizeof(float));
#endif
        } else {
            for (size_t b = 0; b < batch; b++)
                put_i64_le(&w, cls[b]);
        }
    }
    free(cls_tmp);
    kl_status s = jw_finish(&w, out, "inference response");
    if (s == KL_OK) out->json_len = json_len;
    return s;
}

kl_status kl_oip_json_encode_error(const char *message, kl_oip_json_body *out) {
    jw w = {0};
    jw_raw(&w, "{\"error\":");
    jw_str(&w, message ? message : "");
    jw_raw(&w, "}");
    return jw_finish(&w, out, "error");
}

kl_status kl_oip_json_encode_bool(const char *key, int value, kl_oip_json_body *out) {
    jw w = {0};
    jw_raw(&w, "{");
    jw_key(&w, key ? key : "ready");
    jw_raw(&w, value ? "true}" : "false}");
    return jw_finish(&w, out, "bool response");
}

kl_status kl_oip_json_encode_server_metadata(const char *name, const char *version,
                                             const char *const *extensions, size_t n_extensions,
                                             kl_oip_json_body *out) {
    if (n_extensions && !extensions)
        return kl_seterr(KL_EINVAL, "encode server metadata: bad arguments");
    jw w = {0};
    jw_raw(&w, "{\"name\":");
    jw_str(&w, name);
    jw_raw(&w, ",\"version\":");
    jw_str(&w, version);
    jw_raw(&w, ",\"extensions\":[");
    for (size_t i = 0; i < n_extensions; i++) {
        if (i) jw_raw(&w, ",");
        jw_str(&w, extensions[i]);
    }
    jw_raw(&w, "]}");
    return jw_finish(&w, out, "server metadata");
}

/* {"name":..,"datatype":..,"shape":[-1(,d)]} */
static void tensor_meta(jw *w, const char *name, const char *dt, int64_t dim) {
    jw_raw(w, "{\"name\":");
    jw_str(w, name);
    jw_fmt(w, ",\"datatype\":\"%s\",\"shape\":[-1", dt);
    if (dim >= 0) jw_fmt(w, ",%lld", (long long)dim);
    jw_raw(w, "]}");
}

kl_status kl_oip_json_encode_model_metadata(const kl_model_info *info, const char *platform,
                                            kl_oip_json_body *out) {
    if (!info || !info->name || (info->n_versions && !info->versions))
        return kl_seterr(KL_EINVAL, "encode model metadata: bad arguments");
    jw w = {0};
    jw_raw(&w, "{\"name\":");
    jw_str(&w, info->name);
    jw_raw(&w, ",\"versions\":[");
    for (size_t i = 0; i < info->n_versions; i++) {
        if (i) jw_raw(&w, ",");
        jw_str(&w, info->versions[i]);
    }
    jw_raw(&w, "],\"platform\":");
    jw_str(&w, platform ? platform : "kiln");
    jw_raw(&w, ",\"inputs\":[");
    tensor_meta(&w, info->sig.input_name ? info->sig.input_name : "input", "FP32",
                info->sig.n_features);
    jw_raw(&w, "],\"outputs\":[");
    tensor_meta(&w, "probabilities", "FP32", info->sig.n_classes);
    jw_raw(&w, ",");
    tensor_meta(&w, "class", "INT64", -1);
    jw_raw(&w, "]}");
    return jw_finish(&w, out, "model metadata");
}

kl_status kl_oip_json_encode_model_config(const kl_oip_model_config *cfg, kl_oip_json_body *out) {
    if (!cfg || !cfg->name || cfg->sig.max_batch < 1 || (cfg->n_preferred && !cfg->preferred))
        return kl_seterr(KL_EINVAL, "encode model config: bad arguments");
    jw w = {0};
    jw_raw(&w, "{\"name\":");
    jw_str(&w, cfg->name);
    jw_raw(&w, ",\"platform\":");
    jw_str(&w, cfg->platform ? cfg->platform : "");
    jw_raw(&w, ",\"backend\":");
    jw_str(&w, cfg->backend ? cfg->backend : "");
    jw_fmt(&w, ",\"max_batch_size\":%lld", (long long)cfg->sig.max_batch);
    jw_raw(&w, ",\"input\":[{\"name\":");
    jw_str(&w, cfg->sig.input_name ? cfg->sig.input_name : "input");
    jw_fmt(&w,
           ",\"data_type\":\"TYPE_FP32\",\"format\":\"FORMAT_NONE\",\"dims\":[%lld],"
           "\"is_shape_tensor\":false,\"allow_ragged_batch\":false,\"optional\":false}]",
           (long long)cfg->sig.n_features);
    jw_fmt(&w,
           ",\"output\":[{\"name\":\"probabilities\",\"data_type\":\"TYPE_FP32\",\"dims\":[%lld],"
           "\"label_filename\":\"\",\"is_shape_tensor\":false}",
           (long long)cfg->sig.n_classes);
    /* [1] reshaped to []: the model answers [batch] (Triton refuses empty dims). */
    jw_raw(&w, ",{\"name\":\"class\",\"data_type\":\"TYPE_INT64\",\"dims\":[1],"
               "\"reshape\":{\"shape\":[]},\"label_filename\":\"\",\"is_shape_tensor\":false}]");
    if (cfg->dynamic_batching) {
        jw_raw(&w, ",\"dynamic_batching\":{\"preferred_batch_size\":[");
        for (size_t i = 0; i < cfg->n_preferred; i++)
            jw_fmt(&w, "%s%d", i ? "," : "", (int)cfg->preferred[i]);
        jw_fmt(&w, "],\"max_queue_delay_microseconds\":%llu",
               (unsigned long long)cfg->max_queue_delay_us);
        jw_fmt(&w, ",\"preserve_ordering\":false,\"priority_levels\":%llu",
               (unsigned long long)cfg->priority_levels);
        jw_fmt(&w,
               ",\"default_queue_policy\":{\"timeout_action\":\"REJECT\","
               "\"default_timeout_microseconds\":%llu,\"allow_timeout_override\":true,"
               "\"max_queue_size\":%lu}}",
               (unsigned long long)cfg->default_timeout_us, (unsigned long)cfg->max_queue_size);
    }
    jw_raw(&w, ",\"instance_group\":[{\"name\":");
    jw_str(&w, cfg->name);
    jw_fmt(&w, ",\"kind\":\"%s\",\"count\":%d}]", cfg->on_gpu ? "KIND_GPU" : "KIND_CPU",
           cfg->instance_count > 0 ? (int)cfg->instance_count : 1);
    jw_raw(&w, "}");
    return jw_finish(&w, out, "model config");
}

/* Parses an optional JSON object body (empty or all whitespace: *root NULL). */
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

kl_status kl_oip_json_encode_repository_index(const kl_repo_entry *e, size_t n,
                                              kl_oip_json_body *out) {
    if (n && !e) return kl_seterr(KL_EINVAL, "encode repository index: bad arguments");
    jw w = {0};
    jw_raw(&w, "[");
    for (size_t i = 0; i < n; i++) {
        jw_raw(&w, i ? ",{\"name\":" : "{\"name\":");
        jw_str(&w, e[i].name);
        if (e[i].version[0]) {
            jw_raw(&w, ",\"version\":");
            jw_str(&w, e[i].version);
        }
        jw_raw(&w, ",\"state\":");
        jw_str(&w, e[i].state);
        if (e[i].reason[0]) {
            jw_raw(&w, ",\"reason\":");
            jw_str(&w, e[i].reason);
        }
        jw_raw(&w, "}");
    }
    jw_raw(&w, "]");
    return jw_finish(&w, out, "repository index");
}

static void duration(jw *w, const char *key, const kl_stat_duration *d) {
    jw_fmt(w, "\"%s\":{\"count\":%llu,\"ns\":%llu}", key, (unsigned long long)d->count,
           (unsigned long long)d->ns);
}

kl_status kl_oip_json_encode_stats(const kl_model_stats *s, size_t n, kl_oip_json_body *out) {
    if (n && !s) return kl_seterr(KL_EINVAL, "encode statistics: bad arguments");
    static const kl_stat_duration zero = {0, 0};
    jw w = {0};
    jw_raw(&w, "{\"model_stats\":[");
    for (size_t i = 0; i < n; i++) {
        const kl_model_stats *m = &s[i];
        jw_raw(&w, i ? ",{\"name\":" : "{\"name\":");
        jw_str(&w, m->name);
        jw_raw(&w, ",\"version\":");
        jw_str(&w, m->version);
        jw_fmt(&w, ",\"last_inference\":%llu", (unsigned long long)m->last_inference_ms);
        jw_fmt(&w, ",\"inference_count\":%llu", (unsigned long long)m->inference_count);
        jw_fmt(&w, ",\"execution_count\":%llu", (unsigned long long)m->execution_count);
        jw_raw(&w, ",\"inference_stats\":{");
        duration(&w, "success", &m->success);
        jw_raw(&w, ",");
        duration(&w, "fail", &m->fail);
        jw_raw(&w, ",");
        duration(&w, "queue", &m->queue);
        jw_raw(&w, ",");
        duration(&w, "compute_input", &m->compute_input);
        jw_raw(&w, ",");
        duration(&w, "compute_infer", &m->compute_infer);
        jw_raw(&w, ",");
        duration(&w, "compute_output", &m->compute_output);
        jw_raw(&w, ",");
        duration(&w, "cache_hit", &zero);
        jw_raw(&w, ",");
        duration(&w, "cache_miss", &zero);
        jw_raw(&w, "},\"response_stats\":{},\"batch_stats\":[");
        for (size_t b = 0; b < m->n_batch_sizes && m->batch_sizes; b++) {
            const kl_batch_size_stats *bs = &m->batch_sizes[b];
            jw_fmt(&w, "%s{\"batch_size\":%llu,", b ? "," : "", (unsigned long long)bs->batch_size);
            duration(&w, "compute_input", &bs->compute_input);
            jw_raw(&w, ",");
            duration(&w, "compute_infer", &bs->compute_infer);
            jw_raw(&w, ",");
            duration(&w, "compute_output", &bs->compute_output);
            jw_raw(&w, "}");
        }
        jw_raw(&w, "],\"memory_usage\":[]}");
    }
    jw_raw(&w, "]}");
    return jw_finish(&w, out, "statistics");
}
