/* model.h — a multilayer perceptron with its parameters in one contiguous buffer.
 *
 * Layer l maps dims[l] -> dims[l+1]: z = x @ W^T + b (W is [out,in], PyTorch's nn.Linear layout,
 * so safetensors and ONNX exports carry weights as they are), then the hidden activation and
 * dropout on every layer but the last. The last layer's output is the logits (classification)
 * or the prediction (regression).
 *
 * Parameters live in one buffer (params), gradients in another (grads), in this order:
 * fc1.weight, fc1.bias, fc2.weight, fc2.bias, ... — so one all-reduce or one optimizer launch
 * covers the whole model. Activations live in an arena sized for max_batch rows.
 */
#ifndef KL_MODEL_H
#define KL_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"
#include "runtime/device.h"
#include "runtime/status.h"

#define KL_MAX_LAYERS 16

typedef enum {
    KL_TASK_CLASSIFICATION = 0, /* softmax cross-entropy over dims[last] classes */
    KL_TASK_REGRESSION = 1,     /* mean squared error over dims[last] outputs */
} kl_task;

typedef struct {
    int n_layers;                /* number of linear layers (>= 1) */
    int dims[KL_MAX_LAYERS + 1]; /* dims[0] inputs, dims[n_layers] outputs */
    kl_act act;                  /* activation after each hidden layer */
    float dropout;               /* dropout probability after each hidden activation, [0,1) */
    kl_task task;                /* which loss the output feeds */
} kl_mlp_spec;

typedef struct {
    kl_mlp_spec spec;              /* the architecture */
    kl_device dev;                 /* where buffers live */
    const kl_ops *ops;             /* the backend's op table */
    void *ops_ctx;                 /* the backend's context (NULL on the CPU) */
    int64_t n_params;              /* total parameter count */
    float *params;                 /* [n_params] on dev, owned */
    float *grads;                  /* [n_params] on dev, owned */
    float *weight[KL_MAX_LAYERS];  /* views into params: W_l [dims[l+1], dims[l]] */
    float *bias[KL_MAX_LAYERS];    /* views into params: b_l [dims[l+1]] */
    float *dweight[KL_MAX_LAYERS]; /* views into grads */
    float *dbias[KL_MAX_LAYERS];   /* views into grads */
    int max_batch;                 /* rows the activation arena holds */
    float *arena;                  /* activations and their gradients, owned */
    float *z[KL_MAX_LAYERS];       /* pre-activations [max_batch, dims[l+1]] */
    float *y[KL_MAX_LAYERS];       /* post-activation (and dropout) outputs */
    float *dy;                     /* scratch gradient, [max_batch, max dim] */
    float *dx;                     /* scratch gradient, [max_batch, max dim] */
    float *probs;                  /* softmax output [max_batch, classes] */
    float *row_loss;               /* [max_batch] on dev */
    float *input_staging;          /* [max_batch, dims[0]] device copy of predict()'s input
                                      (off the CPU), reused by every call */
    float *host_scalars;           /* [0] mean loss, [1] gradient norm: written by the device
                                      asynchronously (kl_host_alloc), read after a sync */
} kl_mlp;

/* Parses "784-512-256-10" into spec->dims / n_layers (other fields untouched). */
kl_status kl_mlp_parse_layers(const char *text, kl_mlp_spec *spec);
/* Writes "784-512-256-10" into buf. */
const char *kl_mlp_layers_str(const kl_mlp_spec *spec, char *buf, int cap);
/* Checks every field of a spec; the message names the field. */
kl_status kl_mlp_spec_validate(const kl_mlp_spec *spec);

/* Creates a model with uninitialised parameters on dev, activations for max_batch rows, and
 * (off the CPU) the backend context for the given GEMM precision. */
kl_status kl_mlp_create(kl_mlp *m, const kl_mlp_spec *spec, kl_device dev, int max_batch,
                        kl_precision precision);
void kl_mlp_free(kl_mlp *m);

/* He (ReLU/GELU) or Xavier (tanh/sigmoid/identity) uniform initialisation from a seed; biases
 * zero. The same seed gives the same weights on every device. */
kl_status kl_mlp_init_params(kl_mlp *m, uint64_t seed);

/* Name and shape of parameter tensor i (0 .. 2*n_layers-1): "fc1.weight" [out,in], "fc1.bias"
 * [out] (shape[1] = 0 for a bias); returns the element offset into the parameter buffer. */
int64_t kl_mlp_param_info(const kl_mlp_spec *spec, int i, char *name, size_t name_cap, int *ndim,
                          int64_t shape[2]);

/* Total parameter count of a spec. */
int64_t kl_mlp_param_count(const kl_mlp_spec *spec);

/* Forward pass over rows x[rows, dims[0]] (device memory). training enables dropout with the
 * step's seed. The output is m->y[n_layers-1] (logits / predictions). */
kl_status kl_mlp_forward(kl_mlp *m, const float *x, int rows, int training, uint64_t dropout_seed);

/* Loss on the last forward: classification uses labels (device int32 [rows]), regression uses
 * targets (device float [rows, outputs]). Writes m->row_loss and, when backward will follow,
 * the output gradient scaled by grad_scale (usually 1/rows). The mean loss goes to
 * m->host_scalars[0]: with mean_loss != NULL this waits for it and returns it; with NULL it is
 * left in flight (a captured step reads it after the replay: kl_mlp_sync_loss). */
kl_status kl_mlp_loss(kl_mlp *m, int rows, const int32_t *labels, const float *targets,
                      float grad_scale, int want_grad, double *mean_loss);

/* Waits for queued work, reports any backend failure, and returns the last mean loss. */
kl_status kl_mlp_sync_loss(kl_mlp *m, double *mean_loss);

/* Backward pass after forward + loss(want_grad): fills m->grads. x is the forward's input. */
kl_status kl_mlp_backward(kl_mlp *m, const float *x, int rows, uint64_t dropout_seed);

/* Inference: output rows of probabilities (classification) or predictions (regression) into
 * host memory out[rows, outputs]; processes x (host) in chunks of max_batch. */
kl_status kl_mlp_predict(kl_mlp *m, const float *x_host, int64_t rows, float *out_host);

#endif
