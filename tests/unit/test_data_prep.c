/* test_data_prep.c — split, loader, transform, digest and the prepare / load_input entry
 * points, on small files and (when present) on Fashion-MNIST. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "data/digest.h"
#include "data/idx.h"
#include "data/loader.h"
#include "data/prepare.h"
#include "data/split.h"
#include "data/transform.h"
#include "data_test_util.h"

#define assert_msg_has(sub)                                                                        \
    do {                                                                                           \
        if (!strstr(kl_errmsg(), (sub))) {                                                         \
            fail_msg("message \"%s\" lacks \"%s\"", kl_errmsg(), (sub));                           \
        }                                                                                          \
    } while (0)

#define FMNIST "/usr/share/datasets/fashion-mnist/"

static void test_prng_reference(void **state) {
    (void)state;
    /* splitmix64's published first outputs from state 0; the split depends on these bits. */
    uint64_t s = 0;
    assert_true(kl_splitmix64(&s) == 0xE220A8397B1DCDAFull);
    assert_true(kl_splitmix64(&s) == 0x6E789E6AA1B965F4ull);
    uint64_t st = 7;
    for (int i = 0; i < 1000; i++)
        assert_true(kl_rand_below(&st, 3) < 3);
}

static void test_split(void **state) {
    (void)state;
    int64_t *t1, *v1, *t2, *v2, nt, nv, nt2, nv2;
    assert_int_equal(kl_split_indices(100, 0.2, 42, &t1, &nt, &v1, &nv), KL_OK);
    assert_int_equal(nt, 80);
    assert_int_equal(nv, 20);
    int seen[100] = {0};
    for (int64_t i = 0; i < nt; i++)
        seen[t1[i]]++;
    for (int64_t i = 0; i < nv; i++)
        seen[v1[i]]++;
    for (int i = 0; i < 100; i++)
        assert_int_equal(seen[i], 1);
    for (int64_t i = 1; i < nv; i++)
        assert_true(v1[i - 1] < v1[i]);
    /* Same seed, same split. */
    assert_int_equal(kl_split_indices(100, 0.2, 42, &t2, &nt2, &v2, &nv2), KL_OK);
    assert_memory_equal(v1, v2, (size_t)nv * sizeof *v1);
    free(t2);
    free(v2);
    /* Another seed, another split. */
    assert_int_equal(kl_split_indices(100, 0.2, 43, &t2, &nt2, &v2, &nv2), KL_OK);
    assert_true(memcmp(v1, v2, (size_t)nv * sizeof *v1) != 0);
    free(t1);
    free(v1);
    free(t2);
    free(v2);
    /* The permutation for a fixed seed is fixed forever (machines, compilers, releases). */
    int64_t p[8];
    kl_permutation(p, 8, 42);
    const int64_t golden[8] = {3, 1, 6, 2, 4, 0, 7, 5}; /* from an independent Python model */
    assert_memory_equal(p, golden, sizeof p);
    assert_int_equal(kl_split_val_count(10, 0.0), 0);
    assert_int_equal(kl_split_val_count(1, 0.9), 0); /* keep one row to train on */
    assert_int_equal(kl_split_val_count(3, 0.5), 2);
    assert_int_not_equal(kl_split_indices(10, 1.0, 1, &t1, &nt, &v1, &nv), KL_OK);
}

/* A dataset with x = row index in every feature, y = row % 3, t = row / 2. */
static void make_rows(kl_dataset *ds, int64_t n, int64_t d) {
    memset(ds, 0, sizeof *ds);
    ds->n = n;
    ds->d = d;
    ds->x = malloc((size_t)(n * d) * sizeof(float));
    ds->y = malloc((size_t)n * sizeof(int32_t));
    ds->t = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < d; j++)
            ds->x[i * d + j] = (float)i;
        ds->y[i] = (int32_t)(i % 3);
        ds->t[i] = (float)i / 2;
    }
}

static void test_loader(void **state) {
    (void)state;
    kl_dataset ds;
    make_rows(&ds, 103, 3);
    kl_loader_opts o = {.batch_size = 10, .seed = 5};
    kl_loader l;
    assert_int_equal(kl_loader_init(&l, &ds, &o), KL_OK);
    assert_int_equal(kl_loader_batches_per_epoch(&l), 11);
    float x[30];
    int32_t y[10];
    float t[10];
    int64_t rows[10], first[2][103];
    for (int e = 0; e < 2; e++) {
        assert_int_equal(kl_loader_start_epoch(&l, e), KL_OK);
        int seen[103] = {0};
        int64_t k, total = 0, batches = 0;
        while ((k = kl_loader_next(&l, x, y, t, rows)) > 0) {
            assert_true(k == 10 || (k == 3 && batches == 10)); /* last partial batch kept */
            for (int64_t i = 0; i < k; i++) {
                int64_t r = (int64_t)x[i * 3];
                assert_int_equal(r, rows[i]);
                assert_true(x[i * 3 + 2] == (float)r);
                assert_int_equal(y[i], r % 3);
                assert_true(t[i] == (float)r / 2);
                seen[r]++;
                first[e][total + i] = r;
            }
            total += k;
            batches++;
        }
        assert_int_equal(total, 103);
        for (int i = 0; i < 103; i++)
            assert_int_equal(seen[i], 1);
    }
    assert_true(memcmp(first[0], first[1], sizeof first[0]) != 0); /* epochs differ */
    /* Replaying epoch 1 gives the same order; skipping lands mid-epoch in the same place. */
    assert_int_equal(kl_loader_start_epoch(&l, 1), KL_OK);
    assert_int_equal(kl_loader_skip(&l, 3), 3);
    assert_int_equal(kl_loader_next(&l, x, NULL, NULL, rows), 10);
    assert_memory_equal(rows, first[1] + 30, 10 * sizeof(int64_t));
    kl_loader_free(&l);

    o.drop_last = 1;
    assert_int_equal(kl_loader_init(&l, &ds, &o), KL_OK);
    assert_int_equal(kl_loader_batches_per_epoch(&l), 10);
    assert_int_equal(kl_loader_start_epoch(&l, 0), KL_OK);
    int64_t k, total = 0;
    while ((k = kl_loader_next(&l, x, NULL, NULL, NULL)) > 0) {
        assert_int_equal(k, 10);
        total += k;
    }
    assert_int_equal(total, 100);
    kl_loader_free(&l);

    /* Sharding: 3 ranks see disjoint rows, equally many, from one shared permutation. */
    o.drop_last = 0;
    o.world_size = 3;
    int owner[103];
    for (int i = 0; i < 103; i++)
        owner[i] = -1;
    for (int rank = 0; rank < 3; rank++) {
        o.rank = rank;
        assert_int_equal(kl_loader_init(&l, &ds, &o), KL_OK);
        assert_int_equal(kl_loader_start_epoch(&l, 4), KL_OK);
        total = 0;
        while ((k = kl_loader_next(&l, x, NULL, NULL, rows)) > 0) {
            for (int64_t i = 0; i < k; i++) {
                assert_int_equal(owner[rows[i]], -1);
                owner[rows[i]] = rank;
            }
            total += k;
        }
        assert_int_equal(total, 34);
        kl_loader_free(&l);
    }
    o.rank = 3;
    assert_int_equal(kl_loader_init(&l, &ds, &o), KL_EINVAL);
    o.rank = 0;
    o.batch_size = 0;
    assert_int_equal(kl_loader_init(&l, &ds, &o), KL_EINVAL);
    assert_msg_has("batch_size");
    kl_dataset_free(&ds);
}

static void test_transform(void **state) {
    (void)state;
    kl_dataset ds = {0};
    float x[8] = {1, 5, 3, 5, 5, 5, 7, 5}; /* feature 0: 1,3,5,7; feature 1 constant 5 */
    ds.n = 4;
    ds.d = 2;
    ds.x = x;
    float *sh, *sc;
    assert_int_equal(kl_transform_fit(KL_TRANSFORM_STANDARD, &ds, &sh, &sc), KL_OK);
    assert_true(sh[0] == 4.0f);
    assert_float_equal(sc[0], 1.0 / sqrt(5.0), 1e-6); /* population std of 1,3,5,7 */
    assert_true(sh[1] == 5.0f && sc[1] == 1.0f);      /* std 0 → scale 1 */
    float y[8];
    memcpy(y, x, sizeof y);
    kl_transform_apply(sh, sc, y, 4, 2);
    assert_float_equal(y[0], -3 / sqrt(5.0), 1e-6);
    assert_true(y[1] == 0.0f);
    free(sh);
    free(sc);
    assert_int_equal(kl_transform_fit(KL_TRANSFORM_MINMAX, &ds, &sh, &sc), KL_OK);
    assert_true(sh[0] == 1.0f);
    assert_float_equal(sc[0], 1.0 / 6, 1e-7);
    assert_true(sc[1] == 1.0f); /* range 0 → scale 1 */
    free(sh);
    free(sc);
    assert_int_equal(kl_transform_fit(KL_TRANSFORM_NONE, &ds, &sh, &sc), KL_OK);
    assert_null(sh);
    assert_null(sc);
    kl_transform_kind k;
    assert_int_equal(kl_transform_parse("zscore", &k), KL_EINVAL);
    assert_msg_has("\"zscore\" is not one of none, standard, minmax");
}

/* Writes a small IDX images + labels pair: n items of 2x3, pixel = (i * 7 + j) % 256. */
static void write_idx_pair(const char *img, const char *lab, uint32_t n, int gz, int max_label) {
    unsigned char *pix = malloc((size_t)n * 6), *buf = malloc((size_t)n * 6 + 32);
    unsigned char *ls = malloc(n), lbuf[4096];
    for (uint32_t i = 0; i < n; i++) {
        for (int j = 0; j < 6; j++)
            pix[i * 6 + j] = (unsigned char)((i * 7 + (uint32_t)j) % 256);
        ls[i] = (unsigned char)(i % (uint32_t)(max_label + 1));
    }
    uint32_t dims[3] = {n, 2, 3};
    size_t len = tu_idx(buf, 0x08, 3, dims, pix, (size_t)n * 6);
    if (gz)
        tu_write_gz(img, buf, len);
    else
        tu_write(img, buf, len);
    tu_write(lab, lbuf, tu_idx(lbuf, 0x08, 1, &n, ls, n));
    free(pix);
    free(buf);
    free(ls);
}

static void test_digest(void **state) {
    (void)state;
    const char *img = tu_path("d.idx"), *imgz = tu_path("d.idx.gz"), *lab = tu_path("dl.idx");
    write_idx_pair(img, lab, 50, 0, 4);
    write_idx_pair(imgz, lab, 50, 1, 4);
    kl_dataset a, b;
    int r, c;
    char da[KL_DIGEST_LEN], db[KL_DIGEST_LEN];
    assert_int_equal(kl_idx_read_dataset(img, lab, 0, NULL, &a, &r, &c), KL_OK);
    assert_int_equal(kl_idx_read_dataset(imgz, lab, 0, NULL, &b, &r, &c), KL_OK);
    assert_int_equal(kl_digest_dataset(&a, da), KL_OK);
    assert_int_equal(kl_digest_dataset(&b, db), KL_OK);
    assert_string_equal(da, db);
    assert_int_equal(strlen(da), 71);
    assert_memory_equal(da, "sha256:", 7);
    for (int i = 7; i < 71; i++)
        assert_non_null(strchr("0123456789abcdef", da[i]));
    b.x[17] += 1;
    assert_int_equal(kl_digest_dataset(&b, db), KL_OK);
    assert_string_not_equal(da, db);
    b.x[17] -= 1;
    b.y[3] = (b.y[3] + 1) % 5;
    assert_int_equal(kl_digest_dataset(&b, db), KL_OK);
    assert_string_not_equal(da, db);
    kl_dataset_free(&a);
    kl_dataset_free(&b);
    /* CSV: quoting, line endings and compression do not change the digest; a cell does. */
    const char *c1 = tu_path("d1.csv"), *c2 = tu_path("d2.csv.gz"), *c3 = tu_path("d3.csv");
    const char *t2 = "\"a\",b\r\n\"1\",x\r\n2,\"y\"\r\n";
    tu_write_str(c1, "a,b\n1,x\n2,y\n");
    tu_write_gz(c2, t2, strlen(t2));
    tu_write_str(c3, "a,b\n1,x\n2,z\n");
    kl_csv_table t;
    char d1[KL_DIGEST_LEN], d2[KL_DIGEST_LEN], d3[KL_DIGEST_LEN];
    assert_int_equal(kl_csv_read(c1, &t), KL_OK);
    assert_int_equal(kl_digest_csv(&t, d1), KL_OK);
    kl_csv_free(&t);
    assert_int_equal(kl_csv_read(c2, &t), KL_OK);
    assert_int_equal(kl_digest_csv(&t, d2), KL_OK);
    kl_csv_free(&t);
    assert_int_equal(kl_csv_read(c3, &t), KL_OK);
    assert_int_equal(kl_digest_csv(&t, d3), KL_OK);
    kl_csv_free(&t);
    assert_string_equal(d1, d2);
    assert_string_not_equal(d1, d3);
}

static kl_data_config idx_config(const char *img, const char *lab) {
    kl_data_config c = {0};
    c.format = "idx";
    c.train = img;
    c.train_labels = lab;
    c.task = "classification";
    c.val_fraction = 0.2;
    c.seed = 9;
    c.transform = "standard";
    return c;
}

static void test_config_errors(void **state) {
    (void)state;
    kl_prepared_data p;
    kl_data_config c = idx_config("x", "y");
    c.transform = "zscore";
    assert_int_equal(kl_data_prepare(&c, &p), KL_EINVAL);
    assert_string_equal(kl_errmsg(),
                        "data.transform: \"zscore\" is not one of none, standard, minmax");
    c = idx_config("x", "y");
    c.val_fraction = 1.5;
    assert_int_equal(kl_data_prepare(&c, &p), KL_EINVAL);
    assert_string_equal(kl_errmsg(), "data.val_fraction: 1.5 outside [0,1)");
    c = idx_config("x", NULL);
    assert_int_equal(kl_data_prepare(&c, &p), KL_EINVAL);
    assert_msg_has("data.train_labels");
    c = idx_config("x", "y");
    c.format = "parquet";
    assert_int_equal(kl_data_prepare(&c, &p), KL_EINVAL);
    assert_msg_has("data.format: \"parquet\"");
    c = idx_config("x", "y");
    c.task = "regression";
    assert_int_equal(kl_data_prepare(&c, &p), KL_EINVAL);
    assert_msg_has("data.task");
    c = idx_config("x", "y");
    c.limit = -3;
    assert_int_equal(kl_data_prepare(&c, &p), KL_EINVAL);
    assert_msg_has("data.limit");
    c = idx_config("x", "y");
    c.test = "t";
    assert_int_equal(kl_data_prepare(&c, &p), KL_EINVAL);
    assert_msg_has("data.test_labels");
    c = idx_config(tu_path("missing.idx"), "y");
    assert_int_equal(kl_data_prepare(&c, &p), KL_EIO);
    assert_msg_has("missing.idx");
    assert_null(p.train.x);
}

static void test_prepare_idx(void **state) {
    (void)state;
    const char *img = tu_path("p.idx"), *lab = tu_path("pl.idx");
    const char *timg = tu_path("pt.idx.gz"), *tlab = tu_path("ptl.idx");
    write_idx_pair(img, lab, 200, 0, 4);
    write_idx_pair(timg, tlab, 30, 1, 4);
    kl_data_config c = idx_config(img, lab);
    c.test = timg;
    c.test_labels = tlab;
    const char *names[5] = {"a", "b", "c", "d", "e"};
    c.label_names = names;
    c.n_label_names = 5;
    kl_prepared_data p;
    assert_int_equal(kl_data_prepare(&c, &p), KL_OK);
    assert_int_equal(p.train.n, 160);
    assert_int_equal(p.val.n, 40);
    assert_int_equal(p.test.n, 30);
    assert_int_equal(p.n_features, 6);
    assert_string_equal(p.transform, "standard");
    assert_int_equal(p.train.n_classes, 5);
    assert_string_equal(p.train.class_names[4], "e");
    assert_string_equal(p.val.class_names[0], "a");
    assert_int_equal(strlen(p.digest), 71);
    assert_int_equal(strlen(p.test_digest), 71);
    /* Fitted on the training split only: train is standardised, exactly. */
    for (int j = 0; j < 6; j++) {
        double m = 0, v = 0;
        for (int64_t i = 0; i < p.train.n; i++)
            m += p.train.x[i * 6 + j];
        m /= (double)p.train.n;
        for (int64_t i = 0; i < p.train.n; i++)
            v += (p.train.x[i * 6 + j] - m) * (p.train.x[i * 6 + j] - m);
        assert_float_equal(m, 0, 1e-5);
        assert_float_equal(sqrt(v / (double)p.train.n), 1, 1e-4);
    }
    /* The shift is the mean of exactly the training rows the split chose. */
    int64_t *tr, *va, nt, nv;
    assert_int_equal(kl_split_indices(200, 0.2, 9, &tr, &nt, &va, &nv), KL_OK);
    double m0 = 0;
    for (int64_t i = 0; i < nt; i++)
        m0 += (double)((tr[i] * 7) % 256);
    assert_float_equal(p.shift[0], m0 / (double)nt, 1e-3);
    free(tr);
    free(va);
    /* The encoder reads new input the same way; the transform is the caller's. */
    assert_non_null(strstr(p.encoder_json, "\"format\":\"idx\""));
    kl_dataset in;
    assert_int_equal(kl_data_load_input(p.encoder_json, timg, tlab, 1, &in), KL_OK);
    assert_int_equal(in.n, 30);
    assert_int_equal(in.n_classes, 5);
    kl_transform_apply(p.shift, p.scale, in.x, in.n, in.d);
    assert_memory_equal(in.x, p.test.x, 30 * 6 * sizeof(float));
    assert_memory_equal(in.y, p.test.y, 30 * sizeof(int32_t));
    kl_dataset_free(&in);
    assert_int_equal(kl_data_load_input(p.encoder_json, timg, NULL, 1, &in), KL_EINVAL);
    assert_msg_has("labels are required");
    assert_int_equal(kl_data_load_input(p.encoder_json, timg, NULL, 0, &in), KL_OK);
    assert_null(in.y);
    kl_dataset_free(&in);
    /* Labels beyond the trained classes are refused at prediction time. */
    const char *blab = tu_path("bad_labels.idx");
    write_idx_pair(tu_path("unused.idx"), blab, 30, 0, 6);
    assert_int_equal(kl_data_load_input(p.encoder_json, timg, blab, 1, &in), KL_EFORMAT);
    assert_msg_has("bad_labels.idx");
    assert_msg_has("unknown label 5 at item 5 (byte offset 13)");
    /* Items of another shape are refused. */
    unsigned char buf[64], px[16] = {0};
    uint32_t dims[3] = {1, 4, 4};
    const char *sq = tu_path("square.idx");
    tu_write(sq, buf, tu_idx(buf, 0x08, 3, dims, px, 16));
    assert_int_equal(kl_data_load_input(p.encoder_json, sq, NULL, 0, &in), KL_EFORMAT);
    assert_msg_has("items are 4x4, the model was trained on 2x3");
    char digest[80];
    snprintf(digest, sizeof digest, "%s", p.digest);
    kl_prepared_data_free(&p);
    assert_null(p.train.x);

    /* limit: 50 rows of train (and of test); the digest covers exactly those rows. */
    c.limit = 50;
    c.val_fraction = 0;
    c.transform = "none";
    c.n_label_names = 0; /* an empty list (the pointer may still be set): classes "0".."4" */
    assert_int_equal(kl_data_prepare(&c, &p), KL_OK);
    assert_int_equal(p.train.n_classes, 5);
    assert_string_equal(p.train.class_names[0], "0");
    assert_string_equal(p.test.class_names[4], "4");
    assert_int_equal(p.train.n, 50);
    assert_int_equal(p.val.n, 0);
    assert_int_equal(p.test.n, 30);
    assert_null(p.shift);
    assert_string_not_equal(p.digest, digest);
    assert_true(p.train.x[49 * 6 + 1] == (float)((49 * 7 + 1) % 256)); /* raw, file order */
    kl_prepared_data_free(&p);
}

static void test_prepare_csv(void **state) {
    (void)state;
    const char *tr = tu_path("tr.csv"), *te = tu_path("te.csv");
    /* 20 rows; numeric x (with gaps), categorical shade, class label. */
    char text[4096] = "x,shade,label\n";
    for (int i = 0; i < 20; i++) {
        char row[64], xs[16] = "";
        if (i % 7 != 3) snprintf(xs, sizeof xs, "%d", i * 10); /* rows 3, 10, 17: missing x */
        snprintf(row, sizeof row, "%s,%s,%s\n", xs, i % 3 == 0 ? "dark" : "light",
                 i % 2 ? "yes" : "no");
        strcat(text, row);
    }
    tu_write_str(tr, text);
    tu_write_str(te, "label,shade,x\nyes,dark,5\nno,,15\n");
    const char *cat[1] = {"shade"};
    kl_data_config c = {.format = "csv",
                        .train = tr,
                        .test = te,
                        .label_column = "label",
                        .categorical = cat,
                        .n_categorical = 1,
                        .task = "classification",
                        .val_fraction = 0.25,
                        .seed = 3,
                        .transform = "minmax"};
    kl_prepared_data p;
    assert_int_equal(kl_data_prepare(&c, &p), KL_OK);
    assert_int_equal(p.train.n, 15);
    assert_int_equal(p.val.n, 5);
    assert_int_equal(p.test.n, 2);
    assert_int_equal(p.n_features, 3);
    assert_string_equal(p.train.feature_names[1], "shade=dark");
    assert_string_equal(p.train.class_names[0], "no");
    /* minmax on the training split: every training feature spans exactly [0, 1]. */
    float lo = 1e9f, hi = -1e9f;
    for (int64_t i = 0; i < p.train.n; i++) {
        float v = p.train.x[i * 3];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    assert_true(lo == 0.0f);
    assert_float_equal(hi, 1.0f, 1e-6);
    /* Prediction-time encoding of the test file matches prepare's test set. */
    kl_dataset in;
    assert_int_equal(kl_data_load_input(p.encoder_json, te, NULL, 1, &in), KL_OK);
    kl_transform_apply(p.shift, p.scale, in.x, in.n, in.d);
    assert_memory_equal(in.x, p.test.x, 2 * 3 * sizeof(float));
    assert_int_equal(in.y[0], 1);
    kl_dataset_free(&in);
    assert_int_equal(kl_data_load_input(p.encoder_json, te, "labels.idx", 0, &in), KL_EINVAL);
    tu_write_str(te, "label,shade,x\nmaybe,dark,5\n");
    assert_int_equal(kl_data_load_input(p.encoder_json, te, NULL, 0, &in), KL_EFORMAT);
    assert_msg_has("te.csv\": line 2, column \"label\": unknown label \"maybe\"");
    kl_prepared_data_free(&p);
    /* An unknown category in the test file fails prepare, naming the test file. */
    tu_write_str(te, "label,shade,x\nyes,medium,5\n");
    assert_int_equal(kl_data_prepare(&c, &p), KL_EFORMAT);
    assert_msg_has("te.csv\": line 2, column \"shade\": unknown category \"medium\"");
    assert_null(p.encoder_json);
    assert_int_equal(kl_data_load_input("{\"format\":\"xml\"}", te, NULL, 0, &in), KL_EFORMAT);
    assert_msg_has("format");
    assert_int_equal(kl_data_load_input("{not json", te, NULL, 0, &in), KL_EFORMAT);
    assert_msg_has("not valid JSON");
}

static void test_fashion_mnist(void **state) {
    (void)state;
    if (access(FMNIST "train-images-idx3-ubyte.gz", R_OK) ||
        access(FMNIST "t10k-labels-idx1-ubyte.gz", R_OK)) {
        print_message("skipped: Fashion-MNIST not found in " FMNIST "\n");
        skip();
    }
    kl_data_config c = {.format = "idx",
                        .train = FMNIST "train-images-idx3-ubyte.gz",
                        .train_labels = FMNIST "train-labels-idx1-ubyte.gz",
                        .test = FMNIST "t10k-images-idx3-ubyte.gz",
                        .test_labels = FMNIST "t10k-labels-idx1-ubyte.gz",
                        .task = "classification",
                        .val_fraction = 0.1,
                        .seed = 42,
                        .transform = "standard"};
    kl_prepared_data p;
    assert_int_equal(kl_data_prepare(&c, &p), KL_OK);
    assert_int_equal(p.train.n + p.val.n, 60000);
    assert_int_equal(p.val.n, 6000);
    assert_int_equal(p.test.n, 10000);
    assert_int_equal(p.n_features, 784);
    assert_int_equal(p.train.n_classes, 10);
    assert_int_equal(p.test.n_classes, 10);
    /* Pixel means lie in [0, 255]; the overall mean is Fashion-MNIST's known 72.94. */
    double m = 0;
    for (int j = 0; j < 784; j++) {
        assert_true(p.shift[j] >= 0 && p.shift[j] <= 255);
        m += p.shift[j];
    }
    assert_float_equal(m / 784, 72.94, 0.2);
    kl_prepared_data_free(&p);
}

int main(void) {
    if (tu_init("test_data_prep")) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prng_reference), cmocka_unit_test(test_split),
        cmocka_unit_test(test_loader),         cmocka_unit_test(test_transform),
        cmocka_unit_test(test_digest),         cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_prepare_idx),    cmocka_unit_test(test_prepare_csv),
        cmocka_unit_test(test_fashion_mnist),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
