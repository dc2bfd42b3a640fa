/* activation.c — names of activations, shared by every backend and the config parser. */
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
