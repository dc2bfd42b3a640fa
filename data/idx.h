/* idx.h — the IDX format of MNIST and Fashion-MNIST, plain or gzip-compressed.
 *
 * An IDX file is: two zero bytes, a type byte (0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32,
 * 0x0E f64), the number of dimensions, each dimension as a big-endian u32, then the elements,
 * big-endian, row-major. Files are read through zlib, which also reads uncompressed files.
 * Every read checks the declared size against the bytes present: a short file is an error that
 * names the byte offset where the data ran out, and bytes after the declared data are an error.
 */
#ifndef KL_IDX_H
#define KL_IDX_H

#include <stdint.h>

#include "data/dataset.h"

#define KL_IDX_MAX_DIMS 4

/* 1 if the file starts with a plausible IDX magic (gzip or not), filling *ndims; else 0. */
int kl_idx_probe(const char *path, int *ndims);

/* Reads an images file [n, rows, cols] (or [n, d], or [n, a, b, c]) into out->x as raw float
 * values (no scaling), out->n and out->d = product of the item dimensions. *rows and *cols get
 * the item shape (a 2-D file gives rows 1; a 4-D file folds the last two dims into cols).
 * The caller frees out with kl_dataset_free. */
kl_status kl_idx_read_images(const char *path, kl_dataset *out, int *rows, int *cols);

/* Reads a 1-D integer labels file into *labels [*n] (caller frees). When n_classes > 0, a label
 * outside [0, n_classes) is an "unknown label" error naming the item and its byte offset;
 * negative labels are always an error. */
kl_status kl_idx_read_labels(const char *path, int n_classes, int32_t **labels, int64_t *n);

/* Reads images and (when labels is non-NULL) labels into one classification dataset. The label
 * counts must match the images. n_classes > 0 fixes the class count (labels must be below it);
 * 0 means max label + 1. class_names, when non-NULL and n_classes > 0, holds n_classes names
 * to copy (it is ignored when n_classes is 0); otherwise the classes are named "0", "1", ....
 * Without labels, out->y is NULL and n_classes/names are still set from the arguments. */
kl_status kl_idx_read_dataset(const char *images, const char *labels, int n_classes,
                              char *const *class_names, kl_dataset *out, int *rows, int *cols);

#endif
