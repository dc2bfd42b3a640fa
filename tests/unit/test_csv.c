/* test_csv.c — the CSV parser and encoder: quoting, line numbers, every malformed-file error
 * (naming file, line and column), imputation, one-hot, class order, JSON round trip. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "data/csv.h"
#include "data/csv_encoder.h"
#include "data_test_util.h"

#define assert_msg_has(sub)                                                                        \
    do {                                                                                           \
        if (!strstr(kl_errmsg(), (sub))) {                                                         \
            fail_msg("message \"%s\" lacks \"%s\"", kl_errmsg(), (sub));                           \
        }                                                                                          \
    } while (0)

static void test_parse_rfc4180(void **state) {
    (void)state;
    const char *p = tu_path("q.csv");
    tu_write_str(p, "\xEF\xBB\xBF"
                    "id,\"note, with comma\",x\r\n"
                    "1,\"say \"\"hi\"\"\",  2.5 \r\n"
                    "\r\n"
                    "2,\"two\nlines\",3\n"
                    "3,,4");
    kl_csv_table t;
    assert_int_equal(kl_csv_read(p, &t), KL_OK);
    assert_int_equal(t.n_cols, 3);
    assert_string_equal(kl_csv_colname(&t, 0), "id");
    assert_string_equal(kl_csv_colname(&t, 1), "note, with comma");
    assert_int_equal(t.n_rows, 3);
    assert_string_equal(kl_csv_cell(&t, 0, 1), "say \"hi\"");
    assert_string_equal(kl_csv_cell(&t, 0, 2), "2.5"); /* unquoted blanks trimmed */
    assert_string_equal(kl_csv_cell(&t, 1, 1), "two\nlines");
    assert_string_equal(kl_csv_cell(&t, 2, 1), "");
    assert_string_equal(kl_csv_cell(&t, 2, 2), "4");
    assert_int_equal(t.lines[0], 2);
    assert_int_equal(t.lines[1], 4); /* line 3 was empty */
    assert_int_equal(t.lines[2], 6); /* the quoted newline counts */
    assert_int_equal(kl_csv_find_column(&t, "x"), 2);
    assert_int_equal(kl_csv_find_column(&t, "y"), -1);
    kl_csv_free(&t);
    /* The same table through gzip. */
    const char *gz = tu_path("q.csv.gz");
    const char *text = "a,b\n1,2\n";
    tu_write_gz(gz, text, strlen(text));
    assert_int_equal(kl_csv_read(gz, &t), KL_OK);
    assert_int_equal(t.n_rows, 1);
    assert_string_equal(kl_csv_cell(&t, 0, 1), "2");
    kl_csv_free(&t);
}

static void test_parse_errors(void **state) {
    (void)state;
    const char *p = tu_path("bad.csv");
    kl_csv_table t;
    tu_write_str(p, "a,b,c\n1,2,3\n\n4,5\n");
    assert_int_equal(kl_csv_read(p, &t), KL_EFORMAT);
    assert_msg_has("bad.csv");
    assert_msg_has("line 4");
    assert_msg_has("found 2 fields, expected 3");
    tu_write_str(p, "a,b\n1,2,3\n");
    assert_int_equal(kl_csv_read(p, &t), KL_EFORMAT);
    assert_msg_has("line 2: found 3 fields, expected 2");
    tu_write_str(p, "a,b\n1,2\n3,\"open\n4,5\n");
    assert_int_equal(kl_csv_read(p, &t), KL_EFORMAT);
    assert_msg_has("line 3: field 2: quote opened here is never closed");
    tu_write_str(p, "a,b\n1,\"x\"y\n");
    assert_int_equal(kl_csv_read(p, &t), KL_EFORMAT);
    assert_msg_has("line 2: field 2: text after the closing quote");
    tu_write_str(p, "a,b,a\n1,2,3\n");
    assert_int_equal(kl_csv_read(p, &t), KL_EFORMAT);
    assert_msg_has("column \"a\" appears twice");
    tu_write_str(p, "a,,c\n1,2,3\n");
    assert_int_equal(kl_csv_read(p, &t), KL_EFORMAT);
    assert_msg_has("column 2 of the header has no name");
    tu_write_str(p, "\n\n");
    assert_int_equal(kl_csv_read(p, &t), KL_EFORMAT);
    assert_msg_has("empty file");
    tu_write(p, "a,b\n1,\0\n", 8);
    assert_int_equal(kl_csv_read(p, &t), KL_EFORMAT);
    assert_msg_has("NUL byte at byte offset 6");
    assert_int_equal(kl_csv_read(tu_path("absent.csv"), &t), KL_EIO);
    assert_msg_has("absent.csv");
}

static void test_values(void **state) {
    (void)state;
    double v;
    assert_true(kl_csv_parse_number("1e3", &v) && v == 1000);
    assert_true(kl_csv_parse_number(" -2.5 ", &v) && v == -2.5);
    assert_false(kl_csv_parse_number("12abc", &v));
    assert_false(kl_csv_parse_number("inf", &v));
    assert_false(kl_csv_parse_number("", &v));
    assert_true(kl_csv_is_missing(""));
    assert_true(kl_csv_is_missing("NA"));
    assert_true(kl_csv_is_missing("?"));
    assert_false(kl_csv_is_missing("0"));
}

/* Training table used by the encoder tests: age numeric, color categorical, label classes. */
static const char *TRAIN_CSV = "age,color,size,label\n"
                               "10,red,1,cat\n"       /* line 2 */
                               ",blue,2,dog\n"        /* line 3 */
                               "30,?,3,cat\n"         /* line 4 */
                               "1000,green,NA,bird\n" /* line 5: only in the "validation" rows */
                               "20,blue,5,dog\n";     /* line 6 */

static void fit_train(kl_csv_encoder *e, kl_csv_table *t) {
    const char *p = tu_path("train.csv");
    tu_write_str(p, TRAIN_CSV);
    assert_int_equal(kl_csv_read(p, t), KL_OK);
    const char *cat[1] = {"color"};
    int64_t train_rows[4] = {0, 1, 2, 4}; /* row 3 (age 1000, green) is held out */
    assert_int_equal(kl_csv_encoder_fit(e, t, "label", cat, 1, 0, train_rows, 4), KL_OK);
}

static void test_encoder_fit_and_encode(void **state) {
    (void)state;
    kl_csv_encoder e;
    kl_csv_table t;
    fit_train(&e, &t);
    assert_int_equal(e.n_columns, 3);
    assert_int_equal(e.columns[0].kind, KL_COL_NUMERIC);
    /* Median of the training split's ages {10, 30, 20}: 20 — the held-out 1000 is not used. */
    assert_true(e.columns[0].impute == 20.0);
    assert_int_equal(e.columns[1].kind, KL_COL_CATEGORICAL);
    /* Vocabulary from the whole file, sorted; mode from the training split (blue: 2). */
    assert_int_equal(e.columns[1].n_categories, 3);
    assert_string_equal(e.columns[1].categories[0], "blue");
    assert_string_equal(e.columns[1].categories[1], "green");
    assert_string_equal(e.columns[1].categories[2], "red");
    assert_string_equal(e.columns[1].categories[e.columns[1].impute_category], "blue");
    /* size median over {1, 2, 3, 5}: 2.5 */
    assert_true(e.columns[2].impute == 2.5);
    assert_int_equal(e.n_features, 5);
    assert_int_equal(e.n_classes, 3);
    assert_string_equal(e.class_names[0], "bird");
    assert_string_equal(e.class_names[2], "dog");

    kl_dataset ds;
    assert_int_equal(kl_csv_encode(&e, &t, NULL, 0, KL_LABELS_REQUIRED, &ds), KL_OK);
    assert_int_equal(ds.n, 5);
    assert_int_equal(ds.d, 5);
    assert_string_equal(ds.feature_names[0], "age");
    assert_string_equal(ds.feature_names[1], "color=blue");
    assert_string_equal(ds.feature_names[3], "color=red");
    assert_string_equal(ds.feature_names[4], "size");
    const float want[5][5] = {{10, 0, 0, 1, 1},
                              {20, 1, 0, 0, 2}, /* age imputed with the median */
                              {30, 1, 0, 0, 3}, /* color imputed with the mode */
                              {1000, 0, 1, 0, 2.5f},
                              {20, 1, 0, 0, 5}};
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++)
            assert_true(ds.x[i * 5 + j] == want[i][j]);
    const int32_t wy[5] = {1, 2, 1, 0, 2};
    for (int i = 0; i < 5; i++)
        assert_int_equal(ds.y[i], wy[i]);
    assert_null(ds.t);
    kl_dataset_free(&ds);
    kl_csv_free(&t);
    kl_csv_encoder_free(&e);
}

static void test_encode_errors(void **state) {
    (void)state;
    kl_csv_encoder e;
    kl_csv_table t, in;
    fit_train(&e, &t);
    kl_dataset ds;
    const char *p = tu_path("in.csv");
    tu_write_str(p, "age,color,size,label\n1,red,2,cat\n2,purple,3,dog\n");
    assert_int_equal(kl_csv_read(p, &in), KL_OK);
    assert_int_equal(kl_csv_encode(&e, &in, NULL, 0, KL_LABELS_IF_PRESENT, &ds), KL_EFORMAT);
    assert_msg_has("in.csv");
    assert_msg_has("line 3, column \"color\": unknown category \"purple\"");
    assert_null(ds.x);
    kl_csv_free(&in);

    tu_write_str(p, "age,color,size,label\n1,red,2,cat\n2,red,3,fish\n");
    assert_int_equal(kl_csv_read(p, &in), KL_OK);
    assert_int_equal(kl_csv_encode(&e, &in, NULL, 0, KL_LABELS_IF_PRESENT, &ds), KL_EFORMAT);
    assert_msg_has("in.csv\": line 3, column \"label\": unknown label \"fish\"");
    /* Ignoring labels, the same file encodes. */
    assert_int_equal(kl_csv_encode(&e, &in, NULL, 0, KL_LABELS_IGNORE, &ds), KL_OK);
    assert_null(ds.y);
    kl_dataset_free(&ds);
    kl_csv_free(&in);

    tu_write_str(p, "age,color,size,label\n1,red,2,cat\n\"twelve\",red,3,dog\n");
    assert_int_equal(kl_csv_read(p, &in), KL_OK);
    assert_int_equal(kl_csv_encode(&e, &in, NULL, 0, KL_LABELS_REQUIRED, &ds), KL_EFORMAT);
    assert_msg_has("in.csv\": line 3, column \"age\": text \"twelve\" in a numeric column");
    kl_csv_free(&in);

    tu_write_str(p, "age,color,size,label\n1,red,2,NA\n");
    assert_int_equal(kl_csv_read(p, &in), KL_OK);
    assert_int_equal(kl_csv_encode(&e, &in, NULL, 0, KL_LABELS_REQUIRED, &ds), KL_EFORMAT);
    assert_msg_has("line 2, column \"label\": missing label");
    kl_csv_free(&in);

    /* Columns are matched by name: a different order and no label column are fine... */
    tu_write_str(p, "size,color,age\n7,green,\n");
    assert_int_equal(kl_csv_read(p, &in), KL_OK);
    assert_int_equal(kl_csv_encode(&e, &in, NULL, 0, KL_LABELS_IF_PRESENT, &ds), KL_OK);
    const float want[5] = {20, 0, 1, 0, 7};
    for (int j = 0; j < 5; j++)
        assert_true(ds.x[j] == want[j]);
    assert_null(ds.y);
    kl_dataset_free(&ds);
    /* ...unless labels are required. */
    assert_int_equal(kl_csv_encode(&e, &in, NULL, 0, KL_LABELS_REQUIRED, &ds), KL_EFORMAT);
    assert_msg_has("no label column \"label\"");
    kl_csv_free(&in);

    tu_write_str(p, "age,color\n1,red\n");
    assert_int_equal(kl_csv_read(p, &in), KL_OK);
    assert_int_equal(kl_csv_encode(&e, &in, NULL, 0, KL_LABELS_IF_PRESENT, &ds), KL_EFORMAT);
    assert_msg_has("column \"size\", a feature of the model, is not in the header");
    kl_csv_free(&in);

    tu_write_str(p, "age,color,size,extra\n1,red,2,9\n");
    assert_int_equal(kl_csv_read(p, &in), KL_OK);
    assert_int_equal(kl_csv_encode(&e, &in, NULL, 0, KL_LABELS_IF_PRESENT, &ds), KL_EFORMAT);
    assert_msg_has("column \"extra\" is not a feature of the model");
    kl_csv_free(&in);
    kl_csv_free(&t);
    kl_csv_encoder_free(&e);
}

static void test_fit_errors(void **state) {
    (void)state;
    const char *p = tu_path("fit.csv");
    kl_csv_table t;
    kl_csv_encoder e;
    int64_t rows[3] = {0, 1, 2};
    tu_write_str(p, "a,b,label\n1,x,0\n2,3,1\n4,5,1\n");
    assert_int_equal(kl_csv_read(p, &t), KL_OK);
    assert_int_equal(kl_csv_encoder_fit(&e, &t, "label", NULL, 0, 0, rows, 3), KL_EFORMAT);
    assert_msg_has("fit.csv\": line 2, column \"b\": text \"x\" in a numeric column");
    assert_int_equal(kl_csv_encoder_fit(&e, &t, "y", NULL, 0, 0, rows, 3), KL_EINVAL);
    assert_msg_has("data.label_column: \"y\" is not a column of");
    const char *bad[1] = {"zz"};
    assert_int_equal(kl_csv_encoder_fit(&e, &t, "label", bad, 1, 0, rows, 3), KL_EINVAL);
    assert_msg_has("data.categorical: \"zz\" is not a column");
    kl_csv_free(&t);

    tu_write_str(p, "a,label\n,0\n?,1\n3,1\n");
    assert_int_equal(kl_csv_read(p, &t), KL_OK);
    assert_int_equal(kl_csv_encoder_fit(&e, &t, "label", NULL, 0, 0, rows, 2), KL_EFORMAT);
    assert_msg_has("column \"a\": every value in the training split is missing");
    kl_csv_free(&t);
}

static void test_class_order_and_regression(void **state) {
    (void)state;
    const char *p = tu_path("cls.csv");
    kl_csv_table t;
    kl_csv_encoder e;
    int64_t rows[4] = {0, 1, 2, 3};
    tu_write_str(p, "x,label\n1,10\n2,9\n3,-1\n4,9\n");
    assert_int_equal(kl_csv_read(p, &t), KL_OK);
    assert_int_equal(kl_csv_encoder_fit(&e, &t, "label", NULL, 0, 0, rows, 4), KL_OK);
    assert_int_equal(e.n_classes, 3);
    /* Numeric labels sort as numbers, not as text ("10" < "9"). */
    assert_string_equal(e.class_names[0], "-1");
    assert_string_equal(e.class_names[1], "9");
    assert_string_equal(e.class_names[2], "10");
    kl_dataset ds;
    assert_int_equal(kl_csv_encode(&e, &t, NULL, 0, KL_LABELS_REQUIRED, &ds), KL_OK);
    assert_int_equal(ds.y[0], 2);
    assert_int_equal(ds.y[2], 0);
    kl_dataset_free(&ds);
    kl_csv_encoder_free(&e);
    /* The same column as a regression target. */
    assert_int_equal(kl_csv_encoder_fit(&e, &t, "label", NULL, 0, 1, rows, 4), KL_OK);
    assert_int_equal(e.n_classes, 0);
    assert_int_equal(kl_csv_encode(&e, &t, NULL, 0, KL_LABELS_REQUIRED, &ds), KL_OK);
    assert_null(ds.y);
    assert_true(ds.t[0] == 10.0f && ds.t[2] == -1.0f);
    kl_dataset_free(&ds);
    kl_csv_encoder_free(&e);
    kl_csv_free(&t);
    tu_write_str(p, "x,label\n1,2.5\n2,high\n");
    assert_int_equal(kl_csv_read(p, &t), KL_OK);
    assert_int_equal(kl_csv_encoder_fit(&e, &t, "label", NULL, 0, 1, rows, 2), KL_OK);
    assert_int_equal(kl_csv_encode(&e, &t, NULL, 0, KL_LABELS_REQUIRED, &ds), KL_EFORMAT);
    assert_msg_has("cls.csv\": line 3, column \"label\": regression target \"high\"");
    kl_csv_encoder_free(&e);
    kl_csv_free(&t);
}

static void test_json_round_trip(void **state) {
    (void)state;
    kl_csv_encoder e, back;
    kl_csv_table t;
    fit_train(&e, &t);
    cJSON *j;
    assert_int_equal(kl_csv_encoder_to_json(&e, &j), KL_OK);
    char *text = cJSON_PrintUnformatted(j);
    assert_non_null(strstr(text, "\"format\":\"csv\""));
    assert_non_null(
        strstr(text, "\"categories\":[\"blue\",\"green\",\"red\"],\"impute\":\"blue\""));
    assert_int_equal(kl_csv_encoder_from_json(j, &back), KL_OK);
    kl_dataset a, b;
    assert_int_equal(kl_csv_encode(&e, &t, NULL, 0, KL_LABELS_REQUIRED, &a), KL_OK);
    assert_int_equal(kl_csv_encode(&back, &t, NULL, 0, KL_LABELS_REQUIRED, &b), KL_OK);
    assert_int_equal(a.d, b.d);
    assert_memory_equal(a.x, b.x, (size_t)(a.n * a.d) * sizeof(float));
    assert_memory_equal(a.y, b.y, (size_t)a.n * sizeof(int32_t));
    kl_dataset_free(&a);
    kl_dataset_free(&b);
    kl_csv_encoder_free(&back);
    cJSON_Delete(j);

    /* Each corruption is refused with the key named. */
    struct {
        const char *from, *to, *msg;
    } cases[] = {
        {"[\"blue\",\"green\",\"red\"]", "[\"green\",\"blue\",\"red\"]", "not sorted"},
        {"\"kind\":\"categorical\"", "\"kind\":\"ordinal\"", "columns[1].kind"},
        {"\"n_features\":5", "\"n_features\":6", "n_features"},
        {"\"impute\":\"blue\"", "\"impute\":\"pink\"", "columns[1].impute"},
        {"\"impute\":20", "\"impute\":\"x\"", "columns[0].impute"},
        {"\"format\":\"csv\"", "\"format\":\"tsv\"", "format"},
        {"\"class_names\":[\"bird\",\"cat\",\"dog\"]", "\"class_names\":[\"cat\",\"cat\"]",
         "class_names[1]"},
        {"\"task\":\"classification\"", "\"task\":\"ranking\"", "task"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *at = strstr(text, cases[i].from);
        if (!at) fail_msg("case %zu: \"%s\" not in %s", i, cases[i].from, text);
        char bad[4096];
        snprintf(bad, sizeof bad, "%.*s%s%s", (int)(at - text), text, cases[i].to,
                 at + strlen(cases[i].from));
        cJSON *bj = cJSON_Parse(bad);
        assert_non_null(bj);
        assert_int_not_equal(kl_csv_encoder_from_json(bj, &back), KL_OK);
        assert_msg_has(cases[i].msg);
        assert_msg_has("encoder");
        assert_null(back.columns);
        cJSON_Delete(bj);
    }
    cJSON_free(text);
    kl_csv_free(&t);
    kl_csv_encoder_free(&e);
}

int main(void) {
    if (tu_init("test_csv")) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_rfc4180),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_encoder_fit_and_encode),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_fit_errors),
        cmocka_unit_test(test_class_order_and_regression),
        cmocka_unit_test(test_json_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
