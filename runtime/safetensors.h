/* safetensors.h — a writer and a strictly validating reader of the safetensors format.
 *
 * Layout: an 8-byte little-endian header length N, N bytes of JSON header
 *   {"__metadata__": {str: str}, "<name>": {"dtype": "F32", "shape": [...],
 *    "data_offsets": [begin, end]}, ...}
 * then the data buffer; offsets are relative to the buffer's start. kiln writes float32 only,
 * in the caller's order with contiguous offsets, and pads the header with spaces to a multiple
 * of 8 bytes (as the reference implementation does) so the data starts aligned.
 *
 * The reader refuses anything a careful implementation would: short files, absurd header
 * lengths, bad JSON, dtypes other than F32, byte ranges that disagree with shapes, ranges
 * outside the buffer, overlaps and gaps. Messages name the tensor but not the file: callers
 * prefix the file ("model.safetensors: tensor \"fc1.weight\": ...").
 */
#ifndef KL_SAFETENSORS_H
#define KL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"

#define KL_ST_MAX_DIMS 8                       /* rank limit of tensors kiln reads */
#define KL_ST_MAX_HEADER (100ll * 1024 * 1024) /* header lengths above this are refused */

/* One tensor to write. */
typedef struct {
    const char *name;              /* unique, non-empty, not "__metadata__" */
    int ndim;                      /* 0 .. KL_ST_MAX_DIMS */
    int64_t shape[KL_ST_MAX_DIMS]; /* dimension sizes, >= 0 */
    const float *data;             /* product(shape) floats, host memory */
} kl_st_tensor_in;

/* One tensor of a file that was read. */
typedef struct {
    char *name;                    /* owned */
    int ndim;                      /* rank */
    int64_t shape[KL_ST_MAX_DIMS]; /* dimension sizes */
    int64_t begin;                 /* byte offset of the data within the buffer */
    int64_t end;                   /* one past the last byte */
} kl_st_tensor;

/* A safetensors file held in memory. */
typedef struct {
    int n_tensors;         /* entries in tensors */
    kl_st_tensor *tensors; /* in header order, owned */
    int n_meta;            /* __metadata__ entries */
    char **meta_keys;      /* [n_meta], owned */
    char **meta_values;    /* [n_meta], owned */
    char *file;            /* the whole file, owned */
    const uint8_t *buffer; /* the data buffer inside file */
    int64_t buffer_len;    /* its length in bytes */
} kl_st_file;

/* Writes tensors (float32) and metadata (meta[2*i] = key, meta[2*i+1] = value) to path,
 * atomically. */
kl_status kl_safetensors_write(const char *path, const kl_st_tensor_in *tensors, int n,
                               const char *const *meta, int n_meta);

/* Reads and validates path into f (zeroed on failure). Free with kl_safetensors_free. */
kl_status kl_safetensors_read(const char *path, kl_st_file *f);

/* Parses and validates a file already in memory; takes ownership of file (malloc'd, len
 * bytes) whether it succeeds or not. */
kl_status kl_safetensors_parse(char *file, size_t len, kl_st_file *f);

void kl_safetensors_free(kl_st_file *f);

/* The tensor with this name, or NULL. */
const kl_st_tensor *kl_safetensors_find(const kl_st_file *f, const char *name);

/* The metadata value for key, or NULL. */
const char *kl_safetensors_meta(const kl_st_file *f, const char *key);

/* Decodes a (validated, F32) tensor's little-endian bytes into out[product(shape)]. */
void kl_safetensors_copy_f32(const kl_st_file *f, const kl_st_tensor *t, float *out);

/* Formats a shape as "[256,784]" into buf. */
const char *kl_safetensors_shape_str(int ndim, const int64_t *shape, char *buf, size_t cap);

#endif
