/* tensor.h — float32 row-major tensors on a device.
 *
 * A kl_tensor is a shape plus a pointer. It either owns its storage (kl_tensor_alloc, freed by
 * kl_tensor_free) or views storage owned elsewhere (kl_tensor_view), e.g. a parameter inside the
 * model's single contiguous parameter buffer.
 */
#ifndef KL_TENSOR_H
#define KL_TENSOR_H

#include <stdint.h>

#include "runtime/device.h"
#include "runtime/status.h"

#define KL_MAX_DIMS 4

typedef struct {
    float *data;                /* first element, on dev */
    int ndim;                   /* number of dimensions, 0..KL_MAX_DIMS */
    int64_t shape[KL_MAX_DIMS]; /* extent of each dimension */
    int64_t numel;              /* product of shape */
    kl_device dev;              /* where data lives */
    int owns;                   /* 1 if kl_tensor_free releases data */
} kl_tensor;

/* Allocates an uninitialised tensor of the given shape on dev. */
kl_status kl_tensor_alloc(kl_tensor *t, kl_device dev, int ndim, const int64_t *shape);

/* Allocates a zero-filled tensor. */
kl_status kl_tensor_zeros(kl_tensor *t, kl_device dev, int ndim, const int64_t *shape);

/* A non-owning view of data with the given shape. */
kl_tensor kl_tensor_view(float *data, kl_device dev, int ndim, const int64_t *shape);

/* Releases storage if owned, and resets t. Safe on a zeroed or already-freed tensor. */
void kl_tensor_free(kl_tensor *t);

/* Product of the first ndim extents of shape. */
int64_t kl_shape_numel(int ndim, const int64_t *shape);

/* Writes "[a,b,c]" into buf (at most cap bytes); returns buf. */
const char *kl_shape_str(int ndim, const int64_t *shape, char *buf, int cap);

#endif
