/* evaluate.c — a bundle's predictions on labelled data, measured (evaluate.h). */
#include "eval/evaluate.h"

#include <stdlib.h>
#include <string.h>

#include "data/digest.h"  /* the evaluated data's digest for the report */
#include "data/prepare.h" /* kl_data_load_input: the bundle's encoder on a file */
#include "runtime/model.h"

/* Predicts x [n, d] (transformed) with b into out [n, outputs]. */
static kl_status predict(const kl_bundle *b, const float *x, int64_t n, const kl_eval_opts *o,
                         float *out) {
    kl_mlp m;
    memset(&m, 0, sizeof m);
    int batch = o && o->batch_size > 0 ? o->batch_size : 1024;
    if (batch > n) batch = (int)n;
    kl_device dev = o ? o->device : (kl_device){0};
    kl_status s = kl_mlp_create(&m, &b->spec, dev, batch, KL_PREC_FP32);
    if (s == KL_OK)
        s = kl_dev_copy_from_host(dev, m.params, b->params, (size_t)b->n_params * sizeof(float));
    if (s == KL_OK) s = kl_mlp_predict(&m, x, n, out);
    kl_mlp_free(&m);
    return s;
}

kl_status kl_eval_bundle(const kl_bundle *b, const kl_dataset *test, const kl_eval_opts *opts,
                         kl_eval_result *out) {
    memset(out, 0, sizeof *out);
    int cls = b->spec.task == KL_TASK_CLASSIFICATION;
    int outputs = b->spec.dims[b->spec.n_layers];
    if (test->n <= 0) return kl_seterr(KL_EINVAL, "evaluate: the data has no rows");
    if (test->d != b->n_features)
        return kl_seterr(KL_EINVAL, "evaluate: %lld features per row, the model expects %d",
                         (long long)test->d, b->n_features);
    if (cls && !test->y)
        return kl_seterr(KL_EINVAL, "evaluate: the data has no labels (a classification model "
                                    "is evaluated against class labels)");
    if (!cls && !test->t)
        return kl_seterr(KL_EINVAL, "evaluate: the data has no targets (a regression model is "
                                    "evaluated against target values)");
    if (!cls && outputs != 1)
        return kl_seterr(KL_EUNSUPPORTED, "evaluate: regression with %d outputs", outputs);
    size_t xbytes = (size_t)(test->n * test->d) * sizeof(float);
    float *x = malloc(xbytes ? xbytes : 1);
    float *pred = malloc((size_t)(test->n * outputs) * sizeof(float));
    if (!x || !pred) {
        free(x);
        free(pred);
        return kl_seterr(KL_ENOMEM, "evaluate: %lld rows", (long long)test->n);
    }
    memcpy(x, test->x, xbytes);
    kl_bundle_apply_transform(b, x, test->n);
    kl_status s = predict(b, x, test->n, opts, pred);
    free(x);
    if (s == KL_OK)
        s = cls ? kl_eval_classification(pred, test->n, outputs, test->y, b->label_names, out)
                : kl_eval_regression(pred, test->t, test->n, out);
    free(pred);
    const kl_dataset *ref = opts && opts->baseline_on ? opts->baseline_on : test;
    const char *src = ref == test ? "test" : "train";
    if (s == KL_OK) {
        if (cls && ref->y)
            s = kl_eval_set_baseline_labels(out, ref->y, ref->n, src);
        else if (!cls && ref->t)
            s = kl_eval_set_baseline_targets(out, ref->t, ref->n, src);
        if (s != KL_OK) kl_preferr(s, "baseline");
    }
    if (s != KL_OK) {
        kl_eval_result_free(out);
        return kl_preferr(s, "evaluate");
    }
    return KL_OK;
}

kl_status kl_eval_file(const kl_bundle *b, const char *path, const char *labels_path,
                       const kl_eval_opts *opts, kl_eval_result *out, char *digest) {
    memset(out, 0, sizeof *out);
    kl_dataset ds;
    memset(&ds, 0, sizeof ds);
    /* The reader's messages name the file already. */
    kl_status s = kl_data_load_input(b->encoder_json, path, labels_path, 1, &ds);
    if (s == KL_OK && digest) s = kl_digest_dataset(&ds, digest);
    if (s == KL_OK && (s = kl_eval_bundle(b, &ds, opts, out)) != KL_OK) kl_preferr(s, "%s", path);
    kl_dataset_free(&ds);
    return s;
}
