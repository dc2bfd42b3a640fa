/* checkpoint.h — everything needed to continue a run bit-for-bit: parameters, optimizer state,
 * the position in the data, early-stopping state and the best parameters so far.
 *
 * File layout (little-endian): "KILNCKPT", u32 version, u32 reserved, i64 n_params,
 * i64 state_len, i64 step, i64 epoch, i64 batch_in_epoch, i64 optimizer_t, f64 best_val_loss,
 * i64 bad_epochs, i64 best_epoch, i64 has_best, char arch[128], then params, state, best params
 * (if has_best), then the SHA-256 of everything before it. Written to a temporary file and
 * renamed, so a crash never leaves a half checkpoint. */
#ifndef KL_CHECKPOINT_H
#define KL_CHECKPOINT_H

#include <stdint.h>

#include "runtime/status.h"

typedef struct {
    int64_t n_params;       /* floats in params (and best) */
    int64_t state_len;      /* floats of optimizer state */
    int64_t step;           /* global steps done */
    int64_t epoch;          /* epoch in progress (0-based) */
    int64_t batch_in_epoch; /* batches of that epoch already done */
    int64_t optimizer_t;    /* updates applied by the optimizer */
    double best_val_loss;   /* best validation loss so far */
    int64_t bad_epochs;     /* epochs since the best */
    int64_t best_epoch;     /* epoch of the best */
    int has_best;           /* best holds parameters */
    char arch[128];         /* "784-512-256-10 relu classification": must match on resume */
    float *params;          /* [n_params] host */
    float *state;           /* [state_len] host */
    float *best;            /* [n_params] host, or NULL */
} kl_checkpoint;

/* Writes c to path atomically. */
kl_status kl_checkpoint_save(const char *path, const kl_checkpoint *c);

/* Reads and verifies (magic, version, sizes, digest) a checkpoint; arrays are malloc'd. */
kl_status kl_checkpoint_load(const char *path, kl_checkpoint *c);

/* Frees the arrays of a loaded checkpoint. */
void kl_checkpoint_free(kl_checkpoint *c);

#endif
