/* idx.c — IDX reading through zlib with size, type and trailing-data checks. */
#include "data/idx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Refuse headers that declare more than this many data bytes: no real IDX file is that big,
 * and a corrupt header must not make us try. */
#define IDX_MAX_BYTES (((uint64_t)1) << 36)

/* One decoded IDX file: header plus the raw big-endian element bytes. */
typedef struct {
    int type;                       /* element type byte (0x08 ...) */
    int elem;                       /* bytes per element */
    int ndims;                      /* number of dimensions */
    uint32_t dims[KL_IDX_MAX_DIMS]; /* the dimensions, outermost first */
    uint64_t count;                 /* number of elements (product of dims) */
    uint64_t header_len;            /* bytes before the data: 4 + 4 * ndims */
    unsigned char *data;            /* count * elem bytes, owned */
} idx_raw;

static int type_size(int type) {
    switch (type) {
    case 0x08:
        return 1;
    case 0x09:
        return 1;
    case 0x0B:
        return 2;
    case 0x0C:
        return 4;
    case 0x0D:
        return 4;
    case 0x0E:
        return 8;
    }
    return 0;
}

static const char *type_name(int type) {
    switch (type) {
    case 0x08:
        return "u8";
    case 0x09:
        return "i8";
    case 0x0B:
        return "i16";
    case 0x0C:
        return "i32";
    case 0x0D:
        return "f32";
    case 0x0E:
        return "f64";
    }
    return "?";
}

/* Reads up to n bytes; returns the count read, or -1 after setting an error for a corrupt
 * gzip stream. *off counts uncompressed bytes consumed so far, for messages. */
static int64_t gz_read(gzFile f, const char *path, void *buf, uint64_t n, uint64_t off) {
    uint64_t got = 0;
    while (got < n) {
        uint64_t want = n - got;
        if (want > (1u << 30)) want = 1u << 30;
        int r = gzread(f, (unsigned char *)buf + got, (unsigned)want);
        if (r < 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            kl_seterr(KL_EFORMAT, "\"%s\": corrupt gzip data near uncompressed byte %llu: %s", path,
                      (unsigned long long)(off + got), msg ? msg : "unknown zlib error");
            return -1;
        }
        if (r == 0) break;
        got += (uint64_t)r;
    }
    /* A gzip stream that stops mid-member reads short without r < 0; zlib flags it here. */
    if (got < n) {
        int zerr = Z_OK;
        const char *msg = gzerror(f, &zerr);
        if (zerr == Z_BUF_ERROR) {
            kl_seterr(KL_EFORMAT,
                      "\"%s\": truncated gzip stream: it ends at uncompressed byte %llu", path,
                      (unsigned long long)(off + got));
            return -1;
        }
        if (zerr != Z_OK && zerr != Z_STREAM_END) {
            kl_seterr(KL_EFORMAT, "\"%s\": corrupt gzip data near uncompressed byte %llu: %s", path,
                      (unsigned long long)(off + got), msg ? msg : "unknown zlib error");
            return -1;
        }
    }
    return (int64_t)got;
}

static kl_status truncated(const char *path, uint64_t at, uint64_t declared) {
    return kl_seterr(KL_EFORMAT,
                     "\"%s\": truncated: data ends at byte offset %llu but the header declares "
                     "%llu bytes",
                     path, (unsigned long long)at, (unsigned long long)declared);
}

static kl_status idx_read_raw(const char *path, idx_raw *r) {
    memset(r, 0, sizeof *r);
    gzFile f = gzopen(path, "rb");
    if (!f)
        return kl_seterr(KL_EIO, "cannot open \"%s\": %s", path,
                         errno ? strerror(errno) : "out of memory");
    gzbuffer(f, 1 << 17);
    kl_status s = KL_OK;
    unsigned char hdr[4 + 4 * KL_IDX_MAX_DIMS];
    int64_t got = gz_read(f, path, hdr, 4, 0);
    if (got < 0) {
        s = KL_EFORMAT;
        goto done;
    }
    if (got < 4) {
        s = kl_seterr(KL_EFORMAT, "\"%s\": not an IDX file: only %lld bytes", path, (long long)got);
        goto done;
    }
    r->type = hdr[2];
    r->elem = type_size(r->type);
    r->ndims = hdr[3];
    if (hdr[0] || hdr[1])
        s = kl_seterr(KL_EFORMAT,
                      "\"%s\": not an IDX file: magic bytes %02x %02x %02x %02x (expected 00 00 "
                      "<type> <ndims>)",
                      path, hdr[0], hdr[1], hdr[2], hdr[3]);
    else if (!r->elem)
        s = kl_seterr(KL_EUNSUPPORTED,
                      "\"%s\": IDX element type 0x%02x at byte offset 2 is not one of 0x08 (u8), "
                      "0x09 (i8), 0x0B (i16), 0x0C (i32), 0x0D (f32), 0x0E (f64)",
                      path, r->type);
    else if (r->ndims < 1 || r->ndims > KL_IDX_MAX_DIMS)
        s = kl_seterr(KL_EUNSUPPORTED,
                      "\"%s\": IDX with %d dimensions (byte offset 3); 1 to %d "
                      "are supported",
                      path, r->ndims, KL_IDX_MAX_DIMS);
    if (s) goto done;
    r->header_len = 4 + 4 * (uint64_t)r->ndims;
    got = gz_read(f, path, hdr + 4, 4 * (uint64_t)r->ndims, 4);
    if (got < 0) {
        s = KL_EFORMAT;
        goto done;
    }
    if ((uint64_t)got < 4 * (uint64_t)r->ndims) {
        s = truncated(path, 4 + (uint64_t)got, r->header_len);
        goto done;
    }
    r->count = 1;
    for (int i = 0; i < r->ndims; i++) {
        const unsigned char *p = hdr + 4 + 4 * i;
        r->dims[i] = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        /* Checked before multiplying, so a hostile header cannot overflow the count. */
        if (r->dims[i] && r->count > IDX_MAX_BYTES / (uint64_t)r->elem / r->dims[i]) {
            s = kl_seterr(KL_EFORMAT, "\"%s\": IDX header declares more than %llu bytes of data",
                          path, (unsigned long long)IDX_MAX_BYTES);
            goto done;
        }
        r->count *= r->dims[i];
    }
    uint64_t bytes = r->count * (uint64_t)r->elem, total = r->header_len + bytes;
    /* Grow the buffer as data arrives so a lying header cannot force a huge allocation. */
    uint64_t cap = bytes < (1u << 20) ? bytes : (1u << 20), have = 0;
    r->data = malloc(cap ? cap : 1);
    if (!r->data) {
        s = kl_seterr(KL_ENOMEM, "\"%s\": %llu bytes", path, (unsigned long long)cap);
        goto done;
    }
    while (have < bytes) {
        if (have == cap) {
            cap = cap * 2 < bytes ? cap * 2 : bytes;
            unsigned char *p = realloc(r->data, cap);
            if (!p) {
                s = kl_seterr(KL_ENOMEM, "\"%s\": %llu bytes", path, (unsigned long long)cap);
                goto done;
            }
            r->data = p;
        }
        got = gz_read(f, path, r->data + have, cap - have, r->header_len + have);
        if (got < 0) {
            s = KL_EFORMAT;
            goto done;
        }
        have += (uint64_t)got;
        if (have < cap) break; /* end of input */
    }
    if (have < bytes) {
        s = truncated(path, r->header_len + have, total);
        goto done;
    }
    unsigned char extra;
    got = gz_read(f, path, &extra, 1, total);
    if (got < 0) {
        s = KL_EFORMAT;
        goto done;
    }
    if (got > 0)
        s = kl_seterr(KL_EFORMAT,
                      "\"%s\": unexpected data after byte offset %llu (the header declares %llu "
                      "bytes)",
                      path, (unsigned long long)total, (unsigned long long)total);
done:
    gzclose(f);
    if (s) {
        free(r->data);
        r->data = NULL;
    }
    return s;
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Element i as a double, decoding the big-endian type. */
static double elem_value(const idx_raw *r, uint64_t i) {
    const unsigned char *p = r->data + i * (uint64_t)r->elem;
    switch (r->type) {
    case 0x08:
        return p[0];
    case 0x09:
        return (int8_t)p[0];
    case 0x0B:
        return (int16_t)(uint16_t)(p[0] << 8 | p[1]);
    case 0x0C:
        return (int32_t)be32(p);
    case 0x0D: {
        uint32_t u = be32(p);
        float v;
        memcpy(&v, &u, sizeof v);
        return v;
    }
    case 0x0E: {
        uint64_t u = (uint64_t)be32(p) << 32 | be32(p + 4);
        double v;
        memcpy(&v, &u, sizeof v);
        return v;
    }
    }
    return 0;
}

int kl_idx_probe(const char *path, int *ndims) {
    gzFile f = gzopen(path, "rb");
    if (!f) return 0;
    unsigned char h[4];
    int n = gzread(f, h, 4);
    gzclose(f);
    if (n != 4 || h[0] || h[1] || !type_size(h[2]) || h[3] < 1 || h[3] > KL_IDX_MAX_DIMS) return 0;
    if (ndims) *ndims = h[3];
    return 1;
}

kl_status kl_idx_read_images(const char *path, kl_dataset *out, int *rows, int *cols) {
    memset(out, 0, sizeof *out);
    idx_raw r;
    KL_TRY(idx_read_raw(path, &r));
    kl_status s = KL_OK;
    if (r.ndims < 2) {
        s = kl_seterr(KL_EFORMAT,
                      "\"%s\": IDX images need 2 to %d dimensions, this file has 1 "
                      "(a labels file?)",
                      path, KL_IDX_MAX_DIMS);
        goto done;
    }
    uint64_t d = 1;
    for (int i = 1; i < r.ndims && !s; i++) {
        d *= r.dims[i];
        if (d == 0 || d > (uint64_t)INT32_MAX)
            s = kl_seterr(KL_EFORMAT,
                          "\"%s\": IDX item shape gives %llu features (must be 1 to %d)", path,
                          (unsigned long long)d, INT32_MAX);
    }
    if (s) goto done;
    *rows = r.ndims == 2 ? 1 : (int)r.dims[1];
    *cols = (int)(d / (uint64_t)*rows);
    out->x = malloc((size_t)(r.count ? r.count : 1) * sizeof(float));
    if (!out->x) {
        s = kl_seterr(KL_ENOMEM, "\"%s\": %llu features", path, (unsigned long long)r.count);
        goto done;
    }
    if (r.type == 0x08)
        for (uint64_t i = 0; i < r.count; i++)
            out->x[i] = r.data[i];
    else
        for (uint64_t i = 0; i < r.count; i++)
            out->x[i] = (float)elem_value(&r, i);
    out->n = r.dims[0];
    out->d = (int64_t)d;
done:
    free(r.data);
    if (s) kl_dataset_free(out);
    return s;
}

kl_status kl_idx_read_labels(const char *path, int n_classes, int32_t **labels, int64_t *n) {
    *labels = NULL;
    *n = 0;
    idx_raw r;
    KL_TRY(idx_read_raw(path, &r));
    kl_status s = KL_OK;
    if (r.ndims != 1)
        s = kl_seterr(KL_EFORMAT, "\"%s\": IDX labels need 1 dimension, this file has %d", path,
                      r.ndims);
    else if (r.type == 0x0D || r.type == 0x0E)
        s = kl_seterr(KL_EFORMAT, "\"%s\": IDX labels must be integers, this file holds %s", path,
                      type_name(r.type));
    int32_t *y = s ? NULL : malloc((size_t)(r.count ? r.count : 1) * sizeof *y);
    if (!s && !y)
        s = kl_seterr(KL_ENOMEM, "\"%s\": %llu labels", path, (unsigned long long)r.count);
    for (uint64_t i = 0; !s && i < r.count; i++) {
        double v = elem_value(&r, i);
        uint64_t off = r.header_len + i * (uint64_t)r.elem;
        if (v < 0)
            s = kl_seterr(KL_EFORMAT, "\"%s\": negative label %.0f at item %llu (byte offset %llu)",
                          path, v, (unsigned long long)i, (unsigned long long)off);
        else if (n_classes > 0 && v >= n_classes)
            s = kl_seterr(KL_EFORMAT,
                          "\"%s\": unknown label %.0f at item %llu (byte offset %llu): classes "
                          "are 0..%d",
                          path, v, (unsigned long long)i, (unsigned long long)off, n_classes - 1);
        else
            y[i] = (int32_t)v;
    }
    free(r.data);
    if (s) {
        free(y);
        return s;
    }
    *labels = y;
    *n = (int64_t)r.count;
    return KL_OK;
}

kl_status kl_idx_read_dataset(const char *images, const char *labels, int n_classes,
                              char *const *class_names, kl_dataset *out, int *rows, int *cols) {
    KL_TRY(kl_idx_read_images(images, out, rows, cols));
    kl_status s = KL_OK;
    /* Names come with a fixed class count; without one they could not be sized. */
    if (n_classes <= 0) class_names = NULL;
    int64_t nl = 0;
    if (labels) {
        s = kl_idx_read_labels(labels, n_classes, &out->y, &nl);
        if (!s && nl != out->n)
            s = kl_seterr(KL_EFORMAT, "\"%s\" has %lld labels but \"%s\" has %lld images", labels,
                          (long long)nl, images, (long long)out->n);
        if (!s && n_classes <= 0) {
            int32_t mx = -1;
            for (int64_t i = 0; i < nl; i++)
                mx = out->y[i] > mx ? out->y[i] : mx;
            if (mx >= 100000)
                s = kl_seterr(KL_EFORMAT, "\"%s\": label %d implies more than 100000 classes",
                              labels, (int)mx);
            n_classes = mx + 1;
        }
    }
    if (!s && n_classes > 0) {
        out->n_classes = n_classes;
        if (class_names) {
            s = kl_strings_copy(class_names, n_classes, &out->class_names);
        } else {
            out->class_names = calloc((size_t)n_classes, sizeof(char *));
            if (!out->class_names) s = kl_seterr(KL_ENOMEM, "class names");
            for (int c = 0; !s && c < n_classes; c++) {
                char buf[16];
                snprintf(buf, sizeof buf, "%d", c);
                if (!(out->class_names[c] = strdup(buf))) s = kl_seterr(KL_ENOMEM, "class names");
            }
        }
    }
    if (s) kl_dataset_free(out);
    return s;
}
