/* allreduce_bench.c — bus bandwidth of kiln's ring all-reduce (runtime/collectives) against the
 * MPI library's own MPI_Allreduce on the same buffers, in one mpirun job, for bench/data_parallel.
 *
 * Usage: mpirun -np N allreduce_bench [FLOATS ...]   (default: 1K to 16M floats, and the
 * gradient size of 784-512-256-10). For each size, five rounds alternate the two
 * implementations, each round timing at least 20 calls and ~0.1 s between barriers; each keeps
 * its best round (the slowest rank's time), and rank 0 prints one line: floats, bytes, kiln µs, MPI
 * µs, kiln GB/s, MPI GB/s, kiln/MPI. Bus bandwidth is bytes × 2(N−1)/N per second (the data each
 * rank must send and receive in any all-reduce, the convention of nccl-tests), so it is comparable
 * across rank counts. Both results are checked against each other each size. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "runtime/collectives.h"

static double time_one(kl_comm *c, float *buf, size_t n, int use_mpi, int iters) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int i = 0; i < iters; i++) {
        if (use_mpi)
            MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        else if (kl_comm_allreduce_sum(c, buf, n) != KL_OK) {
            fprintf(stderr, "kiln all-reduce: %s\n", kl_errmsg());
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }
    double t = MPI_Wtime() - t0;
    MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD); /* slowest rank */
    return t / iters;
}

/* Iterations to fill ~0.3 s (at least 20), agreed by all ranks. */
static int pick_iters(kl_comm *c, float *buf, size_t n, int use_mpi) {
    double once = time_one(c, buf, n, use_mpi, 3);
    int iters = once > 0 ? (int)(0.1 / once) : 1000;
    return iters < 20 ? 20 : iters > 100000 ? 100000 : iters;
}

int main(int argc, char **argv) {
    kl_comm *c;
    if (kl_comm_init(&c) != KL_OK) {
        fprintf(stderr, "allreduce_bench: %s\n", kl_errmsg());
        return 1;
    }
    int rank = kl_comm_rank(c), W = kl_comm_size(c);
    if (W < 2) {
        fprintf(stderr, "allreduce_bench: run it under mpirun -np 2 or more\n");
        kl_comm_free(c);
        return 2;
    }
    size_t sizes[64];
    int ns = 0;
    for (int i = 1; i < argc && ns < 64; i++)
        sizes[ns++] = strtoull(argv[i], NULL, 10);
    if (ns == 0) {
        for (size_t n = 1024; n <= (16u << 20); n *= 4)
            sizes[ns++] = n;
        sizes[ns++] = 784 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10; /* 535 818 */
    }
    if (rank == 0)
        printf("ranks %d\n%10s %12s %10s %10s %9s %9s %8s\n", W, "floats", "bytes", "kiln_us",
               "mpi_us", "kiln_GBs", "mpi_GBs", "ratio");
    const int rounds = 5;
    for (int s = 0; s < ns; s++) {
        size_t n = sizes[s];
        float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
        if (!a || !b) MPI_Abort(MPI_COMM_WORLD, 1);
        /* Integer values: both sums are exact whatever the order, so they must agree. */
        for (size_t i = 0; i < n; i++)
            a[i] = b[i] = (float)((i + (size_t)rank) % 7);
        kl_comm_allreduce_sum(c, a, n);
        MPI_Allreduce(MPI_IN_PLACE, b, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        if (memcmp(a, b, n * sizeof *a) != 0) {
            fprintf(stderr, "rank %d: kiln and MPI sums differ at %zu floats\n", rank, n);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        /* Rounds alternate the two, each keeping its best: the machine's drift hits both. */
        int ik = pick_iters(c, a, n, 0), im = pick_iters(c, b, n, 1);
        double tk = INFINITY, tm = INFINITY;
        for (int round = 0; round < rounds; round++) {
            double k = time_one(c, a, n, 0, ik), m = time_one(c, b, n, 1, im);
            tk = k < tk ? k : tk;
            tm = m < tm ? m : tm;
        }
        double bus = (double)n * sizeof(float) * 2.0 * (W - 1) / W;
        if (rank == 0)
            printf("%10zu %12zu %10.1f %10.1f %9.3f %9.3f %8.2f\n", n, n * sizeof(float), tk * 1e6,
                   tm * 1e6, bus / tk / 1e9, bus / tm / 1e9, tm / tk);
        free(a);
        free(b);
    }
    kl_comm_free(c);
    return 0;
}
