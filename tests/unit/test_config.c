/* test_config.c — YAML config and --set overrides: values land, and every bad key or value is an
 * error naming the key and what is allowed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "trainer/config.h"
#include "trainer/schedule.h"

static char tmpdir[512];

static const char *write_file(const char *name, const char *text) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void expect_error(kl_status got, const char *needle1, const char *needle2) {
    assert_int_not_equal(got, KL_OK);
    if (needle1 && !strstr(kl_errmsg(), needle1))
        fail_msg("message \"%s\" lacks \"%s\"", kl_errmsg(), needle1);
    if (needle2 && !strstr(kl_errmsg(), needle2))
        fail_msg("message \"%s\" lacks \"%s\"", kl_errmsg(), needle2);
}

static void test_yaml_values(void **state) {
    (void)state;
    kl_train_config c;
    kl_config_init(&c);
    const char *p = write_file("ok.yaml", "data:\n  format: csv\n  train: a.csv\n"
                                          "  categorical: [color, size]\n  val_fraction: 0.25\n"
                                          "model:\n  layers: 6-16-3\n  activation: gelu\n"
                                          "optim:\n  lr: 3e-4\n  nesterov: true\n"
                                          "train:\n  epochs: 7\noutput: out/x\n");
    assert_int_equal(kl_config_load_yaml(&c, p), KL_OK);
    assert_string_equal(c.data_format, "csv");
    assert_int_equal(c.data_categorical.n, 2);
    assert_string_equal(c.data_categorical.items[1], "size");
    assert_true(c.data_val_fraction == 0.25);
    assert_string_equal(c.model_activation, "gelu");
    assert_true(c.optim_lr == 3e-4);
    assert_int_equal(c.optim_nesterov, 1);
    assert_int_equal(c.train_epochs, 7);
    assert_string_equal(c.output, "out/x");
    assert_int_equal(c.train_batch_size, 256); /* default kept */
    assert_int_equal(kl_config_validate(&c), KL_OK);
    /* --set overrides, lists comma-separated */
    assert_int_equal(kl_config_set(&c, "train.epochs=2"), KL_OK);
    assert_int_equal(kl_config_set(&c, "data.categorical=a,b,c"), KL_OK);
    assert_int_equal(c.train_epochs, 2);
    assert_int_equal(c.data_categorical.n, 3);
    kl_config_free(&c);
}

static void test_bad_keys_and_values(void **state) {
    (void)state;
    kl_train_config c;
    kl_config_init(&c);
    expect_error(kl_config_set(&c, "optim.lrate=0.1"), "optim.lrate", "optim.lr");
    expect_error(kl_config_set(&c, "data.transform=zscore"), "data.transform",
                 "none,standard,minmax");
    expect_error(kl_config_set(&c, "data.val_fraction=1.5"), "data.val_fraction", "[0, 1)");
    expect_error(kl_config_set(&c, "train.batch_size=abc"), "train.batch_size", "not an integer");
    expect_error(kl_config_set(&c, "train.batch_size=0"), "train.batch_size", "outside");
    expect_error(kl_config_set(&c, "optim.nesterov=maybe"), "optim.nesterov", "true or false");
    expect_error(kl_config_set(&c, "model.activation=swish"), "model.activation", "relu");
    expect_error(kl_config_set(&c, "noequals"), "key=value", NULL);
    const char *p = write_file("bad.yaml", "model:\n  layers: 4-2\n  widht: 3\n");
    expect_error(kl_config_load_yaml(&c, p), "model.widht", "line 3");
    p = write_file("syntax.yaml", "model:\n  layers: [4, 2\n");
    expect_error(kl_config_load_yaml(&c, p), "syntax.yaml", "line");
    p = write_file("scalar.yaml", "42\n");
    expect_error(kl_config_load_yaml(&c, p), "top level", NULL);
    expect_error(kl_config_load_yaml(&c, "/nonexistent/x.yaml"), "cannot open", NULL);
    /* cross-field rules */
    kl_config_free(&c);
    kl_config_init(&c);
    expect_error(kl_config_validate(&c), "data.train", "required");
    kl_config_set(&c, "data.train=x.gz");
    expect_error(kl_config_validate(&c), "data.train_labels", NULL);
    kl_config_set(&c, "data.train_labels=y.gz");
    kl_config_set(&c, "train.patience=2");
    kl_config_set(&c, "data.val_fraction=0");
    expect_error(kl_config_validate(&c), "train.patience", "val_fraction");
    kl_config_free(&c);
}

static void test_round_trip_yaml(void **state) {
    (void)state;
    kl_train_config a, b;
    kl_config_init(&a);
    kl_config_set(&a, "data.label_names=cat,dog");
    kl_config_set(&a, "optim.lr=0.0123");
    kl_config_set(&a, "train.device=cpu");
    char path[1024];
    snprintf(path, sizeof path, "%s/rt.yaml", tmpdir);
    FILE *f = fopen(path, "w");
    kl_config_write_yaml(&a, f);
    fclose(f);
    kl_config_init(&b);
    assert_int_equal(kl_config_load_yaml(&b, path), KL_OK);
    assert_true(b.optim_lr == 0.0123);
    assert_int_equal(b.data_label_names.n, 2);
    assert_string_equal(b.data_label_names.items[1], "dog");
    assert_string_equal(b.train_device, "cpu");
    kl_config_free(&a);
    kl_config_free(&b);
}

static void test_schedule(void **state) {
    (void)state;
    kl_schedule s = {KL_SCHED_COSINE, 1.0, 0.1, 10, 110};
    assert_true(kl_schedule_lr(&s, 0) == 0.1);  /* warm-up starts at lr/warmup */
    assert_true(kl_schedule_lr(&s, 9) == 1.0);  /* and reaches lr */
    assert_true(kl_schedule_lr(&s, 10) == 1.0); /* cosine starts at the peak */
    double end = kl_schedule_lr(&s, 109);
    assert_true(end > 0.0999 && end < 0.1001); /* and ends at min_lr */
    double mid = kl_schedule_lr(&s, 10 + 99 / 2);
    assert_true(mid > 0.5 && mid < 0.6);
    s.kind = KL_SCHED_CONSTANT;
    assert_true(kl_schedule_lr(&s, 50) == 1.0);
}

int main(void) {
    const char *base = getenv("KILN_TEST_TMP");
    snprintf(tmpdir, sizeof tmpdir, "%s/config", base ? base : "/tmp/kiln-test");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", tmpdir);
    if (system(cmd) != 0) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_yaml_values),
        cmocka_unit_test(test_bad_keys_and_values),
        cmocka_unit_test(test_round_trip_yaml),
        cmocka_unit_test(test_schedule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
