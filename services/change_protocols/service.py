"""Change protocols: versioned per model, never edited (a change is a new version). The document
itself is :mod:`services.change_protocols.document`."""

from __future__ import annotations

from pydantic import ValidationError
from sqlalchemy.orm import Session

from pipelines.spec import ModelSpec
from services.audit import actions
from services.audit.service import record
from services.change_protocols import repository
from services.change_protocols.document import ChangeProtocolDocument
from services.core.errors import NotFoundError, invalid, problems_of
from services.core.models import ChangeProtocol


def parse(raw: object) -> ChangeProtocolDocument:
    """Validate a protocol document; a 422 that names every bad field."""
    try:
        return ChangeProtocolDocument.model_validate(raw)
    except ValidationError as exc:
        raise invalid(
            "Invalid change protocol", problems_of(exc.errors(include_url=False)), hint="."
        ) from None


def latest(session: Session, model_name: str) -> ChangeProtocol | None:
    return repository.latest(session, model_name)


def get(session: Session, model_name: str, version: int) -> ChangeProtocol:
    row = repository.by_version(session, model_name, version)
    if row is None:
        raise NotFoundError(
            f"Model '{model_name}' has no change protocol version {version}; list them with "
            f"GET /v1/models/{model_name}/protocol/history."
        )
    return row


def history(session: Session, model_name: str) -> list[ChangeProtocol]:
    return repository.history(session, model_name)


def create_version(
    session: Session, model_name: str, document: ChangeProtocolDocument, *, actor: str
) -> ChangeProtocol:
    """Store ``document`` as the model's next protocol version and audit it."""
    row = ChangeProtocol(
        model_name=model_name,
        version=repository.max_version(session, model_name) + 1,
        document=document.model_dump(mode="json"),
        created_by=actor,
    )
    repository.add(session, row)
    record(
        session,
        actor=actor,
        action=actions.PROTOCOL_CREATED,
        entity_type=actions.CHANGE_PROTOCOL,
        entity_id=f"{model_name}:{row.version}",
        payload={"document": row.document},
    )
    return row


def defaults_for(spec: ModelSpec | None) -> ChangeProtocolDocument:
    """The documented defaults, fitted to a model's spec: judged on its first finding when it
    has no ``effusion``, and, for a probe, without perturbation criteria (a probe refit is
    judged on stored embeddings; no pixels exist to perturb, and its encoder is unchanged)."""
    document = ChangeProtocolDocument()
    if spec is None or spec.findings is None:
        return document
    acceptance = document.acceptance
    if acceptance.finding not in spec.findings.names:
        acceptance = acceptance.model_copy(update={"finding": spec.findings.names[0]})
    if spec.runtime == "probe":
        robustness = acceptance.robustness.model_copy(update={"perturbations": []})
        acceptance = acceptance.model_copy(update={"robustness": robustness})
    return document.model_copy(update={"acceptance": acceptance})


def judged_threshold(session: Session, model_name: str, spec: ModelSpec) -> float:
    """The spec's operating threshold of the finding the model's change protocol judges (its
    latest version, or the defaults fitted to ``spec``); 0.5 for a model without findings.
    What a deployment's operating threshold defaults to (the CLI's and the demo's deploy)."""
    row = latest(session, model_name)
    document = defaults_for(spec) if row is None else parse(row.document)
    if spec.findings is None:
        return 0.5
    by_name = {f.name: f.threshold for f in spec.findings.findings}
    return float(by_name.get(document.acceptance.finding, 0.5))


def current(
    session: Session, model_name: str, *, actor: str, spec: ModelSpec | None = None
) -> tuple[ChangeProtocol, ChangeProtocolDocument]:
    """The model's latest protocol, creating version 1 from the documented defaults (fitted to
    ``spec``, :func:`defaults_for`) when the model has none yet, so every candidate is judged
    against a stored, audited protocol."""
    row = latest(session, model_name)
    if row is None:
        row = create_version(session, model_name, defaults_for(spec), actor=actor)
    return row, ChangeProtocolDocument.model_validate(row.document)
