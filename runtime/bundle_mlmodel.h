/* bundle_mlmodel.h — the bundle's MLmodel file (MLflow's YAML model format), private to
 * runtime/bundle*.c. */
#ifndef KL_BUNDLE_MLMODEL_H
#define KL_BUNDLE_MLMODEL_H

#include <stddef.h>

#include "runtime/bundle.h"

#define KL_BUNDLE_MLMODEL "MLmodel"
#define KL_BUNDLE_DATA "model.safetensors"
#define KL_BUNDLE_CONFIG "kiln.json"

/* What a kiln reader needs from the MLmodel: the flavor's file names. */
typedef struct {
    char data[128];   /* weights file, a plain name inside the bundle */
    char config[128]; /* kiln.json's name, a plain name inside the bundle */
} kl_mlmodel_info;

/* Renders the MLmodel YAML (flavor "kiln", a fresh UUID4, the time, the tensor signature)
 * into a malloc'd string. */
kl_status kl_mlmodel_render(const kl_bundle *b, char **text);

/* Parses MLmodel text and checks flavors.kiln: format_version 1 and plain file names. Messages
 * name the YAML path ("flavors.kiln.format_version: ..."); the caller prefixes the file. */
kl_status kl_mlmodel_parse(const char *text, size_t len, kl_mlmodel_info *info);

#endif
