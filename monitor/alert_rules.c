/* alert_rules.c — parsing the alerts YAML, comparisons and histogram quantiles (see
 * alert_rules.h). */
#include "monitor/alert_rules.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fileio.h"   /* kl_file_read */
#include "runtime/yaml_doc.h" /* kl_yaml_load, kl_yaml_scalar */

/* --- small parsers ---------------------------------------------------------------------------- */

kl_status kl_alert_parse_duration(const char *text, double *seconds) {
    char *end = NULL;
    errno = 0;
    double v = text ? strtod(text, &end) : NAN;
    if (!text || end == text || errno || !isfinite(v) || v < 0)
        return kl_seterr(KL_EINVAL, "\"%s\" is not a duration (30s, 5m, 1h, 250ms)",
                         text ? text : "(not a scalar)");
    double unit = 1;
    if (!strcmp(end, "ms"))
        unit = 1e-3;
    else if (!strcmp(end, "m"))
        unit = 60;
    else if (!strcmp(end, "h"))
        unit = 3600;
    else if (*end && strcmp(end, "s") != 0)
        return kl_seterr(KL_EINVAL, "\"%s\" is not a duration (30s, 5m, 1h, 250ms)", text);
    *seconds = v * unit;
    return KL_OK;
}

static const char *cmp_names[] = {">", ">=", "<", "<=", "==", "!="};

const char *kl_alert_cmp_name(kl_alert_cmp cmp) {
    return (unsigned)cmp < sizeof cmp_names / sizeof *cmp_names ? cmp_names[cmp] : "?";
}

int kl_alert_compare(kl_alert_cmp cmp, double v, double t) {
    if (isnan(v) || isnan(t)) return 0;
    switch (cmp) {
    case KL_CMP_GT:
        return v > t;
    case KL_CMP_GE:
        return v >= t;
    case KL_CMP_LT:
        return v < t;
    case KL_CMP_LE:
        return v <= t;
    case KL_CMP_EQ:
        return v == t;
    case KL_CMP_NE:
        return v != t;
    }
    return 0;
}

double kl_histogram_quantile(double q, const double *bounds, size_t n_bounds,
                             const double *cumulative) {
    double total = cumulative[n_bounds];
    if (!(total > 0) || !(q > 0) || q > 1) return NAN;
    double rank = q * total;
    size_t b = 0;
    while (b < n_bounds && cumulative[b] < rank)
        b++;
    if (b == n_bounds) return n_bounds ? bounds[n_bounds - 1] : NAN; /* the +Inf bucket */
    double lo = b ? bounds[b - 1] : (bounds[0] < 0 ? bounds[0] : 0);
    double below = b ? cumulative[b - 1] : 0;
    double in_bucket = cumulative[b] - below;
    if (in_bucket <= 0) return bounds[b];
    return lo + (bounds[b] - lo) * (rank - below) / in_bucket;
}

/* --- YAML ------------------------------------------------------------------------------------- */

#define scalar kl_yaml_scalar

/* The `where` prefix of error messages: "alerts.rules[2] (HighLatency).for". */
static kl_status bad(const char *where, const char *key, const char *why) {
    return kl_seterr(KL_EINVAL, "%s.%s: %s", where, key, why);
}

static kl_status copy(const char *where, const char *key, const char *v, char *dst, size_t cap) {
    if (!v || !*v) return bad(where, key, "expected a non-empty string");
    if (strlen(v) >= cap) return bad(where, key, "too long");
    snprintf(dst, cap, "%s", v);
    return KL_OK;
}

static kl_status number(const char *where, const char *key, const char *v, double *out) {
    char *end = NULL;
    errno = 0;
    double x = v ? strtod(v, &end) : NAN;
    if (!v || end == v || *end || errno || !isfinite(x)) {
        char why[160];
        snprintf(why, sizeof why, "\"%s\" is not a number", v ? v : "(not a scalar)");
        return bad(where, key, why);
    }
    *out = x;
    return KL_OK;
}

static kl_status duration(const char *where, const char *key, const char *v, double *out) {
    if (kl_alert_parse_duration(v, out) == KL_OK) return KL_OK;
    char why[300];
    snprintf(why, sizeof why, "%s", kl_errmsg());
    return bad(where, key, why);
}

static kl_status boolean(const char *where, const char *key, const char *v, int *out) {
    if (v && (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on"))) {
        *out = 1;
        return KL_OK;
    }
    if (v && (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off"))) {
        *out = 0;
        return KL_OK;
    }
    return bad(where, key, "expected true or false");
}

static int name_ok(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-'))
            return 0;
    return 1;
}

static int metric_name_ok(const char *s) {
    if (!*s || (*s >= '0' && *s <= '9')) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == ':'))
            return 0;
    return 1;
}

#define FOR_PAIRS(map, p)                                                                          \
    for (yaml_node_pair_t *p = (map)->data.mapping.pairs.start; p < (map)->data.mapping.pairs.top; \
         p++)

static kl_status parse_labels(const char *where, yaml_document_t *d, yaml_node_t *map,
                              kl_alert_rule *r) {
    if (map->type != YAML_MAPPING_NODE)
        return bad(where, "labels", "expected a mapping of label: value");
    FOR_PAIRS(map, p) {
        const char *k = scalar(yaml_document_get_node(d, p->key));
        const char *v = scalar(yaml_document_get_node(d, p->value));
        if (r->n_match == KL_ALERT_MAX_MATCH) return bad(where, "labels", "more than 8 labels");
        KL_TRY(copy(where, "labels", k, r->match_name[r->n_match], sizeof r->match_name[0]));
        if (!v) return bad(where, "labels", "label values must be strings");
        if (strlen(v) >= sizeof r->match_value[0]) return bad(where, "labels", "value too long");
        snprintf(r->match_value[r->n_match], sizeof r->match_value[0], "%s", v);
        r->n_match++;
    }
    return KL_OK;
}

static kl_status parse_rule(int index, yaml_document_t *d, yaml_node_t *map, kl_alert_rule *r) {
    char where[160];
    snprintf(where, sizeof where, "alerts.rules[%d]", index);
    if (map->type != YAML_MAPPING_NODE)
        return kl_seterr(KL_EINVAL, "%s: expected a mapping", where);
    memset(r, 0, sizeof *r);
    r->quantile = -1;
    r->window_s = 300;
    snprintf(r->severity, sizeof r->severity, "warning");
    /* The name first, so every later message names the rule. */
    FOR_PAIRS(map, p) {
        const char *k = scalar(yaml_document_get_node(d, p->key));
        if (k && !strcmp(k, "name")) {
            const char *v = scalar(yaml_document_get_node(d, p->value));
            KL_TRY(copy(where, "name", v, r->name, sizeof r->name));
            if (!name_ok(r->name)) return bad(where, "name", "use letters, digits, _ and - only");
        }
    }
    if (!r->name[0]) return bad(where, "name", "missing");
    size_t wl = strlen(where);
    snprintf(where + wl, sizeof where - wl, " (%s)", r->name);
    int have_metric = 0, have_cmp = 0, have_threshold = 0;
    FOR_PAIRS(map, p) {
        const char *k = scalar(yaml_document_get_node(d, p->key));
        yaml_node_t *vn = yaml_document_get_node(d, p->value);
        const char *v = scalar(vn);
        if (!k) return kl_seterr(KL_EINVAL, "%s: keys must be strings", where);
        if (!strcmp(k, "name")) {
            continue;
        } else if (!strcmp(k, "metric")) {
            KL_TRY(copy(where, k, v, r->metric, sizeof r->metric));
            if (!metric_name_ok(r->metric)) return bad(where, k, "not a Prometheus metric name");
            have_metric = 1;
        } else if (!strcmp(k, "labels")) {
            KL_TRY(parse_labels(where, d, vn, r));
        } else if (!strcmp(k, "comparison")) {
            int found = 0;
            for (int c = 0; c < 6 && v; c++)
                if (!strcmp(v, cmp_names[c])) r->cmp = (kl_alert_cmp)c, found = 1;
            if (!found) return bad(where, k, "expected one of > >= < <= == !=");
            have_cmp = 1;
        } else if (!strcmp(k, "threshold")) {
            KL_TRY(number(where, k, v, &r->threshold));
            have_threshold = 1;
        } else if (!strcmp(k, "for")) {
            KL_TRY(duration(where, k, v, &r->for_s));
        } else if (!strcmp(k, "window")) {
            KL_TRY(duration(where, k, v, &r->window_s));
            if (r->window_s <= 0) return bad(where, k, "must be longer than 0");
        } else if (!strcmp(k, "quantile")) {
            KL_TRY(number(where, k, v, &r->quantile));
            if (!(r->quantile > 0 && r->quantile <= 1)) return bad(where, k, "must be in (0, 1]");
        } else if (!strcmp(k, "severity")) {
            if (!v || (strcmp(v, "info") && strcmp(v, "warning") && strcmp(v, "critical")))
                return bad(where, k, "expected info, warning or critical");
            snprintf(r->severity, sizeof r->severity, "%s", v);
        } else if (!strcmp(k, "summary")) {
            KL_TRY(copy(where, k, v, r->summary, sizeof r->summary));
        } else if (!strcmp(k, "retrain")) {
            KL_TRY(boolean(where, k, v, &r->retrain));
        } else {
            return bad(where, k,
                       "unknown key (name, metric, labels, comparison, threshold, for, "
                       "window, quantile, severity, summary, retrain)");
        }
    }
    if (!have_metric) return bad(where, "metric", "missing");
    if (!have_cmp) return bad(where, "comparison", "missing");
    if (!have_threshold) return bad(where, "threshold", "missing");
    return KL_OK;
}

static kl_status parse_retrain(yaml_document_t *d, yaml_node_t *map, kl_alert_config *c) {
    if (map->type != YAML_MAPPING_NODE) return bad("alerts", "retrain", "expected a mapping");
    FOR_PAIRS(map, p) {
        const char *k = scalar(yaml_document_get_node(d, p->key));
        const char *v = scalar(yaml_document_get_node(d, p->value));
        if (!k) return bad("alerts", "retrain", "keys must be strings");
        if (!strcmp(k, "pipeline"))
            KL_TRY(copy("alerts.retrain", k, v, c->retrain_pipeline, sizeof c->retrain_pipeline));
        else if (!strcmp(k, "command"))
            KL_TRY(copy("alerts.retrain", k, v, c->retrain_command, sizeof c->retrain_command));
        else if (!strcmp(k, "cooldown"))
            KL_TRY(duration("alerts.retrain", k, v, &c->retrain_cooldown_s));
        else if (!strcmp(k, "evidence_dir"))
            KL_TRY(copy("alerts.retrain", k, v, c->evidence_dir, sizeof c->evidence_dir));
        else
            return bad("alerts.retrain", k,
                       "unknown key (pipeline, command, cooldown, "
                       "evidence_dir)");
    }
    if (!!c->retrain_pipeline[0] == !!c->retrain_command[0])
        return bad("alerts", "retrain", "give exactly one of pipeline and command");
    return KL_OK;
}

static kl_status parse_webhook(yaml_document_t *d, yaml_node_t *n, kl_alert_config *c) {
    if (n->type == YAML_SCALAR_NODE)
        return copy("alerts", "webhook", scalar(n), c->webhook, sizeof c->webhook);
    if (n->type != YAML_MAPPING_NODE)
        return bad("alerts", "webhook", "expected a URL or {url: ..., timeout: ...}");
    FOR_PAIRS(n, p) {
        const char *k = scalar(yaml_document_get_node(d, p->key));
        const char *v = scalar(yaml_document_get_node(d, p->value));
        if (k && !strcmp(k, "url"))
            KL_TRY(copy("alerts.webhook", k, v, c->webhook, sizeof c->webhook));
        else if (k && !strcmp(k, "timeout"))
            KL_TRY(duration("alerts.webhook", k, v, &c->webhook_timeout_s));
        else
            return bad("alerts.webhook", k ? k : "?", "unknown key (url, timeout)");
    }
    if (!c->webhook[0]) return bad("alerts.webhook", "url", "missing");
    return KL_OK;
}

static kl_status parse_root(yaml_document_t *d, yaml_node_t *root, kl_alert_config *c) {
    if (!root || root->type != YAML_MAPPING_NODE)
        return kl_seterr(KL_EINVAL, "alerts: expected a mapping with a rules: list");
    int have_rules = 0;
    FOR_PAIRS(root, p) {
        const char *k = scalar(yaml_document_get_node(d, p->key));
        yaml_node_t *vn = yaml_document_get_node(d, p->value);
        if (!k) return kl_seterr(KL_EINVAL, "alerts: keys must be strings");
        if (!strcmp(k, "interval")) {
            KL_TRY(duration("alerts", k, scalar(vn), &c->interval_s));
            if (c->interval_s < 0.01) return bad("alerts", k, "must be at least 10ms");
        } else if (!strcmp(k, "webhook")) {
            KL_TRY(parse_webhook(d, vn, c));
            if (strncmp(c->webhook, "http://", 7) && strncmp(c->webhook, "https://", 8))
                return bad("alerts", "webhook", "expected an http:// or https:// URL");
        } else if (!strcmp(k, "retrain")) {
            KL_TRY(parse_retrain(d, vn, c));
        } else if (!strcmp(k, "rules")) {
            if (vn->type != YAML_SEQUENCE_NODE) return bad("alerts", k, "expected a list");
            have_rules = 1;
            for (yaml_node_item_t *it = vn->data.sequence.items.start;
                 it < vn->data.sequence.items.top; it++) {
                if (c->n == KL_ALERT_MAX_RULES)
                    return kl_seterr(KL_EINVAL, "alerts.rules: more than %d rules",
                                     KL_ALERT_MAX_RULES);
                KL_TRY(parse_rule(c->n, d, yaml_document_get_node(d, *it), &c->rule[c->n]));
                for (int j = 0; j < c->n; j++)
                    if (!strcmp(c->rule[j].name, c->rule[c->n].name))
                        return kl_seterr(KL_EINVAL, "alerts.rules[%d]: name %s is used twice", c->n,
                                         c->rule[c->n].name);
                c->n++;
            }
        } else {
            return bad("alerts", k, "unknown key (interval, webhook, retrain, rules)");
        }
    }
    if (!have_rules) return bad("alerts", "rules", "missing");
    for (int i = 0; i < c->n; i++)
        if (c->rule[i].retrain && !c->retrain_pipeline[0] && !c->retrain_command[0])
            return kl_seterr(KL_EINVAL,
                             "alerts.rules[%d] (%s).retrain: no retrain: {pipeline or command} "
                             "is configured",
                             i, c->rule[i].name);
    return KL_OK;
}

kl_status kl_alert_config_parse(const char *text, kl_alert_config *out) {
    memset(out, 0, sizeof *out);
    out->interval_s = 5;
    out->webhook_timeout_s = 5;
    out->retrain_cooldown_s = 3600;
    const char *tmp = getenv("TMPDIR");
    snprintf(out->evidence_dir, sizeof out->evidence_dir, "%s", tmp && *tmp ? tmp : "/tmp");
    yaml_document_t doc;
    if (kl_yaml_load(text, strlen(text), &doc) != KL_OK) return kl_preferr(KL_EFORMAT, "alerts");
    kl_status st = parse_root(&doc, yaml_document_get_root_node(&doc), out);
    yaml_document_delete(&doc);
    return st;
}

kl_status kl_alert_config_load(const char *path, kl_alert_config *out) {
    char *text = NULL;
    size_t len = 0;
    kl_status st = kl_file_read(path, 1 << 20, &text, &len);
    if (st == KL_OK) st = kl_alert_config_parse(text, out);
    free(text);
    return st == KL_OK ? KL_OK : kl_preferr(st, "%s", path);
}
