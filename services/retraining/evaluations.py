"""Judging a candidate registered by hand (an imported version; a model whose spec says
retraining ``none``) as a queued run: the training worker executes it with
:func:`services.retraining.flows.candidates.evaluate_run`, so the request survives a lost
message and shows its progress like any retraining run (``POST /v1/models/{name}/candidates``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from services.change_protocols import service as protocols
from services.core.errors import ConflictError, NotFoundError, ValidationFailedError
from services.core.models import RetrainingRun
from services.core.ports import ModelRegistry
from services.retraining.service import claim_model, queue_run
from services.serving.service import champion, spec_of

#: ``lineage.kind`` of a run that judges a registered candidate instead of training one.
EVALUATION_KIND = "candidate-evaluation"


def request(
    session: Session,
    registry: ModelRegistry,
    *,
    model_name: str,
    candidate_version: int,
    evaluation_set: str,
    evaluation_set_version: int | None,
    requested_by: str,
    reason: str,
    now: datetime | None = None,
) -> RetrainingRun:
    """Queue the judgement of a candidate registered by hand (an import, retraining ``none``):
    a run of kind :data:`EVALUATION_KIND` that the training worker executes with
    :func:`services.retraining.flows.candidates.evaluate_candidate`, so the request outlives a
    lost message like any run. The evaluation set's version is pinned now. The caller commits,
    then enqueues with :func:`services.retraining.service.enqueue_after_commit`.

    404 for a model with no champion, an unknown version or an unknown set; 409 when the
    candidate is the champion or another run of the model is queued or running.
    """
    text_reason = (reason or "").strip()
    if not 3 <= len(text_reason) <= 2000:
        raise ValidationFailedError(
            "An evaluation request needs a reason of 3 to 2,000 characters."
        )
    champ = champion(session, model_name)
    if candidate_version == champ.model_version:
        raise ConflictError(
            f"{model_name} version {candidate_version} is the champion; name another version."
        )
    registry.get_version(model_name, candidate_version)  # 404 when it does not exist
    found = registry.evaluation_set_versions(evaluation_set)
    if evaluation_set_version is None:
        pinned = found[-1] if found else None
    else:
        pinned = next((i for i in found if i.version == evaluation_set_version), None)
    if pinned is None:
        have = ", ".join(str(i.version) for i in found)
        raise NotFoundError(
            f"No evaluation set '{evaluation_set}'"
            + (f" version {evaluation_set_version} (it has {have})" if have else "")
            + "; register one with `radwatch evaluation-sets register`."
        )
    claim_model(session, model_name)
    protocol_row, protocol = protocols.current(
        session, model_name, actor=requested_by, spec=spec_of(champ)
    )
    return queue_run(
        session,
        model_name=model_name,
        parent_version=champ.model_version,
        trigger="manual",
        requested_by=requested_by,
        params={
            "reason": text_reason,
            "finding": protocol.acceptance.finding,
            "evaluation_set": pinned.name,
            "evaluation_set_version": pinned.version,
        },
        lineage={
            "kind": EVALUATION_KIND,
            "parent_version": champ.model_version,
            "trigger": "manual",
            "trigger_alert_ids": [],
            "protocol_version": protocol_row.version,
            "evaluation_set_sha256": pinned.sha256,
        },
        audit={
            "kind": EVALUATION_KIND,
            "candidate_version": candidate_version,
            "evaluation_set": pinned.name,
            "evaluation_set_version": pinned.version,
        },
        candidate_version=candidate_version,
        created_at=now,
    )
