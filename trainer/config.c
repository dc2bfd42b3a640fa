/* config.c — a table of typed keys drives YAML loading, --set overrides, validation and
 * printing, so a new key is one line here. */
#include "trainer/config.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef enum { K_STR, K_ENUM, K_INT, K_FLOAT, K_BOOL, K_LIST } key_type;

typedef struct {
    const char *name;    /* "section.key" */
    key_type type;       /* how the value text is parsed */
    size_t offset;       /* field in kl_train_config */
    const char *allowed; /* K_ENUM: "a|b|c" */
    double min, max;     /* K_INT / K_FLOAT bounds */
    int max_open;        /* 1: value must be < max (not <=) */
    const char *help;    /* what the key means, for error messages */
} key_def;

#define F(field) offsetof(kl_train_config, field)
static const key_def keys[] = {
    {"data.format", K_ENUM, F(data_format), "idx|csv", 0, 0, 0, "dataset file format"},
    {"data.train", K_STR, F(data_train), NULL, 0, 0, 0, "training data file"},
    {"data.train_labels", K_STR, F(data_train_labels), NULL, 0, 0, 0, "IDX labels for train"},
    {"data.test", K_STR, F(data_test), NULL, 0, 0, 0, "held-out test file"},
    {"data.test_labels", K_STR, F(data_test_labels), NULL, 0, 0, 0, "IDX labels for test"},
    {"data.label_column", K_STR, F(data_label_column), NULL, 0, 0, 0, "CSV label column"},
    {"data.categorical", K_LIST, F(data_categorical), NULL, 0, 0, 0, "CSV categorical columns"},
    {"data.label_names", K_LIST, F(data_label_names), NULL, 0, 0, 0, "class names"},
    {"data.val_fraction", K_FLOAT, F(data_val_fraction), NULL, 0, 1, 1, "validation share"},
    {"data.transform", K_ENUM, F(data_transform), "none|standard|minmax", 0, 0, 0, "scaling"},
    {"data.limit", K_INT, F(data_limit), NULL, 0, 1e12, 0, "rows to use (0 = all)"},
    {"model.layers", K_STR, F(model_layers), NULL, 0, 0, 0, "layer sizes, e.g. 784-512-10"},
    {"model.activation", K_ENUM, F(model_activation), "relu|gelu|tanh|sigmoid|identity", 0, 0, 0,
     "hidden activation"},
    {"model.dropout", K_FLOAT, F(model_dropout), NULL, 0, 1, 1, "dropout probability"},
    {"model.task", K_ENUM, F(model_task), "classification|regression", 0, 0, 0, "loss"},
    {"optim.name", K_ENUM, F(optim_name), "adamw|sgd", 0, 0, 0, "optimizer"},
    {"optim.lr", K_FLOAT, F(optim_lr), NULL, 1e-12, 10, 0, "learning rate"},
    {"optim.weight_decay", K_FLOAT, F(optim_weight_decay), NULL, 0, 10, 0, "weight decay"},
    {"optim.beta1", K_FLOAT, F(optim_beta1), NULL, 0, 1, 1, "AdamW beta1"},
    {"optim.beta2", K_FLOAT, F(optim_beta2), NULL, 0, 1, 1, "AdamW beta2"},
    {"optim.eps", K_FLOAT, F(optim_eps), NULL, 1e-30, 1, 0, "AdamW epsilon"},
    {"optim.momentum", K_FLOAT, F(optim_momentum), NULL, 0, 1, 1, "SGD momentum"},
    {"optim.nesterov", K_BOOL, F(optim_nesterov), NULL, 0, 0, 0, "SGD Nesterov"},
    {"optim.clip_norm", K_FLOAT, F(optim_clip_norm), NULL, 0, 1e9, 0, "gradient-norm limit"},
    {"schedule.name", K_ENUM, F(schedule_name), "constant|cosine", 0, 0, 0, "lr schedule"},
    {"schedule.warmup_steps", K_INT, F(schedule_warmup_steps), NULL, 0, 1e12, 0, "warm-up"},
    {"schedule.min_lr", K_FLOAT, F(schedule_min_lr), NULL, 0, 10, 0, "cosine floor"},
    {"train.batch_size", K_INT, F(train_batch_size), NULL, 1, 1 << 20, 0, "rows per step"},
    {"train.epochs", K_INT, F(train_epochs), NULL, 1, 1e6, 0, "epochs"},
    {"train.max_steps", K_INT, F(train_max_steps), NULL, 0, 1e12, 0, "step limit (0 = none)"},
    {"train.seed", K_INT, F(train_seed), NULL, 0, 9007199254740992.0, 0, "random seed"},
    {"train.threads", K_INT, F(train_threads), NULL, 0, 4096, 0, "CPU threads (0 = all)"},
    {"train.device", K_STR, F(train_device), NULL, 0, 0, 0, "auto, cpu, cuda or cuda:N"},
    {"train.precision", K_ENUM, F(train_precision), "fp32|tf32|bf16", 0, 0, 0,
     "GEMM precision on CUDA"},
    {"train.cuda_graph", K_BOOL, F(train_cuda_graph), NULL, 0, 0, 0, "CUDA graph per step"},
    {"train.patience", K_INT, F(train_patience), NULL, 0, 1e6, 0, "early-stopping patience"},
    {"train.checkpoint_every", K_INT, F(train_checkpoint_every), NULL, 0, 1e12, 0,
     "checkpoint interval in steps"},
    {"train.log_every", K_INT, F(train_log_every), NULL, 1, 1e12, 0, "log interval in steps"},
    {"train.progress", K_ENUM, F(train_progress), "auto|bar|plain|none", 0, 0, 0, "progress"},
    {"train.loss_log", K_STR, F(train_loss_log), NULL, 0, 0, 0, "per-step loss CSV"},
    {"train.save_init", K_BOOL, F(train_save_init), NULL, 0, 0, 0, "save initial weights"},
    {"train.comm_timeout", K_FLOAT, F(train_comm_timeout), NULL, 0, 1e6, 0,
     "seconds a rank waits for a peer (0 = forever)"},
    {"train.emulate_ranks", K_INT, F(train_emulate_ranks), NULL, 1, 64, 0,
     "compute each step as N data-parallel ranks would, in one process"},
    {"train.gpu_collectives", K_ENUM, F(train_gpu_collectives), "auto|nccl|host", 0, 0, 0,
     "GPU all-reduce: NCCL across ranks (auto), always (nccl), or via host memory"},
    {"tracking.uri", K_STR, F(tracking_uri), NULL, 0, 0, 0, "MLflow tracking URI"},
    {"tracking.experiment", K_STR, F(tracking_experiment), NULL, 0, 0, 0, "experiment"},
    {"tracking.run_name", K_STR, F(tracking_run_name), NULL, 0, 0, 0, "run name"},
    {"tracking.register", K_STR, F(tracking_register), NULL, 0, 0, 0, "registered model"},
    {"tracking.parent_run", K_STR, F(tracking_parent_run), NULL, 0, 0, 0,
     "parent run id (nested runs)"},
    {"tracking.spool_dir", K_STR, F(tracking_spool_dir), NULL, 0, 0, 0, "spool directory"},
    {"tracking.system_interval", K_FLOAT, F(tracking_system_interval), NULL, 0.1, 3600, 0,
     "seconds between system metric samples"},
    {"output", K_STR, F(output), NULL, 0, 0, 0, "bundle directory"},
};
#undef F
#define NKEYS (sizeof keys / sizeof keys[0])

static char *dupstr(const char *s) {
    return s ? strdup(s) : NULL;
}

static void *field(kl_train_config *c, const key_def *k) {
    return (char *)c + k->offset;
}

static const void *cfield(const kl_train_config *c, const key_def *k) {
    return (const char *)c + k->offset;
}

static void list_clear(kl_cfg_list *l) {
    for (int i = 0; i < l->n; i++)
        free(l->items[i]);
    l->n = 0;
}

static kl_status list_add(kl_cfg_list *l, const char *key, const char *item) {
    if (l->n >= KL_CFG_LIST_MAX)
        return kl_seterr(KL_EINVAL, "%s: more than %d entries", key, KL_CFG_LIST_MAX);
    l->items[l->n++] = strdup(item);
    return KL_OK;
}

void kl_config_init(kl_train_config *c) {
    memset(c, 0, sizeof *c);
    c->data_format = dupstr("idx");
    c->data_label_column = dupstr("label");
    c->data_val_fraction = 0.1;
    c->data_transform = dupstr("standard");
    c->model_layers = dupstr("784-512-256-10");
    c->model_activation = dupstr("relu");
    c->model_task = dupstr("classification");
    c->optim_name = dupstr("adamw");
    c->optim_lr = 1e-3;
    c->optim_weight_decay = 0.01;
    c->optim_beta1 = 0.9;
    c->optim_beta2 = 0.999;
    c->optim_eps = 1e-8;
    c->optim_momentum = 0.9;
    c->schedule_name = dupstr("constant");
    c->train_batch_size = 256;
    c->train_epochs = 10;
    c->train_seed = 42;
    c->train_threads = 0;
    c->train_device = dupstr("auto");
    c->train_precision = dupstr("fp32");
    c->train_cuda_graph = 1;
    c->train_log_every = 100;
    c->train_comm_timeout = 60;
    c->train_emulate_ranks = 1;
    c->train_gpu_collectives = dupstr("auto");
    c->train_progress = dupstr("auto");
    c->tracking_experiment = dupstr("kiln");
    c->tracking_system_interval = 10.0;
    c->output = dupstr("out/model");
}

void kl_config_free(kl_train_config *c) {
    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].type == K_STR || keys[i].type == K_ENUM) free(*(char **)field(c, &keys[i]));
        if (keys[i].type == K_LIST) list_clear(field(c, &keys[i]));
    }
    memset(c, 0, sizeof *c);
}

static const key_def *find_key(const char *name) {
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].name, name) == 0) return &keys[i];
    return NULL;
}

/* "unknown key "optim.lrate"; keys in optim: name, lr, ..." */
static kl_status unknown_key(const char *name) {
    char section[64] = "";
    const char *dot = strchr(name, '.');
    if (dot && (size_t)(dot - name) < sizeof section) memcpy(section, name, (size_t)(dot - name));
    char known[1024] = "";
    size_t off = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        const char *kd = strchr(keys[i].name, '.');
        int same = section[0] ? (kd && strncmp(keys[i].name, section, strlen(section)) == 0 &&
                                 keys[i].name[strlen(section)] == '.')
                              : 1;
        if (!same) continue;
        off += (size_t)snprintf(known + off, sizeof known - off, "%s%s", off ? ", " : "",
                                keys[i].name);
        if (off >= sizeof known) break;
    }
    return kl_seterr(KL_EINVAL, "unknown key \"%s\"; known keys%s%s: %s", name,
                     section[0] ? " in " : "", section, known);
}

static int parse_bool(const char *v, int *out) {
    if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes") || !strcmp(v, "on")) {
        *out = 1;
        return 0;
    }
    if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "off")) {
        *out = 0;
        return 0;
    }
    return -1;
}

static int enum_allows(const char *allowed, const char *v) {
    size_t n = strlen(v);
    const char *p = allowed;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0) return 1;
        if (!bar) break;
        p = bar + 1;
    }
    return 0;
}

/* Sets one scalar value (for K_LIST: the whole list from comma-separated text, or one item
 * when append is set). */
static kl_status set_value(kl_train_config *c, const key_def *k, const char *v, int append) {
    char *end = NULL;
    switch (k->type) {
    case K_STR:
        free(*(char **)field(c, k));
        *(char **)field(c, k) = (v && *v) ? strdup(v) : NULL;
        return KL_OK;
    case K_ENUM: {
        if (!enum_allows(k->allowed, v)) {
            char list[256];
            snprintf(list, sizeof list, "%s", k->allowed);
            for (char *q = list; *q; q++)
                if (*q == '|') *q = ',';
            return kl_seterr(KL_EINVAL, "%s: \"%s\" is not one of %s", k->name, v, list);
        }
        free(*(char **)field(c, k));
        *(char **)field(c, k) = strdup(v);
        return KL_OK;
    }
    case K_INT: {
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (end == v || *end || errno)
            return kl_seterr(KL_EINVAL, "%s: \"%s\" is not an integer (%s)", k->name, v, k->help);
        if (x < k->min || x > k->max)
            return kl_seterr(KL_EINVAL, "%s: %lld outside [%.0f, %.0f] (%s)", k->name, x, k->min,
                             k->max, k->help);
        *(int64_t *)field(c, k) = x;
        return KL_OK;
    }
    case K_FLOAT: {
        errno = 0;
        double x = strtod(v, &end);
        if (end == v || *end || errno || !isfinite(x))
            return kl_seterr(KL_EINVAL, "%s: \"%s\" is not a number (%s)", k->name, v, k->help);
        if (x < k->min || x > k->max || (k->max_open && x >= k->max))
            return kl_seterr(KL_EINVAL, "%s: %g outside [%g, %g%s (%s)", k->name, x, k->min, k->max,
                             k->max_open ? ")" : "]", k->help);
        *(double *)field(c, k) = x;
        return KL_OK;
    }
    case K_BOOL: {
        int b;
        if (parse_bool(v, &b))
            return kl_seterr(KL_EINVAL, "%s: \"%s\" is not true or false", k->name, v);
        *(int *)field(c, k) = b;
        return KL_OK;
    }
    case K_LIST: {
        kl_cfg_list *l = field(c, k);
        if (append) return list_add(l, k->name, v);
        list_clear(l);
        char *copy = strdup(v), *save = NULL;
        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            while (*tok == ' ')
                tok++;
            kl_status s = list_add(l, k->name, tok);
            if (s) {
                free(copy);
                return s;
            }
        }
        free(copy);
        return KL_OK;
    }
    }
    return kl_seterr(KL_EINTERNAL, "%s: bad key type", k->name);
}

kl_status kl_config_set(kl_train_config *c, const char *assignment) {
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return kl_seterr(KL_EINVAL, "--set \"%s\": expected key=value", assignment);
    char name[128];
    size_t n = (size_t)(eq - assignment);
    if (n >= sizeof name) return kl_seterr(KL_EINVAL, "--set: key too long");
    memcpy(name, assignment, n);
    name[n] = '\0';
    const key_def *k = find_key(name);
    if (!k) return unknown_key(name);
    return set_value(c, k, eq + 1, 0);
}

/* ---- YAML ---------------------------------------------------------------------------------- */

static kl_status yaml_walk(kl_train_config *c, yaml_document_t *doc, yaml_node_t *node,
                           const char *prefix, const char *path);

static kl_status yaml_scalar_or_list(kl_train_config *c, yaml_document_t *doc, yaml_node_t *node,
                                     const char *key, const char *path) {
    const key_def *k = find_key(key);
    if (!k) return kl_preferr(unknown_key(key), "%s: line %lu", path, node->start_mark.line + 1);
    kl_status s = KL_OK;
    if (node->type == YAML_SCALAR_NODE) {
        s = set_value(c, k, (const char *)node->data.scalar.value, 0);
    } else if (node->type == YAML_SEQUENCE_NODE && k->type == K_LIST) {
        list_clear(field(c, k));
        for (yaml_node_item_t *it = node->data.sequence.items.start;
             it < node->data.sequence.items.top && !s; it++) {
            yaml_node_t *item = yaml_document_get_node(doc, *it);
            if (!item || item->type != YAML_SCALAR_NODE)
                s = kl_seterr(KL_EINVAL, "%s: list entries must be plain values", key);
            else
                s = set_value(c, k, (const char *)item->data.scalar.value, 1);
        }
    } else {
        s = kl_seterr(KL_EINVAL, "%s: expected a %s", key, k->type == K_LIST ? "list" : "value");
    }
    if (s) return kl_preferr(s, "%s: line %lu", path, node->start_mark.line + 1);
    return KL_OK;
}

static kl_status yaml_walk(kl_train_config *c, yaml_document_t *doc, yaml_node_t *node,
                           const char *prefix, const char *path) {
    if (node->type != YAML_MAPPING_NODE) return yaml_scalar_or_list(c, doc, node, prefix, path);
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = yaml_document_get_node(doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(doc, p->value);
        if (!kn || kn->type != YAML_SCALAR_NODE || !vn)
            return kl_seterr(KL_EFORMAT, "%s: line %lu: keys must be plain names", path,
                             kn ? kn->start_mark.line + 1 : 0);
        char key[128];
        snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "",
                 (const char *)kn->data.scalar.value);
        /* An empty value ("test:") leaves the default. */
        if (vn->type == YAML_SCALAR_NODE && vn->data.scalar.length == 0 && find_key(key) &&
            find_key(key)->type != K_STR)
            continue;
        if (vn->type == YAML_MAPPING_NODE && find_key(key))
            return kl_seterr(KL_EINVAL, "%s: line %lu: %s: expected a value, found a mapping", path,
                             vn->start_mark.line + 1, key);
        KL_TRY(yaml_walk(c, doc, vn, key, path));
    }
    return KL_OK;
}

kl_status kl_config_load_yaml(kl_train_config *c, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return kl_seterr(KL_EIO, "config \"%s\": cannot open", path);
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    kl_status s = KL_OK;
    if (!yaml_parser_load(&parser, &doc)) {
        s = kl_seterr(KL_EFORMAT, "%s: line %lu column %lu: %s", path,
                      (unsigned long)parser.problem_mark.line + 1,
                      (unsigned long)parser.problem_mark.column + 1,
                      parser.problem ? parser.problem : "YAML syntax error");
        yaml_parser_delete(&parser);
        fclose(f);
        return s;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root)
        s = kl_seterr(KL_EFORMAT, "%s: empty config", path);
    else if (root->type != YAML_MAPPING_NODE)
        s = kl_seterr(KL_EFORMAT, "%s: the top level must be a mapping (data:, model:, ...)", path);
    else
        s = yaml_walk(c, &doc, root, "", path);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
    return s;
}

kl_status kl_config_validate(const kl_train_config *c) {
    if (!c->data_train) return kl_seterr(KL_EINVAL, "data.train: required (the training file)");
    if (!strcmp(c->data_format, "idx") && !c->data_train_labels)
        return kl_seterr(KL_EINVAL, "data.train_labels: required when data.format is idx");
    if (!strcmp(c->data_format, "idx") && c->data_test && !c->data_test_labels)
        return kl_seterr(KL_EINVAL, "data.test_labels: required when data.test is an IDX file");
    if (!c->output) return kl_seterr(KL_EINVAL, "output: required (the bundle directory)");
    if (!c->model_layers) return kl_seterr(KL_EINVAL, "model.layers: required");
    if (c->train_patience > 0 && c->data_val_fraction <= 0)
        return kl_seterr(KL_EINVAL, "train.patience: early stopping needs data.val_fraction > 0");
    if (!strcmp(c->schedule_name, "cosine") && c->schedule_min_lr > c->optim_lr)
        return kl_seterr(KL_EINVAL, "schedule.min_lr: %g exceeds optim.lr %g", c->schedule_min_lr,
                         c->optim_lr);
    return KL_OK;
}

static void value_text(const kl_train_config *c, const key_def *k, char *buf, size_t cap) {
    const void *f = cfield(c, k);
    switch (k->type) {
    case K_STR:
    case K_ENUM:
        snprintf(buf, cap, "%s", *(char *const *)f ? *(char *const *)f : "");
        break;
    case K_INT:
        snprintf(buf, cap, "%lld", (long long)*(const int64_t *)f);
        break;
    case K_FLOAT:
        snprintf(buf, cap, "%.17g", *(const double *)f);
        break;
    case K_BOOL:
        snprintf(buf, cap, "%s", *(const int *)f ? "true" : "false");
        break;
    case K_LIST: {
        const kl_cfg_list *l = f;
        size_t off = 0;
        buf[0] = '\0';
        for (int i = 0; i < l->n && off < cap; i++)
            off += (size_t)snprintf(buf + off, cap - off, "%s%s", i ? "," : "", l->items[i]);
        break;
    }
    }
}

void kl_config_each(const kl_train_config *c,
                    void (*fn)(const char *key, const char *value, void *user), void *user) {
    char buf[4096];
    for (size_t i = 0; i < NKEYS; i++) {
        value_text(c, &keys[i], buf, sizeof buf);
        fn(keys[i].name, buf, user);
    }
}

void kl_config_write_yaml(const kl_train_config *c, FILE *f) {
    char buf[4096];
    char section[64] = "";
    for (size_t i = 0; i < NKEYS; i++) {
        const char *dot = strchr(keys[i].name, '.');
        value_text(c, &keys[i], buf, sizeof buf);
        if (!dot) {
            fprintf(f, "%s: \"%s\"\n", keys[i].name, buf);
            section[0] = '\0';
            continue;
        }
        size_t n = (size_t)(dot - keys[i].name);
        if (strncmp(section, keys[i].name, n) != 0 || section[n] != '\0') {
            memcpy(section, keys[i].name, n);
            section[n] = '\0';
            fprintf(f, "%s:\n", section);
        }
        if (keys[i].type == K_LIST) {
            const kl_cfg_list *l = cfield(c, &keys[i]);
            fprintf(f, "  %s: [", dot + 1);
            for (int j = 0; j < l->n; j++)
                fprintf(f, "%s\"%s\"", j ? ", " : "", l->items[j]);
            fprintf(f, "]\n");
        } else if (keys[i].type == K_STR || keys[i].type == K_ENUM) {
            fprintf(f, "  %s: \"%s\"\n", dot + 1, buf);
        } else {
            fprintf(f, "  %s: %s\n", dot + 1, buf);
        }
    }
}
