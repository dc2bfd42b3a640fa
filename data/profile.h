/* profile.h — a dataset file read as typed columns with their statistics, for snapshots (the
 * schema), diffs (distributions) and checks (missing rates, ranges, label balance).
 *
 * A CSV file gives one column per header name. A column is "numeric" when every present cell
 * is a number, "empty" when every cell is missing (kl_csv_is_missing), else "categorical".
 * An IDX images file gives one numeric column "pixel" holding every value of every image (its
 * statistics are over all values; the kept values for distribution tests are a strided sample of
 * at most KL_PROFILE_MAX_VALUES), and with a labels file a categorical column "label". An IDX
 * labels file alone gives the column "label".
 */
#ifndef KL_PROFILE_H
#define KL_PROFILE_H

#include <stdint.h>

#include "data/digest.h" /* KL_DIGEST_LEN */
#include "runtime/status.h"

#define KL_PROFILE_MAX_VALUES 1000000

typedef enum { KL_COL_NUMERIC, KL_COL_CATEGORICAL, KL_COL_EMPTY } kl_col_type;

/* One column. */
typedef struct {
    char *name;         /* column name, owned */
    kl_col_type type;   /* numeric, categorical or empty */
    int64_t present;    /* cells that are not missing */
    int64_t missing;    /* missing cells */
    double min, max;    /* numeric: extremes of present values */
    double mean, std;   /* numeric: mean and population standard deviation */
    double *values;     /* numeric: [n_values] sorted present values (maybe a sample), owned */
    int64_t n_values;   /* entries in values */
    char **cats;        /* categorical: [n_cats] distinct present values, strcmp order, owned */
    int64_t *cat_count; /* categorical: [n_cats] rows holding each */
    int64_t n_cats;     /* distinct present values */
} kl_column_profile;

typedef struct {
    char format[8];             /* "csv", "idx" or "labels" (an IDX labels file alone) */
    int64_t rows;               /* data rows (IDX: items) */
    int n_cols;                 /* columns */
    kl_column_profile *cols;    /* [n_cols], owned */
    int64_t shape[4];           /* idx: item dimensions (shape[0] = rows) */
    int n_dims;                 /* idx: entries in shape */
    char digest[KL_DIGEST_LEN]; /* digest.h's digest of the data (with labels, for IDX) */
} kl_data_profile;

/* "csv" or "idx" from the content (IDX magic) and name (.csv, .csv.gz); else an error. */
kl_status kl_data_detect_format(const char *path, const char **format);

/* Reads path (and, for IDX images, the optional labels file) into out; caller frees with
 * kl_data_profile_free. Errors name the file. */
kl_status kl_data_profile_file(const char *path, const char *labels, kl_data_profile *out);

/* The column called name, or NULL. */
const kl_column_profile *kl_data_profile_column(const kl_data_profile *p, const char *name);

/* "numeric", "categorical" or "empty". */
const char *kl_col_type_name(kl_col_type t);

void kl_data_profile_free(kl_data_profile *p);

#endif
