/* diff.h — what changed between two versions of a dataset: the schema (columns added, removed,
 * type changed), the row counts, and each column's distribution.
 *
 * Numeric columns present in both: mean, standard deviation, min, max and missing rate on each
 * side, the population stability index over ten bins cut at the first dataset's deciles, and the
 * two-sample Kolmogorov-Smirnov statistic (the largest gap between the two empirical CDFs).
 * Categorical columns: the missing rates, the PSI over the union of categories, and the
 * categories whose share moved most. PSI uses shares floored at 1e-4, so a bin empty on one side
 * counts, but finitely. Common reading: PSI < 0.1 stable, 0.1-0.25 moderate, > 0.25 a shift.
 */
#ifndef KL_DIFF_H
#define KL_DIFF_H

#include "data/profile.h"

#define KL_DIFF_TOP_CATS 5
#define KL_DIFF_PSI_SHIFT 0.1 /* a column whose PSI reaches this is reported as changed */

typedef enum { KL_DIFF_SAME, KL_DIFF_ADDED, KL_DIFF_REMOVED, KL_DIFF_TYPE } kl_diff_change;

/* A category whose share changed. */
typedef struct {
    char value[64];  /* the category (cut to 63 bytes) */
    double share[2]; /* its share of present cells in A and in B */
} kl_diff_category;

/* One column. Index 0 is A, 1 is B; statistics of a side without the column are NaN. */
typedef struct {
    char name[128];                         /* the column */
    kl_diff_change change;                  /* schema change */
    char type[2][16];                       /* "numeric", "categorical", "empty", "" if absent */
    double missing[2];                      /* missing rates */
    double mean[2], std[2], min[2], max[2]; /* numeric statistics */
    double psi;                             /* population stability index (NaN if not both) */
    double ks;                              /* KS statistic (numeric in both, else NaN) */
    int changed;                            /* schema change, or psi >= KL_DIFF_PSI_SHIFT */
    kl_diff_category top[KL_DIFF_TOP_CATS]; /* categorical: biggest share moves first */
    int n_top;                              /* entries in top */
} kl_column_diff;

typedef struct {
    char format[2][8];             /* "csv", "idx" or "labels" */
    char digest[2][KL_DIGEST_LEN]; /* data digests */
    int64_t rows[2];               /* rows */
    int64_t shape[2][4];           /* idx item shapes */
    int n_dims[2];                 /* entries in shape */
    int identical;                 /* same digest */
    int schema_changed;            /* columns added, removed or retyped, or shape changed */
    int n_changed;                 /* columns with changed set */
    int n;                         /* columns (A's in order, then B's new ones) */
    kl_column_diff *cols;          /* [n], owned */
} kl_data_diff;

/* Compares profile a (the old version) with b (the new). Free out with kl_data_diff_free. */
kl_status kl_data_diff_profiles(const kl_data_profile *a, const kl_data_profile *b,
                                kl_data_diff *out);

/* The diff as JSON (malloc'd text, the caller's); names label the two sides (may be NULL). */
char *kl_data_diff_json(const kl_data_diff *d, const char *name_a, const char *name_b);

void kl_data_diff_free(kl_data_diff *d);

#endif
