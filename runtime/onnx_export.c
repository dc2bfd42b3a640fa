/* onnx_export.c — a bundle's model as an ONNX file (IR version 8, opset 17).
 *
 * The graph: input "input" float32 [batch, D] → Sub(shift) → Mul(scale) (when the bundle has
 * an affine transform) → per layer Gemm(transB=1) with W [out,in] and b [out] as initializers
 * → the hidden activation → ... → Softmax(axis=1) "probabilities" (classification) or the last
 * Gemm's output "predictions" (regression).
 *
 * Exact GELU is spelled 0.5 * x * (1 + Erf(x / sqrt 2)) because the Gelu operator only exists
 * from opset 20; Erf (opset 9+) keeps the file loadable by older runtimes and matches kiln's
 * erf-based GELU instead of the tanh approximation.
 *
 * Everything is built in one heap-allocated builder of fixed arrays (sized by KL_MAX_LAYERS),
 * so the protobuf-c structs need no per-node allocation and are freed at once.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "proto/onnx.pb-c.h"
#include "runtime/bundle.h"
#include "runtime/fileio.h"

#define ONNX_IR_VERSION 8
#define ONNX_OPSET 17
#define MAX_NODES (3 + 6 * KL_MAX_LAYERS) /* Sub, Mul, Softmax + up to 6 per layer (GELU) */
#define MAX_INITS (5 + 2 * KL_MAX_LAYERS) /* shift, scale, 3 GELU constants, W and b each */
#define NAME_CAP 40

typedef struct {
    Onnx__NodeProto node[MAX_NODES];           /* the graph's nodes, in order */
    Onnx__NodeProto *node_ptr[MAX_NODES];      /* pointers for GraphProto.node */
    char *in_ptr[MAX_NODES][3];                /* each node's input names */
    char *out_ptr[MAX_NODES][1];               /* each node's output name */
    char node_name[MAX_NODES][NAME_CAP];       /* node names, unique */
    char value_name[MAX_NODES][NAME_CAP];      /* each node's output value name */
    Onnx__AttributeProto attr[MAX_NODES];      /* at most one attribute per node */
    Onnx__AttributeProto *attr_ptr[MAX_NODES]; /* pointers for NodeProto.attribute */
    int n_nodes;                               /* nodes used */
    Onnx__TensorProto init[MAX_INITS];         /* initializers (weights, constants) */
    Onnx__TensorProto *init_ptr[MAX_INITS];    /* pointers for GraphProto.initializer */
    int64_t init_dims[MAX_INITS][2];           /* their dims */
    char init_name[MAX_INITS][NAME_CAP];       /* their names */
    int n_inits;                               /* initializers used */
    uint8_t *raw;                              /* little-endian bytes of all initializers */
    size_t raw_used;                           /* bytes of raw filled */
} onnx_builder;

/* Adds a float32 initializer (little-endian raw_data) and returns its name. */
static char *add_init(onnx_builder *g, const char *name, int ndim, const int64_t *dims,
                      const float *data, int64_t n) {
    int i = g->n_inits++;
    Onnx__TensorProto *t = &g->init[i];
    onnx__tensor_proto__init(t);
    snprintf(g->init_name[i], NAME_CAP, "%s", name);
    for (int d = 0; d < ndim; d++)
        g->init_dims[i][d] = dims[d];
    t->name = g->init_name[i];
    t->n_dims = (size_t)ndim;
    t->dims = g->init_dims[i];
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->has_raw_data = 1;
    t->raw_data.data = g->raw + g->raw_used;
    t->raw_data.len = (size_t)n * 4;
    for (int64_t k = 0; k < n; k++) {
        uint32_t u;
        memcpy(&u, &data[k], 4);
        for (int byte = 0; byte < 4; byte++)
            g->raw[g->raw_used++] = (uint8_t)(u >> (8 * byte));
    }
    g->init_ptr[i] = t;
    return g->init_name[i];
}

/* Adds a node op(a, b, c) (b and c may be NULL) with an optional int attribute; its output is
 * named out (or after the node when out is NULL). Returns the output's name. */
static char *add_node(onnx_builder *g, const char *op, const char *name, const char *out, char *a,
                      char *b, char *c, const char *attr, int64_t attr_value) {
    int i = g->n_nodes++;
    Onnx__NodeProto *n = &g->node[i];
    onnx__node_proto__init(n);
    snprintf(g->node_name[i], NAME_CAP, "%s", name);
    snprintf(g->value_name[i], NAME_CAP, "%s", out ? out : name);
    n->name = g->node_name[i];
    n->op_type = (char *)op;
    g->in_ptr[i][0] = a;
    g->in_ptr[i][1] = b;
    g->in_ptr[i][2] = c;
    n->n_input = c ? 3 : b ? 2 : 1;
    n->input = g->in_ptr[i];
    g->out_ptr[i][0] = g->value_name[i];
    n->n_output = 1;
    n->output = g->out_ptr[i];
    if (attr) {
        Onnx__AttributeProto *at = &g->attr[i];
        onnx__attribute_proto__init(at);
        at->name = (char *)attr;
        at->has_type = 1;
        at->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
        at->has_i = 1;
        at->i = attr_value;
        g->attr_ptr[i] = at;
        n->n_attribute = 1;
        n->attribute = &g->attr_ptr[i];
    }
    g->node_ptr[i] = n;
    return g->value_name[i];
}

/* Appends the hidden activation after value z of layer l; returns the activated value. */
static char *add_activation(onnx_builder *g, kl_act act, int l, char *z, char *consts[3]) {
    char name[NAME_CAP], out[NAME_CAP];
    snprintf(out, sizeof out, "act%d", l);
    switch (act) {
    case KL_ACT_IDENTITY:
        return z;
    case KL_ACT_RELU:
        return add_node(g, "Relu", out, NULL, z, NULL, NULL, NULL, 0);
    case KL_ACT_TANH:
        return add_node(g, "Tanh", out, NULL, z, NULL, NULL, NULL, 0);
    case KL_ACT_SIGMOID:
        return add_node(g, "Sigmoid", out, NULL, z, NULL, NULL, NULL, 0);
    case KL_ACT_GELU: {
        /* consts: sqrt(2), 1, 0.5 */
        snprintf(name, sizeof name, "gelu%d_div", l);
        char *t = add_node(g, "Div", name, NULL, z, consts[0], NULL, NULL, 0);
        snprintf(name, sizeof name, "gelu%d_erf", l);
        t = add_node(g, "Erf", name, NULL, t, NULL, NULL, NULL, 0);
        snprintf(name, sizeof name, "gelu%d_add", l);
        t = add_node(g, "Add", name, NULL, t, consts[1], NULL, NULL, 0);
        snprintf(name, sizeof name, "gelu%d_mul", l);
        t = add_node(g, "Mul", name, NULL, z, t, NULL, NULL, 0);
        return add_node(g, "Mul", out, NULL, t, consts[2], NULL, NULL, 0);
    }
    }
    return z;
}

/* A float32 [batch, cols] value description. */
typedef struct {
    Onnx__ValueInfoProto info;                     /* the value */
    Onnx__TypeProto type;                          /* its type */
    Onnx__TypeProto__Tensor tensor;                /* tensor type */
    Onnx__TensorShapeProto shape;                  /* its shape */
    Onnx__TensorShapeProto__Dimension dim[2];      /* batch (symbolic), cols */
    Onnx__TensorShapeProto__Dimension *dim_ptr[2]; /* pointers for the shape */
} value_info;

static void make_value_info(value_info *v, const char *name, int64_t cols) {
    onnx__value_info_proto__init(&v->info);
    onnx__type_proto__init(&v->type);
    onnx__type_proto__tensor__init(&v->tensor);
    onnx__tensor_shape_proto__init(&v->shape);
    for (int i = 0; i < 2; i++) {
        onnx__tensor_shape_proto__dimension__init(&v->dim[i]);
        v->dim_ptr[i] = &v->dim[i];
    }
    v->dim[0].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
    v->dim[0].dim_param = (char *)"batch";
    v->dim[1].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    v->dim[1].dim_value = cols;
    v->shape.n_dim = 2;
    v->shape.dim = v->dim_ptr;
    v->tensor.has_elem_type = 1;
    v->tensor.elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    v->tensor.shape = &v->shape;
    v->type.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    v->type.tensor_type = &v->tensor;
    v->info.name = (char *)name;
    v->info.type = &v->type;
}

/* Builds the graph's nodes and initializers into g. Returns the output value's name. */
static char *build_graph(onnx_builder *g, const kl_bundle *b) {
    const kl_mlp_spec *s = &b->spec;
    int64_t d = b->n_features;
    char *x = (char *)"input";
    if (strcmp(b->transform, "none") != 0) {
        char *shift = add_init(g, "shift", 1, &d, b->shift, d);
        char *scale = add_init(g, "scale", 1, &d, b->scale, d);
        x = add_node(g, "Sub", "centered", NULL, x, shift, NULL, NULL, 0);
        x = add_node(g, "Mul", "features", NULL, x, scale, NULL, NULL, 0);
    }
    char *consts[3] = {NULL, NULL, NULL};
    if (s->act == KL_ACT_GELU && s->n_layers > 1) {
        const float c[3] = {(float)sqrt(2.0), 1.0f, 0.5f};
        consts[0] = add_init(g, "gelu_sqrt2", 0, NULL, &c[0], 1);
        consts[1] = add_init(g, "gelu_one", 0, NULL, &c[1], 1);
        consts[2] = add_init(g, "gelu_half", 0, NULL, &c[2], 1);
    }
    const char *final = s->task == KL_TASK_CLASSIFICATION ? "logits" : "predictions";
    const float *p = b->params;
    for (int l = 0; l < s->n_layers; l++) {
        int64_t in = s->dims[l], out = s->dims[l + 1];
        int64_t wdims[2] = {out, in};
        char name[NAME_CAP];
        snprintf(name, sizeof name, "fc%d.weight", l + 1);
        char *w = add_init(g, name, 2, wdims, p, out * in);
        p += out * in;
        snprintf(name, sizeof name, "fc%d.bias", l + 1);
        char *bias = add_init(g, name, 1, &out, p, out);
        p += out;
        snprintf(name, sizeof name, "fc%d", l + 1);
        int last = l == s->n_layers - 1;
        x = add_node(g, "Gemm", name, last ? final : NULL, x, w, bias, "transB", 1);
        if (!last) x = add_activation(g, s->act, l + 1, x, consts);
    }
    if (s->task == KL_TASK_CLASSIFICATION)
        x = add_node(g, "Softmax", "softmax", "probabilities", x, NULL, NULL, "axis", 1);
    return x;
}

/* Labels as a JSON array, for the model's metadata (malloc'd, or NULL). */
static char *labels_json(const kl_bundle *b) {
    cJSON *a = cJSON_CreateStringArray((const char *const *)b->label_names, b->n_labels);
    char *s = a ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    return s;
}

static kl_status pack_and_write(onnx_builder *g, const kl_bundle *b, char *output,
                                const char *path) {
    const kl_mlp_spec *s = &b->spec;
    value_info vin, vout;
    make_value_info(&vin, "input", s->dims[0]);
    make_value_info(&vout, output, s->dims[s->n_layers]);
    Onnx__ValueInfoProto *in_ptr = &vin.info, *out_ptr = &vout.info;

    Onnx__GraphProto graph = ONNX__GRAPH_PROTO__INIT;
    graph.name = (char *)"kiln_mlp";
    graph.n_node = (size_t)g->n_nodes;
    graph.node = g->node_ptr;
    graph.n_initializer = (size_t)g->n_inits;
    graph.initializer = g->init_ptr;
    graph.n_input = 1;
    graph.input = &in_ptr;
    graph.n_output = 1;
    graph.output = &out_ptr;

    Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT;
    opset.domain = (char *)"";
    opset.has_version = 1;
    opset.version = ONNX_OPSET;
    Onnx__OperatorSetIdProto *opset_ptr = &opset;

    char layers[256];
    char *labels = b->n_labels ? labels_json(b) : NULL;
    Onnx__StringStringEntryProto meta[4] = {
        ONNX__STRING_STRING_ENTRY_PROTO__INIT, ONNX__STRING_STRING_ENTRY_PROTO__INIT,
        ONNX__STRING_STRING_ENTRY_PROTO__INIT, ONNX__STRING_STRING_ENTRY_PROTO__INIT};
    Onnx__StringStringEntryProto *meta_ptr[4];
    meta[0].key = (char *)"kiln.task";
    meta[0].value = (char *)(s->task == KL_TASK_CLASSIFICATION ? "classification" : "regression");
    meta[1].key = (char *)"kiln.layers";
    meta[1].value = (char *)kl_mlp_layers_str(s, layers, sizeof layers);
    meta[2].key = (char *)"kiln.activation";
    meta[2].value = (char *)kl_act_name(s->act);
    meta[3].key = (char *)"kiln.labels";
    meta[3].value = labels;
    size_t n_meta = labels ? 4 : 3;
    for (size_t i = 0; i < n_meta; i++)
        meta_ptr[i] = &meta[i];

    Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
    model.has_ir_version = 1;
    model.ir_version = ONNX_IR_VERSION;
    model.n_opset_import = 1;
    model.opset_import = &opset_ptr;
    model.producer_name = (char *)"kiln";
    model.producer_version = (char *)KILN_VERSION;
    model.doc_string = (char *)"kiln MLP: input (raw features) -> (x - shift) * scale -> "
                               "Gemm/activation layers -> softmax (classification)";
    model.graph = &graph;
    model.n_metadata_props = n_meta;
    model.metadata_props = meta_ptr;

    size_t len = onnx__model_proto__get_packed_size(&model);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        free(labels);
        return kl_seterr(KL_ENOMEM, "cannot allocate %zu bytes for the ONNX file", len);
    }
    onnx__model_proto__pack(&model, buf);
    free(labels);
    kl_status st = kl_file_write_atomic(path, buf, len);
    free(buf);
    return st;
}

kl_status kl_bundle_export_onnx(const kl_bundle *b, const char *path) {
    kl_status st = kl_mlp_spec_validate(&b->spec);
    if (st) return kl_preferr(st, "export ONNX \"%s\"", path);
    if (!b->params || b->n_features != b->spec.dims[0])
        return kl_seterr(KL_EINVAL, "export ONNX \"%s\": the bundle has no parameters", path);
    if (strcmp(b->transform, "none") != 0 && (!b->shift || !b->scale))
        return kl_seterr(KL_EINVAL, "export ONNX \"%s\": transform \"%s\" without shift/scale",
                         path, b->transform);
    /* Protobuf messages are limited to 2 GiB; ONNX then needs external data, which kiln's
     * models do not reach. */
    int64_t floats = b->n_params + 2 * (int64_t)b->n_features + 3;
    if (floats * 4 > ((int64_t)1 << 31) - (1 << 20))
        return kl_seterr(KL_EUNSUPPORTED,
                         "export ONNX \"%s\": %lld parameters exceed the 2 GiB protobuf limit",
                         path, (long long)b->n_params);
    onnx_builder *g = calloc(1, sizeof *g);
    if (!g) return kl_seterr(KL_ENOMEM, "export ONNX \"%s\": out of memory", path);
    g->raw = malloc((size_t)floats * 4);
    if (!g->raw) {
        free(g);
        return kl_seterr(KL_ENOMEM, "export ONNX \"%s\": out of memory", path);
    }
    char *output = build_graph(g, b);
    st = pack_and_write(g, b, output, path);
    free(g->raw);
    free(g);
    return st ? kl_preferr(st, "export ONNX \"%s\"", path) : KL_OK;
}
