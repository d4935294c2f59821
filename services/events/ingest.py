"""Batch ingestion of prediction events (``POST /v1/events``), and the one write path that the
gateway's own predictions share.

Semantics are **per event**, not all-or-nothing: each item is validated on its own; a bad one is
reported with its index and reason and the rest are stored. An item whose ``event_id`` is already
stored (or repeated earlier in the same batch) is a duplicate: nothing is written and its id is
listed. Everything stored by one call commits in one transaction before the response is sent, so
a 2xx means the events are durable in the database (the system of record).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import Session

from services.core.errors import ValidationFailedError, problems_of
from services.core.models import Deployment
from services.core.pseudonym import pseudonymise
from services.core.settings import Settings
from services.events import repository
from services.events.schemas import EventIn, IngestResult, Problem, RejectedEvent, StudyMetadata
from services.serving import repository as deployments

_EVENT = TypeAdapter(EventIn)


def event_row(
    *,
    settings: Settings,
    event_id: str,
    deployment: Deployment,
    metadata: StudyMetadata,
    scores: Mapping[str, float],
    embedding: Sequence[float] | np.ndarray[Any, Any],
    image_stats: Mapping[str, float],
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """The ``prediction_events`` row for one prediction; ids are pseudonymised here, at the edge."""
    if metadata.study_id is None or metadata.site is None:
        raise ValidationFailedError("metadata.study_id and metadata.site are required.")
    key = settings.pseudonym_key
    return {
        "event_id": event_id,
        "model_name": deployment.model_name,
        "model_version": deployment.model_version,
        "study_pid": pseudonymise(metadata.study_id, key, kind="study"),
        "patient_pid": pseudonymise(metadata.patient_id, key, kind="patient")
        if metadata.patient_id
        else None,
        "site": metadata.site,
        "manufacturer": metadata.manufacturer,
        "manufacturer_model": metadata.manufacturer_model,
        "view_position": metadata.view_position,
        "kvp": metadata.kvp,
        "sex": metadata.sex,
        "age": metadata.age,
        "race_ethnicity": metadata.race_ethnicity,
        "scores": {str(k): float(v) for k, v in scores.items()},
        "image_stats": {str(k): float(v) for k, v in image_stats.items()},
        "embedding": np.asarray(embedding, dtype="<f4").tobytes(),
        # Stored in UTC: SQLite keeps no offset.
        "occurred_at": occurred_at.astimezone(UTC) if occurred_at else None,
    }


def validation_problems(exc: ValidationError, *, noun: str = "event") -> list[Problem]:
    return [
        Problem(field=p["field"], problem=p["problem"])
        for p in problems_of(exc.errors(include_url=False)[:10], default=noun)
    ]


def reject(
    index: int, event_id: str | None, problems: list[Problem], *, noun: str = "event"
) -> RejectedEvent:
    text = "; ".join(f"{p.field}: {p.problem}" for p in problems[:3])
    return RejectedEvent(
        index=index, event_id=event_id, message=f"{noun} {index}: {text}", problems=problems
    )


def _raw_id(item: Any) -> str | None:
    if isinstance(item, dict):
        value = item.get("event_id")
        if isinstance(value, str) and len(value) <= 64:
            return value
    return None


@dataclass(frozen=True)
class Ingested:
    result: IngestResult
    #: Stored events per (model name, site), for the predictions metric.
    stored_per_site: Counter[tuple[str, str]]


def ingest_events(session: Session, *, settings: Settings, items: Sequence[Any]) -> Ingested:
    """Validate, pseudonymise and store a batch; the caller's session commits it."""
    rejected: list[RejectedEvent] = []
    valid: list[tuple[int, EventIn]] = []
    for index, item in enumerate(items):
        try:
            valid.append((index, _EVENT.validate_python(item)))
        except ValidationError as exc:
            rejected.append(reject(index, _raw_id(item), validation_problems(exc)))

    known: dict[tuple[str, int], Deployment | None] = {}
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    repeated: list[str] = []
    for index, event in valid:
        ref = (event.model, event.model_version)
        if ref not in known:
            known[ref] = deployments.by_version(session, *ref)
        deployment = known[ref]
        if deployment is None:
            names = ", ".join(deployments.model_names(session)) or "none"
            problem = Problem(
                field="model",
                problem=f"no deployment of model '{event.model}' version {event.model_version} "
                f"(deployed models: {names}); register and deploy it first",
            )
            rejected.append(reject(index, event.event_id, [problem]))
            continue
        dim = deployment.embedding_dim
        if dim is not None and len(event.embedding) != dim:
            problem = Problem(
                field="embedding",
                problem=f"has {len(event.embedding)} values; model '{event.model}' version "
                f"{event.model_version} produces {dim}",
            )
            rejected.append(reject(index, event.event_id, [problem]))
            continue
        if event.event_id in seen:
            repeated.append(event.event_id)
            continue
        seen.add(event.event_id)
        rows.append(
            event_row(
                settings=settings,
                event_id=event.event_id,
                deployment=deployment,
                metadata=event.metadata,
                scores=event.scores,
                embedding=event.embedding,
                image_stats=event.image_stats,
                occurred_at=event.occurred_at,
            )
        )

    stored = repository.insert_events(session, rows)
    duplicates = [r["event_id"] for r in rows if r["event_id"] not in stored] + repeated
    rejected.sort(key=lambda r: r.index)
    result = IngestResult(
        received=len(items), stored=len(stored), duplicates=duplicates, rejected=rejected
    )
    per_site = Counter((r["model_name"], r["site"]) for r in rows if r["event_id"] in stored)
    return Ingested(result=result, stored_per_site=per_site)
