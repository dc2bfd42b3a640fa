/* model_store.c — bundles loaded as CPU MLPs, answering Open Inference Protocol requests. */
#include "serving/model_store.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/bundle.h"     /* kl_bundle_load, kl_bundle_apply_transform */
#include "runtime/device.h"     /* kl_cpu, kl_dev_copy_from_host */
#include "runtime/model.h"      /* kl_mlp_create, kl_mlp_predict */
#include "tracking/model_uri.h" /* kl_model_uri_resolve for models:/ URIs */

/* Rows one request may carry; also the MLP's arena size and the output buffer's rows. */
#define MAX_BATCH 4096

typedef struct {
    char *name;           /* served name, owned */
    kl_bundle bundle;     /* weights, transform, labels */
    kl_mlp mlp;           /* the CPU model; its arena is why `mu` exists */
    kl_oip_model_sig sig; /* input and outputs as the protocol sees them */
    float *probs;         /* MAX_BATCH x classes output buffer, used under mu */
    pthread_mutex_t mu;   /* serialises inference on this model */
} served_model;

struct kl_model_store {
    served_model **models; /* loaded models, owned */
    size_t n;              /* entries in models */
};

kl_status kl_model_store_create(kl_model_store **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return kl_seterr(KL_ENOMEM, "model store: out of memory");
    return KL_OK;
}

static void model_free(served_model *m) {
    if (!m) return;
    kl_mlp_free(&m->mlp);
    kl_bundle_free(&m->bundle);
    free(m->probs);
    free(m->name);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void kl_model_store_free(kl_model_store *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n; i++)
        model_free(s->models[i]);
    free(s->models);
    free(s);
}

size_t kl_model_store_count(const kl_model_store *s) {
    return s->n;
}

static served_model *find(const kl_model_store *s, const char *name) {
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->models[i]->name, name)) return s->models[i];
    return NULL;
}

/* Loads the bundle at `where` into m (whose name is set). */
static kl_status model_load(served_model *m, const char *where) {
    char dir[4096]; /* the bundle; a models:/ URI is downloaded into the model cache */
    KL_TRY(kl_model_uri_resolve(where, dir, sizeof dir));
    KL_TRY(kl_bundle_load(dir, &m->bundle));
    const kl_bundle *b = &m->bundle;
    if (b->spec.task != KL_TASK_CLASSIFICATION)
        return kl_seterr(KL_EUNSUPPORTED, "%s: only classification models can be served", dir);
    int classes = b->spec.dims[b->spec.n_layers];
    KL_TRY(kl_mlp_create(&m->mlp, &b->spec, kl_cpu(), MAX_BATCH, KL_PREC_FP32));
    KL_TRY(kl_dev_copy_from_host(kl_cpu(), m->mlp.params, b->params,
                                 (size_t)b->n_params * sizeof(float)));
    m->probs = malloc((size_t)MAX_BATCH * (size_t)classes * sizeof(float));
    if (!m->probs) return kl_seterr(KL_ENOMEM, "output buffer: out of memory");
    m->sig.input_name = NULL; /* tritonclient users name their input freely */
    m->sig.n_features = b->n_features;
    m->sig.n_classes = classes;
    m->sig.max_batch = MAX_BATCH;
    return KL_OK;
}

kl_status kl_model_store_add(kl_model_store *s, const char *spec) {
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec || !eq[1])
        return kl_seterr(KL_EINVAL, "model \"%s\": expected NAME=BUNDLE_OR_models:/URI", spec);
    size_t nlen = (size_t)(eq - spec);
    served_model *m = calloc(1, sizeof *m);
    char *name = m ? malloc(nlen + 1) : NULL;
    if (!name) {
        free(m);
        return kl_seterr(KL_ENOMEM, "model \"%s\": out of memory", spec);
    }
    memcpy(name, spec, nlen);
    name[nlen] = 0;
    m->name = name;
    pthread_mutex_init(&m->mu, NULL);
    if (find(s, name)) {
        model_free(m);
        return kl_seterr(KL_EINVAL, "model \"%.*s\" is given twice", (int)nlen, spec);
    }
    kl_status st = model_load(m, eq + 1);
    if (st != KL_OK) {
        kl_preferr(st, "load model \"%s\"", name);
        model_free(m);
        return st;
    }
    served_model **grown = realloc(s->models, (s->n + 1) * sizeof *grown);
    if (!grown) {
        model_free(m);
        return kl_seterr(KL_ENOMEM, "load model \"%.*s\": out of memory", (int)nlen, spec);
    }
    s->models = grown;
    s->models[s->n++] = m;
    return KL_OK;
}

/* The model `name` at `version`, or NULL with kl_errmsg() set. */
static served_model *lookup(const kl_model_store *s, const char *name, const char *version) {
    served_model *m = find(s, name);
    if (!m) {
        kl_seterr(KL_ENOTFOUND, "unknown model \"%s\"", name);
        return NULL;
    }
    if (*version && strcmp(version, KL_MODEL_STORE_VERSION)) {
        kl_seterr(KL_ENOTFOUND, "model \"%s\" has no version \"%s\" (serving version %s)", name,
                  version, KL_MODEL_STORE_VERSION);
        return NULL;
    }
    return m;
}

kl_grpc_code kl_model_store_resolve(void *ctx, const char *name, const char *version,
                                    kl_oip_model_sig *sig) {
    served_model *m = lookup(ctx, name, version);
    if (!m) return KL_GRPC_NOT_FOUND;
    *sig = m->sig;
    return KL_GRPC_OK;
}

/* Maps a failed kl_status from an encoder to the code to answer. */
static kl_grpc_code encoded(kl_status st) {
    return st == KL_OK ? KL_GRPC_OK : kl_grpc_code_from_status(st);
}

kl_grpc_code kl_model_store_infer(kl_model_store *s, const uint8_t *req, size_t len, uint8_t **resp,
                                  size_t *resp_len) {
    *resp = NULL;
    *resp_len = 0;
    kl_oip_request r;
    kl_grpc_code c = kl_oip_decode_infer_resolve(req, len, kl_model_store_resolve, s, &r);
    if (c != KL_GRPC_OK) return c;
    served_model *m = find(s, r.model_name); /* resolved above, so present */
    /* The rows are the request's own copy, so the transform may work in place. */
    kl_bundle_apply_transform(&m->bundle, r.rows, r.batch);
    pthread_mutex_lock(&m->mu);
    kl_status st = kl_mlp_predict(&m->mlp, r.rows, r.batch, m->probs);
    if (st == KL_OK)
        st = kl_oip_encode_infer_response(&r, KL_MODEL_STORE_VERSION, m->probs, NULL,
                                          m->sig.n_classes, resp, resp_len);
    pthread_mutex_unlock(&m->mu);
    if (st != KL_OK) kl_preferr(st, "model \"%s\"", m->name);
    kl_oip_request_free(&r);
    return encoded(st);
}

kl_grpc_code kl_model_store_ready(kl_model_store *s, const uint8_t *req, size_t len, uint8_t **resp,
                                  size_t *resp_len) {
    char *name = NULL, *version = NULL;
    kl_grpc_code c = kl_oip_decode_model_ref(req, len, &name, &version);
    if (c != KL_GRPC_OK) return c;
    int ready = lookup(s, name, version) != NULL;
    kl_clearerr();
    free(name);
    free(version);
    return encoded(kl_oip_encode_bool_response(ready, resp, resp_len));
}

kl_grpc_code kl_model_store_metadata(kl_model_store *s, const uint8_t *req, size_t len,
                                     uint8_t **resp, size_t *resp_len) {
    char *name = NULL, *version = NULL;
    kl_grpc_code c = kl_oip_decode_model_ref(req, len, &name, &version);
    if (c != KL_GRPC_OK) return c;
    served_model *m = lookup(s, name, version);
    if (!m) {
        c = KL_GRPC_NOT_FOUND;
    } else {
        const char *versions[] = {KL_MODEL_STORE_VERSION};
        c = encoded(
            kl_oip_encode_model_metadata(m->name, versions, 1, "kiln", &m->sig, resp, resp_len));
    }
    free(name);
    free(version);
    return c;
}

kl_grpc_code kl_model_store_config(kl_model_store *s, const uint8_t *req, size_t len,
                                   uint8_t **resp, size_t *resp_len) {
    char *name = NULL, *version = NULL;
    kl_grpc_code c = kl_oip_decode_model_ref(req, len, &name, &version);
    if (c != KL_GRPC_OK) return c;
    served_model *m = lookup(s, name, version);
    if (!m) {
        c = KL_GRPC_NOT_FOUND;
    } else {
        kl_oip_model_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.name = m->name;
        cfg.platform = "kiln";
        cfg.backend = "kiln";
        cfg.sig = m->sig;
        cfg.instance_count = 1;
        c = encoded(kl_oip_encode_model_config(&cfg, resp, resp_len));
    }
    free(name);
    free(version);
    return c;
}
