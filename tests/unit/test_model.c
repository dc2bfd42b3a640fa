/* test_model.c — the MLP's forward and backward against a float64 reference network, checked
 * by central finite differences, for every activation, with and without dropout, for both tasks. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/unit/reference_math.h"
#include "runtime/model.h"

/* The dropout mask the model uses for hidden layer l (recomputed independently via the same
 * counter-based generator, with the layer seed formula documented in model.c). */
static double ref_mask(const kl_mlp_spec *s, uint64_t step_seed, int l, int64_t idx) {
    if (s->dropout <= 0) return 1.0;
    uint64_t seed = step_seed * 0x100000001B3ull + (uint64_t)(l + 1) * 0x9E3779B97F4A7C15ull;
    return kl_rand_uniform(seed, (uint64_t)idx) >= s->dropout ? 1.0 / (1.0 - s->dropout) : 0.0;
}

/* Mean loss of the float64 reference network with parameters p. */
static double ref_loss(const kl_mlp_spec *s, const double *p, const float *x, int rows,
                       const int32_t *labels, const float *targets, uint64_t seed) {
    int L = s->n_layers, maxd = 0;
    for (int i = 0; i <= L; i++)
        maxd = s->dims[i] > maxd ? s->dims[i] : maxd;
    double *a = malloc(sizeof(double) * rows * maxd), *b = malloc(sizeof(double) * rows * maxd);
    for (int i = 0; i < rows * s->dims[0]; i++)
        a[i] = x[i];
    const double *w = p;
    for (int l = 0; l < L; l++) {
        int in = s->dims[l], out = s->dims[l + 1];
        const double *bias = w + (int64_t)in * out;
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < out; o++) {
                double z = bias[o];
                for (int k = 0; k < in; k++)
                    z += a[r * in + k] * w[o * in + k];
                if (l < L - 1) z = ref_act(s->act, z) * ref_mask(s, seed, l, (int64_t)r * out + o);
                b[r * out + o] = z;
            }
        w = bias + out;
        double *t = a;
        a = b;
        b = t;
    }
    int C = s->dims[L];
    double loss = 0;
    for (int r = 0; r < rows; r++) {
        const double *row = a + r * C;
        if (s->task == KL_TASK_CLASSIFICATION) {
            double mx = row[0], sum = 0;
            for (int j = 1; j < C; j++)
                mx = row[j] > mx ? row[j] : mx;
            for (int j = 0; j < C; j++)
                sum += exp(row[j] - mx);
            loss += log(sum) + mx - row[labels[r]];
        } else {
            double acc = 0;
            for (int j = 0; j < C; j++)
                acc += (row[j] - targets[r * C + j]) * (row[j] - targets[r * C + j]);
            loss += acc / C;
        }
    }
    free(a), free(b);
    return loss / rows;
}

static void check_gradients(kl_act act, float dropout, kl_task task, const char *layers) {
    kl_mlp_spec spec = {0};
    assert_int_equal(kl_mlp_parse_layers(layers, &spec), KL_OK);
    spec.act = act;
    spec.dropout = dropout;
    spec.task = task;
    kl_mlp m;
    int rows = 7;
    assert_int_equal(kl_mlp_create(&m, &spec, kl_cpu(), rows, KL_PREC_FP32), KL_OK);
    assert_int_equal(kl_mlp_init_params(&m, 99), KL_OK);
    int D = spec.dims[0], C = spec.dims[spec.n_layers];
    float *x = malloc(sizeof(float) * rows * D), *targets = malloc(sizeof(float) * rows * C);
    int32_t labels[7];
    for (int i = 0; i < rows * D; i++)
        x[i] = kl_rand_uniform(5, (uint64_t)i) * 2 - 1;
    for (int i = 0; i < rows * C; i++)
        targets[i] = kl_rand_uniform(6, (uint64_t)i);
    for (int r = 0; r < rows; r++)
        labels[r] = r % C;
    /* Biases start at zero; make them non-zero so their gradients are exercised. */
    for (int l = 0; l < spec.n_layers; l++)
        for (int j = 0; j < spec.dims[l + 1]; j++)
            m.bias[l][j] = 0.1f * (float)((j % 5) - 2);
    uint64_t seed = 4242;
    double loss;
    assert_int_equal(kl_mlp_forward(&m, x, rows, 1, seed), KL_OK);
    assert_int_equal(kl_mlp_loss(&m, rows, labels, targets, 1.0f / rows, 1, &loss), KL_OK);
    assert_int_equal(kl_mlp_backward(&m, x, rows, seed), KL_OK);

    double *p = calloc((size_t)m.n_params, sizeof(double));
    for (int64_t i = 0; i < m.n_params; i++)
        p[i] = m.params[i];
    double rl = ref_loss(&spec, p, x, rows, labels, targets, seed);
    if (fabs(rl - loss) > 1e-5 * (1 + fabs(rl)))
        fail_msg("%s %s loss %.9g, reference %.9g", layers, kl_act_name(act), loss, rl);
    for (int64_t i = 0; i < m.n_params; i++) {
        double keep = p[i], h = 1e-5;
        p[i] = keep + h;
        double up = ref_loss(&spec, p, x, rows, labels, targets, seed);
        p[i] = keep - h;
        double dn = ref_loss(&spec, p, x, rows, labels, targets, seed);
        p[i] = keep;
        double num = (up - dn) / (2 * h);
        double err = fabs(num - m.grads[i]);
        if (err > 2e-5 + 2e-3 * fabs(num))
            fail_msg("%s act=%s dropout=%.2f task=%d: grad[%lld] = %.9g, finite difference %.9g",
                     layers, kl_act_name(act), (double)dropout, (int)task, (long long)i,
                     (double)m.grads[i], num);
    }
    free(p), free(x), free(targets);
    kl_mlp_free(&m);
}

static void test_gradients_all_activations(void **state) {
    (void)state;
    for (int a = 0; a < KL_ACT_COUNT; a++) {
        check_gradients((kl_act)a, 0.0f, KL_TASK_CLASSIFICATION, "5-7-3");
        check_gradients((kl_act)a, 0.0f, KL_TASK_CLASSIFICATION, "4-9-6-3");
        check_gradients((kl_act)a, 0.0f, KL_TASK_REGRESSION, "3-8-2");
    }
}

static void test_gradients_with_dropout(void **state) {
    (void)state;
    check_gradients(KL_ACT_RELU, 0.3f, KL_TASK_CLASSIFICATION, "6-11-5-4");
    check_gradients(KL_ACT_TANH, 0.5f, KL_TASK_REGRESSION, "3-9-1");
}

static void test_layer_spec(void **state) {
    (void)state;
    kl_mlp_spec s = {0};
    assert_int_equal(kl_mlp_parse_layers("784-512-256-10", &s), KL_OK);
    assert_int_equal(s.n_layers, 3);
    assert_int_equal(s.dims[3], 10);
    char buf[64];
    assert_string_equal(kl_mlp_layers_str(&s, buf, sizeof buf), "784-512-256-10");
    assert_int_equal(kl_mlp_parse_layers("784", &s), KL_EINVAL);
    assert_int_equal(kl_mlp_parse_layers("784-x-10", &s), KL_EINVAL);
    assert_int_equal(kl_mlp_parse_layers("784-0-10", &s), KL_EINVAL);
    assert_int_equal(kl_mlp_parse_layers("784--10", &s), KL_EINVAL);
    assert_non_null(strstr(kl_errmsg(), "784--10"));
    s.dropout = 1.0f;
    assert_int_equal(kl_mlp_parse_layers("4-2", &s), KL_OK);
    assert_int_equal(kl_mlp_spec_validate(&s), KL_EINVAL);
    assert_non_null(strstr(kl_errmsg(), "dropout"));
}

static void test_init_is_seeded(void **state) {
    (void)state;
    kl_mlp_spec s = {0};
    kl_mlp_parse_layers("20-30-4", &s);
    s.act = KL_ACT_RELU;
    kl_mlp a, b;
    assert_int_equal(kl_mlp_create(&a, &s, kl_cpu(), 4, KL_PREC_FP32), KL_OK);
    assert_int_equal(kl_mlp_create(&b, &s, kl_cpu(), 4, KL_PREC_FP32), KL_OK);
    kl_mlp_init_params(&a, 1);
    kl_mlp_init_params(&b, 1);
    assert_memory_equal(a.params, b.params, sizeof(float) * a.n_params);
    kl_mlp_init_params(&b, 2);
    assert_memory_not_equal(a.params, b.params, sizeof(float) * a.n_params);
    /* He bound for the ReLU hidden layer: sqrt(6/20) */
    float bound = sqrtf(6.0f / 20.0f), mx = 0;
    for (int i = 0; i < 600; i++)
        mx = fabsf(a.params[i]) > mx ? fabsf(a.params[i]) : mx;
    assert_true(mx <= bound && mx > 0.9f * bound);
    kl_mlp_free(&a);
    kl_mlp_free(&b);
}

int main(void) {
    kl_cpu_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradients_all_activations),
        cmocka_unit_test(test_gradients_with_dropout),
        cmocka_unit_test(test_layer_spec),
        cmocka_unit_test(test_init_is_seeded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
