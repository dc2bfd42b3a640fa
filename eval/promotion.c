/* promotion.c — champion / previous / challenger moves in the MLflow registry (promotion.h). */
#include "eval/promotion.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Now as ISO 8601 UTC, for the tags. */
static void now_iso(char out[32]) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The version alias points at, or "" when the alias does not exist. */
static kl_status alias_or_empty(kl_mlflow *c, const char *name, const char *alias, char v[32]) {
    kl_status s = kl_mlflow_get_alias(c, name, alias, v);
    if (s == KL_ENOTFOUND) {
        kl_clearerr();
        v[0] = 0;
        return KL_OK;
    }
    return s;
}

kl_status kl_promote(kl_mlflow *c, const char *name, const char *version, const char *by,
                     const char *note) {
    char old[32], when[32];
    KL_TRY(alias_or_empty(c, name, "champion", old));
    now_iso(when);
    /* The version exists? Tagging it fails with the registry's message if not. */
    KL_TRY(kl_mlflow_set_version_tag(c, name, version, "kiln.promoted_at", when));
    if (by && *by) KL_TRY(kl_mlflow_set_version_tag(c, name, version, "kiln.promoted_by", by));
    if (note && *note)
        KL_TRY(kl_mlflow_set_version_tag(c, name, version, "kiln.promotion_note", note));
    if (old[0] && strcmp(old, version)) {
        KL_TRY(kl_mlflow_set_alias(c, name, "previous", old));
        KL_TRY(kl_mlflow_set_version_tag(c, name, old, "kiln.superseded_by", version));
    }
    return kl_mlflow_set_alias(c, name, "champion", version);
}

kl_status kl_promote_request(kl_mlflow *c, const char *name, const char *version) {
    KL_TRY(kl_mlflow_set_version_tag(c, name, version, "kiln.approval", "pending"));
    return kl_mlflow_set_alias(c, name, "challenger", version);
}

kl_status kl_approve(kl_mlflow *c, const char *name, const char *version, const char *by,
                     const char *note) {
    if (!by || !*by)
        return kl_seterr(KL_EINVAL, "approve %s version %s: --by WHO is required", name, version);
    char when[32];
    now_iso(when);
    KL_TRY(kl_mlflow_set_version_tag(c, name, version, "kiln.approval", "approved"));
    KL_TRY(kl_mlflow_set_version_tag(c, name, version, "kiln.approved_by", by));
    KL_TRY(kl_mlflow_set_version_tag(c, name, version, "kiln.approved_at", when));
    if (note && *note)
        KL_TRY(kl_mlflow_set_version_tag(c, name, version, "kiln.approval_note", note));
    return kl_promote(c, name, version, by, note);
}

kl_status kl_rollback(kl_mlflow *c, const char *name, char *from, char *to) {
    char champ[32], prev[32], when[32];
    KL_TRY(alias_or_empty(c, name, "champion", champ));
    KL_TRY(alias_or_empty(c, name, "previous", prev));
    if (!prev[0])
        return kl_seterr(KL_ENOTFOUND, "rollback %s: no alias \"previous\" to go back to", name);
    if (!strcmp(champ, prev))
        return kl_seterr(KL_EINVAL, "rollback %s: champion already is version %s (previous)", name,
                         prev);
    now_iso(when);
    KL_TRY(kl_mlflow_set_alias(c, name, "champion", prev));
    if (champ[0]) KL_TRY(kl_mlflow_set_version_tag(c, name, champ, "kiln.rolled_back_at", when));
    if (from) snprintf(from, 32, "%s", champ);
    if (to) snprintf(to, 32, "%s", prev);
    return KL_OK;
}
