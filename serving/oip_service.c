/* oip_service.c — unary GRPCInferenceService methods over the model manager (see
 * oip_service.h). */
#include "serving/oip_service.h"

#include <stdlib.h>
#include <string.h>

/* Maps an encoder's status to the code to answer. */
static kl_grpc_code encoded(kl_status st) {
    return st == KL_OK ? KL_GRPC_OK : kl_grpc_code_from_status(st);
}

kl_grpc_code kl_oip_service_model_ready(kl_model_manager *m, const uint8_t *req, size_t len,
                                        uint8_t **resp, size_t *resp_len) {
    char *name = NULL, *version = NULL;
    kl_grpc_code c = kl_oip_decode_model_ref(req, len, &name, &version);
    if (c != KL_GRPC_OK) return c;
    int ready = kl_model_manager_ready(m, name, version);
    free(name);
    free(version);
    return encoded(kl_oip_encode_bool_response(ready, resp, resp_len));
}

/* Decodes a {name, version} request and fills *info; the code says why not. */
static kl_grpc_code lookup(kl_model_manager *m, const uint8_t *req, size_t len,
                           kl_model_info *info) {
    char *name = NULL, *version = NULL;
    memset(info, 0, sizeof *info);
    kl_grpc_code c = kl_oip_decode_model_ref(req, len, &name, &version);
    if (c != KL_GRPC_OK) return c;
    c = kl_model_manager_info(m, name, version, info);
    free(name);
    free(version);
    return c;
}

kl_grpc_code kl_oip_service_model_metadata(kl_model_manager *m, const uint8_t *req, size_t len,
                                           uint8_t **resp, size_t *resp_len) {
    kl_model_info info;
    kl_grpc_code c = lookup(m, req, len, &info);
    if (c != KL_GRPC_OK) return c;
    c = encoded(kl_oip_encode_model_metadata(info.name, (const char *const *)info.versions,
                                             info.n_versions, "kiln", &info.sig, resp, resp_len));
    kl_model_info_free(&info);
    return c;
}

void kl_oip_model_config_from_info(const kl_model_info *info, int32_t preferred[8],
                                   kl_oip_model_config *cfg) {
    const kl_batch_opts *b = &info->batch;
    size_t n_preferred = 0;
    for (int i = 0; i < b->n_preferred && i < 8; i++)
        preferred[n_preferred++] = b->preferred[i];
    memset(cfg, 0, sizeof *cfg);
    cfg->name = info->name;
    cfg->platform = "kiln";
    cfg->backend = "kiln";
    cfg->sig = info->sig;
    cfg->dynamic_batching = b->dynamic;
    cfg->preferred = n_preferred ? preferred : NULL;
    cfg->n_preferred = n_preferred;
    cfg->max_queue_delay_us = b->max_queue_delay_us;
    cfg->max_queue_size = b->max_queue_size;
    cfg->default_timeout_us = b->default_timeout_us;
    cfg->priority_levels = b->priority_levels;
    cfg->instance_count = b->instances > 0 ? b->instances : 1;
    cfg->on_gpu = info->on_gpu;
}

kl_grpc_code kl_oip_service_model_config(kl_model_manager *m, const uint8_t *req, size_t len,
                                         uint8_t **resp, size_t *resp_len) {
    kl_model_info info;
    kl_grpc_code c = lookup(m, req, len, &info);
    if (c != KL_GRPC_OK) return c;
    int32_t preferred[8];
    kl_oip_model_config cfg;
    kl_oip_model_config_from_info(&info, preferred, &cfg);
    c = encoded(kl_oip_encode_model_config(&cfg, resp, resp_len));
    kl_model_info_free(&info);
    return c;
}

static kl_oip_duration dur(kl_stat_duration d) {
    kl_oip_duration o = {d.count, d.ns};
    return o;
}

kl_grpc_code kl_oip_service_model_statistics(kl_model_manager *m, const uint8_t *req, size_t len,
                                             uint8_t **resp, size_t *resp_len) {
    char *name = NULL, *version = NULL;
    kl_grpc_code c = kl_oip_decode_model_ref(req, len, &name, &version);
    if (c != KL_GRPC_OK) return c;
    kl_model_stats *st = NULL;
    size_t n = 0;
    c = kl_model_manager_stats(m, name, version, &st, &n);
    free(name);
    free(version);
    if (c != KL_GRPC_OK) return c;
    size_t n_batch = 0;
    for (size_t i = 0; i < n; i++)
        n_batch += st[i].n_batch_sizes;
    kl_oip_model_stats *o = calloc(n ? n : 1, sizeof *o);
    kl_oip_batch_stats *bs = calloc(n_batch ? n_batch : 1, sizeof *bs);
    if (!o || !bs) {
        kl_seterr(KL_ENOMEM, "ModelStatistics: out of memory");
        c = KL_GRPC_RESOURCE_EXHAUSTED;
    } else {
        size_t bi = 0;
        for (size_t i = 0; i < n; i++) {
            const kl_model_stats *s = &st[i];
            o[i] = (kl_oip_model_stats){.name = s->name,
                                        .version = s->version,
                                        .last_inference_ms = s->last_inference_ms,
                                        .inference_count = s->inference_count,
                                        .execution_count = s->execution_count,
                                        .success = dur(s->success),
                                        .fail = dur(s->fail),
                                        .queue = dur(s->queue),
                                        .compute_input = dur(s->compute_input),
                                        .compute_infer = dur(s->compute_infer),
                                        .compute_output = dur(s->compute_output),
                                        .batch = bs + bi,
                                        .n_batch = s->n_batch_sizes};
            for (size_t k = 0; k < s->n_batch_sizes; k++, bi++) {
                const kl_batch_size_stats *b = &s->batch_sizes[k];
                bs[bi] = (kl_oip_batch_stats){b->batch_size, dur(b->compute_input),
                                              dur(b->compute_infer), dur(b->compute_output)};
            }
        }
        c = encoded(kl_oip_encode_model_statistics(o, n, resp, resp_len));
    }
    free(o);
    free(bs);
    kl_model_stats_free(st, n);
    return c;
}

kl_grpc_code kl_oip_service_repository_index(kl_model_manager *m, const uint8_t *req, size_t len,
                                             uint8_t **resp, size_t *resp_len) {
    int ready_only = 0;
    kl_grpc_code c = kl_oip_decode_repository_index(req, len, &ready_only);
    if (c != KL_GRPC_OK) return c;
    kl_repo_entry *e = NULL;
    size_t n = 0;
    kl_status st = kl_model_manager_index(m, ready_only, &e, &n);
    if (st != KL_OK) return kl_grpc_code_from_status(st);
    kl_oip_index_entry *o = calloc(n ? n : 1, sizeof *o);
    if (!o) {
        free(e);
        kl_seterr(KL_ENOMEM, "RepositoryIndex: out of memory");
        return KL_GRPC_RESOURCE_EXHAUSTED;
    }
    for (size_t i = 0; i < n; i++)
        o[i] = (kl_oip_index_entry){e[i].name, e[i].version, e[i].state, e[i].reason};
    c = encoded(kl_oip_encode_repository_index(o, n, resp, resp_len));
    free(o);
    free(e);
    return c;
}

/* Load or unload the model a repository request names; the response message is empty. */
static kl_grpc_code repository_op(kl_model_manager *m, const uint8_t *req, size_t len,
                                  uint8_t **resp, size_t *resp_len,
                                  kl_grpc_code (*op)(kl_model_manager *, const char *)) {
    char *name = NULL;
    kl_grpc_code c = kl_oip_decode_repository_model(req, len, &name);
    if (c != KL_GRPC_OK) return c;
    c = op(m, name);
    free(name);
    if (c != KL_GRPC_OK) return c;
    *resp = malloc(1);
    if (!*resp) {
        kl_seterr(KL_ENOMEM, "out of memory");
        return KL_GRPC_RESOURCE_EXHAUSTED;
    }
    *resp_len = 0; /* RepositoryModelLoadResponse {} / RepositoryModelUnloadResponse {} */
    return KL_GRPC_OK;
}

kl_grpc_code kl_oip_service_repository_load(kl_model_manager *m, const uint8_t *req, size_t len,
                                            uint8_t **resp, size_t *resp_len) {
    return repository_op(m, req, len, resp, resp_len, kl_model_manager_load);
}

kl_grpc_code kl_oip_service_repository_unload(kl_model_manager *m, const uint8_t *req, size_t len,
                                              uint8_t **resp, size_t *resp_len) {
    return repository_op(m, req, len, resp, resp_len, kl_model_manager_unload);
}

kl_grpc_code kl_oip_service_infer_response(const kl_oip_request *req, const kl_infer_result *res,
                                           uint8_t **resp, size_t *resp_len) {
    *resp = NULL;
    *resp_len = 0;
    if (res->code != KL_GRPC_OK) {
        kl_seterr(KL_EINVAL, "%s", res->message ? res->message : kl_grpc_code_name(res->code));
        return res->code;
    }
    kl_status st = kl_oip_encode_infer_response(req, res->version, res->probs, res->classes,
                                                res->n_classes, resp, resp_len);
    if (st != KL_OK) kl_preferr(st, "model \"%s\"", req->model_name ? req->model_name : "");
    return encoded(st);
}

kl_status kl_oip_service_stream_response(const kl_oip_request *req, const kl_infer_result *res,
                                         uint8_t **resp, size_t *resp_len) {
    uint8_t *infer = NULL;
    size_t infer_len = 0;
    kl_grpc_code c = kl_oip_service_infer_response(req, res, &infer, &infer_len);
    kl_status st;
    if (c == KL_GRPC_OK) {
        st = kl_oip_encode_stream_response(NULL, infer, infer_len, resp, resp_len);
    } else {
        const char *msg = kl_errmsg();
        st = kl_oip_encode_stream_response(*msg ? msg : kl_grpc_code_name(c), NULL, 0, resp,
                                           resp_len);
    }
    free(infer);
    return st;
}
