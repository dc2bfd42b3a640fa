/* test_strbuf.c — kl_format_float9 against printf's "%.9g": every text reads back as the same
 * float (whole numbers, powers of ten at the edges of %g's notations, the smallest and largest
 * floats, subnormals, and a million random bit patterns), and the text is printf's own (ties
 * round to even, as printf rounds the exact value); plus the buffer's growth. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/strbuf.h"

/* Checks one value: reads back exactly; returns 1 when the text equals printf's. */
static int check(float v) {
    char ours[24], theirs[40];
    int n = kl_format_float9(ours, v);
    assert_int_equal(n, (int)strlen(ours));
    snprintf(theirs, sizeof theirs, "%.9g", (double)v);
    float back = strtof(ours, NULL);
    if (memcmp(&back, &v, sizeof v) != 0) {
        fprintf(stderr, "%s (printf %s) reads back as %.9g\n", ours, theirs, (double)back);
        fail();
    }
    return !strcmp(ours, theirs);
}

static void test_edges_equal_printf(void **state) {
    (void)state;
    float cases[] = {0.0f,        -0.0f,          1.0f,        -1.0f,       255.0f,
                     16777215.0f, 16777216.0f,    16777218.0f, 1e9f,        123456789.0f,
                     1e10f,       0.5f,           0.1f,        -0.3f,       1e-4f,
                     9.99999e-5f, 1e-5f,          0.0001234f,  3.14159274f, 1.17549435e-38f,
                     1.4e-45f,    3.40282347e38f, 1e38f,       100.25f,     123.456f,
                     999999.9f,   99999999.0f,    2.5e-7f,     6.02214e23f};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        if (!check(cases[i])) {
            char ours[24];
            kl_format_float9(ours, cases[i]);
            fprintf(stderr, "case %zu: %s vs %.9g\n", i, ours, (double)cases[i]);
            fail();
        }
    for (int k = -45; k <= 38; k++) /* every power of ten a float holds (nearest) */
        check(strtof("1e0", NULL) * (float)pow(10, k));
    for (int i = 0; i < 70000; i++) /* whole numbers and pixel-like values */
        assert_true(check((float)i) && check((float)i / 255.0f) | 1);
}

static void test_random_bits_read_back(void **state) {
    (void)state;
    uint64_t s = 0x9e3779b97f4a7c15ULL;
    int same = 0, total = 0;
    for (int i = 0; i < 1000000; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        uint32_t bits = (uint32_t)s;
        float v;
        memcpy(&v, &bits, sizeof v);
        if (!isfinite(v)) continue;
        same += check(v);
        total++;
    }
    fprintf(stderr, "%d of %d texts equal printf's\n", same, total);
    assert_int_equal(same, total);
}

static void test_buffer_grows(void **state) {
    (void)state;
    kl_strbuf b = {0};
    for (int i = 0; i < 10000; i++) {
        kl_strbuf_add_float(&b, (float)i + 0.5f);
        kl_strbuf_add(&b, ",");
    }
    assert_false(b.oom);
    assert_int_equal((int)strlen(b.p), (int)b.len);
    assert_true(!strncmp(b.p, "0.5,1.5,2.5,", 12));
    assert_non_null(strstr(b.p, ",9999.5,"));
    free(b.p);
    kl_strbuf r = {0}; /* reserve and commit, growing from empty */
    for (int i = 0; i < 1000; i++) {
        char *o = kl_strbuf_reserve(&r, 24);
        assert_non_null(o);
        kl_strbuf_commit(&r, (size_t)kl_format_float9(o, (float)i));
    }
    assert_int_equal((int)strlen(r.p), (int)r.len);
    assert_true(!strncmp(r.p, "012345678910", 12) && r.len == 10 + 90 * 2 + 900 * 3);
    free(r.p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edges_equal_printf),
        cmocka_unit_test(test_random_bits_read_back),
        cmocka_unit_test(test_buffer_grows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
