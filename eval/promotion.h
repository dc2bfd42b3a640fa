/* promotion.h — a registered model's aliases as the promotion workflow moves them.
 *
 *   champion    the version serving traffic (kiln serve --model N=models:/NAME@champion)
 *   previous    the champion before the last promotion: where a rollback goes back to
 *   challenger  a version waiting for manual approval (or taking canary/shadow traffic)
 *
 * Every move is also written to the versions' tags (kiln.approval, kiln.approved_by,
 * kiln.approval_note, kiln.promoted_at, kiln.rolled_back_at), so the registry keeps the history
 * a person reads in the MLflow UI.
 */
#ifndef KL_PROMOTION_H
#define KL_PROMOTION_H

#include "runtime/status.h"
#include "tracking/mlflow.h"

/* Promotes version of name: champion -> version, previous -> the old champion (when there was
 * one and it differs). by and note (may be NULL) are recorded in the version's tags. */
kl_status kl_promote(kl_mlflow *c, const char *name, const char *version, const char *by,
                     const char *note);

/* Marks version as waiting for approval: alias challenger -> version, tag
 * kiln.approval=pending. */
kl_status kl_promote_request(kl_mlflow *c, const char *name, const char *version);

/* Records a person's sign-off (kiln.approval=approved, kiln.approved_by, kiln.approval_note) and
 * promotes the version. by must be non-empty. */
kl_status kl_approve(kl_mlflow *c, const char *name, const char *version, const char *by,
                     const char *note);

/* Moves champion back to previous (KL_ENOTFOUND when there is no previous, KL_EINVAL when
 * champion already is previous) and tags the demoted version kiln.rolled_back_at. *from and *to
 * (32 bytes each, may be NULL) receive the versions. */
kl_status kl_rollback(kl_mlflow *c, const char *name, char *from, char *to);

#endif
