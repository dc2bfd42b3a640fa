/* optimizer.h — AdamW and SGD with momentum over a model's single parameter buffer.
 *
 * State (AdamW's two moments, SGD's momentum buffer) lives in one device allocation beside the
 * parameters, so one op launch updates the whole model. */
#ifndef KL_OPTIMIZER_H
#define KL_OPTIMIZER_H

#include <stdint.h>

#include "runtime/model.h"

typedef enum {
    KL_OPTIM_ADAMW = 0,
    KL_OPTIM_SGD = 1,
} kl_optim_kind;

typedef struct {
    kl_optim_kind kind;  /* which update rule */
    double beta1, beta2; /* AdamW moment decays */
    double eps;          /* AdamW denominator epsilon */
    double momentum;     /* SGD momentum */
    int nesterov;        /* SGD Nesterov variant */
    double weight_decay; /* decoupled (AdamW) or L2 added to the gradient (SGD) */
    double clip_norm;    /* global gradient-norm limit; 0 = off */
} kl_optim_spec;

typedef struct {
    kl_optim_spec spec; /* hyper-parameters */
    int64_t n;          /* parameters covered */
    int64_t t;          /* updates applied so far */
    float *state;       /* [2n] AdamW (m then v) or [n] SGD, on the model's device, owned */
    kl_device dev;      /* where state lives */
} kl_optimizer;

/* Allocates zeroed state for m's parameters. */
kl_status kl_optimizer_create(kl_optimizer *o, const kl_optim_spec *spec, const kl_mlp *m);
void kl_optimizer_free(kl_optimizer *o);

/* Number of floats of state (for checkpoints). */
int64_t kl_optimizer_state_len(const kl_optimizer *o);

/* Clips m->grads on the device (if clip_norm > 0) and applies one update at learning rate lr.
 * With grad_norm != NULL it waits and returns the norm before clipping; pass NULL inside a
 * captured step. */
kl_status kl_optimizer_step(kl_optimizer *o, kl_mlp *m, double lr, double *grad_norm);

#endif
