/* test_metrics.c — the Prometheus registry: counters and gauges count, histogram buckets are
 * cumulative with _sum and _count, label values are escaped, concurrent adds from 4 threads sum
 * exactly, hidden children disappear, mismatched families are refused, and the rendered text is
 * parsed back line by line. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "serving/metrics.h"

/* --- a small parser of the text format ------------------------------------------------------- */

/* One parsed sample line. */
typedef struct {
    char name[128];         /* metric name, with _bucket/_sum/_count suffix */
    char labels[8][2][128]; /* label name, unescaped value */
    int n_labels;           /* labels parsed */
    double value;           /* sample value */
} sample;

/* Parses one sample line; returns 0 on a syntax error. */
static int parse_sample(const char *line, sample *s) {
    memset(s, 0, sizeof *s);
    const char *p = line;
    size_t n = 0;
    while (*p && *p != '{' && *p != ' ' && n + 1 < sizeof s->name)
        s->name[n++] = *p++;
    if (*p == '{') {
        p++;
        while (*p != '}') {
            if (s->n_labels == 8) return 0;
            char *ln = s->labels[s->n_labels][0], *lv = s->labels[s->n_labels][1];
            n = 0;
            while (*p && *p != '=' && n + 1 < 128)
                ln[n++] = *p++;
            if (*p++ != '=' || *p++ != '"') return 0;
            n = 0;
            while (*p && *p != '"' && n + 1 < 128) {
                if (*p == '\\') {
                    p++;
                    if (*p == 'n')
                        lv[n++] = '\n';
                    else if (*p == '\\' || *p == '"')
                        lv[n++] = *p;
                    else
                        return 0;
                    p++;
                } else {
                    lv[n++] = *p++;
                }
            }
            if (*p++ != '"') return 0;
            s->n_labels++;
            if (*p == ',')
                p++;
            else if (*p != '}')
                return 0;
        }
        p++;
    }
    if (*p++ != ' ') return 0;
    char *end;
    s->value = strtod(p, &end);
    return end != p && *end == '\0';
}

/* Finds the sample `name` whose labels include all of the given name=value pairs; returns its
 * value or -1 when absent. Every non-comment line must parse. */
static double find(const char *text, const char *name, int n_pairs, ...) {
    char *copy = strdup(text);
    double found = -1;
    for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        sample s;
        assert_true(parse_sample(line, &s));
        if (strcmp(s.name, name) != 0) continue;
        va_list ap;
        va_start(ap, n_pairs);
        int ok = 1;
        for (int i = 0; i < n_pairs; i++) {
            const char *ln = va_arg(ap, const char *), *lv = va_arg(ap, const char *);
            int hit = 0;
            for (int k = 0; k < s.n_labels; k++)
                hit |= !strcmp(s.labels[k][0], ln) && !strcmp(s.labels[k][1], lv);
            ok &= hit;
        }
        va_end(ap);
        if (ok) {
            found = s.value;
            break;
        }
    }
    free(copy);
    return found;
}

static char *render(kl_metrics *r) {
    char *buf = NULL;
    size_t len = 0, cap = 0;
    assert_int_equal(kl_metrics_render(r, &buf, &len, &cap), KL_OK);
    assert_non_null(buf);
    assert_int_equal(strlen(buf), len);
    return buf;
}

static const char *const MV[] = {"model", "version"};

/* --- tests ----------------------------------------------------------------------------------- */

static void test_counter_and_gauge(void **state) {
    (void)state;
    kl_metrics *r;
    assert_int_equal(kl_metrics_create(&r), KL_OK);
    const char *v3[] = {"fmnist", "3"}, *v4[] = {"fmnist", "4"};
    kl_counter *a = kl_metrics_counter(r, "kiln_requests_total", "Requests.", MV, v3, 2);
    kl_counter *b = kl_metrics_counter(r, "kiln_requests_total", "Requests.", MV, v4, 2);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_equal(kl_metrics_counter(r, "kiln_requests_total", "x", MV, v3, 2), a);
    kl_counter_add(a, 2);
    kl_counter_add(a, 0.5);
    kl_counter_add(a, -7);   /* ignored: counters never go down */
    kl_counter_add(b, 1e20); /* large values print in exponent form */
    kl_gauge *g = kl_metrics_gauge(r, "kiln_queue_requests", "Queued.", NULL, NULL, 0);
    assert_non_null(g);
    kl_gauge_set(g, 5);
    kl_gauge_add(g, -2);
    assert_true(kl_counter_get(a) == 2.5);
    assert_true(kl_gauge_get(g) == 3);
    char *t = render(r);
    assert_non_null(strstr(t, "# HELP kiln_requests_total Requests.\n"
                              "# TYPE kiln_requests_total counter\n"
                              "kiln_requests_total{model=\"fmnist\",version=\"3\"} 2.5\n"
                              "kiln_requests_total{model=\"fmnist\",version=\"4\"} 1e+20\n"));
    assert_non_null(strstr(t, "# TYPE kiln_queue_requests gauge\nkiln_queue_requests 3\n"));
    assert_true(find(t, "kiln_requests_total", 1, "version", "3") == 2.5);
    assert_true(find(t, "kiln_requests_total", 1, "version", "4") == 1e20);
    assert_true(find(t, "kiln_queue_requests", 0) == 3);
    free(t);
    kl_metrics_free(r);
}

static void test_histogram_cumulative(void **state) {
    (void)state;
    kl_metrics *r;
    assert_int_equal(kl_metrics_create(&r), KL_OK);
    const double bounds[] = {0.001, 0.01, 0.1, 1};
    const char *lv[] = {"m", "1"};
    kl_histogram *h =
        kl_metrics_histogram(r, "kiln_request_duration_seconds", "Latency.", bounds, 4, MV, lv, 2);
    assert_non_null(h);
    const double obs[] = {0.0005, 0.001, 0.005, 0.05, 0.05, 0.5, 3, 10};
    double sum = 0;
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++) {
        kl_histogram_observe(h, obs[i]);
        sum += obs[i];
    }
    char *t = render(r);
    const char *n = "kiln_request_duration_seconds_bucket";
    assert_true(find(t, n, 1, "le", "0.001") == 2); /* le is inclusive: 0.001 counts */
    assert_true(find(t, n, 1, "le", "0.01") == 3);
    assert_true(find(t, n, 1, "le", "0.1") == 5);
    assert_true(find(t, n, 1, "le", "1") == 6);
    assert_true(find(t, n, 2, "le", "+Inf", "model", "m") == 8);
    assert_true(find(t, "kiln_request_duration_seconds_count", 0) == 8);
    assert_true(find(t, "kiln_request_duration_seconds_sum", 1, "version", "1") == sum);
    assert_non_null(strstr(t, "# TYPE kiln_request_duration_seconds histogram\n"));
    assert_non_null(strstr(t, "kiln_request_duration_seconds_bucket{model=\"m\",version=\"1\","
                              "le=\"0.001\"} 2\n"));
    /* buckets come in ascending order and never decrease */
    double prev = -1;
    char *copy = strdup(t), *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, n, strlen(n)) != 0) continue;
        sample s;
        assert_true(parse_sample(line, &s));
        assert_true(s.value >= prev);
        prev = s.value;
    }
    free(copy);
    free(t);
    /* the same family with other bounds, another type or other labels is refused */
    const double other[] = {1, 2};
    assert_null(kl_metrics_histogram(r, "kiln_request_duration_seconds", "", other, 2, MV, lv, 2));
    assert_non_null(strstr(kl_errmsg(), "bounds"));
    assert_null(kl_metrics_counter(r, "kiln_request_duration_seconds", "", MV, lv, 2));
    assert_non_null(strstr(kl_errmsg(), "histogram"));
    const char *ln[] = {"model", "instance"};
    assert_null(kl_metrics_histogram(r, "kiln_request_duration_seconds", "", bounds, 4, ln, lv, 2));
    assert_non_null(strstr(kl_errmsg(), "label names"));
    assert_null(kl_metrics_histogram(r, "kiln_x", "", other, 2, (const char *[]){"le"}, lv, 1));
    const double bad[] = {2, 1};
    assert_null(kl_metrics_histogram(r, "kiln_y", "", bad, 2, NULL, NULL, 0));
    kl_metrics_free(r);
}

static void test_escaping(void **state) {
    (void)state;
    kl_metrics *r;
    assert_int_equal(kl_metrics_create(&r), KL_OK);
    const char *ln[] = {"path"};
    const char *lv[] = {"a\\b\"c\nd"};
    kl_counter *c =
        kl_metrics_counter(r, "kiln_odd_total", "Help with \\ and\nnewline.", ln, lv, 1);
    assert_non_null(c);
    kl_counter_add(c, 1);
    char *t = render(r);
    assert_non_null(strstr(t, "# HELP kiln_odd_total Help with \\\\ and\\nnewline.\n"));
    assert_non_null(strstr(t, "kiln_odd_total{path=\"a\\\\b\\\"c\\nd\"} 1\n"));
    assert_true(find(t, "kiln_odd_total", 1, "path", "a\\b\"c\nd") == 1);
    free(t);
    /* bad names */
    assert_null(kl_metrics_counter(r, "9lives", "", NULL, NULL, 0));
    assert_null(kl_metrics_counter(r, "kiln-dash", "", NULL, NULL, 0));
    assert_null(kl_metrics_counter(r, "kiln_ok", "", (const char *[]){"a:b"}, lv, 1));
    assert_null(kl_metrics_counter(r, "kiln_ok", "", (const char *[]){"__x"}, lv, 1));
    assert_non_null(kl_metrics_counter(r, "kiln:ok_total", "", NULL, NULL, 0));
    kl_metrics_free(r);
}

#define ADDS 200000

static void *adder(void *arg) {
    kl_counter *c = ((void **)arg)[0];
    kl_histogram *h = ((void **)arg)[1];
    for (int i = 0; i < ADDS; i++) {
        kl_counter_add(c, 1);
        kl_histogram_observe(h, (double)(i % 4));
    }
    return NULL;
}

static void test_concurrent_adds_exact(void **state) {
    (void)state;
    kl_metrics *r;
    assert_int_equal(kl_metrics_create(&r), KL_OK);
    kl_counter *c = kl_metrics_counter(r, "kiln_c_total", "c", NULL, NULL, 0);
    const double b[] = {0.5, 1.5};
    kl_histogram *h = kl_metrics_histogram(r, "kiln_h", "h", b, 2, NULL, NULL, 0);
    void *args[2] = {c, h};
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, adder, args), 0);
    /* rendering while the adders run must not disturb them */
    for (int i = 0; i < 20; i++)
        free(render(r));
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_true(kl_counter_get(c) == 4.0 * ADDS);
    char *t = render(r);
    assert_true(find(t, "kiln_c_total", 0) == 4.0 * ADDS);
    assert_true(find(t, "kiln_h_count", 0) == 4.0 * ADDS);
    assert_true(find(t, "kiln_h_bucket", 1, "le", "0.5") == ADDS); /* the 0s */
    assert_true(find(t, "kiln_h_bucket", 1, "le", "1.5") == 2 * ADDS);
    assert_true(find(t, "kiln_h_sum", 0) == 4.0 * (ADDS / 4) * (0 + 1 + 2 + 3));
    free(t);
    kl_metrics_free(r);
}

static void test_remove_hides(void **state) {
    (void)state;
    kl_metrics *r;
    assert_int_equal(kl_metrics_create(&r), KL_OK);
    const char *v1[] = {"m", "1"}, *v2[] = {"m", "2"};
    kl_counter *a = kl_metrics_counter(r, "kiln_n_total", "n", MV, v1, 2);
    kl_counter *b = kl_metrics_counter(r, "kiln_n_total", "n", MV, v2, 2);
    kl_counter_add(a, 1);
    kl_counter_add(b, 2);
    kl_metrics_remove(r, "kiln_n_total", "version", "1");
    kl_metrics_remove(r, "kiln_nothing", "version", "1"); /* ignored */
    kl_metrics_remove(r, "kiln_n_total", "nolabel", "1"); /* ignored */
    char *t = render(r);
    assert_true(find(t, "kiln_n_total", 1, "version", "1") == -1);
    assert_true(find(t, "kiln_n_total", 1, "version", "2") == 2);
    free(t);
    kl_counter_add(a, 1); /* still a valid pointer */
    kl_metrics_remove(r, "kiln_n_total", "model", "m");
    t = render(r);
    assert_null(strstr(t, "kiln_n_total")); /* no visible child: no HELP/TYPE either */
    free(t);
    assert_ptr_equal(kl_metrics_counter(r, "kiln_n_total", "n", MV, v1, 2), a); /* shown again */
    t = render(r);
    assert_true(find(t, "kiln_n_total", 1, "version", "1") == 2);
    free(t);
    kl_metrics_free(r);
}

static void test_render_appends(void **state) {
    (void)state;
    kl_metrics *r;
    assert_int_equal(kl_metrics_create(&r), KL_OK);
    kl_gauge *g = kl_metrics_gauge(r, "kiln_g", "g", NULL, NULL, 0);
    kl_gauge_set(g, 0.1);
    char *buf = strdup("# prefix\n");
    size_t len = strlen(buf), cap = len + 1;
    assert_int_equal(kl_metrics_render(r, &buf, &len, &cap), KL_OK);
    assert_string_equal(buf, "# prefix\n# HELP kiln_g g\n# TYPE kiln_g gauge\nkiln_g 0.1\n");
    free(buf);
    /* many children grow the buffer well past its first size */
    for (int i = 0; i < 500; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        const char *lv[] = {v};
        kl_counter_add(kl_metrics_counter(r, "kiln_many_total", "m", (const char *[]){"i"}, lv, 1),
                       i);
    }
    char *t = render(r);
    assert_true(find(t, "kiln_many_total", 1, "i", "499") == 499);
    free(t);
    kl_metrics_free(r);
    kl_metrics_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_and_gauge), cmocka_unit_test(test_histogram_cumulative),
        cmocka_unit_test(test_escaping),          cmocka_unit_test(test_concurrent_adds_exact),
        cmocka_unit_test(test_remove_hides),      cmocka_unit_test(test_render_appends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
