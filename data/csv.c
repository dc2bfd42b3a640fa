/* csv.c — an in-place RFC 4180 parser over the whole file text. */
#include "data/csv.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* The table indexes fields with 32-bit offsets. */
#define CSV_MAX_BYTES ((uint64_t)UINT32_MAX - 16)

/* A growable array of uint32 offsets. */
typedef struct {
    uint32_t *v; /* elements, owned */
    size_t n;    /* used */
    size_t cap;  /* allocated */
} u32_vec;

static int u32_push(u32_vec *a, uint32_t x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 1024;
        uint32_t *p = realloc(a->v, cap * sizeof *p);
        if (!p) return -1;
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

/* Reads the whole (possibly gzip) file into a NUL-terminated buffer. */
static kl_status read_all(const char *path, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return kl_seterr(KL_EIO, "cannot open \"%s\": %s", path,
                         errno ? strerror(errno) : "out of memory");
    gzbuffer(f, 1 << 17);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    kl_status s = buf ? KL_OK : kl_seterr(KL_ENOMEM, "\"%s\": read buffer", path);
    while (!s) {
        if (cap - n < 2) {
            if (cap >= CSV_MAX_BYTES) {
                s = kl_seterr(KL_EUNSUPPORTED, "\"%s\": larger than %llu bytes", path,
                              (unsigned long long)CSV_MAX_BYTES);
                break;
            }
            size_t nc = cap * 2 > CSV_MAX_BYTES ? (size_t)CSV_MAX_BYTES : cap * 2;
            char *p = realloc(buf, nc);
            if (!p) {
                s = kl_seterr(KL_ENOMEM, "\"%s\": %zu bytes", path, nc);
                break;
            }
            buf = p;
            cap = nc;
        }
        size_t want = cap - n - 1;
        if (want > (1u << 30)) want = 1u << 30;
        int r = gzread(f, buf + n, (unsigned)want);
        int zerr = Z_OK;
        const char *msg = gzerror(f, &zerr);
        if (zerr == Z_BUF_ERROR) {
            s = kl_seterr(KL_EFORMAT,
                          "\"%s\": truncated gzip stream: it ends at uncompressed byte "
                          "%zu",
                          path, n + (r > 0 ? (size_t)r : 0));
            break;
        }
        if (r < 0 || (zerr != Z_OK && zerr != Z_STREAM_END)) {
            s = kl_seterr(KL_EFORMAT, "\"%s\": corrupt gzip data near uncompressed byte %zu: %s",
                          path, n, msg ? msg : "unknown zlib error");
            break;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    gzclose(f);
    if (s) {
        free(buf);
        return s;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return KL_OK;
}

static int is_blank(char c) {
    return c == ' ' || c == '\t';
}

/* Parser state over the buffer. */
typedef struct {
    const char *path; /* for messages */
    char *buf;        /* text being parsed in place */
    size_t len;       /* text length */
    size_t pos;       /* next unread byte */
    int64_t line;     /* 1-based line of buf[pos] */
} parser;

/* Parses one field at p->pos, NUL-terminates it in place and stores its offset in *start.
 * *end_of_record is set when the field ended the record (newline or end of text). */
static kl_status parse_field(parser *p, int field_no, uint32_t *start, int *end_of_record) {
    char *b = p->buf;
    while (p->pos < p->len && is_blank(b[p->pos]))
        p->pos++;
    size_t w, fs;
    if (p->pos < p->len && b[p->pos] == '"') {
        int64_t open_line = p->line;
        fs = w = p->pos;
        p->pos++;
        for (;;) {
            if (p->pos >= p->len)
                return kl_seterr(KL_EFORMAT,
                                 "\"%s\": line %lld: field %d: quote opened here is never closed",
                                 p->path, (long long)open_line, field_no);
            char c = b[p->pos];
            if (c == '"') {
                if (p->pos + 1 < p->len && b[p->pos + 1] == '"') {
                    b[w++] = '"';
                    p->pos += 2;
                    continue;
                }
                p->pos++;
                break;
            }
            if (c == '\n' || (c == '\r' && !(p->pos + 1 < p->len && b[p->pos + 1] == '\n')))
                p->line++;
            b[w++] = c;
            p->pos++;
        }
        while (p->pos < p->len && is_blank(b[p->pos]))
            p->pos++;
        if (p->pos < p->len && b[p->pos] != ',' && b[p->pos] != '\n' && b[p->pos] != '\r')
            return kl_seterr(KL_EFORMAT,
                             "\"%s\": line %lld: field %d: text after the closing quote", p->path,
                             (long long)p->line, field_no);
    } else {
        fs = p->pos;
        while (p->pos < p->len && b[p->pos] != ',' && b[p->pos] != '\n' && b[p->pos] != '\r')
            p->pos++;
        w = p->pos;
        while (w > fs && is_blank(b[w - 1]))
            w--;
    }
    /* Look at the delimiter before the terminating NUL may overwrite it. */
    char delim = p->pos < p->len ? b[p->pos] : '\0';
    b[w] = '\0';
    *start = (uint32_t)fs;
    *end_of_record = delim != ',';
    if (delim == ',') {
        p->pos++;
    } else if (delim == '\r') {
        p->pos++;
        if (p->pos < p->len && b[p->pos] == '\n') p->pos++;
        p->line++;
    } else if (delim == '\n') {
        p->pos++;
        p->line++;
    }
    return KL_OK;
}

/* Skips empty lines at p->pos; returns 1 if a record starts there, 0 at the end of the text. */
static int skip_empty_lines(parser *p) {
    while (p->pos < p->len && (p->buf[p->pos] == '\n' || p->buf[p->pos] == '\r')) {
        if (p->buf[p->pos] == '\r' && p->pos + 1 < p->len && p->buf[p->pos + 1] == '\n') p->pos++;
        p->pos++;
        p->line++;
    }
    return p->pos < p->len;
}

kl_status kl_csv_read(const char *path, kl_csv_table *t) {
    memset(t, 0, sizeof *t);
    size_t len;
    KL_TRY(read_all(path, &t->buf, &len));
    kl_status s = KL_OK;
    u32_vec cells = {0}, header = {0};
    int64_t *lines = NULL;
    size_t lines_cap = 0;
    t->path = strdup(path);
    if (!t->path) {
        s = kl_seterr(KL_ENOMEM, "\"%s\"", path);
        goto fail;
    }
    const char *nul = memchr(t->buf, '\0', len);
    if (nul) {
        s = kl_seterr(KL_EFORMAT, "\"%s\": NUL byte at byte offset %zu: not a text file", path,
                      (size_t)(nul - t->buf));
        goto fail;
    }
    parser p = {path, t->buf, len, 0, 1};
    if (len >= 3 && !memcmp(t->buf, "\xEF\xBB\xBF", 3)) p.pos = 3;
    if (!skip_empty_lines(&p)) {
        s = kl_seterr(KL_EFORMAT, "\"%s\": empty file (no header row)", path);
        goto fail;
    }
    int64_t header_line = p.line;
    for (int eor = 0, f = 1; !eor; f++) {
        uint32_t off;
        if ((s = parse_field(&p, f, &off, &eor))) goto fail;
        if (u32_push(&header, off)) {
            s = kl_seterr(KL_ENOMEM, "\"%s\": header", path);
            goto fail;
        }
    }
    if (header.n > 1000000) {
        s = kl_seterr(KL_EUNSUPPORTED, "\"%s\": %zu columns", path, header.n);
        goto fail;
    }
    t->n_cols = (int)header.n;
    for (int c = 0; c < t->n_cols; c++) {
        const char *name = t->buf + header.v[c];
        if (!*name) {
            s = kl_seterr(KL_EFORMAT, "\"%s\": line %lld: column %d of the header has no name",
                          path, (long long)header_line, c + 1);
            goto fail;
        }
        for (int k = 0; k < c; k++)
            if (!strcmp(name, t->buf + header.v[k])) {
                s = kl_seterr(KL_EFORMAT,
                              "\"%s\": line %lld: column \"%s\" appears twice (columns "
                              "%d and %d)",
                              path, (long long)header_line, name, k + 1, c + 1);
                goto fail;
            }
    }
    while (skip_empty_lines(&p)) {
        int64_t line = p.line;
        int nf = 0;
        for (int eor = 0; !eor;) {
            uint32_t off;
            if ((s = parse_field(&p, nf + 1, &off, &eor))) goto fail;
            nf++;
            if (nf <= t->n_cols && u32_push(&cells, off)) {
                s = kl_seterr(KL_ENOMEM, "\"%s\": line %lld", path, (long long)line);
                goto fail;
            }
        }
        if (nf != t->n_cols) {
            s = kl_seterr(KL_EFORMAT,
                          "\"%s\": line %lld: found %d field%s, expected %d (as in the "
                          "header)",
                          path, (long long)line, nf, nf == 1 ? "" : "s", t->n_cols);
            goto fail;
        }
        if ((size_t)t->n_rows == lines_cap) {
            lines_cap = lines_cap ? lines_cap * 2 : 1024;
            int64_t *nl = realloc(lines, lines_cap * sizeof *nl);
            if (!nl) {
                s = kl_seterr(KL_ENOMEM, "\"%s\": line %lld", path, (long long)line);
                goto fail;
            }
            lines = nl;
        }
        lines[t->n_rows++] = line;
    }
    t->header = header.v;
    t->cells = cells.v;
    t->lines = lines;
    return KL_OK;
fail:
    free(header.v);
    free(cells.v);
    free(lines);
    t->header = NULL;
    t->cells = NULL;
    t->lines = NULL;
    kl_csv_free(t);
    return s;
}

void kl_csv_free(kl_csv_table *t) {
    free(t->path);
    free(t->buf);
    free(t->header);
    free(t->cells);
    free(t->lines);
    memset(t, 0, sizeof *t);
}

int kl_csv_find_column(const kl_csv_table *t, const char *name) {
    for (int c = 0; c < t->n_cols; c++)
        if (!strcmp(kl_csv_colname(t, c), name)) return c;
    return -1;
}

void kl_csv_truncate(kl_csv_table *t, int64_t limit) {
    if (limit > 0 && limit < t->n_rows) t->n_rows = limit;
}

int kl_csv_is_missing(const char *s) {
    static const char *const marks[] = {"", "NA", "N/A", "NaN", "nan", "null", "NULL", "?"};
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++)
        if (!strcmp(s, marks[i])) return 1;
    return 0;
}

int kl_csv_parse_number(const char *s, double *v) {
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (end == s) return 0;
    while (is_blank(*end))
        end++;
    if (*end || !isfinite(x)) return 0;
    *v = x;
    return 1;
}
