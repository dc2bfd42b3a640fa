/* data.c — `kiln data describe FILE ...`: shapes, digest, class balance and per-feature
 * statistics of an IDX or CSV file, read by the same code that training uses. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/csv.h"
#include "data/digest.h"
#include "data/idx.h"

/* Features listed at each end of a wide dataset unless --all. */
#define EDGE 5

/* Parsed command line of `kiln data describe`. */
typedef struct {
    const char *file;         /* the file to describe */
    const char *labels;       /* IDX labels file, or NULL */
    const char *label_column; /* CSV label column, or NULL ("label" when present) */
    const char *categorical;  /* CSV columns declared categorical, comma-separated, or NULL */
    int all;                  /* print every feature, however many */
} describe_args;

/* Running statistics of one feature (Welford, so wide ranges do not cancel). */
typedef struct {
    int64_t n;       /* values seen */
    int64_t missing; /* missing values */
    double min, max; /* extremes */
    double mean, m2; /* running mean and sum of squared deviations */
} stats;

static void usage(FILE *f) {
    fprintf(f,
            "usage: kiln data describe FILE [--labels FILE] [--label-column NAME]\n"
            "                          [--categorical COL,COL...] [--all]\n"
            "\n"
            "Prints the shape, digest, class balance and per-feature statistics of FILE, an IDX\n"
            "file (MNIST format, plain or .gz) or a CSV file with a header row (plain or .gz).\n"
            "  --labels FILE        IDX labels for an IDX images FILE (class balance)\n"
            "  --label-column NAME  CSV column holding the label (default: \"label\" if present)\n"
            "  --categorical A,B    CSV columns to treat as categorical (others with text are\n"
            "                       reported as categorical too, marked \"inferred\")\n"
            "  --all                list every feature, not just the first and last %d\n",
            EDGE);
}

static void stats_add(stats *s, double v) {
    if (!s->n || v < s->min) s->min = v;
    if (!s->n || v > s->max) s->max = v;
    s->n++;
    double d = v - s->mean;
    s->mean += d / (double)s->n;
    s->m2 += d * (v - s->mean);
}

static double stats_std(const stats *s) {
    return s->n ? sqrt(s->m2 / (double)s->n) : NAN;
}

static void print_stats_row(const char *name, const stats *s) {
    if (!s->n)
        printf("  %-24s %12s %12s %12s %12s %8lld\n", name, "-", "-", "-", "-",
               (long long)s->missing);
    else
        printf("  %-24s %12.6g %12.6g %12.6g %12.6g %8lld\n", name, s->min, s->max, s->mean,
               stats_std(s), (long long)s->missing);
}

static void print_stats_header(void) {
    printf("  %-24s %12s %12s %12s %12s %8s\n", "feature", "min", "max", "mean", "std", "missing");
}

/* Prints "name count percent" lines for a class balance. */
static void print_balance(char *const *names, const int64_t *count, int k, int64_t n) {
    printf("class balance:\n");
    for (int c = 0; c < k; c++)
        printf("  %-24s %10lld %7.2f%%\n", names[c], (long long)count[c],
               n ? 100.0 * (double)count[c] / (double)n : 0.0);
}

static int describe_idx(const describe_args *a) {
    int ndims = 0;
    kl_idx_probe(a->file, &ndims);
    char digest[KL_DIGEST_LEN];
    if (ndims == 1) { /* a labels file on its own */
        if (a->labels) {
            fprintf(stderr, "kiln data: \"%s\" is a labels file; --labels is for images\n",
                    a->file);
            return 2;
        }
        kl_dataset ds;
        memset(&ds, 0, sizeof ds);
        if (kl_idx_read_labels(a->file, 0, &ds.y, &ds.n)) return kl_cli_fail("data");
        int32_t mx = -1;
        for (int64_t i = 0; i < ds.n; i++)
            mx = ds.y[i] > mx ? ds.y[i] : mx;
        int64_t *count = calloc((size_t)mx + 2, sizeof *count);
        char **names = calloc((size_t)mx + 2, sizeof *names);
        int rc = 0;
        if (!count || !names || kl_digest_dataset(&ds, digest)) {
            rc = kl_cli_fail("data");
        } else {
            for (int64_t i = 0; i < ds.n; i++)
                count[ds.y[i]]++;
            printf("file:      %s\nformat:    idx labels\nrows:      %lld\nclasses:   %d\n"
                   "digest:    %s\n",
                   a->file, (long long)ds.n, mx + 1, digest);
            char buf[16];
            for (int c = 0; c <= mx; c++) {
                snprintf(buf, sizeof buf, "%d", c);
                names[c] = strdup(buf);
            }
            print_balance(names, count, mx + 1, ds.n);
            kl_strings_free(names, mx + 1);
            names = NULL;
        }
        free(names);
        free(count);
        kl_dataset_free(&ds);
        return rc;
    }
    kl_dataset ds;
    int rows, cols;
    if (kl_idx_read_dataset(a->file, a->labels, 0, NULL, &ds, &rows, &cols))
        return kl_cli_fail("data");
    stats *st = calloc((size_t)ds.d, sizeof *st);
    int64_t *count = calloc((size_t)ds.n_classes + 1, sizeof *count);
    if (!st || !count || kl_digest_dataset(&ds, digest)) {
        if (!st || !count) kl_seterr(KL_ENOMEM, "statistics for %lld features", (long long)ds.d);
        free(st);
        free(count);
        kl_dataset_free(&ds);
        return kl_cli_fail("data");
    }
    stats overall = {0};
    for (int64_t i = 0; i < ds.n; i++)
        for (int64_t j = 0; j < ds.d; j++) {
            double v = ds.x[i * ds.d + j];
            stats_add(&st[j], v);
            stats_add(&overall, v);
        }
    printf("file:      %s\nformat:    idx\nrows:      %lld\nitem:      %dx%d\nfeatures:  %lld\n",
           a->file, (long long)ds.n, rows, cols, (long long)ds.d);
    if (a->labels) printf("labels:    %s\nclasses:   %d\n", a->labels, ds.n_classes);
    printf("digest:    %s\n", digest);
    if (ds.y) {
        for (int64_t i = 0; i < ds.n; i++)
            count[ds.y[i]]++;
        print_balance(ds.class_names, count, ds.n_classes, ds.n);
    }
    int compact = !a->all && ds.d > 4 * EDGE;
    if (compact)
        printf("features (first and last %d of %lld; --all lists every one):\n", EDGE,
               (long long)ds.d);
    else
        printf("features:\n");
    print_stats_header();
    print_stats_row("(all features)", &overall);
    for (int64_t j = 0; j < ds.d; j++) {
        if (compact && j == EDGE) printf("  %-24s\n", "...");
        if (compact && j >= EDGE && j < ds.d - EDGE) continue;
        char name[48];
        snprintf(name, sizeof name, "px[%lld,%lld]", (long long)(j / cols), (long long)(j % cols));
        print_stats_row(name, &st[j]);
    }
    free(st);
    free(count);
    kl_dataset_free(&ds);
    return 0;
}

/* 1 if column name appears in the comma-separated list. */
static int in_list(const char *list, const char *name) {
    if (!list) return 0;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *q = strchr(p, ',');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return 1;
        if (!q) break;
        p = q + 1;
    }
    return 0;
}

static int cmp_strp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Distinct values of column c (sorted by strcmp, missing skipped) with counts; returns the
 * number of distinct values, or -1 when out of memory. *vals borrows the table's strings. */
static int64_t column_counts(const kl_csv_table *t, int c, const char ***vals, int64_t **counts) {
    const char **v = malloc((size_t)(t->n_rows ? t->n_rows : 1) * sizeof *v);
    int64_t *k = malloc((size_t)(t->n_rows ? t->n_rows : 1) * sizeof *k);
    if (!v || !k) {
        free(v);
        free(k);
        return -1;
    }
    int64_t n = 0, u = 0;
    for (int64_t r = 0; r < t->n_rows; r++)
        if (!kl_csv_is_missing(kl_csv_cell(t, r, c))) v[n++] = kl_csv_cell(t, r, c);
    qsort(v, (size_t)n, sizeof *v, cmp_strp);
    for (int64_t i = 0; i < n; i++) {
        if (u && !strcmp(v[u - 1], v[i])) {
            k[u - 1]++;
            continue;
        }
        v[u] = v[i];
        k[u++] = 1;
    }
    *vals = v;
    *counts = k;
    return u;
}

/* A label value with its count, for ordering classes as training does. */
typedef struct {
    const char *s; /* label text */
    double v;      /* its numeric value */
    int64_t count; /* rows with this label */
} label_count;

static int cmp_label_num(const void *a, const void *b) {
    const label_count *x = a, *y = b;
    if (x->v != y->v) return (x->v > y->v) - (x->v < y->v);
    return strcmp(x->s, y->s);
}

/* Reorders strcmp-sorted labels numerically when all are numbers, as the CSV encoder orders
 * its classes, so the balance lists classes in model order. */
static void sort_like_classes(const char **vals, int64_t *counts, int64_t n) {
    label_count *k = malloc((size_t)(n ? n : 1) * sizeof *k);
    if (!k) return;
    for (int64_t i = 0; i < n; i++) {
        k[i].s = vals[i];
        k[i].count = counts[i];
        if (!kl_csv_parse_number(vals[i], &k[i].v)) {
            free(k);
            return;
        }
    }
    qsort(k, (size_t)n, sizeof *k, cmp_label_num);
    for (int64_t i = 0; i < n; i++) {
        vals[i] = k[i].s;
        counts[i] = k[i].count;
    }
    free(k);
}

static int describe_csv(const describe_args *a) {
    kl_csv_table t;
    if (kl_csv_read(a->file, &t)) return kl_cli_fail("data");
    char digest[KL_DIGEST_LEN];
    if (kl_digest_csv(&t, digest)) {
        kl_csv_free(&t);
        return kl_cli_fail("data");
    }
    const char *label = a->label_column ? a->label_column : "label";
    int lc = kl_csv_find_column(&t, label);
    if (a->label_column && lc < 0) {
        kl_seterr(KL_EINVAL, "--label-column: \"%s\" is not a column of \"%s\"", label, a->file);
        kl_csv_free(&t);
        return kl_cli_fail("data");
    }
    for (const char *p = a->categorical; p && *p;) {
        const char *q = strchr(p, ',');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        int found = 0;
        for (int c = 0; c < t.n_cols && !found; c++)
            found = strlen(kl_csv_colname(&t, c)) == len && !strncmp(kl_csv_colname(&t, c), p, len);
        if (!found) {
            kl_seterr(KL_EINVAL, "--categorical: \"%.*s\" is not a column of \"%s\"", (int)len, p,
                      a->file);
            kl_csv_free(&t);
            return kl_cli_fail("data");
        }
        p = q ? q + 1 : p + len;
    }
    printf("file:      %s\nformat:    csv\nrows:      %lld\ncolumns:   %d\n", a->file,
           (long long)t.n_rows, t.n_cols);
    if (lc >= 0) printf("label:     %s\n", label);
    printf("digest:    %s\n", digest);
    int rc = 0;
    const char **vals = NULL;
    int64_t *counts = NULL;
    if (lc >= 0) {
        int64_t u = column_counts(&t, lc, &vals, &counts);
        if (u < 0) goto oom;
        printf("classes:   %lld\n", (long long)u);
        sort_like_classes(vals, counts, u);
        print_balance((char *const *)vals, counts, (int)u, t.n_rows);
        free(vals);
        free(counts);
        vals = NULL;
        counts = NULL;
    }
    printf("numeric columns:\n");
    print_stats_header();
    int shown = 0, n_feat = t.n_cols - (lc >= 0);
    int compact = !a->all && n_feat > 4 * EDGE;
    for (int c = 0; c < t.n_cols; c++) {
        if (c == lc || in_list(a->categorical, kl_csv_colname(&t, c))) continue;
        stats s = {0};
        int text = 0;
        for (int64_t r = 0; r < t.n_rows && !text; r++) {
            const char *v = kl_csv_cell(&t, r, c);
            double x;
            if (kl_csv_is_missing(v))
                s.missing++;
            else if (kl_csv_parse_number(v, &x))
                stats_add(&s, x);
            else
                text = 1;
        }
        if (text) continue;
        shown++;
        if (compact && shown == EDGE + 1) printf("  %-24s (--all lists every one)\n", "...");
        if (compact && shown > EDGE && shown <= n_feat - EDGE) continue;
        print_stats_row(kl_csv_colname(&t, c), &s);
    }
    printf("categorical columns:\n  %-24s %10s %-24s %10s %8s\n", "column", "distinct", "top",
           "top count", "missing");
    for (int c = 0; c < t.n_cols; c++) {
        if (c == lc) continue;
        int declared = in_list(a->categorical, kl_csv_colname(&t, c)), text = 0;
        int64_t missing = 0;
        for (int64_t r = 0; r < t.n_rows; r++) {
            const char *v = kl_csv_cell(&t, r, c);
            double x;
            if (kl_csv_is_missing(v))
                missing++;
            else if (!kl_csv_parse_number(v, &x))
                text = 1;
        }
        if (!declared && !text) continue;
        int64_t u = column_counts(&t, c, &vals, &counts);
        if (u < 0) goto oom;
        int64_t top = 0;
        for (int64_t i = 1; i < u; i++)
            if (counts[i] > counts[top]) top = i;
        char name[256];
        snprintf(name, sizeof name, "%s%s", kl_csv_colname(&t, c), declared ? "" : " (inferred)");
        printf("  %-24s %10lld %-24s %10lld %8lld\n", name, (long long)u, u ? vals[top] : "-",
               u ? (long long)counts[top] : 0LL, (long long)missing);
        free(vals);
        free(counts);
        vals = NULL;
        counts = NULL;
    }
    goto done;
oom:
    kl_seterr(KL_ENOMEM, "describing \"%s\"", a->file);
    rc = kl_cli_fail("data");
done:
    free(vals);
    free(counts);
    kl_csv_free(&t);
    return rc;
}

/* "idx", "csv", or NULL (with a message) from the content and the name. */
static const char *detect_format(const char *path) {
    if (kl_idx_probe(path, NULL)) return "idx";
    size_t n = strlen(path);
    if ((n >= 4 && !strcmp(path + n - 4, ".csv")) || (n >= 7 && !strcmp(path + n - 7, ".csv.gz")))
        return "csv";
    FILE *f = fopen(path, "rb");
    if (!f) {
        kl_seterr(KL_EIO, "cannot open \"%s\"", path);
        return NULL;
    }
    fclose(f);
    kl_seterr(KL_EFORMAT,
              "cannot tell the format of \"%s\": no IDX magic (00 00 <type> <ndims>) "
              "and no .csv or .csv.gz extension",
              path);
    return NULL;
}

static int cmd_describe(int argc, char **argv) {
    describe_args a = {0};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(o, "--labels") && has) {
            a.labels = argv[++i];
        } else if (!strcmp(o, "--label-column") && has) {
            a.label_column = argv[++i];
        } else if (!strcmp(o, "--categorical") && has) {
            a.categorical = argv[++i];
        } else if (!strcmp(o, "--all")) {
            a.all = 1;
        } else if (o[0] != '-' && !a.file) {
            a.file = o;
        } else {
            fprintf(stderr, "kiln data: unknown or incomplete option \"%s\"\n\n", o);
            usage(stderr);
            return 2;
        }
    }
    if (!a.file) {
        fprintf(stderr, "kiln data: describe needs a FILE\n\n");
        usage(stderr);
        return 2;
    }
    const char *fmt = detect_format(a.file);
    if (!fmt) return kl_cli_fail("data");
    if (!strcmp(fmt, "idx")) {
        if (a.label_column || a.categorical) {
            fprintf(stderr, "kiln data: --label-column and --categorical are for CSV files\n");
            return 2;
        }
        return describe_idx(&a);
    }
    if (a.labels) {
        fprintf(stderr, "kiln data: --labels is for IDX files; CSV labels are a column\n");
        return 2;
    }
    return describe_csv(&a);
}

int kl_cmd_data(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "describe")) return cmd_describe(argc - 1, argv + 1);
    fprintf(stderr, "kiln data: unknown subcommand \"%s\"\n\n", argv[1]);
    usage(stderr);
    return 2;
}
