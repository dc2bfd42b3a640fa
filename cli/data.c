/* data.c — `kiln data`: describe (shapes, digest, class balance and per-feature statistics of an
 * IDX or CSV file, read by the same code that training uses), snapshot (content-addressed copies
 * in a local store or MLflow), diff (schema and distribution changes), ingest (a database query
 * into a CSV) and check (data checks before training). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "data/checks.h"
#include "data/csv.h"
#include "data/diff.h"
#include "data/digest.h"
#include "data/idx.h"
#include "data/ingest.h"
#include "data/profile.h"
#include "data/snapshot.h"
#include "runtime/fileio.h"
#include "tracking/mlflow.h"

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
            "usage: kiln data describe|snapshot|diff|ingest|check ... (--help on each)\n\n"
            "usage: kiln data describe FILE|DIGEST [--labels FILE] [--label-column NAME]\n"
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
    const char *fmt = NULL;
    return kl_data_detect_format(path, &fmt) == KL_OK ? fmt : NULL;
}

/* When arg is not a file but a snapshot digest (prefix) in the store (--store, else the
 * default), resolves it: *path and *labels become its first dataset, snap holds them (free it)
 * and 1 is returned. 0: arg is used as it is; -1: an error (message set). */
static int open_ref(const char *arg, const char *labels, const char *store_opt,
                    kl_snapshot_files *snap, const char **path, const char **labels_out) {
    if (access(arg, F_OK) == 0 || !kl_snapshot_is_ref(arg)) return 0;
    if (labels) {
        kl_seterr(KL_EINVAL, "%s: a snapshot brings its own labels; drop --labels", arg);
        return -1;
    }
    char store[4096];
    if (store_opt)
        snprintf(store, sizeof store, "%s", store_opt);
    else if (kl_snapshot_default_store(store, sizeof store))
        return -1;
    if (kl_snapshot_resolve(store, arg, snap)) return -1;
    if (snap->n > 1)
        fprintf(stderr, "kiln data: snapshot %.19s holds %d datasets; using the first\n",
                snap->digest, snap->n);
    *path = snap->paths[0];
    *labels_out = snap->labels[0];
    return 1;
}

static int describe_file(describe_args *ap);

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
    kl_snapshot_files snap;
    int r = open_ref(a.file, a.labels, NULL, &snap, &a.file, &a.labels);
    if (r < 0) return kl_cli_fail("data");
    int rc = describe_file(&a);
    if (r) kl_snapshot_files_free(&snap);
    return rc;
}

static int describe_file(describe_args *ap) {
    describe_args a = *ap;
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

/* --- shared by snapshot, diff, ingest and check ----------------------------------------------- */

/* Prints a usage error for sub and returns 2. */
static int bad_usage(const char *sub, const char *what, const char *text) {
    fprintf(stderr, "kiln data %s: %s\n\n%s", sub, what, text);
    return 2;
}

/* The store: --store DIR, else the default. */
static int pick_store(const char *opt, char *buf, size_t size) {
    if (opt) {
        snprintf(buf, size, "%s", opt);
        return 0;
    }
    return kl_snapshot_default_store(buf, size) == KL_OK ? 0 : -1;
}

/* --- snapshot --------------------------------------------------------------------------------- */

static const char SNAPSHOT_USAGE[] =
    "usage: kiln data snapshot FILE [--labels FILE] [FILE [--labels FILE]]... [--name NAME]\n"
    "                          [--store DIR | --mlflow [--run ID | --experiment NAME]]\n"
    "       kiln data snapshot --list [--store DIR]\n"
    "\n"
    "Copies the dataset files, with a manifest (SHA-256 and size of each file, the schema, rows,\n"
    "the data digest), into a content-addressed store, and prints the digest: the dataset's\n"
    "version. Taking the same snapshot again changes nothing.\n"
    "  --labels FILE       IDX labels for the IDX images FILE before it\n"
    "  --name NAME         a name kept in the manifest\n"
    "  --store DIR         the local store (default $KILN_DATA_STORE or ~/.cache/kiln/datasets)\n"
    "  --mlflow            upload to MLflow (MLFLOW_TRACKING_URI) as artifacts datasets/<hex>/\n"
    "  --run ID            ... of this run (default: a new run)\n"
    "  --experiment NAME   ... the new run's experiment (default kiln-datasets)\n"
    "  --list              list the store's snapshots, newest first\n";

/* Uploads a staged snapshot directory to a run (a new one unless run_id is given). */
static int snapshot_to_mlflow(const char *staged, const char *digest, const char *run_id,
                              const char *experiment, const char *name) {
    kl_mlflow *c = NULL;
    if (kl_mlflow_open(NULL, &c)) return kl_cli_fail("data snapshot: --mlflow");
    char artifact_uri[512] = "", created_run[64] = "";
    kl_status st = KL_OK;
    if (run_id) {
        kl_mlflow_run_info info;
        if ((st = kl_mlflow_get_run(c, run_id, &info)) == KL_OK) {
            snprintf(artifact_uri, sizeof artifact_uri, "%s", info.artifact_uri);
            kl_mlflow_run_info_free(&info);
        }
    } else {
        char exp_id[64];
        kl_mlflow_run run;
        char run_name[160];
        snprintf(run_name, sizeof run_name, "snapshot %s", name ? name : digest + 7);
        run_name[name ? sizeof run_name - 1 : 9 + 12] = '\0';
        kl_kv tag = {"kiln.dataset_digest", digest};
        st = kl_mlflow_experiment(c, experiment ? experiment : "kiln-datasets", exp_id);
        if (st == KL_OK)
            st = kl_mlflow_create_run(c, exp_id, run_name, (int64_t)time(NULL) * 1000, &tag, 1,
                                      &run);
        if (st == KL_OK) {
            snprintf(artifact_uri, sizeof artifact_uri, "%s", run.artifact_uri);
            snprintf(created_run, sizeof created_run, "%s", run.run_id);
        }
    }
    char dir[128];
    snprintf(dir, sizeof dir, "datasets/%s", digest + 7);
    if (st == KL_OK) st = kl_mlflow_upload_dir(c, artifact_uri, staged, dir);
    if (st == KL_OK) {
        /* The dataset as a run input too, so the MLflow UI shows it with its digest. */
        char source[1200], profile[128];
        snprintf(source, sizeof source, "{\"uri\": \"%.600s/%s\"}", artifact_uri, dir);
        snprintf(profile, sizeof profile, "{\"digest\": \"%s\"}", digest);
        kl_mlflow_dataset ds = {.name = name ? name : "snapshot",
                                .digest = digest,
                                .source_type = "local",
                                .source = source,
                                .profile = profile,
                                .context = "snapshot"};
        if (kl_mlflow_log_inputs(c, run_id ? run_id : created_run, &ds, 1))
            fprintf(stderr, "kiln data snapshot: warning: logging the dataset input: %s\n",
                    kl_errmsg());
    }
    if (created_run[0])
        kl_mlflow_update_run(c, created_run, st == KL_OK ? "FINISHED" : "FAILED",
                             (int64_t)time(NULL) * 1000);
    kl_mlflow_close(c);
    if (st != KL_OK) return kl_cli_fail("data snapshot: --mlflow");
    printf("%s\n", digest);
    fprintf(stderr, "kiln data snapshot: uploaded to run %s as %s/\n",
            run_id ? run_id : created_run, dir);
    return 0;
}

static int snapshot_list(const char *store) {
    kl_snapshot_entry *v = NULL;
    int n = 0;
    if (kl_snapshot_list(store, &v, &n)) return kl_cli_fail("data snapshot --list");
    printf("%-23s %-20s %12s %14s %6s  %s\n", "digest", "created", "rows", "bytes", "files",
           "name");
    for (int i = 0; i < n; i++)
        printf("%-23.23s %-20s %12lld %14lld %6d  %s\n", v[i].digest, v[i].created,
               (long long)v[i].rows, (long long)v[i].bytes, v[i].n_files, v[i].name);
    if (!n) fprintf(stderr, "kiln data snapshot: no snapshots in \"%s\"\n", store);
    free(v);
    return 0;
}

static int cmd_snapshot(int argc, char **argv) {
    kl_snapshot_input *in = calloc((size_t)argc, sizeof *in);
    if (!in) return 1;
    int n = 0, list = 0, mlflow = 0, rc = 0;
    const char *store_opt = NULL, *name = NULL, *run_id = NULL, *experiment = NULL;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            printf("%s", SNAPSHOT_USAGE);
            free(in);
            return 0;
        } else if (!strcmp(o, "--labels") && has) {
            if (!n || in[n - 1].labels) {
                free(in);
                return bad_usage("snapshot", "--labels must follow its IDX images FILE",
                                 SNAPSHOT_USAGE);
            }
            in[n - 1].labels = argv[++i];
        } else if (!strcmp(o, "--name") && has) {
            name = argv[++i];
        } else if (!strcmp(o, "--store") && has) {
            store_opt = argv[++i];
        } else if (!strcmp(o, "--run") && has) {
            run_id = argv[++i];
        } else if (!strcmp(o, "--experiment") && has) {
            experiment = argv[++i];
        } else if (!strcmp(o, "--mlflow")) {
            mlflow = 1;
        } else if (!strcmp(o, "--list")) {
            list = 1;
        } else if (o[0] != '-') {
            in[n++].path = o;
        } else {
            char msg[300];
            snprintf(msg, sizeof msg, "unknown or incomplete option \"%s\"", o);
            free(in);
            return bad_usage("snapshot", msg, SNAPSHOT_USAGE);
        }
    }
    const char *err = NULL;
    if (list && (n || mlflow)) err = "--list takes no FILE and no --mlflow";
    if (!list && !n) err = "snapshot needs at least one FILE";
    if (mlflow && store_opt) err = "--store and --mlflow exclude each other";
    if (!mlflow && (run_id || experiment)) err = "--run and --experiment go with --mlflow";
    if (run_id && experiment) err = "--run and --experiment exclude each other";
    if (err) {
        free(in);
        return bad_usage("snapshot", err, SNAPSHOT_USAGE);
    }
    char store[4096], digest[KL_DIGEST_LEN];
    if (!mlflow && pick_store(store_opt, store, sizeof store)) {
        rc = kl_cli_fail("data snapshot");
    } else if (list) {
        rc = snapshot_list(store);
    } else if (mlflow) {
        const char *tmp = getenv("TMPDIR");
        char staged[4096];
        snprintf(staged, sizeof staged, "%s/kiln-snapshot-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(staged)) {
            kl_seterr(KL_EIO, "cannot create a staging directory in %s", tmp ? tmp : "/tmp");
            rc = kl_cli_fail("data snapshot");
        } else {
            if (kl_snapshot_stage(in, n, name, staged, digest))
                rc = kl_cli_fail("data snapshot");
            else
                rc = snapshot_to_mlflow(staged, digest, run_id, experiment, name);
            kl_snapshot_remove_dir(staged);
        }
    } else {
        int created = 0;
        if (kl_snapshot_save(store, in, n, name, digest, &created)) {
            rc = kl_cli_fail("data snapshot");
        } else {
            printf("%s\n", digest);
            fprintf(stderr, "kiln data snapshot: %s %s/sha256/%s\n",
                    created ? "stored in" : "already in the store:", store, digest + 7);
        }
    }
    free(in);
    return rc;
}

/* --- diff ------------------------------------------------------------------------------------- */

static const char DIFF_USAGE[] =
    "usage: kiln data diff A B [--labels-a FILE] [--labels-b FILE] [--store DIR] [--json]\n"
    "\n"
    "Compares two versions of a dataset, each a file or a snapshot digest (sha256:<prefix>, from\n"
    "the store): schema changes, row counts, and per column the missing rate, mean, std, min,\n"
    "max, population stability index (PSI) and Kolmogorov-Smirnov statistic (numeric), or the\n"
    "category shares that moved most (categorical). Exits 0 whether or not they differ.\n"
    "  --labels-a/-b FILE  IDX labels for an IDX images A / B\n"
    "  --store DIR         where snapshot digests are looked up\n"
    "  --json              the report as JSON\n";

/* Profiles a diff side: an existing file, else a snapshot digest in the store. */
static kl_status profile_side(const char *ref, const char *labels, const char *store_opt,
                              kl_data_profile *out) {
    kl_snapshot_files snap;
    const char *path = ref;
    int r = open_ref(ref, labels, store_opt, &snap, &path, &labels);
    if (r < 0) return KL_EINVAL;
    kl_status st = kl_data_profile_file(path, labels, out);
    if (r) kl_snapshot_files_free(&snap);
    return st;
}

static void pair_num(char *buf, size_t size, const double v[2], int pct) {
    char a[24], b[24];
    double k = pct ? 100 : 1;
    snprintf(a, sizeof a, isfinite(v[0]) ? (pct ? "%.1f%%" : "%.4g") : "-", k * v[0]);
    snprintf(b, sizeof b, isfinite(v[1]) ? (pct ? "%.1f%%" : "%.4g") : "-", k * v[1]);
    snprintf(buf, size, "%s -> %s", a, b);
}

static void print_diff(const kl_data_diff *d, const char *na, const char *nb) {
    const char *names[2] = {na, nb};
    for (int s = 0; s < 2; s++) {
        printf("%s: %s (%s, %lld rows", s ? "B" : "A", names[s], d->format[s],
               (long long)d->rows[s]);
        for (int k = 1; k < d->n_dims[s]; k++)
            printf("%s%lld", k == 1 ? ", item " : "x", (long long)d->shape[s][k]);
        printf(", %s)\n", d->digest[s]);
    }
    printf("identical: %s\nschema:    %s\nrows:      %lld -> %lld (%+lld)\n",
           d->identical ? "yes" : "no", d->schema_changed ? "changed" : "same",
           (long long)d->rows[0], (long long)d->rows[1], (long long)(d->rows[1] - d->rows[0]));
    printf("columns changed: %d of %d\n", d->n_changed, d->n);
    printf("  %-20s %-12s %-25s %-17s %-21s %-21s %-21s %-21s %8s %6s\n", "column", "change",
           "type", "missing", "mean", "std", "min", "max", "psi", "ks");
    for (int j = 0; j < d->n; j++) {
        const kl_column_diff *c = &d->cols[j];
        const char *change = c->change == KL_DIFF_SAME      ? (c->changed ? "shifted" : "-")
                             : c->change == KL_DIFF_ADDED   ? "added"
                             : c->change == KL_DIFF_REMOVED ? "removed"
                                                            : "type";
        char type[40], miss[64], mean[64], sd[64], mn[64], mx[64], psi[16], ks[16];
        if (!strcmp(c->type[0], c->type[1]))
            snprintf(type, sizeof type, "%s", c->type[0]);
        else
            snprintf(type, sizeof type, "%s -> %s", c->type[0][0] ? c->type[0] : "-",
                     c->type[1][0] ? c->type[1] : "-");
        pair_num(miss, sizeof miss, c->missing, 1);
        pair_num(mean, sizeof mean, c->mean, 0);
        pair_num(sd, sizeof sd, c->std, 0);
        pair_num(mn, sizeof mn, c->min, 0);
        pair_num(mx, sizeof mx, c->max, 0);
        snprintf(psi, sizeof psi, isfinite(c->psi) ? "%.4f" : "-", c->psi);
        snprintf(ks, sizeof ks, isfinite(c->ks) ? "%.4f" : "-", c->ks);
        printf("%c %-20s %-12s %-25s %-17s %-21s %-21s %-21s %-21s %8s %6s\n",
               c->changed ? '!' : ' ', c->name, change, type, miss, mean, sd, mn, mx, psi, ks);
        for (int k = 0; k < c->n_top; k++)
            printf("      %-30s %6.2f%% -> %6.2f%%\n", c->top[k].value, 100 * c->top[k].share[0],
                   100 * c->top[k].share[1]);
    }
}

static int cmd_diff(int argc, char **argv) {
    const char *side[2] = {NULL, NULL}, *labels[2] = {NULL, NULL}, *store = NULL;
    int json = 0, n = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            printf("%s", DIFF_USAGE);
            return 0;
        } else if (!strcmp(o, "--labels-a") && has) {
            labels[0] = argv[++i];
        } else if (!strcmp(o, "--labels-b") && has) {
            labels[1] = argv[++i];
        } else if (!strcmp(o, "--store") && has) {
            store = argv[++i];
        } else if (!strcmp(o, "--json")) {
            json = 1;
        } else if (o[0] != '-' && n < 2) {
            side[n++] = o;
        } else {
            char msg[300];
            snprintf(msg, sizeof msg, "unknown or extra argument \"%s\"", o);
            return bad_usage("diff", msg, DIFF_USAGE);
        }
    }
    if (n != 2) return bad_usage("diff", "diff needs A and B", DIFF_USAGE);
    kl_data_profile p[2];
    memset(p, 0, sizeof p);
    for (int s = 0; s < 2; s++)
        if (profile_side(side[s], labels[s], store, &p[s])) {
            if (s) kl_data_profile_free(&p[0]);
            return kl_cli_fail("data diff");
        }
    kl_data_diff d;
    int rc = 0;
    if (kl_data_diff_profiles(&p[0], &p[1], &d)) {
        rc = kl_cli_fail("data diff");
    } else if (json) {
        char *text = kl_data_diff_json(&d, side[0], side[1]);
        if (text)
            printf("%s\n", text);
        else
            rc = kl_cli_fail("data diff");
        free(text);
    } else {
        print_diff(&d, side[0], side[1]);
    }
    kl_data_diff_free(&d);
    kl_data_profile_free(&p[0]);
    kl_data_profile_free(&p[1]);
    return rc;
}

/* --- ingest ----------------------------------------------------------------------------------- */

static const char INGEST_USAGE[] =
    "usage: kiln data ingest --from SOURCE (--query SQL | --table NAME) --out FILE.csv\n"
    "                        [--snapshot [--store DIR] [--name NAME]]\n"
    "\n"
    "Runs a query on a database and writes the rows as a CSV file (header: the column names;\n"
    "NULL: an empty field).\n"
    "  --from SOURCE   postgresql://user:pass@host:port/db (libpq), or sqlite:PATH\n"
    "  --query SQL     the query; or --table NAME for every row of a table\n"
    "  --out FILE.csv  the CSV to write (replaced whole, only when the query succeeds)\n"
    "  --snapshot      also snapshot the CSV into the store (prints its digest)\n";

static int cmd_ingest(int argc, char **argv) {
    kl_ingest_config cfg = {0};
    const char *out = NULL, *store_opt = NULL, *name = NULL;
    int snap = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            printf("%s", INGEST_USAGE);
            return 0;
        } else if (!strcmp(o, "--from") && has) {
            cfg.source = argv[++i];
        } else if (!strcmp(o, "--query") && has) {
            cfg.query = argv[++i];
        } else if (!strcmp(o, "--table") && has) {
            cfg.table = argv[++i];
        } else if (!strcmp(o, "--out") && has) {
            out = argv[++i];
        } else if (!strcmp(o, "--store") && has) {
            store_opt = argv[++i];
        } else if (!strcmp(o, "--name") && has) {
            name = argv[++i];
        } else if (!strcmp(o, "--snapshot")) {
            snap = 1;
        } else {
            char msg[300];
            snprintf(msg, sizeof msg, "unknown or incomplete option \"%s\"", o);
            return bad_usage("ingest", msg, INGEST_USAGE);
        }
    }
    const char *err = !cfg.source                    ? "ingest needs --from"
                      : !out                         ? "ingest needs --out FILE.csv"
                      : !!cfg.query == !!cfg.table   ? "give one of --query and --table"
                      : !snap && (store_opt || name) ? "--store and --name go with --snapshot"
                                                     : NULL;
    if (err) return bad_usage("ingest", err, INGEST_USAGE);
    int64_t rows = 0;
    int cols = 0;
    if (kl_ingest_to_csv(&cfg, out, &rows, &cols)) return kl_cli_fail("data ingest");
    fprintf(stderr, "kiln data ingest: wrote %lld rows of %d columns to %s\n", (long long)rows,
            cols, out);
    if (!snap) return 0;
    char store[4096], digest[KL_DIGEST_LEN];
    kl_snapshot_input in = {out, NULL};
    int created = 0;
    if (pick_store(store_opt, store, sizeof store) ||
        kl_snapshot_save(store, &in, 1, name, digest, &created))
        return kl_cli_fail("data ingest: --snapshot");
    printf("%s\n", digest);
    fprintf(stderr, "kiln data ingest: snapshot %s %s/sha256/%s\n",
            created ? "stored in" : "already in the store:", store, digest + 7);
    return 0;
}

/* --- check ------------------------------------------------------------------------------------ */

static const char CHECK_USAGE[] =
    "usage: kiln data check FILE|DIGEST [--labels FILE] --spec CHECKS.yaml [--report FILE.json]\n"
    "                       [--store DIR]\n"
    "\n"
    "Runs data checks (min_rows, columns and types, strict_columns, max_missing, ranges, label\n"
    "balance; see data/checks.h) and prints each with its measured value. Exits 1 when one\n"
    "fails. The spec is a YAML mapping of checks, or a config with a checks: block.\n"
    "  --labels FILE       IDX labels for an IDX images FILE\n"
    "  --report FILE.json  also write the results as JSON\n"
    "  --store DIR         where a snapshot DIGEST (sha256:<prefix>) is looked up\n";

static int cmd_check(int argc, char **argv) {
    const char *file = NULL, *labels = NULL, *spec_path = NULL, *report = NULL, *store = NULL;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            printf("%s", CHECK_USAGE);
            return 0;
        } else if (!strcmp(o, "--labels") && has) {
            labels = argv[++i];
        } else if (!strcmp(o, "--spec") && has) {
            spec_path = argv[++i];
        } else if (!strcmp(o, "--report") && has) {
            report = argv[++i];
        } else if (!strcmp(o, "--store") && has) {
            store = argv[++i];
        } else if (o[0] != '-' && !file) {
            file = o;
        } else {
            char msg[300];
            snprintf(msg, sizeof msg, "unknown or extra argument \"%s\"", o);
            return bad_usage("check", msg, CHECK_USAGE);
        }
    }
    if (!file || !spec_path) return bad_usage("check", "check needs FILE and --spec", CHECK_USAGE);
    char *text = NULL;
    size_t len = 0;
    kl_data_checks *spec = malloc(sizeof *spec);
    if (!spec) return 1;
    if (kl_file_read(spec_path, 1u << 20, &text, &len) ||
        kl_preferr(kl_data_checks_parse_yaml(text, spec), "%s", spec_path)) {
        free(text);
        free(spec);
        return kl_cli_fail("data check");
    }
    free(text);
    kl_data_check_result *res = NULL;
    int n = 0, all = 0, rc = 0;
    kl_snapshot_files snap;
    const char *path = file;
    int r = open_ref(file, labels, store, &snap, &path, &labels);
    kl_status st = r < 0 ? KL_EINVAL : kl_data_checks_run_file(spec, path, labels, &res, &n, &all);
    if (r > 0) kl_snapshot_files_free(&snap);
    free(spec);
    if (st) return kl_cli_fail("data check");
    int failed = 0;
    for (int i = 0; i < n; i++) {
        printf("%s  %-28s %s\n", res[i].passed ? "PASS" : "FAIL", res[i].name, res[i].detail);
        failed += !res[i].passed;
    }
    if (!n) printf("(no checks in %s)\n", spec_path);
    if (report) {
        char *json = kl_data_checks_report_json(file, res, n, all);
        if (!json || kl_file_write_atomic(report, json, strlen(json))) {
            if (!json) kl_seterr(KL_ENOMEM, "report");
            rc = kl_cli_fail("data check: --report");
        }
        free(json);
    }
    free(res);
    if (failed) {
        fprintf(stderr, "kiln data check: %d of %d checks failed\n", failed, n);
        return 1;
    }
    return rc;
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
    if (!strcmp(argv[1], "snapshot")) return cmd_snapshot(argc - 1, argv + 1);
    if (!strcmp(argv[1], "diff")) return cmd_diff(argc - 1, argv + 1);
    if (!strcmp(argv[1], "ingest")) return cmd_ingest(argc - 1, argv + 1);
    if (!strcmp(argv[1], "check")) return cmd_check(argc - 1, argv + 1);
    fprintf(stderr, "kiln data: unknown subcommand \"%s\"\n\n", argv[1]);
    usage(stderr);
    return 2;
}
