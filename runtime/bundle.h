/* bundle.h — the model bundle: a directory any MLflow, safetensors or ONNX tool can read.
 *
 *   MLmodel            MLflow's YAML model format, flavor "kiln", with the input/output signature
 *   model.safetensors  the weights (fc1.weight [out,in], fc1.bias [out], ...), float32
 *   kiln.json          architecture, preprocessing, label names, training-data digest, and
 *                      the reference profile of the training data used for drift
 *
 * runtime/ knows the affine input transform (x - shift) * scale; the data encoder (how CSV
 * columns become features) and the reference profile (data/reference.h, read by monitor/) are
 * carried as opaque JSON that their owners validate and apply.
 */
#ifndef KL_BUNDLE_H
#define KL_BUNDLE_H

#include <stdint.h>

#include "runtime/model.h"
#include "runtime/status.h"

#define KL_BUNDLE_FORMAT_VERSION 1

typedef struct {
    kl_mlp_spec spec;     /* architecture */
    int64_t n_params;     /* number of floats in params */
    float *params;        /* host copy of the parameter buffer, owned */
    int n_features;       /* == spec.dims[0] */
    char **feature_names; /* [n_features] or NULL, owned */
    char transform[16];   /* "none", "standard" or "minmax" */
    float *shift;         /* [n_features] or NULL when transform is "none", owned */
    float *scale;         /* [n_features] or NULL when transform is "none", owned */
    int n_labels;         /* classes (classification) or 0 */
    char **label_names;   /* [n_labels], owned */
    char data_digest[80]; /* "sha256:<hex>" of the training data, or "" */
    char *encoder_json;   /* data/'s encoder as JSON text, or NULL, owned */
    char *training_json;  /* free-form training summary (config, metrics) as JSON, or NULL */
    char *reference_json; /* kiln.json "reference" as JSON text, or NULL (older bundles), owned */
} kl_bundle;

/* Writes dir/MLmodel, dir/model.safetensors, dir/kiln.json (creating dir if needed). */
kl_status kl_bundle_save(const char *dir, const kl_bundle *b);

/* Reads and checks a bundle: every field of kiln.json and MLmodel, and every tensor's name,
 * dtype, shape and byte range against the architecture. Errors name the file and field. */
kl_status kl_bundle_load(const char *dir, kl_bundle *b);

void kl_bundle_free(kl_bundle *b);

/* Writes a parameter buffer (host, spec's layout) as safetensors: fc1.weight, fc1.bias, ...
 * — the bundle's model.safetensors, also used for a run's initial weights. */
kl_status kl_bundle_write_weights(const char *path, const kl_mlp_spec *spec, const float *params);

/* Applies the bundle's transform in place to rows x[rows, n_features]. */
void kl_bundle_apply_transform(const kl_bundle *b, float *x, int64_t rows);

/* Writes the model (transform + MLP + softmax for classification) as an ONNX file. */
kl_status kl_bundle_export_onnx(const kl_bundle *b, const char *path);

#endif
