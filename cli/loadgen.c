/* loadgen.c — `kiln loadgen --url HOST:PORT --model NAME [...]`: closed-loop load on any Open
 * Inference Protocol server over gRPC; prints throughput and latency percentiles.
 *
 * Closed loop: --concurrency N pool slots, each with one ModelInfer in flight; the completion
 * callback (on a completion-queue thread) records the latency and starts the slot's next call,
 * so N calls are always outstanding until the count or the duration is reached. Requests are
 * encoded once per distinct batch and sent from shared payloads; latencies go into an array
 * allocated up front. Per request this code does two clock reads, a few atomic adds and the
 * gRPC call itself.
 */
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h> /* the --json report */

#include "cli/cli.h"
#include "serving/grpc_client.h"      /* channels and the call pool */
#include "serving/oip_client_codec.h" /* ModelInfer messages */

#define N_CODES 17         /* gRPC status codes 0..16 */
#define MAX_PAYLOADS 256   /* distinct request batches encoded from a file */
#define RANDOM_PAYLOADS 16 /* distinct batches of random values */
#define MAX_CONNECTIONS 64 /* --connections upper bound */

/* Everything the completion callback touches; shared by the CQ threads. */
typedef struct {
    kl_grpc_pool *pool;          /* the call slots */
    kl_grpc_payload **payloads;  /* [n_payloads] encoded requests */
    int n_payloads;              /* distinct requests */
    int64_t timeout_ms;          /* per-call deadline */
    int64_t measure_ns;          /* calls started from here on are measured (after warmup) */
    int64_t end_ns;              /* duration mode: no call starts after, none counts after */
    int64_t count;               /* count mode: measured calls to make; 0 in duration mode */
    atomic_llong issued;         /* count mode: measured calls started */
    atomic_uint next_payload;    /* round-robin over payloads */
    int *counted;                /* [slots] whether the slot's current call is measured */
    int64_t *lat_ns;             /* [lat_cap] latencies of measured successes, preallocated */
    int64_t lat_cap;             /* capacity of lat_ns */
    atomic_llong n_ok;           /* measured successes (also the next lat_ns index) */
    atomic_llong fails[N_CODES]; /* measured failures by status code */
    atomic_llong last_end_ns;    /* latest end of a measured call */
    atomic_int start_failed;     /* a call could not be started */
    char first_failure[256];     /* the first failure's code and message, for the report */
    atomic_int have_failure;     /* first_failure is being or was written */
} loadgen;

static volatile sig_atomic_t interrupted; /* Ctrl-C: start no more calls */

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

/* Starts the next call on slot, or nothing once the run is over. */
static void launch(loadgen *g, int slot, int64_t now) {
    if (interrupted) return;
    int counted = 1;
    if (now < g->measure_ns) {
        counted = 0; /* warmup */
    } else if (g->count > 0) {
        if (atomic_fetch_add(&g->issued, 1) >= g->count) return;
    } else if (now >= g->end_ns) {
        return;
    }
    g->counted[slot] = counted;
    unsigned k = atomic_fetch_add(&g->next_payload, 1) % (unsigned)g->n_payloads;
    if (kl_grpc_pool_start(g->pool, slot, g->payloads[k], g->timeout_ms) != KL_OK) {
        if (counted) atomic_fetch_add(&g->fails[KL_GRPC_INTERNAL], 1);
        if (!atomic_exchange(&g->start_failed, 1))
            fprintf(stderr, "kiln loadgen: slot %d stops: %s\n", slot, kl_errmsg());
    }
}

static void on_done(void *user, int slot, const kl_grpc_completion *c) {
    loadgen *g = user;
    if (g->counted[slot] && (g->count > 0 || c->end_ns <= g->end_ns)) {
        if (c->code == KL_GRPC_OK) {
            long long i = atomic_fetch_add(&g->n_ok, 1);
            if (i < g->lat_cap) g->lat_ns[i] = c->end_ns - c->start_ns;
        } else {
            atomic_fetch_add(&g->fails[(int)c->code < N_CODES ? (int)c->code : 2], 1);
            if (!atomic_exchange(&g->have_failure, 1))
                snprintf(g->first_failure, sizeof g->first_failure, "%s: %s",
                         kl_grpc_code_name(c->code), c->message);
        }
        long long prev = atomic_load(&g->last_end_ns);
        while (prev < c->end_ns && !atomic_compare_exchange_weak(&g->last_end_ns, &prev, c->end_ns))
            ;
    }
    launch(g, slot, c->end_ns);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile q (0..1] of sorted v[0..n), in microseconds. */
static double pct_us(const int64_t *v, int64_t n, double q) {
    if (n == 0) return 0;
    int64_t k = (int64_t)ceil(q * (double)n) - 1;
    if (k < 0) k = 0;
    if (k >= n) k = n - 1;
    return (double)v[k] / 1000.0;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: kiln loadgen --url HOST:PORT --model NAME [--model-version V]\n"
            "                    [--concurrency 1] [--duration S | --count N] [--warmup S]\n"
            "                    [--batch-size 1] [--input FILE] [--json]\n"
            "                    [--threads 1] [--connections 1] [--timeout-ms 10000]\n"
            "                    [--input-name NAME] [--datatype FP32] [--shape D1,D2]\n"
            "                    [--label-column label] [--ca FILE] [--max-samples 4000000]\n"
            "\n"
            "Closed-loop load on any Open Inference Protocol server over gRPC: --concurrency N\n"
            "ModelInfer calls are always outstanding, for --duration seconds (default 10) or\n"
            "until --count calls are made, after --warmup seconds that are not measured. Rows\n"
            "come from FILE (IDX or CSV, as kiln infer reads them) or are random values of the\n"
            "shape ModelMetadata reports. Prints rows/s (infer/s), requests/s, latency\n"
            "p50/p90/p99/max in microseconds and failures by gRPC status; --json prints one JSON\n"
            "object instead. --threads sets the completion-queue threads, --connections the TCP\n"
            "connections the calls spread over. Exits 1 when no call succeeded.\n");
}

int kl_cmd_loadgen(int argc, char **argv) {
    const char *url = NULL, *model = NULL, *version = "", *input = NULL, *ca = NULL;
    const char *input_name = NULL, *datatype = NULL, *shape = NULL, *label_column = "label";
    double duration = 0, warmup = 0;
    long long count = 0, concurrency = 1, batch = 1, threads = 1, connections = 1;
    long long timeout_ms = 10000, max_samples = 4000000;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--url") && has) {
            url = argv[++i];
        } else if (!strcmp(a, "--model") && has) {
            model = argv[++i];
        } else if (!strcmp(a, "--model-version") && has) {
            version = argv[++i];
        } else if (!strcmp(a, "--concurrency") && has) {
            concurrency = atoll(argv[++i]);
        } else if (!strcmp(a, "--duration") && has) {
            duration = atof(argv[++i]);
        } else if (!strcmp(a, "--count") && has) {
            count = atoll(argv[++i]);
        } else if (!strcmp(a, "--warmup") && has) {
            warmup = atof(argv[++i]);
        } else if (!strcmp(a, "--batch-size") && has) {
            batch = atoll(argv[++i]);
        } else if (!strcmp(a, "--input") && has) {
            input = argv[++i];
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--threads") && has) {
            threads = atoll(argv[++i]);
        } else if (!strcmp(a, "--connections") && has) {
            connections = atoll(argv[++i]);
        } else if (!strcmp(a, "--timeout-ms") && has) {
            timeout_ms = atoll(argv[++i]);
        } else if (!strcmp(a, "--max-samples") && has) {
            max_samples = atoll(argv[++i]);
        } else if (!strcmp(a, "--input-name") && has) {
            input_name = argv[++i];
        } else if (!strcmp(a, "--datatype") && has) {
            datatype = argv[++i];
        } else if (!strcmp(a, "--shape") && has) {
            shape = argv[++i];
        } else if (!strcmp(a, "--label-column") && has) {
            label_column = argv[++i];
        } else if (!strcmp(a, "--ca") && has) {
            ca = argv[++i];
        } else {
            fprintf(stderr, "kiln loadgen: unknown or incomplete option \"%s\"\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!url || !model || concurrency < 1 || concurrency > 100000 || batch < 1 || threads < 1 ||
        threads > 256 || connections < 1 || connections > MAX_CONNECTIONS || count < 0 ||
        duration < 0 || warmup < 0 || timeout_ms < 0 || max_samples < 1 ||
        (count > 0 && duration > 0)) {
        fprintf(stderr, "kiln loadgen: --url and --model are required; --concurrency, "
                        "--batch-size, --threads, --connections (<= 64) >= 1; at most one of "
                        "--duration and --count\n\n");
        usage(stderr);
        return 2;
    }
    if (count == 0 && duration == 0) duration = 10;
    const char *target = strncmp(url, "grpc://", 7) ? url : url + 7;

    loadgen g;
    memset(&g, 0, sizeof g);
    kl_grpc_channel *chans[MAX_CONNECTIONS] = {0};
    float *x = NULL, *vals = NULL;
    int64_t n = 0, d = 0;
    int rc = 1;
    cJSON *rep = NULL;
    kl_cli_input in;
    uint8_t *probe_buf = NULL;
    size_t probe_len = 0;
    kl_grpc_channel_opts co = kl_grpc_channel_defaults();
    co.ca_file = ca;
    co.private_connection = connections > 1;

    if (input && kl_cli_read_rows(input, label_column, &x, &n, &d) != KL_OK) goto fail;
    for (int i = 0; i < connections; i++)
        if (kl_grpc_channel_create(target, &co, &chans[i]) != KL_OK) goto fail;
    if (kl_cli_resolve_input(chans[0], model, version, input_name, datatype, shape, d, timeout_ms,
                             &in) != KL_OK)
        goto fail;
    if (!in.batched && batch != 1) {
        kl_seterr(KL_EINVAL, "input \"%s\" has no batch dimension: --batch-size must be 1",
                  in.name);
        goto fail;
    }

    /* The distinct requests, each encoded once. */
    int64_t per_req = batch * in.row_values;
    g.n_payloads = input ? (int)((n + batch - 1) / batch) : RANDOM_PAYLOADS;
    if (g.n_payloads > MAX_PAYLOADS) g.n_payloads = MAX_PAYLOADS;
    g.payloads = calloc((size_t)g.n_payloads, sizeof *g.payloads);
    vals = malloc((size_t)per_req * sizeof *vals);
    if (!g.payloads || !vals) {
        kl_seterr(KL_ENOMEM, "requests of %lld values", (long long)per_req);
        goto fail;
    }
    int is_int = strncmp(in.datatype, "FP", 2) != 0;
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    for (int p = 0; p < g.n_payloads; p++) {
        for (int64_t r = 0; r < batch; r++) {
            float *row = vals + r * in.row_values;
            if (input) {
                memcpy(row, x + (((int64_t)p * batch + r) % n) * d,
                       (size_t)d * sizeof *row); /* wraps around the file */
            } else {
                for (int64_t j = 0; j < in.row_values; j++) {
                    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                    double u = (double)(rng >> 11) / 9007199254740992.0;
                    row[j] = is_int ? (float)floor(u * (strcmp(in.datatype, "BOOL") ? 100 : 2))
                                    : (float)u;
                }
            }
        }
        int64_t tshape[9];
        int nd = 0;
        if (in.batched) tshape[nd++] = batch;
        for (int k = 0; k < in.n_item_dims; k++)
            tshape[nd++] = in.item_shape[k];
        kl_oip_infer_input req = {model,  version, NULL, in.name, in.datatype,
                                  tshape, nd,      vals, NULL,    0};
        uint8_t *buf;
        size_t len;
        if (kl_oip_client_encode_infer(&req, &buf, &len) != KL_OK) goto fail;
        kl_status s = kl_grpc_payload_create(buf, len, &g.payloads[p]);
        if (p == 0) {
            probe_buf = buf, probe_len = len;
        } else {
            free(buf);
        }
        if (s != KL_OK) goto fail;
    }

    /* One call first: a wrong model or an unreachable server fails here, with its status. */
    {
        char what[512];
        snprintf(what, sizeof what, "ModelInfer \"%s\"", model);
        kl_grpc_reply reply;
        if (kl_cli_call(chans[0], KL_OIP_METHOD_MODEL_INFER, what, probe_buf, probe_len, timeout_ms,
                        &reply, NULL) != KL_OK)
            goto fail;
        kl_oip_response resp;
        kl_status s = kl_oip_client_decode_infer(reply.data, reply.len, &resp);
        kl_grpc_reply_free(&reply);
        if (s != KL_OK) {
            kl_preferr(s, "%s", what);
            goto fail;
        }
        kl_oip_response_free(&resp);
    }

    g.timeout_ms = timeout_ms;
    g.count = count;
    g.lat_cap = count > 0 && count < max_samples ? count : max_samples;
    g.lat_ns = malloc((size_t)g.lat_cap * sizeof *g.lat_ns);
    g.counted = calloc((size_t)concurrency, sizeof *g.counted);
    if (!g.lat_ns || !g.counted) {
        kl_seterr(KL_ENOMEM, "%lld latency samples", (long long)g.lat_cap);
        goto fail;
    }
    kl_grpc_pool_opts po = {(int)concurrency, (int)threads, on_done, &g};
    if (kl_grpc_pool_create(chans, (int)connections, KL_OIP_METHOD_MODEL_INFER, &po, &g.pool) !=
        KL_OK)
        goto fail;
    if (!json) {
        char plan[96];
        if (count)
            snprintf(plan, sizeof plan, "%lld calls", count);
        else
            snprintf(plan, sizeof plan, "%.1f s", duration);
        fprintf(stderr,
                "kiln loadgen: %s at %s, input \"%s\" %s, batch %lld, concurrency %lld, %s "
                "after %.1f s warmup\n",
                model, target, in.name, in.datatype, batch, concurrency, plan, warmup);
    }

    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old_sa);
    int64_t t0 = kl_grpc_now_ns();
    g.measure_ns = t0 + (int64_t)(warmup * 1e9);
    g.end_ns = count ? INT64_MAX : g.measure_ns + (int64_t)(duration * 1e9);
    for (int i = 0; i < concurrency; i++)
        launch(&g, i, t0);
    kl_grpc_pool_wait_idle(g.pool);
    int64_t t_end = kl_grpc_now_ns();
    sigaction(SIGINT, &old_sa, NULL);

    /* The report. */
    long long ok = atomic_load(&g.n_ok), failed = 0;
    for (int c = 0; c < N_CODES; c++)
        failed += atomic_load(&g.fails[c]);
    int64_t stop_ns = count ? atomic_load(&g.last_end_ns) : (t_end < g.end_ns ? t_end : g.end_ns);
    double elapsed = stop_ns > g.measure_ns ? (double)(stop_ns - g.measure_ns) / 1e9 : 0;
    int64_t samples = ok < g.lat_cap ? ok : g.lat_cap;
    qsort(g.lat_ns, (size_t)samples, sizeof *g.lat_ns, cmp_i64);
    double mean = 0;
    for (int64_t i = 0; i < samples; i++)
        mean += (double)g.lat_ns[i];
    mean = samples ? mean / (double)samples / 1000.0 : 0;
    double rps = elapsed > 0 ? (double)ok / elapsed : 0;
    double p50 = pct_us(g.lat_ns, samples, 0.50), p90 = pct_us(g.lat_ns, samples, 0.90);
    double p99 = pct_us(g.lat_ns, samples, 0.99), pmax = pct_us(g.lat_ns, samples, 1.0);
    if (json) {
        rep = cJSON_CreateObject();
        cJSON *lat = cJSON_CreateObject(), *fails = cJSON_CreateObject();
        if (!rep || !lat || !fails) {
            cJSON_Delete(lat);
            cJSON_Delete(fails);
            kl_seterr(KL_ENOMEM, "the JSON report");
            goto fail;
        }
        cJSON_AddStringToObject(rep, "url", target);
        cJSON_AddStringToObject(rep, "model", model);
        cJSON_AddStringToObject(rep, "input", in.name);
        cJSON_AddStringToObject(rep, "datatype", in.datatype);
        cJSON_AddNumberToObject(rep, "concurrency", (double)concurrency);
        cJSON_AddNumberToObject(rep, "batch_size", (double)batch);
        cJSON_AddNumberToObject(rep, "warmup_s", warmup);
        cJSON_AddNumberToObject(rep, "elapsed_s", elapsed);
        cJSON_AddNumberToObject(rep, "requests", (double)(ok + failed));
        cJSON_AddNumberToObject(rep, "successes", (double)ok);
        cJSON_AddNumberToObject(rep, "failures", (double)failed);
        for (int c = 0; c < N_CODES; c++)
            if (atomic_load(&g.fails[c]))
                cJSON_AddNumberToObject(fails, kl_grpc_code_name((kl_grpc_code)c),
                                        (double)atomic_load(&g.fails[c]));
        cJSON_AddItemToObject(rep, "failures_by_code", fails);
        cJSON_AddNumberToObject(rep, "infer_per_s", rps * (double)batch);
        cJSON_AddNumberToObject(rep, "requests_per_s", rps);
        cJSON_AddNumberToObject(lat, "p50", p50);
        cJSON_AddNumberToObject(lat, "p90", p90);
        cJSON_AddNumberToObject(lat, "p99", p99);
        cJSON_AddNumberToObject(lat, "max", pmax);
        cJSON_AddNumberToObject(lat, "mean", mean);
        cJSON_AddNumberToObject(lat, "samples", (double)samples);
        cJSON_AddItemToObject(rep, "latency_us", lat);
        if (atomic_load(&g.have_failure))
            cJSON_AddStringToObject(rep, "first_failure", g.first_failure);
        char *text = cJSON_PrintUnformatted(rep);
        if (!text) {
            kl_seterr(KL_ENOMEM, "the JSON report");
            goto fail;
        }
        printf("%s\n", text);
        cJSON_free(text);
    } else {
        printf("requests:    %lld in %.3f s (%lld succeeded, %lld failed)%s\n", ok + failed,
               elapsed, ok, failed, interrupted ? " [interrupted]" : "");
        printf("throughput:  %.1f infer/s, %.1f requests/s (batch %lld, concurrency %lld)\n",
               rps * (double)batch, rps, batch, concurrency);
        printf("latency us:  p50 %.0f  p90 %.0f  p99 %.0f  max %.0f  mean %.0f", p50, p90, p99,
               pmax, mean);
        if (samples < ok) printf("  (first %lld samples)", (long long)samples);
        printf("\n");
        if (failed) {
            printf("failures:   ");
            for (int c = 0; c < N_CODES; c++)
                if (atomic_load(&g.fails[c]))
                    printf(" %s %lld", kl_grpc_code_name((kl_grpc_code)c),
                           (long long)atomic_load(&g.fails[c]));
            printf("\n");
            if (atomic_load(&g.have_failure)) printf("first:       %s\n", g.first_failure);
        }
    }
    fflush(stdout);
    if (ok == 0) {
        kl_seterr(KL_EIO, "no call succeeded%s%s", atomic_load(&g.have_failure) ? ": " : "",
                  atomic_load(&g.have_failure) ? g.first_failure : "");
        goto fail;
    }
    rc = 0;
    goto done;
fail:
    rc = kl_cli_fail("loadgen");
done:
    cJSON_Delete(rep);
    kl_grpc_pool_free(g.pool);
    for (int p = 0; g.payloads && p < g.n_payloads; p++)
        kl_grpc_payload_free(g.payloads[p]);
    free(g.payloads);
    for (int i = 0; i < MAX_CONNECTIONS; i++)
        kl_grpc_channel_free(chans[i]);
    free(g.lat_ns);
    free(g.counted);
    free(probe_buf);
    free(vals);
    free(x);
    return rc;
}
