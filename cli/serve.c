/* serve.c — `kiln serve --model NAME=BUNDLE [--model ...] [--host H] [--port P] [--threads N]`:
 * answers the Open Inference Protocol (KServe v2 / Triton gRPC) for the given bundles until
 * SIGTERM or SIGINT, then stops accepting, lets in-flight calls finish and exits 0. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kernels/ops.h"         /* kl_cpu_set_threads */
#include "serving/grpc_server.h" /* the gRPC front end */
#include "serving/model_store.h" /* the models */

static void usage(FILE *f) {
    fprintf(f,
            "usage: kiln serve --model NAME=BUNDLE|NAME=models:/NAME@ALIAS [--model ...]\n"
            "                  [--host 127.0.0.1] [--port 8001] [--threads 2]\n"
            "                  [--max-message-mb 64] [--cpu-threads N]\n"
            "\n"
            "Serves classification bundles over gRPC, speaking the Open Inference Protocol\n"
            "(inference.GRPCInferenceService, as Triton does; tritonclient works unchanged)\n"
            "and grpc.health.v1.Health/Check. Each model takes one FP32 input [batch, features]\n"
            "and answers \"probabilities\" (FP32 [batch, classes]) and \"class\" (INT64 [batch]).\n"
            "--threads sets the completion-queue threads, --cpu-threads the BLAS/OpenMP\n"
            "threads of each inference (default 1). SIGTERM or SIGINT stops it cleanly.\n");
}

int kl_cmd_serve(int argc, char **argv) {
    kl_grpc_server_opts opts = kl_grpc_server_defaults();
    const char **models = calloc((size_t)argc, sizeof *models);
    int n_models = 0, cpu_threads = 1, rc = 1;
    if (!models) {
        fprintf(stderr, "kiln serve: out of memory\n");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            free(models);
            return 0;
        } else if (!strcmp(a, "--model") && has) {
            models[n_models++] = argv[++i];
        } else if (!strcmp(a, "--host") && has) {
            opts.host = argv[++i];
        } else if (!strcmp(a, "--port") && has) {
            opts.port = atoi(argv[++i]);
        } else if (!strcmp(a, "--threads") && has) {
            opts.threads = atoi(argv[++i]);
        } else if (!strcmp(a, "--cpu-threads") && has) {
            cpu_threads = atoi(argv[++i]);
        } else if (!strcmp(a, "--max-message-mb") && has) {
            int mb = atoi(argv[++i]);
            opts.max_message_bytes = mb > 0 && mb <= 2047 ? mb << 20 : -1;
        } else {
            fprintf(stderr, "kiln serve: unknown or incomplete option \"%s\"\n\n", a);
            usage(stderr);
            free(models);
            return 2;
        }
    }
    if (n_models == 0 || opts.threads < 1 || opts.max_message_bytes <= 0) {
        fprintf(stderr, "kiln serve: at least one --model NAME=BUNDLE is required (and --threads "
                        ">= 1, --max-message-mb in 1..2047)\n\n");
        usage(stderr);
        free(models);
        return 2;
    }
    /* Block the stop signals before any thread exists (gRPC's inherit the mask); the main
     * thread takes them with sigwait. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    kl_cpu_set_threads(cpu_threads);

    kl_model_store *store = NULL;
    kl_grpc_server *server = NULL;
    int port = 0;
    if (kl_model_store_create(&store) != KL_OK) goto fail;
    for (int i = 0; i < n_models; i++)
        if (kl_model_store_add(store, models[i]) != KL_OK) goto fail;
    if (kl_grpc_server_start(&opts, store, &server, &port) != KL_OK) goto fail;
    printf("serving %zu model(s) on %s:%d\n", kl_model_store_count(store), opts.host, port);
    fflush(stdout);
    int sig = 0;
    sigwait(&stop, &sig);
    fprintf(stderr, "kiln serve: %s: stopping (finishing in-flight calls)\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM");
    kl_grpc_server_stop(server);
    rc = 0;
    goto done;
fail:
    rc = kl_cli_fail("serve");
done:
    kl_model_store_free(store);
    free(models);
    return rc;
}
