/* test_cuda_ops.c — every CUDA op against its CPU twin on the same random inputs at several
 * shapes (printing the worst absolute and relative error against the tolerance), a captured
 * step graph against the same step run op by op, and GPU training against CPU training from
 * the same weights, and NCCL on one rank. Without a GPU the whole test reports "skipped" to
 * ctest (exit 77). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "kernels/cuda_api.h"
#include "runtime/model.h"
#include "runtime/optimizer.h"

static const kl_ops *cpu, *gpu;
static void *ctx;    /* FP32 context */
static void *ctx_tf; /* TF32 context */
static void *ctx_bf; /* BF16 context */

static float *frand(int64_t n, uint64_t seed, float amp) {
    float *p = malloc((size_t)(n ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        p[i] = (2.0f * kl_rand_uniform(seed, (uint64_t)i) - 1.0f) * amp;
    return p;
}

static void *dev(const void *host, size_t bytes) {
    void *d = NULL;
    assert_int_equal(kl_cuda_malloc(0, bytes ? bytes : 4, &d), KL_OK);
    if (host) assert_int_equal(kl_cuda_memcpy(0, d, host, bytes, 1), KL_OK);
    return d;
}

static float *back(const float *d, int64_t n) {
    float *h = malloc((size_t)(n ? n : 1) * sizeof(float));
    assert_int_equal(gpu->sync(ctx), KL_OK);
    assert_int_equal(kl_cuda_memcpy(0, h, d, (size_t)n * sizeof(float), 0), KL_OK);
    return h;
}

/* Prints and checks |got - want| <= atol + rtol |want| element-wise. */
static void compare(const char *what, const float *got, const float *want, int64_t n, double atol,
                    double rtol) {
    double max_abs = 0, max_rel = 0;
    int64_t bad = -1;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        double r = e / (fabs((double)want[i]) + 1e-30);
        if (e > max_abs) max_abs = e;
        if (r > max_rel && fabs(want[i]) > 1e-6) max_rel = r;
        if (!(e <= atol + rtol * fabs(want[i])) && bad < 0) bad = i;
    }
    printf("  %-44s max abs %.3g  max rel %.3g  (tol %.1g + %.1g|x|)%s\n", what, max_abs, max_rel,
           atol, rtol, bad >= 0 ? "  FAIL" : "");
    if (bad >= 0)
        fail_msg("%s: element %lld: cuda %.9g, cpu %.9g", what, (long long)bad, (double)got[bad],
                 (double)want[bad]);
}

static void test_gemm(void **state) {
    (void)state;
    static const int shapes[][3] = {{1, 1, 1}, {7, 13, 5}, {33, 17, 65}, {256, 512, 784}};
    void *ctxs[3] = {ctx, ctx_tf, ctx_bf};
    const char *names[3] = {"fp32", "tf32", "bf16"};
    const double rtol[3] = {1e-4, 5e-3, 3e-2};
    for (int pi = 0; pi < 3; pi++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++) {
                    int m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
                    float *a = frand((int64_t)m * k, 1, 1), *b = frand((int64_t)k * n, 2, 1);
                    float *c = frand((int64_t)m * n, 3, 1);
                    float *da = dev(a, sizeof(float) * m * k), *db = dev(b, sizeof(float) * k * n);
                    float *dc = dev(c, sizeof(float) * m * n);
                    int lda = ta ? m : k, ldb = tb ? k : n;
                    cpu->gemm(NULL, ta, tb, m, n, k, 0.5f, a, lda, b, ldb, 0.25f, c, n);
                    gpu->gemm(ctxs[pi], ta, tb, m, n, k, 0.5f, da, lda, db, ldb, 0.25f, dc, n);
                    assert_int_equal(gpu->sync(ctxs[pi]), KL_OK);
                    float *g = back(dc, (int64_t)m * n);
                    char what[96];
                    snprintf(what, sizeof what, "gemm %s %dx%dx%d ta=%d tb=%d", names[pi], m, n, k,
                             ta, tb);
                    compare(what, g, c, (int64_t)m * n, 1e-5 * sqrt(k) * (pi ? 30 : 1), rtol[pi]);
                    free(a), free(b), free(c), free(g);
                    kl_cuda_free(0, da), kl_cuda_free(0, db), kl_cuda_free(0, dc);
                }
}

static void test_linear_and_activations(void **state) {
    (void)state;
    static const int shapes[][3] = {{1, 1, 1}, {5, 7, 3}, {256, 512, 784}, {37, 10, 256}};
    for (int act = 0; act < KL_ACT_COUNT; act++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            int m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
            int64_t mn = (int64_t)m * n;
            float *x = frand((int64_t)m * k, 4, 1), *w = frand((int64_t)n * k, 5, 0.2f);
            float *b = frand(n, 6, 0.5f), *dy = frand(mn, 7, 1);
            float *z = malloc(sizeof(float) * mn), *y = malloc(sizeof(float) * mn);
            float *dz = malloc(sizeof(float) * mn), *dbias = malloc(sizeof(float) * n);
            float *dx_ = dev(x, sizeof(float) * m * k), *dw = dev(w, sizeof(float) * n * k);
            float *db = dev(b, sizeof(float) * n), *ddy = dev(dy, sizeof(float) * mn);
            float *dz_ = dev(NULL, sizeof(float) * mn), *dy_ = dev(NULL, sizeof(float) * mn);
            float *ddz = dev(NULL, sizeof(float) * mn), *ddb = dev(NULL, sizeof(float) * n);
            float *yout = act == KL_ACT_IDENTITY ? z : y,
                  *dyout = act == KL_ACT_IDENTITY ? dz_ : dy_;
            cpu->linear_forward(NULL, m, n, k, x, w, b, (kl_act)act, z, yout);
            gpu->linear_forward(ctx, m, n, k, dx_, dw, db, (kl_act)act, dz_, dyout);
            char what[96];
            snprintf(what, sizeof what, "linear_forward %s %dx%dx%d y", kl_act_name((kl_act)act), m,
                     n, k);
            float *gy = back(dyout, mn);
            compare(what, gy, yout, mn, 1e-5 * sqrt(k), 1e-4);
            if (act != KL_ACT_RELU) { /* ReLU's pre-activation is not kept on the GPU */
                float *gz = back(dz_, mn);
                snprintf(what, sizeof what, "linear_forward %s %dx%dx%d z",
                         kl_act_name((kl_act)act), m, n, k);
                compare(what, gz, z, mn, 1e-5 * sqrt(k), 1e-4);
                free(gz);
            }
            /* backward from the CPU's forward values on both sides, so only the op differs */
            float *dz_in = dev(z, sizeof(float) * mn), *dy_in = dev(yout, sizeof(float) * mn);
            cpu->bias_act_backward(NULL, m, n, (kl_act)act, z, yout, dy, dz, dbias);
            gpu->bias_act_backward(ctx, m, n, (kl_act)act, dz_in, dy_in, ddy, ddz, ddb);
            float *gdz = back(ddz, mn), *gdb = back(ddb, n);
            snprintf(what, sizeof what, "bias_act_backward %s %dx%d dz", kl_act_name((kl_act)act),
                     m, n);
            compare(what, gdz, dz, mn, 1e-6, 1e-5);
            snprintf(what, sizeof what, "bias_act_backward %s %dx%d dbias",
                     kl_act_name((kl_act)act), m, n);
            compare(what, gdb, dbias, n, 1e-5 * sqrt(m), 1e-4);
            free(x), free(w), free(b), free(dy), free(z), free(y), free(dz), free(dbias);
            free(gy), free(gdz), free(gdb);
            float *ds[] = {dx_, dw, db, ddy, dz_, dy_, ddz, ddb, dz_in, dy_in};
            for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++)
                kl_cuda_free(0, ds[i]);
        }
}

static void test_losses(void **state) {
    (void)state;
    static const int shapes[][2] = {{1, 2}, {37, 10}, {256, 10}, {9, 1001}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int m = shapes[si][0], n = shapes[si][1];
        int64_t mn = (int64_t)m * n;
        float *l = frand(mn, 8, si == 2 ? 50.0f : 4.0f), *t = frand(mn, 9, 1);
        int32_t *lab = malloc(sizeof(int32_t) * m);
        for (int i = 0; i < m; i++)
            lab[i] = (i * 7 + 3) % n;
        float *p = malloc(sizeof(float) * mn), *rl = malloc(sizeof(float) * m);
        float *dl = malloc(sizeof(float) * mn);
        float *dlog = dev(l, sizeof(float) * mn), *dp = dev(NULL, sizeof(float) * mn);
        float *drl = dev(NULL, sizeof(float) * m), *ddl = dev(NULL, sizeof(float) * mn);
        int32_t *dlab = dev(lab, sizeof(int32_t) * m);
        cpu->softmax_xent(NULL, m, n, l, lab, p, rl, dl, 1.0f / m);
        gpu->softmax_xent(ctx, m, n, dlog, dlab, dp, drl, ddl, 1.0f / m);
        char what[96];
        float *g = back(dp, mn);
        snprintf(what, sizeof what, "softmax_xent %dx%d probs", m, n);
        compare(what, g, p, mn, 1e-7, 1e-5);
        free(g);
        g = back(drl, m);
        snprintf(what, sizeof what, "softmax_xent %dx%d row loss", m, n);
        compare(what, g, rl, m, 1e-6, 1e-5);
        free(g);
        g = back(ddl, mn);
        snprintf(what, sizeof what, "softmax_xent %dx%d dlogits", m, n);
        compare(what, g, dl, mn, 1e-8, 1e-5);
        free(g);
        /* MSE and the loss mean */
        float *dt = dev(t, sizeof(float) * mn);
        cpu->mse(NULL, m, n, l, t, rl, dl, 1.0f / m);
        gpu->mse(ctx, m, n, dlog, dt, drl, ddl, 1.0f / m);
        g = back(drl, m);
        snprintf(what, sizeof what, "mse %dx%d row loss", m, n);
        compare(what, g, rl, m, 1e-6, 1e-6);
        free(g);
        g = back(ddl, mn);
        snprintf(what, sizeof what, "mse %dx%d dpred", m, n);
        compare(what, g, dl, mn, 1e-8, 1e-6);
        free(g);
        float *host_mean = NULL, cpu_mean = 0;
        assert_int_equal(kl_cuda_host_alloc(sizeof(float), (void **)&host_mean), KL_OK);
        cpu->mean_to_host(NULL, m, rl, &cpu_mean);
        gpu->mean_to_host(ctx, m, drl, host_mean);
        assert_int_equal(gpu->sync(ctx), KL_OK);
        snprintf(what, sizeof what, "mean_to_host %d", m);
        compare(what, host_mean, &cpu_mean, 1, 1e-7, 1e-6);
        kl_cuda_host_free(host_mean);
        free(l), free(t), free(lab), free(p), free(rl), free(dl);
        kl_cuda_free(0, dlog), kl_cuda_free(0, dp), kl_cuda_free(0, drl), kl_cuda_free(0, ddl);
        kl_cuda_free(0, dlab), kl_cuda_free(0, dt);
    }
}

static void test_elementwise_and_optimizers(void **state) {
    (void)state;
    static const int64_t sizes[] = {1, 1000, 535818};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int64_t n = sizes[si];
        char what[96];
        float *x = frand(n, 10, 1), *y = malloc(sizeof(float) * n);
        float *dx = dev(x, sizeof(float) * n), *dy = dev(NULL, sizeof(float) * n);
        cpu->dropout_forward(NULL, n, 0.3f, 77, x, y);
        gpu->dropout_forward(ctx, n, 0.3f, 77, dx, dy);
        float *g = back(dy, n);
        snprintf(what, sizeof what, "dropout %lld (bitwise)", (long long)n);
        compare(what, g, y, n, 0, 0);
        free(g);
        /* AdamW and SGD for 3 steps from the same state */
        float *p = frand(n, 11, 1), *m = calloc((size_t)n, 4), *v = calloc((size_t)n, 4);
        float *dp = dev(p, 4 * n), *dm = dev(m, 4 * n), *dv = dev(v, 4 * n);
        for (int t = 1; t <= 3; t++) {
            float *gr = frand(n, 20 + t, 0.1f);
            float *dgr = dev(gr, 4 * n);
            kl_adamw_coeffs co = kl_adamw_coeffs_for(1e-3, 0.9, 0.999, 1e-8, 0.01, t);
            cpu->adamw(NULL, n, p, gr, m, v, &co);
            gpu->adamw(ctx, n, dp, dgr, dm, dv, &co);
            assert_int_equal(gpu->sync(ctx), KL_OK);
            free(gr), kl_cuda_free(0, dgr);
        }
        g = back(dp, n);
        snprintf(what, sizeof what, "adamw %lld params after 3 steps", (long long)n);
        compare(what, g, p, n, 1e-7, 1e-6);
        free(g);
        memset(m, 0, 4 * n);
        kl_cuda_memset0(0, dm, 4 * n);
        for (int t = 1; t <= 3; t++) {
            float *gr = frand(n, 30 + t, 0.1f);
            float *dgr = dev(gr, 4 * n);
            cpu->sgd(NULL, n, p, gr, m, 0.05f, 0.9f, 1e-4f, t == 2);
            gpu->sgd(ctx, n, dp, dgr, dm, 0.05f, 0.9f, 1e-4f, t == 2);
            assert_int_equal(gpu->sync(ctx), KL_OK);
            free(gr), kl_cuda_free(0, dgr);
        }
        g = back(dp, n);
        snprintf(what, sizeof what, "sgd %lld params after 3 steps", (long long)n);
        compare(what, g, p, n, 1e-7, 1e-6);
        free(g);
        /* sums of squares and clipping */
        double cs = cpu->sumsq(NULL, n, x), gs = gpu->sumsq(ctx, n, dx);
        float csf = (float)cs, gsf = (float)gs;
        snprintf(what, sizeof what, "sumsq %lld", (long long)n);
        compare(what, &gsf, &csf, 1, 0, 1e-6);
        float *cn = NULL, cnorm = 0;
        assert_int_equal(kl_cuda_host_alloc(sizeof(float), (void **)&cn), KL_OK);
        cpu->clip_grad_norm(NULL, n, x, 0.5f, &cnorm);
        gpu->clip_grad_norm(ctx, n, dx, 0.5f, cn);
        assert_int_equal(gpu->sync(ctx), KL_OK);
        snprintf(what, sizeof what, "clip_grad_norm %lld norm", (long long)n);
        compare(what, cn, &cnorm, 1, 0, 1e-6);
        g = back(dx, n);
        snprintf(what, sizeof what, "clip_grad_norm %lld clipped values", (long long)n);
        compare(what, g, x, n, 1e-8, 1e-6);
        free(g);
        kl_cuda_host_free(cn);
        free(x), free(y), free(p), free(m), free(v);
        kl_cuda_free(0, dx), kl_cuda_free(0, dy), kl_cuda_free(0, dp), kl_cuda_free(0, dm);
        kl_cuda_free(0, dv);
    }
    /* column sums, tall and wide */
    static const int cs[][2] = {{1, 1}, {300, 7}, {8192, 4096}, {5, 20000}};
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        int m = cs[i][0], n = cs[i][1];
        float *s = frand((int64_t)m * n, 40, 1), *d = malloc(sizeof(float) * n);
        float *ds = dev(s, sizeof(float) * m * n), *dd = dev(NULL, sizeof(float) * n);
        cpu->colsum(NULL, m, n, s, d);
        gpu->colsum(ctx, m, n, ds, dd);
        float *g = back(dd, n);
        char what[64];
        snprintf(what, sizeof what, "colsum %dx%d", m, n);
        compare(what, g, d, n, 1e-5 * sqrt(m), 1e-4);
        free(s), free(d), free(g), kl_cuda_free(0, ds), kl_cuda_free(0, dd);
    }
}

/* One full training step on a CUDA model, run op by op, then the same step captured and
 * replayed: identical kernels in identical order must give identical bits, also when the
 * replayed step's scalars (dropout seed, learning rate, AdamW's t) change. */
static void test_step_graph_matches_eager(void **state) {
    (void)state;
    kl_mlp_spec spec = {0};
    kl_mlp_parse_layers("64-128-32-10", &spec);
    spec.act = KL_ACT_GELU;
    spec.dropout = 0.2f;
    kl_device d = {KL_DEV_CUDA, 0};
    int B = 32;
    kl_mlp a, b;
    assert_int_equal(kl_mlp_create(&a, &spec, d, B, KL_PREC_FP32), KL_OK);
    assert_int_equal(kl_mlp_create(&b, &spec, d, B, KL_PREC_FP32), KL_OK);
    kl_mlp_init_params(&a, 3);
    kl_mlp_init_params(&b, 3);
    kl_optim_spec os = {.kind = KL_OPTIM_ADAMW,
                        .beta1 = 0.9,
                        .beta2 = 0.999,
                        .eps = 1e-8,
                        .weight_decay = 0.01,
                        .clip_norm = 1.0};
    kl_optimizer oa, ob;
    kl_optimizer_create(&oa, &os, &a);
    kl_optimizer_create(&ob, &os, &b);
    float *x = frand(B * 64, 50, 1);
    int32_t lab[32];
    for (int i = 0; i < B; i++)
        lab[i] = i % 10;
    float *dx = dev(x, sizeof(float) * B * 64);
    int32_t *dl = dev(lab, sizeof lab);
    for (int step = 0; step < 4; step++) {
        double lr = 1e-3 * (step + 1);
        uint64_t seed = 1000 + step;
        /* eager */
        assert_int_equal(kl_mlp_forward(&a, dx, B, 1, seed), KL_OK);
        assert_int_equal(kl_mlp_loss(&a, B, dl, NULL, 1.0f / B, 1, NULL), KL_OK);
        assert_int_equal(kl_mlp_backward(&a, dx, B, seed), KL_OK);
        assert_int_equal(kl_optimizer_step(&oa, &a, lr, NULL), KL_OK);
        double la, lb;
        assert_int_equal(kl_mlp_sync_loss(&a, &la), KL_OK);
        /* graph: captured at step 0, replayed after */
        const kl_ops *g = b.ops;
        if (step == 0)
            assert_int_equal(g->capture_begin(b.ops_ctx, 0), KL_OK);
        else
            assert_int_equal(g->replay_begin(b.ops_ctx, 0), KL_OK);
        assert_int_equal(kl_mlp_forward(&b, dx, B, 1, seed), KL_OK);
        assert_int_equal(kl_mlp_loss(&b, B, dl, NULL, 1.0f / B, 1, NULL), KL_OK);
        assert_int_equal(kl_mlp_backward(&b, dx, B, seed), KL_OK);
        assert_int_equal(kl_optimizer_step(&ob, &b, lr, NULL), KL_OK);
        if (step == 0) assert_int_equal(g->capture_end(b.ops_ctx, 0), KL_OK);
        assert_int_equal(g->replay_launch(b.ops_ctx, 0), KL_OK);
        assert_int_equal(kl_mlp_sync_loss(&b, &lb), KL_OK);
        float *pa = back(a.params, a.n_params), *pb = back(b.params, b.n_params);
        char what[64];
        snprintf(what, sizeof what, "graph step %d params (bitwise)", step);
        compare(what, pb, pa, a.n_params, 0, 0);
        printf("  graph step %d loss eager %.9g graph %.9g\n", step, la, lb);
        assert_true(la == lb);
        free(pa), free(pb);
    }
    free(x), kl_cuda_free(0, dx), kl_cuda_free(0, dl);
    kl_optimizer_free(&oa), kl_optimizer_free(&ob);
    kl_mlp_free(&a), kl_mlp_free(&b);
}

/* 30 AdamW steps of 784-128-10 on the GPU and on the CPU from the same weights and batches:
 * the loss curves agree within FP32 rounding. */
static void test_gpu_training_tracks_cpu(void **state) {
    (void)state;
    kl_mlp_spec spec = {0};
    kl_mlp_parse_layers("784-128-10", &spec);
    spec.act = KL_ACT_RELU;
    int B = 64;
    kl_mlp c, g;
    assert_int_equal(kl_mlp_create(&c, &spec, kl_cpu(), B, KL_PREC_FP32), KL_OK);
    kl_device d = {KL_DEV_CUDA, 0};
    assert_int_equal(kl_mlp_create(&g, &spec, d, B, KL_PREC_FP32), KL_OK);
    kl_mlp_init_params(&c, 9);
    kl_mlp_init_params(&g, 9);
    kl_optim_spec os = {
        .kind = KL_OPTIM_ADAMW, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
    kl_optimizer oc, og;
    kl_optimizer_create(&oc, &os, &c);
    kl_optimizer_create(&og, &os, &g);
    double worst = 0;
    for (int step = 0; step < 30; step++) {
        float *x = frand(B * 784, 100 + step, 1);
        int32_t lab[64];
        for (int i = 0; i < B; i++)
            lab[i] = (i * 3 + step) % 10;
        float *dx = dev(x, sizeof(float) * B * 784);
        int32_t *dl = dev(lab, sizeof lab);
        double lc, lg;
        kl_mlp_forward(&c, x, B, 1, step);
        kl_mlp_loss(&c, B, lab, NULL, 1.0f / B, 1, &lc);
        kl_mlp_backward(&c, x, B, step);
        kl_optimizer_step(&oc, &c, 1e-3, NULL);
        kl_mlp_forward(&g, dx, B, 1, step);
        kl_mlp_loss(&g, B, dl, NULL, 1.0f / B, 1, NULL);
        kl_mlp_backward(&g, dx, B, step);
        kl_optimizer_step(&og, &g, 1e-3, NULL);
        assert_int_equal(kl_mlp_sync_loss(&g, &lg), KL_OK);
        double e = fabs(lc - lg);
        worst = e > worst ? e : worst;
        if (e > 1e-4 * (1 + fabs(lc)))
            fail_msg("step %d: cpu loss %.9g, gpu loss %.9g", step, lc, lg);
        free(x), kl_cuda_free(0, dx), kl_cuda_free(0, dl);
    }
    printf("  gpu vs cpu training, 30 AdamW steps: max loss difference %.3g (tol 1e-4 rel)\n",
           worst);
    kl_optimizer_free(&oc), kl_optimizer_free(&og);
    kl_mlp_free(&c), kl_mlp_free(&g);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* NCCL on one rank: a job of one joins at once, its all-reduce sum leaves the buffer as it was
 * (bit for bit) and its broadcast from rank 0 too; bad arguments are refused without touching
 * the communicator. Skipped when the build has no NCCL. */
static void test_nccl_one_rank(void **state) {
    (void)state;
    unsigned char id[KL_NCCL_ID_BYTES];
    kl_status s = kl_nccl_unique_id(id);
    if (s == KL_EUNSUPPORTED) {
        printf("  nccl: SKIPPED: %s\n", kl_errmsg());
        skip();
    }
    if (s != KL_OK) fail_msg("kl_nccl_unique_id: %s", kl_errmsg());
    void *comm = NULL;
    assert_int_equal(kl_nccl_init(0, 1, 1, id, 30, &comm), KL_EINVAL);
    assert_null(comm);
    double t0 = now_s();
    if (kl_nccl_init(0, 1, 0, id, 30, &comm) != KL_OK) fail_msg("kl_nccl_init: %s", kl_errmsg());
    printf("  nccl: one-rank communicator joined in %.3f s\n", now_s() - t0);

    const int64_t n = (1 << 20) + 3; /* not a multiple of any chunk size */
    float *x = frand(n, 21, 1);
    float *d = dev(x, sizeof(float) * n);
    t0 = now_s();
    if (kl_nccl_allreduce_sum(comm, ctx, d, (size_t)n, 30) != KL_OK)
        fail_msg("kl_nccl_allreduce_sum: %s", kl_errmsg());
    double dt = now_s() - t0;
    assert_int_equal(kl_nccl_allreduce_sum(comm, ctx, d, 0, 30), KL_OK);
    float *g = back(d, n);
    compare("nccl all-reduce sum, 1 rank (exact)", g, x, n, 0, 0);
    printf("  nccl: all-reduce of %lld floats took %.3f ms (first call)\n", (long long)n, dt * 1e3);

    unsigned char bytes[1000], got[1000];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (unsigned char)(i * 7 + 3);
    void *db = dev(bytes, sizeof bytes);
    if (kl_nccl_broadcast(comm, ctx, db, sizeof bytes, 0, 30) != KL_OK)
        fail_msg("kl_nccl_broadcast: %s", kl_errmsg());
    assert_int_equal(kl_nccl_broadcast(comm, ctx, db, sizeof bytes, 1, 30), KL_EINVAL);
    assert_int_equal(kl_cuda_memcpy(0, got, db, sizeof got, 0), KL_OK);
    assert_memory_equal(got, bytes, sizeof bytes);
    printf("  nccl: broadcast of %zu bytes from rank 0: equal\n", sizeof bytes);

    /* Still usable after the refused call. */
    if (kl_nccl_allreduce_sum(comm, ctx, d, (size_t)n, 30) != KL_OK)
        fail_msg("kl_nccl_allreduce_sum (again): %s", kl_errmsg());
    kl_nccl_free(comm);
    kl_nccl_free(NULL);
    free(x), free(g), kl_cuda_free(0, d), kl_cuda_free(0, db);
}

int main(void) {
    int n = kl_cuda_device_count();
    if (n <= 0) {
        printf("test_cuda_ops: SKIPPED: %s\n",
               n < 0 ? "this build has no CUDA backend" : "no CUDA device is visible");
        return 77; /* ctest's SKIP_RETURN_CODE */
    }
    kl_cpu_set_threads(0);
    cpu = kl_ops_cpu();
    gpu = kl_ops_cuda();
    if (kl_cuda_ctx_create(0, KL_PREC_FP32, &ctx) || kl_cuda_ctx_create(0, KL_PREC_TF32, &ctx_tf) ||
        kl_cuda_ctx_create(0, KL_PREC_BF16, &ctx_bf)) {
        printf("test_cuda_ops: cannot create a CUDA context: %s\n", kl_errmsg());
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_linear_and_activations),
        cmocka_unit_test(test_losses),
        cmocka_unit_test(test_elementwise_and_optimizers),
        cmocka_unit_test(test_step_graph_matches_eager),
        cmocka_unit_test(test_gpu_training_tracks_cpu),
        cmocka_unit_test(test_nccl_one_rank),
    };
    /* KILN_TEST_FILTER="*nccl*" runs only the matching tests (scripts/gpu-check's nccl stage). */
    const char *only = getenv("KILN_TEST_FILTER");
    if (only && *only) cmocka_set_test_filter(only);
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    kl_cuda_ctx_free(ctx), kl_cuda_ctx_free(ctx_tf), kl_cuda_ctx_free(ctx_bf);
    return failed ? 1 : 0;
}
