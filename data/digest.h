/* digest.h — content digests of datasets, "sha256:<64 hex>".
 *
 * A digest identifies data, not a file: it hashes canonical bytes of the decoded content, so the
 * same data gives the same digest whether it was read from a .gz or a plain file (or, for CSV,
 * with different quoting or line endings).
 *
 * Decoded dataset (IDX and anything already dense), all integers little-endian:
 *   "kiln-dataset-v1\0", u64 n, u64 d, u32 label kind (0 none, 1 class index, 2 target),
 *   x as f32 [n*d], then y as i32 [n] or t as f32 [n].
 * Names (class names from a config, feature names) are not data and are left out, so naming the
 * classes of an IDX dataset does not change its digest.
 * CSV table (the file's cells before any encoding, so the digest does not depend on the split,
 * the imputation or which columns are categorical):
 *   "kiln-csv-v1\0", u64 rows, u64 cols, then every header name and every cell, row by row, as
 *   u32 length + bytes.
 */
#ifndef KL_DIGEST_H
#define KL_DIGEST_H

#include "data/csv.h"
#include "data/dataset.h"

#define KL_DIGEST_LEN 72 /* "sha256:" + 64 hex + NUL */

/* Digest of a decoded dataset into out (at least KL_DIGEST_LEN bytes). */
kl_status kl_digest_dataset(const kl_dataset *ds, char *out);

/* Digest of a parsed CSV table (its first t->n_rows rows) into out. */
kl_status kl_digest_csv(const kl_csv_table *t, char *out);

#endif
