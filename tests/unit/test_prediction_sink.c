/* test_prediction_sink.c — the prediction sink on real SQLite files: targets and their errors,
 * the table it creates, chunks written whole or not at all, the resume point, refusals (another
 * input, another model, resuming off, other columns, no primary key, gaps), class names made
 * identifiers, regression; and an unreachable PostgreSQL refused with the password hidden. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <sqlite3.h> /* reading back what the sink wrote, and making tables it must refuse */

#include "data/prediction_sink.h"
#include "data_test_util.h"

#define assert_msg_has(sub)                                                                        \
    do {                                                                                           \
        if (!strstr(kl_errmsg(), (sub))) {                                                         \
            fail_msg("message \"%s\" lacks \"%s\"", kl_errmsg(), (sub));                           \
        }                                                                                          \
    } while (0)

static char *classes3[] = {"cat", "dog", "T-shirt/top"};

#define DIGEST_A "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DIGEST_B "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static kl_prediction_sink_config cfg3(const char *target) {
    kl_prediction_sink_config c = {.target = target,
                                   .model = "models/m1",
                                   .input_digest = DIGEST_A,
                                   .n_classes = 3,
                                   .class_names = classes3,
                                   .resume = 1};
    return c;
}

/* Probabilities of row r: a deterministic mix whose arg-max cycles through the classes. */
static void fill_probs(float *out, int64_t first, int64_t rows) {
    for (int64_t r = 0; r < rows; r++)
        for (int c = 0; c < 3; c++)
            out[r * 3 + c] =
                (float)((c == (first + r) % 3 ? 0.6 : 0.2) + 1e-4 * (first + r)) / 3.0f;
}

static sqlite3 *open_db(const char *path) {
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    return db;
}

static int64_t query_int(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void exec_ok(sqlite3 *db, const char *sql) {
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) fail_msg("%s: %s", sql, err);
}

/* The table's column names, comma-joined, in table order. */
static void columns_of(sqlite3 *db, const char *table, char *buf, size_t size) {
    char sql[128];
    snprintf(sql, sizeof sql, "PRAGMA table_info(\"%s\")", table);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    buf[0] = '\0';
    while (sqlite3_step(st) == SQLITE_ROW) {
        size_t n = strlen(buf);
        snprintf(buf + n, size - n, "%s%s", n ? "," : "", (const char *)sqlite3_column_text(st, 1));
    }
    sqlite3_finalize(st);
}

static void test_targets(void **state) {
    (void)state;
    assert_true(kl_prediction_sink_is_target("sqlite:x.db"));
    assert_true(kl_prediction_sink_is_target("sqlite:///tmp/x.db"));
    assert_true(kl_prediction_sink_is_target("postgresql://u@h/db"));
    assert_true(kl_prediction_sink_is_target("postgres://h/db"));
    assert_true(kl_prediction_sink_is_target("mysql://h/db"));
    assert_false(kl_prediction_sink_is_target("preds.csv"));
    assert_false(kl_prediction_sink_is_target("-"));
    assert_false(kl_prediction_sink_is_target("/tmp/out/preds.csv"));
    assert_false(kl_prediction_sink_is_target("./sqlite/x.csv"));

    static const struct {
        const char *target;
        const char *msg;
    } bad[] = {
        {"sqlite:x.db?table=a-b", "table name \"a-b\" is not an SQL identifier"},
        {"sqlite:x.db?table=1abc", "table name \"1abc\" is not an SQL identifier"},
        {"sqlite:x.db?table=", "table name \"\" is not an SQL identifier"},
        {"sqlite:x.db?table=x\"; DROP TABLE y; --", "is not an SQL identifier"},
        {"sqlite:x.db?table=a123456789012345678901234567890123456789012345678901234567890123",
         "at most 63 characters"},
        {"sqlite:x.db?tabel=p", "unknown option \"tabel=p\" (only table=NAME)"},
        {"sqlite:", "no database file after \"sqlite:\""},
        {"sqlite://host/x.db", "a host is not allowed here"},
        {"mysql://u:secret@h/db", "unsupported database \"mysql\""},
        {"postgresql://h/db?table=no-dash", "table name \"no-dash\" is not an SQL identifier"},
        {"sqlite:/nonexistent-kiln-dir/sub/x.db", "sqlite:/nonexistent-kiln-dir/sub/x.db: cannot "
                                                  "open: unable to open database file"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kl_prediction_sink_config c = cfg3(bad[i].target);
        kl_prediction_sink *s = (kl_prediction_sink *)1;
        assert_int_not_equal(kl_prediction_sink_open(&c, &s), KL_OK);
        assert_null(s);
        assert_msg_has(bad[i].msg);
        assert_null(strstr(kl_errmsg(), "secret"));
    }
    /* A directory is not a database file. */
    char target[1300];
    snprintf(target, sizeof target, "sqlite:%s", tu_dir);
    kl_prediction_sink_config c = cfg3(target);
    kl_prediction_sink *s = NULL;
    assert_int_equal(kl_prediction_sink_open(&c, &s), KL_EIO);
    assert_msg_has("cannot open");
    /* A file that is not SQLite. */
    const char *junk = tu_path("junk.db");
    tu_write_str(junk, "this is not a database, but it is long enough to look like a header\n");
    snprintf(target, sizeof target, "sqlite:%s", junk);
    c = cfg3(target);
    assert_int_equal(kl_prediction_sink_open(&c, &s), KL_EIO);
    assert_msg_has("file is not a database");
}

static void test_create_chunks_resume(void **state) {
    (void)state;
    const char *path = tu_path("preds.db");
    remove(path);
    char target[1300];
    snprintf(target, sizeof target, "sqlite:%s", path);
    kl_prediction_sink_config c = cfg3(target);
    kl_prediction_sink *s = NULL;
    assert_int_equal(kl_prediction_sink_open(&c, &s), KL_OK);
    assert_int_equal(kl_prediction_sink_rows(s), 0);
    assert_non_null(strstr(kl_prediction_sink_describe(s), "table \"predictions\" in sqlite:"));
    float out[10 * 3];
    fill_probs(out, 0, 10);
    assert_int_equal(kl_prediction_sink_write(s, 0, 4, out), KL_OK);
    assert_int_equal(kl_prediction_sink_write(s, 4, 6, out + 4 * 3), KL_OK);
    assert_int_equal(kl_prediction_sink_rows(s), 10);
    /* Out of order: refused before touching the table. */
    assert_int_equal(kl_prediction_sink_write(s, 3, 1, out), KL_EINVAL);
    assert_msg_has("writing from row 3, expected row 10");
    kl_prediction_sink_close(s);

    /* Resume: the same input and model pick up at row 10. */
    s = NULL;
    assert_int_equal(kl_prediction_sink_open(&c, &s), KL_OK);
    assert_int_equal(kl_prediction_sink_rows(s), 10);
    float more[2 * 3];
    fill_probs(more, 10, 2);
    assert_int_equal(kl_prediction_sink_write(s, 10, 2, more), KL_OK);
    kl_prediction_sink_close(s);

    sqlite3 *db = open_db(path);
    char cols[512];
    columns_of(db, "predictions", cols, sizeof cols);
    assert_string_equal(cols, "row_index,prediction,prob_cat,prob_dog,prob_T_shirt_top,model,"
                              "input_digest,scored_at");
    assert_int_equal(query_int(db, "SELECT count(*) FROM predictions"), 12);
    assert_int_equal(query_int(db, "SELECT count(DISTINCT row_index) FROM predictions"), 12);
    assert_int_equal(query_int(db, "SELECT max(row_index) FROM predictions"), 11);
    assert_int_equal(query_int(db, "SELECT count(*) FROM predictions WHERE model = 'models/m1' "
                                   "AND input_digest = '" DIGEST_A "'"),
                     12);
    assert_int_equal(query_int(db, "SELECT count(*) FROM predictions WHERE scored_at LIKE "
                                   "'____-__-__T__:__:__.___Z'"),
                     12);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT row_index, prediction, prob_cat, prob_dog, "
                                        "prob_T_shirt_top FROM predictions ORDER BY row_index",
                                        -1, &st, NULL),
                     SQLITE_OK);
    float all[12 * 3];
    memcpy(all, out, sizeof out);
    memcpy(all + 30, more, sizeof more);
    for (int r = 0; r < 12; r++) {
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_int_equal(sqlite3_column_int64(st, 0), r);
        assert_string_equal((const char *)sqlite3_column_text(st, 1), classes3[r % 3]);
        for (int k = 0; k < 3; k++) {
            /* Stored as the CSV output prints it: 9 significant digits. */
            char num[32];
            snprintf(num, sizeof num, "%.9g", (double)all[r * 3 + k]);
            assert_true(sqlite3_column_double(st, 2 + k) == strtod(num, NULL));
        }
    }
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void test_chunk_is_all_or_nothing(void **state) {
    (void)state;
    const char *path = tu_path("atomic.db");
    remove(path);
    char target[1300];
    snprintf(target, sizeof target, "sqlite:%s?table=atomic", path);
    kl_prediction_sink_config c = cfg3(target);
    kl_prediction_sink *s = NULL;
    assert_int_equal(kl_prediction_sink_open(&c, &s), KL_OK);
    float out[10 * 3];
    fill_probs(out, 0, 10);
    assert_int_equal(kl_prediction_sink_write(s, 0, 5, out), KL_OK);
    /* Someone else stores row 7: the next chunk (rows 5..9) fails there, and rows 5 and 6,
     * already inserted in its transaction, are rolled back with it. */
    sqlite3 *db = open_db(path);
    exec_ok(db, "INSERT INTO atomic (row_index, prediction, model, input_digest, scored_at) "
                "VALUES (7, 'x', 'models/m1', '" DIGEST_A "', 'now')");
    assert_int_equal(kl_prediction_sink_write(s, 5, 5, out + 15), KL_EIO);
    assert_msg_has("inserting row 7");
    assert_msg_has("UNIQUE constraint failed");
    assert_int_equal(kl_prediction_sink_rows(s), 5);
    assert_int_equal(query_int(db, "SELECT count(*) FROM atomic"), 6);
    assert_int_equal(query_int(db, "SELECT count(*) FROM atomic WHERE row_index IN (5, 6)"), 0);
    kl_prediction_sink_close(s);
    /* Now rows 0..4 and 7: a gap, which a resume refuses. */
    s = NULL;
    assert_int_equal(kl_prediction_sink_open(&c, &s), KL_EINVAL);
    assert_msg_has("holds 6 rows but its highest row_index is 7: rows are missing");
    assert_msg_has("pick another table (?table=NAME) or drop it");
    sqlite3_close(db);
}

static void test_refusals(void **state) {
    (void)state;
    const char *path = tu_path("refuse.db");
    remove(path);
    char target[1300];
    snprintf(target, sizeof target, "sqlite:%s", path);
    kl_prediction_sink_config c = cfg3(target);
    kl_prediction_sink *s = NULL;
    assert_int_equal(kl_prediction_sink_open(&c, &s), KL_OK);
    float out[4 * 3];
    fill_probs(out, 0, 4);
    assert_int_equal(kl_prediction_sink_write(s, 0, 4, out), KL_OK);
    kl_prediction_sink_close(s);

    kl_prediction_sink_config other = c;
    other.input_digest = DIGEST_B;
    s = (kl_prediction_sink *)1;
    assert_int_equal(kl_prediction_sink_open(&other, &s), KL_EINVAL);
    assert_null(s);
    assert_msg_has("table \"predictions\" in sqlite:");
    assert_msg_has("holds 4 rows scored from another input (sha256:aaaaaaaaaaaa...; this input is "
                   "sha256:bbbbbbbbbbbb...)");
    assert_msg_has("pick another table (?table=NAME) or drop it");

    other = c;
    other.model = "models/m2";
    assert_int_equal(kl_prediction_sink_open(&other, &s), KL_EINVAL);
    assert_msg_has("holds 4 rows scored by model \"models/m1\", not \"models/m2\"");

    other = c;
    other.resume = 0;
    assert_int_equal(kl_prediction_sink_open(&other, &s), KL_EINVAL);
    assert_msg_has("already holds 4 rows and resuming is off");

    /* Another model's classes: the columns differ. */
    static char *two[] = {"cat", "bird"};
    other = c;
    other.n_classes = 2;
    other.class_names = two;
    assert_int_equal(kl_prediction_sink_open(&other, &s), KL_EINVAL);
    assert_msg_has("exists with other columns: it lacks \"prob_bird\"; has unexpected "
                   "\"prob_dog\", \"prob_T_shirt_top\"");

    /* The same columns but no primary key: a resume could store rows twice. */
    sqlite3 *db = open_db(path);
    exec_ok(db, "CREATE TABLE nokey (row_index INTEGER, prediction TEXT, prob_cat REAL, "
                "prob_dog REAL, prob_T_shirt_top REAL, model TEXT, input_digest TEXT, "
                "scored_at TEXT)");
    exec_ok(db, "CREATE TABLE \"Mixed\" (ROW_INDEX INTEGER PRIMARY KEY, Prediction TEXT, "
                "PROB_CAT REAL, prob_dog REAL, prob_t_shirt_top REAL, model TEXT, "
                "input_digest TEXT, scored_at TEXT)");
    sqlite3_close(db);
    snprintf(target, sizeof target, "sqlite:%s?table=nokey", path);
    other = cfg3(target);
    assert_int_equal(kl_prediction_sink_open(&other, &s), KL_EINVAL);
    assert_msg_has("table \"nokey\"");
    assert_msg_has("its primary key is missing, not (\"row_index\")");
    /* SQLite names are case-blind: a table made by hand with other cases is fine. */
    snprintf(target, sizeof target, "sqlite:%s?table=Mixed", path);
    other = cfg3(target);
    assert_int_equal(kl_prediction_sink_open(&other, &s), KL_OK);
    assert_int_equal(kl_prediction_sink_write(s, 0, 4, out), KL_OK);
    kl_prediction_sink_close(s);
}

static void test_class_names_become_identifiers(void **state) {
    (void)state;
    const char *path = tu_path("names.db");
    remove(path);
    char target[1300];
    snprintf(target, sizeof target, "sqlite:%s?table=Names_2", path);
    char long_name[100];
    memset(long_name, 'x', 80);
    long_name[80] = '\0';
    char *names[] = {"a-b",     "a_b",     "A B",      "",       "\xc3\xa9t\xc3\xa9",
                     long_name, long_name, "quote\"d", "x\ty\nz"};
    int n = (int)(sizeof names / sizeof names[0]);
    kl_prediction_sink_config c = {.target = target,
                                   .model = "m\twith\ttabs",
                                   .input_digest = DIGEST_A,
                                   .n_classes = n,
                                   .class_names = names,
                                   .resume = 1};
    kl_prediction_sink *s = NULL;
    assert_int_equal(kl_prediction_sink_open(&c, &s), KL_OK);
    float out[2 * 9] = {0};
    out[8] = 1.0f;     /* row 0: "x\ty\nz" */
    out[9 + 7] = 1.0f; /* row 1: "quote\"d" */
    assert_int_equal(kl_prediction_sink_write(s, 0, 2, out), KL_OK);
    kl_prediction_sink_close(s);
    sqlite3 *db = open_db(path);
    char cols[2048];
    columns_of(db, "Names_2", cols, sizeof cols);
    char want[2048];
    /* prob_ + 58 x = 63 bytes; its clash keeps 61 bytes and adds _2. */
    snprintf(want, sizeof want,
             "row_index,prediction,prob_a_b,prob_a_b_2,prob_A_B_3,prob_,prob___t__,prob_%.58s,"
             "prob_%.56s_2,prob_quote_d,prob_x_y_z,model,input_digest,scored_at",
             long_name, long_name);
    assert_string_equal(cols, want);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT prediction, model FROM \"Names_2\" ORDER BY "
                                        "row_index",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "x\ty\nz");
    assert_string_equal((const char *)sqlite3_column_text(st, 1), "m\twith\ttabs");
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "quote\"d");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void test_regression(void **state) {
    (void)state;
    const char *path = tu_path("reg.db");
    remove(path);
    char target[1300];
    snprintf(target, sizeof target, "sqlite://%s?table=reg", path); /* sqlite:///abs/path */
    assert_true(path[0] == '/');
    kl_prediction_sink_config c = {
        .target = target, .model = "m", .input_digest = DIGEST_A, .n_classes = 0, .resume = 1};
    kl_prediction_sink *s = NULL;
    assert_int_equal(kl_prediction_sink_open(&c, &s), KL_OK);
    float out[3] = {1.5f, -0.1f, 12345.678f};
    assert_int_equal(kl_prediction_sink_write(s, 0, 3, out), KL_OK);
    kl_prediction_sink_close(s);
    sqlite3 *db = open_db(path);
    char cols[512];
    columns_of(db, "reg", cols, sizeof cols);
    assert_string_equal(cols, "row_index,prediction,model,input_digest,scored_at");
    sqlite3_stmt *st = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT prediction FROM reg ORDER BY row_index", -1, &st, NULL),
        SQLITE_OK);
    for (int r = 0; r < 3; r++) {
        char num[32];
        snprintf(num, sizeof num, "%.9g", (double)out[r]);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_string_equal((const char *)sqlite3_column_text(st, 0), num);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void test_postgres_unreachable(void **state) {
    (void)state;
    /* Port 1 on loopback: nothing listens, the connection is refused at once. */
    kl_prediction_sink_config c = cfg3("postgresql://kiln:s3cret@127.0.0.1:1/db?table=p");
    kl_prediction_sink *s = (kl_prediction_sink *)1;
    assert_int_equal(kl_prediction_sink_open(&c, &s), KL_EIO);
    assert_null(s);
    assert_msg_has("postgresql://kiln:***@127.0.0.1:1/db: cannot connect:");
    assert_null(strstr(kl_errmsg(), "s3cret"));
    assert_null(strchr(kl_errmsg(), '\n'));
    c = cfg3("postgres://127.0.0.1:notaport/db?password=s3cret");
    assert_int_equal(kl_prediction_sink_open(&c, &s), KL_EIO);
    assert_msg_has("password=***");
    assert_msg_has("invalid integer value \"notaport\"");
    assert_null(strstr(kl_errmsg(), "s3cret"));
    c = cfg3("postgresql://127.0.0.1:1/db?nosuchoption=1");
    assert_int_equal(kl_prediction_sink_open(&c, &s), KL_EIO);
    assert_msg_has("invalid URI query parameter: \"nosuchoption\"");
}

int main(void) {
    if (tu_init("test_prediction_sink")) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_targets),
        cmocka_unit_test(test_create_chunks_resume),
        cmocka_unit_test(test_chunk_is_all_or_nothing),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_class_names_become_identifiers),
        cmocka_unit_test(test_regression),
        cmocka_unit_test(test_postgres_unreachable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
