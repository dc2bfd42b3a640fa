/* train.c — the training loop: prepared data → MLP → AdamW/SGD steps → validation each epoch →
 * early stopping, checkpoints, resume → the model bundle.
 *
 * Determinism: initialisation, the split, each epoch's shuffle and each step's dropout mask are
 * all functions of train.seed and the step, and every op reduces in a fixed order; so the same
 * config, data and thread count give bitwise-identical weights, resumed or not — and, data
 * parallel under mpirun (trainer/data_parallel.h), the same number of ranks too. */
#include "trainer/train.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "data/loader.h"
#include "data/prepare.h"
#include "data/reference.h" /* the prediction prior, the profile as JSON */
#include "runtime/bundle.h"
#include "runtime/fileio.h"
#include "runtime/model.h"
#include "runtime/optimizer.h"
#include "trainer/checkpoint.h"
#include "trainer/data_parallel.h"
#include "trainer/progress.h"
#include "trainer/schedule.h"
#include "trainer/train_tracking.h"

/* One staged batch: gathered on the host, copied to the device off the CPU. */
typedef struct {
    float *x;    /* features [batch, D], host (pinned off the CPU) */
    int32_t *y;  /* labels [batch], host */
    float *t;    /* targets [batch], host */
    float *dx;   /* device copy of x (NULL on the CPU) */
    int32_t *dy; /* device copy of y */
    float *dt;   /* device copy of t */
    int rows;    /* rows gathered; 0 at the end of the epoch */
} batch_buf;

/* Everything one run owns, so one cleanup path frees it all. */
typedef struct {
    const kl_train_config *cfg;     /* the resolved config */
    kl_prepared_data data;          /* train/val/test, transform, encoder, digest */
    kl_mlp model;                   /* the network */
    kl_optimizer opt;               /* its optimizer */
    kl_loader loader;               /* shuffled batches of the training split */
    kl_schedule sched;              /* learning rate per step */
    batch_buf bufs[KL_INPUT_SLOTS]; /* double-buffered batches: host (pinned) and device */
    int use_graphs;                 /* capture full-batch steps as CUDA graphs */
    int graph_ready[KL_MAX_GRAPHS]; /* graph g holds a captured step reading bufs[g] */
    float *best;                    /* best parameters so far (host), for early stopping */
    FILE *loss_log;                 /* per-step loss CSV, or NULL */
    kl_train_tracking *tracking;    /* the MLflow record, or NULL (always on ranks but 0) */
    kl_dp dp;                       /* the job's ranks and the gradient all-reduce */
    int lead;                       /* rank 0: talks to MLflow, writes checkpoints and bundle */
    char ckpt_path[4096];           /* <output>.ckpt, beside the bundle (kept out of it) */
    char arch[128];                 /* architecture string checked on resume */
} run_state;

/* Set from a signal handler (Ctrl-C): the loop stops after the step in flight. */
static volatile sig_atomic_t stop_requested = 0;

void kl_train_request_stop(void) {
    stop_requested = 1;
}

static uint64_t step_seed(uint64_t seed, int64_t step) {
    return (seed + 1) * 0xD6E8FEB86659FD93ull ^ (uint64_t)step * 0x9E3779B97F4A7C15ull;
}

static kl_status build_spec(const kl_train_config *cfg, const kl_prepared_data *d,
                            kl_mlp_spec *spec) {
    memset(spec, 0, sizeof *spec);
    kl_status s = kl_mlp_parse_layers(cfg->model_layers, spec);
    if (s) return kl_preferr(s, "model.layers");
    if (kl_act_parse(cfg->model_activation, &spec->act))
        return kl_seterr(KL_EINVAL, "model.activation: unknown \"%s\"", cfg->model_activation);
    spec->dropout = (float)cfg->model_dropout;
    spec->task =
        strcmp(cfg->model_task, "regression") ? KL_TASK_CLASSIFICATION : KL_TASK_REGRESSION;
    int L = spec->n_layers;
    if (spec->dims[0] != d->n_features)
        return kl_seterr(KL_EINVAL,
                         "model.layers: \"%s\" takes %d inputs, the data has %d features",
                         cfg->model_layers, spec->dims[0], d->n_features);
    if (spec->task == KL_TASK_CLASSIFICATION && spec->dims[L] != d->train.n_classes)
        return kl_seterr(KL_EINVAL, "model.layers: \"%s\" has %d outputs, the data has %d classes",
                         cfg->model_layers, spec->dims[L], d->train.n_classes);
    if (spec->task == KL_TASK_REGRESSION && spec->dims[L] != 1)
        return kl_seterr(KL_EINVAL, "model.layers: regression needs 1 output, \"%s\" has %d",
                         cfg->model_layers, spec->dims[L]);
    return kl_mlp_spec_validate(spec);
}

/* Mean loss and accuracy of the current weights over a dataset, in batches. */
static kl_status evaluate(run_state *r, const kl_dataset *ds, double *loss, double *acc) {
    kl_mlp *m = &r->model;
    int B = m->max_batch, D = (int)ds->d, C = m->spec.dims[m->spec.n_layers];
    int cls = m->spec.task == KL_TASK_CLASSIFICATION;
    double loss_sum = 0;
    int64_t correct = 0;
    float *probs_host = malloc((size_t)B * C * sizeof(float));
    if (!probs_host) return kl_seterr(KL_ENOMEM, "evaluation buffer");
    /* Settle the copy stream too: a batch prefetched before a max_steps stop may still be
     * crossing into the staging buffers reused below. */
    kl_status s = m->ops->sync(m->ops_ctx);
    batch_buf *st = &r->bufs[0];
    /* Across ranks each evaluates its share of the rows and the sums are all-reduced. */
    int64_t lo = 0, hi = ds->n;
    if (!r->dp.emulated && r->dp.world > 1) {
        lo = ds->n * r->dp.rank / r->dp.world;
        hi = ds->n * (r->dp.rank + 1) / r->dp.world;
    }
    for (int64_t r0 = lo; r0 < hi && !s; r0 += B) {
        int n = (int)(hi - r0 < B ? hi - r0 : B);
        const float *x = ds->x + r0 * D;
        const int32_t *y = ds->y ? ds->y + r0 : NULL;
        const float *t = ds->t ? ds->t + r0 : NULL;
        if (m->dev.kind != KL_DEV_CPU) {
            if ((s = kl_dev_copy_from_host(m->dev, st->dx, x, (size_t)n * D * sizeof(float))))
                break;
            x = st->dx;
            if (y && (s = kl_dev_copy_from_host(m->dev, st->dy, y, (size_t)n * sizeof(int32_t))))
                break;
            if (t && (s = kl_dev_copy_from_host(m->dev, st->dt, t, (size_t)n * sizeof(float))))
                break;
            y = y ? st->dy : NULL;
            t = t ? st->dt : NULL;
        }
        double mean;
        if ((s = kl_mlp_forward(m, x, n, 0, 0))) break;
        if ((s = kl_mlp_loss(m, n, y, t, 0.0f, 0, &mean))) break;
        loss_sum += mean * n;
        if (cls) {
            if ((s = kl_dev_copy_to_host(m->dev, probs_host, m->probs,
                                         (size_t)n * C * sizeof(float))))
                break;
            for (int i = 0; i < n; i++) {
                const float *p = probs_host + (int64_t)i * C;
                int best = 0;
                for (int c = 1; c < C; c++)
                    if (p[c] > p[best]) best = c;
                correct += best == ds->y[r0 + i];
            }
        }
    }
    free(probs_host);
    if (s) return s;
    if (!r->dp.emulated && r->dp.world > 1) {
        double sums[2] = {loss_sum, (double)correct};
        KL_TRY(kl_dp_sum(&r->dp, sums, 2));
        loss_sum = sums[0];
        correct = (int64_t)sums[1];
    }
    *loss = ds->n ? loss_sum / ds->n : NAN;
    *acc = cls && ds->n ? (double)correct / ds->n : NAN;
    return KL_OK;
}

static kl_status save_checkpoint(run_state *r, int64_t step, int64_t epoch, int64_t batch_in_epoch,
                                 double best_val, int64_t bad_epochs, int64_t best_epoch) {
    kl_mlp *m = &r->model;
    kl_checkpoint c;
    memset(&c, 0, sizeof c);
    c.n_params = m->n_params;
    c.state_len = kl_optimizer_state_len(&r->opt);
    c.step = step;
    c.epoch = epoch;
    c.batch_in_epoch = batch_in_epoch;
    c.optimizer_t = r->opt.t;
    c.best_val_loss = best_val;
    c.bad_epochs = bad_epochs;
    c.best_epoch = best_epoch;
    c.has_best = r->best != NULL;
    snprintf(c.arch, sizeof c.arch, "%s", r->arch);
    c.params = malloc((size_t)c.n_params * sizeof(float));
    c.state = malloc((size_t)(c.state_len ? c.state_len : 1) * sizeof(float));
    c.best = r->best;
    kl_status s = KL_OK;
    if (!c.params || !c.state) s = kl_seterr(KL_ENOMEM, "checkpoint buffers");
    if (!s)
        s = kl_dev_copy_to_host(m->dev, c.params, m->params, (size_t)c.n_params * sizeof(float));
    if (!s)
        s = kl_dev_copy_to_host(m->dev, c.state, r->opt.state, (size_t)c.state_len * sizeof(float));
    if (!s) s = kl_checkpoint_save(r->ckpt_path, &c);
    free(c.params);
    free(c.state);
    return s;
}

/* Writes the initial weights as <output>/init.safetensors (for comparisons with other engines). */
static kl_status save_init(run_state *r) {
    kl_mlp *m = &r->model;
    float *host = malloc((size_t)m->n_params * sizeof(float));
    if (!host) return kl_seterr(KL_ENOMEM, "initial weights copy");
    char path[4096];
    snprintf(path, sizeof path, "%s/init.safetensors", r->cfg->output);
    kl_status s = kl_dev_copy_to_host(m->dev, host, m->params, (size_t)m->n_params * sizeof(float));
    if (!s) s = kl_bundle_write_weights(path, &m->spec, host);
    free(host);
    return s ? kl_preferr(s, "train.save_init") : KL_OK;
}

static void add_param(const char *key, const char *value, void *obj) {
    cJSON_AddStringToObject((cJSON *)obj, key, value);
}

static cJSON *training_summary(const kl_train_config *cfg, const kl_train_result *res) {
    cJSON *root = cJSON_CreateObject();
    cJSON *params = cJSON_AddObjectToObject(root, "config");
    kl_config_each(cfg, add_param, params);
    cJSON *metrics = cJSON_AddObjectToObject(root, "metrics");
    cJSON_AddNumberToObject(metrics, "steps", (double)res->steps);
    cJSON_AddNumberToObject(metrics, "epochs", (double)res->epochs_done);
    cJSON_AddNumberToObject(metrics, "train_loss", res->train_loss);
    if (!isnan(res->val_loss)) cJSON_AddNumberToObject(metrics, "val_loss", res->val_loss);
    if (!isnan(res->val_accuracy))
        cJSON_AddNumberToObject(metrics, "val_accuracy", res->val_accuracy);
    if (!isnan(res->test_loss)) cJSON_AddNumberToObject(metrics, "test_loss", res->test_loss);
    if (!isnan(res->test_accuracy))
        cJSON_AddNumberToObject(metrics, "test_accuracy", res->test_accuracy);
    cJSON_AddNumberToObject(metrics, "samples_per_second", res->samples_per_s);
    cJSON_AddBoolToObject(metrics, "stopped_early", res->stopped_early);
    return root;
}

/* The reference profile's prediction prior: the final weights' outputs on the validation split
 * (the training split without one), rendered with the rest of the profile as JSON into *json. */
static kl_status reference_json(run_state *r, char **json) {
    kl_mlp *m = &r->model;
    kl_prepared_data *d = &r->data;
    const kl_dataset *ds = d->val.n > 0 ? &d->val : &d->train;
    int C = m->spec.dims[m->spec.n_layers];
    float *out = malloc((size_t)(ds->n > 0 ? ds->n : 1) * C * sizeof(float));
    if (!out) return kl_seterr(KL_ENOMEM, "reference profile: %lld predictions", (long long)ds->n);
    kl_status s = kl_mlp_predict(m, ds->x, ds->n, out);
    if (!s)
        s = kl_reference_set_predictions(&d->reference, out, ds->n, C,
                                         d->val.n > 0 ? "validation" : "training");
    free(out);
    if (!s) s = kl_reference_to_json(&d->reference, json);
    return s ? kl_preferr(s, "reference profile") : KL_OK;
}

static kl_status save_bundle(run_state *r, const kl_train_result *res) {
    kl_mlp *m = &r->model;
    kl_prepared_data *d = &r->data;
    kl_bundle b;
    memset(&b, 0, sizeof b);
    b.spec = m->spec;
    b.n_params = m->n_params;
    b.params = malloc((size_t)m->n_params * sizeof(float));
    if (!b.params) return kl_seterr(KL_ENOMEM, "bundle parameters");
    kl_status s =
        kl_dev_copy_to_host(m->dev, b.params, m->params, (size_t)m->n_params * sizeof(float));
    b.n_features = d->n_features;
    b.feature_names = d->train.feature_names;
    snprintf(b.transform, sizeof b.transform, "%s", d->transform);
    b.shift = d->shift;
    b.scale = d->scale;
    b.n_labels = m->spec.task == KL_TASK_CLASSIFICATION ? d->train.n_classes : 0;
    b.label_names = b.n_labels ? d->train.class_names : NULL;
    snprintf(b.data_digest, sizeof b.data_digest, "%s", d->digest);
    b.encoder_json = d->encoder_json;
    cJSON *summary = training_summary(r->cfg, res);
    b.training_json = cJSON_PrintUnformatted(summary);
    cJSON_Delete(summary);
    if (!s) s = reference_json(r, &b.reference_json);
    if (!s) s = kl_bundle_save(r->cfg->output, &b);
    free(b.params);
    free(b.training_json);
    free(b.reference_json);
    return s;
}

static void run_free(run_state *r) {
    kl_loader_free(&r->loader);
    kl_optimizer_free(&r->opt);
    if (r->model.ops) r->model.ops->sync(r->model.ops_ctx); /* no copy may still target them */
    for (int i = 0; i < KL_INPUT_SLOTS; i++) {
        batch_buf *b = &r->bufs[i];
        kl_host_free(r->model.dev, b->x);
        kl_host_free(r->model.dev, b->y);
        kl_host_free(r->model.dev, b->t);
        kl_dev_free(r->model.dev, b->dx);
        kl_dev_free(r->model.dev, b->dy);
        kl_dev_free(r->model.dev, b->dt);
    }
    kl_mlp_free(&r->model);
    kl_prepared_data_free(&r->data);
    free(r->best);
    if (r->loss_log) fclose(r->loss_log);
}

static void fill_data_config(const kl_train_config *cfg, kl_data_config *dc) {
    memset(dc, 0, sizeof *dc);
    dc->format = cfg->data_format;
    dc->train = cfg->data_train;
    dc->train_labels = cfg->data_train_labels;
    dc->test = cfg->data_test;
    dc->test_labels = cfg->data_test_labels;
    dc->label_column = cfg->data_label_column;
    dc->categorical = (const char **)cfg->data_categorical.items;
    dc->n_categorical = cfg->data_categorical.n;
    dc->label_names = (const char **)cfg->data_label_names.items;
    dc->n_label_names = cfg->data_label_names.n;
    dc->task = cfg->model_task;
    dc->val_fraction = cfg->data_val_fraction;
    dc->seed = (uint64_t)cfg->train_seed;
    dc->transform = cfg->data_transform;
    dc->limit = cfg->data_limit;
}

/* Allocates the batch buffers: host memory the device can copy from asynchronously, and device
 * copies off the CPU. */
static kl_status alloc_batches(run_state *r, int B, int D) {
    kl_device dev = r->model.dev;
    for (int i = 0; i < KL_INPUT_SLOTS; i++) {
        batch_buf *b = &r->bufs[i];
        KL_TRY(kl_host_alloc(dev, (size_t)B * D * sizeof(float), (void **)&b->x));
        KL_TRY(kl_host_alloc(dev, (size_t)B * sizeof(int32_t), (void **)&b->y));
        KL_TRY(kl_host_alloc(dev, (size_t)B * sizeof(float), (void **)&b->t));
        if (dev.kind == KL_DEV_CPU) continue;
        KL_TRY(kl_dev_malloc(dev, (size_t)B * D * sizeof(float), (void **)&b->dx));
        KL_TRY(kl_dev_malloc(dev, (size_t)B * sizeof(int32_t), (void **)&b->dy));
        KL_TRY(kl_dev_malloc(dev, (size_t)B * sizeof(float), (void **)&b->dt));
    }
    return KL_OK;
}

/* Gathers the next batch into buffer `slot` and, off the CPU, starts its copy to the device on
 * the copy stream (it overlaps whatever step is computing). */
static void fetch(run_state *r, int slot, int cls) {
    batch_buf *b = &r->bufs[slot];
    b->rows = (int)kl_loader_next(&r->loader, b->x, cls ? b->y : NULL, cls ? NULL : b->t, NULL);
    const kl_ops *ops = r->model.ops;
    if (b->rows <= 0 || !ops->copy_in) return;
    size_t D = (size_t)r->data.n_features, n = (size_t)b->rows;
    ops->copy_in(r->model.ops_ctx, slot, b->dx, b->x, n * D * sizeof(float));
    if (cls)
        ops->copy_in(r->model.ops_ctx, slot, b->dy, b->y, n * sizeof(int32_t));
    else
        ops->copy_in(r->model.ops_ctx, slot, b->dt, b->t, n * sizeof(float));
}

/* forward, loss, backward over one shard's rows: its gradients in m->grads, scaled so that the
 * shards' sum is the gradient of the global batch's mean loss (enqueued; nothing waits). */
static kl_status shard_grads(run_state *r, const float *x, const int32_t *y, const float *t,
                             int rows, uint64_t seed) {
    kl_mlp *m = &r->model;
    KL_TRY(kl_mlp_forward(m, x, rows, 1, seed));
    KL_TRY(kl_mlp_loss(m, rows, y, t, 1.0f / ((float)rows * (float)r->dp.shards), 1, NULL));
    return kl_mlp_backward(m, x, rows, seed);
}

/* train.emulate_ranks: after shard 0 (the trainer's own batch), the other shards' gradients in
 * turn, each kept for the ring-order sum. */
static kl_status emulate_other_shards(run_state *r, int cls, uint64_t seed) {
    kl_mlp *m = &r->model;
    kl_dp *dp = &r->dp;
    size_t bytes = (size_t)m->n_params * sizeof(float);
    KL_TRY(kl_mlp_sync_loss(m, &dp->shard_loss[0]));
    memcpy(dp->parts[0], m->grads, bytes);
    for (int k = 1; k < dp->shards; k++) {
        int rows = (int)kl_loader_next(&dp->others[k], dp->x, cls ? dp->y : NULL,
                                       cls ? NULL : dp->t, NULL);
        if (rows <= 0) return kl_seterr(KL_EINTERNAL, "emulated shard %d ran out of rows", k);
        KL_TRY(shard_grads(r, dp->x, cls ? dp->y : NULL, cls ? NULL : dp->t, rows,
                           kl_dp_shard_seed(dp, seed, k)));
        KL_TRY(kl_mlp_sync_loss(m, &dp->shard_loss[k]));
        memcpy(dp->parts[k], m->grads, bytes);
    }
    return KL_OK;
}

/* forward, loss, backward, gradient all-reduce, update: the ops of one step (enqueued; in a
 * one-rank job nothing waits). */
static kl_status step_body(run_state *r, const batch_buf *b, int cls, uint64_t seed, double lr) {
    kl_mlp *m = &r->model;
    int dev = m->dev.kind != KL_DEV_CPU;
    const float *x = dev ? b->dx : b->x;
    const int32_t *y = cls ? (dev ? b->dy : b->y) : NULL;
    const float *t = cls ? NULL : (dev ? b->dt : b->t);
    KL_TRY(shard_grads(r, x, y, t, b->rows, kl_dp_shard_seed(&r->dp, seed, r->dp.rank)));
    if (r->dp.emulated) KL_TRY(emulate_other_shards(r, cls, seed));
    KL_TRY(kl_dp_reduce_grads(&r->dp, m));
    return kl_optimizer_step(&r->opt, m, lr, NULL);
}

/* Runs one step on bufs[slot]. A full batch on a backend with graphs is captured once per
 * staging buffer and replayed after that; anything else runs op by op. */
static kl_status run_step(run_state *r, int slot, int cls, uint64_t seed, double lr) {
    kl_mlp *m = &r->model;
    const kl_ops *ops = m->ops;
    batch_buf *b = &r->bufs[slot];
    if (ops->wait_input) ops->wait_input(m->ops_ctx, slot);
    if (!r->use_graphs || b->rows != m->max_batch) return step_body(r, b, cls, seed, lr);
    if (!r->graph_ready[slot]) {
        KL_TRY(ops->capture_begin(m->ops_ctx, slot));
        kl_status s = step_body(r, b, cls, seed, lr);
        kl_status e = ops->capture_end(m->ops_ctx, slot);
        if (s || e)
            return kl_preferr(s ? s : e, "capturing the training step as a CUDA graph (set "
                                         "train.cuda_graph=false to run without)");
        r->graph_ready[slot] = 1;
    } else {
        KL_TRY(ops->replay_begin(m->ops_ctx, slot));
        KL_TRY(step_body(r, b, cls, seed, lr));
    }
    return ops->replay_launch(m->ops_ctx, slot);
}

static kl_status restore_checkpoint(run_state *r, int64_t *step, int64_t *epoch,
                                    int64_t *batch_in_epoch, double *best_val, int64_t *bad_epochs,
                                    int64_t *best_epoch) {
    kl_checkpoint c;
    KL_TRY(kl_checkpoint_load(r->ckpt_path, &c));
    kl_mlp *m = &r->model;
    kl_status s = KL_OK;
    if (strcmp(c.arch, r->arch) != 0 || c.n_params != m->n_params ||
        c.state_len != kl_optimizer_state_len(&r->opt))
        s = kl_seterr(KL_EINVAL,
                      "checkpoint \"%s\" is for \"%s\" (%lld parameters), this config trains "
                      "\"%s\" (%lld parameters)",
                      r->ckpt_path, c.arch, (long long)c.n_params, r->arch, (long long)m->n_params);
    if (!s)
        s = kl_dev_copy_from_host(m->dev, m->params, c.params, (size_t)c.n_params * sizeof(float));
    if (!s)
        s = kl_dev_copy_from_host(m->dev, r->opt.state, c.state,
                                  (size_t)c.state_len * sizeof(float));
    if (!s && c.has_best && r->best) memcpy(r->best, c.best, (size_t)c.n_params * sizeof(float));
    if (!s) {
        r->opt.t = c.optimizer_t;
        *step = c.step;
        *epoch = c.epoch;
        *batch_in_epoch = c.batch_in_epoch;
        *best_val = c.best_val_loss;
        *bad_epochs = c.bad_epochs;
        *best_epoch = c.best_epoch;
    }
    kl_checkpoint_free(&c);
    return s;
}

/* Every rank starts from rank 0's state: its initial weights or the checkpoint it resumed
 * (parameters, optimizer state, position in the data, early-stopping record), so only rank 0
 * needs the checkpoint file. */
static kl_status share_start(run_state *r, int64_t *step, int64_t *epoch, int64_t *batch_in_epoch,
                             double *best_val, int64_t *bad_epochs, int64_t *best_epoch) {
    if (r->dp.world == 1) return KL_OK;
    struct {
        int64_t step, epoch, batch_in_epoch, bad_epochs, best_epoch, optimizer_t;
        double best_val;
    } h = {*step, *epoch, *batch_in_epoch, *bad_epochs, *best_epoch, r->opt.t, *best_val};
    KL_TRY(kl_dp_broadcast(&r->dp, &h, sizeof h));
    *step = h.step;
    *epoch = h.epoch;
    *batch_in_epoch = h.batch_in_epoch;
    *bad_epochs = h.bad_epochs;
    *best_epoch = h.best_epoch;
    *best_val = h.best_val;
    r->opt.t = h.optimizer_t;
    kl_mlp *m = &r->model;
    KL_TRY(kl_dp_broadcast_floats(&r->dp, m->dev, m->params, m->n_params));
    KL_TRY(kl_dp_broadcast_floats(&r->dp, m->dev, r->opt.state, kl_optimizer_state_len(&r->opt)));
    if (r->best) KL_TRY(kl_dp_broadcast(&r->dp, r->best, (size_t)m->n_params * sizeof(float)));
    return KL_OK;
}

static kl_status run(run_state *r, int resume, FILE *log, kl_train_result *res) {
    const kl_train_config *cfg = r->cfg;
    kl_cpu_set_threads((int)cfg->train_threads);
    kl_device dev;
    char dev_text[64];
    KL_TRY(
        kl_device_resolve(kl_dp_device_text(&r->dp, cfg->train_device, dev_text, sizeof dev_text),
                          log == NULL, &dev));

    kl_data_config dc;
    fill_data_config(cfg, &dc);
    KL_TRY(kl_data_prepare(&dc, &r->data));
    kl_prepared_data *d = &r->data;
    if (d->train.n == 0) return kl_seterr(KL_EINVAL, "data.train: no training rows");
    snprintf(res->data_digest, sizeof res->data_digest, "%s", d->digest);

    kl_mlp_spec spec;
    KL_TRY(build_spec(cfg, d, &spec));
    int B = kl_dp_shard_batch(&r->dp, cfg); /* this rank's share of the global batch */
    kl_precision prec = KL_PREC_FP32;
    if (kl_precision_parse(cfg->train_precision, &prec))
        return kl_seterr(KL_EINVAL, "train.precision: unknown \"%s\"", cfg->train_precision);
    KL_TRY(kl_mlp_create(&r->model, &spec, dev, B, prec));
    KL_TRY(kl_dp_attach_device(&r->dp, cfg, &r->model));
    /* A step with an all-reduce in the middle runs op by op. */
    r->use_graphs = cfg->train_cuda_graph && r->model.ops->capture_begin != NULL &&
                    r->dp.shards == 1 && !r->dp.nccl;
    kl_mlp *m = &r->model;
    KL_TRY(kl_mlp_init_params(m, (uint64_t)cfg->train_seed));
    char layers[96];
    snprintf(r->arch, sizeof r->arch, "%s %s %s", kl_mlp_layers_str(&spec, layers, sizeof layers),
             kl_act_name(spec.act), cfg->model_task);

    kl_optim_spec os = {
        .kind = strcmp(cfg->optim_name, "sgd") ? KL_OPTIM_ADAMW : KL_OPTIM_SGD,
        .beta1 = cfg->optim_beta1,
        .beta2 = cfg->optim_beta2,
        .eps = cfg->optim_eps,
        .momentum = cfg->optim_momentum,
        .nesterov = cfg->optim_nesterov,
        .weight_decay = cfg->optim_weight_decay,
        .clip_norm = cfg->optim_clip_norm,
    };
    KL_TRY(kl_optimizer_create(&r->opt, &os, m));
    KL_TRY(alloc_batches(r, B, d->n_features));
    kl_loader_opts lo = kl_dp_loader_opts(&r->dp, cfg, r->dp.rank);
    KL_TRY(kl_loader_init(&r->loader, &d->train, &lo));
    KL_TRY(kl_dp_emulation_init(&r->dp, cfg, &d->train, m->n_params));

    int64_t steps_per_epoch = kl_loader_batches_per_epoch(&r->loader);
    int64_t total = steps_per_epoch * cfg->train_epochs;
    if (cfg->train_max_steps > 0 && cfg->train_max_steps < total) total = cfg->train_max_steps;
    r->sched = (kl_schedule){
        .kind = strcmp(cfg->schedule_name, "cosine") ? KL_SCHED_CONSTANT : KL_SCHED_COSINE,
        .lr = cfg->optim_lr,
        .min_lr = cfg->schedule_min_lr,
        .warmup_steps = cfg->schedule_warmup_steps,
        .total_steps = total,
    };
    int early = cfg->train_patience > 0 && d->val.n > 0;
    if (early) {
        r->best = calloc((size_t)m->n_params, sizeof(float));
        if (!r->best) return kl_seterr(KL_ENOMEM, "best-parameter copy");
    }
    if (r->lead) KL_TRY(kl_file_mkdirs(cfg->output));
    if (r->lead && cfg->train_save_init) KL_TRY(save_init(r));
    /* Beside the bundle, not in it: the bundle directory is what gets registered and served. */
    size_t olen = strlen(cfg->output);
    while (olen > 1 && cfg->output[olen - 1] == '/')
        olen--;
    snprintf(r->ckpt_path, sizeof r->ckpt_path, "%.*s.ckpt", (int)olen, cfg->output);

    int64_t step = 0, start_epoch = 0, skip_batches = 0, bad_epochs = 0, best_epoch = -1;
    double best_val = INFINITY;
    if (resume && r->lead) {
        FILE *probe = fopen(r->ckpt_path, "rb");
        if (probe) {
            fclose(probe);
            KL_TRY(restore_checkpoint(r, &step, &start_epoch, &skip_batches, &best_val, &bad_epochs,
                                      &best_epoch));
            if (log)
                fprintf(log, "resuming from %s at step %lld (epoch %lld, batch %lld)\n",
                        r->ckpt_path, (long long)step, (long long)start_epoch + 1,
                        (long long)skip_batches);
        } else if (log) {
            fprintf(log, "no checkpoint at %s; starting from scratch\n", r->ckpt_path);
        }
    }
    KL_TRY(share_start(r, &step, &start_epoch, &skip_batches, &best_val, &bad_epochs, &best_epoch));
    if (log) {
        char dn[32];
        fprintf(log,
                "training %s (%lld parameters) on %s: %lld train / %lld val / %lld test rows, "
                "%lld steps\n",
                r->arch, (long long)m->n_params, kl_device_name(dev, dn, sizeof dn),
                (long long)d->train.n, (long long)d->val.n, (long long)d->test.n, (long long)total);
        if (r->dp.shards > 1)
            fprintf(log,
                    "data parallel: %d %s (%s), global batch %lld = %d x %d rows; gradients "
                    "all-reduced in a fixed order\n",
                    r->dp.shards, r->dp.emulated ? "emulated ranks" : "ranks",
                    r->dp.emulated ? "one process" : kl_comm_backend_name(r->dp.comm),
                    (long long)cfg->train_batch_size, r->dp.shards, B);
    }

    if (cfg->train_loss_log && r->lead) {
        r->loss_log = fopen(cfg->train_loss_log, step > 0 ? "a" : "w");
        if (!r->loss_log)
            return kl_seterr(KL_EIO, "train.loss_log: cannot create \"%s\"", cfg->train_loss_log);
        if (step == 0) fprintf(r->loss_log, "step,epoch,loss,lr\n");
    }

    if (r->lead) {
        char dn[32], where[64];
        kl_device_name(dev, dn, sizeof dn);
        if (r->dp.world > 1)
            snprintf(where, sizeof where, "%s, %d ranks", dn, r->dp.world);
        else
            snprintf(where, sizeof where, "%s", dn);
        KL_TRY(kl_train_tracking_begin(cfg, where, d, total, &r->tracking));
    }
    kl_progress prog;
    kl_progress_start(&prog, log ? kl_progress_parse(cfg->train_progress, log) : KL_PROGRESS_NONE,
                      log ? log : stderr, total, steps_per_epoch, cfg->train_epochs,
                      cfg->train_log_every);
    prog.tee = kl_train_tracking_log(r->tracking);
    int cls = spec.task == KL_TASK_CLASSIFICATION;
    double t0 = kl_now();
    int64_t samples = 0;
    res->train_loss = NAN;
    int stop = step >= total;
    int64_t epoch = start_epoch;
    for (; epoch < cfg->train_epochs && !stop; epoch++) {
        KL_TRY(kl_loader_start_epoch(&r->loader, epoch));
        kl_loader_skip(&r->loader, skip_batches);
        for (int k = 1; r->dp.emulated && k < r->dp.shards; k++) {
            KL_TRY(kl_loader_start_epoch(&r->dp.others[k], epoch));
            kl_loader_skip(&r->dp.others[k], skip_batches);
        }
        int64_t batch_in_epoch = skip_batches;
        skip_batches = 0;
        double loss_sum = 0;
        int64_t loss_rows = 0;
        int cur = 0;
        fetch(r, cur, cls);
        while (r->bufs[cur].rows > 0) {
            if (stop_requested)
                return kl_seterr(KL_ECANCELED, "stopped at step %lld (interrupted)",
                                 (long long)step);
            int rows = r->bufs[cur].rows * r->dp.shards; /* the global batch's rows */
            double t_step = kl_now();
            double lr = kl_schedule_lr(&r->sched, step);
            KL_TRY(run_step(r, cur, cls, step_seed((uint64_t)cfg->train_seed, step), lr));
            fetch(r, cur ^ 1, cls); /* the next batch moves while this step computes */
            double loss;
            KL_TRY(kl_mlp_sync_loss(m, &loss));
            KL_TRY(kl_dp_mean_loss(&r->dp, &loss));
            if (!isfinite(loss))
                return kl_seterr(KL_EINVAL,
                                 "training diverged at step %lld (loss %g); lower optim.lr or set "
                                 "optim.clip_norm",
                                 (long long)step, loss);
            loss_sum += loss * rows;
            loss_rows += rows;
            samples += rows;
            kl_progress_step(&prog, step, epoch, rows, loss, lr);
            if (r->loss_log)
                fprintf(r->loss_log, "%lld,%lld,%.9g,%.9g\n", (long long)step, (long long)epoch,
                        loss, lr);
            kl_train_tracking_step(r->tracking, step, loss, lr, rows / (kl_now() - t_step));
            step++;
            batch_in_epoch++;
            cur ^= 1;
            if (r->lead && cfg->train_checkpoint_every > 0 &&
                step % cfg->train_checkpoint_every == 0)
                KL_TRY(save_checkpoint(r, step, epoch, batch_in_epoch, best_val, bad_epochs,
                                       best_epoch));
            if (step >= total) {
                stop = 1;
                break;
            }
        }
        if (loss_rows) res->train_loss = loss_sum / loss_rows;
        double vl = NAN, va = NAN;
        if (d->val.n > 0) KL_TRY(evaluate(r, &d->val, &vl, &va));
        kl_progress_epoch(&prog, epoch, res->train_loss, vl, va, d->val.n > 0, cls);
        kl_train_tracking_epoch(r->tracking, epoch, step, res->train_loss, vl, va,
                                samples / (kl_now() - t0));
        res->epochs_done = epoch + 1;
        if (early && !stop) {
            if (vl < best_val) {
                best_val = vl;
                best_epoch = epoch;
                bad_epochs = 0;
                KL_TRY(kl_dev_copy_to_host(dev, r->best, m->params,
                                           (size_t)m->n_params * sizeof(float)));
            } else if (++bad_epochs >= cfg->train_patience) {
                res->stopped_early = 1;
                stop = 1;
                if (log)
                    fprintf(log,
                            "early stopping: val_loss has not improved for %lld epochs; "
                            "keeping epoch %lld\n",
                            (long long)bad_epochs, (long long)best_epoch + 1);
            }
        }
    }
    double t1 = kl_now();
    if (early && best_epoch >= 0 && res->stopped_early)
        KL_TRY(kl_dev_copy_from_host(dev, m->params, r->best, (size_t)m->n_params * sizeof(float)));
    res->steps = step;
    res->best_epoch = best_epoch;
    res->seconds = t1 - t0;
    res->samples_per_s = res->seconds > 0 ? samples / res->seconds : 0;
    res->val_loss = res->val_accuracy = res->test_loss = res->test_accuracy = NAN;
    if (d->val.n > 0) KL_TRY(evaluate(r, &d->val, &res->val_loss, &res->val_accuracy));
    if (d->test.n > 0) KL_TRY(evaluate(r, &d->test, &res->test_loss, &res->test_accuracy));
    return r->lead ? save_bundle(r, res) : KL_OK;
}

kl_status kl_train_run(const kl_train_config *cfg, int resume, FILE *log, kl_train_result *res) {
    memset(res, 0, sizeof *res);
    KL_TRY(kl_config_validate(cfg));
    run_state r;
    memset(&r, 0, sizeof r);
    r.cfg = cfg;
    kl_status s = kl_dp_init(&r.dp, cfg, &stop_requested);
    if (s) {
        kl_dp_free(&r.dp);
        return s;
    }
    r.lead = r.dp.rank == 0;
    res->rank = r.dp.rank;
    res->world_size = r.dp.world;
    if (!r.lead) log = NULL; /* rank 0 speaks for the job; the others report only errors */
    s = run(&r, resume, log, res);
    if (s && r.dp.world > 1) {
        /* Name this rank in its error, and end the job now rather than at the peers' timeout. */
        if (!kl_comm_broken(r.dp.comm)) kl_preferr(s, "rank %d of %d", r.dp.rank, r.dp.world);
        kl_dp_fail(&r.dp);
    }
    if (r.tracking) {
        /* The run's end in MLflow: finished with its model, failed, or stopped by the user. */
        const char *status = s == KL_OK ? "FINISHED" : s == KL_ECANCELED ? "KILLED" : "FAILED";
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", kl_errmsg());
        kl_train_tracking_end(r.tracking, status, s == KL_OK ? res : NULL, cfg->output, log,
                              res->run_id);
        r.tracking = NULL;
        kl_seterr(s, "%s", msg); /* keep the training error, not tracking's */
    }
    run_free(&r);
    char msg[2048];
    snprintf(msg, sizeof msg, "%s", kl_errmsg());
    kl_dp_free(&r.dp); /* under MPI: the job's end (MPI_Finalize, or MPI_Abort after a failure) */
    if (s) kl_seterr(s, "%s", msg);
    return s;
}
