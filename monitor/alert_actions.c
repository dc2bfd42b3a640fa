/* alert_actions.c — what an alert event does: a log line, a webhook POST, and for a rule that
 * asks for it, a retraining run with the evidence attached (see alerts.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "monitor/alerts_impl.h"
#include "runtime/fileio.h" /* kl_file_write_atomic */

extern char **environ;

/* --- set-up ---------------------------------------------------------------------------------- */

kl_status alert_actions_init(alert_actions *x, const kl_alert_config *cfg, kl_metrics *metrics) {
    memset(x, 0, sizeof *x);
    x->retrain_started = -1;
    const char *on[] = {"outcome"}, *sent[] = {"sent"}, *failed[] = {"failed"};
    const char *help = "Alert events POSTed to the webhook, by outcome";
    x->sent = kl_metrics_counter(metrics, "kiln_alert_notifications_total", help, on, sent, 1);
    x->failed = kl_metrics_counter(metrics, "kiln_alert_notifications_total", help, on, failed, 1);
    x->running = kl_metrics_gauge(metrics, "kiln_retrain_running",
                                  "1 while a retraining started by an alert runs", NULL, NULL, 0);
    if (!x->sent || !x->failed || !x->running) return kl_seterr(KL_ENOMEM, "%s", kl_errmsg());
    if (!cfg->webhook[0]) return KL_OK;
    /* kl_http wants the scheme://host:port part and a path apart. */
    const char *host = strstr(cfg->webhook, "://") + 3;
    const char *slash = strchr(host, '/');
    char base[1024];
    size_t base_len = slash ? (size_t)(slash - cfg->webhook) : strlen(cfg->webhook);
    snprintf(base, sizeof base, "%.*s", (int)base_len, cfg->webhook);
    snprintf(x->webhook_path, sizeof x->webhook_path, "%s", slash ? slash : "/");
    kl_http_opts o = {.base = base,
                      .timeout_s = cfg->webhook_timeout_s,
                      .max_retries = 1,
                      .backoff_base_s = 0.5,
                      .backoff_max_s = 2,
                      .peer = "webhook"};
    KL_TRY(kl_http_open(&o, &x->webhook));
    return KL_OK;
}

void alert_actions_free(alert_actions *x) {
    kl_http_close(x->webhook);
    x->webhook = NULL;
    alert_actions_reap(x);
    if (x->retrain_pid > 0)
        fprintf(stderr,
                "kiln serve: the retraining started by an alert (pid %d) is still running; it "
                "goes on without the server (evidence %s)\n",
                (int)x->retrain_pid, x->retrain_evidence);
}

/* --- the log and the webhook ------------------------------------------------------------------ */

/* "[FIRING] InputDrift (critical): kiln_drift_psi_max{...} = 0.41 > 0.25 — summary" */
static void headline(const kl_alert_config *cfg, const alert_event *ev, char *out, size_t cap) {
    const kl_alert_rule *r = &cfg->rule[ev->rule];
    const cJSON *summary = cJSON_GetObjectItemCaseSensitive(ev->alert, "summary");
    char value[48];
    if (isfinite(ev->value))
        snprintf(value, sizeof value, "%.6g", ev->value);
    else
        snprintf(value, sizeof value, "no value");
    int n = snprintf(out, cap, "[%s] %s (%s): %s = %s, rule %s %.6g",
                     ev->firing ? "FIRING" : "RESOLVED", r->name, r->severity, ev->series, value,
                     kl_alert_cmp_name(r->cmp), r->threshold);
    if (n < 0 || (size_t)n >= cap) return;
    if (r->for_s > 0) n += snprintf(out + n, cap - (size_t)n, " for %gs", r->for_s);
    if (n < 0 || (size_t)n >= cap) return;
    if (cJSON_IsString(summary) && *summary->valuestring)
        snprintf(out + n, cap - (size_t)n, " — %s", summary->valuestring);
}

static void notify(alert_actions *x, const char *text, const alert_event *ev) {
    if (!x->webhook) return;
    /* Slack shows "text"; other receivers read the fields. */
    cJSON *body = cJSON_Duplicate(ev->alert, 1);
    if (!body) return;
    cJSON_AddStringToObject(body, "text", text);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    cJSON_AddStringToObject(body, "server", host);
    char *json = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    if (!json) return;
    if (kl_http_call(x->webhook, "POST", x->webhook_path, json, 0, NULL) == KL_OK) {
        kl_counter_add(x->sent, 1);
    } else {
        kl_counter_add(x->failed, 1);
        fprintf(stderr, "kiln serve: alert webhook: %s (the event was: %s)\n", kl_errmsg(), text);
        kl_clearerr();
    }
    free(json);
}

/* --- retraining ------------------------------------------------------------------------------- */

typedef struct {
    const cJSON *labels; /* the alert's labels */
    cJSON *out;          /* series key → value */
} evidence_ctx;

/* Every gauge of the alert's model and version (drift per feature, live accuracy, ...). */
static void collect(void *vctx, const kl_metric_sample *s) {
    evidence_ctx *c = vctx;
    if (s->type != KL_METRIC_GAUGE) return;
    int related = 0;
    for (size_t l = 0; l < s->n_labels; l++) {
        if (strcmp(s->label_names[l], "model") && strcmp(s->label_names[l], "version")) continue;
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(c->labels, s->label_names[l]);
        if (!cJSON_IsString(want)) continue;
        if (strcmp(want->valuestring, s->label_values[l]) != 0) return;
        related = 1;
    }
    if (!related) return;
    char key[1200];
    size_t n = (size_t)snprintf(key, sizeof key, "%s", s->family);
    for (size_t l = 0; l < s->n_labels && n < sizeof key; l++)
        n += (size_t)snprintf(key + n, sizeof key - n, "%s%s=\"%s\"", l ? "," : "{",
                              s->label_names[l], s->label_values[l]);
    if (s->n_labels && n < sizeof key) snprintf(key + n, sizeof key - n, "}");
    cJSON_AddNumberToObject(c->out, key, isfinite(s->value) ? s->value : 0);
}

static kl_status write_evidence(const kl_alert_config *cfg, kl_metrics *metrics,
                                const alert_event *ev, const char *reason, char *path, size_t cap) {
    const kl_alert_rule *r = &cfg->rule[ev->rule];
    if (mkdir(cfg->evidence_dir, 0755) != 0 && errno != EEXIST)
        return kl_seterr(KL_EIO, "evidence directory %s: %s", cfg->evidence_dir, strerror(errno));
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(ev->alert, "at");
    char stamp[32] = "now";
    if (cJSON_IsString(at)) {
        size_t k = 0;
        for (const char *p = at->valuestring; *p && k + 1 < sizeof stamp; p++)
            if (*p != '-' && *p != ':') stamp[k++] = *p;
        stamp[k] = 0;
    }
    snprintf(path, cap, "%s/kiln-alert-%s-%s-%d.json", cfg->evidence_dir, r->name, stamp,
             (int)getpid());
    cJSON *root = cJSON_CreateObject();
    if (!root) return kl_seterr(KL_ENOMEM, "evidence: out of memory");
    cJSON_AddStringToObject(root, "reason", reason);
    cJSON_AddItemToObject(root, "alert", cJSON_Duplicate(ev->alert, 1));
    evidence_ctx c = {cJSON_GetObjectItemCaseSensitive(ev->alert, "labels"),
                      cJSON_AddObjectToObject(root, "metrics")};
    kl_metrics_visit(metrics, NULL, collect, &c);
    char *json = cJSON_Print(root);
    cJSON_Delete(root);
    if (!json) return kl_seterr(KL_ENOMEM, "evidence: out of memory");
    kl_status st = kl_file_write_atomic(path, json, strlen(json));
    free(json);
    return st;
}

static kl_status spawn(const kl_alert_config *cfg, const char *evidence, const char *reason,
                       const char *rule, pid_t *pid) {
    char log[1300], self[PATH_MAX] = "";
    snprintf(log, sizeof log, "%s.log", evidence);
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) self[n] = 0;
    /* The environment: the server's, plus the alert's. */
    size_t n_env = 0;
    while (environ[n_env])
        n_env++;
    char **env = calloc(n_env + 4, sizeof *env);
    char e_evidence[1300], e_reason[1500], e_rule[128];
    if (!env) return kl_seterr(KL_ENOMEM, "retrain: out of memory");
    memcpy(env, environ, n_env * sizeof *env);
    snprintf(e_evidence, sizeof e_evidence, "KILN_ALERT_EVIDENCE=%s", evidence);
    snprintf(e_reason, sizeof e_reason, "KILN_ALERT_REASON=%s", reason);
    snprintf(e_rule, sizeof e_rule, "KILN_ALERT_RULE=%s", rule);
    env[n_env] = e_evidence;
    env[n_env + 1] = e_reason;
    env[n_env + 2] = e_rule;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    char *sh_argv[] = {"/bin/sh", "-c", (char *)cfg->retrain_command, NULL};
    char *kiln_argv[] = {self,        "pipeline",     "run",        (char *)cfg->retrain_pipeline,
                         "--trigger", (char *)reason, "--evidence", (char *)evidence,
                         NULL};
    char **argv = cfg->retrain_command[0] ? sh_argv : kiln_argv;
    int rc = posix_spawn(pid, argv[0], &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    free(env);
    if (rc != 0) return kl_seterr(KL_EIO, "retrain: cannot start %s: %s", argv[0], strerror(rc));
    return KL_OK;
}

static void retrain(alert_actions *x, const kl_alert_config *cfg, kl_metrics *metrics,
                    const alert_event *ev) {
    const kl_alert_rule *r = &cfg->rule[ev->rule];
    const char *names[] = {"rule", "outcome"};
    const char *started[] = {r->name, "started"}, *skipped[] = {r->name, "skipped"};
    const char *help = "Retrainings alerts asked for, by rule and outcome";
    kl_counter *c_started =
        kl_metrics_counter(metrics, "kiln_retrain_triggers_total", help, names, started, 2);
    kl_counter *c_skipped =
        kl_metrics_counter(metrics, "kiln_retrain_triggers_total", help, names, skipped, 2);
    double now = alert_now();
    if (x->retrain_pid > 0) {
        fprintf(stderr,
                "kiln serve: alert %s asks for retraining, but the one started earlier (pid %d) "
                "still runs; skipped\n",
                r->name, (int)x->retrain_pid);
        kl_counter_add(c_skipped, 1);
        return;
    }
    if (x->retrain_started >= 0 && now - x->retrain_started < cfg->retrain_cooldown_s) {
        fprintf(stderr,
                "kiln serve: alert %s asks for retraining, but the last one started %.0fs ago "
                "(cooldown %.0fs); skipped\n",
                r->name, now - x->retrain_started, cfg->retrain_cooldown_s);
        kl_counter_add(c_skipped, 1);
        return;
    }
    char reason[1400], evidence[1200];
    snprintf(reason, sizeof reason, "alert %s: %s %s %g", r->name, ev->series,
             kl_alert_cmp_name(r->cmp), r->threshold);
    pid_t pid;
    if (write_evidence(cfg, metrics, ev, reason, evidence, sizeof evidence) != KL_OK ||
        spawn(cfg, evidence, reason, r->name, &pid) != KL_OK) {
        fprintf(stderr, "kiln serve: alert %s: retraining not started: %s\n", r->name, kl_errmsg());
        kl_clearerr();
        kl_counter_add(c_skipped, 1);
        return;
    }
    x->retrain_pid = pid;
    x->retrain_started = now;
    snprintf(x->retrain_evidence, sizeof x->retrain_evidence, "%s", evidence);
    kl_gauge_set(x->running, 1);
    kl_counter_add(c_started, 1);
    fprintf(stderr,
            "kiln serve: alert %s: retraining started (pid %d), evidence %s, output %s.log\n",
            r->name, (int)pid, evidence, evidence);
}

void alert_actions_reap(alert_actions *x) {
    if (x->retrain_pid <= 0) return;
    int status;
    pid_t p = waitpid(x->retrain_pid, &status, WNOHANG);
    if (p == 0) return;
    if (p < 0)
        fprintf(stderr, "kiln serve: retraining (pid %d): lost track of it: %s\n",
                (int)x->retrain_pid, strerror(errno));
    else if (WIFEXITED(status))
        fprintf(stderr,
                "kiln serve: retraining (pid %d) finished with exit code %d (output %s.log)\n",
                (int)x->retrain_pid, WEXITSTATUS(status), x->retrain_evidence);
    else
        fprintf(stderr, "kiln serve: retraining (pid %d) ended by signal %d (output %s.log)\n",
                (int)x->retrain_pid, WIFSIGNALED(status) ? WTERMSIG(status) : 0,
                x->retrain_evidence);
    x->retrain_pid = 0;
    kl_gauge_set(x->running, 0);
}

/* --- an event -------------------------------------------------------------------------------- */

void alert_actions_run(alert_actions *x, const kl_alert_config *cfg, kl_metrics *metrics,
                       const alert_event *ev) {
    char text[2048];
    headline(cfg, ev, text, sizeof text);
    fprintf(stderr, "kiln serve: alert %s\n", text);
    notify(x, text, ev);
    if (ev->firing && cfg->rule[ev->rule].retrain) retrain(x, cfg, metrics, ev);
}
