/* snapshot.h — content-addressed dataset snapshots: a dataset's version is its digest.
 *
 * A snapshot holds one or more datasets (a CSV file, or IDX images with their labels file) and a
 * manifest.json:
 *   {"kiln_snapshot": 1, "digest": "sha256:...", "name": "...", "created": "<UTC ISO 8601>",
 *    "datasets": [{"file": "train.csv", "labels": null, "format": "csv", "rows": 1000,
 *                  "digest": "sha256:...", "schema": {"columns": [{"name": "age",
 *                  "type": "numeric"}, ...]}}   (IDX: "schema": {"shape": [60000, 28, 28]})],
 *    "files": [{"path": "train.csv", "sha256": "<64 hex>", "bytes": 12345, "role": "data"}]}
 * The snapshot's digest is the dataset's digest (data/digest.h) when it holds one dataset, so it
 * equals the digest training logs; with several it is SHA-256 over "kiln-snapshot-v1\0" and each
 * dataset digest's text in order. Files keep their base names (two with one name are an error).
 *
 * The local store: <store>/sha256/<64 hex>/ holding the files and manifest.json. A snapshot is
 * written into <store>/sha256/.tmp-* and renamed into place, so a reader never sees half of one;
 * saving a snapshot that exists already changes nothing. The store is $KILN_DATA_STORE, else
 * ~/.cache/kiln/datasets.
 */
#ifndef KL_SNAPSHOT_H
#define KL_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "data/digest.h"
#include "runtime/status.h"

/* One dataset to snapshot. */
typedef struct {
    const char *path;   /* a CSV file or IDX images (or labels) file */
    const char *labels; /* the IDX labels file for path, or NULL */
} kl_snapshot_input;

/* The default store into buf: $KILN_DATA_STORE, else $HOME/.cache/kiln/datasets. */
kl_status kl_snapshot_default_store(char *buf, size_t size);

/* Reads the inputs and writes their files and manifest.json into dir (which must exist and be
 * empty), copying and hashing each file in one pass. digest gets the snapshot's digest. */
kl_status kl_snapshot_stage(const kl_snapshot_input *in, int n, const char *name, const char *dir,
                            char digest[KL_DIGEST_LEN]);

/* Removes a flat directory such as one kl_snapshot_stage filled (its files, then itself), once
 * its files have been uploaded elsewhere. */
void kl_snapshot_remove_dir(const char *dir);

/* Saves a snapshot of the inputs into the store (created if missing): staged in a temporary
 * directory and renamed into place. *created (may be NULL) is 1 when it was written, 0 when the
 * store held it already. digest gets the snapshot's digest. */
kl_status kl_snapshot_save(const char *store, const kl_snapshot_input *in, int n, const char *name,
                           char digest[KL_DIGEST_LEN], int *created);

/* The files of a stored snapshot. */
typedef struct {
    char digest[KL_DIGEST_LEN]; /* the full digest */
    char *dir;                  /* <store>/sha256/<hex>, owned */
    char *name;                 /* the name given when it was taken ("" if none), owned */
    int n;                      /* datasets */
    char **paths;               /* [n] each dataset's data file in the store, owned */
    char **labels;              /* [n] its IDX labels file in the store, or NULL, owned */
} kl_snapshot_files;

/* Finds the snapshot whose digest starts with ref ("sha256:<hex prefix>" or "<hex prefix>", at
 * least 4 hex digits) in the store. KL_ENOTFOUND when none does; KL_EINVAL when the prefix is
 * ambiguous (the message lists the matches). Free out with kl_snapshot_files_free. */
kl_status kl_snapshot_resolve(const char *store, const char *ref, kl_snapshot_files *out);
void kl_snapshot_files_free(kl_snapshot_files *f);

/* 1 when s looks like a snapshot reference ("sha256:" + hex, or 4..64 hex digits only). */
int kl_snapshot_is_ref(const char *s);

/* One stored snapshot, for listings. */
typedef struct {
    char digest[KL_DIGEST_LEN]; /* its digest */
    char name[128];             /* its name, "" if none */
    char created[32];           /* when it was taken */
    int64_t rows;               /* rows over its datasets */
    int64_t bytes;              /* bytes over its files */
    int n_files;                /* files (manifest.json excluded) */
} kl_snapshot_entry;

/* Every snapshot of the store, newest first; *out is malloc'd (free it). A missing store lists
 * as empty. */
kl_status kl_snapshot_list(const char *store, kl_snapshot_entry **out, int *n);

#endif
