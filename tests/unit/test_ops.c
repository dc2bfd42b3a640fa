/* test_ops.c — every op of every available backend against a float64 reference, with
 * finite-difference checks of each backward, at several shapes including odd sizes. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/unit/reference_math.h"
#include "kernels/ops.h"

static const kl_ops *ops;

static double rnd(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static float *frand(int64_t n, uint64_t seed, double amp) {
    float *p = malloc((size_t)n * sizeof(float));
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)(rnd(&s) * amp);
    return p;
}

/* |a-b| <= atol + rtol*|b| for every element, with a report of the worst one. */
static void assert_close(const float *a, const double *b, int64_t n, double atol, double rtol,
                         const char *what) {
    int64_t worst = -1;
    double worst_excess = 0;
    for (int64_t i = 0; i < n; i++) {
        double err = fabs((double)a[i] - b[i]);
        double lim = atol + rtol * fabs(b[i]);
        if (!(err <= lim) && (worst < 0 || err - lim > worst_excess)) {
            worst = i;
            worst_excess = err - lim;
        }
    }
    if (worst >= 0)
        fail_msg("%s: element %lld: got %.9g expected %.9g", what, (long long)worst,
                 (double)a[worst], b[worst]);
}

/* ------------------------------------------------------------------------------------------ */
static void test_gemm(void **state) {
    (void)state;
    static const int shapes[][3] = {{1, 1, 1}, {7, 13, 5}, {33, 17, 65}, {64, 128, 96}, {3, 1, 9}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                int m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
                float *a = frand((int64_t)m * k, 1 + si, 1.0);
                float *b = frand((int64_t)k * n, 2 + si, 1.0);
                float *c = frand((int64_t)m * n, 3 + si, 1.0);
                double *ref = malloc(sizeof(double) * m * n);
                float alpha = 0.75f, beta = 0.5f;
                int lda = ta ? m : k, ldb = tb ? k : n;
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++) {
                        double acc = 0;
                        for (int p = 0; p < k; p++) {
                            double av = ta ? a[p * lda + i] : a[i * lda + p];
                            double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
                            acc += av * bv;
                        }
                        ref[i * n + j] = alpha * acc + beta * c[i * n + j];
                    }
                ops->gemm(NULL, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, n);
                char what[64];
                snprintf(what, sizeof what, "gemm %dx%dx%d ta=%d tb=%d", m, n, k, ta, tb);
                assert_close(c, ref, (int64_t)m * n, 1e-5, 1e-5 * k, what);
                free(a), free(b), free(c), free(ref);
            }
}

/* ------------------------------------------------------------------------------------------ */
static void test_bias_act(void **state) {
    (void)state;
    static const int shapes[][2] = {{1, 1}, {5, 3}, {17, 31}, {300, 129}};
    for (int act = 0; act < KL_ACT_COUNT; act++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            int m = shapes[si][0], n = shapes[si][1];
            int64_t mn = (int64_t)m * n;
            float *z0 = frand(mn, 10 + si, 2.0);
            float *bias = frand(n, 20 + si, 1.0);
            float *w = frand(mn, 30 + si, 1.0); /* L = sum w * act(z + bias) */
            float *z = malloc(sizeof(float) * mn), *y = malloc(sizeof(float) * mn);
            memcpy(z, z0, sizeof(float) * mn);
            ops->bias_act_forward(NULL, m, n, (kl_act)act, bias, z, y);
            double *ry = malloc(sizeof(double) * mn), *rz = malloc(sizeof(double) * mn);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) {
                    rz[i * n + j] = (double)z0[i * n + j] + bias[j];
                    ry[i * n + j] = ref_act((kl_act)act, rz[i * n + j]);
                }
            char what[80];
            snprintf(what, sizeof what, "bias_act_forward %s %dx%d z", kl_act_name((kl_act)act), m,
                     n);
            assert_close(z, rz, mn, 1e-6, 1e-6, what);
            snprintf(what, sizeof what, "bias_act_forward %s %dx%d y", kl_act_name((kl_act)act), m,
                     n);
            assert_close(y, ry, mn, 1e-6, 1e-5, what);

            /* backward vs central differences of the float64 reference */
            float *dz = malloc(sizeof(float) * mn), *db = malloc(sizeof(float) * n);
            ops->bias_act_backward(NULL, m, n, (kl_act)act, z, y, w, dz, db);
            double *rdz = malloc(sizeof(double) * mn), *rdb = calloc((size_t)n, sizeof(double));
            const double h = 1e-6;
            for (int64_t i = 0; i < mn; i++) {
                double zi = rz[i];
                if (act == KL_ACT_RELU && fabs(zi) < 1e-5) zi += 1e-4; /* avoid the kink */
                double d = (ref_act((kl_act)act, zi + h) - ref_act((kl_act)act, zi - h)) / (2 * h);
                if (act == KL_ACT_RELU && fabs(rz[i]) < 1e-5) d = rz[i] > 0 ? 1 : 0;
                rdz[i] = w[i] * d;
                rdb[i % n] += rdz[i];
            }
            snprintf(what, sizeof what, "bias_act_backward %s %dx%d dz", kl_act_name((kl_act)act),
                     m, n);
            assert_close(dz, rdz, mn, 1e-5, 1e-4, what);
            snprintf(what, sizeof what, "bias_act_backward %s %dx%d dbias",
                     kl_act_name((kl_act)act), m, n);
            assert_close(db, rdb, n, 1e-4 * m, 1e-4, what);
            free(z0), free(bias), free(w), free(z), free(y), free(ry), free(rz), free(dz), free(db);
            free(rdz), free(rdb);
        }
}

/* linear_forward = gemm (x W^T) + bias_act_forward, with z and y both written on the CPU */
static void test_linear_forward(void **state) {
    (void)state;
    static const int shapes[][3] = {{1, 1, 1}, {5, 7, 3}, {33, 17, 65}};
    for (int act = 0; act < KL_ACT_COUNT; act++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            int m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
            float *x = frand((int64_t)m * k, 200 + si, 1.0), *w = frand((int64_t)n * k, 210, 1.0);
            float *b = frand(n, 220, 1.0);
            float *z = malloc(sizeof(float) * m * n), *y = malloc(sizeof(float) * m * n);
            ops->linear_forward(NULL, m, n, k, x, w, b, (kl_act)act, z, y);
            double *rz = malloc(sizeof(double) * m * n), *ry = malloc(sizeof(double) * m * n);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) {
                    double acc = b[j];
                    for (int p = 0; p < k; p++)
                        acc += (double)x[i * k + p] * w[j * k + p];
                    rz[i * n + j] = acc;
                    ry[i * n + j] = ref_act((kl_act)act, acc);
                }
            char what[64];
            snprintf(what, sizeof what, "linear_forward %s %dx%dx%d", kl_act_name((kl_act)act), m,
                     n, k);
            assert_close(z, rz, (int64_t)m * n, 1e-5, 1e-5 * k, what);
            assert_close(y, ry, (int64_t)m * n, 1e-5, 1e-5 * k, what);
            free(x), free(w), free(b), free(z), free(y), free(rz), free(ry);
        }
}

/* ------------------------------------------------------------------------------------------ */
static double ref_xent_row(const double *l, int n, int c) {
    double mx = l[0];
    for (int j = 1; j < n; j++)
        mx = l[j] > mx ? l[j] : mx;
    double s = 0;
    for (int j = 0; j < n; j++)
        s += exp(l[j] - mx);
    return log(s) + mx - l[c];
}

static void test_softmax_xent(void **state) {
    (void)state;
    static const int shapes[][2] = {{1, 2}, {4, 3}, {37, 10}, {256, 10}, {9, 101}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int m = shapes[si][0], n = shapes[si][1];
        int64_t mn = (int64_t)m * n;
        /* large logits too: stability */
        float *logits = frand(mn, 40 + si, si == 3 ? 60.0 : 4.0);
        int32_t *labels = malloc(sizeof(int32_t) * m);
        for (int i = 0; i < m; i++)
            labels[i] = (int32_t)((i * 7 + si) % n);
        float *probs = malloc(sizeof(float) * mn), *rl = malloc(sizeof(float) * m);
        float *dl = malloc(sizeof(float) * mn);
        float gs = 1.0f / m;
        ops->softmax_xent(NULL, m, n, logits, labels, probs, rl, dl, gs);
        double *rrl = malloc(sizeof(double) * m), *rdl = malloc(sizeof(double) * mn);
        double *rp = malloc(sizeof(double) * mn), *row = malloc(sizeof(double) * n);
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++)
                row[j] = logits[i * n + j];
            rrl[i] = ref_xent_row(row, n, labels[i]);
            double mx = row[0], s = 0;
            for (int j = 1; j < n; j++)
                mx = row[j] > mx ? row[j] : mx;
            for (int j = 0; j < n; j++)
                s += exp(row[j] - mx);
            for (int j = 0; j < n; j++)
                rp[i * n + j] = exp(row[j] - mx) / s;
            for (int j = 0; j < n; j++) {
                double keep = row[j], h = 1e-5;
                row[j] = keep + h;
                double up = ref_xent_row(row, n, labels[i]);
                row[j] = keep - h;
                double dn = ref_xent_row(row, n, labels[i]);
                row[j] = keep;
                rdl[i * n + j] = (up - dn) / (2 * h) * gs;
            }
        }
        char what[64];
        snprintf(what, sizeof what, "softmax_xent %dx%d probs", m, n);
        assert_close(probs, rp, mn, 1e-6, 1e-5, what);
        snprintf(what, sizeof what, "softmax_xent %dx%d loss", m, n);
        assert_close(rl, rrl, m, 1e-5, 1e-5, what);
        snprintf(what, sizeof what, "softmax_xent %dx%d dlogits", m, n);
        assert_close(dl, rdl, mn, 1e-6, 1e-4, what);
        for (int64_t i = 0; i < mn; i++)
            assert_true(isfinite(probs[i]));
        free(logits), free(labels), free(probs), free(rl), free(dl), free(rrl), free(rdl);
        free(rp), free(row);
    }
}

static void test_mse(void **state) {
    (void)state;
    static const int shapes[][2] = {{1, 1}, {13, 1}, {8, 3}, {100, 7}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int m = shapes[si][0], n = shapes[si][1];
        int64_t mn = (int64_t)m * n;
        float *p = frand(mn, 50 + si, 3.0), *t = frand(mn, 60 + si, 3.0);
        float *rl = malloc(sizeof(float) * m), *dp = malloc(sizeof(float) * mn);
        float gs = 1.0f / m;
        ops->mse(NULL, m, n, p, t, rl, dp, gs);
        double *rrl = malloc(sizeof(double) * m), *rdp = malloc(sizeof(double) * mn);
        for (int i = 0; i < m; i++) {
            double acc = 0;
            for (int j = 0; j < n; j++) {
                double d = (double)p[i * n + j] - t[i * n + j], h = 1e-6;
                acc += d * d;
                rdp[i * n + j] = (((d + h) * (d + h) - (d - h) * (d - h)) / (2 * h)) / n * gs;
            }
            rrl[i] = acc / n;
        }
        assert_close(rl, rrl, m, 1e-5, 1e-5, "mse loss");
        assert_close(dp, rdp, mn, 1e-6, 1e-4, "mse dpred");
        free(p), free(t), free(rl), free(dp), free(rrl), free(rdp);
    }
}

/* ------------------------------------------------------------------------------------------ */
static void test_dropout(void **state) {
    (void)state;
    int64_t n = 100003;
    float p = 0.3f;
    float *x = frand(n, 70, 1.0), *y = malloc(sizeof(float) * n), *dx = malloc(sizeof(float) * n);
    ops->dropout_forward(NULL, n, p, 1234, x, y);
    int64_t dropped = 0;
    double *ref = malloc(sizeof(double) * n);
    for (int64_t i = 0; i < n; i++) {
        int keep = kl_rand_uniform(1234, (uint64_t)i) >= p;
        ref[i] = keep ? x[i] / (1.0 - p) : 0.0;
        dropped += !keep;
    }
    assert_close(y, ref, n, 1e-6, 1e-6, "dropout forward");
    double rate = (double)dropped / n;
    if (fabs(rate - p) > 0.01) fail_msg("dropout rate %.4f, expected %.2f", rate, (double)p);
    /* Backward of a linear op: the gradient of sum(w * y) is w masked and scaled the same way. */
    ops->dropout_backward(NULL, n, p, 1234, x, dx);
    assert_close(dx, ref, n, 1e-6, 1e-6, "dropout backward");
    /* another seed gives another mask */
    ops->dropout_forward(NULL, n, p, 1235, x, dx);
    int64_t same = 0;
    for (int64_t i = 0; i < n; i++)
        same += (dx[i] == 0.0f) == (y[i] == 0.0f);
    assert_true(same < n * 0.9);
    free(x), free(y), free(dx), free(ref);
}

/* ------------------------------------------------------------------------------------------ */
static void test_adamw(void **state) {
    (void)state;
    int64_t n = 1001;
    float *p = frand(n, 80, 1.0), *m = calloc((size_t)n, sizeof(float));
    float *v = calloc((size_t)n, sizeof(float));
    double *rp = malloc(sizeof(double) * n), *rm = calloc((size_t)n, sizeof(double));
    double *rv = calloc((size_t)n, sizeof(double));
    for (int64_t i = 0; i < n; i++)
        rp[i] = p[i];
    float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.05f;
    for (int t = 1; t <= 5; t++) {
        float *g = frand(n, 90 + t, 0.5);
        kl_adamw_coeffs c = kl_adamw_coeffs_for(lr, b1, b2, eps, wd, t);
        ops->adamw(NULL, n, p, g, m, v, &c);
        for (int64_t i = 0; i < n; i++) {
            rp[i] *= 1.0 - (double)lr * wd;
            rm[i] = b1 * rm[i] + (1 - (double)b1) * g[i];
            rv[i] = b2 * rv[i] + (1 - (double)b2) * (double)g[i] * g[i];
            double mh = rm[i] / (1 - pow(b1, t)), vh = rv[i] / (1 - pow(b2, t));
            rp[i] -= lr * mh / (sqrt(vh) + eps);
        }
        free(g);
    }
    assert_close(p, rp, n, 1e-5, 1e-5, "adamw params after 5 steps");
    free(p), free(m), free(v), free(rp), free(rm), free(rv);
}

static void test_sgd(void **state) {
    (void)state;
    int64_t n = 777;
    for (int nesterov = 0; nesterov < 2; nesterov++) {
        float *p = frand(n, 100, 1.0), *buf = calloc((size_t)n, sizeof(float));
        double *rp = malloc(sizeof(double) * n), *rb = calloc((size_t)n, sizeof(double));
        for (int64_t i = 0; i < n; i++)
            rp[i] = p[i];
        float lr = 0.1f, mom = 0.9f, wd = 1e-3f;
        for (int t = 1; t <= 4; t++) {
            float *g = frand(n, 110 + t, 0.5);
            ops->sgd(NULL, n, p, g, buf, lr, mom, wd, nesterov);
            for (int64_t i = 0; i < n; i++) {
                double gi = g[i] + (double)wd * rp[i];
                rb[i] = mom * rb[i] + gi;
                rp[i] -= lr * (nesterov ? gi + mom * rb[i] : rb[i]);
            }
            free(g);
        }
        assert_close(p, rp, n, 1e-5, 1e-5, nesterov ? "sgd nesterov" : "sgd momentum");
        free(p), free(buf), free(rp), free(rb);
    }
}

/* ------------------------------------------------------------------------------------------ */
static void test_reductions_and_clip(void **state) {
    (void)state;
    int64_t n = 300001;
    float *x = frand(n, 120, 1.0);
    double ref = 0;
    for (int64_t i = 0; i < n; i++)
        ref += (double)x[i] * x[i];
    double got = ops->sumsq(NULL, n, x);
    assert_true(fabs(got - ref) <= 1e-9 * ref);

    float norm = 0;
    ops->clip_grad_norm(NULL, n, x, 1.0f, &norm);
    assert_int_equal(ops->sync(NULL), KL_OK);
    assert_true(fabs(norm - sqrt(ref)) <= 1e-6 * sqrt(ref));
    double after = sqrt(ops->sumsq(NULL, n, x));
    if (fabs(after - 1.0) > 1e-4) fail_msg("norm after clipping %.6f, expected 1", after);
    /* below the limit: untouched */
    float again = 0;
    ops->clip_grad_norm(NULL, n, x, 10.0f, &again);
    assert_true(fabs(sqrt(ops->sumsq(NULL, n, x)) - again) < 1e-6);

    float mean = 0;
    double rmean = 0;
    for (int64_t i = 0; i < 1000; i++)
        rmean += x[i];
    ops->mean_to_host(NULL, 1000, x, &mean);
    assert_true(fabs(mean - rmean / 1000) < 1e-9 + 1e-6 * fabs(rmean / 1000));

    int m = 513, c = 67;
    float *src = frand((int64_t)m * c, 130, 1.0), *dst = malloc(sizeof(float) * c);
    double *rs = calloc((size_t)c, sizeof(double));
    for (int i = 0; i < m; i++)
        for (int j = 0; j < c; j++)
            rs[j] += src[i * c + j];
    ops->colsum(NULL, m, c, src, dst);
    assert_close(dst, rs, c, 1e-4, 1e-5, "colsum");
    free(x), free(src), free(dst), free(rs);
}

static void test_act_names(void **state) {
    (void)state;
    kl_act a;
    for (int i = 0; i < KL_ACT_COUNT; i++) {
        assert_int_equal(kl_act_parse(kl_act_name((kl_act)i), &a), 0);
        assert_int_equal(a, i);
    }
    assert_int_equal(kl_act_parse("swish", &a), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_linear_forward),
        cmocka_unit_test(test_bias_act),
        cmocka_unit_test(test_softmax_xent),
        cmocka_unit_test(test_mse),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_reductions_and_clip),
        cmocka_unit_test(test_act_names),
    };
    /* Each backend runs the same tests; the CUDA backend joins when its op table exists. */
    int failed = 0;
    const kl_ops *backends[] = {kl_ops_cpu()};
    for (size_t b = 0; b < sizeof backends / sizeof backends[0]; b++) {
        ops = backends[b];
        kl_cpu_set_threads(2);
        char group[32];
        snprintf(group, sizeof group, "ops[%s]", ops->name);
        failed += _cmocka_run_group_tests(group, tests, sizeof tests / sizeof tests[0], NULL, NULL);
    }
    return failed ? 1 : 0;
}
