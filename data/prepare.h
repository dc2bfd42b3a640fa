/* prepare.h — the data layer's entry points for training and prediction.
 *
 * kl_data_prepare turns a data config into encoded, transformed train / validation / test sets
 * plus everything a model bundle must carry to encode new inputs the same way: the transform
 * (shift/scale arrays), the encoder (opaque JSON) and the training data digest.
 * kl_data_load_input is the prediction-time half: it reads a file with a bundle's encoder.
 */
#ifndef KL_PREPARE_H
#define KL_PREPARE_H

#include <stdint.h>

#include "data/dataset.h"
#include "data/reference.h" /* kl_reference: the training split's profile for drift */

typedef struct {
    const char *format;       /* "idx" or "csv" */
    const char *train;        /* IDX images or CSV file */
    const char *train_labels; /* IDX labels file (idx only) */
    const char *test;         /* optional held-out test file (NULL or "" = none) */
    const char *test_labels;  /* IDX labels for test */
    const char *label_column; /* csv: name of the label column (NULL: "label") */
    const char **categorical; /* csv: categorical feature columns */
    int n_categorical;        /* entries in categorical */
    const char **label_names; /* optional class names (IDX) */
    int n_label_names;        /* entries in label_names */
    const char *task;         /* "classification" or "regression" (NULL: classification) */
    double val_fraction;      /* fraction of train held out for validation, [0,1) */
    uint64_t seed;            /* split seed */
    const char *transform;    /* "none", "standard" or "minmax" (NULL: none) */
    int64_t limit;            /* use only the first `limit` rows of train and of test (0 = all) */
} kl_data_config;

typedef struct {
    kl_dataset train;     /* encoded and transformed training split */
    kl_dataset val;       /* validation split; val.n == 0 when val_fraction is 0 */
    kl_dataset test;      /* test file; test.n == 0 when there is none */
    int n_features;       /* features per row (= train.d) */
    char transform[16];   /* "none" | "standard" | "minmax" */
    float *shift;         /* [n_features] fitted on the training split, NULL for "none", owned */
    float *scale;         /* [n_features] fitted on the training split, NULL for "none", owned */
    char *encoder_json;   /* the fitted encoder as JSON text, owned */
    char digest[80];      /* digest of the training file's data after `limit`, "sha256:..." */
    char test_digest[80]; /* digest of the test file's data after `limit`, "" if no test */
    /* The reference profile: the training split's features (before the transform) and class
     * prior, owned; the trainer adds the prediction prior before writing the bundle. */
    kl_reference reference;
} kl_prepared_data;

/* Reads, validates, encodes, splits and transforms the data the config names. The encoder's
 * imputation statistics and the transform are fitted on the training split only, and so is
 * the reference profile (data/reference.h), on the encoded values before the transform: the
 * values a client sends. Errors in the config name the key ("data.transform: ..."); errors in a
 * file name the file and the line or byte offset. On failure out is left empty. Free with
 * kl_prepared_data_free. */
kl_status kl_data_prepare(const kl_data_config *cfg, kl_prepared_data *out);

/* Frees everything p owns and zeroes it. */
void kl_prepared_data_free(kl_prepared_data *p);

/* Prediction time: reads an input file with a bundle's encoder (the format comes from the
 * JSON), encoding features the same way (imputing with the stored values). labels_path: an IDX
 * labels file (or NULL); for CSV the label column is used when the file has it. require_labels:
 * an error when there are none. The transform is NOT applied (the caller applies the bundle's).
 * out->n_classes and out->class_names are set for classification even without labels. */
kl_status kl_data_load_input(const char *encoder_json, const char *path, const char *labels_path,
                             int require_labels, kl_dataset *out);

#endif
