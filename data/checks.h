/* checks.h — data checks before training: each a pass/fail with the value it measured.
 *
 * The checks and their YAML form (the pipeline config's `checks:` block; a document whose root
 * holds a `checks:` key is read from there):
 *   min_rows: 100                  at least this many rows
 *   columns:                       expected columns and their types: numeric | categorical | any
 *     age: numeric                 (a column whose cells are all missing has type "empty")
 *     city: categorical
 *   strict_columns: true           also fail on a column that `columns` does not list
 *   max_missing: 0.05              highest share of missing cells over every cell, or per column:
 *   max_missing: {overall: 0.05, age: 0.1, "*": 0.2}     ("*": each column on its own)
 *   ranges:                        allowed range of a numeric column's present values
 *     age: [0, 120]
 *     income: {min: 0}
 *     "*": {min: 0, max: 255}      every numeric column (IDX images: the column "pixel")
 *   label:                         class balance of the label
 *     column: label                the CSV column (default "label"; IDX: the labels file)
 *     max_ratio: 3                 rows of the most frequent class / of the least frequent
 *     min_share: 0.05              each class's share of the labelled rows
 * Unknown keys are errors naming them. Checks run on a kl_data_profile (data/profile.h), so a
 * CSV and an IDX file are checked the same way.
 */
#ifndef KL_CHECKS_H
#define KL_CHECKS_H

#include "data/profile.h"
#include "runtime/status.h"

#define KL_DATA_CHECKS_MAX 256

typedef enum {
    KL_CHECK_MIN_ROWS,    /* limit: the least rows */
    KL_CHECK_COLUMN,      /* column must exist with type (or "any") */
    KL_CHECK_STRICT,      /* no column beyond the KL_CHECK_COLUMN ones */
    KL_CHECK_MISSING,     /* column ("" overall, "*" each) missing share <= limit */
    KL_CHECK_RANGE,       /* column ("*" every numeric) values within [lo, hi] */
    KL_CHECK_LABEL_RATIO, /* most / least frequent class <= limit */
    KL_CHECK_LABEL_SHARE, /* each class's share >= limit */
} kl_data_check_kind;

/* One configured check. */
typedef struct {
    kl_data_check_kind kind;
    char column[128]; /* the column it is about ("" for table-wide checks) */
    char type[16];    /* KL_CHECK_COLUMN: "numeric", "categorical" or "any" */
    double limit;     /* min rows, max missing share, max ratio or min share */
    double lo, hi;    /* KL_CHECK_RANGE bounds (-inf / +inf when open) */
} kl_data_check;

typedef struct {
    kl_data_check check[KL_DATA_CHECKS_MAX]; /* in the order of the YAML */
    int n;                                   /* checks */
    char label_column[128];                  /* the label column ("label" unless set) */
} kl_data_checks;

/* Parses a checks YAML document (see above) into out. Errors name the key
 * ("checks.ranges.age: ..."). */
kl_status kl_data_checks_parse_yaml(const char *yaml_text, kl_data_checks *out);

/* The outcome of one check (a "*" check gives one per column). */
typedef struct {
    char name[160];   /* "min_rows", "column:age", "strict_columns", "missing:overall",
                       * "missing:age", "range:age", "label:max_ratio", "label:min_share" */
    int passed;       /* 1 pass, 0 fail */
    double value;     /* what was measured (NaN when it could not be) */
    double limit;     /* what it was compared with (NaN for type and column checks) */
    char detail[320]; /* one line for people: "age: 12.5% missing > 10%" */
} kl_data_check_result;

/* Runs every check on a profile. *results (malloc'd, *n of them; free it) are in order;
 * *all_passed says whether every one passed. Fails only on bad arguments or no memory. */
kl_status kl_data_checks_run(const kl_data_checks *spec, const kl_data_profile *p,
                             kl_data_check_result **results, int *n, int *all_passed);

/* Reads path (with its IDX labels file, or NULL) and runs the checks on it: what the pipeline
 * calls before training. */
kl_status kl_data_checks_run_file(const kl_data_checks *spec, const char *path, const char *labels,
                                  kl_data_check_result **results, int *n, int *all_passed);

/* The results as a JSON report {"file", "passed", "checks": [{name, passed, value, limit,
 * detail}]} (malloc'd text, the caller's); file may be NULL. */
char *kl_data_checks_report_json(const char *file, const kl_data_check_result *results, int n,
                                 int all_passed);

#endif
