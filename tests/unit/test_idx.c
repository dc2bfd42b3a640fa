/* test_idx.c — the IDX reader: values, shapes, gzip, and every malformed-file error with the
 * file name and byte offset in its message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "data/idx.h"
#include "data_test_util.h"

#define assert_msg_has(sub)                                                                        \
    do {                                                                                           \
        if (!strstr(kl_errmsg(), (sub))) {                                                         \
            fail_msg("message \"%s\" lacks \"%s\"", kl_errmsg(), (sub));                           \
        }                                                                                          \
    } while (0)

/* 3 images of 2x2 u8 pixels, and their labels. */
static const unsigned char PIX[12] = {0, 1, 2, 3, 10, 20, 30, 255, 7, 7, 7, 7};
static const unsigned char LAB[3] = {2, 0, 1};

static void write_images(const char *path, int gz) {
    unsigned char buf[64];
    uint32_t dims[3] = {3, 2, 2};
    size_t n = tu_idx(buf, 0x08, 3, dims, PIX, sizeof PIX);
    if (gz)
        tu_write_gz(path, buf, n);
    else
        tu_write(path, buf, n);
}

static void write_labels(const char *path, const unsigned char *lab, uint32_t n) {
    unsigned char buf[64];
    size_t len = tu_idx(buf, 0x08, 1, &n, lab, n);
    tu_write(path, buf, len);
}

static void test_images_and_labels(void **state) {
    (void)state;
    const char *img = tu_path("img.idx"), *lab = tu_path("lab.idx");
    write_images(img, 0);
    write_labels(lab, LAB, 3);
    kl_dataset ds;
    int rows = 0, cols = 0;
    assert_int_equal(kl_idx_read_dataset(img, lab, 0, NULL, &ds, &rows, &cols), KL_OK);
    assert_int_equal(ds.n, 3);
    assert_int_equal(ds.d, 4);
    assert_int_equal(rows, 2);
    assert_int_equal(cols, 2);
    for (int i = 0; i < 12; i++)
        assert_true(ds.x[i] == (float)PIX[i]); /* raw, unscaled */
    assert_int_equal(ds.y[0], 2);
    assert_int_equal(ds.y[1], 0);
    assert_int_equal(ds.y[2], 1);
    assert_int_equal(ds.n_classes, 3); /* max label + 1 */
    assert_string_equal(ds.class_names[2], "2");
    assert_null(ds.t);
    kl_dataset_free(&ds);
    assert_null(ds.x);

    const char *names[4] = {"a", "b", "c", "d"};
    assert_int_equal(kl_idx_read_dataset(img, lab, 4, (char *const *)names, &ds, &rows, &cols),
                     KL_OK);
    assert_int_equal(ds.n_classes, 4);
    assert_string_equal(ds.class_names[3], "d");
    kl_dataset_free(&ds);
}

static void test_gzip_same_values(void **state) {
    (void)state;
    const char *gz = tu_path("img.idx.gz");
    write_images(gz, 1);
    kl_dataset ds;
    int rows, cols;
    assert_int_equal(kl_idx_read_images(gz, &ds, &rows, &cols), KL_OK);
    assert_int_equal(ds.n, 3);
    assert_int_equal(ds.d, 4);
    for (int i = 0; i < 12; i++)
        assert_true(ds.x[i] == (float)PIX[i]);
    kl_dataset_free(&ds);
    int nd = 0;
    assert_int_equal(kl_idx_probe(gz, &nd), 1);
    assert_int_equal(nd, 3);
}

static void test_other_types_big_endian(void **state) {
    (void)state;
    /* i16 [2, 2]: -2, 300, 1, -32768 */
    unsigned char p16[8] = {0xFF, 0xFE, 0x01, 0x2C, 0x00, 0x01, 0x80, 0x00};
    unsigned char buf[64];
    uint32_t dims[2] = {2, 2};
    const char *path = tu_path("i16.idx");
    tu_write(path, buf, tu_idx(buf, 0x0B, 2, dims, p16, sizeof p16));
    kl_dataset ds;
    int rows, cols;
    assert_int_equal(kl_idx_read_images(path, &ds, &rows, &cols), KL_OK);
    assert_int_equal(rows, 1);
    assert_int_equal(cols, 2);
    assert_true(ds.x[0] == -2.0f && ds.x[1] == 300.0f && ds.x[2] == 1.0f && ds.x[3] == -32768.0f);
    kl_dataset_free(&ds);
    /* f32 [1, 1]: 1.5 = 0x3FC00000 */
    unsigned char pf[4] = {0x3F, 0xC0, 0x00, 0x00};
    uint32_t d1[2] = {1, 1};
    tu_write(path, buf, tu_idx(buf, 0x0D, 2, d1, pf, sizeof pf));
    assert_int_equal(kl_idx_read_images(path, &ds, &rows, &cols), KL_OK);
    assert_true(ds.x[0] == 1.5f);
    kl_dataset_free(&ds);
}

static void test_wrong_magic(void **state) {
    (void)state;
    const char *path = tu_path("magic.idx");
    unsigned char bad[20] = {0x01, 0x02, 0x08, 0x03};
    tu_write(path, bad, sizeof bad);
    kl_dataset ds;
    int r, c;
    assert_int_equal(kl_idx_read_images(path, &ds, &r, &c), KL_EFORMAT);
    assert_msg_has("magic.idx");
    assert_msg_has("magic bytes 01 02 08 03");
    assert_int_equal(kl_idx_probe(path, NULL), 0);
    unsigned char type[20] = {0, 0, 0x0A, 0x01};
    tu_write(path, type, sizeof type);
    assert_int_equal(kl_idx_read_images(path, &ds, &r, &c), KL_EUNSUPPORTED);
    assert_msg_has("0x0a");
    assert_msg_has("magic.idx");
    /* 2^32-1 cubed items: refused from the header alone, without overflow or allocation. */
    unsigned char huge[16] = {0,    0,    0x08, 3,    0xFF, 0xFF, 0xFF, 0xFF,
                              0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    tu_write(path, huge, sizeof huge);
    assert_int_equal(kl_idx_read_images(path, &ds, &r, &c), KL_EFORMAT);
    assert_msg_has("declares more than");
    /* A plausible header over missing data fails as truncated, without a giant allocation. */
    unsigned char big[16] = {0, 0, 0x08, 3, 0, 0x10, 0, 0, 0, 0, 0x01, 0, 0, 0, 0x01, 0};
    tu_write(path, big, sizeof big);
    assert_int_equal(kl_idx_read_images(path, &ds, &r, &c), KL_EFORMAT);
    assert_msg_has("truncated: data ends at byte offset 16");
    unsigned char dims0[20] = {0, 0, 0x08, 0x00};
    tu_write(path, dims0, sizeof dims0);
    assert_int_not_equal(kl_idx_read_images(path, &ds, &r, &c), KL_OK);
    assert_msg_has("0 dimensions");
}

static void test_truncated(void **state) {
    (void)state;
    unsigned char buf[64];
    uint32_t dims[3] = {3, 2, 2};
    size_t n = tu_idx(buf, 0x08, 3, dims, PIX, sizeof PIX);
    const char *path = tu_path("trunc.idx");
    tu_write(path, buf, n - 5); /* 16 header bytes + 7 of the 12 data bytes */
    kl_dataset ds;
    int r, c;
    assert_int_equal(kl_idx_read_images(path, &ds, &r, &c), KL_EFORMAT);
    assert_msg_has("trunc.idx");
    assert_msg_has("truncated");
    assert_msg_has("byte offset 23");
    assert_msg_has("declares 28 bytes");
    assert_null(ds.x);
    tu_write(path, buf, 10); /* inside the dimensions */
    assert_int_equal(kl_idx_read_images(path, &ds, &r, &c), KL_EFORMAT);
    assert_msg_has("byte offset 10");
    /* The same through gzip: the data ran out, the stream itself is fine. */
    const char *gz = tu_path("trunc.idx.gz");
    tu_write_gz(gz, buf, n - 5);
    assert_int_equal(kl_idx_read_images(gz, &ds, &r, &c), KL_EFORMAT);
    assert_msg_has("trunc.idx.gz");
    assert_msg_has("byte offset 23");
}

static void test_trailing_garbage(void **state) {
    (void)state;
    unsigned char buf[64];
    uint32_t dims[3] = {3, 2, 2};
    size_t n = tu_idx(buf, 0x08, 3, dims, PIX, sizeof PIX);
    buf[n++] = 0xAB;
    const char *path = tu_path("trail.idx");
    tu_write(path, buf, n);
    kl_dataset ds;
    int r, c;
    assert_int_equal(kl_idx_read_images(path, &ds, &r, &c), KL_EFORMAT);
    assert_msg_has("trail.idx");
    assert_msg_has("after byte offset 28");
}

static void test_bad_gzip(void **state) {
    (void)state;
    /* Large enough that the deflate stream spans many blocks. */
    enum { N = 200, D = 784 };
    unsigned char *payload = malloc((size_t)N * D), *buf = malloc((size_t)N * D + 64);
    uint64_t st = 1;
    for (size_t i = 0; i < (size_t)N * D; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        payload[i] = (unsigned char)(st >> 56);
    }
    uint32_t dims[3] = {N, 28, 28};
    size_t n = tu_idx(buf, 0x08, 3, dims, payload, (size_t)N * D);
    const char *gz = tu_path("bad.idx.gz");
    tu_write_gz(gz, buf, n);
    FILE *f = fopen(gz, "rb");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *z = malloc((size_t)len);
    assert_int_equal(fread(z, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    kl_dataset ds;
    int r, c;
    /* Cut the compressed stream in half. */
    tu_write(gz, z, (size_t)len / 2);
    assert_int_equal(kl_idx_read_images(gz, &ds, &r, &c), KL_EFORMAT);
    assert_msg_has("bad.idx.gz");
    assert_msg_has("truncated gzip stream: it ends at uncompressed byte");
    /* Flip bytes in the middle of the stream. */
    for (long i = len / 2; i < len / 2 + 64; i++)
        z[i] ^= 0x5A;
    tu_write(gz, z, (size_t)len);
    assert_int_equal(kl_idx_read_images(gz, &ds, &r, &c), KL_EFORMAT);
    assert_msg_has("bad.idx.gz");
    assert_msg_has("corrupt gzip");
    free(z);
    free(payload);
    free(buf);
}

static void test_label_errors(void **state) {
    (void)state;
    const char *img = tu_path("img2.idx"), *lab = tu_path("lab2.idx");
    write_images(img, 0);
    static const unsigned char four[4] = {0, 1, 2, 0};
    write_labels(lab, four, 4);
    kl_dataset ds;
    int r, c;
    assert_int_equal(kl_idx_read_dataset(img, lab, 0, NULL, &ds, &r, &c), KL_EFORMAT);
    assert_msg_has("lab2.idx\" has 4 labels");
    assert_msg_has("img2.idx\" has 3 images");
    static const unsigned char bad[3] = {0, 5, 1};
    write_labels(lab, bad, 3);
    assert_int_equal(kl_idx_read_dataset(img, lab, 3, NULL, &ds, &r, &c), KL_EFORMAT);
    assert_msg_has("lab2.idx");
    assert_msg_has("unknown label 5 at item 1 (byte offset 9)");
    /* Without a class count the same file is fine: 6 classes. */
    assert_int_equal(kl_idx_read_dataset(img, lab, 0, NULL, &ds, &r, &c), KL_OK);
    assert_int_equal(ds.n_classes, 6);
    kl_dataset_free(&ds);
    /* A labels file is not an images file. */
    assert_int_equal(kl_idx_read_images(lab, &ds, &r, &c), KL_EFORMAT);
    assert_msg_has("1 (a labels file?)");
    int32_t *y;
    int64_t n;
    assert_int_equal(kl_idx_read_labels(img, 0, &y, &n), KL_EFORMAT);
    assert_msg_has("need 1 dimension");
}

static void test_missing_file(void **state) {
    (void)state;
    kl_dataset ds;
    int r, c;
    assert_int_equal(kl_idx_read_images(tu_path("nope.idx"), &ds, &r, &c), KL_EIO);
    assert_msg_has("nope.idx");
}

static void test_fashion_mnist(void **state) {
    (void)state;
    const char *img = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";
    const char *lab = "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz";
    if (access(img, R_OK) || access(lab, R_OK)) {
        print_message("skipped: Fashion-MNIST not found at %s\n", img);
        skip();
    }
    kl_dataset ds;
    int r, c;
    assert_int_equal(kl_idx_read_dataset(img, lab, 0, NULL, &ds, &r, &c), KL_OK);
    assert_int_equal(ds.n, 60000);
    assert_int_equal(ds.d, 784);
    assert_int_equal(r, 28);
    assert_int_equal(c, 28);
    assert_int_equal(ds.n_classes, 10);
    int64_t count[10] = {0};
    float mx = 0;
    for (int64_t i = 0; i < ds.n; i++)
        count[ds.y[i]]++;
    for (int64_t i = 0; i < ds.n * ds.d; i++)
        mx = ds.x[i] > mx ? ds.x[i] : mx;
    for (int k = 0; k < 10; k++)
        assert_int_equal(count[k], 6000);
    assert_true(mx == 255.0f);
    kl_dataset_free(&ds);
}

int main(void) {
    if (tu_init("test_idx")) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_images_and_labels),
        cmocka_unit_test(test_gzip_same_values),
        cmocka_unit_test(test_other_types_big_endian),
        cmocka_unit_test(test_wrong_magic),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_trailing_garbage),
        cmocka_unit_test(test_bad_gzip),
        cmocka_unit_test(test_label_errors),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_fashion_mnist),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
