"""Late labels (``POST /v1/labels``): validate, pseudonymise the study id, store idempotently.

Per-label semantics, like ``POST /v1/events``: bad labels are rejected with their index and
reason, the rest are stored in one transaction that commits before the response.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import Session

from services.core.pseudonym import pseudonymise
from services.core.settings import Settings
from services.events.ingest import reject, validation_problems
from services.labels import repository
from services.labels.schemas import LabelIn, LabelIngestResult

_LABEL = TypeAdapter(LabelIn)


def ingest_labels(
    session: Session, *, settings: Settings, items: Sequence[Any]
) -> LabelIngestResult:
    rejected = []
    rows: list[tuple[int, dict[str, Any]]] = []
    for index, item in enumerate(items):
        try:
            label = _LABEL.validate_python(item)
        except ValidationError as exc:
            rejected.append(reject(index, None, validation_problems(exc), noun="label"))
            continue
        row = {
            "study_pid": pseudonymise(label.study_id, settings.pseudonym_key, kind="study"),
            "finding": label.finding,
            "label": label.label,
            "source": label.source,
            "reported_at": label.reported_at.astimezone(UTC),
        }
        rows.append((index, row))
    stored = repository.insert_labels(session, [r for _, r in rows])
    # Compare keys as the database returns them: timestamps come back in UTC.
    keys = {_key(k) for k in stored}
    duplicates = [i for i, r in rows if _key(tuple(r[k] for k in repository.KEY)) not in keys]
    return LabelIngestResult(
        received=len(items), stored=len(stored), duplicates=duplicates, rejected=rejected
    )


def _key(key: tuple[Any, ...]) -> tuple[Any, ...]:
    study, finding, source, reported_at = key
    return (study, finding, source, reported_at.timestamp())
