/* oip_json_encode.c — the REST/JSON form of the Open Inference Protocol, encoding side:
 * inference responses (with Triton's binary tensor data extension), server and model metadata,
 * model config, repository index, statistics and errors, plus the HTTP status for a gRPC code.
 * Responses are written by a small JSON writer that controls the number formats (FP32 values
 * round-trip with 9 significant digits). Decoding is in oip_json.c. See oip_json.h. */
#include "serving/oip_json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#define KL_OIP_JSON_BIG_ENDIAN 1
#endif

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
