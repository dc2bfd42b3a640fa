/* test_data_checks.c — data checks (parsing the YAML, each kind passing and failing with its
 * measured value, IDX files, the JSON report) and data diffs (schema changes, PSI and KS,
 * category share moves). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "data/checks.h"
#include "data/diff.h"
#include "data/profile.h"
#include "data_test_util.h"

#define assert_msg_has(sub)                                                                        \
    do {                                                                                           \
        if (!strstr(kl_errmsg(), (sub))) {                                                         \
            fail_msg("message \"%s\" lacks \"%s\"", kl_errmsg(), (sub));                           \
        }                                                                                          \
    } while (0)

/* 10 rows: age has 1 missing and spans 18..70, city 2 categories, label 7 vs 3. */
static const char CSV[] = "age,city,income,label\n"
                          "18,NY,100,a\n25,NY,200,a\n30,LA,300,a\n,NY,400,a\n45,SF,500,a\n"
                          "50,NY,600,a\n55,LA,700,a\n60,NY,,b\n65,NY,900,b\n70,LA,1000,b\n";

/* The result called name, or a test failure. */
static const kl_data_check_result *find(const kl_data_check_result *r, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(r[i].name, name)) return &r[i];
    fail_msg("no result \"%s\"", name);
    return NULL;
}

static void run(const char *yaml, const char *path, const char *labels, kl_data_check_result **r,
                int *n, int *all) {
    kl_data_checks spec;
    if (kl_data_checks_parse_yaml(yaml, &spec)) fail_msg("parse: %s", kl_errmsg());
    if (kl_data_checks_run_file(&spec, path, labels, r, n, all)) fail_msg("run: %s", kl_errmsg());
}

static void test_parse_errors(void **state) {
    (void)state;
    kl_data_checks s;
    assert_int_equal(kl_data_checks_parse_yaml("min_rowz: 3\n", &s), KL_EINVAL);
    assert_msg_has("unknown key \"min_rowz\"");
    assert_int_equal(kl_data_checks_parse_yaml("columns: {a: text}\n", &s), KL_EINVAL);
    assert_msg_has("checks.columns.a");
    assert_int_equal(kl_data_checks_parse_yaml("max_missing: 1.5\n", &s), KL_EINVAL);
    assert_msg_has("not a share");
    assert_int_equal(kl_data_checks_parse_yaml("ranges: {a: [5, 1]}\n", &s), KL_EINVAL);
    assert_msg_has("min is above max");
    assert_int_equal(kl_data_checks_parse_yaml("ranges: {a: [1, 2, 3]}\n", &s), KL_EINVAL);
    assert_int_equal(kl_data_checks_parse_yaml("label: {max_ratio: 0.5}\n", &s), KL_EINVAL);
    assert_int_equal(kl_data_checks_parse_yaml("label: {min_count: 3}\n", &s), KL_EINVAL);
    assert_msg_has("checks.label");
    assert_int_equal(kl_data_checks_parse_yaml("min_rows: [\n", &s), KL_EFORMAT);
    assert_msg_has("YAML error");
    /* A whole config: its checks: block is read. */
    assert_int_equal(kl_data_checks_parse_yaml("data: {train: x.csv}\nchecks:\n  min_rows: 5\n"
                                               "  label: {column: y, min_share: 0.1}\n",
                                               &s),
                     KL_OK);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.check[0].kind, KL_CHECK_MIN_ROWS);
    assert_string_equal(s.label_column, "y");
    assert_int_equal(kl_data_checks_parse_yaml("", &s), KL_OK);
    assert_int_equal(s.n, 0);
}

static void test_checks_pass(void **state) {
    (void)state;
    const char *p = tu_path("pass.csv");
    tu_write_str(p, CSV);
    kl_data_check_result *r;
    int n, all;
    run("min_rows: 10\n"
        "columns: {age: numeric, city: categorical, income: numeric, label: any}\n"
        "strict_columns: true\n"
        "max_missing: {overall: 0.05, age: 0.1, \"*\": 0.1}\n"
        "ranges: {age: [18, 70], income: {min: 0}, \"*\": [0, ~]}\n"
        "label: {max_ratio: 2.5, min_share: 0.3}\n",
        p, NULL, &r, &n, &all);
    assert_int_equal(all, 1);
    assert_int_equal(n, 1 + 4 + 1 + (2 + 4) + (2 + 2) + 2); /* "*": each column, each numeric one */
    for (int i = 0; i < n; i++)
        if (!r[i].passed) fail_msg("%s failed: %s", r[i].name, r[i].detail);
    assert_true(fabs(find(r, n, "missing:overall")->value - 2.0 / 40) < 1e-12);
    assert_true(fabs(find(r, n, "label:max_ratio")->value - 7.0 / 3) < 1e-12);
    assert_true(fabs(find(r, n, "label:min_share")->value - 0.3) < 1e-12);
    assert_int_equal(find(r, n, "min_rows")->value, 10);
    char *json = kl_data_checks_report_json(p, r, n, all);
    assert_non_null(strstr(json, "\"passed\":\ttrue"));
    assert_non_null(strstr(json, "\"name\":\t\"range:income\""));
    free(json);
    free(r);
}

static void test_checks_fail(void **state) {
    (void)state;
    const char *p = tu_path("fail.csv");
    tu_write_str(p, CSV);
    kl_data_check_result *r;
    int n, all;
    run("min_rows: 11\n"
        "columns: {age: categorical, city: categorical, zip: any}\n"
        "strict_columns: true\n"
        "max_missing: {overall: 0.04, age: 0.05, nope: 0.5}\n"
        "ranges: {age: [20, 65], city: [0, 1]}\n"
        "label: {max_ratio: 2, min_share: 0.35}\n",
        p, NULL, &r, &n, &all);
    assert_int_equal(all, 0);
    const kl_data_check_result *x = find(r, n, "min_rows");
    assert_false(x->passed);
    assert_string_equal(x->detail, "10 rows < 11");
    x = find(r, n, "column:age");
    assert_false(x->passed);
    assert_string_equal(x->detail, "age: numeric, expected categorical");
    assert_true(find(r, n, "column:city")->passed);
    x = find(r, n, "column:zip");
    assert_false(x->passed);
    assert_string_equal(x->detail, "zip: no such column");
    x = find(r, n, "strict_columns");
    assert_false(x->passed);
    assert_int_equal(x->value, 2);
    assert_string_equal(x->detail, "2 unexpected columns: income, label");
    assert_false(find(r, n, "missing:overall")->passed);
    x = find(r, n, "missing:age");
    assert_false(x->passed);
    assert_true(fabs(x->value - 0.1) < 1e-12);
    assert_false(find(r, n, "missing:nope")->passed);
    x = find(r, n, "range:age");
    assert_false(x->passed);
    assert_int_equal(x->value, 2); /* 18 and 70 */
    assert_non_null(strstr(x->detail, "min 18, max 70 outside [20, 65]"));
    x = find(r, n, "range:city");
    assert_false(x->passed);
    assert_non_null(strstr(x->detail, "not numeric"));
    x = find(r, n, "label:max_ratio");
    assert_false(x->passed);
    assert_string_equal(x->detail, "label: class \"a\" has 7 rows, \"b\" 3: ratio 2.333 > 2");
    x = find(r, n, "label:min_share");
    assert_false(x->passed);
    assert_string_equal(x->detail, "label: smallest class \"b\" has 30% of 10 rows < 35%");
    char *json = kl_data_checks_report_json(NULL, r, n, all);
    assert_non_null(strstr(json, "\"passed\":\tfalse"));
    free(json);
    free(r);

    /* No label column at all. */
    run("label: {column: target, min_share: 0.1}\n", p, NULL, &r, &n, &all);
    assert_int_equal(all, 0);
    assert_string_equal(r[0].detail, "no labels: no column \"target\"");
    free(r);
}

static void test_checks_idx(void **state) {
    (void)state;
    unsigned char buf[256];
    uint8_t px[4 * 2 * 2] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 200};
    uint32_t dims[3] = {4, 2, 2};
    const char *images = tu_path("i-idx3-ubyte");
    tu_write(images, buf, tu_idx(buf, 0x08, 3, dims, px, sizeof px));
    uint8_t y[4] = {0, 1, 1, 1};
    uint32_t ld[1] = {4};
    const char *labels = tu_path("l-idx1-ubyte");
    tu_write(labels, buf, tu_idx(buf, 0x08, 1, ld, y, sizeof y));
    kl_data_check_result *r;
    int n, all;
    run("min_rows: 4\nmax_missing: 0\nranges: {\"*\": [0, 100]}\nlabel: {max_ratio: 3}\n", images,
        labels, &r, &n, &all);
    assert_int_equal(n, 4);
    assert_true(find(r, n, "min_rows")->passed);
    assert_true(find(r, n, "missing:overall")->passed);
    assert_false(find(r, n, "range:pixel")->passed);
    assert_true(find(r, n, "label:max_ratio")->passed);
    assert_int_equal(find(r, n, "label:max_ratio")->value, 3);
    free(r);
}

static void profile_text(const char *name, const char *text, kl_data_profile *p) {
    const char *path = tu_path(name);
    tu_write_str(path, text);
    if (kl_data_profile_file(path, NULL, p)) fail_msg("%s", kl_errmsg());
}

static const kl_column_diff *col(const kl_data_diff *d, const char *name) {
    for (int j = 0; j < d->n; j++)
        if (!strcmp(d->cols[j].name, name)) return &d->cols[j];
    fail_msg("no column \"%s\" in the diff", name);
    return NULL;
}

static void test_diff(void **state) {
    (void)state;
    /* x shifts up by 100 in B; y is the same; c's shares move; z is retyped; w goes, v comes. */
    char a[4096] = "x,y,c,z,w\n", b[4096] = "x,y,c,z,v\n";
    for (int i = 0; i < 100; i++) {
        char row[128];
        snprintf(row, sizeof row, "%d,%d,%s,%d,1\n", i, i % 7, i < 50 ? "red" : "blue", i);
        strcat(a, row);
        snprintf(row, sizeof row, "%d,%d,%s,%s,1\n", i + 100, i % 7, i < 80 ? "red" : "green",
                 i ? "t" : "");
        strcat(b, row);
    }
    kl_data_profile pa, pb;
    profile_text("da.csv", a, &pa);
    profile_text("db.csv", b, &pb);
    kl_data_diff d;
    assert_int_equal(kl_data_diff_profiles(&pa, &pb, &d), KL_OK);
    assert_false(d.identical);
    assert_true(d.schema_changed);
    assert_int_equal(d.n, 6);
    const kl_column_diff *c = col(&d, "x");
    assert_int_equal(c->change, KL_DIFF_SAME);
    assert_true(c->changed);
    assert_true(fabs(c->ks - 1.0) < 1e-12); /* disjoint supports */
    assert_true(c->psi > 5);
    assert_true(fabs(c->mean[1] - c->mean[0] - 100) < 1e-9);
    c = col(&d, "y");
    assert_false(c->changed);
    assert_true(fabs(c->psi) < 1e-12);
    assert_true(fabs(c->ks) < 1e-12);
    c = col(&d, "c");
    assert_true(c->changed);
    assert_int_equal(c->n_top, 3);
    assert_string_equal(c->top[0].value, "blue"); /* 50% -> 0% */
    assert_true(fabs(c->top[0].share[0] - 0.5) < 1e-12);
    assert_true(fabs(c->top[1].share[1] - 0.3) < 1e-12 || fabs(c->top[1].share[1] - 0.8) < 1e-12);
    assert_int_equal(col(&d, "z")->change, KL_DIFF_TYPE);
    assert_int_equal(col(&d, "w")->change, KL_DIFF_REMOVED);
    assert_int_equal(col(&d, "v")->change, KL_DIFF_ADDED);
    assert_string_equal(d.cols[5].name, "v"); /* A's order, then B's new columns */
    char *json = kl_data_diff_json(&d, "A", "B");
    assert_non_null(strstr(json, "\"change\":\t\"type_changed\""));
    assert_non_null(strstr(json, "\"schema_changed\":\ttrue"));
    free(json);
    kl_data_diff_free(&d);

    assert_int_equal(kl_data_diff_profiles(&pa, &pa, &d), KL_OK);
    assert_true(d.identical);
    assert_false(d.schema_changed);
    assert_int_equal(d.n_changed, 0);
    kl_data_diff_free(&d);
    kl_data_profile_free(&pa);
    kl_data_profile_free(&pb);
}

static void test_idx_profiles_and_diff(void **state) {
    (void)state;
    unsigned char buf[256];
    uint8_t px[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    uint32_t d322[3] = {3, 2, 2}, d243[3] = {2, 2, 3}, d3[1] = {3};
    const char *a = tu_path("a-idx3-ubyte"), *b = tu_path("b-idx3-ubyte");
    const char *l = tu_path("l3-idx1-ubyte");
    tu_write(a, buf, tu_idx(buf, 0x08, 3, d322, px, sizeof px));
    tu_write(b, buf, tu_idx(buf, 0x08, 3, d243, px, sizeof px));
    uint8_t y[3] = {2, 0, 2};
    tu_write(l, buf, tu_idx(buf, 0x08, 1, d3, y, sizeof y));
    kl_data_profile pl, pa, pb;
    assert_int_equal(kl_data_profile_file(l, NULL, &pl), KL_OK);
    assert_string_equal(pl.format, "labels");
    assert_int_equal(pl.rows, 3);
    assert_int_equal(pl.n_cols, 1);
    assert_int_equal(pl.cols[0].n_cats, 2);
    assert_int_equal(pl.cols[0].cat_count[1], 2); /* "2" twice */
    assert_int_equal(kl_data_profile_file(l, l, &pa), KL_EINVAL);
    assert_int_equal(kl_data_profile_file(a, l, &pa), KL_OK);
    assert_int_equal(pa.n_dims, 3);
    assert_int_equal(pa.shape[2], 2);
    assert_true(fabs(pa.cols[0].mean - 5.5) < 1e-12);
    assert_int_equal(kl_data_profile_file(b, NULL, &pb), KL_OK);
    kl_data_diff d;
    assert_int_equal(kl_data_diff_profiles(&pa, &pb, &d), KL_OK);
    assert_true(d.schema_changed); /* items 2x2 -> 2x3, and the labels went */
    assert_int_equal(d.rows[0], 3);
    assert_int_equal(d.rows[1], 2);
    assert_int_equal(d.cols[1].change, KL_DIFF_REMOVED);
    kl_data_diff_free(&d);
    kl_data_profile_free(&pl);
    kl_data_profile_free(&pa);
    kl_data_profile_free(&pb);
    const char *txt = tu_path("notes.txt");
    tu_write_str(txt, "hello");
    assert_int_equal(kl_data_profile_file(txt, NULL, &pa), KL_EFORMAT);
    assert_msg_has("cannot tell the format");
}

int main(void) {
    if (tu_init("test_data_checks")) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_errors), cmocka_unit_test(test_checks_pass),
        cmocka_unit_test(test_checks_fail),  cmocka_unit_test(test_checks_idx),
        cmocka_unit_test(test_diff),         cmocka_unit_test(test_idx_profiles_and_diff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
