/* bundle_mlmodel.c — the MLmodel file: MLflow's YAML model description, flavor "kiln".
 *
 * Written by hand in the shape MLflow's yaml.safe_dump produces (keys sorted, block style,
 * signature schemas as compact JSON strings), so MLflow's UI renders the schema and the
 * registry accepts the directory. No python_function flavor: MLflow's pyfunc cannot load a
 * kiln model, and claiming it would make `mlflow models serve` fail late instead of early.
 * Read with libyaml's document API; only the kiln flavor block matters to kiln.
 */
#include "runtime/bundle_mlmodel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <yaml.h>

#include "runtime/yaml_doc.h" /* kl_yaml_load */

/* 32 lowercase hex digits of a random (version 4) UUID, as Python's uuid4().hex. */
static kl_status uuid4_hex(char out[33]) {
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n <= 0) return kl_seterr(KL_EIO, "getrandom failed while making the model UUID");
        got += (size_t)n;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
    return KL_OK;
}

/* "2025-01-03 10:00:00.000000", as MLflow's str(datetime.utcnow()). */
static void utc_now(char out[64]) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char date[24];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(out, 64, "%s.%06d", date, (int)(ts.tv_nsec / 1000) % 1000000);
}

kl_status kl_mlmodel_render(const kl_bundle *b, char **text) {
    *text = NULL;
    char uuid[33], when[64];
    KL_TRY(uuid4_hex(uuid));
    utc_now(when);
    const kl_mlp_spec *s = &b->spec;
    const char *out_name = s->task == KL_TASK_CLASSIFICATION ? "probabilities" : "predictions";
    /* The schemas are single-quoted YAML scalars; their JSON holds no single quotes. */
    const char *fmt =
        "artifact_path: model\n"
        "flavors:\n"
        "  kiln:\n"
        "    config: " KL_BUNDLE_CONFIG "\n"
        "    data: " KL_BUNDLE_DATA "\n"
        "    format_version: %d\n"
        "    kiln_version: '%s'\n"
        "model_uuid: %s\n"
        "signature:\n"
        "  inputs: '[{\"name\": \"input\", \"type\": \"tensor\", \"tensor-spec\": {\"dtype\": "
        "\"float32\", \"shape\": [-1, %d]}}]'\n"
        "  outputs: '[{\"name\": \"%s\", \"type\": \"tensor\", \"tensor-spec\": {\"dtype\": "
        "\"float32\", \"shape\": [-1, %d]}}]'\n"
        "  params: null\n"
        "utc_time_created: '%s'\n";
    int n = snprintf(NULL, 0, fmt, KL_BUNDLE_FORMAT_VERSION, KILN_VERSION, uuid, s->dims[0],
                     out_name, s->dims[s->n_layers], when);
    char *buf = malloc((size_t)n + 1);
    if (!buf) return kl_seterr(KL_ENOMEM, "out of memory rendering MLmodel");
    snprintf(buf, (size_t)n + 1, fmt, KL_BUNDLE_FORMAT_VERSION, KILN_VERSION, uuid, s->dims[0],
             out_name, s->dims[s->n_layers], when);
    *text = buf;
    return KL_OK;
}

/* The value node of key in a mapping node, or NULL. */
static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map, const char *key) {
    if (!map || map->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && k->data.scalar.length == strlen(key) &&
            !memcmp(k->data.scalar.value, key, k->data.scalar.length))
            return yaml_document_get_node(doc, p->value);
    }
    return NULL;
}

/* Copies a scalar's text into out, or returns NULL when the node is not a short scalar. */
static const char *scalar(yaml_node_t *n, char *out, size_t cap) {
    if (!n || n->type != YAML_SCALAR_NODE || n->data.scalar.length >= cap) return NULL;
    memcpy(out, n->data.scalar.value, n->data.scalar.length);
    out[n->data.scalar.length] = '\0';
    return out;
}

/* A file name that stays inside the bundle directory. */
static int plain_name(const char *s) {
    return s[0] && !strchr(s, '/') && !strchr(s, '\\') && strcmp(s, ".") && strcmp(s, "..");
}

static kl_status check_kiln_flavor(yaml_document_t *doc, kl_mlmodel_info *info) {
    yaml_node_t *root = yaml_document_get_root_node(doc);
    if (!root || root->type != YAML_MAPPING_NODE)
        return kl_seterr(KL_EFORMAT, "not a YAML mapping");
    yaml_node_t *flavors = map_get(doc, root, "flavors");
    if (!flavors || flavors->type != YAML_MAPPING_NODE)
        return kl_seterr(KL_EFORMAT, "field \"flavors\": missing or not a mapping");
    yaml_node_t *kiln = map_get(doc, flavors, "kiln");
    if (!kiln)
        return kl_seterr(KL_EFORMAT,
                         "field \"flavors\": no \"kiln\" flavor (this is not a kiln model)");
    if (kiln->type != YAML_MAPPING_NODE)
        return kl_seterr(KL_EFORMAT, "field \"flavors.kiln\": not a mapping");
    char v[128];
    const char *fv = scalar(map_get(doc, kiln, "format_version"), v, sizeof v);
    if (!fv) return kl_seterr(KL_EFORMAT, "field \"flavors.kiln.format_version\": missing");
    char want[16];
    snprintf(want, sizeof want, "%d", KL_BUNDLE_FORMAT_VERSION);
    if (strcmp(fv, want) != 0)
        return kl_seterr(KL_EUNSUPPORTED,
                         "field \"flavors.kiln.format_version\": \"%s\" is not supported (this "
                         "kiln reads %s)",
                         fv, want);
    if (!scalar(map_get(doc, kiln, "data"), info->data, sizeof info->data) ||
        !plain_name(info->data))
        return kl_seterr(KL_EFORMAT,
                         "field \"flavors.kiln.data\": expected the weights' file name");
    if (!scalar(map_get(doc, kiln, "config"), info->config, sizeof info->config) ||
        !plain_name(info->config))
        return kl_seterr(KL_EFORMAT,
                         "field \"flavors.kiln.config\": expected the config's file name");
    return KL_OK;
}

kl_status kl_mlmodel_parse(const char *text, size_t len, kl_mlmodel_info *info) {
    memset(info, 0, sizeof *info);
    yaml_document_t doc;
    KL_TRY(kl_yaml_load(text, len, &doc));
    kl_status s = check_kiln_flavor(&doc, info);
    yaml_document_delete(&doc);
    return s;
}
