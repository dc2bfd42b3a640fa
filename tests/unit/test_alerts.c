/* test_alerts.c — alert rules: the YAML and its errors, durations, histogram quantiles on a
 * hand-computed case, and the engine on a real metrics registry: a gauge going pending → firing
 * → resolved after its `for`, label matchers, a counter's rate, a histogram's quantile over the
 * window, the active-alerts JSON, and a retraining command started once with its evidence and
 * then held back by the cooldown. The webhook is tested against a real receiver in
 * tests/integration/test_alerts.py. */
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

#include "monitor/alert_rules.h"
#include "monitor/alerts.h"
#include "runtime/fileio.h"

static void test_parse(void **state) {
    (void)state;
    kl_alert_config c;
    const char *yaml = "interval: 250ms\n"
                       "webhook: {url: http://127.0.0.1:9/hook, timeout: 2s}\n"
                       "retrain: {command: 'true', cooldown: 10m}\n"
                       "rules:\n"
                       "  - name: InputDrift\n"
                       "    metric: kiln_drift_psi_max\n"
                       "    labels: {model: iris}\n"
                       "    comparison: '>='\n"
                       "    threshold: 0.25\n"
                       "    for: 1m\n"
                       "    severity: critical\n"
                       "    summary: drift on {model}\n"
                       "    retrain: true\n"
                       "  - name: Slow\n"
                       "    metric: kiln_inference_request_duration_seconds\n"
                       "    comparison: '>'\n"
                       "    threshold: 0.5\n"
                       "    quantile: 0.99\n"
                       "    window: 30s\n";
    assert_int_equal(kl_alert_config_parse(yaml, &c), KL_OK);
    assert_int_equal(c.n, 2);
    assert_true(fabs(c.interval_s - 0.25) < 1e-12);
    assert_string_equal(c.webhook, "http://127.0.0.1:9/hook");
    assert_true(c.webhook_timeout_s == 2);
    assert_string_equal(c.retrain_command, "true");
    assert_true(c.retrain_cooldown_s == 600);
    assert_string_equal(c.rule[0].name, "InputDrift");
    assert_int_equal(c.rule[0].cmp, KL_CMP_GE);
    assert_int_equal(c.rule[0].n_match, 1);
    assert_string_equal(c.rule[0].match_name[0], "model");
    assert_string_equal(c.rule[0].match_value[0], "iris");
    assert_true(c.rule[0].for_s == 60 && c.rule[0].retrain == 1);
    assert_string_equal(c.rule[0].severity, "critical");
    assert_true(c.rule[0].quantile < 0);
    assert_string_equal(c.rule[1].severity, "warning"); /* the default */
    assert_true(c.rule[1].quantile == 0.99 && c.rule[1].window_s == 30 && c.rule[1].for_s == 0);

    /* Errors name the rule and the key. */
    struct {
        const char *yaml, *says;
    } bad[] = {
        {"rules:\n  - {name: A, metric: m, comparison: '>', threshold: 1, colour: red}\n",
         "alerts.rules[0] (A).colour: unknown key"},
        {"rules:\n  - {name: A, comparison: '>', threshold: 1}\n", "(A).metric: missing"},
        {"rules:\n  - {name: A, metric: m, comparison: '=>', threshold: 1}\n",
         "(A).comparison: expected one of"},
        {"rules:\n  - {name: A, metric: m, comparison: '>', threshold: x}\n",
         "(A).threshold: \"x\" is not a number"},
        {"rules:\n  - {name: A, metric: m, comparison: '>', threshold: 1, for: 5 min}\n",
         "(A).for: \"5 min\" is not a duration"},
        {"rules:\n  - {name: A, metric: m, comparison: '>', threshold: 1, retrain: true}\n",
         "(A).retrain: no retrain: {pipeline or command} is configured"},
        {"rules:\n  - {name: A, metric: m, comparison: '>', threshold: 1}\n"
         "  - {name: A, metric: m, comparison: '<', threshold: 1}\n",
         "name A is used twice"},
        {"rules:\n  - {name: A, metric: m, comparison: '>', threshold: 1, quantile: 2}\n",
         "(A).quantile: must be in (0, 1]"},
        {"rules:\n  - {name: A, metric: 'm{x}', comparison: '>', threshold: 1}\n",
         "(A).metric: not a Prometheus metric name"},
        {"webhook: ftp://x\nrules: []\n", "alerts.webhook: expected an http"},
        {"retrain: {pipeline: a.yaml, command: b}\nrules: []\n", "exactly one of pipeline"},
        {"interval: 5s\n", "alerts.rules: missing"},
        {"rules: [\n", "YAML error at line"},
        {"rules:\n  - {metric: m}\n", "alerts.rules[0].name: missing"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_not_equal(kl_alert_config_parse(bad[i].yaml, &c), KL_OK);
        if (!strstr(kl_errmsg(), bad[i].says)) {
            fprintf(stderr, "case %zu: \"%s\" does not say \"%s\"\n", i, kl_errmsg(), bad[i].says);
            fail();
        }
    }
}

static void test_durations_and_comparisons(void **state) {
    (void)state;
    double s;
    assert_int_equal(kl_alert_parse_duration("250ms", &s), KL_OK);
    assert_true(fabs(s - 0.25) < 1e-12);
    assert_int_equal(kl_alert_parse_duration("2.5", &s), KL_OK);
    assert_true(s == 2.5);
    assert_int_equal(kl_alert_parse_duration("5m", &s), KL_OK);
    assert_true(s == 300);
    assert_int_equal(kl_alert_parse_duration("1h", &s), KL_OK);
    assert_true(s == 3600);
    assert_int_not_equal(kl_alert_parse_duration("-1s", &s), KL_OK);
    assert_int_not_equal(kl_alert_parse_duration("1d", &s), KL_OK);
    assert_true(kl_alert_compare(KL_CMP_GT, 2, 1) && !kl_alert_compare(KL_CMP_GT, 1, 1));
    assert_true(kl_alert_compare(KL_CMP_GE, 1, 1) && kl_alert_compare(KL_CMP_LE, 1, 1));
    assert_true(kl_alert_compare(KL_CMP_LT, 0, 1) && kl_alert_compare(KL_CMP_NE, 0, 1));
    assert_true(kl_alert_compare(KL_CMP_EQ, 1, 1));
    assert_false(kl_alert_compare(KL_CMP_NE, NAN, 1)); /* no value compares false */
}

static void test_histogram_quantile(void **state) {
    (void)state;
    /* 10 observations: 2 in (0, 0.1], 4 in (0.1, 0.5], 2 in (0.5, 1], 2 above 1. */
    double bounds[] = {0.1, 0.5, 1};
    double cum[] = {2, 6, 8, 10};
    /* Median: rank 5 is the 3rd of 4 in (0.1, 0.5]: 0.1 + 0.4 * 3/4. */
    assert_true(fabs(kl_histogram_quantile(0.5, bounds, 3, cum) - 0.4) < 1e-12);
    /* q = 0.1: rank 1, half of the first bucket, which starts at 0. */
    assert_true(fabs(kl_histogram_quantile(0.1, bounds, 3, cum) - 0.05) < 1e-12);
    /* q = 0.7: rank 7, the first half of (0.5, 1]. */
    assert_true(fabs(kl_histogram_quantile(0.7, bounds, 3, cum) - 0.75) < 1e-12);
    /* In the +Inf bucket: the largest finite bound, as Prometheus answers. */
    assert_true(kl_histogram_quantile(0.99, bounds, 3, cum) == 1);
    double empty[] = {0, 0, 0, 0};
    assert_true(isnan(kl_histogram_quantile(0.5, bounds, 3, empty)));
}

/* The active alerts' JSON. */
static char *active(kl_alerts *a) {
    char *json = NULL;
    assert_int_equal(kl_alerts_json(a, &json), KL_OK);
    return json;
}

static double counter_value(kl_metrics *m, const char *name, const char *const *names,
                            const char *const *values, size_t n) {
    return kl_counter_get(kl_metrics_counter(m, name, "", names, values, n));
}

static void test_gauge_rule_states(void **state) {
    (void)state;
    kl_alert_config c;
    assert_int_equal(kl_alert_config_parse("interval: 1h\n" /* the test evaluates by hand */
                                           "rules:\n"
                                           "  - name: Drift\n"
                                           "    metric: psi\n"
                                           "    labels: {model: iris}\n"
                                           "    comparison: '>'\n"
                                           "    threshold: 0.25\n"
                                           "    for: 300ms\n"
                                           "    severity: critical\n"
                                           "    summary: 'PSI {value} on {model} v{version}'\n",
                                           &c),
                     KL_OK);
    kl_metrics *m;
    assert_int_equal(kl_metrics_create(&m), KL_OK);
    const char *ln[] = {"model", "version"};
    const char *iris[] = {"iris", "1"}, *other[] = {"other", "1"};
    kl_gauge *g = kl_metrics_gauge(m, "psi", "", ln, iris, 2);
    kl_gauge *g_other = kl_metrics_gauge(m, "psi", "", ln, other, 2);
    kl_gauge_set(g, 0.1);
    kl_gauge_set(g_other, 9); /* not matched by the rule's labels: never alerts */
    kl_alerts *a;
    assert_int_equal(kl_alerts_create(&c, m, NULL, NULL, &a), KL_OK);
    kl_gauge *firing =
        kl_metrics_gauge(m, "kiln_alerts_firing", "", (const char *[]){"rule", "severity"},
                         (const char *[]){"Drift", "critical"}, 2);

    kl_alerts_evaluate(a);
    char *j = active(a);
    assert_non_null(strstr(j, "\"alerts\":[]"));
    free(j);

    kl_gauge_set(g, 0.5);
    kl_alerts_evaluate(a);
    j = active(a);
    assert_non_null(strstr(j, "\"state\":\"pending\""));
    assert_non_null(strstr(j, "\"labels\":{\"model\":\"iris\",\"version\":\"1\"}"));
    assert_non_null(strstr(j, "\"summary\":\"PSI 0.5 on iris v1\""));
    assert_null(strstr(j, "other"));
    free(j);
    assert_true(kl_gauge_get(firing) == 0);

    usleep(350 * 1000);
    kl_alerts_evaluate(a);
    j = active(a);
    assert_non_null(strstr(j, "\"state\":\"firing\""));
    assert_non_null(strstr(j, "\"status\":\"firing\"")); /* the event, in "recent" */
    free(j);
    assert_true(kl_gauge_get(firing) == 1);

    /* Dipping below resolves it; a pending one that dips goes back without an event. */
    kl_gauge_set(g, 0.2);
    kl_alerts_evaluate(a);
    j = active(a);
    assert_non_null(strstr(j, "\"alerts\":[]"));
    assert_non_null(strstr(j, "\"recent\":[{\"rule\":\"Drift\""));
    assert_non_null(strstr(j, "\"status\":\"resolved\""));
    free(j);
    assert_true(kl_gauge_get(firing) == 0);
    kl_gauge_set(g, 0.9);
    kl_alerts_evaluate(a);
    kl_gauge_set(g, 0.1);
    kl_alerts_evaluate(a);
    j = active(a);
    assert_non_null(strstr(j, "\"alerts\":[]"));
    /* Two events in all: firing and resolved. */
    int events = 0;
    for (const char *p = j; (p = strstr(p, "\"status\":")); p++)
        events++;
    assert_int_equal(events, 2);
    free(j);

    /* A series that leaves the page resolves its alert. */
    kl_gauge_set(g, 0.9);
    kl_alerts_evaluate(a);
    usleep(350 * 1000);
    kl_alerts_evaluate(a);
    assert_true(kl_gauge_get(firing) == 1);
    kl_metrics_remove(m, "psi", "model", "iris");
    kl_alerts_evaluate(a);
    assert_true(kl_gauge_get(firing) == 0);
    kl_alerts_free(a);
    kl_metrics_free(m);
}

static void test_counter_rate_and_histogram_quantile(void **state) {
    (void)state;
    kl_alert_config c;
    assert_int_equal(kl_alert_config_parse("interval: 1h\n"
                                           "rules:\n"
                                           "  - {name: Errors, metric: fails_total,\n"
                                           "     comparison: '>', threshold: 20, window: 1m}\n"
                                           "  - {name: Slow, metric: latency_seconds,\n"
                                           "     quantile: 0.5, comparison: '>', threshold: 0.25}\n"
                                           "  - {name: Wrong, metric: latency_seconds,\n"
                                           "     comparison: '>', threshold: 0.3}\n",
                                           &c),
                     KL_OK);
    kl_metrics *m;
    assert_int_equal(kl_metrics_create(&m), KL_OK);
    kl_counter *fails = kl_metrics_counter(m, "fails_total", "", NULL, NULL, 0);
    double bounds[] = {0.1, 0.5, 1};
    kl_histogram *h = kl_metrics_histogram(m, "latency_seconds", "", bounds, 3, NULL, NULL, 0);
    /* Slow observations before the first evaluation do not count: only the window's do. */
    for (int i = 0; i < 100; i++)
        kl_histogram_observe(h, 0.9);
    kl_counter_add(fails, 1000); /* nor does the count before */
    kl_alerts *a;
    assert_int_equal(kl_alerts_create(&c, m, NULL, NULL, &a), KL_OK);
    kl_gauge *errors =
        kl_metrics_gauge(m, "kiln_alerts_firing", "", (const char *[]){"rule", "severity"},
                         (const char *[]){"Errors", "warning"}, 2);
    kl_gauge *slow =
        kl_metrics_gauge(m, "kiln_alerts_firing", "", (const char *[]){"rule", "severity"},
                         (const char *[]){"Slow", "warning"}, 2);
    kl_alerts_evaluate(a); /* the first samples: no rate, no window yet */
    assert_true(kl_gauge_get(errors) == 0 && kl_gauge_get(slow) == 0);

    /* 4 fast observations and 2 slow ones: the window's median is in (0.1, 0.5]. */
    for (int i = 0; i < 4; i++)
        kl_histogram_observe(h, 0.05);
    kl_histogram_observe(h, 0.9);
    kl_histogram_observe(h, 0.9);
    kl_counter_add(fails, 2);
    usleep(200 * 1000);
    kl_alerts_evaluate(a);
    char *j = active(a);
    assert_true(kl_gauge_get(slow) == 0);   /* the window's median: 0.1 * 3/4 */
    assert_true(kl_gauge_get(errors) == 0); /* 2 in ~0.2 s: ~10/s */
    free(j);

    kl_counter_add(fails, 50); /* 52 in ~0.4 s since the first sample: > 20/s */
    for (int i = 0; i < 20; i++)
        kl_histogram_observe(h, 0.45);
    usleep(200 * 1000);
    kl_alerts_evaluate(a);
    assert_true(kl_gauge_get(errors) == 1);
    assert_true(kl_gauge_get(slow) == 1); /* median of 26: 0.1 + 0.4 * 9/20 = 0.28 */
    j = active(a);
    assert_non_null(strstr(j, "\"rule\":\"Errors\""));
    /* The rule on a histogram without a quantile reads nothing (and said so once). */
    assert_null(strstr(j, "\"rule\":\"Wrong\""));
    free(j);
    kl_alerts_free(a);
    kl_metrics_free(m);
}

static void test_retrain_once_then_cooldown(void **state) {
    (void)state;
    const char *tmp = getenv("KILN_TEST_TMP");
    char dir[512], out[600], yaml[2048];
    snprintf(dir, sizeof dir, "%s/alerts-%d", tmp ? tmp : "/tmp", (int)getpid());
    snprintf(out, sizeof out, "%s/ran", dir);
    assert_int_equal(kl_file_mkdirs(dir), KL_OK);
    snprintf(yaml, sizeof yaml,
             "interval: 1h\n"
             "retrain:\n"
             "  command: 'echo \"$KILN_ALERT_RULE|$KILN_ALERT_REASON\" >> %s; "
             "test -s \"$KILN_ALERT_EVIDENCE\" && echo evidence >> %s'\n"
             "  cooldown: 1h\n"
             "  evidence_dir: %s\n"
             "rules:\n"
             "  - {name: Drift, metric: psi, comparison: '>', threshold: 0.25, retrain: true}\n",
             out, out, dir);
    kl_alert_config c;
    assert_int_equal(kl_alert_config_parse(yaml, &c), KL_OK);
    kl_metrics *m;
    assert_int_equal(kl_metrics_create(&m), KL_OK);
    kl_gauge *g = kl_metrics_gauge(m, "psi", "", (const char *[]){"model", "version"},
                                   (const char *[]){"iris", "1"}, 2);
    kl_gauge *f3 =
        kl_metrics_gauge(m, "feature_psi", "", (const char *[]){"model", "version", "feature"},
                         (const char *[]){"iris", "1", "f3"}, 3);
    kl_gauge_set(f3, 0.7);
    kl_alerts *a;
    assert_int_equal(kl_alerts_create(&c, m, NULL, NULL, &a), KL_OK);
    kl_gauge_set(g, 0.5);
    kl_alerts_evaluate(a); /* fires (for: 0) and starts the command */
    kl_alerts_evaluate(a); /* still firing: the same episode starts nothing */
    char *text = NULL;
    size_t len = 0;
    for (int i = 0; i < 100; i++) { /* the command runs on its own: wait up to 5 s */
        free(text);
        text = NULL;
        if (kl_file_read(out, 1 << 16, &text, &len) == KL_OK && strstr(text, "evidence")) break;
        usleep(50 * 1000);
    }
    assert_non_null(text);
    assert_non_null(strstr(text, "Drift|alert Drift: psi{model=\"iris\",version=\"1\"} > 0.25"));
    assert_non_null(strstr(text, "evidence"));
    free(text);
    /* Resolve, fire again: a new episode, but within the cooldown, so skipped. */
    kl_gauge_set(g, 0.1);
    kl_alerts_evaluate(a);
    kl_gauge_set(g, 0.6);
    kl_alerts_evaluate(a);
    const char *names[] = {"rule", "outcome"};
    assert_true(counter_value(m, "kiln_retrain_triggers_total", names,
                              (const char *[]){"Drift", "started"}, 2) == 1);
    assert_true(counter_value(m, "kiln_retrain_triggers_total", names,
                              (const char *[]){"Drift", "skipped"}, 2) == 1);
    kl_alerts_free(a);
    kl_metrics_free(m);
    /* The evidence names the alert and carries the model's other gauges. */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "cat %s/kiln-alert-Drift-*.json", dir);
    FILE *p = popen(cmd, "r");
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    pclose(p);
    assert_non_null(strstr(buf, "\"rule\":\t\"Drift\""));
    assert_non_null(
        strstr(buf, "feature_psi{model=\\\"iris\\\",version=\\\"1\\\",feature=\\\"f3\\\"}"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_durations_and_comparisons),
        cmocka_unit_test(test_histogram_quantile),
        cmocka_unit_test(test_gauge_rule_states),
        cmocka_unit_test(test_counter_rate_and_histogram_quantile),
        cmocka_unit_test(test_retrain_once_then_cooldown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
