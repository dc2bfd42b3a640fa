/* csv_encoder.h — turning a CSV table into dense features and labels, the same way at training
 * and at prediction time.
 *
 * Columns named in `categorical` are one-hot encoded (features "color=red", ...); every other
 * non-label column must be numeric. The fitted state — column order and kinds, categories,
 * imputation values, classes — is what a model bundle stores (as JSON) so serving encodes
 * exactly as training did.
 *
 * What is fitted on what: categories and classes are the vocabulary of the whole training file
 * (so a rare value that lands only in the validation split is not an error); the imputation
 * statistics — median of a numeric column, mode of a categorical one — come only from the rows
 * passed as the training split, so validation rows do not leak into them.
 */
#ifndef KL_CSV_ENCODER_H
#define KL_CSV_ENCODER_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "data/csv.h"
#include "data/dataset.h"

typedef enum {
    KL_COL_NUMERIC = 0,     /* one float feature; missing → training median */
    KL_COL_CATEGORICAL = 1, /* one-hot over the categories; missing → training mode */
} kl_col_kind;

typedef struct {
    char *name;          /* column name in the header, owned */
    kl_col_kind kind;    /* how the column becomes features */
    double impute;       /* numeric: value used for a missing cell (training median) */
    int n_categories;    /* categorical: number of categories = features */
    char **categories;   /* categorical: [n_categories] sorted bytewise (strcmp), owned */
    int impute_category; /* categorical: index of the category used for a missing cell */
} kl_csv_column;

typedef struct {
    int regression;         /* 1: the label is a numeric target; 0: a class label */
    char *label_column;     /* name of the label column, owned */
    int n_columns;          /* feature columns, in the training file's order */
    kl_csv_column *columns; /* [n_columns], owned */
    int n_classes;          /* classification: number of classes; 0 for regression */
    char **class_names;     /* [n_classes], numeric order if all numeric else strcmp, owned */
    int n_features;         /* encoded width: 1 per numeric, n_categories per categorical */
} kl_csv_encoder;

/* What to do with the label column when encoding. */
typedef enum {
    KL_LABELS_IGNORE = 0,     /* never read labels (the column may still be present) */
    KL_LABELS_IF_PRESENT = 1, /* read them when the file has the label column */
    KL_LABELS_REQUIRED = 2,   /* the file must have the label column */
} kl_labels_mode;

/* Fits e on table t: the label column, the categorical columns (names must be columns of t;
 * errors name the config key), vocabularies over all rows, imputation values over
 * stat_rows[0..n_stat). Caller frees e with kl_csv_encoder_free. */
kl_status kl_csv_encoder_fit(kl_csv_encoder *e, const kl_csv_table *t, const char *label_column,
                             const char *const *categorical, int n_categorical, int regression,
                             const int64_t *stat_rows, int64_t n_stat);

/* Encodes rows[0..n) of t (rows NULL: all rows) into out (caller frees). Columns are matched by
 * name, so their order may differ from training; a missing feature column or an unknown extra
 * column is an error. Bad cells (text in a numeric column, unknown category, unknown or missing
 * label) are errors naming the file, line, column and value. */
kl_status kl_csv_encode(const kl_csv_encoder *e, const kl_csv_table *t, const int64_t *rows,
                        int64_t n, kl_labels_mode labels, kl_dataset *out);

/* The encoder as a JSON object (caller deletes it). */
kl_status kl_csv_encoder_to_json(const kl_csv_encoder *e, cJSON **out);

/* Rebuilds an encoder from kl_csv_encoder_to_json's object, validating every field; errors
 * name the offending key ("columns[2].categories: ..."). Caller frees e. */
kl_status kl_csv_encoder_from_json(const cJSON *j, kl_csv_encoder *e);

/* Frees everything e owns and zeroes it. */
void kl_csv_encoder_free(kl_csv_encoder *e);

#endif
