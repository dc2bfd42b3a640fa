/* test_collectives.c — the collectives on one process (the none backend: no-ops that keep the
 * data) and, when ctest runs it under `mpiexec -np 2` (test_collectives_mpi), across two ranks:
 * sums and averages exact on integer-valued floats (also a buffer of 3M floats), sums bitwise equal
 * to the one-process reference of the ring's order, a broadcast from
 * each root, a double reduction and a barrier; a bad root is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/collectives.h"

static kl_comm *comm; /* the job, for every test */

static void test_allreduce(void **state) {
    (void)state;
    int r = kl_comm_rank(comm), n = kl_comm_size(comm);
    printf("rank %d of %d, local rank %d, backend %s\n", r, n, kl_comm_local_rank(comm),
           kl_comm_backend_name(comm));
    enum { N = 1000 };
    float buf[N];
    for (int i = 0; i < N; i++)
        buf[i] = (float)(i + 1000 * r);
    assert_int_equal(kl_comm_allreduce_sum(comm, buf, N), KL_OK);
    for (int i = 0; i < N; i++) {
        /* sum over ranks k of (i + 1000 k) */
        float want = (float)(n * i + 1000 * (n * (n - 1) / 2));
        if (buf[i] != want) fail_msg("sum[%d] = %g, want %g", i, buf[i], want);
    }
    for (int i = 0; i < N; i++)
        buf[i] = (float)(2 * r + 2);
    assert_int_equal(kl_comm_allreduce_avg(comm, buf, N), KL_OK);
    for (int i = 0; i < N; i++)
        assert_true(buf[i] == (float)(n + 1));
    double d[3] = {0.5 * (r + 1), 1, -r};
    assert_int_equal(kl_comm_allreduce_doubles(comm, d, 3), KL_OK);
    assert_true(d[0] == 0.25 * n * (n + 1) && d[1] == n && d[2] == -0.5 * n * (n - 1));
}

static void test_large_buffer(void **state) {
    (void)state;
    size_t n = 3u << 20;
    float *buf = malloc(n * sizeof *buf);
    assert_non_null(buf);
    for (size_t i = 0; i < n; i++)
        buf[i] = (float)(i % 1024);
    assert_int_equal(kl_comm_allreduce_sum(comm, buf, n), KL_OK);
    int size = kl_comm_size(comm);
    for (size_t i = 0; i < n; i++)
        if (buf[i] != (float)(size * (int)(i % 1024))) fail_msg("large[%zu] = %g", i, buf[i]);
    free(buf);
}

/* Rank k's part of the order test: values whose float sums depend on the order of addition. */
static void fill_part(float *p, size_t n, int k) {
    uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(k + 1);
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        p[i] = (float)((double)(x >> 11) / 9007199254740992.0 - 0.5) * (float)(1 << (i % 20));
    }
}

/* The all-reduce adds in the ring's fixed order: every rank ends with exactly the bits
 * kl_comm_ring_sum_reference computes in one process, at sizes that split unevenly. */
static void test_fixed_order(void **state) {
    (void)state;
    int r = kl_comm_rank(comm), W = kl_comm_size(comm);
    size_t sizes[] = {1, 2, 3, 1001, 65537};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        size_t n = sizes[t];
        float **parts = calloc((size_t)W, sizeof *parts);
        float *mine = malloc(n * sizeof *mine), *want = malloc(n * sizeof *want);
        assert_true(parts && mine && want);
        for (int k = 0; k < W; k++) {
            parts[k] = malloc(n * sizeof(float));
            assert_non_null(parts[k]);
            fill_part(parts[k], n, k);
        }
        memcpy(mine, parts[r], n * sizeof *mine);
        assert_int_equal(kl_comm_allreduce_sum(comm, mine, n), KL_OK);
        kl_comm_ring_sum_reference((const float *const *)parts, W, want, n);
        if (memcmp(mine, want, n * sizeof *mine) != 0) fail_msg("n=%zu: not bitwise equal", n);
        for (int k = 0; k < W; k++)
            free(parts[k]);
        free(parts);
        free(mine);
        free(want);
    }
    /* The reference at three ranks: element c is in chunk c, which starts at rank c; in that
     * order every element loses its 1 to rounding, while rank order (a + b) + c keeps it in [1]. */
    float a[3] = {1e8f, 1e8f, 1}, b[3] = {1, -1e8f, 1e8f}, cc[3] = {-1e8f, 1, -1e8f}, out[3];
    const float *three[3] = {a, b, cc};
    kl_comm_ring_sum_reference(three, 3, out, 3);
    assert_true(out[0] == 0 && out[1] == 0 && out[2] == 0);
    assert_true((a[1] + b[1]) + cc[1] == 1); /* the order that was not taken */
}

static void test_broadcast_barrier(void **state) {
    (void)state;
    int r = kl_comm_rank(comm), n = kl_comm_size(comm);
    for (int root = 0; root < n; root++) {
        int64_t v[4] = {r, r * 10, r * 100, -r};
        assert_int_equal(kl_comm_broadcast(comm, v, sizeof v, root), KL_OK);
        assert_true(v[0] == root && v[1] == root * 10 && v[2] == root * 100 && v[3] == -root);
    }
    assert_int_equal(kl_comm_barrier(comm), KL_OK);
    int64_t v = 0;
    assert_int_equal(kl_comm_broadcast(comm, &v, sizeof v, n), KL_EINVAL);
    assert_non_null(strstr(kl_errmsg(), "root"));
}

int main(void) {
    if (kl_comm_init(&comm) != KL_OK) {
        fprintf(stderr, "kl_comm_init: %s\n", kl_errmsg());
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allreduce),
        cmocka_unit_test(test_large_buffer),
        cmocka_unit_test(test_fixed_order),
        cmocka_unit_test(test_broadcast_barrier),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    kl_comm_free(comm);
    return rc;
}
