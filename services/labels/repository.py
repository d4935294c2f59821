"""Queries over ground-truth labels, and their join with prediction events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, exists, func, select
from sqlalchemy.orm import Session

from services.core.db import insert_ignoring_duplicates
from services.core.models import GroundTruthLabel, PredictionEvent

KEY = ("study_pid", "finding", "source", "reported_at")


def insert_labels(session: Session, rows: Sequence[Mapping[str, Any]]) -> set[tuple[Any, ...]]:
    """Store new labels; returns the key tuples of the rows stored (see :data:`KEY`)."""
    table = GroundTruthLabel.__table__
    assert isinstance(table, Table)
    return insert_ignoring_duplicates(session, table, rows, key=list(KEY))


def _latest(finding: str, study_pids: Sequence[str] | None = None) -> Any:
    """Subquery (study_pid, label) of the effective label per study: the one with the latest
    ``reported_at`` (ties: the latest received)."""
    ranked = select(
        GroundTruthLabel.study_pid,
        GroundTruthLabel.label,
        func.row_number()
        .over(
            partition_by=GroundTruthLabel.study_pid,
            order_by=(GroundTruthLabel.reported_at.desc(), GroundTruthLabel.id.desc()),
        )
        .label("rank"),
    ).where(GroundTruthLabel.finding == finding)
    if study_pids is not None:
        ranked = ranked.where(GroundTruthLabel.study_pid.in_(sorted(set(study_pids))))
    sub = ranked.subquery()
    return select(sub.c.study_pid, sub.c.label).where(sub.c.rank == 1).subquery()


def labelled_events(
    session: Session,
    *,
    model_name: str,
    finding: str,
    site: str | None = None,
    after_id: int = 0,
    limit: int | None = None,
) -> list[tuple[PredictionEvent, bool]]:
    """Events of ``model_name`` that have a label for ``finding``, oldest first, each with its
    effective label (see :func:`_latest`).

    Labels join by pseudonymised study id whenever they arrived, before or after the event.
    """
    latest = _latest(finding)
    stmt = (
        select(PredictionEvent, latest.c.label)
        .join(latest, latest.c.study_pid == PredictionEvent.study_pid)
        .where(PredictionEvent.model_name == model_name, PredictionEvent.id > after_id)
        .order_by(PredictionEvent.id)
    )
    if site is not None:
        stmt = stmt.where(PredictionEvent.site == site)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [(event, bool(label)) for event, label in session.execute(stmt).all()]


def labels_for_events(
    session: Session, study_pids: Sequence[str], *, finding: str
) -> dict[str, bool]:
    """The effective label of ``finding`` for each of these studies that has one."""
    if not study_pids:
        return {}
    latest = _latest(finding, study_pids)
    rows = session.execute(select(latest.c.study_pid, latest.c.label))
    return {pid: bool(label) for pid, label in rows}


def count_labelled(session: Session, *, model_name: str, version: int, finding: str) -> int:
    """Events of this model version with at least one label for ``finding``."""
    labelled = exists().where(
        GroundTruthLabel.study_pid == PredictionEvent.study_pid,
        GroundTruthLabel.finding == finding,
    )
    stmt = select(func.count(PredictionEvent.id)).where(
        PredictionEvent.model_name == model_name,
        PredictionEvent.model_version == version,
        labelled,
    )
    return int(session.scalar(stmt) or 0)
