/* tensor.c — allocation and views of float32 tensors. */
#include "runtime/tensor.h"

#include <stdio.h>
#include <string.h>

int64_t kl_shape_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    return n;
}

const char *kl_shape_str(int ndim, const int64_t *shape, char *buf, int cap) {
    int off = snprintf(buf, (size_t)cap, "[");
    for (int i = 0; i < ndim && off < cap; i++)
        off += snprintf(buf + off, (size_t)(cap - off), i ? ",%lld" : "%lld", (long long)shape[i]);
    if (off < cap) snprintf(buf + off, (size_t)(cap - off), "]");
    return buf;
}

static kl_status set_shape(kl_tensor *t, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > KL_MAX_DIMS)
        return kl_seterr(KL_EINVAL, "tensor rank %d outside 0..%d", ndim, KL_MAX_DIMS);
    t->ndim = ndim;
    for (int i = 0; i < KL_MAX_DIMS; i++)
        t->shape[i] = i < ndim ? shape[i] : 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) return kl_seterr(KL_EINVAL, "tensor dimension %d is negative", i);
    t->numel = kl_shape_numel(ndim, shape);
    return KL_OK;
}

kl_status kl_tensor_alloc(kl_tensor *t, kl_device dev, int ndim, const int64_t *shape) {
    memset(t, 0, sizeof *t);
    KL_TRY(set_shape(t, ndim, shape));
    void *p = NULL;
    KL_TRY(kl_dev_malloc(dev, (size_t)t->numel * sizeof(float), &p));
    t->data = p;
    t->dev = dev;
    t->owns = 1;
    return KL_OK;
}

kl_status kl_tensor_zeros(kl_tensor *t, kl_device dev, int ndim, const int64_t *shape) {
    KL_TRY(kl_tensor_alloc(t, dev, ndim, shape));
    return kl_dev_memset0(dev, t->data, (size_t)t->numel * sizeof(float));
}

kl_tensor kl_tensor_view(float *data, kl_device dev, int ndim, const int64_t *shape) {
    kl_tensor t;
    memset(&t, 0, sizeof t);
    if (set_shape(&t, ndim, shape) != KL_OK) return t;
    t.data = data;
    t.dev = dev;
    return t;
}

void kl_tensor_free(kl_tensor *t) {
    if (t->owns) kl_dev_free(t->dev, t->data);
    memset(t, 0, sizeof *t);
}
