/* model.c — MLP forward, loss and backward over the op table, with one parameter buffer. */
#include "runtime/model.h"

#include "kernels/cuda_api.h" /* kl_ops_cuda, kl_cuda_ctx_create/free */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

kl_status kl_mlp_parse_layers(const char *text, kl_mlp_spec *spec) {
    if (!text || !*text) return kl_seterr(KL_EINVAL, "empty layer spec (expected e.g. 784-512-10)");
    int count = 0;
    const char *p = text;
    while (*p) {
        char *end = NULL;
        long v = strtol(p, &end, 10);
        if (end == p || v <= 0 || v > (1L << 24))
            return kl_seterr(KL_EINVAL,
                             "layer spec \"%s\": expected positive sizes joined by '-', e.g. "
                             "784-512-10",
                             text);
        if (count > KL_MAX_LAYERS)
            return kl_seterr(KL_EINVAL, "layer spec \"%s\": more than %d layers", text,
                             KL_MAX_LAYERS);
        spec->dims[count++] = (int)v;
        if (*end == '-')
            p = end + 1;
        else if (*end == '\0')
            p = end;
        else
            return kl_seterr(KL_EINVAL, "layer spec \"%s\": unexpected '%c'", text, *end);
    }
    if (count < 2)
        return kl_seterr(KL_EINVAL, "layer spec \"%s\": needs at least inputs and outputs", text);
    spec->n_layers = count - 1;
    return KL_OK;
}

const char *kl_mlp_layers_str(const kl_mlp_spec *spec, char *buf, int cap) {
    int off = 0;
    buf[0] = '\0';
    for (int i = 0; i <= spec->n_layers && off < cap; i++)
        off += snprintf(buf + off, (size_t)(cap - off), i ? "-%d" : "%d", spec->dims[i]);
    return buf;
}

kl_status kl_mlp_spec_validate(const kl_mlp_spec *spec) {
    if (spec->n_layers < 1 || spec->n_layers > KL_MAX_LAYERS)
        return kl_seterr(KL_EINVAL, "layers: %d linear layers outside 1..%d", spec->n_layers,
                         KL_MAX_LAYERS);
    for (int i = 0; i <= spec->n_layers; i++)
        if (spec->dims[i] <= 0)
            return kl_seterr(KL_EINVAL, "layers: size %d at position %d must be positive",
                             spec->dims[i], i);
    if ((int)spec->act < 0 || (int)spec->act >= KL_ACT_COUNT)
        return kl_seterr(KL_EINVAL, "activation: unknown value %d", (int)spec->act);
    if (!(spec->dropout >= 0.0f && spec->dropout < 1.0f))
        return kl_seterr(KL_EINVAL, "dropout: %g outside [0,1)", (double)spec->dropout);
    if (spec->task != KL_TASK_CLASSIFICATION && spec->task != KL_TASK_REGRESSION)
        return kl_seterr(KL_EINVAL, "task: unknown value %d", (int)spec->task);
    if (spec->task == KL_TASK_CLASSIFICATION && spec->dims[spec->n_layers] < 2)
        return kl_seterr(KL_EINVAL, "layers: a classifier needs at least 2 outputs, got %d",
                         spec->dims[spec->n_layers]);
    return KL_OK;
}

int64_t kl_mlp_param_info(const kl_mlp_spec *s, int i, char *name, size_t name_cap, int *ndim,
                          int64_t shape[2]) {
    int layer = i / 2;
    int64_t off = 0;
    for (int l = 0; l < layer; l++)
        off += (int64_t)s->dims[l + 1] * s->dims[l] + s->dims[l + 1];
    int64_t in = s->dims[layer], out = s->dims[layer + 1];
    if (name) snprintf(name, name_cap, i % 2 ? "fc%d.bias" : "fc%d.weight", layer + 1);
    *ndim = i % 2 ? 1 : 2;
    shape[0] = out;
    shape[1] = i % 2 ? 0 : in;
    return i % 2 ? off + out * in : off;
}

int64_t kl_mlp_param_count(const kl_mlp_spec *s) {
    int64_t n = 0;
    for (int l = 0; l < s->n_layers; l++)
        n += (int64_t)s->dims[l + 1] * s->dims[l] + s->dims[l + 1];
    return n;
}

static int max_dim(const kl_mlp_spec *s) {
    int mx = 0;
    for (int i = 0; i <= s->n_layers; i++)
        mx = s->dims[i] > mx ? s->dims[i] : mx;
    return mx;
}

kl_status kl_mlp_create(kl_mlp *m, const kl_mlp_spec *spec, kl_device dev, int max_batch,
                        kl_precision precision) {
    memset(m, 0, sizeof *m);
    KL_TRY(kl_mlp_spec_validate(spec));
    if (max_batch <= 0) return kl_seterr(KL_EINVAL, "batch size %d must be positive", max_batch);
    m->spec = *spec;
    m->dev = dev;
    m->max_batch = max_batch;
    if (dev.kind == KL_DEV_CPU) {
        m->ops = kl_ops_cpu();
    } else {
        m->ops = kl_ops_cuda();
        if (!m->ops)
            return kl_seterr(KL_EUNSUPPORTED, "model on cuda:%d: this build has no CUDA backend",
                             dev.index);
        kl_status cs = kl_cuda_ctx_create(dev.index, precision, &m->ops_ctx);
        if (cs) return kl_preferr(cs, "model on cuda:%d", dev.index);
    }
    int L = spec->n_layers;
    m->n_params = kl_mlp_param_count(spec);
    kl_status s;
    if ((s = kl_dev_malloc(dev, (size_t)m->n_params * sizeof(float), (void **)&m->params)) ||
        (s = kl_dev_malloc(dev, (size_t)m->n_params * sizeof(float), (void **)&m->grads))) {
        kl_mlp_free(m);
        return kl_preferr(s, "allocating %lld parameters", (long long)m->n_params);
    }
    int64_t off = 0;
    for (int l = 0; l < L; l++) {
        m->weight[l] = m->params + off;
        m->dweight[l] = m->grads + off;
        off += (int64_t)spec->dims[l + 1] * spec->dims[l];
        m->bias[l] = m->params + off;
        m->dbias[l] = m->grads + off;
        off += spec->dims[l + 1];
    }
    /* Activation arena: z and y per hidden layer (y == z for the output), two scratch gradient
     * buffers, softmax probabilities and per-row losses. */
    int64_t B = max_batch, MD = max_dim(spec), C = spec->dims[L];
    int64_t arena = 0;
    for (int l = 0; l < L; l++)
        arena += B * spec->dims[l + 1] * (l < L - 1 ? 2 : 1);
    arena += 2 * B * MD + B * C + B;
    if ((s = kl_dev_malloc(dev, (size_t)arena * sizeof(float), (void **)&m->arena))) {
        kl_mlp_free(m);
        return kl_preferr(s, "allocating activations for batch %d", max_batch);
    }
    float *p = m->arena;
    for (int l = 0; l < L; l++) {
        m->z[l] = p;
        p += B * spec->dims[l + 1];
        if (l < L - 1) {
            m->y[l] = p;
            p += B * spec->dims[l + 1];
        } else {
            m->y[l] = m->z[l];
        }
    }
    m->dy = p;
    p += B * MD;
    m->dx = p;
    p += B * MD;
    m->probs = p;
    p += B * C;
    m->row_loss = p;
    if ((s = kl_host_alloc(dev, 4 * sizeof(float), (void **)&m->host_scalars))) {
        kl_mlp_free(m);
        return kl_preferr(s, "allocating the loss buffer");
    }
    return kl_dev_memset0(dev, m->grads, (size_t)m->n_params * sizeof(float));
}

void kl_mlp_free(kl_mlp *m) {
    kl_dev_free(m->dev, m->params);
    kl_dev_free(m->dev, m->grads);
    kl_dev_free(m->dev, m->arena);
    kl_dev_free(m->dev, m->input_staging);
    kl_host_free(m->dev, m->host_scalars);
    if (m->ops_ctx) kl_cuda_ctx_free(m->ops_ctx);
    memset(m, 0, sizeof *m);
}

kl_status kl_mlp_init_params(kl_mlp *m, uint64_t seed) {
    const kl_mlp_spec *s = &m->spec;
    float *host = malloc((size_t)m->n_params * sizeof(float));
    if (!host) return kl_seterr(KL_ENOMEM, "allocating %lld parameters", (long long)m->n_params);
    int64_t off = 0;
    for (int l = 0; l < s->n_layers; l++) {
        int fan_in = s->dims[l], fan_out = s->dims[l + 1];
        int hidden = l < s->n_layers - 1;
        int he = hidden && (s->act == KL_ACT_RELU || s->act == KL_ACT_GELU);
        /* He uniform keeps ReLU-family activations' variance; Xavier suits saturating and
         * linear outputs. */
        double bound = he ? sqrt(6.0 / fan_in) : sqrt(6.0 / (fan_in + fan_out));
        int64_t nw = (int64_t)fan_in * fan_out;
        for (int64_t i = 0; i < nw; i++) {
            float u = kl_rand_uniform(seed, (uint64_t)(off + i));
            host[off + i] = (float)((2.0 * u - 1.0) * bound);
        }
        off += nw;
        for (int j = 0; j < fan_out; j++)
            host[off + j] = 0.0f;
        off += fan_out;
    }
    kl_status st =
        kl_dev_copy_from_host(m->dev, m->params, host, (size_t)m->n_params * sizeof(float));
    free(host);
    return st;
}

/* Per-layer dropout seed, so layers draw independent masks from one step seed. */
static uint64_t layer_seed(uint64_t step_seed, int layer) {
    return step_seed * 0x100000001B3ull + (uint64_t)(layer + 1) * 0x9E3779B97F4A7C15ull;
}

kl_status kl_mlp_forward(kl_mlp *m, const float *x, int rows, int training, uint64_t dropout_seed) {
    if (rows <= 0 || rows > m->max_batch)
        return kl_seterr(KL_EINVAL, "forward: %d rows outside 1..%d", rows, m->max_batch);
    const kl_mlp_spec *s = &m->spec;
    const kl_ops *ops = m->ops;
    int L = s->n_layers;
    const float *a = x;
    for (int l = 0; l < L; l++) {
        int in = s->dims[l], out = s->dims[l + 1];
        int hidden = l < L - 1;
        ops->linear_forward(m->ops_ctx, rows, out, in, a, m->weight[l], m->bias[l],
                            hidden ? s->act : KL_ACT_IDENTITY, m->z[l], m->y[l]);
        if (hidden && training && s->dropout > 0.0f)
            ops->dropout_forward(m->ops_ctx, (int64_t)rows * out, s->dropout,
                                 layer_seed(dropout_seed, l), m->y[l], m->y[l]);
        a = m->y[l];
    }
    return KL_OK;
}

kl_status kl_mlp_loss(kl_mlp *m, int rows, const int32_t *labels, const float *targets,
                      float grad_scale, int want_grad, double *mean_loss) {
    const kl_mlp_spec *s = &m->spec;
    int C = s->dims[s->n_layers];
    float *out = m->y[s->n_layers - 1];
    if (s->task == KL_TASK_CLASSIFICATION) {
        if (!labels) return kl_seterr(KL_EINVAL, "loss: a classifier needs labels");
        m->ops->softmax_xent(m->ops_ctx, rows, C, out, labels, m->probs, m->row_loss,
                             want_grad ? m->dy : NULL, grad_scale);
    } else {
        if (!targets) return kl_seterr(KL_EINVAL, "loss: a regressor needs targets");
        m->ops->mse(m->ops_ctx, rows, C, out, targets, m->row_loss, want_grad ? m->dy : NULL,
                    grad_scale);
    }
    m->ops->mean_to_host(m->ops_ctx, rows, m->row_loss, &m->host_scalars[0]);
    if (mean_loss) return kl_mlp_sync_loss(m, mean_loss);
    return KL_OK;
}

kl_status kl_mlp_sync_loss(kl_mlp *m, double *mean_loss) {
    KL_TRY(m->ops->sync(m->ops_ctx));
    *mean_loss = m->host_scalars[0];
    return KL_OK;
}

kl_status kl_mlp_backward(kl_mlp *m, const float *x, int rows, uint64_t dropout_seed) {
    const kl_mlp_spec *s = &m->spec;
    const kl_ops *ops = m->ops;
    int L = s->n_layers;
    float *g = m->dy;     /* gradient w.r.t. the current layer's output */
    float *other = m->dx; /* where the gradient w.r.t. its input goes */
    for (int l = L - 1; l >= 0; l--) {
        int in = s->dims[l], out = s->dims[l + 1];
        const float *a = l == 0 ? x : m->y[l - 1];
        if (l < L - 1) {
            if (s->dropout > 0.0f)
                ops->dropout_backward(m->ops_ctx, (int64_t)rows * out, s->dropout,
                                      layer_seed(dropout_seed, l), g, g);
            ops->bias_act_backward(m->ops_ctx, rows, out, s->act, m->z[l], m->y[l], g, g,
                                   m->dbias[l]);
        } else {
            ops->colsum(m->ops_ctx, rows, out, g, m->dbias[l]);
        }
        /* dW = g^T a, shape [out, in] */
        ops->gemm(m->ops_ctx, 1, 0, out, in, rows, 1.0f, g, out, a, in, 0.0f, m->dweight[l], in);
        if (l > 0) {
            /* d input = g W, shape [rows, in] */
            ops->gemm(m->ops_ctx, 0, 0, rows, in, out, 1.0f, g, out, m->weight[l], in, 0.0f, other,
                      in);
            float *t = g;
            g = other;
            other = t;
        }
    }
    return KL_OK;
}

kl_status kl_mlp_predict(kl_mlp *m, const float *x_host, int64_t rows, float *out_host) {
    const kl_mlp_spec *s = &m->spec;
    int D = s->dims[0], C = s->dims[s->n_layers];
    if (m->dev.kind != KL_DEV_CPU && !m->input_staging)
        KL_TRY(kl_dev_malloc(m->dev, (size_t)m->max_batch * D * sizeof(float),
                             (void **)&m->input_staging));
    for (int64_t r0 = 0; r0 < rows; r0 += m->max_batch) {
        int n = (int)(rows - r0 < m->max_batch ? rows - r0 : m->max_batch);
        const float *xin = x_host + r0 * D;
        if (m->input_staging) {
            KL_TRY(kl_dev_copy_from_host(m->dev, m->input_staging, xin,
                                         (size_t)n * D * sizeof(float)));
            xin = m->input_staging;
        }
        KL_TRY(kl_mlp_forward(m, xin, n, 0, 0));
        const float *res = m->y[s->n_layers - 1];
        if (s->task == KL_TASK_CLASSIFICATION) {
            m->ops->softmax_xent(m->ops_ctx, n, C, res, NULL, m->probs, NULL, NULL, 0.0f);
            res = m->probs;
        }
        /* The backend's stream is not the one plain copies use: wait for it first. */
        KL_TRY(m->ops->sync(m->ops_ctx));
        KL_TRY(kl_dev_copy_to_host(m->dev, out_host + r0 * C, res, (size_t)n * C * sizeof(float)));
    }
    return KL_OK;
}
