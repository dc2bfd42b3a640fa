/* safetensors.c — the safetensors writer and its strict reader.
 *
 * Floats are encoded and decoded byte by byte, so the files are little-endian on any host.
 */
#include "runtime/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "runtime/fileio.h"

/* Integers above this lose precision in cJSON's doubles; no real tensor comes near. */
#define ST_MAX_INT 9007199254740992.0 /* 2^53 */

/* dtypes of the format that kiln recognises but does not read, to give a precise message. */
static const char *const other_dtypes[] = {
    "F64", "F16",  "BF16",    "I64",     "I32",     "I16", "I8",      "U64",     "U32", "U16",
    "U8",  "BOOL", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4",  "F6_E2M3", "F6_E3M2", "C64"};

const char *kl_safetensors_shape_str(int ndim, const int64_t *shape, char *buf, size_t cap) {
    size_t off = 0;
    if (cap == 0) return buf;
    buf[0] = '\0';
    off += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && off < cap; i++)
        off += (size_t)snprintf(buf + off, cap - off, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (off < cap) snprintf(buf + off, cap - off, "]");
    return buf;
}

static void put_u64le(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64le(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void put_f32le(uint8_t *p, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(u >> (8 * i));
}

static float get_f32le(const uint8_t *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Elements in a shape, or -1 when the product overflows what a file could hold. */
static int64_t shape_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] != 0 && n > (INT64_MAX / 4) / shape[i]) return -1;
        n *= shape[i];
    }
    return n;
}

/* --- writer ---------------------------------------------------------------------------------- */

static kl_status build_header(const kl_st_tensor_in *t, int n, const char *const *meta, int n_meta,
                              char **out) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return kl_seterr(KL_ENOMEM, "out of memory building the header");
    kl_status s = KL_OK;
    if (n_meta > 0) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; m && i < n_meta; i++)
            if (!cJSON_AddStringToObject(m, meta[2 * i], meta[2 * i + 1])) m = NULL;
        if (!m) s = kl_seterr(KL_ENOMEM, "out of memory building the header");
    }
    int64_t off = 0;
    for (int i = 0; s == KL_OK && i < n; i++) {
        double dims[KL_ST_MAX_DIMS];
        for (int d = 0; d < t[i].ndim; d++)
            dims[d] = (double)t[i].shape[d];
        int64_t bytes = shape_numel(t[i].ndim, t[i].shape) * 4;
        double offs[2] = {(double)off, (double)(off + bytes)};
        cJSON *e = cJSON_AddObjectToObject(root, t[i].name);
        if (!e || !cJSON_AddStringToObject(e, "dtype", "F32") ||
            !cJSON_AddItemToObject(e, "shape", cJSON_CreateDoubleArray(dims, t[i].ndim)) ||
            !cJSON_AddItemToObject(e, "data_offsets", cJSON_CreateDoubleArray(offs, 2)))
            s = kl_seterr(KL_ENOMEM, "out of memory building the header");
        off += bytes;
    }
    if (s == KL_OK) {
        *out = cJSON_PrintUnformatted(root);
        if (!*out) s = kl_seterr(KL_ENOMEM, "out of memory printing the header");
    }
    cJSON_Delete(root);
    return s;
}

static kl_status check_inputs(const kl_st_tensor_in *t, int n, const char *const *meta,
                              int n_meta) {
    for (int i = 0; i < n_meta; i++)
        if (!meta[2 * i] || !meta[2 * i + 1])
            return kl_seterr(KL_EINVAL, "metadata entry %d has a NULL key or value", i);
    for (int i = 0; i < n; i++) {
        if (!t[i].name || !t[i].name[0] || !strcmp(t[i].name, "__metadata__"))
            return kl_seterr(KL_EINVAL, "tensor %d: name must be non-empty and not __metadata__",
                             i);
        for (int j = 0; j < i; j++)
            if (!strcmp(t[i].name, t[j].name))
                return kl_seterr(KL_EINVAL, "tensor \"%s\" appears twice", t[i].name);
        if (t[i].ndim < 0 || t[i].ndim > KL_ST_MAX_DIMS)
            return kl_seterr(KL_EINVAL, "tensor \"%s\": rank %d outside 0..%d", t[i].name,
                             t[i].ndim, KL_ST_MAX_DIMS);
        int64_t numel = shape_numel(t[i].ndim, t[i].shape);
        if (numel < 0) return kl_seterr(KL_EINVAL, "tensor \"%s\": bad shape", t[i].name);
        if (numel > 0 && !t[i].data)
            return kl_seterr(KL_EINVAL, "tensor \"%s\": no data", t[i].name);
    }
    return KL_OK;
}

kl_status kl_safetensors_write(const char *path, const kl_st_tensor_in *t, int n,
                               const char *const *meta, int n_meta) {
    KL_TRY(check_inputs(t, n, meta, n_meta));
    char *header = NULL;
    KL_TRY(build_header(t, n, meta, n_meta, &header));
    size_t hlen = strlen(header);
    size_t padded = (hlen + 7) / 8 * 8;
    int64_t data_len = 0;
    for (int i = 0; i < n; i++)
        data_len += shape_numel(t[i].ndim, t[i].shape) * 4;
    size_t total = 8 + padded + (size_t)data_len;
    uint8_t *buf = malloc(total);
    if (!buf) {
        cJSON_free(header);
        return kl_seterr(KL_ENOMEM, "cannot allocate %zu bytes for \"%s\"", total, path);
    }
    put_u64le(buf, (uint64_t)padded);
    memcpy(buf + 8, header, hlen);
    memset(buf + 8 + hlen, ' ', padded - hlen);
    cJSON_free(header);
    uint8_t *p = buf + 8 + padded;
    for (int i = 0; i < n; i++) {
        int64_t numel = shape_numel(t[i].ndim, t[i].shape);
        for (int64_t k = 0; k < numel; k++, p += 4)
            put_f32le(p, t[i].data[k]);
    }
    kl_status s = kl_file_write_atomic(path, buf, total);
    free(buf);
    return s;
}

/* --- reader ---------------------------------------------------------------------------------- */

/* A non-negative integer JSON number, or -1. */
static int64_t json_index(const cJSON *v) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0) || d > ST_MAX_INT || floor(d) != d) return -1;
    return (int64_t)d;
}

static kl_status parse_metadata(const cJSON *m, kl_st_file *f) {
    if (!cJSON_IsObject(m))
        return kl_seterr(KL_EFORMAT, "header: \"__metadata__\" must be an object of strings");
    int n = cJSON_GetArraySize(m);
    f->meta_keys = calloc((size_t)n + 1, sizeof(char *));
    f->meta_values = calloc((size_t)n + 1, sizeof(char *));
    if (!f->meta_keys || !f->meta_values) return kl_seterr(KL_ENOMEM, "out of memory");
    const cJSON *e;
    cJSON_ArrayForEach(e, m) {
        if (!cJSON_IsString(e))
            return kl_seterr(
                KL_EFORMAT, "header: \"__metadata__\": value of \"%s\" is not a string", e->string);
        f->meta_keys[f->n_meta] = strdup(e->string);
        f->meta_values[f->n_meta] = strdup(e->valuestring);
        if (!f->meta_keys[f->n_meta] || !f->meta_values[f->n_meta])
            return kl_seterr(KL_ENOMEM, "out of memory");
        f->n_meta++;
    }
    return KL_OK;
}

static kl_status parse_tensor(const cJSON *e, kl_st_file *f, kl_st_tensor *t) {
    const char *name = e->string;
    t->name = strdup(name);
    if (!t->name) return kl_seterr(KL_ENOMEM, "out of memory");
    if (!cJSON_IsObject(e))
        return kl_seterr(KL_EFORMAT, "tensor \"%s\": entry is not an object", name);
    const cJSON *dtype = NULL, *shape = NULL, *offs = NULL, *k;
    cJSON_ArrayForEach(k, e) {
        if (!strcmp(k->string, "dtype") && !dtype)
            dtype = k;
        else if (!strcmp(k->string, "shape") && !shape)
            shape = k;
        else if (!strcmp(k->string, "data_offsets") && !offs)
            offs = k;
        else
            return kl_seterr(KL_EFORMAT, "tensor \"%s\": unexpected or repeated key \"%s\"", name,
                             k->string);
    }
    if (!cJSON_IsString(dtype))
        return kl_seterr(KL_EFORMAT, "tensor \"%s\": \"dtype\" missing or not a string", name);
    if (strcmp(dtype->valuestring, "F32") != 0) {
        for (size_t i = 0; i < sizeof other_dtypes / sizeof other_dtypes[0]; i++)
            if (!strcmp(dtype->valuestring, other_dtypes[i]))
                return kl_seterr(KL_EUNSUPPORTED,
                                 "tensor \"%s\": dtype \"%s\" is not supported (kiln reads F32 "
                                 "tensors only)",
                                 name, dtype->valuestring);
        return kl_seterr(KL_EFORMAT, "tensor \"%s\": unknown dtype \"%s\"", name,
                         dtype->valuestring);
    }
    if (!cJSON_IsArray(shape))
        return kl_seterr(KL_EFORMAT, "tensor \"%s\": \"shape\" missing or not an array", name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > KL_ST_MAX_DIMS)
        return kl_seterr(KL_EUNSUPPORTED, "tensor \"%s\": rank %d above kiln's limit %d", name,
                         ndim, KL_ST_MAX_DIMS);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = json_index(cJSON_GetArrayItem(shape, i));
        if (t->shape[i] < 0)
            return kl_seterr(KL_EFORMAT,
                             "tensor \"%s\": \"shape\" entry %d is not a non-negative integer",
                             name, i);
    }
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return kl_seterr(KL_EFORMAT, "tensor \"%s\": \"data_offsets\" must be [begin, end]", name);
    t->begin = json_index(cJSON_GetArrayItem(offs, 0));
    t->end = json_index(cJSON_GetArrayItem(offs, 1));
    if (t->begin < 0 || t->end < 0)
        return kl_seterr(KL_EFORMAT,
                         "tensor \"%s\": \"data_offsets\" must hold non-negative integers", name);
    if (t->end < t->begin)
        return kl_seterr(KL_EFORMAT, "tensor \"%s\": data_offsets [%lld,%lld] end before begin",
                         name, (long long)t->begin, (long long)t->end);
    char sb[160];
    int64_t numel = shape_numel(ndim, t->shape);
    if (numel < 0)
        return kl_seterr(KL_EFORMAT, "tensor \"%s\": shape %s is too large", name,
                         kl_safetensors_shape_str(ndim, t->shape, sb, sizeof sb));
    if (t->end - t->begin != numel * 4)
        return kl_seterr(
            KL_EFORMAT,
            "tensor \"%s\": data_offsets [%lld,%lld] hold %lld bytes, shape %s needs "
            "%lld",
            name, (long long)t->begin, (long long)t->end, (long long)(t->end - t->begin),
            kl_safetensors_shape_str(ndim, t->shape, sb, sizeof sb), (long long)(numel * 4));
    if (t->end > f->buffer_len)
        return kl_seterr(KL_EFORMAT,
                         "tensor \"%s\": data_offsets [%lld,%lld] run past the %lld-byte data "
                         "buffer (truncated file?)",
                         name, (long long)t->begin, (long long)t->end, (long long)f->buffer_len);
    return KL_OK;
}

static int by_begin(const void *a, const void *b) {
    const kl_st_tensor *x = *(const kl_st_tensor *const *)a, *y = *(const kl_st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* The ranges, in offset order, must tile the buffer exactly: no overlap, no gap, no tail. */
static kl_status check_coverage(kl_st_file *f) {
    if (f->n_tensors == 0) {
        if (f->buffer_len != 0)
            return kl_seterr(KL_EFORMAT, "%lld data bytes but no tensors",
                             (long long)f->buffer_len);
        return KL_OK;
    }
    const kl_st_tensor **order = malloc(sizeof *order * (size_t)f->n_tensors);
    if (!order) return kl_seterr(KL_ENOMEM, "out of memory");
    for (int i = 0; i < f->n_tensors; i++)
        order[i] = &f->tensors[i];
    qsort(order, (size_t)f->n_tensors, sizeof *order, by_begin);
    kl_status s = KL_OK;
    int64_t pos = 0;
    for (int i = 0; i < f->n_tensors && s == KL_OK; i++) {
        const kl_st_tensor *t = order[i];
        if (t->begin < pos)
            s = kl_seterr(KL_EFORMAT,
                          "tensor \"%s\": data_offsets [%lld,%lld] overlap tensor \"%s\"", t->name,
                          (long long)t->begin, (long long)t->end, order[i - 1]->name);
        else if (t->begin > pos)
            s = kl_seterr(KL_EFORMAT,
                          "tensor \"%s\": data_offsets [%lld,%lld] leave bytes %lld..%lld of the "
                          "buffer unused",
                          t->name, (long long)t->begin, (long long)t->end, (long long)pos,
                          (long long)t->begin);
        pos = t->end;
    }
    if (s == KL_OK && pos != f->buffer_len)
        s = kl_seterr(KL_EFORMAT, "the data buffer is %lld bytes but the tensors cover %lld",
                      (long long)f->buffer_len, (long long)pos);
    free(order);
    return s;
}

static kl_status parse_entries(const cJSON *root, kl_st_file *f) {
    if (!cJSON_IsObject(root)) return kl_seterr(KL_EFORMAT, "header is JSON but not an object");
    f->tensors = calloc((size_t)cJSON_GetArraySize(root) + 1, sizeof *f->tensors);
    if (!f->tensors) return kl_seterr(KL_ENOMEM, "out of memory");
    int seen_meta = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (!strcmp(e->string, "__metadata__")) {
            if (seen_meta++) return kl_seterr(KL_EFORMAT, "header: \"__metadata__\" appears twice");
            KL_TRY(parse_metadata(e, f));
        } else {
            if (kl_safetensors_find(f, e->string))
                return kl_seterr(KL_EFORMAT, "tensor \"%s\" appears twice", e->string);
            KL_TRY(parse_tensor(e, f, &f->tensors[f->n_tensors++]));
        }
    }
    return check_coverage(f);
}

static kl_status parse_header(const char *text, size_t len, kl_st_file *f) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long pos = at && at >= text && at <= text + len ? (long)(at - text) : -1;
        return kl_seterr(KL_EFORMAT, "header is not valid JSON (error near byte %ld of %zu)", pos,
                         len);
    }
    /* The reference writer pads with spaces; anything else after the object is damage. */
    for (const char *p = end; p && p < text + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return kl_seterr(KL_EFORMAT, "header has bytes after its JSON object (byte %ld)",
                             (long)(p - text));
        }
    kl_status s = parse_entries(root, f);
    cJSON_Delete(root);
    return s;
}

kl_status kl_safetensors_parse(char *file, size_t len, kl_st_file *f) {
    memset(f, 0, sizeof *f);
    f->file = file;
    kl_status s = KL_OK;
    if (len < 8) {
        s = kl_seterr(KL_EFORMAT, "file is %zu bytes, too short for the 8-byte header length", len);
    } else {
        uint64_t n = get_u64le((const uint8_t *)file);
        if (n > (uint64_t)KL_ST_MAX_HEADER)
            s = kl_seterr(KL_EFORMAT, "header length %llu is above the %lld-byte limit",
                          (unsigned long long)n, KL_ST_MAX_HEADER);
        else if (n > len - 8)
            s = kl_seterr(KL_EFORMAT,
                          "header length %llu runs past the end of the file (%zu bytes after "
                          "the length; truncated?)",
                          (unsigned long long)n, len - 8);
        else if (n < 2 || file[8] != '{')
            s = kl_seterr(KL_EFORMAT, "header does not start with a JSON object '{'");
        else {
            f->buffer = (const uint8_t *)file + 8 + n;
            f->buffer_len = (int64_t)(len - 8 - n);
            s = parse_header(file + 8, (size_t)n, f);
        }
    }
    if (s != KL_OK) kl_safetensors_free(f);
    return s;
}

kl_status kl_safetensors_read(const char *path, kl_st_file *f) {
    memset(f, 0, sizeof *f);
    char *data = NULL;
    size_t len = 0;
    /* The whole file is read: kiln's models are far below memory, and the reader then
     * needs no seeks. SIZE_MAX / 2 just keeps the size arithmetic safe. */
    KL_TRY(kl_file_read(path, SIZE_MAX / 2, &data, &len));
    return kl_safetensors_parse(data, len, f);
}

void kl_safetensors_free(kl_st_file *f) {
    for (int i = 0; f->tensors && i < f->n_tensors; i++)
        free(f->tensors[i].name);
    /* A tensor whose parse failed may hold a name past n_tensors; calloc left the rest NULL. */
    if (f->tensors) free(f->tensors[f->n_tensors].name);
    free(f->tensors);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    if (f->meta_keys) free(f->meta_keys[f->n_meta]);
    if (f->meta_values) free(f->meta_values[f->n_meta]);
    free(f->meta_keys);
    free(f->meta_values);
    free(f->file);
    memset(f, 0, sizeof *f);
}

const kl_st_tensor *kl_safetensors_find(const kl_st_file *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].name && !strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

const char *kl_safetensors_meta(const kl_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_keys[i], key)) return f->meta_values[i];
    return NULL;
}

void kl_safetensors_copy_f32(const kl_st_file *f, const kl_st_tensor *t, float *out) {
    const uint8_t *p = f->buffer + t->begin;
    int64_t n = (t->end - t->begin) / 4;
    for (int64_t i = 0; i < n; i++)
        out[i] = get_f32le(p + 4 * i);
}
