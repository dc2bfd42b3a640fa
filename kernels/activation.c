/* activation.c — names of activations and precisions, shared by every backend and the config
 * parser. */
#include <string.h>

#include "kernels/ops.h"

static const char *const act_names[KL_ACT_COUNT] = {"identity", "relu", "gelu", "tanh", "sigmoid"};

const char *kl_act_name(kl_act a) {
    if ((int)a < 0 || (int)a >= KL_ACT_COUNT) return "unknown";
    return act_names[a];
}

int kl_act_parse(const char *name, kl_act *out) {
    for (int i = 0; i < KL_ACT_COUNT; i++)
        if (name && strcmp(name, act_names[i]) == 0) {
            *out = (kl_act)i;
            return 0;
        }
    return -1;
}

static const char *const precision_names[] = {"fp32", "tf32", "bf16"};

const char *kl_precision_name(kl_precision p) {
    if ((int)p < 0 || (int)p > 2) return "unknown";
    return precision_names[p];
}

int kl_precision_parse(const char *name, kl_precision *out) {
    for (int i = 0; i < 3; i++)
        if (name && strcmp(name, precision_names[i]) == 0) {
            *out = (kl_precision)i;
            return 0;
        }
    return -1;
}
