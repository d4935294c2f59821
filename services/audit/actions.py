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

# --- actions (``audit_log.action``, at most 64 characters) -------------------------------------

MODEL_REGISTERED: Final = "model.registered"
MODEL_DEPLOYED: Final = "model.deployed"
ALERT_OPENED: Final = "alert.opened"
ALERT_ACKNOWLEDGED: Final = "alert.acknowledged"
ALERT_RESOLVED: Final = "alert.resolved"

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
