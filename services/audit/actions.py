"""The audit vocabulary: action names (``<entity>.<past-tense verb>``) and entity types.

Import these instead of writing the strings, so a report that filters on an action finds every
record of it. New lifecycle steps add their names here.
"""

from __future__ import annotations

from typing import Final

# --- entity types (``audit_log.entity_type``, at most 32 characters) ---------------------------

#: ``entity_id`` is ``"<model name>:<version>"``.
MODEL_VERSION: Final = "model_version"
#: ``entity_id`` is the alert's id.
ALERT: Final = "alert"
RETRAINING_RUN: Final = "retraining_run"
DOSSIER: Final = "dossier"
APPROVAL_REQUEST: Final = "approval_request"
PROMOTION: Final = "promotion"
#: ``entity_id`` is ``"<model name>:<protocol version>"``.
CHANGE_PROTOCOL: Final = "change_protocol"
#: ``entity_id`` is the user's name.
USER: Final = "user"
#: ``entity_id`` is ``"<set name>:<version>"``.
EVALUATION_SET: Final = "evaluation_set"

# --- actions (``audit_log.action``, at most 64 characters) -------------------------------------

MODEL_REGISTERED: Final = "model.registered"
MODEL_DEPLOYED: Final = "model.deployed"
#: A probe's encoder got a newer version; the probe must be refitted and revalidated.
MODEL_REVALIDATION_FLAGGED: Final = "model.revalidation_flagged"
#: A probe version fitted on its encoder's newest version cleared the flag.
MODEL_REVALIDATION_CLEARED: Final = "model.revalidation_cleared"
ALERT_OPENED: Final = "alert.opened"
ALERT_ACKNOWLEDGED: Final = "alert.acknowledged"
ALERT_RESOLVED: Final = "alert.resolved"
PROTOCOL_CREATED: Final = "protocol.created"
USER_CREATED: Final = "user.created"
USER_SIGNED_IN: Final = "user.signed_in"
USER_SIGN_IN_FAILED: Final = "user.sign_in_failed"
RETRAINING_REQUESTED: Final = "retraining.requested"
RETRAINING_STARTED: Final = "retraining.started"
RETRAINING_SUCCEEDED: Final = "retraining.succeeded"
RETRAINING_FAILED: Final = "retraining.failed"
CANDIDATE_REGISTERED: Final = "candidate.registered"
DOSSIER_CREATED: Final = "dossier.created"
EVALUATION_SET_REGISTERED: Final = "evaluation_set.registered"
APPROVAL_REQUESTED: Final = "approval.requested"
APPROVAL_SIGNED: Final = "approval.signed"
APPROVAL_APPROVED: Final = "approval.approved"
APPROVAL_REJECTED: Final = "approval.rejected"
APPROVAL_WITHDRAWN: Final = "approval.withdrawn"
APPROVAL_EXPIRED: Final = "approval.expired"
PROMOTION_STARTED: Final = "promotion.started"
PROMOTION_STAGE: Final = "promotion.stage_changed"
PROMOTION_SUCCEEDED: Final = "promotion.succeeded"
ROLLBACK_SUCCEEDED: Final = "rollback.succeeded"

# --- actors for automatic actions --------------------------------------------------------------

#: The monitoring worker (alerts it opens).
ACTOR_MONITORING: Final = "monitoring"
#: Other Celery work with no person behind it.
ACTOR_WORKER: Final = "worker"
#: Anything else done by radwatch itself, e.g. a deploy called without a named actor.
ACTOR_SYSTEM: Final = "system"


def model_version_id(model_name: str, version: int) -> str:
    """The ``entity_id`` of a model version."""
    return f"{model_name}:{version}"
