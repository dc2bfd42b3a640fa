/* test_ingest.c — a SQLite query into a CSV: header, NULLs, quoting (commas, quotes, line
 * breaks, blanks), reals as Python prints them, integers, reading back through data/csv.h, and
 * the errors (bad URI, SQL error, missing file, bad table name) leaving no file behind. */
#include <setjmp.h>
#include <sqlite3.h> /* building the source database */
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "data/csv.h"
#include "data/ingest.h"
#include "data_test_util.h"
#include "runtime/fileio.h"

#define assert_msg_has(sub)                                                                        \
    do {                                                                                           \
        if (!strstr(kl_errmsg(), (sub))) {                                                         \
            fail_msg("message \"%s\" lacks \"%s\"", kl_errmsg(), (sub));                           \
        }                                                                                          \
    } while (0)

static char db_uri[1200];

static int setup(void **state) {
    (void)state;
    const char *path = tu_path("src.db");
    remove(path);
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK) return -1;
    const char *sql =
        "CREATE TABLE items (id INTEGER, name TEXT, price REAL, note TEXT);"
        "INSERT INTO items VALUES (1, 'plain', 2.0, NULL);"
        "INSERT INTO items VALUES (2, 'a, b', 0.1, '');"
        "INSERT INTO items VALUES (3, 'say \"hi\"', 1e20, 'two' || char(10) || 'lines');"
        "INSERT INTO items VALUES (NULL, ' padded ', -0.000015, 'x');"
        "INSERT INTO items VALUES (5, 'big', 1234567.125, 'y');";
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    snprintf(db_uri, sizeof db_uri, "sqlite:%s", path);
    return rc == SQLITE_OK ? 0 : -1;
}

static void test_table_to_csv(void **state) {
    (void)state;
    const char *out = tu_path("items.csv");
    kl_ingest_config cfg = {db_uri, NULL, "items"};
    int64_t rows = 0;
    int cols = 0;
    assert_int_equal(kl_ingest_to_csv(&cfg, out, &rows, &cols), KL_OK);
    assert_int_equal(rows, 5);
    assert_int_equal(cols, 4);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(kl_file_read(out, 1 << 20, &text, &len), KL_OK);
    assert_string_equal(text, "id,name,price,note\n"
                              "1,plain,2.0,\n"
                              "2,\"a, b\",0.1,\"\"\n"
                              "3,\"say \"\"hi\"\"\",1e+20,\"two\nlines\"\n"
                              ",\" padded \",-1.5e-05,x\n"
                              "5,big,1234567.125,y\n");
    free(text);
    kl_csv_table t;
    assert_int_equal(kl_csv_read(out, &t), KL_OK);
    assert_int_equal(t.n_rows, 5);
    assert_string_equal(kl_csv_cell(&t, 2, 1), "say \"hi\"");
    assert_string_equal(kl_csv_cell(&t, 2, 3), "two\nlines");
    assert_string_equal(kl_csv_cell(&t, 3, 1), " padded ");
    assert_string_equal(kl_csv_cell(&t, 3, 0), "");
    kl_csv_free(&t);
}

static void test_query_and_errors(void **state) {
    (void)state;
    const char *out = tu_path("q.csv");
    kl_ingest_config cfg = {db_uri, "SELECT name AS who, id * 2 AS twice FROM items WHERE id > 2",
                            NULL};
    int64_t rows = 0;
    assert_int_equal(kl_ingest_to_csv(&cfg, out, &rows, NULL), KL_OK);
    assert_int_equal(rows, 2);

    const char *bad = tu_path("bad.csv");
    cfg.query = "SELECT nope FROM items";
    assert_int_equal(kl_ingest_to_csv(&cfg, bad, NULL, NULL), KL_EINVAL);
    assert_msg_has("SQL error: no such column: nope");
    assert_int_not_equal(access(bad, F_OK), 0);
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s.tmp", bad);
    assert_int_not_equal(access(tmp, F_OK), 0);

    cfg.query = NULL;
    cfg.table = "items; DROP TABLE items";
    assert_int_equal(kl_ingest_to_csv(&cfg, bad, NULL, NULL), KL_EINVAL);
    assert_msg_has("--table");
    cfg.table = "main.items";
    assert_int_equal(kl_ingest_to_csv(&cfg, bad, &rows, NULL), KL_OK);
    assert_int_equal(rows, 5);

    char missing[1300];
    snprintf(missing, sizeof missing, "sqlite:%s", tu_path("absent.db"));
    kl_ingest_config m = {missing, NULL, "items"};
    assert_int_equal(kl_ingest_to_csv(&m, tu_path("m.csv"), NULL, NULL), KL_EIO);
    assert_msg_has("cannot open");
    assert_int_not_equal(access(tu_path("absent.db"), F_OK), 0); /* not created */

    kl_ingest_config u = {"mysql://h/db", NULL, "items"};
    assert_int_equal(kl_ingest_to_csv(&u, tu_path("u.csv"), NULL, NULL), KL_EINVAL);
    assert_msg_has("expected postgresql://");
    kl_ingest_config pg = {"postgresql://kiln:hunter2@127.0.0.1:1/db?connect_timeout=2", NULL,
                           "items"};
    assert_int_equal(kl_ingest_to_csv(&pg, tu_path("p.csv"), NULL, NULL), KL_EIO);
    assert_msg_has("cannot connect");
    assert_msg_has("kiln:***@127.0.0.1");
    if (strstr(kl_errmsg(), "hunter2")) fail_msg("password in \"%s\"", kl_errmsg());
}

int main(void) {
    if (tu_init("test_ingest")) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_to_csv),
        cmocka_unit_test(test_query_and_errors),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
