/* test_snapshot.c — the content-addressed dataset store: the digest is the data digest, saving
 * twice changes nothing, a failed or interrupted save leaves no snapshot behind, resolving by
 * digest prefix, listing, and several datasets (CSV + IDX with labels) in one snapshot. */
#include <dirent.h>
#include <sys/wait.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "data/csv.h"
#include "data/digest.h"
#include "data/snapshot.h"
#include "data_test_util.h"
#include "runtime/fileio.h"
#include "runtime/sha256.h"

#define assert_msg_has(sub)                                                                        \
    do {                                                                                           \
        if (!strstr(kl_errmsg(), (sub))) {                                                         \
            fail_msg("message \"%s\" lacks \"%s\"", kl_errmsg(), (sub));                           \
        }                                                                                          \
    } while (0)

static const char CSV[] = "age,city,label\n23,NY,0\n35,\"LA, CA\",1\n,NY,0\n";

/* Entries of dir/sha256 (. and .. excluded); *tmp counts the .tmp-* staging ones. */
static int store_entries(const char *store, int *tmp) {
    char root[1200];
    snprintf(root, sizeof root, "%s/sha256", store);
    DIR *d = opendir(root);
    int n = 0;
    *tmp = 0;
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            n++;
            *tmp += !strncmp(e->d_name, ".tmp-", 5);
        }
    closedir(d);
    return n;
}

static char *slurp(const char *path) {
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(kl_file_read(path, 1 << 24, &text, &len), KL_OK);
    return text;
}

static void test_save_is_idempotent(void **state) {
    (void)state;
    const char *store = tu_path("store1");
    const char *csv = tu_path("a.csv");
    tu_write_str(csv, CSV);
    kl_snapshot_input in = {csv, NULL};
    char d1[KL_DIGEST_LEN], d2[KL_DIGEST_LEN], want[KL_DIGEST_LEN];
    int created = -1;
    assert_int_equal(kl_snapshot_save(store, &in, 1, "first", d1, &created), KL_OK);
    assert_int_equal(created, 1);
    /* One dataset: the snapshot's version is the data digest training logs. */
    kl_csv_table t;
    assert_int_equal(kl_csv_read(csv, &t), KL_OK);
    assert_int_equal(kl_digest_csv(&t, want), KL_OK);
    kl_csv_free(&t);
    assert_string_equal(d1, want);

    char manifest[1400];
    snprintf(manifest, sizeof manifest, "%s/sha256/%s/manifest.json", store, d1 + 7);
    char *before = slurp(manifest);
    assert_int_equal(kl_snapshot_save(store, &in, 1, "again", d2, &created), KL_OK);
    assert_int_equal(created, 0);
    assert_string_equal(d1, d2);
    char *after = slurp(manifest);
    assert_string_equal(before, after); /* untouched: the first name stays */
    assert_non_null(strstr(after, "\"name\":\t\"first\""));
    assert_non_null(strstr(after, "\"type\":\t\"categorical\""));
    assert_non_null(strstr(after, "\"rows\":\t3"));
    /* The file's size and the SHA-256 of its bytes (what sha256sum prints). */
    char want_file[128];
    snprintf(want_file, sizeof want_file, "\"bytes\":\t%zu", sizeof CSV - 1);
    assert_non_null(strstr(after, want_file));
    kl_sha256 h;
    unsigned char raw[32];
    char hex[65];
    assert_int_equal(kl_sha256_init(&h), 0);
    kl_sha256_update(&h, CSV, sizeof CSV - 1);
    kl_sha256_final(&h, raw);
    kl_sha256_hex(raw, hex);
    assert_non_null(strstr(after, hex));
    free(before);
    free(after);
    int tmp = 0;
    assert_int_equal(store_entries(store, &tmp), 1);
    assert_int_equal(tmp, 0);

    /* The stored copy holds the same bytes. */
    char copy[1400];
    snprintf(copy, sizeof copy, "%s/sha256/%s/a.csv", store, d1 + 7);
    char *text = slurp(copy);
    assert_string_equal(text, CSV);
    free(text);

    /* One byte changed: another version. */
    const char *csv2 = tu_path("b/a.csv");
    mkdir(tu_path("b"), 0755);
    tu_write_str(csv2, "age,city,label\n24,NY,0\n35,\"LA, CA\",1\n,NY,0\n");
    in.path = csv2;
    assert_int_equal(kl_snapshot_save(store, &in, 1, NULL, d2, &created), KL_OK);
    assert_int_equal(created, 1);
    assert_string_not_equal(d1, d2);
    assert_int_equal(store_entries(store, &tmp), 2);
}

static void test_failed_save_leaves_nothing(void **state) {
    (void)state;
    const char *store = tu_path("store2");
    const char *csv = tu_path("ok.csv");
    tu_write_str(csv, CSV);
    const char *bad = tu_path("ragged.csv");
    tu_write_str(bad, "a,b\n1,2\n3\n");
    kl_snapshot_input in[2] = {{csv, NULL}, {bad, NULL}};
    char d[KL_DIGEST_LEN];
    int created = -1;
    assert_int_not_equal(kl_snapshot_save(store, in, 2, NULL, d, &created), KL_OK);
    assert_msg_has("ragged.csv");
    assert_int_equal(created, 0);
    int tmp = 0;
    assert_int_equal(store_entries(store, &tmp), 0);

    const char *missing = tu_path("nope.csv");
    in[1].path = missing;
    assert_int_not_equal(kl_snapshot_save(store, in, 2, NULL, d, NULL), KL_OK);
    assert_int_equal(store_entries(store, &tmp), 0);

    /* Two files of one name would overwrite each other in the snapshot. */
    mkdir(tu_path("other"), 0755);
    const char *twin = tu_path("other/ok.csv");
    tu_write_str(twin, CSV);
    in[1].path = twin;
    assert_int_equal(kl_snapshot_save(store, in, 2, NULL, d, NULL), KL_EINVAL);
    assert_msg_has("two files named \"ok.csv\"");
    assert_int_equal(store_entries(store, &tmp), 0);

    /* A save killed mid-way leaves only a staging directory: never listed nor resolved, and
     * the next save of the same data completes. */
    char stale[1400];
    snprintf(stale, sizeof stale, "%s/sha256/.tmp-killed", store);
    assert_int_equal(kl_file_mkdirs(stale), KL_OK);
    char part[1500];
    snprintf(part, sizeof part, "%s/ok.csv", stale);
    tu_write_str(part, "age,ci");
    kl_snapshot_entry *list = NULL;
    int n = -1;
    assert_int_equal(kl_snapshot_list(store, &list, &n), KL_OK);
    assert_int_equal(n, 0);
    free(list);
    assert_int_equal(kl_snapshot_save(store, in, 1, NULL, d, &created), KL_OK);
    assert_int_equal(created, 1);
    kl_snapshot_files f;
    assert_int_equal(kl_snapshot_resolve(store, d, &f), KL_OK);
    char *text = slurp(f.paths[0]);
    assert_string_equal(text, CSV);
    free(text);
    kl_snapshot_files_free(&f);
}

static void test_resolve_and_list(void **state) {
    (void)state;
    const char *store = tu_path("store3");
    const char *csv = tu_path("r.csv");
    tu_write_str(csv, CSV);
    kl_snapshot_input in = {csv, NULL};
    char d[KL_DIGEST_LEN];
    assert_int_equal(kl_snapshot_save(store, &in, 1, "named", d, NULL), KL_OK);

    char ref[32];
    snprintf(ref, sizeof ref, "sha256:%.8s", d + 7);
    kl_snapshot_files f;
    assert_int_equal(kl_snapshot_resolve(store, ref, &f), KL_OK);
    assert_string_equal(f.digest, d);
    assert_string_equal(f.name, "named");
    assert_int_equal(f.n, 1);
    assert_null(f.labels[0]);
    assert_non_null(strstr(f.paths[0], d + 7));
    kl_snapshot_files_free(&f);
    snprintf(ref, sizeof ref, "%.6s", d + 7); /* without "sha256:" */
    assert_int_equal(kl_snapshot_resolve(store, ref, &f), KL_OK);
    kl_snapshot_files_free(&f);

    assert_int_equal(kl_snapshot_resolve(store, "sha256:zz", &f), KL_EINVAL);
    assert_int_equal(kl_snapshot_resolve(store, "abc", &f), KL_EINVAL); /* too short */
    const char *other = d[7] == '0' ? "1111" : "0000";
    assert_int_equal(kl_snapshot_resolve(store, other, &f), KL_ENOTFOUND);
    assert_msg_has("no snapshot");
    assert_int_equal(kl_snapshot_resolve(tu_path("nostore"), d, &f), KL_ENOTFOUND);

    /* A second snapshot sharing the first four hex digits makes that prefix ambiguous. */
    char fake[1400], fake_manifest[1500];
    snprintf(fake, sizeof fake, "%s/sha256/%.4s%s", store, d + 7,
             "000000000000000000000000000000000000000000000000000000000000");
    assert_int_equal(kl_file_mkdirs(fake), KL_OK);
    snprintf(fake_manifest, sizeof fake_manifest, "%s/manifest.json", fake);
    tu_write_str(fake_manifest, "{\"name\": \"fake\", \"created\": \"2000-01-01T00:00:00Z\", "
                                "\"datasets\": [{\"file\": \"x.csv\", \"rows\": 7}], "
                                "\"files\": [{\"path\": \"x.csv\", \"bytes\": 5}]}");
    snprintf(ref, sizeof ref, "sha256:%.4s", d + 7);
    assert_int_equal(kl_snapshot_resolve(store, ref, &f), KL_EINVAL);
    assert_msg_has("ambiguous");

    kl_snapshot_entry *list = NULL;
    int n = 0;
    assert_int_equal(kl_snapshot_list(store, &list, &n), KL_OK);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].digest, d); /* newest first */
    assert_string_equal(list[0].name, "named");
    assert_int_equal(list[0].rows, 3);
    assert_int_equal(list[0].n_files, 1);
    assert_string_equal(list[1].name, "fake");
    assert_int_equal(list[1].rows, 7);
    free(list);
}

static void test_several_datasets(void **state) {
    (void)state;
    const char *store = tu_path("store4");
    unsigned char buf[256];
    uint8_t px[2 * 2 * 3] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 255};
    uint32_t dims[3] = {2, 2, 3};
    const char *images = tu_path("imgs-idx3-ubyte");
    tu_write(images, buf, tu_idx(buf, 0x08, 3, dims, px, sizeof px));
    uint8_t y[2] = {1, 0};
    uint32_t ldims[1] = {2};
    const char *labels = tu_path("labels-idx1-ubyte");
    tu_write(labels, buf, tu_idx(buf, 0x08, 1, ldims, y, sizeof y));
    const char *csv = tu_path("tab.csv");
    tu_write_str(csv, CSV);
    kl_snapshot_input in[2] = {{images, labels}, {csv, NULL}};
    char d[KL_DIGEST_LEN], d_again[KL_DIGEST_LEN];
    assert_int_equal(kl_snapshot_save(store, in, 2, NULL, d, NULL), KL_OK);
    assert_int_equal(kl_snapshot_save(store, in, 2, NULL, d_again, NULL), KL_OK);
    assert_string_equal(d, d_again);
    kl_snapshot_files f;
    assert_int_equal(kl_snapshot_resolve(store, d, &f), KL_OK);
    assert_int_equal(f.n, 2);
    assert_non_null(strstr(f.paths[0], "imgs-idx3-ubyte"));
    assert_non_null(f.labels[0]);
    assert_non_null(strstr(f.labels[0], "labels-idx1-ubyte"));
    assert_null(f.labels[1]);
    char manifest[1400];
    snprintf(manifest, sizeof manifest, "%s/manifest.json", f.dir);
    char *text = slurp(manifest);
    assert_non_null(strstr(text, "\"shape\":\t[2, 2, 3]"));
    assert_non_null(strstr(text, "\"role\":\t\"labels\""));
    free(text);
    kl_snapshot_files_free(&f);

    /* The order of the datasets is part of the version. */
    kl_snapshot_input swapped[2] = {in[1], in[0]};
    assert_int_equal(kl_snapshot_save(store, swapped, 2, NULL, d_again, NULL), KL_OK);
    assert_string_not_equal(d, d_again);
}

/* Several processes saving the same data at once: every one succeeds, exactly one directory
 * results, whole, and no staging directory is left. */
static void test_concurrent_saves(void **state) {
    (void)state;
    const char *store = tu_path("store5");
    const char *csv = tu_path("big.csv");
    FILE *f = fopen(csv, "w");
    assert_non_null(f);
    fprintf(f, "a,b,c\n");
    for (int i = 0; i < 20000; i++)
        fprintf(f, "%d,%d.5,cat%d\n", i, i * 3, i % 17);
    fclose(f);
    kl_snapshot_input in = {csv, NULL};
    enum { PROCS = 6 };
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            char d[KL_DIGEST_LEN];
            _exit(kl_snapshot_save(store, &in, 1, NULL, d, NULL) == KL_OK ? 0 : 1);
        }
    }
    for (int p = 0; p < PROCS; p++) {
        int status = 0;
        assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    int tmp = 0;
    assert_int_equal(store_entries(store, &tmp), 1);
    assert_int_equal(tmp, 0);
    char d[KL_DIGEST_LEN];
    int created = -1;
    assert_int_equal(kl_snapshot_save(store, &in, 1, NULL, d, &created), KL_OK);
    assert_int_equal(created, 0);
    kl_snapshot_files sf;
    assert_int_equal(kl_snapshot_resolve(store, d, &sf), KL_OK);
    char *orig = slurp(csv), *copy = slurp(sf.paths[0]);
    assert_string_equal(orig, copy);
    free(orig);
    free(copy);
    kl_snapshot_files_free(&sf);
}

int main(void) {
    if (tu_init("test_snapshot")) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_save_is_idempotent),
        cmocka_unit_test(test_failed_save_leaves_nothing),
        cmocka_unit_test(test_resolve_and_list),
        cmocka_unit_test(test_several_datasets),
        cmocka_unit_test(test_concurrent_saves),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
