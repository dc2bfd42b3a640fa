/* model_uri.h — models:/ URIs as local bundle directories.
 *
 * "models:/NAME/VERSION", "models:/NAME@ALIAS" and "models:/<logged model id>" are resolved
 * through the MLflow registry (MLFLOW_TRACKING_URI) to the version's artifact location, whose
 * files are downloaded once into a content-addressed cache:
 *
 *   <cache>/sha256/<key>/            the bundle's files
 *   <cache>/sha256/<key>.manifest    one line per file: "<sha256> <size> <relative path>"
 *   <cache>/refs/<sha256 of server + artifact location>   the key, 64 hex digits
 *
 * key is the SHA-256 of the manifest, so equal bundles share one directory. A reused entry is
 * checked against its manifest (every file's size and digest, nothing missing, nothing extra);
 * one that fails the check is downloaded again. The cache is $KILN_MODEL_CACHE, else
 * $XDG_CACHE_HOME/kiln/models, else ~/.cache/kiln/models. Concurrent resolvers are safe: each
 * downloads into its own temporary directory and renames it into place. */
#ifndef KL_MODEL_URI_H
#define KL_MODEL_URI_H

#include <stddef.h>

#include "runtime/status.h"

/* Writes the local bundle directory for uri_or_path into local_dir (cap bytes). A plain path
 * (anything not starting with "models:/") is copied unchanged. */
kl_status kl_model_uri_resolve(const char *uri_or_path, char *local_dir, size_t cap);

/* The cache directory in use (not created). */
kl_status kl_model_uri_cache_dir(char *out, size_t cap);

#endif
