/* infer.c — `kiln infer --url HOST:PORT --model NAME --input FILE [...]`: scores a file's rows on
 * any Open Inference Protocol server (kiln serve, Triton, MLServer, ...) over gRPC and writes
 * CSV: index, then whatever outputs came back ("class", "prob_0".. for a kiln classifier).
 *
 * Also the helpers `kiln loadgen` shares (cli.h): reading rows from IDX or CSV, learning a
 * model's input from ModelMetadata, and a unary call whose failure reads as status + message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "cli/cli.h"
#include "data/csv.h"                 /* CSV files with a header */
#include "data/dataset.h"             /* kl_dataset from the IDX reader */
#include "data/idx.h"                 /* IDX images and labels */
#include "serving/grpc_client.h"      /* channel and unary calls */
#include "serving/oip_client_codec.h" /* ModelInfer / ModelMetadata messages */

/* --- rows from a file -------------------------------------------------------------------- */

/* Reads a whole file, gzip or plain, NUL-terminated. */
static kl_status slurp(const char *path, char **out, size_t *len) {
    gzFile f = gzopen(path, "rb");
    if (!f) return kl_seterr(KL_EIO, "cannot open \"%s\"", path);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            gzclose(f);
            return kl_seterr(KL_ENOMEM, "reading \"%s\"", path);
        }
        int r = gzread(f, buf + n, (unsigned)(cap - n - 1));
        if (r < 0) {
            free(buf);
            gzclose(f);
            return kl_seterr(KL_EIO, "reading \"%s\" failed", path);
        }
        n += (size_t)r;
        if (r == 0) break;
        if (n == cap - 1) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) free(buf);
            buf = nb;
            cap *= 2;
        }
    }
    gzclose(f);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return KL_OK;
}

/* Fields in the line at s (up to a newline or NUL): one more than its commas. */
static int count_fields(const char *s) {
    int n = 1;
    for (; *s && *s != '\n' && *s != '\r'; s++)
        n += *s == ',';
    return n;
}

/* Splits the line at s (up to a newline or NUL) into fields in place: each is NUL-terminated,
 * trimmed, its start stored in f[0..cap). Returns the field count (may exceed cap) and sets *next
 * to the start of the following line. */
static int split_line(char *s, char **f, int cap, char **next) {
    char *end = s + strcspn(s, "\r\n");
    *next = *end ? end + 1 + (end[0] == '\r' && end[1] == '\n') : end;
    *end = '\0';
    int n = 0;
    for (char *p = s;; n++) {
        char *c = strchr(p, ',');
        if (c) *c = '\0';
        while (*p == ' ' || *p == '\t')
            p++;
        char *e = p + strlen(p);
        while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
            *--e = '\0';
        if (n < cap) f[n] = p;
        if (!c) return n + 1;
        p = c + 1;
    }
}

static int blank_line(const char *s) {
    s += strspn(s, " \t");
    return *s == '\0' || *s == '\r' || *s == '\n';
}

/* Parses a header-less numeric CSV held in buf (modified in place). */
static kl_status numeric_csv(const char *path, char *buf, float **x, int64_t *n, int64_t *d) {
    int64_t rows = 0, cap = 1024, cols = -1, line = 0;
    float *v = NULL;
    char **f = NULL;
    kl_status s = KL_OK;
    if (!strncmp(buf, "\xEF\xBB\xBF", 3)) buf += 3; /* a UTF-8 byte-order mark */
    for (char *p = buf, *next; *p; p = next) {
        line++;
        if (blank_line(p)) {
            next = p + strcspn(p, "\n");
            if (*next) next++;
            continue;
        }
        if (cols < 0) { /* the first record fixes the width */
            cols = count_fields(p);
            f = malloc((size_t)cols * sizeof *f);
            v = malloc((size_t)(cap * cols) * sizeof *v);
            if (!f || !v) {
                s = kl_seterr(KL_ENOMEM, "\"%s\": %lld columns", path, (long long)cols);
                break;
            }
        }
        int nf = split_line(p, f, (int)cols, &next);
        if (nf != cols) {
            s = kl_seterr(KL_EFORMAT, "\"%s\": line %lld: %d fields, the first row has %lld", path,
                          (long long)line, nf, (long long)cols);
            break;
        }
        if (rows == cap) {
            cap *= 2;
            float *nv = realloc(v, (size_t)(cap * cols) * sizeof *v);
            if (!nv) {
                s = kl_seterr(KL_ENOMEM, "\"%s\": %lld rows", path, (long long)cap);
                break;
            }
            v = nv;
        }
        for (int c = 0; c < cols; c++) {
            double val;
            if (!kl_csv_parse_number(f[c], &val)) {
                s = kl_seterr(KL_EFORMAT, "\"%s\": line %lld, column %d: \"%s\" is not a number",
                              path, (long long)line, c + 1, f[c]);
                break;
            }
            v[rows * cols + c] = (float)val;
        }
        if (s != KL_OK) break;
        rows++;
    }
    free(f);
    if (s == KL_OK && rows == 0) s = kl_seterr(KL_EFORMAT, "\"%s\": no rows", path);
    if (s != KL_OK) {
        free(v);
        return s;
    }
    *x = v;
    *n = rows;
    *d = cols;
    return KL_OK;
}

/* 1 if the first non-blank line of buf is all numbers (a CSV without a header). */
static int headerless(const char *buf) {
    const char *p = buf;
    while (*p && blank_line(p)) {
        p += strcspn(p, "\n");
        if (*p) p++;
    }
    if (!strncmp(p, "\xEF\xBB\xBF", 3)) p += 3;
    size_t len = strcspn(p, "\r\n");
    char *line = strndup(p, len), *next;
    if (!line) return 0;
    int n = count_fields(line);
    char **f = malloc((size_t)n * sizeof *f);
    int all = f != NULL;
    if (f) {
        split_line(line, f, n, &next);
        for (int i = 0; i < n && all; i++) {
            double v;
            all = kl_csv_parse_number(f[i], &v);
        }
    }
    free(f);
    free(line);
    return all;
}

/* Reads a CSV with a header through data/csv: every column but skip_column must be numeric. */
static kl_status header_csv(const char *path, const char *skip_column, float **x, int64_t *n,
                            int64_t *d) {
    kl_csv_table t;
    KL_TRY(kl_csv_read(path, &t));
    int skip = skip_column ? kl_csv_find_column(&t, skip_column) : -1;
    int64_t cols = t.n_cols - (skip >= 0);
    kl_status s = KL_OK;
    if (cols < 1) s = kl_seterr(KL_EFORMAT, "\"%s\": no feature columns", path);
    if (s == KL_OK && t.n_rows < 1) s = kl_seterr(KL_EFORMAT, "\"%s\": no rows", path);
    float *v = s == KL_OK ? malloc((size_t)(t.n_rows * cols) * sizeof *v) : NULL;
    if (s == KL_OK && !v) s = kl_seterr(KL_ENOMEM, "\"%s\": %lld rows", path, (long long)t.n_rows);
    for (int64_t r = 0; s == KL_OK && r < t.n_rows; r++)
        for (int c = 0, j = 0; c < t.n_cols; c++) {
            if (c == skip) continue;
            double val;
            const char *cell = kl_csv_cell(&t, r, c);
            if (!kl_csv_parse_number(cell, &val)) {
                s = kl_seterr(KL_EFORMAT,
                              "\"%s\": line %lld, column \"%s\": \"%s\" is not a number (the "
                              "server takes numeric features; encode categories with kiln "
                              "predict or leave the column out)",
                              path, (long long)t.lines[r], kl_csv_colname(&t, c), cell);
                break;
            }
            v[r * cols + j++] = (float)val;
        }
    if (s == KL_OK) {
        *x = v;
        *n = t.n_rows;
        *d = cols;
    } else {
        free(v);
    }
    kl_csv_free(&t);
    return s;
}

kl_status kl_cli_read_rows(const char *path, const char *skip_column, float **x, int64_t *n,
                           int64_t *d) {
    int ndims = 0;
    if (kl_idx_probe(path, &ndims)) {
        if (ndims < 2)
            return kl_seterr(KL_EFORMAT, "\"%s\" is a 1-D IDX file (labels?), not rows", path);
        kl_dataset ds;
        int rows, cols;
        KL_TRY(kl_idx_read_images(path, &ds, &rows, &cols));
        *x = ds.x;
        *n = ds.n;
        *d = ds.d;
        ds.x = NULL;
        kl_dataset_free(&ds);
        return KL_OK;
    }
    char *buf = NULL;
    size_t len = 0;
    KL_TRY(slurp(path, &buf, &len));
    if (memchr(buf, '\0', len)) {
        free(buf);
        return kl_seterr(KL_EFORMAT, "\"%s\" is neither an IDX file nor a CSV text file", path);
    }
    kl_status s;
    if (headerless(buf)) {
        s = numeric_csv(path, buf, x, n, d);
        free(buf);
    } else {
        free(buf);
        s = header_csv(path, skip_column, x, n, d);
    }
    return s;
}

/* Reads labels: a 1-D IDX file, or a CSV column (column, or the file's only column) of class
 * indices. */
static kl_status read_labels(const char *path, const char *column, int64_t **out, int64_t *n) {
    int ndims = 0;
    if (kl_idx_probe(path, &ndims)) {
        int32_t *l;
        KL_TRY(kl_idx_read_labels(path, 0, &l, n));
        *out = malloc((size_t)(*n ? *n : 1) * sizeof **out);
        if (!*out) {
            free(l);
            return kl_seterr(KL_ENOMEM, "\"%s\"", path);
        }
        for (int64_t i = 0; i < *n; i++)
            (*out)[i] = l[i];
        free(l);
        return KL_OK;
    }
    kl_csv_table t;
    KL_TRY(kl_csv_read(path, &t));
    int c = kl_csv_find_column(&t, column);
    if (c < 0 && t.n_cols == 1) c = 0;
    kl_status s = KL_OK;
    if (c < 0) s = kl_seterr(KL_ENOTFOUND, "\"%s\": no column \"%s\"", path, column);
    /* A one-column file whose "header" is a number has no header: that is the first label. */
    double hv;
    int first = t.n_cols == 1 && kl_csv_parse_number(kl_csv_colname(&t, 0), &hv);
    int64_t total = t.n_rows + first;
    *out = s == KL_OK ? malloc((size_t)(total ? total : 1) * sizeof **out) : NULL;
    if (s == KL_OK && !*out) s = kl_seterr(KL_ENOMEM, "\"%s\"", path);
    for (int64_t r = -first; s == KL_OK && r < t.n_rows; r++) {
        const char *cell = r < 0 ? kl_csv_colname(&t, 0) : kl_csv_cell(&t, r, c);
        double v;
        if (!kl_csv_parse_number(cell, &v) || v != (double)(int64_t)v || v < 0) {
            s = kl_seterr(KL_EFORMAT,
                          "\"%s\": line %lld: label \"%s\" is not a class index (the accuracy "
                          "compares with the class the server answers: 0, 1, ...)",
                          path, (long long)(r < 0 ? 1 : t.lines[r]), cell);
            break;
        }
        (*out)[r + first] = (int64_t)v;
    }
    if (s == KL_OK) {
        *n = total;
    } else {
        free(*out);
        *out = NULL;
    }
    kl_csv_free(&t);
    return s;
}

/* --- talking to the server --------------------------------------------------------------- */

kl_status kl_cli_call(kl_grpc_channel *ch, const char *method, const char *what, const uint8_t *req,
                      size_t len, int64_t timeout_ms, kl_grpc_reply *reply, kl_grpc_code *code) {
    KL_TRY(kl_preferr(kl_grpc_call_unary(ch, method, req, len, timeout_ms, reply), "%s", what));
    if (code) *code = reply->code;
    if (reply->code == KL_GRPC_OK) return KL_OK;
    kl_status s = kl_seterr(reply->code == KL_GRPC_NOT_FOUND ? KL_ENOTFOUND : KL_EIO, "%s: %s: %s",
                            what, kl_grpc_code_name(reply->code), reply->message);
    kl_grpc_reply_free(reply);
    return s;
}

/* Parses "D1,D2,..." (each >= 1) into dims; returns the count, or -1. */
static int parse_dims(const char *s, int64_t *dims, int cap) {
    int n = 0;
    while (*s) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || v < 1 || n == cap) return -1;
        dims[n++] = v;
        s = end;
        if (*s == ',')
            s++;
        else if (*s)
            return -1;
    }
    return n > 0 ? n : -1;
}

kl_status kl_cli_resolve_input(kl_grpc_channel *ch, const char *model, const char *version,
                               const char *name, const char *datatype, const char *shape,
                               int64_t row_values, int64_t timeout_ms, kl_cli_input *out) {
    memset(out, 0, sizeof *out);
    int64_t dims[8];
    int n_dims = 0;
    char what[512];
    snprintf(what, sizeof what, "ModelMetadata \"%s\"", model);
    if (shape && (n_dims = parse_dims(shape, dims, 8)) < 0)
        return kl_seterr(KL_EINVAL, "--shape \"%s\": expected D1,D2,... (each >= 1, at most 8)",
                         shape);
    if (name) { /* the user said what the input is: no metadata needed */
        snprintf(out->name, sizeof out->name, "%s", name);
        snprintf(out->datatype, sizeof out->datatype, "%s", datatype ? datatype : "FP32");
        out->batched = 1;
        if (n_dims == 0) {
            if (row_values <= 0)
                return kl_seterr(KL_EINVAL, "--input-name without --input: give --shape");
            dims[n_dims++] = row_values;
        }
    } else {
        uint8_t *req;
        size_t len;
        KL_TRY(kl_oip_client_encode_model_ref(model, version, &req, &len));
        kl_grpc_reply r;
        kl_status s =
            kl_cli_call(ch, KL_OIP_METHOD_MODEL_METADATA, what, req, len, timeout_ms, &r, NULL);
        free(req);
        KL_TRY(s);
        kl_oip_model_meta m;
        s = kl_oip_client_decode_metadata(r.data, r.len, &m);
        kl_grpc_reply_free(&r);
        KL_TRY(kl_preferr(s, "%s", what));
        if (m.n_inputs != 1) {
            s = kl_seterr(KL_EUNSUPPORTED,
                          "%s: the model has %zu inputs; kiln sends one (name it with "
                          "--input-name to try anyway)",
                          what, m.n_inputs);
        } else {
            const kl_oip_tensor_meta *t = &m.inputs[0];
            snprintf(out->name, sizeof out->name, "%s", t->name);
            snprintf(out->datatype, sizeof out->datatype, "%s", datatype ? datatype : t->datatype);
            out->batched = t->n_dims > 0 && t->shape[0] == -1;
            if (n_dims == 0 && t->n_dims - (size_t)out->batched > 8)
                s = kl_seterr(KL_EUNSUPPORTED,
                              "%s: input \"%s\" has %zu dimensions (at most 8 besides the batch)",
                              what, t->name, t->n_dims);
            if (s == KL_OK && n_dims == 0) {
                int unknown = -1;
                for (size_t k = (size_t)out->batched; k < t->n_dims; k++) {
                    if (t->shape[k] == 0) {
                        s = kl_seterr(KL_EUNSUPPORTED, "%s: input \"%s\" has a dimension of 0",
                                      what, t->name);
                        break;
                    }
                    if (t->shape[k] == -1) {
                        if (unknown >= 0) {
                            s = kl_seterr(KL_EINVAL,
                                          "%s: input \"%s\" has several variable dimensions: "
                                          "give --shape",
                                          what, t->name);
                            break;
                        }
                        unknown = n_dims;
                    }
                    dims[n_dims++] = t->shape[k];
                }
                if (s == KL_OK && n_dims == 0) dims[n_dims++] = 1; /* [-1]: one value a row */
                if (s == KL_OK && unknown >= 0) {
                    int64_t known = 1;
                    for (int k = 0; k < n_dims; k++)
                        if (k != unknown) known *= dims[k];
                    if (row_values <= 0 || row_values % known)
                        s = kl_seterr(KL_EINVAL,
                                      "%s: input \"%s\" has a variable dimension%s: give --shape",
                                      what, t->name, row_values > 0 ? " the rows do not fill" : "");
                    else
                        dims[unknown] = row_values / known;
                }
            }
        }
        kl_oip_model_meta_free(&m);
        KL_TRY(s);
    }
    if (kl_oip_datatype_size(out->datatype) < 0)
        return kl_seterr(KL_EINVAL, "input \"%s\": unknown datatype \"%s\"", out->name,
                         out->datatype);
    out->n_item_dims = n_dims;
    out->row_values = 1;
    for (int k = 0; k < n_dims; k++) {
        out->item_shape[k] = dims[k];
        out->row_values *= dims[k];
    }
    if (row_values > 0 && row_values != out->row_values) {
        char sb[160];
        size_t o = 0;
        for (int k = 0; k < n_dims && o < sizeof sb - 24; k++)
            o +=
                (size_t)snprintf(sb + o, sizeof sb - o, "%s%lld", k ? "," : "", (long long)dims[k]);
        return kl_seterr(KL_EINVAL,
                         "model \"%s\" input \"%s\" takes %lld values per row (shape [%s%s]), the "
                         "rows have %lld",
                         model, out->name, (long long)out->row_values, out->batched ? "-1," : "",
                         sb, (long long)row_values);
    }
    return KL_OK;
}

/* --- kiln infer ---------------------------------------------------------------------------- */

#define MAX_COLS 64

/* One output as a group of CSV columns, fixed by the first response. */
typedef struct {
    char name[256]; /* output name */
    int64_t width;  /* values per row */
    int is_int;     /* printed as integers */
    int is_fp64;    /* printed with 17 digits */
} out_group;

static void usage(FILE *f) {
    fprintf(f,
            "usage: kiln infer --url HOST:PORT --model NAME --input FILE\n"
            "                  [--model-version V] [--batch-size 64] [--output FILE|-]\n"
            "                  [--labels FILE] [--label-column label] [--outputs A,B]\n"
            "                  [--input-name NAME] [--datatype FP32] [--shape D1,D2]\n"
            "                  [--ca FILE] [--timeout-ms 60000]\n"
            "\n"
            "Sends the rows of FILE (IDX images, values as stored, or a CSV of numeric feature\n"
            "columns, header optional; the --label-column is left out) in batches to any Open\n"
            "Inference Protocol server over gRPC (inference.GRPCInferenceService, as kiln serve\n"
            "and Triton speak it) and writes CSV: index, then every output that came back:\n"
            "\"class\", \"prob_0\".. for \"probabilities\", NAME or NAME_0.. for others.\n"
            "The input's name, datatype and shape come from ModelMetadata unless given.\n"
            "--labels (IDX labels, or a CSV column of class indices) prints the accuracy to\n"
            "stderr. --ca FILE uses TLS with that CA bundle. A server error prints its gRPC\n"
            "status and message and exits 1.\n");
}

/* Splits a comma list in place into items (at most cap); returns the count. */
static int split_list(char *s, const char **items, int cap) {
    int n = 0;
    for (char *tok = strtok(s, ","); tok && n < cap; tok = strtok(NULL, ","))
        items[n++] = tok;
    return n;
}

/* Fixes the CSV columns from the first response and writes the header. */
static kl_status plan_columns(const kl_oip_response *r, int64_t rows, int batched, FILE *f,
                              out_group *g, int *n_groups) {
    int n = 0;
    /* "class" first, then "probabilities", then the rest in the server's order. */
    for (int pass = 0; pass < 3; pass++)
        for (size_t i = 0; i < r->n_outputs; i++) {
            const kl_oip_tensor *t = &r->outputs[i];
            int is_class = !strcmp(t->name, "class"), is_prob = !strcmp(t->name, "probabilities");
            if ((pass == 0) != is_class || (pass == 1) != is_prob) continue;
            if (t->elem_size == 0) {
                fprintf(stderr, "kiln infer: output \"%s\" is BYTES: not written\n", t->name);
                continue;
            }
            if (n == MAX_COLS) return kl_seterr(KL_EUNSUPPORTED, "over %d outputs", MAX_COLS);
            int64_t w = batched ? (rows ? t->n_elems / rows : 0) : t->n_elems;
            snprintf(g[n].name, sizeof g[n].name, "%s", t->name);
            g[n].width = w;
            g[n].is_int = kl_oip_tensor_is_integer(t);
            g[n].is_fp64 = !strcmp(t->datatype, "FP64");
            n++;
        }
    fputs("index", f);
    for (int k = 0; k < n; k++)
        for (int64_t j = 0; j < g[k].width; j++) {
            if (!strcmp(g[k].name, "probabilities"))
                fprintf(f, ",prob_%lld", (long long)j);
            else if (g[k].width == 1)
                fprintf(f, ",%s", g[k].name);
            else
                fprintf(f, ",%s_%lld", g[k].name, (long long)j);
        }
    fputc('\n', f);
    *n_groups = n;
    return KL_OK;
}

/* Writes the rows of one response; pred[r] gets each row's class for the accuracy (-1: none). */
static kl_status write_rows(const kl_oip_response *r, int64_t first, int64_t rows, int batched,
                            const out_group *g, int n_groups, FILE *f, int64_t *pred) {
    const kl_oip_tensor *ts[MAX_COLS];
    for (int k = 0; k < n_groups; k++) {
        const kl_oip_tensor *t = kl_oip_response_output(r, g[k].name);
        if (!t)
            return kl_seterr(KL_EFORMAT, "rows %lld..: the response lacks output \"%s\"",
                             (long long)first, g[k].name);
        if (batched && (t->n_dims < 1 || t->shape[0] != rows || t->n_elems != rows * g[k].width))
            return kl_seterr(KL_EFORMAT,
                             "rows %lld..%lld: output \"%s\" has %lld values for %lld rows "
                             "(first dimension %lld), %lld per row expected",
                             (long long)first, (long long)(first + rows - 1), t->name,
                             (long long)t->n_elems, (long long)rows,
                             (long long)(t->n_dims ? t->shape[0] : -1), (long long)g[k].width);
        if (!batched && t->n_elems != g[k].width)
            return kl_seterr(KL_EFORMAT, "row %lld: output \"%s\" has %lld values, not %lld",
                             (long long)first, t->name, (long long)t->n_elems,
                             (long long)g[k].width);
        ts[k] = t;
    }
    int cls = -1, prob = -1;
    for (int k = 0; k < n_groups; k++) {
        if (!strcmp(g[k].name, "class") && g[k].width == 1 && g[k].is_int) cls = k;
        if (prob < 0 && !g[k].is_int && g[k].width > 1) prob = k;
    }
    for (int64_t i = 0; i < rows; i++) {
        fprintf(f, "%lld", (long long)(first + i));
        for (int k = 0; k < n_groups; k++)
            for (int64_t j = 0; j < g[k].width; j++) {
                double v = kl_oip_tensor_value(ts[k], i * g[k].width + j);
                if (g[k].is_int)
                    fprintf(f, ",%lld", (long long)v);
                else
                    fprintf(f, g[k].is_fp64 ? ",%.17g" : ",%.9g", v);
            }
        fputc('\n', f);
        pred[i] = -1;
        if (cls >= 0) {
            pred[i] = (int64_t)kl_oip_tensor_value(ts[cls], i);
        } else if (prob >= 0) {
            int64_t best = 0, w = g[prob].width;
            for (int64_t j = 1; j < w; j++)
                if (kl_oip_tensor_value(ts[prob], i * w + j) >
                    kl_oip_tensor_value(ts[prob], i * w + best))
                    best = j;
            pred[i] = best;
        }
    }
    return KL_OK;
}

/* "grpc://h:p" and "h:p" both name the target h:p. */
static const char *target_of(const char *url) {
    return strncmp(url, "grpc://", 7) ? url : url + 7;
}

int kl_cmd_infer(int argc, char **argv) {
    const char *url = NULL, *model = NULL, *version = "", *input = NULL, *output = "-";
    const char *ca = NULL, *labels_path = NULL, *label_column = "label";
    const char *input_name = NULL, *datatype = NULL, *shape = NULL;
    char *outputs_arg = NULL;
    long long batch = 64, timeout_ms = 60000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--url") && has) {
            url = argv[++i];
        } else if (!strcmp(a, "--model") && has) {
            model = argv[++i];
        } else if (!strcmp(a, "--model-version") && has) {
            version = argv[++i];
        } else if (!strcmp(a, "--input") && has) {
            input = argv[++i];
        } else if (!strcmp(a, "--output") && has) {
            output = argv[++i];
        } else if (!strcmp(a, "--batch-size") && has) {
            batch = atoll(argv[++i]);
        } else if (!strcmp(a, "--ca") && has) {
            ca = argv[++i];
        } else if (!strcmp(a, "--timeout-ms") && has) {
            timeout_ms = atoll(argv[++i]);
        } else if (!strcmp(a, "--labels") && has) {
            labels_path = argv[++i];
        } else if (!strcmp(a, "--label-column") && has) {
            label_column = argv[++i];
        } else if (!strcmp(a, "--outputs") && has) {
            outputs_arg = argv[++i];
        } else if (!strcmp(a, "--input-name") && has) {
            input_name = argv[++i];
        } else if (!strcmp(a, "--datatype") && has) {
            datatype = argv[++i];
        } else if (!strcmp(a, "--shape") && has) {
            shape = argv[++i];
        } else {
            fprintf(stderr, "kiln infer: unknown or incomplete option \"%s\"\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!url || !model || !input || batch < 1 || timeout_ms < 0) {
        fprintf(stderr, "kiln infer: --url, --model and --input are required (and --batch-size "
                        ">= 1, --timeout-ms >= 0)\n\n");
        usage(stderr);
        return 2;
    }
    const char *outs[16];
    int n_outs = outputs_arg ? split_list(outputs_arg, outs, 16) : 0;
    float *x = NULL;
    int64_t n = 0, d = 0, n_labels = 0, *labels = NULL, *pred = NULL, correct = 0, scored = 0;
    kl_grpc_channel *ch = NULL;
    FILE *f = NULL;
    int rc = 1, n_groups = 0;
    out_group groups[MAX_COLS];
    kl_cli_input in;
    kl_grpc_channel_opts co = kl_grpc_channel_defaults();
    co.ca_file = ca;
    if (kl_cli_read_rows(input, label_column, &x, &n, &d) != KL_OK) goto fail;
    if (labels_path) {
        if (read_labels(labels_path, label_column, &labels, &n_labels) != KL_OK) goto fail;
        if (n_labels != n) {
            kl_seterr(KL_EINVAL, "--labels \"%s\": %lld labels for %lld rows", labels_path,
                      (long long)n_labels, (long long)n);
            goto fail;
        }
    }
    if (kl_grpc_channel_create(target_of(url), &co, &ch) != KL_OK) goto fail;
    if (kl_cli_resolve_input(ch, model, version, input_name, datatype, shape, d, timeout_ms, &in) !=
        KL_OK)
        goto fail;
    if (!in.batched) batch = 1; /* no batch dimension: one row is the whole tensor */
    pred = malloc((size_t)batch * sizeof *pred);
    if (!pred) {
        kl_seterr(KL_ENOMEM, "--batch-size %lld", batch);
        goto fail;
    }
    f = strcmp(output, "-") ? fopen(output, "w") : stdout;
    if (!f) {
        kl_seterr(KL_EIO, "cannot create \"%s\"", output);
        goto fail;
    }
    for (int64_t lo = 0; lo < n; lo += batch) {
        int64_t rows = n - lo < batch ? n - lo : batch;
        int64_t tshape[9];
        int nd = 0;
        if (in.batched) tshape[nd++] = rows;
        for (int k = 0; k < in.n_item_dims; k++)
            tshape[nd++] = in.item_shape[k];
        char id[32];
        snprintf(id, sizeof id, "%lld", (long long)lo);
        kl_oip_infer_input req = {model,  version, id,         in.name, in.datatype,
                                  tshape, nd,      x + lo * d, outs,    n_outs};
        uint8_t *buf;
        size_t len;
        if (kl_oip_client_encode_infer(&req, &buf, &len) != KL_OK) goto fail;
        char what[512];
        snprintf(what, sizeof what, "ModelInfer \"%s\" rows %lld..%lld", model, (long long)lo,
                 (long long)(lo + rows - 1));
        kl_grpc_reply reply;
        kl_status s =
            kl_cli_call(ch, KL_OIP_METHOD_MODEL_INFER, what, buf, len, timeout_ms, &reply, NULL);
        free(buf);
        if (s != KL_OK) goto fail;
        kl_oip_response resp;
        s = kl_oip_client_decode_infer(reply.data, reply.len, &resp);
        kl_grpc_reply_free(&reply);
        if (s != KL_OK) {
            kl_preferr(s, "%s", what);
            goto fail;
        }
        if (lo == 0) s = plan_columns(&resp, rows, in.batched, f, groups, &n_groups);
        if (s == KL_OK) s = write_rows(&resp, lo, rows, in.batched, groups, n_groups, f, pred);
        kl_oip_response_free(&resp);
        if (s != KL_OK) {
            kl_preferr(s, "%s", what);
            goto fail;
        }
        for (int64_t i = 0; labels && i < rows; i++)
            if (pred[i] >= 0) {
                scored++;
                correct += pred[i] == labels[lo + i];
            }
    }
    int werr = fflush(f) || ferror(f);
    if (f != stdout) werr |= fclose(f);
    f = NULL;
    if (werr) {
        kl_seterr(KL_EIO, "writing \"%s\" failed", output);
        goto fail;
    }
    if (labels && scored)
        fprintf(stderr, "accuracy %.4f (%lld/%lld)\n", (double)correct / (double)scored,
                (long long)correct, (long long)scored);
    else if (labels)
        fprintf(stderr, "kiln infer: no class output to compare the labels with\n");
    rc = 0;
    goto done;
fail:
    rc = kl_cli_fail("infer");
done:
    if (f && f != stdout) fclose(f);
    kl_grpc_channel_free(ch);
    free(pred);
    free(labels);
    free(x);
    return rc;
}
