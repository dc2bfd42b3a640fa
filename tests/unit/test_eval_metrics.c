/* test_eval_metrics.c — evaluation metrics on small cases computed by hand: ties in the scores
 * and in the argmax, a class never predicted, a class absent from the labels, zero division,
 * ECE binning, regression (and R² on constant targets), the baselines, metrics by name, bad
 * input, the reports (JSON parses, names escaped in SVG) and kl_eval_bundle on a tiny model. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "eval/evaluate.h"
#include "eval/metrics.h"
#include "eval/report.h"
#include "runtime/fileio.h"

#define EPS 1e-12

/* cmocka 1.1 has no floating-point assertion. NaN never equals anything. */
static void near_at(double got, double want, double eps, int line) {
    if (fabs(got - want) <= eps) return;
    print_error("line %d: %.17g != %.17g (tolerance %g)\n", line, got, want, eps);
    fail();
}
#define assert_near(got, want, eps) near_at((got), (want), (eps), __LINE__)

/* Three classes, six rows. Row 1 ties classes 0 and 1 (argmax takes 0); class 2 is never
 * predicted; class 1's and class 2's scores tie across positive and negative rows. */
static const float P1[] = {0.7f, 0.2f, 0.1f, 0.4f, 0.4f, 0.2f, 0.6f, 0.3f, 0.1f,
                           0.2f, 0.5f, 0.3f, 0.3f, 0.5f, 0.2f, 0.1f, 0.6f, 0.3f};
static const int32_t Y1[] = {0, 0, 1, 1, 2, 2};

static void test_classification_by_hand(void **state) {
    (void)state;
    char *names[] = {"cat", "dog", "eel"};
    kl_eval_result r;
    assert_int_equal(kl_eval_classification(P1, 6, 3, Y1, names, &r), KL_OK);
    assert_near(r.m.accuracy, 0.5, EPS);
    const int64_t cm[9] = {2, 0, 0, 1, 1, 0, 0, 2, 0};
    for (int i = 0; i < 9; i++)
        assert_int_equal(r.confusion[i], cm[i]);
    /* class 0: tp 2 fp 1 fn 0; class 1: tp 1 fp 2 fn 1; class 2: tp 0 fp 0 fn 2 */
    assert_near(r.precision[0], 2.0 / 3, EPS);
    assert_near(r.recall[0], 1.0, EPS);
    assert_near(r.f1[0], 0.8, EPS);
    assert_near(r.precision[1], 1.0 / 3, EPS);
    assert_near(r.recall[1], 0.5, EPS);
    assert_near(r.f1[1], 0.4, EPS);
    assert_near(r.precision[2], 0.0, EPS); /* never predicted: zero division -> 0 */
    assert_near(r.recall[2], 0.0, EPS);
    assert_near(r.f1[2], 0.0, EPS);
    assert_int_equal(r.support[2], 2);
    assert_int_equal(r.predicted[2], 0);
    assert_near(r.m.macro_precision, 1.0 / 3, EPS);
    assert_near(r.m.macro_recall, 0.5, EPS);
    assert_near(r.m.macro_f1, 0.4, EPS);
    /* AUC as the share of positive/negative pairs ordered right, ties counting one half. */
    assert_near(r.auc[0], 7.0 / 8, EPS);
    assert_near(r.auc[1], 3.5 / 8, EPS);
    assert_near(r.auc[2], 6.0 / 8, EPS);
    assert_near(r.m.roc_auc, (7.0 + 3.5 + 6.0) / 24, EPS);
    double ll = -(log((double)0.7f) + log((double)0.4f) + log((double)0.3f) + log((double)0.5f) +
                  log((double)0.2f) + log((double)0.3f)) /
                6;
    assert_near(r.m.log_loss, ll, EPS);
    /* Confidences 0.7 (hit) | 0.4 (hit) | 0.6, 0.6 (misses) | 0.5 (hit), 0.5 (miss), in bins
     * 10, 6, 9 and 7: ECE = (|1-.4| + 2*.6 + |1-.7|) / 6. */
    assert_int_equal(r.ece_count[6], 1);
    assert_int_equal(r.ece_count[7], 2);
    assert_int_equal(r.ece_count[9], 2);
    assert_int_equal(r.ece_count[10], 1);
    double ece = (fabs(1 - (double)0.4f) + 2 * (double)0.6f + fabs(1 - (double)0.7f) +
                  fabs(0.5 - (double)0.5f) * 2) /
                 6;
    assert_near(r.m.ece, ece, EPS);
    assert_true(isnan(r.m.mse));
    assert_string_equal(r.class_names[1], "dog");
    kl_eval_result_free(&r);
}

static void test_class_absent_from_labels(void **state) {
    (void)state;
    /* Class 2 has no row but is predicted once; its AUC is undefined. */
    const float p[] = {0.6f, 0.1f, 0.3f, 0.2f, 0.3f, 0.5f, 0.5f, 0.4f, 0.1f, 0.1f, 0.8f, 0.1f};
    const int32_t y[] = {0, 1, 0, 1};
    kl_eval_result r;
    assert_int_equal(kl_eval_classification(p, 4, 3, y, NULL, &r), KL_OK);
    assert_near(r.m.accuracy, 0.75, EPS);
    assert_near(r.f1[1], 2.0 / 3, EPS);
    assert_near(r.f1[2], 0.0, EPS);
    assert_near(r.m.macro_precision, 2.0 / 3, EPS);
    assert_near(r.m.macro_recall, 0.5, EPS);
    assert_near(r.m.macro_f1, 5.0 / 9, EPS);
    assert_true(isnan(r.auc[2]));
    assert_near(r.auc[0], 1.0, EPS);
    assert_near(r.auc[1], 0.75, EPS);
    assert_near(r.m.roc_auc, 0.875, EPS);
    double v;
    assert_int_equal(kl_eval_metric(&r, "roc_auc", &v), KL_OK);
    assert_near(v, 0.875, EPS);
    double *x, *t;
    int64_t n;
    assert_int_equal(kl_eval_roc_curve(p, 4, 3, y, 2, &x, &t, &n), KL_EINVAL);
    assert_int_equal(kl_eval_roc_curve(p, 4, 3, y, 1, &x, &t, &n), KL_OK);
    /* Scores of class 1, highest first: 0.8 (+), 0.4 (-), 0.3 (+), 0.1 (-). */
    assert_int_equal(n, 5);
    const double fx[] = {0, 0, 0.5, 0.5, 1}, fy[] = {0, 0.5, 0.5, 1, 1};
    for (int i = 0; i < 5; i++) {
        assert_near(x[i], fx[i], EPS);
        assert_near(t[i], fy[i], EPS);
    }
    free(x);
    free(t);
    kl_eval_result_free(&r);

    /* A class neither in the labels nor predicted stays out of the macro averages. */
    const float q[] = {0.9f, 0.1f, 0.0f, 0.2f, 0.8f, 0.0f};
    const int32_t z[] = {0, 1};
    assert_int_equal(kl_eval_classification(q, 2, 3, z, NULL, &r), KL_OK);
    assert_near(r.m.macro_f1, 1.0, EPS);
    assert_near(r.m.macro_precision, 1.0, EPS);
    assert_near(r.m.roc_auc, 1.0, EPS);
    /* Probability 0 of the true class: log loss clipped at DBL_EPSILON, not infinite. */
    kl_eval_result_free(&r);
    const float w[] = {0.0f, 1.0f, 1.0f, 0.0f};
    const int32_t yw[] = {0, 0};
    assert_int_equal(kl_eval_classification(w, 2, 2, yw, NULL, &r), KL_OK);
    assert_near(r.m.log_loss, (-log(2.220446049250313e-16) - log(1 - 2.220446049250313e-16)) / 2,
                1e-9);
    kl_eval_result_free(&r);
}

static void test_regression_by_hand(void **state) {
    (void)state;
    const float p[] = {1, 2, 3, 4}, t[] = {1, 3, 2, 6};
    kl_eval_result r;
    assert_int_equal(kl_eval_regression(p, t, 4, &r), KL_OK);
    assert_near(r.m.mse, 1.5, EPS);
    assert_near(r.m.rmse, sqrt(1.5), EPS);
    assert_near(r.m.mae, 1.0, EPS);
    assert_near(r.m.r2, 1 - 6.0 / 14, EPS);
    assert_true(isnan(r.m.accuracy));
    double v;
    assert_int_equal(kl_eval_metric(&r, "r2", &v), KL_OK);
    assert_near(v, 4.0 / 7, EPS);
    assert_int_equal(kl_eval_metric(&r, "accuracy", &v), KL_ENOTFOUND);
    assert_int_equal(kl_eval_baseline_metric(&r, "mse", &v), KL_ENOTFOUND); /* none set */
    const float ref[] = {1, 2, 3};
    assert_int_equal(kl_eval_set_baseline_targets(&r, ref, 3, "train"), KL_OK);
    assert_int_equal(kl_eval_baseline_metric(&r, "mse", &v), KL_OK);
    assert_near(v, 18.0 / 4, EPS); /* errors 1, -1, 0, -4 from the mean 2 */
    assert_near(r.base_mean, 2.0, EPS);
    kl_eval_result_free(&r);
    /* Constant targets: R² is 1 for a perfect fit, else 0 (sklearn's force_finite). */
    const float c[] = {2, 2}, good[] = {2, 2}, bad[] = {1, 2};
    assert_int_equal(kl_eval_regression(good, c, 2, &r), KL_OK);
    assert_near(r.m.r2, 1.0, EPS);
    kl_eval_result_free(&r);
    assert_int_equal(kl_eval_regression(bad, c, 2, &r), KL_OK);
    assert_near(r.m.r2, 0.0, EPS);
    kl_eval_result_free(&r);
}

static void test_baseline_and_names(void **state) {
    (void)state;
    kl_eval_result r;
    assert_int_equal(kl_eval_classification(P1, 6, 3, Y1, NULL, &r), KL_OK);
    const int32_t train[] = {0, 0, 1, 2, 0};
    assert_int_equal(kl_eval_set_baseline_labels(&r, train, 5, "train"), KL_OK);
    assert_int_equal(r.base_class, 0);
    assert_string_equal(r.base_source, "train");
    double v;
    assert_int_equal(kl_eval_baseline_metric(&r, "accuracy", &v), KL_OK);
    assert_near(v, 2.0 / 6, EPS);
    assert_int_equal(kl_eval_baseline_metric(&r, "roc_auc", &v), KL_OK);
    assert_near(v, 0.5, EPS); /* a constant score ties every pair */
    double ll = -(2 * log((double)0.6f) + 4 * log((double)0.2f)) / 6;
    assert_int_equal(kl_eval_baseline_metric(&r, "log_loss", &v), KL_OK);
    assert_near(v, ll, EPS);
    assert_int_equal(kl_eval_metric(&r, "f1", &v), KL_OK);
    assert_near(v, 0.4, EPS);
    assert_int_equal(kl_eval_metric(&r, "mse", &v), KL_ENOTFOUND);
    assert_non_null(strstr(kl_errmsg(), "regression"));
    assert_int_equal(kl_eval_metric(&r, "bogus", &v), KL_ENOTFOUND);
    assert_non_null(strstr(kl_errmsg(), "bogus"));
    for (const char *const *n = kl_eval_metric_names(KL_TASK_CLASSIFICATION); *n; n++)
        assert_int_equal(kl_eval_metric(&r, *n, &v), KL_OK);
    /* Rows 0, 3 and 5 alone: hits, hit, miss. */
    kl_eval_result sub;
    const int64_t rows[] = {0, 3, 5};
    assert_int_equal(kl_eval_subset(&r, rows, 3, &sub), KL_OK);
    assert_int_equal(sub.n, 3);
    assert_near(sub.m.accuracy, 2.0 / 3, EPS);
    assert_int_equal(sub.confusion[2 * 3 + 1], 1);
    kl_eval_result_free(&sub);
    const int64_t out_of_range[] = {6};
    assert_int_equal(kl_eval_subset(&r, out_of_range, 1, &sub), KL_EINVAL);
    const int32_t bad[] = {0, 3};
    assert_int_equal(kl_eval_set_baseline_labels(&r, bad, 2, "train"), KL_EINVAL);
    kl_eval_result_free(&r);
}

static void test_bad_input(void **state) {
    (void)state;
    kl_eval_result r;
    const int32_t y[] = {0, 5};
    assert_int_equal(kl_eval_classification(P1, 2, 3, y, NULL, &r), KL_EINVAL);
    assert_non_null(strstr(kl_errmsg(), "row 1"));
    assert_int_equal(kl_eval_classification(P1, 0, 3, Y1, NULL, &r), KL_EINVAL);
    assert_int_equal(kl_eval_classification(P1, 2, 1, Y1, NULL, &r), KL_EINVAL);
    const float nan_p[] = {NAN, 1, 0.5f, 0.5f};
    const int32_t y2[] = {0, 1};
    assert_int_equal(kl_eval_classification(nan_p, 2, 2, y2, NULL, &r), KL_EINVAL);
    const float t[] = {1, INFINITY};
    assert_int_equal(kl_eval_regression(t, t, 2, &r), KL_EINVAL);
    kl_eval_result_free(&r); /* safe on a zeroed result */
}

static void test_reports(void **state) {
    (void)state;
    char *names[] = {"a<b", "c&d", "e\"f"};
    kl_eval_result r;
    assert_int_equal(kl_eval_classification(P1, 6, 3, Y1, names, &r), KL_OK);
    assert_int_equal(kl_eval_set_baseline_labels(&r, Y1, 6, "test"), KL_OK);
    char *json = kl_eval_report_json(&r, &(kl_eval_meta){.model = "m", .data = "d.csv"});
    cJSON *j = cJSON_Parse(json);
    assert_non_null(j);
    cJSON *m = cJSON_GetObjectItem(j, "metrics");
    assert_near(cJSON_GetObjectItem(m, "macro_f1")->valuedouble, 0.4, EPS);
    cJSON *classes = cJSON_GetObjectItem(j, "classes");
    assert_int_equal(cJSON_GetArraySize(classes), 3);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(classes, 1), "name")->valuestring,
                        "c&d");
    cJSON_Delete(j);
    free(json);
    char *svg = kl_eval_svg_confusion(&r);
    assert_non_null(strstr(svg, "a&lt;b"));
    assert_null(strstr(svg, "a<b"));
    free(svg);
    svg = kl_eval_svg_roc(&r);
    assert_non_null(strstr(svg, "e&quot;f"));
    assert_non_null(strstr(svg, "<polyline"));
    free(svg);
    assert_null(kl_eval_svg_predicted_vs_true(&r));
    char *md = kl_eval_report_markdown(&r, NULL);
    assert_non_null(strstr(md, "| macro_f1 | 0.4000 |"));
    free(md);
    const char *base = getenv("KILN_TEST_TMP");
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/eval_report_%d", base ? base : "/tmp", (int)getpid());
    assert_int_equal(kl_eval_report_write(dir, &r, NULL), KL_OK);
    for (const char *const *f = kl_eval_report_files(r.task); *f; f++) {
        snprintf(path, sizeof path, "%s/%s", dir, *f);
        assert_int_equal(access(path, R_OK), 0);
        unlink(path);
    }
    rmdir(dir);
    FILE *out = tmpfile();
    kl_eval_print_table(out, &r);
    fclose(out);
    kl_eval_result_free(&r);
}

/* A 2-2 model with identity weights: the logits are the features, the probabilities their
 * softmax. */
static void test_eval_bundle(void **state) {
    (void)state;
    float params[] = {1, 0, 0, 1, 0, 0};
    char *labels[] = {"no", "yes"};
    kl_bundle b = {.spec = {.n_layers = 1, .dims = {2, 2}, .task = KL_TASK_CLASSIFICATION},
                   .n_params = 6,
                   .params = params,
                   .n_features = 2,
                   .transform = "none",
                   .n_labels = 2,
                   .label_names = labels};
    float x[] = {2, 0, 0, 1, 1, 0};
    int32_t y[] = {0, 1, 1};
    kl_dataset ds = {.n = 3, .d = 2, .x = x, .y = y, .n_classes = 2};
    kl_eval_result r;
    assert_int_equal(kl_eval_bundle(&b, &ds, NULL, &r), KL_OK);
    assert_near(r.m.accuracy, 2.0 / 3, EPS);
    assert_near(r.pred[0], 1 / (1 + exp(-2.0)), 1e-6);
    assert_string_equal(r.base_source, "test");
    assert_int_equal(r.base_class, 1);
    kl_eval_result_free(&r);
    int32_t ref_y[] = {0, 0, 0, 1};
    kl_dataset ref = {.n = 4, .d = 2, .y = ref_y, .n_classes = 2};
    kl_eval_opts o = {.batch_size = 2, .baseline_on = &ref};
    assert_int_equal(kl_eval_bundle(&b, &ds, &o, &r), KL_OK);
    assert_string_equal(r.base_source, "train");
    assert_near(r.base.accuracy, 1.0 / 3, EPS);
    kl_eval_result_free(&r);
    ds.d = 3;
    assert_int_equal(kl_eval_bundle(&b, &ds, NULL, &r), KL_EINVAL);
    assert_non_null(strstr(kl_errmsg(), "3 features per row, the model expects 2"));
    ds.d = 2;
    ds.y = NULL;
    assert_int_equal(kl_eval_bundle(&b, &ds, NULL, &r), KL_EINVAL);
    assert_non_null(strstr(kl_errmsg(), "no labels"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classification_by_hand),
        cmocka_unit_test(test_class_absent_from_labels),
        cmocka_unit_test(test_regression_by_hand),
        cmocka_unit_test(test_baseline_and_names),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_reports),
        cmocka_unit_test(test_eval_bundle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
