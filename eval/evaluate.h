/* evaluate.h — evaluating a model bundle on labelled data: the entry point `kiln eval`, the
 * pipeline and the gates call.
 *
 * The data is given as kl_data_load_input reads it with the bundle's encoder: features encoded
 * but NOT transformed; kl_eval_bundle applies the bundle's own transform to a copy. So a champion
 * and a candidate with different preprocessing are each evaluated on the same file correctly.
 */
#ifndef KL_EVAL_EVALUATE_H
#define KL_EVAL_EVALUATE_H

#include "data/dataset.h"
#include "eval/metrics.h"
#include "runtime/bundle.h"
#include "runtime/device.h"

typedef struct {
    kl_device device;              /* where the model runs (zeroed: the CPU) */
    int batch_size;                /* rows per forward pass (0: 1024) */
    const kl_dataset *baseline_on; /* labels/targets the baseline is fitted on (usually the
                                    * training split); NULL: the test rows' own (optimistic) */
} kl_eval_opts;

/* Predicts test (encoded, untransformed; with labels or targets) with b and computes every metric
 * and the baseline into out (free with kl_eval_result_free). opts may be NULL. Errors: a feature
 * count that is not the bundle's, no labels, a label outside the bundle's classes. */
kl_status kl_eval_bundle(const kl_bundle *b, const kl_dataset *test, const kl_eval_opts *opts,
                         kl_eval_result *out);

/* Reads path (and labels_path: IDX labels, may be NULL; CSV carries its label column) with the
 * bundle's encoder, labels required, and evaluates it as kl_eval_bundle does. When digest is not
 * NULL it receives the data's digest (KL_DIGEST_LEN bytes, data/digest.h). */
kl_status kl_eval_file(const kl_bundle *b, const char *path, const char *labels_path,
                       const kl_eval_opts *opts, kl_eval_result *out, char *digest);

#endif
