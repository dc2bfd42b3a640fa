/* fairness.c — per-group metrics and their largest gap (fairness.h). */
#include "eval/fairness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/csv.h" /* the group column, read as text */

typedef struct {
    const char *value; /* the group's value (points into the table) */
    int64_t *rows;     /* its rows */
    int64_t n, cap;    /* used, allocated */
} group;

kl_status kl_eval_group_gap(const kl_eval_result *r, const char *csv_path, const char *column,
                            const char *metric, double *gap, int *n_groups) {
    kl_csv_table t;
    memset(&t, 0, sizeof t);
    KL_TRY(kl_csv_read(csv_path, &t));
    int col = kl_csv_find_column(&t, column);
    kl_status st = KL_OK;
    if (col < 0)
        st = kl_seterr(KL_EINVAL, "%s: no column \"%s\" to group by", csv_path, column);
    else if (t.n_rows != r->n)
        st = kl_seterr(KL_EINVAL, "%s: %lld rows, but the evaluation has %lld", csv_path,
                       (long long)t.n_rows, (long long)r->n);
    group *g = NULL;
    int ng = 0, cap = 0;
    for (int64_t i = 0; st == KL_OK && i < t.n_rows; i++) {
        const char *v = kl_csv_cell(&t, i, col);
        if (kl_csv_is_missing(v)) v = "?";
        int k = 0;
        while (k < ng && strcmp(g[k].value, v))
            k++;
        if (k == ng) {
            if (ng == cap) {
                cap = cap ? cap * 2 : 8;
                group *grown = realloc(g, (size_t)cap * sizeof *g);
                if (!grown) {
                    st = kl_seterr(KL_ENOMEM, "fairness: out of memory");
                    break;
                }
                g = grown;
            }
            g[ng++] = (group){v, NULL, 0, 0};
        }
        if (g[k].n == g[k].cap) {
            g[k].cap = g[k].cap ? g[k].cap * 2 : 64;
            int64_t *grown = realloc(g[k].rows, (size_t)g[k].cap * sizeof *grown);
            if (!grown) {
                st = kl_seterr(KL_ENOMEM, "fairness: out of memory");
                break;
            }
            g[k].rows = grown;
        }
        g[k].rows[g[k].n++] = i;
    }
    double lo = INFINITY, hi = -INFINITY;
    for (int k = 0; st == KL_OK && k < ng; k++) {
        kl_eval_result sub;
        memset(&sub, 0, sizeof sub);
        double v = NAN;
        st = kl_eval_subset(r, g[k].rows, g[k].n, &sub);
        if (st == KL_OK) st = kl_eval_metric(&sub, metric, &v);
        kl_eval_result_free(&sub);
        if (st == KL_OK && !isnan(v)) {
            if (v < lo) lo = v;
            if (v > hi) hi = v;
        }
    }
    if (st == KL_OK) {
        *gap = ng > 1 && hi >= lo ? hi - lo : 0;
        if (n_groups) *n_groups = ng;
    }
    for (int k = 0; k < ng; k++)
        free(g[k].rows);
    free(g);
    kl_csv_free(&t);
    return st == KL_OK ? KL_OK : kl_preferr(st, "fairness by \"%s\"", column);
}
