/* data_test_util.h — scratch files for the data-layer tests: a per-test-binary directory under
 * $KILN_TEST_TMP (or /tmp), and writers for plain, gzip and IDX files. */
#ifndef KL_DATA_TEST_UTIL_H
#define KL_DATA_TEST_UTIL_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char tu_dir[1024];

/* Creates <KILN_TEST_TMP or /tmp>/<name>.<pid> (and parents); returns 0 on success. */
static inline int tu_init(const char *name) {
    const char *base = getenv("KILN_TEST_TMP");
    if (!base || !*base) base = "/tmp";
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", base);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    mkdir(buf, 0755);
    snprintf(tu_dir, sizeof tu_dir, "%s/%s.%ld", base, name, (long)getpid());
    return mkdir(tu_dir, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

/* A path in the scratch directory (static buffer rotated among 8, enough for one call site). */
static inline const char *tu_path(const char *name) {
    static char bufs[8][1200];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", tu_dir, name);
    return b;
}

static inline void tu_write(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        abort();
    }
    fwrite(data, 1, n, f);
    fclose(f);
}

static inline void tu_write_str(const char *path, const char *text) {
    tu_write(path, text, strlen(text));
}

static inline void tu_write_gz(const char *path, const void *data, size_t n) {
    gzFile f = gzopen(path, "wb");
    if (!f) abort();
    gzwrite(f, data, (unsigned)n);
    gzclose(f);
}

/* Builds IDX bytes: header (type, dims) + payload; returns the total length written to out. */
static inline size_t tu_idx(unsigned char *out, int type, int ndims, const uint32_t *dims,
                            const void *payload, size_t payload_len) {
    out[0] = 0;
    out[1] = 0;
    out[2] = (unsigned char)type;
    out[3] = (unsigned char)ndims;
    for (int i = 0; i < ndims; i++) {
        out[4 + 4 * i] = (unsigned char)(dims[i] >> 24);
        out[5 + 4 * i] = (unsigned char)(dims[i] >> 16);
        out[6 + 4 * i] = (unsigned char)(dims[i] >> 8);
        out[7 + 4 * i] = (unsigned char)dims[i];
    }
    memcpy(out + 4 + 4 * ndims, payload, payload_len);
    return 4 + 4 * (size_t)ndims + payload_len;
}

#endif
