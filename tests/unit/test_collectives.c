/* test_collectives.c — the collectives on one process (the none backend: no-ops that keep the
 * data) and, when ctest runs it under `mpiexec -np 2` (test_collectives_mpi), across two ranks:
 * sums and averages exact on integer-valued floats (also a buffer of 3M floats), a broadcast from
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
    double d = 0.5 * (r + 1);
    assert_int_equal(kl_comm_allreduce_double(comm, &d), KL_OK);
    assert_true(d == 0.25 * n * (n + 1));
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
        cmocka_unit_test(test_broadcast_barrier),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    kl_comm_free(comm);
    return rc;
}
