/* optimizer.c — one fused update over the whole parameter buffer. */
#include "runtime/optimizer.h"

#include <string.h>

int64_t kl_optimizer_state_len(const kl_optimizer *o) {
    return o->spec.kind == KL_OPTIM_ADAMW ? 2 * o->n : o->n;
}

kl_status kl_optimizer_create(kl_optimizer *o, const kl_optim_spec *spec, const kl_mlp *m) {
    memset(o, 0, sizeof *o);
    o->spec = *spec;
    o->n = m->n_params;
    o->dev = m->dev;
    size_t bytes = (size_t)kl_optimizer_state_len(o) * sizeof(float);
    KL_TRY(kl_dev_malloc(o->dev, bytes, (void **)&o->state));
    return kl_dev_memset0(o->dev, o->state, bytes);
}

void kl_optimizer_free(kl_optimizer *o) {
    kl_dev_free(o->dev, o->state);
    memset(o, 0, sizeof *o);
}

kl_status kl_optimizer_step(kl_optimizer *o, kl_mlp *m, double lr, double *grad_norm) {
    if (m->n_params != o->n)
        return kl_seterr(KL_EINTERNAL, "optimizer covers %lld parameters, model has %lld",
                         (long long)o->n, (long long)m->n_params);
    const kl_optim_spec *s = &o->spec;
    if (s->clip_norm > 0 || grad_norm)
        m->ops->clip_grad_norm(m->ops_ctx, o->n, m->grads, (float)s->clip_norm,
                               &m->host_scalars[1]);
    if (grad_norm) {
        KL_TRY(m->ops->sync(m->ops_ctx));
        *grad_norm = m->host_scalars[1];
    }
    o->t++;
    if (s->kind == KL_OPTIM_ADAMW) {
        kl_adamw_coeffs c =
            kl_adamw_coeffs_for(lr, s->beta1, s->beta2, s->eps, s->weight_decay, o->t);
        m->ops->adamw(m->ops_ctx, o->n, m->params, m->grads, o->state, o->state + o->n, &c);
    } else {
        m->ops->sgd(m->ops_ctx, o->n, m->params, m->grads, o->state, (float)lr, (float)s->momentum,
                    (float)s->weight_decay, s->nesterov);
    }
    return KL_OK;
}
