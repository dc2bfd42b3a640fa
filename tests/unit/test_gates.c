/* test_gates.c — validation gates on known values: YAML parsing (and its errors), each gate
 * passing and failing, lower-is-better metrics, a missing champion, a metric that cannot be
 * measured, the size and latency gates on a real bundle, and the JSON report. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "eval/gates.h"
#include "runtime/fileio.h"

/* Metric values by who ("candidate", "baseline", "champion") and name. */
static kl_status fake_metric(void *ctx, const char *who, const char *name, double *v) {
    (void)ctx;
    static const struct {
        const char *who, *name;
        double v;
    } t[] = {
        {"candidate", "accuracy", 0.90}, {"candidate", "log_loss", 0.30},
        {"baseline", "accuracy", 0.50},  {"baseline", "log_loss", 1.10},
        {"champion", "accuracy", 0.92},  {"champion", "log_loss", 0.25},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(t[i].who, who) && !strcmp(t[i].name, name)) {
            *v = t[i].v;
            return KL_OK;
        }
    return kl_seterr(KL_ENOTFOUND, "no metric %s for %s", name, who);
}

static kl_status fake_gap(void *ctx, const char *column, const char *metric, double *gap) {
    (void)ctx, (void)metric;
    *gap = !strcmp(column, "fair") ? 0.01 : 0.2;
    return KL_OK;
}

static kl_gate_inputs inputs(void) {
    kl_gate_inputs in;
    memset(&in, 0, sizeof in);
    in.metric = fake_metric;
    in.group_gap = fake_gap;
    in.have_champion = 1;
    in.device = kl_cpu();
    return in;
}

static void run(const char *yaml, kl_gate_result *r, int *n, int *all) {
    kl_gate_set s;
    if (kl_gates_parse_yaml(yaml, &s) != KL_OK) fail_msg("parse: %s", kl_errmsg());
    kl_gate_inputs in = inputs();
    assert_int_equal(kl_gates_run(&s, &in, r, all), KL_OK);
    *n = s.n;
    for (int i = 0; i < s.n; i++)
        printf("%-28s %s  %s\n", r[i].name, r[i].passed ? "pass" : "FAIL", r[i].detail);
}

static void test_thresholds_and_baseline(void **state) {
    (void)state;
    kl_gate_result r[KL_GATES_MAX];
    int n, all;
    run("min: {accuracy: 0.85}\nmax: {log_loss: 0.5}\nbaseline: {metric: accuracy, margin: 0.3}\n",
        r, &n, &all);
    assert_int_equal(n, 3);
    assert_true(all);
    assert_string_equal(r[0].name, "min:accuracy");
    assert_true(fabs(r[0].value - 0.90) < 1e-12);
    run("min: {accuracy: 0.95}\nbaseline: {metric: log_loss, margin: 0.9}\n", r, &n, &all);
    assert_false(all);
    assert_false(r[0].passed);
    assert_false(r[1].passed); /* 0.30 is not <= 1.10 - 0.9 */
    assert_true(fabs(r[1].limit - 0.20) < 1e-12);
}

static void test_champion_and_fairness(void **state) {
    (void)state;
    kl_gate_result r[KL_GATES_MAX];
    int n, all;
    run("champion: {metric: accuracy, tolerance: 0.05}\n", r, &n, &all);
    assert_true(all); /* 0.90 >= 0.92 - 0.05 */
    run("champion: {metric: accuracy, tolerance: 0.01}\n", r, &n, &all);
    assert_false(all);
    run("champion: {metric: log_loss, tolerance: 0.01}\n", r, &n, &all);
    assert_false(all); /* 0.30 > 0.25 + 0.01 */
    kl_gate_set s;
    assert_int_equal(kl_gates_parse_yaml("champion: {metric: accuracy, tolerance: 0}\n", &s),
                     KL_OK);
    kl_gate_inputs in = inputs();
    in.have_champion = 0;
    assert_int_equal(kl_gates_run(&s, &in, r, &all), KL_OK);
    assert_true(all);
    assert_non_null(strstr(r[0].detail, "no champion yet"));
    run("fairness: {column: fair, metric: accuracy, max_gap: 0.05}\n", r, &n, &all);
    assert_true(all);
    run("fairness: {column: skewed, max_gap: 0.05}\n", r, &n, &all);
    assert_false(all);
    assert_string_equal(r[0].name, "fairness:skewed:accuracy");
    run("min: {auc_nobody_knows: 0.5}\n", r, &n, &all); /* cannot be measured: fails */
    assert_false(all);
    assert_non_null(strstr(r[0].detail, "could not measure"));
}

static void test_parse_errors(void **state) {
    (void)state;
    kl_gate_set s;
    assert_int_equal(kl_gates_parse_yaml("speed: {max: 1}\n", &s), KL_EINVAL);
    assert_non_null(strstr(kl_errmsg(), "unknown gate \"speed\""));
    assert_int_equal(kl_gates_parse_yaml("baseline: {metric: accuracy, margn: 0.1}\n", &s),
                     KL_EINVAL);
    assert_non_null(strstr(kl_errmsg(), "unknown key \"margn\""));
    assert_int_equal(kl_gates_parse_yaml("min: {accuracy: high}\n", &s), KL_EINVAL);
    assert_non_null(strstr(kl_errmsg(), "not a number"));
    assert_int_equal(kl_gates_parse_yaml("fairness: {metric: accuracy, max_gap: 0.1}\n", &s),
                     KL_EINVAL);
    assert_int_equal(kl_gates_parse_yaml("min: [1, 2\n", &s), KL_EFORMAT);
    assert_int_equal(kl_gates_parse_yaml("latency: {batch: 0.5, p99_ms: 3}\n", &s), KL_EINVAL);
}

static void test_size_latency_and_report(void **state) {
    (void)state;
    const char *base = getenv("KILN_TEST_TMP");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/test_gates_%d", base && *base ? base : "/tmp", (int)getpid());
    assert_int_equal(kl_file_mkdirs(dir), KL_OK);
    kl_bundle b;
    memset(&b, 0, sizeof b);
    static float params[4 * 8 + 8 + 8 * 3 + 3];
    static char *labels[] = {"x", "y", "z"};
    b.spec.n_layers = 2;
    b.spec.dims[0] = 4;
    b.spec.dims[1] = 8;
    b.spec.dims[2] = 3;
    b.spec.act = KL_ACT_RELU;
    b.spec.task = KL_TASK_CLASSIFICATION;
    b.n_params = (int64_t)(sizeof params / sizeof params[0]);
    b.params = params;
    b.n_features = 4;
    snprintf(b.transform, sizeof b.transform, "none");
    b.n_labels = 3;
    b.label_names = labels;
    assert_int_equal(kl_bundle_save(dir, &b), KL_OK);
    long long bytes = 0;
    assert_int_equal(kl_dir_bytes(dir, &bytes), KL_OK);
    assert_true(bytes > 0);

    kl_gate_set s;
    assert_int_equal(
        kl_gates_parse_yaml("size: {max_mb: 1}\nlatency: {batch: 4, p99_ms: 1000}\n", &s), KL_OK);
    kl_gate_inputs in = inputs();
    in.bundle_dir = dir;
    in.bundle = &b;
    kl_gate_result r[KL_GATES_MAX];
    int all = 0;
    assert_int_equal(kl_gates_run(&s, &in, r, &all), KL_OK);
    printf("%s: %s\n%s: %s\n", r[0].name, r[0].detail, r[1].name, r[1].detail);
    assert_true(all);
    assert_true(fabs(r[0].value - (double)bytes / 1048576.0) < 1e-12);
    assert_true(r[1].value > 0 && r[1].value < 1000);
    assert_int_equal(kl_gates_parse_yaml("size: {max_mb: 0.000001}\n", &s), KL_OK);
    assert_int_equal(kl_gates_run(&s, &in, r, &all), KL_OK);
    assert_false(all);
    char *json = kl_gates_report_json(r, 1, all);
    assert_non_null(strstr(json, "\"passed\":\tfalse"));
    assert_non_null(strstr(json, "size:mb"));
    free(json);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thresholds_and_baseline),
        cmocka_unit_test(test_champion_and_fairness),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_size_latency_and_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
