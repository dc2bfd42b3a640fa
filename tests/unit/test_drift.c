/* test_drift.c — the reference profile and drift statistics on hand-computed cases: numpy's
 * percentiles, right-closed decile bins, tied quantiles (the CDF's jump), PSI with its floor,
 * KS on both sides of each window value, the ring keeping the last rows, an empty window,
 * non-finite inputs skipped, prediction drift, the profile's JSON and its errors, and adds from
 * several threads while computing. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "data/reference.h"
#include "monitor/drift.h"

#define EPS 1e-12

/* One feature holding 0, 1, ..., 100: its percentiles are k and F_ref(x) = x / 100. */
static void ramp_reference(kl_reference *ref) {
    float x[101];
    for (int i = 0; i <= 100; i++)
        x[i] = (float)i;
    assert_int_equal(kl_reference_fit(x, 101, 1, NULL, 0, ref), KL_OK);
}

static void test_quantiles_and_bins(void **state) {
    (void)state;
    /* 1..10: numpy.percentile(x, k) = 1 + 9k/100 (h = 9k/100 between x[h] and x[h+1]). */
    float x[10];
    int32_t y[10];
    for (int i = 0; i < 10; i++) {
        x[i] = (float)(10 - i); /* unsorted on purpose */
        y[i] = i < 7 ? 0 : 1;
    }
    kl_reference ref;
    assert_int_equal(kl_reference_fit(x, 10, 1, y, 2, &ref), KL_OK);
    const kl_ref_column *c = &ref.features[0];
    assert_float_equal(c->q[0], 1, EPS);
    assert_float_equal(c->q[10], 1.9, EPS);
    assert_float_equal(c->q[25], 3.25, EPS);
    assert_float_equal(c->q[50], 5.5, EPS);
    assert_float_equal(c->q[100], 10, EPS);
    assert_int_equal(c->n_edges, 9);
    for (int b = 0; b <= 9; b++)
        assert_float_equal(c->fractions[b], 0.1, EPS); /* one value per bin */
    assert_float_equal(ref.class_prior[0], 0.7, EPS);
    assert_float_equal(ref.class_prior[1], 0.3, EPS);
    assert_int_equal(ref.rows, 10);
    /* Right-closed: an edge belongs to the bin below it. */
    assert_int_equal(kl_ref_bin(c, 1.9), 0);
    assert_int_equal(kl_ref_bin(c, 1.90001), 1);
    assert_int_equal(kl_ref_bin(c, 100), 9);
    kl_reference_free(&ref);
}

/* 0 x8, 1, 2: quantiles 0..77 are 0 (h = 9k/100 < 7), then 0.02 at 78, 0.2 at 80, 1.1 at 90. */
static void tied_reference(kl_reference *ref) {
    float x[10] = {0, 0, 2, 0, 0, 0, 1, 0, 0, 0};
    assert_int_equal(kl_reference_fit(x, 10, 1, NULL, 0, ref), KL_OK);
}

static void test_ties(void **state) {
    (void)state;
    kl_reference ref;
    tied_reference(&ref);
    const kl_ref_column *c = &ref.features[0];
    assert_float_equal(c->q[77], 0, EPS);
    assert_float_equal(c->q[78], 0.02, EPS);
    assert_float_equal(c->q[80], 0.2, EPS);
    assert_float_equal(c->q[90], 1.1, EPS);
    /* Deciles 10..70 are all 0: one edge for them. */
    assert_int_equal(c->n_edges, 3);
    assert_float_equal(c->edges[0], 0, EPS);
    assert_float_equal(c->edges[1], 0.2, EPS);
    assert_float_equal(c->edges[2], 1.1, EPS);
    double want[4] = {0.8, 0, 0.1, 0.1};
    for (int b = 0; b < 4; b++)
        assert_float_equal(c->fractions[b], want[b], EPS);
    /* The CDF jumps at the tie: 0 just below, 77/100 at it. */
    assert_float_equal(kl_ref_cdf(c, -1), 0, EPS);
    assert_float_equal(kl_ref_cdf_left(c, 0), 0, EPS);
    assert_float_equal(kl_ref_cdf(c, 0), 0.77, EPS);
    assert_float_equal(kl_ref_cdf(c, 0.01), 0.775, 1e-9);
    assert_float_equal(kl_ref_cdf(c, 2), 1, EPS);
    assert_float_equal(kl_ref_cdf_left(c, 2), 1, 1e-9);
    /* A window of zeros: F_window jumps 0 -> 1 at 0, where F_ref is 0.77: D = 0.23 (a
     * continuous-CDF formula would take F_ref(0) = 0.77 against F_window(0-) = 0: 0.77). */
    float v[4] = {0, 0, 0, 0};
    double psi, ks;
    assert_int_equal(kl_drift_column(c, v, 4, &psi, &ks), 4);
    assert_float_equal(ks, 0.23, 1e-9);
    double a[4] = {1, 0, 0, 0};
    assert_float_equal(psi, kl_drift_psi(want, a, 4), EPS);
    /* By hand with the floor: a = (1, 1e-4, 1e-4, 1e-4), e = (0.8, 1e-4, 0.1, 0.1). */
    double by_hand = 0.2 * log(1 / 0.8) + 2 * (1e-4 - 0.1) * log(1e-4 / 0.1);
    assert_float_equal(psi, by_hand, 1e-12);
    kl_reference_free(&ref);
}

static void test_psi_and_ks(void **state) {
    (void)state;
    kl_reference ref;
    ramp_reference(&ref);
    const kl_ref_column *c = &ref.features[0];
    for (int k = 0; k <= 100; k++)
        assert_float_equal(c->q[k], k, EPS);
    assert_int_equal(c->n_edges, 9);
    /* (-inf,10] holds 0..10: 11 of 101; every other bin 10 of 101 (7 digits kept). */
    assert_float_equal(c->fractions[0], 0.1089109, EPS);
    assert_float_equal(c->fractions[5], 0.0990099, EPS);
    double psi, ks;
    float v[3] = {30, 10, 20};
    assert_int_equal(kl_drift_column(c, v, 3, &psi, &ks), 3);
    /* At 30: F_window = 1, F_ref = 0.3. */
    assert_float_equal(ks, 0.7, 1e-12);
    double a[10] = {1.0 / 3, 1.0 / 3, 1.0 / 3, 0, 0, 0, 0, 0, 0, 0};
    double e[10];
    e[0] = 0.1089109;
    for (int b = 1; b < 10; b++)
        e[b] = 0.0990099;
    double by_hand = 0;
    for (int b = 0; b < 10; b++) {
        double ab = a[b] > 1e-4 ? a[b] : 1e-4;
        by_hand += (ab - e[b]) * log(ab / e[b]);
    }
    assert_float_equal(psi, by_hand, 1e-12);
    /* Symmetric window: 0.25 on both sides of each point. */
    float w2[2] = {75, 25};
    kl_drift_column(c, w2, 2, &psi, &ks);
    assert_float_equal(ks, 0.25, 1e-12);
    /* Outside the reference range: F_ref is 0 below and 1 above. */
    float w3[2] = {-5, 200};
    kl_drift_column(c, w3, 2, &psi, &ks);
    assert_float_equal(ks, 0.5, 1e-12);
    /* Ties in the window: F_window steps 0 -> 2/3 at 50; just below 50 it is 0 while F_ref
     * reaches 0.5 (at 50 the gap is only 2/3 - 0.5). */
    float w4[3] = {50, 50, 90};
    kl_drift_column(c, w4, 3, &psi, &ks);
    assert_float_equal(ks, 0.5, 1e-12);
    /* The same distribution: PSI 0, KS small. */
    float same[101];
    for (int i = 0; i <= 100; i++)
        same[i] = (float)(100 - i);
    kl_drift_column(c, same, 101, &psi, &ks);
    assert_true(psi < 1e-10);
    assert_true(ks <= 1.0 / 101 + 1e-12);
    kl_reference_free(&ref);
}

static void test_nonfinite_and_empty(void **state) {
    (void)state;
    float x[202];
    for (int i = 0; i <= 100; i++) {
        x[2 * i] = (float)i;
        x[2 * i + 1] = (float)i;
    }
    kl_reference ref;
    assert_int_equal(kl_reference_fit(x, 101, 2, NULL, 0, &ref), KL_OK);
    kl_drift_window *w;
    assert_int_equal(kl_drift_window_create(&ref, 8, &w), KL_OK);
    kl_drift_result r;
    memset(&r, 0, sizeof r);
    assert_int_equal(kl_drift_window_compute(w, &r), KL_OK);
    assert_int_equal(r.rows, 0);
    assert_true(isnan(r.psi[0]) && isnan(r.ks[1]) && isnan(r.max_psi));
    assert_int_equal(r.n_top, 0);
    assert_true(isnan(r.prediction_psi));
    /* Feature 0: 10, NaN, 20, +inf, 30 -> its finite values as before; feature 1 all NaN. */
    float rows[10] = {10, NAN, NAN, NAN, 20, NAN, INFINITY, NAN, 30, -INFINITY};
    assert_int_equal(kl_drift_window_add(w, rows, 5, 2, NULL, 0), KL_OK);
    assert_int_equal(kl_drift_window_compute(w, &r), KL_OK);
    assert_int_equal(r.rows, 5);
    assert_int_equal(r.n[0], 3);
    assert_int_equal(r.n[1], 0);
    assert_float_equal(r.ks[0], 0.7, 1e-12);
    assert_true(isnan(r.psi[1]) && isnan(r.ks[1]));
    assert_int_equal(r.n_top, 1);
    assert_int_equal(r.top[0], 0);
    assert_float_equal(r.max_psi, r.psi[0], EPS);
    /* Wrong width and wrong output count are refused. */
    assert_int_equal(kl_drift_window_add(w, rows, 1, 3, NULL, 0), KL_EINVAL);
    float p[2] = {0.5f, 0.5f};
    assert_int_equal(kl_drift_window_add(w, rows, 1, 2, p, 2), KL_EINVAL);
    kl_drift_result_free(&r);
    kl_drift_window_free(w);
    kl_reference_free(&ref);
}

static void test_ring_keeps_last_rows(void **state) {
    (void)state;
    kl_reference ref;
    ramp_reference(&ref);
    kl_drift_window *w;
    assert_int_equal(kl_drift_window_create(&ref, 3, &w), KL_OK);
    float first[2] = {1000, 1000}, rest[3] = {10, 20, 30};
    assert_int_equal(kl_drift_window_add(w, first, 2, 1, NULL, 0), KL_OK);
    assert_int_equal(kl_drift_window_add(w, rest, 3, 1, NULL, 0), KL_OK);
    assert_int_equal(kl_drift_window_rows(w), 3);
    kl_drift_result r;
    memset(&r, 0, sizeof r);
    assert_int_equal(kl_drift_window_compute(w, &r), KL_OK);
    assert_float_equal(r.ks[0], 0.7, 1e-12);
    /* A batch larger than the window: only its last 3 rows stay. */
    float big[5] = {1000, 1000, 75, 25, 50};
    assert_int_equal(kl_drift_window_add(w, big, 5, 1, NULL, 0), KL_OK);
    assert_int_equal(kl_drift_window_compute(w, &r), KL_OK);
    assert_int_equal(r.rows, 3);
    assert_float_equal(r.ks[0], 0.25, 1e-12); /* {25, 50, 75}: 0.25 below 25, above 75 */
    kl_drift_result_free(&r);
    kl_drift_window_free(w);
    kl_reference_free(&ref);
}

static void test_prediction_drift(void **state) {
    (void)state;
    float x[4] = {1, 2, 3, 4};
    int32_t y[4] = {0, 1, 2, 2};
    kl_reference ref;
    assert_int_equal(kl_reference_fit(x, 4, 1, y, 3, &ref), KL_OK);
    /* Reference predictions: classes 0, 0, 1, 2 -> prior (0.5, 0.25, 0.25). */
    float probs[12] = {0.9f, 0.1f, 0, 0.6f, 0.3f, 0.1f, 0.1f, 0.8f, 0.1f, 0, 0.2f, 0.8f};
    assert_int_equal(kl_reference_set_predictions(&ref, probs, 4, 3, "validation"), KL_OK);
    assert_float_equal(ref.prediction_prior[0], 0.5, EPS);
    assert_float_equal(ref.prediction_prior[2], 0.25, EPS);
    assert_int_equal(kl_reference_set_predictions(&ref, probs, 4, 2, "validation"), KL_EINVAL);
    kl_drift_window *w;
    assert_int_equal(kl_drift_window_create(&ref, 10, &w), KL_OK);
    /* Window: classes 2, 2, 2, 0 and one row whose outputs hold NaN (no prediction). */
    float rows[5] = {1, 2, 3, 4, 5};
    float out[15] = {0, 0, 1, 0, 0.1f, 0.9f, 0.2f, 0.2f, 0.6f, 0.7f, 0.2f, 0.1f, NAN, 0, 0};
    assert_int_equal(kl_drift_window_add(w, rows, 5, 1, out, 3), KL_OK);
    kl_drift_result r;
    memset(&r, 0, sizeof r);
    assert_int_equal(kl_drift_window_compute(w, &r), KL_OK);
    assert_int_equal(r.prediction_rows, 4);
    assert_int_equal(r.n_pred_bins, 3);
    double e[3] = {0.5, 0.25, 0.25}, a[3] = {0.25, 0, 0.75};
    for (int b = 0; b < 3; b++)
        assert_float_equal(r.pred_actual[b], a[b], EPS);
    double by_hand = (0.25 - 0.5) * log(0.25 / 0.5) + (1e-4 - 0.25) * log(1e-4 / 0.25) +
                     (0.75 - 0.25) * log(0.75 / 0.25);
    assert_float_equal(r.prediction_psi, by_hand, 1e-12);
    assert_float_equal(kl_drift_psi(e, a, 3), by_hand, 1e-12);
    kl_drift_result_free(&r);
    kl_drift_window_free(w);
    kl_reference_free(&ref);
}

static void test_regression_prediction(void **state) {
    (void)state;
    kl_reference ref;
    ramp_reference(&ref);
    float pred[101];
    for (int i = 0; i <= 100; i++)
        pred[i] = (float)i;
    assert_int_equal(kl_reference_set_predictions(&ref, pred, 101, 1, "training"), KL_OK);
    assert_int_equal(ref.prediction.n_edges, 9);
    kl_drift_window *w;
    assert_int_equal(kl_drift_window_create(&ref, 4, &w), KL_OK);
    float rows[3] = {1, 2, 3}, out[3] = {95, 96, 97};
    assert_int_equal(kl_drift_window_add(w, rows, 3, 1, out, 1), KL_OK);
    kl_drift_result r;
    memset(&r, 0, sizeof r);
    assert_int_equal(kl_drift_window_compute(w, &r), KL_OK);
    assert_int_equal(r.n_pred_bins, 10);
    assert_float_equal(r.pred_actual[9], 1, EPS);
    assert_true(r.prediction_psi > 1);
    kl_drift_result_free(&r);
    kl_drift_window_free(w);
    kl_reference_free(&ref);
}

static void test_json(void **state) {
    (void)state;
    kl_reference ref, back;
    tied_reference(&ref);
    float p[10] = {0.1f, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    assert_int_equal(kl_reference_set_predictions(&ref, p, 10, 1, "training"), KL_OK);
    char *text;
    assert_int_equal(kl_reference_to_json(&ref, &text), KL_OK);
    assert_non_null(strstr(text, "\"bins\":\"right-closed\""));
    assert_non_null(strstr(text, "\"class_prior\":null"));
    assert_int_equal(kl_reference_from_json(text, 1, &back), KL_OK);
    assert_int_equal(back.n_features, 1);
    assert_memory_equal(back.features, ref.features, sizeof(kl_ref_column));
    assert_memory_equal(&back.prediction, &ref.prediction, sizeof(kl_ref_column));
    assert_string_equal(back.prediction_split, "training");
    kl_reference_free(&back);
    /* A model of another width, a newer version, quantiles out of order: refused by name. */
    assert_int_equal(kl_reference_from_json(text, 2, &back), KL_EFORMAT);
    assert_non_null(strstr(kl_errmsg(), "features"));
    free(text);
    const char *v2 = "{\"version\":2,\"rows\":1,\"bins\":\"right-closed\",\"features\":[]}";
    assert_int_equal(kl_reference_from_json(v2, 0, &back), KL_EUNSUPPORTED);
    char bad[2048] = "{\"version\":1,\"rows\":1,\"bins\":\"right-closed\",\"features\":[{"
                     "\"quantiles\":[5";
    for (int k = 1; k < 101; k++)
        strcat(bad, ",0");
    strcat(bad, "],\"edges\":[],\"fractions\":[1]}],\"class_prior\":null}");
    assert_int_equal(kl_reference_from_json(bad, 1, &back), KL_EFORMAT);
    assert_non_null(strstr(kl_errmsg(), "features[0].quantiles[1]"));
    kl_reference_free(&ref);
}

typedef struct {
    kl_drift_window *w;
    int seed;
} adder;

static void *add_rows(void *arg) {
    adder *a = arg;
    float rows[4];
    for (int it = 0; it < 500; it++) {
        for (int i = 0; i < 4; i++)
            rows[i] = (float)((a->seed * 31 + it * 7 + i) % 101);
        if (kl_drift_window_add(a->w, rows, 4, 1, NULL, 0)) return (void *)1;
    }
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    kl_reference ref;
    ramp_reference(&ref);
    kl_drift_window *w;
    assert_int_equal(kl_drift_window_create(&ref, 64, &w), KL_OK);
    pthread_t t[4];
    adder a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (adder){w, i};
        assert_int_equal(pthread_create(&t[i], NULL, add_rows, &a[i]), 0);
    }
    kl_drift_result r;
    memset(&r, 0, sizeof r);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(kl_drift_window_compute(w, &r), KL_OK);
        assert_true(r.rows <= 64);
        if (r.rows) assert_true(r.n[0] == r.rows && r.ks[0] >= 0 && r.ks[0] <= 1);
    }
    for (int i = 0; i < 4; i++) {
        void *rc;
        pthread_join(t[i], &rc);
        assert_null(rc);
    }
    assert_int_equal(kl_drift_window_rows(w), 64);
    kl_drift_result_free(&r);
    kl_drift_window_free(w);
    kl_reference_free(&ref);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantiles_and_bins),
        cmocka_unit_test(test_ties),
        cmocka_unit_test(test_psi_and_ks),
        cmocka_unit_test(test_nonfinite_and_empty),
        cmocka_unit_test(test_ring_keeps_last_rows),
        cmocka_unit_test(test_prediction_drift),
        cmocka_unit_test(test_regression_prediction),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
